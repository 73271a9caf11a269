//! Request validation with upstream's SCHEMA_ERROR text.
//!
//! Upstream validates with yup and reports every failure as one line of
//! `Request validation failed on <METHOD> <path>:` followed by `  - <message>` lines. This
//! module reproduces those messages for the field kinds our endpoints take. It is a small
//! checker over `serde_json::Value` rather than a schema crate because the exact message text is
//! part of the contract and no crate produces yup's wording.

use serde_json::{Map, Value};

use crate::http::error::{ApiError, ApiResult, KnownError};
use crate::http::{header, Request};

/// Parses a request body per its content type, as upstream's smart request does: JSON for
/// `application/json`, form fields for `application/x-www-form-urlencoded`, nothing without a
/// content type. Bad JSON or bad UTF-8 is a BODY_PARSING_ERROR.
pub fn parse_body(req: &Request) -> ApiResult<Option<Value>> {
    let content_type = header(req, "content-type")
        .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body = req.body();
    match content_type.as_str() {
        "" => Ok(None),
        "application/json" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| KnownError::body_parsing_error("Request body cannot be parsed as UTF-8"))?;
            if text.trim().is_empty() {
                return Ok(None);
            }
            serde_json::from_str(text)
                .map(Some)
                .map_err(|_| KnownError::body_parsing_error("Invalid JSON in request body").into())
        }
        "application/x-www-form-urlencoded" => {
            let map: Map<String, Value> =
                url::form_urlencoded::parse(body).into_owned().map(|(k, v)| (k, Value::String(v))).collect();
            Ok(Some(Value::Object(map)))
        }
        other => Err(KnownError::body_parsing_error(&format!("Unsupported content type {other:?}")).into()),
    }
}

/// Collects validation failures for one request, then reports them together.
pub struct Validator {
    method: String,
    path: String,
    errors: Vec<String>,
}

impl Validator {
    /// A validator for `req` (its method and path appear in messages).
    pub fn new(req: &Request) -> Validator {
        Validator { method: req.method().to_string(), path: req.uri().path().to_string(), errors: Vec::new() }
    }

    /// Records a failure in yup's wording.
    pub fn fail(&mut self, message: String) {
        self.errors.push(message);
    }

    /// The body as an object with only `known` keys. Reports `body must be defined` when
    /// absent and unknown properties when present.
    pub fn body_object<'a>(&mut self, body: &'a Option<Value>, known: &[&str]) -> Option<&'a Map<String, Value>> {
        match body {
            None | Some(Value::Null) => {
                self.fail("body must be defined".into());
                None
            }
            Some(Value::Object(map)) => {
                let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
                if !unknown.is_empty() {
                    self.fail(format!("body contains unknown properties: {}", unknown.join(", ")));
                }
                Some(map)
            }
            Some(other) => {
                self.fail(format!("body must be a `object` type, but the final value was: `{}`.", render(other)));
                None
            }
        }
    }

    /// A string field. `required` reports `<path> must be defined` when missing or null.
    pub fn string(
        &mut self,
        obj: Option<&Map<String, Value>>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<String> {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => {
                if required && obj.is_some() {
                    self.fail(format!("{path} must be defined"));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.type_error(path, "string", other);
                None
            }
        }
    }

    /// A string field that must be a UUID.
    pub fn uuid(&mut self, obj: Option<&Map<String, Value>>, key: &str, path: &str, required: bool) -> Option<String> {
        let value = self.string(obj, key, path, required)?;
        if crate::identity::crypto::is_uuid(&value) {
            Some(value.to_ascii_lowercase())
        } else {
            self.fail(format!("{path} must be a valid UUID"));
            None
        }
    }

    /// An optional integer field within `[min, max]`.
    pub fn integer(
        &mut self,
        obj: Option<&Map<String, Value>>,
        key: &str,
        path: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => None,
            Some(v @ Value::Number(n)) => match n.as_i64() {
                Some(i) if i < min => {
                    self.fail(format!("{path} must be greater than or equal to {min}"));
                    None
                }
                Some(i) if i > max => {
                    self.fail(format!("{path} must be less than or equal to {max}"));
                    None
                }
                Some(i) => Some(i),
                None => {
                    // A float or an integer beyond i64: report the bound or the integer rule.
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f > max as f64 {
                        self.fail(format!("{path} must be less than or equal to {max}"));
                    } else if f < min as f64 {
                        self.fail(format!("{path} must be greater than or equal to {min}"));
                    } else {
                        self.fail(format!("{path} must be an integer, but the final value was: `{}`.", render(v)));
                    }
                    None
                }
            },
            Some(other) => {
                self.type_error(path, "number", other);
                None
            }
        }
    }

    /// An optional boolean field.
    pub fn boolean(&mut self, obj: Option<&Map<String, Value>>, key: &str, path: &str) -> Option<bool> {
        match obj.and_then(|o| o.get(key)) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.type_error(path, "boolean", other);
                None
            }
        }
    }

    fn type_error(&mut self, path: &str, kind: &str, value: &Value) {
        self.fail(format!("{path} must be a `{kind}` type, but the final value was: `{}`.", render(value)));
    }

    /// The SCHEMA_ERROR for a single failure, for checks outside a body (headers, query).
    pub fn single(req: &Request, message: &str) -> ApiError {
        let mut v = Validator::new(req);
        v.fail(message.to_string());
        v.finish().expect_err("one failure was recorded")
    }

    /// Ok when nothing failed; otherwise the SCHEMA_ERROR with every failure.
    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let lines: String = self.errors.iter().map(|e| format!("\n  - {e}")).collect();
        Err(ApiError::Known(KnownError::schema_error(format!(
            "Request validation failed on {} {}:{lines}",
            self.method, self.path
        ))))
    }
}

fn render(value: &Value) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> Request {
        http::Request::builder().method("POST").uri("/api/v1/auth/sessions").body(Vec::new()).unwrap()
    }

    #[test]
    fn reports_every_failure_in_yup_wording() {
        let body = Some(json!({ "expires_in_millis": 31708800001i64, "is_impersonation": "yes", "extra": 1 }));
        let mut v = Validator::new(&request());
        let obj = v.body_object(&body, &["user_id", "expires_in_millis", "is_impersonation"]);
        v.uuid(obj, "user_id", "body.user_id", true);
        v.integer(obj, "expires_in_millis", "body.expires_in_millis", 0, 31708800000);
        v.boolean(obj, "is_impersonation", "body.is_impersonation");
        let ApiError::Known(err) = v.finish().unwrap_err() else { panic!() };
        assert_eq!(err.code, "SCHEMA_ERROR");
        assert_eq!(
            err.message,
            "Request validation failed on POST /api/v1/auth/sessions:\n  - body contains unknown properties: extra\n  - body.user_id must be defined\n  - body.expires_in_millis must be less than or equal to 31708800000\n  - body.is_impersonation must be a `boolean` type, but the final value was: `\"yes\"`."
        );
        assert_eq!(err.details.unwrap()["message"], json!(err.message));
    }

    #[test]
    fn parses_json_and_rejects_malformed_json() {
        let mut req = request();
        req.headers_mut().insert("content-type", "application/json".parse().unwrap());
        *req.body_mut() = b"{\"a\":1}".to_vec();
        assert_eq!(parse_body(&req).unwrap(), Some(json!({"a": 1})));
        *req.body_mut() = b"{\"a\":".to_vec();
        let ApiError::Known(err) = parse_body(&req).unwrap_err() else { panic!() };
        assert_eq!(err.code, "BODY_PARSING_ERROR");
    }
}
