//! The emails function (docs/api.md §5.5, §5.7): the email outbox API for servers and
//! admins, delivery info and capacity boosts, managed email domains (`managed.rs`), and users'
//! notification preferences with the unsubscribe link (`preferences.rs`), and sending to users
//! (`send.rs`).
//! `POST /emails/outbox` enqueues one email; `GET /emails/outbox` lists them newest first with
//! status filters and cursor paging; `GET /emails/outbox/{id}` reads one and `PATCH` edits,
//! pauses or cancels it. The companion's email worker renders and sends them.

shared::function_entries!(crate::FUNCTION);

mod managed;
mod preferences;
mod send;
mod sender;

use serde_json::{json, Map, Value};

use shared::email::{
    delivery_stats, enqueue, iso_time, simple_status, start_boost, tenancy_capacity, Boost, NewEmail, Recipient,
    STATUS_SQL,
};
use shared::function::{Function, Route};
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, json_with_status, page_of, query_param, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, SERVER_OR_ADMIN};
use shared::identity::tenancy::Tenancy;
use shared::store::keyset::{Keyset, Order};
use shared::store::ports::{SqlRow, SqlValue};
use shared::Context;

/// Templates larger than this are refused.
pub const MAX_TEMPLATE_BYTES: usize = 100_000;
const PAGE_MAX: i64 = 100;

/// The emails function: the outbox, delivery info and boosts, managed domains, notification
/// preferences and sending to users.
pub const FUNCTION: Function = Function {
    name: "emails",
    routes: &[
        Route::at("/api/v1/emails/outbox")
            .post(|c| Box::pin(create(c.ctx, c.req)))
            .get(|c| Box::pin(list(c.ctx, c.req))),
        Route::at("/api/v1/emails/outbox/{id}")
            .get(|c| Box::pin(get(c.ctx, c.req, c.param("id"))))
            .patch(|c| Box::pin(update(c.ctx, c.req, c.param("id")))),
        Route::at("/api/v1/emails/delivery-info").get(|c| Box::pin(delivery_info(c.ctx, c.req))),
        Route::at("/api/v1/emails/capacity-boost").post(|c| Box::pin(capacity_boost(c.ctx, c.req))),
        Route::at("/api/v1/emails/notification-preference/{user_id}")
            .get(|c| Box::pin(preferences::list(c.ctx, c.req, c.param("user_id")))),
        Route::at("/api/v1/emails/notification-preference/{user_id}/{category_id}")
            .patch(|c| Box::pin(preferences::update(c.ctx, c.req, c.param("user_id"), c.param("category_id")))),
        Route::at("/api/v1/emails/unsubscribe-link").get(|c| Box::pin(preferences::unsubscribe(c.ctx, c.req))),
        Route::at("/api/v1/emails/send-email").post(|c| Box::pin(send::send_email(c.ctx, c.req))),
        Route::at("/api/v1/internal/emails/managed-onboarding/setup").post(|c| Box::pin(managed::setup(c.ctx, c.req))),
        Route::at("/api/v1/internal/emails/managed-onboarding/check").post(|c| Box::pin(managed::check(c.ctx, c.req))),
        Route::at("/api/v1/internal/emails/managed-onboarding/list").get(|c| Box::pin(managed::list(c.ctx, c.req))),
        Route::at("/api/v1/internal/emails/managed-onboarding/apply").post(|c| Box::pin(managed::apply(c.ctx, c.req))),
        Route::at("/api/v1/internal/email-sender/claim").post(|c| Box::pin(sender::claim(c.ctx, c.req))),
        Route::at("/api/v1/internal/email-sender/report").post(|c| Box::pin(sender::report(c.ctx, c.req))),
    ],
    crons: &[OUTBOX_CRON],
    scheduled: Some(|_cron, ctx| Box::pin(prepare(ctx))),
    health: None,
};

/// Every minute, as upstream's queue cron.
const OUTBOX_CRON: &str = "* * * * *";

/// The scheduled work: render, queue and recover the outbox in this function's own store.
async fn prepare(ctx: &Context) {
    match shared::email::prepare_outbox(ctx).await {
        Ok(report) if report != shared::email::PrepareReport::default() => {
            tracing::info!(rendered = report.rendered, stuck_failed = report.stuck_failed, "outbox prepared");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "the outbox's scheduled work failed"),
    }
}

