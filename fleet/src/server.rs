//! The HTTP server core: [`Fleet`] and its [`Server`]s, the accept loop, the per-connection request
//! loop (faults applied per request), request recording and idempotency.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::TokenService;
use crate::control::ControlServer;
use crate::fault::{black_hole, send_broken, Fault};
use crate::http::{bind_again, next_body, next_head, path_only, write_response, Head, Response};
use crate::lock;
use crate::tasks::TaskSet;
use crate::upload::{is_upload_route, serve_upload, UploadEnd, UploadSink};

/// How many [`RecordedRequest`]s each server keeps (the oldest are dropped first).
pub const MAX_RECORDED: usize = 10_000;
/// How much of each request body a [`RecordedRequest`] keeps.
pub const MAX_RECORDED_BODY: usize = 64 * 1024;
/// How many idempotency keys (with their stored responses) each server remembers.
pub const MAX_IDEMPOTENCY_KEYS: usize = 100_000;

/// One request as a server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request target, query included (`/x?q=1`).
    pub path: String,
    /// Headers in arrival order; names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The first [`MAX_RECORDED_BODY`] bytes of the (de-chunked) body.
    pub body: Vec<u8>,
    /// The full body length.
    pub body_len: usize,
    /// When the request head was parsed.
    pub received_at: Instant,
    /// Which TCP connection of this server carried it (1, 2, ... in accept order).
    pub connection: u64,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------------------------

/// N servers on `127.0.0.1`. Their tasks run on the tokio runtime that called [`Fleet::start`]
/// (it must outlive the fleet's use). Dropping the fleet stops every server and closes every
/// connection (tasks are aborted); [`Fleet::shutdown`] does the same and waits until it is done.
pub struct Fleet {
    servers: Vec<Server>,
    tokens: Arc<TokenService>,
}

impl Fleet {
    /// Starts `n` servers, each on its own ephemeral port, all with [`Fault::None`].
    /// Must be called inside a tokio runtime. Panics if a port cannot be bound.
    pub async fn start(n: usize) -> Fleet {
        match Fleet::try_start(n).await {
            Ok(fleet) => fleet,
            Err(e) => panic!("test fleet: cannot bind a port on 127.0.0.1: {e}"),
        }
    }

    /// Like [`Fleet::start`], but returns the bind error.
    pub async fn try_start(n: usize) -> io::Result<Fleet> {
        // Built incrementally so that an error drops (and so stops) the servers already started.
        let mut fleet = Fleet {
            servers: Vec::with_capacity(n),
            tokens: Arc::default(),
        };
        for index in 0..n {
            let store = Arc::new(Mutex::new(IdempotencyStore::default()));
            let tokens = Arc::clone(&fleet.tokens);
            fleet
                .servers
                .push(Server::start(index, store, tokens).await?);
        }
        Ok(fleet)
    }

    /// Like [`Fleet::start`], but the servers share one idempotency store (one service behind
    /// several endpoints): a key seen by one is known to all, and a key in progress on one gets
    /// `409 request with this key in progress` from any. Panics if a port cannot be bound.
    pub async fn start_sharing_keys(n: usize) -> Fleet {
        let store = Arc::new(Mutex::new(IdempotencyStore::default()));
        let mut fleet = Fleet {
            servers: Vec::with_capacity(n),
            tokens: Arc::default(),
        };
        for index in 0..n {
            let tokens = Arc::clone(&fleet.tokens);
            match Server::start(index, Arc::clone(&store), tokens).await {
                Ok(server) => fleet.servers.push(server),
                Err(e) => panic!("test fleet: cannot bind a port on 127.0.0.1: {e}"),
            }
        }
        fleet
    }

    /// The token service every server of this fleet shares (`/auth/token`, `/private/...`).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the fleet has no servers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Base URLs, `http://127.0.0.1:PORT` (no trailing slash), in server order.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }

    /// Server `i`. Panics if out of range. Clone it to keep a handle.
    pub fn server(&self, i: usize) -> &Server {
        &self.servers[i]
    }

