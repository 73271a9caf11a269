//! Where the emulator keeps its files and how it is configured (docs/api.md §10.1, §10.3):
//! `STACK_EMULATOR_HOME` and the `EMULATOR_*` variables, read once into plain values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::{env_port, resolve_arch};

/// The files of one emulator home.
#[derive(Debug, Clone)]
pub struct Paths {
    pub home: PathBuf,
    pub images: PathBuf,
    pub run: PathBuf,
    pub vm: PathBuf,
}

impl Paths {
    pub fn new(home: &Path) -> Paths {
        let run = home.join("run");
        Paths { home: home.to_path_buf(), images: home.join("images"), vm: run.join("vm"), run }
    }

    /// `STACK_EMULATOR_HOME`, else `~/.stack/emulator`.
    pub fn from_env() -> Paths {
        let home = std::env::var_os("STACK_EMULATOR_HOME").map_or_else(
            || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".stack/emulator"),
            PathBuf::from,
        );
        Paths::new(&home)
    }

    pub fn image(&self, arch: &str) -> PathBuf {
        self.images.join(format!("stack-emulator-{arch}.qcow2"))
    }
    pub fn snapshot(&self, arch: &str) -> PathBuf {
        self.images.join(format!("stack-emulator-{arch}.savevm.zst"))
    }
    /// The decompressed snapshot QEMU reads (kept next to the compressed one as a cache).
    pub fn snapshot_raw(&self, arch: &str) -> PathBuf {
        self.images.join(format!("stack-emulator-{arch}.savevm.raw"))
    }
    pub fn overlay(&self) -> PathBuf {
        self.vm.join("disk.qcow2")
    }
    pub fn fingerprint(&self) -> PathBuf {
        self.vm.join("base-image.fingerprint")
    }
    pub fn config_iso(&self) -> PathBuf {
        self.vm.join("runtime-config.iso")
    }
    pub fn monitor(&self) -> PathBuf {
        self.vm.join("monitor.sock")
    }
    pub fn agent(&self) -> PathBuf {
        self.vm.join("qga.sock")
    }
    pub fn serial_log(&self) -> PathBuf {
        self.vm.join("serial.log")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.vm.join("qemu.pid")
    }
    pub fn internal_pck(&self) -> PathBuf {
        self.vm.join("internal-pck")
    }
    pub fn phantom(&self, name: &str) -> PathBuf {
        self.vm.join(format!("{name}.phantom"))
    }
}

/// Host ports forwarded to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub dashboard: u16,
    pub backend: u16,
    pub minio: u16,
    pub inbucket: u16,
    /// Guest ports are `<prefix>01` (dashboard), `<prefix>02` (backend), `<prefix>14` (mock OAuth).
    pub prefix: u16,
}

impl Ports {
    pub fn mock_oauth(&self) -> u16 {
        self.prefix * 100 + 14
    }
    /// Every host port the VM listens on.
    pub fn all(&self) -> [u16; 5] {
        [self.dashboard, self.backend, self.minio, self.inbucket, self.mock_oauth()]
    }
}

/// Everything `EMULATOR_*` configures.
#[derive(Debug, Clone)]
pub struct Settings {
    pub arch: &'static str,
    pub ram_mb: u32,
    pub cpus: u32,
    /// RAM and CPUs of the snapshot layout: pinned, since a snapshot only resumes on the
    /// machine it was taken on.
    pub snapshot_ram_mb: u32,
    pub snapshot_cpus: u32,
    pub ready_timeout: Duration,
    pub snapshot_ready_timeout: Duration,
    pub no_snapshot: bool,
    pub no_rotation: bool,
    pub force_capture: bool,
    pub ports: Ports,
    /// `kvm`, `hvf` or `tcg`; `EMULATOR_ACCEL` overrides the choice.
    pub accel: String,
    /// `EMULATOR_KERNEL` / `EMULATOR_INITRD` / `EMULATOR_KERNEL_APPEND`: boot this kernel
    /// directly instead of the disk's boot loader (the tests' tiny VM).
    pub kernel: Option<(PathBuf, Option<PathBuf>, String)>,
    /// How long `stop` waits for a powered-down guest to exit before it terminates QEMU.
    pub stop_timeout: Duration,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, fallback: u32) -> Result<u32, String> {
    match var(name) {
        None => Ok(fallback),
        Some(raw) => raw.parse::<u32>().ok().filter(|n| *n > 0).ok_or(format!("Invalid {name}: {raw}")),
    }
}

