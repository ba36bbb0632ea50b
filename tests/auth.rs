//! The authenticator (issue 15, item 1): one refresh for every call refused at once, each call
//! re-sent once; rotating refresh tokens never raced; a failed refresh pauses the queue (nothing
//! dead-lettered) until `credentials_changed()`; the refresh itself goes through the same client
//! with two workers; no token in an error, a log or a file. Real servers (the fleet's token
//! service: a refresh token is valid once, a reuse is counted), real SQLite files.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use robust_api::{
    ApiError, ApiRequest, Authenticator, ClientConfig, HttpMethod, OfflinePolicy, RobustClient,
};
use robust_api_fleet::{json_str, wait_until, Fleet};
use support::sweep;

/// The app's side: a token pair, the current access token as the header, a refresh that POSTs
/// the refresh token to `/auth/token` through the same client (`skip_authentication`) and keeps
/// the rotated pair.
struct App {
    client: Mutex<Weak<RobustClient>>,
    tokens: Mutex<(String, String)>,
    refreshes: AtomicUsize,
    /// Hand back a token the server does not know (the server refuses the refreshed credentials).
    sabotage: AtomicBool,
}

impl App {
    fn new(pair: (String, String)) -> Arc<Self> {
        Arc::new(App {
            client: Mutex::new(Weak::new()),
            tokens: Mutex::new(pair),
            refreshes: AtomicUsize::new(0),
            sabotage: AtomicBool::new(false),
        })
    }

    fn bearer(&self) -> HashMap<String, String> {
        let access = self.tokens.lock().unwrap().0.clone();
        HashMap::from([("Authorization".into(), format!("Bearer {access}"))])
    }

    fn login(&self, pair: (String, String)) {
        *self.tokens.lock().unwrap() = pair;
    }
}

#[async_trait::async_trait]
impl Authenticator for App {
    async fn credentials(
        &self,
        _scope: Option<String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        Ok(self.bearer())
    }

    async fn refresh(&self, _scope: Option<String>) -> Result<HashMap<String, String>, ApiError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let client = self.client.lock().unwrap().upgrade().expect("client alive");
        let refresh = self.tokens.lock().unwrap().1.clone();
        let mut req = ApiRequest::new(HttpMethod::Post, "/auth/token");
        req.body = Some(refresh.into_bytes());
        req.skip_authentication = true;
        let answer = client.request(req).await?;
        let body = answer.body;
        let access = json_str(&body, "access_token").expect("access_token");
        let refresh = json_str(&body, "refresh_token").expect("refresh_token");
        self.login((access, refresh));
        if self.sabotage.load(Ordering::SeqCst) {
            return Ok(HashMap::from([(
                "Authorization".into(),
                "Bearer not-a-token".into(),
            )]));
        }
        Ok(self.bearer())
    }
}

fn config(fleet: &Fleet, dir: &std::path::Path) -> ClientConfig {
    let mut c = support::queue_config(fleet.urls(), dir);
    c.worker_threads = 2;
    c
}

