//! `ServiceStatus`: one snapshot of the whole client, assembled from each module's read-only getters.

use crate::cache::{CacheStatus, HttpCache};
use crate::events::{EventBus, StatusCounters, StorageRecovery};
use crate::net::{BackendStatus, Network};
use crate::queue::{Queue, QueueStatus};
use crate::types::AppState;
use crate::ws::{SocketRegistry, SocketStatus};

/// One consistent-enough snapshot of the whole client.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ServiceStatus {
    /// Every backend, in configured order.
    pub backends: Vec<BackendStatus>,
    /// Where the next request would go; `None` when every breaker is OPEN.
    pub preferred_backend: Option<String>,
    /// What the app last reported via `set_network_available`.
    pub network_available: bool,
    /// What the app last reported via `set_network_metered`.
    pub network_metered: bool,
    /// What the app last reported via `set_app_state`.
    pub app_state: AppState,
    /// Counters.
    pub counters: StatusCounters,
    /// The response cache.
    pub cache: CacheStatus,
    /// The offline request queue.
    pub queue: QueueStatus,
    /// Every WebSocket connection not yet closed for good, oldest first.
    pub sockets: Vec<SocketStatus>,
    /// Storage files found damaged and recreated (what was salvaged, what was lost), oldest
    /// first; kept until `take_storage_recoveries()` reads them (at most 16).
    pub storage_recoveries: Vec<StorageRecovery>,
}

/// Builds the snapshot from each module's read-only getters.
pub(crate) fn snapshot(
    net: &Network,
    cache: &HttpCache,
    queue: &Queue,
    sockets: &SocketRegistry,
    events: &EventBus,
) -> ServiceStatus {
    ServiceStatus {
        backends: net.backend_status(),
        preferred_backend: net.preferred_backend(),
        network_available: net.is_online(),
        network_metered: net.current_conditions().metered,
        app_state: net.current_conditions().app_state,
        counters: net.counters(),
        cache: cache.status(),
        queue: queue.status(),
        sockets: sockets.status(),
        storage_recoveries: events.recoveries(),
    }
}
