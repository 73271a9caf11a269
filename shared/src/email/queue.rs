//! One pass of the email queue (§5.2): claim rows to render and render them, queue what is due,
//! claim each tenancy's quota for this pass, and end the sends that got stuck. A pass runs in
//! the emails function, in its own store, when a sender claims ([`claim_sends`]); the sender
//! sends over SMTP and reports each result ([`crate::email::record_send`]). The function's cron
//! runs the part that needs no sender ([`prepare_outbox`]).
//!
//! Claims are single `UPDATE ... WHERE rowid IN (SELECT ... LIMIT n)` statements that stamp the
//! pass's worker id, so concurrent passes never take the same row. A row is marked as sending
//! before the mail server sees it; a pass that dies after that leaves it stuck, and the
//! stuck-send check later ends it as a terminal server error with delivery unknown, never
//! resent: an email is delivered at most once.

use std::collections::hash_map::{Entry, HashMap};

use serde_json::{json, Value};

use crate::email::capacity::tenancy_capacity;
use crate::email::notifications::{category_of, unsubscribe_code};
use crate::email::outbox::{iso_time, Recipient};
use crate::email::render::{render, Rendered};
use crate::email::send::{prepare_send, tenancy_mail_server, Prepared, TenancyServer};
use crate::email::server::{Emailable, ResendEndpoint, SharedServer};
use crate::identity::crypto::new_uuid;
use crate::store::ports::{MailServer, OutgoingEmail, SqlRow, Statement, StoreError};
use crate::Context;

/// The most rows one sender's claim may hold, and how many it holds unless it asks for fewer.
pub const MAX_CLAIM_ROWS: i64 = 1_000;
/// The rows of a claim that does not say.
pub const DEFAULT_CLAIM_ROWS: i64 = 100;
/// Rows claimed for rendering per pass.
pub const RENDER_BATCH: i64 = 50;
/// Rendering or sending older than this is stuck.
pub const STUCK_EMAIL_TIMEOUT_MS: i64 = 20 * 60 * 1000;
const METADATA_KEY: &str = "EMAIL_QUEUE_METADATA_KEY";
const RENDER_ERROR: &str =
    "An error occurred while rendering the email. Make sure the template/draft is valid and the theme is set correctly.";
/// What users see for an email that got stuck in sending.
pub const STUCK_MESSAGE: &str = "Email sending timed out before we could confirm whether it was delivered.";

/// How a pass sends.
pub struct QueueSettings {
    /// Upstream's default capacity (emails per hour per tenancy) before growth and boosts.
    pub capacity_per_hour: f64,
    /// The server of projects with `emails.server.isShared` (`None`: their emails fail).
    pub shared_server: Option<SharedServer>,
    /// Where managed domains send.
    pub resend: ResendEndpoint,
    /// The deliverability check of emails to the shared server (`None`: no check).
    pub emailable: Option<Emailable>,
}

/// One send a sender makes: a row its claim holds, ready to go.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// The row's tenancy.
    pub tenancy_id: String,
    /// The row.
    pub email_id: String,
    /// The message.
    pub email: OutgoingEmail,
    /// The server it goes through.
    pub server: MailServer,
}

impl QueueSettings {
    /// The settings the one configuration loader read.
    pub fn from_config(config: &crate::context::Config) -> QueueSettings {
        QueueSettings {
            capacity_per_hour: config.default_email_capacity_per_hour,
            shared_server: config.email.shared_server.clone(),
            resend: config.email.resend.clone(),
            emailable: config.email.emailable.clone(),
        }
    }
}

