//! Secret rotation after a resume (docs/api.md §10.4): a snapshot holds the secrets of the
//! machine it was taken on, so every start gets fresh ones, generated here, checked, sent to
//! the guest on the agent's standard input (base64 in the protocol), and never logged. The new
//! publishable client key is the one value written on the host, to a mode-0600 file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::control::{self, ControlError};
use crate::settings::Paths;

pub const KEYS: [&str; 4] = [
    "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY",
    "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY",
    "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY",
    "CRON_SECRET",
];

/// The key a snapshot's guest was built with (upstream's placeholder).
pub fn placeholder_pck() -> String {
    format!("{}{}", "0".repeat(32), "f".repeat(32))
}

/// 64 lowercase hex characters from the OS random source.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_valid_secret(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// With rotation off (`EMULATOR_NO_ROTATION=1`) the guest keeps its placeholder key.
pub fn write_placeholder_pck(paths: &Paths) -> std::io::Result<()> {
    write_private(&paths.internal_pck(), &placeholder_pck())
}

/// Generates the four secrets, records the new publishable key, and has the guest apply them
/// (`/usr/local/bin/trigger-fast-rotate`, which must exit 0).
pub fn rotate(agent: &std::os::unix::net::UnixStream, paths: &Paths) -> Result<(), ControlError> {
    let values: Vec<String> = KEYS.iter().map(|_| new_secret()).collect();
    assert!(values.iter().all(|v| is_valid_secret(v)), "generated secrets are 64 hex characters");
    write_private(&paths.internal_pck(), &values[0]).map_err(|e| control::error("write internal-pck", e))?;
    let input: String = KEYS.iter().zip(&values).map(|(key, value)| format!("{key}={value}\n")).collect();
    let outcome = control::guest_exec(
        agent,
        "/usr/local/bin/trigger-fast-rotate",
        &[],
        Some(input.as_bytes()),
        Duration::from_secs(60),
    )?;
    if outcome.exit_code != Some(0) {
        // The guest's error text, never the input.
        return Err(ControlError(format!(
            "secret rotation failed in the guest (exit {:?}): {}",
            outcome.exit_code,
            String::from_utf8_lossy(&outcome.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_64_hex_characters() {
        let (a, b) = (new_secret(), new_secret());
        assert!(is_valid_secret(&a) && is_valid_secret(&b) && a != b);
        assert!(!is_valid_secret(&a[..63]) && !is_valid_secret(&format!("{}g", &a[..63])));
        assert!(is_valid_secret(&placeholder_pck()));
    }
}
