//! Query-string parsing for `/api/v1/insights/…`: every parameter named, every bad value a
//! 400 naming it, over-wide ranges capped (and said so).

use chrono::{Duration, Months, NaiveDate};
use std::collections::HashMap;

use crate::domain::insights::dimension::Dimension;
use crate::domain::insights::periods::PeriodKind;
use crate::error::ApiError;
use crate::insights::report::Range;

/// Most months one request may span (5 years).
pub const MAX_MONTHS: u32 = 60;
/// Most weeks one request may span (3 years).
pub const MAX_WEEKS: i64 = 156;
/// Longest query string read.
const MAX_QUERY_BYTES: usize = 4096;

/// JSON (default) or CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/csv`.
    Csv,
}

/// The parameters of one request, checked against the names the endpoint accepts.
#[derive(Debug)]
pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    /// Parses a query string; unknown or repeated parameters are refused.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(ApiError::BadRequest(format!(
                "the query string may be at most {MAX_QUERY_BYTES} bytes"
            )));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::BadRequest(format!("unreadable query string: {e}")))?;
        let mut values = HashMap::new();
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{name}` (this endpoint reads: {})",
                    allowed.join(", ")
                )));
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(ApiError::BadRequest(format!(
                    "parameter `{name}` is given twice"
                )));
            }
        }
        Ok(Params { values })
    }

    /// A parameter's value, when given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `format=json|csv` (default json).
    pub fn format(&self) -> Result<Format, ApiError> {
        match self.get("format") {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::BadRequest(format!(
                "`format` must be json or csv, got `{other}`"
            ))),
        }
    }

    /// `include_internal=true|false` (default false).
    pub fn include_internal(&self) -> Result<bool, ApiError> {
        match self.get("include_internal") {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "`include_internal` must be true or false, got `{other}`"
            ))),
        }
    }

    /// `by=…` restricted to the given dimensions.
    pub fn by(&self, allowed: &[Dimension]) -> Result<Option<Dimension>, ApiError> {
        let Some(text) = self.get("by") else {
            return Ok(None);
        };
        let names: Vec<&str> = allowed.iter().map(|d| d.as_str()).collect();
        match text.parse::<Dimension>() {
            Ok(d) if allowed.contains(&d) => Ok(Some(d)),
            _ => Err(ApiError::BadRequest(format!(
                "`by` must be one of {}, got `{text}`",
                names.join(", ")
            ))),
        }
    }

    /// A `YYYY-MM-DD` date parameter.
    fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.get(name)
            .map(|text| {
                NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                    ApiError::BadRequest(format!(
                        "`{name}` must be a YYYY-MM-DD date, got `{text}`"
                    ))
                })
            })
            .transpose()
    }

    /// `period`, `from`, `to`, `include_internal` as a range, and a note when it was capped.
    /// Defaults: `to` tomorrow (so today's period is in), `from` 12 periods earlier.
    pub fn range(&self, today: NaiveDate) -> Result<(Range, Option<String>), ApiError> {
        let kind: PeriodKind = match self.get("period") {
            None => PeriodKind::Month,
            Some(text) => text.parse().map_err(ApiError::BadRequest)?,
        };
        let to = self.date("to")?.unwrap_or(today + Duration::days(1));
        let default_from = match kind {
            PeriodKind::Month => kind.start_of(to) - Months::new(11),
            PeriodKind::Week => kind.start_of(to) - Duration::weeks(11),
        };
        let mut from = self.date("from")?.unwrap_or(default_from);
        if from >= to {
            return Err(ApiError::BadRequest(format!(
                "`from` ({from}) must be before `to` ({to}); `to` is exclusive"
            )));
        }
        let earliest = match kind {
            PeriodKind::Month => to - Months::new(MAX_MONTHS),
            PeriodKind::Week => to - Duration::weeks(MAX_WEEKS),
        };
        let mut note = None;
        if from < earliest {
            note = Some(format!(
                "the range was capped to {} {}s: `from` {from} became {earliest}",
                if kind == PeriodKind::Month {
                    i64::from(MAX_MONTHS)
                } else {
                    MAX_WEEKS
                },
                kind.as_str()
            ));
            from = earliest;
        }
        let range = Range {
            kind,
            from,
            to,
            include_internal: self.include_internal()?,
            today,
        };
        Ok((range, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    const ALL: &[&str] = &["period", "from", "to", "by", "include_internal", "format"];

    #[test]
    fn ranges_are_checked_and_capped() {
        let today = day("2026-03-10");
        let p = Params::parse("period=week&from=2026-01-05&to=2026-03-02", ALL).unwrap();
        let (r, note) = p.range(today).unwrap();
        assert_eq!(
            (r.kind, r.from, r.to, note),
            (PeriodKind::Week, day("2026-01-05"), day("2026-03-02"), None)
        );
        let reversed = Params::parse("from=2026-03-01&to=2026-02-01", ALL).unwrap();
        assert!(reversed
            .range(today)
            .unwrap_err()
            .to_string()
            .contains("`from`"));
        let bad = Params::parse("to=2026-13-01", ALL).unwrap();
        assert!(bad.range(today).unwrap_err().to_string().contains("`to`"));
        let wide = Params::parse("from=2000-01-01&to=2026-01-01", ALL).unwrap();
        let (r, note) = wide.range(today).unwrap();
        assert_eq!(r.from, day("2021-01-01"));
        assert!(note.unwrap().contains("capped"));
        let (r, _) = Params::parse("", ALL).unwrap().range(today).unwrap();
        assert_eq!((r.from, r.to), (day("2025-04-01"), day("2026-03-11")));
        assert!(Params::parse("colour=red", ALL)
            .unwrap_err()
            .to_string()
            .contains("`colour`"));
        assert!(Params::parse("period=day", ALL)
            .unwrap()
            .range(today)
            .is_err());
    }
}
