//! The one path user SQL takes to the analytics store, for both of its callers (the analytics
//! endpoint and the AI's `queryAnalytics` tool): the scope parameters' names kept for the
//! guard, the guard's scoping to one project and branch, a query id the tenancy owns, the
//! resource limits, the low-privilege client (which fails closed in production), and the
//! message a user may see when the engine refuses. A caller only says how to answer.

use serde_json::{Map, Value};

use crate::analytics::clickhouse::{user_message, user_query};
use crate::analytics::query_guard::{check_param_names, scope};
use crate::context::Context;

/// One user query: SQL with `{name:Type}` placeholders, their values, and its time limit.
pub struct UserQuery<'a> {
    /// The user's SQL.
    pub sql: &'a str,
    /// Its `{name:Type}` parameter values.
    pub params: Map<String, Value>,
    /// How long it may run, in milliseconds.
    pub timeout_ms: i64,
}

/// The rows of a query that ran, and its id (`<project>:<branch>:<uuid>`).
pub struct Answer {
    /// The result rows, as JSON objects.
    pub rows: Vec<Map<String, Value>>,
    /// The query id it ran under (for timing from the query log).
    pub query_id: String,
}

/// Why a query did not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserSqlError {
    /// No analytics store is configured (503).
    #[error("The analytics store is not configured (STACK_CLICKHOUSE_URL).")]
    NotConfigured,
    /// Production without the dedicated low-privilege user (503).
    #[error(transparent)]
    Disabled(#[from] crate::context::UserSqlDisabled),
    /// The guard refused the query, or the engine failed it: the message users may see (400).
    #[error("{0}")]
    Refused(String),
}

/// Runs `query` for the tenancy `(project_id, branch_id)`.
pub async fn run(
    ctx: &Context,
    project_id: &str,
    branch_id: &str,
    query: UserQuery<'_>,
) -> Result<Answer, UserSqlError> {
    let store = ctx.config.clickhouse.as_ref().ok_or(UserSqlError::NotConfigured)?;
    let refused = |e: crate::analytics::query_guard::GuardError| UserSqlError::Refused(e.to_string());
    check_param_names(query.params.keys().map(String::as_str)).map_err(refused)?;
    let scoped = scope(query.sql).map_err(refused)?;
    let client = store.limited_client(ctx.config.environment)?;
    let query_id = format!("{project_id}:{branch_id}:{}", crate::identity::crypto::new_uuid(ctx.random.as_ref()));
    let request = user_query(scoped, project_id, branch_id, &query_id, query.timeout_ms, query.params);
    match client.rows(ctx.http.as_ref(), &request).await {
        Ok(rows) => Ok(Answer { rows, query_id }),
        Err(e) => Err(UserSqlError::Refused(user_message(&e, ctx.config.shows_internal_errors()))),
    }
}
