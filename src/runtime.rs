//! The client's own small tokio runtime. Every call and background task runs here, so foreign callers
//! (Kotlin coroutines, Swift tasks, Python asyncio) need no runtime of their own: they await a
//! [`Call`], which only waits for the spawned task. Dropping a `Call` (the foreign side cancelled)
//! aborts the task, which drops its in-flight request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::ApiError;

/// A runtime owned by one client.
pub(crate) struct ClientRuntime {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
    closed: AtomicBool,
}

impl ClientRuntime {
    pub(crate) fn new(worker_threads: usize) -> Result<Self, ApiError> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .thread_name("robust-api")
            .enable_all()
            .build()
            .map_err(|e| ApiError::Internal { reason: format!("starting the tokio runtime: {e}") })?;
        Ok(ClientRuntime { handle: runtime.handle().clone(), runtime: Mutex::new(Some(runtime)), closed: AtomicBool::new(false) })
    }

    /// Spawns a background task (aborted at shutdown with the runtime).
    pub(crate) fn spawn_background<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if !self.closed.load(Ordering::SeqCst) {
            drop(self.handle.spawn(fut));
        }
    }

    /// Runs a call on the runtime; the returned future can be awaited from any executor.
    pub(crate) async fn call<T, F>(&self, fut: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        if self.closed.load(Ordering::SeqCst) {
            return Err(shut_down());
        }
        let mut task = AbortOnDrop(self.handle.spawn(fut));
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(shut_down()),
            Err(e) => Err(ApiError::Internal { reason: format!("request task panicked: {e}") }),
        }
    }

    /// Stops every task. Never blocks (safe to call from inside an async context or a callback).
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(rt) = self.runtime.lock().unwrap_or_else(PoisonError::into_inner).take() {
            rt.shutdown_background();
        }
    }
}

fn shut_down() -> ApiError {
    ApiError::Cancelled { reason: "the client was shut down".into() }
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
