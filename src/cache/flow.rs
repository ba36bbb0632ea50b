//! The cache layer of the request stack ([`CacheLayer`]): what a request does with the cache, per
//! [`CachePolicy`] — the only place that combines the cache and the network. Live calls and the
//! offline queue's replays both enter here, so a replayed write invalidates like a live one.
//!
//! - Every request's final outgoing headers are resolved here, once, for the user scope it runs
//!   in (the header provider is asked for that scope); the cache keys and `Vary`-matches on them
//!   and the network sends exactly them. Lookups only see entries of that scope.
//! - Only GET is cached. A successful POST/PUT/PATCH/DELETE invalidates cached GETs of its
//!   (normalised) path and of a same-origin `Location`/`Content-Location`; a `HEAD` updates the
//!   stored GET's header fields, or drops it when its validators changed.
//! - The request's own directives count: `max-age` (`max-age=0` forces a revalidation),
//!   `min-fresh`, `max-stale`, `no-cache`/`Pragma: no-cache`, `no-store`, `only-if-cached`.
//! - Concurrent identical GETs share one exchange ([`super::coalesce`]) unless the request says
//!   `coalesce: Some(false)`; a stale-while-revalidate refresh runs once per key.
//! - A revalidation sends the entry's validators (`If-None-Match`, `If-Modified-Since`); a `304`
//!   refreshes the entry and answers with its body.
//! - A final 4xx that may be stored (`404`/`410` with `max-age`, …) is stored, and a hit on it is
//!   the same `ApiError::Http` the network gave (`backend: "cache"`).
//! - When the network fails (offline, every backend down or fenced off, timeout, broken connection,
//!   5xx), a stale entry is served — flagged `stale` — if [`super::policy::Freshness::usable_on_error`]
//!   allows it.

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use super::coalesce::{self, Role};
use super::policy::{invalidated_paths, RequestDirectives, Use};
use super::{CacheKey, Entry, HttpCache};
use crate::defaults::ms_i32;
use crate::error::ApiError;
use crate::http::{join_url, request_target};
use crate::net::{Network, Rounds};
use crate::store::now_ms;
use crate::types::{ApiRequest, ApiResponse, CachePolicy, HttpMethod, QueryParam};

