//! The durable offline request queue.
//!
//! `enqueue` (or a request with `OfflinePolicy::Queue` that cannot be delivered now) writes the request
//! to the queue's own SQLite file (`queue.sqlite3`, `synchronous=FULL` unless
//! `queue.synchronous_full` is off; see [`crate::store`] for its salvage) before returning, with an
//! idempotency key that every attempt carries, forever. It needs an app-given `storage_dir`. The
//! [`replay`] task delivers entries FIFO per ordering group, at most `queue_max_in_flight` at a time,
//! when the app reports the network is back, when a backend recovers, on client start, and on
//! `flush_queue()`; failures back off. [`policy`] decides delivered / retry later / dead-letter;
//! [`storage`] holds the SQL. A row is deleted only after its delivery is recorded.
//!
//! Credentials (`Authorization`, `Cookie`, `Proxy-Authorization` and configured names) are never
//! written to disk: a [`crate::HeaderProvider`] supplies fresh ones at send time, for the user
//! scope the request was stored under. A request carrying a credential in its query
//! (`?api_key=…`, see [`crate::store::secrets::SENSITIVE_QUERY_PARAMS`]) is not queued at all
//! (`InvalidRequest`): it could not be replayed without storing the credential.
//!
//! User scopes: each entry is tagged with the scope current when it was stored and is replayed
//! only while that scope is current (entries of another scope wait — not sent, not expired, not
//! dead-lettered — until it is current again or `clear_user_data` removes them). Listings and
//! listener deliveries show only the current scope's entries and outcomes.
//!
//! Outcomes are recorded in the database too, so a `QueueListener` attached later (even after a
//! restart) still receives every `on_delivered` / `on_dead_lettered` it has not seen; they can also
//! be read back with `queue_outcomes()`.

mod layer;
mod policy;
mod replay;
mod storage;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::defaults::{at_least, clamped_i32, config_record, positive_ms, saturating_i32};
use crate::error::ApiError;
use crate::events::EventBus;
use crate::http::query_names;
use crate::ids::new_uuid_v4;
use crate::store::secrets::{CREDENTIAL_HEADERS, SENSITIVE_QUERY_PARAMS};
use crate::store::{is_corruption, now_ms, Durability, Identity, Store};
use crate::types::{ApiRequest, ApiResponse, HttpMethod, QueuedRequestId};

pub(crate) use layer::QueueLayer;
pub(crate) use replay::run;

/// A pending queued request.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QueuedRequestInfo {
    /// Its id.
    pub id: QueuedRequestId,
    /// The `Idempotency-Key` every attempt carries.
    pub idempotency_key: String,
    /// Method.
    pub method: HttpMethod,
    /// Path.
    pub path: String,
    /// Replay attempts so far.
    pub attempts: i32,
    /// When it was queued (Unix ms).
    pub created_at_ms: i64,
    /// Time until the next attempt (0 = as soon as possible).
    pub next_attempt_in_ms: i32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// A request the queue gave up on.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DeadLetter {
    /// Its id.
    pub id: QueuedRequestId,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// Method.
    pub method: HttpMethod,
    /// Path.
    pub path: String,
    /// Attempts made.
    pub attempts: i32,
    /// Why it was given up.
    pub reason: String,
    /// The server's final status, if one answered.
    pub status: Option<i32>,
    /// The server's final body, if one answered.
    pub body: Option<Vec<u8>>,
}

/// What happened to a queued request.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QueueOutcome {
    /// Its id.
    pub id: QueuedRequestId,
    /// Delivered (true) or dead-lettered (false).
    pub delivered: bool,
    /// The server's response when delivered.
    pub response: Option<ApiResponse>,
    /// The final status (delivered or rejected).
    pub status: Option<i32>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Whether a `QueueListener` has been told.
    pub notified: bool,
}

/// The queue section of `ServiceStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct QueueStatus {
    /// Entries waiting for delivery (in flight included).
    pub pending: i64,
    /// Entries being sent right now.
    pub in_flight: i64,
    /// Entries given up on.
    pub dead_lettered: i64,
    /// Age of the oldest pending entry.
    pub oldest_age_ms: Option<i32>,
    /// Deliveries by this client since it started.
    pub delivered: i64,
    /// The configured bound on pending entries.
    pub max_entries: i32,
    /// The configured bound on pending bytes.
    pub max_bytes: i64,
}

