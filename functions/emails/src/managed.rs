//! Managed email domains (docs/api.md §5.7), admin only: set up a project's own sending
//! subdomain, check and list its status, and apply it as the project's email server.
//!
//! This system has no email-provider integration (Resend, DNSimple), so domains always run in
//! upstream's mock mode, and only outside production: a fixed provider id and name servers,
//! and verification that completes about a second after setup (checked whenever the domains
//! are read, instead of by a background timer). Applying is one atomic batch: it demotes every
//! other applied domain of the tenancy, applies this one and writes the email server into the
//! environment override, so exactly one domain is applied however many applies race.

use serde_json::{json, Value};

use shared::context::Environment;
use shared::http::error::{ApiError, ApiResult};
use shared::http::validate::{parse_body, Validator};
use shared::http::{json, Request, Response};
use shared::identity::auth::{authenticate, AuthRule, ADMIN_ONLY};
use shared::identity::tenancy::Tenancy;
use shared::store::ports::{SqlRow, Statement};
use shared::Context;

const NAME_SERVERS: [&str; 2] = ["ns1.dnsimple.com", "ns2.dnsimple.com"];
/// How long mock verification takes.
const MOCK_VERIFICATION_MS: i64 = 1_000;

async fn admin(ctx: &Context, req: &Request) -> ApiResult<Tenancy> {
    let auth = authenticate(ctx, req, AuthRule::allow(ADMIN_ONLY)).await?;
    if ctx.config.environment == Environment::Production {
        return Err(ApiError::status(
            503,
            "Managed email domains need an email provider integration, which is not configured.",
        ));
    }
    Ok(auth.tenancy)
}

/// Trimmed, lower case, without trailing dots; `None` unless a fully qualified domain name.
fn normalize_subdomain(raw: &str) -> Option<String> {
    let name = raw.trim().to_ascii_lowercase().trim_end_matches('.').to_string();
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    (labels.len() >= 2
        && name.len() <= 253
        && labels.iter().all(label_ok)
        && labels.last().is_some_and(|t| t.chars().all(|c| c.is_ascii_alphabetic())))
    .then_some(name)
}

fn valid_local_part(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
}

/// Mock verification: pending domains older than a second become verified.
async fn settle_mock_verification(ctx: &Context, tenancy: &Tenancy) -> ApiResult<()> {
    let now = ctx.now();
    ctx.store
        .execute(
            "UPDATE managed_email_domains SET status = 'VERIFIED', verified_at = ?1, updated_at = ?1 \
             WHERE tenancy_id = ?2 AND status = 'PENDING_VERIFICATION' AND created_at <= ?3",
            vec![now.into(), tenancy.id.clone().into(), (now - MOCK_VERIFICATION_MS).into()],
        )
        .await?;
    Ok(())
}

fn domain_json(row: &SqlRow) -> ApiResult<Value> {
    let text = |k: &str| row.text(k).map_err(ApiError::from);
    let records: Value = serde_json::from_str(&text("name_server_records")?).unwrap_or(json!([]));
    Ok(json!({
        "domain_id": text("provider_domain_id")?,
        "subdomain": text("subdomain")?,
        "sender_local_part": text("sender_local_part")?,
        "status": text("status")?.to_ascii_lowercase(),
        "name_server_records": records,
    }))
}

async fn find(
    ctx: &Context,
    tenancy: &Tenancy,
    condition: &str,
    params: Vec<shared::store::ports::SqlValue>,
) -> ApiResult<Option<SqlRow>> {
    let mut all = vec![tenancy.id.clone().into()];
    all.extend(params);
    let rows = ctx
        .store
        .query(&format!("SELECT * FROM managed_email_domains WHERE tenancy_id = ? AND {condition}"), &all)
        .await?;
    Ok(rows.into_iter().next())
}

/// `POST /internal/emails/managed-onboarding/setup`.
pub async fn setup(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["subdomain", "sender_local_part"]);
    let subdomain = v.string(obj, "subdomain", "body.subdomain", true);
    let local = v.string(obj, "sender_local_part", "body.sender_local_part", true);
    v.finish()?;
    let Some(subdomain) = normalize_subdomain(&subdomain.expect("validated")) else {
        return Err(ApiError::status(400, "subdomain must be a fully-qualified domain name like mail.example.com"));
    };
    let local = local.expect("validated").trim().to_string();
    if !valid_local_part(&local) {
        return Err(ApiError::status(400, "sender_local_part is invalid"));
    }
    if let Some(existing) = find(ctx, &tenancy, "subdomain = ?", vec![subdomain.clone().into()]).await? {
        if existing.text("sender_local_part")? != local {
            return Err(ApiError::status(409, "This subdomain is already tracked with a different sender local part"));
        }
        return Ok(json(&domain_json(&existing)?));
    }
    let provider_id: String = format!("managed_mock_{}_{subdomain}", tenancy.id)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    let now = ctx.now();
    let inserted = ctx
        .store
        .execute(
            "INSERT INTO managed_email_domains (id, tenancy_id, project_id, branch_id, subdomain, sender_local_part, \
             provider_domain_id, name_server_records, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'PENDING_VERIFICATION', ?9, ?9) \
             ON CONFLICT (tenancy_id, subdomain) DO NOTHING",
            vec![
                shared::identity::crypto::new_uuid(ctx.random.as_ref()).into(),
                tenancy.id.clone().into(),
                tenancy.project_id.clone().into(),
                tenancy.branch_id.clone().into(),
                subdomain.clone().into(),
                local.clone().into(),
                provider_id.into(),
                json!(NAME_SERVERS).to_string().into(),
                now.into(),
            ],
        )
        .await;
    if let Err(shared::store::ports::StoreError::Constraint(_)) = inserted {
        return Err(ApiError::status(
            409,
            "This subdomain already exists in Resend. If this is from another project, choose a different subdomain.",
        ));
    }
    inserted?;
    let row = find(ctx, &tenancy, "subdomain = ?", vec![subdomain.into()])
        .await?
        .ok_or_else(|| ApiError::internal("the new domain is gone"))?;
    Ok(json(&domain_json(&row)?))
}

