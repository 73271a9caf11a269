//! The VM lifecycle against real QEMU 10 with a tiny real guest (Debian's kernel and a busybox
//! initramfs with qemu-ga, built by tests/vm/build-test-vm.sh from Debian packages): capture a
//! mapped-ram snapshot, resume it with secret rotation, reuse a running VM, stop it by its power
//! button, and fall back to a cold boot from a corrupt snapshot. The guest agent protocol is
//! also tested against a real qemu-ga on a host unix socket.
//!
//! Software emulation (TCG): KVM is present on this machine kind but guests make no progress
//! under it (see docs/TOOLCHAIN.md).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use emulator::control;
use emulator::settings::{Paths, Ports, Settings};
use emulator::vm::{self, Started, Stopped};

/// The tiny VM, built once per test binary (the script also locks against other processes).
fn test_vm() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_test_vm).clone()
}

fn build_test_vm() -> PathBuf {
    let cache = std::env::var("STACK_EDGE_CACHE").unwrap_or_else(|_| "/var/cache/stack-edge".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/build-test-vm.sh");
    let text = std::fs::read(&script).unwrap();
    // A new script version builds a new VM.
    let version = text.iter().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64));
    let out = Path::new(&cache).join(format!("emulator-vm/build-{version:x}"));
    let status = Command::new(&script).arg(&out).status().expect("run build-test-vm.sh");
    assert!(status.success(), "build-test-vm.sh failed");
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Settings for the tiny VM: small, software-emulated, on free ports with its own port prefix.
fn settings(vm: &Path, prefix: u16) -> Settings {
    Settings {
        arch: "amd64",
        ram_mb: 256,
        cpus: 1,
        snapshot_ram_mb: 256,
        snapshot_cpus: 1,
        ready_timeout: Duration::from_secs(120),
        snapshot_ready_timeout: Duration::from_secs(45),
        no_snapshot: false,
        no_rotation: false,
        force_capture: false,
        ports: Ports {
            dashboard: free_port(),
            backend: free_port(),
            minio: free_port(),
            inbucket: free_port(),
            prefix,
        },
        accel: "tcg".into(),
        kernel: Some((vm.join("vmlinuz"), Some(vm.join("initramfs.gz")), "console=ttyS0 quiet".into())),
        stop_timeout: Duration::from_secs(30),
    }
}

fn home_with_image() -> (tempfile::TempDir, Paths) {
    let home = tempfile::tempdir().unwrap();
    let paths = Paths::new(home.path());
    std::fs::create_dir_all(&paths.images).unwrap();
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(paths.image("amd64"))
        .arg("64M")
        .status()
        .unwrap();
    assert!(status.success());
    (home, paths)
}

/// `GET` on the guest's stand-in services through the forwarded port.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    // Only a 200's body: anything else reads as empty.
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => body.to_string(),
        _ => String::new(),
    }
}

/// Stops the VM even when an assertion fails half-way.
struct StopOnDrop<'a>(&'a Settings, &'a Paths);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = vm::stop(self.0, self.1);
    }
}

#[test]
fn capture_resume_reuse_stop_and_fall_back_from_a_corrupt_snapshot() {
    let built = test_vm();
    let (_home, paths) = home_with_image();
    let settings = settings(&built, 301);
    let _guard = StopOnDrop(&settings, &paths);
    let mut said = Vec::new();
    let mut say = |line: &str| said.push(line.to_string());

    // Capture: a cold boot in the snapshot layout, migrated to a file and compressed.
    assert!(vm::capture(&settings, &paths, &mut say).unwrap());
    assert!(std::fs::metadata(paths.snapshot("amd64")).unwrap().len() > 0);
    assert!(std::fs::metadata(paths.snapshot_raw("amd64")).unwrap().len() > 0);
    assert_eq!(vm::running_pid(&paths), None, "QEMU quit after the capture");

    // Resume: services answer, secrets rotated in the guest, the new key on the host, 0600.
    assert_eq!(vm::start(&settings, &paths, &mut say).unwrap(), Started::Resumed, "{said:?}");
    assert!(vm::health(&settings).iter().all(|(_, ok)| *ok));
    let pck = std::fs::read_to_string(paths.internal_pck()).unwrap();
    assert!(emulator::secrets::is_valid_secret(&pck) && pck != emulator::secrets::placeholder_pck());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(paths.internal_pck()).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(get(settings.ports.backend, "/rotated-digest").trim().len(), 64, "the guest applied the secrets");
    let runtime = get(settings.ports.backend, "/runtime.env");
    assert!(runtime.contains("STACK_EMULATOR_VM_DIR_HOST=\n"), "captured without host paths: {runtime}");
    assert!(runtime.contains("STACK_EMULATOR_PORT_PREFIX=301\n"), "{runtime}");

    // A second start reuses the running VM.
    assert_eq!(vm::start(&settings, &paths, &mut say).unwrap(), Started::AlreadyRunning);
    // Stop: the guest powers off by its ACPI button; nothing is left running.
    assert_eq!(vm::stop(&settings, &paths).unwrap(), Stopped::PoweredOff);
    assert_eq!(vm::running_pid(&paths), None);
    assert_eq!(vm::stop(&settings, &paths).unwrap(), Stopped::NotRunning);

    // EMULATOR_NO_ROTATION: the guest keeps the snapshot's secrets; the host records the placeholder.
    let keep = Settings { no_rotation: true, ..settings.clone() };
    assert_eq!(vm::start(&keep, &paths, &mut say).unwrap(), Started::Resumed, "{said:?}");
    assert_eq!(std::fs::read_to_string(paths.internal_pck()).unwrap(), emulator::secrets::placeholder_pck());
    assert_eq!(get(settings.ports.backend, "/rotated-digest"), "", "no rotation ran in the guest");
    assert_eq!(vm::stop(&keep, &paths).unwrap(), Stopped::PoweredOff);

    // A corrupt snapshot: start says so and cold-boots.
    std::fs::write(paths.snapshot("amd64"), b"not a zstd stream").unwrap();
    let started = vm::start(&settings, &paths, &mut say).unwrap();
    assert!(matches!(&started, Started::FellBack(why) if why.contains("decompress")), "{started:?}");
    assert!(said.iter().any(|l| l.contains("falling back to a cold boot")), "{said:?}");
    assert!(vm::health(&settings).iter().all(|(_, ok)| *ok));
    let runtime = get(settings.ports.backend, "/runtime.env");
    assert!(runtime.contains(&format!("STACK_EMULATOR_VM_DIR_HOST={}\n", paths.vm.display())), "{runtime}");
    assert_eq!(vm::stop(&settings, &paths).unwrap(), Stopped::PoweredOff);
}

