//! OAuth providers and Stack's shared OAuth keys (docs/api.md §2).
//!
//! `GET /auth/oauth/authorize/{provider_id}` checks the client and the provider and answers with
//! a redirect to the provider's authorization URL (built here; no network). A shared provider
//! (Stack's own OAuth app, `isShared`, the default for google, github, microsoft and spotify)
//! takes no extra scopes. The connected-account access-token endpoints refuse shared providers
//! unless `STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS` is exactly `true`; this system keeps no
//! connected accounts, so a request that passes every check is answered that the user is not
//! connected.

use serde_json::Value;

use shared::config::{render, schema::Level, store};
use shared::context::SHAREABLE_OAUTH_PROVIDERS;
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::{query_param, Request, Response};
use shared::identity::auth::{authenticate, key_is_valid, AccessType, AuthRule, ANY_ACCESS, PUBLIC_CLIENT_SENTINEL};
use shared::identity::tenancy::{project_branch, ProjectBranch, Tenancy};
use shared::Context;

/// Authorization endpoint and default scopes of each standard provider.
const PROVIDERS: &[(&str, &str, &str)] = &[
    ("google", "https://accounts.google.com/o/oauth2/v2/auth", "openid email profile"),
    ("github", "https://github.com/login/oauth/authorize", "user:email"),
    (
        "microsoft",
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        "openid profile email offline_access User.Read",
    ),
    ("spotify", "https://accounts.spotify.com/authorize", "user-read-email user-read-private"),
    ("facebook", "https://www.facebook.com/v18.0/dialog/oauth", "public_profile email"),
    ("discord", "https://discord.com/oauth2/authorize", "identify email"),
    ("gitlab", "https://gitlab.com/oauth/authorize", "read_user"),
    ("bitbucket", "https://bitbucket.org/site/oauth2/authorize", "account email"),
    ("linkedin", "https://www.linkedin.com/oauth/v2/authorization", "openid profile email"),
    ("apple", "https://appleid.apple.com/auth/authorize", "name email"),
    ("x", "https://twitter.com/i/oauth2/authorize", "users.read offline.access tweet.read"),
    ("twitch", "https://id.twitch.tv/oauth2/authorize", "user:read:email"),
];

/// A provider as the tenancy's rendered config has it.
struct Provider {
    id: String,
    kind: &'static str,
    endpoint: &'static str,
    default_scopes: &'static str,
    shared: bool,
    config: Value,
}

/// The enabled provider `provider_id` of the tenancy, or OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED.
async fn provider(ctx: &Context, tenancy: &Tenancy, provider_id: &str) -> ApiResult<Provider> {
    let overrides = store::load(ctx, tenancy).await?;
    let config = render(&overrides.up_to(Level::Environment)).config;
    let entry = &config["auth"]["oauth"]["providers"][provider_id];
    let not_found = || ApiError::from(KnownError::oauth_provider_not_found_or_not_enabled());
    if !entry.is_object() {
        return Err(not_found());
    }
    let kind = entry["type"].as_str().unwrap_or(provider_id);
    let &(kind, endpoint, default_scopes) = PROVIDERS.iter().find(|(k, _, _)| *k == kind).ok_or_else(not_found)?;
    let shared = SHAREABLE_OAUTH_PROVIDERS.contains(&kind) && entry["isShared"].as_bool().unwrap_or(true);
    Ok(Provider { id: provider_id.to_string(), kind, endpoint, default_scopes, shared, config: entry.clone() })
}

/// `client_id` (`<project>` or `<project>#<branch>`) to its tenancy, and the client secret
/// checked like a publishable client key.
async fn oauth_client(ctx: &Context, client_id: &str, client_secret: &str) -> ApiResult<(Tenancy, Value)> {
    let (project_id, branch_id) = client_id.split_once('#').unwrap_or((client_id, "main"));
    // A project without that branch is an unknown client too.
    let Some(ProjectBranch { require_publishable_client_key: require_key, tenancy: Some(tenancy) }) =
        project_branch(ctx, project_id, branch_id).await?
    else {
        return Err(KnownError::invalid_oauth_client_id_or_secret(Some(client_id)).into());
    };
    match client_secret {
        "" | PUBLIC_CLIENT_SENTINEL if require_key => {
            return Err(KnownError::publishable_client_key_required_for_project(project_id).into())
        }
        PUBLIC_CLIENT_SENTINEL => {}
        key => {
            if !key_is_valid(ctx, project_id, AccessType::Client, key).await? {
                return Err(KnownError::invalid_publishable_client_key(project_id).into());
            }
        }
    }
    let overrides = store::load(ctx, &tenancy).await?;
    Ok((tenancy, render(&overrides.up_to(Level::Environment)).config))
}

