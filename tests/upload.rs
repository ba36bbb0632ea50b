//! File uploads against real files and real local servers (the fleet's streaming `/upload` route):
//! content and fields arrive intact, progress, cancellation (dropped future and token), the upload
//! retry policy (reset mid-body → same key, stored once, same backend; failover before the first
//! byte; idle timeout; final 4xx), and input errors before any network I/O.
//! The 200 MB flat-memory test is in `tests/upload_memory.rs` (its own process, for a clean RSS).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use robust_api::{
    ApiError, CancelToken, ClientConfig, HeaderProvider, HttpMethod, RobustClient, UploadRequest,
};
use robust_api_fleet::{
    json_num, json_str, make_file, sha256_file, wait_until, Fault, Fleet, Server,
};
use support::Progress;

const MB: u64 = 1 << 20;

fn config(fleet: &Fleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.retry.base_delay_ms = 10;
    c.retry.max_delay_ms = 40;
    c.timeouts.connect_ms = 500;
    c.upload.idle_timeout_ms = 5_000;
    c.upload.resumable = "multipart".into(); // the multipart path's policy (tus: tests/tus.rs)
    c
}

/// Waits until the server's received upload bytes stop changing, and returns the count.
async fn settled_upload_bytes(server: &Server) -> u64 {
    let mut last = server.upload_bytes_received();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server.upload_bytes_received();
        if now == last {
            return now;
        }
        last = now;
    }
}

struct Auth;

