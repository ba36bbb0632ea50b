//! What a replay outcome means for a queued request (pure; unit-tested).
//!
//! | outcome | decision |
//! |---|---|
//! | 2xx/3xx | delivered: the row is deleted |
//! | 409 (the original may still be in flight at the server), 408, 429, 5xx | retry later, with backoff (no sooner than a 429/503's `Retry-After`) |
//! | timeout, broken connection, every backend down | retry later, with backoff |
//! | offline, client shut down | not an attempt: wait, try again when possible |
//! | `Unauthorized` (the credential refresh failed, or refreshed credentials were refused) | not an attempt (a 401 was not executed): the queue pauses until `credentials_changed()` |
//! | other 4xx (400, 422, …), an invalid request | dead-letter, response kept |
//! | a retry-later failure more than `queue.max_age_ms` after the first attempt | dead-letter (never without an attempt) |

use std::time::Duration;

use crate::error::ApiError;
use crate::types::ApiResponse;

/// The decision for one replay attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// The server took it.
    Delivered(ApiResponse),
    /// Try again after a backoff delay.
    RetryLater(String),
    /// Give up: move to the dead letters with this reason (and the server's answer, if any).
    DeadLetter {
        /// Why.
        reason: String,
        /// The final status, if a server answered.
        status: Option<i32>,
        /// The final body, if a server answered.
        body: Option<Vec<u8>>,
    },
    /// Nothing was attempted (offline / shutting down): keep it as it is.
    NotAttempted,
}

/// Classifies the result of sending a queued request.
pub(crate) fn decide(result: Result<ApiResponse, ApiError>) -> Decision {
    match result {
        Ok(r) => Decision::Delivered(r),
        Err(ApiError::Http { status, body, .. }) => match status {
            408 | 409 | 429 | 500..=599 => Decision::RetryLater(format!("HTTP {status}")),
            _ => Decision::DeadLetter {
                reason: format!("rejected with HTTP {status}"),
                status: Some(status),
                body: Some(body),
            },
        },
        Err(ApiError::Offline | ApiError::Cancelled { .. } | ApiError::Unauthorized { .. }) => {
            Decision::NotAttempted
        }
        Err(e @ (ApiError::InvalidRequest { .. } | ApiError::InvalidConfig { .. })) => {
            Decision::DeadLetter {
                reason: e.to_string(),
                status: None,
                body: None,
            }
        }
        Err(e) => Decision::RetryLater(e.to_string()),
    }
}

/// Should a failed live call with `OfflinePolicy::Queue` be queued rather than reported?
/// Yes when it failed for reasons a later replay can fix.
pub(crate) fn should_queue(e: &ApiError) -> bool {
    match e {
        ApiError::Offline
        | ApiError::AllBackendsUnavailable { .. }
        | ApiError::Timeout { .. }
        | ApiError::Transport { .. }
        | ApiError::CredentialsUnavailable { .. } => true,
        ApiError::Http { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
        _ => false,
    }
}

/// Is an entry created `age` ago past `max_age`?
pub(crate) fn expired(age: Duration, max_age: Duration) -> bool {
    age > max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: i32) -> Result<ApiResponse, ApiError> {
        Err(ApiError::Http {
            status,
            body: b"why".to_vec(),
            backend: "b".into(),
        })
    }

    #[test]
    fn outcomes_map_as_documented() {
        for s in [409, 429, 500, 503] {
            assert!(matches!(decide(http(s)), Decision::RetryLater(_)), "{s}");
        }
        for s in [400, 404, 422] {
            match decide(http(s)) {
                Decision::DeadLetter { status, body, .. } => {
                    assert_eq!(status, Some(s));
                    assert_eq!(body.as_deref(), Some(&b"why"[..]));
                }
                other => panic!("{s}: {other:?}"),
            }
        }
        assert_eq!(decide(Err(ApiError::Offline)), Decision::NotAttempted);
        let unauthorized = Err(ApiError::Unauthorized {
            status: 401,
            backend: "b".into(),
            refresh_failed: true,
            reason: "r".into(),
        });
        assert_eq!(decide(unauthorized), Decision::NotAttempted);
        let t = Err(ApiError::Timeout {
            backend: "b".into(),
            timeout_ms: 5,
        });
        assert!(matches!(decide(t), Decision::RetryLater(_)));
        let inv = Err(ApiError::InvalidRequest { reason: "x".into() });
        assert!(matches!(
            decide(inv),
            Decision::DeadLetter { status: None, .. }
        ));
    }

    #[test]
    fn only_recoverable_failures_are_queued() {
        assert!(should_queue(&ApiError::Offline));
        assert!(should_queue(&ApiError::AllBackendsUnavailable {
            attempts: 0,
            last_error: String::new()
        }));
        assert!(should_queue(&ApiError::Http {
            status: 503,
            body: vec![],
            backend: String::new()
        }));
        assert!(!should_queue(&ApiError::Http {
            status: 422,
            body: vec![],
            backend: String::new()
        }));
        assert!(!should_queue(&ApiError::InvalidRequest {
            reason: String::new()
        }));
    }

    #[test]
    fn expiry() {
        assert!(!expired(Duration::from_secs(1), Duration::from_secs(1)));
        assert!(expired(Duration::from_secs(2), Duration::from_secs(1)));
    }
}
