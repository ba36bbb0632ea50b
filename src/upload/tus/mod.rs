//! A tus 1.0 client (<https://tus.io/protocols/resumable-upload>): core (`HEAD`, `PATCH` with
//! `Upload-Offset`), `creation` (with `Upload-Metadata`), `creation-with-upload`, `termination` and
//! `expiration`. The protocol's decisions are [`policy`] (pure); this module is the loop that sends.
//!
//! Every request goes through the network's one attempt loop (`crate::net::attempt`): discovery
//! (`OPTIONS`) and creation (`POST`) may go to any backend (failover, breakers); everything on an
//! upload URL goes only to the backend that created it ([`Plan::only`]).
//!
//! A file is sent in `PATCH`es of at most `upload.chunk_bytes`, each streamed from disk in 128 KiB
//! reads (memory stays flat). One `PATCH` = one call of the attempt loop: a broken connection, a
//! `5xx` or a `409` makes the next attempt (after the loop's backoff) ask the server's offset with
//! `HEAD` first and resend from there, so the bytes lost to one failure are at most one chunk.
//! Progress is the server-confirmed offset only, so it never goes backwards across resumes.
//!
//! What the session persists goes through a [`Journal`] (the durable upload record): the upload
//! URL when created, the highest byte handed to the transport before each `PATCH` (so a server
//! claiming more can be caught, even after a kill), and each confirmed offset.

pub(crate) mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, Url};
use tokio::io::AsyncSeekExt;

use super::body::{self, Layout, Meter};
use super::UploadSettings;
use crate::cancel::CancelToken;
use crate::error::ApiError;
use crate::http::{flatten_headers, join_url};
use crate::net::attempt::{self, Exchange, Health, Plan, Step, Stop, Tried};
use crate::net::transport::{self, AttemptErrorKind};
use crate::net::{Backend, Network};
use crate::types::HttpMethod;
use policy::{Answer, Capabilities, ChecksumAlgorithm, ChecksumVerdict, TUS_VERSION};

/// Largest answer body kept (tus answers have none; a final error's body is shown to the app).
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Where a session persists its progress (the durable upload record).
pub(crate) trait Journal: Send + Sync {
    /// The upload was created: its URL on `backend` (an index into the client's backends).
    fn created(
        &self,
        backend: usize,
        url: &str,
        offset: u64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), ApiError>;
    /// Bytes up to `sent_high` are about to be handed to the transport.
    fn sending(&self, sent_high: u64) -> Result<(), ApiError>;
    /// The server confirmed `offset` (its `Upload-Expires`, if it sent one).
    fn confirmed(&self, offset: u64, expires_at_ms: Option<i64>) -> Result<(), ApiError>;
    /// The server lost the upload: the URL is forgotten before a new creation.
    fn restarted(&self) -> Result<(), ApiError>;
}

/// Where an upload stands when a session starts (from its record).
#[derive(Debug, Clone, Default)]
pub(crate) struct Resume {
    /// The backend that created it and the upload URL.
    pub target: Option<(usize, Url)>,
    /// The highest byte ever handed to the transport for this URL.
    pub sent_high: u64,
    /// `Upload-Expires`, Unix ms.
    pub expires_at_ms: Option<i64>,
    /// Restarts so far (404/410/expired).
    pub restarts: u32,
}

/// What is uploaded.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The creation endpoint, relative to a backend's base URL.
    pub endpoint: String,
    pub file_path: String,
    pub size: u64,
    /// `(size, mtime ms)` the file must still have before each `PATCH`.
    pub stat: (u64, i64),
    /// `Upload-Metadata` (already encoded).
    pub metadata: String,
    /// The app's own headers.
    pub headers: HashMap<String, String>,
    /// Nothing goes out while the network is metered.
    pub unmetered_only: bool,
}

/// A finished session.
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub backend: usize,
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub attempts: u32,
}

/// One answer (or a failure to get one).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: Option<u16>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub detail: String,
    pub timed_out: bool,
    /// Nothing reached the server (a connect failure).
    pub connect_failed: bool,
}

fn header_value(v: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(v)
        .map_err(|_| ApiError::invalid_request("header value not valid in HTTP"))
}

