//! The metrics engine: the analytics-store fields of `GET /api/v1/internal/metrics`, computed
//! as ClickHouse aggregates with the official `clickhouse` crate, and served to the metrics
//! function at `GET /__companion/metrics` behind a shared secret.
//!
//! Answers are cached per tenancy and anonymous filter for a short time
//! (`STACK_METRICS_CACHE_SECONDS`, default 15): a dashboard refreshing every few seconds does
//! not re-run eleven aggregates each time.

pub mod bench;
#[cfg(test)]
mod equality;
pub mod matrix;
pub mod queries;
pub mod rollups;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clickhouse::Row;
use serde::Deserialize;
use serde_json::json;

use shared::analytics::metrics::{
    clickhouse_time, Activity, DataPoint, Referrer, Region, Split, Window, ONLINE_WINDOW_MS,
};
use shared::context::ClickHouseConfig;
use shared::{Request, Response};

use queries::Entity;

/// How many referrers the answer lists (upstream's `TOP_REFERRERS_PAGE_SIZE`).
const TOP_REFERRERS: usize = 100;

/// The ClickHouse client for the analytics store (the admin identity: these queries read
/// `analytics_internal` directly, scoped by their own tenancy parameters).
pub fn client(store: &ClickHouseConfig) -> clickhouse::Client {
    let mut client = clickhouse::Client::default()
        .with_url(&store.url)
        .with_database(&store.database)
        .with_compression(clickhouse::Compression::None);
    if let Some(password) = &store.admin_password {
        client = client.with_user(&store.admin_user).with_password(password);
    }
    client
}

/// The analytics store at `url`, database `default`, as the admin identity (`admin_password`
/// on a real server, none on the local engine): what `bench-metrics` and the tests connect to.
pub fn admin_store(url: &str, admin_password: Option<String>) -> ClickHouseConfig {
    ClickHouseConfig {
        url: url.to_string(),
        database: "default".into(),
        external_password: None,
        admin_user: "stackframe".into(),
        admin_password,
    }
}

/// One tenancy's request: whose metrics, with or without anonymous users, at which time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub project_id: String,
    pub branch_id: String,
    pub include_anonymous: bool,
}

/// What the metrics are computed from: the rollups (what the endpoint serves), or every raw
/// event (what the rollups are held equal to, in tests and `bench-metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Rollups,
    RawEvents,
}

impl Source {
    /// The five queries, in the order [`MetricsEngine::compute_from`] runs them.
    fn queries(self) -> [String; 5] {
        match self {
            Source::Rollups => [
                rollups::activity(),
                rollups::split(Entity::Users),
                rollups::split(Entity::Teams),
                rollups::users_by_country(),
                rollups::views(),
            ],
            Source::RawEvents => [
                queries::activity(),
                queries::split(Entity::Users),
                queries::split(Entity::Teams),
                queries::users_by_country(),
                queries::views(),
            ],
        }
    }
}

type Cache = Arc<Mutex<HashMap<Scope, (Instant, i64, Activity)>>>;

/// The engine of one worker: its own client (connection pools belong to a runtime) and the
/// process-wide cache.
pub struct MetricsEngine {
    client: clickhouse::Client,
    cache: Cache,
    cache_for: Duration,
    /// Set by [`MetricsEngine::tagged`] (benchmarks).
    tag: Option<String>,
}

/// Shared by every worker of a process.
#[derive(Clone)]
pub struct EngineSettings {
    pub store: ClickHouseConfig,
    /// `STACK_COMPANION_SECRET`: what callers of the engine's endpoint present.
    pub secret: String,
    pub cache: Cache,
    pub cache_for: Duration,
}

impl MetricsEngine {
    /// Whether the analytics store answers (`SELECT 1`), for `/health`.
    pub async fn store_answers(&self) -> bool {
        self.client.query("SELECT 1").fetch_one::<u8>().await.is_ok()
    }
}

impl EngineSettings {
    /// From a role's configuration; `None` when there is no analytics store or no secret.
    pub fn from_config(config: &shared::context::RoleConfig) -> Option<EngineSettings> {
        Some(EngineSettings {
            store: config.clickhouse.clone()?,
            secret: config.companion_secret.clone()?,
            cache: Cache::default(),
            cache_for: config.metrics_cache,
        })
    }

