//! The task behind one [`super::WebSocketConnection`]: connect (with failover and backoff), run
//! the open connection (messages, heartbeat, outbound flush), and decide what follows its end.
//!
//! Phases, in a loop until the connection is closed for good:
//! 1. **connect**: wait while the app reports no network; after a drop, sleep a full-jitter backoff
//!    delay (cut short when the network comes back); then one *pass* over the admissible backends,
//!    best first, through the network's one attempt loop (`crate::net::attempt`), each attempt
//!    reporting to its backend's breaker — a refused connect moves to the next backend at once;
//! 2. **open**: flush the outbound buffer, read frames, ping on the heartbeat's schedule;
//! 3. the end: `close` by the app, a server close, a dead or broken connection → reconnect or
//!    finish (see the module docs of [`super`]).
//!
//! Backoff: the `n`-th delay (n = 0, 1, …) is uniform in `[0, min(cap, base · 2ⁿ)]`; the first
//! connection is attempted at once. `n` returns to 0 only after a connection stayed open for a
//! heartbeat interval, so a server that accepts and at once drops connections is retried with
//! growing delays, not in a tight loop.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::buffer::Outbound;
use super::dispatch::{Dispatcher, Event};
use super::heartbeat::{Action, Heartbeat};
use super::{ws_url, Shared, SocketRegistry, WebSocketState, WsSettings};
use crate::defaults::{ms_i32, saturating_i32};
use crate::error::ApiError;
use crate::net::attempt::{self, Exchange, Health, Plan, Step as Next, Stop, Tried};
use crate::net::{retry, Backend, Network};
use crate::types::HttpMethod;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Socket, Message>;
type Stream = SplitStream<Socket>;

/// Frames read without waiting before a connection with an overdue pong is declared dead.
const DRAIN_BEFORE_DEAD: usize = 64;
/// While the heartbeat is paused (background) the loop sleeps this long between re-checks: no
/// timer of the heartbeat's cadence keeps waking the radio.
const HEARTBEAT_PAUSED_WAKE: Duration = Duration::from_secs(3600);

/// Code and reason reported by `on_closed`.
type Final = (u16, String);

/// How one handshake attempt ended, for the connect phase.
enum Shake {
    Open(Box<Connected>),
    /// Retrying cannot help: finish with this reason (the error was reported).
    Finish(String),
    /// A retryable failure (reported).
    Failed,
    /// A close request or the network going away came first: nothing was attempted.
    Aborted,
    /// The listener thread is gone.
    Gone,
}

/// One pass of handshakes through the attempt loop.
struct Handshake<'a> {
    task: &'a Task,
    /// Consecutive failed attempts (for `max_reconnect_attempts`).
    failed: std::sync::atomic::AtomicU32,
}

impl Exchange for Handshake<'_> {
    type Value = Shake;

    async fn send(&self, _index: usize, backend: &Backend) -> Result<Tried<Shake>, ApiError> {
        use std::sync::atomic::Ordering::Relaxed;
        let task = self.task;
        let tried = |value, step, health| {
            Ok(Tried {
                value,
                step,
                health,
                sent: true,
            })
        };
        if task.shared.close_request().is_some() || !*task.network.borrow() {
            return tried(Shake::Aborted, Next::Final, Health::NotAttempted); // the loop's top handles both
        }
        let failed = self.failed.fetch_add(1, Relaxed).saturating_add(1);
        let (result, health) = task.attempt(backend).await;
        let error = match result {
            Ok(c) => return tried(Shake::Open(Box::new(c)), Next::Success, health),
            Err(AttemptError::Final(e)) => {
                let reason = format!("handshake rejected: {e}");
                let shake = if task.error(e).await {
                    Shake::Finish(reason)
                } else {
                    Shake::Gone
                };
                return tried(shake, Next::Final, health);
            }
            Err(AttemptError::Retry(e)) => e,
        };
        let last = error.to_string();
        if !task.error(error).await {
            return tried(Shake::Gone, Next::Final, health);
        }
        if let Some(max) = task.settings.max_reconnect_attempts {
            if failed >= max {
                let error = ApiError::AllBackendsUnavailable {
                    attempts: saturating_i32(failed as u64),
                    last_error: last,
                };
                let reason = format!("gave up after {failed} connection attempt(s)");
                let shake = if task.error(error).await {
                    Shake::Finish(reason)
                } else {
                    Shake::Gone
                };
                return tried(shake, Next::Final, health);
            }
        }
        tried(Shake::Failed, Next::FailOver, health)
    }
}

