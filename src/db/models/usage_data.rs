//! The Service Ping tables: `usage_data` (summary and score), `usage_data_raw` (verbatim
//! payload) and `metric_keys` (key path dictionary); the metric values are in `metric_values`.
//!
//! Writes come in groups: the ingest writer stores every payload that arrived while the
//! previous group was committing in one transaction, so the fsync is shared by the group.
//! Metric values are staged as one row per submission (`metric_values`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use crate::db::models::usage_data_raw::RawPayload;
use crate::db::schema::{metric_keys, usage_data, usage_data_extra};
use crate::db::{AnyConnection, DbError, JsonText};
use crate::domain::devops::FeatureScores;
use crate::domain::payload::{FlatMetrics, PayloadSummary};
use crate::with_conn;

/// Key paths per dictionary statement (one variable each; PostgreSQL allows 65,535).
const KEYS_PER_STATEMENT: usize = 5_000;

/// How a submission reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SubmissionSource {
    /// `POST /usage_data` from a GitLab instance.
    Automatic,
    /// The upload form at `/usage_data/new`.
    Manual,
}

impl SubmissionSource {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A parsed payload ready to be stored.
#[derive(Debug)]
pub struct NewSubmission {
    /// Identity fields.
    pub summary: PayloadSummary,
    /// Every numeric/boolean leaf.
    pub metrics: FlatMetrics,
    /// The JSON bytes as the instance produced them, ready to store.
    pub raw: RawPayload,
    /// Automatic or manual.
    pub source: SubmissionSource,
    /// Sender's country code, when GeoIP is configured.
    pub country: Option<String>,
    /// The staged-values body, when it could be made before the writer (every key known):
    /// see `ingest::store::staged_body`.
    pub staged: Option<String>,
}

/// What was stored (or found already stored) for one submission.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubmission {
    /// `usage_data.id`.
    pub usage_data_id: i64,
    /// The 30 DevOps-score floats (without `usage_data_id`), as answered the first time.
    pub scores: ScoresJson,
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
    ids: RwLock<KeyIds>,
}

/// Key path -> id, hashed with foldhash (seeded per process): SipHash was ~6 % of ingest CPU.
pub type KeyIds = HashMap<String, i64, foldhash::fast::RandomState>;

impl KeyDictionary {
    /// Every cached id, for building a group's metric rows under one lock.
    pub fn ids(&self) -> RwLockReadGuard<'_, KeyIds> {
        self.ids.read().expect("key dictionary lock")
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
    score_inputs: JsonText<&'a BTreeMap<String, f64>>,
    instance_scores: JsonText<&'a FeatureScores>,
    score_previous_id: Option<i64>,
    formula_version: i64,
    conv_index: JsonText<&'a ScoresJson>,
}

/// The conv_index numbers as stored and answered (without `usage_data_id`).
pub type ScoresJson = serde_json::Map<String, serde_json::Value>;

/// The score columns of a new submission.
#[derive(Debug, Clone, Copy)]
pub struct StoredScore<'a> {
    /// `score_inputs`.
    pub inputs: &'a BTreeMap<String, f64>,
    /// `instance_scores`.
    pub instance: &'a FeatureScores,
    /// `score_previous_id`.
    pub previous_id: Option<i64>,
    /// `formula_version` of the mapping.
    pub formula_version: i64,
    /// `conv_index`.
    pub conv_index: &'a ScoresJson,
}

/// Monday of the week `at` falls in: a plain date both stores group on.
pub fn week_start(at: NaiveDateTime) -> NaiveDate {
    let date = at.date();
    date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
}

/// The stored answer for (uuid, recorded_at), if that payload was stored already.
pub fn find_stored(
    conn: &mut AnyConnection,
    uuid: &str,
    recorded_at: NaiveDateTime,
) -> Result<Option<StoredSubmission>, DbError> {
    let row: Option<(i64, i64, JsonText<ScoresJson>)> = with_conn!(conn, |c| usage_data::table
        .filter(usage_data::uuid.eq(uuid))
        .filter(usage_data::recorded_at.eq(recorded_at))
        .select((
            usage_data::id,
            usage_data::metrics_count,
            usage_data::conv_index,
        ))
        .first(c)
        .optional())?;
    Ok(
        row.map(|(id, metrics_count, JsonText(scores))| StoredSubmission {
            usage_data_id: id,
            scores,
            metrics_count,
            duplicate: true,
        }),
    )
}

