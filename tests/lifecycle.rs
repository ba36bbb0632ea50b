//! The phone's life cycle and network type (issue 15, item 4), against real local servers:
//! in the background no health probe and no WebSocket ping reaches the fleet (counted
//! server-side); back in the foreground a probe round, a ping and a queue flush at once; while
//! metered, an "unmetered only" queued request waits and goes out once the network is unmetered.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_api::{
    ApiError, ApiRequest, AppState, ClientConfig, RobustClient, WebSocketListener, WebSocketState,
};
use robust_api_fleet::ws::WsFleet;
use robust_api_fleet::{wait_until, Fault, Fleet};

/// Only counts opens.
#[derive(Default)]
struct Opens(Mutex<u32>);

impl WebSocketListener for Opens {
    fn on_open(&self, _backend: String) -> Result<(), ApiError> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
    fn on_text(&self, _text: String) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_binary(&self, _data: Vec<u8>) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_state_change(&self, _state: WebSocketState) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_error(&self, _error: ApiError) -> Result<(), ApiError> {
        Ok(())
    }
    fn on_closed(&self, _code: i32, _reason: String) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Probes and pings every `every_ms`.
fn chatty(fleet: &WsFleet, every_ms: i32) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.health.interval_ms = every_ms;
    c.websocket.heartbeat_interval_ms = every_ms;
    c.websocket.pong_timeout_ms = 5_000;
    c
}

