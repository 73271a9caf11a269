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
    /// SQL NULL.
    Null,
    /// An integer (also booleans as 0/1 and millisecond timestamps).
    Integer(i64),
    /// Text (also JSON).
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
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// One result row: column names with their values, in select order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRow {
    /// The columns in select order, by name.
    pub columns: Vec<(String, SqlValue)>,
}

impl SqlRow {
    /// The column `name`'s value.
    pub fn value(&self, name: &str) -> Result<&SqlValue, StoreError> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| StoreError::Decode(format!("no column {name}")))
    }

    /// The column `name` as text.
    pub fn text(&self, name: &str) -> Result<String, StoreError> {
        match self.value(name)? {
            SqlValue::Text(s) => Ok(s.clone()),
            other => Err(StoreError::Decode(format!("column {name}: expected text, got {other:?}"))),
        }
    }

    /// The column `name` as text, or `None` for NULL.
    pub fn opt_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.value(name)? {
            SqlValue::Null => Ok(None),
            _ => self.text(name).map(Some),
        }
    }

    /// The column `name` as an integer.
    pub fn int(&self, name: &str) -> Result<i64, StoreError> {
        match self.value(name)? {
            SqlValue::Integer(i) => Ok(*i),
            other => Err(StoreError::Decode(format!("column {name}: expected integer, got {other:?}"))),
        }
    }

    /// The column `name` as an integer, or `None` for NULL.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.value(name)? {
            SqlValue::Null => Ok(None),
            _ => self.int(name).map(Some),
        }
    }

    /// The column `name` as a 0/1 boolean.
    pub fn bool(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.int(name)? != 0)
    }
}

/// One statement of a batch.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL, with `?` or `?N` placeholders.
    pub sql: &'static str,
    /// The placeholder values.
    pub params: Vec<SqlValue>,
}

