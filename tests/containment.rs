//! Fault containment (issue 13, builds 1 and 4): foreign code that panics, throws or blocks never
//! wedges the queue, kills a WebSocket silently or stalls the client. Real servers on 127.0.0.1.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use robust_api::{
    ApiError, ApiRequest, ClientConfig, HeaderProvider, HttpMethod, RobustClient, StatusEvent,
    StatusListener, WebSocketListener, WebSocketState,
};
use robust_api_fleet::ws::WsFleet;
use robust_api_fleet::{wait_until, Fleet};

fn config(urls: Vec<String>, dir: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(urls);
    c.storage_dir = Some(dir.to_string_lossy().into_owned());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 10;
    c.retry.max_retries = 0;
    c.queue.retry_base_delay_ms = 30;
    c.queue.retry_max_delay_ms = 60;
    c.timeouts.connect_ms = 500;
    c.timeouts.request_ms = 2_000;
    c.websocket.reconnect_base_delay_ms = 50;
    c.websocket.reconnect_max_delay_ms = 200;
    c
}

/// A provider that fails (panics) for its first `failures` calls, then answers a token.
struct Flaky {
    calls: AtomicUsize,
    failures: usize,
}

impl HeaderProvider for Flaky {
    fn headers_for(
        &self,
        _method: HttpMethod,
        _path: String,
        _scope: Option<String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            panic!("injected: the foreign header provider threw");
        }
        Ok(HashMap::from([(
            "Authorization".to_string(),
            "Bearer ok".to_string(),
        )]))
    }
}

