//! File uploads: a file streamed from disk as `multipart/form-data`, with progress, cancellation and
//! a retry policy of its own.
//!
//! - [`body`]: the multipart layout (exact `Content-Length`) and the chunked file stream; memory
//!   stays at a few [`body::CHUNK`]s whatever the file size;
//! - [`progress`]: when the [`UploadProgressListener`] is called (every 1 % or 250 ms, monotonic,
//!   one final call at the total);
//! - [`policy`]: what is retried, where, after how long (idle timeout, own retry count, failover
//!   only before the first byte, always an idempotency key);
//! - [`run`]: drives them through the network's one attempt loop (`crate::net::attempt`).
//!
//! Cancellation: the upload runs as a task on the client's runtime (see [`crate::runtime`]);
//! dropping the call's future (a Kotlin coroutine or Swift task cancelled, a Python task cancelled,
//! a JS `AbortSignal`) aborts that task, which drops the request and its connection, and the body
//! stream fails at its next chunk. A [`CancelToken`] does the same from anywhere (e.g. a "Cancel"
//! button) and makes the call return `ApiError::Cancelled`.
//!
//! The progress listener is never called from the upload's task: the task posts each value the
//! throttle lets through to a one-value mailbox ([`ProgressSink`], latest wins), and the call's
//! future delivers it when the caller polls it — on the thread awaiting the call (the foreign
//! executor's), never on the client's threads and never with a lock held
//! ([`crate::runtime::ClientRuntime::call_reporting`]). The body stream only bumps an atomic
//! counter and, every 1 %, wakes the task.

mod body;
mod policy;
mod progress;
mod records;
mod resumable;
pub(crate) mod tus;

pub(crate) use records::Records;
pub use records::UploadState;
pub(crate) use resumable::Uploads;
pub use resumable::{PendingUpload, ResumableUploadListener};

use crate::cancel::CancelToken;

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use reqwest::Url;

use crate::defaults::{
    at_least, config_record, ms_i32, non_negative, non_negative_ms, positive_ms,
};
use crate::error::ApiError;
use crate::http::{flatten_headers, join_url, retry_after_of};
use crate::net::attempt::{self, Exchange, Health, Plan, Stop, Tried};
use crate::net::transport::{self, AttemptErrorKind};
use crate::net::{Backend, Network};
use crate::types::{ApiResponse, HttpMethod};
use body::{Layout, Meter};
use policy::{BreakerVerdict, Outcome, Step, RETRY_AFTER_CAP};
use progress::{Throttle, REPORT_INTERVAL};

/// Largest upload response body kept (the answer to an upload is normally a small JSON document).
const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// A file to upload as `multipart/form-data` (`POST`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct UploadRequest {
    /// Path relative to the backend's base URL, e.g. `/api/videos`.
    pub path: String,
    /// The file on disk (read in chunks while sending; never loaded whole).
    pub file_path: String,
    /// The form field carrying the file.
    #[uniffi(default = "file")]
    pub field_name: String,
    /// The file name sent to the server; `None` = the last component of `file_path`.
    #[uniffi(default = None)]
    pub file_name: Option<String>,
    /// The file part's `Content-Type`; `None` = guessed from the extension
    /// (`application/octet-stream` if unknown).
    #[uniffi(default = None)]
    pub content_type: Option<String>,
    /// Extra form fields (e.g. `title`), sent before the file, sorted by name.
    #[uniffi(default)]
    pub fields: HashMap<String, String>,
    /// Request headers (override the client's default headers; `Content-Type` and `Content-Length`
    /// are set by the upload).
    #[uniffi(default)]
    pub headers: HashMap<String, String>,
    /// Sent as `Idempotency-Key` on every attempt, so a retried upload is stored once. `None` = a
    /// random UUID generated for this call.
    #[uniffi(default = None)]
    pub idempotency_key: Option<String>,
    /// Send only over an unmetered network (`set_network_metered(false)`): while the app reports
    /// a metered one the upload waits (no byte goes out; a transfer under way stops at once) and
    /// it goes on by itself when the network is unmetered again — a resumable upload from the
    /// server's offset, a multipart one from the start. `upload.unmetered_only` makes it the
    /// default for every upload.
    #[uniffi(default = false)]
    pub unmetered_only: bool,
}

