//! Write-behind: storing a response costs the caller a map insert and a channel send, not an
//! SQLite write. Entries wait in `pending` (reads see them) and a bounded channel carries them to
//! one writer task, which writes whatever has gathered in one transaction. A full channel drops
//! the store (counted in `CacheStatus.write_behind_dropped`), never blocks the call. Shutdown
//! writes what is still pending ([`WriteBehind::take_all`]).
//!
//! Races with deletion (invalidation, `clear_cache`, `clear_user_data`) are closed by one lock
//! (`write_lock`): a deletion holds it while it drops the pending entries and deletes the rows, and
//! the writer holds it while it writes, writing only entries that are still pending. A deleted
//! entry is never written back.
//!
//! The writer waits on a [`Notify`], never inside `Receiver::recv`: `recv` leaves the writer
//! task's waker in the channel after the task is dropped, and that waker keeps the task's
//! allocation — with its handle to the client's runtime, whose epoll and eventfd descriptors go
//! with it — alive for as long as the client is referenced, after `shutdown()` too
//! (tests/shutdown_resources.rs). A dropped `Notified` takes its waker with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::sync::Notify;

use super::Entry;

/// Stores that may wait for the writer; one more is dropped.
pub(crate) const WRITE_QUEUE_CAPACITY: usize = 256;
/// Most entries written in one transaction.
pub(crate) const WRITE_BATCH: usize = 64;
/// How long the writer lets stores gather after the first one before it writes them: one wake-up,
/// one blocking-pool hand-off and one commit for every store of a burst (a screen's worth of
/// GETs), instead of one each. Reads see pending stores meanwhile; a kill loses at most what
/// was pending, as before.
pub(crate) const WRITE_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

type Slot = (String, String);

/// The pending entries and the channel to the writer.
pub(crate) struct WriteBehind {
    pending: Mutex<HashMap<Slot, Arc<Entry>>>,
    tx: mpsc::Sender<Arc<Entry>>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Arc<Entry>>>,
    /// Notified after each send (a permit waits if the writer is busy).
    sent: Notify,
    /// Notified when a send fills a batch: ends the writer's linger. A separate signal, so the
    /// stores of a burst do not each wake the lingering writer.
    full: Notify,
    write_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn slot(e: &Entry) -> Slot {
    (e.key.clone(), e.vary.clone())
}

impl WriteBehind {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        WriteBehind {
            pending: Mutex::default(),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            sent: Notify::new(),
            full: Notify::new(),
            write_lock: Mutex::new(()),
        }
    }

    /// Queues `entry` for writing; `false` (nothing queued) when the queue is full.
    pub(crate) fn push(&self, entry: Arc<Entry>) -> bool {
        lock(&self.pending).insert(slot(&entry), entry.clone());
        match self.tx.try_send(entry.clone()) {
            Ok(()) => {
                self.sent.notify_one();
                if self.tx.max_capacity() - self.tx.capacity() + 1 >= WRITE_BATCH {
                    self.full.notify_one();
                }
                true
            }
            Err(_) => {
                let mut p = lock(&self.pending);
                if p.get(&slot(&entry)).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
                    p.remove(&slot(&entry));
                }
                false
            }
        }
    }

    /// The first pending variant of `key` that `matches` accepts.
    pub(crate) fn get(&self, key: &str, matches: impl Fn(&Entry) -> bool) -> Option<Arc<Entry>> {
        lock(&self.pending)
            .values()
            .find(|e| e.key == key && matches(e))
            .cloned()
    }

    /// Held while rows are deleted (so nothing pending is written after) or written.
    pub(crate) fn exclusive(&self) -> MutexGuard<'_, ()> {
        lock(&self.write_lock)
    }

    /// Drops the pending entries `drop_it` selects (call with [`WriteBehind::exclusive`] held).
    pub(crate) fn discard(&self, drop_it: impl Fn(&Entry) -> bool) {
        lock(&self.pending).retain(|_, e| !drop_it(e));
    }

    /// Of `batch` (received from the channel), the entries still pending as they were sent (call
    /// with [`WriteBehind::exclusive`] held).
    pub(crate) fn still_pending(&self, batch: Vec<Arc<Entry>>) -> Vec<Arc<Entry>> {
        let p = lock(&self.pending);
        batch
            .into_iter()
            .filter(|e| p.get(&slot(e)).is_some_and(|cur| Arc::ptr_eq(cur, e)))
            .collect()
    }

    /// Written: no longer pending (unless replaced meanwhile).
    pub(crate) fn written(&self, batch: &[Arc<Entry>]) {
        let mut p = lock(&self.pending);
        for e in batch {
            if p.get(&slot(e)).is_some_and(|cur| Arc::ptr_eq(cur, e)) {
                p.remove(&slot(e));
            }
        }
    }

    /// Everything pending, taken out (shutdown, status).
    pub(crate) fn take_all(&self) -> Vec<Arc<Entry>> {
        lock(&self.pending).drain().map(|(_, e)| e).collect()
    }

    /// The next batch from the channel: waits for one entry, lets more gather for
    /// [`WRITE_LINGER`] (or until a batch is full), then takes up to [`WRITE_BATCH`]. `None` once every sender is gone.
    pub(crate) async fn next_batch(&self) -> Option<Vec<Arc<Entry>>> {
        let mut rx = self.rx.lock().await;
        let first = loop {
            match rx.try_recv() {
                Ok(e) => break e,
                Err(TryRecvError::Empty) => self.sent.notified().await,
                Err(TryRecvError::Disconnected) => return None,
            }
        };
        // Linger, but not past a full batch: a burst larger than the channel would otherwise
        // fill it while the writer sleeps, and its later stores would be dropped.
        let linger = tokio::time::sleep(WRITE_LINGER);
        tokio::pin!(linger);
        while rx.len() + 1 < WRITE_BATCH {
            tokio::select! {
                _ = &mut linger => break,
                _ = self.full.notified() => {}
            }
        }
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(i: usize) -> Arc<Entry> {
        let mut e = Entry::blank();
        e.key = format!("k{i}");
        Arc::new(e)
    }

    /// The writer lingers for company after a lone store, but a full batch is taken at once: a
    /// burst bigger than the channel would otherwise fill it during the linger (dropped stores).
    #[tokio::test(start_paused = true)]
    async fn a_full_batch_ends_the_linger_and_a_lone_store_waits_for_it() {
        let w = WriteBehind::new();
        let started = tokio::time::Instant::now();
        for i in 0..WRITE_BATCH {
            assert!(w.push(entry(i)));
        }
        let batch = w.next_batch().await.unwrap();
        assert_eq!(batch.len(), WRITE_BATCH);
        assert_eq!(started.elapsed(), Duration::ZERO);

        // A batch filling up during the linger ends it too.
        assert!(w.push(entry(1000)));
        let w = Arc::new(w);
        let filler = w.clone();
        let started = tokio::time::Instant::now();
        let fill = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            for i in 1..WRITE_BATCH {
                assert!(filler.push(entry(2000 + i)));
            }
        });
        let batch = w.next_batch().await.unwrap();
        fill.await.unwrap();
        assert_eq!(batch.len(), WRITE_BATCH);
        assert_eq!(started.elapsed(), Duration::from_millis(2));

        let started = tokio::time::Instant::now();
        assert!(w.push(entry(3000)));
        assert_eq!(w.next_batch().await.unwrap().len(), 1);
        assert_eq!(started.elapsed(), WRITE_LINGER);
    }
}