async fn create(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let fields = [
        "to",
        "tsx_source",
        "subject",
        "variables",
        "is_high_priority",
        "is_transactional",
        "scheduled_at_millis",
        "skip_deliverability_check",
    ];
    let obj = v.body_object(&body, &fields);
    let recipient = recipient_field(&mut v, obj, true);
    let source = source_field(&mut v, obj, "tsx_source", true);
    let subject = v.string(obj, "subject", "body.subject", false);
    let variables = variables_field(&mut v, obj).unwrap_or_else(|| json!({}));
    let high = v.boolean(obj, "is_high_priority", "body.is_high_priority").unwrap_or(false);
    let transactional = v.boolean(obj, "is_transactional", "body.is_transactional").unwrap_or(true);
    let scheduled_at = v.integer(obj, "scheduled_at_millis", "body.scheduled_at_millis", 0, i64::MAX);
    let skip_check = v.boolean(obj, "skip_deliverability_check", "body.skip_deliverability_check");
    v.finish()?;
    let email = NewEmail {
        recipient: recipient.expect("validated"),
        tsx_source: source.expect("validated"),
        variables,
        override_subject: subject,
        is_high_priority: high,
        is_transactional: transactional,
        scheduled_at,
        skip_deliverability_check: skip_check.unwrap_or(false),
    };
    let id = enqueue(ctx, &auth.tenancy, email).await?;
    Ok(json_with_status(201, &json!({ "id": id })))
}

/// `GET /emails/delivery-info`: what the project sent over the last hour, day, week and month,
/// and the send capacity those figures give it now.
async fn delivery_info(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let tenancy = &auth.tenancy.id;
    let stats = delivery_stats(ctx, tenancy).await?;
    let capacity = tenancy_capacity(ctx, tenancy, ctx.config.default_email_capacity_per_hour).await?;
    let window = |sent: i64| json!({ "sent": sent, "bounced": 0, "marked_as_spam": 0 });
    Ok(json(&json!({
        "stats": { "hour": window(stats.hour), "day": window(stats.day), "week": window(stats.week), "month": window(stats.month) },
        "capacity": {
            "rate_per_second": capacity.per_hour() / 3600.0,
            "penalty_factor": capacity.penalty,
            "is_boost_active": capacity.boost_expires_at.is_some(),
            "boost_expires_at_millis": capacity.boost_expires_at,
        },
    })))
}

/// `POST /emails/capacity-boost`: four times the send rate for four hours; 409 while one runs.
async fn capacity_boost(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    match start_boost(ctx, &auth.tenancy.id).await? {
        Boost::Started { expires_at } => Ok(json(&json!({ "expires_at_millis": expires_at }))),
        Boost::AlreadyRunning { expires_at } => {
            Err(KnownError::email_capacity_boost_already_active(&iso_time(expires_at)).into())
        }
    }
}

/// `body.to`: one of the recipient shapes, with every address checked.
fn recipient_field(v: &mut Validator, obj: Option<&Map<String, Value>>, required: bool) -> Option<Recipient> {
    match obj.and_then(|o| o.get("to")) {
        None | Some(Value::Null) if obj.is_some() && required => {
            v.fail("body.to must be defined".into());
            None
        }
        None | Some(Value::Null) => None,
        Some(to) => Recipient::from_json(to).map_err(|e| v.fail(format!("body.{e}"))).ok(),
    }
}

/// A template field (`body.<key>`), at most [`MAX_TEMPLATE_BYTES`].
fn source_field(v: &mut Validator, obj: Option<&Map<String, Value>>, key: &str, required: bool) -> Option<String> {
    let source = v.string(obj, key, &format!("body.{key}"), required);
    if source.as_ref().is_some_and(|s| s.len() > MAX_TEMPLATE_BYTES) {
        v.fail(format!("body.{key} must be at most {MAX_TEMPLATE_BYTES} bytes"));
    }
    source
}

/// `body.variables`: an object (absent or null: `None`).
fn variables_field(v: &mut Validator, obj: Option<&Map<String, Value>>) -> Option<Value> {
    match obj.and_then(|o| o.get("variables")) {
        None | Some(Value::Null) => None,
        Some(value @ Value::Object(_)) => Some(value.clone()),
        Some(other) => {
            v.fail(format!("body.variables must be a `object` type, but the final value was: `{other}`."));
            None
        }
    }
}

