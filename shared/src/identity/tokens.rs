//! Access tokens: per-audience ES256 key derivation, signing, verification and the JWKS.
//!
//! Keys are derived statelessly from `STACK_SERVER_SECRET` (docs/api.md §1.4), so every runtime
//! and every instance signs and verifies the same tokens without sharing key material. Two keys
//! exist per audience: the legacy one (used for signing) and the new one (accepted, published).
//! JWT encoding and signature checks go through `jwt-compact` rather than hand-written JOSE; the
//! curve arithmetic is the build's fastest engine (`identity::es256`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use jwt_compact::{Claims, Header, Token, UntrustedToken};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::error::{ApiError, KnownError};
use crate::identity::crypto::{base64url, base64url_decode, sha256};
use crate::identity::es256::{self, Engine, SigningKey, VerifyingKey};

/// One derived signing key.
pub struct DerivedKey {
    /// The key id (`kid`) tokens signed with it carry.
    pub kid: String,
    signing: SigningKey,
    verifying: VerifyingKey,
    point: p256::EncodedPoint,
}

impl DerivedKey {
    /// `secret` is the base64url text both derivations produce; the private scalar is
    /// SHA-256 of its decoded bytes.
    fn from_secret(engine: Engine, secret: &str, kid: String) -> DerivedKey {
        let raw = base64url_decode(secret).expect("derived secrets are base64url");
        let (signing, verifying, point) = es256::key_pair(engine, &sha256(&raw));
        DerivedKey { kid, signing, verifying, point }
    }

    /// The public key as a JWK. Coordinates are always 32 bytes (RFC 7518 §6.2.1.2), unlike
    /// upstream, which drops leading zero bytes (see docs/upstream-differences.md).
    pub fn jwk(&self) -> Value {
        let point = &self.point;
        json!({
            "kty": "EC",
            "alg": "ES256",
            "crv": "P-256",
            "kid": self.kid,
            "x": base64url(point.x().expect("uncompressed point has x")),
            "y": base64url(point.y().expect("uncompressed point has y")),
        })
    }
}

/// The two keys of one audience, legacy first.
pub struct AudienceKeys {
    /// The legacy derivation, still accepted for verification.
    pub legacy: DerivedKey,
    /// The current derivation, used for signing.
    pub current: DerivedKey,
}

impl AudienceKeys {
    /// Derives both keys of `audience` from the server secret, for `engine`.
    pub fn derive(engine: Engine, server_secret: &str, audience: &str) -> AudienceKeys {
        let json_sha = |v: Value| sha256(v.to_string().as_bytes());

        let legacy_secret = base64url(&json_sha(json!([server_secret, audience])));
        let legacy_kid = base64url(&json_sha(json!([legacy_secret, "kid"])))[..12].to_string();

        let current_secret =
            base64url(&json_sha(json!(["stack-jwk-audience-secret", server_secret, { "audience": audience }])));
        let current_kid =
            base64url(&json_sha(json!(["stack-jwk-kid", server_secret, { "audience": audience }])))[..12].to_string();

        AudienceKeys {
            legacy: DerivedKey::from_secret(engine, &legacy_secret, legacy_kid),
            current: DerivedKey::from_secret(engine, &current_secret, current_kid),
        }
    }

    fn by_kid(&self, kid: Option<&str>) -> Vec<&DerivedKey> {
        match kid {
            Some(kid) => [&self.legacy, &self.current].into_iter().filter(|k| k.kid == kid).collect(),
            None => vec![&self.legacy, &self.current],
        }
    }
}

/// Derived keys per audience, computed on first use. Bounded: an attacker can name any audience
/// in an unverified token, so the cache is cleared when it grows past `MAX_AUDIENCES`.
pub struct KeyCache {
    engine: Engine,
    server_secret: String,
    map: RefCell<HashMap<String, Rc<AudienceKeys>>>,
}

