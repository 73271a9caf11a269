//! `GET /api/v1/internal/metrics` on a seeded project, every field checked against values
//! worked out by hand from the fixture below; its access rule; the companion outage answer.
//!
//! Fixture (days are UTC, relative to today):
//! - users in the store: u1 (verified email), u2 (unverified), u3 (anonymous), u4 (no session);
//!   u1, u2 and u3 each get a session today, so each mint logs a `$token-refresh` now;
//! - older token refreshes written straight to the analytics store: u1 yesterday (US/CA) and
//!   3 days ago (FR), u2 5 days ago (DE/BE), u9 (a user the store does not have) 2 days ago
//!   (US/CA);
//! - page views: u1 two today from `https://a.example/x` and one click; u3 one today from
//!   `https://anon.example/`; u2 one 2 days ago with no referrer.

use api_tests::{ClickHouseFront, Host, Project};
use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};
use shared::analytics::metrics::{clickhouse_time, date};

const DAY: i64 = 86_400_000;
const U9: &str = "b0000000-0000-4000-8000-000000000009";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn event(project: &Project, event_type: &str, at: i64, user: &str, data: Value) -> Value {
    json!({ "event_type": event_type, "event_at": clickhouse_time(at), "data": data,
            "project_id": project.id, "branch_id": "main", "user_id": user })
}

/// The activity of `series` on `day`.
fn on(series: &Value, day: &str) -> i64 {
    let point = series.as_array().unwrap().iter().find(|p| p["date"] == day);
    point.unwrap_or_else(|| panic!("no {day} in {series}"))["activity"].as_i64().unwrap()
}

/// The sum of a series: what the fixture puts on the named days and nothing elsewhere.
fn total(series: &Value) -> i64 {
    series.as_array().unwrap().iter().map(|p| p["activity"].as_i64().unwrap()).sum()
}

