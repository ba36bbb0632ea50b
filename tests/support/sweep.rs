//! The secret sweep: reads every byte of a client's storage folder (the database, `-wal`, `-shm`,
//! moved-aside copies, any other file) and fails on any planted secret; checks the modes too
//! (folder 0700, files 0600).

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Fails if any of `secrets` occurs in any file under `dir` (as is, or UTF-16, or lower-cased
/// ASCII). Returns the files read.
pub fn assert_no_secret(dir: &Path, secrets: &[&str], when: &str) -> Vec<PathBuf> {
    let files = files(dir);
    assert!(!files.is_empty(), "{when}: no file in {}", dir.display());
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let lower = bytes.to_ascii_lowercase();
        for s in secrets {
            assert!(!s.is_empty());
            let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
            let hit = find(&bytes, s.as_bytes())
                .or_else(|| find(&lower, s.to_ascii_lowercase().as_bytes()))
                .or_else(|| find(&bytes, &utf16));
            if let Some(at) = hit {
                let from = at.saturating_sub(60);
                let to = (at + s.len() + 60).min(bytes.len());
                panic!(
                    "{when}: secret {s:?} found in {} at byte {at}: {:?}",
                    f.display(),
                    String::from_utf8_lossy(&bytes[from..to])
                );
            }
        }
    }
    files
}

/// Fails unless `marker` occurs somewhere under `dir` (proves the sweep reads what is stored).
pub fn assert_present(dir: &Path, marker: &str) {
    let found = files(dir).iter().any(|f| {
        std::fs::read(f)
            .ok()
            .is_some_and(|b| find(&b, marker.as_bytes()).is_some())
    });
    assert!(found, "{marker:?} is not in {}", dir.display());
}

/// Folder 0700, every file 0600.
#[cfg(unix)]
pub fn assert_private_modes(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for f in files(dir) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[cfg(not(unix))]
pub fn assert_private_modes(_dir: &Path) {}
