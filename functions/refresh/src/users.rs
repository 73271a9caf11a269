//! Minimal users endpoints, enough to test sessions end to end: create and update (server),
//! read, delete. Deleting a user ends all of its sessions; an update shows in the next token.
//! Each write asks the analytics mirror for a step soon (docs/api.md §6.6).

use shared::analytics::sync;
use shared::http::error::{ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, json_with_status, success, Request, Response};
use shared::identity::auth::{authenticate, AccessType, AuthRule, RequestAuth, ANY_ACCESS, SERVER_OR_ADMIN};
use shared::identity::users::{self, NewUser, UserPatch};
use shared::Context;

const MAX_DISPLAY_NAME: usize = 256;
const MAX_EMAIL: usize = 254;

/// `POST /users` (server or admin).
pub async fn create(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let fields = user_fields(&mut v, &body);
    v.finish()?;
    let new = NewUser {
        display_name: fields.display_name.flatten(),
        primary_email: fields.primary_email.flatten(),
        primary_email_verified: fields.primary_email_verified.unwrap_or(false),
        is_anonymous: fields.is_anonymous.unwrap_or(false),
        restricted_by_admin: fields.restricted_by_admin.unwrap_or(false),
    };
    let user = users::create_user(ctx, &auth.tenancy, new).await?;
    sync::soon(ctx);
    Ok(json_with_status(201, &user.to_json()))
}

/// The user fields of a create or update body, validated: `None` when absent, `Some(None)` for
/// an explicit null.
struct UserFields {
    display_name: Option<Option<String>>,
    primary_email: Option<Option<String>>,
    primary_email_verified: Option<bool>,
    is_anonymous: Option<bool>,
    restricted_by_admin: Option<bool>,
}

fn user_fields(v: &mut Validator, body: &Option<serde_json::Value>) -> UserFields {
    let obj = v.body_object(
        body,
        &["display_name", "primary_email", "primary_email_verified", "is_anonymous", "restricted_by_admin"],
    );
    let nullable = |v: &mut Validator, key: &str| -> Option<Option<String>> {
        let present = obj.is_some_and(|o| o.contains_key(key));
        present.then(|| v.string(obj, key, &format!("body.{key}"), false))
    };
    let display_name = nullable(v, "display_name");
    if display_name.as_ref().and_then(|d| d.as_ref()).is_some_and(|d| d.chars().count() > MAX_DISPLAY_NAME) {
        v.fail(format!("body.display_name must be at most {MAX_DISPLAY_NAME} characters"));
    }
    let primary_email = nullable(v, "primary_email");
    if primary_email.as_ref().and_then(|e| e.as_deref()).is_some_and(|e| !is_email(e)) {
        v.fail("body.primary_email must be a valid email".into());
    }
    UserFields {
        display_name,
        primary_email,
        primary_email_verified: v.boolean(obj, "primary_email_verified", "body.primary_email_verified"),
        is_anonymous: v.boolean(obj, "is_anonymous", "body.is_anonymous"),
        restricted_by_admin: v.boolean(obj, "restricted_by_admin", "body.restricted_by_admin"),
    }
}

/// `GET /users/{id}`: server and admin read any user; a client reads only `me`.
pub async fn get(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let user_id = resolve(&auth, id)?;
    if auth.access_type == AccessType::Client
        && auth.user.as_ref().map(|u| u.user_id.as_str()) != Some(user_id.as_str())
    {
        return Err(KnownError::user_not_found().into());
    }
    let user = users::get_user(ctx, &auth.tenancy.id, &user_id).await?.ok_or_else(KnownError::user_not_found)?;
    Ok(json(&user.to_json()))
}

/// `PATCH /users/{id}` (server or admin). The next access token of the user's sessions carries
/// the new values.
pub async fn update(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let user_id = resolve(&auth, id)?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let fields = user_fields(&mut v, &body);
    if fields.is_anonymous == Some(true) {
        v.fail("body.is_anonymous can only be set to false (an anonymous user can be upgraded, not back)".into());
    }
    let patch = UserPatch {
        display_name: fields.display_name,
        primary_email: fields.primary_email,
        primary_email_verified: fields.primary_email_verified,
        is_anonymous: fields.is_anonymous,
        restricted_by_admin: fields.restricted_by_admin,
    };
    v.finish()?;
    let user =
        users::update_user(ctx, &auth.tenancy.id, &user_id, patch).await?.ok_or_else(KnownError::user_not_found)?;
    sync::soon(ctx);
    Ok(json(&user.to_json()))
}

/// `DELETE /users/{id}` (server or admin). Ends the user's sessions: a later refresh is 401.
pub async fn delete(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let user_id = resolve(&auth, id)?;
    if !users::delete_user(ctx, &auth.tenancy.id, &user_id).await? {
        return Err(KnownError::user_not_found().into());
    }
    sync::soon(ctx);
    Ok(success())
}

/// `me` is the access token's user; anything else must be a UUID (others cannot exist).
fn resolve(auth: &RequestAuth, id: &str) -> ApiResult<String> {
    if id == "me" {
        return auth
            .user
            .as_ref()
            .map(|u| u.user_id.clone())
            .ok_or_else(|| KnownError::cannot_get_own_user_without_user().into());
    }
    if shared::identity::crypto::is_uuid(id) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(KnownError::user_not_found().into())
    }
}

/// A pragmatic address check: one `@`, non-empty local part, a dotted domain, no spaces.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    s.len() <= MAX_EMAIL
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    #[test]
    fn email_check() {
        assert!(super::is_email("a@b.co"));
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b.co."] {
            assert!(!super::is_email(bad), "{bad}");
        }
    }
}
