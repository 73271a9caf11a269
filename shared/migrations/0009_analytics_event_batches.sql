-- Analytics event batches already taken (docs/api.md §3.8): a retried batch is answered
-- `deduped` and written once.
CREATE TABLE analytics_event_batches (
  tenancy_id TEXT NOT NULL,
  batch_id TEXT NOT NULL,
  event_count INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (tenancy_id, batch_id)
);