/// A connection that just opened.
struct Connected {
    socket: Socket,
    backend: String,
}

/// How a connect phase ended.
enum Connect {
    Connected(Box<Connected>),
    Finish(Final),
    /// The listener thread is gone (client shut down): stop without further callbacks.
    Gone,
}

/// How one attempt failed.
enum AttemptError {
    /// Worth retrying (another backend, or later).
    Retry(ApiError),
    /// Retrying cannot help (the server refused the upgrade with a 4xx, a bad header).
    Final(ApiError),
}

/// How an open connection ended.
enum Ended {
    /// The app closed it (closing handshake done or timed out).
    AppClose(Final),
    /// The server sent a close frame.
    ServerClose { code: u16, reason: String },
    /// Dead (no pong), broken (I/O error) or closed without a close frame.
    Dropped(ApiError),
    /// The listener thread is gone.
    Gone,
}

/// What woke the open connection's loop.
enum Step {
    Frame(Option<Result<Message, tungstenite::Error>>),
    /// A timer, a buffered message or `close`: the loop re-checks everything.
    Poke,
    /// The network watch changed (`false`: its sender is gone).
    Network(bool),
    /// The app went to the foreground or the background.
    AppState,
}

/// What woke a wait.
enum Wake {
    /// The timer ran out.
    Elapsed,
    /// The app reported a network change (value: available now).
    Network(bool),
    /// `close` was called, or a message was buffered (the caller re-checks).
    Poke,
}

pub(crate) struct Task {
    shared: Arc<Shared>,
    net: Arc<Network>,
    settings: WsSettings,
    events: Dispatcher,
    registry: Weak<SocketRegistry>,
    network: tokio::sync::watch::Receiver<bool>,
    /// The device conditions (foreground/background pauses the heartbeat).
    conditions: tokio::sync::watch::Receiver<crate::net::Conditions>,
    /// False once the network watch's sender is gone (never while the pipeline lives).
    network_ok: bool,
    /// The state last reported to the listener.
    announced: WebSocketState,
}

impl Task {
    pub(crate) fn new(
        shared: Arc<Shared>,
        net: Arc<Network>,
        settings: WsSettings,
        events: Dispatcher,
        registry: Weak<SocketRegistry>,
    ) -> Self {
        let network = net.subscribe_online();
        let conditions = net.conditions();
        Task {
            shared,
            net,
            settings,
            events,
            registry,
            network,
            conditions,
            network_ok: true,
            announced: WebSocketState::Connecting,
        }
    }

    /// Runs the connection until it is closed for good.
    /// A panic on the way (a bug, or foreign code such as a header provider) is contained: the
    /// listener gets `on_error(Internal)`, `Closed` and `on_closed(1011, …)`, and `close()`
    /// completes as always.
    pub(crate) async fn run(mut self) {
        use futures_util::FutureExt;
        use std::panic::AssertUnwindSafe;
        let end = match AssertUnwindSafe(self.life()).catch_unwind().await {
            Ok(end) => end,
            Err(panic) => {
                let error = ApiError::Internal {
                    reason: format!(
                        "the WebSocket connection task panicked: {}",
                        crate::runtime::panic_message(&*panic)
                    ),
                };
                log::error!("robust-api: websocket {}: {error}", self.shared.id());
                self.shared.set_error(&error);
                let _ = self.emit(Event::Error(error)).await;
                Some((1011, "internal error".to_string()))
            }
        };
        if let Some(end) = end {
            if AssertUnwindSafe(self.finish(end))
                .catch_unwind()
                .await
                .is_err()
            {
                // Even reporting failed: at least the state is terminal, so `close()` completes.
                let _ = self.shared.finish();
            }
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.shared.id());
        }
        self.shared
            .dispatcher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// `None`: the listener is gone, stop silently.
    async fn life(&mut self) -> Option<Final> {
        let mut round: u32 = 0; // backoff round
        let mut failed: u32 = 0; // consecutive failed attempts (for the attempt limit)
        let mut after_drop = false;
        let mut opened_before = false;
        loop {
            let connected = match self.connect(&mut round, &mut failed, after_drop).await {
                Connect::Connected(c) => *c,
                Connect::Finish(end) => return Some(end),
                Connect::Gone => return None,
            };
            failed = 0;
            let opened_at = Instant::now();
            let ended = self.open(connected, opened_before).await;
            opened_before = true;
            // Stable for a heartbeat interval: back to the base delay. Otherwise the rounds go
            // on growing (a server that accepts and drops at once is not hammered).
            if opened_at.elapsed() >= self.settings.heartbeat_interval {
                round = 0;
            }
            match ended {
                Ended::Gone => return None,
                Ended::AppClose(end) => return Some(end),
                Ended::ServerClose { code, reason } => {
                    if code == 1000 && !self.settings.reconnect_on_normal_close {
                        return Some((code, reason));
                    }
                    let error = ApiError::WebSocketClosed {
                        reason: format!(
                            "the server closed the connection ({code}{}{reason}); reconnecting",
                            if reason.is_empty() { "" } else { " " }
                        ),
                    };
                    if !self.error(error).await {
                        return None;
                    }
                }
                Ended::Dropped(error) => {
                    if !self.error(error).await {
                        return None;
                    }
                }
            }
            if self.shared.close_request().is_none()
                && !self.announce(WebSocketState::Reconnecting).await
            {
                return None;
            }
            after_drop = true;
        }
    }