/// One edit (§5.5): ?1 now; new ?2 recipient, ?3 source, ?4 variables, ?5 schedule, ?6 pause
/// and ?11 deliverability opt-out (each null: unchanged); ?7 cancel and ?8 "content changed"
/// (0/1), which starts the email over; ?9 tenancy, ?10 id. Only in the editable statuses.
const EDIT_SQL: &str = concat!(
    "UPDATE email_outbox SET updated_at = ?1, recipient = COALESCE(?2, recipient), \
     tsx_source = COALESCE(?3, tsx_source), variables = COALESCE(?4, variables), \
     scheduled_at = COALESCE(?5, scheduled_at), \
     skip_deliverability_check = COALESCE(?11, skip_deliverability_check), \
     is_paused = CASE WHEN ?7 = 1 THEN 0 ELSE COALESCE(?6, is_paused) END, \
     is_queued = CASE WHEN ?7 = 1 OR ?8 = 1 OR ?5 IS NOT NULL THEN 0 ELSE is_queued END, \
     next_send_retry_at = CASE WHEN ?7 = 1 OR ?8 = 1 THEN NULL ELSE next_send_retry_at END, \
     skipped_reason = CASE WHEN ?7 = 1 THEN 'MANUALLY_CANCELLED' WHEN ?8 = 1 THEN NULL ELSE skipped_reason END, \
     skipped_details = CASE WHEN ?7 = 1 THEN '{}' WHEN ?8 = 1 THEN NULL ELSE skipped_details END, \
     send_retries = CASE WHEN ?8 = 1 THEN 0 ELSE send_retries END, \
     rendered_by_worker_id = CASE WHEN ?8 = 1 THEN NULL ELSE rendered_by_worker_id END, \
     started_rendering_at = CASE WHEN ?8 = 1 THEN NULL ELSE started_rendering_at END, \
     finished_rendering_at = CASE WHEN ?8 = 1 THEN NULL ELSE finished_rendering_at END, \
     rendered_html = CASE WHEN ?8 = 1 THEN NULL ELSE rendered_html END, \
     rendered_text = CASE WHEN ?8 = 1 THEN NULL ELSE rendered_text END, \
     rendered_subject = CASE WHEN ?8 = 1 THEN NULL ELSE rendered_subject END, \
     render_error_external_message = CASE WHEN ?8 = 1 THEN NULL ELSE render_error_external_message END, \
     render_error_internal_message = CASE WHEN ?8 = 1 THEN NULL ELSE render_error_internal_message END, \
     sending_worker_id = CASE WHEN ?8 = 1 THEN NULL ELSE sending_worker_id END, \
     started_sending_at = CASE WHEN ?8 = 1 THEN NULL ELSE started_sending_at END, \
     finished_sending_at = CASE WHEN ?8 = 1 THEN NULL ELSE finished_sending_at END, \
     send_attempt_errors = CASE WHEN ?8 = 1 THEN NULL ELSE send_attempt_errors END, \
     send_server_error_external_message = CASE WHEN ?8 = 1 THEN NULL ELSE send_server_error_external_message END, \
     send_server_error_external_details = CASE WHEN ?8 = 1 THEN NULL ELSE send_server_error_external_details END, \
     send_server_error_internal_message = CASE WHEN ?8 = 1 THEN NULL ELSE send_server_error_internal_message END, \
     send_server_error_internal_details = CASE WHEN ?8 = 1 THEN NULL ELSE send_server_error_internal_details END, \
     can_have_delivery_info = CASE WHEN ?8 = 1 THEN NULL ELSE can_have_delivery_info END \
     WHERE tenancy_id = ?9 AND id = ?10 AND (",
    shared::email_status_sql!(),
    ") IN ('PAUSED', 'PREPARING', 'RENDERING', 'RENDER_ERROR', 'SCHEDULED', 'QUEUED', 'SERVER_ERROR')"
);

