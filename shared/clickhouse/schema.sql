-- Stack Edge analytics schema (ClickHouse), per the upstream contract part 2 section 1.5.
-- Statements are separated by ";" at the end of a line. Lines starting "-- access:" mark the
-- statements a real server runs and the local engine (chdb) skips: users, row policies, grants.
-- {external_password} is bound as a query parameter by the migration runner.
-- A real server also needs custom_settings_prefixes = SQL_ (scripts/clickhouse/server-config.xml).

CREATE DATABASE IF NOT EXISTS analytics_internal;

CREATE TABLE IF NOT EXISTS analytics_internal.events (
  event_type LowCardinality(String),
  event_at DateTime64(3, 'UTC'),
  data JSON,
  project_id String,
  branch_id String,
  user_id Nullable(String),
  team_id Nullable(String),
  refresh_token_id Nullable(String),
  session_replay_id Nullable(String),
  session_replay_segment_id Nullable(String),
  created_at DateTime64(3, 'UTC') DEFAULT now64(3),
  -- Computed at insert for the metrics engine (hidden from SELECT * and so from the views):
  -- the user as metrics count users (sipHash64 of the trimmed, lower-cased id when that is a
  -- v4 UUID, else 0), and whether the event's data says the user is anonymous (missing = no).
  user_key UInt64 MATERIALIZED if(match(lower(trim(ifNull(user_id, ''))), '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'), sipHash64(lower(trim(assumeNotNull(user_id)))), 0),
  is_anonymous UInt8 MATERIALIZED coalesce(CAST(data.is_anonymous AS Nullable(UInt8)), 0)
) ENGINE = MergeTree PARTITION BY toYYYYMM(event_at) ORDER BY (project_id, branch_id, event_at);

-- The same two columns for a table created before they existed (older parts compute them on read).
ALTER TABLE analytics_internal.events ADD COLUMN IF NOT EXISTS user_key UInt64 MATERIALIZED if(match(lower(trim(ifNull(user_id, ''))), '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'), sipHash64(lower(trim(assumeNotNull(user_id)))), 0);

ALTER TABLE analytics_internal.events ADD COLUMN IF NOT EXISTS is_anonymous UInt8 MATERIALIZED coalesce(CAST(data.is_anonymous AS Nullable(UInt8)), 0);

