//! [`CancelToken`]: cancels calls and uploads from anywhere (a "Cancel" button, Swift's
//! `withTaskCancellationHandler`), whatever the foreign async runtime propagates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cancels the calls and uploads it is passed to (`RobustClient::request_with_token`,
/// `RobustClient::upload_file_with_token`) from any thread: their network I/O stops (the
/// connection is dropped) and they fail with `ApiError::Cancelled`. Once cancelled it stays
/// cancelled (a call started with it fails at once): use a new token per call.
#[derive(Debug, Default, uniffi::Object)]
pub struct CancelToken {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

#[uniffi::export]
impl CancelToken {
    /// A token not yet cancelled.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Cancels every call and upload using this token (idempotent; never blocks).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl CancelToken {
    /// Resolves once cancelled.
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
