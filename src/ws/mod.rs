//! WebSockets that an app can leave open all day: `RobustClient::connect_websocket`.
//!
//! - **Backend selection**: the URL is the selected backend's base URL with `http` → `ws`,
//!   `https` → `wss`, plus the path. Every connection attempt takes a breaker permit like an HTTP
//!   call (`crate::net`): a failed connect counts against that backend's breaker and
//!   the next attempt of the same pass goes to the next admissible backend at once.
//! - **Heartbeat** ([`heartbeat`]): a ping every `ws_heartbeat_interval_ms`; no pong within
//!   `ws_pong_timeout_ms` → the connection is dead (half-open TCP, a network switch): it is dropped
//!   and reconnected. Worst-case detection: interval + timeout after the peer went silent.
//! - **Reconnect** ([`connection`]): full-jitter exponential backoff (`ws_reconnect_base_delay_ms`
//!   doubling up to `ws_reconnect_max_delay_ms`, each delay uniform in `[0, cap]` so a fleet of
//!   devices does not reconnect in lockstep); unlimited unless `ws_max_reconnect_attempts` is set;
//!   no attempt while the app reports no network, one at once when it comes back. Closed for good
//!   only by the app (`close`), a rejected handshake (a 4xx other than 408/429: retrying cannot
//!   help), the attempt limit, a server close with code 1000 when `ws_reconnect_on_normal_close` is
//!   off (default on: servers often use 1000 when they restart), or the client's shutdown.
//! - **Outbound buffer** ([`buffer`]): `send_text`/`send_binary` never block and never drop
//!   silently: while (re)connecting messages wait (bounded by `ws_max_buffered_messages` and
//!   `ws_max_buffered_bytes`; beyond that the call fails with `WebSocketBufferFull`) and are sent in
//!   order once a connection opens.
//!
//! **Delivery guarantee**: at most once per message. A message is taken out of the buffer when it
//! is written to a socket; if that socket then dies, the message may or may not have reached the
//! server and is not sent again. Messages still in the buffer when a connection opens are all
//! delivered to it, in order. For exactly-once, acknowledge at the application level (message ids
//! echoed by the server) and re-send what was not acknowledged after `on_open`.
//!
//! **Callbacks** ([`dispatch`]): on a dedicated thread per connection, in order, never with a lock
//! held; `on_closed` is always the last one.

pub(crate) mod buffer;
pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod heartbeat;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::defaults::{at_least, config_record, ms_i32, positive_ms, saturating_i32};
use crate::error::ApiError;
use crate::net::Network;
use crate::runtime::ClientRuntime;
use buffer::{Outbound, OutboundBuffer, Refused};
use dispatch::{Dispatcher, Event};

config_record! {
    /// WebSockets: heartbeat, reconnects, the outbound buffer.
    pub struct WebSocketConfig {
        /// A ping every this long; see `pong_timeout_ms`.
        pub heartbeat_interval_ms: i32 = 30000,
        /// A ping unanswered this long means the connection is dead (closed, reconnected).
        pub pong_timeout_ms: i32 = 10000,
        /// First reconnect delay; doubles per failed pass, full jitter.
        pub reconnect_base_delay_ms: i32 = 1000,
        /// Reconnect delay cap.
        pub reconnect_max_delay_ms: i32 = 30000,
        /// Consecutive failed connection attempts before giving up (`on_closed(1006, …)`).
        /// `None` = never give up.
        pub max_reconnect_attempts: Option<i32> = None,
        /// Reconnect when the server closes with the normal code 1000 (servers often do when they
        /// restart). `false`: such a close is final.
        pub reconnect_on_normal_close: bool = true,
        /// Outbound messages held per connection while it (re)connects; beyond it `send_*` fails
        /// with `WebSocketBufferFull`.
        pub max_buffered_messages: i32 = 1000,
        /// Outbound bytes held per connection while it (re)connects.
        pub max_buffered_bytes: i32 = 1048576,
        /// Keep pinging while the app is in the background (`set_app_state`). Off by default (the
        /// radio may sleep); back in the foreground every open socket is pinged at once.
        pub heartbeat_in_background: bool = false,
    }
}

