//! Session endpoints: create (server), refresh (rotating where the project says so), sign out,
//! list, revoke (docs/api.md §1.2-§1.3, §1.10).

use serde_json::{json, Value};

use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{header, json, query_param, success, Request, Response};
use shared::identity::auth::{authenticate, AccessType, AuthRule, RequestAuth, ANY_ACCESS, SERVER_OR_ADMIN};
use shared::identity::rotation::{self, Rotation};
use shared::identity::sessions::{self, DEFAULT_SESSION_LIFETIME_MS, MAX_SESSION_LIFETIME_MS};
use shared::identity::users::get_user;
use shared::Context;

/// The refresh endpoint ignores an expired access token sent beside the refresh token.
const REFRESH_RULE: AuthRule = AuthRule { allowed: ANY_ACCESS, ignore_expired_access_token: true };

/// `POST /auth/sessions` (server or admin): a new session for an existing user.
pub async fn create(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["user_id", "expires_in_millis", "is_impersonation"]);
    let user_id = v.uuid(obj, "user_id", "body.user_id", true);
    let expires_in = v.integer(obj, "expires_in_millis", "body.expires_in_millis", 1, MAX_SESSION_LIFETIME_MS);
    let is_impersonation = v.boolean(obj, "is_impersonation", "body.is_impersonation");
    v.finish()?;
    let user_id = user_id.expect("validated");

    let tenancy = &auth.tenancy;
    let user =
        get_user(ctx, &tenancy.id, &user_id).await?.ok_or_else(|| KnownError::user_id_does_not_exist(&user_id))?;
    let expires_at = ctx.now() + expires_in.unwrap_or(DEFAULT_SESSION_LIFETIME_MS);
    let created =
        sessions::create_session(ctx, &tenancy.id, &user.id, Some(expires_at), is_impersonation.unwrap_or(false))
            .await?;
    // The server's request, not the end user's: its location is not the user's.
    let access_token = sessions::mint_access_token(ctx, tenancy, &user, &created.id, None).await?;
    Ok(json(&json!({ "refresh_token": created.refresh_token, "access_token": access_token })))
}

/// `POST /auth/sessions/current/refresh`: a new access token for the session the
/// `x-stack-refresh-token` header names, and its new refresh token where the project rotates
/// them (§1.10).
pub async fn refresh(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, REFRESH_RULE).await?;
    let refresh_token = match header(req, "x-stack-refresh-token") {
        Some(t) if !t.is_empty() => t,
        _ => return Err(Validator::single(req, "headers.x-stack-refresh-token must be defined")),
    };
    let refreshed = refresh_session(ctx, &auth, refresh_token).await?;
    Ok(json(&match refreshed.refresh_token {
        None => json!({ "access_token": refreshed.access_token }),
        Some(next) => json!({ "access_token": refreshed.access_token, "refresh_token": next }),
    }))
}

/// What a refresh hands back: the access token, and the new refresh token when rotating.
pub struct Refreshed {
    pub access_token: String,
    pub refresh_token: Option<String>,
}

/// Validates a refresh token in the request's tenancy, marks the session active and mints an
/// access token; where the project rotates refresh tokens, the session's token is rotated too
/// (or its reuse revokes the session). Shared by the refresh endpoint and the OAuth refresh
/// grant.
///
/// Losing a race against a sign-out, a revoke or a user deletion is not an error of ours:
/// the conditional touch changes 0 rows and the caller gets REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED.
pub async fn refresh_session(ctx: &Context, auth: &RequestAuth, refresh_token: &str) -> ApiResult<Refreshed> {
    let tenancy = &auth.tenancy;
    // The end user's location, when the runtime knows it, is the session's last-used one.
    let ip_info = auth.location.as_ref().map(shared::http::location::EndUserLocation::ip_info);
    let rotates = shared::config::store::rendered(ctx, tenancy).await?["auth"]["refreshTokenRotation"]["enabled"]
        .as_bool()
        .unwrap_or(false);
    let (session, user, next) = if rotates {
        match rotation::refresh(ctx, &tenancy.id, refresh_token, ip_info.as_ref()).await? {
            Rotation::Refreshed(rotated) => (rotated.session, rotated.user, Some(rotated.refresh_token)),
            Rotation::NotFound | Rotation::Revoked => {
                return Err(KnownError::refresh_token_not_found_or_expired().into())
            }
        }
    } else {
        let (session, user) = sessions::find_by_refresh_token(ctx, &tenancy.id, refresh_token)
            .await?
            .ok_or_else(KnownError::refresh_token_not_found_or_expired)?;
        if !sessions::touch(ctx, &tenancy.id, &session.id, &user.id, ip_info.as_ref()).await? {
            return Err(KnownError::refresh_token_not_found_or_expired().into());
        }
        (session, user, None)
    };
    let access_token = sessions::mint_access_token(ctx, tenancy, &user, &session.id, auth.location.as_ref()).await?;
    Ok(Refreshed { access_token, refresh_token: next })
}

