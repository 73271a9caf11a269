//! Launching the host under test: the native companion, `wrangler dev --local` with the
//! Workers, or a component on `wasmtime serve`, each with fresh state on a free port; and the
//! host's own helpers (projects, sessions, reading its store).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::client::{Call, Project, UserSession};

/// A running host under test.
pub struct Host {
    pub base_url: String,
    pub internal_admin_key: String,
    /// The data folder of a native host (database file inside); `None` for external hosts.
    pub data_dir: Option<PathBuf>,
    output: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
    /// From starting the server process to its first 200 on `/health`.
    pub startup: std::time::Duration,
    /// `STACK_COMPANION_SECRET` of the host's functions (the email sender routes require it).
    pub companion_secret: String,
    /// The native companion a Cloudflare host's metrics Worker talks to. Held, not used: it
    /// exits when its standard input closes, which dropping it would do.
    _companion: Option<Box<Host>>,
    /// The sender companion of a Cloudflare host ([`Host::start_with_sender`]); a native host
    /// sends with its own.
    sender: Option<Box<Host>>,
}

/// The host shared by the tests of one test binary (started on first use).
pub fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::start(&[]))
}

/// Which runtime the suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Native,
    Cloudflare,
    /// `spin up` with the project's `spin.toml`: every function's `spin` build, `spin:sqlite`
    /// and `spin:variables`.
    Spin,
}

pub fn runtime() -> Runtime {
    match std::env::var("STACK_EDGE_RUNTIME").as_deref() {
        Ok("cloudflare") => Runtime::Cloudflare,
        Ok("spin") => Runtime::Spin,
        Ok("native") | Err(_) => Runtime::Native,
        Ok(other) => panic!("STACK_EDGE_RUNTIME={other}: expected native, cloudflare or spin"),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("random");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where the `companion` binary of this build is: next to the test binary's `deps` folder.
pub fn companion_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("STACK_EDGE_COMPANION_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target profile folder");
    let bin = dir.join("companion");
    assert!(bin.exists(), "{} is missing: build it first (cargo build -p companion)", bin.display());
    bin
}

/// How to start a native host.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// Use this data folder and the credentials `companion dev` keeps there, instead of a fresh
    /// folder with a secret and admin key chosen by the test.
    pub data_dir: Option<PathBuf>,
    /// Let the host create its demo project (off by default in tests).
    pub demo: bool,
    /// Serve `/__scheduled?cron=...`, which fires a cron trigger on demand.
    pub test_scheduled: bool,
    /// Run this companion binary instead of [`companion_bin`] (a benchmark's baseline build).
    pub bin: Option<PathBuf>,
}

impl Host {
    /// Starts a host of the selected runtime with fresh state and extra configuration.
    pub fn start(env: &[(&str, &str)]) -> Host {
        match runtime() {
            Runtime::Native => Host::launch(Launch { env, ..Launch::default() }),
            Runtime::Cloudflare => Host::start_cloudflare(env, WORKER_CONFIGS, false),
            Runtime::Spin => Host::start_spin(env),
        }
    }

    /// `spin up` of the whole application (`spin.toml`, the components `scripts/build-component
    /// <crate> spin` built) with fresh state: `env` becomes Spin variables
    /// (`SPIN_VARIABLE_<NAME>`; a name `spin.toml` does not declare is not seen).
    pub fn start_spin(env: &[(&str, &str)]) -> Host {
        let tools = std::env::var("EDGE_TOOLS").unwrap_or_else(|_| "/var/cache/stack-edge/tools".into());
        let spin = Path::new(&tools).join("bin/spin");
        assert!(spin.exists(), "{} is missing: run scripts/setup-edge", spin.display());
        let fresh = Fresh::new();
        let (state, internal_admin_key) = (fresh.state.clone(), fresh.internal_admin_key.clone());
        let port = free_port();
        // The suites' services (OpenID provider, model, docs, Emailable) run on loopback http.
        let loopback = [("DEVELOPMENT_HTTP_HOST", "http://127.0.0.1:*")];
        let (variables, companion_secret, companion) = Host::edge_variables(&fresh, port, &loopback, env);
        let mut args: Vec<String> = variables.iter().map(|(k, v)| format!("SPIN_VARIABLE_{k}={v}")).collect();
        args.push(spin.display().to_string());
        args.extend(["up".into(), "-f".into(), repo_root().join("spin.toml").display().to_string()]);
        args.extend([
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--state-dir".into(),
            state.display().to_string(),
        ]);
        // Spin compiles every component at start: tens of seconds on two cores.
        let host = Host::run_until_healthy("env", &args, port, internal_admin_key, state, Duration::from_secs(180))
            .unwrap_or_else(|e| panic!("{e}"));
        Host { _companion: companion, companion_secret, ..host }
    }

