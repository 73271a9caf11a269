//! The native host: the companion's roles served on one port — the API (every function over
//! one SQLite file, with the cron scheduler), the email sender, the metrics engine.
//!
//! Handlers are not `Send` (wasm runtimes are single-threaded), so each worker thread runs its
//! own current-thread tokio runtime with a `LocalSet`, its own [`Context`] and its own SQLite
//! read connection. One acceptor hands connections to the workers in turn: an even spread,
//! unlike workers racing on a shared socket (measured: with 16 keep-alive clients the race
//! left one worker with most of them). Shutdown stops accepting, lets open requests finish
//! (bounded), and drains background work.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};

use shared::adapters::native::{LocalBackground, ReqwestClient};
use shared::adapters::sql_blobs::SqlBlobStore;
use shared::adapters::sqlite::{SqliteStore, SqliteWriter};
use shared::adapters::system::{OsRandom, SystemClock};
use shared::context::Config;
use shared::function::Routes;
use shared::store::ports::SqlStore;
use shared::{Context, Request, Response};

/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct HostOptions {
    pub listener: TcpListener,
    /// Terminate TLS on every connection (`companion serve --tls-cert/--tls-key`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Serve `/__scheduled?cron=...` (fires a cron trigger on demand), for tests.
    pub test_scheduled: bool,
    pub workers: usize,
    /// The API role: every function over this database, with this configuration.
    pub api: Option<Api>,
    /// The metrics role, when there is an analytics store and a companion secret.
    pub metrics: Option<crate::metrics::EngineSettings>,
    /// The email sender role.
    pub sender: Option<crate::sender::SenderSettings>,
    /// The scheduler role: the crons of functions on another runtime, over HTTP.
    pub scheduler: Option<crate::cron::RemoteFunctions>,
}

/// The API role's database and configuration.
pub struct Api {
    pub db_path: PathBuf,
    pub config: Config,
}

/// Builds a worker's context over the shared SQLite writer.
pub fn native_context(writer: &SqliteWriter, config: Config, background: Rc<LocalBackground>) -> Context {
    let store: Rc<dyn SqlStore> = Rc::new(SqliteStore::new(writer).expect("open a read connection to the database"));
    Context::new(
        store.clone(),
        Rc::new(SqlBlobStore::new(store)),
        Rc::new(ReqwestClient::new()),
        Rc::new(InProcess),
        Rc::new(SystemClock),
        Rc::new(OsRandom),
        background,
        config,
    )
}

/// The native host serves every function itself: a call to another one goes through its own
/// route table, in process (a streamed answer is read to its end).
struct InProcess;

#[async_trait::async_trait(?Send)]
impl shared::context::Peers for InProcess {
    async fn call(
        &self,
        ctx: &Context,
        _function: &str,
        request: Request,
    ) -> Result<Response, shared::store::ports::HttpError> {
        Ok(shared::http::stream::buffer(every_function().handle(request, ctx).await).await)
    }
}

/// Serves until `shutdown` turns true, then finishes gracefully. Blocks the calling thread.
pub fn serve(options: HostOptions, shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    options.listener.set_nonblocking(true)?;
    let api = match options.api {
        Some(Api { db_path, config }) => Some((SqliteWriter::open(&db_path).map_err(std::io::Error::other)?, config)),
        None => None,
    };
    let roles = Roles {
        api: api.is_some(),
        metrics: options.metrics.is_some(),
        email_sender: options.sender.is_some(),
        scheduler: options.scheduler.is_some(),
    };
    let mut threads = Vec::new();
    let mut queues = Vec::new();
    for index in 0..options.workers.max(1) {
        let (queue, connections) = mpsc::unbounded_channel();
        queues.push(queue);
        let worker = Worker {
            api: api.clone(),
            metrics: options.metrics.clone(),
            sender: options.sender.clone(),
            remote_scheduler: options.scheduler.clone(),
            roles,
            tls: options.tls.clone(),
            test_scheduled: options.test_scheduled,
            // One worker runs the cron scheduler and the sender loop, so each trigger fires
            // once per process and one loop polls.
            runs_loops: index == 0,
        };
        let shutdown = shutdown.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || run_worker(connections, worker, shutdown))?,
        );
    }
    accept_loop(options.listener, queues, shutdown)?;
    for t in threads {
        t.join().map_err(|_| std::io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

/// Accepts connections and deals them to the workers round-robin until shutdown. Dropping the
/// queues at the end tells the workers that no more connections will come.
fn accept_loop(listener: TcpListener, queues: Vec<Queue>, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut next = 0;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        // A worker that already stopped drops its connections; nothing to do.
                        let _ = queues[next].send(stream.into_std()?);
                        next = (next + 1) % queues.len();
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            }
        }
    })
}

