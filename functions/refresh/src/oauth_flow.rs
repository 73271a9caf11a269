//! What an OAuth sign-in keeps between its steps (docs/api.md §2.4, §2.5): the flow in flight
//! from authorize to the provider's callback, and the authorization code from the callback to
//! the app's token request.
//!
//! Both are bearer secrets and stored only as SHA-256 hashes; both are single use, taken by
//! one conditional update, so of two concurrent uses exactly one wins. An authorization code
//! is taken *before* its redirect URL and PKCE verifier are checked: a code presented with the
//! wrong verifier was intercepted, and is burnt (RFC 6749 §10.5).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::identity::crypto::{base64url, ct_eq, hash_secret, new_refresh_token, sha256};
use shared::store::ports::SqlValue;
use shared::Context;

/// How long a sign-in may take at the provider (upstream: ten minutes).
pub const FLOW_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// How long an app has to exchange its code (the OAuth library upstream uses: five minutes).
const CODE_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// A sign-in in flight: the app's request and what the callback needs to finish it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flow {
    pub tenancy_id: String,
    pub provider_id: String,
    /// The app's callback, where the authorization code goes.
    pub redirect_uri: String,
    /// The app's own state, given back with the code.
    pub state: String,
    /// The app's PKCE challenge (S256).
    pub code_challenge: String,
    /// Our PKCE verifier at the provider.
    pub provider_code_verifier: String,
    /// The signed-in user to connect the account to (`type=link`).
    pub link_user_id: Option<String>,
    /// Extra scopes asked of the provider.
    pub provider_scope: String,
    /// Where errors go, if trusted, instead of an error answer.
    pub error_redirect_url: Option<String>,
    pub after_callback_redirect_url: Option<String>,
}

/// Stores `flow` under `state` (the one sent to the provider).
pub async fn begin(ctx: &Context, state: &str, flow: &Flow) -> ApiResult<()> {
    let info = serde_json::to_string(flow).map_err(|e| ApiError::internal(e.to_string()))?;
    ctx.store
        .execute(
            "INSERT INTO oauth_flows (state_hash, tenancy_id, provider_id, info, expires_at) VALUES (?, ?, ?, ?, ?)",
            vec![
                hash_secret(state).into(),
                flow.tenancy_id.as_str().into(),
                flow.provider_id.as_str().into(),
                info.into(),
                (ctx.now() + FLOW_LIFETIME_MS).into(),
            ],
        )
        .await?;
    Ok(())
}

/// Takes the flow `state` names, once. An unknown or used state is refused (a replayed
/// callback); one past its ten minutes is OUTER_OAUTH_TIMEOUT.
pub async fn take(ctx: &Context, state: &str) -> ApiResult<Flow> {
    let invalid = || ApiError::status(400, "Invalid OAuth cookie. Please try signing in again.");
    let hash = hash_secret(state);
    let rows = ctx
        .store
        .query("SELECT info, expires_at FROM oauth_flows WHERE state_hash = ?", &[hash.as_str().into()])
        .await?;
    let row = rows.first().ok_or_else(invalid)?;
    let flow: Flow = serde_json::from_str(&row.text("info")?).map_err(|e| ApiError::internal(e.to_string()))?;
    let taken = ctx
        .store
        .execute(
            "UPDATE oauth_flows SET used_at = ? WHERE state_hash = ? AND used_at IS NULL",
            vec![ctx.now().into(), hash.into()],
        )
        .await?;
    if taken != 1 {
        return Err(invalid());
    }
    if row.int("expires_at")? <= ctx.now() {
        return Err(KnownError::outer_oauth_timeout().into());
    }
    Ok(flow)
}

/// What an authorization code grants.
#[derive(Debug)]
pub struct Grant {
    pub user_id: String,
    pub is_new_user: bool,
    pub after_callback_redirect_url: Option<String>,
}

/// A new authorization code for `user_id`, bound to the flow's redirect URL and PKCE challenge.
pub async fn issue_code(ctx: &Context, flow: &Flow, user_id: &str, is_new_user: bool) -> ApiResult<String> {
    let code = new_refresh_token(ctx.random.as_ref());
    ctx.store
        .execute(
            "INSERT INTO authorization_codes (code_hash, tenancy_id, user_id, redirect_uri, code_challenge, \
             is_new_user, after_callback_redirect_url, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                hash_secret(&code).into(),
                flow.tenancy_id.as_str().into(),
                user_id.into(),
                flow.redirect_uri.as_str().into(),
                flow.code_challenge.as_str().into(),
                SqlValue::Integer(i64::from(is_new_user)),
                flow.after_callback_redirect_url.clone().into(),
                (ctx.now() + CODE_LIFETIME_MS).into(),
            ],
        )
        .await?;
    Ok(code)
}

/// Redeems `code` for the tenancy: taken once, then its redirect URL and the PKCE verifier
/// are checked. Every refusal is INVALID_AUTHORIZATION_CODE but a differing redirect URL.
pub async fn redeem_code(
    ctx: &Context,
    tenancy_id: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> ApiResult<Grant> {
    let invalid = || ApiError::from(KnownError::invalid_authorization_code());
    let hash = hash_secret(code);
    let now = ctx.now();
    let rows = ctx
        .store
        .query(
            "SELECT user_id, redirect_uri, code_challenge, is_new_user, after_callback_redirect_url \
             FROM authorization_codes WHERE code_hash = ? AND tenancy_id = ?",
            &[hash.as_str().into(), tenancy_id.into()],
        )
        .await?;
    let row = rows.first().ok_or_else(invalid)?;
    let taken = ctx
        .store
        .execute(
            "UPDATE authorization_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
            vec![SqlValue::Integer(now), hash.into()],
        )
        .await?;
    if taken != 1 {
        return Err(invalid());
    }
    // Required: the authorization request always has one (RFC 6749 §4.1.3).
    if redirect_uri.split('#').next() != Some(row.text("redirect_uri")?.as_str()) {
        return Err(ApiError::status(
            400,
            "Invalid redirect URI. Your redirect URI must be the same as the one used to get the authorization code.",
        ));
    }
    if !ct_eq(&base64url(&sha256(verifier.as_bytes())), &row.text("code_challenge")?) {
        return Err(invalid());
    }
    Ok(Grant {
        user_id: row.text("user_id")?,
        is_new_user: row.int("is_new_user")? == 1,
        after_callback_redirect_url: row.opt_text("after_callback_redirect_url")?,
    })
}

/// Deletes flows and codes that expired more than a day ago (the hourly purge). Returns how
/// many.
pub async fn purge_expired(ctx: &Context) -> ApiResult<u64> {
    let cutoff = ctx.now() - 24 * 3600 * 1000;
    let flows = ctx.store.execute("DELETE FROM oauth_flows WHERE expires_at < ?", vec![cutoff.into()]).await?;
    let codes = ctx.store.execute("DELETE FROM authorization_codes WHERE expires_at < ?", vec![cutoff.into()]).await?;
    Ok(flows + codes)
}

/// Whether `challenge` is an S256 PKCE challenge: 43 base64url characters (a SHA-256).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The flow's facts for an error redirect (`errorCode`, `message`, `details`), upstream's shape.
pub fn error_redirect(url: &str, code: &str, message: &str, details: &Value) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    url.query_pairs_mut()
        .append_pair("errorCode", code)
        .append_pair("message", message)
        .append_pair("details", &details.to_string());
    Some(url.into())
}