/// Failures a stale cached answer may stand in for.
fn network_failed(e: &ApiError) -> bool {
    match e {
        ApiError::Offline
        | ApiError::AllBackendsUnavailable { .. }
        | ApiError::Timeout { .. }
        | ApiError::Transport { .. } => true,
        ApiError::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

/// A response as the app sees it: a 4xx (stored or just kept for the cache) is `ApiError::Http`.
fn answer(r: ApiResponse) -> Result<ApiResponse, ApiError> {
    if r.status >= 400 {
        Err(ApiError::Http {
            status: r.status,
            body: r.body,
            backend: r.backend,
        })
    } else {
        Ok(r)
    }
}

/// The cache over the network: cheap to clone (two `Arc`s).
#[derive(Clone)]
pub(crate) struct CacheLayer {
    cache: Arc<HttpCache>,
    net: Arc<Network>,
}

impl CacheLayer {
    pub(crate) fn new(cache: Arc<HttpCache>, net: Arc<Network>) -> Self {
        CacheLayer { cache, net }
    }

    /// The network below this layer.
    pub(crate) fn network(&self) -> &Arc<Network> {
        &self.net
    }

    /// Serves one request through the cache and the network, as user `scope` (the current one
    /// for live calls, the stored one for queued replays).
    pub(crate) async fn send(
        &self,
        req: ApiRequest,
        scope: Option<String>,
        rounds: Rounds,
    ) -> Result<ApiResponse, ApiError> {
        serve(self.cache.clone(), self.net.clone(), req, scope, rounds).await
    }

    /// The thin bridge read: the stored answer to GET `req` for user `scope`, without the network
    /// — fresh (by the response's and the request's directives), or with `allow_stale` any entry
    /// that may stand in for a failed network. `Ok(None)` when there is none. Synchronous: the
    /// header provider, if any, is asked on the calling thread.
    pub(crate) fn cached(
        &self,
        req: &ApiRequest,
        scope: Option<String>,
        allow_stale: bool,
    ) -> Result<Option<ApiResponse>, ApiError> {
        if req.method != HttpMethod::Get {
            return Err(ApiError::invalid_request(
                "only a GET has a cached response",
            ));
        }
        if !self.cache.enabled() {
            return Ok(None);
        }
        let headers = self.net.outgoing_headers_here(req, scope.clone())?;
        let Some(key) = self.cache.key(req, &headers, scope.as_deref()) else {
            request_target(&req.path, &req.query)?;
            return Ok(None);
        };
        let directives =
            RequestDirectives::parse(key.header("cache-control"), key.header("pragma"));
        let Some(e) = self.cache.lookup(&key, false) else {
            return Ok(None);
        };
        let f = e.freshness(now_ms());
        let usable = f.decide(&directives) == Use::Fresh
            || (allow_stale && f.usable_on_error(self.cache.settings().max_stale));
        if !usable {
            return Ok(None);
        }
        self.cache.count_hit();
        answer(e.to_response(now_ms(), 0)).map(Some)
    }
}

/// The normalised paths a successful unsafe request to `path?query` invalidates.
fn invalidation_targets(path: &str, query: &[QueryParam], resp: &ApiResponse) -> Vec<String> {
    let base = Url::parse(&resp.backend).ok();
    match base.and_then(|b| join_url(&b, path, query).ok().map(|u| (b, u))) {
        Some((base, url)) => invalidated_paths(&url, base.path(), &resp.headers),
        None => request_target(path, query)
            .ok()
            .and_then(|t| t.split('?').next().map(str::to_string))
            .into_iter()
            .collect(),
    }
}

async fn serve(
    cache: Arc<HttpCache>,
    net: Arc<Network>,
    req: ApiRequest,
    scope: Option<String>,
    rounds: Rounds,
) -> Result<ApiResponse, ApiError> {
    let started = Instant::now();
    let headers = net.outgoing_headers(&req, scope.clone()).await?;
    if !cache.enabled() {
        return net.execute_with_headers(req, headers, scope, rounds).await;
    }
    match req.method {
        HttpMethod::Get => {}
        HttpMethod::Options => return net.execute_with_headers(req, headers, scope, rounds).await,
        HttpMethod::Head => {
            let key = cache.key(&req, &headers, scope.as_deref());
            let result = net.execute_with_headers(req, headers, scope, rounds).await;
            if let (Some(key), Ok(r)) = (&key, &result) {
                cache.head(key, r);
            }
            return result;
        }
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch | HttpMethod::Delete => {
            let (path, query) = (req.path.clone(), req.query.clone());
            let result = net.execute_with_headers(req, headers, scope, rounds).await;
            if let Ok(r) = &result {
                cache.invalidate_paths(&invalidation_targets(&path, &query, r));
            }
            return result;
        }
    }
    let policy = req.cache.unwrap_or(CachePolicy::NetworkFirst);
    let Some(key) = cache.key(&req, &headers, scope.as_deref()) else {
        return net.execute_with_headers(req, headers, scope, rounds).await;
    };
    let directives = RequestDirectives::parse(key.header("cache-control"), key.header("pragma"));
    let coalesce = req.coalesce.unwrap_or(true);
    let call = Call {
        req,
        headers,
        key,
        scope,
    };
    if policy == CachePolicy::NetworkOnly || directives.no_store {
        return fetch(&cache, &net, rounds, call, None).await;
    }
    let entry = cache.lookup(&call.key, false);
    let hit = |e: &Entry| {
        cache.count_hit();
        answer(e.to_response(now_ms(), ms_i32(started.elapsed())))
    };
    let not_cached = |call: &Call| ApiError::NotCached {
        key: call.key.label().to_string(),
    };
    match (policy, entry) {
        (CachePolicy::CacheOnly, Some(e)) | (CachePolicy::CacheFirst, Some(e)) => hit(&e),
        (CachePolicy::CacheOnly, None) => Err(not_cached(&call)),
        (_, None) if directives.only_if_cached => Err(not_cached(&call)),
        (CachePolicy::StaleWhileRevalidate, Some(e)) => {
            let response = hit(&e);
            if !e.freshness(now_ms()).is_fresh() {
                refresh_in_background(cache.clone(), net, rounds, call, e);
            }
            response
        }
        (_, Some(e)) => match e.freshness(now_ms()).decide(&directives) {
            Use::Fresh => hit(&e),
            Use::StaleWhileRevalidate => {
                let response = hit(&e);
                refresh_in_background(cache.clone(), net, rounds, call, e);
                response
            }
            Use::Revalidate if directives.only_if_cached => Err(not_cached(&call)),
            Use::Revalidate => shared_fetch(&cache, &net, rounds, call, Some(e), coalesce).await,
        },
        (_, None) => shared_fetch(&cache, &net, rounds, call, None, coalesce).await,
    }
}

/// A GET on its way: the request, its final outgoing headers, its cache key and its user scope.
struct Call {
    req: ApiRequest,
    headers: HeaderMap,
    key: CacheKey,
    scope: Option<String>,
}

/// [`fetch`], shared with the identical GETs in flight (`coalesce`): one exchange, every caller
/// gets its result. A leader that goes away unfinished (cancelled) lets a waiter take over.
async fn shared_fetch(
    cache: &Arc<HttpCache>,
    net: &Network,
    rounds: Rounds,
    call: Call,
    entry: Option<Arc<Entry>>,
    coalesce: bool,
) -> Result<ApiResponse, ApiError> {
    if !coalesce {
        return fetch(cache, net, rounds, call, entry).await;
    }
    let id = cache.flight_id(&call.key, call.req.max_response_bytes);
    let leader = loop {
        match cache.flights().join(id.clone()) {
            Role::Leader(leader) => break leader,
            Role::Waiter(rx) => {
                if let Some(result) = coalesce::wait(rx).await {
                    cache.count_coalesced();
                    return result;
                }
            }
        }
    };
    let result = fetch(cache, net, rounds, call, entry).await;
    leader.finish(&result);
    result
}

/// Refreshes a stale entry in the background — unless a refresh (or any identical GET) of it is
/// already in flight: one per key, however many readers.
fn refresh_in_background(
    cache: Arc<HttpCache>,
    net: Arc<Network>,
    rounds: Rounds,
    call: Call,
    e: Arc<Entry>,
) {
    let id = cache.flight_id(&call.key, call.req.max_response_bytes);
    let Role::Leader(leader) = cache.flights().join(id) else {
        return;
    };
    // Runs on the client's runtime (calls are polled with it entered); cancelled at shutdown.
    crate::runtime::spawn_contained("stale-while-revalidate refresh", async move {
        let result = fetch(&cache, &net, rounds, call, Some(e)).await;
        leader.finish(&result);
    });
}

/// Asks the network (conditionally when `entry` has validators), stores or refreshes, and falls back
/// to `entry` when the network fails and the entry may stand in.
async fn fetch(
    cache: &HttpCache,
    net: &Network,
    rounds: Rounds,
    call: Call,
    entry: Option<Arc<Entry>>,
) -> Result<ApiResponse, ApiError> {
    let Call {
        req,
        mut headers,
        key,
        scope,
    } = call;
    let mut conditional = false;
    if let Some(e) = &entry {
        let (etag, last_modified) = e.validators();
        let validators = [
            ("if-none-match", etag),
            ("if-modified-since", last_modified),
        ];
        for (name, value) in validators {
            let name = HeaderName::from_static(name);
            let value = value.and_then(|v| HeaderValue::from_str(v).ok());
            if let (Some(v), false) = (value, headers.contains_key(&name)) {
                headers.insert(name, v);
                conditional = true;
            }
        }
    }
    match net
        .execute_keeping_final_4xx(req, headers, scope, rounds)
        .await
    {
        Ok(r) if r.status == 304 && conditional => match entry {
            Some(e) => {
                let e = cache.refresh(&e, &r);
                let mut resp = e.to_response(now_ms(), r.elapsed_ms);
                // Just validated by the server: current, whatever its stored lifetime says.
                (resp.backend, resp.attempts, resp.stale) = (r.backend, r.attempts, false);
                answer(resp)
            }
            None => Ok(r),
        },
        Ok(r) => {
            cache.store(&key, &r);
            answer(r)
        }
        Err(err) if network_failed(&err) => {
            match entry.filter(|e| {
                e.freshness(now_ms())
                    .usable_on_error(cache.settings().max_stale)
            }) {
                Some(e) => {
                    log::info!(
                        "robust-api: serving stale {} from cache: {err}",
                        key.label()
                    );
                    cache.count_stale_served();
                    answer(e.to_response(now_ms(), 0))
                }
                None => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}
