//! The independent model of the analysts' rules that the insights tests compute their
//! expected numbers with: plain code, written apart from the server's, from the posted
//! submissions.

use crate::helpers::TestApp;
use crate::insights::Sub;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde_json::Value;
use std::collections::BTreeMap;

/// A posted submission placed in a period, as the rules say.
pub(crate) struct Placed {
    pub(crate) installation: (String, String),
    pub(crate) period: NaiveDate,
    /// Order of the submission: (effective recorded_at, post index).
    pub(crate) order: (NaiveDateTime, usize),
    pub(crate) sub: Sub,
}

pub(crate) fn month_of(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap()
}

pub(crate) fn week_of(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// The last submission per installation and period (`week` or `month`).
pub(crate) fn counted(
    subs: &[Sub],
    received: NaiveDateTime,
    week: bool,
    include_internal: bool,
) -> Vec<Placed> {
    let mut best: BTreeMap<((String, String), NaiveDate), Placed> = BTreeMap::new();
    for (i, s) in subs.iter().enumerate() {
        let host = s.host.to_lowercase();
        let internal =
            host == "gitlab.com" || host.ends_with(".gitlab.com") || host.starts_with("staging.");
        if internal && !include_internal {
            continue;
        }
        let believable =
            s.recorded_at <= received + Duration::days(1) && s.recorded_at.year() >= 2011;
        let effective = if believable { s.recorded_at } else { received };
        let period = if week {
            week_of(effective.date())
        } else {
            month_of(effective.date())
        };
        let installation = (s.uuid.to_string(), host);
        let placed = Placed {
            installation: installation.clone(),
            period,
            order: (effective, i),
            sub: s.clone(),
        };
        let key = (installation, period);
        if best.get(&key).is_none_or(|b| placed.order > b.order) {
            best.insert(key, placed);
        }
    }
    best.into_values().collect()
}

pub(crate) fn is_special(v: f64) -> bool {
    [-1.0, -2.0, -3.0, -1000.0].contains(&v)
}

pub(crate) fn rank(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let r = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[r - 1])
}

/// Expected metric rows `(period, group) -> (reporting, adopting, sum, median, p90, excluded)`.
pub(crate) type MetricExpect =
    BTreeMap<(String, String), (u64, u64, f64, Option<f64>, Option<f64>, u64)>;

pub(crate) fn expected_metric(
    placed: &[Placed],
    cumulative: bool,
    value: fn(&Sub) -> f64,
    by_tier: bool,
) -> MetricExpect {
    // per installation, its counted submissions by period
    let mut per_installation: BTreeMap<(String, String), Vec<&Placed>> = BTreeMap::new();
    for p in placed {
        per_installation
            .entry(p.installation.clone())
            .or_default()
            .push(p);
    }
    let mut groups: BTreeMap<(String, String), (Vec<f64>, u64)> = BTreeMap::new();
    for list in per_installation.values_mut() {
        list.sort_by_key(|p| p.period);
        for (i, p) in list.iter().enumerate() {
            let group = if by_tier {
                p.sub.tier.to_string()
            } else {
                "all".to_string()
            };
            let key = (p.period.to_string(), group);
            let current = value(&p.sub);
            if is_special(current) {
                groups.entry(key).or_default().1 += 1;
                continue;
            }
            let v = if cumulative {
                let Some(previous) = i.checked_sub(1).map(|j| value(&list[j].sub)) else {
                    continue;
                };
                if is_special(previous) {
                    continue;
                }
                (current - previous).max(0.0)
            } else {
                current
            };
            groups.entry(key).or_default().0.push(v);
        }
    }
    groups
        .into_iter()
        .map(|(k, (mut values, excluded))| {
            values.sort_by(f64::total_cmp);
            let adopting = values.iter().filter(|v| **v > 0.0).count() as u64;
            let sum = values.iter().sum();
            (
                k,
                (
                    values.len() as u64,
                    adopting,
                    sum,
                    rank(&values, 50),
                    rank(&values, 90),
                    excluded,
                ),
            )
        })
        .collect()
}

pub(crate) fn metric_rows(body: &Value) -> MetricExpect {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["period"].as_str().unwrap().to_string(),
                    r["group"].as_str().unwrap().to_string(),
                ),
                (
                    r["installations_reporting"].as_u64().unwrap(),
                    r["adopting"].as_u64().unwrap(),
                    r["sum"].as_f64().unwrap(),
                    r["median"].as_f64(),
                    r["p90"].as_f64(),
                    r["excluded_special"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

pub(crate) fn count_rows(body: &Value, group_field: &str) -> BTreeMap<(String, String), i64> {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r["period"].as_str().unwrap().to_string(),
                    r[group_field].as_str().unwrap().to_string(),
                ),
                r["installations"].as_i64().unwrap(),
            )
        })
        .collect()
}

pub(crate) fn expected_counts(
    placed: &[Placed],
    group: impl Fn(&Placed) -> String,
) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for p in placed {
        *out.entry((p.period.to_string(), group(p))).or_default() += 1;
    }
    out
}

pub(crate) fn minor_of(version: &str) -> String {
    let mut parts = version.split('.');
    format!("{}.{}", parts.next().unwrap(), parts.next().unwrap())
}

/// GET an insights endpoint with a token, expecting 200.
pub(crate) async fn get_json(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}
