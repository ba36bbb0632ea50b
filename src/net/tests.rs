//! Deterministic tests of the attempt loop: a scripted [`Transport`], tokio's paused clock and a
//! fixed jitter, so selection, failover, backoff, Retry-After, the budget, hedging and breakers
//! are decided without sockets or real time. The real-server tests in `tests/` stay.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::transport::{
    AttemptError, AttemptErrorKind, Outgoing, RawResponse, SendFuture, Transport,
};
use super::{NetConfig, NetSettings, Network, Rounds};
use crate::error::ApiError;
use crate::events::{Counters, EventBus};
use crate::net::{BreakerConfig, HealthConfig, RetryConfig, TimeoutConfig};
use crate::types::{ApiRequest, HttpMethod};

/// What a scripted backend does for one attempt: wait, then answer (or fail).
#[derive(Clone)]
struct Reply {
    after: Duration,
    result: Result<RawResponse, AttemptError>,
}

fn status(code: u16) -> Reply {
    Reply {
        after: Duration::from_millis(10),
        result: Ok(RawResponse {
            status: code,
            headers: HashMap::new(),
            body: code.to_string().into_bytes(),
            retry_after: None,
            head_after: None,
            reused: None,
        }),
    }
}

fn retry_after(code: u16, secs: u64) -> Reply {
    let mut r = status(code);
    if let Ok(raw) = &mut r.result {
        raw.retry_after = Some(Duration::from_secs(secs));
    }
    r
}

fn fail(kind: AttemptErrorKind) -> Reply {
    Reply {
        after: Duration::from_millis(10),
        result: Err(AttemptError {
            kind,
            detail: format!("{kind:?}"),
        }),
    }
}

fn slow(mut r: Reply, after: Duration) -> Reply {
    r.after = after;
    r
}

/// Backends `b0`, `b1`, …: each answers from its script (the last reply repeats), and every
/// attempt is recorded as (backend, paused-clock time since start).
struct Script {
    replies: Mutex<HashMap<String, VecDeque<Reply>>>,
    sent: Mutex<Vec<(String, Duration)>>,
    started: tokio::time::Instant,
}

impl Script {
    fn new(backends: &[(&str, Vec<Reply>)]) -> Arc<Self> {
        Arc::new(Script {
            replies: Mutex::new(
                backends
                    .iter()
                    .map(|(b, r)| (b.to_string(), r.iter().cloned().collect()))
                    .collect(),
            ),
            sent: Mutex::default(),
            started: tokio::time::Instant::now(),
        })
    }

    fn sent_to(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.0.clone())
            .collect()
    }

    fn sent_at(&self) -> Vec<Duration> {
        self.sent.lock().unwrap().iter().map(|s| s.1).collect()
    }
}

impl Transport for Script {
    fn send<'a>(&'a self, out: Outgoing<'a>) -> SendFuture<'a> {
        let host = out.url.host_str().unwrap_or_default().to_string();
        self.sent
            .lock()
            .unwrap()
            .push((host.clone(), self.started.elapsed()));
        let reply = {
            let mut all = self.replies.lock().unwrap();
            let q = all.get_mut(&host).expect("a scripted backend");
            if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q.front().cloned().expect("a reply")
            }
        };
        Box::pin(async move {
            tokio::time::sleep(reply.after.min(out.timeout)).await;
            if reply.after > out.timeout {
                return Err(AttemptError {
                    kind: AttemptErrorKind::Timeout,
                    detail: "timed out".into(),
                });
            }
            reply.result
        })
    }
}

struct Setup {
    backends: usize,
    retry: RetryConfig,
    breaker: BreakerConfig,
    request_ms: i32,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            backends: 2,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            request_ms: 30_000,
        }
    }
}

fn network(setup: Setup, script: Arc<Script>) -> Network {
    let backends: Vec<String> = (0..setup.backends)
        .map(|i| format!("http://b{i}"))
        .collect();
    let timeouts = TimeoutConfig {
        request_ms: setup.request_ms,
        ..TimeoutConfig::default()
    };
    let settings = NetSettings::from_config(NetConfig {
        backends: &backends,
        default_headers: &HashMap::new(),
        timeouts: &timeouts,
        retry: &setup.retry,
        breaker: &setup.breaker,
        health: &HealthConfig::default(),
        limits: &super::LimitsConfig::default(),
        auth: &super::AuthConfig::default(),
    })
    .unwrap();
    let counters = Arc::new(Counters::default());
    let events = Arc::new(EventBus::new(counters.clone()).unwrap());
    // Jitter fixed at one half: every backoff is half its exponential cap.
    Network::with_transport(settings, events, counters, script, Box::new(|| 0.5))
}

