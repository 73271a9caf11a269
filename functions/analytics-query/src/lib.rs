//! The analytics function (contract part 2, §1.1): `POST /api/v1/internal/analytics/query`
//! runs an admin's SQL on the analytics store, after the query guard has checked it and scoped
//! every table to the caller's project and branch. On a real server the `SQL_project_id` /
//! `SQL_branch_id` settings also drive row policies: two independent locks.

#[cfg(feature = "cloudflare")]
shared::cloudflare_fetch!(crate::handle);
#[cfg(any(feature = "spin-wasi", feature = "spin"))]
shared::spin_http!(crate::handle);

use serde_json::{json, Value};

use shared::auth::{authenticate, AuthRule, ADMIN_ONLY};
use shared::clickhouse::{user_message, Query};
use shared::error::{ApiError, ApiResult, KnownError};
use shared::http::{canonicalize, json, Request, Response};
use shared::query_guard::{check_param_names, scope, BRANCH_PARAM, PROJECT_PARAM};
use shared::validate::{parse_body, Validator};
use shared::Context;

const QUERY_PATH: &str = "/api/v1/internal/analytics/query";
const DEFAULT_TIMEOUT_MS: i64 = 10_000;

/// Whether this function serves `path`.
pub fn serves(path: &str) -> bool {
    canonicalize(path) == QUERY_PATH
}

/// Handles one request.
pub async fn handle(req: Request, ctx: &Context) -> Response {
    let show_internal = ctx.config.shows_internal_errors();
    let result = match *req.method() {
        http::Method::POST => query(ctx, &req).await,
        _ => Err(ApiError::status(405, "Method not allowed")),
    };
    result.unwrap_or_else(|e| e.into_response(show_internal))
}

async fn query(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["query", "params", "timeout_ms", "include_all_branches"]);
    let sql = v.string(obj, "query", "body.query", true);
    if sql.as_deref().is_some_and(|q| q.trim().is_empty()) {
        v.fail("body.query must not be empty".into());
    }
    let params = match obj.and_then(|o| o.get("params")) {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            v.fail(format!("body.params must be a `object` type, but the final value was: `{other}`."));
            serde_json::Map::new()
        }
    };
    let timeout_ms = v.integer(obj, "timeout_ms", "body.timeout_ms", 1000, 120_000).unwrap_or(DEFAULT_TIMEOUT_MS);
    let all_branches = v.boolean(obj, "include_all_branches", "body.include_all_branches").unwrap_or(false);
    v.finish()?;
    if all_branches {
        // Upstream fails with an internal assertion here; refusing clearly is the honest answer.
        return Err(ApiError::status(400, "include_all_branches is not supported"));
    }
    let Some(store) = &ctx.config.clickhouse else {
        return Err(ApiError::status(503, "The analytics store is not configured (STACK_CLICKHOUSE_URL)."));
    };

    let analytics_error = |message: String| ApiError::from(KnownError::analytics_query_error(&message));
    check_param_names(params.keys().map(String::as_str)).map_err(|e| analytics_error(e.to_string()))?;
    let scoped = scope(sql.as_deref().expect("validated")).map_err(|e| analytics_error(e.to_string()))?;

    let tenancy = &auth.tenancy;
    let query_id =
        format!("{}:{}:{}", tenancy.project_id, tenancy.branch_id, shared::crypto::new_uuid(ctx.random.as_ref()));
    let mut query = Query::new(scoped)
        .query_id(query_id.clone())
        .param(PROJECT_PARAM, tenancy.project_id.as_str())
        .param(BRANCH_PARAM, tenancy.branch_id.as_str())
        .setting("SQL_project_id", &tenancy.project_id)
        .setting("SQL_branch_id", &tenancy.branch_id)
        .setting("max_execution_time", timeout_ms as f64 / 1000.0)
        .setting("readonly", 1)
        .setting("allow_ddl", 0)
        .setting("max_result_rows", 10_000)
        .setting("max_result_bytes", 10_485_760)
        .setting("result_overflow_mode", "throw");
    for (name, value) in params {
        query = query.param(&name, value);
    }
    match store.limited_client().rows(ctx.http.as_ref(), &query).await {
        Ok(rows) => Ok(json(&json!({ "result": rows, "query_id": query_id }))),
        Err(e) => Err(analytics_error(user_message(&e, ctx.config.shows_internal_errors()))),
    }
}
