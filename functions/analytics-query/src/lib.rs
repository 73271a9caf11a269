//! The analytics function (docs/api.md §6.1-§6.2): `POST /api/v1/internal/analytics/query`
//! runs an admin's SQL on the analytics store, after the query guard has checked it and scoped
//! every table to the caller's project and branch. On a real server the `SQL_project_id` /
//! `SQL_branch_id` settings also drive row policies: two independent locks.
//! `POST .../query/timing` reports a finished query's CPU and wall-clock time from the
//! engine's query log.

shared::function_entries!(crate::FUNCTION);

use serde_json::{json, Value};

use shared::analytics::clickhouse::Query;
use shared::analytics::user_sql::{self, UserQuery, UserSqlError};
use shared::function::{Function, Route};
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, ADMIN_ONLY, SERVER_OR_ADMIN};
use shared::Context;

const DEFAULT_TIMEOUT_MS: i64 = 10_000;

/// The analytics function: an admin's SQL, and a finished query's timing.
pub const FUNCTION: Function = Function {
    name: "analytics-query",
    routes: &[
        Route::at("/api/v1/internal/analytics/query").post(|c| Box::pin(query(c.ctx, c.req))),
        Route::at("/api/v1/internal/analytics/query/timing").post(|c| Box::pin(timing(c.ctx, c.req))),
    ],
    crons: &[SYNC_CRON],
    scheduled: Some(|_cron, ctx| Box::pin(shared::analytics::sync::scheduled(ctx))),
    health: Some(|ctx| Box::pin(async { shared::analytics::sync::health(ctx).await.map(|h| ("analytics_sync", h)) })),
};

/// The analytics sync's cron (docs/api.md §6.6): every minute, the shortest a Worker cron runs.
pub const SYNC_CRON: &str = "* * * * *";

fn analytics_store(ctx: &Context) -> ApiResult<&shared::context::ClickHouseConfig> {
    ctx.config.clickhouse.as_ref().ok_or_else(|| ApiError::status(503, UserSqlError::NotConfigured.to_string()))
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
    let query = UserQuery { sql: sql.as_deref().expect("validated"), params, timeout_ms };
    let tenancy = &auth.tenancy;
    match user_sql::run(ctx, &tenancy.project_id, &tenancy.branch_id, query).await {
        Ok(answer) => Ok(json(&json!({ "result": answer.rows, "query_id": answer.query_id }))),
        Err(UserSqlError::Refused(message)) => Err(KnownError::analytics_query_error(&message).into()),
        Err(unavailable) => Err(ApiError::status(503, unavailable.to_string())),
    }
}

/// The query log's row for a finished query: CPU time (user + system, summed over the query's
/// threads) and wall-clock time (start to finish), in milliseconds.
const TIMING_SQL: &str = "SELECT \
    (ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds']) / 1000 AS cpu_time, \
    (toUnixTimestamp64Micro(event_time_microseconds) - toUnixTimestamp64Micro(query_start_time_microseconds)) / 1000 \
        AS wall_clock_time \
    FROM system.query_log \
    WHERE log_comment = {query_id:String} AND type = 'QueryFinish' \
    ORDER BY event_time_microseconds DESC LIMIT 1";

async fn timing(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["query_id"]);
    let query_id = v.string(obj, "query_id", "body.query_id", true);
    if query_id.as_deref().is_some_and(str::is_empty) {
        v.fail("body.query_id must not be empty".into());
    }
    v.finish()?;
    let query_id = query_id.expect("validated");
    // Another tenancy's query ids are simply not found: the id's prefix says whose it is.
    let prefix = format!("{}:{}:", auth.tenancy.project_id, auth.tenancy.branch_id);
    if !query_id.starts_with(&prefix) {
        return Err(KnownError::item_not_found(&query_id).into());
    }
    let admin = analytics_store(ctx)?.admin_client();
    let lookup = Query::new(TIMING_SQL).param("query_id", query_id.as_str());
    let log_error =
        |e: shared::analytics::clickhouse::ClickHouseError| ApiError::internal(format!("query log lookup: {e}"));
    let rows = match admin.rows(ctx.http.as_ref(), &lookup).await {
        Ok(rows) if !rows.is_empty() => rows,
        // The log is flushed periodically (and the table created at the first flush): a query
        // that just finished may still be in memory. One flush is cheaper and surer than
        // polling for seconds as upstream does.
        _ => {
            admin.execute(ctx.http.as_ref(), &Query::new("SYSTEM FLUSH LOGS query_log")).await.map_err(log_error)?;
            admin.rows(ctx.http.as_ref(), &lookup).await.map_err(log_error)?
        }
    };
    let Some(row) = rows.into_iter().next() else {
        return Err(KnownError::item_not_found(&query_id).into());
    };
    Ok(json(&json!({ "stats": { "cpu_time": row["cpu_time"], "wall_clock_time": row["wall_clock_time"] } })))
}
