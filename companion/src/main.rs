//! `companion`: Stack Edge's native process.
//!
//! - `companion dev`: hosts every function on one port over the embedded SQLite store; runs
//!   migrations, seeds a demo project on first start and prints how to call it.
//! - `companion project create` / `project add-keys`: create a project or a key set and print
//!   the keys (shown once).
//! - `companion bench-metrics`: the metrics engine against upstream's OLD MAU shape.
//!
//! - `companion serve --role ...`: the roles for production (`serve.rs`): the email sender, the
//!   metrics engine, the API.
//!
//! `dev` runs every role: the API, the metrics engine (`/__companion/...`), the cron
//! scheduler, and the email sender working through its own emails function.

mod cron;
mod demo;
mod devdata;
mod host;
mod metrics;
mod sender;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use clap::{Parser, Subcommand};
use tokio::sync::watch;

use shared::adapters::native::LocalBackground;
use shared::adapters::sqlite::SqliteWriter;
use shared::identity::projects::{create_key_set, create_project, ensure_internal_project, NewProject};

#[derive(Parser)]
#[command(name = "companion", about = "Stack Edge native companion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function on one port over the embedded SQLite store.
    Dev(DevArgs),
    /// Run the given roles for production (email sender, metrics engine, the API).
    Serve(serve::ServeArgs),
    /// Benchmark the metrics engine against upstream's OLD MAU shape (see scripts/bench-metrics).
    BenchMetrics(metrics::bench::BenchArgs),
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
}

#[derive(clap::Args)]
struct DevArgs {
    #[arg(long, default_value = "127.0.0.1:8102")]
    listen: SocketAddr,
    /// Where the database and the development credentials live.
    #[arg(long, default_value = ".stack-edge")]
    data_dir: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Do not create the demo project on first start.
    #[arg(long)]
    no_demo: bool,
    /// Serve `/__scheduled?cron=...` to fire a cron trigger on demand (as `wrangler dev
    /// --test-scheduled` does).
    #[arg(long)]
    test_scheduled: bool,
    /// Shut down when standard input closes (test harnesses use this so a host never
    /// outlives the process that started it).
    #[arg(long)]
    exit_on_stdin_close: bool,
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project with a `main` branch and a key set; prints the keys once, as JSON.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        require_publishable_client_key: bool,
        #[arg(long, default_value = ".stack-edge")]
        data_dir: PathBuf,
    },
    /// Write the preview dummy payments config (team-scoped product lines, products and items)
    /// to a project's branch and environment overrides.
    SeedDemo {
        #[arg(long)]
        project_id: String,
        #[arg(long, default_value = ".stack-edge")]
        data_dir: PathBuf,
    },
    /// Add a key set (all three keys) to a project; prints the keys once, as JSON.
    AddKeys {
        #[arg(long)]
        project_id: String,
        #[arg(long, default_value = "Created with the companion CLI")]
        description: String,
        #[arg(long, default_value = ".stack-edge")]
        data_dir: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match Cli::parse().command {
        Command::Dev(args) => dev(args),
        Command::Serve(args) => serve::serve(args),
        Command::Project { command } => project(command),
        Command::BenchMetrics(args) => metrics::bench::run(args),
    };
    if let Err(e) = result {
        eprintln!("companion: {e}");
        std::process::exit(1);
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

fn dev(args: DevArgs) -> AnyResult<()> {
    let DevArgs { listen, data_dir, workers, no_demo, test_scheduled, exit_on_stdin_close } = args;
    let listener = host::bind(listen)?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let dev = devdata::DevData::open(&data_dir)?;
    let config = dev.config(&base_url)?;
    let db_path = dev.db_path();

    // Migrate and seed before accepting anything.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let demo = runtime.block_on(tokio::task::LocalSet::new().run_until(async {
        let ctx = prepare_api(&db_path, &config).await?;
        let demo = if no_demo { None } else { Some(dev.demo_project(&ctx).await?) };
        AnyResult::Ok(demo)
    }))?;

    // Every role, the sender working through this host's own emails function.
    let roles = dev.roles(&base_url)?;
    let sender = sender::SenderSettings {
        function_url: base_url.clone(),
        secret: roles.companion_secret.clone().expect("the dev config always has a companion secret"),
        cron_secret: roles.cron_secret.clone(),
        smtp_allowed_hosts: roles.smtp_allowed_hosts.clone(),
        poll: sender::DEFAULT_POLL,
    };
    let options = host::HostOptions {
        listener,
        tls: None,
        test_scheduled,
        workers: workers.unwrap_or_else(default_workers),
        api: Some(host::Api { db_path, config }),
        metrics: metrics::EngineSettings::from_config(&roles),
        sender: Some(sender),
        scheduler: None,
    };
    let announce = || {
        // Test harnesses wait for this exact line.
        println!("listening on {base_url}");
        if let Some((demo, new)) = demo {
            devdata::print_instructions(&base_url, &demo, &data_dir);
            if new {
                demo::spawn(base_url.clone(), demo);
            }
        }
    };
    run_until_stopped(options, exit_on_stdin_close, announce)
}

