//! The network layer's configuration records (timeouts, retries, breakers, health probes) and their
//! validation into [`NetSettings`]. Each default is written once, in the record.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Url;

use crate::defaults::{at_least, config_record, non_negative, positive_ms};
use crate::error::ApiError;

config_record! {
    /// Timeouts of every attempt.
    pub struct TimeoutConfig {
        /// TCP/TLS connect timeout (also the WebSocket handshake's).
        pub connect_ms: i32 = 10000,
        /// Timeout of one attempt (headers and body). A request may override it.
        pub request_ms: i32 = 30000,
        /// How long the header provider may take for one call before the call fails with
        /// `CredentialsUnavailable` (it runs on a thread of its own; a late answer is dropped).
        pub header_provider_ms: i32 = 10000,
    }
}

config_record! {
    /// Bounds on what a server may send.
    pub struct LimitsConfig {
        /// Largest response body read into memory (bytes); a larger one fails the call with
        /// `ResponseTooLarge` (checked on `Content-Length` up front and while reading). A request
        /// may override it (`ApiRequest.max_response_bytes`).
        pub max_response_bytes: i32 = 33554432,
    }
}

config_record! {
    /// What is retried, how often, how long to wait; hedging.
    pub struct RetryConfig {
        /// Backoff rounds after the first pass over the backends (idempotent requests only).
        pub max_retries: i32 = 3,
        /// First backoff delay; doubles each round (full jitter).
        pub base_delay_ms: i32 = 1000,
        /// Backoff cap.
        pub max_delay_ms: i32 = 8000,
        /// Re-sends may add at most this share of recent requests (0.0–1.0) …
        pub budget_ratio: f64 = 0.2,
        /// … plus this many re-sends per second as a floor.
        pub budget_min_per_sec: i32 = 10,
        /// Hedge idempotent requests: if no answer after this long, race a second backend.
        /// `None` = off.
        pub hedge_after_ms: Option<i32> = None,
    }
}

config_record! {
    /// The circuit breaker of each backend.
    pub struct BreakerConfig {
        /// Consecutive failures that open a backend's breaker.
        pub failure_threshold: i32 = 5,
        /// How long a breaker stays open before one trial call is let through.
        pub open_ms: i32 = 30000,
        /// Successful calls slower than this count as breaker failures. `None` = off.
        pub slow_call_threshold_ms: Option<i32> = None,
    }
}

config_record! {
    /// Background health probes.
    pub struct HealthConfig {
        /// Path probed on every backend (`GET`, expects 2xx).
        pub path: String = "/api/health",
        /// Probe interval. Probes never run while the app reports it is offline.
        pub interval_ms: i32 = 60000,
        /// Keep probing while the app is in the background (`set_app_state`). Off by default:
        /// a probe wakes the radio; the first probe round runs on the return to the foreground.
        pub in_background: bool = false,
    }
}

config_record! {
    /// The authenticator (`set_authenticator`): when credentials count as expired, how long it may
    /// take.
    pub struct AuthConfig {
        /// Statuses meaning "the credentials expired": one refresh per scope, then each call is
        /// re-sent once. Empty = the default, `[401]`. Each must be a 4xx status.
        pub expired_statuses: Vec<i32> = [],
        /// How long the authenticator's `credentials` or `refresh` may take before the calls
        /// waiting for it fail (`CredentialsUnavailable`, `Unauthorized`); a late answer is
        /// dropped.
        pub timeout_ms: i32 = 30000,
    }
}

/// The checked form of the network configuration.
#[derive(Debug, Clone)]
pub(crate) struct NetSettings {
    pub backends: Vec<Url>,
    pub default_headers: HeaderMap,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub header_provider_timeout: Duration,
    /// Statuses that trigger a credential refresh (`auth.expired_statuses`).
    pub auth_expired_statuses: Vec<u16>,
    /// `auth.timeout_ms`.
    pub auth_timeout: Duration,
    pub max_response_bytes: u64,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub retry_budget_ratio: f64,
    pub retry_budget_min_per_sec: u32,
    pub hedge_after: Option<Duration>,
    pub breaker_failure_threshold: u32,
    pub breaker_open: Duration,
    pub slow_call_threshold: Option<Duration>,
    pub health_path: String,
    pub health_check_interval: Duration,
    pub probe_in_background: bool,
    pub security: super::SecuritySettings,
}

/// The network part of a `ClientConfig`.
pub(crate) struct NetConfig<'a> {
    pub backends: &'a [String],
    pub default_headers: &'a std::collections::HashMap<String, String>,
    pub timeouts: &'a TimeoutConfig,
    pub retry: &'a RetryConfig,
    pub breaker: &'a BreakerConfig,
    pub health: &'a HealthConfig,
    pub limits: &'a LimitsConfig,
    pub auth: &'a AuthConfig,
}