const MAX_AUDIENCES: usize = 4096;
/// The longest audience a token may name (a project id and `:restricted`/`:anon` are far
/// shorter). Checked before anything is derived or cached: the audience is unverified input.
pub const MAX_AUDIENCE_CHARS: usize = 128;

impl KeyCache {
    /// A cache over `server_secret`'s keys on the build's default engine.
    pub fn new(server_secret: String) -> KeyCache {
        KeyCache::on(Engine::DEFAULT, server_secret)
    }

    /// A cache over `server_secret`'s keys on `engine` (the signing benchmark compares them).
    pub fn on(engine: Engine, server_secret: String) -> KeyCache {
        KeyCache { engine, server_secret, map: RefCell::new(HashMap::new()) }
    }

    /// The keys of `audience`, derived on first use.
    pub fn for_audience(&self, audience: &str) -> Rc<AudienceKeys> {
        if let Some(keys) = self.map.borrow().get(audience) {
            return keys.clone();
        }
        let keys = Rc::new(AudienceKeys::derive(self.engine, &self.server_secret, audience));
        let mut map = self.map.borrow_mut();
        if map.len() >= MAX_AUDIENCES {
            map.clear();
        }
        map.insert(audience.to_string(), keys.clone());
        keys
    }
}

/// Which of the three kinds of user a token is for; it selects `iss` and `aud`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    /// A normal user.
    Normal,
    /// A restricted user (for example, an unverified email).
    Restricted,
    /// An anonymous user.
    Anonymous,
}

impl UserKind {
    /// The token audience for this kind in `project_id`.
    pub fn audience(self, project_id: &str) -> String {
        match self {
            UserKind::Normal => project_id.to_string(),
            UserKind::Restricted => format!("{project_id}:restricted"),
            UserKind::Anonymous => format!("{project_id}:anon"),
        }
    }

    /// The token issuer for this kind in `project_id`.
    pub fn issuer(self, api_url: &str, project_id: &str) -> String {
        let segment = match self {
            UserKind::Normal => "projects",
            UserKind::Restricted => "projects-restricted-users",
            UserKind::Anonymous => "projects-anonymous-users",
        };
        format!("{api_url}/api/v1/{segment}/{project_id}")
    }

    /// Splits an audience into project id and kind.
    fn parse_audience(aud: &str) -> (&str, UserKind) {
        if let Some(p) = aud.strip_suffix(":anon") {
            (p, UserKind::Anonymous)
        } else if let Some(p) = aud.strip_suffix(":restricted") {
            (p, UserKind::Restricted)
        } else {
            (aud, UserKind::Normal)
        }
    }
}

/// The custom claims of an access token (docs/api.md §1.4), besides `iat` and `exp`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessTokenClaims {
    /// The user id.
    pub sub: String,
    /// The project id.
    pub project_id: String,
    #[serde(alias = "branchId")]
    /// The branch id.
    pub branch_id: String,
    #[serde(alias = "refreshTokenId", default)]
    /// The session the token was minted from.
    pub refresh_token_id: Option<String>,
    /// Always `authenticated`.
    pub role: String,
    /// The user's display name.
    pub name: Option<String>,
    /// The user's primary email.
    pub email: Option<String>,
    /// Whether that email is verified.
    pub email_verified: bool,
    /// The user's selected team.
    pub selected_team_id: Option<String>,
    /// When the user signed up, in seconds.
    pub signed_up_at: i64,
    /// Whether the user is anonymous.
    pub is_anonymous: bool,
    #[serde(default)]
    /// Whether the user is restricted.
    pub is_restricted: Option<bool>,
    #[serde(default)]
    /// Why the user is restricted.
    pub restricted_reason: Option<Value>,
    #[serde(default)]
    /// Whether the user must pass TOTP.
    pub requires_totp_mfa: bool,
    /// The issuer.
    pub iss: String,
    /// The audience.
    pub aud: String,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessToken {
    /// The project the token is for.
    pub project_id: String,
    /// The branch.
    pub branch_id: String,
    /// The user.
    pub user_id: String,
    /// The session it was minted from.
    pub refresh_token_id: Option<String>,
    /// Whether the user is anonymous.
    pub is_anonymous: bool,
    /// Whether the user is restricted.
    pub is_restricted: bool,
    /// Why the user is restricted.
    pub restricted_reason: Option<Value>,
    /// When the token expires, in milliseconds.
    pub expires_at_millis: i64,
}

