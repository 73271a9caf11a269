//! `POST /api/v1/ai/query/{mode}` (docs/api.md §9.1): a chat with Stack's assistant.
//! `generate` answers JSON `{content, finalText, conversationId}`; `stream` answers the same
//! run as an AI SDK UI-message stream, relayed while the model writes it. The run is a tool
//! loop: the model may call the docs tools (run against the docs MCP server, one session per
//! run), `queryAnalytics` (asked of the analytics function with the caller's credentials) or
//! the client-side tools (dashboard, email; returned with a null result for the caller to
//! apply, which ends the run). `ask_stack_auth` calls [`generate`] directly.

use serde_json::{json, Map, Value};

use shared::http::error::{ApiError, ApiResult};
use shared::http::validate::{parse_body, Validator};
use shared::http::{header, json as json_response, Request, Response};
use shared::identity::auth::{authenticate, AccessType, AuthRule, RequestAuth, ANY_ACCESS};
use shared::store::ports::{SqlValue, Statement};
use shared::Context;

use crate::{dashboard, docs, limits, llm, prompts};

/// The tool sets a request may ask for.
pub const TOOL_SETS: &[&str] = &[
    "docs",
    "sql-query",
    "create-email-theme",
    "create-email-template",
    "create-email-draft",
    "update-dashboard",
    "patch-dashboard",
];

const MAX_IMAGES_PER_MESSAGE: usize = 3;
const MAX_IMAGE_BYTES: usize = 3 * 1024 * 1024;

/// One run of the assistant.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub quality: String,
    pub speed: String,
    pub tools: Vec<String>,
    pub system_prompt: String,
    /// The conversation, AI SDK shaped: `{role, content}` with string or part-array content.
    pub messages: Vec<Value>,
    /// Whether the caller authenticated with server or admin access (stronger models, the
    /// authenticated key).
    pub authenticated: bool,
    /// The admin credentials `queryAnalytics` runs with (the caller's `x-stack-*` headers,
    /// passed on to the analytics function, which checks them again); only for admin callers.
    pub analytics_credentials: Option<Vec<(String, String)>>,
    /// `mcpCallMetadata`: the call is logged and gets a conversation id.
    pub mcp_call: Option<Value>,
}

/// Why a run failed: an HTTP status and a plain-text message.
pub type RunError = (u16, String);

/// `POST /api/v1/ai/query/{mode}`.
pub async fn query(ctx: &Context, req: &Request, mode: &str) -> ApiResult<Response> {
    if mode != "stream" && mode != "generate" {
        return Err(Validator::single(req, "params.mode must be one of the following values: stream, generate"));
    }
    // Authentication is optional; when the caller sends it, it must be valid.
    let auth = match header(req, "x-stack-access-type") {
        Some(_) => Some(authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?),
        None => None,
    };
    // Only callers holding a secret count as authenticated (stronger models, the authenticated
    // key): client access needs no key unless the project asks for one.
    let holds_secret = auth.as_ref().is_some_and(|a| matches!(a.access_type, AccessType::Server | AccessType::Admin));
    let (mut run, project_id) = parse_request(req, holds_secret)?;
    if run.tools.iter().any(|t| !TOOL_SETS.contains(&t.as_str())) {
        return Err(ApiError::status(400, "Invalid tool names in request."));
    }
    // `queryAnalytics` reads a project's analytics, users included: its admins only.
    if let Some(project_id) = project_id {
        check_project_admin(auth.as_ref(), &project_id)?;
    }
    if auth.as_ref().is_some_and(|a| a.access_type == AccessType::Admin) {
        run.analytics_credentials = Some(stack_headers(req));
    }
    check_images(&run.messages)?;
    if let Err(refused) = limits::admit(ctx, &limits::caller(req, auth.as_ref())).await {
        return Ok(refused.response());
    }
    if mode == "stream" {
        // Said before the stream starts, with the generate mode's status and text.
        if ctx.config.ai.base_url.is_none() {
            return Err(ApiError::status(503, NOT_CONFIGURED));
        }
        return Ok(ui_message_stream(ctx.clone(), run));
    }
    let answer =
        generate(ctx, run, &mut |_| {}).await.map_err(|(status, message)| ApiError::status(status, message))?;
    Ok(json_response(&answer))
}

