//! Functions as WASI HTTP components on `wasmtime serve` (the `spin-wasi` build): the health
//! route, then real routes over the embedded SQLite store (for refresh: a full session flow, an
//! OAuth sign-in at a real OpenID provider over outbound WASI HTTP, password sign-in and
//! refresh-token rotation). The `spin` build (which
//! needs spin:sqlite and spin:variables, not available outside Spin) is checked for its imports.

use api_tests::Host;
use serde_json::json;

#[tokio::test]
async fn the_component_serves_health_and_a_real_session_flow() {
    let h = Host::start_component("refresh");
    let res = h.get("/health").send().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), json!({ "status": "ok" }));

    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({ "display_name": "Wasi" })).await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let token = res.json()["access_token"].as_str().unwrap().to_string();
    let me = h.get("/api/v1/users/me").client(&p).access_token(&token).send().await;
    assert_eq!(me.json()["display_name"], "Wasi");
    let jwks = h.get(&format!("/api/v1/projects/{}/.well-known/jwks.json", p.id)).send().await;
    assert_eq!(jwks.json()["keys"].as_array().unwrap().len(), 2);
    // The component's signer (ring built for wasm32-wasip2) makes tokens an independent JOSE
    // library accepts with the published key.
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks.text).unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).expect("the token's kid is published")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[&p.id]);
    let verified = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).expect("verifies");
    assert_eq!(verified.claims["sub"], s.user_id);
    h.post("/api/v1/auth/sessions/current/refresh")
        .client(&p)
        .refresh_token("nope")
        .send()
        .await
        .assert_known_error(401, "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
    // The data is in the SQLite file of the preopened folder.
    let rows = h.db_query("SELECT count(*) FROM refresh_tokens WHERE user_id = ?", &[&s.user_id]);
    assert_eq!(rows, vec![vec!["1".to_string()]]);
}

#[tokio::test]
async fn the_component_signs_in_at_a_real_openid_provider() {
    use api_tests::oauth_browser::{provider_config, sign_in_code, tokens, PROVIDER_ID};
    let h = Host::start_component("refresh");
    let op =
        api_tests::OpenIdProvider::start(&[format!("{}/api/v1/auth/oauth/callback/{PROVIDER_ID}", h.base_url)], 3600);
    let p = h.create_project(false).await;
    // The component serves refresh only (no config function): its override is written into
    // the store the component reads.
    let config = provider_config(&op).to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    let sql = "INSERT INTO environment_config_overrides (project_id, branch_id, config, updated_at) VALUES (?1, 'main', ?2, ?3)";
    assert_eq!(h.db_execute(sql, &[&p.id, &config, &now]), 1);
    let account = json!({ "sub": "wasi-1", "email": "wasi@example.com", "email_verified": true, "name": "Wasi" });
    let signed_up = tokens(&h, &p, &sign_in_code(&h, &op, &p, &account, "").await).await;
    assert_eq!(signed_up["is_new_user"], true);
    let again = tokens(&h, &p, &sign_in_code(&h, &op, &p, &account, "").await).await;
    assert_eq!(again["is_new_user"], false);
    let me = h.get("/api/v1/users/me").client(&p).access_token(again["access_token"].as_str().unwrap()).send().await;
    assert_eq!(me.json()["primary_email"], "wasi@example.com");
}

#[tokio::test]
async fn the_component_signs_in_with_a_password_and_rotates_refresh_tokens() {
    let h = Host::start_component("refresh");
    let p = h.create_project(false).await;
    let config = json!({ "auth.password.allowSignIn": true, "auth.refreshTokenRotation.enabled": true }).to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    let sql = "INSERT INTO environment_config_overrides (project_id, branch_id, config, updated_at) VALUES (?1, 'main', ?2, ?3)";
    assert_eq!(h.db_execute(sql, &[&p.id, &config, &now]), 1);
    let body = json!({ "email": "pw@example.com", "password": "a component password" });
    let up = h.post("/api/v1/auth/password/sign-up").client(&p).json(&body).send().await;
    assert_eq!(up.status, 200, "{}", up.text);
    let wrong = json!({ "email": "pw@example.com", "password": "not the password" });
    let res = h.post("/api/v1/auth/password/sign-in").client(&p).json(&wrong).send().await;
    res.assert_known_error(400, "EMAIL_PASSWORD_MISMATCH");
    let signed_in = h.post("/api/v1/auth/password/sign-in").client(&p).json(&body).send().await;
    assert_eq!(signed_in.json()["user_id"], up.json()["user_id"]);
    let first = signed_in.json()["refresh_token"].as_str().unwrap().to_string();
    let refresh =
        |token: String| h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&token).send();
    let rotated = refresh(first.clone()).await;
    let next = rotated.json()["refresh_token"].as_str().expect("a successor").to_string();
    assert_ne!(next, first);
    assert_eq!(refresh(first).await.json()["refresh_token"], next, "the parent in its window: the same successor");
    assert_eq!(refresh(next).await.status, 200);
}

