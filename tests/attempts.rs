//! Per-attempt records (issue 15, item 2) against real local servers: a failover, retries after
//! 503, a hedge, a cache hit (no record), no secret in any record, and the per-backend recent
//! window in `ServiceStatus` (p50/p95 latency, error rate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_api::{
    ApiError, ApiRequest, AttemptListener, AttemptOutcome, AttemptReason, AttemptRecord,
    ClientConfig, ConnectionUse, HttpMethod, QueryParam, RobustClient,
};
use robust_api_fleet::{wait_until, Fault, Fleet};

#[derive(Default)]
struct Records {
    all: Mutex<Vec<AttemptRecord>>,
    threads: Mutex<Vec<String>>,
}

impl Records {
    fn all(&self) -> Vec<AttemptRecord> {
        self.all.lock().unwrap().clone()
    }
    async fn wait_for(&self, n: usize) -> Vec<AttemptRecord> {
        wait_until(
            &format!("{n} attempt records"),
            Duration::from_secs(5),
            || self.all.lock().unwrap().len() >= n,
        )
        .await;
        self.all()
    }
}

impl AttemptListener for Records {
    fn on_attempt(&self, record: AttemptRecord) -> Result<(), ApiError> {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.threads.lock().unwrap().push(name);
        self.all.lock().unwrap().push(record);
        Ok(())
    }
}

fn config(fleet: &Fleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 10;
    c.timeouts.connect_ms = 1_000;
    c
}

/// A client whose start-up probes are done, with a recorder attached.
async fn client(c: ClientConfig) -> (Arc<RobustClient>, Arc<Records>) {
    let client = RobustClient::new(c).unwrap();
    wait_until("start-up probes", Duration::from_secs(5), || {
        client
            .service_status()
            .backends
            .iter()
            .all(|b| b.latency_ewma_ms.is_some())
    })
    .await;
    let rec = Arc::new(Records::default());
    client.set_attempt_listener(rec.clone()).unwrap();
    (client, rec)
}

