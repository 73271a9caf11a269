//! The metrics from raw events (docs/api.md §7.4), each query an aggregate computed in
//! ClickHouse: nothing ships user ids to this process. The endpoint reads the rollups instead
//! ([`super::rollups`]); these queries define the answers the rollups are held equal to.
//!
//! Every query reads `analytics_internal.events` of one tenancy through the parameters
//! `project_id` and `branch_id`; windows use `since`, `until` (exclusive) and `online_since`
//! (DateTime64(3) in UTC), and `include_anonymous` (0/1).
//!
//! Users are counted by `user_key`, a column ClickHouse computes at insert (see
//! `shared/clickhouse/schema.sql`): `sipHash64` of the trimmed, lower-cased user id when that
//! is a v4 UUID, else 0. So MAU is `uniqExact(sipHash64(<normalized id>))` as upstream ships
//! it, with the normalization done once per event instead of once per query; and token
//! refreshes carry a computed `is_anonymous` (a missing or null `data.is_anonymous` = 0).
//!
//! Deliberate choices where upstream is inconsistent (docs/upstream-differences.md):
//! - one user identity everywhere (`user_key`): upstream normalizes for MAU only, so its DAU
//!   could exceed MAU;
//! - `top_region` ignores token refreshes without a country (upstream's top region is often
//!   the `(null, null)` bucket, which names no region).
//!
//! The templates use markers that [`sql`] expands, so each query reads as one statement.

/// The user id as [`mau_user_set`] lists users: the string `user_key` hashes.
const NORMALIZED_ID: &str = "lower(trim(assumeNotNull(user_id)))";
/// Rows of the tenancy.
const TENANCY: &str = "project_id = {project_id:String} AND branch_id = {branch_id:String}";
/// Whether a token refresh counts: anonymous users' only when `include_anonymous`.
const COUNTED: &str = "({include_anonymous:UInt8} = 1 OR is_anonymous = 0)";
/// Token refreshes of the tenancy in the window (as PREWHERE: read these columns first).
const REFRESHES_IN_WINDOW: &str = "FROM analytics_internal.events PREWHERE project_id = {project_id:String} \
    AND branch_id = {branch_id:String} AND event_type = '$token-refresh' \
    AND event_at >= {since:DateTime64(3, 'UTC')} AND event_at < {until:DateTime64(3, 'UTC')}";

/// Expands the markers `@TENANCY`, `@COUNTED` and `@REFRESHES_IN_WINDOW`.
fn sql(template: &str) -> String {
    template
        .replace("@REFRESHES_IN_WINDOW", REFRESHES_IN_WINDOW)
        .replace("@TENANCY", TENANCY)
        .replace("@COUNTED", COUNTED)
}

/// Monthly active users: distinct `user_key`s over the window.
pub fn mau() -> String {
    sql("SELECT uniqExact(user_key) AS mau @REFRESHES_IN_WINDOW WHERE user_key != 0 AND @COUNTED")
}

/// The users [`mau`] counts, as normalized ids (for equivalence checks, never the endpoint).
pub fn mau_user_set() -> String {
    sql(&format!(
        "SELECT DISTINCT {NORMALIZED_ID} AS uid @REFRESHES_IN_WINDOW WHERE user_key != 0 AND @COUNTED ORDER BY uid"
    ))
}

/// The OLD shape upstream replaced: every distinct raw user id shipped to the application
/// (anonymous rows found by re-serializing the JSON column), to be normalized and counted
/// there. Kept only to compare against, in tests and the benchmark.
pub fn mau_old_ids() -> String {
    sql("SELECT DISTINCT assumeNotNull(user_id) AS user_id @REFRESHES_IN_WINDOW WHERE user_id IS NOT NULL \
         AND ({include_anonymous:UInt8} = 1 OR JSONExtract(toJSONString(data), 'is_anonymous', 'UInt8') = 0)")
}

