//! Edits of the release table as pure values: what an edit asks for, the release it leaves
//! behind, and the per-field differences that become audit entries.
//!
//! Every write path (web, API, CLI, CSV import, sync, revert) expresses its change as
//! [`Edit`]s, so they are all checked, diffed and audited the same way.

use chrono::NaiveDate;
use serde::Serialize;

use super::release::{Release, SecurityLevel};
use super::version::Version;

/// The fields of a release, as named in audit entries. `version` marks creation (old is
/// null) and deletion (new is null).
pub const FIELDS: [&str; 5] = ["version", "released_on", "security", "advisory", "details"];

/// Through which path a change arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// The console's release pages.
    Web,
    /// The HTTP API.
    Api,
    /// `version-app releases …` on the command line.
    Cli,
    /// `version-app releases import`.
    Import,
    /// Sync from an upstream server.
    Sync,
}

impl Via {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Web => "web",
            Via::Api => "api",
            Via::Cli => "cli",
            Via::Import => "import",
            Via::Sync => "sync",
        }
    }
}

/// How an edit treats a version that does or does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Add a new release; an existing version is an error.
    Create,
    /// Change an existing release; a missing version is an error.
    Update,
    /// Create it if missing, else change it.
    Upsert,
    /// Remove the release (only reverts of a creation do this).
    Delete,
}

/// One requested change to one release. `None` fields are left as they are (or take their
/// default when the release is created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The release.
    pub version: Version,
    /// Create, update, upsert or delete.
    pub mode: Mode,
    /// New publication day.
    pub released_on: Option<NaiveDate>,
    /// New security level.
    pub security: Option<SecurityLevel>,
    /// New advisory id; `Some(None)` clears it.
    pub advisory: Option<Option<String>>,
    /// New advisory text.
    pub details: Option<String>,
}

impl Edit {
    /// An edit of `mode` that sets nothing yet.
    pub fn new(version: Version, mode: Mode) -> Edit {
        Edit {
            version,
            mode,
            released_on: None,
            security: None,
            advisory: None,
            details: None,
        }
    }

    /// An upsert that makes the release exactly `release` (import, sync).
    pub fn replace_with(release: &Release) -> Edit {
        Edit {
            version: release.version.clone(),
            mode: Mode::Upsert,
            released_on: Some(release.released_on),
            security: Some(release.security),
            advisory: Some(release.advisory.clone()),
            details: Some(release.details.clone()),
        }
    }
}

/// Why an edit cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Creating a version that exists.
    #[error("release {0} already exists")]
    Exists(String),
    /// Changing a version that does not exist.
    #[error("release {0} does not exist")]
    Missing(String),
}

/// The release an edit leaves behind (`None`: removed), from the release before it.
pub fn apply(
    old: Option<&Release>,
    edit: &Edit,
    today: NaiveDate,
) -> Result<Option<Release>, EditError> {
    let version = edit.version.to_string();
    let base = match (edit.mode, old) {
        (Mode::Create, Some(_)) => return Err(EditError::Exists(version)),
        (Mode::Update | Mode::Delete, None) => return Err(EditError::Missing(version)),
        (Mode::Delete, Some(_)) => return Ok(None),
        (_, Some(old)) => old.clone(),
        (_, None) => Release {
            version: edit.version.clone(),
            released_on: today,
            security: SecurityLevel::None,
            advisory: None,
            details: String::new(),
        },
    };
    let mut next = base;
    if let Some(day) = edit.released_on {
        next.released_on = day;
    }
    if let Some(level) = edit.security {
        next.security = level;
    }
    if let Some(advisory) = &edit.advisory {
        next.advisory = advisory
            .as_ref()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty());
    }
    if let Some(details) = &edit.details {
        next.details = details.clone();
    }
    Ok(Some(next))
}

/// One field's change, as audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The release.
    pub version: String,
    /// One of [`FIELDS`].
    pub field: &'static str,
    /// Value before (`null`: absent).
    pub old: Option<String>,
    /// Value after (`null`: absent).
    pub new: Option<String>,
}

/// A release's fields as audit values.
pub fn field_values(release: &Release) -> [(&'static str, Option<String>); 5] {
    [
        ("version", Some(release.version.to_string())),
        ("released_on", Some(release.released_on.to_string())),
        ("security", Some(release.security.as_str().to_string())),
        ("advisory", release.advisory.clone()),
        ("details", Some(release.details.clone())),
    ]
}

/// The fields that differ between two states of a release (either may be absent).
pub fn diff(version: &Version, old: Option<&Release>, new: Option<&Release>) -> Vec<FieldChange> {
    let none: [(&'static str, Option<String>); 5] = FIELDS.map(|f| (f, None));
    let before = old.map(field_values).unwrap_or_else(|| none.clone());
    let after = new.map(field_values).unwrap_or(none);
    before
        .into_iter()
        .zip(after)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, old), (_, new))| FieldChange {
            version: version.to_string(),
            field,
            old,
            new,
        })
        .collect()
}

