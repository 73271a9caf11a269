//! Passwords (docs/api.md §1.11): argon2id hashes at rest, verification that does the same work
//! whether or not the email exists, and the password credential of a user.
//!
//! The key decision: one parameter set (OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane),
//! pure Rust (the `argon2` crate), so every runtime hashes alike and a hash made on one
//! verifies on another. Its cost per runtime is in docs/benchmarks.md. An unknown email is
//! verified against [`DUMMY_HASH`], made with the same parameters, so both failures cost one
//! argon2id run and answer the same error.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::context::Context;
use crate::identity::users::{User, USER_COLUMNS};
use crate::store::ports::{Random, SqlValue, StoreError};

/// Memory per hash, in KiB.
pub const MEMORY_KIB: u32 = 19_456;
/// Passes over the memory.
pub const PASSES: u32 = 2;
/// Lanes.
pub const LANES: u32 = 1;
/// The shortest password accepted (upstream's).
pub const MIN_LENGTH: usize = 8;
/// The longest password accepted (upstream's; also bounds the hashing input).
pub const MAX_LENGTH: usize = 70;

/// The hash an unknown email's attempt is checked against: the same parameters as every
/// stored hash, of a password nobody knows (a test keeps the parameters equal).
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3RhY2stZWRnZS1kdW1teQ$yjSIrbrfQAcjV6zUpj4q488ni+8fmI6qwRlJdkihono";

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(random: &dyn Random, password: &str) -> String {
    let mut salt = [0u8; 16];
    random.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    argon2().hash_password(password.as_bytes(), &salt).expect("argon2id hashes any input").to_string()
}

/// Whether `password` matches `stored`; with no stored hash (an unknown email) the same work is
/// done against [`DUMMY_HASH`] and the answer is false. The digest comparison is constant-time.
pub fn verify(stored: Option<&str>, password: &str) -> bool {
    let (phc, known) = match stored {
        Some(phc) => (phc, true),
        None => (DUMMY_HASH, false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok() && known
}

/// The password problem with `password`, if any: too short or too long (in characters).
pub fn length_problem(password: &str) -> Option<crate::http::error::KnownError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        Some(crate::http::error::KnownError::password_too_short(MIN_LENGTH))
    } else if length > MAX_LENGTH {
        Some(crate::http::error::KnownError::password_too_long(MAX_LENGTH))
    } else {
        None
    }
}

/// The sign-in address as stored: trimmed and lower-cased.
pub fn normalized_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The user signing in with `email` in the tenancy and their stored hash, if any.
pub async fn find_by_email(ctx: &Context, tenancy_id: &str, email: &str) -> Result<Option<(User, String)>, StoreError> {
    let sql = format!(
        "SELECT {USER_COLUMNS}, c.password_hash FROM password_credentials c \
         JOIN users u ON u.tenancy_id = c.tenancy_id AND u.id = c.user_id WHERE c.tenancy_id = ? AND c.email = ?"
    );
    let rows = ctx.store.query(&sql, &[tenancy_id.into(), normalized_email(email).into()]).await?;
    match rows.first() {
        None => Ok(None),
        Some(row) => Ok(Some((User::from_row(row)?, row.text("password_hash")?))),
    }
}

/// The stored hash of a user's password, if they have one.
pub async fn hash_of(ctx: &Context, tenancy_id: &str, user_id: &str) -> Result<Option<String>, StoreError> {
    let rows = ctx
        .store
        .query(
            "SELECT password_hash FROM password_credentials WHERE tenancy_id = ? AND user_id = ?",
            &[tenancy_id.into(), user_id.into()],
        )
        .await?;
    rows.first().map(|r| r.text("password_hash")).transpose()
}

/// Replaces a user's password hash. Returns false when the user has no password.
pub async fn replace(ctx: &Context, tenancy_id: &str, user_id: &str, password: &str) -> Result<bool, StoreError> {
    let changed = ctx
        .store
        .execute(
            "UPDATE password_credentials SET password_hash = ?1, updated_at = ?2 WHERE tenancy_id = ?3 AND user_id = ?4",
            vec![
                hash(ctx.random.as_ref(), password).into(),
                SqlValue::Integer(ctx.now()),
                tenancy_id.into(),
                user_id.into(),
            ],
        )
        .await?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Random for Fixed {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(7);
        }
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash(&Fixed, "correct horse");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify(Some(&stored), "correct horse"));
        assert!(!verify(Some(&stored), "correct horsf"));
    }

    #[test]
    fn an_unknown_email_costs_the_same_argon2id_run_and_fails() {
        // The dummy hash is a real hash with the stored hashes' parameters, so verifying
        // against it is one full argon2id run, as for a wrong password.
        let dummy = PasswordHash::new(DUMMY_HASH).expect("the dummy hash parses");
        let real = hash(&Fixed, "whatever");
        let real = PasswordHash::new(&real).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(!verify(None, "whatever"));
        assert!(!verify(None, ""));
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        assert!(length_problem("1234567").is_some());
        assert!(length_problem("12345678").is_none());
        assert!(length_problem(&"é".repeat(70)).is_none());
        assert!(length_problem(&"é".repeat(71)).is_some());
    }
}
