//! The email worker: runs queue passes (`shared::email::queue_step`) over SMTP, every minute on
//! its own and on demand through `GET /api/v1/internal/email-queue-step` (contract §5.3,
//! `Authorization: Bearer <CRON_SECRET>`).
//!
//! Configuration (environment): `STACK_EMAIL_HOST` (unset: no email worker), `STACK_EMAIL_PORT`
//! (587), `STACK_EMAIL_USERNAME`, `STACK_EMAIL_PASSWORD`, `STACK_EMAIL_SENDER`,
//! `STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR` (200; 100000 outside production) and `CRON_SECRET`
//! (`mock_cron_secret` outside production, required in production).

use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::adapters::smtp::{SmtpMailer, SmtpSettings};
use shared::context::Environment;
use shared::email::{queue_step, QueueSettings};
use shared::error::KnownError;
use shared::{Context, Request, Response};
use tokio::sync::watch;

/// The route that runs queue passes.
pub const QUEUE_STEP_PATH: &str = "/api/v1/internal/email-queue-step";
/// How long one call of the route keeps running passes (unless `only_one_step=true`).
const ROUTE_BUDGET: Duration = Duration::from_secs(120);
/// The worker's own rhythm.
const PASS_INTERVAL: Duration = Duration::from_secs(60);

/// Everything a worker thread needs to send.
pub struct EmailWorker {
    mailer: SmtpMailer,
    settings: QueueSettings,
    cron_secret: String,
}

/// Process-wide settings, read once.
#[derive(Clone)]
pub struct EmailSettings {
    smtp: SmtpSettings,
    sender: String,
    capacity_per_hour: f64,
    cron_secret: String,
}

impl EmailSettings {
    /// From the environment; `None` without `STACK_EMAIL_HOST`.
    pub fn from_env(environment: Environment) -> Result<Option<EmailSettings>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let Some(host) = var("STACK_EMAIL_HOST") else { return Ok(None) };
        let port = var("STACK_EMAIL_PORT")
            .map(|p| p.parse::<u16>().map_err(|e| format!("STACK_EMAIL_PORT: {e}")))
            .transpose()?;
        let local = matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1");
        let production = environment == Environment::Production;
        let cron_secret = match (var("CRON_SECRET"), production) {
            (Some(secret), _) => secret,
            (None, false) => "mock_cron_secret".into(),
            (None, true) => return Err("CRON_SECRET must be set in production".into()),
        };
        let capacity = match var("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR") {
            Some(c) => c.parse::<f64>().map_err(|e| format!("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR: {e}"))?,
            None if production => 200.0,
            None => 100_000.0,
        };
        Ok(Some(EmailSettings {
            smtp: SmtpSettings {
                host,
                port: port.unwrap_or(587),
                username: var("STACK_EMAIL_USERNAME"),
                password: var("STACK_EMAIL_PASSWORD"),
                require_tls: !local,
            },
            sender: var("STACK_EMAIL_SENDER").unwrap_or_else(|| "noreply@stack-edge.local".into()),
            capacity_per_hour: capacity,
            cron_secret,
        }))
    }

    pub fn worker(&self) -> Result<EmailWorker, String> {
        Ok(EmailWorker {
            mailer: SmtpMailer::new(&self.smtp)?,
            settings: QueueSettings { capacity_per_hour: self.capacity_per_hour, sender: self.sender.clone() },
            cron_secret: self.cron_secret.clone(),
        })
    }
}

impl EmailWorker {
    async fn pass(&self, ctx: &Context) {
        match queue_step(ctx, &self.mailer, &self.settings).await {
            Ok(report) if report != Default::default() => tracing::info!(?report, "email queue pass"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "email queue pass failed"),
        }
    }
}

/// A pass every minute until shutdown (one worker thread runs it).
pub async fn worker_loop(ctx: Context, worker: Rc<EmailWorker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PASS_INTERVAL) => worker.pass(&ctx).await,
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// `GET /api/v1/internal/email-queue-step[?only_one_step=true]`. The passes run as a task of
/// their own: a caller that hangs up must not cancel a pass halfway through a send.
pub async fn queue_step_route(req: &Request, ctx: &Context, worker: Option<Rc<EmailWorker>>) -> Response {
    let Some(worker) = worker else {
        return shared::http::text(503, "Email sending is not configured (STACK_EMAIL_HOST).");
    };
    let Some(authorization) = shared::http::header(req, "authorization") else {
        let message =
            format!("Request validation failed on GET {QUEUE_STEP_PATH}:\n  - headers.authorization must be defined");
        return KnownError::schema_error(message).into_response();
    };
    let expected = format!("Bearer {}", worker.cron_secret);
    if !shared::crypto::ct_eq(authorization, &expected) {
        return shared::http::text(401, "Unauthorized");
    }
    let only_one = shared::http::query_param(req, "only_one_step").as_deref() == Some("true");
    let ctx = ctx.clone();
    let passes = tokio::task::spawn_local(async move {
        let started = Instant::now();
        loop {
            worker.pass(&ctx).await;
            if only_one || started.elapsed() >= ROUTE_BUDGET {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    match passes.await {
        Ok(()) => shared::http::json(&serde_json::json!({ "ok": true })),
        Err(e) => shared::http::text(500, &format!("the queue pass failed: {e}")),
    }
}
