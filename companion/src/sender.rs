//! The email sender role: a stateless loop over the emails function's sender routes
//! (docs/api.md §5.9). A pass claims what is ready (answering the claim, the function renders,
//! queues, takes each tenancy's quota and ends stuck sends, all in its own store), sends each
//! claim over SMTP, and reports every result. The sender keeps nothing: any number of them, on
//! any machines, share one outbox, and one that dies leaves its claims to the 20-minute stuck
//! rule. Natively the sender talks HTTP to the function too (`dev` points it at its own port):
//! one protocol on every runtime.
//!
//! Polling: after a pass that claimed something the next starts at once (short polls while
//! there is work; docs/benchmarks.md has the figures); after an empty claim, and at start, the
//! sender waits `poll`. Shutdown lets the pass in flight finish its sends and its report.
//!
//! The sender also serves upstream's cron route, `GET /api/v1/internal/email-queue-step`
//! (docs/api.md §5.3, `Authorization: Bearer <CRON_SECRET>`): passes on demand.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;

use shared::adapters::smtp::SmtpMailer;
use shared::email::Claim;
use shared::http::error::KnownError;
use shared::store::ports::Mailer;
use shared::{Request, Response};

/// Upstream's cron route, served by the sender.
pub const QUEUE_STEP_PATH: &str = "/api/v1/internal/email-queue-step";
/// How long one call of the cron route keeps running passes (unless `only_one_step=true`).
const ROUTE_BUDGET: Duration = Duration::from_secs(120);
/// Emails one sender sends at the same time (each waits on the mail server most of the time).
const SEND_CONCURRENCY: usize = 8;
/// Rows a sender claims at a time: a few rounds of its concurrent sends, so that senders share
/// a backlog (one claim taking everything would leave the others idle) — docs/benchmarks.md.
const CLAIM_ROWS: usize = 50;
/// The most results the function takes in one report.
const REPORT_CHUNK: usize = 1_000;
/// Attempts at delivering a report before its rows are left to the stuck rule.
const REPORT_ATTEMPTS: u32 = 3;
/// The wait after an empty claim, unless told otherwise: the rhythm of upstream's cron.
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);
/// How long a claim or a report may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a sender works and with what.
#[derive(Clone)]
pub struct SenderSettings {
    /// The base URL of the emails function (a Worker, a component, or a native host).
    pub function_url: String,
    /// `STACK_COMPANION_SECRET`, presented to the function's sender routes.
    pub secret: String,
    /// `CRON_SECRET`, required by the cron route (`None`: the route answers 503).
    pub cron_secret: Option<String>,
    /// `STACK_SMTP_ALLOWED_HOSTS`, as the mail servers' address rule exempts them.
    pub smtp_allowed_hosts: Vec<String>,
    /// The wait after an empty claim.
    pub poll: Duration,
}

/// A sender: the settings, an HTTP client for the function, and the SMTP mailer.
pub struct Sender {
    settings: SenderSettings,
    http: reqwest::Client,
    mailer: SmtpMailer,
}

/// What one pass did, as the function recorded it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    /// Claims received.
    pub claimed: usize,
    /// Emails the mail server accepted.
    pub sent: usize,
    /// Failed attempts the function will retry.
    pub retried: usize,
    /// Emails that failed for good.
    pub failed: usize,
    /// Results the function refused (the claim no longer held the row).
    pub refused: usize,
}

impl Sender {
    /// A sender with its own HTTP client.
    pub fn new(settings: SenderSettings) -> Sender {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().expect("an HTTP client");
        let mailer = SmtpMailer::new(settings.smtp_allowed_hosts.clone());
        Sender { settings, http, mailer }
    }

    /// One pass: claim, send, report.
    pub async fn pass(&self) -> Result<PassReport, String> {
        let started = Instant::now();
        let answer = self.call("claim", &json!({ "max": CLAIM_ROWS })).await?;
        let claimed_at = started.elapsed();
        let claim_id = answer["claim_id"].as_str().ok_or("the claim answer has no claim_id")?.to_string();
        let claims: Vec<Claim> =
            serde_json::from_value(answer["claims"].clone()).map_err(|e| format!("the claim answer: {e}"))?;
        let mut report = PassReport { claimed: claims.len(), ..PassReport::default() };
        let results: Vec<Value> = futures_util::stream::iter(&claims)
            .map(|c| self.send(c))
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let sent_at = started.elapsed();
        for chunk in results.chunks(REPORT_CHUNK) {
            let answer = self.report(&claim_id, chunk).await?;
            for result in answer["results"].as_array().into_iter().flatten() {
                match result["status"].as_str() {
                    Some("sent") => report.sent += 1,
                    Some("retried") => report.retried += 1,
                    Some("failed") => report.failed += 1,
                    _ => report.refused += 1,
                }
            }
        }
        tracing::debug!(claims = claims.len(), ?claimed_at, ?sent_at, reported_at = ?started.elapsed(), "pass timing");
        Ok(report)
    }

