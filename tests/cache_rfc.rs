//! RFC 9111 conformance of the response cache, one test per deviation once found, each through
//! `RobustClient::request` against the real test fleet (its `/cache/...` route sets the headers
//! the query asks for). See the unit tests in `src/cache/policy.rs` for the rules themselves.

use std::path::Path;
use std::time::Duration;

use robust_api::{ApiError, ApiRequest, ClientConfig, HttpMethod, RobustClient};
use robust_api_fleet::Fleet;

fn config(fleet: &Fleet, dir: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.storage_dir = Some(dir.to_string_lossy().into_owned());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 20;
    c.timeouts.connect_ms = 500;
    c.timeouts.request_ms = 2_000;
    c.health.interval_ms = 3_600_000;
    c
}

async fn start() -> (Fleet, tempfile::TempDir, std::sync::Arc<RobustClient>) {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    (fleet, dir, client)
}

fn with_header(path: &str, name: &str, value: &str) -> ApiRequest {
    let mut r = ApiRequest::get(path);
    r.headers.insert(name.into(), value.into());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_cache_response_is_never_served_stale_when_the_network_fails() {
    let (fleet, _dir, client) = start().await;
    let path = "/cache/nc?cc=no-cache&etag=v1";
    client.get(path.into()).await.unwrap();
    client.set_network_available(false);
    let r = client.get(path.into()).await;
    assert!(matches!(r, Err(ApiError::Offline)), "{r:?}");
    // A plain stale entry still is (the contrast).
    client.set_network_available(true);
    client.get("/cache/plain?etag=v1".into()).await.unwrap();
    client.set_network_available(false);
    let r = client.get("/cache/plain?etag=v1".into()).await.unwrap();
    assert!(r.from_cache && r.stale);
    drop(fleet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_carries_its_current_age_in_whole_seconds() {
    let (_fleet, _dir, client) = start().await;
    let path = "/cache/age?cc=max-age%3D600&age=30";
    client.get(path.into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let hit = client.get(path.into()).await.unwrap();
    assert!(hit.from_cache);
    let age_ms = hit.age_ms.unwrap();
    assert!(age_ms >= 31_000, "{age_ms}");
    assert_eq!(hit.headers["age"], (age_ms / 1000).to_string());
    // No Age from the origin: the hit still carries one.
    client
        .get("/cache/noage?cc=max-age%3D600".into())
        .await
        .unwrap();
    let hit = client
        .get("/cache/noage?cc=max-age%3D600".into())
        .await
        .unwrap();
    assert!(hit.from_cache);
    assert!(
        hit.headers["age"].parse::<u64>().is_ok(),
        "{:?}",
        hit.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_age_list_or_two_age_lines_use_the_first_value() {
    let (fleet, _dir, client) = start().await;
    for path in [
        "/cache/agelist?cc=max-age%3D3600&age=7200%2C%200",
        "/cache/agelines?cc=max-age%3D3600&age=7200&age2=0",
    ] {
        client.get(path.into()).await.unwrap();
        let again = client.get(path.into()).await.unwrap();
        assert!(!again.from_cache, "Age 7200 > max-age 3600: stale ({path})");
    }
    assert_eq!(fleet.server(0).hits_for("/cache/agelist"), 2);
    assert_eq!(fleet.server(0).hits_for("/cache/agelines"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_expires_means_already_expired() {
    let (fleet, _dir, client) = start().await;
    let bad = [
        "Thu%2001%20Dec%202094%2016%3A00%3A00%20GMT", // no comma
        "Thu%2C%20%2001%20Dec%202094%2016%3A00%3A00%20GMT", // doubled space
        "Thu%2C%2001%20Dec%202094%206%3A00%3A00%20GMT", // 1-digit hour
    ];
    for (i, expires) in bad.iter().enumerate() {
        let path = format!("/cache/exp{i}?expires={expires}");
        client.get(path.clone()).await.unwrap();
        let again = client.get(path.clone()).await.unwrap();
        assert!(!again.from_cache, "{expires}");
        assert_eq!(fleet.server(0).hits_for(&format!("/cache/exp{i}")), 2);
    }
    // A valid far-future one is fresh (the contrast).
    let ok = "/cache/expok?expires=Thu%2C%2001%20Dec%202094%2016%3A00%3A00%20GMT";
    client.get(ok.into()).await.unwrap();
    assert!(client.get(ok.into()).await.unwrap().from_cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_named_in_connection_and_hop_by_hop_fields_are_not_replayed() {
    let (_fleet, _dir, client) = start().await;
    let path = "/cache/conn?cc=max-age%3D600&conn=X-Hop&hop=per-connection&keep_alive=timeout%3D5";
    let first = client.get(path.into()).await.unwrap();
    assert_eq!(
        first.headers.get("x-hop").map(String::as_str),
        Some("per-connection")
    );
    let hit = client.get(path.into()).await.unwrap();
    assert!(hit.from_cache);
    for name in ["x-hop", "connection", "keep-alive"] {
        assert!(!hit.headers.contains_key(name), "{name}: {:?}", hit.headers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_directives_force_refresh_demand_freshness_or_accept_staleness() {
    let (fleet, _dir, client) = start().await;
    let hits = |p: &str| fleet.server(0).hits_for(p);
    let path = "/cache/rd?cc=max-age%3D600";
    client.get(path.into()).await.unwrap();
    assert!(client.get(path.into()).await.unwrap().from_cache);
    // max-age=0 ("force refresh") and Pragma: no-cache go to the network.
    let r = client
        .request(with_header(path, "Cache-Control", "max-age=0"))
        .await
        .unwrap();
    assert!(!r.from_cache);
    let r = client
        .request(with_header(path, "Pragma", "no-cache"))
        .await
        .unwrap();
    assert!(!r.from_cache);
    // min-fresh beyond what is left goes to the network.
    let r = client
        .request(with_header(path, "Cache-Control", "min-fresh=1000"))
        .await
        .unwrap();
    assert!(!r.from_cache);
    assert_eq!(hits("/cache/rd"), 4);
    // max-stale accepts a stale entry without the network (flagged stale).
    let short = "/cache/ms?cc=max-age%3D1";
    client.get(short.into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = client
        .request(with_header(short, "Cache-Control", "max-stale=60"))
        .await
        .unwrap();
    assert!(r.from_cache && r.stale, "{r:?}");
    assert_eq!(hits("/cache/ms"), 1);
    // only-if-cached never touches the network.
    let e = client
        .request(with_header(
            "/cache/never",
            "Cache-Control",
            "only-if-cached",
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::NotCached { .. }), "{e:?}");
    assert_eq!(hits("/cache/never"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_modified_alone_gives_heuristic_freshness() {
    let (fleet, _dir, client) = start().await;
    let path = "/cache/lmonly?lm=Thu%2C%2001%20Dec%201994%2016%3A00%3A00%20GMT";
    client.get(path.into()).await.unwrap();
    let again = client.get(path.into()).await.unwrap();
    assert!(again.from_cache && !again.stale, "{again:?}");
    assert_eq!(fleet.server(0).hits_for("/cache/lmonly"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_with_max_age_is_stored_and_served_as_the_same_error() {
    let (fleet, _dir, client) = start().await;
    let path = "/cache/gone?status=404&cc=max-age%3D600";
    for _ in 0..2 {
        match client.get(path.into()).await {
            Err(ApiError::Http {
                status: 404, body, ..
            }) => {
                assert!(String::from_utf8_lossy(&body).contains("/cache/gone"))
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        fleet.server(0).hits_for("/cache/gone"),
        1,
        "the second from the cache"
    );
    // A 403 without explicit freshness is not stored.
    for _ in 0..2 {
        let _ = client.get("/cache/forbidden?status=403".into()).await;
    }
    assert_eq!(fleet.server(0).hits_for("/cache/forbidden"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_updates_the_stored_headers_or_drops_a_changed_entry() {
    let (fleet, _dir, client) = start().await;
    let path = "/cache/head?cc=max-age%3D600&etag=v1";
    // X-Request-Count: the server's hits so far (probes included), so it differs per answer.
    let first = client.get(path.into()).await.unwrap();
    let head = client
        .request(ApiRequest::new(HttpMethod::Head, path))
        .await
        .unwrap();
    assert_ne!(
        head.headers["x-request-count"],
        first.headers["x-request-count"]
    );
    let hit = client.get(path.into()).await.unwrap();
    assert!(hit.from_cache);
    assert_eq!(
        hit.headers["x-request-count"], head.headers["x-request-count"],
        "the HEAD's fields were taken over"
    );
    assert_eq!(hit.body, first.body);
    // Different validators on the HEAD: the stored response is dropped.
    let changed = "/cache/head2?cc=max-age%3D600&etag=v1&head_etag=v2";
    client.get(changed.into()).await.unwrap();
    client
        .request(ApiRequest::new(HttpMethod::Head, changed))
        .await
        .unwrap();
    assert!(!client.get(changed.into()).await.unwrap().from_cache);
    assert_eq!(fleet.server(0).hits_for("/cache/head2"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_invalidate_the_normalised_path_and_same_origin_locations_only() {
    let (_fleet, _dir, client) = start().await;
    let cached = |p: &'static str| {
        let c = client.clone();
        async move { c.get(p.into()).await.unwrap().from_cache }
    };
    for p in [
        "/cache/item?cc=max-age%3D600",
        "/cache/target?cc=max-age%3D600",
        "/cache/other?cc=max-age%3D600",
    ] {
        client.get(p.into()).await.unwrap();
        assert!(cached(p).await);
    }
    // Another spelling of /cache/item.
    client
        .request(ApiRequest::new(HttpMethod::Put, "/cache/%69tem"))
        .await
        .unwrap();
    assert!(!cached("/cache/item?cc=max-age%3D600").await);
    // Location on this origin invalidates; Content-Location elsewhere does not.
    let post = "/cache/create?location=%2Fcache%2Ftarget&content_location=http%3A%2F%2Fexample.com%2Fcache%2Fother";
    client
        .request(ApiRequest::post_json(post, "{}"))
        .await
        .unwrap();
    assert!(!cached("/cache/target?cc=max-age%3D600").await);
    assert!(cached("/cache/other?cc=max-age%3D600").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_vary_variants_of_one_url_are_kept() {
    let (fleet, _dir, client) = start().await;
    let path = "/cache/v?cc=max-age%3D600&vary=Accept-Language";
    for lang in ["en", "de", "fr", "en", "de", "fr"] {
        client
            .request(with_header(path, "Accept-Language", lang))
            .await
            .unwrap();
    }
    assert_eq!(fleet.server(0).hits_for("/cache/v"), 3, "one per variant");
    assert_eq!(client.service_status().cache.entries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_refreshes_once_however_many_readers() {
    let (fleet, _dir, client) = start().await;
    let path = "/cache/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D60&delay_ms=300";
    client.get(path.into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let reads: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get(path.into()).await.unwrap() })
        })
        .collect();
    for r in reads {
        let r = r.await.unwrap();
        assert!(r.from_cache && r.stale);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        fleet.server(0).hits_for("/cache/swr"),
        2,
        "the first GET and one refresh"
    );
}
