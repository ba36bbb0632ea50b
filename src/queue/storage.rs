//! SQL for the queue. Every state change is one transaction; a row is deleted only after its
//! delivery is recorded, so a process killed at any point replays (with the same idempotency key)
//! rather than loses. Credential headers never reach this file: [`Stored::new`] strips them, and
//! recorded responses lose `Set-Cookie` and credential headers.
//!
//! Every entry and outcome carries the keyed tag of the user scope it was stored under (`scope`,
//! NULL = no scope); replays, listings and listener deliveries see only the current scope's, and
//! ordering groups are per scope (another user's waiting entry never blocks this user's group).

use crate::defaults::clamped_i32;
use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{DeadLetter, QueueOutcome, QueuedRequestId, QueuedRequestInfo};
use crate::store::secrets::storable_response_headers;
use crate::store::{decode_header_lines, encode_header_lines, entry_checksum, now_ms, Store};
use crate::types::{ApiRequest, ApiResponse, HttpMethod, QueryParam};

/// A queued request as persisted.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: String,
    pub idempotency_key: String,
    pub group: String,
    pub method: HttpMethod,
    pub path: String,
    pub query: Vec<QueryParam>,
    pub headers: HashMap<String, String>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: Option<i32>,
    pub created_at_ms: i64,
    pub attempts: u32,
    /// The tag of the user scope it was stored under (`None`: no scope).
    pub scope: Option<String>,
    /// When it was first attempted (Unix ms; `None`: never). Expiry counts from here.
    pub first_attempt_at_ms: Option<i64>,
    /// Waits while the network is metered.
    pub unmetered_only: bool,
}

/// A server body kept with a dead letter or an outcome is cut to this many bytes.
pub(crate) const MAX_STORED_BODY: usize = 64 * 1024;
/// Dead letters kept at most (count), oldest evicted first, each with an outcome.
pub(crate) const MAX_DEAD_LETTERS: i64 = 200;
/// Dead letters kept at most (request and server bytes), oldest evicted first.
pub(crate) const MAX_DEAD_BYTES: i64 = 4 * 1024 * 1024;
/// Outcomes kept at most: notified ones, every one, and their bytes (oldest deleted first).
const MAX_NOTIFIED_OUTCOMES: i64 = 200;
const MAX_OUTCOMES: i64 = 1_000;
const MAX_OUTCOME_BYTES: i64 = 4 * 1024 * 1024;

/// `body` cut to [`MAX_STORED_BODY`].
fn capped(body: &[u8]) -> &[u8] {
    &body[..body.len().min(MAX_STORED_BODY)]
}

fn method_from(s: &str) -> HttpMethod {
    match s {
        "GET" => HttpMethod::Get,
        "HEAD" => HttpMethod::Head,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        "OPTIONS" => HttpMethod::Options,
        _ => HttpMethod::Post,
    }
}

