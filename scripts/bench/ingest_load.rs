//! Load generator for `scripts/bench/ingest.sh` (built as the `ingest_load` example).
//!
//! Modes:
//! * `ingest`: `--senders` concurrent clients POST `--count` copies of a payload file to
//!   `/usage_data`, each with its own uuid and recorded_at; reports payloads/s and latency
//!   percentiles, then checks in the store that every payload has its summary, raw and
//!   metric rows (all leaves flattened).
//! * `reference`: the same number of the same bytes, each stored by a plain single-row
//!   INSERT into a scratch table of the same store, from `--senders` threads: the rate the
//!   store accepts the bytes with no parsing, flattening or indexing at all.
//! * `big`: `--senders` clients upload `--big-mb` MB bodies at once (admission control may
//!   answer 503 + Retry-After); checks that every 201 is fully stored and every refusal
//!   left nothing behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Text};
use version_app::config::{Backend, StoreSettings};
use version_app::db::Db;
use version_app::domain::payload::{parse_payload, PayloadLimits};
use version_app::with_conn;

struct Args {
    mode: String,
    url: String,
    database_url: String,
    payload: String,
    senders: usize,
    count: usize,
    big_mb: usize,
    run: String,
}

fn args() -> Args {
    let mut args = Args {
        mode: "ingest".into(),
        url: "http://127.0.0.1:8080".into(),
        database_url: String::new(),
        payload: "tests/fixtures/payload_18.9.0_generated.json".into(),
        senders: 16,
        count: 2000,
        big_mb: 5,
        run: format!("{}", std::process::id()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => args.mode = value,
            "--url" => args.url = value,
            "--database-url" => args.database_url = value,
            "--payload" => args.payload = value,
            "--senders" => args.senders = value.parse().expect("--senders"),
            "--count" => args.count = value.parse().expect("--count"),
            "--big-mb" => args.big_mb = value.parse().expect("--big-mb"),
            "--run" => args.run = value,
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.database_url.is_empty(), "--database-url is required");
    args
}

/// The template's bytes with its uuid and recorded_at replaced (same JSON otherwise).
struct Template {
    bytes: Vec<u8>,
    uuid: String,
    recorded_at: String,
    leaves: usize,
}

impl Template {
    fn load(path: &str) -> Template {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("payload is JSON");
        let leaves = parse_payload(&bytes, &PayloadLimits::default())
            .expect("payload parses")
            .metrics
            .len();
        Template {
            uuid: value["uuid"].as_str().expect("uuid").to_owned(),
            recorded_at: value["recorded_at"]
                .as_str()
                .expect("recorded_at")
                .to_owned(),
            bytes,
            leaves,
        }
    }

    fn variant(&self, uuid: &str, n: usize, padding: usize) -> Vec<u8> {
        let varied = vary(&self.bytes, n);
        let text = std::str::from_utf8(&varied).expect("UTF-8");
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z").unwrap()
            + chrono::Duration::seconds(n as i64);
        let mut out = text
            .replacen(&format!("\"{}\"", self.uuid), &format!("\"{uuid}\""), 1)
            .replacen(
                &format!("\"{}\"", self.recorded_at),
                &format!("\"{}\"", at.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
                1,
            )
            .into_bytes();
        if padding > 0 {
            // A big string field: what a 5 MB payload mostly is (SQL text, long lists).
            out.pop(); // the closing brace
            out.extend_from_slice(b",\"bench_padding\":\"");
            out.extend(std::iter::repeat_n(b'x', padding));
            out.extend_from_slice(b"\"}");
        }
        out
    }
}

/// The payload with its positive integer leaves moved by up to about a quarter, differently
/// for each `n`: instances differ, and identical values in every payload would let the
/// store's compression (PostgreSQL TOAST, zstd) look better than it is on a real fleet.
/// Zeros, negative sentinels, floats and booleans stay as they are; the JSON stays compact.
fn vary(bytes: &[u8], n: usize) -> Vec<u8> {
    fn walk(value: &mut serde_json::Value, seed: &mut u64) {
        match value {
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| walk(v, seed)),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, seed)),
            serde_json::Value::Number(number) => {
                if let Some(v) = number.as_i64().filter(|v| *v > 0) {
                    // xorshift: cheap, deterministic per (n, leaf order)
                    *seed ^= *seed << 13;
                    *seed ^= *seed >> 7;
                    *seed ^= *seed << 17;
                    let span = v / 2 + 1;
                    let moved = v - v / 4 + (*seed % span as u64) as i64;
                    *number = moved.max(1).into();
                }
            }
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).expect("payload is JSON");
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (n as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    walk(&mut value, &mut seed);
    serde_json::to_vec(&value).expect("serialises")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn store(database_url: &str, pool: u32) -> Db {
    let settings = StoreSettings {
        url: database_url.into(),
        pool_size: std::num::NonZeroU32::new(pool).expect("a pool of at least one"),
        ..StoreSettings::default()
    };
    Db::connect(&settings).expect("store reachable")
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(db: &Db, sql: &str, uuid_prefix: &str) -> i64 {
    let mut conn = db.get().unwrap();
    with_conn!(&mut conn, |c| diesel::sql_query(sql)
        .bind::<Text, _>(format!("{uuid_prefix}%"))
        .get_result::<Count>(c)
        .unwrap()
        .n)
}

/// (submissions, raw payloads, metric rows) stored for uuids starting with the prefix.
fn stored(db: &Db, prefix: &str, backend: Backend) -> (i64, i64, i64) {
    let p = |n: usize| match backend {
        Backend::Sqlite => "?".to_string(),
        Backend::Postgres => format!("${n}"),
    };
    let rows = count(
        db,
        &format!(
            "SELECT COUNT(*) AS n FROM usage_data WHERE uuid LIKE {}",
            p(1)
        ),
        prefix,
    );
    let raws = count(
        db,
        &format!(
            "SELECT COUNT(*) AS n FROM usage_data_raw r JOIN usage_data u ON u.id = r.usage_data_id \
             WHERE u.uuid LIKE {}",
            p(1)
        ),
        prefix,
    );
    let metrics = count(
        db,
        &format!(
            "SELECT COUNT(*) AS n FROM metric_values m JOIN usage_data u ON u.id = m.usage_data_id \
             WHERE u.uuid LIKE {}",
            p(1)
        ),
        prefix,
    );
    (rows, raws, metrics)
}

/// (summary rows, raw rows) for exactly this uuid.
fn stored_rows(db: &Db, uuid: &str, backend: Backend) -> (i64, i64) {
    let p = match backend {
        Backend::Sqlite => "?",
        Backend::Postgres => "$1",
    };
    let mut conn = db.get().unwrap();
    let mut one = |sql: String| -> i64 {
        with_conn!(&mut conn, |c| diesel::sql_query(sql)
            .bind::<Text, _>(uuid)
            .get_result::<Count>(c)
            .unwrap()
            .n)
    };
    (
        one(format!("SELECT COUNT(*) AS n FROM usage_data WHERE uuid = {p}")),
        one(format!(
            "SELECT COUNT(*) AS n FROM usage_data_raw r JOIN usage_data u ON u.id = r.usage_data_id \
             WHERE u.uuid = {p}"
        )),
    )
}

#[tokio::main]
async fn main() {
    let args = args();
    let backend = Backend::from_url(&args.database_url).expect("sqlite:// or postgres://");
    let template = Template::load(&args.payload);
    match args.mode.as_str() {
        "ingest" => ingest(&args, &template, backend).await,
        "reference" => reference(&args, &template, backend),
        "big" => big(&args, &template, backend).await,
        other => panic!("unknown mode {other}"),
    }
}

async fn ingest(args: &Args, template: &Template, backend: Backend) {
    let prefix = format!("bench-{}-", args.run);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.count)
            .map(|n| template.variant(&format!("{prefix}{n:08}"), n, 0))
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.senders)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.senders {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        let url = format!("{}/usage_data", args.url);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(n) else { break };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 201 => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await.unwrap();
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let db = store(&args.database_url, 2);
    let (rows, raws, metrics) = stored(&db, &prefix, backend);
    let expected_metrics = (args.count * template.leaves) as i64;
    println!(
        "ingest: {} payloads ({} bytes, {} leaves each) from {} senders in {elapsed:.2} s: \
         {:.1} payloads/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, failures {failures}",
        args.count,
        template.bytes.len(),
        template.leaves,
        args.senders,
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
    );
    println!(
        "verify: usage_data {rows}/{}, raw {raws}/{}, metric rows {metrics}/{expected_metrics}",
        args.count, args.count
    );
    let complete = rows == args.count as i64
        && raws == args.count as i64
        && metrics == expected_metrics
        && failures == 0;
    println!("verify: {}", if complete { "OK" } else { "MISMATCH" });
    if !complete {
        std::process::exit(1);
    }
}

fn reference(args: &Args, template: &Template, backend: Backend) {
    let db = store(&args.database_url, args.senders as u32);
    let ddl = match backend {
        Backend::Sqlite => {
            "DROP TABLE IF EXISTS bench_reference; \
             CREATE TABLE bench_reference (id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL)"
        }
        Backend::Postgres => {
            "DROP TABLE IF EXISTS bench_reference; \
             CREATE TABLE bench_reference (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)"
        }
    };
    let insert = match backend {
        Backend::Sqlite => "INSERT INTO bench_reference (payload) VALUES (?)",
        Backend::Postgres => "INSERT INTO bench_reference (payload) VALUES ($1)",
    };
    with_conn!(&mut db.get().unwrap(), |c| c.batch_execute(ddl).unwrap());
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.count)
            .map(|n| template.variant(&format!("ref-{n:08}"), n, 0))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..args.senders)
        .map(|_| {
            let (db, bodies, next) = (db.clone(), bodies.clone(), next.clone());
            std::thread::spawn(move || {
                let mut conn = db.get().unwrap();
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(n) else { break };
                    let sent = Instant::now();
                    // One statement in autocommit: one transaction per payload.
                    with_conn!(&mut conn, |c| diesel::sql_query(insert)
                        .bind::<Binary, _>(body)
                        .execute(c)
                        .unwrap());
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "reference: {} single-row INSERTs of the raw payload from {} threads in {elapsed:.2} s: \
         {:.1} payloads/s, p50 {:.1} ms, p99 {:.1} ms",
        args.count,
        args.senders,
        args.count as f64 / elapsed,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
    );
    with_conn!(&mut db.get().unwrap(), |c| c
        .batch_execute("DROP TABLE bench_reference")
        .unwrap());
}

async fn big(args: &Args, template: &Template, backend: Backend) {
    let prefix = format!("big-{}-", args.run);
    let padding = (args.big_mb * 1024 * 1024).saturating_sub(template.bytes.len());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.senders)
        .map(|n| {
            let uuid = format!("{prefix}{n:08}");
            let body = template.variant(&uuid, n, padding);
            let (client, url) = (client.clone(), format!("{}/usage_data", args.url));
            tokio::spawn(async move {
                let response = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match response {
                    Ok(r) => {
                        let retry_after = r.headers().contains_key("retry-after");
                        (uuid, r.status().as_u16(), retry_after)
                    }
                    Err(_) => (uuid, 0, false),
                }
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let db = store(&args.database_url, 2);
    let accepted = outcomes.iter().filter(|o| o.1 == 201).count();
    let refused = outcomes.iter().filter(|o| o.1 == 503 && o.2).count();
    let other = outcomes.len() - accepted - refused;
    let mut consistent = other == 0;
    // Per body: its summary and raw rows (index look-ups by uuid); the metric rows of all
    // bodies in one scan, since that index is led by key_id.
    for (uuid, status, _) in &outcomes {
        let (rows, raws) = stored_rows(&db, uuid, backend);
        let expected = if *status == 201 { (1, 1) } else { (0, 0) };
        if (rows, raws) != expected {
            consistent = false;
            println!("big: {uuid} answered {status} but stored {rows} summary / {raws} raw rows");
        }
    }
    let (_, _, metrics) = stored(&db, &prefix, backend);
    if metrics != (accepted * template.leaves) as i64 {
        consistent = false;
        println!(
            "big: {metrics} metric rows for {accepted} stored bodies of {} leaves",
            template.leaves
        );
    }
    println!(
        "big: {} clients x {} MB at once in {elapsed:.2} s: {accepted} stored (201), \
         {refused} refused (503 + Retry-After), {other} other",
        args.senders, args.big_mb
    );
    println!(
        "verify: {}",
        if consistent {
            "OK (every 201 complete, every 503 left nothing)"
        } else {
            "MISMATCH"
        }
    );
    if !consistent {
        std::process::exit(1);
    }
}
