//! The metrics page (`/console/insights/metrics`): the searchable, paged catalogue of key
//! paths, and for one metric its series and its top, growing and declining installations.
//! Numbers come from [`crate::insights::report`] and [`crate::insights::metric_lists`], the
//! functions behind the API, so page and API cannot disagree.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::filters::{
    period_label, range_of, range_query, read, series_fields, stacked, store_error,
};
use super::{installation_href, query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::domain::insights::dimension::Dimension;
use crate::insights::metric_lists::{self as lists, CataloguePage, TopLists};
use crate::insights::report;
use crate::routes::insights::metric_lists::catalogue_query;
use crate::routes::insights::params::Params;

/// Catalogue rows per page on the page.
const PAGE_ROWS: usize = 100;

/// The API path of a key path's endpoints.
fn metric_api(key: &str) -> String {
    format!(
        "/api/v1/insights/metrics/{}",
        percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// `GET /console/insights/metrics`: the searchable catalogue, and one metric's series and
/// top lists.
pub async fn metrics(
    user: ConsoleUser,
    state: web::Data<crate::state::AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let (mut errors, mut notices) = (Vec::new(), Vec::new());
    let allowed = [
        "q",
        "time_frame",
        "source",
        "page",
        "key",
        "period",
        "from",
        "to",
        "by",
        "include_internal",
    ];
    let params = read(&req, &allowed, &mut errors);
    let range = range_of(&params, &mut errors, &mut notices);
    let by = params
        .by(&[Dimension::Tier, Dimension::Edition])
        .unwrap_or_else(|e| {
            errors.push(e.to_string());
            None
        });
    let mut query = catalogue_query(&params).unwrap_or_else(|e| {
        errors.push(e.to_string());
        lists::CatalogueQuery::default()
    });
    query.page = query.page.max(1);
    query.per_page = PAGE_ROWS;
    let key = params.get("key").map(str::to_owned);
    let today = Utc::now().date_naive();
    let (k, cq) = (key.clone(), query.clone());
    let cache = state.insights_cache.clone();
    let (page, series) = state
        .read_db
        .run(move |conn| {
            let page = lists::catalogue(conn, &cq, today)?;
            let series = k.as_ref().map(|key| {
                crate::insights::series::metric(conn, &cache, key, &range, by).and_then(|rows| {
                    let top = crate::insights::series::top_lists(
                        conn,
                        &cache,
                        key,
                        range.kind,
                        None,
                        range.include_internal,
                        today,
                    )?;
                    let frame = lists::time_frame_of(conn, key)?;
                    Ok((rows, top, frame))
                })
            });
            Ok((page, series))
        })
        .await
        .map_err(store_error)?;
    let mut sections = Vec::new();
    if let (Some(key), Some(series)) = (&key, series) {
        match series {
            Ok((rows, top, (frame, source))) => {
                sections.push(series_section(key, &rows, &range, by, frame, source));
                sections.extend(top_sections(key, &top, &range));
            }
            Err(report::MetricError::UnknownKey(k)) => {
                errors.push(format!("unknown metric key path `{k}`"));
            }
            Err(report::MetricError::Db(e)) => return Err(store_error(e)),
        }
    }
    let base = range_query(&range, by);
    sections.extend(catalogue_sections(&page, &query, &params, &base));
    let mut fields = vec![
        Field::text(
            "q",
            "Search key paths and descriptions",
            &query.q,
            "e.g. counts.issues",
        ),
        Field::select(
            "time_frame",
            "Time frame",
            params.get("time_frame").unwrap_or_default(),
            &[
                ("", "any"),
                ("28d", "28d"),
                ("7d", "7d"),
                ("all", "all"),
                ("none", "none"),
            ],
        ),
        Field::select(
            "source",
            "Time frame from",
            params.get("source").unwrap_or_default(),
            &[
                ("", "either"),
                ("definition", "definition"),
                ("key_path", "key-path rule"),
            ],
        ),
    ];
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
            intro: vec!["Period values follow the time-frame rule: 28- and 7-day metrics as reported, all-time counters as the difference from the previous period (resets count 0, the first period is left out). A key's time frame comes from its imported metric definition when it has one (version-app metrics import), else from its key path. Special values (-1, -2, -3, -1000) are excluded and counted.".into()],
            fields,
            errors,
            notices,
            sections,
        },
    ))
}

