//! The verdict engine: protocol section 1.3, over an immutable snapshot of the release table.
//!
//! A [`ReleaseTable`] is built once per change of the releases and shared behind an `Arc`,
//! so answering a check is a few comparisons in memory and never touches the database.

use chrono::NaiveDate;
use serde::Serialize;
use std::collections::HashMap;

use super::release::{Release, SecurityLevel};
use super::version::Version;

/// How many release lines GitLab lists as upgrade targets in its modal.
const UPGRADE_TARGET_LINES: usize = 3;

/// The badge / banner state GitLab shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    /// "Up to date": nothing newer is released.
    Success,
    /// "Update available": a newer release exists, none fixes a vulnerability of this one.
    Warning,
    /// "Update ASAP": this version is exposed to at least one security advisory.
    Danger,
}

impl Severity {
    /// The wire text (`success` / `warning` / `danger`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The six fields of the `check.json` answer, in the client's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Upgrade targets: the newest non-vulnerable release of each of the newest three lines.
    pub latest_stable_versions: Vec<String>,
    /// Newest non-vulnerable release of the caller's own line above its version, if any.
    pub latest_stable_version_of_minor: Option<String>,
    /// The highest release in the table (empty when the table is empty).
    pub latest_version: String,
    /// Badge state.
    pub severity: Severity,
    /// True when exposed to a critical advisory: GitLab then shows a modal to admins.
    pub critical_vulnerability: bool,
    /// Text of the most severe advisory the caller is exposed to, else empty.
    pub details: String,
}

/// One batch of security releases published together for several lines.
#[derive(Debug, Clone)]
struct Advisory {
    level: SecurityLevel,
    published_on: NaiveDate,
    /// Highest member: a version at or above it cannot be exposed, which lets the scan stop.
    newest: Version,
    /// Lowest member per `major.minor` line: the line's fix.
    fix_per_line: HashMap<(u64, u64), Version>,
    details: String,
}

impl Advisory {
    /// Protocol 1.3: exposed when some member is newer than `version` and `version`'s own
    /// line did not get the fix at or below it.
    fn exposes(&self, version: &Version) -> bool {
        if self.newest <= *version {
            return false;
        }
        match self.fix_per_line.get(&version.line()) {
            Some(fix) => fix > version,
            None => true,
        }
    }

    /// Orders advisories by how loudly they must be reported.
    fn rank(&self) -> (SecurityLevel, NaiveDate) {
        (self.level, self.published_on)
    }
}

/// What a version is exposed to.
struct Exposure<'a> {
    worst: Option<&'a Advisory>,
    critical: bool,
}

/// An immutable, pre-indexed snapshot of the release table.
#[derive(Debug, Clone, Default)]
pub struct ReleaseTable {
    /// Ascending by version.
    releases: Vec<Release>,
    /// Parallel to `releases`: is that release itself exposed to a later advisory?
    vulnerable: Vec<bool>,
    /// Descending by newest member, so a scan can stop at the first one below a version.
    advisories: Vec<Advisory>,
    latest_stable_versions: Vec<String>,
}

