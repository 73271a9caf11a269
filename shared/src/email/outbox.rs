//! The outbox rows the API writes: who an email goes to, what is enqueued (one atomic batch),
//! and a row's status as upstream names it.

use serde_json::{json, Value};

use crate::identity::crypto::new_uuid;
use crate::identity::tenancy::Tenancy;
use crate::store::ports::{Statement, StoreError};
use crate::Context;

/// Who an email goes to (upstream's `to` shapes).
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    /// The user's primary email.
    UserPrimaryEmail {
        /// The user.
        user_id: String,
    },
    /// Given addresses, on behalf of a user (their preferences apply).
    UserCustomEmails {
        /// The user.
        user_id: String,
        /// The addresses.
        emails: Vec<String>,
    },
    /// Given addresses, for no user.
    CustomEmails {
        /// The addresses.
        emails: Vec<String>,
    },
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

    /// The recipient in upstream's JSON shape.
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
    /// Who it goes to.
    pub recipient: Recipient,
    /// The template (HTML with `{{ variable }}` placeholders).
    pub tsx_source: String,
    /// The template's variables.
    pub variables: Value,
    /// A subject that replaces the template's `<title>`.
    pub override_subject: Option<String>,
    /// Sent before other emails of the tenancy.
    pub is_high_priority: bool,
    /// Transactional (never unsubscribable) rather than marketing.
    pub is_transactional: bool,
    /// When to send, in milliseconds (`None`: now).
    pub scheduled_at: Option<i64>,
    /// Skip the deliverability check.
    pub skip_deliverability_check: bool,
}

/// Puts one email in the outbox; returns its id.
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
/// The status of a row as SQL (see `email_status_sql!`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn simple_statuses_follow_upstream() {
        assert_eq!(simple_status("SENT"), "OK");
        assert_eq!(simple_status("SKIPPED"), "OK");
        assert_eq!(simple_status("SERVER_ERROR"), "ERROR");
        assert_eq!(simple_status("QUEUED"), "IN_PROGRESS");
    }
}
