//! Durable upload records (`<storage_dir>/uploads.sqlite3`, [`crate::store::Schema::UPLOADS`]:
//! 0600, `secure_delete`, `synchronous=FULL`, a damaged file moved aside and recreated with a
//! storage recovery reported). One row per resumable upload; every change is one statement, so a
//! process killed at any point finds the last confirmed offset, the URL and the highest byte it
//! ever handed to the transport.
//!
//! Stored: the file's path and fingerprint (size, modification time, SHA-256 of its first and last
//! MiB), the endpoint, the metadata (title, file name), the creating backend and the upload URL
//! (not a secret: it names the upload, the credentials are separate), offsets, the state, the
//! user scope as a keyed tag, and the app's own headers of the upload without any credential
//! header (`Authorization`, `Cookie`, `Proxy-Authorization` and `queue.sensitive_headers` are
//! dropped before the row is written; credentials come from the header provider at send time), so
//! an upload resumed after a kill sends the app's headers (an API version, a client id) again.
//!
//! Bounded: at most [`MAX_OPEN`] uploads not yet finished, and the [`MAX_FINISHED`] last finished
//! ones (for a listener that re-attaches after the app was killed); older finished ones are deleted.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Row};

use crate::error::ApiError;
use crate::store::{decode_header_lines, encode_header_lines, now_ms, Store};

/// Unfinished uploads kept at most (new ones are refused beyond).
pub(crate) const MAX_OPEN: i64 = 100;
/// Finished uploads (completed or failed) kept for re-attaching listeners.
pub(crate) const MAX_FINISHED: i64 = 50;
/// A finished upload's response body is kept up to this many bytes.
pub(crate) const MAX_RESULT_BODY: usize = 64 * 1024;
/// Hashed at each end of the file for the fingerprint.
const EDGE: u64 = 1 << 20;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum UploadState {
    /// Waiting to run, or running: resumed automatically when the network allows.
    Active,
    /// Paused by the app (`pause_upload`); resumed by `resume_upload`.
    Paused,
    /// The server has every byte.
    Completed,
    /// Stopped for good (see its error); cancel it to remove it.
    Failed,
}

impl UploadState {
    fn as_str(self) -> &'static str {
        match self {
            UploadState::Active => "active",
            UploadState::Paused => "paused",
            UploadState::Completed => "completed",
            UploadState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> UploadState {
        match s {
            "paused" => UploadState::Paused,
            "completed" => UploadState::Completed,
            "failed" => UploadState::Failed,
            _ => UploadState::Active,
        }
    }

    pub(crate) fn finished(self) -> bool {
        matches!(self, UploadState::Completed | UploadState::Failed)
    }
}

/// The fingerprint of a file: `(size, mtime ms, hex SHA-256 of size + first MiB + last MiB)`.
pub(crate) fn fingerprint(path: &str) -> std::io::Result<(u64, i64, String)> {
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let (size, mtime) = super::tus::stat_of(&meta);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&size.to_be_bytes());
    let mut buf = vec![0u8; 64 * 1024];
    let mut hash_range = |f: &mut std::fs::File, from: u64, len: u64| -> std::io::Result<()> {
        f.seek(SeekFrom::Start(from))?;
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    };
    hash_range(&mut f, 0, size.min(EDGE))?;
    if size > EDGE {
        let from = size.saturating_sub(EDGE).max(EDGE);
        hash_range(&mut f, from, size - from)?;
    }
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, mtime, hex))
}

/// One upload's record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub id: String,
    /// The keyed tag of the user scope it belongs to.
    pub scope: Option<String>,
    pub file_path: String,
    pub size: u64,
    pub mtime_ms: i64,
    pub edge_hash: String,
    pub endpoint: String,
    pub metadata: HashMap<String, String>,
    /// The creating backend's base URL.
    pub backend: Option<String>,
    pub upload_url: Option<String>,
    pub confirmed: u64,
    pub sent_high: u64,
    pub expires_at_ms: Option<i64>,
    pub restarts: u32,
    pub unreachable_since_ms: Option<i64>,
    pub state: UploadState,
    pub result_status: Option<u16>,
    pub result_body: Option<Vec<u8>>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    /// Sent only over an unmetered network.
    pub unmetered_only: bool,
    /// The app's own headers of the upload, without credentials (as stored).
    pub headers: HashMap<String, String>,
}

