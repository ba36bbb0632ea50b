//! The network layer: backends and their choice ([`select`]), breakers ([`breaker`]), what is
//! retried and how long to wait ([`retry`], pure), hedging ([`hedge`]), the wire ([`transport`]),
//! background probes ([`health`]), and the one attempt loop that acts on all of them
//! ([`attempt`]). [`Network`] is the handle the features above get: its fields are private, and it
//! offers a few narrow operations — run a plain request, run any [`attempt::Exchange`] through the
//! loop, build a call's headers, follow reachability.

pub(crate) mod attempt;
mod auth;
mod breaker;
mod conditions;
mod config;
mod decode;
mod health;
mod hedge;
mod record;
mod request;
pub(crate) mod retry;
mod security;
mod select;
#[cfg(test)]
mod tests;
pub(crate) mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use reqwest::header::{HeaderMap, HeaderName};

pub(crate) use conditions::Conditions;
pub use config::{
    AuthConfig, BreakerConfig, HealthConfig, LimitsConfig, RetryConfig, TimeoutConfig,
};
pub(crate) use config::{NetConfig, NetSettings};
pub(crate) use security::SecuritySettings;
pub use security::{CertificatePin, SecurityConfig};
pub(crate) use select::Backend;
pub use select::BackendStatus;

use crate::error::ApiError;
use crate::events::{Counters, EventBus, StatusCounters, StatusEvent};
use crate::http::{idempotency_header, parse_headers};
use crate::store::Identity;
use crate::types::{ApiRequest, ApiResponse, AppState, Authenticator, HeaderProvider, HttpMethod};
use auth::Auth;
use retry::RetryBudget;
use select::BackendSet;
use transport::{HttpTransport, Transport};

/// How many backoff rounds a plain request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rounds {
    /// The configured `retry.max_retries`.
    Configured,
    /// One pass over the backends (failover, no backoff): the offline queue backs off itself.
    OnePass,
}

type Jitter = Box<dyn Fn() -> f64 + Send + Sync>;

/// One client's network layer.
pub(crate) struct Network {
    settings: NetSettings,
    backends: Arc<BackendSet>,
    transport: Arc<dyn Transport>,
    /// The reqwest client behind the real transport (uploads stream bodies through it).
    http: Option<reqwest::Client>,
    /// This client's TLS (trust and pins), shared by HTTPS and WSS; `Err`: rustls could not be
    /// set up (only `http`/`ws` work).
    tls: Result<crate::tls::Tls, String>,
    counters: Arc<Counters>,
    events: Arc<EventBus>,
    budget: Mutex<RetryBudget>,
    online: AtomicBool,
    /// Publishes reachability changes to long-lived tasks (queue replay, WebSocket reconnect).
    online_watch: tokio::sync::watch::Sender<bool>,
    /// The attempt listener (records of every plain request's attempts).
    recorder: record::Recorder,
    /// Reachability, metering and the app's life cycle together: see [`Network::conditions`].
    conditions: tokio::sync::watch::Sender<Conditions>,
    header_provider: RwLock<Option<Arc<dyn HeaderProvider>>>,
    /// The authenticator and each scope's credentials (in memory only).
    auth: Arc<Auth>,
    /// The app's current user scope: the header provider is asked for it unless a caller (the
    /// queue's replay) names another.
    identity: Arc<Identity>,
    /// Uniform in `[0, 1)`: backoff jitter (injectable for deterministic tests).
    jitter: Jitter,
    /// Per backend index: no retry before this instant (the last `Retry-After` on 429/503 that
    /// ended a call). The queue's replay reschedules no sooner.
    retry_not_before: Mutex<std::collections::HashMap<usize, Instant>>,
}

impl Network {
    /// The real network: reqwest over the crate's TLS configuration.
    pub(crate) fn new(
        settings: NetSettings,
        events: Arc<EventBus>,
        counters: Arc<Counters>,
    ) -> Result<Self, ApiError> {
        let tls = crate::tls::Tls::new(&settings.security.tls);
        if let Err(e) = &tls {
            if !settings.security.tls.pins.is_empty() {
                // Pins asked for but no TLS: never fall back to something that skips them.
                return Err(ApiError::Internal {
                    reason: format!("TLS setup with certificate pins failed: {e}"),
                });
            }
        }
        let transport = HttpTransport::new(
            settings.connect_timeout,
            tls.as_ref().ok(),
            settings.security.sensitive_query_params.clone(),
            counters.clone(),
        )?;
        let http = transport.client().clone();
        let mut net = Self::with_transport(
            settings,
            events,
            counters,
            Arc::new(transport),
            Box::new(fastrand::f64),
        );
        net.http = Some(http);
        net.tls = tls;
        Ok(net)
    }

