//! The metrics page (`/console/insights/metrics`): the searchable catalogue of key paths and
//! one metric's series. Numbers come from [`crate::insights::report`], as on the API.

use actix_web::{web, HttpRequest, HttpResponse};

use super::filters::{
    period_label, range_of, range_query, read, series_fields, stacked, store_error,
};
use super::{query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::db::models::insights as store;
use crate::domain::insights::dimension::Dimension;
use crate::domain::insights::time_frame::TimeFrame;
use crate::insights::report;
use crate::state::AppState;

/// Most key paths listed by one catalogue search.
const CATALOGUE_LIMIT: usize = 200;

/// `GET /console/insights/metrics`: the searchable catalogue, and one metric's series.
pub async fn metrics(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let (mut errors, mut notices) = (Vec::new(), Vec::new());
    let allowed = ["q", "key", "period", "from", "to", "by", "include_internal"];
    let params = read(&req, &allowed, &mut errors);
    let range = range_of(&params, &mut errors, &mut notices);
    let by = params
        .by(&[Dimension::Tier, Dimension::Edition])
        .unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
    let q = params.get("q").unwrap_or_default().to_owned();
    let key = params.get("key").map(str::to_owned);
    let k = key.clone();
    let (keys, series) = state
        .db
        .run(move |conn| {
            let keys = store::list_metric_keys(conn)?;
            let series = k.as_ref().map(|key| report::metric(conn, key, &range, by));
            Ok((keys, series))
        })
        .await
        .map_err(store_error)?;
    let mut sections = Vec::new();
    if let (Some(key), Some(series)) = (&key, series) {
        match series {
            Ok(rows) => {
                let points: Vec<(String, String, f64)> = rows
                    .iter()
                    .map(|r| (period_label(r.period, r.complete), r.group.clone(), r.sum))
                    .collect();
                let chart = stacked(
                    &format!("{key}: sum per period"),
                    range.kind.as_str(),
                    "sum of period values",
                    &points,
                );
                let frame = TimeFrame::from_key_path(key);
                let mut s = Section::new(
                    "metric",
                    format!("{key} (time frame {frame})"),
                    &[
                        ("period", false),
                        ("group", false),
                        ("reporting", true),
                        ("adopting", true),
                        ("sum", true),
                        ("median", true),
                        ("p90", true),
                        ("special values excluded", true),
                    ],
                )
                .chart(&chart)
                .data(
                    &format!(
                        "/api/v1/insights/metrics/{}",
                        percent_encoding::utf8_percent_encode(
                            key,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    &range_query(&range, by),
                );
                let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_else(|| "–".into());
                s.rows = rows
                    .iter()
                    .map(|r| {
                        vec![
                            Cell::text(r.period.to_string()),
                            Cell::text(r.group.clone()),
                            Cell::num(r.installations_reporting),
                            Cell::num(r.adopting),
                            Cell::num(r.sum),
                            Cell::num(opt(r.median)),
                            Cell::num(opt(r.p90)),
                            Cell::num(r.excluded_special),
                        ]
                    })
                    .collect();
                sections.push(s);
            }
            Err(report::MetricError::UnknownKey(k)) => {
                errors.push(format!("unknown metric key path `{k}`"));
            }
            Err(report::MetricError::Db(e)) => return Err(store_error(e)),
        }
    }
    let needle = q.to_lowercase();
    let mut matching: Vec<&String> = keys
        .iter()
        .map(|(_, path)| path)
        .filter(|path| needle.is_empty() || path.to_lowercase().contains(&needle))
        .collect();
    matching.sort();
    if matching.len() > CATALOGUE_LIMIT {
        notices.push(format!(
            "{} key paths match; the first {CATALOGUE_LIMIT} are listed. Narrow the search.",
            matching.len()
        ));
    }
    let base = range_query(&range, by);
    let mut catalogue = Section::new(
        "catalogue",
        "Metric catalogue",
        &[("key path", false), ("time frame", false)],
    );
    catalogue.empty = "No key path matches (or no Service Ping has been received yet).";
    catalogue.rows = matching
        .iter()
        .take(CATALOGUE_LIMIT)
        .map(|path| {
            let href = format!(
                "/console/insights/metrics?{}&{base}",
                query_of(&[("key", path.as_str()), ("q", &q)])
            );
            vec![
                Cell::link(path.as_str(), href),
                Cell::text(TimeFrame::from_key_path(path).as_str()),
            ]
        })
        .collect();
    sections.push(catalogue);
    let mut fields = vec![Field::text(
        "q",
        "Search key paths",
        &q,
        "e.g. counts.issues",
    )];
    if let Some(key) = &key {
        fields.push(Field::text("key", "Metric", key, ""));
    }
    fields.extend(series_fields(
        &params,
        &range,
        &[("", "all"), ("tier", "tier"), ("edition", "edition")],
    ));
    Ok(render(
        &user,
        PageContent {
            title: "Metrics".into(),
            action: "/console/insights/metrics",
            intro: vec!["Period values follow the time-frame rule: 28- and 7-day metrics as reported, all-time counters as the difference from the previous period (resets count 0, the first period is left out). Special values (-1, -2, -3, -1000) are excluded and counted.".into()],
            fields,
            errors,
            notices,
            sections,
        },
    ))
}
