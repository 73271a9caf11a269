//! Cloudflare Workers adapters: D1 as the SQL store, R2 as the blob store (where bound),
//! `fetch` as outbound HTTP, worker vars and secrets as configuration, `wait_until` as
//! background work. [`crate::function_entries!`] turns a function's `FUNCTION` into a Worker's
//! fetch and scheduled entries with these.

use std::cell::RefCell;
use std::rc::Rc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use worker::wasm_bindgen::JsValue;

use crate::adapters::sql_blobs::SqlBlobStore;
use crate::context::{Config, Context, Peers};
use crate::http::{Request, Response};
use crate::identity::tokens::KeyCache;
use crate::store::ports::{
    Background, BlobError, BlobStore, BodyChunks, Clock, ConfigSource, HttpClient, HttpError, LocalFuture, Random,
    SqlRow, SqlStore, SqlValue, Statement, StoreError,
};

// --- D1 -------------------------------------------------------------------------------------

/// The SQL store over a D1 binding.
pub struct D1Store {
    db: worker::D1Database,
}

impl D1Store {
    /// A store over `db`.
    pub fn new(db: worker::D1Database) -> D1Store {
        D1Store { db }
    }

    fn prepare(&self, sql: &str, params: &[SqlValue]) -> Result<worker::D1PreparedStatement, StoreError> {
        let values: Vec<JsValue> = params
            .iter()
            .map(|p| match p {
                // D1 refuses `undefined`; NULL must be bound as JS null.
                SqlValue::Null => JsValue::NULL,
                // Our integers are millisecond timestamps and flags: exact as JS numbers.
                SqlValue::Integer(i) => JsValue::from_f64(*i as f64),
                SqlValue::Text(s) => JsValue::from_str(s),
            })
            .collect();
        self.db.prepare(sql).bind(&values).map_err(d1_error)
    }
}

fn d1_error(e: worker::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("constraint failed") {
        StoreError::Constraint(text)
    } else {
        StoreError::Other(text)
    }
}

fn to_row(map: Map<String, Value>) -> Result<SqlRow, StoreError> {
    let columns = map
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Null => SqlValue::Null,
                Value::String(s) => SqlValue::Text(s),
                Value::Bool(b) => SqlValue::Integer(b as i64),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => SqlValue::Integer(i),
                    None => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 => SqlValue::Integer(f as i64),
                        _ => return Err(StoreError::Decode(format!("column {name}: unexpected real {n}"))),
                    },
                },
                other => return Err(StoreError::Decode(format!("column {name}: unexpected {other}"))),
            };
            Ok((name, value))
        })
        .collect::<Result<_, _>>()?;
    Ok(SqlRow { columns })
}

/// The sync log's AUTOINCREMENT counter (0 before its first row).
const LOG_COUNTER_SQL: &str =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'sync_changes'), 0) AS seq";

#[async_trait(?Send)]
impl SqlStore for D1Store {
    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StoreError> {
        let result = self.prepare(sql, params)?.all().await.map_err(d1_error)?;
        let rows: Vec<Map<String, Value>> = result.results().map_err(d1_error)?;
        rows.into_iter().map(to_row).collect()
    }

    /// D1's `batch` runs the statements in one implicit transaction: all or nothing.
    ///
    /// The counts are each statement's own rows, as SQLite's `sqlite3_changes()` (and so the
    /// native and Spin stores) report them. D1 reports how far `sqlite3_total_changes()` moved,
    /// which adds the rows triggers write, and the only triggers write one row each into the
    /// sync log (migration 0010). So the log's AUTOINCREMENT counter is read before and after
    /// every statement, in the same batch, and its growth subtracted. (A statement that itself
    /// inserts into the log, the sync's relog, is reported as 0; nothing reads that count.)
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let mut prepared = vec![self.prepare(LOG_COUNTER_SQL, &[])?];
        for s in statements {
            prepared.push(self.prepare(s.sql, &s.params)?);
            prepared.push(self.prepare(LOG_COUNTER_SQL, &[])?);
        }
        let results = self.db.batch(prepared).await.map_err(d1_error)?;
        let counter = |result: &worker::D1Result| -> Result<u64, StoreError> {
            let rows: Vec<Map<String, Value>> = result.results().map_err(d1_error)?;
            Ok(rows.first().and_then(|r| r.get("seq")).and_then(Value::as_u64).unwrap_or(0))
        };
        let mut before = counter(results.first().ok_or_else(|| StoreError::Decode("an empty batch answer".into()))?)?;
        results[1..]
            .chunks(2)
            .map(|pair| {
                let [statement, after] = pair else { return Err(StoreError::Decode("a short batch answer".into())) };
                let changes = statement.meta().map_err(d1_error)?.and_then(|m| m.changes).unwrap_or(0) as u64;
                let after = counter(after)?;
                let own = changes.saturating_sub(after.saturating_sub(before));
                before = after;
                Ok(own)
            })
            .collect()
    }

    async fn execute_script(&self, sql: &str) -> Result<(), StoreError> {
        self.db.exec(sql).await.map(|_| ()).map_err(d1_error)
    }
}

