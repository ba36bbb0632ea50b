//! Local **WebSocket test servers**: N real servers on `127.0.0.1`, each an HTTP/1.1 endpoint that
//! answers `GET /api/health` (so a `RobustClient` can use them as its backends: probes and
//! selection work as with the HTTP fleet) and upgrades any request carrying `Upgrade: websocket`
//! to a WebSocket (tokio-tungstenite after a hand-written 101 answer).
//!
//! Used by `tests/websocket.rs` and, through `examples/test-fleet.rs`, by the Kotlin/Swift/Python
//! suites. The HTTP side (request heads, plain answers, re-binding a port) is the fleet's own
//! `http` module; tokio-tungstenite takes over after the 101 answer.
//!
//! Per server:
//! * [`Mode::Echo`] (default): every text/binary message is sent back; pings are answered.
//! * [`Mode::Deaf`]: the server stops reading its sockets (so it answers no ping) but keeps TCP
//!   open — a half-open connection as a client sees it. New connections are upgraded, then deaf.
//! * [`Mode::Reject`]: upgrade requests get this HTTP status (no WebSocket).
//! * [`WsServer::kill`]: like a crash — the port refuses connections and every connection is
//!   dropped without a close frame. [`WsServer::start`] listens on the same port again;
//!   [`WsServer::restart`] does both.
//! * [`WsServer::close_all`]: sends a close frame with a code to every open connection.
//! * Counters: upgrade requests (with their arrival times and headers), TCP connections, health
//!   hits, pings, messages received in order, close codes received from clients.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::http::{bind_again, next_head, respond_and_close};
use crate::lock;

mod control;

pub use control::WsControl;

/// Received messages kept per server (oldest dropped first).
const MAX_RECEIVED: usize = 100_000;

/// How a server treats WebSocket connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Echo messages, answer pings.
    Echo,
    /// Stop reading the sockets (no pongs), keep TCP open.
    Deaf,
    /// Refuse upgrades with this HTTP status.
    Reject(u16),
}

impl std::str::FromStr for Mode {
    type Err = String;
    /// `echo`, `deaf`, `reject <status>`.
    fn from_str(s: &str) -> Result<Mode, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["echo"] | ["ok"] => Ok(Mode::Echo),
            ["deaf"] => Ok(Mode::Deaf),
            ["reject", status] => status
                .parse::<u16>()
                .ok()
                .filter(|s| (200..=599).contains(s) && *s != 101)
                .map(Mode::Reject)
                .ok_or_else(|| format!("bad status {status:?}")),
            _ => Err(format!(
                "unknown mode {:?}; expected echo, deaf or reject <status>",
                s.trim()
            )),
        }
    }
}

/// A message a server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
}

/// One upgrade request as received.
#[derive(Clone, Debug)]
pub struct Upgrade {
    /// When its head was parsed.
    pub at: Instant,
    /// Request target.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

/// A connection task and its command channel.
type Conn = (JoinHandle<()>, mpsc::UnboundedSender<Cmd>);

enum Cmd {
    Close(u16, String),
    Send(String),
}

/// N WebSocket servers. Dropping it stops them all.
pub struct WsFleet {
    servers: Vec<WsServer>,
}

impl WsFleet {
    /// Starts `n` servers on ephemeral ports. Must be called inside a tokio runtime.
    pub async fn start(n: usize) -> WsFleet {
        match WsFleet::try_start(n).await {
            Ok(f) => f,
            Err(e) => panic!("ws test fleet: cannot bind a port on 127.0.0.1: {e}"),
        }
    }

    /// Like [`WsFleet::start`], returning the bind error.
    pub async fn try_start(n: usize) -> io::Result<WsFleet> {
        let mut fleet = WsFleet {
            servers: Vec::with_capacity(n),
        };
        for i in 0..n {
            fleet.servers.push(WsServer::start_new(i).await?);
        }
        Ok(fleet)
    }

    /// Base URLs `http://127.0.0.1:PORT`, in order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(WsServer::url).collect()
    }

    /// Server `i`.
    pub fn server(&self, i: usize) -> &WsServer {
        &self.servers[i]
    }

    /// All servers.
    pub fn servers(&self) -> &[WsServer] {
        &self.servers
    }

    /// Starts a plain-text control API for these servers (see [`WsControl`]).
    pub async fn start_control(&self) -> io::Result<WsControl> {
        WsControl::start(self.servers.clone()).await
    }
}

impl Drop for WsFleet {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort_all();
        }
    }
}

/// One server; cheap to clone.
#[derive(Clone)]
pub struct WsServer(Arc<Inner>);

