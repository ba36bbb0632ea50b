//! A local **test fleet**: N real HTTP/1.1 servers on `127.0.0.1`, each with a switchable [`Fault`],
//! plus WebSocket test servers ([`ws`]) and the helpers the integration tests share.
//!
//! Used by the integration tests, the demo, the benchmarks and (through `examples/test-fleet.rs`)
//! by the Kotlin/Swift/Python tests. Real sockets, no mocks. A dev-dependency of `robust-api`
//! that never depends on it: `std`, `tokio`, `sha2` (the upload route), `tokio-tungstenite` and
//! `futures-util` (the WebSocket servers), `fastrand` (test files).
//!
//! # Modules
//! * `http` (crate-private): HTTP/1.1 request parsing and response writing, shared by the
//!   backends, both control APIs and the WebSocket servers' handshake.
//! * `server`: [`Fleet`] and [`Server`]: the accept loop, the per-connection request loop,
//!   idempotency; `routes`: the normal routes; `fault`: what each [`Fault`] does.
//! * `control`: the [`ControlServer`] (plain-text control API for the binding suites).
//! * `upload`: the streaming upload route ([`StoredUpload`]); [`multipart`]: its body parser.
//! * `tls`: [`TlsFront`], TLS termination in front of any server (HTTPS/WSS tests).
//! * `alpn`: [`AlpnServer`], a TLS server offering HTTP/2 or HTTP/1.1 through ALPN (hyper), counting
//!   connections (connection-sharing tests).
//! * `proxy`: [`HttpProxy`], an HTTP relay that counts wire bytes, cuts connections mid-body and
//!   answers chosen requests itself (resumable-upload tests).
//! * [`ws`]: WebSocket servers ([`ws::WsFleet`]) and their control API.
//! * helpers for tests: [`wait_until`], [`make_file`], [`sha256_file`], [`json_str`], [`json_num`].
//!
//! # Routes (when no fault is active)
//! Routing is by path only; every method is accepted.
//! * `/api/health` → `200`, `text/plain`, body `ok`; or `200` `application/json` with the body set
//!   by [`Server::set_health_body`] (e.g. `{"status":"degraded"}`).
//! * `/bytes/{n}` → `200`, `application/octet-stream`, `n` bytes (capped at 64 MiB) of
//!   [`pattern_byte`] content; a non-numeric `n` → `400`.
//! * `/gzip/{n}` → `200`, the `/bytes/{n}` content, gzip-compressed (`Content-Encoding: gzip`) when
//!   the request's `Accept-Encoding` lists `gzip`, plain otherwise; always `Vary: Accept-Encoding`
//!   and `X-Accept-Encoding: <the request's Accept-Encoding, or empty>`.
//! * `/gzip-bomb/{mb}` → `200`, `Content-Encoding: gzip` (whatever was asked): `mb` MiB (capped at
//!   64) of one valid gzip member that inflates about 1000-fold (zeros; see [`gzip::bomb`]).
//! * `/echo` → `200`, the request body, with the request's `Content-Type`
//!   (`application/octet-stream` if it had none).
//! * `/cache/...` → `200` JSON `{"server":0,"path":"/cache/a?..","n":N}` (N = this path's hit count),
//!   with caching headers taken from the query: `cc` → `Cache-Control`, `etag` → `ETag` (quoted),
//!   `lm` → `Last-Modified`, `expires` → `Expires`, `vary` → `Vary`, `set_cookie` → `Set-Cookie`
//!   (values percent-decoded; the `set_cookie` parameter is left out of the body's `path`). A
//!   request whose `If-None-Match` matches the etag, or whose `If-Modified-Since` equals `lm`, gets
//!   `304` with the same caching headers and no body. More headers: `date` → `Date`, `age` and
//!   `age2` → one `Age` line each, `conn` → `Connection`, `hop` → `X-Hop`, `keep_alive` →
//!   `Keep-Alive`, `location` → `Location`, `content_location` → `Content-Location`;
//!   `head_etag` replaces `etag` for a `HEAD`; `status=S` answers `S` instead of `200`;
//!   `delay_ms=N` delays the answer N ms (at most 10 s).
//! * `/upload`, `/upload/...`, `/api/videos` (`POST`/`PUT`) → the streaming upload route (see
//!   the `upload` module): the `multipart/form-data` body is parsed as it arrives, never buffered whole
//!   (no 64 MiB limit); the file part is SHA-256-hashed; answers `201` JSON
//!   `{"server":0,"effect":N,"upload":K,"key":..,"path":..,"field_name":..,"file_name":..,
//!   "content_type":..,"size":N,"sha256":"hex","fields":{"title":..}}` and records a
//!   [`StoredUpload`] ([`Server::uploads`]); `Content-Length` required (`411`). A replayed
//!   idempotency key gets the stored answer and stores nothing. Upload fault:
//!   [`Server::set_upload_reset_after`] resets the connection after N body bytes, once.
//! * `/redirect?to=URL&status=S` → `S` (default `307`) with `Location: URL` (percent-decoded) and
//!   `Cache-Control: max-age=600`.
//! * `/auth/token` and `/private/...`: the fleet's [`TokenService`] (access tokens and rotating
//!   refresh tokens; `/private/...` answers `401` without the current access token, before any
//!   effect).
//! * `/hops/{n}` (n > 0) → `307` to `/hops/{n-1}`; `/hops/0` is the JSON default below.
//! * anything else → `200`, `application/json`,
//!   `{"server":0,"method":"GET","path":"/x?q=1"}`; mutations (below) also carry `"effect":N`,
//!   the server's effect counter after applying it, so a replay is recognisable by its body.
//!
//! Every response carries `X-Backend: <index>` and `X-Request-Count: <hits so far, this one included>`.
//!
//! # HTTP details
//! HTTP/1.1 persistent connections (HTTP/1.0 only with `Connection: keep-alive`). Request bodies are
//! framed by `Content-Length` or `Transfer-Encoding: chunked` (decoded; any other transfer coding
//! gets `501`). Heads are capped at 64 KiB (`431`), bodies at 64 MiB (`413`); malformed requests get
//! `400`; each of these closes the connection. `Expect: 100-continue` is honoured. `HEAD` gets the
//! headers without a body. Responses always use `Content-Length`.
//!
//! # Idempotency
//! `POST`/`PUT`/`PATCH`/`DELETE` are *mutations*. A mutation that reaches normal handling (no fault,
//! or `Slow`/`Truncate`/`ResetMidBody`, see [`Fault`]) applies one *effect*, unless it carries an
//! `Idempotency-Key` that already produced a response: then that stored response (same status,
//! headers and body) is replayed with `Idempotent-Replayed: true` and no effect is applied.
//! [`Server::unique_effects`] counts applied effects. The key is not checked against the payload.
//! While a first-time key's request is being handled (a `Slow` answer not yet sent), a duplicate gets
//! `409` `request with this key in progress`. [`Fleet::start_sharing_keys`] makes the servers share
//! one store. The store keeps the last 100 000 keys.

