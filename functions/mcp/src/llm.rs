//! The model behind the AI endpoints: upstream's model table (docs/api.md §9.1) and one
//! streamed call to an OpenAI-compatible chat-completions API (`STACK_AI_BASE_URL`, OpenRouter
//! model ids) over the outbound-HTTP port, so it runs on every runtime; the answer's text is
//! handed on piece by piece as it arrives.

use serde_json::{json, Value};

use shared::Context;

/// How long one model call may take.
const MODEL_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// OpenRouter model id for a quality/speed pair; authenticated callers get the stronger
/// models where upstream gives them.
pub fn model(quality: &str, speed: &str, authenticated: bool) -> &'static str {
    match (quality, speed, authenticated) {
        ("dumb", "slow", _) => "z-ai/glm-4.5-air:free",
        ("dumb", "fast", true) => "openai/gpt-oss-120b:nitro",
        ("dumb", "fast", false) => "z-ai/glm-4.5-air:free",
        ("smart", "slow", _) => "anthropic/claude-haiku-4-5",
        ("smart", "fast", _) => "x-ai/grok-4.1-fast",
        ("smartest", _, true) => "anthropic/claude-opus-4.6",
        _ => "x-ai/grok-4.1-fast",
    }
}

/// Every model id the table can choose (the AI proxy's allow-list).
pub const MODELS: &[&str] = &[
    "z-ai/glm-4.5-air:free",
    "openai/gpt-oss-120b:nitro",
    "anthropic/claude-haiku-4-5",
    "x-ai/grok-4.1-fast",
    "anthropic/claude-opus-4.6",
];

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text).
    pub arguments: String,
}

/// One completion: the assistant's text and tool calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LlmError {
    /// No `STACK_AI_BASE_URL`.
    NotConfigured,
    /// The API could not be reached or answered something unreadable.
    Unavailable(String),
    /// The API answered with an error status.
    Status(u16, String),
}

/// The most bytes a model's answer may hold (its stream included).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// One streamed chat-completions call (`stream: true`). `messages` are OpenAI-shaped; `tools`
/// OpenAI function tools. `on_text` gets each piece of the answer's text as it arrives; the
/// completion is the whole answer. An API that ignores `stream` and answers JSON is read whole.
pub async fn complete(
    ctx: &Context,
    model: &str,
    authenticated: bool,
    messages: &[Value],
    tools: &[Value],
    on_text: &mut dyn FnMut(&str),
) -> Result<Completion, LlmError> {
    use futures_util::StreamExt;
    let ai = &ctx.config.ai;
    let base = ai.base_url.as_deref().ok_or(LlmError::NotConfigured)?;
    let key =
        if authenticated { ai.authenticated_api_key.as_ref().or(ai.api_key.as_ref()) } else { ai.api_key.as_ref() };
    let mut body = json!({ "model": model, "messages": messages, "stream": true });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools.to_vec());
    }
    // A model's answer may take minutes; the HTTP port's 10 s default would cut it.
    let mut request = http::Request::post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .extension(shared::store::ports::RequestTimeout(MODEL_CALL_TIMEOUT));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request.body(body.to_string().into_bytes()).map_err(|e| LlmError::Unavailable(e.to_string()))?;
    let (head, mut chunks) =
        ctx.http.open(request).await.map_err(|e| LlmError::Unavailable(e.to_string()))?.into_parts();
    let is_stream = head
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let status = head.status.as_u16();
    let mut answer = if (200..300).contains(&status) && is_stream { Some(StreamedAnswer::default()) } else { None };
    let (mut whole, mut read) = (Vec::new(), 0);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| LlmError::Unavailable(e.to_string()))?;
        read += chunk.len();
        if read > MAX_ANSWER_BYTES {
            return Err(LlmError::Unavailable(format!("the answer is over {MAX_ANSWER_BYTES} bytes")));
        }
        match answer.as_mut() {
            Some(streamed) => streamed.feed(&chunk, on_text)?,
            None => whole.extend_from_slice(&chunk),
        }
    }
    let text = String::from_utf8_lossy(&whole).into_owned();
    if !(200..300).contains(&status) {
        return Err(LlmError::Status(status, text));
    }
    if let Some(streamed) = answer {
        return Ok(streamed.finish());
    }
    let answer: Value = serde_json::from_str(&text).map_err(|e| LlmError::Unavailable(format!("not JSON: {e}")))?;
    let completion =
        parse_completion(&answer).ok_or_else(|| LlmError::Unavailable("no choices[0].message in the answer".into()))?;
    if !completion.text.is_empty() {
        on_text(&completion.text);
    }
    Ok(completion)
}

/// A completion being read from its server-sent events: `data: {chunk}` lines whose
/// `choices[0].delta` carries text pieces and tool-call fragments (by `index`), up to
/// `data: [DONE]`. Hand-written rather than an SSE crate: it is a line split, and the mcp
/// Worker has a size budget.
#[derive(Default)]
struct StreamedAnswer {
    line: Vec<u8>,
    completion: Completion,
    done: bool,
}

