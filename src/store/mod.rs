//! The client's two SQLite databases: the response cache (`<storage_dir>/robust-api.sqlite3`,
//! [`Schema::CACHE`]) and the offline queue (`<storage_dir>/queue.sqlite3`, [`Schema::QUEUE`]).
//! Opening, pragmas, numbered migrations and corruption recovery live here and nowhere else.
//!
//! - Two files, so a damaged or cleared cache never touches queued requests. The first open of a
//!   folder written by an older version moves its queue rows from the cache file into the queue
//!   file ([`salvage`], then the cache's migration 4 drops the old tables).
//! - WAL journal and a busy timeout: writers wait up to [`BUSY_TIMEOUT`] for each other, so no
//!   call blocks longer on a database locked by another process (it fails with `Storage`).
//!   The cache uses `synchronous=NORMAL`; the queue `synchronous=FULL` unless configured faster
//!   ([`Durability`]).
//! - Schema versions are `PRAGMA user_version`; each file's migrations are applied in order, each
//!   in a transaction.
//! - A file that is not a database (or is corrupt) is moved aside as `*.corrupt-<unix ms>`,
//!   recreated, and the moved copy deleted once whatever can be salvaged has been: for the queue,
//!   every readable entry row by row; every entry that cannot be read back becomes a dead letter
//!   with an outcome, or (when not even its id can be read) one outcome counting the lost
//!   ([`salvage`]). The caller is told ([`Recovery`]) so it can emit a status event and keep a
//!   sticky record. Never a crash, never a hung call.
//! - Statements go through `prepare_cached`, so hot queries are parsed once.
//! - Nothing secret at rest ([`secrets`]): the folder is 0700 and every file 0600 (set on creation
//!   and on every open), `secure_delete` is on, and a clear ends with [`Store::wipe`] (WAL
//!   checkpoint + truncate), so cleared rows leave no recoverable bytes in any file.
//! - The current user scope ([`Identity`]) is stored only as a keyed tag ([`Store::scope_tag`]).
//! - A file that does not exist yet is created on a background thread
//!   ([`Store::open_schema_deferred`]): a client on a new folder starts without waiting for its three
//!   files, and the first use of one waits for it. A file that exists is opened at once, so a
//!   damaged file or an unwritable folder still fails at construction.

mod identity;
mod lock;
mod salvage;
pub(crate) mod secrets;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode};

pub(crate) use identity::Identity;
pub(crate) use lock::{FolderLock, LockError};
pub(crate) use salvage::entry_checksum;
use secrets::InstallKey;

/// The cache's file name inside `storage_dir` (it held the queue too before the queue got its own).
pub(crate) const DB_FILE: &str = "robust-api.sqlite3";
/// The queue's file name inside `storage_dir`.
pub(crate) const QUEUE_FILE: &str = "queue.sqlite3";
/// The resumable uploads' records inside `storage_dir`.
pub(crate) const UPLOADS_FILE: &str = "uploads.sqlite3";
/// How long a writer waits for another connection (another client on the same dir).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The cache file's migrations; index + 1 is the `user_version` after applying it.
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
    // 3: user scopes (a keyed tag, NULL = no scope) and no secret at rest. Older cache rows were
    // keyed by an unkeyed hash of Authorization and kept raw Vary values and Set-Cookie: dropped
    // (the cache is best-effort); older outcomes may hold Set-Cookie: their headers are dropped.
    "DELETE FROM cache_entries;
    ALTER TABLE cache_entries ADD COLUMN scope TEXT;
    CREATE INDEX cache_entries_scope ON cache_entries(scope);
    ALTER TABLE queue_entries ADD COLUMN scope TEXT;
    DROP INDEX queue_entries_pending;
    CREATE INDEX queue_entries_pending ON queue_entries(dead, scope, group_key, seq);
    ALTER TABLE queue_outcomes ADD COLUMN scope TEXT;
    UPDATE queue_outcomes SET headers = NULL;
    CREATE TABLE install_key (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        key BLOB NOT NULL
    );",
    // 4: the queue moved to its own file (`QUEUE_FILE`, whose first open copied these rows).
    "DELETE FROM queue_entries;
    DELETE FROM queue_outcomes;
    DROP TABLE queue_entries;
    DROP TABLE queue_stats;
    DROP TABLE queue_outcomes;",
    // 5: several `Vary` variants per key (the cache is best-effort: older rows are dropped).
    "DROP TABLE cache_entries;
    CREATE TABLE cache_entries (
        key TEXT NOT NULL,
        vary TEXT NOT NULL,
        path TEXT NOT NULL,
        scope TEXT,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
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
        purge_at_ms INTEGER NOT NULL,
        PRIMARY KEY (key, vary)
    );
    CREATE INDEX cache_entries_path ON cache_entries(path);
    CREATE INDEX cache_entries_lru ON cache_entries(last_access_ms);
    CREATE INDEX cache_entries_purge ON cache_entries(purge_at_ms);
    CREATE INDEX cache_entries_scope ON cache_entries(scope);",
];