/// Percent-encodes every byte outside the URL-unreserved set.
fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters as `name=value&…`, both percent-encoded: any name or value survives, order and
/// repeats are kept.
fn encode_query(q: &[QueryParam]) -> String {
    q.iter()
        .map(|p| format!("{}={}", pct_encode(&p.name), pct_encode(&p.value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode_query(s: &str) -> Vec<QueryParam> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (name, value) = kv.split_once('=').unwrap_or((kv, ""));
            QueryParam {
                name: pct_decode(name),
                value: pct_decode(value),
            }
        })
        .collect()
}

impl Stored {
    /// Prepares `req` for disk: headers named in `sensitive` (lower-case) are dropped.
    pub(crate) fn new(
        req: &ApiRequest,
        id: String,
        key: String,
        group: String,
        sensitive: &[String],
    ) -> Stored {
        let headers = req
            .headers
            .iter()
            .filter(|(k, _)| !sensitive.contains(&k.to_ascii_lowercase()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Stored {
            id,
            idempotency_key: key,
            group,
            method: req.method,
            path: req.path.clone(),
            query: req.query.clone(),
            headers,
            body: req.body.clone(),
            timeout_ms: req.timeout_ms,
            created_at_ms: now_ms(),
            attempts: 0,
            scope: None,
            first_attempt_at_ms: None,
            unmetered_only: req.unmetered_only,
        }
    }

    /// The request to send on replay (the idempotency key always set; credentials come from the
    /// header provider at send time).
    pub(crate) fn to_request(&self) -> ApiRequest {
        let mut r = ApiRequest::new(self.method, self.path.clone());
        r.query = self.query.clone();
        r.headers = self.headers.clone();
        r.body = self.body.clone();
        r.timeout_ms = self.timeout_ms;
        r.idempotency_key = Some(self.idempotency_key.clone());
        r.unmetered_only = self.unmetered_only;
        r
    }

    fn size(&self, headers: &str, query: &str) -> i64 {
        (self.body.as_ref().map_or(0, Vec::len) + headers.len() + query.len() + self.path.len())
            as i64
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Stored> {
        let query: String = r.get("query")?;
        let headers: String = r.get("headers")?;
        Ok(Stored {
            id: r.get("id")?,
            idempotency_key: r.get("idempotency_key")?,
            group: r.get("group_key")?,
            method: method_from(&r.get::<_, String>("method")?),
            path: r.get("path")?,
            query: decode_query(&query),
            headers: decode_header_lines(&headers),
            body: r.get("body")?,
            timeout_ms: r
                .get::<_, Option<i64>>("timeout_ms")?
                .map(|v| v.clamp(1, i32::MAX as i64) as i32),
            created_at_ms: r.get("created_at_ms")?,
            attempts: r.get::<_, i64>("attempts")?.clamp(0, u32::MAX as i64) as u32,
            scope: r.get("scope")?,
            first_attempt_at_ms: r.get("first_attempt_at_ms")?,
            unmetered_only: r.get::<_, i64>("unmetered_only")? != 0,
        })
    }
}

/// Why an insert was refused.
pub(crate) enum InsertError {
    Full,
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for InsertError {
    fn from(e: rusqlite::Error) -> Self {
        InsertError::Db(e)
    }
}

/// Inserts `s` if the pending entries stay within the bounds.
pub(crate) fn insert(
    c: &mut Connection,
    s: &Stored,
    max_entries: u32,
    max_bytes: u64,
) -> Result<(), InsertError> {
    let query = encode_query(&s.query);
    let headers = encode_header_lines(&s.headers);
    let size = s.size(&headers, &query);
    let tx = c.transaction()?;
    let (count, bytes): (i64, i64) = tx
        .prepare_cached("SELECT pending, pending_bytes FROM queue_stats")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if count >= i64::from(max_entries) || (bytes + size) as u64 > max_bytes {
        return Err(InsertError::Full);
    }
    let method = s.method.as_reqwest();
    let method = method.as_str();
    let checksum = entry_checksum(
        &s.id,
        &s.idempotency_key,
        &s.group,
        method,
        &s.path,
        &query,
        &headers,
        s.body.as_deref(),
    );
    tx.prepare_cached(
        "INSERT INTO queue_entries (id, idempotency_key, group_key, method, path, query, headers, body,
            timeout_ms, size, created_at_ms, next_attempt_at_ms, scope, checksum, unmetered_only)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        s.id,
        s.idempotency_key,
        s.group,
        method,
        s.path,
        query,
        headers,
        s.body,
        s.timeout_ms.map(|v| v as i64),
        size,
        s.created_at_ms,
        s.scope,
        checksum,
        i64::from(s.unmetered_only),
    ])?;
    tx.commit()?;
    Ok(())
}

/// The oldest pending entry of every ordering group of user `scope` (its tag) whose next attempt
/// is due, oldest first, skipping `busy` ids, at most `limit`. While `metered`, a group whose
/// head is "unmetered only" waits (its later entries too: a group stays FIFO).
pub(crate) fn due_heads(
    c: &Connection,
    now: i64,
    busy: &[String],
    limit: usize,
    scope: Option<&str>,
    metered: bool,
) -> rusqlite::Result<Vec<Stored>> {
    let mut st = c.prepare_cached(
        "SELECT q.* FROM queue_entries q
         WHERE q.dead = 0 AND q.scope IS ?2
           AND q.seq = (SELECT MIN(seq) FROM queue_entries p
                        WHERE p.dead = 0 AND p.scope IS q.scope AND p.group_key = q.group_key)
           AND q.next_attempt_at_ms <= ?1
           AND (?3 = 0 OR q.unmetered_only = 0)
         ORDER BY q.seq",
    )?;
    let rows = st.query_map(params![now, scope, i64::from(metered)], Stored::from_row)?;
    let mut out = Vec::new();
    for row in rows {
        let s = row?;
        if !busy.contains(&s.id) {
            out.push(s);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// When the next group head of user `scope` becomes due (None: nothing pending in that scope;
/// other scopes' entries wait for theirs; while `metered`, unmetered-only heads wait for an
/// unmetered network, which wakes the replay itself).
pub(crate) fn next_due_at(
    c: &Connection,
    scope: Option<&str>,
    metered: bool,
) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT MIN(q.next_attempt_at_ms) FROM queue_entries q
         WHERE q.dead = 0 AND q.scope IS ?1
           AND q.seq = (SELECT MIN(seq) FROM queue_entries p
                        WHERE p.dead = 0 AND p.scope IS q.scope AND p.group_key = q.group_key)
           AND (?2 = 0 OR q.unmetered_only = 0)",
    )?
    .query_row(params![scope, i64::from(metered)], |r| r.get(0))
}

/// Every pending entry becomes due now (network came back, a backend recovered, flush).
pub(crate) fn make_all_due(c: &Connection, now: i64) -> rusqlite::Result<usize> {
    c.prepare_cached("UPDATE queue_entries SET next_attempt_at_ms = ?1 WHERE dead = 0 AND next_attempt_at_ms > ?1")?
        .execute([now])
}

#[allow(clippy::too_many_arguments)]
fn record_outcome(
    c: &Connection,
    s: &Stored,
    response: Option<&ApiResponse>,
    reason: Option<&str>,
    status: Option<i32>,
    body: Option<&[u8]>,
    attempts: u32,
    sensitive: &[String],
) -> rusqlite::Result<()> {
    let headers =
        response.map(|r| encode_header_lines(&storable_response_headers(&r.headers, sensitive)));
    c.prepare_cached(
        "INSERT INTO queue_outcomes (id, delivered, status, headers, body, backend, attempts, reason, at_ms, scope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        s.id,
        response.is_some(),
        response.map(|r| r.status).or(status),
        headers,
        response.map(|r| capped(&r.body)).or(body.map(capped)),
        response.map(|r| r.backend.as_str()),
        attempts,
        reason,
        now_ms(),
        s.scope,
    ])?;
    bound_outcomes(c)
}

/// Bounded: the last 200 notified outcomes, at most 1,000 in all, at most 4 MiB of bodies (the
/// oldest go first).
fn bound_outcomes(c: &Connection) -> rusqlite::Result<()> {
    c.prepare_cached(
        "DELETE FROM queue_outcomes WHERE notified = 1
            AND seq <= (SELECT MAX(seq) FROM queue_outcomes) - ?1",
    )?
    .execute([MAX_NOTIFIED_OUTCOMES])?;
    c.prepare_cached(
        "DELETE FROM queue_outcomes WHERE seq <= (SELECT MAX(seq) FROM queue_outcomes) - ?1",
    )?
    .execute([MAX_OUTCOMES])?;
    c.prepare_cached(
        "DELETE FROM queue_outcomes WHERE seq <= (
            SELECT seq FROM (SELECT seq, SUM(COALESCE(length(body), 0) + COALESCE(length(headers), 0))
                             OVER (ORDER BY seq DESC) AS run FROM queue_outcomes)
            WHERE run > ?1 ORDER BY seq DESC LIMIT 1)",
    )?
    .execute([MAX_OUTCOME_BYTES])?;
    Ok(())
}

/// Bounded dead letters: beyond [`MAX_DEAD_LETTERS`] or [`MAX_DEAD_BYTES`] the oldest are
/// evicted, each with an outcome saying so (the newest is always kept, whatever its size).
fn bound_dead_letters(c: &Connection) -> rusqlite::Result<()> {
    let evict: Vec<(String, i64, Option<String>)> = c
        .prepare_cached(
            "SELECT id, attempts, scope FROM (
                SELECT id, attempts, scope, seq,
                       ROW_NUMBER() OVER (ORDER BY seq DESC) AS n,
                       SUM(size + COALESCE(length(dead_body), 0)) OVER (ORDER BY seq DESC) AS run
                FROM queue_entries WHERE dead = 1)
             WHERE n > ?1 OR (run > ?2 AND n > 1) ORDER BY seq",
        )?
        .query_map([MAX_DEAD_LETTERS, MAX_DEAD_BYTES], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (id, attempts, scope) in evict {
        c.prepare_cached("DELETE FROM queue_entries WHERE id = ?1")?
            .execute([&id])?;
        c.prepare_cached(
            "INSERT INTO queue_outcomes (id, delivered, attempts, reason, at_ms, scope)
             VALUES (?1, 0, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id,
            attempts,
            format!(
                "evicted from the dead letters (at most {MAX_DEAD_LETTERS} entries / \
                 {MAX_DEAD_BYTES} bytes are kept)"
            ),
            now_ms(),
            scope
        ])?;
    }
    Ok(())
}

/// Delivered: delete the entry and record the outcome (without `sensitive` response headers),
/// atomically.
pub(crate) fn delivered(
    c: &mut Connection,
    s: &Stored,
    r: &ApiResponse,
    sensitive: &[String],
) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.prepare_cached("DELETE FROM queue_entries WHERE id = ?1")?
        .execute([&s.id])?;
    let attempts = s.attempts + 1;
    record_outcome(&tx, s, Some(r), None, None, None, attempts, sensitive)?;
    tx.commit()
}

/// Failed, try again at `next_at` (the first attempt's time is kept, or set to `now`).
pub(crate) fn reschedule(
    c: &Connection,
    s: &Stored,
    error: &str,
    now: i64,
    next_at: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE queue_entries SET attempts = attempts + 1, last_error = ?2, next_attempt_at_ms = ?3,
            first_attempt_at_ms = COALESCE(first_attempt_at_ms, ?4)
         WHERE id = ?1",
    )?
    .execute(params![s.id, error, next_at, now])?;
    Ok(())
}

