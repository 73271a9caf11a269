//! Race safety (seed PR: refresh vs sign-out). Every answer is 200 or 401, never a 5xx, and
//! the session is gone afterwards. 300 iterations of each pairing natively; 60 under
//! `wrangler dev`, whose proxy adds milliseconds to every request.

use api_tests::{host, runtime, Host, Project, Res, Runtime, UserSession};
use serde_json::json;

fn iterations() -> usize {
    match runtime() {
        Runtime::Native => 300,
        Runtime::Cloudflare | Runtime::Spin => 60,
    }
}

fn refresh(h: &Host, p: &Project, s: &UserSession) -> api_tests::Call {
    h.post("/api/v1/auth/sessions/current/refresh").client(p).refresh_token(&s.refresh_token)
}

fn oauth_refresh(h: &Host, p: &Project, s: &UserSession) -> api_tests::Call {
    h.post("/api/v1/auth/oauth/token").json(&json!({
        "grant_type": "refresh_token",
        "client_id": p.id,
        "client_secret": "__stack_public_client__",
        "refresh_token": s.refresh_token,
    }))
}

fn sign_out(h: &Host, p: &Project, s: &UserSession) -> api_tests::Call {
    h.delete("/api/v1/auth/sessions/current").client(p).access_token(&s.access_token)
}

fn check(res: &Res, what: &str, tally: &mut [usize; 2]) {
    assert!(res.status == 200 || res.status == 401, "{what}: {} {}", res.status, res.text);
    assert!(!res.text.contains("P2025"));
    if res.status == 401 {
        assert_eq!(
            res.header("x-stack-known-error"),
            Some("REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED"),
            "{what}: {}",
            res.text
        );
        tally[1] += 1;
    } else {
        tally[0] += 1;
    }
}

async fn assert_gone(h: &Host, p: &Project, s: &UserSession) {
    refresh(h, p, s).send().await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    let list = h.get(&format!("/api/v1/auth/sessions?user_id={}", s.user_id)).server(p).send().await;
    assert_eq!(list.json()["items"], json!([]), "no session left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_racing_sign_out_never_fails_with_5xx() {
    let h = host();
    let p = h.create_project(false).await;
    let (mut refreshes, mut sign_outs) = ([0; 2], [0; 2]);
    for _ in 0..iterations() {
        let s = h.user_with_session(&p, json!({})).await;
        let (r, o) = tokio::join!(refresh(h, &p, &s).send(), sign_out(h, &p, &s).send());
        check(&r, "refresh", &mut refreshes);
        check(&o, "sign-out", &mut sign_outs);
        assert_eq!(o.status, 200, "nothing else deletes the session, so the sign-out wins: {}", o.text);
        assert_gone(h, &p, &s).await;
    }
    eprintln!("refresh 200/401: {refreshes:?}, sign-out 200/401: {sign_outs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refresh_racing_sign_out_never_fails_with_5xx_or_creates_a_session() {
    let h = host();
    let p = h.create_project(false).await;
    let mut tally = [0; 2];
    for _ in 0..iterations() {
        let s = h.user_with_session(&p, json!({})).await;
        let (r, o) = tokio::join!(oauth_refresh(h, &p, &s).send(), sign_out(h, &p, &s).send());
        check(&r, "oauth refresh", &mut tally);
        assert_eq!(o.status, 200, "{}", o.text);
        assert_gone(h, &p, &s).await;
    }
    eprintln!("oauth refresh 200/401: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_double_sign_out_gives_one_200_and_one_401() {
    let h = host();
    let p = h.create_project(false).await;
    for _ in 0..iterations() {
        let s = h.user_with_session(&p, json!({})).await;
        let (a, b, r) = tokio::join!(sign_out(h, &p, &s).send(), sign_out(h, &p, &s).send(), refresh(h, &p, &s).send());
        let mut tally = [0; 2];
        check(&a, "first sign-out", &mut tally);
        check(&b, "second sign-out", &mut tally);
        assert_eq!(tally, [1, 1], "exactly one sign-out deletes the session");
        check(&r, "refresh", &mut [0; 2]);
        assert_gone(h, &p, &s).await;
    }
}
