//! Storage faults against real files, real processes and real (tmpfs) mounts: the queue lives in
//! its own file and survives a damaged cache; a damaged queue file is salvaged row by row, every
//! unrecoverable entry reported; a full disk, a read-only folder, a database locked by another
//! process and a second client on the folder are typed `Storage` errors within a bound, never a
//! panic, a hang or `Internal`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use robust_api::{ApiError, ApiRequest, ClientConfig, RobustClient};
use robust_api_fleet::{wait_until, Fleet};

mod support;

fn config(fleet: &Fleet, dir: &Path) -> ClientConfig {
    let mut c = support::queue_config(fleet.urls(), dir);
    c.health.interval_ms = 3_600_000;
    c
}

fn post(seq: usize, pad: usize) -> ApiRequest {
    ApiRequest::post_json(
        "/orders",
        format!(r#"{{"seq":{seq},"pad":"{}"}}"#, "p".repeat(pad)),
    )
}

/// Locates (building if needed) an example binary of this package.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_profile = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = target_profile.join("examples").join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "building {name}");
    }
    bin
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop; `None` (with a message) when
/// mounting is not permitted here.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: mounting a tmpfs is not permitted here (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn offline_client_with(fleet: &Fleet, dir: &Path, n: usize, pad: usize) -> Vec<String> {
    let client = RobustClient::new(config(fleet, dir)).unwrap();
    client.set_network_available(false);
    let ids = (0..n)
        .map(|i| client.enqueue(post(i, pad)).unwrap().0)
        .collect();
    client.shutdown();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_file_overwritten_with_garbage_leaves_the_queue_intact() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    {
        let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
        client.get("/cache/x?cc=max-age%3D60".into()).await.unwrap();
        client.set_network_available(false);
        for i in 0..3 {
            client.enqueue(post(i, 10)).unwrap();
        }
        client.shutdown();
    }
    std::fs::write(dir.path().join("robust-api.sqlite3"), vec![0xA5; 64 * 1024]).unwrap();
    let _ = std::fs::remove_file(dir.path().join("robust-api.sqlite3-wal"));
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    let rec = client.service_status().storage_recoveries;
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!(rec[0].file, "robust-api.sqlite3");
    assert_eq!(client.queued_requests().unwrap().len(), 3, "queue intact");
    // Clearing the cache never touches the queue either.
    client.clear_cache();
    assert_eq!(client.queued_requests().unwrap().len(), 3);
    wait_until("delivered", Duration::from_secs(10), || {
        client.service_status().queue.pending == 0
    })
    .await;
    assert_eq!(fleet.server(0).unique_effects(), 3);
    assert_eq!(client.take_storage_recoveries().len(), 1);
    assert!(
        client.service_status().storage_recoveries.is_empty(),
        "taken"
    );
}

/// Overwrites the 4 KiB page of `file` that holds `marker` with garbage; returns its number.
fn garble_page_holding(file: &Path, marker: &str) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap_or_else(|| panic!("{marker} not in {}", file.display()));
    let page = at / 4096;
    for b in &mut bytes[page * 4096..(page + 1) * 4096] {
        *b = 0xA5;
    }
    std::fs::write(file, bytes).unwrap();
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_file_is_salvaged_row_by_row_and_nothing_is_silently_lost() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let n = 30;
    let ids = offline_client_with(&fleet, dir.path(), n, 1_500);
    let queue_file = dir.path().join("queue.sqlite3");
    assert!(
        !dir.path().join("queue.sqlite3-wal").exists() || {
            // The WAL is checkpointed when the client closes; its content is in the main file.
            std::fs::metadata(dir.path().join("queue.sqlite3-wal"))
                .unwrap()
                .len()
                == 0
        }
    );
    let page = garble_page_holding(&queue_file, r#""seq":15,"#);
    assert!(page > 1, "a data page, not the header");

    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    client.set_network_available(false);
    let rec = client.service_status().storage_recoveries;
    assert_eq!(rec.len(), 1, "{rec:?}");
    let rec = &rec[0];
    eprintln!("page {page} garbled: {rec:?}");
    assert_eq!(rec.file, "queue.sqlite3");
    assert_eq!(
        (rec.salvaged + rec.lost) as usize,
        n,
        "every entry salvaged or counted lost: {rec:?}"
    );
    assert!(rec.lost >= 1 && rec.salvaged >= (n - 4) as i64, "{rec:?}");
    let pending = client.queued_requests().unwrap();
    let dead = client.dead_letters().unwrap();
    let outcomes = client.queue_outcomes().unwrap();
    // Lost entries are dead letters (when their id was readable) or counted in an outcome.
    let counted: usize = outcomes
        .iter()
        .filter(|o| !o.delivered && o.id.0.is_empty())
        .filter_map(|o| {
            let reason = o.reason.as_deref()?;
            let n = reason
                .split_whitespace()
                .find_map(|w| w.parse::<usize>().ok());
            n
        })
        .sum();
    assert_eq!(
        pending.len() + dead.len() + counted,
        n,
        "pending {} + dead {} + counted {counted}: {outcomes:?}",
        pending.len(),
        dead.len()
    );
    for p in &pending {
        assert!(ids.contains(&p.id.0), "a salvaged entry keeps its id");
    }
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(".corrupt-")),
        "the damaged copy is deleted"
    );
    // The salvaged entries are delivered.
    client.set_network_available(true);
    wait_until(
        "salvaged entries delivered",
        Duration::from_secs(10),
        || client.service_status().queue.pending == 0,
    )
    .await;
    assert_eq!(fleet.server(0).unique_effects(), pending.len() as u64);
}

