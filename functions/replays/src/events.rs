//! `POST /api/v1/analytics/events/batch` (docs/api.md §3.8): a browser's batch of analytics
//! events (`$page-view`, `$click`) for the user of its access token, written into the
//! analytics store's `events` table after the response.
//!
//! The key decisions: the server decides what it stores — only the event types a client may
//! send, `is_anonymous` from the authenticated user (never from the client's data), and event
//! times moved onto the server's clock (the client's offset, from `sent_at_ms`, is removed, and
//! the result bounded to the last day up to now). A batch id is taken once per tenancy (a row
//! in the primary store), so a retried batch is answered `deduped` and counted once.

use serde_json::{json, Map, Value};

use shared::analytics::events::{event_time, write_in_background};
use shared::config::{render, schema::Level, store};
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::parse_body;
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, ANY_ACCESS};
use shared::identity::projects::config_flag;
use shared::Context;

use crate::batch::is_client_uuid;

/// The raw body may be at most this large.
pub const MAX_BODY_BYTES: usize = 1_000_000;
/// The most events one batch may carry.
pub const MAX_EVENTS: usize = 1_000;
/// The event types a client may send.
pub const CLIENT_EVENT_TYPES: &[&str] = &["$page-view", "$click"];
/// How far back (server time) an event may be dated; older ones are dated this far back.
pub const MAX_EVENT_AGE_MS: i64 = 24 * 3_600_000;

/// One checked event.
struct Event {
    event_type: &'static str,
    event_at_ms: i64,
    data: Map<String, Value>,
}

struct Batch {
    segment_id: Option<String>,
    batch_id: String,
    sent_at_ms: i64,
    events: Vec<Event>,
}

/// Checks the body; the first problem is a 400 with what is wrong.
fn validate(body: &Value) -> Result<Batch, String> {
    let obj = body.as_object().ok_or("The body must be a JSON object")?;
    let uuid = |key: &str| match obj.get(key) {
        Some(Value::String(id)) if is_client_uuid(id) => Ok(Some(id.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(format!("Invalid {key}")),
    };
    let segment_id = uuid("session_replay_segment_id")?;
    let batch_id = uuid("batch_id")?.ok_or("body.batch_id must be defined")?;
    let millis = |value: Option<&Value>, what: &str| {
        value.and_then(Value::as_i64).filter(|ms| *ms >= 0).ok_or(format!("{what} must be a non-negative integer"))
    };
    let sent_at_ms = millis(obj.get("sent_at_ms"), "body.sent_at_ms")?;
    let events = obj.get("events").and_then(Value::as_array).ok_or("body.events must be an array")?;
    if events.is_empty() {
        return Err("events must not be empty".into());
    }
    if events.len() > MAX_EVENTS {
        return Err(format!("Too many events (max {MAX_EVENTS})"));
    }
    let events = events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let event_type = event["event_type"].as_str().unwrap_or_default();
            let event_type = CLIENT_EVENT_TYPES.iter().find(|t| **t == event_type).ok_or_else(|| {
                format!("body.events[{i}].event_type must be one of {}", CLIENT_EVENT_TYPES.join(", "))
            })?;
            let event_at_ms = millis(event.get("event_at_ms"), &format!("body.events[{i}].event_at_ms"))?;
            let data = match event.get("data") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(data)) => data.clone(),
                Some(_) => return Err(format!("body.events[{i}].data must be an object")),
            };
            Ok(Event { event_type, event_at_ms, data })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Batch { segment_id, batch_id, sent_at_ms, events })
}

/// An event's time on the server's clock: the client's offset removed, then bounded to
/// `[now - MAX_EVENT_AGE_MS, now]`.
fn server_time(event_at_ms: i64, sent_at_ms: i64, now: i64) -> i64 {
    event_at_ms.saturating_add(now.saturating_sub(sent_at_ms)).clamp(now - MAX_EVENT_AGE_MS, now)
}

