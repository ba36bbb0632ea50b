//! One client per storage folder: `<storage_dir>/robust-api.lock`, held with an exclusive
//! `flock(2)` until the client shuts down (or is dropped).
//!
//! Two clients on one folder would both replay the queue and send every entry twice; a second
//! client (another thread's, or another process's) is refused at construction with `Storage`
//! ("… already in use by another client"). The kernel releases the lock when its holder closes
//! the file or dies (SIGKILL included), so a crashed process never blocks the next start, and no
//! expiry has to be guessed (the alternative, leases on rows, would make a restarted app wait a
//! lease period before resending what its killed predecessor had claimed).
//!
//! `flock` locks belong to an open file description, so two clients in one process conflict too.
//! Not on non-Unix targets (the SDK's targets, Android and iOS, are Unix).

use std::fs::File;
use std::path::Path;

/// The lock file's name inside `storage_dir`.
pub(crate) const LOCK_FILE: &str = "robust-api.lock";

/// Held while the client lives; dropping it releases the folder.
#[derive(Debug)]
pub(crate) struct FolderLock {
    _file: File,
}

/// How long a held lock is retried before the folder counts as in use.
#[cfg(unix)]
const IN_USE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Why the folder could not be locked.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another client holds it.
    InUse,
    /// The lock file could not be created or locked.
    Io(std::io::Error),
}

impl FolderLock {
    /// Takes the folder's lock without waiting.
    pub(crate) fn acquire(dir: &Path) -> Result<FolderLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(LockError::Io)?;
        #[cfg(unix)]
        {
            use rustix::fs::{flock, FlockOperation};
            // A lock can be held for a moment by a process being spawned (between fork and exec
            // the child shares every open file description) or by a client being dropped on
            // another thread: retry for a short, bounded time before calling the folder in use.
            let deadline = std::time::Instant::now() + IN_USE_GRACE;
            loop {
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => break,
                    Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(rustix::io::Errno::WOULDBLOCK) => return Err(LockError::InUse),
                    Err(e) => return Err(LockError::Io(e.into())),
                }
            }
        }
        Ok(FolderLock { _file: file })
    }
}