impl HeaderProvider for Auth {
    fn headers_for(
        &self,
        _method: HttpMethod,
        _path: String,
        _scope: Option<String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        Ok(HashMap::from([(
            "authorization".into(),
            "Bearer fresh".into(),
        )]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_arrives_intact_with_its_fields_headers_and_a_generated_key() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let size = 24 * MB + 123;
    let path = make_file(dir.path(), "clip.mp4", size);
    let client = RobustClient::new(config(&fleet)).unwrap();
    client.set_header_provider(Arc::new(Auth));
    let mut req = UploadRequest::new("/upload", path.to_string_lossy());
    req.fields
        .insert("title".into(), "Summer \"24\" ünïcode".into());
    req.fields.insert("album".into(), "holidays".into());
    req.headers.insert("x-trace".into(), "t1".into());
    let progress = Progress::new();

    let r = client
        .upload_file(req, Some(Box::new(progress.clone())))
        .await
        .unwrap();

    assert_eq!((r.status, r.attempts), (201, 1));
    let server = fleet.server(0);
    let stored = server.uploads();
    assert_eq!(stored.len(), 1);
    let u = &stored[0];
    assert_eq!(u.size, size);
    assert_eq!(
        u.sha256,
        sha256_file(&path),
        "the server got identical bytes"
    );
    assert_eq!(
        json_str(&r.body, "sha256").as_deref(),
        Some(u.sha256.as_str())
    );
    assert_eq!(
        u.fields,
        vec![
            ("album".to_owned(), "holidays".to_owned()),
            ("title".to_owned(), "Summer \"24\" ünïcode".to_owned()),
        ]
    );
    assert_eq!(
        (
            u.field_name.as_str(),
            u.file_name.as_str(),
            u.content_type.as_str()
        ),
        ("file", "clip.mp4", "video/mp4")
    );
    // A generated UUID-v4 idempotency key, the caller's and the provider's headers, a real length.
    let key = u.key.clone().expect("an idempotency key");
    assert_eq!((key.len(), &key[14..15]), (36, "4"), "{key}");
    let rec = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/upload")
        .unwrap();
    assert_eq!(rec.header("authorization"), Some("Bearer fresh"));
    assert_eq!(rec.header("x-trace"), Some("t1"));
    assert!(rec.header("transfer-encoding").is_none());
    let total = progress.assert_monotonic_to_total();
    assert_eq!(
        rec.header("content-length"),
        Some(total.to_string().as_str())
    );
    assert_eq!(rec.body_len as i64, total);
    // Throttled: about one call per 1 %, nowhere near one per 8 KiB chunk (3,000+).
    let calls = progress.calls().len();
    assert!((2..=110).contains(&calls), "{calls} progress calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_video_file_posts_the_title_to_the_configured_path() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "movie.mov", 3 * MB);
    let mut cfg = config(&fleet);
    cfg.upload.video_path = "/upload/videos".into();
    let client = RobustClient::new(cfg).unwrap();
    let progress = Progress::new();
    let r = client
        .upload_video_file(
            path.to_string_lossy().into_owned(),
            "My trip".into(),
            Some(Box::new(progress.clone())),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let u = &fleet.server(0).uploads()[0];
    assert_eq!(u.path, "/upload/videos");
    assert_eq!(u.fields, vec![("title".to_owned(), "My trip".to_owned())]);
    assert_eq!(
        (u.content_type.as_str(), u.size),
        ("video/quicktime", 3 * MB)
    );
    assert_eq!(u.sha256, sha256_file(&path));
    progress.assert_monotonic_to_total();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unreadable_file_is_invalid_request_before_any_network_io() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let client = RobustClient::new(config(&fleet)).unwrap();
    let missing = dir.path().join("nope.mp4").to_string_lossy().into_owned();
    let progress = Progress::new();
    let err = client
        .upload_file(
            UploadRequest::new("/upload", &missing),
            Some(Box::new(progress.clone())),
        )
        .await
        .unwrap_err();
    match &err {
        ApiError::InvalidRequest { reason } => assert!(reason.contains(&missing), "{reason}"),
        other => panic!("{other:?}"),
    }
    let folder = dir.path().to_string_lossy().into_owned();
    let err = client
        .upload_file(UploadRequest::new("/upload", &folder), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::InvalidRequest { reason } if reason.contains(&folder)),
        "{err:?}"
    );
    let err = client
        .upload_video_file(missing.clone(), "t".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::InvalidRequest { .. }), "{err:?}");
    assert_eq!(fleet.server(0).hits_for("/upload"), 0);
    assert_eq!(fleet.server(0).hits_for("/api/videos"), 0);
    assert!(progress.calls().is_empty());
    // A bad path is caught before the file is even looked at.
    let file = make_file(dir.path(), "ok.bin", 10);
    let err = client
        .upload_file(
            UploadRequest::new("http://evil/x", file.to_string_lossy()),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::InvalidRequest { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_mid_way_stops_the_server_receiving() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0).clone();
    let dir = tempfile::tempdir().unwrap();
    let size = 200 * MB;
    let path = make_file(dir.path(), "big.bin", size);
    let client = RobustClient::new(config(&fleet)).unwrap();
    let reached = Arc::new(tokio::sync::Notify::new());
    let r2 = reached.clone();
    let progress = Progress::with_hook(move |sent, total| {
        if sent * 10 >= total {
            r2.notify_one();
        }
    });
    let upload = client.upload_file(
        UploadRequest::new("/upload", path.to_string_lossy()),
        Some(Box::new(progress.clone())),
    );
    tokio::select! {
        r = upload => panic!("the upload finished before it was cancelled: {r:?}"),
        _ = reached.notified() => {} // the upload future is dropped here
    }
    let at_cancel = progress.calls().last().unwrap().0;
    progress.assert_off_the_client_threads();
    let received = settled_upload_bytes(&server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.upload_bytes_received(), received, "still receiving");
    println!("dropped at progress {at_cancel}: the server received {received} of {size} bytes");
    assert!(
        received < size / 2,
        "received {received} of {size} (progress was at {at_cancel} when cancelled)"
    );
    assert!(server.uploads().is_empty());
    // The client still works.
    let small = make_file(dir.path(), "small.bin", 1000);
    let r = client
        .upload_file(UploadRequest::new("/upload", small.to_string_lossy()), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_token_stops_the_upload_with_cancelled() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0).clone();
    let dir = tempfile::tempdir().unwrap();
    let size = 200 * MB;
    let path = make_file(dir.path(), "big.bin", size);
    let client = RobustClient::new(config(&fleet)).unwrap();
    let token = CancelToken::new();
    let t2 = token.clone();
    // Cancelled from inside the progress callback, as a UI "Cancel" button handler would.
    let progress = Progress::with_hook(move |sent, total| {
        if sent * 10 >= total {
            t2.cancel();
        }
    });
    let started = Instant::now();
    let err = client
        .upload_file_with_token(
            UploadRequest::new("/upload", path.to_string_lossy()),
            token.clone(),
            Some(Box::new(progress.clone())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Cancelled { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let received = settled_upload_bytes(&server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.upload_bytes_received(), received, "still receiving");
    let at_cancel = progress.calls().last().unwrap().0;
    progress.assert_off_the_client_threads();
    println!("token at progress {at_cancel}: the server received {received} of {size} bytes");
    assert!(received < size / 2, "received {received} of {size}");
    assert!(server.uploads().is_empty());
    assert!(token.is_cancelled());

    // A token cancelled before the call: nothing is sent at all.
    server.reset_hits();
    let err = client
        .upload_file_with_token(
            UploadRequest::new("/upload", path.to_string_lossy()),
            token,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Cancelled { .. }), "{err:?}");
    assert_eq!(server.hits_for("/upload"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_at_half_is_retried_on_the_same_backend_with_the_same_key_and_stored_once() {
    let fleet = Fleet::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let size = 32 * MB;
    let path = make_file(dir.path(), "half.bin", size);
    // Both servers are armed: whichever gets the upload resets it at 50 %; a retry that moved to
    // the other backend would be reset too (and show up below).
    for s in fleet.servers() {
        s.set_upload_reset_after(Some(size / 2));
    }
    let client = RobustClient::new(config(&fleet)).unwrap();
    let mut req = UploadRequest::new("/upload", path.to_string_lossy());
    req.idempotency_key = Some("upload-key-1".into());
    req.fields.insert("title".into(), "retried".into());
    let progress = Progress::new();

    let r = client
        .upload_file(req, Some(Box::new(progress.clone())))
        .await
        .unwrap();

    assert_eq!((r.status, r.attempts), (201, 2));
    let (used, other): (Vec<&Server>, Vec<&Server>) = fleet
        .servers()
        .iter()
        .partition(|s| s.upload_bytes_received() > 0);
    assert_eq!(used.len(), 1, "the retry went to another backend");
    let (used, other) = (used[0], other[0]);
    assert_eq!(r.backend, used.url());
    assert!(!used.upload_reset_armed(), "the reset happened");
    assert!(other.upload_reset_armed() && other.hits_for("/upload") == 0);
    assert_eq!(
        used.idempotency_keys(),
        vec!["upload-key-1".to_owned(), "upload-key-1".to_owned()],
        "both attempts carried the same key"
    );
    let stored = used.uploads();
    assert_eq!(stored.len(), 1, "stored once");
    assert_eq!(stored[0].sha256, sha256_file(&path));
    assert_eq!(
        stored[0].fields,
        vec![("title".to_owned(), "retried".to_owned())]
    );
    // At least half the body went out twice; progress still only moved forward.
    assert!(used.upload_bytes_received() >= size + size / 2);
    progress.assert_monotonic_to_total();
    let status = client.service_status();
    assert!(status.counters.retries >= 1, "{:?}", status.counters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_key_returns_the_stored_answer_without_storing_twice() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "twice.bin", 2 * MB);
    let client = RobustClient::new(config(&fleet)).unwrap();
    let mut req = UploadRequest::new("/upload", path.to_string_lossy());
    req.idempotency_key = Some("same-key".into());
    let first = client.upload_file(req.clone(), None).await.unwrap();
    let second = client.upload_file(req, None).await.unwrap();
    assert_eq!(first.body, second.body);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    assert_eq!(
        second
            .headers
            .get("idempotent-replayed")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(fleet.server(0).uploads().len(), 1);
    assert_eq!(fleet.server(0).unique_effects(), 1);
    assert_eq!(json_num(&first.body, "upload"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_before_the_first_byte_only() {
    let fleet = Fleet::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "f.bin", 4 * MB);
    // Backend 0 is preferred (backend 1 answered the start-up probe slowly), then goes down:
    // connections are refused, nothing was sent, so the upload moves to backend 1.
    fleet
        .server(1)
        .set_fault(Fault::Slow(Duration::from_millis(40)))
        .await;
    let client = RobustClient::new(config(&fleet)).unwrap();
    wait_until("start-up probes", Duration::from_secs(5), || {
        client
            .service_status()
            .backends
            .iter()
            .all(|b| b.latency_ewma_ms.is_some())
    })
    .await;
    fleet.server(1).set_fault(Fault::None).await;
    assert_eq!(
        client.service_status().preferred_backend,
        Some(fleet.urls()[0].clone())
    );
    fleet.server(0).set_fault(Fault::Down).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the pooled probe connection sees the FIN
    let r = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap();
    assert_eq!(
        (r.backend.as_str(), r.attempts),
        (fleet.urls()[1].as_str(), 2)
    );
    assert_eq!(fleet.server(1).uploads().len(), 1);
    assert!(client.service_status().counters.failovers >= 1);

    // Once bytes went to a backend, no failover: with no retries left the upload fails there.
    fleet.server(0).set_fault(Fault::None).await;
    let mut cfg = config(&fleet);
    cfg.upload.max_retries = 0;
    let client = RobustClient::new(cfg).unwrap();
    for s in fleet.servers() {
        s.reset_uploads();
        s.set_upload_reset_after(Some(MB));
    }
    let err = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Transport { .. }), "{err:?}");
    let touched = fleet
        .servers()
        .iter()
        .filter(|s| s.upload_bytes_received() > 0)
        .count();
    assert_eq!(touched, 1, "the failed upload moved to another backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_use_an_idle_timeout_not_the_request_timeout() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "slow.bin", MB);
    // The server answers 300 ms after the body: far over request_timeout_ms, within the idle one.
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(300)))
        .await;
    let mut cfg = config(&fleet);
    cfg.timeouts.request_ms = 50;
    cfg.upload.idle_timeout_ms = 2_000;
    let client = RobustClient::new(cfg).unwrap();
    let r = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap();
    assert_eq!(r.status, 201);

    // Idle longer than the idle timeout: the attempt fails, is retried (same key), then gives up.
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(1_500)))
        .await;
    let mut cfg = config(&fleet);
    cfg.upload.idle_timeout_ms = 200;
    cfg.upload.max_retries = 1;
    let client = RobustClient::new(cfg).unwrap();
    fleet.server(0).reset_hits();
    let started = Instant::now();
    let err = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApiError::Timeout {
            backend: fleet.urls()[0].clone(),
            timeout_ms: 200
        }
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_400),
        "{:?}",
        started.elapsed()
    );
    let keys = fleet.server(0).idempotency_keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_4xx_are_final_and_5xx_are_retried_up_to_the_upload_limit() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "s.bin", MB);
    let mut cfg = config(&fleet);
    cfg.upload.max_retries = 2;
    cfg.retry.max_retries = 0; // the API calls' limit does not apply to uploads
    let client = RobustClient::new(cfg).unwrap();
    // Probes would see the fault too; wait for the start-up probe first.
    wait_until("start-up probe", Duration::from_secs(5), || {
        fleet.server(0).hits_for("/api/health") > 0
    })
    .await;

    fleet.server(0).set_fault(Fault::Status(422)).await;
    let err = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Http { status: 422, .. }), "{err:?}");
    assert_eq!(fleet.server(0).hits_for("/upload"), 1);

    fleet.server(0).reset_hits();
    fleet.server(0).set_fault(Fault::Status(503)).await;
    let err = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Http { status: 503, .. }), "{err:?}");
    assert_eq!(fleet.server(0).hits_for("/upload"), 3);
    assert!(fleet.server(0).uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_fails_fast_without_io() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "o.bin", 1000);
    let client = RobustClient::new(config(&fleet)).unwrap();
    client.set_network_available(false);
    let err = client
        .upload_file(UploadRequest::new("/upload", path.to_string_lossy()), None)
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::Offline);
    assert_eq!(fleet.server(0).hits_for("/upload"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_and_api_calls_share_the_client() {
    let fleet = Fleet::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let client = RobustClient::new(config(&fleet)).unwrap();
    let files: Vec<_> = (0..4)
        .map(|i| make_file(dir.path(), &format!("c{i}.bin"), (i + 1) * MB + i))
        .collect();
    let uploads = files.iter().map(|f| {
        let client = client.clone();
        let f = f.clone();
        async move {
            client
                .upload_file(UploadRequest::new("/upload", f.to_string_lossy()), None)
                .await
        }
    });
    let gets = (0..20).map(|i| {
        let client = client.clone();
        async move { client.get(format!("/api/items/{i}")).await }
    });
    let (ups, gets) = tokio::join!(
        futures_join_all(uploads.collect()),
        futures_join_all(gets.collect())
    );
    assert!(gets.iter().all(|g| g.is_ok()));
    let mut want: Vec<String> = files.iter().map(|f| sha256_file(f)).collect();
    let mut got: Vec<String> = ups
        .into_iter()
        .map(|r| json_str(&r.unwrap().body, "sha256").unwrap())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

/// `join_all` without a futures dependency in the tests.
async fn futures_join_all<T: Send + 'static>(
    futs: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_answered_with_a_redirect_is_a_typed_error_naming_the_location() {
    // Issue 13: a 307 was reported as success with progress 100 % although nothing was stored.
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "a.bin", 64 * 1024);
    let client = RobustClient::new(config(&fleet)).unwrap();
    for status in [301, 302, 307, 308] {
        let req = UploadRequest::new(
            format!("/redirect?status={status}&to=https%3A%2F%2Felsewhere.example%2Fupload"),
            path.to_string_lossy(),
        );
        let err = client.upload_file(req, None).await.unwrap_err();
        match &err {
            ApiError::UnexpectedRedirect {
                status: s,
                location,
                ..
            } => {
                assert_eq!(*s, status);
                assert_eq!(location, "https://elsewhere.example/upload");
            }
            other => panic!("HTTP {status}: expected UnexpectedRedirect, got {other:?}"),
        }
    }
    assert!(fleet.server(0).uploads().is_empty());
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmetered_only_multipart_upload_waits_while_metered() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "wifi.mp4", 4 * MB);
    let mut c = config(&fleet);
    c.upload.unmetered_only = true; // the default for every upload
    let client = Arc::new(RobustClient::new(c).unwrap());
    client.set_network_metered(true);
    let progress = Progress::new();
    let call = {
        let (client, p) = (client.clone(), progress.clone());
        let req = UploadRequest::new("/upload", path.to_string_lossy());
        tokio::spawn(async move { client.upload_file(req, Some(Box::new(p))).await })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let server = fleet.server(0);
    assert_eq!(server.hits_for("/upload"), 0, "nothing while metered");
    assert_eq!(server.upload_bytes_received(), 0);
    assert!(!call.is_finished(), "the call waits");
    client.set_network_metered(false);
    let r = call.await.unwrap().unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(server.uploads().len(), 1);
    assert_eq!(server.uploads()[0].sha256, sha256_file(&path));
    progress.assert_monotonic_to_total();
}
