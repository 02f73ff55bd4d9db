//! Releases and their security levels, as the release managers maintain them.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::version::Version;

/// How urgent the fixes in a release are. GitLab's own table used 0 / 1 / 2.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SecurityLevel {
    /// A feature or bug-fix release.
    #[default]
    None,
    /// A security release: "update available" becomes "update asap".
    NonCritical,
    /// A critical security release: GitLab shows a modal on every admin page.
    Critical,
}

impl SecurityLevel {
    /// The text stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::None => "none",
            SecurityLevel::NonCritical => "non_critical",
            SecurityLevel::Critical => "critical",
        }
    }
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A security level text that is none of the three known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a security level (expected none, non_critical or critical)")]
pub struct UnknownSecurityLevel(pub String);

impl FromStr for SecurityLevel {
    type Err = UnknownSecurityLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // GitLab's admin UI and table used numbers and "not_set"; accept them so that an
        // export from the original application imports as it is.
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" | "0" | "not_set" => Ok(SecurityLevel::None),
            "non_critical" | "non-critical" | "1" => Ok(SecurityLevel::NonCritical),
            "critical" | "2" => Ok(SecurityLevel::Critical),
            _ => Err(UnknownSecurityLevel(s.to_string())),
        }
    }
}

/// One release of GitLab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The released version (always stable: `X.Y.Z`).
    pub version: Version,
    /// Day the release was published.
    pub released_on: NaiveDate,
    /// How urgent its fixes are.
    pub security: SecurityLevel,
    /// The advisory batch it belongs to; defaults to `<date>-<level>` for security releases.
    pub advisory: Option<String>,
    /// Free text shown to admins in GitLab's modal for this advisory.
    pub details: String,
}

impl Release {
    /// The advisory this release belongs to, if it is a security release.
    ///
    /// Releases published together at one level form one advisory unless the release
    /// manager named the batch explicitly (protocol 1.3: "default: the release date + level").
    pub fn advisory_id(&self) -> Option<String> {
        if self.security == SecurityLevel::None {
            return None;
        }
        Some(match &self.advisory {
            Some(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => format!("{}-{}", self.released_on, self.security),
        })
    }
}
