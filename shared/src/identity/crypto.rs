//! Secrets: generation, hashing at rest, constant-time comparison, ids.
//!
//! Refresh tokens and API keys carry at least 200 bits of entropy, so a single SHA-256 is the
//! right hash at rest (a slow password hash would add latency and no security). Lookups go by
//! hash; comparisons of hashes against caller input use constant-time equality.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::ports::Random;

/// Lowercase Crockford base32 (no i, l, o, u), as upstream's refresh tokens.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Length of a refresh token: 45 characters of 5 bits each = 225 bits.
pub const REFRESH_TOKEN_LENGTH: usize = 45;

/// A random string of `len` lowercase Crockford base32 characters.
pub fn random_crockford(random: &dyn Random, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    random.fill(&mut bytes);
    bytes.iter().map(|b| CROCKFORD[(b & 31) as usize] as char).collect()
}

/// A new refresh token.
pub fn new_refresh_token(random: &dyn Random) -> String {
    random_crockford(random, REFRESH_TOKEN_LENGTH)
}

/// A new API key with a readable prefix (`pck_`, `ssk_`, `sak_`), 40 random characters (200 bits).
pub fn new_api_key(random: &dyn Random, prefix: &str) -> String {
    format!("{prefix}_{}", random_crockford(random, 40))
}

/// A new random (version 4) UUID, lowercase hyphenated.
pub fn new_uuid(random: &dyn Random) -> String {
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// Whether `s` is a UUID in the canonical hyphenated form (any case).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The at-rest form of a secret: lowercase hex SHA-256.
pub fn hash_secret(secret: &str) -> String {
    hex(&sha256(secret.as_bytes()))
}

/// Constant-time equality of two strings (length is not hidden; our hashes have a fixed length).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, with or without padding.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(std::cell::Cell<u8>);
    impl Random for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                *b = self.0.get();
                self.0.set(self.0.get().wrapping_add(1));
            }
        }
    }

    #[test]
    fn refresh_tokens_use_the_crockford_alphabet() {
        let token = new_refresh_token(&Counter(std::cell::Cell::new(0)));
        assert_eq!(token.len(), 45);
        assert!(token.chars().all(|c| CROCKFORD.contains(&(c as u8))));
        assert!(!token.contains(['i', 'l', 'o', 'u']));
    }

    #[test]
    fn uuids_are_version_4() {
        let id = new_uuid(&Counter(std::cell::Cell::new(7)));
        assert!(is_uuid(&id));
        assert_eq!(&id[14..15], "4");
        assert!(!is_uuid("internal"));
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(hash_secret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(ct_eq("same", "same"));
        assert!(!ct_eq("same", "sane"));
    }
}
