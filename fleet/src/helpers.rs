//! Helpers the integration tests share: polling, generated files and their hashes, crude JSON
//! lookups in the fleet's flat answers.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Polls `cond` every 5 ms until it holds; fails the test with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

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
