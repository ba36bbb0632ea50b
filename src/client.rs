//! `RobustClient`: the exported object. It owns the runtime, the pipeline and the event bus, and each
//! method converts and delegates in a few lines.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::cache::{CacheLayer, HttpCache};
use crate::cancel::CancelToken;
use crate::config::{ClientConfig, Settings};
use crate::error::ApiError;
use crate::events::{Counters, EventBus, StatusListener, StatusSubscription, StorageRecovery};
use crate::net::Network;
use crate::observe::AttemptListener;
use crate::queue::{
    self, DeadLetter, Queue, QueueLayer, QueueListener, QueueOutcome, QueuedRequestInfo,
};
use crate::runtime::ClientRuntime;
use crate::status::{self, ServiceStatus};
use crate::store::{FolderLock, LockError, Schema, Store};
use crate::types::{
    ApiRequest, ApiResponse, AppState, Authenticator, HeaderProvider, QueuedRequestId,
};
use crate::upload::{
    self, PendingUpload, Records, ResumableUploadListener, UploadProgressListener, UploadRequest,
    UploadSettings, Uploads,
};
use crate::ws::{SocketRegistry, WebSocketConnection, WebSocketListener, WsSettings};

/// Where the client keeps its files; a temporary directory is removed with the client (and the
/// offline queue refuses to store anything there: it would not be durable).
enum Storage {
    /// The app's folder, locked until this client shuts down (one sender per folder).
    Dir(PathBuf, Mutex<Option<FolderLock>>),
    Temp(tempfile::TempDir),
}

impl Storage {
    fn open(dir: Option<&str>) -> Result<Self, ApiError> {
        match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| ApiError::Storage {
                    reason: format!("storage_dir {d:?} cannot be created: {e}"),
                })?;
                let lock = FolderLock::acquire(Path::new(d)).map_err(|e| match e {
                    LockError::InUse => ApiError::Storage {
                        reason: format!(
                            "storage_dir {d:?} is already in use by another client (one client \
                             per folder: share one RobustClient, or give each its own folder)"
                        ),
                    },
                    LockError::Io(e) => ApiError::Storage {
                        reason: format!("storage_dir {d:?} cannot be locked: {e}"),
                    },
                })?;
                Ok(Storage::Dir(PathBuf::from(d), Mutex::new(Some(lock))))
            }
            None => tempfile::Builder::new()
                .prefix("robust-api-")
                .tempdir()
                .map(Storage::Temp)
                // On Android the process temp dir (/data/local/tmp) is not writable by apps.
                .map_err(|e| {
                    ApiError::invalid_config(format!(
                        "no storage_dir given and no temporary directory is writable ({e}); \
                         pass the app's files directory (Android: context.filesDir, iOS: Application Support)"
                    ))
                }),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Storage::Dir(p, _) => p,
            Storage::Temp(t) => t.path(),
        }
    }

    /// Does what is written here outlive the client?
    fn durable(&self) -> bool {
        matches!(self, Storage::Dir(..))
    }

    /// Frees the folder for another client (after shutdown: the files are closed).
    fn release(&self) {
        if let Storage::Dir(_, lock) = self {
            lock.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }
}

/// A resilient HTTP client over several backends. Create one per app and share it; it is cheap to
/// call from any thread and any async runtime.
#[derive(uniffi::Object)]
pub struct RobustClient {
    net: Arc<Network>,
    cache: Arc<HttpCache>,
    queue: Arc<Queue>,
    /// The request stack's top: queue layer → cache layer → network.
    stack: QueueLayer,
    upload: UploadSettings,
    uploads: Arc<Uploads>,
    ws: WsSettings,
    runtime: ClientRuntime,
    events: Arc<EventBus>,
    storage: Storage,
    sockets: Arc<SocketRegistry>,
}

