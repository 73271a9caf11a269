//! Spin / WASI HTTP adapters (wasm32-wasip2, spin-sdk 7, WASI P3).
//!
//! Feature `spin-wasi`: a component that imports only `wasi:*` interfaces, so `wasmtime serve`
//! runs it. Configuration comes from the environment; the store is the embedded SQLite on the
//! file `STACK_SQLITE_PATH` (default `/data/stack-edge.sqlite`) in a folder the host preopens.
//! WASI has no file locks, so that build is for one local process at a time.
//! Feature `spin`: `spin:sqlite` as the store and `spin:variables` after the environment, for
//! the Spin runtime.
//!
//! A component instance lives for one request, so each request migrates (a no-op once done)
//! and makes sure the internal project exists, as the native host does once at start-up.
//!
//! [`crate::function_entries!`] turns a function's `FUNCTION` into the component's HTTP entry.

use std::collections::HashMap;
use std::rc::Rc;

use async_trait::async_trait;

use crate::adapters::sql_blobs::SqlBlobStore;
use crate::adapters::system::{EnvConfig, OsRandom, SystemClock};
use crate::context::{Config, Context, Peers, CONFIG_KEYS};
use crate::http::{Request, Response};
use crate::store::ports::{Background, BodyChunks, ConfigSource, HttpClient, HttpError, LocalFuture, SqlStore};

/// Configuration read once per request into a map (Spin variables are async to read).
pub struct MapConfig(pub HashMap<String, String>);

impl ConfigSource for MapConfig {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned().filter(|v| !v.is_empty())
    }
}

/// The environment (`wasmtime serve --env`), then Spin variables when the `spin` feature is on.
pub async fn load_config() -> MapConfig {
    let mut map = HashMap::new();
    for key in CONFIG_KEYS {
        let value = match EnvConfig.get(key) {
            Some(value) => Some(value),
            None => spin_variable(key).await,
        };
        if let Some(value) = value {
            map.insert(key.to_string(), value);
        }
    }
    MapConfig(map)
}

/// The Spin variable for `key` (its lower-case name).
#[cfg(feature = "spin")]
async fn spin_variable(key: &str) -> Option<String> {
    spin_sdk::variables::get(key.to_ascii_lowercase()).await.ok()
}

/// Without Spin there are no Spin variables.
#[cfg(not(feature = "spin"))]
async fn spin_variable(_key: &str) -> Option<String> {
    None
}

/// A component instance serves one request and ends with it, so background work is collected
/// and awaited after the handler, before the response leaves (nothing accepted is lost).
#[derive(Default)]
pub struct Deferred {
    pending: std::cell::RefCell<Vec<LocalFuture>>,
}

impl Deferred {
    /// Runs the pending work, including work that work spawns, until none is left.
    pub async fn run_pending(&self) {
        loop {
            let batch: Vec<LocalFuture> = self.pending.borrow_mut().drain(..).collect();
            if batch.is_empty() {
                return;
            }
            for work in batch {
                work.await;
            }
        }
    }
}

impl Background for Deferred {
    fn spawn(&self, work: LocalFuture) {
        self.pending.borrow_mut().push(work);
    }
    fn after_response(&self) -> bool {
        false // The entry runs pending work before it returns the response.
    }
}

/// Outbound HTTP through wasi:http.
pub struct WasiHttp;

#[async_trait(?Send)]
impl HttpClient for WasiHttp {
    async fn open(&self, request: Request) -> Result<http::Response<BodyChunks>, HttpError> {
        use futures_util::StreamExt;
        use http_body_util::BodyExt;
        let request = request.map(|b| http_body_util::Full::new(bytes::Bytes::from(b)));
        let response = spin_sdk::http::send(request).await.map_err(|e| HttpError(e.to_string()))?;
        let (parts, body) = response.into_parts();
        // Data frames in order; trailers carry nothing we read.
        let chunks = body.into_data_stream().map(|chunk| match chunk {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) => Err(HttpError(e.to_string())),
        });
        Ok(http::Response::from_parts(parts, chunks.boxed_local() as BodyChunks))
    }
}

/// A component reaches the deployment's other functions through its public API URL
/// (`NEXT_PUBLIC_STACK_API_URL`): components are separate instances with no binding between
/// them, and the URL routes each path to its function (Spin's router, or the operator's proxy).
pub struct ThroughPublicApi;

