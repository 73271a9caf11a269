//! `bench-mcp`: the MCP server's `tools/list` and `tools/call` (`ask_stack_auth`) latency on the
//! native host and as a WASI component on `wasmtime serve`, one client at a time. The model API
//! and the docs MCP server are the tests' local recording stand-ins, so `tools/call` measures
//! this system's work (two streamed model calls, one docs-server session, the budget count, the call log) plus loopback
//! round trips, not a real model's thinking time.

use std::time::Duration;

use api_tests::ai_fakes::{fake_docs_mcp, fake_llm};
use api_tests::{Host, RecordingServer};
use bench::{json_requests, load, LoadResult};
use serde_json::json;

const MCP: &str = "/api/internal/mcp";

fn env(llm: &RecordingServer, docs: &RecordingServer) -> Vec<(&'static str, String)> {
    vec![
        ("STACK_AI_BASE_URL", format!("{}/v1", llm.url)),
        ("STACK_DOCS_MCP_URL", format!("{}/mcp", docs.url)),
        // The budget of runs per caller is not what is measured here.
        ("STACK_AI_RUNS_PER_MINUTE", "1000000".into()),
    ]
}

async fn measure(runtime: &str, host: &Host, duration: Duration) {
    let list = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    let call = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "ask_stack_auth",
        "arguments": { "question": "How long do refresh tokens last?", "reason": "bench", "userPrompt": "bench" } } });
    let r = load(&host.base_url, 1, duration, json_requests(MCP, &list)).await;
    row(runtime, "tools/list", &r);
    let r = load(&host.base_url, 1, duration, json_requests(MCP, &call)).await;
    row(runtime, "tools/call ask_stack_auth", &r);
}

fn row(runtime: &str, method: &str, r: &LoadResult) {
    println!("| {runtime} | {method} | {} | {:.2} | {:.2} | {} |", r.requests, r.p50_ms, r.p99_ms, r.errors);
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        println!("| runtime | MCP method | requests | p50 ms | p99 ms | errors |");
        println!("|---|---|---|---|---|---|");
        let (llm, docs) = (fake_llm(), fake_docs_mcp());
        let vars = env(&llm, &docs);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let host = Host::launch(api_tests::Launch { env: &vars, ..Default::default() });
        measure("native (companion dev, release)", &host, duration).await;
        drop(host);
        let host = Host::start_component_with("mcp", &vars);
        measure("wasmtime serve (component)", &host, duration).await;
    });
}
