//! ARCHITECTURE.md's map stays complete: every source file of every crate is named in its
//! crate's block of the map (the lines from `<crate dir>/` at the left margin to the next such
//! line). `lib.rs`, `main.rs` and `mod.rs` are the crate or folder itself and need no entry.

use api_tests::{repo_root, rust_sources};

/// The crates of the map, by folder.
const CRATES: &[&str] = &[
    "shared",
    "functions/refresh",
    "functions/analytics-query",
    "functions/replays",
    "functions/emails",
    "functions/mcp",
    "functions/config",
    "functions/metrics",
    "router",
    "companion",
    "emulator",
    "tests",
    "bench",
];

/// The map's block for `krate`: its `krate/` line and the indented lines under it.
fn block<'a>(map: &'a str, krate: &str) -> Vec<&'a str> {
    let head = format!("{krate}/");
    let mut lines = map.lines().skip_while(|l| !l.starts_with(&head));
    let Some(first) = lines.next() else { return Vec::new() };
    let mut block = vec![first];
    block.extend(lines.take_while(|l| l.starts_with(' ')));
    block
}

#[test]
fn every_source_file_is_in_its_crates_block_of_the_map() {
    let map = std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for krate in CRATES {
        let text = block(&map, krate).join("\n");
        assert!(!text.is_empty(), "ARCHITECTURE.md has no block for {krate}/");
        for file in rust_sources(&repo_root().join(krate).join("src")) {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if ["lib.rs", "main.rs", "mod.rs"].contains(&name.as_str()) {
                continue;
            }
            if !text.contains(&name) {
                missing.push(file.strip_prefix(repo_root()).unwrap().display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "not in ARCHITECTURE.md's map (their crate's block):\n{}", missing.join("\n"));
}