/// `PATCH /emails/outbox/{id}` (§5.5): edits content (which starts the email over: every
/// render, send, retry and skip field is reset), the schedule, pausing, or cancels it. One
/// conditional UPDATE, so an edit and a worker claiming the row never both win.
async fn update(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let fields =
        ["to", "tsx_source", "variables", "scheduled_at_millis", "is_paused", "cancel", "skip_deliverability_check"];
    let obj = v.body_object(&body, &fields);
    let recipient = recipient_field(&mut v, obj, false);
    let source = source_field(&mut v, obj, "tsx_source", false);
    let variables = variables_field(&mut v, obj);
    let scheduled_at = v.integer(obj, "scheduled_at_millis", "body.scheduled_at_millis", 0, i64::MAX);
    let paused = v.boolean(obj, "is_paused", "body.is_paused");
    let cancel = v.boolean(obj, "cancel", "body.cancel");
    let skip_check = v.boolean(obj, "skip_deliverability_check", "body.skip_deliverability_check");
    if cancel == Some(false) {
        v.fail("body.cancel must be one of the following values: true".into());
    }
    v.finish()?;

    let content_changed = recipient.is_some() || source.is_some() || variables.is_some();
    let params = vec![
        ctx.now().into(),
        recipient.map(|r| r.to_json().to_string()).into(),
        source.into(),
        variables.map(|v| v.to_string()).into(),
        scheduled_at.into(),
        paused.map(i64::from).into(),
        (cancel == Some(true)).into(),
        content_changed.into(),
        auth.tenancy.id.clone().into(),
        id.into(),
        skip_check.into(),
    ];
    let changed = ctx.store.execute(EDIT_SQL, params).await?;
    let row = read_one(ctx, &auth.tenancy, id).await?.ok_or_else(|| ApiError::status(404, "Email not found"))?;
    if changed == 0 {
        return Err(KnownError::email_not_editable(id, &row.text("status")?).into());
    }
    Ok(json(&email_json(&row)?))
}

async fn read_one(ctx: &Context, tenancy: &Tenancy, id: &str) -> ApiResult<Option<SqlRow>> {
    let rows = ctx
        .store
        .query(&format!("{} WHERE tenancy_id = ? AND id = ?", select()), &[tenancy.id.clone().into(), id.into()])
        .await?;
    Ok(rows.into_iter().next())
}

/// Every column the read shape needs, with the status.
fn select() -> String {
    format!("SELECT *, {STATUS_SQL} AS status FROM email_outbox")
}

/// The API's status spelling: lower case, dashes.
fn api_status(status: &str) -> String {
    status.to_ascii_lowercase().replace('_', "-")
}

fn from_api_status(status: &str) -> String {
    status.to_ascii_uppercase().replace('-', "_")
}

/// A JSON column, parsed (null when unset).
fn json_column(row: &SqlRow, name: &str) -> ApiResult<Value> {
    Ok(row.opt_text(name)?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null))
}

