//! The cache layer of the request stack ([`CacheLayer`]): what a request does with the cache, per
//! [`CachePolicy`] — the only place that combines the cache and the network. Live calls and the
//! offline queue's replays both enter here, so a replayed write invalidates like a live one.
//!
//! - Every request's final outgoing headers are resolved here, once, for the user scope it runs
//!   in (the header provider is asked for that scope); the cache keys and `Vary`-matches on them
//!   and the network sends exactly them. Lookups only see entries of that scope.
//! - Only GET is cached. A successful POST/PUT/PATCH/DELETE invalidates cached GETs of its path.
//! - A revalidation sends the entry's validators (`If-None-Match`, `If-Modified-Since`); a `304`
//!   refreshes the entry and answers with its body.
//! - When the network fails (offline, every backend down or fenced off, timeout, broken connection,
//!   5xx), a stale entry is served — flagged `stale` — if [`super::policy::Freshness::usable_on_error`]
//!   allows it.

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::policy::{parse_cache_control, Use};
use super::{CacheKey, Entry, HttpCache};
use crate::defaults::ms_i32;
use crate::error::ApiError;
use crate::net::{Network, Rounds};
use crate::store::now_ms;
use crate::types::{ApiRequest, ApiResponse, CachePolicy, HttpMethod};

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
}

async fn serve(
    cache: Arc<HttpCache>,
    pipeline: Arc<Network>,
    req: ApiRequest,
    scope: Option<String>,
    rounds: Rounds,
) -> Result<ApiResponse, ApiError> {
    let started = Instant::now();
    let headers = pipeline.outgoing_headers(&req, scope.clone()).await?;
    if !cache.enabled() {
        return pipeline
            .execute_with_headers(req, headers, scope, rounds)
            .await;
    }
    if req.method != HttpMethod::Get {
        let invalidates = !matches!(req.method, HttpMethod::Head | HttpMethod::Options);
        let path = req.path.clone();
        let result = pipeline
            .execute_with_headers(req, headers, scope, rounds)
            .await;
        if invalidates && result.is_ok() {
            cache.invalidate_path(&path);
        }
        return result;
    }
    let policy = req.cache.unwrap_or(CachePolicy::NetworkFirst);
    let Some(key) = cache.key(&req, &headers, scope.as_deref()) else {
        return pipeline
            .execute_with_headers(req, headers, scope, rounds)
            .await;
    };
    let req_cc = parse_cache_control(key.header("cache-control"));
    let call = Call {
        req,
        headers,
        key,
        scope,
    };
    if policy == CachePolicy::NetworkOnly || req_cc.no_store {
        return fetch(&cache, &pipeline, rounds, call, None).await;
    }
    let entry = cache.lookup(&call.key);
    let hit = |e: &Entry| {
        cache.count_hit();
        e.to_response(now_ms(), ms_i32(started.elapsed()))
    };
    match (policy, entry) {
        (CachePolicy::CacheOnly, Some(e)) | (CachePolicy::CacheFirst, Some(e)) => Ok(hit(&e)),
        (CachePolicy::CacheOnly, None) => Err(ApiError::NotCached {
            key: call.key.label().to_string(),
        }),
        (CachePolicy::StaleWhileRevalidate, Some(e)) => {
            if !e.freshness(now_ms()).is_fresh() {
                refresh_in_background(cache.clone(), pipeline, rounds, call, e.clone());
            }
            Ok(hit(&e))
        }
        (_, Some(e)) => match e.freshness(now_ms()).decide(req_cc.no_cache) {
            Use::Fresh => Ok(hit(&e)),
            Use::StaleWhileRevalidate => {
                let response = hit(&e);
                refresh_in_background(cache.clone(), pipeline, rounds, call, e);
                Ok(response)
            }
            Use::Revalidate => fetch(&cache, &pipeline, rounds, call, Some(e)).await,
        },
        (_, None) => fetch(&cache, &pipeline, rounds, call, None).await,
    }
}

/// A GET on its way: the request, its final outgoing headers, its cache key and its user scope.
struct Call {
    req: ApiRequest,
    headers: HeaderMap,
    key: CacheKey,
    scope: Option<String>,
}

fn refresh_in_background(
    cache: Arc<HttpCache>,
    pipeline: Arc<Network>,
    rounds: Rounds,
    call: Call,
    e: Entry,
) {
    // Runs on the client's runtime (calls are polled with it entered); cancelled at shutdown.
    crate::runtime::spawn_contained("stale-while-revalidate refresh", async move {
        let _ = fetch(&cache, &pipeline, rounds, call, Some(e)).await;
    });
}

/// Asks the network (conditionally when `entry` has validators), stores or refreshes, and falls back
/// to `entry` when the network fails and the entry may stand in.
async fn fetch(
    cache: &HttpCache,
    pipeline: &Network,
    rounds: Rounds,
    call: Call,
    entry: Option<Entry>,
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
    match pipeline
        .execute_with_headers(req.clone(), headers, scope, rounds)
        .await
    {
        Ok(r) if r.status == 304 && conditional => match entry {
            Some(e) => {
                let e = cache.refresh(e, &r);
                let mut resp = e.to_response(now_ms(), r.elapsed_ms);
                // Just validated by the server: current, whatever its stored lifetime says.
                (resp.backend, resp.attempts, resp.stale) = (r.backend, r.attempts, false);
                Ok(resp)
            }
            None => Ok(r),
        },
        Ok(r) => {
            cache.store(&key, &req, &r);
            Ok(r)
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
                    Ok(e.to_response(now_ms(), 0))
                }
                None => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}