/// A component has no cron trigger: the companion's scheduler role (`companion serve --role
/// scheduler`) fires its crons through its scheduled route. Fired on demand here, the refresh
/// component's hourly cron removes the expired session and nothing else; without the cron
/// secret the route refuses and changes nothing.
#[tokio::test]
async fn the_scheduler_role_fires_a_components_crons_through_its_scheduled_route() {
    let h = Host::start_component("refresh");
    let p = h.create_project(false).await;
    let long = h.user_with_session(&p, json!({})).await;
    h.create_session(&p, &long.user_id, json!({ "expires_in_millis": 1000 })).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let sessions = || h.db_query("SELECT count(*) FROM refresh_tokens WHERE user_id = ?", &[&long.user_id]);
    assert_eq!(sessions(), vec![vec!["2".to_string()]]);

    for authorization in [None, Some("Bearer not-the-cron-secret")] {
        let mut call = h.post("/api/v1/internal/scheduled/refresh?cron=17+*+*+*+*");
        if let Some(value) = authorization {
            call = call.header("authorization", value);
        }
        assert_eq!(call.send().await.status, 401);
    }
    assert_eq!(sessions(), vec![vec!["2".to_string()]], "a refused trigger changes nothing");

    let scheduler = Host::serve(&["--role", "scheduler", "--function-url", &h.base_url, "--test-scheduled"], &[]);
    let health = scheduler.get("/health").send().await.json();
    assert_eq!(health["roles"], json!(["scheduler"]), "{health}");
    let res = scheduler.get("/__scheduled?cron=17+*+*+*+*").send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(sessions(), vec![vec!["1".to_string()]], "the expired session is gone, the other stays");
    let res = scheduler.get("/__scheduled?cron=0+0+1+1+*").send().await;
    assert_eq!(res.status, 404, "no function has that cron: {}", res.text);
}

#[test]
fn the_spin_build_imports_spin_sqlite_and_variables_and_the_wasi_build_does_not() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/refresh/component");
    let spin = std::fs::read(dir.join("refresh.spin.wasm")).expect("scripts/build-component functions/refresh spin");
    let wasi =
        std::fs::read(dir.join("refresh.spin-wasi.wasm")).expect("scripts/build-component functions/refresh spin-wasi");
    let has = |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    for import in ["spin:sqlite/sqlite", "spin:variables/variables"] {
        assert!(has(&spin, import), "the spin build imports {import}");
        assert!(!has(&wasi, import), "the wasi build does not import {import}");
    }
    assert!(has(&wasi, "wasi:http/handler"), "both export the WASI HTTP handler");
    assert!(has(&spin, "wasi:http/handler"));
}

#[tokio::test]
async fn the_analytics_component_serves_health_and_authenticates_against_its_store() {
    let h = Host::start_component("analytics-query");
    assert_eq!(h.get("/health").send().await.status, 200);
    // The one body cap holds in the WASI adapter too: 413 before anything parses the body.
    let over = "{".repeat(shared::http::MAX_BODY_BYTES + 1);
    let res = h.post("/api/v1/internal/analytics/query").raw_body("application/json", &over).send().await;
    assert_eq!(res.status, 413, "{}", res.text);
    assert_eq!(res.text, format!("Request body too large (max {} bytes)", shared::http::MAX_BODY_BYTES));
    let res = h.post("/api/v1/internal/analytics/query").json(&json!({ "query": "SELECT 1" })).send().await;
    res.assert_known_error(400, "ACCESS_TYPE_REQUIRED");
    // The project lookup runs on the component's own (migrated, empty) SQLite store.
    let res = h
        .post("/api/v1/internal/analytics/query")
        .header("x-stack-access-type", "admin")
        .header("x-stack-project-id", "7d1a0c2e-0000-4000-8000-000000000000")
        .header("x-stack-super-secret-admin-key", "sak_nope")
        .json(&json!({ "query": "SELECT 1" }))
        .send()
        .await;
    res.assert_known_error(400, "CURRENT_PROJECT_NOT_FOUND");
}

