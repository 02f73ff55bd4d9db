//! The identity summary of a payload: required ids and timestamps, lenient optional fields,
//! version normalisation.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::{PayloadError, PayloadSummary, PayloadVersion, MAX_ECHO_LEN, MAX_ID_LEN};
use crate::domain::version::Version;

pub(super) fn summarize(object: &Map<String, Value>) -> Result<PayloadSummary, PayloadError> {
    let uuid = required_id(object, "uuid")?;
    let recorded_at = required_timestamp(object, "recorded_at")?;
    let unique_instance_id = identity_string(object, "unique_instance_id")?;
    if unique_instance_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_ID_LEN)
    {
        return Err(PayloadError::TooLong {
            field: "unique_instance_id",
            max: MAX_ID_LEN,
        });
    }
    let hostname = identity_string(object, "hostname")?;
    let version = identity_string(object, "version")?.map(|raw| normalize_version(&raw));
    let licensee_name = match object.get("licensee") {
        Some(Value::Object(licensee)) => lenient_string(licensee.get("Name")),
        _ => None,
    };
    Ok(PayloadSummary {
        uuid,
        unique_instance_id,
        hostname,
        version,
        edition: lenient_string(object.get("edition")),
        installation_type: lenient_string(object.get("installation_type")),
        active_user_count: lenient_count(object.get("active_user_count")),
        historical_max_users: lenient_count(object.get("historical_max_users")),
        license_md5: lenient_string(object.get("license_md5")),
        license_sha256: lenient_string(object.get("license_sha256")),
        license_id: lenient_count(object.get("license_id")),
        license_plan: lenient_string(object.get("license_plan")),
        license_trial: lenient_bool(object.get("license_trial")),
        license_expires_at: lenient_date(object.get("license_expires_at")),
        license_starts_at: lenient_date(object.get("license_starts_at")),
        license_user_count: lenient_count(object.get("license_user_count")),
        licensee_name,
        recorded_at,
    })
}

fn required_id(object: &Map<String, Value>, field: &'static str) -> Result<String, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(PayloadError::MissingField { field }),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.is_empty() {
                Err(PayloadError::EmptyField { field })
            } else if text.chars().count() > MAX_ID_LEN {
                Err(PayloadError::TooLong {
                    field,
                    max: MAX_ID_LEN,
                })
            } else {
                Ok(text.to_owned())
            }
        }
        Some(_) => Err(PayloadError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn required_timestamp(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<DateTime<Utc>, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(PayloadError::MissingField { field }),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(PayloadError::EmptyField { field })
        }
        Some(Value::String(text)) => {
            parse_timestamp(text).ok_or_else(|| PayloadError::BadTimestamp {
                field,
                value: text.chars().take(MAX_ECHO_LEN).collect(),
            })
        }
        Some(_) => Err(PayloadError::WrongType {
            field,
            expected: "a string timestamp",
        }),
    }
}

/// An optional identity field: absent, `null` or blank is `None`; any non-string is an error,
/// because a number where the hostname belongs means the sender is not a GitLab instance.
fn identity_string(
    object: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(non_blank(text)),
        Some(_) => Err(PayloadError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn non_blank(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn lenient_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => non_blank(text),
        _ => None,
    }
}

/// Reads a count given as an integer, an integral float (`12.0`) or a numeric string (`"12"`).
/// Anything else, e.g. the SQL text of a "metrics queries" payload, is `None`.
fn lenient_count(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|v| v.fract() == 0.0 && v.abs() < 9.0e15)
                .map(|v| v as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn lenient_bool(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => match text.trim() {
            "true" | "TRUE" | "True" => Some(true),
            "false" | "FALSE" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn lenient_date(value: Option<&Value>) -> Option<NaiveDate> {
    let Value::String(text) = value? else {
        return None;
    };
    let text = text.trim();
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(text).map(|at| at.date_naive()))
}

/// Reads the timestamp forms GitLab has used for `recorded_at` over the years, always
/// returning UTC:
///
/// * `2021-02-09 11:32:05 UTC` (Ruby `Time#to_s` in UTC; 13.x and many later versions)
/// * `2024-01-05 10:00:00 +0000`, `2024-01-05 10:00:00 -0500` (`Time#to_s` in a local zone)
/// * `2024-01-05T10:00:00.123Z`, `2020-04-17T07:43:54.162+00:00` (ISO 8601 / RFC 3339)
/// * `2024-01-05T10:00:00` and `2024-01-05 10:00:00` without a zone (read as UTC)
///
/// Fractional seconds are accepted in every form.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.len() > MAX_ECHO_LEN {
        return None;
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    // Explicit offsets: "+0000", "+00:00", with or without a space before them.
    for format in [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f %z",
    ] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at.with_timezone(&Utc));
        }
    }
    // "UTC"/"Z" suffixes and zone-less forms are UTC by GitLab's convention.
    let naive_text = text
        .strip_suffix("UTC")
        .or_else(|| text.strip_suffix('Z'))
        .map(str::trim_end)
        .unwrap_or(text);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(naive_text, format).ok())
        .map(|naive| naive.and_utc())
}

/// Normalises a reported version the way version checks do (`domain::version`): drop a
/// leading `v`, an edition suffix (`-ee`, `+ee`, also after a pre-release: `-rc42-ee`) and
/// build metadata. Keeps `-pre` / `-rcN`.
pub fn normalize_version(raw: &str) -> PayloadVersion {
    let raw = raw.trim();
    // One normalisation rule for the whole application: the version check's.
    let parsed = Version::parse(raw).ok();
    let to_i64 = |n: u64| i64::try_from(n).ok();
    PayloadVersion {
        raw: raw.to_owned(),
        normalized: parsed
            .as_ref()
            .map_or_else(|| raw.to_owned(), ToString::to_string),
        major: parsed.as_ref().and_then(|v| to_i64(v.major())),
        minor: parsed.as_ref().and_then(|v| to_i64(v.minor())),
        patch: parsed.as_ref().and_then(|v| to_i64(v.patch())),
    }
}