/// Move to the dead letters (kept, with the server's answer) and record the outcome.
pub(crate) fn dead_letter(
    c: &mut Connection,
    s: &Stored,
    reason: &str,
    status: Option<i32>,
    body: Option<&[u8]>,
    attempted: bool,
) -> rusqlite::Result<()> {
    let attempts = s.attempts + u32::from(attempted);
    let body = body.map(capped);
    let tx = c.transaction()?;
    tx.prepare_cached(
        "UPDATE queue_entries SET dead = 1, dead_reason = ?2, dead_status = ?3, dead_body = ?4, attempts = ?5
         WHERE id = ?1",
    )?
    .execute(params![s.id, reason, status, body, attempts])?;
    record_outcome(&tx, s, None, Some(reason), status, body, attempts, &[])?;
    bound_dead_letters(&tx)?;
    tx.commit()
}

/// Pending entries of user `scope` (its tag).
pub(crate) fn pending(
    c: &Connection,
    now: i64,
    scope: Option<&str>,
) -> rusqlite::Result<Vec<QueuedRequestInfo>> {
    let mut st = c.prepare_cached(
        "SELECT id, idempotency_key, method, path, attempts, created_at_ms, next_attempt_at_ms, last_error
         FROM queue_entries WHERE dead = 0 AND scope IS ?1 ORDER BY seq",
    )?;
    let rows = st.query_map([scope], |r| {
        Ok(QueuedRequestInfo {
            id: QueuedRequestId(r.get(0)?),
            idempotency_key: r.get(1)?,
            method: method_from(&r.get::<_, String>(2)?),
            path: r.get(3)?,
            attempts: clamped_i32(r.get::<_, i64>(4)?),
            created_at_ms: r.get::<_, i64>(5)?.max(0),
            next_attempt_in_ms: clamped_i32(r.get::<_, i64>(6)? - now),
            last_error: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Dead letters of user `scope` (its tag), oldest first: `limit` of them after skipping
/// `offset`.
pub(crate) fn dead_letters(
    c: &Connection,
    scope: Option<&str>,
    offset: i64,
    limit: i64,
) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut st = c.prepare_cached(
        "SELECT id, idempotency_key, method, path, attempts, dead_reason, dead_status, dead_body
         FROM queue_entries WHERE dead = 1 AND scope IS ?1 ORDER BY seq LIMIT ?3 OFFSET ?2",
    )?;
    let rows = st.query_map(params![scope, offset, limit], |r| {
        Ok(DeadLetter {
            id: QueuedRequestId(r.get(0)?),
            idempotency_key: r.get(1)?,
            method: method_from(&r.get::<_, String>(2)?),
            path: r.get(3)?,
            attempts: clamped_i32(r.get::<_, i64>(4)?),
            reason: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            status: r.get::<_, Option<i64>>(6)?.map(|s| s.clamp(0, 999) as i32),
            body: r.get(7)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn remove(c: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM queue_entries WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// Dead letter → pending again (attempts reset, due now). False if no such dead letter.
pub(crate) fn revive(c: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached(
        "UPDATE queue_entries SET dead = 0, dead_reason = NULL, dead_status = NULL, dead_body = NULL,
            attempts = 0, last_error = NULL, next_attempt_at_ms = ?2, first_attempt_at_ms = NULL
         WHERE id = ?1 AND dead = 1",
    )?
    .execute(params![id, now])?
        > 0)
}

/// Every entry (pending and dead) goes, leaving no recoverable bytes; outcomes stay.
pub(crate) fn clear(c: &Connection) -> rusqlite::Result<()> {
    c.execute("DELETE FROM queue_entries", [])?;
    Store::wipe(c);
    Ok(())
}

/// Every entry and outcome of user `scope` (its tag) goes, leaving no recoverable bytes.
pub(crate) fn clear_scope(c: &mut Connection, scope: &str) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.prepare_cached("DELETE FROM queue_entries WHERE scope IS ?1")?
        .execute([scope])?;
    tx.prepare_cached("DELETE FROM queue_outcomes WHERE scope IS ?1")?
        .execute([scope])?;
    tx.commit()?;
    Store::wipe(c);
    Ok(())
}

/// (pending, dead, oldest pending created_at)
pub(crate) fn counts(c: &Connection) -> rusqlite::Result<(u64, u64, Option<i64>)> {
    c.prepare_cached(
        "SELECT COALESCE(SUM(dead = 0), 0), COALESCE(SUM(dead = 1), 0), MIN(CASE WHEN dead = 0 THEN created_at_ms END)
         FROM queue_entries",
    )?
    .query_row([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?)))
}

fn outcome_from_row(r: &Row<'_>) -> rusqlite::Result<QueueOutcome> {
    let headers: Option<String> = r.get("headers")?;
    let delivered: bool = r.get("delivered")?;
    let status = r
        .get::<_, Option<i64>>("status")?
        .map(|s| s.clamp(0, 999) as i32);
    let response = delivered.then(|| -> rusqlite::Result<ApiResponse> {
        Ok(ApiResponse {
            status: status.unwrap_or(200),
            headers: decode_header_lines(headers.as_deref().unwrap_or("")),
            body: r.get::<_, Option<Vec<u8>>>("body")?.unwrap_or_default(),
            backend: r.get::<_, Option<String>>("backend")?.unwrap_or_default(),
            attempts: clamped_i32(r.get::<_, i64>("attempts")?),
            elapsed_ms: 0,
            from_cache: false,
            stale: false,
            age_ms: None,
            queued: None,
        })
    });
    Ok(QueueOutcome {
        id: QueuedRequestId(r.get("id")?),
        delivered,
        response: response.transpose()?,
        status,
        reason: r.get("reason")?,
        at_ms: r.get::<_, i64>("at_ms")?.max(0),
        notified: r.get("notified")?,
    })
}

/// Recent outcomes (bounded) of user `scope` (its tag), oldest first.
pub(crate) fn outcomes(c: &Connection, scope: Option<&str>) -> rusqlite::Result<Vec<QueueOutcome>> {
    let mut st = c.prepare_cached("SELECT * FROM queue_outcomes WHERE scope IS ?1 ORDER BY seq")?;
    let rows = st.query_map([scope], outcome_from_row)?;
    rows.collect()
}

/// The oldest outcome of user `scope` (its tag) no listener has seen yet, with its sequence
/// number.
pub(crate) fn next_unnotified(
    c: &Connection,
    scope: Option<&str>,
) -> rusqlite::Result<Option<(i64, QueueOutcome)>> {
    c.prepare_cached(
        "SELECT * FROM queue_outcomes WHERE notified = 0 AND scope IS ?1 ORDER BY seq LIMIT 1",
    )?
    .query_row([scope], |r| Ok((r.get("seq")?, outcome_from_row(r)?)))
    .optional()
}

pub(crate) fn mark_notified(c: &Connection, seq: i64) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE queue_outcomes SET notified = 1 WHERE seq = ?1")?
        .execute([seq])
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn stats(c: &Connection) -> (i64, i64) {
        c.query_row("SELECT pending, pending_bytes FROM queue_stats", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    fn recount(c: &Connection) -> (i64, i64) {
        c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM queue_entries WHERE dead = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn query_parameters_survive_any_characters() {
        let q = vec![
            QueryParam {
                name: "a:b".into(),
                value: "1\n2&x=y".into(),
            },
            QueryParam {
                name: "a:b".into(),
                value: "".into(),
            },
            QueryParam {
                name: "ünï cödé %".into(),
                value: "=?#".into(),
            },
        ];
        assert_eq!(decode_query(&encode_query(&q)), q);
        assert!(decode_query(&encode_query(&[])).is_empty());
    }

    #[test]
    fn the_trigger_kept_stats_match_a_recount_through_every_transition() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_schema(dir.path(), crate::store::Schema::QUEUE).unwrap();
        let mut c = store.conn();
        let req = ApiRequest::post_json("/x", "{\"a\":1}");
        let entries: Vec<Stored> = (0..4)
            .map(|i| Stored::new(&req, format!("id{i}"), format!("k{i}"), String::new(), &[]))
            .collect();
        for e in &entries {
            assert!(insert(&mut c, e, 3, u64::MAX).is_ok() || e.id == "id3");
        }
        assert!(matches!(
            insert(&mut c, &entries[3], 3, u64::MAX),
            Err(InsertError::Full)
        ));
        assert_eq!(stats(&c), recount(&c));
        assert_eq!(stats(&c).0, 3);
        dead_letter(&mut c, &entries[0], "no", Some(400), None, true).unwrap();
        assert_eq!(stats(&c), recount(&c));
        assert!(revive(&c, "id0", 0).unwrap());
        assert_eq!(stats(&c), recount(&c));
        delivered(
            &mut c,
            &entries[1],
            &ApiResponse::queued(QueuedRequestId("x".into()), 0),
            &[],
        )
        .unwrap();
        assert!(remove(&c, "id2").unwrap());
        assert_eq!(stats(&c), recount(&c));
        assert_eq!(stats(&c).0, 1);
    }

    #[test]
    fn dead_letters_and_outcomes_are_bounded_with_bodies_capped_and_evictions_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open_schema(dir.path(), crate::store::Schema::QUEUE).unwrap();
        let mut c = store.conn();
        let req = ApiRequest::post_json("/x", "{}");
        let big = vec![b'b'; 100 * 1024];
        let n = 80;
        for i in 0..n {
            let e = Stored::new(&req, format!("id{i}"), format!("k{i}"), String::new(), &[]);
            assert!(insert(&mut c, &e, u32::MAX, u64::MAX).is_ok());
            dead_letter(&mut c, &e, "no", Some(400), Some(&big), true).unwrap();
        }
        let kept = dead_letters(&c, None, 0, i64::MAX).unwrap();
        assert!(kept.len() < n && !kept.is_empty(), "{}", kept.len());
        assert!(kept
            .iter()
            .all(|d| d.body.as_ref().unwrap().len() == MAX_STORED_BODY));
        let bytes: usize = kept.iter().map(|d| d.body.as_ref().unwrap().len()).sum();
        assert!(bytes as i64 <= MAX_DEAD_BYTES);
        assert_eq!(
            kept.last().unwrap().id.0,
            format!("id{}", n - 1),
            "newest kept"
        );
        // Every evicted one has an outcome saying so.
        let evicted: Vec<String> = outcomes(&c, None)
            .unwrap()
            .into_iter()
            .filter(|o| {
                o.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("evicted"))
            })
            .map(|o| o.id.0)
            .collect();
        assert_eq!(evicted.len() + kept.len(), n);
        // Outcome bodies are capped and bounded in bytes too.
        let ob: i64 = c
            .query_row(
                "SELECT COALESCE(SUM(length(body)), 0) FROM queue_outcomes",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(ob <= MAX_OUTCOME_BYTES, "{ob}");
        // Pages.
        let page = dead_letters(&c, None, 2, 3).unwrap();
        assert_eq!(page.len(), 3);
        assert_eq!(page[0].id, kept[2].id);
    }
}