async fn open_socket(client: &RobustClient) -> Arc<Opens> {
    let opens = Arc::new(Opens::default());
    let _conn = client
        .connect_websocket("/ws".into(), opens.clone())
        .unwrap();
    wait_until("the socket opens", Duration::from_secs(5), || {
        *opens.0.lock().unwrap() >= 1
    })
    .await;
    opens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_background_no_probe_and_no_ping_reaches_the_fleet() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0);
    let client = RobustClient::new(chatty(&fleet, 30)).unwrap();
    let _opens = open_socket(&client).await;
    // The control: in the foreground both flow.
    let (probes, pings) = (server.health_hits(), server.pings());
    wait_until("probes and pings flow", Duration::from_secs(5), || {
        server.health_hits() >= probes + 3 && server.pings() >= pings + 3
    })
    .await;

    client.set_app_state(AppState::Background);
    assert_eq!(client.service_status().app_state, AppState::Background);
    // One probe or ping may have been on the wire when the app left.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (probes, pings) = (server.health_hits(), server.pings());
    tokio::time::sleep(Duration::from_millis(800)).await; // ~26 intervals
    assert_eq!(
        (server.health_hits(), server.pings()),
        (probes, pings),
        "nothing reaches the fleet in the background"
    );
    assert_eq!(server.open_connections(), 1, "the socket stays open");

    client.set_app_state(AppState::Foreground);
    wait_until("probes and pings again", Duration::from_secs(5), || {
        server.health_hits() >= probes + 2 && server.pings() >= pings + 2
    })
    .await;
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_in_the_foreground_a_probe_and_a_ping_go_out_at_once() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0);
    // Neither is due for a minute: whatever arrives below is the foreground's doing.
    let client = RobustClient::new(chatty(&fleet, 60_000)).unwrap();
    wait_until("the first probe", Duration::from_secs(5), || {
        server.health_hits() >= 1
    })
    .await;
    let _opens = open_socket(&client).await;
    client.set_app_state(AppState::Background);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (probes, pings) = (server.health_hits(), server.pings());
    assert_eq!(pings, 0, "no ping is due yet");

    client.set_app_state(AppState::Foreground);
    wait_until(
        "a probe and a ping after the foreground",
        Duration::from_secs(3),
        || server.health_hits() > probes && server.pings() > pings,
    )
    .await;
    // A second report of the same state is no new round.
    let (probes, pings) = (server.health_hits(), server.pings());
    client.set_app_state(AppState::Foreground);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((server.health_hits(), server.pings()), (probes, pings));
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_in_the_background_when_configured() {
    let fleet = WsFleet::start(1).await;
    let server = fleet.server(0);
    let mut c = chatty(&fleet, 30);
    c.health.in_background = true;
    c.websocket.heartbeat_in_background = true;
    let client = RobustClient::new(c).unwrap();
    let _opens = open_socket(&client).await;
    client.set_app_state(AppState::Background);
    let (probes, pings) = (server.health_hits(), server.pings());
    wait_until(
        "probes and pings in the background",
        Duration::from_secs(5),
        || server.health_hits() >= probes + 3 && server.pings() >= pings + 3,
    )
    .await;
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_in_the_foreground_the_queue_is_flushed() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::queue_config(fleet.urls(), dir.path());
    // A failed replay waits a minute: only a flush sends it again within the test.
    c.queue.retry_base_delay_ms = 60_000;
    c.queue.retry_max_delay_ms = 60_000;
    let client = RobustClient::new(c).unwrap();
    // The start-up probe first (the next is a minute away), so the 503 below never makes the
    // backend unhealthy and its recovery cannot be what flushes the queue.
    wait_until("the first probe", Duration::from_secs(5), || {
        fleet.server(0).hits_for("/api/health") >= 1
    })
    .await;
    fleet.server(0).set_fault(Fault::Status(503)).await;
    client
        .enqueue(ApiRequest::post_json("/api/likes", "{}"))
        .unwrap();
    wait_until("the first replay", Duration::from_secs(5), || {
        fleet.server(0).hits_for("/api/likes") >= 1
    })
    .await;
    fleet.server(0).set_fault(Fault::None).await;
    client.set_app_state(AppState::Background);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fleet.server(0).hits_for("/api/likes"), 1);
    client.set_app_state(AppState::Foreground);
    wait_until(
        "delivered after the foreground",
        Duration::from_secs(5),
        || client.queued_requests().unwrap().is_empty(),
    )
    .await;
    assert_eq!(fleet.server(0).unique_effects(), 1);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmetered_only_request_waits_while_metered() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = support::queue_config(fleet.urls(), dir.path());
    c.queue.unmetered_only_groups = vec!["photos".into()];
    let client = RobustClient::new(c).unwrap();
    client.set_network_metered(true);
    assert!(client.service_status().network_metered);

    let mut big = ApiRequest::post_json("/api/backup", "{}");
    big.unmetered_only = true;
    client.enqueue(big).unwrap();
    let mut photo = ApiRequest::post_json("/api/photos", "{}");
    photo.queue_group = Some("photos".into());
    client.enqueue(photo).unwrap();
    // The control: an ordinary entry in another group goes out on the metered network.
    let mut like = ApiRequest::post_json("/api/likes", "{}");
    like.queue_group = Some("likes".into());
    client.enqueue(like).unwrap();
    wait_until("the ordinary entry", Duration::from_secs(5), || {
        fleet.server(0).hits_for("/api/likes") == 1
    })
    .await;
    client.flush_queue().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fleet.server(0).hits_for("/api/backup"),
        0,
        "waits while metered"
    );
    assert_eq!(fleet.server(0).hits_for("/api/photos"), 0, "its group too");
    assert_eq!(client.queued_requests().unwrap().len(), 2);

    client.set_network_metered(false);
    wait_until("sent once unmetered", Duration::from_secs(5), || {
        client.queued_requests().unwrap().is_empty()
    })
    .await;
    assert_eq!(fleet.server(0).hits_for("/api/backup"), 1);
    assert_eq!(fleet.server(0).hits_for("/api/photos"), 1);
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmetered_only_mark_survives_a_restart() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let c = support::queue_config(fleet.urls(), dir.path());
    {
        let client = RobustClient::new(c.clone()).unwrap();
        client.set_network_available(false);
        let mut big = ApiRequest::post_json("/api/backup", "{}");
        big.unmetered_only = true;
        client.enqueue(big).unwrap();
        client.shutdown();
    }
    // Down while the new client starts (its first replay may run before the app reports a
    // metered network): that attempt reaches nothing.
    fleet.server(0).set_fault(Fault::Down).await;
    let client = RobustClient::new(c).unwrap();
    client.set_network_metered(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    fleet.server(0).set_fault(Fault::None).await;
    client.flush_queue().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        fleet.server(0).hits_for("/api/backup"),
        0,
        "still marked after the restart"
    );
    assert_eq!(client.queued_requests().unwrap().len(), 1);
    client.set_network_metered(false);
    wait_until("sent once unmetered", Duration::from_secs(5), || {
        fleet.server(0).hits_for("/api/backup") == 1
    })
    .await;
    client.shutdown();
}
