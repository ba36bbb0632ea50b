//! Side-by-side measurements in one run.
//!
//! Against [`fast_server`], a minimal hyper server that answers in tens of microseconds (the
//! floor is the client's, not the server's):
//!
//! - `get_1kb_fast/raw_reqwest`: a plain reqwest GET of 1 KiB — the floor;
//! - `get_1kb_fast/robust_no_cache`: the same through `RobustClient` with the cache off: the
//!   overhead of the pipeline, as a ratio and in µs per call.
//!
//! Against the same local fleet server (a realistic, slower server: parsing, routing, faults):
//!
//! - `get_1kb/raw_reqwest`: a plain reqwest GET of 1 KiB — the floor;
//! - `get_1kb/robust_no_cache`: the same through `RobustClient` with the cache off (pipeline
//!   overhead: selection, breaker, retry bookkeeping, response conversion);
//! - `get_1kb/robust_default`: the default path, which also writes the response to the SQLite
//!   cache (for offline use);
//! - `get_1kb/robust_cache_hit`: a fresh cache hit through `RobustClient::request`;
//! - `client_new/fresh_dir`: the constructor on a new folder (runtime, network, the SQLite files
//!   started in the background); `client_new/fresh_dir_and_shutdown`: constructor, file
//!   creation and shutdown.
//!
//! `cargo bench --bench overhead`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use robust_api::{ApiRequest, CachePolicy, ClientConfig, RobustClient};

/// A minimal HTTP/1.1 server on `127.0.0.1`: every request gets `200` with the same body.
mod fast_server {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::Full;

    /// Starts serving on the current runtime; returns the address.
    pub(crate) async fn start(body: Bytes) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let body = body.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let body = Full::new(body.clone());
                        async move { Ok::<_, Infallible>(hyper::Response::new(body)) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        addr
    }
}

fn overhead(c: &mut Criterion) {
    // The fleet gets its own runtime (own threads), like a real server would.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fleet = server_rt.block_on(robust_api_fleet::Fleet::start(3));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{}/bytes/1024", fleet.urls()[0]);
    let fast = server_rt.block_on(fast_server::start(vec![b'x'; 1024].into()));
    let fast_url = format!("http://{fast}/bytes/1024");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let raw = reqwest::Client::builder().build().unwrap();
    let mut fast_config = ClientConfig::new(vec![format!("http://{fast}")]);
    fast_config.cache.max_bytes = 0;
    let mut one_worker = fast_config.clone();
    one_worker.worker_threads = 1;
    let fast_client = RobustClient::new(fast_config).unwrap();
    let fast_one_worker = RobustClient::new(one_worker).unwrap();
    // A runtime like the client's, for the bare cost of handing a call to it and back.
    let other_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut no_cache = ClientConfig::new(fleet.urls());
    no_cache.cache.max_bytes = 0;
    let no_cache = RobustClient::new(no_cache).unwrap();
    let default = RobustClient::new(ClientConfig::new(fleet.urls())).unwrap();
    let mut cached = ClientConfig::new(fleet.urls());
    cached.cache.default_ttl_ms = 3_600_000;
    let cached = RobustClient::new(cached).unwrap();
    // Let the start-up probes finish; fill the cache entry.
    std::thread::sleep(Duration::from_millis(300));
    rt.block_on(cached.get("/bytes/1024".into())).unwrap();

    let mut g = c.benchmark_group("get_1kb_fast");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("raw_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r = raw.get(&fast_url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    });
    g.bench_function("robust_no_cache", |b| {
        b.to_async(&rt).iter(|| async {
            let r = fast_client.get("/bytes/1024".to_string()).await.unwrap();
            assert_eq!(r.status, 200);
            r.body
        })
    });
    g.bench_function("robust_no_cache_1_worker", |b| {
        b.to_async(&rt).iter(|| async {
            let r = fast_one_worker
                .get("/bytes/1024".to_string())
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            r.body
        })
    });
    // raw reqwest's GET, spawned on another runtime and awaited from this one: the hand-off
    // every call through a client-owned runtime pays.
    let hop_client = reqwest::Client::builder().build().unwrap();
    g.bench_function("raw_reqwest_on_another_runtime", |b| {
        b.to_async(&rt).iter(|| {
            let (raw, url) = (hop_client.clone(), fast_url.clone());
            let task = other_rt.spawn(async move {
                let r = raw.get(&url).send().await.unwrap();
                r.bytes().await.unwrap()
            });
            async move { task.await.unwrap() }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("get_1kb");
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("raw_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r = raw.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        })
    });
    for (name, client) in [("robust_no_cache", &no_cache), ("robust_default", &default)] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let r = client.get("/bytes/1024".to_string()).await.unwrap();
                assert_eq!(r.status, 200);
                r.body
            })
        });
    }
    g.bench_function("robust_cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let mut req = ApiRequest::get("/bytes/1024");
            req.cache = Some(CachePolicy::NetworkFirst);
            let r = cached.request(req).await.unwrap();
            assert!(r.from_cache);
            r.body
        })
    });
    g.finish();

    let mut g = c.benchmark_group("client_new");
    g.sample_size(30);
    let urls = fleet.urls();
    // What the app waits for: the constructor (a new folder's files are then created in the
    // background; shutting the client down waits for them, so it is kept out of the timing).
    g.bench_function("fresh_dir", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let started = std::time::Instant::now();
                let client = RobustClient::new(ClientConfig::new(urls.clone())).unwrap();
                spent += started.elapsed();
                client.shutdown();
            }
            spent
        })
    });
    // The whole life of a client that does nothing: constructor, file creation, shutdown.
    g.bench_function("fresh_dir_and_shutdown", |b| {
        b.iter(|| {
            let client = RobustClient::new(ClientConfig::new(urls.clone())).unwrap();
            client.shutdown();
            client
        })
    });
    g.finish();
    drop((no_cache, default, cached, fast_client, fast_one_worker));
    drop(fleet);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
