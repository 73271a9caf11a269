//! The development data folder: the SQLite file and `dev-credentials.json` (mode 0600) with
//! the generated server secret, the internal admin key, the companion secret and the demo
//! project's keys.
//!
//! The database holds only hashes of keys, so the plaintext a developer needs to call the
//! demo project lives in this file, on their machine, and nowhere else. Environment variables
//! (`STACK_SERVER_SECRET`, `STACK_INTERNAL_ADMIN_KEY`, `STACK_COMPANION_SECRET`) take
//! precedence over the file.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shared::adapters::system::{EnvConfig, OsRandom};
use shared::context::{Config, ConfigError, RoleConfig};
use shared::identity::crypto::{base64url, new_api_key};
use shared::identity::projects::{create_project, CreatedProject, NewProject};
use shared::store::ports::{ConfigSource, Random};
use shared::Context;

const CREDENTIALS: &str = "dev-credentials.json";

pub struct DevData {
    dir: PathBuf,
    credentials: Value,
}

/// Environment first, then the development defaults.
struct DevConfig(HashMap<&'static str, String>);

impl ConfigSource for DevConfig {
    fn get(&self, key: &str) -> Option<String> {
        EnvConfig.get(key).or_else(|| self.0.get(key).cloned())
    }
}

impl DevData {
    /// Opens the folder, creating it and fresh credentials on first use.
    pub fn open(dir: &Path) -> std::io::Result<DevData> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let path = dir.join(CREDENTIALS);
        let credentials = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                OsRandom.fill(&mut secret);
                let credentials = json!({
                    "server_secret": base64url(&secret),
                    "internal_admin_key": new_api_key(&OsRandom, "sak"),
                });
                write_private(&path, &credentials)?;
                credentials
            }
            Err(e) => return Err(e),
        };
        let mut data = DevData { dir: dir.to_path_buf(), credentials };
        if data.credentials.get("companion_secret").is_none() {
            // Folders created before the metrics engine existed get one now.
            data.credentials["companion_secret"] = json!(new_api_key(&OsRandom, "csk"));
            write_private(&path, &data.credentials)?;
        }
        Ok(data)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("stack-edge.sqlite")
    }

    pub fn config(&self, base_url: &str) -> Result<Config, ConfigError> {
        Config::load(&self.source(base_url))
    }

    /// What the companion's roles read, from the same source as [`DevData::config`].
    pub fn roles(&self, base_url: &str) -> Result<RoleConfig, ConfigError> {
        RoleConfig::load(&self.source(base_url))
    }

    fn source(&self, base_url: &str) -> DevConfig {
        let text = |k: &str| self.credentials[k].as_str().unwrap_or_default().to_string();
        DevConfig(HashMap::from([
            ("STACK_SERVER_SECRET", text("server_secret")),
            ("STACK_ENVIRONMENT", "development".to_string()),
            ("NEXT_PUBLIC_STACK_API_URL", base_url.to_string()),
            // The functions reach the companion's own endpoints on this same host.
            ("STACK_COMPANION_URL", base_url.to_string()),
            ("STACK_COMPANION_SECRET", text("companion_secret")),
            ("STACK_INTERNAL_ADMIN_KEY", text("internal_admin_key")),
        ]))
    }

    /// The demo project, created (and its keys saved) on first start; whether it is new.
    pub async fn demo_project(&self, ctx: &Context) -> Result<(CreatedProject, bool), Box<dyn std::error::Error>> {
        if let Some(demo) = self.credentials.get("demo_project") {
            return Ok((serde_json::from_value(demo.clone())?, false));
        }
        let created = create_project(
            ctx,
            NewProject {
                display_name: "Demo Project",
                require_publishable_client_key: false,
                config_override: json!({ "apps.installed.analytics.enabled": true }),
            },
        )
        .await?;
        let mut credentials = self.credentials.clone();
        credentials["demo_project"] = serde_json::to_value(&created)?;
        write_private(&self.dir.join(CREDENTIALS), &credentials)?;
        Ok((created, true))
    }
}

fn write_private(path: &Path, value: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
    file.sync_all()?;
    fs::rename(tmp, path)
}

/// What a developer sees on start: a curl line that works when pasted.
pub fn print_instructions(base_url: &str, demo: &CreatedProject, data_dir: &Path) {
    println!(
        "\nDemo project {id} (development keys in {creds}).\nCreate a user:\n\n  curl -s -X POST {base_url}/api/v1/users \\\n    -H 'x-stack-access-type: server' -H 'x-stack-project-id: {id}' \\\n    -H 'x-stack-secret-server-key: {key}' \\\n    -H 'content-type: application/json' -d '{{\"display_name\":\"Ada\"}}'\n\nJWKS: {base_url}/api/v1/projects/{id}/.well-known/jwks.json\n\nThe dashboard's numbers, and the analytics events behind them:\n\n  curl -s {base_url}/api/v1/internal/metrics -H 'x-stack-access-type: admin' \\\n    -H 'x-stack-project-id: {id}' -H 'x-stack-super-secret-admin-key: {admin}'\n  curl -s -X POST {base_url}/api/v1/internal/analytics/query -H 'x-stack-access-type: admin' \\\n    -H 'x-stack-project-id: {id}' -H 'x-stack-super-secret-admin-key: {admin}' \\\n    -H 'content-type: application/json' -d '{{\"query\":\"SELECT event_type, count() FROM events GROUP BY event_type\"}}'\n",
        id = demo.project_id,
        key = demo.keys.secret_server_key,
        admin = demo.keys.super_secret_admin_key,
        creds = data_dir.join(CREDENTIALS).display(),
    );
}
