//! `bench-replays`: session-replay batch upload throughput (batches/s and MB/s of request
//! bodies) and admin get-by-id latency with 10,000 replays stored, on the release native host.
//!
//! Everything goes through the HTTP API: 10,000 users with a session each upload one batch (a
//! replay each), then concurrent clients upload batches for `BENCH_SECONDS`, then one client
//! reads replays by id.

use std::time::{Duration, Instant};

use api_tests::{Host, Project, UserSession};
use bench::{now_ms, percentile, uuid};
use futures::future::join_all;
use serde_json::{json, Value};

const REPLAYS: usize = 10_000;
const CLIENTS: usize = 16;
const EVENTS_PER_BATCH: usize = 100;
const READS: usize = 2_000;
/// Replaced by a fresh id in each uploaded batch (same length, so every body is as large).
const PLACEHOLDER_BATCH: &str = "00000000-0000-4000-8000-000000000000";

/// A batch like a browser's: `EVENTS_PER_BATCH` small rrweb-style events.
fn batch_body() -> String {
    let now = now_ms();
    let events: Vec<Value> = (0..EVENTS_PER_BATCH as i64)
        .map(|i| json!({ "type": 3, "timestamp": now + i, "data": { "source": 1, "positions": [{ "x": i, "y": 2 * i, "id": 7, "timeOffset": -i }] } }))
        .collect();
    json!({ "browser_session_id": uuid(), "session_replay_segment_id": uuid(), "batch_id": uuid(),
            "started_at_ms": now, "sent_at_ms": now, "events": events })
    .to_string()
}

async fn upload(host: &Host, project: &Project, session: &UserSession, body: &str) -> (u16, String) {
    let res = host
        .post("/api/v1/session-replays/batch")
        .client(project)
        .access_token(&session.access_token)
        .raw_body("application/json", body)
        .send()
        .await;
    (res.status, res.text)
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let host = Host::start(&[]);
        let project = host.create_analytics_project().await;

        // 10,000 replays: a user, a session and one batch each, 64 at a time.
        let started = Instant::now();
        let mut replay_ids = Vec::with_capacity(REPLAYS);
        for _ in 0..REPLAYS / 64 + 1 {
            let wave = (REPLAYS - replay_ids.len()).min(64);
            let created = join_all((0..wave).map(|_| async {
                let session = host.user_with_session(&project, json!({})).await;
                let (status, text) = upload(&host, &project, &session, &batch_body()).await;
                assert_eq!(status, 200, "{text}");
                serde_json::from_str::<Value>(&text).unwrap()["session_replay_id"].as_str().unwrap().to_string()
            }))
            .await;
            replay_ids.extend(created);
        }
        println!("seeded {} replays in {:.1} s", replay_ids.len(), started.elapsed().as_secs_f64());

        // Upload throughput: CLIENTS sessions posting batches back to back.
        let mut sessions = Vec::new();
        for _ in 0..CLIENTS {
            sessions.push(host.user_with_session(&project, json!({})).await);
        }
        let body = with_batch_id(&batch_body(), PLACEHOLDER_BATCH);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let counts = join_all(sessions.iter().map(|session| {
            let (host, project, body) = (&host, &project, &body);
            async move {
                let (mut ok, mut failed) = (0usize, 0usize);
                while Instant::now() < deadline {
                    // A fresh batch id each time (the same id would be deduplicated).
                    let fresh = body.replace(PLACEHOLDER_BATCH, &uuid());
                    match upload(host, project, session, &fresh).await.0 {
                        200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            }
        }))
        .await;
        let elapsed = start.elapsed().as_secs_f64();
        let ok: usize = counts.iter().map(|c| c.0).sum();
        let failed: usize = counts.iter().map(|c| c.1).sum();
        let mb = (ok * body.len()) as f64 / 1_000_000.0;
        println!("\n| clients | events/batch | batch KB | batches/s | MB/s | errors |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| {CLIENTS} | {EVENTS_PER_BATCH} | {:.1} | {:.0} | {:.2} | {failed} |",
            body.len() as f64 / 1000.0,
            ok as f64 / elapsed,
            mb / elapsed
        );

        // Admin get-by-id over the 10,000 replays, one request at a time.
        let mut latencies = Vec::with_capacity(READS);
        for i in 0..READS {
            let id = &replay_ids[(i * 7919) % replay_ids.len()];
            let start = Instant::now();
            let res = host.get(&format!("/api/v1/internal/session-replays/{id}")).admin(&project).send().await;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(res.status, 200, "{}", res.text);
        }
        latencies.sort_by(f64::total_cmp);
        println!("\n| replays stored | reads | get-by-id p50 ms | p99 ms |");
        println!("|---|---|---|---|");
        println!(
            "| {} | {READS} | {:.2} | {:.2} |",
            replay_ids.len(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    });
}

/// `body` with its `batch_id` replaced by `id`.
fn with_batch_id(body: &str, id: &str) -> String {
    let mut value: Value = serde_json::from_str(body).unwrap();
    value["batch_id"] = json!(id);
    value.to_string()
}
