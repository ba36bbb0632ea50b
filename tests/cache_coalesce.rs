//! Request coalescing (single flight) and the synchronous thin-bridge read, against the real
//! fleet: the server counts its hits, so "one exchange" is observed on the wire.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use robust_api::{ApiError, ApiRequest, CachePolicy, ClientConfig, RobustClient};
use robust_api_fleet::Fleet;

fn config(fleet: &Fleet, dir: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.storage_dir = Some(dir.to_string_lossy().into_owned());
    c.retry.max_retries = 0;
    c.timeouts.request_ms = 5_000;
    c.health.interval_ms = 3_600_000;
    c
}

async fn concurrently(
    client: &Arc<RobustClient>,
    n: usize,
    make: impl Fn(usize) -> ApiRequest,
) -> Vec<Result<robust_api::ApiResponse, ApiError>> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let (c, req) = (client.clone(), make(i));
            tokio::spawn(async move { c.request(req).await })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_gets_of_a_slow_url_make_one_server_hit_and_fifty_equal_answers() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/slow?delay_ms=400";
    let results = concurrently(&client, 50, |_| ApiRequest::get(path)).await;
    assert_eq!(fleet.server(0).hits_for("/cache/slow"), 1);
    let bodies: Vec<Vec<u8>> = results.into_iter().map(|r| r.unwrap().body).collect();
    assert!(bodies.iter().all(|b| *b == bodies[0]), "50 equal answers");
    assert_eq!(client.service_status().cache.coalesced, 49);

    // Switched off per request: every GET goes out itself.
    let results = concurrently(&client, 10, |_| {
        let mut r = ApiRequest::get("/cache/alone?delay_ms=200");
        r.coalesce = Some(false);
        r
    })
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fleet.server(0).hits_for("/cache/alone"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reaches_all_fifty_waiters() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let results = concurrently(&client, 50, |_| {
        ApiRequest::get("/cache/broken?status=503&delay_ms=400")
    })
    .await;
    assert_eq!(fleet.server(0).hits_for("/cache/broken"), 1);
    for r in results {
        assert!(
            matches!(r, Err(ApiError::Http { status: 503, .. })),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_never_gets_another_identitys_response() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/me?delay_ms=400";
    // Two tokens at once: two exchanges.
    let results = concurrently(&client, 10, |i| {
        let mut r = ApiRequest::get(path);
        let token = if i % 2 == 0 {
            "Bearer ALICE"
        } else {
            "Bearer BOB"
        };
        r.headers.insert("Authorization".into(), token.into());
        r
    })
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fleet.server(0).hits_for("/cache/me"), 2, "one per token");

    // A user switch while alice's GET is in flight: bob's does not join it.
    client.set_user_scope(Some("alice".into()));
    let c = client.clone();
    let alice = tokio::spawn(async move { c.get("/cache/scoped?delay_ms=400".into()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.set_user_scope(Some("bob".into()));
    let bob = client
        .get("/cache/scoped?delay_ms=400".into())
        .await
        .unwrap();
    let alice = alice.await.unwrap().unwrap();
    assert_eq!(fleet.server(0).hits_for("/cache/scoped"), 2);
    assert_ne!(alice.body, bob.body, "each got its own exchange's answer");
    assert_eq!(client.service_status().cache.coalesced, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_bridge_read_serves_the_current_scope_without_the_network() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let fresh = ApiRequest::get("/cache/bridge?cc=max-age%3D600");
    assert_eq!(client.cached_response(fresh.clone(), false).unwrap(), None);
    client.set_user_scope(Some("alice".into()));
    let net = client.request(fresh.clone()).await.unwrap();
    let hit = client
        .cached_response(fresh.clone(), false)
        .unwrap()
        .unwrap();
    assert!(hit.from_cache && !hit.stale);
    assert_eq!(hit.body, net.body);
    // Another user sees nothing.
    client.set_user_scope(Some("bob".into()));
    assert_eq!(client.cached_response(fresh.clone(), false).unwrap(), None);
    client.set_user_scope(Some("alice".into()));
    // A stale entry only when asked for.
    let stale = ApiRequest::get("/cache/bridge-stale");
    client.request(stale.clone()).await.unwrap();
    assert_eq!(client.cached_response(stale.clone(), false).unwrap(), None);
    let r = client
        .cached_response(stale.clone(), true)
        .unwrap()
        .unwrap();
    assert!(r.stale);
    assert_eq!(fleet.server(0).hits_for("/cache/bridge"), 1);
    assert_eq!(fleet.server(0).hits_for("/cache/bridge-stale"), 1);
    let mut post = fresh.clone();
    post.method = robust_api::HttpMethod::Post;
    assert!(matches!(
        client.cached_response(post, false),
        Err(ApiError::InvalidRequest { .. })
    ));
    let mut only = fresh;
    only.cache = Some(CachePolicy::CacheOnly);
    assert!(client.cached_response(only, false).unwrap().is_some());
    // The same read by path alone.
    let by_path = client
        .cached_get("/cache/bridge?cc=max-age%3D600".into(), false)
        .unwrap()
        .unwrap();
    assert_eq!(by_path.body, net.body);
    assert!(by_path.from_cache && !by_path.stale);
    assert_eq!(
        client
            .cached_get("/cache/bridge-stale".into(), false)
            .unwrap(),
        None
    );
    assert!(client
        .cached_get("/cache/bridge-stale".into(), true)
        .unwrap()
        .is_some_and(|r| r.stale));
    assert_eq!(
        client.cached_get("/cache/never".into(), true).unwrap(),
        None
    );
    assert_eq!(fleet.server(0).hits_for("/cache/never"), 0);
}

/// A prepared reader reads like `cached_get` of its path, in the user scope current at each read
/// (a logout between two frames hides the previous user's entry), and never asks the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_reader_reads_its_path_in_the_scope_current_at_each_read() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/reader?cc=max-age%3D600";
    let reader = client.clone().cached_reader(path.into()).unwrap();
    assert_eq!(reader.path(), path);
    assert_eq!(reader.read(true).unwrap(), None);
    client.set_user_scope(Some("alice".into()));
    let net = client.get(path.into()).await.unwrap();
    let hit = reader.read(false).unwrap().unwrap();
    assert!(hit.from_cache && !hit.stale);
    assert_eq!(hit.body, net.body);
    assert_eq!(
        Some(hit.body.clone()),
        client
            .cached_get(path.into(), false)
            .unwrap()
            .map(|r| r.body)
    );
    client.set_user_scope(Some("bob".into()));
    assert_eq!(reader.read(true).unwrap(), None, "another user's entry");
    client.set_user_scope(Some("alice".into()));
    assert!(reader.read(false).unwrap().is_some());
    assert_eq!(fleet.server(0).hits_for("/cache/reader"), 1);
    // A path that can form no request is refused when the reader is made.
    assert!(matches!(
        client.clone().cached_reader("/a b".into()),
        Err(ApiError::InvalidRequest { .. })
    ));
}
