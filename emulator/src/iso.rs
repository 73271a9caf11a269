//! The runtime config disk (docs/api.md §10.1-§10.2): an ISO 9660 image with Joliet names,
//! volume label `STACKCFG`, that the guest mounts by label. Written in-process with
//! `hadris-iso`, so no host tool (mkisofs, genisoimage, hdiutil) is needed.
//!
//! Unlike upstream's writer this takes directory trees, and names follow the ISO level 3 rules
//! in the primary tree (upper case, `;1`) and stay as given, in UCS-2, in the Joliet tree.

use std::path::Path;
use std::sync::Arc;

use hadris_iso::joliet::JolietLevel;
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};

/// The label the guest looks the config disk up by (`/dev/disk/by-label/STACKCFG`).
pub const CONFIG_VOLUME_ID: &str = "STACKCFG";
/// Joliet names are at most 64 UCS-2 characters.
pub const MAX_JOLIET_NAME_CHARS: usize = 64;

/// A file or folder to put on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { name: String, data: Vec<u8> },
    Dir { name: String, children: Vec<Entry> },
}

impl Entry {
    pub fn file(name: &str, data: impl Into<Vec<u8>>) -> Entry {
        Entry::File { name: name.into(), data: data.into() }
    }

    fn to_iso(&self) -> IsoFile {
        match self {
            Entry::File { name, data } => IsoFile::File { name: Arc::new(name.clone()), contents: data.clone() },
            Entry::Dir { name, children } => IsoFile::Directory {
                name: Arc::new(name.clone()),
                children: children.iter().map(Entry::to_iso).collect(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error(
        "a name on the config disk is empty, contains '/', or is longer than {MAX_JOLIET_NAME_CHARS} characters: {0:?}"
    )]
    BadName(String),
    #[error("the folder {0:?} is deeper than ISO 9660 allows ({MAX_FOLDER_DEPTH} nested folders, folder paths of 255 bytes)")]
    TooDeep(String),
    #[error("could not write the ISO image: {0}")]
    Write(String),
}

/// ISO 9660 allows eight directory levels counting the root, and folder paths of 255 bytes.
pub const MAX_FOLDER_DEPTH: usize = 7;
const MAX_FOLDER_PATH_BYTES: usize = 255;

fn check_names(entries: &[Entry], depth: usize, parent: &str) -> Result<(), IsoError> {
    for entry in entries {
        let (name, children) = match entry {
            Entry::File { name, .. } => (name, None),
            Entry::Dir { name, children } => (name, Some(children)),
        };
        // Joliet stores UCS-2: characters outside the basic plane would need two units.
        let bad = name.is_empty()
            || name.contains('/')
            || name.chars().count() > MAX_JOLIET_NAME_CHARS
            || name.chars().any(|c| c as u32 > 0xFFFF);
        if bad {
            return Err(IsoError::BadName(name.clone()));
        }
        if let Some(children) = children {
            let path = if parent.is_empty() { name.clone() } else { format!("{parent}/{name}") };
            if depth + 1 > MAX_FOLDER_DEPTH || path.len() > MAX_FOLDER_PATH_BYTES {
                return Err(IsoError::TooDeep(path));
            }
            check_names(children, depth + 1, &path)?;
        }
    }
    Ok(())
}

/// The image bytes for `entries` under `volume_id` (at most 32 ASCII characters in the primary
/// descriptor, 16 in Joliet's).
pub fn build_iso(volume_id: &str, entries: &[Entry]) -> Result<Vec<u8>, IsoError> {
    check_names(entries, 0, "")?;
    let files =
        InputFiles { path_separator: PathSeparator::ForwardSlash, files: entries.iter().map(Entry::to_iso).collect() };
    let options = IsoFormatOptions {
        volume_name: volume_id.chars().take(32).collect(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: None,
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        features: CreationFeatures {
            filenames: BaseIsoLevel::Level3 { supports_lowercase: false, supports_rrip: false },
            joliet: Some(JolietLevel::Level3),
            ..CreationFeatures::default()
        },
        strict_charset: false,
    };
    let written = IsoImageWriter::create(std::io::Cursor::new(Vec::new()), files, options)
        .map_err(|e| IsoError::Write(format!("{e:?}")))?;
    Ok(written.into_inner())
}

/// Writes the image to `path` through a temporary file and a rename, so a reader never sees a
/// half-written disk.
pub fn write_iso(path: &Path, volume_id: &str, entries: &[Entry]) -> Result<(), IsoError> {
    let bytes = build_iso(volume_id, entries)?;
    let tmp = path.with_extension("iso.tmp");
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| IsoError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_whole_sectors_with_the_volume_descriptors_in_place() {
        for size in [0usize, 1, 2047, 2048, 2049, 5 * 2048 - 1] {
            let iso = build_iso(CONFIG_VOLUME_ID, &[Entry::file("runtime.env", vec![7u8; size])]).unwrap();
            assert_eq!(iso.len() % 2048, 0, "{size}");
            assert_eq!((iso[16 * 2048], &iso[16 * 2048 + 1..16 * 2048 + 6]), (1, &b"CD001"[..]));
            assert_eq!(&iso[16 * 2048 + 40..16 * 2048 + 48], b"STACKCFG");
            let declared = u32::from_le_bytes(iso[16 * 2048 + 80..16 * 2048 + 84].try_into().unwrap()) as usize;
            assert_eq!(declared * 2048, iso.len());
        }
    }

    #[test]
    fn a_long_volume_id_is_cut_to_32_characters_and_the_descriptors_stay_valid() {
        let id = "V".repeat(64);
        let iso = build_iso(&id, &[Entry::file("a", "x")]).unwrap();
        assert_eq!(&iso[16 * 2048 + 40..16 * 2048 + 72], "V".repeat(32).as_bytes());
        assert_eq!(iso[16 * 2048 + 881], 1, "file structure version");
        assert_eq!((iso[17 * 2048], &iso[17 * 2048 + 1..17 * 2048 + 6]), (2, &b"CD001"[..]));
        let terminator = (17..32).find(|s| iso[s * 2048] == 255).expect("a terminator descriptor");
        assert_eq!(&iso[terminator * 2048 + 1..terminator * 2048 + 6], b"CD001");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "a/b", &"x".repeat(65), "emoji-😀"] {
            assert!(matches!(build_iso("V", &[Entry::file(name, "x")]), Err(IsoError::BadName(_))), "{name}");
        }
        assert!(build_iso("V", &[Entry::file(&"é".repeat(64), "x")]).is_ok());
    }

    #[test]
    fn folders_deeper_than_iso_9660_allows_are_refused_clearly() {
        let nested = |depth: usize| {
            let mut entry = Entry::file("f", "x");
            for level in (0..depth).rev() {
                entry = Entry::Dir { name: format!("d{level}"), children: vec![entry] };
            }
            entry
        };
        assert!(build_iso("V", &[nested(MAX_FOLDER_DEPTH)]).is_ok());
        let error = build_iso("V", &[nested(MAX_FOLDER_DEPTH + 1)]).unwrap_err();
        assert!(matches!(&error, IsoError::TooDeep(path) if path == "d0/d1/d2/d3/d4/d5/d6/d7"), "{error}");
        let long = Entry::Dir {
            name: "a".repeat(64),
            children: vec![Entry::Dir {
                name: "b".repeat(64),
                children: vec![Entry::Dir {
                    name: "c".repeat(64),
                    children: vec![Entry::Dir { name: "d".repeat(64), children: vec![] }],
                }],
            }],
        };
        assert!(matches!(build_iso("V", &[long]), Err(IsoError::TooDeep(_))));
    }
}
