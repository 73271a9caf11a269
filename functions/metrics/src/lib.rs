//! The metrics function (docs/api.md §7): `GET /api/v1/internal/metrics`, a project's
//! dashboard numbers over the last 31 days.
//!
//! Fields that live in the primary store (users, sign-ups, counts, recent users) are computed
//! here over the SQL port. The analytics-store fields (MAU, daily actives and their splits,
//! countries, page views, visitors, referrers, region, online) come from the native
//! companion's metrics engine, which runs them as ClickHouse aggregates; this function asks it
//! over HTTP with a shared secret. When the companion cannot answer, the request fails with
//! 503 and `Retry-After`: a dashboard with half its numbers silently zero would mislead.
//!
//! The email outbox and session replays are in this function's store too (`records.rs`).
//! Payments, teams and auth methods are not part of this system: their fields keep upstream's
//! shape with zero values, and docs/api.md §7.3 says which ones have no source here.

shared::function_entries!(crate::FUNCTION);

mod records;

use serde_json::{json, Value};

use shared::analytics::metrics::{Activity, Window};
use shared::function::{Function, Route};
use shared::http::error::{ApiError, ApiResult};
use shared::http::{json, query_param, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, ADMIN_ONLY};
use shared::identity::tenancy::Tenancy;
use shared::identity::users::{User, USER_COLUMNS};
use shared::store::ports::SqlValue;
use shared::Context;

/// The companion's endpoint for the analytics-store fields.
pub const COMPANION_PATH: &str = "/__companion/metrics";
/// The header that carries the companion's shared secret.
pub const COMPANION_SECRET_HEADER: &str = "x-stack-companion-secret";
/// What a client is told to wait before retrying when the companion is unavailable.
const RETRY_AFTER_SECONDS: u32 = 30;
const RECENTLY_REGISTERED: i64 = 100;
const RECENTLY_ACTIVE: i64 = 5;

/// The metrics function: a project's dashboard numbers.
pub const FUNCTION: Function = Function {
    name: "metrics",
    routes: &[Route::at("/api/v1/internal/metrics").get(|c| Box::pin(metrics(c.ctx, c.req)))],
    crons: &[],
    scheduled: None,
    health: None,
};

async fn metrics(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    let include_anonymous = query_param(req, "include_anonymous").as_deref() == Some("true");
    let window = Window::at(ctx.now());
    let activity = match companion_activity(ctx, &auth.tenancy, include_anonymous, &window).await {
        Ok(activity) => activity,
        Err(Unavailable(reason)) => {
            tracing::warn!(%reason, "metrics: the companion is unavailable");
            let body = json!({ "error": "Metrics are temporarily unavailable: the metrics engine cannot be reached. Retry shortly." });
            let mut response = shared::http::json_with_status(503, &body);
            response.headers_mut().insert("retry-after", RETRY_AFTER_SECONDS.into());
            return Ok(response);
        }
    };
    let users = user_metrics(ctx, &auth.tenancy, include_anonymous, &window).await?;
    let records = Records {
        email_overview: records::email_overview(ctx, &auth.tenancy, &window).await?,
        replays: records::replay_fields(ctx, &auth.tenancy, &window).await?,
    };
    Ok(json(&assemble(users, activity, records, &window)))
}

/// Why the companion gave no answer.
struct Unavailable(String);