    /// A host that sends email: natively the host itself (its sender works through its own
    /// emails function); on Cloudflare the Workers plus a sender companion
    /// (`companion serve --role email-sender`) working through them. Either way
    /// [`Host::sender_url`] serves the cron route that runs a pass on demand, and `env` reaches
    /// both the functions and the sender.
    pub fn start_with_sender(env: &[(&str, &str)]) -> Host {
        match runtime() {
            Runtime::Native => Host::start(env),
            Runtime::Cloudflare | Runtime::Spin => {
                let host = Host::start(env);
                let sender = host.start_sender(env);
                Host { sender: Some(Box::new(sender)), ..host }
            }
        }
    }

    /// Where this host's sender serves the cron route (`/api/v1/internal/email-queue-step`).
    pub fn sender_url(&self) -> &str {
        self.sender.as_ref().map_or(&self.base_url, |s| &s.base_url)
    }

    /// A sender companion (`companion serve --role email-sender`) working through this host's
    /// emails function. It polls only hourly: tests run its passes on demand through its cron
    /// route.
    pub fn start_sender(&self, env: &[(&str, &str)]) -> Host {
        let mut env = env.to_vec();
        env.push(("STACK_COMPANION_SECRET", &self.companion_secret));
        self.start_sender_with(&env, 3600)
    }

    /// [`Host::start_sender`] with exactly `env` (a test chooses the secret it presents),
    /// polling every `poll_seconds`.
    pub fn start_sender_with(&self, env: &[(&str, &str)], poll_seconds: u64) -> Host {
        let poll = poll_seconds.to_string();
        let args =
            ["--role", "email-sender", "--workers", "1", "--poll-seconds", &poll, "--function-url", &self.base_url];
        let sender = Host::serve(&args, env);
        Host { companion_secret: self.companion_secret.clone(), ..sender }
    }

    /// `companion serve <args>` on a free loopback port (unless `args` name `--listen`), with
    /// `env` and the test environment; it stops when the test process ends.
    pub fn serve(args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut command = Command::new(companion_bin());
        command.arg("serve").args(args).arg("--exit-on-stdin-close");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let (child, base_url, output, startup) = spawn_companion(command, env, "companion serve");
        Host {
            base_url,
            internal_admin_key: String::new(),
            data_dir: None,
            output,
            child: Some(child),
            startup,
            companion_secret: String::new(),
            _companion: None,
            sender: None,
        }
    }

    /// A host that serves `/__scheduled?cron=...`, after `prepare` ran against it. On
    /// Cloudflare, `wrangler dev --test-scheduled` fires only the first Worker's scheduled
    /// handler and the first Worker receives every request: `prepare` runs against every
    /// Worker, which then stop, and `function`'s Worker alone serves on the same state.
    pub async fn start_scheduled<T>(function: &str, prepare: impl AsyncFnOnce(&Host) -> T) -> (Host, T) {
        Host::start_scheduled_with(function, &[], prepare).await
    }

    /// [`Host::start_scheduled`] with extra configuration.
    pub async fn start_scheduled_with<T>(
        function: &str,
        env: &[(&str, &str)],
        prepare: impl AsyncFnOnce(&Host) -> T,
    ) -> (Host, T) {
        match runtime() {
            Runtime::Native => {
                let host = Host::launch(Launch { env, test_scheduled: true, ..Launch::default() });
                let prepared = prepare(&host).await;
                (host, prepared)
            }
            Runtime::Cloudflare => {
                let fresh = Fresh::new();
                let every = Host::start_cloudflare_on(&fresh, env, WORKER_CONFIGS, false);
                let prepared = prepare(&every).await;
                every.stop();
                let config = format!("functions/{function}/wrangler.toml");
                (Host::start_cloudflare_on(&fresh, env, &[config.as_str()], true), prepared)
            }
            // Spin has no cron trigger: the companion's scheduler role fires crons (tests/component.rs).
            Runtime::Spin => panic!("scheduled suites do not run on Spin (the README says why)"),
        }
    }

