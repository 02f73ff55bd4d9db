//! What the store materialises per version (`version_status`): the verdict of the release
//! table, with the numeric parts SQL sorts on. Pure; the store stamps it when it writes it.

use super::verdict::{ReleaseTable, Severity};
use super::version::Version;

/// The verdict of one version in the form `version_status` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFacts {
    /// Normalised version.
    pub version: String,
    /// Numeric major (saturated at `i64::MAX`).
    pub major: i64,
    /// Numeric minor.
    pub minor: i64,
    /// Numeric patch.
    pub patch: i64,
    /// Pre-release tag or `''`.
    pub prerelease: String,
    /// The check's severity.
    pub severity: Severity,
    /// Exposed to a critical advisory.
    pub critical: bool,
}

/// The verdict of `version` against `table`.
pub fn version_facts(table: &ReleaseTable, version: &Version) -> VersionFacts {
    let verdict = table.verdict(version);
    let text = version.to_string();
    let prerelease = text
        .split_once('-')
        .map(|(_, pre)| pre.to_owned())
        .unwrap_or_default();
    VersionFacts {
        version: text,
        major: clamp_i64(version.major()),
        minor: clamp_i64(version.minor()),
        patch: clamp_i64(version.patch()),
        prerelease,
        severity: verdict.severity,
        critical: verdict.critical_vulnerability,
    }
}

/// Version numbers are `u64`; a silly `99999999999999999999.0.0` must not wrap negative.
fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
