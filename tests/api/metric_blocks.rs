//! Metric values are staged per submission by ingest and merged into blocks keyed by metric
//! (issue 10). Whatever form holds them, every reader sees the same values: the analysts'
//! `metric_values` view, the application's reads by submission and by metric range, and
//! erasure removes a submission's values from a block without touching its neighbours'.
//! Narrow rows an earlier release wrote are read beside them.
//! Checked against the values computed here from the posted JSON.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde_json::{json, Value};
use version_app::db::models::metric_values::{self as values, MergePolicy};
use version_app::db::schema::{metric_blocks, metric_keys, metric_values, usage_data_values};
use version_app::db::AnyConnection;

use crate::helpers::TestApp;
use crate::usage_data::{minimal_with, post_json};

/// `(key_path, usage_data_id) -> (value, value_int)`.
type Values = BTreeMap<(String, i64), (f64, Option<i64>)>;

/// Every numeric or boolean leaf of a JSON document, flattened as the docs say (dotted
/// paths, `[i]` for array elements, booleans as 0/1): the independent computation.
fn leaves(value: &Value, path: &str, out: &mut BTreeMap<String, (f64, Option<i64>)>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                leaves(v, &join(key), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Bool(b) => {
            out.insert(
                path.to_owned(),
                (f64::from(u8::from(*b)), Some(i64::from(*b))),
            );
        }
        Value::Number(n) => {
            let exact = n.as_i64();
            out.insert(path.to_owned(), (n.as_f64().unwrap(), exact));
        }
        _ => {}
    }
}

/// Every row of the view, by key path.
fn view(conn: &mut AnyConnection) -> Values {
    let rows: Vec<(String, i64, f64, Option<i64>)> = version_app::with_conn!(conn, |c| {
        metric_values::table
            .inner_join(metric_keys::table.on(metric_keys::id.eq(metric_values::key_id)))
            .select((
                metric_keys::key_path,
                metric_values::usage_data_id,
                metric_values::value,
                metric_values::value_int,
            ))
            .load(c)
            .unwrap()
    });
    let mut out = Values::new();
    for (path, id, value, exact) in rows {
        assert!(
            out.insert((path.clone(), id), (value, exact)).is_none(),
            "{path} of {id} is in the view twice"
        );
    }
    out
}

/// The same values through the application's reads: by submission, and by metric range.
fn read_by_app(conn: &mut AnyConnection, ids: &[i64]) -> (Values, Values) {
    let keys: Vec<(i64, String)> = version_app::with_conn!(conn, |c| metric_keys::table
        .select((metric_keys::id, metric_keys::key_path))
        .load(c)
        .unwrap());
    let path_of: BTreeMap<i64, String> = keys.iter().cloned().collect();
    let key_ids: Vec<i64> = keys.iter().map(|(id, _)| *id).collect();
    let by_submission = values::values_of(conn, ids, &key_ids)
        .unwrap()
        .into_iter()
        .map(|(id, key, v)| ((path_of[&key].clone(), id), (v.value, v.exact)))
        .collect();
    let (low, high) = (*ids.iter().min().unwrap(), *ids.iter().max().unwrap());
    let mut by_range = Values::new();
    for (key, path) in &path_of {
        for (id, v) in values::key_values_between(conn, *key, low, high).unwrap() {
            by_range.insert((path.clone(), id), (v.value, v.exact));
        }
    }
    (by_submission, by_range)
}

fn merge(conn: &mut AnyConnection, max_block: usize) -> usize {
    let policy = MergePolicy {
        min_block: 1,
        max_block,
        max_wait: chrono::Duration::zero(),
    };
    values::merge_staged(conn, &policy, chrono::Utc::now().naive_utc()).unwrap()
}

fn assert_same(expected: &Values, conn: &mut AnyConnection, ids: &[i64], when: &str) {
    assert_eq!(&view(conn), expected, "{when}: the metric_values view");
    let (by_submission, by_range) = read_by_app(conn, ids);
    assert_eq!(&by_submission, expected, "{when}: values_of");
    assert_eq!(&by_range, expected, "{when}: key_values_between");
}

