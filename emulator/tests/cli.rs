//! The `stack-emulator` command line as a user runs it (upstream's CLI e2e cases, and the
//! commands on an empty emulator home).

use std::process::{Command, Output};

fn cli(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stack-emulator"))
        .args(args)
        .env("STACK_EMULATOR_HOME", home)
        .env_remove("GITHUB_TOKEN")
        .output()
        .expect("run stack-emulator")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn help_lists_the_commands_and_their_flags() {
    let home = tempfile::tempdir().unwrap();
    let help = text(&cli(home.path(), &["--help"]));
    for command in ["pull", "start", "stop", "reset", "status", "list-releases", "capture"] {
        assert!(help.contains(command), "{command} in {help}");
    }
    let pull = text(&cli(home.path(), &["pull", "--help"]));
    for flag in ["--arch", "--branch", "--tag", "--repo", "--pr", "--run", "--skip-snapshot"] {
        assert!(pull.contains(flag), "{flag} in {pull}");
    }
    assert!(text(&cli(home.path(), &["list-releases", "--help"])).contains("--repo"));
}

#[test]
fn an_unknown_architecture_is_refused_with_upstreams_message() {
    let home = tempfile::tempdir().unwrap();
    let output = cli(home.path(), &["pull", "--arch", "sparc"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("Invalid architecture: sparc. Expected arm64 or amd64."), "{}", text(&output));
    assert!(!home.path().join("images").exists(), "nothing was written");
}

#[test]
fn commands_on_an_empty_home_say_what_is_going_on() {
    let home = tempfile::tempdir().unwrap();
    let status = cli(home.path(), &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(text(&status).contains("VM: stopped"), "{}", text(&status));
    let stop = cli(home.path(), &["stop"]);
    assert!(stop.status.success() && text(&stop).contains("not running"), "{}", text(&stop));
    let capture = cli(home.path(), &["capture", "--arch", "amd64"]);
    assert_eq!(capture.status.code(), Some(1));
    assert!(text(&capture).contains("Run `stack-emulator pull` first"), "{}", text(&capture));
    let bad_port = Command::new(env!("CARGO_BIN_EXE_stack-emulator"))
        .args(["status"])
        .env("STACK_EMULATOR_HOME", home.path())
        .env("EMULATOR_BACKEND_PORT", "3.14")
        .output()
        .unwrap();
    assert!(text(&bad_port).contains("Invalid EMULATOR_BACKEND_PORT: 3.14"), "{}", text(&bad_port));
}

#[test]
fn list_releases_from_a_configured_api() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let body = if request.url().starts_with("/repos/acme/empty/") {
                "[]".to_string()
            } else {
                r#"[{"tag_name":"emulator-dev-latest","name":"","draft":false,"prerelease":false,"published_at":"2026-11-19T10:00:00Z"}]"#.to_string()
            };
            let _ = request.respond(tiny_http::Response::from_string(body));
        }
    });
    let home = tempfile::tempdir().unwrap();
    let run = |repo: &str| {
        Command::new(env!("CARGO_BIN_EXE_stack-emulator"))
            .args(["list-releases", "--repo", repo])
            .env("STACK_EMULATOR_HOME", home.path())
            .env("STACK_EMULATOR_GITHUB_API_URL", &base)
            .env_remove("GITHUB_TOKEN")
            .output()
            .unwrap()
    };
    let listed = run("acme/app");
    assert!(listed.status.success(), "{}", text(&listed));
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "emulator-dev-latest\tLatest\t2026-11-19\n");
    assert_eq!(String::from_utf8_lossy(&run("acme/empty").stdout), "No emulator releases found.\n");
}
