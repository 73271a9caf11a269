//! The MCP server and the AI endpoints (docs/api.md §8-§9), against local stand-ins for the
//! model API and the docs MCP server that record what they receive.

use api_tests::ai_fakes::{fake_docs_mcp, fake_llm, StreamingModel, DASHBOARD_SOURCE, DOCS_SEARCH_TEXT};
use api_tests::{Host, RecordingServer};
use serde_json::{json, Value};

const MCP: &str = "/api/internal/mcp";
const API_KEY: &str = "sk-or-test-anonymous";
const AUTH_KEY: &str = "sk-or-test-authenticated";

/// A host whose AI endpoints talk to `llm` and `docs`.
fn ai_host(llm: &RecordingServer, docs: &RecordingServer) -> Host {
    Host::start(&[
        ("STACK_AI_BASE_URL", &format!("{}/api/v1", llm.url)),
        ("STACK_AI_API_KEY", API_KEY),
        ("STACK_AI_AUTHENTICATED_API_KEY", AUTH_KEY),
        ("STACK_DOCS_MCP_URL", &format!("{}/mcp", docs.url)),
    ])
}

async fn rpc(h: &Host, message: Value) -> api_tests::Res {
    h.post(MCP).header("accept", "application/json, text/event-stream").json(&message).send().await
}

/// The JSON-RPC answer in a body that is JSON or SSE (the first `data:` line), as clients read it.
fn answer(res: &api_tests::Res) -> Value {
    match res.text.lines().find_map(|l| l.strip_prefix("data: ")) {
        Some(data) => serde_json::from_str(data).expect("SSE data is JSON"),
        None => res.json(),
    }
}

#[tokio::test]
async fn tools_list_shows_exactly_ask_stack_auth_with_upstreams_schema() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let init = rpc(
        &h,
        json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": { "name": "e2e", "version": "1" } } }),
    )
    .await;
    assert_eq!(init.status, 200, "{}", init.text);
    let init = answer(&init);
    assert_eq!(init["result"]["serverInfo"], json!({ "name": "stack-auth-mcp", "version": "0.1.0" }));
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");

    let res = rpc(&h, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {} })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = answer(&res);
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 1);
    let tools = body["result"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["name"], "ask_stack_auth");
    let schema = &tools[0]["inputSchema"];
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["question", "reason", "userPrompt"]));
    let properties = schema["properties"].as_object().unwrap();
    assert_eq!(properties.keys().collect::<Vec<_>>(), ["conversationId", "question", "reason", "userPrompt"]);
    assert_eq!(properties["reason"]["minLength"], 1);
    assert_eq!(properties["userPrompt"]["minLength"], 1);
    assert!(properties["question"].get("minLength").is_none());
    assert!(llm.requests().is_empty(), "listing tools asks no model");
}

#[tokio::test]
async fn a_call_without_reason_is_invalid_params_and_never_asks_the_model() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let res = rpc(
        &h,
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "ask_stack_auth", "arguments": { "question": "How do sessions work?", "userPrompt": "add auth" } } }),
    )
    .await;
    assert_eq!(res.status, 200);
    let body = answer(&res);
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["code"], -32602);
    let issues = r#"[
  {
    "code": "invalid_type",
    "expected": "string",
    "received": "undefined",
    "path": [
      "reason"
    ],
    "message": "Required"
  }
]"#;
    assert_eq!(
        body["error"]["message"],
        format!("MCP error -32602: Invalid arguments for tool ask_stack_auth: {issues}")
    );
    assert!(llm.requests().is_empty() && docs.requests().is_empty());
}