const NOT_CONFIGURED: &str = "The AI model is not configured (STACK_AI_BASE_URL).";

/// `projectId` names the project whose data the tools may read: only its admins may.
/// (Upstream checks the dashboard user's managed projects; here the caller must hold the
/// project's admin credentials.)
fn check_project_admin(auth: Option<&RequestAuth>, project_id: &str) -> ApiResult<()> {
    match auth {
        Some(auth) if auth.tenancy.project_id == project_id && auth.access_type == AccessType::Admin => Ok(()),
        _ => Err(ApiError::status(403, "You do not have access to this project")),
    }
}

fn one_of(v: &mut Validator, obj: Option<&Map<String, Value>>, key: &str, allowed: &[&str]) -> Option<String> {
    let path = format!("body.{key}");
    let value = v.string(obj, key, &path, true)?;
    if allowed.contains(&value.as_str()) {
        Some(value)
    } else {
        v.fail(format!("{path} must be one of the following values: {}", allowed.join(", ")));
        None
    }
}

/// The request's `x-stack-*` headers: its credentials, as the analytics function reads them.
fn stack_headers(req: &Request) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-stack-"))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

/// The run a request asks for, and its `projectId` if any.
fn parse_request(req: &Request, authenticated: bool) -> ApiResult<(GenerateRequest, Option<String>)> {
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let fields = ["quality", "speed", "tools", "systemPrompt", "messages", "projectId", "mcpCallMetadata"];
    let obj = v.body_object(&body, &fields);
    let quality = one_of(&mut v, obj, "quality", &["dumb", "smart", "smartest"]);
    let speed = one_of(&mut v, obj, "speed", &["slow", "fast"]);
    let tools = string_array(&mut v, obj, "tools");
    let system_prompt = one_of(&mut v, obj, "systemPrompt", prompts::SYSTEM_PROMPTS);
    let messages = messages_field(&mut v, obj);
    let project_id = v.string(obj, "projectId", "body.projectId", false);
    let mcp_call = match obj.and_then(|o| o.get("mcpCallMetadata")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(meta)) => {
            for key in ["toolName", "reason", "userPrompt"] {
                v.string(Some(meta), key, &format!("body.mcpCallMetadata.{key}"), true);
            }
            v.string(Some(meta), "conversationId", "body.mcpCallMetadata.conversationId", false);
            Some(Value::Object(meta.clone()))
        }
        Some(other) => {
            v.fail(format!("body.mcpCallMetadata must be a `object` type, but the final value was: `{other}`."));
            None
        }
    };
    v.finish()?;
    Ok((
        GenerateRequest {
            quality: quality.expect("validated"),
            speed: speed.expect("validated"),
            tools: tools.expect("validated"),
            system_prompt: system_prompt.expect("validated"),
            messages: messages.expect("validated"),
            authenticated,
            analytics_credentials: None,
            mcp_call,
        },
        project_id,
    ))
}

fn string_array(v: &mut Validator, obj: Option<&Map<String, Value>>, key: &str) -> Option<Vec<String>> {
    match obj.and_then(|o| o.get(key)) {
        None | Some(Value::Null) if obj.is_some() => {
            v.fail(format!("body.{key} must be defined"));
            None
        }
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => {
                        v.fail(format!("body.{key}[{i}] must be a `string` type, but the final value was: `{item}`."));
                    }
                }
            }
            Some(out)
        }
        Some(other) => {
            v.fail(format!("body.{key} must be a `array` type, but the final value was: `{other}`."));
            None
        }
    }
}

