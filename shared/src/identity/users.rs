//! Users of a tenancy: the stored row, its JSON form, creation and deletion.
//!
//! Only what sessions need is modelled (display name, primary email, anonymous and
//! restricted state); sign-up flows are outside this slice of the backend.

use serde_json::{json, Value};

use crate::context::Context;
use crate::identity::crypto::new_uuid;
use crate::identity::deleted_rows::AUDIT_USER_SESSIONS_SQL;
use crate::identity::tenancy::Tenancy;
use crate::store::ports::{SqlRow, SqlValue, Statement, StoreError};

#[derive(Debug, Clone, PartialEq)]
/// A user of a tenancy.
pub struct User {
    /// The user id.
    pub id: String,
    /// Their display name.
    pub display_name: Option<String>,
    /// Their primary email.
    pub primary_email: Option<String>,
    /// Whether that email is verified.
    pub primary_email_verified: bool,
    /// Whether the user is anonymous.
    pub is_anonymous: bool,
    /// Restricted by an admin.
    pub restricted_by_admin: bool,
    /// Whether they must pass TOTP.
    pub requires_totp_mfa: bool,
    /// Their selected team.
    pub selected_team_id: Option<String>,
    /// When they signed up, in milliseconds.
    pub signed_up_at: i64,
    /// When they were last active, in milliseconds.
    pub last_active_at: i64,
}

/// The columns [`User::from_row`] reads, for use in SELECT lists (`u.` aliased).
pub const USER_COLUMNS: &str = "u.id AS user_id, u.display_name, u.primary_email, u.primary_email_verified, \
     u.is_anonymous, u.restricted_by_admin, u.requires_totp_mfa, u.selected_team_id, u.signed_up_at, u.last_active_at AS user_last_active_at";

impl User {
    /// A user from a row of [`USER_COLUMNS`].
    pub fn from_row(row: &SqlRow) -> Result<User, StoreError> {
        Ok(User {
            id: row.text("user_id")?,
            display_name: row.opt_text("display_name")?,
            primary_email: row.opt_text("primary_email")?,
            primary_email_verified: row.bool("primary_email_verified")?,
            is_anonymous: row.bool("is_anonymous")?,
            restricted_by_admin: row.bool("restricted_by_admin")?,
            requires_totp_mfa: row.bool("requires_totp_mfa")?,
            selected_team_id: row.opt_text("selected_team_id")?,
            signed_up_at: row.int("signed_up_at")?,
            last_active_at: row.int("user_last_active_at")?,
        })
    }

    /// Anonymous users are restricted; so are users an administrator restricted.
    pub fn is_restricted(&self) -> bool {
        self.is_anonymous || self.restricted_by_admin
    }

    /// Why the user is restricted, in upstream's shape (`None`: not restricted).
    pub fn restricted_reason(&self) -> Option<Value> {
        if self.is_anonymous {
            Some(json!({ "type": "anonymous" }))
        } else if self.restricted_by_admin {
            Some(json!({ "type": "restricted_by_administrator" }))
        } else {
            None
        }
    }

    /// The server-side user JSON (a subset of upstream's users CRUD read).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "display_name": self.display_name,
            "primary_email": self.primary_email,
            "primary_email_verified": self.primary_email_verified,
            "selected_team_id": self.selected_team_id,
            "signed_up_at_millis": self.signed_up_at,
            "last_active_at_millis": self.last_active_at,
            "is_anonymous": self.is_anonymous,
            "is_restricted": self.is_restricted(),
            "restricted_reason": self.restricted_reason(),
            "requires_totp_mfa": self.requires_totp_mfa,
        })
    }
}

/// What a server may set when it creates a user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// The display name.
    pub display_name: Option<String>,
    /// The primary email.
    pub primary_email: Option<String>,
    /// Whether that email is verified.
    pub primary_email_verified: bool,
    /// An anonymous user.
    pub is_anonymous: bool,
    /// Restricted by an admin.
    pub restricted_by_admin: bool,
}

/// Creates a user in the tenancy.
pub async fn create_user(ctx: &Context, tenancy: &Tenancy, new: NewUser) -> Result<User, StoreError> {
    let user = new_user(ctx, new);
    let insert = insert_statement(&tenancy.id, &user);
    ctx.store.execute(insert.sql, insert.params).await?;
    Ok(user)
}

/// A new user's row (not stored yet: [`insert_statement`] stores it, alone or in a batch).
pub fn new_user(ctx: &Context, new: NewUser) -> User {
    let now = ctx.now();
    User {
        id: new_uuid(ctx.random.as_ref()),
        display_name: new.display_name,
        primary_email: new.primary_email,
        primary_email_verified: new.primary_email_verified,
        is_anonymous: new.is_anonymous,
        restricted_by_admin: new.restricted_by_admin,
        requires_totp_mfa: false,
        selected_team_id: None,
        signed_up_at: now,
        last_active_at: now,
    }
}

/// The statement that stores `user` in the tenancy.
pub fn insert_statement(tenancy_id: &str, user: &User) -> Statement {
    Statement::new(
        "INSERT INTO users (tenancy_id, id, display_name, primary_email, primary_email_verified, is_anonymous, \
         restricted_by_admin, requires_totp_mfa, selected_team_id, signed_up_at, last_active_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            tenancy_id.into(),
            user.id.clone().into(),
            user.display_name.clone().into(),
            user.primary_email.clone().into(),
            user.primary_email_verified.into(),
            user.is_anonymous.into(),
            user.restricted_by_admin.into(),
            user.requires_totp_mfa.into(),
            user.selected_team_id.clone().into(),
            user.signed_up_at.into(),
            user.last_active_at.into(),
        ],
    )
}

