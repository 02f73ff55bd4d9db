//! Speed of parsing and flattening a full-size Service Ping payload (moved out of the unit
//! tests so that no test is ignored). Run with `cargo bench --bench flatten`. Prints the
//! median of several batches, in thread CPU time where Linux provides it (other processes on
//! a busy machine then do not inflate the figure) and in wall time.

use serde_json::Value;
use version_app::domain::payload::{parse_payload, PayloadLimits};

const PAYLOAD_18_9: &[u8] = include_bytes!("../tests/fixtures/payload_18.9.0_generated.json");

fn main() {
    use std::time::Instant;

    /// This thread's user + system time in seconds (Linux), else None.
    fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    fn measure(rounds: u32, mut work: impl FnMut()) -> (f64, Option<f64>) {
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..5 {
            let (started, cpu_started) = (Instant::now(), cpu_seconds());
            for _ in 0..rounds {
                work();
            }
            wall.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds));
            if let (Some(a), Some(b)) = (cpu_started, cpu_seconds()) {
                cpu.push((b - a) * 1e6 / f64::from(rounds));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let cpu = (cpu.len() == 5).then(|| median(&mut cpu));
        (median(&mut wall), cpu)
    }

    let rounds = 300;
    let limits = PayloadLimits::default();
    let leaves = parse_payload(PAYLOAD_18_9, &limits).unwrap().metrics.len();
    let report = |label: &str, (wall, cpu): (f64, Option<f64>)| {
        let cpu = cpu.map_or_else(String::new, |cpu| format!(", {cpu:.0} µs CPU"));
        println!("{label:<44} {wall:>6.0} µs wall{cpu}");
    };

    println!(
        "payload {} bytes, {leaves} leaves, per payload:",
        PAYLOAD_18_9.len()
    );
    report(
        "parse_payload (streaming flatten + summary)",
        measure(rounds, || {
            std::hint::black_box(parse_payload(PAYLOAD_18_9, &limits).unwrap());
        }),
    );
    report(
        "serde_json::from_slice::<Value> alone",
        measure(rounds, || {
            std::hint::black_box(serde_json::from_slice::<Value>(PAYLOAD_18_9).unwrap());
        }),
    );
    report(
        "serde_json IgnoredAny (parser floor)",
        measure(rounds, || {
            std::hint::black_box(
                serde_json::from_slice::<serde::de::IgnoredAny>(PAYLOAD_18_9).unwrap(),
            );
        }),
    );
}
