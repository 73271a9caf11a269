//! The rollups against the raw events on a fixture that exercises every metric (tests only):
//! the metrics endpoint's fixture (tests/tests/metrics.rs) plus teams, anonymity that changes,
//! page views with and without their own anonymity, activity before the window and events
//! stamped after it, for today's window and two whose first day is on a 64-day block's edge.
//! Part of it is written before the rollups exist, as on a store that is
//! upgraded, so the migration's fill is checked too; the rest flows through the views.

use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{apply_schema, Query};
use shared::analytics::metrics::{clickhouse_time, Window};

use super::{MetricsEngine, Scope, Source};

const DAY: i64 = 86_400_000;
const U1: &str = "b0000000-0000-4000-8000-000000000001";
const U2: &str = "b0000000-0000-4000-8000-000000000002";
const U3: &str = "b0000000-0000-4000-8000-000000000003";
const U4: &str = "b0000000-0000-4000-8000-000000000004";
const U9: &str = "b0000000-0000-4000-8000-000000000009";

fn event(event_type: &str, at: i64, user: &str, team: Option<&str>, data: Value) -> Value {
    json!({ "event_type": event_type, "event_at": clickhouse_time(at), "data": data,
            "branch_id": "main", "user_id": user, "team_id": team })
}

/// `events` under `project`.
fn of(project: &str, mut events: Vec<Value>) -> Vec<Value> {
    for e in &mut events {
        e["project_id"] = json!(project);
    }
    events
}

/// The windows checked, each under its own project: today's, and two earlier ones whose
/// first day is a 64-day block's last and first day (a window mask's two edge cases).
fn windows() -> Vec<(String, Window)> {
    let today = chrono::Utc::now().timestamp_millis().div_euclid(DAY);
    let starting_at = |offset: i64| {
        let day = (1..=64).map(|k| today - k).find(|d| (d - 30).rem_euclid(64) == offset).unwrap();
        Window::at(day * DAY + DAY / 2)
    };
    vec![
        ("equality-today".into(), Window::at(chrono::Utc::now().timestamp_millis())),
        ("equality-block-end".into(), starting_at(63)),
        ("equality-block-start".into(), starting_at(0)),
    ]
}

fn refresh(at: i64, user: &str, data: Value) -> Value {
    event("$token-refresh", at, user, None, data)
}

fn located(anonymous: bool, cc: &str, rc: Option<&str>) -> Value {
    json!({ "is_anonymous": anonymous, "ip_info": { "country_code": cc, "region_code": rc } })
}

/// Before the upgrade: the endpoint fixture's older activity, a team's, and more.
fn before_upgrade(now: i64) -> Vec<Value> {
    vec![
        refresh(now - DAY, U1, located(false, "US", Some("CA"))),
        refresh(now - 3 * DAY, U1, located(false, "FR", None)),
        refresh(now - 5 * DAY, U2, located(false, "DE", Some("BE"))),
        refresh(now - 2 * DAY, U9, located(false, "US", Some("CA"))),
        // U4: anonymous long before the window, a signed-up user since; seen 40 days ago.
        refresh(now - 40 * DAY, U4, json!({ "is_anonymous": true })),
        refresh(now - 4 * DAY, U4, located(false, "", None)),
        event("$token-refresh", now - 2 * DAY, U1, Some("t1"), json!({ "is_anonymous": false })),
        event("$token-refresh", now - 45 * DAY, U2, Some("t2"), json!({})),
        event("$token-refresh", now - DAY, U2, Some("t2"), json!({})),
        event("$page-view", now - 2 * DAY, U2, None, json!({})),
        event("$page-view", now - 4 * DAY, U4, None, json!({ "referrer": "https://b.example/" })),
    ]
}

