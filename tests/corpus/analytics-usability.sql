-- Valid analytics queries an admin may send to POST /api/v1/internal/analytics/query.
-- The usability test (tests/tests/analytics_usability.rs) runs each through the endpoint and
-- directly on a database holding only the project's own rows, and requires the same rows;
-- bench-guard times the guard over them. One query per statement, each ending in ";" at the
-- end of a line. Queries use fixed dates (no now()), so both runs see the same rows.

-- Aggregates
SELECT count() AS c FROM events;
SELECT event_type, count() AS c FROM events GROUP BY event_type ORDER BY event_type;
SELECT uniqExact(user_id) AS users FROM events;
SELECT count(DISTINCT user_id) AS users FROM events;
SELECT sipHash64(user_id) % 10 AS bucket, count() AS c FROM events GROUP BY bucket ORDER BY bucket;
SELECT uniqExact(sipHash64(lower(trim(assumeNotNull(user_id))))) AS mau FROM events WHERE event_at >= toDateTime64('2026-11-10 00:00:00', 3, 'UTC');
SELECT min(event_at) AS first, max(event_at) AS last FROM events;
SELECT sumIf(1, event_type = '$click') AS clicks, avgIf(toHour(event_at), event_type = '$page-view') AS avg_hour FROM events;
SELECT user_id, count() AS c FROM events GROUP BY user_id HAVING c > 12 ORDER BY user_id;
SELECT argMax(event_type, event_at) AS last_type, user_id FROM events GROUP BY user_id ORDER BY user_id LIMIT 5;
SELECT DISTINCT event_type FROM events ORDER BY event_type;
SELECT event_type, count() AS c FROM events GROUP BY event_type WITH ROLLUP ORDER BY event_type, c;
SELECT event_type, count() / (SELECT count() FROM events) AS share FROM events GROUP BY event_type ORDER BY event_type;
SELECT count() AS "total" FROM `events` AS e WHERE e.event_type != '$click';

-- JSON subcolumns
SELECT countIf(data.is_anonymous = true) AS anon, countIf(data.is_anonymous = false) AS known FROM events;
SELECT toString(data.url) AS url, count() AS c FROM events GROUP BY url ORDER BY c DESC, url LIMIT 3;
SELECT toString(data.ip_info.country_code) AS country, uniqExact(user_id) AS users FROM events GROUP BY country ORDER BY country;
SELECT domain(toString(data.referrer_url)) AS host, count() AS c FROM events GROUP BY host ORDER BY host;
SELECT toJSONString(data) AS raw FROM events ORDER BY event_at LIMIT 2;
SELECT user_id, countIf(toString(data.url) LIKE '%/p1') AS p1_views FROM events GROUP BY user_id ORDER BY user_id LIMIT 10;

-- Parametric aggregates
SELECT quantileExact(0.5)(toHour(event_at)) AS median_hour, count() AS c FROM events;
SELECT quantilesExact(0.25, 0.5, 0.75)(toHour(event_at)) AS quartiles FROM events;
SELECT arraySort(topK(4)(event_type)) AS top, uniqExact(user_id) AS users FROM events;
SELECT level, count() AS users FROM (SELECT user_id, windowFunnel(86400)(toDateTime(event_at), event_type = '$page-view', event_type = '$click') AS level FROM events GROUP BY user_id) GROUP BY level ORDER BY level;
SELECT countIf(m) AS matched, count() AS users FROM (SELECT user_id, sequenceMatch('(?1)(?2)')(toDateTime(event_at), event_type = '$page-view', event_type = '$token-refresh') AS m FROM events GROUP BY user_id);
SELECT sum(r[1]) AS day0, sum(r[2]) AS day7 FROM (SELECT user_id, retention(toDate(event_at) = toDate('2026-11-02'), toDate(event_at) = toDate('2026-11-09')) AS r FROM events GROUP BY user_id);
SELECT length(histogram(4)(toHour(event_at))) AS bins, count() AS c FROM events;

