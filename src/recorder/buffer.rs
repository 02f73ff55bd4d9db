//! The in-memory aggregate every check bumps: counts per (day, host, version, country).
//!
//! A check costs one hash, one uncontended mutex and, for a key already seen in this
//! interval, no allocation: keys are packed into a stack buffer and looked up as byte slices;
//! only a new key is copied to the heap. The map is split into shards chosen by the key's
//! hash, so workers bumping different keys rarely wait on each other, and the same key always
//! lands in the same shard (which is what lets the bound keep counting existing keys).

use chrono::{DateTime, NaiveDate, Utc};
use prometheus::IntCounter;
use std::collections::hash_map::{Entry, HashMap};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::models::version_checks::CheckCount;
use crate::domain::version::Version;
use crate::geoip::CountryCode;

/// How often, at most, dropped checks are reported in the log (they are always counted in
/// the metric): once a minute is enough to notice, and a full buffer must not flood the log.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Largest packed key: day (4) + country (2) + host length (1) + host (≤ 255) + version.
const KEY_CAPACITY: usize = 4 + 2 + 1 + 255 + 128;

/// Who checked, as recorded: the aggregate's key.
#[derive(Debug, Clone, Copy)]
pub struct CheckKey<'a> {
    /// UTC day of the check.
    pub day: NaiveDate,
    /// Referer hostname, normalised; `None` without a (usable) Referer.
    pub host: Option<&'a str>,
    /// The normalised running version.
    pub version: &'a Version,
    /// Country of the client address, when GeoIP is configured and knows it.
    pub country: Option<CountryCode>,
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    /// Microseconds since the Unix epoch.
    first_seen: i64,
    last_seen: i64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// One shard: its keys, plus two tallies kept under the same lock, so that `/metrics` can
/// report what is unflushed without the hot path touching any shared counter.
#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Tally>,
    /// Checks held in `map` (what a kill now would lose from this shard).
    pending: u64,
    /// Checks ever counted in through `record` (not `merge_back`), since start.
    recorded: u64,
}

/// One shard's lock on cache lines of its own: neighbouring locks sharing a line would make
/// workers that bump different shards still fight over that line.
#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

/// The bounded, sharded aggregate. Shared by every worker (behind an `Arc`).
pub struct CheckBuffer {
    shards: Box<[PaddedShard]>,
    keys: AtomicUsize,
    max_keys: usize,
    dropped: IntCounter,
    /// Seconds since `created` of the last drop warning, `u64::MAX` before the first.
    last_drop_warning: AtomicU64,
    created: Instant,
    /// Checks taken out by `take` and not yet reported written (`flushed`) or put back.
    in_flight: AtomicU64,
}

impl CheckBuffer {
    /// An empty buffer holding at most `max_keys` distinct keys, with `shards` locks
    /// (rounded up to a power of two). Checks dropped at the bound are added to `dropped`.
    pub fn new(max_keys: usize, shards: usize, dropped: IntCounter) -> CheckBuffer {
        let shards = shards.max(1).next_power_of_two();
        CheckBuffer {
            shards: (0..shards)
                .map(|_| PaddedShard(Mutex::new(Shard::default())))
                .collect(),
            keys: AtomicUsize::new(0),
            max_keys,
            dropped,
            last_drop_warning: AtomicU64::new(u64::MAX),
            created: Instant::now(),
            in_flight: AtomicU64::new(0),
        }
    }

