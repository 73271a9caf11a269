//! Access tokens and JWKS (docs/api.md §1.4, §1.7), verified with an independent JWT library
//! (`jsonwebtoken`), not with our own code.

use api_tests::{host, Host, Project};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

async fn jwks(h: &Host, project: &str, query: &str) -> (JwkSet, api_tests::Res) {
    let res = h.get(&format!("/api/v1/projects/{project}/.well-known/jwks.json{query}")).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    (serde_json::from_str(&res.text).expect("a JWK set"), res)
}

/// Verifies `token` against the project's published keys, as a relying party would.
async fn verify(
    h: &Host,
    project: &Project,
    token: &str,
    audience: &str,
    query: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let (set, _) = jwks(h, &project.id, query).await;
    let header = decode_header(token)?;
    let kid = header.kid.expect("tokens carry a kid");
    let Some(jwk) = set.find(&kid) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.leeway = 0;
    decode::<Value>(token, &key, &validation).map(|d| d.claims)
}

#[tokio::test]
async fn a_refreshed_token_verifies_against_the_jwks_with_the_contract_claims() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h
        .user_with_session(
            &p,
            json!({ "display_name": "Grace", "primary_email": "grace@example.com", "primary_email_verified": true }),
        )
        .await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    let token = res.json()["access_token"].as_str().unwrap().to_string();

    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert!(header.typ.is_none(), "no typ in the protected header");

    let claims = verify(h, &p, &token, &p.id, "").await.expect("verifies");
    assert_eq!(claims["sub"], s.user_id);
    assert_eq!(claims["project_id"], p.id);
    assert_eq!(claims["branch_id"], "main");
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["name"], "Grace");
    assert_eq!(claims["email"], "grace@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["is_anonymous"], false);
    assert_eq!(claims["is_restricted"], false);
    assert_eq!(claims["restricted_reason"], Value::Null);
    assert_eq!(claims["requires_totp_mfa"], false);
    assert_eq!(claims["selected_team_id"], Value::Null);
    assert!(claims["iss"].as_str().unwrap().ends_with(&format!("/api/v1/projects/{}", p.id)));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600, "default lifetime 10 min");
    assert!(claims["signed_up_at"].as_i64().unwrap() < 10_000_000_000, "signed_up_at is in seconds");
    assert!(claims["refresh_token_id"].is_string());
}

#[tokio::test]
async fn a_token_does_not_verify_for_another_project() {
    let h = host();
    let a = h.create_project(false).await;
    let b = h.create_project(false).await;
    let s = h.user_with_session(&a, json!({})).await;
    let (set_b, _) = jwks(h, &b.id, "").await;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&b.id]);
    // With project B's keys the signature fails, whichever of B's keys is tried.
    for jwk in &set_b.keys {
        let key = DecodingKey::from_jwk(jwk).unwrap();
        assert!(decode::<Value>(&s.access_token, &key, &validation).is_err());
    }
    // With A's keys but B's audience it fails too.
    assert!(verify(h, &a, &s.access_token, &b.id, "").await.is_err());
    assert!(verify(h, &a, &s.access_token, &a.id, "").await.is_ok());
}

#[tokio::test]
async fn jwks_lists_two_keys_per_audience_with_distinct_kids() {
    let h = host();
    let p = h.create_project(false).await;
    for (query, count) in [("", 2), ("?include_restricted=true", 4), ("?include_anonymous=true", 6)] {
        let (set, res) = jwks(h, &p.id, query).await;
        assert_eq!(res.header("cache-control"), Some("public, max-age=3600"));
        assert_eq!(set.keys.len(), count, "{query}");
        let raw: Value = res.json();
        let mut kids = std::collections::HashSet::new();
        for key in raw["keys"].as_array().unwrap() {
            assert_eq!(key["kty"], "EC");
            assert_eq!(key["alg"], "ES256");
            assert_eq!(key["crv"], "P-256");
            for coord in ["x", "y"] {
                let text = key[coord].as_str().unwrap();
                assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "base64url {text}");
            }
            kids.insert(key["kid"].as_str().unwrap().to_string());
        }
        assert_eq!(kids.len(), count);
    }
    let res = h.get("/api/v1/projects/7d1a0c2e-0000-4000-8000-000000000000/.well-known/jwks.json").send().await;
    assert_eq!(res.status, 404);
    assert_eq!(res.text, "Project not found");
    let internal = h.get("/api/v1/projects/internal/.well-known/jwks.json").send().await;
    assert_eq!(serde_json::from_str::<JwkSet>(&internal.text).unwrap().keys.len(), 2);
}

