//! Test support that needs `robust_api` types (everything else is in the `robust-api-fleet`
//! crate): a recorder of upload progress, for `tests/upload.rs` and `tests/upload_memory.rs`;
//! the secret sweep of a storage folder ([`sweep`]), for the storage tests; the fast config of the
//! queue tests ([`queue_config`]).
#![allow(dead_code)]

pub mod sweep;
pub mod tus;

use std::sync::{Arc, Mutex};

use robust_api::{ApiError, ClientConfig, UploadProgressListener};

/// A client of `backends` storing in `dir`, with retry and queue delays short enough for tests,
/// no backoff rounds on live calls (the queue does its own), and room for 1,000 queued entries.
pub fn queue_config(backends: Vec<String>, dir: &std::path::Path) -> ClientConfig {
    let mut c = ClientConfig::new(backends);
    c.storage_dir = Some(dir.to_string_lossy().into_owned());
    c.retry.base_delay_ms = 5;
    c.retry.max_delay_ms = 10;
    c.retry.max_retries = 0;
    c.queue.retry_base_delay_ms = 30;
    c.queue.retry_max_delay_ms = 60;
    c.timeouts.connect_ms = 500;
    c.timeouts.request_ms = 2_000;
    c.queue.max_entries = 1_000;
    c
}

type Hook = Box<dyn Fn(i64, i64) + Send + Sync>;

/// Records every progress call; an optional hook runs on each (e.g. to cancel at 10 %).
#[derive(Default)]
pub struct Progress {
    pub calls: Mutex<Vec<(i64, i64)>>,
    /// The name of the thread each call ran on (`None`: an unnamed thread).
    pub threads: Mutex<Vec<Option<String>>>,
    hook: Option<Hook>,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn with_hook(hook: impl Fn(i64, i64) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Progress {
            hook: Some(Box::new(hook)),
            ..Progress::default()
        })
    }

    pub fn calls(&self) -> Vec<(i64, i64)> {
        self.calls.lock().unwrap().clone()
    }

    /// Asserts: same total on every call, strictly increasing values, the last one the total.
    pub fn assert_monotonic_to_total(&self) -> i64 {
        let calls = self.calls();
        assert!(!calls.is_empty(), "no progress calls");
        let total = calls[0].1;
        assert!(
            calls.iter().all(|c| c.1 == total),
            "total changed: {calls:?}"
        );
        assert!(
            calls.windows(2).all(|w| w[0].0 < w[1].0),
            "not strictly increasing: {calls:?}"
        );
        assert_eq!(calls.last().unwrap().0, total, "does not end at the total");
        assert_eq!(
            calls.iter().filter(|c| c.0 == total).count(),
            1,
            "the total is reported once"
        );
        self.assert_off_the_client_threads();
        total
    }

    /// Asserts that no call ran on one of the client's own threads (its runtime's workers and
    /// blocking pool are named `robust-api`, its delivery threads `robust-api-…`): a foreign
    /// callback made from inside a call runs on the caller's side (the thread awaiting the call).
    pub fn assert_off_the_client_threads(&self) {
        let threads = self.threads.lock().unwrap().clone();
        assert!(!threads.is_empty(), "no progress calls");
        assert!(
            threads
                .iter()
                .all(|t| !t.as_deref().unwrap_or("").starts_with("robust-api")),
            "progress ran on the client's threads: {threads:?}"
        );
    }
}

impl UploadProgressListener for Progress {
    fn on_progress(&self, bytes_sent: i64, total_bytes: i64) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push((bytes_sent, total_bytes));
        let thread = std::thread::current().name().map(str::to_owned);
        self.threads.lock().unwrap().push(thread);
        if let Some(h) = &self.hook {
            h(bytes_sent, total_bytes);
        }
        Ok(())
    }
}