/// The queue file's migrations (same rule). Version 1 is the shape the queue had in the shared
/// file at its version 3, plus `first_attempt_at_ms` (expiry counts from the first attempt) and
/// `checksum` (of what is sent: a salvage keeps an entry only if it still matches).
const QUEUE_MIGRATIONS: &[&str] = &[
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
        dead_body BLOB,
        scope TEXT,
        first_attempt_at_ms INTEGER,
        checksum BLOB
    );
    CREATE INDEX queue_entries_pending ON queue_entries(dead, scope, group_key, seq);
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
        notified INTEGER NOT NULL DEFAULT 0,
        scope TEXT
    );
    CREATE TABLE install_key (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        key BLOB NOT NULL
    );",
    // 2: entries that wait while the network is metered.
    "ALTER TABLE queue_entries ADD COLUMN unmetered_only INTEGER NOT NULL DEFAULT 0;",
];

/// The upload records file's migrations (same rule). One row per resumable upload: where its
/// file is and what it looked like (the fingerprint), where it goes (backend, upload URL), how far
/// the server confirmed it, its metadata (title, file name) and its user scope's keyed tag. No
/// credential: the app's headers are stored without credential headers (`Authorization`, `Cookie`,
/// `Proxy-Authorization`, `queue.sensitive_headers`); the header provider supplies those at send time.
const UPLOAD_MIGRATIONS: &[&str] = &[
    // 1: resumable upload records.
    "CREATE TABLE uploads (
        id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        scope TEXT,
        file_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ms INTEGER NOT NULL,
        edge_hash TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        metadata TEXT NOT NULL,
        backend TEXT,
        upload_url TEXT,
        confirmed INTEGER NOT NULL DEFAULT 0,
        sent_high INTEGER NOT NULL DEFAULT 0,
        expires_at_ms INTEGER,
        restarts INTEGER NOT NULL DEFAULT 0,
        unreachable_since_ms INTEGER,
        state TEXT NOT NULL,
        result_status INTEGER,
        result_body BLOB,
        last_error TEXT,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE INDEX uploads_scope_state ON uploads(scope, state, seq);
    CREATE TABLE install_key (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        key BLOB NOT NULL
    );",
    // 2: uploads marked "unmetered only" wait while the network is metered; the app's own
    // headers of an upload, credentials removed (a resumed upload after a kill sends them).
    "ALTER TABLE uploads ADD COLUMN unmetered_only INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE uploads ADD COLUMN headers TEXT NOT NULL DEFAULT '';",
];

/// What a database file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cache,
    Queue,
    Uploads,
}

/// One database file's name, migrations and durability.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schema {
    kind: Kind,
    file: &'static str,
    migrations: &'static [&'static str],
    durability: Durability,
}

/// `PRAGMA synchronous` of a file: what a committed transaction survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit; a committed transaction survives
    /// power loss and an OS crash.
    Full,
    /// `synchronous=NORMAL`: survives the app being killed; power loss or an OS crash may roll
    /// back the last transactions.
    Normal,
}

impl Durability {
    /// The value of `PRAGMA synchronous`.
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

impl Schema {
    /// The response cache (best-effort data: `NORMAL`).
    pub(crate) const CACHE: Schema = Schema {
        kind: Kind::Cache,
        file: DB_FILE,
        migrations: MIGRATIONS,
        durability: Durability::Normal,
    };
    /// The offline queue (`FULL` by default).
    pub(crate) const QUEUE: Schema = Schema {
        kind: Kind::Queue,
        file: QUEUE_FILE,
        migrations: QUEUE_MIGRATIONS,
        durability: Durability::Full,
    };

