//! Resumable uploads over time: the jobs that run [`super::tus`] sessions from durable
//! [`super::records`], and what the app sees of them (`pending_uploads`, listeners by id, pause,
//! resume, cancel).
//!
//! - An upload is a record first (persisted before any byte goes out), then a job: at most
//!   `upload.max_concurrent` run at once (the others wait for a slot).
//! - Jobs start when `upload_file` discovers a tus endpoint, when the client starts (records left
//!   by a killed process), when the network comes back or a backend recovers, when the user scope
//!   changes, and on `resume_uploads()` — only the current user scope's, and only while online.
//!   A running job whose scope stops being the current one stops at once (it never sends under
//!   another user's credentials) and resumes when its scope is current again.
//! - A job that fails on the network (offline, timeouts, backend down) stays `Active` and resumes
//!   at the next of those events. When the creating backend stays unreachable longer than
//!   `upload.restart_elsewhere_after_ms` (0: wait for it forever), the upload is created anew on
//!   the best other backend. A job that fails for good is `Failed` (the error kept); a deleted
//!   file removes the record.
//! - Listeners ([`ResumableUploadListener`]) are called from one thread of their own (never a
//!   runtime worker), with coalesced progress (the latest confirmed offset) and each final outcome.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::Url;
use tokio::sync::{watch, Semaphore};

use super::records::{fingerprint, Record, Records, UploadState};
use super::tus::{policy, Completed, Journal, Resume, Session, Source};
use super::{UploadRequest, UploadSettings};
use crate::cancel::CancelToken;
use crate::error::ApiError;
use crate::net::Network;
use crate::store::{now_ms, Identity};

/// A resumable upload as `pending_uploads()` shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PendingUpload {
    /// Its id (re-attach a listener with it; pause, resume, cancel).
    pub id: String,
    /// The file on disk.
    pub file_path: String,
    /// The creation endpoint (the upload request's `path`).
    pub endpoint: String,
    /// The metadata sent (`filename`, `title`, the request's fields).
    pub metadata: HashMap<String, String>,
    /// The backend holding the upload, once created.
    pub backend: Option<String>,
    /// The upload's URL on that backend, once created.
    pub upload_url: Option<String>,
    /// Bytes the server confirmed.
    pub confirmed_bytes: i64,
    /// The file's size.
    pub total_bytes: i64,
    /// Where it stands.
    pub state: UploadState,
    /// Why it failed, or the last transient failure.
    pub last_error: Option<String>,
    /// It goes out only over an unmetered network (it waits while the app reports a metered one).
    pub unmetered_only: bool,
}

impl PendingUpload {
    fn from_record(r: &Record) -> PendingUpload {
        PendingUpload {
            id: r.id.clone(),
            file_path: r.file_path.clone(),
            endpoint: r.endpoint.clone(),
            metadata: r.metadata.clone(),
            backend: r.backend.clone(),
            upload_url: r.upload_url.clone(),
            confirmed_bytes: r.confirmed.min(i64::MAX as u64) as i64,
            total_bytes: r.size.min(i64::MAX as u64) as i64,
            state: r.state,
            last_error: r.last_error.clone(),
            unmetered_only: r.unmetered_only,
        }
    }
}

/// Hears about one resumable upload (`attach_upload_listener`). Called on a thread of its own, in
/// order; progress is coalesced (a slow listener gets the latest offset, not every one). An error
/// (a foreign exception) is logged as a warning.
#[uniffi::export(with_foreign)]
pub trait ResumableUploadListener: Send + Sync {
    /// The server confirmed `confirmed_bytes` of `total_bytes` (never goes backwards).
    fn on_progress(
        &self,
        id: String,
        confirmed_bytes: i64,
        total_bytes: i64,
    ) -> Result<(), ApiError>;
    /// The upload completed: the server's answer to the last request.
    fn on_completed(&self, id: String, status: i32, body: Vec<u8>) -> Result<(), ApiError>;
    /// The upload stopped for good (`error` is the error's text), or was cancelled.
    fn on_failed(&self, id: String, error: String) -> Result<(), ApiError>;
}