/// Token-refresh activity in the window, in one pass, as rows of three kinds:
/// - `day`: the day's active users (`day_text`, `users`);
/// - `region`: users per (country, region) (`country_code`, `region_code`, `users`);
/// - `total`: the window's active users (`users`: the same aggregate as [`mau`], over the
///   same rows) and those active in the last five minutes (`online`).
pub fn activity() -> String {
    sql("SELECT multiIf(grouping(day) = 0, 'day', grouping(country_code) = 0, 'region', 'total') AS kind, \
            toString(day) AS day_text, country_code, region_code, uniqExact(user_key) AS users, \
            uniqExactIf(user_key, event_at >= {online_since:DateTime64(3, 'UTC')}) AS online \
         FROM (SELECT toDate(event_at) AS day, event_at, user_key, \
                 CAST(data.ip_info.country_code AS Nullable(String)) AS country_code, \
                 CAST(data.ip_info.region_code AS Nullable(String)) AS region_code \
               @REFRESHES_IN_WINDOW WHERE user_key != 0 AND @COUNTED) \
         GROUP BY GROUPING SETS ((day), (country_code, region_code), ())")
}

/// Which entities a split counts: users (anonymous filter applied) or teams.
#[derive(Debug, Clone, Copy)]
pub enum Entity {
    Users,
    Teams,
}

/// Active entities per day, split into new (first ever activity that day), retained (active
/// the day before) and reactivated (active before, but not the day before): `(day, total,
/// new, retained, reactivated)`. "First ever" looks at every token refresh before the window's
/// end, with no lower bound.
///
/// One pass: per entity, its first day and the sorted days it was active in the window; each
/// active day is then paired with the entity's previous active day (1970-01-01 for none).
pub fn split(entity: Entity) -> String {
    // PREWHERE reads its columns first and the rest only for rows that pass: for teams, the
    // null map of `team_id` (most token refreshes have no team).
    let (id, prewhere, filter) = match entity {
        Entity::Users => ("user_key", "user_key != 0", "@COUNTED"),
        Entity::Teams => ("assumeNotNull(team_id)", "team_id IS NOT NULL", "team_id != ''"),
    };
    // No alias may shadow a name it is computed from (`entity`, `active`): ClickHouse resolves
    // later uses to the alias (upstream let empty ids through that way).
    let template = "SELECT toString(active) AS day, count() AS total, countIf(first_day = active) AS new, \
            countIf(first_day < active AND previous = active - 1) AS retained, \
            countIf(first_day < active AND previous < active - 1) AS reactivated \
        FROM (SELECT @ID AS entity, toDate(min(event_at)) AS first_day, \
                arraySort(groupUniqArrayIf(toDate(event_at), event_at >= {since:DateTime64(3, 'UTC')})) AS days \
              FROM analytics_internal.events PREWHERE @PREWHERE \
              WHERE @TENANCY AND event_type = '$token-refresh' AND event_at < {until:DateTime64(3, 'UTC')} \
                AND @FILTER GROUP BY entity HAVING notEmpty(days)) \
        ARRAY JOIN days AS active, arrayPushFront(arrayPopBack(days), toDate(0)) AS previous \
        GROUP BY active";
    sql(&template.replace("@PREWHERE", prewhere).replace("@FILTER", filter).replace("@ID", id))
}

/// Users per country, by each user's latest token refresh that carries a country (all time,
/// as upstream: "where users are", next to the all-time user count): `(country_code, users)`.
pub fn users_by_country() -> String {
    sql("SELECT country_code, count() AS users FROM ( \
            SELECT user_key, argMax(cc, event_at) AS country_code FROM ( \
                SELECT user_key, assumeNotNull(CAST(data.ip_info.country_code AS Nullable(String))) AS cc, event_at \
                FROM analytics_internal.events PREWHERE @TENANCY AND event_type = '$token-refresh' \
                WHERE user_key != 0 AND @COUNTED \
                AND CAST(data.ip_info.country_code AS Nullable(String)) IS NOT NULL \
                AND CAST(data.ip_info.country_code AS Nullable(String)) != '') \
            GROUP BY user_key) \
         GROUP BY country_code ORDER BY users DESC, country_code")
}

