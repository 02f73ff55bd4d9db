//! The fleet views of `/api/v1/insights/…` (activity, sources, penetration, versions behind,
//! vulnerable share, both sources per line, licences, raw payloads), on the store under test.
//! Every expected number is computed here from the posted payloads and checks, by a plain
//! model of the rules in docs/insights.md, independent of the server's code.

use crate::check::check_path;
use crate::check_recording::wait_for_total;
use crate::helpers::TestApp;
use crate::insights::refresh;
use crate::usage_data::{minimal_with, post_json};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use version_app::auth::Scope;

/// One posted submission.
#[derive(Clone, Debug)]
pub(crate) struct Ping {
    pub(crate) uuid: &'static str,
    pub(crate) host: &'static str,
    pub(crate) at: NaiveDateTime,
    pub(crate) version: &'static str,
    pub(crate) edition: &'static str,
    pub(crate) active: i64,
    pub(crate) seats: Option<i64>,
    pub(crate) expires: Option<NaiveDate>,
    pub(crate) trial: bool,
    pub(crate) add_on: Option<i64>,
}

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(&format!("{text} 10:00:00"), "%Y-%m-%d %H:%M:%S").unwrap()
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one row of the fleet table per call"
)]
fn ping(
    uuid: &'static str,
    host: &'static str,
    at: NaiveDateTime,
    version: &'static str,
    edition: &'static str,
    active: i64,
    seats: Option<i64>,
    expires: Option<NaiveDate>,
) -> Ping {
    Ping {
        uuid,
        host,
        at,
        version,
        edition,
        active,
        seats,
        expires,
        trial: false,
        add_on: None,
    }
}

/// History in January–April 2026 (a gap, a churn, two installations on one uuid, an expired
/// licence, a special active-user count, a staging host) and recent submissions with the
/// licence cases (over seats, expiring in 20 and 60 days, trials, an add-on, gitlab.com).
pub(crate) fn fleet() -> Vec<Ping> {
    let now = Utc::now().naive_utc() - Duration::minutes(30);
    // Expiries count from the server's today, not from `now`'s date: in the first half hour
    // after midnight UTC `now` is still yesterday, and "expires in 20 days" became 19.
    let today = Utc::now().date_naive();
    let mut r1 = ping(
        "ur1",
        "r1.example",
        now,
        "18.8.0",
        "EEP",
        12,
        Some(10),
        Some(today + Duration::days(20)),
    );
    r1.add_on = Some(1);
    let mut r2 = ping(
        "ur2",
        "r2.example",
        now,
        "18.5.0",
        "EEU",
        5,
        Some(100),
        Some(today + Duration::days(60)),
    );
    r2.trial = true;
    let mut r4 = ping(
        "ur4",
        "<b>r4</b>.example",
        now,
        "18.2.0",
        "EE",
        2,
        Some(0),
        Some(today - Duration::days(5)),
    );
    r4.trial = true;
    vec![
        ping(
            "ua",
            "a.example",
            at("2026-01-10"),
            "18.6.2",
            "EEP",
            8,
            Some(10),
            Some(day("2027-06-01")),
        ),
        ping(
            "ua",
            "a.example",
            at("2026-02-10"),
            "18.7.0",
            "EEP",
            12,
            Some(10),
            Some(day("2027-06-01")),
        ),
        ping(
            "ua",
            "a.example",
            at("2026-04-10"),
            "18.8.1",
            "EEP",
            9,
            Some(10),
            Some(day("2027-06-01")),
        ),
        ping(
            "ub",
            "b.example",
            at("2026-02-20"),
            "18.0.0",
            "EEU",
            30,
            Some(40),
            Some(day("2027-01-01")),
        ),
        ping(
            "ub",
            "b.example",
            at("2026-02-05"),
            "17.11.0",
            "EEU",
            50,
            Some(40),
            Some(day("2027-01-01")),
        ),
        ping(
            "ub",
            "b.example",
            at("2026-03-05"),
            "18.8.0",
            "EEU",
            45,
            Some(40),
            Some(day("2027-01-01")),
        ),
        ping(
            "uc",
            "staging.c.example",
            at("2026-01-15"),
            "18.8.0",
            "CE",
            4,
            None,
            None,
        ),
        ping(
            "ua",
            "d.example",
            at("2026-01-20"),
            "16.0.0",
            "EE",
            5,
            Some(5),
            None,
        ),
        ping(
            "ua",
            "d.example",
            at("2026-03-20"),
            "18.8.0",
            "EE",
            3,
            Some(5),
            Some(day("2026-02-01")),
        ),
        ping(
            "ue",
            "e.example",
            at("2026-03-10"),
            "18.8.0",
            "EEP",
            -1,
            Some(10),
            None,
        ),
        r1,
        r2,
        ping(
            "ur3",
            "gitlab.com",
            now,
            "18.8.0",
            "EEU",
            999,
            Some(1),
            None,
        ),
        r4,
    ]
}

