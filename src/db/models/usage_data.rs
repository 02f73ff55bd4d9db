//! The Service Ping tables: `usage_data` (summary and score), `usage_data_raw` (verbatim
//! payload), `metric_keys` (key path dictionary) and `usage_data_metrics` (narrow rows).
//!
//! Writes come in groups: the ingest writer hands [`store_batch`] every payload that arrived
//! while the previous group was committing, so ~4,200 metric rows per payload are written with
//! a few multi-row statements (SQLite) or one `COPY` (PostgreSQL) per group, and the fsync is
//! shared by the group.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::{metric_keys, usage_data, usage_data_metrics, usage_data_raw};
use crate::db::{AnyConnection, DbError, WriteTransaction};
use crate::domain::devops::{self, FeatureScores, ScoreMapping};
use crate::domain::payload::{FlatMetrics, PayloadSummary};
use crate::with_conn;

/// SQLite refuses statements with more than 32,766 bound variables; three per metric row.
const SQLITE_METRIC_ROWS_PER_INSERT: usize = 10_000;
/// Key paths per dictionary statement (one variable each; PostgreSQL allows 65,535).
const KEYS_PER_STATEMENT: usize = 5_000;

/// How a submission reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmissionSource {
    /// `POST /usage_data` from a GitLab instance.
    Automatic,
    /// The upload form at `/usage_data/new`.
    Manual,
}

impl SubmissionSource {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionSource::Automatic => "automatic",
            SubmissionSource::Manual => "manual",
        }
    }
}

/// A parsed payload ready to be stored.
#[derive(Debug)]
pub struct NewSubmission {
    /// Identity fields.
    pub summary: PayloadSummary,
    /// Every numeric/boolean leaf.
    pub metrics: FlatMetrics,
    /// The JSON bytes as the instance produced them.
    pub raw: Vec<u8>,
    /// Automatic or manual.
    pub source: SubmissionSource,
    /// Sender's country code, when GeoIP is configured.
    pub country: Option<String>,
}

/// What was stored (or found already stored) for one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubmission {
    /// `usage_data.id`.
    pub usage_data_id: i64,
    /// The 30 DevOps-score floats (without `usage_data_id`), as answered the first time.
    pub scores: serde_json::Map<String, serde_json::Value>,
    /// Metric rows stored for it.
    pub metrics_count: i64,
    /// True when this was a re-delivery of an already stored payload.
    pub duplicate: bool,
}

impl StoredSubmission {
    /// The `conv_index` object answered to GitLab: `usage_data_id` first, then the scores.
    pub fn conv_index(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(1 + self.scores.len());
        map.insert("usage_data_id".into(), self.usage_data_id.into());
        map.extend(self.scores.clone());
        serde_json::Value::Object(map)
    }
}

/// In-memory cache of `metric_keys`: key paths rarely change between GitLab versions, so
/// after the first payload almost every lookup is a hash probe instead of a query.
#[derive(Debug, Default)]
pub struct KeyDictionary {
    ids: RwLock<HashMap<String, i64>>,
}

impl KeyDictionary {
    /// The cached id of a key path.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.ids
            .read()
            .expect("key dictionary lock")
            .get(key)
            .copied()
    }

    /// Makes sure every key in `metrics` has an id, inserting new key paths in their own
    /// committed statements: ids of keys must never point at rows a rolled-back group
    /// transaction took with it, and an unused key path is harmless.
    pub fn resolve<'a>(
        &self,
        conn: &mut AnyConnection,
        keys: impl Iterator<Item = &'a str>,
    ) -> Result<(), DbError> {
        let missing: Vec<&str> = {
            let ids = self.ids.read().expect("key dictionary lock");
            let mut missing: Vec<&str> = keys.filter(|k| !ids.contains_key(*k)).collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut found = Vec::with_capacity(missing.len());
        for chunk in missing.chunks(KEYS_PER_STATEMENT) {
            let rows: Vec<_> = chunk.iter().map(|k| metric_keys::key_path.eq(*k)).collect();
            with_conn!(conn, |c| {
                diesel::insert_into(metric_keys::table)
                    .values(&rows)
                    .on_conflict_do_nothing()
                    .execute(c)?;
                found.extend(
                    metric_keys::table
                        .filter(metric_keys::key_path.eq_any(chunk))
                        .select((metric_keys::key_path, metric_keys::id))
                        .load::<(String, i64)>(c)?,
                );
            });
        }
        self.ids.write().expect("key dictionary lock").extend(found);
        Ok(())
    }
}

