//! A small SVG layer for the console's charts: stacked bar charts with labelled axes and a
//! legend, every text escaped, every bar a `<rect class="mark">` carrying its value (so a
//! browser test can count drawn marks). No JavaScript, no external assets; a `<title>` per bar
//! gives a tooltip in every browser.

use std::fmt::Write as _;

mod grouped;
pub(crate) use grouped::grouped_svg;

/// Colours with enough contrast on white, distinguishable for common colour blindness
/// (Okabe–Ito palette).
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 60.0;

/// A stacked bar chart: one bar per category, one stacked segment per series.
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    /// Accessible name of the chart.
    pub title: String,
    /// What the x axis shows.
    pub x_label: String,
    /// What the y axis shows.
    pub y_label: String,
    /// Category labels, left to right.
    pub categories: Vec<String>,
    /// `(series name, one value per category)`.
    pub series: Vec<(String, Vec<f64>)>,
}

/// Escapes text for SVG/HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round axis maximum at or above `max` (1, 2 or 5 times a power of ten).
fn nice_max(max: f64) -> f64 {
    // Up to 5 the axis is 0..5, so counts get whole-number ticks.
    if max <= 5.0 || !max.is_finite() {
        return 5.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

/// A number as an axis label: whole numbers without decimals.
fn label(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Every how many categories a label fits: the longest label (about 6.5 px per character
/// at 11 px) plus a gap must fit in the slots it spans.
fn label_every(categories: &[String], slot: f64) -> usize {
    let longest = categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0) as f64;
    (((longest * 6.5 + 10.0).max(60.0) / slot).ceil() as usize).max(1)
}

/// Characters per legend line (the legend column is 120 px wide at 12 px).
const LEGEND_LINE_CHARS: usize = 18;

/// The legend: a swatch per series and its name, wrapped on spaces onto lines of at most
/// [`LEGEND_LINE_CHARS`] characters, so long names stay inside the chart.
fn legend<'a>(svg: &mut String, names: impl Iterator<Item = &'a str>) {
    let mut y = TOP;
    for (s, name) in names.enumerate().take(16) {
        let mut lines: Vec<String> = Vec::new();
        for word in name.split(' ') {
            match lines.last_mut() {
                Some(line)
                    if line.chars().count() + 1 + word.chars().count() <= LEGEND_LINE_CHARS =>
                {
                    line.push(' ');
                    line.push_str(word);
                }
                _ => lines.push(word.to_owned()),
            }
        }
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{y}" width="12" height="12" fill="{fill}"/>"##,
            lx = WIDTH - RIGHT + 12.0,
            fill = PALETTE[s % PALETTE.len()]
        );
        for line in &lines {
            let _ = write!(
                svg,
                r##"<text x="{tx}" y="{ty}" font-size="12" fill="#1f1f1f">{}</text>"##,
                escape(line),
                tx = WIDTH - RIGHT + 30.0,
                ty = y + 10.0,
            );
            y += 14.0;
        }
        y += 4.0;
    }
}

/// The opening `<svg>` with its title, and the y axis's 5 gridlines with their labels up to
/// `max`: the part every chart of this layer starts with.
fn open_with_grid(title: &str, max: f64, plot_w: f64, plot_h: f64) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{title}" class="chart"><title>{title}</title>"#,
        title = escape(title)
    );
    for i in 0..=5 {
        let v = max * f64::from(i) / 5.0;
        let y = TOP + plot_h - plot_h * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="11" fill="#333">{l}</text>"##,
            x2 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            l = label(v)
        );
    }
    svg
}

