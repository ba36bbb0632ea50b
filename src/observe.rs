//! Observability records the app can route to its own tooling: one [`AttemptRecord`] per HTTP
//! attempt (OkHttp's `EventListener`, `URLSessionTaskMetrics`), delivered to an
//! [`AttemptListener`]; the [`Outbox`] that hands records to foreign code on a thread of its own
//! (never on, never blocking, the runtime's workers: full → dropped and counted); and the
//! bounded per-backend window behind `BackendStatus`'s p50/p95 latency and error rate.
//!
//! What reqwest/hyper expose per attempt, and so what a record holds: whether the connection was
//! new or reused (from the connection's local address, see `net::transport`), the time until the
//! response head arrived (time to first byte: on a new connection it includes DNS, connect and
//! TLS), the total, body bytes each way. DNS, connect and TLS handshake times are **not**
//! available separately (reqwest's connector does not report them per request).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::types::HttpMethod;

/// Why an attempt was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum AttemptReason {
    /// The call's first attempt.
    First,
    /// A backoff round after every backend of the previous pass failed (or a pinned retry).
    Retry,
    /// The next backend within the same pass, after the previous one failed.
    Failover,
    /// A hedge: raced against a slow attempt still in flight.
    Hedge,
}

/// The connection an attempt used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ConnectionUse {
    /// A connection opened for this attempt (DNS, TCP, TLS are inside the time to first byte).
    New,
    /// A pooled keep-alive (or HTTP/2) connection.
    Reused,
    /// Not known (no response head arrived, or the transport does not tell).
    Unknown,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum AttemptOutcome {
    /// A complete response (any status: see `status`).
    Response,
    /// No connection could be made: nothing reached the server.
    ConnectFailed,
    /// No complete response within the attempt timeout.
    TimedOut,
    /// The connection broke after the request was (maybe) sent.
    Broken,
    /// The server's certificate matched none of the pins.
    PinMismatch,
    /// The response body was larger than the limit.
    TooLarge,
    /// Dropped before it finished: a hedge that lost the race, or a cancelled call.
    Cancelled,
}

/// One HTTP attempt. Never holds a header, a query string or a body: no credential can be in it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AttemptRecord {
    /// Base URL of the backend (without userinfo).
    pub backend: String,
    /// Method.
    pub method: HttpMethod,
    /// The request path, without its query.
    pub path: String,
    /// 1 for the call's first attempt, then 2, 3, … (hedges included).
    pub attempt: i32,
    /// Why this attempt was made.
    pub reason: AttemptReason,
    /// New or reused connection.
    pub connection: ConnectionUse,
    /// Until the response head arrived (`None`: it never did).
    pub time_to_first_byte_ms: Option<i32>,
    /// The whole attempt, body included.
    pub total_ms: i32,
    /// Request body bytes handed to the connection (0 when nothing could be sent).
    pub bytes_sent: i64,
    /// Response body bytes read.
    pub bytes_received: i64,
    /// The HTTP status, for `Response`.
    pub status: Option<i32>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// What went wrong, for the failures (no URL, query values redacted).
    pub error: Option<String>,
    /// When it started (Unix ms).
    pub started_at_ms: i64,
}

/// Implement this (in any binding language) to see every HTTP attempt. Called on a thread of
/// the client's own, in order, never on the async workers; a slow listener only loses records
/// (the buffer holds 1 024; `StatusCounters.attempt_records_dropped` counts the rest). An error
/// (any exception thrown) is logged as a warning.
#[uniffi::export(with_foreign)]
pub trait AttemptListener: Send + Sync {
    /// One finished (or dropped) attempt.
    fn on_attempt(&self, record: AttemptRecord) -> Result<(), crate::error::ApiError>;
}

/// Hands values to `deliver` on a dedicated thread, through a bounded buffer: `push` never blocks
/// (a full buffer drops the value and counts it). Dropping the outbox ends the thread after the
/// values already buffered.
pub(crate) struct Outbox<T> {
    tx: Mutex<Option<SyncSender<T>>>,
    dropped: Arc<AtomicU64>,
}

