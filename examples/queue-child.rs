//! A child process for the queue's crash tests (tests/queue.rs): it enqueues POSTs into a client on
//! `--dir`, printing `ENQ <seq>` after each enqueue returned (durable), and replays against
//! `--backend` until it is SIGKILLed. Not useful on its own.
//!
//! `queue-child --dir D --backend URL --mode enqueue-offline|enqueue-online|resume --count N`

use std::io::Write;
use std::time::Duration;

use robust_api::{ApiRequest, ClientConfig, RobustClient};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let (Some(dir), Some(backend), Some(mode)) = (arg("--dir"), arg("--backend"), arg("--mode"))
    else {
        eprintln!("usage: queue-child --dir D --backend URL --mode enqueue-offline|enqueue-online|resume --count N");
        std::process::exit(2);
    };
    let count: usize = arg("--count").and_then(|c| c.parse().ok()).unwrap_or(50);
    let mut config = ClientConfig::new(vec![backend]);
    config.storage_dir = Some(dir);
    config.queue.max_entries = 1_000;
    config.queue.retry_base_delay_ms = 20;
    config.queue.retry_max_delay_ms = 100;
    config.health.interval_ms = 3_600_000;
    let client = match RobustClient::new(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("queue-child: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    if mode.starts_with("enqueue") {
        client.set_network_available(mode == "enqueue-online");
        for seq in 0..count {
            let req = ApiRequest::post_json("/orders", format!(r#"{{"seq":{seq}}}"#));
            match client.enqueue(req) {
                Ok(_) => {
                    let _ = writeln!(out, "ENQ {seq}");
                    let _ = out.flush();
                }
                Err(e) => eprintln!("queue-child: enqueue {seq}: {e}"),
            }
        }
        client.set_network_available(true);
    }
    let _ = writeln!(out, "REPLAYING");
    let _ = out.flush();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}
