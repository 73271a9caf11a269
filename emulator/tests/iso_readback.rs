//! The config disk read back by independent readers: `isoinfo` (genisoimage) for the volume
//! descriptors and both name trees, `xorriso` for contents; and a property test that writes
//! random trees (Unicode names up to the Joliet limit, empty files, deep paths) and extracts
//! them with `xorriso`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use emulator::iso::{build_iso, Entry, CONFIG_VOLUME_ID};
use proptest::prelude::*;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup-emulator installs it)"));
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn isoinfo_reads_the_label_both_name_trees_and_exact_contents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtime-config.iso");
    let binary: Vec<u8> = (0..=255u8).cycle().take(3 * 2048 + 17).collect();
    let entries = [
        Entry::file("runtime.env", "STACK_EMULATOR_PORT_PREFIX=81\n"),
        Entry::file("empty.env", ""),
        Entry::file("base.env", "A=1\n"),
        Entry::file("blob.bin", binary.clone()),
        Entry::file("sector.bin", vec![9u8; 2048]),
    ];
    std::fs::write(&path, build_iso(CONFIG_VOLUME_ID, &entries).unwrap()).unwrap();
    let p = path.to_str().unwrap();
    let info = run("isoinfo", &["-d", "-i", p]);
    assert!(info.contains("Volume id: STACKCFG"), "{info}");
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
    let size: usize = info.lines().find_map(|l| l.strip_prefix("Volume size is: ")).unwrap().trim().parse().unwrap();
    assert_eq!(size * 2048, std::fs::metadata(&path).unwrap().len() as usize);
    let mut iso_names = lines(&run("isoinfo", &["-f", "-i", p])).into_iter().map(str::to_string).collect::<Vec<_>>();
    iso_names.sort();
    assert_eq!(iso_names, ["/BASE.ENV;1", "/BLOB.BIN;1", "/EMPTY.ENV;1", "/RUNTIME.ENV;1", "/SECTOR.BIN;1"]);
    let mut joliet_names =
        lines(&run("isoinfo", &["-J", "-f", "-i", p])).into_iter().map(str::to_string).collect::<Vec<_>>();
    joliet_names.sort();
    assert_eq!(joliet_names, ["/base.env", "/blob.bin", "/empty.env", "/runtime.env", "/sector.bin"]);
    let extract = |name: &str| {
        let output = Command::new("isoinfo").args(["-J", "-x", name, "-i", p]).output().unwrap();
        output.stdout
    };
    assert_eq!(extract("/runtime.env"), b"STACK_EMULATOR_PORT_PREFIX=81\n");
    assert_eq!(extract("/empty.env"), b"");
    assert_eq!(extract("/blob.bin"), binary);
    assert_eq!(extract("/sector.bin"), vec![9u8; 2048]);
    // The Joliet volume id (UCS-2 at bytes 40..56 of sector 17) and its level 3 escape.
    let image = std::fs::read(&path).unwrap();
    let svd = &image[17 * 2048..18 * 2048];
    assert_eq!((svd[0], &svd[1..6]), (2, &b"CD001"[..]));
    let label: Vec<u16> = svd[40..56].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    assert_eq!(String::from_utf16(&label).unwrap(), "STACKCFG");
    assert_eq!(&svd[88..91], &[0x25, 0x2F, 0x45]);
}

/// Every file under `dir` as path -> contents.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                out.insert(format!("{relative}/"), Vec::new());
                stack.push(path);
            } else {
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn expected_tree(entries: &[Entry], prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in entries {
        match entry {
            Entry::File { name, data } => {
                out.insert(format!("{prefix}{name}"), data.clone());
            }
            Entry::Dir { name, children } => {
                out.insert(format!("{prefix}{name}/"), Vec::new());
                expected_tree(children, &format!("{prefix}{name}/"), out);
            }
        }
    }
}

/// Names from letters, digits, accented and CJK characters, spaces and `-_.`, unique within
/// a folder (case-insensitively, as readers on case-insensitive systems need).
fn names(count: std::ops::Range<usize>, max_chars: usize) -> impl Strategy<Value = Vec<String>> {
    let name = proptest::string::string_regex(&format!("[a-zA-Z0-9éüßçøÅΩЖ中文字テスト _.-]{{1,{max_chars}}}"))
        .unwrap()
        .prop_filter("not only dots or spaces", |n| {
            n.trim_matches(|c| c == '.' || c == ' ').len() == n.len() && !n.is_empty()
        });
    proptest::collection::vec(name, count).prop_map(|mut names| {
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.to_lowercase()));
        names
    })
}

fn tree(depth: u32) -> BoxedStrategy<Vec<Entry>> {
    let contents = prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 0..5000)];
    let leaf = (names(1..6, 64), proptest::collection::vec(contents, 6)).prop_map(|(names, data)| {
        names.into_iter().zip(data).map(|(name, data)| Entry::File { name, data }).collect::<Vec<_>>()
    });
    if depth == 0 {
        return leaf.boxed();
    }
    (leaf, names(0..3, 12), proptest::collection::vec(tree(depth - 1), 3))
        .prop_map(|(mut files, dir_names, subtrees)| {
            let taken: std::collections::HashSet<String> = files
                .iter()
                .map(|f| match f {
                    Entry::File { name, .. } | Entry::Dir { name, .. } => name.to_lowercase(),
                })
                .collect();
            for (name, children) in dir_names.into_iter().zip(subtrees) {
                if !taken.contains(&name.to_lowercase()) {
                    files.push(Entry::Dir { name, children });
                }
            }
            files
        })
        .boxed()
}

/// A chain of `depth` nested folders ending in one file (at most ISO 9660's limit).
fn deep_path(depth: usize) -> Entry {
    let mut entry = Entry::file("leaf.txt", b"deep".to_vec());
    for level in (0..depth).rev() {
        entry = Entry::Dir { name: format!("d{level}"), children: vec![entry] };
    }
    entry
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_read_back_identically(entries in tree(2), deep in 1usize..=emulator::iso::MAX_FOLDER_DEPTH) {
        let mut entries = entries;
        entries.push(deep_path(deep));
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("tree.iso");
        let bytes = match build_iso("PROPTEST", &entries) {
            Ok(bytes) => bytes,
            // Folder paths over 255 bytes (long multi-byte names, nested) are refused by design.
            Err(emulator::iso::IsoError::TooDeep(_)) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        std::fs::write(&image, bytes).unwrap();
        let out = dir.path().join("out");
        run("xorriso", &["-osirrox", "on", "-indev", image.to_str().unwrap(), "-extract", "/", out.to_str().unwrap()]);
        let mut expected = BTreeMap::new();
        expected_tree(&entries, "", &mut expected);
        prop_assert_eq!(read_tree(&out), expected);
    }
}
