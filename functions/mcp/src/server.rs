//! The MCP server (docs/api.md §8.2-§8.3): stateless Streamable HTTP at
//! `/api/internal/mcp`. Each POST carries one JSON-RPC message, parsed with rmcp's protocol
//! types; a request gets one `application/json` answer (clients accept JSON or SSE), except a
//! `tools/call` that asks for progress, which gets an SSE stream of progress notifications
//! ending with its result; a notification gets 202. No sessions: every request stands alone, as upstream's handler. Both
//! protocol generations are served (negotiate.rs): the handshake revisions up to 2025-11-25 and
//! the stateless 2026-07-28.
//!
//! The one tool, `ask_stack_auth`, asks the AI query endpoint's generate mode (in-process: the
//! same function serves it) with the docs tools, and returns its answer as structured content
//! with a text mirror. Requests from a foreign `Host` or `Origin` are refused first (origin.rs).

use std::borrow::Cow;

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, ErrorCode, JsonRpcMessage, ProtocolVersion};
use serde_json::{json, Map, Value};

use shared::http::{Request, Response};
use shared::Context;

use crate::ai::{generate, GenerateRequest};
use crate::negotiate::{self, Generation};

/// Bodies larger than this are refused (a question is a few KB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

const TOOL_DESCRIPTION: &str = "Ask the Stack Auth documentation assistant a question about Stack Auth: setup, \
SDKs, the REST API, authentication flows, teams, permissions, payments, emails, analytics. It searches the \
official documentation and answers with sources. Pass the conversationId from the previous answer to continue \
a conversation.";

/// The `ask_stack_auth` tool as `tools/list` shows it: upstream's input schema (draft-07), the
/// shape of its structured answer, and what it does to the world (it reads documentation and
/// asks a model: read-only, open-world, not idempotent).
pub fn ask_stack_auth_tool() -> Value {
    json!({
        "name": "ask_stack_auth",
        "title": "Ask Stack Auth",
        "description": TOOL_DESCRIPTION,
        "annotations": {
            "title": "Ask Stack Auth",
            "readOnlyHint": true,
            "destructiveHint": false,
            "idempotentHint": false,
            "openWorldHint": true
        },
        "outputSchema": {
            "type": "object",
            "additionalProperties": false,
            "required": ["answer", "conversationId"],
            "properties": {
                "answer": { "type": "string", "description": "The assistant's answer, with its sources." },
                "conversationId": { "type": "string", "description": "Pass it as conversationId to continue this conversation." }
            }
        },
        "inputSchema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "additionalProperties": false,
            "type": "object",
            "required": ["question", "reason", "userPrompt"],
            "properties": {
                "question": { "type": "string", "description": "The question about Stack Auth, in full sentences." },
                "reason": { "type": "string", "minLength": 1, "description": "Why you are asking: what you are trying to do for the user." },
                "userPrompt": { "type": "string", "minLength": 1, "description": "The user's request that led to this question, verbatim." },
                "conversationId": { "type": "string", "description": "The conversationId of a previous answer, to continue that conversation." }
            }
        }
    })
}

