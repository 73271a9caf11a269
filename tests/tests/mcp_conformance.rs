//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! scripts/setup-edge, run with Node 22 from the cache folder) against `/api/internal/mcp`, on
//! every runtime: the requirement sets of both protocol generations, 2025-11-25 (handshake)
//! and 2026-07-28 (stateless), each judged against `tests/mcp-conformance/expected-failures.yml`
//! by the suite itself. The run fails on a failure the file does not list and on a listed one
//! that passes, so the file names exactly the scenarios this one-tool server cannot serve.

use api_tests::{repo_root, Host};

fn conformance(url: &str, requirements: &str) -> (bool, String) {
    let node_dir = std::env::var("EDGE_NODE").unwrap_or_else(|_| "/var/cache/stack-edge/node".into());
    let bin = std::path::Path::new(&node_dir).join("node_modules/.bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let baseline = repo_root().join("tests/mcp-conformance/expected-failures.yml");
    let output = std::process::Command::new(bin.join("conformance"))
        .args(["server", "--url", url, "--requirements", requirements, "--expected-failures"])
        .arg(&baseline)
        .env("PATH", path)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the MCP conformance suite (installed by scripts/setup-edge)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn the_official_conformance_suite_passes_both_generations_but_the_listed_fixture_scenarios() {
    let h = Host::start(&[]);
    let url = format!("{}/api/internal/mcp", h.base_url);
    for requirements in ["2025-11-25", "2026-07-28"] {
        let url = url.clone();
        let (passed, output) =
            tokio::task::spawn_blocking(move || conformance(&url, requirements)).await.expect("the suite ran");
        assert!(passed, "conformance {requirements}:\n{output}");
        assert!(output.contains("Baseline check passed"), "conformance {requirements}:\n{output}");
    }
}
