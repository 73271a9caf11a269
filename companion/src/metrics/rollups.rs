//! The metrics engine's SQL over the rollups (docs/api.md §7.4): the same answers as the raw
//! queries of [`super::queries`], read from aggregates ClickHouse keeps up to date at insert
//! (`shared/clickhouse/schema.sql`, "The metrics' rollups"). A request reads the window's
//! two 64-day blocks of day masks per active user or team, and per-day counts, not every event
//! of the tenancy's history.
//!
//! Each query returns the rows of its raw twin, column for column, so one assembly
//! ([`super::MetricsEngine::compute_from`]) serves both; the tests and `bench-metrics` hold the
//! two equal. How the rollups give the raw answers:
//! - an entity's **window mask** has bit `i` set when it was active on the window's day `i`
//!   (from its two blocks' masks, shifted to the window's first day); distinct users of a day
//!   are the entities with that bit, of the window those with any bit: counts, not hash sets;
//! - a day's retained entities have bit `i` in `mask & (mask << 1)` (active that day and the
//!   day before; on the window's first day none, as the raw query looks at active days inside
//!   the window only); new ones are those whose first day (all time, per entity) is that day;
//!   the rest are reactivated;
//! - "online" (the last five minutes) reads the raw events of those minutes: the sort key
//!   starts with the tenancy and the time, so that is a few granules.
//!
//! One deliberate difference, out of reach of any real data: a page view without its own
//! anonymity falls back to its user's latest token refresh of all time, where the raw query
//! stops at the window's end. Token refreshes are written by the server as it mints (clients
//! cannot post them), so none lies after tomorrow 00:00.

use super::queries::Entity;

/// Days in the window (`Window::days`), the bits of a window mask.
const WINDOW_DAYS: u32 = 31;
// The window may start on a block's last day: 63 + 31 bits fit the two blocks' 128.
const _: () = assert!(63 + WINDOW_DAYS <= 128);

/// Rows of the tenancy.
const TENANCY: &str = "project_id = {project_id:String} AND branch_id = {branch_id:String}";
/// Whether a user's activity counts: anonymous users' only when `include_anonymous`.
const COUNTED: &str = "({include_anonymous:UInt8} = 1 OR is_anonymous = 0)";
/// The window's days.
const DAYS: &str = "day >= toDate({since:DateTime64(3, 'UTC')}) AND day < toDate({until:DateTime64(3, 'UTC')})";
/// The window's first day (days since 1970) and the block it is in; the window ends in that
/// block or the next.
const WINDOW: &str = "WITH toUInt32(toDate({since:DateTime64(3, 'UTC')})) AS first, intDiv(first, 64) AS b0";
/// Rows of the window's two blocks.
const BLOCKS: &str = "block IN (b0, b0 + 1)";
/// Aggregates an entity's rows of the two blocks into its window mask (see the module doc).
const MASK: &str =
    "toUInt64(bitAnd(bitShiftRight(bitOr(bitShiftLeft(toUInt128(groupBitOrIf(days, block = b0 + 1)), 64), \
    toUInt128(groupBitOrIf(days, block = b0))), first % 64), @ALL_DAYS))";

/// Expands the markers.
fn sql(template: &str) -> String {
    template
        .replace("@WINDOW", WINDOW)
        .replace("@BLOCKS", BLOCKS)
        .replace("@MASK", MASK)
        .replace("@ALL_DAYS", &((1u64 << WINDOW_DAYS) - 1).to_string())
        .replace("@NDAYS", &WINDOW_DAYS.to_string())
        .replace("@TENANCY", TENANCY)
        .replace("@COUNTED", COUNTED)
        .replace("@DAYS", DAYS)
}

