//! One claimed outbox row, on the function's side: resolves its recipients (skipping deleted or
//! unsubscribed users), checks deliverability and hands a sender what it sends
//! ([`prepare_send`]); then records what the sender reported ([`record_send`]) — sent, a retry
//! with backoff, or a terminal error. Every write is guarded by
//! `finished_sending_at IS NULL`, so a row is finished once.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::config::{render as render_config, schema::Level, store as config_store};
use crate::email::deliverability::undeliverable;
use crate::email::notifications::{category_of, is_enabled, Category};
use crate::email::outbox::{iso_time, Recipient};
use crate::email::server::{mail_server, Emailable, ResendEndpoint, SharedServer};
use crate::identity::tenancy::tenancy_by_id;
use crate::store::ports::{MailServer, OutgoingEmail, SendFailure, ServerKind, SqlRow, Statement, StoreError};
use crate::Context;

/// Attempts before a retryable failure becomes terminal.
pub const MAX_SEND_ATTEMPTS: i64 = 5;
/// What users see when the project's email server settings cannot be used.
const CONFIG_ERROR: &str = "An error occurred while sending the email. If you are the admin of this project, please check the email configuration and try again.";

/// A tenancy's mail server as a pass found it: usable, or why it is not (for the email's
/// internal error message).
pub enum TenancyServer {
    Usable(MailServer),
    Unusable(String),
}

/// The mail server of a tenancy's project, from its rendered environment config (§5.6).
pub async fn tenancy_mail_server(
    ctx: &Context,
    tenancy_id: &str,
    shared: Option<&SharedServer>,
    resend: &ResendEndpoint,
) -> Result<TenancyServer, StoreError> {
    let Some((tenancy, project_name)) = tenancy_by_id(ctx, tenancy_id).await? else {
        return Ok(TenancyServer::Unusable("the project no longer exists".into()));
    };
    let overrides = config_store::load(ctx, &tenancy).await?;
    let config = render_config(&overrides.up_to(Level::Environment)).config;
    let server = mail_server(&config["emails"]["server"], &project_name, shared, resend);
    Ok(match server {
        Ok(server) => TenancyServer::Usable(server),
        Err(problem) => TenancyServer::Unusable(problem),
    })
}

/// Where a row goes: its addresses, or why it is skipped (upstream's reason and details).
enum Recipients {
    To(Vec<String>),
    Skip(&'static str, Value),
}

/// What became of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The mail server accepted it.
    Sent,
    /// It failed and will be retried.
    Retried,
    /// It failed for good.
    Failed,
}

/// A claimed row after its recipients are resolved: finished here (skipped, or failed for a
/// configuration it cannot be sent with), or ready for a sender.
// One lives per claimed row, briefly; boxing the message would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Prepared {
    /// Nothing to send; the outcome is recorded.
    Done,
    /// The message and the server it goes through.
    Ready {
        /// The message as the mail server gets it.
        email: OutgoingEmail,
        /// The tenancy's mail server.
        server: MailServer,
    },
}

/// Resolves the recipients of a row this claim (`claim_id`) holds: records a skip or a
/// configuration failure, else returns the message and its server. Every write is guarded by
/// the claim and by `finished_sending_at IS NULL`.
pub async fn prepare_send(
    ctx: &Context,
    servers: &HashMap<String, TenancyServer>,
    emailable: Option<&Emailable>,
    row: &SqlRow,
    claim_id: &str,
) -> Result<Prepared, StoreError> {
    let (tenancy_id, id) = (row.text("tenancy_id")?, row.text("id")?);
    let now = ctx.now();
    let recipient: Value =
        serde_json::from_str(&row.text("recipient")?).map_err(|e| StoreError::Decode(e.to_string()))?;
    let category = category_of(row.bool("is_transactional")?);
    let server = servers.get(&tenancy_id);
    let check = match (emailable, server) {
        (Some(emailable), Some(TenancyServer::Usable(server))) if server.kind == ServerKind::Shared => {
            (!row.bool("skip_deliverability_check")?).then_some(emailable)
        }
        _ => None,
    };
    let resolved = match resolve(ctx, &tenancy_id, &recipient, category).await? {
        Recipients::To(to) => match check {
            Some(emailable) => match undeliverable(ctx, emailable, &to).await {
                Some((reason, details)) => Recipients::Skip(reason, details),
                None => Recipients::To(to),
            },
            None => Recipients::To(to),
        },
        skipped => skipped,
    };
    let to = match resolved {
        Recipients::To(to) => to,
        Recipients::Skip(reason, details) => {
            ctx.store
                .execute(
                    "UPDATE email_outbox SET skipped_reason = ?1, skipped_details = ?2, updated_at = ?3 \
                     WHERE tenancy_id = ?4 AND id = ?5 AND sending_worker_id = ?6 AND skipped_reason IS NULL \
                     AND finished_sending_at IS NULL",
                    vec![
                        reason.into(),
                        details.to_string().into(),
                        now.into(),
                        tenancy_id.into(),
                        id.into(),
                        claim_id.into(),
                    ],
                )
                .await?;
            return Ok(Prepared::Done);
        }
    };
    let server = match server {
        Some(TenancyServer::Usable(server)) => server.clone(),
        Some(TenancyServer::Unusable(problem)) => {
            let failure = SendFailure { error_type: "EMAIL_CONFIG", retryable: false, message: problem.clone() };
            record_failure(ctx, &tenancy_id, &id, claim_id, failure, Some(CONFIG_ERROR)).await?;
            return Ok(Prepared::Done);
        }
        None => return Err(StoreError::Decode(format!("no mail server looked up for tenancy {tenancy_id}"))),
    };
    let domain = server.sender_email.rsplit('@').next().unwrap_or("stack-edge.local");
    let email = OutgoingEmail {
        message_id: format!("<{id}@{domain}>"),
        from: server.from(),
        to,
        subject: row.opt_text("rendered_subject")?.unwrap_or_default(),
        html: row.opt_text("rendered_html")?.unwrap_or_default(),
        text: row.opt_text("rendered_text")?.unwrap_or_default(),
    };
    Ok(Prepared::Ready { email, server })
}

