//! `version-app export`: submissions of a date range as NDJSON (verbatim payloads) or CSV
//! (summary columns plus chosen key paths), streamed page by page so memory stays bounded
//! by one page whatever the range.

use std::collections::HashMap;
use std::io::Write;

use chrono::{NaiveDate, NaiveDateTime};

use crate::db::models::usage_data_raw::{self, ExportRow};
use crate::db::models::{metric_values, usage_data};
use crate::db::AnyConnection;
use crate::domain::csv_safe::neutralise;
use crate::domain::payload::stored::StoredValue;
use crate::domain::pseudonym::{rewrite_strings, SecretKey, IDENTIFYING_PATHS};

/// Submissions read per query.
const PAGE: i64 = 200;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One verbatim payload per line.
    Ndjson,
    /// One row per submission; summary columns, then `--keys` as columns.
    Csv,
}

/// Reads `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DD HH:MM:SS` / RFC 3339; the CLI's
/// `--from`/`--to` value parser.
pub fn parse_bound(text: &str) -> anyhow::Result<NaiveDateTime> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists"));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(at);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.naive_utc())
        .map_err(|_| anyhow::anyhow!("`{text}` is not a date (YYYY-MM-DD) or a UTC timestamp"))
}

/// What an export wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Submissions written.
    pub written: u64,
    /// Submissions skipped because retention removed their raw payload (NDJSON only).
    pub without_payload: u64,
}

/// Streams submissions recorded in `[from, to)` to `out`.
pub fn export(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    format: ExportFormat,
    keys: &[String],
    pseudonymise: Option<&SecretKey>,
    out: &mut dyn Write,
) -> anyhow::Result<ExportSummary> {
    let hide = |value: &str| match pseudonymise {
        Some(key) => key.pseudonym(value),
        None => value.to_string(),
    };
    let mut summary = ExportSummary::default();
    match format {
        ExportFormat::Ndjson => {
            for_each_page(conn, from, to, true, |_, page| {
                for row in page {
                    match &row.payload {
                        Some(payload) => {
                            match pseudonymise {
                                Some(key) => {
                                    let hidden = rewrite_strings(payload, IDENTIFYING_PATHS, |v| {
                                        key.pseudonym(v)
                                    })
                                    .map_err(|e| {
                                        anyhow::anyhow!(
                                            "submission {} cannot be pseudonymised: {e}",
                                            row.id
                                        )
                                    })?;
                                    write_ndjson_line(out, &hidden)?;
                                }
                                None => write_ndjson_line(out, payload)?,
                            }
                            summary.written += 1;
                        }
                        None => summary.without_payload += 1,
                    }
                }
                Ok(())
            })?;
            out.flush()?;
        }
        ExportFormat::Csv => {
            let key_ids = usage_data::find_key_ids(conn, keys)?;
            let wanted: Vec<i64> = keys
                .iter()
                .filter_map(|k| key_ids.get(k).copied())
                .collect();
            let mut writer = csv::Writer::from_writer(out);
            let mut header = vec![
                "usage_data_id",
                "uuid",
                "hostname",
                "version",
                "edition",
                "installation_type",
                "recorded_at",
                "source",
            ];
            header.extend(keys.iter().map(String::as_str));
            writer.write_record(header.iter().map(|cell| neutralise(cell).into_owned()))?;
            for_each_page(conn, from, to, false, |conn, page| {
                let ids: Vec<i64> = page.iter().map(|r| r.id).collect();
                let mut values: HashMap<(i64, i64), StoredValue> = HashMap::new();
                if !wanted.is_empty() {
                    for (id, key, value) in metric_values::values_of(conn, &ids, &wanted)? {
                        values.insert((id, key), value);
                    }
                }
                for row in page {
                    writer.write_record(csv_record(row, keys, &key_ids, &values, &hide))?;
                    summary.written += 1;
                }
                Ok(())
            })?;
            writer.flush()?;
        }
    }
    Ok(summary)
}

/// Calls `each` with consecutive pages (by id) of the submissions recorded in `[from, to)`.
fn for_each_page(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    with_payload: bool,
    mut each: impl FnMut(&mut AnyConnection, &[ExportRow]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut after_id = 0;
    loop {
        let page = usage_data_raw::list_export_page(conn, from, to, after_id, PAGE, with_payload)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after_id = last.id;
        each(conn, &page)?;
    }
}

/// Writes one payload as one line. JSON strings cannot hold raw line breaks, so removing
/// CR/LF bytes only joins the lines of a pretty-printed upload; compact payloads (what
/// GitLab sends) are written byte for byte.
fn write_ndjson_line(out: &mut dyn Write, payload: &[u8]) -> std::io::Result<()> {
    if payload.contains(&b'\n') || payload.contains(&b'\r') {
        let joined: Vec<u8> = payload
            .iter()
            .copied()
            .filter(|b| *b != b'\n' && *b != b'\r')
            .collect();
        out.write_all(&joined)?;
    } else {
        out.write_all(payload)?;
    }
    out.write_all(b"\n")
}

fn csv_record(
    row: &ExportRow,
    keys: &[String],
    key_ids: &HashMap<String, i64>,
    values: &HashMap<(i64, i64), StoredValue>,
    hide: &dyn Fn(&str) -> String,
) -> Vec<String> {
    // Text from senders goes through the formula-injection defence (domain::csv_safe);
    // numbers formatted here do not need it.
    let text = |value: &str| neutralise(value).into_owned();
    let mut record = vec![
        row.id.to_string(),
        text(&hide(&row.uuid)),
        text(&row.hostname.as_deref().map(hide).unwrap_or_default()),
        text(row.version.as_deref().unwrap_or_default()),
        text(row.edition.as_deref().unwrap_or_default()),
        text(row.installation_type.as_deref().unwrap_or_default()),
        row.recorded_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        text(&row.source),
    ];
    for key in keys {
        let value = key_ids
            .get(key)
            .and_then(|key_id| values.get(&(row.id, *key_id)));
        // The exact integer when there is one: the double loses digits above 2^53.
        record.push(
            value
                .map(|v| match v.exact {
                    Some(int) => int.to_string(),
                    None => v.value.to_string(),
                })
                .unwrap_or_default(),
        );
    }
    record
}
