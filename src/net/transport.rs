//! One HTTP attempt against one backend. [`Transport`] is the seam the attempt loop sends through
//! (unit tests script it); [`HttpTransport`] is the real one: reqwest over the crate's rustls
//! configuration ([`crate::tls`]; no OpenSSL, so it cross-compiles to Android and iOS). No policy
//! lives here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING, RANGE};
use reqwest::Url;

use super::decode::{self, DecodeError, Decoder};
use crate::error::ApiError;
use crate::events::Counters;
use crate::http::{flatten_headers, retry_after_of};
use crate::types::HttpMethod;

/// A response as received (any status).
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    /// HTTP status.
    pub(crate) status: u16,
    /// Headers, names lower-cased, repeats joined with ", ".
    pub(crate) headers: HashMap<String, String>,
    /// The whole body.
    pub(crate) body: Vec<u8>,
    /// Parsed `Retry-After`, if present.
    pub(crate) retry_after: Option<Duration>,
    /// How long until the response head arrived (time to first byte; `None`: not measured).
    pub(crate) head_after: Option<Duration>,
    /// Came over a pooled connection (`Some(false)`: a new one; `None`: not known).
    pub(crate) reused: Option<bool>,
}

/// How an attempt failed before a complete response arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptErrorKind {
    /// No connection could be made: nothing reached the server.
    Connect,
    /// No complete response within the attempt timeout.
    Timeout,
    /// The connection broke after the request was (maybe) sent: reset, truncated body, protocol error.
    Broken,
    /// The server's certificate chain matched none of its host's pins (nothing was sent). Final:
    /// never retried, never failed over.
    PinMismatch,
    /// The response body is larger than the attempt's limit ([`Outgoing::max_body`]): the
    /// connection was dropped. Final.
    TooLarge,
}

/// An attempt that produced no complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttemptError {
    /// What kind of failure.
    pub(crate) kind: AttemptErrorKind,
    /// The underlying error, for messages.
    pub(crate) detail: String,
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            AttemptErrorKind::Connect => "connect failed",
            AttemptErrorKind::Timeout => "timed out",
            AttemptErrorKind::Broken => "connection broken",
            AttemptErrorKind::PinMismatch => "TLS refused",
            AttemptErrorKind::TooLarge => "response too large",
        };
        write!(f, "{kind}: {}", self.detail)
    }
}

/// What one attempt sends.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing<'a> {
    /// Method.
    pub(crate) method: HttpMethod,
    /// Absolute URL (backend base + path + query).
    pub(crate) url: Url,
    /// All headers (defaults merged, idempotency key added).
    pub(crate) headers: &'a HeaderMap,
    /// Body.
    pub(crate) body: Option<&'a [u8]>,
    /// Attempt timeout.
    pub(crate) timeout: Duration,
    /// Largest body read (bytes).
    pub(crate) max_body: u64,
    /// A body over `max_body` is cut there (health probes) instead of failing the attempt.
    pub(crate) truncate_body: bool,
}

/// A boxed attempt future (object-safe, so the network layer holds `Arc<dyn Transport>`).
pub(crate) type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<RawResponse, AttemptError>> + Send + 'a>>;

/// Sends one attempt. The attempt loop only ever talks to this trait.
pub(crate) trait Transport: Send + Sync {
    /// Sends `out` and reads the whole response.
    fn send<'a>(&'a self, out: Outgoing<'a>) -> SendFuture<'a>;
}

/// The real transport: one pooled reqwest client shared by all backends.
#[derive(Debug, Clone)]
pub(crate) struct HttpTransport {
    client: reqwest::Client,
    /// Query parameters redacted from error texts.
    sensitive: Vec<String>,
    /// `compression_saved` is counted here.
    counters: Arc<Counters>,
    /// Connections seen, by (local, remote) address: a response over one already seen came over
    /// a reused connection.
    seen: Arc<Mutex<SeenConnections>>,
}

/// Connections remembered at most (a client keeps at most 8 idle per host).
const SEEN_CONNECTIONS: usize = 256;

/// The last [`SEEN_CONNECTIONS`] connections by address pair. A local port is unique among open
/// connections, so a pair seen before is the same connection — unless the OS reused the port for
/// a new one after the old closed, which this bound makes rare, never a wrong "new".
#[derive(Debug, Default)]
struct SeenConnections {
    order: VecDeque<(SocketAddr, SocketAddr)>,
    set: HashSet<(SocketAddr, SocketAddr)>,
}

impl SeenConnections {
    /// Was `pair` seen before? Remembers it either way.
    fn reused(&mut self, pair: (SocketAddr, SocketAddr)) -> bool {
        if self.set.contains(&pair) {
            return true;
        }
        if self.order.len() == SEEN_CONNECTIONS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(pair);
        self.set.insert(pair);
        false
    }
}

