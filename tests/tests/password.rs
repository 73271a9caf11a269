//! Password sign-up, sign-in and change (docs/api.md §1.11): off unless the project turns it on;
//! the same answer for an unknown email and a wrong password; attempts limited per address;
//! one user per email even under concurrent sign-ups; argon2id hashes at rest.

use api_tests::{host, Host, Project};
use serde_json::{json, Value};

async fn password_project(h: &Host, extra: Value) -> Project {
    let p = h.create_project(false).await;
    let mut config = json!({ "auth.password.allowSignIn": true });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    h.set_environment_config(&p, &config).await;
    p
}

fn sign_up(h: &Host, p: &Project, email: &str, password: &str) -> api_tests::Call {
    h.post("/api/v1/auth/password/sign-up").client(p).json(&json!({ "email": email, "password": password }))
}

fn sign_in(h: &Host, p: &Project, email: &str, password: &str) -> api_tests::Call {
    h.post("/api/v1/auth/password/sign-in").client(p).json(&json!({ "email": email, "password": password }))
}

fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}@example.com",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

#[tokio::test]
async fn password_sign_in_is_off_unless_the_project_turns_it_on() {
    let h = host();
    let p = h.create_project(false).await;
    let res = sign_up(h, &p, &unique_email("off"), "long enough password").send().await;
    let body = res.assert_known_error(400, "PASSWORD_AUTHENTICATION_NOT_ENABLED");
    assert_eq!(body["error"], "Password authentication is not enabled for this project.");
    sign_in(h, &p, "a@example.com", "long enough password")
        .send()
        .await
        .assert_known_error(400, "PASSWORD_AUTHENTICATION_NOT_ENABLED");
}

#[tokio::test]
async fn sign_up_then_sign_in_gives_sessions_of_one_user() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("Ada");
    let res = sign_up(h, &p, &email, "correct horse battery").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let up = res.json();
    let keys: Vec<&String> = up.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "refresh_token", "user_id"]);
    let me = h.get("/api/v1/users/me").client(&p).access_token(up["access_token"].as_str().unwrap()).send().await;
    assert_eq!(me.json()["id"], up["user_id"]);
    assert_eq!(me.json()["primary_email"], email.to_lowercase());

    // The address is matched whatever its case.
    let res = sign_in(h, &p, &email.to_uppercase(), "correct horse battery").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let again = res.json();
    assert_eq!(again["user_id"], up["user_id"]);
    assert_ne!(again["refresh_token"], up["refresh_token"], "a new session");
    let refreshed = h
        .post("/api/v1/auth/sessions/current/refresh")
        .client(&p)
        .refresh_token(again["refresh_token"].as_str().unwrap())
        .send()
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);

    // A second sign-up with that address, in any case, is refused.
    let res = sign_up(h, &p, &email.to_uppercase(), "another password").send().await;
    let body = res.assert_known_error(409, "USER_EMAIL_ALREADY_EXISTS");
    assert_eq!(body["error"], format!("A user with email \"{}\" already exists.", email.to_lowercase()));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("grace");
    assert_eq!(sign_up(h, &p, &email, "the right password").send().await.status, 200);
    let wrong = sign_in(h, &p, &email, "the wrong password").send().await;
    let unknown = sign_in(h, &p, &unique_email("nobody"), "the right password").send().await;
    let wrong = wrong.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH");
    assert_eq!(wrong, json!({ "code": "EMAIL_PASSWORD_MISMATCH", "error": "Wrong e-mail or password." }));
    assert_eq!(unknown.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH"), wrong);
}

#[tokio::test]
async fn bad_input_is_refused_and_creates_nothing() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("short");
    let body = sign_up(h, &p, &email, "1234567").send().await.assert_known_error(400, "PASSWORD_TOO_SHORT");
    assert_eq!(body["details"], json!({ "min_length": 8 }));
    let body = sign_up(h, &p, &email, &"x".repeat(71)).send().await.assert_known_error(400, "PASSWORD_TOO_LONG");
    assert_eq!(body["details"], json!({ "max_length": 70 }));
    sign_up(h, &p, "not an email", "long enough password").send().await.assert_known_error(400, "SCHEMA_ERROR");
    h.post("/api/v1/auth/password/sign-up")
        .client(&p)
        .json(&json!({ "email": email, "password": "long enough password", "admin": true }))
        .send()
        .await
        .assert_known_error(400, "SCHEMA_ERROR");
    // None of those made a user: the address is still free.
    assert_eq!(sign_up(h, &p, &email, "long enough password").send().await.status, 200);
}

