//! The email outbox (contract part 1, §5): rows are enqueued by the API, then one queue pass
//! at a time claims, renders, queues and sends them, and fails the ones stuck in sending.
//!
//! Claims are single `UPDATE ... WHERE rowid IN (SELECT ... LIMIT n)` statements that stamp the
//! pass's worker id, so concurrent passes (several companions, or tasks) never take the same
//! row. A row is marked as sending before the mail server sees it; a pass that dies after that
//! leaves it "stuck", and the stuck-send check later ends it as a terminal server error with
//! delivery unknown, never resent: an email is delivered at most once.
//!
//! Templates: upstream renders React email (TSX); this system has no JS runtime in the worker,
//! so `tsx_source` is HTML with `{{ variable }}` placeholders (HTML-escaped) and an optional
//! `<title>` giving the subject (docs/upstream-differences.md).

pub mod notifications;
pub mod server;

use std::collections::hash_map::{Entry, HashMap};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::config::{render as render_config, schema::Level, store as config_store};
use crate::email::notifications::{category_of, is_enabled, unsubscribe_code, Category};
use crate::email::server::Emailable;
use crate::email::server::{mail_server, ResendEndpoint, SharedServer};
use crate::identity::crypto::new_uuid;
use crate::identity::tenancy::Tenancy;
use crate::store::ports::{MailServer, Mailer, OutgoingEmail, SendFailure, ServerKind, SqlRow, Statement, StoreError};
use crate::Context;

/// Rows claimed for rendering per pass.
pub const RENDER_BATCH: i64 = 50;
/// Emails a pass sends at the same time.
const SEND_CONCURRENCY: usize = 8;
/// Rendering or sending older than this is stuck.
pub const STUCK_EMAIL_TIMEOUT_MS: i64 = 20 * 60 * 1000;
pub const MAX_SEND_ATTEMPTS: i64 = 5;
const METADATA_KEY: &str = "EMAIL_QUEUE_METADATA_KEY";
const RENDER_ERROR: &str =
    "An error occurred while rendering the email. Make sure the template/draft is valid and the theme is set correctly.";
/// What users see when the project's email server settings cannot be used.
const CONFIG_ERROR: &str = "An error occurred while sending the email. If you are the admin of this project, please check the email configuration and try again.";
pub const STUCK_MESSAGE: &str = "Email sending timed out before we could confirm whether it was delivered.";

/// Who an email goes to (upstream's `to` shapes).
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    UserPrimaryEmail { user_id: String },
    UserCustomEmails { user_id: String, emails: Vec<String> },
    CustomEmails { emails: Vec<String> },
}

impl Recipient {
    /// The user an email is for, if it is for one.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Recipient::UserPrimaryEmail { user_id } | Recipient::UserCustomEmails { user_id, .. } => Some(user_id),
            Recipient::CustomEmails { .. } => None,
        }
    }

    /// From the API's snake_case JSON.
    pub fn from_json(value: &Value) -> Result<Recipient, String> {
        let emails = |v: &Value| -> Result<Vec<String>, String> {
            let list = v["emails"].as_array().ok_or("to.emails must be an array of email addresses")?;
            list.iter()
                .map(|e| match e.as_str() {
                    Some(s) if is_email(s) => Ok(s.to_string()),
                    _ => Err(format!("to.emails contains an invalid email address: {e}")),
                })
                .collect()
        };
        let user_id = |v: &Value| -> Result<String, String> {
            match v["user_id"].as_str() {
                Some(id) if crate::identity::crypto::is_uuid(id) => Ok(id.to_ascii_lowercase()),
                _ => Err("to.user_id must be a valid UUID".into()),
            }
        };
        match value["type"].as_str() {
            Some("user-primary-email") => Ok(Recipient::UserPrimaryEmail { user_id: user_id(value)? }),
            Some("user-custom-emails") => {
                Ok(Recipient::UserCustomEmails { user_id: user_id(value)?, emails: emails(value)? })
            }
            Some("custom-emails") => Ok(Recipient::CustomEmails { emails: emails(value)? }),
            _ => Err("to.type must be one of user-primary-email, user-custom-emails, custom-emails".into()),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Recipient::UserPrimaryEmail { user_id } => json!({ "type": "user-primary-email", "user_id": user_id }),
            Recipient::UserCustomEmails { user_id, emails } => {
                json!({ "type": "user-custom-emails", "user_id": user_id, "emails": emails })
            }
            Recipient::CustomEmails { emails } => json!({ "type": "custom-emails", "emails": emails }),
        }
    }
}

