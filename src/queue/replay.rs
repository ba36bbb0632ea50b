//! The replay task: delivers due entries, at most `max_in_flight` at once (one per ordering group,
//! so each group stays FIFO), and sleeps until the next due time, an enqueue, a flush, the network
//! coming back, a backend recovering, the app returning to the foreground, the network becoming
//! unmetered or the user scope changing. Never runs while the app reports
//! it is offline. Only the current user scope's entries are started; the others wait (the sleep
//! is computed from the current scope's entries only, so they never make the task spin). While
//! the current scope's credentials are blocked (its refresh failed), nothing is started: the task
//! waits for `credentials_changed()` or a successful refresh.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::policy::{self, Decision};
use super::storage::{self, Stored};
use super::Queue;
use crate::cache::CacheLayer;
use crate::error::ApiError;
use crate::net::retry::backoff_delay;
use crate::net::{Conditions, Rounds};
use crate::store::now_ms;

/// Runs until the client's runtime stops.
pub(crate) async fn run(queue: Arc<Queue>, layer: CacheLayer) {
    let mut conditions = layer.network().conditions();
    let mut recovered = layer.network().subscribe_recovered();
    let mut scopes = queue.identity().subscribe();
    let mut credentials = layer.network().subscribe_credentials();
    let mut seen = *conditions.borrow_and_update();
    loop {
        if !seen.online {
            // Offline: nothing is sent; wait for the network.
            if conditions.changed().await.is_err() {
                return;
            }
            let now = *conditions.borrow_and_update();
            if now.online {
                let _ = queue.db("network back", |c| storage::make_all_due(c, now_ms()));
            }
            seen = now;
            continue;
        }
        let scope = queue.identity().current();
        credentials.borrow_and_update();
        if layer.network().credentials_blocked(&scope) {
            // Paused: no entry is sent (none dead-lettered) until new credentials come.
            tokio::select! {
                changed = credentials.changed() => if changed.is_err() { return },
                changed = scopes.changed() => if changed.is_err() { return },
                changed = conditions.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    seen = *conditions.borrow_and_update();
                }
            }
            continue;
        }
        let tag = queue.store.scope_tag(scope.as_deref());
        let metered = seen.metered;
        start_due(&queue, &layer, scope, tag.as_deref(), metered);
        let next = queue
            .db("next due", |c| {
                storage::next_due_at(c, tag.as_deref(), metered)
            })
            .ok()
            .flatten();
        let sleep_for = next.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis((at - now_ms()).max(0) as u64)
        });
        // Never spin: a due entry that could not start (all slots busy) waits for a delivery's wake-up.
        let sleep_for = sleep_for.max(Duration::from_millis(5));
        tokio::select! {
            _ = queue.wake.notified() => {}
            _ = tokio::time::sleep_until((Instant::now() + sleep_for).into()) => {}
            changed = conditions.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *conditions.borrow_and_update();
                if flush_on_change(seen, now) {
                    let _ = queue.db("conditions", |c| storage::make_all_due(c, now_ms()));
                }
                seen = now;
            }
            _ = recovered.changed() => {
                let _ = queue.db("backend recovered", |c| storage::make_all_due(c, now_ms()));
            }
            changed = scopes.changed() => {
                if changed.is_err() {
                    return;
                }
                // The new scope's entries may be due; its unnotified outcomes can be told.
                queue.poke_listener();
            }
            _ = credentials.changed() => {}
        }
    }
}

/// Does this change make every pending entry due now? Back online, back in the foreground (a
/// flush, as `flush_queue` would), or off a metered network (unmetered-only entries may go).
fn flush_on_change(before: Conditions, after: Conditions) -> bool {
    (after.online && !before.online)
        || (before.background() && !after.background())
        || (before.metered && !after.metered)
}

/// Starts deliveries for due group heads of user `scope` (stored as `tag`) while slots are free.
fn start_due(
    queue: &Arc<Queue>,
    layer: &CacheLayer,
    scope: Option<String>,
    tag: Option<&str>,
    metered: bool,
) {
    let busy: Vec<String> = queue
        .in_flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    let free = queue.settings.max_in_flight.saturating_sub(busy.len());
    if free == 0 {
        return;
    }
    let Ok(due) = queue.db("due", |c| {
        storage::due_heads(c, now_ms(), &busy, free, tag, metered)
    }) else {
        return;
    };
    for entry in due {
        queue
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry.id.clone());
        crate::runtime::spawn_contained(
            "queue delivery",
            deliver(queue.clone(), layer.clone(), entry, scope.clone()),
        );
    }
}

