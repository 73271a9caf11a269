//! Analytics events written to the analytics store (docs/api.md §1.6).
//!
//! Every access-token mint logs `$session-activity` and `$token-refresh` into
//! `analytics_internal.events` (one insert), in the background: the response never waits for
//! the analytics store, and an outage never fails a refresh. Lost events are logged and counted
//! ([`lost_events`]). Clients' own events (`$page-view`, `$click`) arrive through the replays
//! function's batch route and are written the same way ([`write_in_background`]). Upstream keeps `$session-activity` in its Postgres event table only; here
//! the analytics store is the one event store, so both are queryable.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::context::Context;
use crate::identity::tenancy::Tenancy;

static LOST_EVENTS: AtomicU64 = AtomicU64::new(0);

/// How many events this process could not write.
pub fn lost_events() -> u64 {
    LOST_EVENTS.load(Ordering::Relaxed)
}

/// Who a minted access token is for: the user and whether they are anonymous.
pub struct MintedFor<'a> {
    /// The user the token is for.
    pub user_id: &'a str,
    /// Whether that user is anonymous.
    pub is_anonymous: bool,
    /// Where the end user is, as the runtime says (`ip_info`; null when unknown).
    pub location: Option<&'a crate::http::location::EndUserLocation>,
}

/// Logs `$session-activity` and `$token-refresh` for a minted access token, when an analytics
/// store is configured.
pub fn log_mint_events(ctx: &Context, tenancy: &Tenancy, user: MintedFor<'_>, session_id: &str) {
    if ctx.config.clickhouse.is_none() {
        return; // Nothing to write to: skip building the rows (a refresh's profile showed them).
    }
    let event_at = event_time(ctx.now());
    let row = |event_type: &str, data: serde_json::Value| {
        json!({
            "event_type": event_type,
            "event_at": event_at,
            "data": data,
            "project_id": tenancy.project_id,
            "branch_id": tenancy.branch_id,
            "user_id": user.user_id,
            "team_id": null,
            "refresh_token_id": session_id,
            "session_replay_id": null,
            "session_replay_segment_id": null,
        })
    };
    let rows = [
        row("$session-activity", json!({ "session_id": session_id, "is_anonymous": user.is_anonymous })),
        row(
            "$token-refresh",
            json!({ "refresh_token_id": session_id, "is_anonymous": user.is_anonymous,
                    "ip_info": user.location.map(crate::http::location::EndUserLocation::ip_info) }),
        ),
    ];
    write_in_background(ctx, rows.to_vec(), "a token mint's");
}

/// The time of an event as the events table takes it (UTC, milliseconds).
pub fn event_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// Writes `rows` into `analytics_internal.events` after the response, when an analytics store
/// is configured. A failed write is logged and counted, never an error of the request. `what`
/// names the rows in the log line.
///
/// Writes are grouped: rows wait in this thread's buffer (a worker thread natively, the isolate
/// on Workers, the instance in a component) while an insert is in flight, and the next insert
/// takes them all. Under load a process makes a few large inserts instead of one per request
/// (ClickHouse wants large ones: each insert is a part to merge), with no timer and no added
/// wait when idle. The buffer's writer is the first caller's; one process has one analytics
/// store.
pub fn write_in_background(ctx: &Context, rows: Vec<serde_json::Value>, what: &'static str) {
    let Some(store) = &ctx.config.clickhouse else { return };
    PENDING.with(|pending| pending.borrow_mut().extend(rows));
    if FLUSHING.with(|flushing| flushing.replace(true)) {
        return; // The insert in flight takes these rows next.
    }
    let client = store.admin_client();
    let http = ctx.http.clone();
    ctx.background.spawn(Box::pin(async move {
        loop {
            let rows: Vec<serde_json::Value> = PENDING.with(|pending| {
                let mut pending = pending.borrow_mut();
                let take = pending.len().min(MAX_INSERT_ROWS);
                pending.drain(..take).collect()
            });
            if rows.is_empty() {
                FLUSHING.with(|flushing| flushing.set(false));
                return;
            }
            if let Err(e) = client.insert(http.as_ref(), "analytics_internal.events", &rows).await {
                let lost = LOST_EVENTS.fetch_add(rows.len() as u64, Ordering::Relaxed) + rows.len() as u64;
                tracing::warn!(error = %e, lost, rows = rows.len(), "could not write {what} analytics events");
            }
        }
    }));
}

/// The most rows one insert carries (a backlog goes in several).
const MAX_INSERT_ROWS: usize = 50_000;

thread_local! {
    /// Rows waiting for the insert in flight to finish.
    static PENDING: std::cell::RefCell<Vec<serde_json::Value>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Whether an insert loop runs on this thread.
    static FLUSHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