/// A plausible address: `local@domain.tld`, no spaces, at most 254 characters.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
        && !domain.contains('@')
}

/// What the API enqueues.
pub struct NewEmail {
    pub recipient: Recipient,
    pub tsx_source: String,
    pub variables: Value,
    pub override_subject: Option<String>,
    pub is_high_priority: bool,
    pub is_transactional: bool,
    pub scheduled_at: Option<i64>,
    pub skip_deliverability_check: bool,
}

pub async fn enqueue(ctx: &Context, tenancy: &Tenancy, email: NewEmail) -> Result<String, StoreError> {
    let ids = enqueue_many(ctx, tenancy, vec![email]).await?;
    Ok(ids.into_iter().next().expect("one id per email"))
}

/// Puts emails in the outbox in one atomic batch (all or none); returns their ids in order.
pub async fn enqueue_many(ctx: &Context, tenancy: &Tenancy, emails: Vec<NewEmail>) -> Result<Vec<String>, StoreError> {
    let now = ctx.now();
    let mut ids = Vec::with_capacity(emails.len());
    let mut statements = Vec::with_capacity(emails.len());
    for email in emails {
        let id = new_uuid(ctx.random.as_ref());
        statements.push(insert_email(tenancy, &id, email, now));
        ids.push(id);
    }
    ctx.store.batch(&statements).await?;
    Ok(ids)
}

fn insert_email(tenancy: &Tenancy, id: &str, email: NewEmail, now: i64) -> Statement {
    Statement::new(
        "INSERT INTO email_outbox (tenancy_id, id, tsx_source, is_high_priority, recipient, variables, \
             override_subject, is_transactional, scheduled_at, skip_deliverability_check, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11, ?10, ?10)",
        vec![
            tenancy.id.clone().into(),
            id.into(),
            email.tsx_source.into(),
            email.is_high_priority.into(),
            email.recipient.to_json().to_string().into(),
            email.variables.to_string().into(),
            email.override_subject.into(),
            email.is_transactional.into(),
            email.scheduled_at.unwrap_or(now).into(),
            now.into(),
            email.skip_deliverability_check.into(),
        ],
    )
}

/// The status of a row as SQL (upstream's CASE, first match wins), upper case; the one
/// definition, used to filter and to show. A macro as well, for `concat!` into static SQL.
#[macro_export]
macro_rules! email_status_sql {
    () => {
        "CASE \
    WHEN is_paused = 1 THEN 'PAUSED' \
    WHEN skipped_reason IS NOT NULL THEN 'SKIPPED' \
    WHEN started_rendering_at IS NULL THEN 'PREPARING' \
    WHEN finished_rendering_at IS NULL THEN 'RENDERING' \
    WHEN render_error_external_message IS NOT NULL THEN 'RENDER_ERROR' \
    WHEN started_sending_at IS NULL AND is_queued = 0 THEN 'SCHEDULED' \
    WHEN started_sending_at IS NULL THEN 'QUEUED' \
    WHEN finished_sending_at IS NULL THEN 'SENDING' \
    WHEN send_server_error_external_message IS NOT NULL THEN 'SERVER_ERROR' \
    ELSE 'SENT' END"
    };
}
pub const STATUS_SQL: &str = email_status_sql!();

/// ISO 8601 in UTC with milliseconds, as upstream's `Date.toISOString()`.
pub fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// `simpleStatus`: OK, ERROR or IN_PROGRESS.
pub fn simple_status(status: &str) -> &'static str {
    match status {
        "SKIPPED" | "SENT" => "OK",
        "RENDER_ERROR" | "SERVER_ERROR" | "BOUNCED" => "ERROR",
        _ => "IN_PROGRESS",
    }
}

