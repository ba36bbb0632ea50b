//! The request and response records every binding sees.

use std::collections::HashMap;

/// How a GET uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CachePolicy {
    /// The default: a fresh entry is served without the network (HTTP rules: `max-age`, `Expires`,
    /// `no-cache`, …); otherwise the network is asked (conditionally, with the entry's validators),
    /// and on failure (offline, every backend down, 5xx, timeout) a stale entry is served, flagged.
    NetworkFirst,
    /// Any stored entry (fresh or stale, flagged) before the network; the network only on a miss.
    CacheFirst,
    /// Only the cache; a miss is `ApiError::NotCached`. Never touches the network.
    CacheOnly,
    /// Never read the cache (the response is still stored).
    NetworkOnly,
    /// Answer from the cache at once (even stale) and refresh a stale entry in the background.
    StaleWhileRevalidate,
}

/// What a request does when it cannot be delivered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum OfflinePolicy {
    /// Report the error (the default).
    #[default]
    Fail,
    /// Persist it in the offline queue and answer `202` with `queued` set; it is delivered later.
    Queue,
}

/// The id of a queued request (a UUID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueuedRequestId(pub String);
uniffi::custom_newtype!(QueuedRequestId, String);

impl std::fmt::Display for QueuedRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Circuit-breaker state of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum BreakerState {
    /// Traffic flows; failures are counted.
    Closed,
    /// Fenced off: nothing is sent until the open period ends.
    Open,
    /// One trial call is allowed to decide between CLOSED and OPEN.
    HalfOpen,
}

/// Where the app is in its life cycle (`set_app_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum AppState {
    /// Visible: probes, heartbeats and the queue run normally.
    Foreground,
    /// In the background: no health probes and no WebSocket heartbeats (unless configured), so
    /// the radio can sleep; calls the app makes still go out.
    Background,
}

/// HTTP method of an [`ApiRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum HttpMethod {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
}

impl HttpMethod {
    /// Idempotent per RFC 9110 §9.2.2: repeating it has the same effect as sending it once.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, HttpMethod::Post | HttpMethod::Patch)
    }

    pub(crate) fn as_reqwest(self) -> reqwest::Method {
        match self {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Head => reqwest::Method::HEAD,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
            HttpMethod::Options => reqwest::Method::OPTIONS,
        }
    }
}

/// Whether a request may be sent more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Enum)]
pub enum RetryMode {
    /// Retry idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) and requests carrying an
    /// idempotency key; everything else reaches a server at most once.
    #[default]
    Default,
    /// Never send twice (a connect failure may still move to another backend: nothing was sent).
    Never,
    /// The caller vouches that repeating this request is harmless, whatever its method.
    Always,
}

/// One `name=value` query parameter (order and repeats are kept).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct QueryParam {
    /// Name (unencoded).
    pub name: String,
    /// Value (unencoded).
    pub value: String,
}

/// A request, relative to whichever backend the client picks.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ApiRequest {
    /// HTTP method.
    pub method: HttpMethod,
    /// Path relative to the backend's base URL, e.g. `/api/items/7`.
    pub path: String,
    /// Query parameters, appended in order.
    #[uniffi(default)]
    pub query: Vec<QueryParam>,
    /// Request headers (override the client's default headers).
    #[uniffi(default)]
    pub headers: HashMap<String, String>,
    /// Request body, if any.
    #[uniffi(default = None)]
    pub body: Option<Vec<u8>>,
    /// Per-attempt timeout override.
    #[uniffi(default = None)]
    pub timeout_ms: Option<i32>,
    /// Sent as `Idempotency-Key` on every attempt; makes a non-idempotent request retryable.
    #[uniffi(default = None)]
    pub idempotency_key: Option<String>,
    /// What to do if it cannot be delivered now; `None` = [`OfflinePolicy::Fail`].
    #[uniffi(default = None)]
    pub offline: Option<OfflinePolicy>,
    /// Queued requests in the same group are delivered strictly in order; different groups may be
    /// delivered concurrently. `None` = the default group.
    #[uniffi(default = None)]
    pub queue_group: Option<String>,
    /// Cache policy (GET only); `None` = [`CachePolicy::NetworkFirst`].
    #[uniffi(default = None)]
    pub cache: Option<CachePolicy>,
    /// Retry policy for this request; `None` = [`RetryMode::Default`]. (An `Option` because UniFFI
    /// proc-macros cannot give an enum field a default.)
    #[uniffi(default = None)]
    pub retry: Option<RetryMode>,
    /// Largest response body this request accepts (bytes); `None` = `limits.max_response_bytes`.
    #[uniffi(default = None)]
    pub max_response_bytes: Option<i32>,
    /// Send without the authenticator's credentials and never refresh on a 401 for it (`false`
    /// by default): for the authenticator's own refresh call through this client, so it neither
    /// waits for itself nor carries the expired token. The header provider is still asked. Not
    /// for queued requests (`InvalidRequest`: a replay is always authenticated).
    #[uniffi(default = false)]
    pub skip_authentication: bool,
    /// Queued (`enqueue`, `OfflinePolicy::Queue`): deliver only over an unmetered network — it
    /// waits while the app reports a metered one (`set_network_metered`). A live call ignores it.
    #[uniffi(default = false)]
    pub unmetered_only: bool,
    /// GET only: share one exchange with identical GETs in flight (same URL, user scope and
    /// headers; request coalescing). `None` = yes; `Some(false)` = this request goes out itself.
    #[uniffi(default = None)]
    pub coalesce: Option<bool>,
}

