//! `/api/v1/insights/versions/days_behind`: per period, the installations by how many days
//! their counted submission ran behind the release of its own version. The expected numbers
//! come from `assets/releases.csv` and the posted fleet, computed here.

use crate::helpers::TestApp;
use crate::insights_fleet::{arrange, counted, fleet, rows, RANGE};
use crate::insights_model::get_json;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use version_app::auth::Scope;

/// The release day of exactly `version`, from the bundled release table.
fn released_on(version: &str) -> Option<NaiveDate> {
    include_str!("../../assets/releases.csv")
        .lines()
        .skip(1)
        .find_map(|l| {
            let mut cells = l.split(',');
            (cells.next()? == version)
                .then(|| NaiveDate::parse_from_str(cells.next()?, "%Y-%m-%d").ok())
                .flatten()
        })
}

/// The bucket, written out from the documented bounds.
fn bucket(days: i64) -> &'static str {
    match days {
        ..=29 => "0-29 days",
        30..=89 => "30-89 days",
        90..=179 => "90-179 days",
        180..=364 => "180-364 days",
        _ => "365+ days",
    }
}

#[tokio::test]
async fn days_behind_count_from_the_release_of_the_own_version() {
    let app =
        TestApp::spawn_with(|s| s.check.flush_interval = std::time::Duration::from_millis(100))
            .await;
    let token = app.token(Scope::InsightsRead);
    arrange(&app).await;
    let pings = fleet();
    for (period, week) in [("month", false), ("week", true)] {
        let mut want: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
        for ((p, _), s) in &counted(&pings, week) {
            let days = released_on(s.version).map(|on| (s.at.date() - on).num_days().max(0));
            let b = days.map(|d| bucket(d).to_owned());
            *want.entry((p.to_string(), b)).or_default() += 1;
        }
        let path = format!("/api/v1/insights/versions/days_behind?period={period}&{RANGE}");
        let body = get_json(&app, &token, &path).await;
        let got: BTreeMap<(String, Option<String>), u64> = rows(&body)
            .iter()
            .map(|r| {
                (
                    (
                        r["period"].as_str().unwrap().into(),
                        r["days_behind"].as_str().map(str::to_owned),
                    ),
                    r["installations"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{period}");
        assert!(
            want.keys().any(|(_, b)| b.as_deref() == Some("365+ days")),
            "16.0.0 is years old in 2026"
        );
        // CSV carries the same rows
        let csv = app
            .client
            .get(app.url(&format!("{path}&format=csv")))
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
            Some("period,days_behind,min_days,installations,complete")
        );
        assert_eq!(lines.count(), rows(&body).len());
    }
}
