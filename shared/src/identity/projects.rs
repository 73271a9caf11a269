//! Projects, their branches (tenancies) and key sets: creation for the internal endpoint, the
//! companion CLI and first-start seeding. Keys are returned once, at creation, and stored only
//! as hashes.

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::identity::crypto::{hash_secret, new_api_key, new_uuid};
use crate::store::ports::{SqlValue, Statement, StoreError};

/// The project every deployment has; its admin key authorises project creation.
pub const INTERNAL_PROJECT_ID: &str = "internal";

/// Key sets created without an explicit expiry last this long (100 years).
const DEFAULT_KEY_LIFETIME_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// The three keys of a key set, in plaintext: returned once at creation, stored only hashed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKeys {
    /// The publishable client key.
    pub publishable_client_key: String,
    /// The secret server key.
    pub secret_server_key: String,
    /// The super secret admin key.
    pub super_secret_admin_key: String,
}

impl ApiKeys {
    fn generate(random: &dyn crate::store::ports::Random) -> ApiKeys {
        ApiKeys {
            publishable_client_key: new_api_key(random, "pck"),
            secret_server_key: new_api_key(random, "ssk"),
            super_secret_admin_key: new_api_key(random, "sak"),
        }
    }
}

/// A new project and its first key set, with the keys in plaintext (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreatedProject {
    /// The new project's id.
    pub project_id: String,
    /// Its display name.
    pub display_name: String,
    #[serde(flatten)]
    /// Its first key set (shown once; stored hashed).
    pub keys: ApiKeys,
}

/// What a new project is made from.
pub struct NewProject<'a> {
    /// Its display name.
    pub display_name: &'a str,
    /// Whether client calls need a publishable client key.
    pub require_publishable_client_key: bool,
    /// The project's config override (JSON object; `{}` for none).
    pub config_override: serde_json::Value,
}

/// Creates a project with a `main` branch and one key set holding all three keys.
pub async fn create_project(ctx: &Context, new: NewProject<'_>) -> Result<CreatedProject, StoreError> {
    let random = ctx.random.as_ref();
    let now = ctx.now();
    let created = CreatedProject {
        project_id: new_uuid(random),
        display_name: new.display_name.to_string(),
        keys: ApiKeys::generate(random),
    };
    let mut statements = project_statements(ctx, &created.project_id, &new, now);
    statements.push(key_set_statement(
        &new_uuid(random),
        &created.project_id,
        "Created with the project",
        &created.keys,
        now,
    ));
    ctx.store.batch(&statements).await?;
    Ok(created)
}

/// A boolean of a config by dotted path (`apps.installed.analytics.enabled`), written either as
/// one dotted key (upstream's override style) or as nested objects (a rendered config).
pub fn config_flag(config: &serde_json::Value, path: &str) -> bool {
    if let Some(value) = config.get(path) {
        return value.as_bool().unwrap_or(false);
    }
    path.split('.')
        .try_fold(config, |value, part| value.get(part))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// A new key set's keys in plaintext (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreatedKeySet {
    /// The key set's id.
    pub id: String,
    /// Its project.
    pub project_id: String,
    #[serde(flatten)]
    /// The keys (shown once; stored hashed).
    pub keys: ApiKeys,
}

/// Adds a key set with all three keys to an existing project (for example to rotate keys).
/// Returns `None` when the project does not exist.
pub async fn create_key_set(
    ctx: &Context,
    project_id: &str,
    description: &str,
) -> Result<Option<CreatedKeySet>, StoreError> {
    let exists =
        !ctx.store.query("SELECT id FROM projects WHERE id = ?", &[SqlValue::from(project_id)]).await?.is_empty();
    if !exists {
        return Ok(None);
    }
    let random = ctx.random.as_ref();
    let created =
        CreatedKeySet { id: new_uuid(random), project_id: project_id.to_string(), keys: ApiKeys::generate(random) };
    ctx.store.batch(&[key_set_statement(&created.id, project_id, description, &created.keys, ctx.now())]).await?;
    Ok(Some(created))
}

/// Makes sure the internal project exists and accepts `admin_key` as its admin key. Idempotent
/// and safe when several instances start at once: every statement is a no-op when its row is
/// already there, and the batch is atomic.
pub async fn ensure_internal_project(ctx: &Context, admin_key: &str) -> Result<(), StoreError> {
    let now = ctx.now();
    let random = ctx.random.as_ref();
    let hash = hash_secret(admin_key);
    ctx.store
        .batch(&[
            Statement::new(
                "INSERT INTO projects (id, display_name, require_publishable_client_key, created_at) \
                 VALUES (?1, 'Stack Dashboard', 0, ?2) ON CONFLICT (id) DO NOTHING",
                vec![INTERNAL_PROJECT_ID.into(), now.into()],
            ),
            Statement::new(
                "INSERT INTO tenancies (id, project_id, branch_id, created_at) VALUES (?1, ?2, 'main', ?3) \
                 ON CONFLICT (project_id, branch_id) DO NOTHING",
                vec![new_uuid(random).into(), INTERNAL_PROJECT_ID.into(), now.into()],
            ),
            Statement::new(
                "INSERT INTO api_key_sets (id, project_id, description, super_secret_admin_key_hash, created_at, expires_at) \
                 SELECT ?1, ?2, 'Internal admin key from configuration', ?3, ?4, ?5 \
                 WHERE NOT EXISTS (SELECT 1 FROM api_key_sets WHERE project_id = ?2 AND super_secret_admin_key_hash = ?3)",
                vec![
                    new_uuid(random).into(),
                    INTERNAL_PROJECT_ID.into(),
                    hash.into(),
                    now.into(),
                    (now + DEFAULT_KEY_LIFETIME_MS).into(),
                ],
            ),
        ])
        .await?;
    Ok(())
}

fn project_statements(ctx: &Context, id: &str, new: &NewProject<'_>, now: i64) -> Vec<Statement> {
    vec![
        Statement::new(
            "INSERT INTO projects (id, display_name, require_publishable_client_key, config_override, created_at) \
             VALUES (?, ?, ?, ?, ?)",
            vec![
                id.into(),
                new.display_name.into(),
                new.require_publishable_client_key.into(),
                new.config_override.to_string().into(),
                now.into(),
            ],
        ),
        Statement::new(
            "INSERT INTO tenancies (id, project_id, branch_id, created_at) VALUES (?, ?, 'main', ?)",
            vec![new_uuid(ctx.random.as_ref()).into(), id.into(), now.into()],
        ),
    ]
}

/// Inserts a key set; only the keys' hashes are stored.
fn key_set_statement(id: &str, project_id: &str, description: &str, keys: &ApiKeys, now: i64) -> Statement {
    Statement::new(
        "INSERT INTO api_key_sets (id, project_id, description, publishable_client_key_hash, secret_server_key_hash, \
         super_secret_admin_key_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            id.into(),
            project_id.into(),
            description.into(),
            hash_secret(&keys.publishable_client_key).into(),
            hash_secret(&keys.secret_server_key).into(),
            hash_secret(&keys.super_secret_admin_key).into(),
            now.into(),
            (now + DEFAULT_KEY_LIFETIME_MS).into(),
        ],
    )
}
