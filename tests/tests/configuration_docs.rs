//! One configuration loader, documented once: every variable `Config::load`
//! (`shared/src/context.rs`) reads is in the README's configuration table, and no other code of
//! the functions, `shared` or the companion reads the process environment (the system
//! `ConfigSource` adapter is how the loader reads it natively).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_path_buf()
}

/// The variable names the loader reads: every `source.get("NAME")`.
fn loader_variables() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("shared/src/context.rs")).expect("context.rs");
    text.split("source.get(\"").skip(1).filter_map(|rest| rest.split('"').next()).map(String::from).collect()
}

/// Whether the README's table documents `name`, written out or as a suffix after a row's first
/// name (`` `STACK_EMAIL_HOST` / `_PORT` `` documents `STACK_EMAIL_PORT`).
fn documented(readme: &str, name: &str) -> bool {
    readme.lines().filter(|l| l.starts_with("| `")).any(|line| {
        line.contains(&format!("`{name}`"))
            || name.match_indices('_').any(|(i, _)| {
                let (head, tail) = (&name[..i], &name[i..]);
                line.contains(&format!("`{tail}`")) && line.split('|').nth(1).is_some_and(|c| c.contains(head))
            })
    })
}

#[test]
fn every_variable_the_loader_reads_is_in_the_readme() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let names = loader_variables();
    assert!(names.len() > 20, "the loader reads {} variables", names.len());
    let missing: Vec<&String> = names.iter().filter(|n| !documented(&readme, n)).collect();
    assert!(missing.is_empty(), "read by Config::load but not in the README's table: {missing:?}");
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_else_reads_the_environment() {
    let mut files = Vec::new();
    for dir in ["shared/src", "companion/src", "router/src"] {
        sources(&repo().join(dir), &mut files);
    }
    for function in std::fs::read_dir(repo().join("functions")).unwrap().flatten() {
        sources(&function.path().join("src"), &mut files);
    }
    let readers: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("shared/src/adapters/system.rs"))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("env::var("))
        .map(|f| f.strip_prefix(repo()).unwrap().display().to_string())
        .collect();
    assert!(readers.is_empty(), "these read the environment outside Config::load: {readers:?}");
}