type Queue = mpsc::UnboundedSender<std::net::TcpStream>;

/// Which roles a host runs (for `/health`).
#[derive(Clone, Copy)]
struct Roles {
    api: bool,
    metrics: bool,
    email_sender: bool,
    scheduler: bool,
}

/// What one worker thread serves and runs.
struct Worker {
    api: Option<(SqliteWriter, Config)>,
    metrics: Option<crate::metrics::EngineSettings>,
    sender: Option<crate::sender::SenderSettings>,
    remote_scheduler: Option<crate::cron::RemoteFunctions>,
    roles: Roles,
    tls: Option<tokio_rustls::TlsAcceptor>,
    test_scheduled: bool,
    runs_loops: bool,
}

/// Serves HTTP/1 on one connection (plain or TLS), watched by the graceful shutdown.
async fn serve_connection<I, S>(io: I, service: S, watcher: hyper_util::server::graceful::Watcher) -> hyper::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = shared::http::stream::HttpBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    watcher.watch(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service)).await
}

fn run_worker(
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    worker: Worker,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let background = Rc::new(LocalBackground::new());
        let ctx = worker.api.map(|(writer, config)| native_context(&writer, config, background.clone()));
        // The API role schedules its own functions; the scheduler role another runtime's.
        let scheduler = match (&ctx, worker.remote_scheduler) {
            (Some(ctx), _) => Some(crate::cron::Scheduler::Local(ctx.clone())),
            (None, Some(remote)) => Some(crate::cron::Scheduler::Remote(remote)),
            (None, None) => None,
        };
        let scheduler_loop = match (&scheduler, worker.runs_loops) {
            (Some(scheduler), true) => {
                Some(tokio::task::spawn_local(crate::cron::scheduler_loop(scheduler.clone(), shutdown.clone())))
            }
            _ => None,
        };
        let test_scheduled = worker.test_scheduled;
        let sender = worker.sender.map(|settings| Rc::new(crate::sender::Sender::new(settings)));
        let sender_loop = match (&sender, worker.runs_loops) {
            (Some(sender), true) => {
                Some(tokio::task::spawn_local(crate::sender::sender_loop(sender.clone(), shutdown.clone())))
            }
            _ => None,
        };
        let services = Rc::new(Services {
            ctx,
            scheduler,
            metrics: worker.metrics.map(|settings| (settings.engine(), settings.secret.clone())),
            sender,
            roles: worker.roles,
        });
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let tls = worker.tls;
        loop {
            let stream = tokio::select! {
                next = connections.recv() => match next {
                    Some(stream) => stream,
                    None => break,
                },
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "could not adopt a connection");
                    continue;
                }
            };
            let services = services.clone();
            let service = service_fn(move |req| {
                let services = services.clone();
                async move {
                    Ok::<_, Infallible>(shared::http::stream::into_http_body(
                        handle_hyper(req, &services, test_scheduled).await,
                    ))
                }
            });
            let (tls, watcher) = (tls.clone(), graceful.watcher());
            tokio::task::spawn_local(async move {
                let served = match tls {
                    None => serve_connection(stream, service, watcher).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => serve_connection(stream, service, watcher).await,
                        Err(e) => {
                            tracing::debug!(error = %e, "a TLS handshake failed");
                            return;
                        }
                    },
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
            tracing::warn!("open connections did not finish within the grace period");
        }
        if let Some(scheduler_loop) = scheduler_loop {
            let _ = scheduler_loop.await;
        }
        // The sender's pass in flight finishes its sends and reports them.
        if let Some(sender_loop) = sender_loop {
            let _ = sender_loop.await;
        }
        background.drain().await;
        Ok(())
    })
}

/// What one worker serves: its roles.
pub struct Services {
    /// The API role's context (every function).
    pub ctx: Option<Context>,
    /// The metrics engine and the secret its endpoint requires.
    pub metrics: Option<(crate::metrics::MetricsEngine, String)>,
    /// The email sender (its cron route).
    pub sender: Option<Rc<crate::sender::Sender>>,
    /// How `/__scheduled` fires a trigger (`--test-scheduled`).
    scheduler: Option<crate::cron::Scheduler>,
    roles: Roles,
}