/// The API role's store made ready before anything is served: migrations, the internal
/// project's admin key, and the analytics schema. Returns a context over it.
async fn prepare_api(db_path: &std::path::Path, config: &shared::context::Config) -> AnyResult<shared::Context> {
    let writer = SqliteWriter::open(db_path)?;
    let ctx = host::native_context(&writer, config.clone(), Rc::new(LocalBackground::new()));
    let applied = shared::store::migrations::migrate(ctx.store.as_ref()).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    if let Some(admin_key) = config.internal_admin_key.as_deref() {
        ensure_internal_project(&ctx, admin_key).await?;
    }
    // An unreachable analytics store is not fatal: sessions work without it, and events that
    // cannot be written are logged and counted.
    if let Some(store) = &config.clickhouse {
        let applied = shared::analytics::clickhouse::apply_schema(
            &store.admin_client(),
            ctx.http.as_ref(),
            store.external_password.as_deref(),
        )
        .await;
        if let Err(e) = applied {
            tracing::warn!(error = %e, "could not apply the analytics schema; continuing without it");
        }
    }
    Ok(ctx)
}

/// Serves `options` on a thread of their own, says so with `announce`, and shuts down
/// gracefully on SIGINT, SIGTERM or (when asked) the end of standard input.
fn run_until_stopped(options: host::HostOptions, exit_on_stdin_close: bool, announce: impl FnOnce()) -> AnyResult<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = std::thread::spawn(move || host::serve(options, stop_rx));
    announce();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let stdin_closed = async {
            if exit_on_stdin_close {
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = stdin_closed => tracing::info!("standard input closed: shutting down"),
        }
        std::io::Result::Ok(())
    })?;
    let _ = stop_tx.send(true);
    server.join().map_err(|_| "the server thread panicked")??;
    tracing::info!("stopped");
    Ok(())
}

/// Writes the demo payments config to `project_id`'s main branch (an internal write, as
/// upstream's seed; a unit test keeps the config free of errors and warnings).
async fn seed_demo(ctx: &shared::Context, project_id: &str) -> AnyResult<serde_json::Value> {
    use shared::config::{demo, schema::Level, store};
    let tenancy = shared::identity::tenancy::project_branch(ctx, project_id, "main")
        .await?
        .and_then(|project| project.tenancy)
        .ok_or_else(|| format!("no project {project_id}"))?;
    let as_map = |v: serde_json::Value| v.as_object().cloned().expect("an object");
    let source = demo::seed_source();
    store::save(ctx, &tenancy, Level::Branch, &as_map(demo::payments_branch_override()), Some(&source)).await?;
    store::save(ctx, &tenancy, Level::Environment, &as_map(demo::payments_environment_override()), None).await?;
    Ok(serde_json::json!({ "seeded": project_id }))
}

fn project(command: ProjectCommand) -> AnyResult<()> {
    let data_dir = match &command {
        ProjectCommand::Create { data_dir, .. }
        | ProjectCommand::AddKeys { data_dir, .. }
        | ProjectCommand::SeedDemo { data_dir, .. } => data_dir.clone(),
    };
    let dev = devdata::DevData::open(&data_dir)?;
    let config = dev.config("http://127.0.0.1:8102")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let created = runtime.block_on(tokio::task::LocalSet::new().run_until(async {
        let writer = SqliteWriter::open(&dev.db_path())?;
        let ctx = host::native_context(&writer, config, Rc::new(LocalBackground::new()));
        shared::store::migrations::migrate(ctx.store.as_ref()).await?;
        let created = match command {
            ProjectCommand::Create { name, require_publishable_client_key, .. } => {
                let new = NewProject {
                    display_name: &name,
                    require_publishable_client_key,
                    config_override: serde_json::json!({}),
                };
                serde_json::to_value(create_project(&ctx, new).await?)?
            }
            ProjectCommand::AddKeys { project_id, description, .. } => {
                let created = create_key_set(&ctx, &project_id, &description).await?;
                serde_json::to_value(created.ok_or_else(|| format!("no project {project_id}"))?)?
            }
            ProjectCommand::SeedDemo { project_id, .. } => seed_demo(&ctx, &project_id).await?,
        };
        AnyResult::Ok(created)
    }))?;
    println!("{}", serde_json::to_string_pretty(&created)?);
    Ok(())
}