#[tokio::test]
async fn ask_stack_auth_searches_the_docs_and_answers_with_a_conversation_id() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let question = "How long do refresh tokens last?";
    let res = rpc(&h, json!({ "jsonrpc": "2.0", "id": "q1", "method": "tools/call", "params": {
        "name": "ask_stack_auth",
        "arguments": { "question": question, "reason": "setting session lifetimes", "userPrompt": "make sessions shorter" } } }))
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = answer(&res);
    assert_eq!(body["id"], "q1");
    assert!(body["result"].get("isError").is_none_or(|e| e == false), "{body}");
    let text = body["result"]["content"][0]["text"].as_str().expect("text content");
    let (reply, trailer) = text.split_once("\n\n[conversationId: ").expect("the conversation trailer");
    assert_eq!(reply, format!("The tool said: {DOCS_SEARCH_TEXT}"));
    let conversation_id = trailer.split_once(' ').unwrap().0;
    assert_eq!(conversation_id.len(), 36, "a UUID: {trailer}");
    assert!(trailer.ends_with("— pass this value as the conversationId parameter in your next ask_stack_auth call to continue this conversation]"));

    // The model saw the system prompt, the question and the docs server's tools, unauthenticated.
    let calls = llm.requests();
    assert_eq!(calls.len(), 2, "one call for the search, one for the answer");
    assert!(calls[0].uri.ends_with("/api/v1/chat/completions"));
    assert_eq!(calls[0].header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
    let first = calls[0].json();
    assert_eq!(first["model"], "x-ai/grok-4.1-fast", "smart/fast for an unauthenticated caller");
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["messages"][1], json!({ "role": "user", "content": question }));
    assert_eq!(first["messages"].as_array().unwrap().len(), 2, "reason and userPrompt are not sent to the model");
    let names: Vec<&str> =
        first["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["search", "fetch"]);
    assert_eq!(first["tools"][0]["function"]["parameters"]["required"], json!(["query"]));
    let second = calls[1].json();
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages[2]["tool_calls"][0]["function"]["name"], "search");
    assert_eq!(messages[3], json!({ "role": "tool", "tool_call_id": "call_search", "content": DOCS_SEARCH_TEXT }));

    // One docs-server session for the whole run: one handshake, the listing and the search in
    // it, then the session ended.
    let docs_calls = docs.requests();
    let methods: Vec<String> = docs_calls
        .iter()
        .map(|r| if r.method == "DELETE" { "DELETE".into() } else { r.json()["method"].as_str().unwrap().to_string() })
        .collect();
    assert_eq!(methods, ["initialize", "notifications/initialized", "tools/list", "tools/call", "DELETE"]);
    let sessions: Vec<Option<&str>> = docs_calls.iter().map(|r| r.header("mcp-session-id")).collect();
    assert_eq!(sessions[0], None);
    assert!(sessions[1..].iter().all(|s| *s == Some("docs-session-1")), "{sessions:?}");
    assert_eq!(docs_calls[3].json()["params"], json!({ "name": "search", "arguments": { "query": question } }));
    assert_eq!(first["stream"], true, "the model is asked to stream");

    // The call is logged for review, with the reason the model never saw.
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = h.db_query(
            "SELECT tool_name, reason, user_prompt, question, response, step_count, model_id, inner_tool_calls_json \
             FROM mcp_call_log WHERE conversation_id = ?",
            &[conversation_id],
        );
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 1, "one log row");
    let row = &rows[0];
    assert_eq!(
        &row[..7],
        [
            "ask_stack_auth",
            "setting session lifetimes",
            "make sessions shorter",
            question,
            reply,
            "2",
            "x-ai/grok-4.1-fast"
        ]
    );
    let inner: Value = serde_json::from_str(&row[7]).unwrap();
    assert_eq!(inner[0]["toolName"], "search");

    // The conversation continues under the id the caller passes back.
    let res = rpc(&h, json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "ask_stack_auth",
        "arguments": { "question": "And access tokens?", "reason": "r", "userPrompt": "p", "conversationId": conversation_id } } }))
    .await;
    let text = answer(&res)["result"]["content"][0]["text"].as_str().unwrap().to_string();
    assert!(text.contains(&format!("[conversationId: {conversation_id} —")), "{text}");
}

