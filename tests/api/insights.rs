//! `/api/v1/insights/…` against payloads posted over HTTP, on the store under test. Every
//! expected number is computed here, from the posted payloads, by code independent of the
//! server's (a plain model of the analysts' rules).

use crate::check::check_path;
use crate::check_recording::wait_for_total;
use crate::helpers::{run_cli, TestApp};
use crate::insights_model::{
    count_rows, counted, expected_counts, expected_metric, get_json, metric_rows, minor_of,
    month_of,
};
use crate::usage_data::{minimal_with, post_json};
use chrono::{Duration, NaiveDate, NaiveDateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use version_app::auth::Scope;

/// One posted submission and what the test expects of it.
#[derive(Clone)]
pub(crate) struct Sub {
    pub(crate) uuid: &'static str,
    pub(crate) host: &'static str,
    /// `recorded_at` as sent.
    pub(crate) recorded_at: NaiveDateTime,
    pub(crate) edition: &'static str,
    pub(crate) expires: Option<&'static str>,
    pub(crate) version: &'static str,
    /// `counts.issues` (all-time counter).
    pub(crate) issues: f64,
    /// `counts_monthly.deployments` (28-day metric).
    pub(crate) deploys: f64,
    /// The tier this submission must get (written out by hand from the rule).
    pub(crate) tier: &'static str,
}

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one row of the fleet table per call"
)]
fn sub(
    uuid: &'static str,
    host: &'static str,
    recorded_at: &str,
    edition: &'static str,
    expires: Option<&'static str>,
    version: &'static str,
    issues: f64,
    deploys: f64,
    tier: &'static str,
) -> Sub {
    Sub {
        uuid,
        host,
        recorded_at: at(recorded_at),
        edition,
        expires,
        version,
        issues,
        deploys,
        tier,
    }
}

/// The fleet: same-uuid installations, a staging and an internal host, a reset, special
/// values, an expired licence, a second submission in a week, one posted out of order, a
/// clock in the future and one before 2011.
pub(crate) fn fleet() -> Vec<Sub> {
    let future = (Utc::now().naive_utc() + Duration::days(3))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    vec![
        // posted before the earlier submission of its week: recorded_at decides, not order
        sub(
            "u-a",
            "git.alpha.example",
            "2026-01-07 10:00:00",
            "EEP",
            Some("2027-01-01"),
            "18.7.1",
            15.0,
            4.0,
            "Premium",
        ),
        sub(
            "u-a",
            "git.alpha.example",
            "2026-01-05 10:00:00",
            "EEP",
            Some("2027-01-01"),
            "18.7.1",
            10.0,
            3.0,
            "Premium",
        ),
        sub(
            "u-a",
            "git.alpha.example",
            "2026-01-14 10:00:00",
            "EEP",
            Some("2027-01-01"),
            "18.8.0",
            12.0,
            0.0,
            "Premium",
        ),
        sub(
            "u-a",
            "git.alpha.example",
            "2026-02-03 10:00:00",
            "EEP",
            Some("2026-02-01"),
            "18.8.0",
            20.0,
            -1.0,
            "Free",
        ),
        sub(
            "u-a",
            "staging.alpha.example",
            "2026-01-06 10:00:00",
            "CE",
            None,
            "18.8.0",
            100.0,
            1.0,
            "Free",
        ),
        sub(
            "u-a",
            "other.alpha.example",
            "2026-01-08 10:00:00",
            "EE",
            None,
            "18.7.0",
            5.0,
            2.0,
            "Starter",
        ),
        sub(
            "u-a",
            "other.alpha.example",
            "2026-01-13 10:00:00",
            "EE",
            None,
            "18.7.0",
            -1.0,
            2.0,
            "Starter",
        ),
        sub(
            "u-a",
            "OTHER.alpha.example",
            "2026-01-20 10:00:00",
            "EE",
            None,
            "18.8.1",
            7.0,
            9.0,
            "Starter",
        ),
        sub(
            "u-d",
            "git.delta.example",
            "2026-01-09 10:00:00",
            "EEU",
            None,
            "17.11.2",
            1.0,
            5.0,
            "Ultimate",
        ),
        sub(
            "u-d",
            "git.delta.example",
            "2026-01-11 23:59:59",
            "EEU",
            None,
            "17.11.2",
            3.0,
            6.0,
            "Ultimate",
        ),
        sub(
            "u-e",
            "gitlab.com",
            "2026-01-07 10:00:00",
            "EEU",
            None,
            "18.8.0",
            50.0,
            7.0,
            "Ultimate",
        ),
        sub(
            "u-f",
            "git.future.example",
            &future,
            "CE",
            None,
            "18.8.0",
            2.0,
            1.0,
            "Free",
        ),
        sub(
            "u-g",
            "git.old.example",
            "2009-05-05 10:00:00",
            "EE Free",
            None,
            "18.8.0",
            2.0,
            1.0,
            "Free",
        ),
    ]
}

