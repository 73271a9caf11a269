//! `bench-edge`: the edge runtimes. Time from `wrangler dev` start to its first 200, and warm
//! p50/p99 of the refresh route under workerd (through the router Worker and a service
//! binding, with local D1); time to first 200 and warm p50/p99 of the health route and of the
//! refresh route under `wasmtime serve` (a new component instance per request). Sizes are
//! measured by `scripts/bench-edge` itself. `bench-edge workerd <label>` runs only the workerd
//! row, under that label (the script's second pass, on a refresh Worker that signs in wasm).

use std::time::Duration;

use api_tests::Host;
use bench::{get_requests, load, refresh_requests};
use serde_json::json;

#[allow(unsafe_code)] // set_var: single-threaded, before any host starts
fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let workerd_only = args.first().is_some_and(|a| a == "workerd");
    let workerd_label = args.get(1).cloned().unwrap_or_else(|| "workerd (wrangler dev)".into());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| runtime | route | start to first 200 | requests | p50 ms | p99 ms | errors |");
        println!("|---|---|---|---|---|---|---|");

        // SAFETY of the env change: single-threaded here, before any host starts.
        unsafe { std::env::set_var("STACK_EDGE_RUNTIME", "cloudflare") };
        let host = Host::start(&[]);
        let project = host.create_project(false).await;
        let mut sessions = Vec::new();
        for _ in 0..16 {
            sessions.push(host.user_with_session(&project, json!({})).await);
        }
        let r = load(&host.base_url, 1, duration, refresh_requests(&project, &sessions, 1)).await;
        row(&workerd_label, "refresh", &host, &r);
        drop(host);
        if workerd_only {
            return;
        }

        let host = Host::start_component("refresh");
        let r = load(&host.base_url, 1, duration, get_requests("/health")).await;
        row("wasmtime serve", "health", &host, &r);
        let project = host.create_project(false).await;
        let session = host.user_with_session(&project, json!({})).await;
        let r = load(&host.base_url, 1, duration, refresh_requests(&project, &[session], 1)).await;
        row("wasmtime serve", "refresh", &host, &r);
    });
}

fn row(runtime: &str, route: &str, host: &Host, r: &bench::LoadResult) {
    println!(
        "| {runtime} | {route} | {:.1} s | {} | {:.2} | {:.2} | {} |",
        host.startup.as_secs_f64(),
        r.requests,
        r.p50_ms,
        r.p99_ms,
        r.errors
    );
}
