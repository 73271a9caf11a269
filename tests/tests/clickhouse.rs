//! The ClickHouse port (shared::clickhouse) against the local engine (chdb behind the front):
//! DDL, JSONEachRow inserts and reads, query parameters, settings, and server errors.

use api_tests::ClickHouseFront;
use serde_json::json;
use shared::adapters::native::ReqwestClient;
use shared::clickhouse::{ClickHouse, ClickHouseError, Query};

fn client(front: &ClickHouseFront) -> ClickHouse {
    ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None }
}

fn server_code(e: ClickHouseError) -> (u32, String) {
    match e {
        ClickHouseError::Server { code, name, .. } => (code, name),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn queries_inserts_parameters_settings_and_errors() {
    let front = ClickHouseFront::start();
    let ch = client(&front);
    let http = ReqwestClient::new();

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
