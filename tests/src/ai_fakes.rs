//! Local stand-ins for the AI endpoints' paid services, as [`RecordingServer`]s: an
//! OpenAI-compatible model API and a documentation MCP server. Their answers follow simple
//! rules, so a test knows what the endpoint must have sent and received.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::{Recorded, RecordingServer, Reply};

/// What the fake docs server's `search` answers.
pub const DOCS_SEARCH_TEXT: &str =
    "Sessions: refresh tokens last 1 year (https://docs.stack-auth.com/concepts/sessions)";

/// The dashboard source the fake model writes when asked for a dashboard.
pub const DASHBOARD_SOURCE: &str = "function Dashboard() { return <DashboardUI.Card title=\"Users\" />; }";

/// The answer `message`, whole (JSON) or, when the request asked for `stream`, as the
/// server-sent events an OpenAI-compatible API writes: the text a word at a time, each tool
/// call's arguments in two fragments, then `[DONE]`.
fn completion(stream: bool, message: Value) -> Reply {
    if !stream {
        return (
            200,
            "application/json",
            json!({ "id": "cmpl-1", "object": "chat.completion",
            "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] })
            .to_string(),
        );
    }
    (
        200,
        "text/event-stream",
        stream_events(&message).iter().map(|e| format!("data: {e}\n\n")).collect::<String>() + "data: [DONE]\n\n",
    )
}

/// `message` as chat-completion chunks (see [`completion`]).
pub fn stream_events(message: &Value) -> Vec<Value> {
    let chunk = |delta: Value| {
        json!({ "id": "cmpl-1", "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] })
    };
    let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }))];
    let text = message["content"].as_str().unwrap_or_default();
    events.extend(text.split_inclusive(' ').map(|word| chunk(json!({ "content": word }))));
    for (index, call) in message["tool_calls"].as_array().into_iter().flatten().enumerate() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
        let (first, rest) = arguments.split_at(arguments.len() / 2);
        events.push(chunk(json!({ "tool_calls": [{ "index": index, "id": call["id"], "type": "function",
            "function": { "name": call["function"]["name"], "arguments": first } }] })));
        events.push(chunk(json!({ "tool_calls": [{ "index": index, "function": { "arguments": rest } }] })));
    }
    events
}

fn tool_call(id: &str, name: &str, arguments: Value) -> Value {
    json!({ "role": "assistant", "content": null, "tool_calls": [
        { "id": id, "type": "function", "function": { "name": name, "arguments": arguments.to_string() } }] })
}

/// `POST /chat/completions` (streamed when asked): after a tool result, an answer that quotes it; for a question
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
        let stream = body["stream"] == true;
        let completion = |message: Value| completion(stream, message);
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
/// tools and sessions: `initialize` opens one (`mcp-session-id: docs-session-N`), every later
/// request must carry an open one (else 404), `DELETE` ends it. `tools/call` answers as SSE (as
/// such servers do), everything else as JSON.
pub fn fake_docs_mcp() -> RecordingServer {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let (opened, ended) = (AtomicUsize::new(0), Mutex::new(Vec::<String>::new()));
    RecordingServer::start_with_headers(move |req: &Recorded| {
        let json = |status: u16, body: String| (status, vec![("content-type", "application/json".to_string())], body);
        let session = req.header("mcp-session-id").map(str::to_string);
        let open = |id: &Option<String>| {
            id.as_ref().is_some_and(|id| {
                let n: usize = id.strip_prefix("docs-session-").and_then(|n| n.parse().ok()).unwrap_or(0);
                (1..=opened.load(Ordering::SeqCst)).contains(&n) && !ended.lock().unwrap().contains(id)
            })
        };
        if req.method == "DELETE" {
            return match session {
                Some(id) if open(&Some(id.clone())) => {
                    ended.lock().unwrap().push(id);
                    json(200, String::new())
                }
                _ => json(404, String::new()),
            };
        }
        let Ok(message) = serde_json::from_str::<Value>(&req.body) else {
            return json(
                400,
                json!({ "jsonrpc": "2.0", "error": { "code": -32700, "message": "Parse error" } }).to_string(),
            );
        };
        let id = message["id"].clone();
        let result = |result: Value| json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string();
        let method = message["method"].as_str().unwrap_or_default();
        if method == "initialize" {
            let session = format!("docs-session-{}", opened.fetch_add(1, Ordering::SeqCst) + 1);
            let body = result(json!({ "protocolVersion": "2025-06-18",
                "capabilities": { "tools": {} }, "serverInfo": { "name": "fake-docs", "version": "1.0.0" } }));
            return (200, vec![("content-type", "application/json".into()), ("mcp-session-id", session)], body);
        }
        if !open(&session) {
            return json(
                404,
                json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32001, "message": "Session not found" } })
                    .to_string(),
            );
        }
        match method {
            m if m.starts_with("notifications/") => json(202, String::new()),
            "tools/list" => json(
                200,
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
                        return json(
                            200,
                            json!({ "jsonrpc": "2.0", "id": id,
                        "error": { "code": -32602, "message": format!("unknown tool {other:?}") } })
                            .to_string(),
                        )
                    }
                };
                let body = result(json!({ "content": [{ "type": "text", "text": text }] }));
                (200, vec![("content-type", "text/event-stream".into())], format!("event: message\ndata: {body}\n\n"))
            }
            other => json(
                200,
                json!({ "jsonrpc": "2.0", "id": id,
                "error": { "code": -32601, "message": format!("Method not found: {other}") } })
                .to_string(),
            ),
        }
    })
}

