//! Shared OAuth keys (docs/api.md §2.3): no extra scopes with Stack's shared OAuth app, for
//! sign-in and linking alike; no provider access tokens for shared providers unless
//! `STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS` is exactly `true`; and the authorize checks before
//! them, in order.

use api_tests::{Host, Project};
use serde_json::json;

/// Spotify shared (the default), GitHub with the project's own keys.
async fn project_with_providers(h: &Host) -> Project {
    let p = h.create_project(false).await;
    let providers = json!({ "auth.oauth.providers": {
        "spotify": { "type": "spotify" },
        "github": { "type": "github", "isShared": false, "clientId": "own-github-client", "clientSecret": "s" } } });
    h.set_environment_config(&p, &providers).await;
    p
}

fn authorize(h: &Host, p: &Project, provider: &str, extra: &str) -> api_tests::Call {
    let query = format!(
        "client_id={}&client_secret=__stack_public_client__&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcb\
         &scope=legacy&state=s&grant_type=authorization_code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256\
         &response_type=code{extra}",
        p.id
    );
    h.get(&format!("/api/v1/auth/oauth/authorize/{provider}?{query}"))
}

#[tokio::test]
async fn authorize_refuses_extra_scopes_with_shared_keys() {
    let h = Host::start(&[("STACK_SPOTIFY_CLIENT_ID", "stack-shared-spotify")]);
    let p = project_with_providers(&h).await;
    let s = h.user_with_session(&p, json!({})).await;

    // Sign-in and linking with an extra scope on the shared provider.
    let res = authorize(&h, &p, "spotify", "&provider_scope=user-library-read").send().await;
    res.assert_known_error(400, "OAUTH_EXTRA_SCOPE_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS");
    let link = format!("&provider_scope=user-library-read&type=link&token={}", s.access_token);
    let body = authorize(&h, &p, "spotify", &link)
        .send()
        .await
        .assert_known_error(400, "OAUTH_EXTRA_SCOPE_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS");
    assert_eq!(
        body["error"],
        "Extra scopes are not available with shared OAuth keys. Please add your own OAuth keys on the Stack dashboard to use extra scopes."
    );

    // Without extra scopes: a redirect to the provider with Stack's shared client id.
    let res = authorize(&h, &p, "spotify", "").send().await;
    assert_eq!(res.status, 307, "{}", res.text);
    let location = res.header("location").unwrap();
    assert!(
        location.starts_with("https://accounts.spotify.com/authorize?client_id=stack-shared-spotify&"),
        "{location}"
    );
    // The project's own keys take extra scopes.
    let res = authorize(&h, &p, "github", "&provider_scope=repo").send().await;
    assert_eq!(res.status, 307, "{}", res.text);
    let location = reqwest::Url::parse(res.header("location").unwrap()).unwrap();
    let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["client_id"], "own-github-client");
    assert_eq!(pairs["scope"], "user:email repo");
    assert!(pairs["redirect_uri"].ends_with("/api/v1/auth/oauth/callback/github"));

    // The checks before the shared-key rule, in order.
    let mut other = p.clone();
    other.id = "7d1a0c2e-0000-4000-8000-000000000000".into();
    let body =
        authorize(&h, &other, "spotify", "").send().await.assert_known_error(400, "INVALID_OAUTH_CLIENT_ID_OR_SECRET");
    assert_eq!(body["details"]["client_id"], other.id);
    let res = h
        .get(&format!("/api/v1/auth/oauth/authorize/spotify?client_id={}&client_secret=pck_wrong&redirect_uri=x", p.id))
        .send()
        .await;
    res.assert_known_error(401, "INVALID_PUBLISHABLE_CLIENT_KEY");
    let res = authorize(&h, &p, "discord", "").send().await;
    res.assert_known_error(400, "OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED");
    let res = authorize(&h, &p, "spotify", "&type=link&provider_scope=x").send().await;
    assert_eq!((res.status, res.text.as_str()), (400, "?token= query parameter is required for link type"));
    let res =
        authorize(&h, &p, "spotify", "&after_callback_redirect_url=https%3A%2F%2Fevil.example%2F&provider_scope=x")
            .send()
            .await;
    res.assert_known_error(400, "REDIRECT_URL_NOT_WHITELISTED");
}

fn access_token(h: &Host, p: &Project, path: &str) -> api_tests::Call {
    h.post(&format!("/api/v1/connected-accounts/{path}/access-token")).server(p).json(&json!({}))
}

#[tokio::test]
async fn provider_access_tokens_are_refused_for_shared_keys() {
    let h = Host::start(&[]);
    let p = project_with_providers(&h).await;
    let s = h.user_with_session(&p, json!({})).await;
    let u = &s.user_id;

    let body = access_token(&h, &p, &format!("{u}/spotify"))
        .send()
        .await
        .assert_known_error(400, "OAUTH_ACCESS_TOKEN_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS");
    assert_eq!(
        body["error"],
        "Access tokens are not available with shared OAuth keys. Please add your own OAuth keys on the Stack dashboard to use access tokens."
    );
    access_token(&h, &p, &format!("{u}/spotify/123"))
        .send()
        .await
        .assert_known_error(400, "OAUTH_ACCESS_TOKEN_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS");
    // Own keys pass the block; this system keeps no connected accounts.
    access_token(&h, &p, &format!("{u}/github"))
        .send()
        .await
        .assert_known_error(400, "OAUTH_CONNECTION_NOT_CONNECTED_TO_USER");
    access_token(&h, &p, &format!("{u}/discord"))
        .send()
        .await
        .assert_known_error(400, "OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED");
    // A client acts for itself only (checked first).
    let other = h.user_with_session(&p, json!({})).await;
    let res = h
        .post(&format!("/api/v1/connected-accounts/{}/spotify/access-token", other.user_id))
        .client(&p)
        .access_token(&s.access_token)
        .json(&json!({}))
        .send()
        .await;
    assert_eq!((res.status, res.text.as_str()), (403, "Client can only access its own connected accounts"));
    let res = h
        .post("/api/v1/connected-accounts/me/spotify/access-token")
        .client(&p)
        .access_token(&s.access_token)
        .json(&json!({}))
        .send()
        .await;
    res.assert_known_error(400, "OAUTH_ACCESS_TOKEN_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS");

    // Allowed only by exactly `true`.
    for (value, code) in [
        ("yes", "OAUTH_ACCESS_TOKEN_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS"),
        ("true", "OAUTH_CONNECTION_NOT_CONNECTED_TO_USER"),
    ] {
        let h = Host::start(&[("STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS", value)]);
        let p = project_with_providers(&h).await;
        let s = h.user_with_session(&p, json!({})).await;
        access_token(&h, &p, &format!("{}/spotify", s.user_id)).send().await.assert_known_error(400, code);
    }
}