    /// The resumable uploads' records (`FULL`: a confirmed offset survives power loss). A
    /// damaged file is moved aside and recreated empty (its uploads start again from byte 0 when
    /// the app uploads the files again), reported as a storage recovery.
    pub(crate) const UPLOADS: Schema = Schema {
        kind: Kind::Uploads,
        file: UPLOADS_FILE,
        migrations: UPLOAD_MIGRATIONS,
        durability: Durability::Full,
    };

    /// The same file with another durability.
    pub(crate) const fn with_durability(mut self, durability: Durability) -> Schema {
        self.durability = durability;
        self
    }
}

/// Why a database was recreated, and what of its queue could be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// The file's name (`robust-api.sqlite3`, `queue.sqlite3`).
    pub file: String,
    /// Where the damaged file was moved.
    pub moved_to: String,
    /// What was wrong.
    pub reason: String,
    /// Queue entries read back into the new file (pending and dead letters).
    pub salvaged: u64,
    /// Queue entries that could not be read back (each reported as a dead letter with an
    /// outcome, or counted in one outcome when not even its id was readable).
    pub lost: u64,
}

impl Recovery {
    /// The exported sticky record.
    pub(crate) fn record(self) -> crate::events::StorageRecovery {
        crate::events::StorageRecovery {
            file: self.file,
            moved_to: self.moved_to,
            reason: self.reason,
            salvaged: self.salvaged.min(i64::MAX as u64) as i64,
            lost: self.lost.min(i64::MAX as u64) as i64,
            at_ms: now_ms(),
        }
    }
}

/// A new file being created in the background: its connection and install key.
type Creation = JoinHandle<Result<(Connection, InstallKey), String>>;

/// One database connection.
pub(crate) struct Store {
    schema: Schema,
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The HMAC key of the open file (replaced with the file on recovery).
    key: RwLock<Arc<InstallKey>>,
    /// The thread creating the file, until the first use takes its result
    /// ([`Store::open_schema_deferred`]).
    creating: Mutex<Option<Creation>>,
    /// No creation is pending: `conn` and `key` are the file's (one atomic load per use).
    created: AtomicBool,
}

impl Drop for Store {
    /// A creation still under way finishes before the store goes (and with it, possibly, the
    /// folder's lock or a temporary folder).
    fn drop(&mut self) {
        self.settle();
    }
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

/// The length of [`encode_header_lines`]`(h)`, without building it.
pub(crate) fn encoded_header_lines_len(h: &HashMap<String, String>) -> usize {
    h.iter().map(|(k, v)| k.len() + 1 + v.len()).sum::<usize>() + h.len().saturating_sub(1)
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

/// The database's side files (WAL and shared-memory index).
fn side_files(path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|side| PathBuf::from(format!("{}{side}", path.display())))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        if path.exists() {
            log::warn!("robust-api: chmod {:o} {}: {e}", mode, path.display());
        }
    }
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) {}

/// Owner-only access: the folder 0700, the database and its side files 0600.
fn restrict_permissions(path: &Path) {
    if let Some(dir) = path.parent() {
        set_mode(dir, 0o700);
    }
    set_mode(path, 0o600);
    for side in side_files(path) {
        if side.exists() {
            set_mode(&side, 0o600);
        }
    }
}

/// Creates the database file 0600 before SQLite does (SQLite gives the WAL and SHM files the
/// database file's mode), so no file ever exists with wider access.
fn precreate(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if let Err(e) = options.open(path) {
        log::warn!("robust-api: creating {}: {e}", path.display());
    }
}

