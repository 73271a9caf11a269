//! `GET /auth/oauth/callback/{provider_id}` (docs/api.md §2.4): the provider sends the browser
//! back here. The state must come with the cookie authorize set (the same browser) and name a
//! flow not used before; then the provider's code is exchanged (with our PKCE verifier), the
//! user info read, the user found, linked or signed up, the provider's tokens kept sealed, and
//! the browser sent to the app with an authorization code and the app's own state.
//!
//! Who the account belongs to, in order: the user it is already connected to; for `type=link`
//! the signed-in user (unless either side is connected elsewhere); a user whose primary email
//! the provider has *verified*, as `auth.oauth.accountMergeStrategy` says (`link_method`, the
//! default, connects it; `raise_error` refuses; `allow_duplicates` signs up a new user); else a
//! new user, if sign-up is allowed. A new user and its account are one batch, so two callbacks
//! for one new account make one user.

use serde_json::Value;

use shared::config::store::rendered;
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::{query_param, Request, Response};
use shared::identity::tenancy::{tenancy_by_id, Tenancy};
use shared::identity::users::{get_user, insert_statement, new_user, user_by_primary_email, NewUser};
use shared::store::ports::StoreError;
use shared::Context;

use crate::connected_accounts::{accounts_of, connect_statement, owner};
use crate::oauth_authorize::{callback_url, state_cookie};
use crate::oauth_flow::{self, error_redirect, Flow};
use crate::oauth_providers::{provider, provider_error, Provider, TokenSet, UserInfo};

pub async fn callback(ctx: &Context, req: &Request, provider_id: &str) -> ApiResult<Response> {
    let state = query_param(req, "state").unwrap_or_default();
    if state.is_empty() || !has_cookie(req, &state_cookie(&state)) {
        return Err(ApiError::status(
            400,
            "Inner OAuth cookie not found. This is likely because you refreshed the page during the OAuth sign in \
             process. Please try signing in again",
        ));
    }
    let flow = oauth_flow::take(ctx, &state).await?;
    let (tenancy, _) = tenancy_by_id(ctx, &flow.tenancy_id)
        .await?
        .ok_or_else(|| ApiError::status(400, "Invalid OAuth cookie. Please try signing in again."))?;
    let config = rendered(ctx, &tenancy).await?;
    let mut response = match finish(ctx, req, &tenancy, &config, &flow, provider_id).await {
        Ok(location) => redirect(&location)?,
        Err(ApiError::Known(e)) if e.code == "OAUTH_PROVIDER_ACCESS_DENIED" => {
            // Upstream's one redirected error: back to the app, if its error URL is trusted.
            let trusted =
                flow.error_redirect_url.as_deref().filter(|u| shared::config::is_trusted_redirect(&config, u));
            match trusted.and_then(|u| error_redirect(u, e.code, &e.message, &Value::Object(Default::default()))) {
                Some(location) => redirect(&location)?,
                None => return Err(ApiError::Known(e)),
            }
        }
        Err(e) => return Err(e),
    };
    let clear = format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax", state_cookie(&state));
    response.headers_mut().insert("set-cookie", header_value(&clear)?);
    Ok(response)
}

/// The sign-in's end: the app's redirect URL with our authorization code and its state.
async fn finish(
    ctx: &Context,
    req: &Request,
    tenancy: &Tenancy,
    config: &Value,
    flow: &Flow,
    provider_id: &str,
) -> ApiResult<String> {
    if flow.provider_id != provider_id {
        return Err(KnownError::oauth_provider_not_found_or_not_enabled().into());
    }
    let provider = provider(ctx, config, provider_id)?;
    let param = |name: &str| query_param(req, name).filter(|v| !v.is_empty());
    if let Some(error) = param("error") {
        return Err(provider_error(&error, param("error_description").as_deref()));
    }
    let code = param("code").ok_or_else(|| ApiError::status(400, "The OAuth provider's callback has no code."))?;
    let client = provider.client(ctx, config)?;
    let callback = callback_url(ctx, provider_id);
    let tokens = provider.exchange_code(ctx, &client, &code, &callback, &flow.provider_code_verifier).await?;
    let info = provider.user_info(ctx, &client, &tokens).await?;
    let (user_id, is_new_user) = match &flow.link_user_id {
        Some(user_id) => link(ctx, tenancy, &provider, flow, &info, &tokens, user_id).await?,
        None => sign_in_or_up(ctx, tenancy, config, &provider, flow, &info, &tokens).await?,
    };
    let code = oauth_flow::issue_code(ctx, flow, &user_id, is_new_user).await?;
    let mut location = url::Url::parse(&flow.redirect_uri).map_err(|e| ApiError::internal(e.to_string()))?;
    location.query_pairs_mut().append_pair("code", &code).append_pair("state", &flow.state);
    Ok(location.into())
}