/// A `tools/call` that asks for progress gets an SSE stream: progress notifications for the
/// run's steps and tool calls, with rising `progress`, then the result under the request's id.
#[tokio::test]
async fn a_tool_call_with_a_progress_token_streams_progress_then_the_result() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let res = rpc(
        &h,
        json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "_meta": { "progressToken": "p-1" }, "name": "ask_stack_auth",
        "arguments": { "question": "sessions?", "reason": "r", "userPrompt": "p" } } }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("content-type"), Some("text/event-stream"));
    let messages: Vec<Value> =
        res.text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    let (result, notifications) = messages.split_last().unwrap();
    assert_eq!(result["id"], 9);
    assert!(result["result"]["content"][0]["text"].as_str().unwrap().starts_with("The tool said: "), "{result}");
    let said: Vec<(&str, i64)> = notifications
        .iter()
        .map(|n| {
            assert_eq!(
                (n["method"].as_str(), &n["params"]["progressToken"]),
                (Some("notifications/progress"), &json!("p-1"))
            );
            (n["params"]["message"].as_str().unwrap(), n["params"]["progress"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        said,
        [("Thinking", 1), ("Calling search", 2), ("Thinking", 3), ("Writing the answer", 4)],
        "a step, the search, the answer's step, its text"
    );
    // Without a token (or without SSE in Accept) the answer stays one JSON body.
    let plain = h
        .post(MCP)
        .header("accept", "application/json")
        .json(&json!({ "jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {
            "_meta": { "progressToken": "p-2" }, "name": "ask_stack_auth",
            "arguments": { "question": "q", "reason": "r", "userPrompt": "p" } } }))
        .send()
        .await;
    assert!(
        plain.header("content-type").unwrap().starts_with("application/json"),
        "{:?}",
        plain.header("content-type")
    );
    assert_eq!(plain.json()["id"], 10);
}

#[tokio::test]
async fn model_failures_become_tool_errors_not_protocol_errors() {
    let failing =
        RecordingServer::start(|_| (429, "application/json", r#"{"error":{"message":"rate limited"}}"#.into()));
    let docs = fake_docs_mcp();
    let h = ai_host(&failing, &docs);
    let res = rpc(
        &h,
        json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": { "name": "ask_stack_auth",
        "arguments": { "question": "q", "reason": "r", "userPrompt": "p" } } }),
    )
    .await;
    assert_eq!(res.status, 200);
    let result = &answer(&res)["result"];
    assert_eq!(result["isError"], true);
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Stack Auth AI error (502): The AI model answered 429:"), "{text}");
    assert_eq!(failing.requests().len(), 1);
}

#[tokio::test]
async fn malformed_json_rpc_gets_json_rpc_errors_and_never_a_5xx() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let send_raw = |body: String| h.post(MCP).raw_body("application/json", &body).send();
    let code = |res: &api_tests::Res| res.json()["error"]["code"].as_i64().unwrap();

    let res = send_raw("{\"jsonrpc\":\"2.0\",".into()).await;
    assert_eq!((res.status, code(&res)), (400, -32700), "bad JSON: {}", res.text);
    let res = send_raw(json!({ "jsonrpc": "1.0", "id": 1, "method": "tools/list" }).to_string()).await;
    assert_eq!((res.status, code(&res)), (400, -32600), "wrong version: {}", res.text);
    assert_eq!(res.json()["id"], 1);
    let res = send_raw(json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/destroy" }).to_string()).await;
    assert_eq!((res.status, code(&res)), (200, -32601), "unknown method: {}", res.text);
    assert_eq!(res.json()["id"], 5);
    let res = send_raw(format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(300_000)
    ))
    .await;
    assert_eq!((res.status, code(&res)), (413, -32600), "oversized: {}", res.text);
    let batch: Vec<Value> = (0..1000).map(|i| json!({ "jsonrpc": "2.0", "id": i, "method": "tools/list" })).collect();
    let res = send_raw(Value::Array(batch).to_string()).await;
    assert_eq!((res.status, code(&res)), (400, -32600), "batch: {}", res.text);
    let res = send_raw(
        json!({ "jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": { "name": "rm_rf" } }).to_string(),
    )
    .await;
    assert_eq!((res.status, code(&res)), (200, -32602), "unknown tool: {}", res.text);
    let res =
        send_raw(json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": "nope" }).to_string()).await;
    assert_eq!((res.status, code(&res)), (400, -32600), "params of the wrong type: {}", res.text);
    let res = send_raw(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string()).await;
    assert_eq!((res.status, res.text.as_str()), (202, ""), "a notification");
    let res = h.get(MCP).send().await;
    assert_eq!((res.status, res.header("allow")), (405, Some("POST")), "no server-initiated stream");
    let res = h.delete(MCP).send().await;
    assert_eq!(res.status, 405, "no sessions to end");
    assert_eq!(code(&res), -32600);
    let res = h.get("/api/internal/sse").send().await;
    assert_eq!(res.status, 404);
    assert!(res.text.contains("Streamable HTTP at /api/internal/mcp"), "{}", res.text);
    assert!(llm.requests().is_empty());
}

