//! Reading queued requests back from a damaged (moved-aside) queue file, or from the old shared
//! file on the first open of a queue file, into a freshly created queue file — row by row, so one
//! damaged page costs only the rows on it.
//!
//! - Entries are walked in `seq` (rowid) order through the table itself, never an index; when a
//!   step fails, every following `seq` up to the file's last one (`sqlite_sequence`) is probed
//!   alone, so the scan resumes after the damaged page.
//! - An entry whose row cannot be read whole, or whose bytes no longer match its checksum, but
//!   whose identity (id, idempotency key, method, path) can be read becomes a dead letter
//!   ("damaged in storage") with an outcome: the app sees it in `dead_letters()` and its listener
//!   hears `on_dead_lettered`; a changed request is never sent.
//! - Entries not even identifiable are counted (from the file's pending counter when readable)
//!   and reported in one outcome ("N queued request(s) lost"), with no id of their own.
//! - The install key is copied, so the entries' user-scope tags stay valid. Without it, entries
//!   stored under a user scope cannot be attributed to anyone: they are counted as lost (and
//!   deleted), never replayed with the wrong user's credentials.
//! - Outcomes are copied until the first unreadable one (they are a record; losing one loses no
//!   request).
//!
//! Write errors on the new file are returned (the caller's migration transaction rolls back).

use std::path::Path;

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use super::{now_ms, BUSY_TIMEOUT, QUEUE_FILE};

/// SHA-256 over what a replay sends (each part length-prefixed): stored with every entry, so a
/// salvage can tell an intact row from one whose bytes a damaged page changed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn entry_checksum(
    id: &str,
    key: &str,
    group: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &str,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [id, key, group, method, path, query, headers] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    match body {
        Some(b) => {
            ctx.update(&[1]);
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(b);
        }
        None => ctx.update(&[0]),
    }
    ctx.finish().as_ref().to_vec()
}

/// What a salvage read back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// Entries copied (pending and dead letters).
    pub salvaged: u64,
    /// Entries that could not be read back (dead-lettered, or counted in one outcome).
    pub lost: u64,
}

/// Probes at most this many single rows after a failed step (a bound on the work for a file
/// whose `sqlite_sequence` is unreadable too).
const MAX_PROBES: i64 = 1_000_000;

/// A column that may be missing (older schema), NULL or unreadable: `None`.
fn opt<T: FromSql>(r: &Row<'_>, name: &str) -> Option<T> {
    r.get::<_, Option<T>>(name).ok().flatten()
}

/// Counts kept during a salvage.
#[derive(Default)]
struct Tally {
    /// Pending entries found (copied, dead-lettered or unattributable).
    pending_seen: i64,
    /// Entries of a user scope whose install key was unreadable.
    unattributable: u64,
}

/// One entry as read from the damaged copy.
struct Entry {
    seq: i64,
    id: String,
    idempotency_key: String,
    group_key: String,
    method: String,
    path: String,
    query: String,
    headers: String,
    body: Option<Vec<u8>>,
    timeout_ms: Option<i64>,
    size: i64,
    created_at_ms: i64,
    attempts: i64,
    next_attempt_at_ms: i64,
    last_error: Option<String>,
    dead: bool,
    dead_reason: Option<String>,
    dead_status: Option<i64>,
    dead_body: Option<Vec<u8>>,
    scope: Option<String>,
    first_attempt_at_ms: Option<i64>,
    checksum: Option<Vec<u8>>,
    unmetered_only: Option<i64>,
}

impl Entry {
    /// Does the row still match its checksum (rows of older files have none: trusted)?
    fn intact(&self) -> bool {
        self.checksum.as_deref().is_none_or(|c| {
            c == entry_checksum(
                &self.id,
                &self.idempotency_key,
                &self.group_key,
                &self.method,
                &self.path,
                &self.query,
                &self.headers,
                self.body.as_deref(),
            )
        })
    }
}

