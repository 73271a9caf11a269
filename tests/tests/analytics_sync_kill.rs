//! A sync step killed with SIGKILL midway (docs/api.md §6.6) resumes without loss or
//! duplicates: 100,000 users in two projects, the native host killed once the first batch is
//! marked, started again on the same folder, and every user counted once under `FINAL`.
//! Native only: SIGKILL of `wrangler dev` would leave its workerd running (README, Runtimes);
//! the step's code and SQL are the same on every runtime.

use api_tests::{ClickHouseFront, Host, Launch, Project};
use serde_json::json;
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};

async fn engine() -> (ClickHouseFront, ClickHouse) {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    (front, ch)
}

/// Fires the sync's cron and waits until the log is empty (nothing else writes here).
async fn sync(h: &Host) {
    let res = h.get("/__scheduled?cron=*+*+*+*+*").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    for _ in 0..600 {
        if h.db_query("SELECT count(*) FROM sync_changes", &[])[0][0] == "0" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the sync step did not finish");
}

async fn admin_count(h: &Host, p: &Project) -> serde_json::Value {
    let res = h
        .post("/api/v1/internal/analytics/query")
        .admin(p)
        .json(&json!({ "query": "SELECT count() AS n FROM users" }))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()["result"][0]["n"].clone()
}

/// Users written straight into the store, `n` for `tenancy`, with ids that say which.
fn insert_users(h: &Host, tenancy: &str, tag: u32, n: u32) {
    let sql = format!(
        "WITH RECURSIVE i(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM i WHERE k < {n}) \
         INSERT INTO users (tenancy_id, id, display_name, signed_up_at, last_active_at) \
         SELECT ?1, printf('%08x-0000-4000-8000-%012x', {tag}, k), 'user ' || k, 1764000000000 + k, 1764000000000 FROM i"
    );
    assert_eq!(h.db_execute(&sql, &[tenancy]), n as usize);
}

#[tokio::test]
async fn a_sync_killed_midway_resumes_without_loss_or_duplicates() {
    let (_front, ch) = engine().await;
    let dir = std::env::temp_dir().join("stack-edge-tests").join(format!("host-{}-sync-kill", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = [("STACK_CLICKHOUSE_URL", ch.url.as_str())];
    let launch =
        || Host::launch(Launch { env: &env, data_dir: Some(dir.clone()), test_scheduled: true, ..Launch::default() });
    let mut h = launch();
    let (a, b) = (h.create_project(false).await, h.create_project(false).await);
    let tenancy = |p: &Project| h.db_query("SELECT id FROM tenancies WHERE project_id = ?", &[&p.id])[0][0].clone();
    let (ta, tb) = (tenancy(&a), tenancy(&b));
    insert_users(&h, &ta, 1, 60_000);
    insert_users(&h, &tb, 2, 40_000);
    let logged: i64 = h.db_query("SELECT max(sequence_id) FROM sync_changes", &[])[0][0].parse().unwrap();

    let http = ReqwestClient::new();
    let mark = || async {
        let rows = ch
            .rows(
                &http,
                &Query::new(
                    "SELECT max(last_synced_sequence_id) AS m FROM analytics_internal._stack_sync_metadata \
                     WHERE mapping_name = 'users'",
                ),
            )
            .await
            .unwrap();
        rows[0]["m"].as_str().unwrap().parse::<i64>().unwrap()
    };
    let trigger = h.get("/__scheduled?cron=*+*+*+*+*");
    let fired = tokio::spawn(async move { trigger.send().await });
    while mark().await == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    h.kill();
    fired.abort();
    let at_kill = mark().await;
    assert!(at_kill < logged, "the kill came before the step finished ({at_kill} of {logged})");

    let h = launch();
    sync(&h).await;
    for (p, n) in [(&a, 60_000), (&b, 40_000)] {
        let counted = ch
            .rows(
                &http,
                &Query::new(
                    "SELECT count() AS final, uniqExact(id) AS ids, countIf(sync_is_deleted = 1) AS deleted \
                     FROM analytics_internal.users FINAL WHERE project_id = {p:String}",
                )
                .param("p", p.id.as_str()),
            )
            .await
            .unwrap();
        assert_eq!(
            (counted[0]["final"].clone(), counted[0]["ids"].clone(), counted[0]["deleted"].clone()),
            (json!(n.to_string()), json!(n.to_string()), json!("0")),
            "every user once, none lost"
        );
        assert_eq!(admin_count(&h, p).await, json!(n.to_string()));
    }
}