fn to_u64(v: i64) -> u64 {
    v.max(0) as u64
}

impl Record {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Record> {
        let metadata: String = r.get("metadata")?;
        Ok(Record {
            id: r.get("id")?,
            scope: r.get("scope")?,
            file_path: r.get("file_path")?,
            size: to_u64(r.get("size")?),
            mtime_ms: r.get("mtime_ms")?,
            edge_hash: r.get("edge_hash")?,
            endpoint: r.get("endpoint")?,
            metadata: decode_header_lines(&metadata),
            backend: r.get("backend")?,
            upload_url: r.get("upload_url")?,
            confirmed: to_u64(r.get("confirmed")?),
            sent_high: to_u64(r.get("sent_high")?),
            expires_at_ms: r.get("expires_at_ms")?,
            restarts: r.get::<_, i64>("restarts")?.clamp(0, u32::MAX as i64) as u32,
            unreachable_since_ms: r.get("unreachable_since_ms")?,
            state: UploadState::parse(&r.get::<_, String>("state")?),
            result_status: r
                .get::<_, Option<i64>>("result_status")?
                .map(|s| s.clamp(0, 999) as u16),
            result_body: r.get("result_body")?,
            last_error: r.get("last_error")?,
            created_at_ms: r.get("created_at_ms")?,
            unmetered_only: r.get::<_, i64>("unmetered_only")? != 0,
            headers: decode_header_lines(&r.get::<_, String>("headers")?),
        })
    }
}

fn storage(e: rusqlite::Error) -> ApiError {
    ApiError::Storage {
        reason: format!("upload records: {e}"),
    }
}

/// The upload records file.
#[derive(Debug)]
pub(crate) struct Records {
    store: Arc<Store>,
    /// Header names (lower-case) never written (credentials; `queue.sensitive_headers`).
    sensitive: Vec<String>,
}

impl Records {
    pub(crate) fn new(store: Arc<Store>, sensitive: Vec<String>) -> Records {
        Records { store, sensitive }
    }

    /// How `scope` is stored.
    pub(crate) fn scope_tag(&self, scope: Option<&str>) -> Option<String> {
        self.store.scope_tag(scope)
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize, ApiError> {
        crate::runtime::blocking_io(|| {
            self.store
                .conn()
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(p))
                .map_err(storage)
        })
    }

