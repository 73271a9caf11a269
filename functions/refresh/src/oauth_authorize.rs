//! `GET /auth/oauth/authorize/{provider_id}` (docs/api.md §2.1, §2.4): the checks in upstream's
//! order, then the flow is stored (`oauth_flow`) and the browser sent to the provider with our
//! own state and PKCE challenge.
//!
//! The state is also set as a cookie (`stack-oauth-inner-<state>`, HttpOnly, ten minutes): the
//! callback accepts a state only from the browser that began the flow, so a sign-in cannot be
//! forced on someone else's browser (login CSRF).

use serde_json::Value;

use shared::config::store::rendered;
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::Validator;
use shared::http::{query_param, Request, Response};
use shared::identity::auth::{key_is_valid, AccessType, PUBLIC_CLIENT_SENTINEL};
use shared::identity::crypto::{base64url, random_crockford, sha256};
use shared::identity::tenancy::{project_branch, ProjectBranch, Tenancy};
use shared::Context;

use crate::oauth_flow::{self, Flow, FLOW_LIFETIME_MS};
use crate::oauth_providers::provider;

/// The cookie that binds a flow's state to the browser that began it.
pub fn state_cookie(state: &str) -> String {
    format!("stack-oauth-inner-{state}")
}

/// Our callback at the provider for `provider_id`.
pub fn callback_url(ctx: &Context, provider_id: &str) -> String {
    format!("{}/api/v1/auth/oauth/callback/{provider_id}", ctx.config.api_url)
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
    let config = rendered(ctx, &tenancy).await?;
    Ok((tenancy, config))
}

/// The checks of docs/api.md §2.1 in order, the app's OAuth parameters (§2.4), then a
/// redirect to the provider.
pub async fn authorize(ctx: &Context, req: &Request, provider_id: &str) -> ApiResult<Response> {
    let param = |name: &str| query_param(req, name).unwrap_or_default();
    let client_id = param("client_id");
    if client_id.is_empty() {
        return Err(KnownError::invalid_oauth_client_id_or_secret(None).into());
    }
    let (tenancy, config) = oauth_client(ctx, &client_id, &param("client_secret")).await?;
    let provider = provider(ctx, &config, provider_id)?;
    let link = param("type") == "link";
    if link && param("token").is_empty() {
        return Err(ApiError::status(400, "?token= query parameter is required for link type"));
    }
    let (redirect_uri, state, code_challenge) = app_parameters(req, &param)?;
    let after_callback = param("after_callback_redirect_url");
    for url in [after_callback.as_str(), redirect_uri.as_str()] {
        if !url.is_empty() && !shared::config::is_trusted_redirect(&config, url) {
            return Err(KnownError::redirect_url_not_whitelisted().into());
        }
    }
    let extra_scope = param("provider_scope");
    if provider.shared && !extra_scope.trim().is_empty() {
        return Err(KnownError::oauth_extra_scope_not_available_with_shared_oauth_keys().into());
    }
    let mut link_user_id = None;
    if link {
        let user = shared::identity::tokens::verify(&ctx.keys, &param("token"), ctx.now()).await?;
        if user.project_id != tenancy.project_id || user.branch_id != tenancy.branch_id {
            return Err(ApiError::status(403, "The link token belongs to another project or branch."));
        }
        link_user_id = Some(user.user_id);
    }
    let client = provider.client(ctx, &config)?;

    let inner_state = random_crockford(ctx.random.as_ref(), 43);
    let verifier = random_crockford(ctx.random.as_ref(), 64);
    let error_redirect = [param("error_redirect_uri"), param("error_redirect_url")].into_iter().find(|u| !u.is_empty());
    let flow = Flow {
        tenancy_id: tenancy.id.clone(),
        provider_id: provider.id.clone(),
        redirect_uri,
        state,
        code_challenge,
        provider_code_verifier: verifier.clone(),
        link_user_id,
        provider_scope: extra_scope.clone(),
        // Used only if trusted when the error happens (the config may change meanwhile).
        error_redirect_url: error_redirect,
        after_callback_redirect_url: Some(after_callback).filter(|u| !u.is_empty()),
    };
    oauth_flow::begin(ctx, &inner_state, &flow).await?;
    let location = provider.authorization_url(
        &client.id,
        &callback_url(ctx, &provider.id),
        &extra_scope,
        &inner_state,
        &base64url(&sha256(verifier.as_bytes())),
    );
    let secure = if ctx.config.api_url.starts_with("https://") { "; Secure" } else { "" };
    let cookie = format!(
        "{}=true; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        state_cookie(&inner_state),
        FLOW_LIFETIME_MS / 1000
    );
    let mut response = shared::http::text(307, "Redirecting to the OAuth provider");
    let headers = response.headers_mut();
    let header = |v: &str| http::HeaderValue::from_str(v).map_err(|e| ApiError::internal(e.to_string()));
    headers.insert("location", header(&location)?);
    headers.insert("set-cookie", header(&cookie)?);
    headers.insert("cache-control", http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The app's OAuth parameters: `redirect_uri`, `state`, and a PKCE challenge, which is
/// required (S256 only: every client is public). Returns them with the URL's fragment dropped.
fn app_parameters(req: &Request, param: &dyn Fn(&str) -> String) -> ApiResult<(String, String, String)> {
    let mut v = Validator::new(req);
    for name in ["redirect_uri", "state", "code_challenge", "code_challenge_method", "response_type"] {
        if param(name).is_empty() {
            v.fail(format!("query.{name} must be defined"));
        }
    }
    let redirect_uri = param("redirect_uri");
    if !redirect_uri.is_empty() && url::Url::parse(&redirect_uri).is_err() {
        v.fail("query.redirect_uri is not a valid URL".into());
    }
    if !["", "code"].contains(&param("response_type").as_str()) {
        v.fail("query.response_type must be one of the following values: code".into());
    }
    if !["", "authorization_code"].contains(&param("grant_type").as_str()) {
        v.fail("query.grant_type must be one of the following values: authorization_code".into());
    }
    if !["", "S256"].contains(&param("code_challenge_method").as_str()) {
        v.fail("query.code_challenge_method must be one of the following values: S256".into());
    }
    let challenge = param("code_challenge");
    if !challenge.is_empty() && !oauth_flow::is_s256_challenge(&challenge) {
        v.fail("query.code_challenge must be 43 base64url characters (an S256 challenge)".into());
    }
    v.finish()?;
    let redirect_uri = redirect_uri.split('#').next().unwrap_or_default().to_string();
    Ok((redirect_uri, param("state"), challenge))
}
