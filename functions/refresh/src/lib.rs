//! The sessions function (contract part 1, §1).
//!
//! [`handle`] is the runtime-free entry: a request and a [`Context`] in, a response out. Every
//! runtime (the native host, a Cloudflare Worker, a Spin component) calls it unchanged.

#[cfg(feature = "cloudflare")]
shared::cloudflare_fetch!(crate::handle);
#[cfg(feature = "cloudflare")]
shared::cloudflare_scheduled!(crate::scheduled);
#[cfg(any(feature = "spin-wasi", feature = "spin"))]
shared::spin_http!(crate::handle);

mod jwks;
mod oauth;
mod oauth_providers;
mod projects;
mod sessions;
mod users;

use shared::error::{ApiError, ApiResult};
use shared::http::canonical_path;
use shared::{Context, Request, Response};

/// The routes this function serves.
#[derive(Debug, Clone, Copy)]
enum Route {
    Sessions,
    CurrentSession,
    CurrentSessionRefresh,
    Session,
    OAuthToken,
    OAuthAuthorize,
    ConnectedAccountAccessToken,
    Jwks,
    AnonymousJwks,
    Users,
    User,
    InternalProjects,
    InternalProjectKeySets,
}

fn router() -> &'static matchit::Router<Route> {
    static ROUTER: std::sync::OnceLock<matchit::Router<Route>> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        let routes = [
            ("/api/v1/auth/sessions", Route::Sessions),
            ("/api/v1/auth/sessions/current", Route::CurrentSession),
            ("/api/v1/auth/sessions/current/refresh", Route::CurrentSessionRefresh),
            ("/api/v1/auth/sessions/{id}", Route::Session),
            ("/api/v1/auth/oauth/token", Route::OAuthToken),
            ("/api/v1/auth/oauth/authorize/{provider_id}", Route::OAuthAuthorize),
            ("/api/v1/connected-accounts/{user_id}/{provider_id}/access-token", Route::ConnectedAccountAccessToken),
            (
                "/api/v1/connected-accounts/{user_id}/{provider_id}/{provider_account_id}/access-token",
                Route::ConnectedAccountAccessToken,
            ),
            ("/api/v1/projects/{project_id}/.well-known/jwks.json", Route::Jwks),
            ("/api/v1/projects-anonymous-users/{project_id}/.well-known/{*rest}", Route::AnonymousJwks),
            ("/api/v1/users", Route::Users),
            ("/api/v1/users/{id}", Route::User),
            ("/api/v1/internal/projects", Route::InternalProjects),
            ("/api/v1/internal/projects/{project_id}/key-sets", Route::InternalProjectKeySets),
        ];
        for (path, route) in routes {
            r.insert(path, route).expect("routes do not overlap");
        }
        r
    })
}

/// Whether this function serves `path` (used by hosts that bundle several functions).
pub fn serves(path: &str) -> bool {
    router().at(&shared::http::canonicalize(path)).is_ok()
}

/// The cron triggers of this function (also in its `wrangler.toml`; a test keeps them equal).
pub const CRONS: &[&str] = &["17 * * * *"];

/// Runs the scheduled work of `cron`: removes expired sessions (each recorded in
/// `deleted_rows`). Fired by Cloudflare's cron triggers and by the companion's scheduler.
pub async fn scheduled(cron: &str, ctx: &Context) {
    if !CRONS.contains(&cron) {
        tracing::warn!(cron, "no scheduled work for this cron");
        return;
    }
    match shared::sessions::purge_expired(ctx).await {
        Ok(purged) => tracing::info!(purged, "expired sessions removed"),
        Err(e) => tracing::error!(error = %e, "removing expired sessions failed"),
    }
}

/// Handles one request.
pub async fn handle(req: Request, ctx: &Context) -> Response {
    let show_internal = ctx.config.shows_internal_errors();
    match route(&req, ctx).await {
        Ok(response) => response,
        Err(e) => e.into_response(show_internal),
    }
}

async fn route(req: &Request, ctx: &Context) -> ApiResult<Response> {
    let path = canonical_path(req);
    let Ok(matched) = router().at(&path) else {
        return Err(ApiError::status(404, "Not found"));
    };
    let param = |name: &str| matched.params.get(name).unwrap_or_default().to_string();
    use http::Method as M;
    match (matched.value, req.method().clone()) {
        (Route::Sessions, M::POST) => sessions::create(ctx, req).await,
        (Route::Sessions, M::GET) => sessions::list(ctx, req).await,
        (Route::CurrentSession, M::DELETE) => sessions::sign_out(ctx, req).await,
        (Route::CurrentSessionRefresh, M::POST) => sessions::refresh(ctx, req).await,
        (Route::Session, M::DELETE) => sessions::delete(ctx, req, &param("id")).await,
        (Route::OAuthToken, M::POST) => oauth::token(ctx, req).await,
        (Route::OAuthAuthorize, M::GET) => oauth_providers::authorize(ctx, req, &param("provider_id")).await,
        (Route::ConnectedAccountAccessToken, M::POST) => {
            oauth_providers::access_token(ctx, req, &param("user_id"), &param("provider_id")).await
        }
        (Route::Jwks, M::GET) => jwks::jwks(ctx, req, &param("project_id")).await,
        (Route::AnonymousJwks, _) => Ok(jwks::anonymous_redirect(&param("project_id"), &param("rest"))),
        (Route::Users, M::POST) => users::create(ctx, req).await,
        (Route::User, M::GET) => users::get(ctx, req, &param("id")).await,
        (Route::User, M::PATCH) => users::update(ctx, req, &param("id")).await,
        (Route::User, M::DELETE) => users::delete(ctx, req, &param("id")).await,
        (Route::InternalProjects, M::POST) => projects::create(ctx, req).await,
        (Route::InternalProjectKeySets, M::POST) => projects::create_keys(ctx, req, &param("project_id")).await,
        _ => Err(ApiError::status(405, "Method not allowed")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrangler_cron_triggers_match_crons() {
        let config: toml::Table = include_str!("../wrangler.toml").parse().unwrap();
        let crons: Vec<&str> =
            config["triggers"]["crons"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(crons, super::CRONS);
    }
}