    /// A network over any transport and jitter source (unit tests script both).
    pub(crate) fn with_transport(
        settings: NetSettings,
        events: Arc<EventBus>,
        counters: Arc<Counters>,
        transport: Arc<dyn Transport>,
        jitter: Jitter,
    ) -> Self {
        let backends = Arc::new(BackendSet::new(
            &settings.backends,
            settings.breaker_failure_threshold,
            settings.breaker_open,
            events.clone(),
        ));
        let budget = RetryBudget::new(
            settings.retry_budget_ratio,
            settings.retry_budget_min_per_sec,
            Instant::now(),
        );
        let auth = Arc::new(Auth::new(settings.auth_timeout));
        Network {
            settings,
            backends,
            transport,
            http: None,
            tls: Err("no TLS over a scripted transport".into()),
            counters,
            events,
            budget: Mutex::new(budget),
            online: AtomicBool::new(true),
            online_watch: tokio::sync::watch::Sender::new(true),
            conditions: tokio::sync::watch::Sender::new(Conditions::default()),
            recorder: record::Recorder::default(),
            header_provider: RwLock::new(None),
            auth,
            identity: Arc::default(),
            jitter,
            retry_not_before: Mutex::default(),
        }
    }

    /// The checked network settings.
    pub(crate) fn settings(&self) -> &NetSettings {
        &self.settings
    }

    pub(crate) fn backends(&self) -> &Arc<BackendSet> {
        &self.backends
    }

    /// Number of configured backends.
    pub(crate) fn backend_count(&self) -> usize {
        self.backends.len()
    }

    /// Backend `i`.
    pub(crate) fn backend(&self, i: usize) -> &Backend {
        self.backends.get(i)
    }