fn messages_field(v: &mut Validator, obj: Option<&Map<String, Value>>) -> Option<Vec<Value>> {
    let messages = match obj.and_then(|o| o.get("messages")) {
        None | Some(Value::Null) if obj.is_some() => {
            v.fail("body.messages must be defined".into());
            return None;
        }
        None | Some(Value::Null) => return None,
        Some(Value::Array(items)) => items,
        Some(other) => {
            v.fail(format!("body.messages must be a `array` type, but the final value was: `{other}`."));
            return None;
        }
    };
    if messages.is_empty() {
        v.fail("body.messages field must have at least 1 items".into());
    }
    for (i, message) in messages.iter().enumerate() {
        let path = format!("body.messages[{i}]");
        let Some(message) = message.as_object() else {
            v.fail(format!("{path} must be a `object` type, but the final value was: `{message}`."));
            continue;
        };
        match message.get("role").and_then(Value::as_str) {
            Some("user" | "assistant" | "tool") => {}
            None if message.get("role").is_none() => v.fail(format!("{path}.role must be defined")),
            _ => v.fail(format!("{path}.role must be one of the following values: user, assistant, tool")),
        }
        if message.get("content").is_none_or(Value::is_null) {
            v.fail(format!("{path}.content must be defined"));
        }
    }
    Some(messages.clone())
}

/// At most three images per message, each at most 3 MiB decoded.
fn check_images(messages: &[Value]) -> ApiResult<()> {
    for message in messages {
        let Some(parts) = message["content"].as_array() else { continue };
        let images: Vec<&Value> = parts.iter().filter(|p| p["type"] == "image").collect();
        if images.len() > MAX_IMAGES_PER_MESSAGE {
            return Err(ApiError::status(400, "Maximum 3 images per message."));
        }
        for image in images {
            let data = image["image"].as_str().unwrap_or_default();
            let payload = data.split_once(";base64,").map_or(data, |(_, b64)| b64);
            let padding = payload.bytes().rev().take_while(|b| *b == b'=').count().min(2);
            let bytes = (payload.len() * 3 / 4).saturating_sub(padding);
            if bytes > MAX_IMAGE_BYTES {
                let mb = bytes as f64 / (1024.0 * 1024.0);
                return Err(ApiError::status(400, format!("Image exceeds 3MB limit ({mb:.2}MB).")));
            }
        }
    }
    Ok(())
}

/// How many model calls a run may make: upstream's limits, capped for callers without
/// project credentials (limits.rs).
fn step_limit(run: &GenerateRequest) -> usize {
    let upstream = match run.system_prompt.as_str() {
        _ if run.tools.is_empty() => 1,
        "docs-ask-ai" | "command-center-ask-ai" => 50,
        "create-dashboard" => 12,
        _ => 5,
    };
    if run.authenticated {
        upstream
    } else {
        upstream.min(crate::limits::ANONYMOUS_MAX_STEPS)
    }
}

/// A client-side tool: the model's call goes back to the caller, who applies its arguments.
fn client_tool(name: &str, description: &str) -> Value {
    json!({ "type": "function", "function": { "name": name, "description": description,
        "parameters": { "type": "object", "additionalProperties": false, "required": ["content"],
            "properties": { "content": { "type": "string" } } } } })
}

fn query_analytics_tool() -> Value {
    json!({ "type": "function", "function": { "name": "queryAnalytics",
        "description": "Run a read-only ClickHouse SELECT over this project's analytics tables (events, users, ...) \
            and get the rows as JSON.",
        "parameters": { "type": "object", "additionalProperties": false, "required": ["query"],
            "properties": { "query": { "type": "string" } } } } })
}