/// Opens and migrates `path`. A queue file created now takes over, in the same transaction as its
/// first migration, whatever `from` (the old shared file, or the moved-aside damaged copy) still
/// holds, with its install key (so the scope tags stay valid): a crash cannot leave a migrated
/// but empty queue file while the old rows are dropped.
fn open_and_migrate(
    path: &Path,
    schema: &Schema,
    from: Option<&Path>,
) -> rusqlite::Result<(Connection, salvage::Report, bool)> {
    precreate(path);
    restrict_permissions(path);
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first statement also detects a file that is not a database. A file with no schema yet
    // (just created, or left empty by a crash while it was being created) gets its schema (and,
    // in `open_with_key`, its install key) without fsyncs, `synchronous=OFF`: a power loss can
    // only take back an empty file, which the next open creates again, and the first commit at
    // the file's own durability fsyncs the WAL (and, the first time, its folder), which makes
    // every frame before it durable too. An older queue file's take-over is real data: not then.
    let empty: bool = conn.query_row("SELECT count(*) = 0 FROM sqlite_master", [], |r| r.get(0))?;
    let fresh = empty && (schema.kind != Kind::Queue || from.is_none_or(|f| !f.exists()));
    let synchronous = if fresh {
        "OFF"
    } else {
        schema.durability.pragma()
    };
    // secure_delete: deleted content is overwritten with zeros (the WAL is truncated by `wipe`).
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;"
    ))?;
    // journal_mode returns a row.
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.set_prepared_statement_cache_capacity(32);
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let migrations = schema.migrations;
    let mut report = salvage::Report::default();
    if version <= 0 && (schema.kind == Kind::Queue || fresh) {
        // A new file: every migration (and, for the queue, the take-over) in one transaction, so
        // the rows taken over land in the final shape (and a crash leaves no half-made file).
        let tx = conn.transaction()?;
        for sql in migrations {
            tx.execute_batch(sql)?;
        }
        if let Some(from) = from.filter(|f| f.exists()) {
            report = salvage::queue_rows(&tx, from)?;
        }
        tx.pragma_update(None, "user_version", migrations.len() as i64)?;
        tx.commit()?;
    }
    let version_now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in migrations
        .iter()
        .enumerate()
        .skip(version_now.max(0) as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    // Touch every table once so a corrupt page in the schema shows up now, not mid-request.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    if schema.kind != Kind::Cache {
        // The queue (and uploads) file is small (bounded by `queue.max_bytes`): check every page now, so a
        // damaged entry is salvaged at start rather than found mid-delivery.
        let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("quick_check: {check}")),
            ));
        }
    }
    if version < migrations.len() as i64 && !fresh {
        // A migration may have deleted rows with secrets: make them unrecoverable now (a fresh
        // file had none).
        Store::wipe(&conn);
    }
    restrict_permissions(path);
    Ok((conn, report, fresh))
}

/// Opens the database (see [`open_and_migrate`]) and its install key.
fn open_with_key(
    path: &Path,
    schema: &Schema,
    from: Option<&Path>,
) -> rusqlite::Result<(Connection, Result<InstallKey, String>, salvage::Report)> {
    let (conn, report, fresh) = open_and_migrate(path, schema, from)?;
    let key = InstallKey::load_or_create(&conn);
    if fresh {
        // The schema and the key are written: from here on the file's own durability.
        conn.execute_batch(&format!(
            "PRAGMA synchronous={};",
            schema.durability.pragma()
        ))?;
    }
    restrict_permissions(path);
    Ok((conn, key, report))
}

/// Deletes a moved-aside copy (after its salvage) and its side files: a damaged file may still
/// hold cached bodies and queued requests, so it is not kept.
fn discard_moved_aside(moved: &Path) {
    for f in std::iter::once(moved.to_path_buf()).chain(side_files(moved)) {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("robust-api: deleting {}: {e}", f.display()),
        }
    }
}

/// Deletes moved-aside copies left by earlier versions (which kept them forever).
fn discard_old_copies(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.corrupt-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && !n.ends_with("-wal") && !n.ends_with("-shm") {
            discard_moved_aside(&entry.path());
        }
    }
}

/// Moves the database (and its WAL/SHM side files) aside.
fn move_aside(path: &Path) -> String {
    let stamp = now_ms();
    let target = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    let _ = std::fs::rename(path, &target);
    for (from, to) in side_files(path).iter().zip(side_files(&target)) {
        let _ = std::fs::rename(from, to);
    }
    target.display().to_string()
}

impl Store {
    /// Opens (creating or migrating) the cache database in `dir` (see [`Store::open_schema`]).
    #[cfg(test)]
    pub(crate) fn open(dir: &Path) -> Result<(Store, Option<Recovery>), String> {
        Store::open_schema(dir, Schema::CACHE)
    }

