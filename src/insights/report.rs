//! The numbers every insights endpoint and page shows, computed once from the rollups, so the
//! JSON, the CSV and the HTML table of a chart cannot disagree.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::db::models::insights::find_metric_key;
use crate::db::models::insights_queries::{self as q, VersionDayCount};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::aggregate::summarize;
use crate::domain::insights::dimension::{Dimension, UNKNOWN_GROUP};
use crate::domain::insights::installation::{is_excluded_by_default, normalize_hostname};
use crate::domain::insights::periods::PeriodKind;
use crate::domain::verdict::{ReleaseTable, Severity};
use crate::domain::version::Version;

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

/// `backport` rows: one per minor line seen in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackportRow {
    /// `major.minor`.
    pub minor: String,
    /// Service Ping installations whose last submission in the window is on this line.
    pub installations: u64,
    /// Referer hostnames whose last version check in the window is on this line.
    pub hosts: u64,
    /// Distinct hostnames over both sources, each on the line of its most recent report.
    pub active: u64,
    /// Worst `check.json` severity among this line's versions seen in the window.
    pub severity: &'static str,
    /// Highest release of the line in the release table.
    pub latest_patch: Option<String>,
    /// Active hostnames already on the latest patch.
    pub on_latest_patch: u64,
    /// Active hostnames in the what-if version range (when one was asked for).
    pub affected: Option<u64>,
}

/// An inclusive version range for the what-if.
#[derive(Debug, Clone)]
pub struct AffectedRange {
    /// Lowest affected version.
    pub from: Version,
    /// Highest affected version.
    pub to: Version,
}

fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Success => 0,
        Severity::Warning => 1,
        Severity::Danger => 2,
    }
}

/// The backport report over the last `days` days.
pub fn backport(
    conn: &mut AnyConnection,
    table: &ReleaseTable,
    now: NaiveDateTime,
    days: i64,
    include_internal: bool,
    what_if: Option<&AffectedRange>,
) -> Result<Vec<BackportRow>, DbError> {
    let reports = latest_reports(conn, now, days, include_internal)?;
    let (last_ping, last_check) = (&reports.pings, &reports.checks);
    #[derive(Default)]
    struct Line {
        installations: u64,
        hosts: u64,
        active: u64,
        severity: u8,
        on_latest: u64,
        affected: u64,
    }
    let mut lines: BTreeMap<(u64, u64), Line> = BTreeMap::new();
    let mut seen_versions: HashMap<(u64, u64), Vec<Version>> = HashMap::new();
    let mut note = |v: &Version| seen_versions.entry(v.line()).or_default().push(v.clone());
    // Who is active, keyed by hostname; a ping without hostname is its own entity.
    let mut active: HashMap<String, (NaiveDateTime, Version)> = HashMap::new();
    for (installation, (at, _, host, version, _)) in last_ping {
        let Some(v) = version.as_deref().and_then(|v| Version::parse(v).ok()) else {
            continue;
        };
        note(&v);
        lines.entry(v.line()).or_default().installations += 1;
        let key = if host.is_empty() {
            format!("#{installation}")
        } else {
            host.clone()
        };
        let slot = active.entry(key).or_insert((*at, v.clone()));
        if *at > slot.0 {
            *slot = (*at, v);
        }
    }
    for (host, (_, seen, version)) in last_check {
        let Ok(v) = Version::parse(version) else {
            continue;
        };
        note(&v);
        lines.entry(v.line()).or_default().hosts += 1;
        let slot = active.entry(host.clone()).or_insert((*seen, v.clone()));
        if *seen > slot.0 {
            *slot = (*seen, v);
        }
    }
    let latest_of = |line: (u64, u64)| {
        table
            .releases()
            .iter()
            .filter(|r| r.version.line() == line)
            .map(|r| r.version.clone())
            .max()
    };
    let mut latest: HashMap<(u64, u64), Option<Version>> = HashMap::new();
    for (_, v) in active.values() {
        let entry = lines.entry(v.line()).or_default();
        entry.active += 1;
        let top = latest
            .entry(v.line())
            .or_insert_with(|| latest_of(v.line()));
        if top.as_ref() == Some(v) {
            entry.on_latest += 1;
        }
        if what_if.is_some_and(|r| *v >= r.from && *v <= r.to) {
            entry.affected += 1;
        }
    }
    for (line, versions) in &seen_versions {
        let worst = versions
            .iter()
            .map(|v| severity_rank(table.severity(v)))
            .max()
            .unwrap_or(0);
        lines.entry(*line).or_default().severity = worst;
    }
    Ok(lines
        .into_iter()
        .rev()
        .map(|(line, l)| BackportRow {
            minor: format!("{}.{}", line.0, line.1),
            installations: l.installations,
            hosts: l.hosts,
            active: l.active,
            severity: match l.severity {
                2 => "danger",
                1 => "warning",
                _ => "success",
            },
            latest_patch: latest
                .get(&line)
                .cloned()
                .unwrap_or_else(|| latest_of(line))
                .map(|v| v.to_string()),
            on_latest_patch: l.on_latest,
            affected: what_if.map(|_| l.affected),
        })
        .collect())
}

