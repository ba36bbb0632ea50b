//! # robust-api
//!
//! A network layer for mobile apps that keeps working when backends, networks and the app itself fail.
//! One Rust core; UniFFI generates the Kotlin, Swift and Python bindings.
//!
//! Layers, each depending only on the ones below it (`tests/architecture.rs` enforces it):
//! 1. **ground**: [`types`] (every exported record and enum), `error`, `events` (event bus,
//!    counters), `observe` (attempt records, the bounded outbox to foreign listeners, recent
//!    windows), `logs` (the SDK's log records forwarded to the app), `http` (URL joining, header conversion, HTTP dates), `tls` (the one rustls
//!    configuration), `defaults` (how config records are written), `ids`, `runtime`, `store`;
//! 2. **network** (`net`): backend ranking, breakers, retry policy, hedging, the transport, health
//!    probes, and the one attempt loop that plain requests, uploads and WebSocket handshakes share;
//! 3. **features**: `cache` (over the network), `queue` (over the cache: replayed writes
//!    invalidate like live ones), `upload`, `ws` — each given the narrow [`net`] handle;
//! 4. **top**: `status` (the snapshot), `config` (the exported config record), `client` (the
//!    exported object: it converts and delegates).
//!
//! The request path is a stack: client → queue layer (offline fallback) → cache layer → network.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unreachable_pub)]

mod cache;
mod cancel;
mod client;
mod config;
mod defaults;
mod error;
mod events;
mod http;
mod ids;
mod logs;
mod net;
mod observe;
mod queue;
mod runtime;
mod status;
mod store;
mod tls;
mod types;
mod upload;
mod ws;

pub use cache::{CacheConfig, CacheStatus};
pub use cancel::CancelToken;
pub use client::{CachedReader, RobustClient};
pub use config::{default_client_config, ClientConfig};
pub use error::ApiError;
pub use events::{
    StatusCounters, StatusEvent, StatusListener, StatusSubscription, StorageRecovery,
};
pub use logs::{clear_log_listener, set_log_listener, LogLevel, LogListener, LogRecord};
pub use net::{
    AuthConfig, BackendStatus, BreakerConfig, CertificatePin, HealthConfig, LimitsConfig,
    RetryConfig, SecurityConfig, TimeoutConfig,
};
pub use observe::{AttemptListener, AttemptOutcome, AttemptReason, AttemptRecord, ConnectionUse};
pub use queue::{
    DeadLetter, QueueConfig, QueueListener, QueueOutcome, QueueStatus, QueuedRequestInfo,
};
pub use status::ServiceStatus;
pub use types::{
    ApiRequest, ApiResponse, AppState, Authenticator, BreakerState, CachePolicy, HeaderProvider,
    HttpMethod, OfflinePolicy, QueryParam, QueuedRequestId, RetryMode,
};
pub use upload::{
    PendingUpload, ResumableUploadListener, UploadConfig, UploadProgressListener, UploadRequest,
    UploadState,
};
pub use ws::{
    SocketStatus, WebSocketConfig, WebSocketConnection, WebSocketListener, WebSocketState,
};

uniffi::setup_scaffolding!();
