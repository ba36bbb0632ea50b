//! The request pipeline: the order of the steps, and nothing else. Each step's rules live in its own
//! module — selection in [`select`], the breaker in [`breaker`], what is retried and how long to wait
//! in [`retry`], hedging in [`hedge`], the wire in [`transport`], background probes in [`health`].

pub mod breaker;
pub mod health;
pub mod hedge;
pub mod retry;
pub mod select;
pub mod transport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName};
use reqwest::Url;

use crate::config::{parse_headers, Settings};
use crate::error::ApiError;
use crate::status::{Counters, EventBus, StatusEvent};
use crate::types::{ApiRequest, ApiResponse, HttpMethod};
use retry::{RetryBudget, Verdict};
use select::{BackendSet, Permit};
use transport::{AttemptError, AttemptErrorKind, Outgoing, RawResponse, Transport};

/// Shared state of one client's pipeline.
pub(crate) struct Pipeline {
    pub settings: Settings,
    pub backends: Arc<BackendSet>,
    pub transport: Transport,
    pub counters: Arc<Counters>,
    pub events: Arc<EventBus>,
    budget: Mutex<RetryBudget>,
    network: AtomicBool,
    /// Publishes reachability changes to long-lived tasks (queue replay, WebSocket reconnect).
    network_watch: tokio::sync::watch::Sender<bool>,
    header_provider: std::sync::RwLock<Option<Arc<dyn crate::types::HeaderProvider>>>,
}

/// One finished attempt.
pub(crate) struct Attempt {
    index: usize,
    result: Result<RawResponse, AttemptError>,
    verdict: Verdict,
}

impl Attempt {
    /// A response the call ends with (success or a final 4xx).
    pub(crate) fn is_conclusive(&self) -> bool {
        !matches!(self.verdict, Verdict::Retryable { .. })
    }
}

/// A request checked and converted once, before the first attempt.
struct Prepared {
    method: HttpMethod,
    /// The full URL per backend, by index.
    urls: Vec<Url>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Duration,
    may_resend: bool,
}

/// What the call knows about its failures so far.
#[derive(Default)]
struct Failures {
    last: Option<Attempt>,
    attempts: u32,
    any_sent: bool,
    only_timeouts: bool,
    /// The request could have been sent to another backend (so one failed attempt is not "the"
    /// answer: the others were fenced off).
    may_resend: bool,
}

impl Pipeline {
    pub(crate) fn new(
        settings: Settings,
        events: Arc<EventBus>,
        counters: Arc<Counters>,
    ) -> Result<Self, ApiError> {
        let backends = Arc::new(BackendSet::new(
            &settings.backends,
            settings.breaker_failure_threshold,
            settings.breaker_open,
            events.clone(),
        ));
        let transport = Transport::new(settings.connect_timeout)?;
        let budget = RetryBudget::new(
            settings.retry_budget_ratio,
            settings.retry_budget_min_per_sec,
            Instant::now(),
        );
        Ok(Pipeline {
            settings,
            backends,
            transport,
            counters,
            events,
            budget: Mutex::new(budget),
            network: AtomicBool::new(true),
            network_watch: tokio::sync::watch::Sender::new(true),
            header_provider: std::sync::RwLock::new(None),
        })
    }

    pub(crate) fn network_available(&self) -> bool {
        self.network.load(Ordering::SeqCst)
    }

    /// Follows `set_network_available`: the value is the current reachability; `changed()` wakes on
    /// every change.
    #[allow(dead_code)] // used by the queue and WebSocket modules as they land
    pub(crate) fn subscribe_network(&self) -> tokio::sync::watch::Receiver<bool> {
        self.network_watch.subscribe()
    }

    pub(crate) fn set_network_available(&self, available: bool) {
        if self.network.swap(available, Ordering::SeqCst) == available {
            return;
        }
        self.network_watch.send_replace(available);
        self.events.emit(StatusEvent::NetworkChanged { available });
        if available {
            self.backends.make_all_due();
        }
        self.backends.probe_wake.notify_one();
    }

    fn withdraw_budget(&self) -> bool {
        let ok = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_withdraw(Instant::now());
        if !ok {
            Counters::bump(&self.counters.budget_exhausted);
        }
        ok
    }

    fn prepare(&self, req: &ApiRequest) -> Result<Prepared, ApiError> {
        let urls = (0..self.backends.len())
            .map(|i| transport::join_url(&self.backends.get(i).url, &req.path, &req.query))
            .collect::<Result<Vec<_>, _>>()?;
        let headers = self.call_headers(
            req.method,
            &req.path,
            &req.headers,
            req.idempotency_key.as_deref(),
        )?;
        let timeout = self.attempt_timeout(req)?;
        Ok(Prepared {
            method: req.method,
            urls,
            headers,
            body: req.body.clone(),
            timeout,
            may_resend: req.may_resend(),
        })
    }

