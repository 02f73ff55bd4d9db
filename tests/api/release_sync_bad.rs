//! Bad upstreams: a small fake HTTP server (a `TcpListener` and hand-written answers) that
//! answers 500, HTML, broken JSON, too much, pages forever, hangs, trickles, offers 100,000
//! bogus versions, or lowers a security level. Each sync changes nothing on the mirror
//! (same export, no new history entry), fails with the reason and the cap named, and the
//! next sync (once the upstream is fine again) succeeds.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::TestApp;
use crate::release_history::check;
use crate::release_sync::{all_versions, cli, sample, stderr, stdout};

/// What the fake answers to a request for one page.
enum Answer {
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// Nothing for this long.
    Hang(Duration),
    /// The head at once, then the body one byte per `gap`.
    Trickle(Vec<u8>, Vec<u8>, Duration),
}

type Handler = dyn Fn(u32) -> Answer + Send + Sync;

/// Starts the fake; returns its base URL.
fn fake(handler: impl Fn(u32) -> Answer + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler: Arc<Handler> = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || serve(stream, &*handler));
        }
    });
    url
}

fn serve(mut stream: TcpStream, handler: &Handler) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let page = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("page="))
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    match handler(page) {
        Answer::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        Answer::Hang(time) => std::thread::sleep(time),
        Answer::Trickle(head, body, gap) => {
            let _ = stream.write_all(&head);
            for b in body {
                if stream.write_all(&[b]).and_then(|_| stream.flush()).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
        }
    }
}

/// A whole HTTP answer.
fn answer(status: &str, content_type: &str, headers: &str, body: &[u8]) -> Answer {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    Answer::Raw(bytes)
}

fn json_page(items: &Value, headers: &str) -> Answer {
    answer(
        "200 OK",
        "application/json",
        headers,
        items.to_string().as_bytes(),
    )
}

/// `n` made-up releases for page `page` (all distinct).
fn bogus(page: u32, n: u32) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"version": format!("60.{page}.{i}"), "released_on": "2026-01-01",
                       "security": "none", "advisory": null, "details": ""})
            })
            .collect(),
    )
}

/// The mirror's whole table and its newest history entry: what "changed nothing" compares.
async fn state_of(mirror: &TestApp) -> (String, String) {
    let export = cli(&mirror.db.url, &["releases", "export"], &[]).await;
    assert!(export.status.success(), "{}", stderr(&export));
    let history = cli(
        &mirror.db.url,
        &["releases", "history", "--limit", "1"],
        &[],
    )
    .await;
    (stdout(&export), stdout(&history))
}

/// Syncs from `url` with extra settings; asserts it failed naming `reason` and every
/// `words`, changed nothing, and took less than `within`.
async fn refused(
    mirror: &TestApp,
    url: &str,
    env: &[(&str, &str)],
    reason: &str,
    words: &[&str],
    within: Duration,
) {
    let before = state_of(mirror).await;
    let started = Instant::now();
    let out = cli(&mirror.db.url, &["releases", "sync", "--from", url], env).await;
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{reason}: succeeded: {}",
        stdout(&out)
    );
    assert!(
        err.contains(&format!("release sync failed ({reason})")),
        "{reason}: {err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    for w in words {
        assert!(err.contains(w), "{reason}: `{w}` not in: {err}");
    }
    assert!(took < within, "{reason}: took {took:?}");
    assert_eq!(
        state_of(mirror).await,
        before,
        "{reason}: the table changed"
    );
}

