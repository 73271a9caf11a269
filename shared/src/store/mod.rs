//! The ports (traits) through which domain code reaches the outside world, and the primary
//! store's schema migrations. Nothing here names a domain type.

pub mod migrations;
pub mod ports;
