//! One [`AttemptRecord`] per attempt: the attempt loop opens an [`AttemptWatch`] before each
//! attempt of an exchange that describes itself, and the watch reports it exactly once — when
//! the attempt finishes, or as `Cancelled` when its future is dropped (a hedge that lost the
//! race, a cancelled call). Each report also feeds the backend's recent window (p50/p95, error
//! rate), listener or not; records go to the app's [`AttemptListener`] through an [`Outbox`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::Network;
use crate::defaults::ms_i32;
use crate::error::ApiError;
use crate::observe::{
    AttemptListener, AttemptOutcome, AttemptReason, AttemptRecord, ConnectionUse, Outbox,
    ATTEMPT_BUFFER,
};
use crate::types::HttpMethod;

/// What the wire said about one attempt (filled by the exchange from its value).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wire {
    pub outcome: AttemptOutcome,
    pub status: Option<u16>,
    pub head_after: Option<Duration>,
    pub reused: Option<bool>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub error: Option<String>,
}

impl Wire {
    /// An attempt that ended the call with `e` (pin mismatch, too large, cancelled, …).
    pub(crate) fn aborted(e: &ApiError) -> Wire {
        let outcome = match e {
            ApiError::CertificatePinMismatch { .. } => AttemptOutcome::PinMismatch,
            ApiError::ResponseTooLarge { .. } => AttemptOutcome::TooLarge,
            ApiError::Cancelled { .. } => AttemptOutcome::Cancelled,
            _ => AttemptOutcome::Broken,
        };
        Wire {
            outcome,
            status: None,
            head_after: None,
            reused: None,
            bytes_sent: 0,
            bytes_received: 0,
            error: Some(e.to_string()),
        }
    }

    /// Does this attempt count as an error in the backend's window (no response, or a 5xx)?
    fn failed(&self) -> bool {
        self.outcome != AttemptOutcome::Response || self.status.is_some_and(|s| s >= 500)
    }
}

/// The attempt listener of one client, and what its full buffer dropped.
#[derive(Default)]
pub(crate) struct Recorder {
    outbox: RwLock<Option<Outbox<AttemptRecord>>>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Installs (replaces; `None`: removes) the listener, with a delivery thread of its own.
    pub(crate) fn set(&self, listener: Option<Arc<dyn AttemptListener>>) -> Result<(), ApiError> {
        let outbox = match listener {
            Some(l) => Some(
                Outbox::start(
                    "robust-api-attempts",
                    ATTEMPT_BUFFER,
                    self.dropped.clone(),
                    move |r: AttemptRecord| {
                        crate::error::warn_on_listener_error("attempt listener", l.on_attempt(r))
                    },
                )
                .map_err(|e| ApiError::Internal {
                    reason: format!("starting the attempt listener's thread: {e}"),
                })?,
            ),
            None => None,
        };
        let old = std::mem::replace(
            &mut *self.outbox.write().unwrap_or_else(PoisonError::into_inner),
            outbox,
        );
        if let Some(old) = old {
            old.close();
        }
        Ok(())
    }

    /// Records dropped because the listener was too slow.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn listening(&self) -> bool {
        self.outbox
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn push(&self, r: AttemptRecord) {
        if let Some(o) = self
            .outbox
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            o.push(r);
        }
    }

    /// Stops delivery (client shutdown); listeners may hold the client, so they are dropped.
    pub(crate) fn close(&self) {
        if let Some(o) = self
            .outbox
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            o.close();
        }
    }
}

/// One attempt being watched; reports on [`AttemptWatch::finish`] or, unfinished, on drop.
pub(crate) struct AttemptWatch<'a> {
    net: &'a Network,
    index: usize,
    method: HttpMethod,
    path: String,
    number: u32,
    reason: AttemptReason,
    started: Instant,
    started_at_ms: i64,
    done: bool,
}

impl<'a> AttemptWatch<'a> {
    pub(crate) fn begin(
        net: &'a Network,
        index: usize,
        (method, path): (HttpMethod, &str),
        number: u32,
        reason: AttemptReason,
    ) -> Self {
        AttemptWatch {
            net,
            index,
            method,
            path: path
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .to_string(),
            number,
            reason,
            started: net.now(),
            started_at_ms: crate::store::now_ms(),
            done: false,
        }
    }

    pub(crate) fn finish(mut self, wire: Wire) {
        self.done = true;
        self.report(wire);
    }

    fn report(&self, wire: Wire) {
        let now = self.net.now();
        let total = now.saturating_duration_since(self.started);
        if wire.outcome != AttemptOutcome::Cancelled {
            self.net
                .backends
                .observe(self.index, now, total, wire.failed());
        }
        if !self.net.recorder.listening() {
            return;
        }
        self.net.recorder.push(AttemptRecord {
            backend: self.net.backend(self.index).name.clone(),
            method: self.method,
            path: self.path.clone(),
            attempt: crate::defaults::saturating_i32(u64::from(self.number)),
            reason: self.reason,
            connection: match wire.reused {
                Some(true) => ConnectionUse::Reused,
                Some(false) => ConnectionUse::New,
                None => ConnectionUse::Unknown,
            },
            time_to_first_byte_ms: wire.head_after.map(ms_i32),
            total_ms: ms_i32(total),
            bytes_sent: wire.bytes_sent.min(i64::MAX as u64) as i64,
            bytes_received: wire.bytes_received.min(i64::MAX as u64) as i64,
            status: wire.status.map(i32::from),
            outcome: wire.outcome,
            error: wire.error,
            started_at_ms: self.started_at_ms,
        });
    }
}

impl Drop for AttemptWatch<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.report(Wire::aborted(&ApiError::Cancelled {
                reason: "the attempt was dropped before it finished".into(),
            }));
        }
    }
}