/// The stored answer for (uuid, recorded_at), if that payload was stored already. A macro,
/// not a function, so it compiles inside [`with_conn!`] for each backend.
macro_rules! find_stored {
    ($c:expr, $uuid:expr, $recorded_at:expr) => {
        usage_data::table
            .filter(usage_data::uuid.eq($uuid))
            .filter(usage_data::recorded_at.eq($recorded_at))
            .select((
                usage_data::id,
                usage_data::metrics_count,
                usage_data::conv_index,
            ))
            .first::<(i64, i64, String)>($c)
            .optional()?
            .map(stored_from_row)
            .transpose()?
    };
}

#[derive(Insertable)]
#[diesel(table_name = usage_data)]
struct NewUsageData<'a> {
    uuid: &'a str,
    unique_instance_id: Option<&'a str>,
    hostname: Option<&'a str>,
    version_raw: Option<&'a str>,
    version: Option<&'a str>,
    version_major: Option<i64>,
    version_minor: Option<i64>,
    version_patch: Option<i64>,
    edition: Option<&'a str>,
    installation_type: Option<&'a str>,
    active_user_count: Option<i64>,
    historical_max_users: Option<i64>,
    license_md5: Option<&'a str>,
    license_sha256: Option<&'a str>,
    license_id: Option<i64>,
    license_plan: Option<&'a str>,
    license_trial: Option<bool>,
    license_expires_at: Option<NaiveDate>,
    license_user_count: Option<i64>,
    licensee_name: Option<&'a str>,
    recorded_at: NaiveDateTime,
    recorded_week: NaiveDate,
    received_at: NaiveDateTime,
    source: &'a str,
    country: Option<&'a str>,
    metrics_count: i64,
    score_inputs: String,
    instance_scores: String,
    score_previous_id: Option<i64>,
    formula_version: i64,
    conv_index: String,
}

/// One metric row.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = usage_data_metrics, treat_none_as_default_value = false)]
pub struct NewMetric {
    /// `metric_keys.id`.
    pub key_id: i64,
    /// `usage_data.id`.
    pub usage_data_id: i64,
    /// The value.
    pub value: f64,
}

/// Monday of the week `at` falls in: a plain date both stores group on.
pub fn week_start(at: NaiveDateTime) -> NaiveDate {
    let date = at.date();
    date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
}

