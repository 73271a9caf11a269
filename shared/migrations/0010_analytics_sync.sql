-- The primary store mirrored into the analytics store (docs/api.md §6.6).
--
-- Every write to a mirrored table appends its row's key to `sync_changes`, by trigger, so no
-- write path can forget to. The log's AUTOINCREMENT id is the sequence number: SQLite and D1
-- have one writer at a time, so ids are in commit order and a sync that has pushed every change
-- up to N has pushed every write committed before N. A delete also keeps what its tombstone
-- needs (the key and the partition column) in `deleted_row`. The sync step pushes the changed
-- rows' current state to ClickHouse, records how far it got there (`_stack_sync_metadata`),
-- then prunes the log up to that point.
CREATE TABLE sync_changes (
  sequence_id INTEGER PRIMARY KEY AUTOINCREMENT,
  mapping TEXT NOT NULL,
  tenancy_id TEXT NOT NULL,
  row_key TEXT NOT NULL,
  deleted_row TEXT,
  changed_at INTEGER NOT NULL
);
CREATE INDEX sync_changes_mapping ON sync_changes (mapping, sequence_id);

-- The sync's own state per mapping: how far the log was pruned (an analytics store behind that
-- point lost rows and gets everything again) and the last success and failure, for /health.
CREATE TABLE analytics_sync_state (
  mapping TEXT PRIMARY KEY,
  pruned_through INTEGER NOT NULL DEFAULT 0,
  last_success_at INTEGER,
  last_failure_at INTEGER,
  last_error TEXT,
  consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- users: only the mirrored columns (not last_active_at, written on every refresh).
CREATE TRIGGER users_sync_insert AFTER INSERT ON users BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('users', new.tenancy_id, new.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER users_sync_update AFTER UPDATE OF display_name, primary_email, primary_email_verified, is_anonymous,
  restricted_by_admin, signed_up_at ON users BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('users', new.tenancy_id, new.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER users_sync_delete AFTER DELETE ON users BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, deleted_row, changed_at)
  VALUES ('users', old.tenancy_id, old.id, json_object('id', old.id, 'signed_up_at', old.signed_up_at),
          CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- refresh_tokens: last_active_at is mirrored (last_used_at), so a refresh is a change.
CREATE TRIGGER refresh_tokens_sync_insert AFTER INSERT ON refresh_tokens BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('refresh_tokens', new.tenancy_id, new.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER refresh_tokens_sync_update AFTER UPDATE OF user_id, created_at, last_active_at, expires_at,
  is_impersonation ON refresh_tokens BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('refresh_tokens', new.tenancy_id, new.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER refresh_tokens_sync_delete AFTER DELETE ON refresh_tokens BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, deleted_row, changed_at)
  VALUES ('refresh_tokens', old.tenancy_id, old.id, json_object('id', old.id, 'created_at', old.created_at),
          CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- email_outbox: every column feeds the mirrored status or a mirrored field.
CREATE TRIGGER email_outbox_sync_insert AFTER INSERT ON email_outbox BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('email_outboxes', new.tenancy_id, new.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER email_outbox_sync_update AFTER UPDATE ON email_outbox BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('email_outboxes', new.tenancy_id, new.id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER email_outbox_sync_delete AFTER DELETE ON email_outbox BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, deleted_row, changed_at)
  VALUES ('email_outboxes', old.tenancy_id, old.id, json_object('id', old.id, 'created_at', old.created_at),
          CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- notification_preferences: keyed by user and category (a JSON array as the row key).
CREATE TRIGGER notification_preferences_sync_insert AFTER INSERT ON notification_preferences BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('notification_preferences', new.tenancy_id, json_array(new.user_id, new.category_id),
          CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER notification_preferences_sync_update AFTER UPDATE OF enabled ON notification_preferences BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  VALUES ('notification_preferences', new.tenancy_id, json_array(new.user_id, new.category_id),
          CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER notification_preferences_sync_delete AFTER DELETE ON notification_preferences BEGIN
  INSERT INTO sync_changes (mapping, tenancy_id, row_key, deleted_row, changed_at)
  VALUES ('notification_preferences', old.tenancy_id, json_array(old.user_id, old.category_id),
          json_object('user_id', old.user_id, 'notification_category_id', old.category_id),
          CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

-- Rows written before this migration: logged once, so the first sync mirrors them too.
INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  SELECT 'users', tenancy_id, id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM users;
INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  SELECT 'refresh_tokens', tenancy_id, id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM refresh_tokens;
INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  SELECT 'email_outboxes', tenancy_id, id, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM email_outbox;
INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at)
  SELECT 'notification_preferences', tenancy_id, json_array(user_id, category_id),
         CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM notification_preferences;
