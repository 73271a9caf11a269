//! The native host as a developer meets it: the printed curl line, graceful shutdown, data that
//! survives a restart, and the project CLI. Each test starts its own host.

use std::path::PathBuf;
use std::process::Command;

use api_tests::{companion_bin, Host, Launch, Project};
use serde_json::{json, Value};

fn fresh_dir(name: &str) -> PathBuf {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).unwrap();
    let dir = std::env::temp_dir().join("stack-edge-tests").join(format!(
        "host-{}-{name}-{:02x}{:02x}{:02x}{:02x}",
        std::process::id(),
        bytes[0],
        bytes[1],
        bytes[2],
        bytes[3]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The curl commands the host printed, each joined as a shell would read it.
fn printed_curls(output: &[String]) -> Vec<String> {
    let mut commands = Vec::new();
    let mut lines = output.iter().map(|l| l.trim());
    while let Some(line) = lines.next() {
        if !line.starts_with("curl ") {
            continue;
        }
        let mut command = String::new();
        let mut line = line;
        loop {
            let Some(part) = line.strip_suffix('\\') else {
                command.push_str(line);
                break;
            };
            command.push_str(part);
            line = lines.next().unwrap_or_default();
        }
        commands.push(command);
    }
    commands
}

/// The host's output once its instructions are printed (the reader thread collects them).
async fn instructions(host: &Host) -> Vec<String> {
    let mut output = host.output();
    for _ in 0..100 {
        if output.iter().any(|l| l.contains("analytics/query")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        output = host.output();
    }
    output
}

fn run_curl(curl: &str) -> Value {
    let out = Command::new("sh").arg("-c").arg(curl).output().expect("run curl");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test]
async fn the_printed_curl_line_works_when_pasted() {
    let host = Host::launch(Launch { demo: true, data_dir: Some(fresh_dir("demo")), ..Launch::default() });
    let curls = printed_curls(&instructions(&host).await);
    let user = run_curl(&curls[0]);
    assert_eq!(user["display_name"], "Ada");
    assert!(user["id"].is_string());
}

/// On first start the demo project gets a little traffic through the API (three users with
/// sessions, their browsers' page views and a click, an email), so the two printed curl lines
/// for the metrics and the analytics events answer with real numbers.
#[tokio::test]
async fn the_demo_project_starts_with_traffic_the_printed_curls_show() {
    let front = api_tests::ClickHouseFront::start();
    let host = Host::launch(Launch {
        demo: true,
        data_dir: Some(fresh_dir("demo-traffic")),
        env: &[("STACK_CLICKHOUSE_URL", &front.url), ("STACK_METRICS_CACHE_SECONDS", "0")],
        ..Launch::default()
    });
    let curls = printed_curls(&instructions(&host).await);
    assert_eq!(curls.len(), 3, "{curls:?}");
    let mut metrics = run_curl(&curls[1]);
    for _ in 0..100 {
        let page_views: i64 = metrics["analytics_overview"]["daily_page_views"]
            .as_array()
            .map_or(0, |d| d.iter().map(|p| p["activity"].as_i64().unwrap_or(0)).sum());
        if metrics["total_users"] == 3 && page_views == 3 && metrics["email_overview"]["total_emails"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        metrics = run_curl(&curls[1]);
    }
    assert_eq!(metrics["total_users"], 3, "{metrics}");
    assert_eq!(metrics["email_overview"]["total_emails"], 1, "{metrics}");
    assert_eq!(metrics["analytics_overview"]["visitors"], 3, "{metrics}");
    let events = run_curl(&curls[2]);
    let rows = events["result"].as_array().expect("rows");
    let count = |event_type: &str| {
        rows.iter()
            .find(|r| r["event_type"] == event_type)
            .and_then(|r| r["count()"].as_str().or(r["count()"].as_u64().map(|_| "")).map(str::to_string))
    };
    assert!(count("$page-view").is_some() && count("$click").is_some(), "{events}");
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_a_restart_keeps_every_session() {
    let dir = fresh_dir("restart");
    let mut first = Host::launch(Launch { data_dir: Some(dir.clone()), ..Launch::default() });
    let project = first.create_project(false).await;
    let session = first.user_with_session(&project, json!({ "display_name": "Persistent" })).await;
    let status = first.terminate();
    assert!(status.success(), "exit status {status:?}");

    let second = Host::launch(Launch { data_dir: Some(dir), ..Launch::default() });
    let res = second
        .post("/api/v1/auth/sessions/current/refresh")
        .client(&project)
        .refresh_token(&session.refresh_token)
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    // The same server secret: the old access token still authenticates.
    let me = second.get("/api/v1/users/me").client(&project).access_token(&session.access_token).send().await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["display_name"], "Persistent");
}

fn cli(dir: &PathBuf, args: &[&str]) -> Value {
    let out = Command::new(companion_bin())
        .arg("project")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run companion");
    assert!(out.status.success(), "companion project {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn project_from(v: &Value, id: &str) -> Project {
    let text = |k: &str| v[k].as_str().unwrap().to_string();
    Project {
        id: id.to_string(),
        publishable_client_key: text("publishable_client_key"),
        secret_server_key: text("secret_server_key"),
        super_secret_admin_key: text("super_secret_admin_key"),
    }
}

#[tokio::test]
async fn projects_and_key_sets_from_the_cli_work_on_the_host() {
    let dir = fresh_dir("cli");
    let created = cli(&dir, &["create", "--name", "From the CLI"]);
    let id = created["project_id"].as_str().unwrap().to_string();
    let more = cli(&dir, &["add-keys", "--project-id", &id]);
    assert_eq!(more["project_id"], id.as_str());
    let missing = Command::new(companion_bin())
        .args(["project", "add-keys", "--project-id", "7d1a0c2e-0000-4000-8000-000000000000", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!missing.status.success(), "an unknown project is an error");

    let host = Host::launch(Launch { data_dir: Some(dir), ..Launch::default() });
    for project in [project_from(&created, &id), project_from(&more, &id)] {
        let res = host.post("/api/v1/users").server(&project).json(&json!({})).send().await;
        assert_eq!(res.status, 201, "{}", res.text);
        let res = host.get("/api/v1/auth/sessions?user_id=me").admin(&project).send().await;
        res.assert_known_error(400, "CANNOT_GET_OWN_USER_WITHOUT_USER");
    }
}

/// `companion project seed-demo` writes the demo payments config; the rendered config has the
/// team-scoped products, and an unrelated environment write afterwards succeeds (the seed PR's
/// failure mode).
#[tokio::test]
async fn the_seeded_demo_payments_config_is_consistent() {
    let dir = fresh_dir("seed");
    let created = cli(&dir, &["create", "--name", "Seeded"]);
    let id = created["project_id"].as_str().unwrap().to_string();
    let seeded = cli(&dir, &["seed-demo", "--project-id", &id]);
    assert_eq!(seeded["seeded"], id.as_str());
    let host = Host::launch(Launch { data_dir: Some(dir), ..Launch::default() });
    let project = project_from(&created, &id);
    let res = host.get("/api/v1/internal/config").admin(&project).send().await;
    let config: serde_json::Value = serde_json::from_str(res.json()["config_string"].as_str().unwrap()).unwrap();
    for product in ["starter", "growth", "regression-addon"] {
        assert_eq!(config["payments"]["products"][product]["customerType"], "team", "{product}");
    }
    assert_eq!(config["payments"]["testMode"], true);
    let res = host
        .request("PATCH", "/api/v1/internal/config/override/environment")
        .admin(&project)
        .json(&json!({ "config_override_string": "{\"teams.allowClientTeamCreation\": true}" }))
        .send()
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let source = host.get("/api/v1/internal/config/source").admin(&project).send().await.json();
    assert_eq!(source["source"]["type"], "pushed-from-github");
}

#[tokio::test]
async fn the_internal_endpoint_adds_key_sets_and_old_keys_keep_working() {
    let host = Host::start(&[]);
    let p = host.create_project(false).await;
    let internal = |call: api_tests::Call| {
        call.header("x-stack-access-type", "admin")
            .header("x-stack-project-id", "internal")
            .header("x-stack-super-secret-admin-key", &host.internal_admin_key)
    };
    let res = internal(host.post(&format!("/api/v1/internal/projects/{}/key-sets", p.id)))
        .json(&json!({ "description": "rotation" }))
        .send()
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let rotated = project_from(&res.json(), &p.id);
    for keys in [&p, &rotated] {
        let res = host.post("/api/v1/users").server(keys).json(&json!({})).send().await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    let res =
        internal(host.post("/api/v1/internal/projects/7d1a0c2e-0000-4000-8000-000000000000/key-sets")).send().await;
    assert_eq!(res.status, 404);
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_any_handler_and_writes_nothing() {
    let host = Host::start(&[]);
    let p = host.create_project(false).await;
    let before = host.db_snapshot();
    let big = format!("{{\"display_name\":\"{}\"}}", "x".repeat(17 * 1024 * 1024));
    let res = host.post("/api/v1/users").server(&p).raw_body("application/json", &big).send().await;
    assert_eq!(res.status, 413);
    assert_eq!(host.db_snapshot(), before);
}

/// The native host counts analytics events it could not write (shown on `/health`).
#[tokio::test]
async fn an_analytics_outage_never_fails_a_refresh_and_the_loss_is_counted() {
    // Nothing listens on port 9 (discard) here: every event write fails.
    let h = Host::start(&[("STACK_CLICKHOUSE_URL", "http://127.0.0.1:9")]);
    let p = h.create_project(false).await;
    let s = h.user_with_session(&p, json!({})).await;
    let res = h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mut lost = 0;
    for _ in 0..50 {
        lost = h.get("/health").send().await.json()["analytics_events_lost"].as_u64().unwrap();
        if lost >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Two mints (sign-up session, refresh), two events each.
    assert_eq!(lost, 4, "both mints' events are counted as lost");
}

/// `companion serve --role metrics` over TLS (a self-signed certificate made here): it serves
/// the metrics engine behind its secret and nothing else, and its `/health` names that one role
/// and the engine's state. Plaintext off loopback is refused before anything binds.
#[tokio::test]
async fn serve_runs_only_its_roles_over_tls_and_refuses_plaintext_off_loopback() {
    let secret = "csk_test_serve_metrics_over_tls_0001";
    for (args, refusal) in [
        (vec!["--role", "metrics", "--listen", "0.0.0.0:0"], "refusing plaintext HTTP on 0.0.0.0"),
        (vec!["--role", "email-sender", "--function-url", "http://10.1.2.3:8787"], "refusing --function-url"),
        (vec!["--role", "email-sender"], "need --function-url"),
    ] {
        let out = Command::new(companion_bin())
            .arg("serve")
            .args(&args)
            .env("STACK_COMPANION_SECRET", secret)
            .env("STACK_CLICKHOUSE_URL", "http://127.0.0.1:9")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(refusal), "{args:?}: {stderr}");
    }

    let front = api_tests::ClickHouseFront::start();
    let dir = fresh_dir("tls");
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let metrics = Host::serve(
        &["--role", "metrics", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
        &[("STACK_COMPANION_SECRET", secret), ("STACK_CLICKHOUSE_URL", &front.url)],
    );
    assert!(metrics.base_url.starts_with("https://127.0.0.1:"), "{}", metrics.base_url);
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
    let get = |path: &str| client.get(format!("{}{path}", metrics.base_url));

    let health: Value = get("/health").send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "roles": ["metrics"], "analytics_engine": "ok", "status": "ok" }));
    let query = "/__companion/metrics?project_id=p&branch_id=main&include_anonymous=false&now_ms=1796000000000";
    let answer = get(query).header("x-stack-companion-secret", secret).send().await.unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert_eq!(get(query).send().await.unwrap().status(), 401);
    for other in ["/api/v1/users", "/api/v1/internal/email-queue-step", "/api/v1/internal/email-sender/claim"] {
        assert_eq!(get(other).send().await.unwrap().status(), 404, "{other}");
    }
    let plaintext = reqwest::get(metrics.base_url.replace("https://", "http://") + "/health").await;
    assert!(plaintext.is_err() || !plaintext.unwrap().status().is_success(), "no plaintext answer on the TLS port");
}

/// `companion serve --role all`, the single-machine shape: no demo project, every role, and a
/// `/health` that says the store and the analytics engine answer.
#[tokio::test]
async fn serve_all_runs_every_role_without_a_demo_project() {
    let front = api_tests::ClickHouseFront::start();
    let dir = fresh_dir("serve-all");
    let server_secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [7u8; 32]);
    let host = Host::serve(
        &["--role", "all", "--data-dir", dir.to_str().unwrap()],
        &[
            ("STACK_SERVER_SECRET", &server_secret),
            ("STACK_COMPANION_SECRET", "csk_test_serve_all_roles_00000001"),
            ("STACK_CLICKHOUSE_URL", &front.url),
        ],
    );
    let health = host.get("/health").send().await;
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["roles"], json!(["api", "metrics", "email-sender"]), "{health}");
    assert_eq!(
        (&health["store"], &health["analytics_engine"], &health["status"]),
        (&json!("ok"), &json!("ok"), &json!("ok"))
    );
    assert!(!host.output().iter().any(|l| l.contains("Demo project")), "{:?}", host.output());
    let projects = rusqlite::Connection::open(dir.join("stack-edge.sqlite"))
        .unwrap()
        .query_row("SELECT count(*) FROM projects WHERE id <> 'internal'", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(projects, 0, "no demo project");
}
