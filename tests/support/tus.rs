//! The official tus 1.0 server (`@tus/server` + `@tus/file-store`, pinned in
//! scripts/tus-server/package-lock.json, installed once by scripts/setup-tus-server.sh under
//! ~/.cache/robust-api) as a child process on 127.0.0.1, for `tests/tus.rs` and
//! `tests/tus_memory.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The installed server's directory (the setup script runs once per test process).
fn server_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-tus-server.sh");
        let out = Command::new("bash")
            .arg(script)
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/setup-tus-server.sh");
        assert!(out.status.success(), "scripts/setup-tus-server.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// A running `@tus/server`; killed when dropped.
pub struct TusServer {
    child: Child,
    pub port: u16,
    store: tempfile::TempDir,
}

impl TusServer {
    pub fn start(expiration_ms: u64) -> TusServer {
        let store = tempfile::Builder::new()
            .prefix("tus-store-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let mut child = Command::new("node")
            .arg(server_dir().join("server.mjs"))
            .arg(store.path())
            .arg(expiration_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("tus server said {line:?}"));
        TusServer { child, port, store }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// The stored file of the upload at `url` and its `.json` info.
    pub fn stored(&self, url: &str) -> (PathBuf, String) {
        let id = url.rsplit('/').next().unwrap();
        let file = self.store.path().join(id);
        let info = std::fs::read_to_string(self.store.path().join(format!("{id}.json")))
            .unwrap_or_default();
        (file, info)
    }

    /// The data file of the upload stored last.
    pub fn newest_upload(&self) -> PathBuf {
        std::fs::read_dir(self.store.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".json"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .unwrap()
    }

    /// Uploads the server holds (data files).
    pub fn upload_count(&self) -> usize {
        std::fs::read_dir(self.store.path())
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                !n.to_string_lossy().ends_with(".json")
            })
            .count()
    }
}

impl Drop for TusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
