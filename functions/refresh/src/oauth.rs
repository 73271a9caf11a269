//! `POST /auth/oauth/token` (docs/api.md §1.5, §2.5): the `refresh_token` grant, and the
//! `authorization_code` grant that ends an OAuth sign-in (the code from the callback, the app's
//! redirect URL and its PKCE verifier) with a new session.
//!
//! Unlike upstream, a refresh that loses a race against a sign-out never creates a new
//! (orphan) session: it is answered REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED.

use serde_json::{json, Map, Value};

use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json_with_status, Request, Response};
use shared::identity::auth::{key_is_valid, AccessType, RequestAuth, PUBLIC_CLIENT_SENTINEL};
use shared::identity::tenancy::{project_branch, ProjectBranch};
use shared::Context;

use shared::identity::sessions::{self, DEFAULT_SESSION_LIFETIME_MS};
use shared::identity::users::get_user;

use crate::oauth_flow::{redeem_code, Grant};
use crate::sessions::refresh_session;

const FIELDS: &[&str] =
    &["grant_type", "client_id", "client_secret", "refresh_token", "scope", "code", "redirect_uri", "code_verifier"];

pub async fn token(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, FIELDS);
    let grant_type = v.string(obj, "grant_type", "body.grant_type", true);
    if let Some(g) = grant_type.as_deref() {
        if g != "authorization_code" && g != "refresh_token" {
            v.fail("body.grant_type must be one of the following values: authorization_code, refresh_token".into());
        }
    }
    let client_id = v.string(obj, "client_id", "body.client_id", false);
    let client_secret = v.string(obj, "client_secret", "body.client_secret", false);
    let refresh_token = v.string(obj, "refresh_token", "body.refresh_token", false);
    let scope = v.string(obj, "scope", "body.scope", false);
    let code = v.string(obj, "code", "body.code", false);
    let redirect_uri = v.string(obj, "redirect_uri", "body.redirect_uri", false);
    let code_verifier = v.string(obj, "code_verifier", "body.code_verifier", false);
    v.finish()?;
    let grant_type = grant_type.expect("validated");

    let auth = authenticate_client(ctx, client_id.as_deref(), client_secret.as_deref()).await?;
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        if let Some(bad) = scope.split(' ').find(|s| !s.is_empty() && *s != "legacy") {
            return Err(KnownError::invalid_scope(bad).into());
        }
    }
    // The token request comes from the end user's app: its location is theirs.
    let location = shared::http::location::end_user_location(req).cloned();
    if grant_type == "authorization_code" {
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return Err(ApiError::OAuth {
                status: 400,
                error: "invalid_request",
                description: "Missing parameter: `code`".into(),
            });
        };
        let auth = RequestAuth { location, ..auth };
        let grant = redeem_code(
            ctx,
            &auth.tenancy.id,
            &code,
            redirect_uri.as_deref().unwrap_or_default(),
            code_verifier.as_deref().unwrap_or_default(),
        )
        .await?;
        return exchanged(ctx, &auth, grant).await;
    }
    let Some(refresh_token) = refresh_token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::OAuth {
            status: 400,
            error: "invalid_request",
            description: "Missing parameter: `refresh_token`".into(),
        });
    };

    let auth = RequestAuth { location, ..auth };
    let refreshed = refresh_session(ctx, &auth, &refresh_token).await?;
    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(refreshed.access_token));
    // Only where the project rotates refresh tokens (§1.10): the one to use next.
    if let Some(next) = refreshed.refresh_token {
        body.insert("refresh_token".into(), Value::String(next));
    }
    Ok(token_response(ctx, body, None))
}

/// The session an authorization code grants: a new refresh token and its access token.
async fn exchanged(ctx: &Context, auth: &RequestAuth, grant: Grant) -> ApiResult<Response> {
    let user = get_user(ctx, &auth.tenancy.id, &grant.user_id)
        .await?
        .ok_or_else(|| ApiError::from(KnownError::invalid_authorization_code()))?;
    let expires_at = ctx.now() + DEFAULT_SESSION_LIFETIME_MS;
    let session = sessions::create_session(ctx, &auth.tenancy.id, &user.id, Some(expires_at), false).await?;
    let access_token =
        sessions::mint_access_token(ctx, &auth.tenancy, &user, &session.id, auth.location.as_ref()).await?;
    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(access_token));
    body.insert("refresh_token".into(), Value::String(session.refresh_token));
    body.insert("is_new_user".into(), Value::Bool(grant.is_new_user));
    body.insert("newUser".into(), Value::Bool(grant.is_new_user));
    Ok(token_response(ctx, body, grant.after_callback_redirect_url))
}

/// The token endpoint's answer: `body` and the fields every grant has, not to be cached.
fn token_response(ctx: &Context, mut body: Map<String, Value>, after_callback: Option<String>) -> Response {
    body.insert("token_type".into(), json!("Bearer"));
    // The real remaining lifetime of the token (upstream reports the OAuth library's 3599 s).
    body.insert("expires_in".into(), json!(ctx.config.access_token_lifetime_ms / 1000));
    body.insert("scope".into(), json!("legacy"));
    body.insert("afterCallbackRedirectUrl".into(), json!(after_callback));
    body.insert("after_callback_redirect_url".into(), json!(after_callback));
    let mut response = json_with_status(200, &Value::Object(body));
    let headers = response.headers_mut();
    headers.insert("cache-control", http::HeaderValue::from_static("no-store"));
    headers.insert("pragma", http::HeaderValue::from_static("no-cache"));
    response
}

/// OAuth client authentication: `client_id` is `<projectId>` or `<projectId>#<branchId>`,
/// `client_secret` a publishable client key or the public sentinel.
async fn authenticate_client(
    ctx: &Context,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> ApiResult<RequestAuth> {
    let invalid = || ApiError::from(KnownError::invalid_oauth_client_id_or_secret(None));
    let client_id = client_id.filter(|c| !c.is_empty()).ok_or_else(invalid)?;
    let (project_id, branch_id) = client_id.split_once('#').unwrap_or((client_id, "main"));
    // A project without that branch is an unknown client too.
    let Some(ProjectBranch { require_publishable_client_key: require_key, tenancy: Some(tenancy) }) =
        project_branch(ctx, project_id, branch_id).await?
    else {
        return Err(invalid());
    };
    match client_secret.filter(|s| !s.is_empty()) {
        None if require_key => return Err(KnownError::publishable_client_key_required_for_project(project_id).into()),
        // The OAuth flow needs client authentication, so clients must send the sentinel.
        None => return Err(invalid()),
        Some(PUBLIC_CLIENT_SENTINEL) if require_key => {
            return Err(KnownError::publishable_client_key_required_for_project(project_id).into())
        }
        Some(PUBLIC_CLIENT_SENTINEL) => {}
        Some(key) => {
            if !key_is_valid(ctx, project_id, AccessType::Client, key).await? {
                return Err(invalid());
            }
        }
    }
    Ok(RequestAuth {
        access_type: AccessType::Client,
        tenancy,
        require_publishable_client_key: require_key,
        user: None,
        location: None,
    })
}
