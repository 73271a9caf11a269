//! The primary store mirrored into the analytics store (docs/api.md §6.6), on every runtime:
//! after the sync step, admin SQL over `users`, `refresh_tokens` and `email_outboxes` shows
//! exactly the project's rows (creates, updates, deletes) and never another project's; the
//! sync's state is on `/health`; a user written through the API is mirrored without waiting
//! for the cron. The step is the analytics function's cron, fired through `/__scheduled`
//! (natively the host's, on workerd `wrangler dev --test-scheduled`). A step killed midway is
//! `analytics_sync_kill`'s (natively).

use api_tests::{ClickHouseFront, Host, Project};
use serde_json::{json, Value};
use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};

/// The mirrored tables (one state row each once a step ran).
const MAPPINGS: usize = 4;

async fn engine() -> (ClickHouseFront, ClickHouse) {
    let front = ClickHouseFront::start();
    let ch = ClickHouse { url: front.url.clone(), database: "default".into(), user: None, password: None };
    shared::analytics::clickhouse::apply_schema(&ch, &ReqwestClient::new(), None).await.unwrap();
    (front, ch)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Fires the sync's cron and waits until every mapping recorded a success after the trigger.
async fn sync(h: &Host) {
    let since = now_ms().to_string();
    let res = h.get("/__scheduled?cron=*+*+*+*+*").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let done =
        || h.db_query("SELECT count(*) FROM analytics_sync_state WHERE last_success_at >= ?", &[&since])[0][0].clone();
    for _ in 0..300 {
        if done() == MAPPINGS.to_string() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the sync step did not finish: {:?}", h.db_query("SELECT * FROM analytics_sync_state", &[]));
}

/// Admin SQL as the project's admin; the rows it returns.
async fn admin_sql(h: &Host, p: &Project, sql: &str) -> Vec<Value> {
    let res = h.post("/api/v1/internal/analytics/query").admin(p).json(&json!({ "query": sql })).send().await;
    assert_eq!(res.status, 200, "{sql}: {}", res.text);
    res.json()["result"].as_array().unwrap().clone()
}

fn column(rows: &[Value], name: &str) -> Vec<Value> {
    rows.iter().map(|r| r[name].clone()).collect()
}

struct Written {
    a: Project,
    b: Project,
    alice: String,
    bob: String,
    email: String,
}

/// Writes through the API: two projects; in the first Alice, Bob (renamed) and Carol (deleted
/// before any sync), each with a session, and an email; in the second one user.
async fn write_through_the_api(h: &Host) -> Written {
    let (a, b) = (h.create_project(false).await, h.create_project(false).await);
    let alice = h.user_with_session(&a, json!({ "display_name": "Alice", "primary_email": "alice@example.com" })).await;
    let bob = h.user_with_session(&a, json!({ "display_name": "Bob" })).await;
    let carol = h.user_with_session(&a, json!({ "display_name": "Carol" })).await;
    let renamed = h
        .request("PATCH", &format!("/api/v1/users/{}", bob.user_id))
        .server(&a)
        .json(&json!({ "display_name": "Robert" }))
        .send()
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let deleted = h.request("DELETE", &format!("/api/v1/users/{}", carol.user_id)).server(&a).send().await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    h.user_with_session(&b, json!({ "display_name": "Other" })).await;
    let res = h
        .post("/api/v1/emails/outbox")
        .server(&a)
        .json(&json!({ "to": { "type": "custom-emails", "emails": ["x@example.com"] },
                       "tsx_source": "<title>Hi</title><p>Hi</p>" }))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let email = res.json()["id"].as_str().unwrap().to_string();
    Written { a, b, alice: alice.user_id, bob: bob.user_id, email }
}

#[tokio::test]
async fn admin_sql_sees_exactly_its_projects_mirrored_rows_after_each_sync() {
    let (_front, ch) = engine().await;
    let env = [("STACK_CLICKHOUSE_URL", ch.url.as_str())];
    let (h, w) = Host::start_scheduled_with("analytics-query", &env, write_through_the_api).await;

    sync(&h).await;
    let users = admin_sql(&h, &w.a, "SELECT id, display_name, primary_email FROM users ORDER BY display_name").await;
    assert_eq!(column(&users, "display_name"), [json!("Alice"), json!("Robert")], "{users:?}");
    assert_eq!(column(&users, "primary_email"), [json!("alice@example.com"), Value::Null]);
    assert_eq!(column(&users, "id"), [json!(w.alice), json!(w.bob)]);
    // (toString: ClickHouse orders UUIDs by their halves as numbers, not as text.)
    let sessions = admin_sql(&h, &w.a, "SELECT user_id FROM refresh_tokens ORDER BY toString(user_id)").await;
    let mut owners = vec![json!(w.alice), json!(w.bob)];
    owners.sort_by_key(|v| v.as_str().unwrap().to_string());
    assert_eq!(column(&sessions, "user_id"), owners, "Carol's session went with her");
    let emails = admin_sql(&h, &w.a, "SELECT id, simple_status FROM email_outboxes").await;
    assert_eq!(column(&emails, "id"), [json!(w.email)]);
    assert_eq!(column(&admin_sql(&h, &w.b, "SELECT display_name FROM users").await, "display_name"), [json!("Other")]);
    assert_eq!(admin_sql(&h, &w.b, "SELECT count() AS n FROM refresh_tokens").await[0]["n"], json!("1"));
    assert!(admin_sql(&h, &w.b, "SELECT id FROM email_outboxes").await.is_empty());

    // Later writes, straight into the store (on workerd only the analytics Worker runs now):
    // the triggers log them as they log the API's.
    h.db_execute("UPDATE users SET display_name = 'Alicia' WHERE id = ?", &[&w.alice]);
    h.db_execute("DELETE FROM refresh_tokens WHERE user_id = ?", &[&w.bob]);
    h.db_execute("DELETE FROM users WHERE id = ?", &[&w.bob]);
    h.db_execute("DELETE FROM email_outbox WHERE id = ?", &[&w.email]);
    sync(&h).await;
    let users = admin_sql(&h, &w.a, "SELECT display_name FROM users").await;
    assert_eq!(column(&users, "display_name"), [json!("Alicia")]);
    assert_eq!(column(&admin_sql(&h, &w.a, "SELECT user_id FROM refresh_tokens").await, "user_id"), [json!(w.alice)]);
    assert!(admin_sql(&h, &w.a, "SELECT id FROM email_outboxes").await.is_empty());
    assert_eq!(column(&admin_sql(&h, &w.b, "SELECT display_name FROM users").await, "display_name"), [json!("Other")]);

    // Deletes are tombstones in the same part as the row they end: one row per user under FINAL.
    let http = ReqwestClient::new();
    let stored = ch
        .rows(
            &http,
            &Query::new(
                "SELECT sync_is_deleted, count() AS n FROM analytics_internal.users FINAL \
                 WHERE project_id = {p:String} GROUP BY sync_is_deleted ORDER BY sync_is_deleted",
            )
            .param("p", w.a.id.as_str()),
        )
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|r| (r["sync_is_deleted"].clone(), r["n"].clone())).collect::<Vec<_>>(),
        [(json!(0), json!("1")), (json!(1), json!("2"))],
        "Alicia live; Bob and Carol tombstones"
    );
    assert_eq!(h.db_query("SELECT count(*) FROM sync_changes", &[])[0][0], "0", "the log is pruned");
}