    /// Opens (creating or migrating) `schema`'s database in `dir`. A damaged file is moved aside
    /// and recreated (the queue's entries salvaged); the returned [`Recovery`] says so. A queue
    /// file opened for the first time takes over the queue rows of the old shared file.
    pub(crate) fn open_schema(
        dir: &Path,
        schema: Schema,
    ) -> Result<(Store, Option<Recovery>), String> {
        let path = dir.join(schema.file);
        discard_old_copies(&path);
        let legacy = dir.join(DB_FILE);
        let (conn, key, recovery) = match open_with_key(&path, &schema, Some(&legacy)) {
            Ok((conn, key, report)) => {
                if report.salvaged + report.lost > 0 {
                    log::info!(
                        "robust-api: {} queued request(s) moved into {} ({} unreadable)",
                        report.salvaged,
                        path.display(),
                        report.lost
                    );
                }
                (conn, key?, None)
            }
            Err(e) if is_corruption(&e) => {
                let moved_to = move_aside(&path);
                let (conn, key, report) = open_with_key(&path, &schema, Some(Path::new(&moved_to)))
                    .map_err(|e| format!("recreating {}: {e}", path.display()))?;
                discard_moved_aside(Path::new(&moved_to));
                log::warn!(
                    "robust-api: {} is damaged ({e}); moved to {moved_to}, recreated ({} entries \
                     salvaged, {} lost), copy deleted",
                    path.display(),
                    report.salvaged,
                    report.lost
                );
                let recovery = Recovery {
                    file: schema.file.to_string(),
                    moved_to,
                    reason: e.to_string(),
                    salvaged: report.salvaged,
                    lost: report.lost,
                };
                (conn, key?, Some(recovery))
            }
            Err(e) => return Err(format!("opening {}: {e}", path.display())),
        };
        let store = Store {
            schema,
            path,
            conn: Mutex::new(conn),
            key: RwLock::new(Arc::new(key)),
            creating: Mutex::new(None),
            created: AtomicBool::new(true),
        };
        Ok((store, recovery))
    }

    /// [`Store::open_schema`], except that a file which does not exist yet (nor, for the queue, the
    /// old shared file it would take rows over from) is created on a background thread: the first
    /// use waits for it. Creating a file takes milliseconds (the schema, WAL mode, the install
    /// key), which a client on a new folder then does not spend in its constructor. The folder is
    /// known to be writable (its lock file was just created). Should the creation fail all the
    /// same (a full disk), the error is logged and every operation on the store fails (the
    /// queue's with `ApiError::Storage`, never silently): nothing is kept anywhere else.
    pub(crate) fn open_schema_deferred(
        dir: &Path,
        schema: Schema,
    ) -> Result<(Store, Option<Recovery>), String> {
        let path = dir.join(schema.file);
        let takes_over = schema.kind == Kind::Queue && dir.join(DB_FILE).exists();
        if path.exists() || takes_over || !dir.is_dir() {
            return Store::open_schema(dir, schema);
        }
        let placeholder = Connection::open_in_memory().map_err(|e| e.to_string())?;
        let file = path.clone();
        let creating = std::thread::Builder::new()
            .name("robust-api-store".into())
            .spawn(move || {
                discard_old_copies(&file);
                let (conn, key, _) = open_with_key(&file, &schema, None)
                    .map_err(|e| format!("creating {}: {e}", file.display()))?;
                Ok((conn, key?))
            })
            .map_err(|e| format!("starting the thread that creates {}: {e}", path.display()))?;
        let store = Store {
            schema,
            path,
            conn: Mutex::new(placeholder),
            key: RwLock::new(Arc::new(InstallKey::ephemeral())),
            creating: Mutex::new(Some(creating)),
            created: AtomicBool::new(false),
        };
        Ok((store, None))
    }

    /// Is the file still being created ([`Store::open_schema_deferred`])? It is then empty.
    pub(crate) fn being_created(&self) -> bool {
        !self.created.load(Ordering::Acquire)
    }

    /// Waits for a creation still under way and takes its connection and key.
    fn settle(&self) {
        if self.created.load(Ordering::Acquire) {
            return;
        }
        let mut creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = creating.take() {
            let created = thread
                .join()
                .unwrap_or_else(|_| Err("the creating thread panicked".to_string()));
            let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
            match created {
                Ok((created, key)) => {
                    *self.key.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                    *conn = created;
                }
                Err(e) => {
                    log::error!("robust-api: {e}; every operation on this file fails");
                    // The placeholder stays: empty and read-only, every statement fails and
                    // nothing is stored.
                    let _ = conn.execute_batch("PRAGMA query_only=ON;");
                }
            }
        }
        self.created.store(true, Ordering::Release);
    }

    /// The connection (one at a time; SQLite calls here take microseconds).
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.settle();
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the file now (checkpointing the WAL) so another process or client can take it over;
    /// later operations fail harmlessly against an empty in-memory database.
    pub(crate) fn close(&self) {
        if let Ok(detached) = Connection::open_in_memory() {
            drop(std::mem::replace(&mut *self.conn(), detached));
        }
    }

