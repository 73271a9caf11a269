//! Session replays (docs/api.md §3): uploads and their limits, the admin endpoints with
//! paging and filters, isolation between projects, and concurrent batches of one session.

use api_tests::{ClickHouseFront, Host, Project, UserSession};
use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::ClickHouse;

const BROWSER: &str = "6f1d2c9e-3b7a-4c61-9d8e-0a1b2c3d4e5f";
const SEGMENT: &str = "7a2e3d0f-4c8b-4d72-8e9f-1b2c3d4e5f60";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn uuid() -> String {
    shared::identity::crypto::new_uuid(&shared::adapters::system::OsRandom)
}

/// Events at the given times.
fn events_at(times: &[i64]) -> Value {
    json!(times.iter().map(|t| json!({ "type": 3, "timestamp": t, "data": { "source": 1 } })).collect::<Vec<_>>())
}

fn batch(batch_id: &str, events: Value) -> Value {
    let now = now_ms();
    json!({ "browser_session_id": BROWSER, "session_replay_segment_id": SEGMENT, "batch_id": batch_id,
            "started_at_ms": now, "sent_at_ms": now, "events": events })
}

fn upload(h: &Host, p: &Project, s: &UserSession, body: &Value) -> api_tests::Call {
    h.post("/api/v1/session-replays/batch").client(p).access_token(&s.access_token).json(body)
}

/// Uploads one batch and returns the replay id.
async fn replay(h: &Host, p: &Project, s: &UserSession, times: &[i64]) -> String {
    let res = upload(h, p, s, &batch(&uuid(), events_at(times))).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()["session_replay_id"].as_str().unwrap().to_string()
}

fn count(h: &Host, table: &str) -> String {
    h.db_query(&format!("SELECT count(*) FROM {table}"), &[])[0][0].clone()
}

#[tokio::test]
async fn uploads_follow_the_contract_and_bad_batches_store_nothing() {
    let h = Host::start(&[]);
    let off = h.create_project(false).await;
    let s_off = h.user_with_session(&off, json!({})).await;
    let res = upload(&h, &off, &s_off, &batch(&uuid(), events_at(&[now_ms()]))).send().await;
    res.assert_known_error(400, "ANALYTICS_NOT_ENABLED");

    let p = h.create_analytics_project().await;
    let s = h.user_with_session(&p, json!({})).await;
    let res = h.post("/api/v1/session-replays/batch").client(&p).json(&batch(&uuid(), events_at(&[1]))).send().await;
    res.assert_known_error(401, "USER_AUTHENTICATION_REQUIRED");

    // Refused batches, each checked to store nothing.
    let invalid = |field: &str| {
        let mut body = batch(&uuid(), events_at(&[now_ms()]));
        body[field] = json!("not-a-uuid");
        body
    };
    let mut too_many = batch(&uuid(), json!([]));
    too_many["events"] = json!(vec![json!({ "timestamp": 1 }); 5001]);
    let mut fractional = batch(&uuid(), events_at(&[1]));
    fractional["started_at_ms"] = json!(123.4);
    // Just over the endpoint's 1,000,000-byte cap (under the host's 1 MiB limit).
    let mut large = batch(&uuid(), json!([]));
    large["events"] = json!([{ "timestamp": 1, "data": "x".repeat(1_010_000) }]);
    let cases: Vec<(Value, u16, &str)> = vec![
        (batch(&uuid(), json!([])), 400, "events must not be empty"),
        (too_many, 400, "Too many events (max 5000)"),
        (invalid("browser_session_id"), 400, "  - Invalid browser_session_id"),
        (invalid("batch_id"), 400, "  - Invalid batch_id"),
        (invalid("session_replay_segment_id"), 400, "  - Invalid session_replay_segment_id"),
        (fractional, 400, "body.started_at_ms must be an integer"),
        (large, 413, "Request body too large (max 1000000 bytes)"),
    ];
    // The size is checked before the body is parsed: a large body that is not even JSON is 413.
    let res = h
        .post("/api/v1/session-replays/batch")
        .client(&p)
        .access_token(&s.access_token)
        .raw_body("application/json", &"{".repeat(1_010_000))
        .send()
        .await;
    assert_eq!(res.status, 413, "{}", res.text);
    for (body, status, text) in cases {
        let res = upload(&h, &p, &s, &body).send().await;
        assert_eq!(res.status, status, "{text}: {}", res.text);
        assert!(res.text.contains(text), "expected {text:?} in {}", res.text);
    }
    // Far over every limit: refused before any handler.
    let mut huge = batch(&uuid(), json!([]));
    huge["events"] = json!([{ "data": "x".repeat(1_100_000) }]);
    let res = upload(&h, &p, &s, &huge).send().await;
    assert_eq!(res.status, 413);
    assert!(res.text.starts_with("Request body too large"), "{}", res.text);
    for table in ["session_replays", "session_replay_chunks"] {
        assert_eq!(count(&h, table), "0", "{table} after refused batches");
    }
    assert_eq!(h.blob_count(), 0, "no blob after refused batches");

    // A first batch, the same batch again, and a second batch of the same session.
    let batch_id = uuid();
    let first = upload(&h, &p, &s, &batch(&batch_id, events_at(&[now_ms()]))).send().await.json();
    assert_eq!(first["deduped"], false);
    let replay_id = first["session_replay_id"].as_str().unwrap();
    assert_eq!(first["s3_key"], format!("session-replays/{}/main/{replay_id}/{batch_id}.json.gz", p.id));
    let again = upload(&h, &p, &s, &batch(&batch_id, events_at(&[now_ms()]))).send().await.json();
    assert_eq!((&again["deduped"], &again["session_replay_id"]), (&json!(true), &first["session_replay_id"]));
    // Events without timestamps are fine; the batch joins the same replay.
    let no_times = upload(&h, &p, &s, &batch(&uuid(), json!([{ "type": 4 }]))).send().await.json();
    assert_eq!(no_times["session_replay_id"], first["session_replay_id"]);
    assert_eq!((count(&h, "session_replays"), count(&h, "session_replay_chunks")), ("1".into(), "2".into()));
    // Old client timestamps do not split the replay: the 12-hour rule uses server time.
    let old = upload(&h, &p, &s, &batch(&uuid(), events_at(&[1_700_000_000_000]))).send().await.json();
    assert_eq!(old["session_replay_id"], first["session_replay_id"]);

    // Deleting the user deletes their replays, chunks and the chunks' blobs (SQL table natively,
    // R2 on workerd).
    assert_eq!(h.blob_count().to_string(), count(&h, "session_replay_chunks"), "one blob per chunk");
    let res = h.request("DELETE", &format!("/api/v1/users/{}", s.user_id)).server(&p).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    for table in ["session_replays", "session_replay_chunks"] {
        assert_eq!(count(&h, table), "0", "{table} after the user was deleted");
    }
    assert_eq!(h.blob_count(), 0, "blobs after the user was deleted");
}

