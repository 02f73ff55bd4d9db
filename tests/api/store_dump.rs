//! Whole-store views for the privacy tests: a full dump (`sqlite3 .dump`, `pg_dump`) and
//! query results as text (`sqlite3 -csv`, `psql -At`), through the stores' own tools so
//! that nothing the app's code reads or skips can hide a value.

use std::process::Command;

use version_app::config::Backend;

fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

fn run(command: &mut Command) -> String {
    run_with_input(command, "")
}

fn run_with_input(command: &mut Command, input: &str) -> String {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the store's client tool runs (.ci/setup.d/sqlite3.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every row of every table of the store at `url`, as the store's dump tool writes it.
pub fn dump(url: &str) -> String {
    match Backend::from_url(url).unwrap() {
        Backend::Sqlite => run_with_input(
            Command::new("sqlite3").arg(sqlite_path(url)),
            ".timeout 10000\n.dump\n",
        ),
        // `\restrict KEY` lines carry a random key per dump run: not data.
        Backend::Postgres => run(Command::new("pg_dump").arg("--no-owner").arg(url))
            .lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .map(|l| format!("{l}\n"))
            .collect(),
    }
}

/// Fails with the first differing line when two dumps differ. PostgreSQL sequence
/// positions are left out: `nextval` is not rolled back with its transaction (by design),
/// and a sequence position holds no data.
pub fn assert_same_dump(before: &str, after: &str, what: &str) {
    let rows = |dump: &str| -> Vec<String> {
        dump.lines()
            .filter(|l| !l.starts_with("SELECT pg_catalog.setval("))
            .map(String::from)
            .collect()
    };
    let (a, b) = (rows(before), rows(after));
    if a != b {
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        panic!(
            "{what}: the dumps differ from line {at}: before `{}`, after `{}`",
            a.get(at).map_or("<end>", String::as_str),
            b.get(at).map_or("<end>", String::as_str)
        );
    }
}

/// The rows `sql` answers, one line each, columns separated by `|`.
pub fn query_text(url: &str, sql: &str) -> String {
    match Backend::from_url(url).unwrap() {
        // On standard input: an argument starting with `--` (a comment) reads as an option.
        Backend::Sqlite => run_with_input(
            Command::new("sqlite3")
                .arg("-batch")
                .arg("-bail")
                .arg("-separator")
                .arg("|")
                .arg(sqlite_path(url)),
            &format!(".timeout 10000\n{sql};\n"),
        ),
        Backend::Postgres => run(Command::new("psql")
            .arg("-X")
            .arg("-At")
            .arg("-F|")
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg(url)
            .arg("-c")
            .arg(sql)),
    }
}

/// Fails naming `needle` (and where) if the dump holds it as text or as hex (both dumps
/// write binary columns in hex).
pub fn assert_absent(dump: &str, needle: &str, what: &str) {
    let lower = dump.to_ascii_lowercase();
    for form in [needle.to_ascii_lowercase(), hex::encode(needle.as_bytes())] {
        if let Some(at) = lower.find(&form) {
            let start = at.saturating_sub(120);
            let end = (at + form.len() + 120).min(dump.len());
            panic!(
                "{what}: the store dump contains `{needle}` (as `{form}`): …{}…",
                dump.get(start..end).unwrap_or("?")
            );
        }
    }
}

/// POSTs a Service Ping like GitLab does: again after a 503 (the store or the admission
/// queue busy on a loaded machine), up to five times.
pub async fn post_ping(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::Response {
    let mut tries = 0;
    loop {
        let answer = client
            .post(url)
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        tries += 1;
        if answer.status() != 503 || tries == 5 {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