impl UploadRequest {
    /// An upload of `file_path` to `path` with every optional field at its default.
    pub fn new(path: impl Into<String>, file_path: impl Into<String>) -> Self {
        UploadRequest {
            path: path.into(),
            file_path: file_path.into(),
            field_name: "file".into(),
            file_name: None,
            content_type: None,
            fields: HashMap::new(),
            headers: HashMap::new(),
            idempotency_key: None,
            unmetered_only: false,
        }
    }
}

/// Receives an upload's progress. Called on the thread that awaits the upload (the coroutine's
/// dispatcher, the Swift task's executor, the Python event loop, the JS thread — never one of the
/// client's own threads), at most every 1 % of the body or every 250 ms, with values that never go
/// backwards (a retry re-sends from the start; progress holds until it passes the last value), and
/// exactly once with `bytes_sent == total_bytes`, after the server accepted the upload and before
/// the call returns. A listener slower than the upload gets the latest value, not every one.
/// `total_bytes` is the request body: the file plus a few hundred bytes of multipart framing.
/// Return quickly (post to the UI thread).
///
/// A callback interface (not a `with_foreign` trait object) because uniffi-bindgen-react-native
/// 0.31 cannot pass a TypeScript object as an optional foreign trait object.
#[uniffi::export(callback_interface)]
pub trait UploadProgressListener: Send + Sync {
    /// `bytes_sent` of `total_bytes` have gone out. An error (a foreign exception) is logged as a
    /// warning; the upload goes on and the listener keeps being called.
    fn on_progress(&self, bytes_sent: i64, total_bytes: i64) -> Result<(), ApiError>;
}

/// Lets Rust callers keep a handle on their listener (`Some(Box::new(listener.clone()))`).
impl<T: UploadProgressListener + ?Sized> UploadProgressListener for Arc<T> {
    fn on_progress(&self, bytes_sent: i64, total_bytes: i64) -> Result<(), ApiError> {
        (**self).on_progress(bytes_sent, total_bytes)
    }
}

/// Where an upload's task posts its progress `(bytes_sent, total_bytes)`: the caller's side of the
/// call delivers it to the listener ([`deliver_to`]).
pub(crate) type ProgressSink = Arc<crate::runtime::Latest<(i64, i64)>>;

/// The caller's side of an upload's progress: calls `listener` with each delivered value above
/// the highest so far (a multipart upload started over after a metered spell reports from 0
/// again; the app's progress holds until it passes); one that panics is logged and no longer
/// called, an error it returns is logged as a warning.
pub(crate) fn deliver_to(
    listener: Option<Arc<dyn UploadProgressListener>>,
) -> impl FnMut((i64, i64)) + Send + 'static {
    let mut listener = listener;
    let mut high: Option<i64> = None;
    move |(sent, total)| {
        let Some(l) = &listener else { return };
        if high.is_some_and(|h| sent <= h) {
            return;
        }
        high = Some(sent);
        match catch_unwind(AssertUnwindSafe(|| l.on_progress(sent, total))) {
            Ok(r) => crate::error::warn_on_listener_error("upload progress listener", r),
            Err(_) => {
                log::warn!(
                    "robust-api: an upload progress listener panicked; it is no longer called"
                );
                listener = None;
            }
        }
    }
}

/// Converts byte counts for the listener.
fn progress_pair(sent: u64, total: u64) -> (i64, i64) {
    (
        sent.min(i64::MAX as u64) as i64,
        total.min(i64::MAX as u64) as i64,
    )
}

/// Resolves when `token` (if any) is cancelled; never without one.
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

