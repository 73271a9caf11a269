//! The analytics store: the ClickHouse client, the SQL guard, the one path user SQL takes,
//! the events written on token mints, the metrics' shared shapes, and the sync step that mirrors
//! the primary store's tables.

pub mod clickhouse;
pub mod events;
pub mod metrics;
pub mod query_guard;
pub mod sync;
pub mod user_sql;
