//! Native adapters: SQLite through rusqlite (WAL), outbound HTTP through reqwest, background
//! work as tokio local tasks, the system clock and the OS random source.
//!
//! SQLite allows one writer at a time. Rather than let two connections race for the write
//! lock (SQLite's busy handler then sleeps in whole milliseconds), all writes go through one
//! shared writer connection behind a mutex; each worker thread reads through its own
//! connection, which WAL lets run beside the writer.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::types::{Value as RusqliteValue, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::http::{Request, Response};
use crate::ports::{
    Background, Clock, ConfigSource, HttpClient, HttpError, LocalFuture, Random, SqlRow, SqlStore,
    SqlValue, Statement, StoreError,
};

// --- SQLite -------------------------------------------------------------------------------

/// The writer connection shared by every worker of one process.
#[derive(Clone)]
pub struct SqliteWriter {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl SqliteWriter {
    /// Opens (creating if needed) the database file in WAL mode.
    pub fn open(path: &Path) -> Result<SqliteWriter, StoreError> {
        let conn = Connection::open(path).map_err(to_store_error)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )
        .map_err(to_store_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteWriter {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

/// A store for one worker thread: its own read connection plus the shared writer.
pub struct SqliteStore {
    writer: SqliteWriter,
    reader: RefCell<Connection>,
}

impl SqliteStore {
    pub fn new(writer: &SqliteWriter) -> Result<SqliteStore, StoreError> {
        let reader = Connection::open_with_flags(
            &writer.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(to_store_error)?;
        reader
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(to_store_error)?;
        reader.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStore {
            writer: writer.clone(),
            reader: RefCell::new(reader),
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (the transaction is
        // rolled back when the guard's statement drops), so a poisoned lock is still usable.
        self.writer.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn to_sql(v: &SqlValue) -> RusqliteValue {
    match v {
        SqlValue::Null => RusqliteValue::Null,
        SqlValue::Integer(i) => RusqliteValue::Integer(*i),
        SqlValue::Text(s) => RusqliteValue::Text(s.clone()),
    }
}

fn from_sql(v: ValueRef<'_>) -> Result<SqlValue, StoreError> {
    match v {
        ValueRef::Null => Ok(SqlValue::Null),
        ValueRef::Integer(i) => Ok(SqlValue::Integer(i)),
        ValueRef::Text(t) => Ok(SqlValue::Text(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Real(r) => Err(StoreError::Decode(format!("unexpected real {r}"))),
        ValueRef::Blob(_) => Err(StoreError::Decode("unexpected blob".into())),
    }
}

fn to_store_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Constraint(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn run_query(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(to_store_error)?;
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let params: Vec<RusqliteValue> = params.iter().map(to_sql).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(to_store_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(to_store_error)? {
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            columns.push((
                name.clone(),
                from_sql(row.get_ref(i).map_err(to_store_error)?)?,
            ));
        }
        out.push(SqlRow { columns });
    }
    Ok(out)
}

#[async_trait(?Send)]
impl SqlStore for SqliteStore {
    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StoreError> {
        run_query(&self.reader.borrow(), sql, params)
    }

    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(to_store_error)?;
        let mut changed = Vec::with_capacity(statements.len());
        for s in statements {
            let mut stmt = tx.prepare_cached(s.sql).map_err(to_store_error)?;
            let params: Vec<RusqliteValue> = s.params.iter().map(to_sql).collect();
            changed.push(
                stmt.execute(rusqlite::params_from_iter(params))
                    .map_err(to_store_error)? as u64,
            );
        }
        tx.commit().map_err(to_store_error)?;
        Ok(changed)
    }

    async fn execute_script(&self, sql: &str) -> Result<(), StoreError> {
        let conn = self.writer();
        let result = conn.execute_batch(sql).map_err(to_store_error);
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result
    }
}

// --- clock, randomness, configuration -----------------------------------------------------

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64
    }
}

pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the OS random source is available");
    }
}

/// Configuration from the process environment.
pub struct EnvConfig;

impl ConfigSource for EnvConfig {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

// --- outbound HTTP --------------------------------------------------------------------------

pub struct ReqwestClient {
    client: reqwest::Client,
}

impl ReqwestClient {
    pub fn new() -> ReqwestClient {
        ReqwestClient {
            client: reqwest::Client::new(),
        }
    }
}

impl Default for ReqwestClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait(?Send)]
impl HttpClient for ReqwestClient {
    async fn send(&self, request: Request) -> Result<Response, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| HttpError(e.to_string()))?;
        builder
            .body(body.to_vec())
            .map_err(|e| HttpError(e.to_string()))
    }
}

// --- background work ------------------------------------------------------------------------

/// Runs background work as tasks on the current thread's `LocalSet`, and counts what is still
/// pending so a worker can finish it before shutting down.
#[derive(Clone, Default)]
pub struct LocalBackground {
    pending: Rc<Cell<usize>>,
    idle: Rc<tokio::sync::Notify>,
}

impl LocalBackground {
    pub fn new() -> LocalBackground {
        LocalBackground::default()
    }

    /// Waits until every spawned piece of work has finished.
    pub async fn drain(&self) {
        while self.pending.get() > 0 {
            self.idle.notified().await;
        }
    }
}

impl Background for LocalBackground {
    fn spawn(&self, work: LocalFuture) {
        self.pending.set(self.pending.get() + 1);
        let pending = self.pending.clone();
        let idle = self.idle.clone();
        tokio::task::spawn_local(async move {
            work.await;
            pending.set(pending.get() - 1);
            if pending.get() == 0 {
                idle.notify_waiters();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempdir::Dir, SqliteStore) {
        let dir = tempdir::Dir::new();
        let writer = SqliteWriter::open(&dir.0.join("db.sqlite")).unwrap();
        let store = SqliteStore::new(&writer).unwrap();
        (dir, store)
    }

    /// A throwaway directory removed on drop (std-only, to keep dev-dependencies small).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).unwrap();
                let path = std::env::temp_dir()
                    .join(format!("stack-edge-test-{}", crate::crypto::hex(&bytes)));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn batches_are_atomic_and_report_changes() {
        let (_dir, store) = store();
        block_on(async {
            store
                .execute_script("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
                .await
                .unwrap();
            let changed = store
                .batch(&[
                    Statement::new("INSERT INTO t VALUES (?, ?)", vec!["a".into(), 1.into()]),
                    Statement::new("UPDATE t SET v = 2 WHERE k = ?", vec!["missing".into()]),
                ])
                .await
                .unwrap();
            assert_eq!(changed, vec![1, 0]);
            let err = store
                .batch(&[
                    Statement::new("INSERT INTO t VALUES (?, ?)", vec!["b".into(), 1.into()]),
                    Statement::new("INSERT INTO t VALUES (?, ?)", vec!["a".into(), 1.into()]),
                ])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Constraint(_)));
            let rows = store
                .query("SELECT k FROM t ORDER BY k", &[])
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "the failed batch left nothing behind");
        });
    }

    #[test]
    fn reqwest_client_round_trips_a_request() {
        block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.ends_with(b"ping") {
                    let n = socket.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                socket
                    .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\nx-echo: yes\r\nconnection: close\r\n\r\npong")
                    .await
                    .unwrap();
                String::from_utf8(seen).unwrap()
            });
            let request = http::Request::post(format!("http://{addr}/path?q=1"))
                .header("x-test", "1")
                .body(b"ping".to_vec())
                .unwrap();
            let response = ReqwestClient::new().send(request).await.unwrap();
            assert_eq!(response.status(), 201);
            assert_eq!(response.headers()["x-echo"], "yes");
            assert_eq!(response.body(), b"pong");
            let seen = server.await.unwrap();
            assert!(seen.starts_with("POST /path?q=1 HTTP/1.1"), "{seen}");
            assert!(seen.contains("x-test: 1"), "{seen}");
        });
    }

    #[test]
    fn background_work_is_drained() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let background = LocalBackground::new();
            let done = Rc::new(Cell::new(0));
            for i in 0..3 {
                let done = done.clone();
                background.spawn(Box::pin(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(10 * i)).await;
                    done.set(done.get() + 1);
                }));
            }
            background.drain().await;
            assert_eq!(done.get(), 3);
        });
    }

    #[test]
    fn migrations_apply_once() {
        let (_dir, store) = store();
        block_on(async {
            assert_eq!(
                crate::migrations::migrate(&store).await.unwrap(),
                vec!["0001_init.sql"]
            );
            assert!(crate::migrations::migrate(&store).await.unwrap().is_empty());
        });
    }
}