#[async_trait(?Send)]
impl Peers for ThroughPublicApi {
    async fn call(&self, ctx: &Context, _function: &str, request: Request) -> Result<Response, HttpError> {
        let (mut parts, body) = request.into_parts();
        let url = format!("{}{}", ctx.config.api_url.trim_end_matches('/'), parts.uri);
        parts.uri = url.parse().map_err(|e: http::uri::InvalidUri| HttpError(e.to_string()))?;
        ctx.http.send(Request::from_parts(parts, body)).await
    }
}

#[cfg(feature = "spin")]
pub use sqlite::SpinSqlite;

#[cfg(feature = "spin")]
mod sqlite {
    use super::*;
    use crate::store::ports::{SqlRow, SqlValue, Statement, StoreError};
    use spin_sdk::sqlite::{Connection, Value};

    /// `spin:sqlite` (the component's `default` database).
    pub struct SpinSqlite {
        conn: Connection,
    }

    impl SpinSqlite {
        /// The component's default `spin:sqlite` database, on the native host's and D1's terms:
        /// foreign keys enforced (SQLite leaves them off per connection; refused if that fails),
        /// a writer waits up to 5 s for another instance's transaction instead of failing at
        /// once, and, where the backend allows it (Spin's local file; a remote one may refuse),
        /// WAL with `synchronous = NORMAL`, so readers do not block the writer and a commit
        /// does not wait for two syncs of a rollback journal.
        pub async fn open_default() -> Result<SpinSqlite, StoreError> {
            let conn = Connection::open_default().await.map_err(|e| StoreError::Unavailable(format!("{e:?}")))?;
            let store = SpinSqlite { conn };
            store.run("PRAGMA foreign_keys = ON", &[]).await?;
            for pragma in ["PRAGMA busy_timeout = 5000", "PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"] {
                let _ = store.run(pragma, &[]).await;
            }
            Ok(store)
        }

        async fn run(&self, sql: &str, params: &[SqlValue]) -> Result<(Vec<String>, Vec<Vec<Value>>), StoreError> {
            let values = params.iter().map(|p| match p {
                SqlValue::Null => Value::Null,
                SqlValue::Integer(i) => Value::Integer(*i),
                SqlValue::Text(s) => Value::Text(s.clone()),
            });
            let result = self.conn.execute(sql, values).await.map_err(spin_error)?;
            let columns = result.columns().to_vec();
            let rows = result.collect().await.map_err(spin_error)?;
            Ok((columns, rows.into_iter().map(|r| r.values).collect()))
        }
    }

    fn spin_error(e: spin_sdk::sqlite::Error) -> StoreError {
        let text = format!("{e:?}");
        if text.contains("constraint failed") {
            StoreError::Constraint(text)
        } else {
            StoreError::Other(text)
        }
    }