/// [`super::queries::activity`]: users per day (bit `i`) and in the whole window (any bit,
/// as day `i` = the window's length), per (country, region), and online users from the last
/// five minutes' raw events.
pub fn activity() -> String {
    sql("@WINDOW SELECT kind, day_text, country_code, region_code, users, \
            ifNull((SELECT uniqExact(user_key) FROM analytics_internal.events PREWHERE @TENANCY \
               AND event_type = '$token-refresh' AND event_at >= {online_since:DateTime64(3, 'UTC')} \
               AND event_at < {until:DateTime64(3, 'UTC')} WHERE user_key != 0 AND @COUNTED), 0) AS online \
         FROM (SELECT if(i < @NDAYS, 'day', 'total') AS kind, toString(toDate(first + i)) AS day_text, \
                 CAST(NULL AS Nullable(String)) AS country_code, CAST(NULL AS Nullable(String)) AS region_code, \
                 countIf(if(i < @NDAYS, bitTest(mask, i), mask != 0)) AS users \
               FROM (SELECT user_key, @MASK AS mask FROM analytics_internal.metrics_user_days \
                     WHERE @TENANCY AND @BLOCKS AND @COUNTED GROUP BY user_key) \
               ARRAY JOIN range(@NDAYS + 1) AS i GROUP BY i \
               UNION ALL \
               SELECT 'region' AS kind, '' AS day_text, country_code, region_code, count() AS users \
               FROM (SELECT country_code, region_code, user_key, @MASK AS mask FROM analytics_internal.metrics_region_days \
                     WHERE @TENANCY AND @BLOCKS AND @COUNTED GROUP BY country_code, region_code, user_key) \
               WHERE mask != 0 GROUP BY country_code, region_code)")
}

