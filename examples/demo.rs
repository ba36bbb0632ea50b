//! `cargo run --example demo` — three local backends, real traffic, a backend killed and revived,
//! with the client's status printed as it goes. No set-up and no network beyond 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use robust_api::{
    ApiError, ApiRequest, BreakerState, ClientConfig, RobustClient, ServiceStatus, StatusEvent,
    StatusListener, UploadRequest,
};
use robust_api_fleet::{Fault, Fleet};

struct PrintEvents(Instant);

impl StatusListener for PrintEvents {
    fn on_event(&self, event: StatusEvent) -> Result<(), ApiError> {
        let t = self.0.elapsed().as_millis();
        match event {
            StatusEvent::BreakerChanged {
                backend,
                previous,
                current,
            } => {
                println!("  [{t:>5} ms] event: breaker of {backend}: {previous:?} -> {current:?}")
            }
            StatusEvent::BackendHealthChanged { backend, healthy } => {
                println!(
                    "  [{t:>5} ms] event: {backend} is now {}",
                    if healthy { "healthy" } else { "unhealthy" }
                )
            }
            StatusEvent::NetworkChanged { available } => {
                println!(
                    "  [{t:>5} ms] event: network {}",
                    if available {
                        "available"
                    } else {
                        "unavailable"
                    }
                )
            }
            StatusEvent::StorageRecovered { moved_to, reason } => {
                println!("  [{t:>5} ms] event: damaged database moved to {moved_to} ({reason})")
            }
            StatusEvent::CertificatePinMismatch { backend, host } => {
                println!("  [{t:>5} ms] event: certificate pin mismatch for {host} ({backend})")
            }
        }
        Ok(())
    }
}

/// The app's token store as an authenticator: a refresh POSTs the refresh token to the fleet's
/// token service through the same client (`skip_authentication`) and keeps the rotated pair.
struct Session {
    client: std::sync::Mutex<std::sync::Weak<RobustClient>>,
    tokens: std::sync::Mutex<(String, String)>,
}

#[async_trait::async_trait]
impl robust_api::Authenticator for Session {
    async fn credentials(
        &self,
        _scope: Option<String>,
    ) -> Result<std::collections::HashMap<String, String>, ApiError> {
        let access = self.tokens.lock().unwrap().0.clone();
        Ok([("authorization".to_string(), format!("Bearer {access}"))].into())
    }

    async fn refresh(
        &self,
        scope: Option<String>,
    ) -> Result<std::collections::HashMap<String, String>, ApiError> {
        let client = self
            .client
            .lock()
            .unwrap()
            .upgrade()
            .ok_or(ApiError::Cancelled {
                reason: "no client".into(),
            })?;
        let mut req = ApiRequest::new(robust_api::HttpMethod::Post, "/auth/token");
        req.body = Some(self.tokens.lock().unwrap().1.clone().into_bytes());
        req.skip_authentication = true;
        let body = client.request(req).await?.body;
        let field = |name| robust_api_fleet::json_str(&body, name).unwrap_or_default();
        *self.tokens.lock().unwrap() = (field("access_token"), field("refresh_token"));
        println!("  (the authenticator refreshed once; refresh token rotated)");
        self.credentials(scope).await
    }
}

/// Each user's token, for the scope the client asks about (never stored by the client).
struct Tokens;

impl robust_api::HeaderProvider for Tokens {
    fn headers_for(
        &self,
        _method: robust_api::HttpMethod,
        _path: String,
        scope: Option<String>,
    ) -> Result<std::collections::HashMap<String, String>, robust_api::ApiError> {
        let token = format!("Bearer token-of-{}", scope.as_deref().unwrap_or("nobody"));
        Ok([("authorization".to_string(), token)].into())
    }
}

fn print_status(title: &str, s: &ServiceStatus) {
    println!("\n== {title}");
    println!(
        "{:<24} {:>8} {:>10} {:>6} {:>9}  last error",
        "backend", "healthy", "breaker", "fails", "ewma ms"
    );
    for b in &s.backends {
        let breaker = match b.breaker_state {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        };
        let ewma = b
            .latency_ewma_ms
            .map_or("-".to_string(), |v| format!("{v:.1}"));
        let err = b.last_error.as_deref().unwrap_or("-");
        let err: String = err.chars().take(60).collect();
        println!(
            "{:<24} {:>8} {:>10} {:>6} {:>9}  {err}",
            b.url, b.healthy, breaker, b.consecutive_failures, ewma
        );
    }
    let c = &s.counters;
    println!(
        "preferred: {}   network: {}   requests {} retries {} failovers {} hedges {} budget-refusals {}",
        s.preferred_backend.as_deref().unwrap_or("none (all breakers open)"),
        if s.network_available { "up" } else { "down" },
        c.requests,
        c.retries,
        c.failovers,
        c.hedges,
        c.budget_exhausted
    );
}

