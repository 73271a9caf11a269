//! The `docs` tool set (docs/api.md §8.5): the tools of a documentation MCP server
//! (`STACK_DOCS_MCP_URL`, such as Mintlify's `search`/`fetch`), offered to the model as they are
//! and run by calling that server. A small Streamable HTTP client over the outbound-HTTP port
//! (rmcp's client transports need tokio and reqwest, which a Worker does not have): initialize,
//! then `tools/list` or `tools/call`, answers as JSON or as SSE `data:` lines.

use serde_json::{json, Value};

use shared::Context;

/// What the model gets when the docs server cannot be used.
pub const UNAVAILABLE: &str = "Stack Auth docs tools are temporarily unavailable. Please try again later.";
pub const SERVER_ERROR: &str = "Stack Auth docs tools returned an error. Please try again later.";

/// A JSON-RPC answer from a body that is JSON or SSE (`data: {json}` lines: the first one).
pub fn parse_rpc_body(body: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return Some(value);
    }
    body.lines().filter_map(|l| l.strip_prefix("data:")).find_map(|data| serde_json::from_str(data.trim()).ok())
}

struct Session<'a> {
    ctx: &'a Context,
    url: &'a str,
    session_id: Option<String>,
}

impl Session<'_> {
    async fn post(&self, message: &Value) -> Result<(u16, Option<String>, String), String> {
        let mut request = http::Request::post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
        }
        let request = request.body(message.to_string().into_bytes()).map_err(|e| e.to_string())?;
        let response = self.ctx.http.send(request).await.map_err(|e| e.to_string())?;
        let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok((response.status().as_u16(), session, String::from_utf8_lossy(response.body()).into_owned()))
    }

    /// One request; its `result`, or why not.
    async fn call(&self, id: i64, method: &str, params: Value) -> Result<Value, String> {
        let (status, _, body) =
            self.post(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await?;
        if !(200..300).contains(&status) {
            return Err(format!("status {status}"));
        }
        let answer = parse_rpc_body(&body).ok_or("an unreadable answer")?;
        answer.get("result").cloned().ok_or_else(|| format!("error {}", answer["error"]))
    }

    async fn open<'a>(ctx: &'a Context, url: &'a str) -> Result<Session<'a>, String> {
        let mut session = Session { ctx, url, session_id: None };
        let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "stack-edge-docs-agent", "version": env!("CARGO_PKG_VERSION") } } });
        let (status, session_id, _) = session.post(&init).await?;
        if !(200..300).contains(&status) {
            return Err(format!("initialize: status {status}"));
        }
        session.session_id = session_id;
        session.post(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await?;
        Ok(session)
    }
}

/// The docs server's tools as OpenAI function tools (empty when unconfigured or unreachable:
/// the model then answers without them, and the failure is logged).
pub async fn tools(ctx: &Context) -> Vec<Value> {
    let Some(url) = ctx.config.ai.docs_mcp_url.as_deref() else { return Vec::new() };
    let listed = async {
        let session = Session::open(ctx, url).await?;
        session.call(1, "tools/list", json!({})).await
    }
    .await;
    match listed {
        Ok(result) => result["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|tool| {
                        Some(json!({ "type": "function", "function": {
                            "name": tool["name"].as_str()?,
                            "description": tool["description"].as_str().unwrap_or_default(),
                            "parameters": tool.get("inputSchema").cloned().unwrap_or(json!({ "type": "object" })),
                        } }))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "the docs MCP server could not list its tools");
            Vec::new()
        }
    }
}

/// Runs one docs tool; the text the model gets back.
pub async fn call(ctx: &Context, name: &str, arguments: Value) -> String {
    let Some(url) = ctx.config.ai.docs_mcp_url.as_deref() else { return UNAVAILABLE.into() };
    let called = async {
        let session = Session::open(ctx, url).await?;
        session.call(1, "tools/call", json!({ "name": name, "arguments": arguments })).await
    }
    .await;
    match called {
        Ok(result) => {
            let text = result["content"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter(|b| b["type"] == "text")
                        .filter_map(|b| b["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            if result["isError"] == true && text.is_empty() {
                "Unknown docs tool error".into()
            } else {
                text
            }
        }
        Err(e) if e.starts_with("status") => {
            tracing::warn!(error = %e, tool = name, "the docs MCP server refused a tool call");
            SERVER_ERROR.into()
        }
        Err(e) => {
            tracing::warn!(error = %e, tool = name, "the docs MCP server could not run a tool");
            UNAVAILABLE.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_json_or_sse() {
        assert_eq!(parse_rpc_body(r#"{"id":1}"#), Some(json!({"id":1})));
        assert_eq!(parse_rpc_body("event: message\ndata: {\"id\":2}\n\n"), Some(json!({"id":2})));
        assert_eq!(parse_rpc_body("nonsense"), None);
    }
}
