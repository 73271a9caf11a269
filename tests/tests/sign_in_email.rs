//! Sign-in by email (docs/api.md §1.11, §1.12), through the outbox and a real SMTP server
//! (aiosmtpd): a one-time code that arrives, signs in (or up) once and expires; a password
//! reset link that arrives, works once, and is never sent for an unknown address.

use api_tests::{Host, Project, SmtpSink};
use serde_json::{json, Value};

async fn project(h: &Host, config: Value) -> Project {
    let p = h.create_project(false).await;
    h.set_environment_config(&p, &config).await;
    p
}

/// The one message to `to` the sink holds, undone of its transfer encoding's soft line breaks.
fn message_to(sink: &SmtpSink, to: &str) -> String {
    let found: Vec<String> = sink.messages().into_iter().filter(|m| m.contains(to)).collect();
    assert_eq!(found.len(), 1, "one message to {to}: {found:#?}");
    found[0].replace("=\r\n", "").replace("=\n", "").replace("=3D", "=").replace("\r\n ", " ")
}

/// The value of `code=` in the message's link.
fn link_code(message: &str) -> String {
    let start = message.find("code=").expect("a link with a code") + 5;
    message[start..].chars().take_while(char::is_ascii_alphanumeric).collect()
}

const CALLBACK: &str = "http://localhost:3000/handler/sign-in";

#[tokio::test]
async fn a_sign_in_code_arrives_signs_in_once_and_expires() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = project(&h, json!({ "auth.otp.allowSignIn": true })).await;
    let send = |email: &str| {
        h.post("/api/v1/auth/otp/send-sign-in-code")
            .client(&p)
            .json(&json!({ "email": email, "callback_url": CALLBACK }))
    };
    let sign_in = |code: &str| h.post("/api/v1/auth/otp/sign-in").client(&p).json(&json!({ "code": code }));

    let res = send("Otto@Example.com").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let nonce = res.json()["nonce"].as_str().unwrap().to_string();
    assert_eq!(nonce.len(), 39);
    h.run_email_queue().await;
    let message = message_to(&sink, "otto@example.com");
    let subject_at = message.find("Your code is ").expect("the code in the subject") + "Your code is ".len();
    let otp: String = message[subject_at..].chars().take(6).collect();
    assert!(otp.chars().all(|c| c.is_ascii_alphanumeric()), "{otp}");
    // The link carries the same code as the subject, followed by the nonce.
    assert_eq!(link_code(&message), format!("{}{nonce}", otp.to_lowercase()));

    // The code as the user types it (upper case) plus the nonce signs up a new, verified user.
    let res = sign_in(&format!("{otp}{nonce}")).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let first = res.json();
    assert_eq!(first["is_new_user"], true);
    let me = h.get("/api/v1/users/me").client(&p).access_token(first["access_token"].as_str().unwrap()).send().await;
    assert_eq!(me.json()["primary_email"], "otto@example.com");
    assert_eq!(me.json()["primary_email_verified"], true);

    // A second use of the same code fails.
    let body = sign_in(&format!("{otp}{nonce}")).send().await.assert_known_error(409, "VERIFICATION_CODE_ALREADY_USED");
    assert_eq!(body["error"], "The verification link has already been used.");
    // The six characters with another nonce are no code at all.
    let guess = format!("{otp}{}", "0".repeat(39));
    sign_in(&guess).send().await.assert_known_error(404, "VERIFICATION_CODE_NOT_FOUND");

    // A new code for the same address signs in the same user.
    let nonce = send("otto@example.com").send().await.json()["nonce"].as_str().unwrap().to_string();
    h.run_email_queue().await;
    let messages: Vec<String> = sink.messages().into_iter().filter(|m| m.contains("otto@example.com")).collect();
    assert_eq!(messages.len(), 2);
    let code = link_code(&messages[1].replace("=\r\n", "").replace("=3D", "="));
    assert!(code.ends_with(&nonce));
    let second = sign_in(&code).send().await.json();
    assert_eq!((second["is_new_user"].clone(), second["user_id"].clone()), (json!(false), first["user_id"].clone()));

    // An expired code fails, told apart from an unknown one.
    let nonce = send("late@example.com").send().await.json()["nonce"].as_str().unwrap().to_string();
    h.run_email_queue().await;
    let code = link_code(&message_to(&sink, "late@example.com"));
    assert!(code.ends_with(&nonce));
    let aged = h.db_execute("UPDATE verification_codes SET expires_at = 0 WHERE email = ?1", &["late@example.com"]);
    assert_eq!(aged, 1);
    sign_in(&code).send().await.assert_known_error(400, "VERIFICATION_CODE_EXPIRED");

    // Codes are stored as hashes only.
    let stored = h.db_query("SELECT code_hash FROM verification_codes", &[]);
    assert!(stored.iter().all(|r| r[0].len() == 64 && !r[0].contains(&nonce)), "{stored:?}");
}

