//! A local **test fleet**: N real HTTP/1.1 servers on `127.0.0.1`, each with a switchable [`Fault`].
//!
//! Used by the integration tests, the demo, the benchmarks and (through `examples/test-fleet.rs`)
//! by the Kotlin/Swift/Python tests. Real sockets, no mocks. Depends only on `std` + `tokio`
//! (features `net`, `io-util`, `time`, `sync`, `rt`) and `sha2` (the upload route), never on
//! `robust_api`, so it can be included
//! anywhere with `#[path = ".../tests/support/fleet.rs"] mod fleet;`.
//!
//! # Routes (when no fault is active)
//! Routing is by path only; every method is accepted.
//! * `/api/health` → `200`, `text/plain`, body `ok`.
//! * `/bytes/{n}` → `200`, `application/octet-stream`, `n` bytes (capped at 64 MiB) of
//!   [`pattern_byte`] content; a non-numeric `n` → `400`.
//! * `/echo` → `200`, the request body, with the request's `Content-Type`
//!   (`application/octet-stream` if it had none).
//! * `/cache/...` → `200` JSON `{"server":0,"path":"/cache/a?..","n":N}` (N = this path's hit count),
//!   with caching headers taken from the query: `cc` → `Cache-Control`, `etag` → `ETag` (quoted),
//!   `lm` → `Last-Modified`, `expires` → `Expires`, `vary` → `Vary` (values percent-decoded). A
//!   request whose `If-None-Match` matches the etag, or whose `If-Modified-Since` equals `lm`, gets
//!   `304` with the same caching headers and no body.
//! * `/upload`, `/upload/...`, `/api/videos` (`POST`/`PUT`) → the streaming upload route (see
//!   [`serve_upload`]): the `multipart/form-data` body is parsed as it arrives, never buffered whole
//!   (no 64 MiB limit); the file part is SHA-256-hashed; answers `201` JSON
//!   `{"server":0,"effect":N,"upload":K,"key":..,"path":..,"field_name":..,"file_name":..,
//!   "content_type":..,"size":N,"sha256":"hex","fields":{"title":..}}` and records a
//!   [`StoredUpload`] ([`Server::uploads`]); `Content-Length` required (`411`). A replayed
//!   idempotency key gets the stored answer and stores nothing. Upload fault:
//!   [`Server::set_upload_reset_after`] resets the connection after N body bytes, once.
//! * anything else → `200`, `application/json`,
//!   `{"server":0,"method":"GET","path":"/x?q=1"}`; mutations (below) also carry `"effect":N`,
//!   the server's effect counter after applying it, so a replay is recognisable by its body.
//!
//! Every response carries `X-Backend: <index>` and `X-Request-Count: <hits so far, this one included>`.
//!
//! # HTTP details
//! HTTP/1.1 persistent connections (HTTP/1.0 only with `Connection: keep-alive`). Request bodies are
//! framed by `Content-Length` or `Transfer-Encoding: chunked` (decoded; any other transfer coding
//! gets `501`). Heads are capped at 64 KiB (`431`), bodies at 64 MiB (`413`); malformed requests get
//! `400`; each of these closes the connection. `Expect: 100-continue` is honoured. `HEAD` gets the
//! headers without a body. Responses always use `Content-Length`.
//!
//! # Idempotency
//! `POST`/`PUT`/`PATCH`/`DELETE` are *mutations*. A mutation that reaches normal handling (no fault,
//! or `Slow`/`Truncate`/`ResetMidBody`, see [`Fault`]) applies one *effect*, unless it carries an
//! `Idempotency-Key` that already produced a response: then that stored response (same status,
//! headers and body) is replayed with `Idempotent-Replayed: true` and no effect is applied.
//! [`Server::unique_effects`] counts applied effects. The key is not checked against the payload.
//! The store keeps the last 100 000 keys.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Largest accepted request head (request line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest `n` served by `/bytes/{n}` (larger values are capped).
pub const MAX_BYTES_ROUTE: usize = 64 * 1024 * 1024;
/// How many [`RecordedRequest`]s each server keeps (the oldest are dropped first).
pub const MAX_RECORDED: usize = 10_000;
/// How much of each request body a [`RecordedRequest`] keeps.
pub const MAX_RECORDED_BODY: usize = 64 * 1024;
/// How many idempotency keys (with their stored responses) each server remembers.
pub const MAX_IDEMPOTENCY_KEYS: usize = 100_000;
/// `Content-Length` announced by [`Fault::Truncate`] and [`Fault::ResetMidBody`] responses.
pub const BROKEN_DECLARED_LEN: usize = 1000;
/// Body bytes actually sent by [`Fault::Truncate`] and [`Fault::ResetMidBody`] responses.
pub const BROKEN_SENT_LEN: usize = 100;

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/// What a server does with the requests it receives. Switch with [`Server::set_fault`].
///
/// A fault is read when a request's head has been parsed, so a change applies to new connections
/// *and* to the next request on existing keep-alive connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Normal behaviour.
    #[default]
    None,
    /// Connection refused: the listener is closed and every open connection of this server is
    /// closed (FIN) before `set_fault` returns. Any other fault rebinds the same port.
    ///
    /// Note: a client that had an idle pooled keep-alive connection may not have processed the FIN
    /// when it sends its next request, and then sees "connection closed before message completed"
    /// (not a connect error) once; new connections always get `ECONNREFUSED`.
    Down,
    /// Accepts connections and reads requests (they count as hits) but never answers. A pending
    /// request's connection stays open until the client hangs up or the fault changes; then it is
    /// closed without an answer.
    BlackHole,
    /// Answers every request (health probes included) with this status and body `error <status>`.
    /// No effect is applied.
    Status(u16),
    /// Like `Status`, plus `Retry-After: <secs>`.
    RetryAfter { status: u16, secs: u64 },
    /// Handles the request normally (a mutation's effect is applied at once) but waits this long
    /// before sending the answer.
    Slow(Duration),
    /// Sends `200` headers with `Content-Length: 1000`, then only 100 body bytes, then closes the
    /// connection (FIN). The request was handled (a mutation's effect is applied): the response is
    /// what got lost.
    Truncate,
    /// Like `Truncate`, but the connection is then reset (RST, via `SO_LINGER` 0) about 10 ms after
    /// the partial body, so the client reads the head and part of the body, then `ECONNRESET`.
    ResetMidBody,
}