    /// Sends one claim; its result as the report route takes it.
    async fn send(&self, claim: &Claim) -> Value {
        let (tenancy_id, email_id) = (&claim.tenancy_id, &claim.email_id);
        match self.mailer.send(&claim.server, &claim.email).await {
            Ok(()) => json!({ "tenancy_id": tenancy_id, "email_id": email_id, "sent": true }),
            Err(failure) => json!({
                "tenancy_id": tenancy_id, "email_id": email_id, "sent": false, "error_type": failure.error_type,
                "retryable": failure.retryable, "message": failure.message,
            }),
        }
    }

    /// Reports results, retrying a report that did not arrive. A report that never arrives
    /// leaves its rows in sending; the stuck rule ends them as delivery unknown (never resent).
    async fn report(&self, claim_id: &str, results: &[Value]) -> Result<Value, String> {
        let body = json!({ "claim_id": claim_id, "results": results });
        let mut attempt = 1;
        loop {
            match self.call("report", &body).await {
                Ok(answer) => return Ok(answer),
                Err(e) if attempt < REPORT_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "a report did not arrive; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(format!("the report of {} results did not arrive: {e}", results.len())),
            }
        }
    }

    /// `POST <function>/api/v1/internal/email-sender/<route>` with the companion secret.
    async fn call(&self, route: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}/api/v1/internal/email-sender/{route}", self.settings.function_url);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.settings.secret)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{route}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{route}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{route}: the function answered {status}: {}",
                text.chars().take(200).collect::<String>()
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("{route}: {e}"))
    }

    /// A pass, logged; whether it claimed anything.
    async fn logged_pass(&self) -> bool {
        match self.pass().await {
            Ok(report) if report.claimed > 0 => {
                tracing::info!(?report, "email sender pass");
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "email sender pass failed");
                false
            }
        }
    }
}

/// Passes until shutdown: the first after `poll`, then back to back while there is work and
/// `poll` apart otherwise. A pass in flight at shutdown finishes (its sends and its report)
/// first.
pub async fn sender_loop(sender: Rc<Sender>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(sender.settings.poll) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        while sender.logged_pass().await && !*shutdown.borrow() {}
    }
}

/// `GET /api/v1/internal/email-queue-step[?only_one_step=true]`. The passes run as a task of
/// their own: a caller that hangs up must not cancel a pass halfway through a send.
pub async fn queue_step_route(req: &Request, sender: Rc<Sender>) -> Response {
    let Some(secret) = sender.settings.cron_secret.clone() else {
        return shared::http::text(503, "The email queue route is not configured (CRON_SECRET).");
    };
    let Some(authorization) = shared::http::header(req, "authorization") else {
        let message =
            format!("Request validation failed on GET {QUEUE_STEP_PATH}:\n  - headers.authorization must be defined");
        return KnownError::schema_error(message).into_response();
    };
    if !shared::identity::crypto::ct_eq(authorization, &format!("Bearer {secret}")) {
        return shared::http::text(401, "Unauthorized");
    }
    let only_one = shared::http::query_param(req, "only_one_step").as_deref() == Some("true");
    let passes = tokio::task::spawn_local(async move {
        let started = Instant::now();
        loop {
            let report = sender.pass().await?;
            if report.claimed > 0 {
                tracing::info!(?report, "email sender pass");
            }
            if only_one || started.elapsed() >= ROUTE_BUDGET {
                return Ok::<(), String>(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    match passes.await {
        Ok(Ok(())) => shared::http::json(&json!({ "ok": true })),
        Ok(Err(e)) => shared::http::text(502, &format!("the queue pass failed: {e}")),
        Err(e) => shared::http::text(500, &format!("the queue pass failed: {e}")),
    }
}
