//! `ClientConfig`: the exported record, grouped by concern, and its validation into [`Settings`].
//! Each nested record is owned and validated by its module (the network layer's in `net`, the
//! cache's in `cache`, …) and writes each default once (see [`crate::defaults`]). Validation
//! happens once, in `RobustClient::new`: a bad value is `InvalidConfig` at construction, never a
//! crash later.

use std::collections::HashMap;

use crate::cache::{CacheConfig, CacheSettings};
use crate::error::ApiError;
use crate::net::{
    AuthConfig, BreakerConfig, HealthConfig, LimitsConfig, NetConfig, NetSettings, RetryConfig,
    SecurityConfig, TimeoutConfig,
};
use crate::queue::{QueueConfig, QueueSettings};
use crate::upload::{UploadConfig, UploadSettings};
use crate::ws::{WebSocketConfig, WsSettings};

/// Everything a `RobustClient` needs. Only `backends` is required; every other field (and every
/// field of the nested records) has a default.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ClientConfig {
    /// Base URLs (`http://` or `https://`), in order of preference.
    pub backends: Vec<String>,
    /// Where persistent state (cache, queue) lives. `None` = a fresh temporary directory, removed when
    /// the client is dropped.
    #[uniffi(default = None)]
    pub storage_dir: Option<String>,
    /// Headers sent with every request (a request's own headers win).
    #[uniffi(default)]
    pub default_headers: HashMap<String, String>,
    /// Worker threads of the client's tokio runtime (1–8).
    #[uniffi(default = 2)]
    pub worker_threads: i32,
    /// Connect and per-attempt timeouts.
    #[uniffi(default)]
    pub timeouts: TimeoutConfig,
    /// Retries, backoff, the retry budget, hedging.
    #[uniffi(default)]
    pub retry: RetryConfig,
    /// Circuit breakers.
    #[uniffi(default)]
    pub breaker: BreakerConfig,
    /// Background health probes.
    #[uniffi(default)]
    pub health: HealthConfig,
    /// Bounds on what a server may send (response size).
    #[uniffi(default)]
    pub limits: LimitsConfig,
    /// The HTTP response cache.
    #[uniffi(default)]
    pub cache: CacheConfig,
    /// The offline request queue.
    #[uniffi(default)]
    pub queue: QueueConfig,
    /// File uploads.
    #[uniffi(default)]
    pub upload: UploadConfig,
    /// WebSockets.
    #[uniffi(default)]
    pub websocket: WebSocketConfig,
    /// Transport security: cleartext, certificate pins, extra roots, redacted query parameters.
    #[uniffi(default)]
    pub security: SecurityConfig,
    /// The authenticator: which statuses mean "credentials expired", its timeout.
    #[uniffi(default)]
    pub auth: AuthConfig,
}

/// Worker threads of the client's own tokio runtime.
const DEFAULT_WORKER_THREADS: i32 = 2;