/// Signs an access token for `claims` with the legacy key of its audience.
pub async fn sign(
    keys: &KeyCache,
    claims: AccessTokenClaims,
    now_millis: i64,
    lifetime_millis: i64,
) -> Result<String, ApiError> {
    let audience = keys.for_audience(&claims.aud);
    let header = Header::empty().with_key_id(audience.legacy.kid.clone());
    let issued = seconds(now_millis);
    let mut claims = Claims::new(claims);
    claims.issued_at = Some(issued);
    claims.expiration = Some(issued + chrono::Duration::milliseconds(lifetime_millis));
    es256::sign(&header, &claims, &audience.legacy.signing)
        .await
        .map_err(|e| ApiError::internal(format!("could not sign an access token: {e}")))
}

fn seconds(millis: i64) -> DateTime<Utc> {
    // JWT times are whole seconds.
    DateTime::from_timestamp(millis.div_euclid(1000), 0).expect("time in range")
}

/// Verifies `token` (docs/api.md §1.4 decoding rules) at time `now_millis`.
pub async fn verify(keys: &KeyCache, token: &str, now_millis: i64) -> Result<AccessToken, KnownError> {
    let unparsable = KnownError::unparsable_access_token;
    let untrusted = UntrustedToken::new(token).map_err(|_| unparsable())?;
    if untrusted.algorithm() != "ES256" {
        return Err(unparsable());
    }
    // The audience picks the keys, so it is read before the signature is checked; nothing
    // else of the unverified payload is trusted.
    let unverified: Claims<Value> = untrusted.deserialize_claims_unchecked().map_err(|_| unparsable())?;
    let aud = unverified.custom.get("aud").and_then(Value::as_str).ok_or_else(unparsable)?;
    if aud.len() > MAX_AUDIENCE_CHARS {
        return Err(unparsable());
    }
    let audience = keys.for_audience(aud);
    let kid = untrusted.header().key_id.as_deref();
    let mut verified: Option<Token<AccessTokenClaims>> = None;
    for key in audience.by_kid(kid) {
        verified = es256::verify(&untrusted, &key.verifying).await;
        if verified.is_some() {
            break;
        }
    }
    let verified = verified.ok_or_else(unparsable)?;
    let claims = verified.claims();
    let c = &claims.custom;

    let (aud_project, kind) = UserKind::parse_audience(&c.aud);
    if aud_project != c.project_id {
        return Err(unparsable());
    }
    // Any of the three issuers of this project is allowed; request auth applies the
    // anonymous/restricted header rules itself. The API URL part is not compared, so tokens
    // survive a change of public URL.
    let allowed_issuer = [UserKind::Normal, UserKind::Restricted, UserKind::Anonymous]
        .iter()
        .any(|k| c.iss.ends_with(&k.issuer("", &c.project_id)));
    if !allowed_issuer {
        return Err(unparsable());
    }

    let expires_at_millis = claims.expiration.ok_or_else(unparsable)?.timestamp_millis();
    if expires_at_millis <= now_millis {
        return Err(KnownError::access_token_expired(
            Some(expires_at_millis),
            Some((c.project_id.clone(), c.sub.clone(), c.refresh_token_id.clone())),
        ));
    }

    let is_restricted = c.is_restricted.unwrap_or(c.is_anonymous);
    let restricted_reason = match (&c.restricted_reason, c.is_anonymous) {
        (None, true) => Some(json!({ "type": "anonymous" })),
        (reason, _) => reason.clone().filter(|r| !r.is_null()),
    };
    // Inconsistent flags cannot come from our own signer. Upstream raises a 500 here; a token we
    // cannot make sense of is simply not parsable (docs/upstream-differences.md).
    let expected_kind = if c.is_anonymous {
        UserKind::Anonymous
    } else if is_restricted {
        UserKind::Restricted
    } else {
        UserKind::Normal
    };
    if (c.is_anonymous && !is_restricted) || (is_restricted && restricted_reason.is_none()) || kind != expected_kind {
        return Err(unparsable());
    }

    Ok(AccessToken {
        project_id: c.project_id.clone(),
        branch_id: c.branch_id.clone(),
        user_id: c.sub.clone(),
        refresh_token_id: c.refresh_token_id.clone(),
        is_anonymous: c.is_anonymous,
        is_restricted,
        restricted_reason,
        expires_at_millis,
    })
}

