//! `ClientConfig` (the exported record, with the seed's defaults) and its validation into [`Settings`],
//! the checked form the rest of the crate uses. Validation happens once, in `RobustClient::new`: a bad
//! URL is an `InvalidConfig` at construction, never a crash later.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use crate::error::ApiError;

/// Seed default: connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Seed default: per-attempt request timeout.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Seed default: retries after the first pass over the backends.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Seed default: first backoff delay (1 → 2 → 4 → 8 s).
pub const DEFAULT_RETRY_BASE_DELAY_MS: u64 = 1_000;
/// Seed default: backoff cap.
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 8_000;
/// Consecutive failures that open a backend's breaker.
pub const DEFAULT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
/// How long an open breaker fences its backend off before a trial.
pub const DEFAULT_BREAKER_OPEN_MS: u64 = 30_000;
/// Health probe path.
pub const DEFAULT_HEALTH_PATH: &str = "/api/health";
/// Health probe interval.
pub const DEFAULT_HEALTH_CHECK_INTERVAL_MS: u64 = 60_000;
/// Retries may add at most this share of recent traffic …
pub const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;
/// … plus this many retries per second regardless of traffic.
pub const DEFAULT_RETRY_BUDGET_MIN_PER_SEC: u32 = 10;
/// Cache size bound.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Freshness of responses without caching headers (0: stored for offline use, revalidated on use).
pub const DEFAULT_CACHE_DEFAULT_TTL_MS: u64 = 0;
/// How long past freshness an entry may still stand in for a failed network.
pub const DEFAULT_CACHE_MAX_STALE_MS: u64 = 7 * 24 * 3600 * 1000;
/// Seed default: cache cleanup interval.
pub const DEFAULT_CACHE_CLEANUP_INTERVAL_MS: u64 = 5 * 60 * 1000;
/// Seed default: offline queue capacity.
pub const DEFAULT_MAX_QUEUE_SIZE: u32 = 50;
/// Offline queue byte bound.
pub const DEFAULT_QUEUE_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Queued requests older than this are dead-lettered.
pub const DEFAULT_QUEUE_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;
/// First delay after a failed replay.
pub const DEFAULT_QUEUE_RETRY_BASE_MS: u64 = 1_000;
/// Replay backoff cap.
pub const DEFAULT_QUEUE_RETRY_MAX_MS: u64 = 5 * 60 * 1000;
/// Queued requests sent at once (at most one per ordering group).
pub const DEFAULT_QUEUE_MAX_IN_FLIGHT: u32 = 4;
/// Worker threads of the client's own tokio runtime.
pub const DEFAULT_WORKER_THREADS: u32 = 2;
/// An upload attempt fails after this long without progress.
pub const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Backoff rounds after an upload's first attempt.
pub const DEFAULT_UPLOAD_MAX_RETRIES: u32 = 3;
/// Where `upload_video_file` posts.
pub const DEFAULT_UPLOAD_VIDEO_PATH: &str = "/api/videos";

