//! Recording of version checks: what lands in the store, when, and from how many processes.

use chrono::{NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Nullable, Text, Timestamp};
use std::time::{Duration, Instant};
use version_app::auth::Scope;
use version_app::config::Settings;
use version_app::db::models::version_checks::{self, VersionStatus};
use version_app::db::Db;
use version_app::recorder::CheckCount;
use version_app::startup::Application;
use version_app::with_conn;

use crate::check::{bad_queries, check_path};
use crate::helpers::{TestApp, TestDb};

/// Flushes quickly enough for tests to wait on.
fn fast_flush(settings: &mut Settings) {
    settings.check.flush_interval = std::time::Duration::from_millis(100);
}

/// One row of `version_checks`.
#[derive(Debug, QueryableByName, PartialEq, Eq)]
pub struct CheckRow {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Text)]
    pub host: String,
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = Text)]
    pub country: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// One row of `hosts`.
#[derive(Debug, QueryableByName)]
pub struct HostRow {
    #[diesel(sql_type = Text)]
    pub hostname: String,
    #[diesel(sql_type = Timestamp)]
    pub first_seen: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    pub last_seen: NaiveDateTime,
    #[diesel(sql_type = Text)]
    pub last_version: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub country: Option<String>,
}

/// Every `version_checks` row, in key order.
pub fn check_rows(db: &Db) -> Vec<CheckRow> {
    let mut conn = db.get().unwrap();
    with_conn!(&mut conn, |c| diesel::sql_query(
        "SELECT day, host, version, country, count FROM version_checks \
         ORDER BY day, host, version, country"
    )
    .load::<CheckRow>(c))
    .unwrap()
}

/// Every `hosts` row, by hostname.
pub fn host_rows(db: &Db) -> Vec<HostRow> {
    let mut conn = db.get().unwrap();
    with_conn!(&mut conn, |c| {
        diesel::sql_query(
        "SELECT hostname, first_seen, last_seen, last_version, country FROM hosts ORDER BY hostname"
    )
    .load::<HostRow>(c)
    })
    .unwrap()
}

/// Sum of all stored counts.
pub fn total(db: &Db) -> i64 {
    version_checks::total_checks(&mut db.get().unwrap()).unwrap()
}

/// Waits (up to 15 s) until the store holds `expected` checks in all.
pub async fn wait_for_total(db: &Db, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = total(db);
        if now == expected {
            return;
        }
        assert!(
            now < expected,
            "more checks stored ({now}) than sent ({expected})"
        );
        assert!(
            Instant::now() < deadline,
            "store holds {now} checks, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn check_with_referer(app: &TestApp, path: &str, referer: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("Referer", referer)
        .send()
        .await
        .unwrap()
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

#[tokio::test]
async fn checks_land_in_the_store_with_and_without_referer() {
    let app = TestApp::spawn_with(fast_flush).await;
    let svg = check_path("check.svg", "17.9.1-ee");
    for _ in 0..3 {
        let r = check_with_referer(&app, &svg, "https://GitLab.Example.com:8443/help").await;
        assert_eq!(r.status(), 200);
    }
    check_with_referer(
        &app,
        &check_path("check.png", "17.9.1"),
        "https://gitlab.example.com/",
    )
    .await;
    // The server-side JSON check sends no Referer.
    app.get(&check_path("check.json", "19.1.1")).await;
    app.get(&check_path("check.json", "19.1.1")).await;
    let db = app.store();
    wait_for_total(&db, 6).await;
    let rows = check_rows(&db);
    assert_eq!(
        rows,
        vec![
            CheckRow {
                day: today(),
                host: String::new(),
                version: "19.1.1".into(),
                country: String::new(),
                count: 2
            },
            CheckRow {
                day: today(),
                host: "gitlab.example.com".into(),
                version: "17.9.1".into(),
                country: String::new(),
                count: 4
            },
        ]
    );
    let hosts = host_rows(&db);
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].hostname, "gitlab.example.com");
    assert_eq!(hosts[0].last_version, "17.9.1");
    assert_eq!(hosts[0].country, None);
    assert!(hosts[0].first_seen <= hosts[0].last_seen);

    // Every version seen has its verdict materialised.
    let statuses = version_checks::list_statuses(&mut db.get().unwrap()).unwrap();
    let status = |v: &str| statuses.iter().find(|s| s.version == v).cloned().unwrap();
    assert_eq!(
        (
            status("17.9.1").severity.as_str(),
            status("17.9.1").critical
        ),
        ("danger", true)
    );
    assert_eq!(
        (
            status("17.9.1").major,
            status("17.9.1").minor,
            status("17.9.1").patch
        ),
        (17, 9, 1)
    );
    assert_eq!(status("19.1.1").severity, "success");
}

