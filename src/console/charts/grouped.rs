//! Grouped (side-by-side) bars, for values that must not be stacked, such as ratios per
//! group (seat utilisation per tier). Same axes, legend, escaping and `rect.mark` bars as the
//! stacked [`super::BarChart`].

use std::fmt::Write as _;

use super::{
    escape, label, label_every, legend, nice_max, open_with_grid, BarChart, BOTTOM, HEIGHT, LEFT,
    PALETTE, RIGHT, TOP, WIDTH,
};

/// The SVG of `chart` with the series of each category side by side instead of stacked.
pub(crate) fn grouped_svg(chart: &BarChart) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let top = chart
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max);
    let max = nice_max(top);
    let mut svg = open_with_grid(&chart.title, max, plot_w, plot_h);
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{b}" stroke="#333"/><line x1="{LEFT}" x2="{r}" y1="{b}" y2="{b}" stroke="#333"/><text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle" font-size="12" fill="#1f1f1f">{y}</text><text x="{cx}" y="{by}" text-anchor="middle" font-size="12" fill="#1f1f1f">{x}</text>"##,
        b = TOP + plot_h,
        r = LEFT + plot_w,
        cy = TOP + plot_h / 2.0,
        cx = LEFT + plot_w / 2.0,
        by = TOP + plot_h + 40.0,
        y = escape(&chart.y_label),
        x = escape(&chart.x_label),
    );
    let n = chart.categories.len().max(1) as f64;
    let slot = plot_w / n;
    let groups = chart.series.len().max(1) as f64;
    let bar_w = (slot * 0.8 / groups).max(1.0);
    let every = label_every(&chart.categories, slot);
    for (i, category) in chart.categories.iter().enumerate() {
        let x0 = LEFT + slot * i as f64 + slot * 0.1;
        for (s, (name, values)) in chart.series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0).max(0.0);
            if v == 0.0 {
                continue;
            }
            let h = plot_h * v / max;
            let _ = write!(
                svg,
                r#"<rect class="mark" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{fill}" data-value="{value}"><title>{cat} · {series}: {value}</title></rect>"#,
                x = x0 + bar_w * s as f64,
                y = TOP + plot_h - h,
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
                cx = LEFT + slot * i as f64 + slot / 2.0,
                ty = TOP + plot_h + 16.0
            );
        }
    }
    legend(&mut svg, chart.series.iter().map(|(name, _)| name.as_str()));
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_stand_side_by_side_and_are_escaped() {
        let chart = BarChart {
            title: "utilisation".into(),
            x_label: "month".into(),
            y_label: "% of seats".into(),
            categories: vec!["2026-01".into()],
            series: vec![("<b>".into(), vec![50.0]), ("Premium".into(), vec![120.0])],
        };
        let svg = grouped_svg(&chart);
        assert_eq!(svg.matches(r#"class="mark""#).count(), 2);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        // both bars stand on the axis (y + height = 240): not stacked on each other
        assert!(svg.contains(r#"y="185.0" width"#) && svg.contains(r#"height="55.0""#));
        assert!(svg.contains(r#"data-value="120""#));
    }
}