/// Renders a template: `{{ name }}` placeholders from `variables` (HTML-escaped), the subject
/// from `override_subject` or the `<title>`. An unknown variable is a render error.
pub fn render(
    source: &str,
    variables: &Value,
    override_subject: Option<&str>,
) -> Result<(String, String, String), String> {
    let mut html = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        html.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("an unclosed {{ placeholder")? + start;
        let name = rest[start + 2..end].trim();
        let value = variables.get(name).ok_or_else(|| format!("the variable \"{name}\" is not set"))?;
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        html.push_str(&escape_html(&text));
        rest = &rest[end + 2..];
    }
    html.push_str(rest);
    let title =
        html.find("<title>").and_then(|s| html[s + 7..].find("</title>").map(|e| html[s + 7..s + 7 + e].to_string()));
    let subject = override_subject.map(str::to_string).or(title).unwrap_or_default();
    let text = strip_tags(&html);
    Ok((subject, html, text))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The text version: tags removed, whitespace collapsed, the `<title>` left out.
fn strip_tags(html: &str) -> String {
    let body = match (html.find("<title>"), html.find("</title>")) {
        (Some(s), Some(e)) if e > s => format!("{}{}", &html[..s], &html[e + 8..]),
        _ => html.to_string(),
    };
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

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

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StepReport {
    pub rendered: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    pub skipped: usize,
    pub stuck_failed: usize,
}

/// One pass of the queue (contract §5.2).
pub async fn queue_step(
    ctx: &Context,
    mailer: &dyn Mailer,
    settings: &QueueSettings,
) -> Result<StepReport, StoreError> {
    let worker = new_uuid(ctx.random.as_ref());
    let now = ctx.now();
    let mut report = StepReport::default();
    let delta_seconds = seconds_since_last_pass(ctx, now).await?;

    // Claim rows to render, render them, save only what this worker still owns. The claim is
    // fair across tenancies: each one's oldest email first, then each one's second, ...; one
    // tenancy's backlog never delays another's renders by more than a pass.
    ctx.store
        .execute(
            "UPDATE email_outbox SET rendered_by_worker_id = ?1, started_rendering_at = ?2, updated_at = ?2 \
             WHERE rowid IN (SELECT rowid FROM (SELECT rowid, created_at, \
                 row_number() OVER (PARTITION BY tenancy_id ORDER BY created_at) AS turn \
               FROM email_outbox WHERE rendered_by_worker_id IS NULL AND is_paused = 0) \
             ORDER BY turn, created_at LIMIT ?3)",
            vec![worker.clone().into(), now.into(), RENDER_BATCH.into()],
        )
        .await?;
    let to_render = ctx
        .store
        .query(
            "SELECT tenancy_id, id, tsx_source, variables, override_subject, recipient, is_transactional \
             FROM email_outbox WHERE rendered_by_worker_id = ? AND finished_rendering_at IS NULL",
            &[worker.clone().into()],
        )
        .await?;
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
            (Ok((subject, html, text)), Some(user_id)) if category.can_disable => {
                let code = unsubscribe_code(&ctx.config.server_secret, &tenancy_id, &user_id, category);
                let link = format!("{}/api/v1/emails/unsubscribe-link?code={code}", ctx.config.api_url);
                let html = format!("{html}<p><a href=\"{}\">Unsubscribe</a></p>", escape_html(&link));
                Ok((subject, html, format!("{text}\n\nUnsubscribe: {link}")))
            }
            (rendered, _) => rendered,
        };
        let statement = match rendered {
            Ok((subject, html, text)) => Statement::new(
                "UPDATE email_outbox SET rendered_subject = ?1, rendered_html = ?2, rendered_text = ?3, \
                 finished_rendering_at = ?4, updated_at = ?4 WHERE tenancy_id = ?5 AND id = ?6 AND rendered_by_worker_id = ?7",
                vec![subject.into(), html.into(), text.into(), now.into(), tenancy_id.into(), id.into(), worker.clone().into()],
            ),
            Err(error) => Statement::new(
                "UPDATE email_outbox SET render_error_external_message = ?1, render_error_internal_message = ?2, \
                 finished_rendering_at = ?3, updated_at = ?3 WHERE tenancy_id = ?4 AND id = ?5 AND rendered_by_worker_id = ?6",
                vec![RENDER_ERROR.into(), error.into(), now.into(), tenancy_id.into(), id.into(), worker.clone().into()],
            ),
        };
        ctx.store.batch(&[statement]).await?;
        report.rendered += 1;
    }

    // Rendering that never finished is claimed again; rendered, due rows are queued (a retry's
    // due time is cleared as it is queued).
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

    // Per tenancy, claim up to its quota for this pass, then send.
    let tenancies = ctx
        .store
        .query(
            "SELECT DISTINCT tenancy_id FROM email_outbox WHERE is_queued = 1 AND started_sending_at IS NULL \
             AND finished_sending_at IS NULL AND is_paused = 0 AND skipped_reason IS NULL",
            &[],
        )
        .await?;
    for tenancy in &tenancies {
        let capacity = tenancy_capacity(ctx, &tenancy.text("tenancy_id")?, settings.capacity_per_hour).await?;
        let quota = stochastic_round(ctx, capacity.per_hour() / 3600.0 * delta_seconds);
        if quota <= 0 {
            continue;
        }
        ctx.store
            .execute(
                "UPDATE email_outbox SET started_sending_at = ?1, sending_worker_id = ?2, updated_at = ?1 \
                 WHERE rowid IN (SELECT rowid FROM email_outbox WHERE tenancy_id = ?3 AND is_queued = 1 \
                 AND started_sending_at IS NULL AND finished_sending_at IS NULL AND is_paused = 0 \
                 AND skipped_reason IS NULL ORDER BY is_high_priority * 100 + is_transactional * 10 DESC, \
                 scheduled_at, created_at LIMIT ?4)",
                vec![now.into(), worker.clone().into(), tenancy.text("tenancy_id")?.into(), quota.into()],
            )
            .await?;
    }
    let claimed = ctx
        .store
        .query(
            "SELECT tenancy_id, id, recipient, is_transactional, skip_deliverability_check, rendered_subject, \
             rendered_html, rendered_text, send_retries, send_attempt_errors FROM email_outbox WHERE sending_worker_id = ? AND started_sending_at = ? \
             AND finished_sending_at IS NULL",
            &[worker.clone().into(), now.into()],
        )
        .await?;
    // Each tenancy's mail server, read once per pass.
    let mut servers = HashMap::new();
    for row in &claimed {
        let tenancy_id = row.text("tenancy_id")?;
        if let Entry::Vacant(slot) = servers.entry(tenancy_id.clone()) {
            slot.insert(tenancy_mail_server(ctx, &tenancy_id, settings).await?);
        }
    }
    // Several sends at once: each waits on the mail server most of the time.
    let outcomes: Vec<Result<Outcome, StoreError>> = futures_util::stream::iter(claimed.iter())
        .map(|row| send_one(ctx, mailer, &servers, settings.emailable.as_ref(), row))
        .buffer_unordered(SEND_CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome? {
            Outcome::Sent => report.sent += 1,
            Outcome::Retried => report.retried += 1,
            Outcome::Failed => report.failed += 1,
            Outcome::Skipped => report.skipped += 1,
        }
    }
    report.stuck_failed = fail_emails_stuck_in_sending(ctx).await?;
    Ok(report)
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

