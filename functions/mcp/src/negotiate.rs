//! Which protocol generation a request speaks (docs/api.md §8.2), and what the stateless one
//! requires before a request runs.
//!
//! Two generations share the endpoint. The handshake revisions (2024-11-05 to 2025-11-25) begin
//! with `initialize` and then name their version in the `MCP-Protocol-Version` header. The
//! stateless revision (2026-07-28) has no handshake: every request carries its version and the
//! client's capabilities in `params._meta`, the same version in `MCP-Protocol-Version`, and its
//! method (and, for `tools/call`, the tool) in `Mcp-Method` / `Mcp-Name`, so intermediaries can
//! route without reading the body.
//!
//! The key decision: a request is stateless when its `_meta` names a version, when its header
//! names 2026-07-28 or later (or anything this server does not know), or when it is
//! `server/discover`; everything else is the handshake generation, as before. The checks follow
//! the order in which the conformance suite tells them apart: malformed `_meta` (-32602),
//! header and `_meta` disagreeing (-32020), a version this server does not speak (-32022), then
//! the routing headers (-32020); each is HTTP 400.

use rmcp::model::{ErrorCode, ProtocolVersion};
use serde_json::{json, Value};

use shared::http::Request;

/// The handshake revisions this server speaks, oldest first.
pub const HANDSHAKE_VERSIONS: [ProtocolVersion; 4] = [
    ProtocolVersion::V_2024_11_05,
    ProtocolVersion::V_2025_03_26,
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
];

/// The stateless revisions this server speaks.
pub const STATELESS_VERSIONS: [ProtocolVersion; 1] = [ProtocolVersion::V_2026_07_28];

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The generation of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `initialize` first, then requests that stand on the handshake.
    Handshake,
    /// 2026-07-28: every request self-contained.
    Stateless,
}

/// A request refused before it runs: the HTTP status and the JSON-RPC error.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status (400 for every check here).
    pub status: u16,
    /// The JSON-RPC error object (`code`, `message`, `data`).
    pub error: Value,
}

