//! The ports (traits) through which domain code reaches the outside world, and the primary
//! store's schema migrations, keyset pagination and the rate limiter. Nothing here names a
//! domain type.

pub mod keyset;
pub mod migrations;
pub mod ports;
pub mod rate_limit;
pub mod script;
