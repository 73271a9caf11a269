//! The emails sign-in sends (docs/api.md §1.11, §1.12): a sign-in code and a password-reset
//! link, each through the email outbox as a high-priority transactional email, so they are
//! delivered by whichever sender the deployment runs (every runtime), never sent inline.

use serde_json::{json, Value};

use shared::email::{enqueue, is_email, NewEmail, Recipient};
use shared::http::error::{ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::Request;
use shared::identity::passwords::normalized_email;
use shared::identity::tenancy::Tenancy;
use shared::Context;

/// The sign-in code email: the code in the subject and body, and a link that carries it.
pub const SIGN_IN_CODE_TEMPLATE: &str = "<title>Sign in to {{ project_name }}: Your code is {{ otp }}</title>\
<p>Your sign-in code for {{ project_name }} is <strong>{{ otp }}</strong>.</p>\
<p>Or sign in with this link: <a href=\"{{ link }}\">{{ link }}</a></p>\
<p>The code expires in 10 minutes. If you did not ask for it, you can ignore this email.</p>";

/// The password-reset email: a link that carries the reset code.
pub const PASSWORD_RESET_TEMPLATE: &str = "<title>Reset your {{ project_name }} password</title>\
<p>Somebody asked to reset the password of your {{ project_name }} account.</p>\
<p>Choose a new one here: <a href=\"{{ link }}\">{{ link }}</a></p>\
<p>The link expires in one hour. If you did not ask for it, you can ignore this email.</p>";

/// The body both emailing endpoints take, `{email, callback_url}`: the address normalised, and
/// the URL the emailed link starts with.
pub fn email_and_callback(req: &Request) -> ApiResult<(String, String)> {
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["email", "callback_url"]);
    let email = v.string(obj, "email", "body.email", true);
    let callback_url = v.string(obj, "callback_url", "body.callback_url", true);
    if email.as_deref().is_some_and(|e| !is_email(e.trim())) {
        v.fail("body.email must be a valid email".into());
    }
    v.finish()?;
    Ok((normalized_email(&email.expect("validated")), callback_url.expect("validated")))
}

/// `callback_url`, checked against the project's trusted domains, with `code` added to its query.
pub fn link(config: &Value, callback_url: &str, code: &str) -> ApiResult<String> {
    if !shared::config::is_trusted_redirect(config, callback_url) {
        return Err(KnownError::redirect_url_not_whitelisted().into());
    }
    let mut url = url::Url::parse(callback_url).map_err(|_| KnownError::redirect_url_not_whitelisted())?;
    url.query_pairs_mut().append_pair("code", code);
    Ok(url.to_string())
}

/// Enqueues `template` to `to`, with the project's name and `variables`.
pub async fn send(ctx: &Context, tenancy: &Tenancy, to: &str, template: &str, mut variables: Value) -> ApiResult<()> {
    let rows = ctx
        .store
        .query("SELECT display_name FROM projects WHERE id = ?", &[tenancy.project_id.as_str().into()])
        .await?;
    let name = rows.first().map(|r| r.text("display_name")).transpose()?.unwrap_or_default();
    variables["project_name"] = json!(name);
    let email = NewEmail {
        recipient: Recipient::CustomEmails { emails: vec![to.to_string()] },
        tsx_source: template.to_string(),
        variables,
        override_subject: None,
        is_high_priority: true,
        is_transactional: true,
        scheduled_at: None,
        skip_deliverability_check: false,
    };
    enqueue(ctx, tenancy, email).await?;
    Ok(())
}