impl<T: Send + 'static> Outbox<T> {
    /// Starts the delivery thread `name`; `dropped` counts what a full buffer refused.
    pub(crate) fn start(
        name: &str,
        capacity: usize,
        dropped: Arc<AtomicU64>,
        deliver: impl Fn(T) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<T>(capacity);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(v) = rx.recv() {
                    // A panicking foreign callback must not end delivery.
                    let _ = catch_unwind(AssertUnwindSafe(|| deliver(v)));
                }
            })?;
        Ok(Outbox {
            tx: Mutex::new(Some(tx)),
            dropped,
        })
    }

    /// Queues `v` for delivery, or drops (and counts) it if the buffer is full.
    pub(crate) fn push(&self, v: T) {
        let guard = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = guard.as_ref() {
            match tx.try_send(v) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Stops accepting values; the thread ends after the buffered ones.
    pub(crate) fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Attempt records buffered at most per client.
pub(crate) const ATTEMPT_BUFFER: usize = 1024;

/// How far back the per-backend window reaches, and how many attempts it keeps.
const WINDOW_AGE: Duration = Duration::from_secs(300);
const WINDOW_LEN: usize = 128;

/// The last [`WINDOW_LEN`] attempts of one backend within [`WINDOW_AGE`]: latency percentiles and
/// the share that failed (no response, or a 5xx).
#[derive(Debug, Default)]
pub(crate) struct RecentWindow {
    samples: VecDeque<(Instant, Duration, bool)>,
}

/// What [`RecentWindow::summary`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowSummary {
    /// Attempts in the window.
    pub attempts: usize,
    /// Median and 95th percentile latency of the attempts that got a response.
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    /// Failed share, 0.0–1.0.
    pub error_rate: f64,
}

impl RecentWindow {
    /// Records one attempt at `now`: its latency, and whether it failed.
    pub(crate) fn push(&mut self, now: Instant, latency: Duration, failed: bool) {
        if self.samples.len() == WINDOW_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back((now, latency, failed));
    }

    /// The window as of `now` (older samples are ignored); `None` when empty.
    pub(crate) fn summary(&self, now: Instant) -> Option<WindowSummary> {
        let recent: Vec<&(Instant, Duration, bool)> = self
            .samples
            .iter()
            .filter(|(at, _, _)| now.saturating_duration_since(*at) <= WINDOW_AGE)
            .collect();
        if recent.is_empty() {
            return None;
        }
        let failed = recent.iter().filter(|s| s.2).count();
        let mut ok: Vec<Duration> = recent.iter().filter(|s| !s.2).map(|s| s.1).collect();
        ok.sort_unstable();
        // Nearest-rank percentile.
        let pick = |p: f64| -> Option<Duration> {
            let rank = ((p * ok.len() as f64).ceil() as usize).max(1);
            ok.get(rank - 1).copied()
        };
        Some(WindowSummary {
            attempts: recent.len(),
            p50: pick(0.50),
            p95: pick(0.95),
            error_rate: failed as f64 / recent.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_window_reports_nearest_rank_percentiles_and_the_failed_share() {
        let t0 = Instant::now();
        let mut w = RecentWindow::default();
        assert_eq!(w.summary(t0), None);
        for ms in 1..=100 {
            w.push(t0, ms * MS, false);
        }
        w.push(t0, 5000 * MS, true);
        let s = w.summary(t0).unwrap();
        assert_eq!(
            (s.attempts, s.p50, s.p95),
            (101, Some(50 * MS), Some(95 * MS))
        );
        assert!((s.error_rate - 1.0 / 101.0).abs() < 1e-9);
    }

    #[test]
    fn the_window_is_bounded_in_length_and_age() {
        let t0 = Instant::now();
        let mut w = RecentWindow::default();
        for _ in 0..1000 {
            w.push(t0, MS, true);
        }
        assert_eq!(w.summary(t0).unwrap().attempts, WINDOW_LEN);
        assert_eq!(w.summary(t0).unwrap().p50, None, "no success: no latency");
        assert_eq!(w.summary(t0 + WINDOW_AGE + MS), None);
    }

    #[test]
    fn a_full_outbox_drops_and_counts_instead_of_blocking() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let outbox = Outbox::start("test-outbox", 2, dropped.clone(), move |_: u32| {
            let _ = gate.lock().unwrap().recv();
            s.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        for i in 0..10 {
            outbox.push(i); // never blocks, whatever the listener does
        }
        // One in the listener, two buffered: at least seven dropped.
        assert!(dropped.load(Ordering::SeqCst) >= 7);
        drop(gate_tx); // the listener returns at once from now on
        outbox.close();
    }
}