/// Everything a `RobustClient` needs. Only `backends` is required; every other field defaults to the
/// values in the constants above (the seed's defaults).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ClientConfig {
    /// Base URLs (`http://` or `https://`), in order of preference.
    pub backends: Vec<String>,
    /// Where persistent state (cache, queue) lives. `None` = a fresh temporary directory, removed when
    /// the client is dropped.
    #[uniffi(default = None)]
    pub storage_dir: Option<String>,
    /// TCP/TLS connect timeout.
    #[uniffi(default = 10000)]
    pub connect_timeout_ms: u64,
    /// Timeout of one attempt (headers and body). A request may override it.
    #[uniffi(default = 30000)]
    pub request_timeout_ms: u64,
    /// Backoff rounds after the first pass over the backends (idempotent requests only).
    #[uniffi(default = 3)]
    pub max_retries: u32,
    /// First backoff delay; doubles each round (full jitter).
    #[uniffi(default = 1000)]
    pub retry_base_delay_ms: u64,
    /// Backoff cap.
    #[uniffi(default = 8000)]
    pub retry_max_delay_ms: u64,
    /// Retry budget: re-sends may add at most this share of recent requests (0.0–1.0) …
    #[uniffi(default = 0.2)]
    pub retry_budget_ratio: f64,
    /// … plus this many re-sends per second as a floor.
    #[uniffi(default = 10)]
    pub retry_budget_min_per_sec: u32,
    /// Consecutive failures that open a backend's breaker.
    #[uniffi(default = 5)]
    pub breaker_failure_threshold: u32,
    /// How long a breaker stays open before one trial call is let through.
    #[uniffi(default = 30000)]
    pub breaker_open_ms: u64,
    /// Successful calls slower than this count as breaker failures. `None` = off.
    #[uniffi(default = None)]
    pub slow_call_threshold_ms: Option<u64>,
    /// Path probed on every backend (`GET`, expects 2xx).
    #[uniffi(default = "/api/health")]
    pub health_path: String,
    /// Probe interval. Probes never run while the app reports it is offline.
    #[uniffi(default = 60000)]
    pub health_check_interval_ms: u64,
    /// Hedge idempotent requests: if no answer after this long, race a second backend. `None` = off.
    #[uniffi(default = None)]
    pub hedge_after_ms: Option<u64>,
    /// Headers sent with every request (a request's own headers win).
    #[uniffi(default)]
    pub default_headers: HashMap<String, String>,
    /// Worker threads of the client's tokio runtime (1–8).
    #[uniffi(default = 2)]
    pub worker_threads: u32,
    /// Response cache bound (bytes); least recently used entries are evicted beyond it. 0 = no cache.
    #[uniffi(default = 20971520)]
    pub cache_max_bytes: u64,
    /// Freshness given to responses without `Cache-Control: max-age` or `Expires`.
    #[uniffi(default = 0)]
    pub cache_default_ttl_ms: u64,
    /// How long past its freshness an entry may still be served when the network fails (unless the
    /// response limited it with `stale-if-error` or forbade it with `must-revalidate`).
    #[uniffi(default = 604800000)]
    pub cache_max_stale_ms: u64,
    /// How often expired entries are purged.
    #[uniffi(default = 300000)]
    pub cache_cleanup_interval_ms: u64,
    /// Offline queue capacity (pending entries); `enqueue` beyond it is `QueueFull`.
    #[uniffi(default = 50)]
    pub max_queue_size: u32,
    /// Offline queue byte bound (bodies, headers, paths of pending entries).
    #[uniffi(default = 10485760)]
    pub queue_max_bytes: u64,
    /// Queued requests older than this are dead-lettered instead of sent.
    #[uniffi(default = 604800000)]
    pub queue_max_age_ms: u64,
    /// First delay after a failed replay (doubles, full jitter).
    #[uniffi(default = 1000)]
    pub queue_retry_base_delay_ms: u64,
    /// Replay backoff cap.
    #[uniffi(default = 300000)]
    pub queue_retry_max_delay_ms: u64,
    /// Queued requests in flight at once (one per ordering group).
    #[uniffi(default = 4)]
    pub queue_max_in_flight: u32,
    /// Extra header names never written to disk (besides Authorization, Cookie, Proxy-Authorization).
    #[uniffi(default)]
    pub queue_sensitive_headers: Vec<String>,
    /// An upload attempt fails after this long without a byte going out or coming in (uploads have
    /// no total timeout; `request_timeout_ms` does not apply to them).
    #[uniffi(default = 30000)]
    pub upload_idle_timeout_ms: u64,
    /// Backoff rounds after an upload's first attempt (separate from `max_retries`).
    #[uniffi(default = 3)]
    pub upload_max_retries: u32,
    /// Where `upload_video_file` posts.
    #[uniffi(default = "/api/videos")]
    pub upload_video_path: String,
    /// WebSockets: a ping every this long; see `ws_pong_timeout_ms`.
    #[uniffi(default = 30000)]
    pub ws_heartbeat_interval_ms: u64,
    /// WebSockets: a ping unanswered this long means the connection is dead (closed, reconnected).
    #[uniffi(default = 10000)]
    pub ws_pong_timeout_ms: u64,
    /// WebSockets: first reconnect delay; doubles per failed pass, full jitter.
    #[uniffi(default = 1000)]
    pub ws_reconnect_base_delay_ms: u64,
    /// WebSockets: reconnect delay cap.
    #[uniffi(default = 30000)]
    pub ws_reconnect_max_delay_ms: u64,
    /// WebSockets: consecutive failed connection attempts before giving up (`on_closed(1006, …)`).
    /// `None` = never give up.
    #[uniffi(default = None)]
    pub ws_max_reconnect_attempts: Option<u32>,
    /// WebSockets: reconnect when the server closes with the normal code 1000 (servers often do
    /// when they restart). `false`: such a close is final.
    #[uniffi(default = true)]
    pub ws_reconnect_on_normal_close: bool,
    /// WebSockets: outbound messages held per connection while it (re)connects; beyond it
    /// `send_*` fails with `WebSocketBufferFull`.
    #[uniffi(default = 1000)]
    pub ws_max_buffered_messages: u32,
    /// WebSockets: outbound bytes held per connection while it (re)connects.
    #[uniffi(default = 1048576)]
    pub ws_max_buffered_bytes: u64,
}

