//! Image downloads against a local stand-in for GitHub's API (tiny_http on 127.0.0.1): the
//! release and asset lookups with their headers, `list-releases`, a download cut halfway that
//! the next attempt resumes with a Range request, a server that ignores ranges, and 401 hints.

use std::io::Read;
use std::sync::{Arc, Mutex};

use emulator::download::{partial_path, Quiet};
use emulator::github::{GitHub, ReleaseLine};

#[derive(Debug, Clone)]
struct Seen {
    url: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Serves `size` bytes once in two halves: the first asset request gets half and a closed
/// connection; later ones honour `Range` unless `ranges` is false.
struct FakeGitHub {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A reader that fails after `limit` bytes: the response is cut off mid-body.
struct CutAfter<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for CutAfter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut"));
        }
        let limit = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..limit])?;
        self.left -= n;
        Ok(n)
    }
}

fn asset_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

impl FakeGitHub {
    fn start(size: usize, cut_first: bool, ranges: bool) -> FakeGitHub {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, url) = (seen.clone(), base.clone());
        std::thread::spawn(move || {
            let data = asset_bytes(size);
            let mut asset_requests = 0;
            for request in server.incoming_requests() {
                let entry = Seen {
                    url: request.url().to_string(),
                    headers: request.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect(),
                };
                log.lock().unwrap().push(entry.clone());
                let json = |body: String| {
                    tiny_http::Response::from_string(body)
                        .with_header("content-type: application/json".parse::<tiny_http::Header>().unwrap())
                };
                let path = entry.url.as_str();
                if path == "/repos/acme/app/releases?per_page=50" {
                    let releases = serde_json::json!([
                        { "tag_name": "v2", "name": "App 2", "draft": false, "prerelease": false, "published_at": "2026-11-20T10:00:00Z" },
                        { "tag_name": "emulator-dev-latest", "name": "Emulator", "draft": false, "prerelease": false, "published_at": "2026-11-19T10:00:00Z" },
                        { "tag_name": "emulator-pr-1", "name": "", "draft": false, "prerelease": true, "published_at": "2026-11-18T10:00:00Z" },
                        { "tag_name": "x", "name": "Old EMULATOR build", "draft": false, "prerelease": false, "published_at": "2026-10-01T10:00:00Z" },
                        { "tag_name": "emulator-next", "name": "", "draft": true, "published_at": null, "created_at": "2026-11-21T00:00:00Z" }
                    ]);
                    let _ = request.respond(json(releases.to_string()));
                } else if path == "/repos/acme/app/releases/tags/emulator-dev-latest" {
                    let release = serde_json::json!({ "assets": [
                        { "name": "stack-emulator-arm64.qcow2", "url": format!("{url}/assets/2") },
                        { "name": "stack-emulator-amd64.qcow2", "url": format!("{url}/assets/1") } ] });
                    let _ = request.respond(json(release.to_string()));
                } else if path == "/assets/1" {
                    asset_requests += 1;
                    let range_start = entry
                        .header("range")
                        .and_then(|r| r.strip_prefix("bytes="))
                        .and_then(|r| r.strip_suffix('-'))
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|_| ranges);
                    if asset_requests == 1 && cut_first {
                        let reader = CutAfter { inner: std::io::Cursor::new(data.clone()), left: size / 2 };
                        // A Content-Length (not chunks), as GitHub sends: the client must notice the short body.
                        let response = tiny_http::Response::new(200.into(), vec![], reader, Some(size), None)
                            .with_chunked_threshold(usize::MAX);
                        let _ = request.respond(response);
                    } else if let Some(start) = range_start {
                        let body = data[start..].to_vec();
                        let header = format!("content-range: bytes {start}-{}/{size}", size - 1)
                            .parse::<tiny_http::Header>()
                            .unwrap();
                        let _ = request.respond(
                            tiny_http::Response::from_data(body)
                                .with_status_code(206)
                                .with_header(header)
                                .with_chunked_threshold(usize::MAX),
                        );
                    } else {
                        let _ = request
                            .respond(tiny_http::Response::from_data(data.clone()).with_chunked_threshold(usize::MAX));
                    }
                } else if path.starts_with("/repos/private/") {
                    let _ = request.respond(
                        tiny_http::Response::from_string("{\"message\":\"Bad credentials\"}").with_status_code(401),
                    );
                } else {
                    let _ = request.respond(tiny_http::Response::from_string("not found").with_status_code(404));
                }
            }
        });
        FakeGitHub { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn list_releases_keeps_emulator_releases_and_labels_only_the_newest_latest() {
    let github = FakeGitHub::start(10, false, true);
    let lines = GitHub::new(&github.base, None).list_releases("acme/app").unwrap();
    let line = |tag: &str, status, date: &str| ReleaseLine { tag: tag.into(), status, date: date.into() };
    assert_eq!(
        lines,
        [
            line("emulator-dev-latest", "Latest", "2026-11-19"),
            line("emulator-pr-1", "Pre-release", "2026-11-18"),
            line("x", "Published", "2026-10-01"),
            line("emulator-next", "Draft", "2026-11-21"),
        ]
    );
    let request = &github.seen()[0];
    assert_eq!(request.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
}

#[test]
fn a_download_cut_halfway_resumes_and_only_a_whole_file_gets_the_final_name() {
    let size = 3 * 1024 * 1024 + 17;
    let github = FakeGitHub::start(size, true, true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("stack-emulator-amd64.qcow2");
    // The stand-in keeps a cut connection open, so the cut shows as a stall: keep that short.
    let api = GitHub::new(&github.base, Some("ghp_test".into())).with_stall_timeout(std::time::Duration::from_secs(1));
    let error = api
        .download_release_asset("acme/app", "emulator-dev-latest", "stack-emulator-amd64.qcow2", &dest, &mut Quiet)
        .unwrap_err();
    assert!(error.to_string().contains("run the command again to resume"), "{error}");
    assert!(!dest.exists(), "no partial file under the final name");
    let kept = std::fs::metadata(partial_path(&dest)).unwrap().len();
    assert!(kept > 0 && kept < size as u64, "{kept}");

    api.download_release_asset("acme/app", "emulator-dev-latest", "stack-emulator-amd64.qcow2", &dest, &mut Quiet)
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), asset_bytes(size));
    assert!(!partial_path(&dest).exists());
    let assets: Vec<Seen> = github.seen().into_iter().filter(|s| s.url == "/assets/1").collect();
    assert_eq!(assets.len(), 2);
    assert_eq!(assets[0].header("range"), None);
    assert_eq!(assets[1].header("range"), Some(format!("bytes={kept}-").as_str()));
    assert_eq!(assets[1].header("accept"), Some("application/octet-stream"));
    assert_eq!(assets[1].header("authorization"), Some("Bearer ghp_test"));
}

#[test]
fn a_server_that_ignores_ranges_gets_a_clean_restart() {
    let size = 1024 * 1024;
    let github = FakeGitHub::start(size, true, false);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("image.qcow2");
    let api = GitHub::new(&github.base, None).with_stall_timeout(std::time::Duration::from_secs(1));
    let get = || {
        api.download_release_asset("acme/app", "emulator-dev-latest", "stack-emulator-amd64.qcow2", &dest, &mut Quiet)
    };
    assert!(get().is_err());
    get().unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), asset_bytes(size), "restarted from zero, not appended");
}