/// Stores a group of submissions in ONE transaction and returns one result per submission,
/// in order. Keys must have been [`KeyDictionary::resolve`]d first. Re-deliveries (same uuid
/// and recorded_at, also within the group) return the stored id and scores.
pub fn store_batch(
    conn: &mut AnyConnection,
    keys: &KeyDictionary,
    mapping: &ScoreMapping,
    leaders: &FeatureScores,
    batch: &[NewSubmission],
    received_at: NaiveDateTime,
) -> Result<Vec<StoredSubmission>, DbError> {
    let ids = keys.ids.read().expect("key dictionary lock");
    with_conn!(conn, |c| {
        c.write_transaction::<_, DbError, _>(|c| {
            let mut results = Vec::with_capacity(batch.len());
            let mut rows: Vec<NewMetric> = Vec::new();
            for submission in batch {
                let summary = &submission.summary;
                let recorded_at = summary.recorded_at.naive_utc();
                if let Some(existing) = find_stored!(c, &summary.uuid, recorded_at) {
                    results.push(existing);
                    continue;
                }
                // The DevOps score needs the instance's earlier submission for all-time counters.
                let rule = &mapping.cumulative;
                let window_start =
                    recorded_at - Duration::seconds((rule.max_elapsed_days * 86_400.0) as i64);
                let candidates: Vec<(i64, NaiveDateTime, String)> = usage_data::table
                    .filter(usage_data::uuid.eq(&summary.uuid))
                    .filter(usage_data::recorded_at.lt(recorded_at))
                    .filter(usage_data::recorded_at.ge(window_start))
                    .select((
                        usage_data::id,
                        usage_data::recorded_at,
                        usage_data::score_inputs,
                    ))
                    .load(c)?;
                let times: Vec<_> = candidates.iter().map(|(_, at, _)| at.and_utc()).collect();
                let previous = devops::pick_previous(mapping, summary.recorded_at, &times)
                    .map(|i| &candidates[i]);
                let previous_inputs: Option<BTreeMap<String, f64>> =
                    previous.map(|(_, _, inputs)| serde_json::from_str(inputs).unwrap_or_default());
                let lookup = |key: &str| submission.metrics.get(key);
                let current = devops::Submission {
                    metrics: &lookup,
                    recorded_at: summary.recorded_at,
                    active_users: summary.active_user_count.map(|n| n as f64),
                };
                let earlier = previous
                    .zip(previous_inputs.as_ref())
                    .map(|((_, at, _), m)| devops::Submission {
                        metrics: m,
                        recorded_at: at.and_utc(),
                        active_users: None,
                    });
                let instance = devops::instance_scores(mapping, &current, earlier.as_ref());
                let mut scores = devops::conv_index(1, &instance, leaders).to_json_map();
                scores.remove("usage_data_id");
                let inputs = devops::extract_inputs(mapping, &lookup);

                let version = summary.version.as_ref();
                let new_row = NewUsageData {
                    uuid: &summary.uuid,
                    unique_instance_id: summary.unique_instance_id.as_deref(),
                    hostname: summary.hostname.as_deref(),
                    version_raw: version.map(|v| v.raw.as_str()),
                    version: version.map(|v| v.normalized.as_str()),
                    version_major: version.and_then(|v| v.major),
                    version_minor: version.and_then(|v| v.minor),
                    version_patch: version.and_then(|v| v.patch),
                    edition: summary.edition.as_deref(),
                    installation_type: summary.installation_type.as_deref(),
                    active_user_count: summary.active_user_count,
                    historical_max_users: summary.historical_max_users,
                    license_md5: summary.license_md5.as_deref(),
                    license_sha256: summary.license_sha256.as_deref(),
                    license_id: summary.license_id,
                    license_plan: summary.license_plan.as_deref(),
                    license_trial: summary.license_trial,
                    license_expires_at: summary.license_expires_at,
                    license_user_count: summary.license_user_count,
                    licensee_name: summary.licensee_name.as_deref(),
                    recorded_at,
                    recorded_week: week_start(recorded_at),
                    received_at,
                    source: submission.source.as_str(),
                    country: submission.country.as_deref(),
                    metrics_count: submission.metrics.len() as i64,
                    score_inputs: serde_json::to_string(&inputs).expect("map serialises"),
                    instance_scores: serde_json::to_string(&instance).expect("scores serialise"),
                    score_previous_id: previous.map(|(id, _, _)| *id),
                    formula_version: i64::from(mapping.formula_version),
                    conv_index: serde_json::Value::Object(scores.clone()).to_string(),
                };
                // Another process may commit the same payload between our look-up and this
                // insert: the unique (uuid, recorded_at) key makes the insert a no-op (it
                // waits for the other transaction), and the row is read back instead.
                let inserted: Option<i64> = diesel::insert_into(usage_data::table)
                    .values(&new_row)
                    .on_conflict_do_nothing()
                    .returning(usage_data::id)
                    .get_result(c)
                    .optional()?;
                let Some(id) = inserted else {
                    let existing = find_stored!(c, &summary.uuid, recorded_at)
                        .ok_or_else(|| DbError::Other("conflicting submission vanished".into()))?;
                    results.push(existing);
                    continue;
                };
                diesel::insert_into(usage_data_raw::table)
                    .values((
                        usage_data_raw::usage_data_id.eq(id),
                        usage_data_raw::payload.eq(&submission.raw),
                    ))
                    .execute(c)?;
                for metric in submission.metrics.iter() {
                    let key_id = *ids.get(metric.key).ok_or_else(|| {
                        DbError::Other(format!("metric key `{}` was not resolved", metric.key))
                    })?;
                    rows.push(NewMetric {
                        key_id,
                        usage_data_id: id,
                        value: metric.value,
                    });
                }
                results.push(StoredSubmission {
                    usage_data_id: id,
                    scores,
                    metrics_count: submission.metrics.len() as i64,
                    duplicate: false,
                });
            }
            let started = std::time::Instant::now();
            // In primary-key order, each index page of the group is visited once, left to
            // right, instead of once per payload.
            rows.sort_unstable_by_key(|row| (row.key_id, row.usage_data_id));
            insert_metrics(c, &rows)?;
            tracing::debug!(
                batch.metric_rows = rows.len(),
                batch.metrics_ms = started.elapsed().as_secs_f64() * 1000.0,
                "metric rows written"
            );
            Ok(results)
        })
    })
}

