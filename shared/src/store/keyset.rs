//! Keyset pagination over a SQL list: rows ordered by an integer sort column and then by id,
//! the cursor being the id of the last row a page showed. One shape for every paginated list
//! (emails, replays, replay chunks), so the condition and the order always agree.

use crate::store::ports::{SqlStore, SqlValue, StoreError};

/// Which way a column is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Ascending,
    /// Largest first.
    Descending,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Order::Ascending => "ASC",
            Order::Descending => "DESC",
        }
    }

    /// The comparison that selects rows after a pivot in this order.
    fn after(self) -> &'static str {
        match self {
            Order::Ascending => ">",
            Order::Descending => "<",
        }
    }
}

/// The order of a list: `sort` (an integer column) then `id`, each in its own direction.
pub struct Keyset {
    /// The integer sort column.
    pub sort: &'static str,
    /// Its order.
    pub sort_order: Order,
    /// The id column (the cursor), which breaks ties.
    pub id: &'static str,
    /// Its order.
    pub id_order: Order,
}

impl Keyset {
    /// The sort key of the row a cursor names: `pivot_sql` selects it as one integer column,
    /// `pivot`. `None` when the cursor names no such row.
    pub async fn pivot(store: &dyn SqlStore, pivot_sql: &str, params: &[SqlValue]) -> Result<Option<i64>, StoreError> {
        let rows = store.query(pivot_sql, params).await?;
        rows.first().map(|row| row.int("pivot")).transpose()
    }

    /// Appends to `sql` the rows after the cursor (`after`: its sort key and id), the order, and
    /// a `limit + 1` bound, so [`crate::http::page_of`] can tell whether more rows exist.
    pub fn append(&self, sql: &mut String, params: &mut Vec<SqlValue>, after: Option<(i64, String)>, limit: i64) {
        let Keyset { sort, sort_order, id, id_order } = self;
        if let Some((pivot, cursor)) = after {
            let (sort_after, id_after) = (sort_order.after(), id_order.after());
            sql.push_str(&format!(" AND ({sort} {sort_after} ? OR ({sort} = ? AND {id} {id_after} ?))"));
            params.extend([pivot.into(), pivot.into(), cursor.into()]);
        }
        sql.push_str(&format!(" ORDER BY {sort} {}, {id} {} LIMIT {}", sort_order.sql(), id_order.sql(), limit + 1));
    }
}
