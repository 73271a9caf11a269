-- Refresh-token rotation with reuse detection (docs/api.md §1.10), for projects whose config
-- turns it on. A session row keeps its current token's hash (`token_hash`), the hash of the
-- token it replaced (`parent_token_hash`, honoured for a fixed grace window after
-- `rotated_at`), and every older token's hash in `retired_refresh_tokens`: presenting one of
-- those is a reuse, and revokes the session. Tokens are never stored, only their SHA-256.
-- Every statement that deletes sessions deletes their retired tokens in the same batch (not a
-- trigger: D1 counts a trigger's rows as the statement's own, see adapters/cloudflare.rs).
ALTER TABLE refresh_tokens ADD COLUMN parent_token_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN rotated_at INTEGER;
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_token_hash) WHERE parent_token_hash IS NOT NULL;

CREATE TABLE retired_refresh_tokens (
  token_hash TEXT PRIMARY KEY,
  tenancy_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  retired_at INTEGER NOT NULL
);
CREATE INDEX retired_refresh_tokens_session ON retired_refresh_tokens (tenancy_id, session_id);
