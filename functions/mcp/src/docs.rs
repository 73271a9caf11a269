//! The `docs` tool set (docs/api.md §8.5): the tools of a documentation MCP server
//! (`STACK_DOCS_MCP_URL`, such as Mintlify's `search`/`fetch`), offered to the model as they are
//! and run by calling that server. A small Streamable HTTP client over the outbound-HTTP port
//! (rmcp's client transports need tokio and reqwest, which a Worker does not have); answers
//! come as JSON or as SSE `data:` lines.
//!
//! The key decision: one [`Docs`] per run. Its session is opened on first use (initialize +
//! initialized), reused by the run's listing and every tool call, and ended (`DELETE`) when
//! the run is done, so a 50-step run costs one handshake, not 51.

use serde_json::{json, Value};

use shared::Context;

/// What the model gets when the docs server cannot be used.
pub const UNAVAILABLE: &str = "Stack Auth docs tools are temporarily unavailable. Please try again later.";
pub const SERVER_ERROR: &str = "Stack Auth docs tools returned an error. Please try again later.";

/// The protocol revision this client speaks to the docs server.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// A JSON-RPC answer from a body that is JSON or SSE (`data: {json}` lines: the first one).
pub fn parse_rpc_body(body: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return Some(value);
    }
    body.lines().filter_map(|l| l.strip_prefix("data:")).find_map(|data| serde_json::from_str(data.trim()).ok())
}

/// An open session with the docs server.
struct Session {
    id: Option<String>,
    next_request_id: i64,
}

/// The docs server for one run (see the module doc).
pub struct Docs<'a> {
    ctx: &'a Context,
    session: Option<Session>,
}

impl<'a> Docs<'a> {
    /// Nothing is sent until the run first needs the server.
    pub fn new(ctx: &'a Context) -> Docs<'a> {
        Docs { ctx, session: None }
    }

    fn url(&self) -> Result<&'a str, String> {
        self.ctx.config.ai.docs_mcp_url.as_deref().ok_or_else(|| "not configured".to_string())
    }

    async fn post(&self, session_id: Option<&str>, message: &Value) -> Result<(u16, Option<String>, String), String> {
        let mut request = http::Request::post(self.url()?)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(id) = session_id {
            request = request.header("mcp-session-id", id);
        }
        let request = request.body(message.to_string().into_bytes()).map_err(|e| e.to_string())?;
        let response = self.ctx.http.send(request).await.map_err(|e| e.to_string())?;
        let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok((response.status().as_u16(), session, String::from_utf8_lossy(response.body()).into_owned()))
    }

    async fn open(&self) -> Result<Session, String> {
        let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": { "name": "stack-edge-docs-agent", "version": env!("CARGO_PKG_VERSION") } } });
        let (status, id, _) = self.post(None, &init).await?;
        if !(200..300).contains(&status) {
            return Err(format!("initialize: status {status}"));
        }
        self.post(id.as_deref(), &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await?;
        Ok(Session { id, next_request_id: 1 })
    }

    /// One request in the run's session; its `result`, or why not. A session the server has
    /// forgotten (404) is opened again once, as the transport spec asks of clients.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        for attempt in 0..2 {
            if self.session.is_none() {
                self.session = Some(self.open().await?);
            }
            let session = self.session.as_mut().expect("opened above");
            let message =
                json!({ "jsonrpc": "2.0", "id": session.next_request_id, "method": method, "params": params });
            session.next_request_id += 1;
            let session_id = session.id.clone();
            let (status, _, body) = self.post(session_id.as_deref(), &message).await?;
            if status == 404 && session_id.is_some() && attempt == 0 {
                self.session = None;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(format!("status {status}"));
            }
            let answer = parse_rpc_body(&body).ok_or("an unreadable answer")?;
            return answer.get("result").cloned().ok_or_else(|| format!("error {}", answer["error"]));
        }
        Err("the session was lost twice".into())
    }

    /// The docs server's tools as OpenAI function tools (empty when unconfigured or
    /// unreachable: the model then answers without them, and the failure is logged).
    pub async fn tools(&mut self) -> Vec<Value> {
        if self.url().is_err() {
            return Vec::new();
        }
        match self.request("tools/list", json!({})).await {
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
    pub async fn call(&mut self, name: &str, arguments: Value) -> String {
        if self.url().is_err() {
            return UNAVAILABLE.into();
        }
        match self.request("tools/call", json!({ "name": name, "arguments": arguments })).await {
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

    /// Ends the run's session, if one was opened (`DELETE` with its id; a server that does
    /// not end sessions answers 405, which is fine).
    pub async fn close(self) {
        let Some(Session { id: Some(id), .. }) = &self.session else { return };
        let Ok(url) = self.url() else { return };
        let request = http::Request::delete(url)
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .body(Vec::new());
        if let Ok(request) = request {
            if let Err(e) = self.ctx.http.send(request).await {
                tracing::warn!(error = %e, "the docs MCP session could not be ended");
            }
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