/// The function's side of a sender's claim, which is one pass of the queue (§5.2) but the SMTP
/// part: render, queue, claim each tenancy's quota under `claim_id`, resolve each claimed row,
/// and end the sends that got stuck. Rows skipped or failed
/// here are recorded; the rest come back as claims for the sender to send and report
/// ([`crate::email::record_send`]). A sender that dies leaves its claims to the stuck rule.
pub async fn claim_sends(
    ctx: &Context,
    settings: &QueueSettings,
    claim_id: &str,
    max_rows: i64,
) -> Result<Vec<Claim>, StoreError> {
    let now = ctx.now();
    let delta_seconds = seconds_since_last_pass(ctx, now).await?;
    render_batch(ctx, claim_id, now).await?;
    queue_due(ctx, now).await?;
    let claimed = claim_quotas(ctx, claim_id, now, settings, delta_seconds, max_rows).await?;
    let servers = mail_servers(ctx, &claimed, settings).await?;
    let mut claims = Vec::new();
    for row in &claimed {
        if let Prepared::Ready { email, server } =
            prepare_send(ctx, &servers, settings.emailable.as_ref(), row, claim_id).await?
        {
            claims.push(Claim { tenancy_id: row.text("tenancy_id")?, email_id: row.text("id")?, email, server });
        }
    }
    fail_emails_stuck_in_sending(ctx).await?;
    Ok(claims)
}

/// The mail server of each tenancy among `rows`, read once per pass.
async fn mail_servers(
    ctx: &Context,
    rows: &[SqlRow],
    settings: &QueueSettings,
) -> Result<HashMap<String, TenancyServer>, StoreError> {
    let mut servers = HashMap::new();
    for row in rows {
        let tenancy_id = row.text("tenancy_id")?;
        if let Entry::Vacant(slot) = servers.entry(tenancy_id.clone()) {
            slot.insert(
                tenancy_mail_server(ctx, &tenancy_id, settings.shared_server.as_ref(), &settings.resend).await?,
            );
        }
    }
    Ok(servers)
}

/// What the outbox's scheduled work did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PrepareReport {
    /// Rows rendered (or failed to render).
    pub rendered: usize,
    /// Emails stuck in sending that it ended.
    pub stuck_failed: usize,
}

/// The outbox's scheduled work (the emails function's cron, on every runtime): renders what
/// waits, queues what is due, and ends the sends that got stuck. It needs no mail server, so a
/// Worker or component runs it in its own store; sending is the senders' part.
pub async fn prepare_outbox(ctx: &Context) -> Result<PrepareReport, StoreError> {
    let worker = new_uuid(ctx.random.as_ref());
    let now = ctx.now();
    let rendered = render_batch(ctx, &worker, now).await?;
    queue_due(ctx, now).await?;
    Ok(PrepareReport { rendered, stuck_failed: fail_emails_stuck_in_sending(ctx).await? })
}

/// Claims rows to render, renders them, and saves only what this worker still owns; returns
/// how many it rendered. The claim is fair across tenancies: each one's oldest email first,
/// then each one's second, ...; one tenancy's backlog never delays another's renders by more
/// than a pass.
async fn render_batch(ctx: &Context, worker: &str, now: i64) -> Result<usize, StoreError> {
    ctx.store
        .execute(
            "UPDATE email_outbox SET rendered_by_worker_id = ?1, started_rendering_at = ?2, updated_at = ?2 \
             WHERE rowid IN (SELECT rowid FROM (SELECT rowid, created_at, \
                 row_number() OVER (PARTITION BY tenancy_id ORDER BY created_at) AS turn \
               FROM email_outbox WHERE rendered_by_worker_id IS NULL AND is_paused = 0) \
             ORDER BY turn, created_at LIMIT ?3)",
            vec![worker.into(), now.into(), RENDER_BATCH.into()],
        )
        .await?;
    let to_render = ctx
        .store
        .query(
            "SELECT tenancy_id, id, tsx_source, variables, override_subject, recipient, is_transactional \
             FROM email_outbox WHERE rendered_by_worker_id = ? AND finished_rendering_at IS NULL",
            &[worker.into()],
        )
        .await?;
    // Every save in one batch (one round trip to D1); each is guarded by this worker's claim.
    let mut saves = Vec::with_capacity(to_render.len());
    for row in &to_render {
        let variables: Value = serde_json::from_str(&row.text("variables")?).unwrap_or(json!({}));
        let rendered = render(&row.text("tsx_source")?, &variables, row.opt_text("override_subject")?.as_deref());
        let (tenancy_id, id) = (row.text("tenancy_id")?, row.text("id")?);
        let category = category_of(row.bool("is_transactional")?);
        let user_id = serde_json::from_str(&row.text("recipient")?)
            .ok()
            .and_then(|to: Value| Recipient::from_json(&to).ok())
            .and_then(|to| to.user_id().map(str::to_string));
        let rendered = match (rendered, user_id) {
            (Ok(rendered), Some(user_id)) if category.can_disable => {
                let code = unsubscribe_code(&ctx.config.server_secret, &tenancy_id, &user_id, category);
                Ok(rendered.with_unsubscribe_link(&format!(
                    "{}/api/v1/emails/unsubscribe-link?code={code}",
                    ctx.config.api_url
                )))
            }
            (rendered, _) => rendered,
        };
        let statement = match rendered {
            Ok(Rendered { subject, html, text }) => Statement::new(
                "UPDATE email_outbox SET rendered_subject = ?1, rendered_html = ?2, rendered_text = ?3, \
                 finished_rendering_at = ?4, updated_at = ?4 WHERE tenancy_id = ?5 AND id = ?6 AND rendered_by_worker_id = ?7",
                vec![subject.into(), html.into(), text.into(), now.into(), tenancy_id.into(), id.into(), worker.into()],
            ),
            Err(error) => Statement::new(
                "UPDATE email_outbox SET render_error_external_message = ?1, render_error_internal_message = ?2, \
                 finished_rendering_at = ?3, updated_at = ?3 WHERE tenancy_id = ?4 AND id = ?5 AND rendered_by_worker_id = ?6",
                vec![RENDER_ERROR.into(), error.into(), now.into(), tenancy_id.into(), id.into(), worker.into()],
            ),
        };
        saves.push(statement);
    }
    if !saves.is_empty() {
        ctx.store.batch(&saves).await?;
    }
    Ok(to_render.len())
}

