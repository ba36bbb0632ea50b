//! The persistent HTTP response cache: SQLite table access, bounded size (LRU), statistics.
//! The HTTP rules are in [`policy`] (pure); which policy does what on a request is in [`flow`].
//!
//! Keys are computed from `GET <path>?<query>` (independent of the backend that answered: backends
//! serve the same API), the user scope current when the entry was stored, and the credential
//! headers of the **final outgoing headers** (defaults, the request's own, the header provider's):
//! two users, two tokens or two cookies never share an entry. A stored entry is also checked
//! against the request headers named by the response's `Vary`. Nothing secret is stored: the key
//! and every `Vary`d value are keyed hashes ([`crate::store::secrets`]), `Set-Cookie` and other
//! credential headers of a response are dropped before it is stored (so never replayed).
//! The cache is best-effort: a storage error (full disk, busy) makes the operation a no-op with a
//! logged warning; a damaged database is moved aside and recreated, with a status event.

mod flow;
mod policy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use rusqlite::{params, OptionalExtension};

use crate::defaults::{config_record, non_negative, non_negative_ms, positive_ms};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::http::{flatten_headers, request_target};
use crate::store::secrets::{is_storable_header, storable_response_headers, CREDENTIAL_HEADERS};
use crate::store::{decode_header_lines, encode_header_lines, is_corruption, now_ms, Store};
use crate::types::{ApiRequest, ApiResponse};
use policy::Freshness;

pub(crate) use flow::CacheLayer;

/// The cache section of `ServiceStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct CacheStatus {
    /// Stored entries.
    pub entries: i64,
    /// Bytes they take (bodies, headers, keys).
    pub bytes: i64,
    /// The configured bound.
    pub max_bytes: i64,
    /// Answers served from the cache without the network (fresh, SWR, cache-first/-only).
    pub hits: i64,
    /// Lookups that found nothing usable.
    pub misses: i64,
    /// `304 Not Modified` answers that refreshed an entry.
    pub revalidations: i64,
    /// Entries evicted to stay under `max_bytes`.
    pub evictions: i64,
    /// Stale entries served because the network failed.
    pub stale_served: i64,
}

config_record! {
    /// The persistent HTTP response cache.
    pub struct CacheConfig {
        /// Size bound (bytes); least recently used entries are evicted beyond it. 0 = no cache.
        pub max_bytes: i32 = 20971520,
        /// Freshness given to responses without `Cache-Control: max-age` or `Expires` (0: stored
        /// for offline use, revalidated on use).
        pub default_ttl_ms: i32 = 0,
        /// How long past its freshness an entry may still be served when the network fails
        /// (unless the response limited it with `stale-if-error` or forbade it with
        /// `must-revalidate`).
        pub max_stale_ms: i32 = 604800000,
        /// How often expired entries are purged.
        pub cleanup_interval_ms: i32 = 300000,
    }
}

/// Cache settings (validated from [`CacheConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct CacheSettings {
    pub max_bytes: u64,
    pub default_ttl: Duration,
    pub max_stale: Duration,
    pub cleanup_interval: Duration,
}

