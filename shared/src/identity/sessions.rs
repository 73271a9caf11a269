//! Sessions (refresh tokens) in the store: creation, lookup by token, the race-safe touch on
//! refresh, deletion with its audit row, listing; and minting the access token of a session.
//!
//! Race safety: every write is conditional and reports how many rows it changed, inside one
//! atomic batch. A refresh whose session was deleted a moment earlier changes 0 rows and is
//! answered 401, never 500; a second sign-out deletes 0 rows and is answered 401 too.

use serde_json::Value;

use crate::analytics::events::MintedFor;
use crate::context::Context;
use crate::identity::crypto::{hash_secret, new_refresh_token, new_uuid};
use crate::identity::deleted_rows::{AUDIT_EXPIRED_SESSIONS_SQL, AUDIT_SESSION_SQL};
use crate::identity::tenancy::Tenancy;
use crate::identity::tokens::{self, AccessTokenClaims, UserKind};
use crate::identity::users::{User, USER_COLUMNS};
use crate::store::ports::{SqlRow, SqlValue, Statement, StoreError};

/// Default session lifetime: 365 days.
pub const DEFAULT_SESSION_LIFETIME_MS: i64 = 365 * 24 * 3600 * 1000;
/// Longest lifetime `POST /auth/sessions` accepts: 367 days.
pub const MAX_SESSION_LIFETIME_MS: i64 = 31_708_800_000;

#[derive(Debug, Clone, PartialEq)]
/// A session: a refresh token's row (the token itself is stored hashed).
pub struct Session {
    /// The session id (upstream's refresh token id).
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// When it was created, in milliseconds.
    pub created_at: i64,
    /// When it was last used to mint an access token.
    pub last_active_at: i64,
    /// Where it was last used from, when known.
    pub last_active_ip_info: Option<Value>,
    /// When it expires (`None`: never).
    pub expires_at: Option<i64>,
    /// Made by an admin acting as the user.
    pub is_impersonation: bool,
}

impl Session {
    pub(crate) fn from_row(row: &SqlRow) -> Result<Session, StoreError> {
        let ip_info = row
            .opt_text("last_active_ip_info")?
            .map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Decode(e.to_string())))
            .transpose()?;
        Ok(Session {
            id: row.text("id")?,
            user_id: row.text("user_id")?,
            created_at: row.int("created_at")?,
            last_active_at: row.int("last_active_at")?,
            last_active_ip_info: ip_info,
            expires_at: row.opt_int("expires_at")?,
            is_impersonation: row.bool("is_impersonation")?,
        })
    }
}

pub(crate) const SESSION_COLUMNS: &str =
    "s.id, s.user_id, s.created_at, s.last_active_at, s.last_active_ip_info, s.expires_at, s.is_impersonation";

/// A new session's id and refresh token (the token is returned once and stored hashed).
pub struct CreatedSession {
    /// The new session's id.
    pub id: String,
    /// Its refresh token (shown once; stored hashed).
    pub refresh_token: String,
}

/// Creates a session for a user; returns its id and refresh token.
pub async fn create_session(
    ctx: &Context,
    tenancy_id: &str,
    user_id: &str,
    expires_at: Option<i64>,
    is_impersonation: bool,
) -> Result<CreatedSession, StoreError> {
    let now = ctx.now();
    let created =
        CreatedSession { id: new_uuid(ctx.random.as_ref()), refresh_token: new_refresh_token(ctx.random.as_ref()) };
    ctx.store
        .execute(
            "INSERT INTO refresh_tokens (tenancy_id, id, user_id, token_hash, created_at, updated_at, last_active_at, \
             expires_at, is_impersonation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                tenancy_id.into(),
                created.id.clone().into(),
                user_id.into(),
                hash_secret(&created.refresh_token).into(),
                now.into(),
                now.into(),
                now.into(),
                expires_at.into(),
                is_impersonation.into(),
            ],
        )
        .await?;
    Ok(created)
}

/// The live session a refresh token names in this tenancy, with its user. Tokens of another
/// project or branch, expired sessions and sessions of deleted users are simply not found.
pub async fn find_by_refresh_token(
    ctx: &Context,
    tenancy_id: &str,
    refresh_token: &str,
) -> Result<Option<(Session, User)>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, {USER_COLUMNS} FROM refresh_tokens s \
         JOIN users u ON u.tenancy_id = s.tenancy_id AND u.id = s.user_id \
         WHERE s.token_hash = ? AND s.tenancy_id = ? AND (s.expires_at IS NULL OR s.expires_at > ?)"
    );
    let rows = ctx
        .store
        .query(&sql, &[hash_secret(refresh_token).into(), tenancy_id.into(), SqlValue::Integer(ctx.now())])
        .await?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Ok(Some((Session::from_row(row)?, User::from_row(row)?))),
    }
}