#[tokio::test]
async fn sign_up_can_be_turned_off_while_sign_in_stays() {
    let h = host();
    let p = password_project(h, json!({ "auth.allowSignUp": false })).await;
    let res = sign_up(h, &p, &unique_email("closed"), "long enough password").send().await;
    res.assert_known_error(400, "SIGN_UP_NOT_ENABLED");
}

#[tokio::test]
async fn attempts_are_limited_per_address() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("limited");
    assert_eq!(sign_up(h, &p, &email, "the right password").send().await.status, 200);
    for _ in 0..9 {
        sign_in(h, &p, &email, "a wrong password").send().await.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH");
    }
    // The tenth attempt is the last the window admits; the eleventh is refused, right or not.
    assert_eq!(sign_in(h, &p, &email, "the right password").send().await.status, 200);
    let res = sign_in(h, &p, &email, "the right password").send().await;
    let body = res.assert_known_error(429, "TOO_MANY_SIGN_IN_ATTEMPTS");
    assert!(body["details"]["retry_after_seconds"].as_i64().unwrap() > 0, "{body}");
    // Another address is not affected.
    let other = unique_email("other");
    assert_eq!(sign_up(h, &p, &other, "the right password").send().await.status, 200);
    assert_eq!(sign_in(h, &p, &other, "the right password").send().await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sign_ups_with_one_email_make_one_user() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("race");
    let answers =
        futures::future::join_all((0..6).map(|_| sign_up(h, &p, &email, "long enough password").send())).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200 || s == 409), "{statuses:?}");
    let users = h.db_query("SELECT count(*) FROM users WHERE primary_email = ?1", &[&email]);
    assert_eq!(users[0][0], "1");
}

#[tokio::test]
async fn a_password_change_needs_the_old_one_and_replaces_it() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("change");
    let up = sign_up(h, &p, &email, "the first password").send().await.json();
    let token = up["access_token"].as_str().unwrap();
    let change = |old: &str, new: &str| {
        h.post("/api/v1/auth/password/update")
            .client(&p)
            .access_token(token)
            .json(&json!({ "old_password": old, "new_password": new }))
    };
    change("not the first", "the second password")
        .send()
        .await
        .assert_known_error(400, "PASSWORD_CONFIRMATION_MISMATCH");
    change("the first password", "short").send().await.assert_known_error(400, "PASSWORD_TOO_SHORT");
    let res = change("the first password", "the second password").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    sign_in(h, &p, &email, "the first password").send().await.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH");
    assert_eq!(sign_in(h, &p, &email, "the second password").send().await.status, 200);
    // Without a signed-in user there is nothing to change.
    h.post("/api/v1/auth/password/update")
        .client(&p)
        .json(&json!({ "old_password": "the second password", "new_password": "the third password" }))
        .send()
        .await
        .assert_known_error(401, "USER_AUTHENTICATION_REQUIRED");
}

#[tokio::test]
async fn passwords_are_argon2id_hashes_at_rest_and_go_with_their_user() {
    let h = host();
    let p = password_project(h, json!({})).await;
    let email = unique_email("rest");
    let up = sign_up(h, &p, &email, "a secret password").send().await.json();
    let user_id = up["user_id"].as_str().unwrap();
    let stored = h.db_query("SELECT password_hash FROM password_credentials WHERE user_id = ?1", &[user_id]);
    let hash = &stored[0][0];
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    assert!(!hash.contains("a secret password"));
    let res = h.delete(&format!("/api/v1/users/{user_id}")).server(&p).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(h.db_query("SELECT 1 FROM password_credentials WHERE user_id = ?1", &[user_id]).is_empty());
    sign_in(h, &p, &email, "a secret password").send().await.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH");
    // The address is free again.
    assert_eq!(sign_up(h, &p, &email, "a secret password").send().await.status, 200);
}
