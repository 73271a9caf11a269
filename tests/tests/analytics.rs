//! `POST /api/v1/internal/analytics/query` on the native host with the local engine: results,
//! query ids, validation, errors users may see, the guard, and isolation between projects.

use api_tests::{ClickHouseFront, Host, Project};
use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::ClickHouse;

/// A local engine with the schema applied (by the test: not every runtime applies it at start).
async fn engine() -> (ClickHouseFront, ClickHouse) {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    (front, ch)
}

async fn setup() -> (ClickHouseFront, Host, Project, Project) {
    let (front, ch) = engine().await;
    let host = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let (a, b) = (host.create_project(false).await, host.create_project(false).await);
    let mut rows = Vec::new();
    for (project, n) in [(&a, 2), (&b, 5)] {
        for i in 0..n {
            rows.push(json!({ "event_type": "$token-refresh", "event_at": "2026-11-26 10:00:00.000",
                              "data": { "is_anonymous": i == 0 }, "project_id": project.id, "branch_id": "main",
                              "user_id": format!("user-{i}") }));
        }
    }
    ch.insert(&ReqwestClient::new(), "analytics_internal.events", &rows).await.unwrap();
    (front, host, a, b)
}

fn query(h: &Host, p: &Project, body: Value) -> api_tests::Call {
    h.post("/api/v1/internal/analytics/query").admin(p).json(&body)
}

#[tokio::test]
async fn runs_scoped_queries_and_reports_errors_as_the_contract_says() {
    let (_front, h, a, b) = setup().await;

    let res = query(&h, &a, json!({ "query": "SELECT 1 AS value" })).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!(body["result"], json!([{ "value": 1 }]));
    let query_id = body["query_id"].as_str().unwrap();
    let parts: Vec<&str> = query_id.split(':').collect();
    assert_eq!((parts[0], parts[1], parts[2].len()), (a.id.as_str(), "main", 36));

    // Each project sees its own events only, whatever the query says.
    for (p, n) in [(&a, "2"), (&b, "5")] {
        let body = query(&h, p, json!({ "query": "SELECT count() AS c FROM events WHERE project_id != ''" }))
            .send()
            .await
            .json();
        assert_eq!(body["result"][0]["c"], n, "{body}");
    }
    let body =
        query(&h, &a, json!({ "query": format!("SELECT count() AS c FROM events WHERE project_id = '{}'", b.id) }))
            .send()
            .await
            .json();
    assert_eq!(body["result"][0]["c"], "0");

    // Parameters and JSON subcolumns.
    let body = query(
        &h,
        &a,
        json!({ "query": "SELECT countIf(data.is_anonymous = true) AS anon, {x:UInt8} AS x FROM events", "params": { "x": 7 } }),
    )
    .send()
    .await
    .json();
    assert_eq!(body["result"], json!([{ "anon": "1", "x": 7 }]));

    // Errors: a safe message verbatim, a guard refusal, an unsafe one with the test-mode detail.
    let res = query(&h, &a, json!({ "query": "SELEC 1" })).send().await;
    let body = res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
    assert_eq!(body["details"]["error"], body["error"]);
    let res = query(&h, &a, json!({ "query": "SELECT * FROM system.tables" })).send().await;
    let body = res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
    assert!(body["error"].as_str().unwrap().starts_with("Unknown table system.tables"), "{body}");
    let res = query(&h, &a, json!({ "query": "SELECT nosuch FROM events" })).send().await;
    let body = res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
    let text = body["error"].as_str().unwrap();
    assert!(text.starts_with("Error during execution of this query."), "{text}");
    assert!(text.contains("As you are in development mode, you can see the full error: 47 "), "{text}");
    let res = query(&h, &a, json!({ "query": "SELECT 1", "params": { "__stack_project_id": "x" } })).send().await;
    res.assert_known_error(400, "ANALYTICS_QUERY_ERROR");
}

#[tokio::test]
async fn validates_the_body_and_the_caller() {
    let (_front, h, a, _b) = setup().await;
    let res = query(&h, &a, json!({})).send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert_eq!(
        body["error"],
        "Request validation failed on POST /api/v1/internal/analytics/query:\n  - body.query must be defined"
    );
    let res = query(&h, &a, json!({ "query": "SELECT 1", "timeout_ms": 120001 })).send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert!(body["error"].as_str().unwrap().ends_with("  - body.timeout_ms must be less than or equal to 120000"));
    for call in
        [h.post("/api/v1/internal/analytics/query").client(&a), h.post("/api/v1/internal/analytics/query").server(&a)]
    {
        let body =
            call.json(&json!({ "query": "SELECT 1" })).send().await.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
        assert_eq!(body["details"]["allowed_access_types"], json!(["admin"]));
    }
    let res = query(&h, &a, json!({ "query": "SELECT 1", "include_all_branches": true })).send().await;
    assert_eq!(res.status, 400);
}

async fn count_events(h: &Host, p: &Project, event_type: &str, expected: &str) -> String {
    let sql = json!({ "query": "SELECT count() AS c FROM events WHERE event_type = {t:String}", "params": { "t": event_type } });
    let mut last = String::new();
    // Events are written in the background after the response: poll briefly.
    for _ in 0..50 {
        let body = query(h, p, sql.clone()).send().await.json();
        last = body["result"][0]["c"].as_str().unwrap_or_default().to_string();
        if last == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test]
async fn every_mint_logs_session_activity_and_token_refresh_events_visible_to_its_own_project_only() {
    let (front, _) = engine().await;
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let (a, b) = (h.create_project(false).await, h.create_project(false).await);
    let s = h.user_with_session(&a, json!({})).await; // session creation mints: 1
    for _ in 0..2 {
        let res =
            h.post("/api/v1/auth/sessions/current/refresh").client(&a).refresh_token(&s.refresh_token).send().await;
        assert_eq!(res.status, 200);
    }
    let grant = json!({ "grant_type": "refresh_token", "client_id": a.id, "client_secret": "__stack_public_client__", "refresh_token": s.refresh_token });
    assert_eq!(h.post("/api/v1/auth/oauth/token").json(&grant).send().await.status, 200);
    for event_type in ["$token-refresh", "$session-activity"] {
        assert_eq!(count_events(&h, &a, event_type, "4").await, "4", "{event_type}");
        assert_eq!(count_events(&h, &b, event_type, "0").await, "0", "{event_type}");
    }

    let body = query(&h, &a, json!({ "query": "SELECT user_id, refresh_token_id, data.is_anonymous AS anon, branch_id FROM events WHERE event_type = '$token-refresh' LIMIT 1" }))
        .send()
        .await
        .json();
    let row = &body["result"][0];
    assert_eq!(row["user_id"], s.user_id);
    assert_eq!(row["branch_id"], "main");
    assert_eq!(row["anon"], false);
    assert!(row["refresh_token_id"].as_str().is_some_and(|r| r.len() == 36));
    let body = query(&h, &a, json!({ "query": "SELECT toString(data.session_id) AS session, refresh_token_id FROM events WHERE event_type = '$session-activity' LIMIT 1" }))
        .send()
        .await
        .json();
    let row = &body["result"][0];
    assert_eq!(row["session"], row["refresh_token_id"], "{body}");
}