config_record! {
    /// File uploads.
    pub struct UploadConfig {
        /// An upload attempt fails after this long without a byte going out or coming in (uploads
        /// have no total timeout; `timeouts.request_ms` does not apply to them).
        pub idle_timeout_ms: i32 = 30000,
        /// Backoff rounds after an upload's first attempt (separate from `retry.max_retries`).
        pub max_retries: i32 = 3,
        /// Where `upload_video_file` posts.
        pub video_path: String = "/api/videos",
        /// `"auto"`: resumable (tus 1.0) when the endpoint answers `OPTIONS` as a tus server
        /// (asked once per backend and endpoint), multipart otherwise; `"tus"`: always resumable
        /// (an endpoint that is not tus is `InvalidRequest`); `"multipart"`: never.
        pub resumable: String = "auto",
        /// Largest `PATCH` of a resumable upload (each streamed from disk in 128 KiB reads): what
        /// one network failure can cost. 64 KiB .. 1 GiB.
        pub chunk_bytes: i32 = 8388608,
        /// Resumable uploads running at once (the others wait). 1 .. 16.
        pub max_concurrent: i32 = 2,
        /// How often a resumable upload is created anew when its server lost it (`404`/`410`,
        /// expired) before it fails with `UploadRestartsExhausted`.
        pub max_restarts: i32 = 3,
        /// A resumable upload's URL belongs to the backend that created it. When that backend has
        /// been unreachable this long (across resumes), the upload is created anew on the best
        /// other backend, from byte 0. 0: wait for it however long it takes.
        pub restart_elsewhere_after_ms: i32 = 600000,
        /// Every upload (`upload_file`, `upload_video_file`) waits for an unmetered network, as if
        /// its request said `unmetered_only`.
        pub unmetered_only: bool = false,
    }
}

/// The checked upload settings.
#[derive(Debug, Clone)]
pub(crate) struct UploadSettings {
    /// An attempt fails after this long without a byte going out or coming in.
    pub idle_timeout: Duration,
    /// Backoff rounds after the first attempt.
    pub max_retries: u32,
    /// Where `upload_video_file` posts.
    pub video_path: String,
    /// `auto`, `tus` or `multipart`.
    pub resumable: String,
    /// Largest `PATCH`.
    pub chunk_bytes: u64,
    /// Resumable uploads at once.
    pub max_concurrent: u32,
    /// Re-creations after the server lost an upload.
    pub max_restarts: u32,
    /// Unreachable this long → created anew elsewhere (zero: never).
    pub restart_elsewhere_after: Duration,
    /// Every upload waits for an unmetered network.
    pub unmetered_only: bool,
}

impl UploadSettings {
    pub(crate) fn from_config(c: &UploadConfig) -> Result<Self, ApiError> {
        if !c.video_path.starts_with('/') {
            return Err(ApiError::invalid_config(format!(
                "upload.video_path {:?} must start with '/'",
                c.video_path
            )));
        }
        if !matches!(c.resumable.as_str(), "auto" | "tus" | "multipart") {
            return Err(ApiError::invalid_config(format!(
                "upload.resumable {:?} must be \"auto\", \"tus\" or \"multipart\"",
                c.resumable
            )));
        }
        let chunk_bytes = at_least("upload.chunk_bytes", c.chunk_bytes, 64 * 1024)?;
        if chunk_bytes > 1 << 30 {
            return Err(ApiError::invalid_config(
                "upload.chunk_bytes must be at most 1 GiB",
            ));
        }
        let max_concurrent = at_least("upload.max_concurrent", c.max_concurrent, 1)?;
        if max_concurrent > 16 {
            return Err(ApiError::invalid_config(
                "upload.max_concurrent must be at most 16",
            ));
        }
        Ok(UploadSettings {
            idle_timeout: positive_ms("upload.idle_timeout_ms", c.idle_timeout_ms)?,
            max_retries: non_negative("upload.max_retries", c.max_retries)?,
            video_path: c.video_path.clone(),
            resumable: c.resumable.clone(),
            chunk_bytes: u64::from(chunk_bytes),
            max_concurrent,
            max_restarts: non_negative("upload.max_restarts", c.max_restarts)?,
            restart_elsewhere_after: non_negative_ms(
                "upload.restart_elsewhere_after_ms",
                c.restart_elsewhere_after_ms,
            )?,
            unmetered_only: c.unmetered_only,
        })
    }
}

/// The request `upload_video_file` sends.
pub(crate) fn video_request(path: &str, file_path: String, title: String) -> UploadRequest {
    let mut r = UploadRequest::new(path, file_path);
    r.fields.insert("title".into(), title);
    r
}

/// A MIME type from the file extension (the common mobile media and document types).
pub(crate) fn guess_content_type(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" => "video/mp4",
        "m4v" => "video/x-m4v",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "3gp" => "video/3gpp",
        "avi" => "video/x-msvideo",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "zip" => "application/zip",
        "txt" => "text/plain",
        "csv" => "text/csv",
        _ => "application/octet-stream",
    }
}

/// Everything checked before the first byte goes out.
struct Prepared {
    urls: Vec<Url>,
    headers: reqwest::header::HeaderMap,
    layout: Layout,
    file_path: String,
}

