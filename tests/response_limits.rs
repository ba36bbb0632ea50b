//! Bounded memory for what a server sends (issue 13, build 3): a response body over the limit is a
//! typed, final error, refused on its `Content-Length` up front or while it streams, and never
//! buffered whole. Real servers on 127.0.0.1 serving 1 GiB bodies generated as they are written.

use std::time::{Duration, Instant};

use robust_api::{ApiError, ApiRequest, ClientConfig, RobustClient};
use robust_api_fleet::Fleet;

const GIB: usize = 1 << 30;

fn config(fleet: &Fleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 10;
    c.timeouts.connect_ms = 1_000;
    c.timeouts.request_ms = 20_000;
    c
}

/// `VmRSS` and `VmHWM` (peak) of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn assert_too_large(result: Result<robust_api::ApiResponse, ApiError>, limit: i32) {
    match result {
        Err(ApiError::ResponseTooLarge {
            limit_bytes,
            backend,
        }) => {
            assert_eq!(limit_bytes, limit);
            assert!(backend.starts_with("http://127.0.0.1"), "{backend}");
        }
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_body_with_a_length_or_chunked_is_a_typed_error_in_bounded_memory() {
    let fleet = Fleet::start(2).await;
    let client = RobustClient::new(config(&fleet)).unwrap();
    let limit = robust_api::LimitsConfig::default().max_response_bytes;
    let (rss0, hwm0) = memory_kib();

    let started = Instant::now();
    assert_too_large(client.get(format!("/huge/length/{GIB}")).await, limit);
    let length_took = started.elapsed();
    let (rss1, hwm1) = memory_kib();

    let started = Instant::now();
    assert_too_large(client.get(format!("/huge/chunked/{GIB}")).await, limit);
    let chunked_took = started.elapsed();
    let (rss2, hwm2) = memory_kib();

    eprintln!(
        "1 GiB Content-Length: refused in {length_took:?}, RSS {rss0} -> {rss1} KiB, peak {hwm0} -> {hwm1} KiB; \
         1 GiB chunked: refused in {chunked_took:?}, RSS -> {rss2} KiB, peak -> {hwm2} KiB"
    );
    let bound = 64 * 1024;
    assert!(
        hwm1.saturating_sub(hwm0) < bound,
        "peak grew {} KiB",
        hwm1 - hwm0
    );
    assert!(
        hwm2.saturating_sub(hwm0) < bound,
        "peak grew {} KiB",
        hwm2 - hwm0
    );
    assert!(rss2.saturating_sub(rss0) < bound);
    // Final: one request each, no retry on the same or another backend.
    let huge: usize = fleet
        .servers()
        .iter()
        .map(|s| {
            s.requests()
                .iter()
                .filter(|r| r.path.starts_with("/huge/"))
                .count()
        })
        .sum();
    assert_eq!(huge, 2);
    // The client is fine afterwards.
    assert_eq!(client.get("/ok".into()).await.unwrap().status, 200);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_per_request_too_and_exact() {
    let fleet = Fleet::start(1).await;
    let mut cfg = config(&fleet);
    cfg.limits.max_response_bytes = 1_000;
    let client = RobustClient::new(cfg).unwrap();
    assert_eq!(
        client.get("/bytes/1000".into()).await.unwrap().body.len(),
        1_000
    );
    assert_too_large(client.get("/bytes/1001".into()).await, 1_000);
    assert_too_large(client.get("/huge/chunked/1001".into()).await, 1_000);
    assert_eq!(
        client
            .get("/huge/chunked/1000".into())
            .await
            .unwrap()
            .body
            .len(),
        1_000
    );
    let mut req = ApiRequest::get("/bytes/5000");
    req.max_response_bytes = Some(5_000);
    assert_eq!(client.request(req.clone()).await.unwrap().body.len(), 5_000);
    req.max_response_bytes = Some(4_999);
    assert_too_large(client.request(req.clone()).await, 4_999);
    req.max_response_bytes = Some(0);
    assert!(matches!(
        client.request(req).await,
        Err(ApiError::InvalidRequest { .. })
    ));
    let mut bad = ClientConfig::new(fleet.urls());
    bad.limits.max_response_bytes = 0;
    assert!(matches!(
        RobustClient::new(bad),
        Err(ApiError::InvalidConfig { .. })
    ));
    let _ = Duration::ZERO;
    client.shutdown();
}