/// Rendering that never finished is claimed again; rendered, due rows are queued (a retry's
/// due time is cleared as it is queued).
async fn queue_due(ctx: &Context, now: i64) -> Result<(), StoreError> {
    ctx.store
        .batch(&[
            Statement::new(
                "UPDATE email_outbox SET rendered_by_worker_id = NULL, started_rendering_at = NULL, updated_at = ?1 \
                 WHERE started_rendering_at <= ?2 AND finished_rendering_at IS NULL AND skipped_reason IS NULL \
                 AND is_paused = 0",
                vec![now.into(), (now - STUCK_EMAIL_TIMEOUT_MS).into()],
            ),
            Statement::new(
                "UPDATE email_outbox SET is_queued = 1, next_send_retry_at = NULL, updated_at = ?1 \
                 WHERE is_queued = 0 AND is_paused = 0 AND skipped_reason IS NULL AND rendered_html IS NOT NULL \
                 AND scheduled_at <= ?1 AND started_sending_at IS NULL AND finished_sending_at IS NULL \
                 AND (next_send_retry_at IS NULL OR next_send_retry_at <= ?1)",
                vec![now.into()],
            ),
        ])
        .await?;
    Ok(())
}

/// Per tenancy, claims up to its quota for this pass (its capacity over the seconds since the
/// last pass); returns the rows this worker claimed.
async fn claim_quotas(
    ctx: &Context,
    worker: &str,
    now: i64,
    settings: &QueueSettings,
    delta_seconds: f64,
    max_rows: i64,
) -> Result<Vec<SqlRow>, StoreError> {
    let mut left = max_rows;
    let tenancies = ctx
        .store
        .query(
            "SELECT DISTINCT tenancy_id FROM email_outbox WHERE is_queued = 1 AND started_sending_at IS NULL \
             AND finished_sending_at IS NULL AND is_paused = 0 AND skipped_reason IS NULL",
            &[],
        )
        .await?;
    // A claim may hold fewer rows than the tenancies' quotas: each claim starts at a random
    // tenancy, so a capped claim never favours the same ones.
    let mut start = [0u8; 4];
    ctx.random.fill(&mut start);
    let start = u32::from_le_bytes(start) as usize % tenancies.len().max(1);
    for tenancy in tenancies[start..].iter().chain(&tenancies[..start]) {
        if left <= 0 {
            break;
        }
        let capacity = tenancy_capacity(ctx, &tenancy.text("tenancy_id")?, settings.capacity_per_hour).await?;
        let quota = stochastic_round(ctx, capacity.per_hour() / 3600.0 * delta_seconds).min(left);
        if quota <= 0 {
            continue;
        }
        let claimed = ctx
            .store
            .execute(
                "UPDATE email_outbox SET started_sending_at = ?1, sending_worker_id = ?2, updated_at = ?1 \
                 WHERE rowid IN (SELECT rowid FROM email_outbox WHERE tenancy_id = ?3 AND is_queued = 1 \
                 AND started_sending_at IS NULL AND finished_sending_at IS NULL AND is_paused = 0 \
                 AND skipped_reason IS NULL ORDER BY is_high_priority * 100 + is_transactional * 10 DESC, \
                 scheduled_at, created_at LIMIT ?4)",
                vec![now.into(), worker.into(), tenancy.text("tenancy_id")?.into(), quota.into()],
            )
            .await?;
        left -= i64::try_from(claimed).unwrap_or(i64::MAX);
    }
    ctx.store
        .query(
            "SELECT tenancy_id, id, recipient, is_transactional, skip_deliverability_check, rendered_subject, \
             rendered_html, rendered_text, send_retries, send_attempt_errors FROM email_outbox WHERE sending_worker_id = ? AND started_sending_at = ? \
             AND finished_sending_at IS NULL",
            &[worker.into(), now.into()],
        )
        .await
}

