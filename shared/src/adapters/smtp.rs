//! The mailer over SMTP (feature `native`): `lettre`'s async transport on tokio, with
//! upstream's timeouts, and its error classes (contract part 1, §5.2) decided from the reply
//! code or the connection error.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::email_server::MailServer;
use crate::ports::{Mailer, OutgoingEmail, SendFailure};

/// Opens one connection per email. Why not lettre's pool: a send cancelled mid-DATA handed its
/// connection back to the pool, and the next message rode on it (found by the crash test).
pub struct SmtpMailer;

/// A transport for `server`: implicit TLS on the SMTPS ports, required STARTTLS elsewhere,
/// except for a server on this machine (plain, as the local test server speaks no TLS).
fn transport(server: &MailServer) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendFailure> {
    let local = matches!(server.host.as_str(), "localhost" | "127.0.0.1" | "::1");
    let builder = if server.implicit_tls() && !local {
        AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host)
    } else if local {
        Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host))
    } else {
        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host)
    };
    let builder = builder.map_err(|e| failure("UNKNOWN", false, e.to_string()))?;
    let mut builder = builder.port(server.port).timeout(Some(Duration::from_secs(20)));
    if let (Some(user), Some(password)) = (&server.username, &server.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

fn failure(error_type: &'static str, retryable: bool, message: String) -> SendFailure {
    SendFailure { error_type, retryable, message }
}

/// Upstream's error classes.
fn classify(error: &lettre::transport::smtp::Error, host: &str) -> SendFailure {
    let message = error.to_string();
    let lower = message.to_lowercase();
    if lower.contains("lookup address") || lower.contains("name or service not known") {
        return failure("HOST_NOT_FOUND", false, message);
    }
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
            let reset = lower.contains("connection reset") && host.contains("resend");
            let retry = message.contains("450 ") || message.contains("Too many requests") || reset;
            failure("UNKNOWN", retry, message)
        }
    }
}

#[async_trait(?Send)]
impl Mailer for SmtpMailer {
    async fn send(&self, server: &MailServer, email: &OutgoingEmail) -> Result<(), SendFailure> {
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
        transport(server)?.send(message).await.map(|_| ()).map_err(|e| classify(&e, &server.host))
    }
}
