//! Refresh-token rotation with reuse detection (docs/api.md §1.10): off by default; on, every
//! refresh returns a new refresh token, concurrent refreshes of one token all get the same
//! successor and are never logged out, an old token revokes the whole session, and only hashes
//! of tokens are at rest.

use std::collections::BTreeSet;

use api_tests::{host, Host, Project};
use serde_json::json;
use sha2::{Digest, Sha256};

async fn rotating_project(h: &Host) -> Project {
    let p = h.create_project(false).await;
    h.set_environment_config(&p, &json!({ "auth.refreshTokenRotation.enabled": true })).await;
    p
}

fn refresh(h: &Host, p: &Project, token: &str) -> api_tests::Call {
    h.post("/api/v1/auth/sessions/current/refresh").client(p).refresh_token(token)
}

/// Refreshes `token` and returns the refresh token the answer names.
async fn rotate(h: &Host, p: &Project, token: &str) -> String {
    let res = refresh(h, p, token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.json()["refresh_token"].as_str().expect("a new refresh token").to_string()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn without_the_setting_a_refresh_returns_no_new_refresh_token() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    for _ in 0..2 {
        let res = refresh(h, &p, &s.refresh_token).send().await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert_eq!(res.json().as_object().unwrap().keys().collect::<Vec<_>>(), ["access_token"]);
    }
}

#[tokio::test]
async fn a_rotating_refresh_returns_a_new_token_that_works_and_the_old_one_gives_the_same() {
    let h = host();
    let p = rotating_project(h).await;
    let s = h.user_with_session(&p, json!({})).await;
    let res = refresh(h, &p, &s.refresh_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let next = res.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next, s.refresh_token);
    assert_eq!(next.len(), 45);
    let me = h.get("/api/v1/users/me").client(&p).access_token(res.json()["access_token"].as_str().unwrap());
    assert_eq!(me.send().await.json()["id"], s.user_id);

    // The parent inside its window: the same successor, not a third token.
    assert_eq!(rotate(h, &p, &s.refresh_token).await, next);
    // The successor rotates on.
    let third = rotate(h, &p, &next).await;
    assert_ne!(third, next);

    // The OAuth refresh grant rotates too.
    let res = h
        .post("/api/v1/auth/oauth/token")
        .json(&json!({ "grant_type": "refresh_token", "client_id": p.id,
                       "client_secret": "__stack_public_client__", "refresh_token": third }))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let fourth = res.json()["refresh_token"].as_str().expect("the grant's new refresh token").to_string();
    assert_ne!(fourth, third);
    assert_eq!(rotate(h, &p, &fourth).await.len(), 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_all_get_the_same_successor_and_stay_signed_in() {
    let h = host();
    let p = rotating_project(h).await;
    let s = h.user_with_session(&p, json!({})).await;
    let rounds = 1_000;
    let mut token = s.refresh_token.clone();
    let mut seen = BTreeSet::from([token.clone()]);
    for round in 0..rounds {
        let answers = futures::future::join_all((0..8).map(|_| refresh(h, &p, &token).send())).await;
        let successors: BTreeSet<String> = answers
            .iter()
            .map(|res| {
                assert_eq!(res.status, 200, "round {round}: {}", res.text);
                res.json()["refresh_token"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(successors.len(), 1, "round {round}: every refresh gets the same successor: {successors:?}");
        token = successors.into_iter().next().unwrap();
        assert!(seen.insert(token.clone()), "round {round}: a successor is new");
    }
    // Still signed in at the end, with one session.
    assert_eq!(rotate(h, &p, &token).await.len(), 45);
    let list = h.get(&format!("/api/v1/auth/sessions?user_id={}", s.user_id)).server(&p).send().await;
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 1, "{}", list.text);
}

#[tokio::test]
async fn reusing_a_grandparent_revokes_the_whole_session() {
    let h = host();
    let p = rotating_project(h).await;
    let s = h.user_with_session(&p, json!({})).await;
    let first = rotate(h, &p, &s.refresh_token).await;
    let second = rotate(h, &p, &first).await;

    let res = refresh(h, &p, &s.refresh_token).send().await;
    res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    // Nothing is minted from the family afterwards, not even from its newest token.
    for token in [&second, &first, &s.refresh_token] {
        refresh(h, &p, token).send().await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    }
    let list = h.get(&format!("/api/v1/auth/sessions?user_id={}", s.user_id)).server(&p).send().await;
    assert_eq!(list.json()["items"], json!([]), "{}", list.text);
    // The revoked session is in the audit trail, and its retired tokens are gone with it.
    let audit = h.db_query(
        "SELECT count(*) FROM deleted_rows WHERE table_name = 'ProjectUserRefreshToken' \
         AND json_extract(data, '$.projectUserId') = ?1",
        &[&s.user_id],
    );
    assert_eq!(audit[0][0], "1");
    let left = h.db_query(
        "SELECT count(*) FROM retired_refresh_tokens r JOIN deleted_rows d \
         ON json_extract(d.primary_key, '$.id') = r.session_id WHERE json_extract(d.data, '$.projectUserId') = ?1",
        &[&s.user_id],
    );
    assert_eq!(left[0][0], "0");
}

#[tokio::test]
async fn the_parent_after_its_grace_window_is_a_reuse_and_the_window_does_not_slide() {
    let h = host();
    let p = rotating_project(h).await;
    let s = h.user_with_session(&p, json!({})).await;
    let next = rotate(h, &p, &s.refresh_token).await;
    // Using the parent inside the window does not move the window.
    assert_eq!(rotate(h, &p, &s.refresh_token).await, next);
    let session_id = &h.db_query("SELECT id FROM refresh_tokens WHERE token_hash = ?1", &[&sha256_hex(&next)])[0][0];
    // The rotation 31 seconds ago (the window is 30 s), as if time had passed.
    let moved = h.db_execute("UPDATE refresh_tokens SET rotated_at = rotated_at - 31000 WHERE id = ?1", &[session_id]);
    assert_eq!(moved, 1);
    refresh(h, &p, &s.refresh_token).send().await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    refresh(h, &p, &next).send().await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
}

#[tokio::test]
async fn every_refresh_token_at_rest_is_a_hash() {
    let h = host();
    let p = rotating_project(h).await;
    let s = h.user_with_session(&p, json!({})).await;
    let mut tokens = vec![s.refresh_token.clone()];
    for _ in 0..3 {
        let next = rotate(h, &p, tokens.last().unwrap()).await;
        tokens.push(next);
    }
    let session =
        h.db_query("SELECT token_hash, parent_token_hash, id FROM refresh_tokens WHERE user_id = ?1", &[&s.user_id]);
    assert_eq!(session.len(), 1);
    assert_eq!(session[0][0], sha256_hex(&tokens[3]));
    assert_eq!(session[0][1], sha256_hex(&tokens[2]));
    let retired: BTreeSet<String> = h
        .db_query("SELECT token_hash FROM retired_refresh_tokens WHERE session_id = ?1", &[&session[0][2]])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(retired, BTreeSet::from([sha256_hex(&tokens[0]), sha256_hex(&tokens[1])]));
    // No token appears anywhere in the database file in plain text.
    let bytes = std::fs::read(h.db_path().unwrap()).unwrap();
    let wal = std::fs::read(h.db_path().unwrap().with_extension("sqlite-wal")).unwrap_or_default();
    for token in &tokens {
        for file in [&bytes, &wal] {
            assert!(!file.windows(token.len()).any(|w| w == token.as_bytes()), "a token at rest in plain text");
        }
    }
}
