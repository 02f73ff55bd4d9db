//! Store faults the pool cannot see (issue 8, defect 6).
//!
//! - **The SQLite file deleted or replaced under a running server.** Open connections keep
//!   writing into the deleted inode, so submissions would be acknowledged into a file no one
//!   will ever open again, and the next start would silently create an empty store. The
//!   device and inode of the file are noted when the store opens, and every checkout compares
//!   them with what is at the path now: a mismatch refuses the request as "store unavailable"
//!   (503 + `Retry-After`), fails readiness, and logs an error once.
//! - **Recent faults** (disk full, I/O errors, lost connections) are remembered for
//!   [`FAULT_WINDOW`], so `/-/ready` reports not-ready while writes fail, even though a
//!   read-only probe would still succeed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The SQLite file at the configured path is not the one the server opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreFileError {
    /// Another file is at the path now.
    #[error("the store file {} was replaced", .0.display())]
    Replaced(PathBuf),
    /// Nothing is at the path now.
    #[error("the store file {} was deleted", .0.display())]
    Deleted(PathBuf),
}

/// How long a store fault keeps readiness failing.
pub const FAULT_WINDOW: Duration = Duration::from_secs(30);

/// Identity of the store file and the last fault.
#[derive(Debug, Default)]
pub struct StoreGuard {
    file: Option<(PathBuf, u64, u64)>,
    replaced_logged: AtomicBool,
    last_fault: Mutex<Option<(Instant, String)>>,
}

fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl StoreGuard {
    /// Notes the identity of the SQLite file at `path` as opened now.
    pub fn for_file(path: &str) -> StoreGuard {
        let path = PathBuf::from(path);
        StoreGuard {
            file: identity(&path).map(|(dev, ino)| (path, dev, ino)),
            ..StoreGuard::default()
        }
    }

    /// `Err` when the file at the path is no longer the one opened.
    pub fn check_file(&self) -> Result<(), StoreFileError> {
        let Some((path, dev, ino)) = &self.file else {
            return Ok(());
        };
        let err = match identity(path) {
            Some(now) if now == (*dev, *ino) => return Ok(()),
            Some(_) => StoreFileError::Replaced(path.clone()),
            None => StoreFileError::Deleted(path.clone()),
        };
        if !self.replaced_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                store.path = %path.display(),
                "{err} while the server runs: refusing requests until it is restarted \
                 (restore the file first, or nothing written since is reachable)"
            );
        }
        Err(err)
    }

    /// Remembers a fault that made the store unavailable.
    pub fn note_fault(&self, cause: &str) {
        if let Ok(mut last) = self.last_fault.lock() {
            *last = Some((Instant::now(), cause.to_string()));
        }
    }

    /// The last fault, when it happened within [`FAULT_WINDOW`].
    pub fn recent_fault(&self) -> Option<String> {
        let last = self.last_fault.lock().ok()?;
        let (at, cause) = last.as_ref()?;
        (at.elapsed() < FAULT_WINDOW).then(|| cause.clone())
    }
}
