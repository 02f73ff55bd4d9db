//! Release sync with two real servers: an upstream and a mirror that follows it (by its
//! `release_sync` job, and by `releases sync --from URL`). A release added upstream appears
//! on the mirror, a security level raised upstream changes the mirror's verdicts, and the
//! mirror's history says `via` = `sync`.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::helpers::{run_cli, TestApp, TestDb};
use crate::release_history::check;
use version_app::auth::Scope;

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI off the test's runtime (the servers' jobs keep running meanwhile).
pub async fn cli(db_url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let db_url = db_url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli(&db_url, &args, &env)
    })
    .await
    .unwrap()
}

/// Every release a server lists, read page by page as any client would.
pub async fn all_versions(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let response = app
            .get(&format!("/api/v1/versions?per_page=100&page={page}"))
            .await;
        let next = response.headers().get("x-next-page").is_some();
        let items: Vec<Value> = response.json().await.unwrap();
        all.extend(items);
        if !next {
            break;
        }
    }
    all
}

/// Waits (at most 30 s) until `probe` holds.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn history(app: &TestApp, version: &str) -> Vec<Value> {
    let token = app.token(Scope::ReleasesWrite);
    app.client
        .get(app.url(&format!("/api/v1/versions/{version}/history")))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A `/metrics` sample's value (0 when absent).
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// A client that keeps no idle connection: a write never goes out on a kept-alive connection
/// the server is just closing (`http_keep_alive_secs`), which a client cannot retry.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `promtool check metrics` accepts the page (names, help, types, lint).
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/setup.d/promtool.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_mirror_follows_its_upstream_and_its_verdicts_change() {
    let upstream = TestApp::spawn().await;
    let upstream_url = upstream.address.clone();
    let mirror = TestApp::spawn_with(|s| {
        s.release_sync.url = Some(upstream_url.clone());
        s.release_sync.interval = std::time::Duration::from_secs(1);
    })
    .await;
    let token = upstream.token(Scope::ReleasesWrite);

    // Both start from the bundled table, which ends at 19.1.1: an instance there is told
    // "up-to-date" by the mirror.
    let before = check(&mirror, "19.1.1").await;
    assert_eq!(before["severity"], "success", "{before}");

    // 1. A release added upstream appears on the mirror, by the job alone.
    let added = unpooled()
        .post(upstream.url("/api/v1/versions"))
        .form(&[
            ("private_token", token.as_str()),
            ("version", "19.1.2"),
            ("released_on", "2026-12-02"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    eventually("the mirror lists 19.1.2", || async {
        check(&mirror, "19.1.1").await["severity"] == "warning"
    })
    .await;
    let told = check(&mirror, "19.1.1").await;
    assert_eq!(told["critical_vulnerability"], false, "{told}");

    // 2. A security level raised upstream: the mirror's verdict for 19.1.1 becomes danger
    //    with the critical modal.
    let raised = unpooled()
        .patch(upstream.url("/api/v1/versions/19.1.2"))
        .bearer_auth(&token)
        .json(&json!({"security": "critical", "advisory": "2026-12-02-critical", "details": "Patch now."}))
        .send()
        .await
        .unwrap();
    assert_eq!(raised.status(), 200);
    eventually("the mirror tells 19.1.1 danger", || async {
        check(&mirror, "19.1.1").await["severity"] == "danger"
    })
    .await;
    let told = check(&mirror, "19.1.1").await;
    assert_eq!(told["critical_vulnerability"], true, "{told}");
    assert_eq!(told["details"], "Patch now.", "{told}");
    // The mirror now answers exactly what the upstream answers.
    assert_eq!(told, check(&upstream, "19.1.1").await);
    assert_eq!(all_versions(&mirror).await, all_versions(&upstream).await);

    // 3. The mirror's history says who and how: the sync, with old and new values.
    let entries = history(&mirror, "19.1.2").await;
    let expected_actor = format!("sync:{}/api/v1/versions", upstream.address);
    assert!(!entries.is_empty());
    for e in &entries {
        assert_eq!(e["via"], "sync", "{e}");
        assert_eq!(e["actor"], expected_actor.as_str(), "{e}");
    }
    let security: Vec<(Option<&str>, Option<&str>)> = entries
        .iter()
        .filter(|e| e["field"] == "security")
        .map(|e| (e["old"].as_str(), e["new"].as_str()))
        .collect();
    assert_eq!(
        security,
        vec![(Some("none"), Some("critical")), (None, Some("none"))],
        "newest first: raised, then created"
    );

    // 4. /metrics: runs counted, a recent success, and the page (with the sync series) is
    //    clean for promtool; /-/ready stays ready.
    let metrics = mirror.get("/metrics").await.text().await.unwrap();
    assert!(
        sample(
            &metrics,
            "version_app_release_sync_total{outcome=\"applied\"}"
        ) >= 2.0
    );
    let last = sample(
        &metrics,
        "version_app_release_sync_last_success_timestamp_seconds",
    );
    assert!(
        (chrono::Utc::now().timestamp() as f64 - last).abs() < 60.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "version_app_release_sync_failures_total{reason=\"http_status\"}"
        ),
        0.0
    );
    assert!(metrics.contains("version_app_job_runs_total{job=\"release_sync\",outcome=\"ok\"}"));
    promtool_accepts(&metrics);
    assert_eq!(mirror.get("/-/ready").await.status(), 200);

    // 5. The CLI verb, into an empty store: it prints what it applied, then a second run
    //    applies nothing; the result lists exactly what the upstream lists.
    let fresh = TestDb::new();
    let dry = cli(
        &fresh.url,
        &["releases", "sync", "--from", &upstream.address, "--dry-run"],
        &[],
    )
    .await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("dry run: nothing was saved"),
        "{}",
        stdout(&dry)
    );
    assert!(
        stdout(&dry).contains("19.1.2 security: (none) -> critical"),
        "{}",
        stdout(&dry)
    );
    let out = cli(
        &fresh.url,
        &["releases", "sync", "--from", &upstream.address],
        &[("USER", "mirror-ops")],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let upstream_all = all_versions(&upstream).await;
    assert!(
        text.contains(&format!("read {} release(s) in", upstream_all.len())),
        "{text}"
    );
    assert!(
        text.contains(&format!("to {} release(s)", upstream_all.len())),
        "{text}"
    );
    assert!(text.contains("sync:") && text.contains(" sync "), "{text}");
    assert!(text.contains("[run by cli:mirror-ops]"), "{text}");
    let again = cli(
        &fresh.url,
        &["releases", "sync", "--from", &upstream.address],
        &[],
    )
    .await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("applied 0 field change(s) to 0 release(s)"),
        "{}",
        stdout(&again)
    );
    let copy = TestApp::spawn_on(fresh, |s| s.releases.seed = false).await;
    assert_eq!(all_versions(&copy).await, upstream_all);
    assert_eq!(
        check(&copy, "19.1.1").await,
        check(&upstream, "19.1.1").await
    );

    // 6. A local addition on the mirror stays when the upstream does not list it; a local
    //    edit of a field the upstream carries is overwritten by the next sync (upstream wins).
    let mirror_token = mirror.token(Scope::ReleasesWrite);
    let local = unpooled()
        .post(mirror.url("/api/v1/versions"))
        .form(&[
            ("private_token", mirror_token.as_str()),
            ("version", "88.0.0"),
            ("released_on", "2030-01-01"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 201);
    let edited = unpooled()
        .patch(mirror.url("/api/v1/versions/19.1.2"))
        .bearer_auth(&mirror_token)
        .json(&json!({"security": "critical", "details": "edited on the mirror"}))
        .send()
        .await
        .unwrap();
    let status = edited.status();
    assert_eq!(status, 200, "{}", edited.text().await.unwrap());
    // The job's next run (after both local writes) puts the upstream's details back.
    eventually(
        "the mirror's 19.1.2 has the upstream's details again",
        || async {
            all_versions(&mirror)
                .await
                .iter()
                .any(|r| r["version"] == "19.1.2" && r["details"] == "Patch now.")
        },
    )
    .await;
    let listed = all_versions(&mirror).await;
    assert!(listed.iter().any(|r| r["version"] == "88.0.0"));
    let ours = listed.iter().find(|r| r["version"] == "19.1.2").unwrap();
    assert_eq!(ours["details"], "Patch now.", "upstream wins for details");
    let newest = &history(&mirror, "19.1.2").await[0];
    assert_eq!(
        (
            newest["via"].as_str(),
            newest["old"].as_str(),
            newest["new"].as_str()
        ),
        (
            Some("sync"),
            Some("edited on the mirror"),
            Some("Patch now.")
        )
    );
}