fn ai_body(extra: Value) -> Value {
    let mut body = json!({ "quality": "smart", "speed": "fast", "tools": [], "systemPrompt": "docs-ask-ai",
        "messages": [{ "role": "user", "content": "Hello" }] });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

#[tokio::test]
async fn ai_query_validates_its_input_as_upstream() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let res = h.post("/api/v1/ai/query/chat").json(&ai_body(json!({}))).send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert!(body["error"].as_str().unwrap().contains("must be one of the following values: stream, generate"));
    let schema_cases = [
        (json!({ "quality": null }), "body.quality must be defined"),
        (json!({ "quality": "genius" }), "body.quality must be one of the following values: dumb, smart, smartest"),
        (json!({ "speed": null }), "body.speed must be defined"),
        (json!({ "speed": "warp" }), "body.speed must be one of the following values: slow, fast"),
        (json!({ "tools": null }), "body.tools must be defined"),
        (json!({ "systemPrompt": null }), "body.systemPrompt must be defined"),
        (json!({ "systemPrompt": "jailbreak" }), "body.systemPrompt must be one of the following values"),
        (json!({ "messages": null }), "body.messages must be defined"),
        (json!({ "messages": [] }), "body.messages field must have at least 1 items"),
        (
            json!({ "messages": [{ "role": "system", "content": "x" }] }),
            "body.messages[0].role must be one of the following values: user, assistant, tool",
        ),
        (json!({ "messages": [{ "role": "user" }] }), "body.messages[0].content must be defined"),
    ];
    for (change, expected) in schema_cases {
        let res = h.post("/api/v1/ai/query/generate").json(&ai_body(change.clone())).send().await;
        let body = res.assert_known_error(400, "SCHEMA_ERROR");
        assert!(body["error"].as_str().unwrap().contains(expected), "{change}: {}", body["error"]);
    }
    let res = h.post("/api/v1/ai/query/generate").json(&ai_body(json!({ "tools": ["docs", "shell"] }))).send().await;
    assert_eq!((res.status, res.text.as_str()), (400, "Invalid tool names in request."));
    let other = h.create_project(false).await;
    let res = h.post("/api/v1/ai/query/generate").json(&ai_body(json!({ "projectId": other.id }))).send().await;
    assert_eq!((res.status, res.text.as_str()), (403, "You do not have access to this project"));
    let mine = h.create_project(false).await;
    let res =
        h.post("/api/v1/ai/query/generate").server(&mine).json(&ai_body(json!({ "projectId": mine.id }))).send().await;
    assert_eq!(
        (res.status, res.text.as_str()),
        (403, "You do not have access to this project"),
        "server keys are not enough"
    );
    let image = |len: usize| json!({ "type": "image", "image": "A".repeat(len) });
    let four = json!({ "messages": [{ "role": "user", "content": [image(4), image(4), image(4), image(4)] }] });
    let res = h.post("/api/v1/ai/query/generate").json(&ai_body(four)).send().await;
    assert_eq!((res.status, res.text.as_str()), (400, "Maximum 3 images per message."));
    let big =
        json!({ "messages": [{ "role": "user", "content": [{ "type": "text", "text": "look" }, image(4_400_000)] }] });
    let res = h.post("/api/v1/ai/query/generate").json(&ai_body(big)).send().await;
    assert_eq!((res.status, res.text.as_str()), (400, "Image exceeds 3MB limit (3.15MB)."));
    assert!(llm.requests().is_empty(), "nothing invalid reaches the model");
}

