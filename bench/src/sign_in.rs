//! `bench-sign-in`: password sign-in p50/p99 and CPU per request with the chosen argon2id
//! parameters, and refresh with refresh-token rotation against refresh without it, on the
//! native host (`bench-sign-in`), under workerd (`bench-sign-in workerd`) or on Spin
//! (`bench-sign-in spin`); `bench-sign-in wasmtime` runs the refresh row without rotation alone
//! on `wasmtime serve` of the refresh component (which has neither the config function that
//! turns rotation or password sign-in on, nor the others).
//!
//! CPU per request is the machine's busy time (every process: the host, and under workerd
//! wrangler's proxy too) minus this load generator's own, over the requests served.
//! Sign-ins spread over enough users that the per-address attempt limit never refuses one.
//! The rotation run cannot replay requests: each client refreshes its own session and sends
//! the token the last answer gave it, so both runs use that same loop.

use std::time::{Duration, Instant};

use api_tests::{Host, Project};
use bench::{load, percentile};
use serde_json::json;

/// Users signed up for the sign-in run; the attempt limit is 10 per address per 10 minutes.
const USERS: usize = 200;
const PASSWORD: &str = "a benchmark password";

#[allow(unsafe_code)] // set_var: single-threaded, before any host starts
fn main() {
    let argument = std::env::args().nth(1);
    let component = argument.as_deref() == Some("wasmtime");
    let (runtime_name, runtime_variable) = match argument.as_deref() {
        None => ("native host", None),
        Some("workerd") => ("workerd (wrangler dev)", Some("cloudflare")),
        Some("spin") => ("Spin (spin up)", Some("spin")),
        Some("wasmtime") => ("wasmtime serve (refresh component)", None),
        Some(other) => panic!("bench-sign-in [workerd|spin|wasmtime], not {other}"),
    };
    // The edge runtimes run one client, and sign-in only briefly (see below).
    let edge = runtime_variable.is_some() || component;
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    if let Some(variable) = runtime_variable {
        // SAFETY of the env change: single-threaded here, before any host starts.
        unsafe { std::env::set_var("STACK_EDGE_RUNTIME", variable) };
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        if component {
            let host = Host::start_component("refresh");
            println!(
                "| runtime | route | clients | requests | per s | p50 ms | p99 ms | CPU ms per request | errors |"
            );
            println!("|---|---|---|---|---|---|---|---|---|");
            refresh_row(&host, &host.create_project(false).await, runtime_name, "refresh, no rotation", 1, seconds)
                .await;
            return;
        }
        let host = Host::start(&[]);
        let project = configured(&host, json!({ "auth.password.allowSignIn": true })).await;
        let mut emails = Vec::new();
        for i in 0..USERS {
            let email = format!("bench-{i}-{}@example.com", bench::uuid());
            let res = host
                .post("/api/v1/auth/password/sign-up")
                .client(&project)
                .json(&json!({ "email": email, "password": PASSWORD }))
                .send()
                .await;
            assert_eq!(res.status, 200, "{}", res.text);
            emails.push(email);
        }
        println!("| runtime | route | clients | requests | per s | p50 ms | p99 ms | CPU ms per request | errors |");
        println!("|---|---|---|---|---|---|---|---|---|");
        let clients_list: &[usize] = if edge { &[1] } else { &[1, 2] };
        let mut next_user = 0;
        for &clients in clients_list {
            // Each run signs in as users not used before (fewer than 10 times each).
            let users: Vec<String> = emails[next_user..next_user + USERS / clients_list.len()].to_vec();
            next_user += users.len();
            let bodies: Vec<bytes::Bytes> = users
                .iter()
                .map(|e| bytes::Bytes::from(json!({ "email": e, "password": PASSWORD }).to_string()))
                .collect();
            let project_id = project.id.clone();
            // Under workerd every request has the end user's IP (127.0.0.1), and sign-ins are
            // limited to 100 per IP per 10 minutes: 3 s at ~25/s stays under it (Spin: the same
            // length, to compare).
            let duration = Duration::from_secs(seconds.min(if edge { 3 } else { seconds }));
            let cpu = CpuMeter::start();
            let r = load(&host.base_url, clients, duration, move |client, n| {
                http::Request::post("/api/v1/auth/password/sign-in")
                    .header("content-type", "application/json")
                    .header("x-stack-access-type", "client")
                    .header("x-stack-project-id", &project_id)
                    .body(http_body_util::Full::new(bodies[(client + n * clients) % bodies.len()].clone()))
                    .unwrap()
            })
            .await;
            let cpu_ms = cpu.per_request_ms(r.requests);
            println!(
                "| {runtime_name} | password sign-in | {clients} | {} | {:.1} | {:.1} | {:.1} | {cpu_ms:.1} | {} |",
                r.requests, r.rate, r.p50_ms, r.p99_ms, r.errors
            );
        }

        for (label, rotating) in [("refresh, no rotation", false), ("refresh with rotation", true)] {
            let config = if rotating { json!({ "auth.refreshTokenRotation.enabled": true }) } else { json!({}) };
            let p = configured(&host, config).await;
            for &clients in if edge { &[1usize][..] } else { &[1usize, 16][..] } {
                refresh_row(&host, &p, runtime_name, label, clients, seconds).await;
            }
        }
    });
}

