//! OAuth sign-in end to end (docs/api.md §2.4, §2.5, §2.6) against a real OpenID provider (npm
//! `oidc-provider`, `OpenIdProvider`): authorize → the provider's login → our callback → the
//! app's redirect with a code → `POST /auth/oauth/token` (`authorization_code` + PKCE). A
//! "browser" is a client with its own cookie jar that follows redirects until the app's URL.
//!
//! Sign-up, sign-in again as the same user, linking (`type=link` and by verified email), state
//! replay and a foreign browser refused, a wrong PKCE verifier refused (and the code burnt), the
//! provider's refusal as the contract's error, and the provider's tokens sealed at rest and
//! refreshed at the provider for the connected-account endpoint.

use api_tests::host;
use api_tests::oauth_browser::*;
use serde_json::{json, Value};

#[tokio::test]
async fn sign_up_then_sign_in_again_is_the_same_user() {
    let h = host();
    let op = start_provider(h, 3600);
    let p = project(h, &op, json!({})).await;
    let email = format!("{}@example.com", unique("ada"));
    let ada = account(&unique("sub"), &email, true);

    let first = tokens(h, &p, &sign_in_code(h, &op, &p, &ada, "").await).await;
    assert_eq!(first["is_new_user"], true);
    assert_eq!(first["newUser"], true);
    assert_eq!(first["token_type"], "Bearer");
    let user = me(h, &p, first["access_token"].as_str().unwrap()).await;
    assert_eq!(user["primary_email"], email);
    assert_eq!(user["primary_email_verified"], true);
    assert_eq!(user["display_name"], ada["name"]);
    // The refresh token is a session like any other.
    let refreshed = h
        .post("/api/v1/auth/sessions/current/refresh")
        .client(&p)
        .refresh_token(first["refresh_token"].as_str().unwrap())
        .send()
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);

    // A new browser, the same provider account: the same user, not new.
    let again = tokens(h, &p, &sign_in_code(h, &op, &p, &ada, "").await).await;
    assert_eq!(again["is_new_user"], false);
    assert_ne!(again["refresh_token"], first["refresh_token"]);
    assert_eq!(me(h, &p, again["access_token"].as_str().unwrap()).await["id"], user["id"]);
    let users =
        h.db_query("SELECT count(*) FROM connected_accounts WHERE user_id = ?1", &[user["id"].as_str().unwrap()]);
    assert_eq!(users[0][0], "1");

    // Sign-up off: a new account is refused, the known one still signs in.
    h.set_environment_config(&p, &json!({ "auth.allowSignUp": false })).await;
    let b = browser();
    op.sign_in_as(&account(&unique("sub"), "new@example.com", true)).await;
    let callback = to_callback(h, &b, &p, "").await;
    let res = get(&b, &callback).await;
    assert_eq!(res.status, 400, "{}", res.text);
    assert!(res.text.contains("SIGN_UP_NOT_ENABLED"), "{}", res.text);
}

#[tokio::test]
async fn accounts_link_to_the_signed_in_user_and_to_a_verified_email() {
    let h = host();
    let op = start_provider(h, 3600);
    let p = project(h, &op, json!({})).await;

    // type=link: the signed-in user gets the account; signing in with it later is that user.
    let grace = h.user_with_session(&p, json!({ "primary_email": format!("{}@example.com", unique("grace")) })).await;
    let linked = account(&unique("sub"), &format!("{}@corp.example", unique("g")), true);
    let link = format!("&type=link&token={}", grace.access_token);
    let res = tokens(h, &p, &sign_in_code(h, &op, &p, &linked, &link).await).await;
    assert_eq!(res["is_new_user"], false);
    let signed_in = tokens(h, &p, &sign_in_code(h, &op, &p, &linked, "").await).await;
    assert_eq!(me(h, &p, signed_in["access_token"].as_str().unwrap()).await["id"], grace.user_id);

    // The same account cannot be linked to someone else, nor a second one to grace.
    let other = h.user_with_session(&p, json!({})).await;
    op.sign_in_as(&linked).await;
    let b = browser();
    let callback = to_callback(h, &b, &p, &format!("&type=link&token={}", other.access_token)).await;
    let res = get(&b, &callback).await;
    assert!(res.text.contains("OAUTH_CONNECTION_ALREADY_CONNECTED_TO_ANOTHER_USER"), "{}", res.text);
    op.sign_in_as(&account(&unique("sub"), "second@corp.example", true)).await;
    let b = browser();
    let callback = to_callback(h, &b, &p, &link).await;
    let res = get(&b, &callback).await;
    assert!(res.text.contains("USER_ALREADY_CONNECTED_TO_ANOTHER_OAUTH_CONNECTION"), "{}", res.text);

    // By email: a provider-verified address that an existing user has links to that user ...
    let email = format!("{}@example.com", unique("lin"));
    let lin = h.user_with_session(&p, json!({ "primary_email": email, "primary_email_verified": true })).await;
    let res = tokens(h, &p, &sign_in_code(h, &op, &p, &account(&unique("sub"), &email, true), "").await).await;
    assert_eq!(res["is_new_user"], false);
    assert_eq!(me(h, &p, res["access_token"].as_str().unwrap()).await["id"], lin.user_id);

    // ... but an unverified one proves nothing and is refused, with nobody signed in.
    op.sign_in_as(&account(&unique("sub"), &email, false)).await;
    let b = browser();
    let callback = to_callback(h, &b, &p, "").await;
    let res = get(&b, &callback).await;
    assert_eq!(res.status, 409, "{}", res.text);
    assert!(res.text.contains("CONTACT_CHANNEL_ALREADY_USED_FOR_AUTH_BY_SOMEONE_ELSE"), "{}", res.text);
    assert!(res.location.is_empty());
}