    /// A shard count that keeps contention low on this machine: a few per core.
    pub fn default_shards() -> usize {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cores * 4).clamp(8, 256)
    }

    /// Counts one check seen `at`. Returns `false` when the buffer is full and the key is
    /// new, in which case the check is dropped (and counted as dropped).
    pub fn record(&self, key: CheckKey<'_>, at: DateTime<Utc>) -> bool {
        let mut packed = [0u8; KEY_CAPACITY];
        let len = pack_key(&mut packed, key);
        let micros = at.timestamp_micros();
        let tally = Tally {
            count: 1,
            first_seen: micros,
            last_seen: micros,
        };
        self.add(&packed[..len], tally, true)
    }

    /// Distinct keys held now.
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// True when nothing is waiting to be flushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most distinct keys held.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Checks dropped at the bound since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Checks counted and not yet written: held in the shards plus taken by a flush still
    /// in progress. Read at scrape time; a check moving between the two during the read can
    /// be counted twice, never missed, so it stays an upper bound on what a kill loses.
    pub fn unflushed(&self) -> u64 {
        let held: u64 = self.shards.iter().map(|s| self.lock(s).pending).sum();
        held + self.in_flight.load(Ordering::Acquire)
    }

    /// Checks counted in through `record` since start.
    pub fn recorded(&self) -> u64 {
        self.shards.iter().map(|s| self.lock(s).recorded).sum()
    }

    /// A flush of `checks` (from one `take`) is over: written, or put back with `merge_back`.
    pub fn flush_done(&self, checks: u64) {
        self.in_flight.fetch_sub(checks, Ordering::AcqRel);
    }

    fn lock<'a>(&self, shard: &'a PaddedShard) -> std::sync::MutexGuard<'a, Shard> {
        // A panic while holding the lock cannot leave a half-written tally behind (each
        // update is a few plain stores), so the data is still good.
        shard.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes everything out, leaving the buffer empty, sorted by key so that every process
    /// writes rows in the same order (concurrent flushes then cannot deadlock). The checks
    /// taken count as in flight until [`CheckBuffer::flush_done`].
    pub fn take(&self) -> Vec<CheckCount> {
        let mut rows = Vec::new();
        for shard in &*self.shards {
            let mut guard = self.lock(shard);
            let taken = std::mem::take(&mut guard.map);
            // Moved to in-flight before the shard's count drops, so no reader misses them.
            self.in_flight
                .fetch_add(std::mem::take(&mut guard.pending), Ordering::AcqRel);
            drop(guard);
            self.keys.fetch_sub(taken.len(), Ordering::Relaxed);
            for (key, tally) in &taken {
                match unpack(key, *tally) {
                    Some(row) => rows.push(row),
                    // Cannot happen for keys `pack_key` made; if it did, the checks are gone
                    // and must not stay counted as in flight.
                    None => {
                        self.in_flight.fetch_sub(tally.count, Ordering::AcqRel);
                    }
                }
            }
        }
        rows.sort_by(|a, b| {
            (a.day, &a.host, &a.version, &a.country).cmp(&(b.day, &b.host, &b.version, &b.country))
        });
        rows
    }

    /// Puts a batch that could not be written back, to be retried with the next flush.
    /// Counts add up with what arrived meanwhile; keys beyond the bound are dropped (and
    /// counted), exactly as new checks would be.
    pub fn merge_back(&self, rows: Vec<CheckCount>) {
        for row in rows {
            let mut packed = [0u8; KEY_CAPACITY];
            let Some(len) = pack_row(&mut packed, &row) else {
                continue;
            };
            let tally = Tally {
                count: row.count,
                first_seen: row.first_seen.and_utc().timestamp_micros(),
                last_seen: row.last_seen.and_utc().timestamp_micros(),
            };
            self.add(&packed[..len], tally, false);
        }
    }

    /// Adds `tally` under `key`; `recorded` marks a new check (not a batch put back).
    fn add(&self, key: &[u8], tally: Tally, recorded: bool) -> bool {
        let shard = (shard_hash(key) as usize) & (self.shards.len() - 1);
        let mut guard = self.lock(&self.shards[shard]);
        let shard = &mut *guard;
        if let Some(existing) = shard.map.get_mut(key) {
            existing.add(tally);
        } else {
            if self.keys.fetch_add(1, Ordering::Relaxed) >= self.max_keys {
                self.keys.fetch_sub(1, Ordering::Relaxed);
                drop(guard);
                self.note_dropped(tally.count);
                return false;
            }
            match shard.map.entry(key.into()) {
                Entry::Occupied(mut e) => e.get_mut().add(tally),
                Entry::Vacant(e) => {
                    e.insert(tally);
                }
            }
        }
        // Plain adds under the lock already held: the hot path gains no shared write.
        shard.pending += tally.count;
        shard.recorded += u64::from(recorded);
        true
    }

    fn note_dropped(&self, checks: u64) {
        self.dropped.inc_by(checks);
        let now = self.created.elapsed().as_secs();
        let last = self.last_drop_warning.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= DROP_WARNING_EVERY.as_secs();
        if due
            && self
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                checks.dropped_total = self.dropped.get(),
                buffer.max_keys = self.max_keys,
                "version-check buffer is full (is the store down?); checks with new keys are \
                 being dropped and counted in version_app_check_records_dropped_total"
            );
        }
    }
}

