//! The backends and the choice among them.
//!
//! Each backend carries its breaker, a health flag (from probes and real traffic), a latency EWMA and
//! its last error. [`BackendSet::acquire_best`] picks the best admissible backend — healthy first,
//! then not degraded (a health body said so), then lowest EWMA (quantised, so near-equal backends don't flap; ties go to configured order) — and returns
//! a [`Permit`]: the attempt reports its outcome through it, and dropping it unreported (a cancelled
//! hedge leg) releases a HALF_OPEN trial instead of wedging the breaker.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;

use super::breaker::{Admission, Breaker, Transition};
use crate::events::{EventBus, StatusEvent};
use crate::observe::RecentWindow;
use crate::types::BreakerState;

/// One backend, as of the snapshot.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BackendStatus {
    /// Base URL.
    pub url: String,
    /// Last probe or request succeeded and the breaker is not OPEN.
    pub healthy: bool,
    /// Breaker state.
    pub breaker_state: BreakerState,
    /// Consecutive failures the breaker has counted.
    pub consecutive_failures: i32,
    /// The last health probe answered 2xx with a body reporting `degraded`: still used, but
    /// after every healthy backend that is not.
    pub degraded: bool,
    /// Latency EWMA over probes and real traffic; `None` before the first sample.
    pub latency_ewma_ms: Option<f64>,
    /// The last failure seen on this backend.
    pub last_error: Option<String>,
    /// Time since the last probe or request finished; `None` if never.
    pub last_checked_ms_ago: Option<i32>,
    /// Request attempts in the recent window (the last 128, at most 5 minutes old; probes are
    /// not counted).
    pub recent_attempts: i32,
    /// Median latency of the recent attempts that got a response.
    pub latency_p50_ms: Option<i32>,
    /// 95th percentile latency of the recent attempts that got a response.
    pub latency_p95_ms: Option<i32>,
    /// Share of the recent attempts that failed (no response, or a 5xx), 0.0–1.0; `None`
    /// without recent attempts.
    pub error_rate: Option<f64>,
}

/// Minimum time between a request failure's extra probe and the previous probe of that backend.
const PROBE_AFTER_FAILURE: Duration = Duration::from_millis(250);

/// Weight of a new latency sample in the EWMA.
const EWMA_ALPHA: f64 = 0.3;

#[derive(Debug)]
struct State {
    breaker: Breaker,
    healthy: bool,
    /// The last probe's body said `degraded`.
    degraded: bool,
    ewma_ms: Option<f64>,
    last_error: Option<String>,
    last_checked: Option<Instant>,
    last_probe: Option<Instant>,
    /// A failure made this backend suspect: probe it at this time (sooner than the interval).
    probe_soon_at: Option<Instant>,
    /// The recent request attempts (latency percentiles, error rate).
    recent: RecentWindow,
}

/// One configured backend.
#[derive(Debug)]
pub(crate) struct Backend {
    /// Base URL, as parsed.
    pub(crate) url: Url,
    /// Base URL as shown to callers (no trailing slash).
    pub(crate) name: String,
    state: Mutex<State>,
}

/// All backends of a client.
pub(crate) struct BackendSet {
    backends: Vec<Backend>,
    events: Arc<EventBus>,
    /// Wakes the health-probe loop: a breaker opened (its trial time is a new due date) or the
    /// network came back. `notify_one` keeps a permit if the loop is busy, so no wake-up is lost.
    pub(crate) probe_wake: tokio::sync::Notify,
    /// Bumped whenever a backend becomes healthy again (the offline queue replays at once).
    recovered: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for BackendSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSet")
            .field("backends", &self.backends)
            .finish()
    }
}

/// Below this, latency differences are noise (a cold TCP connect, a GC pause) and do not reorder
/// backends; mobile round trips are tens to hundreds of milliseconds.
const LATENCY_TIE_MS: f64 = 10.0;