/// Checks the request and the file. Every error here is `InvalidRequest` (nothing was sent).
async fn prepare(net: &Network, req: &UploadRequest) -> Result<Prepared, ApiError> {
    let urls = (0..net.backend_count())
        .map(|i| join_url(&net.backend(i).url, &req.path, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let unreadable = |e: std::io::Error| {
        ApiError::invalid_request(format!("file {:?} cannot be read: {e}", req.file_path))
    };
    if req.file_path.is_empty() {
        return Err(ApiError::invalid_request("file_path must not be empty"));
    }
    let meta = tokio::fs::metadata(&req.file_path)
        .await
        .map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ApiError::invalid_request(format!(
            "file {:?} is not a regular file",
            req.file_path
        )));
    }
    // Opened once here so a permission problem is reported now, not as a failed attempt.
    drop(
        tokio::fs::File::open(&req.file_path)
            .await
            .map_err(unreadable)?,
    );
    let file_name = match &req.file_name {
        Some(n) => n.clone(),
        None => std::path::Path::new(&req.file_path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into()),
    };
    let content_type = req
        .content_type
        .clone()
        .unwrap_or_else(|| guess_content_type(&file_name).to_string());
    let mut fields: Vec<(String, String)> = req
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    fields.sort();
    let layout = Layout::new(
        &fields,
        &req.field_name,
        &file_name,
        &content_type,
        meta.len(),
    )?;
    let mut headers = net
        .call_headers(
            HttpMethod::Post,
            &req.path,
            &req.headers,
            req.idempotency_key.as_deref(),
        )
        .await?;
    headers.remove(TRANSFER_ENCODING);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&layout.content_type())
            .map_err(|_| ApiError::invalid_request("content type not valid in HTTP"))?,
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(layout.content_length()));
    Ok(Prepared {
        urls,
        headers,
        layout,
        file_path: req.file_path.clone(),
    })
}

/// Sets the meter's abort flag when an attempt ends or is dropped, so its body stream stops even
/// if the transport still holds it.
struct AbortOnDrop(Arc<Meter>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why driving an attempt stopped early.
enum Interrupt {
    Cancelled,
    Idle,
}

/// One attempt's result.
struct Finished {
    outcome: Outcome,
    /// The response, when one arrived.
    response: Option<(u16, HashMap<String, String>, Vec<u8>)>,
    /// What went wrong, when nothing arrived.
    detail: String,
}

/// One upload call.
struct Upload<'a> {
    net: &'a Network,
    settings: &'a UploadSettings,
    prepared: Prepared,
    /// The progress throttle; locked only briefly, never across an await.
    progress: Mutex<Throttle>,
    /// Where reported values go (to the caller's side); `None`: no listener.
    sink: Option<ProgressSink>,
    token: Option<&'a CancelToken>,
}

