//! Progress reporting for uploads. Policy only (pure, unit-tested): *when* the app's listener hears
//! about progress. The body stream counts bytes in an atomic and wakes the upload's task at each
//! 1 % step ([`Throttle::step`]); the task asks [`Throttle::offer`] whether to call the listener.
//!
//! Rules:
//! - at most one call per 1 % of the total, or per 250 ms when progress is slower than that;
//! - values never go backwards: a retried attempt re-sends from byte 0, and progress holds still
//!   until it passes what was already reported;
//! - `total` itself is reported exactly once, by [`Throttle::finish`], after the server accepted the
//!   upload (a body fully sent but answered with a 5xx is not "done").

use std::time::{Duration, Instant};

/// Minimum time between two reports when progress is slower than 1 % per interval.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// Decides which progress values reach the listener.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    total: u64,
    step: u64,
    interval: Duration,
    /// The last value reported (0 before the first report).
    reported: u64,
    last_at: Option<Instant>,
    finished: bool,
}

impl Throttle {
    /// A throttle for `total` bytes reporting every 1 % or every `interval`.
    pub(crate) fn new(total: u64, interval: Duration) -> Self {
        Throttle {
            total,
            step: Self::step_for(total),
            interval,
            reported: 0,
            last_at: None,
            finished: false,
        }
    }

    /// 1 % of `total` (at least one byte).
    pub(crate) fn step_for(total: u64) -> u64 {
        (total / 100).max(1)
    }

    /// Bytes per 1 % step.
    pub(crate) fn step(&self) -> u64 {
        self.step
    }

    /// `sent` bytes have gone out at `now`: the value to report, if one is due. Never `total` (see
    /// [`Throttle::finish`]) and never less than or equal to the last report.
    pub(crate) fn offer(&mut self, sent: u64, now: Instant) -> Option<u64> {
        if self.finished {
            return None;
        }
        let value = sent.min(self.total.saturating_sub(1));
        if value <= self.reported {
            return None;
        }
        let step_due = value - self.reported >= self.step;
        let time_due = self
            .last_at
            .is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if !(step_due || time_due) {
            return None;
        }
        self.reported = value;
        self.last_at = Some(now);
        Some(value)
    }

    /// The upload succeeded: `Some(total)` the first time, then `None`.
    pub(crate) fn finish(&mut self) -> Option<u64> {
        if self.finished {
            return None;
        }
        self.finished = true;
        self.reported = self.total;
        Some(self.total)
    }

    /// The value reported last.
    #[cfg(test)]
    pub(crate) fn reported(&self) -> u64 {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reports_each_percent_when_fast() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1_000_000, REPORT_INTERVAL);
        assert_eq!(t.step(), 10_000);
        let mut calls = Vec::new();
        // 8 KiB chunks, all within the same millisecond: only 1 % steps report (plus the first).
        let mut sent = 0;
        while sent < 1_000_000 {
            sent = (sent + 8192).min(1_000_000);
            if let Some(v) = t.offer(sent, t0) {
                calls.push(v);
            }
        }
        assert!(calls.len() <= 101, "{} calls", calls.len());
        // Each report is at least 1 % after the previous one: 8 KiB chunks make that 2 chunks.
        assert!(calls.len() >= 50, "{} calls", calls.len());
        assert!(calls
            .windows(2)
            .all(|w| w[0] < w[1] && w[1] - w[0] >= 10_000));
        assert!(
            *calls.last().unwrap() < 1_000_000,
            "total is left to finish()"
        );
        assert_eq!(t.finish(), Some(1_000_000));
        assert_eq!(t.finish(), None);
        assert_eq!(t.offer(1_000_000, t0 + 1000 * MS), None);
    }

    #[test]
    fn reports_every_interval_when_slow() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1_000_000_000, REPORT_INTERVAL);
        assert_eq!(
            t.offer(100, t0),
            Some(100),
            "the first progress is reported at once"
        );
        assert_eq!(t.offer(200, t0 + 100 * MS), None);
        assert_eq!(t.offer(300, t0 + 249 * MS), None);
        assert_eq!(t.offer(400, t0 + 250 * MS), Some(400));
        assert_eq!(t.offer(400, t0 + 900 * MS), None, "no progress, no call");
        assert_eq!(t.offer(401, t0 + 901 * MS), Some(401));
    }

    #[test]
    fn never_goes_backwards_across_retries() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1000, REPORT_INTERVAL);
        assert_eq!(t.offer(500, t0), Some(500));
        // The connection broke; the retry starts again from 0.
        for (i, sent) in [0u64, 100, 400, 500].into_iter().enumerate() {
            assert_eq!(t.offer(sent, t0 + (i as u32 + 1) * 300 * MS), None);
        }
        assert_eq!(t.offer(600, t0 + 2000 * MS), Some(600));
        assert_eq!(t.reported(), 600);
    }

    #[test]
    fn tiny_and_empty_totals() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1, REPORT_INTERVAL);
        assert_eq!(t.step(), 1);
        assert_eq!(t.offer(1, t0), None, "only finish() reports the total");
        assert_eq!(t.finish(), Some(1));
        let mut t = Throttle::new(0, REPORT_INTERVAL);
        assert_eq!(t.offer(0, t0), None);
        assert_eq!(t.finish(), Some(0));
    }
}
