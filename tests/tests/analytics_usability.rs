//! Usability of the analytics endpoint: every query of `tests/corpus/analytics-usability.sql`
//! (window functions, JSON subcolumns, arrays and lambdas, CTEs, parametric aggregates, joins,
//! date functions, ...) is accepted by the guard and returns exactly the rows the same SQL
//! returns when run directly on a database that holds only the project's own rows.
//!
//! Two projects (and a second branch of the first) hold overlapping data, so a query that read
//! another tenancy's rows would answer differently; the test also checks that most of the
//! corpus does answer differently over everyone's rows, so it would notice.

use api_tests::analytics_data::{seed, usability_corpus, Data};
use api_tests::{ClickHouseFront, Host, Project};
use serde_json::{json, Map, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};
use shared::analytics::query_guard::EXPOSED_TABLES;

/// A database holding only `project`'s rows of branch `main`, in tables named like the views.
async fn own_database(ch: &ClickHouse, project: &str) -> ClickHouse {
    let http = ReqwestClient::new();
    ch.execute(&http, &Query::new("CREATE DATABASE own")).await.unwrap();
    for table in EXPOSED_TABLES {
        let sql = format!(
            "CREATE TABLE own.{table} ENGINE = Memory AS SELECT * FROM default.{table} \
             WHERE project_id = {{p:String}} AND branch_id = 'main'"
        );
        ch.execute(&http, &Query::new(sql).param("p", project)).await.unwrap();
    }
    ClickHouse { database: "own".into(), ..ch.clone() }
}

fn endpoint_query(h: &Host, p: &Project, sql: &str) -> api_tests::Call {
    h.post("/api/v1/internal/analytics/query").admin(p).json(&json!({ "query": sql }))
}

#[tokio::test]
async fn every_corpus_query_returns_the_rows_of_a_direct_run_on_own_data() {
    let corpus = usability_corpus();
    assert!(corpus.len() >= 60, "the corpus has {} queries", corpus.len());

    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    let http = ReqwestClient::new();
    shared::analytics::clickhouse::apply_schema(&ch, &http, None).await.unwrap();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let (a, b) = (h.create_project(false).await, h.create_project(false).await);
    let types = "$page-view,$click,$token-refresh,$session-activity";
    let own_data = Data {
        k: 2,
        events: 600,
        first_user: 100,
        users: 40,
        event_types: types,
        first_day: "2026-11-01",
        days: 25,
        domain: "a.example",
    };
    let other_branch = Data { k: 4, events: 150, first_user: 500, domain: "dev.a.example", ..own_data };
    let other_project = Data {
        k: 3,
        events: 1500,
        first_user: 0,
        users: 60,
        event_types: "$page-view,$click,$token-refresh,$session-activity,$purchase",
        first_day: "2026-10-20",
        days: 40,
        domain: "b.example",
    };
    seed(&ch, &a.id, "main", &own_data).await;
    seed(&ch, &a.id, "dev", &other_branch).await;
    seed(&ch, &b.id, "main", &other_project).await;
    let own = own_database(&ch, &a.id).await;

    let mut same_over_everyone = Vec::new();
    for sql in &corpus {
        let res = endpoint_query(&h, &a, sql).send().await;
        assert_eq!(res.status, 200, "{sql}\n{}", res.text);
        let through_endpoint = res.json()["result"].clone();
        let direct: Vec<Map<String, Value>> =
            own.rows(&http, &Query::new(sql.as_str())).await.unwrap_or_else(|e| panic!("{sql}\ndirect run: {e}"));
        assert!(!direct.is_empty(), "{sql}: the corpus queries return rows");
        assert_eq!(through_endpoint, json!(direct), "{sql}");

        let everyone = ch.rows(&http, &Query::new(sql.as_str())).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        if json!(everyone) == through_endpoint {
            same_over_everyone.push(sql.as_str());
        }
    }
    // Only the queries on literals alone (`arrayMap(x -> x * 2, [1, 2, 3])`, ...) may answer
    // the same over everyone's rows.
    assert!(same_over_everyone.len() <= 3, "these answer the same over every tenancy's rows: {same_over_everyone:#?}");
}
