//! The fleet views of the overview and versions pages: activity (new, returning,
//! reactivated, churned), Service Ping versus version-check-only hosts, penetration of a
//! version, versions behind, and both sources per minor line. The API and the pages call
//! these same functions. Rules: `domain::insights::{activity, versions_behind}`.

use chrono::NaiveDate;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::report::{line_key, line_text, Range};
use crate::db::models::insights_fleet as f;
use crate::db::models::insights_queries::{self as q, VersionDayCount};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::activity::{classify, previous_start, Activity};
use crate::domain::insights::dimension::UNKNOWN_GROUP;
use crate::domain::insights::installation::{is_excluded_by_default, normalize_hostname};
use crate::domain::insights::versions_behind::{
    days_behind, days_bucket, minors_behind, DAYS_BUCKETS,
};
use crate::domain::release::Release;
use crate::domain::version::Version;

/// `overview/activity` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ActivityRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// Installations with a submission placed in the period.
    pub(crate) active: u64,
    /// Of them, in their first period ever.
    pub(crate) new: u64,
    /// Of them, active in the previous period too.
    pub(crate) returning: u64,
    /// Of them, back after a gap.
    pub(crate) reactivated: u64,
    /// Active in the previous period, not in this one.
    pub(crate) churned: u64,
    /// False for the current period.
    pub(crate) complete: bool,
}

/// Period starts of the range up to the current period (the periods a row may be given for).
fn shown_periods(range: &Range) -> Vec<NaiveDate> {
    let current = range.kind.start_of(range.today);
    range
        .kind
        .starts_between(range.from, range.to)
        .into_iter()
        .filter(|p| *p >= range.from && *p <= current)
        .collect()
}

/// New, returning, reactivated and churned installations per period; periods with neither
/// an active nor a churned installation are left out.
pub(crate) fn activity(
    conn: &mut AnyConnection,
    range: &Range,
) -> Result<Vec<ActivityRow>, DbError> {
    let kind = range.kind;
    let before = previous_start(kind, kind.start_of(range.from));
    let rows = q::list_period_installations(
        conn,
        kind.as_str(),
        before,
        range.to,
        range.include_internal,
    )?;
    let mut active: BTreeMap<NaiveDate, BTreeSet<i64>> = BTreeMap::new();
    for (period, installation) in rows {
        active.entry(period).or_default().insert(installation);
    }
    let shown = shown_periods(range);
    let ids: Vec<i64> = shown
        .iter()
        .filter_map(|p| active.get(p))
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let first: HashMap<i64, NaiveDate> = f::first_periods(conn, kind.as_str(), &ids)?
        .into_iter()
        .collect();
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for period in shown {
        let now = active.get(&period).unwrap_or(&empty);
        let prev = active.get(&previous_start(kind, period)).unwrap_or(&empty);
        let mut row = ActivityRow {
            period,
            active: now.len() as u64,
            new: 0,
            returning: 0,
            reactivated: 0,
            churned: prev.difference(now).count() as u64,
            complete: kind.is_complete(period, range.today),
        };
        for id in now {
            let first_period = first.get(id).copied().unwrap_or(period);
            match classify(first_period, period, prev.contains(id)) {
                Activity::New => row.new += 1,
                Activity::Returning => row.returning += 1,
                Activity::Reactivated => row.reactivated += 1,
            }
        }
        if row.active + row.churned > 0 {
            out.push(row);
        }
    }
    Ok(out)
}

/// Who reported in each period, from both sources, deduplicated by hostname.
struct Sources {
    /// Counted Service Ping submissions per period, with the installation's hostname.
    pings: BTreeMap<NaiveDate, Vec<q::PeriodHost>>,
    /// Per period, hosts with a version check and no installation of that hostname with a
    /// submission in the period: host → version of its latest check in the period.
    check_only: BTreeMap<NaiveDate, BTreeMap<String, String>>,
}