/// Marks a session and its user active, if the session still exists and has not expired.
/// Returns false when another request deleted it first: the caller answers 401.
pub async fn touch(
    ctx: &Context,
    tenancy_id: &str,
    session_id: &str,
    user_id: &str,
    ip_info: Option<&Value>,
) -> Result<bool, StoreError> {
    let now = ctx.now();
    let ip_info = ip_info.map(std::string::ToString::to_string);
    let changed = ctx
        .store
        .batch(&[
            Statement::new(
                "UPDATE refresh_tokens SET last_active_at = ?1, updated_at = ?1, \
                 last_active_ip_info = COALESCE(?2, last_active_ip_info) \
                 WHERE tenancy_id = ?3 AND id = ?4 AND (expires_at IS NULL OR expires_at > ?1)",
                vec![now.into(), ip_info.into(), tenancy_id.into(), session_id.into()],
            ),
            Statement::new(
                "UPDATE users SET last_active_at = ?1 WHERE tenancy_id = ?2 AND id = ?3 \
                 AND EXISTS (SELECT 1 FROM refresh_tokens WHERE tenancy_id = ?2 AND id = ?4)",
                vec![now.into(), tenancy_id.into(), user_id.into(), session_id.into()],
            ),
        ])
        .await?;
    Ok(changed == [1, 1])
}

/// Deletes a session, recording it in `deleted_rows` first, atomically. Returns false when it
/// was already gone (a second or concurrent sign-out), in which case nothing is written.
pub async fn delete(ctx: &Context, tenancy_id: &str, session_id: &str) -> Result<bool, StoreError> {
    let changed = ctx
        .store
        .batch(&[
            Statement::new(AUDIT_SESSION_SQL, vec![ctx.now().into(), tenancy_id.into(), session_id.into()]),
            Statement::new(
                "DELETE FROM refresh_tokens WHERE tenancy_id = ? AND id = ?",
                vec![tenancy_id.into(), session_id.into()],
            ),
            Statement::new(
                "DELETE FROM retired_refresh_tokens WHERE tenancy_id = ? AND session_id = ?",
                vec![tenancy_id.into(), session_id.into()],
            ),
        ])
        .await?;
    Ok(changed[1] == 1)
}

/// The session `session_id` of the tenancy, if it exists.
pub async fn get(ctx: &Context, tenancy_id: &str, session_id: &str) -> Result<Option<Session>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM refresh_tokens s WHERE s.tenancy_id = ? AND s.id = ?");
    let rows = ctx.store.query(&sql, &[tenancy_id.into(), session_id.into()]).await?;
    rows.first().map(Session::from_row).transpose()
}

/// Deletes every session that expired before now, recording each in `deleted_rows` first, in
/// one transaction. Returns how many were deleted. Run by the scheduled (cron) handler.
pub async fn purge_expired(ctx: &Context) -> Result<u64, StoreError> {
    let now = ctx.now();
    let changed = ctx
        .store
        .batch(&[
            Statement::new(AUDIT_EXPIRED_SESSIONS_SQL, vec![now.into()]),
            Statement::new(
                "DELETE FROM retired_refresh_tokens WHERE session_id IN \
                 (SELECT id FROM refresh_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1)",
                vec![now.into()],
            ),
            Statement::new(
                "DELETE FROM refresh_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                vec![now.into()],
            ),
        ])
        .await?;
    Ok(changed[2])
}

/// A user's live sessions, newest first.
pub async fn list_for_user(ctx: &Context, tenancy_id: &str, user_id: &str) -> Result<Vec<Session>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM refresh_tokens s WHERE s.tenancy_id = ? AND s.user_id = ? \
         AND (s.expires_at IS NULL OR s.expires_at > ?) ORDER BY s.created_at DESC, s.id DESC"
    );
    let rows = ctx.store.query(&sql, &[tenancy_id.into(), user_id.into(), SqlValue::Integer(ctx.now())]).await?;
    rows.iter().map(Session::from_row).collect()
}

/// Signs the access token of `session` for `user` (claims of docs/api.md §1.4), and logs the
/// `$session-activity` and `$token-refresh` events every mint logs, with the end user's
/// `location` when the runtime knows it.
pub async fn mint_access_token(
    ctx: &Context,
    tenancy: &Tenancy,
    user: &User,
    session_id: &str,
    location: Option<&crate::http::location::EndUserLocation>,
) -> Result<String, crate::http::error::ApiError> {
    let minted_for = MintedFor { user_id: &user.id, is_anonymous: user.is_anonymous, location };
    crate::analytics::events::log_mint_events(ctx, tenancy, minted_for, session_id);
    let kind = if user.is_anonymous {
        UserKind::Anonymous
    } else if user.is_restricted() {
        UserKind::Restricted
    } else {
        UserKind::Normal
    };
    let claims = AccessTokenClaims {
        sub: user.id.clone(),
        project_id: tenancy.project_id.clone(),
        branch_id: tenancy.branch_id.clone(),
        refresh_token_id: Some(session_id.to_string()),
        role: "authenticated".into(),
        name: user.display_name.clone(),
        email: user.primary_email.clone(),
        email_verified: user.primary_email_verified,
        selected_team_id: user.selected_team_id.clone(),
        signed_up_at: user.signed_up_at.div_euclid(1000),
        is_anonymous: user.is_anonymous,
        is_restricted: Some(user.is_restricted()),
        restricted_reason: user.restricted_reason(),
        requires_totp_mfa: user.requires_totp_mfa,
        iss: kind.issuer(&ctx.config.api_url, &tenancy.project_id),
        aud: kind.audience(&tenancy.project_id),
    };
    tokens::sign(&ctx.keys, claims, ctx.now(), ctx.config.access_token_lifetime_ms).await
}
