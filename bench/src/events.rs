//! `bench-events`: analytics event ingestion through `POST /api/v1/analytics/events/batch` on
//! the release native host into the local ClickHouse engine: 16 clients (a user and session
//! each) post batches of 100 page views back to back for `BENCH_SECONDS`; then the time until
//! the engine holds every accepted event. Prints accepted events/s with the request p50/p99,
//! and stored events/s (accepted events over the time until the last one was stored).

use std::time::{Duration, Instant};

use api_tests::{ClickHouseFront, Host};
use bench::{now_ms, percentile, uuid};
use futures::future::join_all;
use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};

const CLIENTS: usize = 16;
const EVENTS_PER_BATCH: usize = 100;
/// Replaced by a fresh id in each batch (the same id would be deduplicated).
const PLACEHOLDER_BATCH: &str = "00000000-0000-4000-8000-000000000000";

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let front = ClickHouseFront::start();
        let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
        shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
        let host = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
        let project = host.create_analytics_project().await;
        let mut sessions = Vec::new();
        for _ in 0..CLIENTS {
            sessions.push(host.user_with_session(&project, json!({})).await);
        }
        let now = now_ms();
        let events: Vec<Value> = (0..EVENTS_PER_BATCH as i64)
            .map(|i| json!({ "event_type": "$page-view", "event_at_ms": now + i,
                             "data": { "url": format!("https://app.example/page/{i}"), "path": format!("/page/{i}"),
                                       "referrer": "https://search.example/", "title": "Page",
                                       "viewport_width": 1280, "viewport_height": 720 } }))
            .collect();
        let body = json!({ "session_replay_segment_id": null, "batch_id": PLACEHOLDER_BATCH, "sent_at_ms": now,
                           "events": events })
        .to_string();

        let deadline = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let results = join_all(sessions.iter().map(|session| {
            let (host, project, body) = (&host, &project, &body);
            async move {
                let (mut latencies, mut failed) = (Vec::new(), 0usize);
                while Instant::now() < deadline {
                    let fresh = body.replace(PLACEHOLDER_BATCH, &uuid());
                    let sent = Instant::now();
                    let res = host
                        .post("/api/v1/analytics/events/batch")
                        .client(project)
                        .access_token(&session.access_token)
                        .raw_body("application/json", &fresh)
                        .send()
                        .await;
                    if res.status == 200 {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            }
        }))
        .await;
        let accepted_in = start.elapsed().as_secs_f64();
        let mut latencies: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
        let failed: usize = results.iter().map(|r| r.1).sum();
        latencies.sort_by(f64::total_cmp);
        let accepted = latencies.len() * EVENTS_PER_BATCH;

        let count = Query::new("SELECT count() AS c FROM analytics_internal.events WHERE project_id = {p:String} AND event_type = '$page-view'")
            .param("p", project.id.as_str());
        let stored = loop {
            // The engine may be too busy to answer for a moment: ask again.
            let stored: usize = match ch.rows(&ReqwestClient::new(), &count).await {
                Ok(rows) => rows[0]["c"].as_str().unwrap_or("0").parse().unwrap_or(0),
                Err(_) => 0,
            };
            if stored >= accepted || start.elapsed().as_secs() > seconds + 120 {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stored_in = start.elapsed().as_secs_f64();
        println!("| clients | events/batch | accepted events/s | p50 ms | p99 ms | stored | stored events/s | errors |");
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| {CLIENTS} | {EVENTS_PER_BATCH} | {:.0} | {:.1} | {:.1} | {stored}/{accepted} | {:.0} | {failed} |",
            accepted as f64 / accepted_in,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            stored as f64 / stored_in,
        );
    });
}
