//! `bench-analytics`: the analytics query path.
//!
//! 1. The query guard's parse-and-scope time per query (p50/p99) over the usability corpus.
//! 2. The endpoint's overhead: each corpus query sent to `POST /api/v1/internal/analytics/query`
//!    on the release native host, and the same scoped query with the same settings sent straight
//!    to the engine, alternately, one at a time; the overhead is the per-pair difference
//!    (authentication, guard, the extra HTTP hop, re-encoding the rows).

use std::time::{Duration, Instant};

use api_tests::analytics_data::{seed, usability_corpus, Data};
use api_tests::{ClickHouseFront, Host};
use serde_json::json;
use shared::adapters::native::ReqwestClient;
use shared::clickhouse::ClickHouse;
use shared::query_guard::scope;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn sorted(mut samples: Vec<f64>) -> Vec<f64> {
    samples.sort_by(f64::total_cmp);
    samples
}

fn guard(corpus: &[String]) {
    let rounds = 300;
    let mut samples = Vec::with_capacity(rounds * corpus.len());
    for _ in 0..rounds {
        for q in corpus {
            let start = Instant::now();
            let scoped = scope(q).expect("the corpus queries are valid");
            samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
            std::hint::black_box(scoped);
        }
    }
    let s = sorted(samples);
    println!("| queries | runs | guard p50 µs | guard p99 µs |");
    println!("|---|---|---|---|");
    println!("| {} | {} | {:.1} | {:.1} |", corpus.len(), s.len(), percentile(&s, 0.50), percentile(&s, 0.99));
}

async fn endpoint_overhead(corpus: &[String], rounds: usize) {
    let front = ClickHouseFront::start();
    let engine = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    let http = ReqwestClient::new();
    shared::clickhouse::apply_schema(&engine, &http, None).await.expect("schema");
    let host = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url), ("STACK_ENVIRONMENT", "production")]);
    let project = host.create_project(false).await;
    let data = Data {
        k: 1,
        events: 2000,
        first_user: 0,
        users: 200,
        event_types: "$page-view,$click,$token-refresh,$session-activity",
        first_day: "2026-11-01",
        days: 25,
        domain: "bench.example",
    };
    seed(&engine, &project.id, "main", &data).await;

    let (mut via_endpoint, mut direct, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        for sql in corpus {
            let start = Instant::now();
            let res = host
                .post("/api/v1/internal/analytics/query")
                .admin(&project)
                .json(&json!({ "query": sql }))
                .send()
                .await;
            let endpoint_ms = start.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(res.status, 200, "{sql}: {}", res.text);

            let query = shared::clickhouse::user_query(
                scope(sql).unwrap(),
                &project.id,
                "main",
                "bench",
                10_000,
                serde_json::Map::new(),
            );
            let start = Instant::now();
            engine.rows(&http, &query).await.expect("direct run");
            let direct_ms = start.elapsed().as_secs_f64() * 1000.0;
            if round > 0 {
                // Round 0 warms both paths (connections, the engine's caches).
                via_endpoint.push(endpoint_ms);
                direct.push(direct_ms);
                overhead.push(endpoint_ms - direct_ms);
            }
        }
    }
    let (e, d, o) = (sorted(via_endpoint), sorted(direct), sorted(overhead));
    println!("| pairs | endpoint p50 ms | endpoint p99 ms | engine direct p50 ms | engine direct p99 ms | overhead p50 ms | overhead p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        o.len(),
        percentile(&e, 0.5),
        percentile(&e, 0.99),
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&o, 0.5),
        percentile(&o, 0.99)
    );
    drop(host);
    drop(front);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn main() {
    let corpus = usability_corpus();
    guard(&corpus);
    println!();
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(endpoint_overhead(&corpus, rounds));
}
