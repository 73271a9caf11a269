//! How the CLI shows sizes, durations and download progress (docs/api.md §10.1), and how it
//! reads its environment: ports, the architecture, install hints for missing tools.

/// Bytes in base 1024 with units B, KB, MB, GB, TB: one decimal below 10 (except bytes),
/// none above. Not a finite, non-negative number: `?`.
pub fn format_bytes(bytes: f64) -> String {
    if !bytes.is_finite() || bytes < 0.0 {
        return "?".into();
    }
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 && unit > 0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Seconds, rounded, as `Ns`, `MmSSs` or `HhMMm`. Not a finite, non-negative number: `?`.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

const BAR_WIDTH: usize = 30;

/// One progress line: `  [bar] pct%  done/total  speed/s  eta d`. An unknown total (0) shows
/// `?` and the bytes so far, without a percentage or ETA; no ETA while the speed is 0.
pub fn render_progress_line(done: u64, total: u64, bytes_per_second: f64) -> String {
    let speed = format!("{}/s", format_bytes(bytes_per_second));
    if total == 0 {
        return format!("  ?  {}  {speed}", format_bytes(done as f64));
    }
    let fraction = (done as f64 / total as f64).min(1.0);
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    let bar: String = "█".repeat(filled) + &"░".repeat(BAR_WIDTH - filled);
    let mut line = format!(
        "  [{bar}] {:>5.1}%  {}/{}  {speed}",
        fraction * 100.0,
        format_bytes(done as f64),
        format_bytes(total as f64)
    );
    if bytes_per_second > 0.0 {
        let remaining = total.saturating_sub(done) as f64 / bytes_per_second;
        line.push_str(&format!("  eta {}", format_duration(remaining)));
    }
    line
}

/// A port from the environment: unset or empty gives `fallback`; anything but a positive
/// integer is an error naming the variable.
pub fn env_port(name: &str, value: Option<&str>, fallback: u16) -> Result<u16, String> {
    match value {
        None | Some("") => Ok(fallback),
        Some(raw) => match raw.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("Invalid {name}: {raw}")),
        },
    }
}

/// The VM architecture: `arm64` or `amd64` as given, else the host's.
pub fn resolve_arch(requested: Option<&str>) -> Result<&'static str, String> {
    let arch = requested.unwrap_or(match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86_64" => "amd64",
        other => other,
    });
    match arch {
        "arm64" => Ok("arm64"),
        "amd64" => Ok("amd64"),
        other => Err(format!("Invalid architecture: {other}. Expected arm64 or amd64.")),
    }
}

/// How to install a missing tool on `platform` (`std::env::consts::OS` values).
pub fn install_hint(platform: &str, mac_package: &str, linux_package: &str) -> String {
    match platform {
        "macos" | "darwin" => format!("brew install {mac_package}"),
        "linux" => format!("apt install {linux_package} (or your distro's equivalent)"),
        _ => format!("install {mac_package}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: f64 = 1024.0;

    #[test]
    fn bytes_as_upstream_shows_them() {
        for (bytes, text) in [
            (0.0, "0 B"),
            (1.0, "1 B"),
            (1023.0, "1023 B"),
            (KIB, "1.0 KB"),
            (1536.0, "1.5 KB"),
            (KIB * KIB, "1.0 MB"),
            (KIB * KIB * KIB, "1.0 GB"),
            (KIB.powi(4), "1.0 TB"),
            (10.0 * KIB, "10 KB"),
            (9.5 * KIB, "9.5 KB"),
        ] {
            assert_eq!(format_bytes(bytes), text, "{bytes}");
        }
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(format_bytes(bad), "?");
        }
        assert!(format_bytes(KIB.powi(6)).ends_with(" TB"));
    }

    #[test]
    fn durations_as_upstream_shows_them() {
        for (seconds, text) in [
            (0.0, "0s"),
            (59.0, "59s"),
            (60.0, "1m00s"),
            (61.0, "1m01s"),
            (3599.0, "59m59s"),
            (3600.0, "1h00m"),
            (3660.0, "1h01m"),
            (59.4, "59s"),
            (59.9, "1m00s"),
        ] {
            assert_eq!(format_duration(seconds), text, "{seconds}");
        }
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(format_duration(bad), "?");
        }
    }

    #[test]
    fn progress_lines() {
        let half = render_progress_line(1024, 2048, 512.0);
        assert!(half.contains("50.0%") && half.contains('/') && half.contains("/s") && half.contains("eta"), "{half}");
        assert_eq!(half, "  [███████████████░░░░░░░░░░░░░░░]  50.0%  1.0 KB/2.0 KB  512 B/s  eta 2s");
        let unknown = render_progress_line(1024, 0, 512.0);
        assert!(!unknown.contains('%') && !unknown.contains("eta") && unknown.contains("/s"), "{unknown}");
        assert!(render_progress_line(2050, 2048, 10.0).contains("100.0%"));
        assert!(!render_progress_line(1, 2048, 0.0).contains("eta"));
    }

    #[test]
    fn ports_from_the_environment() {
        assert_eq!(env_port("__TEST_PORT", None, 1234), Ok(1234));
        assert_eq!(env_port("__TEST_PORT", Some(""), 1234), Ok(1234));
        assert_eq!(env_port("__TEST_PORT", Some("9876"), 1234), Ok(9876));
        for bad in ["0", "-5", "3.14", "not-a-port", "70000"] {
            let error = env_port("__TEST_PORT", Some(bad), 1234).unwrap_err();
            assert_eq!(error, format!("Invalid __TEST_PORT: {bad}"));
        }
    }

    #[test]
    fn architectures() {
        assert_eq!(resolve_arch(Some("arm64")), Ok("arm64"));
        assert_eq!(resolve_arch(Some("amd64")), Ok("amd64"));
        for bad in ["mips", "x86", "sparc"] {
            assert_eq!(
                resolve_arch(Some(bad)).unwrap_err(),
                format!("Invalid architecture: {bad}. Expected arm64 or amd64.")
            );
        }
        match std::env::consts::ARCH {
            "x86_64" => assert_eq!(resolve_arch(None), Ok("amd64")),
            "aarch64" => assert_eq!(resolve_arch(None), Ok("arm64")),
            _ => assert!(resolve_arch(None).is_err()),
        }
    }

    #[test]
    fn install_hints_per_platform() {
        assert_eq!(install_hint("macos", "foo-mac", "foo-linux"), "brew install foo-mac");
        assert_eq!(
            install_hint("linux", "foo-mac", "foo-linux"),
            "apt install foo-linux (or your distro's equivalent)"
        );
        assert_eq!(install_hint("windows", "foo-mac", "foo-linux"), "install foo-mac");
    }
}