/// Records what a send of a row held by `claim_id` did. `None` when the claim no longer holds
/// the row (it was finished, recovered as stuck, or claimed again): a stale report changes
/// nothing.
pub async fn record_send(
    ctx: &Context,
    tenancy_id: &str,
    id: &str,
    claim_id: &str,
    sent: Result<(), SendFailure>,
) -> Result<Option<Outcome>, StoreError> {
    match sent {
        Ok(()) => Ok(record_sent(ctx, &[(tenancy_id, id)], claim_id).await?[0].then_some(Outcome::Sent)),
        Err(failure) => record_failure(ctx, tenancy_id, id, claim_id, failure, None).await,
    }
}

/// Records the rows (`(tenancy_id, id)`) held by `claim_id` that the mail server accepted, in
/// one batch (one round trip to D1); for each, whether the claim still held it.
pub async fn record_sent(ctx: &Context, rows: &[(&str, &str)], claim_id: &str) -> Result<Vec<bool>, StoreError> {
    let now = ctx.now();
    let statements: Vec<Statement> = rows
        .iter()
        .map(|(tenancy_id, id)| {
            Statement::new(
                "UPDATE email_outbox SET finished_sending_at = ?1, can_have_delivery_info = 0, \
                 send_server_error_external_message = NULL, send_server_error_external_details = NULL, \
                 send_server_error_internal_message = NULL, send_server_error_internal_details = NULL, \
                 updated_at = ?1 WHERE tenancy_id = ?2 AND id = ?3 AND sending_worker_id = ?4 \
                 AND finished_sending_at IS NULL",
                vec![now.into(), (*tenancy_id).into(), (*id).into(), claim_id.into()],
            )
        })
        .collect();
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    Ok(ctx.store.batch(&statements).await?.into_iter().map(|changed| changed == 1).collect())
}

