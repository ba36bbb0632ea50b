//! `cargo run --release --example memory` — the resident memory of a client holding a full cache
//! (the default bound, 20 MiB) and 1,000 queued entries, printed stage by stage (Linux:
//! `/proc/self/status`). One local backend; nothing leaves 127.0.0.1.

use robust_api::{ApiRequest, ClientConfig, RobustClient};
use robust_api_fleet::Fleet;

/// (`VmRSS`, `VmHWM`) of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(stage: &str) {
    let (rss, hwm) = memory_kib();
    println!(
        "{stage:<48} RSS {:>7.1} MiB   peak {:>7.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    report("process start");
    let fleet = Fleet::start(1).await;
    report("fleet started (same process)");
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(fleet.urls());
    config.storage_dir = Some(dir.path().to_string_lossy().into_owned());
    config.cache.default_ttl_ms = 3_600_000;
    config.queue.max_entries = 1_000;
    let cache_bound = config.cache.max_bytes as usize;
    let client = RobustClient::new(config).unwrap();
    report("client constructed");

    // Fill the cache past its bound with 256 KiB entries (LRU eviction keeps it at the bound).
    let entry = 256 * 1024;
    for i in 0..(cache_bound / entry + 8) {
        let r = client.get(format!("/bytes/{}", entry + i)).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let cache = client.service_status().cache;
    report(&format!(
        "cache full ({} entries, {:.1} MiB)",
        cache.entries,
        cache.bytes as f64 / 1048576.0
    ));

    // 1,000 queued entries (1 KiB JSON bodies) while the app is offline.
    client.set_network_available(false);
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
    for i in 0..1_000 {
        client
            .enqueue(ApiRequest::post_json(
                format!("/api/items/{i}"),
                body.clone(),
            ))
            .unwrap();
    }
    report(&format!(
        "1,000 queued ({} pending)",
        client.service_status().queue.pending
    ));
    // Everything read back once (cache hits, the queue listed).
    for i in 0..(cache_bound / entry) {
        let _ = client.get(format!("/bytes/{}", entry + i)).await;
    }
    let listed = client.queued_requests().unwrap().len();
    report(&format!("cache read back, queue listed ({listed})"));
    client.shutdown();
    drop(client);
    report("client shut down and dropped");
}
