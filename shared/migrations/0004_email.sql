-- The email outbox (docs/api.md §5.1): one row per recipient email, through rendering,
-- queueing and sending. Timestamps are milliseconds; JSON columns are TEXT.

CREATE TABLE email_outbox (
  tenancy_id TEXT NOT NULL,
  id TEXT NOT NULL,
  -- Content (editable until sending starts).
  tsx_source TEXT NOT NULL,
  is_high_priority INTEGER NOT NULL DEFAULT 0,
  recipient TEXT NOT NULL,
  variables TEXT NOT NULL DEFAULT '{}',
  override_subject TEXT,
  is_transactional INTEGER NOT NULL DEFAULT 1,
  is_paused INTEGER NOT NULL DEFAULT 0,
  -- Rendering.
  rendered_by_worker_id TEXT,
  started_rendering_at INTEGER,
  finished_rendering_at INTEGER,
  rendered_html TEXT,
  rendered_text TEXT,
  rendered_subject TEXT,
  render_error_external_message TEXT,
  render_error_internal_message TEXT,
  -- Scheduling and sending.
  scheduled_at INTEGER NOT NULL,
  is_queued INTEGER NOT NULL DEFAULT 0,
  sending_worker_id TEXT,
  started_sending_at INTEGER,
  finished_sending_at INTEGER,
  send_retries INTEGER NOT NULL DEFAULT 0,
  next_send_retry_at INTEGER,
  send_attempt_errors TEXT,
  send_server_error_external_message TEXT,
  send_server_error_external_details TEXT,
  send_server_error_internal_message TEXT,
  send_server_error_internal_details TEXT,
  can_have_delivery_info INTEGER,
  -- Skipping.
  skipped_reason TEXT,
  skipped_details TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, id)
);
CREATE INDEX email_outbox_render ON email_outbox (rendered_by_worker_id, created_at);
CREATE INDEX email_outbox_send ON email_outbox (is_queued, started_sending_at, finished_sending_at);
CREATE INDEX email_outbox_created ON email_outbox (tenancy_id, created_at, id);

-- The queue's one metadata row: when the last pass ran (for the send quota).
CREATE TABLE email_outbox_processing_metadata (
  key TEXT PRIMARY KEY,
  last_executed_at INTEGER NOT NULL
);