/// Emails finished without error or skip over the windows the capacity looks at. Bounces and
/// spam reports are not tracked (no delivery webhooks here; upstream's worker never records
/// them either), so they count as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeliveryStats {
    pub hour: i64,
    pub day: i64,
    pub week: i64,
    pub month: i64,
}

pub async fn delivery_stats(ctx: &Context, tenancy_id: &str) -> Result<DeliveryStats, StoreError> {
    const HOUR: i64 = 3_600_000;
    let now = ctx.now();
    let rows = ctx
        .store
        .query(
            "SELECT COALESCE(SUM(finished_sending_at >= ?1), 0) AS hour, COALESCE(SUM(finished_sending_at >= ?2), 0) AS day, \
             COALESCE(SUM(finished_sending_at >= ?3), 0) AS week, COUNT(*) AS month FROM email_outbox \
             WHERE tenancy_id = ?5 AND finished_sending_at >= ?4 AND send_server_error_external_message IS NULL \
             AND skipped_reason IS NULL",
            &[(now - HOUR).into(), (now - 24 * HOUR).into(), (now - 7 * 24 * HOUR).into(), (now - 30 * 24 * HOUR).into(), tenancy_id.into()],
        )
        .await?;
    let row = rows.first().ok_or_else(|| StoreError::Decode("no statistics row".into()))?;
    Ok(DeliveryStats { hour: row.int("hour")?, day: row.int("day")?, week: row.int("week")?, month: row.int("month")? })
}

