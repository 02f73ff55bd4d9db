//! What the insights pages share: reading the URL's filters (a bad one is reported on the
//! page, and the defaults are shown), the filter fields, and stacked charts from rows.

use actix_web::HttpRequest;
use chrono::Utc;

use super::{query_of, Field};
use crate::console::auth::ConsoleError;
use crate::console::charts::BarChart;
use crate::domain::insights::dimension::Dimension;
use crate::insights::report::Range;
use crate::routes::insights::params::Params;

/// The parameters of the period series pages.
pub(super) const SERIES: &[&str] = &["period", "from", "to", "by", "include_internal"];

/// Parses the query; a bad one is reported on the page and the defaults are shown instead.
pub(super) fn read(req: &HttpRequest, allowed: &[&str], errors: &mut Vec<String>) -> Params {
    match Params::parse(req.query_string(), allowed) {
        Ok(p) => p,
        Err(e) => {
            errors.push(e.to_string());
            Params::parse("", allowed).expect("empty query parses")
        }
    }
}

pub(super) fn range_of(
    params: &Params,
    errors: &mut Vec<String>,
    notices: &mut Vec<String>,
) -> Range {
    let today = Utc::now().date_naive();
    match params.range(today) {
        Ok((range, capped)) => {
            notices.extend(capped);
            range
        }
        Err(e) => {
            errors.push(e.to_string());
            Params::parse("", SERIES)
                .and_then(|p| p.range(today))
                .expect("defaults are valid")
                .0
        }
    }
}

pub(super) fn series_fields(params: &Params, range: &Range, by: &[(&str, &str)]) -> Vec<Field> {
    let mut fields = vec![
        Field::select(
            "period",
            "Period",
            range.kind.as_str(),
            &[("month", "Month"), ("week", "ISO week")],
        ),
        Field::text(
            "from",
            "From (inclusive)",
            &range.from.to_string(),
            "YYYY-MM-DD",
        ),
        Field::text("to", "To (exclusive)", &range.to.to_string(), "YYYY-MM-DD"),
    ];
    if !by.is_empty() {
        fields.push(Field::select(
            "by",
            "Split by",
            params.get("by").unwrap_or(by[0].0),
            by,
        ));
    }
    fields.push(include_internal_field(range.include_internal));
    fields
}

/// The "GitLab's own and staging hosts" filter every insights page offers.
pub(super) fn include_internal_field(include_internal: bool) -> Field {
    Field::select(
        "include_internal",
        "GitLab's own and staging hosts",
        if include_internal { "true" } else { "false" },
        &[("false", "left out"), ("true", "included")],
    )
}

pub(super) fn range_query(range: &Range, by: Option<Dimension>) -> String {
    let (from, to) = (range.from.to_string(), range.to.to_string());
    query_of(&[
        ("period", range.kind.as_str()),
        ("from", &from),
        ("to", &to),
        ("by", by.map(|d| d.as_str()).unwrap_or_default()),
        (
            "include_internal",
            if range.include_internal { "true" } else { "" },
        ),
    ])
}

pub(super) fn period_label(period: chrono::NaiveDate, complete: bool) -> String {
    if complete {
        period.to_string()
    } else {
        format!("{period} (incomplete)")
    }
}

/// A stacked chart from `(category, series, value)` triples, in first-seen order.
pub(super) fn stacked(title: &str, x: &str, y: &str, points: &[(String, String, f64)]) -> BarChart {
    let mut categories: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (c, s, _) in points {
        if !categories.contains(c) {
            categories.push(c.clone());
        }
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    let mut series: Vec<(String, Vec<f64>)> = names
        .iter()
        .map(|n| (n.clone(), vec![0.0; categories.len()]))
        .collect();
    for (c, s, v) in points {
        let ci = categories.iter().position(|x| x == c).expect("seen");
        let si = names.iter().position(|x| x == s).expect("seen");
        series[si].1[ci] += v;
    }
    BarChart {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        categories,
        series,
    }
}

pub(super) fn store_error(e: crate::db::DbError) -> ConsoleError {
    ConsoleError::from(e)
}
