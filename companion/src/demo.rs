//! The demo project's first traffic, made once when `dev` creates it: three users with a
//! session each, page views and a click from their browsers, and an email — all through the
//! HTTP API, as apps and browsers make them, so the metrics and analytics endpoints answer
//! with something real on first start. A failure is logged; the host keeps serving.

use serde_json::{json, Value};

use shared::identity::projects::CreatedProject;

/// Makes the traffic against the host at `base_url` (on a thread of its own).
pub fn spawn(base_url: String, demo: CreatedProject) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        if let Err(e) = runtime.block_on(traffic(&base_url, &demo)) {
            tracing::warn!(error = %e, "the demo project's first traffic failed");
        }
    });
}

async fn traffic(base_url: &str, demo: &CreatedProject) -> Result<(), String> {
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, access: &str, body: Value| {
        let mut request = http
            .request(method, format!("{base_url}/api/v1{path}"))
            .header("x-stack-project-id", &demo.project_id)
            .header("x-stack-access-type", access)
            .header("content-type", "application/json")
            .body(body.to_string());
        if access == "server" {
            request = request.header("x-stack-secret-server-key", &demo.keys.secret_server_key);
        }
        request
    };
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&text).map_err(|e| format!("{status}: {e}: {text}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{status}: {body}"))
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for (n, (name, referrer)) in
        [("Ada", "https://search.example/"), ("Grace", "https://news.example/"), ("Linus", "")].into_iter().enumerate()
    {
        let email = format!("{}@demo.example", name.to_lowercase());
        let user = send(call(
            reqwest::Method::POST,
            "/users",
            "server",
            json!({ "display_name": name, "primary_email": email }),
        ))
        .await?;
        let user_id = user["id"].as_str().ok_or("a user without an id")?;
        let session =
            send(call(reqwest::Method::POST, "/auth/sessions", "server", json!({ "user_id": user_id }))).await?;
        let token = session["access_token"].as_str().ok_or("a session without an access token")?;
        let mut events = vec![json!({ "event_type": "$page-view", "event_at_ms": now - 60_000,
                                      "data": { "url": "http://localhost:3000/", "path": "/", "referrer": referrer, "title": "Home" } })];
        if n == 0 {
            events.push(json!({ "event_type": "$click", "event_at_ms": now - 30_000, "data": { "selector": "button#sign-up" } }));
        }
        let batch_id = shared::identity::crypto::new_uuid(&shared::adapters::system::OsRandom);
        let batch = json!({ "batch_id": batch_id, "sent_at_ms": now, "events": events });
        send(
            call(reqwest::Method::POST, "/analytics/events/batch", "client", batch)
                .header("x-stack-access-token", token),
        )
        .await?;
    }
    let email = json!({ "to": { "type": "custom-emails", "emails": ["ada@demo.example"] },
                        "tsx_source": "<title>Welcome to the demo</title><p>Hello from Stack Edge.</p>" });
    send(call(reqwest::Method::POST, "/emails/outbox", "server", email)).await?;
    tracing::info!("the demo project got its first traffic: 3 users, page views, a click, an email");
    Ok(())
}
