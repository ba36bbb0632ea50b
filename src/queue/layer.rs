//! The queue layer of the request stack: a request with `OfflinePolicy::Queue` that cannot be
//! delivered now (offline, every backend down, retries exhausted on a retryable failure) is
//! persisted and answered `202` with `queued` set; everything else passes straight to the cache
//! layer below.

use std::sync::Arc;

use super::{policy, Queue};
use crate::cache::CacheLayer;
use crate::defaults::ms_i32;
use crate::error::ApiError;
use crate::net::Rounds;
use crate::types::{ApiRequest, ApiResponse, OfflinePolicy};

/// The offline fallback over the cache layer.
#[derive(Clone)]
pub(crate) struct QueueLayer {
    queue: Arc<Queue>,
    inner: CacheLayer,
}

impl QueueLayer {
    pub(crate) fn new(queue: Arc<Queue>, inner: CacheLayer) -> Self {
        QueueLayer { queue, inner }
    }

    /// Checks what a send would reject, and what could not be stored without a secret, before
    /// anything is persisted (the header provider is not called).
    pub(crate) fn validate(&self, req: &ApiRequest) -> Result<(), ApiError> {
        self.inner.network().validate(req)?;
        self.queue.check_storable(req)
    }

    /// Sends `req`, queueing it when it cannot be delivered now and asks to be. A queued request
    /// gets its idempotency key before its first attempt, so every attempt, live or replayed,
    /// carries the same one.
    /// The call runs, and is queued, in the user scope current when it starts.
    pub(crate) async fn send(&self, mut req: ApiRequest) -> Result<ApiResponse, ApiError> {
        let scope = self.queue.identity().current();
        if req.offline != Some(OfflinePolicy::Queue) {
            return self.inner.send(req, scope, Rounds::Configured).await;
        }
        self.validate(&req)?;
        let key = req
            .idempotency_key
            .get_or_insert_with(crate::ids::new_uuid_v4)
            .clone();
        let started = std::time::Instant::now();
        match self
            .inner
            .send(req.clone(), scope.clone(), Rounds::Configured)
            .await
        {
            Err(e) if policy::should_queue(&e) => {
                let group = req.queue_group.clone();
                let id = self.queue.enqueue(&req, key, group, scope.as_deref())?;
                log::info!("robust-api: {} queued as {id}: {e}", req.path);
                Ok(ApiResponse::queued(id, ms_i32(started.elapsed())))
            }
            other => other,
        }
    }

    /// The answer to `req` when it is at hand without the network or waiting (see
    /// [`CacheLayer::answer_at_hand`]); a request that may be queued always takes the async path.
    pub(crate) fn answer_at_hand(&self, req: &ApiRequest) -> Option<Result<ApiResponse, ApiError>> {
        if req.offline == Some(OfflinePolicy::Queue) {
            return None;
        }
        self.inner
            .answer_at_hand(req, self.queue.identity().current())
    }

    /// Persists `req` for delivery as soon as possible, in the current user scope (durable when
    /// this returns).
    pub(crate) fn enqueue(
        &self,
        req: &ApiRequest,
    ) -> Result<crate::types::QueuedRequestId, ApiError> {
        self.validate(req)?;
        let key = req
            .idempotency_key
            .clone()
            .unwrap_or_else(crate::ids::new_uuid_v4);
        let scope = self.queue.identity().current();
        self.queue
            .enqueue(req, key, req.queue_group.clone(), scope.as_deref())
    }
}