fn refuse(code: ErrorCode, message: String, data: Option<Value>) -> Refusal {
    let mut error = json!({ "code": code.0, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    Refusal { status: 400, error }
}

/// The one value of header `name`, without surrounding whitespace; an error when it is sent
/// twice or is not text.
fn single_header<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>, String> {
    let mut values = req.headers().get_all(name).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(format!("the {name} header is sent more than once"));
    }
    value.to_str().map(|v| Some(v.trim())).map_err(|_| format!("the {name} header is not text"))
}

/// Classifies `message` (the request's JSON) and, for the stateless generation, checks its
/// metadata and headers.
pub fn generation(req: &Request, message: &Value) -> Result<Generation, Refusal> {
    let header = |name: &str| single_header(req, name).map_err(|m| refuse(ErrorCode::HEADER_MISMATCH, m, None));
    let header_version = header("mcp-protocol-version")?;
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    let params = message.get("params");
    let meta = params.and_then(|p| p.get("_meta")).and_then(Value::as_object);
    let meta_version = meta.and_then(|m| m.get(META_VERSION)).and_then(Value::as_str);
    let header_is_stateless = header_version.is_some_and(|v| {
        v >= ProtocolVersion::V_2026_07_28.as_str() || !HANDSHAKE_VERSIONS.iter().any(|k| k.as_str() == v)
    });
    if meta_version.is_none() && !header_is_stateless && method != "server/discover" {
        return Ok(Generation::Handshake);
    }

    let capabilities = meta.and_then(|m| m.get(META_CAPABILITIES)).filter(|c| c.is_object());
    let mut missing = Vec::new();
    if meta_version.is_none() {
        missing.push(META_VERSION);
    }
    if capabilities.is_none() {
        missing.push(META_CAPABILITIES);
    }
    if !missing.is_empty() {
        let message = format!("Invalid params: request _meta is missing required fields: {}", missing.join(", "));
        return Err(refuse(ErrorCode::INVALID_PARAMS, message, None));
    }
    let requested = meta_version.expect("checked above");
    match header_version {
        None => {
            let message = "Header mismatch: a request naming its protocol version in _meta needs the same \
                           version in MCP-Protocol-Version"
                .to_string();
            return Err(refuse(ErrorCode::HEADER_MISMATCH, message, None));
        }
        Some(version) if version != requested => {
            let message = format!(
                "Header mismatch: MCP-Protocol-Version ({version}) does not match the request's _meta protocol version ({requested})"
            );
            return Err(refuse(ErrorCode::HEADER_MISMATCH, message, None));
        }
        Some(_) => {}
    }
    if !STATELESS_VERSIONS.iter().any(|v| v.as_str() == requested) {
        let supported: Vec<&str> =
            STATELESS_VERSIONS.iter().chain(&HANDSHAKE_VERSIONS).map(ProtocolVersion::as_str).collect();
        let data = json!({ "requested": requested, "supported": STATELESS_VERSIONS.iter().map(ProtocolVersion::as_str).collect::<Vec<_>>() });
        let message =
            format!("Unsupported protocol version {requested:?}: this server speaks {}", supported.join(", "));
        return Err(refuse(ErrorCode::UNSUPPORTED_PROTOCOL_VERSION, message, Some(data)));
    }
    routing_headers(req, method, params).map_err(|m| refuse(ErrorCode::HEADER_MISMATCH, m, None))?;
    Ok(Generation::Stateless)
}

/// `Mcp-Method` must equal the body's method (case matters); `Mcp-Name` must equal the tool a
/// `tools/call` names (`=?base64?...?=` values decoded first).
fn routing_headers(req: &Request, method: &str, params: Option<&Value>) -> Result<(), String> {
    match single_header(req, "mcp-method")? {
        None => return Err("Header mismatch: the Mcp-Method header is required".into()),
        Some(value) if value != method => {
            return Err(format!("Header mismatch: Mcp-Method {value:?} does not match the body's method {method:?}"))
        }
        Some(_) => {}
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.and_then(|p| p.get("name")),
        "resources/read" => params.and_then(|p| p.get("uri")),
        _ => None,
    };
    let Some(expected) = named.and_then(Value::as_str) else { return Ok(()) };
    let Some(raw) = single_header(req, "mcp-name")? else {
        return Err(format!("Header mismatch: {method} needs the Mcp-Name header"));
    };
    let value = decode(raw).ok_or("Header mismatch: the Mcp-Name header is not valid Base64")?;
    if value != expected {
        return Err(format!("Header mismatch: Mcp-Name {value:?} does not match the body's {expected:?}"));
    }
    Ok(())
}

/// A header value as sent: literal, or Base64 inside `=?base64?` ... `?=`.
fn decode(raw: &str) -> Option<String> {
    use base64::Engine;
    match raw.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        None => Some(raw.to_string()),
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/api/internal/mcp");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Vec::new()).unwrap()
    }

    fn meta(version: &str) -> Value {
        json!({ "io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {} })
    }

    fn code(result: Result<Generation, Refusal>) -> i64 {
        result.expect_err("refused").error["code"].as_i64().unwrap()
    }

    #[test]
    fn handshake_requests_stay_as_they_were() {
        let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {} });
        assert_eq!(generation(&request(&[]), &init).unwrap(), Generation::Handshake);
        let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
        assert_eq!(
            generation(&request(&[("mcp-protocol-version", "2025-11-25")]), &list).unwrap(),
            Generation::Handshake
        );
    }

    #[test]
    fn stateless_requests_are_checked_in_the_specs_order() {
        let v = "2026-07-28";
        let call = |params: Value| json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params });
        let good = call(json!({ "name": "ask_stack_auth", "_meta": meta(v) }));
        let headers = [("mcp-protocol-version", v), ("mcp-method", "tools/call"), ("mcp-name", " ask_stack_auth ")];
        assert_eq!(generation(&request(&headers), &good).unwrap(), Generation::Stateless);
        let encoded = [
            ("mcp-protocol-version", v),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?YXNrX3N0YWNrX2F1dGg=?="),
        ];
        assert_eq!(generation(&request(&encoded), &good).unwrap(), Generation::Stateless);

        let no_meta = call(json!({ "name": "ask_stack_auth" }));
        assert_eq!(code(generation(&request(&headers), &no_meta)), -32602);
        assert_eq!(code(generation(&request(&headers[1..]), &good)), -32020, "no version header");
        let other = call(json!({ "name": "ask_stack_auth", "_meta": meta("v999.0.0") }));
        assert_eq!(code(generation(&request(&headers), &other)), -32020, "header and _meta disagree");
        let unknown =
            [("mcp-protocol-version", "v999.0.0"), ("mcp-method", "tools/call"), ("mcp-name", "ask_stack_auth")];
        let refused = generation(&request(&unknown), &other).expect_err("unknown version");
        assert_eq!(refused.error["code"], -32022);
        assert_eq!(refused.error["data"]["requested"], "v999.0.0");
        assert_eq!(code(generation(&request(&[headers[0], ("mcp-method", "TOOLS/CALL"), headers[2]]), &good)), -32020);
        assert_eq!(code(generation(&request(&[headers[0], headers[1], ("mcp-name", "other")]), &good)), -32020);
        assert_eq!(code(generation(&request(&headers[..2]), &good)), -32020, "no Mcp-Name");
    }
}