async fn count_refreshes(ch: &ClickHouse, project: &Project) -> String {
    let q = Query::new("SELECT count() AS c FROM analytics_internal.events WHERE project_id = {p:String} AND event_type = '$token-refresh'")
        .param("p", project.id.as_str());
    let rows = ch.rows(&ReqwestClient::new(), &q).await.unwrap();
    rows[0]["c"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn every_field_matches_the_fixture() {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    let http = ReqwestClient::new();
    shared::analytics::clickhouse::apply_schema(&ch, &http, None).await.unwrap();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let p = h.create_project(false).await;

    let user = |body: Value| {
        let h = &h;
        let p = &p;
        async move {
            let res = h.post("/api/v1/users").server(p).json(&body).send().await;
            assert_eq!(res.status, 201, "{}", res.text);
            res.json()["id"].as_str().unwrap().to_string()
        }
    };
    let u1 = user(json!({ "primary_email": "u1@example.com", "primary_email_verified": true })).await;
    let u2 = user(json!({ "primary_email": "u2@example.com" })).await;
    let u3 = user(json!({ "is_anonymous": true })).await;
    let _u4 = user(json!({ "display_name": "No session" })).await;
    for u in [&u1, &u2, &u3] {
        h.create_session(&p, u, json!({})).await;
    }
    // The mints' events are written in the background: wait for them.
    for _ in 0..50 {
        if count_refreshes(&ch, &p).await == "3" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count_refreshes(&ch, &p).await, "3");

    let now = now_ms();
    let located = |cc: &str, rc: Option<&str>| json!({ "is_anonymous": false, "ip_info": { "country_code": cc, "region_code": rc } });
    let rows = vec![
        event(&p, "$token-refresh", now - DAY, &u1, located("US", Some("CA"))),
        event(&p, "$token-refresh", now - 3 * DAY, &u1, located("FR", None)),
        event(&p, "$token-refresh", now - 5 * DAY, &u2, located("DE", Some("BE"))),
        event(&p, "$token-refresh", now - 2 * DAY, U9, located("US", Some("CA"))),
        event(&p, "$page-view", now, &u1, json!({ "referrer": "https://a.example/x" })),
        event(&p, "$page-view", now, &u1, json!({ "referrer": "https://a.example/x" })),
        event(&p, "$click", now, &u1, json!({})),
        event(&p, "$page-view", now, &u3, json!({ "referrer": "https://anon.example/" })),
        event(&p, "$page-view", now - 2 * DAY, &u2, json!({})),
    ];
    ch.insert(&http, "analytics_internal.events", &rows).await.unwrap();

    let today = date(now);
    let ago = |days: i64| date(now - days * DAY);
    let res = h.get("/api/v1/internal/metrics").admin(&p).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let m = res.json();
    let last_day = m["daily_active_users"].as_array().unwrap().last().unwrap()["date"].clone();
    assert_eq!(last_day, today, "the test ran across midnight UTC; run it again");

    // Primary store: 4 users, 1 anonymous, 1 verified; anonymous users excluded by default.
    assert_eq!(m["total_users"], 3);
    let auth = &m["auth_overview"];
    assert_eq!(
        (&auth["verified_users"], &auth["unverified_users"], &auth["anonymous_users"], &auth["total_users_filtered"]),
        (&json!(1), &json!(2), &json!(1), &json!(3))
    );
    assert_eq!(m["daily_users"].as_array().unwrap().len(), 31);
    assert_eq!((on(&m["daily_users"], &today), total(&m["daily_users"])), (3, 3));
    let ids = |list: &Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_string()).collect()
    };
    let mut registered = ids(&m["recently_registered"]);
    registered.sort();
    let mut expected = vec![u1.clone(), u2.clone(), _u4.clone()];
    expected.sort();
    assert_eq!(registered, expected);
    assert_eq!(m["recently_active"].as_array().unwrap().len(), 3);
    assert!(m["recently_registered"][0]["profile_image_url"].is_null());

    // Analytics store.
    assert_eq!(auth["mau"], 3, "u1, u2 and u9 (u3 is anonymous)");
    let dau = &m["daily_active_users"];
    assert_eq!(
        [on(dau, &today), on(dau, &ago(1)), on(dau, &ago(2)), on(dau, &ago(3)), on(dau, &ago(5))],
        [2, 1, 1, 1, 1]
    );
    assert_eq!(total(dau), 6);
    let split = &auth["daily_active_users_split"];
    let day = |d: &str| ["total", "new", "retained", "reactivated"].map(|k| on(&split[k], d));
    assert_eq!(day(&today), [2, 0, 1, 1], "u1 retained (active yesterday), u2 reactivated (last active 5 days ago)");
    assert_eq!(day(&ago(1)), [1, 0, 0, 1], "u1 was last active 3 days before");
    assert_eq!(day(&ago(2)), [1, 1, 0, 0], "u9's first refresh");
    assert_eq!(day(&ago(3)), [1, 1, 0, 0], "u1's first refresh");
    assert_eq!(day(&ago(5)), [1, 1, 0, 0], "u2's first refresh");
    assert_eq!(total(&auth["daily_active_teams_split"]["total"]), 0);
    assert_eq!(m["users_by_country"], json!({ "US": 2, "DE": 1 }), "latest located refresh per user");

    let analytics = &m["analytics_overview"];
    assert_eq!((on(&analytics["daily_page_views"], &today), on(&analytics["daily_page_views"], &ago(2))), (2, 1));
    assert_eq!(total(&analytics["daily_page_views"]), 3, "u3's page view is anonymous");
    assert_eq!((on(&analytics["daily_clicks"], &today), total(&analytics["daily_clicks"])), (1, 1));
    assert_eq!((on(&analytics["daily_visitors"], &today), on(&analytics["daily_visitors"], &ago(2))), (1, 1));
    assert_eq!(analytics["visitors"], 2);
    assert_eq!(
        analytics["top_referrers"],
        json!([{ "referrer": "(direct)", "visitors": 1 }, { "referrer": "https://a.example/x", "visitors": 1 }])
    );
    assert_eq!(analytics["top_region"], json!({ "country_code": "US", "region_code": "CA", "count": 2 }));
    assert_eq!(analytics["online_live"], 2, "u1 and u2 refreshed a minute ago");
    assert_eq!(analytics["daily_revenue"].as_array().unwrap().len(), 31);

    // With anonymous users.
    let m = h.get("/api/v1/internal/metrics?include_anonymous=true").admin(&p).send().await.json();
    assert_eq!((&m["total_users"], &m["auth_overview"]["mau"]), (&json!(4), &json!(4)));
    assert_eq!(on(&m["daily_users"], &today), 4);
    assert_eq!(on(&m["daily_active_users"], &today), 3);
    let analytics = &m["analytics_overview"];
    assert_eq!((analytics["visitors"].as_i64(), analytics["online_live"].as_i64()), (Some(3), Some(3)));
    assert_eq!(analytics["top_referrers"].as_array().unwrap().len(), 3);

    // Answers are cached briefly: a new event does not show at once.
    ch.insert(
        &http,
        "analytics_internal.events",
        &[event(&p, "$token-refresh", now, "c0000000-0000-4000-8000-000000000001", json!({}))],
    )
    .await
    .unwrap();
    let again = h.get("/api/v1/internal/metrics").admin(&p).send().await.json();
    assert_eq!(again["auth_overview"]["mau"], 3);
}