    /// The WebSocket TLS config: the same trust and pins as HTTPS.
    pub(crate) fn ws_tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls
            .as_ref()
            .map(|t| t.ws_config())
            .map_err(Clone::clone)
    }

    /// Query parameter names whose values are never shown (lower case).
    pub(crate) fn sensitive_query_params(&self) -> &[String] {
        &self.settings.security.sensitive_query_params
    }

    /// Reports a certificate pin mismatch on `backend` (an event) and returns the call's error.
    pub(crate) fn pin_mismatch(&self, backend: &Backend, host: &str) -> ApiError {
        let backend = backend.name.clone();
        self.events.emit(StatusEvent::CertificatePinMismatch {
            backend: backend.clone(),
            host: host.to_string(),
        });
        ApiError::CertificatePinMismatch {
            backend,
            host: host.to_string(),
        }
    }

    /// The reqwest client for streamed bodies; `None` over a scripted transport.
    pub(crate) fn http_client(&self) -> Option<&reqwest::Client> {
        self.http.as_ref()
    }

    /// A call to backend `index` ended on a 429/503 asking to wait `after` (`Retry-After`).
    pub(crate) fn note_retry_after(&self, index: usize, after: std::time::Duration) {
        // At most a day (a far-future date must not overflow the clock).
        let until = self.now() + after.min(std::time::Duration::from_secs(86_400));
        let mut m = self
            .retry_not_before
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = m.entry(index).or_insert(until);
        *e = (*e).max(until);
    }

    /// How long the backend named `backend` asked not to be retried, from now (`None`: no wait).
    pub(crate) fn retry_wait(&self, backend: &str) -> Option<std::time::Duration> {
        let index = (0..self.settings.backends.len()).find(|&i| self.backend(i).name == backend)?;
        let until = *self
            .retry_not_before
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&index)?;
        let left = until.saturating_duration_since(self.now());
        (!left.is_zero()).then_some(left)
    }

    /// Now, on tokio's clock (paused in tests).
    pub(crate) fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    pub(crate) fn jitter(&self) -> f64 {
        (self.jitter)()
    }

    // ---- reachability ----------------------------------------------------------------------

    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::SeqCst)
    }

    /// Follows `set_network_available`: the value is the current reachability; `changed()` wakes on
    /// every change.
    pub(crate) fn subscribe_online(&self) -> tokio::sync::watch::Receiver<bool> {
        self.online_watch.subscribe()
    }

    /// Wakes (`changed()`) whenever a backend becomes healthy again.
    pub(crate) fn subscribe_recovered(&self) -> tokio::sync::watch::Receiver<u64> {
        self.backends.subscribe_recovered()
    }

    pub(crate) fn set_online(&self, available: bool) {
        if self.online.swap(available, Ordering::SeqCst) == available {
            return;
        }
        self.online_watch.send_replace(available);
        self.conditions.send_modify(|c| c.online = available);
        self.events.emit(StatusEvent::NetworkChanged { available });
        if available {
            self.backends.make_all_due();
        }
        self.backends.probe_wake.notify_one();
    }

    /// The device conditions (online, metered, foreground/background) as a watch: `borrow()` is
    /// the current value, `changed()` wakes on every change. Long-lived work that must respect
    /// them (probes, queue replay, heartbeats, resumable uploads marked "unmetered only") waits
    /// here rather than polling: `wait_for(|c| c.may_send(unmetered_only))`.
    pub(crate) fn conditions(&self) -> tokio::sync::watch::Receiver<Conditions> {
        self.conditions.subscribe()
    }

    /// The device conditions now.
    pub(crate) fn current_conditions(&self) -> Conditions {
        *self.conditions.borrow()
    }

    /// Follows `set_app_state`. Back in the foreground, every backend is due for a probe at once
    /// (the watchers — queue replay, WebSockets — do their own part on the change).
    pub(crate) fn set_app_state(&self, state: AppState) {
        let changed = self.conditions.send_if_modified(|c| {
            let changed = c.app_state != state;
            c.app_state = state;
            changed
        });
        if changed {
            log::info!("robust-api: app state {state:?}");
            if state == AppState::Foreground {
                self.backends.make_all_due();
            }
            self.backends.probe_wake.notify_one();
        }
    }

    /// Follows `set_network_metered`.
    pub(crate) fn set_metered(&self, metered: bool) {
        self.conditions.send_if_modified(|c| {
            let changed = c.metered != metered;
            c.metered = metered;
            changed
        });
    }

    // ---- status ----------------------------------------------------------------------------

    /// Every backend, in configured order.
    pub(crate) fn backend_status(&self) -> Vec<BackendStatus> {
        self.backends.snapshot(self.now())
    }

    /// Where the next request would go.
    pub(crate) fn preferred_backend(&self) -> Option<String> {
        self.backends
            .preferred(self.now())
            .map(|i| self.backends.get(i).name.clone())
    }

    pub(crate) fn counters(&self) -> StatusCounters {
        let mut c = self.counters.snapshot();
        c.attempt_records_dropped = self.recorder.dropped().min(i64::MAX as u64) as i64;
        c.log_records_dropped = crate::logs::dropped().min(i64::MAX as u64) as i64;
        c
    }

    /// Installs (replaces; `None`: removes) the listener of attempt records.
    pub(crate) fn set_attempt_listener(
        &self,
        listener: Option<Arc<dyn crate::observe::AttemptListener>>,
    ) -> Result<(), ApiError> {
        self.recorder.set(listener)
    }

    /// Stops delivering attempt records (client shutdown).
    pub(crate) fn close_recorder(&self) {
        self.recorder.close();
    }

    /// Closes every breaker.
    pub(crate) fn reset_breakers(&self) {
        self.backends.reset_all();
    }

    pub(crate) fn count_request(&self) {
        Counters::bump(&self.counters.requests);
    }

    pub(crate) fn count_failover(&self) {
        Counters::bump(&self.counters.failovers);
    }

    pub(crate) fn count_hedge(&self) {
        Counters::bump(&self.counters.hedges);
    }

    pub(crate) fn count_retry(&self) {
        Counters::bump(&self.counters.retries);
    }

    /// Records a call in the retry budget (re-sends may add a share of it).
    pub(crate) fn deposit_budget(&self) {
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deposit(self.now());
    }

    pub(crate) fn withdraw_budget(&self) -> bool {
        let ok = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_withdraw(self.now());
        if !ok {
            Counters::bump(&self.counters.budget_exhausted);
        }
        ok
    }

    // ---- calls -----------------------------------------------------------------------------

    /// Installs (replaces) the provider of per-call headers.
    pub(crate) fn set_header_provider(&self, provider: Arc<dyn HeaderProvider>) {
        *self
            .header_provider
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(provider);
    }

    /// Installs (replaces) the authenticator: every scope's credentials are asked again.
    pub(crate) fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        self.auth.set(authenticator);
    }

    /// The app has new credentials: they are asked again, and queued requests waiting for them
    /// resume.
    pub(crate) fn credentials_changed(&self) {
        self.auth.credentials_changed();
    }

    /// Should queued requests of `scope` wait for new credentials (a refresh failed, or refreshed
    /// credentials were refused)?
    pub(crate) fn credentials_blocked(&self, scope: &Option<String>) -> bool {
        self.auth.is_blocked(scope)
    }

    /// Wakes (`changed()`) when credentials may have become usable again.
    pub(crate) fn subscribe_credentials(&self) -> tokio::sync::watch::Receiver<u64> {
        self.auth.subscribe()
    }

    /// Credential refreshes started so far.
    #[allow(dead_code)]
    pub(crate) fn refresh_count(&self) -> u64 {
        self.auth.refresh_count()
    }

    /// The app's current user scope (shared with the cache and the queue).
    pub(crate) fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The headers of one call in the current user scope: see [`Network::scoped_call_headers`].
    pub(crate) async fn call_headers(
        &self,
        method: HttpMethod,
        path: &str,
        own: &HashMap<String, String>,
        idempotency_key: Option<&str>,
    ) -> Result<HeaderMap, ApiError> {
        let scope = self.identity.current();
        self.scoped_call_headers(method, path, own, idempotency_key, scope, true)
            .await
    }

    /// The final outgoing headers of a plain request for user `scope` (the header provider is
    /// asked for that scope, once): what the cache keys and `Vary`-matches on, and what
    /// [`Network::execute_with_headers`] sends.
    pub(crate) async fn outgoing_headers(
        &self,
        req: &ApiRequest,
        scope: Option<String>,
    ) -> Result<HeaderMap, ApiError> {
        self.scoped_call_headers(
            req.method,
            &req.path,
            &req.headers,
            req.idempotency_key.as_deref(),
            scope,
            !req.skip_authentication,
        )
        .await
    }

    /// The headers of one call: the client's defaults, then the request's own, then the header
    /// provider's for `scope`, then (if `authenticate`) the authenticator's credentials for
    /// `scope`, then `Idempotency-Key`.
    async fn scoped_call_headers(
        &self,
        method: HttpMethod,
        path: &str,
        own: &HashMap<String, String>,
        idempotency_key: Option<&str>,
        scope: Option<String>,
        authenticate: bool,
    ) -> Result<HeaderMap, ApiError> {
        let creds = match authenticate {
            true => self.auth.headers(&scope).await?,
            false => None,
        };
        let mut headers = self.settings.default_headers.clone();
        for (name, value) in parse_headers(own, ApiError::invalid_request)? {
            if let Some(name) = name {
                headers.insert(name, value);
            }
        }
        let provider = self
            .header_provider
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(provider) = provider {
            let fresh = ask_provider(
                provider,
                method,
                path.to_string(),
                scope,
                self.settings.header_provider_timeout,
            )
            .await?;
            merge_provided(&mut headers, &fresh)?;
        }
        if let Some(creds) = creds {
            creds.apply(&mut headers);
        }
        if let Some(key) = idempotency_key {
            headers.insert(
                HeaderName::from_static("idempotency-key"),
                idempotency_header(key)?,
            );
        }
        Ok(headers)
    }

    /// [`Network::outgoing_headers`] for a synchronous caller (the cache's thin bridge read): the
    /// header provider, if any, is asked on the calling thread — an app thread, never a runtime
    /// worker — and may block it.
    pub(crate) fn outgoing_headers_here(
        &self,
        req: &ApiRequest,
        scope: Option<String>,
    ) -> Result<HeaderMap, ApiError> {
        let mut headers = self.settings.default_headers.clone();
        for (name, value) in parse_headers(&req.headers, ApiError::invalid_request)? {
            if let Some(name) = name {
                headers.insert(name, value);
            }
        }
        let provider = self
            .header_provider
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(provider) = provider {
            let unavailable = |reason: String| ApiError::CredentialsUnavailable { reason };
            let path = req.path.clone();
            let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                provider.headers_for(req.method, path, scope)
            }));
            let fresh = match asked {
                Ok(Ok(h)) => h,
                Ok(Err(e @ ApiError::CredentialsUnavailable { .. })) => return Err(e),
                Ok(Err(e)) => return Err(unavailable(format!("the header provider failed: {e}"))),
                Err(_) => return Err(unavailable("the header provider panicked".into())),
            };
            merge_provided(&mut headers, &fresh)?;
        }
        Ok(headers)
    }

    /// Checks what a send would reject, without calling the header provider (used before a request
    /// is persisted, so nothing unsendable is queued).
    pub(crate) fn validate(&self, req: &ApiRequest) -> Result<(), ApiError> {
        request::validate(self, req)
    }

    /// Runs one plain request through the attempt loop, its headers built in the current user
    /// scope. (The features go through the cache layer, which resolves the headers itself and
    /// calls [`Network::execute_with_headers`].)
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn execute(
        &self,
        req: ApiRequest,
        rounds: Rounds,
    ) -> Result<ApiResponse, ApiError> {
        let scope = self.identity.current();
        request::execute(self, req, None, scope, rounds).await
    }

    /// Runs one plain request with headers already resolved by [`Network::outgoing_headers`] for
    /// `scope` (the header provider is not called again; after a credential refresh only the
    /// authenticator's headers are replaced).
    pub(crate) async fn execute_with_headers(
        &self,
        req: ApiRequest,
        headers: HeaderMap,
        scope: Option<String>,
        rounds: Rounds,
    ) -> Result<ApiResponse, ApiError> {
        request::execute(self, req, Some(headers), scope, rounds).await
    }

    /// [`Network::execute_with_headers`], but a final 4xx answer comes back as a response (with
    /// its headers) instead of `ApiError::Http`: the cache layer decides whether to store it and
    /// turns it into the error itself. The authenticator's 401 → refresh → re-send applies as for
    /// [`Network::execute_with_headers`]; an expired-credentials answer is never kept.
    pub(crate) async fn execute_keeping_final_4xx(
        &self,
        req: ApiRequest,
        headers: HeaderMap,
        scope: Option<String>,
        rounds: Rounds,
    ) -> Result<ApiResponse, ApiError> {
        request::execute_keeping(self, req, Some(headers), scope, rounds, true).await
    }

    /// Runs the background health probes until the runtime stops.
    pub(crate) async fn run_health_probes(self: Arc<Self>) {
        health::run(self).await
    }
}