impl Upload<'_> {
    /// Hands `sent` to the caller's side (never calls foreign code here).
    fn notify(&self, sent: u64) {
        if let Some(sink) = &self.sink {
            sink.post(progress_pair(sent, self.prepared.layout.content_length()));
        }
    }

    fn report(&self, meter: &Meter) {
        let offered = self
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .offer(meter.sent(), Instant::now());
        if let Some(v) = offered {
            self.notify(v);
        }
    }

    /// Runs `fut` while reporting progress and watching the idle timeout and the cancel token.
    async fn drive<F: Future>(&self, meter: &Meter, fut: F) -> Result<F::Output, Interrupt> {
        tokio::pin!(fut);
        let idle = self.settings.idle_timeout;
        let period = (idle / 4).clamp(Duration::from_millis(5), REPORT_INTERVAL);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let token = self.token;
        loop {
            tokio::select! {
                biased;
                _ = cancelled(token) => return Err(Interrupt::Cancelled),
                out = &mut fut => return Ok(out),
                _ = meter.wake.notified() => self.report(meter),
                _ = tick.tick() => {
                    self.report(meter);
                    if meter.idle_for() >= idle {
                        return Err(Interrupt::Idle);
                    }
                }
            }
        }
    }

    /// One attempt to backend `index`.
    async fn attempt(
        &self,
        index: usize,
        backend: &Backend,
    ) -> Result<(Finished, Duration), ApiError> {
        let started = Instant::now();
        // Re-opened per attempt (from byte 0); the size must not have changed since `prepare`.
        let unreadable = |e: std::io::Error| {
            ApiError::invalid_request(format!(
                "file {:?} cannot be read: {e}",
                self.prepared.file_path
            ))
        };
        let file = tokio::fs::File::open(&self.prepared.file_path)
            .await
            .map_err(unreadable)?;
        let len = file.metadata().await.map_err(unreadable)?.len();
        if len != self.prepared.layout.file_len() {
            return Err(ApiError::invalid_request(format!(
                "file {:?} changed size during the upload ({} -> {len} bytes)",
                self.prepared.file_path,
                self.prepared.layout.file_len()
            )));
        }
        let step = self
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .step();
        let meter = Arc::new(Meter::new(step));
        let _abort = AbortOnDrop(meter.clone());
        let body = body::stream(self.prepared.layout.clone(), file, meter.clone());
        let client = self.net.http_client().ok_or_else(|| ApiError::Internal {
            reason: "uploads need the HTTP transport".into(),
        })?;
        let send = client
            .post(self.prepared.urls[index].clone())
            .headers(self.prepared.headers.clone())
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let failed = |kind, detail: String, meter: &Meter| Finished {
            outcome: Outcome::Failed {
                kind,
                body_bytes_sent: meter.sent(),
            },
            response: None,
            detail,
        };
        let idle_ms = self.settings.idle_timeout.as_millis();
        let idle_detail = |meter: &Meter| {
            format!(
                "no progress for {idle_ms} ms after {} body bytes",
                meter.sent()
            )
        };
        let mut resp = match self.drive(&meter, send).await {
            Err(Interrupt::Cancelled) => return Err(cancelled_error()),
            Err(Interrupt::Idle) => {
                let f = failed(AttemptErrorKind::Timeout, idle_detail(&meter), &meter);
                return Ok((f, started.elapsed()));
            }
            Ok(Err(e)) => {
                let e = transport::attempt_error(e, self.net.sensitive_query_params());
                if e.kind == AttemptErrorKind::PinMismatch {
                    return Err(self.net.pin_mismatch(self.net.backend(index), &e.detail));
                    // final: never elsewhere
                }
                return Ok((failed(e.kind, e.detail, &meter), started.elapsed()));
            }
            Ok(Ok(resp)) => resp,
        };
        let answered = Instant::now();
        let status = resp.status().as_u16();
        let retry_after = retry_after_of(resp.headers());
        let headers = flatten_headers(resp.headers());
        // Latency for the backend's EWMA: from the end of the body, not the transfer.
        let latency = answered.saturating_duration_since(meter.body_done_at().unwrap_or(started));
        let mut body = Vec::new();
        let read = self
            .drive(&meter, async {
                while let Some(chunk) = resp.chunk().await? {
                    meter.touch();
                    if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                        return Ok(Err(()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok::<_, reqwest::Error>(Ok(()))
            })
            .await;
        let finished = match read {
            Err(Interrupt::Cancelled) => return Err(cancelled_error()),
            Err(Interrupt::Idle) => failed(AttemptErrorKind::Timeout, idle_detail(&meter), &meter),
            Ok(Err(e)) => {
                let e = transport::attempt_error(e, self.net.sensitive_query_params());
                failed(e.kind, e.detail, &meter)
            }
            Ok(Ok(Err(()))) => {
                return Err(ApiError::Transport {
                    backend: backend.name.clone(),
                    reason: format!(
                        "HTTP {status}: response body larger than {MAX_RESPONSE_BODY} bytes"
                    ),
                })
            }
            Ok(Ok(Ok(()))) => Finished {
                outcome: Outcome::Response {
                    status,
                    retry_after,
                },
                response: Some((status, headers, body)),
                detail: format!("HTTP {status}"),
            },
        };
        Ok((finished, latency))
    }

    /// The error the upload ends with, from its last attempt.
    fn final_error(&self, last: Finished, backend: &str, attempts: u32, pinned: bool) -> ApiError {
        match (last.response, last.outcome) {
            (Some((status, headers, _)), _) if (300..400).contains(&status) => {
                ApiError::UnexpectedRedirect {
                    status: status as i32,
                    location: headers.get("location").cloned().unwrap_or_default(),
                    backend: backend.to_string(),
                }
            }
            (Some((status, _, body)), _) => ApiError::Http {
                status: status as i32,
                body,
                backend: backend.to_string(),
            },
            (
                None,
                Outcome::Failed {
                    kind: AttemptErrorKind::Timeout,
                    ..
                },
            ) => ApiError::Timeout {
                backend: backend.to_string(),
                timeout_ms: ms_i32(self.settings.idle_timeout),
            },
            (None, _) if pinned || attempts <= 1 => ApiError::Transport {
                backend: backend.to_string(),
                reason: last.detail,
            },
            (None, _) => ApiError::AllBackendsUnavailable {
                attempts: attempts as i32,
                last_error: format!("{backend}: {}", last.detail),
            },
        }
    }

    /// The loop (the network's one attempt loop): failover before the first byte, then retries
    /// pinned to the backend that took bytes, with backoff.
    async fn run(self) -> Result<ApiResponse, ApiError> {
        let started = Instant::now();
        let s = self.net.settings();
        let plan = Plan {
            max_rounds: self.settings.max_retries,
            max_sends: self.settings.max_retries.saturating_add(1),
            retry_after_cap: RETRY_AFTER_CAP,
            pin_on_retry: true,
            ..Plan::new(s.retry_base_delay, s.retry_max_delay)
        };
        match attempt::run(self.net, &self, &plan).await {
            Ok(done) => {
                let total = self
                    .progress
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .finish();
                if let Some(total) = total {
                    self.notify(total);
                }
                let Some((status, headers, body)) = done.value.response else {
                    return Err(ApiError::Internal {
                        reason: "upload succeeded without a response".into(),
                    });
                };
                Ok(ApiResponse {
                    status: status as i32,
                    headers,
                    body,
                    backend: self.net.backend(done.index).name.clone(),
                    attempts: done.attempts as i32,
                    elapsed_ms: ms_i32(started.elapsed()),
                    from_cache: false,
                    stale: false,
                    age_ms: None,
                    queued: None,
                })
            }
            Err(f) => Err(match f.stop {
                Stop::Aborted(e) => e,
                Stop::Offline => ApiError::Offline,
                Stop::NothingAdmissible => ApiError::AllBackendsUnavailable {
                    attempts: f.attempts as i32,
                    last_error: "every backend's circuit breaker is open; nothing was sent".into(),
                },
                _ => match f.last {
                    Some((index, last)) => {
                        let name = self.net.backend(index).name.clone();
                        self.final_error(last, &name, f.attempts, f.pinned)
                    }
                    None => ApiError::AllBackendsUnavailable {
                        attempts: f.attempts as i32,
                        last_error: "no attempt made".into(),
                    },
                },
            }),
        }
    }
}

impl Exchange for Upload<'_> {
    type Value = Finished;

    async fn send(&self, index: usize, backend: &Backend) -> Result<Tried<Finished>, ApiError> {
        let (f, latency) = self.attempt(index, backend).await?;
        let step = policy::next_step(&f.outcome);
        if step != Step::Success {
            log::info!(
                "robust-api: upload to {} failed: {}",
                backend.name,
                f.detail
            );
        }
        let health = match policy::breaker_verdict(&f.outcome) {
            BreakerVerdict::Success => Health::Success(latency),
            BreakerVerdict::Failure => Health::Failure(f.detail.clone()),
            BreakerVerdict::Neutral => Health::Neutral(f.detail.clone()),
        };
        let sent = !matches!(
            f.outcome,
            Outcome::Failed {
                kind: AttemptErrorKind::Connect,
                ..
            }
        );
        Ok(Tried {
            value: f,
            step,
            health,
            sent,
        })
    }
}

/// Uploads `req`: resumable (tus) when the endpoint speaks it (see `upload.resumable`), else
/// multipart ([`run`]). The body of `RobustClient::upload_file`.
///
/// A resumable upload is durable: its record is written before the first byte. The call follows
/// its job: progress is the server-confirmed offset; a cancelled token cancels the upload (the
/// server's copy is deleted); a dropped call leaves the upload running in the background (see
/// `pending_uploads`). A job that fails on the network ends the call with that error but stays
/// `Active`, resumed when the network or the backend comes back.
pub(crate) async fn send(
    uploads: Arc<Uploads>,
    net: Arc<Network>,
    settings: UploadSettings,
    req: UploadRequest,
    sink: Option<ProgressSink>,
    token: Option<Arc<CancelToken>>,
) -> Result<ApiResponse, ApiError> {
    if token.as_ref().is_some_and(|t| t.is_cancelled()) {
        return Err(cancelled_error());
    }
    // A missing or unreadable file is reported by the multipart path's checks, before any I/O.
    let readable = tokio::fs::metadata(&req.file_path)
        .await
        .is_ok_and(|m| m.is_file())
        && tokio::fs::File::open(&req.file_path).await.is_ok();
    let mut req = req;
    req.unmetered_only |= settings.unmetered_only;
    if settings.resumable != "multipart" && readable {
        if !net.is_online() {
            return Err(ApiError::Offline);
        }
        if let Some(caps) = uploads.discover(&req).await? {
            return resumable::follow(&uploads, &net, &req, caps, sink, token.as_deref()).await;
        }
    }
    if !req.unmetered_only {
        return run(net, settings, req, sink, token).await;
    }
    unmetered_multipart(net, settings, req, sink, token).await
}

/// A multipart upload marked `unmetered_only`: it starts when the network is unmetered (offline
/// is `Offline`, as for every upload), and a metered spell stops it at once and starts it over
/// once the network is unmetered again (a multipart body cannot resume).
async fn unmetered_multipart(
    net: Arc<Network>,
    settings: UploadSettings,
    req: UploadRequest,
    sink: Option<ProgressSink>,
    token: Option<Arc<CancelToken>>,
) -> Result<ApiResponse, ApiError> {
    let mut conditions = net.conditions();
    loop {
        tokio::select! {
            biased;
            _ = cancelled(token.as_deref()) => return Err(cancelled_error()),
            r = conditions.wait_for(|c| !c.online || c.may_send(true)) => {
                if r.is_err() {
                    return Err(ApiError::Cancelled { reason: "the client was shut down".into() });
                }
            }
        }
        let attempt = run(
            net.clone(),
            settings.clone(),
            req.clone(),
            sink.clone(),
            token.clone(),
        );
        tokio::select! {
            r = attempt => return r,
            _ = conditions.wait_for(|c| c.online && !c.may_send(true)) => {
                log::info!("robust-api: an unmetered-only upload stopped: the network is metered; it starts over when it is not");
            }
        }
    }
}

/// Uploads `req` as multipart (see [`UploadRequest`]).
pub(crate) async fn run(
    net: Arc<Network>,
    settings: UploadSettings,
    mut req: UploadRequest,
    sink: Option<ProgressSink>,
    token: Option<Arc<CancelToken>>,
) -> Result<ApiResponse, ApiError> {
    if token.as_ref().is_some_and(|t| t.is_cancelled()) {
        return Err(cancelled_error());
    }
    if req.idempotency_key.is_none() {
        // An `Idempotency-Key` header is the upload's key, never replaced by a generated one.
        req.idempotency_key = Some(
            crate::http::header_value(&req.headers, "idempotency-key")
                .map_or_else(crate::ids::new_uuid_v4, str::to_owned),
        );
    }
    let prepared = prepare(&net, &req).await?;
    if !net.is_online() {
        return Err(ApiError::Offline);
    }
    net.count_request();
    let throttle = Throttle::new(prepared.layout.content_length(), REPORT_INTERVAL);
    let upload = Upload {
        net: &net,
        settings: &settings,
        prepared,
        progress: Mutex::new(throttle),
        sink,
        token: token.as_deref(),
    };
    // Cancelling the token stops everything, backoff sleeps included.
    tokio::select! {
        biased;
        _ = cancelled(token.as_deref()) => Err(cancelled_error()),
        r = upload.run() => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_from_extensions() {
        assert_eq!(guess_content_type("clip.MP4"), "video/mp4");
        assert_eq!(guess_content_type("a.b.jpeg"), "image/jpeg");
        assert_eq!(guess_content_type("noext"), "application/octet-stream");
        assert_eq!(guess_content_type("x.unknown"), "application/octet-stream");
    }

    #[test]
    fn a_cancelled_token_resolves_at_once_and_wakes_waiters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = CancelToken::new();
            let t2 = t.clone();
            let waiter = tokio::spawn(async move { t2.cancelled().await });
            tokio::task::yield_now().await;
            assert!(!t.is_cancelled());
            t.cancel();
            tokio::time::timeout(Duration::from_secs(1), waiter)
                .await
                .unwrap()
                .unwrap();
            tokio::time::timeout(Duration::from_secs(1), t.cancelled())
                .await
                .unwrap();
        });
    }
}