/// The table after a list of edits (in order), and the changes they make. Used for dry
/// runs and previews; the store applies the same function inside its transaction.
pub fn apply_all(
    table: &[Release],
    edits: &[Edit],
    today: NaiveDate,
) -> Result<(Vec<Release>, Vec<FieldChange>), EditError> {
    let mut releases: Vec<Release> = table.to_vec();
    let mut changes = Vec::new();
    for edit in edits {
        let position = releases.iter().position(|r| r.version == edit.version);
        let old = position.map(|i| releases[i].clone());
        let new = apply(old.as_ref(), edit, today)?;
        changes.extend(diff(&edit.version, old.as_ref(), new.as_ref()));
        match (position, new) {
            (Some(i), Some(new)) => releases[i] = new,
            (Some(i), None) => {
                releases.remove(i);
            }
            (None, Some(new)) => releases.push(new),
            (None, None) => {}
        }
    }
    Ok((releases, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(v: &str, level: SecurityLevel) -> Release {
        Release {
            version: Version::parse(v).unwrap(),
            released_on: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            security: level,
            advisory: None,
            details: String::new(),
        }
    }

    #[test]
    fn creation_lists_every_field_and_updates_only_what_changed() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let v = Version::parse("17.9.2").unwrap();
        let mut edit = Edit::new(v.clone(), Mode::Create);
        edit.security = Some(SecurityLevel::Critical);
        let (table, changes) = apply_all(&[], &[edit.clone()], today).unwrap();
        assert_eq!(table.len(), 1);
        assert_eq!(changes.len(), 4, "advisory stays null: {changes:?}");
        assert_eq!(changes[0].field, "version");
        assert_eq!(
            apply_all(&table, &[edit], today),
            Err(EditError::Exists("17.9.2".into()))
        );

        let mut update = Edit::new(v.clone(), Mode::Update);
        update.security = Some(SecurityLevel::Critical);
        update.details = Some("fix".into());
        let (_, changes) = apply_all(&table, &[update], today).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].field, changes[0].new.as_deref()),
            ("details", Some("fix"))
        );

        let (after, changes) = apply_all(&table, &[Edit::new(v, Mode::Delete)], today).unwrap();
        assert!(after.is_empty());
        assert_eq!(changes.len(), 4);
        assert!(changes.iter().all(|c| c.new.is_none()));
        let missing = Edit::new(Version::parse("1.0.0").unwrap(), Mode::Update);
        assert!(apply_all(&table, &[missing], today).is_err());
        let _ = release("1.0.0", SecurityLevel::None);
    }
}

/// Most versions in one security batch.
pub const MAX_BATCH_VERSIONS: usize = 50;

/// A security release recorded as one batch: several versions, one level, one advisory id,
/// one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityBatch {
    /// The versions, as typed.
    pub versions: Vec<String>,
    /// `non_critical` or `critical`, as typed.
    pub security: String,
    /// The advisory id (required).
    pub advisory: String,
    /// The advisory text.
    pub details: String,
    /// Publication day of versions that do not exist yet (default today).
    pub released_on: Option<NaiveDate>,
}

/// Checks a batch against the table and turns it into edits: versions that do not exist
/// are created, the others get the level, advisory and text. The message names the
/// problem: empty, too long, malformed or duplicate versions, a level that is not a
/// security level, a missing advisory, or a version already in another advisory.
pub fn security_batch(table: &[Release], batch: &SecurityBatch) -> Result<Vec<Edit>, String> {
    use super::csv_import::parse_release_version;
    let versions: Vec<&str> = batch
        .versions
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if versions.is_empty() {
        return Err("the batch has no versions; give at least one, e.g. 17.9.2".into());
    }
    if versions.len() > MAX_BATCH_VERSIONS {
        return Err(format!(
            "a batch may hold at most {MAX_BATCH_VERSIONS} versions, got {}",
            versions.len()
        ));
    }
    let security: SecurityLevel = batch
        .security
        .parse()
        .map_err(|e: super::release::UnknownSecurityLevel| e.to_string())?;
    if security == SecurityLevel::None {
        return Err("a security release needs the level non_critical or critical".into());
    }
    let advisory = batch.advisory.trim();
    if advisory.is_empty() {
        return Err("a security release needs an advisory id, e.g. 2026-11-27-critical".into());
    }
    let mut parsed: Vec<Version> = Vec::new();
    for text in versions {
        let version = parse_release_version(text).map_err(|e| format!("version `{text}`: {e}"))?;
        if parsed.contains(&version) {
            return Err(format!("version {version} appears twice in the batch"));
        }
        if let Some(existing) = table.iter().find(|r| r.version == version) {
            if let Some(other) = existing.advisory_id() {
                if other != advisory {
                    return Err(format!(
                        "{version} already belongs to the advisory {other}; a batch cannot mix two advisories"
                    ));
                }
            }
        }
        parsed.push(version);
    }
    Ok(parsed
        .into_iter()
        .map(|version| {
            let exists = table.iter().any(|r| r.version == version);
            let mut edit = Edit::new(version, Mode::Upsert);
            if !exists {
                edit.released_on = batch.released_on;
            }
            edit.security = Some(security);
            edit.advisory = Some(Some(advisory.to_string()));
            edit.details = Some(batch.details.clone());
            edit
        })
        .collect())
}
