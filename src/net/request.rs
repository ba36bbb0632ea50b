//! Plain requests: checked and converted once, then sent through the attempt loop with an
//! [`Exchange`] that classifies each response by the rules in [`super::retry`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Url;

use super::attempt::{self, Exchange, Failed, Health, Plan, Step, Stop, Tried};
use super::auth::{self, AuthStep};
use super::record::Wire;
use super::retry::{classify, Verdict};
use super::select::Backend;
use super::transport::{AttemptError, AttemptErrorKind, Outgoing, RawResponse};
use super::{Network, Rounds};
use crate::defaults::{ms_i32, saturating_i32};
use crate::error::ApiError;
use crate::http::{check_path, header_value, idempotency_header, join_url, parse_headers};
use crate::observe::AttemptOutcome;
use crate::types::{ApiRequest, ApiResponse, HttpMethod, QueryParam};

type Outcome = Result<RawResponse, AttemptError>;

/// A request checked and converted once, before the first attempt.
struct Prepared {
    method: HttpMethod,
    /// The request's path (no query), for attempt records.
    path: String,
    /// The request's query parameters.
    query: Vec<QueryParam>,
    /// The full URL per backend, by index, joined when that backend is first tried (a call
    /// usually tries one of them; the path was validated against the first already).
    urls: Vec<OnceLock<Url>>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Duration,
    max_body: u64,
    may_resend: bool,
}

/// The request's response size limit, or the configured one.
fn max_body(net: &Network, req: &ApiRequest) -> Result<u64, ApiError> {
    match req.max_response_bytes {
        Some(n) if n <= 0 => Err(ApiError::invalid_request(
            "max_response_bytes must be greater than 0",
        )),
        Some(n) => Ok(n as u64),
        None => Ok(net.settings.max_response_bytes),
    }
}

/// The request's per-attempt timeout, or the configured one.
fn attempt_timeout(net: &Network, req: &ApiRequest) -> Result<Duration, ApiError> {
    match req.timeout_ms {
        Some(ms) if ms <= 0 => Err(ApiError::invalid_request(
            "timeout_ms must be greater than 0",
        )),
        Some(ms) => Ok(Duration::from_millis(ms as u64)),
        None => Ok(net.settings.request_timeout),
    }
}

pub(super) fn validate(net: &Network, req: &ApiRequest) -> Result<(), ApiError> {
    check_path(&net.backend(0).url, &req.path, &req.query)?;
    parse_headers(&req.headers, ApiError::invalid_request)?;
    if let Some(key) = &req.idempotency_key {
        idempotency_header(key)?;
    }
    one_idempotency_key(req)?;
    max_body(net, req)?;
    attempt_timeout(net, req).map(|_| ())
}

/// A key given both as `idempotency_key` and as an `Idempotency-Key` header must be the same.
fn one_idempotency_key(req: &ApiRequest) -> Result<(), ApiError> {
    match &req.idempotency_key {
        Some(key) if header_value(&req.headers, "idempotency-key").is_some_and(|h| h != key) => {
            Err(ApiError::invalid_request(
                "the Idempotency-Key header and idempotency_key differ: give the key once",
            ))
        }
        _ => Ok(()),
    }
}

/// `headers`: the final outgoing headers if the caller resolved them (the cache layer keys on
/// them); otherwise they are built here, in the current user scope.
async fn prepare(
    net: &Network,
    req: &ApiRequest,
    headers: Option<HeaderMap>,
) -> Result<Prepared, ApiError> {
    one_idempotency_key(req)?;
    let urls = (0..net.backend_count()).map(|_| OnceLock::new()).collect();
    let headers = match headers {
        Some(h) => h,
        None => {
            net.call_headers(
                req.method,
                &req.path,
                &req.headers,
                req.idempotency_key.as_deref(),
            )
            .await?
        }
    };
    Ok(Prepared {
        method: req.method,
        path: req.path.clone(),
        query: req.query.clone(),
        urls,
        headers,
        body: req.body.clone(),
        timeout: attempt_timeout(net, req)?,
        max_body: max_body(net, req)?,
        may_resend: req.may_resend(),
    })
}

/// One plain request's attempts.
struct Plain<'a> {
    net: &'a Network,
    p: Prepared,
    /// Every attempt that reached a server timed out (so the call is a `Timeout`).
    only_timeouts: AtomicBool,
}

impl Plain<'_> {
    /// The full URL on backend `index`.
    fn url(&self, index: usize) -> Result<Url, ApiError> {
        let slot = &self.p.urls[index];
        if let Some(url) = slot.get() {
            return Ok(url.clone());
        }
        let url = join_url(&self.net.backend(index).url, &self.p.path, &self.p.query)?;
        Ok(slot.get_or_init(|| url).clone())
    }
}

