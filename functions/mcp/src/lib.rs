//! The MCP function (docs/api.md §8-§9): the `ask_stack_auth` MCP server at
//! `/api/internal/mcp` (`server.rs`), the AI query endpoint `/api/v1/ai/query/{mode}` it asks
//! (`ai.rs`), the AI proxy to the model API (`proxy.rs`) and the setup prompt for coding agents
//! (`GET /api/v1/ai/init-prompt`). The model is any OpenAI-compatible API (`llm.rs`); the docs
//! tools come from a documentation MCP server (`docs.rs`).

shared::function_entries!(crate::FUNCTION);

pub mod ai;
pub mod dashboard;
pub mod docs;
pub mod limits;
pub mod llm;
pub mod negotiate;
pub mod origin;
pub mod prompts;
pub mod proxy;
pub mod server;

use shared::function::{Call, Function, Route};
use shared::http::error::{ApiError, ApiResult};
use shared::http::{query_param, Response};

/// The MCP function: the MCP server, the AI query endpoint, the AI proxy and the init prompt.
pub const FUNCTION: Function = Function {
    name: "mcp",
    routes: &[
        // `/api/internal/{transport}`, as upstream; Streamable HTTP (`mcp`) is the one transport.
        Route::at("/api/internal/{transport}").any(|c| Box::pin(transport(c))),
        Route::at("/api/v1/ai/query/{mode}").post(|c| Box::pin(ai::query(c.ctx, c.req, c.param("mode")))),
        Route::at("/api/v1/ai/init-prompt").get(|c| Box::pin(init_prompt(c))),
        Route::at("/api/v1/integrations/ai-proxy/{*path}")
            .get(|c| Box::pin(proxy::forward(c.ctx, c.req, c.param("path"))))
            .post(|c| Box::pin(proxy::forward(c.ctx, c.req, c.param("path")))),
    ],
    crons: &[],
    scheduled: None,
    health: None,
};

async fn transport(c: &Call<'_>) -> ApiResult<Response> {
    if c.param("transport") != "mcp" {
        return Err(ApiError::status(
            404,
            "Unknown MCP transport: this server speaks Streamable HTTP at /api/internal/mcp (the SSE transport, \
             deprecated since MCP 2025-03-26, is not offered)",
        ));
    }
    Ok(server::handle(c.ctx, c.req).await)
}

async fn init_prompt(c: &Call<'_>) -> ApiResult<Response> {
    let web = query_param(c.req, "web").is_some_and(|w| w == "true");
    Ok(shared::http::text(200, &prompts::init_prompt(web)))
}
