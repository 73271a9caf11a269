-- Sign-in (docs/api.md §1.11, §1.12): password credentials, the one-time codes sent by email
-- (sign-in codes and password resets), and the one fixed-window rate limiter (shared's
-- store::rate_limit), which takes over the assistant's run budget from ai_rate_limits.

-- A user's password: an argon2id PHC string (algorithm, parameters, salt, hash), never the
-- password. `email` is the sign-in address, lower-cased, unique per tenancy: two concurrent
-- sign-ups with one address cannot both succeed. Deleting the user deletes it (same batch).
CREATE TABLE password_credentials (
  tenancy_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  email TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, user_id),
  UNIQUE (tenancy_id, email)
);

-- A code sent by email: only its SHA-256 is stored; single use (`used_at`), short-lived.
-- `purpose` is `otp-sign-in` or `password-reset`; `user_id` is known for a reset.
CREATE TABLE verification_codes (
  tenancy_id TEXT NOT NULL,
  id TEXT NOT NULL,
  purpose TEXT NOT NULL,
  code_hash TEXT NOT NULL UNIQUE,
  email TEXT NOT NULL,
  user_id TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  PRIMARY KEY (tenancy_id, id)
);
CREATE INDEX verification_codes_expiry ON verification_codes (expires_at);

-- Uses counted per key and fixed window; rows of windows that ended are deleted as new ones
-- are counted.
CREATE TABLE rate_limits (
  key TEXT NOT NULL,
  window_start INTEGER NOT NULL,
  count INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);
DROP TABLE ai_rate_limits;