#[test]
fn the_guest_agent_protocol_against_a_real_qemu_ga() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let mut agent = Command::new("qemu-ga")
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir.path())
        .spawn()
        .expect("start qemu-ga (scripts/setup-emulator installs it)");
    let stream = control::qga_synced(&socket, Duration::from_secs(10)).expect("guest-sync");
    let outcome = control::guest_exec(
        &stream,
        "/bin/sh",
        &["-c", "cat; echo oops >&2; exit 3"],
        Some(b"secret input\n"),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.stdout, b"secret input\n", "standard input arrived through the base64 field");
    assert_eq!(outcome.stderr, b"oops\n");
    let _ = agent.kill();
    let _ = agent.wait();
}

/// The command line end to end: `pull` from a GitHub stand-in (then the snapshot capture),
/// `start`, a second `start` that reuses the VM, `status`, `stop`.
#[test]
fn the_command_line_pulls_captures_starts_and_stops() {
    let built = test_vm();
    let image = tempfile::NamedTempFile::new().unwrap();
    let status =
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(image.path()).arg("64M").status().unwrap();
    assert!(status.success());
    let image_bytes = std::fs::read(image.path()).unwrap();
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let api = format!("http://{}", server.server_addr().to_ip().unwrap());
    let asset_url = format!("{api}/asset");
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let response = if request.url() == "/repos/stack-auth/stack-auth/releases/tags/emulator-dev-latest" {
                let body = format!(r#"{{"assets":[{{"name":"stack-emulator-amd64.qcow2","url":"{asset_url}"}}]}}"#);
                tiny_http::Response::from_data(body.into_bytes())
            } else if request.url() == "/asset" {
                tiny_http::Response::from_data(image_bytes.clone())
            } else {
                tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)
            };
            let _ = request.respond(response);
        }
    });
    let home = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..4).map(|_| free_port().to_string()).collect();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_stack-emulator"))
            .args(args)
            .env("STACK_EMULATOR_HOME", home.path())
            .env("STACK_EMULATOR_GITHUB_API_URL", &api)
            .env_remove("GITHUB_TOKEN")
            .env("EMULATOR_ACCEL", "tcg")
            .env("EMULATOR_KERNEL", built.join("vmlinuz"))
            .env("EMULATOR_INITRD", built.join("initramfs.gz"))
            .env("EMULATOR_KERNEL_APPEND", "console=ttyS0 quiet")
            .env("EMULATOR_RAM", "256")
            .env("EMULATOR_CPUS", "1")
            .env("EMULATOR_SNAPSHOT_RAM", "256")
            .env("EMULATOR_SNAPSHOT_CPUS", "1")
            .env("PORT_PREFIX", "302")
            .env("EMULATOR_DASHBOARD_PORT", &ports[0])
            .env("EMULATOR_BACKEND_PORT", &ports[1])
            .env("EMULATOR_MINIO_PORT", &ports[2])
            .env("EMULATOR_INBUCKET_PORT", &ports[3])
            .output()
            .unwrap();
        (
            output.status.code(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let (code, out) = run(&["pull", "--arch", "amd64"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Captured the snapshot"), "{out}");
    let (code, out) = run(&["start", "--arch", "amd64"]);
    if code != Some(0) {
        run(&["stop"]);
    }
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("Resumed from the snapshot") && out.contains(&format!("Backend:   http://127.0.0.1:{}", ports[1])),
        "{out}"
    );
    let (code, out) = run(&["start", "--arch", "amd64"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("already running") && out.contains("reusing it"), "{out}");
    let (code, out) = run(&["status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("VM: running") && out.contains("backend: up") && out.contains("dashboard: up"), "{out}");
    let (code, out) = run(&["stop"]);
    assert_eq!((code, out.trim()), (Some(0), "The emulator stopped."));
    let (code, out) = run(&["reset"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!home.path().join("run").exists() && home.path().join("images/stack-emulator-amd64.savevm.zst").exists());
}
