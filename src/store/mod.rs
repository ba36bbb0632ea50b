//! The one SQLite database of a client (`<storage_dir>/robust-api.sqlite3`): opening, pragmas,
//! numbered migrations and corruption recovery live here and nowhere else.
//!
//! - WAL journal, `synchronous=NORMAL`, a busy timeout: two clients on the same `storage_dir` share
//!   the file safely (writers wait up to [`BUSY_TIMEOUT`] for each other).
//! - Schema versions are `PRAGMA user_version`; [`MIGRATIONS`] are applied in order, each in a
//!   transaction.
//! - A file that is not a database (or is corrupt) is moved aside as `*.corrupt-<unix ms>` and
//!   recreated; the caller is told so it can emit a status event. Never a crash, never a hung call.
//! - Statements go through `prepare_cached`, so hot queries are parsed once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode};

/// File name inside `storage_dir`.
pub(crate) const DB_FILE: &str = "robust-api.sqlite3";
/// How long a writer waits for another connection (another client on the same dir).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Schema migrations; index + 1 is the `user_version` after applying it.
const MIGRATIONS: &[&str] = &[
    // 1: HTTP response cache.
    "CREATE TABLE cache_entries (
        key TEXT PRIMARY KEY NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        vary TEXT NOT NULL,
        stored_at_ms INTEGER NOT NULL,
        initial_age_ms INTEGER NOT NULL,
        lifetime_ms INTEGER NOT NULL,
        swr_ms INTEGER,
        sie_ms INTEGER,
        must_revalidate INTEGER NOT NULL,
        no_cache INTEGER NOT NULL,
        etag TEXT,
        last_modified TEXT,
        size INTEGER NOT NULL,
        last_access_ms INTEGER NOT NULL,
        purge_at_ms INTEGER NOT NULL
    );
    CREATE INDEX cache_entries_path ON cache_entries(path);
    CREATE INDEX cache_entries_lru ON cache_entries(last_access_ms);
    CREATE INDEX cache_entries_purge ON cache_entries(purge_at_ms);",
    // 2: durable offline request queue. Credentials are never written here (see queue::storage).
    "CREATE TABLE queue_entries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        idempotency_key TEXT NOT NULL,
        group_key TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        query TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB,
        timeout_ms INTEGER,
        size INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at_ms INTEGER NOT NULL,
        last_error TEXT,
        dead INTEGER NOT NULL DEFAULT 0,
        dead_reason TEXT,
        dead_status INTEGER,
        dead_body BLOB
    );
    CREATE INDEX queue_entries_pending ON queue_entries(dead, group_key, seq);
    -- Pending count and bytes, kept by triggers so the bound check on enqueue is O(1).
    CREATE TABLE queue_stats (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        pending INTEGER NOT NULL,
        pending_bytes INTEGER NOT NULL
    );
    INSERT INTO queue_stats VALUES (0, 0, 0);
    CREATE TRIGGER queue_stats_insert AFTER INSERT ON queue_entries WHEN NEW.dead = 0 BEGIN
        UPDATE queue_stats SET pending = pending + 1, pending_bytes = pending_bytes + NEW.size;
    END;
    CREATE TRIGGER queue_stats_delete AFTER DELETE ON queue_entries WHEN OLD.dead = 0 BEGIN
        UPDATE queue_stats SET pending = pending - 1, pending_bytes = pending_bytes - OLD.size;
    END;
    CREATE TRIGGER queue_stats_dead AFTER UPDATE OF dead ON queue_entries WHEN OLD.dead != NEW.dead BEGIN
        UPDATE queue_stats SET
            pending = pending + (CASE WHEN NEW.dead = 0 THEN 1 ELSE -1 END),
            pending_bytes = pending_bytes + (CASE WHEN NEW.dead = 0 THEN NEW.size ELSE -OLD.size END);
    END;
    CREATE TABLE queue_outcomes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        delivered INTEGER NOT NULL,
        status INTEGER,
        headers TEXT,
        body BLOB,
        backend TEXT,
        attempts INTEGER NOT NULL,
        reason TEXT,
        at_ms INTEGER NOT NULL,
        notified INTEGER NOT NULL DEFAULT 0
    );",
];

