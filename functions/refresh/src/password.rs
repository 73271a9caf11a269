//! Password sign-up, sign-in and change (docs/api.md §1.11).
//!
//! Sign-up stores the user and its credential in one batch, the credential's address unique
//! per tenancy, so two concurrent sign-ups with one email cannot both succeed. Sign-in counts
//! the attempt against the address and the end user's address (when the runtime knows it)
//! before any hashing, then does one argon2id run whether or not the email exists, and
//! answers the same error for both failures.

use serde_json::{json, Value};

use shared::config::store::rendered;
use shared::http::error::{ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, success, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, RequestAuth, ANY_ACCESS};
use shared::identity::crypto::hash_secret;
use shared::identity::passwords::{self, normalized_email};
use shared::identity::sessions::{self, DEFAULT_SESSION_LIFETIME_MS};
use shared::identity::users::{insert_statement, new_user, NewUser, User};
use shared::store::ports::{Statement, StoreError};
use shared::store::rate_limit::{self, Budget};
use shared::Context;

/// Sign-in attempts per address per ten minutes.
pub const ATTEMPTS_PER_EMAIL: Budget = Budget { limit: 10, window_ms: 600_000 };
/// Sign-in attempts per end-user address (IP) per ten minutes.
pub const ATTEMPTS_PER_IP: Budget = Budget { limit: 100, window_ms: 600_000 };
/// The longest email accepted (RFC 5321's path limit).
const MAX_EMAIL_LENGTH: usize = 254;

/// `POST /auth/password/sign-up`: a new user with an email and a password, signed in.
pub async fn sign_up(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let (email, password) = email_and_password(req, &["email", "password", "verification_callback_url"])?;
    let config = enabled_config(ctx, &auth).await?;
    if config["auth"]["allowSignUp"] == Value::Bool(false) {
        return Err(KnownError::sign_up_not_enabled().into());
    }
    if let Some(problem) = passwords::length_problem(&password) {
        return Err(problem.into());
    }
    let email = normalized_email(&email);
    let taken = ctx
        .store
        .query(
            "SELECT 1 FROM users WHERE tenancy_id = ? AND lower(primary_email) = ? LIMIT 1",
            &[auth.tenancy.id.as_str().into(), email.as_str().into()],
        )
        .await?;
    if !taken.is_empty() {
        return Err(KnownError::user_email_already_exists(&email).into());
    }
    let user = new_user(ctx, NewUser { display_name: None, primary_email: Some(email.clone()), ..NewUser::default() });
    let stored = ctx
        .store
        .batch(&[
            insert_statement(&auth.tenancy.id, &user),
            Statement::new(
                "INSERT INTO password_credentials (tenancy_id, user_id, email, password_hash, updated_at) \
                 VALUES (?, ?, ?, ?, ?)",
                vec![
                    auth.tenancy.id.as_str().into(),
                    user.id.as_str().into(),
                    email.as_str().into(),
                    passwords::hash(ctx.random.as_ref(), &password).into(),
                    ctx.now().into(),
                ],
            ),
        ])
        .await;
    match stored {
        Ok(_) => {}
        Err(StoreError::Constraint(_)) => return Err(KnownError::user_email_already_exists(&email).into()),
        Err(e) => return Err(e.into()),
    }
    signed_in(ctx, &auth, &user).await
}

/// `POST /auth/password/sign-in`: a session for the user with this email and password.
pub async fn sign_in(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let (email, password) = email_and_password(req, &["email", "password"])?;
    enabled_config(ctx, &auth).await?;
    let tenancy = &auth.tenancy.id;
    let email_key = format!("password-sign-in:{tenancy}:email:{}", hash_secret(&normalized_email(&email)));
    let mut keys = vec![(email_key, ATTEMPTS_PER_EMAIL)];
    if let Some(ip) = auth.location.as_ref().and_then(|l| l.ip.clone()) {
        keys.push((format!("password-sign-in:{tenancy}:ip:{ip}"), ATTEMPTS_PER_IP));
    }
    for (key, budget) in keys {
        if let Some(retry_after_s) = rate_limit::count(ctx.store.as_ref(), ctx.now(), &key, budget).await? {
            return Err(KnownError::too_many_sign_in_attempts(retry_after_s).into());
        }
    }
    let found = passwords::find_by_email(ctx, tenancy, &email).await?;
    if !passwords::verify(found.as_ref().map(|(_, hash)| hash.as_str()), &password) {
        return Err(KnownError::email_password_mismatch().into());
    }
    let (user, _) = found.expect("verified against a stored hash");
    signed_in(ctx, &auth, &user).await
}

