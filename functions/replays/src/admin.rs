//! The admin endpoints of session replays (docs/api.md §3.3-§3.7): list with filters and
//! keyset paging, one replay by id, a replay's chunks, one chunk's events, and all of a
//! replay's events. Admin access only.

use std::io::Read;

use serde_json::{json, Value};

use shared::analytics::clickhouse::Query;
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::{json, page_of, query_param, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, ADMIN_ONLY};
use shared::identity::tenancy::Tenancy;
use shared::store::keyset::{Keyset, Order};
use shared::store::ports::{SqlRow, SqlValue};
use shared::Context;

const LIST_DEFAULT: i64 = 50;
const LIST_MAX: i64 = 200;
const CHUNKS_DEFAULT: i64 = 100;
const CHUNKS_MAX: i64 = 500;
/// Chunks whose events one `GET .../events` inflates: `limit` defaults to this and cannot
/// exceed it (upstream inflates every chunk when no limit is given).
const EVENT_CHUNKS_DEFAULT: usize = 20;
const EVENT_CHUNKS_MAX: usize = 100;
/// At most this many replays qualify through the click-count filter.
const CLICK_FILTER_CAP: i64 = 1000;

/// A replay as lists and reads show it.
const REPLAY_SELECT: &str = "SELECT r.id, r.user_id, u.display_name, u.primary_email, r.started_at, r.last_event_at, \
     (SELECT count(*) FROM session_replay_chunks c WHERE c.tenancy_id = r.tenancy_id AND c.session_replay_id = r.id) \
       AS chunk_count, \
     (SELECT coalesce(sum(c.event_count), 0) FROM session_replay_chunks c WHERE c.tenancy_id = r.tenancy_id \
       AND c.session_replay_id = r.id) AS event_count \
     FROM session_replays r LEFT JOIN users u ON u.tenancy_id = r.tenancy_id AND u.id = r.user_id \
     WHERE r.tenancy_id = ?";

fn replay_json(row: &SqlRow) -> ApiResult<Value> {
    let text = |k: &str| row.text(k).map_err(ApiError::from);
    let opt = |k: &str| row.opt_text(k).map_err(ApiError::from);
    let int = |k: &str| row.int(k).map_err(ApiError::from);
    Ok(json!({
        "id": text("id")?,
        "project_user": { "id": text("user_id")?, "display_name": opt("display_name")?, "primary_email": opt("primary_email")? },
        "started_at_millis": int("started_at")?,
        "last_event_at_millis": int("last_event_at")?,
        "chunk_count": int("chunk_count")?,
        "event_count": int("event_count")?,
    }))
}

async fn admin(ctx: &Context, req: &Request) -> ApiResult<Tenancy> {
    Ok(authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?.tenancy)
}

fn bad_request(message: String) -> ApiError {
    ApiError::status(400, message)
}

/// A page size: a number clamped to `1..=max`, anything else the default.
fn limit(req: &Request, default: i64, max: i64) -> i64 {
    query_param(req, "limit").and_then(|l| l.trim().parse::<i64>().ok()).unwrap_or(default).clamp(1, max)
}

fn non_negative_integer(req: &Request, name: &str) -> ApiResult<Option<i64>> {
    match query_param(req, name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(bad_request(format!("{name} must be a non-negative integer"))),
        },
    }
}

fn timestamp(req: &Request, name: &str) -> ApiResult<Option<f64>> {
    match query_param(req, name) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
            _ => Err(bad_request(format!("{name} must be a non-negative timestamp in milliseconds"))),
        },
    }
}

fn uuid_list(req: &Request, name: &str) -> ApiResult<Vec<String>> {
    let Some(csv) = query_param(req, name) else { return Ok(Vec::new()) };
    let ids: Vec<String> = csv.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
    if ids.iter().any(|id| !shared::identity::crypto::is_uuid(id)) {
        return Err(bad_request(format!("{name} must contain valid UUID values")));
    }
    Ok(ids)
}

