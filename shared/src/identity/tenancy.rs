//! A tenancy (a project and one of its branches: what every request acts on) and the one
//! lookups (a project with a branch, used by request authentication and the OAuth clients; a
//! tenancy by id, used by the email queue).

use crate::context::Context;
use crate::store::ports::{SqlValue, StoreError};

/// The project and branch a request acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenancy {
    /// The tenancy id.
    pub id: String,
    /// Its project.
    pub project_id: String,
    /// Its branch.
    pub branch_id: String,
}

/// A project, read together with one of its branches.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectBranch {
    /// Whether the project requires a publishable client key.
    pub require_publishable_client_key: bool,
    /// The branch's tenancy; `None` when the project has no such branch.
    pub tenancy: Option<Tenancy>,
}

/// The project `project_id` and its branch `branch_id` in one read; `None` when there is no
/// such project.
pub async fn project_branch(
    ctx: &Context,
    project_id: &str,
    branch_id: &str,
) -> Result<Option<ProjectBranch>, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT p.require_publishable_client_key AS require_key, t.id AS tenancy_id \
             FROM projects p LEFT JOIN tenancies t ON t.project_id = p.id AND t.branch_id = ? WHERE p.id = ?",
            &[SqlValue::from(branch_id), SqlValue::from(project_id)],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let tenancy = row.opt_text("tenancy_id")?.map(|id| Tenancy {
        id,
        project_id: project_id.to_string(),
        branch_id: branch_id.to_string(),
    });
    Ok(Some(ProjectBranch { require_publishable_client_key: row.bool("require_key")?, tenancy }))
}

/// The tenancy `tenancy_id` and its project's display name; `None` when it no longer exists.
pub async fn tenancy_by_id(ctx: &Context, tenancy_id: &str) -> Result<Option<(Tenancy, String)>, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT t.project_id, t.branch_id, p.display_name FROM tenancies t JOIN projects p ON p.id = t.project_id \
             WHERE t.id = ?",
            &[SqlValue::from(tenancy_id)],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let tenancy =
        Tenancy { id: tenancy_id.to_string(), project_id: row.text("project_id")?, branch_id: row.text("branch_id")? };
    Ok(Some((tenancy, row.text("display_name")?)))
}
