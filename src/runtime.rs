//! The client's own small tokio runtime. Background work (probes, hedge legs' connections, reqwest's
//! connection tasks) runs on its worker threads, so foreign callers (Kotlin coroutines, Swift tasks,
//! Python asyncio) need no runtime of their own.
//!
//! A call is not spawned: its future is polled by whoever awaits it (the foreign executor, or a Rust
//! caller's runtime) with this runtime entered for the duration of each poll ([`InRuntime`]). Timers
//! and sockets register with this runtime's drivers, whose threads wake the caller directly. That
//! saves two cross-thread hand-offs per call (spawn, then join) compared with spawning — measured at
//! tens of microseconds on a small VM (see benches/overhead.rs). Dropping the future (the foreign
//! side cancelled) drops the in-flight request; shutdown wakes every call with `Cancelled`; a panic
//! inside a call becomes `ApiError::Internal` instead of unwinding into foreign code.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::Notify;

use crate::error::ApiError;

/// How long a supervised loop that panicked waits before it starts again.
pub(crate) const RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The name of the client runtime's threads (workers and blocking pool).
const THREAD_NAME: &str = "robust-api";

/// Runs blocking I/O (SQLite) without stalling an async worker: on one of the client runtime's
/// worker threads the work is handed to tokio's `block_in_place` (the worker's other tasks move
/// to another thread meanwhile); anywhere else (the app's thread polling a call, a blocking-pool
/// thread, a test's runtime) it simply runs.
pub(crate) fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    if std::thread::current().name() == Some(THREAD_NAME)
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// A runtime owned by one client.
///
/// [`shutdown`](ClientRuntime::shutdown) releases everything the runtime holds — its threads and
/// its drivers' descriptors (an epoll instance and an eventfd per runtime, which live as long as
/// any [`Handle`] to it) — at once, not when the client is dropped: a foreign binding drops its
/// reference late (a JS host object when Hermes' collector gets to it, a Kotlin/Swift/Python
/// object when its finalizer runs), so an app that makes and shuts down clients would otherwise
/// run out of descriptors (tests/shutdown_resources.rs). So no handle outlives shutdown: the
/// runtime's own is dropped there, a call holds a clone only while it runs.
pub(crate) struct ClientRuntime {
    handle: Mutex<Option<Handle>>,
    runtime: Mutex<Option<Runtime>>,
    closed: AtomicBool,
    shutdown: Notify,
}

/// Panics on the client's own threads (workers, blocking pool, the event thread) are contained —
/// every task runs under [`contained`], which logs them — but the default hook would also print
/// them to stderr, where a phone shows nothing and a host app reads a crash. (One case tokio
/// makes unavoidable: a task in the middle of a poll when the runtime shuts down panics if it
/// then arms a timer.) So this hook, installed once and chaining to the previous one for every
/// other thread, turns them into `log::error!` records (which the app's log listener receives).
fn log_panics_on_client_threads() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            match thread.name() {
                Some(name) if name.starts_with(THREAD_NAME) => {
                    log::error!("robust-api: contained panic on thread {name}: {info}");
                }
                _ => previous(info),
            }
        }));
    });
}

impl ClientRuntime {
    pub(crate) fn new(worker_threads: usize) -> Result<Self, ApiError> {
        log_panics_on_client_threads();
        let runtime = Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(|e| ApiError::Internal {
                reason: format!("starting the tokio runtime: {e}"),
            })?;
        Ok(ClientRuntime {
            handle: Mutex::new(Some(runtime.handle().clone())),
            runtime: Mutex::new(Some(runtime)),
            closed: AtomicBool::new(false),
            shutdown: Notify::new(),
        })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The runtime's handle; `None` once shut down.
    fn handle(&self) -> Option<Handle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Spawns a background task (aborted at shutdown with the runtime), panic-contained like
    /// [`spawn_contained`]; `what` names it in the log.
    pub(crate) fn spawn_background<F>(&self, what: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Some(handle) = self.handle() {
            drop(handle.spawn(contained(what, fut)));
        }
    }

    /// Spawns a long-running loop (health probes, queue replay, cache cleanup) that is restarted,
    /// after [`RESTART_DELAY`], if it panics: one bad round never stops the service for good.
    pub(crate) fn spawn_supervised<F, Fut>(&self, what: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_background(what, async move {
            loop {
                if AssertUnwindSafe(make()).catch_unwind().await.is_ok() {
                    return;
                }
                log::error!("robust-api: the {what} task panicked; restarting it");
                tokio::time::sleep(RESTART_DELAY).await;
            }
        });
    }

    /// Runs `f` (synchronous) with this runtime as the context, so the tasks it spawns run here;
    /// `Cancelled` once shut down (there is no runtime to spawn on).
    pub(crate) fn enter<T>(&self, f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
        let Some(handle) = self.handle() else {
            return Err(shut_down());
        };
        let _guard = handle.enter();
        f()
    }

    /// Runs a call with this runtime as its context; the future can be awaited from any executor.
    pub(crate) async fn call<T, F>(&self, fut: F) -> Result<T, ApiError>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        let Some(handle) = self.handle() else {
            return Err(shut_down());
        };
        let guarded = async {
            // Created before the flag is checked: `notify_waiters` reaches it even if not yet polled.
            let shutdown = self.shutdown.notified();
            if self.is_closed() {
                return Err(shut_down());
            }
            tokio::select! {
                biased;
                _ = shutdown => Err(shut_down()),
                r = fut => r,
            }
        };
        InRuntime {
            handle: &handle,
            fut: Box::pin(guarded),
        }
        .await
    }

