//! The cache's costs, side by side in one run against raw reqwest on the same local server (the
//! fleet: a small hyper-free HTTP/1.1 server on its own runtime):
//!
//! - `cache_get_1kb/raw_reqwest`: a plain reqwest GET of 1 KiB — the floor;
//! - `cache_get_1kb/robust_default`: the default policy through `RobustClient::request`: network
//!   plus storing the response (write-behind: the SQLite write is off the call's path);
//! - `cache_hit_1kb/request`: a fresh hit through `RobustClient::request` (memory tier);
//! - `cache_hit_1kb/sync_read`: the same entry through the synchronous `cached_response`;
//! - `cache_hit_1kb/sqlite_select_reference`: a cached SELECT of a 1 KiB row (what a hit cost
//!   before the memory tier, at least);
//! - `coalesce_50/{coalesced,uncoalesced}`: 50 concurrent GETs of a URL that answers in 20 ms;
//!   the server hits per round are printed.
//!
//! `cargo bench --bench cache`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use robust_api::{ApiRequest, ClientConfig, RobustClient};

fn get(path: &str) -> ApiRequest {
    ApiRequest::get(path)
}

fn cache(c: &mut Criterion) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fleet = server_rt.block_on(robust_api_fleet::Fleet::start(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{}/bytes/1024", fleet.urls()[0]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let raw = reqwest::Client::builder().build().unwrap();
    let config = || {
        let mut c = ClientConfig::new(fleet.urls());
        c.health.interval_ms = 3_600_000;
        c
    };
    let default = RobustClient::new(config()).unwrap();
    let mut hot = config();
    hot.cache.default_ttl_ms = 3_600_000;
    let hot = RobustClient::new(hot).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(hot.request(get("/bytes/1024"))).unwrap();

    let mut g = c.benchmark_group("cache_get_1kb");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("raw_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r = raw.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    });
    g.bench_function("robust_default", |b| {
        b.to_async(&rt).iter(|| async {
            let r = default.request(get("/bytes/1024")).await.unwrap();
            assert!(!r.from_cache);
            r.body
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cache_hit_1kb");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("request", |b| {
        b.to_async(&rt).iter(|| async {
            let r = hot.request(get("/bytes/1024")).await.unwrap();
            assert!(r.from_cache);
            r.body
        })
    });
    g.bench_function("sync_read", |b| {
        let req = get("/bytes/1024");
        b.iter(|| {
            let r = hot.cached_response(req.clone(), false).unwrap().unwrap();
            r.body
        })
    });
    // The reference the issue compares with: a cached SELECT of a 1 KiB row from an SQLite file.
    let db_dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(db_dir.path().join("ref.sqlite3")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB NOT NULL);",
    )
    .unwrap();
    db.execute("INSERT INTO t VALUES ('k', ?1)", [vec![7u8; 1024]])
        .unwrap();
    g.bench_function("sqlite_select_reference", |b| {
        b.iter(|| {
            let mut st = db.prepare_cached("SELECT v FROM t WHERE k = ?1").unwrap();
            st.query_row(["k"], |r| r.get::<_, Vec<u8>>(0)).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("coalesce_50");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(6));
    let mut round = 0u64;
    for (name, coalesce) in [("coalesced", true), ("uncoalesced", false)] {
        let client: Arc<RobustClient> = RobustClient::new(config()).unwrap();
        let before = fleet.server(0).hits();
        let mut rounds = 0u64;
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                round += 1;
                rounds += 1;
                let (client, path) = (client.clone(), format!("/cache/c{round}?delay_ms=20"));
                async move {
                    let calls: Vec<_> = (0..50)
                        .map(|_| {
                            let mut r = get(&path);
                            r.coalesce = Some(coalesce);
                            let c = client.clone();
                            tokio::spawn(async move { c.request(r).await.unwrap().status })
                        })
                        .collect();
                    for call in calls {
                        assert_eq!(call.await.unwrap(), 200);
                    }
                }
            })
        });
        let hits = fleet.server(0).hits() - before;
        println!(
            "coalesce_50/{name}: {:.1} server hits per 50 concurrent GETs ({rounds} rounds)",
            hits as f64 / rounds.max(1) as f64
        );
    }
    g.finish();
    drop((default, hot));
    drop(fleet);
}

criterion_group!(benches, cache);
criterion_main!(benches);
