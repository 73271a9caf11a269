//! ES256 (ECDSA over P-256 with SHA-256) on the fastest engine each build has, with jwt-compact
//! keeping the token format (header, claims, base64url, validation).
//!
//! The key decision: the engine is chosen per build. Natively it is `ring`, whose assembly P-256
//! signs about 7× faster than the pure-Rust `p256` crate on this machine (docs/benchmarks.md);
//! ring rather than aws-lc-rs because ring is already in the native build (rustls), the two
//! signed within 6% of each other, and aws-lc-rs would add a CMake-built C library to every cold
//! build. Components use ring too: built for wasm32-wasip2 with the clang the SQLite build
//! already needs, its portable C signs 2.8× faster than `p256` under wasmtime. On Workers it is
//! the runtime's WebCrypto (`crypto.subtle`, native code in workerd) rather than wasm arithmetic. The in-process engines implement
//! jwt-compact's `Algorithm` ([`Es256`]); WebCrypto is asynchronous, which that trait is not, so
//! it runs through [`Deferred`]: jwt-compact writes or checks everything but the signature
//! bytes, and WebCrypto signs or checks those.
//!
//! Keys come from the same scalar on every engine and signatures are the same 64-byte `r‖s`, so
//! a token signed by one engine verifies on every other. ring's and WebCrypto's nonces are
//! random, p256's is derived (RFC 6979): one set of claims signed twice need not give the same
//! bytes, and nothing relies on it.

#[cfg(feature = "cloudflare")]
mod webcrypto;

use std::borrow::Cow;
use std::cell::RefCell;
use std::num::NonZeroUsize;

use jwt_compact::{Algorithm, AlgorithmExt, AlgorithmSignature, Claims, Header, Token, UntrustedToken};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use serde::{de::DeserializeOwned, Serialize};

/// Which implementation of the curve arithmetic a key uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The pure-Rust `p256` crate: every build has it.
    P256,
    /// `ring` (native and component builds).
    #[cfg(any(feature = "native", feature = "spin-component"))]
    Ring,
    /// The Workers runtime's WebCrypto (Cloudflare builds).
    #[cfg(feature = "cloudflare")]
    WebCrypto,
}

impl Engine {
    /// The engine this build signs with: ring natively and on components, WebCrypto on
    /// Workers — or `p256` everywhere with the `portable-es256` feature, which the signing
    /// benchmarks build as their baseline.
    pub const DEFAULT: Engine = {
        #[cfg(all(any(feature = "native", feature = "spin-component"), not(feature = "portable-es256")))]
        {
            Engine::Ring
        }
        #[cfg(all(
            feature = "cloudflare",
            not(any(feature = "native", feature = "spin-component")),
            not(feature = "portable-es256")
        ))]
        {
            Engine::WebCrypto
        }
        #[cfg(any(
            feature = "portable-es256",
            not(any(feature = "native", feature = "spin-component", feature = "cloudflare"))
        ))]
        {
            Engine::P256
        }
    };
}

/// A private key, on the engine it was made for.
pub enum SigningKey {
    /// A `p256` key.
    P256(p256::ecdsa::SigningKey),
    /// A `ring` key pair.
    #[cfg(any(feature = "native", feature = "spin-component"))]
    Ring(ring::signature::EcdsaKeyPair),
    /// A WebCrypto key, imported on first use.
    #[cfg(feature = "cloudflare")]
    WebCrypto(webcrypto::Key),
}

/// A public key, on the engine it was made for.
pub enum VerifyingKey {
    /// A `p256` key.
    P256(p256::ecdsa::VerifyingKey),
    /// A `ring` key: the uncompressed SEC1 point.
    #[cfg(any(feature = "native", feature = "spin-component"))]
    Ring(ring::signature::UnparsedPublicKey<Vec<u8>>),
    /// A WebCrypto key, imported on first use.
    #[cfg(feature = "cloudflare")]
    WebCrypto(webcrypto::Key),
}

