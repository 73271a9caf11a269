//! The sessions function (docs/api.md §1): sessions, password sign-in, the OAuth token and
//! provider endpoints, JWKS, users and internal project administration, and an hourly purge of expired
//! sessions. [`FUNCTION`] is the whole of it; every runtime serves it unchanged.

shared::function_entries!(crate::FUNCTION);

mod connected_accounts;
mod jwks;
mod oauth;
mod oauth_authorize;
mod oauth_callback;
mod oauth_flow;
mod oauth_providers;
mod otp;
mod password;
mod projects;
mod sessions;
mod sign_in_email;
mod users;

use shared::function::{Function, Route};
use shared::Context;

/// The sessions function: its routes and its hourly purge of expired sessions.
pub const FUNCTION: Function = Function {
    name: "refresh",
    routes: &[
        Route::at("/api/v1/auth/sessions")
            .post(|c| Box::pin(sessions::create(c.ctx, c.req)))
            .get(|c| Box::pin(sessions::list(c.ctx, c.req))),
        Route::at("/api/v1/auth/sessions/current").delete(|c| Box::pin(sessions::sign_out(c.ctx, c.req))),
        Route::at("/api/v1/auth/sessions/current/refresh").post(|c| Box::pin(sessions::refresh(c.ctx, c.req))),
        Route::at("/api/v1/auth/sessions/{id}").delete(|c| Box::pin(sessions::delete(c.ctx, c.req, c.param("id")))),
        Route::at("/api/v1/auth/password/sign-up").post(|c| Box::pin(password::sign_up(c.ctx, c.req))),
        Route::at("/api/v1/auth/password/sign-in").post(|c| Box::pin(password::sign_in(c.ctx, c.req))),
        Route::at("/api/v1/auth/password/update").post(|c| Box::pin(password::update(c.ctx, c.req))),
        Route::at("/api/v1/auth/password/send-reset-code").post(|c| Box::pin(password::send_reset_code(c.ctx, c.req))),
        Route::at("/api/v1/auth/password/reset").post(|c| Box::pin(password::reset(c.ctx, c.req))),
        Route::at("/api/v1/auth/password/reset/check-code")
            .post(|c| Box::pin(password::check_reset_code(c.ctx, c.req))),
        Route::at("/api/v1/auth/otp/send-sign-in-code").post(|c| Box::pin(otp::send_sign_in_code(c.ctx, c.req))),
        Route::at("/api/v1/auth/otp/sign-in").post(|c| Box::pin(otp::sign_in(c.ctx, c.req))),
        Route::at("/api/v1/auth/oauth/token").post(|c| Box::pin(oauth::token(c.ctx, c.req))),
        Route::at("/api/v1/auth/oauth/authorize/{provider_id}")
            .get(|c| Box::pin(oauth_authorize::authorize(c.ctx, c.req, c.param("provider_id")))),
        Route::at("/api/v1/auth/oauth/callback/{provider_id}")
            .get(|c| Box::pin(oauth_callback::callback(c.ctx, c.req, c.param("provider_id")))),
        Route::at("/api/v1/connected-accounts/{user_id}/{provider_id}/access-token").post(|c| {
            Box::pin(connected_accounts::access_token(c.ctx, c.req, c.param("user_id"), c.param("provider_id"), None))
        }),
        Route::at("/api/v1/connected-accounts/{user_id}/{provider_id}/{provider_account_id}/access-token").post(|c| {
            let account = Some(c.param("provider_account_id"));
            Box::pin(connected_accounts::access_token(
                c.ctx,
                c.req,
                c.param("user_id"),
                c.param("provider_id"),
                account,
            ))
        }),
        Route::at("/api/v1/projects/{project_id}/.well-known/jwks.json")
            .get(|c| Box::pin(jwks::jwks(c.ctx, c.req, c.param("project_id")))),
        Route::at("/api/v1/projects-anonymous-users/{project_id}/.well-known/{*rest}")
            .any(|c| Box::pin(async { Ok(jwks::anonymous_redirect(c.param("project_id"), c.param("rest"))) })),
        Route::at("/api/v1/users").post(|c| Box::pin(users::create(c.ctx, c.req))),
        Route::at("/api/v1/users/{id}")
            .get(|c| Box::pin(users::get(c.ctx, c.req, c.param("id"))))
            .patch(|c| Box::pin(users::update(c.ctx, c.req, c.param("id"))))
            .delete(|c| Box::pin(users::delete(c.ctx, c.req, c.param("id")))),
        Route::at("/api/v1/internal/projects").post(|c| Box::pin(projects::create(c.ctx, c.req))),
        Route::at("/api/v1/internal/projects/{project_id}/key-sets")
            .post(|c| Box::pin(projects::create_keys(c.ctx, c.req, c.param("project_id")))),
    ],
    crons: &["17 * * * *"],
    scheduled: Some(|_cron, ctx| Box::pin(purge_expired_sessions(ctx))),
    health: None,
};

/// The scheduled work: removes expired sessions (each recorded in `deleted_rows`), and codes
/// and OAuth flows that expired a day ago.
async fn purge_expired_sessions(ctx: &Context) {
    match shared::identity::sessions::purge_expired(ctx).await {
        Ok(purged) => tracing::info!(purged, "expired sessions removed"),
        Err(e) => tracing::error!(error = %e, "removing expired sessions failed"),
    }
    match shared::identity::codes::purge_expired(ctx).await {
        Ok(purged) => tracing::info!(purged, "expired sign-in codes removed"),
        Err(e) => tracing::error!(error = %e, "removing expired sign-in codes failed"),
    }
    match oauth_flow::purge_expired(ctx).await {
        Ok(purged) => tracing::info!(purged, "expired OAuth flows and authorization codes removed"),
        Err(e) => tracing::error!(error = ?e, "removing expired OAuth flows failed"),
    }
}