/// Implement this to hear about queued requests' fates (called on a background thread, in order).
/// Outcomes that happened while no listener was attached are delivered when one is. An error (a
/// foreign exception) is logged as a warning; the outcome counts as delivered to the listener.
#[uniffi::export(with_foreign)]
pub trait QueueListener: Send + Sync {
    /// The server accepted the request.
    fn on_delivered(&self, id: QueuedRequestId, response: ApiResponse) -> Result<(), ApiError>;
    /// The queue gave up on the request (rejected by the server, or too old).
    fn on_dead_lettered(&self, id: QueuedRequestId, reason: String) -> Result<(), ApiError>;
}

config_record! {
    /// The durable offline request queue.
    pub struct QueueConfig {
        /// Capacity (pending entries); `enqueue` beyond it is `QueueFull`.
        pub max_entries: i32 = 50,
        /// Byte bound (bodies, headers, paths of pending entries).
        pub max_bytes: i32 = 10485760,
        /// A queued request still failing this long after its first attempt is dead-lettered
        /// (checked after a failed attempt: never given up without being sent, whatever the
        /// wall clock does).
        pub max_age_ms: i32 = 604800000,
        /// First delay after a failed replay (doubles, full jitter).
        pub retry_base_delay_ms: i32 = 1000,
        /// Replay backoff cap.
        pub retry_max_delay_ms: i32 = 300000,
        /// Queued requests in flight at once (one per ordering group).
        pub max_in_flight: i32 = 4,
        /// Extra header names never written to disk (besides Authorization, Cookie,
        /// Proxy-Authorization).
        pub sensitive_headers: Vec<String> = [],
        /// `true` (default): every queue transaction is fsynced (`synchronous=FULL`), so an
        /// enqueue that returned survives power loss and an OS crash. `false`: faster
        /// (`synchronous=NORMAL`, see `cargo bench --bench queue`), survives the app being
        /// killed, but power loss may roll back the last enqueues.
        pub synchronous_full: bool = true,
        /// Ordering groups (`ApiRequest.queue_group`) whose entries are all "unmetered only":
        /// they wait while the network is metered (see `ApiRequest.unmetered_only`).
        pub unmetered_only_groups: Vec<String> = [],
    }
}

/// Queue settings (validated from [`QueueConfig`]).
#[derive(Debug, Clone)]
pub(crate) struct QueueSettings {
    pub max_entries: u32,
    pub max_bytes: u64,
    pub max_age: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub max_in_flight: usize,
    /// Lower-case header names never written to disk.
    pub sensitive_headers: Vec<String>,
    /// Lower-case query parameter names whose values are credentials (a request with one is not
    /// queued).
    pub sensitive_query: Vec<String>,
    /// `PRAGMA synchronous` of the queue file.
    pub durability: Durability,
    /// Groups whose entries wait while the network is metered.
    pub unmetered_only_groups: Vec<String>,
}

impl QueueSettings {
    pub(crate) fn from_config(c: &QueueConfig) -> Result<Self, ApiError> {
        let retry_base = positive_ms("queue.retry_base_delay_ms", c.retry_base_delay_ms)?;
        let retry_max = positive_ms("queue.retry_max_delay_ms", c.retry_max_delay_ms)?;
        if retry_max < retry_base {
            return Err(ApiError::invalid_config(
                "queue.retry_max_delay_ms must be at least queue.retry_base_delay_ms",
            ));
        }
        let mut sensitive: Vec<String> = CREDENTIAL_HEADERS.map(String::from).to_vec();
        sensitive.extend(c.sensitive_headers.iter().map(|h| h.to_ascii_lowercase()));
        Ok(QueueSettings {
            max_entries: at_least("queue.max_entries", c.max_entries, 1)?,
            max_bytes: at_least("queue.max_bytes", c.max_bytes, 1)? as u64,
            max_age: positive_ms("queue.max_age_ms", c.max_age_ms)?,
            retry_base,
            retry_max,
            max_in_flight: at_least("queue.max_in_flight", c.max_in_flight, 1)? as usize,
            sensitive_headers: sensitive,
            // The defaults; `Settings` replaces them with the configured list (`security`).
            sensitive_query: SENSITIVE_QUERY_PARAMS.map(String::from).to_vec(),
            durability: if c.synchronous_full {
                Durability::Full
            } else {
                Durability::Normal
            },
            unmetered_only_groups: c.unmetered_only_groups.clone(),
        })
    }
}

type Listener = Arc<Mutex<Option<Arc<dyn QueueListener>>>>;

