//! A 200 MiB resumable upload (tus, against the official Node server in its own process) keeps
//! memory flat: peak RSS (`VmHWM`) of this test process grows by far less than the file. Its own
//! test binary (one test) so no other test's allocations blur the figure. Prints the figures
//! (`cargo test --test tus_memory -- --nocapture`).

mod support;

use std::time::Instant;

use robust_api::{ClientConfig, RobustClient, UploadRequest};
use robust_api_fleet::{make_file, sha256_file};
use support::tus::TusServer;
use support::Progress;

const MB: u64 = 1 << 20;

/// Peak resident set size of this process, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_resumable_upload_streams_with_flat_memory() {
    let size = 200 * MB;
    let server = TusServer::start(0);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "video.mp4", size);
    let want = sha256_file(&path); // before measuring: hashing reads through a 1 MiB buffer
    let mut c = ClientConfig::new(vec![format!("http://127.0.0.1:{}", server.port)]);
    c.storage_dir = Some(store.path().to_string_lossy().into_owned());
    c.upload.video_path = "/files/".into();
    let client = RobustClient::new(c).unwrap();
    // Warm up (runtime threads, connection pool, SQLite, allocator arenas) before the baseline.
    let small = make_file(dir.path(), "warm.bin", 9 * MB);
    client
        .upload_file(UploadRequest::new("/files/", small.to_string_lossy()), None)
        .await
        .unwrap();
    let before = peak_rss_kib();
    let progress = Progress::new();
    let started = Instant::now();
    let r = client
        .upload_video_file(
            path.to_string_lossy().into_owned(),
            "Big one".into(),
            Some(Box::new(progress.clone())),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    assert_eq!(r.status, 204);
    assert_eq!(progress.assert_monotonic_to_total() as u64, size);
    let stored = server.newest_upload();
    assert_eq!(sha256_file(&stored), want, "the server got identical bytes");
    println!(
        "FIGURE tus upload: {} MiB in {:.2} s = {:.0} MiB/s on loopback (8 MiB PATCHes)",
        size / MB,
        elapsed.as_secs_f64(),
        size as f64 / MB as f64 / elapsed.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (before, after) {
        let grew = after.saturating_sub(before);
        println!(
            "FIGURE tus upload: peak RSS {} MiB before, {} MiB after (+{grew} KiB) for a {} MiB file",
            before / 1024,
            after / 1024,
            size / MB
        );
        assert!(grew < 32 * 1024, "peak RSS grew by {grew} KiB");
    }
}