/// `type=link`: connects the account to the signed-in user.
async fn link(
    ctx: &Context,
    tenancy: &Tenancy,
    provider: &Provider,
    flow: &Flow,
    info: &UserInfo,
    tokens: &TokenSet,
    user_id: &str,
) -> ApiResult<(String, bool)> {
    if owner(ctx, &tenancy.id, &provider.id, &info.account_id).await?.is_some_and(|o| o != user_id) {
        return Err(KnownError::oauth_connection_already_connected_to_another_user().into());
    }
    let accounts = accounts_of(ctx, &tenancy.id, user_id, &provider.id).await?;
    if !accounts.is_empty() && !accounts.contains(&info.account_id) {
        return Err(KnownError::user_already_connected_to_another_oauth_connection().into());
    }
    if get_user(ctx, &tenancy.id, user_id).await?.is_none() {
        return Err(KnownError::user_not_found().into());
    }
    connect(ctx, tenancy, provider, flow, info, tokens, user_id).await?;
    Ok((user_id.to_string(), false))
}

/// Sign-in of the account's user, or of the user whose verified email it shares, or sign-up.
async fn sign_in_or_up(
    ctx: &Context,
    tenancy: &Tenancy,
    config: &Value,
    provider: &Provider,
    flow: &Flow,
    info: &UserInfo,
    tokens: &TokenSet,
) -> ApiResult<(String, bool)> {
    if let Some(user_id) = owner(ctx, &tenancy.id, &provider.id, &info.account_id).await? {
        connect(ctx, tenancy, provider, flow, info, tokens, &user_id).await?;
        return Ok((user_id, false));
    }
    if config["auth"]["allowSignUp"] == Value::Bool(false) {
        return Err(KnownError::sign_up_not_enabled().into());
    }
    if let Some(email) = &info.email {
        if let Some(existing) = user_by_primary_email(ctx, &tenancy.id, email).await? {
            match config["auth"]["oauth"]["accountMergeStrategy"].as_str().unwrap_or("link_method") {
                "allow_duplicates" => {}
                "raise_error" => return Err(KnownError::oauth_connection_already_connected_to_another_user().into()),
                // An address the provider has not verified proves nothing about who owns it.
                _ if !info.email_verified => {
                    return Err(KnownError::contact_channel_already_used_for_auth_by_someone_else(email).into())
                }
                _ => {
                    connect(ctx, tenancy, provider, flow, info, tokens, &existing.id).await?;
                    return Ok((existing.id, false));
                }
            }
        }
    }
    let user = new_user(
        ctx,
        NewUser {
            display_name: info.display_name.clone(),
            primary_email: info.email.clone(),
            primary_email_verified: info.email_verified,
            ..NewUser::default()
        },
    );
    let statements = [
        insert_statement(&tenancy.id, &user),
        connect_statement(
            ctx,
            &tenancy.id,
            &provider.id,
            info,
            tokens,
            &provider.scopes(&flow.provider_scope),
            &user.id,
        ),
    ];
    match ctx.store.batch(&statements).await {
        Ok(_) => Ok((user.id, true)),
        // A concurrent callback connected this account first: sign in its user.
        Err(StoreError::Constraint(_)) => match owner(ctx, &tenancy.id, &provider.id, &info.account_id).await? {
            Some(user_id) => Ok((user_id, false)),
            None => Err(ApiError::internal("a new user's account conflicted but has no owner")),
        },
        Err(e) => Err(e.into()),
    }
}

/// Stores the provider's tokens for the account connected (or connecting) to `user_id`.
async fn connect(
    ctx: &Context,
    tenancy: &Tenancy,
    provider: &Provider,
    flow: &Flow,
    info: &UserInfo,
    tokens: &TokenSet,
    user_id: &str,
) -> ApiResult<()> {
    let scopes = provider.scopes(&flow.provider_scope);
    let changed =
        ctx.store.batch(&[connect_statement(ctx, &tenancy.id, &provider.id, info, tokens, &scopes, user_id)]).await?;
    // The upsert changes nothing when the account was connected to someone else meanwhile.
    if changed.first() != Some(&1) {
        return Err(KnownError::oauth_connection_already_connected_to_another_user().into());
    }
    Ok(())
}

/// Whether the request's cookies hold `name=true`.
fn has_cookie(req: &Request, name: &str) -> bool {
    req.headers().get_all("cookie").iter().filter_map(|v| v.to_str().ok()).any(|line| {
        line.split(';').any(|pair| pair.trim().split_once('=').is_some_and(|(k, v)| k == name && v == "true"))
    })
}

fn header_value(value: &str) -> ApiResult<http::HeaderValue> {
    http::HeaderValue::from_str(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn redirect(location: &str) -> ApiResult<Response> {
    let mut response = shared::http::text(307, "Redirecting back to the app");
    response.headers_mut().insert("location", header_value(location)?);
    response.headers_mut().insert("cache-control", http::HeaderValue::from_static("no-store"));
    Ok(response)
}