/// A damaged overflow page (the tail of one large body): that entry's identity is still
/// readable, so it becomes a dead letter with an outcome, under its own id; the others are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_with_a_damaged_body_becomes_a_dead_letter_with_an_outcome() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let ids: Vec<String> = {
        let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
        client.set_network_available(false);
        let ids = (0..5)
            .map(|i| {
                let body = format!(r#"{{"pad":"{}","end":"TAIL-{i}"}}"#, "q".repeat(20_000));
                let req = ApiRequest::post_json("/orders", body);
                client.enqueue(req).unwrap().0
            })
            .collect();
        client.shutdown();
        ids
    };
    garble_page_holding(&dir.path().join("queue.sqlite3"), "TAIL-2");
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    client.set_network_available(false);
    let rec = client.take_storage_recoveries();
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert_eq!((rec[0].salvaged, rec[0].lost), (4, 1), "{rec:?}");
    let dead = client.dead_letters().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].id.0, ids[2]);
    assert!(dead[0].reason.contains("damaged in storage"), "{dead:?}");
    let outcomes = client.queue_outcomes().unwrap();
    assert!(
        outcomes.iter().any(|o| o.id.0 == ids[2] && !o.delivered),
        "{outcomes:?}"
    );
    let pending: Vec<String> = client
        .queued_requests()
        .unwrap()
        .into_iter()
        .map(|q| q.id.0)
        .collect();
    assert_eq!(
        pending,
        [&ids[0], &ids[1], &ids[3], &ids[4]].map(|s| s.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_rows_of_the_old_shared_file_move_into_the_queue_file_on_first_open() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let scope = "user-7";
    {
        let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
        client.set_user_scope(Some(scope.into()));
        client.set_network_available(false);
        for i in 0..4 {
            client.enqueue(post(i, 10)).unwrap();
        }
        client.shutdown();
    }
    // Rebuild what an older version left: the queue tables inside the cache file (version 3),
    // with the same rows and install key, and no queue file.
    let old = dir.path().join("robust-api.sqlite3");
    let queue = dir.path().join("queue.sqlite3");
    assert_eq!(make_shared_file(&queue, &old), 4);
    for f in ["queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    client.set_user_scope(Some(scope.into()));
    assert_eq!(
        client.queued_requests().unwrap().len(),
        4,
        "moved, still in their user's scope"
    );
    assert!(client.service_status().storage_recoveries.is_empty());
    wait_until("delivered", Duration::from_secs(10), || {
        client.service_status().queue.pending == 0
    })
    .await;
    assert_eq!(fleet.server(0).unique_effects(), 4);
}

/// Turns the cache file back into a version-3 shared file holding the queue file's rows and
/// install key (with the `sqlite3` shell). Returns the rows copied.
fn make_shared_file(queue: &Path, old: &Path) -> usize {
    let sql = format!(
        "ATTACH '{}' AS q;
         DELETE FROM install_key;
         INSERT INTO install_key SELECT * FROM q.install_key;
         CREATE TABLE queue_entries AS SELECT seq, id, idempotency_key, group_key, method, path,
            query, headers, body, timeout_ms, size, created_at_ms, attempts, next_attempt_at_ms,
            last_error, dead, dead_reason, dead_status, dead_body, scope FROM q.queue_entries;
         CREATE TABLE queue_stats AS SELECT * FROM q.queue_stats;
         CREATE TABLE queue_outcomes AS SELECT * FROM q.queue_outcomes;
         PRAGMA user_version = 3;
         SELECT count(*) FROM queue_entries;",
        queue.display()
    );
    let out = Command::new("sqlite3")
        .arg(old)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_enqueue_typed_while_requests_keep_working() {
    let fleet = Fleet::start(1).await;
    let Some(fs) = Tmpfs::mount("2m") else { return };
    let dir = fs.path().join("storage");
    let client = RobustClient::new(config(&fleet, &dir)).unwrap();
    client.enqueue(post(0, 10)).unwrap();
    // Fill the disk.
    let filler = fs.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    let mut full = 0;
    for i in 1..40 {
        match client.enqueue(post(i, 64 * 1024)) {
            Ok(_) => {}
            Err(ApiError::Storage { reason }) => {
                full += 1;
                assert!(!reason.is_empty());
            }
            Err(e) => panic!("enqueue on a full disk: {e:?}"),
        }
    }
    assert!(full > 0, "the disk filled up");
    for i in 0..5 {
        let r = client
            .get(format!("/cache/full{i}?cc=max-age%3D60"))
            .await
            .expect("requests succeed on a full disk");
        assert_eq!(r.status, 200);
    }
    let _ = client.service_status();
    client.shutdown();
    drop(client);
    let _ = std::fs::remove_file(&filler);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_folder_is_a_storage_error_at_construction() {
    let fleet = Fleet::start(1).await;
    let Some(fs) = Tmpfs::mount("2m") else { return };
    let dir = fs.path().join("storage");
    drop(RobustClient::new(config(&fleet, &dir)).unwrap()); // files exist
    fs.remount("ro");
    for d in [dir.clone(), fs.path().join("never-created")] {
        match RobustClient::new(config(&fleet, &d)) {
            Err(ApiError::Storage { reason }) => assert!(!reason.is_empty()),
            other => panic!("{}: {other:?}", d.display()),
        }
    }
    fs.remount("rw");
}

/// A new folder's files are created in the background (the constructor does not wait for them):
/// when that fails all the same — here the disk is full once the folder and its lock exist — the
/// client still starts, and what needs the disk fails with a typed `Storage` error instead of
/// pretending to keep anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_folder_whose_files_cannot_be_created_fails_every_write_with_storage() {
    let fleet = Fleet::start(1).await;
    let Some(fs) = Tmpfs::mount("1m") else { return };
    let dir = fs.path().join("storage");
    std::fs::create_dir_all(&dir).unwrap();
    // Fill the file system to the last byte.
    let mut filler = std::fs::File::create(fs.path().join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write(&mut filler, &chunk).is_ok_and(|n| n > 0) {}
    drop(filler);
    let client = RobustClient::new(config(&fleet, &dir)).unwrap();
    match client.enqueue(post(1, 0)) {
        Err(ApiError::Storage { reason }) => assert!(!reason.is_empty()),
        other => panic!("enqueue on a folder whose queue file could not be created: {other:?}"),
    }
    // The network still works; the cache just stores nothing.
    let r = client.request(ApiRequest::get("/bytes/16")).await.unwrap();
    assert_eq!(r.status, 200);
    client.shutdown();
}

struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hold_exclusive(file: &Path) -> Holder {
    let mut child = Command::new(example("db-holder"))
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "LOCKED");
    Holder(child)
}

/// The documented bound: SQLite's busy timeout (2 s) per statement, plus slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_is_a_storage_error_within_the_bound() {
    let fleet = Fleet::start(1).await;
    // A fresh folder whose queue file another process holds exclusively: construction fails.
    let dir = tempfile::tempdir().unwrap();
    let holder = hold_exclusive(&dir.path().join("queue.sqlite3"));
    let t = Instant::now();
    let r = tokio::task::spawn_blocking({
        let c = config(&fleet, dir.path());
        move || RobustClient::new(c).map(|_| ())
    })
    .await
    .unwrap();
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    assert!(matches!(r, Err(ApiError::Storage { .. })), "{r:?}");
    drop(holder);

    // An existing queue locked while the client runs: enqueue fails typed, requests go on.
    let dir = tempfile::tempdir().unwrap();
    let client = RobustClient::new(config(&fleet, dir.path())).unwrap();
    client.enqueue(post(0, 10)).unwrap();
    let holder = hold_exclusive(&dir.path().join("queue.sqlite3"));
    let t = Instant::now();
    let c = client.clone();
    let r = tokio::task::spawn_blocking(move || c.enqueue(post(1, 10)))
        .await
        .unwrap();
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    assert!(matches!(r, Err(ApiError::Storage { .. })), "{r:?}");
    assert_eq!(client.get("/x".into()).await.unwrap().status, 200);
    drop(holder);
    client.enqueue(post(2, 10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_folder_is_refused_and_each_entry_is_sent_once() {
    let (fleet, dir) = (Fleet::start(1).await, tempfile::tempdir().unwrap());
    let backend = fleet.urls()[0].clone();
    let child = |mode: &str| {
        Command::new(example("queue-child"))
            .args([
                "--dir",
                &dir.path().to_string_lossy(),
                "--backend",
                &backend,
            ])
            .args(["--mode", mode, "--count", "40"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = child("enqueue-offline");
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    while let Some(Ok(l)) = lines.next() {
        if l == "REPLAYING" {
            break;
        }
    }
    let second = child("resume").wait_with_output().unwrap();
    assert!(!second.status.success(), "the second process is refused");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already in use by another client"), "{err}");
    wait_until("the first delivers all", Duration::from_secs(15), || {
        fleet.server(0).unique_effects() == 40
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let posts = fleet
        .server(0)
        .requests()
        .iter()
        .filter(|r| r.path == "/orders")
        .count();
    assert_eq!(posts, 40, "each entry sent once on the wire");
}
