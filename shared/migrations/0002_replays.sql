-- Session replays (docs/api.md §3), the blobs their chunks are stored in, and a project
-- config override (the JSON the config levels of docs/api.md §4 start from).

ALTER TABLE projects ADD COLUMN config_override TEXT NOT NULL DEFAULT '{}';

-- One replay: a user's activity under one refresh token, grouped while batches keep coming
-- (3-minute idle timeout, 12 hours at most, both by server time).
CREATE TABLE session_replays (
  tenancy_id TEXT NOT NULL,
  id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  refresh_token_id TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  last_event_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, id)
);
CREATE INDEX session_replays_recent ON session_replays (tenancy_id, refresh_token_id, updated_at);
CREATE INDEX session_replays_last_event ON session_replays (tenancy_id, last_event_at, id);
CREATE INDEX session_replays_user ON session_replays (tenancy_id, user_id, started_at);

-- One uploaded batch of a replay; its events are a gzipped JSON blob under `blob_key`.
CREATE TABLE session_replay_chunks (
  tenancy_id TEXT NOT NULL,
  id TEXT NOT NULL,
  session_replay_id TEXT NOT NULL,
  batch_id TEXT NOT NULL,
  session_replay_segment_id TEXT NOT NULL,
  browser_session_id TEXT NOT NULL,
  blob_key TEXT NOT NULL,
  event_count INTEGER NOT NULL,
  byte_length INTEGER NOT NULL,
  first_event_at INTEGER NOT NULL,
  last_event_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, id),
  UNIQUE (tenancy_id, session_replay_id, batch_id)
);
CREATE INDEX session_replay_chunks_order ON session_replay_chunks (tenancy_id, session_replay_id, first_event_at, id);

-- The SQL blob store (the embedded default): bytes as base64 text, which every SQL store
-- here (SQLite, D1) binds the same way.
CREATE TABLE blobs (
  key TEXT PRIMARY KEY,
  data TEXT NOT NULL,
  byte_length INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