impl std::fmt::Debug for RobustClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobustClient")
            .field("backends", &self.net.settings().backends)
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl RobustClient {
    /// Validates `config`, starts the client's runtime and the health probes.
    #[uniffi::constructor]
    pub fn new(config: ClientConfig) -> Result<Arc<Self>, ApiError> {
        let settings = Settings::from_config(&config)?;
        let storage = Storage::open(settings.storage_dir.as_deref())?;
        let counters = Arc::new(Counters::default());
        let events = Arc::new(EventBus::new(counters.clone())?);
        // The queue file first: on the first open of a folder written by an older version it
        // takes the queue rows over from the cache file, whose next migration drops them.
        let queue_schema = Schema::QUEUE.with_durability(settings.queue.durability);
        let (queue_store, recovered) = Store::open_schema_deferred(storage.path(), queue_schema)
            .map_err(|reason| ApiError::Storage { reason })?;
        if let Some(r) = recovered {
            events.storage_recovered(r.record());
        }
        let (store, recovered) = Store::open_schema_deferred(storage.path(), Schema::CACHE)
            .map_err(|reason| ApiError::Storage { reason })?;
        if let Some(r) = recovered {
            events.storage_recovered(r.record());
        }
        let store = Arc::new(store);
        let (uploads_store, recovered) =
            Store::open_schema_deferred(storage.path(), Schema::UPLOADS)
                .map_err(|reason| ApiError::Storage { reason })?;
        if let Some(r) = recovered {
            events.storage_recovered(r.record());
        }
        let runtime = ClientRuntime::new(settings.worker_threads)?;
        let net = Arc::new(Network::new(settings.net, events.clone(), counters)?);
        let identity = net.identity().clone();
        let queue = Queue::new(
            Arc::new(queue_store),
            settings.queue.clone(),
            events.clone(),
            identity,
            storage.durable(),
        )?;
        let cache = Arc::new(HttpCache::new(
            store,
            settings.cache.clone(),
            settings.queue.sensitive_headers.clone(),
            events.clone(),
        ));
        let cleanup_every = settings.cache.cleanup_interval;
        let stack = QueueLayer::new(queue.clone(), CacheLayer::new(cache.clone(), net.clone()));
        let uploads = Uploads::new(
            net.clone(),
            settings.upload.clone(),
            Arc::new(Records::new(
                Arc::new(uploads_store),
                settings.queue.sensitive_headers.clone(),
            )),
            net.identity().clone(),
        )?;
        let u = uploads.clone();
        runtime.spawn_supervised("resumable uploads", move || u.clone().run());
        let probing = net.clone();
        runtime.spawn_supervised("health probe", move || probing.clone().run_health_probes());
        let (q, replay_layer) = (queue.clone(), CacheLayer::new(cache.clone(), net.clone()));
        runtime.spawn_supervised("queue replay", move || {
            queue::run(q.clone(), replay_layer.clone())
        });
        let w = cache.clone();
        runtime.spawn_supervised("cache writer", move || w.clone().run_writer());
        let c = cache.clone();
        runtime.spawn_supervised("cache cleanup", move || {
            let c = c.clone();
            async move {
                loop {
                    tokio::time::sleep(cleanup_every).await;
                    c.cleanup();
                }
            }
        });
        Ok(Arc::new(RobustClient {
            net,
            cache,
            queue,
            stack,
            upload: settings.upload,
            uploads,
            ws: settings.ws,
            runtime,
            events,
            storage,
            sockets: Arc::default(),
        }))
    }

    /// Sends `request` to the best backend, failing over, retrying and hedging as configured.
    /// With `offline: Some(OfflinePolicy::Queue)`, a request that cannot be delivered now (offline,
    /// every backend down, retries exhausted on a retryable failure) is persisted in the offline
    /// queue and answered with status `202` and `queued` set; it gets an idempotency key before its
    /// first attempt, so every attempt, live or replayed, carries the same one.
    pub async fn request(&self, mut request: ApiRequest) -> Result<ApiResponse, ApiError> {
        request.adopt_idempotency_header();
        if !self.runtime.is_closed() {
            // A fresh hit in memory is answered here, on the caller's thread: no task, no wake-up.
            if let Some(answer) = self.stack.answer_at_hand(&request) {
                return answer;
            }
        }
        let stack = self.stack.clone();
        self.runtime
            .call(async move { stack.send(request).await })
            .await
    }

    /// `request`, cancellable from anywhere with `token.cancel()` (e.g. Swift's
    /// `withTaskCancellationHandler`, since Swift task cancellation does not reach Rust): the
    /// attempt in flight is dropped (its connection closed) and the call fails with `Cancelled`.
    pub async fn request_with_token(
        &self,
        mut request: ApiRequest,
        token: Arc<CancelToken>,
    ) -> Result<ApiResponse, ApiError> {
        request.adopt_idempotency_header();
        let stack = self.stack.clone();
        self.runtime
            .call(async move {
                let send = stack.send(request);
                tokio::select! {
                    biased;
                    _ = token.cancelled() => Err(ApiError::Cancelled {
                        reason: "the call was cancelled".into(),
                    }),
                    r = send => r,
                }
            })
            .await
    }

    /// Persists `request` in the offline queue (durable when this returns) for delivery as soon as
    /// possible; `QueueFull` at the bound. Every attempt carries its idempotency key (generated if
    /// the request has none). Credential headers are not stored: see `set_header_provider`.
    pub fn enqueue(&self, mut request: ApiRequest) -> Result<QueuedRequestId, ApiError> {
        request.adopt_idempotency_header();
        self.stack.enqueue(&request)
    }

    /// Replays every pending queued request now (ignoring backoff delays), if the network is up.
    pub fn flush_queue(&self) -> Result<(), ApiError> {
        self.queue.flush()
    }

    /// Pending queued requests, oldest first.
    pub fn queued_requests(&self) -> Result<Vec<QueuedRequestInfo>, ApiError> {
        self.queue.pending()
    }

    /// Requests the queue gave up on, with the server's answer (at most 64 KiB of it), oldest
    /// first. At most 200 are kept (and 4 MiB): beyond, the oldest are evicted, each with an
    /// outcome. See `dead_letters_page` to read them in pages.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, ApiError> {
        self.queue.dead_letters(0, u32::MAX)
    }

    /// `limit` dead letters after skipping `offset` (oldest first); a negative argument is
    /// `InvalidRequest`.
    pub fn dead_letters_page(&self, offset: i32, limit: i32) -> Result<Vec<DeadLetter>, ApiError> {
        if offset < 0 || limit < 0 {
            return Err(ApiError::invalid_request(
                "dead_letters_page: offset and limit must not be negative",
            ));
        }
        self.queue.dead_letters(offset as u32, limit as u32)
    }

    /// Recent outcomes (delivered / dead-lettered), also those no listener has seen yet.
    pub fn queue_outcomes(&self) -> Result<Vec<QueueOutcome>, ApiError> {
        self.queue.outcomes()
    }

    /// Removes a pending or dead-lettered entry; `false` if there was none.
    pub fn remove_queued(&self, id: QueuedRequestId) -> Result<bool, ApiError> {
        self.queue.remove(&id)
    }

    /// Puts a dead letter back in the queue (attempts reset); `false` if there was none.
    pub fn retry_dead_letter(&self, id: QueuedRequestId) -> Result<bool, ApiError> {
        self.queue.retry_dead_letter(&id)
    }

    /// Removes every pending and dead-lettered entry (every scope), leaving no recoverable bytes.
    pub fn clear_queue(&self) -> Result<(), ApiError> {
        self.queue.clear()
    }

    /// Sets the listener for queued requests' outcomes; it first receives every outcome it missed.
    pub fn set_queue_listener(&self, listener: Arc<dyn QueueListener>) {
        self.queue.set_listener(listener);
    }

    /// Sets the provider of per-call headers (fresh credentials), called for every call and every
    /// queued replay, with the user scope whose credentials are wanted.
    pub fn set_header_provider(&self, provider: Arc<dyn HeaderProvider>) {
        self.net.set_header_provider(provider);
    }

    /// Sets the authenticator: it supplies each user scope's credential headers (added to every
    /// call, live or queued, after the header provider's) and refreshes them when a server answers
    /// 401 (`auth.expired_statuses`) — once for all calls refused at the same time, each re-sent
    /// once with the new credentials (any method: a refused request was not executed). A call
    /// refused again after the refresh, or whose refresh failed, fails with `Unauthorized`; queued
    /// requests then wait (not dead-lettered, not re-sent) until `credentials_changed()`. The
    /// refresh may call this client with `skip_authentication: true`. Credentials stay in memory
    /// only.
    pub fn set_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        self.net.set_authenticator(authenticator);
    }

    /// Tells the client the app has new credentials (a login, a token refreshed outside the
    /// client): the authenticator's `credentials` is asked again on the next call of each scope,
    /// and queued requests paused by a failed refresh resume.
    pub fn credentials_changed(&self) {
        self.net.credentials_changed();
    }

    /// Says who the current user is (`None`: nobody, e.g. logged out). Cache entries and queued
    /// requests are tagged with the scope current when they are stored; lookups, stale
    /// fallbacks, `CacheFirst`/`CacheOnly`, queue listings and replays only see the current
    /// scope's. Queued requests of another scope wait (not sent, not dead-lettered) until their
    /// scope is current again or `clear_user_data` removes them.
    pub fn set_user_scope(&self, scope: Option<String>) {
        // The remembered cache-key tags hold the previous user's header values (memory only).
        self.cache.forget_tags();
        self.net.identity().set(scope);
    }

    /// The current user scope (see `set_user_scope`).
    pub fn current_user_scope(&self) -> Option<String> {
        self.net.identity().current()
    }

    /// The logout call: deletes `scope`'s cache entries, queued requests, dead letters and
    /// outcomes, leaving no recoverable bytes in the storage files. Other scopes are untouched.
    pub fn clear_user_data(&self, scope: String) -> Result<(), ApiError> {
        let queue = self.queue.clear_scope(&scope);
        self.cache.clear_scope(&scope)?;
        self.uploads.clear_scope(&scope)?;
        queue
    }

    /// `GET path`.
    pub async fn get(&self, path: String) -> Result<ApiResponse, ApiError> {
        self.request(ApiRequest::get(path)).await
    }

    /// `POST path` with a JSON body (`Content-Type: application/json`). Sent at most once unless you
    /// use `request` with an idempotency key.
    pub async fn post_json(&self, path: String, json: String) -> Result<ApiResponse, ApiError> {
        self.request(ApiRequest::post_json(path, json)).await
    }

    /// Uploads a file from disk as `multipart/form-data` (`POST request.path`), streamed in chunks
    /// (memory stays flat whatever the size), with progress on `listener` (every 1 % or 250 ms, then
    /// once at the total). Its own retry policy: an idle timeout (`upload_idle_timeout_ms`) instead
    /// of a total one, `upload_max_retries` backoff rounds, always an `Idempotency-Key` (generated
    /// if the request has none), another backend only before the first byte was sent. A missing or
    /// unreadable file is `InvalidRequest` before anything is sent. Cancel by cancelling the call
    /// (coroutine, task) or see `upload_file_with_token`.
    #[uniffi::method(default(listener = None))]
    pub async fn upload_file(
        &self,
        request: UploadRequest,
        listener: Option<Box<dyn UploadProgressListener>>,
    ) -> Result<ApiResponse, ApiError> {
        self.upload_reporting(request, listener, None).await
    }

    /// `upload_file`, cancellable from anywhere with `token.cancel()` (e.g. a "Cancel" button):
    /// network I/O stops at once and the call fails with `Cancelled`.
    #[uniffi::method(default(listener = None))]
    pub async fn upload_file_with_token(
        &self,
        request: UploadRequest,
        token: Arc<CancelToken>,
        listener: Option<Box<dyn UploadProgressListener>>,
    ) -> Result<ApiResponse, ApiError> {
        self.upload_reporting(request, listener, Some(token)).await
    }

    /// Uploads a video: `file_path` as form field `file` and `title` as field `title`, to the
    /// configured `upload_video_path` (default `/api/videos`); see `upload_file`.
    #[uniffi::method(default(listener = None))]
    pub async fn upload_video_file(
        &self,
        file_path: String,
        title: String,
        listener: Option<Box<dyn UploadProgressListener>>,
    ) -> Result<ApiResponse, ApiError> {
        let request = upload::video_request(&self.upload.video_path, file_path, title);
        self.upload_file(request, listener).await
    }

    /// The current user scope's resumable uploads that are not finished (active, paused or
    /// failed), oldest first — also those a killed process left behind.
    pub fn pending_uploads(&self) -> Result<Vec<PendingUpload>, ApiError> {
        self.uploads.pending()
    }

    /// Starts every active resumable upload of the current user scope that is not running (they
    /// also resume by themselves when the client starts, the network returns, a backend recovers
    /// or the scope changes). Nothing while offline.
    pub fn resume_uploads(&self) -> Result<(), ApiError> {
        let uploads = self.uploads.clone();
        self.runtime.enter(|| uploads.resume_all())
    }

    /// Pauses resumable upload `id` (its transfer stops now; the server keeps what it confirmed).
    /// `false`: no unfinished upload with this id in the current scope.
    pub fn pause_upload(&self, id: String) -> Result<bool, ApiError> {
        self.uploads.pause(&id)
    }

    /// Resumes a paused resumable upload now (when online). `false`: no such upload.
    pub fn resume_upload(&self, id: String) -> Result<bool, ApiError> {
        let uploads = self.uploads.clone();
        self.runtime.enter(|| uploads.resume(&id))
    }

    /// Cancels resumable upload `id`: its transfer stops, its copy on the server is deleted (tus
    /// termination) and its record removed. `false`: no such upload in the current scope. An
    /// error means the server's copy could not be deleted (the record is removed anyway; the
    /// server's copy expires on its own).
    pub async fn cancel_upload(&self, id: String) -> Result<bool, ApiError> {
        let uploads = self.uploads.clone();
        self.runtime
            .call(async move { uploads.cancel(&id).await })
            .await
    }

    /// Attaches `listener` to resumable upload `id` (e.g. after the app restarted): it hears the
    /// confirmed offset at once, then progress and the final outcome. One listener per upload
    /// (a new one replaces it). `false`: no such upload in the current scope.
    pub fn attach_upload_listener(
        &self,
        id: String,
        listener: Arc<dyn ResumableUploadListener>,
    ) -> Result<bool, ApiError> {
        self.uploads.attach(&id, listener)
    }

    /// Opens a WebSocket to `path` on the best backend (`http` → `ws`, `https` → `wss`) and returns
    /// at once (state `Connecting`); `listener.on_open(backend)` follows when connected. The
    /// connection pings every `ws_heartbeat_interval_ms`, reconnects with jittered backoff (to
    /// another backend if its own fails), waits while the network is reported unavailable, and
    /// buffers `send_*` while not open. It stays open until `close` or the client's shutdown.
    /// The handshake carries the default headers and the header provider's. Fails only for an
    /// invalid path (`InvalidRequest`) or after shutdown (`Cancelled`).
    pub fn connect_websocket(
        &self,
        path: String,
        listener: Arc<dyn WebSocketListener>,
    ) -> Result<Arc<WebSocketConnection>, ApiError> {
        self.sockets
            .connect(&self.net, &self.ws, &self.runtime, path, listener)
    }

    /// A snapshot of backends, breakers, latency and counters.
    pub fn service_status(&self) -> ServiceStatus {
        status::snapshot(
            &self.net,
            &self.cache,
            &self.queue,
            &self.sockets,
            &self.events,
        )
    }

    /// Returns and forgets the storage recoveries `service_status()` shows (damaged files that
    /// were recreated: what was salvaged, what was lost).
    pub fn take_storage_recoveries(&self) -> Vec<StorageRecovery> {
        self.events.take_recoveries()
    }

    /// The stored answer to GET `request` for the current user scope, synchronously and without
    /// the network (a thin bridge for UI code that must render now): a fresh entry — or, with
    /// `allow_stale`, one that may stand in for a failed network (never a `no-cache` or
    /// `must-revalidate` one past its freshness) — else `None`. Hot entries come from memory;
    /// the header provider, if any, is asked on the calling thread. A stored 4xx is
    /// `ApiError::Http`, as from `request`.
    pub fn cached_response(
        &self,
        request: ApiRequest,
        allow_stale: bool,
    ) -> Result<Option<ApiResponse>, ApiError> {
        self.cached(&request, allow_stale)
    }

    /// [`cached_response`](Self::cached_response) for a plain `GET path` (query included, the
    /// client's default headers): the cheapest read across a binding, which hands over one string
    /// instead of a request record (in Python, lowering an `ApiRequest` costs more than the
    /// cache hit itself).
    pub fn cached_get(
        &self,
        path: String,
        allow_stale: bool,
    ) -> Result<Option<ApiResponse>, ApiError> {
        self.cached_response(ApiRequest::get(path), allow_stale)
    }

    /// A prepared [`cached_get`](Self::cached_get) of `path`, for a screen that reads the same
    /// entry on every frame: its `read` hands nothing across the bridge but a flag (in Python,
    /// lowering the path string costs more than the hit itself). `InvalidRequest` for a path
    /// that can form no request. The reader keeps the client alive.
    pub fn cached_reader(self: Arc<Self>, path: String) -> Result<Arc<CachedReader>, ApiError> {
        crate::http::request_target(&path, &[])?;
        Ok(Arc::new(CachedReader {
            client: self,
            request: ApiRequest::get(path),
        }))
    }

    /// Empties the response cache (every scope), leaving no recoverable bytes.
    pub fn clear_cache(&self) {
        self.cache.clear();
    }

    /// Closes every circuit breaker (e.g. after the user taps "retry").
    pub fn reset_circuit_breakers(&self) {
        self.net.reset_breakers();
    }

    /// Forward the platform's reachability here. While `false`, calls fail with `Offline` at once and
    /// no probes are sent; `true` probes every backend right away.
    pub fn set_network_available(&self, available: bool) {
        self.net.set_online(available);
    }

    /// Forward the app's life cycle here (Android `ProcessLifecycleOwner`, iOS
    /// `UIApplication.didEnterBackground`/`willEnterForeground`). In the background no health
    /// probes and no WebSocket heartbeats go out (unless `health.in_background` /
    /// `websocket.heartbeat_in_background`); calls the app makes still do. Back in the
    /// foreground: a probe round at once, a ping on every open WebSocket, and a queue flush.
    pub fn set_app_state(&self, state: AppState) {
        self.net.set_app_state(state);
    }

    /// Forward whether the current network is metered (Android
    /// `NET_CAPABILITY_NOT_METERED`, iOS `NWPath.isExpensive`/`isConstrained`). While metered,
    /// queued requests marked `unmetered_only` wait; everything else goes out as usual.
    pub fn set_network_metered(&self, metered: bool) {
        self.net.set_metered(metered);
    }

    /// Sets (replaces) the listener of attempt records (`clear_attempt_listener` removes it): one per HTTP attempt
    /// of a call (`request`, `get`, `post_json`, queued replays) — backend, method, path without
    /// query, attempt number and reason, new or reused connection, time to first byte and total,
    /// body bytes, outcome. A cache hit makes no attempt and no record. Called on a thread of
    /// the client's own; a slow listener loses records (counted), never slows a call.
    pub fn set_attempt_listener(&self, listener: Arc<dyn AttemptListener>) -> Result<(), ApiError> {
        self.net.set_attempt_listener(Some(listener))
    }

    /// Removes the attempt listener (records stop; the recent windows keep counting).
    pub fn clear_attempt_listener(&self) {
        // Removing starts no thread: it cannot fail.
        let _ = self.net.set_attempt_listener(None);
    }

    /// Adds a listener for breaker, backend-health and network events (called on a background
    /// thread); the returned subscription's `remove()` detaches it.
    pub fn add_status_listener(
        &self,
        listener: Arc<dyn StatusListener>,
    ) -> Arc<StatusSubscription> {
        self.events.add(listener)
    }

    /// The directory holding the client's persistent state.
    pub fn storage_path(&self) -> String {
        self.storage.path().to_string_lossy().into_owned()
    }

    /// Stops probes and background tasks and cancels calls in flight (they fail with `Cancelled`).
    /// Later calls fail with `Cancelled`. Closes the storage files and frees the `storage_dir` for
    /// another client. Dropping the client does the same.
    pub fn shutdown(&self) {
        self.sockets.shutdown(); // listeners hear `on_closed(1001, …)`; the runtime aborts the tasks
        self.runtime.shutdown();
        self.cache.close(); // releases the database files
        self.queue.close();
        self.uploads.close();
        self.events.close();
        self.net.close_recorder();
        self.storage.release(); // another client may use the folder now
    }
}