/// Version checks made now: (Referer host, version).
pub(crate) const CHECKS: [(&str, &str); 4] = [
    ("r1.example", "18.8.0"),
    ("a.example", "18.8.1"),
    ("y.example", "17.11.0"),
    ("staging.z.example", "18.8.0"),
];

/// When a test licence started: a year before it expires.
pub(crate) fn starts_of(expires: NaiveDate) -> NaiveDate {
    expires - Duration::days(365)
}

pub(crate) fn payload(p: &Ping) -> Vec<u8> {
    let add_ons = match p.add_on {
        Some(n) => json!({"GitLab_FileLocks": n}),
        None => json!({}),
    };
    minimal_with(json!({
        "uuid": p.uuid, "hostname": p.host, "version": p.version, "edition": p.edition,
        "recorded_at": format!("{} UTC", p.at.format("%Y-%m-%d %H:%M:%S")),
        "active_user_count": p.active, "license_user_count": p.seats,
        "license_expires_at": p.expires.map(|d| d.to_string()), "license_trial": p.trial,
        // a full timestamp, as GitLab sends it: the licence ran a year before its expiry
        "license_starts_at": p.expires.map(|d| starts_of(d).format("%Y-%m-%dT08:30:00.000Z").to_string()),
        "license_add_ons": add_ons, "license_plan": p.edition.to_lowercase(),
    }))
}

/// Posts the fleet and the checks, refreshes the rollups; returns each submission's id and
/// the payload posted.
pub(crate) async fn arrange(app: &TestApp) -> Vec<(i64, Vec<u8>)> {
    let mut ids = Vec::new();
    for p in fleet() {
        let sent = payload(&p);
        let response = post_json(app, sent.clone()).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push((body["conv_index"]["usage_data_id"].as_i64().unwrap(), sent));
    }
    for (host, version) in CHECKS {
        check_from(app, host, version).await;
    }
    wait_for_total(&app.store(), CHECKS.len() as i64).await;
    refresh(app);
    ids
}

