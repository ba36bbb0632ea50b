//! Per-request overhead of the robust-api pipeline against raw reqwest, side by side in one run,
//! both hitting the same local fleet server (`GET /bytes/1024`, keep-alive).
//!
//! `cargo bench --bench overhead` — compare the medians of `raw_reqwest` and `robust_client`.

#[path = "../tests/support/fleet.rs"]
#[allow(dead_code)]
mod fleet;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use robust_api::{ClientConfig, RobustClient};

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fleet = rt.block_on(fleet::Fleet::start(3));
    let url = format!("{}/bytes/1024", fleet.urls()[0]);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let raw = reqwest::Client::builder().build().unwrap();
    let client = RobustClient::new(ClientConfig::new(fleet.urls())).unwrap();
    // Let the start-up probes finish so they don't share the measurement.
    std::thread::sleep(Duration::from_millis(300));

    let mut g = c.benchmark_group("get_1kb");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("raw_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r = raw.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    });
    g.bench_function("robust_client", |b| {
        b.to_async(&rt).iter(|| async {
            let r = client.get("/bytes/1024".to_string()).await.unwrap();
            assert_eq!(r.status, 200);
            r.body
        })
    });
    g.finish();
    drop(client);
    drop(fleet);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