/// `DELETE /auth/sessions/current`: signs out the session named by the access token's
/// `refresh_token_id`. A second or concurrent sign-out gets 401, not upstream's 500.
pub async fn sign_out(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let Some(session_id) = auth.user.as_ref().and_then(|u| u.refresh_token_id.clone()) else {
        // Upstream's deliberate stop-gap for tokens without a session id.
        return Err(KnownError::access_token_expired(Some(ctx.now()), None).into());
    };
    if !sessions::delete(ctx, &auth.tenancy.id, &session_id).await? {
        return Err(KnownError::refresh_token_not_found_or_expired().into());
    }
    Ok(success())
}

/// Resolves a `user_id` query value (`me` or a UUID) for the session endpoints, with the
/// client rule that a client may only name its own user.
fn resolve_user_id(req: &Request, auth: &RequestAuth, client_denied: ApiError) -> ApiResult<String> {
    let Some(raw) = query_param(req, "user_id").filter(|s| !s.is_empty()) else {
        return Err(Validator::single(req, "query.user_id must be defined"));
    };
    let current = auth.user.as_ref().map(|u| u.user_id.as_str());
    let user_id = if raw == "me" {
        current.ok_or_else(KnownError::cannot_get_own_user_without_user)?.to_string()
    } else if shared::identity::crypto::is_uuid(&raw) {
        raw.to_ascii_lowercase()
    } else {
        return Err(Validator::single(req, "query.user_id must be a valid UUID or \"me\""));
    };
    if auth.access_type == AccessType::Client && current != Some(user_id.as_str()) {
        return Err(client_denied);
    }
    Ok(user_id)
}

/// `GET /auth/sessions?user_id=`: a user's sessions, newest first.
pub async fn list(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let user_id =
        resolve_user_id(req, &auth, ApiError::status(403, "Client can only list sessions for their own user."))?;
    let current_session = auth.user.as_ref().and_then(|u| u.refresh_token_id.clone());
    let items: Vec<Value> = sessions::list_for_user(ctx, &auth.tenancy.id, &user_id)
        .await?
        .into_iter()
        .filter(|s| !s.is_impersonation || auth.access_type == AccessType::Admin)
        .map(|s| {
            let mut item = json!({
                "id": s.id,
                "user_id": s.user_id,
                "created_at": s.created_at,
                "last_used_at": s.last_active_at,
                "is_impersonation": s.is_impersonation,
                "is_current_session": current_session.as_deref() == Some(s.id.as_str()),
            });
            if let Some(ip) = s.last_active_ip_info {
                item["last_used_at_end_user_ip_info"] = ip;
            }
            item
        })
        .collect();
    Ok(json(&json!({ "items": items, "is_paginated": false })))
}

/// `DELETE /auth/sessions/{id}?user_id=`: revokes one session of a user (not the caller's own).
pub async fn delete(ctx: &Context, req: &Request, session_id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let not_found = || ApiError::status(404, "Session not found.");
    let user_id = resolve_user_id(req, &auth, not_found())?;
    let session = sessions::get(ctx, &auth.tenancy.id, session_id).await?;
    let Some(session) = session.filter(|s| s.user_id == user_id) else {
        return Err(not_found());
    };
    if auth.user.as_ref().and_then(|u| u.refresh_token_id.as_deref()) == Some(session.id.as_str()) {
        return Err(KnownError::cannot_delete_current_session().into());
    }
    if !sessions::delete(ctx, &auth.tenancy.id, &session.id).await? {
        return Err(not_found());
    }
    Ok(success())
}
