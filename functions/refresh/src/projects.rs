//! Project administration for the internal project's admin: `POST /internal/projects` creates a
//! project with a `main` branch and a key set; `POST /internal/projects/{id}/key-sets` adds a
//! key set. Keys are in the response once and stored hashed.

use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json_with_status, Request, Response};
use shared::identity::auth::RequestAuth;
use shared::identity::auth::{authenticate, AuthRule, ADMIN_ONLY};
use shared::identity::projects::{create_key_set, create_project, NewProject, INTERNAL_PROJECT_ID};
use shared::Context;

const MAX_NAME: usize = 256;

async fn authenticate_internal_admin(ctx: &Context, req: &Request) -> ApiResult<RequestAuth> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    if auth.tenancy.project_id != INTERNAL_PROJECT_ID {
        return Err(KnownError::expected_internal_project().into());
    }
    Ok(auth)
}

pub async fn create(ctx: &Context, req: &Request) -> ApiResult<Response> {
    authenticate_internal_admin(ctx, req).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["display_name", "require_publishable_client_key", "config_override"]);
    let display_name = v.string(obj, "display_name", "body.display_name", true);
    if let Some(name) = &display_name {
        if name.trim().is_empty() || name.chars().count() > MAX_NAME {
            v.fail(format!("body.display_name must be between 1 and {MAX_NAME} characters"));
        }
    }
    let require_key = v.boolean(obj, "require_publishable_client_key", "body.require_publishable_client_key");
    let config_override = match obj.and_then(|o| o.get("config_override")) {
        None | Some(serde_json::Value::Null) => serde_json::json!({}),
        Some(value @ serde_json::Value::Object(_)) => value.clone(),
        Some(other) => {
            v.fail(format!("body.config_override must be a `object` type, but the final value was: `{other}`."));
            serde_json::json!({})
        }
    };
    v.finish()?;
    let created = create_project(
        ctx,
        NewProject {
            display_name: display_name.as_deref().expect("validated").trim(),
            require_publishable_client_key: require_key.unwrap_or(false),
            config_override,
        },
    )
    .await?;
    Ok(json_with_status(201, &created))
}

pub async fn create_keys(ctx: &Context, req: &Request, project_id: &str) -> ApiResult<Response> {
    authenticate_internal_admin(ctx, req).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = if body.is_some() { v.body_object(&body, &["description"]) } else { None };
    let description = v.string(obj, "description", "body.description", false);
    if description.as_ref().is_some_and(|d| d.chars().count() > MAX_NAME) {
        v.fail(format!("body.description must be at most {MAX_NAME} characters"));
    }
    v.finish()?;
    let created = create_key_set(ctx, project_id, description.as_deref().unwrap_or("Created through the API"))
        .await?
        .ok_or_else(|| ApiError::status(404, "Project not found"))?;
    Ok(json_with_status(201, &created))
}