/// Asks the companion for the analytics-store fields.
async fn companion_activity(
    ctx: &Context,
    tenancy: &Tenancy,
    include_anonymous: bool,
    window: &Window,
) -> Result<Activity, Unavailable> {
    let companion = ctx.config.companion.as_ref();
    let (companion, base) = companion
        .and_then(|c| Some((c, c.url.as_deref()?)))
        .ok_or_else(|| Unavailable("STACK_COMPANION_URL is not set".into()))?;
    let mut url = url::Url::parse(&format!("{base}{COMPANION_PATH}")).map_err(|e| Unavailable(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("project_id", &tenancy.project_id)
        .append_pair("branch_id", &tenancy.branch_id)
        .append_pair("include_anonymous", if include_anonymous { "true" } else { "false" })
        .append_pair("now_ms", &window.now_ms.to_string());
    let request = http::Request::get(url.as_str())
        .header(COMPANION_SECRET_HEADER, &companion.secret)
        .body(Vec::new())
        .map_err(|e| Unavailable(e.to_string()))?;
    let response = ctx.http.send(request).await.map_err(|e| Unavailable(e.to_string()))?;
    if !response.status().is_success() {
        let text = String::from_utf8_lossy(response.body()).chars().take(300).collect::<String>();
        return Err(Unavailable(format!("HTTP {}: {text}", response.status())));
    }
    serde_json::from_slice(response.body()).map_err(|e| Unavailable(format!("undecodable answer: {e}")))
}

/// The primary-store fields.
struct UserMetrics {
    total: i64,
    anonymous: i64,
    verified: i64,
    include_anonymous: bool,
    signups_by_day: Vec<(String, i64)>,
    recently_registered: Vec<User>,
    recently_active: Vec<User>,
}

async fn user_metrics(
    ctx: &Context,
    tenancy: &Tenancy,
    include_anonymous: bool,
    window: &Window,
) -> ApiResult<UserMetrics> {
    let tenancy_id = SqlValue::from(tenancy.id.as_str());
    let counts = ctx
        .store
        .query(
            "SELECT count(*) AS total, coalesce(sum(is_anonymous), 0) AS anonymous, \
             coalesce(sum(CASE WHEN is_anonymous = 0 AND primary_email IS NOT NULL AND primary_email_verified = 1 \
             THEN 1 ELSE 0 END), 0) AS verified FROM users WHERE tenancy_id = ?",
            std::slice::from_ref(&tenancy_id),
        )
        .await?;
    let row = counts.first().ok_or_else(|| ApiError::internal("count query returned no row"))?;
    let (total, anonymous, verified) = (row.int("total")?, row.int("anonymous")?, row.int("verified")?);

    // Sign-ups per UTC day (day number since the epoch), in the window.
    let anonymous_filter = if include_anonymous { "" } else { " AND is_anonymous = 0" };
    let signups = ctx
        .store
        .query(
            &format!(
                "SELECT signed_up_at / 86400000 AS day, count(*) AS n FROM users \
                 WHERE tenancy_id = ? AND signed_up_at >= ? AND signed_up_at < ?{anonymous_filter} GROUP BY day"
            ),
            &[tenancy_id.clone(), window.since_ms.into(), window.until_ms.into()],
        )
        .await?;
    let mut signups_by_day = Vec::new();
    for row in &signups {
        let day = row.int("day")?;
        signups_by_day.push((shared::analytics::metrics::date(day * 86_400_000), row.int("n")?));
    }

    let recent = |order: &'static str, limit: i64| {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenancy_id = ?{} ORDER BY u.{order} DESC, u.id LIMIT {limit}",
            anonymous_filter.replace("is_anonymous", "u.is_anonymous")
        );
        let params = [tenancy_id.clone()];
        async move {
            let rows = ctx.store.query(&sql, &params).await?;
            rows.iter().map(|r| User::from_row(r).map_err(ApiError::from)).collect::<ApiResult<Vec<User>>>()
        }
    };
    let recently_registered = recent("signed_up_at", RECENTLY_REGISTERED).await?;
    let recently_active = recent("last_active_at", RECENTLY_ACTIVE).await?;
    Ok(UserMetrics {
        total,
        anonymous,
        verified,
        include_anonymous,
        signups_by_day,
        recently_registered,
        recently_active,
    })
}

/// A user as the dashboard lists it (upstream's admin user object, the fields this system has).
fn recent_user(user: &User) -> Value {
    let mut value = user.to_json();
    value["profile_image_url"] = Value::Null;
    value
}

/// The outbox and replay fields (`records.rs`).
struct Records {
    email_overview: Value,
    /// Total replays, recent replays, their mean length in seconds.
    replays: (i64, i64, f64),
}

/// The response of docs/api.md §7.3.
fn assemble(users: UserMetrics, activity: Activity, records: Records, window: &Window) -> Value {
    let (total_replays, recent_replays, avg_session_seconds) = records.replays;
    let zeros = window.series(|_| 0);
    let total_users_filtered = if users.include_anonymous { users.total } else { users.total - users.anonymous };
    let daily_users = window.series(|day| users.signups_by_day.iter().find(|(d, _)| d == day).map_or(0, |(_, n)| *n));
    let daily_revenue: Vec<Value> =
        window.days().iter().map(|d| json!({ "date": d, "new_cents": 0, "refund_cents": 0 })).collect();
    json!({
        "total_users": total_users_filtered,
        "daily_users": daily_users,
        "daily_active_users": activity.daily_active_users,
        "users_by_country": activity.users_by_country,
        "recently_registered": users.recently_registered.iter().map(recent_user).collect::<Vec<_>>(),
        "recently_active": users.recently_active.iter().map(recent_user).collect::<Vec<_>>(),
        // This system has no auth-method records yet (sign-in flows are outside the slice).
        "login_methods": [],
        "auth_overview": {
            "verified_users": users.verified,
            "unverified_users": users.total - users.anonymous - users.verified,
            "anonymous_users": users.anonymous,
            "total_teams": 0,
            "mau": activity.mau,
            "daily_active_users_split": activity.daily_active_users_split,
            "daily_active_teams_split": activity.daily_active_teams_split,
            "total_users_filtered": total_users_filtered,
        },
        "payments_overview": {
            "subscriptions_by_status": {},
            "active_subscription_count": 0,
            "total_one_time_purchases": 0,
            "daily_subscriptions": zeros,
            "revenue_cents": 0,
            "mrr_cents": 0,
            "total_orders": 0,
            "checkout_conversion_rate": 0,
        },
        "email_overview": records.email_overview,
        "analytics_overview": {
            "daily_page_views": activity.daily_page_views,
            "daily_clicks": activity.daily_clicks,
            "daily_visitors": activity.daily_visitors,
            "daily_revenue": daily_revenue,
            "total_revenue_cents": 0,
            "total_replays": total_replays,
            "recent_replays": recent_replays,
            "visitors": activity.visitors,
            "avg_session_seconds": avg_session_seconds,
            "online_live": activity.online_live,
            "revenue_per_visitor": 0,
            "top_referrers": activity.top_referrers,
            "top_region": activity.top_region,
        },
    })
}
