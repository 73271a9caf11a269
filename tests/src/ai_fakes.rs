//! Local stand-ins for the AI endpoints' paid services, as [`RecordingServer`]s: an
//! OpenAI-compatible model API and a documentation MCP server. Their answers follow simple
//! rules, so a test knows what the endpoint must have sent and received.

use serde_json::{json, Value};

use crate::{Recorded, RecordingServer, Reply};

/// What the fake docs server's `search` answers.
pub const DOCS_SEARCH_TEXT: &str =
    "Sessions: refresh tokens last 1 year (https://docs.stack-auth.com/concepts/sessions)";

/// The dashboard source the fake model writes when asked for a dashboard.
pub const DASHBOARD_SOURCE: &str = "function Dashboard() { return <DashboardUI.Card title=\"Users\" />; }";

fn completion(message: Value) -> Reply {
    (
        200,
        "application/json",
        json!({ "id": "cmpl-1", "object": "chat.completion",
        "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] })
        .to_string(),
    )
}

fn tool_call(id: &str, name: &str, arguments: Value) -> Value {
    json!({ "role": "assistant", "content": null, "tool_calls": [
        { "id": id, "type": "function", "function": { "name": name, "arguments": arguments.to_string() } }] })
}

/// `POST /chat/completions`: after a tool result, an answer that quotes it; for a question
/// `sql: <query>` with `queryAnalytics` offered, that query; for a question mentioning
/// "dashboard" with the dashboard tool offered, an `updateDashboard` call; with a
/// `search` tool offered, a `search` call for the question; otherwise an answer that quotes the
/// question. Anything but a chat completion gets 404.
pub fn fake_llm() -> RecordingServer {
    RecordingServer::start(|req: &Recorded| {
        let path = req.uri.split('?').next().unwrap_or_default();
        if req.method != "POST" || !path.ends_with("/chat/completions") {
            return (404, "application/json", json!({ "error": { "message": "no such route" } }).to_string());
        }
        let body = req.json();
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let offered =
            |name: &str| body["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["function"]["name"] == name));
        let question =
            messages.iter().rev().find(|m| m["role"] == "user").map(|m| m["content"].to_string()).unwrap_or_default();
        if last["role"] == "tool" {
            let quoted = last["content"].as_str().unwrap_or_default();
            return completion(json!({ "role": "assistant", "content": format!("The tool said: {quoted}") }));
        }
        if let (Some(sql), true) =
            (last["content"].as_str().and_then(|q| q.strip_prefix("sql: ")), offered("queryAnalytics"))
        {
            return completion(tool_call("call_sql", "queryAnalytics", json!({ "query": sql })));
        }
        if question.contains("dashboard") && offered("updateDashboard") {
            return completion(tool_call("call_dash", "updateDashboard", json!({ "content": DASHBOARD_SOURCE })));
        }
        if offered("search") {
            let query = last["content"].as_str().unwrap_or("stack auth");
            return completion(tool_call("call_search", "search", json!({ "query": query })));
        }
        completion(json!({ "role": "assistant", "content": format!("You asked: {question}") }))
    })
}

/// A documentation MCP server over Streamable HTTP with Mintlify-style `search` and `fetch`
/// tools. `tools/call` answers as SSE (as such servers do), everything else as JSON.
pub fn fake_docs_mcp() -> RecordingServer {
    RecordingServer::start(|req: &Recorded| {
        let Ok(message) = serde_json::from_str::<Value>(&req.body) else {
            return (
                400,
                "application/json",
                json!({ "jsonrpc": "2.0", "error": { "code": -32700, "message": "Parse error" } }).to_string(),
            );
        };
        let id = message["id"].clone();
        let result = |result: Value| json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string();
        match message["method"].as_str().unwrap_or_default() {
            "initialize" => (
                200,
                "application/json",
                result(json!({ "protocolVersion": "2025-06-18",
                "capabilities": { "tools": {} }, "serverInfo": { "name": "fake-docs", "version": "1.0.0" } })),
            ),
            m if m.starts_with("notifications/") => (202, "application/json", String::new()),
            "tools/list" => (
                200,
                "application/json",
                result(json!({ "tools": [
                { "name": "search", "description": "Search the Stack Auth docs.",
                  "inputSchema": { "type": "object", "required": ["query"], "properties": { "query": { "type": "string" } } } },
                { "name": "fetch", "description": "Read one docs page by id.",
                  "inputSchema": { "type": "object", "required": ["id"], "properties": { "id": { "type": "string" } } } }
            ] })),
            ),
            "tools/call" => {
                let text = match message["params"]["name"].as_str() {
                    Some("search") => DOCS_SEARCH_TEXT.to_string(),
                    Some("fetch") => format!("Page {}", message["params"]["arguments"]["id"]),
                    other => {
                        return (
                            200,
                            "application/json",
                            json!({ "jsonrpc": "2.0", "id": id,
                        "error": { "code": -32602, "message": format!("unknown tool {other:?}") } })
                            .to_string(),
                        )
                    }
                };
                let body = result(json!({ "content": [{ "type": "text", "text": text }] }));
                (200, "text/event-stream", format!("event: message\ndata: {body}\n\n"))
            }
            other => (
                200,
                "application/json",
                json!({ "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": format!("Method not found: {other}") } })
                .to_string(),
            ),
        }
    })
}