fn entry_from(r: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: r.get("seq")?,
        id: r.get("id")?,
        idempotency_key: r.get("idempotency_key")?,
        group_key: r.get("group_key")?,
        method: r.get("method")?,
        path: r.get("path")?,
        query: r.get("query")?,
        headers: r.get("headers")?,
        body: r.get("body")?,
        timeout_ms: r.get("timeout_ms")?,
        size: r.get("size")?,
        created_at_ms: r.get("created_at_ms")?,
        attempts: r.get("attempts")?,
        next_attempt_at_ms: r.get("next_attempt_at_ms")?,
        last_error: r.get("last_error")?,
        dead: r.get("dead")?,
        dead_reason: r.get("dead_reason")?,
        dead_status: r.get("dead_status")?,
        dead_body: r.get("dead_body")?,
        scope: opt(r, "scope"),
        first_attempt_at_ms: opt(r, "first_attempt_at_ms"),
        checksum: opt(r, "checksum"),
        unmetered_only: opt(r, "unmetered_only"),
    })
}

fn insert_entry(dst: &Connection, e: &Entry) -> rusqlite::Result<()> {
    // Older files have no first-attempt time: an attempted entry counts from its creation (the
    // old rule), a never-attempted one from its first attempt to come.
    let first = e
        .first_attempt_at_ms
        .or((e.attempts > 0).then_some(e.created_at_ms));
    dst.prepare_cached(
        "INSERT OR IGNORE INTO queue_entries (seq, id, idempotency_key, group_key, method, path, query,
            headers, body, timeout_ms, size, created_at_ms, attempts, next_attempt_at_ms, last_error,
            dead, dead_reason, dead_status, dead_body, scope, first_attempt_at_ms, checksum,
            unmetered_only)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23)",
    )?
    .execute(params![
        e.seq,
        e.id,
        e.idempotency_key,
        e.group_key,
        e.method,
        e.path,
        e.query,
        e.headers,
        e.body,
        e.timeout_ms,
        e.size,
        e.created_at_ms,
        e.attempts,
        e.next_attempt_at_ms,
        e.last_error,
        e.dead,
        e.dead_reason,
        e.dead_status,
        e.dead_body,
        e.scope,
        first,
        e.checksum,
        e.unmetered_only.unwrap_or(0),
    ])?;
    Ok(())
}

/// What can be read of an entry whose row cannot be read whole: the columns stored before its
/// body (SQLite evaluates a whole result row at once, so a damaged overflow page of the body
/// hides every column after it).
struct Identity {
    id: String,
    key: String,
    method: String,
    path: String,
}

/// The rest, when still readable (`None` otherwise).
struct Extra {
    attempts: i64,
    dead: bool,
    scope: Option<String>,
}

fn identity_of(src: &Connection, seq: i64) -> Option<(Identity, Option<Extra>)> {
    let ident = src
        .prepare_cached(
            "SELECT id, idempotency_key, method, path FROM queue_entries WHERE seq = ?1",
        )
        .and_then(|mut st| {
            st.query_row([seq], |r| {
                Ok(Identity {
                    id: r.get(0)?,
                    key: r.get(1)?,
                    method: r.get(2)?,
                    path: r.get(3)?,
                })
            })
        })
        .ok()?;
    let extra = src
        .prepare_cached("SELECT attempts, dead, scope FROM queue_entries WHERE seq = ?1")
        .and_then(|mut st| {
            st.query_row([seq], |r| {
                Ok(Extra {
                    attempts: opt(r, "attempts").unwrap_or(0),
                    dead: opt(r, "dead").unwrap_or(false),
                    scope: opt(r, "scope"),
                })
            })
        })
        .ok();
    Some((ident, extra))
}

/// An entry known only by its identity: a dead letter with an outcome. Its user scope, when
/// unreadable too, is recorded as none (so the app sees it when no user scope is set).
fn insert_damaged(
    dst: &Connection,
    seq: i64,
    ident: &Identity,
    extra: Option<&Extra>,
) -> rusqlite::Result<()> {
    let scope = extra.and_then(|e| e.scope.clone());
    let attempts = extra.map_or(0, |e| e.attempts);
    let reason = "damaged in storage: the request could not be read back, it was not sent again";
    let now = now_ms();
    dst.prepare_cached(
        "INSERT OR IGNORE INTO queue_entries (seq, id, idempotency_key, group_key, method, path, query,
            headers, size, created_at_ms, attempts, next_attempt_at_ms, dead, dead_reason, scope)
         VALUES (?1, ?2, ?3, '', ?4, ?5, '', '', 0, ?6, ?7, ?6, 1, ?8, ?9)",
    )?
    .execute(params![
        seq,
        ident.id,
        ident.key,
        ident.method,
        ident.path,
        now,
        attempts,
        reason,
        scope
    ])?;
    record_outcome(dst, &ident.id, reason, attempts, scope.as_deref())
}

