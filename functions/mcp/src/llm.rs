//! The model behind the AI endpoints: upstream's model table (docs/api.md §9.1) and one
//! call to an OpenAI-compatible chat-completions API (`STACK_AI_BASE_URL`, OpenRouter model
//! ids) over the outbound-HTTP port, so it runs on every runtime.

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

/// One chat-completions call. `messages` are OpenAI-shaped; `tools` OpenAI function tools.
pub async fn complete(
    ctx: &Context,
    model: &str,
    authenticated: bool,
    messages: &[Value],
    tools: &[Value],
) -> Result<Completion, LlmError> {
    let ai = &ctx.config.ai;
    let base = ai.base_url.as_deref().ok_or(LlmError::NotConfigured)?;
    let key =
        if authenticated { ai.authenticated_api_key.as_ref().or(ai.api_key.as_ref()) } else { ai.api_key.as_ref() };
    let mut body = json!({ "model": model, "messages": messages });
    if !tools.is_empty() {
        body["tools"] = Value::Array(tools.to_vec());
    }
    // A model's answer may take minutes; the HTTP port's 10 s default would cut it.
    let mut request = http::Request::post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .extension(shared::store::ports::RequestTimeout(MODEL_CALL_TIMEOUT));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let request = request.body(body.to_string().into_bytes()).map_err(|e| LlmError::Unavailable(e.to_string()))?;
    let response = ctx.http.send(request).await.map_err(|e| LlmError::Unavailable(e.to_string()))?;
    let status = response.status().as_u16();
    let text = String::from_utf8_lossy(response.body()).into_owned();
    if !(200..300).contains(&status) {
        return Err(LlmError::Status(status, text));
    }
    let answer: Value = serde_json::from_str(&text).map_err(|e| LlmError::Unavailable(format!("not JSON: {e}")))?;
    parse_completion(&answer).ok_or_else(|| LlmError::Unavailable("no choices[0].message in the answer".into()))
}

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
}
