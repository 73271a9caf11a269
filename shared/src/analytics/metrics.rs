//! What the metrics function and the companion's metrics engine share (docs/api.md §7):
//! the 31-day window and its daily series, and the companion's answer.
//!
//! The metrics function computes the fields that live in the primary store (users, counts,
//! sign-ups) and asks the companion, which owns the analytics-store queries, for the rest;
//! [`Activity`] is that answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;
/// Days before today in the window (upstream's `METRICS_WINDOW_DAYS`).
pub const WINDOW_DAYS: i64 = 30;
/// How far back "online" reaches.
pub const ONLINE_WINDOW_MS: i64 = 5 * 60_000;

/// The window of one metrics request: today (UTC) and the 30 days before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the request was made.
    pub now_ms: i64,
    /// Today 00:00 UTC.
    pub today_ms: i64,
    /// The first day of the window, 00:00 UTC (`today - 30 days`).
    pub since_ms: i64,
    /// Tomorrow 00:00 UTC: the window's exclusive end.
    pub until_ms: i64,
}

impl Window {
    /// The window that ends with the day of `now_ms`.
    pub fn at(now_ms: i64) -> Window {
        let today_ms = now_ms.div_euclid(DAY_MS) * DAY_MS;
        Window { now_ms, today_ms, since_ms: today_ms - WINDOW_DAYS * DAY_MS, until_ms: today_ms + DAY_MS }
    }

    /// The window's days, oldest first, as `YYYY-MM-DD` (31 of them).
    pub fn days(&self) -> Vec<String> {
        (0..=WINDOW_DAYS).map(|i| date(self.since_ms + i * DAY_MS)).collect()
    }

    /// A daily series over the window: `value(day)` for each day, zero where it has none.
    pub fn series(&self, value: impl Fn(&str) -> i64) -> Vec<DataPoint> {
        self.days().into_iter().map(|date| DataPoint { activity: value(&date), date }).collect()
    }
}

/// `YYYY-MM-DD` of a UTC instant.
pub fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS.mmm` of a UTC instant, as ClickHouse parses DateTime64 parameters.
pub fn clickhouse_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// One day of a daily series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPoint {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// The count on that day.
    pub activity: i64,
}

/// Active entities per day, split by how they came to be active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Every active entity per day.
    pub total: Vec<DataPoint>,
    /// Entities active for the first time that day.
    pub new: Vec<DataPoint>,
    /// Entities active that day and the day before.
    pub retained: Vec<DataPoint>,
    /// Entities active that day, active before but not the day before.
    pub reactivated: Vec<DataPoint>,
}

impl Split {
    /// All zeros over the window.
    pub fn zero(window: &Window) -> Split {
        let zeros = window.series(|_| 0);
        Split { total: zeros.clone(), new: zeros.clone(), retained: zeros.clone(), reactivated: zeros }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// A referrer and the visitors it sent.
pub struct Referrer {
    /// The referring host (or URL, as recorded).
    pub referrer: String,
    /// Distinct visitors it sent in the window.
    pub visitors: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Where the most users are.
pub struct Region {
    /// ISO country code, when known.
    pub country_code: Option<String>,
    /// Region code within the country, when known.
    pub region_code: Option<String>,
    /// Users located there.
    pub count: i64,
}

/// The analytics-store fields of the metrics response, as the companion computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Monthly active users (the window's distinct users).
    pub mau: i64,
    /// Distinct active users per day.
    pub daily_active_users: Vec<DataPoint>,
    /// Active users per day, split by new, retained and reactivated.
    pub daily_active_users_split: Split,
    /// Active teams per day, split the same way.
    pub daily_active_teams_split: Split,
    /// Country code -> users, by each user's latest located token refresh (all time).
    pub users_by_country: serde_json::Map<String, Value>,
    /// `$page-view` events per day.
    pub daily_page_views: Vec<DataPoint>,
    /// `$click` events per day.
    pub daily_clicks: Vec<DataPoint>,
    /// Distinct visitors per day.
    pub daily_visitors: Vec<DataPoint>,
    /// Distinct visitors in the window.
    pub visitors: i64,
    /// Users active in the last few minutes.
    pub online_live: i64,
    /// The referrers that sent the most visitors.
    pub top_referrers: Vec<Referrer>,
    /// The region with the most users, if any user is located.
    pub top_region: Option<Region>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    #[test]
    fn window_bounds_match_upstream() {
        // Upstream's unit test: getMetricsWindowBounds(2026-04-13T23:59:59.999Z).
        let w = Window::at(ms("2026-04-13T23:59:59.999Z"));
        assert_eq!(w.today_ms, ms("2026-04-13T00:00:00Z"));
        assert_eq!(w.since_ms, ms("2026-03-14T00:00:00Z"));
        assert_eq!(w.until_ms, ms("2026-04-14T00:00:00Z"));
        let days = w.days();
        assert_eq!((days.len(), days[0].as_str(), days[30].as_str()), (31, "2026-03-14", "2026-04-13"));
        assert_eq!(clickhouse_time(w.since_ms), "2026-03-14 00:00:00.000");
    }

    #[test]
    fn series_are_zero_filled() {
        let w = Window::at(ms("2026-11-26T12:00:00Z"));
        let s = w.series(|d| if d == "2026-11-25" { 3 } else { 0 });
        assert_eq!(s.len(), 31);
        assert_eq!(s[29], DataPoint { date: "2026-11-25".into(), activity: 3 });
        assert_eq!(s.iter().map(|p| p.activity).sum::<i64>(), 3);
    }
}
