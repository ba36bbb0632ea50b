//! Credentials from the app's [`Authenticator`], per identity scope, and their single-flight
//! refresh.
//!
//! Each scope has a slot, in memory only: its current credential headers (asked from
//! `credentials` once, then replaced by each successful refresh), a generation (bumped by every
//! change), at most one refresh in flight, and whether it is *blocked* (the last refresh failed,
//! or the server refused refreshed credentials: the offline queue waits until
//! `credentials_changed()` or a later successful refresh).
//!
//! A call refused with its credentials asks [`Auth::refreshed`] for new ones, giving the headers it
//! carried. If the slot's credentials are no longer those (a refresh finished meanwhile, or the app
//! changed them), the call is re-sent with the current ones and nothing is refreshed; otherwise it
//! joins the refresh in flight, or starts the one refresh. So a rotating refresh token is used once:
//! one refresh per scope at a time, and never one for credentials already replaced.
//!
//! The refresh runs in a task of its own (a caller that gives up does not cancel it for the
//! others). Foreign code runs on a blocking thread, never on an async worker, within
//! `auth.timeout_ms`; the refresh may call the network through the same client with
//! `skip_authentication` (which neither waits for the refresh nor carries the expired headers).
//!
//! Whether an answer means "credentials expired", and what a call does then, is pure:
//! [`after_answer`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::error::ApiError;
use crate::http::parse_headers;
use crate::types::Authenticator;

/// At most this many scopes keep a slot; beyond, an idle slot is dropped (its credentials are asked
/// again on its next use).
const MAX_SLOTS: usize = 64;

/// What a call does with an answer, as far as credentials go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthStep {
    /// Not about credentials (or none of the authenticator's were sent): the answer stands.
    Keep,
    /// Credentials expired: refresh (once for all such calls) and re-send once.
    Refresh,
    /// Refused although just refreshed: the call fails with `Unauthorized`.
    Refused,
}

/// The policy: `status` answered a call that carried the authenticator's credentials
/// (`authenticated`), already re-sent after a refresh (`refreshed`) or not.
pub(crate) fn after_answer(
    status: u16,
    expired_statuses: &[u16],
    authenticated: bool,
    refreshed: bool,
) -> AuthStep {
    match (
        authenticated && expired_statuses.contains(&status),
        refreshed,
    ) {
        (false, _) => AuthStep::Keep,
        (true, false) => AuthStep::Refresh,
        (true, true) => AuthStep::Refused,
    }
}

/// One scope's credential headers (values marked sensitive; never shown by `Debug`).
#[derive(Clone)]
pub(crate) struct Creds(HeaderMap);

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({} headers)", self.0.len())
    }
}

impl Creds {
    fn parse(pairs: &HashMap<String, String>) -> Result<Self, String> {
        let mut map = parse_headers(pairs, |r| ApiError::InvalidRequest { reason: r })
            .map_err(|e| e.to_string())?;
        for v in map.values_mut() {
            v.set_sensitive(true);
        }
        Ok(Creds(map))
    }

    /// Adds (overrides) these headers on `headers`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Did `sent` carry exactly these credentials?
    fn carried_by(&self, sent: &HeaderMap) -> bool {
        self.0.iter().all(|(n, v)| sent.get(n) == Some(v))
    }
}

/// How a refresh ended, as its waiters see it.
#[derive(Debug, Clone)]
enum Outcome {
    Refreshed(Arc<Creds>),
    Failed(String),
    /// `credentials_changed()` came while it ran: its result was dropped; look again.
    Superseded,
}

#[derive(Default)]
struct Slot {
    headers: Option<Arc<Creds>>,
    generation: u64,
    refreshing: Option<tokio::sync::watch::Receiver<Option<Outcome>>>,
    blocked: bool,
}

/// The authenticator and every scope's slot.
pub(crate) struct Auth {
    authenticator: RwLock<Option<Arc<dyn Authenticator>>>,
    slots: Mutex<HashMap<Option<String>, Slot>>,
    timeout: Duration,
    /// Bumped by every change that may unpause the queue (a refresh succeeded, new credentials).
    changed: tokio::sync::watch::Sender<u64>,
    /// Refreshes started (tests and the status).
    refreshes: std::sync::atomic::AtomicU64,
}

