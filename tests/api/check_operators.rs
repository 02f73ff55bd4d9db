//! Every SQL block of `docs/operators.md` runs, as written, on the backend under test and
//! answers what the page says it answers.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};
use std::collections::BTreeMap;
use version_app::db::models::version_checks::{self, VersionStatus};
use version_app::db::AnyConnection;
use version_app::domain::csv_import::parse_releases_csv;
use version_app::domain::verdict::ReleaseTable;
use version_app::domain::version::Version;
use version_app::domain::version_status::version_facts;
use version_app::recorder::CheckCount;
use version_app::startup::BUNDLED_RELEASES_CSV;
use version_app::with_conn;

use crate::helpers::TestApp;

/// The named SQL blocks of the operators' page.
fn documented_queries() -> BTreeMap<String, String> {
    let page = include_str!("../../docs/operators.md");
    let mut queries = BTreeMap::new();
    for block in page.split("```sql\n").skip(1) {
        let sql = block.split("```").next().unwrap();
        let name = sql
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- name: "))
            .expect("every SQL block starts with `-- name: …`");
        queries.insert(name.trim().to_owned(), sql.to_owned());
    }
    queries
}

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
}

fn check(host: &str, version: &str, country: &str, count: u64, when: &str) -> CheckCount {
    CheckCount {
        day: at(when).date(),
        host: host.into(),
        version: version.into(),
        country: country.into(),
        count,
        first_seen: at(when),
        last_seen: at(when),
    }
}

/// A small world, written the way the recorder writes it (verdicts from the bundled table).
fn seed(conn: &mut AnyConnection) {
    let table = ReleaseTable::new(parse_releases_csv(BUNDLED_RELEASES_CSV).unwrap());
    let mut rows = [
        // critical: misses 17.9.2 (2025-03-12)
        check("crit.example", "17.9.1", "DE", 3, "2026-06-02 10:00"),
        // non-critical danger: misses 19.1.1
        check("old.example", "19.1.0", "FR", 1, "2026-06-02 11:00"),
        // up to date
        check("new.example", "19.1.1", "DE", 5, "2026-06-03 09:00"),
        // warning; earlier on a vulnerable version: only the latest check counts
        check("warn.example", "17.9.1", "", 2, "2026-05-30 09:00"),
        check("warn.example", "19.0.3", "", 4, "2026-06-03 12:00"),
        // no Referer (check.json)
        check("", "19.0.3", "", 7, "2026-06-03 13:00"),
    ];
    rows.sort_by(|a, b| (a.day, &a.host, &a.version).cmp(&(b.day, &b.host, &b.version)));
    let statuses: Vec<VersionStatus> = ["17.9.1", "19.0.3", "19.1.0", "19.1.1"]
        .iter()
        .map(|v| {
            let facts = version_facts(&table, &Version::parse(v).unwrap());
            VersionStatus::stamped(facts, chrono::Utc::now().naive_utc())
        })
        .collect();
    // One batch per day, as flushes would.
    let mut days: Vec<_> = rows.iter().map(|r| r.day).collect();
    days.dedup();
    for day in days {
        let batch: Vec<CheckCount> = rows.iter().filter(|r| r.day == day).cloned().collect();
        version_checks::record_batch(conn, &batch, &statuses).unwrap();
    }
}

#[derive(Debug, QueryableByName)]
struct Vulnerable {
    #[diesel(sql_type = Text)]
    hostname: String,
    #[diesel(sql_type = Text)]
    last_version: String,
    #[diesel(sql_type = Text)]
    severity: String,
    #[diesel(sql_type = Bool)]
    critical: bool,
    #[diesel(sql_type = Nullable<Text>)]
    country: Option<String>,
    #[diesel(sql_type = Timestamp)]
    last_seen: NaiveDateTime,
}

#[derive(Debug, QueryableByName)]
struct SeverityCount {
    #[diesel(sql_type = Text)]
    severity: String,
    #[diesel(sql_type = BigInt)]
    instances: i64,
}

#[derive(Debug, QueryableByName)]
struct VersionChecks {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = BigInt)]
    checks: i64,
}

#[derive(Debug, QueryableByName)]
struct CountryCount {
    #[diesel(sql_type = Text)]
    country: String,
    #[diesel(sql_type = BigInt)]
    instances: i64,
}