fn record_outcome(
    dst: &Connection,
    id: &str,
    reason: &str,
    attempts: i64,
    scope: Option<&str>,
) -> rusqlite::Result<()> {
    dst.prepare_cached(
        "INSERT INTO queue_outcomes (id, delivered, attempts, reason, at_ms, scope)
         VALUES (?1, 0, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, attempts, reason, now_ms(), scope])?;
    Ok(())
}

/// The outcome for entries lost without an id.
fn record_unidentified(dst: &Connection, count: Option<u64>) -> rusqlite::Result<()> {
    let reason = match count {
        Some(n) => {
            format!("damaged in storage: {n} queued request(s) could not be read back and are lost")
        }
        None => "damaged in storage: the queue file was unreadable; an unknown number of queued \
                 requests are lost"
            .to_string(),
    };
    record_outcome(dst, "", &reason, 0, None)
}

/// Copies what `from` still holds into `dst` (a queue file just created, inside its first
/// migration's transaction).
pub(crate) fn queue_rows(dst: &Connection, from: &Path) -> rusqlite::Result<Report> {
    // The moved-aside copy of a queue file was a queue for sure; the old shared file may never
    // have held one.
    let known_queue = from
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(QUEUE_FILE));
    let mut report = Report::default();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let src = match Connection::open_with_flags(from, flags) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("robust-api: salvage: opening {}: {e}", from.display());
            if known_queue {
                record_unidentified(dst, None)?;
                report.lost = 1;
            }
            return Ok(report);
        }
    };
    let _ = src.busy_timeout(BUSY_TIMEOUT);
    let has_table = src.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'queue_entries'",
        [],
        |r| r.get::<_, i64>(0),
    );
    match has_table {
        Ok(0) => return Ok(report),
        Ok(_) => {}
        Err(e) => {
            log::warn!("robust-api: salvage: {} is unreadable: {e}", from.display());
            if known_queue {
                record_unidentified(dst, None)?;
                report.lost = 1;
            }
            return Ok(report);
        }
    }
    let key: Option<Vec<u8>> = src
        .query_row("SELECT key FROM install_key WHERE id = 0", [], |r| r.get(0))
        .ok();
    if let Some(key) = &key {
        dst.execute(
            "INSERT OR REPLACE INTO install_key (id, key) VALUES (0, ?1)",
            [key],
        )?;
    }
    let expected_pending: Option<i64> = src
        .query_row("SELECT pending FROM queue_stats WHERE id = 0", [], |r| {
            r.get(0)
        })
        .ok();
    let last_seq: Option<i64> = src
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'queue_entries'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ok()
        .flatten();

    let mut damaged = false;
    let mut tally = Tally::default();
    let key_kept = key.is_some();
    let take = |dst: &Connection,
                e: Entry,
                report: &mut Report,
                tally: &mut Tally|
     -> rusqlite::Result<()> {
        if !e.dead {
            tally.pending_seen += 1;
        }
        if !key_kept && e.scope.is_some() {
            tally.unattributable += 1;
            report.lost += 1;
            return Ok(());
        }
        if !e.intact() {
            // Readable, but its bytes changed: never sent as it is now.
            let ident = Identity {
                id: e.id.clone(),
                key: e.idempotency_key.clone(),
                method: e.method.clone(),
                path: e.path.clone(),
            };
            let extra = Extra {
                attempts: e.attempts,
                dead: e.dead,
                scope: e.scope.clone(),
            };
            insert_damaged(dst, e.seq, &ident, Some(&extra))?;
            report.lost += 1;
            return Ok(());
        }
        insert_entry(dst, &e)?;
        report.salvaged += 1;
        Ok(())
    };
    let mut last = 0i64;
    'scan: loop {
        let step = src
            .prepare_cached("SELECT * FROM queue_entries WHERE seq > ?1 ORDER BY seq LIMIT 1")
            .and_then(|mut st| st.query_row([last], entry_from).optional());
        match step {
            Ok(Some(e)) => {
                last = e.seq;
                take(dst, e, &mut report, &mut tally)?;
            }
            Ok(None) => break,
            Err(e) => {
                damaged = true;
                log::warn!("robust-api: salvage: after seq {last}: {e}; probing row by row");
                let end = last_seq.unwrap_or(last + MAX_PROBES).min(last + MAX_PROBES);
                let mut seq = last + 1;
                while seq <= end {
                    let one = src
                        .prepare_cached("SELECT * FROM queue_entries WHERE seq = ?1")
                        .and_then(|mut st| st.query_row([seq], entry_from).optional());
                    match one {
                        Ok(Some(e)) => {
                            last = seq;
                            take(dst, e, &mut report, &mut tally)?;
                            continue 'scan;
                        }
                        Ok(None) => {}
                        Err(_) => {
                            // The whole row is unreadable; its identity may not be.
                            if let Some((ident, extra)) = identity_of(&src, seq) {
                                insert_damaged(dst, seq, &ident, extra.as_ref())?;
                                report.lost += 1;
                                if !extra.is_some_and(|e| e.dead) {
                                    tally.pending_seen += 1;
                                }
                            }
                        }
                    }
                    seq += 1;
                }
                break;
            }
        }
    }
    if tally.unattributable > 0 {
        record_unidentified(dst, Some(tally.unattributable))?;
    }
    if damaged {
        // What the counter says was pending but no row gave back.
        match expected_pending {
            Some(n) if n > tally.pending_seen => {
                let missing = (n - tally.pending_seen) as u64;
                record_unidentified(dst, Some(missing))?;
                report.lost += missing;
            }
            Some(_) => {}
            None => {
                record_unidentified(dst, None)?;
                report.lost += 1;
            }
        }
    }
    // Outcomes written before the shared file's version 3 may hold Set-Cookie: no headers then.
    let version: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap_or(0);
    let keep_headers = known_queue || version >= 3;
    copy_outcomes(dst, &src, key.is_some(), keep_headers);
    Ok(report)
}