    /// Replaces a connection whose file turned out to be damaged mid-life (the queue's entries
    /// salvaged from the damaged copy first).
    pub(crate) fn recover(&self, reason: &str) -> Result<Recovery, String> {
        let mut conn = self.conn();
        // Close our handle on the damaged file before moving it.
        let fresh = Connection::open_in_memory().map_err(|e| e.to_string())?;
        drop(std::mem::replace(&mut *conn, fresh));
        let moved_to = move_aside(&self.path);
        let (fresh, key, report) =
            open_with_key(&self.path, &self.schema, Some(Path::new(&moved_to)))
                .map_err(|e| format!("recreating {}: {e}", self.path.display()))?;
        *conn = fresh;
        discard_moved_aside(Path::new(&moved_to));
        log::warn!(
            "robust-api: {} is damaged ({reason}); moved to {moved_to}, recreated ({} entries \
             salvaged, {} lost), copy deleted",
            self.path.display(),
            report.salvaged,
            report.lost
        );
        *self.key.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key?);
        Ok(Recovery {
            file: self.schema.file.to_string(),
            moved_to,
            reason: reason.to_string(),
            salvaged: report.salvaged,
            lost: report.lost,
        })
    }

    /// Hex HMAC-SHA256 of `parts` under this install's key (see [`secrets::InstallKey::tag`]).
    pub(crate) fn tag(&self, domain: &str, parts: &[&str]) -> String {
        self.settle();
        let key = self
            .key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        key.tag(domain, parts)
    }

    /// Forgets the tags remembered for hot lookups (see [`secrets::InstallKey::tag`]): their
    /// inputs may hold a cleared user's credentials.
    pub(crate) fn forget_tags(&self) {
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .forget();
    }

    /// How many tags the key remembers (tests).
    #[cfg(test)]
    pub(crate) fn remembered_tags(&self) -> usize {
        self.key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .remembered()
    }

    /// How a user scope is stored: a keyed tag, `None` for no scope.
    pub(crate) fn scope_tag(&self, scope: Option<&str>) -> Option<String> {
        scope.map(|s| self.tag("scope", &[s]))
    }

    /// After a clear: moves every page (deleted ones zeroed by `secure_delete`) into the database
    /// file and truncates the WAL, so no cleared byte stays in any file. Best-effort: another
    /// connection reading at this moment postpones the truncation to a later clear.
    pub(crate) fn wipe(conn: &Connection) {
        let result = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        });
        match result {
            Ok(0) => {}
            Ok(_) => log::warn!("robust-api: WAL truncation postponed (the database is busy)"),
            Err(e) => log::warn!("robust-api: WAL truncation failed: {e}"),
        }
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
    fn a_new_file_is_created_in_the_background_and_its_first_use_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (q, rec) = Store::open_schema_deferred(dir.path(), Schema::QUEUE).unwrap();
        assert!(rec.is_none());
        assert!(
            q.being_created(),
            "a file that did not exist is created in the background"
        );
        // The first use waits: the schema, the file's durability and its install key are there.
        let (v, sync): (i64, i64) = {
            let c = q.conn();
            let v = c
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            let sync = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
            (v, sync)
        };
        assert!(!q.being_created());
        assert_eq!(v, QUEUE_MIGRATIONS.len() as i64);
        assert_eq!(sync, 2, "FULL once created");
        let tag = q.tag("scope", &["alice"]);
        drop(q);
        // An existing file is opened at once, under the same install key.
        let (q, _) = Store::open_schema_deferred(dir.path(), Schema::QUEUE).unwrap();
        assert!(!q.being_created());
        assert_eq!(q.tag("scope", &["alice"]), tag);
    }

    #[test]
    fn a_tag_taken_before_the_first_statement_is_the_files_own() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = Store::open_schema_deferred(dir.path(), Schema::CACHE).unwrap();
        let tag = c.tag("cache-key", &["GET", "/a"]);
        drop(c);
        let (c, _) = Store::open(dir.path()).unwrap();
        assert_eq!(c.tag("cache-key", &["GET", "/a"]), tag);
    }

    #[test]
    fn the_queue_file_is_fsynced_at_every_commit_unless_configured_faster() {
        let dir = tempfile::tempdir().unwrap();
        let sync = |s: &Store| -> i64 {
            s.conn()
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap()
        };
        let (q, _) = Store::open_schema(dir.path(), Schema::QUEUE).unwrap();
        assert_eq!(sync(&q), 2, "FULL");
        drop(q);
        let fast = Schema::QUEUE.with_durability(Durability::Normal);
        let (q, _) = Store::open_schema(dir.path(), fast).unwrap();
        assert_eq!(sync(&q), 1, "NORMAL");
        let (c, _) = Store::open(dir.path()).unwrap();
        assert_eq!(sync(&c), 1, "the cache: NORMAL");
        assert!(dir.path().join(QUEUE_FILE).exists() && dir.path().join(DB_FILE).exists());
    }

    #[test]
    fn a_fresh_file_is_made_in_one_go_and_keeps_its_key_and_durability() {
        let dir = tempfile::tempdir().unwrap();
        let (q, rec) = Store::open_schema(dir.path(), Schema::QUEUE).unwrap();
        assert!(rec.is_none());
        let tag = q.tag("scope", &["alice"]);
        let read =
            |s: &Store, sql: &str| -> i64 { s.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            read(&q, "PRAGMA synchronous"),
            2,
            "FULL once the schema is made"
        );
        assert_eq!(
            read(&q, "PRAGMA user_version"),
            QUEUE_MIGRATIONS.len() as i64
        );
        drop(q);
        let (q, rec) = Store::open_schema(dir.path(), Schema::QUEUE).unwrap();
        assert!(rec.is_none());
        assert_eq!(q.tag("scope", &["alice"]), tag, "the install key was kept");
        assert_eq!(read(&q, "PRAGMA synchronous"), 2);
        let (c, _) = Store::open(dir.path()).unwrap();
        assert_eq!(read(&c, "PRAGMA synchronous"), 1, "the cache: NORMAL");
        assert_eq!(read(&c, "PRAGMA user_version"), MIGRATIONS.len() as i64);
        assert_eq!(read(&c, "SELECT count(*) FROM cache_entries"), 0);
    }

    #[test]
    fn garbage_file_is_moved_aside_and_recreated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
        let (s, rec) = Store::open(dir.path()).unwrap();
        let rec = rec.expect("recovered");
        assert!(
            !std::path::Path::new(&rec.moved_to).exists(),
            "the damaged copy is deleted after salvage"
        );
        let n: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM cache_entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[cfg(unix)]
    #[test]
    fn folder_and_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("s");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_store, _) = Store::open(&dir).unwrap(); // its install key is written: the WAL exists
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        assert!(dir.join(format!("{DB_FILE}-wal")).exists());
    }

    #[test]
    fn migrating_from_version_2_drops_rows_with_raw_credentials_and_wipes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .unwrap();
            for (i, sql) in MIGRATIONS.iter().take(2).enumerate() {
                c.execute_batch(sql).unwrap();
                c.pragma_update(None, "user_version", (i + 1) as i64)
                    .unwrap();
            }
            c.execute(
                "INSERT INTO cache_entries VALUES ('GET /me auth:1', '/me', 200, 'set-cookie:s=OLD-SET-COOKIE',
                    x'00', 'authorization=Bearer OLD-RAW-TOKEN', 0, 0, 0, NULL, NULL, 0, 0, NULL, NULL, 1, 0, 0)",
                [],
            )
            .unwrap();
            c.execute(
                "INSERT INTO queue_outcomes (id, delivered, headers, attempts, at_ms)
                 VALUES ('q', 1, 'set-cookie:s=OLD-OUTCOME-COOKIE', 1, 0)",
                [],
            )
            .unwrap();
        }
        // As the client does: the queue file first (it takes the queue rows over), then the cache.
        let (q, rec) = Store::open_schema(dir.path(), Schema::QUEUE).unwrap();
        assert!(rec.is_none());
        let (s, rec) = Store::open(dir.path()).unwrap();
        assert!(rec.is_none());
        let n: i64 = s
            .conn()
            .query_row("SELECT count(*) FROM cache_entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let gone: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'queue%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(gone, 0, "the cache file no longer holds the queue");
        let kept: i64 = q
            .conn()
            .query_row(
                "SELECT count(*) FROM queue_outcomes WHERE headers IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, 1, "the outcome stays, without its headers");
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            for secret in ["OLD-RAW-TOKEN", "OLD-SET-COOKIE", "OLD-OUTCOME-COOKIE"] {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret} survived the migration"
                );
            }
        }
    }
}