#[derive(Debug, QueryableByName)]
struct Daily {
    #[diesel(sql_type = diesel::sql_types::Date)]
    day: chrono::NaiveDate,
    #[diesel(sql_type = BigInt)]
    instances: i64,
    #[diesel(sql_type = BigInt)]
    checks: i64,
}

#[derive(Debug, QueryableByName)]
struct HostVersion {
    #[diesel(sql_type = Text)]
    hostname: String,
    #[diesel(sql_type = Text)]
    last_version: String,
}

#[tokio::test]
async fn every_documented_query_runs_and_answers() {
    let app = TestApp::spawn().await;
    let db = app.store();
    let mut conn = db.get().unwrap();
    seed(&mut conn);
    let queries = documented_queries();
    assert_eq!(
        queries.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "checks_per_version",
            "daily_activity",
            "instances_by_country",
            "instances_by_severity",
            "instances_on_major",
            "prune_old_counts",
            "vulnerable_instances"
        ]
    );

    let vulnerable: Vec<Vulnerable> = with_conn!(&mut conn, |c| diesel::sql_query(
        &queries["vulnerable_instances"]
    )
    .load(c))
    .unwrap();
    let summary: Vec<(&str, &str, &str, bool, Option<&str>)> = vulnerable
        .iter()
        .map(|v| {
            (
                v.hostname.as_str(),
                v.last_version.as_str(),
                v.severity.as_str(),
                v.critical,
                v.country.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("crit.example", "17.9.1", "danger", true, Some("DE")),
            ("old.example", "19.1.0", "danger", false, Some("FR")),
        ]
    );
    assert!(vulnerable[0].last_seen <= at("2026-06-02 10:00"));

    let by_severity: Vec<SeverityCount> = with_conn!(&mut conn, |c| diesel::sql_query(
        &queries["instances_by_severity"]
    )
    .load(c))
    .unwrap();
    let by_severity: Vec<(&str, i64)> = by_severity
        .iter()
        .map(|r| (r.severity.as_str(), r.instances))
        .collect();
    assert_eq!(by_severity, [("danger", 2), ("success", 1), ("warning", 1)]);

    let per_version: Vec<VersionChecks> = with_conn!(&mut conn, |c| diesel::sql_query(
        &queries["checks_per_version"]
    )
    .load(c))
    .unwrap();
    let per_version: Vec<(&str, i64)> = per_version
        .iter()
        .map(|r| (r.version.as_str(), r.checks))
        .collect();
    // Numeric order (19.1 > 19.0 > 17.9), and 2026-05-30 is before the window.
    assert_eq!(
        per_version,
        [("19.1.1", 5), ("19.1.0", 1), ("19.0.3", 11), ("17.9.1", 3)]
    );

    let daily: Vec<Daily> =
        with_conn!(&mut conn, |c| diesel::sql_query(&queries["daily_activity"])
            .load(c))
        .unwrap();
    let daily: Vec<(String, i64, i64)> = daily
        .iter()
        .map(|d| (d.day.to_string(), d.instances, d.checks))
        .collect();
    assert_eq!(
        daily,
        [
            ("2026-05-30".into(), 1, 2),
            ("2026-06-02".into(), 2, 4),
            ("2026-06-03".into(), 2, 16)
        ]
    );

    let by_country: Vec<CountryCount> = with_conn!(&mut conn, |c| diesel::sql_query(
        &queries["instances_by_country"]
    )
    .load(c))
    .unwrap();
    let by_country: Vec<(&str, i64)> = by_country
        .iter()
        .map(|r| (r.country.as_str(), r.instances))
        .collect();
    assert_eq!(by_country, [("DE", 2), ("", 1), ("FR", 1)]);

    let on_17: Vec<HostVersion> = with_conn!(&mut conn, |c| diesel::sql_query(
        &queries["instances_on_major"]
    )
    .load(c))
    .unwrap();
    assert_eq!(
        on_17
            .iter()
            .map(|h| (h.hostname.as_str(), h.last_version.as_str()))
            .collect::<Vec<_>>(),
        [("crit.example", "17.9.1")]
    );

    let pruned = with_conn!(&mut conn, |c| diesel::sql_query(
        &queries["prune_old_counts"]
    )
    .execute(c))
    .unwrap();
    assert_eq!(pruned, 0, "nothing is older than 2025-06-01 here");
}