/// The model's tools for the requested sets, and which of them run here.
async fn offered_tools(docs: &mut docs::Docs<'_>, run: &GenerateRequest) -> (Vec<Value>, Vec<String>) {
    let mut tools = Vec::new();
    for set in &run.tools {
        match set.as_str() {
            "docs" => tools.extend(docs.tools().await),
            // Without authentication there is no project to read: silently left out, as upstream.
            "sql-query" if run.analytics_credentials.is_some() => tools.push(query_analytics_tool()),
            "create-email-theme" => tools.push(client_tool("createEmailTheme", "Return a React Email theme source.")),
            "create-email-template" => {
                tools.push(client_tool("createEmailTemplate", "Return a React Email template source."));
            }
            "create-email-draft" => tools.push(client_tool("createEmailDraft", "Return an email draft source.")),
            "update-dashboard" => tools.push(dashboard::update_dashboard_tool()),
            "patch-dashboard" => tools.push(dashboard::patch_dashboard_tool()),
            _ => {}
        }
    }
    let docs_set = run.tools.iter().any(|t| t == "docs");
    let server_side = tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .filter(|name| *name == "queryAnalytics" || (docs_set && !CLIENT_TOOLS.contains(name)))
        .map(str::to_string)
        .collect();
    (tools, server_side)
}

const CLIENT_TOOLS: &[&str] =
    &["createEmailTheme", "createEmailTemplate", "createEmailDraft", "updateDashboard", "patchDashboard"];

/// AI SDK content (string or parts) to OpenAI chat messages.
fn to_chat_messages(message: &Value) -> Vec<Value> {
    let role = message["role"].as_str().unwrap_or("user");
    let content = &message["content"];
    let Some(parts) = content.as_array() else {
        let text = content.as_str().map_or_else(|| content.to_string(), str::to_string);
        return vec![json!({ "role": role, "content": text })];
    };
    match role {
        "tool" => parts
            .iter()
            .filter(|p| p["type"] == "tool-result")
            .map(|p| {
                let output = p.get("output").or(p.get("result")).cloned().unwrap_or(Value::Null);
                json!({ "role": "tool", "tool_call_id": p["toolCallId"], "content": output.to_string() })
            })
            .collect(),
        "assistant" => {
            let text: Vec<&str> =
                parts.iter().filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect();
            let calls: Vec<Value> = parts
                .iter()
                .filter(|p| p["type"] == "tool-call")
                .map(|p| {
                    let args = p.get("input").or(p.get("args")).cloned().unwrap_or(json!({}));
                    json!({ "id": p["toolCallId"], "type": "function",
                        "function": { "name": p["toolName"], "arguments": args.to_string() } })
                })
                .collect();
            let mut out = json!({ "role": "assistant", "content": text.join("\n") });
            if !calls.is_empty() {
                out["tool_calls"] = Value::Array(calls);
            }
            vec![out]
        }
        _ => {
            let converted: Vec<Value> = parts
                .iter()
                .filter_map(|p| match p["type"].as_str()? {
                    "text" => Some(json!({ "type": "text", "text": p["text"] })),
                    "image" => {
                        let image = p["image"].as_str()?;
                        let url = if image.starts_with("data:") || image.starts_with("http") {
                            image.to_string()
                        } else {
                            let media = p["mediaType"].as_str().or(p["mimeType"].as_str()).unwrap_or("image/png");
                            format!("data:{media};base64,{image}")
                        };
                        Some(json!({ "type": "image_url", "image_url": { "url": url } }))
                    }
                    _ => None,
                })
                .collect();
            vec![json!({ "role": role, "content": converted })]
        }
    }
}

/// Runs `queryAnalytics` by asking the analytics function (`POST
/// /api/v1/internal/analytics/query` with the caller's credentials: its guard, limits and
/// low-privilege client, and it authenticates the caller again); rows or the error as text for
/// the model. Asking it rather than linking the query guard keeps this Worker small.
async fn query_analytics(ctx: &Context, credentials: &[(String, String)], arguments: &Value) -> Value {
    let Some(sql) = arguments["query"].as_str() else { return json!({ "error": "query must be a string" }) };
    let mut request = http::Request::post(ANALYTICS_QUERY_PATH).header("content-type", "application/json");
    for (name, value) in credentials {
        request = request.header(name.as_str(), value.as_str());
    }
    let body = json!({ "query": sql, "timeout_ms": QUERY_ANALYTICS_TIMEOUT_MS });
    let Ok(request) = request.body(body.to_string().into_bytes()) else {
        return json!({ "error": "the query could not be sent" });
    };
    let answer = match ctx.peers.call(ctx, "analytics-query", request).await {
        Ok(answer) => answer,
        Err(e) => return json!({ "error": format!("the analytics function could not be reached: {e}") }),
    };
    let body: Value = serde_json::from_slice(answer.body())
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(answer.body()).into_owned()));
    match (answer.status().is_success(), body) {
        (true, body) => json!({ "rows": body["result"] }),
        // The contract's error envelope `{code, error}`, or a bare text status error.
        (false, Value::Object(error)) => {
            json!({ "error": error.get("error").cloned().unwrap_or(Value::Object(error)) })
        }
        (false, text) => json!({ "error": text }),
    }
}