#[tokio::test]
async fn generate_returns_client_side_tool_calls_for_the_caller_to_apply() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let project = h.create_project(false).await;
    let body = ai_body(json!({ "quality": "smartest", "speed": "slow", "systemPrompt": "create-dashboard",
        "tools": ["update-dashboard", "patch-dashboard", "sql-query"], "projectId": project.id,
        "messages": [{ "role": "user", "content": "Build a dashboard of sign-ups" }] }));
    let res = h.post("/api/v1/ai/query/generate").admin(&project).json(&body).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let answer = res.json();
    assert_eq!(answer["conversationId"], Value::Null, "only MCP calls start conversations");
    assert_eq!(
        answer["content"],
        json!([{ "type": "tool-call", "toolName": "updateDashboard", "toolCallId": "call_dash",
        "args": { "content": DASHBOARD_SOURCE }, "argsText": json!({ "content": DASHBOARD_SOURCE }).to_string(), "result": null }])
    );
    let calls = llm.requests();
    assert_eq!(calls.len(), 1, "a client-side tool call ends the run");
    assert_eq!(calls[0].header("authorization"), Some(format!("Bearer {AUTH_KEY}").as_str()));
    let sent = calls[0].json();
    assert_eq!(sent["model"], "anthropic/claude-opus-4.6", "smartest for an authenticated caller");
    let names: Vec<&str> =
        sent["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["updateDashboard", "patchDashboard", "queryAnalytics"]);

    // Unauthenticated: the weaker model, and no analytics tool (silently, as upstream).
    let body =
        ai_body(json!({ "quality": "smartest", "speed": "slow", "tools": ["sql-query"], "systemPrompt": "run-query" }));
    let res = h.post("/api/v1/ai/query/generate").json(&body).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["content"], json!([{ "type": "text", "text": "You asked: \"Hello\"" }]));
    let sent = llm.requests()[1].json();
    assert_eq!(sent["model"], "x-ai/grok-4.1-fast");
    assert!(sent.get("tools").is_none());
    assert_eq!(llm.requests()[1].header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));

    // Client access holds no secret: it counts as anonymous (weaker model, anonymous key, no
    // analytics tool), and it may not name a project for the tools to read.
    let res = h.post("/api/v1/ai/query/generate").client(&project).json(&body).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let sent = llm.requests()[2].json();
    assert_eq!(sent["model"], "x-ai/grok-4.1-fast");
    assert!(sent.get("tools").is_none(), "{sent}");
    assert_eq!(llm.requests()[2].header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
    let mut named = body.clone();
    named["projectId"] = json!(project.id);
    for caller in ["client", "server"] {
        let call = h.post("/api/v1/ai/query/generate").json(&named);
        let call = if caller == "client" { call.client(&project) } else { call.server(&project) };
        assert_eq!(call.send().await.status, 403, "{caller} access may not read the project's analytics");
    }
    // Server access is authenticated (the stronger model) but gets no analytics tool.
    let res = h.post("/api/v1/ai/query/generate").server(&project).json(&body).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let sent = llm.requests()[3].json();
    assert_eq!(sent["model"], "anthropic/claude-opus-4.6");
    assert!(sent.get("tools").is_none(), "{sent}");
    assert_eq!(llm.requests().len(), 4, "refused requests reach no model");
}

#[tokio::test]
async fn stream_mode_answers_an_ai_sdk_ui_message_stream() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let body = ai_body(json!({ "tools": ["docs"], "messages": [{ "role": "user", "content": "sessions?" }] }));
    let res = h.post("/api/v1/ai/query/stream").json(&body).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("content-type"), Some("text/event-stream"));
    let events: Vec<Value> = res
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // Two model steps: the search (its input and output as they happen), then the answer,
    // a text piece per word as the model streamed it.
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let answer = format!("The tool said: {DOCS_SEARCH_TEXT}");
    let words = answer.split_inclusive(' ').count();
    let mut expected = vec!["start", "start-step", "tool-input-available", "tool-output-available", "finish-step"];
    expected.extend(["start-step", "text-start"]);
    expected.extend(std::iter::repeat_n("text-delta", words));
    expected.extend(["text-end", "finish-step", "finish"]);
    assert_eq!(types, expected);
    assert_eq!(events[2]["input"], json!({ "query": "sessions?" }));
    assert_eq!(events[3]["output"], DOCS_SEARCH_TEXT);
    let text: String =
        events.iter().filter(|e| e["type"] == "text-delta").map(|e| e["delta"].as_str().unwrap()).collect();
    assert_eq!(text, answer);
    assert!(events.iter().filter(|e| e["type"].as_str().unwrap().starts_with("text-")).all(|e| e["id"] == "text-1"));
    assert!(res.text.ends_with("data: [DONE]\n\n"));
}

