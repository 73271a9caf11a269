//! Request authentication: the `x-stack-*` headers and the nine checks of docs/api.md §0.2, in
//! their order (the first failure wins).

use serde_json::Value;

use crate::context::Context;
use crate::http::error::{ApiResult, KnownError};
use crate::http::{header, Request};
use crate::identity::crypto::{ct_eq, hash_secret};
use crate::identity::tenancy::{project_branch, Tenancy};
use crate::identity::tokens::{self, AccessToken};
use crate::store::ports::SqlValue;

/// The sentinel a client sends as its publishable key when the project needs none.
pub const PUBLIC_CLIENT_SENTINEL: &str = "__stack_public_client__";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// What kind of caller a request is (`x-stack-access-type`).
pub enum AccessType {
    /// An app's frontend (publishable client key).
    Client,
    /// An app's backend (secret server key).
    Server,
    /// The dashboard or an operator (super secret admin key).
    Admin,
}

impl AccessType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessType::Client => "client",
            AccessType::Server => "server",
            AccessType::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<AccessType> {
        match s {
            "client" => Some(AccessType::Client),
            "server" => Some(AccessType::Server),
            "admin" => Some(AccessType::Admin),
            _ => None,
        }
    }

    /// Which key column of `api_key_sets` authenticates this access type.
    fn key_query(self) -> &'static str {
        match self {
            AccessType::Client => "SELECT publishable_client_key_hash AS h FROM api_key_sets WHERE project_id = ? AND manually_revoked_at IS NULL AND expires_at > ? AND publishable_client_key_hash IS NOT NULL",
            AccessType::Server => "SELECT secret_server_key_hash AS h FROM api_key_sets WHERE project_id = ? AND manually_revoked_at IS NULL AND expires_at > ? AND secret_server_key_hash IS NOT NULL",
            AccessType::Admin => "SELECT super_secret_admin_key_hash AS h FROM api_key_sets WHERE project_id = ? AND manually_revoked_at IS NULL AND expires_at > ? AND super_secret_admin_key_hash IS NOT NULL",
        }
    }
}

/// Every access type.
pub const ANY_ACCESS: &[AccessType] = &[AccessType::Client, AccessType::Server, AccessType::Admin];
/// Server and admin callers.
pub const SERVER_OR_ADMIN: &[AccessType] = &[AccessType::Server, AccessType::Admin];
/// Admin callers only.
pub const ADMIN_ONLY: &[AccessType] = &[AccessType::Admin];

/// An authenticated request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAuth {
    /// The caller's access type.
    pub access_type: AccessType,
    /// The tenancy the request acts on.
    pub tenancy: Tenancy,
    /// Whether the project requires a publishable client key.
    pub require_publishable_client_key: bool,
    /// The verified `x-stack-access-token`, if one was sent.
    pub user: Option<AccessToken>,
    /// Where the end user is, as the runtime says ([`crate::http::location`]).
    pub location: Option<crate::http::location::EndUserLocation>,
}

/// How an endpoint wants its caller authenticated.
#[derive(Debug, Clone, Copy)]
pub struct AuthRule {
    /// The access types the endpoint accepts.
    pub allowed: &'static [AccessType],
    /// The refresh endpoints exist to replace an expired access token, so an expired one sent
    /// alongside the refresh token is ignored there instead of failing the call (upstream
    /// fails with ACCESS_TOKEN_EXPIRED; see docs/upstream-differences.md).
    pub ignore_expired_access_token: bool,
}

impl AuthRule {
    /// A rule that accepts `allowed`.
    pub const fn allow(allowed: &'static [AccessType]) -> AuthRule {
        AuthRule { allowed, ignore_expired_access_token: false }
    }
}