pub async fn upload(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    // The size first: nothing parses a body that is too large.
    if req.body().len() > MAX_BODY_BYTES {
        return Err(ApiError::status(413, format!("Request body too large (max {MAX_BODY_BYTES} bytes)")));
    }
    let body = parse_body(req)?.unwrap_or(Value::Null);
    let batch = validate(&body).map_err(|problem| ApiError::status(400, problem))?;
    let tenancy = &auth.tenancy;
    let overrides = store::load(ctx, tenancy).await?;
    if !config_flag(&render(&overrides.up_to(Level::Environment)).config, "apps.installed.analytics.enabled") {
        return Err(KnownError::analytics_not_enabled().into());
    }
    let user = auth.user.as_ref().ok_or_else(KnownError::user_authentication_required)?;

    let now = ctx.now();
    let taken = ctx
        .store
        .execute(
            "INSERT INTO analytics_event_batches (tenancy_id, batch_id, event_count, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenancy_id, batch_id) DO NOTHING",
            vec![
                tenancy.id.clone().into(),
                batch.batch_id.clone().into(),
                (batch.events.len() as i64).into(),
                now.into(),
            ],
        )
        .await?;
    if taken == 0 {
        return Ok(json(&json!({ "batch_id": batch.batch_id, "deduped": true, "inserted": 0 })));
    }
    let rows: Vec<Value> = batch
        .events
        .into_iter()
        .map(|event| {
            let mut data = event.data;
            data.insert("is_anonymous".into(), user.is_anonymous.into());
            json!({
                "event_type": event.event_type,
                "event_at": event_time(server_time(event.event_at_ms, batch.sent_at_ms, now)),
                "data": data,
                "project_id": tenancy.project_id,
                "branch_id": tenancy.branch_id,
                "user_id": user.user_id,
                "team_id": null,
                "refresh_token_id": user.refresh_token_id,
                "session_replay_id": null,
                "session_replay_segment_id": batch.segment_id,
            })
        })
        .collect();
    let inserted = rows.len();
    write_in_background(ctx, rows, "a client batch's");
    Ok(json(&json!({ "batch_id": batch.batch_id, "deduped": false, "inserted": inserted })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_move_onto_the_server_clock_and_stay_within_a_day() {
        let now = 1_800_000_000_000;
        // The client's clock is an hour behind: its event 10 s before sending happened 10 s ago.
        assert_eq!(server_time(now - 3_600_000 - 10_000, now - 3_600_000, now), now - 10_000);
        // Never in the future, never more than a day back.
        assert_eq!(server_time(now + 60_000, now, now), now);
        assert_eq!(server_time(0, now, now), now - MAX_EVENT_AGE_MS);
        assert_eq!(server_time(i64::MAX, 0, now), now);
    }

    #[test]
    fn only_client_event_types_with_their_fields_pass() {
        let id = "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f";
        let ok = json!({ "batch_id": id, "sent_at_ms": 1, "events": [{ "event_type": "$click", "event_at_ms": 1 }] });
        assert!(validate(&ok).is_ok());
        for (body, problem) in [
            (json!({ "sent_at_ms": 1, "events": [] }), "batch_id must be defined"),
            (json!({ "batch_id": "x", "sent_at_ms": 1, "events": [] }), "Invalid batch_id"),
            (json!({ "batch_id": id, "events": [] }), "sent_at_ms must be"),
            (json!({ "batch_id": id, "sent_at_ms": 1, "events": [] }), "must not be empty"),
            (
                json!({ "batch_id": id, "sent_at_ms": 1, "events": [{ "event_type": "$token-refresh", "event_at_ms": 1 }] }),
                "event_type must be one of",
            ),
            (
                json!({ "batch_id": id, "sent_at_ms": 1, "events": [{ "event_type": "$click", "event_at_ms": -1 }] }),
                "event_at_ms must be",
            ),
            (
                json!({ "batch_id": id, "sent_at_ms": 1, "events": [{ "event_type": "$click", "event_at_ms": 1, "data": 3 }] }),
                "data must be an object",
            ),
        ] {
            let error = validate(&body).err().unwrap_or_default();
            assert!(error.contains(problem), "{body}: {error}");
        }
    }
}