    // ----------------------------------------------------------------------------------------
    // Listener and state
    // ----------------------------------------------------------------------------------------

    async fn emit(&self, event: Event) -> bool {
        self.events.send(event).await
    }

    async fn error(&self, error: ApiError) -> bool {
        log::info!(
            "robust-api: websocket {} ({}): {error}",
            self.shared.id(),
            self.shared.path()
        );
        self.shared.set_error(&error);
        self.emit(Event::Error(error)).await
    }

    /// Moves to `state` (unless `close` overrides it) and tells the listener once.
    async fn announce(&mut self, state: WebSocketState) -> bool {
        if self.shared.set_state(state) && state != self.announced {
            self.announced = state;
            return self.emit(Event::State(state)).await;
        }
        true
    }

    async fn finish(&mut self, (code, reason): Final) {
        let (discarded, was_open) = self.shared.finish();
        if !was_open {
            return; // the registry's shutdown already reported the end
        }
        if discarded > 0 {
            let error = ApiError::WebSocketClosed {
                reason: format!("closed with {discarded} unsent message(s) discarded"),
            };
            self.shared.set_error(&error);
            let _ = self.emit(Event::Error(error)).await;
        }
        if self.announced != WebSocketState::Closed {
            self.announced = WebSocketState::Closed;
            let _ = self.emit(Event::State(WebSocketState::Closed)).await;
        }
        let _ = self.emit(Event::Closed(code, reason)).await;
    }

    /// `close` was called: report `Closing` and return the app's code and reason.
    async fn closing(&mut self) -> Option<Final> {
        let request = self.shared.close_request()?;
        if self.announced != WebSocketState::Closing {
            self.announced = WebSocketState::Closing;
            let _ = self.emit(Event::State(WebSocketState::Closing)).await;
        }
        Some(request)
    }

    // ----------------------------------------------------------------------------------------
    // Connect phase
    // ----------------------------------------------------------------------------------------

    async fn connect(&mut self, round: &mut u32, failed: &mut u32, mut delay: bool) -> Connect {
        loop {
            if self.shared.state() == WebSocketState::Closed {
                return Connect::Gone; // the client is shutting down
            }
            if let Some(end) = self.closing().await {
                return Connect::Finish(end);
            }
            if self.network_ok && !*self.network.borrow_and_update() {
                // No attempt while offline; one at once when the network is back.
                self.wait(None).await;
                delay = false;
                continue;
            }
            if delay {
                let pause = retry::backoff_delay(
                    *round,
                    self.settings.reconnect_base,
                    self.settings.reconnect_max,
                    fastrand::f64(),
                );
                *round = round.saturating_add(1);
                match self.wait(Some(pause)).await {
                    Wake::Elapsed => {}
                    Wake::Network(true) => {}
                    Wake::Network(false) | Wake::Poke => continue,
                }
            }
            delay = true;
            let ex = Handshake {
                task: &*self,
                failed: std::sync::atomic::AtomicU32::new(*failed),
            };
            let plan = Plan::new(self.settings.reconnect_base, self.settings.reconnect_max);
            let result = attempt::run(&self.net, &ex, &plan).await;
            *failed = ex.failed.into_inner();
            match result {
                Ok(done) => match done.value {
                    Shake::Open(c) => return Connect::Connected(c),
                    _ => return Connect::Gone, // only `Open` is a success
                },
                Err(f) => match (f.stop, f.last) {
                    (_, Some((_, Shake::Gone))) => return Connect::Gone,
                    (_, Some((_, Shake::Finish(reason)))) => {
                        return Connect::Finish((1006, reason))
                    }
                    (Stop::NothingAdmissible, _)
                        if *self.network.borrow() && self.shared.close_request().is_none() =>
                    {
                        let error = ApiError::AllBackendsUnavailable {
                            attempts: 0,
                            last_error: "every backend's circuit breaker is open; no attempt made"
                                .into(),
                        };
                        if !self.error(error).await {
                            return Connect::Gone;
                        }
                    }
                    _ => {} // a failed pass or an abort: the loop's top decides
                },
            }
        }
    }

