//! The email outbox and the companion's email worker (contract part 1, §5), against a real SMTP
//! server (aiosmtpd) started by the test: sending, skipping, render errors, permanent and
//! temporary SMTP failures, the cron route, the outbox API, bad input, and the stuck-send
//! recovery cases of the seed PR.

use api_tests::{Host, Project, SmtpSink};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn host_with_smtp(sink: &SmtpSink) -> Host {
    let port = sink.port.to_string();
    Host::start(&[
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        ("STACK_EMAIL_PORT", &port),
        ("STACK_EMAIL_SENDER", "noreply@test.example"),
    ])
}

async fn enqueue(h: &Host, p: &Project, body: Value) -> String {
    let res = h.post("/api/v1/emails/outbox").server(p).json(&body).send().await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.json()["id"].as_str().unwrap().to_string()
}

async fn run_queue(h: &Host) {
    let res = h
        .get("/api/v1/internal/email-queue-step?only_one_step=true")
        .header("authorization", "Bearer mock_cron_secret")
        .send()
        .await;
    assert_eq!((res.status, res.json()), (200, json!({ "ok": true })));
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
    let h = host_with_smtp(&sink);
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
    let res = h.get("/api/v1/internal/email-queue-step").send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert!(body["error"].as_str().unwrap().ends_with("headers.authorization must be defined"));
    let res = h.get("/api/v1/internal/email-queue-step").header("authorization", "Bearer wrong").send().await;
    assert_eq!((res.status, res.text.as_str()), (401, "Unauthorized"));

    run_queue(&h).await;
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
    run_queue(&h).await;
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
    let h = host_with_smtp(&sink);
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
    ];
    for body in cases {
        let res = h.post("/api/v1/emails/outbox").server(&p).json(&body).send().await;
        res.assert_known_error(400, "SCHEMA_ERROR");
    }
    let res = h.post("/api/v1/emails/outbox").client(&p).json(&json!({})).send().await;
    res.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    assert_eq!(h.db_query("SELECT count(*) FROM email_outbox", &[]), vec![vec!["0".to_string()]]);
}

/// The seed PR's three cases: a send stuck 21 minutes is ended as a terminal server error
/// (delivery unknown, never retried); one started a second ago is left alone; a second run
/// changes nothing.
#[tokio::test]
async fn emails_stuck_in_sending_are_failed_once_and_never_resent() {
    let sink = SmtpSink::start();
    let h = host_with_smtp(&sink);
    let p = h.create_project(false).await;
    let body = json!({ "to": { "type": "custom-emails", "emails": ["dave@example.com"] }, "tsx_source": "<p>x</p>" });
    let (stuck, recent) = (enqueue(&h, &p, body.clone()).await, enqueue(&h, &p, body).await);
    let now = now_ms();
    let mark_sending = |id: &str, started: i64, retries: i64, next: Option<i64>| {
        let next = next.map(|n| n.to_string()).unwrap_or("NULL".into());
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
        run_queue(&h).await;
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

/// Crash safety: 500 emails, two companions sharing one database running queue passes, one of
/// them killed with SIGKILL at random points ten times and restarted; then recovery. Every
/// email ends sent exactly once or as a terminal "delivery unknown" error; the SMTP server saw
/// no Message-ID twice; none is lost.
#[tokio::test]
async fn killing_a_worker_never_duplicates_or_loses_an_email() {
    let sink = SmtpSink::start();
    let dir = std::env::temp_dir().join(format!("stack-edge-tests/crash-{}-{}", std::process::id(), now_ms()));
    let port = sink.port.to_string();
    let env = [
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        ("STACK_EMAIL_PORT", port.as_str()),
        ("STACK_EMAIL_SENDER", "noreply@test.example"),
        // 100 a second: passes stay small and both workers keep sending, so kills land mid-pass.
        ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "360000"),
    ];
    let launch = || Host::launch(api_tests::Launch { env: &env, data_dir: Some(dir.clone()), ..Default::default() });
    let a = launch();
    let mut b = launch();
    let p = a.create_project(false).await;
    // A first pass before any email exists: later passes get quotas from short intervals
    // (the very first counts as 20 s, which would hand one worker everything).
    run_queue(&a).await;
    for i in 0..500 {
        let body = json!({ "to": { "type": "custom-emails", "emails": [format!("user{i}@example.com")] }, "tsx_source": "<p>{{ n }}</p>", "variables": { "n": i } });
        enqueue(&a, &p, body).await;
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
    // Each round both companions run passes back to back until B is killed at a random point.
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
        b = launch();
    }
    // Let the survivors finish the queue.
    for _ in 0..2000 {
        pass(a.base_url.clone()).await;
        let left = a.db_query(
            "SELECT count(*) FROM email_outbox WHERE finished_sending_at IS NULL AND started_sending_at IS NULL",
            &[],
        );
        if left[0][0] == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Recovery, as if 21 minutes had passed for the sends the killed worker left behind.
    a.db_execute(
        "UPDATE email_outbox SET started_sending_at = started_sending_at - 1260000 WHERE finished_sending_at IS NULL",
        &[],
    );
    run_queue(&a).await;

    let rows = a.db_query(
        "SELECT id, send_server_error_external_message IS NULL, finished_sending_at IS NOT NULL FROM email_outbox",
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
    let stuck_texts = a.db_query(
        "SELECT count(*) FROM email_outbox WHERE send_server_error_external_message = ?",
        &[shared::email::STUCK_MESSAGE],
    );
    assert_eq!(stuck_texts[0][0], unknown.to_string(), "every failure is a delivery-unknown one");
    eprintln!("crash test: {sent} sent, {unknown} delivery unknown, {} messages received", message_ids.len());
}
