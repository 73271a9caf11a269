//! What makes abuse of the assistant costly (docs/api.md §9.4): a budget of runs per caller
//! per minute, and caps on what one run may spend (model steps) and keep (the call log).
//!
//! The key decision: the budget is a fixed one-minute window of shared's one rate limiter
//! (counted in the primary store, so every instance of every runtime shares one count, and
//! admitted or refused atomically). A caller is its project
//! when it authenticated, else its client address; a request whose address the runtime does
//! not know shares one bucket with every other such request, which fails toward refusing.

use shared::http::{Request, Response};
use shared::identity::auth::RequestAuth;
use shared::store::rate_limit::{self, Budget};
use shared::Context;

/// The most model steps a run of a caller without project credentials may take (the
/// `ask_stack_auth` tool's callers among them); authenticated runs keep upstream's limits.
pub const ANONYMOUS_MAX_STEPS: usize = 10;

/// The most characters a call-log text field keeps (question, reason, prompt, answer).
pub const MAX_LOGGED_TEXT_CHARS: usize = 16 * 1024;
/// The most characters a call log's inner tool calls keep.
pub const MAX_LOGGED_TOOL_CALLS_CHARS: usize = 64 * 1024;
/// The most rows the call log keeps: older ones are deleted as new ones are written.
pub const MAX_LOG_ROWS: i64 = 100_000;

const WINDOW_MS: i64 = 60_000;

/// Who a run is counted against.
pub fn caller(req: &Request, auth: Option<&RequestAuth>) -> String {
    if let Some(auth) = auth {
        return format!("project:{}", auth.tenancy.project_id);
    }
    let address = req.extensions().get::<shared::http::location::EndUserLocation>().and_then(|l| l.ip.clone());
    match address {
        Some(ip) => format!("address:{ip}"),
        None => "address:unknown".to_string(),
    }
}

/// Why a run was not started.
#[derive(Debug, PartialEq)]
pub enum NotAdmitted {
    /// The caller's budget per minute (`limit`) is spent for `retry_after_s` more seconds.
    BudgetSpent { limit: u32, retry_after_s: i64 },
    /// The store could not count the run, so it is not started (fail closed).
    Uncounted(String),
}

impl NotAdmitted {
    /// The message a caller reads.
    pub fn message(&self) -> String {
        match self {
            NotAdmitted::BudgetSpent { limit, retry_after_s } => format!(
                "Too many AI requests: at most {limit} per minute for each caller. Try again in {retry_after_s} s."
            ),
            NotAdmitted::Uncounted(_) => "The AI rate limit could not be checked; try again later.".to_string(),
        }
    }

    /// A 429 answer with `retry-after`, or 503 when the run could not be counted.
    pub fn response(&self) -> Response {
        match self {
            NotAdmitted::BudgetSpent { retry_after_s, .. } => {
                let mut response = shared::http::text(429, &self.message());
                response.headers_mut().insert(http::header::RETRY_AFTER, (*retry_after_s).into());
                response
            }
            NotAdmitted::Uncounted(why) => {
                tracing::warn!(error = %why, "an AI run could not be counted against its caller's budget");
                shared::http::text(503, &self.message())
            }
        }
    }
}

/// Counts one run against `caller`'s budget.
pub async fn admit(ctx: &Context, caller: &str) -> Result<(), NotAdmitted> {
    let limit = ctx.config.ai.runs_per_minute;
    let budget = Budget { limit: i64::from(limit), window_ms: WINDOW_MS };
    match rate_limit::count(ctx.store.as_ref(), ctx.now(), &format!("ai-runs:{caller}"), budget).await {
        Ok(None) => Ok(()),
        Ok(Some(retry_after_s)) => Err(NotAdmitted::BudgetSpent { limit, retry_after_s }),
        Err(e) => Err(NotAdmitted::Uncounted(e.to_string())),
    }
}

/// `text` cut to at most `max` characters.
pub fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_text_keeps_whole_characters() {
        assert_eq!(capped("héllo", 2), "hé");
        assert_eq!(capped("hi", 5), "hi");
    }

    #[test]
    fn the_refusal_says_the_limit_and_when_to_retry() {
        let refused = NotAdmitted::BudgetSpent { limit: 3, retry_after_s: 42 };
        let response = refused.response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "42");
        assert_eq!(
            String::from_utf8_lossy(response.body()),
            "Too many AI requests: at most 3 per minute for each caller. Try again in 42 s."
        );
    }
}
