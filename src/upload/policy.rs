//! The upload retry policy — separate from API calls' ([`crate::net::retry`]). Policy only
//! (pure, unit-tested): `crate::net::attempt` is the loop that acts on it.
//!
//! Rules:
//! - every upload carries an `Idempotency-Key` (generated when the caller gives none), so any
//!   failure may be retried without the server storing the file twice;
//! - the timeout is idle-based: an attempt fails when no body byte went out (and no response byte
//!   came in) for `upload_idle_timeout_ms` — a 2 GB video on a slow link is fine, a stalled one is
//!   not; there is no total timeout;
//! - **failover to another backend only before the first byte**: a connect failure, or a failure
//!   before any body byte was taken, moves to the next backend within the same round; once body
//!   bytes went to a backend, every retry goes to that same backend (its idempotency store is the
//!   one that knows the key);
//! - timeouts, broken connections, 5xx, 408 and 429 are retried after a full-jitter backoff
//!   (the attempt loop, `crate::net::attempt`, with the client's base/max delays), at most
//!   `upload_max_retries` times; `Retry-After` is honoured up to [`RETRY_AFTER_CAP`]; other 4xx
//!   are final;
//! - breakers: transport errors, idle timeouts and 5xx count as failures, 408/429 are neutral,
//!   2xx–4xx count as successes (but only a 2xx ends an upload successfully: a 3xx is final,
//!   reported as `UnexpectedRedirect` with its `Location`) — with the latency measured from the end of the body to the
//!   response, not the transfer time (a long upload says nothing about the backend's speed).

use std::time::Duration;

pub(crate) use crate::net::attempt::Step;
use crate::net::retry::{classify_status, Verdict};
use crate::net::transport::AttemptErrorKind;

/// Longest `Retry-After` an upload waits for; a longer one ends the upload with the status.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// How one upload attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response arrived (any status).
    Response {
        /// HTTP status.
        status: u16,
        /// Parsed `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// No response.
    Failed {
        /// Connect failure, idle timeout, or broken connection.
        kind: AttemptErrorKind,
        /// Body bytes the transport took from the stream before the failure.
        body_bytes_sent: u64,
    },
}

/// How the attempt counts for its backend's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerVerdict {
    /// The backend answered properly.
    Success,
    /// Counts against the backend.
    Failure,
    /// Says nothing about the backend's health (408/429).
    Neutral,
}

/// Decides what follows an attempt.
pub(crate) fn next_step(outcome: &Outcome) -> Step {
    match outcome {
        // Only a 2xx stored the file: an unfollowed redirect (3xx) is final, never a success.
        Outcome::Response { status, .. } if (300..400).contains(status) => Step::Final,
        Outcome::Response {
            status,
            retry_after,
        } => match classify_status(*status, *retry_after) {
            Verdict::Success => Step::Success,
            Verdict::Final => Step::Final,
            Verdict::Retryable { retry_after, .. } => Step::Retry { retry_after },
        },
        Outcome::Failed {
            kind,
            body_bytes_sent,
        } => {
            if *kind == AttemptErrorKind::Connect || *body_bytes_sent == 0 {
                Step::FailOver
            } else {
                Step::Retry { retry_after: None }
            }
        }
    }
}

/// How the attempt counts for the breaker.
pub(crate) fn breaker_verdict(outcome: &Outcome) -> BreakerVerdict {
    match outcome {
        Outcome::Response { status, .. } => match classify_status(*status, None) {
            Verdict::Success | Verdict::Final => BreakerVerdict::Success,
            Verdict::Retryable {
                breaker_failure: true,
                ..
            } => BreakerVerdict::Failure,
            Verdict::Retryable { .. } => BreakerVerdict::Neutral,
        },
        Outcome::Failed { .. } => BreakerVerdict::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(kind: AttemptErrorKind, sent: u64) -> Outcome {
        Outcome::Failed {
            kind,
            body_bytes_sent: sent,
        }
    }

    fn status(s: u16) -> Outcome {
        Outcome::Response {
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn failover_only_before_the_first_body_byte() {
        use AttemptErrorKind::*;
        assert_eq!(next_step(&failed(Connect, 0)), Step::FailOver);
        assert_eq!(next_step(&failed(Broken, 0)), Step::FailOver);
        assert_eq!(next_step(&failed(Timeout, 0)), Step::FailOver);
        let pinned = Step::Retry { retry_after: None };
        assert_eq!(next_step(&failed(Broken, 1)), pinned);
        assert_eq!(next_step(&failed(Timeout, 10_000_000)), pinned);
    }

    #[test]
    fn statuses() {
        assert_eq!(next_step(&status(200)), Step::Success);
        assert_eq!(next_step(&status(201)), Step::Success);
        for s in [400, 401, 404, 413, 415, 422] {
            assert_eq!(next_step(&status(s)), Step::Final, "{s}");
        }
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(next_step(&status(s)), Step::Retry { .. }), "{s}");
        }
        let ra = Some(Duration::from_secs(3));
        assert_eq!(
            next_step(&Outcome::Response {
                status: 503,
                retry_after: ra
            }),
            Step::Retry { retry_after: ra }
        );
    }

    #[test]
    fn breaker_accounting() {
        assert_eq!(breaker_verdict(&status(201)), BreakerVerdict::Success);
        assert_eq!(breaker_verdict(&status(413)), BreakerVerdict::Success);
        assert_eq!(breaker_verdict(&status(429)), BreakerVerdict::Neutral);
        assert_eq!(breaker_verdict(&status(503)), BreakerVerdict::Failure);
        assert_eq!(
            breaker_verdict(&failed(AttemptErrorKind::Timeout, 5)),
            BreakerVerdict::Failure
        );
    }
}
