//! The insights pages (`/console/insights…`): server-rendered HTML with SVG charts, every
//! chart followed by its numbers as a table and links to the same data as JSON and CSV.
//! Filters live in the URL (GET forms), so a view can be shared. Analysts and above.

mod filters;
mod installation;
mod licences;
mod metrics;
mod overview;
mod pages;
mod versions;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use crate::console::auth::ConsoleUser;
use crate::console::charts::BarChart;
use crate::console::layout::{self, Section as NavSection, Shell};

/// Registers the pages under the `/console` scope.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/insights", web::get().to(overview::overview))
        .route("/insights/versions", web::get().to(versions::versions))
        .route("/insights/licences", web::get().to(licences::licences))
        .route(
            "/insights/raw/{usage_data_id}",
            web::get().to(installation::raw),
        )
        .route("/insights/backport", web::get().to(pages::backport))
        .route("/insights/metrics", web::get().to(metrics::metrics))
        .route("/insights/vulnerable", web::get().to(pages::vulnerable))
        .route(
            "/insights/installation",
            web::get().to(installation::installation),
        );
}

/// One filter field of a page's GET form.
pub(crate) struct Field {
    name: &'static str,
    label: &'static str,
    value: String,
    placeholder: &'static str,
    /// `(value, label)`; empty for a text input.
    options: Vec<(String, String)>,
}

impl Field {
    fn text(
        name: &'static str,
        label: &'static str,
        value: &str,
        placeholder: &'static str,
    ) -> Field {
        Field {
            name,
            label,
            value: value.to_owned(),
            placeholder,
            options: Vec::new(),
        }
    }

    fn select(
        name: &'static str,
        label: &'static str,
        value: &str,
        options: &[(&str, &str)],
    ) -> Field {
        Field {
            name,
            label,
            value: value.to_owned(),
            placeholder: "",
            options: options
                .iter()
                .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
                .collect(),
        }
    }
}

/// One table cell.
pub(crate) struct Cell {
    text: String,
    href: Option<String>,
    num: bool,
}

impl Cell {
    fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: None,
            num: false,
        }
    }
    fn num(value: impl ToString) -> Cell {
        Cell {
            text: value.to_string(),
            href: None,
            num: true,
        }
    }
    fn link(text: impl Into<String>, href: String) -> Cell {
        Cell {
            text: text.into(),
            href: Some(href),
            num: false,
        }
    }
}

/// Most rows a page shows of one installation list (vulnerable, licence lists).
const LIST_ROWS: usize = 200;

/// One chart (optional) with its table and data links.
pub(crate) struct Section {
    key: &'static str,
    heading: String,
    chart: Option<String>,
    headers: Vec<(&'static str, bool)>,
    rows: Vec<Vec<Cell>>,
    json: Option<String>,
    csv: Option<String>,
    empty: &'static str,
}

impl Section {
    fn new(
        key: &'static str,
        heading: impl Into<String>,
        headers: &[(&'static str, bool)],
    ) -> Section {
        Section {
            key,
            heading: heading.into(),
            chart: None,
            headers: headers.to_vec(),
            rows: Vec::new(),
            json: None,
            csv: None,
            empty: "Nothing here yet: no data in this range. Widen the range, or come back once instances have reported.",
        }
    }

    fn chart(mut self, chart: &BarChart) -> Section {
        if !chart.is_empty() {
            self.chart = Some(chart.to_svg());
        }
        self
    }

    /// The rows of a list of installations, `cells` of each: the first [`LIST_ROWS`] of a
    /// long list, said so in the heading. Such a list grows with the fleet, and thousands of
    /// rows are read in the CSV or JSON (linked beside it, always whole), not on a page; the
    /// rows past the first are not even made into cells.
    fn first_rows<R>(mut self, rows: &[R], cells: impl Fn(&R) -> Vec<Cell>) -> Section {
        self.rows = rows.iter().take(LIST_ROWS).map(cells).collect();
        if rows.len() > LIST_ROWS {
            self.heading = format!(
                "{}: the first {LIST_ROWS} of {} (all of them in the CSV and JSON)",
                self.heading,
                rows.len()
            );
        }
        self
    }

    /// Links to an API path (with its query) as JSON and CSV.
    fn data(mut self, api_path: &str, query: &str) -> Section {
        let sep = if query.is_empty() { "" } else { "&" };
        self.json = Some(format!("{api_path}?{query}"));
        self.csv = Some(format!("{api_path}?{query}{sep}format=csv"));
        self
    }
}

#[derive(Template)]
#[template(path = "console/insights/page.html")]
struct InsightsPage {
    shell: Shell,
    title: String,
    intro: Vec<String>,
    subnav: Vec<(&'static str, &'static str, bool)>,
    action: &'static str,
    fields: Vec<Field>,
    errors: Vec<String>,
    notices: Vec<String>,
    sections: Vec<Section>,
}

/// What a handler hands to [`render`].
pub(crate) struct PageContent {
    title: String,
    action: &'static str,
    intro: Vec<String>,
    fields: Vec<Field>,
    errors: Vec<String>,
    notices: Vec<String>,
    sections: Vec<Section>,
}

const SUBNAV: [(&str, &str); 6] = [
    ("/console/insights", "Overview"),
    ("/console/insights/versions", "Versions"),
    ("/console/insights/backport", "Backport report"),
    ("/console/insights/metrics", "Metrics"),
    ("/console/insights/vulnerable", "Vulnerable installations"),
    ("/console/insights/licences", "Licences"),
];

fn render(user: &ConsoleUser, content: PageContent) -> HttpResponse {
    let status = if content.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let action = content.action;
    layout::render(
        status,
        &InsightsPage {
            shell: Shell::for_user(user, NavSection::Insights),
            title: content.title,
            intro: content.intro,
            subnav: SUBNAV
                .iter()
                .map(|(href, label)| (*href, *label, *href == action))
                .collect(),
            action,
            fields: content.fields,
            errors: content.errors,
            notices: content.notices,
            sections: content.sections,
        },
    )
}

/// A URL query string from pairs (values percent-encoded).
fn query_of(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
}

/// The installation page's address.
fn installation_href(uuid: &str, hostname: &str) -> String {
    format!(
        "/console/insights/installation?{}",
        query_of(&[("uuid", uuid), ("hostname", hostname)])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Section {
        let rows: Vec<usize> = (0..n).collect();
        Section::new("l", "Hosts", &[("host", false)]).first_rows(&rows, |i| vec![Cell::num(i)])
    }

    #[test]
    fn a_long_list_shows_its_first_rows_and_says_how_many_there_are() {
        let s = list(LIST_ROWS + 50);
        assert_eq!(s.rows.len(), LIST_ROWS);
        assert_eq!(s.rows[LIST_ROWS - 1][0].text, (LIST_ROWS - 1).to_string());
        assert!(s
            .heading
            .contains(&format!("the first {LIST_ROWS} of {}", LIST_ROWS + 50)));
        let short = list(3);
        assert_eq!((short.rows.len(), short.heading.as_str()), (3, "Hosts"));
    }
}