    /// Ends the host and waits until it is gone.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    fn start_cloudflare(env: &[(&str, &str)], configs: &[&str], test_scheduled: bool) -> Host {
        Host::start_cloudflare_on(&Fresh::new(), env, configs, test_scheduled)
    }

    /// `wrangler dev --local` with `configs` (the first receives requests) on `fresh`'s state
    /// and credentials, local D1 migrated.
    fn start_cloudflare_on(fresh: &Fresh, env: &[(&str, &str)], configs: &[&str], test_scheduled: bool) -> Host {
        // wrangler dev sometimes exits at once with "Address already in use" for one of its
        // internal sockets (seen right after another wrangler on the same machine stopped):
        // a start that exits before it is healthy is tried again, on fresh ports.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Host::try_start_cloudflare_on(fresh, env, configs, test_scheduled) {
                Ok(host) => return host,
                Err(e) => {
                    failures.push(e);
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
        panic!("wrangler dev did not start:\n{}", failures.join("\n---\n"))
    }

    /// An edge host's configuration on `port`: `fresh`'s secrets, the test environment, the
    /// public URL, then `extra` and `env`; with them what its functions share with companions:
    /// the companion secret (`env`'s, else a fresh one) that the sender and the metrics engine
    /// present, and, with an analytics store but no `STACK_COMPANION_URL`, a native companion
    /// for the metrics function's engine (kept alive by the returned host).
    fn edge_variables(
        fresh: &Fresh,
        port: u16,
        extra: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> (Vec<(String, String)>, String, Option<Box<Host>>) {
        let mut vars = vec![
            ("STACK_SERVER_SECRET".to_string(), fresh.secret.clone()),
            ("STACK_INTERNAL_ADMIN_KEY".to_string(), fresh.internal_admin_key.clone()),
            ("STACK_ENVIRONMENT".to_string(), "test".to_string()),
            ("NEXT_PUBLIC_STACK_API_URL".to_string(), format!("http://127.0.0.1:{port}")),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let companion_secret = env
            .iter()
            .find(|(k, _)| *k == "STACK_COMPANION_SECRET")
            .map_or_else(|| fresh.companion_secret.clone(), |(_, v)| (*v).to_string());
        vars.push(("STACK_COMPANION_SECRET".to_string(), companion_secret.clone()));
        vars.extend(
            env.iter().filter(|(k, _)| *k != "STACK_COMPANION_SECRET").map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let clickhouse = env.iter().find(|(k, _)| *k == "STACK_CLICKHOUSE_URL").map(|(_, v)| *v);
        let companion = match clickhouse {
            Some(url) if !env.iter().any(|(k, _)| *k == "STACK_COMPANION_URL") => {
                let companion = Host::launch(Launch {
                    env: &[("STACK_CLICKHOUSE_URL", url), ("STACK_COMPANION_SECRET", &companion_secret)],
                    ..Launch::default()
                });
                vars.push(("STACK_COMPANION_URL".into(), companion.base_url.clone()));
                Some(Box::new(companion))
            }
            _ => None,
        };
        (vars, companion_secret, companion)
    }

    fn try_start_cloudflare_on(
        fresh: &Fresh,
        env: &[(&str, &str)],
        configs: &[&str],
        test_scheduled: bool,
    ) -> Result<Host, String> {
        let repo = repo_root();
        let state = fresh.state.clone();
        let internal_admin_key = fresh.internal_admin_key.clone();
        let port = free_port();
        let (vars, companion_secret, companion) = Host::edge_variables(fresh, port, &[], env);
        // `wrangler dev` gives --var only to the first Worker, so each host gets copies of the
        // repository's configs with its own vars (see `host_config`).
        let configs: Vec<PathBuf> = configs.iter().map(|c| host_config(&repo, c, &state, &vars)).collect();
        let d1_config = configs
            .iter()
            .find(|c| std::fs::read_to_string(c).is_ok_and(|t| t.contains("d1_databases")))
            .expect("a config with the D1 database");

        // A fresh state gets the migrated local D1 (a state started before keeps its data).
        if !state.join("v3/d1").exists() {
            copy_dir(&migrated_d1(d1_config).join("v3"), &state.join("v3"));
        }

        let mut args: Vec<String> = ["dev", "--local", "--ip", "127.0.0.1", "--log-level", "warn"]
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        args.extend(["--port".into(), port.to_string()]);
        args.extend(["--inspector-port".into(), free_port().to_string()]);
        args.extend(["--persist-to".into(), state.display().to_string()]);
        for c in &configs {
            args.extend(["-c".to_string(), c.display().to_string()]);
        }
        if test_scheduled {
            args.push("--test-scheduled".into());
        }
        let host =
            Host::run_until_healthy("wrangler", &args, port, internal_admin_key, state, Duration::from_secs(300))?;
        Ok(Host { _companion: companion, companion_secret, ..host })
    }

    /// `wasmtime serve` running a function's WASI component (`<crate>/component/<crate>.spin-wasi.wasm`,
    /// built by `scripts/build-component`), with its embedded SQLite in a fresh preopened folder.
    pub fn start_component(function: &str) -> Host {
        Host::start_component_with(function, &[])
    }

    /// [`Host::start_component`] with extra environment variables.
    pub fn start_component_with(function: &str, env: &[(&str, &str)]) -> Host {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf();
        let component =
            repo.join("functions").join(function).join("component").join(format!("{function}.spin-wasi.wasm"));
        assert!(component.exists(), "{} is missing: run scripts/build-component", component.display());
        let root = std::env::temp_dir().join("stack-edge-tests");
        remove_stale_dirs(&root);
        let state = root.join(format!("host-{}-{}", std::process::id(), random_hex(4)));
        std::fs::create_dir_all(&state).expect("create state dir");
        let internal_admin_key = format!("sak_test_{}", random_hex(20));
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_hex(32));
        let port = free_port();
        let args = vec![
            "serve".to_string(),
            "-Scli".into(),
            "-Sp3".into(),
            "-Wcomponent-model-async".into(),
            "--addr".into(),
            format!("127.0.0.1:{port}"),
            "--dir".into(),
            format!("{}::/data", state.display()),
            "--env".into(),
            format!("STACK_SERVER_SECRET={secret}"),
            "--env".into(),
            format!("STACK_INTERNAL_ADMIN_KEY={internal_admin_key}"),
            "--env".into(),
            "STACK_ENVIRONMENT=test".into(),
            "--env".into(),
            format!("NEXT_PUBLIC_STACK_API_URL=http://127.0.0.1:{port}"),
        ];
        let mut args = args;
        for (key, value) in env {
            args.extend(["--env".to_string(), format!("{key}={value}")]);
        }
        args.push(component.display().to_string());
        Host::run_until_healthy("wasmtime", &args, port, internal_admin_key, state, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `program` (until the test process ends) and waits until its `/health` answers.
    fn run_until_healthy(
        program: &str,
        args: &[String],
        port: u16,
        internal_admin_key: String,
        state: PathBuf,
        limit: Duration,
    ) -> Result<Host, String> {
        let started = std::time::Instant::now();
        let child = stop_with_stdin(program, args, &repo_root());
        let mut host = Host {
            base_url: format!("http://127.0.0.1:{port}"),
            internal_admin_key,
            data_dir: Some(state),
            output: Arc::default(),
            child: Some(child),
            startup: Duration::ZERO,
            companion_secret: String::new(),
            _companion: None,
            sender: None,
        };
        host.collect_output();
        host.wait_until_healthy(limit)?;
        host.startup = started.elapsed();
        Ok(host)
    }

    /// Keeps reading the host's standard output (so it never blocks on a full pipe).
    fn collect_output(&mut self) {
        let stdout = self.child.as_mut().and_then(|c| c.stdout.take()).expect("piped stdout");
        let sink = self.output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
    }

    /// Polls `/health` until it answers 200. An exit before that is an `Err` with the host's
    /// output; no answer within `limit` panics with it.
    fn wait_until_healthy(&mut self, limit: std::time::Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + limit;
        let url = format!("{}/health", self.base_url);
        loop {
            let ok = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                .is_ok_and(|o| o.stdout == b"200");
            if ok {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("the host exited ({status}) before it was healthy:\n{}", self.output().join("\n")));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the host was not healthy in time:\n{}",
                self.output().join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn launch(launch: Launch<'_>) -> Host {
        // A given folder brings its own credentials (dev-credentials.json); otherwise a fresh one.
        let fresh = launch.data_dir.is_none().then(Fresh::new);
        let data_dir = launch.data_dir.or_else(|| fresh.as_ref().map(|f| f.state.clone())).expect("a data folder");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let mut command = Command::new(launch.bin.clone().unwrap_or_else(companion_bin));
        command
            .args(["dev", "--listen", "127.0.0.1:0", "--workers", "2", "--exit-on-stdin-close", "--data-dir"])
            .arg(&data_dir);
        if !launch.demo {
            command.arg("--no-demo");
        }
        if launch.test_scheduled {
            command.arg("--test-scheduled");
        }
        let mut internal_admin_key = None;
        let mut companion_secret = None;
        match fresh {
            Some(fresh) => {
                command
                    .env("STACK_SERVER_SECRET", fresh.secret)
                    .env("STACK_INTERNAL_ADMIN_KEY", &fresh.internal_admin_key)
                    .env("STACK_COMPANION_SECRET", &fresh.companion_secret);
                internal_admin_key = Some(fresh.internal_admin_key);
                companion_secret = Some(fresh.companion_secret);
            }
            None => {
                command
                    .env_remove("STACK_SERVER_SECRET")
                    .env_remove("STACK_INTERNAL_ADMIN_KEY")
                    .env_remove("STACK_COMPANION_SECRET");
            }
        }
        // A secret the test gives wins over both.
        if let Some((_, secret)) = launch.env.iter().find(|(k, _)| *k == "STACK_COMPANION_SECRET") {
            companion_secret = Some((*secret).to_string());
        }
        let (child, base_url, output, startup) = spawn_companion(command, launch.env, "companion dev");
        let saved = |key: &str| {
            let creds: Value = serde_json::from_slice(
                &std::fs::read(data_dir.join("dev-credentials.json")).expect("credentials file"),
            )
            .expect("credentials JSON");
            creds[key].as_str().expect(key).to_string()
        };
        let internal_admin_key = internal_admin_key.unwrap_or_else(|| saved("internal_admin_key"));
        let companion_secret = companion_secret.unwrap_or_else(|| saved("companion_secret"));
        Host {
            base_url,
            internal_admin_key,
            data_dir: Some(data_dir),
            output,
            child: Some(child),
            startup,
            companion_secret,
            _companion: None,
            sender: None,
        }
    }

    /// What the host printed on standard output after its `listening on` line.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the host to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("a native host");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        child.wait().expect("wait for the host")
    }

    /// Kills the host with SIGKILL (no shutdown at all) and waits for it to be gone.
    pub fn kill(&mut self) {
        let child = self.child.as_mut().expect("a native host");
        let _ = Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
        let _ = child.wait();
    }

    pub fn request(&self, method: &str, path: &str) -> Call {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{}", self.base_url, path);
        Call::new(method, url)
    }
    pub fn get(&self, path: &str) -> Call {
        self.request("GET", path)
    }
    /// A GET to this host's sender ([`Host::sender_url`]).
    pub fn sender_get(&self, path: &str) -> Call {
        Call::new(reqwest::Method::GET, format!("{}{}", self.sender_url(), path))
    }
    pub fn post(&self, path: &str) -> Call {
        self.request("POST", path)
    }
    pub fn delete(&self, path: &str) -> Call {
        self.request("DELETE", path)
    }

    /// A new project through the internal endpoint.
    pub async fn create_project(&self, require_publishable_client_key: bool) -> Project {
        self.create_project_with(json!({ "require_publishable_client_key": require_publishable_client_key })).await
    }

    /// A new project with the analytics app enabled (session replays need it).
    pub async fn create_analytics_project(&self) -> Project {
        self.create_project_with(json!({ "config_override": { "apps.installed.analytics.enabled": true } })).await
    }

    /// A new project through the internal endpoint, with `fields` added to the request body.
    pub async fn create_project_with(&self, fields: Value) -> Project {
        let mut body = json!({ "display_name": "Test project" });
        for (k, v) in fields.as_object().expect("fields object") {
            body[k] = v.clone();
        }
        let res = self
            .post("/api/v1/internal/projects")
            .header("x-stack-access-type", "admin")
            .header("x-stack-project-id", "internal")
            .header("x-stack-super-secret-admin-key", &self.internal_admin_key)
            .json(&body)
            .send()
            .await;
        assert_eq!(res.status, 201, "create project: {}", res.text);
        let body = res.json();
        let text = |k: &str| body[k].as_str().expect(k).to_string();
        Project {
            id: text("project_id"),
            publishable_client_key: text("publishable_client_key"),
            secret_server_key: text("secret_server_key"),
            super_secret_admin_key: text("super_secret_admin_key"),
        }
    }

    /// A host whose shared email server is `sink` (the sender companion beside it on workerd).
    pub fn start_with_smtp(sink: &crate::SmtpSink) -> Host {
        let port = sink.port.to_string();
        Host::start_with_sender(&[
            ("STACK_EMAIL_HOST", "127.0.0.1"),
            // Project servers in the suites are local sinks on random ports: the operator allows them.
            ("STACK_SMTP_ALLOWED_HOSTS", "127.0.0.1"),
            ("STACK_EMAIL_PORT", &port),
            ("STACK_EMAIL_SENDER", "noreply@test.example"),
            ("STACK_DEFAULT_EMAIL_CAPACITY_PER_HOUR", "1000000000"),
        ])
    }

    /// One pass of the email queue, as the sender's cron runs it.
    pub async fn run_email_queue(&self) {
        let res = self
            .sender_get("/api/v1/internal/email-queue-step?only_one_step=true")
            .header("authorization", "Bearer mock_cron_secret")
            .send()
            .await;
        assert_eq!((res.status, res.json()), (200, json!({ "ok": true })));
    }

    /// Sets the project's environment config override to `config` (dotted keys), as an admin.
    pub async fn set_environment_config(&self, project: &Project, config: &Value) {
        let res = self
            .request("PATCH", "/api/v1/internal/config/override/environment")
            .admin(project)
            .json(&json!({ "config_override_string": config.to_string() }))
            .send()
            .await;
        assert_eq!(res.status, 200, "set the environment config: {}", res.text);
    }

    /// A user created by the server, and a session for it.
    pub async fn user_with_session(&self, project: &Project, body: Value) -> UserSession {
        let res = self.post("/api/v1/users").server(project).json(&body).send().await;
        assert_eq!(res.status, 201, "create user: {}", res.text);
        let user_id = res.json()["id"].as_str().unwrap().to_string();
        let session = self.create_session(project, &user_id, json!({})).await;
        UserSession { user_id, ..session }
    }

    /// `POST /auth/sessions` as the server.
    pub async fn create_session(&self, project: &Project, user_id: &str, extra: Value) -> UserSession {
        let mut body = json!({ "user_id": user_id });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let res = self.post("/api/v1/auth/sessions").server(project).json(&body).send().await;
        assert_eq!(res.status, 200, "create session: {}", res.text);
        let b = res.json();
        UserSession {
            user_id: user_id.to_string(),
            refresh_token: b["refresh_token"].as_str().unwrap().to_string(),
            access_token: b["access_token"].as_str().unwrap().to_string(),
        }
    }

    /// Every row of every table, as text: equal snapshots mean nothing was written. Only
    /// meaningful while no other test writes to the same host.
    pub fn db_snapshot(&self) -> String {
        self.snapshot_where(None)
    }

    /// The rows that belong to one project (its project, branches, keys, users, sessions and
    /// audit rows). Tests running in parallel write other projects, never this one.
    pub fn project_snapshot(&self, project_id: &str) -> String {
        self.snapshot_where(Some(project_id))
    }

    fn snapshot_where(&self, project_id: Option<&str>) -> String {
        let path = self.db_path().expect("the host's database file");
        let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open database");
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = String::new();
        for table in tables {
            let filter = match (project_id, table.as_str()) {
                (None, _) => "1 = 1",
                (Some(_), "projects") => "id = ?1",
                (Some(_), "tenancies" | "api_key_sets") => "project_id = ?1",
                (Some(_), "users" | "refresh_tokens" | "deleted_rows") => {
                    "tenancy_id IN (SELECT id FROM tenancies WHERE project_id = ?1)"
                }
                (Some(_), _) => continue,
            };
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\" WHERE {filter} ORDER BY rowid")).unwrap();
            let n = stmt.column_count();
            let params: Vec<&str> = project_id.into_iter().collect();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    (0..n)
                        .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            for row in rows {
                out.push_str(&format!("{table}: {}\n", row.unwrap().join(" | ")));
            }
        }
        out
    }

    /// The SQLite file behind the host: the native database (or the component's, in its
    /// preopened folder), or local D1's file under wrangler's state folder.
    /// Runs a read-only query on the host's database file; each row's values as text.
    /// Writes straight into the host's database file, for states the API cannot reach (data
    /// written before a rule existed). Returns the rows changed.
    pub fn db_execute(&self, sql: &str, params: &[&str]) -> usize {
        let path = self.db_path().expect("the host's database file");
        let conn = rusqlite::Connection::open(&path).expect("open database");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        conn.execute(sql, rusqlite::params_from_iter(params)).expect("execute")
    }

    pub fn db_query(&self, sql: &str, params: &[&str]) -> Vec<Vec<String>> {
        let path = self.db_path().expect("the host's database file");
        let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open database");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        stmt.query_map(rusqlite::params_from_iter(params), |r| {
            (0..n)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                        rusqlite::types::Value::Text(t) => t,
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Null => "NULL".into(),
                        other => format!("{other:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    /// How many blobs the host's blob store holds: the `blobs` table natively; on workerd the
    /// local R2 bucket's objects (miniflare keeps each bucket's index in a SQLite file).
    pub fn blob_count(&self) -> usize {
        match runtime() {
            Runtime::Native | Runtime::Spin => {
                self.db_query("SELECT count(*) FROM blobs", &[])[0][0].parse().expect("a count")
            }
            Runtime::Cloudflare => {
                let dir = self.data_dir.as_ref().expect("a data folder").join("v3/r2/miniflare-R2BucketObject");
                let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "sqlite") && !p.display().to_string().contains("metadata")
                    })
                    .map(|p| {
                        let db = rusqlite::Connection::open_with_flags(&p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                            .expect("open the local R2 index");
                        db.query_row("SELECT count(*) FROM _mf_objects", [], |r| r.get::<_, i64>(0)).unwrap_or(0)
                            as usize
                    })
                    .sum()
            }
        }
    }

    pub fn db_path(&self) -> Option<PathBuf> {
        let dir = self.data_dir.as_ref()?;
        match runtime() {
            Runtime::Native => Some(dir.join("stack-edge.sqlite")),
            // The application's `default` spin:sqlite database, shared by every component.
            Runtime::Spin => Some(dir.join("sqlite_db.db")),
            Runtime::Cloudflare => {
                let d1 = dir.join("v3").join("d1").join("miniflare-D1DatabaseObject");
                std::fs::read_dir(d1).ok()?.flatten().map(|e| e.path()).find(|p| {
                    p.extension().is_some_and(|x| x == "sqlite") && !p.display().to_string().contains("metadata")
                })
            }
        }
    }
}

/// Fresh state for one host: a data folder of its own, a server secret, an internal admin key.
pub(crate) struct Fresh {
    pub(crate) state: PathBuf,
    pub(crate) secret: String,
    pub(crate) internal_admin_key: String,
    pub(crate) companion_secret: String,
}

impl Fresh {
    pub(crate) fn new() -> Fresh {
        let root = std::env::temp_dir().join("stack-edge-tests");
        remove_stale_dirs(&root);
        let state = root.join(format!("host-{}-{}", std::process::id(), random_hex(4)));
        std::fs::create_dir_all(&state).expect("create state dir");
        Fresh {
            state,
            secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_hex(32)),
            internal_admin_key: format!("sak_test_{}", random_hex(20)),
            companion_secret: format!("csk_test_{}", random_hex(20)),
        }
    }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf()
}

/// Every `.rs` file below `dir`, for the suites that hold the sources to the docs.
pub fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The Wrangler configs of the router (first: it receives every request) and each function.
const WORKER_CONFIGS: &[&str] = &[
    "wrangler.toml",
    "functions/refresh/wrangler.toml",
    "functions/analytics-query/wrangler.toml",
    "functions/metrics/wrangler.toml",
    "functions/replays/wrangler.toml",
    "functions/config/wrangler.toml",
    "functions/emails/wrangler.toml",
    "functions/mcp/wrangler.toml",
];

/// A copy of a repository Wrangler config for one test host: paths made absolute, the build
/// step dropped (scripts/test builds every Worker first), and the host's vars added.
fn host_config(repo: &Path, config: &str, state: &Path, vars: &[(String, String)]) -> PathBuf {
    let source = repo.join(config);
    let dir = source.parent().expect("config folder");
    let text = std::fs::read_to_string(&source).expect("read wrangler config");
    let mut doc: toml::Table = text.parse().expect("wrangler config is TOML");
    let main = doc["main"].as_str().expect("main").to_string();
    let main = dir.join(main);
    assert!(main.exists(), "{} is missing: build the Workers first (scripts/build-worker)", main.display());
    doc.insert("main".into(), main.display().to_string().into());
    doc.remove("build");
    if let Some(toml::Value::Array(dbs)) = doc.get_mut("d1_databases") {
        for db in dbs {
            let table = db.as_table_mut().expect("d1 table");
            if let Some(m) = table.get("migrations_dir").and_then(|m| m.as_str()).map(|m| dir.join(m)) {
                table.insert("migrations_dir".into(), m.display().to_string().into());
            }
        }
    }
    let table = doc.entry("vars").or_insert_with(|| toml::Table::new().into()).as_table_mut().expect("vars table");
    for (k, v) in vars {
        table.insert(k.clone(), v.clone().into());
    }
    let name = doc["name"].as_str().expect("name").to_string();
    let path = state.join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(&doc).expect("TOML")).expect("write host config");
    path
}

/// A started companion: the child, its URL, what it prints after its `listening on` line, and
/// how long it took to get there.
type Spawned = (Child, String, Arc<Mutex<Vec<String>>>, Duration);

/// Starts a companion `command` in the test environment with `env`, and waits for its
/// `listening on` line.
fn spawn_companion(mut command: Command, env: &[(&str, &str)], what: &str) -> Spawned {
    let started = std::time::Instant::now();
    let mut child = command
        .env("STACK_ENVIRONMENT", "test")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let (base_url, output) = listening_url(&mut child, what);
    (child, base_url, output, started.elapsed())
}

/// Waits for the server's `listening on <url>` line, then keeps reading its standard output in
/// the background (so it never blocks on a full pipe), collecting what it says.
pub(crate) fn listening_url(child: &mut Child, what: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().unwrap_or_else(|| panic!("{what} exited before listening")).expect("read stdout");
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.trim().to_string();
        }
    };
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = output.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (url, output)
}