/// The digest of `len` bytes of the file at `path` from `offset` (read in 128 KiB pieces).
fn chunk_digest(
    path: &str,
    offset: u64,
    len: u64,
    algorithm: ChecksumAlgorithm,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut ctx = ring::digest::Context::new(algorithm.digest());
    let mut buf = vec![0u8; 128 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when the upload began",
            ));
        }
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(ctx.finish().as_ref().to_vec())
}

/// `(size, mtime ms)` of a file on disk.
pub(crate) fn stat_of(meta: &std::fs::Metadata) -> (u64, i64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64);
    (meta.len(), mtime)
}

/// What one attempt does.
#[derive(Debug, Clone)]
enum Kind {
    /// Discovery: `OPTIONS endpoint`.
    Options,
    /// `POST endpoint` (with the first chunk if `creation-with-upload`).
    Create { with_bytes: u64 },
    /// Send the next chunk (after a `HEAD` when the offset is not known).
    Chunk,
    /// `DELETE url`.
    Delete,
}

/// The mutable part of a chunk exchange.
#[derive(Debug)]
struct ChunkState {
    /// The server's offset is unknown (start, or after a failed `PATCH`): `HEAD` first.
    needs_head: bool,
    offset: u64,
    sent_high: u64,
    /// Each `PATCH` carries `Upload-Checksum` with this (the server offered it).
    checksum: Option<ChecksumAlgorithm>,
    /// The offset of the chunk the last `460 Checksum Mismatch` was for.
    mismatch_at: Option<u64>,
}

/// Why a chunk attempt ended the call (beyond an HTTP answer).
#[derive(Debug)]
enum ChunkEnd {
    Reply(Reply),
    /// The server no longer has the upload (404/410/403 on HEAD).
    Gone(Reply),
}

/// One exchange of the session (see [`Kind`]).
struct TusCall<'a> {
    session: &'a Session<'a>,
    kind: Kind,
    /// For upload-URL requests: the URL.
    url: Option<Url>,
    chunk: Option<&'a Mutex<ChunkState>>,
}

/// One upload session.
pub(crate) struct Session<'a> {
    pub net: &'a Network,
    pub settings: &'a UploadSettings,
    pub source: &'a Source,
    pub journal: &'a dyn Journal,
    pub token: Option<&'a CancelToken>,
    /// Called with each server-confirmed offset (monotonic).
    pub on_offset: &'a (dyn Fn(u64) + Send + Sync),
    /// Is the app's current user scope still the upload's? Checked before every request: an
    /// upload never goes out with another user's credentials.
    pub same_scope: &'a (dyn Fn() -> bool + Send + Sync),
}