impl HttpTransport {
    /// Builds the pooled client over the client's TLS configuration (`None`: rustls could not be
    /// set up, plain http still works).
    pub(crate) fn new(
        connect_timeout: Duration,
        tls: Option<&crate::tls::Tls>,
        sensitive: Vec<String>,
        counters: Arc<Counters>,
    ) -> Result<Self, ApiError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .user_agent(concat!("robust-api/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect_policy());
        match tls {
            Some(tls) => builder = builder.use_preconfigured_tls(tls.http_config()),
            // Only when rustls itself cannot be set up: plain http still works.
            None => log::warn!("robust-api: TLS unavailable; https requests will fail"),
        }
        let client = builder.build().map_err(|e| ApiError::Internal {
            reason: format!("building the HTTP client: {}", error_chain(&e)),
        })?;
        Ok(HttpTransport {
            client,
            sensitive,
            counters,
            seen: Arc::default(),
        })
    }

    /// The pooled reqwest client (uploads stream their own bodies through it).
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Transport for HttpTransport {
    fn send<'a>(&'a self, out: Outgoing<'a>) -> SendFuture<'a> {
        Box::pin(async move {
            let mut headers = out.headers.clone();
            // Compression is the transport's own business unless the app asked for a coding
            // itself (then the body passes through as sent); never on a range request (a range
            // of the compressed representation is not what the app asked for).
            let decoding = !headers.contains_key(ACCEPT_ENCODING) && !headers.contains_key(RANGE);
            if decoding {
                headers.insert(
                    ACCEPT_ENCODING,
                    HeaderValue::from_static(decode::ACCEPT_ENCODING),
                );
            }
            let mut rb = self
                .client
                .request(out.method.as_reqwest(), out.url)
                .headers(headers)
                .timeout(out.timeout);
            if let Some(body) = out.body {
                rb = rb.body(body.to_vec());
            }
            let err = |e| attempt_error(e, &self.sensitive);
            let started = tokio::time::Instant::now();
            let resp = rb.send().await.map_err(err)?;
            let head_after = started.elapsed();
            let reused = resp
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .map(|info| {
                    let pair = (info.local_addr(), info.remote_addr());
                    self.seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .reused(pair)
                });
            let status = resp.status().as_u16();
            let retry_after = retry_after_of(resp.headers());
            let mut headers = flatten_headers(resp.headers());
            let decoder = match headers.get("content-encoding") {
                Some(coding) if decoding => {
                    Decoder::for_coding(coding, out.max_body, out.truncate_body)
                }
                _ => None,
            };
            let body = match decoder {
                None => read_body(resp, out.max_body, out.truncate_body, &self.sensitive).await?,
                Some(decoder) => {
                    // The app sees (and the cache stores) the decoded representation.
                    headers.remove("content-encoding");
                    headers.remove("content-length");
                    let (body, wire) =
                        read_decoded(resp, decoder, out.max_body, &self.sensitive).await?;
                    let saved = (body.len() as u64).saturating_sub(wire);
                    self.counters
                        .compression_saved
                        .fetch_add(saved, std::sync::atomic::Ordering::Relaxed);
                    body
                }
            };
            Ok(RawResponse {
                status,
                headers,
                body,
                retry_after,
                head_after: Some(head_after),
                reused,
            })
        })
    }
}

fn too_large(limit: u64) -> AttemptError {
    AttemptError {
        kind: AttemptErrorKind::TooLarge,
        detail: format!("the body is larger than {limit} bytes"),
    }
}

/// Reads a response body of at most `limit` bytes into one buffer (no second copy): a
/// `Content-Length` over the limit is refused before anything is read, a longer stream as soon as
/// it passes the limit (the connection is dropped). `truncate`: keep the first `limit` bytes and
/// stop reading instead.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: u64,
    truncate: bool,
    sensitive: &[String],
) -> Result<Vec<u8>, AttemptError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit) && !truncate {
        return Err(too_large(limit));
    }
    // Reserve what was announced (within the limit); otherwise grow as chunks come.
    let reserve = announced.unwrap_or(0).min(limit).min(usize::MAX as u64) as usize;
    let mut body = Vec::with_capacity(reserve);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| attempt_error(e, sensitive))?
    {
        let room = limit.saturating_sub(body.len() as u64);
        if chunk.len() as u64 > room {
            if !truncate {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk[..room as usize]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a compressed body through `decoder`: the limit applies to the decoded bytes (and a
/// `Content-Length` of the compressed body over it is refused up front, as for any body). Returns
/// the decoded body and the compressed byte count.
async fn read_decoded(
    mut resp: reqwest::Response,
    mut decoder: Decoder,
    limit: u64,
    sensitive: &[String],
) -> Result<(Vec<u8>, u64), AttemptError> {
    if resp.content_length().is_some_and(|n| n > limit) && !decoder.truncating() {
        return Err(too_large(limit));
    }
    let failed = |e: DecodeError| match e {
        DecodeError::TooLarge => too_large(limit),
        DecodeError::Corrupt(detail) => AttemptError {
            kind: AttemptErrorKind::Broken,
            detail: format!("the compressed body is corrupt: {detail}"),
        },
    };
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| attempt_error(e, sensitive))?
    {
        if !decoder.feed(&chunk).map_err(failed)? {
            return Ok(decoder.into_truncated());
        }
    }
    decoder.finish().map_err(failed)
}

/// Most redirects followed within one attempt.
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Requests stay where the app sent them: a redirect is followed only to the same origin (scheme,
/// host, port — so never https→http), at most [`MAX_REDIRECTS`] times; any other 3xx is returned
/// to the caller unfollowed, its status and `Location` intact.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if !same_origin || attempt.previous().len() > MAX_REDIRECTS {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// An error with its causes: reqwest's own text hides them ("builder error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    text
}

/// Classifies a reqwest error (connect / timeout / broken / pin mismatch). Also used by uploads.
/// The text never shows the URL (its query may carry secrets, its userinfo credentials), and
/// the values of `sensitive` query parameters are redacted from whatever else it quotes.
pub(crate) fn attempt_error(e: reqwest::Error, sensitive: &[String]) -> AttemptError {
    let e = e.without_url();
    if let Some(host) = crate::tls::pin_mismatch_in(&e) {
        return AttemptError {
            kind: AttemptErrorKind::PinMismatch,
            detail: host,
        };
    }
    let kind = if e.is_connect() {
        AttemptErrorKind::Connect
    } else if e.is_timeout() {
        AttemptErrorKind::Timeout
    } else {
        AttemptErrorKind::Broken
    };
    let detail = crate::http::redact_query_values(&error_chain(&e), sensitive);
    AttemptError { kind, detail }
}