impl ClientConfig {
    /// A config for these backends with every other setting at its default.
    pub fn new(backends: Vec<String>) -> Self {
        ClientConfig {
            backends,
            storage_dir: None,
            default_headers: HashMap::new(),
            worker_threads: DEFAULT_WORKER_THREADS,
            timeouts: TimeoutConfig::default(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            health: HealthConfig::default(),
            limits: LimitsConfig::default(),
            cache: CacheConfig::default(),
            queue: QueueConfig::default(),
            upload: UploadConfig::default(),
            websocket: WebSocketConfig::default(),
            security: SecurityConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

/// `ClientConfig::new` for the bindings (a record's only required field, as a function).
#[uniffi::export]
pub fn default_client_config(backends: Vec<String>) -> ClientConfig {
    ClientConfig::new(backends)
}

/// The validated, typed form of a [`ClientConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub storage_dir: Option<String>,
    pub worker_threads: usize,
    pub net: NetSettings,
    pub cache: CacheSettings,
    pub queue: QueueSettings,
    pub upload: UploadSettings,
    pub ws: WsSettings,
}

impl Settings {
    pub(crate) fn from_config(c: &ClientConfig) -> Result<Self, ApiError> {
        if !(1..=8).contains(&c.worker_threads) {
            return Err(ApiError::invalid_config(
                "worker_threads must be between 1 and 8",
            ));
        }
        if c.storage_dir
            .as_deref()
            .is_some_and(|d| d.trim().is_empty())
        {
            return Err(ApiError::invalid_config(
                "storage_dir must not be empty (None = a temporary directory)",
            ));
        }
        let net = NetSettings::from_config(NetConfig {
            backends: &c.backends,
            default_headers: &c.default_headers,
            timeouts: &c.timeouts,
            retry: &c.retry,
            breaker: &c.breaker,
            health: &c.health,
            limits: &c.limits,
            auth: &c.auth,
        })?;
        let ws = WsSettings::from_config(&c.websocket, net.connect_timeout)?;
        let cache = CacheSettings::from_config(&c.cache)?;
        let mut queue = QueueSettings::from_config(&c.queue)?;
        let upload = UploadSettings::from_config(&c.upload)?;
        // Last: a bad number in any group is reported before a cleartext backend.
        let net = net.with_security(&c.security)?;
        // One list of credential query names: what URLs shown redact is what the queue refuses.
        queue.sensitive_query = net.security.sensitive_query_params.clone();
        Ok(Settings {
            storage_dir: c.storage_dir.clone(),
            worker_threads: c.worker_threads as usize,
            cache,
            queue,
            upload,
            ws,
            net,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(urls: &[&str]) -> ClientConfig {
        let mut c = ClientConfig::new(urls.iter().map(|s| s.to_string()).collect());
        c.security.allow_cleartext = true; // `http://a` is not loopback
        c
    }

    #[test]
    fn defaults_are_the_documented_values() {
        let c = cfg(&["http://a"]);
        assert_eq!(
            (c.timeouts.connect_ms, c.timeouts.request_ms),
            (10_000, 30_000)
        );
        assert_eq!(c.retry.max_retries, 3);
        assert_eq!(
            (c.retry.base_delay_ms, c.retry.max_delay_ms),
            (1_000, 8_000)
        );
        assert_eq!(
            (c.breaker.failure_threshold, c.breaker.open_ms),
            (5, 30_000)
        );
        assert_eq!(c.health.path, "/api/health");
        assert_eq!(c.health.interval_ms, 60_000);
        assert_eq!(
            (c.retry.hedge_after_ms, c.breaker.slow_call_threshold_ms),
            (None, None)
        );
        assert_eq!(c.cache.max_bytes, 20 * 1024 * 1024);
        assert_eq!(c.queue.max_entries, 50);
        assert_eq!(c.upload.video_path, "/api/videos");
        assert!(c.websocket.reconnect_on_normal_close);
        assert!(!ClientConfig::new(vec![]).security.allow_cleartext);
        assert!(c.security.pins.is_empty() && c.security.trusted_roots_pem.is_empty());
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
        let bad: Vec<fn(&mut ClientConfig)> = vec![
            |c| c.timeouts.request_ms = 0,
            |c| c.timeouts.connect_ms = -1,
            |c| c.retry.max_delay_ms = 10,
            |c| c.retry.max_retries = -1,
            |c| c.queue.max_entries = 0,
            |c| c.cache.max_bytes = -5,
            |c| c.websocket.max_reconnect_attempts = Some(0),
            |c| c.upload.idle_timeout_ms = -30,
            |c| c.health.path = "health".into(),
            |c| c.storage_dir = Some(String::new()),
            |c| c.security.allow_cleartext = false,
            |c| c.security.trusted_roots_pem = vec!["garbage".into()],
            |c| {
                c.security.pins = vec![crate::net::CertificatePin {
                    host: "a".into(),
                    spki_sha256: vec!["short".into()],
                }]
            },
            |c| {
                c.default_headers.insert("bad header".into(), "x".into());
            },
        ];
        for (i, f) in bad.into_iter().enumerate() {
            let mut c = cfg(&["http://a"]);
            f(&mut c);
            let err = Settings::from_config(&c).unwrap_err();
            assert!(
                matches!(err, ApiError::InvalidConfig { .. }),
                "case {i}: {err:?}"
            );
        }
    }

    #[test]
    fn a_bad_number_is_reported_before_a_cleartext_backend() {
        let mut c = ClientConfig::new(vec!["http://a.example".into()]);
        c.timeouts.request_ms = 0;
        let err = Settings::from_config(&c).unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidConfig { reason } if reason.contains("request_ms")),
            "{err:?}"
        );
        c.timeouts.request_ms = 1_000;
        let err = Settings::from_config(&c).unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidConfig { reason } if reason.contains("allow_cleartext")),
            "{err:?}"
        );
    }

    #[test]
    fn the_largest_numbers_are_accepted_without_overflow() {
        let mut c = cfg(&["http://a"]);
        c.cache.max_stale_ms = i32::MAX;
        c.cache.default_ttl_ms = i32::MAX;
        c.queue.max_age_ms = i32::MAX;
        c.queue.max_entries = i32::MAX;
        c.retry.max_delay_ms = i32::MAX;
        assert!(Settings::from_config(&c).is_ok());
    }
}