    /// The headers of one call: the client's defaults, then the request's own, then the header
    /// provider's (fresh credentials), then `Idempotency-Key`. Also used by uploads.
    pub(crate) fn call_headers(
        &self,
        method: HttpMethod,
        path: &str,
        own: &std::collections::HashMap<String, String>,
        idempotency_key: Option<&str>,
    ) -> Result<HeaderMap, ApiError> {
        let mut headers = self.settings.default_headers.clone();
        for (name, value) in parse_headers(own, ApiError::invalid_request)? {
            if let Some(name) = name {
                headers.insert(name, value);
            }
        }
        let provider = self.header_provider.read().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(provider) = provider {
            let fresh = provider.headers_for(method, path.to_string());
            for (name, value) in parse_headers(&fresh, |r| ApiError::InvalidRequest {
                reason: format!("header provider: {r}"),
            })? {
                if let Some(name) = name {
                    headers.insert(name, value);
                }
            }
        }
        if let Some(key) = idempotency_key {
            headers.insert(
                HeaderName::from_static("idempotency-key"),
                transport::idempotency_header(key)?,
            );
        }
        Ok(headers)
    }

    /// One attempt on the permitted backend; reports the outcome to its breaker.
    async fn attempt(&self, permit: Permit, p: &Prepared) -> Attempt {
        let index = permit.index;
        let started = Instant::now();
        let out = Outgoing {
            method: p.method,
            url: p.urls[index].clone(),
            headers: &p.headers,
            body: p.body.as_deref(),
            timeout: p.timeout,
        };
        let result = self.transport.send(out).await;
        let latency = started.elapsed();
        let verdict = retry::classify(&result);
        match (&verdict, &result) {
            (Verdict::Success | Verdict::Final, _) => match self.settings.slow_call_threshold {
                Some(limit) if latency > limit => {
                    permit.failure(format!("slow call: {} ms", latency.as_millis()), false)
                }
                _ => permit.success(latency),
            },
            (
                Verdict::Retryable {
                    breaker_failure: true,
                    ..
                },
                Ok(r),
            ) => permit.failure(format!("HTTP {}", r.status), false),
            (
                Verdict::Retryable {
                    breaker_failure: true,
                    ..
                },
                Err(e),
            ) => permit.unreachable(e.to_string(), false),
            (Verdict::Retryable { .. }, r) => permit.neutral(match r {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => e.to_string(),
            }),
        }
        Attempt {
            index,
            result,
            verdict,
        }
    }

    /// Checks what `prepare` would reject, without calling the header provider (used before a
    /// request is persisted, so nothing unsendable is queued).
    pub(crate) fn validate(&self, req: &ApiRequest) -> Result<(), ApiError> {
        transport::join_url(&self.backends.get(0).url, &req.path, &req.query)?;
        parse_headers(&req.headers, ApiError::invalid_request)?;
        if let Some(key) = &req.idempotency_key {
            transport::idempotency_header(key)?;
        }
        self.attempt_timeout(req).map(|_| ())
    }

    /// The request's per-attempt timeout, or the configured one.
    fn attempt_timeout(&self, req: &ApiRequest) -> Result<Duration, ApiError> {
        match req.timeout_ms {
            Some(0) => Err(ApiError::invalid_request("timeout_ms must be greater than 0")),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(self.settings.request_timeout),
        }
    }

    /// Installs (replaces) the provider of per-call headers.
    pub(crate) fn set_header_provider(&self, provider: Arc<dyn crate::types::HeaderProvider>) {
        *self.header_provider.write().unwrap_or_else(PoisonError::into_inner) = Some(provider);
    }

    /// Runs one call through selection, breakers, retries and hedging.
    pub(crate) async fn execute(&self, req: ApiRequest) -> Result<ApiResponse, ApiError> {
        self.execute_with(req, self.settings.max_retries).await
    }

    /// One pass over the backends (failover, no backoff rounds): the offline queue's replay does
    /// its own, longer backoff between passes.
    pub(crate) async fn execute_once(&self, req: ApiRequest) -> Result<ApiResponse, ApiError> {
        self.execute_with(req, 0).await
    }