/// Page views and clicks in the window, in one pass, as rows of three kinds:
/// - `day`: the day's counted page views, clicks and visitors (`day_text`, `page_views`,
///   `clicks`, `visitors`);
/// - `source`: visitors per referrer (`referrer_name`, `visitors`; no referrer is `(direct)`);
/// - `total`: the window's distinct visitors (`visitors`).
///
/// An event counts unless its user is anonymous (and anonymous users are excluded): the
/// event's own `is_anonymous`, else that of the user's latest token refresh, else not
/// anonymous. A visitor is a user with a counted page view.
pub fn views() -> String {
    sql("SELECT multiIf(grouping(day) = 0, 'day', grouping(source) = 0, 'source', 'total') AS kind, \
            toString(day) AS day_text, ifNull(source, '(direct)') AS referrer_name, \
            countIf(event_type = '$page-view' AND counted) AS page_views, \
            countIf(event_type = '$click' AND counted) AS clicks, \
            uniqExactIf(user_key, event_type = '$page-view' AND counted) AS visitors \
         FROM (SELECT e.event_type AS event_type, e.day AS day, e.user_key AS user_key, e.source AS source, \
                 ({include_anonymous:UInt8} = 1 OR coalesce(e.event_anonymous, t.anonymous, 0) = 0) AS counted \
               FROM (SELECT event_type, toDate(event_at) AS day, user_key, \
                       CAST(data.is_anonymous AS Nullable(UInt8)) AS event_anonymous, \
                       nullIf(ifNull(CAST(data.referrer AS Nullable(String)), ''), '') AS source \
                     FROM analytics_internal.events PREWHERE @TENANCY AND event_type IN ('$page-view', '$click') \
                     AND event_at >= {since:DateTime64(3, 'UTC')} AND event_at < {until:DateTime64(3, 'UTC')} \
                     WHERE user_key != 0) AS e \
               LEFT JOIN (SELECT user_key, argMax(is_anonymous, event_at) AS anonymous \
                     FROM analytics_internal.events PREWHERE @TENANCY AND event_type = '$token-refresh' \
                     AND event_at < {until:DateTime64(3, 'UTC')} WHERE user_key != 0 GROUP BY user_key) AS t \
               ON e.user_key = t.user_key) \
         GROUP BY GROUPING SETS ((day), (source), ())")
}

/// The OLD pipeline's application side: normalize each shipped id and keep v4 UUIDs.
pub fn normalize_old(ids: Vec<String>) -> std::collections::BTreeSet<String> {
    ids.into_iter().map(|id| id.trim().to_lowercase()).filter(|id| is_uuid_v4(id)).collect()
}

/// Whether `id` is a lowercase v4 UUID (the pattern of the schema's `user_key`). Hand-written: it is the
/// application half of the OLD pipeline, which must not share code with the SQL it is
/// compared against.
fn is_uuid_v4(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            14 => *b == b'4',
            19 => matches!(b, b'8' | b'9' | b'a' | b'b'),
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_all_expanded() {
        let all = [mau(), mau_user_set(), mau_old_ids(), activity(), split(Entity::Users), split(Entity::Teams)];
        for q in all.into_iter().chain([users_by_country(), views()]) {
            assert!(!q.contains('@'), "{q}");
        }
    }

    #[test]
    fn old_normalization_keeps_lowercased_trimmed_v4_uuids() {
        let ids = vec![
            " A0000000-0000-4000-8000-000000000001 ".to_string(),
            "a0000000-0000-4000-8000-000000000001".to_string(),
            "a0000000-0000-1000-8000-000000000002".to_string(),
            "not-a-uuid".to_string(),
        ];
        assert_eq!(normalize_old(ids).into_iter().collect::<Vec<_>>(), ["a0000000-0000-4000-8000-000000000001"]);
    }
}
