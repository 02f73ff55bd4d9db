//! The numbers every insights endpoint and page shows, computed once from the rollups, so the
//! JSON, the CSV and the HTML table of a chart cannot disagree.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::db::models::insights::find_metric_key;
use crate::db::models::insights_queries::{self as q, VersionDayCount};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::aggregate::summarize;
use crate::domain::insights::dimension::{Dimension, UNKNOWN_GROUP};
use crate::domain::insights::installation::normalize_hostname;
use crate::domain::insights::periods::PeriodKind;
use crate::domain::verdict::{ReleaseTable, Severity};
use crate::domain::version::Version;

pub use super::window::{AffectedRange, BackportRow, VulnerableRow};

/// A period range asked for: `[from, to)` in periods of `kind`.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Month or week.
    pub kind: PeriodKind,
    /// First day (inclusive); periods starting before it are left out.
    pub from: NaiveDate,
    /// Last bound (exclusive).
    pub to: NaiveDate,
    /// Count internal and staging hosts too.
    pub include_internal: bool,
    /// Today (UTC), which decides whether a period is complete.
    pub today: NaiveDate,
}

/// `installations` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstallationsRow {
    /// First day of the month / Monday of the week.
    pub period: NaiveDate,
    /// The group (`all` without `by`).
    pub group: String,
    /// Installations with a counted submission in the period.
    pub installations: i64,
    /// False for the current, incomplete period.
    pub complete: bool,
}

/// Active installations per period (and group).
pub fn installations(
    conn: &mut AnyConnection,
    range: &Range,
    by: Option<Dimension>,
) -> Result<Vec<InstallationsRow>, DbError> {
    let rows = q::count_installations(
        conn,
        range.kind.as_str(),
        range.from,
        range.to,
        by,
        range.include_internal,
    )?;
    Ok(rows
        .into_iter()
        .map(|(period, group, installations)| InstallationsRow {
            period,
            group: match by {
                None => "all".into(),
                Some(_) => group.unwrap_or_else(|| UNKNOWN_GROUP.into()),
            },
            installations,
            complete: range.kind.is_complete(period, range.today),
        })
        .collect())
}

/// `metrics/{key_path}` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    /// Period start.
    pub period: NaiveDate,
    /// The group (`all` without `by`).
    pub group: String,
    /// Installations with a non-special period value.
    pub installations_reporting: u64,
    /// Of them, with a value > 0.
    pub adopting: u64,
    /// Sum of period values.
    pub sum: f64,
    /// Nearest-rank median.
    pub median: Option<f64>,
    /// Nearest-rank p90.
    pub p90: Option<f64>,
    /// Special values excluded.
    pub excluded_special: u64,
    /// False for the current period.
    pub complete: bool,
}

/// Why a metric series could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// No such key path was ever received.
    #[error("unknown metric key path `{0}`")]
    UnknownKey(String),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The id of a metric key path ever received, or [`MetricError::UnknownKey`].
pub(crate) fn key_id_of(conn: &mut AnyConnection, key_path: &str) -> Result<i64, MetricError> {
    find_metric_key(conn, key_path)?.ok_or_else(|| MetricError::UnknownKey(key_path.into()))
}

/// One metric's series per period (and tier or edition).
pub fn metric(
    conn: &mut AnyConnection,
    key_path: &str,
    range: &Range,
    by: Option<Dimension>,
) -> Result<Vec<MetricRow>, MetricError> {
    let key_id = key_id_of(conn, key_path)?;
    let points = super::period_values::period_values(
        conn,
        &super::period_values::Ask {
            key_id,
            key_path,
            kind: range.kind,
            from: range.from,
            to: range.to,
            include_excluded: range.include_internal,
        },
    )?;
    let mut groups: BTreeMap<(NaiveDate, String), (Vec<f64>, u64)> = BTreeMap::new();
    for (point, value) in points {
        let group = match by {
            Some(Dimension::Tier) => point.tier.clone(),
            Some(Dimension::Edition) => point
                .edition
                .clone()
                .unwrap_or_else(|| UNKNOWN_GROUP.into()),
            _ => "all".into(),
        };
        let slot = groups.entry((point.period_start, group)).or_default();
        match value {
            Some(v) => slot.0.push(v),
            None => slot.1 += 1,
        }
    }
    Ok(groups
        .into_iter()
        .map(|((period, group), (values, excluded))| {
            let s = summarize(values, excluded);
            MetricRow {
                period,
                group,
                installations_reporting: s.installations_reporting,
                adopting: s.adopting,
                sum: s.sum,
                median: s.median,
                p90: s.p90,
                excluded_special: s.excluded_special,
                complete: range.kind.is_complete(period, range.today),
            }
        })
        .collect())
}

/// `versions` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionsRow {
    /// Period start.
    pub period: NaiveDate,
    /// `major.minor`, or `unknown` for an unreadable version.
    pub minor: String,
    /// Installations whose counted submission is on that line.
    pub installations: i64,
    /// False for the current period.
    pub complete: bool,
}

/// The `major.minor` text of a line.
pub(super) fn line_text(major: Option<i64>, minor: Option<i64>) -> String {
    match (major, minor) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => UNKNOWN_GROUP.into(),
    }
}

/// Sort key of a line text: numeric, unknown last.
pub(super) fn line_key(text: &str) -> (i64, i64) {
    let mut parts = text
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(i64::MAX));
    (
        parts.next().unwrap_or(i64::MAX),
        parts.next().unwrap_or(i64::MAX),
    )
}