/// A status listener that panics on every event.
struct Throwing;
impl StatusListener for Throwing {
    fn on_event(&self, _event: StatusEvent) -> Result<(), ApiError> {
        panic!("injected: the status listener threw");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_provider_and_listener_never_wedge_the_queue() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(fleet.urls(), dir.path())).unwrap();
    client.add_status_listener(Arc::new(Throwing));
    // More panics than `queue.max_in_flight` slots: before, each one left a slot taken for good.
    client.set_header_provider(Arc::new(Flaky {
        calls: AtomicUsize::new(0),
        failures: 12,
    }));
    client.set_network_available(false);
    for i in 0..6 {
        client
            .enqueue(ApiRequest::post_json(
                "/orders",
                format!(r#"{{"seq":{i}}}"#),
            ))
            .unwrap();
    }
    client.set_network_available(true);
    wait_until("every entry delivered", Duration::from_secs(10), || {
        let q = client.service_status().queue;
        q.pending == 0 && q.in_flight == 0
    })
    .await;
    let q = client.service_status().queue;
    assert_eq!((q.delivered, q.dead_lettered), (6, 0), "{q:?}");
    // A live call works too (a throwing provider is a typed error, never `Internal`).
    client.flush_queue().unwrap();
    let r = client.get("/ok".into()).await.unwrap();
    assert_eq!(r.status, 200);
    client.shutdown();
}

// ------------------------------------------------------------------------------------------------
// WebSocket
// ------------------------------------------------------------------------------------------------

#[derive(Default)]
struct Rec {
    errors: Mutex<Vec<ApiError>>,
    states: Mutex<Vec<WebSocketState>>,
    closed: Mutex<Vec<(i32, String)>>,
}

impl WebSocketListener for Rec {
    fn on_open(&self, _backend: String) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_text(&self, _text: String) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_binary(&self, _data: Vec<u8>) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_state_change(&self, state: WebSocketState) -> Result<(), ApiError> {
        self.states.lock().unwrap().push(state);
        Ok(())
    }
    fn on_error(&self, error: ApiError) -> Result<(), ApiError> {
        self.errors.lock().unwrap().push(error);
        Ok(())
    }
    fn on_closed(&self, code: i32, reason: String) -> Result<(), ApiError> {
        self.closed.lock().unwrap().push((code, reason));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_provider_never_leaves_a_websocket_connecting_and_close_completes() {
    let fleet = WsFleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let client = RobustClient::new(config(fleet.urls(), dir.path())).unwrap();
    client.add_status_listener(Arc::new(Throwing));
    client.set_header_provider(Arc::new(Flaky {
        calls: AtomicUsize::new(0),
        failures: usize::MAX,
    }));
    let rec = Arc::new(Rec::default());
    let conn = client
        .connect_websocket("/ws/echo".into(), rec.clone())
        .unwrap();
    wait_until("the failure is reported", Duration::from_secs(5), || {
        !rec.errors.lock().unwrap().is_empty()
    })
    .await;
    let error = rec.errors.lock().unwrap()[0].clone();
    assert!(
        matches!(error, ApiError::CredentialsUnavailable { .. }),
        "{error:?}"
    );
    let started = Instant::now();
    conn.close(1000, "bye".into()).unwrap();
    wait_until("Closed and on_closed", Duration::from_secs(3), || {
        conn.state() == WebSocketState::Closed && !rec.closed.lock().unwrap().is_empty()
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        rec.states.lock().unwrap().last(),
        Some(&WebSocketState::Closed)
    );
    client.shutdown();
}

// ------------------------------------------------------------------------------------------------
// A provider that refreshes its token through the same client (issue 13, build 4)
// ------------------------------------------------------------------------------------------------

/// Refreshes a token with a blocking request through the same client for every call, as an app's
/// synchronous token store does (Kotlin `runBlocking`, a Swift semaphore): on a thread of its own
/// with a runtime of its own.
struct Refreshing {
    client: Mutex<Option<std::sync::Weak<RobustClient>>>,
    refreshes: AtomicUsize,
}

impl HeaderProvider for Refreshing {
    fn headers_for(
        &self,
        _method: HttpMethod,
        path: String,
        _scope: Option<String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        if path == "/token" {
            return Ok(HashMap::new());
        }
        let client = self
            .client
            .lock()
            .unwrap()
            .clone()
            .and_then(|w| w.upgrade())
            .ok_or_else(|| ApiError::CredentialsUnavailable {
                reason: "no client".into(),
            })?;
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let token = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(client.get("/token".into()))
        })
        .join()
        .unwrap()?;
        Ok(HashMap::from([(
            "Authorization".to_string(),
            format!("Bearer {}", token.status),
        )]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refresh_through_the_same_client_completes_in_milliseconds_with_two_workers() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(fleet.urls(), dir.path());
    cfg.worker_threads = 2;
    let client = RobustClient::new(cfg).unwrap();
    let provider = Arc::new(Refreshing {
        client: Mutex::new(Some(Arc::downgrade(&client))),
        refreshes: AtomicUsize::new(0),
    });
    client.set_header_provider(provider.clone());

    // Eight concurrent calls, each refreshing through the client: more than its two workers.
    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.get(format!("/items/{i}")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, 200);
    }
    let took = started.elapsed();
    eprintln!("8 calls with a token refresh each through the same client: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(provider.refreshes.load(Ordering::SeqCst) >= 8);
    let sent = fleet.servers()[0].requests();
    assert!(sent
        .iter()
        .any(|r| r.path.starts_with("/items/") && r.header("authorization") == Some("Bearer 200")));

    // And the queue keeps delivering.
    for i in 0..5 {
        client
            .enqueue(ApiRequest::post_json(
                "/orders",
                format!(r#"{{"seq":{i}}}"#),
            ))
            .unwrap();
    }
    let started = Instant::now();
    wait_until("queued entries delivered", Duration::from_secs(5), || {
        let q = client.service_status().queue;
        q.delivered == 5 && q.pending == 0 && q.in_flight == 0
    })
    .await;
    eprintln!("5 queued entries delivered in {:?}", started.elapsed());
    *provider.client.lock().unwrap() = None;
    client.shutdown();
}

/// A provider that never answers: the call fails typed after `timeouts.header_provider_ms`, and
/// the client's workers stay free for everything else.
struct Stuck;
impl HeaderProvider for Stuck {
    fn headers_for(
        &self,
        _method: HttpMethod,
        path: String,
        _scope: Option<String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        if path == "/stuck" {
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok(HashMap::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_is_a_typed_timeout_and_blocks_no_worker() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(fleet.urls(), dir.path());
    cfg.worker_threads = 2;
    cfg.timeouts.header_provider_ms = 300;
    let client = RobustClient::new(cfg).unwrap();
    client.set_header_provider(Arc::new(Stuck));
    let stuck: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get("/stuck".into()).await })
        })
        .collect();
    let started = Instant::now();
    assert_eq!(client.get("/fine".into()).await.unwrap().status, 200);
    assert!(started.elapsed() < Duration::from_millis(250));
    for call in stuck {
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, ApiError::CredentialsUnavailable { reason } if reason.contains("300 ms")),
            "{err:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    client.shutdown();
}

/// `Expires: Sun, 06 Nov 300000000000 08:49:37 GMT` used to panic inside a call and inside queue
/// deliveries (wedging their slots). Now an invalid date is "already expired": the calls succeed and
/// more deliveries than `queue.max_in_flight` slots all complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_date_header_fails_nothing_and_wedges_no_queue_slot() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(fleet.urls(), dir.path())).unwrap();
    let far = "Sun%2C%2006%20Nov%20300000000000%2008%3A49%3A37%20GMT";
    let path = format!("/cache/far?expires={far}");
    let first = client.request(ApiRequest::get(path.clone())).await.unwrap();
    assert_eq!(first.status, 200);
    assert!(
        first.headers["expires"].contains("300000000000"),
        "{first:?}"
    );
    let again = client.request(ApiRequest::get(path.clone())).await.unwrap();
    assert!(
        !again.from_cache,
        "an invalid Expires means already expired, not fresh forever"
    );
    for i in 0..6 {
        client
            .enqueue(ApiRequest::post_json(
                path.clone(),
                format!(r#"{{"i":{i}}}"#),
            ))
            .unwrap();
    }
    wait_until(
        "6 deliveries through 4 slots",
        Duration::from_secs(10),
        || client.service_status().queue.delivered == 6,
    )
    .await;
    let q = client.service_status().queue;
    assert_eq!((q.pending, q.in_flight), (0, 0));
    client.shutdown();
}
