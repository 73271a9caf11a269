//! The one rate limiter: uses of a key counted in fixed windows in the primary store
//! (`rate_limits`), so every instance of every runtime shares one count.
//!
//! The key decision: one conditional upsert counts a use only while the budget lasts, so a use
//! is admitted or refused atomically (no read-then-write race), and a refused use costs no
//! more than the statement. Rows of windows that ended are deleted in the same batch.

use crate::store::ports::{SqlStore, SqlValue, Statement, StoreError};

/// At most `limit` uses per `window_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Uses admitted per window.
    pub limit: i64,
    /// The window's length in milliseconds.
    pub window_ms: i64,
}

/// Counts one use of `key` at `now`. `Ok(None)`: admitted. `Ok(Some(seconds))`: the budget
/// is spent for that many more seconds (nothing was counted).
pub async fn count(store: &dyn SqlStore, now: i64, key: &str, budget: Budget) -> Result<Option<i64>, StoreError> {
    let window_start = now - now.rem_euclid(budget.window_ms);
    let window_end = window_start + budget.window_ms;
    let counted = store
        .batch(&[
            Statement::new(
                "INSERT INTO rate_limits (key, window_start, count, expires_at) VALUES (?1, ?2, 1, ?3) \
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1 WHERE count < ?4",
                vec![key.into(), window_start.into(), window_end.into(), SqlValue::from(budget.limit)],
            ),
            Statement::new("DELETE FROM rate_limits WHERE expires_at <= ?", vec![now.into()]),
        ])
        .await?;
    Ok(match counted.first() {
        Some(1) => None,
        _ => Some((window_end - now + 999) / 1000),
    })
}
