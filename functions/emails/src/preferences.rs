//! Users' notification preferences and the unsubscribe link (shared::email::notifications):
//! `GET /emails/notification-preference/{user_id|me}` lists the categories with the user's
//! switch, `PATCH .../{user_id|me}/{category_id}` sets one (`{enabled}`), and
//! `GET /emails/unsubscribe-link?code=...` — the link in marketing emails, with no project
//! authentication — turns the signed category off for the signed user.

use serde_json::{json, Value};

use shared::email::notifications::{category, is_enabled, set_enabled, verify_unsubscribe_code, Category, CATEGORIES};
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, query_param, Request, Response};
use shared::identity::auth::{authenticate, AccessType, AuthRule, RequestAuth, ANY_ACCESS};
use shared::Context;

/// The user a preferences call is about: `me` is the caller's own user; clients may only
/// name themselves; the user must exist.
async fn target_user(ctx: &Context, auth: &RequestAuth, user_id: &str) -> ApiResult<String> {
    let own = auth.user.as_ref().map(|u| u.user_id.as_str());
    let user_id = match (user_id, own) {
        ("me", Some(own)) => own,
        ("me", None) => return Err(KnownError::cannot_get_own_user_without_user().into()),
        (id, _) => id,
    };
    if auth.access_type == AccessType::Client && Some(user_id) != own {
        return Err(ApiError::status(403, "Client can only manage its own notification preferences"));
    }
    let user = shared::identity::users::get_user(ctx, &auth.tenancy.id, user_id).await?;
    Ok(user.ok_or_else(KnownError::user_not_found)?.id)
}

async fn item(ctx: &Context, tenancy_id: &str, user_id: &str, category: Category) -> ApiResult<Value> {
    let enabled = is_enabled(ctx, tenancy_id, user_id, category).await?;
    Ok(json!({
        "notification_category_id": category.id,
        "notification_category_name": category.name,
        "enabled": enabled,
        "can_disable": category.can_disable,
    }))
}

pub async fn list(ctx: &Context, req: &Request, user_id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let user_id = target_user(ctx, &auth, user_id).await?;
    let mut items = Vec::new();
    for category in CATEGORIES {
        items.push(item(ctx, &auth.tenancy.id, &user_id, category).await?);
    }
    Ok(json(&json!({ "items": items, "is_paginated": false })))
}

pub async fn update(ctx: &Context, req: &Request, user_id: &str, category_id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["enabled"]);
    let enabled = v.boolean(obj, "enabled", "body.enabled");
    if obj.is_some() && enabled.is_none() {
        v.fail("body.enabled must be defined".into());
    }
    v.finish()?;
    let user_id = target_user(ctx, &auth, user_id).await?;
    let category = category(category_id).ok_or_else(|| ApiError::status(404, "Notification category not found"))?;
    let enabled = enabled.expect("validated");
    if !enabled && !category.can_disable {
        return Err(ApiError::status(400, format!("The {} notification category cannot be disabled", category.name)));
    }
    set_enabled(ctx, &auth.tenancy.id, &user_id, category, enabled).await?;
    Ok(json(&item(ctx, &auth.tenancy.id, &user_id, category).await?))
}

pub async fn unsubscribe(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let code = query_param(req, "code").unwrap_or_default();
    let unsubscribe = verify_unsubscribe_code(&ctx.config.server_secret, &code)
        .ok_or_else(|| ApiError::status(400, "This unsubscribe link is not valid."))?;
    let user = shared::identity::users::get_user(ctx, &unsubscribe.tenancy_id, &unsubscribe.user_id).await?;
    if user.is_none() {
        return Err(ApiError::status(404, "This unsubscribe link belongs to a user that no longer exists."));
    }
    set_enabled(ctx, &unsubscribe.tenancy_id, &unsubscribe.user_id, unsubscribe.category, false).await?;
    let page = format!(
        "<!doctype html><title>Unsubscribed</title><p>You will no longer receive {} emails.</p>",
        unsubscribe.category.name.to_lowercase()
    );
    let mut response = shared::http::text(200, &page);
    response.headers_mut().insert("content-type", http::HeaderValue::from_static("text/html; charset=utf-8"));
    Ok(response)
}
