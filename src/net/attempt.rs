//! The one attempt loop. Plain requests, uploads and WebSocket handshakes all run through [`run`]:
//! backend choice through the breakers, failover within a pass, full-jitter backoff rounds, the
//! retry budget, hedging, and the rule that a request which may not be sent twice never is.
//!
//! What differs between them is plugged in, tower-style: an [`Exchange`] sends one attempt and says
//! what its outcome means ([`Tried`]: the next [`Step`] and how it counts for the backend's
//! breaker), and a [`Plan`] holds the numbers (rounds, delays, hedging, pinning). The loop owns
//! the breaker permits, so every attempt is reported exactly once (a dropped hedge leg releases
//! its permit without a verdict). Time is tokio's (pausable in tests) and jitter comes from the
//! [`super::Network`]'s injectable source, so every decision here has a deterministic unit test.

use std::future::Future;
use std::time::Duration;

use super::hedge;
use super::record::{AttemptWatch, Wire};
use super::retry::{backoff_delay, next_delay};
use super::select::{Backend, Permit};
use super::Network;
use crate::error::ApiError;
use crate::observe::AttemptReason;
use crate::types::HttpMethod;

/// What the loop does after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The call is done: hand the value to the caller.
    Success,
    /// A final answer (e.g. a 4xx): stop, report this attempt.
    Final,
    /// Nothing reached this backend (or it is pointless there): try the next backend now.
    FailOver,
    /// Worth another try: the next backend in this pass, or (when pinned) a backoff round.
    Retry {
        /// Server-requested delay (`Retry-After`).
        retry_after: Option<Duration>,
    },
}

/// How one attempt counts for its backend's breaker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Health {
    /// The backend answered properly, in this latency.
    Success(Duration),
    /// Counts against the backend (5xx, slow, protocol error).
    Failure(String),
    /// The backend could not be reached (connect error, timeout, broken connection).
    Unreachable(String),
    /// Says nothing about the backend (408/429).
    Neutral(String),
    /// The attempt was not made after all: release the permit without a verdict.
    NotAttempted,
}

/// One finished attempt, as the exchange judged it.
#[derive(Debug)]
pub(crate) struct Tried<V> {
    /// What the attempt produced (a response, or what went wrong), for the caller.
    pub value: V,
    /// What the loop does next.
    pub step: Step,
    /// How it counts for the breaker.
    pub health: Health,
    /// Request bytes may have reached the server (anything but a connect failure).
    pub sent: bool,
}

/// Sends one attempt to one backend. `&self`: a hedged call runs two attempts at once.
pub(crate) trait Exchange {
    /// What an attempt produces.
    type Value;
    /// One attempt. `Err` ends the whole call at once with that error (cancelled, the file changed,
    /// …); the permit is released without a verdict.
    fn send(
        &self,
        index: usize,
        backend: &Backend,
    ) -> impl Future<Output = Result<Tried<Self::Value>, ApiError>>;

    /// Method and path of the attempts, for attempt records and the backends' recent windows;
    /// `None` (the default): this exchange's attempts are not recorded.
    fn describe(&self) -> Option<(HttpMethod, &str)> {
        None
    }

    /// What the wire said about one attempt, from its value (see [`Exchange::describe`]).
    fn wire(&self, _value: &Self::Value) -> Option<Wire> {
        None
    }
}

/// The numbers of one call.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Backoff rounds after the first pass (0 = one pass over the backends).
    pub max_rounds: u32,
    /// Most attempts that (may have) reached a server in the whole call, failovers and hedges
    /// included (`1 + max_retries` for plain requests); attempts that sent nothing (connect
    /// failures) are free.
    pub max_sends: u32,
    /// May a request that (maybe) reached a server be sent again?
    pub may_resend: bool,
    /// Race a second backend after this long (only when `may_resend`).
    pub hedge_after: Option<Duration>,
    /// Once an attempt that reached a backend asks for a retry, every retry goes to that backend
    /// after a backoff (uploads: its idempotency store knows the key).
    pub(crate) pin_on_retry: bool,
    /// First backoff delay and cap (full jitter).
    pub base_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this ends the call instead of waiting.
    pub retry_after_cap: Duration,
    /// Re-sends spend from the client's retry budget.
    pub spend_budget: bool,
    /// Successes slower than this count as breaker failures.
    pub slow_call: Option<Duration>,
}

