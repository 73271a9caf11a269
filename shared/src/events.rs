//! Analytics events written to the analytics store (contract part 1, §1.6).
//!
//! Every access-token mint logs `$token-refresh` into `analytics_internal.events`, in the
//! background: the response never waits for the analytics store, and an outage never fails a
//! refresh. A lost event is logged and counted ([`lost_events`]).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::auth::Tenancy;
use crate::context::Context;
use crate::users::User;

static LOST_EVENTS: AtomicU64 = AtomicU64::new(0);

/// How many events this process could not write.
pub fn lost_events() -> u64 {
    LOST_EVENTS.load(Ordering::Relaxed)
}

/// Logs `$token-refresh` for a minted access token, when an analytics store is configured.
pub fn log_token_refresh(ctx: &Context, tenancy: &Tenancy, user: &User, session_id: &str) {
    let Some(store) = &ctx.config.clickhouse else { return };
    let event_at = chrono::DateTime::from_timestamp_millis(ctx.now())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let row = json!({
        "event_type": "$token-refresh",
        "event_at": event_at,
        "data": { "refresh_token_id": session_id, "is_anonymous": user.is_anonymous, "ip_info": null },
        "project_id": tenancy.project_id,
        "branch_id": tenancy.branch_id,
        "user_id": user.id,
        "team_id": null,
        "refresh_token_id": session_id,
        "session_replay_id": null,
        "session_replay_segment_id": null,
    });
    let client = store.admin_client();
    let http = ctx.http.clone();
    ctx.background.spawn(Box::pin(async move {
        if let Err(e) = client.insert(http.as_ref(), "analytics_internal.events", &[row]).await {
            let lost = LOST_EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(error = %e, lost, "could not write a $token-refresh event");
        }
    }));
}