/// Writes metric rows the fastest way each store offers.
trait MetricWriter {
    fn write_metrics(&mut self, rows: &[NewMetric]) -> QueryResult<()>;
}

/// Page cache of the writing SQLite connection, in KiB. Each payload appends to the last
/// index page of every one of its ~4,200 key ids: ~17 MB of pages that must stay cached, or
/// every row costs a read from the file (SQLite's default cache is 2 MB).
const SQLITE_WRITER_CACHE_KIB: i64 = 32 * 1024;

impl MetricWriter for SqliteConnection {
    fn write_metrics(&mut self, rows: &[NewMetric]) -> QueryResult<()> {
        use diesel::connection::SimpleConnection;
        // The same ~4,200 pages are rewritten by every group: checkpointing after ~40 MB of
        // WAL instead of SQLite's default 4 MB copies each page back to the file once per
        // ten groups instead of once per group.
        self.batch_execute(&format!(
            "PRAGMA cache_size = -{SQLITE_WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 10000"
        ))?;
        for chunk in rows.chunks(SQLITE_METRIC_ROWS_PER_INSERT) {
            diesel::insert_into(usage_data_metrics::table)
                .values(chunk)
                .execute(self)?;
        }
        Ok(())
    }
}

impl MetricWriter for PgConnection {
    fn write_metrics(&mut self, rows: &[NewMetric]) -> QueryResult<()> {
        if !rows.is_empty() {
            diesel::copy_from(usage_data_metrics::table)
                .from_insertable(rows)
                .execute(self)?;
        }
        Ok(())
    }
}

fn insert_metrics(c: &mut impl MetricWriter, rows: &[NewMetric]) -> QueryResult<()> {
    c.write_metrics(rows)
}

/// Parses a stored row back into the answer given the first time.
fn stored_from_row(
    (id, metrics_count, conv_index): (i64, i64, String),
) -> Result<StoredSubmission, DbError> {
    let scores = match serde_json::from_str(&conv_index) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(DbError::Other(format!(
                "usage_data {id}: unreadable conv_index"
            )))
        }
    };
    Ok(StoredSubmission {
        usage_data_id: id,
        scores,
        metrics_count,
        duplicate: true,
    })
}

/// `instance_X` of each instance's latest submission recorded at or after `since`: the
/// population the DevOps-score leaders are drawn from.
pub fn list_latest_scores(
    conn: &mut AnyConnection,
    since: NaiveDateTime,
) -> Result<Vec<FeatureScores>, DbError> {
    let rows: Vec<(String, String)> = with_conn!(conn, |c| usage_data::table
        .filter(usage_data::recorded_at.ge(since))
        .order((usage_data::uuid, usage_data::recorded_at.desc()))
        .select((usage_data::uuid, usage_data::instance_scores))
        .load(c))?;
    let mut latest = Vec::new();
    let mut previous_uuid: Option<String> = None;
    for (uuid, scores) in rows {
        if previous_uuid.as_deref() == Some(uuid.as_str()) {
            continue;
        }
        if let Ok(scores) = serde_json::from_str::<FeatureScores>(&scores) {
            latest.push(scores);
        }
        previous_uuid = Some(uuid);
    }
    Ok(latest)
}

