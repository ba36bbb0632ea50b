//! Offline queue throughput, against a local fleet server, for both durability settings side by
//! side (`queue.synchronous_full`: `true` = `synchronous=FULL`, the default; `false` = `NORMAL`):
//!
//! - `queue/enqueue_full`, `queue/enqueue_normal`: one durable enqueue (one SQLite transaction in
//!   the queue's own file) — throughput = 1 / time;
//! - `queue/replay_1000_full`, `queue/replay_1000_normal`: network back → 1,000 queued POSTs
//!   delivered and deleted.
//!
//! `cargo bench --bench queue`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use robust_api::{ApiRequest, ClientConfig, RobustClient};

fn queue(c: &mut Criterion) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fleet = server_rt.block_on(robust_api_fleet::Fleet::start(1));
    let req = ApiRequest::post_json("/orders", r#"{"sku":42,"qty":1}"#);
    let mut g = c.benchmark_group("queue");
    for (name, full) in [("full", true), ("normal", false)] {
        // On the target disk, not /tmp (often a tmpfs, where fsync costs nothing).
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut config = ClientConfig::new(fleet.urls());
        config.storage_dir = Some(dir.path().to_string_lossy().into_owned());
        config.queue.max_entries = i32::MAX;
        config.queue.max_bytes = i32::MAX;
        config.queue.max_in_flight = 4;
        config.queue.synchronous_full = full;
        let client = RobustClient::new(config).unwrap();

        client.set_network_available(false);
        let mut n = 0u64;
        g.sample_size(100);
        g.measurement_time(Duration::from_secs(5));
        g.bench_function(format!("enqueue_{name}"), |b| {
            b.iter(|| {
                n += 1;
                if n % 50_000 == 0 {
                    client.clear_queue().unwrap();
                }
                client.enqueue(req.clone()).unwrap()
            })
        });
        client.clear_queue().unwrap();

        g.sample_size(10);
        g.measurement_time(Duration::from_secs(20));
        g.bench_function(format!("replay_1000_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    client.set_network_available(false);
                    for _ in 0..1_000 {
                        client.enqueue(req.clone()).unwrap();
                    }
                    let t = Instant::now();
                    client.set_network_available(true);
                    while client.service_status().queue.pending > 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
        drop(client);
    }
    g.finish();
    drop(fleet);
}

criterion_group!(benches, queue);
criterion_main!(benches);
