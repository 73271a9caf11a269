//! The MAU equivalence matrix (docs/api.md §7.7): upstream's thirteen edge cases and one
//! more, each seeded under
//! its own project, where the OLD pipeline (ship distinct ids, normalize and count here) and
//! the NEW query must find the same SET of users, and the expected number of them. Used by the
//! tests and by `companion bench-metrics` before it measures anything.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::ClickHouse;
use shared::analytics::metrics::{clickhouse_time, Window};

use super::{queries, MetricsEngine, Scope, Source};

const A: &str = "a0000000-0000-4000-8000-000000000001";
const B: &str = "a0000000-0000-4000-8000-000000000002";
const C: &str = "a0000000-0000-4000-8000-000000000003";
const D: &str = "a0000000-0000-4000-8000-000000000004";
const E: &str = "a0000000-0000-4000-8000-000000000005";

/// One event of a case: type, time, user id, `data`, and whether it belongs to another project.
struct Event {
    event_type: &'static str,
    at_ms: i64,
    user_id: Option<String>,
    data: Value,
    other_project: bool,
}

fn refresh(user: &str, at_ms: i64, anonymous: Option<bool>) -> Event {
    let data = match anonymous {
        Some(a) => json!({ "is_anonymous": a }),
        None => json!({}),
    };
    Event { event_type: "$token-refresh", at_ms, user_id: Some(user.to_string()), data, other_project: false }
}

pub struct Case {
    pub name: &'static str,
    pub include_anonymous: bool,
    pub expected: usize,
    events: Vec<Event>,
}

/// The cases, for a window ending tomorrow.
pub fn cases(window: &Window) -> Vec<Case> {
    let now = window.now_ms;
    let case = |name, include_anonymous, expected, events| Case { name, include_anonymous, expected, events };
    let mixed = || {
        vec![
            refresh(A, now, Some(false)),
            refresh(B, now, Some(false)),
            refresh(C, now, Some(false)),
            refresh(D, now, Some(true)),
            refresh(E, now, Some(true)),
        ]
    };
    vec![
        case("empty", false, 0, vec![]),
        case("one user, one event", false, 1, vec![refresh(A, now, Some(false))]),
        case("one user, many events", false, 1, (0..50).map(|i| refresh(A, now - i * 60_000, Some(false))).collect()),
        case("anonymous users excluded", false, 3, mixed()),
        case("anonymous users included", true, 5, mixed()),
        case(
            "window boundary",
            false,
            1,
            vec![
                refresh(A, window.since_ms - 1000, Some(false)),
                refresh(B, window.since_ms + 1000, Some(false)),
                refresh(C, window.until_ms, Some(false)),
            ],
        ),
        case(
            "null user id",
            false,
            1,
            vec![Event { user_id: None, ..refresh(A, now, Some(false)) }, refresh(B, now, Some(false))],
        ),
        case(
            "non-UUID user ids",
            false,
            1,
            vec![
                refresh("not-a-uuid", now, Some(false)),
                refresh("a0000000-0000-1000-8000-000000000009", now, Some(false)),
                refresh(A, now, Some(false)),
            ],
        ),
        case(
            "case and spacing of user ids",
            false,
            1,
            vec![
                refresh(A, now, Some(false)),
                refresh(&A.to_uppercase(), now, Some(false)),
                refresh(&format!("  {A} "), now, Some(false)),
            ],
        ),
        // Not in upstream's thirteen: with the plain spelling present, a padded twin proves
        // nothing about trimming.
        case(
            "padded and upper-cased ids alone",
            false,
            2,
            vec![refresh(&format!(" {A}  "), now, Some(false)), refresh(&B.to_uppercase(), now, Some(false))],
        ),
        case(
            "project isolation",
            false,
            1,
            vec![refresh(A, now, Some(false)), Event { other_project: true, ..refresh(B, now, Some(false)) }],
        ),
        case("missing is_anonymous", false, 2, vec![refresh(A, now, None), refresh(B, now, None)]),
        case(
            "null is_anonymous",
            false,
            1,
            vec![Event { data: json!({ "is_anonymous": null }), ..refresh(A, now, None) }],
        ),
        case(
            "other event types ignored",
            false,
            1,
            vec![Event { event_type: "$page-view", ..refresh(A, now, Some(false)) }, refresh(B, now, Some(false))],
        ),
    ]
}

/// What one case found.
pub struct Outcome {
    pub old: BTreeSet<String>,
    pub new: BTreeSet<String>,
    pub new_count: usize,
    /// MAU as the metrics endpoint reports it (the engine's whole computation, from the rollups).
    pub endpoint_mau: usize,
    /// Whether every metric from the rollups equals the same metric from the raw events.
    pub rollups_match_raw: bool,
}

/// Seeds `case` under `project_id` (and `<project_id>-other`), then runs OLD and NEW.
pub async fn run(
    case: &Case,
    project_id: &str,
    window: &Window,
    store: &ClickHouse,
    engine: &MetricsEngine,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let rows: Vec<Value> = case
        .events
        .iter()
        .map(|e| {
            let project = if e.other_project { format!("{project_id}-other") } else { project_id.to_string() };
            json!({ "event_type": e.event_type, "event_at": clickhouse_time(e.at_ms), "data": e.data,
                    "project_id": project, "branch_id": "main", "user_id": e.user_id })
        })
        .collect();
    if !rows.is_empty() {
        store.insert(&ReqwestClient::new(), "analytics_internal.events", &rows).await?;
    }
    let scope = Scope {
        project_id: project_id.to_string(),
        branch_id: "main".into(),
        include_anonymous: case.include_anonymous,
    };
    let old_ids = engine.query("mau_old", &queries::mau_old_ids(), &scope, window).fetch_all::<String>().await?;
    let new = engine.query("mau_set", &queries::mau_user_set(), &scope, window).fetch_all::<String>().await?;
    let new_count = engine.query("mau", &queries::mau(), &scope, window).fetch_one::<u64>().await?;
    let from_rollups = engine.compute(&scope, window).await?;
    let from_raw = engine.compute_from(Source::RawEvents, &scope, window).await?;
    Ok(Outcome {
        old: queries::normalize_old(old_ids),
        new: new.into_iter().collect(),
        new_count: new_count as usize,
        endpoint_mau: from_rollups.mau as usize,
        rollups_match_raw: from_rollups == from_raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_and_new_mau_find_the_same_users_in_every_edge_case() {
        let front = api_tests::ClickHouseFront::start();
        let config = crate::metrics::admin_store(&front.url, None);
        let store = config.admin_client();
        shared::analytics::clickhouse::apply_schema(&store, &ReqwestClient::new(), None).await.unwrap();
        let engine = MetricsEngine::uncached(&config);
        let window = Window::at(chrono::Utc::now().timestamp_millis());
        let cases = cases(&window);
        assert_eq!(cases.len(), 14);
        for (i, case) in cases.iter().enumerate() {
            let outcome = run(case, &format!("mau-matrix-{i}"), &window, &store, &engine).await.unwrap();
            assert_eq!(outcome.old, outcome.new, "{}: OLD and NEW users differ", case.name);
            assert_eq!(outcome.new_count, outcome.new.len(), "{}: the count is the set's size", case.name);
            assert_eq!(outcome.new_count, case.expected, "{}", case.name);
            assert_eq!(outcome.endpoint_mau, case.expected, "{}: the endpoint's MAU", case.name);
            assert!(outcome.rollups_match_raw, "{}: the rollups' metrics differ from the raw events'", case.name);
        }
    }
}