/// Seconds since the previous pass (the first counts as 20, a negative one as 0); records now.
async fn seconds_since_last_pass(ctx: &Context, now: i64) -> Result<f64, StoreError> {
    let rows = ctx
        .store
        .query("SELECT last_executed_at FROM email_outbox_processing_metadata WHERE key = ?", &[METADATA_KEY.into()])
        .await?;
    let delta = match rows.first() {
        None => 20.0,
        Some(row) => ((now - row.int("last_executed_at")?) as f64 / 1000.0).max(0.0),
    };
    ctx.store
        .execute(
            "INSERT INTO email_outbox_processing_metadata (key, last_executed_at) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET last_executed_at = excluded.last_executed_at",
            vec![METADATA_KEY.into(), now.into()],
        )
        .await?;
    Ok(delta)
}

/// `x` rounded down, plus one with probability equal to its fraction.
fn stochastic_round(ctx: &Context, x: f64) -> i64 {
    let whole = x.floor();
    let mut byte = [0u8; 4];
    ctx.random.fill(&mut byte);
    let uniform = u32::from_le_bytes(byte) as f64 / u32::MAX as f64;
    whole as i64 + i64::from(uniform < x - whole)
}

/// Ends rows stuck in sending (started 20 minutes ago or more, unfinished, not skipped or
/// paused) as terminal server errors with delivery unknown, never retried (a retry could send a
/// second copy). Idempotent. Returns how many it ended.
pub async fn fail_emails_stuck_in_sending(ctx: &Context) -> Result<usize, StoreError> {
    let now = ctx.now();
    let cutoff = now - STUCK_EMAIL_TIMEOUT_MS;
    let cutoff_iso = iso_time(cutoff);
    let internal = format!(
        "Email was stuck in sending since before {cutoff_iso}; marked as a terminal server error with delivery status \
         unknown. Not retried to avoid duplicate delivery."
    );
    let details = json!({ "errorType": "stuck-in-sending-marked-failed", "stuckTimeoutMs": STUCK_EMAIL_TIMEOUT_MS,
                          "failedAt": iso_time(now) });
    let changed = ctx
        .store
        .batch(&[Statement::new(
            "UPDATE email_outbox SET finished_sending_at = ?1, can_have_delivery_info = 0, \
             send_server_error_external_message = ?2, send_server_error_external_details = ?3, \
             send_server_error_internal_message = ?4, send_server_error_internal_details = ?5, \
             next_send_retry_at = NULL, updated_at = ?1 \
             WHERE started_sending_at <= ?6 AND finished_sending_at IS NULL AND skipped_reason IS NULL AND is_paused = 0",
            vec![
                now.into(),
                STUCK_MESSAGE.into(),
                json!({ "errorType": "stuck-in-sending-marked-failed" }).to_string().into(),
                internal.into(),
                details.to_string().into(),
                cutoff.into(),
            ],
        )])
        .await?;
    let n = changed.first().copied().unwrap_or(0) as usize;
    if n > 0 {
        tracing::warn!(count = n, "email-queue-step-stuck-in-sending: emails marked failed with delivery unknown");
    }
    Ok(n)
}
