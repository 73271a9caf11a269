//! `companion serve`: the companion for production. It runs only the roles it is given —
//! `email-sender` (claims and sends the outbox of an emails function somewhere else),
//! `metrics` (the ClickHouse metrics engine), `scheduler` (fires the crons of functions on a
//! runtime without cron triggers, Spin, through their scheduled routes), `api` (every function
//! over a SQLite file with its own scheduler, for a self-hosted single machine) or `all` (api,
//! email-sender and metrics) — in the production environment unless
//! `STACK_ENVIRONMENT` says otherwise, with no demo project.
//!
//! Every role carries a secret over the wire (the sender's companion secret, the metrics
//! engine's, the cron secret), so plaintext is refused off loopback: a non-loopback listen
//! address needs `--tls-cert`/`--tls-key` (rustls), and a non-loopback `--function-url` needs
//! `https`, unless `--insecure-plaintext` is given.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shared::adapters::system::EnvConfig;
use shared::context::{Config, RoleConfig};

use crate::{host, metrics, sender, AnyResult};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The roles to run (repeat the flag, or `all`).
    #[arg(long = "role", value_enum, required = true)]
    roles: Vec<Role>,
    #[arg(long, default_value = "127.0.0.1:8102")]
    listen: SocketAddr,
    /// The `api` role's folder (its database is `stack-edge.sqlite` inside).
    #[arg(long, default_value = "/var/lib/stack-edge")]
    data_dir: PathBuf,
    /// The `email-sender` and `scheduler` roles: the base URL of the functions they work
    /// through (default for the sender with the `api` role: this companion's own address).
    #[arg(long)]
    function_url: Option<String>,
    /// The sender's wait after an empty claim, in seconds.
    #[arg(long, default_value_t = sender::DEFAULT_POLL.as_secs())]
    poll_seconds: u64,
    /// A PEM certificate chain: serve HTTPS (needs `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plaintext HTTP off loopback (secrets then cross the network in the clear).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Serve `/__scheduled?cron=...`, which fires a trigger now (tests).
    #[arg(long)]
    test_scheduled: bool,
    /// Shut down when standard input closes.
    #[arg(long)]
    exit_on_stdin_close: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Every function over the SQLite store, with the cron scheduler.
    Api,
    /// Sends the outbox of an emails function.
    EmailSender,
    /// The metrics engine.
    Metrics,
    /// Fires the crons of functions on a runtime without cron triggers (Spin).
    Scheduler,
    /// The API, the email sender and the metrics engine.
    All,
}

pub fn serve(args: ServeArgs) -> AnyResult<()> {
    let has = |role| args.roles.contains(&role) || (role != Role::Scheduler && args.roles.contains(&Role::All));
    let (api, email_sender, metrics_role) = (has(Role::Api), has(Role::EmailSender), has(Role::Metrics));
    let scheduler_role = has(Role::Scheduler);
    if scheduler_role && api {
        return Err("the api role schedules its own functions: the scheduler role is for another runtime's".into());
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.insecure_plaintext {
        return Err(format!(
            "refusing plaintext HTTP on {}: its routes take secrets. Give --tls-cert and --tls-key, listen on \
             loopback, or pass --insecure-plaintext",
            args.listen
        )
        .into());
    }
    // Every refusal comes before anything binds or opens.
    let given_function_url = match (&args.function_url, email_sender || scheduler_role, api, &tls) {
        (Some(url), true, _, _) => {
            refuse_plaintext_url(url, args.insecure_plaintext)?;
            Some(url.trim_end_matches('/').to_string())
        }
        (None, true, false, _) => {
            return Err("the email-sender and scheduler roles need --function-url (the functions' base URL)".into())
        }
        (None, true, true, Some(_)) => {
            return Err("with TLS, give the sender --function-url (the API's public https URL)".into())
        }
        _ => None,
    };
    let roles = RoleConfig::load(&EnvConfig)?;
    let secret =
        || roles.companion_secret.clone().ok_or("the email-sender and metrics roles need STACK_COMPANION_SECRET");
    if email_sender || metrics_role {
        secret()?;
    }
    let scheduler = if scheduler_role {
        let cron_secret = roles.cron_secret.clone().ok_or("the scheduler role needs CRON_SECRET")?;
        let url = given_function_url.clone().expect("checked above: the scheduler has a function URL");
        Some(crate::cron::RemoteFunctions::new(url, cron_secret))
    } else {
        None
    };
    let listener = host::bind(args.listen)?;
    let addr = listener.local_addr()?;
    let base_url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });

    let api = if api {
        let config = Config::load(&EnvConfig)?;
        let db_path = args.data_dir.join("stack-edge.sqlite");
        std::fs::create_dir_all(&args.data_dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(tokio::task::LocalSet::new().run_until(crate::prepare_api(&db_path, &config)))?;
        Some(host::Api { db_path, config })
    } else {
        None
    };
    let sender = if email_sender {
        Some(sender::SenderSettings {
            // Without a given URL, the sender works through this companion's own API role.
            function_url: given_function_url.unwrap_or_else(|| base_url.clone()),
            secret: secret()?,
            cron_secret: roles.cron_secret.clone(),
            smtp_allowed_hosts: roles.smtp_allowed_hosts.clone(),
            poll: Duration::from_secs(args.poll_seconds),
        })
    } else {
        None
    };
    let metrics = if metrics_role {
        let settings =
            metrics::EngineSettings::from_config(&roles).ok_or("the metrics role needs STACK_CLICKHOUSE_URL")?;
        apply_analytics_schema(&settings.store)?;
        Some(settings)
    } else {
        None
    };
    let options = host::HostOptions {
        listener,
        tls,
        test_scheduled: args.test_scheduled,
        workers: args.workers.unwrap_or_else(crate::default_workers),
        api,
        metrics,
        sender,
        scheduler,
    };
    // Test harnesses wait for this exact line.
    crate::run_until_stopped(options, args.exit_on_stdin_close, || println!("listening on {base_url}"))
}

/// The metrics role owns the analytics store's schema: it applies it at start (idempotent). An
/// unreachable store is not fatal; `/health` says so.
fn apply_analytics_schema(store: &shared::context::ClickHouseConfig) -> AnyResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let http = shared::adapters::native::ReqwestClient::new();
    let applied = runtime.block_on(shared::analytics::clickhouse::apply_schema(
        &store.admin_client(),
        &http,
        store.external_password.as_deref(),
    ));
    if let Err(e) = applied {
        tracing::warn!(error = %e, "could not apply the analytics schema; continuing without it");
    }
    Ok(())
}

/// Refuses an `http` URL to a host that is not loopback: the sender's secret would cross the
/// network in the clear.
fn refuse_plaintext_url(url: &str, insecure_plaintext: bool) -> AnyResult<()> {
    let parsed = url::Url::parse(url).map_err(|e| format!("--function-url {url:?}: {e}"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || insecure_plaintext => Ok(()),
        "http" => Err(format!(
            "refusing --function-url {url}: plaintext to a non-loopback host would send the companion secret in \
             the clear (use https, or pass --insecure-plaintext)"
        )
        .into()),
        other => Err(format!("--function-url {url}: the scheme {other:?} is not http or https").into()),
    }
}

/// The TLS acceptor of a PEM certificate chain and key (rustls, ring provider).
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> AnyResult<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
