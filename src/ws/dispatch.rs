//! Delivery of one connection's events to its foreign listener, on a dedicated thread.
//!
//! Why a thread per connection: a listener is app code (Kotlin, Swift, Python) that may block, and
//! must never run on the client's two runtime worker threads or while a lock is held. One thread per
//! connection keeps each connection's events in order and keeps a slow listener from delaying the
//! others. The queue to the thread is bounded by count and by payload bytes; when it is full the
//! connection task waits (it stops reading the socket: TCP backpressure), nothing is dropped.
//!
//! The thread ends after delivering [`Event::Closed`] (always the last callback), or when every
//! sender is gone (the connection task was aborted by a shutdown).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::{WebSocketListener, WebSocketState};
use crate::error::ApiError;

/// Events queued for the listener thread.
const QUEUE: usize = 256;
/// Payload bytes queued for the listener thread (one larger message may still pass alone).
const QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// One listener callback.
#[derive(Debug)]
pub(crate) enum Event {
    Open(String),
    Text(String),
    Binary(Vec<u8>),
    State(WebSocketState),
    Error(ApiError),
    Closed(u16, String),
}

impl Event {
    fn payload_len(&self) -> usize {
        match self {
            Event::Text(t) => t.len(),
            Event::Binary(b) => b.len(),
            _ => 0,
        }
    }
}

type Item = (Event, Option<OwnedSemaphorePermit>);

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    tx: mpsc::Sender<Item>,
    bytes: Arc<Semaphore>,
}

impl Dispatcher {
    /// Starts the listener thread of connection `id`.
    pub(crate) fn start(id: u64, listener: Arc<dyn WebSocketListener>) -> Result<Self, ApiError> {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        std::thread::Builder::new()
            .name(format!("robust-api-ws-{id}"))
            .spawn(move || {
                while let Some((event, permit)) = rx.blocking_recv() {
                    let last = matches!(event, Event::Closed(..));
                    // A throwing foreign listener must not end delivery (or this thread).
                    if let Ok(r) = catch_unwind(AssertUnwindSafe(|| deliver(&*listener, event))) {
                        crate::error::warn_on_listener_error("WebSocket listener", r);
                    }
                    drop(permit);
                    if last {
                        break;
                    }
                }
            })
            .map_err(|e| ApiError::Internal {
                reason: format!("starting a WebSocket listener thread: {e}"),
            })?;
        Ok(Dispatcher {
            tx,
            bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
        })
    }

    /// Queues `event`, waiting while the queue is full. `false` if the thread has ended (after
    /// `Closed`, or the client was shut down).
    pub(crate) async fn send(&self, event: Event) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        let permit = match event.payload_len() {
            0 => None,
            n => {
                let n = n.min(QUEUE_BYTES) as u32;
                match self.bytes.clone().acquire_many_owned(n).await {
                    Ok(p) => Some(p),
                    Err(_) => return false,
                }
            }
        };
        self.tx.send((event, permit)).await.is_ok()
    }

    /// Queues `event` without waiting (used at shutdown); `false` if it could not be queued.
    pub(crate) fn try_send(&self, event: Event) -> bool {
        self.tx.try_send((event, None)).is_ok()
    }
}

fn deliver(listener: &dyn WebSocketListener, event: Event) -> Result<(), ApiError> {
    match event {
        Event::Open(backend) => listener.on_open(backend),
        Event::Text(text) => listener.on_text(text),
        Event::Binary(data) => listener.on_binary(data),
        Event::State(state) => listener.on_state_change(state),
        Event::Error(error) => listener.on_error(error),
        Event::Closed(code, reason) => listener.on_closed(code as i32, reason),
    }
}
