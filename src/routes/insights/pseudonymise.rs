//! `pseudonymise=true` on the insights API: every hostname and uuid an answer carries is
//! replaced with the keyed HMAC-SHA256 pseudonym `export --pseudonymise` writes (same key
//! setting `pseudonymise_key`, same function `SecretKey::pseudonym`), so analysts can join
//! the two. Everything else in the answer is untouched (docs/privacy.md, docs/insights.md).

use crate::config::Settings;
use crate::domain::pseudonym::SecretKey;
use crate::error::ApiError;
use crate::insights::licences::LicenceRow;
use crate::insights::report::{InstallationReport, VulnerableRow};

use super::params::Params;

/// The query parameter's name.
pub(crate) const PARAM: &str = "pseudonymise";

/// `allowed` plus [`PARAM`]: every insights endpoint accepts it.
pub(crate) fn with_param<'a>(allowed: &[&'a str]) -> Vec<&'a str> {
    let mut all = allowed.to_vec();
    all.push(PARAM);
    all
}

/// The key when `pseudonymise=true`; `None` for `false` or no parameter; 400 for any other
/// value, or when the server has no `pseudonymise_key` (saying why).
pub(crate) fn requested(
    params: &Params,
    settings: &Settings,
) -> Result<Option<SecretKey>, ApiError> {
    match params.get(PARAM) {
        None | Some("false") => Ok(None),
        Some("true") => settings
            .privacy
            .pseudonymise_key
            .clone()
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "`pseudonymise=true` needs the `pseudonymise_key` setting \
                 (VERSION_APP_PSEUDONYMISE_KEY) on the server: pseudonyms are HMAC-SHA256 \
                 under that key, the same as `export --pseudonymise`, and it is not set"
                        .into(),
                )
            }),
        Some(other) => Err(ApiError::BadRequest(format!(
            "`{PARAM}` must be true or false, got `{}`",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

/// The pseudonym of a non-empty identifier; an empty one (no hostname) names nobody and
/// stays empty.
fn hide(key: &SecretKey, value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        key.pseudonym(value)
    }
}

/// The vulnerable list with hostnames and uuids pseudonymised, rows in the same order.
pub(crate) fn vulnerable(rows: Vec<VulnerableRow>, key: &SecretKey) -> Vec<VulnerableRow> {
    rows.into_iter()
        .map(|row| VulnerableRow {
            hostname: hide(key, &row.hostname),
            uuid: row.uuid.as_deref().map(|u| hide(key, u)),
            ..row
        })
        .collect()
}

/// The licence list with uuids and hostnames pseudonymised, rows in the same order.
pub(crate) fn licences(rows: Vec<LicenceRow>, key: &SecretKey) -> Vec<LicenceRow> {
    rows.into_iter()
        .map(|row| LicenceRow {
            uuid: hide(key, &row.uuid),
            hostname: hide(key, &row.hostname),
            ..row
        })
        .collect()
}

/// The installation report with its uuid and hostname pseudonymised.
pub(crate) fn installation(report: InstallationReport, key: &SecretKey) -> InstallationReport {
    InstallationReport {
        uuid: hide(key, &report.uuid),
        hostname: hide(key, &report.hostname),
        ..report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn identifiers_change_and_nothing_else() {
        let key = SecretKey::new("insights-key-0123456789");
        let at = NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        let row = |hostname: &str, uuid: Option<&str>| VulnerableRow {
            hostname: hostname.into(),
            uuid: uuid.map(str::to_string),
            version: "17.0.0".into(),
            source: "service_ping",
            last_seen: at,
            severity: "danger",
            critical: true,
        };
        let out = vulnerable(vec![row("a.example", Some("u-1")), row("", None)], &key);
        assert_eq!(
            out[0],
            row(&key.pseudonym("a.example"), Some(&key.pseudonym("u-1")))
        );
        assert_eq!(out[1], row("", None));
    }
}
