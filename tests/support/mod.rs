//! Shared helpers for the integration tests (each test binary uses a subset).
#![allow(dead_code)]

pub mod fleet;
pub mod ws_server;

use std::time::{Duration, Instant};

/// Polls `cond` every 5 ms until it holds; fails the test with `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