pub(crate) fn payload(s: &Sub) -> Vec<u8> {
    minimal_with(json!({
        "uuid": s.uuid,
        "hostname": s.host,
        "recorded_at": format!("{} UTC", s.recorded_at.format("%Y-%m-%d %H:%M:%S")),
        "edition": s.edition,
        "license_expires_at": s.expires,
        "version": s.version,
        "counts": {"issues": s.issues},
        "counts_monthly": {"deployments": s.deploys},
    }))
}

pub(crate) async fn post_all(app: &TestApp, subs: &[Sub]) {
    for s in subs {
        let response = post_json(app, payload(s)).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
}

pub(crate) fn refresh(app: &TestApp) {
    version_app::insights::with_job_lock(&app.store(), version_app::insights::refresh)
        .expect("refresh");
}

pub(crate) const RANGE: &str = "from=2025-12-01&to=2027-01-01";

#[tokio::test]
async fn numbers_follow_the_analysts_rules() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::InsightsRead);
    let subs = fleet();
    post_all(&app, &subs).await;
    let received = Utc::now().naive_utc();
    refresh(&app);

    for (period, week) in [("month", false), ("week", true)] {
        // installations: last submission per (uuid, hostname) per period, internal left out
        let placed = counted(&subs, received, week, false);
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/installations?period={period}&{RANGE}"),
        )
        .await;
        assert_eq!(
            count_rows(&body, "group"),
            expected_counts(&placed, |_| "all".into()),
            "{period}"
        );
        let today = Utc::now().date_naive();
        for row in body["rows"].as_array().unwrap() {
            let start =
                NaiveDate::parse_from_str(row["period"].as_str().unwrap(), "%Y-%m-%d").unwrap();
            let end = if week {
                start + Duration::days(7)
            } else {
                month_of(start + Duration::days(32))
            };
            assert_eq!(row["complete"].as_bool().unwrap(), end <= today, "{row}");
        }
        // by tier: the tier of each period's counted submission
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/installations?period={period}&by=tier&{RANGE}"),
        )
        .await;
        assert_eq!(
            count_rows(&body, "group"),
            expected_counts(&placed, |p| p.sub.tier.into()),
            "{period} by tier"
        );
        // include_internal brings staging and gitlab.com back
        let all = counted(&subs, received, week, true);
        let body = get_json(
            &app,
            &token,
            &format!(
                "/api/v1/insights/installations?period={period}&include_internal=true&{RANGE}"
            ),
        )
        .await;
        assert_eq!(
            count_rows(&body, "group"),
            expected_counts(&all, |_| "all".into())
        );
        // versions: minor line of the counted submission
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/versions?period={period}&{RANGE}"),
        )
        .await;
        assert_eq!(
            count_rows(&body, "minor"),
            expected_counts(&placed, |p| minor_of(p.sub.version))
        );
        // metrics: all-time deltas with resets, 28-day values as they are, special values
        let issues = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/metrics/counts.issues?period={period}&{RANGE}"),
        )
        .await;
        assert_eq!(
            metric_rows(&issues),
            expected_metric(&placed, true, |s| s.issues, false),
            "{period} counts.issues"
        );
        assert_eq!(issues["time_frame"], "all");
        let by_tier = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/metrics/counts.issues?period={period}&by=tier&{RANGE}"),
        )
        .await;
        assert_eq!(
            metric_rows(&by_tier),
            expected_metric(&placed, true, |s| s.issues, true)
        );
        let deploys = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/metrics/counts_monthly.deployments?period={period}&{RANGE}"),
        )
        .await;
        assert_eq!(
            metric_rows(&deploys),
            expected_metric(&placed, false, |s| s.deploys, false),
            "{period} deployments"
        );
    }

    // Spot checks written out by hand, so the model above cannot be wrong in the same way.
    let weekly = get_json(
        &app,
        &token,
        &format!("/api/v1/insights/metrics/counts.issues?period=week&{RANGE}"),
    )
    .await;
    let rows = metric_rows(&weekly);
    // week of 2026-01-12: alpha reset 15 → 12 gives 0; other's -1 is excluded
    assert_eq!(
        rows[&("2026-01-12".into(), "all".into())],
        (1, 0, 0.0, Some(0.0), Some(0.0), 1)
    );
    // week of 2026-02-02: alpha 12 → 20
    assert_eq!(
        rows[&("2026-02-02".into(), "all".into())],
        (1, 1, 8.0, Some(8.0), Some(8.0), 0)
    );
    let monthly = get_json(
        &app,
        &token,
        &format!("/api/v1/insights/installations?period=month&by=tier&{RANGE}"),
    )
    .await;
    let tiers = count_rows(&monthly, "group");
    // January: alpha Premium, other Starter, delta Ultimate (staging and gitlab.com left out)
    assert_eq!(tiers[&("2026-01-01".into(), "Premium".into())], 1);
    assert_eq!(tiers[&("2026-01-01".into(), "Starter".into())], 1);
    assert_eq!(tiers[&("2026-01-01".into(), "Ultimate".into())], 1);
    // February: alpha's licence expired → Free
    assert_eq!(tiers[&("2026-02-01".into(), "Free".into())], 1);

    // The installation endpoint: submissions of (u-a, other.alpha.example), case folded.
    let inst = get_json(
        &app,
        &token,
        "/api/v1/insights/installation?uuid=u-a&hostname=other.alpha.example",
    )
    .await;
    let recorded: Vec<&str> = inst["submissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["recorded_at"].as_str().unwrap())
        .collect();
    assert_eq!(
        recorded,
        [
            "2026-01-08T10:00:00",
            "2026-01-13T10:00:00",
            "2026-01-20T10:00:00"
        ]
    );
    assert_eq!(inst["submissions"][2]["version"], "18.8.1");
    assert_eq!(inst["submissions"][2]["tier"], "Starter");
    // the future and pre-2011 clocks were placed at the receive time
    for uuid_host in [
        "uuid=u-f&hostname=git.future.example",
        "uuid=u-g&hostname=git.old.example",
    ] {
        let inst = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/installation?{uuid_host}"),
        )
        .await;
        let placed = NaiveDateTime::parse_from_str(
            inst["submissions"][0]["recorded_at"].as_str().unwrap(),
            "%Y-%m-%dT%H:%M:%S%.f",
        )
        .unwrap();
        assert!(
            (placed - received).num_seconds().abs() < 120,
            "{placed} vs {received}"
        );
    }
}