impl RobustClient {
    /// The thin-bridge read of GET `request` in the current user scope (see `cached_response`).
    fn cached(
        &self,
        request: &ApiRequest,
        allow_stale: bool,
    ) -> Result<Option<ApiResponse>, ApiError> {
        let scope = self.net.identity().current();
        CacheLayer::new(self.cache.clone(), self.net.clone()).cached(request, scope, allow_stale)
    }

    /// An upload as a task on the client's runtime; `listener` hears its progress on the caller's
    /// side (the thread awaiting this call), never on the runtime's threads.
    async fn upload_reporting(
        &self,
        request: UploadRequest,
        listener: Option<Box<dyn UploadProgressListener>>,
        token: Option<Arc<CancelToken>>,
    ) -> Result<ApiResponse, ApiError> {
        let listener: Option<Arc<dyn UploadProgressListener>> = listener.map(Arc::from);
        let reports = listener.is_some();
        let (uploads, net, settings) =
            (self.uploads.clone(), self.net.clone(), self.upload.clone());
        self.runtime
            .call_reporting(
                move |sink| {
                    let sink = reports.then_some(sink);
                    upload::send(uploads, net, settings, request, sink, token)
                },
                upload::deliver_to(listener),
            )
            .await
    }
}

/// A prepared cache read of one path ([`RobustClient::cached_reader`]).
#[derive(uniffi::Object)]
pub struct CachedReader {
    client: Arc<RobustClient>,
    request: ApiRequest,
}

#[uniffi::export]
impl CachedReader {
    /// [`RobustClient::cached_get`] of the reader's path, for the user scope current now.
    pub fn read(&self, allow_stale: bool) -> Result<Option<ApiResponse>, ApiError> {
        self.client.cached(&self.request, allow_stale)
    }

    /// The path this reader reads.
    pub fn path(&self) -> String {
        self.request.path.clone()
    }
}

impl Drop for RobustClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change of user forgets the cache-key tags remembered for hot lookups: their inputs hold
    /// the previous user's header values (an `Authorization` token), in memory only.
    #[test]
    fn a_change_of_user_forgets_the_remembered_key_tags() {
        let client =
            RobustClient::new(ClientConfig::new(vec!["http://127.0.0.1:9".into()])).unwrap();
        let mut req = ApiRequest::get("/me");
        req.headers
            .insert("authorization".into(), "Bearer ALICE".into());
        // A synchronous read computes (and remembers) the request's key tag.
        assert!(client.cached_response(req, false).unwrap().is_none());
        assert!(client.cache.remembered_tags() > 0);
        client.set_user_scope(Some("bob".into()));
        assert_eq!(client.cache.remembered_tags(), 0);
        client.shutdown();
    }
}