#[tokio::test]
async fn hostile_referers_and_bad_input_never_reach_the_store() {
    let app = TestApp::spawn_with(fast_flush).await;
    let mut sent = 0;
    for (query, _) in bad_queries() {
        for route in ["check.svg", "check.png", "check.json"] {
            check_with_referer(
                &app,
                &format!("/{route}?{query}"),
                "https://bad.example.com/",
            )
            .await;
        }
    }
    let long_host = format!("https://{}.example.com/", "a".repeat(8 * 1024));
    let svg = check_path("check.svg", "18.0.0");
    for referer in [
        "https://[2001:db8::1]:8443/help",
        "https://192.0.2.7/help",
        "javascript:alert(document.cookie)",
        "data:text/html,<script>",
        long_host.as_str(),
        "https://exa mple.com/",
        "https://%00.example.com/",
        "not a url",
    ] {
        let r = check_with_referer(&app, &svg, referer).await;
        assert_eq!(r.status(), 200, "{referer}");
        sent += 1;
    }
    // Userinfo and port are dropped, IDN becomes punycode.
    for referer in [
        "https://user:secret@Git.Example.org:8443/x?y#z",
        "https://bücher.example/help",
    ] {
        check_with_referer(&app, &svg, referer).await;
        sent += 1;
    }
    let db = app.store();
    wait_for_total(&db, sent).await;
    let rows = check_rows(&db);
    let hosts: Vec<&str> = rows.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["", "git.example.org", "xn--bcher-kva.example"]);
    assert!(rows.iter().all(|r| r.version == "18.0.0"));
    assert_eq!(
        rows[0].count, 8,
        "unusable Referers are counted without a host"
    );
    assert_eq!(host_rows(&db).len(), 2);
}

#[tokio::test]
async fn country_comes_from_geoip_and_nothing_else_is_kept() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/geoip-test.mmdb"
    );
    let app = TestApp::spawn_with(|s| {
        fast_flush(s);
        s.geoip.path = Some(fixture.into());
    })
    .await;
    let svg = check_path("check.svg", "19.0.3");
    check_with_referer(&app, &svg, "https://a.example/").await;
    // Without trust_forwarded_for the header is ignored: the peer (127.0.0.1) is AQ.
    app.client
        .get(app.url(&svg))
        .header("Referer", "https://b.example/")
        .header("X-Forwarded-For", "198.51.100.7")
        .send()
        .await
        .unwrap();
    let db = app.store();
    wait_for_total(&db, 2).await;
    let rows = check_rows(&db);
    assert!(rows.iter().all(|r| r.country == "AQ"), "{rows:?}");
    let hosts = host_rows(&db);
    assert!(hosts.iter().all(|h| h.country.as_deref() == Some("AQ")));

    let behind_proxy = TestApp::spawn_with(|s| {
        fast_flush(s);
        s.geoip.path = Some(fixture.into());
        s.server.trust_forwarded_for = true;
    })
    .await;
    for forwarded in [
        "198.51.100.7, 10.0.0.1",
        "[2001:db8:8000::1]:443",
        "garbage",
    ] {
        behind_proxy
            .client
            .get(behind_proxy.url(&svg))
            .header("X-Forwarded-For", forwarded)
            .send()
            .await
            .unwrap();
    }
    let db = behind_proxy.store();
    wait_for_total(&db, 3).await;
    let countries: Vec<String> = check_rows(&db).into_iter().map(|r| r.country).collect();
    // garbage falls back to the peer address
    assert_eq!(countries, ["AQ", "FR", "SE"]);
}

#[tokio::test]
async fn a_corrupt_geoip_file_does_not_break_checks() {
    let corrupt = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/geoip-corrupt.mmdb"
    );
    let app = TestApp::spawn_with(|s| {
        fast_flush(s);
        s.geoip.path = Some(corrupt.into());
    })
    .await;
    let r = app.get(&check_path("check.svg", "19.0.3")).await;
    assert_eq!(r.status(), 200);
    let db = app.store();
    wait_for_total(&db, 1).await;
    assert_eq!(check_rows(&db)[0].country, "");
}