/// Both keys of one P-256 scalar on `engine`, and the public point (for the JWK).
pub fn key_pair(engine: Engine, scalar: &[u8; 32]) -> (SigningKey, VerifyingKey, p256::EncodedPoint) {
    // A SHA-256 output is a valid P-256 scalar except with probability ~2^-128.
    let portable = p256::ecdsa::SigningKey::from_slice(scalar).expect("derived scalar is a valid P-256 key");
    let point = portable.verifying_key().to_encoded_point(false);
    match engine {
        Engine::P256 => {
            let verifying = *portable.verifying_key();
            (SigningKey::P256(portable), VerifyingKey::P256(verifying), point)
        }
        #[cfg(any(feature = "native", feature = "spin-component"))]
        Engine::Ring => {
            use ring::signature::{
                EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
            };
            let rng = ring::rand::SystemRandom::new();
            let pair = EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                scalar,
                point.as_bytes(),
                &rng,
            )
            .expect("ring accepts the key p256 derived");
            let verifying = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes().to_vec());
            (SigningKey::Ring(pair), VerifyingKey::Ring(verifying), point)
        }
        #[cfg(feature = "cloudflare")]
        Engine::WebCrypto => (
            SigningKey::WebCrypto(webcrypto::Key::private(scalar, &point)),
            VerifyingKey::WebCrypto(webcrypto::Key::public(&point)),
            point,
        ),
    }
}

/// Signs `claims` under `header` as a compact JWS.
pub async fn sign<T: Serialize>(header: &Header, claims: &Claims<T>, key: &SigningKey) -> Result<String, String> {
    #[cfg(feature = "cloudflare")]
    if let SigningKey::WebCrypto(key) = key {
        let unsigned = Deferred::default().token(header, claims, &()).map_err(|e| e.to_string())?;
        let (signed_part, _placeholder) = unsigned.rsplit_once('.').expect("a compact JWS has three parts");
        let signature = key.sign(signed_part.as_bytes()).await?;
        return Ok(format!("{signed_part}.{}", crate::identity::crypto::base64url(&signature)));
    }
    Es256.token(header, claims, key).map_err(|e| e.to_string())
}

/// `token` with its claims, when `key` verifies its signature.
pub async fn verify<T: DeserializeOwned + Clone>(token: &UntrustedToken<'_>, key: &VerifyingKey) -> Option<Token<T>> {
    #[cfg(feature = "cloudflare")]
    if let VerifyingKey::WebCrypto(key) = key {
        let deferred = Deferred::default();
        let parsed = deferred.validator::<T>(&()).validate(token).ok()?;
        let (message, signature) = deferred.seen.take()?;
        return match key.verify(&message, &signature.0).await {
            Ok(true) => Some(parsed),
            Ok(false) => None,
            Err(e) => {
                // Fails closed: the token is refused, and the operator learns why.
                tracing::warn!(error = %e, "WebCrypto could not check a token signature");
                None
            }
        };
    }
    Es256.validator::<T>(key).validate(token).ok()
}

/// jwt-compact's `Algorithm` for the in-process engines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Es256;

/// An ES256 signature: `r‖s`, 32 bytes each (RFC 7518 §3.4).
pub struct Signature([u8; 64]);

impl AlgorithmSignature for Signature {
    const LENGTH: Option<NonZeroUsize> = NonZeroUsize::new(64);

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(Signature(slice.try_into()?))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl Algorithm for Es256 {
    type SigningKey = SigningKey;
    type VerifyingKey = VerifyingKey;
    type Signature = Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("ES256")
    }