fn sources(conn: &mut AnyConnection, range: &Range) -> Result<Sources, DbError> {
    let kind = range.kind;
    let mut pings: BTreeMap<NaiveDate, Vec<q::PeriodHost>> = BTreeMap::new();
    for r in q::list_period_hosts(
        conn,
        kind.as_str(),
        range.from,
        range.to,
        range.include_internal,
    )? {
        pings.entry(r.period_start).or_default().push(r);
    }
    // the latest check per (period, host), by (day, last_seen)
    let mut latest: BTreeMap<(NaiveDate, String), (NaiveDate, chrono::NaiveDateTime, String)> =
        BTreeMap::new();
    for (host, day, version, seen) in f::list_check_days(conn, range.from, range.to)? {
        let period = kind.start_of(day);
        if period < range.from {
            continue;
        }
        let host = normalize_hostname(&host);
        if !range.include_internal && is_excluded_by_default(&host) {
            continue;
        }
        let key = (period, host);
        if latest.get(&key).is_none_or(|l| (day, seen) > (l.0, l.1)) {
            latest.insert(key, (day, seen, version));
        }
    }
    let pinging: HashSet<(NaiveDate, &str)> = pings
        .iter()
        .flat_map(|(p, list)| list.iter().map(move |r| (*p, r.hostname.as_str())))
        .collect();
    let mut check_only: BTreeMap<NaiveDate, BTreeMap<String, String>> = BTreeMap::new();
    for ((period, host), (_, _, version)) in latest {
        if !pinging.contains(&(period, host.as_str())) {
            check_only.entry(period).or_default().insert(host, version);
        }
    }
    Ok(Sources { pings, check_only })
}

/// `overview/sources` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SourcesRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// Installations with a Service Ping placed in the period.
    pub(crate) service_ping: u64,
    /// Hosts with a version check in the period and no Service Ping from that hostname in it.
    pub(crate) version_check_only: u64,
    /// Of those, hosts from which no Service Ping has come by the end of the period at all.
    pub(crate) never_pinged: u64,
    /// `service_ping + version_check_only`.
    pub(crate) total: u64,
    /// `service_ping ÷ total`.
    pub(crate) service_ping_share: f64,
    /// False for the current period.
    pub(crate) complete: bool,
}

/// Service Ping installations versus version-check-only hosts per period.
pub(crate) fn overview_sources(
    conn: &mut AnyConnection,
    range: &Range,
) -> Result<Vec<SourcesRow>, DbError> {
    let s = sources(conn, range)?;
    let hosts: Vec<String> = s
        .check_only
        .values()
        .flat_map(|m| m.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let first: HashMap<String, NaiveDate> =
        f::first_periods_by_hostname(conn, range.kind.as_str(), &hosts)?
            .into_iter()
            .collect();
    let periods: BTreeSet<NaiveDate> = s.pings.keys().chain(s.check_only.keys()).copied().collect();
    Ok(periods
        .into_iter()
        .map(|period| {
            let service_ping = s.pings.get(&period).map_or(0, Vec::len) as u64;
            let only = s.check_only.get(&period);
            let version_check_only = only.map_or(0, BTreeMap::len) as u64;
            let never_pinged = only.map_or(0, |m| {
                m.keys()
                    .filter(|h| first.get(*h).is_none_or(|f| *f > period))
                    .count()
            }) as u64;
            let total = service_ping + version_check_only;
            SourcesRow {
                period,
                service_ping,
                version_check_only,
                never_pinged,
                total,
                service_ping_share: if total > 0 {
                    service_ping as f64 / total as f64
                } else {
                    0.0
                },
                complete: range.kind.is_complete(period, range.today),
            }
        })
        .collect())
}

/// `major.minor` of a version text, or `unknown`.
fn line_of_text(version: &str) -> String {
    Version::parse(version)
        .map(|v| format!("{}.{}", v.major(), v.minor()))
        .unwrap_or_else(|_| UNKNOWN_GROUP.into())
}

/// A (period, numeric line, line text) key: periods in order, lines numerically.
type LineKey = (NaiveDate, (i64, i64), String);

/// `versions/sources` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct VersionSourcesRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// `major.minor` or `unknown`.
    pub(crate) minor: String,
    /// Service Ping installations on the line (by the period's counted submission).
    pub(crate) service_ping: u64,
    /// Version-check-only hosts on the line (by their latest check in the period).
    pub(crate) version_check_only: u64,
    /// Both.
    pub(crate) total: u64,
    /// False for the current period.
    pub(crate) complete: bool,
}

/// Installations and version-check-only hosts per period and minor line.
pub(crate) fn version_sources(
    conn: &mut AnyConnection,
    range: &Range,
) -> Result<Vec<VersionSourcesRow>, DbError> {
    let s = sources(conn, range)?;
    let mut counts: BTreeMap<LineKey, (u64, u64)> = BTreeMap::new();
    for (period, list) in &s.pings {
        for r in list {
            let line = line_text(r.version_major, r.version_minor);
            counts
                .entry((*period, line_key(&line), line))
                .or_default()
                .0 += 1;
        }
    }
    for (period, hosts) in &s.check_only {
        for version in hosts.values() {
            let line = line_of_text(version);
            counts
                .entry((*period, line_key(&line), line))
                .or_default()
                .1 += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|((period, _, minor), (ping, check))| VersionSourcesRow {
            period,
            minor,
            service_ping: ping,
            version_check_only: check,
            total: ping + check,
            complete: range.kind.is_complete(period, range.today),
        })
        .collect())
}

