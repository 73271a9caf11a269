//! The one migration path. The SQL files in `shared/migrations/` are applied in order by every
//! runtime: natively by [`migrate`], on Cloudflare by `wrangler d1 migrations apply` (which
//! reads the same folder). Both record applied files in `d1_migrations`, so a database
//! migrated by either is recognised by the other.

use crate::store::ports::{SqlStore, StoreError};

/// (file name, SQL) in apply order. Add a file here and in `shared/migrations/` together.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../../migrations/0001_init.sql")),
    ("0002_replays.sql", include_str!("../../migrations/0002_replays.sql")),
    ("0003_config.sql", include_str!("../../migrations/0003_config.sql")),
    ("0004_email.sql", include_str!("../../migrations/0004_email.sql")),
    ("0005_managed_domains.sql", include_str!("../../migrations/0005_managed_domains.sql")),
    ("0006_email_capacity.sql", include_str!("../../migrations/0006_email_capacity.sql")),
    ("0007_email_recipients.sql", include_str!("../../migrations/0007_email_recipients.sql")),
    ("0008_mcp_call_log.sql", include_str!("../../migrations/0008_mcp_call_log.sql")),
    ("0009_analytics_event_batches.sql", include_str!("../../migrations/0009_analytics_event_batches.sql")),
    ("0010_analytics_sync.sql", include_str!("../../migrations/0010_analytics_sync.sql")),
    ("0011_ai_rate_limits.sql", include_str!("../../migrations/0011_ai_rate_limits.sql")),
    ("0012_refresh_token_rotation.sql", include_str!("../../migrations/0012_refresh_token_rotation.sql")),
    ("0013_sign_in.sql", include_str!("../../migrations/0013_sign_in.sql")),
    ("0014_oauth.sql", include_str!("../../migrations/0014_oauth.sql")),
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS d1_migrations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE,
  applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)";

/// Applies every migration not yet recorded. Returns the names applied now.
pub async fn migrate(store: &dyn SqlStore) -> Result<Vec<&'static str>, StoreError> {
    store.execute_script(CREATE_LEDGER).await?;
    let applied: Vec<String> = store
        .query("SELECT name FROM d1_migrations", &[])
        .await?
        .iter()
        .map(|r| r.text("name"))
        .collect::<Result<_, _>>()?;
    let mut now_applied = Vec::new();
    for (name, sql) in MIGRATIONS {
        if applied.iter().any(|a| a == name) {
            continue;
        }
        // The script and its ledger row are one transaction: a script that fails leaves no
        // row, so the next start retries it. SQLite DDL is transactional. `name` is one of our
        // own constants, never input.
        let script = format!("BEGIN;\n{sql}\nINSERT INTO d1_migrations (name) VALUES ('{name}');\nCOMMIT;");
        if let Err(e) = store.execute_script(&script).await {
            // Another instance (a second component, a concurrent request) may have applied it
            // first: then its ledger row is there and this failure is that race, not an error.
            let ledger = store.query("SELECT 1 FROM d1_migrations WHERE name = ?", &[(*name).into()]).await?;
            if ledger.is_empty() {
                return Err(e);
            }
            continue;
        }
        now_applied.push(*name);
    }
    Ok(now_applied)
}