/// How a job is doing (its watchers: the `upload_file` call, listeners).
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Confirmed offset.
    Running(u64),
    /// The job ended. `Err` with a transient error: the record stays `Active`.
    Ended(Result<Completed, ApiError>),
}

struct Job {
    token: Arc<CancelToken>,
    phase: watch::Receiver<Phase>,
}

/// A final outcome for a listener: `(status, body)` or the error's text.
type Final = Result<(u16, Vec<u8>), String>;

/// What the listener thread still has to tell, per upload.
#[derive(Default)]
struct Mailbox {
    progress: HashMap<String, (u64, u64)>,
    finals: Vec<(String, Final)>,
}

/// The resumable uploads of one client.
pub(crate) struct Uploads {
    net: Arc<Network>,
    settings: UploadSettings,
    records: Arc<Records>,
    identity: Arc<Identity>,
    jobs: Mutex<HashMap<String, Job>>,
    slots: Arc<Semaphore>,
    /// `(backend index, endpoint)` → does it speak tus (and what it offers)?
    discovered: Mutex<HashMap<(usize, String), Option<policy::Capabilities>>>,
    listeners: Arc<Mutex<HashMap<String, Arc<dyn ResumableUploadListener>>>>,
    mailbox: Arc<Mutex<Mailbox>>,
    wake: Mutex<Option<SyncSender<()>>>,
}

/// The journal of one job: the record's row.
struct RowJournal<'a> {
    records: &'a Records,
    net: &'a Network,
    id: &'a str,
}

impl Journal for RowJournal<'_> {
    fn created(
        &self,
        backend: usize,
        url: &str,
        offset: u64,
        expires_at_ms: Option<i64>,
    ) -> Result<(), ApiError> {
        let name = self.net.backend(backend).name.clone();
        self.records
            .set_target(self.id, &name, url, offset, expires_at_ms)
    }
    fn sending(&self, sent_high: u64) -> Result<(), ApiError> {
        self.records.set_sent_high(self.id, sent_high)
    }
    fn confirmed(&self, offset: u64, expires_at_ms: Option<i64>) -> Result<(), ApiError> {
        self.records.set_confirmed(self.id, offset, expires_at_ms)
    }
    fn restarted(&self) -> Result<(), ApiError> {
        self.records.restarted(self.id)
    }
}

/// Does this error mean "try again later" (the record stays `Active`)?
fn transient(e: &ApiError) -> bool {
    match e {
        ApiError::Offline
        | ApiError::Timeout { .. }
        | ApiError::Transport { .. }
        | ApiError::AllBackendsUnavailable { .. }
        | ApiError::CredentialsUnavailable { .. }
        | ApiError::Cancelled { .. }
        | ApiError::Storage { .. } => true,
        ApiError::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        _ => false,
    }
}

/// The backend could not be reached (rather than answering badly).
fn unreachable(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Timeout { .. }
            | ApiError::Transport { .. }
            | ApiError::AllBackendsUnavailable { .. }
    )
}

