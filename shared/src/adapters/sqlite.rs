//! SQLite through rusqlite, the embedded store of the native host and of the WASI component.
//!
//! SQLite allows one writer at a time. Rather than let two connections race for the write
//! lock (SQLite's busy handler then sleeps in whole milliseconds), all writes go through one
//! shared writer connection behind a mutex; each worker thread reads through its own
//! connection, which WAL lets run beside the writer. WASI has no shared memory for WAL, so the
//! component opens its file in rollback-journal mode.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// The writer connection shared by every worker of one process.
#[derive(Clone)]
pub struct SqliteWriter {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
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
        Ok(SqliteWriter { path: path.to_path_buf(), conn: Arc::new(Mutex::new(conn)) })
    }
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
        // A panic while holding the lock leaves SQLite itself consistent (the transaction is
        // rolled back when the guard's statement drops), so a poisoned lock is still usable.
        self.writer.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(to_store_error)?;
        let mut changed = Vec::with_capacity(statements.len());
        for s in statements {
            let mut stmt = tx.prepare_cached(s.sql).map_err(to_store_error)?;
            let params: Vec<RusqliteValue> = s.params.iter().map(to_sql).collect();
            changed.push(stmt.execute(rusqlite::params_from_iter(params)).map_err(to_store_error)? as u64);
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
