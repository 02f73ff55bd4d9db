//! Issue 8 (hardening): slow clients, colliding input, methods, envelopes, headers.

use crate::check::check_path;
use crate::helpers::TestApp;
use crate::usage_data::minimal_with;
use secrecy::ExposeSecret;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short waits so the test runs in seconds; production defaults are longer.
fn short_waits(s: &mut version_app::config::Settings) {
    s.http.body_idle_timeout = std::time::Duration::from_millis(1_500);
    s.http.body_timeout = std::time::Duration::from_secs(6);
    s.http.client_request_timeout = std::time::Duration::from_millis(1_500);
    s.http.keep_alive = std::time::Duration::from_secs(2);
}

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (or `within` passes); returns what came,
/// `None` when nothing came and the connection is still open.
async fn read_until_closed(mut stream: TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    match read {
        Ok(()) => Some(text),
        // Answered but left open: see the test's note on actix below.
        Err(_) if !text.is_empty() => Some(text),
        Err(_) => None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Defects 1 and 2: unterminated multipart uploads, stalled and trickling bodies, idle
/// keep-alives and half-sent heads neither block ingest nor the checks, and are all cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_connections_neither_block_ingest_nor_checks() {
    let app = TestApp::spawn_with(short_waits).await;
    let host = app.address.trim_start_matches("http://").to_string();
    const BODIES: usize = 1_200;
    const IDLE: usize = 400;
    const HEADS: usize = 384;
    let started = Instant::now();

    // 16 uploads whose closing boundary never comes (defect 1, as curl sends it).
    let part = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.json\"\r\n\r\n{\"uuid\":\"x\"}\r\n";
    let mut multipart = Vec::new();
    for _ in 0..16 {
        let mut s = connect(&app).await;
        let head = format!(
            "POST /usage_data HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n{part}",
            part.len() + 4096
        );
        s.write_all(head.as_bytes()).await.unwrap();
        multipart.push(s);
    }
    // Service Ping bodies that stop after a few bytes, and one that trickles.
    let mut bodies = Vec::new();
    for _ in 0..BODIES {
        let mut s = connect(&app).await;
        let head = format!(
            "POST /usage_data HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n\r\n{{\"uuid\":"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        bodies.push(s);
    }
    // Keep-alive connections left idle after one answer.
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        let mut s = connect(&app).await;
        let req = format!("GET /-/health HTTP/1.1\r\nHost: {host}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        idle.push(s);
    }
    // Heads that never end.
    let mut heads = Vec::new();
    for _ in 0..HEADS {
        let mut s = connect(&app).await;
        s.write_all(b"GET /check.svg HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        heads.push(s);
    }
    let held = 16 + BODIES + IDLE + HEADS;
    println!(
        "{held} stalled connections opened in {:?}",
        started.elapsed()
    );

    // While they are held: checks and valid Service Pings are answered, and quickly.
    let mut latencies = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let r = app.get(&check_path("check.svg", "16.0.0")).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        latencies.push(t.elapsed());
        if i % 20 == 0 {
            let body = minimal_with(json!({"uuid": format!("stall-{i}")}));
            let t = Instant::now();
            let r = crate::usage_data::post_json(&app, body).await;
            let status = r.status();
            let text = r.text().await.unwrap();
            assert_eq!(
                status, 201,
                "valid ingest refused while slow clients wait: {text}"
            );
            latencies.push(t.elapsed());
        }
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "with {held} stalled connections: checks + ingest p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies.last().unwrap()
    );
    // Generous: the debug build on a shared 2-core machine; the figure is printed above.
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");

    // Every stalled connection is cut off; bodies get a 408 naming the stall.
    let within = Duration::from_secs(8);
    let bodies = futures_util::future::join_all(
        bodies
            .into_iter()
            .chain(multipart)
            .map(|s| read_until_closed(s, within)),
    )
    .await;
    // Every stalled body is answered 408 (its budget freed). Note: actix-http sometimes
    // leaves a connection open after that `Connection: close` answer when the request body
    // is unfinished; the connection cap bounds what that costs (issue 8, left open).
    for answer in &bodies {
        let answer = answer
            .as_deref()
            .expect("stalled body answered by the server");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let others = futures_util::future::join_all(
        idle.into_iter()
            .chain(heads)
            .map(|s| read_until_closed(s, within)),
    )
    .await;
    assert!(
        others.iter().all(Option::is_some),
        "idle connections and stalled heads are closed"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    // Mostly idle timeouts; on a loaded machine a first chunk read late counts as too slow.
    let aborted: f64 = ["idle_timeout", "too_slow", "deadline"]
        .iter()
        .map(|reason| {
            metric(
                &metrics,
                &format!("version_app_http_body_aborted_total{{reason=\"{reason}\"}}"),
            )
        })
        .sum();
    assert!(aborted >= (BODIES + 16) as f64, "{aborted}\n{metrics}");
    assert!(metrics.contains("version_app_http_connections_open"));
    app.stop().await;
}

/// Defect 12: a full admission queue and an unavailable store are different 503s, each with
/// its own message and metric label.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_full_and_store_unavailable_are_told_apart() {
    let app = TestApp::spawn_with(|s| {
        s.ingest.max_concurrent = std::num::NonZeroUsize::new(1).unwrap();
        s.ingest.admission_wait = std::time::Duration::ZERO;
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (client, url) = (app.client.clone(), app.url("/usage_data"));
        let mut payload: serde_json::Value =
            serde_json::from_slice(crate::usage_data::FULL).unwrap();
        payload["uuid"] = json!(format!("busy-{i}"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&payload).unwrap())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().contains_key("retry-after");
            (status, retry, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut busy = 0;
    for task in tasks {
        let (status, retry, body) = task.await.unwrap();
        match status {
            201 => {}
            503 => {
                busy += 1;
                assert!(retry);
                assert_eq!(body["error"], "busy", "{body}");
                let message = body["message"].as_str().unwrap();
                assert!(message.contains("capacity"), "{message}");
                assert!(!message.contains("store is unavailable"), "{message}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        busy > 0,
        "40 payloads at once through one slot: some must be refused"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let refused = |cause: &str| {
        metric(
            &metrics,
            &format!("version_app_ingest_refused_total{{cause=\"{cause}\"}}"),
        )
    };
    assert_eq!(refused("admission_full"), f64::from(busy), "{metrics}");
    assert_eq!(refused("store_unavailable"), 0.0);

    if !app.db.is_postgres() {
        let path = app
            .settings
            .store
            .url
            .expose_secret()
            .trim_start_matches("sqlite://")
            .to_string();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        let r = crate::usage_data::post_json(&app, minimal_with(json!({"uuid": "gone"}))).await;
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unavailable");
        assert!(body["message"].as_str().unwrap().contains("store"));
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let unavailable = metric(
            &metrics,
            r#"version_app_ingest_refused_total{cause="store_unavailable"}"#,
        );
        assert_eq!(unavailable, 1.0);
    }
    app.handle.stop(true).await;
}

/// Defect 2: a body trickling below the minimum rate is cut off (408) once the idle window
/// has passed, even though bytes keep coming.
#[tokio::test]
async fn a_trickled_body_is_cut_off() {
    let app = TestApp::spawn_with(|s| {
        short_waits(s);
        s.http.body_idle_timeout = std::time::Duration::from_millis(1_000);
        s.http.body_min_bytes_per_sec = 64;
    })
    .await;
    let host = app.address.trim_start_matches("http://").to_string();
    let mut s = connect(&app).await;
    let head = format!(
        "POST /usage_data HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: never idle for 1 s, but 10 B/s, far below 64 B/s.
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if s.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        s
    });
    let s = writer.await.unwrap();
    let answer = read_until_closed(s, Duration::from_secs(5))
        .await
        .expect("closed by the server");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("slower than 64 bytes per second"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(9));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            r#"version_app_http_body_aborted_total{reason="too_slow"}"#
        ),
        1.0
    );
    app.stop().await;
}