/// The chart and table of one metric's series.
fn series_section(
    key: &str,
    rows: &[report::MetricRow],
    range: &report::Range,
    by: Option<Dimension>,
    frame: crate::domain::insights::time_frame::TimeFrame,
    source: crate::domain::insights::time_frame::FrameSource,
) -> Section {
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
    let from = match source {
        crate::domain::insights::time_frame::FrameSource::Definition => "its definition",
        crate::domain::insights::time_frame::FrameSource::KeyPath => "the key-path rule",
    };
    let mut s = Section::new(
        "metric",
        format!("{key} (time frame {frame}, from {from})"),
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
    .data(&metric_api(key), &range_query(range, by));
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
    s
}

/// The top, growing and declining tables of one metric.
fn top_sections(key: &str, top: &TopLists, range: &report::Range) -> Vec<Section> {
    let api = format!("{}/top", metric_api(key));
    let kind = range.kind.as_str();
    let at = top.period_start.to_string();
    [
        ("top", "Top 50 installations"),
        ("growing", "Top 50 growing"),
        ("declining", "Top 50 declining"),
    ]
    .into_iter()
    .map(|(list, title)| {
        let compare = list != "top";
        let mut headers = vec![
            ("rank", true),
            ("installation", false),
            ("uuid", false),
            ("value", true),
        ];
        if compare {
            headers.extend([("previous", true), ("change", true)]);
        }
        let heading = if compare {
            format!(
                "{title}: {kind} of {} against {}",
                top.period_start, top.previous_start
            )
        } else {
            format!("{title} by value: {kind} of {}", top.period_start)
        };
        let mut s = Section::new(
            match list {
                "top" => "top",
                "growing" => "growing",
                _ => "declining",
            },
            heading,
            &headers,
        )
        .data(
            &api,
            &query_of(&[
                ("period", kind),
                ("at", &at),
                ("list", list),
                (
                    "include_internal",
                    if range.include_internal { "true" } else { "" },
                ),
            ]),
        );
        s.empty = "No installation has a value for this metric in these periods.";
        s.rows = top
            .rows
            .iter()
            .filter(|r| r.list == list)
            .map(|r| {
                let name = if r.hostname.is_empty() {
                    "(no hostname)".to_owned()
                } else {
                    r.hostname.clone()
                };
                let mut cells = vec![
                    Cell::num(r.rank),
                    Cell::link(name, installation_href(&r.uuid, &r.hostname)),
                    Cell::text(r.uuid.clone()),
                    Cell::num(r.value),
                ];
                if compare {
                    cells.push(Cell::num(
                        r.previous_value.map(|v| v.to_string()).unwrap_or_default(),
                    ));
                    cells.push(Cell::num(
                        r.change.map(|v| v.to_string()).unwrap_or_default(),
                    ));
                }
                cells
            })
            .collect();
        s
    })
    .collect()
}

/// The catalogue table and its pager.
fn catalogue_sections(
    page: &CataloguePage,
    query: &lists::CatalogueQuery,
    params: &Params,
    base: &str,
) -> Vec<Section> {
    let filters = [
        ("q", query.q.as_str()),
        ("time_frame", params.get("time_frame").unwrap_or_default()),
        ("source", params.get("source").unwrap_or_default()),
    ];
    let mut catalogue = Section::new(
        "catalogue",
        format!(
            "Metric catalogue: {} key path(s); installations counted in {}",
            page.total,
            page.month.format("%B %Y")
        ),
        &[
            ("key path", false),
            ("time frame", false),
            ("from", false),
            ("first version", false),
            ("last version", false),
            ("installations last month", true),
            ("description", false),
            ("group", false),
            ("status", false),
            ("tier", false),
        ],
    )
    .data("/api/v1/insights/metrics", &{
        let per_page = PAGE_ROWS.to_string();
        let page_no = query.page.to_string();
        let mut pairs = filters.to_vec();
        pairs.extend([("page", page_no.as_str()), ("per_page", per_page.as_str())]);
        query_of(&pairs)
    });
    catalogue.empty = "No key path matches (or no Service Ping has been received yet).";
    let text = |v: &Option<String>| Cell::text(v.clone().unwrap_or_default());
    catalogue.rows = page
        .rows
        .iter()
        .map(|e| {
            let mut pairs = vec![("key", e.key_path.as_str())];
            pairs.extend(filters);
            let href = format!("/console/insights/metrics?{}&{base}", query_of(&pairs));
            vec![
                Cell::link(e.key_path.clone(), href),
                Cell::text(e.time_frame),
                Cell::text(if e.time_frame_source == "definition" {
                    "definition"
                } else {
                    "key-path rule"
                }),
                text(&e.first_version),
                text(&e.last_version),
                Cell::num(e.installations_last_month),
                text(&e.description),
                text(&e.product_group),
                text(&e.status),
                text(&e.tier),
            ]
        })
        .collect();
    let pages = page.total.div_ceil(PAGE_ROWS).max(1);
    let mut out = vec![catalogue];
    if pages > 1 {
        let link = |n: usize| {
            let n = n.to_string();
            let mut pairs = filters.to_vec();
            pairs.push(("page", n.as_str()));
            format!("/console/insights/metrics?{}", query_of(&pairs))
        };
        let mut pager = Section::new(
            "catalogue-pages",
            "Catalogue pages",
            &[("page", false), ("previous", false), ("next", false)],
        );
        pager.rows = vec![vec![
            Cell::text(format!("page {} of {pages}", query.page)),
            if query.page > 1 {
                Cell::link("← previous page", link(query.page.min(pages + 1) - 1))
            } else {
                Cell::text("–")
            },
            if query.page < pages {
                Cell::link("next page →", link(query.page + 1))
            } else {
                Cell::text("–")
            },
        ]];
        out.push(pager);
    }
    out
}
