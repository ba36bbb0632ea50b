//! The durable offline queue against real servers, real SQLite files and real process kills.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_api::{
    ApiError, ApiRequest, ApiResponse, ClientConfig, HeaderProvider, HttpMethod, OfflinePolicy,
    QueueListener, QueuedRequestId, RobustClient,
};
use robust_api_fleet::{wait_until, Fault, Fleet};

mod support;

fn config(fleet: &Fleet, dir: &Path) -> ClientConfig {
    support::queue_config(fleet.urls(), dir)
}

#[derive(Default)]
struct Outcomes {
    delivered: Mutex<Vec<(QueuedRequestId, ApiResponse)>>,
    dead: Mutex<Vec<(QueuedRequestId, String)>>,
}

impl QueueListener for Outcomes {
    fn on_delivered(&self, id: QueuedRequestId, response: ApiResponse) -> Result<(), ApiError> {
        self.delivered.lock().unwrap().push((id, response));
        Ok(())
    }
    fn on_dead_lettered(&self, id: QueuedRequestId, reason: String) -> Result<(), ApiError> {
        self.dead.lock().unwrap().push((id, reason));
        Ok(())
    }
}

fn post(seq: usize) -> ApiRequest {
    ApiRequest::post_json("/orders", format!(r#"{{"seq":{seq}}}"#))
}

/// The `seq` of each `/orders` request the server applied (first-time idempotency keys), in order.
fn applied_seqs(fleet: &Fleet) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in fleet.servers().iter().flat_map(|s| s.requests()) {
        if r.path != "/orders" {
            continue;
        }
        let key = r
            .header("idempotency-key")
            .expect("every queued attempt carries a key")
            .to_string();
        if seen.insert(key) {
            let body = String::from_utf8_lossy(&r.body).to_string();
            let seq = body
                .trim_start_matches(r#"{"seq":"#)
                .trim_end_matches('}')
                .parse()
                .expect("seq");
            out.push(seq);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_enqueue_then_network_back_delivers_all_in_order_exactly_once() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let outcomes = Arc::new(Outcomes::default());
    client.set_queue_listener(outcomes.clone());
    client.set_network_available(false);
    let mut ids = Vec::new();
    for seq in 0..20 {
        ids.push(client.enqueue(post(seq)).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fleet.server(0).hits_for("/orders"),
        0,
        "nothing sent while offline"
    );
    let s = client.service_status().queue;
    assert_eq!((s.pending, s.dead_lettered), (20, 0));
    assert!(s.oldest_age_ms.is_some());

    client.set_network_available(true);
    wait_until("20 deliveries", Duration::from_secs(5), || {
        outcomes.delivered.lock().unwrap().len() == 20
    })
    .await;
    assert_eq!(
        applied_seqs(&fleet),
        (0..20).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(fleet.server(0).unique_effects(), 20, "exactly once");
    let delivered: Vec<QueuedRequestId> = outcomes
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.0.clone())
        .collect();
    assert_eq!(delivered, ids, "listener told in order");
    assert!(outcomes
        .delivered
        .lock()
        .unwrap()
        .iter()
        .all(|(_, r)| r.status == 200));
    let s = client.service_status().queue;
    assert_eq!((s.pending, s.in_flight, s.delivered), (0, 0, 20));
    assert!(client.queued_requests().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_offline_policy_queue_is_queued_and_delivered_later() {
    let (fleet, dir) = (Fleet::start(2).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    fleet.set_fault_all(Fault::Down).await;
    let mut req = ApiRequest::post_json("/orders", r#"{"seq":7}"#);
    req.offline = Some(OfflinePolicy::Queue);
    let r = client.request(req.clone()).await.unwrap();
    assert_eq!(r.status, 202);
    let id = r.queued.clone().expect("queued");
    assert_eq!(client.queued_requests().unwrap()[0].id, id);

    // Without the policy the same failure is an error.
    let plain = client
        .request(ApiRequest::post_json("/orders", "{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            plain,
            ApiError::AllBackendsUnavailable { .. } | ApiError::Transport { .. }
        ),
        "{plain:?}"
    );

    let outcomes = Arc::new(Outcomes::default());
    client.set_queue_listener(outcomes.clone());
    fleet.set_fault_all(Fault::None).await;
    client.reset_circuit_breakers();
    client.flush_queue().unwrap();
    wait_until("delivery", Duration::from_secs(5), || {
        !outcomes.delivered.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(outcomes.delivered.lock().unwrap()[0].0, id);
    assert_eq!(applied_seqs(&fleet), vec![7]);
}

/// Locates (building if needed) the `queue-child` example binary.
fn child_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_profile = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = target_profile.join("examples").join("queue-child");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "queue-child"])
            .status()
            .unwrap();
        assert!(status.success(), "building queue-child");
    }
    bin
}

/// Runs the child, waits for `ready` lines (or none), lets it run `delay`, then SIGKILLs it.
/// Returns the seqs it acknowledged as durably enqueued.
fn run_and_kill(
    dir: &Path,
    backend: &str,
    mode: &str,
    kill_after_line: Option<&str>,
    delay: Duration,
) -> Vec<usize> {
    run_and_kill_n(dir, backend, mode, kill_after_line, delay, 50)
}

/// [`run_and_kill`] with `count` entries.
fn run_and_kill_n(
    dir: &Path,
    backend: &str,
    mode: &str,
    kill_after_line: Option<&str>,
    delay: Duration,
    count: usize,
) -> Vec<usize> {
    let count = count.to_string();
    let mut child = Command::new(child_binary())
        .args([
            "--dir",
            &dir.to_string_lossy(),
            "--backend",
            backend,
            "--mode",
            mode,
            "--count",
            &count,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut acked = Vec::new();
    if let Some(ready) = kill_after_line {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("child output");
            if let Some(seq) = line.strip_prefix("ENQ ") {
                acked.push(seq.parse().unwrap());
            }
            if line == ready {
                break;
            }
        }
    }
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    acked.extend(
        rx.try_iter()
            .filter_map(|l| l.strip_prefix("ENQ ").and_then(|s| s.parse::<usize>().ok())),
    );
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_processes_lose_nothing_and_duplicate_nothing() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    // Slow answers widen the window in which a kill lands mid-request.
    fleet
        .server(0)
        .set_fault(Fault::Slow(Duration::from_millis(15)))
        .await;
    let backend = fleet.urls()[0].clone();
    let d = dir.path().to_path_buf();
    let b = backend.clone();
    // Enqueue 50 offline, then get killed during the flush ...
    let acked = tokio::task::spawn_blocking(move || {
        run_and_kill(
            &d,
            &b,
            "enqueue-offline",
            Some("REPLAYING"),
            Duration::from_millis(fastrand::u64(20..120)),
        )
    })
    .await
    .unwrap();
    assert_eq!(acked.len(), 50);
    let after_first_kill = fleet.server(0).unique_effects();
    assert!(
        after_first_kill < 50,
        "the kill landed during the flush ({after_first_kill} delivered)"
    );
    // ... and again, several times, while resuming.
    let (d, b) = (dir.path().to_path_buf(), backend.clone());
    tokio::task::spawn_blocking(move || {
        for _ in 0..4 {
            run_and_kill(
                &d,
                &b,
                "resume",
                None,
                Duration::from_millis(fastrand::u64(80..250)),
            );
        }
    })
    .await
    .unwrap();

    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    wait_until("the rest delivered", Duration::from_secs(20), || {
        client.service_status().queue.pending == 0
    })
    .await;
    assert_eq!(
        fleet.server(0).unique_effects(),
        50,
        "no loss, no duplicate effect"
    );
    let mut seqs = applied_seqs(&fleet);
    assert_eq!(seqs, (0..50).collect::<Vec<_>>(), "in order, each once");
    seqs.dedup();
    assert_eq!(seqs.len(), 50);
}

/// The crash loop: 200 queued mutations, the child SIGKILLed at random points during replay for
/// 5 rounds, against a backend whose faults flip every 40 ms (503s, resets, slow answers) and
/// whose idempotency store dedups by key: at the end exactly 200 effects, each applied once.
/// Prints the extra sends seen on the wire (re-sends after a kill or a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_200_mutations_5_kills_flaky_backend_exactly_200_effects() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let server = fleet.server(0).clone();
    let flapping = tokio::spawn(async move {
        let faults = [
            Fault::None,
            Fault::Slow(Duration::from_millis(20)),
            Fault::Status(503),
            Fault::None,
            Fault::ResetMidBody,
        ];
        for i in 0.. {
            server.set_fault(faults[i % faults.len()].clone()).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    let (d, b) = (dir.path().to_path_buf(), fleet.urls()[0].clone());
    let acked = tokio::task::spawn_blocking(move || {
        let acked = run_and_kill_n(
            &d,
            &b,
            "enqueue-offline",
            Some("REPLAYING"),
            Duration::from_millis(fastrand::u64(50..300)),
            200,
        );
        for _ in 0..4 {
            run_and_kill_n(
                &d,
                &b,
                "resume",
                None,
                Duration::from_millis(fastrand::u64(100..500)),
                200,
            );
        }
        acked
    })
    .await
    .unwrap();
    assert_eq!(acked.len(), 200);
    let before_last = fleet.server(0).unique_effects();
    flapping.abort();
    fleet.server(0).set_fault(Fault::None).await;
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    wait_until("the rest delivered", Duration::from_secs(30), || {
        client.service_status().queue.pending == 0
    })
    .await;
    assert_eq!(
        fleet.server(0).unique_effects(),
        200,
        "none lost, none twice"
    );
    let mut seqs = applied_seqs(&fleet);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 200);
    let sends = fleet.server(0).hits_for("/orders");
    eprintln!(
        "crash loop: 200 effects ({before_last} before the final client), {sends} sends of \
         /orders on the wire, {} extra (re-sends after a kill, a reset or a 503)",
        sends - 200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_enqueue_keeps_every_acknowledged_request() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let (d, b) = (dir.path().to_path_buf(), fleet.urls()[0].clone());
    let acked = tokio::task::spawn_blocking(move || {
        run_and_kill(
            &d,
            &b,
            "enqueue-online",
            Some("ENQ 10"),
            Duration::from_micros(fastrand::u64(0..3_000)),
        )
    })
    .await
    .unwrap();
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    wait_until("delivered", Duration::from_secs(20), || {
        client.service_status().queue.pending == 0
    })
    .await;
    let applied = applied_seqs(&fleet);
    for seq in &acked {
        assert!(applied.contains(seq), "acknowledged seq {seq} was lost");
    }
    // At most the one being written when the kill landed is extra; nothing twice.
    assert!(
        applied.len() <= acked.len() + 1,
        "applied {applied:?}, acked {acked:?}"
    );
    assert_eq!(fleet.server(0).unique_effects() as usize, applied.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_rejections_dead_letter_and_transient_failures_retry() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let outcomes = Arc::new(Outcomes::default());
    client.set_queue_listener(outcomes.clone());

    // 422 / 400: dead letter, with the server's body kept.
    client.set_network_available(false);
    fleet.server(0).set_fault(Fault::Status(422)).await;
    let bad = client.enqueue(post(1)).unwrap();
    client.set_network_available(true);
    wait_until("dead letter", Duration::from_secs(5), || {
        outcomes.dead.lock().unwrap().len() == 1
    })
    .await;
    let dl = client.dead_letters().unwrap();
    assert_eq!(dl.len(), 1);
    assert_eq!((dl[0].id.clone(), dl[0].status), (bad.clone(), Some(422)));
    assert_eq!(dl[0].body.as_deref(), Some(&b"error 422"[..]));
    assert_eq!(dl[0].attempts, 1);
    assert_eq!(client.service_status().queue.dead_lettered, 1);

    // 503 then 409: retried later with backoff, then delivered.
    for fault in [Fault::Status(503), Fault::Status(409)] {
        client.clear_queue().unwrap();
        fleet.server(0).reset_hits();
        fleet.server(0).set_fault(fault.clone()).await;
        client.reset_circuit_breakers();
        let id = client.enqueue(post(2)).unwrap();
        wait_until("retried", Duration::from_secs(5), || {
            fleet.server(0).hits_for("/orders") >= 3
        })
        .await;
        let pending = client.queued_requests().unwrap();
        assert_eq!(pending.len(), 1, "{fault:?}: still queued");
        assert!(
            pending[0].attempts >= 2 && pending[0].last_error.is_some(),
            "{pending:?}"
        );
        let keys: HashSet<String> = fleet.server(0).idempotency_keys().into_iter().collect();
        assert_eq!(keys.len(), 1, "same key on every attempt");
        fleet.server(0).set_fault(Fault::None).await;
        client.reset_circuit_breakers();
        wait_until("delivered", Duration::from_secs(5), || {
            outcomes.delivered.lock().unwrap().iter().any(|d| d.0 == id)
        })
        .await;
    }

    // Older than max_age but never attempted (a phone off for a month, a forward clock jump):
    // sent, not expired. Expiry counts from the first attempt, after a failed one.
    let (fleet2, dir2) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(&fleet2, dir2.path());
    cfg.queue.max_age_ms = 50;
    let old = RobustClient::new(cfg).unwrap();
    old.set_network_available(false);
    let sent = old.enqueue(post(3)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    old.set_network_available(true);
    wait_until("delivered, not expired", Duration::from_secs(5), || {
        old.queue_outcomes()
            .is_ok_and(|o| o.iter().any(|o| o.id == sent && o.delivered))
    })
    .await;
    assert!(old.dead_letters().unwrap().is_empty());
    // Still failing 50 ms after its first attempt: dead-lettered (after attempts, never before).
    fleet2.server(0).set_fault(Fault::Status(503)).await;
    old.enqueue(post(4)).unwrap();
    wait_until("expired", Duration::from_secs(5), || {
        old.dead_letters().is_ok_and(|d| d.len() == 1)
    })
    .await;
    let dl = &old.dead_letters().unwrap()[0];
    assert!(dl.reason.contains("expired"), "{dl:?}");
    assert!(dl.attempts >= 2, "{dl:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_honours_retry_after_and_a_clock_jump_expires_nothing_unsent() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    fleet
        .server(0)
        .set_fault(Fault::RetryAfter {
            status: 503,
            secs: 2,
        })
        .await;
    client.enqueue(post(1)).unwrap();
    wait_until("first attempt", Duration::from_secs(5), || {
        client
            .queued_requests()
            .is_ok_and(|q| q.first().is_some_and(|e| e.attempts == 1))
    })
    .await;
    let next = client.queued_requests().unwrap()[0].next_attempt_in_ms;
    assert!(
        next > 1_500,
        "rescheduled no sooner than Retry-After (2 s), not the 30 ms backoff: {next} ms"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        fleet.server(0).hits_for("/orders"),
        1,
        "no resend before it"
    );
    fleet.server(0).set_fault(Fault::None).await;
    wait_until("delivered after the wait", Duration::from_secs(5), || {
        client.service_status().queue.pending == 0
    })
    .await;
    client.shutdown();
    drop(client);

    // A forward wall-clock jump: entries written "a year ago" (as the clock now sees them),
    // never attempted, are sent, not expired.
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    client.set_network_available(false);
    for i in 0..3 {
        client.enqueue(post(i)).unwrap();
    }
    client.shutdown();
    drop(client);
    let out = Command::new("sqlite3")
        .arg(dir.path().join("queue.sqlite3"))
        .arg("UPDATE queue_entries SET created_at_ms = created_at_ms - 31536000000, next_attempt_at_ms = 0;")
        .output()
        .expect("the sqlite3 shell");
    assert!(out.status.success(), "{out:?}");
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    wait_until("all sent", Duration::from_secs(10), || {
        client.service_status().queue.pending == 0
    })
    .await;
    assert!(client.dead_letters().unwrap().is_empty());
    assert_eq!(fleet.server(0).unique_effects(), 3);
}

struct Token(Mutex<String>);
impl HeaderProvider for Token {
    fn headers_for(
        &self,
        _method: HttpMethod,
        _path: String,
        _scope: Option<String>,
    ) -> Result<HashMap<String, String>, ApiError> {
        Ok(HashMap::from([(
            "Authorization".to_string(),
            self.0.lock().unwrap().clone(),
        )]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_disk_and_fresh_ones_are_sent() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(&fleet, dir.path());
    cfg.queue.sensitive_headers = vec!["X-Api-Key".into()];
    let client = RobustClient::new(cfg).unwrap();
    client.set_network_available(false);
    for i in 0..5 {
        let mut req = post(i);
        req.headers
            .insert("Authorization".into(), "Bearer EXPIRED-SECRET-TOKEN".into());
        req.headers
            .insert("Cookie".into(), "session=COOKIE-SECRET".into());
        req.headers
            .insert("x-api-key".into(), "APIKEY-SECRET".into());
        req.headers.insert("X-Trace".into(), "kept-header".into());
        client.enqueue(req).unwrap();
    }
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has("kept-header"),
        "the queue is on disk (sanity check of the grep)"
    );
    for secret in ["EXPIRED-SECRET-TOKEN", "COOKIE-SECRET", "APIKEY-SECRET"] {
        assert!(!has(secret), "{secret} was written to disk");
    }

    client.set_header_provider(Arc::new(Token(Mutex::new("Bearer fresh-token".into()))));
    client.set_network_available(true);
    wait_until("delivered", Duration::from_secs(5), || {
        client.service_status().queue.pending == 0
    })
    .await;
    let auths: Vec<String> = fleet
        .server(0)
        .requests()
        .into_iter()
        .filter(|r| r.path == "/orders")
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(auths, vec!["Bearer fresh-token"; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_and_manageable() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let mut cfg = config(&fleet, dir.path());
    cfg.queue.max_entries = 3;
    let client = RobustClient::new(cfg).unwrap();
    client.set_network_available(false);
    let ids: Vec<_> = (0..3).map(|i| client.enqueue(post(i)).unwrap()).collect();
    let err = client.enqueue(post(3)).unwrap_err();
    assert_eq!(
        err,
        ApiError::QueueFull {
            max_entries: 3,
            max_bytes: 10 * 1024 * 1024
        }
    );
    let mut queued = post(4);
    queued.offline = Some(OfflinePolicy::Queue);
    assert!(
        matches!(
            client.request(queued).await,
            Err(ApiError::QueueFull { .. })
        ),
        "never a silent drop"
    );

    assert!(client.remove_queued(ids[1].clone()).unwrap());
    assert!(!client.remove_queued(ids[1].clone()).unwrap());
    assert_eq!(
        client
            .queued_requests()
            .unwrap()
            .iter()
            .map(|q| q.id.clone())
            .collect::<Vec<_>>(),
        vec![ids[0].clone(), ids[2].clone()]
    );
    assert!(client.enqueue(post(5)).is_ok(), "room again");

    // A dead letter can be put back.
    fleet.server(0).set_fault(Fault::Status(400)).await;
    client.set_network_available(true);
    wait_until("dead letters", Duration::from_secs(5), || {
        client.dead_letters().is_ok_and(|d| d.len() == 3)
    })
    .await;
    assert_eq!(client.service_status().queue.pending, 0);
    fleet.server(0).set_fault(Fault::None).await;
    assert!(client.retry_dead_letter(ids[0].clone()).unwrap());
    wait_until("redelivered", Duration::from_secs(5), || {
        client
            .queue_outcomes()
            .unwrap()
            .iter()
            .any(|o| o.id == ids[0] && o.delivered)
    })
    .await;
    assert_eq!(client.dead_letters().unwrap().len(), 2);
    client.clear_queue().unwrap();
    let s = client.service_status().queue;
    assert_eq!((s.pending, s.dead_lettered, s.max_entries), (0, 0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_attached_later_receives_what_it_missed_even_after_a_restart() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let ids: Vec<_> = (0..3).map(|i| client.enqueue(post(i)).unwrap()).collect();
    wait_until("delivered", Duration::from_secs(5), || {
        client.service_status().queue.delivered == 3
    })
    .await;
    assert!(client
        .queue_outcomes()
        .unwrap()
        .iter()
        .all(|o| o.delivered && !o.notified));
    drop(client);

    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let outcomes = Arc::new(Outcomes::default());
    client.set_queue_listener(outcomes.clone());
    wait_until("missed outcomes", Duration::from_secs(5), || {
        outcomes.delivered.lock().unwrap().len() == 3
    })
    .await;
    let got: Vec<_> = outcomes
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.0.clone())
        .collect();
    assert_eq!(got, ids);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        outcomes.delivered.lock().unwrap().len(),
        3,
        "each told once"
    );
}