impl Exchange for Plain<'_> {
    type Value = Outcome;

    fn describe(&self) -> Option<(HttpMethod, &str)> {
        Some((self.p.method, &self.p.path))
    }

    fn wire(&self, value: &Outcome) -> Option<Wire> {
        let body = self.p.body.as_ref().map_or(0, |b| b.len() as u64);
        Some(match value {
            Ok(r) => Wire {
                outcome: AttemptOutcome::Response,
                status: Some(r.status),
                head_after: r.head_after,
                reused: r.reused,
                bytes_sent: body,
                bytes_received: r.body.len() as u64,
                error: None,
            },
            Err(e) => Wire {
                outcome: match e.kind {
                    AttemptErrorKind::Connect => AttemptOutcome::ConnectFailed,
                    AttemptErrorKind::Timeout => AttemptOutcome::TimedOut,
                    AttemptErrorKind::Broken => AttemptOutcome::Broken,
                    AttemptErrorKind::PinMismatch => AttemptOutcome::PinMismatch,
                    AttemptErrorKind::TooLarge => AttemptOutcome::TooLarge,
                },
                status: None,
                head_after: None,
                reused: None,
                bytes_sent: if e.kind == AttemptErrorKind::Connect {
                    0
                } else {
                    body
                },
                bytes_received: 0,
                error: Some(e.to_string()),
            },
        })
    }

    async fn send(&self, index: usize, _backend: &Backend) -> Result<Tried<Outcome>, ApiError> {
        let started = self.net.now();
        let out = Outgoing {
            method: self.p.method,
            url: self.url(index)?,
            headers: &self.p.headers,
            body: self.p.body.as_deref(),
            timeout: self.p.timeout,
            max_body: self.p.max_body,
            truncate_body: false,
        };
        let result = self.net.transport.send(out).await;
        if let Err(e) = &result {
            if e.kind == AttemptErrorKind::PinMismatch {
                // Final for the whole call: never failed over to a path that skips the pin.
                return Err(self.net.pin_mismatch(self.net.backend(index), &e.detail));
            }
            if e.kind == AttemptErrorKind::TooLarge {
                // Final: another backend or a retry would send the same body again.
                return Err(ApiError::ResponseTooLarge {
                    backend: self.net.backend(index).name.clone(),
                    limit_bytes: saturating_i32(self.p.max_body),
                });
            }
        }
        let latency = self.net.now().saturating_duration_since(started);
        let sent = match &result {
            Err(e) if e.kind == AttemptErrorKind::Connect => {
                self.only_timeouts.store(false, Ordering::Relaxed);
                false
            }
            Err(e) if e.kind == AttemptErrorKind::Timeout => true,
            _ => {
                self.only_timeouts.store(false, Ordering::Relaxed);
                true
            }
        };
        let detail = |r: &Outcome| match r {
            Ok(r) => format!("HTTP {}", r.status),
            Err(e) => e.to_string(),
        };
        let (step, health) = match classify(&result) {
            Verdict::Success => (Step::Success, Health::Success(latency)),
            Verdict::Final => (Step::Final, Health::Success(latency)),
            Verdict::Retryable {
                breaker_failure,
                unsent,
                retry_after,
            } => {
                let step = if unsent {
                    Step::FailOver
                } else {
                    Step::Retry { retry_after }
                };
                let health = match (&result, breaker_failure) {
                    (Ok(_), true) => Health::Failure(detail(&result)),
                    (Err(_), true) => Health::Unreachable(detail(&result)),
                    (_, false) => Health::Neutral(detail(&result)),
                };
                (step, health)
            }
        };
        Ok(Tried {
            value: result,
            step,
            health,
            sent,
        })
    }
}

pub(super) async fn execute(
    net: &Network,
    req: ApiRequest,
    headers: Option<HeaderMap>,
    scope: Option<String>,
    rounds: Rounds,
) -> Result<ApiResponse, ApiError> {
    execute_keeping(net, req, headers, scope, rounds, false).await
}

