//! Where a retry is decided. Policy only: this module classifies one attempt's outcome, computes
//! backoff delays and keeps the retry budget; [`super::attempt`] is the loop that acts on it.
//!
//! Rules:
//! - a connect failure never reached a server, so any request may move to another backend;
//! - anything else is re-sent only if the request may be sent twice (idempotent method, an idempotency
//!   key, or `RetryMode::Always`) — a POST without a key reaches a server at most once;
//! - 5xx, 429, 408, timeouts and broken connections are retryable; other 4xx are final;
//! - backoff is full-jitter exponential (base · 2ⁿ capped), and a `Retry-After` on 429/503 is honoured
//!   unless it is longer than the request timeout (then the call stops and reports the status);
//! - every re-send (failover or backoff round) spends from a [`RetryBudget`], so a total outage cannot
//!   multiply traffic by the retry count.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::transport::{AttemptError, AttemptErrorKind, RawResponse};

/// What one attempt's outcome means for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand the response to the caller (2xx/3xx). The backend is healthy.
    Success,
    /// A final answer the caller must see as an error (4xx other than 408/429). The backend is healthy.
    Final,
    /// Worth trying elsewhere / again.
    Retryable {
        /// Counts against the backend's breaker (5xx, timeouts, transport errors; not 408/429).
        breaker_failure: bool,
        /// Nothing reached the server (connect failure): safe to re-send any request.
        unsent: bool,
        /// Server-requested delay (`Retry-After` on 429/503).
        retry_after: Option<Duration>,
    },
}

/// Classifies one attempt.
pub(crate) fn classify(result: &Result<RawResponse, AttemptError>) -> Verdict {
    match result {
        Ok(resp) => classify_status(resp.status, resp.retry_after),
        Err(e)
            if matches!(
                e.kind,
                AttemptErrorKind::PinMismatch | AttemptErrorKind::TooLarge
            ) =>
        {
            Verdict::Final
        }
        Err(e) => Verdict::Retryable {
            breaker_failure: true,
            unsent: e.kind == AttemptErrorKind::Connect,
            retry_after: None,
        },
    }
}