/// The analytics function's query route (docs/api.md §6.1).
const ANALYTICS_QUERY_PATH: &str = "/api/v1/internal/analytics/query";

/// The time limit of one `queryAnalytics` call.
const QUERY_ANALYTICS_TIMEOUT_MS: i64 = 10_000;

/// One run: model calls and tool calls until the model stops, a client-side tool is called,
/// or the step limit is reached. The answer is `{content, finalText, conversationId}`; as it
/// goes, the run reports each step to `events` as AI SDK UI-message chunks (`start-step`, text
/// pieces as the model writes them, tool input and output as they happen, `finish-step`).
pub async fn generate(ctx: &Context, run: GenerateRequest, events: &mut dyn FnMut(Value)) -> Result<Value, RunError> {
    let started = ctx.now();
    let model = llm::model(&run.quality, &run.speed, run.authenticated);
    let mut docs = docs::Docs::new(ctx);
    let (tools, server_side) = offered_tools(&mut docs, &run).await;
    let mut chat = vec![json!({ "role": "system", "content": prompts::system_prompt(&run.system_prompt) })];
    chat.extend(run.messages.iter().flat_map(to_chat_messages));

    let mut content = Vec::new();
    let mut final_text = String::new();
    let mut steps = 0;
    let mut failure = None;
    for step in 0..step_limit(&run) {
        steps += 1;
        events(json!({ "type": "start-step" }));
        let text_id = format!("text-{step}");
        let mut text_started = false;
        let mut on_text = |piece: &str| {
            if !std::mem::replace(&mut text_started, true) {
                events(json!({ "type": "text-start", "id": text_id }));
            }
            events(json!({ "type": "text-delta", "id": text_id, "delta": piece }));
        };
        let completion = llm::complete(ctx, model, run.authenticated, &chat, &tools, &mut on_text).await;
        if text_started {
            events(json!({ "type": "text-end", "id": text_id }));
        }
        let completion = match completion {
            Ok(completion) => completion,
            Err(e) => {
                failure = Some(match e {
                    llm::LlmError::NotConfigured => (503, NOT_CONFIGURED.to_string()),
                    llm::LlmError::Unavailable(why) => (502, format!("The AI model could not be reached: {why}")),
                    llm::LlmError::Status(status, body) => (502, format!("The AI model answered {status}: {body}")),
                });
                break;
            }
        };
        final_text = completion.text.clone();
        if !completion.text.is_empty() {
            content.push(json!({ "type": "text", "text": completion.text }));
        }
        if completion.tool_calls.is_empty() {
            events(json!({ "type": "finish-step" }));
            break;
        }
        let mut assistant = json!({ "role": "assistant", "content": completion.text, "tool_calls": [] });
        let mut results = Vec::new();
        let mut waits_for_client = false;
        for call in &completion.tool_calls {
            let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::String(call.arguments.clone()));
            events(json!({ "type": "tool-input-available", "toolCallId": call.id, "toolName": call.name,
                "input": args }));
            let result = if !server_side.contains(&call.name) {
                waits_for_client = true;
                Value::Null
            } else if call.name == "queryAnalytics" {
                let credentials = run.analytics_credentials.as_deref().expect("offered only with credentials");
                query_analytics(ctx, credentials, &args).await
            } else {
                Value::String(docs.call(&call.name, args.clone()).await)
            };
            if !result.is_null() {
                events(json!({ "type": "tool-output-available", "toolCallId": call.id, "output": result }));
            }
            assistant["tool_calls"].as_array_mut().expect("an array").push(json!({ "id": call.id, "type": "function",
                "function": { "name": call.name, "arguments": call.arguments } }));
            let text = result.as_str().map_or_else(|| result.to_string(), str::to_string);
            results.push(json!({ "role": "tool", "tool_call_id": call.id, "content": text }));
            content.push(json!({ "type": "tool-call", "toolName": call.name, "toolCallId": call.id,
                "args": args, "argsText": call.arguments, "result": result }));
        }
        events(json!({ "type": "finish-step" }));
        if waits_for_client {
            break;
        }
        chat.push(assistant);
        chat.extend(results);
    }
    docs.close().await;
    if let Some(failure) = failure {
        return Err(failure);
    }

    let conversation_id = run.mcp_call.as_ref().map(|meta| {
        meta["conversationId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map_or_else(|| shared::identity::crypto::new_uuid(ctx.random.as_ref()), str::to_string)
    });
    if let (Some(meta), Some(conversation_id)) = (&run.mcp_call, &conversation_id) {
        let log = CallLog {
            correlation_id: shared::identity::crypto::new_uuid(ctx.random.as_ref()),
            conversation_id: conversation_id.clone(),
            tool_name: meta["toolName"].as_str().unwrap_or_default().to_string(),
            reason: meta["reason"].as_str().unwrap_or_default().to_string(),
            user_prompt: meta["userPrompt"].as_str().unwrap_or_default().to_string(),
            question: first_user_text(&run.messages),
            response: final_text.clone(),
            step_count: steps,
            inner_tool_calls: content.iter().filter(|b| b["type"] == "tool-call").cloned().collect(),
            duration_ms: ctx.now() - started,
            model_id: model.to_string(),
        };
        let background = ctx.clone();
        ctx.background.spawn(Box::pin(async move { log.write(&background).await }));
    }
    Ok(json!({ "content": content, "finalText": final_text, "conversationId": conversation_id }))
}

