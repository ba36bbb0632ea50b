//! Offline queue throughput, against a local fleet server:
//!
//! - `queue/enqueue`: one durable enqueue (SQLite transaction, WAL) — throughput = 1 / time;
//! - `queue/replay_1000`: network back → 1,000 queued POSTs delivered and deleted.
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
    let mut config = ClientConfig::new(fleet.urls());
    config.queue.max_entries = i32::MAX;
    config.queue.max_bytes = i32::MAX;
    config.queue.max_in_flight = 4;
    let client = RobustClient::new(config).unwrap();
    let req = ApiRequest::post_json("/orders", r#"{"sku":42,"qty":1}"#);

    let mut g = c.benchmark_group("queue");
    client.set_network_available(false);
    let mut n = 0u64;
    g.bench_function("enqueue", |b| {
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
    g.bench_function("replay_1000", |b| {
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
    g.finish();
    drop(client);
    drop(fleet);
}

criterion_group!(benches, queue);
criterion_main!(benches);