impl ClientConfig {
    /// A config for these backends with every other setting at its default.
    pub fn new(backends: Vec<String>) -> Self {
        ClientConfig {
            backends,
            storage_dir: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay_ms: DEFAULT_RETRY_BASE_DELAY_MS,
            retry_max_delay_ms: DEFAULT_RETRY_MAX_DELAY_MS,
            retry_budget_ratio: DEFAULT_RETRY_BUDGET_RATIO,
            retry_budget_min_per_sec: DEFAULT_RETRY_BUDGET_MIN_PER_SEC,
            breaker_failure_threshold: DEFAULT_BREAKER_FAILURE_THRESHOLD,
            breaker_open_ms: DEFAULT_BREAKER_OPEN_MS,
            slow_call_threshold_ms: None,
            health_path: DEFAULT_HEALTH_PATH.to_string(),
            health_check_interval_ms: DEFAULT_HEALTH_CHECK_INTERVAL_MS,
            hedge_after_ms: None,
            default_headers: HashMap::new(),
            worker_threads: DEFAULT_WORKER_THREADS,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            cache_default_ttl_ms: DEFAULT_CACHE_DEFAULT_TTL_MS,
            cache_max_stale_ms: DEFAULT_CACHE_MAX_STALE_MS,
            cache_cleanup_interval_ms: DEFAULT_CACHE_CLEANUP_INTERVAL_MS,
            max_queue_size: DEFAULT_MAX_QUEUE_SIZE,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            queue_max_age_ms: DEFAULT_QUEUE_MAX_AGE_MS,
            queue_retry_base_delay_ms: DEFAULT_QUEUE_RETRY_BASE_MS,
            queue_retry_max_delay_ms: DEFAULT_QUEUE_RETRY_MAX_MS,
            queue_max_in_flight: DEFAULT_QUEUE_MAX_IN_FLIGHT,
            queue_sensitive_headers: Vec::new(),
            upload_idle_timeout_ms: DEFAULT_UPLOAD_IDLE_TIMEOUT_MS,
            upload_max_retries: DEFAULT_UPLOAD_MAX_RETRIES,
            upload_video_path: DEFAULT_UPLOAD_VIDEO_PATH.to_string(),
            ws_heartbeat_interval_ms: crate::ws::DEFAULT_WS_HEARTBEAT_INTERVAL_MS,
            ws_pong_timeout_ms: crate::ws::DEFAULT_WS_PONG_TIMEOUT_MS,
            ws_reconnect_base_delay_ms: crate::ws::DEFAULT_WS_RECONNECT_BASE_DELAY_MS,
            ws_reconnect_max_delay_ms: crate::ws::DEFAULT_WS_RECONNECT_MAX_DELAY_MS,
            ws_max_reconnect_attempts: None,
            ws_reconnect_on_normal_close: true,
            ws_max_buffered_messages: crate::ws::DEFAULT_WS_MAX_BUFFERED_MESSAGES,
            ws_max_buffered_bytes: crate::ws::DEFAULT_WS_MAX_BUFFERED_BYTES,
        }
    }
}

/// `ClientConfig::new` for the bindings (records cannot have constructors in every language).
#[uniffi::export]
pub fn default_client_config(backends: Vec<String>) -> ClientConfig {
    ClientConfig::new(backends)
}

/// The validated, typed form of a [`ClientConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub backends: Vec<Url>,
    pub storage_dir: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub retry_budget_ratio: f64,
    pub retry_budget_min_per_sec: u32,
    pub breaker_failure_threshold: u32,
    pub breaker_open: Duration,
    pub slow_call_threshold: Option<Duration>,
    pub health_path: String,
    pub health_check_interval: Duration,
    pub hedge_after: Option<Duration>,
    pub default_headers: HeaderMap,
    /// The default headers as given (cache keys and `Vary` checks read them).
    pub default_header_pairs: HashMap<String, String>,
    pub worker_threads: usize,
    pub cache: crate::cache::CacheSettings,
    pub cache_cleanup_interval: Duration,
    pub queue: crate::queue::QueueSettings,
    pub upload: crate::upload::UploadSettings,
    pub ws: crate::ws::WsSettings,
}

