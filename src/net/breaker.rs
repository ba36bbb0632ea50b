//! A per-backend circuit breaker: a pure state machine, no I/O, no clock of its own (every call takes
//! `now`), so its tests need no sleeping.
//!
//! CLOSED counts consecutive failures; at the threshold it goes OPEN and fences the backend off for
//! `open_for`. After that the first caller to ask gets the single HALF_OPEN trial (a request or a health
//! probe): success closes the breaker, failure re-opens it. While the trial is out, nobody else is let in.

use std::time::{Duration, Instant};

use crate::types::BreakerState;

/// What the breaker let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Normal traffic (breaker CLOSED).
    Normal,
    /// The one HALF_OPEN trial. Its outcome must be reported (or the trial released).
    Trial,
}

/// A state change worth telling listeners about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
}

/// The breaker of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

impl Breaker {
    /// A CLOSED breaker opening after `threshold` consecutive failures, for `open_for`.
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            trial_in_flight: false,
        }
    }

    /// Current state (an OPEN breaker whose time is up stays OPEN until someone takes the trial).
    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// Consecutive failures counted so far.
    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// When an OPEN breaker will admit its trial; `None` when not OPEN.
    pub(crate) fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open => self.opened_at.map(|t| t + self.open_for),
            _ => None,
        }
    }

    /// Would `try_acquire(now)` succeed? (No state change.)
    pub(crate) fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => !self.trial_in_flight,
            BreakerState::Open => self.reopens_at().is_some_and(|t| now >= t),
        }
    }

    /// Asks to send one call. `None` = fenced off, send nothing.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> Option<(Admission, Option<Transition>)> {
        match self.state {
            BreakerState::Closed => Some((Admission::Normal, None)),
            BreakerState::HalfOpen if !self.trial_in_flight => {
                self.trial_in_flight = true;
                Some((Admission::Trial, None))
            }
            BreakerState::HalfOpen => None,
            BreakerState::Open if self.would_admit(now) => {
                self.trial_in_flight = true;
                let t = self.set(BreakerState::HalfOpen);
                Some((Admission::Trial, t))
            }
            BreakerState::Open => None,
        }
    }

    /// The call succeeded.
    pub(crate) fn on_success(&mut self, admission: Admission) -> Option<Transition> {
        self.consecutive_failures = 0;
        match (admission, self.state) {
            (Admission::Trial, BreakerState::HalfOpen) => {
                self.trial_in_flight = false;
                self.opened_at = None;
                self.set(BreakerState::Closed)
            }
            _ => None,
        }
    }

    /// The call failed (transport error, timeout, 5xx, or too slow).
    pub(crate) fn on_failure(&mut self, admission: Admission, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match (admission, self.state) {
            (Admission::Trial, BreakerState::HalfOpen) => {
                self.trial_in_flight = false;
                self.open(now)
            }
            (Admission::Normal, BreakerState::Closed)
                if self.consecutive_failures >= self.threshold =>
            {
                self.open(now)
            }
            _ => None,
        }
    }

    /// The call ended without a verdict (cancelled, e.g. the losing leg of a hedge).
    pub(crate) fn release(&mut self, admission: Admission) {
        if admission == Admission::Trial && self.state == BreakerState::HalfOpen {
            self.trial_in_flight = false;
        }
    }

    /// Force CLOSED (`reset_circuit_breakers`).
    pub(crate) fn reset(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.opened_at = None;
        self.trial_in_flight = false;
        self.set(BreakerState::Closed)
    }

    fn open(&mut self, now: Instant) -> Option<Transition> {
        self.opened_at = Some(now);
        self.set(BreakerState::Open)
    }

    fn set(&mut self, to: BreakerState) -> Option<Transition> {
        let from = std::mem::replace(&mut self.state, to);
        (from != to).then_some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(30);

    fn fail_n(b: &mut Breaker, n: u32, now: Instant) -> Option<Transition> {
        let mut last = None;
        for _ in 0..n {
            let (adm, _) = b.try_acquire(now).expect("admitted");
            last = b.on_failure(adm, now);
        }
        last
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let now = Instant::now();
        let mut b = Breaker::new(5, OPEN);
        assert_eq!(fail_n(&mut b, 4, now), None);
        assert_eq!(b.state(), BreakerState::Closed);
        let t = fail_n(&mut b, 1, now);
        assert_eq!(
            t,
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert!(b.try_acquire(now + Duration::from_secs(29)).is_none());
    }

    #[test]
    fn a_success_resets_the_count() {
        let now = Instant::now();
        let mut b = Breaker::new(3, OPEN);
        fail_n(&mut b, 2, now);
        let (adm, _) = b.try_acquire(now).unwrap();
        b.on_success(adm);
        fail_n(&mut b, 2, now);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_exactly_one_trial_then_closes_on_success() {
        let now = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        fail_n(&mut b, 1, now);
        let later = now + OPEN;
        let (adm, t) = b.try_acquire(later).expect("trial");
        assert_eq!(adm, Admission::Trial);
        assert_eq!(t.map(|t| t.to), Some(BreakerState::HalfOpen));
        assert!(b.try_acquire(later).is_none(), "only one trial at a time");
        assert_eq!(b.on_success(adm).map(|t| t.to), Some(BreakerState::Closed));
        assert_eq!(b.try_acquire(later).map(|a| a.0), Some(Admission::Normal));
    }

    #[test]
    fn failed_trial_reopens_for_a_full_period() {
        let now = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        fail_n(&mut b, 1, now);
        let later = now + OPEN;
        let (adm, _) = b.try_acquire(later).unwrap();
        assert_eq!(
            b.on_failure(adm, later).map(|t| t.to),
            Some(BreakerState::Open)
        );
        assert!(b.try_acquire(later + OPEN / 2).is_none());
        assert!(b.try_acquire(later + OPEN).is_some());
    }

    #[test]
    fn released_trial_lets_the_next_caller_try() {
        let now = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        fail_n(&mut b, 1, now);
        let (adm, _) = b.try_acquire(now + OPEN).unwrap();
        b.release(adm);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire(now + OPEN).is_some());
    }

    #[test]
    fn reset_closes() {
        let now = Instant::now();
        let mut b = Breaker::new(1, OPEN);
        fail_n(&mut b, 1, now);
        assert_eq!(b.reset().map(|t| t.to), Some(BreakerState::Closed));
        assert_eq!(b.consecutive_failures(), 0);
        assert!(b.try_acquire(now).is_some());
    }
}