impl NetSettings {
    pub(crate) fn from_config(c: NetConfig<'_>) -> Result<Self, ApiError> {
        if c.backends.is_empty() {
            return Err(ApiError::invalid_config(
                "backends must list at least one base URL",
            ));
        }
        let mut backends: Vec<Url> = Vec::with_capacity(c.backends.len());
        for raw in c.backends {
            let url = crate::http::parse_backend_url(raw)?;
            if backends.contains(&url) {
                return Err(ApiError::invalid_config(format!(
                    "backend URL {raw:?} is listed twice"
                )));
            }
            backends.push(url);
        }
        let r = c.retry;
        let retry_base_delay = positive_ms("retry.base_delay_ms", r.base_delay_ms)?;
        let retry_max_delay = positive_ms("retry.max_delay_ms", r.max_delay_ms)?;
        if retry_max_delay < retry_base_delay {
            return Err(ApiError::invalid_config(
                "retry.max_delay_ms must be at least retry.base_delay_ms",
            ));
        }
        if !(0.0..=1.0).contains(&r.budget_ratio) {
            return Err(ApiError::invalid_config(
                "retry.budget_ratio must be between 0.0 and 1.0",
            ));
        }
        let path = &c.health.path;
        if !path.starts_with('/') {
            return Err(ApiError::invalid_config(format!(
                "health.path {path:?} must start with '/'"
            )));
        }
        // Checked here, once: a path no probe can send would fence off every backend.
        if path.starts_with("//")
            || path.contains("://")
            || path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(ApiError::invalid_config(format!(
                "health.path {path:?} must be a plain path on the backend (no whitespace, control \
                 characters, '#', '//host' or '://')"
            )));
        }
        if let Some(first) = backends.first() {
            crate::http::join_url(first, path, &[])
                .map_err(|e| ApiError::invalid_config(format!("health.path {path:?}: {e}")))?;
        }
        let mut auth_expired_statuses = Vec::new();
        for &status in &c.auth.expired_statuses {
            if !(400..=499).contains(&status) {
                return Err(ApiError::invalid_config(format!(
                    "auth.expired_statuses: {status} is not a 4xx status"
                )));
            }
            auth_expired_statuses.push(status as u16);
        }
        if auth_expired_statuses.is_empty() {
            auth_expired_statuses.push(401);
        }
        let optional = |name: &str, ms: Option<i32>| ms.map(|ms| positive_ms(name, ms)).transpose();
        Ok(NetSettings {
            backends,
            default_headers: crate::http::parse_headers(c.default_headers, |r| {
                ApiError::invalid_config(format!("default_headers: {r}"))
            })?,
            connect_timeout: positive_ms("timeouts.connect_ms", c.timeouts.connect_ms)?,
            request_timeout: positive_ms("timeouts.request_ms", c.timeouts.request_ms)?,
            max_response_bytes: u64::from(at_least(
                "limits.max_response_bytes",
                c.limits.max_response_bytes,
                1,
            )?),
            header_provider_timeout: positive_ms(
                "timeouts.header_provider_ms",
                c.timeouts.header_provider_ms,
            )?,
            auth_expired_statuses,
            auth_timeout: positive_ms("auth.timeout_ms", c.auth.timeout_ms)?,
            max_retries: non_negative("retry.max_retries", r.max_retries)?,
            retry_base_delay,
            retry_max_delay,
            retry_budget_ratio: r.budget_ratio,
            retry_budget_min_per_sec: non_negative(
                "retry.budget_min_per_sec",
                r.budget_min_per_sec,
            )?,
            hedge_after: optional("retry.hedge_after_ms", r.hedge_after_ms)?,
            breaker_failure_threshold: at_least(
                "breaker.failure_threshold",
                c.breaker.failure_threshold,
                1,
            )?,
            breaker_open: positive_ms("breaker.open_ms", c.breaker.open_ms)?,
            slow_call_threshold: optional(
                "breaker.slow_call_threshold_ms",
                c.breaker.slow_call_threshold_ms,
            )?,
            health_path: path.clone(),
            health_check_interval: positive_ms("health.interval_ms", c.health.interval_ms)?,
            probe_in_background: c.health.in_background,
            security: super::SecuritySettings::default(),
        })
    }

    /// Adds the checked `security` group (validated last, so a bad number is reported first).
    pub(crate) fn with_security(mut self, c: &super::SecurityConfig) -> Result<Self, ApiError> {
        self.security = super::SecuritySettings::from_config(c, &self.backends)?;
        Ok(self)
    }
}
