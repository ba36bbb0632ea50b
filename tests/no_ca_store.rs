//! A device or container without any CA certificates must still reach plain-http backends
//! (the TLS trust store is only needed for https). Own test binary: it changes the process
//! environment.

use robust_api::{ClientConfig, RobustClient};
use robust_api_fleet::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_ca_store_still_talks_http() {
    let empty = tempfile::tempdir().unwrap();
    // rustls-native-certs (behind the platform verifier on Linux) reads only these when set.
    std::env::set_var("SSL_CERT_FILE", empty.path().join("none.pem"));
    std::env::set_var("SSL_CERT_DIR", empty.path());
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(ClientConfig::new(fleet.urls()))
        .expect("constructed without CA certificates");
    assert_eq!(client.get("/x".into()).await.unwrap().status, 200);
}
