//! The AI proxy (docs/api.md §9.2): `/api/v1/integrations/ai-proxy/v1/{...}` forwards to
//! the model API (`STACK_AI_BASE_URL`, which ends in `/v1`) with Stack's key, so SDKs and the
//! CLI can use models without their own. Unlike upstream, callers must authenticate with a
//! project's server or admin access (the platform's key is worth a secret), only the model API's
//! chat, messages and models paths are forwarded (with their methods), and a model outside the
//! allow-list is refused with 400 instead of being replaced.

use serde_json::{Map, Value};

use shared::http::error::{ApiError, ApiResult};
use shared::http::{Request, Response};
use shared::identity::auth::{authenticate, AuthRule, SERVER_OR_ADMIN};
use shared::Context;

use crate::llm::MODELS;

/// The model a request without one gets (upstream's default).
pub const DEFAULT_MODEL: &str = "anthropic/claude-sonnet-4.6";
const MAX_USER_ID_CHARS: usize = 128;

/// The model API paths the proxy forwards (after `v1/`), each with its one method.
const PATHS: &[(&str, http::Method)] = &[
    ("chat/completions", http::Method::POST),
    ("messages", http::Method::POST),
    ("messages/count_tokens", http::Method::POST),
    ("models", http::Method::GET),
];

/// The allow-listed path `path` (what follows `/ai-proxy/`) names, or why it is refused.
/// Dot segments, encoded characters and empty segments are refused before matching, so no
/// spelling reaches anything but the listed paths.
pub fn allowed_path(path: &str, method: &http::Method) -> Result<&'static str, ApiError> {
    if path.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") || path.contains('%') {
        return Err(ApiError::status(400, "Invalid AI proxy path: no empty, dot or encoded segments."));
    }
    let rest = path.strip_prefix("v1/").unwrap_or("");
    match PATHS.iter().find(|(p, _)| *p == rest) {
        Some((p, m)) if m == method => Ok(p),
        Some(_) => Err(ApiError::status(405, "Method not allowed")),
        None => Err(ApiError::status(
            404,
            "Not found: the AI proxy serves /v1/chat/completions, /v1/messages, /v1/messages/count_tokens and /v1/models",
        )),
    }
}

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
    authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let rest = allowed_path(path, req.method())?;
    let ai = &ctx.config.ai;
    let base = ai.base_url.as_deref().ok_or_else(|| ApiError::status(503, "The AI model is not configured."))?;
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut upstream = http::Request::builder()
        .method(req.method().clone())
        .uri(format!("{base}/{rest}{query}"))
        .header("anthropic-version", "2023-06-01")
        .extension(shared::store::ports::RequestTimeout(std::time::Duration::from_secs(300)));
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
    fn only_listed_paths_with_their_methods_are_forwarded() {
        let post = http::Method::POST;
        assert_eq!(allowed_path("v1/chat/completions", &post).unwrap(), "chat/completions");
        assert_eq!(allowed_path("v1/models", &http::Method::GET).unwrap(), "models");
        for (path, status) in [
            ("v1/../v2/keys", 400),
            ("v1/%2e%2e/keys", 400),
            ("v1/%2E%2e/keys", 400),
            ("v1//chat/completions", 400),
            ("v1/./messages", 400),
            ("v1/chat/completions/", 400),
            ("v1/keys", 404),
            ("v1/files", 404),
            ("v2/messages", 404),
            ("v1/models", 405),
        ] {
            let refused = allowed_path(path, &post).unwrap_err();
            assert!(matches!(refused, ApiError::Status { status: s, .. } if s == status), "{path}: {refused:?}");
        }
    }

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
