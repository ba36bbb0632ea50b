//! The fleet's control API ([`ControlServer`]): plain-text HTTP/1.1, for the binding suites.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::fault::Fault;
use crate::http::{next_body, next_head, query_param, write_response, Body, Head, Response};
use crate::proxy::HttpProxy;
use crate::server::Server;
use crate::tasks::TaskSet;

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
/// | `GET /backends/{i}/uploads` | JSON array of stored uploads (see [`StoredUpload`](crate::StoredUpload)) |
/// | `GET /backends/{i}/upload-bytes` | decimal count of body bytes received on the upload route |
/// | `POST /backends/{i}/upload-reset-after` with `<bytes>` or `off` | `ok` |
/// | `POST /backends/{i}/reset-uploads` | `ok` |
/// | `POST /auth/issue` | a new token pair, as a login: `<access> <refresh>` |
/// | `POST /auth/expire` | `ok`: the access token stops working |
/// | `POST /auth/refresh-fails` with `on` or `off` | `ok` |
/// | `GET /auth/refreshes`, `/auth/reused`, `/auth/rejected` | decimal count (see [`TokenService`](crate::TokenService)) |
/// | `POST /backends/{i}/health-body` with a JSON body (empty: back to `ok`) | `ok` |
/// | `POST /proxy/cut-after` with `<bytes>` (with an [`HttpProxy`]: cut the connection carrying the body bytes that many further on, once) | `ok` |
/// | `GET /proxy/cuts`, `/proxy/body-bytes`, `/proxy/wire-bytes` | decimal count |
/// | `GET /proxy/requests` | `METHOD target` of every request relayed, one per line |
///
/// Errors: `400` (bad index, bad fault syntax), `404` (unknown route or index out of range),
/// `405` (wrong method), `500` (the port could not be re-bound), each with a message body.
pub struct ControlServer {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
    conns: Arc<TaskSet>,
}

impl ControlServer {
    pub(crate) async fn start(
        servers: Vec<Server>,
        proxy: Option<Arc<HttpProxy>>,
    ) -> io::Result<ControlServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let conns = Arc::new(TaskSet::default());
        let servers: Arc<[Server]> = servers.into();
        let task_conns = Arc::clone(&conns);
        let accept_task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => task_conns.spawn(serve_control_connection(
                        Arc::clone(&servers),
                        proxy.clone(),
                        stream,
                    )),
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

async fn serve_control_connection(
    servers: Arc<[Server]>,
    proxy: Option<Arc<HttpProxy>>,
    stream: TcpStream,
) {
    let _ = stream.set_nodelay(true);
    let mut io = BufReader::new(stream);
    loop {
        let Some(head) = next_head(&mut io).await else {
            return;
        };
        let Some(body) = next_body(&mut io, &head).await else {
            return;
        };
        let response = match &proxy {
            Some(p) if head.target.starts_with("/proxy/") => proxy_route(p, &head, &body),
            _ => control_route(&servers, &head, &body).await,
        };
        let keep_alive = head.keep_alive();
        let head_only = head.method == "HEAD";
        let written = write_response(io.get_mut(), &response, &[], head_only, !keep_alive).await;
        if written.is_err() || !keep_alive {
            return;
        }
    }
}

/// `/proxy/...`: the [`HttpProxy`] in front of an outside server (e.g. the official tus server).
fn proxy_route(proxy: &HttpProxy, head: &Head, body: &[u8]) -> Response {
    let post = head.method == "POST" || head.method == "PUT";
    match (head.target.as_str(), post) {
        ("/proxy/cut-after", true) => match String::from_utf8_lossy(body).trim().parse::<u64>() {
            Ok(n) => {
                proxy.cut_after_body_bytes(n);
                Response::text(200, "ok")
            }
            Err(_) => Response::text(400, "expected a byte count"),
        },
        ("/proxy/cuts", false) => Response::text(200, proxy.cuts().to_string()),
        ("/proxy/body-bytes", false) => Response::text(200, proxy.body_bytes().to_string()),
        ("/proxy/wire-bytes", false) => Response::text(200, proxy.bytes_from_clients().to_string()),
        ("/proxy/requests", false) => Response::text(200, proxy.requests().join("\n")),
        (other, _) => Response::text(404, format!("no proxy route {other} for {}", head.method)),
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
        ["auth", action] => {
            let Some(tokens) = servers.first().map(|s| &s.0.tokens) else {
                return Response::text(404, "no backends");
            };
            match (*action, post, get) {
                ("issue", true, _) => {
                    let (access, refresh) = tokens.issue();
                    Response::text(200, format!("{access} {refresh}"))
                }
                ("expire", true, _) => {
                    tokens.expire();
                    Response::text(200, "ok")
                }
                ("refresh-fails", true, _) => match String::from_utf8_lossy(body).trim() {
                    "on" => {
                        tokens.set_refresh_failing(true);
                        Response::text(200, "ok")
                    }
                    "off" => {
                        tokens.set_refresh_failing(false);
                        Response::text(200, "ok")
                    }
                    other => Response::text(400, format!("expected on or off, got {other:?}")),
                },
                ("refreshes", _, true) => Response::text(200, tokens.refreshes().to_string()),
                ("reused", _, true) => Response::text(200, tokens.reused().to_string()),
                ("rejected", _, true) => Response::text(200, tokens.rejected().to_string()),
                ("issue" | "expire" | "refresh-fails", ..) => wrong_method("POST"),
                ("refreshes" | "reused" | "rejected", ..) => wrong_method("GET"),
                _ => Response::text(404, format!("no route {path}")),
            }
        }
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
                "health-body" if post => {
                    let text = String::from_utf8_lossy(body);
                    let text = text.trim();
                    server.set_health_body((!text.is_empty()).then_some(text));
                    Response::text(200, "ok")
                }
                "reset-uploads" if post => {
                    server.reset_uploads();
                    Response::text(200, "ok")
                }
                "uploads" | "upload-bytes" => wrong_method("GET"),
                "upload-reset-after" | "reset-uploads" | "health-body" => wrong_method("POST"),
                other => Response::text(404, format!("unknown action {other:?}")),
            }
        }
        _ => Response::text(404, format!("unknown control path {path:?}")),
    }
}
