//! Where each level's override lives: the project level in `projects.config_override`, the
//! branch and environment levels in their own tables (one row per project and branch).

use serde_json::{Map, Value};

use super::schema::Level;
use crate::identity::tenancy::Tenancy;
use crate::store::ports::{SqlValue, StoreError};
use crate::Context;

/// The three overrides of a tenancy, and the branch config's source.
pub struct Overrides {
    /// The project-level override.
    pub project: Map<String, Value>,
    /// The branch-level override.
    pub branch: Map<String, Value>,
    /// The environment-level override.
    pub environment: Map<String, Value>,
    /// Where each level came from, as the config endpoints show it.
    pub source: Value,
}

impl Overrides {
    /// The override of `level`.
    pub fn level(&self, level: Level) -> &Map<String, Value> {
        match level {
            Level::Project => &self.project,
            Level::Branch => &self.branch,
            Level::Environment => &self.environment,
        }
    }

    /// The overrides up to and including `level`, lowest first.
    pub fn up_to(&self, level: Level) -> Vec<&Map<String, Value>> {
        match level {
            Level::Project => vec![&self.project],
            Level::Branch => vec![&self.project, &self.branch],
            Level::Environment => vec![&self.project, &self.branch, &self.environment],
        }
    }
}

fn parse(text: Option<String>, what: &str) -> Result<Map<String, Value>, StoreError> {
    match text {
        None => Ok(Map::new()),
        Some(t) => match serde_json::from_str(&t) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(StoreError::Decode(format!("{what} is not a JSON object"))),
        },
    }
}

/// Reads a tenancy's overrides (missing rows are empty overrides; a missing source is
/// `{"type": "unlinked"}`).
pub async fn load(ctx: &Context, tenancy: &Tenancy) -> Result<Overrides, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT p.config_override AS project, b.config AS branch, b.source AS source, e.config AS environment \
             FROM projects p \
             LEFT JOIN branch_config_overrides b ON b.project_id = p.id AND b.branch_id = ?2 \
             LEFT JOIN environment_config_overrides e ON e.project_id = p.id AND e.branch_id = ?2 \
             WHERE p.id = ?1",
            &[SqlValue::from(tenancy.project_id.as_str()), SqlValue::from(tenancy.branch_id.as_str())],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Err(StoreError::Decode(format!("project {} not found", tenancy.project_id)));
    };
    let source = match row.opt_text("source")? {
        Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Decode(e.to_string()))?,
        None => serde_json::json!({ "type": "unlinked" }),
    };
    Ok(Overrides {
        project: parse(row.opt_text("project")?, "the project override")?,
        branch: parse(row.opt_text("branch")?, "the branch override")?,
        environment: parse(row.opt_text("environment")?, "the environment override")?,
        source,
    })
}

/// Replaces one level's override (and, for the branch level, its source when given).
pub async fn save(
    ctx: &Context,
    tenancy: &Tenancy,
    level: Level,
    config: &Map<String, Value>,
    source: Option<&Value>,
) -> Result<(), StoreError> {
    let text = Value::Object(config.clone()).to_string();
    let (project, branch) = (tenancy.project_id.clone(), tenancy.branch_id.clone());
    match level {
        Level::Project => {
            ctx.store
                .execute("UPDATE projects SET config_override = ? WHERE id = ?", vec![text.into(), project.into()])
                .await?;
        }
        Level::Branch => {
            let source = source.map(Value::to_string);
            ctx.store
                .execute(
                    "INSERT INTO branch_config_overrides (project_id, branch_id, config, source, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project_id, branch_id) DO UPDATE SET \
                     config = excluded.config, source = coalesce(excluded.source, branch_config_overrides.source), \
                     updated_at = excluded.updated_at",
                    vec![project.into(), branch.into(), text.into(), source.into(), ctx.now().into()],
                )
                .await?;
        }
        Level::Environment => {
            ctx.store
                .execute(
                    "INSERT INTO environment_config_overrides (project_id, branch_id, config, updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (project_id, branch_id) DO UPDATE SET \
                     config = excluded.config, updated_at = excluded.updated_at",
                    vec![project.into(), branch.into(), text.into(), ctx.now().into()],
                )
                .await?;
        }
    }
    Ok(())
}

/// Sets the branch config's source (`{"type": "unlinked"}` to unlink).
pub async fn save_source(ctx: &Context, tenancy: &Tenancy, source: &Value) -> Result<(), StoreError> {
    ctx.store
        .execute(
            "INSERT INTO branch_config_overrides (project_id, branch_id, config, source, updated_at) \
             VALUES (?1, ?2, '{}', ?3, ?4) ON CONFLICT (project_id, branch_id) DO UPDATE SET \
             source = excluded.source, updated_at = excluded.updated_at",
            vec![
                tenancy.project_id.clone().into(),
                tenancy.branch_id.clone().into(),
                source.to_string().into(),
                ctx.now().into(),
            ],
        )
        .await
        .map(|_| ())
}

/// The tenancy's rendered config (every level merged, up to the environment's).
pub async fn rendered(ctx: &Context, tenancy: &Tenancy) -> Result<Value, StoreError> {
    let overrides = load(ctx, tenancy).await?;
    Ok(super::render(&overrides.up_to(Level::Environment)).config)
}