#[tokio::test]
async fn bad_upstreams_change_nothing_and_name_the_reason() {
    let mirror = TestApp::spawn().await;
    let long = Duration::from_secs(30);

    let down = fake(|_| answer("500 Internal Server Error", "text/plain", "", b"oops"));
    refused(&mirror, &down, &[], "http_status", &["500"], long).await;

    let html = fake(|_| {
        answer(
            "200 OK",
            "text/html",
            "",
            b"<html><body>Sign in</body></html>",
        )
    });
    refused(&mirror, &html, &[], "not_json", &["text/html"], long).await;

    let garbage = fake(|_| answer("200 OK", "application/json", "", b"{\"versions\": [1, 2"));
    refused(&mirror, &garbage, &[], "bad_json", &["page 1"], long).await;

    let bad_entry = fake(|_| {
        json_page(
            &json!([{"version": "banana", "released_on": "2026-01-01", "security": "none"}]),
            "",
        )
    });
    refused(
        &mirror,
        &bad_entry,
        &[],
        "bad_json",
        &["entry 1", "banana"],
        long,
    )
    .await;

    // Too large: declared by Content-Length, and not declared (read until the cap).
    let cap = [("VERSION_APP_RELEASE_SYNC_MAX_PAGE_BYTES", "65536")];
    let declared = fake(|_| json_page(&Value::String("x".repeat(100_000)), ""));
    refused(
        &mirror,
        &declared,
        &cap,
        "too_large",
        &["65536 bytes", "release_sync_max_page_bytes"],
        long,
    )
    .await;
    let undeclared = fake(|_| {
        let mut bytes =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                .to_vec();
        bytes.extend(std::iter::repeat_n(b' ', 200_000));
        Answer::Raw(bytes)
    });
    refused(
        &mirror,
        &undeclared,
        &cap,
        "too_large",
        &["release_sync_max_page_bytes"],
        long,
    )
    .await;

    // Paging forever.
    let endless = fake(|page| json_page(&json!([]), &format!("X-Next-Page: {}\r\n", page + 1)));
    refused(
        &mirror,
        &endless,
        &[("VERSION_APP_RELEASE_SYNC_MAX_PAGES", "5")],
        "too_many_pages",
        &["more than 5 pages", "release_sync_max_pages"],
        long,
    )
    .await;
    let backwards = fake(|_| json_page(&json!([]), "X-Next-Page: 1\r\n"));
    refused(
        &mirror,
        &backwards,
        &[],
        "bad_json",
        &["pages backwards"],
        long,
    )
    .await;

    // An upstream that never answers, and one that trickles its answer: both end within
    // about the timeout (1 s here), not when the upstream stops.
    let timeout = [("VERSION_APP_RELEASE_SYNC_TIMEOUT_SECS", "1")];
    let hang = fake(|_| Answer::Hang(Duration::from_secs(20)));
    refused(
        &mirror,
        &hang,
        &timeout,
        "timeout",
        &["1 s", "release_sync_timeout_secs"],
        Duration::from_secs(8),
    )
    .await;
    let trickle = fake(|_| {
        let body = bogus(1, 20).to_string().into_bytes();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        Answer::Trickle(head.into_bytes(), body, Duration::from_millis(50))
    });
    refused(
        &mirror,
        &trickle,
        &timeout,
        "timeout",
        &["release_sync_timeout_secs"],
        Duration::from_secs(8),
    )
    .await;

    // 100,000 bogus versions: refused on the announced total, and (not announced) once
    // the count passes the cap.
    let announced = fake(|page| {
        json_page(
            &bogus(page, 100),
            &format!("X-Total: 100000\r\nX-Next-Page: {}\r\n", page + 1),
        )
    });
    refused(
        &mirror,
        &announced,
        &[],
        "too_many_versions",
        &[
            "100000 versions",
            "more than 10000",
            "release_sync_max_versions",
        ],
        long,
    )
    .await;
    let counted =
        fake(|page| json_page(&bogus(page, 100), &format!("X-Next-Page: {}\r\n", page + 1)));
    refused(
        &mirror,
        &counted,
        &[
            ("VERSION_APP_RELEASE_SYNC_MAX_VERSIONS", "250"),
            ("VERSION_APP_RELEASE_SYNC_MAX_PAGES", "1000"),
        ],
        "too_many_versions",
        &["more than 250 versions", "release_sync_max_versions"],
        long,
    )
    .await;

    // Nobody listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    refused(&mirror, &closed, &[], "connect", &[], long).await;

    // A downgrade: the mirror's own critical release, served one level lower.
    let mut lowered = all_versions(&mirror)
        .await
        .into_iter()
        .find(|r| r["security"] == "critical")
        .expect("the bundled table has a critical release");
    let version = lowered["version"].as_str().unwrap().to_string();
    lowered["security"] = json!("non_critical");
    let page = json!([lowered]);
    let downgrading = fake(move |_| json_page(&page, ""));
    refused(
        &mirror,
        &downgrading,
        &[],
        "downgrade",
        &[
            &format!("{version} critical -> non_critical"),
            "release_sync_allow_downgrade",
        ],
        long,
    )
    .await;
    // Allowed by the flag in a dry run (nothing saved), then by the setting the job reads:
    // applied, and audited with a note saying so.
    let before = state_of(&mirror).await;
    let dry = cli(
        &mirror.db.url,
        &[
            "releases",
            "sync",
            "--from",
            &downgrading,
            "--allow-downgrade",
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains(&format!("{version} security: critical -> non_critical")),
        "{}",
        stdout(&dry)
    );
    assert_eq!(state_of(&mirror).await, before, "a dry run saves nothing");
    let out = cli(
        &mirror.db.url,
        &["releases", "sync", "--from", &downgrading],
        &[("VERSION_APP_RELEASE_SYNC_ALLOW_DOWNGRADE", "true")],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "security downgrade (allowed): {version} critical -> non_critical"
        )),
        "{}",
        stdout(&out)
    );
    let history = cli(
        &mirror.db.url,
        &["releases", "history", "--version", &version],
        &[],
    )
    .await;
    let text = stdout(&history);
    let line = text
        .lines()
        .find(|l| l.contains("security") && l.contains(" sync "))
        .unwrap_or_else(|| panic!("no sync entry: {text}"));
    assert!(line.contains("critical -> non_critical"), "{line}");
    assert!(line.contains("release_sync_allow_downgrade"), "{line}");
}