/// Picks a shard: a cheap multiply-xorshift over 8-byte words. Inside a shard the map keeps
/// std's keyed SipHash, because keys (Referer hosts) are chosen by clients and a predictable
/// hash there would let them pile keys into one bucket chain; here the worst a client can do
/// is make keys share a lock.
fn shard_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = (key.len() as u64).wrapping_mul(K);
    for chunk in key.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        hash = (hash ^ u64::from_le_bytes(word)).wrapping_mul(K);
        hash ^= hash >> 32;
    }
    hash
}

/// Layout: day (i32 LE, days from CE) | country (2 bytes, zero when none) | host length (1) |
/// host | version text. Lengths are bounded by the parsers (host ≤ 253, version ≤ 64).
fn pack_key(buf: &mut [u8; KEY_CAPACITY], key: CheckKey<'_>) -> usize {
    use chrono::Datelike;
    let host = key.host.filter(|h| h.len() <= 255).unwrap_or("");
    buf[..4].copy_from_slice(&key.day.num_days_from_ce().to_le_bytes());
    buf[4..6].copy_from_slice(
        key.country
            .as_ref()
            .map_or(&[0u8, 0][..], |c| c.as_str().as_bytes()),
    );
    buf[6] = host.len() as u8;
    let host_end = 7 + host.len();
    buf[7..host_end].copy_from_slice(host.as_bytes());
    let mut rest = &mut buf[host_end..];
    let room = rest.len();
    // The version is at most 64 characters; if a longer one ever got here it is cut rather
    // than allowed to overflow the buffer.
    let _ = write!(rest, "{}", key.version);
    host_end + (room - rest.len())
}

fn pack_row(buf: &mut [u8; KEY_CAPACITY], row: &CheckCount) -> Option<usize> {
    use chrono::Datelike;
    let version = row.version.as_bytes();
    if row.host.len() > 255 || 7 + row.host.len() + version.len() > KEY_CAPACITY {
        return None;
    }
    buf[..4].copy_from_slice(&row.day.num_days_from_ce().to_le_bytes());
    match row.country.as_bytes() {
        [a, b] => buf[4..6].copy_from_slice(&[*a, *b]),
        _ => buf[4..6].copy_from_slice(&[0, 0]),
    }
    buf[6] = row.host.len() as u8;
    let host_end = 7 + row.host.len();
    buf[7..host_end].copy_from_slice(row.host.as_bytes());
    buf[host_end..host_end + version.len()].copy_from_slice(version);
    Some(host_end + version.len())
}