/// Adds the header provider's headers (they override the others).
fn merge_provided(
    headers: &mut HeaderMap,
    fresh: &HashMap<String, String>,
) -> Result<(), ApiError> {
    for (name, value) in parse_headers(fresh, |r| ApiError::InvalidRequest {
        reason: format!("header provider: {r}"),
    })? {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    Ok(())
}

/// Asks the header provider, on a blocking thread of its own (foreign code may block, or even make
/// a request through this client, without taking an async worker), within `timeout`. Every way it
/// can fail — an error, a throw or panic, no answer in time — is `CredentialsUnavailable`.
async fn ask_provider(
    provider: Arc<dyn HeaderProvider>,
    method: HttpMethod,
    path: String,
    scope: Option<String>,
    timeout: std::time::Duration,
) -> Result<HashMap<String, String>, ApiError> {
    let unavailable = |reason: String| ApiError::CredentialsUnavailable { reason };
    let asked = tokio::task::spawn_blocking(move || provider.headers_for(method, path, scope));
    match tokio::time::timeout(timeout, asked).await {
        Ok(Ok(Ok(headers))) => Ok(headers),
        Ok(Ok(Err(e @ ApiError::CredentialsUnavailable { .. }))) => Err(e),
        Ok(Ok(Err(e))) => Err(unavailable(format!("the header provider failed: {e}"))),
        Ok(Err(join)) => Err(unavailable(match join.try_into_panic() {
            Ok(panic) => format!(
                "the header provider panicked: {}",
                crate::runtime::panic_message(&*panic)
            ),
            Err(e) => format!("the header provider did not finish: {e}"),
        })),
        Err(_) => Err(unavailable(format!(
            "the header provider did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
