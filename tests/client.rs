//! The core client against a real local fleet: failover, breakers, safe retries, Retry-After, backoff,
//! latency-based selection, hedging, status, offline behaviour and shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use robust_api::{
    ApiError, ApiRequest, BreakerState, ClientConfig, HttpMethod, RobustClient, StatusEvent,
    StatusListener,
};
use robust_api_fleet::{wait_until, Fault, Fleet};

/// Short delays so the tests run in well under a second each.
fn fast_config(fleet: &Fleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.retry.base_delay_ms = 10;
    c.retry.max_delay_ms = 40;
    c.breaker.open_ms = 400;
    c.timeouts.request_ms = 2_000;
    c.timeouts.connect_ms = 500;
    c
}

#[derive(Default)]
struct Recorder(Mutex<Vec<StatusEvent>>);

impl StatusListener for Recorder {
    fn on_event(&self, event: StatusEvent) -> Result<(), ApiError> {
        self.0.lock().unwrap().push(event);
        Ok(())
    }
}

impl Recorder {
    fn events(&self) -> Vec<StatusEvent> {
        self.0.lock().unwrap().clone()
    }

    fn breaker_moves(&self, backend: &str) -> Vec<BreakerState> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                StatusEvent::BreakerChanged {
                    backend: b,
                    current,
                    ..
                } if b == backend => Some(*current),
                _ => None,
            })
            .collect()
    }
}

/// A client whose start-up probes saw backend 0 clearly fastest, so it is the preferred backend
/// regardless of scheduling noise on a loaded machine (the others are slowed only while probed).
async fn client_preferring_first(fleet: &Fleet, cfg: ClientConfig) -> Arc<RobustClient> {
    for s in &fleet.servers()[1..] {
        s.set_fault(Fault::Slow(Duration::from_millis(40))).await;
    }
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    for s in &fleet.servers()[1..] {
        s.set_fault(Fault::None).await;
    }
    assert_eq!(
        client.service_status().preferred_backend,
        Some(fleet.urls()[0].clone())
    );
    client
}

fn breaker(client: &RobustClient, i: usize) -> BreakerState {
    client.service_status().backends[i].breaker_state
}