// --- clock, randomness, configuration, background -----------------------------------------

/// The Worker's clock (`Date.now()`).
pub struct WorkerClock;

impl Clock for WorkerClock {
    fn now_millis(&self) -> i64 {
        worker::Date::now().as_millis() as i64
    }
}

/// The Worker's secure randomness (`crypto.getRandomValues`).
pub struct WorkerRandom;

impl Random for WorkerRandom {
    fn fill(&self, buf: &mut [u8]) {
        getrandom_v02::getrandom(buf).expect("crypto.getRandomValues is available in Workers");
    }
}

/// Worker secrets first, then plain vars.
pub struct WorkerEnv(pub worker::Env);

impl ConfigSource for WorkerEnv {
    fn get(&self, key: &str) -> Option<String> {
        let value = match self.0.secret(key) {
            Ok(secret) => secret.to_string(),
            Err(_) => self.0.var(key).ok()?.to_string(),
        };
        (!value.is_empty()).then_some(value)
    }
}

/// Background work kept alive by a request's `wait_until`.
pub struct WaitUntil(pub worker::Context);

impl Background for WaitUntil {
    fn spawn(&self, work: LocalFuture) {
        self.0.wait_until(work);
    }
}

/// Background work kept alive by a cron run's `wait_until`.
pub struct ScheduleWaitUntil(pub worker::ScheduleContext);

impl Background for ScheduleWaitUntil {
    fn spawn(&self, work: LocalFuture) {
        self.0.wait_until(work);
    }
}

// --- outbound HTTP --------------------------------------------------------------------------

/// The R2 binding blobs go to when a Worker has one.
pub const BLOB_BUCKET: &str = "REPLAY_BLOBS";
/// Blobs are request bodies: well under a Worker's request limit.
const MAX_R2_BLOB_BYTES: usize = 50 * 1024 * 1024;

/// The blob store on an R2 bucket.
pub struct R2Blobs(worker::Bucket);

#[async_trait(?Send)]
impl BlobStore for R2Blobs {
    fn max_bytes(&self) -> usize {
        MAX_R2_BLOB_BYTES
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        if bytes.len() > MAX_R2_BLOB_BYTES {
            return Err(BlobError::TooLarge { size: bytes.len(), max: MAX_R2_BLOB_BYTES });
        }
        let data = worker::Data::Bytes(bytes.to_vec());
        self.0.put(key, data).execute().await.map(|_| ()).map_err(|e| BlobError::Store(e.to_string()))
    }

