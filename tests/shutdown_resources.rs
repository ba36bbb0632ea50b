//! `shutdown()` gives back what a client holds — its runtime's threads and file descriptors (the
//! I/O driver's epoll instance and waker eventfd, sockets, database files) — at once, not when the
//! last reference to the client goes away. A foreign binding drops its reference late: a JS host
//! object lives until Hermes' garbage collector collects it, a Kotlin/Swift/Python object until
//! its finalizer runs. The React Native JSI suite found it (`test/jsi/leaks.test.ts`: 21 clients
//! shut down, 42 descriptors kept). Two ways to keep them were found: the runtime's own `Handle`,
//! kept until drop, and a task waker left in client state (the cache writer waited in an mpsc
//! `recv`, whose waker outlives the dropped task and keeps its runtime handle). Its own test binary (one test) so no other test's clients
//! blur the counts; Linux only (`/proc/self`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use robust_api::{ClientConfig, RobustClient};
use robust_api_fleet::Fleet;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What the open descriptors are (`anon_inode:[eventpoll]`, `socket:[…]`, a path), counted.
fn fd_kinds() -> String {
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let target = std::fs::read_link(e.path()).map(|p| p.to_string_lossy().into_owned());
        let kind = match target {
            Ok(t) if t.starts_with("socket:") => "socket".to_string(),
            Ok(t) if t.starts_with('/') => "file".to_string(),
            Ok(t) => t,
            Err(_) => "gone".to_string(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    format!("{kinds:?}")
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Polls until `fds` and `threads` are at most `max`, up to 5 s; returns the last counts.
async fn settle(max: (usize, usize)) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = (open_fds(), threads());
        if (now.0 <= max.0 && now.1 <= max.1) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shut_down_clients_release_threads_and_descriptors_while_still_referenced() {
    let fleet = Fleet::start(2).await;
    let config = || ClientConfig::new(fleet.urls());
    // Warm up the fleet's own side (its accept loops, this runtime's blocking pool) first.
    let warm = RobustClient::new(config()).unwrap();
    assert_eq!(warm.get("/api/warm".into()).await.unwrap().status, 200);
    warm.shutdown();
    drop(warm);
    let slack = 4;
    let base = settle((0, 0)).await;
    let base = settle((base.0, base.1)).await;

    // Clients made, used and shut down one after another, each still referenced (as a JS object
    // the collector has not collected yet).
    let mut kept: Vec<Arc<RobustClient>> = Vec::new();
    let mut peak = (0, 0);
    for k in 0..20 {
        let c = RobustClient::new(config()).unwrap();
        let r = c.get(format!("/api/short-lived/{k}")).await.unwrap();
        assert_eq!(r.status, 200);
        peak = (peak.0.max(open_fds()), peak.1.max(threads()));
        c.shutdown();
        kept.push(c);
    }
    assert!(
        peak.0 > base.0 && peak.1 > base.1,
        "a live client holds descriptors and threads (else this test proves nothing): {base:?} -> {peak:?}"
    );
    let after = settle((base.0 + slack, base.1 + 1)).await;
    assert!(
        after.0 <= base.0 + slack && after.1 <= base.1 + 1,
        "(fds, threads) {base:?} -> {after:?} after 20 clients shut down (still referenced); open: {}",
        fd_kinds()
    );
    // A shut-down client still answers, with typed errors, and drops cleanly.
    let err = kept[0].get("/api/after".into()).await.unwrap_err();
    assert!(
        matches!(err, robust_api::ApiError::Cancelled { .. }),
        "{err:?}"
    );
    let _ = kept[1].service_status();
    kept[2].clear_cache();
    drop(kept);
    let dropped = settle((base.0 + slack, base.1 + 1)).await;
    assert!(
        dropped.0 <= base.0 + slack && dropped.1 <= base.1 + 1,
        "{base:?} -> {dropped:?} after the clients were dropped"
    );
    println!("FIGURE shutdown: (fds, threads) {base:?} -> peak {peak:?} -> shut down {after:?} -> dropped {dropped:?}");
}