/// Largest inbound message (and frame) accepted; a bigger one breaks the connection.
pub(crate) const MAX_INBOUND_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum WebSocketState {
    /// The first connection is being made (or waits for the network).
    Connecting,
    /// Connected: messages flow.
    Open,
    /// The connection was lost; a new one is being made (after a backoff delay, or when the
    /// network comes back). Messages sent now are buffered.
    Reconnecting,
    /// `close` was called; the closing handshake is under way.
    Closing,
    /// Closed for good (see `on_closed`); sends fail with `WebSocketClosed`.
    Closed,
}

/// Implement this (in any binding language) to receive a WebSocket's messages and life events.
/// Called on a dedicated background thread per connection, in order; `on_closed` is always last.
/// A slow callback delays this connection's later callbacks only (and, if it falls far behind,
/// reading from the socket). An error (a foreign exception) is logged as a warning; delivery goes on.
#[uniffi::export(with_foreign)]
pub trait WebSocketListener: Send + Sync {
    /// A connection opened (first time and after every reconnect), to this backend's base URL.
    fn on_open(&self, backend: String) -> Result<(), ApiError>;
    /// A text message arrived.
    fn on_text(&self, text: String) -> Result<(), ApiError>;
    /// A binary message arrived.
    fn on_binary(&self, data: Vec<u8>) -> Result<(), ApiError>;
    /// The state changed.
    fn on_state_change(&self, state: WebSocketState) -> Result<(), ApiError>;
    /// Something failed: a connection attempt, a dead or broken connection (a reconnect follows
    /// unless the state becomes `Closed`), or unsent messages were discarded at close.
    fn on_error(&self, error: ApiError) -> Result<(), ApiError>;
    /// Closed for good: by `close` (your code and reason), by the server (its code), or by the
    /// client (1006 after the attempt limit or a rejected handshake, 1001 at shutdown).
    fn on_closed(&self, code: i32, reason: String) -> Result<(), ApiError>;
}

/// One WebSocket connection, as of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SocketStatus {
    /// Per-client connection number (1, 2, …).
    pub id: i64,
    /// The path given to `connect_websocket`.
    pub path: String,
    /// Current state.
    pub state: WebSocketState,
    /// Base URL of the backend of the current (or last) connection.
    pub backend: Option<String>,
    /// How long the current connection has been open; `None` unless `Open`.
    pub connected_since_ms_ago: Option<i32>,
    /// Successful reconnections (opens after the first).
    pub reconnects: i32,
    /// Round trip of the last answered heartbeat ping.
    pub last_pong_rtt_ms: Option<i32>,
    /// Outbound messages waiting to be sent.
    pub buffered_messages: i32,
    /// Their size in bytes.
    pub buffered_bytes: i64,
    /// The last failure (connect error, dead connection, …).
    pub last_error: Option<String>,
}

/// The validated WebSocket settings.
#[derive(Debug, Clone)]
pub(crate) struct WsSettings {
    pub heartbeat_interval: Duration,
    pub pong_timeout: Duration,
    pub reconnect_base: Duration,
    pub reconnect_max: Duration,
    pub max_reconnect_attempts: Option<u32>,
    pub reconnect_on_normal_close: bool,
    pub max_buffered_messages: usize,
    pub max_buffered_bytes: u64,
    pub heartbeat_in_background: bool,
    /// TCP + TLS + upgrade handshake.
    pub connect_timeout: Duration,
}

