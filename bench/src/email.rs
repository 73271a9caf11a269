//! `bench-email`: emails per second delivered to a local SMTP server (aiosmtpd), on the
//! runtime `STACK_EDGE_RUNTIME` selects (native by default; `cloudflare`: the emails Worker
//! under `wrangler dev` on local D1). Each run enqueues 2,000 emails through the API, then runs
//! sender passes back to back: through the host's own sender (native: 1 and 4 at once, the
//! figure before senders were separate processes), and through 1, 2 and 4 sender companions
//! (`companion serve --role email-sender`). Natively, also the time of a pass that recovers
//! stuck sends over an outbox of 100,000 rows (1% of them stuck).

use std::time::Instant;

use api_tests::{runtime, Host, Runtime, SmtpSink};
use futures::future::join_all;
use serde_json::json;

const EMAILS: usize = 2_000;
const OUTBOX_ROWS: i64 = 100_000;

async fn run_pass(client: &reqwest::Client, base: &str) {
    let res = client
        .get(format!("{base}/api/v1/internal/email-queue-step?only_one_step=true"))
        .header("authorization", "Bearer mock_cron_secret")
        .send()
        .await
        .expect("queue pass");
    assert!(res.status().is_success(), "{}", res.text().await.unwrap_or_default());
}

/// A host with `EMAILS` emails in its outbox.
async fn filled_host(env: &[(&str, &str)]) -> Host {
    let host = Host::start(env);
    let project = host.create_project(false).await;
    for chunk in (0..EMAILS).collect::<Vec<_>>().chunks(50) {
        join_all(chunk.iter().map(|i| {
            let body = json!({ "to": { "type": "custom-emails", "emails": [format!("user{i}@example.com")] },
                               "tsx_source": "<title>Hi {{ n }}</title><p>Hello {{ n }}</p>", "variables": { "n": i } });
            let call = host.post("/api/v1/emails/outbox").server(&project).json(&body);
            async move { assert_eq!(call.send().await.status, 201) }
        }))
        .await;
    }
    host
}

/// Passes back to back on each sender (each on its own, as a sender's loop runs them) until
/// the sink has every email; seconds taken.
async fn drain(sink: &SmtpSink, senders: &[String]) -> f64 {
    let client = reqwest::Client::new();
    let start = Instant::now();
    join_all(senders.iter().map(|sender| {
        let client = client.clone();
        async move {
            while sink.messages().len() < EMAILS {
                run_pass(&client, sender).await;
                assert!(start.elapsed().as_secs() < 300, "the queue did not drain");
            }
        }
    }))
    .await;
    start.elapsed().as_secs_f64()
}

fn main() {
    let runtime_name = match runtime() {
        Runtime::Native => "native",
        Runtime::Cloudflare => "workerd",
        Runtime::Spin => "spin",
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        println!("| runtime | senders | emails | seconds | emails/s |");
        println!("|---|---|---|---|---|");
        let row = |senders: &str, seconds: f64| {
            println!("| {runtime_name} | {senders} | {EMAILS} | {seconds:.2} | {:.0} |", EMAILS as f64 / seconds);
        };
        let configured = |port: &str| {
            vec![
                ("STACK_EMAIL_HOST", "127.0.0.1".to_string()),
                ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1".to_string()),
                ("STACK_EMAIL_PORT", port.to_string()),
                ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "100000000".to_string()),
            ]
        };
        if runtime() == Runtime::Native {
            for passes in [1usize, 4] {
                let sink = SmtpSink::start();
                let env = configured(&sink.port.to_string());
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let host = filled_host(&env).await;
                let seconds = drain(&sink, &vec![host.base_url.clone(); passes]).await;
                row(&format!("the host's own, {passes} passes at once"), seconds);
            }
        }
        for count in [1usize, 2, 4] {
            let sink = SmtpSink::start();
            let env = configured(&sink.port.to_string());
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let host = filled_host(&env).await;
            let senders: Vec<Host> = (0..count).map(|_| host.start_sender(&env)).collect();
            let urls: Vec<String> = senders.iter().map(|s| s.base_url.clone()).collect();
            let seconds = drain(&sink, &urls).await;
            row(&format!("{count} sender companions"), seconds);
        }
        if runtime() != Runtime::Native {
            return;
        }

        // Recovery over a large outbox: rows written straight into the database.
        let sink = SmtpSink::start();
        let port = sink.port.to_string();
        let host = Host::start(&[("STACK_EMAIL_HOST", "127.0.0.1"), ("STACK_EMAIL_PORT", &port), ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1")]);
        let project = host.create_project(false).await;
        let tenancy = host.db_query("SELECT id FROM tenancies WHERE project_id = ?", &[&project.id])[0][0].clone();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        host.db_execute(
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {OUTBOX_ROWS}) \
                 INSERT INTO email_outbox (tenancy_id, id, tsx_source, recipient, scheduled_at, created_at, updated_at, \
                 rendered_by_worker_id, started_rendering_at, finished_rendering_at, rendered_html, is_queued, \
                 started_sending_at, finished_sending_at, can_have_delivery_info) \
                 SELECT ?1, printf('bench-%08d', i), 'x', '{{}}', ?2, ?2, ?2, 'w', ?2, ?2, 'x', 1, \
                 CASE WHEN i % 100 = 0 THEN ?2 - 1300000 ELSE ?2 END, \
                 CASE WHEN i % 100 = 0 THEN NULL ELSE ?2 END, CASE WHEN i % 100 = 0 THEN NULL ELSE 0 END FROM n"
            ),
            &[&tenancy, &now.to_string()],
        );
        let client = reqwest::Client::new();
        let start = Instant::now();
        run_pass(&client, &host.base_url).await;
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        let failed = host.db_query(
            "SELECT count(*) FROM email_outbox WHERE send_server_error_external_message = ?",
            &[shared::email::STUCK_MESSAGE],
        );
        println!("\n| outbox rows | stuck | recovered | recovery pass ms |");
        println!("|---|---|---|---|");
        println!("| {OUTBOX_ROWS} | {} | {} | {elapsed:.1} |", OUTBOX_ROWS / 100, failed[0][0]);
    });
}
