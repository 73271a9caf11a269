//! `bench-sync`: the analytics mirror's sync step (docs/api.md §6.6) on the release native host
//! into the local ClickHouse engine: `BENCH_SYNC_USERS` users (default 100,000) written straight
//! into the store (the triggers log them as they log the API's writes), then one step fired
//! through `/__scheduled`, timed until the log is empty, and the engine asked how many it holds.
//! Prints rows/s.

use std::time::{Duration, Instant};

use api_tests::{ClickHouseFront, Host, Launch};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};

fn main() {
    let users: u32 = std::env::var("BENCH_SYNC_USERS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let front = ClickHouseFront::start();
        let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
        let http = ReqwestClient::new();
        shared::analytics::clickhouse::apply_schema(&ch, &http, None).await.unwrap();
        let env = [("STACK_CLICKHOUSE_URL", front.url.as_str())];
        let host = Host::launch(Launch { env: &env, test_scheduled: true, ..Launch::default() });
        let project = host.create_project(false).await;
        let tenancy = host.db_query("SELECT id FROM tenancies WHERE project_id = ?", &[&project.id])[0][0].clone();
        let sql = format!(
            "WITH RECURSIVE i(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM i WHERE k < {users}) \
             INSERT INTO users (tenancy_id, id, display_name, primary_email, signed_up_at, last_active_at) \
             SELECT ?1, printf('%08x-0000-4000-8000-%012x', 7, k), 'user ' || k, 'user' || k || '@example.com', \
             1764000000000 + k * 1000, 1764000000000 FROM i"
        );
        host.db_execute(&sql, &[&tenancy]);

        let start = Instant::now();
        let res = host.get("/__scheduled?cron=*+*+*+*+*").send().await;
        assert_eq!(res.status, 200, "{}", res.text);
        while host.db_query("SELECT count(*) FROM sync_changes", &[])[0][0] != "0" {
            assert!(start.elapsed() < Duration::from_secs(600), "the sync did not finish in 10 minutes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = start.elapsed().as_secs_f64();
        let count =
            Query::new("SELECT count() AS c FROM users WHERE project_id = {p:String}").param("p", project.id.as_str());
        let stored = ch.rows(&http, &count).await.unwrap()[0]["c"].as_str().unwrap().parse::<u64>().unwrap();
        assert_eq!(stored, u64::from(users), "every user mirrored");
        println!(
            "analytics sync (native host, local engine): {users} users in {seconds:.2} s = {:.0} rows/s",
            f64::from(users) / seconds
        );
    });
}
