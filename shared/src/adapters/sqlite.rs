//! SQLite through rusqlite, the embedded store of the native host and of the WASI component.
//!
//! SQLite allows one writer at a time. Rather than let two connections race for the write
//! lock (SQLite's busy handler then sleeps in whole milliseconds), all writes go through one
//! shared writer connection behind a mutex; each worker thread reads through its own
//! connection, which WAL lets run beside the writer. WASI has no shared memory for WAL, so the
//! component opens its file in rollback-journal mode.
//!
//! Batches are group-committed: a batch is queued, and whoever holds the writer runs every
//! queued batch in one transaction, each inside its own savepoint (a failing batch rolls back
//! alone), then commits once and hands each batch its result. Under concurrent writes (every
//! refresh marks its session used) that is one commit for many batches; alone, a batch is its
//! own transaction as before. A batch's result arrives only after the commit that holds it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::types::{Value as RusqliteValue, ValueRef};
use rusqlite::{Connection, OpenFlags};

use crate::store::ports::{SqlRow, SqlStore, SqlValue, Statement, StoreError};

/// How the database file journals writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// Write-ahead log: readers never wait for the writer. Needs shared memory.
    Wal,
    /// Rollback journal: works where shared memory does not (WASI).
    Delete,
}

/// The writer connection shared by every worker of one process, and the batches waiting
/// for it.
#[derive(Clone)]
pub struct SqliteWriter {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    queue: Arc<Mutex<Vec<Queued>>>,
}

/// A batch waiting for the writer, and where its result goes.
struct Queued {
    statements: Vec<Statement>,
    reply: mpsc::Sender<Result<Vec<u64>, StoreError>>,
}

impl SqliteWriter {
    /// Opens (creating if needed) the database file in WAL mode.
    pub fn open(path: &Path) -> Result<SqliteWriter, StoreError> {
        SqliteWriter::open_with(path, Journal::Wal)
    }

    /// Opens (creating) the database file with the given journal mode.
    pub fn open_with(path: &Path, journal: Journal) -> Result<SqliteWriter, StoreError> {
        let conn = Connection::open(path).map_err(to_store_error)?;
        let mode = match journal {
            Journal::Wal => "WAL",
            Journal::Delete => "DELETE",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = {mode}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;"
        ))
        .map_err(to_store_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteWriter { path: path.to_path_buf(), conn: Arc::new(Mutex::new(conn)), queue: Arc::default() })
    }

    /// Runs `statements` atomically, group-committed with the batches queued beside it.
    fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
        let (reply, result) = mpsc::channel();
        lock(&self.queue).push(Queued { statements: statements.to_vec(), reply });
        let mut conn = lock(&self.conn);
        // Whoever held the writer may have run this batch with its own: it replied before
        // letting go. If not, this batch is still queued, and this thread runs the queue.
        if let Ok(done) = result.try_recv() {
            return done;
        }
        let group = std::mem::take(&mut *lock(&self.queue));
        commit_group(&mut conn, group);
        drop(conn);
        result.recv().unwrap_or_else(|_| Err(StoreError::Other("the batch was dropped unanswered".into())))
    }
}