/// Starts `program` so that it stops when our end of its standard input closes (when the test
/// process ends): a small shell runs it, and a watcher sends it SIGTERM at end of input. The
/// shell exits with the program, so an early exit shows (the watcher is then ended first).
fn stop_with_stdin(program: &str, args: &[String], dir: &Path) -> Child {
    Command::new("sh")
        .arg("-c")
        // A background job's standard input is /dev/null in sh: the watcher reads ours via fd 3.
        .arg(r#"exec 3<&0; program=$1; shift; "$program" "$@" </dev/null 3<&- & pid=$!; (cat <&3 >/dev/null; kill -TERM $pid 2>/dev/null) & watcher=$!; wait $pid; status=$?; kill $watcher 2>/dev/null; exit $status"#)
        .arg("sh")
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// Removes data folders of earlier test processes that are no longer running.
/// A local D1 state with every migration applied, made once per test process from the first
/// host's D1 config (every config names the same database) and copied into each fresh host's
/// state: `wrangler d1 migrations apply` costs about 7 s of CPU, which every host paid before.
fn migrated_d1(d1_config: &Path) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let template = Fresh::new().state.join("d1-template");
        let migrate = Command::new("wrangler")
            .args(["d1", "migrations", "apply", "stack-edge", "--local", "--persist-to"])
            .arg(&template)
            .arg("-c")
            .arg(d1_config)
            .current_dir(repo_root())
            .output()
            .expect("run wrangler (scripts/setup-edge installs it)");
        assert!(
            migrate.status.success(),
            "migrations: {}{}",
            String::from_utf8_lossy(&migrate.stdout),
            String::from_utf8_lossy(&migrate.stderr)
        );
        template
    })
}

/// Copies the folder `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a state folder");
    for entry in std::fs::read_dir(from).expect("read the D1 template").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy the D1 template");
        }
    }
}

fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let pid = name.strip_prefix("host-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
