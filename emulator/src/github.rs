//! The GitHub-compatible API the images come from (docs/api.md §10.1): releases and their
//! assets, and for `--pr` / `--run` the workflow runs and their artifacts. The base URL is
//! configurable (`STACK_EMULATOR_GITHUB_API_URL`), so a mirror or a test server can stand in.

use serde_json::Value;

use crate::download::{download, http_client, DownloadError, Progress};

pub const DEFAULT_API_URL: &str = "https://api.github.com";
pub const DEFAULT_REPO: &str = "stack-auth/stack-auth";
/// The workflow whose artifacts `--pr` and `--run` take images from.
pub const WORKFLOW: &str = "qemu-emulator-build.yaml";

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Download(#[from] DownloadError),
}

fn message(text: impl Into<String>) -> GitHubError {
    GitHubError::Message(text.into())
}

/// A blocking client (the CLI is synchronous) over reqwest's async one, which has a per-read
/// timeout: a stalled download fails instead of hanging, a slow one is never cut off.
pub struct GitHub {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// One line of `list-releases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseLine {
    pub tag: String,
    /// `Draft`, `Pre-release`, `Latest` (the newest published release) or `Published`.
    pub status: &'static str,
    /// `YYYY-MM-DD` of publication (creation for drafts).
    pub date: String,
}

impl GitHub {
    pub fn new(base: &str, token: Option<String>) -> GitHub {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let client = runtime.block_on(async { http_client(crate::download::STALL_TIMEOUT) });
        GitHub { base: base.trim_end_matches('/').to_string(), token: token.filter(|t| !t.is_empty()), client, runtime }
    }

    /// The API from `STACK_EMULATOR_GITHUB_API_URL` (default api.github.com) and a token from
    /// `GITHUB_TOKEN`, else from `gh auth token` when the GitHub CLI is there.
    pub fn from_env() -> GitHub {
        let base = std::env::var("STACK_EMULATOR_GITHUB_API_URL").unwrap_or_else(|_| DEFAULT_API_URL.into());
        let token = std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| {
            let output = std::process::Command::new("gh").args(["auth", "token"]).output().ok()?;
            output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        });
        GitHub::new(&base, token)
    }

    /// Gives up on a connection that sends nothing for `stall` (default one minute).
    pub fn with_stall_timeout(mut self, stall: std::time::Duration) -> GitHub {
        self.client = self.runtime.block_on(async { http_client(stall) });
        self
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    fn get_json(&self, path: &str) -> Result<Value, GitHubError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .get(&url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = self
            .runtime
            .block_on(async { request.send().await })
            .map_err(|e| message(format!("GitHub API request failed ({url}): {e}")))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let hint = if status == 401 || status == 403 {
                " Set GITHUB_TOKEN (or log in with `gh auth login`) and try again."
            } else {
                ""
            };
            return Err(message(format!("GitHub API {path} answered {status}.{hint}")));
        }
        self.runtime
            .block_on(async { response.json().await })
            .map_err(|e| message(format!("GitHub API {path} answered something that is not JSON: {e}")))
    }

    /// Emulator releases of `repo`, newest first, at most 20.
    pub fn list_releases(&self, repo: &str) -> Result<Vec<ReleaseLine>, GitHubError> {
        let releases = self.get_json(&format!("/repos/{repo}/releases?per_page=50"))?;
        let mut latest_seen = false;
        let lines = releases
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                let text = format!(
                    "{} {}",
                    r["tag_name"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                );
                text.to_lowercase().contains("emulator")
            })
            .take(20)
            .map(|r| {
                let status = if r["draft"] == true {
                    "Draft"
                } else if r["prerelease"] == true {
                    "Pre-release"
                } else if !latest_seen {
                    latest_seen = true;
                    "Latest"
                } else {
                    "Published"
                };
                let date = r["published_at"].as_str().or(r["created_at"].as_str()).unwrap_or_default();
                ReleaseLine {
                    tag: r["tag_name"].as_str().unwrap_or_default().to_string(),
                    status,
                    date: date.chars().take(10).collect(),
                }
            })
            .collect();
        Ok(lines)
    }

    /// Downloads the release asset `asset` of `tag` to `dest` (through `<dest>.download`).
    pub fn download_release_asset(
        &self,
        repo: &str,
        tag: &str,
        asset: &str,
        dest: &std::path::Path,
        progress: &mut dyn Progress,
    ) -> Result<(), GitHubError> {
        let release = self.get_json(&format!("/repos/{repo}/releases/tags/{tag}"))?;
        let found = release["assets"].as_array().into_iter().flatten().find(|a| a["name"] == asset);
        let Some(url) = found.and_then(|a| a["url"].as_str()) else {
            return Err(message(format!(
                "Release {tag} has no asset {asset}. Run `stack-emulator list-releases` to see the releases there are."
            )));
        };
        self.runtime.block_on(download(&self.client, url, self.token.as_deref(), dest, progress))?;
        Ok(())
    }

    /// The newest successful run of the emulator workflow for pull request `pr`.
    pub fn run_for_pr(&self, repo: &str, pr: u64) -> Result<u64, GitHubError> {
        let pull = self.get_json(&format!("/repos/{repo}/pulls/{pr}"))?;
        let head =
            pull["head"]["ref"].as_str().ok_or_else(|| message(format!("Pull request #{pr} has no head branch.")))?;
        let runs = self.get_json(&format!(
            "/repos/{repo}/actions/workflows/{WORKFLOW}/runs?branch={}&status=success&per_page=1",
            url::form_urlencoded::byte_serialize(head.as_bytes()).collect::<String>()
        ))?;
        runs["workflow_runs"][0]["id"]
            .as_u64()
            .ok_or_else(|| message(format!("No successful build found for PR #{pr} (branch: {head}).")))
    }

    /// Downloads the artifact `name` of workflow run `run` (a zip file) to `dest`.
    pub fn download_run_artifact(
        &self,
        repo: &str,
        run: u64,
        name: &str,
        dest: &std::path::Path,
        progress: &mut dyn Progress,
    ) -> Result<(), GitHubError> {
        let artifacts = self.get_json(&format!("/repos/{repo}/actions/runs/{run}/artifacts?per_page=100"))?;
        let found = artifacts["artifacts"].as_array().into_iter().flatten().find(|a| a["name"] == name);
        let Some(id) = found.and_then(|a| a["id"].as_u64()) else {
            return Err(message(format!("Workflow run {run} has no artifact {name}.")));
        };
        let url = format!("{}/repos/{repo}/actions/artifacts/{id}/zip", self.base);
        self.runtime.block_on(download(&self.client, &url, self.token.as_deref(), dest, progress))?;
        Ok(())
    }
}
