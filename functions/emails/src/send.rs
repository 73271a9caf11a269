//! `POST /emails/send-email` (docs/api.md §5.6): one outbox email per user, for a list
//! of users or all of them, enqueued together (all or none). Only for projects with their own
//! email server: the shared one is refused with `REQUIRES_CUSTOM_EMAIL_SERVER`, as upstream.

use serde_json::{json, Map, Value};

use shared::config::{render, schema::Level, store};
use shared::email::{enqueue_many, NewEmail, Recipient};
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, SERVER_OR_ADMIN};
use shared::Context;

use crate::{source_field, variables_field};

/// Recipients one call may name (one atomic batch of inserts).
pub const MAX_RECIPIENTS: usize = 1000;

/// `body.user_ids`: distinct UUIDs, lower case.
fn user_ids(v: &mut Validator, obj: Option<&Map<String, Value>>) -> Option<Vec<String>> {
    let list = obj.and_then(|o| o.get("user_ids")).filter(|x| !x.is_null())?;
    let Some(items) = list.as_array() else {
        v.fail("body.user_ids must be an array of user IDs".into());
        return None;
    };
    let mut ids: Vec<String> = Vec::new();
    for item in items {
        if let Some(id) = item.as_str().filter(|s| shared::identity::crypto::is_uuid(s)) {
            ids.push(id.to_ascii_lowercase());
        } else {
            v.fail(format!("body.user_ids contains an invalid user ID: {item}"));
            return None;
        }
    }
    ids.sort();
    ids.dedup();
    Some(ids)
}

pub async fn send_email(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let auth = authenticate(ctx, req, AuthRule::allow(SERVER_OR_ADMIN)).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj =
        v.body_object(&body, &["user_ids", "all_users", "html", "subject", "variables", "notification_category_name"]);
    let ids = user_ids(&mut v, obj);
    let all_users = v.boolean(obj, "all_users", "body.all_users");
    if obj.is_some() && (ids.is_some() == (all_users == Some(true)) || all_users == Some(false)) {
        v.fail("body must name recipients with exactly one of user_ids or all_users: true".into());
    }
    if ids.as_ref().is_some_and(|ids| ids.is_empty() || ids.len() > MAX_RECIPIENTS) {
        v.fail(format!("body.user_ids must name between 1 and {MAX_RECIPIENTS} users"));
    }
    let html = source_field(&mut v, obj, "html", true);
    let subject = v.string(obj, "subject", "body.subject", false);
    let variables = variables_field(&mut v, obj).unwrap_or_else(|| json!({}));
    let category = v.string(obj, "notification_category_name", "body.notification_category_name", false);
    let transactional = match category.as_deref() {
        None | Some("Transactional") => true,
        Some("Marketing") => false,
        Some(_) => {
            v.fail(
                "body.notification_category_name must be one of the following values: Transactional, Marketing".into(),
            );
            true
        }
    };
    v.finish()?;

    let tenancy = &auth.tenancy;
    let overrides = store::load(ctx, tenancy).await?;
    let config = render(&overrides.up_to(Level::Environment)).config;
    if config["emails"]["server"]["isShared"].as_bool().unwrap_or(true) {
        return Err(KnownError::requires_custom_email_server().into());
    }
    let recipients: Vec<String> = if let Some(ids) = ids {
        for id in &ids {
            if shared::identity::users::get_user(ctx, &tenancy.id, id).await?.is_none() {
                return Err(KnownError::user_not_found().into());
            }
        }
        ids
    } else {
        let rows = ctx
            .store
            .query(
                "SELECT id FROM users WHERE tenancy_id = ? ORDER BY signed_up_at, id LIMIT ?",
                &[tenancy.id.clone().into(), (MAX_RECIPIENTS as i64 + 1).into()],
            )
            .await?;
        if rows.len() > MAX_RECIPIENTS {
            return Err(ApiError::status(400, format!("all_users can reach at most {MAX_RECIPIENTS} users per call")));
        }
        rows.iter().map(|row| row.text("id")).collect::<Result<_, _>>()?
    };
    let emails = recipients
        .iter()
        .map(|user_id| NewEmail {
            recipient: Recipient::UserPrimaryEmail { user_id: user_id.clone() },
            tsx_source: html.clone().expect("validated"),
            variables: variables.clone(),
            override_subject: subject.clone(),
            is_high_priority: false,
            is_transactional: transactional,
            scheduled_at: None,
            skip_deliverability_check: false,
        })
        .collect();
    enqueue_many(ctx, tenancy, emails).await?;
    Ok(json(&json!({ "results": recipients.iter().map(|id| json!({ "user_id": id })).collect::<Vec<_>>() })))
}
