-- The assistant's per-caller budget (docs/api.md §9.4): runs started per caller per minute,
-- counted in the primary store so every instance of every runtime shares one count. Rows of
-- past minutes are deleted as new ones are counted.
CREATE TABLE ai_rate_limits (
  caller TEXT NOT NULL,
  window_start INTEGER NOT NULL,
  runs INTEGER NOT NULL,
  PRIMARY KEY (caller, window_start)
);
