//! Request coalescing (single flight): concurrent identical GETs share one network exchange.
//! "Identical" is the flight id — a keyed hash of the cache key (target, user scope, credential
//! headers) and every final outgoing header, so two users, two tokens or two `Accept-Language`s
//! never share a flight. The first caller (the leader) runs the exchange; the others wait for its
//! result. If the leader is dropped before it finishes (its caller cancelled), the waiters are
//! woken and go on their own (one of them becomes the next leader). Bounded by the calls in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::ApiError;
use crate::types::ApiResponse;

pub(crate) type Shared = Result<ApiResponse, ApiError>;

type Slot = watch::Receiver<Option<Shared>>;

/// The flights in progress, by flight id.
#[derive(Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<HashMap<String, Slot>>>,
}

/// What a caller is in a flight.
pub(crate) enum Role {
    /// Runs the exchange and must [`Leader::finish`] it.
    Leader(Leader),
    /// Waits for the leader's result.
    Waiter(Slot),
}

/// The leader's end: publishes the result; dropping it unfinished wakes the waiters empty-handed.
pub(crate) struct Leader {
    map: Arc<Mutex<HashMap<String, Slot>>>,
    id: String,
    tx: watch::Sender<Option<Shared>>,
}

impl Flights {
    /// Joins the flight `id`, or starts it.
    pub(crate) fn join(&self, id: String) -> Role {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(&id) {
            if rx.has_changed().is_ok() {
                return Role::Waiter(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        map.insert(id.clone(), rx);
        Role::Leader(Leader {
            map: self.map.clone(),
            id,
            tx,
        })
    }

    /// Is flight `id` in progress?
    #[cfg(test)]
    pub(crate) fn in_flight(&self, id: &str) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_some_and(|rx| rx.has_changed().is_ok())
    }
}

impl Leader {
    /// Publishes the result to every waiter. The flight ends first (a caller arriving from now
    /// on starts its own), so when nobody waits nothing is copied.
    pub(crate) fn finish(self, result: &Shared) {
        self.end();
        if self.tx.receiver_count() > 0 {
            self.tx.send_replace(Some(result.clone()));
        }
    }

    /// Removes this flight from the map (unless a later one took its place).
    fn end(&self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.id)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.id);
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.end();
    }
}

/// Waits for the leader: its result, or `None` if it was dropped unfinished.
pub(crate) async fn wait(mut rx: Slot) -> Option<Shared> {
    loop {
        if let Some(v) = rx.borrow_and_update().clone() {
            return Some(v);
        }
        if rx.changed().await.is_err() {
            return rx.borrow().clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: i32) -> Shared {
        Ok(ApiResponse {
            status: n,
            headers: HashMap::new(),
            body: Vec::new(),
            backend: String::new(),
            attempts: 1,
            elapsed_ms: 0,
            from_cache: false,
            stale: false,
            age_ms: None,
            queued: None,
        })
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_result_and_a_new_flight_starts_after_it() {
        let f = Flights::default();
        let Role::Leader(leader) = f.join("a".into()) else {
            panic!("first is the leader")
        };
        let Role::Waiter(w) = f.join("a".into()) else {
            panic!("second waits")
        };
        assert!(matches!(f.join("b".into()), Role::Leader(_)), "another id");
        assert!(f.in_flight("a"));
        let waiting = tokio::spawn(wait(w));
        leader.finish(&ok(200));
        assert_eq!(waiting.await.unwrap().unwrap().unwrap().status, 200);
        assert!(!f.in_flight("a"));
        assert!(matches!(f.join("a".into()), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_waiters_empty_handed() {
        let f = Flights::default();
        let Role::Leader(leader) = f.join("a".into()) else {
            panic!()
        };
        let Role::Waiter(w) = f.join("a".into()) else {
            panic!()
        };
        drop(leader);
        assert!(wait(w).await.is_none());
        assert!(matches!(f.join("a".into()), Role::Leader(_)));
    }
}
