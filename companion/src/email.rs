//! The email worker: runs queue passes (`shared::email::queue_step`) over SMTP, every minute on
//! its own and on demand through `GET /api/v1/internal/email-queue-step` (contract §5.3,
//! `Authorization: Bearer <CRON_SECRET>`).
//!
//! Each project's emails go through the server its config names (`shared::email_server`).
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
use shared::context::{Config, Environment};
use shared::email::{queue_step, Emailable, QueueSettings};
use shared::email_server::{ResendEndpoint, SharedServer};
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
    cron_secret: Option<String>,
}

/// Process-wide settings, read once.
#[derive(Clone)]
pub struct EmailSettings {
    shared_server: Option<SharedServer>,
    resend: ResendEndpoint,
    emailable: Option<Emailable>,
    capacity_per_hour: f64,
    cron_secret: Option<String>,
    /// `STACK_SMTP_ALLOWED_HOSTS`: project mail servers exempt from the public-address and
    /// mail-port rules (comma-separated host names or addresses, exactly as configured).
    smtp_allowed_hosts: Vec<String>,
}

impl EmailSettings {
    pub fn from_env(config: &Config) -> Result<EmailSettings, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let port = |k: &str| var(k).map(|p| p.parse::<u16>().map_err(|e| format!("{k}: {e}"))).transpose();
        let production = config.environment == Environment::Production;
        let shared_server = match var("STACK_EMAIL_HOST") {
            Some(host) => Some(SharedServer {
                host,
                port: port("STACK_EMAIL_PORT")?.unwrap_or(587),
                username: var("STACK_EMAIL_USERNAME"),
                password: var("STACK_EMAIL_PASSWORD"),
                sender_email: var("STACK_EMAIL_SENDER").unwrap_or_else(|| "noreply@stack-edge.local".into()),
            }),
            None => None,
        };
        let default_resend = ResendEndpoint::default();
        let resend = ResendEndpoint {
            host: var("STACK_RESEND_SMTP_HOST").unwrap_or(default_resend.host),
            port: port("STACK_RESEND_SMTP_PORT")?.unwrap_or(default_resend.port),
        };
        let emailable = var("STACK_EMAILABLE_API_KEY").map(|api_key| Emailable {
            api_url: var("STACK_EMAILABLE_API_URL").unwrap_or_else(|| "https://api.emailable.com/v1".into()),
            api_key,
        });
        let cron_secret = var("CRON_SECRET").or_else(|| (!production).then(|| "mock_cron_secret".into()));
        let smtp_allowed_hosts = var("STACK_SMTP_ALLOWED_HOSTS")
            .map(|v| v.split(',').map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).collect())
            .unwrap_or_default();
        Ok(EmailSettings {
            smtp_allowed_hosts,
            shared_server,
            resend,
            emailable,
            capacity_per_hour: config.default_email_capacity_per_hour,
            cron_secret,
        })
    }

    pub fn worker(&self) -> Result<EmailWorker, String> {
        Ok(EmailWorker {
            mailer: SmtpMailer::new(self.smtp_allowed_hosts.clone()),
            settings: QueueSettings {
                capacity_per_hour: self.capacity_per_hour,
                shared_server: self.shared_server.clone(),
                resend: self.resend.clone(),
                emailable: self.emailable.clone(),
            },
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
    let Some((worker, secret)) = worker.and_then(|w| w.cron_secret.clone().map(|s| (w, s))) else {
        return shared::http::text(503, "The email queue route is not configured (CRON_SECRET).");
    };
    let Some(authorization) = shared::http::header(req, "authorization") else {
        let message =
            format!("Request validation failed on GET {QUEUE_STEP_PATH}:\n  - headers.authorization must be defined");
        return KnownError::schema_error(message).into_response();
    };
    let expected = format!("Bearer {secret}");
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
