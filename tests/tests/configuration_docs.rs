//! One configuration loader, documented once: every variable `Config::load`
//! (`shared/src/context.rs`) reads is in the README's configuration table, and no other code of
//! the functions, `shared` or the companion reads the process environment (the system
//! `ConfigSource` adapter is how the loader reads it natively).

use api_tests::{repo_root, rust_sources};

/// The variable names the loader reads: every `source.get("NAME")`.
fn loader_variables() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("shared/src/context.rs")).expect("context.rs");
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
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let names = loader_variables();
    assert!(names.len() > 20, "the loader reads {} variables", names.len());
    let missing: Vec<&String> = names.iter().filter(|n| !documented(&readme, n)).collect();
    assert!(missing.is_empty(), "read by Config::load but not in the README's table: {missing:?}");
}

#[test]
fn nothing_else_reads_the_environment() {
    let mut files = Vec::new();
    for dir in ["shared/src", "companion/src", "router/src"] {
        files.extend(rust_sources(&repo_root().join(dir)));
    }
    for function in std::fs::read_dir(repo_root().join("functions")).unwrap().flatten() {
        files.extend(rust_sources(&function.path().join("src")));
    }
    let readers: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("shared/src/adapters/system.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            // A direct read of the process environment, or of a variable through a
            // `ConfigSource` anywhere but the loader.
            text.contains("env::var(") || (!f.ends_with("shared/src/context.rs") && text.contains(".get(\"STACK_"))
        })
        .map(|f| f.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    assert!(readers.is_empty(), "these read the environment outside Config::load: {readers:?}");
}