impl BarChart {
    /// True when there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty() || self.series.iter().all(|(_, v)| v.iter().all(|x| *x == 0.0))
    }

    /// The SVG markup.
    pub fn to_svg(&self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let totals: Vec<f64> = (0..self.categories.len())
            .map(|i| {
                self.series
                    .iter()
                    .map(|(_, v)| v.get(i).copied().unwrap_or(0.0).max(0.0))
                    .sum()
            })
            .collect();
        let max = nice_max(totals.iter().copied().fold(0.0, f64::max));
        let mut svg = open_with_grid(&self.title, max, plot_w, plot_h);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="#333"/><line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/>"##,
            b = TOP + plot_h,
            r = LEFT + plot_w
        );
        let _ = write!(
            svg,
            r##"<text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle" font-size="12" fill="#1f1f1f">{}</text><text x="{cx}" y="{by}" text-anchor="middle" font-size="12" fill="#1f1f1f">{}</text>"##,
            escape(&self.y_label),
            escape(&self.x_label),
            cy = TOP + plot_h / 2.0,
            cx = LEFT + plot_w / 2.0,
            by = TOP + plot_h + 40.0
        );
        let n = self.categories.len().max(1) as f64;
        let slot = plot_w / n;
        let bar_w = (slot * 0.7).max(1.0);
        // label every k-th category so labels never overlap
        let every = label_every(&self.categories, slot);
        for (i, category) in self.categories.iter().enumerate() {
            let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            let mut base = 0.0;
            for (s, (name, values)) in self.series.iter().enumerate() {
                let v = values.get(i).copied().unwrap_or(0.0).max(0.0);
                if v == 0.0 {
                    continue;
                }
                let h = plot_h * v / max;
                let y = TOP + plot_h - plot_h * base / max - h;
                base += v;
                let _ = write!(
                    svg,
                    r#"<rect class="mark" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{fill}" data-value="{value}"><title>{cat} · {series}: {value}</title></rect>"#,
                    fill = PALETTE[s % PALETTE.len()],
                    value = label(v),
                    cat = escape(category),
                    series = escape(name)
                );
            }
            if i % every == 0 {
                let _ = write!(
                    svg,
                    r##"<text x="{cx:.1}" y="{ty}" text-anchor="middle" font-size="11" fill="#333">{}</text>"##,
                    escape(category),
                    cx = x + bar_w / 2.0,
                    ty = TOP + plot_h + 16.0
                );
            }
        }
        legend(&mut svg, self.series.iter().map(|(name, _)| name.as_str()));
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_drawn_stacked_and_escaped() {
        let chart = BarChart {
            title: "<script>".into(),
            x_label: "month".into(),
            y_label: "installations".into(),
            categories: vec!["2026-01".into(), "2026-02".into()],
            series: vec![
                ("Free".into(), vec![3.0, 0.0]),
                ("<b>".into(), vec![1.0, 2.0]),
            ],
        };
        let svg = chart.to_svg();
        assert_eq!(
            svg.matches(r#"class="mark""#).count(),
            3,
            "zero segments are not drawn"
        );
        assert!(!svg.contains("<script>") && !svg.contains("<b>"));
        assert!(svg.contains("&lt;script&gt;") && svg.contains("&lt;b&gt;"));
        assert!(svg.contains(r#"data-value="3""#));
        assert!(!chart.is_empty());
        assert!(BarChart::default().is_empty());
    }

    #[test]
    fn long_legend_names_wrap_and_long_labels_thin_out() {
        let mut svg = String::new();
        legend(
            &mut svg,
            ["version checks only, never pinged", "new"].into_iter(),
        );
        assert!(svg.contains(">version checks<") && svg.contains(">only, never pinged<"));
        assert!(
            svg.contains(r#"y="52""#),
            "the second swatch is below both lines"
        );
        let labels = vec!["2026-12-01 (incomplete)".to_string(); 2];
        assert_eq!(label_every(&labels, 100.0), 2);
        assert_eq!(label_every(&["2026-01".to_string()], 100.0), 1);
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 5.0);
        assert_eq!(nice_max(2.0), 5.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(12.0), 20.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(label(2.0), "2");
        assert_eq!(label(2.5), "2.50");
    }
}
