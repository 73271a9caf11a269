//! The benchmark kit: a keep-alive HTTP/1.1 load generator with latency percentiles, the
//! refresh request every benchmark sends, and small helpers (clock, ids, percentiles). One thread drives every client, so on this 2-core
//! machine the host under test keeps most of the CPU.

pub mod sign_rate;

use std::time::{Duration, Instant};

use api_tests::{Project, UserSession};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Throughput and latency of one run.
pub struct LoadResult {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: usize,
    pub errors: usize,
}

/// Sends requests from `clients` concurrent connections for `duration`. `request(client, n)`
/// builds the n-th request of a client; any status other than 200 counts as an error.
pub async fn load<F>(base_url: &str, clients: usize, duration: Duration, request: F) -> LoadResult
where
    F: Fn(usize, usize) -> http::Request<Full<Bytes>> + Clone + 'static,
{
    let authority = base_url.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + duration;
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let authority = authority.clone();
        let request = request.clone();
        tasks.push(local.spawn_local(async move {
            let stream = tokio::net::TcpStream::connect(&authority).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
            tokio::task::spawn_local(conn);
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0, 0);
            while Instant::now() < deadline {
                let mut req = request(client, n);
                req.headers_mut().insert("host", authority.parse().unwrap());
                n += 1;
                let sent = Instant::now();
                let response = sender.send_request(req).await.expect("response");
                let status = response.status();
                let _ = response.into_body().collect().await.expect("body");
                latencies.push(sent.elapsed().as_micros() as u32);
                if status != 200 {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    local
        .run_until(async {
            for t in tasks {
                let (l, e) = t.await.unwrap();
                all.extend(l);
                errors += e;
            }
        })
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    LoadResult { rate: all.len() as f64 / elapsed, p50_ms: pct(0.50), p99_ms: pct(0.99), requests: all.len(), errors }
}

/// A `POST /auth/sessions/current/refresh` request builder over `sessions`, spreading clients
/// across them.
pub fn refresh_requests(
    project: &Project,
    sessions: &[UserSession],
    clients: usize,
) -> impl Fn(usize, usize) -> http::Request<Full<Bytes>> + Clone + 'static {
    let project = project.id.clone();
    let tokens: Vec<String> = sessions.iter().map(|s| s.refresh_token.clone()).collect();
    move |client, n| {
        let token = &tokens[(client + n * clients) % tokens.len()];
        http::Request::post("/api/v1/auth/sessions/current/refresh")
            .header("x-stack-access-type", "client")
            .header("x-stack-project-id", &project)
            .header("x-stack-refresh-token", token)
            .body(Full::default())
            .unwrap()
    }
}

/// A `GET` request builder for one path.
pub fn get_requests(path: &'static str) -> impl Fn(usize, usize) -> http::Request<Full<Bytes>> + Clone + 'static {
    move |_, _| http::Request::get(path).body(Full::default()).unwrap()
}

/// A `POST` request builder with the same JSON body every time.
pub fn json_requests(
    path: &'static str,
    body: &serde_json::Value,
) -> impl Fn(usize, usize) -> http::Request<Full<Bytes>> + Clone + 'static {
    let body = Bytes::from(body.to_string());
    move |_, _| {
        http::Request::post(path).header("content-type", "application/json").body(Full::new(body.clone())).unwrap()
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A fresh v4 UUID.
pub fn uuid() -> String {
    shared::identity::crypto::new_uuid(&shared::adapters::system::OsRandom)
}

/// The `p` quantile (0..1) of `sorted` samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}
