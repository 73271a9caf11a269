//! `bench-analytics`: the analytics query path.
//!
//! 1. The query guard's parse-and-scope time per query (p50/p99) over the usability corpus.
//! 2. The endpoint's overhead: each corpus query sent to `POST /api/v1/internal/analytics/query`
//!    on the release native host, and the same scoped query with the same settings sent straight
//!    to the engine, alternately, one at a time; the overhead is the per-pair difference
//!    (authentication, guard, the extra HTTP hop, re-encoding the rows).
//! 3. The guard at its limits: a query of the largest accepted size holding as many table
//!    references as fit (refused), and one holding the most references accepted, padded to the
//!    size limit (scoped); and a body over 1 MiB to the endpoint, refused before it is parsed.

use std::time::{Duration, Instant};

use api_tests::analytics_data::{seed, usability_corpus, Data};
use api_tests::{ClickHouseFront, Host};
use bench::percentile;
use serde_json::json;
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::ClickHouse;
use shared::analytics::query_guard::{scope, MAX_QUERY_BYTES, MAX_TABLE_REFERENCES, MAX_TOKENS};

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
    shared::analytics::clickhouse::apply_schema(&engine, &http, None).await.expect("schema");
    let host = Host::start(&[
        ("STACK_CLICKHOUSE_URL", &front.url),
        ("STACK_ENVIRONMENT", "production"),
        ("STACK_CLICKHOUSE_EXTERNAL_PASSWORD", "the-local-engine-ignores-it"),
    ]);
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

            let query = shared::analytics::clickhouse::user_query(
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

/// Median and maximum time of `f` over `runs` runs, in milliseconds.
fn time_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let s = sorted(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    );
    (percentile(&s, 0.5), s[s.len() - 1])
}

fn guard_at_the_limits() {
    let mut most = String::from("SELECT 1 FROM events");
    while most.len() + ",events".len() <= MAX_QUERY_BYTES {
        most.push_str(",events");
    }
    let references = most.matches("events").count();
    assert!(scope(&most).is_err(), "more references than allowed are refused");
    let (p50, max) = time_ms(50, || {
        std::hint::black_box(scope(&most).ok());
    });
    let allowed = format!("SELECT 1 FROM events{}", ",events".repeat(MAX_TABLE_REFERENCES - 1));
    let padded = format!("{allowed} WHERE event_type != '{}'", "x".repeat(MAX_QUERY_BYTES - allowed.len() - 40));
    assert!(padded.len() <= MAX_QUERY_BYTES && scope(&padded).is_ok());
    let (p50_ok, max_ok) = time_ms(50, || {
        std::hint::black_box(scope(&padded).ok());
    });
    // Not a table reference in it: the most tokens a text at the limit holds, all parsed.
    let mut tokens = String::from("SELECT 1");
    while tokens.len() + ",1".len() <= MAX_QUERY_BYTES {
        tokens.push_str(",1");
    }
    let result = if scope(&tokens).is_ok() { "accepted" } else { "refused" };
    let (p50_tokens, max_tokens) = time_ms(50, || {
        std::hint::black_box(scope(&tokens).ok());
    });
    // The most tokens accepted (MAX_TOKENS), all parsed.
    let most_tokens = format!("SELECT 1{}", ",1".repeat(MAX_TOKENS / 2 - 1));
    assert!(scope(&most_tokens).is_ok());
    let (p50_most, max_most) = time_ms(50, || {
        std::hint::black_box(scope(&most_tokens).ok());
    });
    println!("| query at the size limit | bytes | table references | result | p50 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    println!("| as many references as fit | {} | {references} | refused | {p50:.2} | {max:.2} |", most.len());
    println!(
        "| most references accepted, padded | {} | {MAX_TABLE_REFERENCES} | scoped | {p50_ok:.2} | {max_ok:.2} |",
        padded.len()
    );
    println!("| `SELECT 1,1,…` (most tokens) | {} | 0 | {result} | {p50_tokens:.2} | {max_tokens:.2} |", tokens.len());
    println!(
        "| `SELECT 1,1,…` with {MAX_TOKENS} tokens (most accepted; not at the size limit) | {} | 0 | accepted | {p50_most:.2} | {max_most:.2} |",
        most_tokens.len()
    );
}

/// A body over the 1 MiB cap: refused with 413 by the host before anything parses it.
async fn big_body() {
    let host = Host::start(&[]);
    let project = host.create_project(false).await;
    let big = json!({ "query": format!("SELECT '{}'", "x".repeat(1024 * 1024)) }).to_string();
    let mut refused = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        let res = host
            .post("/api/v1/internal/analytics/query")
            .admin(&project)
            .raw_body("application/json", &big)
            .send()
            .await;
        refused.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(res.status, 413, "{}", res.text);
    }
    let r = sorted(refused);
    println!();
    println!("| request | runs | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| body over 1 MiB to the analytics endpoint (413) | {} | {:.2} | {:.2} |",
        r.len(),
        percentile(&r, 0.5),
        percentile(&r, 0.99)
    );
}

fn main() {
    let corpus = usability_corpus();
    guard(&corpus);
    println!();
    guard_at_the_limits();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(big_body());
    println!();
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    runtime.block_on(endpoint_overhead(&corpus, rounds));
}
