-- ask_stack_auth calls (docs/api.md §8.8): what was asked, why, and what the assistant
-- answered, for review. Upstream writes these to SpacetimeDB; here they stay with the project data.
CREATE TABLE mcp_call_log (
  correlation_id TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL,
  tool_name TEXT NOT NULL,
  reason TEXT NOT NULL,
  user_prompt TEXT NOT NULL,
  question TEXT NOT NULL,
  response TEXT NOT NULL,
  step_count INTEGER NOT NULL,
  inner_tool_calls_json TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX mcp_call_log_conversation ON mcp_call_log (conversation_id, created_at);
