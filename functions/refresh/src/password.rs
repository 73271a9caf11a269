//! Password sign-up, sign-in, change and reset by email (docs/api.md §1.11).
//!
//! Sign-up stores the user and its credential in one batch, the credential's address unique
//! per tenancy, so two concurrent sign-ups with one email cannot both succeed. Sign-in counts
//! the attempt against the address and the end user's address (when the runtime knows it)
//! before any hashing, then does one argon2id run whether or not the email exists, and
//! answers the same error for both failures.

use serde_json::{json, Value};

use shared::config::store::rendered;
use shared::email::is_email;
use shared::http::error::{ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, success, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, RequestAuth, ANY_ACCESS};
use shared::identity::codes::{self, Purpose};
use shared::identity::crypto::{hash_secret, random_crockford, REFRESH_TOKEN_LENGTH};
use shared::identity::passwords::{self, normalized_email};
use shared::identity::sessions::{self, DEFAULT_SESSION_LIFETIME_MS};
use shared::identity::users::{insert_statement, new_user, NewUser, User};
use shared::store::ports::{Statement, StoreError};
use shared::store::rate_limit::{self, Budget};
use shared::Context;

use crate::sign_in_email::{self, PASSWORD_RESET_TEMPLATE};

/// Sign-in attempts per address per ten minutes.
pub const ATTEMPTS_PER_EMAIL: Budget = Budget { limit: 10, window_ms: 600_000 };
/// Sign-in attempts per end-user address (IP) per ten minutes.
pub const ATTEMPTS_PER_IP: Budget = Budget { limit: 100, window_ms: 600_000 };

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

/// How long a password-reset link is valid.
const RESET_LIFETIME_MS: i64 = 60 * 60 * 1000;
/// Reset emails sent per address per ten minutes.
pub const RESETS_PER_EMAIL: Budget = Budget { limit: 5, window_ms: 600_000 };

/// `POST /auth/password/send-reset-code` `{email, callback_url}`: mails a reset link when a
/// user signs in with that address; the answer is the same either way.
pub async fn send_reset_code(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let (email, callback_url) = sign_in_email::email_and_callback(req)?;
    let config = enabled_config(ctx, &auth).await?;
    let code = random_crockford(ctx.random.as_ref(), REFRESH_TOKEN_LENGTH);
    let link = sign_in_email::link(&config, &callback_url, &code)?;
    let key = format!("password-reset:{}:email:{}", auth.tenancy.id, hash_secret(&email));
    if let Some(retry_after_s) = rate_limit::count(ctx.store.as_ref(), ctx.now(), &key, RESETS_PER_EMAIL).await? {
        return Err(KnownError::too_many_sign_in_attempts(retry_after_s).into());
    }
    if let Some((user, _)) = passwords::find_by_email(ctx, &auth.tenancy.id, &email).await? {
        codes::create(ctx, &auth.tenancy.id, Purpose::PasswordReset, &code, &email, Some(&user.id), RESET_LIFETIME_MS)
            .await?;
        sign_in_email::send(ctx, &auth.tenancy, &email, PASSWORD_RESET_TEMPLATE, json!({ "link": link })).await?;
    }
    Ok(json(&json!({ "success": "maybe, only if user with e-mail exists" })))
}

/// `POST /auth/password/reset/check-code` `{code}` → `{is_code_valid: true}`, or the code's error.
pub async fn check_reset_code(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let (code, _) = reset_body(req, false)?;
    enabled_config(ctx, &auth).await?;
    codes::check(ctx, &auth.tenancy.id, Purpose::PasswordReset, &code).await?;
    Ok(json(&json!({ "is_code_valid": true })))
}

/// `POST /auth/password/reset` `{code, password}`: sets the new password, once per code.
pub async fn reset(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let (code, password) = reset_body(req, true)?;
    let password = password.expect("validated");
    enabled_config(ctx, &auth).await?;
    let code = codes::check(ctx, &auth.tenancy.id, Purpose::PasswordReset, &code).await?;
    if let Some(problem) = passwords::length_problem(&password) {
        return Err(problem.into());
    }
    codes::redeem(ctx, &auth.tenancy.id, &code).await?;
    let user_id = code.user_id.as_deref().unwrap_or_default();
    if !passwords::replace(ctx, &auth.tenancy.id, user_id, &password).await? {
        // The user was deleted since the email went out.
        return Err(KnownError::verification_code_not_found().into());
    }
    Ok(success())
}

/// `{code}` (45 characters), and `password` when `with_password`.
fn reset_body(req: &Request, with_password: bool) -> ApiResult<(String, Option<String>)> {
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let known: &[&str] = if with_password { &["code", "password"] } else { &["code"] };
    let obj = v.body_object(&body, known);
    let code = v.string(obj, "code", "body.code", true);
    let password = if with_password { v.string(obj, "password", "body.password", true) } else { None };
    if code.as_deref().is_some_and(|c| c.len() != REFRESH_TOKEN_LENGTH) {
        v.fail(format!("body.code must be exactly {REFRESH_TOKEN_LENGTH} characters"));
    }
    v.finish()?;
    Ok((code.expect("validated"), password))
}

/// The body's `email` (a plausible address, the outbox's rule) and `password`, other keys
/// refused.
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
        if !is_email(email.trim()) {
            v.fail("body.email must be a valid email".into());
        }
    }
    v.finish()?;
    Ok((email.expect("validated"), password.expect("validated")))
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