/// An earlier submission of an instance: `(id, recorded_at, score_inputs)`.
pub type ScoreCandidateRow = (i64, NaiveDateTime, BTreeMap<String, f64>);

/// The instance's submissions recorded in `[from, before)` with their score inputs: the
/// candidates for the earlier submission the DevOps score compares with. A corrupt
/// `score_inputs` is an error, never silently an empty map.
pub fn list_score_candidates(
    conn: &mut AnyConnection,
    uuid: &str,
    from: NaiveDateTime,
    before: NaiveDateTime,
) -> Result<Vec<ScoreCandidateRow>, DbError> {
    type Row = (i64, NaiveDateTime, JsonText<BTreeMap<String, f64>>);
    let rows: Vec<Row> = with_conn!(conn, |c| usage_data::table
        .filter(usage_data::uuid.eq(uuid))
        .filter(usage_data::recorded_at.lt(before))
        .filter(usage_data::recorded_at.ge(from))
        .select((
            usage_data::id,
            usage_data::recorded_at,
            usage_data::score_inputs,
        ))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(id, at, JsonText(inputs))| (id, at, inputs))
        .collect())
}

/// Inserts the summary row of a submission with its score. `None` when a row with the same
/// (uuid, recorded_at) exists: another writer committed the same payload in between, and
/// the unique key made this insert a no-op (it waited for the other transaction).
pub fn insert_submission(
    conn: &mut AnyConnection,
    submission: &NewSubmission,
    score: &StoredScore<'_>,
    received_at: NaiveDateTime,
) -> Result<Option<i64>, DbError> {
    let summary = &submission.summary;
    let recorded_at = summary.recorded_at.naive_utc();
    let version = summary.version.as_ref();
    let row = NewUsageData {
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
        score_inputs: JsonText(score.inputs),
        instance_scores: JsonText(score.instance),
        score_previous_id: score.previous_id,
        formula_version: score.formula_version,
        conv_index: JsonText(score.conv_index),
    };
    Ok(with_conn!(conn, |c| diesel::insert_into(
        usage_data::table
    )
    .values(&row)
    .on_conflict_do_nothing()
    .returning(usage_data::id)
    .get_result(c)
    .optional())?)
}

/// Stores the summary fields beyond `usage_data`'s columns, when the payload sent any.
pub fn insert_extra(
    conn: &mut AnyConnection,
    usage_data_id: i64,
    summary: &crate::domain::payload::PayloadSummary,
) -> Result<(), DbError> {
    if summary.license_starts_at.is_none() {
        return Ok(());
    }
    with_conn!(conn, |c| diesel::insert_into(usage_data_extra::table)
        .values((
            usage_data_extra::usage_data_id.eq(usage_data_id),
            usage_data_extra::license_starts_at.eq(summary.license_starts_at),
        ))
        .execute(c))?;
    Ok(())
}

/// Makes commits on this connection durable before they return: on SQLite,
/// `synchronous = FULL` (pooled connections default to `NORMAL`, which in WAL mode syncs
/// only at checkpoints, so a power loss could take back a commit already answered 201).
/// PostgreSQL's commits are durable already (`synchronous_commit = on`). Must run outside a
/// transaction.
pub fn make_commits_durable(conn: &mut AnyConnection) -> Result<(), DbError> {
    if let AnyConnection::Sqlite(c) = conn {
        use diesel::connection::SimpleConnection;
        c.batch_execute("PRAGMA synchronous = FULL")?;
    }
    Ok(())
}

/// `instance_X` of each instance's latest submission recorded at or after `since`: the
/// population the DevOps-score leaders are drawn from.
pub fn list_latest_scores(
    conn: &mut AnyConnection,
    since: NaiveDateTime,
) -> Result<Vec<FeatureScores>, DbError> {
    let rows: Vec<(String, JsonText<FeatureScores>)> = with_conn!(conn, |c| usage_data::table
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
        latest.push(scores.into_inner());
        previous_uuid = Some(uuid);
    }
    Ok(latest)
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
