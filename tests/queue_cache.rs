//! The request stack: queue replay enters at the cache layer, so a replayed write invalidates the
//! cached GETs of its path exactly like the same write sent live.

use std::time::Duration;

use robust_api::{ApiRequest, ClientConfig, HttpMethod, RobustClient};
use robust_api_fleet::{wait_until, Fleet};

const ITEM: &str = "/cache/item";

fn cached_get() -> ApiRequest {
    let mut r = ApiRequest::get(ITEM);
    r.query.push(robust_api::QueryParam {
        name: "cc".into(),
        value: "max-age=600".into(),
    });
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_queued_put_invalidates_the_cached_get_of_its_path() {
    let fleet = Fleet::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = ClientConfig::new(fleet.urls());
    c.storage_dir = Some(dir.path().to_string_lossy().into_owned());
    c.queue.retry_base_delay_ms = 20;
    c.queue.retry_max_delay_ms = 40;
    let client = RobustClient::new(c).unwrap();

    let first = client.request(cached_get()).await.unwrap();
    assert!(!first.from_cache);
    let again = client.request(cached_get()).await.unwrap();
    assert!(
        again.from_cache,
        "max-age=600: the second GET is a cache hit"
    );

    client.set_network_available(false);
    let mut put = ApiRequest::new(HttpMethod::Put, ITEM);
    put.body = Some(b"{\"name\":\"new\"}".to_vec());
    client.enqueue(put).unwrap();
    client.set_network_available(true);
    wait_until(
        "the queued PUT is replayed",
        Duration::from_secs(10),
        || client.service_status().queue.delivered == 1,
    )
    .await;

    let after = client.request(cached_get()).await.unwrap();
    assert!(
        !after.from_cache,
        "the replayed PUT must invalidate the cached GET of its path, as a live PUT does"
    );
    client.shutdown();
}
