//! Shared helpers for the integration tests (each test binary uses a subset).
#![allow(dead_code)]

pub mod fleet;
pub mod ws_server;