/// The JWKS of a project: two keys per audience, normal then restricted then anonymous.
pub fn jwks(keys: &KeyCache, project_id: &str, include_restricted: bool, include_anonymous: bool) -> Value {
    let mut kinds = vec![UserKind::Normal];
    if include_restricted || include_anonymous {
        kinds.push(UserKind::Restricted);
    }
    if include_anonymous {
        kinds.push(UserKind::Anonymous);
    }
    let list: Vec<Value> = kinds
        .into_iter()
        .flat_map(|kind| {
            let audience = keys.for_audience(&kind.audience(project_id));
            [audience.legacy.jwk(), audience.current.jwk()]
        })
        .collect();
    json!({ "keys": list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    // The in-process engines never wait, so the tests poll signing and checking once.
    fn sign(keys: &KeyCache, claims: AccessTokenClaims, now: i64, lifetime: i64) -> String {
        super::sign(keys, claims, now, lifetime).now_or_never().expect("in-process engines do not wait").unwrap()
    }

    fn verify(keys: &KeyCache, token: &str, now: i64) -> Result<AccessToken, KnownError> {
        super::verify(keys, token, now).now_or_never().expect("in-process engines do not wait")
    }

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQ";

    fn claims(project: &str, kind: UserKind) -> AccessTokenClaims {
        AccessTokenClaims {
            sub: "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f".into(),
            project_id: project.into(),
            branch_id: "main".into(),
            refresh_token_id: Some("0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d".into()),
            role: "authenticated".into(),
            name: None,
            email: None,
            email_verified: false,
            selected_team_id: None,
            signed_up_at: 1_700_000_000,
            is_anonymous: kind == UserKind::Anonymous,
            is_restricted: Some(kind != UserKind::Normal),
            restricted_reason: match kind {
                UserKind::Normal => None,
                UserKind::Restricted => Some(json!({"type": "restricted_by_administrator"})),
                UserKind::Anonymous => Some(json!({"type": "anonymous"})),
            },
            requires_totp_mfa: false,
            iss: kind.issuer("http://localhost:8102", project),
            aud: kind.audience(project),
        }
    }

    #[test]
    fn signs_and_verifies_each_kind() {
        let keys = KeyCache::new(SECRET.into());
        for kind in [UserKind::Normal, UserKind::Restricted, UserKind::Anonymous] {
            let token = sign(&keys, claims("p1", kind), 1_000_000, 600_000);
            let decoded = verify(&keys, &token, 1_000_500).unwrap();
            assert_eq!(decoded.project_id, "p1");
            assert_eq!(decoded.is_anonymous, kind == UserKind::Anonymous);
            assert_eq!(decoded.expires_at_millis, 1_600_000);
        }
    }

    /// Tokens of one secret verify whichever engine signed them (natively ring and p256).
    #[test]
    fn tokens_verify_across_engines() {
        let portable = KeyCache::on(Engine::P256, SECRET.into());
        let default = KeyCache::new(SECRET.into());
        for (signer, verifier) in [(&portable, &default), (&default, &portable)] {
            let token = sign(signer, claims("p1", UserKind::Normal), 1_000_000, 600_000);
            assert_eq!(verify(verifier, &token, 1_000_500).unwrap().project_id, "p1");
        }
        assert_eq!(jwks(&portable, "p1", true, true), jwks(&default, "p1", true, true), "one public key set");
    }

    #[test]
    fn long_unverified_audiences_are_refused_before_any_key_is_derived() {
        let signer = KeyCache::new("b3RoZXItc2VjcmV0".into());
        let mut long = claims("p1", UserKind::Normal);
        long.aud = "p".repeat(MAX_AUDIENCE_CHARS + 1);
        let token = sign(&signer, long, 1_000_000, 600_000);
        let keys = KeyCache::new(SECRET.into());
        assert_eq!(verify(&keys, &token, 1_000_001).unwrap_err().code, "UNPARSABLE_ACCESS_TOKEN");
        assert!(keys.map.borrow().is_empty(), "nothing was derived or cached for it");
    }

    #[test]
    fn expired_tokens_report_when() {
        let keys = KeyCache::new(SECRET.into());
        let token = sign(&keys, claims("p1", UserKind::Normal), 1_000_000, 60_000);
        let err = verify(&keys, &token, 1_060_000).unwrap_err();
        assert_eq!(err.code, "ACCESS_TOKEN_EXPIRED");
        assert_eq!(err.details.unwrap()["expired_at_millis"], 1_060_000);
    }

    #[test]
    fn tokens_of_another_secret_or_tampered_do_not_verify() {
        let keys = KeyCache::new(SECRET.into());
        let other = KeyCache::new("b3RoZXItc2VjcmV0".into());
        let token = sign(&other, claims("p1", UserKind::Normal), 1_000_000, 600_000);
        assert_eq!(verify(&keys, &token, 1_000_001).unwrap_err().code, "UNPARSABLE_ACCESS_TOKEN");
        assert_eq!(verify(&keys, "abc.def.ghi", 0).unwrap_err().code, "UNPARSABLE_ACCESS_TOKEN");
        let good = sign(&keys, claims("p1", UserKind::Normal), 1_000_000, 600_000);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = base64url(
            &serde_json::to_vec(&{
                let mut c = serde_json::to_value(claims("p2", UserKind::Normal)).unwrap();
                c["exp"] = json!(2_000_000);
                c
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert_eq!(verify(&keys, &parts.join("."), 1_000_001).unwrap_err().code, "UNPARSABLE_ACCESS_TOKEN");
    }

    #[test]
    fn header_has_only_alg_and_kid() {
        let keys = KeyCache::new(SECRET.into());
        let token = sign(&keys, claims("p1", UserKind::Normal), 1_000_000, 600_000);
        let header: Value =
            serde_json::from_slice(&base64url_decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        let kid = keys.for_audience("p1").legacy.kid.clone();
        assert_eq!(header, json!({ "alg": "ES256", "kid": kid }));
    }

    #[test]
    fn jwks_has_two_keys_per_audience_with_distinct_kids() {
        let keys = KeyCache::new(SECRET.into());
        for (r, a, n) in [(false, false, 2), (true, false, 4), (false, true, 6), (true, true, 6)] {
            let set = jwks(&keys, "p1", r, a);
            let list = set["keys"].as_array().unwrap();
            assert_eq!(list.len(), n);
            let kids: std::collections::HashSet<_> = list.iter().map(|k| k["kid"].as_str().unwrap()).collect();
            assert_eq!(kids.len(), n);
            for k in list {
                assert_eq!(base64url_decode(k["x"].as_str().unwrap()).unwrap().len(), 32);
            }
        }
    }
}