impl CacheSettings {
    pub(crate) fn from_config(c: &CacheConfig) -> Result<Self, ApiError> {
        Ok(CacheSettings {
            max_bytes: non_negative("cache.max_bytes", c.max_bytes)? as u64,
            default_ttl: non_negative_ms("cache.default_ttl_ms", c.default_ttl_ms)?,
            max_stale: non_negative_ms("cache.max_stale_ms", c.max_stale_ms)?,
            cleanup_interval: positive_ms("cache.cleanup_interval_ms", c.cleanup_interval_ms)?,
        })
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    revalidations: AtomicU64,
    evictions: AtomicU64,
    stale_served: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One stored response.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    key: String,
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    stored_at_ms: i64,
    initial_age_ms: i64,
    lifetime_ms: i64,
    swr_ms: Option<i64>,
    sie_ms: Option<i64>,
    must_revalidate: bool,
    no_cache: bool,
    etag: Option<String>,
    last_modified: Option<String>,
    last_access_ms: i64,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn dur(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl Entry {
    fn age(&self, now_ms: i64) -> Duration {
        dur(self
            .initial_age_ms
            .saturating_add(now_ms.saturating_sub(self.stored_at_ms).max(0)))
    }

    pub(crate) fn freshness(&self, now_ms: i64) -> Freshness {
        Freshness {
            age: self.age(now_ms),
            lifetime: dur(self.lifetime_ms),
            swr: self.swr_ms.map(dur),
            sie: self.sie_ms.map(dur),
            must_revalidate: self.must_revalidate,
            no_cache: self.no_cache,
        }
    }

    /// The entry as a response to the app.
    pub(crate) fn to_response(&self, now_ms: i64, elapsed_ms: i32) -> ApiResponse {
        let f = self.freshness(now_ms);
        ApiResponse {
            status: self.status as i32,
            headers: self.headers.clone(),
            body: self.body.clone(),
            backend: "cache".into(),
            attempts: 0,
            elapsed_ms,
            from_cache: true,
            stale: !f.is_fresh(),
            age_ms: Some(crate::defaults::ms_i32(f.age)),
            queued: None,
        }
    }

    pub(crate) fn validators(&self) -> (Option<&str>, Option<&str>) {
        (self.etag.as_deref(), self.last_modified.as_deref())
    }
}

/// Where a GET's entry lives, computed from its final outgoing headers and user scope.
#[derive(Debug, Clone)]
pub(crate) struct CacheKey {
    /// The stored key: a keyed hash of the target, the scope and the credential headers.
    id: String,
    /// The scope tag the entry is stored under (`None`: no scope).
    scope: Option<String>,
    /// The final outgoing headers, names lower-cased.
    headers: HashMap<String, String>,
    /// For messages: `GET <path>` (no query, no credential).
    label: String,
}

impl CacheKey {
    /// `GET <path>`, for messages (`NotCached`, logs).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// A final outgoing header (lower-case name).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The header names a response varies on, lower-cased, sorted; `None` for `Vary: *`.
fn vary_names(vary: Option<&String>) -> Option<Vec<String>> {
    let mut names: Vec<String> = vary
        .map(|v| {
            v.split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if names.iter().any(|n| n == "*") {
        return None;
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// The persistent cache of one client.
pub(crate) struct HttpCache {
    store: Arc<Store>,
    settings: CacheSettings,
    /// Lower-case header names that are credentials besides [`CREDENTIAL_HEADERS`] (the queue's
    /// `sensitive_headers`): part of the key, never stored.
    sensitive: Vec<String>,
    counters: Counters,
    events: Arc<EventBus>,
    /// Upper estimate of the stored bytes (grows with every store; re-measured exactly whenever it
    /// passes the bound), so a store does not scan the table.
    estimated_bytes: AtomicU64,
}

/// Don't refresh `last_access_ms` on every hit (a write per read); this is LRU granularity.
const ACCESS_GRANULARITY_MS: i64 = 100;

impl HttpCache {
    pub(crate) fn new(
        store: Arc<Store>,
        settings: CacheSettings,
        sensitive: Vec<String>,
        events: Arc<EventBus>,
    ) -> Self {
        let cache = HttpCache {
            store,
            settings,
            sensitive,
            counters: Counters::default(),
            events,
            estimated_bytes: AtomicU64::new(0),
        };
        cache.evict_to_bound();
        cache
    }

    pub(crate) fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// `cache_max_bytes == 0`: the cache is off.
    pub(crate) fn enabled(&self) -> bool {
        self.settings.max_bytes > 0
    }

    /// The key of a GET sent with `headers` (final, outgoing) in user `scope`, or `None` if the
    /// path is not a valid relative path (the network call will report it).
    pub(crate) fn key(
        &self,
        req: &ApiRequest,
        headers: &HeaderMap,
        scope: Option<&str>,
    ) -> Option<CacheKey> {
        let target = request_target(&req.path, &req.query).ok()?;
        let headers = flatten_headers(headers);
        let scope_part = scope.map_or_else(|| "-".to_string(), |s| format!("+{s}"));
        let mut parts = vec!["GET".to_string(), target.clone(), scope_part];
        let mut names: Vec<&str> = CREDENTIAL_HEADERS
            .iter()
            .copied()
            .chain(self.sensitive.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            if let Some(v) = headers.get(name) {
                parts.push(format!("{name}={v}"));
            }
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let path = target.split('?').next().unwrap_or_default();
        Some(CacheKey {
            id: self.store.tag("cache-key", &refs),
            scope: self.store.scope_tag(scope),
            headers,
            label: format!("GET {path}"),
        })
    }

    /// `name=<keyed hash of the value>` lines (`name=` when absent) for the request headers named
    /// by a response's `Vary`: matched without storing any value.
    fn vary_fingerprint(&self, names: &[String], headers: &HashMap<String, String>) -> String {
        names
            .iter()
            .map(|n| match headers.get(n) {
                Some(v) => format!("{n}={}", self.store.tag("vary", &[n, v])),
                None => format!("{n}="),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Recomputes a stored fingerprint from the current request's headers.
    fn refingerprint(&self, stored: &str, headers: &HashMap<String, String>) -> String {
        let names: Vec<String> = stored
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, _)| n.to_string())
            .collect();
        self.vary_fingerprint(&names, headers)
    }

    /// Runs a storage operation; failures are logged (and a damaged file recovered), never raised.
    fn with_db<T>(
        &self,
        what: &str,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let result = crate::runtime::blocking_io(|| f(&self.store.conn()));
        match result {
            Ok(v) => Some(v),
            Err(e) if is_corruption(&e) => {
                match self.store.recover(&e.to_string()) {
                    Ok(r) => self.events.storage_recovered(r.record()),
                    Err(e2) => log::error!("robust-api: cache {what}: {e}; recovery failed: {e2}"),
                }
                None
            }
            Err(e) => {
                log::warn!("robust-api: cache {what} skipped: {e}");
                None
            }
        }
    }

    /// The stored entry for `key` that matches the request's `Vary`d headers. Counts a miss.
    pub(crate) fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        let now = now_ms();
        let (id, scope) = (&key.id, &key.scope);
        let found = self
            .with_db("lookup", |c| {
                let mut st = c.prepare_cached(
                    "SELECT status, headers, body, vary, stored_at_ms, initial_age_ms, lifetime_ms, swr_ms,
                            sie_ms, must_revalidate, no_cache, etag, last_modified, last_access_ms
                     FROM cache_entries WHERE key = ?1 AND scope IS ?2",
                )?;
                st.query_row(params![id, scope], |r| {
                    Ok((
                        Entry {
                            key: id.clone(),
                            status: r.get(0)?,
                            headers: decode_header_lines(&r.get::<_, String>(1)?),
                            body: r.get(2)?,
                            stored_at_ms: r.get(4)?,
                            initial_age_ms: r.get(5)?,
                            lifetime_ms: r.get(6)?,
                            swr_ms: r.get(7)?,
                            sie_ms: r.get(8)?,
                            must_revalidate: r.get(9)?,
                            no_cache: r.get(10)?,
                            etag: r.get(11)?,
                            last_modified: r.get(12)?,
                            last_access_ms: r.get(13)?,
                        },
                        r.get::<_, String>(3)?,
                    ))
                })
                .optional()
            })
            .flatten();
        let entry = found.and_then(|(entry, vary)| {
            (self.refingerprint(&vary, &key.headers) == vary).then_some(entry)
        });
        match &entry {
            Some(e) if now - e.last_access_ms > ACCESS_GRANULARITY_MS => {
                self.with_db("touch", |c| {
                    c.prepare_cached("UPDATE cache_entries SET last_access_ms = ?2 WHERE key = ?1")?
                        .execute(params![id, now])
                });
            }
            Some(_) => {}
            None => bump(&self.counters.misses),
        }
        entry
    }

    pub(crate) fn count_hit(&self) {
        bump(&self.counters.hits);
    }

    pub(crate) fn count_stale_served(&self) {
        bump(&self.counters.stale_served);
    }

    /// Stores a network response to `req` if HTTP rules allow; returns whether it did.
    pub(crate) fn store(&self, key: &CacheKey, req: &ApiRequest, resp: &ApiResponse) -> bool {
        if !policy::status_is_storable(resp.status) {
            return false;
        }
        let req_cc = policy::parse_cache_control(key.header("cache-control"));
        let cc = policy::parse_cache_control(resp.headers.get("cache-control").map(String::as_str));
        if cc.no_store || req_cc.no_store {
            return false;
        }
        let Some(vary_names) = vary_names(resp.headers.get("vary")) else {
            return false;
        };
        let vary = self.vary_fingerprint(&vary_names, &key.headers);
        let headers =
            encode_header_lines(&storable_response_headers(&resp.headers, &self.sensitive));
        let size = (resp.body.len() + headers.len() + key.id.len() + vary.len()) as u64;
        if size > self.settings.max_bytes / 4 {
            return false; // one entry may not take over the cache
        }
        let now = now_ms();
        let lifetime = policy::freshness_lifetime(&cc, &resp.headers, self.settings.default_ttl);
        let initial_age = policy::initial_age(&resp.headers);
        let purge_at = self.purge_at(now, ms(lifetime), &cc);
        let path = req.path.split('?').next().unwrap_or_default().to_string();
        let stored = self.with_db("store", |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO cache_entries (key, path, status, headers, body, vary, stored_at_ms,
                    initial_age_ms, lifetime_ms, swr_ms, sie_ms, must_revalidate, no_cache, etag, last_modified,
                    size, last_access_ms, purge_at_ms, scope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?7, ?17, ?18)",
            )?
            .execute(params![
                key.id,
                path,
                resp.status,
                headers,
                resp.body,
                vary,
                now,
                ms(initial_age),
                ms(lifetime),
                cc.stale_while_revalidate.map(ms),
                cc.stale_if_error.map(ms),
                cc.must_revalidate,
                cc.no_cache,
                resp.headers.get("etag"),
                resp.headers.get("last-modified"),
                size as i64,
                purge_at,
                key.scope,
            ])
        });
        if stored.is_some() {
            let estimate = self
                .estimated_bytes
                .fetch_add(size, Ordering::Relaxed)
                .saturating_add(size);
            if estimate > self.settings.max_bytes {
                self.evict_to_bound();
            }
        }
        stored.is_some()
    }

    /// A `304 Not Modified` arrived for `entry`: update its headers and freshness, return it.
    pub(crate) fn refresh(&self, mut entry: Entry, not_modified: &ApiResponse) -> Entry {
        bump(&self.counters.revalidations);
        for (k, v) in &not_modified.headers {
            if !matches!(
                k.as_str(),
                "content-length" | "content-type" | "transfer-encoding" | "content-encoding"
            ) && is_storable_header(k, &self.sensitive)
            {
                entry.headers.insert(k.clone(), v.clone());
            }
        }
        let cc =
            policy::parse_cache_control(entry.headers.get("cache-control").map(String::as_str));
        let now = now_ms();
        entry.stored_at_ms = now;
        entry.initial_age_ms = ms(policy::initial_age(&not_modified.headers));
        entry.lifetime_ms = ms(policy::freshness_lifetime(
            &cc,
            &entry.headers,
            self.settings.default_ttl,
        ));
        entry.swr_ms = cc.stale_while_revalidate.map(ms);
        entry.sie_ms = cc.stale_if_error.map(ms);
        entry.must_revalidate = cc.must_revalidate;
        entry.no_cache = cc.no_cache;
        if let Some(etag) = not_modified.headers.get("etag") {
            entry.etag = Some(etag.clone());
        }
        let purge_at = self.purge_at(now, entry.lifetime_ms, &cc);
        let e = &entry;
        self.with_db("refresh", |c| {
            c.prepare_cached(
                "UPDATE cache_entries SET headers = ?2, stored_at_ms = ?3, initial_age_ms = ?4, lifetime_ms = ?5,
                    swr_ms = ?6, sie_ms = ?7, must_revalidate = ?8, no_cache = ?9, etag = ?10,
                    last_access_ms = ?3, purge_at_ms = ?11 WHERE key = ?1",
            )?
            .execute(params![
                e.key,
                encode_header_lines(&e.headers),
                now,
                e.initial_age_ms,
                e.lifetime_ms,
                e.swr_ms,
                e.sie_ms,
                e.must_revalidate,
                e.no_cache,
                e.etag,
                purge_at
            ])
        });
        entry
    }

    /// When an entry stored `now` is past any use: fresh lifetime plus the longer of `max_stale`
    /// and the response's `stale-if-error`.
    fn purge_at(&self, now: i64, lifetime_ms: i64, cc: &policy::CacheControl) -> i64 {
        let stale_window = cc.stale_if_error.map_or(self.settings.max_stale, |sie| {
            sie.max(self.settings.max_stale)
        });
        now.saturating_add(lifetime_ms)
            .saturating_add(ms(stale_window))
    }

    /// A successful unsafe request to `path`: its cached GETs are no longer trustworthy.
    pub(crate) fn invalidate_path(&self, path: &str) {
        let path = path.split('?').next().unwrap_or_default();
        self.with_db("invalidate", |c| {
            c.prepare_cached("DELETE FROM cache_entries WHERE path = ?1")?
                .execute([path])
        });
    }

    /// Releases the database file (client shutdown).
    pub(crate) fn close(&self) {
        self.store.close();
    }

    /// Deletes everything, leaving no recoverable bytes (`secure_delete` + WAL truncation).
    pub(crate) fn clear(&self) {
        self.with_db("clear", |c| {
            c.execute("DELETE FROM cache_entries", [])?;
            Store::wipe(c);
            Ok(())
        });
        self.estimated_bytes.store(0, Ordering::Relaxed);
    }

    /// Deletes the entries of user `scope` (its tag), leaving no recoverable bytes.
    pub(crate) fn clear_scope(&self, scope: &str) -> Result<(), ApiError> {
        let tag = self.store.scope_tag(Some(scope));
        self.with_db("clear scope", |c| {
            c.prepare_cached("DELETE FROM cache_entries WHERE scope IS ?1")?
                .execute([&tag])?;
            Store::wipe(c);
            Ok(())
        })
        .ok_or_else(|| ApiError::Storage {
            reason: "cache: clearing a user scope failed".into(),
        })?;
        self.evict_to_bound(); // re-measures the stored bytes
        Ok(())
    }

    /// Drops entries past any use (fresh lifetime + stale window), then enforces the size bound.
    pub(crate) fn cleanup(&self) {
        let now = now_ms();
        self.with_db("cleanup", |c| {
            c.prepare_cached("DELETE FROM cache_entries WHERE purge_at_ms < ?1")?
                .execute([now])
        });
        self.evict_to_bound();
    }

    /// Least-recently-used entries go until the total is within `max_bytes`.
    fn evict_to_bound(&self) {
        let max = self.settings.max_bytes as i64;
        let result = self.with_db("evict", |c| {
            let mut total: i64 = c.query_row("SELECT COALESCE(SUM(size), 0) FROM cache_entries", [], |r| r.get(0))?;
            let mut evicted = 0u64;
            while total > max {
                let victim: Option<(String, i64)> = c
                    .prepare_cached("SELECT key, size FROM cache_entries ORDER BY last_access_ms, stored_at_ms LIMIT 1")?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((key, size)) = victim else { break };
                c.prepare_cached("DELETE FROM cache_entries WHERE key = ?1")?.execute([&key])?;
                total -= size;
                evicted += 1;
            }
            Ok((evicted, total))
        });
        if let Some((n, total)) = result {
            self.counters.evictions.fetch_add(n, Ordering::Relaxed);
            self.estimated_bytes
                .store(total.max(0) as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn status(&self) -> CacheStatus {
        let (entries, bytes) = self
            .with_db("status", |c| {
                c.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
            })
            .unwrap_or_default();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed).min(i64::MAX as u64) as i64;
        CacheStatus {
            entries,
            bytes,
            max_bytes: self.settings.max_bytes as i64,
            hits: g(&self.counters.hits),
            misses: g(&self.counters.misses),
            revalidations: g(&self.counters.revalidations),
            evictions: g(&self.counters.evictions),
            stale_served: g(&self.counters.stale_served),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut h = HashMap::new();
        h.insert("etag".to_string(), "\"a:b\"".to_string());
        h.insert("cache-control".to_string(), "max-age=5".to_string());
        assert_eq!(decode_header_lines(&encode_header_lines(&h)), h);
    }

    #[test]
    fn vary_names_are_normalised_and_star_is_uncacheable() {
        let v = "Accept-Language, accept,  Accept-Language".to_string();
        assert_eq!(
            vary_names(Some(&v)).unwrap(),
            vec!["accept".to_string(), "accept-language".to_string()]
        );
        assert_eq!(vary_names(None).unwrap(), Vec::<String>::new());
        assert_eq!(vary_names(Some(&"*".to_string())), None);
    }

    #[test]
    fn keys_and_vary_fingerprints_hold_no_credential_and_tell_users_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let events = Arc::new(EventBus::new(Arc::default()).unwrap());
        let settings = CacheSettings::from_config(&CacheConfig::default()).unwrap();
        let cache = HttpCache::new(Arc::new(store), settings, vec![], events);
        let req = ApiRequest::get("/me?x=1");
        let with = |name: &str, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            h
        };
        let alice = cache
            .key(&req, &with("authorization", "Bearer ALICE"), None)
            .unwrap();
        let bob = cache
            .key(&req, &with("authorization", "Bearer BOB"), None)
            .unwrap();
        let again = cache
            .key(&req, &with("Authorization", "Bearer ALICE"), None)
            .unwrap();
        assert_ne!(alice.id, bob.id);
        assert_eq!(alice.id, again.id);
        assert!(!alice.id.contains("ALICE") && alice.label() == "GET /me");
        let scoped = cache
            .key(&req, &with("authorization", "Bearer ALICE"), Some("a"))
            .unwrap();
        assert_ne!(scoped.id, alice.id);
        let cookie = cache.key(&req, &with("cookie", "s=1"), None).unwrap();
        let cookie2 = cache.key(&req, &with("cookie", "s=2"), None).unwrap();
        assert_ne!(cookie.id, cookie2.id);

        let names = vec!["authorization".to_string(), "accept".to_string()];
        let fp = cache.vary_fingerprint(&names, &alice.headers);
        assert!(!fp.contains("ALICE"), "{fp}");
        assert!(fp.starts_with("authorization=") && fp.contains("\naccept="));
        assert_eq!(cache.refingerprint(&fp, &again.headers), fp);
        assert_ne!(cache.refingerprint(&fp, &bob.headers), fp);
    }
}