    async fn delete(&self, keys: &[String]) -> Result<(), BlobError> {
        for key in keys {
            self.0.delete(key).await.map_err(|e| BlobError::Store(e.to_string()))?;
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let object = self.0.get(key).execute().await.map_err(|e| BlobError::Store(e.to_string()))?;
        let Some(object) = object else { return Ok(None) };
        match object.body() {
            None => Ok(None),
            Some(body) => body.bytes().await.map(Some).map_err(|e| BlobError::Store(e.to_string())),
        }
    }
}

/// Outbound HTTP over the Worker's `fetch`.
pub struct WorkerFetch;

#[async_trait(?Send)]
impl HttpClient for WorkerFetch {
    async fn open(&self, request: Request) -> Result<http::Response<BodyChunks>, HttpError> {
        let request = to_worker_request(request, "")?;
        let response = worker::Fetch::Request(request).send().await.map_err(|e| HttpError(e.to_string()))?;
        from_worker_response(response)
    }
}

/// A Worker request from ours, its URI prefixed with `base` (a path-only URI needs one).
fn to_worker_request(request: Request, base: &str) -> Result<worker::Request, HttpError> {
    let err = |e: worker::Error| HttpError(e.to_string());
    let (parts, body) = request.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        headers.append(name.as_str(), value.to_str().map_err(|e| HttpError(e.to_string()))?).map_err(err)?;
    }
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::from(parts.method.to_string())).with_headers(headers);
    if !body.is_empty() {
        init.with_body(Some(worker::js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    worker::Request::new_with_init(&format!("{base}{}", parts.uri), &init).map_err(err)
}

/// The deployment's other functions through their service bindings (`ANALYTICS_QUERY` for
/// `analytics-query`, as the router's): a call stays inside Cloudflare, no public hop.
pub struct ServiceBindings(worker::Env);

#[async_trait(?Send)]
impl Peers for ServiceBindings {
    async fn call(&self, _ctx: &Context, function: &str, request: Request) -> Result<Response, HttpError> {
        let binding = crate::function::binding_of(function);
        let fetcher = self.0.service(&binding).map_err(|e| HttpError(format!("service binding {binding}: {e}")))?;
        BoundService(fetcher, function.to_string()).send(request).await
    }
}

/// One service binding as an HTTP client (the buffered `send` is the port's own).
struct BoundService(worker::Fetcher, String);

#[async_trait(?Send)]
impl HttpClient for BoundService {
    async fn open(&self, request: Request) -> Result<http::Response<BodyChunks>, HttpError> {
        // The host part is not used by a binding; it names the function for logs.
        let request = to_worker_request(request, &format!("https://{}.internal", self.1))?;
        let response = self.0.fetch_request(request).await.map_err(|e| HttpError(e.to_string()))?;
        from_worker_response(response)
    }
}

/// Our response head from a fetched one, with its body as the chunks arrive.
fn from_worker_response(mut response: worker::Response) -> Result<http::Response<BodyChunks>, HttpError> {
    use futures_util::{StreamExt, TryStreamExt};
    let mut builder = http::Response::builder().status(response.status_code());
    for (name, value) in response.headers().entries() {
        builder = builder.header(name, value);
    }
    let chunks: BodyChunks = match response.body() {
        worker::ResponseBody::Empty => futures_util::stream::empty().boxed_local(),
        worker::ResponseBody::Body(bytes) => {
            futures_util::stream::once(std::future::ready(Ok(bytes.clone()))).boxed_local()
        }
        worker::ResponseBody::Stream(_) => {
            response.stream().map_err(|e| HttpError(e.to_string()))?.map_err(|e| HttpError(e.to_string())).boxed_local()
        }
    };
    builder.body(chunks).map_err(|e| HttpError(e.to_string()))
}

// --- the fetch entry ------------------------------------------------------------------------

thread_local! {
    /// Per isolate: the loaded configuration and derived signing keys, reused across requests.
    static ISOLATE: RefCell<Option<(Rc<Config>, Rc<KeyCache>)>> = const { RefCell::new(None) };
    /// Whether this isolate already made sure the internal project exists.
    static BOOTSTRAPPED: RefCell<bool> = const { RefCell::new(false) };
}

/// The [`Context`] of one request. The D1 binding is named `DB`.
pub fn context(env: &worker::Env, ctx: worker::Context) -> worker::Result<Context> {
    context_with(env, Rc::new(WaitUntil(ctx)))
}

fn context_with(env: &worker::Env, background: Rc<dyn Background>) -> worker::Result<Context> {
    let (config, keys) = ISOLATE.with(|cell| -> worker::Result<_> {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let config = Config::load(&WorkerEnv(env.clone())).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let keys = Rc::new(KeyCache::new(config.server_secret.clone()));
            *cell = Some((Rc::new(config), keys));
        }
        Ok(cell.clone().expect("set above"))
    })?;
    let store: Rc<dyn SqlStore> = Rc::new(D1Store::new(env.d1("DB")?));
    // Replay chunks go to the R2 bucket where the Worker binds one, else to a D1 table.
    let blobs: Rc<dyn BlobStore> = match env.bucket(BLOB_BUCKET) {
        Ok(bucket) => Rc::new(R2Blobs(bucket)),
        Err(_) => Rc::new(SqlBlobStore::new(store.clone())),
    };
    Ok(Context {
        store,
        blobs,
        http: Rc::new(WorkerFetch),
        peers: Rc::new(ServiceBindings(env.clone())),
        clock: Rc::new(WorkerClock),
        random: Rc::new(WorkerRandom),
        background,
        config,
        keys,
    })
}

/// The [`Context`] of a cron run.
pub fn scheduled_context(env: &worker::Env, ctx: worker::ScheduleContext) -> worker::Result<Context> {
    context_with(env, Rc::new(ScheduleWaitUntil(ctx)))
}

/// Once per isolate: when `STACK_INTERNAL_ADMIN_KEY` is configured, make sure the internal
/// project accepts it (the native host does the same at start-up).
pub async fn bootstrap(ctx: &Context) -> worker::Result<()> {
    if BOOTSTRAPPED.with(|b| *b.borrow()) {
        return Ok(());
    }
    if let Some(key) = &ctx.config.internal_admin_key {
        crate::identity::projects::ensure_internal_project(ctx, key)
            .await
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
    }
    BOOTSTRAPPED.with(|b| *b.borrow_mut() = true);
    Ok(())
}

/// A buffered request from a Worker request, or the 413 answer when its body is over the cap
/// (`shared::http::max_body_bytes`): the body is read as a stream and reading stops at the cap.
pub async fn request_from_worker(mut req: worker::Request) -> worker::Result<Result<Request, Response>> {
    use futures_util::StreamExt;
    let limit = crate::http::max_body_bytes(&req.path());
    let mut builder = http::Request::builder().method(req.method().as_ref()).uri(req.url()?.as_str());
    for (name, value) in req.headers().entries() {
        builder = builder.header(name, value);
    }
    if let Some(location) = cf_location(&req) {
        builder = builder.extension(location);
    }
    let mut body = Vec::new();
    if req.inner().body().is_some() {
        let mut stream = req.stream()?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > limit {
                return Ok(Err(crate::http::body_too_large(limit)));
            }
            body.extend_from_slice(&chunk);
        }
    }
    builder.body(body).map(Ok).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// The end user's location from Cloudflare's own facts about the request: its `cf` object and
/// `CF-Connecting-IP` (Cloudflare sets it; a client cannot). The time zone is read from the
/// `cf` object itself: workers-rs's getter unwraps, and local workerd's `cf` may lack it.
fn cf_location(req: &worker::Request) -> Option<crate::http::location::EndUserLocation> {
    let cf = req.cf()?;
    let (latitude, longitude) =
        cf.coordinates().map_or((None, None), |(lat, lon)| (Some(f64::from(lat)), Some(f64::from(lon))));
    let location = crate::http::location::EndUserLocation {
        ip: req.headers().get("cf-connecting-ip").ok().flatten(),
        country_code: cf.country().filter(|c| c != "XX" && c != "T1"),
        region_code: cf.region_code(),
        city_name: cf.city(),
        latitude,
        longitude,
        tz_identifier: cf_timezone(req),
    };
    (location != crate::http::location::EndUserLocation::default()).then_some(location)
}

/// `request.cf.timezone`, when the runtime set it.
fn cf_timezone(req: &worker::Request) -> Option<String> {
    use worker::js_sys::Reflect;
    let cf = Reflect::get(req.inner(), &"cf".into()).ok().filter(worker::wasm_bindgen::JsValue::is_object)?;
    Reflect::get(&cf, &"timezone".into()).ok()?.as_string().filter(|tz| !tz.is_empty())
}

/// A Worker response from ours; a streamed body becomes a `ReadableStream` fed as it comes.
pub fn response_to_worker(mut response: Response) -> worker::Result<worker::Response> {
    use futures_util::StreamExt;
    let streamed = crate::http::stream::take(&mut response);
    let (parts, body) = response.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        headers.append(name.as_str(), value.to_str().unwrap_or_default())?;
    }
    let answer = match streamed {
        None => worker::Response::from_bytes(body)?,
        Some(chunks) => worker::Response::from_stream(chunks.map(Ok::<_, worker::Error>))?,
    };
    Ok(answer.with_status(parts.status.as_u16()).with_headers(headers))
}