    /// Waits for `timeout` (forever if `None`, then only a network change to available or a
    /// close request ends it).
    async fn wait(&mut self, timeout: Option<Duration>) -> Wake {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => return Wake::Elapsed,
                changed = self.network.changed(), if self.network_ok => {
                    if changed.is_err() {
                        // The pipeline's sender is gone (never while this task runs).
                        self.network_ok = false;
                        return Wake::Network(true);
                    }
                    let available = *self.network.borrow_and_update();
                    if timeout.is_some() || available {
                        return Wake::Network(available);
                    }
                }
                _ = self.shared.wake.notified() => {
                    if self.shared.close_request().is_some() {
                        return Wake::Poke;
                    }
                }
            }
        }
    }

    /// One connection attempt to `b`, and how it counts for the backend's breaker.
    async fn attempt(&self, b: &Backend) -> (Result<Connected, AttemptError>, Health) {
        match self.handshake(b).await {
            Ok((c, latency)) => (Ok(c), Health::Success(latency)),
            Err((e, health)) => (Err(e), health),
        }
    }

    async fn handshake(
        &self,
        b: &Backend,
    ) -> Result<(Connected, Duration), (AttemptError, Health)> {
        let not_sent = |e: ApiError| (AttemptError::Final(e), Health::NotAttempted);
        let backend = b.name.clone();
        let url = ws_url(&b.url, self.shared.path()).map_err(not_sent)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| not_sent(ApiError::invalid_request(format!("{url}: {e}"))))?;
        let headers = self
            .net
            .call_headers(HttpMethod::Get, self.shared.path(), &HashMap::new(), None)
            .await
            .map_err(not_sent)?;
        let reserved = |name: &header::HeaderName| {
            name == header::HOST
                || name == header::CONNECTION
                || name == header::UPGRADE
                || name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name.as_str().starts_with("sec-websocket-")
        };
        let target = request.headers_mut();
        for (name, value) in &headers {
            if !reserved(name) {
                target.insert(name.clone(), value.clone());
            }
        }
        if !target.contains_key(header::USER_AGENT) {
            target.insert(
                header::USER_AGENT,
                header::HeaderValue::from_static(concat!("robust-api/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let connector = if url.scheme() == "wss" {
            match self.net.ws_tls_config() {
                Ok(config) => Connector::Rustls(config),
                Err(reason) => {
                    let health = Health::Neutral(reason.clone());
                    return Err((
                        AttemptError::Retry(ApiError::Transport { backend, reason }),
                        health,
                    ));
                }
            }
        } else {
            Connector::Plain
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(super::MAX_INBOUND_MESSAGE_BYTES))
            .max_frame_size(Some(super::MAX_INBOUND_MESSAGE_BYTES));
        let started = Instant::now();
        let timeout = self.settings.connect_timeout;
        let result = tokio::time::timeout(
            timeout,
            tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(config),
                true,
                Some(connector),
            ),
        )
        .await;
        match result {
            Ok(Ok((socket, _response))) => Ok((Connected { socket, backend }, started.elapsed())),
            Err(_) => {
                let health = Health::Unreachable(format!(
                    "websocket connect timed out after {} ms",
                    timeout.as_millis()
                ));
                let error = ApiError::Timeout {
                    backend,
                    timeout_ms: ms_i32(timeout),
                };
                Err((AttemptError::Retry(error), health))
            }
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body = response.body().clone().unwrap_or_default();
                let error = ApiError::Http {
                    status: status as i32,
                    body,
                    backend,
                };
                match retry::classify_status(status, None) {
                    retry::Verdict::Retryable {
                        breaker_failure: true,
                        ..
                    } => {
                        let health = Health::Failure(format!("websocket upgrade: HTTP {status}"));
                        Err((AttemptError::Retry(error), health))
                    }
                    retry::Verdict::Retryable { .. } => {
                        let health = Health::Neutral(format!("websocket upgrade: HTTP {status}"));
                        Err((AttemptError::Retry(error), health))
                    }
                    // The backend answered; the request is what it refuses (or redirects).
                    retry::Verdict::Success | retry::Verdict::Final => {
                        let health = Health::Success(started.elapsed());
                        Err((AttemptError::Final(error), health))
                    }
                }
            }
            Ok(Err(e)) => {
                if let Some(host) = crate::tls::pin_mismatch_in(&e) {
                    let error = self.net.pin_mismatch(b, &host);
                    let health = Health::Failure(error.to_string());
                    return Err((AttemptError::Final(error), health));
                }
                let reason = format!("websocket connect: {e}");
                let health = Health::Unreachable(reason.clone());
                Err((
                    AttemptError::Retry(ApiError::Transport { backend, reason }),
                    health,
                ))
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Open phase
    // ----------------------------------------------------------------------------------------

    async fn open(&mut self, c: Connected, reconnect: bool) -> Ended {
        let Connected { socket, backend } = c;
        let (mut sink, mut stream) = socket.split();
        if !self.shared.mark_open(&backend, reconnect) {
            // `close` was called while connecting: close this fresh connection properly.
            return match self.closing().await {
                Some(end) => self.close_handshake(&mut sink, &mut stream, end).await,
                None => Ended::Gone,
            };
        }
        if self.announced != WebSocketState::Open {
            self.announced = WebSocketState::Open;
            if !self.emit(Event::State(WebSocketState::Open)).await {
                return Ended::Gone;
            }
        }
        if !self.emit(Event::Open(backend.clone())).await {
            return Ended::Gone;
        }
        let mut heartbeat = Heartbeat::new(
            Instant::now(),
            self.settings.heartbeat_interval,
            self.settings.pong_timeout,
        );
        let write_timeout = self.settings.heartbeat_interval + self.settings.pong_timeout;
        let dropped = |reason: String| {
            Ended::Dropped(ApiError::Transport {
                backend: backend.clone(),
                reason,
            })
        };
        loop {
            if let Some(end) = self.closing().await {
                return self.close_handshake(&mut sink, &mut stream, end).await;
            }
            if let Err(reason) = self.flush(&mut sink, write_timeout).await {
                return dropped(reason);
            }
            // In the background (unless configured) no pings: the radio may sleep.
            let paused = self.heartbeat_paused();
            let action = if paused {
                Action::Wait(Instant::now() + HEARTBEAT_PAUSED_WAKE)
            } else {
                heartbeat.poll(Instant::now())
            };
            let wait_until = match action {
                Action::Wait(t) => t,
                Action::SendPing(payload) => {
                    let sent = tokio::time::timeout(
                        write_timeout,
                        sink.send(Message::Ping(payload.into())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return dropped("sending a heartbeat ping failed".into());
                    }
                    continue;
                }
                Action::Dead { waited } => {
                    // A pong may be waiting unread (this task was busy: a slow listener, a long
                    // write): read what already arrived before declaring the connection dead.
                    for _ in 0..DRAIN_BEFORE_DEAD {
                        let Some(frame) = stream.next().now_or_never() else {
                            break;
                        };
                        if let Some(end) = self.on_frame(frame, &mut stream, &mut heartbeat).await {
                            return end;
                        }
                    }
                    if matches!(heartbeat.poll(Instant::now()), Action::Dead { .. }) {
                        return dropped(format!(
                            "dead connection: no pong within {} ms of a heartbeat ping",
                            waited.as_millis()
                        ));
                    }
                    continue;
                }
            };
            let step = tokio::select! {
                frame = stream.next() => Step::Frame(frame),
                _ = self.shared.wake.notified() => Step::Poke,
                _ = tokio::time::sleep_until(wait_until.into()) => Step::Poke,
                changed = self.network.changed(), if self.network_ok => Step::Network(changed.is_ok()),
                changed = self.conditions.changed(), if self.network_ok => match changed {
                    Ok(()) => Step::AppState,
                    Err(_) => Step::Network(false),
                },
            };
            match step {
                Step::Frame(frame) => {
                    if let Some(end) = self.on_frame(frame, &mut stream, &mut heartbeat).await {
                        return end;
                    }
                }
                Step::Poke => {}
                // Back online (often after a network switch): check the connection at once.
                Step::Network(true) => {
                    if *self.network.borrow_and_update() {
                        heartbeat.check_now(Instant::now());
                    }
                }
                // The pipeline's sender is gone (never while this task runs): stop watching.
                Step::Network(false) => self.network_ok = false,
                // Back in the foreground: a ping at once (the socket may have died meanwhile).
                // A ping left unanswered when the app went to the background is forgotten.
                Step::AppState => {
                    let paused_now = self.heartbeat_paused();
                    if paused && !paused_now {
                        heartbeat.resume(Instant::now());
                    }
                }
            }
        }
    }

    /// No heartbeat pings now: the app is in the background and they are not configured there.
    fn heartbeat_paused(&mut self) -> bool {
        !self.settings.heartbeat_in_background && self.conditions.borrow_and_update().background()
    }

    /// Handles one read result; `Some` ends the connection.
    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, tungstenite::Error>>,
        stream: &mut Stream,
        heartbeat: &mut Heartbeat,
    ) -> Option<Ended> {
        let backend = || self.shared.lock().backend.clone().unwrap_or_default();
        match frame {
            Some(Ok(Message::Text(text))) => {
                (!self.emit(Event::Text(text.as_str().to_owned())).await).then_some(Ended::Gone)
            }
            Some(Ok(Message::Binary(data))) => {
                (!self.emit(Event::Binary(data.to_vec())).await).then_some(Ended::Gone)
            }
            Some(Ok(Message::Pong(payload))) => {
                if let Some(rtt) = heartbeat.on_pong(Instant::now(), &payload) {
                    self.shared.set_rtt(rtt);
                }
                None
            }
            // Pings are answered by tungstenite on the next read or write.
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => None,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
                    None => (1005, String::new()),
                };
                // tungstenite queued the reply; reading on sends it and sees the end.
                let linger = self.settings.pong_timeout;
                let _ = tokio::time::timeout(linger, async {
                    // Nothing but the end can follow a close frame.
                    while let Some(Ok(_)) = stream.next().await {}
                })
                .await;
                Some(Ended::ServerClose { code, reason })
            }
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed))
            | None => Some(Ended::Dropped(ApiError::Transport {
                backend: backend(),
                reason: "connection closed without a close frame".into(),
            })),
            Some(Err(e)) => Some(Ended::Dropped(ApiError::Transport {
                backend: backend(),
                reason: format!("connection broken: {e}"),
            })),
        }
    }

    /// Writes every buffered message (oldest first), then flushes. A message is out of the
    /// buffer once handed to the socket (at-most-once: it is not sent again if the write fails).
    async fn flush(&self, sink: &mut Sink, limit: Duration) -> Result<(), String> {
        let mut written = 0usize;
        while let Some(msg) = self.shared.pop_outbound() {
            let frame = match msg {
                Outbound::Text(t) => Message::Text(t.into()),
                Outbound::Binary(b) => Message::Binary(b.into()),
            };
            match tokio::time::timeout(limit, sink.feed(frame)).await {
                Ok(Ok(())) => written += 1,
                _ => {
                    return Err(format!(
                        "writing a message failed after {written} were written \
                         (that message may not have arrived; it is not re-sent)"
                    ))
                }
            }
        }
        if written > 0 {
            match tokio::time::timeout(limit, sink.flush()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(format!(
                        "flushing {written} message(s) failed (they may not have arrived; \
                         they are not re-sent)"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The app's close: send what is buffered, then the close frame, then wait (bounded) for the
    /// server's reply.
    async fn close_handshake(&self, sink: &mut Sink, stream: &mut Stream, end: Final) -> Ended {
        let limit = self.settings.pong_timeout;
        if let Err(reason) = self.flush(sink, limit).await {
            let error = ApiError::WebSocketClosed {
                reason: format!("while closing: {reason}"),
            };
            self.shared.set_error(&error);
            let _ = self.emit(Event::Error(error)).await;
        }
        let frame = CloseFrame {
            code: CloseCode::from(end.0),
            reason: end.1.clone().into(),
        };
        let _ = tokio::time::timeout(limit, sink.send(Message::Close(Some(frame)))).await;
        let _ = tokio::time::timeout(limit, async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Ended::AppClose(end)
    }
}