/// A tenancy's send capacity (§5.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Before growth: the process default.
    pub default_per_hour: f64,
    pub sent_last_month: i64,
    /// 1 without bounces or spam reports (see [`DeliveryStats`]).
    pub penalty: f64,
    /// When the running boost ends, if one runs.
    pub boost_expires_at: Option<i64>,
}

impl Capacity {
    /// max(baseline × penalty, default ÷ 4), with baseline = default + 4 × sent last month ÷ 720;
    /// four times that while a boost runs.
    pub fn per_hour(&self) -> f64 {
        let baseline = self.default_per_hour + 4.0 * self.sent_last_month as f64 / 720.0;
        let rate = (baseline * self.penalty).max(self.default_per_hour / 4.0);
        if self.boost_expires_at.is_some() {
            rate * BOOST_MULTIPLIER
        } else {
            rate
        }
    }
}

/// How much a capacity boost multiplies the rate, and how long it lasts.
pub const BOOST_MULTIPLIER: f64 = 4.0;
pub const BOOST_DURATION_MS: i64 = 4 * 3_600_000;

pub async fn tenancy_capacity(ctx: &Context, tenancy_id: &str, default_per_hour: f64) -> Result<Capacity, StoreError> {
    let stats = delivery_stats(ctx, tenancy_id).await?;
    Ok(Capacity {
        default_per_hour,
        sent_last_month: stats.month,
        penalty: 1.0,
        boost_expires_at: active_boost(ctx, tenancy_id).await?,
    })
}

/// When the tenancy's running capacity boost ends (`None`: no boost runs).
pub async fn active_boost(ctx: &Context, tenancy_id: &str) -> Result<Option<i64>, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT expires_at FROM email_capacity_boosts WHERE tenancy_id = ? AND expires_at > ?",
            &[tenancy_id.into(), ctx.now().into()],
        )
        .await?;
    rows.first().map(|row| row.int("expires_at")).transpose()
}

/// Starts a boost unless one runs: one conditional upsert, so two concurrent calls cannot both
/// start one. `Err(expires_at)` when a boost already runs.
pub async fn start_boost(ctx: &Context, tenancy_id: &str) -> Result<Result<i64, i64>, StoreError> {
    let now = ctx.now();
    let expires_at = now + BOOST_DURATION_MS;
    let changed = ctx
        .store
        .execute(
            "INSERT INTO email_capacity_boosts (tenancy_id, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (tenancy_id) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE email_capacity_boosts.expires_at <= ?3",
            vec![tenancy_id.into(), expires_at.into(), now.into()],
        )
        .await?;
    if changed == 1 {
        return Ok(Ok(expires_at));
    }
    Ok(Err(active_boost(ctx, tenancy_id).await?.unwrap_or(expires_at)))
}

