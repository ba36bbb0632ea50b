//! The client's own small tokio runtime. Background work (probes, hedge legs' connections, reqwest's
//! connection tasks) runs on its worker threads, so foreign callers (Kotlin coroutines, Swift tasks,
//! Python asyncio) need no runtime of their own.
//!
//! A call is spawned as a task on this runtime ([`ClientRuntime::call`]); the caller's executor
//! (a Kotlin coroutine, a Swift task, Python asyncio, the JS thread) only awaits its result, so it
//! never drives the request itself. It used to be polled by whoever awaited it, with this runtime
//! entered (two cross-thread hand-offs fewer per call, tens of microseconds, benches/overhead.rs),
//! but that deadlocks an executor whose continuation callback blocks until its own thread has run
//! it, as ubrn's N-API runtime does (see `Call`). Dropping the future (the foreign side cancelled)
//! aborts the task and so drops the in-flight request; shutdown wakes every call with
//! `Cancelled`; a panic inside a call becomes `ApiError::Internal` instead of unwinding into
//! foreign code.
//!
//! A call's task never calls foreign code itself: a call that reports as it goes (an upload's
//! progress) posts to a one-value mailbox ([`Latest`]), and the call's future delivers the value
//! to the foreign callback when the caller polls it ([`ClientRuntime::call_reporting`]) — on the
//! caller's thread, never on a worker.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

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

/// A call's future, boxed (see [`ClientRuntime::call`]).
type BoxedCall<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send>>;

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

    pub(crate) fn is_closed(&self) -> bool {
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

    /// Runs a call as a task on this runtime; the returned future can be awaited from any
    /// executor and only waits for that task's result (see [`Call`]). Dropping it (the foreign
    /// side cancelled) aborts the task, which drops the in-flight request; shutdown fails it with
    /// `Cancelled`; a panic inside the call becomes `ApiError::Internal`.
    ///
    /// The call's future is boxed here, once: a request's future is several KiB, and moved by
    /// value it was copied into every enclosing future, into the task and over again as the task
    /// finished (a measurable share of a call's CPU, benches/overhead.rs). Boxed, the task and
    /// everything awaiting it stay small, and one task type serves every call of a result type.
    pub(crate) fn call<T, F>(&self, fut: F) -> impl Future<Output = Result<T, ApiError>> + '_
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        self.run_call(Box::pin(fut), None)
    }

    /// [`call`](Self::call) for a call that reports to a foreign callback as it goes (an upload's
    /// progress listener): `make` builds the call's future around a [`Latest`] mailbox it posts
    /// to, and `deliver` hands each posted value to the callback — on the caller's side, from
    /// the poll of the call's future (the thread that awaits the call: a Kotlin dispatcher, a
    /// Swift task, the Python event loop, the JS thread), never on this runtime's threads.
    /// Values coalesce (a slow caller gets the latest, not every one); what the task posted
    /// before it finished is delivered before the call's result, so a final report (an upload's
    /// total) always comes first.
    pub(crate) fn call_reporting<T, P, F>(
        &self,
        make: impl FnOnce(Arc<Latest<P>>) -> F,
        deliver: impl FnMut(P) + Send + 'static,
    ) -> impl Future<Output = Result<T, ApiError>> + '_
    where
        T: Send + 'static,
        P: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let latest = Arc::new(Latest::default());
        let fut = make(latest.clone());
        let delivery = Delivery {
            latest,
            deliver: Box::new(deliver),
        };
        self.run_call(Box::pin(fut), Some(Box::new(delivery)))
    }

    async fn run_call<T>(
        &self,
        fut: BoxedCall<T>,
        delivery: Option<Box<dyn Drain>>,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
    {
        // Created before the flag is checked: `notify_waiters` reaches it even if not yet polled.
        let shutdown = self.shutdown.notified();
        let Some(handle) = self.handle().filter(|_| !self.is_closed()) else {
            return Err(shut_down());
        };
        let task = Call {
            task: handle.spawn(contained_call(fut)),
            delivery,
        };
        tokio::select! {
            biased;
            _ = shutdown => Err(shut_down()),
            r = task => r,
        }
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

/// A call's body with its panic caught: it becomes `ApiError::Internal` (and a log record), so a
/// call's task is contained like every other task ([`contained`]) and no panic reaches the caller.
async fn contained_call<T, F>(fut: F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ApiError>>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic_message(&*panic);
            log::error!("robust-api: a call panicked (contained): {what}");
            Err(ApiError::Internal {
                reason: format!("a call panicked: {what}"),
            })
        }
    }
}

/// A one-value mailbox from a call's task to its caller's side ([`ClientRuntime::call_reporting`]):
/// [`post`](Latest::post) replaces the value not yet delivered (the last one wins; bounded by
/// construction) and wakes the caller. Posting never blocks and never runs foreign code; the lock
/// is held for a swap only, never across a wake or a delivery.
pub(crate) struct Latest<P> {
    state: Mutex<(Option<P>, Option<Waker>)>,
}

impl<P> Default for Latest<P> {
    fn default() -> Self {
        Latest {
            state: Mutex::new((None, None)),
        }
    }
}

impl<P> Latest<P> {
    /// Hands `value` to the caller's side, replacing one it has not taken yet.
    pub(crate) fn post(&self, value: P) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = Some(value);
            state.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The value posted since the last take, if any; `waker` is woken by the next post.
    fn take(&self, waker: &Waker) -> Option<P> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.1.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.1 = Some(waker.clone());
        }
        state.0.take()
    }
}

/// Delivers what a call's task posted, from the poll of the call's future.
trait Drain: Send {
    fn drain(&mut self, waker: &Waker);
}

struct Delivery<P> {
    latest: Arc<Latest<P>>,
    deliver: Box<dyn FnMut(P) + Send>,
}

