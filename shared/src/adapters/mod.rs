//! Adapters: one module per runtime, each implementing the ports of [`crate::ports`].
//!
//! - `native` (feature `native`): rusqlite, reqwest, tokio. Used by the companion and tests.
//! - `cloudflare` (feature `cloudflare`, wasm32-unknown-unknown): D1, fetch, vars, wait_until.
//! - `spin` (features `spin-wasi` / `spin`, wasm32-wasip2): wasi:http, env or spin:variables,
//!   spin:sqlite.

#[cfg(feature = "native")]
pub mod native;

#[cfg(feature = "cloudflare")]
pub mod cloudflare;

#[cfg(feature = "spin-wasi")]
pub mod spin;
