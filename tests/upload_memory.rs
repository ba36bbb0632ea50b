//! A 200 MB upload keeps memory flat: peak RSS (`VmHWM`) of this test process grows by far less
//! than the file. Its own test binary (one test) so no other test's allocations blur the figure.
//! Prints the figures (`cargo test --test upload_memory -- --nocapture`): peak RSS before/after,
//! throughput on loopback, number of progress calls.

mod support;

use std::time::Instant;

use robust_api::{ClientConfig, RobustClient, UploadRequest};
use robust_api_fleet::{json_str, make_file, sha256_file, Fleet};
use support::Progress;

const MB: u64 = 1 << 20;

/// Peak resident set size of this process, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_upload_streams_with_flat_memory_and_arrives_intact() {
    let size = 200 * MB;
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "video.mp4", size);
    let want = sha256_file(&path); // before measuring: hashing reads through a 1 MiB buffer
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(ClientConfig::new(fleet.urls())).unwrap();
    // Warm up (runtime threads, connection pool, allocator arenas) before the baseline.
    let small = make_file(dir.path(), "warm.bin", MB);
    client
        .upload_file(UploadRequest::new("/upload", small.to_string_lossy()), None)
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

    assert_eq!(r.status, 201);
    let stored = fleet.server(0).uploads();
    let u = stored.last().unwrap();
    assert_eq!((u.size, u.path.as_str()), (size, "/api/videos"));
    assert_eq!(u.sha256, want, "the server got identical bytes");
    assert_eq!(json_str(&r.body, "sha256").as_deref(), Some(want.as_str()));
    assert_eq!(u.fields, vec![("title".to_owned(), "Big one".to_owned())]);
    let total = progress.assert_monotonic_to_total();
    let calls = progress.calls().len();
    // ~1 % steps (+ 250 ms ticks on a slow machine): not one call per chunk (1,600 × 128 KiB).
    assert!(
        calls <= 100 + 4 * elapsed.as_secs() as usize + 4,
        "{calls} progress calls"
    );
    let mib_s = size as f64 / MB as f64 / elapsed.as_secs_f64();
    println!(
        "upload figures: {} MiB body in {:.2} s = {mib_s:.0} MiB/s on loopback; {calls} progress calls",
        total as u64 / MB,
        elapsed.as_secs_f64()
    );
    if let (Some(before), Some(after)) = (before, after) {
        let grew = after.saturating_sub(before);
        println!(
            "upload figures: peak RSS {} MiB before, {} MiB after (+{} KiB) for a {} MiB file",
            before / 1024,
            after / 1024,
            grew,
            size / MB
        );
        // A buffered upload would add the whole file (200 MiB); streaming adds a few chunks and
        // socket/HTTP buffers on both ends (client and fleet share this process).
        assert!(grew < 32 * 1024, "peak RSS grew by {grew} KiB");
    }
}
