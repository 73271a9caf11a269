//! Streamed downloads that never leave a partial file under the final name: bytes go to
//! `<dest>.download`, which a later attempt resumes with a `Range` request (or restarts when
//! the server ignores it), and only a complete file is renamed into place.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("download of {url} failed: {reason} (the {done} bytes so far are kept in {partial}; run the command again to resume)")]
    Interrupted { url: String, reason: String, done: u64, partial: String },
    #[error("download of {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("could not write {path}: {reason}")]
    File { path: String, reason: String },
}

/// Where progress goes: done and total bytes (total 0 when unknown) and the speed.
pub trait Progress {
    fn update(&mut self, done: u64, total: u64, bytes_per_second: f64);
    fn finish(&mut self, done: u64, total: u64, bytes_per_second: f64);
}

/// Progress nobody sees (tests, scripts).
pub struct Quiet;

impl Progress for Quiet {
    fn update(&mut self, _: u64, _: u64, _: f64) {}
    fn finish(&mut self, _: u64, _: u64, _: f64) {}
}

pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".download");
    dest.with_file_name(name)
}

fn file_error(path: &Path, e: std::io::Error) -> DownloadError {
    DownloadError::File { path: path.display().to_string(), reason: e.to_string() }
}

/// A connection that delivers nothing for this long is given up (the partial file stays).
pub const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The client downloads use: no limit on the whole transfer (images are gigabytes), but one on
/// connecting and on each read (`stall`).
pub fn http_client(stall: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("stack-emulator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(stall)
        .build()
        .expect("an HTTP client")
}

/// Downloads `url` to `dest` (`Accept: application/octet-stream`, the bearer `token` if any),
/// resuming what an earlier attempt left in `<dest>.download`.
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    dest: &Path,
    progress: &mut dyn Progress,
) -> Result<u64, DownloadError> {
    let partial = partial_path(dest);
    let have = std::fs::metadata(&partial).map_or(0, |m| m.len());
    let mut request = client.get(url).header("accept", "application/octet-stream");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if have > 0 {
        request = request.header("range", format!("bytes={have}-"));
    }
    let interrupted = |reason: String, done: u64| DownloadError::Interrupted {
        url: url.to_string(),
        reason,
        done,
        partial: partial.display().to_string(),
    };
    let mut response = request.send().await.map_err(|e| interrupted(e.to_string(), have))?;
    let status = response.status().as_u16();
    let (mut done, append) = match status {
        206 => (have, true),
        200 => (0, false),
        // The partial file is already whole (or longer than the file now is): start over.
        416 => {
            std::fs::remove_file(&partial).map_err(|e| file_error(&partial, e))?;
            return Box::pin(download(client, url, token, dest, progress)).await;
        }
        _ => return Err(DownloadError::Status { url: url.to_string(), status }),
    };
    let total = response.content_length().map_or(0, |len| len + done);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&partial)
        .map_err(|e| file_error(&partial, e))?;
    let started = Instant::now();
    let start_done = done;
    let speed = |done: u64| {
        let seconds = started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            (done - start_done) as f64 / seconds
        } else {
            0.0
        }
    };
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                file.flush().map_err(|e| file_error(&partial, e))?;
                return Err(interrupted(e.to_string(), done));
            }
        };
        file.write_all(&chunk).map_err(|e| file_error(&partial, e))?;
        done += chunk.len() as u64;
        progress.update(done, total, speed(done));
    }
    file.sync_all().map_err(|e| file_error(&partial, e))?;
    if total > 0 && done != total {
        return Err(interrupted(format!("the connection closed after {done} of {total} bytes"), done));
    }
    progress.finish(done, total, speed(done));
    std::fs::rename(&partial, dest).map_err(|e| file_error(dest, e))?;
    Ok(done)
}

/// Extracts the entry `name` (at any depth) of the zip file `zip` to `dest`, through a
/// temporary file and a rename.
pub fn extract_file(zip: &Path, name: &str, dest: &Path) -> Result<(), DownloadError> {
    let open_error =
        |e: &dyn std::fmt::Display| DownloadError::File { path: zip.display().to_string(), reason: e.to_string() };
    let file = std::fs::File::open(zip).map_err(|e| open_error(&e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| open_error(&e))?;
    let index = (0..archive.len())
        .find(|&i| archive.name_for_index(i).is_some_and(|n| n == name || n.ends_with(&format!("/{name}"))))
        .ok_or_else(|| open_error(&format!("the artifact has no {name}")))?;
    let mut entry = archive.by_index(index).map_err(|e| open_error(&e))?;
    let tmp = partial_path(dest);
    let mut out = std::fs::File::create(&tmp).map_err(|e| file_error(&tmp, e))?;
    std::io::copy(&mut entry, &mut out).map_err(|e| file_error(&tmp, e))?;
    out.sync_all().map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| file_error(dest, e))
}
