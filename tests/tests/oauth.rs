//! `POST /auth/oauth/token`, the refresh_token grant (docs/api.md §1.5).

use api_tests::{host, Host, Project};
use serde_json::{json, Value};

fn grant(h: &Host, body: Value) -> api_tests::Call {
    h.post("/api/v1/auth/oauth/token").json(&body)
}

#[tokio::test]
async fn the_refresh_grant_returns_the_token_body_and_no_cache_headers() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let res = grant(
        h,
        json!({ "grant_type": "refresh_token", "client_id": p.id, "client_secret": "__stack_public_client__", "refresh_token": s.refresh_token }),
    )
    .send()
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert_eq!(res.header("pragma"), Some("no-cache"));
    let body = res.json();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600, "the token's real lifetime");
    assert_eq!(body["scope"], "legacy");
    assert_eq!(body["afterCallbackRedirectUrl"], Value::Null);
    assert_eq!(body["after_callback_redirect_url"], Value::Null);
    assert!(body.get("refresh_token").is_none(), "no new refresh token on this grant");
    let me = h.get("/api/v1/users/me").client(&p).access_token(token).send().await;
    assert_eq!(me.status, 200);
}

#[tokio::test]
async fn the_grant_accepts_form_encoding_a_real_key_and_a_branch_suffix() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let form = format!(
        "grant_type=refresh_token&client_id={}%23main&client_secret={}&refresh_token={}&scope=legacy",
        p.id, p.publishable_client_key, s.refresh_token
    );
    let res = h.post("/api/v1/auth/oauth/token").raw_body("application/x-www-form-urlencoded", &form).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test]
async fn client_authentication_failures() {
    let h = host();
    let p = h.create_project(false).await;
    let keyed: Project = h.create_project(true).await;
    let s = h.user_with_session(&p, json!({})).await;

    // No secret where keys are required.
    let res =
        grant(h, json!({ "grant_type": "refresh_token", "client_id": keyed.id, "refresh_token": s.refresh_token }))
            .send()
            .await;
    res.assert_known_error(401, "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT");
    // The sentinel where keys are required.
    let res = grant(
        h,
        json!({ "grant_type": "refresh_token", "client_id": keyed.id, "client_secret": "__stack_public_client__", "refresh_token": "x" }),
    )
    .send()
    .await;
    res.assert_known_error(401, "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT");
    // No secret where keys are optional: the OAuth flow still needs client authentication.
    let res = grant(h, json!({ "grant_type": "refresh_token", "client_id": p.id, "refresh_token": s.refresh_token }))
        .send()
        .await;
    let body = res.assert_known_error(400, "INVALID_OAUTH_CLIENT_ID_OR_SECRET");
    assert_eq!(body["details"], json!({ "client_id": null }));
    // A wrong key, an unknown project, no client id.
    for body in [
        json!({ "grant_type": "refresh_token", "client_id": p.id, "client_secret": "pck_wrong", "refresh_token": s.refresh_token }),
        json!({ "grant_type": "refresh_token", "client_id": "7d1a0c2e-0000-4000-8000-000000000000", "client_secret": "__stack_public_client__", "refresh_token": s.refresh_token }),
        json!({ "grant_type": "refresh_token", "client_secret": "__stack_public_client__", "refresh_token": s.refresh_token }),
        json!({ "grant_type": "refresh_token", "client_id": format!("{}#nope", p.id), "client_secret": "__stack_public_client__", "refresh_token": s.refresh_token }),
    ] {
        grant(h, body).send().await.assert_known_error(400, "INVALID_OAUTH_CLIENT_ID_OR_SECRET");
    }
}

#[tokio::test]
async fn request_errors() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let base = json!({ "client_id": p.id, "client_secret": "__stack_public_client__" });
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let res = grant(h, with(json!({ "grant_type": "password", "refresh_token": s.refresh_token }))).send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("body.grant_type must be one of the following values: authorization_code, refresh_token"));

    let res = grant(h, with(json!({ "grant_type": "refresh_token" }))).send().await;
    assert_eq!(res.status, 400);
    assert_eq!(
        res.json(),
        json!({ "error": "invalid_request", "error_description": "Missing parameter: `refresh_token`" })
    );

    let res = grant(h, with(json!({ "grant_type": "refresh_token", "refresh_token": "not-a-token" }))).send().await;
    res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");

    let res = grant(
        h,
        with(json!({ "grant_type": "authorization_code", "code": "abc", "redirect_uri": "http://localhost/cb" })),
    )
    .send()
    .await;
    res.assert_known_error(400, "INVALID_AUTHORIZATION_CODE");

    let res =
        grant(h, with(json!({ "grant_type": "refresh_token", "refresh_token": s.refresh_token, "scope": "admin" })))
            .send()
            .await;
    res.assert_known_error(400, "INVALID_SCOPE");
}

#[tokio::test]
async fn a_refresh_token_of_another_project_is_not_found() {
    let h = host();
    let a = h.create_project(false).await;
    let b = h.create_project(false).await;
    let s = h.user_with_session(&a, json!({})).await;
    let res = grant(
        h,
        json!({ "grant_type": "refresh_token", "client_id": b.id, "client_secret": "__stack_public_client__", "refresh_token": s.refresh_token }),
    )
    .send()
    .await;
    res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
}
