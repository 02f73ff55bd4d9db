//! How much sharding the recorder's buffer buys under contention (moved out of the unit tests
//! so that no test is ignored). Run with `cargo bench --bench buffer`. Best of three runs per
//! setting, so that a noisy moment on a shared machine does not decide; one thread is the
//! uncontended baseline.

use chrono::{NaiveDate, Utc};
use prometheus::IntCounter;
use std::time::Instant;
use version_app::domain::version::Version;
use version_app::recorder::{CheckBuffer, CheckKey};

fn main() {
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let hosts: Vec<String> = (0..300)
        .map(|i| format!("gitlab-{i}.example.com"))
        .collect();
    let versions: Vec<Version> = (0..40).map(|i| Version::new(17, i % 12, i / 12)).collect();
    let day = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
    let per_thread = 1_000_000usize;
    for threads in [1, cores] {
        for shards in [1, 8, 64] {
            let best = (0..3)
                .map(|_| {
                    let dropped = IntCounter::new("dropped", "dropped checks").unwrap();
                    let buffer = CheckBuffer::new(1_000_000, shards, dropped);
                    let started = Instant::now();
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (buffer, hosts, versions) = (&buffer, &hosts, &versions);
                            s.spawn(move || {
                                let now = Utc::now();
                                for i in 0..per_thread {
                                    let j = i.wrapping_mul(2_654_435_761).wrapping_add(t);
                                    let key = CheckKey {
                                        day,
                                        host: Some(&hosts[j % hosts.len()]),
                                        version: &versions[j % versions.len()],
                                        country: None,
                                    };
                                    buffer.record(key, now);
                                }
                            });
                        }
                    });
                    started.elapsed()
                })
                .min()
                .unwrap();
            let records = (threads * per_thread) as f64;
            println!(
                "threads={threads} shards={shards:2}: {:5.0} ns per record per thread, {:4.1} M records/s in all",
                best.as_nanos() as f64 * threads as f64 / records,
                records / best.as_secs_f64() / 1e6
            );
        }
    }
}