/// Every answer of the API for the fleet, to compare before and after a rebuild.
async fn snapshot(app: &TestApp, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for period in ["month", "week"] {
        for path in [
            format!("installations?period={period}&{RANGE}"),
            format!("installations?period={period}&by=tier&{RANGE}"),
            format!("installations?period={period}&by=edition&include_internal=true&{RANGE}"),
            format!("versions?period={period}&{RANGE}"),
            format!("metrics/counts.issues?period={period}&by=tier&{RANGE}"),
            format!("metrics/counts_monthly.deployments?period={period}&by=edition&{RANGE}"),
            format!("metrics/counts.issues?period={period}&include_internal=true&{RANGE}"),
        ] {
            out.push(get_json(app, token, &format!("/api/v1/insights/{path}")).await);
        }
    }
    out
}

#[tokio::test]
async fn incremental_rollups_equal_a_rebuild() {
    // The kept periods are off: the raw UPDATE at the end stands for an earlier release's
    // job, which counts no changes, so a caching server would answer from what it kept and
    // the look-up of unknown previous periods would go untested (the cache: insights_cache).
    let app = TestApp::spawn_with(|s| s.insights.cache_rows = 0).await;
    let token = app.token(Scope::InsightsRead);
    let mut subs = fleet();
    // Arrival in an awkward order, refreshed in between: later weeks before earlier ones.
    subs.reverse();
    for chunk in subs.chunks(4) {
        post_all(&app, chunk).await;
        refresh(&app);
    }
    let received = Utc::now().naive_utc();
    let incremental = snapshot(&app, &token).await;
    // The increments give the rules' numbers, too.
    let placed = counted(&subs, received, true, false);
    assert_eq!(
        metric_rows(
            &get_json(
                &app,
                &token,
                &format!("/api/v1/insights/metrics/counts.issues?period=week&{RANGE}")
            )
            .await
        ),
        expected_metric(&placed, true, |s| s.issues, false)
    );
    let out = run_cli(
        app.settings.store.url.expose_secret(),
        &["insights", "rebuild"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{} submission(s)", subs.len())));
    let rebuilt = snapshot(&app, &token).await;
    assert_eq!(incremental, rebuilt);
    // Periods written by an earlier release's job during a rolling upgrade do not know their
    // previous period (NULL): the series look it up and give the same numbers.
    let mut conn = app.store().get().unwrap();
    version_app::with_conn!(&mut conn, |c| diesel::RunQueryDsl::execute(
        diesel::sql_query("UPDATE insights_periods SET previous_usage_data_id = NULL"),
        c
    ))
    .unwrap();
    assert_eq!(snapshot(&app, &token).await, rebuilt);
    // a refresh with nothing new changes nothing
    refresh(&app);
    assert_eq!(snapshot(&app, &token).await, rebuilt);
}

#[tokio::test]
async fn access_needs_an_insights_token() {
    let app = TestApp::spawn().await;
    let path = "/api/v1/insights/installations";
    let response = app.get(path).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(body["message"].as_str().unwrap().contains("insights:read"));
    let wrong = app.token(Scope::ReleasesWrite);
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", &wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", "vat_nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let token = app.token(Scope::InsightsRead);
    for endpoint in [
        "installations",
        "versions",
        "backport",
        "metrics/counts.issues",
        "installation?uuid=x",
    ] {
        let url = app.url(&format!("/api/v1/insights/{endpoint}"));
        assert_eq!(
            app.client.get(&url).send().await.unwrap().status(),
            401,
            "{endpoint}"
        );
        let response = app
            .client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        // an empty store: empty rows (or 404 naming the unknown key / installation)
        assert!(
            [200, 404].contains(&response.status().as_u16()),
            "{endpoint}: {}",
            response.status()
        );
    }
    let empty = get_json(&app, &token, path).await;
    assert_eq!(empty["rows"], json!([]));
}

#[tokio::test]
async fn bad_input_is_named_and_csv_is_neutralised() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::InsightsRead);
    let get = |path: String| {
        let request = app
            .client
            .get(app.url(&path))
            .header("PRIVATE-TOKEN", &token);
        async move { request.send().await.unwrap() }
    };
    for (query, named) in [
        ("from=2026-03-01&to=2026-02-01", "`from`"),
        ("from=2026-02-30", "`from`"),
        ("to=yesterday", "`to`"),
        ("period=day", "`period`"),
        ("by=colour", "`by`"),
        ("include_internal=maybe", "`include_internal`"),
        ("format=xml", "`format`"),
        ("colour=red", "`colour`"),
    ] {
        let response = get(format!("/api/v1/insights/installations?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "bad_request");
        assert!(
            body["message"].as_str().unwrap().contains(named),
            "{query}: {body}"
        );
    }
    let response = get("/api/v1/insights/metrics/counts.issues?by=country".into()).await;
    assert_eq!(
        response.status(),
        400,
        "metrics split by tier or edition only"
    );
    let response = get("/api/v1/insights/backport?days=0".into()).await;
    assert_eq!(response.status(), 400);
    let response =
        get("/api/v1/insights/backport?affected_from=18.2.0&affected_to=18.1.0".into()).await;
    assert_eq!(response.status(), 400);
    let response = get("/api/v1/insights/metrics/no.such.metric".into()).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("no.such.metric"));
    // an over-wide range is capped, and the answer says so
    let body: Value =
        get("/api/v1/insights/installations?period=week&from=2000-01-01&to=2026-01-01".into())
            .await
            .json()
            .await
            .unwrap();
    assert!(
        body["capped"].as_str().unwrap().contains("capped"),
        "{body}"
    );
    assert_eq!(body["from"], "2023-01-05", "156 weeks before `to`");

    // Markup and formulas from a payload's text fields never reach a spreadsheet as such.
    let evil = minimal_with(json!({
        "uuid": "u-evil", "hostname": "<b>x</b>.example", "edition": "=HYPERLINK(\"http://e\")",
        "recorded_at": "2026-01-07 10:00:00 UTC",
    }));
    assert_eq!(post_json(&app, evil).await.status(), 201);
    refresh(&app);
    let csv = get(format!(
        "/api/v1/insights/installations?by=edition&format=csv&{RANGE}"
    ))
    .await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("period,group,installations,complete"));
    assert_eq!(
        lines.next(),
        Some("2026-01-01,\"'=HYPERLINK(\"\"http://e\"\")\",1,true")
    );
    let csv = get(
        "/api/v1/insights/installation?uuid=u-evil&hostname=%3Cb%3Ex%3C/b%3E.example&format=csv"
            .into(),
    )
    .await;
    let text = csv.text().await.unwrap();
    assert!(text.contains("\"'=HYPERLINK("), "{text}");
}