/// Runs the checks of docs/api.md §0.2 in order.
pub async fn authenticate(ctx: &Context, req: &Request, rule: AuthRule) -> ApiResult<RequestAuth> {
    let publishable_key = header(req, "x-stack-publishable-client-key");
    let server_key = header(req, "x-stack-secret-server-key");
    let admin_key = header(req, "x-stack-super-secret-admin-key");
    let admin_token = header(req, "x-stack-admin-access-token");

    // 1-3: access type.
    let access_type = match header(req, "x-stack-access-type") {
        None | Some("") => {
            if publishable_key.is_some() || server_key.is_some() || admin_key.is_some() || admin_token.is_some() {
                return Err(KnownError::project_key_without_access_type().into());
            }
            return Err(KnownError::access_type_required().into());
        }
        Some(t) => AccessType::parse(t).ok_or_else(|| KnownError::invalid_access_type(t))?,
    };

    // 4: project id.
    let project_id = match header(req, "x-stack-project-id") {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => return Err(KnownError::access_type_without_project_id(access_type.as_str()).into()),
    };
    let branch_id = header(req, "x-stack-branch-id").filter(|b| !b.is_empty()).unwrap_or("main").to_string();

    // 5: the user's access token.
    let user = match header(req, "x-stack-access-token").filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match tokens::verify(&ctx.keys, token, ctx.now()).await {
            Ok(user) => Some(check_user_token(req, &project_id, user)?),
            Err(e) if e.code == "ACCESS_TOKEN_EXPIRED" && rule.ignore_expired_access_token => None,
            Err(e) => return Err(e.into()),
        },
    };

    // 6: the project (and, for check 8, its branch) in one read.
    let Some(project) = project_branch(ctx, &project_id, &branch_id).await? else {
        return Err(KnownError::current_project_not_found(&project_id).into());
    };
    let require_key = project.require_publishable_client_key;

    // 7: keys.
    let sent_key = match access_type {
        AccessType::Client => publishable_key,
        AccessType::Server => server_key,
        AccessType::Admin => admin_key,
    };
    match (access_type, sent_key) {
        (AccessType::Client, None) if require_key => {
            return Err(KnownError::publishable_client_key_required_for_project(&project_id).into())
        }
        (AccessType::Client, None) => {}
        (AccessType::Client, Some(PUBLIC_CLIENT_SENTINEL)) => {
            if require_key {
                return Err(KnownError::publishable_client_key_required_for_project(&project_id).into());
            }
        }
        (AccessType::Server, None) => return Err(KnownError::server_authentication_required().into()),
        (AccessType::Admin, None) => {
            // Admin access tokens (internal-project users who manage a project) are not
            // implemented yet; without a key, admin access is refused as upstream does.
            return Err(KnownError::admin_authentication_required().into());
        }
        (kind, Some(key)) => {
            if !key_is_valid(ctx, &project_id, kind, key).await? {
                return Err(match kind {
                    AccessType::Client => KnownError::invalid_publishable_client_key(&project_id),
                    AccessType::Server => KnownError::invalid_secret_server_key(&project_id),
                    AccessType::Admin => KnownError::invalid_super_secret_admin_key(&project_id),
                }
                .into());
            }
        }
    }

    // 8: branch.
    let Some(tenancy) = project.tenancy else {
        return Err(KnownError::branch_does_not_exist(&branch_id).into());
    };

    // 9: access type allowed by the endpoint.
    if !rule.allowed.contains(&access_type) {
        let allowed: Vec<&str> = rule.allowed.iter().map(|a| a.as_str()).collect();
        return Err(KnownError::insufficient_access_type(access_type.as_str(), &allowed).into());
    }

    let location = crate::http::location::end_user_location(req).cloned();
    Ok(RequestAuth { access_type, tenancy, require_publishable_client_key: require_key, user, location })
}

/// Check 5's rules on a verified token: the project, then anonymous and restricted users.
fn check_user_token(req: &Request, project_id: &str, user: AccessToken) -> ApiResult<AccessToken> {
    if user.project_id != project_id {
        return Err(KnownError::invalid_project_for_access_token(project_id, &user.project_id).into());
    }
    let allow_anonymous = header(req, "x-stack-allow-anonymous-user") == Some("true");
    let allow_restricted = allow_anonymous || header(req, "x-stack-allow-restricted-user") == Some("true");
    if user.is_anonymous && !allow_anonymous {
        return Err(KnownError::anonymous_authentication_not_allowed().into());
    }
    if user.is_restricted && !allow_restricted {
        let reason = user.restricted_reason.clone().unwrap_or(Value::Null);
        return Err(KnownError::restricted_user_not_allowed(&reason).into());
    }
    Ok(user)
}

/// Whether `key` is a live key of `kind` for the project. Every candidate hash is compared in
/// constant time; the key itself is never stored or logged.
pub async fn key_is_valid(ctx: &Context, project_id: &str, kind: AccessType, key: &str) -> ApiResult<bool> {
    let rows = ctx.store.query(kind.key_query(), &[SqlValue::from(project_id), SqlValue::Integer(ctx.now())]).await?;
    let hash = hash_secret(key);
    let mut found = false;
    for row in &rows {
        found |= ct_eq(&row.text("h")?, &hash);
    }
    Ok(found)
}