CREATE TABLE IF NOT EXISTS analytics_internal._stack_sync_metadata (
  tenancy_id UUID,
  mapping_name String,
  last_synced_sequence_id Int64,
  updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (tenancy_id, mapping_name);

CREATE TABLE IF NOT EXISTS analytics_internal.users (
  project_id String,
  branch_id String,
  id UUID,
  display_name Nullable(String),
  profile_image_url Nullable(String),
  primary_email Nullable(String),
  primary_email_verified UInt8,
  signed_up_at DateTime64(3, 'UTC'),
  client_metadata String,
  client_read_only_metadata String,
  server_metadata String,
  is_anonymous UInt8,
  restricted_by_admin UInt8,
  restricted_by_admin_reason Nullable(String),
  restricted_by_admin_private_details Nullable(String),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(signed_up_at) ORDER BY (project_id, branch_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.contact_channels (
  project_id String,
  branch_id String,
  id UUID,
  user_id UUID,
  type LowCardinality(String),
  value String,
  is_primary UInt8,
  is_verified UInt8,
  used_for_auth UInt8,
  created_at DateTime64(3, 'UTC'),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.teams (
  project_id String,
  branch_id String,
  id UUID,
  display_name String,
  profile_image_url Nullable(String),
  created_at DateTime64(3, 'UTC'),
  client_metadata String,
  client_read_only_metadata String,
  server_metadata String,
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.team_member_profiles (
  project_id String,
  branch_id String,
  team_id UUID,
  user_id UUID,
  display_name Nullable(String),
  profile_image_url Nullable(String),
  created_at DateTime64(3, 'UTC'),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, team_id, user_id);

CREATE TABLE IF NOT EXISTS analytics_internal.team_permissions (
  project_id String,
  branch_id String,
  team_id UUID,
  user_id UUID,
  id String,
  created_at DateTime64(3, 'UTC'),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, team_id, user_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.team_invitations (
  project_id String,
  branch_id String,
  id UUID,
  team_id UUID,
  team_display_name String,
  recipient_email String,
  expires_at_millis Int64,
  created_at DateTime64(3, 'UTC'),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.email_outboxes (
  project_id String,
  branch_id String,
  id UUID,
  status LowCardinality(String),
  simple_status LowCardinality(String),
  created_with LowCardinality(String),
  email_draft_id Nullable(String),
  email_programmatic_call_template_id Nullable(String),
  theme_id Nullable(String),
  is_high_priority UInt8,
  is_transactional Nullable(UInt8),
  subject Nullable(String),
  notification_category_id Nullable(String),
  started_rendering_at Nullable(DateTime64(3, 'UTC')),
  rendered_at Nullable(DateTime64(3, 'UTC')),
  render_error Nullable(String),
  scheduled_at DateTime64(3, 'UTC'),
  created_at DateTime64(3, 'UTC'),
  updated_at DateTime64(3, 'UTC'),
  started_sending_at Nullable(DateTime64(3, 'UTC')),
  server_error Nullable(String),
  delivered_at Nullable(DateTime64(3, 'UTC')),
  opened_at Nullable(DateTime64(3, 'UTC')),
  clicked_at Nullable(DateTime64(3, 'UTC')),
  unsubscribed_at Nullable(DateTime64(3, 'UTC')),
  marked_as_spam_at Nullable(DateTime64(3, 'UTC')),
  bounced_at Nullable(DateTime64(3, 'UTC')),
  delivery_delayed_at Nullable(DateTime64(3, 'UTC')),
  can_have_delivery_info Nullable(UInt8),
  skipped_reason LowCardinality(Nullable(String)),
  skipped_details Nullable(String),
  send_retries Int32,
  is_paused UInt8,
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.project_permissions (
  project_id String,
  branch_id String,
  user_id UUID,
  id String,
  created_at DateTime64(3, 'UTC'),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, user_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.notification_preferences (
  project_id String,
  branch_id String,
  user_id UUID,
  notification_category_id String,
  enabled UInt8,
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) ORDER BY (project_id, branch_id, user_id, notification_category_id);

CREATE TABLE IF NOT EXISTS analytics_internal.refresh_tokens (
  project_id String,
  branch_id String,
  id UUID,
  user_id UUID,
  created_at DateTime64(3, 'UTC'),
  last_used_at DateTime64(3, 'UTC'),
  is_impersonation UInt8,
  expires_at Nullable(DateTime64(3, 'UTC')),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, id);

CREATE TABLE IF NOT EXISTS analytics_internal.connected_accounts (
  project_id String,
  branch_id String,
  user_id UUID,
  provider String,
  provider_account_id String,
  created_at DateTime64(3, 'UTC'),
  sync_sequence_id Int64,
  sync_is_deleted UInt8,
  sync_created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(sync_sequence_id) PARTITION BY toYYYYMM(created_at) ORDER BY (project_id, branch_id, user_id, provider, provider_account_id);

-- The metrics' rollups (companion/src/metrics/rollups.rs reads them): aggregates ClickHouse
-- keeps up to date at insert, so the metrics read the window's day masks of the tenancy's
-- users and teams and its per-day counts, not every event of its history.
-- A "-- rollup: <table>" line marks the SELECT that fills <table>. The migration runner makes
-- it the materialized view <table>_mv for events created from then on and, once, when it
-- creates that view, fills the table with the events created before; "@CREATED" in the
-- SELECT is where it puts that cut (on `created_at`, which only the insert sets).

-- Rollups whose table the runner has filled (the view alone does not say it: a run that
-- stopped between creating a view and filling its table leaves no row here and is redone).
CREATE TABLE IF NOT EXISTS analytics_internal._stack_rollups (
  name String,
  cut DateTime64(3, 'UTC'),
  filled_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(filled_at) ORDER BY name;

-- Activity as day masks: per entity and block of 64 days (days since 1970 / 64), bit
-- `day % 64` set for each day it was active. A 31-day window spans two blocks, so the metrics
-- read two rows per active entity, however long the history, and count bits, not distinct ids.

-- Token refreshes per user and anonymity (DAU, MAU, the users' split).
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_user_days (
  project_id String,
  branch_id String,
  block UInt16,
  user_key UInt64,
  is_anonymous UInt8,
  days SimpleAggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree ORDER BY (project_id, branch_id, block, user_key, is_anonymous);

-- rollup: analytics_internal.metrics_user_days
SELECT project_id, branch_id, toUInt16(intDiv(toUInt32(toDate(event_at)), 64)) AS block, user_key, is_anonymous,
  groupBitOr(bitShiftLeft(toUInt64(1), toUInt32(toDate(event_at)) % 64)) AS days
FROM analytics_internal.events
WHERE event_type = '$token-refresh' AND user_key != 0 AND @CREATED
GROUP BY project_id, branch_id, block, user_key, is_anonymous;

-- Token refreshes per place, user and anonymity (the top region).
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_region_days (
  project_id String,
  branch_id String,
  block UInt16,
  country_code Nullable(String),
  region_code Nullable(String),
  user_key UInt64,
  is_anonymous UInt8,
  days SimpleAggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree ORDER BY (project_id, branch_id, block, country_code, region_code, user_key, is_anonymous)
SETTINGS allow_nullable_key = 1;

-- rollup: analytics_internal.metrics_region_days
SELECT project_id, branch_id, toUInt16(intDiv(toUInt32(toDate(event_at)), 64)) AS block,
  CAST(data.ip_info.country_code AS Nullable(String)) AS country_code,
  CAST(data.ip_info.region_code AS Nullable(String)) AS region_code, user_key, is_anonymous,
  groupBitOr(bitShiftLeft(toUInt64(1), toUInt32(toDate(event_at)) % 64)) AS days
FROM analytics_internal.events
WHERE event_type = '$token-refresh' AND user_key != 0 AND @CREATED
GROUP BY project_id, branch_id, block, country_code, region_code, user_key, is_anonymous;

-- Token refreshes per user and anonymity, all time: first day, last refresh, latest country.
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_users (
  project_id String,
  branch_id String,
  user_key UInt64,
  is_anonymous UInt8,
  first_day SimpleAggregateFunction(min, Date),
  last_refresh_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
  country AggregateFunction(argMax, String, DateTime64(3, 'UTC'))
) ENGINE = AggregatingMergeTree ORDER BY (project_id, branch_id, user_key, is_anonymous);

-- rollup: analytics_internal.metrics_users
SELECT project_id, branch_id, user_key, is_anonymous, min(toDate(event_at)) AS first_day,
  max(event_at) AS last_refresh_at,
  argMaxStateIf(ifNull(CAST(data.ip_info.country_code AS Nullable(String)), ''), event_at,
    ifNull(CAST(data.ip_info.country_code AS Nullable(String)), '') != '') AS country
FROM analytics_internal.events
WHERE event_type = '$token-refresh' AND user_key != 0 AND @CREATED
GROUP BY project_id, branch_id, user_key, is_anonymous;

-- Token refreshes with a team, per team (the teams' split).
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_team_days (
  project_id String,
  branch_id String,
  block UInt16,
  team_id String,
  days SimpleAggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree ORDER BY (project_id, branch_id, block, team_id);

-- rollup: analytics_internal.metrics_team_days
SELECT project_id, branch_id, toUInt16(intDiv(toUInt32(toDate(event_at)), 64)) AS block,
  assumeNotNull(team_id) AS team_id, groupBitOr(bitShiftLeft(toUInt64(1), toUInt32(toDate(event_at)) % 64)) AS days
FROM analytics_internal.events
WHERE event_type = '$token-refresh' AND team_id IS NOT NULL AND team_id != '' AND @CREATED
GROUP BY project_id, branch_id, block, team_id;

-- Token refreshes with a team, per team, all time: its first day.
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_teams (
  project_id String,
  branch_id String,
  team_id String,
  first_day SimpleAggregateFunction(min, Date)
) ENGINE = AggregatingMergeTree ORDER BY (project_id, branch_id, team_id);

-- rollup: analytics_internal.metrics_teams
SELECT project_id, branch_id, assumeNotNull(team_id) AS team_id, min(toDate(event_at)) AS first_day
FROM analytics_internal.events
WHERE event_type = '$token-refresh' AND team_id IS NOT NULL AND team_id != '' AND @CREATED
GROUP BY project_id, branch_id, team_id;

-- Page views and clicks that carry their own anonymity (the events endpoint stamps every one
-- with its user's): counts and distinct visitors per day, anonymity and referrer.
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_daily_views (
  project_id String,
  branch_id String,
  day Date,
  event_anonymous UInt8,
  source Nullable(String),
  page_views SimpleAggregateFunction(sum, UInt64),
  clicks SimpleAggregateFunction(sum, UInt64),
  visitors AggregateFunction(uniqExact, UInt64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (project_id, branch_id, day, event_anonymous, source)
SETTINGS allow_nullable_key = 1;

-- rollup: analytics_internal.metrics_daily_views
SELECT project_id, branch_id, toDate(event_at) AS day,
  assumeNotNull(CAST(data.is_anonymous AS Nullable(UInt8))) AS event_anonymous,
  nullIf(ifNull(CAST(data.referrer AS Nullable(String)), ''), '') AS source,
  countIf(event_type = '$page-view') AS page_views, countIf(event_type = '$click') AS clicks,
  uniqExactStateIf(user_key, event_type = '$page-view') AS visitors
FROM analytics_internal.events
WHERE event_type IN ('$page-view', '$click') AND user_key != 0
  AND CAST(data.is_anonymous AS Nullable(UInt8)) IS NOT NULL AND @CREATED
GROUP BY project_id, branch_id, day, event_anonymous, source;

-- The same page views per user and anonymity, as day masks (the daily visitors).
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_visitor_days (
  project_id String,
  branch_id String,
  block UInt16,
  user_key UInt64,
  event_anonymous UInt8,
  days SimpleAggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree ORDER BY (project_id, branch_id, block, user_key, event_anonymous);

-- rollup: analytics_internal.metrics_visitor_days
SELECT project_id, branch_id, toUInt16(intDiv(toUInt32(toDate(event_at)), 64)) AS block, user_key,
  assumeNotNull(CAST(data.is_anonymous AS Nullable(UInt8))) AS event_anonymous,
  groupBitOr(bitShiftLeft(toUInt64(1), toUInt32(toDate(event_at)) % 64)) AS days
FROM analytics_internal.events
WHERE event_type = '$page-view' AND user_key != 0 AND CAST(data.is_anonymous AS Nullable(UInt8)) IS NOT NULL AND @CREATED
GROUP BY project_id, branch_id, block, user_key, event_anonymous;

-- Page views and clicks without their own anonymity (written by other means): per day, user
-- and referrer, as whether they count depends on the user's latest token refresh.
CREATE TABLE IF NOT EXISTS analytics_internal.metrics_unstamped_views (
  project_id String,
  branch_id String,
  day Date,
  user_key UInt64,
  source Nullable(String),
  page_views SimpleAggregateFunction(sum, UInt64),
  clicks SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (project_id, branch_id, day, user_key, source)
SETTINGS allow_nullable_key = 1;

-- rollup: analytics_internal.metrics_unstamped_views
SELECT project_id, branch_id, toDate(event_at) AS day, user_key,
  nullIf(ifNull(CAST(data.referrer AS Nullable(String)), ''), '') AS source,
  countIf(event_type = '$page-view') AS page_views, countIf(event_type = '$click') AS clicks
FROM analytics_internal.events
WHERE event_type IN ('$page-view', '$click') AND user_key != 0
  AND CAST(data.is_anonymous AS Nullable(UInt8)) IS NULL AND @CREATED
GROUP BY project_id, branch_id, day, user_key, source;

CREATE OR REPLACE VIEW default.events SQL SECURITY DEFINER AS SELECT * FROM analytics_internal.events;

CREATE OR REPLACE VIEW default.users SQL SECURITY DEFINER AS SELECT project_id, branch_id, id, display_name, profile_image_url, primary_email, primary_email_verified, signed_up_at, client_metadata, client_read_only_metadata, server_metadata, is_anonymous, restricted_by_admin, restricted_by_admin_reason, restricted_by_admin_private_details FROM analytics_internal.users FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.contact_channels SQL SECURITY DEFINER AS SELECT project_id, branch_id, id, user_id, type, value, is_primary, is_verified, used_for_auth, created_at FROM analytics_internal.contact_channels FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.teams SQL SECURITY DEFINER AS SELECT project_id, branch_id, id, display_name, profile_image_url, created_at, client_metadata, client_read_only_metadata, server_metadata FROM analytics_internal.teams FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.team_member_profiles SQL SECURITY DEFINER AS SELECT project_id, branch_id, team_id, user_id, display_name, profile_image_url, created_at FROM analytics_internal.team_member_profiles FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.team_permissions SQL SECURITY DEFINER AS SELECT project_id, branch_id, team_id, user_id, id, created_at FROM analytics_internal.team_permissions FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.team_invitations SQL SECURITY DEFINER AS SELECT project_id, branch_id, id, team_id, team_display_name, recipient_email, expires_at_millis, created_at FROM analytics_internal.team_invitations FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.email_outboxes SQL SECURITY DEFINER AS SELECT project_id, branch_id, id, status, simple_status, created_with, email_draft_id, email_programmatic_call_template_id, theme_id, is_high_priority, is_transactional, subject, notification_category_id, started_rendering_at, rendered_at, render_error, scheduled_at, created_at, updated_at, started_sending_at, server_error, delivered_at, opened_at, clicked_at, unsubscribed_at, marked_as_spam_at, bounced_at, delivery_delayed_at, can_have_delivery_info, skipped_reason, skipped_details, send_retries, is_paused FROM analytics_internal.email_outboxes FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.project_permissions SQL SECURITY DEFINER AS SELECT project_id, branch_id, user_id, id, created_at FROM analytics_internal.project_permissions FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.notification_preferences SQL SECURITY DEFINER AS SELECT project_id, branch_id, user_id, notification_category_id, enabled FROM analytics_internal.notification_preferences FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.refresh_tokens SQL SECURITY DEFINER AS SELECT project_id, branch_id, id, user_id, created_at, last_used_at, is_impersonation, expires_at FROM analytics_internal.refresh_tokens FINAL WHERE sync_is_deleted = 0;

CREATE OR REPLACE VIEW default.connected_accounts SQL SECURITY DEFINER AS SELECT project_id, branch_id, user_id, provider, provider_account_id, created_at FROM analytics_internal.connected_accounts FINAL WHERE sync_is_deleted = 0;

-- access:
CREATE USER IF NOT EXISTS limited_user IDENTIFIED WITH sha256_password BY {external_password:String};

-- access:
CREATE ROW POLICY IF NOT EXISTS events_project_isolation ON default.events FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS users_project_isolation ON default.users FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS contact_channels_project_isolation ON default.contact_channels FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS teams_project_isolation ON default.teams FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS team_member_profiles_project_isolation ON default.team_member_profiles FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS team_permissions_project_isolation ON default.team_permissions FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS team_invitations_project_isolation ON default.team_invitations FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS email_outboxes_project_isolation ON default.email_outboxes FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS project_permissions_project_isolation ON default.project_permissions FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS notification_preferences_project_isolation ON default.notification_preferences FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS refresh_tokens_project_isolation ON default.refresh_tokens FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
CREATE ROW POLICY IF NOT EXISTS connected_accounts_project_isolation ON default.connected_accounts FOR SELECT USING project_id = getSetting('SQL_project_id') AND branch_id = getSetting('SQL_branch_id') TO limited_user;

-- access:
REVOKE ALL PRIVILEGES ON *.* FROM limited_user;

-- access:
GRANT SELECT ON default.events TO limited_user;

-- access:
GRANT SELECT ON default.users TO limited_user;

-- access:
GRANT SELECT ON default.contact_channels TO limited_user;

-- access:
GRANT SELECT ON default.teams TO limited_user;

-- access:
GRANT SELECT ON default.team_member_profiles TO limited_user;

-- access:
GRANT SELECT ON default.team_permissions TO limited_user;

-- access:
GRANT SELECT ON default.team_invitations TO limited_user;

-- access:
GRANT SELECT ON default.email_outboxes TO limited_user;

-- access:
GRANT SELECT ON default.project_permissions TO limited_user;

-- access:
GRANT SELECT ON default.notification_preferences TO limited_user;

-- access:
GRANT SELECT ON default.refresh_tokens TO limited_user;

-- access:
GRANT SELECT ON default.connected_accounts TO limited_user;