#[tokio::test]
async fn replayed_states_foreign_browsers_and_wrong_verifiers_are_refused() {
    let h = host();
    let op = start_provider(h, 3600);
    let p = project(h, &op, json!({})).await;
    op.sign_in_as(&account(&unique("sub"), &format!("{}@example.com", unique("r")), true)).await;

    // The callback in another browser (no state cookie): refused, and the flow is left alone.
    let b = browser();
    let callback = to_callback(h, &b, &p, "").await;
    let stranger = get(&browser(), &callback).await;
    assert_eq!(stranger.status, 400);
    assert!(stranger.text.starts_with("Inner OAuth cookie not found"), "{}", stranger.text);
    // The browser that began it finishes; replaying the callback there is refused.
    let back = get(&b, &callback).await;
    assert_eq!(back.status, 307, "{}", back.text);
    let code = query(&back.location, "code").unwrap();
    let replay = get(&b, &callback).await;
    assert_eq!(replay.status, 400, "{}", replay.text);

    // A code and a wrong verifier: refused, and the code is burnt for the right one too.
    let res = exchange(h, &p, &code, "not-the-verifier-not-the-verifier-not-the-verifier", APP_CALLBACK).send().await;
    res.assert_known_error(400, "INVALID_AUTHORIZATION_CODE");
    exchange(h, &p, &code, VERIFIER, APP_CALLBACK).send().await.assert_known_error(400, "INVALID_AUTHORIZATION_CODE");

    // Another redirect URL: refused; a code exchanged once cannot be exchanged again.
    let code = sign_in_code(h, &op, &p, &account(&unique("sub"), "x@example.com", true), "").await;
    let res = exchange(h, &p, &code, VERIFIER, "http://localhost:3000/elsewhere").send().await;
    assert_eq!(
        (res.status, res.text.as_str()),
        (
            400,
            "Invalid redirect URI. Your redirect URI must be the same as the one used to get the authorization code."
        )
    );
    let code = sign_in_code(h, &op, &p, &account(&unique("sub"), "y@example.com", true), "").await;
    tokens(h, &p, &code).await;
    exchange(h, &p, &code, VERIFIER, APP_CALLBACK).send().await.assert_known_error(400, "INVALID_AUTHORIZATION_CODE");
    // A code of this project is nothing to another.
    let code = sign_in_code(h, &op, &p, &account(&unique("sub"), "z@example.com", true), "").await;
    let other = h.create_project(false).await;
    exchange(h, &other, &code, VERIFIER, APP_CALLBACK)
        .send()
        .await
        .assert_known_error(400, "INVALID_AUTHORIZATION_CODE");

    // Authorize wants the app's PKCE challenge, S256.
    let url = format!(
        "{}/api/v1/auth/oauth/authorize/{PROVIDER_ID}?client_id={}&client_secret=__stack_public_client__\
         &redirect_uri={}&scope=legacy&state=s&grant_type=authorization_code&code_challenge=abc\
         &code_challenge_method=plain&response_type=code",
        h.base_url,
        p.id,
        urlencode(APP_CALLBACK)
    );
    let res = get(&browser(), &url).await;
    assert_eq!(res.status, 400, "{}", res.text);
    assert!(res.text.contains("SCHEMA_ERROR") && res.text.contains("S256"), "{}", res.text);
    // And a trusted redirect URL.
    let url = url.replace(&urlencode(APP_CALLBACK), &urlencode("https://evil.example/cb"));
    let res = get(
        &browser(),
        &url.replace(
            "code_challenge=abc&code_challenge_method=plain",
            &format!("code_challenge={}&code_challenge_method=S256", challenge(VERIFIER)),
        ),
    )
    .await;
    assert!(res.text.contains("REDIRECT_URL_NOT_WHITELISTED"), "{}", res.text);
}