impl FromStr for Fault {
    type Err = String;

    /// Parses the control-API syntax: `ok` (or `none`), `down`, `blackhole`, `status <code>`,
    /// `retry-after <code> <secs>`, `slow <ms>`, `truncate`, `reset`. Case-insensitive; surrounding
    /// whitespace is ignored. Status codes must be within 200..=599.
    fn from_str(s: &str) -> Result<Fault, String> {
        let words: Vec<String> = s.split_whitespace().map(str::to_ascii_lowercase).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let status = |w: &str| -> Result<u16, String> {
            match w.parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => Ok(code),
                _ => Err(format!("bad status code {w:?}: expected 200..=599")),
            }
        };
        let number = |w: &str, what: &str| -> Result<u64, String> {
            w.parse::<u64>()
                .map_err(|_| format!("bad {what} {w:?}: expected a non-negative integer"))
        };
        match words.as_slice() {
            ["ok"] | ["none"] => Ok(Fault::None),
            ["down"] => Ok(Fault::Down),
            ["blackhole"] | ["black-hole"] => Ok(Fault::BlackHole),
            ["status", code] => Ok(Fault::Status(status(code)?)),
            ["retry-after", code, secs] => Ok(Fault::RetryAfter {
                status: status(code)?,
                secs: number(secs, "seconds")?,
            }),
            ["slow", ms] => Ok(Fault::Slow(Duration::from_millis(number(
                ms,
                "milliseconds",
            )?))),
            ["truncate"] => Ok(Fault::Truncate),
            ["reset"] | ["reset-mid-body"] => Ok(Fault::ResetMidBody),
            _ => Err(format!(
                "unknown fault {:?}; expected one of: ok, down, blackhole, status <code>, \
                 retry-after <code> <secs>, slow <ms>, truncate, reset",
                s.trim()
            )),
        }
    }
}

