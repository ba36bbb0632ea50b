//! Helpers of the upload tests (`tests/upload.rs`, `tests/upload_memory.rs`): generated files,
//! their hashes, and a progress recorder.
#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use robust_api::UploadProgressListener;
use sha2::{Digest, Sha256};

/// A `size`-byte file: sparse (holes read as zeros) with a distinct 64-byte marker every MiB, so
/// lost, duplicated or reordered chunks change the hash. Cheap to create even at 200 MB.
pub fn make_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    let salt = fastrand::u64(..);
    let mut offset = 0u64;
    while offset < size {
        let mut marker = format!("offset {offset:>16} salt {salt:016x} ").into_bytes();
        marker.resize(64, b'#');
        let len = marker.len().min((size - offset) as usize);
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&marker[..len]).unwrap();
        offset += 1 << 20;
    }
    f.sync_all().unwrap();
    path
}

/// Lower-case hex SHA-256 of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

type Hook = Box<dyn Fn(u64, u64) + Send + Sync>;

/// Records every progress call; an optional hook runs on each (e.g. to cancel at 10 %).
#[derive(Default)]
pub struct Progress {
    pub calls: Mutex<Vec<(u64, u64)>>,
    hook: Option<Hook>,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn with_hook(hook: impl Fn(u64, u64) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Progress {
            calls: Mutex::new(Vec::new()),
            hook: Some(Box::new(hook)),
        })
    }

    pub fn calls(&self) -> Vec<(u64, u64)> {
        self.calls.lock().unwrap().clone()
    }

    /// Asserts: same total on every call, strictly increasing values, the last one the total.
    pub fn assert_monotonic_to_total(&self) -> u64 {
        let calls = self.calls();
        assert!(!calls.is_empty(), "no progress calls");
        let total = calls[0].1;
        assert!(
            calls.iter().all(|c| c.1 == total),
            "total changed: {calls:?}"
        );
        assert!(
            calls.windows(2).all(|w| w[0].0 < w[1].0),
            "not strictly increasing: {calls:?}"
        );
        assert_eq!(calls.last().unwrap().0, total, "does not end at the total");
        assert_eq!(
            calls.iter().filter(|c| c.0 == total).count(),
            1,
            "the total is reported once"
        );
        total
    }
}

impl UploadProgressListener for Progress {
    fn on_progress(&self, bytes_sent: u64, total_bytes: u64) {
        self.calls.lock().unwrap().push((bytes_sent, total_bytes));
        if let Some(h) = &self.hook {
            h(bytes_sent, total_bytes);
        }
    }
}

/// Crude JSON string field lookup (`"name":"value"`) for the fleet's flat answers.
pub fn json_str(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_owned())
}

/// Crude JSON number field lookup (`"name":123`).
pub fn json_num(body: &[u8], name: &str) -> Option<u64> {
    let text = String::from_utf8_lossy(body);
    let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
