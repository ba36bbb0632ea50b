//! The SQLite response cache against real servers and real files: freshness, revalidation,
//! no-store, stale fallback (offline, all backends down, stale-if-error), LRU bound, clear,
//! restart, corruption recovery, invalidation, Vary, Authorization scoping, policies.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use robust_api::{
    ApiError, ApiRequest, CachePolicy, ClientConfig, RobustClient, StatusEvent, StatusListener,
};
use robust_api_fleet::{wait_until, Fault, Fleet};

fn config(fleet: &Fleet, dir: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.storage_dir = Some(dir.to_string_lossy().into_owned());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 20;
    c.timeouts.connect_ms = 500;
    c.timeouts.request_ms = 2_000;
    c
}

fn get(path: &str, policy: Option<CachePolicy>) -> ApiRequest {
    let mut r = ApiRequest::get(path);
    r.cache = policy;
    r
}

/// `n` in the fleet's `/cache/...` JSON body: how many hits the server had for the path.
fn n_of(body: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(body);
    let tail = s.split("\"n\":").nth(1).expect("n in body");
    tail.trim_end_matches('}').parse().expect("number")
}

#[derive(Default)]
struct Events(Mutex<Vec<StatusEvent>>);
impl StatusListener for Events {
    fn on_event(&self, e: StatusEvent) -> Result<(), ApiError> {
        self.0.lock().unwrap().push(e);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_hit_costs_no_network_and_expiry_goes_back_to_it() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/fresh?cc=max-age%3D1";
    let first = client.get(path.into()).await.unwrap();
    assert!(!first.from_cache);
    let second = client.get(path.into()).await.unwrap();
    assert!(second.from_cache && !second.stale, "{second:?}");
    assert_eq!(second.body, first.body);
    assert_eq!(
        second.headers.get("cache-control").map(String::as_str),
        Some("max-age=1")
    );
    assert_eq!(
        fleet.server(0).hits_for("/cache/fresh"),
        1,
        "served without the network"
    );
    let s = client.service_status().cache;
    assert_eq!((s.entries, s.hits), (1, 1));
    assert!(s.bytes > first.body.len() as i64);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let third = client.get(path.into()).await.unwrap();
    assert!(!third.from_cache, "expired: back to the network");
    assert_eq!(fleet.server(0).hits_for("/cache/fresh"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_revalidation_gets_a_304_and_serves_the_stored_body() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/etag?cc=no-cache&etag=v1";
    let first = client.get(path.into()).await.unwrap();
    let second = client.get(path.into()).await.unwrap();
    assert_eq!(second.status, 200);
    assert!(second.from_cache && !second.stale);
    assert_eq!(
        second.body, first.body,
        "the 304 carried no body; the stored one is served"
    );
    let reqs: Vec<_> = fleet
        .server(0)
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/cache/etag"))
        .collect();
    assert_eq!(reqs.len(), 2, "no-cache: every use is revalidated");
    assert_eq!(reqs[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(client.service_status().cache.revalidations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_is_never_stored() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    for _ in 0..2 {
        assert!(
            !client
                .get("/cache/secret?cc=no-store".into())
                .await
                .unwrap()
                .from_cache
        );
    }
    assert_eq!(fleet.server(0).hits_for("/cache/secret"), 2);
    assert_eq!(client.service_status().cache.entries, 0);
    let err = client
        .request(get(
            "/cache/secret?cc=no-store",
            Some(CachePolicy::CacheOnly),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotCached { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_all_backends_down_serve_the_stale_entry_flagged() {
    let (fleet, dir) = (Fleet::start(2).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/feed?cc=max-age%3D0";
    let online = client.get(path.into()).await.unwrap();

    client.set_network_available(false);
    let offline = client.get(path.into()).await.unwrap();
    assert!(offline.from_cache && offline.stale, "{offline:?}");
    assert_eq!(offline.body, online.body);
    assert!(offline.age_ms.is_some());
    // Nothing cached for this one: the offline error comes through.
    assert_eq!(
        client.get("/cache/never-seen".into()).await.unwrap_err(),
        ApiError::Offline
    );
    client.set_network_available(true);

    fleet.set_fault_all(Fault::Down).await;
    let down = client.get(path.into()).await.unwrap();
    assert!(down.from_cache && down.stale);
    assert_eq!(client.service_status().cache.stale_served, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_window_is_respected_and_must_revalidate_never_serves_stale() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(&fleet, dir.path());
    cfg.retry.max_retries = 0;
    let client = RobustClient::new(cfg).unwrap();
    let sie = "/cache/sie?cc=max-age%3D0%2C%20stale-if-error%3D1";
    let mr = "/cache/mr?cc=max-age%3D0%2C%20must-revalidate";
    client.get(sie.into()).await.unwrap();
    client.get(mr.into()).await.unwrap();
    fleet.server(0).set_fault(Fault::Status(500)).await;

    let r = client.get(sie.into()).await.unwrap();
    assert!(r.from_cache && r.stale, "inside stale-if-error");
    let err = client.get(mr.into()).await.unwrap_err();
    assert!(
        matches!(err, ApiError::Http { status: 500, .. }),
        "must-revalidate: {err:?}"
    );

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Not served stale any more; meanwhile the failing probes may have opened the breaker.
    let err = client.get(sie.into()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Http { status: 500, .. } | ApiError::AllBackendsUnavailable { .. }
        ),
        "past stale-if-error: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lru_eviction_keeps_the_total_under_the_bound() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(&fleet, dir.path());
    cfg.cache.max_bytes = 16 * 1024;
    let client = RobustClient::new(cfg).unwrap();
    for i in 0..40 {
        client.get(format!("/bytes/1000?i={i}")).await.unwrap();
        // Keep entry 0 recently used: LRU must spare it.
        if i % 5 == 4 {
            tokio::time::sleep(Duration::from_millis(1_001 / 5)).await;
        }
        if i > 0 && i % 5 == 0 {
            client
                .request(get("/bytes/1000?i=0", Some(CachePolicy::CacheOnly)))
                .await
                .unwrap();
        }
    }
    let s = client.service_status().cache;
    assert!(s.bytes <= 16 * 1024, "{s:?}");
    assert!(s.evictions > 0 && s.entries < 40, "{s:?}");
    assert!(
        client
            .request(get("/bytes/1000?i=39", Some(CachePolicy::CacheOnly)))
            .await
            .is_ok(),
        "newest kept"
    );
    assert!(
        client
            .request(get("/bytes/1000?i=0", Some(CachePolicy::CacheOnly)))
            .await
            .is_ok(),
        "recently used kept"
    );
    assert!(
        client
            .request(get("/bytes/1000?i=1", Some(CachePolicy::CacheOnly)))
            .await
            .is_err(),
        "oldest evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_cache_empties_it_and_the_status_says_so() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    for i in 0..5 {
        client
            .get(format!("/cache/c{i}?cc=max-age%3D60"))
            .await
            .unwrap();
    }
    assert_eq!(client.service_status().cache.entries, 5);
    client.clear_cache();
    let s = client.service_status().cache;
    assert_eq!((s.entries, s.bytes), (0, 0));
    assert!(
        !client
            .get("/cache/c0?cc=max-age%3D60".into())
            .await
            .unwrap()
            .from_cache
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_survives_a_client_restart() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let first = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let stored = first
        .get("/cache/persist?cc=max-age%3D60".into())
        .await
        .unwrap();
    first.shutdown();
    drop(first);
    let second = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let r = second
        .request(get(
            "/cache/persist?cc=max-age%3D60",
            Some(CachePolicy::CacheOnly),
        ))
        .await
        .unwrap();
    assert_eq!(r.body, stored.body);
    assert_eq!(fleet.server(0).hits_for("/cache/persist"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_database_is_moved_aside_recreated_and_the_copy_deleted() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    client.get("/cache/x?cc=max-age%3D60".into()).await.unwrap();
    drop(client);
    let db = dir.path().join("robust-api.sqlite3");
    std::fs::write(&db, vec![0xA5; 64 * 1024]).unwrap();
    let _ = std::fs::remove_file(dir.path().join("robust-api.sqlite3-wal"));

    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let events = Arc::new(Events::default());
    client.add_status_listener(events.clone());
    wait_until("StorageRecovered event", Duration::from_secs(3), || {
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, StatusEvent::StorageRecovered { .. }))
    })
    .await;
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert!(
        moved.is_empty(),
        "the damaged copy is deleted once recovered: {moved:?}"
    );
    let r = client.get("/cache/x?cc=max-age%3D60".into()).await.unwrap();
    assert!(!r.from_cache);
    assert!(
        client
            .get("/cache/x?cc=max-age%3D60".into())
            .await
            .unwrap()
            .from_cache,
        "caching works again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_written_under_a_running_client_never_crashes_or_hangs_it() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let events = Arc::new(Events::default());
    client.add_status_listener(events.clone());
    client.get("/cache/y?cc=max-age%3D60".into()).await.unwrap();
    std::fs::write(dir.path().join("robust-api.sqlite3"), vec![0x5A; 64 * 1024]).unwrap();
    for i in 0..5 {
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            client.get(format!("/cache/z{i}?cc=max-age%3D60")),
        )
        .await;
        assert!(r.expect("no hang").is_ok(), "requests keep succeeding");
    }
    client.clear_cache();
    let _ = client.service_status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_unsafe_request_invalidates_the_path() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/item?cc=max-age%3D60";
    client.get(path.into()).await.unwrap();
    assert!(client.get(path.into()).await.unwrap().from_cache);
    client
        .post_json("/cache/item".into(), "{}".into())
        .await
        .unwrap();
    let after = client.get(path.into()).await.unwrap();
    assert!(!after.from_cache);
    assert_eq!(n_of(&after.body), 3, "GET, POST, GET reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_and_authorization_keep_entries_apart() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/v?cc=max-age%3D60&vary=Accept-Language";
    let with = |name: &str, value: &str| {
        let mut r = ApiRequest::get(path);
        r.headers.insert(name.into(), value.into());
        r
    };
    client.request(with("Accept-Language", "fr")).await.unwrap();
    assert!(
        client
            .request(with("accept-language", "fr"))
            .await
            .unwrap()
            .from_cache
    );
    assert!(
        !client
            .request(with("Accept-Language", "de"))
            .await
            .unwrap()
            .from_cache,
        "different Vary'd header"
    );

    let p = "/cache/me?cc=max-age%3D60";
    let as_user = |token: &str| {
        let mut r = ApiRequest::get(p);
        r.headers
            .insert("Authorization".into(), format!("Bearer {token}"));
        r
    };
    client.request(as_user("alice")).await.unwrap();
    assert!(client.request(as_user("alice")).await.unwrap().from_cache);
    assert!(
        !client.request(as_user("bob")).await.unwrap().from_cache,
        "never another user's data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_cache_first_cache_only_network_only_and_stale_while_revalidate() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/p?cc=max-age%3D0";
    let err = client
        .request(get(path, Some(CachePolicy::CacheOnly)))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotCached { .. }));
    assert_eq!(
        fleet.server(0).hits_for("/cache/p"),
        0,
        "cache-only never touches the network"
    );

    client.get(path.into()).await.unwrap();
    let r = client
        .request(get(path, Some(CachePolicy::CacheFirst)))
        .await
        .unwrap();
    assert!(r.from_cache && r.stale, "cache-first takes a stale entry");
    let r = client
        .request(get(path, Some(CachePolicy::NetworkOnly)))
        .await
        .unwrap();
    assert!(!r.from_cache);
    assert_eq!(fleet.server(0).hits_for("/cache/p"), 2);

    let r = client
        .request(get(path, Some(CachePolicy::StaleWhileRevalidate)))
        .await
        .unwrap();
    assert!(r.from_cache && r.stale);
    assert_eq!(n_of(&r.body), 2, "answered at once with what was stored");
    wait_until("background refresh", Duration::from_secs(3), || {
        fleet.server(0).hits_for("/cache/p") == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = client
        .request(get(path, Some(CachePolicy::CacheOnly)))
        .await
        .unwrap();
    assert_eq!(n_of(&r.body), 3, "the refresh replaced the entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_directive_answers_at_once_and_refreshes() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let path = "/cache/swr?cc=max-age%3D0%2C%20stale-while-revalidate%3D60";
    client.get(path.into()).await.unwrap();
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(300)))
        .await;
    let t = Instant::now();
    let r = client.get(path.into()).await.unwrap();
    assert!(r.from_cache && r.stale);
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "did not wait for the slow server"
    );
    wait_until("background revalidation", Duration::from_secs(3), || {
        fleet.server(0).hits_for("/cache/swr") == 2
    })
    .await;
}

/// One storage folder, one client (one sender for its queue): a second client on the folder, in
/// this process or another, is refused with `Storage`; once the first is gone the folder is free
/// (after its `shutdown()` or drop) and the cache it left is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_on_one_storage_dir_is_refused_until_the_first_is_gone() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let a = RobustClient::new(config(&fleet, dir.path())).unwrap();
    a.get("/cache/a7?cc=max-age%3D60".into()).await.unwrap();
    match RobustClient::new(config(&fleet, dir.path())) {
        Err(ApiError::Storage { reason }) => {
            assert!(
                reason.contains("already in use by another client"),
                "{reason}"
            )
        }
        other => panic!("a second client on the folder: {other:?}"),
    }
    // `shutdown()` frees the folder even while the old object is still referenced (a binding's
    // object waiting for its garbage collector).
    a.shutdown();
    let b = RobustClient::new(config(&fleet, dir.path())).unwrap();
    assert!(b
        .request(get(
            "/cache/a7?cc=max-age%3D60",
            Some(CachePolicy::CacheOnly)
        ))
        .await
        .is_ok());
}