#[tokio::test]
async fn stopping_flushes_what_was_recorded() {
    // An interval far beyond the test: only the shutdown flush can write these.
    let app = TestApp::spawn_with(|s| {
        s.check.flush_interval = std::time::Duration::from_millis(3_600_000);
    })
    .await;
    let settings = app.settings.clone();
    for _ in 0..7 {
        check_with_referer(
            &app,
            &check_path("check.svg", "18.5.0"),
            "https://s.example/",
        )
        .await;
    }
    app.get(&check_path("check.json", "18.5.0")).await;
    let db = Db::connect(&settings.store).unwrap();
    assert_eq!(total(&db), 0, "nothing flushed before the shutdown");
    let test_db = app.stop().await;
    assert_eq!(total(&db), 8);
    assert_eq!(host_rows(&db).len(), 1);
    drop(test_db);
}

/// Starts a second application process on the same store.
async fn second_process(
    settings: Settings,
) -> (
    String,
    actix_web::dev::ServerHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Application::build(settings)
        .await
        .expect("second app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    (address, handle, running)
}

#[tokio::test]
async fn two_processes_on_one_store_add_up() {
    let first = TestApp::spawn_with(fast_flush).await;
    let (second, second_handle, second_running) = second_process(first.settings.clone()).await;
    let client = reqwest::Client::new();
    let path = check_path("check.svg", "18.11.6");
    let hit = |base: String| {
        let (client, path) = (client.clone(), path.clone());
        async move {
            let r = client
                .get(format!("{base}{path}"))
                .header("Referer", "https://shared.example.com/admin")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    // Interleaved over several flush intervals, both processes on the very same key.
    for round in 0..5 {
        for _ in 0..10 {
            hit(first.address.clone()).await;
            hit(second.clone()).await;
        }
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let db = first.store();
    wait_for_total(&db, 100).await;
    let rows = check_rows(&db);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].count, 100);
    assert_eq!(rows[0].host, "shared.example.com");
    assert_eq!(host_rows(&db).len(), 1);

    // And both flush at shutdown without losing or doubling anything.
    for _ in 0..5 {
        hit(first.address.clone()).await;
        hit(second.clone()).await;
    }
    second_handle.stop(true).await;
    second_running.await.unwrap().unwrap();
    let settings = first.settings.clone();
    let test_db: TestDb = first.stop().await;
    let db = Db::connect(&settings.store).unwrap();
    assert_eq!(total(&db), 110);
    drop(test_db);
}

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
}

fn row(
    host: &str,
    version: &str,
    country: &str,
    count: u64,
    first: &str,
    last: &str,
) -> CheckCount {
    CheckCount {
        day: at(first).date(),
        host: host.into(),
        version: version.into(),
        country: country.into(),
        count,
        first_seen: at(first),
        last_seen: at(last),
    }
}

/// Two processes may flush out of time order: the host keeps the newest version and the
/// oldest first sighting whatever order the batches arrive in.
#[tokio::test]
async fn host_rows_only_move_forward_in_time() {
    let app = TestApp::spawn().await;
    let db = app.store();
    let mut conn = db.get().unwrap();
    let newer = [row(
        "h.example",
        "18.0.0",
        "DE",
        2,
        "2026-06-01 10:00:00",
        "2026-06-01 12:00:00",
    )];
    let older = [row(
        "h.example",
        "17.0.0",
        "",
        3,
        "2026-06-01 08:00:00",
        "2026-06-01 09:00:00",
    )];
    version_checks::record_batch(&mut conn, &newer, &[]).unwrap();
    version_checks::record_batch(&mut conn, &older, &[]).unwrap();
    let hosts = host_rows(&db);
    assert_eq!(hosts[0].last_version, "18.0.0");
    assert_eq!(hosts[0].last_seen, at("2026-06-01 12:00:00"));
    assert_eq!(hosts[0].first_seen, at("2026-06-01 08:00:00"));
    assert_eq!(hosts[0].country.as_deref(), Some("DE"));
    // A later check without a country keeps the known one; a later one with a country wins.
    let later = [row(
        "h.example",
        "18.1.0",
        "",
        1,
        "2026-06-02 08:00:00",
        "2026-06-02 08:00:00",
    )];
    version_checks::record_batch(&mut conn, &later, &[]).unwrap();
    let hosts = host_rows(&db);
    assert_eq!(hosts[0].last_version, "18.1.0");
    assert_eq!(hosts[0].country.as_deref(), Some("DE"));
    let moved = [row(
        "h.example",
        "18.1.0",
        "FR",
        1,
        "2026-06-03 08:00:00",
        "2026-06-03 08:00:00",
    )];
    version_checks::record_batch(&mut conn, &moved, &[]).unwrap();
    assert_eq!(host_rows(&db)[0].country.as_deref(), Some("FR"));
    // Daily counts add up, keyed by country too.
    assert_eq!(total(&db), 7);
    assert_eq!(check_rows(&db).len(), 4);
}

/// A batch of many keys goes through in chunks, in one transaction.
#[tokio::test]
async fn large_batches_are_written_in_chunks() {
    let app = TestApp::spawn().await;
    let db = app.store();
    let mut rows: Vec<CheckCount> = (0..1_234)
        .map(|i| {
            row(
                &format!("h{i:05}.example"),
                "18.0.0",
                "",
                1,
                "2026-06-01 10:00:00",
                "2026-06-01 10:00:00",
            )
        })
        .collect();
    rows.sort_by(|a, b| a.host.cmp(&b.host));
    version_checks::record_batch(&mut db.get().unwrap(), &rows, &[]).unwrap();
    version_checks::record_batch(&mut db.get().unwrap(), &rows, &[]).unwrap();
    assert_eq!(total(&db), 2 * 1_234);
    assert_eq!(host_rows(&db).len(), 1_234);
}

#[tokio::test]
async fn verdicts_follow_release_changes() {
    let app = TestApp::spawn_with(fast_flush).await;
    app.get(&check_path("check.json", "19.1.1")).await;
    app.get(&check_path("check.json", "19.0.3")).await;
    let db = app.store();
    wait_for_total(&db, 2).await;
    let severity = |db: &Db, version: &str| -> Option<(String, bool)> {
        version_checks::list_statuses(&mut db.get().unwrap())
            .unwrap()
            .into_iter()
            .find(|s: &VersionStatus| s.version == version)
            .map(|s| (s.severity, s.critical))
    };
    assert_eq!(severity(&db, "19.1.1"), Some(("success".into(), false)));

    // A critical security release 19.1.2 makes 19.1.1 (and 19.0.3) "update asap".
    let token = app.token(Scope::ReleasesWrite);
    let created = app
        .post_release(&token, &[("version", "19.1.2"), ("security", "critical")])
        .await;
    assert_eq!(created.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(15);
    while severity(&db, "19.1.1") != Some(("danger".into(), true)) {
        assert!(Instant::now() < deadline, "{:?}", severity(&db, "19.1.1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(severity(&db, "19.0.3"), Some(("danger".into(), true)));
    // The badge says so too, at once (from the snapshot, not the store).
    let svg = app
        .get(&check_path("check.svg", "19.1.1"))
        .await
        .text()
        .await
        .unwrap();
    assert!(svg.contains("update asap"));
}

/// Reads one un-labelled counter from `/metrics`.
async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// The store refuses writes for a while: checks keep answering, the buffer keeps what fits
/// its bound and counts what it drops, and everything kept lands once the store is back.
#[tokio::test]
async fn a_failing_store_loses_only_what_the_bound_drops_and_counts_it() {
    let app = TestApp::spawn_with(|s| {
        fast_flush(s);
        s.check.buffer_max_keys = std::num::NonZeroUsize::new(3).unwrap();
    })
    .await;
    let db = app.store();
    let execute = |sql: &str| {
        let mut conn = db.get().unwrap();
        with_conn!(&mut conn, |c| diesel::sql_query(sql).execute(c)).unwrap();
    };
    // Writes to version_checks now fail (as they would with the store down).
    execute("ALTER TABLE version_checks RENAME TO version_checks_away");
    let mut sent = 0;
    for round in 0..3 {
        for minor in 0..5 {
            let r = app
                .get(&check_path("check.svg", &format!("18.{minor}.0")))
                .await;
            assert_eq!(r.status(), 200);
            sent += 1;
        }
        if round == 0 {
            // Let a flush fail and merge its batch back.
            let deadline = Instant::now() + Duration::from_secs(15);
            while metric(&app, "version_app_check_flush_failures_total").await == 0 {
                assert!(Instant::now() < deadline, "no flush failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let dropped = metric(&app, "version_app_check_records_dropped_total").await as i64;
    // Three keys fit; which three depends on where flushes fell between the requests. Each
    // kept key holds at most one check per round, so at least 15 - 3 × 3 were dropped.
    assert!(dropped >= 6, "{dropped}");
    // (Fewer for the instant a flush has the batch out.)
    assert!(metric(&app, "version_app_check_buffer_keys").await <= 3);
    execute("ALTER TABLE version_checks_away RENAME TO version_checks");
    wait_for_total(&db, sent - dropped).await;
    let rows = check_rows(&db);
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Nothing lost beyond what was counted as dropped.
    assert_eq!(rows.iter().map(|r| r.count).sum::<i64>() + dropped, sent);
    assert!(metric(&app, "version_app_check_flush_failures_total").await > 0);
}
