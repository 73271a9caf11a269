//! The email outbox and the companion's email worker (docs/api.md §5), against a real SMTP
//! server (aiosmtpd) started by the test: sending, skipping, render errors, permanent and
//! temporary SMTP failures, the cron route, the outbox API, bad input, and the stuck-send
//! recovery cases of the seed PR.

use api_tests::{Host, Project, RecordingServer, SmtpSink, UserSession};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A host sending through `sink`, with a capacity so high that back-to-back passes (a few
/// milliseconds apart) always get a send quota.
async fn enqueue(h: &Host, p: &Project, body: Value) -> String {
    let res = h.post("/api/v1/emails/outbox").server(p).json(&body).send().await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.json()["id"].as_str().unwrap().to_string()
}

/// Render claims are fair across tenancies: a backlog of one project (more than a pass
/// renders) does not delay another project's email to a later pass.
#[tokio::test]
async fn one_projects_backlog_does_not_delay_anothers_email() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let (busy, quiet) = (h.create_project(false).await, h.create_project(false).await);
    let email = |to: &str| json!({ "to": { "type": "custom-emails", "emails": [to] }, "tsx_source": TEMPLATE, "variables": { "name": "A" } });
    let backlog = shared::email::RENDER_BATCH as usize + 10;
    for i in 0..backlog {
        enqueue(&h, &busy, email(&format!("bulk{i}@example.com"))).await;
    }
    let late = enqueue(&h, &quiet, email("late@example.com")).await;
    h.run_email_queue().await;
    assert_eq!(read(&h, &quiet, &late).await["status"], "sent", "the quiet project's email went in the first pass");
    let waiting = h.db_query(
        "SELECT count(*) FROM email_outbox WHERE tenancy_id = (SELECT tenancy_id FROM email_outbox WHERE id = ?) \
         AND finished_rendering_at IS NULL",
        &[&late],
    );
    assert_eq!(waiting[0][0], "0");
    let busy_waiting = h.db_query("SELECT count(*) FROM email_outbox WHERE finished_rendering_at IS NULL", &[]);
    assert_eq!(busy_waiting[0][0], "11", "the busy project's backlog waits for the next pass");
}

async fn read(h: &Host, p: &Project, id: &str) -> Value {
    let res = h.get(&format!("/api/v1/emails/outbox/{id}")).server(p).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()
}

const TEMPLATE: &str = "<title>Hello {{ name }}</title><p>Hi {{ name }}</p>";

#[tokio::test]
async fn the_worker_sends_skips_and_records_failures() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let with_email = h.user_with_session(&p, json!({ "primary_email": "bob@example.com" })).await;
    let without = h.user_with_session(&p, json!({})).await;
    let custom = |emails: Value| json!({ "to": { "type": "custom-emails", "emails": emails }, "tsx_source": TEMPLATE, "variables": { "name": "Alice" } });

    let sent_custom = enqueue(&h, &p, custom(json!(["alice@example.com"]))).await;
    let sent_user = enqueue(
        &h,
        &p,
        json!({ "to": { "type": "user-primary-email", "user_id": with_email.user_id },
        "tsx_source": TEMPLATE, "variables": { "name": "Bob" }, "subject": "For Bob" }),
    )
    .await;
    let no_primary = enqueue(&h, &p, json!({ "to": { "type": "user-primary-email", "user_id": without.user_id }, "tsx_source": TEMPLATE, "variables": { "name": "x" } })).await;
    let no_address = enqueue(&h, &p, custom(json!([]))).await;
    let bad_template = enqueue(
        &h,
        &p,
        json!({ "to": { "type": "custom-emails", "emails": ["carol@example.com"] }, "tsx_source": "{{ missing }}" }),
    )
    .await;
    let rejected = enqueue(&h, &p, custom(json!(["reject-me@example.com"]))).await;
    let temporary = enqueue(&h, &p, custom(json!(["tempfail@example.com"]))).await;

    // The cron route's authorization.
    let res = h.sender_get("/api/v1/internal/email-queue-step").send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert!(body["error"].as_str().unwrap().ends_with("headers.authorization must be defined"));
    let res = h.sender_get("/api/v1/internal/email-queue-step").header("authorization", "Bearer wrong").send().await;
    assert_eq!((res.status, res.text.as_str()), (401, "Unauthorized"));

    h.run_email_queue().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let alice = messages.iter().find(|m| m.contains("alice@example.com")).expect("alice's email");
    assert!(alice.contains("Subject: Hello Alice"), "{alice}");
    assert!(alice.contains(&format!("Message-ID: <{sent_custom}@test.example>")), "{alice}");
    let bob = messages.iter().find(|m| m.contains("bob@example.com")).expect("bob's email");
    assert!(bob.contains("Subject: For Bob"), "{bob}");

    let status = |v: &Value| v["status"].as_str().unwrap().to_string();
    assert_eq!(status(&read(&h, &p, &sent_custom).await), "sent");
    assert_eq!(read(&h, &p, &sent_user).await["simple_status"], "ok");
    let skipped = read(&h, &p, &no_primary).await;
    assert_eq!((status(&skipped), &skipped["skipped_reason"]), ("skipped".into(), &json!("USER_HAS_NO_PRIMARY_EMAIL")));
    assert_eq!(read(&h, &p, &no_address).await["skipped_reason"], "NO_EMAIL_PROVIDED");
    let render_error = read(&h, &p, &bad_template).await;
    assert_eq!(status(&render_error), "render-error");
    assert!(render_error["render_error"].as_str().unwrap().starts_with("An error occurred while rendering the email."));
    let failed = read(&h, &p, &rejected).await;
    assert_eq!((status(&failed), &failed["send_retries"]), ("server-error".into(), &json!(1)));
    assert_eq!(failed["send_attempt_errors"][0]["external_details"]["errorType"], "INVALID_EMAIL_ADDRESS");
    let retried = read(&h, &p, &temporary).await;
    assert_eq!((status(&retried), &retried["send_retries"]), ("scheduled".into(), &json!(1)));
    let next = retried["next_send_retry_at_millis"].as_i64().unwrap();
    assert!(next >= now_ms() + 10_000 && next <= now_ms() + 60_000, "backoff of the first retry: 20-60 s");

    // A second pass sends nothing again.
    h.run_email_queue().await;
    assert_eq!(sink.messages().len(), 2);

    // The list, its filters and its limit.
    let list = |query: &str| {
        let call = h.get(&format!("/api/v1/emails/outbox?{query}")).server(&p);
        async move { call.send().await }
    };
    assert_eq!(list("status=sent").await.json()["items"].as_array().unwrap().len(), 2);
    assert_eq!(list("simple_status=error").await.json()["items"].as_array().unwrap().len(), 2);
    let page = list("limit=3").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["is_paginated"], true);
    let cursor = page["pagination"]["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(list(&format!("limit=10&cursor={cursor}")).await.json()["items"].as_array().unwrap().len(), 4);
    let res = list("limit=101").await;
    assert_eq!((res.status, res.text.as_str()), (400, "Limit cannot exceed 100"));
    let res = list("limit=abc").await;
    assert_eq!((res.status, res.text.as_str()), (400, "Invalid limit parameter"));
    let res =
        h.get(&format!("/api/v1/emails/outbox/{}", "7d1a0c2e-0000-4000-8000-000000000000")).server(&p).send().await;
    assert_eq!((res.status, res.text.as_str()), (404, "Email not found"));
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let cases = [
        json!({ "to": { "type": "custom-emails", "emails": ["not an address"] }, "tsx_source": "x" }),
        json!({ "to": { "type": "custom-emails", "emails": ["a@example.com, b@example.com"] }, "tsx_source": "x" }),
        json!({ "to": { "type": "fax", "number": "1" }, "tsx_source": "x" }),
        json!({ "to": { "type": "user-primary-email", "user_id": "nope" }, "tsx_source": "x" }),
        json!({ "to": { "type": "custom-emails", "emails": ["a@example.com"] }, "tsx_source": "x".repeat(100_001) }),
        json!({ "to": { "type": "custom-emails", "emails": ["a@example.com"] } }),
        json!({ "tsx_source": "x" }),
        json!({ "to": { "type": "custom-emails", "emails": ["a@example.com"] }, "tsx_source": "x", "variables": [1] }),
        json!({ "to": { "type": "custom-emails", "emails": ["a@example.com"] }, "tsx_source": "x", "colour": "red" }),
        json!({ "to": { "type": "custom-emails", "emails": ["a@example.com"] }, "tsx_source": "x", "skip_deliverability_check": "yes" }),
    ];
    for body in cases {
        let res = h.post("/api/v1/emails/outbox").server(&p).json(&body).send().await;
        res.assert_known_error(400, "SCHEMA_ERROR");
    }
    let res = h.post("/api/v1/emails/outbox").client(&p).json(&json!({})).send().await;
    res.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    assert_eq!(h.db_query("SELECT count(*) FROM email_outbox", &[]), vec![vec!["0".to_string()]]);
}

