//! The WebSocket servers' control API ([`WsControl`]): plain-text HTTP/1.1, one request per
//! connection, for the binding suites.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Mode, WsServer};
use crate::http::{next_body, next_head, respond_and_close, Head};

/// A plain-text HTTP control API over the WebSocket servers, for the binding suites
/// (`{i}` = server index; bodies are plain text):
///
/// | route | answer |
/// |---|---|
/// | `GET /ws` | JSON array of base URLs |
/// | `POST /ws/{i}/mode` with `echo`, `deaf` or `reject <status>` | `ok` |
/// | `POST /ws/{i}/kill`, `/start`, `/restart` | `ok` |
/// | `POST /ws/{i}/close` with `<code> [reason]` | `ok` (close frame to every connection) |
/// | `POST /ws/{i}/push` with text | `ok` (sent to every connection) |
/// | `POST /ws/{i}/reset` | `ok` (counters and logs) |
/// | `GET /ws/{i}/upgrades` | decimal count of upgrade requests |
/// | `GET /ws/{i}/open` | decimal count of open WebSocket connections |
/// | `GET /ws/{i}/received` | text messages received, one per line |
pub struct WsControl {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl WsControl {
    pub(crate) async fn start(servers: Vec<WsServer>) -> io::Result<WsControl> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let servers: Arc<[WsServer]> = servers.into();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(control_connection(servers.clone(), stream));
                }
            }
        });
        Ok(WsControl { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for WsControl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn control_connection(servers: Arc<[WsServer]>, stream: TcpStream) {
    let mut io = BufReader::new(stream);
    let Some(head) = next_head(&mut io).await else {
        return;
    };
    let Some(body) = next_body(&mut io, &head).await else {
        return;
    };
    let body = String::from_utf8_lossy(&body).trim().to_string();
    let (status, answer) = control_route(&servers, &head, &body).await;
    let _ = respond_and_close(io.get_mut(), status, &answer).await;
}

async fn control_route(servers: &[WsServer], head: &Head, body: &str) -> (u16, String) {
    let segments: Vec<&str> = head
        .target
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let post = head.method == "POST" || head.method == "PUT";
    let ok = || (200, "ok".to_string());
    match segments.as_slice() {
        ["ws"] => {
            let urls: Vec<String> = servers.iter().map(|s| format!("\"{}\"", s.url())).collect();
            (200, format!("[{}]", urls.join(",")))
        }
        ["ws", i, action] => {
            let Some(server) = i.parse::<usize>().ok().and_then(|i| servers.get(i)) else {
                return (404, format!("no server {i:?}"));
            };
            match (*action, post) {
                ("mode", true) => match body.parse::<Mode>() {
                    Ok(m) => {
                        server.set_mode(m);
                        ok()
                    }
                    Err(e) => (400, e),
                },
                ("kill", true) => {
                    server.kill().await;
                    ok()
                }
                ("start", true) => match server.start().await {
                    Ok(()) => ok(),
                    Err(e) => (500, format!("could not listen again: {e}")),
                },
                ("restart", true) => match server.restart().await {
                    Ok(()) => ok(),
                    Err(e) => (500, format!("could not listen again: {e}")),
                },
                ("close", true) => {
                    let (code, reason) = body.split_once(' ').unwrap_or((body, ""));
                    match code.parse::<u16>() {
                        Ok(code) => {
                            server.close_all(code, reason);
                            ok()
                        }
                        Err(_) => (400, format!("bad close code {code:?}")),
                    }
                }
                ("push", true) => {
                    server.push_text(body);
                    ok()
                }
                ("reset", true) => {
                    server.reset();
                    ok()
                }
                ("upgrades", false) => (200, server.upgrades().to_string()),
                ("open", false) => (200, server.open_connections().to_string()),
                ("received", false) => (200, server.received_texts().join("\n")),
                _ => (
                    404,
                    format!("unknown route {} {}", head.method, head.target),
                ),
            }
        }
        _ => (
            404,
            format!("unknown route {} {}", head.method, head.target),
        ),
    }
}
