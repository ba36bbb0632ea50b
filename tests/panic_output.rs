//! A panic on one of the client's threads is contained and logged, never printed by the default
//! panic hook (stderr is where a host app looks for crashes); panics on the app's own threads
//! still reach the app's hook. Its own test binary: the panic hook is process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use robust_api::{ApiError, ClientConfig, RobustClient, StatusEvent, StatusListener};

static APP_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);
static HEARD: AtomicUsize = AtomicUsize::new(0);

struct Panicking;

impl StatusListener for Panicking {
    fn on_event(&self, _event: StatusEvent) -> Result<(), ApiError> {
        HEARD.fetch_add(1, Ordering::SeqCst);
        panic!("a listener bug");
    }
}

#[test]
fn panics_on_client_threads_are_logged_not_printed() {
    // The app's hook, installed before any client exists (as an app's crash reporter would be).
    std::panic::set_hook(Box::new(|_| {
        APP_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
    }));
    let client = RobustClient::new(ClientConfig::new(vec!["http://127.0.0.1:9".into()])).unwrap();
    client.add_status_listener(Arc::new(Panicking));
    client.set_network_available(false);
    client.set_network_available(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while HEARD.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        HEARD.load(Ordering::SeqCst) >= 2,
        "the listener ran (and panicked) twice"
    );
    assert_eq!(
        APP_HOOK_CALLS.load(Ordering::SeqCst),
        0,
        "no client-thread panic reached the app's hook"
    );
    client.shutdown();
    // The app's own panics still reach its hook.
    let r = std::panic::catch_unwind(|| panic!("the app's own bug"));
    assert!(r.is_err());
    assert_eq!(APP_HOOK_CALLS.load(Ordering::SeqCst), 1);
}