struct Inner {
    index: usize,
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    listener: Mutex<Option<JoinHandle<()>>>,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    tcp_connections: AtomicU64,
    health_hits: AtomicU64,
    pings: AtomicU64,
    upgrades: Mutex<Vec<Upgrade>>,
    received: Mutex<Vec<Received>>,
    close_codes: Mutex<Vec<u16>>,
    open_ws: AtomicU64,
    tls_hellos: AtomicU64,
}

/// Counts an open WebSocket connection while alive (also when its task is aborted).
struct OpenGuard(Arc<Inner>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_ws.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WsServer {
    async fn start_new(index: usize) -> io::Result<WsServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = WsServer(Arc::new(Inner {
            index,
            addr,
            mode: watch::Sender::new(Mode::Echo),
            listener: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            tcp_connections: AtomicU64::new(0),
            health_hits: AtomicU64::new(0),
            pings: AtomicU64::new(0),
            upgrades: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            close_codes: Mutex::new(Vec::new()),
            open_ws: AtomicU64::new(0),
            tls_hellos: AtomicU64::new(0),
        }));
        server.listen(listener);
        Ok(server)
    }

    fn listen(&self, listener: TcpListener) {
        let inner = self.0.clone();
        *lock(&self.0.listener) = Some(tokio::spawn(accept_loop(inner, listener)));
    }

    /// `http://127.0.0.1:PORT` (stable across kill/start).
    pub fn url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// Position in the fleet.
    pub fn index(&self) -> usize {
        self.0.index
    }

    /// Switches the mode; applies to open connections at once.
    pub fn set_mode(&self, mode: Mode) {
        self.0.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.0.mode.borrow().clone()
    }

    /// Crash: stop listening (connects are refused) and drop every connection (no close frame).
    /// Returns once the port is closed.
    pub async fn kill(&self) {
        let listener = lock(&self.0.listener).take();
        if let Some(task) = listener {
            task.abort();
            let _ = task.await;
        }
        let conns: Vec<_> = lock(&self.0.conns).drain().map(|(_, (t, _))| t).collect();
        for t in &conns {
            t.abort();
        }
        for t in conns {
            let _ = t.await;
        }
    }

    /// Listens on the same port again (no-op if listening). Retries briefly while the old socket
    /// is torn down.
    pub async fn start(&self) -> io::Result<()> {
        if lock(&self.0.listener).is_some() {
            return Ok(());
        }
        let listener = bind_again(self.0.addr, 50).await?;
        self.listen(listener);
        Ok(())
    }

    /// [`WsServer::kill`] then [`WsServer::start`].
    pub async fn restart(&self) -> io::Result<()> {
        self.kill().await;
        self.start().await
    }

    /// Whether the port accepts connections.
    pub fn is_listening(&self) -> bool {
        lock(&self.0.listener).is_some()
    }

    /// Sends a close frame with `code` to every open WebSocket connection.
    pub fn close_all(&self, code: u16, reason: &str) {
        for (_, tx) in lock(&self.0.conns).values() {
            let _ = tx.send(Cmd::Close(code, reason.to_string()));
        }
    }

    /// Sends `text` to every open WebSocket connection.
    pub fn push_text(&self, text: &str) {
        for (_, tx) in lock(&self.0.conns).values() {
            let _ = tx.send(Cmd::Send(text.to_string()));
        }
    }

    /// Upgrade requests received (= WebSocket connection attempts that reached the server).
    pub fn upgrades(&self) -> u64 {
        lock(&self.0.upgrades).len() as u64
    }

    /// The upgrade requests, oldest first.
    pub fn upgrade_log(&self) -> Vec<Upgrade> {
        lock(&self.0.upgrades).clone()
    }

    /// TCP connections accepted (upgrades and health probes).
    pub fn tcp_connections(&self) -> u64 {
        self.0.tcp_connections.load(Ordering::SeqCst)
    }

    /// `GET /api/health` requests answered.
    pub fn health_hits(&self) -> u64 {
        self.0.health_hits.load(Ordering::SeqCst)
    }

    /// WebSocket pings received from clients (over all connections).
    pub fn pings(&self) -> u64 {
        self.0.pings.load(Ordering::SeqCst)
    }

    /// WebSocket connections open now.
    pub fn open_connections(&self) -> u64 {
        self.0.open_ws.load(Ordering::SeqCst)
    }

    /// Connections that opened with a TLS handshake record (this server speaks no TLS).
    pub fn tls_hellos(&self) -> u64 {
        self.0.tls_hellos.load(Ordering::SeqCst)
    }

    /// Messages received, in arrival order (over all connections).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.0.received).clone()
    }

    /// Text messages received, in order.
    pub fn received_texts(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter_map(|r| match r {
                Received::Text(t) => Some(t),
                Received::Binary(_) => None,
            })
            .collect()
    }

    /// Close codes sent by clients, in order.
    pub fn close_codes(&self) -> Vec<u16> {
        lock(&self.0.close_codes).clone()
    }

    /// Forgets counters and logs (mode and connections are kept).
    pub fn reset(&self) {
        lock(&self.0.upgrades).clear();
        lock(&self.0.received).clear();
        lock(&self.0.close_codes).clear();
        self.0.tcp_connections.store(0, Ordering::SeqCst);
        self.0.health_hits.store(0, Ordering::SeqCst);
        self.0.pings.store(0, Ordering::SeqCst);
    }

    fn abort_all(&self) {
        if let Some(t) = lock(&self.0.listener).take() {
            t.abort();
        }
        for (_, (t, _)) in lock(&self.0.conns).drain() {
            t.abort();
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                inner.tcp_connections.fetch_add(1, Ordering::SeqCst);
                let id = inner.next_conn.fetch_add(1, Ordering::SeqCst);
                let (tx, rx) = mpsc::unbounded_channel();
                let task_inner = inner.clone();
                // Registered under the lock before the task can deregister itself.
                let mut conns = lock(&inner.conns);
                let task = tokio::spawn(async move {
                    serve(task_inner.clone(), stream, rx).await;
                    lock(&task_inner.conns).remove(&id);
                });
                conns.insert(id, (task, tx));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve(inner: Arc<Inner>, stream: TcpStream, commands: mpsc::UnboundedReceiver<Cmd>) {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    if matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16) {
        inner.tls_hellos.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let mut io = BufReader::new(stream);
    let Some(head) = next_head(&mut io).await else {
        return;
    };
    // What the client sent past the head (its first frames) belongs to the WebSocket.
    let rest = io.buffer().to_vec();
    let mut stream = io.into_inner();
    let upgrade = head
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let path = head.target.split('?').next().unwrap_or("");
        if path == "/api/health" && (head.method == "GET" || head.method == "HEAD") {
            inner.health_hits.fetch_add(1, Ordering::SeqCst);
            let _ = respond_and_close(&mut stream, 200, "ok").await;
        } else {
            let _ = respond_and_close(&mut stream, 404, "not found").await;
        }
        return;
    }
    lock(&inner.upgrades).push(Upgrade {
        at: Instant::now(),
        path: head.target.clone(),
        headers: head.headers.clone(),
    });
    let mode = inner.mode.borrow().clone();
    if let Mode::Reject(status) = mode {
        let _ = respond_and_close(&mut stream, status, "rejected").await;
        return;
    }
    let Some(key) = head.header("sec-websocket-key") else {
        let _ = respond_and_close(&mut stream, 400, "no Sec-WebSocket-Key").await;
        return;
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Server, None).await;
    run_ws(inner, ws, commands).await;
}

async fn run_ws(
    inner: Arc<Inner>,
    mut ws: WebSocketStream<TcpStream>,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
) {
    inner.open_ws.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(inner.clone());
    let mut mode = inner.mode.subscribe();
    loop {
        let deaf = *mode.borrow_and_update() == Mode::Deaf;
        tokio::select! {
            msg = ws.next(), if !deaf => {
                // Deaf since this select began (the frame and the mode change were both ready and
                // select picked the frame): not read, so not answered — a ping gets no pong.
                if *mode.borrow() == Mode::Deaf {
                    continue;
                }
                let reply = match msg {
                    Some(Ok(Message::Text(t))) => {
                        push_received(&inner, Received::Text(t.as_str().to_owned()));
                        Message::Text(t)
                    }
                    Some(Ok(Message::Binary(b))) => {
                        push_received(&inner, Received::Binary(b.to_vec()));
                        Message::Binary(b)
                    }
                    Some(Ok(Message::Close(frame))) => {
                        lock(&inner.close_codes).push(frame.map_or(1005, |f| u16::from(f.code)));
                        // tungstenite answers the close; read on until the end.
                        while let Some(Ok(_)) = ws.next().await {}
                        return;
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite queues the pong; it goes out with the next write or flush.
                        inner.pings.fetch_add(1, Ordering::SeqCst);
                        if ws.flush().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return,
                };
                if ws.send(reply).await.is_err() {
                    return;
                }
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            cmd = commands.recv() => match cmd {
                Some(Cmd::Close(code, reason)) => {
                    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                    let _ = ws.send(Message::Close(Some(frame))).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    return;
                }
                Some(Cmd::Send(text)) => {
                    if !deaf && ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    }
}

fn push_received(inner: &Inner, r: Received) {
    let mut log = lock(&inner.received);
    if log.len() >= MAX_RECEIVED {
        log.remove(0);
    }
    log.push(r);
}
