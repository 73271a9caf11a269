-- Managed email domains (docs/api.md §5.7): a project's own sending domain, delegated to
-- the provider, verified, then applied as the project's email server.

CREATE TABLE managed_email_domains (
  id TEXT PRIMARY KEY,
  tenancy_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  branch_id TEXT NOT NULL,
  subdomain TEXT NOT NULL,
  sender_local_part TEXT NOT NULL,
  provider_domain_id TEXT NOT NULL UNIQUE,
  name_server_records TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'PENDING_VERIFICATION',
  last_error TEXT,
  verified_at INTEGER,
  applied_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (tenancy_id, subdomain)
);
CREATE INDEX managed_email_domains_status ON managed_email_domains (tenancy_id, status);
