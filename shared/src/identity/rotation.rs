//! Refresh-token rotation with reuse detection (docs/api.md §1.10), for projects whose config
//! sets `auth.refreshTokenRotation.enabled` (off by default, as upstream).
//!
//! Each refresh replaces the session's token with its *successor*, an HMAC of the token under
//! the server secret. Deriving it (rather than drawing it at random) is the key decision: a
//! request that presents the immediate parent inside the grace window gets the same successor
//! without the store ever holding a token, only SHA-256 hashes, so concurrent tabs that
//! refresh one token at once all end with the same new token and nobody is logged out. The
//! window is fixed from the rotation (`rotated_at`); using the parent does not extend it.
//! Presenting anything older — the parent after the window, or a retired token — is a reuse:
//! the whole session (the token family) is revoked, and nothing is minted from it again.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::context::Context;
use crate::identity::crypto::{hash_secret, REFRESH_TOKEN_LENGTH};
use crate::identity::sessions::{self, Session, SESSION_COLUMNS};
use crate::identity::users::{User, USER_COLUMNS};
use crate::store::ports::{SqlValue, Statement, StoreError};

/// How long after a rotation the replaced token still answers with the same successor.
pub const GRACE_WINDOW_MS: i64 = 30_000;

/// Lowercase Crockford base32, the alphabet of every refresh token.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The token that replaces `token` when it is rotated: 45 Crockford characters from
/// HMAC-SHA256(server secret, token), so every request presenting `token` derives the same one.
pub fn successor(server_secret: &str, token: &str) -> String {
    let mut out = String::with_capacity(REFRESH_TOKEN_LENGTH);
    for block in 0u8.. {
        let mut mac = Hmac::<Sha256>::new_from_slice(server_secret.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(b"stack-refresh-token-successor");
        mac.update(&[block]);
        mac.update(token.as_bytes());
        for byte in mac.finalize().into_bytes() {
            if out.len() == REFRESH_TOKEN_LENGTH {
                return out;
            }
            out.push(CROCKFORD[(byte & 31) as usize] as char);
        }
    }
    unreachable!("two HMAC blocks give more than 45 characters")
}

/// A refreshed session of a rotating project.
pub struct Rotated {
    /// The session.
    pub session: Session,
    /// Its user.
    pub user: User,
    /// The session's current token (new, or the same successor inside the grace window).
    pub refresh_token: String,
}

/// What presenting a refresh token to a rotating project led to.
pub enum Rotation {
    /// The session was refreshed; its `refresh_token` is the one to use from now on.
    Refreshed(Box<Rotated>),
    /// No live session has this token (or it lost a race with a sign-out).
    NotFound,
    /// The token was an old one: its session is revoked.
    Revoked,
}

/// Rotates the session `token` names in the tenancy, or detects its reuse. `ip_info` is the
/// end user's location, stored as the session's last-used one.
pub async fn refresh(
    ctx: &Context,
    tenancy_id: &str,
    token: &str,
    ip_info: Option<&Value>,
) -> Result<Rotation, StoreError> {
    let now = ctx.now();
    let token_hash = hash_secret(token);
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, {USER_COLUMNS}, s.token_hash = ?1 AS is_current, s.rotated_at \
         FROM refresh_tokens s JOIN users u ON u.tenancy_id = s.tenancy_id AND u.id = s.user_id \
         WHERE (s.token_hash = ?1 OR s.parent_token_hash = ?1) AND s.tenancy_id = ?2 \
         AND (s.expires_at IS NULL OR s.expires_at > ?3)"
    );
    let rows = ctx.store.query(&sql, &[token_hash.clone().into(), tenancy_id.into(), SqlValue::Integer(now)]).await?;
    let Some(row) = rows.first() else {
        return revoke_if_retired(ctx, tenancy_id, &token_hash).await;
    };
    let session = Session::from_row(row)?;
    let user = User::from_row(row)?;
    let within_grace = row.opt_int("rotated_at")?.is_some_and(|at| at > now - GRACE_WINDOW_MS);
    if !row.bool("is_current")? && !within_grace {
        // The parent, presented after its window: a reuse.
        sessions::delete(ctx, tenancy_id, &session.id).await?;
        return Ok(Rotation::Revoked);
    }
    let next = successor(&ctx.config.server_secret, token);
    let ip_info = ip_info.map(std::string::ToString::to_string);
    let (tenancy, id) = (SqlValue::from(tenancy_id), SqlValue::from(session.id.as_str()));
    let changed = ctx
        .store
        .batch(&[
            // When `token` is current: its parent becomes a retired token ...
            Statement::new(
                "INSERT INTO retired_refresh_tokens (token_hash, tenancy_id, session_id, retired_at) \
                 SELECT parent_token_hash, tenancy_id, id, ?1 FROM refresh_tokens \
                 WHERE tenancy_id = ?2 AND id = ?3 AND token_hash = ?4 AND parent_token_hash IS NOT NULL",
                vec![now.into(), tenancy.clone(), id.clone(), token_hash.clone().into()],
            ),
            // ... and `token` the parent of its successor. Neither runs when another request
            // rotated it first.
            Statement::new(
                "UPDATE refresh_tokens SET token_hash = ?1, parent_token_hash = ?2, rotated_at = ?3 \
                 WHERE tenancy_id = ?4 AND id = ?5 AND token_hash = ?2",
                vec![hash_secret(&next).into(), token_hash.clone().into(), now.into(), tenancy.clone(), id.clone()],
            ),
            // Either way `token` is now the parent; inside its window the session is touched.
            Statement::new(
                "UPDATE refresh_tokens SET last_active_at = ?1, updated_at = ?1, \
                 last_active_ip_info = COALESCE(?2, last_active_ip_info) \
                 WHERE tenancy_id = ?3 AND id = ?4 AND parent_token_hash = ?5 AND rotated_at > ?6 \
                 AND (expires_at IS NULL OR expires_at > ?1)",
                vec![
                    now.into(),
                    ip_info.into(),
                    tenancy.clone(),
                    id.clone(),
                    token_hash.clone().into(),
                    (now - GRACE_WINDOW_MS).into(),
                ],
            ),
            Statement::new(
                "UPDATE users SET last_active_at = ?1 WHERE tenancy_id = ?2 AND id = ?3 \
                 AND EXISTS (SELECT 1 FROM refresh_tokens WHERE tenancy_id = ?2 AND id = ?4 \
                 AND parent_token_hash = ?5 AND rotated_at > ?6 AND (expires_at IS NULL OR expires_at > ?1))",
                vec![
                    now.into(),
                    tenancy,
                    user.id.as_str().into(),
                    id,
                    token_hash.into(),
                    (now - GRACE_WINDOW_MS).into(),
                ],
            ),
        ])
        .await?;
    if changed[2] == 1 && changed[3] == 1 {
        Ok(Rotation::Refreshed(Box::new(Rotated { session, user, refresh_token: next })))
    } else {
        // Deleted, or rotated past `token`, between the read and the write: not found.
        Ok(Rotation::NotFound)
    }
}

/// A token that is no session's current one or parent: a retired token revokes its session.
async fn revoke_if_retired(ctx: &Context, tenancy_id: &str, token_hash: &str) -> Result<Rotation, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT session_id FROM retired_refresh_tokens WHERE token_hash = ? AND tenancy_id = ?",
            &[token_hash.into(), tenancy_id.into()],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(Rotation::NotFound) };
    sessions::delete(ctx, tenancy_id, &row.text("session_id")?).await?;
    Ok(Rotation::Revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_is_a_refresh_token_fixed_by_the_token_and_the_secret() {
        let a = successor("secret", "token-one");
        assert_eq!(a.len(), REFRESH_TOKEN_LENGTH);
        assert!(a.bytes().all(|b| CROCKFORD.contains(&b)), "{a}");
        assert_eq!(a, successor("secret", "token-one"));
        assert_ne!(a, successor("secret", "token-two"));
        assert_ne!(a, successor("other secret", "token-one"));
    }
}
