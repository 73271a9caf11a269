//! The MCP function (contract part 2, §3-§4): the `ask_stack_auth` MCP server at
//! `/api/internal/mcp` (`server.rs`), the AI query endpoint `/api/v1/ai/query/{mode}` it asks
//! (`ai.rs`), the AI proxy to the model API (`proxy.rs`) and the setup prompt for coding agents
//! (`GET /api/v1/ai/init-prompt`). The model is any OpenAI-compatible API (`llm.rs`); the docs
//! tools come from a documentation MCP server (`docs.rs`).

#[cfg(feature = "cloudflare")]
shared::cloudflare_fetch!(crate::handle);
#[cfg(any(feature = "spin-wasi", feature = "spin"))]
shared::spin_http!(crate::handle);

pub mod ai;
pub mod dashboard;
pub mod docs;
pub mod llm;
pub mod prompts;
pub mod proxy;
pub mod server;

use shared::error::{ApiError, ApiResult};
use shared::http::{canonical_path, query_param, Request, Response};
use shared::Context;

#[derive(Debug, Clone, Copy)]
enum Route {
    Mcp,
    Query,
    Proxy,
    InitPrompt,
}

fn router() -> &'static matchit::Router<Route> {
    static ROUTER: std::sync::OnceLock<matchit::Router<Route>> = std::sync::OnceLock::new();
    ROUTER.get_or_init(|| {
        let mut r = matchit::Router::new();
        // `/api/internal/{transport}`, as upstream; Streamable HTTP (`mcp`) is the one transport.
        r.insert("/api/internal/{transport}", Route::Mcp).expect("routes do not overlap");
        r.insert("/api/v1/ai/query/{mode}", Route::Query).expect("routes do not overlap");
        r.insert("/api/v1/ai/init-prompt", Route::InitPrompt).expect("routes do not overlap");
        r.insert("/api/v1/integrations/ai-proxy/{*path}", Route::Proxy).expect("routes do not overlap");
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
        (Route::Mcp, _) if param("transport") == "mcp" => Ok(server::handle(ctx, req).await),
        (Route::Mcp, _) => Err(ApiError::status(
            404,
            "Unknown MCP transport: this server speaks Streamable HTTP at /api/internal/mcp (the SSE transport, \
             deprecated since MCP 2025-03-26, is not offered)",
        )),
        (Route::Query, M::POST) => ai::query(ctx, req, &param("mode")).await,
        (Route::Proxy, M::GET | M::POST) => proxy::forward(ctx, req, &param("path")).await,
        (Route::InitPrompt, M::GET) => {
            let web = query_param(req, "web").is_some_and(|w| w == "true");
            Ok(shared::http::text(200, &prompts::init_prompt(web)))
        }
        _ => Err(ApiError::status(405, "Method not allowed")),
    }
}
