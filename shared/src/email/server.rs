//! Which mail server a project's emails go through (docs/api.md §5.6): the environment
//! config's `emails.server` becomes a [`MailServer`] — the shared server from the process
//! environment, the managed one (Resend's SMTP front with the project's scoped key), or the
//! project's own SMTP server (`resend` is plain SMTP to Resend, as upstream treats it). Also the
//! endpoints of the services around sending (Resend's SMTP front, Emailable's verify API).

use serde_json::Value;

use crate::store::ports::{MailServer, ServerKind};

/// The shared server every project without its own uses (`STACK_EMAIL_*`).
#[derive(Clone)]
pub struct SharedServer {
    /// The server's host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The SMTP user, if it needs one.
    pub username: Option<String>,
    /// That user's password.
    pub password: Option<String>,
    /// The sender address emails go out as.
    pub sender_email: String,
}

/// Where managed domains send: `smtp.resend.com:465` (overridable for tests and proxies).
#[derive(Debug, Clone)]
pub struct ResendEndpoint {
    /// The host.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// Emailable's verify API: `GET {api_url}/verify?email=...&api_key=...`.
#[derive(Clone)]
pub struct Emailable {
    /// The API's base URL.
    pub api_url: String,
    /// The API key.
    pub api_key: String,
}

impl Default for ResendEndpoint {
    fn default() -> Self {
        ResendEndpoint { host: "smtp.resend.com".into(), port: 465 }
    }
}

/// The server for a project whose rendered `emails.server` is `config` (`Null` when unset).
/// `Err` says what is missing, for the email's internal error message.
pub fn mail_server(
    config: &Value,
    project_name: &str,
    shared: Option<&SharedServer>,
    resend: &ResendEndpoint,
) -> Result<MailServer, String> {
    let text = |key: &str| config[key].as_str().map(str::to_string);
    let required =
        |key: &str| text(key).filter(|v| !v.is_empty()).ok_or_else(|| format!("emails.server.{key} is not set"));
    if config["isShared"].as_bool().unwrap_or(true) {
        let shared = shared.ok_or("the shared email server is not configured (STACK_EMAIL_HOST)")?;
        return Ok(MailServer {
            kind: ServerKind::Shared,
            host: shared.host.clone(),
            port: shared.port,
            username: shared.username.clone(),
            password: shared.password.clone(),
            sender_name: project_name.to_string(),
            sender_email: shared.sender_email.clone(),
        });
    }
    match config["provider"].as_str().unwrap_or("smtp") {
        "managed" => Ok(MailServer {
            kind: ServerKind::Managed,
            host: resend.host.clone(),
            port: resend.port,
            username: Some("resend".into()),
            password: Some(required("password")?),
            // Upstream sends managed mail under the project's name, whatever senderName says.
            sender_name: project_name.to_string(),
            sender_email: format!("{}@{}", required("managedSenderLocalPart")?, required("managedSubdomain")?),
        }),
        provider @ ("smtp" | "resend") => {
            let port = config["port"]
                .as_u64()
                .filter(|p| (1..=65535).contains(p))
                .ok_or("emails.server.port is not a port number")?;
            Ok(MailServer {
                kind: if provider == "smtp" { ServerKind::Smtp } else { ServerKind::Resend },
                host: required("host")?,
                port: port as u16,
                username: Some(required("username")?),
                password: Some(required("password")?),
                sender_name: required("senderName")?,
                sender_email: required("senderEmail")?,
            })
        }
        other => Err(format!("emails.server.provider {other:?} is not one of smtp, resend, managed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shared() -> SharedServer {
        SharedServer {
            host: "mail.example".into(),
            port: 587,
            username: None,
            password: None,
            sender_email: "noreply@example.com".into(),
        }
    }

    #[test]
    fn every_kind_becomes_its_server() {
        let resend = ResendEndpoint::default();
        let s = mail_server(&Value::Null, "Proj", Some(&shared()), &resend).unwrap();
        assert_eq!(
            (s.kind, s.host.as_str(), s.from()),
            (ServerKind::Shared, "mail.example", "\"Proj\" <noreply@example.com>".into())
        );
        assert!(!s.implicit_tls());

        let managed = json!({"isShared": false, "provider": "managed", "password": "re_key", "senderName": "ignored",
                             "managedSubdomain": "mail.acme.com", "managedSenderLocalPart": "hello"});
        let s = mail_server(&managed, "Proj", None, &resend).unwrap();
        assert_eq!(s.kind, ServerKind::Managed);
        assert_eq!((s.host.as_str(), s.port, s.implicit_tls()), ("smtp.resend.com", 465, true));
        assert_eq!((s.username.as_deref(), s.password.as_deref()), (Some("resend"), Some("re_key")));
        assert_eq!(s.from(), "\"Proj\" <hello@mail.acme.com>");

        let own = json!({"isShared": false, "provider": "smtp", "host": "smtp.acme.com", "port": 2465, "username": "u",
                         "password": "p", "senderName": "Acme", "senderEmail": "a@acme.com"});
        let s = mail_server(&own, "Proj", None, &resend).unwrap();
        assert_eq!((s.kind, s.implicit_tls(), s.from()), (ServerKind::Smtp, true, "\"Acme\" <a@acme.com>".into()));
        let mut as_resend = own.clone();
        as_resend["provider"] = json!("resend");
        as_resend["port"] = json!(587);
        let s = mail_server(&as_resend, "Proj", None, &resend).unwrap();
        assert_eq!((s.kind, s.implicit_tls()), (ServerKind::Resend, false));
    }

    #[test]
    fn missing_fields_are_named() {
        let resend = ResendEndpoint::default();
        assert_eq!(
            mail_server(&Value::Null, "P", None, &resend).unwrap_err(),
            "the shared email server is not configured (STACK_EMAIL_HOST)"
        );
        let managed =
            json!({"isShared": false, "provider": "managed", "password": "k", "managedSubdomain": "m.acme.com"});
        assert_eq!(
            mail_server(&managed, "P", None, &resend).unwrap_err(),
            "emails.server.managedSenderLocalPart is not set"
        );
        let own = json!({"isShared": false, "host": "h", "port": 70000});
        assert_eq!(mail_server(&own, "P", None, &resend).unwrap_err(), "emails.server.port is not a port number");
        let own =
            json!({"isShared": false, "host": "h", "port": 25, "username": "u", "password": "p", "senderName": "N"});
        assert_eq!(mail_server(&own, "P", None, &resend).unwrap_err(), "emails.server.senderEmail is not set");
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let server = mail_server(
            &Value::Null,
            "P",
            Some(&SharedServer { password: Some("hunter2".into()), ..shared() }),
            &ResendEndpoint::default(),
        )
        .unwrap();
        assert!(!format!("{server:?}").contains("hunter2"));
    }
}