/// The first address Emailable calls undeliverable, as a skip (reason, details). An answer
/// that cannot be read, or no answer, lets the email go: the check may not lose mail.
async fn undeliverable(ctx: &Context, emailable: &Emailable, to: &[String]) -> Option<(&'static str, Value)> {
    for email in to {
        let mut url = match url::Url::parse(&format!("{}/verify", emailable.api_url.trim_end_matches('/'))) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "the Emailable URL is not valid; deliverability not checked");
                return None;
            }
        };
        url.query_pairs_mut().append_pair("email", email).append_pair("api_key", &emailable.api_key);
        let request = http::Request::get(url.as_str()).body(Vec::new()).expect("a valid request");
        let answer = match ctx.http.send(request).await {
            Ok(response) if response.status() == 200 => serde_json::from_slice::<Value>(response.body()).ok(),
            Ok(response) => {
                tracing::warn!(status = response.status().as_u16(), "Emailable refused a check; sending anyway");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "Emailable could not be reached; sending anyway");
                None
            }
        };
        if let Some(answer) = answer.filter(|a| a["state"] == "undeliverable") {
            return Some(("LIKELY_NOT_DELIVERABLE", json!({ "emailableResponse": answer, "email": email })));
        }
    }
    None
}

/// The mail server of a tenancy's project, from its rendered environment config (contract §5.6).
async fn tenancy_mail_server(
    ctx: &Context,
    tenancy_id: &str,
    settings: &QueueSettings,
) -> Result<Result<MailServer, String>, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT t.project_id, t.branch_id, p.display_name FROM tenancies t JOIN projects p ON p.id = t.project_id \
             WHERE t.id = ?",
            &[tenancy_id.into()],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(Err("the project no longer exists".into())) };
    let tenancy =
        Tenancy { id: tenancy_id.to_string(), project_id: row.text("project_id")?, branch_id: row.text("branch_id")? };
    let overrides = config_store::load(ctx, &tenancy).await?;
    let config = render_config(&overrides.up_to(Level::Environment)).config;
    Ok(mail_server(
        &config["emails"]["server"],
        &row.text("display_name")?,
        settings.shared_server.as_ref(),
        &settings.resend,
    ))
}

/// `x` rounded down, plus one with probability equal to its fraction.
fn stochastic_round(ctx: &Context, x: f64) -> i64 {
    let whole = x.floor();
    let mut byte = [0u8; 4];
    ctx.random.fill(&mut byte);
    let uniform = u32::from_le_bytes(byte) as f64 / u32::MAX as f64;
    whole as i64 + i64::from(uniform < x - whole)
}

enum Outcome {
    Sent,
    Retried,
    Failed,
    Skipped,
}