/// A server's changes to a user: `Some` fields are written (an inner `None` clears the field).
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// The new display name (`Some(None)` clears it).
    pub display_name: Option<Option<String>>,
    /// The new primary email (`Some(None)` clears it).
    pub primary_email: Option<Option<String>>,
    /// Whether the primary email is verified.
    pub primary_email_verified: Option<bool>,
    /// Only `false` is accepted by the endpoint: an anonymous user can be upgraded, not back.
    pub is_anonymous: Option<bool>,
    /// Restricted by an admin.
    pub restricted_by_admin: Option<bool>,
}

/// Applies `patch` in one statement. Returns the updated user, or `None` if it does not exist.
pub async fn update_user(
    ctx: &Context,
    tenancy_id: &str,
    user_id: &str,
    patch: UserPatch,
) -> Result<Option<User>, StoreError> {
    let flag = |present: bool| SqlValue::from(present);
    let changed = ctx
        .store
        .execute(
            "UPDATE users SET \
             display_name = CASE WHEN ?1 THEN ?2 ELSE display_name END, \
             primary_email = CASE WHEN ?3 THEN ?4 ELSE primary_email END, \
             primary_email_verified = COALESCE(?5, primary_email_verified), \
             is_anonymous = COALESCE(?6, is_anonymous), \
             restricted_by_admin = COALESCE(?7, restricted_by_admin) \
             WHERE tenancy_id = ?8 AND id = ?9",
            vec![
                flag(patch.display_name.is_some()),
                patch.display_name.flatten().into(),
                flag(patch.primary_email.is_some()),
                patch.primary_email.flatten().into(),
                patch.primary_email_verified.into(),
                patch.is_anonymous.into(),
                patch.restricted_by_admin.into(),
                tenancy_id.into(),
                user_id.into(),
            ],
        )
        .await?;
    if changed == 0 {
        return Ok(None);
    }
    get_user(ctx, tenancy_id, user_id).await
}

/// The oldest user of the tenancy whose primary email is `email` (any case).
pub async fn user_by_primary_email(ctx: &Context, tenancy_id: &str, email: &str) -> Result<Option<User>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE u.tenancy_id = ? AND lower(u.primary_email) = ? \
         ORDER BY u.signed_up_at LIMIT 1"
    );
    let rows = ctx.store.query(&sql, &[tenancy_id.into(), email.to_lowercase().into()]).await?;
    rows.first().map(User::from_row).transpose()
}

/// The user `user_id` of the tenancy, if it exists.
pub async fn get_user(ctx: &Context, tenancy_id: &str, user_id: &str) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.tenancy_id = ? AND u.id = ?");
    let rows = ctx.store.query(&sql, &[SqlValue::from(tenancy_id), SqlValue::from(user_id)]).await?;
    rows.first().map(User::from_row).transpose()
}

/// Deletes the blobs of a user's session replays from the blob store (SQL table or R2), then
/// the user, ending all of its sessions (each recorded in `deleted_rows`), atomically. Returns
/// false when the user did not exist.
pub async fn delete_user(ctx: &Context, tenancy_id: &str, user_id: &str) -> Result<bool, StoreError> {
    let now = ctx.now();
    let blob_keys: Vec<String> = ctx
        .store
        .query(
            "SELECT c.blob_key FROM session_replay_chunks c JOIN session_replays r \
             ON r.tenancy_id = c.tenancy_id AND r.id = c.session_replay_id WHERE r.tenancy_id = ? AND r.user_id = ?",
            &[tenancy_id.into(), user_id.into()],
        )
        .await?
        .iter()
        .map(|row| row.text("blob_key"))
        .collect::<Result<_, _>>()?;
    // Blobs first: if the blob store fails, the user (and the keys to find the blobs by) stays,
    // and a retry finishes the deletion. A chunk uploaded between the key query and the batch
    // loses its row with the replay; its blob is then unreachable.
    ctx.blobs.delete(&blob_keys).await.map_err(|e| StoreError::Unavailable(format!("replay blobs: {e}")))?;
    let changed = ctx
        .store
        .batch(&[
            Statement::new(AUDIT_USER_SESSIONS_SQL, vec![now.into(), tenancy_id.into(), user_id.into()]),
            Statement::new(
                "DELETE FROM retired_refresh_tokens WHERE tenancy_id = ? AND session_id IN \
                 (SELECT id FROM refresh_tokens WHERE tenancy_id = ? AND user_id = ?)",
                vec![tenancy_id.into(), tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM refresh_tokens WHERE tenancy_id = ? AND user_id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
            // The user's session replays go too (upstream: a cascading foreign key), with their
            // chunks; the chunks' events are blobs, deleted below.
            Statement::new(
                "DELETE FROM session_replay_chunks WHERE tenancy_id = ? AND session_replay_id IN \
                 (SELECT id FROM session_replays WHERE tenancy_id = ? AND user_id = ?)",
                vec![tenancy_id.into(), tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM session_replays WHERE tenancy_id = ? AND user_id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM notification_preferences WHERE tenancy_id = ? AND user_id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM password_credentials WHERE tenancy_id = ? AND user_id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM connected_accounts WHERE tenancy_id = ? AND user_id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM authorization_codes WHERE tenancy_id = ? AND user_id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
            Statement::new(
                "DELETE FROM users WHERE tenancy_id = ? AND id = ?",
                vec![tenancy_id.into(), user_id.into()],
            ),
        ])
        .await?;
    Ok(changed.last() == Some(&1))
}
