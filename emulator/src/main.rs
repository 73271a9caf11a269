//! `stack-emulator`: the Stack Auth local emulator's command line (docs/api.md §10.1).
//! `pull` fetches the VM image (a release asset, or a pull request's or workflow run's build)
//! and captures a snapshot; `start` resumes it (or cold-boots); `stop`, `status`, `reset`,
//! `capture`, `list-releases`; `bench` measures resume against cold boot and the ISO writer
//! against xorriso.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use emulator::github::{GitHub, DEFAULT_REPO};
use emulator::progress::Bar;
use emulator::settings::{Paths, Settings};
use emulator::vm::{self, Started, Stopped};

#[derive(Parser)]
#[command(name = "stack-emulator", version, about = "Run Stack Auth locally in a QEMU virtual machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download the emulator image (and capture a snapshot of it for fast starts).
    Pull {
        /// arm64 or amd64 (default: this machine's).
        #[arg(long)]
        arch: Option<String>,
        /// The branch whose latest release to take.
        #[arg(long, default_value = "dev")]
        branch: String,
        /// The release tag (default: emulator-<branch>-latest).
        #[arg(long)]
        tag: Option<String>,
        /// The GitHub repository.
        #[arg(long, default_value = DEFAULT_REPO)]
        repo: String,
        /// Take the image built for this pull request (needs a GitHub token).
        #[arg(long)]
        pr: Option<u64>,
        /// Take the image built by this workflow run (needs a GitHub token; wins over --pr).
        #[arg(long)]
        run: Option<u64>,
        /// Do not capture a snapshot after the download.
        #[arg(long)]
        skip_snapshot: bool,
    },
    /// Start the emulator (pulling the image first when there is none).
    Start {
        #[arg(long)]
        arch: Option<String>,
    },
    /// Boot the image cold and save a snapshot that later starts resume.
    Capture {
        #[arg(long)]
        arch: Option<String>,
    },
    /// Stop the emulator (its data is kept).
    Stop,
    /// Show whether the VM and its services are up (exit 1 if anything is down).
    Status,
    /// Stop the emulator and delete its VM state (images and snapshots are kept).
    Reset,
    /// List the emulator releases of a repository.
    ListReleases {
        #[arg(long, default_value = DEFAULT_REPO)]
        repo: String,
    },
    /// Measure resume against cold boot, and the ISO writer against xorriso.
    Bench {
        #[arg(long)]
        arch: Option<String>,
        /// Runs of each measurement.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn say(line: &str) {
    println!("{line}");
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let paths = Paths::from_env();
    match cli.command {
        Command::Pull { arch, branch, tag, repo, pr, run, skip_snapshot } => {
            let settings = Settings::from_env(arch.as_deref())?;
            pull(&settings, &paths, &repo, &tag.unwrap_or(format!("emulator-{branch}-latest")), pr, run)?;
            if !skip_snapshot {
                let forced = Settings { force_capture: true, ..settings };
                vm::capture(&forced, &paths, &mut say).map_err(|e| e.to_string())?;
            }
        }
        Command::Start { arch } => {
            let settings = Settings::from_env(arch.as_deref())?;
            if !paths.image(settings.arch).exists() {
                say("No emulator image yet: pulling it and capturing a snapshot first.");
                let tag = "emulator-dev-latest";
                pull(&settings, &paths, DEFAULT_REPO, tag, None, None)?;
                vm::capture(&settings, &paths, &mut say).map_err(|e| e.to_string())?;
            }
            let started = vm::start(&settings, &paths, &mut say).map_err(|e| e.to_string())?;
            if started != Started::AlreadyRunning {
                say(&format!("Dashboard: http://127.0.0.1:{}", settings.ports.dashboard));
                say(&format!("Backend:   http://127.0.0.1:{}", settings.ports.backend));
            }
        }
        Command::Capture { arch } => {
            let settings = Settings::from_env(arch.as_deref())?;
            vm::capture(&settings, &paths, &mut say).map_err(|e| e.to_string())?;
        }
        Command::Stop => {
            let settings = Settings::from_env(None)?;
            match vm::stop(&settings, &paths).map_err(|e| e.to_string())? {
                Stopped::NotRunning => say("The emulator is not running."),
                Stopped::PoweredOff => say("The emulator stopped."),
                Stopped::Terminated => say("The emulator did not power off in time and was terminated."),
            }
        }
        Command::Status => {
            let settings = Settings::from_env(None)?;
            let vm_up = vm::running_pid(&paths);
            match vm_up {
                Some(pid) => say(&format!("VM: running (pid {pid})")),
                None => say("VM: stopped"),
            }
            let checks = vm::health(&settings);
            for (name, ok) in &checks {
                say(&format!("{name}: {}", if *ok { "up" } else { "down" }));
            }
            if vm_up.is_none() || checks.iter().any(|(_, ok)| !ok) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Reset => {
            let settings = Settings::from_env(None)?;
            vm::reset(&settings, &paths).map_err(|e| e.to_string())?;
            say("The emulator was reset.");
        }
        Command::ListReleases { repo } => {
            let releases = GitHub::from_env().list_releases(&repo).map_err(|e| e.to_string())?;
            if releases.is_empty() {
                say("No emulator releases found.");
            }
            for release in releases {
                say(&format!("{}\t{}\t{}", release.tag, release.status, release.date));
            }
        }
        Command::Bench { arch, rounds } => {
            let settings = Settings::from_env(arch.as_deref())?;
            emulator::bench::run(&settings, &paths, rounds.max(1)).map_err(|e| e.to_string())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Downloads the image: a workflow run's artifact (`--run`, or the newest successful run for
/// `--pr`), else the release asset. Stale snapshots are deleted first: they belong to the old
/// image.
fn pull(
    settings: &Settings,
    paths: &Paths,
    repo: &str,
    tag: &str,
    pr: Option<u64>,
    run: Option<u64>,
) -> Result<(), String> {
    let arch = settings.arch;
    std::fs::create_dir_all(&paths.images).map_err(|e| format!("create {}: {e}", paths.images.display()))?;
    for stale in [paths.snapshot(arch), paths.snapshot_raw(arch)] {
        let _ = std::fs::remove_file(stale);
    }
    let github = GitHub::from_env();
    let image = paths.image(arch);
    if run.is_some() || pr.is_some() {
        if !github.has_token() {
            return Err(
                "--pr and --run download workflow artifacts, which need a GitHub token: set GITHUB_TOKEN.".into()
            );
        }
        let run = match run {
            Some(run) => run,
            None => github.run_for_pr(repo, pr.expect("pr or run")).map_err(|e| e.to_string())?,
        };
        let zip = paths.images.join(format!("qemu-emulator-{arch}.zip"));
        say(&format!("Downloading the image of workflow run {run}..."));
        github
            .download_run_artifact(repo, run, &format!("qemu-emulator-{arch}"), &zip, &mut Bar::new())
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&image);
        emulator::download::extract_file(&zip, &format!("stack-emulator-{arch}.qcow2"), &image)
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&zip);
    } else {
        say(&format!("Downloading {tag} (stack-emulator-{arch}.qcow2)..."));
        github
            .download_release_asset(repo, tag, &format!("stack-emulator-{arch}.qcow2"), &image, &mut Bar::new())
            .map_err(|e| e.to_string())?;
    }
    if !image.exists() {
        return Err(format!("The download did not produce {}.", image.display()));
    }
    say(&format!("Image ready: {}", image.display()));
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