/// A lock that stays usable after a panic elsewhere: a panic while holding the writer leaves
/// SQLite consistent (the transaction rolls back when its guard drops).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `group` in one transaction and answers each batch: its changes, or its error (its
/// savepoint rolled back; with one batch, the transaction itself), or the commit's error.
fn commit_group(conn: &mut Connection, group: Vec<Queued>) {
    #[cfg(test)]
    tests::LARGEST_GROUP.fetch_max(group.len(), std::sync::atomic::Ordering::Relaxed);
    let alone = group.len() == 1;
    let run = |conn: &mut Connection| -> Result<Vec<Result<Vec<u64>, StoreError>>, StoreError> {
        let mut tx =
            conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(to_store_error)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for queued in &group {
            if alone {
                outcomes.push(Ok(run_statements(&tx, &queued.statements)?));
                continue;
            }
            let savepoint = tx.savepoint().map_err(to_store_error)?;
            // Dropped without commit (on an error), the savepoint rolls this batch back.
            let outcome = run_statements(&savepoint, &queued.statements)
                .and_then(|changed| savepoint.commit().map(|()| changed).map_err(to_store_error));
            outcomes.push(outcome);
        }
        tx.commit().map_err(to_store_error)?;
        Ok(outcomes)
    };
    match run(conn) {
        Ok(outcomes) => {
            for (queued, outcome) in group.iter().zip(outcomes) {
                let _ = queued.reply.send(outcome);
            }
        }
        Err(e) => {
            for queued in &group {
                let _ = queued.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Executes `statements` in order, returning each one's changed-row count.
fn run_statements(conn: &Connection, statements: &[Statement]) -> Result<Vec<u64>, StoreError> {
    let mut changed = Vec::with_capacity(statements.len());
    for s in statements {
        let mut stmt = conn.prepare_cached(s.sql).map_err(to_store_error)?;
        let params: Vec<RusqliteValue> = s.params.iter().map(to_sql).collect();
        changed.push(stmt.execute(rusqlite::params_from_iter(params)).map_err(to_store_error)? as u64);
    }
    Ok(changed)
}

/// A store for one worker thread: its own read connection plus the shared writer.
pub struct SqliteStore {
    writer: SqliteWriter,
    reader: RefCell<Connection>,
}

impl SqliteStore {
    /// A read connection to the writer's database; writes go through the writer.
    pub fn new(writer: &SqliteWriter) -> Result<SqliteStore, StoreError> {
        let reader = Connection::open_with_flags(
            &writer.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(to_store_error)?;
        reader.execute_batch("PRAGMA busy_timeout = 5000;").map_err(to_store_error)?;
        reader.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStore { writer: writer.clone(), reader: RefCell::new(reader) })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        lock(&self.writer.conn)
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
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Constraint(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn run_query(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(to_store_error)?;
    let names: Vec<String> = stmt.column_names().map(std::string::ToString::to_string).collect();
    let params: Vec<RusqliteValue> = params.iter().map(to_sql).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(to_store_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(to_store_error)? {
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            columns.push((name.clone(), from_sql(row.get_ref(i).map_err(to_store_error)?)?));
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
        self.writer.batch(statements)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The most batches one commit held (the test checks that groups formed).
    pub(super) static LARGEST_GROUP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Many threads writing at once: each batch is all or nothing, whichever thread commits it,
    /// and every caller gets its own batch's answer.
    #[test]
    fn group_committed_batches_stay_atomic_and_answer_their_own_caller() {
        let dir = std::env::temp_dir().join(format!("stack-edge-group-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        let _ = std::fs::remove_file(&path);
        let writer = SqliteWriter::open(&path).unwrap();
        lock(&writer.conn).execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE NOT NULL)").unwrap();
        let threads: Vec<_> = (0..8i64)
            .map(|thread| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    let mut answers = Vec::new();
                    for i in 0..200i64 {
                        let id = thread * 1000 + i;
                        // Every fifth batch's second row collides with a row another batch
                        // wrote (or will write): the batch must fail whole, its first row gone.
                        let second = if i % 5 == 0 { "shared".to_string() } else { format!("v{id}b") };
                        let result = writer.batch(&[
                            Statement::new(
                                "INSERT INTO t (id, v) VALUES (?, ?)",
                                vec![id.into(), format!("v{id}a").into()],
                            ),
                            Statement::new(
                                "INSERT INTO t (id, v) VALUES (?, ?)",
                                vec![(id + 100_000).into(), second.into()],
                            ),
                        ]);
                        answers.push((id, result));
                    }
                    answers
                })
            })
            .collect();
        let answers: Vec<(i64, Result<Vec<u64>, StoreError>)> =
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let conn = lock(&writer.conn);
        let exists = |id: i64| -> bool {
            conn.query_row("SELECT count(*) FROM t WHERE id = ?", [id], |r| r.get::<_, i64>(0)).unwrap() == 1
        };
        let mut failed = 0;
        for (id, result) in &answers {
            match result {
                Ok(changed) => {
                    assert_eq!(changed, &vec![1, 1]);
                    assert!(exists(*id) && exists(id + 100_000), "batch {id} answered ok but is not all there");
                }
                Err(StoreError::Constraint(_)) => {
                    failed += 1;
                    assert!(!exists(*id) && !exists(id + 100_000), "batch {id} failed but left rows");
                }
                Err(e) => panic!("batch {id}: {e}"),
            }
        }
        // Of the 320 batches writing "shared", exactly one got it.
        assert_eq!(failed, 319);
        assert!(LARGEST_GROUP.load(std::sync::atomic::Ordering::Relaxed) > 1, "no two batches shared a commit");
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 2 * (answers.len() as i64 - failed));
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
