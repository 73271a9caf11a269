//! The mailer over SMTP (feature `native`): `lettre`'s async transport on tokio, with
//! upstream's timeouts, and its error classes (contract part 1, §5.2) decided from the reply
//! code or the connection error.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::ports::{Mailer, OutgoingEmail, SendFailure};

/// Where and how to send.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// STARTTLS is required unless the server is on this machine.
    pub require_tls: bool,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings").field("host", &self.host).field("port", &self.port).finish_non_exhaustive()
    }
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings) -> Result<SmtpMailer, String> {
        let builder = if settings.require_tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host).map_err(|e| e.to_string())?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        };
        let mut builder = builder.port(settings.port).timeout(Some(Duration::from_secs(20)));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(SmtpMailer { transport: builder.build() })
    }
}

fn failure(error_type: &'static str, retryable: bool, message: String) -> SendFailure {
    SendFailure { error_type, retryable, message }
}

/// Upstream's error classes.
fn classify(error: &lettre::transport::smtp::Error) -> SendFailure {
    let message = error.to_string();
    if error.is_timeout() {
        return failure("TIMEOUT", true, message);
    }
    match error.status().map(u16::from) {
        Some(535) => failure("AUTH_FAILED", false, message),
        Some(450) => failure("TEMPORARY", true, message),
        Some(553) => failure("INVALID_EMAIL_ADDRESS", false, message),
        Some(554) => failure("REJECTED", false, message),
        Some(code) if (400..500).contains(&code) => failure("TRANSIENT_NEGATIVE_COMPLETION_REPLY", true, message),
        Some(_) => failure("REJECTED", false, message),
        None => {
            let retry = message.contains("450 ") || message.contains("Too many requests");
            failure("UNKNOWN", retry, message)
        }
    }
}

#[async_trait(?Send)]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendFailure> {
        let invalid = |m: String| failure("INVALID_EMAIL_ADDRESS", false, m);
        let from: Mailbox = email.from.parse().map_err(|e| invalid(format!("sender {}: {e}", email.from)))?;
        let mut builder =
            Message::builder().from(from).subject(&email.subject).message_id(Some(email.message_id.clone()));
        for to in &email.to {
            builder = builder.to(to.parse().map_err(|e| invalid(format!("{to}: {e}")))?);
        }
        let body = MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(email.text.clone()))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(email.html.clone()));
        let message = builder.multipart(body).map_err(|e| failure("UNKNOWN", false, e.to_string()))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| classify(&e))
    }
}
