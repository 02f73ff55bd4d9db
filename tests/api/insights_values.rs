//! The rollup job reads a submission's metric values from its stored payload
//! (`version_app::insights::values`) instead of probing `usage_data_metrics` key by key. Those
//! values must be exactly the rows ingest stored, on the store under test; where the payload
//! cannot vouch for them (retention removed it), the job falls back to the table.

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json, FULL};
use serde_json::json;
use version_app::db::models::insights as store;
use version_app::insights::values::values_from_payload;

/// The minimal payload with the awkward leaves: a repeated key, a dotted key colliding with a
/// nested path, booleans, sentinels, a failed histogram, arrays of objects, an integer above
/// 2^53, a float, strings and nulls, and a key path longer than ingest keeps.
fn awkward() -> Vec<u8> {
    let long_key = "k".repeat(600);
    let body = minimal_with(json!({
        "uuid": "values-awkward",
        "counts": {"issues": 7, "timed_out": -1, "other": -1000, "flag": true, "off": false},
        "topology": {"nodes": [{"node_cpus": 4, "node_services": [{"name": "x", "rss": 1.5}]}]},
        "histogram": {"-1": -1},
        "database": {"pg_system_id": 9_007_199_254_740_993_i64},
        "text": "not a metric",
        "nothing": null,
        "long": {long_key: 1},
    }));
    let text = String::from_utf8(body).unwrap();
    // serde_json cannot write a repeated key: it goes in as text.
    let text = text.replacen('{', r#"{"dup":{"x":1,"x":2},"a.b":5,"a":{"b":6},"#, 1);
    text.into_bytes()
}

#[tokio::test]
async fn payload_values_are_the_stored_metric_rows() {
    let app = TestApp::spawn().await;
    for body in [FULL.to_vec(), awkward()] {
        let response = post_json(&app, body).await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    let db = app.store();
    let mut conn = db.get().unwrap();
    let key_ids: Vec<i64> = store::list_metric_keys(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let submissions = store::list_submissions_after(&mut conn, 0, 10).unwrap();
    assert_eq!(submissions.len(), 2);
    for s in &submissions {
        let stored = store::list_metric_values_of(&mut conn, s.id, &key_ids).unwrap();
        assert!(
            stored.len() > 10,
            "submission {} stored {} rows",
            s.id,
            stored.len()
        );
        let from_payload = values_from_payload(&db, s.id)
            .unwrap()
            .expect("the stored payload vouches for its rows");
        assert_eq!(from_payload.len(), stored.len(), "submission {}", s.id);
        for (read, table) in from_payload.iter().zip(&stored) {
            assert_eq!(read.0, table.0, "submission {}", s.id);
            assert_eq!(read.1.to_bits(), table.1.to_bits(), "key {}", table.0);
        }
    }
    // Without its payload (retention), the job does not guess: it reads the table.
    let gone = submissions[0].id;
    version_app::with_conn!(&mut conn, |c| {
        use diesel::prelude::*;
        use version_app::db::schema::usage_data_raw;
        diesel::delete(usage_data_raw::table.filter(usage_data_raw::usage_data_id.eq(gone)))
            .execute(c)
            .unwrap()
    });
    assert_eq!(values_from_payload(&db, gone).unwrap(), None);
}