/// The metrics component: its store queries on its own SQLite, and the companion's engine over
/// outbound WASI HTTP (a native companion beside it, on the local analytics engine).
#[tokio::test]
async fn the_metrics_component_answers_from_its_store_and_the_companion() {
    let front = api_tests::ClickHouseFront::start();
    let secret = "csk_component_test_secret";
    let companion = Host::launch(api_tests::Launch {
        env: &[("STACK_CLICKHOUSE_URL", &front.url), ("STACK_COMPANION_SECRET", secret)],
        ..Default::default()
    });
    let h = Host::start_component_with(
        "metrics",
        &[("STACK_COMPANION_URL", &companion.base_url), ("STACK_COMPANION_SECRET", secret)],
    );
    assert_eq!(h.get("/health").send().await.status, 200);
    // The internal project exists in every store: its admin may read its metrics.
    let res = h
        .get("/api/v1/internal/metrics")
        .header("x-stack-access-type", "admin")
        .header("x-stack-project-id", "internal")
        .header("x-stack-super-secret-admin-key", &h.internal_admin_key)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!((&body["total_users"], &body["auth_overview"]["mau"]), (&json!(0), &json!(0)));
    assert_eq!(body["daily_active_users"].as_array().map(Vec::len), Some(31));
}

/// The replays component: health, and request authentication against its own store.
#[tokio::test]
async fn the_replays_component_serves_health_and_authenticates_against_its_store() {
    let h = Host::start_component("replays");
    assert_eq!(h.get("/health").send().await.status, 200);
    let res = h.get("/api/v1/internal/session-replays").send().await;
    res.assert_known_error(400, "ACCESS_TYPE_REQUIRED");
    // The internal project's admin lists its (empty) replays from the component's SQLite store.
    let res = h
        .get("/api/v1/internal/session-replays")
        .header("x-stack-access-type", "admin")
        .header("x-stack-project-id", "internal")
        .header("x-stack-super-secret-admin-key", &h.internal_admin_key)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json(), json!({ "items": [], "pagination": { "next_cursor": null } }));
}

/// The MCP component: `tools/list`, and `ask_stack_auth` end to end over wasi:http outbound
/// calls to the (local, recording) model API and docs server, with the call logged in SQLite.
#[tokio::test]
async fn the_mcp_component_lists_its_tool_and_answers_through_the_model() {
    use api_tests::ai_fakes::{fake_docs_mcp, fake_llm, DOCS_SEARCH_TEXT};
    let (llm, docs) = (fake_llm(), fake_docs_mcp());
    let h = Host::start_component_with(
        "mcp",
        &[("STACK_AI_BASE_URL", &format!("{}/v1", llm.url)), ("STACK_DOCS_MCP_URL", &format!("{}/mcp", docs.url))],
    );
    let rpc = |body: serde_json::Value| h.post("/api/internal/mcp").json(&body).send();
    let res = rpc(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" })).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["result"]["tools"][0]["name"], "ask_stack_auth");
    let res = rpc(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "ask_stack_auth",
        "arguments": { "question": "sessions?", "reason": "r", "userPrompt": "p" } } }))
    .await;
    let text = res.json()["result"]["content"][0]["text"].as_str().unwrap_or_default().to_string();
    assert!(text.starts_with(&format!("The tool said: {DOCS_SEARCH_TEXT}")), "{}", res.text);
    assert_eq!(llm.requests().len(), 2);
    assert_eq!(llm.requests()[0].uri, "/v1/chat/completions");
    let mut logged = Vec::new();
    for _ in 0..50 {
        logged = h.db_query("SELECT question, step_count FROM mcp_call_log", &[]);
        if !logged.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(logged, vec![vec!["sessions?".to_string(), "2".to_string()]]);
}

/// A component streams too (wasi:http sends the head, then each chunk as the run writes it):
/// the model's first word arrives while the model still holds the rest back.
#[tokio::test]
async fn the_mcp_component_relays_a_streamed_answer_as_it_comes() {
    let model = api_tests::ai_fakes::StreamingModel::gated();
    let h = Host::start_component_with("mcp", &[("STACK_AI_BASE_URL", &model.url)]);
    model.assert_relayed_by(&h.base_url).await;
}
