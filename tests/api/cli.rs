use std::io::Write;

use crate::helpers::{run_cli, TestApp, TestDb};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn token_create_prints_the_token_alone_on_the_last_line_and_it_works() {
    let db = TestDb::new();
    let out = run_cli(
        &db.url,
        &[
            "token",
            "create",
            "--scope",
            "releases:write",
            "--name",
            "release-ci",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let token = text.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("vat_") && !token.contains(' '), "{text}");

    let listed = stdout(&run_cli(&db.url, &["token", "list"], &[]));
    assert!(
        listed.contains("release-ci") && !listed.contains(&token),
        "secrets are never listed: {listed}"
    );

    let app = TestApp::spawn_on(db, |_| {}).await;
    let response = app.post_release(&token, &[("version", "97.0.0")]).await;
    assert_eq!(response.status(), 201);
}

#[test]
fn unknown_scope_is_refused() {
    let db = TestDb::new();
    let out = run_cli(&db.url, &["token", "create", "--scope", "everything"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("everything"), "{}", stderr(&out));
}

#[test]
fn token_revoke_marks_it_revoked() {
    let db = TestDb::new();
    assert!(run_cli(
        &db.url,
        &["token", "create", "--scope", "releases:write"],
        &[]
    )
    .status
    .success());
    let out = run_cli(&db.url, &["token", "revoke", "1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&run_cli(&db.url, &["token", "list"], &[])).contains("revoked"));
    let again = run_cli(&db.url, &["token", "revoke", "1"], &[]);
    assert!(!again.status.success());
}

#[test]
fn import_works_on_a_brand_new_store_and_upserts_by_version() {
    let db = TestDb::new();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "version,released_on,security,advisory,details").unwrap();
    writeln!(file, "17.0.0,2024-05-16,none,,").unwrap();
    writeln!(
        file,
        "17.0.1,2024-05-22,critical,2024-05-22-critical,Token leak"
    )
    .unwrap();
    let path = file.path().to_str().unwrap();
    let out = run_cli(&db.url, &["releases", "import", path], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("imported 2"));

    // Re-import with a changed level: updated in place, not duplicated.
    let mut again = tempfile::NamedTempFile::new().unwrap();
    writeln!(again, "version,released_on,security,advisory").unwrap();
    writeln!(again, "17.0.0,2024-05-16,non_critical,").unwrap();
    assert!(run_cli(
        &db.url,
        &["releases", "import", again.path().to_str().unwrap()],
        &[]
    )
    .status
    .success());
    let listed = stdout(&run_cli(&db.url, &["releases", "list"], &[]));
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("17.0.0 ")).count(),
        1,
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("17.0.0 ") && l.contains("non_critical")),
        "{listed}"
    );
    assert!(listed.contains("2024-05-22-critical"));
}

#[test]
fn broken_import_changes_nothing_and_names_the_row() {
    let db = TestDb::new();
    let mut good = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        good,
        "version,released_on,security,advisory\n17.0.0,2024-05-16,none,"
    )
    .unwrap();
    assert!(run_cli(
        &db.url,
        &["releases", "import", good.path().to_str().unwrap()],
        &[]
    )
    .status
    .success());

    let mut broken = tempfile::NamedTempFile::new().unwrap();
    writeln!(broken, "version,released_on,security,advisory").unwrap();
    writeln!(broken, "17.0.0,2024-05-16,critical,").unwrap();
    writeln!(broken, "17.0.1,not-a-date,none,").unwrap();
    let out = run_cli(
        &db.url,
        &["releases", "import", broken.path().to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("row 3") && err.contains("not-a-date") && err.contains("nothing was imported"),
        "{err}"
    );
    let listed = stdout(&run_cli(&db.url, &["releases", "list"], &[]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("17.0.0 ") && l.contains("none")),
        "unchanged: {listed}"
    );
    assert!(!listed.contains("17.0.1"));
}

#[test]
fn set_security_from_the_cli() {
    let db = TestDb::new();
    assert!(run_cli(
        &db.url,
        &["releases", "add", "18.0.0", "--released-on", "2025-05-15"],
        &[]
    )
    .status
    .success());
    let out = run_cli(
        &db.url,
        &[
            "releases",
            "set-security",
            "18.0.0",
            "critical",
            "--details",
            "RCE",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("critical"));
    let missing = run_cli(
        &db.url,
        &["releases", "set-security", "1.0.0", "critical"],
        &[],
    );
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("1.0.0 does not exist"));
    let dup = run_cli(&db.url, &["releases", "add", "18.0.0"], &[]);
    assert!(stderr(&dup).contains("already exists"));
}

#[test]
fn migrate_is_idempotent() {
    let db = TestDb::new();
    let first = run_cli(&db.url, &["migrate"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = run_cli(&db.url, &["migrate"], &[]);
    assert!(
        stdout(&second).starts_with("0 migration(s) applied"),
        "{}",
        stdout(&second)
    );
}

#[test]
fn a_wrong_setting_stops_start_up_naming_it() {
    let db = TestDb::new();
    let out = run_cli(
        &db.url,
        &["serve"],
        &[("VERSION_APP_CHECK_FLUSH_INTERVAL_MS", "soon")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .to_lowercase()
            .contains("check_flush_interval_ms"),
        "{}",
        stderr(&out)
    );
    let out = run_cli("mysql://localhost/x", &["serve"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("database_url"), "{}", stderr(&out));
}

#[test]
fn default_store_is_a_sqlite_file_under_data_created_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_version-app"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("VERSION_APP_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("data/version-app.db").is_file());
}
