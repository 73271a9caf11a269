//! The metrics computed from this function's own store besides users (docs/api.md §7.3): the
//! email outbox (`email_overview`) and session replays (`analytics_overview`'s replay fields).
//! Each is a few aggregate queries over one tenancy's rows; nothing reads a whole table.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use shared::analytics::metrics::{date, Window};
use shared::email::{simple_status, STATUS_SQL};
use shared::http::error::ApiResult;
use shared::identity::tenancy::Tenancy;
use shared::store::ports::SqlValue;
use shared::Context;

/// How many of the newest emails `recent_emails` lists.
const RECENT_EMAILS: i64 = 100;

/// `email_overview`, as upstream computes it from its outbox.
pub async fn email_overview(ctx: &Context, tenancy: &Tenancy, window: &Window) -> ApiResult<Value> {
    let tenancy_id = SqlValue::from(tenancy.id.as_str());
    let by_status = ctx
        .store
        .query(
            &format!(
                "SELECT status, count(*) AS n FROM (SELECT {STATUS_SQL} AS status FROM email_outbox \
                 WHERE tenancy_id = ?) GROUP BY status"
            ),
            std::slice::from_ref(&tenancy_id),
        )
        .await?;
    // Keys only for the simple statuses that occur, as upstream.
    let mut simple: BTreeMap<&str, i64> = BTreeMap::new();
    for row in &by_status {
        let key = match simple_status(&row.text("status")?) {
            "OK" => "ok",
            "ERROR" => "error",
            _ => "in-progress",
        };
        *simple.entry(key).or_default() += row.int("n")?;
    }
    let total: i64 = simple.values().sum();

    let daily = ctx
        .store
        .query(
            &format!(
                "SELECT day, status, count(*) AS n FROM (SELECT created_at / 86400000 AS day, {STATUS_SQL} AS status \
                 FROM email_outbox WHERE tenancy_id = ? AND created_at >= ? AND created_at < ?) GROUP BY day, status"
            ),
            &[tenancy_id.clone(), window.since_ms.into(), window.until_ms.into()],
        )
        .await?;
    let mut per_day: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for row in &daily {
        let slot = match simple_status(&row.text("status")?) {
            "OK" => 0,
            "ERROR" => 1,
            _ => 2,
        };
        per_day.entry(date(row.int("day")? * 86_400_000)).or_default()[slot] += row.int("n")?;
    }
    let counts = |day: &str| per_day.get(day).copied().unwrap_or_default();
    let daily_emails = window.series(|day| counts(day).iter().sum());
    let daily_emails_by_status: Vec<Value> = window
        .days()
        .iter()
        .map(|day| {
            let [ok, error, in_progress] = counts(day);
            json!({ "date": day, "ok": ok, "error": error, "in_progress": in_progress })
        })
        .collect();

    let sent = ctx
        .store
        .query(
            "SELECT count(*) AS n FROM email_outbox WHERE tenancy_id = ? AND finished_sending_at IS NOT NULL",
            std::slice::from_ref(&tenancy_id),
        )
        .await?;
    let emails_sent = sent.first().map_or(Ok(0), |r| r.int("n"))?;
    let recent = ctx
        .store
        .query(
            &format!(
                "SELECT id, {STATUS_SQL} AS status, rendered_subject, created_at FROM email_outbox WHERE tenancy_id = ? \
                 ORDER BY created_at DESC, id DESC LIMIT {RECENT_EMAILS}"
            ),
            std::slice::from_ref(&tenancy_id),
        )
        .await?;
    let recent_emails = recent
        .iter()
        .map(|row| {
            let subject = row.opt_text("rendered_subject")?.filter(|s| !s.is_empty());
            Ok(json!({
                "id": row.text("id")?,
                "status": row.text("status")?,
                "subject": subject.unwrap_or_else(|| "(no subject)".into()),
                "created_at_millis": row.int("created_at")?,
            }))
        })
        .collect::<Result<Vec<Value>, shared::store::ports::StoreError>>()?;
    // No delivery events are recorded (upstream's worker never records them either), so
    // delivered and bounced stay 0, and so do their rates.
    let error = simple.get("error").copied().unwrap_or(0);
    let in_progress = simple.get("in-progress").copied().unwrap_or(0);
    Ok(json!({
        "emails_by_status": simple,
        "total_emails": total,
        "daily_emails": daily_emails,
        "daily_emails_by_status": daily_emails_by_status,
        "emails_sent": emails_sent,
        "recent_emails": recent_emails,
        "deliverability_status": { "delivered": 0, "bounced": 0, "error": error, "in_progress": in_progress },
        "deliverability_rate": 0,
        "bounce_rate": 0,
        "click_rate": 0,
    }))
}

/// `total_replays`, `recent_replays` (started in the window) and `avg_session_seconds` (the
/// mean length of the recent ones, one decimal).
pub async fn replay_fields(ctx: &Context, tenancy: &Tenancy, window: &Window) -> ApiResult<(i64, i64, f64)> {
    let rows = ctx
        .store
        .query(
            "SELECT count(*) AS total, coalesce(sum(CASE WHEN started_at >= ?2 THEN 1 ELSE 0 END), 0) AS recent, \
             coalesce(sum(CASE WHEN started_at >= ?2 THEN max(0, last_event_at - started_at) ELSE 0 END), 0) AS recent_ms \
             FROM session_replays WHERE tenancy_id = ?1",
            &[tenancy.id.as_str().into(), window.since_ms.into()],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok((0, 0, 0.0)) };
    let (total, recent, recent_ms) = (row.int("total")?, row.int("recent")?, row.int("recent_ms")?);
    let avg_seconds = if recent == 0 { 0.0 } else { (recent_ms as f64 / recent as f64 / 100.0).round() / 10.0 };
    Ok((total, recent, avg_seconds))
}