    pub fn engine(&self) -> MetricsEngine {
        MetricsEngine { client: client(&self.store), cache: self.cache.clone(), cache_for: self.cache_for, tag: None }
    }
}

/// A row of [`queries::activity`].
#[derive(Row, Deserialize)]
struct ActivityRow {
    kind: String,
    day_text: String,
    country_code: Option<String>,
    region_code: Option<String>,
    users: u64,
    online: u64,
}
/// A row of [`queries::split`].
#[derive(Row, Deserialize)]
struct SplitRow {
    day: String,
    total: u64,
    new: u64,
    retained: u64,
    reactivated: u64,
}
/// A row of [`queries::users_by_country`].
#[derive(Row, Deserialize)]
struct CountryRow {
    country_code: String,
    users: u64,
}
/// A row of [`queries::views`].
#[derive(Row, Deserialize)]
struct ViewsRow {
    kind: String,
    day_text: String,
    referrer_name: String,
    page_views: u64,
    clicks: u64,
    visitors: u64,
}

impl MetricsEngine {
    /// An engine without a cache (benchmarks and tests).
    pub fn uncached(store: &ClickHouseConfig) -> MetricsEngine {
        MetricsEngine { client: client(store), cache: Cache::default(), cache_for: Duration::ZERO, tag: None }
    }

    /// The same engine with every query tagged in the query log (`log_comment`), uncached.
    pub fn tagged(&self, tag: &str) -> MetricsEngine {
        MetricsEngine {
            client: self.client.clone(),
            cache: Cache::default(),
            cache_for: Duration::ZERO,
            tag: Some(tag.to_string()),
        }
    }

    /// A query with the scope's parameters bound. `name` says which metric it computes: a
    /// tagged engine records it in the query log as `<tag>:<name>`.
    pub fn query(&self, name: &str, sql: &str, scope: &Scope, window: &Window) -> clickhouse::query::Query {
        let query = self.client.query(sql);
        let query = match &self.tag {
            Some(tag) => query.with_setting("log_comment", format!("{tag}:{name}")),
            None => query,
        };
        query
            .param("project_id", scope.project_id.as_str())
            .param("branch_id", scope.branch_id.as_str())
            .param("include_anonymous", u8::from(scope.include_anonymous))
            .param("since", clickhouse_time(window.since_ms))
            .param("until", clickhouse_time(window.until_ms))
            .param("online_since", clickhouse_time(window.now_ms - ONLINE_WINDOW_MS))
    }

    /// The analytics-store fields for `scope` at `window`, from the cache when fresh.
    pub async fn activity(&self, scope: &Scope, window: &Window) -> Result<Activity, clickhouse::error::Error> {
        if let Some((at, today, activity)) = self.cache.lock().expect("cache lock").get(scope) {
            if at.elapsed() < self.cache_for && *today == window.today_ms {
                return Ok(activity.clone());
            }
        }
        let activity = self.compute(scope, window).await?;
        self.cache
            .lock()
            .expect("cache lock")
            .insert(scope.clone(), (Instant::now(), window.today_ms, activity.clone()));
        Ok(activity)
    }

    /// Computes the metrics from the rollups.
    pub async fn compute(&self, scope: &Scope, window: &Window) -> Result<Activity, clickhouse::error::Error> {
        self.compute_from(Source::Rollups, scope, window).await
    }