impl<P: Send> Drain for Delivery<P> {
    fn drain(&mut self, waker: &Waker) {
        if let Some(value) = self.latest.take(waker) {
            // `deliver` contains a panicking callback itself; this keeps one from unwinding into
            // the caller's executor whatever `deliver` does.
            if catch_unwind(AssertUnwindSafe(|| (self.deliver)(value))).is_err() {
                log::warn!("robust-api: a call's report callback panicked (contained)");
            }
        }
    }
}

/// The caller's side of a call spawned by [`ClientRuntime::call`]: polling it only polls the
/// task's `JoinHandle` (and delivers what the task reported, see
/// [`ClientRuntime::call_reporting`]), so the caller's thread never drives the request itself
/// (sockets, timers, hyper's connection pool). That matters for foreign executors whose
/// continuation callback, called from another thread, blocks until their own thread has run it —
/// ubrn's N-API runtime (`@ubjs/node`) does (`dispatch_to_js_thread` waits for the JS thread's
/// reply), and uniffi calls that callback with the `RustFuture`'s scheduler lock held. Were the
/// request polled on the JS thread, it would wake *other* calls' `RustFuture`s from there (e.g.
/// hyper handing a pooled connection to a waiting request), blocking the JS thread on a scheduler
/// lock held by a worker that waits for the JS thread: a deadlock (bindings/react-native/README.md,
/// "Known issues").
///
/// Dropped unfinished (a Python task, Kotlin coroutine or Swift `Task` cancelled, a JS
/// `AbortSignal`, uniffi's `rust_future_free`), it aborts the task: the request, its connection
/// and an upload's body stream are dropped, and nothing keeps running for a caller that is gone.
struct Call<T> {
    task: tokio::task::JoinHandle<Result<T, ApiError>>,
    delivery: Option<Box<dyn Drain>>,
}

impl<T> Future for Call<T> {
    type Output = Result<T, ApiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // The task first: once it is seen finished, everything it posted is in the mailbox, so
        // the drain below delivers the final report before the result is returned.
        let joined = Pin::new(&mut this.task).poll(cx);
        if let Some(d) = this.delivery.as_mut() {
            d.drain(cx.waker());
        }
        joined.map(|joined| match joined {
            Ok(r) => r,
            // `contained_call` caught panics already; this is only belt and braces.
            Err(e) if e.is_panic() => Err(ApiError::Internal {
                reason: format!("a call panicked: {}", panic_message(&*e.into_panic())),
            }),
            // Aborted: only by the runtime shutting down (a dropped `Call` is not polled again).
            Err(_) => Err(shut_down()),
        })
    }
}

impl<T> Drop for Call<T> {
    fn drop(&mut self) {
        self.task.abort();
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

    /// Awaits `fut` on this test's own thread (as a foreign executor would), not on a runtime's.
    fn block_on<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    }

    /// What a call reports is delivered on the thread polling the call (never a runtime
    /// thread), the latest value wins, and the last one posted arrives before the result.
    #[test]
    fn reports_reach_the_caller_thread_and_the_last_one_precedes_the_result() {
        let rt = ClientRuntime::new(2).unwrap();
        type Heard = Vec<(u32, Option<String>)>; // (value, the delivering thread's name)
        let heard: Arc<Mutex<Heard>> = Arc::default();
        let h = heard.clone();
        let r = block_on(rt.call_reporting(
            |latest: Arc<Latest<u32>>| async move {
                for v in 1..=50 {
                    latest.post(v);
                    tokio::task::yield_now().await;
                }
                latest.post(100); // the final report, right before the result
                Ok("done")
            },
            move |v| {
                let name = std::thread::current().name().map(str::to_owned);
                h.lock().unwrap().push((v, name));
            },
        ));
        assert_eq!(r.unwrap(), "done");
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.last().map(|h| h.0), Some(100), "{heard:?}");
        assert!(heard.windows(2).all(|w| w[0].0 < w[1].0), "{heard:?}");
        assert!(
            heard
                .iter()
                .all(|(_, t)| !t.as_deref().unwrap_or("").starts_with(THREAD_NAME)),
            "{heard:?}"
        );
        rt.shutdown();
    }

    /// Dropping a call's future (the foreign side cancelled) aborts its task: what it holds is
    /// dropped and it runs no further.
    #[test]
    fn dropping_a_call_aborts_its_task() {
        struct Guard(Arc<AtomicBool>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let rt = ClientRuntime::new(1).unwrap();
        let (dropped, ticks) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (d, t) = (dropped.clone(), ticks.clone());
        let call = rt.call(async move {
            let _guard = Guard(d);
            loop {
                t.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            #[allow(unreachable_code)]
            Ok(())
        });
        let running = ticks.clone();
        let outcome = block_on(async {
            tokio::select! {
                r = call => Some(r),
                _ = async {
                    while running.load(Ordering::SeqCst) < 3 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                } => None, // the call is dropped here, its task running
            }
        });
        assert!(outcome.is_none());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            dropped.load(Ordering::SeqCst),
            "the task still holds its state"
        );
        let after = ticks.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks.load(Ordering::SeqCst), after, "the task still runs");
        rt.shutdown();
    }

    #[test]
    fn a_panicking_call_is_a_typed_internal_error() {
        let rt = ClientRuntime::new(1).unwrap();
        let r: Result<(), ApiError> = block_on(rt.call(async {
            tokio::task::yield_now().await;
            panic!("injected: inside a call")
        }));
        match r {
            Err(ApiError::Internal { reason }) => assert!(reason.contains("injected"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // The runtime still runs calls.
        assert_eq!(block_on(rt.call(async { Ok(7) })).unwrap(), 7);
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