impl Auth {
    pub(crate) fn new(timeout: Duration) -> Self {
        Auth {
            authenticator: RwLock::new(None),
            slots: Mutex::default(),
            timeout,
            changed: tokio::sync::watch::Sender::new(0),
            refreshes: Default::default(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Option<String>, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn authenticator(&self) -> Option<Arc<dyn Authenticator>> {
        self.authenticator
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Is an authenticator installed?
    pub(crate) fn is_set(&self) -> bool {
        self.authenticator().is_some()
    }

    /// Installs (replaces) the authenticator; every scope's credentials are asked again.
    pub(crate) fn set(&self, authenticator: Arc<dyn Authenticator>) {
        *self
            .authenticator
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(authenticator);
        self.credentials_changed();
    }

    /// The app has new credentials (a login, a token it refreshed itself): every scope's are asked
    /// again on next use, blocked scopes unblock, the queue resumes. A refresh in flight finishes
    /// (it is never raced) but its result is dropped.
    pub(crate) fn credentials_changed(&self) {
        for slot in self.slots().values_mut() {
            slot.headers = None;
            slot.generation += 1;
            slot.blocked = false;
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Wakes (`changed()`) when credentials may have become usable again.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Should queued requests of `scope` wait (its refresh failed, or refreshed credentials were
    /// refused)?
    pub(crate) fn is_blocked(&self, scope: &Option<String>) -> bool {
        self.slots().get(scope).is_some_and(|s| s.blocked)
    }

    /// The server refused `scope`'s refreshed credentials: block the scope (the queue waits).
    pub(crate) fn refused(&self, scope: &Option<String>) {
        self.with_slot(scope, |s| s.blocked = true);
    }

    /// Refreshes started so far.
    pub(crate) fn refresh_count(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn with_slot<T>(&self, scope: &Option<String>, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.slots();
        if !slots.contains_key(scope) && slots.len() >= MAX_SLOTS {
            let idle = slots
                .iter()
                .find(|(_, s)| s.refreshing.is_none() && !s.blocked)
                .map(|(k, _)| k.clone());
            if let Some(k) = idle {
                slots.remove(&k);
            }
        }
        f(slots.entry(scope.clone()).or_default())
    }

    /// `scope`'s current credential headers; `None` without an authenticator.
    pub(crate) async fn headers(
        &self,
        scope: &Option<String>,
    ) -> Result<Option<Arc<Creds>>, ApiError> {
        let Some(authenticator) = self.authenticator() else {
            return Ok(None);
        };
        let (known, generation) = self.with_slot(scope, |s| (s.headers.clone(), s.generation));
        if let Some(creds) = known {
            return Ok(Some(creds));
        }
        let s = scope.clone();
        let asked = ask_foreign(self.timeout, move || async move {
            authenticator.credentials(s).await
        })
        .await
        .and_then(|pairs| Creds::parse(&pairs).map(Arc::new))
        .map_err(|reason| ApiError::CredentialsUnavailable {
            reason: format!("the authenticator's credentials: {reason}"),
        })?;
        Ok(Some(self.with_slot(scope, |s| {
            // A refresh (or new credentials) that landed meanwhile wins over this older answer.
            if s.generation == generation && s.headers.is_none() {
                s.headers = Some(asked.clone());
            }
            asked
        })))
    }

    /// [`Auth::headers`] when they are at hand: `Some(None)` with no authenticator,
    /// `Some(Some(creds))` when the credentials of `scope` are known, `None` when the
    /// authenticator would have to be asked.
    pub(crate) fn headers_at_hand(&self, scope: &Option<String>) -> Option<Option<Arc<Creds>>> {
        if self.authenticator().is_none() {
            return Some(None);
        }
        self.with_slot(scope, |s| s.headers.clone()).map(Some)
    }

    /// New credentials for a call of `scope` refused with the headers it `sent`: the current ones
    /// if a refresh already replaced those, else the result of the one refresh (joined or started).
    /// `Err`: why no usable credentials came (the refresh failed).
    pub(crate) async fn refreshed(
        self: &Arc<Self>,
        scope: &Option<String>,
        sent: &HeaderMap,
    ) -> Result<Arc<Creds>, String> {
        // Bounded: each turn follows a refresh that was superseded by new credentials.
        for _ in 0..4 {
            if !self.is_set() {
                return Err("no authenticator is set".into());
            }
            // Make sure the slot knows the scope's credentials (asked if it does not).
            self.headers(scope).await.map_err(|e| e.to_string())?;
            enum Next {
                Use(Arc<Creds>),
                Wait(tokio::sync::watch::Receiver<Option<Outcome>>),
                Again,
            }
            let next = {
                let this = self.clone();
                // Decided under the slot's lock, against its current credentials: a refresh that
                // finished a moment ago is seen, so a used refresh token is never sent again.
                self.with_slot(scope, |s| {
                    match &s.headers {
                        None => return Next::Again, // new credentials came meanwhile
                        Some(h) if !h.carried_by(sent) => return Next::Use(h.clone()),
                        Some(_) => {}
                    }
                    // (A refresh task that died without an answer — its sender gone — is replaced.)
                    if let Some(rx) = s.refreshing.as_ref().filter(|rx| rx.has_changed().is_ok()) {
                        return Next::Wait(rx.clone());
                    }
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    s.refreshing = Some(rx.clone());
                    let generation = s.generation;
                    let scope = scope.clone();
                    this.refreshes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    crate::runtime::spawn_contained("credential refresh", async move {
                        let outcome = this.run_refresh(&scope, generation).await;
                        tx.send_replace(Some(outcome));
                    });
                    Next::Wait(rx)
                })
            };
            let mut waiting = match next {
                Next::Use(creds) => return Ok(creds),
                Next::Again => continue,
                Next::Wait(rx) => rx,
            };
            let outcome = match waiting.wait_for(Option::is_some).await {
                Ok(o) => o.clone(),
                Err(_) => return Err("the refresh was cancelled (client shut down)".into()),
            };
            match outcome {
                Some(Outcome::Refreshed(creds)) => return Ok(creds),
                Some(Outcome::Failed(reason)) => return Err(reason),
                Some(Outcome::Superseded) | None => continue,
            }
        }
        Err("the credentials kept changing during the refresh".into())
    }

    /// The one refresh of `scope` (started at `generation`): asks the authenticator, records the
    /// result in the slot, ends the slot's refresh.
    async fn run_refresh(&self, scope: &Option<String>, generation: u64) -> Outcome {
        let result = match self.authenticator() {
            Some(a) => {
                let s = scope.clone();
                ask_foreign(self.timeout, move || async move { a.refresh(s).await })
                    .await
                    .and_then(|pairs| Creds::parse(&pairs).map(Arc::new))
            }
            None => Err("no authenticator is set".into()),
        };
        let outcome = self.with_slot(scope, |s| {
            s.refreshing = None;
            match result {
                Ok(creds) if s.generation == generation => {
                    s.headers = Some(creds.clone());
                    s.generation += 1;
                    s.blocked = false;
                    Outcome::Refreshed(creds)
                }
                Ok(_) => Outcome::Superseded,
                Err(reason) => {
                    if s.generation == generation {
                        s.blocked = true;
                    }
                    Outcome::Failed(format!("the credential refresh failed: {reason}"))
                }
            }
        });
        if matches!(outcome, Outcome::Refreshed(_)) {
            log::info!("robust-api: credentials refreshed");
            self.changed.send_modify(|n| *n += 1);
        } else if let Outcome::Failed(reason) = &outcome {
            log::warn!("robust-api: {reason}; queued requests wait for credentials_changed()");
        }
        outcome
    }
}

/// Runs a foreign async call on a blocking thread of its own (its first poll enters foreign code,
/// which must never hold an async worker), given up on after `timeout` (the foreign future is then
/// dropped, which cancels it where the platform can). Every failure — an error, a throw, a panic, no
/// answer in time — is a reason text.
async fn ask_foreign<T, F, Fut>(timeout: Duration, call: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    let asked =
        tokio::task::spawn_blocking(move || handle.block_on(tokio::time::timeout(timeout, call())));
    match asked.await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => Err(format!(
            "the authenticator did not answer within {} ms",
            timeout.as_millis()
        )),
        Err(join) => Err(match join.try_into_panic() {
            Ok(panic) => format!(
                "the authenticator panicked: {}",
                crate::runtime::panic_message(&*panic)
            ),
            Err(e) => format!("the authenticator did not finish: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_expired_statuses_of_authenticated_calls_refresh_once() {
        let expired = [401];
        assert_eq!(after_answer(401, &expired, true, false), AuthStep::Refresh);
        assert_eq!(after_answer(401, &expired, true, true), AuthStep::Refused);
        assert_eq!(after_answer(401, &expired, false, false), AuthStep::Keep);
        assert_eq!(after_answer(403, &expired, true, false), AuthStep::Keep);
        assert_eq!(
            after_answer(419, &[401, 419], true, false),
            AuthStep::Refresh
        );
    }

    #[test]
    fn credentials_never_show_in_debug_and_match_exactly() {
        let pairs = HashMap::from([("Authorization".to_string(), "Bearer s3cr3t".to_string())]);
        let creds = Creds::parse(&pairs).unwrap();
        assert!(!format!("{creds:?}").contains("s3cr3t"));
        let mut sent = HeaderMap::new();
        creds.apply(&mut sent);
        assert!(creds.carried_by(&sent));
        assert!(!format!("{sent:?}").contains("s3cr3t"), "sensitive values");
        sent.insert("authorization", "Bearer other".parse().unwrap());
        assert!(!creds.carried_by(&sent));
    }
}
