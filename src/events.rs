//! Events, counters and their fan-out to listeners — the ground floor every module reports to.
//!
//! Listeners are called on one dedicated thread, in event order, never while a lock of the network
//! layer is held, so a listener may call back into the client (e.g. `service_status()`) and a slow
//! listener cannot stall network I/O. The queue to that thread is bounded; overflow is counted, not
//! hidden.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use crate::types::BreakerState;

/// Counters since the client was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct StatusCounters {
    /// Calls made (`request`, `get`, `post_json`).
    pub requests: i64,
    /// Backoff rounds (re-sends after a delay).
    pub retries: i64,
    /// Moves to another backend within a call.
    pub failovers: i64,
    /// Hedge attempts started.
    pub hedges: i64,
    /// Re-sends refused because the retry budget was spent.
    pub budget_exhausted: i64,
    /// Status events dropped because listeners were too slow (bounded queue).
    pub events_dropped: i64,
    /// Response bytes that compression kept off the network: decoded minus received, summed over
    /// every compressed response (gzip/deflate, and brotli with the `brotli` feature).
    pub compression_saved_bytes: i64,
    /// Attempt records dropped because the attempt listener was too slow (bounded buffer).
    pub attempt_records_dropped: i64,
    /// Log records dropped because the log listener was too slow (process-wide).
    pub log_records_dropped: i64,
}

/// Something changed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum StatusEvent {
    /// A backend's breaker changed state.
    BreakerChanged {
        /// Base URL.
        backend: String,
        /// Before.
        previous: BreakerState,
        /// After.
        current: BreakerState,
    },
    /// A backend became healthy or unhealthy.
    BackendHealthChanged {
        /// Base URL.
        backend: String,
        /// Now healthy?
        healthy: bool,
    },
    /// The app reported a network change.
    NetworkChanged {
        /// Now available?
        available: bool,
    },
    /// A backend's TLS certificate chain matched none of its host's pins (the call failed with
    /// `CertificatePinMismatch`).
    CertificatePinMismatch {
        /// Base URL.
        backend: String,
        /// The pinned host.
        host: String,
    },
    /// A database file was damaged; it was moved aside, recreated, and the moved copy deleted once
    /// salvaged (the cache's data is dropped; the queue's entries are read back row by row, and
    /// every one that could not be is a dead letter with an outcome). `ServiceStatus` keeps the
    /// details (`storage_recoveries`) until `take_storage_recoveries()` — this event can be
    /// dropped from the early buffer when no listener is attached yet.
    StorageRecovered {
        /// Where the damaged file was moved before it was deleted.
        moved_to: String,
        /// What was wrong.
        reason: String,
    },
}

/// A damaged storage file that was recreated (kept in `ServiceStatus.storage_recoveries` until the
/// app reads it with `take_storage_recoveries()`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StorageRecovery {
    /// The file's name inside `storage_dir` (`robust-api.sqlite3`: the cache, `queue.sqlite3`:
    /// the offline queue).
    pub file: String,
    /// Where the damaged file was moved before it was deleted.
    pub moved_to: String,
    /// What was wrong.
    pub reason: String,
    /// Queued requests read back into the new file (0 for the cache, whose data is dropped).
    pub salvaged: i64,
    /// Queued requests that could not be read back: each is a dead letter with an outcome (or,
    /// when not even its id was readable, counted in one outcome).
    pub lost: i64,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Sticky recoveries kept at most (the oldest goes first).
const MAX_RECOVERIES: usize = 16;

/// Implement this (in any binding language) to hear about breaker, health and network changes.
/// Called on a background thread. An error (in Kotlin/Swift/Python/TS: any exception thrown) is
/// logged as a warning; delivery to this and the other listeners goes on.
#[uniffi::export(with_foreign)]
pub trait StatusListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: StatusEvent) -> Result<(), crate::error::ApiError>;
}

/// Atomic counters behind [`StatusCounters`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub failovers: AtomicU64,
    pub hedges: AtomicU64,
    pub budget_exhausted: AtomicU64,
    pub events_dropped: AtomicU64,
    pub compression_saved: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatusCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed).min(i64::MAX as u64) as i64;
        StatusCounters {
            requests: g(&self.requests),
            retries: g(&self.retries),
            failovers: g(&self.failovers),
            hedges: g(&self.hedges),
            budget_exhausted: g(&self.budget_exhausted),
            events_dropped: g(&self.events_dropped),
            compression_saved_bytes: g(&self.compression_saved),
            attempt_records_dropped: 0,
            // Filled in by the network layer (its recorder; the process-wide log forwarder).
            log_records_dropped: 0,
        }
    }
}

const EVENT_QUEUE: usize = 1024;
/// Events kept for the first listener when none is attached yet.
const EARLY_EVENTS: usize = 64;

enum Msg {
    Event(StatusEvent),
    ListenerAdded,
}

/// The attached listeners, each with its subscription id.
type ListenerList = Mutex<Vec<(u64, Arc<dyn StatusListener>)>>;
type Listeners = Arc<ListenerList>;