fn client_with(app: &Arc<App>, cfg: ClientConfig) -> Arc<RobustClient> {
    let client = RobustClient::new(cfg).unwrap();
    *app.client.lock().unwrap() = Arc::downgrade(&client);
    client.set_authenticator(app.clone());
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_calls_with_an_expired_token_share_one_refresh_and_all_succeed() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(fleet.tokens().issue());
    let client = client_with(&app, config(&fleet, dir.path()));
    // A first call with valid credentials, then they expire.
    assert_eq!(
        client.get("/private/warm".into()).await.unwrap().status,
        200
    );
    let mut resent = 0;
    for round in 1..=2u64 {
        fleet.tokens().expire();
        let calls = (0..20).map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("/private/r{round}/{i}")).await })
        });
        for done in futures_util::future::join_all(calls).await {
            let r = done
                .unwrap()
                .expect("every call succeeds after the refresh");
            assert_eq!(r.status, 200);
            // Refused once and re-sent once — or, started after the refresh, sent once with the
            // new token.
            assert!(matches!(r.attempts, 1 | 2), "{r:?}");
            resent += u64::from(r.attempts == 2);
        }
        // Exactly one refresh per expiry; the rotated refresh token was never used twice.
        assert_eq!(fleet.tokens().refreshes(), round);
        assert_eq!(app.refreshes.load(Ordering::SeqCst) as u64, round);
        assert_eq!(fleet.tokens().reused(), 0);
    }
    assert_eq!(
        fleet.tokens().rejected(),
        resent,
        "every refused call was re-sent"
    );
    assert!(resent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_key_refused_401_is_resent_exactly_once_after_the_refresh() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(fleet.tokens().issue());
    let client = client_with(&app, config(&fleet, dir.path()));
    fleet.tokens().expire();
    let r = client
        .post_json("/private/order".into(), r#"{"n":1}"#.into())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let server = fleet.server(0);
    assert_eq!(
        server.hits_for("/private/order"),
        2,
        "refused, then re-sent once"
    );
    assert_eq!(
        server.unique_effects(),
        1,
        "the refused one changed nothing"
    );

    // Refused again after the refresh: typed, and never a third send.
    fleet.tokens().expire();
    app.sabotage.store(true, Ordering::SeqCst);
    let e = client
        .post_json("/private/order2".into(), r#"{"n":2}"#.into())
        .await
        .unwrap_err();
    match &e {
        ApiError::Unauthorized {
            status: 401,
            refresh_failed: false,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.hits_for("/private/order2"),
        2,
        "never twice after the refresh"
    );
    assert_eq!(server.unique_effects(), 1);
    let tokens = app.tokens.lock().unwrap().clone();
    for secret in [&tokens.0, &tokens.1] {
        assert!(!e.to_string().contains(secret.as_str()));
        assert!(!format!("{e:?}").contains(secret.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_pauses_the_queue_until_credentials_changed() {
    Logs::install();
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let first = fleet.tokens().issue();
    let app = App::new(first.clone());
    let client = client_with(&app, config(&fleet, dir.path()));
    fleet.tokens().expire();
    fleet.tokens().set_refresh_failing(true);

    // A queued write meets the 401, its refresh fails: it waits, not dead-lettered, not re-sent.
    let mut post = ApiRequest::post_json("/private/queued", r#"{"q":1}"#);
    post.offline = Some(OfflinePolicy::Queue);
    post.idempotency_key = Some("queued-write-1".into());
    client.enqueue(post).unwrap();
    let server = fleet.server(0);
    wait_until("the replay met the 401", Duration::from_secs(5), || {
        app.refreshes.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await; // many queue backoff periods
    assert_eq!(server.hits_for("/private/queued"), 1, "no hammering");
    assert_eq!(app.refreshes.load(Ordering::SeqCst), 1, "no refresh storm");
    assert!(client.dead_letters().unwrap().is_empty());
    assert_eq!(client.queued_requests().unwrap().len(), 1);

    // A live call meanwhile: typed, at once.
    let e = client.get("/private/live".into()).await.unwrap_err();
    assert!(
        matches!(
            e,
            ApiError::Unauthorized {
                refresh_failed: true,
                ..
            }
        ),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.hits_for("/private/queued"), 1, "still paused");

    // The user logs in again: the app says so, the queue resumes and delivers.
    fleet.tokens().set_refresh_failing(false);
    let second = fleet.tokens().issue();
    app.login(second.clone());
    client.credentials_changed();
    wait_until(
        "the queued write was delivered",
        Duration::from_secs(5),
        || client.queued_requests().unwrap().is_empty(),
    )
    .await;
    assert_eq!(server.hits_for("/private/queued"), 2);
    assert!(client.dead_letters().unwrap().is_empty());
    assert_eq!(server.unique_effects(), 1);
    assert_eq!(fleet.tokens().reused(), 0);

    // No token in a file, an error text or a log line.
    let secrets = [&first.0, &first.1, &second.0, &second.1].map(|s| s.as_str());
    sweep::assert_no_secret(dir.path(), &secrets, "after the pause");
    let texts = [e.to_string(), format!("{e:?}")];
    let lines = Logs::lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("credential refresh failed")),
        "{lines:?}"
    );
    for s in secrets {
        assert!(
            texts.iter().chain(&lines).all(|t| !t.contains(s)),
            "{s} leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_authentication_call_carries_no_credential_and_cannot_be_queued() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(fleet.tokens().issue());
    let client = client_with(&app, config(&fleet, dir.path()));
    let mut r = ApiRequest::get("/private/x");
    r.skip_authentication = true;
    match client.request(r.clone()).await {
        Err(ApiError::Http { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        app.refreshes.load(Ordering::SeqCst),
        0,
        "never refreshes for it"
    );
    let sent = fleet.server(0).requests();
    assert!(sent.iter().all(|q| q.header("authorization").is_none()));
    r.offline = Some(OfflinePolicy::Queue);
    assert!(matches!(
        client.enqueue(r),
        Err(ApiError::InvalidRequest { .. })
    ));
}

/// Captures every log line of this test process (the crate logs through the `log` facade).
struct Logs;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Logs {
    fn install() {
        static LOGGER: Logs = Logs;
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    }

    fn lines() -> Vec<String> {
        LINES.lock().unwrap().clone()
    }
}

impl log::Log for Logs {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES
            .lock()
            .unwrap()
            .push(format!("{} {}", record.target(), record.args()));
    }
    fn flush(&self) {}
}
