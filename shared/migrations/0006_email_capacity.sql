-- Email capacity boosts (docs/api.md §5.2): while a tenancy's boost has not expired, it
-- may send four times its usual rate. One row per tenancy, replaced by the next boost.
CREATE TABLE email_capacity_boosts (
  tenancy_id TEXT PRIMARY KEY REFERENCES tenancies(id) ON DELETE CASCADE,
  expires_at INTEGER NOT NULL
);
-- The delivery statistics count finished sends per tenancy over the last hour to month.
CREATE INDEX email_outbox_finished ON email_outbox (tenancy_id, finished_sending_at);
