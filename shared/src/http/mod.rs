//! HTTP types shared by every function and runtime, and small helpers to build responses.
//!
//! Requests and responses are plain `http` crate values with the body fully buffered: the
//! endpoints we serve take and return small JSON bodies, and every runtime (hyper, workerd,
//! wasi:http) can hand us a buffered body cheaply. The one exception, a body written while it
//! is sent (a model's streamed answer), rides along as an extension: see [`stream`].

pub mod error;
pub mod location;
pub mod stream;
pub mod validate;

use serde::Serialize;

/// A request with its body buffered.
pub type Request = http::Request<Vec<u8>>;
/// A response with its body buffered.
pub type Response = http::Response<Vec<u8>>;

/// The content type of JSON answers.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The content type of text answers.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A 200 response with `value` serialised as JSON.
pub fn json<T: Serialize>(value: &T) -> Response {
    json_with_status(200, value)
}

/// A response with `status` and `value` serialised as JSON.
pub fn json_with_status<T: Serialize>(status: u16, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("serialising a response value cannot fail");
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, JSON_CONTENT_TYPE)
        .body(body)
        .expect("static response parts are valid")
}

/// A plain-text response (upstream's bare `StatusError`).
pub fn text(status: u16, message: &str) -> Response {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, TEXT_CONTENT_TYPE)
        .body(message.as_bytes().to_vec())
        .expect("static response parts are valid")
}

/// The `{"success": true}` body of endpoints whose upstream body type is "success".
pub fn success() -> Response {
    json(&serde_json::json!({ "success": true }))
}

/// A header's value as text; `None` when absent or not valid UTF-8. Names are case-insensitive.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The decoded query-string pairs of a request, in order.
pub fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri().query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The first value of query parameter `name`.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    query_pairs(req).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The one request-body cap, applied by every runtime adapter (native host, Workers, Spin)
/// before a handler runs or anything parses the body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// AI query bodies carry images (up to three of 3 MB each, base64-encoded): their paths alone
/// get a larger cap.
pub const MAX_AI_QUERY_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The body cap for a request to `path`.
pub fn max_body_bytes(path: &str) -> usize {
    if canonicalize(path).starts_with("/api/v1/ai/query/") {
        MAX_AI_QUERY_BODY_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// The answer to a body over its cap: the same 413 on every runtime.
pub fn body_too_large(limit: usize) -> Response {
    text(413, &format!("Request body too large (max {limit} bytes)"))
}

/// The request path with the `/api/latest` alias mapped onto `/api/v1`, as upstream's router does.
pub fn canonical_path(req: &Request) -> String {
    canonicalize(req.uri().path())
}

/// [`canonical_path`] for a bare path.
pub fn canonicalize(path: &str) -> String {
    match path.strip_prefix("/api/latest") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/api/v1{rest}"),
        _ => path.to_string(),
    }
}

/// One page of a keyset-paginated list: `rows` were fetched `limit + 1` to learn whether more
/// exist. Returns the first `limit` rows as items and, when more exist, the next cursor (the
/// last item's `id`).
pub fn page_of(
    rows: &[crate::store::ports::SqlRow],
    limit: usize,
    item: fn(&crate::store::ports::SqlRow) -> error::ApiResult<serde_json::Value>,
) -> error::ApiResult<(Vec<serde_json::Value>, Option<serde_json::Value>)> {
    let items = rows.iter().take(limit).map(item).collect::<error::ApiResult<Vec<_>>>()?;
    let next_cursor = if rows.len() > limit { items.last().map(|i| i["id"].clone()) } else { None };
    Ok((items, next_cursor))
}