/// A version check of `version` from a page of `host`, as GitLab's help page sends it.
pub(crate) async fn check_from(app: &TestApp, host: &str, version: &str) {
    let response = app
        .client
        .get(app.url(&check_path("check.json", version)))
        .header("Referer", format!("https://{host}/help"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

pub(crate) async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

// ---- the independent model -------------------------------------------------------------

pub(crate) fn excluded(host: &str) -> bool {
    let h = host.to_lowercase();
    h == "gitlab.com" || h.ends_with(".gitlab.com") || h.starts_with("staging.")
}

pub(crate) fn start(d: NaiveDate, week: bool) -> NaiveDate {
    if week {
        d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
    } else {
        NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap()
    }
}

pub(crate) type Inst = (String, String);

/// The counted submission per (period, installation): the last by recorded_at.
pub(crate) fn counted(pings: &[Ping], week: bool) -> BTreeMap<(NaiveDate, Inst), Ping> {
    let mut out: BTreeMap<(NaiveDate, Inst), Ping> = BTreeMap::new();
    for p in pings.iter().filter(|p| !excluded(p.host)) {
        let key = (
            start(p.at.date(), week),
            (p.uuid.to_string(), p.host.to_lowercase()),
        );
        if out.get(&key).is_none_or(|q| p.at >= q.at) {
            out.insert(key, p.clone());
        }
    }
    out
}

fn prev(p: NaiveDate, week: bool) -> NaiveDate {
    start(p - Duration::days(1), week)
}

fn line(v: &str) -> (u64, u64, u64) {
    let n: Vec<u64> = v.split('.').map(|x| x.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

/// (period, active, new, returning, reactivated, churned) over every shown period.
fn expected_activity(pings: &[Ping], week: bool) -> Vec<(String, u64, u64, u64, u64, u64)> {
    let c = counted(pings, week);
    let mut active: BTreeMap<NaiveDate, BTreeSet<Inst>> = BTreeMap::new();
    let mut first: BTreeMap<Inst, NaiveDate> = BTreeMap::new();
    for (period, inst) in c.keys() {
        active.entry(*period).or_default().insert(inst.clone());
        let f = first.entry(inst.clone()).or_insert(*period);
        *f = (*f).min(*period);
    }
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    let mut p = start(day("2025-12-01"), week);
    let current = start(Utc::now().date_naive(), week);
    while p <= current {
        let now = active.get(&p).unwrap_or(&empty);
        let before = active.get(&prev(p, week)).unwrap_or(&empty);
        let new = now.iter().filter(|i| first[*i] == p).count() as u64;
        let returning = now
            .iter()
            .filter(|i| first[*i] < p && before.contains(*i))
            .count() as u64;
        let churned = before.difference(now).count() as u64;
        let row = (
            p.to_string(),
            now.len() as u64,
            new,
            returning,
            now.len() as u64 - new - returning,
            churned,
        );
        if row.1 + row.5 > 0 {
            out.push(row);
        }
        p = start(p + Duration::days(if week { 7 } else { 32 }), week);
    }
    out
}

/// Check-only hosts now: host → version, deduplicated by hostname with this period's pings.
fn check_only(pings: &[Ping], week: bool) -> BTreeMap<String, &'static str> {
    let now = start(Utc::now().date_naive(), week);
    let pinging: BTreeSet<String> = counted(pings, week)
        .keys()
        .filter(|(p, _)| *p == now)
        .map(|(_, i)| i.1.clone())
        .collect();
    CHECKS
        .iter()
        .filter(|(h, _)| !excluded(h) && !pinging.contains(*h))
        .map(|(h, v)| (h.to_string(), *v))
        .collect()
}

pub(crate) fn rows(body: &Value) -> &Vec<Value> {
    body["rows"].as_array().unwrap()
}

pub(crate) const RANGE: &str = "from=2025-12-01&to=2027-01-01";

#[tokio::test]
async fn activity_and_sources_follow_the_definitions() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let token = app.token(Scope::InsightsRead);
    arrange(&app).await;
    let pings = fleet();
    for (period, week) in [("month", false), ("week", true)] {
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/overview/activity?period={period}&{RANGE}"),
        )
        .await;
        let got: Vec<(String, u64, u64, u64, u64, u64)> = rows(&body)
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap();
                (
                    r["period"].as_str().unwrap().into(),
                    n("active"),
                    n("new"),
                    n("returning"),
                    n("reactivated"),
                    n("churned"),
                )
            })
            .collect();
        assert_eq!(got, expected_activity(&pings, week), "{period}");
        // the sources: pings per period plus check-only hosts in the current period
        let c = counted(&pings, week);
        let current = start(Utc::now().date_naive(), week);
        let only = check_only(&pings, week);
        let mut want: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for (p, _) in c.keys() {
            want.entry(p.to_string()).or_default().0 += 1;
        }
        for host in only.keys() {
            let slot = want.entry(current.to_string()).or_default();
            slot.1 += 1;
            let pinged_before = c.keys().any(|(p, i)| i.1 == *host && *p <= current);
            slot.2 += u64::from(!pinged_before);
        }
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/overview/sources?period={period}&{RANGE}"),
        )
        .await;
        let got: BTreeMap<String, (u64, u64, u64)> = rows(&body)
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap();
                assert_eq!(n("total"), n("service_ping") + n("version_check_only"));
                let share = r["service_ping_share"].as_f64().unwrap();
                assert!((share - n("service_ping") as f64 / n("total") as f64).abs() < 1e-12);
                (
                    r["period"].as_str().unwrap().into(),
                    (
                        n("service_ping"),
                        n("version_check_only"),
                        n("never_pinged"),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
        // a.example pinged in April, so it is check-only now but not "never pinged"
        assert_eq!(want[&current.to_string()].1, 2, "a.example and y.example");
        assert_eq!(
            want[&current.to_string()].2,
            1,
            "only y.example never pinged"
        );
    }
    // hand-checked: February new b, returning a and d? d had January only → churned in February
    let body = get_json(
        &app,
        &token,
        &format!("/api/v1/insights/overview/activity?period=month&{RANGE}"),
    )
    .await;
    let feb = rows(&body)
        .iter()
        .find(|r| r["period"] == "2026-02-01")
        .unwrap();
    assert_eq!(
        (
            feb["new"].as_u64(),
            feb["returning"].as_u64(),
            feb["churned"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let apr = rows(&body)
        .iter()
        .find(|r| r["period"] == "2026-04-01")
        .unwrap();
    assert_eq!(
        apr["reactivated"].as_u64(),
        Some(1),
        "a.example came back after March"
    );
    // CSV has the same rows
    let csv = app
        .client
        .get(app.url(&format!(
            "/api/v1/insights/overview/activity?period=month&{RANGE}&format=csv"
        )))
        .header("PRIVATE-TOKEN", &token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("period,active,new,returning,reactivated,churned,complete")
    );
    assert_eq!(lines.count(), rows(&body).len());
}

/// `(lines released by then, as (major, minor))` from the bundled release table.
fn released_lines(by: NaiveDate) -> BTreeSet<(u64, u64)> {
    include_str!("../../assets/releases.csv")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cells = l.split(',');
            let v = line(cells.next()?);
            let on = day(cells.next()?);
            (on <= by).then_some((v.0, v.1))
        })
        .collect()
}

#[tokio::test]
async fn versions_penetration_behind_vulnerable_and_both_sources() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let token = app.token(Scope::InsightsRead);
    arrange(&app).await;
    let pings = fleet();
    let mut verdicts: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for p in &pings {
        let v: Value = app
            .get(&check_path("check.json", p.version))
            .await
            .json()
            .await
            .unwrap();
        verdicts.insert(
            p.version,
            (
                v["severity"] == "danger",
                v["critical_vulnerability"] == true,
            ),
        );
    }
    for (period, week) in [("month", false), ("week", true)] {
        let c = counted(&pings, week);
        // penetration of 18.8 (= 18.8.0)
        let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((p, _), s) in &c {
            let slot = want.entry(p.to_string()).or_default();
            slot.0 += 1;
            slot.1 += u64::from(line(s.version) >= (18, 8, 0));
        }
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/versions/penetration?period={period}&version=18.8&{RANGE}"),
        )
        .await;
        let got: BTreeMap<String, (u64, u64)> = rows(&body)
            .iter()
            .map(|r| {
                assert_eq!(r["version"], "18.8.0");
                (
                    r["period"].as_str().unwrap().into(),
                    (
                        r["installations"].as_u64().unwrap(),
                        r["at_or_above"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
        // versions behind: release lines out by the submission's day and newer than its own
        let mut want: BTreeMap<(String, Option<u64>), u64> = BTreeMap::new();
        for ((p, _), s) in &c {
            let lines = released_lines(s.at.date());
            let own = line(s.version);
            let behind = (!lines.is_empty())
                .then(|| lines.iter().filter(|l| **l > (own.0, own.1)).count() as u64);
            *want.entry((p.to_string(), behind)).or_default() += 1;
        }
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/versions/behind?period={period}&{RANGE}"),
        )
        .await;
        let got: BTreeMap<(String, Option<u64>), u64> = rows(&body)
            .iter()
            .map(|r| {
                (
                    (
                        r["period"].as_str().unwrap().into(),
                        r["minors_behind"].as_u64(),
                    ),
                    r["installations"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
        assert!(
            want.keys().any(|(_, b)| b.unwrap_or(0) > 5),
            "16.0.0 is far behind in 2026"
        );
        // vulnerable share by today's check.json verdict
        let mut want: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for ((p, _), s) in &c {
            let (danger, critical) = verdicts[s.version];
            let slot = want.entry(p.to_string()).or_default();
            slot.0 += 1;
            slot.1 += u64::from(danger);
            slot.2 += u64::from(critical);
        }
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/versions/vulnerable_share?period={period}&{RANGE}"),
        )
        .await;
        let got: BTreeMap<String, (u64, u64, u64)> = rows(&body)
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap();
                (
                    r["period"].as_str().unwrap().into(),
                    (n("installations"), n("danger"), n("critical")),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
        // both sources per minor line, check-only hosts by their check's line
        let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for ((p, _), s) in &c {
            let l = line(s.version);
            want.entry((p.to_string(), format!("{}.{}", l.0, l.1)))
                .or_default()
                .0 += 1;
        }
        let current = start(Utc::now().date_naive(), week).to_string();
        for v in check_only(&pings, week).values() {
            let l = line(v);
            want.entry((current.clone(), format!("{}.{}", l.0, l.1)))
                .or_default()
                .1 += 1;
        }
        let body = get_json(
            &app,
            &token,
            &format!("/api/v1/insights/versions/sources?period={period}&{RANGE}"),
        )
        .await;
        let got: BTreeMap<(String, String), (u64, u64)> = rows(&body)
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap();
                assert_eq!(n("total"), n("service_ping") + n("version_check_only"));
                (
                    (
                        r["period"].as_str().unwrap().into(),
                        r["minor"].as_str().unwrap().into(),
                    ),
                    (n("service_ping"), n("version_check_only")),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
    }
    // the default X is the newest minor line released by today; a bad one is named
    let body = get_json(
        &app,
        &token,
        &format!("/api/v1/insights/versions/penetration?{RANGE}"),
    )
    .await;
    let newest = released_lines(Utc::now().date_naive())
        .into_iter()
        .max()
        .unwrap();
    assert_eq!(
        rows(&body)[0]["version"],
        format!("{}.{}.0", newest.0, newest.1)
    );
    let bad = app
        .client
        .get(app.url("/api/v1/insights/versions/penetration?version=banana"))
        .header("PRIVATE-TOKEN", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("`version`"));
}
