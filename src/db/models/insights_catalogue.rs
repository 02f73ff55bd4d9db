//! Metric definitions (`metric_definitions`), the catalogue rollup (`insights_metric_catalogue`,
//! `insights_key_months`) and the reads behind the catalogue and the top lists.

use chrono::NaiveDate;
use diesel::prelude::*;

use crate::db::schema::{
    insights_installations, insights_key_months, insights_metric_catalogue, insights_periods,
    metric_definitions, metric_keys,
};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::definitions::Definition;
use crate::with_conn;

/// Rows per insert statement (8 variables each; SQLite allows 32,766).
const ROWS_PER_INSERT: usize = 2_000;
/// Key ids per look-up statement.
const KEYS_PER_LOOKUP: usize = 5_000;

/// A stored definition: `(key_path, description, product_group, value_type, status,
/// time_frame, data_source, tier)`.
pub type DefinitionRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

/// Replaces every definition by `defs`, in one transaction; returns the previous
/// `(key_path, time_frame)` pairs so the caller can tell which time frames changed.
pub fn replace_definitions(
    conn: &mut AnyConnection,
    defs: &[Definition],
) -> Result<Vec<(String, String)>, DbError> {
    conn.transaction(|conn| {
        let before: Vec<(String, String)> = with_conn!(conn, |c| metric_definitions::table
            .select((metric_definitions::key_path, metric_definitions::time_frame))
            .load(c))?;
        with_conn!(conn, |c| {
            diesel::delete(metric_definitions::table).execute(c)?;
            for chunk in defs.chunks(ROWS_PER_INSERT) {
                let rows: Vec<_> = chunk
                    .iter()
                    .map(|d| {
                        (
                            metric_definitions::key_path.eq(&d.key_path),
                            metric_definitions::description.eq(&d.description),
                            metric_definitions::product_group.eq(&d.product_group),
                            metric_definitions::value_type.eq(&d.value_type),
                            metric_definitions::status.eq(&d.status),
                            metric_definitions::time_frame.eq(d.time_frame.as_str()),
                            metric_definitions::data_source.eq(&d.data_source),
                            metric_definitions::tier.eq(&d.tier),
                        )
                    })
                    .collect();
                diesel::insert_into(metric_definitions::table)
                    .values(rows)
                    .execute(c)?;
            }
            Ok::<_, diesel::result::Error>(())
        })?;
        Ok(before)
    })
}

/// Every stored definition.
pub fn list_definitions(conn: &mut AnyConnection) -> Result<Vec<DefinitionRow>, DbError> {
    Ok(with_conn!(conn, |c| metric_definitions::table
        .select((
            metric_definitions::key_path,
            metric_definitions::description,
            metric_definitions::product_group,
            metric_definitions::value_type,
            metric_definitions::status,
            metric_definitions::time_frame,
            metric_definitions::data_source,
            metric_definitions::tier,
        ))
        .load(c))?)
}

/// The defined time frame of one key path, if it has a definition.
pub fn find_defined_time_frame(
    conn: &mut AnyConnection,
    key_path: &str,
) -> Result<Option<String>, DbError> {
    Ok(with_conn!(conn, |c| metric_definitions::table
        .filter(metric_definitions::key_path.eq(key_path))
        .select(metric_definitions::time_frame)
        .first(c)
        .optional())?)
}

/// Every metric key with its defined time frame: `(id, key_path, time_frame)`.
pub fn list_keys_with_definitions(
    conn: &mut AnyConnection,
) -> Result<Vec<(i64, String, Option<String>)>, DbError> {
    Ok(with_conn!(conn, |c| metric_keys::table
        .left_join(
            metric_definitions::table.on(metric_definitions::key_path.eq(metric_keys::key_path)),
        )
        .select((
            metric_keys::id,
            metric_keys::key_path,
            metric_definitions::time_frame.nullable(),
        ))
        .load(c))?)
}

/// One key's version range: `(key_id, first_version, first_sort, last_version, last_sort)`.
pub type CatalogueRow = (i64, String, i64, String, i64);

/// The catalogue rows of the given keys.
pub fn list_catalogue_of(
    conn: &mut AnyConnection,
    key_ids: &[i64],
) -> Result<Vec<CatalogueRow>, DbError> {
    let mut out = Vec::new();
    for chunk in key_ids.chunks(KEYS_PER_LOOKUP) {
        let rows: Vec<CatalogueRow> = with_conn!(conn, |c| insights_metric_catalogue::table
            .filter(insights_metric_catalogue::key_id.eq_any(chunk))
            .select((
                insights_metric_catalogue::key_id,
                insights_metric_catalogue::first_version,
                insights_metric_catalogue::first_sort,
                insights_metric_catalogue::last_version,
                insights_metric_catalogue::last_sort,
            ))
            .load(c))?;
        out.extend(rows);
    }
    Ok(out)
}