fn describe(outcome: &Result<robust_api::ApiResponse, ApiError>) -> String {
    match outcome {
        Ok(r) => format!("HTTP {} from {}", r.status, r.backend),
        Err(e) => e.to_string(),
    }
}

async fn traffic(client: &RobustClient, n: usize, label: &str) {
    let mut by_backend = std::collections::BTreeMap::<String, usize>::new();
    let mut errors = 0;
    let started = Instant::now();
    for i in 0..n {
        match client.get(format!("/api/items/{i}")).await {
            Ok(r) => *by_backend.entry(r.backend).or_default() += 1,
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    println!("  error: {e}");
                }
            }
        }
    }
    println!(
        "{label}: {n} GETs in {} ms, {errors} errors, answered by {by_backend:?}",
        started.elapsed().as_millis()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), ApiError> {
    let fleet = Fleet::start(3).await;
    let mut config = ClientConfig::new(fleet.urls());
    // Demo-sized timings (defaults are the production ones: 1 s backoff base, 30 s open breakers).
    config.retry.base_delay_ms = 50;
    config.retry.max_delay_ms = 400;
    config.breaker.open_ms = 1_500;
    config.health.interval_ms = 1_000;
    config.retry.hedge_after_ms = Some(150);
    // The offline queue needs a folder that outlives the client (the app's files directory on a
    // phone); the demo owns a temporary one.
    let storage = tempfile::tempdir().map_err(|e| ApiError::Storage {
        reason: format!("a temporary folder for the demo: {e}"),
    })?;
    config.storage_dir = Some(storage.path().to_string_lossy().into_owned());
    let client = RobustClient::new(config)?;
    client.add_status_listener(Arc::new(PrintEvents(Instant::now())));
    tokio::time::sleep(Duration::from_millis(200)).await;
    print_status(
        "started: 3 local backends, all healthy",
        &client.service_status(),
    );

    traffic(&client, 50, "normal traffic").await;

    println!(
        "\n>> killing backend 0 ({}): connections refused from now on",
        fleet.urls()[0]
    );
    fleet.server(0).set_fault(Fault::Down).await;
    traffic(&client, 50, "primary down").await;
    print_status(
        "after the primary died: failover, its breaker OPEN",
        &client.service_status(),
    );

    println!(
        "\n>> backend 1 turns into a black hole (accepts, never answers): hedging after 150 ms"
    );
    fleet.server(1).set_fault(Fault::BlackHole).await;
    let t = Instant::now();
    let r = client.get("/api/slow-path".into()).await?;
    println!(
        "GET answered by {} after {} ms ({} attempts)",
        r.backend,
        t.elapsed().as_millis(),
        r.attempts
    );
    fleet.server(1).set_fault(Fault::None).await;

    println!(
        "\n>> a POST without an idempotency key against a 503 is sent once, never blindly retried"
    );
    fleet.server(2).set_fault(Fault::Status(503)).await;
    fleet.server(1).set_fault(Fault::Status(503)).await;
    let before = fleet.total_hits();
    let outcome = client
        .post_json("/api/orders".into(), r#"{"sku":42}"#.into())
        .await;
    println!(
        "POST -> {}; server hits for it: {}",
        describe(&outcome),
        fleet.total_hits() - before
    );
    let mut keyed = ApiRequest::post_json("/api/orders", r#"{"sku":42}"#);
    keyed.idempotency_key = Some("order-42".into());
    let before = fleet.total_hits();
    let outcome = client.request(keyed).await;
    println!(
        "POST with Idempotency-Key -> {}; server hits for it: {}",
        describe(&outcome),
        fleet.total_hits() - before
    );
    fleet.server(1).set_fault(Fault::None).await;
    fleet.server(2).set_fault(Fault::None).await;

    println!(
        "\n>> backend 0 comes back; the health probe finds it when its breaker allows a trial"
    );
    fleet.server(0).set_fault(Fault::None).await;
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    traffic(&client, 50, "after recovery").await;
    print_status(
        "backend 0 probed: HALF_OPEN -> CLOSED, preferred again",
        &client.service_status(),
    );

    println!(
        "\n>> a resumable upload (tus 1.0, the fleet's /tus/files), marked Wi-Fi only, on a metered network"
    );
    let clip = storage.path().join("clip.mp4");
    std::fs::write(&clip, vec![7u8; 3 << 20]).map_err(|e| ApiError::Storage {
        reason: format!("writing the demo's clip: {e}"),
    })?;
    client.set_network_metered(true);
    let mut upload = UploadRequest::new("/tus/files", clip.to_string_lossy());
    upload.unmetered_only = true;
    upload.fields.insert("title".into(), "Demo clip".into());
    let uploader = client.clone();
    let call = tokio::spawn(async move { uploader.upload_file(upload, None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in client.pending_uploads()? {
        println!(
            "metered: upload {} waits, {} of {} bytes confirmed",
            &p.id[..8],
            p.confirmed_bytes,
            p.total_bytes
        );
    }
    for s in fleet.servers() {
        s.tus_corrupt_next_patches(1); // the next chunk arrives damaged: its checksum fails
    }
    client.set_network_metered(false);
    let done = call.await.map_err(|e| ApiError::Internal {
        reason: format!("the demo's upload task: {e}"),
    })??;
    let mismatches: u64 = fleet.servers().iter().map(|s| s.tus_mismatches()).sum();
    println!(
        "unmetered: it went out by itself -> HTTP {} from {}; chunks rejected by their checksum \
         (460) and sent again: {mismatches}",
        done.status, done.backend
    );
    for s in fleet.servers() {
        s.tus_corrupt_next_patches(0);
    }

    println!("\n>> the app reports the network gone: nothing is sent; reads come from the cache, writes are queued");
    client.set_network_available(false);
    match client.get("/api/items/1".into()).await {
        Ok(r) => println!(
            "GET /api/items/1 -> HTTP {} from_cache={} stale={} (age {} ms)",
            r.status,
            r.from_cache,
            r.stale,
            r.age_ms.unwrap_or(0)
        ),
        Err(e) => println!("GET /api/items/1 -> {e}"),
    }
    match client.get("/api/never-fetched".into()).await {
        Err(e) => println!("GET /api/never-fetched -> {e}"),
        Ok(_) => println!("GET /api/never-fetched unexpectedly succeeded"),
    }
    let mut like = ApiRequest::post_json("/api/likes", r#"{"item":1}"#);
    like.offline = Some(robust_api::OfflinePolicy::Queue);
    let queued = client.request(like).await?;
    println!(
        "POST /api/likes with OfflinePolicy::Queue -> HTTP {} queued as {:?}; queue pending: {}",
        queued.status,
        queued.queued.map(|id| id.0),
        client.service_status().queue.pending
    );
    client.set_network_available(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "network back: queue pending {}, delivered {}",
        client.service_status().queue.pending,
        client.service_status().queue.delivered
    );
    print_status(
        "network back: every backend probed at once",
        &client.service_status(),
    );

    println!(
        "\n>> two users on one phone: each sees only their own cached data; logout forgets it"
    );
    client.set_header_provider(Arc::new(Tokens));
    let me = || {
        let mut r = ApiRequest::get("/cache/me");
        r.query.push(robust_api::QueryParam {
            name: "cc".into(),
            value: "max-age=600".into(),
        });
        r
    };
    for user in ["alice", "alice", "bob", "alice"] {
        client.set_user_scope(Some(user.into()));
        let r = client.request(me()).await?;
        println!(
            "{user:>5}: GET /cache/me -> HTTP {} from_cache={}",
            r.status, r.from_cache
        );
    }
    client.clear_user_data("alice".into())?;
    let mut cached_only = me();
    cached_only.cache = Some(robust_api::CachePolicy::CacheOnly);
    println!(
        "after clear_user_data(\"alice\"): her CacheOnly read -> {}",
        describe(&client.request(cached_only).await)
    );
    client.set_user_scope(None);

    println!("\n>> every backend fails; once the breakers are open, calls fail fast; then the user taps retry");
    fleet.set_fault_all(Fault::Status(500)).await;
    for i in 0..6 {
        let _ = client.get(format!("/api/orders/{i}")).await;
    }
    let t = Instant::now();
    match client.get("/api/orders/new".into()).await {
        Err(e) => println!("GET -> {e} (in {} us)", t.elapsed().as_micros()),
        Ok(r) => println!("GET unexpectedly answered HTTP {}", r.status),
    }
    fleet.set_fault_all(Fault::None).await;
    client.reset_circuit_breakers();
    let r = client.get("/api/items/1".into()).await?;
    println!(
        "after reset_circuit_breakers(): GET -> HTTP {} from {}",
        r.status, r.backend
    );

    println!("\n>> the access token expires while 10 calls are in flight: one refresh, each call re-sent once");
    let session = Arc::new(Session {
        client: std::sync::Mutex::new(Arc::downgrade(&client)),
        tokens: std::sync::Mutex::new(fleet.tokens().issue()),
    });
    client.set_authenticator(session);
    client.get("/private/warm".into()).await?;
    fleet.tokens().expire();
    let calls = (0..10).map(|i| client.get(format!("/private/items/{i}")));
    let answers = futures_util::future::join_all(calls).await;
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    println!(
        "{ok}/10 succeeded; refreshes at the token service: {}, reused refresh tokens: {}",
        fleet.tokens().refreshes(),
        fleet.tokens().reused()
    );
    print_status("final", &client.service_status());
    client.shutdown();
    Ok(())
}