/// [`execute`]; with `keep_final_4xx` a final 4xx answer (not retried: `404`, `410`, …) comes back
/// as a response, headers included, instead of `ApiError::Http` (the cache may store it). The
/// authenticator's refresh and re-send apply first, as for [`execute`]; a status that means
/// "credentials expired" (`401`, `auth_expired_statuses`) is never kept: it stays an error.
pub(super) async fn execute_keeping(
    net: &Network,
    req: ApiRequest,
    headers: Option<HeaderMap>,
    scope: Option<String>,
    rounds: Rounds,
    keep_final_4xx: bool,
) -> Result<ApiResponse, ApiError> {
    let started = net.now();
    net.count_request();
    let mut req = req;
    req.adopt_idempotency_header();
    let p = prepare(net, &req, headers).await?;
    if !net.is_online() {
        return Err(ApiError::Offline);
    }
    net.deposit_budget();
    let s = &net.settings;
    let plan = Plan {
        max_rounds: match rounds {
            Rounds::Configured => s.max_retries,
            Rounds::OnePass => 0,
        },
        // Every attempt that reached a server is a send: at most the first plus `max_retries`,
        // however many backends there are (connect failures move on for free).
        max_sends: s.max_retries.saturating_add(1),
        may_resend: p.may_resend,
        // Only methods idempotent by definition are raced: a key makes a POST safe to send again
        // after a failure, not twice at once (the second copy meets "key in progress").
        hedge_after: s.hedge_after.filter(|_| p.method.is_idempotent()),
        retry_after_cap: p.timeout,
        spend_budget: true,
        slow_call: s.slow_call_threshold,
        ..Plan::new(s.retry_base_delay, s.retry_max_delay)
    };
    let authenticated = !req.skip_authentication && net.auth.is_set();
    let mut ex = Plain {
        net,
        p,
        only_timeouts: AtomicBool::new(true),
    };
    let response = |r: RawResponse, index: usize, attempts: u32| ApiResponse {
        status: r.status as i32,
        headers: r.headers,
        body: r.body,
        backend: net.backend(index).name.clone(),
        attempts: attempts as i32,
        elapsed_ms: ms_i32(net.now().saturating_duration_since(started)),
        from_cache: false,
        stale: false,
        age_ms: None,
        queued: None,
    };
    let mut result = attempt::run(net, &ex, &plan).await;
    let mut earlier_attempts = 0;
    let mut refreshed = false;
    // Credentials expired: one refresh (shared with every call refused at the same time), then
    // the call runs again, once, with the new credentials — whatever its method, since a request
    // refused for its credentials was not executed.
    while let Some((status, index)) = refused_with(&result) {
        let backend = || net.backend(index).name.clone();
        match auth::after_answer(status, &s.auth_expired_statuses, authenticated, refreshed) {
            AuthStep::Keep => break,
            AuthStep::Refused => {
                net.auth.refused(&scope);
                return Err(ApiError::Unauthorized {
                    status: i32::from(status),
                    backend: backend(),
                    refresh_failed: false,
                    reason: "the server refused the refreshed credentials too".into(),
                });
            }
            AuthStep::Refresh => {}
        }
        let creds = match net.auth.refreshed(&scope, &ex.p.headers).await {
            Ok(creds) => creds,
            Err(reason) => {
                return Err(ApiError::Unauthorized {
                    status: i32::from(status),
                    backend: backend(),
                    refresh_failed: true,
                    reason,
                })
            }
        };
        creds.apply(&mut ex.p.headers);
        ex.only_timeouts.store(true, Ordering::Relaxed);
        earlier_attempts += match &result {
            Err(f) => f.attempts,
            Ok(d) => d.attempts,
        };
        refreshed = true;
        result = attempt::run(net, &ex, &plan).await;
    }
    match result {
        Ok(mut done) => {
            done.attempts += earlier_attempts;
            let r = done.value.map_err(|e| ApiError::Internal {
                reason: format!("a failed attempt was classified as success: {e}"),
            })?;
            Ok(response(r, done.index, done.attempts))
        }
        Err(Failed {
            stop: Stop::Final,
            last: Some((index, Ok(r))),
            attempts,
            ..
        }) if keep_final_4xx
            && (400..500).contains(&r.status)
            && !matches!(r.status, 401 | 429)
            && !s.auth_expired_statuses.contains(&r.status) =>
        {
            Ok(response(r, index, attempts + earlier_attempts))
        }
        Err(mut f) => {
            f.attempts += earlier_attempts;
            Err(final_error(net, &ex, f))
        }
    }
}

/// The status and backend of a call that ended on a final answer (a 4xx), if it did.
fn refused_with(result: &Result<attempt::Done<Outcome>, Failed<Outcome>>) -> Option<(u16, usize)> {
    match result {
        Err(Failed {
            stop: Stop::Final,
            last: Some((index, Ok(r))),
            ..
        }) => Some((r.status, *index)),
        _ => None,
    }
}

/// The error a failed call reports: the last answer, or what kind of failure it was.
fn final_error(net: &Network, ex: &Plain<'_>, f: Failed<Outcome>) -> ApiError {
    let attempts = f.attempts as i32;
    match f.stop {
        Stop::Offline => return ApiError::Offline,
        Stop::Aborted(e) => return e,
        Stop::NothingAdmissible => {
            return ApiError::AllBackendsUnavailable {
                attempts,
                last_error: "every backend's circuit breaker is open; nothing was sent".into(),
            }
        }
        Stop::Final | Stop::Exhausted | Stop::RetryAfterTooLong => {}
    }
    let Some((index, last)) = f.last else {
        return ApiError::AllBackendsUnavailable {
            attempts,
            last_error: "no attempt made".into(),
        };
    };
    let backend = net.backend(index).name.clone();
    match last {
        Ok(r) => {
            if let (Some(after), 429 | 503) = (r.retry_after, r.status) {
                net.note_retry_after(index, after);
            }
            ApiError::Http {
                status: r.status as i32,
                body: r.body,
                backend,
            }
        }
        Err(e)
            if ex.only_timeouts.load(Ordering::Relaxed) && e.kind == AttemptErrorKind::Timeout =>
        {
            ApiError::Timeout {
                backend,
                timeout_ms: ms_i32(ex.p.timeout),
            }
        }
        Err(e) if attempts == 1 && !ex.p.may_resend => ApiError::Transport {
            backend,
            reason: e.to_string(),
        },
        Err(e) => ApiError::AllBackendsUnavailable {
            attempts,
            last_error: format!("{backend}: {e}"),
        },
    }
}
