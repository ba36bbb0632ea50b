//! The persistent HTTP response cache: bounded size (LRU), statistics, and its three tiers —
//! pending writes ([`writer`]: stores are written behind the call, in batches), the memory tier
//! ([`hot`]) and the SQLite table ([`rows`]: one row per key and `Vary` variant). The HTTP rules
//! are in [`policy`] (pure); which policy does what on a request is in [`flow`]; concurrent
//! identical GETs share one exchange through [`coalesce`].
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

mod coalesce;
mod flow;
mod hot;
mod policy;
mod rows;
mod writer;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use rusqlite::OptionalExtension;

use crate::defaults::{config_record, non_negative, non_negative_ms, positive_ms};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::http::{flatten_headers, request_target};
use crate::store::secrets::{is_storable_header, storable_response_headers, CREDENTIAL_HEADERS};
use crate::store::{encoded_header_lines_len, is_corruption, now_ms, Store};
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
    /// GETs answered by another identical GET's exchange (request coalescing), not their own.
    pub coalesced: i64,
    /// Responses not stored because the write-behind queue was full (the call was not slowed).
    pub write_behind_dropped: i64,
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
    coalesced: AtomicU64,
    write_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One stored response (one variant of one key).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    key: String,
    /// The `Vary` fingerprint (`name=<keyed hash>` lines; empty without `Vary`).
    vary: String,
    /// The normalised path (no query): what invalidation matches.
    path: String,
    /// The scope tag it was stored under.
    scope: Option<String>,
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
    purge_at_ms: i64,
    /// Bytes it takes (body, headers, key, variant).
    size: i64,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn dur(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

impl Entry {
    /// An empty entry (tests build on it).
    #[cfg(test)]
    pub(crate) fn blank() -> Self {
        Entry {
            key: String::new(),
            vary: String::new(),
            path: "/".into(),
            scope: None,
            status: 200,
            headers: HashMap::new(),
            body: Vec::new(),
            stored_at_ms: 0,
            initial_age_ms: 0,
            lifetime_ms: 0,
            swr_ms: None,
            sie_ms: None,
            must_revalidate: false,
            no_cache: false,
            etag: None,
            last_modified: None,
            last_access_ms: 0,
            purge_at_ms: 0,
            size: 0,
        }
    }

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

    /// The stored status (a `404` with `max-age` is stored too).
    pub(crate) fn status(&self) -> i32 {
        i32::from(self.status)
    }

    /// The entry as a response to the app, with its current `Age` (RFC 9111 §5.1: whole seconds).
    pub(crate) fn to_response(&self, now_ms: i64, elapsed_ms: i32) -> ApiResponse {
        let f = self.freshness(now_ms);
        let mut headers = self.headers.clone();
        headers.insert("age".into(), policy::age_header(f.age));
        ApiResponse {
            status: self.status as i32,
            headers,
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

    /// The freshness fields recomputed from `headers` (a `304`'s or `HEAD`'s merged in) at `now`.
    fn refreshed(&self, new_age: Duration, settings: &CacheSettings, now: i64) -> Entry {
        let mut e = self.clone();
        let cc = policy::parse_cache_control(e.headers.get("cache-control").map(String::as_str));
        e.stored_at_ms = now;
        e.last_access_ms = now;
        e.initial_age_ms = ms(new_age);
        e.lifetime_ms = ms(policy::freshness_lifetime(
            e.status(),
            &cc,
            &e.headers,
            settings.default_ttl,
            std::time::SystemTime::now(),
        ));
        e.swr_ms = cc.stale_while_revalidate.map(ms);
        e.sie_ms = cc.stale_if_error.map(ms);
        e.must_revalidate = cc.must_revalidate;
        e.no_cache = cc.no_cache;
        e.etag = e.headers.get("etag").cloned();
        e.last_modified = e.headers.get("last-modified").cloned();
        e.purge_at_ms = purge_at(settings, now, e.lifetime_ms, &cc);
        e
    }
}

/// When an entry stored `now` is past any use: fresh lifetime plus the longer of `max_stale`
/// and the response's `stale-if-error`.
fn purge_at(
    settings: &CacheSettings,
    now: i64,
    lifetime_ms: i64,
    cc: &policy::CacheControl,
) -> i64 {
    let stale_window = cc
        .stale_if_error
        .map_or(settings.max_stale, |sie| sie.max(settings.max_stale));
    now.saturating_add(lifetime_ms)
        .saturating_add(ms(stale_window))
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
    /// The normalised path (no query).
    path: String,
}

impl CacheKey {
    /// `GET <path>`, for messages (`NotCached`, logs): no query, no credential.
    pub(crate) fn label(&self) -> String {
        format!("GET {}", self.path)
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

/// The persistent cache of one client: a memory tier ([`hot`]) and pending writes ([`writer`])
/// in front of the SQLite table ([`rows`]).
pub(crate) struct HttpCache {
    store: Arc<Store>,
    settings: CacheSettings,
    /// Lower-case header names that are credentials besides [`CREDENTIAL_HEADERS`] (the queue's
    /// `sensitive_headers`): part of the key, never stored.
    sensitive: Vec<String>,
    /// The credential headers whose values are part of a cache key: [`CREDENTIAL_HEADERS`] and
    /// `sensitive`, sorted, each once.
    key_headers: Vec<String>,
    counters: Counters,
    events: Arc<EventBus>,
    /// Upper estimate of the stored bytes (grows with every write; re-measured exactly whenever
    /// it passes the bound), so a write does not scan the table.
    estimated_bytes: AtomicU64,
    hot: hot::Hot,
    writes: writer::WriteBehind,
    /// Bumped by every deletion, so a read racing with it does not put a deleted row back into
    /// the memory tier.
    deletions: AtomicU64,
    flights: coalesce::Flights,
}

/// Don't refresh `last_access_ms` on every hit (a write per read); this is LRU granularity.
const ACCESS_GRANULARITY_MS: i64 = 100;

/// The memory tier's bound: 1 MiB, or the whole cache if it is smaller.
pub(crate) const HOT_MAX_BYTES: u64 = 1 << 20;

impl HttpCache {
    pub(crate) fn new(
        store: Arc<Store>,
        settings: CacheSettings,
        sensitive: Vec<String>,
        events: Arc<EventBus>,
    ) -> Self {
        let mut key_headers: Vec<String> = CREDENTIAL_HEADERS
            .iter()
            .map(|n| n.to_string())
            .chain(sensitive.iter().cloned())
            .collect();
        key_headers.sort_unstable();
        key_headers.dedup();
        let cache = HttpCache {
            key_headers,
            store,
            hot: hot::Hot::new(HOT_MAX_BYTES.min(settings.max_bytes)),
            settings,
            sensitive,
            counters: Counters::default(),
            events,
            estimated_bytes: AtomicU64::new(0),
            writes: writer::WriteBehind::new(),
            deletions: AtomicU64::new(0),
            flights: coalesce::Flights::default(),
        };
        if !cache.store.being_created() {
            cache.evict_to_bound(); // a file being created is empty: nothing to wait for
        }
        cache
    }

    pub(crate) fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// `cache_max_bytes == 0`: the cache is off.
    pub(crate) fn enabled(&self) -> bool {
        self.settings.max_bytes > 0
    }

    pub(crate) fn flights(&self) -> &coalesce::Flights {
        &self.flights
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
        let scope_part = scope.map_or(Cow::Borrowed("-"), |s| Cow::Owned(format!("+{s}")));
        // Credential headers (usually none) as `name=value` parts.
        let credentials: Vec<String> = self
            .key_headers
            .iter()
            .filter_map(|name| headers.get(name).map(|v| format!("{name}={v}")))
            .collect();
        let mut parts: Vec<&str> = Vec::with_capacity(3 + credentials.len());
        parts.extend(["GET", target.as_str(), &scope_part]);
        parts.extend(credentials.iter().map(String::as_str));
        let path = match target.split_once('?') {
            Some((path, _)) => path.to_string(),
            None => target.clone(),
        };
        Some(CacheKey {
            id: self.store.tag("cache-key", &parts),
            scope: self.store.scope_tag(scope),
            headers,
            path,
        })
    }

    /// The flight id of a GET (see [`coalesce`]): the key and every final outgoing header.
    pub(crate) fn flight_id(&self, key: &CacheKey, max_response_bytes: Option<i32>) -> String {
        let mut headers: Vec<String> = key
            .headers
            .iter()
            .map(|(n, v)| format!("{n}:{v}"))
            .collect();
        headers.sort_unstable();
        let limit = max_response_bytes.map_or_else(String::new, |n| n.to_string());
        let mut parts: Vec<&str> = vec![&key.id, &limit];
        parts.extend(headers.iter().map(String::as_str));
        self.store.tag("flight", &parts)
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

    /// The stored variant for `key` that matches the request's `Vary`d headers: pending writes
    /// first, then the memory tier, then the table (`memory_only`: not the table). Counts a miss.
    pub(crate) fn lookup(&self, key: &CacheKey, memory_only: bool) -> Option<Arc<Entry>> {
        let found = self.find(key, memory_only);
        match &found {
            Some(e) if now_ms() - e.last_access_ms > ACCESS_GRANULARITY_MS => self.touch(e),
            Some(_) => {}
            None => bump(&self.counters.misses),
        }
        found
    }

    /// [`HttpCache::lookup`] in memory only (pending writes, the memory tier): `None` is no miss,
    /// SQLite may still hold the entry.
    pub(crate) fn lookup_in_memory(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let found = self.find(key, true)?;
        if now_ms() - found.last_access_ms > ACCESS_GRANULARITY_MS {
            self.touch(&found);
        }
        Some(found)
    }

    fn touch(&self, e: &Entry) {
        let touched = Entry {
            last_access_ms: now_ms(),
            ..e.clone()
        };
        self.put(Arc::new(touched), false);
    }

    fn find(&self, key: &CacheKey, memory_only: bool) -> Option<Arc<Entry>> {
        let matches =
            |e: &Entry| e.scope == key.scope && self.refingerprint(&e.vary, &key.headers) == e.vary;
        if let Some(e) = self.writes.get(&key.id, matches) {
            return Some(e);
        }
        if let Some(e) = self.hot.get(&key.id, matches) {
            return Some(e);
        }
        if memory_only {
            return None;
        }
        let before = self.deletions.load(Ordering::SeqCst);
        let rows = self.with_db("lookup", |c| rows::variants(c, &key.id, &key.scope))?;
        let e = Arc::new(rows.into_iter().find(|e| matches(e))?);
        self.hot.insert(e.clone());
        if self.deletions.load(Ordering::SeqCst) != before {
            self.hot.remove(&e.key, &e.vary); // deleted meanwhile: not back into memory
        }
        Some(e)
    }

    pub(crate) fn count_hit(&self) {
        bump(&self.counters.hits);
    }

    pub(crate) fn count_stale_served(&self) {
        bump(&self.counters.stale_served);
    }

    pub(crate) fn count_coalesced(&self) {
        bump(&self.counters.coalesced);
    }

    /// Into the memory tier and the write-behind queue; a full queue drops it (`count_drop`:
    /// counted; a touch is not).
    fn put(&self, e: Arc<Entry>, count_drop: bool) -> bool {
        self.hot.insert(e.clone());
        if self.writes.push(e.clone()) {
            return true;
        }
        if count_drop {
            self.hot.remove(&e.key, &e.vary);
            bump(&self.counters.write_dropped);
            log::warn!("robust-api: cache write queue full; a response was not stored");
        }
        false
    }

    /// Stores a network response to `key` if HTTP rules allow; returns whether it did (queued
    /// for writing: see [`writer`]).
    pub(crate) fn store(&self, key: &CacheKey, resp: &ApiResponse) -> bool {
        let cc = policy::parse_cache_control(resp.headers.get("cache-control").map(String::as_str));
        let req =
            policy::RequestDirectives::parse(key.header("cache-control"), key.header("pragma"));
        let explicit = policy::has_explicit_freshness(&cc, &resp.headers);
        if !policy::storable(resp.status, explicit) || cc.no_store || req.no_store {
            return false;
        }
        let Some(vary_names) = vary_names(resp.headers.get("vary")) else {
            return false;
        };
        let vary = self.vary_fingerprint(&vary_names, &key.headers);
        let mut headers = storable_response_headers(&resp.headers, &self.sensitive);
        policy::strip_hop_by_hop(&mut headers);
        headers.remove("age"); // recomputed on every use
        let size =
            (resp.body.len() + encoded_header_lines_len(&headers) + key.id.len() + vary.len())
                as u64;
        if size > self.settings.max_bytes / 4 {
            return false; // one entry may not take over the cache
        }
        let now = now_ms();
        let lifetime = policy::freshness_lifetime(
            resp.status,
            &cc,
            &resp.headers,
            self.settings.default_ttl,
            std::time::SystemTime::now(),
        );
        let entry = Entry {
            key: key.id.clone(),
            vary,
            path: key.path.clone(),
            scope: key.scope.clone(),
            status: u16::try_from(resp.status).unwrap_or(200),
            etag: headers.get("etag").cloned(),
            last_modified: headers.get("last-modified").cloned(),
            headers,
            body: resp.body.clone(),
            stored_at_ms: now,
            initial_age_ms: ms(policy::initial_age(&resp.headers)),
            lifetime_ms: ms(lifetime),
            swr_ms: cc.stale_while_revalidate.map(ms),
            sie_ms: cc.stale_if_error.map(ms),
            must_revalidate: cc.must_revalidate,
            no_cache: cc.no_cache,
            last_access_ms: now,
            purge_at_ms: purge_at(&self.settings, now, ms(lifetime), &cc),
            size: size as i64,
        };
        self.put(Arc::new(entry), true)
    }

    /// Header fields of a `304` or `HEAD` merged into a stored entry's (§4.3.4): all but those
    /// describing the body, credentials and hop-by-hop fields.
    fn merged_headers(&self, stored: &Entry, update: &ApiResponse) -> HashMap<String, String> {
        let mut fresh = update.headers.clone();
        policy::strip_hop_by_hop(&mut fresh);
        let mut headers = stored.headers.clone();
        for (k, v) in fresh {
            if !policy::describes_body(&k) && k != "age" && is_storable_header(&k, &self.sensitive)
            {
                headers.insert(k, v);
            }
        }
        headers
    }

    /// A `304 Not Modified` arrived for `entry`: update its headers and freshness, return it.
    pub(crate) fn refresh(&self, entry: &Entry, not_modified: &ApiResponse) -> Arc<Entry> {
        bump(&self.counters.revalidations);
        let with = Entry {
            headers: self.merged_headers(entry, not_modified),
            ..entry.clone()
        };
        let e = Arc::new(with.refreshed(
            policy::initial_age(&not_modified.headers),
            &self.settings,
            now_ms(),
        ));
        self.put(e.clone(), true);
        e
    }

    /// A successful `HEAD` to `key`'s URL (§4.3.5): a stored variant with the same validators
    /// takes over its header fields and freshness; one whose validators differ is dropped.
    pub(crate) fn head(&self, key: &CacheKey, resp: &ApiResponse) {
        if !(200..300).contains(&resp.status) {
            return;
        }
        let Some(stored) = self.find(key, false) else {
            return;
        };
        match policy::head_update(&stored.headers, &resp.headers) {
            policy::HeadUpdate::Update => {
                let with = Entry {
                    headers: self.merged_headers(&stored, resp),
                    ..(*stored).clone()
                };
                let age = policy::initial_age(&resp.headers);
                self.put(
                    Arc::new(with.refreshed(age, &self.settings, now_ms())),
                    true,
                );
            }
            policy::HeadUpdate::Invalidate => {
                let (k, v) = (stored.key.clone(), stored.vary.clone());
                self.delete(
                    |e| e.key == k && e.vary == v,
                    |c| rows::delete_variant(c, &k, &v).map(|_| ()),
                );
            }
        }
    }

    /// Deletes what `doomed` selects from pending writes and the memory tier and what `sql`
    /// deletes from the table, so that nothing deleted is written back (see [`writer`]).
    fn delete(
        &self,
        doomed: impl Fn(&Entry) -> bool,
        sql: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
    ) -> Option<()> {
        let _exclusive = self.writes.exclusive();
        self.deletions.fetch_add(1, Ordering::SeqCst);
        self.writes.discard(&doomed);
        self.hot.retain(&doomed);
        self.with_db("delete", sql)
    }

    /// A successful unsafe request: the cached GETs of these (normalised) paths are no longer
    /// trustworthy.
    pub(crate) fn invalidate_paths(&self, paths: &[String]) {
        if paths.is_empty() {
            return;
        }
        self.delete(
            |e| paths.contains(&e.path),
            |c| rows::delete_paths(c, paths),
        );
    }

    /// Writes one batch from the write-behind queue (the writer task).
    fn write_batch(&self, batch: Vec<Arc<Entry>>) {
        let exclusive = self.writes.exclusive();
        let batch = self.writes.still_pending(batch);
        if batch.is_empty() {
            return;
        }
        let written = self.with_db("store", |c| rows::upsert(c, &batch));
        self.writes.written(&batch);
        drop(exclusive);
        if written.is_some() {
            let size: u64 = batch.iter().map(|e| e.size.max(0) as u64).sum();
            let estimate = self
                .estimated_bytes
                .fetch_add(size, Ordering::Relaxed)
                .saturating_add(size);
            if estimate > self.settings.max_bytes {
                self.evict_to_bound();
            }
        }
    }

    /// The writer task: writes queued stores until the client shuts down, each batch on a
    /// blocking-pool thread (not an async worker: probes and calls keep their timing).
    pub(crate) async fn run_writer(self: Arc<Self>) {
        while let Some(batch) = self.writes.next_batch().await {
            let cache = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || cache.write_batch(batch)).await {
                log::error!("robust-api: a cache write failed: {e}");
            }
        }
    }

    /// Writes every pending store now (shutdown, status).
    pub(crate) fn flush(&self) {
        let exclusive = self.writes.exclusive();
        let all = self.writes.take_all();
        if all.is_empty() {
            return;
        }
        let written = self.with_db("flush", |c| rows::upsert(c, &all));
        drop(exclusive);
        if written.is_some() {
            let size: u64 = all.iter().map(|e| e.size.max(0) as u64).sum();
            let estimate = self
                .estimated_bytes
                .fetch_add(size, Ordering::Relaxed)
                .saturating_add(size);
            if estimate > self.settings.max_bytes {
                self.evict_to_bound();
            }
        }
    }

    /// Writes what is pending and releases the database file (client shutdown).
    pub(crate) fn close(&self) {
        self.flush();
        self.store.close();
    }

    /// Forgets the key tags remembered for hot lookups: their inputs may hold a previous user's
    /// credentials (a change of user scope).
    pub(crate) fn forget_tags(&self) {
        self.store.forget_tags();
    }

    /// How many key tags are remembered (tests).
    #[cfg(test)]
    pub(crate) fn remembered_tags(&self) -> usize {
        self.store.remembered_tags()
    }

    /// Deletes everything, leaving no recoverable bytes (`secure_delete` + WAL truncation).
    pub(crate) fn clear(&self) {
        self.hot.clear();
        self.store.forget_tags();
        self.delete(
            |_| true,
            |c| {
                c.execute("DELETE FROM cache_entries", [])?;
                Store::wipe(c);
                Ok(())
            },
        );
        self.estimated_bytes.store(0, Ordering::Relaxed);
    }

    /// Deletes the entries of user `scope` (its tag), leaving no recoverable bytes.
    pub(crate) fn clear_scope(&self, scope: &str) -> Result<(), ApiError> {
        let tag = self.store.scope_tag(Some(scope));
        self.store.forget_tags();
        self.delete(
            |e| e.scope == tag,
            |c| {
                c.prepare_cached("DELETE FROM cache_entries WHERE scope IS ?1")?
                    .execute([&tag])?;
                Store::wipe(c);
                Ok(())
            },
        )
        .ok_or_else(|| ApiError::Storage {
            reason: "cache: clearing a user scope failed".into(),
        })?;
        self.evict_to_bound(); // re-measures the stored bytes
        Ok(())
    }

    /// Drops entries past any use (fresh lifetime + stale window), then enforces the size bound.
    pub(crate) fn cleanup(&self) {
        let now = now_ms();
        self.hot.retain(|e| e.purge_at_ms < now);
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
            let mut evicted = Vec::new();
            while total > max {
                let victim: Option<(String, String, i64)> = c
                    .prepare_cached("SELECT key, vary, size FROM cache_entries ORDER BY last_access_ms, stored_at_ms LIMIT 1")?
                    .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                let Some((key, vary, size)) = victim else { break };
                rows::delete_variant(c, &key, &vary)?;
                total -= size;
                evicted.push((key, vary));
            }
            Ok((evicted, total))
        });
        if let Some((evicted, total)) = result {
            for (k, v) in &evicted {
                self.hot.remove(k, v);
            }
            self.counters
                .evictions
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
            self.estimated_bytes
                .store(total.max(0) as u64, Ordering::Relaxed);
        }
    }

    /// The cache section of the status (pending writes are written first, so the counts are
    /// what is stored).
    pub(crate) fn status(&self) -> CacheStatus {
        self.flush();
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
            coalesced: g(&self.counters.coalesced),
            write_behind_dropped: g(&self.counters.write_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{decode_header_lines, encode_header_lines};

    #[test]
    fn headers_round_trip() {
        let mut h = HashMap::new();
        h.insert("etag".to_string(), "\"a:b\"".to_string());
        h.insert("cache-control".to_string(), "max-age=5".to_string());
        assert_eq!(decode_header_lines(&encode_header_lines(&h)), h);
        assert_eq!(
            crate::store::encoded_header_lines_len(&h),
            encode_header_lines(&h).len()
        );
        assert_eq!(crate::store::encoded_header_lines_len(&HashMap::new()), 0);
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