/// §5.5 PATCH and the outbox-api cases of §5.8: content edits start the email over (and send
/// the new content), pausing holds it, a schedule change takes effect, cancelling skips it;
/// sent and skipped emails are not editable; bad edits change nothing.
#[tokio::test]
async fn outbox_edits_pauses_and_cancels_only_before_sending() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let later = now_ms() + 3_600_000;
    let patch =
        |id: &str, body: Value| h.request("PATCH", &format!("/api/v1/emails/outbox/{id}")).server(&p).json(&body);
    let email = |to: &str| json!({ "to": { "type": "custom-emails", "emails": [to] }, "tsx_source": TEMPLATE, "variables": { "name": "Old" } });

    let mut scheduled = email("first@example.com");
    scheduled["scheduled_at_millis"] = json!(later);
    let edited = enqueue(&h, &p, scheduled).await;
    let cancelled = enqueue(&h, &p, email("second@example.com")).await;
    patch(&cancelled, json!({ "is_paused": true })).send().await;
    let failed = enqueue(&h, &p, email("reject-me@example.com")).await;
    h.run_email_queue().await;
    assert!(sink.messages().is_empty());
    assert_eq!(read(&h, &p, &edited).await["status"], "scheduled");
    assert_eq!(read(&h, &p, &failed).await["status"], "server-error");

    // Bad edits are refused and change nothing.
    let before = read(&h, &p, &edited).await;
    for body in [
        json!({ "cancel": false }),
        json!({ "variables": [1] }),
        json!({ "to": { "type": "custom-emails", "emails": ["not an address"] } }),
        json!({ "tsx_source": "x".repeat(100_001) }),
        json!({ "is_paused": "yes" }),
        json!({ "subject": "unknown field" }),
    ] {
        patch(&edited, body).send().await.assert_known_error(400, "SCHEMA_ERROR");
    }
    assert_eq!(read(&h, &p, &edited).await, before);

    // Content edits: rendering starts over; a pause holds the email; a new time sends it.
    let res = patch(
        &edited,
        json!({ "tsx_source": "<title>New {{ name }}</title>{{ name }}", "variables": { "name": "New" },
        "to": { "type": "custom-emails", "emails": ["changed@example.com"] }, "is_paused": true }),
    )
    .send()
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!((&res.json()["status"], &res.json()["has_rendered"]), (&json!("paused"), &json!(false)));
    h.run_email_queue().await;
    assert_eq!(read(&h, &p, &edited).await["status"], "paused");
    patch(&edited, json!({ "is_paused": false, "scheduled_at_millis": now_ms() - 1 })).send().await;
    h.run_email_queue().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:#?} {:#}", read(&h, &p, &edited).await);
    assert!(
        messages[0].contains("X-Envelope-To: changed@example.com") && messages[0].contains("Subject: New New"),
        "{}",
        messages[0]
    );
    let sent = read(&h, &p, &edited).await;
    assert_eq!((&sent["status"], &sent["can_have_delivery_info"]), (&json!("sent"), &json!(false)));
    let res = patch(&edited, json!({ "is_paused": true })).send().await;
    let body = res.assert_known_error(400, "EMAIL_NOT_EDITABLE");
    assert_eq!(body["details"], json!({ "email_id": edited, "status": "SENT" }));

    // A server error can be corrected and sent again: every retry field starts over.
    let res =
        patch(&failed, json!({ "to": { "type": "custom-emails", "emails": ["fixed@example.com"] } })).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let reset = res.json();
    assert_eq!(
        (&reset["status"], &reset["send_retries"], &reset["send_attempt_errors"]),
        (&json!("preparing"), &json!(0), &Value::Null)
    );
    h.run_email_queue().await;
    assert_eq!(read(&h, &p, &failed).await["status"], "sent");
    assert_eq!(sink.messages().len(), 2);

    // Cancelling skips (and unpauses); a skipped email cannot be cancelled again.
    let res = patch(&cancelled, json!({ "cancel": true })).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let skipped = res.json();
    assert_eq!((&skipped["status"], &skipped["is_paused"]), (&json!("skipped"), &json!(false)));
    assert_eq!((&skipped["skipped_reason"], &skipped["skipped_details"]), (&json!("MANUALLY_CANCELLED"), &json!({})));
    patch(&cancelled, json!({ "cancel": true })).send().await.assert_known_error(400, "EMAIL_NOT_EDITABLE");
    h.run_email_queue().await;
    assert_eq!(sink.messages().len(), 2, "a cancelled email is never sent");

    // Unknown ids and other projects' emails are not found.
    let other = h.create_project(false).await;
    for call in [
        patch("00000000-0000-4000-8000-000000000000", json!({ "cancel": true })),
        h.request("PATCH", &format!("/api/v1/emails/outbox/{cancelled}"))
            .server(&other)
            .json(&json!({ "is_paused": true })),
    ] {
        let res = call.send().await;
        assert_eq!((res.status, res.text.as_str()), (404, "Email not found"));
    }
}

