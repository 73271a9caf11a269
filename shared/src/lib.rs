//! Stack Edge's common crate.
//!
//! Everything a function needs that is not tied to a runtime lives here: the HTTP contract
//! (request/response types, the KnownError envelope, schema validation), request
//! authentication, access-token signing and verification, the SQL schema and its migrations,
//! and the ports (traits) through which domain code reaches the outside world.
//!
//! Adapters that implement the ports for a runtime live in [`adapters`], each behind a cargo
//! feature, so a wasm build never links rusqlite, reqwest or tokio.

#![warn(missing_docs)]

pub mod adapters;
pub mod analytics;
pub mod config;
pub mod context;
pub mod email;
pub mod function;
pub mod http;
pub mod identity;
pub mod store;

pub use context::Context;

/// Crates the runtime entry macros expand to, so function crates need not depend on them.
#[doc(hidden)]
pub mod __private {
    pub use {http, serde_json};
}
pub use http::error::{ApiError, KnownError};
pub use http::{Request, Response};
