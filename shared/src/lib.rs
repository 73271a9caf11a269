//! Stack Edge's common crate.
//!
//! Everything a function needs that is not tied to a runtime lives here: the HTTP contract
//! (request/response types, the KnownError envelope, schema validation), request
//! authentication, access-token signing and verification, the SQL schema and its migrations,
//! and the ports (traits) through which domain code reaches the outside world.
//!
//! Adapters that implement the ports for a runtime live in [`adapters`], each behind a cargo
//! feature, so a wasm build never links rusqlite, reqwest or tokio.

pub mod adapters;
pub mod auth;
pub mod clickhouse;
pub mod config;
pub mod context;
pub mod crypto;
pub mod email;
pub mod email_server;
pub mod error;
pub mod events;
pub mod function;
pub mod http;
pub mod metrics;
pub mod migrations;
pub mod notifications;
pub mod ports;
pub mod projects;
pub mod query_guard;
pub mod sessions;
pub mod tenancy;
pub mod tokens;
pub mod user_sql;
pub mod users;
pub mod validate;

pub use context::Context;

/// Crates the runtime entry macros expand to, so function crates need not depend on them.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "spin-component")]
    pub use {bytes, http_body_util};
    pub use {http, serde_json};
}
pub use error::{ApiError, KnownError};
pub use http::{Request, Response};