/// What `add_status_listener` returns: `remove()` stops deliveries to that listener (React Native's
/// `subscription.remove()`, a Kotlin Flow's `awaitClose`, a Swift stream's `onTermination`).
/// Dropping it without `remove()` keeps the listener, so callers that ignore it are unaffected.
#[derive(uniffi::Object)]
pub struct StatusSubscription {
    id: u64,
    listeners: std::sync::Weak<ListenerList>,
}

#[uniffi::export]
impl StatusSubscription {
    /// Removes the listener; an event already being delivered may still reach it. Idempotent.
    pub fn remove(&self) {
        if let Some(listeners) = self.listeners.upgrade() {
            listeners
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(id, _)| *id != self.id);
        }
    }

    /// Whether the listener is still attached (false after `remove()` or the client's shutdown).
    pub fn is_active(&self) -> bool {
        self.listeners.upgrade().is_some_and(|l| {
            l.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|(id, _)| *id == self.id)
        })
    }
}

/// Delivers events to listeners on a dedicated thread. Dropping it ends the thread.
pub(crate) struct EventBus {
    tx: Mutex<Option<SyncSender<Msg>>>,
    listeners: Listeners,
    next_listener_id: AtomicU64,
    counters: Arc<Counters>,
    recoveries: Mutex<Vec<StorageRecovery>>,
}

impl EventBus {
    pub(crate) fn new(counters: Arc<Counters>) -> Result<Self, crate::error::ApiError> {
        let (tx, rx) = sync_channel::<Msg>(EVENT_QUEUE);
        let listeners: Listeners = Arc::default();
        let l = listeners.clone();
        std::thread::Builder::new()
            .name("robust-api-events".into())
            .spawn(move || {
                // Events from before the first listener (e.g. a storage recovery during
                // construction) wait here, bounded, and go to the first listener added.
                let mut early: std::collections::VecDeque<StatusEvent> = Default::default();
                while let Ok(msg) = rx.recv() {
                    let current: Vec<_> = l.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    let batch: Vec<StatusEvent> = match msg {
                        Msg::Event(ev) if current.is_empty() => {
                            if early.len() == EARLY_EVENTS {
                                early.pop_front();
                            }
                            early.push_back(ev);
                            continue;
                        }
                        Msg::Event(ev) => vec![ev],
                        Msg::ListenerAdded => early.drain(..).collect(),
                    };
                    for ev in batch {
                        for (_, listener) in &current {
                            // A throwing foreign listener must not take the others (or this thread) down.
                            if let Ok(r) =
                                catch_unwind(AssertUnwindSafe(|| listener.on_event(ev.clone())))
                            {
                                crate::error::warn_on_listener_error("status listener", r);
                            }
                        }
                    }
                }
            })
            .map_err(|e| crate::error::ApiError::Internal {
                reason: format!("starting event thread: {e}"),
            })?;
        Ok(EventBus {
            tx: Mutex::new(Some(tx)),
            listeners,
            next_listener_id: AtomicU64::new(1),
            counters,
            recoveries: Mutex::default(),
        })
    }

    pub(crate) fn add(&self, listener: Arc<dyn StatusListener>) -> Arc<StatusSubscription> {
        let id = self.next_listener_id.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, listener));
        self.send(Msg::ListenerAdded);
        Arc::new(StatusSubscription {
            id,
            listeners: Arc::downgrade(&self.listeners),
        })
    }

    pub(crate) fn emit(&self, ev: StatusEvent) {
        self.send(Msg::Event(ev));
    }

    /// A storage file was recreated: keeps the sticky record and emits `StorageRecovered`.
    pub(crate) fn storage_recovered(&self, r: StorageRecovery) {
        {
            let mut kept = self
                .recoveries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if kept.len() == MAX_RECOVERIES {
                kept.remove(0);
            }
            kept.push(r.clone());
        }
        let reason = if r.salvaged + r.lost > 0 {
            format!(
                "{} ({}: {} queued request(s) salvaged, {} lost)",
                r.reason, r.file, r.salvaged, r.lost
            )
        } else {
            r.reason
        };
        self.emit(StatusEvent::StorageRecovered {
            moved_to: r.moved_to,
            reason,
        });
    }

    /// The sticky recoveries not yet taken.
    pub(crate) fn recoveries(&self) -> Vec<StorageRecovery> {
        self.recoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Returns and forgets the sticky recoveries.
    pub(crate) fn take_recoveries(&self) -> Vec<StorageRecovery> {
        std::mem::take(
            &mut *self
                .recoveries
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn send(&self, msg: Msg) {
        let guard = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = guard.as_ref() {
            match tx.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => Counters::bump(&self.counters.events_dropped),
            }
        }
    }

    /// Stops delivery: the thread ends after the queued events.
    pub(crate) fn close(&self) {
        // Listeners may hold the client (a foreign closure capturing it): drop them, or the cycle
        // through Rust keeps the client alive forever.
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
