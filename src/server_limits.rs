//! Process and connection limits of the HTTP server (issue 8, defect 2): the file-descriptor
//! limit is raised to the hard limit, and the connection cap is chosen below it, so that a
//! crowd of idle or stalled clients makes the server stop *accepting* for a moment instead of
//! failing with `Too many open files` on the store, the logs and every check.

use crate::config::Settings;

/// Descriptors kept back from the connection cap: the store's pool, SQLite's WAL and shm
/// files, the GeoIP file, logs, the blocking pool's work and a margin.
const RESERVED_FDS: u64 = 256;

/// Connections per worker at most, whatever the limit (actix' own default).
const MAX_PER_WORKER: usize = 25_000;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error.cause = %err, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection cap per worker: `http_max_connections` split over the workers, or, when it
/// is 0, the descriptor limit less a reserve for everything else the process opens.
pub fn max_connections_per_worker(settings: &Settings, workers: usize, nofile: u64) -> usize {
    let workers = workers.max(1);
    let total = match settings.http.max_connections {
        Some(total) => total.get(),
        None => usize::try_from(nofile.saturating_sub(RESERVED_FDS).max(64)).unwrap_or(usize::MAX),
    };
    (total / workers).clamp(1, MAX_PER_WORKER)
}

/// The number of workers actix will start for these settings.
pub fn worker_count(settings: &Settings) -> usize {
    settings
        .server
        .workers
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_below_the_descriptor_limit() {
        let settings = Settings::default();
        assert_eq!(max_connections_per_worker(&settings, 2, 20_000), 9_872);
        assert_eq!(max_connections_per_worker(&settings, 1, 100), 64);
        let mut fixed = Settings::default();
        fixed.http.max_connections = std::num::NonZeroUsize::new(1_000);
        assert_eq!(max_connections_per_worker(&fixed, 4, 20_000), 250);
    }
}