impl WsSettings {
    pub(crate) fn from_config(
        c: &WebSocketConfig,
        connect_timeout: Duration,
    ) -> Result<Self, ApiError> {
        let reconnect_base = positive_ms(
            "websocket.reconnect_base_delay_ms",
            c.reconnect_base_delay_ms,
        )?;
        let reconnect_max =
            positive_ms("websocket.reconnect_max_delay_ms", c.reconnect_max_delay_ms)?;
        if reconnect_max < reconnect_base {
            return Err(ApiError::invalid_config(
                "websocket.reconnect_max_delay_ms must be at least websocket.reconnect_base_delay_ms",
            ));
        }
        let max_reconnect_attempts = c
            .max_reconnect_attempts
            .map(|n| at_least("websocket.max_reconnect_attempts (None = unlimited)", n, 1))
            .transpose()?;
        Ok(WsSettings {
            heartbeat_interval: positive_ms(
                "websocket.heartbeat_interval_ms",
                c.heartbeat_interval_ms,
            )?,
            pong_timeout: positive_ms("websocket.pong_timeout_ms", c.pong_timeout_ms)?,
            reconnect_base,
            reconnect_max,
            max_reconnect_attempts,
            reconnect_on_normal_close: c.reconnect_on_normal_close,
            max_buffered_messages: at_least(
                "websocket.max_buffered_messages",
                c.max_buffered_messages,
                1,
            )? as usize,
            max_buffered_bytes: at_least("websocket.max_buffered_bytes", c.max_buffered_bytes, 1)?
                as u64,
            heartbeat_in_background: c.heartbeat_in_background,
            connect_timeout,
        })
    }
}

/// `base` + `path` with the scheme switched to `ws`/`wss`.
pub(crate) fn ws_url(base: &Url, path: &str) -> Result<Url, ApiError> {
    let mut url = crate::http::join_url(base, path, &[])?;
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).map_err(|()| {
        ApiError::invalid_request(format!("path {path:?} does not form a WebSocket URL"))
    })?;
    Ok(url)
}

/// Mutable state of one connection, shared by its handle, its task and the status snapshot.
#[derive(Debug)]
struct Inner {
    state: WebSocketState,
    buffer: OutboundBuffer,
    backend: Option<String>,
    opened_at: Option<Instant>,
    reconnects: u32,
    last_rtt: Option<Duration>,
    last_error: Option<String>,
    close_request: Option<(u16, String)>,
}

/// What the handle, the task and the registry share.
pub(crate) struct Shared {
    id: u64,
    path: String,
    inner: Mutex<Inner>,
    /// Wakes the task: a message was buffered or `close` was called.
    wake: tokio::sync::Notify,
    /// A sender kept for shutdown (the task has its own); taken when the connection ends.
    dispatcher: Mutex<Option<Dispatcher>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> WebSocketState {
        self.lock().state
    }

