//! The window lists (docs/insights.md, "Backport report" and "Vulnerable installations"):
//! who is active in the last N days, each installation on its latest Service Ping and each
//! host on its latest version check, and what the backport report and the vulnerable list
//! make of that. The licence lists read the same latest submissions (`insights::licences`).
//! Reading the window's reports is the costly part and grows with the fleet; each process
//! keeps them (`insights::window_cache`), so the backport and vulnerable computations here
//! are pure over [`LatestReports`]; only [`LatestReports::read`] reads the store.

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use crate::db::models::insights_queries::{self as q, WindowSubmission};
use crate::db::{AnyConnection, DbError};
use crate::domain::insights::installation::{is_excluded_by_default, normalize_hostname};
use crate::domain::verdict::{ReleaseTable, Severity};
use crate::domain::version::Version;

/// An installation's latest Service Ping in a window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatestPing {
    /// Effective recorded_at.
    pub(crate) at: NaiveDateTime,
    /// The submission (ties on `at` go to the later one).
    pub(crate) usage_data_id: i64,
    /// The installation's hostname (`""` when it sent none).
    pub(crate) hostname: String,
    /// Its version.
    pub(crate) version: Option<String>,
    /// The installation's uuid.
    pub(crate) uuid: String,
    /// An internal or staging host.
    pub(crate) excluded: bool,
}

/// A host's latest version check in a window (by day, then last seen).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatestCheck {
    /// Day of the check row.
    pub(crate) day: NaiveDate,
    /// When it was last seen that day.
    pub(crate) seen: NaiveDateTime,
    /// The version it reported.
    pub(crate) version: String,
}

/// The latest Service Ping per installation and the latest version check per (normalised)
/// host.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LatestReports {
    /// installation id → its latest submission.
    pub(crate) pings: HashMap<i64, LatestPing>,
    /// normalised hostname → its latest check.
    pub(crate) checks: HashMap<String, LatestCheck>,
}

impl LatestReports {
    /// Every installation's and host's latest report from `since` on (all of them, internal
    /// and staging ones too).
    pub(crate) fn read(conn: &mut AnyConnection, since: NaiveDateTime) -> Result<Self, DbError> {
        let mut out = LatestReports::default();
        out.add(
            q::list_window_submissions(conn, since, None)?,
            q::list_window_checks(conn, since.date(), None)?,
        );
        Ok(out)
    }

    /// Folds more reports in, each kept where it is later than what is held. Reports can
    /// be given again and in any order: the result is the latest of everything given.
    pub(crate) fn add(
        &mut self,
        pings: Vec<WindowSubmission>,
        checks: Vec<(String, NaiveDate, String, NaiveDateTime)>,
    ) {
        for s in pings {
            let later = self
                .pings
                .get(&s.installation_id)
                .is_none_or(|l| (s.recorded_at, s.usage_data_id) > (l.at, l.usage_data_id));
            if later {
                self.pings.insert(
                    s.installation_id,
                    LatestPing {
                        at: s.recorded_at,
                        usage_data_id: s.usage_data_id,
                        hostname: s.hostname,
                        version: s.version,
                        uuid: s.uuid,
                        excluded: s.excluded,
                    },
                );
            }
        }
        for (host, day, version, seen) in checks {
            let host = normalize_hostname(&host);
            let later = self
                .checks
                .get(&host)
                .is_none_or(|l| (day, seen) > (l.day, l.seen));
            if later {
                self.checks.insert(host, LatestCheck { day, seen, version });
            }
        }
    }

    /// The reports of the window from `since` on: a report held here that is older drops
    /// out, and its installation or host with it (it was that one's latest, so nothing of it
    /// is newer). Internal and staging hosts are left out unless `include_internal`.
    pub(crate) fn window(&self, since: NaiveDateTime, include_internal: bool) -> LatestReports {
        LatestReports {
            pings: self
                .pings
                .iter()
                .filter(|(_, p)| p.at >= since && (include_internal || !p.excluded))
                .map(|(id, p)| (*id, p.clone()))
                .collect(),
            checks: self
                .checks
                .iter()
                .filter(|(host, c)| {
                    c.day >= since.date() && (include_internal || !is_excluded_by_default(host))
                })
                .map(|(host, c)| (host.clone(), c.clone()))
                .collect(),
        }
    }

    /// The oldest report held (of the version checks too with `with_checks`): what is
    /// computed from these reports stays the same for a later start of the window as long
    /// as it is not past it (see [`WindowEdge`]).
    pub(crate) fn edge(&self, with_checks: bool) -> WindowEdge {
        WindowEdge {
            ping: self.pings.values().map(|p| p.at).min(),
            check_day: if with_checks {
                self.checks.values().map(|c| c.day).min()
            } else {
                None
            },
        }
    }
}

/// How far a window's start can move on before a report drops out of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowEdge {
    /// The oldest Service Ping's recorded_at.
    pub(crate) ping: Option<NaiveDateTime>,
    /// The oldest version check's day.
    pub(crate) check_day: Option<NaiveDate>,
}

impl WindowEdge {
    /// Whether the window starting at `since` holds every report this edge was taken from.
    pub(crate) fn holds(&self, since: NaiveDateTime) -> bool {
        self.ping.is_none_or(|at| since <= at) && self.check_day.is_none_or(|d| since.date() <= d)
    }
}

/// The latest reports of the last `days` days before `now`, read from the store.
pub(crate) fn latest_reports(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    days: i64,
    include_internal: bool,
) -> Result<LatestReports, DbError> {
    let since = now - Duration::days(days);
    Ok(LatestReports::read(conn, since)?.window(since, include_internal))
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

/// The backport report over `reports` (one window's latest reports).
pub(crate) fn backport(
    reports: &LatestReports,
    table: &ReleaseTable,
    what_if: Option<&AffectedRange>,
) -> Vec<BackportRow> {
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
    for (installation, ping) in last_ping {
        let (at, host) = (&ping.at, &ping.hostname);
        let Some(v) = ping.version.as_deref().and_then(|v| Version::parse(v).ok()) else {
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
    for (host, check) in last_check {
        let Ok(v) = Version::parse(&check.version) else {
            continue;
        };
        note(&v);
        lines.entry(v.line()).or_default().hosts += 1;
        let slot = active
            .entry(host.clone())
            .or_insert((check.seen, v.clone()));
        if check.seen > slot.0 {
            *slot = (check.seen, v);
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
    lines
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
        .collect()
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

/// Active hosts of `reports` (each once, on its latest report from either source) whose
/// version `check.json` answers `danger` for now; critical ones first.
pub(crate) fn vulnerable(
    reports: &LatestReports,
    table: &ReleaseTable,
    critical_only: bool,
) -> Vec<VulnerableRow> {
    let mut latest: HashMap<String, (NaiveDateTime, String, &'static str, Option<String>)> =
        HashMap::new();
    for (installation, ping) in &reports.pings {
        let Some(version) = ping.version.clone() else {
            continue;
        };
        let key = if ping.hostname.is_empty() {
            format!("#{installation}")
        } else {
            ping.hostname.clone()
        };
        latest.insert(
            key,
            (ping.at, version, "service_ping", Some(ping.uuid.clone())),
        );
    }
    for (host, check) in &reports.checks {
        if latest.get(host).is_none_or(|l| check.seen > l.0) {
            latest.insert(
                host.clone(),
                (check.seen, check.version.clone(), "version_check", None),
            );
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
    rows
}
