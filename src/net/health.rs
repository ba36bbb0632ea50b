//! Background health probes: `GET <backend><health_path>` on every backend at start and every
//! `health_check_interval`, and on an OPEN backend as soon as its breaker allows a trial. A probe goes
//! through the breaker like a request (it may be the HALF_OPEN trial) and feeds the latency EWMA.
//! Nothing is probed while the app reports it is offline, nor (unless `health.in_background`) while
//! it is in the background; coming back online or to the foreground probes everything at once.

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
    let mut conditions = p.conditions();
    loop {
        if !may_probe(&p, &conditions.borrow_and_update()) {
            // Offline or in the background: no timer at all, wait for the app to report a change.
            if conditions.changed().await.is_err() {
                return;
            }
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
            _ = conditions.changed() => {}
        }
    }
}

/// Probes go out online, and in the background only if configured.
fn may_probe(p: &Network, c: &super::Conditions) -> bool {
    c.online && (!c.background() || p.settings.probe_in_background)
}

/// A probe reads at most this much of the answer (its status and a small JSON body).
const PROBE_BODY_BYTES: u64 = 4096;

/// What a 2xx health answer's body says about the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reported {
    /// `ok`/`healthy`/`up`/`pass`, or nothing usable (no JSON, no status field, a value not
    /// known): the 2xx decides.
    Healthy,
    /// `degraded`/`warn`: healthy, but ranked after the healthy backends.
    Degraded,
    /// `down`/`unhealthy`/`error`/`fail`: unhealthy, whatever the HTTP status.
    Down(String),
}

/// Reads the health status from a (bounded) probe body: a JSON object whose `status` (or
/// `state`, `health`) field is a string, compared case-insensitively. Anything else —
/// plain text, a cut-off body, another shape — is [`Reported::Healthy`]: the body never fails a
/// probe by being unreadable.
pub(crate) fn read_health_body(body: &[u8]) -> Reported {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return Reported::Healthy;
    };
    let status = ["status", "state", "health"]
        .iter()
        .find_map(|k| map.get(*k).and_then(serde_json::Value::as_str));
    let Some(status) = status else {
        return Reported::Healthy;
    };
    match status.trim().to_ascii_lowercase().as_str() {
        "degraded" | "warn" | "warning" => Reported::Degraded,
        s @ ("down" | "unhealthy" | "error" | "fail" | "failed" | "critical") => {
            Reported::Down(s.to_string())
        }
        _ => Reported::Healthy,
    }
}

async fn probe(p: Arc<Network>, i: usize) {
    if !may_probe(&p, &p.current_conditions()) {
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
        Ok(r) if (200..300).contains(&r.status) => match read_health_body(&r.body) {
            Reported::Healthy => {
                p.backends.set_degraded(i, false);
                permit.success(started.elapsed())
            }
            Reported::Degraded => {
                p.backends.set_degraded(i, true);
                permit.success(started.elapsed())
            }
            Reported::Down(s) => {
                p.backends.set_degraded(i, false);
                permit.failure(
                    format!("health probe answered HTTP {} reporting {s:?}", r.status),
                    true,
                )
            }
        },
        // A 4xx (429 rate limiting, 401/404 on the probe path) says the backend is up and
        // answering: breakers never count a 4xx, probes included.
        Ok(r) if (400..500).contains(&r.status) => {
            permit.neutral(format!("health probe answered HTTP {}", r.status))
        }
        Ok(r) => permit.failure(format!("health probe answered HTTP {}", r.status), true),
        Err(e) => permit.unreachable(format!("health probe: {e}"), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_bodies_are_read_by_their_status_field() {
        let cases: &[(&str, Reported)] = &[
            (r#"{"status":"ok"}"#, Reported::Healthy),
            (r#"{"status":"UP","checks":[]}"#, Reported::Healthy),
            (r#"{"status":"healthy"}"#, Reported::Healthy),
            (r#"{"status":"pass"}"#, Reported::Healthy),
            (r#"{"status":"degraded"}"#, Reported::Degraded),
            (r#"{"state":"Degraded"}"#, Reported::Degraded),
            (r#"{"status":"warn"}"#, Reported::Degraded),
            (r#"{"status":"down"}"#, Reported::Down("down".into())),
            (
                r#"{"status":" Unhealthy "}"#,
                Reported::Down("unhealthy".into()),
            ),
            (r#"{"health":"error"}"#, Reported::Down("error".into())),
            (r#"{"status":"fail"}"#, Reported::Down("fail".into())),
        ];
        for (body, want) in cases {
            assert_eq!(&read_health_body(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn an_unreadable_or_unknown_health_body_leaves_the_status_code_to_decide() {
        for body in [
            &b"ok"[..],
            b"",
            b"<html>down</html>",
            br#"{"status":"down""#, // cut off at the read bound
            br#"["down"]"#,
            br#""down""#,
            br#"{"status":7}"#,
            br#"{"status":{"status":"down"}}"#,
            br#"{"message":"down"}"#,
            br#"{"status":"maintenance-window"}"#,
            b"\xff\xfe\x00",
        ] {
            assert_eq!(read_health_body(body), Reported::Healthy, "{body:?}");
        }
        // Deeply nested garbage is refused by serde_json's recursion limit, not a stack overflow.
        let deep = "[".repeat(4000);
        assert_eq!(read_health_body(deep.as_bytes()), Reported::Healthy);
    }
}