/// `GET /internal/session-replays`.
pub async fn list(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    let limit = limit(req, LIST_DEFAULT, LIST_MAX);
    let user_ids = uuid_list(req, "user_ids")?;
    let team_ids = uuid_list(req, "team_ids")?;
    let duration_min = non_negative_integer(req, "duration_ms_min")?;
    let duration_max = non_negative_integer(req, "duration_ms_max")?;
    let clicks_min = non_negative_integer(req, "click_count_min")?.unwrap_or(0);
    let from = timestamp(req, "last_event_at_from_millis")?;
    let to = timestamp(req, "last_event_at_to_millis")?;
    if let (Some(min), Some(max)) = (duration_min, duration_max) {
        if min > max {
            return Err(bad_request("duration_ms_min must be less than or equal to duration_ms_max".into()));
        }
    }
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(bad_request(
                "last_event_at_from_millis must be less than or equal to last_event_at_to_millis".into(),
            ));
        }
    }
    let empty = || Ok(json(&json!({ "items": [], "pagination": { "next_cursor": null } })));
    // Team memberships are not part of this system yet: no replay belongs to a listed team.
    if !team_ids.is_empty() {
        return empty();
    }

    let mut sql = REPLAY_SELECT.to_string();
    let mut params: Vec<SqlValue> = vec![tenancy.id.clone().into()];
    let mut any_of = |sql: &mut String, column: &str, values: Vec<String>| {
        let marks = vec!["?"; values.len()].join(", ");
        sql.push_str(&format!(" AND {column} IN ({marks})"));
        params.extend(values.into_iter().map(SqlValue::from));
    };
    if !user_ids.is_empty() {
        any_of(&mut sql, "r.user_id", user_ids);
    }
    if clicks_min > 0 {
        let ids = replays_with_clicks(ctx, &tenancy, clicks_min).await?;
        if ids.is_empty() {
            return empty();
        }
        any_of(&mut sql, "r.id", ids);
    }
    let mut bound = |sql: &mut String, condition: &str, value: SqlValue| {
        sql.push_str(condition);
        params.push(value);
    };
    if let Some(from) = from {
        bound(&mut sql, " AND r.last_event_at >= ?", (from.ceil() as i64).into());
    }
    if let Some(to) = to {
        bound(&mut sql, " AND r.last_event_at <= ?", (to.floor() as i64).into());
    }
    if let Some(min) = duration_min {
        bound(&mut sql, " AND r.last_event_at - r.started_at >= ?", min.into());
    }
    if let Some(max) = duration_max {
        bound(&mut sql, " AND r.last_event_at - r.started_at <= ?", max.into());
    }
    let after = match query_param(req, "cursor") {
        Some(cursor) => {
            let pivot_sql = "SELECT last_event_at AS pivot FROM session_replays WHERE tenancy_id = ? AND id = ?";
            let params = [tenancy.id.clone().into(), cursor.clone().into()];
            Some((cursor_pivot(ctx, pivot_sql, &params, &cursor).await?, cursor))
        }
        None => None,
    };
    REPLAYS_ORDER.append(&mut sql, &mut params, after, limit);
    let rows = ctx.store.query(&sql, &params).await?;
    page(&rows, limit as usize, replay_json)
}

/// Replays: the latest first.
const REPLAYS_ORDER: Keyset =
    Keyset { sort: "r.last_event_at", sort_order: Order::Descending, id: "r.id", id_order: Order::Descending };
/// A replay's chunks: the first event first.
const CHUNKS_ORDER: Keyset =
    Keyset { sort: "first_event_at", sort_order: Order::Ascending, id: "id", id_order: Order::Ascending };

/// One page of `rows` (fetched `limit + 1` to know whether more exist).
fn page(rows: &[SqlRow], limit: usize, item: fn(&SqlRow) -> ApiResult<Value>) -> ApiResult<Response> {
    let (items, next_cursor) = page_of(rows, limit, item)?;
    Ok(json(&json!({ "items": items, "pagination": { "next_cursor": next_cursor } })))
}

