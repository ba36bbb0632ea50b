//! Background health probes: `GET <backend><health_path>` on every backend at start and every
//! `health_check_interval`, and on an OPEN backend as soon as its breaker allows a trial. A probe goes
//! through the breaker like a request (it may be the HALF_OPEN trial) and feeds the latency EWMA.
//! Nothing is probed while the app reports it is offline; coming back online probes everything at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use tokio::task::JoinSet;

use super::transport::Outgoing;
use super::Network;
use crate::types::HttpMethod;

/// Runs until the task is aborted (client shutdown/drop).
pub(crate) async fn run(p: Arc<Network>) {
    let interval = p.settings.health_check_interval;
    loop {
        if !p.is_online() {
            p.backends.probe_wake.notified().await;
            continue;
        }
        let now = Instant::now();
        let mut probes = JoinSet::new();
        for i in 0..p.backends.len() {
            if p.backends
                .probe_due_at(i, interval)
                .is_none_or(|due| due <= now)
            {
                p.backends.mark_probed(i, now);
                probes.spawn(crate::runtime::contained(
                    "health probe",
                    probe(p.clone(), i),
                ));
            }
        }
        while probes.join_next().await.is_some() {}
        let next = (0..p.backends.len())
            .filter_map(|i| p.backends.probe_due_at(i, interval))
            .min()
            .unwrap_or_else(|| Instant::now() + interval);
        // Never spin: at least 10 ms between rounds even if a due time is already past.
        let next = next.max(Instant::now() + Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = p.backends.probe_wake.notified() => {}
        }
    }
}

/// A probe reads at most this much of the answer (only its status matters).
const PROBE_BODY_BYTES: u64 = 4096;

async fn probe(p: Arc<Network>, i: usize) {
    if !p.is_online() {
        return;
    }
    // A HALF_OPEN trial already out (a request took it): nothing to do this round.
    let Some(permit) = p.backends.acquire(i, Instant::now()) else {
        return;
    };
    let url = match crate::http::join_url(&permit.backend().url, &p.settings.health_path, &[]) {
        Ok(u) => u,
        Err(e) => return permit.failure(e.to_string(), true),
    };
    let headers = HeaderMap::new();
    let started = Instant::now();
    let out = Outgoing {
        method: HttpMethod::Get,
        url,
        headers: &headers,
        body: None,
        timeout: p
            .settings
            .request_timeout
            .min(p.settings.connect_timeout + Duration::from_secs(5)),
        max_body: PROBE_BODY_BYTES,
        truncate_body: true,
    };
    match p.transport.send(out).await {
        Ok(r) if (200..300).contains(&r.status) => permit.success(started.elapsed()),
        // A 4xx (429 rate limiting, 401/404 on the probe path) says the backend is up and
        // answering: breakers never count a 4xx, probes included.
        Ok(r) if (400..500).contains(&r.status) => {
            permit.neutral(format!("health probe answered HTTP {}", r.status))
        }
        Ok(r) => permit.failure(format!("health probe answered HTTP {}", r.status), true),
        Err(e) => permit.unreachable(format!("health probe: {e}"), true),
    }
}