/// [`super::queries::split`]: per day, the active entities (`total`), those active the day
/// before too (`retained`), those whose first day it is (`new`), and the rest
/// (`reactivated`), from each entity's window mask and first day.
pub fn split(entity: Entity) -> String {
    let (days, all_time, id, filter) = match entity {
        Entity::Users => ("metrics_user_days", "metrics_users", "user_key", "@COUNTED"),
        Entity::Teams => ("metrics_team_days", "metrics_teams", "team_id", "1"),
    };
    let template = "@WINDOW SELECT toString(toDate(first + i)) AS day, countIf(bitTest(mask, i)) AS total, \
            countIf(bitTest(mask, i) AND first_active = first + i) AS new, \
            countIf(bitTest(bitAnd(mask, bitShiftLeft(mask, 1)), i)) AS retained, \
            toUInt64(total - new - retained) AS reactivated \
        FROM (SELECT m.mask AS mask, toUInt32(f.first_active) AS first_active \
              FROM (SELECT @ID, @MASK AS mask FROM analytics_internal.@DAYS_TABLE \
                    WHERE @TENANCY AND @BLOCKS AND @FILTER GROUP BY @ID HAVING mask != 0) AS m \
              LEFT JOIN (SELECT @ID, min(first_day) AS first_active FROM analytics_internal.@ALL_TIME \
                    WHERE @TENANCY AND @FILTER GROUP BY @ID) AS f ON m.@ID = f.@ID) \
        ARRAY JOIN range(@NDAYS) AS i GROUP BY i HAVING total > 0";
    sql(&template
        .replace("@DAYS_TABLE", days)
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

/// The latest token refresh's anonymity of the users with unstamped page views or clicks
/// (looked up for those users only: the sort key finds them).
const ANONYMITY: &str = "(SELECT user_key, argMax(is_anonymous, last_at) AS anonymous \
    FROM (SELECT user_key, is_anonymous, max(last_refresh_at) AS last_at FROM analytics_internal.metrics_users \
          WHERE @TENANCY AND user_key IN (SELECT user_key FROM analytics_internal.metrics_unstamped_views \
                                          WHERE @TENANCY AND @DAYS) \
          GROUP BY user_key, is_anonymous) \
    GROUP BY user_key)";

/// Unstamped page views and clicks per day, user and referrer that count (by their user's
/// anonymity).
const UNSTAMPED: &str = "(SELECT u.day AS day, u.user_key AS user_key, u.source AS source, \
      u.page_views AS page_views, u.clicks AS clicks \
    FROM (SELECT day, user_key, source, sum(page_views) AS page_views, sum(clicks) AS clicks \
          FROM analytics_internal.metrics_unstamped_views WHERE @TENANCY AND @DAYS GROUP BY day, user_key, source) AS u \
    LEFT JOIN @ANONYMITY AS t ON u.user_key = t.user_key \
    WHERE {include_anonymous:UInt8} = 1 OR t.anonymous = 0)";

/// [`super::queries::views`]: page views and clicks per day from the daily counts; visitors
/// per day and in the window (day `i` = the window's length) from the users' window masks of
/// page views; visitors per referrer from the daily `uniqExact` states. Unstamped events join
/// each, counted by their user's anonymity.
pub fn views() -> String {
    let template = "@WINDOW SELECT kind, day_text, referrer_name, page_views, clicks, visitors FROM ( \
          SELECT if(d.i < @NDAYS, 'day', 'total') AS kind, toString(toDate(first + d.i)) AS day_text, \
            '' AS referrer_name, c.page_views AS page_views, c.clicks AS clicks, v.visitors AS visitors \
          FROM (SELECT toUInt32(number) AS i FROM numbers(@NDAYS + 1)) AS d \
          LEFT JOIN (SELECT i, countIf(if(i < @NDAYS, bitTest(mask, i), mask != 0)) AS visitors \
                FROM (SELECT user_key, groupBitOr(part) AS mask FROM ( \
                        SELECT user_key, @MASK AS part FROM analytics_internal.metrics_visitor_days \
                        WHERE @TENANCY AND @BLOCKS AND ({include_anonymous:UInt8} = 1 OR event_anonymous = 0) \
                        GROUP BY user_key \
                        UNION ALL \
                        SELECT user_key, toUInt64(groupBitOr(bitShiftLeft(toUInt64(1), toUInt8(toUInt32(day) - first)))) AS part \
                        FROM @UNSTAMPED WHERE page_views > 0 GROUP BY user_key) \
                      GROUP BY user_key) \
                ARRAY JOIN range(@NDAYS + 1) AS i GROUP BY i) AS v ON d.i = v.i \
          LEFT JOIN (SELECT toUInt32(toUInt32(day) - first) AS i, sum(page_views) AS page_views, sum(clicks) AS clicks \
                FROM (SELECT day, page_views, clicks FROM analytics_internal.metrics_daily_views \
                      WHERE @TENANCY AND @DAYS AND ({include_anonymous:UInt8} = 1 OR event_anonymous = 0) \
                      UNION ALL SELECT day, page_views, clicks FROM @UNSTAMPED) \
                GROUP BY i) AS c ON d.i = c.i \
          UNION ALL \
          SELECT 'source' AS kind, '' AS day_text, ifNull(source, '(direct)') AS referrer_name, \
            toUInt64(0) AS page_views, toUInt64(0) AS clicks, uniqExactMerge(states) AS visitors \
          FROM (SELECT source, visitors AS states FROM analytics_internal.metrics_daily_views \
                WHERE @TENANCY AND @DAYS AND ({include_anonymous:UInt8} = 1 OR event_anonymous = 0) \
                UNION ALL \
                SELECT source, uniqExactStateIf(user_key, page_views > 0) AS states FROM @UNSTAMPED GROUP BY source) \
          GROUP BY source)";
    sql(&template.replace("@UNSTAMPED", UNSTAMPED).replace("@ANONYMITY", ANONYMITY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::analytics::metrics::Window;

    #[test]
    fn markers_are_all_expanded() {
        for q in [activity(), split(Entity::Users), split(Entity::Teams), users_by_country(), views()] {
            assert!(!q.contains('@'), "{q}");
        }
    }

    #[test]
    fn a_window_mask_has_a_bit_per_day() {
        assert_eq!(Window::at(0).days().len(), WINDOW_DAYS as usize);
    }
}
