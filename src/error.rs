//! The one error type every binding sees.
//!
//! Each variant says what happened and what a caller can do about it. Field names avoid `message`
//! (it collides with `Throwable.message` in Kotlin); the human-readable text is the `Display` output.

/// Why a call (or the client's construction) failed.
///
/// Every binding's exception text is the `Display` text below (exported as the error's
/// `Display`: Swift `description`/`localizedDescription`, Kotlin `toString()`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum ApiError {
    /// The configuration cannot work (bad URL, zero timeout, …). Fix the config; nothing was sent.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The request itself is malformed (bad path, header, …). Nothing was sent.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The app reported the network as unavailable (`set_network_available(false)`); nothing was sent.
    #[error("offline: the app reported no network; nothing was sent")]
    Offline,
    /// The only attempt (or the last one allowed) got no response in time.
    #[error("timed out after {timeout_ms} ms waiting for {backend}")]
    Timeout {
        /// Base URL of the backend that did not answer.
        backend: String,
        /// The per-attempt timeout that expired.
        timeout_ms: i32,
    },
    /// Every backend failed or is fenced off by an open circuit breaker.
    /// `attempts == 0` means the call failed fast without sending anything.
    #[error("all backends unavailable after {attempts} attempt(s); last error: {last_error}")]
    AllBackendsUnavailable {
        /// How many attempts were sent during this call.
        attempts: i32,
        /// The last failure seen (or why nothing was sent).
        last_error: String,
    },
    /// A backend answered with a non-2xx status that the retry policy did not (or could no longer) retry.
    #[error("HTTP {status} from {backend}")]
    Http {
        /// The final HTTP status.
        status: i32,
        /// The response body, as received.
        body: Vec<u8>,
        /// Base URL of the backend that answered.
        backend: String,
    },
    /// The connection failed or broke (refused, reset, truncated body, TLS, …) and the call could not
    /// be retried safely.
    #[error("transport error talking to {backend}: {reason}")]
    Transport {
        /// Base URL of the backend involved.
        backend: String,
        /// The underlying error.
        reason: String,
    },
    /// `CachePolicy::CacheOnly` found nothing usable in the cache. Nothing was sent.
    #[error("not in the cache: {key}")]
    NotCached {
        /// The cache key that missed.
        key: String,
    },
    /// The offline queue is at its bound (`max_queue_size` entries or `queue_max_bytes`). Nothing
    /// was queued: deliver or remove entries, or report the failure to the user.
    #[error("the offline queue is full ({max_entries} entries / {max_bytes} bytes max)")]
    QueueFull {
        /// The entry bound.
        max_entries: i32,
        /// The byte bound.
        max_bytes: i32,
    },
    /// Local storage failed (disk full, file unwritable). For the queue this means the request was
    /// NOT persisted.
    #[error("storage error: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
    /// The call was cancelled (the client was shut down, or the caller dropped the call).
    #[error("cancelled: {reason}")]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// A WebSocket's outbound buffer is at its bound (`ws_max_buffered_messages` or
    /// `ws_max_buffered_bytes`) while it (re)connects or the socket is slow. The message was NOT
    /// taken: retry later or drop it knowingly.
    #[error(
        "the WebSocket outbound buffer is full ({max_messages} messages / {max_bytes} bytes max)"
    )]
    WebSocketBufferFull {
        /// The message bound.
        max_messages: i32,
        /// The byte bound.
        max_bytes: i32,
    },
    /// The WebSocket is closed (or closing) for good; also reported through `on_error` when a
    /// server closes (a reconnect follows) or unsent messages are discarded at close.
    #[error("websocket closed: {reason}")]
    WebSocketClosed {
        /// What happened.
        reason: String,
    },
    /// The backend's TLS certificate chain matched none of the pins configured for its host
    /// (`security.pins`): possibly an interception. The call stops here; it is never retried on
    /// another backend or path.
    #[error("certificate pin mismatch for {host} (backend {backend}); nothing was sent")]
    CertificatePinMismatch {
        /// Base URL of the backend.
        backend: String,
        /// The pinned host whose chain did not match.
        host: String,
    },
    /// A backend answered an upload with a redirect (3xx) that was not followed: the file was NOT
    /// stored. Check the backend URL or the path (`location` says where the server points).
    #[error("HTTP {status} from {backend}: redirected to {location:?}; the upload was not stored")]
    UnexpectedRedirect {
        /// The 3xx status.
        status: i32,
        /// The response's `Location` header (empty if it had none).
        location: String,
        /// Base URL of the backend that answered.
        backend: String,
    },
    /// The response body is larger than the limit (`limits.max_response_bytes`, or the request's
    /// `max_response_bytes`): refused on its `Content-Length`, or while reading, before it could
    /// use up the app's memory. Final: not retried.
    #[error("the response from {backend} is larger than {limit_bytes} bytes")]
    ResponseTooLarge {
        /// Base URL of the backend that sent it.
        backend: String,
        /// The limit that applied.
        limit_bytes: i32,
    },
    /// The header provider (`set_header_provider`) failed: it threw, returned an error, or did not
    /// answer within `timeouts.header_provider_ms`. Nothing was sent. Retryable: try again once
    /// the credentials are available (a queued request is rescheduled, not dead-lettered).
    #[error("credentials unavailable: {reason}")]
    CredentialsUnavailable {
        /// What the provider said, or why it was given up on.
        reason: String,
    },
    /// The server refused the credentials (HTTP 401, or a status in `auth.expired_statuses`) and
    /// the authenticator (`set_authenticator`) could not fix it: its refresh failed
    /// (`refresh_failed`), or the server refused the refreshed credentials too. The request was
    /// not executed. The offline queue pauses (nothing is dead-lettered or re-sent) until
    /// `credentials_changed()` or a later successful refresh: log the user in again, then call it.
    #[error("unauthorized by {backend} (HTTP {status}): {reason}")]
    Unauthorized {
        /// The status that refused the credentials.
        status: i32,
        /// Base URL of the backend that refused them.
        backend: String,
        /// The refresh failed (`true`), or the refreshed credentials were refused too.
        refresh_failed: bool,
        /// What happened (never a credential).
        reason: String,
    },
    /// A callback implemented by the app (a listener, the header provider) threw. Not a bug in
    /// robust-api: the app's code failed.
    #[error("an app callback failed: {reason}")]
    CallbackFailed {
        /// What the foreign code threw.
        reason: String,
    },
    /// The file of a resumable upload changed on disk (size, modification time, or the content
    /// of its first or last MiB) since its upload began: the upload stopped before sending another
    /// byte, so the server never holds a file mixed from two versions. Start a new upload.
    #[error(
        "the file {file_path:?} changed since its upload began ({reason}); nothing more was sent: \
         start a new upload"
    )]
    UploadFileChanged {
        /// The file on disk.
        file_path: String,
        /// What differs.
        reason: String,
    },
    /// The file of a resumable upload is gone (deleted, or no longer readable): its upload
    /// record was removed.
    #[error(
        "the file {file_path:?} of an upload is gone ({reason}); its upload record was removed"
    )]
    UploadFileMissing {
        /// The file on disk.
        file_path: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// A resumable-upload server broke the tus protocol (an offset beyond what was sent, a
    /// missing `Location`, a `Location` on another origin, …): the upload stopped rather than
    /// leave a corrupt file. Its record stays (state `Failed`) for inspection; cancel it to delete.
    #[error(
        "the upload server {backend} broke the tus protocol: {reason}; the upload was stopped"
    )]
    UploadProtocolViolation {
        /// Base URL of the backend.
        backend: String,
        /// What it did.
        reason: String,
    },
    /// A resumable upload was lost by its server (`404`/`410`, or expired) more often than
    /// `upload.max_restarts` allows; each time it was created anew and sent from byte 0.
    #[error(
        "the upload server {backend} lost the upload {restarts} time(s) (404/410/expired); gave up"
    )]
    UploadRestartsExhausted {
        /// Base URL of the backend.
        backend: String,
        /// Restarts made.
        restarts: i32,
    },
    /// A chunk of a resumable upload failed the server's checksum (`460 Checksum Mismatch`) twice
    /// in a row: the bytes change between this device and the server (or on disk). The upload
    /// stopped at the server's last good offset; its record stays (state `Failed`).
    #[error(
        "the upload server {backend} twice rejected the bytes at offset {offset} (checksum mismatch); the upload was stopped"
    )]
    UploadChecksumMismatch {
        /// Base URL of the backend.
        backend: String,
        /// Where the rejected chunk starts.
        offset: i64,
    },
    /// A bug in robust-api. Please report it with this text.
    #[error("internal error (please report): {reason}")]
    Internal {
        /// Details for the bug report.
        reason: String,
    },
}

impl ApiError {
    pub(crate) fn invalid_config(reason: impl Into<String>) -> Self {
        ApiError::InvalidConfig {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_request(reason: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            reason: reason.into(),
        }
    }
}

/// A listener's error (a foreign listener's exception arrives as `Internal`) is logged, never
/// raised or printed as a panic: the caller keeps delivering.
pub(crate) fn warn_on_listener_error(what: &str, result: Result<(), ApiError>) {
    if let Err(e) = result {
        log::warn!("robust-api: a {what} failed: {e}");
    }
}

/// A foreign callback threw something that is not an `ApiError`: a listener's throw is logged
/// ([`warn_on_listener_error`]); the header provider's becomes `CredentialsUnavailable` where it
/// is asked.
impl From<uniffi::UnexpectedUniFFICallbackError> for ApiError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ApiError::CallbackFailed { reason: e.reason }
    }
}
