//! A child process for the cache's durability test (tests/cache_durability.rs): it GETs `--count`
//! fresh (`max-age=600`) responses from `--backend` into a client on `--dir`, prints `BURST DONE`
//! as soon as the last call returned (its store may still be pending in the write-behind queue),
//! and waits to be SIGKILLed. Not useful on its own.
//!
//! `cache-child --dir D --backend URL --count N`

use std::io::Write;
use std::time::Duration;

use robust_api::{ApiRequest, ClientConfig, QueryParam, RobustClient};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let (Some(dir), Some(backend)) = (arg("--dir"), arg("--backend")) else {
        eprintln!("usage: cache-child --dir D --backend URL --count N");
        std::process::exit(2);
    };
    let count: usize = arg("--count").and_then(|c| c.parse().ok()).unwrap_or(200);
    let mut config = ClientConfig::new(vec![backend]);
    config.storage_dir = Some(dir);
    config.health.interval_ms = 3_600_000;
    let client = match RobustClient::new(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cache-child: {e}");
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // All at once: the stores arrive faster than one at a time, so some are likely still pending
    // in the write-behind queue when the kill lands.
    rt.block_on(async {
        let calls: Vec<_> = (0..count)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut req = ApiRequest::get(format!("/cache/b{i}"));
                    req.query.push(QueryParam {
                        name: "cc".into(),
                        value: "max-age=600".into(),
                    });
                    if let Err(e) = client.request(req).await {
                        eprintln!("cache-child: GET {i}: {e}");
                    }
                })
            })
            .collect();
        for c in calls {
            let _ = c.await;
        }
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "BURST DONE");
    let _ = out.flush();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
