//! `POST /api/v1/session-replays/batch` (docs/api.md §3.2): a browser's batch of recorded
//! events. Batches under one refresh token join the same replay while they keep coming (3
//! minutes idle at most, 12 hours in all, by server time); each batch becomes one chunk, its
//! events stored gzipped in the blob store. Re-sending a batch id is answered `deduped`.

use std::io::Write;

use serde_json::{json, Value};

use shared::config::{render, schema::Level, store};
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, ANY_ACCESS};
use shared::identity::projects::config_flag;
use shared::store::ports::{BlobError, SqlValue, Statement};
use shared::Context;

/// The raw body may be at most this large.
pub const MAX_BODY_BYTES: usize = 1_000_000;
pub const MAX_EVENTS: usize = 5_000;
/// A replay takes new batches while its last one is this recent...
pub const IDLE_TIMEOUT_MS: i64 = 3 * 60_000;
/// ...and for at most this long after it began (server time).
pub const MAX_REPLAY_MS: i64 = 12 * 3_600_000;

/// The client ids: UUID-shaped (version 1-8, variant 8/9/a/b, any case).
pub fn is_client_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => (b'1'..=b'8').contains(c),
            19 => matches!(c.to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_hexdigit(),
        })
}

struct Batch {
    browser_session_id: String,
    segment_id: String,
    batch_id: String,
    started_at_ms: i64,
    sent_at_ms: i64,
    events: Vec<Value>,
}

fn validate(req: &Request) -> ApiResult<Batch> {
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let fields =
        ["browser_session_id", "session_replay_segment_id", "batch_id", "started_at_ms", "sent_at_ms", "events"];
    let obj = v.body_object(&body, &fields);
    let id = |v: &mut Validator, key: &str| {
        let value = v.string(obj, key, &format!("body.{key}"), true)?;
        if is_client_uuid(&value) {
            Some(value)
        } else {
            v.fail(format!("Invalid {key}"));
            None
        }
    };
    let browser_session_id = id(&mut v, "browser_session_id");
    let segment_id = id(&mut v, "session_replay_segment_id");
    let batch_id = id(&mut v, "batch_id");
    let millis = |v: &mut Validator, key: &str| {
        let path = format!("body.{key}");
        if obj.is_some_and(|o| o.get(key).is_none_or(Value::is_null)) {
            v.fail(format!("{path} must be defined"));
            return None;
        }
        v.integer(obj, key, &path, 0, i64::MAX)
    };
    let started_at_ms = millis(&mut v, "started_at_ms");
    let sent_at_ms = millis(&mut v, "sent_at_ms");
    let events = match obj.and_then(|o| o.get("events")) {
        Some(Value::Array(events)) => Some(events.clone()),
        None | Some(Value::Null) => {
            if obj.is_some() {
                v.fail("body.events must be defined".into());
            }
            None
        }
        Some(other) => {
            v.fail(format!("body.events must be a `array` type, but the final value was: `{other}`."));
            None
        }
    };
    v.finish()?;
    Ok(Batch {
        browser_session_id: browser_session_id.expect("validated"),
        segment_id: segment_id.expect("validated"),
        batch_id: batch_id.expect("validated"),
        started_at_ms: started_at_ms.expect("validated"),
        sent_at_ms: sent_at_ms.expect("validated"),
        events: events.expect("validated"),
    })
}

/// The earliest and latest numeric `timestamp` of the events (`sent_at_ms` when none has one).
fn event_bounds(events: &[Value], sent_at_ms: i64) -> (i64, i64) {
    let stamps = events.iter().filter_map(|e| e.get("timestamp").and_then(Value::as_f64)).filter(|t| t.is_finite());
    let (min, max) = stamps.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if min.is_finite() {
        (min.floor() as i64, max.floor() as i64)
    } else {
        (sent_at_ms, sent_at_ms)
    }
}

/// The replay a refresh token is recording into: the newest one still taking batches. The
/// statements below share one numbered parameter list (?1 tenancy, ?2 new id, ?3 user, ?4
/// refresh token, ?5/?6 first/last event, ?7 now, ?8 idle limit, ?9 length limit); SQLite
/// binds by number, so a statement may leave some unused.
const RECENT_REPLAY: &str = "SELECT id FROM session_replays WHERE tenancy_id = ?1 AND refresh_token_id = ?4 \
     AND updated_at >= ?8 AND created_at >= ?9 ORDER BY updated_at DESC, id DESC LIMIT 1";

