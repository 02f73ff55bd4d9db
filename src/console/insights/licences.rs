//! `GET /console/insights/licences`: seat utilisation by tier over time, and the lists a
//! customer-success team works from (over their seat count, expiring in 30/90 days, trials),
//! each entry linking to the installation's page.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::filters::{
    include_internal_field, period_label, range_of, range_query, read, series_fields, stacked,
    store_error,
};
use super::overview::{complete_text, percent};
use super::{installation_href, query_of, render, Cell, Field, PageContent, Section};
use crate::console::auth::{ConsoleError, ConsoleUser, Role};
use crate::console::charts::grouped_svg;
use crate::insights::licences::{LicenceList, LicenceRow, UtilisationRow};
use crate::insights::report::Range;
use crate::insights::{lists, series};
use crate::routes::insights::params::Params;
use crate::routes::insights::{licence_params, LICENCE_PARAMS};
use crate::state::AppState;

/// `GET /console/insights/licences`.
pub async fn licences(
    user: ConsoleUser,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    user.require(Role::Analyst)?;
    let (mut errors, mut notices) = (Vec::new(), Vec::new());
    let allowed = ["period", "from", "to", "include_internal", "within", "days"];
    let params = read(&req, &allowed, &mut errors);
    let range = range_of(&params, &mut errors, &mut notices);
    // the lists read `within` and `days` with the API's own rules
    let list_query = query_of(&[
        ("list", "expiring"),
        ("within", params.get("within").unwrap_or_default()),
        ("days", params.get("days").unwrap_or_default()),
    ]);
    let (within, days) =
        match Params::parse(&list_query, LICENCE_PARAMS).and_then(|p| licence_params(&p)) {
            Ok((LicenceList::Expiring(n), days, _)) => (n, days),
            Ok(_) => (90, 28),
            Err(e) => {
                errors.push(e.to_string());
                (90, 28)
            }
        };
    let include_internal = range.include_internal;
    let now = Utc::now().naive_utc();
    let lists = [
        LicenceList::OverSeats,
        LicenceList::Expiring(30),
        LicenceList::Expiring(within),
        LicenceList::Trials,
    ];
    let cache = state.insights_cache.clone();
    let (usage, found) = state
        .read_db
        .run(move |conn| {
            let usage = series::utilisation(conn, &cache, &range)?;
            // one read of the window serves the four lists
            let found = lists::licence_lists(conn, &cache, now, (days, include_internal), &lists)?;
            Ok((usage, found))
        })
        .await
        .map_err(store_error)?;
    let mut sections = vec![utilisation_section(&range, &usage)];
    let names = ["over_seats", "expiring_30", "expiring", "trials"];
    let days_text = days.to_string();
    for ((which, rows), key) in lists.iter().zip(found.iter()).zip(names) {
        if *which == LicenceList::Expiring(30) && within == 30 {
            continue;
        }
        let (list, within_text, heading, empty) = match which {
            LicenceList::OverSeats => (
                "over_seats",
                String::new(),
                "Installations over their seat count (active users above license_user_count)"
                    .to_string(),
                "No installation has more active users than seats.",
            ),
            LicenceList::Expiring(n) => (
                "expiring",
                n.to_string(),
                format!("Licences expiring in the next {n} days"),
                "No licence expires in this window.",
            ),
            LicenceList::Trials => (
                "trials",
                String::new(),
                "Trial licences".to_string(),
                "No installation runs a trial licence.",
            ),
        };
        let query = query_of(&[
            ("list", list),
            ("within", &within_text),
            ("days", &days_text),
            (
                "include_internal",
                if include_internal { "true" } else { "" },
            ),
        ]);
        sections.push(list_section(key, heading, empty, rows, &query));
    }
    let mut fields = series_fields(&params, &range, &[]);
    fields.pop();
    fields.push(Field::text(
        "within",
        "Expiring within (days)",
        &within.to_string(),
        "90",
    ));
    fields.push(Field::text(
        "days",
        "Latest submission within (days)",
        &days_text,
        "28",
    ));
    fields.push(include_internal_field(include_internal));
    Ok(render(
        &user,
        PageContent {
            title: "Licences".into(),
            action: "/console/insights/licences",
            intro: vec![
                "Seat utilisation = active users ÷ seats (license_user_count), both summed over a tier's installations that report both, from each period's counted submission. A seat count of 0 or a special active-user value leaves the installation out.".into(),
                format!("The lists use each installation's latest submission in the last {days} days; every entry links to its installation page."),
            ],
            fields,
            errors,
            notices,
            sections,
        },
    ))
}

fn utilisation_section(range: &Range, rows: &[UtilisationRow]) -> Section {
    let points: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            (
                period_label(r.period, r.complete),
                r.tier.clone(),
                (1000.0 * r.utilisation).round() / 10.0,
            )
        })
        .collect();
    let chart = stacked(
        &format!("Seat utilisation per {} by tier", range.kind),
        range.kind.as_str(),
        "% of seats in use",
        &points,
    );
    let mut s = Section::new(
        "utilisation",
        format!("Seat utilisation by tier per {}", range.kind),
        &[
            ("period", false),
            ("tier", false),
            ("installations", true),
            ("active users", true),
            ("seats", true),
            ("utilisation", true),
            ("over seats", true),
            ("complete", false),
        ],
    )
    .data(
        "/api/v1/insights/licences/utilisation",
        &range_query(range, None),
    );
    if !chart.is_empty() {
        s.chart = Some(grouped_svg(&chart));
    }
    s.rows = rows
        .iter()
        .map(|r| {
            vec![
                Cell::text(r.period.to_string()),
                Cell::text(r.tier.clone()),
                Cell::num(r.installations),
                Cell::num(r.active_users),
                Cell::num(r.seats),
                Cell::num(percent(r.utilisation)),
                Cell::num(r.over_seats),
                Cell::text(complete_text(r.complete)),
            ]
        })
        .collect();
    s
}

fn list_section(
    key: &'static str,
    heading: String,
    empty: &'static str,
    rows: &[LicenceRow],
    query: &str,
) -> Section {
    let dash = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_else(|| "–".into());
    let mut s = Section::new(
        key,
        heading,
        &[
            ("installation", false),
            ("tier", false),
            ("plan", false),
            ("seats", true),
            ("active users", true),
            ("historical max", true),
            ("over by", true),
            ("starts", false),
            ("expires", false),
            ("days left", true),
            ("trial", false),
            ("add-ons", false),
        ],
    )
    .data("/api/v1/insights/licences", query);
    s.empty = empty;
    s.first_rows(rows, |r| {
        let name = if r.hostname.is_empty() {
            format!("(no hostname) {}", r.uuid)
        } else {
            r.hostname.clone()
        };
        vec![
            Cell::link(name, installation_href(&r.uuid, &r.hostname)),
            Cell::text(r.tier),
            Cell::text(r.plan.clone().unwrap_or_default()),
            Cell::num(dash(r.seats)),
            Cell::num(dash(r.active_users)),
            Cell::num(dash(r.historical_max_users)),
            Cell::num(dash(r.over_by)),
            Cell::text(r.starts_at.map(|d| d.to_string()).unwrap_or_default()),
            Cell::text(r.expires_at.map(|d| d.to_string()).unwrap_or_default()),
            Cell::num(dash(r.days_to_expiry)),
            Cell::text(if r.trial { "yes" } else { "no" }),
            Cell::text(r.add_ons.clone()),
        ]
    })
}
