//! The analytics store: the ClickHouse client, the SQL guard, the one path user SQL takes,
//! the events written on token mints, and the metrics' shared shapes.

pub mod clickhouse;
pub mod events;
pub mod metrics;
pub mod query_guard;
pub mod user_sql;