/// The model's first word reaches the caller while the model still holds the rest back
/// (`StreamingModel::assert_relayed_by`: shown by order, not by a clock).
#[tokio::test]
async fn stream_mode_relays_the_first_token_before_the_model_finishes() {
    let model = StreamingModel::gated();
    let h = Host::start(&[("STACK_AI_BASE_URL", &model.url)]);
    model.assert_relayed_by(&h.base_url).await;
}

#[tokio::test]
async fn without_a_model_api_the_endpoints_say_so() {
    let h = Host::start(&[]);
    for mode in ["generate", "stream"] {
        let res = h.post(&format!("/api/v1/ai/query/{mode}")).json(&ai_body(json!({}))).send().await;
        assert_eq!((res.status, res.text.as_str()), (503, "The AI model is not configured (STACK_AI_BASE_URL)."));
    }
}

/// A model that fails after the stream began ends it with an `error` chunk, not a silent cut.
#[tokio::test]
async fn a_model_failure_mid_stream_is_an_error_chunk() {
    let failing =
        RecordingServer::start(|_| (429, "application/json", r#"{"error":{"message":"rate limited"}}"#.into()));
    let h = Host::start(&[("STACK_AI_BASE_URL", &failing.url)]);
    let res = h.post("/api/v1/ai/query/stream").json(&ai_body(json!({}))).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let events: Vec<Value> = res
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "error");
    assert!(last["errorText"].as_str().unwrap().starts_with("The AI model answered 429"), "{last}");
    assert_eq!(failing.requests().len(), 1);
}

#[tokio::test]
async fn the_ai_proxy_needs_a_project_and_a_known_model() {
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = ai_host(&llm, &docs);
    let project = h.create_project(false).await;
    let path = "/api/latest/integrations/ai-proxy/v1/chat/completions?trace=1";
    let body = json!({ "model": "x-ai/grok-4.1-fast", "messages": [{ "role": "user", "content": "hi" }],
        "metadata": { "user_id": "u".repeat(300) } });
    let res = h.post(path).json(&body).send().await;
    res.assert_known_error(400, "ACCESS_TYPE_REQUIRED");
    // The platform's key is worth a secret: client access (no key needed) is refused.
    let res = h.post(path).client(&project).json(&body).send().await;
    res.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    // Only the model API's chat, messages and models paths, with their methods.
    for (method, off_list, status) in [
        ("POST", "/api/v1/integrations/ai-proxy/v1/files", 404),
        ("DELETE", "/api/v1/integrations/ai-proxy/v1/models", 405),
        // The HTTP client resolves `%2e%2e` as `..` before sending (WHATWG URL rules), so the
        // host sees `/ai-proxy/admin/keys`; proxy.rs's unit test holds the raw spellings.
        ("GET", "/api/v1/integrations/ai-proxy/v1/%2e%2e/admin/keys", 404),
        ("GET", "/api/v1/integrations/ai-proxy/v1/%2E%2E/admin/keys", 404),
        ("POST", "/api/v1/integrations/ai-proxy/v1/chat/completions/..%2f..%2fkeys", 400),
        ("GET", "/api/v1/integrations/ai-proxy/v1//models", 400),
    ] {
        let res = h.request(method, off_list).server(&project).json(&body).send().await;
        assert_eq!(res.status, status, "{method} {off_list}: {}", res.text);
    }
    let res = h.post(path).server(&project).json(&json!({ "model": "openai/o3-pro", "messages": [] })).send().await;
    assert_eq!(res.status, 400);
    assert!(res.text.starts_with("Model \"openai/o3-pro\" is not available through the AI proxy"), "{}", res.text);
    let res = h.post(path).server(&project).raw_body("application/json", "[1,2]").send().await;
    assert_eq!((res.status, res.text.as_str()), (400, "Request body must be a JSON object"));
    assert!(llm.requests().is_empty(), "nothing refused is forwarded");

    let res = h.post(path).server(&project).json(&body).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("cache-control"), Some("no-cache"));
    assert_eq!(res.json()["choices"][0]["message"]["content"], "You asked: \"hi\"");
    let forwarded = &llm.requests()[0];
    assert_eq!(forwarded.uri, "/api/v1/chat/completions?trace=1");
    assert_eq!(forwarded.header("authorization"), Some(format!("Bearer {API_KEY}").as_str()));
    assert_eq!(forwarded.header("anthropic-version"), Some("2023-06-01"));
    assert!(forwarded.header("x-stack-publishable-client-key").is_none(), "Stack credentials stay here");
    let sent = forwarded.json();
    assert_eq!(sent["metadata"]["user_id"], "u".repeat(128));
    assert_eq!(sent["model"], "x-ai/grok-4.1-fast");

    // Upstream errors pass through with their status.
    let res = h.get("/api/v1/integrations/ai-proxy/v1/models").server(&project).send().await;
    assert_eq!(res.status, 404);
}

