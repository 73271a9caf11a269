//! The VM's lifecycle under QEMU (docs/api.md §10.3-§10.4): start (resume from a snapshot,
//! else a cold boot), capture, stop, status and reset. The snapshot is a `mapped-ram` + `multifd`
//! migration file, so it resumes only into exactly the machine it was taken from: the snapshot
//! layout pins RAM, CPUs and the device order.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::control::{self, qmp, ControlError};
use crate::iso::{write_iso, Entry, CONFIG_VOLUME_ID};
use crate::settings::{Paths, Settings};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VmError(pub String);

impl From<ControlError> for VmError {
    fn from(e: ControlError) -> Self {
        VmError(e.0)
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, VmError> {
    Err(VmError(message.into()))
}

fn io(context: &str, e: std::io::Error) -> VmError {
    VmError(format!("{context}: {e}"))
}

/// Which machine QEMU builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Configurable RAM and CPUs, balloon, the host folder over virtfs.
    Cold,
    /// The pinned machine snapshots are taken from and resumed into; `incoming` waits for one.
    Snapshot { incoming: bool },
}

/// UEFI firmware an arm64 guest boots from: the first of these that exists.
pub const ARM64_FIRMWARE: [&str; 4] = [
    "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
    "/usr/share/qemu/edk2-aarch64-code.fd",
    "/usr/share/AAVMF/AAVMF_CODE.fd",
    "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
];

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// What `start` and `capture` need from the host: QEMU for the architecture, `qemu-img`, and
/// for arm64 UEFI firmware. Missing pieces are listed with how to install them.
pub fn preflight(settings: &Settings) -> Result<(), VmError> {
    let (qemu_linux, qemu_mac) =
        if settings.arch == "arm64" { ("qemu-system-arm", "qemu") } else { ("qemu-system-x86", "qemu") };
    let os = std::env::consts::OS;
    let mut missing = Vec::new();
    for (binary, linux, mac) in [(settings.qemu_binary(), qemu_linux, qemu_mac), ("qemu-img", "qemu-utils", "qemu")] {
        if !on_path(binary) {
            missing.push(format!("  - {binary}  →  {}", crate::format::install_hint(os, mac, linux)));
        }
    }
    if settings.arch == "arm64" && settings.kernel.is_none() && !ARM64_FIRMWARE.iter().any(|f| Path::new(f).exists()) {
        let hint = crate::format::install_hint(os, "qemu", "qemu-efi-aarch64");
        missing.push(format!("  - UEFI firmware for arm64 ({})  →  {hint}", ARM64_FIRMWARE.join(", ")));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        fail(format!("The emulator needs these on this machine:\n{}", missing.join("\n")))
    }
}

/// QEMU's arguments for `layout`.
pub fn qemu_args(settings: &Settings, paths: &Paths, layout: Layout) -> Vec<String> {
    let ports = settings.ports;
    let p = |path: &Path| path.display().to_string();
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(std::string::ToString::to_string));
    let (machine, cpu) = if settings.arch == "arm64" { ("virt", "max") } else { ("q35", "max") };
    push(&["-machine", machine, "-accel", &settings.accel, "-cpu", cpu]);
    let (ram, cpus) = match layout {
        Layout::Cold => (settings.ram_mb, settings.cpus),
        Layout::Snapshot { .. } => (settings.snapshot_ram_mb, settings.snapshot_cpus),
    };
    push(&["-m", &ram.to_string(), "-smp", &cpus.to_string()]);
    if settings.arch == "arm64" && settings.kernel.is_none() {
        if let Some(firmware) = ARM64_FIRMWARE.iter().find(|f| Path::new(f).exists()) {
            push(&["-bios", firmware]);
        }
    }
    if let Some((kernel, initrd, append)) = &settings.kernel {
        push(&["-kernel", &p(kernel)]);
        if let Some(initrd) = initrd {
            push(&["-initrd", &p(initrd)]);
        }
        push(&["-append", append]);
    } else {
        push(&["-boot", "order=c"]);
    }
    push(&["-drive", &format!("file={},if=virtio,format=qcow2", p(&paths.overlay()))]);
    if matches!(layout, Layout::Snapshot { .. }) {
        for phantom in ["seed", "bundle"] {
            push(&["-drive", &format!("file={},if=virtio,format=raw,readonly=on", p(&paths.phantom(phantom)))]);
        }
    }
    push(&["-drive", &format!("file={},if=virtio,format=raw,readonly=on", p(&paths.config_iso()))]);
    let forward = |host: u16, guest: u16| format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}");
    let netdev = format!(
        "user,id=net0{}{}{}{}{}",
        forward(ports.dashboard, ports.prefix * 100 + 1),
        forward(ports.backend, ports.prefix * 100 + 2),
        forward(ports.minio, 9090),
        forward(ports.inbucket, 9001),
        forward(ports.mock_oauth(), ports.mock_oauth()),
    );
    push(&["-netdev", &netdev, "-device", "virtio-net-pci,netdev=net0"]);
    if layout == Layout::Cold {
        push(&["-device", "virtio-balloon-pci", "-virtfs", "local,path=/,mount_tag=hostfs,security_model=none"]);
    }
    push(&["-chardev", &format!("socket,id=monitor,path={},server=on,wait=off", p(&paths.monitor()))]);
    push(&["-mon", "chardev=monitor,mode=control"]);
    push(&["-chardev", &format!("socket,path={},server=on,wait=off,id=qga0", p(&paths.agent()))]);
    push(&["-device", "virtio-serial", "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]);
    if let Layout::Snapshot { incoming } = layout {
        // The last explicit device: the host folder is hot-plugged into it after a resume.
        push(&["-device", "pcie-root-port,id=hostfs-port,bus=pcie.0,chassis=1"]);
        push(&["-fsdev", "local,id=hostfs,path=/,security_model=none"]);
        if incoming {
            push(&["-incoming", "defer"]);
        }
    }
    push(&["-serial", &format!("file:{}", p(&paths.serial_log())), "-display", "none"]);
    push(&["-daemonize", "-pidfile", &p(&paths.pid_file())]);
    args
}

/// The runtime config disk: the ports and where the VM folder is on the host (empty while
/// capturing, so a snapshot never holds one machine's paths).
pub fn write_config_disk(settings: &Settings, paths: &Paths, vm_dir_on_host: bool) -> Result<(), VmError> {
    let ports = settings.ports;
    let vm_dir = if vm_dir_on_host { paths.vm.display().to_string() } else { String::new() };
    let runtime = format!(
        "STACK_EMULATOR_PORT_PREFIX={}\nSTACK_EMULATOR_DASHBOARD_HOST_PORT={}\nSTACK_EMULATOR_BACKEND_HOST_PORT={}\n\
         STACK_EMULATOR_MINIO_HOST_PORT={}\nSTACK_EMULATOR_INBUCKET_HOST_PORT={}\nSTACK_EMULATOR_VM_DIR_HOST={vm_dir}\n",
        ports.prefix, ports.dashboard, ports.backend, ports.minio, ports.inbucket
    );
    let base = std::env::var("STACK_EMULATOR_BASE_ENV")
        .ok()
        .map(|path| std::fs::read(&path).map_err(|e| io(&format!("read {path}"), e)))
        .transpose()?
        .unwrap_or_default();
    let entries = [Entry::file("runtime.env", runtime), Entry::file("base.env", base)];
    write_iso(&paths.config_iso(), CONFIG_VOLUME_ID, &entries).map_err(|e| VmError(e.to_string()))
}

/// The running QEMU's process id, if its pid file names a live process.
#[allow(unsafe_code)] // libc::kill: no safe std API probes or signals a process by pid
pub fn running_pid(paths: &Paths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(paths.pid_file()).ok()?.trim().parse().ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

fn ports_free(settings: &Settings) -> Result<(), VmError> {
    for port in settings.ports.all() {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            return fail(format!(
                "Port {port} is already in use. Stop what uses it, or choose other ports (EMULATOR_*_PORT)."
            ));
        }
    }
    Ok(())
}

fn launch(settings: &Settings, paths: &Paths, layout: Layout) -> Result<(), VmError> {
    for stale in [paths.monitor(), paths.agent(), paths.pid_file(), paths.serial_log()] {
        let _ = std::fs::remove_file(stale);
    }
    let output = Command::new(settings.qemu_binary())
        .args(qemu_args(settings, paths, layout))
        .output()
        .map_err(|e| io(&format!("start {}", settings.qemu_binary()), e))?;
    if !output.status.success() {
        return fail(format!("QEMU did not start: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// A fresh overlay on the base image (never written to itself).
fn create_overlay(settings: &Settings, paths: &Paths) -> Result<(), VmError> {
    let base = paths.image(settings.arch);
    let output = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&base)
        .arg(paths.overlay())
        .output()
        .map_err(|e| io("run qemu-img", e))?;
    if !output.status.success() {
        return fail(format!(
            "qemu-img could not create the overlay: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

fn file_stamp(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(format!("{}:{mtime}", meta.len()))
}

/// `<base size:mtime>|<snapshot size:mtime or no-savevm>`: a cold boot reuses the overlay only
/// while both are unchanged.
fn fingerprint(settings: &Settings, paths: &Paths) -> String {
    let base = file_stamp(&paths.image(settings.arch)).unwrap_or_default();
    let snapshot = file_stamp(&paths.snapshot(settings.arch)).unwrap_or_else(|| "no-savevm".into());
    format!("{base}|{snapshot}")
}

fn prepare_disks(settings: &Settings, paths: &Paths, layout: Layout) -> Result<(), VmError> {
    std::fs::create_dir_all(&paths.vm).map_err(|e| io("create the VM folder", e))?;
    let current = fingerprint(settings, paths);
    let reuse = layout == Layout::Cold
        && paths.overlay().exists()
        && std::fs::read_to_string(paths.fingerprint()).is_ok_and(|f| f == current);
    if !reuse {
        let _ = std::fs::remove_file(paths.overlay());
        create_overlay(settings, paths)?;
        std::fs::write(paths.fingerprint(), &current).map_err(|e| io("write the fingerprint", e))?;
    }
    if matches!(layout, Layout::Snapshot { .. }) {
        for phantom in ["seed", "bundle"] {
            let file = std::fs::File::create(paths.phantom(phantom)).map_err(|e| io("create a phantom disk", e))?;
            file.set_len(1024 * 1024).map_err(|e| io("size a phantom disk", e))?;
        }
    }
    Ok(())
}

/// The services the emulator waits for: `deps` (MinIO, Inbucket) then `app` (backend, dashboard).
pub fn health(settings: &Settings) -> Vec<(&'static str, bool)> {
    let ports = settings.ports;
    vec![
        ("MinIO", http_ok(ports.minio, "/minio/health/live")),
        ("Inbucket", http_ok(ports.inbucket, "/")),
        ("backend", http_ok(ports.backend, "/health?db=1")),
        ("dashboard", http_ok(ports.dashboard, "/handler/sign-in")),
    ]
}

/// Whether `GET http://127.0.0.1:<port><path>` answers 200 within 2 s. A hand-written
/// HTTP/1.0 request: it is one line, and it keeps this synchronous module off an HTTP stack.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), VmError> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() >= deadline {
            return fail(format!("{what} was not ready within {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn all_ready(settings: &Settings) -> bool {
    health(settings).iter().all(|(_, ok)| *ok)
}

/// The last `n` lines of the serial log, to show why a boot failed.
fn serial_tail(paths: &Paths, n: usize) -> String {
    let log = std::fs::read_to_string(paths.serial_log()).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How `start` got the VM running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    Resumed,
    ColdBoot,
    /// The snapshot could not be resumed (why), so the VM cold-booted.
    FellBack(String),
}

/// Starts the VM: reuses a running one, resumes the snapshot when there is one, and falls back
/// to a cold boot when anything in the resume fails.
pub fn start(settings: &Settings, paths: &Paths, say: &mut dyn FnMut(&str)) -> Result<Started, VmError> {
    if let Some(pid) = running_pid(paths) {
        say(&format!("The emulator is already running (pid {pid}); reusing it."));
        return Ok(Started::AlreadyRunning);
    }
    preflight(settings)?;
    if !paths.image(settings.arch).exists() {
        return fail(format!(
            "No emulator image at {}. Run `stack-emulator pull` first.",
            paths.image(settings.arch).display()
        ));
    }
    ports_free(settings)?;
    std::fs::create_dir_all(&paths.vm).map_err(|e| io("create the VM folder", e))?;
    write_config_disk(settings, paths, true)?;
    let snapshot = paths.snapshot(settings.arch);
    let has_snapshot = !settings.no_snapshot && std::fs::metadata(&snapshot).is_ok_and(|m| m.len() > 0);
    if has_snapshot {
        let started = Instant::now();
        match resume(settings, paths) {
            Ok(()) => {
                say(&format!("Resumed from the snapshot in {:.1} s.", started.elapsed().as_secs_f64()));
                return Ok(Started::Resumed);
            }
            Err(e) => {
                say(&format!("Could not resume the snapshot ({e}); falling back to a cold boot."));
                stop(settings, paths)?;
                for stale in [paths.overlay(), paths.fingerprint(), paths.phantom("seed"), paths.phantom("bundle")] {
                    let _ = std::fs::remove_file(stale);
                }
                cold_boot(settings, paths)?;
                return Ok(Started::FellBack(e.0));
            }
        }
    }
    cold_boot(settings, paths)?;
    Ok(Started::ColdBoot)
}

fn cold_boot(settings: &Settings, paths: &Paths) -> Result<(), VmError> {
    prepare_disks(settings, paths, Layout::Cold)?;
    launch(settings, paths, Layout::Cold)?;
    let waited =
        wait_until("MinIO and Inbucket", settings.ready_timeout, || health(settings)[..2].iter().all(|(_, ok)| *ok))
            .and_then(|_| wait_until("the backend and dashboard", settings.ready_timeout, || all_ready(settings)));
    if let Err(e) = waited {
        let tail = serial_tail(paths, 40);
        stop(settings, paths)?;
        return fail(format!("{e}. Last lines of the serial log:\n{tail}"));
    }
    Ok(())
}

/// The decompressed snapshot, reused while it is at least as new as the compressed one.
fn snapshot_raw(settings: &Settings, paths: &Paths) -> Result<std::path::PathBuf, VmError> {
    let zst = paths.snapshot(settings.arch);
    let raw = paths.snapshot_raw(settings.arch);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = std::fs::metadata(&raw).is_ok_and(|m| m.len() > 0) && modified(&raw) >= modified(&zst);
    if !fresh {
        let tmp = raw.with_extension("raw.tmp");
        let decompressed = (|| -> std::io::Result<()> {
            let mut input = zstd::Decoder::new(std::fs::File::open(&zst)?)?;
            let mut output = std::fs::File::create(&tmp)?;
            std::io::copy(&mut input, &mut output)?;
            output.sync_all()?;
            std::fs::rename(&tmp, &raw)
        })();
        if let Err(e) = decompressed {
            let _ = std::fs::remove_file(&tmp);
            return fail(format!("the snapshot could not be decompressed: {e}"));
        }
    }
    Ok(raw)
}

/// Resume steps (a)-(e): incoming migration from the file, guest agent sync, host folder
/// hot-plug and mount, secret rotation, services ready.
fn resume(settings: &Settings, paths: &Paths) -> Result<(), VmError> {
    let raw = snapshot_raw(settings, paths)?;
    prepare_disks(settings, paths, Layout::Snapshot { incoming: true })?;
    launch(settings, paths, Layout::Snapshot { incoming: true })?;
    {
        let stream = control::connect(&paths.monitor(), Duration::from_secs(10))?;
        let mut monitor = control::qmp(&stream)?;
        control::set_snapshot_capabilities(&mut monitor, 4)?;
        monitor
            .execute(&qmp::migrate_incoming {
                uri: Some(format!("file:{}", raw.display())),
                channels: None,
                exit_on_error: None,
            })
            .map_err(|e| control::error("migrate-incoming", e))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match control::run_state(&mut monitor)?.as_str() {
                "running" => break,
                "paused" | "postmigrate" | "prelaunch" => {
                    monitor.execute(&qmp::cont {}).map_err(|e| control::error("cont", e))?;
                    break;
                }
                "inmigrate" | "" if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                other => return fail(format!("the snapshot did not load (run state {other:?})")),
            }
        }
    }
    let agent = control::qga_synced(&paths.agent(), Duration::from_secs(30))?;
    {
        let stream = control::connect(&paths.monitor(), Duration::from_secs(5))?;
        let mut monitor = control::qmp(&stream)?;
        let mut arguments = qapi::Dictionary::new();
        arguments.insert("fsdev".into(), "hostfs".into());
        arguments.insert("mount_tag".into(), "hostfs".into());
        monitor
            .execute(&qmp::device_add {
                driver: "virtio-9p-pci".into(),
                id: Some("hostfs-dev".into()),
                bus: Some("hostfs-port".into()),
                arguments,
            })
            .map_err(|e| control::error("device_add hostfs", e))?;
    }
    let mounted =
        control::guest_exec(&agent, "/usr/local/bin/mount-host-fs", &["--post-resume"], None, Duration::from_secs(20))?;
    if mounted.exit_code != Some(0) {
        return fail(format!("mount-host-fs failed: {}", String::from_utf8_lossy(&mounted.stderr).trim()));
    }
    if settings.no_rotation {
        crate::secrets::write_placeholder_pck(paths).map_err(|e| io("write internal-pck", e))?;
    } else {
        crate::secrets::rotate(&agent, paths)?;
        std::thread::sleep(Duration::from_secs(1));
    }
    wait_until("the services after the resume", settings.snapshot_ready_timeout, || all_ready(settings))
}

/// Takes a snapshot: a cold boot in the snapshot layout, then `stop`, migration to a file,
/// `quit`, and zstd compression. Skipped when a snapshot exists unless `force_capture`.
pub fn capture(settings: &Settings, paths: &Paths, say: &mut dyn FnMut(&str)) -> Result<bool, VmError> {
    let arch = settings.arch;
    let (zst, raw) = (paths.snapshot(arch), paths.snapshot_raw(arch));
    if !paths.image(arch).exists() {
        return fail(format!("No emulator image at {}. Run `stack-emulator pull` first.", paths.image(arch).display()));
    }
    preflight(settings)?;
    if zst.exists() && !settings.force_capture {
        say("A snapshot exists; keeping it (EMULATOR_FORCE_CAPTURE=1 takes a new one).");
        return Ok(false);
    }
    if running_pid(paths).is_some() {
        return fail("The emulator is running; stop it before capturing a snapshot.");
    }
    let _ = std::fs::remove_file(&zst);
    let _ = std::fs::remove_file(&raw);
    ports_free(settings)?;
    std::fs::create_dir_all(&paths.vm).map_err(|e| io("create the VM folder", e))?;
    write_config_disk(settings, paths, false)?;
    prepare_disks(settings, paths, Layout::Snapshot { incoming: false })?;
    launch(settings, paths, Layout::Snapshot { incoming: false })?;
    if let Err(e) = wait_until("the services", settings.ready_timeout, || all_ready(settings)) {
        let tail = serial_tail(paths, 40);
        stop(settings, paths)?;
        return fail(format!("{e}. Last lines of the serial log:\n{tail}"));
    }
    let tmp = raw.with_extension("raw.capture.tmp");
    let _ = std::fs::remove_file(&tmp);
    let migrated = (|| -> Result<(), VmError> {
        let stream = control::connect(&paths.monitor(), Duration::from_secs(5))?;
        let mut monitor = control::qmp(&stream)?;
        monitor.execute(&qmp::stop {}).map_err(|e| control::error("stop", e))?;
        control::set_snapshot_capabilities(&mut monitor, 4)?;
        monitor
            .execute(&qmp::migrate {
                uri: Some(format!("file:{}", tmp.display())),
                channels: None,
                detach: None,
                resume: None,
            })
            .map_err(|e| control::error("migrate", e))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let info = monitor.execute(&qmp::query_migrate {}).map_err(|e| control::error("query-migrate", e))?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => break,
                Some(qmp::MigrationStatus::failed | qmp::MigrationStatus::cancelled) => {
                    return fail(format!("the migration failed: {}", info.error_desc.unwrap_or_default()))
                }
                _ if Instant::now() >= deadline => return fail("the migration did not finish in 600 s"),
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        let _ = monitor.execute(&qmp::quit {});
        Ok(())
    })();
    if let Err(e) = migrated {
        stop(settings, paths)?;
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let exited = wait_until("QEMU to exit", Duration::from_secs(30), || running_pid(paths).is_none());
    if exited.is_err() {
        stop(settings, paths)?;
    }
    if !std::fs::metadata(&tmp).is_ok_and(|m| m.len() > 0) {
        return fail("the snapshot file is empty");
    }
    let zst_tmp = zst.with_extension("zst.tmp");
    let compressed = (|| -> std::io::Result<()> {
        let mut input = std::fs::File::open(&tmp)?;
        let mut encoder = zstd::Encoder::new(std::fs::File::create(&zst_tmp)?, 1)?;
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.sync_all()?;
        std::fs::rename(&zst_tmp, &zst)?;
        std::fs::rename(&tmp, &raw)?;
        // The raw file stays as the decompressed cache: as new as the snapshot it matches.
        let zst_time = std::fs::metadata(&zst)?.modified()?;
        std::fs::File::options().write(true).open(&raw)?.set_modified(zst_time)
    })();
    compressed.map_err(|e| io("compress the snapshot", e))?;
    cleanup_runtime_files(paths);
    say(&format!("Captured the snapshot: {}", zst.display()));
    Ok(true)
}

/// How `stop` ended QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    NotRunning,
    /// The guest powered off after the ACPI power button.
    PoweredOff,
    /// QEMU had to be terminated (SIGTERM, then SIGKILL).
    Terminated,
}

/// Stops the VM: the ACPI power button (`qmp_capabilities` and `system_powerdown` on one
/// connection), up to `stop_timeout` for the guest to power off, then SIGTERM, then SIGKILL.
/// The disk and snapshot stay; the sockets, pid file and serial log go.
#[allow(unsafe_code)] // libc::kill: no safe std API signals a process by pid
pub fn stop(settings: &Settings, paths: &Paths) -> Result<Stopped, VmError> {
    let Some(pid) = running_pid(paths) else {
        cleanup_runtime_files(paths);
        return Ok(Stopped::NotRunning);
    };
    let powerdown = control::connect(&paths.monitor(), Duration::from_secs(2)).and_then(|stream| {
        let mut monitor = control::qmp(&stream)?;
        monitor.execute(&qmp::system_powerdown {}).map_err(|e| control::error("system_powerdown", e))?;
        Ok(())
    });
    let gone = || running_pid(paths) != Some(pid);
    let mut outcome = Stopped::PoweredOff;
    if powerdown.is_err() || wait_until("the guest to power off", settings.stop_timeout, gone).is_err() {
        outcome = Stopped::Terminated;
        // SAFETY: signals to the QEMU process this emulator started (its pid file).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if wait_until("QEMU to exit", Duration::from_secs(1), gone).is_err() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_until("QEMU to be killed", Duration::from_secs(5), gone)?;
        }
    }
    cleanup_runtime_files(paths);
    Ok(outcome)
}

fn cleanup_runtime_files(paths: &Paths) {
    for file in [paths.pid_file(), paths.monitor(), paths.agent(), paths.serial_log()] {
        let _ = std::fs::remove_file(file);
    }
}

/// Stops the VM and deletes the run folder (images and snapshots stay).
pub fn reset(settings: &Settings, paths: &Paths) -> Result<(), VmError> {
    stop(settings, paths)?;
    match std::fs::remove_dir_all(&paths.run) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete the run folder", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // set_var: the one test here that changes PATH
    fn preflight_lists_what_is_missing_with_install_hints() {
        let mut settings = Settings::from_env(Some("amd64")).unwrap();
        settings.kernel = None;
        let saved = std::env::var_os("PATH");
        // SAFETY of the env change: this is the only test in this binary that touches PATH.
        unsafe { std::env::set_var("PATH", "/nonexistent") };
        let error = preflight(&settings).unwrap_err().0;
        match saved {
            Some(path) => unsafe { std::env::set_var("PATH", path) },
            None => unsafe { std::env::remove_var("PATH") },
        }
        assert!(error.contains("  - qemu-system-x86_64  →  "), "{error}");
        assert!(error.contains("  - qemu-img  →  "), "{error}");
        if std::env::consts::OS == "linux" {
            assert!(error.contains("apt install qemu-utils (or your distro's equivalent)"), "{error}");
        }
    }
}