/// The counted submissions of the range per (period, version, day): the one read behind
/// every version view ([`versions`], [`vulnerable_share`], and the fleet's penetration,
/// versions behind and days behind), so a page showing several of them reads it once.
pub fn version_counts(
    conn: &mut AnyConnection,
    range: &Range,
) -> Result<Vec<VersionDayCount>, DbError> {
    q::count_period_versions(
        conn,
        range.kind.as_str(),
        range.from,
        range.to,
        range.include_internal,
    )
}

/// Installations per period and minor line.
pub fn versions(groups: &[VersionDayCount], range: &Range) -> Vec<VersionsRow> {
    let mut counts: BTreeMap<(NaiveDate, (i64, i64), String), i64> = BTreeMap::new();
    for g in groups {
        let line = line_text(g.version_major, g.version_minor);
        *counts
            .entry((g.period_start, line_key(&line), line))
            .or_default() += g.installations;
    }
    counts
        .into_iter()
        .map(|((period, _, minor), installations)| VersionsRow {
            period,
            minor,
            installations,
            complete: range.kind.is_complete(period, range.today),
        })
        .collect()
}

/// Installations on a vulnerable version per period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnerableShareRow {
    /// Period start.
    pub period: NaiveDate,
    /// Installations with a counted submission and a readable version.
    pub installations: i64,
    /// Of them, on a version `check.json` answers `danger` for today.
    pub danger: i64,
    /// Of them, exposed to a critical advisory.
    pub critical: i64,
    /// False for the current period.
    pub complete: bool,
}

/// The share of installations on a vulnerable (and a critically vulnerable) version, per
/// period, by today's verdict for the version of each period's counted submission.
pub fn vulnerable_share(
    groups: &[VersionDayCount],
    table: &ReleaseTable,
    range: &Range,
) -> Vec<VulnerableShareRow> {
    let mut verdicts: HashMap<String, (bool, bool)> = HashMap::new();
    let mut out: BTreeMap<NaiveDate, (i64, i64, i64)> = BTreeMap::new();
    for g in groups {
        let Some(text) = &g.version else { continue };
        let Some((danger, critical)) = verdicts.get(text).copied().or_else(|| {
            let v = Version::parse(text).ok()?;
            let verdict = table.verdict(&v);
            let pair = (
                verdict.severity == Severity::Danger,
                verdict.critical_vulnerability,
            );
            verdicts.insert(text.clone(), pair);
            Some(pair)
        }) else {
            continue;
        };
        let slot = out.entry(g.period_start).or_default();
        slot.0 += g.installations;
        slot.1 += i64::from(danger) * g.installations;
        slot.2 += i64::from(critical) * g.installations;
    }
    out.into_iter()
        .map(
            |(period, (installations, danger, critical))| VulnerableShareRow {
                period,
                installations,
                danger,
                critical,
                complete: range.kind.is_complete(period, range.today),
            },
        )
        .collect()
}

/// One submission of an installation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstallationSubmission {
    /// `usage_data.id` (links to the raw payload).
    pub usage_data_id: i64,
    /// Effective recorded_at.
    pub recorded_at: NaiveDateTime,
    /// Normalised version.
    pub version: Option<String>,
    /// Edition.
    pub edition: Option<String>,
    /// Tier.
    pub tier: String,
    /// Active users.
    pub active_user_count: Option<i64>,
}

/// One day of version checks of the installation's hostname.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckDay {
    /// The day.
    pub day: NaiveDate,
    /// The version checked.
    pub version: String,
    /// Checks that day.
    pub count: i64,
}

/// The installation report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstallationReport {
    /// UUID.
    pub uuid: String,
    /// Hostname.
    pub hostname: String,
    /// Its submissions, oldest first.
    pub submissions: Vec<InstallationSubmission>,
    /// Its hostname's version-check days, oldest first.
    pub version_checks: Vec<CheckDay>,
    /// `check.json` severity of its latest known version now.
    pub severity_now: Option<&'static str>,
}

/// One installation's history; `None` when neither source knows it.
pub fn installation(
    conn: &mut AnyConnection,
    table: &ReleaseTable,
    uuid: &str,
    hostname: &str,
) -> Result<Option<InstallationReport>, DbError> {
    let hostname = normalize_hostname(hostname);
    let submissions = match q::find_installation(conn, uuid.trim(), &hostname)? {
        Some((id, _)) => q::list_installation_submissions(conn, id)?,
        None => Vec::new(),
    };
    let checks = if hostname.is_empty() {
        Vec::new()
    } else {
        q::list_host_checks(conn, &hostname)?
    };
    if submissions.is_empty() && checks.is_empty() {
        return Ok(None);
    }
    let latest_ping = submissions
        .last()
        .map(|s| (s.recorded_at.date(), s.version.clone()));
    let latest_check = checks.last().map(|c| (c.0, Some(c.1.clone())));
    let latest = match (latest_ping, latest_check) {
        (Some(p), Some(c)) => Some(if c.0 > p.0 { c } else { p }),
        (p, c) => p.or(c),
    };
    let severity_now = latest
        .and_then(|(_, v)| v)
        .and_then(|v| Version::parse(&v).ok())
        .map(|v| table.severity(&v).as_str());
    Ok(Some(InstallationReport {
        uuid: uuid.trim().to_owned(),
        hostname,
        submissions: submissions
            .into_iter()
            .map(|s| InstallationSubmission {
                usage_data_id: s.usage_data_id,
                recorded_at: s.recorded_at,
                version: s.version,
                edition: s.edition,
                tier: s.tier,
                active_user_count: s.active_user_count,
            })
            .collect(),
        version_checks: checks
            .into_iter()
            .map(|(day, version, count)| CheckDay {
                day,
                version,
                count,
            })
            .collect(),
        severity_now,
    }))
}