/// §5.8 delivery info: zero for a new project, sent emails counted, the rate they give (the
/// default grows by 4 × sent ÷ 720 per hour), and a capacity boost that quadruples it — one at
/// a time, even when requested concurrently.
#[tokio::test]
async fn delivery_info_counts_sends_and_a_boost_raises_the_rate() {
    let sink = SmtpSink::start();
    let port = sink.port.to_string();
    let h = Host::start_with_sender(&[
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        // Project servers here are local sinks on random ports: the operator allows them.
        ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1"),
        ("STACK_EMAIL_PORT", &port),
        ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "720"),
    ]);
    let p = h.create_project(false).await;
    let info = || {
        let call = h.get("/api/v1/emails/delivery-info").server(&p);
        async move {
            let res = call.send().await;
            assert_eq!(res.status, 200, "{}", res.text);
            res.json()
        }
    };
    h.get("/api/v1/emails/delivery-info").client(&p).send().await.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    h.post("/api/v1/emails/capacity-boost").client(&p).send().await.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    let fresh = info().await;
    for window in ["hour", "day", "week", "month"] {
        assert_eq!(fresh["stats"][window], json!({ "sent": 0, "bounced": 0, "marked_as_spam": 0 }));
    }
    assert_eq!(fresh["capacity"]["rate_per_second"], json!(0.2));
    assert_eq!(fresh["capacity"]["is_boost_active"], false);

    for n in 0..3 {
        enqueue(
            &h,
            &p,
            json!({ "to": { "type": "custom-emails", "emails": [format!("u{n}@example.com")] }, "tsx_source": "hi" }),
        )
        .await;
    }
    enqueue(
        &h,
        &p,
        json!({ "to": { "type": "custom-emails", "emails": ["reject-me@example.com"] }, "tsx_source": "hi" }),
    )
    .await;
    h.run_email_queue().await;
    assert_eq!(sink.messages().len(), 3);
    let after = info().await;
    assert_eq!(after["stats"]["hour"]["sent"], 3, "a failed send is not counted: {after:#}");
    assert_eq!(after["stats"]["month"]["sent"], 3);
    let grown = (720.0 + 4.0 * 3.0 / 720.0) / 3600.0;
    assert!((after["capacity"]["rate_per_second"].as_f64().unwrap() - grown).abs() < 1e-9, "{after:#}");

    let boosts: Vec<_> =
        futures::future::join_all((0..10).map(|_| h.post("/api/v1/emails/capacity-boost").server(&p).send())).await;
    let started: Vec<_> = boosts.iter().filter(|r| r.status == 200).collect();
    assert_eq!(started.len(), 1, "exactly one boost starts");
    let expires_at = started[0].json()["expires_at_millis"].as_i64().unwrap();
    assert!((expires_at - now_ms() - 4 * 3_600_000).abs() < 60_000, "a boost lasts four hours");
    for refused in boosts.iter().filter(|r| r.status != 200) {
        let body = refused.assert_known_error(409, "EMAIL_CAPACITY_BOOST_ALREADY_ACTIVE");
        let iso = body["details"]["expires_at"].as_str().unwrap();
        assert!(iso.ends_with('Z') && iso.contains('T'), "{iso}");
    }
    let boosted = info().await;
    assert_eq!(
        (&boosted["capacity"]["is_boost_active"], &boosted["capacity"]["boost_expires_at_millis"]),
        (&json!(true), &json!(expires_at))
    );
    assert!((boosted["capacity"]["rate_per_second"].as_f64().unwrap() - 4.0 * grown).abs() < 1e-9, "{boosted:#}");
}

/// §5.8: a user who unsubscribes (through the link in a marketing email) is skipped for
/// marketing email but still gets transactional email; preferences through the API, for the
/// user itself and for servers; forged links and undisableable categories are refused.
#[tokio::test]
async fn unsubscribed_users_skip_marketing_but_not_transactional_email() {
    const MARKETING: &str = "4f6f8873-3d04-46bd-8bef-18338b1a1b4c";
    const TRANSACTIONAL: &str = "7bb82d33-2f54-4a3d-9d23-82739e0d66ef";
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let bob = h.user_with_session(&p, json!({ "primary_email": "bob@example.com" })).await;
    let eve = h.user_with_session(&p, json!({ "primary_email": "eve@example.com" })).await;
    let to_bob = |transactional: bool| {
        json!({ "to": { "type": "user-primary-email", "user_id": bob.user_id },
        "tsx_source": "<title>News</title>Hello", "is_transactional": transactional })
    };

    let marketing = enqueue(&h, &p, to_bob(false)).await;
    let anonymous_marketing = enqueue(
        &h,
        &p,
        json!({ "to": { "type": "custom-emails", "emails": ["x@example.com"] },
        "tsx_source": "Hello", "is_transactional": false }),
    )
    .await;
    h.run_email_queue().await;
    let email = read(&h, &p, &marketing).await;
    assert_eq!(email["notification_category_id"], MARKETING);
    let text = email["text"].as_str().unwrap();
    let link = &text[text.find("Unsubscribe: ").expect("a marketing email to a user has an unsubscribe link") + 13..];
    assert!(sink.messages().iter().any(|m| m.contains("bob@example.com") && m.contains("Unsubscribe")));
    assert!(
        !read(&h, &p, &anonymous_marketing).await["text"].as_str().unwrap().contains("Unsubscribe"),
        "no user, no link"
    );
    let path = &link[link.find("/api/v1/").unwrap()..];

    // A forged code (another user under Bob's signature) and garbage are refused.
    let code = &path[path.find("code=").unwrap() + 5..];
    let (_, signature) = code.split_once('.').unwrap();
    use base64::Engine;
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}\n{}\n{MARKETING}", p.id, eve.user_id));
    for bad in [format!("{forged_payload}.{signature}"), "nonsense".into(), String::new()] {
        let res = h.get(&format!("/api/v1/emails/unsubscribe-link?code={bad}")).send().await;
        assert_eq!((res.status, res.text.as_str()), (400, "This unsubscribe link is not valid."));
    }
    let res = h.get(path).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(res.text.contains("You will no longer receive marketing emails."), "{}", res.text);

    let prefs = |who: &UserSession| {
        let call = h.get("/api/v1/emails/notification-preference/me").client(&p).access_token(&who.access_token);
        async move { call.send().await.json()["items"].clone() }
    };
    assert_eq!(
        prefs(&bob).await,
        json!([
            { "notification_category_id": TRANSACTIONAL, "notification_category_name": "Transactional", "enabled": true, "can_disable": false },
            { "notification_category_id": MARKETING, "notification_category_name": "Marketing", "enabled": false, "can_disable": true },
        ])
    );
    assert_eq!(prefs(&eve).await[1]["enabled"], true, "only Bob unsubscribed");

    let skipped = enqueue(&h, &p, to_bob(false)).await;
    let transactional = enqueue(&h, &p, to_bob(true)).await;
    h.run_email_queue().await;
    let email = read(&h, &p, &skipped).await;
    assert_eq!((&email["status"], &email["skipped_reason"]), (&json!("skipped"), &json!("USER_UNSUBSCRIBED")));
    let email = read(&h, &p, &transactional).await;
    assert_eq!((&email["status"], &email["notification_category_id"]), (&json!("sent"), &json!(TRANSACTIONAL)));
    assert!(!email["text"].as_str().unwrap().contains("Unsubscribe"), "transactional email has no unsubscribe link");

    // Preferences through the API: the user itself re-subscribes; refusals change nothing.
    let set = |user: &str, category: &str, enabled: Value| {
        h.request("PATCH", &format!("/api/v1/emails/notification-preference/{user}/{category}"))
            .json(&json!({ "enabled": enabled }))
    };
    let res = set("me", TRANSACTIONAL, json!(false)).client(&p).access_token(&bob.access_token).send().await;
    assert_eq!((res.status, res.text.as_str()), (400, "The Transactional notification category cannot be disabled"));
    let res = set("me", "00000000-0000-4000-8000-000000000000", json!(true))
        .client(&p)
        .access_token(&bob.access_token)
        .send()
        .await;
    assert_eq!(res.status, 404);
    let res = set(&eve.user_id, MARKETING, json!(false)).client(&p).access_token(&bob.access_token).send().await;
    assert_eq!(res.status, 403, "a client cannot change another user's preferences");
    set("me", MARKETING, json!("yes"))
        .client(&p)
        .access_token(&bob.access_token)
        .send()
        .await
        .assert_known_error(400, "SCHEMA_ERROR");
    set("me", MARKETING, json!(true))
        .client(&p)
        .send()
        .await
        .assert_known_error(400, "CANNOT_GET_OWN_USER_WITHOUT_USER");
    assert_eq!(prefs(&eve).await[1]["enabled"], true);
    let res = set("me", MARKETING, json!(true)).client(&p).access_token(&bob.access_token).send().await;
    assert_eq!((res.status, &res.json()["enabled"]), (200, &json!(true)), "{}", res.text);
    let res = set(&eve.user_id, MARKETING, json!(false)).server(&p).send().await;
    assert_eq!((res.status, &res.json()["enabled"]), (200, &json!(false)), "{}", res.text);
    let again = enqueue(&h, &p, to_bob(false)).await;
    h.run_email_queue().await;
    assert_eq!(read(&h, &p, &again).await["status"], "sent");
}