/// Quantised latency for ranking: all equal below [`LATENCY_TIE_MS`], then buckets 30 % wide.
fn latency_bucket(ewma_ms: Option<f64>) -> u32 {
    match ewma_ms {
        None => u32::MAX,
        Some(ms) if ms <= LATENCY_TIE_MS => 0,
        Some(ms) => 1 + ((ms / LATENCY_TIE_MS).ln() / 1.3f64.ln()).ceil() as u32,
    }
}

impl BackendSet {
    pub(crate) fn new(
        urls: &[Url],
        threshold: u32,
        open_for: Duration,
        events: Arc<EventBus>,
    ) -> Self {
        let backends = urls
            .iter()
            .map(|u| Backend {
                url: u.clone(),
                // Shown in status, errors and responses: never the URL's userinfo.
                name: crate::http::display_url(u, &[])
                    .trim_end_matches('/')
                    .to_string(),
                state: Mutex::new(State {
                    breaker: Breaker::new(threshold, open_for),
                    healthy: true,
                    degraded: false,
                    ewma_ms: None,
                    last_error: None,
                    last_checked: None,
                    last_probe: None,
                    probe_soon_at: None,
                    recent: RecentWindow::default(),
                }),
            })
            .collect();
        BackendSet {
            backends,
            events,
            probe_wake: tokio::sync::Notify::new(),
            recovered: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Number of backends.
    pub(crate) fn len(&self) -> usize {
        self.backends.len()
    }

    /// Backend `i`.
    pub(crate) fn get(&self, i: usize) -> &Backend {
        &self.backends[i]
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, State> {
        self.backends[i]
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Admissible backends not in `exclude`, best first.
    pub(crate) fn ranked(&self, now: Instant, exclude: &[usize]) -> Vec<usize> {
        let mut keyed: Vec<((bool, bool, u32, usize), usize)> = (0..self.backends.len())
            .filter(|i| !exclude.contains(i))
            .filter_map(|i| {
                let s = self.lock(i);
                s.breaker
                    .would_admit(now)
                    .then(|| ((!s.healthy, s.degraded, latency_bucket(s.ewma_ms), i), i))
            })
            .collect();
        keyed.sort_unstable_by_key(|k| k.0);
        keyed.into_iter().map(|k| k.1).collect()
    }

    /// Takes a permit on the best admissible backend not in `exclude`.
    pub(crate) fn acquire_best(
        self: &Arc<Self>,
        now: Instant,
        exclude: &[usize],
    ) -> Option<Permit> {
        self.ranked(now, exclude)
            .into_iter()
            .find_map(|i| self.acquire(i, now))
    }

    /// Takes a permit on backend `i`, if its breaker admits a call now.
    pub(crate) fn acquire(self: &Arc<Self>, i: usize, now: Instant) -> Option<Permit> {
        let (admission, t) = self.lock(i).breaker.try_acquire(now)?;
        self.announce(i, t, None);
        Some(Permit {
            set: self.clone(),
            index: i,
            admission,
            done: false,
        })
    }

    /// Where the next request would go.
    pub(crate) fn preferred(&self, now: Instant) -> Option<usize> {
        self.ranked(now, &[]).first().copied()
    }

    /// Wakes (`changed()`) whenever a backend becomes healthy again.
    pub(crate) fn subscribe_recovered(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    /// Closes every breaker.
    pub(crate) fn reset_all(&self) {
        for i in 0..self.backends.len() {
            let (t, h) = {
                let mut s = self.lock(i);
                let t = s.breaker.reset();
                let h = (!s.healthy).then(|| {
                    s.healthy = true;
                    true
                });
                (t, h)
            };
            self.announce(i, t, h);
        }
    }

    /// When backend `i` is next due for a probe (`None` = now).
    pub(crate) fn probe_due_at(&self, i: usize, interval: Duration) -> Option<Instant> {
        let s = self.lock(i);
        // An OPEN breaker is probed as soon as its trial is allowed, not a whole interval later.
        match s.breaker.reopens_at() {
            Some(reopen) => Some(reopen),
            None => {
                let regular = s.last_probe.map(|last| last + interval)?;
                Some(s.probe_soon_at.map_or(regular, |soon| soon.min(regular)))
            }
        }
    }

    /// Adds one request attempt to backend `i`'s recent window.
    pub(crate) fn observe(&self, i: usize, now: Instant, latency: Duration, failed: bool) {
        self.lock(i).recent.push(now, latency, failed);
    }

    /// Records what backend `i`'s last probe body said: degraded or not.
    pub(crate) fn set_degraded(&self, i: usize, degraded: bool) {
        self.lock(i).degraded = degraded;
    }

    /// Marks a probe as started on backend `i`.
    pub(crate) fn mark_probed(&self, i: usize, now: Instant) {
        let mut s = self.lock(i);
        s.last_probe = Some(now);
        s.probe_soon_at = None;
    }

    /// Forgets probe times so every backend is due now (network came back).
    pub(crate) fn make_all_due(&self) {
        for i in 0..self.backends.len() {
            self.lock(i).last_probe = None;
        }
    }

    /// Per-backend snapshot.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<BackendStatus> {
        (0..self.backends.len())
            .map(|i| {
                let s = self.lock(i);
                let state = s.breaker.state();
                let recent = s.recent.summary(now);
                BackendStatus {
                    url: self.backends[i].name.clone(),
                    healthy: s.healthy && state != BreakerState::Open,
                    breaker_state: state,
                    degraded: s.degraded,
                    consecutive_failures: crate::defaults::saturating_i32(u64::from(
                        s.breaker.consecutive_failures(),
                    )),
                    latency_ewma_ms: s.ewma_ms,
                    last_error: s.last_error.clone(),
                    last_checked_ms_ago: s
                        .last_checked
                        .map(|t| crate::defaults::ms_i32(now.saturating_duration_since(t))),
                    recent_attempts: recent
                        .map_or(0, |r| crate::defaults::saturating_i32(r.attempts as u64)),
                    latency_p50_ms: recent.and_then(|r| r.p50).map(crate::defaults::ms_i32),
                    latency_p95_ms: recent.and_then(|r| r.p95).map(crate::defaults::ms_i32),
                    error_rate: recent.map(|r| r.error_rate),
                }
            })
            .collect()
    }

    fn record(&self, i: usize, admission: Admission, outcome: Outcome, now: Instant) {
        let mut probe_soon = false;
        let (t, h) = {
            let mut s = self.lock(i);
            s.last_checked = Some(now);
            let (t, healthy) = match outcome {
                Outcome::Success { latency } => {
                    let ms = latency.as_secs_f64() * 1e3;
                    s.ewma_ms = Some(s.ewma_ms.map_or(ms, |e| e + EWMA_ALPHA * (ms - e)));
                    s.probe_soon_at = None;
                    (s.breaker.on_success(admission), Some(true))
                }
                Outcome::Failure {
                    error,
                    marks_unhealthy,
                    unreachable,
                } => {
                    s.last_error = Some(error);
                    // Unreachable (connect error, timeout, broken connection — not an HTTP answer,
                    // which proves the server alive) makes a CLOSED backend suspect: it is probed
                    // again PROBE_AFTER_FAILURE after its last probe, not a whole interval later,
                    // until it recovers or its breaker opens. So a dead backend that traffic has
                    // moved away from is still confirmed (unhealthy, then OPEN) within seconds.
                    if unreachable && s.probe_soon_at.is_none() {
                        let after_last = s.last_probe.map_or(now, |p| p + PROBE_AFTER_FAILURE);
                        s.probe_soon_at = Some(after_last.max(now));
                        probe_soon = true;
                    }
                    let t = s.breaker.on_failure(admission, now);
                    let opened = t.is_some_and(|t| t.to == BreakerState::Open);
                    (t, (marks_unhealthy || opened).then_some(false))
                }
                Outcome::Neutral { error } => {
                    s.last_error = Some(error);
                    s.breaker.release(admission);
                    (None, None)
                }
            };
            let changed = healthy.filter(|h| *h != s.healthy);
            if let Some(h) = changed {
                s.healthy = h;
            }
            (t, changed)
        };
        if probe_soon {
            self.probe_wake.notify_one();
        }
        self.announce(i, t, h);
    }

    /// Tells listeners, after the lock is released.
    fn announce(&self, i: usize, t: Option<Transition>, healthy: Option<bool>) {
        let backend = &self.backends[i].name;
        if let Some(t) = t {
            log::info!(
                "robust-api: breaker of {backend}: {:?} -> {:?}",
                t.from,
                t.to
            );
            if t.to == BreakerState::Open {
                self.probe_wake.notify_one();
            }
            self.events.emit(StatusEvent::BreakerChanged {
                backend: backend.clone(),
                previous: t.from,
                current: t.to,
            });
        }
        if let Some(healthy) = healthy {
            if healthy {
                self.recovered.send_modify(|n| *n += 1);
            }
            self.events.emit(StatusEvent::BackendHealthChanged {
                backend: backend.clone(),
                healthy,
            });
        }
    }
}

enum Outcome {
    Success {
        latency: Duration,
    },
    Failure {
        error: String,
        marks_unhealthy: bool,
        unreachable: bool,
    },
    Neutral {
        error: String,
    },
}

/// Leave to send one call to one backend. Report the outcome exactly once; dropping it unreported
/// releases it without a verdict.
#[derive(Debug)]
pub(crate) struct Permit {
    set: Arc<BackendSet>,
    /// Index of the backend.
    pub(crate) index: usize,
    admission: Admission,
    done: bool,
}

impl Permit {
    /// The backend this permit is for.
    pub(crate) fn backend(&self) -> &Backend {
        self.set.get(self.index)
    }

    /// The call succeeded (or got a definitive answer) in `latency`.
    pub(crate) fn success(mut self, latency: Duration) {
        self.done = true;
        self.set.record(
            self.index,
            self.admission,
            Outcome::Success { latency },
            Instant::now(),
        );
    }

    /// The call failed in a way that counts against the breaker. Probes pass `marks_unhealthy`.
    pub(crate) fn failure(self, error: String, marks_unhealthy: bool) {
        self.fail(error, marks_unhealthy, false);
    }

    /// The backend could not be reached (connect error, timeout, broken connection): a failure
    /// that also makes it suspect, so it is re-probed quickly.
    pub(crate) fn unreachable(self, error: String, marks_unhealthy: bool) {
        self.fail(error, marks_unhealthy, true);
    }

    fn fail(mut self, error: String, marks_unhealthy: bool, unreachable: bool) {
        self.done = true;
        let outcome = Outcome::Failure {
            error,
            marks_unhealthy,
            unreachable,
        };
        self.set
            .record(self.index, self.admission, outcome, Instant::now());
    }

    /// The call failed in a way that says nothing about the backend's health (e.g. 429).
    pub(crate) fn neutral(mut self, error: String) {
        self.done = true;
        self.set.record(
            self.index,
            self.admission,
            Outcome::Neutral { error },
            Instant::now(),
        );
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.set.lock(self.index).breaker.release(self.admission);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_order_and_merge_near_equal_values() {
        assert_eq!(latency_bucket(Some(0.3)), latency_bucket(Some(9.0)));
        assert_eq!(latency_bucket(Some(100.0)), latency_bucket(Some(105.0)));
        assert!(latency_bucket(Some(1.0)) < latency_bucket(Some(50.0)));
        assert!(latency_bucket(Some(50.0)) < latency_bucket(Some(100.0)));
        assert!(latency_bucket(Some(1e6)) < latency_bucket(None));
    }
}