    fn enqueue(&self, msg: Outbound) -> Result<(), ApiError> {
        {
            let mut s = self.lock();
            if matches!(s.state, WebSocketState::Closing | WebSocketState::Closed) {
                return Err(ApiError::WebSocketClosed {
                    reason: format!("connection {} to {} is {:?}", self.id, self.path, s.state),
                });
            }
            let len = msg.len();
            match s.buffer.push(msg) {
                Ok(()) => {}
                Err(Refused::Full) => {
                    return Err(ApiError::WebSocketBufferFull {
                        max_messages: saturating_i32(s.buffer.max_messages() as u64),
                        max_bytes: saturating_i32(s.buffer.max_bytes()),
                    })
                }
                Err(Refused::TooLarge) => {
                    return Err(ApiError::invalid_request(format!(
                        "a WebSocket message of {len} bytes exceeds ws_max_buffered_bytes ({})",
                        s.buffer.max_bytes()
                    )))
                }
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn pop_outbound(&self) -> Option<Outbound> {
        self.lock().buffer.pop()
    }

    pub(crate) fn close_request(&self) -> Option<(u16, String)> {
        self.lock().close_request.clone()
    }

    /// Moves to `state` unless `close` already moved it to Closing/Closed (only Closed may follow
    /// Closing). Returns whether `state` is now the state.
    pub(crate) fn set_state(&self, state: WebSocketState) -> bool {
        let mut s = self.lock();
        let locked = match s.state {
            WebSocketState::Closed => true,
            WebSocketState::Closing => {
                !matches!(state, WebSocketState::Closing | WebSocketState::Closed)
            }
            _ => false,
        };
        if locked {
            return false;
        }
        if state != WebSocketState::Open {
            s.opened_at = None;
        }
        s.state = state;
        true
    }

    /// A connection opened to `backend`: `Open` unless `close` was called meanwhile.
    pub(crate) fn mark_open(&self, backend: &str, reconnect: bool) -> bool {
        let mut s = self.lock();
        if matches!(s.state, WebSocketState::Closing | WebSocketState::Closed) {
            return false;
        }
        s.state = WebSocketState::Open;
        s.backend = Some(backend.to_string());
        s.opened_at = Some(Instant::now());
        if reconnect {
            s.reconnects = s.reconnects.saturating_add(1);
        }
        true
    }

    pub(crate) fn set_rtt(&self, rtt: Duration) {
        self.lock().last_rtt = Some(rtt);
    }

    pub(crate) fn set_error(&self, error: &ApiError) {
        self.lock().last_error = Some(error.to_string());
    }

    /// Final state: `Closed`, buffer emptied. Returns how many unsent messages were discarded and
    /// whether it was not closed before.
    pub(crate) fn finish(&self) -> (usize, bool) {
        let mut s = self.lock();
        let was_open = s.state != WebSocketState::Closed;
        s.state = WebSocketState::Closed;
        s.opened_at = None;
        (s.buffer.clear(), was_open)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    fn status(&self, now: Instant) -> SocketStatus {
        let s = self.lock();
        SocketStatus {
            id: self.id as i64,
            path: self.path.clone(),
            state: s.state,
            backend: s.backend.clone(),
            connected_since_ms_ago: s
                .opened_at
                .map(|t| ms_i32(now.saturating_duration_since(t))),
            reconnects: saturating_i32(s.reconnects as u64),
            last_pong_rtt_ms: s.last_rtt.map(ms_i32),
            buffered_messages: saturating_i32(s.buffer.len() as u64),
            buffered_bytes: s.buffer.bytes() as i64,
            last_error: s.last_error.clone(),
        }
    }
}

/// A WebSocket connection that reconnects by itself (see `connect_websocket`). Sending never
/// blocks: messages are buffered while the connection is not open.
#[derive(uniffi::Object)]
pub struct WebSocketConnection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebSocketConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketConnection")
            .field("id", &self.shared.id)
            .field("path", &self.shared.path)
            .field("state", &self.shared.state())
            .finish()
    }
}

/// Valid close codes an application may send (RFC 6455 §7.4): 1000, or 3000–4999.
fn valid_app_close_code(code: u16) -> bool {
    code == 1000 || (3000..=4999).contains(&code)
}

#[uniffi::export]
impl WebSocketConnection {
    /// Sends a text message now, or as soon as a connection is open (in order). Fails with
    /// `WebSocketBufferFull` when the outbound buffer is at its bound, `WebSocketClosed` after
    /// `close` (or a final close), `InvalidRequest` if the message alone exceeds the byte bound.
    pub fn send_text(&self, text: String) -> Result<(), ApiError> {
        self.shared.enqueue(Outbound::Text(text))
    }

    /// Sends a binary message; see `send_text`.
    pub fn send_binary(&self, data: Vec<u8>) -> Result<(), ApiError> {
        self.shared.enqueue(Outbound::Binary(data))
    }

    /// Closes for good, never reconnecting: buffered messages are sent first if a connection is
    /// open (else discarded, reported through `on_error`), then the closing handshake with `code`
    /// (1000, or 3000–4999) and `reason` (at most 123 bytes). Calling it again does nothing.
    pub fn close(&self, code: i32, reason: String) -> Result<(), ApiError> {
        let Some(code) = u16::try_from(code)
            .ok()
            .filter(|c| valid_app_close_code(*c))
        else {
            return Err(ApiError::invalid_request(format!(
                "close code {code} is not allowed: use 1000 or 3000-4999"
            )));
        };
        if reason.len() > 123 {
            return Err(ApiError::invalid_request(
                "close reason must be at most 123 bytes (UTF-8)",
            ));
        }
        {
            let mut s = self.shared.lock();
            if matches!(s.state, WebSocketState::Closing | WebSocketState::Closed) {
                return Ok(());
            }
            s.state = WebSocketState::Closing;
            s.opened_at = None;
            s.close_request = Some((code, reason));
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> WebSocketState {
        self.shared.state()
    }

    /// This connection's status (the same as its entry in `service_status().sockets`).
    pub fn status(&self) -> SocketStatus {
        self.shared.status(Instant::now())
    }
}

/// The client's WebSocket connections (for status and shutdown).
#[derive(Default)]
pub(crate) struct SocketRegistry {
    next_id: AtomicU64,
    conns: Mutex<Vec<Arc<Shared>>>,
    closed: AtomicBool,
}

impl SocketRegistry {
    fn conns(&self) -> MutexGuard<'_, Vec<Arc<Shared>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates, registers and starts a connection; returns at once (state `Connecting`).
    pub(crate) fn connect(
        self: &Arc<Self>,
        net: &Arc<Network>,
        settings: &WsSettings,
        runtime: &ClientRuntime,
        path: String,
        listener: Arc<dyn WebSocketListener>,
    ) -> Result<Arc<WebSocketConnection>, ApiError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ApiError::Cancelled {
                reason: "the client was shut down".into(),
            });
        }
        ws_url(&net.backend(0).url, &path)?;
        let settings = settings.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let dispatcher = Dispatcher::start(id, listener)?;
        let shared = Arc::new(Shared {
            id,
            path,
            inner: Mutex::new(Inner {
                state: WebSocketState::Connecting,
                buffer: OutboundBuffer::new(
                    settings.max_buffered_messages,
                    settings.max_buffered_bytes,
                ),
                backend: None,
                opened_at: None,
                reconnects: 0,
                last_rtt: None,
                last_error: None,
                close_request: None,
            }),
            wake: tokio::sync::Notify::new(),
            dispatcher: Mutex::new(Some(dispatcher.clone())),
        });
        {
            let mut conns = self.conns();
            // Checked again under the lock: `shutdown` drains under it, so nothing registered
            // after it can be missed.
            if self.closed.load(Ordering::SeqCst) {
                return Err(ApiError::Cancelled {
                    reason: "the client was shut down".into(),
                });
            }
            conns.push(shared.clone());
        }
        let task = connection::Task::new(
            shared.clone(),
            net.clone(),
            settings,
            dispatcher,
            Arc::downgrade(self),
        );
        runtime.spawn_background("WebSocket connection", task.run());
        Ok(Arc::new(WebSocketConnection { shared }))
    }

    /// Per-connection snapshot, oldest first (connections closed for good are not listed).
    pub(crate) fn status(&self) -> Vec<SocketStatus> {
        let now = Instant::now();
        let conns: Vec<Arc<Shared>> = self.conns().clone();
        conns.iter().map(|c| c.status(now)).collect()
    }

    pub(crate) fn remove(&self, id: u64) {
        self.conns().retain(|c| c.id != id);
    }

    /// Closes every connection (their tasks are aborted with the runtime): each listener gets
    /// `Closed` and `on_closed(1001, …)` after what was already queued, and its thread ends.
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let conns: Vec<Arc<Shared>> = std::mem::take(&mut *self.conns());
        for c in conns {
            let (discarded, was_open) = c.finish();
            let dispatcher = c
                .dispatcher
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let (Some(d), true) = (dispatcher, was_open) {
                if discarded > 0 {
                    d.try_send(Event::Error(ApiError::WebSocketClosed {
                        reason: format!(
                            "client shut down: {discarded} unsent message(s) discarded"
                        ),
                    }));
                }
                d.try_send(Event::State(WebSocketState::Closed));
                d.try_send(Event::Closed(1001, "client shut down".into()));
            }
            c.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_follow_the_backend_scheme_and_base_path() {
        let u = |base: &str, path: &str| {
            ws_url(&Url::parse(base).unwrap(), path)
                .unwrap()
                .to_string()
        };
        assert_eq!(u("http://a:8080", "/ws"), "ws://a:8080/ws");
        assert_eq!(u("https://a", "/ws?t=1"), "wss://a/ws?t=1");
        assert_eq!(u("https://a/api/", "/live"), "wss://a/api/live");
        assert!(ws_url(&Url::parse("http://a").unwrap(), "ws://b/x").is_err());
    }

    #[test]
    fn app_close_codes() {
        for ok in [1000, 3000, 4000, 4999] {
            assert!(valid_app_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1001, 1005, 1006, 1015, 2999, 5000] {
            assert!(!valid_app_close_code(bad), "{bad}");
        }
    }
}
