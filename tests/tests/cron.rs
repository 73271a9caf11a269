//! Cron: the sessions function's scheduled handler removes expired sessions (each recorded in
//! `deleted_rows`) and nothing else. Fired through `/__scheduled?cron=...` on every runtime.

use api_tests::Host;
use serde_json::json;

fn claim(token: &str, name: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()[name].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_scheduled_handler_removes_expired_sessions_only() {
    let (h, (p, long, short)) = Host::start_scheduled("refresh", async |h: &Host| {
        let p = h.create_project(false).await;
        let long = h.user_with_session(&p, json!({})).await;
        let short = h.create_session(&p, &long.user_id, json!({ "expires_in_millis": 1000 })).await;
        (p, long, short)
    })
    .await;
    let (long_id, short_id) =
        (claim(&long.access_token, "refresh_token_id"), claim(&short.access_token, "refresh_token_id"));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let sessions =
        |h: &Host| h.db_query("SELECT id FROM refresh_tokens WHERE user_id = ? ORDER BY id", &[&long.user_id]);
    assert_eq!(sessions(&h).len(), 2, "the expired row is still stored before the trigger");

    let res = h.get("/__scheduled?cron=17+*+*+*+*").send().await;
    assert_eq!(res.status, 200, "{}", res.text);

    // Cron work may finish after the trigger's response (wait_until): poll the database.
    let mut remaining = sessions(&h);
    for _ in 0..50 {
        if remaining.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        remaining = sessions(&h);
    }
    assert_eq!(remaining, vec![vec![long_id]]);
    let audit = h.db_query(
        "SELECT table_name, json_extract(primary_key, '$.id') FROM deleted_rows WHERE json_extract(primary_key, '$.id') = ?",
        &[&short_id],
    );
    assert_eq!(audit, vec![vec!["ProjectUserRefreshToken".to_string(), short_id]]);

    let refresh = |t: &str| h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(t).send();
    assert_eq!(refresh(&long.refresh_token).await.status, 200);
    refresh(&short.refresh_token).await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
}