    /// `headers` without the credential and sensitive ones (what a record may hold).
    pub(crate) fn storable_headers(
        &self,
        headers: &HashMap<String, String>,
    ) -> HashMap<String, String> {
        headers
            .iter()
            .filter(|(k, _)| crate::store::secrets::is_storable_header(k, &self.sensitive))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Stores a new record (`Storage` error beyond [`MAX_OPEN`] unfinished uploads).
    pub(crate) fn insert(&self, r: &Record) -> Result<(), ApiError> {
        let storable = self.storable_headers(&r.headers);
        crate::runtime::blocking_io(|| {
            let mut c = self.store.conn();
            let tx = c.transaction().map_err(storage)?;
            let open: i64 = tx
                .query_row(
                    "SELECT count(*) FROM uploads WHERE state IN ('active', 'paused')",
                    [],
                    |r| r.get(0),
                )
                .map_err(storage)?;
            if open >= MAX_OPEN {
                return Err(ApiError::Storage {
                    reason: format!(
                        "{open} resumable uploads are unfinished (at most {MAX_OPEN}): cancel some first"
                    ),
                });
            }
            let seq: i64 = tx
                .query_row("SELECT coalesce(max(seq), 0) + 1 FROM uploads", [], |r| {
                    r.get(0)
                })
                .map_err(storage)?;
            tx.execute(
                "INSERT INTO uploads (id, seq, scope, file_path, size, mtime_ms, edge_hash, endpoint,
                    metadata, state, created_at_ms, updated_at_ms, unmetered_only, headers)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13)",
                params![
                    r.id,
                    seq,
                    r.scope,
                    r.file_path,
                    r.size as i64,
                    r.mtime_ms,
                    r.edge_hash,
                    r.endpoint,
                    encode_header_lines(&r.metadata),
                    r.state.as_str(),
                    r.created_at_ms,
                    i64::from(r.unmetered_only),
                    encode_header_lines(&storable),
                ],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)
        })
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<Record>, ApiError> {
        crate::runtime::blocking_io(|| {
            self.store
                .conn()
                .prepare_cached("SELECT * FROM uploads WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], Record::from_row).optional())
                .map_err(storage)
        })
    }

    /// Every record of `scope` (a tag) but the completed ones (all when `completed`), oldest
    /// first.
    pub(crate) fn list(
        &self,
        scope: Option<&str>,
        completed: bool,
    ) -> Result<Vec<Record>, ApiError> {
        crate::runtime::blocking_io(|| {
            let c = self.store.conn();
            let mut s = c
                .prepare_cached(
                    "SELECT * FROM uploads WHERE scope IS ?1
                       AND (?2 OR state != 'completed') ORDER BY seq",
                )
                .map_err(storage)?;
            let rows = s
                .query_map(params![scope, completed], Record::from_row)
                .map_err(storage)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(storage)
        })
    }

    pub(crate) fn set_target(
        &self,
        id: &str,
        backend: &str,
        url: &str,
        offset: u64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        self.exec(
            "UPDATE uploads SET backend = ?2, upload_url = ?3, confirmed = ?4, sent_high = max(sent_high, ?4),
                expires_at_ms = ?5, unreachable_since_ms = NULL, updated_at_ms = ?6 WHERE id = ?1",
            params![id, backend, url, offset as i64, expires_at_ms, now_ms()],
        )
        .map(drop)
    }

    pub(crate) fn set_sent_high(&self, id: &str, sent_high: u64) -> Result<(), ApiError> {
        self.exec(
            "UPDATE uploads SET sent_high = max(sent_high, ?2), updated_at_ms = ?3 WHERE id = ?1",
            params![id, sent_high as i64, now_ms()],
        )
        .map(drop)
    }

    pub(crate) fn set_confirmed(
        &self,
        id: &str,
        offset: u64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        self.exec(
            "UPDATE uploads SET confirmed = ?2, expires_at_ms = coalesce(?3, expires_at_ms),
                unreachable_since_ms = NULL, updated_at_ms = ?4 WHERE id = ?1",
            params![id, offset as i64, expires_at_ms, now_ms()],
        )
        .map(drop)
    }

    /// The server lost the upload: forget its URL and offsets, count the restart.
    pub(crate) fn restarted(&self, id: &str) -> Result<(), ApiError> {
        self.exec(
            "UPDATE uploads SET backend = NULL, upload_url = NULL, confirmed = 0, sent_high = 0,
                expires_at_ms = NULL, restarts = restarts + 1, unreachable_since_ms = NULL,
                updated_at_ms = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )
        .map(drop)
    }

    /// The creating backend could not be reached (first time: now).
    pub(crate) fn set_unreachable(&self, id: &str) -> Result<Option<i64>, ApiError> {
        self.exec(
            "UPDATE uploads SET unreachable_since_ms = coalesce(unreachable_since_ms, ?2) WHERE id = ?1",
            params![id, now_ms()],
        )?;
        Ok(self.get(id)?.and_then(|r| r.unreachable_since_ms))
    }

    pub(crate) fn set_state(
        &self,
        id: &str,
        state: UploadState,
        error: Option<&str>,
    ) -> Result<(), ApiError> {
        self.exec(
            "UPDATE uploads SET state = ?2, last_error = ?3, updated_at_ms = ?4 WHERE id = ?1",
            params![id, state.as_str(), error, now_ms()],
        )?;
        if state.finished() {
            self.prune()?;
        }
        Ok(())
    }

    pub(crate) fn complete(&self, id: &str, status: u16, body: &[u8]) -> Result<(), ApiError> {
        self.exec(
            "UPDATE uploads SET state = 'completed', confirmed = size, result_status = ?2,
                result_body = ?3, last_error = NULL, updated_at_ms = ?4 WHERE id = ?1",
            params![
                id,
                i64::from(status),
                &body[..body.len().min(MAX_RESULT_BODY)],
                now_ms()
            ],
        )?;
        self.prune()
    }

    /// Deletes a record; `false` if there was none.
    pub(crate) fn remove(&self, id: &str) -> Result<bool, ApiError> {
        Ok(self.exec("DELETE FROM uploads WHERE id = ?1", [id])? > 0)
    }

    /// Deletes every record of `scope` (a tag), leaving no recoverable bytes.
    pub(crate) fn clear_scope(&self, scope: &str) -> Result<(), ApiError> {
        self.exec("DELETE FROM uploads WHERE scope = ?1", [scope])?;
        Store::wipe(&self.store.conn());
        Ok(())
    }

    fn prune(&self) -> Result<(), ApiError> {
        self.exec(
            "DELETE FROM uploads WHERE state IN ('completed', 'failed') AND id NOT IN
                (SELECT id FROM uploads WHERE state IN ('completed', 'failed')
                 ORDER BY updated_at_ms DESC, seq DESC LIMIT ?1)",
            [MAX_FINISHED],
        )
        .map(drop)
    }

    /// Closes the file (client shutdown).
    pub(crate) fn close(&self) {
        self.store.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Schema;

    fn record(id: &str, scope: Option<String>) -> Record {
        Record {
            id: id.into(),
            scope,
            file_path: "/f".into(),
            size: 10,
            mtime_ms: 1,
            edge_hash: "h".into(),
            endpoint: "/files".into(),
            metadata: HashMap::from([("title".into(), "T".into())]),
            backend: None,
            upload_url: None,
            confirmed: 0,
            sent_high: 0,
            expires_at_ms: None,
            restarts: 0,
            unreachable_since_ms: None,
            state: UploadState::Active,
            result_status: None,
            result_body: None,
            last_error: None,
            created_at_ms: now_ms(),
            unmetered_only: id == "a",
            headers: HashMap::from([
                ("x-app-version".into(), "7".into()),
                ("Authorization".into(), "Bearer secret-in-memory".into()),
                ("x-api-key".into(), "configured-secret".into()),
            ]),
        }
    }

    #[test]
    fn records_survive_a_reopen_and_stay_in_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_schema(dir.path(), Schema::UPLOADS).unwrap();
        let r = Records::new(Arc::new(store), vec!["x-api-key".into()]);
        let alice = r.scope_tag(Some("alice"));
        r.insert(&record("a", alice.clone())).unwrap();
        r.insert(&record("n", None)).unwrap();
        r.set_target("a", "http://b", "http://b/files/1", 0, Some(5))
            .unwrap();
        r.set_sent_high("a", 8).unwrap();
        r.set_sent_high("a", 4).unwrap();
        r.set_confirmed("a", 6, None).unwrap();
        drop(r);
        let (store, rec) = Store::open_schema(dir.path(), Schema::UPLOADS).unwrap();
        assert!(rec.is_none());
        let r = Records::new(Arc::new(store), vec!["x-api-key".into()]);
        let got = r.list(alice.as_deref(), false).unwrap();
        assert_eq!(got.len(), 1);
        let a = &got[0];
        assert_eq!((a.confirmed, a.sent_high, a.expires_at_ms), (6, 8, Some(5)));
        assert_eq!(a.upload_url.as_deref(), Some("http://b/files/1"));
        assert_eq!(a.metadata["title"], "T");
        assert!(a.unmetered_only);
        assert_eq!(
            a.headers,
            HashMap::from([("x-app-version".into(), "7".into())]),
            "credential and sensitive headers are never stored"
        );
        assert_eq!(r.list(None, false).unwrap()[0].id, "n");
        assert!(r
            .list(r.scope_tag(Some("bob")).as_deref(), true)
            .unwrap()
            .is_empty());
        r.restarted("a").unwrap();
        let a = r.get("a").unwrap().unwrap();
        assert_eq!((a.confirmed, a.sent_high, a.restarts), (0, 0, 1));
        assert!(a.upload_url.is_none());
        r.complete("a", 204, b"").unwrap();
        assert!(r.list(alice.as_deref(), false).unwrap().is_empty());
        assert_eq!(
            r.list(alice.as_deref(), true).unwrap()[0].state,
            UploadState::Completed
        );
    }

    #[test]
    fn fingerprints_see_the_edges() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let mut content = vec![7u8; 3 << 20];
        std::fs::write(&p, &content).unwrap();
        let p = p.to_string_lossy().into_owned();
        let a = fingerprint(&p).unwrap();
        content[(3 << 20) - 1] = 8;
        std::fs::write(&p, &content).unwrap();
        let b = fingerprint(&p).unwrap();
        assert_eq!(a.0, b.0);
        assert_ne!(a.2, b.2, "a change in the last MiB changes the fingerprint");
    }
}