#[tokio::test]
async fn sign_in_codes_are_off_by_default_and_links_go_to_trusted_places_only() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let off = h.create_project(false).await;
    let body = json!({ "email": "a@example.com", "callback_url": CALLBACK });
    let res = h.post("/api/v1/auth/otp/send-sign-in-code").client(&off).json(&body).send().await;
    res.assert_known_error(400, "OTP_SIGN_IN_NOT_ENABLED");
    let on = project(&h, json!({ "auth.otp.allowSignIn": true })).await;
    let evil = json!({ "email": "a@example.com", "callback_url": "https://evil.example.com/steal" });
    let res = h.post("/api/v1/auth/otp/send-sign-in-code").client(&on).json(&evil).send().await;
    res.assert_known_error(400, "REDIRECT_URL_NOT_WHITELISTED");
    h.run_email_queue().await;
    assert!(sink.messages().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_password_reset_link_arrives_and_sets_a_new_password_once() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = project(&h, json!({ "auth.password.allowSignIn": true })).await;
    let res = h
        .post("/api/v1/auth/password/sign-up")
        .client(&p)
        .json(&json!({ "email": "rita@example.com", "password": "the old password" }))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let ask = |email: &str| {
        h.post("/api/v1/auth/password/send-reset-code")
            .client(&p)
            .json(&json!({ "email": email, "callback_url": "http://localhost:3000/handler/reset" }))
    };
    for email in ["rita@example.com", "nobody@example.com"] {
        let res = ask(email).send().await;
        assert_eq!((res.status, res.json()), (200, json!({ "success": "maybe, only if user with e-mail exists" })));
    }
    h.run_email_queue().await;
    assert_eq!(sink.messages().len(), 1, "no email for an unknown address");
    let code = link_code(&message_to(&sink, "rita@example.com"));
    assert_eq!(code.len(), 45);

    let check = h.post("/api/v1/auth/password/reset/check-code").client(&p).json(&json!({ "code": code })).send().await;
    assert_eq!((check.status, check.json()), (200, json!({ "is_code_valid": true })));
    let reset = |password: &str| {
        h.post("/api/v1/auth/password/reset").client(&p).json(&json!({ "code": code, "password": password }))
    };
    reset("short").send().await.assert_known_error(400, "PASSWORD_TOO_SHORT");
    let res = reset("the new password").send().await;
    assert_eq!((res.status, res.json()), (200, json!({ "success": true })));
    reset("a third password").send().await.assert_known_error(409, "VERIFICATION_CODE_ALREADY_USED");

    let sign_in = |password: &str| {
        h.post("/api/v1/auth/password/sign-in")
            .client(&p)
            .json(&json!({ "email": "rita@example.com", "password": password }))
    };
    sign_in("the old password").send().await.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH");
    assert_eq!(sign_in("the new password").send().await.status, 200);
}