/// The sort key of the row a cursor names (`pivot_sql` selects it as `pivot`); a cursor that
/// names no row of the list is not found.
async fn cursor_pivot(ctx: &Context, pivot_sql: &str, params: &[SqlValue], cursor: &str) -> ApiResult<i64> {
    Keyset::pivot(ctx.store.as_ref(), pivot_sql, params).await?.ok_or_else(|| KnownError::item_not_found(cursor).into())
}

/// Replays of the tenancy with at least `min` `$click` events in the analytics store.
async fn replays_with_clicks(ctx: &Context, tenancy: &Tenancy, min: i64) -> ApiResult<Vec<String>> {
    let Some(store) = &ctx.config.clickhouse else {
        return Err(ApiError::status(503, "The click-count filter needs the analytics store (STACK_CLICKHOUSE_URL)."));
    };
    let query = Query::new(
        "SELECT assumeNotNull(session_replay_id) AS id FROM analytics_internal.events \
         WHERE project_id = {project_id:String} AND branch_id = {branch_id:String} AND event_type = '$click' \
         AND session_replay_id IS NOT NULL GROUP BY id HAVING count() >= {min:UInt64} LIMIT {cap:UInt64}",
    )
    .param("project_id", tenancy.project_id.as_str())
    .param("branch_id", tenancy.branch_id.as_str())
    .param("min", min)
    .param("cap", CLICK_FILTER_CAP);
    let rows = store
        .admin_client()
        .rows(ctx.http.as_ref(), &query)
        .await
        .map_err(|e| ApiError::internal(format!("click-count filter: {e}")))?;
    Ok(rows.iter().filter_map(|r| r.get("id").and_then(Value::as_str)).map(str::to_string).collect())
}

/// `GET /internal/session-replays/{id}`.
pub async fn get(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    let rows =
        ctx.store.query(&format!("{REPLAY_SELECT} AND r.id = ?"), &[tenancy.id.clone().into(), id.into()]).await?;
    let row = rows.first().ok_or_else(|| ApiError::from(KnownError::item_not_found(id)))?;
    Ok(json(&replay_json(row)?))
}

async fn require_replay(ctx: &Context, tenancy: &Tenancy, id: &str) -> ApiResult<()> {
    let rows = ctx
        .store
        .query(
            "SELECT id FROM session_replays WHERE tenancy_id = ? AND id = ?",
            &[tenancy.id.clone().into(), id.into()],
        )
        .await?;
    if rows.is_empty() {
        return Err(KnownError::item_not_found(id).into());
    }
    Ok(())
}

const CHUNK_COLUMNS: &str = "id, batch_id, session_replay_segment_id, browser_session_id, blob_key, event_count, \
     byte_length, first_event_at, last_event_at, created_at";

fn chunk_json(row: &SqlRow) -> ApiResult<Value> {
    let text = |k: &str| row.text(k).map_err(ApiError::from);
    let int = |k: &str| row.int(k).map_err(ApiError::from);
    Ok(json!({
        "id": text("id")?,
        "batch_id": text("batch_id")?,
        "session_replay_segment_id": text("session_replay_segment_id")?,
        "browser_session_id": text("browser_session_id")?,
        "event_count": int("event_count")?,
        "byte_length": int("byte_length")?,
        "first_event_at_millis": int("first_event_at")?,
        "last_event_at_millis": int("last_event_at")?,
        "created_at_millis": int("created_at")?,
    }))
}

