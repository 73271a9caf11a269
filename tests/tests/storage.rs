//! Secrets at rest: the database files never hold a refresh token or an API key in plaintext.

use api_tests::Host;
use serde_json::json;

fn sha256_hex(text: &str) -> String {
    // The test computes the hash on its own so it does not trust the code under test.
    use std::process::Command;
    let out = Command::new("sha256sum")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out.expect("sha256sum");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn the_database_never_holds_a_token_or_key_in_plaintext() {
    let h = Host::start(&[]);
    let p = h.create_project(false).await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let s = h.user_with_session(&p, json!({ "display_name": "Secretive" })).await;
        let res =
            h.post("/api/v1/auth/sessions/current/refresh").client(&p).refresh_token(&s.refresh_token).send().await;
        assert_eq!(res.status, 200);
        sessions.push(s);
    }
    // Read the main file and the write-ahead log: recent writes may live only in the WAL.
    let db = h.db_path().unwrap();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        if let Ok(b) = std::fs::read(&path) {
            bytes.extend(b);
        }
    }
    let mut secrets =
        vec![&p.publishable_client_key, &p.secret_server_key, &p.super_secret_admin_key, &h.internal_admin_key];
    secrets.extend(sessions.iter().map(|s| &s.refresh_token));
    for secret in &secrets {
        assert!(!contains(&bytes, secret), "a secret is stored in plaintext");
    }
    // The files were really read: the hashes are there, and so is ordinary data.
    assert!(contains(&bytes, "Secretive"));
    for s in &sessions {
        assert!(contains(&bytes, &sha256_hex(&s.refresh_token)), "the refresh token's hash is stored");
    }
    assert!(contains(&bytes, &sha256_hex(&p.secret_server_key)));
}
