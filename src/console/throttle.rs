//! The login throttle: failed logins counted in memory, per client address and per account
//! name, never in the store (no client address is ever stored). After
//! `console_login_max_failures` failures within `console_login_lockout_secs`, that key is
//! locked out until `console_login_lockout_secs` after its last failure.
//!
//! Attempts in flight count against the limit too, so a burst of parallel guesses cannot
//! slip past it while their password hashes are being checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered; beyond it the least-failed unlocked keys are forgotten first.
const MAX_KEYS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Client(IpAddr),
    Account(String),
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    in_flight: u32,
    window_start: Instant,
    last_failure: Instant,
}

/// Failed-login bookkeeping shared by every worker of a process.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    lockout: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// A login attempt admitted by the throttle; hand it back with [`LoginThrottle::finish`].
#[derive(Debug)]
pub struct Attempt {
    keys: Vec<Key>,
}

/// The outcome of a finished attempt, as far as the throttle is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The password was right.
    Succeeded,
    /// The password or name was wrong, and the keys are still open.
    Failed,
    /// The password or name was wrong, and this failure locked a key.
    FailedAndLocked,
}

impl LoginThrottle {
    /// A throttle allowing `max_failures` failures per key within `lockout`.
    pub fn new(max_failures: u32, lockout: Duration) -> LoginThrottle {
        LoginThrottle {
            max_failures: max_failures.max(1),
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(client: Option<IpAddr>, account: &str) -> Vec<Key> {
        let mut keys = vec![Key::Account(account.trim().to_ascii_lowercase())];
        if let Some(ip) = client {
            keys.push(Key::Client(ip));
        }
        keys
    }

    /// Admits an attempt, or says how long the client must wait.
    pub fn begin(&self, client: Option<IpAddr>, account: &str) -> Result<Attempt, Duration> {
        let now = Instant::now();
        let keys = Self::keys(client, account);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for key in &keys {
            if let Some(entry) = entries.get_mut(key) {
                if now.duration_since(entry.window_start) >= self.lockout
                    && now.duration_since(entry.last_failure) >= self.lockout
                {
                    entry.failures = 0;
                    entry.window_start = now;
                }
                if entry.failures >= self.max_failures {
                    let until = entry.last_failure + self.lockout;
                    wait = wait.max(until.saturating_duration_since(now));
                } else if entry.failures + entry.in_flight >= self.max_failures {
                    // Only attempts in flight fill the budget: retry once they are decided.
                    wait = wait.max(Duration::from_secs(1));
                }
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        if entries.len() + keys.len() > MAX_KEYS {
            self.prune(&mut entries, now);
        }
        for key in &keys {
            entries
                .entry(key.clone())
                .or_insert(Entry {
                    failures: 0,
                    in_flight: 0,
                    window_start: now,
                    last_failure: now,
                })
                .in_flight += 1;
        }
        Ok(Attempt { keys })
    }

    /// Records how an admitted attempt ended.
    pub fn finish(&self, attempt: Attempt, succeeded: bool) -> Finished {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut locked = false;
        for key in &attempt.keys {
            let Some(entry) = entries.get_mut(key) else {
                continue;
            };
            entry.in_flight = entry.in_flight.saturating_sub(1);
            if succeeded {
                // A right password clears the account's count, not the client's: one valid
                // account must not reset the budget for guessing at others.
                if matches!(key, Key::Account(_)) {
                    entry.failures = 0;
                }
            } else {
                entry.failures += 1;
                entry.last_failure = now;
                if entry.failures == self.max_failures {
                    locked = true;
                }
            }
        }
        entries.retain(|_, e| e.failures > 0 || e.in_flight > 0);
        match (succeeded, locked) {
            (true, _) => Finished::Succeeded,
            (false, true) => Finished::FailedAndLocked,
            (false, false) => Finished::Failed,
        }
    }

    /// Forgets an attempt that was never decided (the store failed): it counts neither way.
    pub fn abandon(&self, attempt: Attempt) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in &attempt.keys {
            if let Some(entry) = entries.get_mut(key) {
                entry.in_flight = entry.in_flight.saturating_sub(1);
            }
        }
        entries.retain(|_, e| e.failures > 0 || e.in_flight > 0);
    }

    fn prune(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        entries.retain(|_, e| e.in_flight > 0 || now.duration_since(e.last_failure) < self.lockout);
        if entries.len() >= MAX_KEYS {
            // Still full of live keys: forget those furthest from a lockout first.
            let max = self.max_failures;
            entries.retain(|_, e| e.in_flight > 0 || e.failures + 1 >= max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn locks_a_client_after_the_limit_and_not_before() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        for i in 0..3 {
            let a = t.begin(ip(1), &format!("user{i}")).expect("open");
            let done = t.finish(a, false);
            assert_eq!(done == Finished::FailedAndLocked, i == 2);
        }
        assert!(t.begin(ip(1), "someone").is_err(), "client locked");
        assert!(t.begin(ip(2), "someone").is_ok(), "other clients are not");
    }

    #[test]
    fn locks_an_account_across_clients() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        for n in 1..=2 {
            let a = t.begin(ip(n), "Alice").unwrap();
            t.finish(a, false);
        }
        assert!(t.begin(ip(9), "alice").is_err());
    }

    #[test]
    fn in_flight_attempts_count() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        let _a = t.begin(ip(1), "x").unwrap();
        let _b = t.begin(ip(1), "x").unwrap();
        assert!(t.begin(ip(1), "x").is_err());
    }

    #[test]
    fn success_clears_the_account_and_lockout_expires() {
        let t = LoginThrottle::new(2, Duration::from_millis(50));
        let a = t.begin(ip(1), "bob").unwrap();
        t.finish(a, false);
        let a = t.begin(ip(2), "bob").unwrap();
        t.finish(a, true);
        let a = t.begin(ip(3), "bob").unwrap();
        assert_eq!(t.finish(a, false), Finished::Failed);
        let a = t.begin(ip(3), "bob").unwrap();
        t.finish(a, false);
        assert!(t.begin(ip(4), "bob").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.begin(ip(4), "bob").is_ok());
    }
}