fn rpc_error(id: Option<&Value>, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Value {
    let error = json!({ "code": code.0, "message": message.into() });
    let mut out = json!({ "jsonrpc": "2.0", "error": error });
    if let Some(id) = id {
        out["id"] = id.clone();
    }
    out
}

fn reply(status: u16, body: &Value) -> Response {
    shared::http::json_with_status(status, body)
}

/// What one POST carries, once read.
#[derive(Debug)]
pub enum Incoming {
    /// A request: its id (as JSON) and the request.
    Request(Value, Box<ClientRequest>),
    /// A notification or a stray response: answered 202 with no body.
    Notification,
}

/// Reads one POST body. Anything that is not one JSON-RPC 2.0 client message is refused with
/// the JSON-RPC error to send (and a 4xx status): this is the parser the fuzz test drives.
pub fn parse(body: &[u8]) -> Result<Incoming, (u16, Value)> {
    if body.len() > MAX_BODY_BYTES {
        let message = format!("Request body exceeds {MAX_BODY_BYTES} bytes");
        return Err((413, rpc_error(None, ErrorCode::INVALID_REQUEST, message)));
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err((400, rpc_error(None, ErrorCode::PARSE_ERROR, "Parse error: the body is not JSON")));
    };
    if value.is_array() {
        let message = "Batched JSON-RPC messages are not supported";
        return Err((400, rpc_error(None, ErrorCode::INVALID_REQUEST, message)));
    }
    let id = value.get("id").filter(|id| id.is_string() || id.is_number()).cloned();
    match serde_json::from_value::<ClientJsonRpcMessage>(value) {
        Ok(JsonRpcMessage::Request(request)) => {
            Ok(Incoming::Request(serde_json::to_value(&request.id).expect("ids serialize"), Box::new(request.request)))
        }
        // Notifications (initialized, cancelled) and stray responses need no answer.
        Ok(_) => Ok(Incoming::Notification),
        Err(e) => {
            let text = format!("Invalid request: not a JSON-RPC 2.0 client message ({e})");
            Err((400, rpc_error(id.as_ref(), ErrorCode::INVALID_REQUEST, text)))
        }
    }
}

/// `POST /api/internal/mcp` (GET and DELETE answer 405: no server-initiated stream, no sessions).
pub async fn handle(ctx: &Context, req: &Request) -> Response {
    if let Some(refusal) = crate::origin::refusal(&ctx.config, req) {
        return reply(403, &rpc_error(None, ErrorCode::INVALID_REQUEST, refusal));
    }
    if req.method() != http::Method::POST {
        let message = "Method not allowed: POST one JSON-RPC message";
        let mut response = reply(405, &rpc_error(None, ErrorCode::INVALID_REQUEST, message));
        response.headers_mut().insert("allow", http::HeaderValue::from_static("POST"));
        return response;
    }
    let (id, request) = match parse(req.body()) {
        Ok(Incoming::Request(id, request)) => (id, request),
        Ok(Incoming::Notification) => return shared::http::text(202, ""),
        Err((status, error)) => return reply(status, &error),
    };
    let message: Value = serde_json::from_slice(req.body()).unwrap_or_default(); // parse() read it
    let generation = match negotiate::generation(req, &message) {
        Ok(generation) => generation,
        Err(refusal) => return reply(refusal.status, &json!({ "jsonrpc": "2.0", "id": id, "error": refusal.error })),
    };
    // The MCP endpoint takes no credentials: a run is counted against the client's address.
    let caller = crate::limits::caller(req, None);
    let progress_token = message["params"]["_meta"]["progressToken"].clone();
    let wants_progress = matches!(*request, ClientRequest::CallToolRequest(_))
        && (progress_token.is_string() || progress_token.is_number())
        && shared::http::header(req, "accept").is_some_and(|a| a.contains("text/event-stream"));
    if wants_progress {
        return progress_stream(ctx.clone(), id, Call { request: *request, generation, caller }, progress_token);
    }
    let answer = answer(ctx, Call { request: *request, generation, caller }, &mut |_| {}).await;
    reply(answer.0, &with_id(answer.1, id))
}

/// One request to answer: what it asks, at which protocol generation, and who asks (the key
/// its runs are counted against).
struct Call {
    request: ClientRequest,
    generation: Generation,
    caller: String,
}

/// A request's answer: the HTTP status and the JSON-RPC message (its id still to set).
/// `events` gets a tool call's progress as AI SDK UI-message chunks.
async fn answer(ctx: &Context, call: Call, events: &mut dyn FnMut(Value)) -> (u16, Value) {
    let Call { request, generation, caller } = call;
    let result = match generation {
        Generation::Handshake => handshake_request(ctx, request, &caller, events).await,
        Generation::Stateless => stateless_request(ctx, request, &caller, events).await,
    };
    match result {
        Ok(result) => (200, json!({ "jsonrpc": "2.0", "result": result })),
        // The stateless generation says "no such method" in HTTP too; the handshake one
        // answers every JSON-RPC error with 200, as it always did.
        Err(error) => match generation {
            Generation::Stateless if error["error"]["code"] == ErrorCode::METHOD_NOT_FOUND.0 => (404, error),
            _ => (200, error),
        },
    }
}

fn with_id(mut message: Value, id: Value) -> Value {
    message["id"] = id;
    message
}

/// A `tools/call` whose caller asked for progress (`_meta.progressToken`) and accepts SSE: the
/// answer is an SSE stream of `notifications/progress` (a step begins, a tool is called, the
/// answer is being written) ending with the result, as Streamable HTTP allows.
fn progress_stream(ctx: Context, id: Value, call: Call, token: Value) -> Response {
    let body = shared::http::stream::written_by(|writer| async move {
        let send = |message: &Value| writer.write(format!("event: message\ndata: {message}\n\n"));
        let mut progress = 0;
        let mut events = |event: Value| {
            let message = match event["type"].as_str() {
                Some("start-step") => "Thinking".to_string(),
                Some("tool-input-available") => format!("Calling {}", event["toolName"].as_str().unwrap_or("a tool")),
                Some("text-start") => "Writing the answer".to_string(),
                _ => return,
            };
            progress += 1;
            send(&json!({ "jsonrpc": "2.0", "method": "notifications/progress",
                "params": { "progressToken": token, "progress": progress, "message": message } }));
        };
        let (_, message) = answer(&ctx, call, &mut events).await;
        send(&with_id(message, id));
    });
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache");
    shared::http::stream::streamed(head, body)
}

/// A request of the handshake generation (2024-11-05 to 2025-11-25).
async fn handshake_request(
    ctx: &Context,
    request: ClientRequest,
    caller: &str,
    events: &mut dyn FnMut(Value),
) -> Result<Value, Value> {
    match request {
        ClientRequest::InitializeRequest(init) => Ok(initialize_result(&init.params.protocol_version)),
        ClientRequest::PingRequest(_) => Ok(json!({})),
        // Accepted; this server sends no log messages, so there is nothing to filter.
        ClientRequest::SetLevelRequest(_) => Ok(json!({})),
        ClientRequest::ListToolsRequest(list) => list_tools(list.params.and_then(|p| p.cursor)),
        ClientRequest::CallToolRequest(call) => {
            let arguments = call.params.arguments.unwrap_or_default();
            call_tool(ctx, &call.params.name, arguments, Generation::Handshake, caller, events).await
        }
        other => Err(method_not_found(other.method())),
    }
}

/// A request of the stateless generation (2026-07-28): `server/discover` instead of the
/// handshake, no `ping` or `logging/setLevel` (removed), cache hints on lists, `resultType` and
/// the server's identity on every result.
async fn stateless_request(
    ctx: &Context,
    request: ClientRequest,
    caller: &str,
    events: &mut dyn FnMut(Value),
) -> Result<Value, Value> {
    let mut result = match request {
        ClientRequest::DiscoverRequest(_) => json!({
            "supportedVersions": negotiate::STATELESS_VERSIONS,
            "capabilities": { "tools": { "listChanged": false } },
            "ttlMs": LIST_TTL_MS,
            "cacheScope": "public",
        }),
        ClientRequest::ListToolsRequest(list) => {
            let mut tools = list_tools(list.params.and_then(|p| p.cursor))?;
            tools["ttlMs"] = LIST_TTL_MS.into();
            tools["cacheScope"] = "public".into();
            tools
        }
        ClientRequest::CallToolRequest(call) => {
            let arguments = call.params.arguments.unwrap_or_default();
            call_tool(ctx, &call.params.name, arguments, Generation::Stateless, caller, events).await?
        }
        other => return Err(method_not_found(other.method())),
    };
    result["resultType"] = "complete".into();
    result["_meta"] = json!({ "io.modelcontextprotocol/serverInfo": server_info() });
    Ok(result)
}

/// How long a client may keep `tools/list` and `server/discover` answers: the tool set changes
/// only with a deployment.
const LIST_TTL_MS: u64 = 5 * 60 * 1000;

fn server_info() -> Value {
    json!({ "name": "stack-auth-mcp", "version": env!("CARGO_PKG_VERSION") })
}

fn method_not_found(method: &str) -> Value {
    rpc_error(None, ErrorCode::METHOD_NOT_FOUND, format!("Method not found: {method}"))
}

/// The client's version when this server speaks it, else the newest both know.
fn initialize_result(requested: &ProtocolVersion) -> Value {
    let known = &negotiate::HANDSHAKE_VERSIONS;
    let version = known.iter().find(|v| *v == requested).unwrap_or(&ProtocolVersion::V_2025_06_18);
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false }, "logging": {} },
        "serverInfo": server_info(),
    })
}

