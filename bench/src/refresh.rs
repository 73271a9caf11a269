//! `bench-refresh`: refresh throughput and p50/p99 latency on the native host at several
//! concurrencies, and the raw ES256 sign rate of each engine in the same run, with their ratio.
//!
//! Run through `scripts/bench`, which builds everything in release mode. The host runs as its
//! own process (the release `companion dev`); this load generator uses one thread and one
//! keep-alive HTTP/1.1 connection per concurrent client, so on a 2-core machine the host
//! gets roughly one core and a half. With `STACK_EDGE_BASELINE_COMPANION_BIN` (a companion
//! built with `shared/portable-es256`, which signs with the `p256` crate), the same load runs
//! against that build first, so old and new signer are compared in one run.

use std::path::PathBuf;
use std::time::Duration;

use api_tests::{Host, Launch};
use bench::sign_rate::sign_rate;
use bench::{load, refresh_requests};
use serde_json::json;
use shared::identity::es256::Engine;

const SESSIONS: usize = 256;

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(|c| c.trim().parse().expect("concurrency list"))
        .collect();

    let portable_rate = sign_rate(Engine::P256, Duration::from_secs(3));
    let default_rate = sign_rate(Engine::DEFAULT, Duration::from_secs(3));
    println!("raw ES256 sign rate (1 thread): p256 {portable_rate:.0}/s, {:?} {default_rate:.0}/s", Engine::DEFAULT);

    let mut builds = Vec::new();
    if let Ok(bin) = std::env::var("STACK_EDGE_BASELINE_COMPANION_BIN") {
        builds.push(("p256 (portable-es256 build)", Some(PathBuf::from(bin)), portable_rate));
    }
    builds.push(("default build", None, default_rate));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("\n| signer | concurrency | refreshes/s | p50 ms | p99 ms | errors | ratio to its raw sign rate |");
    println!("|---|---|---|---|---|---|---|");
    for (name, bin, sign_rate) in builds {
        runtime.block_on(async {
            let host = Host::launch(Launch { bin, ..Launch::default() });
            let project = host.create_project(false).await;
            let mut sessions = Vec::new();
            for _ in 0..SESSIONS {
                sessions.push(host.user_with_session(&project, json!({})).await);
            }
            for &c in &concurrencies {
                let r = load(&host.base_url, c, Duration::from_secs(seconds), refresh_requests(&project, &sessions, c))
                    .await;
                println!(
                    "| {name} | {c} | {:.0} | {:.2} | {:.2} | {} | {:.0}% |",
                    r.rate,
                    r.p50_ms,
                    r.p99_ms,
                    r.errors,
                    100.0 * r.rate / sign_rate
                );
            }
        });
    }
}
