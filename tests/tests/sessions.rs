//! Sessions: docs/api.md §1.8 (refresh, sign-out, sessions list/create/delete).

use api_tests::host;
use serde_json::json;

const NOT_FOUND_MESSAGE: &str = "Refresh token not found for this project, or the session has expired/been revoked.";

#[tokio::test]
async fn refresh_with_a_valid_token_returns_an_access_token_that_authenticates() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({ "display_name": "Ada" })).await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "only access_token: {body}");
    let token = body["access_token"].as_str().unwrap();
    let me = h.get("/api/v1/users/me").client(&p).access_token(token).send().await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["id"], s.user_id);
    assert_eq!(me.json()["display_name"], "Ada");
}

#[tokio::test]
async fn the_latest_alias_serves_the_same_routes() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let res =
        h.post("/api/latest/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test]
async fn an_invalid_refresh_token_is_401_with_the_exact_message() {
    let h = host();
    let p = h.create_project(false).await;
    let res =
        h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token("something-invalid").send().await;
    let body = res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    assert_eq!(body, json!({ "code": "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED", "error": NOT_FOUND_MESSAGE }));
}

#[tokio::test]
async fn a_missing_refresh_token_header_is_a_schema_error() {
    let h = host();
    let p = h.create_project(false).await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert_eq!(
        body["error"],
        "Request validation failed on POST /api/v1/auth/sessions/current/refresh:\n  - headers.x-stack-refresh-token must be defined"
    );
}

#[tokio::test]
async fn deleting_the_user_ends_its_sessions() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let res = h.delete("/api/v1/users/me").server(&p).access_token(&s.access_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), json!({ "success": true }));
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    let again = h.delete(&format!("/api/v1/users/{}", s.user_id)).server(&p).send().await;
    again.assert_known_error(404, "USER_NOT_FOUND");
}

#[tokio::test]
async fn a_revoked_extra_session_stops_refreshing_and_the_original_keeps_working() {
    let h = host();
    let p = h.create_project(false).await;
    let original = h.user_with_session(&p, json!({})).await;
    let extra = h.create_session(&p, &original.user_id, json!({})).await;
    let refresh = |token: String| {
        let call = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&token);
        call.send()
    };
    assert_eq!(refresh(extra.refresh_token.clone()).await.status, 200);
    let list = h.get(&format!("/api/v1/auth/sessions?user_id={}", original.user_id)).server(&p).send().await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let extra_id = jwt_claim(&extra.access_token, "refresh_token_id");
    let res =
        h.delete(&format!("/api/v1/auth/sessions/{extra_id}?user_id={}", original.user_id)).server(&p).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    refresh(extra.refresh_token.clone()).await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    assert_eq!(refresh(original.refresh_token.clone()).await.status, 200);
}

#[tokio::test]
async fn sessions_of_another_project_cannot_be_refreshed() {
    let h = host();
    let a = h.create_project(false).await;
    let b = h.create_project(false).await;
    let s = h.user_with_session(&a, json!({})).await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&b).refresh_token(&s.refresh_token).send().await;
    res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
}

#[tokio::test]
async fn sign_out_ends_the_session_and_needs_no_refresh_token() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let res = h.delete("/api/v1/auth/sessions/current").client(&p).access_token(&s.access_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), json!({ "success": true }));
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    res.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    // A second sign-out with the same access token: 401, not upstream's 500.
    let again = h.delete("/api/v1/auth/sessions/current").client(&p).access_token(&s.access_token).send().await;
    again.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
}

#[tokio::test]
async fn sign_out_without_an_access_token_is_access_token_expired() {
    let h = host();
    let p = h.create_project(false).await;
    let res = h.delete("/api/v1/auth/sessions/current").client(&p).send().await;
    let body = res.assert_known_error(401, "ACCESS_TOKEN_EXPIRED");
    assert!(body["details"]["expired_at_millis"].is_i64());
    assert_eq!(body["details"]["user_id"], json!(null));
}

#[tokio::test]
async fn signing_out_in_one_project_leaves_another_projects_users_signed_in() {
    let h = host();
    let a = h.create_project(false).await;
    let b = h.create_project(false).await;
    let sa = h.user_with_session(&a, json!({})).await;
    let sb = h.user_with_session(&b, json!({})).await;
    let res = h.delete("/api/v1/auth/sessions/current").client(&a).access_token(&sa.access_token).send().await;
    assert_eq!(res.status, 200);
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&b).refresh_token(&sb.refresh_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
}

#[tokio::test]
async fn a_client_cannot_create_sessions() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let before = h.project_snapshot(&p.id);
    let res = h.post("/api/v1/auth/sessions").client(&p).json(&json!({ "user_id": s.user_id })).send().await;
    let body = res.assert_known_error(401, "INSUFFICIENT_ACCESS_TYPE");
    assert_eq!(body["details"], json!({ "actual_access_type": "client", "allowed_access_types": ["server", "admin"] }));
    assert_eq!(body["error"], "The x-stack-access-type header must be 'server' or 'admin', but was 'client'.");
    assert_eq!(h.project_snapshot(&p.id), before);
}