fn preferred(client: &RobustClient, fleet: &Fleet) -> usize {
    let p = client.service_status().preferred_backend.unwrap();
    fleet.urls().iter().position(|u| *u == p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_two_records_first_refused_then_answered_elsewhere() {
    let fleet = Fleet::start(2).await;
    let (client, rec) = client(config(&fleet)).await;
    let down = preferred(&client, &fleet);
    fleet.server(down).set_fault(Fault::Down).await;
    let r = client.get("/items/7?page=2".into()).await.unwrap();
    assert_eq!(r.attempts, 2);
    let all = rec.wait_for(2).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let (a, b) = (&all[0], &all[1]);
    assert_eq!(a.backend, fleet.urls()[down]);
    assert_eq!(
        (a.attempt, a.reason, a.outcome, a.status),
        (1, AttemptReason::First, AttemptOutcome::ConnectFailed, None)
    );
    assert!(a.error.is_some() && a.time_to_first_byte_ms.is_none());
    assert_eq!(b.backend, fleet.urls()[1 - down]);
    assert_eq!(
        (b.attempt, b.reason, b.outcome, b.status),
        (
            2,
            AttemptReason::Failover,
            AttemptOutcome::Response,
            Some(200)
        )
    );
    assert_eq!((b.method, b.path.as_str()), (HttpMethod::Get, "/items/7"));
    assert_eq!(b.bytes_received, r.body.len() as i64);
    assert!(b.time_to_first_byte_ms.is_some_and(|t| t <= b.total_ms));
    assert!(b.started_at_ms > 0 && b.error.is_none());
    // Delivered on the recorder's own thread, never a runtime worker.
    let threads = rec.threads.lock().unwrap().clone();
    assert!(
        threads.iter().all(|t| t == "robust-api-attempts"),
        "{threads:?}"
    );
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_503_are_records_with_reason_retry() {
    let fleet = Fleet::start(1).await;
    let mut c = config(&fleet);
    c.retry.max_retries = 2;
    let (client, rec) = client(c).await;
    fleet.server(0).set_fault(Fault::Status(503)).await;
    let mut put = ApiRequest::new(HttpMethod::Put, "/docs/1");
    put.body = Some(b"hello".to_vec());
    match client.request(put).await {
        Err(ApiError::Http { status: 503, .. }) => {}
        other => panic!("expected a 503, got {other:?}"),
    }
    let all = rec.wait_for(3).await;
    let seen: Vec<_> = all
        .iter()
        .map(|r| (r.attempt, r.reason, r.status, r.bytes_sent))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, AttemptReason::First, Some(503), 5),
            (2, AttemptReason::Retry, Some(503), 5),
            (3, AttemptReason::Retry, Some(503), 5),
        ]
    );
    // The second and third reused the first one's keep-alive connection.
    assert_eq!(all[2].connection, ConnectionUse::Reused, "{all:#?}");
    // The recent window: three attempts, all failed.
    let b = &client.service_status().backends[0];
    assert_eq!((b.recent_attempts, b.error_rate), (3, Some(1.0)), "{b:?}");
    assert_eq!(b.latency_p50_ms, None, "no response without an error");
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_is_its_own_record_and_the_loser_is_cancelled() {
    let fleet = Fleet::start(2).await;
    let mut c = config(&fleet);
    c.retry.hedge_after_ms = Some(100);
    let (client, rec) = client(c).await;
    let slow = preferred(&client, &fleet);
    fleet
        .server(slow)
        .set_fault(Fault::Slow(Duration::from_millis(2_000)))
        .await;
    let r = client.get("/feed".into()).await.unwrap();
    assert_eq!(r.backend, fleet.urls()[1 - slow]);
    let all = rec.wait_for(2).await;
    let first = all.iter().find(|r| r.attempt == 1).unwrap();
    let hedge = all.iter().find(|r| r.attempt == 2).unwrap();
    assert_eq!(
        (first.reason, first.outcome, first.backend.as_str()),
        (
            AttemptReason::First,
            AttemptOutcome::Cancelled,
            fleet.urls()[slow].as_str()
        )
    );
    assert_eq!(
        (hedge.reason, hedge.outcome, hedge.status),
        (AttemptReason::Hedge, AttemptOutcome::Response, Some(200))
    );
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_hit_makes_no_record_and_the_window_fills() {
    let fleet = Fleet::start(1).await;
    let (client, rec) = client(config(&fleet)).await;
    let path = "/cache/a?cc=max-age%3D60";
    assert!(!client.get(path.into()).await.unwrap().from_cache);
    rec.wait_for(1).await;
    for _ in 0..3 {
        assert!(client.get(path.into()).await.unwrap().from_cache);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = rec.all();
    assert_eq!(all.len(), 1, "cache hits reach no server: {all:#?}");
    assert_eq!(all[0].path, "/cache/a");
    for i in 0..5 {
        client.get(format!("/x/{i}")).await.unwrap();
    }
    let b = &client.service_status().backends[0];
    assert_eq!(b.recent_attempts, 6, "{b:?}");
    assert_eq!(b.error_rate, Some(0.0));
    assert!(b.latency_p50_ms.is_some() && b.latency_p50_ms <= b.latency_p95_ms);
    // Removing the listener stops the records; the window still counts.
    client.clear_attempt_listener();
    client.get("/x/after".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.all().len(), 6);
    assert_eq!(client.service_status().backends[0].recent_attempts, 7);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_holds_a_planted_token() {
    const TOKEN: &str = "PLANTED-attempt-7d1f";
    let fleet = Fleet::start(2).await;
    let mut c = config(&fleet);
    c.backends[1] = c.backends[1].replace("http://", &format!("http://user:{TOKEN}@"));
    let (client, rec) = client(c).await;
    fleet.server(0).set_fault(Fault::Down).await;
    let mut req = ApiRequest::get("/me");
    req.query = vec![QueryParam {
        name: "access_token".into(),
        value: TOKEN.into(),
    }];
    req.headers = HashMap::from([("Authorization".into(), format!("Bearer {TOKEN}"))]);
    client.request(req).await.unwrap();
    let all = rec.wait_for(1).await;
    for r in &all {
        let shown = format!("{r:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert_eq!(r.path, "/me");
    }
    client.shutdown();
}