/// The latest Service Ping per installation and the latest version check per host in a
/// window, internal and staging hosts left out unless asked for.
struct LatestReports {
    /// installation id → (recorded_at, usage_data_id, hostname, version, uuid)
    pings: HashMap<i64, (NaiveDateTime, i64, String, Option<String>, String)>,
    /// hostname → (day, last_seen, version)
    checks: HashMap<String, (NaiveDate, NaiveDateTime, String)>,
}

fn latest_reports(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    days: i64,
    include_internal: bool,
) -> Result<LatestReports, DbError> {
    let since = now - Duration::days(days);
    let mut pings: HashMap<i64, (NaiveDateTime, i64, String, Option<String>, String)> =
        HashMap::new();
    for (installation, host, at, id, version, uuid) in
        q::list_submissions_since(conn, since, include_internal)?
    {
        match pings.get(&installation) {
            Some(slot) if (at, id) <= (slot.0, slot.1) => {}
            _ => {
                pings.insert(installation, (at, id, host, version, uuid));
            }
        }
    }
    let mut checks: HashMap<String, (NaiveDate, NaiveDateTime, String)> = HashMap::new();
    for (host, day, version, seen) in q::list_checks_since(conn, since.date())? {
        let host = normalize_hostname(&host);
        if !include_internal && is_excluded_by_default(&host) {
            continue;
        }
        match checks.get(&host) {
            Some(slot) if (day, seen) <= (slot.0, slot.1) => {}
            _ => {
                checks.insert(host, (day, seen, version));
            }
        }
    }
    Ok(LatestReports { pings, checks })
}

/// One active host on a vulnerable version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnerableRow {
    /// Hostname (`""` for a Service Ping without one).
    pub hostname: String,
    /// The installation's uuid when its latest report was a Service Ping.
    pub uuid: Option<String>,
    /// The version of its latest report.
    pub version: String,
    /// `service_ping` or `version_check`.
    pub source: &'static str,
    /// When that report was made.
    pub last_seen: NaiveDateTime,
    /// `danger` here, always; kept for CSV readers.
    pub severity: &'static str,
    /// Exposed to a critical advisory.
    pub critical: bool,
}

/// Active hosts (last `days` days, both sources, each once on its latest report) whose
/// version `check.json` answers `danger` for now; critical ones first.
pub fn vulnerable(
    conn: &mut AnyConnection,
    table: &ReleaseTable,
    now: NaiveDateTime,
    days: i64,
    include_internal: bool,
    critical_only: bool,
) -> Result<Vec<VulnerableRow>, DbError> {
    let reports = latest_reports(conn, now, days, include_internal)?;
    let mut latest: HashMap<String, (NaiveDateTime, String, &'static str, Option<String>)> =
        HashMap::new();
    for (installation, (at, _, host, version, uuid)) in reports.pings {
        let Some(version) = version else { continue };
        let key = if host.is_empty() {
            format!("#{installation}")
        } else {
            host
        };
        latest.insert(key, (at, version, "service_ping", Some(uuid)));
    }
    for (host, (_, seen, version)) in reports.checks {
        if latest.get(&host).is_none_or(|l| seen > l.0) {
            latest.insert(host, (seen, version, "version_check", None));
        }
    }
    let mut rows: Vec<VulnerableRow> = latest
        .into_iter()
        .filter_map(|(key, (at, version, source, uuid))| {
            let v = Version::parse(&version).ok()?;
            let verdict = table.verdict(&v);
            if verdict.severity != Severity::Danger
                || (critical_only && !verdict.critical_vulnerability)
            {
                return None;
            }
            Some(VulnerableRow {
                hostname: if key.starts_with('#') {
                    String::new()
                } else {
                    key
                },
                uuid,
                version,
                source,
                last_seen: at,
                severity: "danger",
                critical: verdict.critical_vulnerability,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        b.critical
            .cmp(&a.critical)
            .then(a.hostname.cmp(&b.hostname))
    });
    Ok(rows)
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
