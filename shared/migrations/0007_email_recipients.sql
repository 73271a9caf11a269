-- Who gets an email (docs/api.md §5.2): users' notification preferences (USER_UNSUBSCRIBED)
-- and the deliverability check (LIKELY_NOT_DELIVERABLE).
-- One switch per user and notification category; no row means the category is on.
CREATE TABLE notification_preferences (
  tenancy_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  category_id TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, user_id, category_id)
);

-- Emails to the shared server get a deliverability check (Emailable) unless they opt out.
ALTER TABLE email_outbox ADD COLUMN skip_deliverability_check INTEGER NOT NULL DEFAULT 0;
