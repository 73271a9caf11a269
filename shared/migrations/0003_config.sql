-- Config overrides above the project level (docs/api.md §4.1). The project level is
-- projects.config_override. JSON text; `source` is where a branch config came from.

CREATE TABLE branch_config_overrides (
  project_id TEXT NOT NULL,
  branch_id TEXT NOT NULL,
  config TEXT NOT NULL DEFAULT '{}',
  source TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (project_id, branch_id)
);

CREATE TABLE environment_config_overrides (
  project_id TEXT NOT NULL,
  branch_id TEXT NOT NULL,
  config TEXT NOT NULL DEFAULT '{}',
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (project_id, branch_id)
);