impl Plan {
    /// A plan with no rounds, no hedging, no pinning, no budget: fill in what the call needs.
    pub(crate) fn new(base_delay: Duration, max_delay: Duration) -> Self {
        Plan {
            max_rounds: 0,
            max_sends: u32::MAX,
            may_resend: true,
            hedge_after: None,
            pin_on_retry: false,
            base_delay,
            max_delay,
            retry_after_cap: Duration::MAX,
            spend_budget: false,
            slow_call: None,
        }
    }
}

/// A call that succeeded.
#[derive(Debug)]
pub(crate) struct Done<V> {
    /// The successful attempt's value.
    pub value: V,
    /// The backend that answered.
    pub index: usize,
    /// Attempts made (hedges included).
    pub attempts: u32,
}

/// Why a call stopped without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Every breaker was open: nothing was sent.
    NothingAdmissible,
    /// The last attempt was final.
    Final,
    /// Out of rounds, or the request may not be sent again, or the budget is spent.
    Exhausted,
    /// The server asked to wait longer than the plan allows.
    RetryAfterTooLong,
    /// The app went offline during a backoff.
    Offline,
    /// The exchange ended the call with this error.
    Aborted(ApiError),
}

/// A call that failed: the last attempt and how the call went.
#[derive(Debug)]
pub(crate) struct Failed<V> {
    /// Why it stopped.
    pub stop: Stop,
    /// The last finished attempt: backend index and value.
    pub last: Option<(usize, V)>,
    /// Attempts made.
    pub attempts: u32,
    /// Retries were pinned to one backend.
    pub pinned: bool,
}

/// Sends one attempt on `permit` and reports its outcome to the breaker (and, for an exchange
/// that describes itself, as an attempt record: `number` within the call, for `reason`).
async fn attempt<E: Exchange>(
    net: &Network,
    ex: &E,
    permit: Permit,
    slow: Option<Duration>,
    (number, reason): (u32, AttemptReason),
) -> (usize, Result<Tried<E::Value>, ApiError>) {
    let index = permit.index;
    let watch = ex
        .describe()
        .map(|what| AttemptWatch::begin(net, index, what, number, reason));
    let tried = ex.send(index, permit.backend()).await;
    if let Some(watch) = watch {
        match &tried {
            Ok(t) => {
                if let Some(wire) = ex.wire(&t.value) {
                    watch.finish(wire);
                }
            }
            Err(e) => watch.finish(Wire::aborted(e)),
        }
    }
    if let Ok(t) = &tried {
        match &t.health {
            Health::Success(latency) => match slow {
                Some(limit) if *latency > limit => {
                    permit.failure(format!("slow call: {} ms", latency.as_millis()), false)
                }
                _ => permit.success(*latency),
            },
            Health::Failure(detail) => permit.failure(detail.clone(), false),
            Health::Unreachable(detail) => permit.unreachable(detail.clone(), false),
            Health::Neutral(detail) => permit.neutral(detail.clone()),
            Health::NotAttempted => drop(permit),
        }
    }
    (index, tried)
}