    /// Stops every task and cancels calls in flight. Never blocks (safe inside async code and
    /// callbacks).
    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.shutdown.notify_waiters();
        // The last handle but those of calls still running, which end now with `Cancelled`.
        drop(
            self.handle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            rt.shutdown_background();
        }
    }
}

impl Drop for ClientRuntime {
    /// Never blocks, so a client can be dropped (or fail to construct) inside async code.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `fut`, catching a panic: it is logged (naming `what`) instead of ending the task silently.
/// Whatever invariant the task holds is restored by the task's own guard (a `Drop` type or its own
/// `catch_unwind`), which runs during the unwinding; this only makes sure nothing dies unseen.
/// Every task the crate spawns goes through here ([`spawn_contained`], `spawn_background`).
pub(crate) async fn contained<F>(what: &'static str, fut: F)
where
    F: Future<Output = ()>,
{
    if let Err(panic) = AssertUnwindSafe(fut).catch_unwind().await {
        log::error!(
            "robust-api: the {what} task panicked (contained): {}",
            panic_message(&*panic)
        );
    }
}

/// `tokio::spawn` on the current runtime through [`contained`]: the one way the crate spawns a
/// task (tests/architecture.rs checks there is no other).
pub(crate) fn spawn_contained<F>(what: &'static str, fut: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(contained(what, fut))
}

fn shut_down() -> ApiError {
    ApiError::Cancelled {
        reason: "the client was shut down".into(),
    }
}

/// Polls `fut` with the client's runtime entered, turning a panic into `ApiError::Internal`.
struct InRuntime<'a, F> {
    handle: &'a Handle,
    fut: Pin<Box<F>>,
}

impl<T, F> Future for InRuntime<'_, F>
where
    F: Future<Output = Result<T, ApiError>>,
{
    type Output = Result<T, ApiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let _entered = self.handle.enter();
        let fut = self.fut.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p,
            Err(panic) => {
                let what = panic_message(&*panic);
                Poll::Ready(Err(ApiError::Internal {
                    reason: format!("a call panicked: {what}"),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn blocking_io_on_the_only_worker_does_not_stall_other_tasks() {
        // One worker: without `block_in_place`, the second task would wait for the first's
        // 400 ms of "SQLite".
        let rt = ClientRuntime::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(&str, std::time::Instant)>();
        let started = std::time::Instant::now();
        let t1 = tx.clone();
        rt.spawn_background("blocking", async move {
            blocking_io(|| std::thread::sleep(Duration::from_millis(400)));
            let _ = t1.send(("blocking", std::time::Instant::now()));
        });
        std::thread::sleep(Duration::from_millis(50)); // the blocking task is running
        rt.spawn_background("other", async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send(("other", std::time::Instant::now()));
        });
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((first.0, second.0), ("other", "blocking"));
        assert!(
            first.1 - started < Duration::from_millis(300),
            "{:?}",
            first.1 - started
        );
        // Off the runtime (this test's own thread) it simply runs.
        assert_eq!(blocking_io(|| 7), 7);
    }

    #[test]
    fn a_panicking_task_is_contained_and_its_guard_runs() {
        struct Guard(Arc<AtomicBool>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let rt = ClientRuntime::new(1).unwrap();
        let restored = Arc::new(AtomicBool::new(false));
        let r = restored.clone();
        let done = Arc::new(Notify::new());
        let d = done.clone();
        rt.spawn_background("test", async move {
            let _guard = Guard(r);
            tokio::task::yield_now().await;
            panic!("injected");
        });
        // The runtime still runs tasks afterwards.
        rt.spawn_background("test", async move { d.notify_one() });
        rt.handle().unwrap().block_on(async {
            tokio::time::timeout(Duration::from_secs(10), done.notified())
                .await
                .unwrap()
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !restored.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(restored.load(Ordering::SeqCst));
        rt.shutdown();
    }

    #[test]
    fn a_supervised_loop_that_panics_is_restarted() {
        let rt = ClientRuntime::new(1).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        rt.spawn_supervised("test loop", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("injected: the first round panics");
                }
                std::future::pending::<()>().await
            }
        });
        let deadline = std::time::Instant::now() + RESTART_DELAY + Duration::from_secs(1);
        while runs.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        rt.shutdown();
    }
}
