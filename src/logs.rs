//! The SDK's `log` records, forwarded to the app (`set_log_listener`), so they reach Logcat,
//! `os_log` or the JS console: only this crate's records (target `robust_api…`), at or above the
//! chosen level, their text scrubbed of anything that looks like a credential
//! ([`crate::store::secrets::scrub`]), delivered on a thread of their own through a bounded
//! buffer (a slow listener loses records, counted in `StatusCounters.log_records_dropped`; the
//! thread that logs — often a runtime worker — never waits).
//!
//! The `log` facade has one logger per process, so this is process-wide: the forwarder is
//! installed on the first `set_log_listener` unless the process already has a logger (a Rust
//! app with its own, e.g. `env_logger`: then records go there and `set_log_listener` says so).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use crate::observe::Outbox;

/// Severity of a log record (and the lowest one a listener receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something unexpected the SDK recovered from.
    Warn,
    /// State changes (breakers, app state, recoveries).
    Info,
    /// Details for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }

    fn of(level: log::Level) -> Self {
        match level {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        }
    }
}

/// One log record of the SDK.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// Where it comes from (the Rust module path, e.g. `robust_api::net::select`).
    pub target: String,
    /// The message, scrubbed of credentials.
    pub message: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Implement this (in any binding language) to receive the SDK's log records; see
/// `set_log_listener`. Called on a thread of its own, in order. Do not block for long: records
/// beyond a buffer of 1 024 are dropped (and counted) rather than slowing the SDK down.
#[uniffi::export(with_foreign)]
pub trait LogListener: Send + Sync {
    /// One record.
    fn on_log(&self, record: LogRecord) -> Result<(), crate::error::ApiError>;
}

/// Log records buffered at most.
const LOG_BUFFER: usize = 1024;

/// The current listener's outbox (`None`: none set).
static OUTBOX: RwLock<Option<Outbox<LogRecord>>> = RwLock::new(None);
/// Was this crate's forwarder installed as the process's logger?
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn dropped_counter() -> &'static Arc<AtomicU64> {
    static DROPPED: OnceLock<Arc<AtomicU64>> = OnceLock::new();
    DROPPED.get_or_init(Arc::default)
}

/// Records dropped so far (process-wide) because the listener was too slow.
pub(crate) fn dropped() -> u64 {
    dropped_counter().load(Ordering::Relaxed)
}

struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        // `log::max_level()` is the listener's level (set with it).
        meta.target().starts_with("robust_api") && meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let guard = OUTBOX.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(outbox) = guard.as_ref() {
            outbox.push(LogRecord {
                level: LogLevel::of(record.level()),
                target: record.target().to_string(),
                message: crate::store::secrets::scrub(&record.args().to_string()),
                at_ms: crate::store::now_ms(),
            });
        }
    }

    fn flush(&self) {}
}

/// Routes the SDK's log records at `level` and above to `listener` (`clear_log_listener` stops).
/// Process-wide (the last call wins). Returns `false` if the process already had another logger
/// (a Rust app's own): then the records keep going there.
#[uniffi::export]
pub fn set_log_listener(listener: Arc<dyn LogListener>, level: LogLevel) -> bool {
    install(Some(listener), level)
}

/// Stops forwarding log records (the buffered ones are still delivered).
#[uniffi::export]
pub fn clear_log_listener() {
    install(None, LogLevel::Error);
}

fn install(listener: Option<Arc<dyn LogListener>>, level: LogLevel) -> bool {
    static FORWARDER: Forwarder = Forwarder;
    let installed = *INSTALLED.get_or_init(|| log::set_logger(&FORWARDER).is_ok());
    if !installed {
        return false;
    }
    let outbox = match listener {
        Some(l) => {
            let started = Outbox::start(
                "robust-api-logs",
                LOG_BUFFER,
                dropped_counter().clone(),
                move |r: LogRecord| {
                    // Not through `warn_on_listener_error`: that would log, and feed itself.
                    let _ = l.on_log(r);
                },
            );
            match started {
                Ok(o) => Some(o),
                Err(_) => return false,
            }
        }
        None => None,
    };
    let filter = if outbox.is_some() {
        level.filter()
    } else {
        log::LevelFilter::Off
    };
    let old = std::mem::replace(
        &mut *OUTBOX.write().unwrap_or_else(PoisonError::into_inner),
        outbox,
    );
    log::set_max_level(filter);
    if let Some(old) = old {
        old.close();
    }
    true
}