#[tokio::test]
async fn the_init_prompt_has_a_web_variant() {
    let h = Host::start(&[]);
    let cli = h.get("/api/v1/ai/init-prompt").send().await;
    let web = h.get("/api/v1/ai/init-prompt?web=true").send().await;
    assert_eq!((cli.status, web.status), (200, 200));
    assert!(cli.text.contains("STACK AUTH SETUP INSTRUCTIONS") && web.text.contains("STACK AUTH SETUP INSTRUCTIONS"));
    assert!(web.text.contains("npx @stackframe/stack-cli init"));
    assert!(!cli.text.contains("npx @stackframe/stack-cli init"));
}

/// The `sql-query` tool set: the model's SQL goes through the same guard and scoping as the
/// analytics endpoint, so it reads the caller's project only.
#[tokio::test]
async fn the_analytics_tool_reads_only_the_callers_project() {
    use shared::adapters::native::ReqwestClient;
    let front = api_tests::ClickHouseFront::start();
    let ch = shared::analytics::clickhouse::ClickHouse {
        url: front.url.clone(),
        database: "default".into(),
        user: None,
        password: None,
    };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = Host::start(&[("STACK_AI_BASE_URL", &format!("{}/v1", llm.url)), ("STACK_CLICKHOUSE_URL", &front.url)]);
    let (a, b) = (h.create_project(false).await, h.create_project(false).await);
    let mut rows = Vec::new();
    for (project, n) in [(&a, 2), (&b, 5)] {
        for i in 0..n {
            rows.push(json!({ "event_type": "$token-refresh", "event_at": "2026-11-26 10:00:00.000", "data": {},
                "project_id": project.id, "branch_id": "main", "user_id": format!("user-{i}") }));
        }
    }
    ch.insert(&ReqwestClient::new(), "analytics_internal.events", &rows).await.unwrap();
    drop(docs);

    let ask = |p: &api_tests::Project, project_id: Option<&str>, sql: &str| {
        let mut body = ai_body(json!({ "tools": ["sql-query"], "systemPrompt": "run-query",
            "messages": [{ "role": "user", "content": format!("sql: {sql}") }] }));
        if let Some(id) = project_id {
            body["projectId"] = json!(id);
        }
        h.post("/api/v1/ai/query/generate").admin(p).json(&body).send()
    };
    let tool_result = |res: api_tests::Res| {
        assert_eq!(res.status, 200, "{}", res.text);
        let answer = res.json();
        assert_eq!(answer["content"][0]["toolName"], "queryAnalytics", "{answer}");
        answer["content"][0]["result"].clone()
    };
    let count = "SELECT count() AS c FROM events";
    assert_eq!(tool_result(ask(&a, Some(&a.id), count).await), json!({ "rows": [{ "c": "2" }] }));
    assert_eq!(tool_result(ask(&b, None, count).await), json!({ "rows": [{ "c": "5" }] }), "the caller's own project");
    let other = format!("SELECT count() AS c FROM events WHERE project_id = '{}'", b.id);
    assert_eq!(tool_result(ask(&a, Some(&a.id), &other).await), json!({ "rows": [{ "c": "0" }] }));
    let refused = tool_result(ask(&a, Some(&a.id), "SELECT name FROM system.tables").await);
    assert!(refused["error"].as_str().is_some_and(|e| !e.is_empty()) && refused.get("rows").is_none(), "{refused}");
    // The model saw the rows as the tool's answer.
    let last = llm.requests().last().unwrap().json();
    assert_eq!(last["messages"].as_array().unwrap().last().unwrap()["role"], "tool");
}