/// Records a failed attempt: a retry later when the class allows and attempts remain, else a
/// terminal server error. `external` replaces the message users see (upstream's text for
/// failures that are the project's configuration, not the mail server's answer). `None` when
/// the claim no longer holds the row.
async fn record_failure(
    ctx: &Context,
    tenancy_id: &str,
    id: &str,
    claim_id: &str,
    failure: SendFailure,
    external: Option<&str>,
) -> Result<Option<Outcome>, StoreError> {
    let now = ctx.now();
    let rows = ctx
        .store
        .query(
            "SELECT send_retries, send_attempt_errors FROM email_outbox \
             WHERE tenancy_id = ? AND id = ? AND sending_worker_id = ? AND finished_sending_at IS NULL",
            &[tenancy_id.into(), id.into(), claim_id.into()],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    // Users see the failure's class, never the server's raw answer: a project's own server can
    // point anywhere, and the raw text would report what was found there.
    let external_message =
        external.map_or_else(|| format!("The email could not be sent ({}).", failure.error_type), str::to_string);
    let attempt = row.int("send_retries")? + 1;
    let mut errors: Vec<Value> =
        row.opt_text("send_attempt_errors")?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    errors.push(json!({
        "attemptNumber": attempt,
        "timestamp": iso_time(now),
        "externalMessage": external_message,
        "externalDetails": { "errorType": failure.error_type },
        "internalMessage": failure.message,
        "internalDetails": { "errorType": failure.error_type },
    }));
    let errors = Value::Array(errors).to_string();
    if failure.retryable && attempt < MAX_SEND_ATTEMPTS {
        let backoff = retry_backoff_ms(ctx, attempt);
        let changed = ctx
            .store
            .execute(
                "UPDATE email_outbox SET started_sending_at = NULL, sending_worker_id = NULL, is_queued = 0, \
                 send_retries = ?1, next_send_retry_at = ?2, send_attempt_errors = ?3, updated_at = ?4 \
                 WHERE tenancy_id = ?5 AND id = ?6 AND sending_worker_id = ?7 AND finished_sending_at IS NULL",
                vec![
                    attempt.into(),
                    (now + backoff).into(),
                    errors.into(),
                    now.into(),
                    tenancy_id.into(),
                    id.into(),
                    claim_id.into(),
                ],
            )
            .await?;
        return Ok((changed == 1).then_some(Outcome::Retried));
    }
    let reason = if failure.retryable { "attempts_exhausted" } else { "permanent_error" };
    let changed = ctx
        .store
        .execute(
            "UPDATE email_outbox SET finished_sending_at = ?1, can_have_delivery_info = 0, send_retries = ?2, \
             next_send_retry_at = NULL, send_attempt_errors = ?3, send_server_error_external_message = ?4, \
             send_server_error_external_details = ?5, send_server_error_internal_message = ?9, \
             send_server_error_internal_details = ?6, updated_at = ?1 \
             WHERE tenancy_id = ?7 AND id = ?8 AND sending_worker_id = ?10 AND finished_sending_at IS NULL",
            vec![
                now.into(),
                attempt.into(),
                errors.clone().into(),
                external_message.into(),
                json!({ "errorType": failure.error_type }).to_string().into(),
                json!({ "rawError": failure.message, "errorType": failure.error_type, "attemptCount": attempt,
                        "failureReason": reason, "allAttemptErrors": serde_json::from_str::<Value>(&errors).unwrap_or_default() })
                .to_string()
                .into(),
                tenancy_id.into(),
                id.into(),
                failure.message.clone().into(),
                claim_id.into(),
            ],
        )
        .await?;
    Ok((changed == 1).then_some(Outcome::Failed))
}

/// 20 s x 2^attempt x uniform(0.5, 1.5).
fn retry_backoff_ms(ctx: &Context, attempt: i64) -> i64 {
    let mut byte = [0u8; 4];
    ctx.random.fill(&mut byte);
    let jitter = 0.5 + u32::from_le_bytes(byte) as f64 / u32::MAX as f64;
    (20_000.0 * 2f64.powi(attempt as i32) * jitter) as i64
}

/// The addresses a row goes to, or why it is skipped.
async fn resolve(ctx: &Context, tenancy_id: &str, to: &Value, category: Category) -> Result<Recipients, StoreError> {
    let Ok(recipient) = Recipient::from_json(to) else {
        return Ok(Recipients::Skip("NO_EMAIL_PROVIDED", json!({})));
    };
    let (user_id, custom) = match recipient {
        Recipient::CustomEmails { emails } if emails.is_empty() => {
            return Ok(Recipients::Skip("NO_EMAIL_PROVIDED", json!({})))
        }
        Recipient::CustomEmails { emails } => return Ok(Recipients::To(emails)),
        Recipient::UserPrimaryEmail { user_id } => (user_id, None),
        Recipient::UserCustomEmails { user_id, emails } => (user_id, Some(emails)),
    };
    let user = crate::identity::users::get_user(ctx, tenancy_id, &user_id).await?;
    let Some(user) = user else { return Ok(Recipients::Skip("USER_ACCOUNT_DELETED", json!({ "user_id": user_id }))) };
    if !is_enabled(ctx, tenancy_id, &user_id, category).await? {
        let details = json!({ "user_id": user_id, "notification_category_id": category.id });
        return Ok(Recipients::Skip("USER_UNSUBSCRIBED", details));
    }
    match (custom, user.primary_email) {
        (Some(emails), _) if !emails.is_empty() => Ok(Recipients::To(emails)),
        (Some(_), Some(primary)) => Ok(Recipients::To(vec![primary])),
        (Some(_), None) => Ok(Recipients::Skip("NO_EMAIL_PROVIDED", json!({ "user_id": user_id }))),
        (None, Some(primary)) => Ok(Recipients::To(vec![primary])),
        (None, None) => Ok(Recipients::Skip("USER_HAS_NO_PRIMARY_EMAIL", json!({ "user_id": user_id }))),
    }
}
