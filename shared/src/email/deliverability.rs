//! The deliverability check of emails to the shared server: Emailable's verify API. An answer
//! that cannot be read, or none, lets the email go: the check may never lose mail.

use serde_json::{json, Value};

use crate::email::server::Emailable;
use crate::Context;

/// The first address Emailable calls undeliverable, as a skip (reason, details). An answer
/// that cannot be read, or no answer, lets the email go: the check may not lose mail.
pub async fn undeliverable(ctx: &Context, emailable: &Emailable, to: &[String]) -> Option<(&'static str, Value)> {
    for email in to {
        let mut url = match url::Url::parse(&format!("{}/verify", emailable.api_url.trim_end_matches('/'))) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "the Emailable URL is not valid; deliverability not checked");
                return None;
            }
        };
        url.query_pairs_mut().append_pair("email", email).append_pair("api_key", &emailable.api_key);
        let request = http::Request::get(url.as_str()).body(Vec::new()).expect("a valid request");
        let answer = match ctx.http.send(request).await {
            Ok(response) if response.status() == 200 => serde_json::from_slice::<Value>(response.body()).ok(),
            Ok(response) => {
                tracing::warn!(status = response.status().as_u16(), "Emailable refused a check; sending anyway");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "Emailable could not be reached; sending anyway");
                None
            }
        };
        if let Some(answer) = answer.filter(|a| a["state"] == "undeliverable") {
            return Some(("LIKELY_NOT_DELIVERABLE", json!({ "emailableResponse": answer, "email": email })));
        }
    }
    None
}