/// A Worker's `fetch` and `scheduled` entries for `$function` (a function crate's `FUNCTION`)
/// with the Cloudflare adapters: requests go through its route table (`routes()`, defined by
/// [`crate::function_entries!`], which expands this), cron triggers to its scheduled work, with
/// background work kept alive by `wait_until`; `/health` is answered by the entry itself, with
/// what the function adds to it.
#[doc(hidden)]
#[macro_export]
macro_rules! __cloudflare_entries {
    ($function:path) => {
        #[::worker::event(fetch)]
        async fn fetch(
            req: ::worker::Request,
            env: ::worker::Env,
            ctx: ::worker::Context,
        ) -> ::worker::Result<::worker::Response> {
            if req.path() == "/health" {
                let answer = match $function.health {
                    None => $crate::__private::serde_json::json!({ "status": "ok" }),
                    Some(_) => match $crate::adapters::cloudflare::context(&env, ctx) {
                        Ok(context) => $crate::function::Function::health_of(&[&$function], &context).await,
                        Err(e) => $crate::__private::serde_json::json!({ "status": "degraded", "error": e.to_string() }),
                    },
                };
                return ::worker::Response::from_json(&answer);
            }
            let context = $crate::adapters::cloudflare::context(&env, ctx)?;
            $crate::adapters::cloudflare::bootstrap(&context).await?;
            let response = match $crate::adapters::cloudflare::request_from_worker(req).await? {
                Ok(request) => routes().handle(request, &context).await,
                Err(too_large) => too_large,
            };
            $crate::adapters::cloudflare::response_to_worker(response)
        }

        #[::worker::event(scheduled)]
        async fn scheduled(event: ::worker::ScheduledEvent, env: ::worker::Env, ctx: ::worker::ScheduleContext) {
            let context = match $crate::adapters::cloudflare::scheduled_context(&env, ctx) {
                Ok(c) => c,
                Err(e) => {
                    ::worker::console_error!("scheduled {}: {}", event.cron(), e);
                    return;
                }
            };
            if !$function.run_scheduled(&event.cron(), &context).await {
                ::worker::console_warn!("no scheduled work for cron {}", event.cron());
            }
        }
    };
}