#[tokio::test]
async fn admin_only_and_a_clear_503_when_the_companion_is_down() {
    let front = ClickHouseFront::start();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let p = h.create_project(false).await;
    let body =
        h.get("/api/v1/internal/metrics").server(&p).send().await.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    assert_eq!(body["error"], "The x-stack-access-type header must be 'admin', but was 'server'.");
    assert_eq!(body["details"], json!({ "actual_access_type": "server", "allowed_access_types": ["admin"] }));

    // Nothing listens on port 9 here.
    let down = Host::start(&[
        ("STACK_CLICKHOUSE_URL", &front.url),
        ("STACK_COMPANION_URL", "http://127.0.0.1:9"),
        ("STACK_COMPANION_SECRET", "a-secret-of-sixteen-or-more"),
    ]);
    let p = down.create_project(false).await;
    let res = down.get("/api/v1/internal/metrics").admin(&p).send().await;
    assert_eq!(res.status, 503, "{}", res.text);
    assert_eq!(res.header("retry-after"), Some("30"));
    assert!(res.text.contains("Retry shortly"), "{}", res.text);
}

/// docs/api.md §3.8 and the contract's metrics case: a regular user's browser uploads two page
/// views, an anonymous user's one, through `POST /analytics/events/batch`; the events land in
/// the analytics store for their project only, a repeated batch counts once, and they drive
/// the referrers, visitors, page views, clicks and online counts, anonymous users only with
/// `include_anonymous`.
#[tokio::test]
async fn page_views_uploaded_by_browsers_drive_the_metrics_of_their_project_only() {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let (p, other) = (h.create_analytics_project().await, h.create_analytics_project().await);
    let regular = h.user_with_session(&p, json!({})).await;
    let anonymous = h.user_with_session(&p, json!({ "is_anonymous": true })).await;
    let now = now_ms();
    let page_view = |referrer: &str| {
        json!({ "event_type": "$page-view", "event_at_ms": now - 1_000,
                "data": { "url": "https://app.example/", "path": "/", "referrer": referrer, "is_anonymous": true } })
    };
    let upload = |token: &str, batch_id: &str, events: Value| {
        h.post("/api/v1/analytics/events/batch")
            .client(&p)
            .access_token(token)
            .header("x-stack-allow-anonymous-user", "true")
            .json(&json!({ "session_replay_segment_id": null, "batch_id": batch_id, "sent_at_ms": now, "events": events }))
            .send()
    };
    let regular_batch = "0b7f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
    let views = json!([page_view("https://regular.example/source"), page_view("https://regular.example/source")]);
    let res = upload(&regular.access_token, regular_batch, views.clone()).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), json!({ "batch_id": regular_batch, "deduped": false, "inserted": 2 }));
    let again = upload(&regular.access_token, regular_batch, views).await;
    assert_eq!(again.json()["deduped"], true, "{}", again.text);
    let res = upload(
        &anonymous.access_token,
        "1b7f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        json!([page_view("https://anonymous.example/source")]),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let click = json!([{ "event_type": "$click", "event_at_ms": now - 500, "data": { "selector": "button" } }]);
    let res = upload(&regular.access_token, "2b7f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", click).await;
    assert_eq!(res.status, 200, "{}", res.text);

    // Refused: a server-only event type, and a project without the analytics app.
    let forged = json!([{ "event_type": "$token-refresh", "event_at_ms": now, "data": {} }]);
    let res = upload(&regular.access_token, "3b7f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", forged).await;
    assert_eq!(res.status, 400, "{}", res.text);
    let plain = h.create_project(false).await;
    let plain_user = h.user_with_session(&plain, json!({})).await;
    let res = h
        .post("/api/v1/analytics/events/batch")
        .client(&plain)
        .access_token(&plain_user.access_token)
        .json(&json!({ "batch_id": regular_batch, "sent_at_ms": now, "events": [page_view("x")] }))
        .send()
        .await;
    res.assert_known_error(400, "ANALYTICS_NOT_ENABLED");

    // Written after the response: wait for them.
    let count = |project: &Project| {
        let q = Query::new(
            "SELECT count() AS c, countIf(CAST(data.is_anonymous AS UInt8) = 1) AS anon FROM analytics_internal.events \
             WHERE project_id = {p:String} AND event_type IN ('$page-view', '$click')",
        )
        .param("p", project.id.as_str());
        let ch = &ch;
        async move {
            let rows = ch.rows(&ReqwestClient::new(), &q).await.unwrap();
            (
                rows[0]["c"].as_str().unwrap_or_default().to_string(),
                rows[0]["anon"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    for _ in 0..50 {
        if count(&p).await.0 == "4" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count(&p).await, ("4".to_string(), "1".to_string()), "the user's own flag, not the client's");
    assert_eq!(count(&other).await.0, "0", "another project sees none of them");

    let today = date(now);
    let m = h.get("/api/v1/internal/metrics").admin(&p).send().await.json();
    let analytics = &m["analytics_overview"];
    assert_eq!(analytics["top_referrers"], json!([{ "referrer": "https://regular.example/source", "visitors": 1 }]));
    assert_eq!((on(&analytics["daily_page_views"], &today), on(&analytics["daily_clicks"], &today)), (2, 1));
    assert_eq!((&analytics["visitors"], &analytics["online_live"]), (&json!(1), &json!(1)), "{analytics}");
    let m = h.get("/api/v1/internal/metrics?include_anonymous=true").admin(&p).send().await.json();
    let analytics = &m["analytics_overview"];
    let mut referrers: Vec<Value> = analytics["top_referrers"].as_array().unwrap().clone();
    referrers.sort_by_key(|r| r["referrer"].as_str().unwrap().to_string());
    assert_eq!(
        referrers,
        vec![
            json!({ "referrer": "https://anonymous.example/source", "visitors": 1 }),
            json!({ "referrer": "https://regular.example/source", "visitors": 1 })
        ]
    );
    assert_eq!((&analytics["visitors"], &analytics["online_live"]), (&json!(2), &json!(2)), "{analytics}");
}

/// docs/api.md §7.3: the email and replay fields come from the function's own store — per
/// simple status (keys only for those that occur), per day, the newest emails with their
/// detailed status and subject, sent emails; replays in all, in the window, and their mean
/// length.
#[tokio::test]
async fn email_and_replay_fields_count_the_projects_own_outbox_and_replays() {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    let sink = api_tests::SmtpSink::start();
    let port = sink.port.to_string();
    let h = Host::start_with_sender(&[
        ("STACK_CLICKHOUSE_URL", &front.url),
        ("STACK_EMAIL_HOST", "127.0.0.1"),
        ("STACK_EMAIL_PORT", &port),
        ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "1000000000"),
    ]);
    let (p, other) = (h.create_analytics_project().await, h.create_analytics_project().await);
    let enqueue = |project: &Project, to: &str, source: &str| {
        let body = json!({ "to": { "type": "custom-emails", "emails": [to] }, "tsx_source": source });
        let call = h.post("/api/v1/emails/outbox").server(project).json(&body);
        async move {
            let res = call.send().await;
            assert_eq!(res.status, 201, "{}", res.text);
            res.json()["id"].as_str().unwrap().to_string()
        }
    };
    let sent = enqueue(&p, "ok@example.com", "<title>Welcome</title>Hi").await;
    let failed = enqueue(&p, "reject-me@example.com", "<title>Nope</title>x").await;
    let res = h
        .sender_get("/api/v1/internal/email-queue-step?only_one_step=true")
        .header("authorization", "Bearer mock_cron_secret")
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let waiting = enqueue(&p, "later@example.com", "no title").await;
    enqueue(&other, "elsewhere@example.com", "x").await;

    // One replay: two batches 4.5 s apart in event time.
    let user = h.user_with_session(&p, json!({})).await;
    let now = now_ms();
    for (batch, at) in
        [("4a2b3c4d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", now - 5_000), ("5a2b3c4d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", now - 500)]
    {
        let body = json!({ "browser_session_id": "6a2b3c4d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
                           "session_replay_segment_id": "7a2b3c4d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "batch_id": batch,
                           "started_at_ms": now - 5_000, "sent_at_ms": now, "events": [{ "type": 3, "timestamp": at }] });
        let res = h
            .post("/api/v1/session-replays/batch")
            .client(&p)
            .access_token(&user.access_token)
            .json(&body)
            .send()
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
    }

    let m = h.get("/api/v1/internal/metrics").admin(&p).send().await.json();
    let emails = &m["email_overview"];
    assert_eq!(emails["emails_by_status"], json!({ "ok": 1, "error": 1, "in-progress": 1 }), "{emails}");
    assert_eq!((&emails["total_emails"], &emails["emails_sent"]), (&json!(3), &json!(2)));
    let today = date(now);
    assert_eq!(on(&emails["daily_emails"], &today), 3);
    let by_status = emails["daily_emails_by_status"].as_array().unwrap();
    assert_eq!(by_status.len(), 31);
    assert_eq!(by_status.last().unwrap(), &json!({ "date": today, "ok": 1, "error": 1, "in_progress": 1 }));
    let recent: Vec<(String, String, String)> = emails["recent_emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
                e["subject"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(recent.len(), 3, "{recent:?}");
    for (id, status, subject) in
        [(&sent, "SENT", "Welcome"), (&failed, "SERVER_ERROR", "Nope"), (&waiting, "PREPARING", "(no subject)")]
    {
        assert!(recent.contains(&(id.clone(), status.to_string(), subject.to_string())), "{id} {status}: {recent:?}");
    }
    assert_eq!(emails["deliverability_status"], json!({ "delivered": 0, "bounced": 0, "error": 1, "in_progress": 1 }));

    let analytics = &m["analytics_overview"];
    assert_eq!((&analytics["total_replays"], &analytics["recent_replays"]), (&json!(1), &json!(1)));
    assert_eq!(analytics["avg_session_seconds"], json!(4.5));

    let m = h.get("/api/v1/internal/metrics").admin(&other).send().await.json();
    assert_eq!(m["email_overview"]["emails_by_status"], json!({ "in-progress": 1 }), "the other project's own");
    assert_eq!(m["analytics_overview"]["total_replays"], 0);
}

/// The end user's location comes from the runtime, never from the client: on workerd from the
/// request's `cf` facts (local workerd sets them from its `MF-CF-Blob` header, standing in for
/// Cloudflare's edge), natively and on Spin from a proxy's headers only when
/// `STACK_TRUSTED_PROXY` names it. A refresh carries it into `$token-refresh`'s `ip_info`, and so into users by country
/// and the top region; a client's own `X-Forwarded-For` or `CF-IPCountry` changes nothing.
#[tokio::test]
async fn users_by_country_come_from_the_runtimes_location_not_the_clients_headers() {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    // Every runtime but workerd learns the location from a trusted proxy's headers.
    let by_proxy_headers = api_tests::runtime() != api_tests::Runtime::Cloudflare;
    let trusting = [("STACK_CLICKHOUSE_URL", front.url.as_str()), ("STACK_TRUSTED_PROXY", "cloudflare")];
    let h = Host::start(if by_proxy_headers { &trusting } else { &trusting[..1] });
    let p = h.create_project(false).await;
    let located = h.user_with_session(&p, json!({})).await;
    let forged = h.user_with_session(&p, json!({})).await;
    let refresh = |session: &api_tests::UserSession| {
        h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&session.refresh_token)
    };
    let res = if by_proxy_headers {
        refresh(&located)
            .header("cf-connecting-ip", "203.0.113.7")
            .header("cf-ipcountry", "CH")
            .header("cf-region-code", "ZH")
    } else {
        let cf =
            json!({ "country": "CH", "regionCode": "ZH", "city": "Zurich", "latitude": "47.37", "longitude": "8.54",
                    "timezone": "Europe/Zurich" });
        refresh(&located).header("mf-cf-blob", &cf.to_string())
    }
    .send()
    .await;
    assert_eq!(res.status, 200, "{}", res.text);

    // The client's own claims, where nothing vouches for them: a host that names no proxy, and
    // on workerd any request (Cloudflare's edge replaces such headers; a named proxy must too).
    let untrusting = Host::start(&[("STACK_CLICKHOUSE_URL", front.url.as_str())]);
    let q = untrusting.create_project(false).await;
    let user = untrusting.user_with_session(&q, json!({})).await;
    let mut claims = vec![(&untrusting, &q, &user)];
    if !by_proxy_headers {
        claims.push((&h, &p, &forged));
    }
    for host_project in claims {
        let (host, project, session) = host_project;
        let res = host
            .post("/api/v1/auth/sessions/current/refresh")
            .client(project)
            .refresh_token(&session.refresh_token)
            .header("x-forwarded-for", "198.51.100.9")
            .header("cf-ipcountry", "FR")
            .send()
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
    }

    let located_info = Query::new(
        "SELECT CAST(data.ip_info.country_code AS Nullable(String)) AS country, toString(CAST(data.ip_info.is_trusted AS Nullable(Bool))) AS trusted \
         FROM analytics_internal.events WHERE project_id = {p:String} AND user_id = {u:String} AND event_type = '$token-refresh' \
         AND data.ip_info.country_code IS NOT NULL",
    )
    .param("p", p.id.as_str())
    .param("u", located.user_id.as_str());
    let mut rows = Vec::new();
    for _ in 0..50 {
        rows = ch.rows(&ReqwestClient::new(), &located_info).await.unwrap();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 1, "one located refresh: {rows:?}");
    assert_eq!((rows[0]["country"].as_str(), rows[0]["trusted"].as_str()), (Some("CH"), Some("true")), "{rows:?}");

    // The session list shows where the session was last used.
    let listed = h.get(&format!("/api/v1/auth/sessions?user_id={}", located.user_id)).server(&p).send().await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let ip_info = &listed.json()["items"][0]["last_used_at_end_user_ip_info"];
    assert_eq!(
        (&ip_info["country_code"], &ip_info["region_code"], &ip_info["is_trusted"]),
        (&json!("CH"), &json!("ZH"), &json!(true)),
        "{ip_info}"
    );
    if !by_proxy_headers {
        assert_eq!(ip_info["tz_identifier"], json!("Europe/Zurich"), "the cf object's time zone: {ip_info}");
    }

    let m = h.get("/api/v1/internal/metrics").admin(&p).send().await.json();
    let countries = m["users_by_country"].as_object().unwrap();
    assert_eq!(countries.get("CH"), Some(&json!(1)), "{countries:?}");
    assert!(!countries.contains_key("FR"), "a client's CF-IPCountry is not believed: {countries:?}");
    assert_eq!(m["analytics_overview"]["top_region"]["country_code"], "CH", "{}", m["analytics_overview"]);
    let m = untrusting.get("/api/v1/internal/metrics").admin(&q).send().await.json();
    assert!(!m["users_by_country"].as_object().unwrap().contains_key("FR"), "{}", m["users_by_country"]);
}
