//! The project JWKS (docs/api.md §1.7): public, cacheable, two keys per audience.

use shared::http::error::{ApiError, ApiResult};
use shared::http::validate::Validator;
use shared::http::{json, query_param, Request, Response};
use shared::identity::tokens;
use shared::store::ports::SqlValue;
use shared::Context;

/// `GET /projects/{project_id}/.well-known/jwks.json?include_restricted=&include_anonymous=`.
pub async fn jwks(ctx: &Context, req: &Request, project_id: &str) -> ApiResult<Response> {
    let mut v = Validator::new(req);
    let mut flag = |name: &str| match query_param(req, name).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            v.fail(format!("query.{name} must be one of the following values: true, false"));
            false
        }
    };
    let include_restricted = flag("include_restricted");
    let include_anonymous = flag("include_anonymous");
    v.finish()?;

    let exists =
        !ctx.store.query("SELECT id FROM projects WHERE id = ?", &[SqlValue::from(project_id)]).await?.is_empty();
    if !exists {
        return Err(ApiError::status(404, "Project not found"));
    }
    let mut response = json(&tokens::jwks(&ctx.keys, project_id, include_restricted, include_anonymous));
    response.headers_mut().insert("cache-control", http::HeaderValue::from_static("public, max-age=3600"));
    Ok(response)
}

/// `/projects-anonymous-users/{project_id}/.well-known/...` (any method): the anonymous issuer
/// cannot carry a query string, so it redirects to the project JWKS with anonymous keys.
pub fn anonymous_redirect(project_id: &str, rest: &str) -> Response {
    let location = format!("/api/v1/projects/{project_id}/.well-known/{rest}?include_anonymous=true");
    http::Response::builder()
        .status(307)
        .header("location", location)
        .body(Vec::new())
        .expect("static response parts are valid")
}
