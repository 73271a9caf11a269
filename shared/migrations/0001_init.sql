-- Stack Edge primary store, portable SQL (SQLite and D1 today).
-- Timestamps are integer milliseconds since the Unix epoch; booleans are 0/1; JSON is TEXT.
-- Secrets are stored only as lowercase hex SHA-256 hashes.

CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  require_publishable_client_key INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);

-- A tenancy is one branch of a project. Every project has a `main` branch.
CREATE TABLE tenancies (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  branch_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (project_id, branch_id)
);

CREATE TABLE api_key_sets (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  description TEXT NOT NULL,
  publishable_client_key_hash TEXT,
  secret_server_key_hash TEXT,
  super_secret_admin_key_hash TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  manually_revoked_at INTEGER
);
CREATE INDEX api_key_sets_project ON api_key_sets (project_id);

CREATE TABLE users (
  tenancy_id TEXT NOT NULL REFERENCES tenancies(id) ON DELETE CASCADE,
  id TEXT NOT NULL,
  display_name TEXT,
  primary_email TEXT,
  primary_email_verified INTEGER NOT NULL DEFAULT 0,
  is_anonymous INTEGER NOT NULL DEFAULT 0,
  restricted_by_admin INTEGER NOT NULL DEFAULT 0,
  requires_totp_mfa INTEGER NOT NULL DEFAULT 0,
  selected_team_id TEXT,
  signed_up_at INTEGER NOT NULL,
  last_active_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, id)
);

-- Sessions. `token_hash` is SHA-256 of the refresh token; the token itself is never stored.
CREATE TABLE refresh_tokens (
  tenancy_id TEXT NOT NULL,
  id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_active_at INTEGER NOT NULL,
  last_active_ip_info TEXT,
  expires_at INTEGER,
  is_impersonation INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenancy_id, id)
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (tenancy_id, user_id);

-- Audit of deleted rows (upstream's DeletedRow): the full old row as JSON.
CREATE TABLE deleted_rows (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenancy_id TEXT NOT NULL,
  table_name TEXT NOT NULL,
  primary_key TEXT NOT NULL,
  data TEXT NOT NULL,
  deleted_at INTEGER NOT NULL
);
CREATE INDEX deleted_rows_tenancy ON deleted_rows (tenancy_id, table_name);
