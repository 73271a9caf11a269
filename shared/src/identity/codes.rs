//! One-time codes sent by email (docs/api.md §1.11, §1.12): sign-in codes and password resets.
//!
//! Only a code's SHA-256 is stored (a code is a bearer secret, like a refresh token). A code
//! is redeemed by one conditional update (`used_at` still empty), so of two concurrent uses
//! exactly one wins; a code past its expiry or already used is told apart from an unknown one,
//! as upstream does.

use crate::context::Context;
use crate::http::error::KnownError;
use crate::identity::crypto::{hash_secret, new_uuid};
use crate::store::ports::{SqlValue, StoreError};

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Signs in (or up) the owner of an email address.
    OtpSignIn,
    /// Sets a new password for a user.
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::OtpSignIn => "otp-sign-in",
            Purpose::PasswordReset => "password-reset",
        }
    }
}

/// A valid code's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    /// The code's row id.
    pub id: String,
    /// The address it was sent to.
    pub email: String,
    /// The user it is for, when known.
    pub user_id: Option<String>,
}

/// Stores `code` (hashed), sent to `email`, valid for `lifetime_ms`.
pub async fn create(
    ctx: &Context,
    tenancy_id: &str,
    purpose: Purpose,
    code: &str,
    email: &str,
    user_id: Option<&str>,
    lifetime_ms: i64,
) -> Result<(), StoreError> {
    let now = ctx.now();
    ctx.store
        .execute(
            "INSERT INTO verification_codes (tenancy_id, id, purpose, code_hash, email, user_id, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                tenancy_id.into(),
                new_uuid(ctx.random.as_ref()).into(),
                purpose.as_str().into(),
                hash_secret(&code.to_ascii_lowercase()).into(),
                email.into(),
                user_id.map(str::to_string).into(),
                now.into(),
                (now + lifetime_ms).into(),
            ],
        )
        .await?;
    Ok(())
}

/// The code, if it exists, is unused and has not expired (nothing is changed). Otherwise the
/// contract's error: not found, expired or already used.
pub async fn check(ctx: &Context, tenancy_id: &str, purpose: Purpose, code: &str) -> Result<Code, CodeError> {
    let rows = ctx
        .store
        .query(
            "SELECT id, email, user_id, expires_at, used_at FROM verification_codes \
             WHERE code_hash = ? AND tenancy_id = ? AND purpose = ?",
            &[hash_secret(&code.to_ascii_lowercase()).into(), tenancy_id.into(), purpose.as_str().into()],
        )
        .await?;
    let Some(row) = rows.first() else { return Err(CodeError::Known(KnownError::verification_code_not_found())) };
    if row.opt_int("used_at")?.is_some() {
        return Err(CodeError::Known(KnownError::verification_code_already_used()));
    }
    if row.int("expires_at")? <= ctx.now() {
        return Err(CodeError::Known(KnownError::verification_code_expired()));
    }
    Ok(Code { id: row.text("id")?, email: row.text("email")?, user_id: row.opt_text("user_id")? })
}

/// Uses a code [`check`] accepted: exactly one of concurrent redemptions succeeds; the others
/// get VERIFICATION_CODE_ALREADY_USED.
pub async fn redeem(ctx: &Context, tenancy_id: &str, code: &Code) -> Result<(), CodeError> {
    let now = ctx.now();
    let changed = ctx
        .store
        .execute(
            "UPDATE verification_codes SET used_at = ?1 WHERE tenancy_id = ?2 AND id = ?3 AND used_at IS NULL \
             AND expires_at > ?1",
            vec![SqlValue::Integer(now), tenancy_id.into(), code.id.as_str().into()],
        )
        .await?;
    if changed == 1 {
        Ok(())
    } else {
        Err(CodeError::Known(KnownError::verification_code_already_used()))
    }
}

/// Deletes codes that expired more than a day ago (run by the hourly purge). Returns how many.
pub async fn purge_expired(ctx: &Context) -> Result<u64, StoreError> {
    let cutoff = ctx.now() - 24 * 3600 * 1000;
    ctx.store.execute("DELETE FROM verification_codes WHERE expires_at < ?", vec![cutoff.into()]).await
}

/// Why a code was not accepted.
#[derive(Debug)]
pub enum CodeError {
    /// The contract's answer to the caller.
    Known(KnownError),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for CodeError {
    fn from(e: StoreError) -> Self {
        CodeError::Store(e)
    }
}

impl From<CodeError> for crate::http::error::ApiError {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::Known(k) => k.into(),
            CodeError::Store(s) => s.into(),
        }
    }
}
