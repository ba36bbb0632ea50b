//! Test support that needs `robust_api` types (everything else is in the `robust-api-fleet`
//! crate): a recorder of upload progress, for `tests/upload.rs` and `tests/upload_memory.rs`;
//! the secret sweep of a storage folder ([`sweep`]), for the storage tests.
#![allow(dead_code)]

pub mod sweep;

use std::sync::{Arc, Mutex};

use robust_api::{ApiError, UploadProgressListener};

type Hook = Box<dyn Fn(i64, i64) + Send + Sync>;

/// Records every progress call; an optional hook runs on each (e.g. to cancel at 10 %).
#[derive(Default)]
pub struct Progress {
    pub calls: Mutex<Vec<(i64, i64)>>,
    hook: Option<Hook>,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn with_hook(hook: impl Fn(i64, i64) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Progress {
            calls: Mutex::new(Vec::new()),
            hook: Some(Box::new(hook)),
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
        total
    }
}

impl UploadProgressListener for Progress {
    fn on_progress(&self, bytes_sent: i64, total_bytes: i64) -> Result<(), ApiError> {
        self.calls.lock().unwrap().push((bytes_sent, total_bytes));
        if let Some(h) = &self.hook {
            h(bytes_sent, total_bytes);
        }
        Ok(())
    }
}