fn first_user_text(messages: &[Value]) -> String {
    let Some(first) = messages.iter().find(|m| m["role"] == "user") else { return String::new() };
    first["content"].as_str().map_or_else(|| first["content"].to_string(), str::to_string)
}

/// One `ask_stack_auth` call (docs/api.md §8.8), kept in `mcp_call_log` for review.
struct CallLog {
    correlation_id: String,
    conversation_id: String,
    tool_name: String,
    reason: String,
    user_prompt: String,
    question: String,
    response: String,
    step_count: usize,
    inner_tool_calls: Vec<Value>,
    duration_ms: i64,
    model_id: String,
}

impl CallLog {
    /// Writes the row, each field capped (limits.rs), and deletes rows beyond the log's cap in
    /// the same batch, so the log's size is bounded whatever callers send.
    async fn write(self, ctx: &Context) {
        use crate::limits::{capped, MAX_LOGGED_TEXT_CHARS as TEXT, MAX_LOGGED_TOOL_CALLS_CHARS, MAX_LOG_ROWS};
        let mut inner = Value::Array(self.inner_tool_calls.clone()).to_string();
        if inner.chars().count() > MAX_LOGGED_TOOL_CALLS_CHARS {
            // Too long to keep whole: which tools were called, without their input and output.
            let names: Vec<Value> = self
                .inner_tool_calls
                .iter()
                .map(|c| json!({ "toolName": c["toolName"], "toolCallId": c["toolCallId"], "truncated": true }))
                .collect();
            inner = capped(&Value::Array(names).to_string(), MAX_LOGGED_TOOL_CALLS_CHARS);
        }
        let written = ctx
            .store
            .batch(&[
                Statement::new(
                    "INSERT INTO mcp_call_log (correlation_id, conversation_id, tool_name, reason, user_prompt, \
                     question, response, step_count, inner_tool_calls_json, duration_ms, model_id, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        SqlValue::from(self.correlation_id),
                        SqlValue::from(capped(&self.conversation_id, 64)),
                        SqlValue::from(capped(&self.tool_name, 64)),
                        SqlValue::from(capped(&self.reason, TEXT)),
                        SqlValue::from(capped(&self.user_prompt, TEXT)),
                        SqlValue::from(capped(&self.question, TEXT)),
                        SqlValue::from(capped(&self.response, TEXT)),
                        SqlValue::from(self.step_count as i64),
                        SqlValue::from(inner),
                        SqlValue::from(self.duration_ms),
                        SqlValue::from(self.model_id),
                        SqlValue::from(ctx.now()),
                    ],
                ),
                Statement::new(
                    "DELETE FROM mcp_call_log WHERE rowid <= (SELECT MAX(rowid) FROM mcp_call_log) - ?",
                    vec![SqlValue::from(MAX_LOG_ROWS)],
                ),
            ])
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "an MCP call could not be logged");
        }
    }
}