/// Two backends, hedging after 100 ms.
fn hedging_after_100ms(script: Arc<Script>) -> Network {
    let retry = RetryConfig {
        hedge_after_ms: Some(100),
        ..RetryConfig::default()
    };
    network(
        Setup {
            retry,
            ..Setup::default()
        },
        script,
    )
}

fn get() -> ApiRequest {
    ApiRequest::get("/x")
}

fn post() -> ApiRequest {
    ApiRequest::new(HttpMethod::Post, "/x")
}

#[tokio::test(start_paused = true)]
async fn a_connect_failure_fails_over_to_the_next_backend_within_the_call() {
    let script = Script::new(&[
        ("b0", vec![fail(AttemptErrorKind::Connect)]),
        ("b1", vec![status(200)]),
    ]);
    let net = network(Setup::default(), script.clone());
    let r = net.execute(get(), Rounds::Configured).await.unwrap();
    assert_eq!(
        (r.status, r.backend.as_str(), r.attempts),
        (200, "http://b1", 2)
    );
    assert_eq!(script.sent_to(), ["b0", "b1"]);
    assert_eq!(net.counters().failovers, 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_without_a_key_reaches_a_server_at_most_once() {
    let script = Script::new(&[("b0", vec![status(503)]), ("b1", vec![status(200)])]);
    let net = network(Setup::default(), script.clone());
    let e = net.execute(post(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(script.sent_to(), ["b0"]);
}

#[tokio::test(start_paused = true)]
async fn a_post_whose_connect_failed_may_still_move_on_nothing_was_sent() {
    let script = Script::new(&[
        ("b0", vec![fail(AttemptErrorKind::Connect)]),
        ("b1", vec![status(201)]),
    ]);
    let net = network(Setup::default(), script.clone());
    let r = net.execute(post(), Rounds::Configured).await.unwrap();
    assert_eq!((r.status, r.attempts), (201, 2));
}

#[tokio::test(start_paused = true)]
async fn a_keyed_post_is_retried_like_an_idempotent_request() {
    let script = Script::new(&[("b0", vec![status(503), status(200)])]);
    let net = network(
        Setup {
            backends: 1,
            ..Setup::default()
        },
        script.clone(),
    );
    let mut req = post();
    req.idempotency_key = Some("k-1".into());
    let r = net.execute(req, Rounds::Configured).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 2));
}

#[tokio::test(start_paused = true)]
async fn backoff_rounds_are_full_jitter_exponential_and_bounded_by_max_retries() {
    let script = Script::new(&[("b0", vec![status(503)])]);
    let retry = RetryConfig {
        max_retries: 3,
        base_delay_ms: 1_000,
        max_delay_ms: 3_000,
        ..RetryConfig::default()
    };
    let net = network(
        Setup {
            backends: 1,
            retry,
            ..Setup::default()
        },
        script.clone(),
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    // Jitter 0.5: waits of 0.5, 1.0, 1.5 (capped at 3.0 · 0.5) seconds between the 4 attempts,
    // each attempt taking 10 ms.
    let at: Vec<u128> = script.sent_at().iter().map(|d| d.as_millis()).collect();
    assert_eq!(at, [0, 510, 1_520, 3_030]);
    assert_eq!(net.counters().retries, 3);
}

#[tokio::test(start_paused = true)]
async fn one_pass_means_failover_but_no_backoff_round() {
    let script = Script::new(&[("b0", vec![status(503)]), ("b1", vec![status(503)])]);
    let net = network(Setup::default(), script.clone());
    let e = net.execute(get(), Rounds::OnePass).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(script.sent_to(), ["b0", "b1"]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_stretches_the_backoff_and_a_longer_one_than_the_timeout_stops_the_call() {
    let script = Script::new(&[("b0", vec![retry_after(503, 4), status(200)])]);
    let net = network(
        Setup {
            backends: 1,
            ..Setup::default()
        },
        script.clone(),
    );
    let r = net.execute(get(), Rounds::Configured).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        script.sent_at()[1] >= Duration::from_secs(4),
        "{:?}",
        script.sent_at()
    );

    let script = Script::new(&[("b0", vec![retry_after(429, 120)])]);
    let net = network(
        Setup {
            backends: 1,
            request_ms: 5_000,
            ..Setup::default()
        },
        script.clone(),
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 429, .. }), "{e:?}");
    assert_eq!(
        script.sent_to().len(),
        1,
        "no wait of 120 s for a 5 s request"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_retry_budget_refuses_every_re_send() {
    let script = Script::new(&[("b0", vec![status(503)]), ("b1", vec![status(200)])]);
    let retry = RetryConfig {
        budget_ratio: 0.0,
        budget_min_per_sec: 0,
        ..RetryConfig::default()
    };
    let net = network(
        Setup {
            retry,
            ..Setup::default()
        },
        script.clone(),
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(script.sent_to(), ["b0"]);
    assert_eq!(net.counters().budget_exhausted, 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_and_the_faster_answer_wins() {
    let script = Script::new(&[
        ("b0", vec![slow(status(200), Duration::from_secs(5))]),
        ("b1", vec![status(200)]),
    ]);
    let net = hedging_after_100ms(script.clone());
    let r = net.execute(get(), Rounds::Configured).await.unwrap();
    assert_eq!((r.backend.as_str(), r.attempts), ("http://b1", 2));
    assert_eq!(script.sent_at()[1], Duration::from_millis(100));
    assert_eq!(net.counters().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_hedged() {
    let script = Script::new(&[
        ("b0", vec![slow(status(201), Duration::from_secs(1))]),
        ("b1", vec![status(201)]),
    ]);
    let net = hedging_after_100ms(script.clone());
    let r = net.execute(post(), Rounds::Configured).await.unwrap();
    assert_eq!(r.backend, "http://b0");
    assert_eq!(script.sent_to(), ["b0"]);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fences_its_backend_off_and_all_open_fails_fast() {
    let script = Script::new(&[("b0", vec![status(503)])]);
    let breaker = BreakerConfig {
        failure_threshold: 2,
        ..BreakerConfig::default()
    };
    let retry = RetryConfig {
        max_retries: 5,
        ..RetryConfig::default()
    };
    let net = network(
        Setup {
            backends: 1,
            breaker,
            retry,
            ..Setup::default()
        },
        script.clone(),
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(
        script.sent_to().len(),
        2,
        "the breaker opened after two failures"
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(
        matches!(e, ApiError::AllBackendsUnavailable { attempts: 0, .. }),
        "{e:?}"
    );
    assert_eq!(script.sent_to().len(), 2, "nothing sent while open");
}

#[tokio::test(start_paused = true)]
async fn timeouts_alone_are_reported_as_a_timeout() {
    let script = Script::new(&[("b0", vec![slow(status(200), Duration::from_secs(60))])]);
    let retry = RetryConfig {
        max_retries: 1,
        ..RetryConfig::default()
    };
    let net = network(
        Setup {
            backends: 1,
            retry,
            request_ms: 1_000,
            ..Setup::default()
        },
        script.clone(),
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Timeout {
                timeout_ms: 1_000,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(script.sent_to().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_final_4xx_is_not_retried_and_keeps_the_backend_healthy() {
    let script = Script::new(&[("b0", vec![status(404)]), ("b1", vec![status(200)])]);
    let net = network(Setup::default(), script.clone());
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 404, .. }), "{e:?}");
    assert_eq!(script.sent_to(), ["b0"]);
    assert!(net.backend_status()[0].healthy);
}

#[tokio::test(start_paused = true)]
async fn offline_sends_nothing() {
    let script = Script::new(&[("b0", vec![status(200)])]);
    let net = network(
        Setup {
            backends: 1,
            ..Setup::default()
        },
        script.clone(),
    );
    net.set_online(false);
    assert_eq!(
        net.execute(get(), Rounds::Configured).await.unwrap_err(),
        ApiError::Offline
    );
    assert!(script.sent_to().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_keyed_post_is_retryable_but_never_hedged_against_itself() {
    // Issue 12 (Build 5): a key makes a POST safe to *retry* after a failure, not to race: two
    // backends sharing a key store answer the duplicate with 409 "in progress".
    let script = Script::new(&[
        ("b0", vec![slow(status(201), Duration::from_secs(1))]),
        ("b1", vec![status(409)]),
    ]);
    let net = hedging_after_100ms(script.clone());
    for method in [HttpMethod::Post, HttpMethod::Patch] {
        let mut req = ApiRequest::new(method, "/x");
        req.idempotency_key = Some(format!("k-{method:?}"));
        let r = net.execute(req, Rounds::Configured).await.unwrap();
        assert_eq!(
            (r.status, r.backend.as_str(), r.attempts),
            (201, "http://b0", 1)
        );
    }
    assert_eq!(script.sent_to(), ["b0", "b0"]);
    assert_eq!(net.counters().hedges, 0);
    // Idempotent by definition: still hedged (here the hedge's 409 answers first).
    let r = net
        .execute(ApiRequest::new(HttpMethod::Put, "/x"), Rounds::Configured)
        .await;
    assert!(
        matches!(r, Err(ApiError::Http { status: 409, .. })),
        "{r:?}"
    );
    assert_eq!(net.counters().hedges, 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pin_mismatch_is_final_and_never_fails_over() {
    let script = Script::new(&[
        (
            "b0",
            vec![Reply {
                after: Duration::from_millis(10),
                result: Err(AttemptError {
                    kind: AttemptErrorKind::PinMismatch,
                    detail: "b0".into(),
                }),
            }],
        ),
        ("b1", vec![status(200)]),
    ]);
    let net = network(Setup::default(), script.clone());
    for req in [get(), post()] {
        let err = net.execute(req, Rounds::Configured).await.unwrap_err();
        assert_eq!(
            err,
            ApiError::CertificatePinMismatch {
                backend: "http://b0".into(),
                host: "b0".into()
            }
        );
    }
    assert_eq!(script.sent_to(), ["b0", "b0"], "never failed over");
    assert_eq!(net.counters().failovers, 0);
}

#[tokio::test(start_paused = true)]
async fn one_call_reaches_servers_at_most_one_plus_max_retries_times_over_any_number_of_backends() {
    // Issue 13: three backends answering 503, max_retries 3, a keyed POST reached servers 8 times.
    let script = Script::new(&[
        ("b0", vec![status(503)]),
        ("b1", vec![status(503)]),
        ("b2", vec![status(503)]),
    ]);
    let net = network(
        Setup {
            backends: 3,
            retry: RetryConfig {
                max_retries: 3,
                ..RetryConfig::default()
            },
            ..Setup::default()
        },
        script.clone(),
    );
    let mut req = post();
    req.idempotency_key = Some("k-amp".into());
    let e = net.execute(req, Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(script.sent_to().len(), 4, "{:?}", script.sent_to());
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(script.sent_to().len(), 8, "{:?}", script.sent_to());
}

#[tokio::test(start_paused = true)]
async fn connect_failures_that_sent_nothing_do_not_count_against_the_sends() {
    let script = Script::new(&[
        ("b0", vec![fail(AttemptErrorKind::Connect)]),
        ("b1", vec![status(503)]),
        ("b2", vec![status(200)]),
    ]);
    let net = network(
        Setup {
            backends: 3,
            retry: RetryConfig {
                max_retries: 1,
                ..RetryConfig::default()
            },
            ..Setup::default()
        },
        script.clone(),
    );
    let r = net.execute(get(), Rounds::Configured).await.unwrap();
    assert_eq!((r.status, r.attempts), (200, 3));
    assert_eq!(script.sent_to(), ["b0", "b1", "b2"]);
    // With no retries, one send: a 503 is the answer, no failover to a backend that reached.
    let script = Script::new(&[("b0", vec![status(503)]), ("b1", vec![status(200)])]);
    let net = network(
        Setup {
            retry: RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            },
            ..Setup::default()
        },
        script.clone(),
    );
    let e = net.execute(get(), Rounds::Configured).await.unwrap_err();
    assert!(matches!(e, ApiError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(script.sent_to(), ["b0"]);
}