/// Deletes the verbatim payloads of submissions received before `cutoff` (the summary and
/// metric rows stay); returns how many were removed.
pub fn delete_raw_received_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
) -> Result<usize, DbError> {
    let old = usage_data::table
        .filter(usage_data::received_at.lt(cutoff))
        .select(usage_data::id);
    Ok(with_conn!(conn, |c| diesel::delete(
        usage_data_raw::table.filter(usage_data_raw::usage_data_id.eq_any(old))
    )
    .execute(c))?)
}

/// One submission as `version-app export` writes it.
#[derive(Debug, Clone, Queryable)]
pub struct ExportRow {
    /// `usage_data.id`.
    pub id: i64,
    /// Instance UUID.
    pub uuid: String,
    /// Hostname.
    pub hostname: Option<String>,
    /// Normalised version.
    pub version: Option<String>,
    /// Edition.
    pub edition: Option<String>,
    /// Installation type.
    pub installation_type: Option<String>,
    /// `recorded_at`.
    pub recorded_at: NaiveDateTime,
    /// `automatic` or `manual`.
    pub source: String,
    /// The verbatim payload, unless retention removed it.
    pub payload: Option<Vec<u8>>,
}

/// Up to `limit` submissions recorded in `[from, to)` with an id above `after_id`, by id:
/// export pages through a range this way so memory stays bounded by one page.
pub fn list_export_page(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after_id: i64,
    limit: i64,
    with_payload: bool,
) -> Result<Vec<ExportRow>, DbError> {
    let columns = (
        usage_data::id,
        usage_data::uuid,
        usage_data::hostname,
        usage_data::version,
        usage_data::edition,
        usage_data::installation_type,
        usage_data::recorded_at,
        usage_data::source,
    );
    let range = usage_data::recorded_at
        .ge(from)
        .and(usage_data::recorded_at.lt(to))
        .and(usage_data::id.gt(after_id));
    type Summary = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        NaiveDateTime,
        String,
    );
    let rows: Vec<(Summary, Option<Vec<u8>>)> = if with_payload {
        with_conn!(conn, |c| usage_data::table
            .left_join(usage_data_raw::table)
            .filter(range)
            .order(usage_data::id)
            .limit(limit)
            .select((columns, usage_data_raw::payload.nullable()))
            .load(c))?
    } else {
        let rows: Vec<Summary> = with_conn!(conn, |c| usage_data::table
            .filter(range)
            .order(usage_data::id)
            .limit(limit)
            .select(columns)
            .load(c))?;
        rows.into_iter().map(|row| (row, None)).collect()
    };
    Ok(rows
        .into_iter()
        .map(
            |(
                (id, uuid, hostname, version, edition, installation_type, recorded_at, source),
                payload,
            )| ExportRow {
                id,
                uuid,
                hostname,
                version,
                edition,
                installation_type,
                recorded_at,
                source,
                payload,
            },
        )
        .collect())
}

/// Ids of the given key paths (unknown paths are left out).
pub fn find_key_ids(
    conn: &mut AnyConnection,
    key_paths: &[String],
) -> Result<HashMap<String, i64>, DbError> {
    let rows: Vec<(String, i64)> = with_conn!(conn, |c| metric_keys::table
        .filter(metric_keys::key_path.eq_any(key_paths))
        .select((metric_keys::key_path, metric_keys::id))
        .load(c))?;
    Ok(rows.into_iter().collect())
}

/// `(usage_data_id, key_id, value)` of the given keys for the given submissions.
pub fn list_metric_values(
    conn: &mut AnyConnection,
    usage_data_ids: &[i64],
    key_ids: &[i64],
) -> Result<Vec<(i64, i64, f64)>, DbError> {
    Ok(with_conn!(conn, |c| usage_data_metrics::table
        .filter(usage_data_metrics::key_id.eq_any(key_ids))
        .filter(usage_data_metrics::usage_data_id.eq_any(usage_data_ids))
        .select((
            usage_data_metrics::usage_data_id,
            usage_data_metrics::key_id,
            usage_data_metrics::value,
        ))
        .load(c))?)
}
