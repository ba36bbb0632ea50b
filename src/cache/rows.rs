//! The `cache_entries` table: one row per key and `Vary` variant (at most
//! [`super::hot::MAX_VARIANTS`] per key). Only SQL here; callers run it through
//! [`super::HttpCache::with_db`] (so on the blocking-I/O path, failures logged).

use std::sync::Arc;

use rusqlite::{params, Connection};

use super::hot::MAX_VARIANTS;
use super::Entry;
use crate::store::{decode_header_lines, encode_header_lines};

/// Every stored variant of `key` in `scope`.
pub(crate) fn variants(
    c: &Connection,
    key: &str,
    scope: &Option<String>,
) -> rusqlite::Result<Vec<Entry>> {
    let mut st = c.prepare_cached(
        "SELECT vary, path, status, headers, body, stored_at_ms, initial_age_ms, lifetime_ms, swr_ms,
                sie_ms, must_revalidate, no_cache, etag, last_modified, last_access_ms, purge_at_ms, size
         FROM cache_entries WHERE key = ?1 AND scope IS ?2",
    )?;
    let rows = st.query_map(params![key, scope], |r| {
        Ok(Entry {
            key: key.to_string(),
            vary: r.get(0)?,
            path: r.get(1)?,
            scope: scope.clone(),
            status: r.get(2)?,
            headers: decode_header_lines(&r.get::<_, String>(3)?),
            body: r.get(4)?,
            stored_at_ms: r.get(5)?,
            initial_age_ms: r.get(6)?,
            lifetime_ms: r.get(7)?,
            swr_ms: r.get(8)?,
            sie_ms: r.get(9)?,
            must_revalidate: r.get(10)?,
            no_cache: r.get(11)?,
            etag: r.get(12)?,
            last_modified: r.get(13)?,
            last_access_ms: r.get(14)?,
            purge_at_ms: r.get(15)?,
            size: r.get(16)?,
        })
    })?;
    rows.collect()
}

/// Writes `batch` in one transaction (all or nothing), each row replacing its key and variant;
/// a key's least recently used variants beyond [`MAX_VARIANTS`] go.
pub(crate) fn upsert(c: &Connection, batch: &[Arc<Entry>]) -> rusqlite::Result<()> {
    let tx = c.unchecked_transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO cache_entries (key, vary, path, scope, status, headers, body,
                stored_at_ms, initial_age_ms, lifetime_ms, swr_ms, sie_ms, must_revalidate, no_cache,
                etag, last_modified, size, last_access_ms, purge_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        )?;
        let mut bound = tx.prepare_cached(
            "DELETE FROM cache_entries WHERE key = ?1 AND vary NOT IN (
                SELECT vary FROM cache_entries WHERE key = ?1
                ORDER BY last_access_ms DESC, stored_at_ms DESC LIMIT ?2)",
        )?;
        for e in batch {
            insert.execute(params![
                e.key,
                e.vary,
                e.path,
                e.scope,
                e.status,
                encode_header_lines(&e.headers),
                e.body,
                e.stored_at_ms,
                e.initial_age_ms,
                e.lifetime_ms,
                e.swr_ms,
                e.sie_ms,
                e.must_revalidate,
                e.no_cache,
                e.etag,
                e.last_modified,
                e.size,
                e.last_access_ms,
                e.purge_at_ms,
            ])?;
            bound.execute(params![e.key, MAX_VARIANTS as i64])?;
        }
    }
    tx.commit()
}

/// Deletes one key's variant.
pub(crate) fn delete_variant(c: &Connection, key: &str, vary: &str) -> rusqlite::Result<usize> {
    c.prepare_cached("DELETE FROM cache_entries WHERE key = ?1 AND vary = ?2")?
        .execute(params![key, vary])
}

/// Deletes every entry stored under one of `paths`.
pub(crate) fn delete_paths(c: &Connection, paths: &[String]) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached("DELETE FROM cache_entries WHERE path = ?1")?;
    for p in paths {
        st.execute([p])?;
    }
    Ok(())
}
