//! The ports (traits) through which domain code reaches the outside world, and the primary
//! store's schema migrations, and keyset pagination. Nothing here names a domain type.

pub mod keyset;
pub mod migrations;
pub mod ports;