/// Each caller has a budget of runs per minute (`STACK_AI_RUNS_PER_MINUTE`): past it, the AI
/// query answers 429 with `retry-after` and the MCP tool an error result, and neither asks
/// the model. A project's budget is its own. (A budget is a one-minute window; should the
/// minute turn during the test, at most two windows' worth is admitted before a refusal.)
#[tokio::test]
async fn runs_over_a_callers_budget_are_refused_before_the_model_is_asked() {
    const LIMIT: usize = 2;
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = Host::start(&[
        ("STACK_AI_BASE_URL", &format!("{}/api/v1", llm.url)),
        ("STACK_DOCS_MCP_URL", &format!("{}/mcp", docs.url)),
        ("STACK_AI_RUNS_PER_MINUTE", "2"),
    ]);
    let (p, q) = (h.create_project(false).await, h.create_project(false).await);
    let mut admitted = 0;
    let refusal = loop {
        let res = h.post("/api/v1/ai/query/generate").client(&p).json(&ai_body(json!({}))).send().await;
        if res.status != 200 {
            break res;
        }
        admitted += 1;
        assert!(admitted <= 2 * LIMIT, "more runs admitted than two windows hold");
    };
    assert!(admitted >= LIMIT, "the budget admits {LIMIT} runs first");
    assert_eq!(refusal.status, 429, "{}", refusal.text);
    assert_eq!(
        refusal.text,
        format!(
            "Too many AI requests: at most {LIMIT} per minute for each caller. Try again in {} s.",
            refusal.header("retry-after").unwrap()
        )
    );
    let retry_after: u32 = refusal.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(llm.requests().len(), admitted, "a refused run reaches no model");
    // Another project has a budget of its own.
    let other = h.post("/api/v1/ai/query/generate").client(&q).json(&ai_body(json!({}))).send().await;
    assert_eq!(other.status, 200, "{}", other.text);

    // MCP callers (no credentials) are counted by address: past the budget, a tool error.
    let before = llm.requests().len();
    let mut calls = 0;
    let refused = loop {
        calls += 1;
        let res = rpc(
            &h,
            json!({ "jsonrpc": "2.0", "id": calls, "method": "tools/call", "params": {
            "name": "ask_stack_auth", "arguments": { "question": "q", "reason": "r", "userPrompt": "p" } } }),
        )
        .await;
        let body = answer(&res);
        if body["result"]["isError"] == true {
            break body;
        }
        assert!(calls <= 2 * LIMIT, "more calls admitted than two windows hold: {body}");
    };
    let text = refused["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Too many AI requests: at most 2 per minute for each caller."), "{text}");
    assert_eq!(
        llm.requests().len() - before,
        2 * (calls - 1),
        "two model calls per admitted run, none for the refused"
    );
}

/// A caller without project credentials gets at most 10 model steps per run, whatever the
/// model keeps asking for; the call log keeps at most 16 KiB of each text field.
#[tokio::test]
async fn anonymous_runs_are_capped_in_steps_and_their_log_in_size() {
    // A model that calls `search` forever.
    let looping = RecordingServer::start(|_| {
        let call = json!({ "id": "cmpl", "choices": [{ "index": 0, "message": { "role": "assistant", "content": null,
            "tool_calls": [{ "id": "c", "type": "function", "function": { "name": "search", "arguments": "{\"query\":\"x\"}" } }] } }] });
        (200, "application/json", call.to_string())
    });
    let docs = fake_docs_mcp();
    let h = ai_host(&looping, &docs);
    let question = "é".repeat(40_000);
    let res = rpc(
        &h,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "ask_stack_auth",
        "arguments": { "question": question, "reason": "r", "userPrompt": "p" } } }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(looping.requests().len(), 10, "the step cap for callers without credentials");
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = h.db_query("SELECT length(question), step_count FROM mcp_call_log", &[]);
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows, vec![vec![(16 * 1024).to_string(), "10".to_string()]]);
}