/// After the upgrade: today's refreshes (the mints of the endpoint fixture), views, a
/// team's, an anonymous user's, and a refresh stamped at the window's end.
fn after_upgrade(now: i64, window: &Window) -> Vec<Value> {
    vec![
        refresh(now, U1, json!({ "is_anonymous": false })),
        refresh(now, U2, json!({ "is_anonymous": false, "ip_info": { "country_code": "DE" } })),
        refresh(now, U3, json!({ "is_anonymous": true })),
        event("$token-refresh", now, U1, Some("t1"), json!({})),
        event("$token-refresh", now, U9, Some("t2"), json!({})),
        refresh(window.until_ms, U9, located(false, "JP", None)),
        event("$page-view", now, U1, None, json!({ "referrer": "https://a.example/x" })),
        event("$page-view", now, U1, None, json!({ "referrer": "https://a.example/x" })),
        event("$click", now, U1, None, json!({})),
        event("$page-view", now, U3, None, json!({ "referrer": "https://anon.example/" })),
        event("$page-view", now, U3, None, json!({ "referrer": "https://anon.example/", "is_anonymous": false })),
        event("$page-view", now - DAY, U1, None, json!({ "is_anonymous": true })),
        event("$click", now - 3 * DAY, U9, None, json!({ "referrer": "https://b.example/" })),
    ]
}

#[tokio::test]
async fn the_rollups_give_the_raw_events_answers_also_after_an_upgrade() {
    let front = api_tests::ClickHouseFront::start();
    let config = super::admin_store(&front.url, None);
    let ch = config.admin_client();
    let http = ReqwestClient::new();
    apply_schema(&ch, &http, None).await.unwrap();
    // A store from before the rollups: no views, no rollup tables filled, none recorded.
    for statement in shared::analytics::clickhouse::schema_statements() {
        if let Some(table) = statement.rollup {
            ch.execute(&http, &Query::new(format!("DROP VIEW {table}_mv"))).await.unwrap();
            ch.execute(&http, &Query::new(format!("TRUNCATE TABLE {table}"))).await.unwrap();
        }
    }
    ch.execute(&http, &Query::new("TRUNCATE TABLE analytics_internal._stack_rollups")).await.unwrap();

    let windows = windows();
    for (project, window) in &windows {
        ch.insert(&http, "analytics_internal.events", &of(project, before_upgrade(window.now_ms))).await.unwrap();
    }
    apply_schema(&ch, &http, None).await.unwrap();
    for (project, window) in &windows {
        ch.insert(&http, "analytics_internal.events", &of(project, after_upgrade(window.now_ms, window)))
            .await
            .unwrap();
    }
    // A second application changes nothing (the fill is not repeated).
    apply_schema(&ch, &http, None).await.unwrap();

    let engine = MetricsEngine::uncached(&config);
    for ((project, window), include_anonymous) in windows.iter().flat_map(|w| [(w, false), (w, true)]) {
        let scope = Scope { project_id: project.clone(), branch_id: "main".into(), include_anonymous };
        let raw = engine.compute_from(Source::RawEvents, &scope, window).await.unwrap();
        let rollups = engine.compute(&scope, window).await.unwrap();
        assert_eq!(rollups, raw, "{project}, include_anonymous={include_anonymous}");
        // The fixture reaches every metric (an all-zero answer would match too easily).
        let sum = |s: &[shared::analytics::metrics::DataPoint]| s.iter().map(|p| p.activity).sum::<i64>();
        assert!(raw.mau >= 4 && raw.online_live >= 2 && raw.visitors >= 2 && raw.top_region.is_some());
        let split = &raw.daily_active_users_split;
        assert!(sum(&split.new) > 0 && sum(&split.retained) > 0 && sum(&split.reactivated) > 0);
        let teams = &raw.daily_active_teams_split;
        assert!(sum(&teams.new) > 0 && sum(&teams.retained) > 0 && sum(&teams.reactivated) > 0, "{teams:?}");
        assert!(sum(&raw.daily_page_views) >= 3 && sum(&raw.daily_clicks) >= 2);
        assert!(raw.users_by_country.len() >= 2 && raw.top_referrers.len() >= 2);
    }
}