async fn cancelled(token: Option<&CancelToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

fn cancelled_error() -> ApiError {
    ApiError::Cancelled {
        reason: "the upload was cancelled".into(),
    }
}

impl Session<'_> {
    fn backend_name(&self, index: usize) -> String {
        self.net.backend(index).name.clone()
    }

    fn violation(&self, index: usize, reason: impl Into<String>) -> ApiError {
        ApiError::UploadProtocolViolation {
            backend: self.backend_name(index),
            reason: reason.into(),
        }
    }

    /// The headers of one tus request (defaults, app headers, the header provider's, then the
    /// protocol's).
    async fn headers(&self, method: HttpMethod, path: &str) -> Result<HeaderMap, ApiError> {
        if !(self.same_scope)() {
            return Err(ApiError::Cancelled {
                reason: "the user scope changed; the upload waits for its own".into(),
            });
        }
        // Checked before every request too (the job also stops a transfer when they change).
        let conditions = self.net.current_conditions();
        if !conditions.online {
            return Err(ApiError::Offline);
        }
        if !conditions.may_send(self.source.unmetered_only) {
            return Err(ApiError::Cancelled {
                reason: "the network is metered; the upload waits for an unmetered one".into(),
            });
        }
        let mut h = self
            .net
            .call_headers(method, path, &self.source.headers, None)
            .await?;
        h.remove(reqwest::header::TRANSFER_ENCODING);
        if method != HttpMethod::Options {
            h.insert(
                HeaderName::from_static("tus-resumable"),
                HeaderValue::from_static(TUS_VERSION),
            );
        }
        Ok(h)
    }

    /// The file must be as it was when the upload began.
    fn check_file(&self) -> Result<(), ApiError> {
        let path = &self.source.file_path;
        let meta = crate::runtime::blocking_io(|| std::fs::metadata(path)).map_err(|e| {
            ApiError::UploadFileMissing {
                file_path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        let now = stat_of(&meta);
        if now != self.source.stat {
            return Err(ApiError::UploadFileChanged {
                file_path: path.clone(),
                reason: format!(
                    "size/mtime {}/{} then, {}/{} now",
                    self.source.stat.0, self.source.stat.1, now.0, now.1
                ),
            });
        }
        Ok(())
    }

    /// Sends one request; `body` = `(offset, len)` of the file to stream.
    async fn exchange(
        &self,
        index: usize,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<(u64, u64)>,
    ) -> Result<Reply, ApiError> {
        let client = self.net.http_client().ok_or_else(|| ApiError::Internal {
            reason: "uploads need the HTTP transport".into(),
        })?;
        let meter = Arc::new(Meter::new(u64::MAX));
        let mut req = client.request(method, url).headers(headers);
        if let Some((offset, len)) = body {
            let mut file = tokio::fs::File::open(&self.source.file_path)
                .await
                .map_err(|e| ApiError::UploadFileMissing {
                    file_path: self.source.file_path.clone(),
                    reason: e.to_string(),
                })?;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| ApiError::Storage {
                    reason: format!("seeking in the upload's file: {e}"),
                })?;
            let stream = body::stream(Layout::raw(len), file, meter.clone());
            req = req
                .header(CONTENT_LENGTH, len)
                .header(CONTENT_TYPE, policy::OFFSET_OCTET_STREAM)
                .body(reqwest::Body::wrap_stream(stream));
        } else {
            req = req.header(CONTENT_LENGTH, 0);
        }
        struct AbortOnDrop(Arc<Meter>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _abort = AbortOnDrop(meter.clone());
        meter.touch();
        let idle = self.settings.idle_timeout;
        let sensitive = self.net.sensitive_query_params();
        let fail = |detail: String, timed_out: bool, connect_failed: bool| Reply {
            status: None,
            headers: HashMap::new(),
            body: Vec::new(),
            detail,
            timed_out,
            connect_failed,
        };
        let work = async {
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Err(transport::attempt_error(e, sensitive)),
            };
            let status = resp.status().as_u16();
            let headers = flatten_headers(resp.headers());
            let mut body = Vec::new();
            loop {
                match resp.chunk().await {
                    Ok(Some(c)) => {
                        meter.touch();
                        let room = MAX_ANSWER_BODY.saturating_sub(body.len());
                        body.extend_from_slice(&c[..c.len().min(room)]);
                    }
                    Ok(None) => break,
                    Err(e) => return Err(transport::attempt_error(e, sensitive)),
                }
            }
            Ok(Reply {
                status: Some(status),
                headers,
                body,
                detail: format!("HTTP {status}"),
                timed_out: false,
                connect_failed: false,
            })
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(
            (idle / 4).clamp(Duration::from_millis(5), Duration::from_millis(250)),
        );
        loop {
            tokio::select! {
                biased;
                _ = cancelled(self.token) => return Err(cancelled_error()),
                r = &mut work => return match r {
                    Ok(reply) => Ok(reply),
                    Err(e) if e.kind == AttemptErrorKind::PinMismatch => {
                        Err(self.net.pin_mismatch(self.net.backend(index), &e.detail))
                    }
                    Err(e) => Ok(fail(
                        e.detail,
                        e.kind == AttemptErrorKind::Timeout,
                        e.kind == AttemptErrorKind::Connect,
                    )),
                },
                _ = tick.tick() => {
                    if meter.idle_for() >= idle {
                        return Ok(fail(format!("no progress for {} ms", idle.as_millis()), true, false));
                    }
                }
            }
        }
    }

    /// The attempt loop's verdict on a reply.
    fn judge(reply: &Reply, head: bool) -> (Step, Health, bool) {
        match reply.status {
            None if reply.connect_failed => (
                Step::FailOver,
                Health::Unreachable(reply.detail.clone()),
                false,
            ),
            None => (
                Step::Retry { retry_after: None },
                Health::Failure(reply.detail.clone()),
                true,
            ),
            Some(status) => {
                let health = match status {
                    500..=599 => Health::Failure(reply.detail.clone()),
                    408 | 429 => Health::Neutral(reply.detail.clone()),
                    _ => Health::Success(Duration::ZERO),
                };
                let step = match policy::answer(status, &reply.headers, head) {
                    Answer::Ok => Step::Success,
                    Answer::Conflict => Step::Retry { retry_after: None },
                    Answer::Retry { retry_after } => Step::Retry { retry_after },
                    Answer::Gone | Answer::Final => Step::Final,
                };
                (step, health, true)
            }
        }
    }

    fn plan(&self, only: Option<usize>) -> Plan {
        let s = self.net.settings();
        Plan {
            max_rounds: self.settings.max_retries,
            max_sends: self.settings.max_retries.saturating_add(1),
            retry_after_cap: super::policy::RETRY_AFTER_CAP,
            // Discovery may go anywhere; everything else stays on its backend.
            pin_on_retry: only.is_some(),
            only,
            ..Plan::new(s.retry_base_delay, s.retry_max_delay)
        }
    }

    /// Turns a failed attempt-loop run into the session's error.
    fn loop_error(&self, f: attempt::Failed<ChunkEnd>) -> ApiError {
        match f.stop {
            Stop::Aborted(e) => e,
            Stop::Offline => ApiError::Offline,
            Stop::NothingAdmissible => ApiError::AllBackendsUnavailable {
                attempts: f.attempts as i32,
                last_error:
                    "the upload's backend is fenced off by its circuit breaker; nothing was sent"
                        .into(),
            },
            _ => match f.last {
                Some((index, ChunkEnd::Reply(r) | ChunkEnd::Gone(r))) => {
                    let backend = self.backend_name(index);
                    match r.status {
                        Some(status) => ApiError::Http {
                            status: status as i32,
                            body: r.body,
                            backend,
                        },
                        None if r.timed_out => ApiError::Timeout {
                            backend,
                            timeout_ms: crate::defaults::ms_i32(self.settings.idle_timeout),
                        },
                        None => ApiError::AllBackendsUnavailable {
                            attempts: f.attempts as i32,
                            last_error: format!("{backend}: {}", r.detail),
                        },
                    }
                }
                None => ApiError::AllBackendsUnavailable {
                    attempts: f.attempts as i32,
                    last_error: "no attempt made".into(),
                },
            },
        }
    }

    /// Asks the backends (best first) whether `endpoint` speaks tus: `(backend, capabilities)`.
    pub(crate) async fn discover(&self) -> Result<(usize, Option<Capabilities>), ApiError> {
        let call = TusCall {
            session: self,
            kind: Kind::Options,
            url: None,
            chunk: None,
        };
        match attempt::run(self.net, &call, &self.plan(None)).await {
            Ok(done) => {
                let ChunkEnd::Reply(r) = done.value else {
                    return Err(ApiError::Internal {
                        reason: "discovery ended without a reply".into(),
                    });
                };
                Ok((
                    done.index,
                    policy::capabilities(r.status.unwrap_or(0), &r.headers),
                ))
            }
            // A final non-2xx (405, 404 …): the endpoint is not tus there.
            Err(attempt::Failed {
                stop: Stop::Final,
                last: Some((index, _)),
                ..
            }) => Ok((index, None)),
            Err(f) => Err(self.loop_error(f)),
        }
    }

    /// Creates the upload on `backend`: `(url, confirmed offset if known, bytes sent, attempts)`.
    async fn create(
        &self,
        backend: usize,
        caps: &Capabilities,
    ) -> Result<(Url, Option<u64>, u64, u32), ApiError> {
        if let Some(max) = caps.max_size {
            if self.source.size > max {
                return Err(ApiError::invalid_request(format!(
                    "the file has {} bytes; the server takes at most {max} (Tus-Max-Size)",
                    self.source.size
                )));
            }
        }
        let with_bytes = if caps.offers("creation-with-upload") {
            policy::chunk_len(0, self.source.size, self.settings.chunk_bytes)
        } else {
            0
        };
        if with_bytes > 0 {
            self.check_file()?;
        }
        let call = TusCall {
            session: self,
            kind: Kind::Create { with_bytes },
            url: None,
            chunk: None,
        };
        let done = attempt::run(self.net, &call, &self.plan(Some(backend)))
            .await
            .map_err(|f| self.loop_error(f))?;
        let ChunkEnd::Reply(r) = done.value else {
            return Err(ApiError::Internal {
                reason: "creation ended without a reply".into(),
            });
        };
        let base = &self.net.backend(backend).url;
        let endpoint = join_url(base, &self.source.endpoint, &[])?;
        let location = crate::http::header_value(&r.headers, "location")
            .ok_or_else(|| self.violation(backend, "a creation answer without Location"))?;
        let url = endpoint
            .join(location.trim())
            .map_err(|_| self.violation(backend, "a creation answer with an unusable Location"))?;
        if url.origin() != base.origin()
            || !url.path().starts_with(base.path().trim_end_matches('/'))
        {
            // Requests go only where the app sent them.
            return Err(self.violation(
                backend,
                "the Location of the created upload is outside the backend's URL",
            ));
        }
        let offset = if with_bytes > 0 {
            match crate::http::header_value(&r.headers, "upload-offset") {
                Some(v) => Some(
                    policy::judge_patch_offset(Some(v), 0, with_bytes)
                        .map_err(|p| self.violation(backend, p.to_string()))?,
                ),
                None => None, // bytes went out, the answer did not say how many stuck: ask
            }
        } else {
            Some(0)
        };
        self.journal.created(
            backend,
            url.as_str(),
            offset.unwrap_or(0),
            policy::expires_at_ms(&r.headers),
        )?;
        if with_bytes > 0 {
            self.journal.sending(with_bytes)?;
        }
        Ok((url, offset, with_bytes, done.attempts))
    }

    /// Deletes the upload at `url` (termination); a `404`/`410` counts as deleted.
    pub(crate) async fn terminate(&self, backend: usize, url: Url) -> Result<(), ApiError> {
        let call = TusCall {
            session: self,
            kind: Kind::Delete,
            url: Some(url),
            chunk: None,
        };
        match attempt::run(self.net, &call, &self.plan(Some(backend))).await {
            Ok(_) => Ok(()),
            Err(attempt::Failed {
                stop: Stop::Final,
                last: Some((_, ChunkEnd::Gone(_))),
                ..
            }) => Ok(()),
            Err(f) => Err(self.loop_error(f)),
        }
    }

    /// Runs the upload to its end: discovery and creation when there is no URL (or it was lost),
    /// then chunks until the server has every byte.
    pub(crate) async fn run(
        &self,
        mut resume: Resume,
        caps: Option<(usize, Capabilities)>,
    ) -> Result<Completed, ApiError> {
        let mut caps = caps;
        // What the server offers (when known): a resumed upload's caller passes its backend's.
        let mut checksum = caps
            .as_ref()
            .and_then(|(_, c)| policy::checksum_algorithm(c));
        let mut attempts = 0u32;
        loop {
            self.check_file()?;
            if policy::expired(resume.expires_at_ms, crate::store::now_ms())
                && resume.target.is_some()
            {
                self.restart(&mut resume)?;
            }
            let (backend, url, offset_known) = match resume.target.clone() {
                Some((b, url)) => (b, url, None),
                None => {
                    let (b, c) = match caps.take() {
                        Some(bc) => bc,
                        None => match self.discover().await? {
                            (b, Some(c)) => (b, c),
                            (b, None) => {
                                return Err(
                                    self.violation(b, "the endpoint no longer speaks tus 1.0")
                                )
                            }
                        },
                    };
                    checksum = policy::checksum_algorithm(&c);
                    if !c.offers("creation") {
                        return Err(
                            self.violation(b, "the server does not offer the creation extension")
                        );
                    }
                    let (url, offset, sent, n) = self.create(b, &c).await?;
                    attempts += n;
                    resume.target = Some((b, url.clone()));
                    resume.sent_high = sent.max(offset.unwrap_or(0));
                    (b, url, offset)
                }
            };
            let state = Mutex::new(ChunkState {
                needs_head: offset_known.is_none(),
                offset: offset_known.unwrap_or(0),
                sent_high: resume.sent_high,
                checksum,
                mismatch_at: None,
            });
            if let Some(o) = offset_known {
                (self.on_offset)(o);
            }
            let call = TusCall {
                session: self,
                kind: Kind::Chunk,
                url: Some(url.clone()),
                chunk: Some(&state),
            };
            let plan = self.plan(Some(backend));
            let mut last_reply: Option<Reply> = None;
            let gone = loop {
                let done = {
                    let s = state.lock().unwrap_or_else(PoisonError::into_inner);
                    !s.needs_head && s.offset >= self.source.size
                };
                if done {
                    break false;
                }
                match attempt::run(self.net, &call, &plan).await {
                    Ok(d) => {
                        attempts += d.attempts;
                        if let ChunkEnd::Reply(r) = d.value {
                            last_reply = Some(r);
                        }
                    }
                    Err(attempt::Failed {
                        stop: Stop::Final,
                        last: Some((_, ChunkEnd::Gone(_))),
                        attempts: n,
                        ..
                    }) => {
                        attempts += n;
                        break true;
                    }
                    Err(f) => return Err(self.loop_error(f)),
                }
            };
            if gone {
                self.restart(&mut resume)?;
                continue;
            }
            let r = last_reply.unwrap_or(Reply {
                status: Some(204),
                headers: HashMap::new(),
                body: Vec::new(),
                detail: String::new(),
                timed_out: false,
                connect_failed: false,
            });
            return Ok(Completed {
                backend,
                status: r.status.unwrap_or(204),
                headers: r.headers,
                body: r.body,
                attempts,
            });
        }
    }

    /// The server lost the upload (or it expired): forget the URL, bounded by `max_restarts`.
    fn restart(&self, resume: &mut Resume) -> Result<(), ApiError> {
        let backend = resume.target.as_ref().map_or(0, |t| t.0);
        if resume.restarts >= self.settings.max_restarts {
            return Err(ApiError::UploadRestartsExhausted {
                backend: self.backend_name(backend),
                restarts: resume.restarts as i32,
            });
        }
        resume.restarts += 1;
        resume.target = None;
        resume.sent_high = 0;
        resume.expires_at_ms = None;
        self.journal.restarted()?;
        log::info!(
            "robust-api: the upload server {} lost an upload; creating it anew",
            self.backend_name(backend)
        );
        Ok(())
    }
}

impl TusCall<'_> {
    async fn attempt(&self, index: usize) -> Result<Tried<ChunkEnd>, ApiError> {
        let s = self.session;
        let base = &s.net.backend(index).url;
        match &self.kind {
            Kind::Options => {
                let url = join_url(base, &s.source.endpoint, &[])?;
                let h = s.headers(HttpMethod::Options, &s.source.endpoint).await?;
                let r = s.exchange(index, Method::OPTIONS, url, h, None).await?;
                Ok(Self::tried(r, false, false))
            }
            Kind::Create { with_bytes } => {
                let url = join_url(base, &s.source.endpoint, &[])?;
                let mut h = s.headers(HttpMethod::Post, &s.source.endpoint).await?;
                h.insert(
                    HeaderName::from_static("upload-length"),
                    HeaderValue::from(s.source.size),
                );
                if !s.source.metadata.is_empty() {
                    h.insert(
                        HeaderName::from_static("upload-metadata"),
                        header_value(&s.source.metadata)?,
                    );
                }
                let body = (*with_bytes > 0).then_some((0, *with_bytes));
                let r = s.exchange(index, Method::POST, url, h, body).await?;
                let mut t = Self::tried(r, false, false);
                if let ChunkEnd::Reply(r) = &t.value {
                    if r.status == Some(200)
                        || r.status
                            .is_some_and(|st| st != 201 && (200..300).contains(&st))
                    {
                        // Only 201 Created creates an upload.
                        t.step = Step::Final;
                    }
                }
                Ok(t)
            }
            Kind::Delete => {
                let url = self.url.clone().ok_or_else(|| ApiError::Internal {
                    reason: "termination without a URL".into(),
                })?;
                let h = s.headers(HttpMethod::Delete, url.path()).await?;
                let r = s.exchange(index, Method::DELETE, url, h, None).await?;
                Ok(Self::tried(r, false, true))
            }
            Kind::Chunk => self.chunk(index).await,
        }
    }

    fn tried(r: Reply, head: bool, gone_is_final: bool) -> Tried<ChunkEnd> {
        let (step, health, sent) = Session::judge(&r, head);
        let gone = r
            .status
            .is_some_and(|st| policy::answer(st, &r.headers, head) == Answer::Gone);
        let value = if gone || (gone_is_final && matches!(r.status, Some(404 | 410))) {
            ChunkEnd::Gone(r)
        } else {
            ChunkEnd::Reply(r)
        };
        Tried {
            value,
            step,
            health,
            sent,
        }
    }

    /// `HEAD` if needed, then one `PATCH`.
    async fn chunk(&self, index: usize) -> Result<Tried<ChunkEnd>, ApiError> {
        let s = self.session;
        let state = self.chunk.ok_or_else(|| ApiError::Internal {
            reason: "a chunk without state".into(),
        })?;
        let url = self.url.clone().ok_or_else(|| ApiError::Internal {
            reason: "a chunk without a URL".into(),
        })?;
        let path = url.path().to_string();
        let (needs_head, sent_high) = {
            let st = state.lock().unwrap_or_else(PoisonError::into_inner);
            (st.needs_head, st.sent_high)
        };
        if needs_head {
            let h = s.headers(HttpMethod::Head, &path).await?;
            let r = s
                .exchange(index, Method::HEAD, url.clone(), h, None)
                .await?;
            let t = Self::tried(r, true, false);
            if t.step != Step::Success {
                return Ok(t);
            }
            let ChunkEnd::Reply(r) = &t.value else {
                return Ok(t);
            };
            let offset = policy::judge_offset(
                crate::http::header_value(&r.headers, "upload-offset"),
                s.source.size,
                sent_high,
            )
            .map_err(|p| s.violation(index, p.to_string()))?;
            s.journal
                .confirmed(offset, policy::expires_at_ms(&r.headers))?;
            (s.on_offset)(offset);
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            st.needs_head = false;
            st.offset = offset;
            if offset >= s.source.size {
                return Ok(t);
            }
        }
        let offset = state.lock().unwrap_or_else(PoisonError::into_inner).offset;
        let len = policy::chunk_len(offset, s.source.size, s.settings.chunk_bytes);
        s.check_file()?;
        let end = offset + len;
        if end > sent_high {
            s.journal.sending(end)?;
            state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sent_high = end;
        }
        let mut h = s.headers(HttpMethod::Patch, &path).await?;
        h.insert(
            HeaderName::from_static("upload-offset"),
            HeaderValue::from(offset),
        );
        let checksum = state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .checksum;
        if let Some(algorithm) = checksum {
            let file = &s.source.file_path;
            let digest = crate::runtime::blocking_io(|| chunk_digest(file, offset, len, algorithm))
                .map_err(|e| ApiError::UploadFileMissing {
                    file_path: file.clone(),
                    reason: e.to_string(),
                })?;
            h.insert(
                HeaderName::from_static("upload-checksum"),
                header_value(&policy::checksum_header(algorithm, &digest))?,
            );
        }
        let started = Instant::now();
        let r = s
            .exchange(index, Method::PATCH, url, h, Some((offset, len)))
            .await?;
        if r.status == Some(policy::CHECKSUM_MISMATCH) {
            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
            match policy::on_checksum_mismatch(st.mismatch_at, offset) {
                ChecksumVerdict::GiveUp => {
                    return Err(ApiError::UploadChecksumMismatch {
                        backend: s.backend_name(index),
                        offset: offset.min(i64::MAX as u64) as i64,
                    })
                }
                ChecksumVerdict::Resend => st.mismatch_at = Some(offset),
            }
        }
        let mut t = Self::tried(r, false, false);
        if let Health::Success(_) = t.health {
            t.health = Health::Success(started.elapsed().min(Duration::from_secs(1)));
        }
        match (&t.step, &t.value) {
            (Step::Success, ChunkEnd::Reply(r)) => {
                let confirmed = policy::judge_patch_offset(
                    crate::http::header_value(&r.headers, "upload-offset"),
                    offset,
                    end,
                )
                .map_err(|p| s.violation(index, p.to_string()))?;
                s.journal
                    .confirmed(confirmed, policy::expires_at_ms(&r.headers))?;
                (s.on_offset)(confirmed);
                state.lock().unwrap_or_else(PoisonError::into_inner).offset = confirmed;
            }
            (Step::Final, _) => {}
            _ => {
                // Broken, 5xx, 409: where the server stands is unknown; ask before resending.
                state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .needs_head = true;
            }
        }
        Ok(t)
    }
}

impl Exchange for TusCall<'_> {
    type Value = ChunkEnd;

    async fn send(&self, index: usize, backend: &Backend) -> Result<Tried<ChunkEnd>, ApiError> {
        let t = self.attempt(index).await?;
        if t.step != Step::Success {
            let detail = match &t.value {
                ChunkEnd::Reply(r) | ChunkEnd::Gone(r) => r.detail.clone(),
            };
            log::info!(
                "robust-api: resumable upload request to {} failed: {detail}",
                backend.name
            );
        }
        Ok(t)
    }
}