/// One table row: `clients` sessions of `p` refreshing for `seconds`.
async fn refresh_row(host: &Host, p: &Project, runtime_name: &str, label: &str, clients: usize, seconds: u64) {
    let mut tokens = Vec::new();
    for _ in 0..clients {
        tokens.push(host.user_with_session(p, json!({})).await.refresh_token);
    }
    let cpu = CpuMeter::start();
    let (latencies, errors, elapsed) = chained_refreshes(host, p, tokens, Duration::from_secs(seconds)).await;
    let cpu_ms = cpu.per_request_ms(latencies.len());
    println!(
        "| {runtime_name} | {label} | {clients} | {} | {:.0} | {:.2} | {:.2} | {cpu_ms:.2} | {errors} |",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
}

async fn configured(host: &Host, config: serde_json::Value) -> Project {
    let p = host.create_project(false).await;
    host.set_environment_config(&p, &config).await;
    p
}

/// One client per token, each refreshing its session in a loop and carrying on with the refresh
/// token the answer names (the same one when the project does not rotate). Latencies in ms.
async fn chained_refreshes(
    host: &Host,
    p: &Project,
    tokens: Vec<String>,
    duration: Duration,
) -> (Vec<f64>, usize, f64) {
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let runs = tokens.into_iter().map(|mut token| async move {
        let (mut latencies, mut errors) = (Vec::new(), 0);
        while Instant::now() < deadline {
            let sent = Instant::now();
            let res = host.post("/api/v1/auth/sessions/current/refresh").client(p).refresh_token(&token).send().await;
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            if res.status != 200 {
                errors += 1;
                continue;
            }
            if let Some(next) = res.json()["refresh_token"].as_str() {
                token = next.to_string();
            }
        }
        (latencies, errors)
    });
    let results = futures::future::join_all(runs).await;
    let elapsed = start.elapsed().as_secs_f64();
    let (mut all, mut errors) = (Vec::new(), 0);
    for (l, e) in results {
        all.extend(l);
        errors += e;
    }
    all.sort_by(f64::total_cmp);
    (all, errors, elapsed)
}

/// Busy CPU time of the machine minus this process's, from `/proc` (clock ticks of 10 ms).
struct CpuMeter {
    machine: u64,
    own: u64,
}

impl CpuMeter {
    fn start() -> CpuMeter {
        CpuMeter { machine: machine_busy_ticks(), own: own_ticks() }
    }

    fn per_request_ms(&self, requests: usize) -> f64 {
        let machine = machine_busy_ticks() - self.machine;
        let own = own_ticks() - self.own;
        machine.saturating_sub(own) as f64 * 10.0 / requests.max(1) as f64
    }
}

fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let fields: Vec<u64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).map(|f| f.parse().unwrap()).collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
}

fn own_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