impl Statement {
    /// A statement of `sql` with `params`.
    pub fn new(sql: &'static str, params: Vec<SqlValue>) -> Self {
        Statement { sql, params }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
/// Why a store call failed.
pub enum StoreError {
    /// A UNIQUE or PRIMARY KEY constraint refused the write.
    #[error("constraint violation: {0}")]
    Constraint(String),
    #[error("store unavailable: {0}")]
    /// The store could not be reached or refused the call.
    Unavailable(String),
    #[error("could not decode row: {0}")]
    /// A row did not have the expected shape.
    Decode(String),
    #[error("store error: {0}")]
    /// Anything else the store reported.
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

/// The current time.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// Randomness from the runtime's secure source.
pub trait Random {
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill(&self, buf: &mut [u8]);
}

// --- outbound HTTP --------------------------------------------------------------------------

#[derive(Debug, Clone, thiserror::Error)]
#[error("outbound HTTP failed: {0}")]
/// An outbound HTTP call failed (the message says how).
pub struct HttpError(pub String);

impl HttpError {
    const TOO_LARGE: &'static str = "the response body is over its limit of ";

    /// The answer was longer than its [`ResponseLimit`]; reading stopped there.
    pub fn too_large(limit: usize) -> HttpError {
        HttpError(format!("{}{limit} bytes", Self::TOO_LARGE))
    }

    /// Whether the answer was over the response-size bound.
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

/// An answer's body as it arrives, chunk by chunk.
pub type BodyChunks = Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, HttpError>>>>;

#[async_trait(?Send)]
/// Outbound HTTP (reqwest natively, fetch on Workers, wasi:http in components). An adapter
/// implements [`HttpClient::open`] only; the buffered [`HttpClient::send`] is built on it, so
/// the [`ResponseLimit`] is enforced in one place.
pub trait HttpClient {
    /// Sends `request`; the answer's head, and its body as it arrives (a model's streamed
    /// tokens are relayed before the last one is written).
    async fn open(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<BodyChunks>, HttpError>;

    /// Sends `request` and buffers the whole answer, failing with [`HttpError::too_large`] past
    /// the request's [`ResponseLimit`].
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, HttpError> {
        use futures_util::StreamExt;
        let limit = request.extensions().get::<ResponseLimit>().map_or(usize::MAX, |l| l.0);
        let (parts, mut chunks) = self.open(request).await?.into_parts();
        let mut body = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > limit {
                return Err(HttpError::too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(http::Response::from_parts(parts, body))
    }
}

// --- blob storage ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
/// Why a blob call failed.
pub enum BlobError {
    /// The store refuses blobs this large (nothing was written).
    #[error("the blob is {size} bytes; the store takes at most {max}")]
    /// The blob is over the store's size bound.
    TooLarge {
        /// The blob's size in bytes.
        size: usize,
        /// The most the store takes.
        max: usize,
    },
    #[error("blob store: {0}")]
    /// The blob store failed.
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
    /// The blob under `key`, if there is one.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;
    /// Deletes the blobs under `keys`; keys that hold nothing are fine.
    async fn delete(&self, keys: &[String]) -> Result<(), BlobError>;
}

// --- email ----------------------------------------------------------------------------------

/// One email as the mail server gets it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutgoingEmail {
    /// `<id@domain>`: the same for every attempt of one outbox row.
    pub message_id: String,
    /// The `From` mailbox.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The subject.
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The text body.
    pub text: String,
}

/// Every class a [`SendFailure`] may carry: the SMTP adapter's and the configuration's. The
/// emails function refuses a sender's report of any other.
pub const SEND_FAILURE_CLASSES: &[&str] = &[
    "AUTH_FAILED",
    "EMAIL_CONFIG",
    "HOST_NOT_ALLOWED",
    "HOST_NOT_FOUND",
    "INVALID_EMAIL_ADDRESS",
    "PORT_NOT_ALLOWED",
    "REJECTED",
    "TEMPORARY",
    "TIMEOUT",
    "TRANSIENT_NEGATIVE_COMPLETION_REPLY",
    "UNKNOWN",
];

/// Why a send failed, in upstream's error classes (docs/api.md §5.2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct SendFailure {
    /// Upstream's error class (`HOST_NOT_FOUND`, `AUTH_FAILED`, ...).
    pub error_type: &'static str,
    /// Whether a later attempt may succeed.
    pub retryable: bool,
    /// What happened, for the internal error message.
    pub message: String,
}

/// Whose mail server it is: the operator's (shared, managed) or a project's own (`Resend`,
/// `Smtp`), which a sender only reaches on a public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// The operator's shared server.
    Shared,
    /// Resend with a managed domain's scoped key.
    Managed,
    /// A project's Resend account (plain SMTP).
    Resend,
    /// A project's own SMTP server.
    Smtp,
}

/// One concrete mail server and the sender to use on it. Serialised only into a sender's
/// claim (the password travels there and nowhere else); `Debug` hides the password.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MailServer {
    /// Whose server it is.
    pub kind: ServerKind,
    /// Its host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The SMTP user, if it needs one.
    pub username: Option<String>,
    /// That user's password.
    pub password: Option<String>,
    /// The sender's display name.
    pub sender_name: String,
    /// The sender address.
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
    /// Sends `email` through `server`.
    async fn send(&self, server: &MailServer, email: &OutgoingEmail) -> Result<(), SendFailure>;
}

// --- background work ------------------------------------------------------------------------

/// A future for background work (not `Send`: wasm runtimes are single-threaded).
pub type LocalFuture = Pin<Box<dyn Future<Output = ()> + 'static>>;

/// Work that runs after the response is sent (Cloudflare's `wait_until`, a local task natively).
/// Runtimes finish pending work before they shut down.
pub trait Background {
    /// Runs `work` after the response, without blocking it.
    fn spawn(&self, work: LocalFuture);
    /// Whether the response leaves before the work finishes (false where the runtime can only
    /// run it before responding): work that is merely worth doing soon skips such runtimes.
    fn after_response(&self) -> bool {
        true
    }
}

// --- configuration --------------------------------------------------------------------------

/// Where configuration values come from: process environment, worker vars and secrets, Spin
/// variables. [`crate::context::Config::load`] is the one loader on top of it.
pub trait ConfigSource {
    /// The value of `key`, if it is set and not empty.
    fn get(&self, key: &str) -> Option<String>;
}
