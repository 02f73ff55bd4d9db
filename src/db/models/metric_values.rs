//! Service Ping metric values: staged per submission by ingest, merged into blocks keyed by
//! metric by a background job, and read from both (plus the narrow `usage_data_metrics` rows
//! stored before, read transparently).
//!
//! Why two forms: ingest used to write one narrow row per leaf (~4,200 per payload) into an
//! index led by the metric, so each payload touched ~4,200 index pages, and on PostgreSQL
//! each row cost ~110 bytes. Now ingest writes ONE row per submission (`usage_data_values`,
//! its values as a JSON object), and [`merge_staged`] later turns many staged submissions
//! into one row per metric (`metric_block_values`, a JSON array aligned with the block's
//! ids): a metric's values over thousands of submissions are then a few rows, as the
//! analysts' reads want, at about four bytes per value as text (one on PostgreSQL, which
//! compresses it). The text form is
//! [`crate::domain::payload::stored`]; the `metric_values` view shows all forms as narrow rows.
//!
//! Reads look at the staged rows first and the blocks second: a merge that commits between
//! the two reads moves a submission from the first to the second, so it is found once or
//! twice (the duplicate has the same value and is dropped), never missed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{
    metric_block_values, metric_blocks, usage_data, usage_data_metrics, usage_data_values,
};
use crate::db::{AnyConnection, DbError};
use crate::domain::payload::stored::{self, ColumnBuilder, MalformedValues, StoredValue};
use crate::with_conn;

/// Ids (or keys) per `IN (…)` list: two lists of this size stay under SQLite's limit of
/// 32,766 bound variables.
const IDS_PER_QUERY: usize = 10_000;
/// Block value rows per multi-row INSERT (three variables each).
const ROWS_PER_INSERT: usize = 10_000;

impl From<MalformedValues> for DbError {
    fn from(err: MalformedValues) -> Self {
        DbError::Inconsistent(err.to_string())
    }
}

/// `(usage_data_id, key_id, value)` keyed for de-duplication.
type Found = BTreeMap<(i64, i64), StoredValue>;

/// Stages the values of newly stored submissions: `(usage_data_id, body)` with bodies from
/// [`stored::format_body`]. Runs inside the ingest transaction.
pub fn insert_staged(
    conn: &mut AnyConnection,
    rows: &[(i64, std::borrow::Cow<'_, str>)],
) -> Result<(), DbError> {
    // Bodies are ~10-40 KB each; a few per statement keeps the statement small.
    for chunk in rows.chunks(64) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(id, body)| {
                (
                    usage_data_values::usage_data_id.eq(*id),
                    usage_data_values::body.eq(Some(body.as_ref())),
                )
            })
            .collect();
        with_conn!(conn, |c| diesel::insert_into(usage_data_values::table)
            .values(&values)
            .execute(c))?;
    }
    Ok(())
}

/// The values of `key_ids` in the submissions `usage_data_ids`, whichever form holds them:
/// `(usage_data_id, key_id, value)` ordered by submission, then key.
pub fn values_of(
    conn: &mut AnyConnection,
    usage_data_ids: &[i64],
    key_ids: &[i64],
) -> Result<Vec<(i64, i64, StoredValue)>, DbError> {
    let mut found = Found::new();
    if usage_data_ids.is_empty() || key_ids.is_empty() {
        return Ok(Vec::new());
    }
    for keys in key_ids.chunks(IDS_PER_QUERY) {
        for ids in usage_data_ids.chunks(IDS_PER_QUERY) {
            let rows: Vec<(i64, i64, f64, Option<i64>)> =
                with_conn!(conn, |c| usage_data_metrics::table
                    .filter(usage_data_metrics::key_id.eq_any(keys))
                    .filter(usage_data_metrics::usage_data_id.eq_any(ids))
                    .select((
                        usage_data_metrics::usage_data_id,
                        usage_data_metrics::key_id,
                        usage_data_metrics::value,
                        usage_data_metrics::value_int,
                    ))
                    .load(c))?;
            for (id, key, value, exact) in rows {
                found.insert((id, key), StoredValue::new(value, exact));
            }
        }
    }
    let wanted: BTreeSet<i64> = key_ids.iter().copied().collect();
    // Staged bodies, and which block holds each merged submission, in one read per chunk.
    let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
    for ids in usage_data_ids.chunks(IDS_PER_QUERY) {
        let rows: Vec<(i64, Option<i64>, Option<String>)> =
            with_conn!(conn, |c| usage_data_values::table
                .filter(usage_data_values::usage_data_id.eq_any(ids))
                .select((
                    usage_data_values::usage_data_id,
                    usage_data_values::block_id,
                    usage_data_values::body,
                ))
                .load(c))?;
        for (id, block, body) in rows {
            match (block, body) {
                (Some(block), _) => members.entry(block).or_default().push(id),
                (None, Some(body)) => read_body(&body, id, &wanted, &mut found)?,
                (None, None) => {}
            }
        }
    }
    read_blocks(conn, &members, key_ids, &mut found)?;
    Ok(found
        .into_iter()
        .map(|((id, key), value)| (id, key, value))
        .collect())
}

