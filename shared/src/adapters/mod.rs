//! Adapters: one module per runtime, each implementing the ports of [`crate::ports`].
//!
//! - `native` (feature `native`): rusqlite, reqwest, tokio. Used by the companion and tests.

#[cfg(feature = "native")]
pub mod native;