fn positive_ms(name: &str, ms: u64) -> Result<Duration, ApiError> {
    if ms == 0 {
        return Err(ApiError::invalid_config(format!(
            "{name} must be greater than 0 ms"
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Parses a backend base URL: http(s), a host, no query or fragment; a trailing `/` is dropped.
pub(crate) fn parse_backend_url(raw: &str) -> Result<Url, ApiError> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        ApiError::invalid_config(format!("backend URL {raw:?} is not a valid URL: {e}"))
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} must start with http:// or https://"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} has no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} must not carry a query or fragment"
        )));
    }
    if url.cannot_be_a_base() {
        return Err(ApiError::invalid_config(format!(
            "backend URL {raw:?} cannot be a base URL"
        )));
    }
    Ok(url)
}

/// Validates and converts header pairs; `what` names them in error messages.
pub(crate) fn parse_headers(
    pairs: &HashMap<String, String>,
    make_err: impl Fn(String) -> ApiError,
) -> Result<HeaderMap, ApiError> {
    let mut map = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            make_err(format!(
                "header name {name:?} is not a valid HTTP header name"
            ))
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            make_err(format!(
                "header {name:?} has a value that is not valid in HTTP (control characters?)"
            ))
        })?;
        map.insert(n, v);
    }
    Ok(map)
}

fn queue_settings(c: &ClientConfig) -> Result<crate::queue::QueueSettings, ApiError> {
    if c.max_queue_size == 0 || c.queue_max_in_flight == 0 {
        return Err(ApiError::invalid_config("max_queue_size and queue_max_in_flight must be at least 1"));
    }
    let retry_base = positive_ms("queue_retry_base_delay_ms", c.queue_retry_base_delay_ms)?;
    let retry_max = positive_ms("queue_retry_max_delay_ms", c.queue_retry_max_delay_ms)?;
    if retry_max < retry_base {
        return Err(ApiError::invalid_config("queue_retry_max_delay_ms must be at least queue_retry_base_delay_ms"));
    }
    let mut sensitive: Vec<String> = ["authorization", "cookie", "proxy-authorization"].map(String::from).to_vec();
    sensitive.extend(c.queue_sensitive_headers.iter().map(|h| h.to_ascii_lowercase()));
    Ok(crate::queue::QueueSettings {
        max_entries: c.max_queue_size,
        max_bytes: c.queue_max_bytes,
        max_age: positive_ms("queue_max_age_ms", c.queue_max_age_ms)?,
        retry_base,
        retry_max,
        max_in_flight: c.queue_max_in_flight as usize,
        sensitive_headers: sensitive,
    })
}

