//! `version-app export`: NDJSON of verbatim payloads and CSV with chosen key paths.

use crate::helpers::{run_cli, TestApp};
use crate::usage_data::{minimal_with, post_json, FULL};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

#[tokio::test]
async fn export_streams_a_date_range_as_ndjson_and_csv() {
    let app = TestApp::spawn().await;
    assert_eq!(post_json(&app, FULL.to_vec()).await.status(), 201); // 2026-01-08
    let pretty: Value = serde_json::from_slice(&minimal_with(json!({
        "uuid": "pretty", "recorded_at": "2026-01-20T08:00:00Z", "counts": {"issues": 12},
        // Above 2^53: a double would print 6842684531675334000.
        "database": {"pg_system_id": 6_842_684_531_675_334_351_i64},
        "topology": {"query_apdex_weekly_average": 0.25}
    })))
    .unwrap();
    let pretty = serde_json::to_vec_pretty(&pretty).unwrap();
    assert_eq!(post_json(&app, pretty.clone()).await.status(), 201);
    let outside = minimal_with(json!({"uuid": "later", "recorded_at": "2026-03-01T00:00:00Z"}));
    assert_eq!(post_json(&app, outside).await.status(), 201);

    let url = app.settings.store.url.expose_secret().to_owned();
    let output = run_cli(
        &url,
        &[
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--format",
            "ndjson",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&[u8]> = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0], FULL,
        "compact payloads are exported byte for byte"
    );
    let second: Value = serde_json::from_slice(lines[1]).unwrap();
    assert_eq!(second, serde_json::from_slice::<Value>(&pretty).unwrap());

    let output = run_cli(
        &url,
        &[
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--format",
            "csv",
            "--keys",
            "counts.issues,no.such.key,database.pg_system_id,topology.query_apdex_weekly_average",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "usage_data_id");
    assert_eq!(
        &header[8..],
        [
            "counts.issues",
            "no.such.key",
            "database.pg_system_id",
            "topology.query_apdex_weekly_average"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][1], "01974cde-79f9-4882-b407-7bec1eb4e8a3");
    assert_eq!(&rows[0][8], "7951");
    assert_eq!(&rows[1][1], "pretty");
    assert_eq!(&rows[1][8], "12");
    assert_eq!(&rows[1][9], "", "an unknown key is an empty column");
    assert_eq!(
        &rows[1][10], "6842684531675334351",
        "integers are exported exactly, also above 2^53"
    );
    assert_eq!(&rows[1][11], "0.25");

    let bad = run_cli(
        &url,
        &["export", "--from", "yesterday", "--to", "2026-02-01"],
        &[],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`yesterday` is not a date"));
}

#[tokio::test]
async fn payloads_are_stored_compressed_and_rows_from_before_compression_export_unchanged() {
    use diesel::prelude::*;
    use version_app::db::schema::usage_data_raw;
    let app = TestApp::spawn().await;
    assert_eq!(post_json(&app, FULL.to_vec()).await.status(), 201);
    let legacy = minimal_with(json!({"uuid": "legacy", "recorded_at": "2026-01-10T00:00:00Z"}));
    let answer: Value = post_json(&app, legacy.clone()).await.json().await.unwrap();
    let legacy_id = answer["conv_index"]["usage_data_id"].as_i64().unwrap();
    let db = app.store();
    let mut conn = db.get().unwrap();
    version_app::with_conn!(&mut conn, |c| {
        let stored: Vec<(String, i64)> = usage_data_raw::table
            .select((
                usage_data_raw::encoding,
                diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(LENGTH(payload) AS BIGINT)"),
            ))
            .order(usage_data_raw::usage_data_id)
            .load(c)
            .unwrap();
        assert_eq!(stored[0].0, "zstd-d1");
        assert!(
            (stored[0].1 as usize) < FULL.len() / 5,
            "the full payload takes {} of {} bytes",
            stored[0].1,
            FULL.len()
        );
        // A row written before compression came in: the bytes as received, `identity`.
        diesel::update(usage_data_raw::table.find(legacy_id))
            .set((
                usage_data_raw::payload.eq(&legacy),
                usage_data_raw::encoding.eq("identity"),
            ))
            .execute(c)
            .unwrap();
    });
    let output = run_cli(
        app.settings.store.url.expose_secret(),
        &[
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--format",
            "ndjson",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&[u8]> = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines, [FULL, legacy.as_slice()]);
}