#[tokio::test]
async fn the_server_creates_sessions_for_existing_users_only() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    assert!(!s.access_token.is_empty() && s.refresh_token.len() == 45);
    let missing = "9b2c7c5e-1f7a-4a8e-b0c4-2a6d3f1e5b7d";
    let before = h.project_snapshot(&p.id);
    let res = h.post("/api/v1/auth/sessions").server(&p).json(&json!({ "user_id": missing })).send().await;
    let body = res.assert_known_error(400, "USER_ID_DOES_NOT_EXIST");
    assert_eq!(body["details"], json!({ "user_id": missing }));
    assert_eq!(h.project_snapshot(&p.id), before);
}

#[tokio::test]
async fn a_short_session_refreshes_until_it_expires() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let short = h.create_session(&p, &s.user_id, json!({ "expires_in_millis": 1500 })).await;
    let refresh =
        || h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&short.refresh_token).send();
    assert_eq!(refresh().await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
    refresh().await.assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
}

#[tokio::test]
async fn a_session_lifetime_over_367_days_is_a_schema_error() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let before = h.project_snapshot(&p.id);
    let res = h
        .post("/api/v1/auth/sessions")
        .server(&p)
        .json(&json!({ "user_id": s.user_id, "expires_in_millis": 370i64 * 24 * 3600 * 1000 }))
        .send()
        .await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert_eq!(
        body["error"],
        "Request validation failed on POST /api/v1/auth/sessions:\n  - body.expires_in_millis must be less than or equal to 31708800000"
    );
    assert_eq!(body["details"]["message"], body["error"]);
    assert_eq!(h.project_snapshot(&p.id), before);
}

#[tokio::test]
async fn a_client_deletes_its_other_session_but_not_the_current_one() {
    let h = host();
    let p = h.create_project(false).await;
    let current = h.user_with_session(&p, json!({})).await;
    let other = h.create_session(&p, &current.user_id, json!({})).await;
    let list = || h.get("/api/v1/auth/sessions?user_id=me").client(&p).access_token(&current.access_token).send();
    let items = list().await.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    let other_id = jwt_claim(&other.access_token, "refresh_token_id");
    let current_id = jwt_claim(&current.access_token, "refresh_token_id");

    let before = h.project_snapshot(&p.id);
    let res = h
        .delete(&format!("/api/v1/auth/sessions/{current_id}?user_id=me"))
        .client(&p)
        .access_token(&current.access_token)
        .send()
        .await;
    res.assert_known_error(400, "CANNOT_DELETE_CURRENT_SESSION");
    assert_eq!(h.project_snapshot(&p.id), before);

    let res = h
        .delete(&format!("/api/v1/auth/sessions/{other_id}?user_id=me"))
        .client(&p)
        .access_token(&current.access_token)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let items = list().await.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], current_id);
    assert_eq!(items[0]["is_current_session"], true);
}

#[tokio::test]
async fn a_client_cannot_touch_another_users_sessions() {
    let h = host();
    let p = h.create_project(false).await;
    let mine = h.user_with_session(&p, json!({})).await;
    let theirs = h.user_with_session(&p, json!({})).await;
    let res = h
        .get(&format!("/api/v1/auth/sessions?user_id={}", theirs.user_id))
        .client(&p)
        .access_token(&mine.access_token)
        .send()
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.text, "Client can only list sessions for their own user.");
    let their_session = jwt_claim(&theirs.access_token, "refresh_token_id");
    let res = h
        .delete(&format!("/api/v1/auth/sessions/{their_session}?user_id={}", theirs.user_id))
        .client(&p)
        .access_token(&mine.access_token)
        .send()
        .await;
    assert_eq!(res.status, 404);
    assert_eq!(res.text, "Session not found.");
}

#[tokio::test]
async fn listing_without_user_id_is_a_schema_error() {
    let h = host();
    let p = h.create_project(false).await;
    let res = h.get("/api/v1/auth/sessions").server(&p).send().await;
    let body = res.assert_known_error(400, "SCHEMA_ERROR");
    assert!(body["error"].as_str().unwrap().ends_with("  - query.user_id must be defined"), "{body}");
}

#[tokio::test]
async fn impersonation_sessions_are_hidden_from_clients_and_shown_to_admins() {
    let h = host();
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    h.create_session(&p, &s.user_id, json!({ "is_impersonation": true })).await;
    let client = h.get("/api/v1/auth/sessions?user_id=me").client(&p).access_token(&s.access_token).send().await.json();
    let admin = h.get(&format!("/api/v1/auth/sessions?user_id={}", s.user_id)).admin(&p).send().await.json();
    assert_eq!(client["items"].as_array().unwrap().len(), 1);
    assert_eq!(client["items"][0]["is_impersonation"], false);
    assert_eq!(admin["items"].as_array().unwrap().len(), 2);
    assert_eq!(admin["is_paginated"], false);
    let impersonations = admin["items"].as_array().unwrap().iter().filter(|i| i["is_impersonation"] == true).count();
    assert_eq!(impersonations, 1);
    for item in admin["items"].as_array().unwrap() {
        assert!(item["created_at"].is_i64() && item["last_used_at"].is_i64(), "{item}");
    }
}

/// A claim of a JWT's payload (no verification: these tests check behaviour, not signatures).
fn jwt_claim(token: &str, name: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims[name].as_str().unwrap().to_string()
}
