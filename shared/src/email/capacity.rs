//! How many emails a tenancy may send per hour (upstream's capacity rule, §5.2): the default
//! grows with what was delivered last month, never falls below a quarter of it, and a boost
//! multiplies it for a few hours.

use crate::store::ports::StoreError;
use crate::Context;

/// Emails finished without error or skip over the windows the capacity looks at. Bounces and
/// spam reports are not tracked (no delivery webhooks here; upstream's worker never records
/// them either), so they count as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeliveryStats {
    /// Emails delivered in the last hour.
    pub hour: i64,
    /// In the last day.
    pub day: i64,
    /// In the last week.
    pub week: i64,
    /// In the last 30 days.
    pub month: i64,
}

/// The tenancy's delivered emails over the capacity's windows.
pub async fn delivery_stats(ctx: &Context, tenancy_id: &str) -> Result<DeliveryStats, StoreError> {
    const HOUR: i64 = 3_600_000;
    let now = ctx.now();
    let rows = ctx
        .store
        .query(
            "SELECT COALESCE(SUM(finished_sending_at >= ?1), 0) AS hour, COALESCE(SUM(finished_sending_at >= ?2), 0) AS day, \
             COALESCE(SUM(finished_sending_at >= ?3), 0) AS week, COUNT(*) AS month FROM email_outbox \
             WHERE tenancy_id = ?5 AND finished_sending_at >= ?4 AND send_server_error_external_message IS NULL \
             AND skipped_reason IS NULL",
            &[(now - HOUR).into(), (now - 24 * HOUR).into(), (now - 7 * 24 * HOUR).into(), (now - 30 * 24 * HOUR).into(), tenancy_id.into()],
        )
        .await?;
    let row = rows.first().ok_or_else(|| StoreError::Decode("no statistics row".into()))?;
    Ok(DeliveryStats { hour: row.int("hour")?, day: row.int("day")?, week: row.int("week")?, month: row.int("month")? })
}

/// A tenancy's send capacity (§5.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Before growth: the process default.
    pub default_per_hour: f64,
    /// Emails delivered in the last 30 days.
    pub sent_last_month: i64,
    /// 1 without bounces or spam reports (see [`DeliveryStats`]).
    pub penalty: f64,
    /// When the running boost ends, if one runs.
    pub boost_expires_at: Option<i64>,
}

impl Capacity {
    /// max(baseline × penalty, default ÷ 4), with baseline = default + 4 × sent last month ÷ 720;
    /// four times that while a boost runs.
    pub fn per_hour(&self) -> f64 {
        let baseline = self.default_per_hour + 4.0 * self.sent_last_month as f64 / 720.0;
        let rate = (baseline * self.penalty).max(self.default_per_hour / 4.0);
        if self.boost_expires_at.is_some() {
            rate * BOOST_MULTIPLIER
        } else {
            rate
        }
    }
}

/// How much a capacity boost multiplies the rate, and how long it lasts.
pub const BOOST_MULTIPLIER: f64 = 4.0;
/// How long a boost lasts.
pub const BOOST_DURATION_MS: i64 = 4 * 3_600_000;

/// The tenancy's capacity now: delivery stats, the running boost, the process default.
pub async fn tenancy_capacity(ctx: &Context, tenancy_id: &str, default_per_hour: f64) -> Result<Capacity, StoreError> {
    let stats = delivery_stats(ctx, tenancy_id).await?;
    Ok(Capacity {
        default_per_hour,
        sent_last_month: stats.month,
        penalty: 1.0,
        boost_expires_at: active_boost(ctx, tenancy_id).await?,
    })
}

/// When the tenancy's running capacity boost ends (`None`: no boost runs).
pub async fn active_boost(ctx: &Context, tenancy_id: &str) -> Result<Option<i64>, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT expires_at FROM email_capacity_boosts WHERE tenancy_id = ? AND expires_at > ?",
            &[tenancy_id.into(), ctx.now().into()],
        )
        .await?;
    rows.first().map(|row| row.int("expires_at")).transpose()
}

/// What asking for a capacity boost did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boost {
    /// A boost started; it ends at `expires_at`.
    /// A boost started; it ends at `expires_at`.
    Started {
        /// When it ends, in milliseconds.
        expires_at: i64,
    },
    /// A boost was already running; it ends at `expires_at`.
    /// A boost was already running; it ends at `expires_at`.
    AlreadyRunning {
        /// When it ends, in milliseconds.
        expires_at: i64,
    },
}

/// Starts a boost unless one runs: one conditional upsert, so two concurrent calls cannot both
/// start one.
pub async fn start_boost(ctx: &Context, tenancy_id: &str) -> Result<Boost, StoreError> {
    let now = ctx.now();
    let expires_at = now + BOOST_DURATION_MS;
    let changed = ctx
        .store
        .execute(
            "INSERT INTO email_capacity_boosts (tenancy_id, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (tenancy_id) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE email_capacity_boosts.expires_at <= ?3",
            vec![tenancy_id.into(), expires_at.into(), now.into()],
        )
        .await?;
    if changed == 1 {
        return Ok(Boost::Started { expires_at });
    }
    Ok(Boost::AlreadyRunning { expires_at: active_boost(ctx, tenancy_id).await?.unwrap_or(expires_at) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_grows_with_sent_mail_has_a_floor_and_boosts_four_times() {
        let capacity = |sent, penalty, boost| {
            Capacity { default_per_hour: 200.0, sent_last_month: sent, penalty, boost_expires_at: boost }.per_hour()
        };
        assert_eq!(capacity(0, 1.0, None), 200.0);
        assert_eq!(capacity(7200, 1.0, None), 240.0);
        assert_eq!(capacity(7200, 0.1, None), 50.0, "never below a quarter of the default");
        assert_eq!(capacity(7200, 0.5, None), 120.0);
        assert_eq!(capacity(0, 1.0, Some(1)), 800.0);
    }
}