-- Window functions
SELECT user_id, event_at, row_number() OVER (PARTITION BY user_id ORDER BY event_at) AS n FROM events ORDER BY user_id, event_at LIMIT 20;
SELECT day, c, sum(c) OVER (ORDER BY day) AS running FROM (SELECT toDate(event_at) AS day, count() AS c FROM events GROUP BY day) ORDER BY day;
SELECT user_id, event_at, lagInFrame(event_at) OVER (PARTITION BY user_id ORDER BY event_at ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev FROM events ORDER BY user_id, event_at LIMIT 20;
SELECT event_type, c, rank() OVER (ORDER BY c DESC) AS r FROM (SELECT event_type, count() AS c FROM events GROUP BY event_type) ORDER BY event_type;
SELECT day, round(avg(c) OVER (ORDER BY day ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), 3) AS moving FROM (SELECT toDate(event_at) AS day, count() AS c FROM events GROUP BY day) ORDER BY day;
SELECT user_id, c, dense_rank() OVER (ORDER BY c DESC) AS r FROM (SELECT user_id, count() AS c FROM events GROUP BY user_id) ORDER BY r, user_id LIMIT 10;
SELECT DISTINCT user_id, first_value(event_type) OVER w AS first_type, last_value(event_type) OVER w AS last_type FROM events WINDOW w AS (PARTITION BY user_id ORDER BY event_at ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) ORDER BY user_id LIMIT 10;
SELECT user_id, event_at, count() OVER (PARTITION BY user_id) AS per_user FROM events ORDER BY per_user DESC, user_id, event_at LIMIT 5;

-- Arrays and lambdas
SELECT arrayMap(x -> x * 2, [1, 2, 3]) AS doubled;
SELECT arraySort(arrayFilter(t -> t != '$click', groupUniqArray(event_type))) AS types FROM events;
SELECT arrayJoin(arraySort(arrayDistinct(groupArray(event_type)))) AS t FROM events ORDER BY t;
SELECT arrayReduce('sum', [1, 2, 3]) AS total, arrayCount(x -> x > 1, [1, 2, 3]) AS above_one;
SELECT user_id, arraySort(x -> -x, groupUniqArray(toHour(event_at))) AS hours FROM events GROUP BY user_id ORDER BY user_id LIMIT 5;
SELECT user_id, h FROM (SELECT user_id, groupUniqArray(toHour(event_at)) AS hours FROM events GROUP BY user_id) ARRAY JOIN hours AS h ORDER BY user_id, h LIMIT 20;
SELECT user_id, has(groupUniqArray(event_type), '$click') AS clicked FROM events GROUP BY user_id ORDER BY user_id LIMIT 10;
SELECT arrayZip([1, 2], ['a', 'b']) AS pairs, arrayEnumerate(['x', 'y', 'z']) AS idx;
SELECT user_id, length(arrayDistinct(groupArray(toDate(event_at)))) AS active_days FROM events GROUP BY user_id ORDER BY active_days DESC, user_id LIMIT 5;

-- CTEs
WITH daily AS (SELECT toDate(event_at) AS d, uniqExact(user_id) AS dau FROM events GROUP BY d) SELECT round(avg(dau), 3) AS avg_dau, max(dau) AS peak FROM daily;
WITH heavy AS (SELECT user_id FROM events GROUP BY user_id HAVING count() > 12), light AS (SELECT user_id FROM events GROUP BY user_id HAVING count() <= 12) SELECT (SELECT count() FROM heavy) AS heavy, (SELECT count() FROM light) AS light;
WITH per_type AS (SELECT event_type, count() AS c FROM events GROUP BY event_type) SELECT a.event_type, a.c, b.c AS total FROM per_type a CROSS JOIN (SELECT sum(c) AS c FROM per_type) b ORDER BY a.event_type;
WITH clicks AS (SELECT user_id, count() AS n FROM events WHERE event_type = '$click' GROUP BY user_id) SELECT u.primary_email, c.n FROM clicks c JOIN users u ON c.user_id = toString(u.id) ORDER BY c.n DESC, u.primary_email LIMIT 5;

-- Joins and other tables
SELECT u.primary_email, count() AS c FROM events e JOIN users u ON e.user_id = toString(u.id) GROUP BY u.primary_email ORDER BY c DESC, u.primary_email LIMIT 5;
SELECT t.display_name, count(m.user_id) AS members FROM teams t LEFT JOIN team_member_profiles m ON m.team_id = t.id GROUP BY t.display_name ORDER BY t.display_name;
SELECT count() AS c FROM events WHERE user_id IN (SELECT toString(id) FROM users WHERE is_anonymous = 0);
SELECT user_id, count() AS sessions FROM refresh_tokens GROUP BY user_id ORDER BY user_id LIMIT 5;
SELECT type, countIf(is_verified = 1) AS verified, count() AS total FROM contact_channels GROUP BY type ORDER BY type;
SELECT * FROM (SELECT 'events' AS source, count() AS c FROM events UNION ALL SELECT 'users', count() FROM users UNION ALL SELECT 'teams', count() FROM teams) ORDER BY source;
SELECT countIf(u.is_anonymous = 1) AS anonymous, countIf(u.is_anonymous = 0) AS known FROM users u;
SELECT * FROM events ORDER BY event_at LIMIT 3;

-- Dates
SELECT toStartOfDay(event_at) AS d, count() AS c FROM events GROUP BY d ORDER BY d;
SELECT dateDiff('day', min(event_at), max(event_at)) AS span_days FROM events;
SELECT formatDateTime(event_at, '%Y-%m-%d') AS day, uniqExact(user_id) AS dau FROM events GROUP BY day ORDER BY day LIMIT 7;
SELECT toYYYYMM(event_at) AS month, toDayOfWeek(event_at) AS weekday, count() AS c FROM events GROUP BY month, weekday ORDER BY month, weekday;
SELECT toStartOfInterval(event_at, INTERVAL 6 HOUR) AS slot, count() AS c FROM events GROUP BY slot ORDER BY slot LIMIT 8;
SELECT d.day, c.n FROM (SELECT toDate('2026-11-01') + number AS day FROM numbers(30)) d LEFT JOIN (SELECT toDate(event_at) AS day, count() AS n FROM events GROUP BY day) c ON d.day = c.day ORDER BY d.day;
SELECT toHour(toTimeZone(event_at, 'Europe/Berlin')) AS berlin_hour, count() AS c FROM events GROUP BY berlin_hour ORDER BY berlin_hour;
SELECT multiIf(toHour(event_at) < 6, 'night', toHour(event_at) < 12, 'morning', 'later') AS part, count() AS c FROM events GROUP BY part ORDER BY part;
SELECT CASE WHEN toDayOfWeek(event_at) >= 6 THEN 'weekend' ELSE 'weekday' END AS kind, count() AS c FROM events GROUP BY kind ORDER BY kind;
SELECT count() AS c FROM events WHERE event_at BETWEEN toDateTime64('2026-11-05 00:00:00', 3, 'UTC') AND toDateTime64('2026-11-12 00:00:00', 3, 'UTC');
