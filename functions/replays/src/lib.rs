//! The session-replays function (contract part 1, §3): browsers upload batches of recorded
//! events (`POST /session-replays/batch`, a user's access token), which are grouped into
//! replays and stored as gzipped chunks in the blob store; a project's admin lists replays,
//! reads one, pages through its chunks and reads their events.

#[cfg(feature = "cloudflare")]
shared::cloudflare_fetch!(crate::handle);
#[cfg(any(feature = "spin-wasi", feature = "spin"))]
shared::spin_http!(crate::handle);

mod admin;
mod batch;

use shared::error::{ApiError, ApiResult};
use shared::http::canonical_path;
use shared::{Context, Request, Response};

#[derive(Debug, Clone, Copy)]
enum Route {
    Batch,
    List,
    Replay,
    Chunks,
    ChunkEvents,
    Events,
}

fn router() -> &'static matchit::Router<Route> {
    static ROUTER: std::sync::OnceLock<matchit::Router<Route>> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        let routes = [
            ("/api/v1/session-replays/batch", Route::Batch),
            ("/api/v1/internal/session-replays", Route::List),
            ("/api/v1/internal/session-replays/{id}", Route::Replay),
            ("/api/v1/internal/session-replays/{id}/chunks", Route::Chunks),
            ("/api/v1/internal/session-replays/{id}/chunks/{chunk_id}/events", Route::ChunkEvents),
            ("/api/v1/internal/session-replays/{id}/events", Route::Events),
        ];
        for (path, route) in routes {
            r.insert(path, route).expect("routes do not overlap");
        }
        r
    })
}

/// Whether this function serves `path`.
pub fn serves(path: &str) -> bool {
    router().at(&shared::http::canonicalize(path)).is_ok()
}

/// Handles one request.
pub async fn handle(req: Request, ctx: &Context) -> Response {
    match route(&req, ctx).await {
        Ok(response) => response,
        Err(e) => e.into_response(ctx.config.shows_internal_errors()),
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
        (Route::Batch, M::POST) => batch::upload(ctx, req).await,
        (Route::List, M::GET) => admin::list(ctx, req).await,
        (Route::Replay, M::GET) => admin::get(ctx, req, &param("id")).await,
        (Route::Chunks, M::GET) => admin::chunks(ctx, req, &param("id")).await,
        (Route::ChunkEvents, M::GET) => admin::chunk_events(ctx, req, &param("id"), &param("chunk_id")).await,
        (Route::Events, M::GET) => admin::events(ctx, req, &param("id")).await,
        _ => Err(ApiError::status(405, "Method not allowed")),
    }
}
