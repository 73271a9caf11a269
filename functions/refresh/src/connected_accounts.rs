//! Connected accounts (docs/api.md §2.2, §2.6): a provider account connected to a user, with
//! the provider's tokens sealed at rest (`shared::identity::sealed`, bound to the row), and
//! `POST /connected-accounts/{user_id|me}/{provider_id}[/{provider_account_id}]/access-token`,
//! which answers with a live provider access token, refreshed at the provider when the stored
//! one has expired.

use serde_json::json;

use shared::config::store::rendered;
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AccessType, AuthRule, ANY_ACCESS};
use shared::identity::sealed;
use shared::store::ports::Statement;
use shared::Context;

use crate::oauth_providers::{provider, TokenSet, UserInfo};

/// The user an account of `provider_id` is connected to, if any.
pub async fn owner(ctx: &Context, tenancy_id: &str, provider_id: &str, account_id: &str) -> ApiResult<Option<String>> {
    let rows = ctx
        .store
        .query(
            "SELECT user_id FROM connected_accounts WHERE tenancy_id = ? AND provider_id = ? AND provider_account_id = ?",
            &[tenancy_id.into(), provider_id.into(), account_id.into()],
        )
        .await?;
    Ok(rows.first().map(|r| r.text("user_id")).transpose()?)
}

/// The account ids of `provider_id` connected to the user.
pub async fn accounts_of(ctx: &Context, tenancy_id: &str, user_id: &str, provider_id: &str) -> ApiResult<Vec<String>> {
    let rows = ctx
        .store
        .query(
            "SELECT provider_account_id FROM connected_accounts WHERE tenancy_id = ? AND user_id = ? AND provider_id = ? \
             ORDER BY created_at",
            &[tenancy_id.into(), user_id.into(), provider_id.into()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.text("provider_account_id")).collect::<Result<_, _>>()?)
}

/// The statement that connects the account to `user_id` with its tokens, or, when it is
/// already connected (to that user: the caller checked), replaces its tokens.
pub fn connect_statement(
    ctx: &Context,
    tenancy_id: &str,
    provider_id: &str,
    info: &UserInfo,
    tokens: &TokenSet,
    scopes: &str,
    user_id: &str,
) -> Statement {
    let now = ctx.now();
    let seal = |what: &str, secret: &str| {
        let row = row_context(tenancy_id, provider_id, &info.account_id, what);
        sealed::seal(&ctx.config.server_secret, ctx.random.as_ref(), &row, secret)
    };
    let access = seal("access", &tokens.access_token);
    let refresh = tokens.refresh_token.as_deref().map(|t| seal("refresh", t));
    Statement::new(
        "INSERT INTO connected_accounts (tenancy_id, provider_id, provider_account_id, user_id, email, \
         sealed_access_token, sealed_refresh_token, access_token_expires_at, scopes, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
         ON CONFLICT (tenancy_id, provider_id, provider_account_id) DO UPDATE SET \
         email = excluded.email, sealed_access_token = excluded.sealed_access_token, \
         sealed_refresh_token = coalesce(excluded.sealed_refresh_token, connected_accounts.sealed_refresh_token), \
         access_token_expires_at = excluded.access_token_expires_at, scopes = excluded.scopes, \
         updated_at = excluded.updated_at WHERE connected_accounts.user_id = excluded.user_id",
        vec![
            tenancy_id.into(),
            provider_id.into(),
            info.account_id.as_str().into(),
            user_id.into(),
            info.email.clone().into(),
            access.into(),
            refresh.into(),
            tokens.expires_at.into(),
            tokens.scope.clone().unwrap_or_else(|| scopes.to_string()).into(),
            now.into(),
        ],
    )
}

/// What a sealed token is bound to: its row and which token it is.
fn row_context(tenancy_id: &str, provider_id: &str, account_id: &str, what: &str) -> String {
    format!("connected-account\n{tenancy_id}\n{provider_id}\n{account_id}\n{what}")
}

/// How close to its expiry a stored access token is no longer handed out.
const EXPIRY_MARGIN_MS: i64 = 60_000;

/// `POST /connected-accounts/{user_id|me}/{provider_id}[/{provider_account_id}]/access-token`,
/// body `{scope?}` → `{access_token}`.
pub async fn access_token(
    ctx: &Context,
    req: &Request,
    user_id: &str,
    provider_id: &str,
    account_id: Option<&str>,
) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["scope"]);
    let scope = v.string(obj, "scope", "body.scope", false).unwrap_or_default();
    v.finish()?;
    let own = auth.user.as_ref().map(|u| u.user_id.as_str());
    let user = if user_id == "me" { own } else { Some(user_id) };
    let Some(user) = user else {
        return Err(KnownError::cannot_get_own_user_without_user().into());
    };
    if auth.access_type == AccessType::Client && Some(user) != own {
        return Err(ApiError::status(403, "Client can only access its own connected accounts"));
    }
    let config = rendered(ctx, &auth.tenancy).await?;
    let provider = provider(ctx, &config, provider_id)?;
    if provider.shared && !ctx.config.allow_shared_oauth_access_tokens {
        return Err(KnownError::oauth_access_token_not_available_with_shared_oauth_keys().into());
    }
    let tenancy_id = auth.tenancy.id.as_str();
    let sql = "SELECT provider_account_id, email, sealed_access_token, sealed_refresh_token, access_token_expires_at, scopes \
               FROM connected_accounts WHERE tenancy_id = ? AND user_id = ? AND provider_id = ? \
               ORDER BY created_at";
    let rows = ctx.store.query(sql, &[tenancy_id.into(), user.into(), provider_id.into()]).await?;
    let row = match account_id {
        Some(id) => rows.iter().find(|r| r.text("provider_account_id").is_ok_and(|a| a == id)),
        None => rows.first(),
    };
    let Some(row) = row else {
        return Err(KnownError::oauth_connection_not_connected_to_user().into());
    };
    let account = row.text("provider_account_id")?;
    let granted = row.text("scopes")?;
    if !scope.split_whitespace().all(|s| granted.split_whitespace().any(|g| g == s)) {
        return Err(KnownError::oauth_connection_does_not_have_required_scope().into());
    }
    let open = |column: &str, what: &str| -> ApiResult<Option<String>> {
        let Some(sealed_value) = row.opt_text(column)? else { return Ok(None) };
        let context = row_context(tenancy_id, provider_id, &account, what);
        sealed::open(&ctx.config.server_secret, &context, &sealed_value)
            .map(Some)
            .ok_or_else(|| ApiError::internal("a connected account's token does not open under the server secret"))
    };
    let expires_at = row.opt_int("access_token_expires_at")?;
    if expires_at.is_none_or(|at| at > ctx.now() + EXPIRY_MARGIN_MS) {
        if let Some(token) = open("sealed_access_token", "access")? {
            return Ok(json(&json!({ "access_token": token })));
        }
    }
    let Some(refresh_token) = open("sealed_refresh_token", "refresh")? else {
        return Err(KnownError::oauth_connection_does_not_have_required_scope().into());
    };
    let refreshed = provider.refresh(ctx, &provider.client(ctx, &config)?, &refresh_token).await?;
    let info = UserInfo {
        account_id: account.clone(),
        email: row.opt_text("email")?,
        email_verified: false,
        display_name: None,
        profile_image_url: None,
    };
    ctx.store.batch(&[connect_statement(ctx, tenancy_id, provider_id, &info, &refreshed, &granted, user)]).await?;
    Ok(json(&json!({ "access_token": refreshed.access_token })))
}
