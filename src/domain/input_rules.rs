//! What any text must satisfy before it reaches a store (issue 8, defect 4): one rule for
//! SQLite and PostgreSQL, applied before the store, so that both answer the same.
//!
//! - **No NUL characters** (`\u0000`) in any stored string. PostgreSQL's `text` cannot hold
//!   them while SQLite can; rather than keep different data per store, a NUL anywhere is a
//!   400 naming the field.
//! - **Hostnames at most [`MAX_HOSTNAME_LEN`] characters**, the longest DNS name with room for
//!   a trailing dot. A longer value is no hostname, and would exceed PostgreSQL's btree row
//!   limit in the index anyway.
//! - **`recorded_at` within [`MIN_RECORDED_YEAR`]..=[`MAX_RECORDED_YEAR`]**: Service Ping
//!   exists since 2016, so anything outside the Unix era up to year 9999 is a broken clock or
//!   an attack, and PostgreSQL cannot store years before 4713 BC at all.
//!
//! The rules are written down for operators in `docs/hardening.md`.

use chrono::{DateTime, Datelike, Utc};

use crate::domain::payload::ParsedPayload;

/// Longest hostname stored (DNS names are at most 253 characters).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Earliest year accepted for `recorded_at`.
pub const MIN_RECORDED_YEAR: i32 = 1970;
/// Latest year accepted for `recorded_at`.
pub const MAX_RECORDED_YEAR: i32 = 9999;

/// A NUL character in a field is refused, naming the field.
pub fn no_nul(field: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("field `{field}` contains a NUL character"));
    }
    Ok(())
}

/// [`no_nul`] on an optional field.
pub fn no_nul_opt(field: &str, value: Option<&str>) -> Result<(), String> {
    value.map_or(Ok(()), |v| no_nul(field, v))
}

/// A hostname: no NUL and at most [`MAX_HOSTNAME_LEN`] characters.
pub fn hostname(field: &str, value: Option<&str>) -> Result<(), String> {
    let Some(value) = value else {
        return Ok(());
    };
    no_nul(field, value)?;
    if value.chars().count() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "field `{field}` is longer than {MAX_HOSTNAME_LEN} characters"
        ));
    }
    Ok(())
}

/// `recorded_at` within the accepted years.
pub fn recorded_at(value: &DateTime<Utc>) -> Result<(), String> {
    if !(MIN_RECORDED_YEAR..=MAX_RECORDED_YEAR).contains(&value.year()) {
        return Err(format!(
            "field `recorded_at` must be a date from {MIN_RECORDED_YEAR} to {MAX_RECORDED_YEAR}, \
             got {}",
            value.to_rfc3339()
        ));
    }
    Ok(())
}

/// Every rule, on a parsed Service Ping payload.
pub fn check_payload(parsed: &ParsedPayload) -> Result<(), String> {
    let s = &parsed.summary;
    no_nul("uuid", &s.uuid)?;
    no_nul_opt("unique_instance_id", s.unique_instance_id.as_deref())?;
    hostname("hostname", s.hostname.as_deref())?;
    if let Some(version) = &s.version {
        no_nul("version", &version.raw)?;
    }
    for (field, value) in [
        ("edition", &s.edition),
        ("installation_type", &s.installation_type),
        ("license_md5", &s.license_md5),
        ("license_sha256", &s.license_sha256),
        ("license_plan", &s.license_plan),
        ("licensee.Name", &s.licensee_name),
    ] {
        no_nul_opt(field, value.as_deref())?;
    }
    recorded_at(&s.recorded_at)?;
    if let Some(key) = parsed.metrics.key_with_nul() {
        return Err(format!(
            "metric key `{}` contains a NUL character",
            key.escape_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn nul_long_hostnames_and_absurd_dates_are_refused() {
        assert!(no_nul("uuid", "a\0b").unwrap_err().contains("`uuid`"));
        assert!(no_nul("uuid", "ab").is_ok());
        assert!(hostname("hostname", Some(&"a".repeat(255))).is_ok());
        assert!(hostname("hostname", Some(&"a".repeat(256))).is_err());
        let ok = Utc.with_ymd_and_hms(2026, 1, 9, 10, 0, 0).unwrap();
        assert!(recorded_at(&ok).is_ok());
        let old = Utc.with_ymd_and_hms(-5000, 1, 1, 0, 0, 0).unwrap();
        assert!(recorded_at(&old).is_err());
    }
}
