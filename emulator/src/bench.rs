//! `stack-emulator bench` (a benchmark, not a test): time from `start` to every service
//! answering, resumed from the snapshot against a cold boot, for the configured image; and the
//! in-process ISO writer against `xorriso -as mkisofs` on the same tree.

use std::time::{Duration, Instant};

use crate::iso::{build_iso, Entry};
use crate::settings::{Paths, Settings};
use crate::vm::{self, Started, VmError};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub fn run(settings: &Settings, paths: &Paths, rounds: usize) -> Result<(), VmError> {
    let mut quiet = |_: &str| {};
    vm::stop(settings, paths)?;
    if !paths.snapshot(settings.arch).exists() {
        vm::capture(settings, paths, &mut quiet)?;
    }
    let mut timings = |no_snapshot: bool, expect: Started| -> Result<Vec<Duration>, VmError> {
        let settings = Settings { no_snapshot, ..settings.clone() };
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let how = vm::start(&settings, paths, &mut quiet)?;
            samples.push(started.elapsed());
            vm::stop(&settings, paths)?;
            if how != expect {
                return Err(VmError(format!("expected {expect:?}, got {how:?}")));
            }
        }
        Ok(samples)
    };
    let cold = timings(true, Started::ColdBoot)?;
    let resumed = timings(false, Started::Resumed)?;
    println!("| start | rounds | median ms | min ms | max ms |");
    println!("|---|---|---|---|---|");
    for (name, samples) in [("cold boot", cold), ("resume from snapshot", resumed)] {
        let (min, max) = (*samples.iter().min().unwrap(), *samples.iter().max().unwrap());
        println!("| {name} | {} | {} | {} | {} |", samples.len(), ms(median(samples)), ms(min), ms(max));
    }

    // The ISO writers on the same tree: the runtime config plus 200 files of 8 KiB.
    let mut entries = vec![Entry::file("runtime.env", "STACK_EMULATOR_PORT_PREFIX=81\n"), Entry::file("base.env", "")];
    entries.extend((0..200).map(|i| Entry::file(&format!("file-{i:03}.bin"), vec![i as u8; 8192])));
    let dir = std::env::temp_dir().join(format!("stack-emulator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| VmError(e.to_string()))?;
    for entry in &entries {
        if let Entry::File { name, data } = entry {
            std::fs::write(dir.join(name), data).map_err(|e| VmError(e.to_string()))?;
        }
    }
    let iso_rounds = 20;
    let ours: Vec<Duration> = (0..iso_rounds)
        .map(|_| {
            let t = Instant::now();
            let image = build_iso("STACKCFG", &entries).expect("the bench tree is valid");
            std::hint::black_box(image);
            t.elapsed()
        })
        .collect();
    let out = dir.with_extension("iso");
    let mut xorriso = Vec::new();
    for _ in 0..iso_rounds {
        let t = Instant::now();
        let status = std::process::Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-J", "-V", "STACKCFG", "-o"])
            .arg(&out)
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| VmError(format!("run xorriso: {e}")))?;
        xorriso.push(t.elapsed());
        if !status.success() {
            return Err(VmError("xorriso failed".into()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&out);
    println!();
    println!("| ISO writer (202 files, 1.6 MiB) | rounds | median ms |");
    println!("|---|---|---|");
    println!("| hadris-iso, in process | {iso_rounds} | {} |", ms(median(ours)));
    println!("| xorriso -as mkisofs (process) | {iso_rounds} | {} |", ms(median(xorriso)));
    Ok(())
}