/// §5.2 deliverability: emails to the shared server are checked with Emailable (here a local
/// stand-in that records each request) unless they opt out; an undeliverable answer skips the
/// email with Emailable's answer; projects with their own server are not checked; an Emailable
/// that cannot be reached never stops an email.
#[tokio::test]
async fn the_shared_server_checks_deliverability_first() {
    let emailable = RecordingServer::start(|request| {
        let state = if request.uri.contains("email=bounce") { "undeliverable" } else { "deliverable" };
        (200, "application/json", json!({ "state": state, "reason": "test" }).to_string())
    });
    let sink = SmtpSink::start();
    let port = sink.port.to_string();
    let env = |emailable_url: &str| {
        Host::start_with_sender(&[
            ("STACK_EMAIL_HOST", "127.0.0.1"),
            // Project servers here are local sinks on random ports: the operator allows them.
            ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1"),
            ("STACK_EMAIL_PORT", &port),
            ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "1000000000"),
            ("STACK_EMAILABLE_API_KEY", "emailable-test-key"),
            ("STACK_EMAILABLE_API_URL", emailable_url),
        ])
    };
    let h = env(&emailable.url);
    let p = h.create_project(false).await;
    let custom = |to: &str, skip: bool| json!({ "to": { "type": "custom-emails", "emails": [to] }, "tsx_source": "hi", "skip_deliverability_check": skip });
    let bounce = enqueue(&h, &p, custom("bounce@example.com", false)).await;
    let good = enqueue(&h, &p, custom("good@example.com", false)).await;
    let opted_out = enqueue(&h, &p, custom("bounce-anyway@example.com", true)).await;
    let own = h.create_project(false).await;
    let res = set_email_server(
        &h,
        &own,
        json!({ "isShared": false, "provider": "smtp", "host": "127.0.0.1", "port": sink.port,
        "username": "u", "password": "p", "senderName": "Own", "senderEmail": "own@own.test" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let unchecked = enqueue(&h, &own, custom("bounce-own@example.com", false)).await;
    h.run_email_queue().await;

    let skipped = read(&h, &p, &bounce).await;
    assert_eq!((&skipped["status"], &skipped["skipped_reason"]), (&json!("skipped"), &json!("LIKELY_NOT_DELIVERABLE")));
    assert_eq!(
        skipped["skipped_details"],
        json!({ "email": "bounce@example.com", "emailableResponse": { "state": "undeliverable", "reason": "test" } })
    );
    for (project, id) in [(&p, &good), (&p, &opted_out), (&own, &unchecked)] {
        assert_eq!(read(&h, project, id).await["status"], "sent");
    }
    assert_eq!(read(&h, &p, &opted_out).await["skip_deliverability_check"], true);
    let mut checked: Vec<String> = emailable
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.method, "GET");
            assert!(r.uri.starts_with("/verify?") && r.uri.contains("api_key=emailable-test-key"), "{}", r.uri);
            r.uri.clone()
        })
        .collect();
    checked.sort();
    assert_eq!(checked.len(), 2, "only the two shared-server emails that did not opt out: {checked:?}");
    assert!(
        checked[0].contains("email=bounce%40example.com") && checked[1].contains("email=good%40example.com"),
        "{checked:?}"
    );

    // Emailable unreachable: the email goes out.
    let down = env("http://127.0.0.1:9");
    let p = down.create_project(false).await;
    let id = enqueue(&down, &p, custom("bounce-when-down@example.com", false)).await;
    down.run_email_queue().await;
    assert_eq!(read(&down, &p, &id).await["status"], "sent");
}

/// §5.8: a user deleted after queueing, or whose primary email is removed, is skipped with the
/// reason; the email is stored, so it does not matter how the user changed.
#[tokio::test]
async fn users_deleted_or_without_email_after_queueing_are_skipped() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let gone = h.user_with_session(&p, json!({ "primary_email": "gone@example.com" })).await;
    let emailless = h.user_with_session(&p, json!({ "primary_email": "was@example.com" })).await;
    let to = |user: &UserSession| json!({ "to": { "type": "user-primary-email", "user_id": user.user_id }, "tsx_source": "hi" });
    let (to_gone, to_emailless) = (enqueue(&h, &p, to(&gone)).await, enqueue(&h, &p, to(&emailless)).await);
    assert_eq!(h.request("DELETE", &format!("/api/v1/users/{}", gone.user_id)).server(&p).send().await.status, 200);
    let res = h
        .request("PATCH", &format!("/api/v1/users/{}", emailless.user_id))
        .server(&p)
        .json(&json!({ "primary_email": null }))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    h.run_email_queue().await;
    assert!(sink.messages().is_empty());
    let email = read(&h, &p, &to_gone).await;
    assert_eq!(
        (&email["skipped_reason"], &email["skipped_details"]),
        (&json!("USER_ACCOUNT_DELETED"), &json!({ "user_id": gone.user_id }))
    );
    assert_eq!(read(&h, &p, &to_emailless).await["skipped_reason"], "USER_HAS_NO_PRIMARY_EMAIL");
}