/// Moves one submission's values from its staged row to narrow `usage_data_metrics` rows.
fn as_legacy_rows(conn: &mut AnyConnection, id: i64) {
    use version_app::db::schema::usage_data_metrics;
    let body: Option<String> = version_app::with_conn!(conn, |c| usage_data_values::table
        .filter(usage_data_values::usage_data_id.eq(id))
        .select(usage_data_values::body)
        .first(c)
        .unwrap());
    let rows: Vec<_> = version_app::domain::payload::stored::parse_body(&body.unwrap())
        .unwrap()
        .into_iter()
        .map(|(key, v)| {
            (
                usage_data_metrics::key_id.eq(key),
                usage_data_metrics::usage_data_id.eq(id),
                usage_data_metrics::value.eq(v.value),
                usage_data_metrics::value_int.eq(v.exact),
            )
        })
        .collect();
    version_app::with_conn!(conn, |c| {
        diesel::delete(usage_data_values::table.filter(usage_data_values::usage_data_id.eq(id)))
            .execute(c)
            .unwrap();
        diesel::insert_into(usage_data_metrics::table)
            .values(&rows)
            .execute(c)
            .unwrap();
    });
}

#[tokio::test]
async fn values_read_the_same_staged_merged_and_after_an_erasure() {
    // The merge job must not run on its own here: the test merges step by step.
    let app = TestApp::spawn_with(|s| {
        s.ingest.metric_block_min = std::num::NonZeroUsize::new(1024).unwrap();
        s.ingest.metric_merge_max_wait = std::time::Duration::from_secs(86_400);
    })
    .await;
    // A1, B1 | A2, A3: the first block mixes two installations, the second is all A's.
    let posts = [("a", 1, 5), ("b", 1, 6), ("a", 2, 7), ("a", 3, 8)];
    let mut expected = Values::new();
    let mut ids: Vec<(String, i64)> = Vec::new();
    for (uuid, day, issues) in posts {
        let body = minimal_with(json!({
            "uuid": format!("blocks-{uuid}"),
            "recorded_at": format!("2026-11-0{day}T10:00:00.000Z"),
            "counts": {"issues": issues, "flag": day % 2 == 0, "ratio": 0.25 * f64::from(day)},
            "database": {"pg_system_id": 6_842_684_531_675_334_351_i64 + i64::from(day)},
        }));
        let response = post_json(&app, body.clone()).await;
        assert_eq!(response.status(), 201);
        let answer: Value = response.json().await.unwrap();
        let id = answer["conv_index"]["usage_data_id"].as_i64().unwrap();
        let mut flat = BTreeMap::new();
        leaves(&serde_json::from_slice(&body).unwrap(), "", &mut flat);
        for (path, v) in flat {
            expected.insert((path, id), v);
        }
        ids.push((uuid.to_owned(), id));
    }
    let all: Vec<i64> = ids.iter().map(|(_, id)| *id).collect();
    let mut conn = app.store().get().unwrap();
    assert_eq!(values::count_staged(&mut conn).unwrap(), 4);
    // A3 as an earlier release stored it: narrow usage_data_metrics rows, no staged row.
    as_legacy_rows(&mut conn, all[3]);
    assert_eq!(values::count_staged(&mut conn).unwrap(), 3);
    assert_eq!(
        expected.get(&("database.pg_system_id".into(), all[0])),
        Some(&(
            6_842_684_531_675_334_352_f64,
            Some(6_842_684_531_675_334_352)
        ))
    );
    assert_same(&expected, &mut conn, &all, "all staged");

    assert_eq!(merge(&mut conn, 2), 2);
    assert_same(
        &expected,
        &mut conn,
        &all,
        "two merged, one staged, one legacy",
    );
    assert_eq!(merge(&mut conn, 2), 1);
    assert_eq!(merge(&mut conn, 2), 0, "nothing left to merge");
    assert_eq!(values::count_staged(&mut conn).unwrap(), 0);
    let staged_bodies: i64 = version_app::with_conn!(&mut conn, |c| usage_data_values::table
        .filter(usage_data_values::body.is_not_null())
        .count()
        .get_result(c)
        .unwrap());
    assert_eq!(staged_bodies, 0, "a merged submission keeps no staged body");
    assert_same(&expected, &mut conn, &all, "all merged");

    // Erase A's submissions: the mixed block keeps B1 only, the all-A block goes, and A3's
    // narrow rows go too.
    let of_a: Vec<i64> = ids
        .iter()
        .filter(|(uuid, _)| uuid == "a")
        .map(|(_, id)| *id)
        .collect();
    let removed = conn
        .transaction(|conn| values::delete_values(conn, &of_a))
        .unwrap();
    let before = expected.len();
    expected.retain(|(_, id), _| !of_a.contains(id));
    assert_eq!(removed, before - expected.len(), "values removed");
    let blocks: Vec<String> = version_app::with_conn!(&mut conn, |c| metric_blocks::table
        .select(metric_blocks::usage_data_ids)
        .load(c)
        .unwrap());
    let b1 = ids.iter().find(|(uuid, _)| uuid == "b").unwrap().1;
    assert_eq!(blocks, vec![format!("[{b1}]")], "blocks after the erasure");
    assert_same(&expected, &mut conn, &all, "after erasing A");
}
