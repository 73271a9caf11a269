//! The route protocol between the emails function and its senders (the companion's email
//! role): a sender claims what is ready to send, sends it over SMTP, and reports each result.
//! The function owns every state change of the outbox, in its own store; a sender holds no
//! state. Both routes take `Authorization: Bearer <STACK_COMPANION_SECRET>` (compared in
//! constant time, never logged) and fail closed without it.
//!
//! - `POST /api/v1/internal/email-sender/claim` with `{max?}` (rows, 1..=1000, default 100)
//!   → `{claim_id, claims: [{tenancy_id, email_id,
//!   email, server}]}`: each claim carries the rendered message, its resolved recipients and the
//!   tenancy's mail server (with its password: this route is the only way it travels).
//! - `POST /api/v1/internal/email-sender/report` with `{claim_id, results: [{tenancy_id,
//!   email_id, sent, error_type?, retryable?, message?}]}` → `{results: [{email_id, status}]}`,
//!   `status` being `sent`, `retried`, `failed` or `refused` (the claim no longer holds the
//!   row: it was reported, recovered as stuck, or claimed again; nothing changes).

use serde_json::{json, Value};

use shared::email::{
    claim_sends, record_send, record_sent, Outcome, QueueSettings, DEFAULT_CLAIM_ROWS, MAX_CLAIM_ROWS,
};
use shared::http::error::{ApiError, ApiResult};
use shared::http::validate::parse_body;
use shared::http::{header, json, Request, Response};
use shared::identity::crypto::{ct_eq, new_uuid};
use shared::store::ports::{SendFailure, SEND_FAILURE_CLASSES};
use shared::Context;

/// The most results one report may carry.
const MAX_RESULTS: usize = 1_000;

/// Refuses a caller without the companion secret.
fn authorize(ctx: &Context, req: &Request) -> ApiResult<()> {
    let Some(companion) = &ctx.config.companion else {
        return Err(ApiError::status(503, "The email sender routes are not configured (STACK_COMPANION_SECRET)."));
    };
    let expected = format!("Bearer {}", companion.secret);
    match header(req, "authorization") {
        Some(given) if ct_eq(given, &expected) => Ok(()),
        _ => Err(ApiError::status(401, "Unauthorized")),
    }
}

/// `POST /internal/email-sender/claim`.
pub async fn claim(ctx: &Context, req: &Request) -> ApiResult<Response> {
    authorize(ctx, req)?;
    let body = parse_body(req)?.unwrap_or(Value::Null);
    let max_rows = match &body["max"] {
        Value::Null => DEFAULT_CLAIM_ROWS,
        max => max.as_i64().filter(|m| (1..=MAX_CLAIM_ROWS).contains(m)).ok_or_else(|| {
            ApiError::status(400, format!("Invalid claim: max must be an integer from 1 to {MAX_CLAIM_ROWS}"))
        })?,
    };
    let claim_id = new_uuid(ctx.random.as_ref());
    let claims = claim_sends(ctx, &QueueSettings::from_config(&ctx.config), &claim_id, max_rows).await?;
    Ok(json(&json!({ "claim_id": claim_id, "claims": claims })))
}

/// `POST /internal/email-sender/report`.
pub async fn report(ctx: &Context, req: &Request) -> ApiResult<Response> {
    authorize(ctx, req)?;
    let body = parse_body(req)?.unwrap_or(Value::Null);
    let bad = |what: &str| ApiError::status(400, format!("Invalid report: {what}"));
    let claim_id = body["claim_id"].as_str().ok_or_else(|| bad("claim_id must be a string"))?;
    let results = body["results"].as_array().ok_or_else(|| bad("results must be an array"))?;
    if results.len() > MAX_RESULTS {
        return Err(bad(&format!("at most {MAX_RESULTS} results")));
    }
    // Every result is checked before any is recorded: a bad report changes nothing.
    let mut checked = Vec::with_capacity(results.len());
    for result in results {
        let text = |name: &str| result[name].as_str().ok_or_else(|| bad(&format!("results[].{name} must be a string")));
        let (tenancy_id, email_id) = (text("tenancy_id")?, text("email_id")?);
        let sent = match result["sent"].as_bool() {
            Some(true) => Ok(()),
            Some(false) => Err(failure(result).ok_or_else(|| bad("a failed send needs a known error_type"))?),
            None => return Err(bad("results[].sent must be a boolean")),
        };
        checked.push((tenancy_id, email_id, sent));
    }
    // The accepted sends in one batch, then each failure (a failure reads its attempts first).
    let accepted: Vec<(&str, &str)> = checked
        .iter()
        .filter(|(_, _, sent)| sent.is_ok())
        .map(|(tenancy_id, email_id, _)| (*tenancy_id, *email_id))
        .collect();
    let mut held = record_sent(ctx, &accepted, claim_id).await?.into_iter();
    let mut statuses: Vec<Value> = Vec::with_capacity(checked.len());
    for (tenancy_id, email_id, sent) in checked {
        let status = match sent {
            Ok(()) if held.next() == Some(true) => "sent",
            Ok(()) => "refused",
            Err(failure) => match record_send(ctx, tenancy_id, email_id, claim_id, Err(failure)).await? {
                Some(Outcome::Sent) => "sent",
                Some(Outcome::Retried) => "retried",
                Some(Outcome::Failed) => "failed",
                None => "refused",
            },
        };
        statuses.push(json!({ "email_id": email_id, "status": status }));
    }
    Ok(json(&json!({ "results": statuses })))
}

/// A reported failure, when its class is one the function knows.
fn failure(result: &Value) -> Option<SendFailure> {
    let class = result["error_type"].as_str()?;
    let error_type = SEND_FAILURE_CLASSES.iter().find(|known| **known == class)?;
    Some(SendFailure {
        error_type,
        retryable: result["retryable"].as_bool().unwrap_or(false),
        message: result["message"].as_str().unwrap_or_default().chars().take(2_000).collect(),
    })
}
