//! `cargo run --release --example construct [n]` — what constructing a client costs: `n` clients
//! (default 30), each in a fresh storage folder, constructed and shut down one after another;
//! prints the median and the spread of `RobustClient::new` (the criterion figure is
//! `client_new/fresh_dir` in benches/overhead.rs). Run it under
//! `strace -f -c -e trace=fsync,fdatasync` to count the fsyncs. No server: the backends are
//! unreachable ports on 127.0.0.1 (construction sends nothing; the first probes go out after it).

use std::time::Instant;

use robust_api::{ClientConfig, RobustClient};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let root = tempfile::tempdir().unwrap();
    let urls = vec!["http://127.0.0.1:9".to_string()];
    // The first client of a process also loads the OS trust store (shared by later ones).
    let t = Instant::now();
    let first = RobustClient::new(ClientConfig::new(urls.clone())).unwrap();
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    first.shutdown();
    let mut fresh = Vec::new();
    let mut temp = Vec::new();
    for i in 0..n {
        let mut config = ClientConfig::new(urls.clone());
        config.storage_dir = Some(root.path().join(i.to_string()).display().to_string());
        let t = Instant::now();
        let client = RobustClient::new(config).unwrap();
        fresh.push(t.elapsed().as_secs_f64() * 1e3);
        client.shutdown();
        let t = Instant::now();
        let client = RobustClient::new(ClientConfig::new(urls.clone())).unwrap();
        temp.push(t.elapsed().as_secs_f64() * 1e3);
        client.shutdown();
    }
    let show = |name: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:<40} median {:>7.2} ms   min {:>7.2}   max {:>7.2}   (n = {})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1],
            v.len()
        );
    };
    println!("first client of the process (trust store) {first_ms:>7.2} ms");
    show("fresh storage_dir", &mut fresh);
    show("no storage_dir (temporary folder)", &mut temp);
}
