//! The ClickHouse port (shared::analytics::clickhouse) against the local engine (chdb behind the front):
//! DDL, JSONEachRow inserts and reads, query parameters, settings, and server errors.

use api_tests::ClickHouseFront;
use serde_json::json;
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, ClickHouseError, Query};

fn client(front: &ClickHouseFront) -> ClickHouse {
    ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None }
}

/// A fresh local engine, a client for it and the outbound HTTP adapter.
fn engine() -> (ClickHouseFront, ClickHouse, ReqwestClient) {
    let front = ClickHouseFront::start();
    let ch = client(&front);
    (front, ch, ReqwestClient::new())
}

fn server_code(e: ClickHouseError) -> (u32, String) {
    match e {
        ClickHouseError::Server { code, name, .. } => (code, name),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn queries_inserts_parameters_settings_and_errors() {
    let (front, ch, http) = engine();

    ch.execute(
        &http,
        &Query::new(
            "CREATE TABLE t (project_id String, n UInt32, data JSON) ENGINE = MergeTree ORDER BY (project_id, n)",
        ),
    )
    .await
    .unwrap();
    let rows = [
        json!({ "project_id": "a", "n": 1, "data": { "is_anonymous": false } }),
        json!({ "project_id": "a", "n": 2, "data": { "is_anonymous": true } }),
        json!({ "project_id": "b", "n": 3, "data": { "is_anonymous": false } }),
    ];
    ch.insert(&http, "t", &rows).await.unwrap();

    let q = Query::new("SELECT n, data.is_anonymous AS anon FROM t WHERE project_id = {p:String} ORDER BY n")
        .param("p", "a");
    let got = ch.rows(&http, &q).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["n"], 1);
    assert_eq!(got[1]["anon"], true);

    // 64-bit integers come back as strings in JSONEachRow, as ClickHouse sends them.
    let got = ch.rows(&http, &Query::new("SELECT count() AS c FROM t")).await.unwrap();
    assert_eq!(got[0]["c"], "3");

    // Settings: result limits and read-only mode.
    let limited = Query::new("SELECT n FROM t").setting("max_result_rows", 1).setting("result_overflow_mode", "throw");
    assert_eq!(server_code(ch.rows(&http, &limited).await.unwrap_err()).1, "TOO_MANY_ROWS_OR_BYTES");
    let readonly = Query::new("CREATE TABLE u (x UInt8) ENGINE = Memory").setting("readonly", 1);
    assert_eq!(server_code(ch.execute(&http, &readonly).await.unwrap_err()), (164, "READONLY".into()));

    // Errors keep ClickHouse's code, name and message.
    let err = ch.rows(&http, &Query::new("SELECT nosuch FROM t")).await.unwrap_err();
    match err {
        ClickHouseError::Server { code: 47, name, message } => {
            assert_eq!(name, "UNKNOWN_IDENTIFIER");
            assert!(message.contains("nosuch"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server_code(ch.rows(&http, &Query::new("SELEC 1")).await.unwrap_err()).0, 62);

    // An unreachable server is a transport error, not a server error.
    let gone = ClickHouse { url: "http://127.0.0.1:9".into(), ..client(&front) };
    assert!(matches!(gone.rows(&http, &Query::new("SELECT 1")).await, Err(ClickHouseError::Transport(_))));
}

/// The query guard's scoped SQL runs on the real engine and sees one project only, while
/// valid analytics SQL keeps working. (The full attack and usability corpora come with the
/// analytics endpoint.)
#[tokio::test]
async fn guarded_queries_see_only_their_own_project() {
    use shared::analytics::query_guard::{scope, BRANCH_PARAM, PROJECT_PARAM};
    let (_front, ch, http) = engine();
    ch.execute(
        &http,
        &Query::new(
            "CREATE TABLE events (event_type LowCardinality(String), event_at DateTime64(3, 'UTC'), data JSON, \
             project_id String, branch_id String, user_id Nullable(String)) ENGINE = MergeTree ORDER BY (project_id, branch_id, event_at)",
        ),
    )
    .await
    .unwrap();
    let mut rows = Vec::new();
    for (project, branch, n) in [("a", "main", 3), ("b", "main", 5), ("a", "dev", 7)] {
        for i in 0..n {
            rows.push(json!({
                "event_type": if i % 2 == 0 { "$token-refresh" } else { "$click" },
                "event_at": format!("2026-11-2{} 10:00:00.000", i % 5),
                "data": { "is_anonymous": i % 3 == 0 },
                "project_id": project, "branch_id": branch, "user_id": format!("u{i}"),
            }));
        }
    }
    ch.insert(&http, "events", &rows).await.unwrap();

    let run = |sql: &str| {
        let scoped = scope(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let query = Query::new(scoped).param(PROJECT_PARAM, "a").param(BRANCH_PARAM, "main");
        let (ch, http) = (ch.clone(), &http);
        async move { ch.rows(http, &query).await }
    };
    let count =
        |rows: Vec<serde_json::Map<String, serde_json::Value>>| rows[0]["c"].as_str().unwrap().parse::<u64>().unwrap();

    // Attempts to read another project or branch see rows of project a, branch main only.
    for sql in [
        "SELECT project_id, branch_id FROM events",
        "SELECT project_id, branch_id FROM events WHERE project_id = 'b'",
        "SELECT project_id, branch_id FROM events WHERE 1 = 1 OR project_id = 'b'",
        "SELECT project_id, branch_id FROM (SELECT * FROM events UNION ALL SELECT * FROM default.events)",
        "SELECT e.project_id, e.branch_id FROM events AS e WHERE e.branch_id = 'dev'",
        "SELECT project_id, branch_id FROM `events`",
        "WITH x AS (SELECT * FROM events) SELECT project_id, branch_id FROM x",
        "SELECT project_id, branch_id FROM events WHERE user_id IN (SELECT user_id FROM events)",
    ] {
        for row in run(sql).await.unwrap() {
            assert_eq!((row["project_id"].as_str(), row["branch_id"].as_str()), (Some("a"), Some("main")), "{sql}");
        }
    }
    assert_eq!(count(run("SELECT count() AS c FROM events").await.unwrap()), 3);
    // Valid analytics SQL still works on the scoped text.
    let rows =
        run("SELECT event_type, count() AS c FROM events GROUP BY event_type ORDER BY event_type").await.unwrap();
    assert_eq!(rows.len(), 2);
    let rows = run("SELECT countIf(data.is_anonymous = true) AS c FROM events").await.unwrap();
    assert_eq!(count(rows), 1);
    let rows = run("SELECT uniqExact(sipHash64(lower(trim(assumeNotNull(user_id))))) AS c FROM events").await.unwrap();
    assert_eq!(count(rows), 3);
    let rows =
        run("SELECT user_id, row_number() OVER (ORDER BY event_at) AS rn FROM events ORDER BY rn").await.unwrap();
    assert_eq!(rows.len(), 3);
    let rows =
        run("SELECT arrayMap(x -> x * 2, [1, 2]) AS a, toStartOfDay(max(event_at)) AS d FROM events").await.unwrap();
    assert_eq!(rows[0]["a"], json!([2, 4]));
}

/// The schema applies to the local engine (twice: it is idempotent) and its views show what
/// the tables hold: events as inserted, sync tables without deleted rows.
#[tokio::test]
async fn the_schema_applies_and_the_views_work() {
    use shared::analytics::clickhouse::{apply_schema, schema_statements};
    let statements = schema_statements();
    assert_eq!(statements.iter().filter(|s| s.sql.starts_with("CREATE OR REPLACE VIEW")).count(), 12);
    assert!(statements.iter().any(|s| s.access_control && s.sql.starts_with("CREATE ROW POLICY")));
    let (_front, ch, http) = engine();
    apply_schema(&ch, &http, None).await.unwrap();
    apply_schema(&ch, &http, None).await.unwrap();

    ch.insert(
        &http,
        "analytics_internal.events",
        &[json!({ "event_type": "$token-refresh", "event_at": "2026-11-26 10:00:00.000", "data": { "refresh_token_id": "r1", "is_anonymous": false },
                  "project_id": "p", "branch_id": "main", "user_id": "u1", "refresh_token_id": "r1" })],
    )
    .await
    .unwrap();
    let rows =
        ch.rows(&http, &Query::new("SELECT event_type, data.refresh_token_id AS r FROM default.events")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["r"], "r1");

    let user = |deleted: u8, seq: i64| {
        json!({ "project_id": "p", "branch_id": "main", "id": "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f", "display_name": "Ada",
                "primary_email_verified": 0, "signed_up_at": "2026-11-26 10:00:00.000", "client_metadata": "{}",
                "client_read_only_metadata": "{}", "server_metadata": "{}", "is_anonymous": 0, "restricted_by_admin": 0,
                "sync_sequence_id": seq, "sync_is_deleted": deleted })
    };
    ch.insert(&http, "analytics_internal.users", &[user(0, 1)]).await.unwrap();
    let count = |rows: Vec<serde_json::Map<String, serde_json::Value>>| rows[0]["c"].as_str().unwrap().to_string();
    assert_eq!(count(ch.rows(&http, &Query::new("SELECT count() AS c FROM default.users")).await.unwrap()), "1");
    ch.insert(&http, "analytics_internal.users", &[user(1, 2)]).await.unwrap();
    assert_eq!(
        count(ch.rows(&http, &Query::new("SELECT count() AS c FROM default.users")).await.unwrap()),
        "0",
        "deleted by the newer sync row"
    );
}
