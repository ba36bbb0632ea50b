//! What a request does with the cache, per [`CachePolicy`]: the only place that combines the cache
//! and the network pipeline.
//!
//! - Only GET is cached. A successful POST/PUT/PATCH/DELETE invalidates cached GETs of its path.
//! - A revalidation sends the entry's validators (`If-None-Match`, `If-Modified-Since`); a `304`
//!   refreshes the entry and answers with its body.
//! - When the network fails (offline, every backend down or fenced off, timeout, broken connection,
//!   5xx), a stale entry is served — flagged `stale` — if [`super::policy::Freshness::usable_on_error`]
//!   allows it.

use std::sync::Arc;
use std::time::Instant;

use super::policy::{parse_cache_control, Use};
use super::{effective_headers, CachePolicy, Entry, HttpCache};
use crate::error::ApiError;
use crate::pipeline::Pipeline;
use crate::store::now_ms;
use crate::types::{ApiRequest, ApiResponse, HttpMethod};

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

/// Serves one request through the cache and the pipeline.
pub(crate) async fn serve(
    cache: Arc<HttpCache>,
    pipeline: Arc<Pipeline>,
    req: ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let started = Instant::now();
    if !cache.enabled() {
        return pipeline.execute(req).await;
    }
    if req.method != HttpMethod::Get {
        let invalidates = !matches!(req.method, HttpMethod::Head | HttpMethod::Options);
        let path = req.path.clone();
        let result = pipeline.execute(req).await;
        if invalidates && result.is_ok() {
            cache.invalidate_path(&path);
        }
        return result;
    }
    let policy = req.cache.unwrap_or(CachePolicy::NetworkFirst);
    let Some(key) = cache.key(&req) else {
        return pipeline.execute(req).await;
    };
    let headers = effective_headers(&cache.default_headers, &req);
    let req_cc = parse_cache_control(headers.get("cache-control").map(String::as_str));
    if policy == CachePolicy::NetworkOnly || req_cc.no_store {
        return fetch(&cache, &pipeline, &key, req, None).await;
    }
    let entry = cache.lookup(&key, &req);
    let hit = |e: &Entry| {
        cache.count_hit();
        e.to_response(now_ms(), started.elapsed().as_millis() as u64)
    };
    match (policy, entry) {
        (CachePolicy::CacheOnly, Some(e)) | (CachePolicy::CacheFirst, Some(e)) => Ok(hit(&e)),
        (CachePolicy::CacheOnly, None) => Err(ApiError::NotCached { key }),
        (CachePolicy::StaleWhileRevalidate, Some(e)) => {
            if !e.freshness(now_ms()).is_fresh() {
                refresh_in_background(cache.clone(), pipeline, key, req, e.clone());
            }
            Ok(hit(&e))
        }
        (_, Some(e)) => match e.freshness(now_ms()).decide(req_cc.no_cache) {
            Use::Fresh => Ok(hit(&e)),
            Use::StaleWhileRevalidate => {
                let response = hit(&e);
                refresh_in_background(cache.clone(), pipeline, key, req, e);
                Ok(response)
            }
            Use::Revalidate => fetch(&cache, &pipeline, &key, req, Some(e)).await,
        },
        (_, None) => fetch(&cache, &pipeline, &key, req, None).await,
    }
}

fn refresh_in_background(
    cache: Arc<HttpCache>,
    pipeline: Arc<Pipeline>,
    key: String,
    req: ApiRequest,
    e: Entry,
) {
    // Runs on the client's runtime (calls are polled with it entered); cancelled at shutdown.
    tokio::spawn(async move {
        let _ = fetch(&cache, &pipeline, &key, req, Some(e)).await;
    });
}

/// Asks the network (conditionally when `entry` has validators), stores or refreshes, and falls back
/// to `entry` when the network fails and the entry may stand in.
async fn fetch(
    cache: &HttpCache,
    pipeline: &Pipeline,
    key: &str,
    req: ApiRequest,
    entry: Option<Entry>,
) -> Result<ApiResponse, ApiError> {
    let mut net_req = req.clone();
    let mut conditional = false;
    if let Some(e) = &entry {
        let has = |name: &str| req.headers.keys().any(|k| k.eq_ignore_ascii_case(name));
        let (etag, last_modified) = e.validators();
        if let (Some(etag), false) = (etag, has("if-none-match")) {
            net_req
                .headers
                .insert("if-none-match".into(), etag.to_string());
            conditional = true;
        }
        if let (Some(lm), false) = (last_modified, has("if-modified-since")) {
            net_req
                .headers
                .insert("if-modified-since".into(), lm.to_string());
            conditional = true;
        }
    }
    match pipeline.execute(net_req).await {
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
            cache.store(key, &req, &r);
            Ok(r)
        }
        Err(err) if network_failed(&err) => {
            match entry.filter(|e| {
                e.freshness(now_ms())
                    .usable_on_error(cache.settings().max_stale)
            }) {
                Some(e) => {
                    log::info!("robust-api: serving stale {key} from cache: {err}");
                    cache.count_stale_served();
                    Ok(e.to_response(now_ms(), 0))
                }
                None => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}
