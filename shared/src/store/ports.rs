//! Ports: the traits through which domain code reaches the outside world.
//!
//! Each runtime provides one adapter per port (see [`crate::adapters`]). Futures here are not
//! `Send`: wasm runtimes are single-threaded, and the native host runs handlers on a
//! current-thread runtime per worker instead of forcing `Send` onto the domain code.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

// --- SQL store ------------------------------------------------------------------------------

/// A SQL value in the portable dialect: integers (millisecond timestamps, booleans as 0/1),
/// text (ids, JSON), nulls. Reals and blobs are not used by the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Integer(v)
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Integer(v as i64)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(SqlValue::Null)
    }
}

/// One result row: column names with their values, in select order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow {
    pub columns: Vec<(String, SqlValue)>,
}

impl SqlRow {
    pub fn value(&self, name: &str) -> Result<&SqlValue, StoreError> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| StoreError::Decode(format!("no column {name}")))
    }

    pub fn text(&self, name: &str) -> Result<String, StoreError> {
        match self.value(name)? {
            SqlValue::Text(s) => Ok(s.clone()),
            other => Err(StoreError::Decode(format!("column {name}: expected text, got {other:?}"))),
        }
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.value(name)? {
            SqlValue::Null => Ok(None),
            _ => self.text(name).map(Some),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, StoreError> {
        match self.value(name)? {
            SqlValue::Integer(i) => Ok(*i),
            other => Err(StoreError::Decode(format!("column {name}: expected integer, got {other:?}"))),
        }
    }

    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.value(name)? {
            SqlValue::Null => Ok(None),
            _ => self.int(name).map(Some),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.int(name)? != 0)
    }
}

/// One statement of a batch.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: &'static str, params: Vec<SqlValue>) -> Self {
        Statement { sql, params }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// A UNIQUE or PRIMARY KEY constraint refused the write.
    #[error("constraint violation: {0}")]
    Constraint(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("could not decode row: {0}")]
    Decode(String),
    #[error("store error: {0}")]
    Other(String),
}

/// The primary SQL store (SQLite today, D1 on Cloudflare). Statements use `?` placeholders.
#[async_trait(?Send)]
pub trait SqlStore {
    /// Runs a read and returns its rows.
    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StoreError>;
    /// Runs statements atomically, in order, in one transaction. Returns the number of rows each
    /// statement changed. Conditional writes report 0 instead of failing, so callers decide.
    async fn batch(&self, statements: &[Statement]) -> Result<Vec<u64>, StoreError>;
    /// Runs one write and returns the number of rows it changed.
    async fn execute(&self, sql: &'static str, params: Vec<SqlValue>) -> Result<u64, StoreError> {
        let changed = self.batch(&[Statement::new(sql, params)]).await?;
        Ok(changed.first().copied().unwrap_or(0))
    }
    /// Runs a whole SQL script (migrations). Not for user input.
    async fn execute_script(&self, sql: &str) -> Result<(), StoreError>;
}

// --- clock and randomness -------------------------------------------------------------------

pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

pub trait Random {
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill(&self, buf: &mut [u8]);
}

// --- outbound HTTP --------------------------------------------------------------------------

#[derive(Debug, Clone, thiserror::Error)]
#[error("outbound HTTP failed: {0}")]
pub struct HttpError(pub String);

impl HttpError {
    const TOO_LARGE: &'static str = "the response body is over its limit of ";

    /// The answer was longer than its [`ResponseLimit`]; reading stopped there.
    pub fn too_large(limit: usize) -> HttpError {
        HttpError(format!("{}{limit} bytes", Self::TOO_LARGE))
    }

    pub fn is_too_large(&self) -> bool {
        self.0.starts_with(Self::TOO_LARGE)
    }
}

/// The most bytes an outbound call's answer may hold, as a request extension: every adapter
/// stops reading there and fails with [`HttpError::too_large`], so an answer's size (a user
/// query's rows) cannot exhaust a Worker's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimit(pub usize);

/// How long an outbound call may take, as a request extension. Without it a native client's
/// default bound applies; a call allowed longer (a user query with a long timeout, a model
/// call) says so. Runtimes whose fetch has no client-side bound ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub std::time::Duration);

#[async_trait(?Send)]
pub trait HttpClient {
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError>;
}

// --- blob storage ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlobError {
    /// The store refuses blobs this large (nothing was written).
    #[error("the blob is {size} bytes; the store takes at most {max}")]
    TooLarge { size: usize, max: usize },
    #[error("blob store: {0}")]
    Store(String),
}

/// Whole-object storage by key (session-replay chunks): a SQL table by default, R2 on
/// Cloudflare. A write is all or nothing.
#[async_trait(?Send)]
pub trait BlobStore {
    /// The largest blob [`BlobStore::put`] accepts.
    fn max_bytes(&self) -> usize;
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;
    /// Deletes the blobs under `keys`; keys that hold nothing are fine.
    async fn delete(&self, keys: &[String]) -> Result<(), BlobError>;
}

// --- email ----------------------------------------------------------------------------------

/// One email as the mail server gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEmail {
    /// `<id@domain>`: the same for every attempt of one outbox row.
    pub message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Why a send failed, in upstream's error classes (contract part 1, §5.2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct SendFailure {
    pub error_type: &'static str,
    pub retryable: bool,
    pub message: String,
}

/// Whose mail server it is: the operator's (shared, managed) or a project's own (`Resend`,
/// `Smtp`), which a sender only reaches on a public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Shared,
    Managed,
    Resend,
    Smtp,
}

/// One concrete mail server and the sender to use on it.
#[derive(Clone, PartialEq)]
pub struct MailServer {
    pub kind: ServerKind,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sender_name: String,
    pub sender_email: String,
}

impl MailServer {
    /// Implicit TLS (`secure`) only on the SMTPS ports, as upstream.
    pub fn implicit_tls(&self) -> bool {
        matches!(self.port, 465 | 2465)
    }

    /// The `From` mailbox: `"Name" <address>`.
    pub fn from(&self) -> String {
        let name = self.sender_name.replace(['"', '\\', '\r', '\n'], "");
        format!("\"{name}\" <{}>", self.sender_email)
    }
}

// The password never reaches a log line.
impl std::fmt::Debug for MailServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailServer")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("sender_email", &self.sender_email)
            .finish_non_exhaustive()
    }
}

/// Sends email through a given mail server (SMTP natively).
#[async_trait(?Send)]
pub trait Mailer {
    async fn send(&self, server: &MailServer, email: &OutgoingEmail) -> Result<(), SendFailure>;
}

// --- background work ------------------------------------------------------------------------

pub type LocalFuture = Pin<Box<dyn Future<Output = ()> + 'static>>;

/// Work that runs after the response is sent (Cloudflare's `wait_until`, a local task natively).
/// Runtimes finish pending work before they shut down.
pub trait Background {
    fn spawn(&self, work: LocalFuture);
}

// --- configuration --------------------------------------------------------------------------

/// Where configuration values come from: process environment, worker vars and secrets, Spin
/// variables. [`crate::context::Config::load`] is the one loader on top of it.
pub trait ConfigSource {
    fn get(&self, key: &str) -> Option<String>;
}