pub async fn upload(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    // The size first: nothing parses a body that is too large.
    if req.body().len() > MAX_BODY_BYTES {
        return Err(ApiError::status(413, format!("Request body too large (max {MAX_BODY_BYTES} bytes)")));
    }
    let batch = validate(req)?;
    let tenancy = &auth.tenancy;
    let overrides = store::load(ctx, tenancy).await?;
    let config = render(&overrides.up_to(Level::Environment)).config;
    if !config_flag(&config, "apps.installed.analytics.enabled") {
        return Err(KnownError::analytics_not_enabled().into());
    }
    let user = auth.user.as_ref().ok_or_else(KnownError::user_authentication_required)?;
    let Some(refresh_token_id) = user.refresh_token_id.clone() else {
        return Err(ApiError::status(400, "A refresh token is required for session replays"));
    };
    if batch.events.is_empty() {
        return Err(ApiError::status(400, "events must not be empty"));
    }
    if batch.events.len() > MAX_EVENTS {
        return Err(ApiError::status(400, format!("Too many events (max {MAX_EVENTS})")));
    }

    // Join the recent replay or start one, and widen its bounds, in one atomic batch: concurrent
    // batches of one session can never start two replays.
    let now = ctx.now();
    let (first_ms, last_ms) = event_bounds(&batch.events, batch.sent_at_ms);
    let new_id = shared::identity::crypto::new_uuid(ctx.random.as_ref());
    let params = || -> Vec<SqlValue> {
        vec![
            tenancy.id.clone().into(),
            new_id.clone().into(),
            user.user_id.clone().into(),
            refresh_token_id.clone().into(),
            first_ms.into(),
            last_ms.into(),
            now.into(),
            (now - IDLE_TIMEOUT_MS).into(),
            (now - MAX_REPLAY_MS).into(),
        ]
    };
    ctx.store
        .batch(&[
            Statement::new(
                "INSERT INTO session_replays (tenancy_id, id, user_id, refresh_token_id, started_at, last_event_at, \
                 created_at, updated_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7 WHERE NOT EXISTS (SELECT 1 FROM \
                 session_replays WHERE tenancy_id = ?1 AND refresh_token_id = ?4 AND updated_at >= ?8 AND created_at >= ?9)",
                params(),
            ),
            Statement::new(
                "UPDATE session_replays SET started_at = min(started_at, ?5), last_event_at = max(last_event_at, ?6), \
                 updated_at = ?7 WHERE tenancy_id = ?1 AND id = (SELECT id FROM session_replays WHERE tenancy_id = ?1 \
                 AND refresh_token_id = ?4 AND updated_at >= ?8 AND created_at >= ?9 ORDER BY updated_at DESC, id DESC \
                 LIMIT 1)",
                params(),
            ),
        ])
        .await
        ?;
    let rows = ctx.store.query(RECENT_REPLAY, &params()).await?;
    let replay_id = rows.first().ok_or_else(|| ApiError::internal("the replay just joined is gone"))?;
    let replay_id = replay_id.text("id")?;

    let key =
        format!("session-replays/{}/{}/{replay_id}/{}.json.gz", tenancy.project_id, tenancy.branch_id, batch.batch_id);
    let respond = |deduped: bool| {
        json(&json!({ "session_replay_id": replay_id, "batch_id": batch.batch_id, "s3_key": key, "deduped": deduped }))
    };
    let existing = ctx
        .store
        .query(
            "SELECT id FROM session_replay_chunks WHERE tenancy_id = ? AND session_replay_id = ? AND batch_id = ?",
            &[tenancy.id.clone().into(), replay_id.clone().into(), batch.batch_id.clone().into()],
        )
        .await?;
    if !existing.is_empty() {
        return Ok(respond(true));
    }

    let object = json!({
        "v": 1,
        "session_replay_id": replay_id,
        "browser_session_id": batch.browser_session_id,
        "session_replay_segment_id": batch.segment_id,
        "batch_id": batch.batch_id,
        "started_at_ms": batch.started_at_ms,
        "sent_at_ms": batch.sent_at_ms,
        "events": batch.events,
    });
    let gzipped = gzip(&object)?;
    // The blob first, then the row that points to it: a chunk row always has its events.
    match ctx.blobs.put(&key, &gzipped).await {
        Ok(()) => {}
        Err(BlobError::TooLarge { size, max }) => {
            return Err(ApiError::status(
                413,
                format!("The compressed batch is {size} bytes; the replay store takes at most {max}"),
            ))
        }
        Err(e) => return Err(ApiError::internal(e.to_string())),
    }
    let inserted = ctx
        .store
        .execute(
            "INSERT INTO session_replay_chunks (tenancy_id, id, session_replay_id, batch_id, session_replay_segment_id, \
             browser_session_id, blob_key, event_count, byte_length, first_event_at, last_event_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenancy_id, session_replay_id, batch_id) DO NOTHING",
            vec![
                tenancy.id.clone().into(),
                shared::identity::crypto::new_uuid(ctx.random.as_ref()).into(),
                replay_id.clone().into(),
                batch.batch_id.clone().into(),
                batch.segment_id.clone().into(),
                batch.browser_session_id.clone().into(),
                key.clone().into(),
                (batch.events.len() as i64).into(),
                (gzipped.len() as i64).into(),
                first_ms.into(),
                last_ms.into(),
                now.into(),
            ],
        )
        .await
        ?;
    Ok(respond(inserted == 0))
}

fn gzip(value: &Value) -> ApiResult<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut encoder, value).map_err(|e| ApiError::internal(e.to_string()))?;
    encoder.flush().and_then(|_| encoder.finish()).map_err(|e| ApiError::internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_follow_the_uuid_pattern() {
        assert!(is_client_uuid("6F1D2C9E-3B7A-4C61-9D8E-0A1B2C3D4E5F"));
        assert!(is_client_uuid("6f1d2c9e-3b7a-8c61-bd8e-0a1b2c3d4e5f"));
        assert!(!is_client_uuid("6f1d2c9e-3b7a-0c61-9d8e-0a1b2c3d4e5f"), "version 0");
        assert!(!is_client_uuid("6f1d2c9e-3b7a-4c61-cd8e-0a1b2c3d4e5f"), "variant c");
        assert!(!is_client_uuid("not-a-uuid"));
    }

    #[test]
    fn bounds_come_from_finite_numeric_timestamps_or_sent_at() {
        let events = vec![json!({ "timestamp": 20.7 }), json!({ "timestamp": 10 }), json!({ "timestamp": "x" })];
        assert_eq!(event_bounds(&events, 99), (10, 20));
        assert_eq!(event_bounds(&[json!({})], 99), (99, 99));
    }
}