impl ApiRequest {
    /// A request with every optional field empty (cache policy and retry mode at their defaults).
    pub fn new(method: HttpMethod, path: impl Into<String>) -> Self {
        ApiRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            headers: HashMap::new(),
            body: None,
            timeout_ms: None,
            idempotency_key: None,
            retry: None,
            cache: None,
            offline: None,
            queue_group: None,
            max_response_bytes: None,
            skip_authentication: false,
            unmetered_only: false,
            coalesce: None,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(HttpMethod::Get, path)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(path: impl Into<String>, json: impl Into<String>) -> Self {
        let mut r = Self::new(HttpMethod::Post, path);
        r.headers
            .insert("content-type".into(), "application/json".into());
        r.body = Some(json.into().into_bytes());
        r
    }

    /// Adopts an `Idempotency-Key` given as a plain header as the request's key (so the request is
    /// resendable and the queue keeps that key instead of generating one).
    pub(crate) fn adopt_idempotency_header(&mut self) {
        if self.idempotency_key.is_none() {
            self.idempotency_key = self
                .headers
                .iter()
                .find(|(n, _)| n.trim().eq_ignore_ascii_case("idempotency-key"))
                .map(|(_, v)| v.clone());
        }
    }

    /// May this request reach a server more than once?
    pub(crate) fn may_resend(&self) -> bool {
        match self.retry.unwrap_or_default() {
            RetryMode::Never => false,
            RetryMode::Always => true,
            RetryMode::Default => self.method.is_idempotent() || self.idempotency_key.is_some(),
        }
    }
}

/// A successful (2xx/3xx) response.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: i32,
    /// Response headers, names lower-cased; repeated headers are joined with `", "`.
    pub headers: HashMap<String, String>,
    /// Response body.
    pub body: Vec<u8>,
    /// Base URL of the backend that answered.
    pub backend: String,
    /// Attempts sent during this call (1 = first try succeeded).
    pub attempts: i32,
    /// Wall time of the whole call, retries included.
    pub elapsed_ms: i32,
    /// Served from the response cache (possibly after a `304` revalidation).
    pub from_cache: bool,
    /// Served from the cache past its freshness (the network failed, or stale-while-revalidate).
    pub stale: bool,
    /// Age of the cached entry; `None` for a fresh network response.
    pub age_ms: Option<i32>,
    /// Set when the request was not delivered but persisted in the offline queue
    /// (`OfflinePolicy::Queue`); the status is then `202` and the body empty.
    pub queued: Option<QueuedRequestId>,
}

/// Supplies headers at send time — typically fresh credentials, so a request that waited in the
/// offline queue goes out with a current token (credentials are never stored on disk). Called for
/// every call (cache hits included: the cache keys on the final headers), on a blocking thread of
/// its own (never on the client's async workers), so it may block — even on a request through the
/// same client, e.g. to refresh a token — but it is given up on after `timeouts.header_provider_ms`.
/// Throwing (any exception) or returning an error fails the call with
/// `ApiError::CredentialsUnavailable` (retryable; a queued request is rescheduled).
#[uniffi::export(with_foreign)]
pub trait HeaderProvider: Send + Sync {
    /// Headers to add to (and override on) this request, with the credentials of user `scope`:
    /// the current scope (`set_user_scope`) for live calls, the scope a queued request was stored
    /// under for its replay (which happens only while that scope is current). `None`: no user.
    fn headers_for(
        &self,
        method: HttpMethod,
        path: String,
        scope: Option<String>,
    ) -> Result<HashMap<String, String>, crate::error::ApiError>;
}

/// Supplies and refreshes the credentials of each identity scope (OkHttp's `Authenticator`,
/// Alamofire's `AuthenticationInterceptor`): async on every platform (Kotlin `suspend`, Swift
/// `async`, Python `async def`, a JS `Promise`), so it may call the network — even through this
/// client, with `skip_authentication` set — without holding a thread.
///
/// The client keeps each scope's credential headers in memory only (never on disk, in a log or in
/// an error) and adds them to every call of that scope, after the header provider's. When a
/// server answers 401 (`auth.expired_statuses`), the client asks for **one** [`refresh`] per
/// scope however many calls hit the 401 at once, and re-sends each of them once with the new
/// headers — whatever its method: a request answered 401 was not executed (as OkHttp's
/// `Authenticator` assumes). A call whose credentials were already replaced by a refresh that
/// finished meanwhile is re-sent with the new ones without another refresh, so a rotating
/// refresh token is used once: two refreshes of one scope never run at the same time.
///
/// [`refresh`]: Authenticator::refresh
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// The current credential headers of `scope` (e.g. `Authorization: Bearer …`), typically
    /// read from the platform's secure storage. Asked the first time a scope is used and after
    /// `credentials_changed()`; the answer is kept in memory until a refresh replaces it. Failing
    /// fails the call with `CredentialsUnavailable` (retryable; a queued request is rescheduled).
    async fn credentials(
        &self,
        scope: Option<String>,
    ) -> Result<HashMap<String, String>, crate::error::ApiError>;

    /// The server refused `scope`'s credentials: obtain new ones (e.g. POST the refresh token,
    /// store the rotated pair) and return their headers. Called once at a time per scope. Failing
    /// fails the waiting calls with `Unauthorized` and pauses the offline queue until
    /// `credentials_changed()` (or a later refresh succeeds).
    async fn refresh(
        &self,
        scope: Option<String>,
    ) -> Result<HashMap<String, String>, crate::error::ApiError>;
}

impl ApiResponse {
    /// The answer to a request persisted in the offline queue instead of delivered.
    pub(crate) fn queued(id: QueuedRequestId, elapsed_ms: i32) -> Self {
        ApiResponse {
            status: 202,
            headers: HashMap::new(),
            body: Vec::new(),
            backend: "queue".into(),
            attempts: 0,
            elapsed_ms,
            from_cache: false,
            stale: false,
            age_ms: None,
            queued: Some(id),
        }
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