/// Holds an entry's in-flight slot: however the delivery ends (done, panicked, aborted at shutdown)
/// the entry leaves `in_flight` and the replay loop is woken.
struct Slot {
    queue: Arc<Queue>,
    id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.queue
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.queue.wake.notify_one();
    }
}

/// Sends `entry` as user `scope` (the one it was stored under: the header provider is asked for
/// its credentials). A panic on the way (a bug, or foreign code) reschedules the entry like a
/// retryable failure; the slot is freed in every case.
async fn deliver(queue: Arc<Queue>, layer: CacheLayer, entry: Stored, scope: Option<String>) {
    use futures_util::FutureExt;
    let slot = Slot {
        queue: queue.clone(),
        id: entry.id.clone(),
    };
    let attempt = std::panic::AssertUnwindSafe(deliver_once(&queue, &layer, &entry, scope));
    match attempt.catch_unwind().await {
        Ok(recorded) => {
            drop(slot);
            if recorded {
                queue.poke_listener();
            }
        }
        Err(panic) => {
            let error = format!(
                "delivery panicked: {}",
                crate::runtime::panic_message(&*panic)
            );
            log::error!("robust-api: queue entry {}: {error}; rescheduled", entry.id);
            let delay = retry_delay(&queue, &entry);
            let now = now_ms();
            let _ = queue.db("reschedule", |c| {
                storage::reschedule(c, &entry, &error, now, now + delay.as_millis() as i64)
            });
        }
    }
}

/// The backoff before the next try of `entry`.
fn retry_delay(queue: &Queue, entry: &Stored) -> Duration {
    backoff_delay(
        entry.attempts,
        queue.settings.retry_base,
        queue.settings.retry_max,
        fastrand::f64(),
    )
    .max(queue.settings.retry_base / 2)
}

/// One delivery; `true` when an outcome was recorded.
///
/// Expiry (`queue.max_age_ms`) counts from the entry's first attempt and is checked only after a
/// failed one: an entry is never given up without being sent, so a forward jump of the wall
/// clock (or a phone that was off for a month) costs at most one more send, never an entry.
/// A 429/503 whose `Retry-After` asked for longer than the backoff reschedules no sooner.
async fn deliver_once(
    queue: &Arc<Queue>,
    layer: &CacheLayer,
    entry: &Stored,
    scope: Option<String>,
) -> bool {
    let conditions = layer.network().current_conditions();
    if queue.identity().current() != scope || !conditions.may_send(entry.unmetered_only) {
        // The user switched, the app went offline or onto a metered network (for an
        // unmetered-only entry) between the start and now: it waits, untouched (the header
        // provider is not asked for a request that cannot go out).
        return false;
    }
    let entry = entry.clone();
    // Through the cache layer (one pass; the queue backs off itself), so a replayed write
    // invalidates cached GETs of its path like a live one.
    let result = layer.send(entry.to_request(), scope, Rounds::OnePass).await;
    let asked_wait = match &result {
        Err(ApiError::Http {
            status: 429 | 503,
            backend,
            ..
        }) => layer.network().retry_wait(backend),
        _ => None,
    };
    let mut decision = policy::decide(result);
    if let Decision::RetryLater(error) = &decision {
        let now = now_ms();
        let first = entry.first_attempt_at_ms.unwrap_or(now);
        let failing = Duration::from_millis((now - first).max(0) as u64);
        if policy::expired(failing, queue.settings.max_age) {
            decision = Decision::DeadLetter {
                reason: format!(
                    "expired: still failing {} s after its first attempt ({error})",
                    failing.as_secs()
                ),
                status: None,
                body: None,
            };
        }
    }
    let recorded = match &decision {
        Decision::Delivered(r) => {
            let sensitive = &queue.settings.sensitive_headers;
            let ok = queue.db("delivered", |c| storage::delivered(c, &entry, r, sensitive));
            if ok.is_ok() {
                queue
                    .delivered
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ok.is_ok()
        }
        Decision::RetryLater(error) => {
            let delay = retry_delay(queue, &entry).max(asked_wait.unwrap_or_default());
            let now = now_ms();
            let _ = queue.db("reschedule", |c| {
                storage::reschedule(c, &entry, error, now, now + delay.as_millis() as i64)
            });
            false
        }
        Decision::DeadLetter {
            reason,
            status,
            body,
        } => {
            // Every dead letter follows an attempt (expiry included, see above).
            queue
                .db("dead letter", |c| {
                    storage::dead_letter(c, &entry, reason, *status, body.as_deref(), true)
                })
                .is_ok()
        }
        Decision::NotAttempted => false,
    };
    recorded
}