/// A model API that streams its answer as chat-completion chunks, one word at a time, paced
/// by the test: [`StreamingModel::gated`] writes the first word (`GATED_FIRST`) at once and
/// holds the rest (`GATED_REST`) back until [`StreamingModel::release`]; a client that sees
/// the first word while [`StreamingModel::finished`] is false got it before the model was
/// done, so arrival order, not a clock, shows the answer was relayed as it came.
/// [`StreamingModel::paced`] writes `words` words with a fixed delay before each (benchmarks).
pub struct StreamingModel {
    pub url: String,
    release: Arc<tokio::sync::Notify>,
    finished: Arc<std::sync::atomic::AtomicBool>,
    first_word_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A gated model's first word, written at once.
pub const GATED_FIRST: &str = "First ";
/// The rest of a gated model's answer, written after [`StreamingModel::release`].
pub const GATED_REST: &str = "token, then the rest.";

/// How a [`StreamingModel`] paces its words.
#[derive(Clone, Copy)]
enum Pace {
    Gated,
    Every { words: usize, delay: std::time::Duration },
}

impl StreamingModel {
    /// The first word at once, the rest after [`StreamingModel::release`].
    pub fn gated() -> StreamingModel {
        Self::start(Pace::Gated)
    }

    /// `words` words, each after `delay`.
    pub fn paced(words: usize, delay: std::time::Duration) -> StreamingModel {
        Self::start(Pace::Every { words, delay })
    }

    fn start(pace: Pace) -> StreamingModel {
        use http_body_util::StreamBody;
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let release = Arc::new(tokio::sync::Notify::new());
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first_word_at = Arc::new(std::sync::Mutex::new(None));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = (release.clone(), finished.clone(), first_word_at.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    // Each word goes out as written (as a streaming model API's would), not held
                    // by Nagle's algorithm until the head is acknowledged.
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                        let (gate, done, first_at) = shared.clone();
                        async move {
                            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
                            let event = |text: &str| {
                                let chunk = json!({ "object": "chat.completion.chunk",
                                    "choices": [{ "index": 0, "delta": { "content": text } }] });
                                format!("data: {chunk}\n\n")
                            };
                            tokio::spawn(async move {
                                match pace {
                                    Pace::Gated => {
                                        let _ = sender.send(event(GATED_FIRST));
                                        *first_at.lock().unwrap() = Some(std::time::Instant::now());
                                        gate.notified().await;
                                        let _ = sender.send(event(GATED_REST));
                                    }
                                    Pace::Every { words, delay } => {
                                        for i in 0..words {
                                            tokio::time::sleep(delay).await;
                                            let _ = sender.send(event(&format!("word{i} ")));
                                            if i == 0 {
                                                *first_at.lock().unwrap() = Some(std::time::Instant::now());
                                            }
                                        }
                                    }
                                }
                                let _ = sender.send("data: [DONE]\n\n".to_string());
                                done.store(true, Ordering::SeqCst);
                            });
                            let frames = futures::stream::unfold(receiver, |mut receiver| async move {
                                let text = receiver.recv().await?;
                                let frame = hyper::body::Frame::data(hyper::body::Bytes::from(text));
                                Some((Ok::<_, std::convert::Infallible>(frame), receiver))
                            });
                            hyper::Response::builder()
                                .status(200)
                                .header("content-type", "text/event-stream")
                                .body(StreamBody::new(frames))
                        }
                    });
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        });
        StreamingModel { url, release, finished, first_word_at, stop: Some(stop) }
    }

    /// Lets a gated model's held-back answer be written.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// When the model last wrote the first word of an answer.
    pub fn first_word_at(&self) -> Option<std::time::Instant> {
        *self.first_word_at.lock().unwrap()
    }

    /// Asks `base_url`'s `POST /api/v1/ai/query/stream` (with this model behind it) and checks
    /// that the first word arrives while the model still holds the rest back, then that the
    /// whole answer and the stream's end follow once it is released. The timeout bounds a hang
    /// only: a host that buffers never shows the first word (nor, buffering the head too,
    /// answers at all), since the model finishes only after it is seen.
    pub async fn assert_relayed_by(&self, base_url: &str) {
        let body = json!({ "quality": "smart", "speed": "fast", "tools": [], "systemPrompt": "docs-ask-ai",
            "messages": [{ "role": "user", "content": "Hello" }] });
        let first_delta = format!("\"delta\":{}", json!(GATED_FIRST));
        let mut seen = String::new();
        let read_first = async {
            let mut res = reqwest::Client::new()
                .post(format!("{base_url}/api/v1/ai/query/stream"))
                .json(&body)
                .send()
                .await
                .expect("the stream starts");
            assert_eq!(res.status(), 200);
            while !seen.contains(&first_delta) {
                let chunk =
                    res.chunk().await.expect("the stream reads").expect("the stream ends only after the answer");
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            res
        };
        let mut res = tokio::time::timeout(std::time::Duration::from_secs(60), read_first)
            .await
            .expect("the first word arrives while the model holds the rest back");
        assert!(!self.finished(), "the model was still writing when its first word arrived");
        self.release();
        while let Some(chunk) = res.chunk().await.expect("the stream reads") {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(self.finished());
        let events: Vec<Value> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let text: String =
            events.iter().filter(|e| e["type"] == "text-delta").map(|e| e["delta"].as_str().unwrap()).collect();
        assert_eq!(text, format!("{GATED_FIRST}{GATED_REST}"));
        assert_eq!(events.last().unwrap()["type"], "finish");
        assert!(seen.ends_with("data: [DONE]\n\n"));
    }

    /// Whether the model has written its whole answer.
    pub fn finished(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for StreamingModel {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
