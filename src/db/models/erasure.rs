//! Erasure of one installation: every row it owns, in one transaction, and an `erasures`
//! entry that keeps only keyed hashes of what was erased (see `docs/privacy.md`).
//!
//! To make erasure cover a new table, add one step to [`OWNED_TABLES`] (and the table to
//! `docs/privacy.md`, whose test compares the page with the schema).

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{
    erasure_subjects, erasures, hosts, insights_installations, insights_metric_values,
    insights_periods, insights_submissions, usage_data, usage_data_extra, usage_data_raw,
    usage_ping_errors, usage_ping_metadata, usage_ping_metadata_metrics, version_checks,
    version_checks_monthly,
};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

diesel::define_sql_function! {
    /// SQL `lower()`, the same on both stores for ASCII (hostnames are punycode).
    fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>;
}

/// What the operator named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A hostname (compared in lower case).
    Hostname(String),
    /// An instance uuid (compared exactly).
    Uuid(String),
}

impl Subject {
    /// The text hashed for the erasure entry: kind and value, so a hostname and a uuid with
    /// the same spelling never share a hash.
    pub fn hash_input(&self) -> String {
        match self {
            Subject::Hostname(h) => format!("hostname:{}", h.trim().to_lowercase()),
            Subject::Uuid(u) => format!("uuid:{u}"),
        }
    }
}