/// The queue of one client.
pub(crate) struct Queue {
    store: Arc<Store>,
    /// The current user scope: what is stored, replayed, listed and told.
    identity: Arc<Identity>,
    pub(crate) settings: QueueSettings,
    events: Arc<EventBus>,
    /// Wakes the replay task (enqueue, flush, a delivery finished).
    pub(crate) wake: Notify,
    in_flight: Mutex<HashSet<String>>,
    delivered: AtomicU64,
    listener: Listener,
    notify_tx: Mutex<Option<SyncSender<()>>>,
    /// Does the queue file outlive the client (an app-given `storage_dir`)?
    durable: bool,
}

impl Queue {
    pub(crate) fn new(
        store: Arc<Store>,
        settings: QueueSettings,
        events: Arc<EventBus>,
        identity: Arc<Identity>,
        durable: bool,
    ) -> Result<Arc<Self>, ApiError> {
        // Outcomes reach the listener from one thread, in order, straight from the database: nothing
        // is lost if no listener is attached, nothing is told twice.
        let (tx, rx) = sync_channel::<()>(1);
        let listener: Listener = Arc::default();
        let queue = Arc::new(Queue {
            store: store.clone(),
            identity: identity.clone(),
            settings,
            events,
            wake: Notify::new(),
            in_flight: Mutex::default(),
            delivered: AtomicU64::new(0),
            listener: listener.clone(),
            notify_tx: Mutex::new(Some(tx)),
            durable,
        });
        std::thread::Builder::new()
            .name("robust-api-queue".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    loop {
                        let Some(l) = listener
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clone()
                        else {
                            break;
                        };
                        // Only the current scope's outcomes; another's wait for it.
                        let scope = store.scope_tag(identity.current().as_deref());
                        let next = storage::next_unnotified(&store.conn(), scope.as_deref());
                        let Ok(Some((seq, outcome))) = next else {
                            break;
                        };
                        let called = catch_unwind(AssertUnwindSafe(|| {
                            match (outcome.delivered, outcome.response) {
                                (true, Some(r)) => l.on_delivered(outcome.id, r),
                                _ => l.on_dead_lettered(
                                    outcome.id,
                                    outcome.reason.unwrap_or_default(),
                                ),
                            }
                        }));
                        if let Ok(r) = called {
                            crate::error::warn_on_listener_error("queue listener", r);
                        }
                        if storage::mark_notified(&store.conn(), seq).is_err() {
                            break;
                        }
                    }
                }
            })
            .map_err(|e| ApiError::Internal {
                reason: format!("starting the queue listener thread: {e}"),
            })?;
        Ok(queue)
    }

    fn db<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ApiError> {
        let result = crate::runtime::blocking_io(|| f(&mut self.store.conn()));
        result.map_err(|e| {
            if is_corruption(&e) {
                if let Ok(r) = self.store.recover(&e.to_string()) {
                    self.events.storage_recovered(r.record());
                    // Salvaged entries may be due; dead-lettered ones have outcomes to tell.
                    self.wake.notify_one();
                    self.poke_listener();
                }
            }
            log::warn!("robust-api: queue {what}: {e}");
            ApiError::Storage {
                reason: format!("queue {what}: {e}"),
            }
        })
    }

    /// The app's current user scope.
    pub(crate) fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// The current scope's tag, as stored.
    fn current_tag(&self) -> Option<String> {
        self.store.scope_tag(self.identity.current().as_deref())
    }

    /// Rejects what cannot be queued durably: anything, without a `storage_dir` (`InvalidConfig`:
    /// the fix is the configuration; checked before anything is sent, online or not, so an app
    /// learns it in development rather than from a lost request); and a credential in the query.
    pub(crate) fn check_storable(&self, req: &ApiRequest) -> Result<(), ApiError> {
        if !self.durable {
            return Err(ApiError::invalid_config(
                "the offline queue needs storage_dir: without it the client's files live in a \
                 temporary folder deleted with the client, so a queued request would not survive \
                 a restart; pass the app's files directory (Android: context.filesDir, iOS: \
                 Application Support)",
            ));
        }
        if req.skip_authentication {
            return Err(ApiError::invalid_request(
                "skip_authentication cannot be queued: a replayed request always carries the \
                 authenticator's credentials (send the refresh call live)",
            ));
        }
        for name in query_names(&req.path, &req.query)? {
            if self
                .settings
                .sensitive_query
                .contains(&name.to_ascii_lowercase())
            {
                return Err(ApiError::invalid_request(format!(
                    "query parameter {name:?} carries a credential and cannot be stored in the \
                     offline queue; send it as a header from the HeaderProvider"
                )));
            }
        }
        Ok(())
    }

    /// Persists `req` (with `key` as its idempotency key) under user `scope`. Durable when this
    /// returns.
    pub(crate) fn enqueue(
        &self,
        req: &ApiRequest,
        key: String,
        group: Option<String>,
        scope: Option<&str>,
    ) -> Result<QueuedRequestId, ApiError> {
        self.check_storable(req)?;
        let id = new_uuid_v4();
        let mut stored = storage::Stored::new(
            req,
            id.clone(),
            key,
            group.unwrap_or_default(),
            &self.settings.sensitive_headers,
        );
        stored.scope = self.store.scope_tag(scope);
        stored.unmetered_only |= self.settings.unmetered_only_groups.contains(&stored.group);
        let (max_entries, max_bytes) = (self.settings.max_entries, self.settings.max_bytes);
        let result = storage::insert(&mut self.store.conn(), &stored, max_entries, max_bytes);
        match result {
            Ok(()) => {
                self.wake.notify_one();
                Ok(QueuedRequestId(id))
            }
            Err(storage::InsertError::Full) => Err(ApiError::QueueFull {
                max_entries: saturating_i32(max_entries as u64),
                max_bytes: saturating_i32(max_bytes),
            }),
            Err(storage::InsertError::Db(e)) => self.db("enqueue", |_| Err(e)),
        }
    }

    pub(crate) fn set_listener(&self, l: Arc<dyn QueueListener>) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(l);
        self.poke_listener();
    }

    /// Wakes the listener thread (an outcome was recorded, or the scope changed).
    pub(crate) fn poke_listener(&self) {
        if let Some(tx) = self
            .notify_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.try_send(()); // a pending poke already covers this one
        }
    }

    pub(crate) fn flush(&self) -> Result<(), ApiError> {
        self.db("flush", |c| storage::make_all_due(c, now_ms()))?;
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn pending(&self) -> Result<Vec<QueuedRequestInfo>, ApiError> {
        let scope = self.current_tag();
        self.db("list", |c| storage::pending(c, now_ms(), scope.as_deref()))
    }

    /// `limit` dead letters after skipping `offset`, oldest first.
    pub(crate) fn dead_letters(
        &self,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, ApiError> {
        let scope = self.current_tag();
        self.db("dead letters", |c| {
            storage::dead_letters(c, scope.as_deref(), i64::from(offset), i64::from(limit))
        })
    }

    pub(crate) fn outcomes(&self) -> Result<Vec<QueueOutcome>, ApiError> {
        let scope = self.current_tag();
        self.db("outcomes", |c| storage::outcomes(c, scope.as_deref()))
    }

    pub(crate) fn remove(&self, id: &QueuedRequestId) -> Result<bool, ApiError> {
        self.db("remove", |c| storage::remove(c, &id.0))
    }

    pub(crate) fn retry_dead_letter(&self, id: &QueuedRequestId) -> Result<bool, ApiError> {
        let revived = self.db("retry dead letter", |c| storage::revive(c, &id.0, now_ms()))?;
        self.wake.notify_one();
        Ok(revived)
    }

    pub(crate) fn clear(&self) -> Result<(), ApiError> {
        self.db("clear", |c| storage::clear(c))
    }

    /// Removes user `scope`'s entries and outcomes, leaving no recoverable bytes.
    pub(crate) fn clear_scope(&self, scope: &str) -> Result<(), ApiError> {
        let tag = self.store.scope_tag(Some(scope)).unwrap_or_default();
        self.db("clear scope", |c| storage::clear_scope(c, &tag))
    }

    pub(crate) fn status(&self) -> QueueStatus {
        let (pending, dead, oldest) = self
            .db("status", |c| storage::counts(c))
            .unwrap_or_default();
        QueueStatus {
            pending: pending as i64,
            in_flight: self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len() as i64,
            dead_lettered: dead as i64,
            oldest_age_ms: oldest.map(|t| clamped_i32(now_ms() - t)),
            delivered: self.delivered.load(Ordering::Relaxed) as i64,
            max_entries: saturating_i32(self.settings.max_entries as u64),
            max_bytes: self.settings.max_bytes as i64,
        }
    }

    /// Stops the listener thread and closes the queue file (client shutdown).
    pub(crate) fn close(&self) {
        self.store.close();
        self.listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.notify_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