/// `tools/list`: one page holds every tool (there is one), so there is no `nextCursor`, and a
/// cursor this server never gave is invalid params, as the pagination rules say.
fn list_tools(cursor: Option<String>) -> Result<Value, Value> {
    match cursor {
        None => Ok(json!({ "tools": [ask_stack_auth_tool()] })),
        Some(cursor) => Err(rpc_error(
            None,
            ErrorCode::INVALID_PARAMS,
            format!("Invalid cursor {cursor:?}: tools/list has one page"),
        )),
    }
}

/// One zod issue, with zod's key order (the message shows it pretty-printed).
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
enum Issue {
    InvalidType {
        code: &'static str,
        expected: &'static str,
        received: &'static str,
        path: [&'static str; 1],
        message: String,
    },
    TooSmall {
        code: &'static str,
        minimum: usize,
        #[serde(rename = "type")]
        kind: &'static str,
        inclusive: bool,
        exact: bool,
        message: String,
        path: [&'static str; 1],
    },
    UnrecognizedKeys {
        code: &'static str,
        keys: Vec<String>,
        path: [&'static str; 0],
        message: String,
    },
}

const ARGUMENTS: [(&str, bool, usize); 4] =
    [("question", true, 0), ("reason", true, 1), ("userPrompt", true, 1), ("conversationId", false, 0)];

/// Checks `ask_stack_auth`'s arguments against its schema; the issues, zod-style, if any.
fn argument_issues(arguments: &Map<String, Value>) -> Vec<Issue> {
    let mut issues = Vec::new();
    let invalid_type = |key, received: &'static str, message: String| Issue::InvalidType {
        code: "invalid_type",
        expected: "string",
        received,
        path: [key],
        message,
    };
    for (key, required, min_length) in ARGUMENTS {
        match arguments.get(key) {
            None if required => issues.push(invalid_type(key, "undefined", "Required".into())),
            None => {}
            Some(Value::String(s)) if s.chars().count() < min_length => issues.push(Issue::TooSmall {
                code: "too_small",
                minimum: min_length,
                kind: "string",
                inclusive: true,
                exact: false,
                message: format!("String must contain at least {min_length} character(s)"),
                path: [key],
            }),
            Some(Value::String(_)) => {}
            Some(other) => {
                let received = match other {
                    Value::Null => "null",
                    Value::Bool(_) => "boolean",
                    Value::Number(_) => "number",
                    Value::Array(_) => "array",
                    _ => "object",
                };
                issues.push(invalid_type(key, received, format!("Expected string, received {received}")));
            }
        }
    }
    let unknown: Vec<String> =
        arguments.keys().filter(|k| !ARGUMENTS.iter().any(|(known, ..)| known == k)).cloned().collect();
    if !unknown.is_empty() {
        let listed = unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
        let message = format!("Unrecognized key(s) in object: {listed}");
        issues.push(Issue::UnrecognizedKeys { code: "unrecognized_keys", keys: unknown, path: [], message });
    }
    issues
}

/// Runs `ask_stack_auth`. Arguments that do not validate are a JSON-RPC error in the handshake
/// generation (as upstream) and a tool execution error (`isError`, so a model can correct
/// itself) in the stateless one, as its revision asks; either way the model is never called.
async fn call_tool(
    ctx: &Context,
    name: &str,
    arguments: Map<String, Value>,
    generation: Generation,
    caller: &str,
    events: &mut dyn FnMut(Value),
) -> Result<Value, Value> {
    if name != "ask_stack_auth" {
        return Err(rpc_error(None, ErrorCode::INVALID_PARAMS, format!("MCP error -32602: Tool {name} not found")));
    }
    let issues = argument_issues(&arguments);
    if !issues.is_empty() {
        let pretty = serde_json::to_string_pretty(&issues).expect("issues serialize");
        let message = format!("MCP error -32602: Invalid arguments for tool ask_stack_auth: {pretty}");
        return match generation {
            Generation::Handshake => Err(rpc_error(None, ErrorCode::INVALID_PARAMS, message)),
            Generation::Stateless => Ok(json!({ "content": [{ "type": "text", "text": message }], "isError": true })),
        };
    }
    // A call over its caller's budget is a tool error the model can relay, as a model failure is.
    if let Err(refused) = crate::limits::admit(ctx, caller).await {
        return Ok(json!({ "content": [{ "type": "text", "text": refused.message() }], "isError": true }));
    }
    let text = |key: &str| arguments.get(key).and_then(Value::as_str).map(str::to_string);
    let question = text("question").unwrap_or_default();
    let conversation_id = text("conversationId");
    let request = GenerateRequest {
        quality: "smart".into(),
        speed: "fast".into(),
        tools: vec!["docs".into()],
        system_prompt: "docs-ask-ai".into(),
        messages: vec![json!({ "role": "user", "content": question })],
        authenticated: false,
        analytics_credentials: None,
        mcp_call: Some(json!({
            "toolName": "ask_stack_auth",
            "reason": text("reason"),
            "userPrompt": text("userPrompt"),
            "conversationId": conversation_id,
        })),
    };
    let answer = match generate(ctx, request, events).await {
        Ok(answer) => answer,
        Err((status, message)) => {
            return Ok(
                json!({ "content": [{ "type": "text", "text": format!("Stack Auth AI error ({status}): {message}") }], "isError": true }),
            )
        }
    };
    let mut body = answer["finalText"].as_str().unwrap_or_default().to_string();
    if body.is_empty() {
        body = answer["content"]
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n")
            })
            .unwrap_or_default();
    }
    if body.is_empty() {
        body = "(empty response)".into();
    }
    let id = answer["conversationId"].as_str().map(str::to_string).or(conversation_id).unwrap_or_default();
    let text = format!(
        "{body}\n\n[conversationId: {id} — pass this value as the conversationId parameter in your next ask_stack_auth call to continue this conversation]"
    );
    // The text block mirrors the structured answer for clients that read only content (in
    // upstream's words, which those clients already parse).
    Ok(json!({ "content": [{ "type": "text", "text": text }],
               "structuredContent": { "answer": body, "conversationId": id } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_reason_is_upstreams_zod_issue() {
        let args = json!({ "question": "q", "userPrompt": "p" });
        let issues = argument_issues(args.as_object().unwrap());
        assert_eq!(
            serde_json::to_string(&issues).unwrap(),
            r#"[{"code":"invalid_type","expected":"string","received":"undefined","path":["reason"],"message":"Required"}]"#
        );
        let args = json!({ "question": 1, "reason": "", "userPrompt": "p", "extra": true });
        let issues = argument_issues(args.as_object().unwrap());
        assert_eq!(issues.len(), 3);
        assert!(argument_issues(json!({ "question": "q", "reason": "r", "userPrompt": "p" }).as_object().unwrap())
            .is_empty());
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    fn error_of(body: &str) -> (u16, i64) {
        let (status, error) = parse(body.as_bytes()).expect_err("refused");
        (status, error["error"]["code"].as_i64().unwrap())
    }

    #[test]
    fn malformed_messages_get_json_rpc_errors() {
        assert_eq!(error_of("{nope"), (400, -32700));
        assert_eq!(error_of(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), (400, -32600));
        assert_eq!(error_of(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), (400, -32600));
        assert_eq!(error_of(&format!("\"{}\"", "x".repeat(MAX_BODY_BYTES))), (413, -32600));
        let unknown = parse(br#"{"jsonrpc":"2.0","id":7,"method":"frobnicate","params":{}}"#);
        assert!(
            matches!(&unknown, Ok(Incoming::Request(_, r)) if matches!(**r, ClientRequest::CustomRequest(_))),
            "{unknown:?}"
        );
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Incoming::Notification)
        ));
    }
}