#[test]
fn a_missing_asset_and_refused_credentials_say_what_to_do() {
    let github = FakeGitHub::start(10, false, true);
    let dir = tempfile::tempdir().unwrap();
    let api = GitHub::new(&github.base, None);
    let error = api
        .download_release_asset(
            "acme/app",
            "emulator-dev-latest",
            "stack-emulator-riscv.qcow2",
            &dir.path().join("x"),
            &mut Quiet,
        )
        .unwrap_err();
    assert!(error.to_string().contains("list-releases"), "{error}");
    let error = api.list_releases("private/app").unwrap_err();
    assert!(error.to_string().contains("answered 401") && error.to_string().contains("GITHUB_TOKEN"), "{error}");
}

/// `--pr`: the pull request's head branch, its newest successful workflow run, that run's
/// artifact (a zip file), and the image inside it.
#[test]
fn a_pull_requests_build_comes_from_its_newest_successful_run() {
    use std::io::Write;
    let image = asset_bytes(100_000);
    let mut zip_bytes = Vec::new();
    {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut zip_bytes));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("build/stack-emulator-amd64.qcow2", options).unwrap();
        writer.write_all(&image).unwrap();
        writer.finish().unwrap();
    }
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let url = request.url().to_string();
            log.lock().unwrap().push(url.clone());
            let body = match url.as_str() {
                "/repos/acme/app/pulls/42" => br#"{"head":{"ref":"feat/qemu #2"}}"#.to_vec(),
                "/repos/acme/app/actions/workflows/qemu-emulator-build.yaml/runs?branch=feat%2Fqemu+%232&status=success&per_page=1" => {
                    br#"{"workflow_runs":[{"id":777}]}"#.to_vec()
                }
                "/repos/acme/app/actions/runs/777/artifacts?per_page=100" => {
                    br#"{"artifacts":[{"id":5,"name":"qemu-emulator-arm64"},{"id":6,"name":"qemu-emulator-amd64"}]}"#.to_vec()
                }
                "/repos/acme/app/actions/artifacts/6/zip" => zip_bytes.clone(),
                "/repos/acme/app/pulls/43" => br#"{"head":{"ref":"empty"}}"#.to_vec(),
                _ if url.contains("branch=empty") => br#"{"workflow_runs":[]}"#.to_vec(),
                _ => {
                    let _ = request.respond(tiny_http::Response::from_string("no").with_status_code(404));
                    continue;
                }
            };
            let _ = request.respond(tiny_http::Response::from_data(body));
        }
    });
    let api = GitHub::new(&base, Some("ghp_test".into()));
    assert_eq!(api.run_for_pr("acme/app", 42).unwrap(), 777);
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("qemu-emulator-amd64.zip");
    api.download_run_artifact("acme/app", 777, "qemu-emulator-amd64", &zip_path, &mut Quiet).unwrap();
    let dest = dir.path().join("stack-emulator-amd64.qcow2");
    emulator::download::extract_file(&zip_path, "stack-emulator-amd64.qcow2", &dest).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), image);
    let error = api.run_for_pr("acme/app", 43).unwrap_err();
    assert_eq!(error.to_string(), "No successful build found for PR #43 (branch: empty).");
    let error = api.download_run_artifact("acme/app", 777, "qemu-emulator-riscv", &zip_path, &mut Quiet).unwrap_err();
    assert!(error.to_string().contains("has no artifact qemu-emulator-riscv"), "{error}");
}