mod alpn;
mod auth;
mod control;
mod fault;
pub mod gzip;
mod helpers;
mod http;
pub mod multipart;
mod proxy;
mod routes;
mod server;
mod tasks;
mod tls;
mod tus;
mod upload;
pub mod ws;

use std::sync::{Mutex, MutexGuard};

pub use alpn::{AlpnServer, Protocol};
pub use auth::TokenService;
pub use control::ControlServer;
pub use fault::{Fault, BROKEN_DECLARED_LEN, BROKEN_SENT_LEN};
pub use helpers::{json_num, json_str, make_file, sha256_file, wait_until};
pub use http::{pattern_byte, MAX_BODY, MAX_HEAD};
pub use multipart::MAX_UPLOAD_FIELD;
pub use proxy::{Canned, HttpProxy};
pub use routes::expected_bytes;
pub use routes::MAX_BYTES_ROUTE;
pub use server::{
    Fleet, RecordedRequest, Server, MAX_IDEMPOTENCY_KEYS, MAX_RECORDED, MAX_RECORDED_BODY,
};
pub use tls::TlsFront;
pub use upload::{StoredUpload, MAX_STORED_UPLOADS};

/// Locks a mutex, ignoring poisoning: a panicking test thread must not make the fleet unusable
/// for the others.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
