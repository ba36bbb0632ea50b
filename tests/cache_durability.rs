//! The cache's durability contract with write-behind: a process SIGKILLed right after a burst of
//! fresh responses leaves a database the next client opens without recovery; whatever rows it
//! holds are whole (a committed batch), whatever was still pending is simply not cached.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use robust_api::{ApiRequest, CachePolicy, ClientConfig, QueryParam, RobustClient};
use robust_api_fleet::Fleet;

fn child_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_profile = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = target_profile.join("examples").join("cache-child");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "cache-child"])
            .status()
            .unwrap();
        assert!(status.success(), "building cache-child");
    }
    bin
}

const BURST: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_right_after_a_burst_leaves_a_database_opened_without_recovery() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = fleet.urls()[0].clone();
    let mut child = Command::new(child_binary())
        .args([
            "--dir",
            &dir.path().to_string_lossy(),
            "--backend",
            &backend,
        ])
        .args(["--count", &BURST.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::task::spawn_blocking(move || lines.next())
        .await
        .unwrap();
    assert_eq!(line.unwrap().unwrap(), "BURST DONE");
    child.kill().unwrap(); // SIGKILL, with stores likely still pending
    child.wait().unwrap();
    assert!(
        fleet.server(0).hits() >= BURST as u64,
        "the whole burst went out"
    );

    let mut config = ClientConfig::new(fleet.urls());
    config.storage_dir = Some(dir.path().to_string_lossy().into_owned());
    config.health.interval_ms = 3_600_000;
    let client = RobustClient::new(config).unwrap();
    assert!(
        client.take_storage_recoveries().is_empty(),
        "opened without recovery"
    );
    let stored = client.service_status().cache.entries;
    assert!(stored as usize <= BURST);
    let mut served = 0;
    for i in 0..BURST {
        let mut req = ApiRequest::get(format!("/cache/b{i}"));
        req.query.push(QueryParam {
            name: "cc".into(),
            value: "max-age=600".into(),
        });
        req.cache = Some(CachePolicy::CacheOnly);
        if let Ok(r) = client.request(req).await {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            assert!(
                body.contains(&format!("\"/cache/b{i}?cc=")),
                "a whole row: {body}"
            );
            served += 1;
        }
    }
    assert_eq!(served, stored, "every stored row is whole and served");
    client.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = rusqlite::Connection::open(dir.path().join("robust-api.sqlite3")).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    println!("after SIGKILL: {stored} of {BURST} fresh responses were on disk");
}
