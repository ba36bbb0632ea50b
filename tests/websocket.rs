//! WebSockets against real local servers (`robust_api_fleet::ws`): echo, heartbeat and
//! dead-connection detection, reconnect with jitter, failover, offline behaviour, the outbound
//! buffer, closes and shutdown. Short intervals throughout; every wait is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use robust_api::{
    ApiError, BreakerState, ClientConfig, HeaderProvider, HttpMethod, RobustClient,
    WebSocketConnection, WebSocketListener, WebSocketState,
};
use robust_api_fleet::wait_until;
use robust_api_fleet::ws::{Mode, Received, WsFleet};

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Open(String),
    Text(String),
    Binary(Vec<u8>),
    State(WebSocketState),
    Error(ApiError),
    Closed(i32, String),
}

/// Records every callback, with the thread it ran on.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Instant, Ev)>>,
    threads: Mutex<Vec<String>>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    fn push(&self, ev: Ev) {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.threads.lock().unwrap().push(name);
        self.events.lock().unwrap().push((Instant::now(), ev));
    }

    fn all(&self) -> Vec<Ev> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn opens(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Open(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    fn texts(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Text(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn binaries(&self) -> Vec<Vec<u8>> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Binary(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    fn errors(&self) -> Vec<ApiError> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Error(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    fn states(&self) -> Vec<WebSocketState> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Ev::State(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn closed(&self) -> Vec<(i32, String)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Closed(c, r) => Some((c, r)),
                _ => None,
            })
            .collect()
    }

    /// When the first event matching `pred` was recorded.
    fn first_at(&self, pred: impl Fn(&Ev) -> bool) -> Option<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| pred(e))
            .map(|(t, _)| *t)
    }
}

impl WebSocketListener for Recorder {
    fn on_open(&self, backend: String) -> Result<(), ApiError> {
        self.push(Ev::Open(backend));
        Ok(())
    }
    fn on_text(&self, text: String) -> Result<(), ApiError> {
        self.push(Ev::Text(text));
        Ok(())
    }
    fn on_binary(&self, data: Vec<u8>) -> Result<(), ApiError> {
        self.push(Ev::Binary(data));
        Ok(())
    }
    fn on_state_change(&self, state: WebSocketState) -> Result<(), ApiError> {
        self.push(Ev::State(state));
        Ok(())
    }
    fn on_error(&self, error: ApiError) -> Result<(), ApiError> {
        self.push(Ev::Error(error));
        Ok(())
    }
    fn on_closed(&self, code: i32, reason: String) -> Result<(), ApiError> {
        self.push(Ev::Closed(code, reason));
        Ok(())
    }
}

/// Short intervals: ping every 200 ms, dead after 200 ms without pong, reconnect 50 → 400 ms.
fn fast_config(fleet: &WsFleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.websocket.heartbeat_interval_ms = 200;
    c.websocket.pong_timeout_ms = 200;
    c.websocket.reconnect_base_delay_ms = 50;
    c.websocket.reconnect_max_delay_ms = 400;
    c.timeouts.connect_ms = 1_000;
    c
}

async fn open_socket(
    client: &RobustClient,
    path: &str,
) -> (Arc<WebSocketConnection>, Arc<Recorder>) {
    let rec = Recorder::new();
    let conn = client.connect_websocket(path.into(), rec.clone()).unwrap();
    wait_until("the socket opens", Duration::from_secs(5), || {
        conn.state() == WebSocketState::Open && !rec.opens().is_empty()
    })
    .await;
    (conn, rec)
}

fn is_dead_error(e: &ApiError) -> bool {
    matches!(e, ApiError::Transport { reason, .. } if reason.contains("dead connection"))
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_works_and_status_shows_the_socket() {
    let fleet = WsFleet::start(1).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let rec = Recorder::new();
    let conn = client
        .connect_websocket("/ws/echo?room=1".into(), rec.clone())
        .unwrap();
    // Sent before the connection is open: buffered, then delivered first.
    conn.send_text("early".into()).unwrap();
    wait_until("open", Duration::from_secs(5), || !rec.opens().is_empty()).await;
    assert_eq!(rec.opens(), vec![fleet.urls()[0].clone()]);
    conn.send_text("hello".into()).unwrap();
    conn.send_binary(vec![1, 2, 3]).unwrap();
    conn.send_text("héllo ✓".into()).unwrap();
    wait_until("echoes", Duration::from_secs(5), || rec.texts().len() == 3).await;
    assert_eq!(rec.texts(), vec!["early", "hello", "héllo ✓"]);
    wait_until("binary echo", Duration::from_secs(5), || {
        rec.binaries().len() == 1
    })
    .await;
    assert_eq!(rec.binaries(), vec![vec![1u8, 2, 3]]);
    assert_eq!(rec.states(), vec![WebSocketState::Open]);
    let upgrade = &fleet.server(0).upgrade_log()[0];
    assert_eq!(upgrade.path, "/ws/echo?room=1");

    // A heartbeat round trip shows up in the status.
    wait_until("a pong RTT", Duration::from_secs(3), || {
        client.service_status().sockets[0]
            .last_pong_rtt_ms
            .is_some()
    })
    .await;
    let status = client.service_status();
    assert_eq!(status.sockets.len(), 1);
    let s = &status.sockets[0];
    assert_eq!(s.state, WebSocketState::Open);
    assert_eq!(s.backend.as_deref(), Some(fleet.urls()[0].as_str()));
    assert_eq!(s.path, "/ws/echo?room=1");
    assert!(s.connected_since_ms_ago.is_some());
    assert_eq!(
        (s.reconnects, s.buffered_messages, s.buffered_bytes),
        (0, 0, 0)
    );
    assert!(s.last_pong_rtt_ms.unwrap() < 200);
    assert_eq!(conn.status().id, s.id);
    // Callbacks run on the connection's own thread, never on the runtime's workers.
    let threads = rec.threads.lock().unwrap().clone();
    assert!(
        threads.iter().all(|t| t.starts_with("robust-api-ws-")),
        "{threads:?}"
    );
    // Server-initiated messages arrive too.
    fleet.server(0).push_text("pushed");
    wait_until("push", Duration::from_secs(3), || rec.texts().len() == 4).await;
    assert_eq!(rec.texts()[3], "pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_carries_default_and_provider_headers() {
    struct Token;
    impl HeaderProvider for Token {
        fn headers_for(
            &self,
            method: HttpMethod,
            path: String,
            _scope: Option<String>,
        ) -> Result<HashMap<String, String>, ApiError> {
            assert_eq!((method, path.as_str()), (HttpMethod::Get, "/ws"));
            Ok(HashMap::from([(
                "Authorization".to_string(),
                "Bearer fresh".to_string(),
            )]))
        }
    }
    let fleet = WsFleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.default_headers.insert("X-App".into(), "demo".into());
    // (A `Connection` default header is refused at construction: see tests/trust.rs.)
    let client = RobustClient::new(cfg).unwrap();
    client.set_header_provider(Arc::new(Token));
    let (_conn, _rec) = open_socket(&client, "/ws").await;
    let up = &fleet.server(0).upgrade_log()[0];
    let h = |n: &str| {
        up.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(h("x-app").as_deref(), Some("demo"));
    assert_eq!(h("authorization").as_deref(), Some("Bearer fresh"));
    assert!(h("user-agent").unwrap().starts_with("robust-api/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_connection_is_detected_within_interval_plus_timeout_and_reconnected() {
    let fleet = WsFleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.websocket.heartbeat_interval_ms = 300;
    cfg.websocket.pong_timeout_ms = 200;
    let client = RobustClient::new(cfg).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;
    wait_until("a first pong", Duration::from_secs(3), || {
        conn.status().last_pong_rtt_ms.is_some()
    })
    .await;
    // Half-open: the server keeps TCP open but reads nothing, so answers no ping.
    let went_deaf = Instant::now();
    fleet.server(0).set_mode(Mode::Deaf);
    wait_until("dead connection detected", Duration::from_secs(3), || {
        rec.errors().iter().any(is_dead_error)
    })
    .await;
    let detected = rec
        .first_at(|e| matches!(e, Ev::Error(x) if is_dead_error(x)))
        .unwrap()
        - went_deaf;
    fleet.server(0).set_mode(Mode::Echo);
    println!(
        "dead connection detected after {detected:?} (bound: interval 300 ms + timeout 200 ms)"
    );
    assert!(
        detected <= Duration::from_millis(300 + 200 + 300), // + scheduling slack on a busy CI box
        "detection took {detected:?}"
    );
    wait_until("reconnected", Duration::from_secs(5), || {
        rec.opens().len() == 2
    })
    .await;
    assert_eq!(fleet.server(0).upgrades(), 2);
    conn.send_text("after".into()).unwrap();
    wait_until("echo after reconnect", Duration::from_secs(3), || {
        rec.texts() == vec!["after".to_string()]
    })
    .await;
    assert_eq!(conn.status().reconnects, 1);
    assert_eq!(
        rec.states(),
        vec![
            WebSocketState::Open,
            WebSocketState::Reconnecting,
            WebSocketState::Open
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_the_buffered_messages_in_order() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let mut config = fast_config(&fleet);
    // The refused attempts while the server is down must not open the breaker (that fences the
    // only backend off for 30 s: a different test).
    config.breaker.failure_threshold = 1_000;
    let client = RobustClient::new(config).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;
    server.kill().await;
    wait_until("the client notices", Duration::from_secs(3), || {
        conn.state() == WebSocketState::Reconnecting
    })
    .await;
    server.reset();
    let sent: Vec<String> = (0..50).map(|i| format!("m{i:02}")).collect();
    for m in &sent {
        conn.send_text(m.clone()).unwrap();
    }
    let s = conn.status();
    assert_eq!((s.buffered_messages, s.buffered_bytes), (50, 150));
    assert_eq!(s.connected_since_ms_ago, None);
    tokio::time::sleep(Duration::from_millis(300)).await; // a few refused attempts
    server.start().await.unwrap();
    wait_until("the server got all 50", Duration::from_secs(5), || {
        server.received_texts().len() == 50
    })
    .await;
    assert_eq!(server.received_texts(), sent, "flushed in order");
    wait_until("all echoed", Duration::from_secs(5), || {
        rec.texts().len() == 50
    })
    .await;
    assert_eq!(rec.texts(), sent);
    assert_eq!(rec.opens().len(), 2);
    let s = conn.status();
    assert_eq!((s.reconnects, s.buffered_messages), (1, 0));
    // Each failed attempt was reported.
    assert!(rec.errors().iter().any(
        |e| matches!(e, ApiError::Transport { reason, .. } if reason.contains("websocket connect"))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_fails_over_to_another() {
    let fleet = WsFleet::start(2).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;
    let first = rec.opens()[0].clone();
    let i = fleet.urls().iter().position(|u| *u == first).unwrap();
    fleet.server(i).kill().await;
    wait_until("reconnected elsewhere", Duration::from_secs(5), || {
        rec.opens().len() == 2
    })
    .await;
    assert_eq!(rec.opens()[1], fleet.urls()[1 - i]);
    conn.send_text("via the other".into()).unwrap();
    wait_until("echo", Duration::from_secs(3), || rec.texts().len() == 1).await;
    assert_eq!(fleet.server(1 - i).received_texts(), vec!["via the other"]);
    assert_eq!(
        conn.status().backend.as_deref(),
        Some(fleet.urls()[1 - i].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_count_against_the_breaker_and_open_breakers_are_skipped() {
    let fleet = WsFleet::start(2).await;
    let mut cfg = fast_config(&fleet);
    cfg.breaker.failure_threshold = 1;
    cfg.breaker.open_ms = 60_000;
    let client = RobustClient::new(cfg).unwrap();
    wait_until("start-up probes", Duration::from_secs(5), || {
        client
            .service_status()
            .backends
            .iter()
            .all(|b| b.latency_ewma_ms.is_some())
    })
    .await;
    // Equal latency: backend 0 (configured first) is tried first, refused, and the same pass
    // moves on to backend 1 at once.
    fleet.server(0).kill().await;
    let (_c1, rec1) = open_socket(&client, "/ws").await;
    assert_eq!(rec1.opens(), vec![fleet.urls()[1].clone()]);
    assert_eq!(rec1.errors().len(), 1, "{:?}", rec1.errors());
    assert!(
        matches!(&rec1.errors()[0], ApiError::Transport { backend, .. } if *backend == fleet.urls()[0])
    );
    assert_eq!(
        client.service_status().backends[0].breaker_state,
        BreakerState::Open
    );
    // Backend 0's breaker is open: a new socket goes straight to backend 1.
    let (_c2, rec2) = open_socket(&client, "/ws").await;
    assert_eq!(rec2.opens(), vec![fleet.urls()[1].clone()]);
    assert!(rec2.errors().is_empty(), "{:?}", rec2.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_means_no_connection_attempts_until_the_network_returns() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let mut cfg = fast_config(&fleet);
    // A reconnect that waited for its backoff would take up to a minute: the attempt after the
    // network returns must not wait for it.
    cfg.websocket.reconnect_base_delay_ms = 60_000;
    cfg.websocket.reconnect_max_delay_ms = 60_000;
    let client = RobustClient::new(cfg).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;

    client.set_network_available(false);
    server.restart().await.unwrap(); // drops the connection; the port is open again
    server.reset();
    wait_until("the client notices", Duration::from_secs(3), || {
        conn.state() == WebSocketState::Reconnecting
    })
    .await;
    conn.send_text("queued while offline".into()).unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(server.upgrades(), 0, "no WebSocket attempt while offline");
    assert_eq!(
        server.tcp_connections(),
        0,
        "no connection at all (probes stop too)"
    );

    let back = Instant::now();
    client.set_network_available(true);
    wait_until("an attempt", Duration::from_secs(3), || {
        server.upgrades() >= 1
    })
    .await;
    let after = server.upgrade_log()[0].at - back;
    println!("first attempt {after:?} after the network came back");
    assert!(after < Duration::from_millis(300), "attempt took {after:?}");
    wait_until("reopened and flushed", Duration::from_secs(3), || {
        rec.texts() == vec!["queued while offline".to_string()]
    })
    .await;

    // A socket created while offline waits too, then connects at once.
    client.set_network_available(false);
    server.reset();
    let rec2 = Recorder::new();
    let conn2 = client
        .connect_websocket("/ws".into(), rec2.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(conn2.state(), WebSocketState::Connecting);
    assert_eq!(server.upgrades(), 0);
    let back = Instant::now();
    client.set_network_available(true);
    wait_until("second socket opens", Duration::from_secs(3), || {
        !rec2.opens().is_empty()
    })
    .await;
    assert!(server.upgrade_log()[0].at - back < Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_reconnect_spread_out_by_jitter() {
    const N: usize = 100;
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let mut cfg = fast_config(&fleet);
        cfg.worker_threads = 1;
        cfg.websocket.heartbeat_interval_ms = 250;
        cfg.websocket.pong_timeout_ms = 5_000; // a loaded machine must not produce false "dead"s here
        cfg.websocket.reconnect_base_delay_ms = 500;
        cfg.websocket.reconnect_max_delay_ms = 2_000;
        let client = RobustClient::new(cfg).unwrap();
        let rec = Recorder::new();
        let conn = client.connect_websocket("/ws".into(), rec.clone()).unwrap();
        clients.push((client, conn, rec));
    }
    wait_until("all open", Duration::from_secs(20), || {
        server.open_connections() == N as u64
    })
    .await;
    // Stay open past one heartbeat interval: the next reconnect starts from the base delay.
    tokio::time::sleep(Duration::from_millis(400)).await;

    server.reset();
    let restarted = Instant::now();
    server.restart().await.unwrap();
    wait_until("all reconnected", Duration::from_secs(20), || {
        server.open_connections() == N as u64
            && clients.iter().all(|(_, _, r)| r.opens().len() == 2)
    })
    .await;
    let mut ms: Vec<f64> = server
        .upgrade_log()
        .iter()
        .map(|u| (u.at - restarted).as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let spread = ms[ms.len() - 1] - ms[0];
    let busiest_10ms = (0..ms.len())
        .map(|i| ms[i..].iter().take_while(|t| **t < ms[i] + 10.0).count())
        .max()
        .unwrap();
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p) as usize];
    println!(
        "{} reconnects after a restart: first {:.0} ms, p10 {:.0}, p50 {:.0}, p90 {:.0}, last {:.0} ms; \
         spread {spread:.0} ms; at most {busiest_10ms} within any 10 ms",
        ms.len(),
        ms[0],
        pct(0.1),
        pct(0.5),
        pct(0.9),
        ms[ms.len() - 1]
    );
    assert!(ms.len() >= N);
    // Full jitter over [0, 500 ms]: expect a spread near 500 ms and ~2 per 10 ms (measured: at most
    // 6-13, scheduling bunches them a little); in lockstep all 100 would land within a few ms.
    assert!(spread >= 250.0, "spread only {spread:.0} ms");
    assert!(busiest_10ms <= 40, "{busiest_10ms} reconnects within 10 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_close_never_reconnects() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;
    conn.send_text("last words".into()).unwrap();
    conn.close(1000, "bye".into()).unwrap();
    assert_eq!(conn.state(), WebSocketState::Closing);
    assert!(matches!(
        conn.send_text("too late".into()),
        Err(ApiError::WebSocketClosed { .. })
    ));
    wait_until("closed", Duration::from_secs(3), || {
        !rec.closed().is_empty()
    })
    .await;
    assert_eq!(rec.closed(), vec![(1000, "bye".to_string())]);
    assert!(
        matches!(rec.all().last(), Some(Ev::Closed(..))),
        "on_closed is the last callback"
    );
    assert_eq!(
        rec.states(),
        vec![
            WebSocketState::Open,
            WebSocketState::Closing,
            WebSocketState::Closed
        ]
    );
    assert_eq!(
        server.received_texts(),
        vec!["last words"],
        "flushed before the close frame"
    );
    wait_until("server saw the close", Duration::from_secs(3), || {
        server.close_codes() == vec![1000]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await; // > the reconnect cap
    assert_eq!(server.upgrades(), 1, "no reconnect after an app close");
    assert_eq!(conn.state(), WebSocketState::Closed);
    assert!(
        conn.close(1000, "again".into()).is_ok(),
        "closing twice is harmless"
    );
    assert!(client.service_status().sockets.is_empty());
    assert!(matches!(
        conn.close(1005, String::new()),
        Err(ApiError::InvalidRequest { .. })
    ));

    // Closing while reconnecting: no further attempt, unsent messages reported, not silently lost.
    let (conn, rec) = open_socket(&client, "/ws").await;
    server.kill().await;
    wait_until("reconnecting", Duration::from_secs(3), || {
        conn.state() == WebSocketState::Reconnecting
    })
    .await;
    conn.send_text("never sent".into()).unwrap();
    conn.close(4000, "user logged out".into()).unwrap();
    wait_until("closed", Duration::from_secs(3), || {
        !rec.closed().is_empty()
    })
    .await;
    assert_eq!(rec.closed(), vec![(4000, "user logged out".to_string())]);
    assert!(rec.errors().iter().any(
        |e| matches!(e, ApiError::WebSocketClosed { reason } if reason.contains("1 unsent message"))
    ));
    server.reset();
    server.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.upgrades(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_server_close_reconnects_unless_configured_otherwise() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    // Default: reconnect (servers often close with 1000 when they restart).
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let (_conn, rec) = open_socket(&client, "/ws").await;
    server.close_all(1000, "restarting");
    wait_until("reconnected", Duration::from_secs(3), || {
        rec.opens().len() == 2
    })
    .await;
    assert!(rec.closed().is_empty());
    assert!(rec.errors().iter().any(
        |e| matches!(e, ApiError::WebSocketClosed { reason } if reason.contains("1000 restarting"))
    ));
    drop(client);

    let mut cfg = fast_config(&fleet);
    cfg.websocket.reconnect_on_normal_close = false;
    let client = RobustClient::new(cfg).unwrap();
    // Any other code still reconnects.
    let (conn, rec) = open_socket(&client, "/ws").await;
    server.close_all(1001, "going away");
    wait_until("reconnected after 1001", Duration::from_secs(3), || {
        rec.opens().len() == 2
    })
    .await;
    server.reset();
    server.close_all(1000, "done");
    wait_until("closed", Duration::from_secs(3), || {
        !rec.closed().is_empty()
    })
    .await;
    assert_eq!(rec.closed(), vec![(1000, "done".to_string())]);
    assert_eq!(conn.state(), WebSocketState::Closed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.upgrades(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_buffer_is_bounded_with_typed_errors() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    server.kill().await;
    let mut cfg = fast_config(&fleet);
    cfg.websocket.max_buffered_messages = 3;
    cfg.websocket.max_buffered_bytes = 10;
    let client = RobustClient::new(cfg).unwrap();
    let rec = Recorder::new();
    let conn = client.connect_websocket("/ws".into(), rec.clone()).unwrap();
    conn.send_text("12345".into()).unwrap();
    conn.send_binary(b"67890".to_vec()).unwrap();
    assert_eq!(
        conn.send_text("x".into()),
        Err(ApiError::WebSocketBufferFull {
            max_messages: 3,
            max_bytes: 10
        }),
        "byte bound"
    );
    assert!(matches!(
        conn.send_binary(vec![0; 11]),
        Err(ApiError::InvalidRequest { .. })
    ));
    let s = conn.status();
    assert_eq!((s.buffered_messages, s.buffered_bytes), (2, 10));
    server.start().await.unwrap();
    wait_until("flushed", Duration::from_secs(5), || {
        server.received().len() == 2
    })
    .await;
    assert_eq!(
        server.received(),
        vec![
            Received::Text("12345".into()),
            Received::Binary(b"67890".to_vec())
        ]
    );
    // Room again; now the message bound.
    server.kill().await;
    wait_until("reconnecting", Duration::from_secs(3), || {
        conn.state() == WebSocketState::Reconnecting
    })
    .await;
    for m in ["a", "b", "c"] {
        conn.send_text(m.into()).unwrap();
    }
    assert!(matches!(
        conn.send_text("d".into()),
        Err(ApiError::WebSocketBufferFull { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_handshake_is_final_but_a_503_is_retried() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    server.set_mode(Mode::Reject(404));
    let rec = Recorder::new();
    let conn = client
        .connect_websocket("/nope".into(), rec.clone())
        .unwrap();
    wait_until("closed", Duration::from_secs(3), || {
        !rec.closed().is_empty()
    })
    .await;
    assert!(matches!(
        rec.errors()[0],
        ApiError::Http { status: 404, .. }
    ));
    assert_eq!(rec.closed()[0].0, 1006);
    assert_eq!(conn.state(), WebSocketState::Closed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.upgrades(), 1);

    server.set_mode(Mode::Reject(503));
    server.reset();
    let rec2 = Recorder::new();
    let conn2 = client
        .connect_websocket("/ws".into(), rec2.clone())
        .unwrap();
    wait_until("retried", Duration::from_secs(5), || server.upgrades() >= 3).await;
    assert!(rec2
        .errors()
        .iter()
        .all(|e| matches!(e, ApiError::Http { status: 503, .. })));
    server.set_mode(Mode::Echo);
    wait_until("open at last", Duration::from_secs(5), || {
        conn2.state() == WebSocketState::Open
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attempt_limit_gives_up_with_on_closed() {
    let fleet = WsFleet::start(1).await;
    fleet.server(0).kill().await;
    let mut cfg = fast_config(&fleet);
    cfg.websocket.max_reconnect_attempts = Some(3);
    let client = RobustClient::new(cfg).unwrap();
    let rec = Recorder::new();
    let conn = client.connect_websocket("/ws".into(), rec.clone()).unwrap();
    conn.send_text("pending".into()).unwrap();
    wait_until("gave up", Duration::from_secs(5), || {
        !rec.closed().is_empty()
    })
    .await;
    let (code, reason) = rec.closed()[0].clone();
    assert_eq!(code, 1006);
    assert!(reason.contains("3 connection attempt"), "{reason}");
    let errors = rec.errors();
    assert!(errors
        .iter()
        .any(|e| matches!(e, ApiError::AllBackendsUnavailable { attempts: 3, .. })));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ApiError::WebSocketClosed { .. })),
        "unsent message reported"
    );
    assert_eq!(conn.state(), WebSocketState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_and_ends_listener_threads() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;
    let (conn2, rec2) = open_socket(&client, "/ws").await;
    assert_eq!(server.open_connections(), 2);
    client.shutdown();
    assert_eq!(conn.state(), WebSocketState::Closed);
    assert!(matches!(
        conn.send_text("x".into()),
        Err(ApiError::WebSocketClosed { .. })
    ));
    for r in [&rec, &rec2] {
        wait_until("on_closed", Duration::from_secs(3), || {
            !r.closed().is_empty()
        })
        .await;
        assert_eq!(r.closed(), vec![(1001, "client shut down".to_string())]);
        // The listener thread ended and released its listener.
        wait_until("listener released", Duration::from_secs(3), || {
            Arc::strong_count(r) == 1
        })
        .await;
    }
    wait_until("sockets closed", Duration::from_secs(3), || {
        server.open_connections() == 0
    })
    .await;
    assert!(matches!(
        client.connect_websocket("/ws".into(), Recorder::new()),
        Err(ApiError::Cancelled { .. })
    ));
    drop(conn2);
    // Dropping a client (without shutdown) does the same.
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    let (_conn, rec) = open_socket(&client, "/ws").await;
    drop(client);
    wait_until("on_closed after drop", Duration::from_secs(3), || {
        !rec.closed().is_empty()
    })
    .await;
    wait_until("listener released", Duration::from_secs(3), || {
        Arc::strong_count(&rec) == 1
    })
    .await;
    wait_until("sockets closed", Duration::from_secs(3), || {
        server.open_connections() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_and_configs_are_rejected_up_front() {
    let fleet = WsFleet::start(1).await;
    let client = RobustClient::new(fast_config(&fleet)).unwrap();
    for bad in ["ws://elsewhere/x", "//host/x", "/a b"] {
        assert!(
            matches!(
                client.connect_websocket(bad.into(), Recorder::new()),
                Err(ApiError::InvalidRequest { .. })
            ),
            "{bad}"
        );
    }
    let mut cfg = fast_config(&fleet);
    cfg.websocket.reconnect_max_delay_ms = 10;
    assert!(matches!(
        RobustClient::new(cfg),
        Err(ApiError::InvalidConfig { .. })
    ));
    let mut cfg = fast_config(&fleet);
    cfg.websocket.pong_timeout_ms = 0;
    assert!(matches!(
        RobustClient::new(cfg),
        Err(ApiError::InvalidConfig { .. })
    ));
    let mut cfg = fast_config(&fleet);
    cfg.websocket.max_reconnect_attempts = Some(0);
    assert!(matches!(
        RobustClient::new(cfg),
        Err(ApiError::InvalidConfig { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_listener_does_not_make_a_live_connection_look_dead() {
    /// Blocks 400 ms on each text message: longer than interval + timeout.
    struct Slow(Arc<Recorder>);
    impl WebSocketListener for Slow {
        fn on_open(&self, b: String) -> Result<(), ApiError> {
            self.0.on_open(b)
        }
        fn on_text(&self, t: String) -> Result<(), ApiError> {
            std::thread::sleep(Duration::from_millis(400));
            self.0.on_text(t)
        }
        fn on_binary(&self, d: Vec<u8>) -> Result<(), ApiError> {
            self.0.on_binary(d)
        }
        fn on_state_change(&self, s: WebSocketState) -> Result<(), ApiError> {
            self.0.on_state_change(s)
        }
        fn on_error(&self, e: ApiError) -> Result<(), ApiError> {
            self.0.on_error(e)
        }
        fn on_closed(&self, c: i32, r: String) -> Result<(), ApiError> {
            self.0.on_closed(c, r)
        }
    }
    let fleet = WsFleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.websocket.heartbeat_interval_ms = 100;
    cfg.websocket.pong_timeout_ms = 150;
    let client = RobustClient::new(cfg).unwrap();
    let rec = Recorder::new();
    let conn = client
        .connect_websocket("/ws".into(), Arc::new(Slow(rec.clone())))
        .unwrap();
    wait_until("open", Duration::from_secs(3), || !rec.opens().is_empty()).await;
    for i in 0..5 {
        conn.send_text(format!("{i}")).unwrap();
    }
    wait_until("all delivered", Duration::from_secs(5), || {
        rec.texts().len() == 5
    })
    .await;
    assert_eq!(rec.texts(), vec!["0", "1", "2", "3", "4"]);
    assert!(rec.errors().is_empty(), "{:?}", rec.errors());
    assert_eq!(rec.opens().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_coming_back_checks_an_open_connection_at_once() {
    let fleet = WsFleet::start(1).await;
    let mut cfg = fast_config(&fleet);
    cfg.websocket.heartbeat_interval_ms = 30_000; // the regular ping would come far too late
    cfg.websocket.pong_timeout_ms = 200;
    let client = RobustClient::new(cfg).unwrap();
    let (_conn, rec) = open_socket(&client, "/ws").await;
    // A network switch: the old socket is silently dead.
    fleet.server(0).set_mode(Mode::Deaf);
    client.set_network_available(false);
    client.set_network_available(true);
    let back = Instant::now();
    wait_until("dead connection detected", Duration::from_secs(3), || {
        rec.errors().iter().any(is_dead_error)
    })
    .await;
    let took = back.elapsed();
    println!("after the network came back, a dead socket was detected in {took:?}");
    assert!(took < Duration::from_millis(1_000), "{took:?}");
    fleet.server(0).set_mode(Mode::Echo);
    wait_until("reconnected", Duration::from_secs(3), || {
        rec.opens().len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_is_reached_over_wss() {
    // A plain server behind an https:// URL: the client must open TLS (rustls, ring provider)
    // and so never sends a plain upgrade request; the attempt fails and is reported.
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0).clone();
    let mut cfg = ClientConfig::new(vec![server.url().replace("http://", "https://")]);
    cfg.timeouts.connect_ms = 500;
    cfg.websocket.max_reconnect_attempts = Some(1);
    let client = RobustClient::new(cfg).unwrap();
    wait_until("the start-up probe", Duration::from_secs(5), || {
        client.service_status().backends[0]
            .last_checked_ms_ago
            .is_some()
    })
    .await;
    let hellos_before = server.tls_hellos();
    let rec = Recorder::new();
    let _conn = client.connect_websocket("/ws".into(), rec.clone()).unwrap();
    wait_until("gave up", Duration::from_secs(5), || {
        !rec.closed().is_empty()
    })
    .await;
    println!("wss attempt against a plain server: {:?}", rec.errors()[0]);
    assert!(
        matches!(
            &rec.errors()[0],
            ApiError::Timeout { .. } | ApiError::Transport { .. }
        ),
        "{:?}",
        rec.errors()
    );
    // The WebSocket attempt opened with a TLS ClientHello.
    assert_eq!(server.tls_hellos(), hellos_before + 1);
    assert_eq!(server.upgrades(), 0, "but spoke TLS, not a plain upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_drives_the_servers() {
    // The routes the binding suites use (through `test-fleet --websockets`).
    let fleet = WsFleet::start(2).await;
    let control = fleet.start_control().await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default(); // for this reqwest client
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: &str| {
        http.request(method, format!("{}{path}", control.url()))
            .body(body.to_string())
            .send()
    };
    let text = |r: reqwest::Response| async move { (r.status().as_u16(), r.text().await.unwrap()) };
    let urls = text(call(reqwest::Method::GET, "/ws", "").await.unwrap()).await;
    assert_eq!(
        urls.1,
        format!("[\"{}\",\"{}\"]", fleet.urls()[0], fleet.urls()[1])
    );
    let client = RobustClient::new(ClientConfig::new(vec![fleet.urls()[1].clone()])).unwrap();
    let (conn, rec) = open_socket(&client, "/ws").await;
    conn.send_text("one".into()).unwrap();
    wait_until("echo", Duration::from_secs(3), || rec.texts().len() == 1).await;
    let get = |p: &'static str| call(reqwest::Method::GET, p, "");
    assert_eq!(
        text(get("/ws/1/upgrades").await.unwrap()).await,
        (200, "1".into())
    );
    assert_eq!(
        text(get("/ws/1/open").await.unwrap()).await,
        (200, "1".into())
    );
    assert_eq!(
        text(get("/ws/1/received").await.unwrap()).await,
        (200, "one".into())
    );
    let post = |p: &'static str, b: &'static str| call(reqwest::Method::POST, p, b);
    assert_eq!(text(post("/ws/1/push", "hi").await.unwrap()).await.0, 200);
    wait_until("push", Duration::from_secs(3), || rec.texts().len() == 2).await;
    assert_eq!(text(post("/ws/1/mode", "deaf").await.unwrap()).await.0, 200);
    assert_eq!(fleet.server(1).mode(), Mode::Deaf);
    assert_eq!(
        text(post("/ws/1/mode", "reject 503").await.unwrap())
            .await
            .0,
        200
    );
    assert_eq!(fleet.server(1).mode(), Mode::Reject(503));
    assert_eq!(
        text(post("/ws/1/mode", "bogus").await.unwrap()).await.0,
        400
    );
    assert_eq!(text(post("/ws/1/mode", "echo").await.unwrap()).await.0, 200);
    assert_eq!(text(post("/ws/1/kill", "").await.unwrap()).await.0, 200);
    assert!(!fleet.server(1).is_listening());
    assert_eq!(text(post("/ws/1/start", "").await.unwrap()).await.0, 200);
    assert!(fleet.server(1).is_listening());
    wait_until("reconnected", Duration::from_secs(5), || {
        rec.opens().len() == 2
    })
    .await;
    assert_eq!(
        text(post("/ws/1/close", "4001 bye now").await.unwrap())
            .await
            .0,
        200
    );
    wait_until("reconnected after close", Duration::from_secs(5), || {
        rec.opens().len() == 3
    })
    .await;
    assert!(rec.errors().iter().any(
        |e| matches!(e, ApiError::WebSocketClosed { reason } if reason.contains("4001 bye now"))
    ));
    assert_eq!(
        text(post("/ws/1/reset", "").await.unwrap()).await,
        (200, "ok".into())
    );
    assert_eq!(
        text(get("/ws/1/upgrades").await.unwrap()).await,
        (200, "0".into())
    );
    assert_eq!(text(get("/ws/9/upgrades").await.unwrap()).await.0, 404);
}