impl Settings {
    pub(crate) fn from_config(c: &ClientConfig) -> Result<Settings, ApiError> {
        if c.backends.is_empty() {
            return Err(ApiError::invalid_config(
                "at least one backend URL is required",
            ));
        }
        let mut backends = Vec::with_capacity(c.backends.len());
        for raw in &c.backends {
            let url = parse_backend_url(raw)?;
            if backends.contains(&url) {
                return Err(ApiError::invalid_config(format!(
                    "backend URL {raw:?} is listed twice"
                )));
            }
            backends.push(url);
        }
        let retry_base_delay = positive_ms("retry_base_delay_ms", c.retry_base_delay_ms)?;
        let retry_max_delay = positive_ms("retry_max_delay_ms", c.retry_max_delay_ms)?;
        if retry_max_delay < retry_base_delay {
            return Err(ApiError::invalid_config(
                "retry_max_delay_ms must be at least retry_base_delay_ms",
            ));
        }
        if !(0.0..=1.0).contains(&c.retry_budget_ratio) {
            return Err(ApiError::invalid_config(
                "retry_budget_ratio must be between 0.0 and 1.0",
            ));
        }
        if c.breaker_failure_threshold == 0 {
            return Err(ApiError::invalid_config(
                "breaker_failure_threshold must be at least 1",
            ));
        }
        if !c.health_path.starts_with('/') {
            return Err(ApiError::invalid_config(format!(
                "health_path {:?} must start with '/'",
                c.health_path
            )));
        }
        if !(1..=8).contains(&c.worker_threads) {
            return Err(ApiError::invalid_config(
                "worker_threads must be between 1 and 8",
            ));
        }
        let slow_call_threshold = c
            .slow_call_threshold_ms
            .map(|ms| positive_ms("slow_call_threshold_ms", ms))
            .transpose()?;
        let hedge_after = c
            .hedge_after_ms
            .map(|ms| positive_ms("hedge_after_ms", ms))
            .transpose()?;
        Ok(Settings {
            backends,
            storage_dir: c.storage_dir.clone(),
            connect_timeout: positive_ms("connect_timeout_ms", c.connect_timeout_ms)?,
            request_timeout: positive_ms("request_timeout_ms", c.request_timeout_ms)?,
            max_retries: c.max_retries,
            retry_base_delay,
            retry_max_delay,
            retry_budget_ratio: c.retry_budget_ratio,
            retry_budget_min_per_sec: c.retry_budget_min_per_sec,
            breaker_failure_threshold: c.breaker_failure_threshold,
            breaker_open: positive_ms("breaker_open_ms", c.breaker_open_ms)?,
            slow_call_threshold,
            health_path: c.health_path.clone(),
            health_check_interval: positive_ms(
                "health_check_interval_ms",
                c.health_check_interval_ms,
            )?,
            hedge_after,
            default_headers: parse_headers(&c.default_headers, |r| {
                ApiError::invalid_config(format!("default_headers: {r}"))
            })?,
            default_header_pairs: c.default_headers.clone(),
            worker_threads: c.worker_threads as usize,
            cache: crate::cache::CacheSettings {
                max_bytes: c.cache_max_bytes,
                default_ttl: Duration::from_millis(c.cache_default_ttl_ms),
                max_stale: Duration::from_millis(c.cache_max_stale_ms),
            },
            cache_cleanup_interval: positive_ms(
                "cache_cleanup_interval_ms",
                c.cache_cleanup_interval_ms,
            )?,
            queue: queue_settings(c)?,
            upload: crate::upload::UploadSettings::from_config(c)?,
            ws: crate::ws::WsSettings::from_config(c)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(urls: &[&str]) -> ClientConfig {
        ClientConfig::new(urls.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn defaults_are_the_seed_values() {
        let c = cfg(&["http://a"]);
        assert_eq!(c.connect_timeout_ms, 10_000);
        assert_eq!(c.request_timeout_ms, 30_000);
        assert_eq!(c.max_retries, 3);
        assert_eq!(
            (c.retry_base_delay_ms, c.retry_max_delay_ms),
            (1_000, 8_000)
        );
        assert_eq!(
            (c.breaker_failure_threshold, c.breaker_open_ms),
            (5, 30_000)
        );
        assert_eq!(c.health_path, "/api/health");
        assert_eq!(c.health_check_interval_ms, 60_000);
        assert_eq!((c.hedge_after_ms, c.slow_call_threshold_ms), (None, None));
        assert!(Settings::from_config(&c).is_ok());
    }

    #[test]
    fn bad_urls_are_invalid_config() {
        for bad in [
            "not a url",
            "ftp://x",
            "http://",
            "http://a?q=1",
            "mailto:x@y",
        ] {
            let err = Settings::from_config(&cfg(&[bad])).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidConfig { .. }),
                "{bad}: {err:?}"
            );
        }
        assert!(matches!(
            Settings::from_config(&cfg(&[])),
            Err(ApiError::InvalidConfig { .. })
        ));
        assert!(matches!(
            Settings::from_config(&cfg(&["http://a", "http://a/"])),
            Err(ApiError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn bad_numbers_and_headers_are_invalid_config() {
        let mut c = cfg(&["http://a"]);
        c.request_timeout_ms = 0;
        assert!(Settings::from_config(&c).is_err());
        let mut c = cfg(&["http://a"]);
        c.retry_max_delay_ms = 10;
        assert!(Settings::from_config(&c).is_err());
        let mut c = cfg(&["http://a"]);
        c.default_headers.insert("bad header".into(), "x".into());
        assert!(Settings::from_config(&c).is_err());
        let mut c = cfg(&["http://a"]);
        c.health_path = "health".into();
        assert!(Settings::from_config(&c).is_err());
    }
}
