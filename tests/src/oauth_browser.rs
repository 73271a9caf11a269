//! A browser signing in with OAuth through the host under test (docs/api.md §2.4, §2.5): its own
//! cookie jar, redirects followed until the app's URL (or our callback, so a test can replay
//! it), the app's PKCE verifier, and the code exchanged at the token endpoint. The provider is
//! a real one ([`crate::OpenIdProvider`]).

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{Host, OpenIdProvider, Project};

/// The app (trusted: localhost). Never fetched: the browser stops there.
pub const APP: &str = "http://localhost:3000/";
/// The app's own OAuth callback.
pub const APP_CALLBACK: &str = "http://localhost:3000/handler/oauth-callback";
pub const PROVIDER_ID: &str = "corp";

/// A provider for the shared host, its client allowed back to our callback.
pub fn start_provider(h: &Host, access_token_ttl_s: u32) -> OpenIdProvider {
    OpenIdProvider::start(&[format!("{}/api/v1/auth/oauth/callback/{PROVIDER_ID}", h.base_url)], access_token_ttl_s)
}

/// The environment config that makes `op` the provider `corp` (type `oidc`, its own keys).
pub fn provider_config(op: &OpenIdProvider) -> Value {
    json!({
        format!("auth.oauth.providers.{PROVIDER_ID}"): {
            "type": "oidc",
            "isShared": false,
            "clientId": op.client_id,
            "clientSecret": op.client_secret,
            "authorizationEndpoint": format!("{}/auth", op.url),
            "tokenEndpoint": format!("{}/token", op.url),
            "userinfoEndpoint": format!("{}/me", op.url),
        },
    })
}

/// A project whose `corp` provider is `op`, with `extra` config.
pub async fn project(h: &Host, op: &OpenIdProvider, extra: Value) -> Project {
    let p = h.create_project(false).await;
    let mut config = provider_config(op);
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    h.set_environment_config(&p, &config).await;
    p
}

/// A browser: its own cookies; follows redirects, but stops at our callback (so a test can
/// replay it) and at the app.
pub fn browser() -> reqwest::Client {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let url = attempt.url().as_str();
        if url.starts_with(APP) || url.contains("/api/v1/auth/oauth/callback/") {
            attempt.stop()
        } else if attempt.previous().len() > 12 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder().cookie_store(true).redirect(policy).build().unwrap()
}

pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub const VERIFIER: &str = "the-apps-own-pkce-verifier-of-enough-length-0123456789";

/// What a browser gets back: status, `location`, body.
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub text: String,
}

pub async fn get(browser: &reqwest::Client, url: &str) -> Answer {
    let res = browser.get(url).send().await.expect("request");
    let status = res.status().as_u16();
    let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    Answer { status, location, text: res.text().await.unwrap() }
}

/// Authorize with `extra` query, through the provider's login, up to (not into) our
/// callback: returns the callback URL the provider sent the browser to.
pub async fn to_callback(h: &Host, b: &reqwest::Client, p: &Project, extra: &str) -> String {
    let url = format!(
        "{}/api/v1/auth/oauth/authorize/{PROVIDER_ID}?client_id={}&client_secret=__stack_public_client__\
         &redirect_uri={}&scope=legacy&state=app-state-1&grant_type=authorization_code&code_challenge={}\
         &code_challenge_method=S256&response_type=code{extra}",
        h.base_url,
        p.id,
        urlencode(APP_CALLBACK),
        challenge(VERIFIER),
    );
    let answer = get(b, &url).await;
    assert!(
        answer.location.contains("/api/v1/auth/oauth/callback/"),
        "{} {} {}",
        answer.status,
        answer.location,
        answer.text
    );
    answer.location
}

pub fn urlencode(text: &str) -> String {
    let url = reqwest::Url::parse_with_params("http://x/", [("x", text)]).unwrap();
    url.query().unwrap().trim_start_matches("x=").to_string()
}

pub fn url_pairs(pairs: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://x/", pairs).unwrap().query().unwrap().to_string()
}

/// The query parameter `name` of `url`.
pub fn query(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The whole sign-in as `account`: the app's code from the redirect.
pub async fn sign_in_code(h: &Host, op: &OpenIdProvider, p: &Project, account: &Value, extra: &str) -> String {
    op.sign_in_as(account).await;
    let b = browser();
    let callback = to_callback(h, &b, p, extra).await;
    let back = get(&b, &callback).await;
    assert_eq!(back.status, 307, "{}", back.text);
    assert!(back.location.starts_with(APP_CALLBACK), "{}", back.location);
    assert_eq!(query(&back.location, "state").as_deref(), Some("app-state-1"), "the app's own state comes back");
    query(&back.location, "code").expect("a code")
}

pub fn exchange(h: &Host, p: &Project, code: &str, verifier: &str, redirect_uri: &str) -> crate::Call {
    let form = url_pairs(&[
        ("grant_type", "authorization_code"),
        ("client_id", &p.id),
        ("client_secret", "__stack_public_client__"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ]);
    h.post("/api/v1/auth/oauth/token").raw_body("application/x-www-form-urlencoded", &form)
}

/// Exchanges `code` and returns the token answer, checked.
pub async fn tokens(h: &Host, p: &Project, code: &str) -> Value {
    let res = exchange(h, p, code, VERIFIER, APP_CALLBACK).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.header("pragma"), Some("no-cache"));
    res.json()
}

pub async fn me(h: &Host, p: &Project, access_token: &str) -> Value {
    let res = h.get("/api/v1/users/me").client(p).access_token(access_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()
}

pub fn account(sub: &str, email: &str, verified: bool) -> Value {
    json!({ "sub": sub, "email": email, "email_verified": verified, "name": format!("Person {sub}") })
}

pub fn unique(tag: &str) -> String {
    format!("{tag}-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}