fn unpack(key: &[u8], tally: Tally) -> Option<CheckCount> {
    let day =
        NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(key.get(..4)?.try_into().ok()?))?;
    let country = match key.get(4..6)? {
        [0, 0] => String::new(),
        code => std::str::from_utf8(code).ok()?.to_owned(),
    };
    let host_len = usize::from(*key.get(6)?);
    let host = std::str::from_utf8(key.get(7..7 + host_len)?)
        .ok()?
        .to_owned();
    let version = std::str::from_utf8(key.get(7 + host_len..)?)
        .ok()?
        .to_owned();
    let time = |micros| DateTime::<Utc>::from_timestamp_micros(micros).map(|t| t.naive_utc());
    Some(CheckCount {
        day,
        host,
        version,
        country,
        count: tally.count,
        first_seen: time(tally.first_seen)?,
        last_seen: time(tally.last_seen)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn counter() -> IntCounter {
        IntCounter::new("dropped", "dropped checks").unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
    }

    fn key<'a>(host: Option<&'a str>, version: &'a Version, country: Option<&str>) -> CheckKey<'a> {
        CheckKey {
            day: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            host,
            version,
            country: country.and_then(CountryCode::parse),
        }
    }

    #[test]
    fn same_key_adds_up_and_keeps_first_and_last_seen() {
        let buffer = CheckBuffer::new(10, 4, counter());
        let v = Version::parse("16.7.2-ee").unwrap();
        assert!(buffer.record(key(Some("gitlab.example.com"), &v, Some("de")), at(5)));
        assert!(buffer.record(key(Some("gitlab.example.com"), &v, Some("DE")), at(1)));
        assert!(buffer.record(key(Some("gitlab.example.com"), &v, Some("DE")), at(9)));
        assert!(buffer.record(key(None, &v, None), at(3)));
        assert_eq!(buffer.len(), 2);
        let rows = buffer.take();
        assert!(buffer.is_empty());
        assert_eq!(rows.len(), 2);
        // Sorted: no host ("") first.
        assert_eq!(rows[0].host, "");
        assert_eq!(rows[0].country, "");
        assert_eq!(rows[0].count, 1);
        let row = &rows[1];
        assert_eq!(
            (
                row.host.as_str(),
                row.version.as_str(),
                row.country.as_str(),
                row.count
            ),
            ("gitlab.example.com", "16.7.2", "DE", 3)
        );
        assert_eq!(row.first_seen, at(1).naive_utc());
        assert_eq!(row.last_seen, at(9).naive_utc());
        assert!(buffer.take().is_empty());
    }

    #[test]
    fn days_and_countries_are_separate_keys() {
        let buffer = CheckBuffer::new(10, 1, counter());
        let v = Version::parse("17.0.0").unwrap();
        let mut k = key(Some("a.example"), &v, Some("FR"));
        buffer.record(k, at(0));
        k.country = None;
        buffer.record(k, at(0));
        k.day = k.day.succ_opt().unwrap();
        buffer.record(k, at(0));
        assert_eq!(buffer.take().len(), 3);
    }

    #[test]
    fn bound_drops_new_keys_counts_them_and_keeps_counting_old_ones() {
        let dropped = counter();
        let buffer = CheckBuffer::new(2, 8, dropped.clone());
        let versions: Vec<Version> = (0..5).map(|i| Version::new(16, i, 0)).collect();
        for v in &versions {
            buffer.record(key(None, v, None), at(0));
        }
        assert_eq!(buffer.len(), 2);
        assert_eq!(dropped.get(), 3);
        // The kept keys still count.
        let kept: Vec<String> = buffer.take().into_iter().map(|r| r.version).collect();
        assert_eq!(kept.len(), 2);
        for v in &versions {
            buffer.record(key(None, v, None), at(0));
        }
        for v in &versions {
            buffer.record(key(None, v, None), at(0));
        }
        let rows = buffer.take();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.count == 2), "{rows:?}");
        assert_eq!(dropped.get(), 3 + 6);
        assert_eq!(buffer.dropped(), 9);
    }

    #[test]
    fn unflushed_counts_held_and_in_flight_checks_until_the_flush_is_done() {
        let buffer = CheckBuffer::new(100, 4, counter());
        let (a, b) = (
            Version::parse("17.0.0").unwrap(),
            Version::parse("17.1.0").unwrap(),
        );
        for _ in 0..3 {
            buffer.record(key(Some("a.example"), &a, None), at(10));
        }
        buffer.record(key(Some("b.example"), &b, None), at(11));
        assert_eq!((buffer.unflushed(), buffer.recorded()), (4, 4));
        let rows = buffer.take();
        // Taken by a flush that has not finished: still unflushed.
        assert_eq!(buffer.unflushed(), 4);
        buffer.record(key(Some("a.example"), &a, None), at(12));
        assert_eq!(buffer.unflushed(), 5);
        // The flush failed: the rows go back, and stop counting as in flight.
        buffer.merge_back(rows);
        buffer.flush_done(4);
        assert_eq!((buffer.unflushed(), buffer.recorded()), (5, 5));
        // The next flush commits them all.
        let rows = buffer.take();
        buffer.flush_done(rows.iter().map(|r| r.count).sum());
        assert_eq!((buffer.unflushed(), buffer.recorded()), (0, 5));
    }

    #[test]
    fn failed_batch_merges_back_within_the_bound() {
        let dropped = counter();
        let buffer = CheckBuffer::new(3, 4, dropped.clone());
        let a = Version::new(16, 0, 0);
        let b = Version::new(16, 1, 0);
        let c = Version::new(16, 2, 0);
        let d = Version::new(16, 3, 0);
        buffer.record(key(Some("x.example"), &a, None), at(10));
        buffer.record(key(Some("x.example"), &a, None), at(11));
        buffer.record(key(Some("x.example"), &b, None), at(12));
        let failed = buffer.take(); // the store was down: put it back
                                    // Meanwhile, new checks: one for an old key, two new keys.
        buffer.record(key(Some("x.example"), &a, None), at(20));
        buffer.record(key(Some("x.example"), &c, None), at(21));
        buffer.record(key(Some("x.example"), &d, None), at(22));
        assert_eq!(buffer.len(), 3);
        buffer.merge_back(failed);
        // a merges into its key; b is a fourth key and is dropped with its one check.
        assert_eq!(buffer.len(), 3);
        assert_eq!(dropped.get(), 1);
        let rows = buffer.take();
        let a_row = rows.iter().find(|r| r.version == "16.0.0").unwrap();
        assert_eq!(a_row.count, 3);
        assert_eq!(a_row.first_seen, at(10).naive_utc());
        assert_eq!(a_row.last_seen, at(20).naive_utc());
        let total: u64 = rows.iter().map(|r| r.count).sum();
        assert_eq!(total + dropped.get(), 6);
    }

    #[test]
    fn repeated_failures_lose_nothing_below_the_bound() {
        let buffer = CheckBuffer::new(100, 4, counter());
        let v = Version::new(18, 0, 0);
        for round in 0..5 {
            for _ in 0..10 {
                buffer.record(key(Some("h.example"), &v, Some("NL")), at(round));
            }
            let batch = buffer.take();
            buffer.merge_back(batch); // every flush fails
        }
        let rows = buffer.take();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 50);
        assert_eq!(buffer.dropped(), 0);
    }

    #[test]
    fn longest_inputs_fit_the_key() {
        let buffer = CheckBuffer::new(10, 1, counter());
        let host = "a".repeat(253);
        let v = Version::parse(&format!("1.2.3-{}", "r".repeat(58))).unwrap();
        buffer.record(key(Some(&host), &v, Some("SE")), at(0));
        let rows = buffer.take();
        assert_eq!(rows[0].host, host);
        assert_eq!(rows[0].version, v.to_string());
    }

    #[test]
    fn counts_are_exact_under_concurrency() {
        let buffer = std::sync::Arc::new(CheckBuffer::new(1000, 8, counter()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let buffer = buffer.clone();
                std::thread::spawn(move || {
                    let versions: Vec<Version> = (0..20).map(|i| Version::new(16, i, 0)).collect();
                    for i in 0..10_000usize {
                        let v = &versions[(i + t) % versions.len()];
                        buffer.record(key(Some("c.example"), v, None), at(0));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total: u64 = buffer.take().iter().map(|r| r.count).sum();
        assert_eq!(total, 40_000);
    }
}