/// Runs `ex` under `plan` over the network's backends.
pub(crate) async fn run<E: Exchange>(
    net: &Network,
    ex: &E,
    plan: &Plan,
) -> Result<Done<E::Value>, Failed<E::Value>> {
    let backends = net.backends();
    let mut attempts = 0u32;
    let mut sent_any = false;
    // Attempts that (may have) reached a server: bounded by `plan.max_sends`.
    let mut reached = 0u32;
    let mut pinned: Option<usize> = None;
    let mut last: Option<(usize, E::Value)> = None;
    let fail = |stop, last, attempts, pinned: Option<usize>| Failed {
        stop,
        last,
        attempts,
        pinned: pinned.is_some(),
    };
    let mut round = 0u32;
    loop {
        let mut tried: Vec<usize> = Vec::new();
        let mut retry_after: Option<Duration> = None;
        'pass: loop {
            let now = net.now();
            let permit = match pinned {
                Some(i) => backends.acquire(i, now),
                None => backends.acquire_best(now, &tried),
            };
            let Some(permit) = permit else { break };
            if reached >= plan.max_sends {
                drop(permit);
                return Err(fail(Stop::Exhausted, last, attempts, pinned));
            }
            if attempts > 0 {
                if sent_any && !plan.may_resend {
                    return Err(fail(Stop::Exhausted, last, attempts, pinned));
                }
                if plan.spend_budget && !net.withdraw_budget() {
                    return Err(fail(Stop::Exhausted, last, attempts, pinned));
                }
                if !tried.is_empty() {
                    net.count_failover();
                }
            }
            let reason = if attempts == 0 {
                AttemptReason::First
            } else if tried.is_empty() {
                AttemptReason::Retry
            } else {
                AttemptReason::Failover
            };
            tried.push(permit.index);
            attempts += 1;
            let this = (attempts, reason);
            let finished = match plan.hedge_after {
                Some(delay) if plan.may_resend && pinned.is_none() => {
                    let (tried, attempts) = (&mut tried, &mut attempts);
                    let primary = attempt(net, ex, permit, plan.slow_call, this);
                    hedge::race(primary, delay, || {
                        // The primary leg may reach a server too: a hedge must fit beside it.
                        if reached.saturating_add(2) > plan.max_sends {
                            return None;
                        }
                        let hedge = backends.acquire_best(net.now(), tried)?;
                        if plan.spend_budget && !net.withdraw_budget() {
                            return None;
                        }
                        net.count_hedge();
                        tried.push(hedge.index);
                        *attempts += 1;
                        let leg = (*attempts, AttemptReason::Hedge);
                        Some(attempt(net, ex, hedge, plan.slow_call, leg))
                    })
                    .await
                }
                _ => vec![attempt(net, ex, permit, plan.slow_call, this).await],
            };
            for (index, result) in finished {
                let t = match result {
                    Ok(t) => t,
                    Err(e) => return Err(fail(Stop::Aborted(e), last, attempts, pinned)),
                };
                sent_any |= t.sent;
                reached += u32::from(t.sent);
                match t.step {
                    Step::Success => {
                        return Ok(Done {
                            value: t.value,
                            index,
                            attempts,
                        })
                    }
                    Step::Final => {
                        return Err(fail(Stop::Final, Some((index, t.value)), attempts, pinned))
                    }
                    Step::FailOver => {
                        last = Some((index, t.value));
                        if pinned.is_some() {
                            break 'pass; // the pinned backend: back off, then try it again
                        }
                    }
                    Step::Retry { retry_after: ra } => {
                        retry_after = retry_after.max(ra);
                        last = Some((index, t.value));
                        if plan.pin_on_retry {
                            pinned = Some(index);
                            break 'pass;
                        }
                    }
                }
            }
        }
        if last.is_none() {
            return Err(fail(Stop::NothingAdmissible, None, attempts, pinned));
        }
        if (sent_any && !plan.may_resend) || round >= plan.max_rounds {
            return Err(fail(Stop::Exhausted, last, attempts, pinned));
        }
        let backoff = backoff_delay(round, plan.base_delay, plan.max_delay, net.jitter());
        let Some(delay) = next_delay(backoff, retry_after, plan.retry_after_cap) else {
            return Err(fail(Stop::RetryAfterTooLong, last, attempts, pinned));
        };
        tokio::time::sleep(delay).await;
        if !net.is_online() {
            return Err(fail(Stop::Offline, last, attempts, pinned));
        }
        round += 1;
        net.count_retry();
    }
}
