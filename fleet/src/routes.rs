//! The backends' normal routes (when no fault is active): `/api/health`, `/bytes/{n}`, `/echo`,
//! `/cache/...`, `/gzip/{n}`, `/gzip-bomb/{mb}`, `/redirect`, `/hops/{n}` and the JSON default
//! (see the crate docs). The upload route is in `upload`.

use crate::http::{json_escape, path_only, pattern_byte, query_param, Body, Head, Response};
use crate::lock;
use crate::server::ServerInner;

/// Largest `n` served by `/bytes/{n}` (larger values are capped).
pub const MAX_BYTES_ROUTE: usize = 64 * 1024 * 1024;

/// The body `/bytes/{n}` returns.
pub fn expected_bytes(n: usize) -> Vec<u8> {
    (0..n.min(MAX_BYTES_ROUTE)).map(pattern_byte).collect()
}

impl ServerInner {
    pub(crate) fn route(&self, head: &Head, body: &[u8], effect: Option<u64>) -> Response {
        let path = path_only(&head.target);
        if path == "/api/health" {
            return match lock(&self.health_body).clone() {
                Some(json) => Response {
                    status: 200,
                    headers: vec![("Content-Type", "application/json".to_owned())],
                    body: Body::Bytes(json.into_bytes()),
                },
                None => Response::text(200, "ok"),
            };
        }
        if path.starts_with("/tus/") {
            return lock(&self.tus).route(head, body);
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
        // `/huge/length/{n}` and `/huge/chunked/{n}`: `n` bytes (uncapped), generated while
        // written (never buffered), with a `Content-Length` or chunked.
        if let Some(rest) = path.strip_prefix("/huge/") {
            let (framing, n) = rest.split_once('/').unwrap_or((rest, ""));
            return match (framing, n.parse::<usize>()) {
                ("length", Ok(n)) => Response {
                    status: 200,
                    headers: vec![("Content-Type", "application/octet-stream".to_owned())],
                    body: Body::Pattern(n),
                },
                ("chunked", Ok(n)) => Response {
                    status: 200,
                    headers: vec![("Content-Type", "application/octet-stream".to_owned())],
                    body: Body::ChunkedPattern(n),
                },
                _ => Response::text(400, format!("bad huge route {rest:?}")),
            };
        }
        if path.starts_with("/cache/") {
            return self.cache_route(head, path);
        }
        if let Some(n) = path.strip_prefix("/gzip/") {
            let Ok(n) = n.parse::<usize>() else {
                return Response::text(400, format!("bad byte count {n:?}"));
            };
            let body = expected_bytes(n);
            let accepts = head.header("accept-encoding").unwrap_or("").to_owned();
            let wants_gzip = accepts.split(',').any(|c| c.trim() == "gzip");
            let mut headers = vec![
                ("Content-Type", "application/octet-stream".to_owned()),
                ("Vary", "Accept-Encoding".to_owned()),
                ("X-Accept-Encoding", accepts),
            ];
            if !wants_gzip {
                return Response {
                    status: 200,
                    headers,
                    body: Body::Bytes(body),
                };
            }
            headers.push(("Content-Encoding", "gzip".to_owned()));
            return Response {
                status: 200,
                headers,
                body: Body::Bytes(crate::gzip::gzip(&body)),
            };
        }
        if let Some(mb) = path.strip_prefix("/gzip-bomb/") {
            return match mb.parse::<usize>() {
                Ok(mb) => Response {
                    status: 200,
                    headers: vec![
                        ("Content-Type", "application/octet-stream".to_owned()),
                        ("Content-Encoding", "gzip".to_owned()),
                    ],
                    body: Body::Bytes(crate::gzip::bomb(mb.min(64) << 20)),
                },
                Err(_) => Response::text(400, format!("bad size {mb:?}")),
            };
        }
        if path == "/redirect" {
            let query = head.target.split_once('?').map_or("", |(_, q)| q);
            let status = query_param(query, "status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(307);
            let to = query_param(query, "to").unwrap_or_default();
            return Response::text(status, format!("see {to}"))
                .with_header("Location", to)
                .with_header("Cache-Control", "max-age=600".to_owned());
        }
        if let Some(n) = path.strip_prefix("/hops/") {
            if let Some(left) = n.parse::<u32>().ok().filter(|n| *n > 0) {
                return Response::text(307, "one more hop")
                    .with_header("Location", format!("/hops/{}", left - 1));
            }
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
        let etag_param = match param("head_etag") {
            Some(e) if head.method == "HEAD" => Some(e),
            _ => param("etag"),
        };
        let etag = etag_param.map(|e| format!("\"{e}\""));
        let lm = param("lm");
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let named = [
            ("Cache-Control", param("cc")),
            ("Last-Modified", lm.clone()),
            ("Expires", param("expires")),
            ("Vary", param("vary")),
            ("Set-Cookie", param("set_cookie")),
            ("Date", param("date")),
            ("Age", param("age")),
            ("Age", param("age2")),
            ("Connection", param("conn")),
            ("X-Hop", param("hop")),
            ("Keep-Alive", param("keep_alive")),
            ("Location", param("location")),
            ("Content-Location", param("content_location")),
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
        // The cookie a response sets is not echoed in its body (tests look for it in files).
        let echoed: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("set_cookie="))
            .collect();
        let target = if echoed.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", echoed.join("&"))
        };
        let json = format!(
            r#"{{"server":{},"path":"{}","n":{n}}}"#,
            self.index,
            json_escape(&target)
        );
        let status = param("status")
            .and_then(|s| s.parse().ok())
            .filter(|s| (200..600).contains(s))
            .unwrap_or(200);
        Response {
            status,
            headers,
            body: Body::Bytes(json.into_bytes()),
        }
    }
}