/// `POST /emails/send-email` (§5.6, §5.8): one email per user — a list or everyone — each
/// sent on its own; refused on the shared server and for unknown users, writing nothing.
#[tokio::test]
async fn send_email_reaches_each_user_separately_and_needs_a_custom_server() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat"] {
        users.push(h.user_with_session(&p, json!({ "primary_email": format!("{name}@example.com") })).await.user_id);
    }
    let send = |body: Value| h.post("/api/v1/emails/send-email").server(&p).json(&body);
    let two = json!({ "user_ids": [users[0], users[1]], "html": "<title>Hi {{ what }}</title>Hello", "variables": { "what": "there" } });
    send(two.clone()).send().await.assert_known_error(400, "REQUIRES_CUSTOM_EMAIL_SERVER");
    let res = set_email_server(
        &h,
        &p,
        json!({ "isShared": false, "provider": "smtp", "host": "127.0.0.1", "port": sink.port,
        "username": "u", "password": "p", "senderName": "Proj", "senderEmail": "proj@proj.test" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    for bad in [
        json!({ "html": "x" }),
        json!({ "user_ids": [users[0]], "all_users": true, "html": "x" }),
        json!({ "all_users": false, "html": "x" }),
        json!({ "user_ids": [], "html": "x" }),
        json!({ "user_ids": ["not-a-uuid"], "html": "x" }),
        json!({ "user_ids": [users[0]] }),
        json!({ "user_ids": [users[0]], "html": "x", "notification_category_name": "Spam" }),
    ] {
        send(bad).send().await.assert_known_error(400, "SCHEMA_ERROR");
    }
    let unknown = json!({ "user_ids": [users[0], "00000000-0000-4000-8000-000000000000"], "html": "x" });
    send(unknown).send().await.assert_known_error(404, "USER_NOT_FOUND");
    assert_eq!(
        h.db_query("SELECT count(*) FROM email_outbox", &[]),
        vec![vec!["0".to_string()]],
        "refused calls write nothing"
    );

    let res = send(two).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mut named: Vec<String> =
        res.json()["results"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_string()).collect();
    named.sort();
    let mut expected = vec![users[0].clone(), users[1].clone()];
    expected.sort();
    assert_eq!(named, expected);
    h.run_email_queue().await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 2, "one message per user: {messages:#?}");
    for (message, other) in [("ann", "ben"), ("ben", "ann")] {
        let m = messages
            .iter()
            .find(|m| m.contains(&format!("X-Envelope-To: {message}@example.com")))
            .expect("each user's own email");
        assert!(!m.contains(&format!("{other}@example.com")) && m.contains("Subject: Hi there"), "{m}");
    }
    let res =
        send(json!({ "all_users": true, "html": "Everyone", "notification_category_name": "Marketing" })).send().await;
    assert_eq!(res.json()["results"].as_array().unwrap().len(), 3, "{}", res.text);
    h.run_email_queue().await;
    assert_eq!(sink.messages().len(), 5);
}

/// Writes `emails.server` into the project's environment override.
async fn set_email_server(h: &Host, p: &Project, server: Value) -> api_tests::Res {
    let body = json!({ "config_override_string": json!({ "emails.server": server }).to_string() });
    h.request("PATCH", "/api/v1/internal/config/override/environment").admin(p).json(&body).send().await
}

async fn environment_override(h: &Host, p: &Project) -> String {
    let res = h.get("/api/v1/internal/config/override/environment").admin(p).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()["config_string"].as_str().unwrap().to_string()
}

/// docs/api.md §5.6: shared projects send through `STACK_EMAIL_*` under the project's name; a
/// project's own SMTP server gets its login and sender; a managed domain sends through Resend's
/// SMTP front (here a second local server) as `resend` with the scoped key, from
/// `<local part>@<subdomain>` under the project's name. Unusable settings end as server errors
/// with their class, never retried.
#[tokio::test]
async fn each_project_sends_through_the_server_its_config_names() {
    let (shared_sink, own_sink, resend_sink) = (SmtpSink::start(), SmtpSink::start(), SmtpSink::start());
    let (shared_port, resend_port) = (shared_sink.port.to_string(), resend_sink.port.to_string());
    let h = Host::start_with_sender(&[
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        // Project servers here are local sinks on random ports: the operator allows them.
        ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1"),
        ("STACK_EMAIL_PORT", &shared_port),
        ("STACK_EMAIL_SENDER", "noreply@test.example"),
        ("STACK_RESEND_SMTP_HOST", "127.0.0.1"),
        ("STACK_RESEND_SMTP_PORT", &resend_port),
    ]);
    let own_server = |password: &str| {
        json!({ "isShared": false, "provider": "smtp", "host": "127.0.0.1", "port": own_sink.port, "username": "acme",
                "password": password, "senderName": "Acme Support", "senderEmail": "support@acme.test" })
    };
    let mut projects = Vec::new();
    for server in [
        None,
        Some(own_server("the-password")),
        Some(json!({ "isShared": false, "provider": "managed", "password": "re_scoped_key", "senderName": "ignored",
                     "managedSubdomain": "mail.managed.test", "managedSenderLocalPart": "hello" })),
        Some(json!({ "isShared": false, "provider": "smtp", "host": "smtp.nonexistent.invalid", "port": 587,
                     "username": "u", "password": "p", "senderName": "N", "senderEmail": "n@x.test" })),
        Some(own_server("wrong-password")),
        Some(json!({ "isShared": false, "provider": "smtp", "host": "127.0.0.1", "port": own_sink.port })),
    ] {
        let p = h.create_project(false).await;
        if let Some(server) = server {
            let res = set_email_server(&h, &p, server).await;
            assert_eq!(res.status, 200, "{}", res.text);
        }
        let to = format!("user{}@example.com", projects.len());
        let id = enqueue(&h, &p, json!({ "to": { "type": "custom-emails", "emails": [to] }, "tsx_source": TEMPLATE, "variables": { "name": "A" } })).await;
        projects.push((p, id));
    }
    h.run_email_queue().await;

    let only = |sink: &SmtpSink, to: &str| {
        let messages = sink.messages();
        assert_eq!(messages.len(), 1, "{messages:#?}");
        assert!(messages[0].contains(&format!("X-Envelope-To: {to}")), "{}", messages[0]);
        messages[0].clone()
    };
    let shared = only(&shared_sink, "user0@example.com");
    assert!(shared.contains("From: \"Test project\" <noreply@test.example>"), "{shared}");
    assert!(!shared.contains("X-Auth-Login"), "the shared server here has no login: {shared}");
    let own = only(&own_sink, "user1@example.com");
    assert!(own.contains("X-Auth-Login: acme") && own.contains("From: \"Acme Support\" <support@acme.test>"), "{own}");
    let managed = only(&resend_sink, "user2@example.com");
    assert!(managed.contains("X-Auth-Login: resend"), "{managed}");
    assert!(managed.contains("From: \"Test project\" <hello@mail.managed.test>"), "{managed}");
    for (p, id) in &projects[..3] {
        assert_eq!(read(&h, p, id).await["status"], "sent");
    }

    // The contract's broken-host case: a terminal server error after one attempt, no retry.
    for ((p, id), error_type) in projects[3..].iter().zip(["HOST_NOT_FOUND", "AUTH_FAILED", "EMAIL_CONFIG"]) {
        let email = read(&h, p, id).await;
        assert_eq!(email["status"], "server-error", "{email:#}");
        assert_eq!((&email["send_retries"], &email["next_send_retry_at_millis"]), (&json!(1), &Value::Null));
        let errors = email["send_attempt_errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["external_details"]["errorType"], error_type, "{email:#}");
    }
    let misconfigured = read(&h, &projects[5].0, &projects[5].1).await;
    assert!(misconfigured["server_error"].as_str().unwrap().contains("please check the email configuration"));
    assert_eq!(misconfigured["send_attempt_errors"][0]["internal_message"], "emails.server.username is not set");
}

/// A project's own mail server must be a public address on a mail port, unless the operator
/// allow-lists it: otherwise the sender would probe the operator's network for the project. The
/// user sees the class of the failure only.
#[tokio::test]
async fn project_mail_servers_on_private_addresses_or_odd_ports_are_refused() {
    let sink = SmtpSink::start();
    let h = Host::start_with_sender(&[]);
    let server = |host: &str, port: u16| {
        json!({ "isShared": false, "provider": "smtp", "host": host, "port": port, "username": "u",
                "password": "p", "senderName": "N", "senderEmail": "n@acme.test" })
    };
    let mut emails = Vec::new();
    for (host, port, error_type) in [
        ("127.0.0.1", sink.port, "PORT_NOT_ALLOWED"),
        ("127.0.0.1", 587, "HOST_NOT_ALLOWED"),
        ("localhost", 25, "HOST_NOT_ALLOWED"),
        ("10.0.0.1", 587, "HOST_NOT_ALLOWED"),
        ("169.254.169.254", 25, "HOST_NOT_ALLOWED"),
        ("::ffff:127.0.0.1", 465, "HOST_NOT_ALLOWED"),
        ("93.184.216.34", 22, "PORT_NOT_ALLOWED"),
    ] {
        let p = h.create_project(false).await;
        let res = set_email_server(&h, &p, server(host, port)).await;
        assert_eq!(res.status, 200, "{}", res.text);
        let id = enqueue(&h, &p, json!({ "to": { "type": "custom-emails", "emails": ["a@example.com"] }, "tsx_source": TEMPLATE, "variables": { "name": "A" } })).await;
        emails.push((p, id, host, error_type));
    }
    h.run_email_queue().await;
    for (p, id, host, error_type) in &emails {
        let email = read(&h, p, id).await;
        assert_eq!(email["status"], "server-error", "{host}: {email:#}");
        let error = &email["send_attempt_errors"][0];
        assert_eq!(error["external_details"]["errorType"], *error_type, "{host}: {email:#}");
        assert_eq!(email["server_error"], format!("The email could not be sent ({error_type})."), "{host}");
        assert_eq!(email["send_retries"], json!(1), "refused once, never retried: {host}");
    }
    assert!(sink.messages().is_empty(), "nothing reached the local server");
}

/// Unknown server kinds and a managed server without its key are refused; nothing is written.
#[tokio::test]
async fn unusable_email_server_settings_are_refused_and_write_nothing() {
    let h = Host::start_with_sender(&[]);
    let p = h.create_project(false).await;
    let before = environment_override(&h, &p).await;
    for server in [
        json!({ "isShared": false, "provider": "sendgrid" }),
        json!({ "isShared": false, "provider": "smtp", "port": "twenty-five" }),
        json!({ "isShared": false, "provider": "smtp", "hostname": "smtp.acme.test" }),
        json!({ "isShared": false, "provider": "managed", "managedSubdomain": "m.acme.test", "managedSenderLocalPart": "hi" }),
    ] {
        let res = set_email_server(&h, &p, server.clone()).await;
        assert_eq!(res.status, 400, "{server}: {}", res.text);
        assert_eq!(environment_override(&h, &p).await, before, "{server} changed the override");
    }
    let res = set_email_server(&h, &p, json!({ "isShared": false, "provider": "managed" })).await;
    assert!(
        res.text.contains("emails.server uses the managed provider but does not define emails.server.password"),
        "{}",
        res.text
    );
}

/// The seed PR's three cases: a send stuck 21 minutes is ended as a terminal server error
/// (delivery unknown, never retried); one started a second ago is left alone; a second run
/// changes nothing.
#[tokio::test]
async fn emails_stuck_in_sending_are_failed_once_and_never_resent() {
    let sink = SmtpSink::start();
    let h = Host::start_with_smtp(&sink);
    let p = h.create_project(false).await;
    let body = json!({ "to": { "type": "custom-emails", "emails": ["dave@example.com"] }, "tsx_source": "<p>x</p>" });
    let (stuck, recent) = (enqueue(&h, &p, body.clone()).await, enqueue(&h, &p, body).await);
    let now = now_ms();
    let mark_sending = |id: &str, started: i64, retries: i64, next: Option<i64>| {
        let next = next.map_or("NULL".into(), |n| n.to_string());
        h.db_execute(
            &format!(
                "UPDATE email_outbox SET rendered_by_worker_id = 'w', started_rendering_at = ?1, finished_rendering_at = ?1, \
                 rendered_html = '<p>x</p>', rendered_text = 'x', rendered_subject = '', is_queued = 1, \
                 started_sending_at = ?1, sending_worker_id = 'gone', send_retries = {retries}, next_send_retry_at = {next} \
                 WHERE id = ?2"
            ),
            &[&started.to_string(), id],
        )
    };
    assert_eq!(mark_sending(&stuck, now - 20 * 60_000 - 60_000, 1, Some(now + 3_600_000)), 1);
    assert_eq!(mark_sending(&recent, now - 1_000, 0, None), 1);

    for _ in 0..2 {
        h.run_email_queue().await;
        let failed = read(&h, &p, &stuck).await;
        assert_eq!(failed["status"], "server-error");
        assert!(failed["server_error"].as_str().unwrap().contains("timed out"), "{failed}");
        assert_eq!(failed["started_sending_at_millis"], now - 20 * 60_000 - 60_000, "startedSendingAt unchanged");
        assert_eq!((&failed["send_retries"], &failed["next_send_retry_at_millis"]), (&json!(1), &Value::Null));
        let row = h.db_query(
            "SELECT send_server_error_internal_message, is_queued, can_have_delivery_info FROM email_outbox WHERE id = ?",
            &[&stuck],
        );
        assert!(row[0][0].contains("stuck in sending") && row[0][0].contains("terminal server error"), "{row:?}");
        assert_eq!((row[0][1].as_str(), row[0][2].as_str()), ("1", "0"), "still queued; no delivery info");
        assert_eq!(read(&h, &p, &recent).await["status"], "sending");
    }
    assert!(sink.messages().is_empty(), "nothing was resent");
}

/// Crash safety: 500 emails, one emails function, two sender companions
/// (`companion serve --role email-sender`) running passes through it, one of them killed with
/// SIGKILL at random points ten times and restarted; then recovery. Every email ends sent
/// exactly once or as a terminal "delivery unknown" error; the SMTP server saw no Message-ID
/// twice; none is lost. On Cloudflare the function is the emails Worker on local D1.
#[tokio::test]
async fn killing_a_sender_never_duplicates_or_loses_an_email() {
    let sink = SmtpSink::start();
    let port = sink.port.to_string();
    let env = [
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        // Project servers here are local sinks on random ports: the operator allows them.
        ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1"),
        ("STACK_EMAIL_PORT", port.as_str()),
        ("STACK_EMAIL_SENDER", "noreply@test.example"),
        // 100 a second: passes stay small and both senders keep sending, so kills land mid-pass.
        ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "360000"),
    ];
    let h = Host::start(&env);
    let a = h.start_sender(&env);
    let mut b = h.start_sender(&env);
    let p = h.create_project(false).await;
    // A first pass before any email exists: later passes get quotas from short intervals
    // (the very first counts as 20 s, which would hand one sender everything).
    pass_on(&a).await;
    for i in 0..500 {
        let body = json!({ "to": { "type": "custom-emails", "emails": [format!("user{i}@example.com")] }, "tsx_source": "<p>{{ n }}</p>", "variables": { "n": i } });
        enqueue(&h, &p, body).await;
    }

    let client = reqwest::Client::new();
    let pass = move |base: String| {
        let client = client.clone();
        async move {
            let _ = client
                .get(format!("{base}/api/v1/internal/email-queue-step?only_one_step=true"))
                .header("authorization", "Bearer mock_cron_secret")
                .send()
                .await;
        }
    };
    let mut seed = now_ms() as u64 | 1;
    let mut random_ms = |max: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % max
    };
    // Each round both senders run passes back to back until B is killed at a random point.
    for _ in 0..10 {
        let looping = |base: String| {
            let pass = pass.clone();
            tokio::spawn(async move {
                loop {
                    pass(base.clone()).await;
                }
            })
        };
        let (on_a, on_b) = (looping(a.base_url.clone()), looping(b.base_url.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(50 + random_ms(400))).await;
        b.kill();
        on_b.abort();
        on_a.abort();
        b = h.start_sender(&env);
    }
    // A claim whose caller vanished may leave renders unfinished (a runtime may cancel the
    // request): those wait 20 minutes before another pass takes them again. Let them pass.
    h.db_execute(
        "UPDATE email_outbox SET started_rendering_at = started_rendering_at - 1260000 \
         WHERE started_rendering_at IS NOT NULL AND finished_rendering_at IS NULL",
        &[],
    );
    // Let the survivor finish the queue.
    for _ in 0..2000 {
        pass(a.base_url.clone()).await;
        let left = h.db_query(
            "SELECT count(*) FROM email_outbox WHERE finished_sending_at IS NULL AND started_sending_at IS NULL",
            &[],
        );
        if left[0][0] == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Recovery, as if 21 minutes had passed for the sends the killed sender left behind.
    h.db_execute(
        "UPDATE email_outbox SET started_sending_at = started_sending_at - 1260000 WHERE finished_sending_at IS NULL",
        &[],
    );
    pass_on(&a).await;

    let rows = h.db_query(
        "SELECT id, send_server_error_external_message IS NULL, finished_sending_at IS NOT NULL, \
         started_rendering_at, finished_rendering_at, send_retries, next_send_retry_at FROM email_outbox",
        &[],
    );
    assert_eq!(rows.len(), 500, "none is lost");
    let messages = sink.messages();
    let message_ids: Vec<String> = messages
        .iter()
        .filter_map(|m| {
            m.lines().find(|l| l.starts_with("Message-ID: ")).map(|l| l["Message-ID: ".len()..].trim().to_string())
        })
        .collect();
    let mut unique = message_ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), message_ids.len(), "no Message-ID was received twice");
    let (mut sent, mut unknown) = (0, 0);
    for row in &rows {
        assert_eq!(row[2], "1", "every email is finished: {row:?}");
        let delivered = message_ids.contains(&format!("<{}@test.example>", row[0]));
        if row[1] == "1" {
            sent += 1;
            assert!(delivered, "a sent email reached the server: {row:?}");
        } else {
            unknown += 1;
        }
    }
    let stuck_texts = h.db_query(
        "SELECT count(*) FROM email_outbox WHERE send_server_error_external_message = ?",
        &[shared::email::STUCK_MESSAGE],
    );
    assert_eq!(stuck_texts[0][0], unknown.to_string(), "every failure is a delivery-unknown one");
    eprintln!("crash test: {sent} sent, {unknown} delivery unknown, {} messages received", message_ids.len());
}

/// A sender stopped with SIGTERM while its pass is sending finishes those sends and reports
/// them before it exits: nothing is left in sending.
#[tokio::test]
async fn a_stopped_sender_finishes_and_reports_its_sends_first() {
    let sink = SmtpSink::start();
    let port = sink.port.to_string();
    let env = [
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        ("STACK_EMAIL_PORT", port.as_str()),
        ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "1000000000"),
    ];
    let h = Host::start(&env);
    let p = h.create_project(false).await;
    for n in 0..4 {
        let to = format!("slow{n}@example.com");
        enqueue(&h, &p, json!({ "to": { "type": "custom-emails", "emails": [to] }, "tsx_source": "x" })).await;
    }
    let mut env = env.to_vec();
    env.push(("STACK_COMPANION_SECRET", &h.companion_secret));
    let mut sender = h.start_sender_with(&env, 1);
    let sending =
        "SELECT count(*) FROM email_outbox WHERE started_sending_at IS NOT NULL AND finished_sending_at IS NULL";
    for _ in 0..100 {
        if h.db_query(sending, &[])[0][0] == "4" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(h.db_query(sending, &[])[0][0], "4", "the sender's first pass is sending");
    let status = sender.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(h.db_query(sending, &[])[0][0], "0", "nothing is left in sending");
    let sent = h.db_query(
        "SELECT count(*) FROM email_outbox WHERE finished_sending_at IS NOT NULL AND send_server_error_external_message IS NULL",
        &[],
    );
    assert_eq!(sent[0][0], "4");
    assert_eq!(sink.messages().len(), 4);
}

/// One pass on a sender companion, through its cron route.
async fn pass_on(sender: &Host) {
    let res = sender
        .get("/api/v1/internal/email-queue-step?only_one_step=true")
        .header("authorization", "Bearer mock_cron_secret")
        .send()
        .await;
    assert_eq!((res.status, res.json()), (200, json!({ "ok": true })), "{}", res.text);
}

/// A sender companion with the wrong companion secret: every claim gets 401 (its pass fails
/// with that answer) and nothing changes; nothing is sent.
#[tokio::test]
async fn a_sender_with_a_wrong_secret_is_refused_and_changes_nothing() {
    let sink = SmtpSink::start();
    let port = sink.port.to_string();
    let env = [("STACK_EMAIL_HOST", "127.0.0.1"), ("STACK_EMAIL_PORT", port.as_str())];
    let h = Host::start(&env);
    let p = h.create_project(false).await;
    enqueue(&h, &p, json!({ "to": { "type": "custom-emails", "emails": ["hal@example.com"] }, "tsx_source": "x" }))
        .await;
    let mut wrong = env.to_vec();
    wrong.push(("STACK_COMPANION_SECRET", "csk_not_the_functions_secret_0000"));
    let before = h.db_snapshot();
    let sender = h.start_sender_with(&wrong, 3600);
    let res = sender
        .get("/api/v1/internal/email-queue-step?only_one_step=true")
        .header("authorization", "Bearer mock_cron_secret")
        .send()
        .await;
    assert_eq!(res.status, 502, "{}", res.text);
    assert!(res.text.contains("401"), "{}", res.text);
    assert_eq!(h.db_snapshot(), before, "a refused sender changes nothing");
    assert!(sink.messages().is_empty());
}

/// The emails function's cron (`* * * * *`, fired on demand): with no sender running, it
/// renders and queues what waits and ends a send stuck for 20 minutes; it sends nothing.
#[tokio::test]
async fn the_outbox_cron_renders_queues_and_recovers_without_a_sender() {
    let (h, (p, waiting, stuck)) = Host::start_scheduled("emails", async |h: &Host| {
        let p = h.create_project(false).await;
        let body = json!({ "to": { "type": "custom-emails", "emails": ["erin@example.com"] }, "tsx_source": "<title>Hi</title>x" });
        let (waiting, stuck) = (enqueue(h, &p, body.clone()).await, enqueue(h, &p, body).await);
        (p, waiting, stuck)
    })
    .await;
    let long_ago = now_ms() - 21 * 60_000;
    let marked = h.db_execute(
        "UPDATE email_outbox SET rendered_by_worker_id = 'w', started_rendering_at = ?1, finished_rendering_at = ?1, \
         rendered_html = 'x', rendered_text = 'x', rendered_subject = 'Hi', is_queued = 1, started_sending_at = ?1, \
         sending_worker_id = 'gone' WHERE id = ?2",
        &[&long_ago.to_string(), &stuck],
    );
    assert_eq!(marked, 1);
    assert_eq!(read(&h, &p, &waiting).await["status"], "preparing");

    let res = h.get("/__scheduled?cron=*+*+*+*+*").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    // Scheduled work may finish after the trigger's response (wait_until): poll.
    let mut ready = read(&h, &p, &waiting).await;
    for _ in 0..50 {
        if ready["status"] != "preparing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = read(&h, &p, &waiting).await;
    }
    assert_eq!((&ready["status"], &ready["subject"]), (&json!("queued"), &json!("Hi")), "{ready}");
    let failed = read(&h, &p, &stuck).await;
    assert_eq!(failed["status"], "server-error", "{failed}");
    assert!(failed["server_error"].as_str().unwrap().contains("timed out"), "{failed}");
}

/// The sender protocol (docs/api.md §5.9): a sender with the companion secret claims what is
/// ready (rendered message, resolved recipients, the tenancy's server) and reports each result;
/// a wrong secret, a stale report or a bad report changes nothing.
#[tokio::test]
async fn a_sender_claims_and_reports_over_the_internal_routes() {
    let sink = SmtpSink::start();
    let port = sink.port.to_string();
    let secret = "sender-secret-for-this-test-0001";
    let h = Host::start(&[
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        ("STACK_EMAIL_PORT", &port),
        ("STACK_EMAIL_SENDER", "noreply@test.example"),
        ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "1000000000"),
        ("STACK_COMPANION_SECRET", secret),
    ]);
    let p = h.create_project(false).await;
    let to =
        |who: &str| json!({ "to": { "type": "custom-emails", "emails": [who] }, "tsx_source": "<title>Hi</title>x" });
    let (first, second) = (enqueue(&h, &p, to("fay@example.com")).await, enqueue(&h, &p, to("gus@example.com")).await);
    let bearer = |s: &str| format!("Bearer {s}");

    let before = h.db_snapshot();
    for wrong in [bearer("not-the-secret-at-all-000000000"), secret.to_string()] {
        let res = h.post("/api/v1/internal/email-sender/claim").header("authorization", &wrong).send().await;
        assert_eq!((res.status, res.text.as_str()), (401, "Unauthorized"));
    }
    let res = h.post("/api/v1/internal/email-sender/claim").send().await;
    assert_eq!(res.status, 401);
    for max in [json!(0), json!(1001), json!("5")] {
        let res = h
            .post("/api/v1/internal/email-sender/claim")
            .header("authorization", &bearer(secret))
            .json(&json!({ "max": max }))
            .send()
            .await;
        assert_eq!(res.status, 400, "{max}: {}", res.text);
    }
    assert_eq!(h.db_snapshot(), before, "a refused claim changes nothing");

    let res = h.post("/api/v1/internal/email-sender/claim").header("authorization", &bearer(secret)).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let answer = res.json();
    let claim_id = answer["claim_id"].as_str().unwrap().to_string();
    let claims = answer["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 2, "{answer}");
    for claim in claims {
        let addresses = &claim["email"]["to"];
        assert!(addresses == &json!(["fay@example.com"]) || addresses == &json!(["gus@example.com"]), "{claim}");
        assert_eq!(claim["email"]["subject"], "Hi");
        assert_eq!((&claim["server"]["host"], &claim["server"]["port"]), (&json!("127.0.0.1"), &json!(sink.port)));
    }
    assert_eq!(read(&h, &p, &first).await["status"], "sending");

    let report = |body: Value| {
        h.post("/api/v1/internal/email-sender/report").header("authorization", &bearer(secret)).json(&body).send()
    };
    let tenancy = claims[0]["tenancy_id"].clone();
    let sent = |id: &str| json!({ "tenancy_id": tenancy, "email_id": id, "sent": true });
    let temporary = json!({ "tenancy_id": tenancy, "email_id": second, "sent": false, "error_type": "TEMPORARY",
                            "retryable": true, "message": "450 try later" });

    let before = h.db_snapshot();
    let unknown_class = json!({ "tenancy_id": tenancy, "email_id": second, "sent": false, "error_type": "MADE_UP" });
    let res = report(json!({ "claim_id": claim_id, "results": [sent(&first), unknown_class] })).await;
    assert_eq!(res.status, 400, "{}", res.text);
    let res = h
        .post("/api/v1/internal/email-sender/report")
        .header("authorization", &bearer("not-the-secret-at-all-000000000"))
        .json(&json!({ "claim_id": claim_id, "results": [sent(&first)] }))
        .send()
        .await;
    assert_eq!(res.status, 401);
    assert_eq!(h.db_snapshot(), before, "refused reports change nothing");

    let res = report(json!({ "claim_id": claim_id, "results": [sent(&first), temporary] })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.json()["results"],
        json!([{ "email_id": first, "status": "sent" }, { "email_id": second, "status": "retried" }])
    );
    assert_eq!(read(&h, &p, &first).await["status"], "sent");
    let retried = read(&h, &p, &second).await;
    assert_eq!(retried["send_retries"], 1, "{retried}");

    let before = h.db_snapshot();
    for stale in [
        json!({ "claim_id": claim_id, "results": [sent(&first)] }),
        json!({ "claim_id": "another-claim", "results": [sent(&second)] }),
    ] {
        let res = report(stale).await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json()["results"][0]["status"], "refused");
    }
    assert_eq!(h.db_snapshot(), before, "stale reports change nothing");
    assert!(sink.messages().is_empty(), "the function itself sends nothing");
}
