//! Reading a release table from CSV (`version,released_on,security,advisory[,details]`).
//!
//! Every row is checked before anything is written, so a broken file changes nothing.

use chrono::NaiveDate;
use std::collections::HashSet;

use super::release::{Release, SecurityLevel};
use super::version::Version;

/// The largest file we accept; GitLab's whole history is ~30 KB.
pub const MAX_CSV_BYTES: usize = 16 * 1024 * 1024;

/// A problem with a CSV release table, naming the row (1-based, header is row 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// The header lacks a required column.
    #[error(
        "the header must contain the columns version,released_on,security,advisory (missing `{0}`)"
    )]
    MissingColumn(&'static str),
    /// A row could not be read.
    #[error("row {row}: {message}")]
    Row {
        /// Row number in the file, counting the header as row 1.
        row: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The file is too large.
    #[error("the file is larger than {MAX_CSV_BYTES} bytes")]
    TooLarge,
    /// The file has a header but no rows.
    #[error("the file has no releases")]
    Empty,
}

/// Parses a whole CSV release table; fails on the first broken row.
pub fn parse_releases_csv(bytes: &[u8]) -> Result<Vec<Release>, CsvError> {
    if bytes.len() > MAX_CSV_BYTES {
        return Err(CsvError::TooLarge);
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| CsvError::Row {
            row: 1,
            message: e.to_string(),
        })?
        .clone();
    let column = |name: &'static str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let version_col = column("version").ok_or(CsvError::MissingColumn("version"))?;
    let date_col = column("released_on").ok_or(CsvError::MissingColumn("released_on"))?;
    let security_col = column("security").ok_or(CsvError::MissingColumn("security"))?;
    let advisory_col = column("advisory").ok_or(CsvError::MissingColumn("advisory"))?;
    let details_col = column("details");

    let mut seen = HashSet::new();
    let mut releases = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let row = index + 2;
        let fail = |message: String| CsvError::Row { row, message };
        let record = record.map_err(|e| fail(e.to_string()))?;
        let field = |i: usize| record.get(i).unwrap_or("");
        let version = parse_release_version(field(version_col)).map_err(fail)?;
        let released_on = NaiveDate::parse_from_str(field(date_col), "%Y-%m-%d").map_err(|_| {
            fail(format!(
                "released_on `{}` is not a YYYY-MM-DD date",
                field(date_col)
            ))
        })?;
        let security: SecurityLevel = field(security_col)
            .parse()
            .map_err(|e: super::release::UnknownSecurityLevel| fail(e.to_string()))?;
        let advisory = Some(field(advisory_col).to_string()).filter(|a| !a.is_empty());
        let details = details_col
            .map(|i| field(i).to_string())
            .unwrap_or_default();
        if !seen.insert(version.clone()) {
            return Err(fail(format!("version {version} appears twice")));
        }
        releases.push(Release {
            version,
            released_on,
            security,
            advisory,
            details,
        });
    }
    if releases.is_empty() {
        return Err(CsvError::Empty);
    }
    Ok(releases)
}

/// Reads the version of a *release*: it must be stable (`X.Y.Z`); release CI never
/// publishes a pre-release to the table.
pub fn parse_release_version(raw: &str) -> Result<Version, String> {
    let version = Version::parse(raw).map_err(|e| e.to_string())?;
    if version.is_prerelease() {
        return Err(format!(
            "`{}` is a pre-release; the release table holds only X.Y.Z releases",
            raw.trim()
        ));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_table_parses() {
        let releases = parse_releases_csv(include_bytes!("../../assets/releases.csv")).unwrap();
        assert!(releases.len() > 600);
        assert!(releases
            .iter()
            .any(|r| r.security == SecurityLevel::Critical));
    }

    #[test]
    fn optional_details_column_is_read() {
        let csv = "version,released_on,security,advisory,details\n16.7.2,2024-01-11,critical,2024-01-11-critical,Account takeover\n";
        let releases = parse_releases_csv(csv.as_bytes()).unwrap();
        assert_eq!(releases[0].details, "Account takeover");
        assert_eq!(releases[0].advisory.as_deref(), Some("2024-01-11-critical"));
    }

    #[test]
    fn broken_rows_name_the_row_and_problem() {
        let bad_date = "version,released_on,security,advisory\n16.7.2,2024-01-11,none,\n16.7.3,yesterday,none,\n";
        let err = parse_releases_csv(bad_date.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 3") && err.contains("yesterday"), "{err}");

        let bad_level = "version,released_on,security,advisory\n16.7.2,2024-01-11,urgent,\n";
        let err = parse_releases_csv(bad_level.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 2") && err.contains("urgent"), "{err}");

        let bad_version = "version,released_on,security,advisory\nsixteen,2024-01-11,none,\n";
        assert!(parse_releases_csv(bad_version.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("sixteen"));

        let pre = "version,released_on,security,advisory\n16.8.0-rc1,2024-01-11,none,\n";
        assert!(parse_releases_csv(pre.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("pre-release"));

        let twice = "version,released_on,security,advisory\n16.7.2,2024-01-11,none,\n16.7.2-ee,2024-01-11,none,\n";
        assert!(parse_releases_csv(twice.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("twice"));

        let short = "version,released_on,security,advisory\n16.7.2,2024-01-11\n";
        assert!(parse_releases_csv(short.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("row 2"));
    }

    #[test]
    fn header_must_name_the_columns() {
        let err = parse_releases_csv(b"v,d\n1.0.0,2020-01-01\n").unwrap_err();
        assert_eq!(err, CsvError::MissingColumn("version"));
        assert_eq!(
            parse_releases_csv(b"version,released_on,security,advisory\n").unwrap_err(),
            CsvError::Empty
        );
    }
}