/// The bundled release table, read here independently: the highest patch of each line.
fn latest_patches() -> BTreeMap<String, (u64, u64, u64)> {
    let csv = include_str!("../../assets/releases.csv");
    let mut latest: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let version = line.split(',').next().unwrap();
        let mut n = version.split('.').map(|p| p.parse::<u64>().unwrap());
        let v = (n.next().unwrap(), n.next().unwrap(), n.next().unwrap());
        let slot = latest.entry(format!("{}.{}", v.0, v.1)).or_insert(v);
        *slot = (*slot).max(v);
    }
    latest
}

#[tokio::test]
async fn backport_report_deduplicates_hosts_over_both_sources() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let token = app.token(Scope::InsightsRead);
    let two_days_ago = (Utc::now().naive_utc() - Duration::days(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let old = (Utc::now().naive_utc() - Duration::days(60))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    // (uuid, host, recorded_at, version)
    let pings = [
        ("p1", "x1.example", two_days_ago.as_str(), "18.7.1"),
        ("p2", "x2.example", two_days_ago.as_str(), "18.8.11"),
        ("p3", "x3.example", old.as_str(), "18.8.0"), // outside the window
        ("p4", "staging.x4.example", two_days_ago.as_str(), "18.8.0"), // staging
    ];
    for (uuid, host, recorded, version) in pings {
        let body = minimal_with(
            json!({"uuid": uuid, "hostname": host, "version": version, "recorded_at": format!("{recorded} UTC")}),
        );
        assert_eq!(post_json(&app, body).await.status(), 201);
    }
    // version checks now: x1 has moved to 18.8.0 since its ping; y1 only checks
    let checks = [
        ("x1.example", "18.8.0"),
        ("y1.example", "17.11.0"),
        ("gitlab.com", "18.8.0"),
    ];
    for (host, version) in checks {
        crate::insights_fleet::check_from(&app, host, version).await;
    }
    wait_for_total(&app.store(), 3).await;
    refresh(&app);
    let body = get_json(
        &app,
        &token,
        "/api/v1/insights/backport?days=28&affected_from=18.8.0&affected_to=18.8.5",
    )
    .await;
    let rows: BTreeMap<String, Value> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["minor"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(
        rows.keys().collect::<BTreeSet<_>>(),
        ["17.11", "18.7", "18.8"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect()
    );
    let num = |line: &str, field: &str| rows[line][field].as_u64().unwrap();
    // installations: pings in the window by their line; hosts: checks; active: each host once
    assert_eq!(
        (
            num("18.8", "installations"),
            num("18.8", "hosts"),
            num("18.8", "active")
        ),
        (1, 1, 2)
    );
    assert_eq!(
        (
            num("18.7", "installations"),
            num("18.7", "hosts"),
            num("18.7", "active")
        ),
        (1, 0, 0)
    );
    assert_eq!(
        (
            num("17.11", "installations"),
            num("17.11", "hosts"),
            num("17.11", "active")
        ),
        (0, 1, 1)
    );
    // x2 runs 18.8.11, the latest patch of 18.8 in the bundled table; x1 is in the what-if range
    let latest = latest_patches();
    for line in ["17.11", "18.7", "18.8"] {
        let (a, b, c) = latest[line];
        assert_eq!(rows[line]["latest_patch"], format!("{a}.{b}.{c}"), "{line}");
    }
    assert_eq!(num("18.8", "on_latest_patch"), 1);
    assert_eq!(num("18.8", "affected"), 1);
    assert_eq!(num("17.11", "affected"), 0);
    // severity: the worst check.json answer among the line's versions seen
    for (line, versions) in [
        ("18.8", vec!["18.8.11", "18.8.0"]),
        ("18.7", vec!["18.7.1"]),
        ("17.11", vec!["17.11.0"]),
    ] {
        let mut worst = "success";
        for v in versions {
            let verdict: Value = app
                .get(&check_path("check.json", v))
                .await
                .json()
                .await
                .unwrap();
            let s = verdict["severity"].as_str().unwrap().to_string();
            let rank = |s: &str| {
                ["success", "warning", "danger"]
                    .iter()
                    .position(|x| *x == s)
                    .unwrap()
            };
            if rank(&s) > rank(worst) {
                worst = ["success", "warning", "danger"][rank(&s)];
            }
        }
        assert_eq!(rows[line]["severity"], worst, "{line}");
    }
    // the installation page's version-check days come from the hostname
    let inst = get_json(
        &app,
        &token,
        "/api/v1/insights/installation?uuid=p1&hostname=x1.example",
    )
    .await;
    assert_eq!(inst["version_checks"][0]["version"], "18.8.0");
    assert_eq!(inst["submissions"][0]["version"], "18.7.1");
}
