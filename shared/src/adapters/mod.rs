//! Adapters: one module per runtime, each implementing the ports of [`crate::store::ports`].
//!
//! - `sql_blobs` (every build): the blob store as a table of the primary store.
//! - `sqlite` (feature `sqlite`): rusqlite, the embedded store (native host, WASI component).
//! - `system` (native and WASI builds): system clock, OS randomness, environment variables.
//! - `native` (feature `native`): reqwest, tokio. Used by the companion and tests.
//! - `smtp` (feature `native`): the mailer over SMTP (lettre).
//! - `cloudflare` (feature `cloudflare`, wasm32-unknown-unknown): D1, fetch, vars, wait_until.
//! - `spin` (features `spin-wasi` / `spin`, wasm32-wasip2): wasi:http entry; the embedded
//!   store on a preopened folder (`spin-wasi`), or spin:sqlite and spin:variables (`spin`).

pub mod sql_blobs;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(any(feature = "native", feature = "spin-component"))]
pub mod system;

#[cfg(feature = "native")]
pub mod native;

#[cfg(feature = "native")]
pub mod smtp;

#[cfg(feature = "cloudflare")]
pub mod cloudflare;

#[cfg(feature = "spin-component")]
pub mod spin;
