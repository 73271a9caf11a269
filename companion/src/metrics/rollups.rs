//! The metrics engine's SQL over the rollups (docs/api.md §7.4): the same answers as the raw
//! queries of [`super::queries`], read from the aggregates ClickHouse keeps up to date at
//! insert (`shared/clickhouse/schema.sql`, "The metrics' rollups"). So a metrics request reads
//! the window's days and the tenancy's distinct users and teams, not every event it ever had.
//!
//! Each query returns the rows of its raw twin, column for column, so one assembly
//! ([`super::MetricsEngine::compute`]) serves both; the tests and `bench-metrics` hold the two
//! equal. How the rollups give the raw answers:
//! - distinct users of any set of days (DAU, MAU, a region) are the union of the days'
//!   `uniqExact` states, which is exact;
//! - a day's retained users are those active that day and the day before, `|A ∩ B| = |A| +
//!   |B| - |A ∪ B|`, from the states of the two days (on the window's first day none, as the
//!   raw query looks at active days inside the window only); new users are those whose first
//!   day (all time, per user) is that day; the rest are reactivated;
//! - "online" (the last five minutes) reads the raw events of those minutes: the sort key
//!   starts with the tenancy and the time, so that is a few granules.
//!
//! One deliberate difference, out of reach of any real data: a page view's fallback anonymity
//! is the user's latest token refresh of all time, where the raw query stops at the window's
//! end. Token refreshes are written by the server as it mints (clients cannot post them), so
//! none lies after tomorrow 00:00.

use super::queries::Entity;

/// Rows of the tenancy.
const TENANCY: &str = "project_id = {project_id:String} AND branch_id = {branch_id:String}";
/// Whether a user's activity counts: anonymous users' only when `include_anonymous`.
const COUNTED: &str = "({include_anonymous:UInt8} = 1 OR is_anonymous = 0)";
/// The window's days.
const DAYS: &str = "day >= toDate({since:DateTime64(3, 'UTC')}) AND day < toDate({until:DateTime64(3, 'UTC')})";

/// Expands the markers `@TENANCY`, `@COUNTED` and `@DAYS`.
fn sql(template: &str) -> String {
    template.replace("@TENANCY", TENANCY).replace("@COUNTED", COUNTED).replace("@DAYS", DAYS)
}

/// [`super::queries::activity`]: users per day and in the whole window from the daily
/// states, per (country, region) from the regions' states; online users from the last five
/// minutes' raw events.
pub fn activity() -> String {
    sql("SELECT kind, day_text, country_code, region_code, users, \
            ifNull((SELECT uniqExact(user_key) FROM analytics_internal.events PREWHERE @TENANCY \
               AND event_type = '$token-refresh' AND event_at >= {online_since:DateTime64(3, 'UTC')} \
               AND event_at < {until:DateTime64(3, 'UTC')} WHERE user_key != 0 AND @COUNTED), 0) AS online \
         FROM (SELECT if(grouping(day) = 0, 'day', 'total') AS kind, toString(day) AS day_text, \
                 CAST(NULL AS Nullable(String)) AS country_code, CAST(NULL AS Nullable(String)) AS region_code, \
                 uniqExactMerge(users) AS users \
               FROM analytics_internal.metrics_daily_users WHERE @TENANCY AND @DAYS AND @COUNTED \
               GROUP BY GROUPING SETS ((day), ()) \
               UNION ALL \
               SELECT 'region' AS kind, '' AS day_text, country_code, region_code, uniqExactMerge(users) AS users \
               FROM analytics_internal.metrics_daily_regions WHERE @TENANCY AND @DAYS AND @COUNTED \
               GROUP BY country_code, region_code)")
}

