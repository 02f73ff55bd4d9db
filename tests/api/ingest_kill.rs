//! A server process killed with SIGKILL in the middle of Service Ping ingest loses no
//! submission it answered 201 and leaves none half-stored; a restarted server answers the
//! senders' retries with the ids they were given.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use serde_json::{json, Value};
use version_app::db::models::{metric_values as values, usage_data_raw};
use version_app::db::schema::{metric_values, usage_data};
use version_app::db::Db;

use crate::helpers::{test_settings, TestDb};
use crate::usage_data::FULL;

/// Starts `version-app serve` on a free port; returns the process and its address.
fn start_server(db: &TestDb) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_version-app"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VERSION_APP_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("VERSION_APP_LISTEN", "127.0.0.1:0")
        // Merge staged values into blocks every second, whatever is staged, so the kill can
        // also land in a merge (which must then be redone whole after the restart).
        .env("VERSION_APP_METRIC_MERGE_INTERVAL_SECS", "1")
        .env("VERSION_APP_METRIC_BLOCK_MIN", "2")
        .env("VERSION_APP_METRIC_MERGE_MAX_WAIT_SECS", "0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary runs");
    let stdout = child.stdout.take().unwrap();
    let (found, port) = std::sync::mpsc::channel();
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.split("listen.port=").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = found.send(digits);
                    sent = true;
                }
            }
        }
    });
    let port = port
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its port");
    (child, format!("http://127.0.0.1:{port}"))
}

/// A distinct full-size payload (the 18.9 fixture, ~4,200 metrics) per index.
fn payload(index: usize) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(FULL).unwrap();
    value["uuid"] = json!(format!("killed-{index:04}"));
    value["counts"]["kill_test_index"] = json!(index);
    serde_json::to_vec(&value).unwrap()
}

async fn post(client: &reqwest::Client, address: &str, body: Vec<u8>) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{address}/usage_data"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test]
async fn sigkill_during_ingest_loses_no_acknowledged_submission_and_half_stores_none() {
    let db = TestDb::new();
    let (mut server, address) = start_server(&db);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    const SENDERS: usize = 6;
    const PER_SENDER: usize = 40;
    let acknowledged: Arc<Mutex<BTreeMap<usize, i64>>> = Arc::default();
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (client, address, acknowledged) =
            (client.clone(), address.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_SENDER {
                let index = sender * PER_SENDER + n;
                match post(&client, &address, payload(index)).await {
                    Some((201, answer)) => {
                        let id = answer["conv_index"]["usage_data_id"].as_i64().unwrap();
                        acknowledged.lock().unwrap().insert(index, id);
                    }
                    // 503s are allowed (retry later); a dead server ends this sender.
                    Some(_) => {}
                    None => return,
                }
            }
        }));
    }
    // Kill once a few groups have committed, while senders are still mid-flight.
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 12 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    server.wait().unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 12,
        "only {} acknowledged",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < SENDERS * PER_SENDER,
        "the kill came after every submission was answered; it proves nothing"
    );

    // The store as the killed process left it.
    let store = Db::connect(&test_settings(&db).store).unwrap();
    let mut conn = store.get().unwrap();
    let rows: Vec<(i64, String, i64)> = version_app::with_conn!(&mut conn, |c| usage_data::table
        .select((usage_data::id, usage_data::uuid, usage_data::metrics_count))
        .load(c)
        .unwrap());
    let by_uuid: BTreeMap<String, (i64, i64)> = rows
        .iter()
        .map(|(id, uuid, count)| (uuid.clone(), (*id, *count)))
        .collect();
    for (index, id) in &acknowledged {
        let uuid = format!("killed-{index:04}");
        assert_eq!(
            by_uuid.get(&uuid).map(|(stored, _)| *stored),
            Some(*id),
            "{uuid} was answered 201 with id {id} but is not stored"
        );
    }
    // Everything stored is stored whole: its raw payload and every metric row.
    assert_whole(&mut conn, &rows);
    drop(conn);

    // A restarted server: retries of acknowledged payloads get their id back, the rest store.
    let (mut server, address) = start_server(&db);
    for index in acknowledged
        .keys()
        .take(5)
        .chain([&(SENDERS * PER_SENDER - 1)])
    {
        let (status, answer) = post(&client, &address, payload(*index)).await.unwrap();
        assert_eq!(status, 201);
        let id = answer["conv_index"]["usage_data_id"].as_i64().unwrap();
        if let Some(first) = acknowledged.get(index) {
            assert_eq!(id, *first, "a retry gets the acknowledged id");
        }
    }
    // The restarted merge job takes up whatever was staged (a merge the kill interrupted
    // was rolled back whole), and every value is still there, once, in its block.
    let mut conn = store.get().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values::count_staged(&mut conn).unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "staged values were not merged after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(i64, String, i64)> = version_app::with_conn!(&mut conn, |c| usage_data::table
        .select((usage_data::id, usage_data::uuid, usage_data::metrics_count))
        .load(c)
        .unwrap());
    assert_whole(&mut conn, &rows);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Every submission in `rows` (`id, uuid, metrics_count`) has its raw payload and exactly
/// its metric values.
fn assert_whole(conn: &mut version_app::db::AnyConnection, rows: &[(i64, String, i64)]) {
    for (id, uuid, count) in rows {
        let index: usize = uuid.trim_start_matches("killed-").parse().unwrap();
        let raw = usage_data_raw::find_raw_payload(conn, *id).unwrap();
        assert_eq!(raw, Some(payload(index)), "{uuid}: raw payload");
        let metrics: i64 = version_app::with_conn!(conn, |c| metric_values::table
            .filter(metric_values::usage_data_id.eq(id))
            .count()
            .get_result(c)
            .unwrap());
        assert_eq!(metrics, *count, "{uuid}: metric rows");
    }
}