/// The spellings of a hostname to match: lower case as given (payloads carry what the
/// instance was configured with) and its punycode form (what checks' Referers are stored as).
pub fn host_forms(host: &str) -> BTreeSet<String> {
    let lower = host.trim().to_lowercase();
    let mut forms = BTreeSet::from([lower.clone()]);
    if let Some(ascii) = url::Url::parse(&format!("http://{lower}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    {
        forms.insert(ascii);
    }
    forms
}

/// Every identifier of one installation, found by following submissions and reports from
/// the named one (a uuid leads to its hostnames, a hostname to its uuids, and so on).
#[derive(Debug, Default, Clone)]
pub struct Installation {
    /// Hostnames, lower case.
    pub hostnames: BTreeSet<String>,
    /// Instance uuids.
    pub uuids: BTreeSet<String>,
    /// `unique_instance_id`s.
    pub unique_ids: BTreeSet<String>,
    /// `usage_data.id` of its submissions.
    pub submission_ids: Vec<i64>,
    /// `usage_ping_metadata.id` of its timing reports.
    pub metadata_ids: Vec<i64>,
}

impl Installation {
    /// The hash inputs of every identifier, for the erasure entry.
    pub fn hash_inputs(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .hostnames
            .iter()
            .map(|h| Subject::Hostname(h.clone()).hash_input())
            .collect();
        all.extend(
            self.uuids
                .iter()
                .map(|u| Subject::Uuid(u.clone()).hash_input()),
        );
        all.extend(
            self.unique_ids
                .iter()
                .map(|i| format!("unique_instance_id:{i}")),
        );
        all
    }
}

/// One deletion of installation-owned rows; returns the rows removed.
type Step = fn(&mut AnyConnection, &Installation) -> Result<usize, DbError>;

/// Every table holding rows owned by one installation, in deletion order (children first).
pub const OWNED_TABLES: &[(&str, Step)] = &[
    ("usage_data_metrics", delete_metrics),
    ("usage_data_raw", delete_raw),
    ("usage_data_extra", delete_extra),
    ("usage_data", delete_submissions),
    ("usage_ping_metadata_metrics", delete_metadata_metrics),
    ("usage_ping_metadata", delete_metadata),
    ("usage_ping_errors", delete_errors),
    ("version_checks", delete_daily_checks),
    ("version_checks_monthly", delete_monthly_checks),
    ("hosts", delete_hosts),
];

/// Rows removed per table, in [`OWNED_TABLES`] order.
pub type Removed = Vec<(&'static str, usize)>;

/// What [`erase`] did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing in the store belongs to the subject; nothing was changed.
    Unknown,
    /// Rows removed, and the erasure entry's id.
    Erased {
        /// The identifiers followed.
        installation: Installation,
        /// Rows removed per table.
        removed: Removed,
        /// `erasures.id`.
        erasure_id: i64,
    },
}

/// Removes every row the subject's installation owns and records an erasure entry with
/// `hash` applied to each identifier and `erased_by` (an account name or `cli:USER`, never an
/// identifier of the installation), all in one transaction.
pub fn erase(
    conn: &mut AnyConnection,
    subject: &Subject,
    hash: &dyn Fn(&str) -> String,
    erased_by: &str,
    now: NaiveDateTime,
) -> Result<Outcome, DbError> {
    conn.transaction(|conn| {
        let Some((installation, removed)) = remove_all(conn, subject)? else {
            // Nothing was deleted, so committing changes nothing either.
            return Ok(Outcome::Unknown);
        };
        // The installation's periods and version checks may be in any cached insights view.
        super::insights_generations::bump_all(conn)?;
        let summary: serde_json::Map<String, serde_json::Value> = removed
            .iter()
            .map(|(t, n)| (t.to_string(), (*n).into()))
            .collect();
        let summary = serde_json::Value::Object(summary).to_string();
        let hashes: BTreeSet<String> = installation
            .hash_inputs()
            .iter()
            .chain(std::iter::once(&subject.hash_input()))
            .map(|input| hash(input))
            .collect();
        let erasure_id = with_conn!(conn, |c| {
            let id: i64 = diesel::insert_into(erasures::table)
                .values((
                    erasures::erased_at.eq(now),
                    erasures::removed.eq(&summary),
                    erasures::erased_by.eq(erased_by),
                ))
                .returning(erasures::id)
                .get_result(c)?;
            for h in &hashes {
                diesel::insert_into(erasure_subjects::table)
                    .values((
                        erasure_subjects::erasure_id.eq(id),
                        erasure_subjects::subject_hash.eq(h),
                    ))
                    .execute(c)?;
            }
            Ok::<_, DbError>(id)
        })?;
        Ok(Outcome::Erased {
            installation,
            removed,
            erasure_id,
        })
    })
}

/// What [`erase`] would remove, without changing anything: the same deletions run in a
/// transaction that is then rolled back, so the counts are exactly the erasure's (one code
/// path, no second set of counting queries to drift from it). `None` for an unknown subject.
pub fn preview(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<Option<(Installation, Removed)>, DbError> {
    let mut seen = None;
    let outcome = conn.transaction(|conn| {
        seen = Some(remove_all(conn, subject)?);
        Err::<(), _>(DbError::Query(diesel::result::Error::RollbackTransaction))
    });
    match (outcome, seen) {
        (Err(DbError::Query(diesel::result::Error::RollbackTransaction)), Some(seen)) => Ok(seen),
        (Err(err), _) => Err(err),
        (Ok(()), _) => unreachable!("the preview transaction always rolls back"),
    }
}

/// Every deletion of [`OWNED_TABLES`] and the rollups, inside the caller's transaction;
/// `None` when nothing belonged to the subject.
fn remove_all(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<Option<(Installation, Removed)>, DbError> {
    let installation = resolve(conn, subject)?;
    let mut removed = Removed::new();
    for (table, step) in OWNED_TABLES {
        removed.push((table, step(conn, &installation)?));
    }
    removed.extend(recompute_rollups_without(conn, &installation)?);
    if removed.iter().all(|(_, n)| *n == 0) {
        return Ok(None);
    }
    Ok(Some((installation, removed)))
}

/// The derived tables: the insights rollups keep one row per installation (and per period
/// and metric), so recomputing them without the erased installation is removing its rows;
/// nothing in them sums over installations. Same transaction as the rest.
fn recompute_rollups_without(
    conn: &mut AnyConnection,
    installation: &Installation,
) -> Result<Removed, DbError> {
    let ids: Vec<i64> = with_conn!(conn, |c| insights_installations::table
        .filter(
            insights_installations::uuid
                .eq_any(&installation.uuids)
                .or(insights_installations::hostname.eq_any(&installation.hostnames)),
        )
        .select(insights_installations::id)
        .load(c))?;
    if ids.is_empty() {
        return Ok(Removed::new());
    }
    let (values, periods, submissions, installations) = with_conn!(conn, |c| {
        let values = diesel::delete(
            insights_metric_values::table
                .filter(insights_metric_values::installation_id.eq_any(&ids)),
        )
        .execute(c)?;
        let periods = diesel::delete(
            insights_periods::table.filter(insights_periods::installation_id.eq_any(&ids)),
        )
        .execute(c)?;
        let submissions = diesel::delete(
            insights_submissions::table.filter(insights_submissions::installation_id.eq_any(&ids)),
        )
        .execute(c)?;
        let installations = diesel::delete(
            insights_installations::table.filter(insights_installations::id.eq_any(&ids)),
        )
        .execute(c)?;
        Ok::<_, diesel::result::Error>((values, periods, submissions, installations))
    })?;
    Ok(vec![
        ("insights_metric_values", values),
        ("insights_periods", periods),
        ("insights_submissions", submissions),
        ("insights_installations", installations),
    ])
}

/// `(erasure id, erased_at)` of every erasure that recorded `hash`.
pub fn find_by_hash(
    conn: &mut AnyConnection,
    hash: &str,
) -> Result<Vec<(i64, NaiveDateTime)>, DbError> {
    Ok(with_conn!(conn, |c| erasure_subjects::table
        .inner_join(erasures::table.on(erasures::id.eq(erasure_subjects::erasure_id)))
        .filter(erasure_subjects::subject_hash.eq(hash))
        .order(erasures::id)
        .select((erasures::id, erasures::erased_at))
        .load(c))?)
}

/// Follows identifiers from the subject through submissions and reports until no new one
/// turns up (bounded: a few rounds cover uuid → hostname → other uuid chains).
fn resolve(conn: &mut AnyConnection, subject: &Subject) -> Result<Installation, DbError> {
    let mut inst = Installation::default();
    match subject {
        Subject::Hostname(h) => inst.hostnames.extend(host_forms(h)),
        Subject::Uuid(u) => {
            inst.uuids.insert(u.clone());
        }
    }
    type Ids = (String, Option<String>, Option<String>);
    type OptIds = (Option<String>, Option<String>, Option<String>);
    for _ in 0..8 {
        let before = (
            inst.hostnames.len(),
            inst.uuids.len(),
            inst.unique_ids.len(),
        );
        let hosts: Vec<String> = inst.hostnames.iter().cloned().collect();
        let (uuids, uniques) = (&inst.uuids, &inst.unique_ids);
        let submissions: Vec<Ids> = with_conn!(conn, |c| usage_data::table
            .filter(
                lower(usage_data::hostname)
                    .eq_any(hosts.iter().map(|h| Some(h.as_str())).collect::<Vec<_>>())
                    .or(usage_data::uuid.eq_any(uuids))
                    .or(usage_data::unique_instance_id.eq_any(uniques)),
            )
            .select((
                usage_data::uuid,
                usage_data::unique_instance_id,
                usage_data::hostname,
            ))
            .distinct()
            .load(c))?;
        let errors: Vec<OptIds> = with_conn!(conn, |c| usage_ping_errors::table
            .filter(
                lower(usage_ping_errors::hostname)
                    .eq_any(hosts.iter().map(|h| Some(h.as_str())).collect::<Vec<_>>())
                    .or(usage_ping_errors::uuid.eq_any(uuids))
                    .or(usage_ping_errors::unique_instance_id.eq_any(uniques)),
            )
            .select((
                usage_ping_errors::uuid,
                usage_ping_errors::unique_instance_id,
                usage_ping_errors::hostname,
            ))
            .distinct()
            .load(c))?;
        let metadata: Vec<(Option<String>, Option<String>)> =
            with_conn!(conn, |c| usage_ping_metadata::table
                .filter(
                    usage_ping_metadata::uuid
                        .eq_any(uuids)
                        .or(usage_ping_metadata::unique_instance_id.eq_any(uniques)),
                )
                .select((
                    usage_ping_metadata::uuid,
                    usage_ping_metadata::unique_instance_id,
                ))
                .distinct()
                .load(c))?;
        let found = submissions
            .into_iter()
            .map(|(u, i, h)| (Some(u), i, h))
            .chain(errors)
            .chain(metadata.into_iter().map(|(u, i)| (u, i, None)));
        for (uuid, unique, host) in found {
            let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
            if let Some(u) = non_empty(uuid) {
                inst.uuids.insert(u);
            }
            if let Some(i) = non_empty(unique) {
                inst.unique_ids.insert(i);
            }
            if let Some(h) = non_empty(host) {
                inst.hostnames.extend(host_forms(&h));
            }
        }
        if before
            == (
                inst.hostnames.len(),
                inst.uuids.len(),
                inst.unique_ids.len(),
            )
        {
            break;
        }
    }
    let hosts: Vec<Option<String>> = inst.hostnames.iter().cloned().map(Some).collect();
    let (uuids, uniques) = (&inst.uuids, &inst.unique_ids);
    inst.submission_ids = with_conn!(conn, |c| usage_data::table
        .filter(
            lower(usage_data::hostname)
                .eq_any(&hosts)
                .or(usage_data::uuid.eq_any(uuids))
                .or(usage_data::unique_instance_id.eq_any(uniques)),
        )
        .select(usage_data::id)
        .load(c))?;
    inst.metadata_ids = with_conn!(conn, |c| usage_ping_metadata::table
        .filter(
            usage_ping_metadata::uuid
                .eq_any(uuids)
                .or(usage_ping_metadata::unique_instance_id.eq_any(uniques)),
        )
        .select(usage_ping_metadata::id)
        .load(c))?;
    Ok(inst)
}

/// Ids per `IN (…)` list, well under SQLite's bound-variable limit.
const IDS_PER_STATEMENT: usize = 5_000;

/// Every metric value of the installation's submissions, whichever form holds it (the
/// narrow rows of earlier releases, staged rows, blocks: `metric_values`).
fn delete_metrics(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    super::metric_values::delete_values(conn, &inst.submission_ids)
}

fn delete_raw(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    let mut n = 0;
    for ids in inst.submission_ids.chunks(IDS_PER_STATEMENT) {
        n += with_conn!(conn, |c| diesel::delete(
            usage_data_raw::table.filter(usage_data_raw::usage_data_id.eq_any(ids))
        )
        .execute(c))?;
    }
    Ok(n)
}

fn delete_extra(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    let mut n = 0;
    for ids in inst.submission_ids.chunks(IDS_PER_STATEMENT) {
        n += with_conn!(conn, |c| diesel::delete(
            usage_data_extra::table.filter(usage_data_extra::usage_data_id.eq_any(ids))
        )
        .execute(c))?;
    }
    Ok(n)
}

fn delete_submissions(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    let mut n = 0;
    for ids in inst.submission_ids.chunks(IDS_PER_STATEMENT) {
        n += with_conn!(conn, |c| diesel::delete(
            usage_data::table.filter(usage_data::id.eq_any(ids))
        )
        .execute(c))?;
    }
    Ok(n)
}

fn delete_metadata_metrics(
    conn: &mut AnyConnection,
    inst: &Installation,
) -> Result<usize, DbError> {
    let mut n = 0;
    for ids in inst.metadata_ids.chunks(IDS_PER_STATEMENT) {
        n += with_conn!(conn, |c| diesel::delete(
            usage_ping_metadata_metrics::table
                .filter(usage_ping_metadata_metrics::metadata_id.eq_any(ids))
        )
        .execute(c))?;
    }
    Ok(n)
}

fn delete_metadata(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    let mut n = 0;
    for ids in inst.metadata_ids.chunks(IDS_PER_STATEMENT) {
        n += with_conn!(conn, |c| diesel::delete(
            usage_ping_metadata::table.filter(usage_ping_metadata::id.eq_any(ids))
        )
        .execute(c))?;
    }
    Ok(n)
}

fn delete_errors(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    let hosts: Vec<Option<String>> = inst.hostnames.iter().cloned().map(Some).collect();
    let (uuids, uniques) = (&inst.uuids, &inst.unique_ids);
    Ok(with_conn!(conn, |c| diesel::delete(
        usage_ping_errors::table.filter(
            lower(usage_ping_errors::hostname)
                .eq_any(&hosts)
                .or(usage_ping_errors::uuid.eq_any(uuids))
                .or(usage_ping_errors::unique_instance_id.eq_any(uniques)),
        )
    )
    .execute(c))?)
}

fn delete_daily_checks(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| diesel::delete(
        version_checks::table.filter(version_checks::host.eq_any(&inst.hostnames))
    )
    .execute(c))?)
}

fn delete_monthly_checks(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| diesel::delete(
        version_checks_monthly::table.filter(version_checks_monthly::host.eq_any(&inst.hostnames))
    )
    .execute(c))?)
}

fn delete_hosts(conn: &mut AnyConnection, inst: &Installation) -> Result<usize, DbError> {
    Ok(with_conn!(conn, |c| diesel::delete(
        hosts::table.filter(hosts::hostname.eq_any(&inst.hostnames))
    )
    .execute(c))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_match_as_given_and_in_punycode() {
        let forms = host_forms(" Bücher.Example ");
        assert!(forms.contains("bücher.example"), "{forms:?}");
        assert!(forms.contains("xn--bcher-kva.example"), "{forms:?}");
        assert_eq!(host_forms("GitLab.example.com").len(), 1);
        assert_eq!(
            Subject::Hostname("X.Example.COM".into()).hash_input(),
            "hostname:x.example.com"
        );
        assert_ne!(
            Subject::Hostname("a".into()).hash_input(),
            Subject::Uuid("a".into()).hash_input()
        );
    }
}
