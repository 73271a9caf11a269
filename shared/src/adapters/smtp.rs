//! The mailer over SMTP (feature `native`): `lettre`'s async transport on tokio, with
//! upstream's timeouts, and its error classes (docs/api.md §5.2) decided from the reply
//! code or the connection error. Project-provided servers must resolve to public addresses on
//! mail ports (see [`SmtpMailer`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::store::ports::{MailServer, Mailer, OutgoingEmail, SendFailure, ServerKind};

/// Opens one connection per email. Why not lettre's pool: a send cancelled mid-DATA handed its
/// connection back to the pool, and the next message rode on it (found by the crash test).
///
/// A project's own server (`smtp`, `resend` with its own host) is untrusted input: its host is
/// resolved here, refused when any address is not public (loopback, private, link-local,
/// shared, reserved, ...) and its port must be a mail port, and the connection goes to the
/// address that was checked (no second lookup to rebind). Otherwise a project could use the
/// worker as a port scanner of the operator's network. Operator-configured servers (shared,
/// managed) and the hosts the operator allow-lists are not checked.
pub struct SmtpMailer {
    allowed_hosts: Vec<String>,
}

/// The ports a project's own mail server may use.
pub const MAIL_PORTS: &[u16] = &[25, 465, 587, 2465, 2525, 2587];

impl SmtpMailer {
    /// A mailer that reaches project servers only on public addresses and mail ports, except `allowed_hosts`.
    pub fn new(allowed_hosts: Vec<String>) -> SmtpMailer {
        SmtpMailer { allowed_hosts }
    }

    /// The checked address to connect to, or `None` to connect by name (servers the operator
    /// configured or allow-listed).
    async fn checked_address(&self, server: &MailServer) -> Result<Option<SocketAddr>, SendFailure> {
        let project_server = matches!(server.kind, ServerKind::Smtp | ServerKind::Resend);
        if !project_server || self.allowed_hosts.contains(&server.host) {
            return Ok(None);
        }
        if !MAIL_PORTS.contains(&server.port) {
            let ports: Vec<String> = MAIL_PORTS.iter().map(u16::to_string).collect();
            return Err(failure(
                "PORT_NOT_ALLOWED",
                false,
                format!("port {} is not a mail port ({})", server.port, ports.join(", ")),
            ));
        }
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((server.host.as_str(), server.port))
            .await
            .map_err(|e| failure("HOST_NOT_FOUND", false, format!("{}: {e}", server.host)))?
            .collect();
        if addresses.is_empty() {
            return Err(failure("HOST_NOT_FOUND", false, format!("{} has no address", server.host)));
        }
        if let Some(private) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(failure(
                "HOST_NOT_ALLOWED",
                false,
                format!("{} resolves to {}, which is not a public address", server.host, private.ip()),
            ));
        }
        Ok(addresses.first().copied())
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || (a == 192 && b == 0 && v4.octets()[2] == 0)) // IETF protocol assignments
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
                    || v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
            }
        },
    }
}

/// A transport for `server`: implicit TLS on the SMTPS ports, required STARTTLS elsewhere,
/// except for a server on this machine (plain, as the local test server speaks no TLS). With a
/// checked `address`, the connection goes there and TLS still verifies the server's name.
fn transport(
    server: &MailServer,
    address: Option<SocketAddr>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendFailure> {
    let local = matches!(server.host.as_str(), "localhost" | "127.0.0.1" | "::1");
    let unknown = |e: lettre::transport::smtp::Error| failure("UNKNOWN", false, e.to_string());
    let builder = match address {
        Some(address) => {
            let tls = TlsParameters::new(server.host.clone()).map_err(unknown)?;
            let tls = if server.implicit_tls() { Tls::Wrapper(tls) } else { Tls::Required(tls) };
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
                .port(address.port())
                .tls(tls)
        }
        None if local => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host).port(server.port),
        None if server.implicit_tls() => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host).map_err(unknown)?.port(server.port)
        }
        None => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host).map_err(unknown)?.port(server.port),
    };
    let mut builder = builder.timeout(Some(Duration::from_secs(20)));
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
        let address = self.checked_address(server).await?;
        transport(server, address)?.send(message).await.map(|_| ()).map_err(|e| classify(&e, &server.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ports::SEND_FAILURE_CLASSES;

    /// A class the emails function does not know would make a sender's whole report refused.
    #[test]
    fn every_failure_class_this_adapter_reports_is_a_known_one() {
        let source = include_str!("smtp.rs");
        let classes: Vec<&str> = source.split("failure(\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
        assert!(classes.len() >= 8, "{classes:?}");
        for class in classes {
            assert!(SEND_FAILURE_CLASSES.contains(&class), "{class} is not in SEND_FAILURE_CLASSES");
        }
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