impl fmt::Display for Fault {
    /// Formats in the control-API syntax (round-trips through [`FromStr`], `Slow` at ms precision).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => write!(f, "ok"),
            Fault::Down => write!(f, "down"),
            Fault::BlackHole => write!(f, "blackhole"),
            Fault::Status(s) => write!(f, "status {s}"),
            Fault::RetryAfter { status, secs } => write!(f, "retry-after {status} {secs}"),
            Fault::Slow(d) => write!(f, "slow {}", d.as_millis()),
            Fault::Truncate => write!(f, "truncate"),
            Fault::ResetMidBody => write!(f, "reset"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recorded requests
// ---------------------------------------------------------------------------------------------

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

/// The content of `/bytes/{n}`: byte `i` of the body is `pattern_byte(i)`.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The body `/bytes/{n}` returns.
pub fn expected_bytes(n: usize) -> Vec<u8> {
    (0..n.min(MAX_BYTES_ROUTE)).map(pattern_byte).collect()
}

// ---------------------------------------------------------------------------------------------
// Fleet
// ---------------------------------------------------------------------------------------------

/// N servers on `127.0.0.1`. Their tasks run on the tokio runtime that called [`Fleet::start`]
/// (it must outlive the fleet's use). Dropping the fleet stops every server and closes every
/// connection (tasks are aborted); [`Fleet::shutdown`] does the same and waits until it is done.
pub struct Fleet {
    servers: Vec<Server>,
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
        };
        for index in 0..n {
            fleet.servers.push(Server::start(index).await?);
        }
        Ok(fleet)
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
        ControlServer::start(self.servers.clone()).await
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
pub struct Server(Arc<ServerInner>);

struct ServerInner {
    index: usize,
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
    log: Mutex<Log>,
    idempotency: Mutex<IdempotencyStore>,
    unique_effects: AtomicU64,
    /// State of the upload route (see [`serve_upload`]).
    upload: UploadSink,
}

#[derive(Default)]
struct Log {
    hits_by_path: HashMap<String, u64>,
    requests: VecDeque<RecordedRequest>,
}

#[derive(Default)]
struct IdempotencyStore {
    responses: HashMap<String, Response>,
    /// Insertion order, for eviction past [`MAX_IDEMPOTENCY_KEYS`].
    order: VecDeque<String>,
}

impl Server {
    async fn start(index: usize) -> io::Result<Server> {
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
            idempotency: Mutex::new(IdempotencyStore::default()),
            unique_effects: AtomicU64::new(0),
            upload: UploadSink::default(),
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
            let listener = bind_again(inner.addr).await?;
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
        let mut log = lock(&self.log);
        if log.requests.len() >= MAX_RECORDED {
            log.requests.pop_front();
        }
        log.requests.push_back(request);
    }

    /// Normal handling (idempotency + routing). Returns the response and whether it is a replay.
    fn handle(&self, head: &Head, body: &[u8]) -> (Response, bool) {
        let mutation = matches!(head.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        if !mutation {
            return (self.route(head, body, None), false);
        }
        let Some(key) = head.header("idempotency-key") else {
            let effect = self.unique_effects.fetch_add(1, Ordering::SeqCst) + 1;
            return (self.route(head, body, Some(effect)), false);
        };
        // Check-and-insert under one lock: concurrent duplicates apply the effect once.
        let mut store = lock(&self.idempotency);
        if let Some(stored) = store.responses.get(key) {
            return (stored.clone(), true);
        }
        let effect = self.unique_effects.fetch_add(1, Ordering::SeqCst) + 1;
        let response = self.route(head, body, Some(effect));
        if store.order.len() >= MAX_IDEMPOTENCY_KEYS {
            if let Some(oldest) = store.order.pop_front() {
                store.responses.remove(&oldest);
            }
        }
        store.order.push_back(key.to_owned());
        store.responses.insert(key.to_owned(), response.clone());
        (response, false)
    }

    fn route(&self, head: &Head, body: &[u8], effect: Option<u64>) -> Response {
        let path = path_only(&head.target);
        if path == "/api/health" {
            return Response::text(200, "ok");
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return match n.parse::<usize>() {
                Ok(n) => Response {
                    status: 200,
                    headers: vec![("Content-Type", "application/octet-stream".to_owned())],
                    body: Body::Pattern(n.min(MAX_BYTES_ROUTE)),
                },
                Err(_) => Response::text(400, format!("bad byte count {n:?}")),
            };
        }
        if path.starts_with("/cache/") {
            return self.cache_route(head, path);
        }
        if path == "/echo" {
            let content_type = head
                .header("content-type")
                .unwrap_or("application/octet-stream");
            return Response {
                status: 200,
                headers: vec![("Content-Type", content_type.to_owned())],
                body: Body::Bytes(body.to_vec()),
            };
        }
        let mut json = format!(
            r#"{{"server":{},"method":"{}","path":"{}""#,
            self.index,
            json_escape(&head.method),
            json_escape(&head.target)
        );
        if let Some(effect) = effect {
            json.push_str(&format!(r#","effect":{effect}"#));
        }
        json.push('}');
        Response {
            status: 200,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: Body::Bytes(json.into_bytes()),
        }
    }
}

impl ServerInner {
    /// `/cache/...`: a resource whose caching headers the request's query chooses (see module docs).
    fn cache_route(&self, head: &Head, path: &str) -> Response {
        let query = head.target.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| query_param(query, name);
        let etag = param("etag").map(|e| format!("\"{e}\""));
        let lm = param("lm");
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let named = [
            ("Cache-Control", param("cc")),
            ("Last-Modified", lm.clone()),
            ("Expires", param("expires")),
            ("Vary", param("vary")),
        ];
        for (name, value) in named {
            if let Some(v) = value {
                headers.push((name, v));
            }
        }
        if let Some(e) = &etag {
            headers.push(("ETag", e.clone()));
        }
        let not_modified = matches!((&etag, head.header("if-none-match")), (Some(e), Some(inm)) if inm.split(',').any(|t| t.trim() == e))
            || matches!((&lm, head.header("if-modified-since")), (Some(l), Some(ims)) if l == ims);
        if not_modified {
            return Response {
                status: 304,
                headers,
                body: Body::Bytes(Vec::new()),
            };
        }
        let n = lock(&self.log).hits_by_path.get(path).copied().unwrap_or(0);
        headers.push(("Content-Type", "application/json".to_owned()));
        let json = format!(
            r#"{{"server":{},"path":"{}","n":{n}}}"#,
            self.index,
            json_escape(&head.target)
        );
        Response {
            status: 200,
            headers,
            body: Body::Bytes(json.into_bytes()),
        }
    }
}

/// Re-binds a port this server used before (it may have connections in TIME_WAIT; tokio's
/// `TcpListener::bind` sets `SO_REUSEADDR` on Unix, which allows that). Retries briefly in case
/// the old socket is still being torn down.
async fn bind_again(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut last_error = None;
    for _ in 0..20 {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("bind failed")))
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

/// Serves one backend connection: a loop of requests until the client closes, asks to close, a
/// protocol error occurs, or a fault ends the connection.
async fn serve_backend_connection(inner: Arc<ServerInner>, stream: TcpStream, connection: u64) {
    let _ = stream.set_nodelay(true);
    let mut faults = inner.fault.subscribe();
    let mut io = BufReader::new(stream);
    loop {
        let head = match read_head(&mut io).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Http(status, message)) => {
                let _ = reject(io.get_mut(), status, message).await;
                return;
            }
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
        let body = match read_body(&mut io, &head).await {
            Ok(body) => body,
            Err(ReadError::Io(_)) => return,
            Err(ReadError::Http(status, message)) => {
                let _ = reject(io.get_mut(), status, message).await;
                return;
            }
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
                let (response, replayed) = inner.handle(&head, &body);
                if let Fault::Slow(delay) = fault {
                    tokio::time::sleep(delay).await;
                }
                if matches!(fault, Fault::Truncate | Fault::ResetMidBody) {
                    let reset = fault == Fault::ResetMidBody;
                    let _ = send_broken(io.into_inner(), &extra, reset).await;
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

/// Holds a connection whose request will never be answered: discards whatever the client sends,
/// returns (closing the connection) when the client hangs up or the fault stops being BlackHole.
async fn black_hole(io: &mut BufReader<TcpStream>, faults: &mut watch::Receiver<Fault>) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            changed = faults.changed() => {
                if changed.is_err() || *faults.borrow_and_update() != Fault::BlackHole {
                    return;
                }
            }
            read = io.read(&mut sink) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

/// `Truncate` / `ResetMidBody`: a 200 head announcing [`BROKEN_DECLARED_LEN`] bytes, then only
/// [`BROKEN_SENT_LEN`], then FIN (truncate) or RST (reset). Consumes the connection.
async fn send_broken(
    mut stream: TcpStream,
    extra: &[(&str, String)],
    reset: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BROKEN_DECLARED_LEN}\r\n"
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend((0..BROKEN_SENT_LEN).map(pattern_byte));
    stream.write_all(&out).await?;
    stream.flush().await?;
    if reset {
        // Give the client a moment to take the head, then close with SO_LINGER 0 => RST.
        tokio::time::sleep(Duration::from_millis(10)).await;
        stream.set_zero_linger()?;
        drop(stream);
    } else {
        stream.shutdown().await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Control server
// ---------------------------------------------------------------------------------------------

/// A plain-text HTTP/1.1 control API over a fleet, so any language can drive it with its stdlib
/// HTTP client. Bodies are plain text without a trailing newline. Routes (`{i}` = backend index):
///
/// | route | answer |
/// |---|---|
/// | `GET /health` | `ok` |
/// | `GET /backends` | JSON array of backend URLs |
/// | `POST /backends/{i}/fault` with a [`Fault`] in control syntax as body | `ok` |
/// | `GET /backends/{i}/fault` | current fault in control syntax |
/// | `GET /backends/{i}/hits[?path=/api/health]` | decimal count (`path` may be percent-encoded) |
/// | `POST /backends/{i}/reset-hits` | `ok` |
/// | `POST /backends/{i}/reset-effects` | `ok` |
/// | `GET /backends/{i}/idempotency-keys` | keys, one per line (empty body if none) |
/// | `GET /backends/{i}/unique-effects` | decimal count |
/// | `GET /backends/{i}/connections` | decimal count of accepted TCP connections |
/// | `GET /backends/{i}/uploads` | JSON array of stored uploads (see [`StoredUpload`]) |
/// | `GET /backends/{i}/upload-bytes` | decimal count of body bytes received on the upload route |
/// | `POST /backends/{i}/upload-reset-after` with `<bytes>` or `off` | `ok` |
/// | `POST /backends/{i}/reset-uploads` | `ok` |
///
/// Errors: `400` (bad index, bad fault syntax), `404` (unknown route or index out of range),
/// `405` (wrong method), `500` (the port could not be re-bound), each with a message body.
pub struct ControlServer {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
    conns: Arc<TaskSet>,
}

impl ControlServer {
    async fn start(servers: Vec<Server>) -> io::Result<ControlServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let conns = Arc::new(TaskSet::default());
        let servers: Arc<[Server]> = servers.into();
        let task_conns = Arc::clone(&conns);
        let accept_task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        task_conns.spawn(serve_control_connection(Arc::clone(&servers), stream))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
        Ok(ControlServer {
            addr,
            accept_task,
            conns,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.conns.close_and_abort_all_now();
    }
}

async fn serve_control_connection(servers: Arc<[Server]>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut io = BufReader::new(stream);
    loop {
        let head = match read_head(&mut io).await {
            Ok(Some(head)) => head,
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Http(status, message)) => {
                let _ = reject(io.get_mut(), status, message).await;
                return;
            }
        };
        let body = match read_body(&mut io, &head).await {
            Ok(body) => body,
            Err(ReadError::Io(_)) => return,
            Err(ReadError::Http(status, message)) => {
                let _ = reject(io.get_mut(), status, message).await;
                return;
            }
        };
        let response = control_route(&servers, &head, &body).await;
        let keep_alive = head.keep_alive();
        let head_only = head.method == "HEAD";
        let written = write_response(io.get_mut(), &response, &[], head_only, !keep_alive).await;
        if written.is_err() || !keep_alive {
            return;
        }
    }
}

async fn control_route(servers: &[Server], head: &Head, body: &[u8]) -> Response {
    let (path, query) = match head.target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (head.target.as_str(), ""),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = head.method.as_str();
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST" || method == "PUT";
    let wrong_method = |allowed: &str| {
        Response::text(
            405,
            format!("{method} not allowed on {path}; use {allowed}"),
        )
        .with_header("Allow", allowed.to_owned())
    };

    match segments.as_slice() {
        [] | ["health"] => {
            if get {
                Response::text(200, "ok")
            } else {
                wrong_method("GET")
            }
        }
        ["backends"] => {
            if !get {
                return wrong_method("GET");
            }
            let urls: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.url())).collect();
            Response {
                status: 200,
                headers: vec![("Content-Type", "application/json".to_owned())],
                body: Body::Bytes(format!("[{}]", urls.join(",")).into_bytes()),
            }
        }
        ["backends", index, action] => {
            let Ok(i) = index.parse::<usize>() else {
                return Response::text(400, format!("bad backend index {index:?}"));
            };
            let Some(server) = servers.get(i) else {
                return Response::text(
                    404,
                    format!(
                        "no backend {i}: this fleet has {} (0..{})",
                        servers.len(),
                        servers.len()
                    ),
                );
            };
            let count = |n: u64| Response::text(200, n.to_string());
            match *action {
                "fault" if post => {
                    let text = String::from_utf8_lossy(body);
                    match text.parse::<Fault>() {
                        Ok(fault) => match server.try_set_fault(fault).await {
                            Ok(()) => Response::text(200, "ok"),
                            Err(e) => Response::text(500, format!("could not apply fault: {e}")),
                        },
                        Err(message) => Response::text(400, message),
                    }
                }
                "fault" if get => Response::text(200, server.fault().to_string()),
                "fault" => wrong_method("GET, POST"),
                "hits" if get => match query_param(query, "path") {
                    Some(p) => count(server.hits_for(&p)),
                    None => count(server.hits()),
                },
                "unique-effects" if get => count(server.unique_effects()),
                "connections" if get => count(server.connections()),
                "idempotency-keys" if get => {
                    Response::text(200, server.idempotency_keys().join("\n"))
                }
                "hits" | "unique-effects" | "connections" | "idempotency-keys" => {
                    wrong_method("GET")
                }
                "reset-hits" if post => {
                    server.reset_hits();
                    Response::text(200, "ok")
                }
                "reset-effects" if post => {
                    server.reset_effects();
                    Response::text(200, "ok")
                }
                "reset-hits" | "reset-effects" => wrong_method("POST"),
                "uploads" if get => {
                    let items: Vec<String> = server
                        .uploads()
                        .iter()
                        .map(|u| format!("{{{}}}", u.json_fields()))
                        .collect();
                    Response {
                        status: 200,
                        headers: vec![("Content-Type", "application/json".to_owned())],
                        body: Body::Bytes(format!("[{}]", items.join(",")).into_bytes()),
                    }
                }
                "upload-bytes" if get => count(server.upload_bytes_received()),
                "upload-reset-after" if post => {
                    let text = String::from_utf8_lossy(body);
                    match text.trim() {
                        "off" | "" => {
                            server.set_upload_reset_after(None);
                            Response::text(200, "ok")
                        }
                        n => match n.parse::<u64>() {
                            Ok(n) => {
                                server.set_upload_reset_after(Some(n));
                                Response::text(200, "ok")
                            }
                            Err(_) => Response::text(
                                400,
                                format!("bad byte count {n:?}: expected a number or off"),
                            ),
                        },
                    }
                }
                "reset-uploads" if post => {
                    server.reset_uploads();
                    Response::text(200, "ok")
                }
                "uploads" | "upload-bytes" => wrong_method("GET"),
                "upload-reset-after" | "reset-uploads" => wrong_method("POST"),
                other => Response::text(404, format!("unknown action {other:?}")),
            }
        }
        _ => Response::text(404, format!("unknown control path {path:?}")),
    }
}

/// First value of `name` in an `application/x-www-form-urlencoded` query string, decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+` (as space); malformed escapes are kept literally.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 plumbing
// ---------------------------------------------------------------------------------------------

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    http10: bool,
    /// Names lowercased, values trimmed.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1: persistent unless `Connection: close`; HTTP/1.0: only with `keep-alive`.
    fn keep_alive(&self) -> bool {
        if self.http10 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }
}

enum ReadError {
    /// The connection failed or ended mid-request: just close it.
    Io(io::Error),
    /// The request is malformed: answer with this status and message, then close.
    Http(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Reads one line (ending in `\n`) of at most `limit` bytes into `out` (cleared first).
/// Returns `Ok(false)` on a clean EOF before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    out: &mut Vec<u8>,
    too_long: (u16, &'static str),
) -> Result<bool, ReadError> {
    out.clear();
    let n = (&mut *reader)
        .take(limit as u64)
        .read_until(b'\n', out)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if out.last() != Some(&b'\n') {
        return Err(if n >= limit {
            ReadError::Http(too_long.0, too_long.1)
        } else {
            ReadError::Io(io::ErrorKind::UnexpectedEof.into())
        });
    }
    out.pop();
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(true)
}

/// Reads a request head. `Ok(None)` on a clean EOF between requests.
async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Head>, ReadError> {
    const TOO_LARGE: (u16, &str) = (431, "request head too large");
    let mut used = 0usize;
    let mut request_line: Option<String> = None;
    let mut headers = Vec::new();
    let mut line = Vec::new();
    loop {
        let budget = MAX_HEAD.saturating_sub(used);
        if budget == 0 {
            return Err(ReadError::Http(TOO_LARGE.0, TOO_LARGE.1));
        }
        if !read_line(reader, budget, &mut line, TOO_LARGE).await? {
            return if request_line.is_none() && headers.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        used += line.len() + 2;
        let text = String::from_utf8_lossy(&line);
        if text.is_empty() {
            if request_line.is_none() {
                continue; // tolerate empty lines before the request line (RFC 9112 §2.2)
            }
            break;
        }
        if request_line.is_none() {
            request_line = Some(text.into_owned());
            continue;
        }
        let (name, value) = text
            .split_once(':')
            .ok_or(ReadError::Http(400, "malformed header line"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let request_line = request_line.unwrap_or_default();
    let parts: Vec<&str> = request_line.split_whitespace().collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(ReadError::Http(400, "malformed request line"));
    };
    let http10 = match *version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => {
            return Err(ReadError::Http(505, "only HTTP/1.0 and HTTP/1.1"))
        }
        _ => return Err(ReadError::Http(400, "malformed request line")),
    };
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        headers,
    }))
}

/// Reads the body framed by `Transfer-Encoding: chunked` or `Content-Length` (none: empty).
/// Sends `100 Continue` first if the client asked for it.
async fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> Result<Vec<u8>, ReadError> {
    let chunked = match head.header("transfer-encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => {
            return Err(ReadError::Http(
                501,
                "only Transfer-Encoding: chunked is supported",
            ))
        }
    };
    let length = match (chunked, head.header("content-length")) {
        (true, _) | (false, None) => 0,
        (false, Some(value)) => value
            .parse::<usize>()
            .map_err(|_| ReadError::Http(400, "bad Content-Length"))?,
    };
    if length > MAX_BODY {
        return Err(ReadError::Http(413, "request body too large"));
    }
    if (chunked || length > 0) && head.has_token("expect", "100-continue") {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    if chunked {
        return read_chunked(reader).await;
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    const LINE_LIMIT: usize = 4096;
    const BAD: (u16, &str) = (400, "malformed chunked body");
    let bad = || ReadError::Http(BAD.0, BAD.1);
    let eof = || ReadError::Io(io::ErrorKind::UnexpectedEof.into());
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        if !read_line(reader, LINE_LIMIT, &mut line, BAD).await? {
            return Err(eof());
        }
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        if size == 0 {
            // Trailer section: header lines up to an empty line (ignored).
            for _ in 0..100 {
                if !read_line(reader, LINE_LIMIT, &mut line, BAD).await? {
                    return Err(eof());
                }
                if line.is_empty() {
                    return Ok(body);
                }
            }
            return Err(bad());
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(ReadError::Http(413, "request body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        if !read_line(reader, LINE_LIMIT, &mut line, BAD).await? {
            return Err(eof());
        }
        if !line.is_empty() {
            return Err(bad());
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Bytes(Vec<u8>),
    /// `n` bytes of [`pattern_byte`] content, generated while writing.
    Pattern(usize),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Bytes(bytes) => bytes.len(),
            Body::Pattern(n) => *n,
        }
    }
}

#[derive(Clone, Debug)]
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

impl Response {
    fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: Body::Bytes(text.into().into_bytes()),
        }
    }

    fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Answers a malformed request and closes.
async fn reject(stream: &mut TcpStream, status: u16, message: &str) -> io::Result<()> {
    write_response(stream, &Response::text(status, message), &[], false, true).await?;
    stream.shutdown().await
}

/// Writes a `Content-Length`-framed response (`head_only`: without the body, for HEAD).
async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: &Response,
    extra: &[(&str, String)],
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    const INLINE_BODY: usize = 64 * 1024;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in response
        .headers
        .iter()
        .map(|(n, v)| (*n, v))
        .chain(extra.iter().map(|(n, v)| (*n, v)))
    {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    match &response.body {
        _ if head_only => writer.write_all(&out).await?,
        Body::Bytes(bytes) if bytes.len() <= INLINE_BODY => {
            out.extend_from_slice(bytes); // one write: head and small body in one segment
            writer.write_all(&out).await?;
        }
        Body::Bytes(bytes) => {
            writer.write_all(&out).await?;
            writer.write_all(bytes).await?;
        }
        Body::Pattern(n) => {
            writer.write_all(&out).await?;
            write_pattern(writer, *n).await?;
        }
    }
    writer.flush().await
}

/// Writes `n` bytes of [`pattern_byte`] content in 64 KiB chunks.
async fn write_pattern<W: AsyncWrite + Unpin>(writer: &mut W, n: usize) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    // The pattern has period 251, so any chunk is a slice of this buffer starting at offset % 251.
    let buffer: Vec<u8> = (0..CHUNK + 251).map(pattern_byte).collect();
    let mut offset = 0;
    while offset < n {
        let len = CHUNK.min(n - offset);
        let start = offset % 251;
        writer.write_all(&buffer[start..start + len]).await?;
        offset += len;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        425 => "Too Early",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// The path of a request target, without the query string.
fn path_only(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not make the fleet unusable for the others.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Task tracking
// ---------------------------------------------------------------------------------------------

/// A set of spawned tasks that remove themselves when they end, so they can all be aborted
/// (which drops, hence closes, their sockets).
#[derive(Default)]
struct TaskSet {
    next_id: AtomicU64,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    running: HashMap<u64, JoinHandle<()>>,
    /// Tasks that ended before `spawn` could register their handle.
    ended_early: HashSet<u64>,
    /// Once closed (fleet dropped), `spawn` aborts what it starts.
    closed: bool,
}

/// Removes a task's handle from its set when the task ends or is aborted (its future is dropped).
struct Deregister {
    set: Weak<TaskSet>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Some(set) = self.set.upgrade() {
            let mut tasks = lock(&set.tasks);
            if tasks.running.remove(&self.id).is_none() {
                tasks.ended_early.insert(self.id);
            }
        }
    }
}

impl TaskSet {
    fn spawn<F>(self: &Arc<Self>, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deregister = Deregister {
            set: Arc::downgrade(self),
            id,
        };
        // Spawned without holding the lock: a task may be dropped inline (runtime shutting down),
        // and its `Deregister` takes the lock.
        let handle = tokio::spawn(async move {
            let _deregister = deregister;
            future.await;
        });
        let mut tasks = lock(&self.tasks);
        if tasks.ended_early.remove(&id) {
            return;
        }
        if tasks.closed {
            handle.abort();
            return;
        }
        tasks.running.insert(id, handle);
    }

    fn take_all(&self) -> Vec<JoinHandle<()>> {
        lock(&self.tasks)
            .running
            .drain()
            .map(|(_, handle)| handle)
            .collect()
    }

    /// Aborts every task and waits until they are gone (their sockets closed).
    async fn abort_all_and_wait(&self) {
        let handles = self.take_all();
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
        // Aborted tasks deregistered after the drain: forget their ids.
        lock(&self.tasks).ended_early.clear();
    }

    /// Refuses new tasks, aborts every task and waits until they are gone.
    async fn close_and_abort_all(&self) {
        lock(&self.tasks).closed = true;
        self.abort_all_and_wait().await;
    }

    /// Refuses new tasks and aborts every task, without waiting.
    fn close_and_abort_all_now(&self) {
        lock(&self.tasks).closed = true;
        for handle in self.take_all() {
            handle.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Upload sink: a streaming multipart/form-data route
// ---------------------------------------------------------------------------------------------

/// Largest form field value (non-file part) the upload route keeps.
pub const MAX_UPLOAD_FIELD: usize = 64 * 1024;
/// How many [`StoredUpload`]s each server keeps (the oldest are dropped first).
pub const MAX_STORED_UPLOADS: usize = 10_000;

/// An upload the server accepted (stored): one per applied effect, none for replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUpload {
    /// The request's `Idempotency-Key`, if any.
    pub key: Option<String>,
    /// Request target.
    pub path: String,
    /// Form field name of the (first) file part.
    pub field_name: String,
    /// Its `filename` parameter.
    pub file_name: String,
    /// Its `Content-Type` (empty if none).
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of its content.
    pub sha256: String,
    /// The other (non-file) form fields, in order.
    pub fields: Vec<(String, String)>,
}

impl StoredUpload {
    /// The upload as the JSON object the route answers with (without `server`/`effect`).
    fn json_fields(&self) -> String {
        let fields: Vec<String> = self
            .fields
            .iter()
            .map(|(n, v)| format!(r#""{}":"{}""#, json_escape(n), json_escape(v)))
            .collect();
        format!(
            r#""key":{},"path":"{}","field_name":"{}","file_name":"{}","content_type":"{}","size":{},"sha256":"{}","fields":{{{}}}"#,
            self.key
                .as_ref()
                .map_or("null".to_owned(), |k| format!("\"{}\"", json_escape(k))),
            json_escape(&self.path),
            json_escape(&self.field_name),
            json_escape(&self.file_name),
            json_escape(&self.content_type),
            self.size,
            self.sha256,
            fields.join(",")
        )
    }
}

/// Per-server state of the upload route.
#[derive(Default)]
struct UploadSink {
    /// Body bytes received on the upload route (all requests, finished or not).
    bytes_received: AtomicU64,
    /// Armed by [`Server::set_upload_reset_after`]: the next upload whose body reaches this many
    /// bytes has its connection reset (RST), once.
    reset_after: Mutex<Option<u64>>,
    stored: Mutex<VecDeque<StoredUpload>>,
}

impl Server {
    /// Uploads accepted (stored) by the upload route, oldest first (replayed keys add nothing).
    pub fn uploads(&self) -> Vec<StoredUpload> {
        lock(&self.0.upload.stored).iter().cloned().collect()
    }

    /// Body bytes received on the upload route so far (finished or aborted requests).
    pub fn upload_bytes_received(&self) -> u64 {
        self.0.upload.bytes_received.load(Ordering::SeqCst)
    }

    /// Arms (`Some(n)`) or disarms the upload fault: the next upload request whose body reaches
    /// `n` bytes gets its connection reset (RST) without an answer; then the fault disarms itself.
    pub fn set_upload_reset_after(&self, bytes: Option<u64>) {
        *lock(&self.0.upload.reset_after) = bytes;
    }

    /// Whether the upload fault is still armed.
    pub fn upload_reset_armed(&self) -> bool {
        lock(&self.0.upload.reset_after).is_some()
    }

    /// Forgets stored uploads and the byte count, and disarms the upload fault (the idempotency
    /// store is reset by [`Server::reset_effects`]).
    pub fn reset_uploads(&self) {
        lock(&self.0.upload.stored).clear();
        self.0.upload.bytes_received.store(0, Ordering::SeqCst);
        *lock(&self.0.upload.reset_after) = None;
    }
}

/// `/upload`, `/upload/...` and `/api/videos`: the streaming upload route.
fn is_upload_route(target: &str) -> bool {
    let path = path_only(target);
    path == "/upload" || path.starts_with("/upload/") || path == "/api/videos"
}

/// What the connection does after an upload request.
enum UploadEnd {
    KeepAlive,
    Close,
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        (!value.is_empty() && value.len() <= 70).then(|| value.to_owned())
    })
}

/// A `Content-Disposition` parameter (`name="x"`), unquoted.
fn disposition_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Position of `needle` in `hay` (scans for the first byte, then compares).
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let p = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += p;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[derive(PartialEq, Eq)]
enum PartState {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` (end) or CRLF (a part follows).
    AfterDelimiter,
    Headers,
    Data,
    Done,
}

struct PartInfo {
    name: String,
    file_name: Option<String>,
    content_type: String,
}

/// A push parser of a multipart body: hashes file parts as they stream by, keeps small fields.
/// Memory: one read buffer plus the delimiter, whatever the body size.
struct MultipartSink {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    state: PartState,
    part: Option<PartInfo>,
    hasher: sha2::Sha256,
    part_size: u64,
    value: Vec<u8>,
    fields: Vec<(String, String)>,
    /// (field name, file name, content type, size, sha256) of the first file part.
    file: Option<(String, String, String, u64, String)>,
}

impl MultipartSink {
    fn new(boundary: &str) -> MultipartSink {
        use sha2::Digest;
        MultipartSink {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            // The body starts with `--boundary`: a leading CRLF makes it a normal delimiter.
            buf: b"\r\n".to_vec(),
            state: PartState::Preamble,
            part: None,
            hasher: sha2::Sha256::new(),
            part_size: 0,
            value: Vec::new(),
            fields: Vec::new(),
            file: None,
        }
    }

    fn part_data(&mut self, data: &[u8]) -> Result<(), &'static str> {
        use sha2::Digest;
        let is_file = self.part.as_ref().is_some_and(|p| p.file_name.is_some());
        self.part_size += data.len() as u64;
        if is_file {
            self.hasher.update(data);
        } else {
            if self.value.len() + data.len() > MAX_UPLOAD_FIELD {
                return Err("form field too large");
            }
            self.value.extend_from_slice(data);
        }
        Ok(())
    }

    fn end_part(&mut self) {
        use sha2::Digest;
        let Some(part) = self.part.take() else {
            return;
        };
        match part.file_name {
            Some(file_name) => {
                let hash = std::mem::replace(&mut self.hasher, sha2::Sha256::new()).finalize();
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                if self.file.is_none() {
                    self.file =
                        Some((part.name, file_name, part.content_type, self.part_size, hex));
                }
            }
            None => {
                let value = String::from_utf8_lossy(&std::mem::take(&mut self.value)).into_owned();
                self.fields.push((part.name, value));
            }
        }
        self.part_size = 0;
    }

    fn feed(&mut self, data: &[u8]) -> Result<(), &'static str> {
        const MAX_PART_HEAD: usize = 16 * 1024;
        self.buf.extend_from_slice(data);
        let keep = self.delimiter.len() - 1;
        loop {
            match self.state {
                PartState::Done => {
                    self.buf.clear(); // epilogue: ignored
                    return Ok(());
                }
                PartState::Preamble | PartState::Data => {
                    match find_bytes(&self.buf, &self.delimiter) {
                        Some(pos) => {
                            if self.state == PartState::Data {
                                let data = self.buf[..pos].to_vec();
                                self.part_data(&data)?;
                                self.end_part();
                            }
                            self.buf.drain(..pos + self.delimiter.len());
                            self.state = PartState::AfterDelimiter;
                        }
                        None => {
                            if self.buf.len() > keep {
                                let cut = self.buf.len() - keep;
                                if self.state == PartState::Data {
                                    // Split borrow: hash/keep the bytes, then drop them.
                                    let data: Vec<u8> = self.buf[..cut].to_vec();
                                    self.part_data(&data)?;
                                }
                                self.buf.drain(..cut);
                            }
                            return Ok(());
                        }
                    }
                }
                PartState::AfterDelimiter => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = PartState::Done;
                    } else if self.buf.starts_with(b"\r\n") {
                        self.buf.drain(..2);
                        self.state = PartState::Headers;
                    } else {
                        return Err("malformed multipart delimiter");
                    }
                }
                PartState::Headers => {
                    let Some(end) = find_bytes(&self.buf, b"\r\n\r\n") else {
                        if self.buf.len() > MAX_PART_HEAD {
                            return Err("multipart part headers too large");
                        }
                        return Ok(());
                    };
                    let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    self.buf.drain(..end + 4);
                    let mut disposition = None;
                    let mut content_type = String::new();
                    for line in text.split("\r\n") {
                        let Some((name, value)) = line.split_once(':') else {
                            return Err("malformed multipart part header");
                        };
                        let name = name.trim();
                        if name.eq_ignore_ascii_case("content-disposition") {
                            disposition = Some(value.trim().to_owned());
                        } else if name.eq_ignore_ascii_case("content-type") {
                            content_type = value.trim().to_owned();
                        }
                    }
                    let disposition =
                        disposition.ok_or("multipart part without Content-Disposition")?;
                    let name = disposition_param(&disposition, "name")
                        .ok_or("multipart part without a name")?;
                    self.part = Some(PartInfo {
                        name,
                        file_name: disposition_param(&disposition, "filename"),
                        content_type,
                    });
                    self.state = PartState::Data;
                }
            }
        }
    }
}

/// Serves one request on the upload route, streaming its body (never buffered whole): the file
/// part is hashed (SHA-256) as it arrives, the other fields are kept. Requires `Content-Length`
/// and `multipart/form-data`. Idempotency as for other mutations: a replayed key gets the stored
/// answer and stores nothing. Faults: `Down`/`BlackHole` as usual; `Status`/`RetryAfter` drain the
/// body, then answer the status; `Slow` delays the answer; `Truncate`/`ResetMidBody` store the
/// upload, then break the answer. The upload fault ([`Server::set_upload_reset_after`]) resets the
/// connection mid-body.
async fn serve_upload(
    inner: &Arc<ServerInner>,
    io: &mut BufReader<TcpStream>,
    head: &Head,
    faults: &mut watch::Receiver<Fault>,
    count: u64,
    received_at: Instant,
    connection: u64,
) -> UploadEnd {
    let keep_alive = head.keep_alive();
    let extra = [
        ("X-Backend", inner.index.to_string()),
        ("X-Request-Count", count.to_string()),
    ];
    if !matches!(head.method.as_str(), "POST" | "PUT") {
        let response = Response::text(405, "uploads are POST or PUT")
            .with_header("Allow", "POST, PUT".to_owned());
        let _ = write_response(io.get_mut(), &response, &extra, false, true).await;
        return UploadEnd::Close;
    }
    if head.header("transfer-encoding").is_some() {
        let _ = reject(io.get_mut(), 411, "uploads need a Content-Length").await;
        return UploadEnd::Close;
    }
    let Some(length) = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    else {
        let _ = reject(io.get_mut(), 411, "uploads need a Content-Length").await;
        return UploadEnd::Close;
    };
    let continue_first = length > 0 && head.has_token("expect", "100-continue");
    if continue_first
        && io
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return UploadEnd::Close;
    }
    let fault = faults.borrow_and_update().clone();
    if fault == Fault::Down {
        return UploadEnd::Close;
    }
    if fault == Fault::BlackHole {
        black_hole(io, faults).await;
        return UploadEnd::Close;
    }
    let mut sink = head
        .header("content-type")
        .and_then(multipart_boundary)
        .map(|b| MultipartSink::new(&b));
    let mut error: Option<&'static str> = if sink.is_none() {
        Some("expected multipart/form-data with a boundary")
    } else {
        None
    };
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let record = |received: u64| {
        let request = RecordedRequest {
            method: head.method.clone(),
            path: head.target.clone(),
            headers: head.headers.clone(),
            body: Vec::new(),
            body_len: received as usize,
            received_at,
            connection,
        };
        let mut log = lock(&inner.log);
        if log.requests.len() >= MAX_RECORDED {
            log.requests.pop_front();
        }
        log.requests.push_back(request);
    };
    while received < length {
        let want = (length - received).min(buf.len() as u64) as usize;
        let n = match io.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => {
                record(received);
                return UploadEnd::Close;
            }
            Ok(n) => n,
        };
        received += n as u64;
        inner
            .upload
            .bytes_received
            .fetch_add(n as u64, Ordering::SeqCst);
        let reset = {
            let mut armed = lock(&inner.upload.reset_after);
            match *armed {
                Some(at) if received >= at => {
                    *armed = None;
                    true
                }
                _ => false,
            }
        };
        if reset {
            record(received);
            let _ = io.get_mut().set_zero_linger();
            return UploadEnd::Close; // dropping the socket with SO_LINGER 0 sends RST
        }
        if error.is_none() {
            if let Some(s) = sink.as_mut() {
                if let Err(e) = s.feed(&buf[..n]) {
                    error = Some(e);
                }
            }
        }
    }
    record(received);
    let response = match fault {
        Fault::Status(status) => Response::text(status, format!("error {status}")),
        Fault::RetryAfter { status, secs } => Response::text(status, format!("error {status}"))
            .with_header("Retry-After", secs.to_string()),
        _ => match (error, sink) {
            (Some(e), _) => Response::text(400, e),
            (None, Some(s)) if s.state != PartState::Done => {
                Response::text(400, "multipart body without its closing delimiter")
            }
            (None, Some(s)) => match s.file {
                None => Response::text(400, "no file part (a part with a filename)"),
                Some((field_name, file_name, content_type, size, sha256)) => {
                    let upload = StoredUpload {
                        key: head.header("idempotency-key").map(str::to_owned),
                        path: head.target.clone(),
                        field_name,
                        file_name,
                        content_type,
                        size,
                        sha256,
                        fields: s.fields,
                    };
                    inner.store_upload(upload)
                }
            },
            (None, None) => Response::text(400, "expected multipart/form-data"),
        },
    };
    if let Fault::Slow(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    if matches!(fault, Fault::Truncate | Fault::ResetMidBody) {
        let _ = send_broken_upload(io, &extra, fault == Fault::ResetMidBody).await;
        return UploadEnd::Close;
    }
    match write_response(io.get_mut(), &response, &extra, false, !keep_alive).await {
        Ok(()) if keep_alive => UploadEnd::KeepAlive,
        _ => UploadEnd::Close,
    }
}

/// [`send_broken`] on a borrowed connection (the upload route does not own the stream).
async fn send_broken_upload(
    io: &mut BufReader<TcpStream>,
    extra: &[(&str, String)],
    reset: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BROKEN_DECLARED_LEN}\r\n"
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend((0..BROKEN_SENT_LEN).map(pattern_byte));
    let stream = io.get_mut();
    stream.write_all(&out).await?;
    stream.flush().await?;
    if reset {
        tokio::time::sleep(Duration::from_millis(10)).await;
        stream.set_zero_linger()?;
    } else {
        stream.shutdown().await?;
    }
    Ok(())
}

impl ServerInner {
    /// Applies an upload's effect (idempotently) and returns the answer.
    fn store_upload(&self, upload: StoredUpload) -> Response {
        let key = upload.key.clone();
        let mut store = lock(&self.idempotency);
        if let Some(stored) = key.as_ref().and_then(|k| store.responses.get(k)) {
            return stored
                .clone()
                .with_header("Idempotent-Replayed", "true".to_owned());
        }
        let effect = self.unique_effects.fetch_add(1, Ordering::SeqCst) + 1;
        let n = {
            let mut stored = lock(&self.upload.stored);
            if stored.len() >= MAX_STORED_UPLOADS {
                stored.pop_front();
            }
            stored.push_back(upload.clone());
            stored.len()
        };
        let json = format!(
            r#"{{"server":{},"effect":{effect},"upload":{n},{}}}"#,
            self.index,
            upload.json_fields()
        );
        let response = Response {
            status: 201,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: Body::Bytes(json.into_bytes()),
        };
        if let Some(key) = key {
            if store.order.len() >= MAX_IDEMPOTENCY_KEYS {
                if let Some(oldest) = store.order.pop_front() {
                    store.responses.remove(&oldest);
                }
            }
            store.order.push_back(key.clone());
            store.responses.insert(key, response.clone());
        }
        response
    }
}

#[cfg(test)]
mod upload_sink_tests {
    #[allow(unused_imports)] // bench targets compile this module without running its tests
    use super::*;

    #[test]
    fn parses_fields_and_hashes_the_file_across_any_split() {
        use sha2::Digest;
        let b = "XyZ";
        let content: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8 + b'\r' - 3).collect();
        let mut body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        let want: String = sha2::Sha256::digest(&content)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        for split in [1usize, 2, 3, 7, 64, 4096, body.len()] {
            let mut s = MultipartSink::new(b);
            for chunk in body.chunks(split) {
                s.feed(chunk).unwrap();
            }
            assert!(s.state == PartState::Done, "split {split}");
            assert_eq!(s.fields, vec![("title".to_owned(), "Hello".to_owned())]);
            let (field, name, ct, size, hash) = s.file.unwrap();
            assert_eq!(
                (field.as_str(), name.as_str(), ct.as_str()),
                ("file", "a.bin", "application/octet-stream")
            );
            assert_eq!(
                (size, hash),
                (content.len() as u64, want.clone()),
                "split {split}"
            );
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            multipart_boundary("Multipart/Form-Data; charset=x; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(multipart_boundary("application/json"), None);
        assert_eq!(find_bytes(b"abcabd", b"abd"), Some(3));
        assert_eq!(find_bytes(b"ab", b"abd"), None);
    }
}