/// A run as an AI SDK UI-message stream (server-sent events), written as it happens. A
/// failure after the head is sent is an `error` chunk.
fn ui_message_stream(ctx: Context, run: GenerateRequest) -> Response {
    let events = shared::http::stream::written_by(|writer| async move {
        let mut emit = |event: Value| writer.write(format!("data: {event}\n\n"));
        emit(json!({ "type": "start" }));
        match generate(&ctx, run, &mut emit).await {
            Ok(_) => emit(json!({ "type": "finish" })),
            Err((_, message)) => emit(json!({ "type": "error", "errorText": message })),
        }
        writer.write("data: [DONE]\n\n");
    });
    let head = http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-vercel-ai-ui-message-stream", "v1");
    shared::http::stream::streamed(head, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_limited_in_count_and_decoded_size() {
        let image = |len: usize| json!({ "type": "image", "image": "A".repeat(len) });
        let message = |parts: Vec<Value>| vec![json!({ "role": "user", "content": parts })];
        assert!(check_images(&message(vec![image(8), image(8), image(8)])).is_ok());
        let four = check_images(&message(vec![image(8), image(8), image(8), image(8)])).unwrap_err();
        assert_eq!(four.into_response(false).body(), b"Maximum 3 images per message.");
        // 4.2 MB of base64 is 3,145,728 bytes: exactly at the limit.
        assert!(check_images(&message(vec![image(4 * 1024 * 1024)])).is_ok());
        let big = check_images(&message(vec![image(5 * 1024 * 1024)])).unwrap_err();
        assert_eq!(big.into_response(false).body(), b"Image exceeds 3MB limit (3.75MB).");
    }

    #[test]
    fn ai_sdk_messages_become_chat_messages() {
        let assistant = json!({ "role": "assistant", "content": [{ "type": "text", "text": "Let me look." },
            { "type": "tool-call", "toolCallId": "c1", "toolName": "search", "input": { "query": "x" } }] });
        assert_eq!(
            to_chat_messages(&assistant),
            vec![json!({ "role": "assistant", "content": "Let me look.", "tool_calls": [
                { "id": "c1", "type": "function", "function": { "name": "search", "arguments": "{\"query\":\"x\"}" } }] })]
        );
        let tool =
            json!({ "role": "tool", "content": [{ "type": "tool-result", "toolCallId": "c1", "output": "found" }] });
        assert_eq!(
            to_chat_messages(&tool),
            vec![json!({ "role": "tool", "tool_call_id": "c1", "content": "\"found\"" })]
        );
        let user =
            json!({ "role": "user", "content": [{ "type": "image", "image": "AAAA", "mediaType": "image/jpeg" }] });
        assert_eq!(to_chat_messages(&user)[0]["content"][0]["image_url"]["url"], "data:image/jpeg;base64,AAAA");
    }
}
