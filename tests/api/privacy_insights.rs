//! `pseudonymise=true` on `/api/v1/insights/…`: every hostname and uuid becomes the HMAC-SHA256
//! pseudonym `export --pseudonymise` writes (computed here with the hmac crate), every other
//! field stays as in the answer without it; without `pseudonymise_key` it is a 400.

use crate::check::check_path;
use crate::check_recording::wait_for_total;
use crate::helpers::TestApp;
use crate::insights::refresh;
use crate::usage_data::{minimal_with, post_json};
use chrono::{Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use version_app::auth::Scope;
use version_app::domain::pseudonym::SecretKey;

const KEY: &str = "insights-pseudonym-key-0123456789";

/// The expected pseudonym, computed independently of the server.
fn hmac_hex(value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Every endpoint, with the fields that carry identifiers in its rows.
const ENDPOINTS: &[&str] = &[
    "/api/v1/insights/vulnerable?days=28",
    "/api/v1/insights/installation?uuid=pz-1&hostname=vuln-one.example",
    "/api/v1/insights/installations?period=month&by=tier",
    "/api/v1/insights/metrics/counts.issues?period=month",
    "/api/v1/insights/versions?period=month",
    "/api/v1/insights/backport?days=28",
    "/api/v1/insights/overview/activity?period=month",
    "/api/v1/insights/overview/sources?period=month",
    "/api/v1/insights/versions/penetration?period=month",
    "/api/v1/insights/versions/behind?period=month",
    "/api/v1/insights/versions/vulnerable_share?period=month",
    "/api/v1/insights/versions/sources?period=month",
    "/api/v1/insights/licences/utilisation?period=month",
];

/// The licence list: its rows carry `uuid` and `hostname` (pz-2 is on a trial licence).
const LICENCES: &str = "/api/v1/insights/licences?list=trials&days=28";

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, String) {
    let response = app
        .client
        .get(app.url(path))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Two installations on vulnerable versions by Service Ping, one host by version check only.
async fn traffic(app: &TestApp) {
    let recent = (Utc::now().naive_utc() - Duration::days(2))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    for (uuid, host, version) in [
        ("pz-1", "vuln-one.example", "17.0.0"),
        ("pz-2", "vuln-two.example", "18.7.1"),
    ] {
        let body = minimal_with(json!({"uuid": uuid, "hostname": host, "version": version,
            "recorded_at": recent, "counts": {"issues": 3}, "license_trial": uuid == "pz-2"}));
        assert_eq!(post_json(app, body).await.status(), 201);
    }
    let response = app
        .client
        .get(app.url(&check_path("check.json", "17.1.0")))
        .header("Referer", "https://check-only.example/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_total(&app.store(), 1).await;
    refresh(app);
}

/// Compares a pseudonymised JSON answer with the clear one: identifiers (`hostname`, `uuid`,
/// non-empty strings) must be their HMAC, everything else equal. Returns how many were hidden.
fn compare(clear: &Value, hidden: &Value, at: &str) -> usize {
    match (clear, hidden) {
        (Value::Object(c), Value::Object(h)) => {
            assert_eq!(
                c.keys().collect::<Vec<_>>(),
                h.keys().collect::<Vec<_>>(),
                "{at}: same fields"
            );
            let mut n = 0;
            for (k, cv) in c {
                let hv = &h[k];
                match (k.as_str(), cv) {
                    ("hostname" | "uuid", Value::String(s)) if !s.is_empty() => {
                        assert_eq!(hv, &Value::String(hmac_hex(s)), "{at}.{k}");
                        n += 1;
                    }
                    _ => n += compare(cv, hv, &format!("{at}.{k}")),
                }
            }
            n
        }
        (Value::Array(c), Value::Array(h)) => {
            assert_eq!(c.len(), h.len(), "{at}: same rows");
            c.iter()
                .zip(h)
                .enumerate()
                .map(|(i, (cv, hv))| compare(cv, hv, &format!("{at}[{i}]")))
                .sum()
        }
        _ => {
            assert_eq!(clear, hidden, "{at}");
            0
        }
    }
}

#[tokio::test]
async fn pseudonymised_insights_hide_every_identifier_and_keep_everything_else() {
    let app = TestApp::spawn_with(|s| {
        s.check.flush_interval = std::time::Duration::from_millis(100);
        s.privacy.pseudonymise_key = Some(SecretKey::new(KEY));
    })
    .await;
    traffic(&app).await;
    let token = app.token(Scope::InsightsRead);
    let mut hidden_total = 0;
    for path in ENDPOINTS {
        let (status, clear) = get(&app, &token, path).await;
        assert_eq!(status, 200, "{path}: {clear}");
        let (status, hidden) = get(&app, &token, &format!("{path}&pseudonymise=true")).await;
        assert_eq!(status, 200, "{path}: {hidden}");
        let (clear, hidden): (Value, Value) = (
            serde_json::from_str(&clear).unwrap(),
            serde_json::from_str(&hidden).unwrap(),
        );
        let n = compare(&clear, &hidden, path);
        for needle in ["vuln-one", "vuln-two", "check-only", "pz-1", "pz-2"] {
            assert!(
                !hidden.to_string().contains(needle),
                "{path}: `{needle}` in {hidden}"
            );
        }
        hidden_total += n;
        // `false` is the clear answer.
        let (status, plain) = get(&app, &token, &format!("{path}&pseudonymise=false")).await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&plain).unwrap(),
            clear,
            "{path}"
        );
    }
    // vulnerable: 3 hostnames and 2 uuids; installation: its uuid and hostname.
    assert_eq!(hidden_total, 7, "every identifier was seen and hidden");

    // The licence list: pz-2's uuid and hostname, in JSON and in the first two CSV columns.
    let (_, clear) = get(&app, &token, LICENCES).await;
    let (status, hidden) = get(&app, &token, &format!("{LICENCES}&pseudonymise=true")).await;
    assert_eq!(status, 200, "{hidden}");
    let (clear, hidden): (Value, Value) = (
        serde_json::from_str(&clear).unwrap(),
        serde_json::from_str(&hidden).unwrap(),
    );
    assert_eq!(clear["rows"][0]["uuid"], "pz-2", "{clear}");
    assert_eq!(compare(&clear, &hidden, LICENCES), 2);
    let (_, clear_csv) = get(&app, &token, &format!("{LICENCES}&format=csv")).await;
    let (_, hidden_csv) = get(
        &app,
        &token,
        &format!("{LICENCES}&format=csv&pseudonymise=true"),
    )
    .await;
    let (clear_lines, hidden_lines): (Vec<&str>, Vec<&str>) =
        (clear_csv.lines().collect(), hidden_csv.lines().collect());
    assert_eq!(clear_lines.len(), 2, "{clear_csv}");
    assert_eq!(clear_lines[0], hidden_lines[0]);
    let expected = clear_lines[1]
        .replacen("pz-2", &hmac_hex("pz-2"), 1)
        .replacen("vuln-two.example", &hmac_hex("vuln-two.example"), 1);
    assert_eq!(hidden_lines[1], expected);

    // CSV: the same, cell by cell.
    let (_, clear) = get(
        &app,
        &token,
        "/api/v1/insights/vulnerable?days=28&format=csv",
    )
    .await;
    let (status, hidden) = get(
        &app,
        &token,
        "/api/v1/insights/vulnerable?days=28&format=csv&pseudonymise=true",
    )
    .await;
    assert_eq!(status, 200, "{hidden}");
    let rows = |text: &str| -> Vec<Vec<String>> {
        csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    };
    let header = |text: &str| text.lines().next().unwrap().to_string();
    assert_eq!(header(&clear), header(&hidden));
    assert_eq!(
        header(&clear),
        "hostname,uuid,version,source,last_seen,severity,critical"
    );
    let (clear_rows, hidden_rows) = (rows(&clear), rows(&hidden));
    assert_eq!(clear_rows.len(), 3, "{clear}");
    assert_eq!(clear_rows.len(), hidden_rows.len());
    for (c, h) in clear_rows.iter().zip(&hidden_rows) {
        for (i, (cc, hc)) in c.iter().zip(h).enumerate() {
            if i < 2 && !cc.is_empty() {
                assert_eq!(hc, &hmac_hex(cc), "column {i}");
            } else {
                assert_eq!(cc, hc, "column {i}");
            }
        }
    }
    for path in ENDPOINTS.iter().skip(1) {
        let (_, clear) = get(&app, &token, &format!("{path}&format=csv")).await;
        let (status, hidden) = get(
            &app,
            &token,
            &format!("{path}&format=csv&pseudonymise=true"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(clear, hidden, "{path}: its CSV carries no identifier");
    }
}

#[tokio::test]
async fn pseudonymise_without_a_key_or_with_a_bad_value_is_a_400() {
    let app = TestApp::spawn().await;
    let token = app.token(Scope::InsightsRead);
    for path in ENDPOINTS.iter().chain(&[LICENCES]) {
        for format in ["json", "csv"] {
            let (status, body) = get(
                &app,
                &token,
                &format!("{path}&format={format}&pseudonymise=true"),
            )
            .await;
            assert_eq!(status, 400, "{path}: {body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert!(
                error.to_string().contains("pseudonymise_key"),
                "{path}: {body}"
            );
        }
        let (status, body) = get(&app, &token, &format!("{path}&pseudonymise=yes")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.contains("`pseudonymise` must be true or false"),
            "{body}"
        );
    }
}
