//! # robust-api
//!
//! A network layer for mobile apps that keeps working when backends, networks and the app itself fail.
//! One Rust core; UniFFI generates the Kotlin, Swift and Python bindings.
//!
//! The request path, in order (see [`pipeline`]):
//! 1. [`pipeline::select`] ranks the backends (health, latency EWMA, configured order) and skips those
//!    whose [`pipeline::breaker`] is open;
//! 2. [`pipeline::transport`] sends one attempt with reqwest;
//! 3. [`pipeline::retry`] classifies the outcome and decides: fail over to the next backend, back off and
//!    retry, or stop (never re-sending a non-idempotent request);
//! 4. [`pipeline::hedge`] optionally races a second attempt against a slow first one.
//!
//! [`pipeline::health`] probes every backend in the background; [`status`] turns all of it into one
//! [`ServiceStatus`] snapshot and fans events out to listeners.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
mod client;
mod config;
mod error;
mod ids;
pub mod pipeline;
pub mod queue;
mod runtime;
pub mod status;
mod store;
mod types;
mod ws;
mod upload;

pub use cache::{CachePolicy, CacheStatus};
pub use client::RobustClient;
pub use config::{default_client_config, ClientConfig};
pub use error::ApiError;
pub use status::{
    BackendStatus, BreakerState, ServiceStatus, StatusCounters, StatusEvent, StatusListener,
};
pub use queue::{
    DeadLetter, OfflinePolicy, QueueListener, QueueOutcome, QueueStatus, QueuedRequestId, QueuedRequestInfo,
};
pub use types::{ApiRequest, ApiResponse, HeaderProvider, HttpMethod, QueryParam, RetryMode};
pub use upload::{UploadCancelToken, UploadProgressListener, UploadRequest};

pub use ws::{SocketStatus, WebSocketConnection, WebSocketListener, WebSocketState};

uniffi::setup_scaffolding!();