/// Why the database was recreated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Where the damaged file was moved.
    pub moved_to: String,
    /// What was wrong.
    pub reason: String,
}

/// The client's database connection.
pub(crate) struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch (persisted times survive restarts, unlike `Instant`).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Headers as `name:value` lines, sorted (names never contain ':' and values never contain a
/// newline: both are validated HTTP header parts). Used by the cache and the queue.
pub(crate) fn encode_header_lines(h: &HashMap<String, String>) -> String {
    let mut lines: Vec<String> = h.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    lines.sort();
    lines.join("\n")
}

/// The inverse of [`encode_header_lines`].
pub(crate) fn decode_header_lines(s: &str) -> HashMap<String, String> {
    s.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Is this error a sign of a damaged database file (rather than a busy or full one)?
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

fn open_and_migrate(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode returns a row; the first statement also detects a file that is not a database.
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
    conn.set_prepared_statement_cache_capacity(32);
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    // Touch every table once so a corrupt page in the schema shows up now, not mid-request.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(conn)
}

/// Moves the database (and its WAL/SHM side files) aside.
fn move_aside(path: &Path) -> String {
    let stamp = now_ms();
    let target = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    let _ = std::fs::rename(path, &target);
    for side in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{side}", path.display()));
        let _ = std::fs::rename(&p, format!("{}{side}", target.display()));
    }
    target.display().to_string()
}

impl Store {
    /// Opens (creating or migrating) the database in `dir`. A damaged file is moved aside and
    /// recreated; the returned [`Recovery`] says so.
    pub(crate) fn open(dir: &Path) -> Result<(Store, Option<Recovery>), String> {
        let path = dir.join(DB_FILE);
        match open_and_migrate(&path) {
            Ok(conn) => Ok((
                Store {
                    path,
                    conn: Mutex::new(conn),
                },
                None,
            )),
            Err(e) if is_corruption(&e) => {
                let moved_to = move_aside(&path);
                log::warn!(
                    "robust-api: {} is damaged ({e}); moved to {moved_to} and recreated",
                    path.display()
                );
                let conn = open_and_migrate(&path)
                    .map_err(|e| format!("recreating {}: {e}", path.display()))?;
                Ok((
                    Store {
                        path,
                        conn: Mutex::new(conn),
                    },
                    Some(Recovery {
                        moved_to,
                        reason: e.to_string(),
                    }),
                ))
            }
            Err(e) => Err(format!("opening {}: {e}", path.display())),
        }
    }

    /// The connection (one at a time; SQLite calls here take microseconds).
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the file now (checkpointing the WAL) so another process or client can take it over;
    /// later operations fail harmlessly against an empty in-memory database.
    pub(crate) fn close(&self) {
        if let Ok(detached) = Connection::open_in_memory() {
            drop(std::mem::replace(&mut *self.conn(), detached));
        }
    }

    /// Replaces a connection whose file turned out to be damaged mid-life.
    pub(crate) fn recover(&self, reason: &str) -> Result<Recovery, String> {
        let mut conn = self.conn();
        // Close our handle on the damaged file before moving it.
        let fresh = Connection::open_in_memory().map_err(|e| e.to_string())?;
        drop(std::mem::replace(&mut *conn, fresh));
        let moved_to = move_aside(&self.path);
        log::warn!(
            "robust-api: {} is damaged ({reason}); moved to {moved_to} and recreated",
            self.path.display()
        );
        *conn = open_and_migrate(&self.path)
            .map_err(|e| format!("recreating {}: {e}", self.path.display()))?;
        Ok(Recovery {
            moved_to,
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (s, rec) = Store::open(dir.path()).unwrap();
        assert!(rec.is_none());
        let v: i64 = s
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(s);
        let (s, rec) = Store::open(dir.path()).unwrap();
        assert!(rec.is_none());
        let mode: String = s
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn garbage_file_is_moved_aside_and_recreated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
        let (s, rec) = Store::open(dir.path()).unwrap();
        let rec = rec.expect("recovered");
        assert!(std::path::Path::new(&rec.moved_to).exists());
        let n: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM cache_entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