impl StreamedAnswer {
    fn feed(&mut self, chunk: &[u8], on_text: &mut dyn FnMut(&str)) -> Result<(), LlmError> {
        for &byte in chunk {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end_matches('\r').strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                self.done = true;
            } else if !self.done && !data.is_empty() {
                let event: Value =
                    serde_json::from_str(data).map_err(|e| LlmError::Unavailable(format!("a stream event: {e}")))?;
                self.apply(&event, on_text)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: &Value, on_text: &mut dyn FnMut(&str)) -> Result<(), LlmError> {
        if let Some(error) = event.get("error") {
            return Err(LlmError::Unavailable(format!("the model stopped: {error}")));
        }
        let delta = &event["choices"][0]["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.completion.text.push_str(text);
            on_text(text);
        }
        for fragment in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = fragment["index"].as_u64().unwrap_or(0) as usize;
            let calls = &mut self.completion.tool_calls;
            if index >= calls.len() {
                // A call's first fragment; indexes only grow.
                calls.resize(index + 1, ToolCall { id: String::new(), name: String::new(), arguments: String::new() });
            }
            let call = &mut calls[index];
            if let Some(id) = fragment["id"].as_str() {
                call.id = id.to_string();
            }
            if let Some(name) = fragment["function"]["name"].as_str() {
                call.name.push_str(name);
            }
            if let Some(arguments) = fragment["function"]["arguments"].as_str() {
                call.arguments.push_str(arguments);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Completion {
        self.completion.tool_calls.retain(|call| !call.name.is_empty());
        for call in &mut self.completion.tool_calls {
            if call.arguments.is_empty() {
                call.arguments = "{}".into();
            }
        }
        self.completion
    }
}

/// A whole (not streamed) completion's message.
fn parse_completion(answer: &Value) -> Option<Completion> {
    let message = answer["choices"].get(0)?.get("message")?;
    let tool_calls = message["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter_map(|call| {
                    Some(ToolCall {
                        id: call["id"].as_str()?.to_string(),
                        name: call["function"]["name"].as_str()?.to_string(),
                        arguments: call["function"]["arguments"].as_str().unwrap_or("{}").to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Completion { text: message["content"].as_str().unwrap_or_default().to_string(), tool_calls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_table_is_upstreams() {
        assert_eq!(model("dumb", "fast", true), "openai/gpt-oss-120b:nitro");
        assert_eq!(model("dumb", "fast", false), "z-ai/glm-4.5-air:free");
        assert_eq!(model("smartest", "slow", true), "anthropic/claude-opus-4.6");
        assert_eq!(model("smartest", "slow", false), "x-ai/grok-4.1-fast");
        assert_eq!(model("smart", "slow", false), "anthropic/claude-haiku-4-5");
        for quality in ["dumb", "smart", "smartest"] {
            for speed in ["slow", "fast"] {
                for auth in [true, false] {
                    assert!(MODELS.contains(&model(quality, speed, auth)));
                }
            }
        }
    }

    #[test]
    fn completions_with_text_and_tool_calls_parse() {
        let answer = json!({ "choices": [{ "message": { "content": "Hi", "tool_calls": [
            { "id": "c1", "type": "function", "function": { "name": "search", "arguments": "{\"query\":\"x\"}" } }
        ] } }] });
        let completion = parse_completion(&answer).unwrap();
        assert_eq!(completion.text, "Hi");
        assert_eq!(
            completion.tool_calls[0],
            ToolCall { id: "c1".into(), name: "search".into(), arguments: "{\"query\":\"x\"}".into() }
        );
        assert_eq!(parse_completion(&json!({ "choices": [] })), None);
    }

    #[test]
    fn streamed_answers_relay_text_as_it_arrives_and_assemble_tool_calls() {
        let mut answer = StreamedAnswer::default();
        let mut pieces = Vec::new();
        let events = [
            r#"{"choices":[{"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"search","arguments":"{\"qu"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ery\":\"x\"}"}}]}}]}"#,
        ];
        let mut text: String = events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect();
        text.push_str("data: [DONE]\n\n");
        // Split mid-line, as a network would.
        let (first, second) = text.as_bytes().split_at(17);
        answer.feed(first, &mut |t| pieces.push(t.to_string())).unwrap();
        assert!(pieces.is_empty(), "nothing before a whole line");
        answer.feed(second, &mut |t| pieces.push(t.to_string())).unwrap();
        assert_eq!(pieces, ["Hel", "lo"]);
        let completion = answer.finish();
        assert_eq!(completion.text, "Hello");
        assert_eq!(
            completion.tool_calls,
            [ToolCall { id: "c1".into(), name: "search".into(), arguments: "{\"query\":\"x\"}".into() }]
        );
        let mut failed = StreamedAnswer::default();
        assert!(failed.feed(b"data: {\"error\":{\"message\":\"overloaded\"}}\n", &mut |_| {}).is_err());
    }
}
