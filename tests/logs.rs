//! The SDK's log records forwarded to the app (issue 15, item 3): they reach the listener, off
//! the runtime's workers, at the chosen level, scrubbed of a planted token. One test: the `log`
//! facade has one logger per process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_api::{
    clear_log_listener, set_log_listener, ApiError, AppState, ClientConfig, LogLevel, LogListener,
    LogRecord, RobustClient, StatusEvent, StatusListener,
};
use robust_api_fleet::{wait_until, Fleet};

const TOKEN: &str = "PLANTED-log-3b9e";

#[derive(Default)]
struct Lines {
    all: Mutex<Vec<(LogRecord, String)>>,
}

impl Lines {
    fn records(&self) -> Vec<LogRecord> {
        self.all
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.0.clone())
            .collect()
    }
}

impl LogListener for Lines {
    fn on_log(&self, record: LogRecord) -> Result<(), ApiError> {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        self.all.lock().unwrap().push((record, thread));
        Ok(())
    }
}

/// A status listener that fails with a text carrying the token: the SDK logs that failure.
struct Leaky;

impl StatusListener for Leaky {
    fn on_event(&self, _event: StatusEvent) -> Result<(), ApiError> {
        Err(ApiError::InvalidRequest {
            reason: format!("Authorization: Bearer {TOKEN} /x?access_token={TOKEN}"),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_reach_the_listener_scrubbed_and_off_the_workers() {
    let lines = Arc::new(Lines::default());
    assert!(set_log_listener(lines.clone(), LogLevel::Info));
    let fleet = Fleet::start(1).await;
    let client = RobustClient::new(ClientConfig::new(fleet.urls())).unwrap();
    client.add_status_listener(Arc::new(Leaky));
    client.set_app_state(AppState::Background); // an info record
    client.set_network_available(false); // a status event: the leaky listener fails, a warning
    wait_until("the warning", Duration::from_secs(5), || {
        lines
            .records()
            .iter()
            .any(|r| r.level == LogLevel::Warn && r.message.contains("status listener"))
    })
    .await;
    let records = lines.records();
    assert!(
        records
            .iter()
            .any(|r| r.level == LogLevel::Info && r.message.contains("Background")),
        "{records:#?}"
    );
    for (r, thread) in lines.all.lock().unwrap().iter() {
        assert!(!r.message.contains(TOKEN), "{r:?}");
        assert!(
            r.target.starts_with("robust_api"),
            "only the SDK's records: {r:?}"
        );
        assert_eq!(thread, "robust-api-logs");
        assert!(r.at_ms > 0);
    }
    let warning = records
        .iter()
        .find(|r| r.message.contains("status listener"))
        .unwrap();
    assert!(warning.message.contains("REDACTED"), "{warning:?}");

    // A higher level filters; `None` stops.
    assert!(set_log_listener(lines.clone(), LogLevel::Error));
    let before = lines.records().len();
    client.set_app_state(AppState::Foreground);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        lines.records().len(),
        before,
        "an info record is below Error"
    );
    clear_log_listener();
    client.set_network_available(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(lines.records().len(), before);
    assert_eq!(client.service_status().counters.log_records_dropped, 0);
    client.shutdown();
}
