//! [`HttpProxy`]: an HTTP/1.1-aware relay in front of any server (e.g. the official tus server in
//! `tests/tus.rs`), for faults a server cannot be asked to make:
//! - it counts every byte clients send ([`HttpProxy::bytes_from_clients`]: what went on the wire);
//! - [`HttpProxy::cut_after_body_bytes`]: once that many more request-body bytes have passed, the
//!   connection carrying them is reset (RST) in both directions — a network cut mid-`PATCH`;
//! - [`HttpProxy::answer_next`]: the next request with that method is not forwarded; its body is
//!   read and dropped and the client gets the canned answer (a `409`, a lying `Upload-Offset`, …);
//! - [`HttpProxy::set_down`]: new connections are accepted and closed at once, open ones cut.
//!
//! Requests are framed by `Content-Length` (no chunked request bodies); responses are relayed as
//! they come. One upstream connection per client connection.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use crate::lock;

/// A canned answer for [`HttpProxy::answer_next`].
#[derive(Debug, Clone)]
pub struct Canned {
    /// Only requests with this method (`PATCH`, `HEAD`, …).
    pub method: String,
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length: 0` is added).
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    from_clients: AtomicU64,
    body_bytes: AtomicU64,
    /// Reset the connection when `body_bytes` reaches this (u64::MAX: never).
    cut_at: AtomicU64,
    cuts: AtomicU64,
    down: AtomicBool,
    canned: Mutex<VecDeque<Canned>>,
    /// Bumped by `set_down(true)`: open connections notice and reset.
    epoch: AtomicU64,
    requests: Mutex<Vec<String>>,
}

/// An HTTP relay on `127.0.0.1`; stops when dropped.
pub struct HttpProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl HttpProxy {
    /// Relays to `upstream`. Must be called inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> io::Result<HttpProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            cut_at: AtomicU64::new(u64::MAX),
            ..State::default()
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if s.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = relay(s, client, upstream).await;
                });
            }
        });
        Ok(HttpProxy { addr, state, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every byte clients sent through the proxy (heads and bodies).
    pub fn bytes_from_clients(&self) -> u64 {
        self.state.from_clients.load(Ordering::SeqCst)
    }

    /// Request-body bytes forwarded so far.
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::SeqCst)
    }

    /// After `n` more request-body bytes, cuts the connection carrying them (once).
    pub fn cut_after_body_bytes(&self, n: u64) {
        let now = self.state.body_bytes.load(Ordering::SeqCst);
        self.state.cut_at.store(now + n, Ordering::SeqCst);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Answers the next request with `canned.method` with `canned` instead of forwarding it.
    /// Queued: several calls answer several requests, in order.
    pub fn answer_next(&self, canned: Canned) {
        lock(&self.state.canned).push_back(canned);
    }

    /// Down: connections are refused (accepted and closed); open ones are cut.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            self.state.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `METHOD target` of every request seen, in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (up to `\r\n\r\n`) into `buf` (which may already hold bytes).
async fn read_head(
    client: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
    state: &State,
) -> io::Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("head too large"));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        state.from_clients.fetch_add(n as u64, Ordering::SeqCst);
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn relay(state: Arc<State>, client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let epoch = state.epoch.load(Ordering::SeqCst);
    let client_std = client.into_std()?;
    let client_clone = client_std.try_clone()?;
    let client = TcpStream::from_std(client_std)?;
    let server_std = server.into_std()?;
    let server_clone = server_std.try_clone()?;
    let server = TcpStream::from_std(server_std)?;
    let (mut from_client, to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let to_client: Arc<AsyncMutex<OwnedWriteHalf>> = Arc::new(AsyncMutex::new(to_client));
    let back = to_client.clone();
    let down_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if back.lock().await.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = back.lock().await.shutdown().await;
    });
    let kill = |state: &State| {
        state.cuts.fetch_add(1, Ordering::SeqCst);
        let _ = client_clone.shutdown(std::net::Shutdown::Both);
        let _ = server_clone.shutdown(std::net::Shutdown::Both);
    };
    let mut buf: Vec<u8> = Vec::new();
    let result = async {
        loop {
            let Some(head_len) = read_head(&mut from_client, &mut buf, &state).await? else {
                return Ok(());
            };
            if state.epoch.load(Ordering::SeqCst) != epoch {
                kill(&state);
                return Ok(());
            }
            let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
            let first = head.lines().next().unwrap_or("").to_string();
            let method = first.split(' ').next().unwrap_or("").to_string();
            lock(&state.requests).push(first.split(' ').take(2).collect::<Vec<_>>().join(" "));
            let length: u64 = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let canned = {
                let mut q = lock(&state.canned);
                let i = q
                    .iter()
                    .position(|c| c.method.eq_ignore_ascii_case(&method));
                i.and_then(|i| q.remove(i))
            };
            let rest = buf.split_off(head_len);
            let head_bytes = std::mem::take(&mut buf);
            let mut body_left = length;
            let mut pending = rest;
            if canned.is_none() {
                to_server.write_all(&head_bytes).await?;
            }
            // The body: what is already buffered, then from the socket.
            loop {
                let take = (pending.len() as u64).min(body_left) as usize;
                if take > 0 {
                    let part: Vec<u8> = pending.drain(..take).collect();
                    body_left -= take as u64;
                    if canned.is_none() {
                        let before = state.body_bytes.fetch_add(take as u64, Ordering::SeqCst);
                        let cut_at = state.cut_at.load(Ordering::SeqCst);
                        if before + take as u64 >= cut_at {
                            let keep = cut_at.saturating_sub(before) as usize;
                            to_server.write_all(&part[..keep.min(part.len())]).await?;
                            let _ = to_server.flush().await;
                            state.cut_at.store(u64::MAX, Ordering::SeqCst);
                            kill(&state);
                            return Ok(());
                        }
                        to_server.write_all(&part).await?;
                    }
                }
                if body_left == 0 {
                    break;
                }
                let mut chunk = vec![0u8; 64 * 1024];
                let n = from_client.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                state.from_clients.fetch_add(n as u64, Ordering::SeqCst);
                if state.epoch.load(Ordering::SeqCst) != epoch {
                    kill(&state);
                    return Ok(());
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            buf = pending; // the start of the next request, if pipelined
            if let Some(c) = canned {
                let mut answer = format!("HTTP/1.1 {} Canned\r\n", c.status);
                for (k, v) in &c.headers {
                    answer.push_str(&format!("{k}: {v}\r\n"));
                }
                answer.push_str("Content-Length: 0\r\n\r\n");
                to_client.lock().await.write_all(answer.as_bytes()).await?;
            }
        }
    }
    .await;
    let _ = to_server.shutdown().await;
    let _ = down_task.await;
    result
}