/// Waits until every backend has a latency sample (the start-up probes are done).
async fn probed(client: &RobustClient) {
    wait_until("start-up probes", Duration::from_secs(5), || {
        client
            .service_status()
            .backends
            .iter()
            .all(|b| b.latency_ewma_ms.is_some())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_returns_status_headers_body_and_backend() {
    let fleet = Fleet::start(3).await;
    let client = RobustClient::new(ClientConfig::new(fleet.urls())).unwrap();
    let r = client.get("/bytes/1024".into()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, robust_api_fleet::expected_bytes(1024));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/octet-stream")
    );
    // The backend field names the server that really answered (its X-Backend header).
    let index: usize = r.headers["x-backend"].parse().unwrap();
    assert_eq!(r.backend, fleet.urls()[index]);
    assert_eq!(r.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_traffic_fails_over_breaker_opens_then_recovers() {
    let fleet = Fleet::start(3).await;
    let urls = fleet.urls();
    let client = client_preferring_first(&fleet, fast_config(&fleet)).await;
    let events = Arc::new(Recorder::default());
    client.add_status_listener(events.clone());

    fleet.server(0).set_fault(Fault::Down).await;
    for i in 0..100 {
        let r = client
            .get(format!("/item/{i}"))
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_ne!(r.backend, urls[0]);
    }
    // Traffic may have moved away before the threshold (latency ranking on a loaded machine); the
    // failures make the backend suspect, so fast probes finish the job within a few seconds.
    wait_until("primary breaker open", Duration::from_secs(6), || {
        breaker(&client, 0) == BreakerState::Open
    })
    .await;
    let status = client.service_status();
    assert_eq!(
        status.backends[0].breaker_state,
        BreakerState::Open,
        "{status:?}"
    );
    assert!(!status.backends[0].healthy);
    assert_ne!(status.preferred_backend.as_deref(), Some(urls[0].as_str()));
    // Five failures open the breaker; afterwards the primary is only re-tried once per open period.
    assert!(
        status.counters.failovers <= 6,
        "failovers {}",
        status.counters.failovers
    );

    // The primary comes back: probed when the open period ends, HALF_OPEN -> CLOSED, used again.
    fleet.server(0).set_fault(Fault::None).await;
    wait_until("primary closed again", Duration::from_secs(3), || {
        breaker(&client, 0) == BreakerState::Closed
    })
    .await;
    let r = client.get("/after".into()).await.unwrap();
    assert_eq!(r.backend, urls[0]);
    let moves = events.breaker_moves(&urls[0]);
    assert_eq!(moves.first(), Some(&BreakerState::Open));
    assert!(
        moves.ends_with(&[BreakerState::HalfOpen, BreakerState::Closed]),
        "{moves:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_gets_no_traffic() {
    let fleet = Fleet::start(2).await;
    let mut cfg = fast_config(&fleet);
    cfg.breaker.open_ms = 60_000;
    let client = client_preferring_first(&fleet, cfg).await;
    // Backend 1 stays slower than 0's probe sample, so latency ranking keeps trying 0 first until
    // its breaker opens (with 1 fast again, a loaded machine could rank 1 first after a few calls
    // and 0 would never reach the threshold — the test's subject is the open breaker, not ranking).
    fleet
        .server(1)
        .set_fault(Fault::Slow(Duration::from_millis(40)))
        .await;
    fleet.server(0).set_fault(Fault::Status(500)).await;
    for _ in 0..50 {
        assert_eq!(
            client.get("/x".into()).await.unwrap().backend,
            fleet.urls()[1]
        );
    }
    assert_eq!(breaker(&client, 0), BreakerState::Open);
    assert_eq!(
        fleet.server(0).hits_for("/x"),
        5,
        "exactly the threshold, then nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_fail_fast_with_bounded_server_load() {
    let fleet = Fleet::start(3).await;
    let mut cfg = fast_config(&fleet);
    cfg.breaker.open_ms = 60_000;
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    fleet.set_fault_all(Fault::Status(503)).await;
    let mut last = None;
    for _ in 0..50 {
        last = Some(client.get("/x".into()).await.unwrap_err());
    }
    let hits: u64 = (0..3).map(|i| fleet.server(i).hits_for("/x")).sum();
    assert!(
        hits <= 15,
        "breakers cap the load at 3 x 5 attempts, saw {hits}"
    );
    assert!(
        matches!(
            last,
            Some(ApiError::AllBackendsUnavailable { attempts: 0, .. })
        ),
        "{last:?}"
    );
    let t = Instant::now();
    let err = client.get("/x".into()).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(50), "fails fast");
    assert!(matches!(
        err,
        ApiError::AllBackendsUnavailable { attempts: 0, .. }
    ));
    assert_eq!(
        (0..3).map(|i| fleet.server(i).hits_for("/x")).sum::<u64>(),
        hits,
        "nothing sent"
    );

    // Connection refused everywhere: same story, and the message says why.
    fleet.set_fault_all(Fault::Down).await;
    client.reset_circuit_breakers();
    let err = client.get("/x".into()).await.unwrap_err();
    match err {
        ApiError::AllBackendsUnavailable {
            attempts,
            last_error,
        } => {
            assert!(attempts >= 3, "tried every backend");
            assert!(last_error.contains("connect"), "{last_error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_without_key_is_sent_once_with_key_is_retried_with_the_same_key() {
    let fleet = Fleet::start(3).await;
    let client = client_preferring_first(&fleet, fast_config(&fleet)).await;
    fleet.set_fault_all(Fault::Status(503)).await;

    let err = client
        .post_json("/orders".into(), r#"{"sku":1}"#.into())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Http { status: 503, .. }), "{err:?}");
    let hits: u64 = (0..3).map(|i| fleet.server(i).hits_for("/orders")).sum();
    assert_eq!(
        hits, 1,
        "a POST without an idempotency key reaches a server at most once"
    );

    let mut req = ApiRequest::post_json("/payments", r#"{"amount":5}"#);
    req.idempotency_key = Some("key-123".into());
    let err = client.request(req).await.unwrap_err();
    assert!(matches!(
        err,
        ApiError::Http { status: 503, .. } | ApiError::AllBackendsUnavailable { .. }
    ));
    let keys: Vec<String> = (0..3)
        .flat_map(|i| fleet.server(i).requests())
        .filter(|r| r.path == "/payments")
        .map(|r| r.header("idempotency-key").unwrap_or("<none>").to_string())
        .collect();
    assert!(keys.len() > 1, "keyed POST is retried: {keys:?}");
    assert!(keys.iter().all(|k| k == "key-123"), "{keys:?}");

    // A POST whose connection is refused never reached anyone: it may move on.
    fleet.server(0).set_fault(Fault::Down).await;
    fleet.server(1).set_fault(Fault::None).await;
    fleet.server(2).set_fault(Fault::None).await;
    client.reset_circuit_breakers();
    // A pooled keep-alive connection to the killed server may still look open; a POST written to it
    // is ambiguous (it may have arrived) and is rightly not re-sent. A GET flushes such a connection.
    client.get("/flush".into()).await.unwrap();
    let r = client
        .post_json("/orders2".into(), "{}".into())
        .await
        .unwrap();
    assert_ne!(r.backend, fleet.urls()[0]);
    assert_eq!(r.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_responses_fail_over_for_get_but_not_for_unkeyed_post() {
    let fleet = Fleet::start(2).await;
    let client = client_preferring_first(&fleet, fast_config(&fleet)).await;
    for fault in [Fault::Truncate, Fault::ResetMidBody] {
        fleet.server(0).set_fault(fault.clone()).await;
        client.reset_circuit_breakers();
        let r = client.get("/data".into()).await.unwrap();
        assert_eq!(r.backend, fleet.urls()[1], "{fault:?}");
        fleet.server(1).reset_hits();
        let err = client
            .post_json("/data".into(), "{}".into())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ApiError::Transport { .. }),
            "{fault:?}: {err:?}"
        );
        assert_eq!(
            fleet.server(1).hits_for("/data"),
            0,
            "{fault:?}: not re-sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_too_long_a_wait_is_not() {
    let fleet = Fleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.retry.max_retries = 1;
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    fleet
        .server(0)
        .set_fault(Fault::RetryAfter {
            status: 503,
            secs: 1,
        })
        .await;
    let err = client.get("/slowdown".into()).await.unwrap_err();
    assert!(matches!(err, ApiError::Http { status: 503, .. }), "{err:?}");
    let times: Vec<Instant> = fleet
        .server(0)
        .requests()
        .iter()
        .filter(|r| r.path == "/slowdown")
        .map(|r| r.received_at)
        .collect();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(990),
        "waited {gap:?}, server asked for 1 s"
    );

    // Retry-After longer than the request timeout: the call stops instead of waiting.
    fleet
        .server(0)
        .set_fault(Fault::RetryAfter {
            status: 429,
            secs: 5,
        })
        .await;
    let t = Instant::now();
    let err = client.get("/later".into()).await.unwrap_err();
    assert!(matches!(err, ApiError::Http { status: 429, .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(fleet.server(0).hits_for("/later"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_grow_and_are_jittered() {
    let fleet = Fleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.retry.max_retries = 4;
    // Base 40 ms: large enough that a loaded machine's scheduling delay (~10 ms) stays noise.
    cfg.retry.base_delay_ms = 40;
    cfg.retry.max_delay_ms = 1_000;
    cfg.breaker.failure_threshold = 1_000;
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    fleet.server(0).set_fault(Fault::Status(500)).await;
    let mut gaps: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for call in 0..10 {
        let path = format!("/b{call}");
        client.get(path.clone()).await.unwrap_err();
        let t: Vec<Instant> = fleet
            .server(0)
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.received_at)
            .collect();
        assert_eq!(t.len(), 5, "1 try + 4 retries");
        for round in 0..4 {
            gaps[round].push((t[round + 1] - t[round]).as_secs_f64() * 1e3);
        }
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let (m0, m3) = (mean(&gaps[0]), mean(&gaps[3]));
    assert!(
        m3 > 2.0 * m0,
        "delays grow: round 0 mean {m0:.1} ms, round 3 mean {m3:.1} ms"
    );
    for (round, g) in gaps.iter().enumerate() {
        let cap = 40.0 * f64::from(1u32 << round);
        // Full jitter: uniform in [0, cap], so the median sits near cap / 2 (robust to a stray
        // scheduling delay on a loaded machine, unlike a per-sample bound).
        let mut sorted = g.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(
            median <= cap,
            "round {round}: median {median:.1} ms over its cap {cap} ms: {g:?}"
        );
        let spread =
            g.iter().cloned().fold(f64::MIN, f64::max) - g.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > cap * 0.2, "round {round} is jittered: {g:?}");
    }
    assert_eq!(client.service_status().counters.retries, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faster_of_two_healthy_backends_gets_the_traffic() {
    let fleet = Fleet::start(2).await;
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(60)))
        .await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    probed(&client).await;
    let mut on_fast = 0;
    for _ in 0..20 {
        if client.get("/x".into()).await.unwrap().backend == fleet.urls()[1] {
            on_fast += 1;
        }
    }
    assert_eq!(on_fast, 20);
    let s = client.service_status();
    assert_eq!(
        s.preferred_backend.as_deref(),
        Some(fleet.urls()[1].as_str())
    );
    assert!(s.backends[0].latency_ewma_ms.unwrap() > 50.0);
    assert!(s.backends[1].latency_ewma_ms.unwrap() < 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_get_against_a_black_holed_primary_returns_quickly() {
    let fleet = Fleet::start(2).await;
    let mut cfg = fast_config(&fleet);
    cfg.retry.hedge_after_ms = Some(100);
    cfg.timeouts.request_ms = 5_000;
    let client = client_preferring_first(&fleet, cfg).await;
    fleet.server(0).set_fault(Fault::BlackHole).await;

    let t = Instant::now();
    let r = client.get("/hedged".into()).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.backend, fleet.urls()[1]);
    assert_eq!(r.attempts, 2);
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(fleet.server(0).hits_for("/hedged"), 1);
    assert_eq!(client.service_status().counters.hedges, 1);

    // A POST is never hedged: it waits for its one attempt.
    let mut post = ApiRequest::post_json("/no-hedge", "{}");
    post.timeout_ms = Some(300);
    let err = client.request(post).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fleet.server(1).hits_for("/no-hedge"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reset_and_events() {
    let fleet = Fleet::start(2).await;
    let mut cfg = fast_config(&fleet);
    cfg.breaker.open_ms = 60_000;
    cfg.breaker.failure_threshold = 2;
    let client = RobustClient::new(cfg).unwrap();
    let events = Arc::new(Recorder::default());
    client.add_status_listener(events.clone());
    probed(&client).await;
    fleet.set_fault_all(Fault::Down).await;
    let _ = client.get("/x".into()).await;
    let s = client.service_status();
    assert!(
        s.backends
            .iter()
            .all(|b| b.breaker_state == BreakerState::Open && !b.healthy),
        "{s:?}"
    );
    assert_eq!(s.preferred_backend, None);
    assert!(s.backends.iter().all(|b| b
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("connect"))));
    assert_eq!(s.counters.requests, 1);

    fleet.set_fault_all(Fault::None).await;
    client.reset_circuit_breakers();
    let s = client.service_status();
    assert!(s
        .backends
        .iter()
        .all(|b| b.breaker_state == BreakerState::Closed && b.consecutive_failures == 0));
    assert!(client.get("/x".into()).await.is_ok());

    client.set_network_available(false);
    wait_until("events delivered", Duration::from_secs(2), || {
        events
            .0
            .lock()
            .unwrap()
            .contains(&StatusEvent::NetworkChanged { available: false })
    })
    .await;
    for url in fleet.urls() {
        assert_eq!(
            events.breaker_moves(&url),
            vec![BreakerState::Open, BreakerState::Closed]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sends_nothing_and_online_probes_at_once() {
    let fleet = Fleet::start(2).await;
    let mut cfg = fast_config(&fleet);
    cfg.health.interval_ms = 50;
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    client.set_network_available(false);
    tokio::time::sleep(Duration::from_millis(30)).await; // a probe round already in flight ends
    let before = fleet.total_hits();
    assert_eq!(
        client.get("/x".into()).await.unwrap_err(),
        ApiError::Offline
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fleet.total_hits(),
        before,
        "no probes and no requests while offline"
    );
    assert!(!client.service_status().network_available);

    client.set_network_available(true);
    wait_until("probes resume", Duration::from_secs(1), || {
        fleet.server(0).hits_for("/api/health") > 0 && fleet.total_hits() > before
    })
    .await;
    assert!(client.get("/x".into()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_and_invalid_requests_are_typed_errors() {
    for bad in [
        vec![],
        vec!["not a url".to_string()],
        vec!["ftp://x".to_string()],
    ] {
        let err = RobustClient::new(ClientConfig::new(bad.clone())).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidConfig { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let err = client.get("http://elsewhere/x".into()).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidRequest { .. }));
    let mut req = ApiRequest::new(HttpMethod::Get, "/x");
    req.headers.insert("bad name".into(), "v".into());
    assert!(matches!(
        client.request(req).await,
        Err(ApiError::InvalidRequest { .. })
    ));
    assert_eq!(fleet.server(0).hits_for("/x"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_calls_in_flight_and_later_calls() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    fleet.server(0).set_fault(Fault::BlackHole).await;
    let c = client.clone();
    let call = tokio::spawn(async move { c.get("/hang".into()).await });
    wait_until("request reached the server", Duration::from_secs(2), || {
        fleet.server(0).hits_for("/hang") == 1
    })
    .await;
    client.shutdown();
    let err = tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ApiError::Cancelled { .. }), "{err:?}");
    assert!(matches!(
        client.get("/x".into()).await,
        Err(ApiError::Cancelled { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_cancels_its_request() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    fleet.server(0).set_fault(Fault::BlackHole).await;
    let r = tokio::time::timeout(Duration::from_millis(200), client.get("/hang".into())).await;
    assert!(r.is_err(), "still hanging");
    // The abandoned request's connection is closed, so the fleet sees no open black-holed request.
    fleet.server(0).set_fault(Fault::None).await;
    assert!(client.get("/ok".into()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_keeps_a_total_outage_from_multiplying_load() {
    let fleet = Fleet::start(3).await;
    let mut cfg = fast_config(&fleet);
    cfg.breaker.failure_threshold = 1_000; // only the budget limits re-sends here
    cfg.retry.budget_ratio = 0.2;
    cfg.retry.budget_min_per_sec = 1; // floor: 10 re-sends per 10 s window
    cfg.retry.base_delay_ms = 1;
    cfg.retry.max_delay_ms = 2;
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    fleet.set_fault_all(Fault::Status(503)).await;
    for i in 0..20 {
        client.get(format!("/o{i}")).await.unwrap_err();
    }
    let sent: u64 = fleet
        .servers()
        .iter()
        .map(|s| {
            s.requests()
                .iter()
                .filter(|r| r.path.starts_with("/o"))
                .count() as u64
        })
        .sum();
    // Without a budget: 20 calls x (3 backends x 4 rounds) = 240 requests.
    assert!(
        sent <= 20 + 10 + 4,
        "20 first attempts + at most 14 re-sends, saw {sent}"
    );
    assert!(client.service_status().counters.budget_exhausted > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_successes_count_against_the_breaker_when_configured() {
    let fleet = Fleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.breaker.slow_call_threshold_ms = Some(30);
    cfg.breaker.failure_threshold = 2;
    cfg.breaker.open_ms = 60_000;
    let client = RobustClient::new(cfg).unwrap();
    probed(&client).await;
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(60)))
        .await;
    for i in 0..2 {
        assert_eq!(
            client.get(format!("/slow{i}")).await.unwrap().status,
            200,
            "slow but successful"
        );
    }
    assert_eq!(breaker(&client, 0), BreakerState::Open);
    let err = client.get("/slow-next".into()).await.unwrap_err();
    assert!(
        matches!(err, ApiError::AllBackendsUnavailable { attempts: 0, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_token_stops_a_request_in_flight_and_a_cancelled_one_sends_nothing() {
    let fleet = Fleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.timeouts.request_ms = 20_000;
    cfg.retry.max_retries = 0;
    let client = RobustClient::new(cfg).unwrap();
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_secs(15)))
        .await;
    let token = robust_api::CancelToken::new();
    let (c, t) = (client.clone(), token.clone());
    let call = tokio::spawn(async move { c.request_with_token(ApiRequest::get("/slow"), t).await });
    wait_until("the GET reached the server", Duration::from_secs(5), || {
        fleet.server(0).hits_for("/slow") == 1
    })
    .await;
    let t0 = Instant::now();
    token.cancel();
    let r = call.await.unwrap();
    assert!(matches!(r, Err(ApiError::Cancelled { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // Already cancelled: fails at once, nothing sent.
    let r = client
        .request_with_token(ApiRequest::get("/never"), token)
        .await;
    assert!(matches!(r, Err(ApiError::Cancelled { .. })), "{r:?}");
    assert_eq!(fleet.server(0).hits_for("/never"), 0);
    fleet.server(0).set_fault(Fault::None).await;
    assert_eq!(client.get("/after".into()).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_status_listener_gets_no_more_events() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let kept = Arc::new(Recorder::default());
    let removed = Arc::new(Recorder::default());
    client.add_status_listener(kept.clone());
    let sub = client.add_status_listener(removed.clone());
    assert!(sub.is_active());
    client.set_network_available(false);
    wait_until("both see the first change", Duration::from_secs(5), || {
        !kept.events().is_empty() && !removed.events().is_empty()
    })
    .await;
    sub.remove();
    sub.remove(); // idempotent
    assert!(!sub.is_active());
    let before = removed.events().len();
    client.set_network_available(true);
    client.set_network_available(false);
    wait_until(
        "the kept listener sees both changes",
        Duration::from_secs(5),
        || kept.events().len() >= before + 2,
    )
    .await;
    assert_eq!(removed.events().len(), before, "{:?}", removed.events());
    client.shutdown();
}
