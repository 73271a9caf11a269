-- OAuth sign-in (docs/api.md §2.3–§2.6): the flows in flight between authorize and the
-- provider's callback, the authorization codes given to apps, and the connected accounts.
-- Secrets are never stored as they are: states and codes by their SHA-256, provider tokens
-- sealed with AES-256-GCM under a key derived from the server secret (identity::sealed).

-- One sign-in in flight: keyed by the SHA-256 of the state sent to the provider; single use
-- (`used_at`, set by a conditional update), ten minutes. `info` is the app's request as JSON
-- (its redirect URL, state and PKCE challenge, the provider's PKCE verifier, link target).
CREATE TABLE oauth_flows (
  state_hash TEXT PRIMARY KEY,
  tenancy_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  info TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
);
CREATE INDEX oauth_flows_expiry ON oauth_flows (expires_at);

-- A code the callback hands to the app: exchanged once, with the PKCE verifier whose SHA-256
-- is `code_challenge`, at the token endpoint, for the session it names.
CREATE TABLE authorization_codes (
  code_hash TEXT PRIMARY KEY,
  tenancy_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  redirect_uri TEXT NOT NULL,
  code_challenge TEXT NOT NULL,
  is_new_user INTEGER NOT NULL,
  after_callback_redirect_url TEXT,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);
CREATE INDEX authorization_codes_user ON authorization_codes (tenancy_id, user_id);

-- A provider account connected to a user: one per (provider, account) in a tenancy. The
-- provider's tokens are sealed; `scopes` are those granted, space-separated. Deleting the user
-- deletes them (same batch).
CREATE TABLE connected_accounts (
  tenancy_id TEXT NOT NULL,
  provider_id TEXT NOT NULL,
  provider_account_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  email TEXT,
  sealed_access_token TEXT,
  sealed_refresh_token TEXT,
  access_token_expires_at INTEGER,
  scopes TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, provider_id, provider_account_id)
);
CREATE INDEX connected_accounts_user ON connected_accounts (tenancy_id, user_id, provider_id);