impl ReleaseTable {
    /// Indexes a list of releases (any order; duplicates by version keep the last).
    pub fn new(mut releases: Vec<Release>) -> ReleaseTable {
        releases.sort_by(|a, b| a.version.cmp(&b.version));
        releases.dedup_by(|later, earlier| {
            if later.version == earlier.version {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        let advisories = build_advisories(&releases);
        let mut table = ReleaseTable {
            releases,
            vulnerable: Vec::new(),
            advisories,
            latest_stable_versions: Vec::new(),
        };
        table.vulnerable = table
            .releases
            .iter()
            .map(|r| table.exposure(&r.version).worst.is_some())
            .collect();
        table.latest_stable_versions = table.compute_upgrade_targets();
        table
    }

    /// All releases, ascending by version.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// Number of releases.
    pub fn len(&self) -> usize {
        self.releases.len()
    }

    /// True when no release is known.
    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }

    /// The highest release.
    pub fn latest(&self) -> Option<&Release> {
        self.releases.last()
    }

    /// Finds a release by version.
    pub fn find(&self, version: &Version) -> Option<&Release> {
        self.releases
            .binary_search_by(|r| r.version.cmp(version))
            .ok()
            .map(|i| &self.releases[i])
    }

    /// Just the badge state: the hot path of the image routes, without allocating.
    ///
    /// Stops at the first advisory that exposes `version` (the badge does not say which or
    /// how bad), which for an old version is usually the first one looked at: a full
    /// [`ReleaseTable::verdict`] scans every advisory newer than it.
    pub fn severity(&self, version: &Version) -> Severity {
        let exposed = self
            .advisories
            .iter()
            .take_while(|advisory| advisory.newest > *version)
            .any(|advisory| advisory.exposes(version));
        if exposed {
            Severity::Danger
        } else if self.latest().is_some_and(|r| r.version > *version) {
            Severity::Warning
        } else {
            Severity::Success
        }
    }

    /// The full `check.json` verdict for a running version.
    pub fn verdict(&self, version: &Version) -> Verdict {
        let exposure = self.exposure(version);
        Verdict {
            latest_stable_versions: self.latest_stable_versions.clone(),
            latest_stable_version_of_minor: self.newest_safe_in_line_above(version),
            latest_version: self
                .latest()
                .map(|r| r.version.to_string())
                .unwrap_or_default(),
            severity: self.severity_of(version, &exposure),
            critical_vulnerability: exposure.critical,
            details: exposure
                .worst
                .map(|a| a.details.clone())
                .unwrap_or_default(),
        }
    }

    fn severity_of(&self, version: &Version, exposure: &Exposure<'_>) -> Severity {
        if exposure.worst.is_some() {
            Severity::Danger
        } else if self.latest().is_some_and(|r| r.version > *version) {
            Severity::Warning
        } else {
            Severity::Success
        }
    }

    fn exposure(&self, version: &Version) -> Exposure<'_> {
        let mut worst: Option<&Advisory> = None;
        let mut critical = false;
        for advisory in &self.advisories {
            if advisory.newest <= *version {
                break; // sorted by newest member: nothing further can expose `version`
            }
            if advisory.exposes(version) {
                critical |= advisory.level == SecurityLevel::Critical;
                if worst.is_none_or(|w| advisory.rank() > w.rank()) {
                    worst = Some(advisory);
                }
            }
        }
        Exposure { worst, critical }
    }

    /// Index range of the releases in one `major.minor` line.
    fn line_range(&self, line: (u64, u64)) -> std::ops::Range<usize> {
        let start = self.releases.partition_point(|r| r.version.line() < line);
        let end = self.releases.partition_point(|r| r.version.line() <= line);
        start..end
    }

    fn newest_safe_in_line_above(&self, version: &Version) -> Option<String> {
        let range = self.line_range(version.line());
        range
            .rev()
            .take_while(|&i| self.releases[i].version > *version)
            .find(|&i| !self.vulnerable[i])
            .map(|i| self.releases[i].version.to_string())
    }

    fn compute_upgrade_targets(&self) -> Vec<String> {
        let mut targets = Vec::new();
        let mut lines_seen = 0;
        let mut end = self.releases.len();
        while end > 0 && lines_seen < UPGRADE_TARGET_LINES {
            let line = self.releases[end - 1].version.line();
            let range = self.line_range(line);
            if let Some(i) = range.clone().rev().find(|&i| !self.vulnerable[i]) {
                targets.push(self.releases[i].version.to_string());
            }
            lines_seen += 1;
            end = range.start;
        }
        targets
    }
}

fn build_advisories(releases: &[Release]) -> Vec<Advisory> {
    let mut by_id: HashMap<String, Vec<&Release>> = HashMap::new();
    for release in releases {
        if let Some(id) = release.advisory_id() {
            by_id.entry(id).or_default().push(release);
        }
    }
    let mut advisories: Vec<Advisory> = by_id
        .into_iter()
        .map(|(id, members)| advisory_from_members(&id, &members))
        .collect();
    advisories.sort_by(|a, b| b.newest.cmp(&a.newest).then(b.rank().cmp(&a.rank())));
    advisories
}

fn advisory_from_members(id: &str, members: &[&Release]) -> Advisory {
    let level = members
        .iter()
        .map(|r| r.security)
        .max()
        .unwrap_or(SecurityLevel::None);
    let published_on = members
        .iter()
        .map(|r| r.released_on)
        .max()
        .unwrap_or_default();
    let newest = members
        .iter()
        .map(|r| r.version.clone())
        .max()
        .unwrap_or_else(|| Version::new(0, 0, 0));
    let mut fix_per_line: HashMap<(u64, u64), Version> = HashMap::new();
    for member in members {
        fix_per_line
            .entry(member.version.line())
            .and_modify(|fix| {
                if member.version < *fix {
                    *fix = member.version.clone();
                }
            })
            .or_insert_with(|| member.version.clone());
    }
    let written = members.iter().find(|r| !r.details.trim().is_empty());
    let details = match written {
        Some(release) => release.details.trim().to_string(),
        None => default_details(id, level, published_on, members),
    };
    Advisory {
        level,
        published_on,
        newest,
        fix_per_line,
        details,
    }
}

/// The modal text when a release manager wrote none: enough for an admin to act on.
fn default_details(
    id: &str,
    level: SecurityLevel,
    published_on: NaiveDate,
    members: &[&Release],
) -> String {
    let mut versions: Vec<&Version> = members.iter().map(|r| &r.version).collect();
    versions.sort_by(|a, b| b.cmp(a));
    let list = versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let kind = match level {
        SecurityLevel::Critical => "critical security release",
        _ => "security release",
    };
    format!(
        "This version is affected by vulnerabilities fixed in the GitLab {kind} of {published_on} \
         (advisory {id}): {list}. Upgrade to one of those versions or later."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(
        version: &str,
        date: &str,
        security: SecurityLevel,
        advisory: Option<&str>,
    ) -> Release {
        Release {
            version: Version::parse(version).unwrap(),
            released_on: date.parse().unwrap(),
            security,
            advisory: advisory.map(str::to_string),
            details: String::new(),
        }
    }

    use SecurityLevel::{Critical, NonCritical, None as Plain};

    /// Three lines, one non-critical advisory with backports to 16.6 and 16.5, then a
    /// critical one that skipped the unmaintained 16.5 line.
    fn table() -> ReleaseTable {
        ReleaseTable::new(vec![
            release("16.5.0", "2023-10-22", Plain, None),
            release("16.5.1", "2023-10-31", NonCritical, Some("a1")),
            release("16.6.0", "2023-11-16", Plain, None),
            release("16.6.1", "2023-11-30", NonCritical, Some("a1")),
            release("16.6.2", "2023-12-13", Critical, Some("a2")),
            release("16.7.0", "2023-12-21", Plain, None),
            release("16.7.1", "2023-12-22", Plain, None),
            release("16.7.2", "2024-01-11", Critical, Some("a2")),
            release("16.8.0", "2024-01-18", Plain, None),
        ])
    }

    fn verdict(running: &str) -> Verdict {
        table().verdict(&Version::parse(running).unwrap())
    }

    #[test]
    fn newest_release_is_up_to_date() {
        let v = verdict("16.8.0");
        assert_eq!(v.severity, Severity::Success);
        assert!(!v.critical_vulnerability);
        assert_eq!(v.details, "");
        assert_eq!(v.latest_version, "16.8.0");
        assert_eq!(v.latest_stable_version_of_minor, None);
    }

    #[test]
    fn fixed_line_with_newer_feature_release_is_a_warning() {
        let v = verdict("16.7.2");
        assert_eq!(v.severity, Severity::Warning);
        assert!(!v.critical_vulnerability);
        assert_eq!(v.latest_stable_version_of_minor, None);
    }

    #[test]
    fn backport_at_the_running_version_protects_it() {
        // 16.6.2 is a2's fix for the 16.6 line, so 16.6.2 is not exposed to a2.
        let v = verdict("16.6.2");
        assert_eq!(v.severity, Severity::Warning);
        assert!(!v.critical_vulnerability);
    }

    #[test]
    fn backport_below_the_running_version_protects_it() {
        let table = ReleaseTable::new(vec![
            release("16.6.1", "2023-11-30", Critical, Some("x")),
            release("16.7.1", "2023-11-30", Critical, Some("x")),
        ]);
        let v = table.verdict(&Version::parse("16.6.5").unwrap());
        assert_eq!(v.severity, Severity::Warning);
    }

    #[test]
    fn fix_above_in_own_line_is_danger() {
        let v = verdict("16.7.1");
        assert_eq!(v.severity, Severity::Danger);
        assert!(v.critical_vulnerability);
        assert_eq!(v.latest_stable_version_of_minor.as_deref(), Some("16.7.2"));
        assert!(v.details.contains("16.7.2"), "{}", v.details);
    }

    #[test]
    fn unmaintained_line_without_backport_is_exposed() {
        // a2 shipped 16.7.2 and 16.6.2, nothing for 16.5: 16.5.1 is exposed and has no
        // safe newer patch in its own line.
        let v = verdict("16.5.1");
        assert_eq!(v.severity, Severity::Danger);
        assert!(v.critical_vulnerability);
        assert_eq!(v.latest_stable_version_of_minor, None);
    }

    #[test]
    fn most_severe_advisory_provides_the_details() {
        let mut releases = vec![
            release("16.5.0", "2023-10-22", Plain, None),
            release("16.5.1", "2023-10-31", NonCritical, Some("a1")),
            release("16.5.2", "2023-11-30", Critical, Some("a2")),
        ];
        releases[1].details = "minor issue".into();
        releases[2].details = "remote code execution".into();
        let table = ReleaseTable::new(releases);
        let v = table.verdict(&Version::parse("16.5.0").unwrap());
        assert_eq!(v.details, "remote code execution");
        assert!(v.critical_vulnerability);
    }

    #[test]
    fn non_critical_exposure_is_danger_without_modal() {
        let v = verdict("16.5.0");
        assert_eq!(v.severity, Severity::Danger);
        assert!(v.critical_vulnerability, "16.5.0 also misses a2 (critical)");
        let only_a1 = ReleaseTable::new(vec![
            release("16.5.0", "2023-10-22", Plain, None),
            release("16.5.1", "2023-10-31", NonCritical, Some("a1")),
        ]);
        let v = only_a1.verdict(&Version::parse("16.5.0").unwrap());
        assert_eq!(v.severity, Severity::Danger);
        assert!(!v.critical_vulnerability);
    }

    #[test]
    fn prerelease_ahead_of_newest_release_is_up_to_date() {
        let v = verdict("16.9.0-pre");
        assert_eq!(v.severity, Severity::Success);
        let v = verdict("16.9.0-rc42-ee");
        assert_eq!(v.severity, Severity::Success);
    }

    #[test]
    fn prerelease_of_a_released_version_is_behind_it() {
        let v = verdict("16.8.0-rc1");
        assert_eq!(v.severity, Severity::Warning);
    }

    #[test]
    fn unknown_future_version_is_up_to_date() {
        let v = verdict("99.0.0");
        assert_eq!(v.severity, Severity::Success);
        assert_eq!(v.latest_version, "16.8.0");
    }

    #[test]
    fn very_old_version_is_exposed() {
        let v = verdict("1.0.0");
        assert_eq!(v.severity, Severity::Danger);
    }

    #[test]
    fn upgrade_targets_skip_vulnerable_releases() {
        // Lines 16.8, 16.7, 16.6: newest non-vulnerable of each.
        assert_eq!(
            verdict("16.8.0").latest_stable_versions,
            ["16.8.0", "16.7.2", "16.6.2"]
        );
    }

    #[test]
    fn line_whose_releases_are_all_exposed_offers_no_target() {
        let table = ReleaseTable::new(vec![
            release("16.5.0", "2023-10-22", Plain, None),
            release("16.6.0", "2023-11-16", Plain, None),
            release("16.6.1", "2023-11-30", Critical, Some("x")),
            release("16.7.0", "2023-12-21", Plain, None),
        ]);
        // 16.5 got no backport: every 16.5 release is exposed.
        assert_eq!(
            table
                .verdict(&Version::new(16, 7, 0))
                .latest_stable_versions,
            ["16.7.0", "16.6.1"]
        );
    }

    #[test]
    fn default_advisory_is_date_and_level() {
        let table = ReleaseTable::new(vec![
            release("16.6.1", "2023-11-30", NonCritical, None),
            release("16.5.3", "2023-11-30", NonCritical, None),
            release("16.4.9", "2023-12-01", NonCritical, None),
        ]);
        // 16.4.9 is another day's advisory, below 16.5.0: only the 2023-11-30 batch exposes it.
        let v = table.verdict(&Version::new(16, 5, 0));
        assert_eq!(v.severity, Severity::Danger);
        assert!(v.details.contains("2023-11-30"), "{}", v.details);
    }

    #[test]
    fn empty_table_says_up_to_date() {
        let v = ReleaseTable::new(vec![]).verdict(&Version::new(16, 0, 0));
        assert_eq!(v.severity, Severity::Success);
        assert_eq!(v.latest_version, "");
        assert!(v.latest_stable_versions.is_empty());
    }

    #[test]
    fn severity_shortcut_matches_full_verdict() {
        let table = table();
        for running in [
            "1.0.0",
            "16.5.0",
            "16.6.2",
            "16.7.1",
            "16.7.2",
            "16.8.0",
            "17.0.0-pre",
        ] {
            let version = Version::parse(running).unwrap();
            assert_eq!(
                table.severity(&version),
                table.verdict(&version).severity,
                "{running}"
            );
        }
    }

    #[test]
    fn severity_shortcut_matches_full_verdict_on_the_bundled_history() {
        let releases = crate::domain::csv_import::parse_releases_csv(include_bytes!(
            "../../assets/releases.csv"
        ))
        .unwrap();
        let table = ReleaseTable::new(releases.clone());
        for release in &releases {
            let v = &release.version;
            for running in [
                v.clone(),
                Version::new(v.major(), v.minor(), v.patch() + 1),
                Version::parse(&format!("{v}-rc1")).unwrap(),
                Version::new(v.major(), v.minor() + 1, 0),
            ] {
                assert_eq!(
                    table.severity(&running),
                    table.verdict(&running).severity,
                    "{running}"
                );
            }
        }
    }

    #[test]
    fn json_has_the_six_client_fields() {
        let json = serde_json::to_value(verdict("16.7.1")).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "latest_stable_versions",
            "latest_stable_version_of_minor",
            "latest_version",
            "severity",
            "critical_vulnerability",
            "details",
        ] {
            assert!(keys.contains(&key), "{key} missing");
        }
        assert_eq!(json["severity"], "danger");
        let json = serde_json::to_value(verdict("16.8.0")).unwrap();
        assert!(json["latest_stable_version_of_minor"].is_null());
    }
}