    async fn execute_with(&self, req: ApiRequest, max_retries: u32) -> Result<ApiResponse, ApiError> {
        let started = Instant::now();
        Counters::bump(&self.counters.requests);
        let p = self.prepare(&req)?;
        if !self.network_available() {
            return Err(ApiError::Offline);
        }
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deposit(started);
        let mut f = Failures {
            only_timeouts: true,
            may_resend: p.may_resend,
            ..Failures::default()
        };
        let mut round = 0u32;
        loop {
            let mut tried: Vec<usize> = Vec::new();
            let mut retry_after: Option<Duration> = None;
            while let Some(permit) = self.backends.acquire_best(Instant::now(), &tried) {
                if f.attempts > 0 {
                    if f.any_sent && !p.may_resend {
                        return Err(self.final_error(f, p.timeout));
                    }
                    if !self.withdraw_budget() {
                        return Err(self.final_error(f, p.timeout));
                    }
                    if !tried.is_empty() {
                        Counters::bump(&self.counters.failovers);
                    }
                }
                tried.push(permit.index);
                f.attempts += 1;
                let finished = match self.settings.hedge_after {
                    Some(delay) if p.may_resend => {
                        let (tried, attempts) = (&mut tried, &mut f.attempts);
                        hedge::race(self.attempt(permit, &p), delay, || {
                            let hedge = self.backends.acquire_best(Instant::now(), tried)?;
                            if !self.withdraw_budget() {
                                return None;
                            }
                            Counters::bump(&self.counters.hedges);
                            tried.push(hedge.index);
                            *attempts += 1;
                            Some(self.attempt(hedge, &p))
                        })
                        .await
                    }
                    _ => vec![self.attempt(permit, &p).await],
                };
                for a in finished {
                    match &a.result {
                        Err(e) if e.kind == AttemptErrorKind::Connect => f.only_timeouts = false,
                        Err(e) if e.kind == AttemptErrorKind::Timeout => f.any_sent = true,
                        _ => (f.any_sent, f.only_timeouts) = (true, false),
                    }
                    let Attempt {
                        index,
                        result,
                        verdict,
                    } = a;
                    match (verdict, result) {
                        (Verdict::Success, Ok(r)) => {
                            return Ok(self.response(index, r, f.attempts, started))
                        }
                        (Verdict::Final, result) => {
                            let last = Some(Attempt {
                                index,
                                result,
                                verdict: Verdict::Final,
                            });
                            return Err(self.final_error(Failures { last, ..f }, p.timeout));
                        }
                        (verdict, result) => {
                            if let Verdict::Retryable {
                                retry_after: Some(ra),
                                ..
                            } = verdict
                            {
                                retry_after = retry_after.max(Some(ra));
                            }
                            f.last = Some(Attempt {
                                index,
                                result,
                                verdict,
                            });
                        }
                    }
                }
            }
            if f.last.is_none() {
                return Err(ApiError::AllBackendsUnavailable {
                    attempts: 0,
                    last_error: "every backend's circuit breaker is open; nothing was sent".into(),
                });
            }
            if (f.any_sent && !p.may_resend) || round >= max_retries {
                return Err(self.final_error(f, p.timeout));
            }
            let backoff = retry::backoff_delay(
                round,
                self.settings.retry_base_delay,
                self.settings.retry_max_delay,
                fastrand::f64(),
            );
            let Some(delay) = retry::next_delay(backoff, retry_after, p.timeout) else {
                return Err(self.final_error(f, p.timeout));
            };
            tokio::time::sleep(delay).await;
            if !self.network_available() {
                return Err(ApiError::Offline);
            }
            round += 1;
            Counters::bump(&self.counters.retries);
        }
    }

    fn response(
        &self,
        index: usize,
        r: RawResponse,
        attempts: u32,
        started: Instant,
    ) -> ApiResponse {
        ApiResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
            backend: self.backends.get(index).name.clone(),
            attempts,
            elapsed_ms: started.elapsed().as_millis() as u64,
            from_cache: false,
            stale: false,
            age_ms: None,
            queued: None,
        }
    }

    /// The error a failed call reports: the last answer, or what kind of failure it was.
    fn final_error(&self, f: Failures, timeout: Duration) -> ApiError {
        let Some(last) = f.last else {
            return ApiError::AllBackendsUnavailable {
                attempts: f.attempts,
                last_error: "no attempt made".into(),
            };
        };
        let backend = self.backends.get(last.index).name.clone();
        match last.result {
            Ok(r) => ApiError::Http {
                status: r.status,
                body: r.body,
                backend,
            },
            Err(e) if f.only_timeouts && e.kind == AttemptErrorKind::Timeout => ApiError::Timeout {
                backend,
                timeout_ms: timeout.as_millis() as u64,
            },
            Err(e) if f.attempts == 1 && !f.may_resend => ApiError::Transport {
                backend,
                reason: e.to_string(),
            },
            Err(e) => ApiError::AllBackendsUnavailable {
                attempts: f.attempts,
                last_error: format!("{backend}: {e}"),
            },
        }
    }
}