    #[async_trait(?Send)]
    impl SqlStore for SpinSqlite {
        async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StoreError> {
            let (columns, rows) = self.run(sql, params).await?;
            rows.into_iter()
                .map(|values| {
                    let columns = columns
                        .iter()
                        .cloned()
                        .zip(values)
                        .map(|(name, v)| {
                            let v = match v {
                                Value::Null => SqlValue::Null,
                                Value::Integer(i) => SqlValue::Integer(i),
                                Value::Text(s) => SqlValue::Text(s),
                                other => {
                                    return Err(StoreError::Decode(format!("column {name}: unexpected {other:?}")))
                                }
                            };
                            Ok((name, v))
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(SqlRow { columns })
                })
                .collect()
        }

        async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
            self.run("BEGIN IMMEDIATE", &[]).await?;
            let mut changed = Vec::with_capacity(statements.len());
            for s in statements {
                if let Err(e) = self.run(s.sql, &s.params).await {
                    let _ = self.run("ROLLBACK", &[]).await;
                    return Err(e);
                }
                changed.push(self.conn.changes().await);
            }
            self.run("COMMIT", &[]).await?;
            Ok(changed)
        }

        async fn execute_script(&self, sql: &str) -> Result<(), StoreError> {
            // spin:sqlite runs one statement per call (a comment alone is refused as misuse).
            for statement in crate::store::script::statements(sql) {
                if let Err(e) = self.run(&statement, &[]).await {
                    // A script's failed statement must not leave its transaction open.
                    let _ = self.run("ROLLBACK", &[]).await;
                    return Err(e);
                }
            }
            Ok(())
        }
    }
}

/// The [`Context`] of one request, and its background work to await before responding.
pub async fn context() -> Result<(Context, Rc<Deferred>), String> {
    let source = load_config().await;
    let config = Config::load(&source).map_err(|e| e.to_string())?;
    let store = open_store(&config).await?;
    crate::store::migrations::migrate(store.as_ref()).await.map_err(|e| e.to_string())?;
    let deferred = Rc::new(Deferred::default());
    let blobs = Rc::new(SqlBlobStore::new(store.clone()));
    let ctx = Context::new(
        store,
        blobs,
        Rc::new(WasiHttp),
        Rc::new(ThroughPublicApi),
        Rc::new(SystemClock),
        Rc::new(OsRandom),
        deferred.clone(),
        config,
    );
    if let Some(key) = &ctx.config.internal_admin_key {
        crate::identity::projects::ensure_internal_project(&ctx, key).await.map_err(|e| e.to_string())?;
    }
    Ok((ctx, deferred))
}

#[cfg(feature = "spin")]
async fn open_store(_config: &Config) -> Result<Rc<dyn SqlStore>, String> {
    Ok(Rc::new(SpinSqlite::open_default().await.map_err(|e| e.to_string())?))
}

#[cfg(not(feature = "spin"))]
async fn open_store(config: &Config) -> Result<Rc<dyn SqlStore>, String> {
    use crate::adapters::sqlite::{Journal, SqliteStore, SqliteWriter};
    let writer = SqliteWriter::open_with(std::path::Path::new(&config.sqlite_path), Journal::Delete)
        .map_err(|e| e.to_string())?;
    Ok(Rc::new(SqliteStore::new(&writer).map_err(|e| e.to_string())?))
}

/// A buffered request from the component's incoming request, or the answer to give instead:
/// 413 when its body is over the cap (`shared::http::max_body_bytes`; reading stops there),
/// 400 when it cannot be read. The end user's location comes from a proxy's headers only when
/// `STACK_TRUSTED_PROXY` names that proxy, as on the native host (neither Spin nor wasmtime
/// knows where a request came from).
pub async fn request_from_wasi(req: spin_sdk::http::Request, config: &Config) -> Result<Request, Response> {
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let (parts, body) = req.into_parts();
    let limit = crate::http::max_body_bytes(parts.uri.path());
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(crate::http::body_too_large(limit)),
        Err(e) => return Err(crate::http::text(400, &format!("could not read the request: {e}"))),
    };
    let mut request = http::Request::from_parts(parts, body);
    let location = config.trusted_proxy.and_then(|p| crate::http::location::from_proxy_headers(request.headers(), p));
    if let Some(location) = location {
        request.extensions_mut().insert(location);
    }
    Ok(request)
}

/// The component's HTTP entry for `$function` (a function crate's `FUNCTION`): requests go
/// through its route table (`routes()`, defined by [`crate::function_entries!`], which expands
/// this); `/health` is answered by the entry, with what the function adds to it.
#[doc(hidden)]
#[macro_export]
macro_rules! __spin_entries {
    ($function:path) => {
        #[::spin_sdk::http_service]
        async fn serve(
            req: ::spin_sdk::http::Request,
        ) -> $crate::__private::http::Response<$crate::http::stream::HttpBody> {
            use $crate::adapters::spin as adapter;
            let response = async {
                let health = req.uri().path() == "/health";
                if health && $function.health.is_none() {
                    return $crate::http::json(&$crate::__private::serde_json::json!({ "status": "ok" }));
                }
                let (context, deferred) = match adapter::context().await {
                    Ok(c) => c,
                    Err(e) => return $crate::http::text(500, &format!("configuration: {e}")),
                };
                if health {
                    return $crate::http::json(&$crate::function::Function::health_of(&[&$function], &context).await);
                }
                let response = match adapter::request_from_wasi(req, &context.config).await {
                    Ok(request) => routes().handle(request, &context).await,
                    Err(refused) => refused,
                };
                deferred.run_pending().await;
                response
            }
            .await;
            // wasi:http sends a streamed body after the head, as its chunks come.
            $crate::http::stream::into_http_body(response)
        }
    };
}