/// `POST /internal/emails/managed-onboarding/check`.
pub async fn check(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["domain_id", "subdomain", "sender_local_part"]);
    let domain_id = v.string(obj, "domain_id", "body.domain_id", true);
    let subdomain = v.string(obj, "subdomain", "body.subdomain", true);
    let local = v.string(obj, "sender_local_part", "body.sender_local_part", true);
    v.finish()?;
    settle_mock_verification(ctx, &tenancy).await?;
    let subdomain = normalize_subdomain(&subdomain.expect("validated")).unwrap_or_default();
    let row = find(
        ctx,
        &tenancy,
        "provider_domain_id = ? AND subdomain = ? AND sender_local_part = ?",
        vec![domain_id.expect("validated").into(), subdomain.into(), local.expect("validated").trim().into()],
    )
    .await?
    .ok_or_else(|| ApiError::status(404, "Managed domain setup not found for this project/branch"))?;
    Ok(json(&json!({ "status": row.text("status")?.to_ascii_lowercase() })))
}

/// `GET /internal/emails/managed-onboarding/list`.
pub async fn list(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    settle_mock_verification(ctx, &tenancy).await?;
    let rows = ctx
        .store
        .query(
            "SELECT * FROM managed_email_domains WHERE tenancy_id = ? ORDER BY updated_at DESC, id",
            &[tenancy.id.clone().into()],
        )
        .await?;
    let items = rows.iter().map(domain_json).collect::<ApiResult<Vec<Value>>>()?;
    Ok(json(&json!({ "items": items })))
}

/// `POST /internal/emails/managed-onboarding/apply`.
pub async fn apply(ctx: &Context, req: &Request) -> ApiResult<Response> {
    let tenancy = admin(ctx, req).await?;
    let body = parse_body(req)?;
    let mut v = Validator::new(req);
    let obj = v.body_object(&body, &["domain_id"]);
    let domain_id = v.string(obj, "domain_id", "body.domain_id", true);
    v.finish()?;
    let domain_id = domain_id.expect("validated");
    settle_mock_verification(ctx, &tenancy).await?;
    let row = find(ctx, &tenancy, "provider_domain_id = ?", vec![domain_id.clone().into()])
        .await?
        .ok_or_else(|| ApiError::status(404, "Managed domain not found for this project/branch"))?;
    match row.text("status")?.as_str() {
        "APPLIED" => return Ok(json(&json!({ "status": "applied" }))),
        "VERIFIED" => {}
        _ => return Err(ApiError::status(409, "Managed domain is not verified yet")),
    }
    let subdomain = row.text("subdomain")?;
    let local = row.text("sender_local_part")?;
    let project_name = ctx
        .store
        .query("SELECT display_name FROM projects WHERE id = ?", &[tenancy.project_id.clone().into()])
        .await?
        .first()
        .map(|r| r.text("display_name"))
        .transpose()?
        .unwrap_or_default();
    let now = ctx.now();
    let server = json!({
        "emails.server.isShared": false,
        "emails.server.provider": "managed",
        "emails.server.password": format!("managed_mock_key_{}", tenancy.id),
        "emails.server.senderName": project_name,
        "emails.server.senderEmail": format!("{local}@{subdomain}"),
        "emails.server.managedSubdomain": subdomain,
        "emails.server.managedSenderLocalPart": local,
    });
    ctx.store
        .batch(&[
            Statement::new(
                "UPDATE managed_email_domains SET status = 'VERIFIED', applied_at = NULL, updated_at = ?1 \
                 WHERE tenancy_id = ?2 AND status = 'APPLIED' AND provider_domain_id != ?3",
                vec![now.into(), tenancy.id.clone().into(), domain_id.clone().into()],
            ),
            Statement::new(
                "UPDATE managed_email_domains SET status = 'APPLIED', applied_at = ?1, updated_at = ?1 \
                 WHERE tenancy_id = ?2 AND provider_domain_id = ?3 AND status IN ('VERIFIED', 'APPLIED')",
                vec![now.into(), tenancy.id.clone().into(), domain_id.into()],
            ),
            // The email server keys replace the same keys of the environment override.
            Statement::new(
                "INSERT INTO environment_config_overrides (project_id, branch_id, config, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (project_id, branch_id) DO UPDATE SET config = json_patch(config, ?3), updated_at = ?4",
                vec![tenancy.project_id.clone().into(), tenancy.branch_id.clone().into(), server.to_string().into(), now.into()],
            ),
        ])
        .await
        ?;
    Ok(json(&json!({ "status": "applied" })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_normalized_fully_qualified_names() {
        assert_eq!(normalize_subdomain(" Mail.Example.COM. ").as_deref(), Some("mail.example.com"));
        for bad in ["localhost", "mail..example.com", "-mail.example.com", "mail.example.123", "a b.example.com"] {
            assert_eq!(normalize_subdomain(bad), None, "{bad}");
        }
        assert!(valid_local_part("no-reply+x"));
        assert!(!valid_local_part("no reply"));
    }
}