/// camelCase keys of stored attempt errors, snake_case in the API.
fn snake_case_keys(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let snake: String = k
                        .chars()
                        .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
                        .collect();
                    (snake, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// The read shape of §5.5 (the fields this system has).
fn email_json(row: &SqlRow) -> ApiResult<Value> {
    let e = ApiError::from;
    let status = row.text("status").map_err(e)?;
    let opt_int = |k: &str| row.opt_int(k).map_err(e);
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_string(), v);
    };
    put("id", json!(row.text("id").map_err(e)?));
    put("created_at_millis", json!(row.int("created_at").map_err(e)?));
    put("updated_at_millis", json!(row.int("updated_at").map_err(e)?));
    put("tsx_source", json!(row.text("tsx_source").map_err(e)?));
    put("theme_id", Value::Null);
    put("to", json_column(row, "recipient")?);
    put("variables", json_column(row, "variables")?);
    put("skip_deliverability_check", json!(row.bool("skip_deliverability_check").map_err(e)?));
    put("scheduled_at_millis", json!(row.int("scheduled_at").map_err(e)?));
    put("created_with", json!("programmatic-call"));
    put("email_draft_id", Value::Null);
    put("email_programmatic_call_template_id", Value::Null);
    put("send_retries", json!(row.int("send_retries").map_err(e)?));
    put("next_send_retry_at_millis", json!(opt_int("next_send_retry_at")?));
    put("send_attempt_errors", snake_case_keys(json_column(row, "send_attempt_errors")?));
    put("status", json!(api_status(&status)));
    put("simple_status", json!(api_status(simple_status(&status))));
    put("is_paused", json!(row.bool("is_paused").map_err(e)?));
    let rendered = opt_int("finished_rendering_at")?.is_some() && row.opt_text("rendered_html").map_err(e)?.is_some();
    put("has_rendered", json!(rendered));
    put("has_delivered", json!(status == "SENT"));
    if rendered {
        put("started_rendering_at_millis", json!(opt_int("started_rendering_at")?));
        put("rendered_at_millis", json!(opt_int("finished_rendering_at")?));
        put("subject", json!(row.opt_text("rendered_subject").map_err(e)?));
        put("html", json!(row.opt_text("rendered_html").map_err(e)?));
        put("text", json!(row.opt_text("rendered_text").map_err(e)?));
        put("is_transactional", json!(row.bool("is_transactional").map_err(e)?));
        put("is_high_priority", json!(row.bool("is_high_priority").map_err(e)?));
        let transactional = row.bool("is_transactional").map_err(e)?;
        put("notification_category_id", json!(shared::email::notifications::category_of(transactional).id));
    }
    match status.as_str() {
        "RENDER_ERROR" => put("render_error", json!(row.opt_text("render_error_external_message").map_err(e)?)),
        "SENDING" => put("started_sending_at_millis", json!(opt_int("started_sending_at")?)),
        "SERVER_ERROR" => {
            put("started_sending_at_millis", json!(opt_int("started_sending_at")?));
            put("error_at_millis", json!(opt_int("finished_sending_at")?));
            put("server_error", json!(row.opt_text("send_server_error_external_message").map_err(e)?));
        }
        "SKIPPED" => {
            put("skipped_at_millis", json!(row.int("updated_at").map_err(e)?));
            put("skipped_reason", json!(row.opt_text("skipped_reason").map_err(e)?));
            put("skipped_details", json_column(row, "skipped_details")?);
        }
        "SENT" => {
            put("started_sending_at_millis", json!(opt_int("started_sending_at")?));
            put("delivered_at_millis", json!(opt_int("finished_sending_at")?));
            put("can_have_delivery_info", json!(false));
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

async fn list(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let limit = match query_param(req, "limit") {
        None => PAGE_MAX,
        Some(l) => match l.trim().parse::<i64>() {
            Ok(n) if n > PAGE_MAX => return Err(ApiError::status(400, "Limit cannot exceed 100")),
            Ok(n) if n >= 1 => n,
            _ => return Err(ApiError::status(400, "Invalid limit parameter")),
        },
    };
    let mut sql = format!("SELECT * FROM ({}) WHERE tenancy_id = ?", select());
    let mut params: Vec<SqlValue> = vec![auth.tenancy.id.clone().into()];
    if let Some(status) = query_param(req, "status") {
        sql.push_str(" AND status = ?");
        params.push(from_api_status(&status).into());
    }
    if let Some(simple) = query_param(req, "simple_status") {
        let statuses: Vec<&str> = [
            "PAUSED",
            "SKIPPED",
            "PREPARING",
            "RENDERING",
            "RENDER_ERROR",
            "SCHEDULED",
            "QUEUED",
            "SENDING",
            "SERVER_ERROR",
            "SENT",
        ]
        .into_iter()
        .filter(|s| simple_status(s) == from_api_status(&simple))
        .collect();
        if statuses.is_empty() {
            return Ok(json(&json!({ "items": [], "is_paginated": true, "pagination": { "next_cursor": null } })));
        }
        sql.push_str(&format!(" AND status IN ({})", vec!["?"; statuses.len()].join(", ")));
        params.extend(statuses.into_iter().map(SqlValue::from));
    }
    let after = match query_param(req, "cursor") {
        Some(cursor) => {
            let pivot_sql = "SELECT created_at AS pivot FROM email_outbox WHERE tenancy_id = ? AND id = ?";
            let pivot =
                Keyset::pivot(ctx.store.as_ref(), pivot_sql, &[auth.tenancy.id.clone().into(), cursor.clone().into()])
                    .await?
                    .ok_or_else(|| ApiError::status(400, "Invalid cursor"))?;
            Some((pivot, cursor))
        }
        None => None,
    };
    // The latest first; ties by id, as upstream.
    let order = Keyset { sort: "created_at", sort_order: Order::Descending, id: "id", id_order: Order::Ascending };
    order.append(&mut sql, &mut params, after, limit);
    let rows = ctx.store.query(&sql, &params).await?;
    let (items, next_cursor) = page_of(&rows, limit as usize, email_json)?;
    Ok(json(&json!({ "items": items, "is_paginated": true, "pagination": { "next_cursor": next_cursor } })))
}

async fn get(ctx: &Context, req: &Request, id: &str) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let row = read_one(ctx, &auth.tenancy, id).await?.ok_or_else(|| ApiError::status(404, "Email not found"))?;
    Ok(json(&email_json(&row)?))
}
