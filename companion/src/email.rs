//! The email worker: runs queue passes (`shared::email::queue_step`) over SMTP, every minute on
//! its own and on demand through `GET /api/v1/internal/email-queue-step` (docs/api.md §5.3,
//! `Authorization: Bearer <CRON_SECRET>`).
//!
//! Each project's emails go through the server its config names (`shared::email::server`).
//! Configuration (environment): the shared server `STACK_EMAIL_HOST` (unset: projects on the
//! shared server get a configuration error), `STACK_EMAIL_PORT` (587), `STACK_EMAIL_USERNAME`,
//! `STACK_EMAIL_PASSWORD`, `STACK_EMAIL_SENDER`; `STACK_RESEND_SMTP_HOST` / `_PORT` (where
//! managed domains send: `smtp.resend.com:465`); `STACK_EMAILABLE_API_KEY` (unset: no
//! deliverability check) and `STACK_EMAILABLE_API_URL`; and `CRON_SECRET` (`mock_cron_secret` outside
//! production; unset in production: the cron route answers 503). The default capacity is
//! `Config::default_email_capacity_per_hour`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use shared::adapters::smtp::SmtpMailer;
use shared::context::Config;
use shared::email::{queue_step, QueueSettings};
use shared::http::error::KnownError;
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
    cron_secret: Option<String>,
}

/// Process-wide settings, from the one configuration loader.
#[derive(Clone)]
pub struct EmailSettings {
    email: shared::context::EmailConfig,
    capacity_per_hour: f64,
}

impl EmailSettings {
    pub fn from_config(config: &Config) -> EmailSettings {
        EmailSettings { email: config.email.clone(), capacity_per_hour: config.default_email_capacity_per_hour }
    }

    pub fn worker(&self) -> Result<EmailWorker, String> {
        Ok(EmailWorker {
            mailer: SmtpMailer::new(self.email.smtp_allowed_hosts.clone()),
            settings: QueueSettings {
                capacity_per_hour: self.capacity_per_hour,
                shared_server: self.email.shared_server.clone(),
                resend: self.email.resend.clone(),
                emailable: self.email.emailable.clone(),
            },
            cron_secret: self.email.cron_secret.clone(),
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
    let Some((worker, secret)) = worker.and_then(|w| w.cron_secret.clone().map(|s| (w, s))) else {
        return shared::http::text(503, "The email queue route is not configured (CRON_SECRET).");
    };
    let Some(authorization) = shared::http::header(req, "authorization") else {
        let message =
            format!("Request validation failed on GET {QUEUE_STEP_PATH}:\n  - headers.authorization must be defined");
        return KnownError::schema_error(message).into_response();
    };
    let expected = format!("Bearer {secret}");
    if !shared::identity::crypto::ct_eq(authorization, &expected) {
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