impl Uploads {
    pub(crate) fn new(
        net: Arc<Network>,
        settings: UploadSettings,
        records: Arc<Records>,
        identity: Arc<Identity>,
    ) -> Result<Arc<Uploads>, ApiError> {
        let (tx, rx) = sync_channel::<()>(1);
        let listeners: Arc<Mutex<HashMap<String, Arc<dyn ResumableUploadListener>>>> =
            Arc::default();
        let mailbox: Arc<Mutex<Mailbox>> = Arc::default();
        let (l, m) = (listeners.clone(), mailbox.clone());
        std::thread::Builder::new()
            .name("robust-api-uploads".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let taken =
                        std::mem::take(&mut *m.lock().unwrap_or_else(PoisonError::into_inner));
                    let find = |id: &str| {
                        l.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(id)
                            .cloned()
                    };
                    for (id, (sent, total)) in taken.progress {
                        if let Some(listener) = find(&id) {
                            let r = catch_unwind(AssertUnwindSafe(|| {
                                listener.on_progress(id.clone(), sent as i64, total as i64)
                            }));
                            if let Ok(r) = r {
                                crate::error::warn_on_listener_error(
                                    "resumable upload listener",
                                    r,
                                );
                            }
                        }
                    }
                    for (id, outcome) in taken.finals {
                        if let Some(listener) = find(&id) {
                            let r = catch_unwind(AssertUnwindSafe(|| match outcome {
                                Ok((status, body)) => {
                                    listener.on_completed(id.clone(), i32::from(status), body)
                                }
                                Err(e) => listener.on_failed(id.clone(), e),
                            }));
                            if let Ok(r) = r {
                                crate::error::warn_on_listener_error(
                                    "resumable upload listener",
                                    r,
                                );
                            }
                        }
                    }
                }
            })
            .map_err(|e| ApiError::Internal {
                reason: format!("starting the upload listener thread: {e}"),
            })?;
        Ok(Arc::new(Uploads {
            slots: Arc::new(Semaphore::new(settings.max_concurrent as usize)),
            net,
            settings,
            records,
            identity,
            jobs: Mutex::default(),
            discovered: Mutex::default(),
            listeners,
            mailbox,
            wake: Mutex::new(Some(tx)),
        }))
    }

    fn poke(&self) {
        if let Some(tx) = &*self.wake.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = tx.try_send(());
        }
    }

    fn tell_progress(&self, id: &str, sent: u64, total: u64) {
        self.mailbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .progress
            .insert(id.to_string(), (sent, total));
        self.poke();
    }

    fn tell_final(&self, id: &str, outcome: Final) {
        {
            let mut m = self.mailbox.lock().unwrap_or_else(PoisonError::into_inner);
            m.finals.push((id.to_string(), outcome));
            let excess = m
                .finals
                .len()
                .saturating_sub(super::records::MAX_OPEN as usize);
            m.finals.drain(..excess);
        }
        self.poke();
    }

    fn current_tag(&self) -> Option<String> {
        self.records.scope_tag(self.identity.current().as_deref())
    }

    /// Does `endpoint` speak tus? Asked once per backend and endpoint (`OPTIONS`), or as
    /// configured (`upload.resumable`). `Some((backend, capabilities))` when it does.
    pub(crate) async fn discover(
        &self,
        req: &UploadRequest,
    ) -> Result<Option<(usize, policy::Capabilities)>, ApiError> {
        let mode = self.settings.resumable.as_str();
        if mode == "multipart" {
            return Ok(None);
        }
        // What the preferred backend said (or, before any ranking, the first that answered).
        let preferred = self.net.preferred_backend().and_then(|name| {
            (0..self.net.backend_count()).find(|&i| self.net.backend(i).name == name)
        });
        let known = {
            let d = self
                .discovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let of = |i: usize| d.get(&(i, req.path.clone())).cloned().map(|c| (i, c));
            match preferred {
                Some(i) => of(i),
                None => (0..self.net.backend_count()).find_map(of),
            }
        };
        if let Some((i, known)) = known {
            return Ok(known.map(|c| (i, c)));
        }
        let source = Source {
            endpoint: req.path.clone(),
            file_path: req.file_path.clone(),
            size: 0,
            stat: (0, 0),
            metadata: String::new(),
            headers: req.headers.clone(),
            unmetered_only: false, // discovery is one small OPTIONS, even on a metered network
        };
        let records = &self.records;
        let journal = RowJournal {
            records,
            net: &self.net,
            id: "",
        };
        let session = Session {
            net: &self.net,
            settings: &self.settings,
            source: &source,
            journal: &journal,
            token: None,
            on_offset: &|_| {},
            same_scope: &|| true,
        };
        let (index, caps) = session.discover().await?;
        self.discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((index, req.path.clone()), caps.clone());
        match (caps, mode) {
            (Some(c), _) => Ok(Some((index, c))),
            (None, "tus") => Err(ApiError::invalid_request(format!(
                "upload.resumable is \"tus\" but {} does not speak tus 1.0 at {}",
                self.net.backend(index).name,
                req.path
            ))),
            (None, _) => Ok(None),
        }
    }

    /// Records a new resumable upload of `req` and starts it; its id and its phase.
    pub(crate) fn start(
        self: &Arc<Self>,
        req: &UploadRequest,
        caps: (usize, policy::Capabilities),
    ) -> Result<(String, watch::Receiver<Phase>), ApiError> {
        let unreadable = |e: std::io::Error| {
            ApiError::invalid_request(format!("file {:?} cannot be read: {e}", req.file_path))
        };
        if req.file_path.is_empty() {
            return Err(ApiError::invalid_request("file_path must not be empty"));
        }
        let (size, mtime_ms, edge_hash) =
            crate::runtime::blocking_io(|| fingerprint(&req.file_path)).map_err(unreadable)?;
        let file_name = req.file_name.clone().unwrap_or_else(|| {
            std::path::Path::new(&req.file_path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into())
        });
        let mut metadata = req.fields.clone();
        metadata.insert("filename".into(), file_name.clone());
        metadata.insert(
            "filetype".into(),
            req.content_type
                .clone()
                .unwrap_or_else(|| super::guess_content_type(&file_name).to_string()),
        );
        policy::encode_metadata(&metadata)?; // checked now, before anything is stored
        let id = crate::ids::new_uuid_v4();
        let record = Record {
            id: id.clone(),
            scope: self.current_tag(),
            file_path: req.file_path.clone(),
            size,
            mtime_ms,
            edge_hash,
            endpoint: req.path.clone(),
            metadata,
            backend: None,
            upload_url: None,
            confirmed: 0,
            sent_high: 0,
            expires_at_ms: None,
            restarts: 0,
            unreachable_since_ms: None,
            state: UploadState::Active,
            result_status: None,
            result_body: None,
            last_error: None,
            created_at_ms: now_ms(),
            unmetered_only: req.unmetered_only || self.settings.unmetered_only,
            headers: self.records.storable_headers(&req.headers), // never a credential
        };
        self.records.insert(&record)?;
        let phase = self.launch(record, Some(caps), req.headers.clone());
        Ok((id, phase))
    }

    /// Starts `record`'s job unless it runs already; its phase.
    fn launch(
        self: &Arc<Self>,
        record: Record,
        caps: Option<(usize, policy::Capabilities)>,
        headers: HashMap<String, String>,
    ) -> watch::Receiver<Phase> {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(job) = jobs.get(&record.id) {
            return job.phase.clone();
        }
        let token = CancelToken::new();
        let (tx, rx) = watch::channel(Phase::Running(record.confirmed));
        jobs.insert(
            record.id.clone(),
            Job {
                token: token.clone(),
                phase: rx.clone(),
            },
        );
        drop(jobs);
        let me = self.clone();
        crate::runtime::spawn_contained("resumable upload", async move {
            let id = record.id.clone();
            let result = me.run_job(record, caps, headers, &token, &tx).await;
            me.jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            let _ = tx.send(Phase::Ended(result));
        });
        rx
    }

    /// One job: waits for a slot, runs the session, records the outcome.
    async fn run_job(
        &self,
        record: Record,
        caps: Option<(usize, policy::Capabilities)>,
        headers: HashMap<String, String>,
        token: &CancelToken,
        phase: &watch::Sender<Phase>,
    ) -> Result<Completed, ApiError> {
        let id = record.id.clone();
        let outcome = self.when_allowed(record, caps, headers, token, phase).await;
        match &outcome {
            Ok(done) => {
                self.records.complete(&id, done.status, &done.body)?;
                self.tell_final(&id, Ok((done.status, done.body.clone())));
            }
            Err(ApiError::UploadFileMissing { .. }) => {
                self.records.remove(&id)?;
                self.tell_final(
                    &id,
                    Err(outcome
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default()),
                );
            }
            Err(ApiError::Cancelled { .. }) => {}
            Err(e) if transient(e) => {
                log::info!("robust-api: resumable upload {id} waits: {e}");
            }
            Err(e) => {
                self.records
                    .set_state(&id, UploadState::Failed, Some(&e.to_string()))?;
                self.tell_final(&id, Err(e.to_string()));
            }
        }
        outcome
    }

    /// Runs the session whenever the device conditions allow it, holding a concurrency slot only
    /// while it runs: offline ends the job (`Offline`: it stays `Active` and the network's return
    /// starts it again); an unmetered-only upload on a metered network waits here, without a
    /// slot, and a metered spell stops its transfer at once (the next session asks the server's
    /// offset and goes on from there).
    async fn when_allowed(
        &self,
        record: Record,
        caps: Option<(usize, policy::Capabilities)>,
        headers: HashMap<String, String>,
        token: &CancelToken,
        phase: &watch::Sender<Phase>,
    ) -> Result<Completed, ApiError> {
        let shut = || ApiError::Cancelled {
            reason: "the client was shut down".into(),
        };
        let stopped = || ApiError::Cancelled {
            reason: "the upload was paused or cancelled".into(),
        };
        let (id, unmetered_only) = (record.id.clone(), record.unmetered_only);
        drop(record);
        let mut conditions = self.net.conditions();
        let mut caps = caps;
        loop {
            let online = tokio::select! {
                biased;
                _ = token.cancelled() => return Err(stopped()),
                c = conditions.wait_for(|c| !c.online || c.may_send(unmetered_only)) => c.map_err(|_| shut())?.online,
            };
            if !online {
                return Err(ApiError::Offline);
            }
            let _slot = tokio::select! {
                biased;
                _ = token.cancelled() => return Err(stopped()),
                s = self.slots.clone().acquire_owned() => s.map_err(|_| shut())?,
            };
            // As stored now (a stopped session may have created the upload, confirmed bytes).
            let Some(record) = self.records.get(&id)? else {
                return Err(stopped());
            };
            let outcome = tokio::select! {
                biased;
                c = conditions.wait_for(|c| !c.may_send(unmetered_only)) => {
                    if c.map_err(|_| shut())?.online { None } else { return Err(ApiError::Offline) }
                }
                r = self.session(record.clone(), caps.take(), headers.clone(), token, phase) => Some(r),
            };
            match outcome {
                // Stopped by a metered network (or it turned metered while the session ended).
                None => {}
                Some(Err(e)) if transient(&e) && !token.is_cancelled() => {
                    let now = self.net.current_conditions();
                    if !now.online {
                        return Err(ApiError::Offline);
                    }
                    if now.may_send(unmetered_only) {
                        return Err(e);
                    }
                }
                Some(r) => return r,
            }
            log::info!("robust-api: resumable upload {id} waits for an unmetered network");
        }
    }

    async fn session(
        &self,
        record: Record,
        caps: Option<(usize, policy::Capabilities)>,
        headers: HashMap<String, String>,
        token: &CancelToken,
        phase: &watch::Sender<Phase>,
    ) -> Result<Completed, ApiError> {
        // The file must be what it was when the upload began.
        let path = record.file_path.clone();
        let fp = crate::runtime::blocking_io(|| fingerprint(&path)).map_err(|e| {
            ApiError::UploadFileMissing {
                file_path: path.clone(),
                reason: e.to_string(),
            }
        })?;
        if fp != (record.size, record.mtime_ms, record.edge_hash.clone()) {
            return Err(ApiError::UploadFileChanged {
                file_path: path,
                reason: if fp.0 != record.size {
                    format!("{} bytes then, {} now", record.size, fp.0)
                } else {
                    "its modification time or content differs".into()
                },
            });
        }
        let source = Source {
            endpoint: record.endpoint.clone(),
            file_path: record.file_path.clone(),
            size: record.size,
            stat: (record.size, record.mtime_ms),
            metadata: policy::encode_metadata(&record.metadata)?,
            headers,
            unmetered_only: record.unmetered_only,
        };
        let mut resume = self.resume_of(&record);
        let scope = record.scope.clone();
        let same_scope = || self.current_tag() == scope;
        let id = record.id.clone();
        let total = record.size;
        let last = Mutex::new(record.confirmed);
        let on_offset = |offset: u64| {
            let mut l = last.lock().unwrap_or_else(PoisonError::into_inner);
            if offset > *l {
                *l = offset;
                let _ = phase.send(Phase::Running(offset));
                self.tell_progress(&id, offset, total);
            }
        };
        let journal = RowJournal {
            records: &self.records,
            net: &self.net,
            id: &record.id,
        };
        let session = Session {
            net: &self.net,
            settings: &self.settings,
            source: &source,
            journal: &journal,
            token: Some(token),
            on_offset: &on_offset,
            same_scope: &same_scope,
        };
        // A resumed upload: what its backend offers, when this process asked (checksums).
        let mut caps = caps.or_else(|| {
            let (i, _) = resume.target.as_ref()?;
            let d = self
                .discovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            d.get(&(*i, record.endpoint.clone()))
                .cloned()
                .flatten()
                .map(|c| (*i, c))
        });
        loop {
            let result = tokio::select! {
                biased;
                _ = token.cancelled() => Err(ApiError::Cancelled { reason: "the upload was paused or cancelled".into() }),
                r = session.run(resume.clone(), caps.take()) => r,
            };
            match &result {
                Err(e) if unreachable(e) && resume.target.is_some() => {
                    let since = self.records.set_unreachable(&record.id)?;
                    let bound = self.settings.restart_elsewhere_after;
                    let waited = since.map_or(0, |s| now_ms().saturating_sub(s));
                    if bound.is_zero()
                        || self.net.backend_count() < 2
                        || (waited as u128) < bound.as_millis()
                    {
                        return result;
                    }
                    log::info!(
                        "robust-api: the backend holding upload {} has been unreachable for {waited} ms; \
                         creating it anew on another backend",
                        record.id
                    );
                    self.records.restarted(&record.id)?;
                    resume = Resume {
                        restarts: resume.restarts + 1,
                        ..Resume::default()
                    };
                    if resume.restarts > self.settings.max_restarts {
                        return result;
                    }
                }
                _ => return result,
            }
        }
    }

    fn resume_of(&self, r: &Record) -> Resume {
        let target = match (&r.backend, &r.upload_url) {
            (Some(b), Some(u)) => (0..self.net.backend_count())
                .find(|&i| &self.net.backend(i).name == b)
                .zip(Url::parse(u).ok()),
            _ => None,
        };
        Resume {
            target,
            sent_high: r.sent_high,
            expires_at_ms: r.expires_at_ms,
            restarts: r.restarts,
        }
    }

    /// Starts every active upload of the current scope that is not running (when online).
    pub(crate) fn resume_all(self: &Arc<Self>) -> Result<(), ApiError> {
        if !self.net.current_conditions().online {
            return Ok(());
        }
        let tag = self.current_tag();
        for r in self.records.list(tag.as_deref(), false)? {
            if r.state == UploadState::Active {
                let headers = r.headers.clone();
                drop(self.launch(r, None, headers));
            }
        }
        Ok(())
    }

    /// Stops the jobs whose scope is no longer the current one.
    fn stop_other_scopes(&self) {
        let tag = self.current_tag();
        let jobs: Vec<(String, Arc<CancelToken>)> = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, j)| (id.clone(), j.token.clone()))
            .collect();
        for (id, token) in jobs {
            if let Ok(Some(r)) = self.records.get(&id) {
                if r.scope != tag {
                    token.cancel();
                }
            }
        }
    }

    /// The background task: resumes uploads when the device conditions change (online again,
    /// unmetered again), a backend recovers or the scope changes.
    pub(crate) async fn run(self: Arc<Self>) {
        // The device conditions, not the bare online flag: a job started on a change sees the
        // conditions that caused it (the online flag is published a moment earlier).
        let mut conditions = self.net.conditions();
        let mut recovered = self.net.subscribe_recovered();
        let mut scope = self.identity.subscribe();
        loop {
            if let Err(e) = self.resume_all() {
                log::warn!("robust-api: resuming uploads: {e}");
            }
            tokio::select! {
                r = conditions.changed() => if r.is_err() { return },
                r = recovered.changed() => if r.is_err() { return },
                r = scope.changed() => {
                    if r.is_err() { return }
                    self.stop_other_scopes();
                }
            }
        }
    }

    /// The current scope's unfinished uploads, oldest first.
    pub(crate) fn pending(&self) -> Result<Vec<PendingUpload>, ApiError> {
        let tag = self.current_tag();
        Ok(self
            .records
            .list(tag.as_deref(), false)?
            .iter()
            .map(PendingUpload::from_record)
            .collect())
    }

    /// The current scope's record `id`.
    fn own(&self, id: &str) -> Result<Option<Record>, ApiError> {
        let tag = self.current_tag();
        Ok(self.records.get(id)?.filter(|r| r.scope == tag))
    }

    fn stop(&self, id: &str) {
        let job = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|j| j.token.clone());
        if let Some(t) = job {
            t.cancel();
        }
    }

    /// Pauses `id` (its job stops at once; the server keeps what it confirmed). `false`: no such
    /// unfinished upload in the current scope.
    pub(crate) fn pause(&self, id: &str) -> Result<bool, ApiError> {
        match self.own(id)? {
            Some(r) if !r.state.finished() => {
                self.records.set_state(id, UploadState::Paused, None)?;
                self.stop(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Resumes a paused (or waiting) upload now. `false`: no such unfinished upload.
    pub(crate) fn resume(self: &Arc<Self>, id: &str) -> Result<bool, ApiError> {
        match self.own(id)? {
            Some(r) if !r.state.finished() => {
                self.records.set_state(id, UploadState::Active, None)?;
                if self.net.is_online() {
                    let r = Record {
                        state: UploadState::Active,
                        ..r
                    };
                    let headers = r.headers.clone();
                    drop(self.launch(r, None, headers));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Cancels `id`: stops its job, deletes the upload on its server (tus termination) and the
    /// record. `false`: no such upload in the current scope.
    pub(crate) async fn cancel(&self, id: &str) -> Result<bool, ApiError> {
        let Some(r) = self.own(id)? else {
            return Ok(false);
        };
        self.stop(id);
        // Wait for the job to let go (it stops at its next await).
        let phase = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|j| j.phase.clone());
        if let Some(mut p) = phase {
            let _ = p.wait_for(|p| matches!(p, Phase::Ended(_))).await;
        }
        let resume = self.resume_of(&r);
        let mut result = Ok(());
        if let (Some((backend, url)), false) = (resume.target, r.state == UploadState::Completed) {
            let source = Source {
                endpoint: r.endpoint.clone(),
                file_path: r.file_path.clone(),
                size: r.size,
                stat: (r.size, r.mtime_ms),
                metadata: String::new(),
                headers: r.headers.clone(),
                unmetered_only: false, // a cancelled upload's DELETE goes out on any network
            };
            let journal = RowJournal {
                records: &self.records,
                net: &self.net,
                id,
            };
            let session = Session {
                net: &self.net,
                settings: &self.settings,
                source: &source,
                journal: &journal,
                token: None,
                on_offset: &|_| {},
                same_scope: &|| true,
            };
            result = session.terminate(backend, url).await;
        }
        self.records.remove(id)?;
        self.tell_final(id, Err("cancelled: the upload was cancelled".into()));
        result.map(|()| true)
    }

    /// Attaches `listener` to `id`: it hears the current state at once (the confirmed offset, or
    /// the outcome of a finished upload), then every change. `false`: no such upload.
    pub(crate) fn attach(
        &self,
        id: &str,
        listener: Arc<dyn ResumableUploadListener>,
    ) -> Result<bool, ApiError> {
        let Some(r) = self.own(id)? else {
            return Ok(false);
        };
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string(), listener);
        match r.state {
            UploadState::Completed => self.tell_final(
                id,
                Ok((
                    r.result_status.unwrap_or(204),
                    r.result_body.unwrap_or_default(),
                )),
            ),
            UploadState::Failed => self.tell_final(id, Err(r.last_error.unwrap_or_default())),
            _ => self.tell_progress(id, r.confirmed, r.size),
        }
        Ok(true)
    }

    /// Deletes `scope`'s records (logout).
    pub(crate) fn clear_scope(&self, scope: &str) -> Result<(), ApiError> {
        if let Some(tag) = self.records.scope_tag(Some(scope)) {
            self.records.clear_scope(&tag)?;
        }
        Ok(())
    }

    /// Stops every job and the listener thread; closes the file.
    pub(crate) fn close(&self) {
        for job in self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            job.token.cancel();
        }
        self.wake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.records.close();
    }
}

/// The `upload_file` call of a resumable upload: starts it and follows its job to the end,
/// posting the confirmed offset to `sink` (the caller's side of the call delivers it to the
/// listener, on the thread awaiting the call).
pub(crate) async fn follow(
    uploads: &Arc<Uploads>,
    net: &Network,
    req: &UploadRequest,
    caps: (usize, policy::Capabilities),
    sink: Option<super::ProgressSink>,
    token: Option<&CancelToken>,
) -> Result<crate::types::ApiResponse, ApiError> {
    let started = std::time::Instant::now();
    let (id, mut phase) = uploads.start(req, caps)?;
    let total = uploads
        .records
        .get(&id)?
        .map_or(0, |r| r.size)
        .min(i64::MAX as u64) as i64;
    let mut reported = 0i64;
    // To the caller's side, which calls the listener (see `super::ProgressSink`).
    let report = |sent: i64| {
        if let Some(sink) = &sink {
            sink.post((sent, total));
        }
    };
    loop {
        let current = phase.borrow_and_update().clone();
        match current {
            Phase::Running(offset) => {
                let offset = (offset as i64).min(total.saturating_sub(1));
                if offset > reported {
                    reported = offset;
                    report(offset);
                }
            }
            Phase::Ended(Ok(done)) => {
                report(total);
                return Ok(crate::types::ApiResponse {
                    status: i32::from(done.status),
                    headers: done.headers,
                    body: done.body,
                    backend: net.backend(done.backend).name.clone(),
                    attempts: crate::defaults::saturating_i32(u64::from(done.attempts)),
                    elapsed_ms: crate::defaults::ms_i32(started.elapsed()),
                    from_cache: false,
                    stale: false,
                    age_ms: None,
                    queued: None,
                });
            }
            Phase::Ended(Err(e)) => return Err(e),
        }
        let cancel = async {
            match token {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel => {
                uploads.cancel(&id).await?;
                return Err(ApiError::Cancelled { reason: "the upload was cancelled".into() });
            }
            r = phase.changed() => if r.is_err() {
                // The job ended without a word (the client shut down).
                return Err(ApiError::Cancelled { reason: "the client was shut down".into() });
            }
        }
    }
}