fn admin_get(h: &Host, p: &Project, path: &str) -> api_tests::Call {
    h.get(path).admin(p)
}

#[tokio::test]
async fn admin_endpoints_list_read_and_page() {
    let h = Host::start(&[]);
    let p = h.create_analytics_project().await;
    let (a, b) = (
        h.user_with_session(&p, json!({ "primary_email": "a@example.com" })).await,
        h.user_with_session(&p, json!({})).await,
    );
    let now = now_ms();
    let ra = replay(&h, &p, &a, &[now - 30_000, now - 20_000]).await;
    // A second chunk for A's replay.
    let second = upload(&h, &p, &a, &batch(&uuid(), events_at(&[now - 10_000, now - 9_000, now - 8_000]))).send().await;
    assert_eq!(second.json()["session_replay_id"], ra);
    let rb = replay(&h, &p, &b, &[now - 5_000, now - 4_000]).await;

    let list = admin_get(&h, &p, "/api/v1/internal/session-replays").send().await.json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], rb, "newest last event first");
    let item_a = &items[1];
    assert_eq!(
        item_a["project_user"],
        json!({ "id": a.user_id, "display_name": null, "primary_email": "a@example.com" })
    );
    assert_eq!((&item_a["chunk_count"], &item_a["event_count"]), (&json!(2), &json!(5)));
    assert_eq!(
        (&item_a["started_at_millis"], &item_a["last_event_at_millis"]),
        (&json!(now - 30_000), &json!(now - 8_000))
    );
    assert!(list["pagination"]["next_cursor"].is_null());

    // One replay by id is the list's item; another project's admin cannot see it.
    let one = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}")).send().await.json();
    assert_eq!(&one, item_a);
    let other = h.create_analytics_project().await;
    let body = admin_get(&h, &other, &format!("/api/v1/internal/session-replays/{ra}"))
        .send()
        .await
        .assert_known_error(404, "ITEM_NOT_FOUND");
    assert_eq!(body["details"]["item_id"], ra);
    for call in
        [h.get("/api/v1/internal/session-replays").client(&p), h.get("/api/v1/internal/session-replays").server(&p)]
    {
        let body = call.send().await.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
        assert_eq!(body["details"]["allowed_access_types"], json!(["admin"]));
    }
    let res = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{}", uuid())).send().await;
    res.assert_known_error(404, "ITEM_NOT_FOUND");

    // Paging one at a time, and an unknown cursor.
    let page1 = admin_get(&h, &p, "/api/v1/internal/session-replays?limit=1").send().await.json();
    let cursor = page1["pagination"]["next_cursor"].as_str().unwrap().to_string();
    let page2 =
        admin_get(&h, &p, &format!("/api/v1/internal/session-replays?limit=1&cursor={cursor}")).send().await.json();
    assert_eq!((&page1["items"][0]["id"], &page2["items"][0]["id"]), (&json!(rb), &json!(ra)));
    assert!(page2["pagination"]["next_cursor"].is_null());
    let res = admin_get(&h, &p, &format!("/api/v1/internal/session-replays?cursor={}", uuid())).send().await;
    res.assert_known_error(404, "ITEM_NOT_FOUND");

    // Chunks, paged; a cursor from another replay; events of a chunk, under the right replay only.
    let chunks =
        admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}/chunks?limit=1")).send().await.json();
    let first_chunk = chunks["items"][0].clone();
    assert_eq!(first_chunk["event_count"], 2);
    assert_eq!(first_chunk["browser_session_id"], BROWSER);
    let next = chunks["pagination"]["next_cursor"].as_str().unwrap().to_string();
    let rest = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}/chunks?limit=1&cursor={next}"))
        .send()
        .await
        .json();
    assert_eq!(rest["items"][0]["event_count"], 3);
    let b_chunks = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{rb}/chunks")).send().await.json();
    let b_chunk = b_chunks["items"][0]["id"].as_str().unwrap().to_string();
    let res = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}/chunks?cursor={b_chunk}")).send().await;
    res.assert_known_error(404, "ITEM_NOT_FOUND");
    let chunk_id = first_chunk["id"].as_str().unwrap();
    let events = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}/chunks/{chunk_id}/events"))
        .send()
        .await
        .json();
    assert_eq!(events["events"], events_at(&[now - 30_000, now - 20_000]));
    let res =
        admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{rb}/chunks/{chunk_id}/events")).send().await;
    res.assert_known_error(404, "ITEM_NOT_FOUND");

    // All events of a replay, and a slice of them.
    let all = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}/events")).send().await.json();
    assert_eq!(all["chunks"].as_array().unwrap().len(), 2);
    assert!(all["chunks"][0].get("browser_session_id").is_none());
    let counts: Vec<usize> =
        all["chunk_events"].as_array().unwrap().iter().map(|c| c["events"].as_array().unwrap().len()).collect();
    assert_eq!(counts, [2, 3]);
    let slice = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{ra}/events?offset=1&limit=1"))
        .send()
        .await
        .json();
    assert_eq!(slice["chunk_events"].as_array().unwrap().len(), 1);
    assert_eq!(slice["chunk_events"][0]["chunk_id"], all["chunks"][1]["id"]);

    // Two replays with the same last event page without skipping either.
    let q = h.create_analytics_project().await;
    let (c, d) = (h.user_with_session(&q, json!({})).await, h.user_with_session(&q, json!({})).await);
    let (rc, rd) = (replay(&h, &q, &c, &[now - 1000, now]).await, replay(&h, &q, &d, &[now - 2000, now]).await);
    let first = admin_get(&h, &q, "/api/v1/internal/session-replays?limit=1").send().await.json();
    let cursor = first["pagination"]["next_cursor"].as_str().unwrap();
    let second =
        admin_get(&h, &q, &format!("/api/v1/internal/session-replays?limit=1&cursor={cursor}")).send().await.json();
    let mut seen = vec![first["items"][0]["id"].clone(), second["items"][0]["id"].clone()];
    seen.sort_by_key(std::string::ToString::to_string);
    let mut expected = vec![json!(rc), json!(rd)];
    expected.sort_by_key(std::string::ToString::to_string);
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn list_filters_match_the_contract() {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", &front.url)]);
    let p = h.create_analytics_project().await;
    let (a, b) = (h.user_with_session(&p, json!({})).await, h.user_with_session(&p, json!({})).await);
    let now = now_ms();
    // A: 30 s long, ended 100 s ago. B: 5 s long, ended now.
    let ra = replay(&h, &p, &a, &[now - 130_000, now - 100_000]).await;
    let rb = replay(&h, &p, &b, &[now - 5_000, now]).await;
    // Three clicks in A's replay, one in B's.
    let mut clicks = Vec::new();
    for (replay, n) in [(&ra, 3), (&rb, 1)] {
        for _ in 0..n {
            clicks.push(json!({ "event_type": "$click", "event_at": "2026-11-26 10:00:00.000", "data": {},
                                "project_id": p.id, "branch_id": "main", "user_id": a.user_id, "session_replay_id": replay }));
        }
    }
    ch.insert(&ReqwestClient::new(), "analytics_internal.events", &clicks).await.unwrap();

    let ids = |query: String| {
        let h = &h;
        let p = &p;
        async move {
            let res = admin_get(h, p, &format!("/api/v1/internal/session-replays?{query}")).send().await;
            assert_eq!(res.status, 200, "{query}: {}", res.text);
            let mut ids: Vec<String> =
                res.json()["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
            ids.sort();
            ids
        }
    };
    let both = {
        let mut v = vec![ra.clone(), rb.clone()];
        v.sort();
        v
    };
    let mid = now - 50_000;
    let cases: Vec<(String, Vec<String>)> = vec![
        (format!("user_ids={}", a.user_id), vec![ra.clone()]),
        (format!("user_ids={}", b.user_id), vec![rb.clone()]),
        (format!("user_ids={},{}", a.user_id, b.user_id), both.clone()),
        (format!("user_ids={}", uuid()), vec![]),
        (format!("team_ids={}", uuid()), vec![]),
        ("duration_ms_min=10000".into(), vec![ra.clone()]),
        ("duration_ms_max=10000".into(), vec![rb.clone()]),
        ("duration_ms_min=0&duration_ms_max=50000".into(), both.clone()),
        ("duration_ms_min=10000&duration_ms_max=20000".into(), vec![]),
        (format!("last_event_at_to_millis={mid}"), vec![ra.clone()]),
        (format!("last_event_at_from_millis={mid}"), vec![rb.clone()]),
        (format!("last_event_at_from_millis=0&last_event_at_to_millis={}", now + 1), both.clone()),
        ("click_count_min=2".into(), vec![ra.clone()]),
        ("click_count_min=0".into(), both.clone()),
        ("click_count_min=9999".into(), vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(query.clone()).await, expected, "{query}");
    }

    let invalid = [
        ("user_ids=not-a-uuid", "user_ids must contain valid UUID values"),
        ("team_ids=not-a-uuid", "team_ids must contain valid UUID values"),
        ("duration_ms_min=abc", "duration_ms_min must be a non-negative integer"),
        ("duration_ms_min=-1", "duration_ms_min must be a non-negative integer"),
        ("duration_ms_max=12.5", "duration_ms_max must be a non-negative integer"),
        ("duration_ms_min=5&duration_ms_max=4", "duration_ms_min must be less than or equal to duration_ms_max"),
        (
            "last_event_at_from_millis=not-a-number",
            "last_event_at_from_millis must be a non-negative timestamp in milliseconds",
        ),
        (
            "last_event_at_from_millis=5&last_event_at_to_millis=4",
            "last_event_at_from_millis must be less than or equal to last_event_at_to_millis",
        ),
        ("click_count_min=1.5", "click_count_min must be a non-negative integer"),
        ("click_count_min=-3", "click_count_min must be a non-negative integer"),
    ];
    for (query, text) in invalid {
        let res = admin_get(&h, &p, &format!("/api/v1/internal/session-replays?{query}")).send().await;
        assert_eq!((res.status, res.text.as_str()), (400, text), "{query}");
    }
}

#[tokio::test]
async fn concurrent_batches_of_one_session_land_in_one_replay_with_every_event() {
    let h = Host::start(&[]);
    let p = h.create_analytics_project().await;
    let s = h.user_with_session(&p, json!({})).await;
    let now = now_ms();
    let batches: Vec<_> = (0..50)
        .map(|i| {
            let body = batch(&uuid(), events_at(&[now + i, now + i + 1, now + i + 2]));
            upload(&h, &p, &s, &body).send()
        })
        .collect();
    let results = futures::future::join_all(batches).await;
    let mut replays: Vec<String> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["session_replay_id"].as_str().unwrap().to_string()
        })
        .collect();
    replays.sort();
    replays.dedup();
    assert_eq!(replays.len(), 1, "every batch joined one replay");
    let item = admin_get(&h, &p, &format!("/api/v1/internal/session-replays/{}", replays[0])).send().await.json();
    assert_eq!((&item["chunk_count"], &item["event_count"]), (&json!(50), &json!(150)));
    // Events come a page of chunks at a time (20 by default, at most 100), so no request
    // inflates a whole long replay.
    let path = format!("/api/v1/internal/session-replays/{}/events", replays[0]);
    let first = admin_get(&h, &p, &path).send().await.json();
    assert_eq!(first["chunks"].as_array().unwrap().len(), 50, "every chunk's metadata");
    assert_eq!(first["chunk_events"].as_array().unwrap().len(), 20, "the default page");
    let capped = admin_get(&h, &p, &format!("{path}?limit=1000")).send().await.json();
    assert_eq!(capped["chunk_events"].as_array().unwrap().len(), 50, "a larger limit, up to 100 chunks");
    let mut stored = 0;
    for offset in (0..50).step_by(20) {
        let page = admin_get(&h, &p, &format!("{path}?offset={offset}&limit=20")).send().await.json();
        stored += page["chunk_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["events"].as_array().unwrap().len())
            .sum::<usize>();
    }
    assert_eq!(stored, 150, "every event is readable back, page by page");
}
