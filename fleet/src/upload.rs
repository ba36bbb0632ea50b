//! The streaming upload route (`/upload`, `/upload/...`, `/api/videos`): `multipart/form-data`
//! bodies parsed as they arrive (see [`crate::multipart`]), stored uploads, the upload fault.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::fault::{black_hole, send_broken, Fault};
use crate::http::{
    json_escape, path_only, respond_and_close, write_response, Body, Head, Response,
};
use crate::lock;
use crate::multipart::{multipart_boundary, MultipartSink};
use crate::server::{RecordedRequest, Server, ServerInner};

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
    pub(crate) fn json_fields(&self) -> String {
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
pub(crate) struct UploadSink {
    /// Body bytes received on the upload route (all requests, finished or not).
    bytes_received: AtomicU64,
    /// Armed by [`Server::set_upload_reset_after`]: the next upload whose body reaches this many
    /// bytes has its connection reset (RST), once.
    reset_after: Mutex<Option<u64>>,
    stored: Mutex<VecDeque<StoredUpload>>,
}

impl Server {
    /// The next `n` `PATCH` bodies on `/tus/files/...` arrive corrupted (one byte flipped), so a
    /// checksummed one is answered `460 Checksum Mismatch`.
    pub fn tus_corrupt_next_patches(&self, n: u32) {
        lock(&self.0.tus).corrupt_next(n);
    }

    /// Every `Upload-Checksum` header `/tus/files/...` received, in order.
    pub fn tus_checksums(&self) -> Vec<String> {
        lock(&self.0.tus).checksums()
    }

    /// `PATCH`es answered `460 Checksum Mismatch`.
    pub fn tus_mismatches(&self) -> u64 {
        lock(&self.0.tus).mismatches()
    }

    /// The bytes of the newest upload on `/tus/files`.
    pub fn tus_newest_upload(&self) -> Option<Vec<u8>> {
        lock(&self.0.tus).newest()
    }

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
pub(crate) fn is_upload_route(target: &str) -> bool {
    let path = path_only(target);
    path == "/upload" || path.starts_with("/upload/") || path == "/api/videos"
}

/// What the connection does after an upload request.
pub(crate) enum UploadEnd {
    KeepAlive,
    Close,
}

/// Serves one request on the upload route, streaming its body (never buffered whole): the file
/// part is hashed (SHA-256) as it arrives, the other fields are kept. Requires `Content-Length`
/// and `multipart/form-data`. Idempotency as for other mutations: a replayed key gets the stored
/// answer and stores nothing. Faults: `Down`/`BlackHole` as usual; `Status`/`RetryAfter` drain the
/// body, then answer the status; `Slow` delays the answer; `Truncate`/`ResetMidBody` store the
/// upload, then break the answer. The upload fault ([`Server::set_upload_reset_after`]) resets the
/// connection mid-body.
pub(crate) async fn serve_upload(
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
        let _ = respond_and_close(io.get_mut(), 411, "uploads need a Content-Length").await;
        return UploadEnd::Close;
    }
    let Some(length) = head
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    else {
        let _ = respond_and_close(io.get_mut(), 411, "uploads need a Content-Length").await;
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
        inner.push_recorded(RecordedRequest {
            method: head.method.clone(),
            path: head.target.clone(),
            headers: head.headers.clone(),
            body: Vec::new(),
            body_len: received as usize,
            received_at,
            connection,
        });
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
            (None, Some(s)) if !s.is_done() => {
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
        let _ = send_broken(io.get_mut(), &extra, fault == Fault::ResetMidBody).await;
        return UploadEnd::Close;
    }
    match write_response(io.get_mut(), &response, &extra, false, !keep_alive).await {
        Ok(()) if keep_alive => UploadEnd::KeepAlive,
        _ => UploadEnd::Close,
    }
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
            store.remember(key, response.clone());
        }
        response
    }
}
