//! `POST /internal/projects`: creates a project with a `main` branch and a key set. Only the
//! internal project's admin may call it. The keys are in the response once and stored hashed.

use shared::auth::{authenticate, store_error, AuthRule, ADMIN_ONLY};
use shared::error::{ApiResult, KnownError};
use shared::http::{json_with_status, Request, Response};
use shared::projects::{create_project, NewProject, INTERNAL_PROJECT_ID};
use shared::validate::{parse_body, Validator};
use shared::Context;

const MAX_NAME: usize = 256;

pub async fn create(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    if auth.tenancy.project_id != INTERNAL_PROJECT_ID {
        return Err(KnownError::expected_internal_project().into());
    }
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["display_name", "require_publishable_client_key"]);
    let display_name = v.string(obj, "display_name", "body.display_name", true);
    if let Some(name) = &display_name {
        if name.trim().is_empty() || name.chars().count() > MAX_NAME {
            v.fail(format!(
                "body.display_name must be between 1 and {MAX_NAME} characters"
            ));
        }
    }
    let require_key = v.boolean(
        obj,
        "require_publishable_client_key",
        "body.require_publishable_client_key",
    );
    v.finish()?;
    let created = create_project(
        ctx,
        NewProject {
            display_name: display_name.as_deref().expect("validated").trim(),
            require_publishable_client_key: require_key.unwrap_or(false),
        },
    )
    .await
    .map_err(store_error)?;
    Ok(json_with_status(201, &created))
}