    /// All servers.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// Sets the same fault on every server.
    pub async fn set_fault_all(&self, fault: Fault) {
        for server in &self.servers {
            server.set_fault(fault.clone()).await;
        }
    }

    /// Total hits over all servers.
    pub fn total_hits(&self) -> u64 {
        self.servers.iter().map(Server::hits).sum()
    }

    /// Starts the plain-text control HTTP server (see [`ControlServer`]) for this fleet.
    /// It stops when the returned handle is dropped.
    pub async fn start_control(&self) -> io::Result<ControlServer> {
        ControlServer::start(self.servers.clone(), None).await
    }

    /// [`Fleet::start_control`], with `/proxy/...` routes driving `proxy` (see [`ControlServer`]).
    pub async fn start_control_with_proxy(
        &self,
        proxy: Arc<crate::HttpProxy>,
    ) -> io::Result<ControlServer> {
        ControlServer::start(self.servers.clone(), Some(proxy)).await
    }

    /// Stops every server and waits until all listeners and connections are closed.
    pub async fn shutdown(self) {
        for server in &self.servers {
            let inner = &server.0;
            inner.shut_down.store(true, Ordering::SeqCst);
            let listener = lock(&inner.listener_task).take();
            if let Some(task) = listener {
                task.abort();
                let _ = task.await;
            }
            inner.conns.close_and_abort_all().await;
        }
        // `Drop` runs next and finds nothing left to do.
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for server in &self.servers {
            server.0.shutdown_now();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// One server of a [`Fleet`]. Cheap to clone (an `Arc` inside); clones share everything.
#[derive(Clone)]
pub struct Server(pub(crate) Arc<ServerInner>);

pub(crate) struct ServerInner {
    pub(crate) index: usize,
    addr: SocketAddr,
    /// The current fault; connection tasks hold receivers (read per request, watched by BlackHole).
    fault: watch::Sender<Fault>,
    /// Serialises `set_fault` calls (unbinding/rebinding must not interleave).
    switching: tokio::sync::Mutex<()>,
    /// The accept loop; `None` while `Down` (the listener lives inside this task).
    listener_task: Mutex<Option<JoinHandle<()>>>,
    /// One task per open connection.
    conns: Arc<TaskSet>,
    /// Set when the fleet is dropped: no more rebinding.
    shut_down: AtomicBool,
    hits: AtomicU64,
    connections_accepted: AtomicU64,
    next_connection_id: AtomicU64,
    pub(crate) log: Mutex<Log>,
    /// This server's idempotency store, or one shared by the whole fleet
    /// ([`Fleet::start_sharing_keys`]).
    pub(crate) idempotency: Arc<Mutex<IdempotencyStore>>,
    pub(crate) unique_effects: AtomicU64,
    /// State of the upload route (see `upload`).
    pub(crate) upload: UploadSink,
    /// The fleet's token service (see `auth`).
    pub(crate) tokens: Arc<TokenService>,
    /// `Some(body)`: `/api/health` answers `200` `application/json` with it instead of `ok`.
    pub(crate) health_body: Mutex<Option<String>>,
    /// The small tus server on `/tus/files` (see `tus`).
    pub(crate) tus: Mutex<crate::tus::TusState>,
}

#[derive(Default)]
pub(crate) struct Log {
    pub(crate) hits_by_path: HashMap<String, u64>,
    requests: VecDeque<RecordedRequest>,
}

#[derive(Default)]
pub(crate) struct IdempotencyStore {
    pub(crate) responses: HashMap<String, Response>,
    /// Keys whose first request is being handled (a `Slow` answer not yet written): a concurrent
    /// duplicate gets `409 request with this key in progress`.
    pub(crate) in_progress: std::collections::HashSet<String>,
    /// Insertion order, for eviction past [`MAX_IDEMPOTENCY_KEYS`].
    order: VecDeque<String>,
}

impl IdempotencyStore {
    /// Stores the response of a first-time key, forgetting the oldest key past the limit.
    pub(crate) fn remember(&mut self, key: String, response: Response) {
        if self.order.len() >= MAX_IDEMPOTENCY_KEYS {
            if let Some(oldest) = self.order.pop_front() {
                self.responses.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.responses.insert(key, response);
    }
}

impl Server {
    async fn start(
        index: usize,
        idempotency: Arc<Mutex<IdempotencyStore>>,
        tokens: Arc<TokenService>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::None);
        let server = Server(Arc::new(ServerInner {
            index,
            addr,
            fault,
            switching: tokio::sync::Mutex::new(()),
            listener_task: Mutex::new(None),
            conns: Arc::new(TaskSet::default()),
            shut_down: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            next_connection_id: AtomicU64::new(1),
            log: Mutex::new(Log::default()),
            idempotency,
            unique_effects: AtomicU64::new(0),
            upload: UploadSink::default(),
            tokens,
            health_body: Mutex::new(None),
            tus: Mutex::default(),
        }));
        let task = tokio::spawn(accept_loop(Arc::clone(&server.0), listener));
        *lock(&server.0.listener_task) = Some(task);
        Ok(server)
    }

    /// `http://127.0.0.1:PORT` (no trailing slash). Stable across `Down`/up cycles.
    pub fn url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// The socket address the server listens on (while not `Down`).
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Position in the fleet; also the value of `X-Backend`.
    pub fn index(&self) -> usize {
        self.0.index
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.0.fault.borrow().clone()
    }

    /// Switches the fault. Returns once it is in effect: after `Down`, the port refuses
    /// connections and all of this server's connections are closed; after anything else, the
    /// port accepts connections again. Panics if the port cannot be re-bound (see
    /// [`Server::try_set_fault`]).
    pub async fn set_fault(&self, fault: Fault) {
        if let Err(e) = self.try_set_fault(fault.clone()).await {
            panic!(
                "test fleet: server {} could not switch to {fault}: {e}",
                self.0.index
            );
        }
    }

    /// Like [`Server::set_fault`], but returns an error instead of panicking when the port cannot
    /// be re-bound (something else took it while the server was down) or the fleet was dropped.
    /// On error the server stays `Down`.
    pub async fn try_set_fault(&self, fault: Fault) -> io::Result<()> {
        let inner = &self.0;
        let _serial = inner.switching.lock().await;
        if inner.shut_down.load(Ordering::SeqCst) {
            return Err(io::Error::other("the fleet has been shut down"));
        }
        if fault == Fault::Down {
            inner.fault.send_replace(Fault::Down);
            // Dropping the accept task drops the listener: new connects get ECONNREFUSED.
            let listener = lock(&inner.listener_task).take();
            if let Some(task) = listener {
                task.abort();
                let _ = task.await; // resolves once the task (and the listener) is dropped
            }
            // No new connections can appear now; close the existing ones.
            inner.conns.abort_all_and_wait().await;
            return Ok(());
        }
        let listening = lock(&inner.listener_task).is_some();
        if !listening {
            let listener = bind_again(inner.addr, 20).await?;
            // Set the fault before accepting, so the first request already sees it.
            inner.fault.send_replace(fault);
            let task = tokio::spawn(accept_loop(Arc::clone(inner), listener));
            *lock(&inner.listener_task) = Some(task);
            // Lost a race with `Fleet::drop`? Then stop what was just started.
            if inner.shut_down.load(Ordering::SeqCst) {
                inner.shutdown_now();
            }
        } else {
            inner.fault.send_replace(fault);
        }
        Ok(())
    }

    /// Requests received since start or the last [`Server::reset_hits`] (health probes included).
    /// A request counts once its head is parsed, whatever the fault (except `Down`).
    pub fn hits(&self) -> u64 {
        self.0.hits.load(Ordering::SeqCst)
    }

    /// Makes `/api/health` answer `200` `application/json` with `body` (e.g.
    /// `{"status":"degraded"}`); `None`: back to `200` `text/plain` `ok`. Faults still win.
    pub fn set_health_body(&self, body: Option<&str>) {
        *lock(&self.0.health_body) = body.map(str::to_owned);
    }

    /// Hits for one path, compared without the query string (`/x` matches `/x?q=1`).
    pub fn hits_for(&self, path: &str) -> u64 {
        let path = path_only(path);
        lock(&self.0.log)
            .hits_by_path
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// TCP connections accepted since start or the last [`Server::reset_hits`].
    pub fn connections(&self) -> u64 {
        self.0.connections_accepted.load(Ordering::SeqCst)
    }

    /// Forgets what was observed: hits, per-path hits, accepted-connection count, the request log
    /// (and so [`Server::idempotency_keys`]). Server *state* is kept: the idempotency store and
    /// [`Server::unique_effects`] (see [`Server::reset_effects`]).
    pub fn reset_hits(&self) {
        let mut log = lock(&self.0.log);
        self.0.hits.store(0, Ordering::SeqCst);
        self.0.connections_accepted.store(0, Ordering::SeqCst);
        log.hits_by_path.clear();
        log.requests.clear();
    }

    /// Forgets the idempotency store and zeroes [`Server::unique_effects`].
    pub fn reset_effects(&self) {
        let mut store = lock(&self.0.idempotency);
        store.responses.clear();
        store.in_progress.clear();
        store.order.clear();
        self.0.unique_effects.store(0, Ordering::SeqCst);
    }

    /// The last [`MAX_RECORDED`] requests, oldest first. A request is recorded once its body has
    /// been read (it is counted in `hits` as soon as its head is parsed).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.0.log).requests.iter().cloned().collect()
    }

    /// `Idempotency-Key` values of the recorded requests (any method), in arrival order,
    /// duplicates included.
    pub fn idempotency_keys(&self) -> Vec<String> {
        lock(&self.0.log)
            .requests
            .iter()
            .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
            .collect()
    }

    /// Mutations applied: first-time idempotency keys plus unkeyed mutations. Replays, and
    /// mutations rejected by a fault (`Status`, `RetryAfter`, `BlackHole`), do not count.
    pub fn unique_effects(&self) -> u64 {
        self.0.unique_effects.load(Ordering::SeqCst)
    }
}

impl ServerInner {
    /// Stops the accept loop and every connection without waiting (used by `Drop`).
    fn shutdown_now(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.listener_task).take() {
            task.abort();
        }
        self.conns.close_and_abort_all_now();
    }

    /// Counts a hit for a freshly parsed request head; returns the hit count including it.
    fn count_hit(&self, target: &str) -> u64 {
        let mut log = lock(&self.log);
        *log.hits_by_path
            .entry(path_only(target).to_owned())
            .or_insert(0) += 1;
        self.hits.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn record(&self, head: &Head, body: &[u8], received_at: Instant, connection: u64) {
        let request = RecordedRequest {
            method: head.method.clone(),
            path: head.target.clone(),
            headers: head.headers.clone(),
            body: body[..body.len().min(MAX_RECORDED_BODY)].to_vec(),
            body_len: body.len(),
            received_at,
            connection,
        };
        self.push_recorded(request);
    }

    /// Appends to the request log, dropping the oldest past [`MAX_RECORDED`].
    pub(crate) fn push_recorded(&self, request: RecordedRequest) {
        let mut log = lock(&self.log);
        if log.requests.len() >= MAX_RECORDED {
            log.requests.pop_front();
        }
        log.requests.push_back(request);
    }

    /// Normal handling (idempotency + routing). Returns the response, whether it is a replay, and
    /// the key left *in progress* (a first-time key: [`ServerInner::finish`] stores its answer).
    fn handle(&self, head: &Head, body: &[u8]) -> (Response, bool, Option<String>) {
        if let Some(answer) = self.tokens.check(head, body) {
            return (answer, false, None); // refused before any effect, or a token answer
        }
        let mutation = matches!(head.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        if !mutation {
            return (self.route(head, body, None), false, None);
        }
        let Some(key) = head.header("idempotency-key") else {
            let effect = self.unique_effects.fetch_add(1, Ordering::SeqCst) + 1;
            return (self.route(head, body, Some(effect)), false, None);
        };
        // Check-and-mark under one lock: concurrent duplicates apply the effect once.
        let mut store = lock(&self.idempotency);
        if let Some(stored) = store.responses.get(key) {
            return (stored.clone(), true, None);
        }
        if store.in_progress.contains(key) {
            let conflict = Response::text(409, "request with this key in progress");
            return (conflict, false, None);
        }
        store.in_progress.insert(key.to_owned());
        let effect = self.unique_effects.fetch_add(1, Ordering::SeqCst) + 1;
        (
            self.route(head, body, Some(effect)),
            false,
            Some(key.to_owned()),
        )
    }

    /// Stores the answer of a first-time key and ends its *in progress* state.
    fn finish(&self, key: Option<String>, response: &Response) {
        if let Some(key) = key {
            let mut store = lock(&self.idempotency);
            store.in_progress.remove(&key);
            store.remember(key, response.clone());
        }
    }
}

async fn accept_loop(inner: Arc<ServerInner>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let id = inner.next_connection_id.fetch_add(1, Ordering::SeqCst);
                inner.connections_accepted.fetch_add(1, Ordering::SeqCst);
                let conn_inner = Arc::clone(&inner);
                inner
                    .conns
                    .spawn(serve_backend_connection(conn_inner, stream, id));
            }
            // E.g. EMFILE: back off a little instead of spinning; the listener stays open.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// `delay_ms` on a `/cache/...` route: how long its answer waits (at most 10 s).
fn cache_route_delay(target: &str) -> Option<std::time::Duration> {
    if !path_only(target).starts_with("/cache/") {
        return None;
    }
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let ms: u64 = crate::http::query_param(query, "delay_ms")?.parse().ok()?;
    Some(std::time::Duration::from_millis(ms.min(10_000)))
}

/// Serves one backend connection: a loop of requests until the client closes, asks to close, a
/// protocol error occurs, or a fault ends the connection.
async fn serve_backend_connection(inner: Arc<ServerInner>, stream: TcpStream, connection: u64) {
    let _ = stream.set_nodelay(true);
    let mut faults = inner.fault.subscribe();
    let mut io = BufReader::new(stream);
    loop {
        let Some(head) = next_head(&mut io).await else {
            return;
        };
        let received_at = Instant::now();
        let count = inner.count_hit(&head.target);
        if is_upload_route(&head.target) {
            let end = serve_upload(
                &inner,
                &mut io,
                &head,
                &mut faults,
                count,
                received_at,
                connection,
            );
            match end.await {
                UploadEnd::KeepAlive => continue,
                UploadEnd::Close => return,
            }
        }
        let Some(body) = next_body(&mut io, &head).await else {
            return;
        };
        inner.record(&head, &body, received_at, connection);

        let fault = faults.borrow_and_update().clone();
        let keep_alive = head.keep_alive();
        let head_only = head.method == "HEAD";
        let extra = [
            ("X-Backend", inner.index.to_string()),
            ("X-Request-Count", count.to_string()),
        ];
        let response = match fault {
            // Raced with a switch to Down: this task is about to be aborted anyway.
            Fault::Down => return,
            Fault::BlackHole => {
                black_hole(&mut io, &mut faults).await;
                return;
            }
            Fault::Status(status) => Response::text(status, format!("error {status}")),
            Fault::RetryAfter { status, secs } => Response::text(status, format!("error {status}"))
                .with_header("Retry-After", secs.to_string()),
            Fault::None | Fault::Slow(_) | Fault::Truncate | Fault::ResetMidBody => {
                let (response, replayed, pending) = inner.handle(&head, &body);
                if let Fault::Slow(delay) = fault {
                    tokio::time::sleep(delay).await;
                }
                if let Some(delay) = cache_route_delay(&head.target) {
                    tokio::time::sleep(delay).await;
                }
                inner.finish(pending, &response);
                if matches!(fault, Fault::Truncate | Fault::ResetMidBody) {
                    let reset = fault == Fault::ResetMidBody;
                    let _ = send_broken(io.get_mut(), &extra, reset).await; // then dropped: FIN or RST
                    return;
                }
                if replayed {
                    response.with_header("Idempotent-Replayed", "true".to_owned())
                } else {
                    response
                }
            }
        };
        let written = write_response(io.get_mut(), &response, &extra, head_only, !keep_alive).await;
        if written.is_err() || !keep_alive {
            return;
        }
    }
}