/// Classifies a response status.
pub(crate) fn classify_status(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=399 => Verdict::Success,
        408 | 429 => Verdict::Retryable {
            breaker_failure: false,
            unsent: false,
            retry_after,
        },
        500..=599 => Verdict::Retryable {
            breaker_failure: true,
            unsent: false,
            retry_after: if status == 503 { retry_after } else { None },
        },
        _ => Verdict::Final,
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(cap, base · 2^round)]`.
/// `unit` is a uniform random number in `[0, 1)` (injected so tests are deterministic).
pub(crate) fn backoff_delay(round: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(round.min(31)).unwrap_or(u32::MAX));
    exp.min(cap).mul_f64(unit.clamp(0.0, 1.0))
}

/// The delay before the next backoff round: the jittered backoff, stretched to a server's
/// `Retry-After`. `None` = the server asked for longer than `cap` (the request timeout): stop.
pub(crate) fn next_delay(
    backoff: Duration,
    retry_after: Option<Duration>,
    cap: Duration,
) -> Option<Duration> {
    match retry_after {
        Some(ra) if ra > cap => None,
        Some(ra) => Some(backoff.max(ra)),
        None => Some(backoff),
    }
}

const BUDGET_WINDOW_SECS: u64 = 10;

/// A token-bucket-like retry budget over a sliding 10 s window: re-sends are allowed while
/// `re-sends < min_per_sec · 10 + ratio · requests`. Compared with "max N attempts" alone, it keeps
/// the extra load of a total outage at about `ratio` instead of `N×`.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    floor: f64,
    origin: Instant,
    /// (second index, requests, re-sends), oldest first, at most `BUDGET_WINDOW_SECS` entries.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl RetryBudget {
    /// A budget allowing `ratio` extra load plus `min_per_sec` re-sends per second.
    pub(crate) fn new(ratio: f64, min_per_sec: u32, now: Instant) -> Self {
        RetryBudget {
            ratio,
            floor: f64::from(min_per_sec) * BUDGET_WINDOW_SECS as f64,
            origin: now,
            buckets: VecDeque::with_capacity(BUDGET_WINDOW_SECS as usize + 1),
        }
    }

    fn bucket(&mut self, now: Instant) -> &mut (u64, u64, u64) {
        let sec = now.saturating_duration_since(self.origin).as_secs();
        while self
            .buckets
            .front()
            .is_some_and(|b| b.0 + BUDGET_WINDOW_SECS <= sec)
        {
            self.buckets.pop_front();
        }
        if self.buckets.back().is_none_or(|b| b.0 != sec) {
            self.buckets.push_back((sec, 0, 0));
        }
        // Just pushed or checked above: the deque is non-empty.
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    /// A new call started.
    pub(crate) fn deposit(&mut self, now: Instant) {
        self.bucket(now).1 += 1;
    }

    /// Asks to re-send once; `false` = budget exhausted, don't.
    pub(crate) fn try_withdraw(&mut self, now: Instant) -> bool {
        self.bucket(now);
        let (reqs, resends) = self
            .buckets
            .iter()
            .fold((0, 0), |(r, s), b| (r + b.1, s + b.2));
        if (resends as f64) < self.floor + self.ratio * reqs as f64 {
            self.bucket(now).2 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify_as_documented() {
        assert_eq!(classify_status(200, None), Verdict::Success);
        assert_eq!(classify_status(304, None), Verdict::Success);
        assert_eq!(classify_status(404, None), Verdict::Final);
        assert_eq!(classify_status(422, None), Verdict::Final);
        let ra = Some(Duration::from_secs(2));
        assert_eq!(
            classify_status(429, ra),
            Verdict::Retryable {
                breaker_failure: false,
                unsent: false,
                retry_after: ra
            }
        );
        assert_eq!(
            classify_status(503, ra),
            Verdict::Retryable {
                breaker_failure: true,
                unsent: false,
                retry_after: ra
            }
        );
        assert_eq!(
            classify_status(500, ra),
            Verdict::Retryable {
                breaker_failure: true,
                unsent: false,
                retry_after: None
            }
        );
    }

    #[test]
    fn backoff_grows_to_the_cap_and_is_jittered() {
        let (b, c) = (Duration::from_secs(1), Duration::from_secs(8));
        let full: Vec<_> = (0..6).map(|r| backoff_delay(r, b, c, 0.999_999)).collect();
        let secs: Vec<u64> = full
            .iter()
            .map(|d| d.as_secs_f64().round() as u64)
            .collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 8, 8]);
        assert_eq!(backoff_delay(2, b, c, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(2, b, c, 0.5), Duration::from_secs(2));
        assert_eq!(
            backoff_delay(400, b, c, 0.5),
            Duration::from_secs(4),
            "no overflow"
        );
    }

    #[test]
    fn retry_after_stretches_the_delay_unless_over_the_cap() {
        let cap = Duration::from_secs(30);
        let s = Duration::from_secs;
        assert_eq!(next_delay(s(1), Some(s(5)), cap), Some(s(5)));
        assert_eq!(next_delay(s(6), Some(s(5)), cap), Some(s(6)));
        assert_eq!(next_delay(s(1), Some(s(31)), cap), None);
        assert_eq!(next_delay(s(1), None, cap), Some(s(1)));
    }

    #[test]
    fn budget_allows_the_floor_plus_a_share_of_traffic() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 1, t0); // floor: 10 per window
        for _ in 0..100 {
            b.deposit(t0);
        }
        let allowed = (0..1000).filter(|_| b.try_withdraw(t0)).count();
        assert_eq!(allowed, 30); // 10 + 0.2 * 100
                                 // The window slides: 10 s later the old spending is forgotten.
        let later = t0 + Duration::from_secs(11);
        assert!(b.try_withdraw(later));
    }
}
