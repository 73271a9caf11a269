//! The AI proxy (contract part 2, §4.2): `/api/v1/integrations/ai-proxy/v1/{...}` forwards to
//! the model API (`STACK_AI_BASE_URL`, which ends in `/v1`) with Stack's key, so SDKs and the
//! CLI can use models without their own. Unlike upstream, callers must authenticate with a
//! project, and a model outside the allow-list is refused with 400 instead of being replaced.

use serde_json::{Map, Value};

use shared::auth::{authenticate, AuthRule, ANY_ACCESS};
use shared::error::{ApiError, ApiResult};
use shared::http::{Request, Response};
use shared::Context;

use crate::llm::MODELS;

/// The model a request without one gets (upstream's default).
pub const DEFAULT_MODEL: &str = "anthropic/claude-sonnet-4.6";
const MAX_USER_ID_CHARS: usize = 128;

/// Whether the proxy forwards requests for `model`.
pub fn model_allowed(model: &str) -> bool {
    model == DEFAULT_MODEL || MODELS.contains(&model)
}

/// The body the model API gets: a JSON object with an allowed model and a bounded
/// `metadata.user_id`, then [`preprocess`].
pub fn sanitize(body: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "Request body must be valid JSON")?;
    let value: Value = serde_json::from_str(text).map_err(|_| "Request body must be valid JSON")?;
    let Value::Object(mut body) = value else { return Err("Request body must be a JSON object".into()) };
    match body.get("model") {
        None | Some(Value::Null) => {
            body.insert("model".into(), Value::String(DEFAULT_MODEL.into()));
        }
        Some(Value::String(model)) if model_allowed(model) => {}
        Some(other) => {
            return Err(format!(
                "Model {other} is not available through the AI proxy. Use one of: {DEFAULT_MODEL}, {}",
                MODELS.join(", ")
            ))
        }
    }
    if let Some(Value::String(user_id)) = body.get_mut("metadata").and_then(|m| m.get_mut("user_id")) {
        if user_id.chars().count() > MAX_USER_ID_CHARS {
            *user_id = user_id.chars().take(MAX_USER_ID_CHARS).collect();
        }
    }
    Ok(preprocess(body))
}

/// The proxy's preprocessing hook: the place for deployment-specific rewrites of the body
/// (upstream keeps its own in a private module). Identity here.
pub fn preprocess(body: Map<String, Value>) -> Map<String, Value> {
    body
}

/// Forwards one request; `path` is what follows `/ai-proxy/`.
pub async fn forward(ctx: &Context, req: &Request, path: &str) -> ApiResult<Response> {
    authenticate(ctx, req, AuthRule::allow(ANY_ACCESS)).await?;
    let Some(rest) = path.strip_prefix("v1/") else {
        return Err(ApiError::status(404, "Not found: the AI proxy serves /v1/..."));
    };
    let ai = &ctx.config.ai;
    let base = ai.base_url.as_deref().ok_or_else(|| ApiError::status(503, "The AI model is not configured."))?;
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut upstream = http::Request::builder()
        .method(req.method().clone())
        .uri(format!("{base}/{rest}{query}"))
        .header("anthropic-version", "2023-06-01");
    if let Some(key) = &ai.api_key {
        upstream = upstream.header("authorization", format!("Bearer {key}"));
    }
    let body = if req.method() == http::Method::GET {
        Vec::new()
    } else {
        let content_type = shared::http::header(req, "content-type").unwrap_or("application/json");
        upstream = upstream.header("content-type", content_type);
        let body = sanitize(req.body()).map_err(|message| ApiError::status(400, message))?;
        Value::Object(body).to_string().into_bytes()
    };
    let upstream = upstream.body(body).map_err(|e| ApiError::status(400, format!("Invalid proxy path: {e}")))?;
    let answer = ctx
        .http
        .send(upstream)
        .await
        .map_err(|e| ApiError::status(502, format!("The AI model could not be reached: {e}")))?;
    let content_type =
        answer.headers().get("content-type").cloned().unwrap_or(http::HeaderValue::from_static("application/json"));
    let (parts, body) = answer.into_parts();
    let mut response = http::Response::new(body);
    *response.status_mut() = parts.status;
    response.headers_mut().insert("content-type", content_type);
    response.headers_mut().insert("cache-control", http::HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_checked_and_bounded() {
        assert_eq!(sanitize(b"nope").unwrap_err(), "Request body must be valid JSON");
        assert_eq!(sanitize(b"[1]").unwrap_err(), "Request body must be a JSON object");
        assert_eq!(sanitize(b"null").unwrap_err(), "Request body must be a JSON object");
        assert!(sanitize(br#"{"model":"openai/gpt-5"}"#)
            .unwrap_err()
            .starts_with("Model \"openai/gpt-5\" is not available"));
        assert_eq!(sanitize(b"{}").unwrap()["model"], DEFAULT_MODEL);
        let long = json!({ "model": "x-ai/grok-4.1-fast", "metadata": { "user_id": "é".repeat(200) } });
        let body = sanitize(long.to_string().as_bytes()).unwrap();
        assert_eq!(body["metadata"]["user_id"].as_str().unwrap().chars().count(), 128);
        assert_eq!(body["model"], "x-ai/grok-4.1-fast");
    }
}
