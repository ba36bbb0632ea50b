//! HTTP/2 proven (issue 18, build 6): against a local TLS server that offers `h2` through ALPN,
//! 100 concurrent GETs to one backend share one connection (counted server-side); the same
//! against a server offering only HTTP/1.1 needs a connection per request in flight, and the pool
//! keeps at most `pool_max_idle_per_host` (8) of them for the next burst.

use std::time::Duration;

use futures_util::future::join_all;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use robust_api::{ClientConfig, RobustClient};
use robust_api_fleet::{wait_until, AlpnServer, Protocol};

/// A CA made here and a server certificate for 127.0.0.1 it signed: (CA PEM, chain, leaf key).
fn pki() -> (String, Vec<Vec<u8>>, Vec<u8>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "robust-api h2 test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), vec![leaf.der().to_vec()], key.serialize_der())
}

/// Starts a server of `protocol`, a client trusting it, waits for the start-up probe, then sends
/// `bursts` rounds of 100 concurrent GETs; returns the server (for its counts).
async fn hundred_concurrent(protocol: Protocol, bursts: usize) -> (AlpnServer, Vec<u64>) {
    let (ca, chain, key) = pki();
    let server = AlpnServer::start(protocol, chain, key, Duration::from_millis(100))
        .await
        .unwrap();
    let mut c = ClientConfig::new(vec![server.url()]);
    c.security.trusted_roots_pem = vec![ca];
    c.cache.max_bytes = 0;
    c.timeouts.request_ms = 20_000;
    let client = RobustClient::new(c).unwrap();
    wait_until("start-up probe", Duration::from_secs(10), || {
        server.requests() > 0
    })
    .await;
    let mut after_each = Vec::new();
    for _ in 0..bursts {
        let calls = (0..100).map(|_| client.get("/bytes/1024".into()));
        for r in join_all(calls).await {
            let r = r.unwrap();
            assert_eq!((r.status, r.body.len()), (200, 1024));
        }
        after_each.push(server.connections());
    }
    client.shutdown();
    (server, after_each)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_gets_over_http2_share_one_connection() {
    let (server, after_each) = hundred_concurrent(Protocol::Http2, 2).await;
    eprintln!(
        "HTTP/2: {} requests, connections after each burst {after_each:?}, peak in flight {}",
        server.requests(),
        server.peak_in_flight()
    );
    assert_eq!(after_each, vec![1, 1]);
    // They really were concurrent: multiplexed on that one connection.
    assert!(server.peak_in_flight() >= 50, "{}", server.peak_in_flight());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_each_request_in_flight_needs_its_own_connection() {
    let (server, after_each) = hundred_concurrent(Protocol::Http1, 2).await;
    eprintln!(
        "HTTP/1.1: {} requests, connections after each burst {after_each:?}, peak in flight {}",
        server.requests(),
        server.peak_in_flight()
    );
    // The first burst opens about one connection per request (the probe's is reused).
    assert!(after_each[0] >= 50, "{after_each:?}");
    // The pool kept at most 8 idle connections: the second burst opens most of them again.
    let reopened = after_each[1] - after_each[0];
    assert!(reopened >= 100 - 8 - 10, "{after_each:?}");
}