/// `GET /internal/session-replays/{id}/chunks`: first event first, keyset paging by chunk id.
pub async fn chunks(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    require_replay(ctx, &tenancy, id).await?;
    let limit = limit(req, CHUNKS_DEFAULT, CHUNKS_MAX);
    let mut sql =
        format!("SELECT {CHUNK_COLUMNS} FROM session_replay_chunks WHERE tenancy_id = ? AND session_replay_id = ?");
    let mut params: Vec<SqlValue> = vec![tenancy.id.clone().into(), id.into()];
    let after = match query_param(req, "cursor") {
        // The cursor must be a chunk of this replay.
        Some(cursor) => {
            let pivot_sql = "SELECT first_event_at AS pivot FROM session_replay_chunks \
                             WHERE tenancy_id = ? AND session_replay_id = ? AND id = ?";
            let params = [tenancy.id.clone().into(), id.into(), cursor.clone().into()];
            Some((cursor_pivot(ctx, pivot_sql, &params, &cursor).await?, cursor))
        }
        None => None,
    };
    CHUNKS_ORDER.append(&mut sql, &mut params, after, limit);
    let rows = ctx.store.query(&sql, &params).await?;
    page(&rows, limit as usize, chunk_json)
}

/// A chunk's events from the blob store, checked against the replay they should belong to.
async fn read_events(ctx: &Context, replay_id: &str, chunk_id: &str, key: &str) -> ApiResult<Value> {
    let bytes = ctx
        .blobs
        .get(key)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::from(KnownError::item_not_found(chunk_id)))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| ApiError::internal(format!("chunk {chunk_id} is not gzipped JSON: {e}")))?;
    let object: Value =
        serde_json::from_str(&text).map_err(|e| ApiError::internal(format!("chunk {chunk_id} is not JSON: {e}")))?;
    match (object.get("session_replay_id").and_then(Value::as_str), object.get("events")) {
        (Some(owner), Some(events @ Value::Array(_))) if owner == replay_id => Ok(events.clone()),
        _ => Err(ApiError::internal(format!("chunk {chunk_id} does not hold events of replay {replay_id}"))),
    }
}

/// `GET /internal/session-replays/{id}/chunks/{chunk_id}/events`.
pub async fn chunk_events(ctx: &Context, req: &Request, id: &str, chunk_id: &str) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    let rows = ctx
        .store
        .query(
            "SELECT blob_key FROM session_replay_chunks WHERE tenancy_id = ? AND session_replay_id = ? AND id = ?",
            &[tenancy.id.clone().into(), id.into(), chunk_id.into()],
        )
        .await?;
    let row = rows.first().ok_or_else(|| ApiError::from(KnownError::item_not_found(chunk_id)))?;
    let events = read_events(ctx, id, chunk_id, &row.text("blob_key")?).await?;
    Ok(json(&json!({ "events": events })))
}

/// `GET /internal/session-replays/{id}/events`: every chunk's metadata, and the events of the
/// chunks `[offset, offset + limit)`, at most [`EVENT_CHUNKS_MAX`] of them.
pub async fn events(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    require_replay(ctx, &tenancy, id).await?;
    let rows = ctx
        .store
        .query(
            &format!(
                "SELECT {CHUNK_COLUMNS} FROM session_replay_chunks WHERE tenancy_id = ? AND session_replay_id = ? \
                 ORDER BY first_event_at ASC, id ASC"
            ),
            &[tenancy.id.clone().into(), id.into()],
        )
        .await?;
    let offset = query_param(req, "offset").and_then(|o| o.trim().parse::<usize>().ok()).unwrap_or(0);
    let count = query_param(req, "limit")
        .and_then(|l| l.trim().parse::<usize>().ok())
        .filter(|l| *l >= 1)
        .unwrap_or(EVENT_CHUNKS_DEFAULT)
        .min(EVENT_CHUNKS_MAX);
    let mut chunks = Vec::new();
    for row in &rows {
        let mut chunk = chunk_json(row)?;
        chunk.as_object_mut().expect("object").remove("browser_session_id");
        chunks.push(chunk);
    }
    let mut chunk_events = Vec::new();
    for row in rows.iter().skip(offset).take(count) {
        let chunk_id = row.text("id")?;
        let events = read_events(ctx, id, &chunk_id, &row.text("blob_key")?).await?;
        chunk_events.push(json!({ "chunk_id": chunk_id, "events": events }));
    }
    Ok(json(&json!({ "chunks": chunks, "chunk_events": chunk_events })))
}
