//! Task tracking: the connection tasks of a server, so they can all be aborted at once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::task::JoinHandle;

use crate::lock;

/// A set of spawned tasks that remove themselves when they end, so they can all be aborted
/// (which drops, hence closes, their sockets).
#[derive(Default)]
pub(crate) struct TaskSet {
    next_id: AtomicU64,
    tasks: Mutex<Tasks>,
}

#[derive(Default)]
struct Tasks {
    running: HashMap<u64, JoinHandle<()>>,
    /// Tasks that ended before `spawn` could register their handle.
    ended_early: HashSet<u64>,
    /// Once closed (fleet dropped), `spawn` aborts what it starts.
    closed: bool,
}

/// Removes a task's handle from its set when the task ends or is aborted (its future is dropped).
struct Deregister {
    set: Weak<TaskSet>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Some(set) = self.set.upgrade() {
            let mut tasks = lock(&set.tasks);
            if tasks.running.remove(&self.id).is_none() {
                tasks.ended_early.insert(self.id);
            }
        }
    }
}

impl TaskSet {
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deregister = Deregister {
            set: Arc::downgrade(self),
            id,
        };
        // Spawned without holding the lock: a task may be dropped inline (runtime shutting down),
        // and its `Deregister` takes the lock.
        let handle = tokio::spawn(async move {
            let _deregister = deregister;
            future.await;
        });
        let mut tasks = lock(&self.tasks);
        if tasks.ended_early.remove(&id) {
            return;
        }
        if tasks.closed {
            handle.abort();
            return;
        }
        tasks.running.insert(id, handle);
    }

    fn take_all(&self) -> Vec<JoinHandle<()>> {
        lock(&self.tasks)
            .running
            .drain()
            .map(|(_, handle)| handle)
            .collect()
    }

    /// Aborts every task and waits until they are gone (their sockets closed).
    pub(crate) async fn abort_all_and_wait(&self) {
        let handles = self.take_all();
        for handle in &handles {
            handle.abort();
        }
        for handle in handles {
            let _ = handle.await;
        }
        // Aborted tasks deregistered after the drain: forget their ids.
        lock(&self.tasks).ended_early.clear();
    }

    /// Refuses new tasks, aborts every task and waits until they are gone.
    pub(crate) async fn close_and_abort_all(&self) {
        lock(&self.tasks).closed = true;
        self.abort_all_and_wait().await;
    }

    /// Refuses new tasks and aborts every task, without waiting.
    pub(crate) fn close_and_abort_all_now(&self) {
        lock(&self.tasks).closed = true;
        for handle in self.take_all() {
            handle.abort();
        }
    }
}
