//! Configuration checked once, at construction, and health probes that classify like requests
//! (issue 13, build 9, network part). Real servers on 127.0.0.1.

use std::time::Duration;

use robust_api::{ApiError, BreakerState, ClientConfig, RobustClient};
use robust_api_fleet::{wait_until, Fault, Fleet};

#[test]
fn a_health_path_no_probe_can_send_is_invalid_config() {
    for bad in [
        "/health\r\nX-Evil: 1",
        "/health\n",
        "/health#frag",
        "/health check",
        "//evil.example/health",
        "/x?u=http://evil.example",
        "/a/../health",
        "/\t",
    ] {
        let mut c = ClientConfig::new(vec!["http://127.0.0.1:9".into()]);
        c.health.path = bad.into();
        match RobustClient::new(c) {
            Err(ApiError::InvalidConfig { reason }) => {
                assert!(reason.contains("health.path"), "{bad:?}: {reason}")
            }
            other => panic!("{bad:?}: expected InvalidConfig, got {:?}", other.err()),
        }
    }
    for good in ["/api/health", "/health?full=1", "/"] {
        let mut c = ClientConfig::new(vec!["http://127.0.0.1:9".into()]);
        c.health.path = good.into();
        RobustClient::new(c).unwrap().shutdown();
    }
}

#[test]
fn control_characters_in_a_backend_url_are_invalid_config_not_stripped() {
    for bad in [
        "http://127.0.0.1:9/a\tb",
        "http://127.0.0.1:9/a\nb",
        "http://127.0.\r0.1:9",
        "http://127.0.0.1:9/\u{7f}",
    ] {
        let c = ClientConfig::new(vec![bad.into()]);
        match RobustClient::new(c) {
            Err(ApiError::InvalidConfig { reason }) => {
                assert!(reason.contains("control"), "{bad:?}: {reason}")
            }
            other => panic!("{bad:?}: expected InvalidConfig, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_non_ascii_host_is_invalid_config_naming_its_ascii_form() {
    for (bad, ascii) in [
        ("https://bücher.example", "xn--bcher-kva.example"),
        (
            "https://API.Bücher.example:8443/v1",
            "api.xn--bcher-kva.example",
        ),
        ("http://user@münchen.example/", "xn--mnchen-3ya.example"),
    ] {
        let c = ClientConfig::new(vec![bad.into()]);
        match RobustClient::new(c) {
            Err(ApiError::InvalidConfig { reason }) => {
                assert!(reason.contains(ascii), "{bad:?}: {reason}");
                assert!(reason.contains("non-ASCII host"), "{bad:?}: {reason}");
            }
            other => panic!("{bad:?}: expected InvalidConfig, got {:?}", other.err()),
        }
    }
    // The ASCII form it names is accepted.
    let c = ClientConfig::new(vec!["https://xn--bcher-kva.example".into()]);
    RobustClient::new(c).unwrap().shutdown();
}

/// The library links the URL parser's ASCII-only host mapping (`idna_adapter` 1.0, see Cargo.toml):
/// a dependency update that brings back the Unicode tables (about 135 KB) makes this fail.
#[test]
fn the_url_parser_carries_no_unicode_host_tables() {
    assert!(
        reqwest::Url::parse("https://bücher.example/").is_err(),
        "the URL parser maps Unicode host names again: idna_adapter is no longer 1.0 (Cargo.toml)"
    );
    assert!(reqwest::Url::parse("https://xn--bcher-kva.example/").is_ok());
}

fn probing(fleet: &Fleet) -> ClientConfig {
    let mut c = ClientConfig::new(fleet.urls());
    c.health.interval_ms = 20;
    c.breaker.failure_threshold = 2;
    c.breaker.open_ms = 60_000;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answered_4xx_never_open_a_breaker_but_5xx_do() {
    let fleet = Fleet::start(1).await;
    for status in [429, 404, 401] {
        fleet.server(0).set_fault(Fault::Status(status)).await;
        let client = RobustClient::new(probing(&fleet)).unwrap();
        let before = fleet.server(0).hits_for("/api/health");
        wait_until("ten probes", Duration::from_secs(5), || {
            fleet.server(0).hits_for("/api/health") >= before + 10
        })
        .await;
        assert_eq!(
            client.service_status().backends[0].breaker_state,
            BreakerState::Closed,
            "HTTP {status}"
        );
        client.shutdown();
    }
    // The control: the same probes answered 503 open it.
    fleet.server(0).set_fault(Fault::Status(503)).await;
    let client = RobustClient::new(probing(&fleet)).unwrap();
    wait_until("breaker open on 503 probes", Duration::from_secs(5), || {
        client.service_status().backends[0].breaker_state == BreakerState::Open
    })
    .await;
    client.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_bodies_rank_degraded_last_and_down_with_200_as_unhealthy() {
    let fleet = Fleet::start(3).await;
    fleet
        .server(0)
        .set_health_body(Some(r#"{"status":"degraded"}"#));
    fleet
        .server(1)
        .set_health_body(Some(r#"{"status":"down","detail":"db"}"#));
    fleet.server(2).set_health_body(Some("not json {"));
    let mut c = ClientConfig::new(fleet.urls());
    c.health.interval_ms = 50;
    let client = RobustClient::new(c).unwrap();
    wait_until("probes read the bodies", Duration::from_secs(5), || {
        let b = client.service_status().backends;
        b[0].degraded && !b[1].healthy && b[2].latency_ewma_ms.is_some()
    })
    .await;
    let b = client.service_status().backends;
    assert!(b[0].healthy, "degraded is still healthy: {b:?}");
    assert!(
        b[1].last_error.as_deref().unwrap_or("").contains("down"),
        "{b:?}"
    );
    assert!(
        b[2].healthy && !b[2].degraded,
        "a garbage body with 200 is healthy: {b:?}"
    );
    // The healthy backend first, although configured last.
    assert_eq!(
        client.service_status().preferred_backend,
        Some(fleet.urls()[2].clone())
    );
    let r = client.get("/x".into()).await.unwrap();
    assert_eq!(r.backend, fleet.urls()[2]);
    // Without it: the degraded one, before the one that reports itself down.
    fleet.server(2).set_fault(Fault::Down).await;
    wait_until("backend 2 unhealthy", Duration::from_secs(5), || {
        !client.service_status().backends[2].healthy
    })
    .await;
    let r = client.get("/x".into()).await.unwrap();
    assert_eq!(r.backend, fleet.urls()[0]);
    // Recovered: `ok` clears the degraded mark.
    fleet.server(0).set_health_body(Some(r#"{"status":"ok"}"#));
    wait_until(
        "backend 0 no longer degraded",
        Duration::from_secs(5),
        || !client.service_status().backends[0].degraded,
    )
    .await;
    client.shutdown();
}