#[tokio::test]
async fn the_sync_job_counts_failures_stays_ready_and_retries() {
    let healthy = Arc::new(AtomicBool::new(false));
    let switch = healthy.clone();
    let upstream = fake(move |_| {
        if switch.load(Ordering::SeqCst) {
            json_page(
                &json!([{"version": "77.0.0", "released_on": "2030-01-01", "security": "none",
                         "advisory": null, "details": ""}]),
                "",
            )
        } else {
            answer("500 Internal Server Error", "text/plain", "", b"down")
        }
    });
    let mirror = TestApp::spawn_with(|s| {
        s.release_sync.url = Some(upstream.clone());
        s.release_sync.interval = std::time::Duration::from_secs(1);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = mirror.get("/metrics").await.text().await.unwrap();
        if sample(
            &metrics,
            "version_app_release_sync_failures_total{reason=\"http_status\"}",
        ) >= 2.0
        {
            assert_eq!(
                sample(
                    &metrics,
                    "version_app_release_sync_last_success_timestamp_seconds"
                ),
                0.0
            );
            assert!(
                sample(
                    &metrics,
                    "version_app_release_sync_total{outcome=\"failed\"}"
                ) >= 2.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "no failures counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Failures never touch checks or readiness.
    assert_eq!(mirror.get("/-/ready").await.status(), 200);
    assert_eq!(check(&mirror, "19.1.1").await["severity"], "success");

    // The upstream recovers: the next run applies, and verdicts follow at once.
    healthy.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while check(&mirror, "19.1.1").await["severity"] == "success" {
        assert!(
            Instant::now() < deadline,
            "the mirror never picked up 77.0.0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = mirror.get("/metrics").await.text().await.unwrap();
    assert!(
        sample(
            &metrics,
            "version_app_release_sync_last_success_timestamp_seconds"
        ) > 0.0
    );
    assert_eq!(
        sample(&metrics, "version_app_release_sync_upstream_versions"),
        1.0
    );
    assert!(all_versions(&mirror)
        .await
        .iter()
        .any(|r| r["version"] == "77.0.0"));
}