    fn sign(&self, key: &SigningKey, message: &[u8]) -> Signature {
        match key {
            SigningKey::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                Signature(signature.to_bytes().into())
            }
            #[cfg(any(feature = "native", feature = "spin-component"))]
            SigningKey::Ring(pair) => {
                let signature = pair.sign(&ring::rand::SystemRandom::new(), message).expect("the system RNG works");
                Signature(signature.as_ref().try_into().expect("a FIXED signature is 64 bytes"))
            }
            #[cfg(feature = "cloudflare")]
            SigningKey::WebCrypto(_) => unreachable!("WebCrypto keys sign through es256::sign"),
        }
    }

    fn verify_signature(&self, signature: &Signature, key: &VerifyingKey, message: &[u8]) -> bool {
        match key {
            VerifyingKey::P256(key) => p256::ecdsa::Signature::from_slice(&signature.0)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            #[cfg(any(feature = "native", feature = "spin-component"))]
            VerifyingKey::Ring(key) => key.verify(message, &signature.0).is_ok(),
            #[cfg(feature = "cloudflare")]
            VerifyingKey::WebCrypto(_) => unreachable!("WebCrypto keys verify through es256::verify"),
        }
    }
}

/// ES256 with the signature work left to the caller: signing writes a placeholder signature,
/// and checking one keeps the signed bytes and the signature it was given (and passes), for the
/// caller to check with an asynchronous engine before trusting the claims.
#[derive(Default)]
#[cfg_attr(not(feature = "cloudflare"), allow(dead_code))] // elsewhere only its test uses it
struct Deferred {
    seen: RefCell<Option<(Vec<u8>, Signature)>>,
}

impl Algorithm for Deferred {
    type SigningKey = ();
    type VerifyingKey = ();
    type Signature = Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("ES256")
    }

    fn sign(&self, _: &(), _: &[u8]) -> Signature {
        Signature([0; 64])
    }

    fn verify_signature(&self, signature: &Signature, _: &(), message: &[u8]) -> bool {
        *self.seen.borrow_mut() = Some((message.to_vec(), Signature(signature.0)));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> Vec<Engine> {
        #[cfg(any(feature = "native", feature = "spin-component"))]
        return vec![Engine::P256, Engine::Ring];
        #[cfg(not(any(feature = "native", feature = "spin-component")))]
        return vec![Engine::P256];
    }

    /// Whatever engine signed, every engine verifies; a changed message or key does not.
    #[test]
    fn every_engine_verifies_every_engines_signatures() {
        let scalar = [7u8; 32];
        let message = b"header.claims";
        for signer in engines() {
            let (signing, _, point) = key_pair(signer, &scalar);
            let signature = Es256.sign(&signing, message);
            for verifier in engines() {
                let (_, verifying, same_point) = key_pair(verifier, &scalar);
                assert_eq!(point, same_point, "one scalar, one public key");
                assert!(Es256.verify_signature(&signature, &verifying, message), "{signer:?} → {verifier:?}");
                assert!(!Es256.verify_signature(&signature, &verifying, b"header.claimz"));
                let (_, other, _) = key_pair(verifier, &[8u8; 32]);
                assert!(!Es256.verify_signature(&signature, &other, message));
            }
        }
    }

    /// The deferred algorithm hands over exactly what an in-process engine would have signed.
    #[test]
    fn deferred_signing_leaves_only_the_signature_to_fill() {
        let (signing, verifying, _) = key_pair(Engine::P256, &[7u8; 32]);
        let header = Header::empty().with_key_id("k");
        let claims = Claims::new(serde_json::json!({ "sub": "u" }));
        let unsigned = Deferred::default().token(&header, &claims, &()).unwrap();
        let (signed_part, _) = unsigned.rsplit_once('.').unwrap();
        let signature = Es256.sign(&signing, signed_part.as_bytes());
        let token = format!("{signed_part}.{}", crate::identity::crypto::base64url(&signature.0));
        let checked = Es256.validator::<serde_json::Value>(&verifying).validate(&UntrustedToken::new(&token).unwrap());
        assert_eq!(checked.unwrap().claims().custom["sub"], "u");

        let deferred = Deferred::default();
        deferred.validator::<serde_json::Value>(&()).validate(&UntrustedToken::new(&token).unwrap()).unwrap();
        let (message, seen) = deferred.seen.take().unwrap();
        assert_eq!(message, signed_part.as_bytes());
        assert_eq!(seen.0, signature.0);
    }
}
