//! What the phone says about itself: is there a network, is it metered, is the app in the
//! foreground. One [`Conditions`] value, published on a `watch` channel by the network layer
//! ([`super::Network::conditions`]), so long-lived tasks (health probes, the queue's replay,
//! WebSocket heartbeats, resumable uploads) wait on a change instead of polling.

use crate::types::AppState;

/// The device conditions the app last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conditions {
    /// Foreground or background (`set_app_state`).
    pub app_state: AppState,
    /// The network is metered (cellular, a hotspot; `set_network_metered`).
    pub metered: bool,
    /// The network is available (`set_network_available`).
    pub online: bool,
}

impl Default for Conditions {
    fn default() -> Self {
        Conditions {
            app_state: AppState::Foreground,
            metered: false,
            online: true,
        }
    }
}

impl Conditions {
    /// The app is in the background.
    pub(crate) fn background(&self) -> bool {
        self.app_state == AppState::Background
    }

    /// May work marked `unmetered_only` (or not) go out now? Online, and not metered if it asks
    /// for an unmetered network.
    pub(crate) fn may_send(&self, unmetered_only: bool) -> bool {
        self.online && !(unmetered_only && self.metered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmetered_only_work_waits_while_metered_and_everything_waits_offline() {
        let mut c = Conditions::default();
        assert!(c.may_send(true) && c.may_send(false));
        c.metered = true;
        assert!(!c.may_send(true) && c.may_send(false));
        c.online = false;
        assert!(!c.may_send(false));
    }
}