/// [`super::queries::split`]: per day, the active entities (`total`), those active the day
/// before too (`retained`, from the union with the day before), those whose first day it is
/// (`new`), and the rest (`reactivated`).
pub fn split(entity: Entity) -> String {
    let (daily, states, all_time, id, filter) = match entity {
        Entity::Users => ("metrics_daily_users", "users", "metrics_users", "user_key", "@COUNTED"),
        Entity::Teams => ("metrics_daily_teams", "teams", "metrics_teams", "team_id", "1"),
    };
    // Each day's states twice: as that day's (`own`), and as the next day's day before.
    let template = "SELECT toString(a.active) AS day, a.total AS total, n.first_seen AS new, \
            toUInt64(a.total + a.before - a.either) AS retained, toUInt64(a.total - new - retained) AS reactivated \
        FROM (SELECT active, uniqExactMergeIf(states, own = 1) AS total, \
                uniqExactMergeIf(states, own = 0) AS before, uniqExactMerge(states) AS either \
              FROM (SELECT day AS active, @STATES AS states, 1 AS own FROM analytics_internal.@DAILY \
                      WHERE @TENANCY AND @DAYS AND @FILTER \
                    UNION ALL SELECT day + 1 AS active, @STATES AS states, 0 AS own FROM analytics_internal.@DAILY \
                      WHERE @TENANCY AND @DAYS AND day + 1 < toDate({until:DateTime64(3, 'UTC')}) AND @FILTER) \
              GROUP BY active HAVING total > 0) AS a \
        LEFT JOIN (SELECT first_active, count() AS first_seen \
              FROM (SELECT @ID, min(first_day) AS first_active FROM analytics_internal.@ALL_TIME \
                    WHERE @TENANCY AND @FILTER GROUP BY @ID) \
              WHERE first_active >= toDate({since:DateTime64(3, 'UTC')}) \
                AND first_active < toDate({until:DateTime64(3, 'UTC')}) \
              GROUP BY first_active) AS n ON a.active = n.first_active";
    sql(&template
        .replace("@DAILY", daily)
        .replace("@STATES", states)
        .replace("@ALL_TIME", all_time)
        .replace("@ID", id)
        .replace("@FILTER", filter))
}

/// [`super::queries::users_by_country`]: each user's latest located country, merged over the
/// anonymity rows that count.
pub fn users_by_country() -> String {
    sql("SELECT country_code, count() AS users FROM ( \
            SELECT user_key, argMaxMerge(country) AS country_code FROM analytics_internal.metrics_users \
            WHERE @TENANCY AND @COUNTED GROUP BY user_key HAVING country_code != '') \
         GROUP BY country_code ORDER BY users DESC, country_code")
}

/// [`super::queries::views`]: page views, clicks and visitors per day and referrer from the
/// daily states of events that carry their own anonymity, and from the per-user rows of those
/// that do not, whose anonymity is that of their user's latest token refresh (looked up for
/// those users only: the sort key finds them).
pub fn views() -> String {
    sql("SELECT multiIf(grouping(day) = 0, 'day', grouping(source) = 0, 'source', 'total') AS kind, \
            toString(day) AS day_text, ifNull(source, '(direct)') AS referrer_name, \
            sum(day_views) AS page_views, sum(day_clicks) AS clicks, uniqExactMerge(day_visitors) AS visitors \
         FROM (SELECT day, source, page_views AS day_views, clicks AS day_clicks, visitors AS day_visitors \
               FROM analytics_internal.metrics_daily_views \
               WHERE @TENANCY AND @DAYS AND ({include_anonymous:UInt8} = 1 OR event_anonymous = 0) \
               UNION ALL \
               SELECT u.day AS day, u.source AS source, sum(u.page_views) AS day_views, sum(u.clicks) AS day_clicks, \
                 uniqExactStateIf(u.user_key, u.page_views > 0) AS day_visitors \
               FROM (SELECT day, user_key, source, sum(page_views) AS page_views, sum(clicks) AS clicks \
                     FROM analytics_internal.metrics_unstamped_views WHERE @TENANCY AND @DAYS \
                     GROUP BY day, user_key, source) AS u \
               LEFT JOIN (SELECT user_key, argMax(is_anonymous, last_at) AS anonymous \
                     FROM (SELECT user_key, is_anonymous, max(last_refresh_at) AS last_at \
                           FROM analytics_internal.metrics_users WHERE @TENANCY AND user_key IN ( \
                             SELECT user_key FROM analytics_internal.metrics_unstamped_views WHERE @TENANCY AND @DAYS) \
                           GROUP BY user_key, is_anonymous) \
                     GROUP BY user_key) AS t ON u.user_key = t.user_key \
               WHERE {include_anonymous:UInt8} = 1 OR t.anonymous = 0 \
               GROUP BY u.day, u.source) \
         GROUP BY GROUPING SETS ((day), (source), ())")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_all_expanded() {
        for q in [activity(), split(Entity::Users), split(Entity::Teams), users_by_country(), views()] {
            assert!(!q.contains('@'), "{q}");
        }
    }
}