/// Every catalogue row, with its key path.
pub fn list_catalogue(conn: &mut AnyConnection) -> Result<Vec<(String, CatalogueRow)>, DbError> {
    Ok(with_conn!(conn, |c| insights_metric_catalogue::table
        .inner_join(metric_keys::table.on(metric_keys::id.eq(insights_metric_catalogue::key_id)))
        .select((
            metric_keys::key_path,
            (
                insights_metric_catalogue::key_id,
                insights_metric_catalogue::first_version,
                insights_metric_catalogue::first_sort,
                insights_metric_catalogue::last_version,
                insights_metric_catalogue::last_sort,
            ),
        ))
        .load(c))?)
}

/// Writes catalogue rows (inserted or replaced).
pub fn upsert_catalogue(conn: &mut AnyConnection, rows: &[CatalogueRow]) -> Result<(), DbError> {
    use diesel::upsert::excluded;
    for (key_id, first, first_sort, last, last_sort) in rows {
        with_conn!(conn, |c| diesel::insert_into(
            insights_metric_catalogue::table
        )
        .values((
            insights_metric_catalogue::key_id.eq(key_id),
            insights_metric_catalogue::first_version.eq(first),
            insights_metric_catalogue::first_sort.eq(first_sort),
            insights_metric_catalogue::last_version.eq(last),
            insights_metric_catalogue::last_sort.eq(last_sort),
        ))
        .on_conflict(insights_metric_catalogue::key_id)
        .do_update()
        .set((
            insights_metric_catalogue::first_version
                .eq(excluded(insights_metric_catalogue::first_version)),
            insights_metric_catalogue::first_sort
                .eq(excluded(insights_metric_catalogue::first_sort)),
            insights_metric_catalogue::last_version
                .eq(excluded(insights_metric_catalogue::last_version)),
            insights_metric_catalogue::last_sort.eq(excluded(insights_metric_catalogue::last_sort)),
        ))
        .execute(c))?;
    }
    Ok(())
}

/// Adds `delta` (+1 / -1) to the month's installation count of every key in `key_ids`.
pub fn add_key_months(
    conn: &mut AnyConnection,
    month: NaiveDate,
    key_ids: &[i64],
    delta: i64,
) -> Result<(), DbError> {
    use diesel::upsert::excluded;
    for chunk in key_ids.chunks(ROWS_PER_INSERT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|k| {
                (
                    insights_key_months::key_id.eq(*k),
                    insights_key_months::period_start.eq(month),
                    insights_key_months::installations.eq(delta),
                )
            })
            .collect();
        with_conn!(conn, |c| diesel::insert_into(insights_key_months::table)
            .values(rows)
            .on_conflict((
                insights_key_months::period_start,
                insights_key_months::key_id
            ))
            .do_update()
            .set(
                insights_key_months::installations.eq(insights_key_months::installations
                    + excluded(insights_key_months::installations))
            )
            .execute(c))?;
    }
    Ok(())
}

/// `(key_id, installations)` of one month.
pub fn list_key_month(
    conn: &mut AnyConnection,
    month: NaiveDate,
) -> Result<Vec<(i64, i64)>, DbError> {
    Ok(with_conn!(conn, |c| insights_key_months::table
        .filter(insights_key_months::period_start.eq(month))
        .select((
            insights_key_months::key_id,
            insights_key_months::installations
        ))
        .load(c))?)
}

/// Empties the catalogue rollups (for `insights rebuild`).
pub fn reset(conn: &mut AnyConnection) -> Result<(), DbError> {
    with_conn!(conn, |c| {
        diesel::delete(insights_key_months::table).execute(c)?;
        diesel::delete(insights_metric_catalogue::table).execute(c)
    })?;
    Ok(())
}

/// `installation id → (uuid, hostname)` of the given installations.
pub fn list_installation_names(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, (String, String)>, DbError> {
    let mut names = std::collections::HashMap::with_capacity(ids.len());
    // Bound parameters per statement stay far below both stores' limits.
    for chunk in ids.chunks(5_000) {
        let rows: Vec<(i64, String, String)> = with_conn!(conn, |c| insights_installations::table
            .filter(insights_installations::id.eq_any(chunk))
            .select((
                insights_installations::id,
                insights_installations::uuid,
                insights_installations::hostname,
            ))
            .load(c))?;
        names.extend(rows.into_iter().map(|(id, u, h)| (id, (u, h))));
    }
    Ok(names)
}

/// The latest period start of a kind with any counted submission before `before`.
pub fn latest_period_before(
    conn: &mut AnyConnection,
    kind: &str,
    before: NaiveDate,
) -> Result<Option<NaiveDate>, DbError> {
    Ok(with_conn!(conn, |c| insights_periods::table
        .filter(insights_periods::period_kind.eq(kind))
        .filter(insights_periods::period_start.lt(before))
        .select(insights_periods::period_start)
        .order(insights_periods::period_start.desc())
        .first(c)
        .optional())?)
}
