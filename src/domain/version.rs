//! GitLab version strings, normalised so that they compare as versions.
//!
//! Instances report `Gitlab::VERSION`, which in the wild looks like `15.2.2`, `10.0.4-ee`,
//! `13.9.0-pre` or `16.9.0-rc42`. The edition suffix says nothing about the code level, so it
//! is dropped; `-pre` and `-rcN` stay semver pre-releases (`16.9.0-pre < 16.9.0`).

use std::cmp::Ordering;
use std::fmt;

/// Longest version text we try to read. Real versions are < 20 characters; anything much
/// longer is garbage and must not cost us more than a length check.
pub const MAX_VERSION_LEN: usize = 64;

/// A normalised GitLab version: semver without build metadata or edition suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(semver::Version);

/// Why a version string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string was empty (or only white space).
    #[error("version is empty")]
    Empty,
    /// The string exceeded [`MAX_VERSION_LEN`].
    #[error("version is longer than {MAX_VERSION_LEN} characters")]
    TooLong,
    /// The string is not `MAJOR.MINOR.PATCH[-PRE]`.
    #[error("`{0}` is not a version of the form MAJOR.MINOR.PATCH")]
    Malformed(String),
    /// A part does not fit the stores' 64-bit signed integers (issue 8, #11).
    #[error("`{0}` has a part larger than 9223372036854775807")]
    TooLarge(String),
}

impl Version {
    /// Parses and normalises a version as a GitLab instance reports it.
    ///
    /// Accepts a leading `v` (tag names), strips `-ee` / `+ee` and any other build
    /// metadata, and keeps other pre-release tags.
    pub fn parse(raw: &str) -> Result<Version, VersionError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        if text.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let malformed = || VersionError::Malformed(raw.trim().to_string());
        let mut version = semver::Version::parse(text).map_err(|_| malformed())?;
        if [version.major, version.minor, version.patch]
            .iter()
            .any(|part| i64::try_from(*part).is_err())
        {
            return Err(VersionError::TooLarge(raw.trim().to_string()));
        }
        version.build = semver::BuildMetadata::EMPTY;
        version.pre = normalise_pre(&version.pre).map_err(|_| malformed())?;
        Ok(Version(version))
    }

    /// Builds a stable version from its three numbers.
    pub fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version(semver::Version::new(major, minor, patch))
    }

    /// Major number.
    pub fn major(&self) -> u64 {
        self.0.major
    }

    /// Minor number.
    pub fn minor(&self) -> u64 {
        self.0.minor
    }

    /// Patch number.
    pub fn patch(&self) -> u64 {
        self.0.patch
    }

    /// The `major.minor` release line this version belongs to.
    pub fn line(&self) -> (u64, u64) {
        (self.0.major, self.0.minor)
    }

    /// True for `-pre`, `-rcN` and other pre-releases.
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }
}

/// Drops an edition marker (`ee`) from the pre-release identifiers, so `10.0.4-ee` reads as
/// `10.0.4` and `16.9.0-rc42-ee` as `16.9.0-rc42`.
fn normalise_pre(pre: &semver::Prerelease) -> Result<semver::Prerelease, semver::Error> {
    if pre.is_empty() {
        return Ok(pre.clone());
    }
    let text = pre.as_str();
    let stripped = if text.eq_ignore_ascii_case("ee") {
        ""
    } else if let Some(rest) = text
        .strip_suffix("-ee")
        .or_else(|| text.strip_suffix(".ee"))
        .or_else(|| text.strip_suffix("-EE"))
    {
        rest
    } else {
        text
    };
    semver::Prerelease::new(stripped)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn plain_versions_parse() {
        assert_eq!(v("15.2.2").to_string(), "15.2.2");
        assert_eq!(v(" 16.7.2\n").to_string(), "16.7.2");
        assert_eq!(v("v16.7.2").to_string(), "16.7.2");
    }

    #[test]
    fn edition_suffix_is_dropped() {
        assert_eq!(v("10.0.4-ee").to_string(), "10.0.4");
        assert_eq!(v("10.0.4+ee").to_string(), "10.0.4");
        assert_eq!(v("16.9.0-rc42-ee").to_string(), "16.9.0-rc42");
        assert!(!v("10.0.4-ee").is_prerelease());
    }

    #[test]
    fn prereleases_sort_before_their_release() {
        assert!(v("16.9.0-pre") < v("16.9.0"));
        assert!(v("16.9.0-rc42") < v("16.9.0"));
        assert!(v("16.9.0-pre") > v("16.8.9"));
        assert!(v("13.9.0-pre").is_prerelease());
    }

    #[test]
    fn versions_compare_numerically_not_textually() {
        assert!(v("13.10.0") > v("13.9.9"));
        assert!(v("9.0.0") < v("10.0.0"));
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert_eq!(Version::parse("   "), Err(VersionError::Empty));
        assert!(matches!(
            Version::parse("latest"),
            Err(VersionError::Malformed(_))
        ));
        assert!(matches!(
            Version::parse("15.2"),
            Err(VersionError::Malformed(_))
        ));
        assert!(matches!(
            Version::parse("15.2.x"),
            Err(VersionError::Malformed(_))
        ));
        assert!(matches!(
            Version::parse("<script>"),
            Err(VersionError::Malformed(_))
        ));
        assert_eq!(
            Version::parse(&"1".repeat(MAX_VERSION_LEN + 1)),
            Err(VersionError::TooLong)
        );
    }

    #[test]
    fn line_and_parts() {
        let version = v("16.7.2-ee");
        assert_eq!(version.line(), (16, 7));
        assert_eq!(
            (version.major(), version.minor(), version.patch()),
            (16, 7, 2)
        );
    }
}