fn flag(name: &str) -> bool {
    var(name).as_deref() == Some("1")
}

impl Settings {
    pub fn from_env(arch: Option<&str>) -> Result<Settings, String> {
        let arch = resolve_arch(arch.or(var("EMULATOR_ARCH").as_deref()))?;
        let prefix = var("PORT_PREFIX")
            .or_else(|| var("NEXT_PUBLIC_STACK_PORT_PREFIX"))
            .map(|p| p.parse::<u16>().ok().filter(|p| (1..=650).contains(p)).ok_or(format!("Invalid PORT_PREFIX: {p}")))
            .transpose()?
            .unwrap_or(81);
        let port = |name: &str, fallback| env_port(name, var(name).as_deref(), fallback);
        let ports = Ports {
            dashboard: port("EMULATOR_DASHBOARD_PORT", 26700)?,
            backend: port("EMULATOR_BACKEND_PORT", 26701)?,
            minio: port("EMULATOR_MINIO_PORT", 26702)?,
            inbucket: port("EMULATOR_INBUCKET_PORT", 26703)?,
            prefix,
        };
        let kernel = var("EMULATOR_KERNEL").map(|kernel| {
            (
                PathBuf::from(kernel),
                var("EMULATOR_INITRD").map(PathBuf::from),
                var("EMULATOR_KERNEL_APPEND").unwrap_or_default(),
            )
        });
        Ok(Settings {
            arch,
            ram_mb: number("EMULATOR_RAM", 4096)?,
            cpus: number("EMULATOR_CPUS", 4)?,
            snapshot_ram_mb: number("EMULATOR_SNAPSHOT_RAM", 4096)?,
            snapshot_cpus: number("EMULATOR_SNAPSHOT_CPUS", 4)?,
            ready_timeout: Duration::from_secs(number("EMULATOR_READY_TIMEOUT", 240)?.into()),
            snapshot_ready_timeout: Duration::from_secs(number("EMULATOR_SNAPSHOT_READY_TIMEOUT", 45)?.into()),
            no_snapshot: flag("EMULATOR_NO_SNAPSHOT"),
            no_rotation: flag("EMULATOR_NO_ROTATION"),
            force_capture: flag("EMULATOR_FORCE_CAPTURE"),
            ports,
            accel: var("EMULATOR_ACCEL").unwrap_or_else(|| default_accel(arch)),
            kernel,
            stop_timeout: Duration::from_secs(number("EMULATOR_STOP_TIMEOUT", 30)?.into()),
        })
    }

    /// The QEMU binary for the architecture.
    pub fn qemu_binary(&self) -> &'static str {
        if self.arch == "arm64" {
            "qemu-system-aarch64"
        } else {
            "qemu-system-x86_64"
        }
    }
}

/// Hardware acceleration when the guest has the host's architecture: KVM where `/dev/kvm` is
/// writable, HVF on macOS; otherwise TCG (software).
fn default_accel(arch: &str) -> String {
    let native = matches!((arch, std::env::consts::ARCH), ("amd64", "x86_64") | ("arm64", "aarch64"));
    let kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    match (native, std::env::consts::OS) {
        (true, "linux") if kvm => "kvm".into(),
        (true, "macos") => "hvf".into(),
        _ => "tcg".into(),
    }
}
