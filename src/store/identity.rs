//! The app's current user scope (`set_user_scope`): what every stored cache entry and queued
//! request is tagged with, and the only scope lookups and replays see.

use tokio::sync::watch;

/// The current user scope; `None` = no user (anonymous, or an app that does not use scopes).
#[derive(Debug)]
pub(crate) struct Identity {
    current: watch::Sender<Option<String>>,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            current: watch::Sender::new(None),
        }
    }
}

impl Identity {
    pub(crate) fn current(&self) -> Option<String> {
        self.current.borrow().clone()
    }

    /// Changes the scope; subscribers wake only on a real change.
    pub(crate) fn set(&self, scope: Option<String>) {
        self.current.send_if_modified(|c| {
            if *c == scope {
                false
            } else {
                *c = scope;
                true
            }
        });
    }

    /// `changed()` wakes on every scope change (the queue's replay task).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.current.subscribe()
    }
}