/// `GET /auth/oauth/authorize/{provider_id}`: the checks of docs/api.md §2.1 in order, then a
/// redirect to the provider.
pub async fn authorize(ctx: &Context, req: &Request, provider_id: &str) -> ApiResult<Response> {
    let param = |name: &str| query_param(req, name).unwrap_or_default();
    let client_id = param("client_id");
    if client_id.is_empty() {
        return Err(KnownError::invalid_oauth_client_id_or_secret(None).into());
    }
    let (tenancy, config) = oauth_client(ctx, &client_id, &param("client_secret")).await?;
    let provider = provider(ctx, &tenancy, provider_id).await?;
    let link = param("type") == "link";
    if link && param("token").is_empty() {
        return Err(ApiError::status(400, "?token= query parameter is required for link type"));
    }
    let after_callback = param("after_callback_redirect_url");
    if !after_callback.is_empty() && !shared::config::is_trusted_redirect(&config, &after_callback) {
        return Err(KnownError::redirect_url_not_whitelisted().into());
    }
    let extra_scope = param("provider_scope");
    if provider.shared && !extra_scope.trim().is_empty() {
        return Err(KnownError::oauth_extra_scope_not_available_with_shared_oauth_keys().into());
    }
    if link {
        let user = shared::identity::tokens::verify(&ctx.keys, &param("token"), ctx.now()).await?;
        if user.project_id != tenancy.project_id || user.branch_id != tenancy.branch_id {
            return Err(ApiError::status(403, "The link token belongs to another project or branch."));
        }
    }

    let client = if provider.shared {
        ctx.config.shared_oauth_client_ids.iter().find(|(p, _)| *p == provider.kind).map(|(_, id)| id.clone())
    } else {
        provider.config["clientId"].as_str().map(str::to_string)
    };
    let Some(oauth_client_id) = client else {
        return Err(ApiError::internal(format!(
            "no OAuth client id for {} (STACK_{}_CLIENT_ID or the provider's clientId)",
            provider.id,
            provider.kind.to_ascii_uppercase()
        )));
    };
    let tenant = provider.config["microsoftTenantId"].as_str().unwrap_or("common");
    let mut url = url::Url::parse(&provider.endpoint.replace("{tenant}", tenant)).expect("provider endpoints are URLs");
    let scopes = format!("{} {extra_scope}", provider.default_scopes);
    url.query_pairs_mut()
        .append_pair("client_id", &oauth_client_id)
        .append_pair("redirect_uri", &format!("{}/api/v1/auth/oauth/callback/{}", ctx.config.api_url, provider.id))
        .append_pair("response_type", "code")
        .append_pair("scope", scopes.trim())
        .append_pair("state", &shared::identity::crypto::random_crockford(ctx.random.as_ref(), 32));
    let mut response = shared::http::text(307, "Redirecting to the OAuth provider");
    response
        .headers_mut()
        .insert("location", http::HeaderValue::from_str(url.as_str()).map_err(|e| ApiError::internal(e.to_string()))?);
    Ok(response)
}

/// `POST /connected-accounts/{user_id|me}/{provider_id}[/{provider_account_id}]/access-token`.
pub async fn access_token(ctx: &Context, req: &Request, user_id: &str, provider_id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let own = auth.user.as_ref().map(|u| u.user_id.as_str());
    let user = if user_id == "me" { own } else { Some(user_id) };
    let Some(user) = user else {
        return Err(KnownError::cannot_get_own_user_without_user().into());
    };
    if auth.access_type == AccessType::Client && Some(user) != own {
        return Err(ApiError::status(403, "Client can only access its own connected accounts"));
    }
    let provider = provider(ctx, &auth.tenancy, provider_id).await?;
    if provider.shared && !ctx.config.allow_shared_oauth_access_tokens {
        return Err(KnownError::oauth_access_token_not_available_with_shared_oauth_keys().into());
    }
    Err(KnownError::oauth_connection_not_connected_to_user().into())
}
