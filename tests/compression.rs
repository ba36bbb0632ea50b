//! Transparent decompression (issue 18, build 2): the client asks for gzip unless the app chose an
//! `Accept-Encoding` itself, decodes while the body streams in, bounds the **decoded** bytes (a
//! gzip bomb is `ResponseTooLarge` in bounded memory), reports the bytes saved, and the cache keeps
//! the decoded body. Real fleet servers on 127.0.0.1.

use std::collections::HashMap;

use robust_api::{ApiError, ApiRequest, ClientConfig, RobustClient};
use robust_api_fleet::{expected_bytes, Fleet};

fn config(fleet: &Fleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 10;
    c.timeouts.request_ms = 20_000;
    c
}

/// `VmHWM` (peak RSS) of this process, in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn header<'a>(headers: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    headers.get(name).map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_is_asked_for_by_default_decoded_and_its_savings_counted() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(config(&fleet)).unwrap();
    let saved_before = client.service_status().counters.compression_saved_bytes;
    let r = client.get("/gzip/200000".into()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, expected_bytes(200_000));
    let asked = header(&r.headers, "x-accept-encoding").unwrap();
    assert!(asked.split(',').any(|c| c.trim() == "gzip"), "{asked}");
    // The app sees the decoded representation.
    assert_eq!(header(&r.headers, "content-encoding"), None);
    assert_eq!(header(&r.headers, "content-length"), None);
    let wire = robust_api_fleet::gzip::gzip(&expected_bytes(200_000)).len() as i64;
    let saved = client.service_status().counters.compression_saved_bytes - saved_before;
    assert_eq!(saved, 200_000 - wire);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_encoding_the_app_set_passes_the_body_through_undecoded() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(config(&fleet)).unwrap();
    let mut req = ApiRequest::get("/gzip/5000");
    req.headers.insert("Accept-Encoding".into(), "gzip".into());
    let r = client.request(req).await.unwrap();
    assert_eq!(header(&r.headers, "x-accept-encoding"), Some("gzip"));
    assert_eq!(header(&r.headers, "content-encoding"), Some("gzip"));
    assert_eq!(r.body, robust_api_fleet::gzip::gzip(&expected_bytes(5000)));
    assert_eq!(client.service_status().counters.compression_saved_bytes, 0);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_gzip_bomb_is_response_too_large_in_bounded_memory() {
    let fleet = Fleet::start(2).await;
    let client = RobustClient::new(config(&fleet)).unwrap();
    let limit = robust_api::LimitsConfig::default().max_response_bytes;
    let peak0 = peak_kib();
    // 10 MiB on the wire, about 10 GiB decoded.
    match client.get("/gzip-bomb/10".into()).await {
        Err(ApiError::ResponseTooLarge { limit_bytes, .. }) => assert_eq!(limit_bytes, limit),
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
    let grew = peak_kib().saturating_sub(peak0);
    eprintln!("gzip bomb refused; peak RSS grew {grew} KiB (limit {limit} B)");
    // The limit (32 MiB) plus the 10 MiB compressed body in the fleet, plus slack: nowhere near
    // the 10 GiB the body inflates to.
    assert!(grew < 160 * 1024, "peak grew {grew} KiB");
    // Final: no retry on another backend.
    let requests: u64 = fleet
        .servers()
        .iter()
        .map(|s| s.hits_for("/gzip-bomb/10"))
        .sum();
    assert_eq!(requests, 1);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_keeps_and_serves_the_decoded_body() {
    let fleet = Fleet::start(1).await;
    let mut c = config(&fleet);
    c.cache.default_ttl_ms = 60_000;
    let client = RobustClient::new(c).unwrap();
    let first = client.get("/gzip/30000".into()).await.unwrap();
    assert!(!first.from_cache);
    let again = client.get("/gzip/30000".into()).await.unwrap();
    assert!(again.from_cache);
    assert_eq!(again.body, expected_bytes(30_000));
    assert_eq!(header(&again.headers, "content-encoding"), None);
    client.shutdown();
}
