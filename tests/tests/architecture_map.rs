//! The docs the code relies on stay true: ARCHITECTURE.md's map names every source file of
//! every crate in its crate's block (the lines from `<crate dir>/` at the left margin to the
//! next such line; `lib.rs`, `main.rs` and `mod.rs` are the crate or folder itself), and every
//! `docs/api.md §N.M` a source or doc cites is a section of docs/api.md.

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

/// The section numbers `text` cites as `docs/api.md §N.M` (ranges `§a-§b` cite both ends).
fn cited_sections(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("docs/api.md ") {
        let rest = &text[at + "docs/api.md ".len()..];
        let cited: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ')' && *c != ',').collect();
        for part in cited.split('-') {
            if let Some(number) = part.strip_prefix('§') {
                out.push(number.trim_end_matches(['.', ':', ';']).to_string());
            }
        }
    }
    out
}

#[test]
fn every_cited_api_section_exists() {
    let api = std::fs::read_to_string(repo_root().join("docs/api.md")).expect("docs/api.md");
    let sections: Vec<String> = api
        .lines()
        .filter(|l| l.starts_with("## ") || l.starts_with("### "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| n.trim_end_matches('.').to_string())
        .collect();
    let mut files = Vec::new();
    for krate in CRATES {
        files.extend(rust_sources(&repo_root().join(krate).join("src")));
    }
    // This file names the patterns it looks for.
    files.extend(
        rust_sources(&repo_root().join("tests/tests")).into_iter().filter(|f| !f.ends_with("architecture_map.rs")),
    );
    for doc in ["README.md", "ARCHITECTURE.md", "docs/upstream-differences.md", "docs/security.md"] {
        files.push(repo_root().join(doc));
    }
    let mut missing = Vec::new();
    let mut cited = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // The contract the port was written from is not in the repository; docs/api.md is.
        let lower = text.to_lowercase();
        if lower.contains("contract part ") || lower.contains("contract §") {
            missing.push(format!("{}: cites the upstream contract, not docs/api.md", file.display()));
        }
        for section in cited_sections(&text) {
            cited += 1;
            if !sections.contains(&section) {
                missing.push(format!("{}: §{section}", file.strip_prefix(repo_root()).unwrap().display()));
            }
        }
    }
    assert!(cited > 50, "only {cited} citations of docs/api.md found");
    assert!(missing.is_empty(), "cited but not a section of docs/api.md:\n{}", missing.join("\n"));
}