#[tokio::test]
async fn the_providers_refusal_is_the_contracts_error() {
    let h = host();
    let op = start_provider(h, 3600);
    let p = project(h, &op, json!({})).await;
    op.sign_in_as(&json!({ "deny": true })).await;
    let b = browser();
    let callback = to_callback(h, &b, &p, "").await;
    assert_eq!(query(&callback, "error").as_deref(), Some("access_denied"), "the provider itself refused");
    let res = get(&b, &callback).await;
    assert_eq!(res.status, 400, "{}", res.text);
    let body: Value = serde_json::from_str(&res.text).unwrap();
    assert_eq!(body["code"], "OAUTH_PROVIDER_ACCESS_DENIED");
    assert_eq!(body["error"], "The OAuth provider denied access to the user.");

    // With a trusted error URL, the browser goes back to the app with the error.
    let b = browser();
    let errors = "http://localhost:3000/handler/error";
    let callback = to_callback(h, &b, &p, &format!("&error_redirect_url={}", urlencode(errors))).await;
    let res = get(&b, &callback).await;
    assert_eq!(res.status, 307, "{}", res.text);
    assert!(res.location.starts_with(errors), "{}", res.location);
    assert_eq!(query(&res.location, "errorCode").as_deref(), Some("OAUTH_PROVIDER_ACCESS_DENIED"));
}

#[tokio::test]
async fn provider_tokens_are_sealed_at_rest_and_refreshed_at_the_provider() {
    let h = host();
    // Access tokens that live 30 s: inside the minute's margin, so every request refreshes.
    let op = start_provider(h, 30);
    let p = project(h, &op, json!({})).await;
    let sub = unique("sub");
    let signed_in = tokens(h, &p, &sign_in_code(h, &op, &p, &account(&sub, "t@example.com", true), "").await).await;
    let access = signed_in["access_token"].as_str().unwrap();
    let user_id = me(h, &p, access).await["id"].as_str().unwrap().to_string();

    let ask = || {
        h.post(&format!("/api/v1/connected-accounts/me/{PROVIDER_ID}/access-token"))
            .client(&p)
            .access_token(access)
            .json(&json!({ "scope": "openid email" }))
    };
    let first = ask().send().await;
    assert_eq!(first.status, 200, "{}", first.text);
    let provider_token = first.json()["access_token"].as_str().unwrap().to_string();
    // The token is the provider's: its user-info endpoint knows the account.
    let info: Value = reqwest::Client::new()
        .get(format!("{}/me", op.url))
        .bearer_auth(&provider_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], sub);
    let second = ask().send().await.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, provider_token, "a refreshed token from the provider");

    // Scopes never granted are refused; another user's accounts are not the client's.
    let res = ask().json(&json!({ "scope": "admin" })).send().await;
    res.assert_known_error(400, "OAUTH_CONNECTION_DOES_NOT_HAVE_REQUIRED_SCOPE");

    // At rest: sealed, never the provider's tokens in plain text.
    let rows = h.db_query(
        "SELECT sealed_access_token, sealed_refresh_token FROM connected_accounts WHERE user_id = ?1",
        &[&user_id],
    );
    assert!(rows[0][0].starts_with("v1.") && rows[0][1].starts_with("v1."), "{rows:?}");
    let bytes = std::fs::read(h.db_path().unwrap()).unwrap();
    let wal = std::fs::read(h.db_path().unwrap().with_extension("sqlite-wal")).unwrap_or_default();
    for token in [&provider_token, &second] {
        for file in [&bytes, &wal] {
            assert!(!file.windows(token.len()).any(|w| w == token.as_bytes()), "a provider token in plain text");
        }
    }
}