/// After refusing an oversized body, how much more of it the host reads and drops (and for how
/// long) before it answers: a client still sending then reads the 413 instead of a connection
/// reset by a close with its data unread. Nothing read is kept.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The request body, buffered up to `limit` bytes; the answer to give instead (413 past the
/// limit, 400 when it cannot be read).
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Response> {
    let mut buffered = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(shared::http::text(400, "Could not read the request body")) };
        let Ok(data) = frame.into_data() else { continue };
        if buffered.len() + data.len() > limit {
            let mut budget = DRAIN_BYTES;
            let drain = async {
                while let Some(Ok(frame)) = body.frame().await {
                    budget = budget.saturating_sub(frame.data_ref().map_or(0, bytes::Bytes::len));
                    if budget == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
            return Err(shared::http::body_too_large(limit));
        }
        buffered.extend_from_slice(&data);
    }
    Ok(buffered)
}

async fn handle_hyper(req: hyper::Request<Incoming>, services: &Services, test_scheduled: bool) -> Response {
    let (parts, body) = req.into_parts();
    let limit = shared::http::max_body_bytes(parts.uri.path());
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let mut req = Request::from_parts(parts, body);
    // The end user's location, from a proxy's headers only when the operator trusts it.
    let trusted = services.ctx.as_ref().and_then(|ctx| ctx.config.trusted_proxy);
    if let Some(location) = trusted.and_then(|proxy| shared::http::location::from_proxy_headers(req.headers(), proxy)) {
        req.extensions_mut().insert(location);
    }
    if let (true, "/__scheduled", Some(scheduler)) = (test_scheduled, req.uri().path(), &services.scheduler) {
        return fire_scheduled(&req, scheduler).await;
    }
    dispatch(req, services).await
}

/// `/__scheduled?cron=...`: fires one cron trigger now (`dev --test-scheduled` only).
async fn fire_scheduled(req: &Request, scheduler: &crate::cron::Scheduler) -> Response {
    let Some(cron) = shared::http::query_param(req, "cron") else {
        return shared::http::text(400, "cron is required");
    };
    if scheduler.fire(&cron).await {
        shared::http::text(200, "Ran scheduled event")
    } else {
        shared::http::text(404, &format!("No scheduled work for {cron:?}"))
    }
}

/// Routes a request to the companion's own endpoints or, through the one route table of every
/// function, to its handler (the API role only).
pub async fn dispatch(req: Request, services: &Services) -> Response {
    let path = req.uri().path();
    if path == "/health" {
        return health(services).await;
    }
    if let (crate::sender::QUEUE_STEP_PATH, Some(sender)) = (path, &services.sender) {
        return crate::sender::queue_step_route(&req, sender.clone()).await;
    }
    if path == metrics::COMPANION_PATH {
        return match &services.metrics {
            Some((engine, secret)) => crate::metrics::serve(&req, engine, secret).await,
            None => shared::http::text(503, "The metrics engine needs STACK_CLICKHOUSE_URL and STACK_COMPANION_SECRET"),
        };
    }
    match &services.ctx {
        Some(ctx) => every_function().handle(req, ctx).await,
        None => shared::http::text(404, "Not found: this companion does not serve the API role"),
    }
}

/// `/health`: the roles this host runs, whether its store and analytics engine answer
/// (`status` is `degraded` when one does not; the answer is 200 while the process serves), and
/// with the API role what each function adds (the analytics sync's state).
async fn health(services: &Services) -> Response {
    let Roles { api, metrics, email_sender, scheduler } = services.roles;
    let roles: Vec<&str> =
        [(api, "api"), (metrics, "metrics"), (email_sender, "email-sender"), (scheduler, "scheduler")]
            .into_iter()
            .filter(|r| r.0)
            .map(|r| r.1)
            .collect();
    let mut answer = match &services.ctx {
        Some(ctx) => shared::function::Function::health_of(router::FUNCTIONS, ctx).await,
        None => serde_json::json!({}),
    };
    answer["roles"] = roles.into();
    let mut healthy = true;
    if let Some(ctx) = &services.ctx {
        let answers = ctx.store.query("SELECT 1", &[]).await.is_ok();
        healthy &= answers;
        answer["store"] = if answers { "ok" } else { "unavailable" }.into();
        answer["analytics_events_lost"] = shared::analytics::events::lost_events().into();
    }
    if let Some((engine, _)) = &services.metrics {
        let answers = engine.store_answers().await;
        healthy &= answers;
        answer["analytics_engine"] = if answers { "ok" } else { "unavailable" }.into();
    }
    answer["status"] = if healthy { "ok" } else { "degraded" }.into();
    shared::http::json(&answer)
}

/// The route table of every function.
fn every_function() -> &'static Routes {
    static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| Routes::new(router::FUNCTIONS))
}

/// Binds the listening socket (port 0 picks a free port).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}