/// Puts the wanted keys of one staged body into `found`: a handful are looked up in the
/// text, many are read in one pass.
fn read_body(
    body: &str,
    id: i64,
    wanted: &BTreeSet<i64>,
    found: &mut Found,
) -> Result<(), DbError> {
    if wanted.len() <= 16 {
        for key in wanted {
            if let Some(value) = stored::body_value(body, *key)? {
                found.insert((id, *key), value);
            }
        }
    } else {
        for (key, value) in stored::parse_body(body)? {
            if wanted.contains(&key) {
                found.insert((id, key), value);
            }
        }
    }
    Ok(())
}

/// Puts the values of `key_ids` of the given members of each block into `found`.
fn read_blocks(
    conn: &mut AnyConnection,
    members: &HashMap<i64, Vec<i64>>,
    key_ids: &[i64],
    found: &mut Found,
) -> Result<(), DbError> {
    if members.is_empty() {
        return Ok(());
    }
    let blocks: Vec<i64> = members.keys().copied().collect();
    let mut ids_of: HashMap<i64, Vec<i64>> = HashMap::with_capacity(blocks.len());
    for chunk in blocks.chunks(IDS_PER_QUERY) {
        let rows: Vec<(i64, String)> = with_conn!(conn, |c| metric_blocks::table
            .filter(metric_blocks::id.eq_any(chunk))
            .select((metric_blocks::id, metric_blocks::usage_data_ids))
            .load(c))?;
        for (block, ids) in rows {
            ids_of.insert(block, stored::parse_ids(&ids)?);
        }
    }
    for keys in key_ids.chunks(IDS_PER_QUERY) {
        for chunk in blocks.chunks(IDS_PER_QUERY) {
            let rows: Vec<(i64, i64, String)> = with_conn!(conn, |c| metric_block_values::table
                .filter(metric_block_values::key_id.eq_any(keys))
                .filter(metric_block_values::block_id.eq_any(chunk))
                .select((
                    metric_block_values::key_id,
                    metric_block_values::block_id,
                    metric_block_values::vals,
                ))
                .load(c))?;
            for (key, block, vals) in rows {
                let (Some(ids), Some(wanted)) = (ids_of.get(&block), members.get(&block)) else {
                    continue;
                };
                let vals = stored::parse_values(&vals)?;
                for id in wanted {
                    if let Ok(at) = ids.binary_search(id) {
                        if let Some(Some(value)) = vals.get(at) {
                            found.insert((*id, key), *value);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `(usage_data_id, value)` of one metric in the submissions whose id lies in `[low, high]`,
/// ordered by id: a range of the legacy table's index, the staged rows of the range, and the
/// metric's row of each block overlapping the range.
pub fn key_values_between(
    conn: &mut AnyConnection,
    key_id: i64,
    low: i64,
    high: i64,
) -> Result<Vec<(i64, StoredValue)>, DbError> {
    let mut found: BTreeMap<i64, StoredValue> = BTreeMap::new();
    let legacy: Vec<(i64, f64, Option<i64>)> = with_conn!(conn, |c| usage_data_metrics::table
        .filter(usage_data_metrics::key_id.eq(key_id))
        .filter(usage_data_metrics::usage_data_id.between(low, high))
        .select((
            usage_data_metrics::usage_data_id,
            usage_data_metrics::value,
            usage_data_metrics::value_int,
        ))
        .load(c))?;
    for (id, value, exact) in legacy {
        found.insert(id, StoredValue::new(value, exact));
    }
    let staged: Vec<(i64, Option<String>)> = with_conn!(conn, |c| usage_data_values::table
        .filter(usage_data_values::block_id.is_null())
        .filter(usage_data_values::usage_data_id.between(low, high))
        .select((usage_data_values::usage_data_id, usage_data_values::body))
        .load(c))?;
    for (id, body) in staged {
        if let Some(Some(value)) = body.map(|b| stored::body_value(&b, key_id)).transpose()? {
            found.insert(id, value);
        }
    }
    let blocks: Vec<(String, String)> = with_conn!(conn, |c| metric_block_values::table
        .inner_join(metric_blocks::table)
        .filter(metric_block_values::key_id.eq(key_id))
        .filter(metric_blocks::first_usage_data_id.le(high))
        .filter(metric_blocks::last_usage_data_id.ge(low))
        .select((metric_blocks::usage_data_ids, metric_block_values::vals))
        .load(c))?;
    for (ids, vals) in blocks {
        let ids = stored::parse_ids(&ids)?;
        let vals = stored::parse_values(&vals)?;
        for (id, value) in ids.iter().zip(vals) {
            if let (true, Some(value)) = ((low..=high).contains(id), value) {
                found.insert(*id, value);
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Deletes every value of the given submissions, in the caller's transaction (retention,
/// erasure): their legacy rows, their staged rows, and their entries in the blocks that hold
/// them (each such block is rewritten without them, or deleted when none is left). Returns
/// how many values were removed.
pub fn delete_values(conn: &mut AnyConnection, usage_data_ids: &[i64]) -> Result<usize, DbError> {
    let mut removed = 0;
    let mut by_block: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for ids in usage_data_ids.chunks(IDS_PER_QUERY) {
        removed += with_conn!(conn, |c| diesel::delete(
            usage_data_metrics::table.filter(usage_data_metrics::usage_data_id.eq_any(ids))
        )
        .execute(c))?;
        // RETURNING gives the row as deleted: a merge that committed while this waited for
        // the row shows here with its block, so that block is rewritten too.
        let gone: Vec<(i64, Option<i64>, Option<String>)> = with_conn!(conn, |c| diesel::delete(
            usage_data_values::table.filter(usage_data_values::usage_data_id.eq_any(ids))
        )
        .returning((
            usage_data_values::usage_data_id,
            usage_data_values::block_id,
            usage_data_values::body,
        ))
        .get_results(c))?;
        for (id, block, body) in gone {
            match (block, body) {
                (Some(block), _) => {
                    by_block.entry(block).or_default().insert(id);
                }
                (None, Some(body)) => removed += stored::parse_body(&body)?.len(),
                (None, None) => {}
            }
        }
    }
    for (block, ids) in by_block {
        removed += remove_from_block(conn, block, &ids)?;
    }
    Ok(removed)
}

/// Rewrites one block without the members `gone`; returns how many values went with them.
fn remove_from_block(
    conn: &mut AnyConnection,
    block: i64,
    gone: &BTreeSet<i64>,
) -> Result<usize, DbError> {
    // Lock the block (PostgreSQL) so two erasures of members of one block apply one after
    // the other, each to the other's result. SQLite's write transaction is exclusive already.
    let ids: Option<String> = match conn {
        AnyConnection::Postgres(c) => metric_blocks::table
            .filter(metric_blocks::id.eq(block))
            .select(metric_blocks::usage_data_ids)
            .for_update()
            .first(&mut **c)
            .optional()?,
        AnyConnection::Sqlite(c) => metric_blocks::table
            .filter(metric_blocks::id.eq(block))
            .select(metric_blocks::usage_data_ids)
            .first(&mut **c)
            .optional()?,
    };
    let Some(ids) = ids else { return Ok(0) };
    let ids = stored::parse_ids(&ids)?;
    let keep: Vec<bool> = ids.iter().map(|id| !gone.contains(id)).collect();
    let kept_ids: Vec<i64> = ids
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(id, _)| *id)
        .collect();
    let rows: Vec<(i64, String)> = with_conn!(conn, |c| metric_block_values::table
        .filter(metric_block_values::block_id.eq(block))
        .select((metric_block_values::key_id, metric_block_values::vals))
        .load(c))?;
    let mut removed = 0;
    for (key, vals) in rows {
        let vals = stored::parse_values(&vals)?;
        removed += vals
            .iter()
            .zip(&keep)
            .filter(|(v, k)| v.is_some() && !**k)
            .count();
        let kept: Vec<Option<StoredValue>> = vals
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| v)
            .collect();
        let row = metric_block_values::table
            .filter(metric_block_values::key_id.eq(key))
            .filter(metric_block_values::block_id.eq(block));
        if kept.iter().all(Option::is_none) {
            with_conn!(conn, |c| diesel::delete(row).execute(c))?;
        } else {
            let text = stored::format_values(&kept);
            with_conn!(conn, |c| diesel::update(row)
                .set(metric_block_values::vals.eq(&text))
                .execute(c))?;
        }
    }
    let block_row = metric_blocks::table.filter(metric_blocks::id.eq(block));
    match (kept_ids.first(), kept_ids.last()) {
        (Some(first), Some(last)) => {
            let text = stored::format_ids(&kept_ids);
            with_conn!(conn, |c| diesel::update(block_row)
                .set((
                    metric_blocks::usage_data_ids.eq(&text),
                    metric_blocks::first_usage_data_id.eq(*first),
                    metric_blocks::last_usage_data_id.eq(*last),
                ))
                .execute(c))?;
        }
        _ => {
            with_conn!(conn, |c| diesel::delete(block_row).execute(c))?;
        }
    }
    Ok(removed)
}

/// When the merge job makes a block.
#[derive(Debug, Clone, Copy)]
pub struct MergePolicy {
    /// Merge as soon as this many submissions are staged.
    pub min_block: usize,
    /// At most this many submissions per block.
    pub max_block: usize,
    /// Merge fewer than `min_block` once the oldest staged one was received this long ago.
    pub max_wait: chrono::Duration,
}

/// Staged bodies read at once by the merge: the bodies are ~10-40 KB each, so the merge
/// holds a few MB of them, not the whole block's.
const BODIES_PER_READ: usize = 64;

/// Merges the oldest staged submissions into one new block, in one transaction, if the
/// policy says it is time. Returns how many were merged (0: nothing to do yet). A merge that
/// is interrupted rolls back whole; the staged rows stay and the next run merges them.
pub fn merge_staged(
    conn: &mut AnyConnection,
    policy: &MergePolicy,
    now: NaiveDateTime,
) -> Result<usize, DbError> {
    conn.transaction(|conn| {
        let query = usage_data_values::table
            .filter(usage_data_values::block_id.is_null())
            .order(usage_data_values::usage_data_id)
            .limit(policy.max_block as i64)
            .select(usage_data_values::usage_data_id);
        // FOR UPDATE: an erasure of one of these waits for the merge, then finds the
        // submission in its block (delete_values reads the deleted row's block).
        let ids: Vec<i64> = match conn {
            AnyConnection::Postgres(c) => query.for_update().load(&mut **c)?,
            AnyConnection::Sqlite(c) => query.load(&mut **c)?,
        };
        if ids.is_empty() {
            return Ok(0);
        }
        if ids.len() < policy.min_block {
            let oldest: Option<NaiveDateTime> = with_conn!(conn, |c| usage_data::table
                .filter(usage_data::id.eq(ids[0]))
                .select(usage_data::received_at)
                .first(c)
                .optional())?;
            if oldest.is_some_and(|at| now - at < policy.max_wait) {
                return Ok(0);
            }
        }
        // One array per metric, built by copying each body's number text in member order.
        let mut columns: HashMap<i64, ColumnBuilder, foldhash::fast::RandomState> =
            HashMap::default();
        for chunk in ids.chunks(BODIES_PER_READ) {
            let bodies: Vec<(i64, Option<String>)> =
                with_conn!(conn, |c| usage_data_values::table
                    .filter(usage_data_values::usage_data_id.eq_any(chunk))
                    .order(usage_data_values::usage_data_id)
                    .select((usage_data_values::usage_data_id, usage_data_values::body))
                    .load(c))?;
            for (id, body) in bodies {
                let Ok(position) = ids.binary_search(&id) else {
                    continue;
                };
                for token in stored::body_tokens(body.as_deref().unwrap_or("{}")) {
                    let (key, text) = token?;
                    columns.entry(key).or_default().push(position, text);
                }
            }
        }
        let block = insert_block(conn, &ids, now)?;
        let mut rows: Vec<(i64, String)> = columns
            .into_iter()
            .map(|(key, column)| (key, column.finish(ids.len())))
            .collect();
        rows.sort_unstable_by_key(|(key, _)| *key);
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let values: Vec<_> = chunk
                .iter()
                .map(|(key, vals)| {
                    (
                        metric_block_values::key_id.eq(*key),
                        metric_block_values::block_id.eq(block),
                        metric_block_values::vals.eq(vals.as_str()),
                    )
                })
                .collect();
            with_conn!(conn, |c| diesel::insert_into(metric_block_values::table)
                .values(&values)
                .execute(c))?;
        }
        for chunk in ids.chunks(IDS_PER_QUERY) {
            mark_merged(conn, chunk, block)?;
        }
        Ok(ids.len())
    })
}

/// Records that the staged submissions `ids` are now in `block` (their bodies go).
fn mark_merged(conn: &mut AnyConnection, ids: &[i64], block: i64) -> Result<(), DbError> {
    let rows = usage_data_values::table.filter(usage_data_values::usage_data_id.eq_any(ids));
    match conn {
        // Updated in place: an erasure waiting on one of these rows then deletes the updated
        // row and learns its block (a row deleted and inserted anew would be skipped by the
        // waiting statement, and its values would stay in the block).
        AnyConnection::Postgres(c) => {
            diesel::update(rows)
                .set((
                    usage_data_values::block_id.eq(Some(block)),
                    usage_data_values::body.eq(None::<String>),
                ))
                .execute(&mut **c)?;
        }
        // Replaced by small new rows: an update in place left SQLite's leaf pages as sparse
        // as the staged bodies had made them (~5.5 KB a submission after the merge). Write
        // transactions do not overlap on SQLite, so the erasure race above cannot happen.
        AnyConnection::Sqlite(c) => {
            diesel::delete(rows).execute(&mut **c)?;
            let members: Vec<_> = ids
                .iter()
                .map(|id| {
                    (
                        usage_data_values::usage_data_id.eq(*id),
                        usage_data_values::block_id.eq(Some(block)),
                    )
                })
                .collect();
            diesel::insert_into(usage_data_values::table)
                .values(&members)
                .execute(&mut **c)?;
        }
    }
    Ok(())
}

fn insert_block(conn: &mut AnyConnection, ids: &[i64], now: NaiveDateTime) -> Result<i64, DbError> {
    let text = stored::format_ids(ids);
    let first = ids.first().copied().unwrap_or_default();
    let last = ids.last().copied().unwrap_or_default();
    Ok(with_conn!(conn, |c| diesel::insert_into(
        metric_blocks::table
    )
    .values((
        metric_blocks::first_usage_data_id.eq(first),
        metric_blocks::last_usage_data_id.eq(last),
        metric_blocks::usage_data_ids.eq(&text),
        metric_blocks::merged_at.eq(now),
    ))
    .returning(metric_blocks::id)
    .get_result(c))?)
}

/// How many submissions are staged (not merged yet): the merge job's backlog.
pub fn count_staged(conn: &mut AnyConnection) -> Result<i64, DbError> {
    Ok(with_conn!(conn, |c| usage_data_values::table
        .filter(usage_data_values::block_id.is_null())
        .count()
        .get_result(c))?)
}