#[tokio::test]
async fn anonymous_tokens_use_their_own_audience_and_keys() {
    let h = host();
    let p = h.create_project(false).await;
    let normal = h.user_with_session(&p, json!({})).await;
    let anon = h.user_with_session(&p, json!({ "is_anonymous": true })).await;
    let normal_kid = decode_header(&normal.access_token).unwrap().kid.unwrap();
    let anon_kid = decode_header(&anon.access_token).unwrap().kid.unwrap();
    assert_ne!(normal_kid, anon_kid);
    let aud = format!("{}:anon", p.id);
    assert!(verify(h, &p, &anon.access_token, &aud, "").await.is_err(), "anonymous keys are not in the default set");
    let claims = verify(h, &p, &anon.access_token, &aud, "?include_anonymous=true").await.expect("verifies");
    assert_eq!(claims["role"], "authenticated");
    assert_eq!(claims["is_anonymous"], true);
    assert_eq!(claims["is_restricted"], true);
    assert_eq!(claims["restricted_reason"], json!({ "type": "anonymous" }));
    assert!(claims["iss"].as_str().unwrap().ends_with(&format!("/api/v1/projects-anonymous-users/{}", p.id)));

    let res = h.get(&format!("/api/v1/projects-anonymous-users/{}/.well-known/jwks.json", p.id)).send().await;
    assert_eq!(res.status, 307);
    assert_eq!(
        res.header("location"),
        Some(format!("/api/v1/projects/{}/.well-known/jwks.json?include_anonymous=true", p.id).as_str())
    );

    let res = h.get("/api/v1/users/me").client(&p).access_token(&anon.access_token).send().await;
    res.assert_known_error(401, "ANONYMOUS_AUTHENTICATION_NOT_ALLOWED");
    let res = h
        .get("/api/v1/users/me")
        .client(&p)
        .access_token(&anon.access_token)
        .header("x-stack-allow-anonymous-user", "true")
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test]
async fn signed_up_at_stays_the_same_across_refreshes() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let claim = |t: &str| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').nth(1).unwrap()).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["signed_up_at"].clone()
    };
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    assert_eq!(claim(&s.access_token), claim(res.json()["access_token"].as_str().unwrap()));
}

/// A host whose access tokens live 2 s, for the expiry cases.
fn short_lived_host() -> &'static Host {
    static HOST: std::sync::OnceLock<Host> = std::sync::OnceLock::new();
    HOST.get_or_init(|| Host::start(&[("STACK_ACCESS_TOKEN_EXPIRATION_TIME", "2s")]))
}

#[tokio::test]
async fn an_expired_token_fails_verification_and_authentication() {
    let h = short_lived_host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    assert!(verify(h, &p, &s.access_token, &p.id, "").await.is_ok());
    // JWT times are whole seconds and `jsonwebtoken` accepts a token through its `exp` second.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let err = verify(h, &p, &s.access_token, &p.id, "").await.unwrap_err();
    assert_eq!(*err.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature);
    let res = h.get("/api/v1/users/me").client(&p).access_token(&s.access_token).send().await;
    let body = res.assert_known_error(401, "ACCESS_TOKEN_EXPIRED");
    assert_eq!(body["details"]["user_id"], s.user_id);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("Access token has expired. Please refresh it and try again. (The access token expired at "));
}

/// Our documented choice (docs/upstream-differences.md): the refresh endpoint exists to
/// replace an expired access token, so one sent beside the refresh token is ignored there.
#[tokio::test]
async fn an_expired_access_token_sent_with_the_refresh_token_still_refreshes() {
    let h = short_lived_host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    let res = h
        .post("/api/v1/auth/sessions/current/refresh")
        .client(&p)
        .access_token(&s.access_token)
        .refresh_token(&s.refresh_token)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let fresh = res.json()["access_token"].as_str().unwrap().to_string();
    assert!(verify(h, &p, &fresh, &p.id, "").await.is_ok());
    // A token that is not merely expired is still refused there.
    let res = h
        .post("/api/v1/auth/sessions/current/refresh")
        .client(&p)
        .access_token("garbage")
        .refresh_token(&s.refresh_token)
        .send()
        .await;
    res.assert_known_error(401, "UNPARSABLE_ACCESS_TOKEN");
}

fn payload(token: &str) -> Value {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn the_next_token_shows_changed_user_claims() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({ "is_anonymous": true })).await;
    let refresh = || async {
        let res =
            h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
        assert_eq!(res.status, 200, "{}", res.text);
        res.json()["access_token"].as_str().unwrap().to_string()
    };
    let patch = |body: Value| h.request("PATCH", &format!("/api/v1/users/{}", s.user_id)).server(&p).json(&body).send();
    assert_eq!(payload(&refresh().await)["aud"], format!("{}:anon", p.id));

    // Anonymous -> real user, with a name and a verified email.
    let res = patch(json!({ "is_anonymous": false, "display_name": "Lin", "primary_email": "lin@example.com", "primary_email_verified": true })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let claims = payload(&refresh().await);
    assert_eq!(claims["aud"], p.id);
    assert_eq!(claims["is_anonymous"], false);
    assert_eq!(claims["is_restricted"], false);
    assert_eq!(claims["name"], "Lin");
    assert_eq!(claims["email_verified"], true);

    // Restricted by an administrator.
    assert_eq!(patch(json!({ "restricted_by_admin": true })).await.status, 200);
    let claims = payload(&refresh().await);
    assert_eq!(claims["aud"], format!("{}:restricted", p.id));
    assert_eq!(claims["restricted_reason"], json!({ "type": "restricted_by_administrator" }));

    // Back to anonymous is refused and changes nothing.
    let before = h.project_snapshot(&p.id);
    patch(json!({ "is_anonymous": true, "display_name": "Nope" })).await.assert_known_error(400, "SCHEMA_ERROR");
    assert_eq!(h.project_snapshot(&p.id), before);
    // Clearing the name.
    assert_eq!(patch(json!({ "display_name": null })).await.json()["display_name"], Value::Null);
    assert_eq!(payload(&refresh().await)["name"], Value::Null);
}