/// Resolves the recipients of a claimed row, sends it, and records what happened (every write
/// guarded by `finished_sending_at IS NULL`).
async fn send_one(
    ctx: &Context,
    mailer: &dyn Mailer,
    servers: &HashMap<String, Result<MailServer, String>>,
    emailable: Option<&Emailable>,
    row: &SqlRow,
) -> Result<Outcome, StoreError> {
    let (tenancy_id, id) = (row.text("tenancy_id")?, row.text("id")?);
    let now = ctx.now();
    let recipient: Value =
        serde_json::from_str(&row.text("recipient")?).map_err(|e| StoreError::Decode(e.to_string()))?;
    let category = category_of(row.bool("is_transactional")?);
    let server = servers.get(&tenancy_id);
    let check = match (emailable, server) {
        (Some(emailable), Some(Ok(server))) if server.kind == ServerKind::Shared => {
            (!row.bool("skip_deliverability_check")?).then_some(emailable)
        }
        _ => None,
    };
    let resolved = match resolve(ctx, &tenancy_id, &recipient, category).await? {
        Ok(to) => match check {
            Some(emailable) => undeliverable(ctx, emailable, &to).await.map_or(Ok(to), Err),
            None => Ok(to),
        },
        skipped => skipped,
    };
    let to = match resolved {
        Ok(to) => to,
        Err((reason, details)) => {
            ctx.store
                .execute(
                    "UPDATE email_outbox SET skipped_reason = ?1, skipped_details = ?2, updated_at = ?3 \
                     WHERE tenancy_id = ?4 AND id = ?5 AND skipped_reason IS NULL AND finished_sending_at IS NULL",
                    vec![reason.into(), details.to_string().into(), now.into(), tenancy_id.into(), id.into()],
                )
                .await?;
            return Ok(Outcome::Skipped);
        }
    };
    let server = match server {
        Some(Ok(server)) => server,
        Some(Err(problem)) => {
            let failure = SendFailure { error_type: "EMAIL_CONFIG", retryable: false, message: problem.clone() };
            return record_failure(ctx, row, &tenancy_id, &id, failure, Some(CONFIG_ERROR)).await;
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
    let failure = match mailer.send(server, &email).await {
        Ok(()) => {
            ctx.store
                .execute(
                    "UPDATE email_outbox SET finished_sending_at = ?1, can_have_delivery_info = 0, \
                     send_server_error_external_message = NULL, send_server_error_external_details = NULL, \
                     send_server_error_internal_message = NULL, send_server_error_internal_details = NULL, \
                     updated_at = ?1 WHERE tenancy_id = ?2 AND id = ?3 AND finished_sending_at IS NULL",
                    vec![now.into(), tenancy_id.into(), id.into()],
                )
                .await?;
            return Ok(Outcome::Sent);
        }
        Err(failure) => failure,
    };
    record_failure(ctx, row, &tenancy_id, &id, failure, None).await
}

/// Records a failed attempt: a retry later when the class allows and attempts remain, else a
/// terminal server error. `external` replaces the message users see (upstream's text for
/// failures that are the project's configuration, not the mail server's answer).
async fn record_failure(
    ctx: &Context,
    row: &SqlRow,
    tenancy_id: &str,
    id: &str,
    failure: SendFailure,
    external: Option<&str>,
) -> Result<Outcome, StoreError> {
    let now = ctx.now();
    // Users see the failure's class, never the server's raw answer: a project's own server can
    // point anywhere, and the raw text would report what was found there.
    let external_message = external
        .map(str::to_string)
        .unwrap_or_else(|| format!("The email could not be sent ({}).", failure.error_type));
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
        ctx.store
            .execute(
                "UPDATE email_outbox SET started_sending_at = NULL, sending_worker_id = NULL, is_queued = 0, \
                 send_retries = ?1, next_send_retry_at = ?2, send_attempt_errors = ?3, updated_at = ?4 \
                 WHERE tenancy_id = ?5 AND id = ?6 AND finished_sending_at IS NULL",
                vec![attempt.into(), (now + backoff).into(), errors.into(), now.into(), tenancy_id.into(), id.into()],
            )
            .await?;
        return Ok(Outcome::Retried);
    }
    let reason = if failure.retryable { "attempts_exhausted" } else { "permanent_error" };
    ctx.store
        .execute(
            "UPDATE email_outbox SET finished_sending_at = ?1, can_have_delivery_info = 0, send_retries = ?2, \
             next_send_retry_at = NULL, send_attempt_errors = ?3, send_server_error_external_message = ?4, \
             send_server_error_external_details = ?5, send_server_error_internal_message = ?9, \
             send_server_error_internal_details = ?6, updated_at = ?1 \
             WHERE tenancy_id = ?7 AND id = ?8 AND finished_sending_at IS NULL",
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
            ],
        )
        .await?;
    Ok(Outcome::Failed)
}

/// 20 s x 2^attempt x uniform(0.5, 1.5).
fn retry_backoff_ms(ctx: &Context, attempt: i64) -> i64 {
    let mut byte = [0u8; 4];
    ctx.random.fill(&mut byte);
    let jitter = 0.5 + u32::from_le_bytes(byte) as f64 / u32::MAX as f64;
    (20_000.0 * 2f64.powi(attempt as i32) * jitter) as i64
}