/// `versions/penetration` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PenetrationRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// Version X.
    pub(crate) version: String,
    /// Installations with a counted submission on a readable version.
    pub(crate) installations: u64,
    /// Of them, on X or newer.
    pub(crate) at_or_above: u64,
    /// `at_or_above ÷ installations`.
    pub(crate) share: f64,
    /// False for the current period.
    pub(crate) complete: bool,
}

/// The share of installations on `version` or newer, per period.
pub(crate) fn penetration(
    groups: &[VersionDayCount],
    range: &Range,
    version: &Version,
) -> Vec<PenetrationRow> {
    let mut counts: BTreeMap<NaiveDate, (u64, u64)> = BTreeMap::new();
    for g in groups {
        let Some(v) = g.version.as_deref().and_then(|t| Version::parse(t).ok()) else {
            continue;
        };
        let n = g.installations.max(0) as u64;
        let slot = counts.entry(g.period_start).or_default();
        slot.0 += n;
        slot.1 += if v >= *version { n } else { 0 };
    }
    counts
        .into_iter()
        .map(|(period, (n, above))| PenetrationRow {
            period,
            version: version.to_string(),
            installations: n,
            at_or_above: above,
            share: if n > 0 { above as f64 / n as f64 } else { 0.0 },
            complete: range.kind.is_complete(period, range.today),
        })
        .collect()
}

/// `versions/behind` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct BehindRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// Minor releases behind the latest release known on the submission's day; `null` for an
    /// unreadable version or a day before every known release.
    pub(crate) minors_behind: Option<u32>,
    /// Installations.
    pub(crate) installations: u64,
    /// False for the current period.
    pub(crate) complete: bool,
}

/// Installations per period by how many minor releases their counted submission was behind.
pub(crate) fn behind(
    groups: &[VersionDayCount],
    releases: &[Release],
    range: &Range,
) -> Vec<BehindRow> {
    let counts = count_by_version_day(groups, |version, day| minors_behind(releases, version, day));
    counts
        .into_iter()
        .map(|(period, minors_behind, installations)| BehindRow {
            period,
            minors_behind,
            installations,
            complete: range.kind.is_complete(period, range.today),
        })
        .collect()
}

/// Installations per period, by a class of their counted submission's (version, day):
/// `classify` runs once per (period, version, day) group the store counted. A submission
/// whose version does not parse, or that `classify` leaves out (`None`), is counted under
/// `None`, listed after every class.
fn count_by_version_day<K: Ord + Copy>(
    groups: &[VersionDayCount],
    classify: impl Fn(&Version, NaiveDate) -> Option<K>,
) -> Vec<(NaiveDate, Option<K>, u64)> {
    // (period, unknown, class): `true` sorts the unknown after every class
    let mut counts: BTreeMap<(NaiveDate, bool, Option<K>), u64> = BTreeMap::new();
    for g in groups {
        let class = g
            .version
            .as_deref()
            .and_then(|text| Version::parse(text).ok())
            .and_then(|version| classify(&version, g.day));
        *counts
            .entry((g.period_start, class.is_none(), class))
            .or_default() += g.installations.max(0) as u64;
    }
    counts
        .into_iter()
        .map(|((period, _, class), n)| (period, class, n))
        .collect()
}

/// `versions/days_behind` rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DaysBehindRow {
    /// Period start.
    pub(crate) period: NaiveDate,
    /// The bucket of days from the release of the counted submission's exact version to the
    /// submission's day (`0-29 days` … `365+ days`); `null` when the release table does not
    /// list that version.
    pub(crate) days_behind: Option<&'static str>,
    /// The bucket's lower bound in days (`null` with `days_behind`), for sorting and charts.
    pub(crate) min_days: Option<i64>,
    /// Installations.
    pub(crate) installations: u64,
    /// False for the current period.
    pub(crate) complete: bool,
}

/// Installations per period by how many days their counted submission ran behind the release
/// of its own version.
pub(crate) fn days_behind_rows(
    groups: &[VersionDayCount],
    releases: &[Release],
    range: &Range,
) -> Vec<DaysBehindRow> {
    let counts = count_by_version_day(groups, |version, day| {
        let label = days_bucket(days_behind(releases, version, day)?);
        DAYS_BUCKETS.iter().position(|(_, l)| *l == label)
    });
    counts
        .into_iter()
        .map(|(period, bucket, installations)| DaysBehindRow {
            period,
            days_behind: bucket.map(|i| DAYS_BUCKETS[i].1),
            min_days: bucket.map(|i| DAYS_BUCKETS[i].0),
            installations,
            complete: range.kind.is_complete(period, range.today),
        })
        .collect()
}
