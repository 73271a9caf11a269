//! Notification categories and users' preferences (docs/api.md §5.2: `USER_UNSUBSCRIBED`).
//! Two fixed categories as upstream: Transactional, which cannot be turned off, and Marketing.
//! A user turns a category off through the preferences API or an unsubscribe link in an email;
//! the link carries an HMAC-signed code, so it needs no stored state and cannot be forged for
//! another user or project.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::ports::StoreError;
use crate::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// A notification category users may (or may not) unsubscribe from.
pub struct Category {
    /// Its id, as upstream's.
    pub id: &'static str,
    /// Its display name.
    pub name: &'static str,
    /// Whether users may unsubscribe from it.
    pub can_disable: bool,
}

/// Sign-in codes, verification, password resets: always sent.
pub const TRANSACTIONAL: Category =
    Category { id: "7bb82d33-2f54-4a3d-9d23-82739e0d66ef", name: "Transactional", can_disable: false };
/// Marketing email: users may unsubscribe.
pub const MARKETING: Category =
    Category { id: "4f6f8873-3d04-46bd-8bef-18338b1a1b4c", name: "Marketing", can_disable: true };
/// Every category.
pub const CATEGORIES: [Category; 2] = [TRANSACTIONAL, MARKETING];

/// The category with id `id`.
pub fn category(id: &str) -> Option<Category> {
    CATEGORIES.into_iter().find(|c| c.id == id)
}

/// The category of an outbox email.
pub fn category_of(is_transactional: bool) -> Category {
    if is_transactional {
        TRANSACTIONAL
    } else {
        MARKETING
    }
}

/// Whether the user gets emails of `category` (on unless turned off; always for categories
/// that cannot be turned off).
pub async fn is_enabled(
    ctx: &Context,
    tenancy_id: &str,
    user_id: &str,
    category: Category,
) -> Result<bool, StoreError> {
    if !category.can_disable {
        return Ok(true);
    }
    let rows = ctx
        .store
        .query(
            "SELECT enabled FROM notification_preferences WHERE tenancy_id = ? AND user_id = ? AND category_id = ?",
            &[tenancy_id.into(), user_id.into(), category.id.into()],
        )
        .await?;
    Ok(rows.first().map(|row| row.bool("enabled")).transpose()?.unwrap_or(true))
}

/// Sets a user's preference for a category (an upsert).
pub async fn set_enabled(
    ctx: &Context,
    tenancy_id: &str,
    user_id: &str,
    category: Category,
    enabled: bool,
) -> Result<(), StoreError> {
    ctx.store
        .execute(
            "INSERT INTO notification_preferences (tenancy_id, user_id, category_id, enabled, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenancy_id, user_id, category_id) \
             DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
            vec![tenancy_id.into(), user_id.into(), category.id.into(), enabled.into(), ctx.now().into()],
        )
        .await?;
    Ok(())
}

/// What an unsubscribe code turns off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The tenancy of the unsubscribing user.
    pub tenancy_id: String,
    /// The user.
    pub user_id: String,
    /// The category they unsubscribe from.
    pub category: Category,
}

fn mac(secret: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"stack-edge unsubscribe v1\n");
    mac.update(payload.as_bytes());
    mac
}

/// `<payload>.<signature>`, both base64url; the payload is `tenancy\nuser\ncategory`.
pub fn unsubscribe_code(secret: &str, tenancy_id: &str, user_id: &str, category: Category) -> String {
    let payload = format!("{tenancy_id}\n{user_id}\n{}", category.id);
    let signature = mac(secret, &payload).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(signature))
}

/// The unsubscribe a code stands for, if `secret` signed it (checked in constant time).
pub fn verify_unsubscribe_code(secret: &str, code: &str) -> Option<Unsubscribe> {
    let (payload, signature) = code.split_once('.')?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    mac(secret, &payload).verify_slice(&signature).ok()?;
    let mut parts = payload.split('\n');
    let (tenancy_id, user_id, category_id) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Unsubscribe { tenancy_id: tenancy_id.into(), user_id: user_id.into(), category: category(category_id)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_verify_only_with_their_secret_and_unchanged() {
        let code = unsubscribe_code("secret", "t1", "u1", MARKETING);
        let expected = Unsubscribe { tenancy_id: "t1".into(), user_id: "u1".into(), category: MARKETING };
        assert_eq!(verify_unsubscribe_code("secret", &code), Some(expected));
        assert_eq!(verify_unsubscribe_code("other secret", &code), None);
        let (_, signature) = code.split_once('.').unwrap();
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(format!("t1\nu2\n{}", MARKETING.id)));
        assert_eq!(verify_unsubscribe_code("secret", &forged), None, "another user with the same signature");
        for garbage in ["", ".", "abc", "a.b.c", "!!.!!"] {
            assert_eq!(verify_unsubscribe_code("secret", garbage), None);
        }
    }

    #[test]
    fn only_marketing_can_be_turned_off() {
        assert_eq!(category_of(true), TRANSACTIONAL);
        assert_eq!(category(MARKETING.id), Some(MARKETING));
        const { assert!(!TRANSACTIONAL.can_disable && MARKETING.can_disable) };
        assert_eq!(category("nope"), None);
    }
}
