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

// ---- requests stay where the app sent them (Build 3) -----------------------------------------

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_307_or_308_is_returned_unfollowed_and_leaks_nothing() {
    let fleet = Fleet::start(2).await; // server 1 plays the foreign origin
    let foreign = format!("{}/steal", fleet.urls()[1]);
    let mut cfg = fast_config(vec![fleet.urls()[0].clone()]);
    cfg.default_headers
        .insert("x-api-key".into(), "DEFAULT-SECRET".into());
    let client = RobustClient::new(cfg).unwrap();
    for status in [307, 308] {
        let mut post = ApiRequest::post_json(
            format!("/redirect?status={status}&to={}", pct(&foreign)),
            r#"{"amount":100}"#,
        );
        post.idempotency_key = Some(format!("pay-{status}"));
        let r = client.request(post).await.expect("the 3xx itself");
        assert_eq!(r.status, status);
        assert_eq!(r.headers.get("location"), Some(&foreign));
        assert_eq!(r.backend, fleet.urls()[0]);
    }
    // A cross-origin GET redirect (with max-age) is not followed and never cached.
    for _ in 0..2 {
        let r = client
            .get(format!("/redirect?to={}", pct(&foreign)))
            .await
            .unwrap();
        assert_eq!((r.status, r.from_cache), (307, false));
    }
    assert_eq!(fleet.server(0).hits_for("/redirect"), 4);
    assert_eq!(
        fleet.server(1).hits_for("/steal"),
        0,
        "nothing reached the foreign origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_redirects_are_followed_at_most_ten_times() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(fleet.urls())).unwrap();
    let r = client.get("/redirect?to=%2Fitems".into()).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains(r#""path":"/items""#));
    let r = client.get("/hops/10".into()).await.unwrap();
    assert_eq!(r.status, 200, "ten redirects are followed");
    let r = client.get("/hops/11".into()).await.unwrap();
    assert_eq!(r.status, 307, "the eleventh is returned");
    assert_eq!(
        r.headers.get("location").map(String::as_str),
        Some("/hops/0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_leave_the_base_path() {
    let fleet = Fleet::start(1).await;
    let base = format!("{}/api/v1", fleet.urls()[0]);
    let client = RobustClient::new(fast_config(vec![base])).unwrap();
    for bad in [
        "/items/../../admin",
        "/%2e%2e/admin",
        "/%2E%2e/admin",
        "/items/./x",
    ] {
        let err = client.get(bad.into()).await.unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidRequest { .. }),
            "{bad}: {err:?}"
        );
        let mut queued = ApiRequest::get(bad);
        queued.method = HttpMethod::Post;
        assert!(matches!(
            client.enqueue(queued),
            Err(ApiError::InvalidRequest { .. })
        ));
    }
    let r = client.get("/items".into()).await.unwrap();
    assert!(String::from_utf8_lossy(&r.body).contains(r#""path":"/api/v1/items""#));
    assert_eq!(fleet.server(0).hits_for("/admin"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_and_hop_by_hop_headers_are_refused_naming_the_header() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(fleet.urls())).unwrap();
    for name in [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "TE",
        "Upgrade",
        "Keep-Alive",
        "Proxy-Authorization",
    ] {
        let mut put = ApiRequest::new(HttpMethod::Put, "/echo");
        put.body = Some(b"the whole body".to_vec());
        put.headers.insert(name.into(), "1".into());
        let err = client.request(put).await.unwrap_err();
        assert!(
            matches!(&err, ApiError::InvalidRequest { reason } if reason.contains(name)),
            "{name}: {err:?}"
        );
        let mut cfg = fast_config(fleet.urls());
        cfg.default_headers.insert(name.into(), "1".into());
        let err = RobustClient::new(cfg).err().expect("refused");
        assert!(
            matches!(&err, ApiError::InvalidConfig { reason } if reason.contains(name)),
            "{name}: {err:?}"
        );
    }
    assert_eq!(fleet.server(0).hits_for("/echo"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_header_is_adopted_as_the_requests_key() {
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(fast_config(fleet.urls())).unwrap();
    fleet.server(0).set_fault(Fault::Status(503)).await;
    let mut post = ApiRequest::post_json("/api/orders", "{}");
    post.headers
        .insert("Idempotency-Key".into(), "app-key-1".into());
    let err = client.request(post.clone()).await.unwrap_err();
    assert!(matches!(err, ApiError::Http { status: 503, .. }), "{err:?}");
    let keys = fleet.server(0).idempotency_keys();
    assert_eq!(keys.len(), 4, "a keyed POST is retried: {keys:?}");
    assert!(keys.iter().all(|k| k == "app-key-1"), "{keys:?}");
    // The queue keeps the app's key too.
    client.enqueue(post).unwrap();
    let queued = client.queued_requests().unwrap();
    assert_eq!(queued[0].idempotency_key, "app-key-1");
}

// ---- nothing secret in errors or status (Build 2, network side) ------------------------------

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn secret_request(path: &str) -> ApiRequest {
    let mut r = ApiRequest::get(format!("{path}?access_token=SECRET-1"));
    r.query.push(robust_api::QueryParam {
        name: "api_key".into(),
        value: "SECRET-2".into(),
    });
    r.query.push(robust_api::QueryParam {
        name: "session_id".into(),
        value: "SECRET-3".into(),
    });
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_secrets_never_reach_error_texts_or_the_service_status() {
    let fleet = Fleet::start(1).await;
    fleet.server(0).set_fault(Fault::Status(500)).await;
    let mut cfg = fast_config(vec![closed_port_url(), fleet.urls()[0].clone()]);
    cfg.retry.max_retries = 1;
    cfg.security.sensitive_query_params = vec!["Session_ID".into()];
    let client = RobustClient::new(cfg).unwrap();
    for path in ["/items", "/other"] {
        let err = client.request(secret_request(path)).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
    // Only the closed port.
    let client = RobustClient::new(fast_config(vec![closed_port_url()])).unwrap();
    let mut post = secret_request("/items");
    post.method = HttpMethod::Post;
    let err = client.request(post).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("SECRET-1") && !text.contains("SECRET-2"),
        "{text}"
    );
    let status = format!("{:?}", client.service_status());
    assert!(!status.contains("SECRET"), "{status}");
    assert!(status.contains("last_error: Some("), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_backend_url_are_never_shown() {
    let fleet = Fleet::start(1).await;
    let with_userinfo = fleet.urls()[0].replace("http://", "http://alice:PASSWORD@");
    let client = RobustClient::new(fast_config(vec![with_userinfo])).unwrap();
    let r = client.get("/x".into()).await.unwrap();
    assert_eq!(r.backend, fleet.urls()[0]);
    let status = format!("{:?}", client.service_status());
    assert!(
        !status.contains("PASSWORD") && !status.contains("alice"),
        "{status}"
    );
    fleet.server(0).set_fault(Fault::Status(500)).await;
    let err = client.get("/y".into()).await.unwrap_err();
    assert!(!format!("{err:?}").contains("PASSWORD"), "{err:?}");
}