#[tokio::test]
async fn health_shows_the_syncs_pending_changes_successes_and_failures() {
    let (front, ch) = engine().await;
    let env = [("STACK_CLICKHOUSE_URL", ch.url.as_str())];
    let (h, p) = Host::start_scheduled_with("analytics-query", &env, async |h: &Host| {
        let p = h.create_project(false).await;
        h.user_with_session(&p, json!({})).await;
        p
    })
    .await;
    let health = || async { h.get("/health").send().await.json()["analytics_sync"].clone() };
    h.db_execute("UPDATE users SET display_name = 'Changed'", &[]);
    let before = health().await;
    assert!(before["pending_changes"].as_i64().unwrap() >= 1, "{before}");
    assert!(before["lag_ms"].as_i64().unwrap() >= 0, "{before}");

    sync(&h).await;
    let after = health().await;
    assert_eq!((after["pending_changes"].clone(), after["lag_ms"].clone()), (json!(0), json!(0)), "{after}");
    assert!(after["last_success_at"].is_string());
    assert_eq!(after["consecutive_failures"], json!(0));
    assert_eq!(admin_sql(&h, &p, "SELECT count() AS n FROM users").await[0]["n"], json!("1"));

    // The analytics store goes away: the step fails, says so, and keeps the changes.
    drop(front);
    h.db_execute("UPDATE users SET display_name = 'Later'", &[]);
    let res = h.get("/__scheduled?cron=*+*+*+*+*").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mut failed = health().await;
    for _ in 0..100 {
        if failed["consecutive_failures"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        failed = health().await;
    }
    assert_eq!(failed["consecutive_failures"], json!(1), "{failed}");
    assert_eq!(failed["last_error"], json!("the analytics store did not answer"));
    assert!(failed["last_failure_at"].is_string());
    assert_eq!(failed["pending_changes"], json!(1), "nothing accepted is lost");
}

/// On workerd nothing fires the cron by itself here, so only the write's own step can mirror
/// the user (natively the in-process scheduler also runs each minute).
#[tokio::test]
async fn a_user_written_through_the_api_is_mirrored_without_waiting_for_the_cron() {
    let (_front, ch) = engine().await;
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", ch.url.as_str())]);
    let p = h.create_project(false).await;
    let created = h.post("/api/v1/users").server(&p).json(&json!({ "display_name": "Soon" })).send().await;
    assert_eq!(created.status, 201, "{}", created.text);
    let mut names = Vec::new();
    for _ in 0..100 {
        names = column(&admin_sql(&h, &p, "SELECT display_name FROM users").await, "display_name");
        if !names.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(names, [json!("Soon")]);
}
