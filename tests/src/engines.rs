//! Real services the suites need, each on a free loopback port with a fresh folder, stopping
//! when the test process ends: the local ClickHouse engine, an SMTP server and an OpenID
//! provider.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::launch::{listening_url, repo_root, Fresh};

/// The local ClickHouse engine: chdb behind `scripts/clickhouse/front.py`, on a free port with
/// a fresh data folder; it stops when the test process ends.
pub struct ClickHouseFront {
    pub url: String,
    _child: Child,
}

impl ClickHouseFront {
    pub fn start() -> ClickHouseFront {
        let cache = std::env::var("STACK_EDGE_CACHE").unwrap_or_else(|_| "/var/cache/stack-edge".into());
        let python = PathBuf::from(cache).join("venv/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
        let Fresh { state, .. } = Fresh::new();
        let mut child = Command::new(python)
            .arg(repo_root().join("scripts/clickhouse/front.py"))
            .args(["--port", "0", "--exit-on-stdin-close", "--path"])
            .arg(state.join("clickhouse"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the ClickHouse front");
        let (url, _output) = listening_url(&mut child, "the ClickHouse front");
        ClickHouseFront { url, _child: child }
    }
}

/// A real SMTP server (aiosmtpd, `scripts/smtp/sink.py`) on a free port, storing what it
/// receives in a fresh folder; it stops when the test process ends.
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    _child: Child,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let cache = std::env::var("STACK_EDGE_CACHE").unwrap_or_else(|_| "/var/cache/stack-edge".into());
        let python = PathBuf::from(cache).join("venv/bin/python");
        let Fresh { state, .. } = Fresh::new();
        let dir = state.join("smtp");
        let mut child = Command::new(python)
            .arg(repo_root().join("scripts/smtp/sink.py"))
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let (address, _output) = listening_url(&mut child, "the SMTP sink");
        let port = address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        SmtpSink { port, dir, _child: child }
    }

    /// The messages received so far, in order (raw text, an `X-Envelope-To` header first).
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.iter().map(|f| std::fs::read_to_string(f).expect("read message")).collect()
    }
}

/// A real OpenID provider (npm `oidc-provider` behind `scripts/oidc/provider.mjs`) on a free
/// port, with one confidential client allowed to return to `redirect_uris`; it stops when the
/// test process ends. [`OpenIdProvider::sign_in_as`] chooses who its automatic login screen
/// signs in (or that it refuses).
pub struct OpenIdProvider {
    /// The issuer: `/auth`, `/token` and `/me` are its endpoints.
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    _child: Child,
}

impl OpenIdProvider {
    pub fn start(redirect_uris: &[String], access_token_ttl_s: u32) -> OpenIdProvider {
        let node_dir =
            PathBuf::from(std::env::var("EDGE_NODE").unwrap_or_else(|_| "/var/cache/stack-edge/node".into()));
        let modules = node_dir.join("node_modules");
        assert!(modules.join("oidc-provider").exists(), "oidc-provider is missing: run scripts/setup-edge");
        let (client_id, client_secret) = ("stack-edge-test".to_string(), format!("secret-{}", std::process::id()));
        let mut child = Command::new(modules.join(".bin/node"))
            .arg(repo_root().join("scripts/oidc/provider.mjs"))
            .arg("--modules")
            .arg(&modules)
            .args(["--client-id", &client_id, "--client-secret", &client_secret])
            .args(["--access-token-ttl", &access_token_ttl_s.to_string()])
            .args(redirect_uris)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OpenID provider");
        let (url, _output) = listening_url(&mut child, "the OpenID provider");
        OpenIdProvider { url, client_id, client_secret, _child: child }
    }

    /// The next sign-in at the provider is as this account (`{sub, email, email_verified,
    /// name}`), or is refused with `{"deny": true}`.
    pub async fn sign_in_as(&self, account: &serde_json::Value) {
        let res = reqwest::Client::new()
            .put(format!("{}/test/account", self.url))
            .json(account)
            .send()
            .await
            .expect("reach the OpenID provider");
        assert_eq!(res.status(), 204);
    }
}