/// `POST /auth/password/update` (a signed-in user): changes the password, given the old one.
pub async fn update(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["old_password", "new_password"]);
    let old = v.string(obj, "old_password", "body.old_password", true);
    let new = v.string(obj, "new_password", "body.new_password", true);
    v.finish()?;
    let (old, new) = (old.expect("validated"), new.expect("validated"));
    let user_id = auth.user.as_ref().map(|u| u.user_id.clone()).ok_or_else(KnownError::user_authentication_required)?;
    enabled_config(ctx, &auth).await?;
    let stored = passwords::hash_of(ctx, &auth.tenancy.id, &user_id).await?;
    if !passwords::verify(stored.as_deref(), &old) {
        return Err(KnownError::password_confirmation_mismatch().into());
    }
    if let Some(problem) = passwords::length_problem(&new) {
        return Err(problem.into());
    }
    if !passwords::replace(ctx, &auth.tenancy.id, &user_id, &new).await? {
        return Err(KnownError::password_confirmation_mismatch().into());
    }
    Ok(success())
}

/// The body's `email` (a plausible address, bounded) and `password`, other keys refused.
fn email_and_password(req: &Request, known: &[&str]) -> ApiResult<(String, String)> {
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, known);
    let email = v.string(obj, "email", "body.email", true);
    let password = v.string(obj, "password", "body.password", true);
    if known.contains(&"verification_callback_url") {
        v.string(obj, "verification_callback_url", "body.verification_callback_url", false);
    }
    if let Some(email) = &email {
        if !is_plausible_email(email) {
            v.fail("body.email must be a valid email".into());
        }
    }
    v.finish()?;
    Ok((email.expect("validated"), password.expect("validated")))
}

/// One `@` with something before it and a dotted domain after it, no spaces, at most 254
/// characters: what a sign-in address needs; deliverability is the outbox's concern.
fn is_plausible_email(email: &str) -> bool {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else { return false };
    email.len() <= MAX_EMAIL_LENGTH
        && !local.is_empty()
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty())
        && !email.chars().any(char::is_whitespace)
}

/// The tenancy's rendered config, if password sign-in is on (`auth.password.allowSignIn`;
/// off unless set: fail closed).
async fn enabled_config(ctx: &Context, auth: &RequestAuth) -> ApiResult<Value> {
    let config = rendered(ctx, &auth.tenancy).await?;
    if config["auth"]["password"]["allowSignIn"] != Value::Bool(true) {
        return Err(KnownError::password_authentication_not_enabled().into());
    }
    Ok(config)
}

/// A new session for `user`: `{access_token, refresh_token, user_id}`.
async fn signed_in(ctx: &Context, auth: &RequestAuth, user: &User) -> ApiResult<Response> {
    let expires_at = ctx.now() + DEFAULT_SESSION_LIFETIME_MS;
    let session = sessions::create_session(ctx, &auth.tenancy.id, &user.id, Some(expires_at), false).await?;
    let access_token =
        sessions::mint_access_token(ctx, &auth.tenancy, user, &session.id, auth.location.as_ref()).await?;
    Ok(json(&json!({ "access_token": access_token, "refresh_token": session.refresh_token, "user_id": user.id })))
}

#[cfg(test)]
mod tests {
    use super::is_plausible_email;

    #[test]
    fn plausible_emails() {
        assert!(is_plausible_email("ada@example.com"));
        assert!(is_plausible_email("a.b+c@mail.example.org"));
        for bad in
            ["", "ada", "@example.com", "ada@", "ada@example", "ada@@example.com", "a da@example.com", "ada@.com"]
        {
            assert!(!is_plausible_email(bad), "{bad}");
        }
        assert!(!is_plausible_email(&format!("{}@example.com", "a".repeat(250))));
    }
}
