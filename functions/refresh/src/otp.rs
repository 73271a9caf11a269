//! One-time codes by email (docs/api.md §1.12): `send-sign-in-code` mails a six-character code
//! and a link; `sign-in` redeems it once, signing in the address's user or signing one up.
//!
//! The code a client redeems is the mailed code followed by the `nonce` the send answered, so
//! guessing six characters is not enough: the caller must also hold the nonce the requesting
//! client was given. Only the whole code's hash is stored.

use serde_json::{json, Value};

use shared::config::store::rendered;
use shared::http::error::{ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, RequestAuth, ANY_ACCESS};
use shared::identity::codes::{self, Purpose};
use shared::identity::crypto::{hash_secret, random_crockford, REFRESH_TOKEN_LENGTH};
use shared::identity::sessions::{self, DEFAULT_SESSION_LIFETIME_MS};
use shared::identity::users::{create_user, user_by_primary_email, NewUser};
use shared::store::rate_limit::{self, Budget};
use shared::Context;

use crate::sign_in_email::{self, SIGN_IN_CODE_TEMPLATE};

/// Characters of the code in the email.
const OTP_LENGTH: usize = 6;
/// How long a sign-in code is valid.
const CODE_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// Sign-in codes sent per address per ten minutes.
pub const SENDS_PER_EMAIL: Budget = Budget { limit: 5, window_ms: 600_000 };

/// `POST /auth/otp/send-sign-in-code` `{email, callback_url}` → `{nonce}`.
pub async fn send_sign_in_code(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let (email, callback_url) = sign_in_email::email_and_callback(req)?;
    let config = enabled_config(ctx, &auth).await?;
    let otp = random_crockford(ctx.random.as_ref(), OTP_LENGTH).to_ascii_uppercase();
    let nonce = random_crockford(ctx.random.as_ref(), REFRESH_TOKEN_LENGTH - OTP_LENGTH);
    let code = format!("{}{nonce}", otp.to_ascii_lowercase());
    let link = sign_in_email::link(&config, &callback_url, &code)?;
    let key = format!("otp-send:{}:email:{}", auth.tenancy.id, hash_secret(&email));
    if let Some(retry_after_s) = rate_limit::count(ctx.store.as_ref(), ctx.now(), &key, SENDS_PER_EMAIL).await? {
        return Err(KnownError::too_many_sign_in_attempts(retry_after_s).into());
    }
    codes::create(ctx, &auth.tenancy.id, Purpose::OtpSignIn, &code, &email, None, CODE_LIFETIME_MS).await?;
    sign_in_email::send(ctx, &auth.tenancy, &email, SIGN_IN_CODE_TEMPLATE, json!({ "otp": otp, "link": link })).await?;
    Ok(json(&json!({ "nonce": nonce })))
}

/// `POST /auth/otp/sign-in` `{code}` → `{access_token, refresh_token, is_new_user, user_id}`.
pub async fn sign_in(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["code"]);
    let code = v.string(obj, "code", "body.code", true);
    if code.as_deref().is_some_and(|c| c.len() != REFRESH_TOKEN_LENGTH) {
        v.fail(format!("body.code must be exactly {REFRESH_TOKEN_LENGTH} characters"));
    }
    v.finish()?;
    let config = enabled_config(ctx, &auth).await?;
    let code = codes::check(ctx, &auth.tenancy.id, Purpose::OtpSignIn, &code.expect("validated")).await?;
    let existing = user_by_primary_email(ctx, &auth.tenancy.id, &code.email).await?;
    if existing.is_none() && config["auth"]["allowSignUp"] == Value::Bool(false) {
        return Err(KnownError::sign_up_not_enabled().into());
    }
    // Only now is the code used: a refused sign-up leaves it for a later try.
    codes::redeem(ctx, &auth.tenancy.id, &code).await?;
    let is_new_user = existing.is_none();
    let user = if let Some(user) = existing {
        user
    } else {
        let new =
            NewUser { primary_email: Some(code.email.clone()), primary_email_verified: true, ..NewUser::default() };
        create_user(ctx, &auth.tenancy, new).await?
    };
    let expires_at = ctx.now() + DEFAULT_SESSION_LIFETIME_MS;
    let session = sessions::create_session(ctx, &auth.tenancy.id, &user.id, Some(expires_at), false).await?;
    let access_token =
        sessions::mint_access_token(ctx, &auth.tenancy, &user, &session.id, auth.location.as_ref()).await?;
    Ok(json(&json!({
        "access_token": access_token,
        "refresh_token": session.refresh_token,
        "is_new_user": is_new_user,
        "user_id": user.id,
    })))
}

/// The tenancy's rendered config, if sign-in codes are on (`auth.otp.allowSignIn`; off unless
/// set: fail closed).
async fn enabled_config(ctx: &Context, auth: &RequestAuth) -> ApiResult<Value> {
    let config = rendered(ctx, &auth.tenancy).await?;
    if config["auth"]["otp"]["allowSignIn"] != Value::Bool(true) {
        return Err(KnownError::otp_sign_in_not_enabled().into());
    }
    Ok(config)
}