/// The addresses a row goes to, or why it is skipped (reason, details).
async fn resolve(
    ctx: &Context,
    tenancy_id: &str,
    to: &Value,
    category: Category,
) -> Result<Result<Vec<String>, (&'static str, Value)>, StoreError> {
    let recipient = match Recipient::from_json(to) {
        Ok(r) => r,
        Err(_) => return Ok(Err(("NO_EMAIL_PROVIDED", json!({})))),
    };
    let (user_id, custom) = match recipient {
        Recipient::CustomEmails { emails } if emails.is_empty() => return Ok(Err(("NO_EMAIL_PROVIDED", json!({})))),
        Recipient::CustomEmails { emails } => return Ok(Ok(emails)),
        Recipient::UserPrimaryEmail { user_id } => (user_id, None),
        Recipient::UserCustomEmails { user_id, emails } => (user_id, Some(emails)),
    };
    let user = crate::identity::users::get_user(ctx, tenancy_id, &user_id).await?;
    let Some(user) = user else { return Ok(Err(("USER_ACCOUNT_DELETED", json!({ "user_id": user_id })))) };
    if !is_enabled(ctx, tenancy_id, &user_id, category).await? {
        let details = json!({ "user_id": user_id, "notification_category_id": category.id });
        return Ok(Err(("USER_UNSUBSCRIBED", details)));
    }
    match (custom, user.primary_email) {
        (Some(emails), _) if !emails.is_empty() => Ok(Ok(emails)),
        (Some(_), Some(primary)) => Ok(Ok(vec![primary])),
        (Some(_), None) => Ok(Err(("NO_EMAIL_PROVIDED", json!({ "user_id": user_id })))),
        (None, Some(primary)) => Ok(Ok(vec![primary])),
        (None, None) => Ok(Err(("USER_HAS_NO_PRIMARY_EMAIL", json!({ "user_id": user_id })))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_substitute_escape_and_take_the_title_as_subject() {
        let (subject, html, text) =
            render("<title>Hi {{ name }}</title><p>Code: {{code}}</p>", &json!({ "name": "A&B", "code": 42 }), None)
                .unwrap();
        assert_eq!(subject, "Hi A&amp;B");
        assert_eq!(html, "<title>Hi A&amp;B</title><p>Code: 42</p>");
        assert_eq!(text, "Code: 42");
        assert_eq!(render("x", &json!({}), Some("Override")).unwrap().0, "Override");
        assert!(render("{{ missing }}", &json!({}), None).unwrap_err().contains("missing"));
    }

    #[test]
    fn recipients_and_addresses_are_checked() {
        assert!(is_email("a@example.com"));
        for bad in ["a", "a@b", "@example.com", "a b@example.com", "a@example.com,b@example.com"] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(Recipient::from_json(&json!({ "type": "custom-emails", "emails": ["not an email"] })).is_err());
        assert!(Recipient::from_json(&json!({ "type": "fax" })).is_err());
        let r = Recipient::from_json(
            &json!({ "type": "user-primary-email", "user_id": "6F1D2C9E-3B7A-4C61-9D8E-0A1B2C3D4E5F" }),
        )
        .unwrap();
        assert_eq!(r.to_json()["user_id"], "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f");
    }

    #[test]
    fn capacity_grows_with_sent_mail_has_a_floor_and_boosts_four_times() {
        let capacity = |sent, penalty, boost| {
            Capacity { default_per_hour: 200.0, sent_last_month: sent, penalty, boost_expires_at: boost }.per_hour()
        };
        assert_eq!(capacity(0, 1.0, None), 200.0);
        assert_eq!(capacity(7200, 1.0, None), 240.0);
        assert_eq!(capacity(7200, 0.1, None), 50.0, "never below a quarter of the default");
        assert_eq!(capacity(7200, 0.5, None), 120.0);
        assert_eq!(capacity(0, 1.0, Some(1)), 800.0);
    }

    #[test]
    fn simple_statuses_follow_upstream() {
        assert_eq!(simple_status("SENT"), "OK");
        assert_eq!(simple_status("SKIPPED"), "OK");
        assert_eq!(simple_status("SERVER_ERROR"), "ERROR");
        assert_eq!(simple_status("QUEUED"), "IN_PROGRESS");
    }
}
