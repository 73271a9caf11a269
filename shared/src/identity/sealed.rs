//! Secrets kept for later use, sealed at rest: the OAuth providers' access and refresh tokens of
//! connected accounts (docs/api.md §2.6).
//!
//! AES-256-GCM (RustCrypto's `aes-gcm`, one pure-Rust engine on every runtime) under a key
//! derived from the deployment's server secret (HMAC-SHA256 with a fixed label), so no second
//! secret has to be configured and none is ever unset. A fresh 96-bit nonce per seal; the
//! row's identity is the associated data, so a sealed value copied into another row does not
//! open. The text form is `v1.` and base64url of nonce ‖ ciphertext ‖ tag.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::crypto::{base64url, base64url_decode};
use crate::store::ports::Random;

const VERSION: &str = "v1.";
const NONCE_LEN: usize = 12;

/// The sealing key: HMAC-SHA256(server secret, label).
fn cipher(server_secret: &str) -> Aes256Gcm {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(server_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"stack-edge-sealed-secrets-v1");
    Aes256Gcm::new_from_slice(&mac.finalize().into_bytes()).expect("32-byte key")
}

/// Seals `secret`, bound to `context` (the row it is stored in).
pub fn seal(server_secret: &str, random: &dyn Random, context: &str, secret: &str) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce);
    let sealed = cipher(server_secret)
        .encrypt(&Nonce::from(nonce), Payload { msg: secret.as_bytes(), aad: context.as_bytes() })
        .expect("AES-GCM seals any message this size");
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    format!("{VERSION}{}", base64url(&bytes))
}

/// Opens what [`seal`] made for `context`; `None` if it was altered, sealed for another row or
/// under another server secret.
pub fn open(server_secret: &str, context: &str, sealed: &str) -> Option<String> {
    let bytes = base64url_decode(sealed.strip_prefix(VERSION)?)?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::from(<[u8; NONCE_LEN]>::try_from(nonce).ok()?);
    let plain = cipher(server_secret).decrypt(&nonce, Payload { msg: ciphertext, aad: context.as_bytes() }).ok()?;
    String::from_utf8(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(std::cell::Cell<u8>);
    impl Random for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                self.0.set(self.0.get().wrapping_add(1));
                *b = self.0.get();
            }
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_secret_and_row() {
        let random = Counter(std::cell::Cell::new(0));
        let sealed = seal("server secret", &random, "row-1", "gho_provider_token");
        assert!(sealed.starts_with("v1.") && !sealed.contains("gho_provider_token"));
        assert_eq!(open("server secret", "row-1", &sealed).as_deref(), Some("gho_provider_token"));
        assert_eq!(open("server secret", "row-2", &sealed), None, "another row");
        assert_eq!(open("other secret", "row-1", &sealed), None, "another server secret");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open("server secret", "row-1", std::str::from_utf8(&altered).unwrap()), None);
        assert_ne!(seal("server secret", &random, "row-1", "gho_provider_token"), sealed, "a fresh nonce each time");
    }
}