/// Copies readable outcomes, oldest first, stopping at the first damaged one.
fn copy_outcomes(dst: &Connection, src: &Connection, key_kept: bool, keep_headers: bool) {
    let mut last = 0i64;
    loop {
        let step = src
            .prepare_cached("SELECT * FROM queue_outcomes WHERE seq > ?1 ORDER BY seq LIMIT 1")
            .and_then(|mut st| {
                st.query_row([last], |r| {
                    Ok((
                        r.get::<_, i64>("seq")?,
                        r.get::<_, String>("id")?,
                        r.get::<_, bool>("delivered")?,
                        r.get::<_, Option<i64>>("status")?,
                        r.get::<_, Option<String>>("headers")?,
                        r.get::<_, Option<Vec<u8>>>("body")?,
                        r.get::<_, Option<String>>("backend")?,
                        r.get::<_, i64>("attempts")?,
                        r.get::<_, Option<String>>("reason")?,
                        r.get::<_, i64>("at_ms")?,
                        r.get::<_, bool>("notified")?,
                        opt::<String>(r, "scope"),
                    ))
                })
                .optional()
            });
        let Ok(Some(o)) = step else { return };
        last = o.0;
        if o.11.is_some() && !key_kept {
            continue;
        }
        let result = dst.execute(
            "INSERT INTO queue_outcomes (id, delivered, status, headers, body, backend, attempts,
                reason, at_ms, notified, scope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                o.1,
                o.2,
                o.3,
                o.4.filter(|_| keep_headers),
                o.5,
                o.6,
                o.7,
                o.8,
                o.9,
                o.10,
                o.11
            ],
        );
        if let Err(e) = result {
            log::warn!("robust-api: salvage: copying an outcome: {e}");
            return;
        }
    }
}