    /// Runs every query of `source` (concurrently: a server runs them in parallel).
    pub async fn compute_from(
        &self,
        source: Source,
        scope: &Scope,
        window: &Window,
    ) -> Result<Activity, clickhouse::error::Error> {
        let [activity, users_split, teams_split, countries, views] = source.queries();
        let (activity, users_split, teams_split, countries, views) = tokio::try_join!(
            self.query("activity", &activity, scope, window).fetch_all::<ActivityRow>(),
            self.query("users_split", &users_split, scope, window).fetch_all::<SplitRow>(),
            self.query("teams_split", &teams_split, scope, window).fetch_all::<SplitRow>(),
            self.query("users_by_country", &countries, scope, window).fetch_all::<CountryRow>(),
            self.query("views", &views, scope, window).fetch_all::<ViewsRow>(),
        )?;
        let days: Vec<&ActivityRow> = activity.iter().filter(|r| r.kind == "day").collect();
        let top_region = activity
            .iter()
            .filter(|r| r.kind == "region" && r.country_code.as_deref().is_some_and(|c| !c.is_empty()))
            .max_by(|a, b| {
                // Most users first; ties go to the alphabetically first place.
                a.users
                    .cmp(&b.users)
                    .then_with(|| (&b.country_code, &b.region_code).cmp(&(&a.country_code, &a.region_code)))
            })
            .map(|r| Region {
                country_code: r.country_code.clone(),
                region_code: r.region_code.clone(),
                count: r.users as i64,
            });
        let total = activity.iter().find(|r| r.kind == "total");
        // The total row's users are MAU: one pass instead of a second scan (the equivalence
        // matrix checks it against the standalone query and the OLD pipeline).
        let (mau, online) = total.map_or((0, 0), |r| (r.users as i64, r.online as i64));

        let view_days: Vec<&ViewsRow> = views.iter().filter(|r| r.kind == "day").collect();
        let on = |pick: fn(&ViewsRow) -> u64| {
            window.series(|day| view_days.iter().find(|r| r.day_text == day).map_or(0, |r| pick(r) as i64))
        };
        let mut top_referrers: Vec<Referrer> = views
            .iter()
            .filter(|r| r.kind == "source" && r.visitors > 0)
            .map(|r| Referrer { referrer: r.referrer_name.clone(), visitors: r.visitors as i64 })
            .collect();
        top_referrers.sort_by(|a, b| b.visitors.cmp(&a.visitors).then_with(|| a.referrer.cmp(&b.referrer)));
        top_referrers.truncate(TOP_REFERRERS);
        Ok(Activity {
            mau,
            daily_active_users: window
                .series(|day| days.iter().find(|r| r.day_text == day).map_or(0, |r| r.users as i64)),
            daily_active_users_split: split_series(&users_split, window),
            daily_active_teams_split: split_series(&teams_split, window),
            users_by_country: countries.into_iter().map(|r| (r.country_code, json!(r.users))).collect(),
            daily_page_views: on(|r| r.page_views),
            daily_clicks: on(|r| r.clicks),
            daily_visitors: on(|r| r.visitors),
            visitors: views.iter().find(|r| r.kind == "total").map_or(0, |r| r.visitors as i64),
            online_live: online,
            top_referrers,
            top_region,
        })
    }
}

/// The rows of a split query as four zero-filled series.
fn split_series(rows: &[SplitRow], window: &Window) -> Split {
    let series = |pick: fn(&SplitRow) -> u64| -> Vec<DataPoint> {
        window.series(|day| rows.iter().find(|r| r.day == day).map_or(0, |r| pick(r) as i64))
    };
    Split {
        total: series(|r| r.total),
        new: series(|r| r.new),
        retained: series(|r| r.retained),
        reactivated: series(|r| r.reactivated),
    }
}

/// `GET /__companion/metrics?project_id=&branch_id=&include_anonymous=&now_ms=`, for the
/// metrics function. Requires the shared secret.
pub async fn serve(req: &Request, engine: &MetricsEngine, secret: &str) -> Response {
    let given = shared::http::header(req, metrics::COMPANION_SECRET_HEADER).unwrap_or_default();
    if !shared::identity::crypto::ct_eq(given, secret) {
        return shared::http::text(401, "A valid companion secret is required");
    }
    let param = |name| shared::http::query_param(req, name);
    let (Some(project_id), Some(branch_id)) = (param("project_id"), param("branch_id")) else {
        return shared::http::text(400, "project_id and branch_id are required");
    };
    let Some(now_ms) = param("now_ms").and_then(|n| n.parse::<i64>().ok()) else {
        return shared::http::text(400, "now_ms (milliseconds since the epoch) is required");
    };
    let scope =
        Scope { project_id, branch_id, include_anonymous: param("include_anonymous").as_deref() == Some("true") };
    match engine.activity(&scope, &Window::at(now_ms)).await {
        Ok(activity) => shared::http::json(&activity),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the analytics store failed");
            shared::http::text(503, "The analytics store could not compute the metrics")
        }
    }
}
