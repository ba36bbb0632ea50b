//! Issue 12, network side, against real local servers: hedging never races a keyed POST against
//! itself; requests stay where the app sent them (redirects, dot segments, framing headers, the
//! `Idempotency-Key` header); nothing secret in errors or status; transport security (cleartext
//! only for loopback unless opted in, SPKI pinning over HTTPS and WSS, tested with a CA made here).

use std::time::Duration;

use robust_api::{ApiError, ApiRequest, ClientConfig, HttpMethod, RobustClient};
use robust_api_fleet::{wait_until, Fault, Fleet};

fn fast_config(urls: Vec<String>) -> ClientConfig {
    let mut c = ClientConfig::new(urls);
    c.retry.base_delay_ms = 10;
    c.retry.max_delay_ms = 40;
    c.timeouts.request_ms = 3_000;
    c.timeouts.connect_ms = 500;
    c
}

/// Waits until every server has seen the client's start-up health probe.
async fn probed(fleet: &Fleet) {
    wait_until("start-up probes", Duration::from_secs(5), || {
        fleet
            .servers()
            .iter()
            .all(|s| s.hits_for("/api/health") > 0)
    })
    .await;
}

// ---- hedging (Build 5) -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_keyed_post_is_not_raced_against_a_server_answering_409_in_progress() {
    let fleet = Fleet::start_sharing_keys(2).await;
    let mut cfg = fast_config(fleet.urls());
    cfg.retry.hedge_after_ms = Some(50);
    let client = RobustClient::new(cfg).unwrap();
    probed(&fleet).await;
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(400)))
        .await;
    let mut post = ApiRequest::post_json("/api/orders", r#"{"sku":42}"#);
    post.idempotency_key = Some("order-1".into());
    let r = client.request(post).await.expect("the order's own answer");
    assert_eq!((r.status, r.attempts), (200, 1), "{r:?}");
    assert_eq!(r.backend, fleet.urls()[0]);
    assert_eq!(fleet.server(1).hits_for("/api/orders"), 0);
    assert_eq!(client.service_status().counters.hedges, 0);
    assert_eq!(fleet.server(0).unique_effects(), 1);
}
