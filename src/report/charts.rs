//! SVG point charts of a metric by chunk size: one facet per retriever configuration (or any
//! other facet key the caller puts in [`SeriesPoint::retriever_label`]), one colour per model (or
//! series key in [`SeriesPoint::model`]; Okabe-Ito), mean ± 95% CI error bars, shared y axis with
//! nice ticks, legend.

use std::fmt::Write as _;

use super::aggregate::SeriesPoint;
use super::html::esc;
use super::palette::{nice_ticks, series_color, tick_label};
use super::ReportError;
use crate::stats::MeanCi;

/// Total drawing width, SVG units (scaled to the page by `viewBox`).
const WIDTH: f64 = 1200.0;
/// Height of the legend band at the top.
const LEGEND_H: f64 = 34.0;
/// Height of one facet row.
const PANEL_H: f64 = 290.0;
/// Facets per row at most.
const MAX_COLS: usize = 3;
/// Plot margins inside a panel: left (y ticks and title), right, top (facet title), bottom.
const M_LEFT: f64 = 70.0;
const M_RIGHT: f64 = 18.0;
const M_TOP: f64 = 30.0;
const M_BOTTOM: f64 = 48.0;

/// What to draw: the metric picked from each point, its axis title and tooltip format.
pub struct ChartSpec<'a> {
    /// Unique id of the `<svg>` element.
    pub id: &'a str,
    /// Y axis title with unit, e.g. `mean response time (s)`.
    pub y_label: &'a str,
    /// Extend the y axis to 0 (ratio scales such as time).
    pub include_zero: bool,
    /// Range the metric cannot leave, e.g. `(0.0, 1.0)` for hit rates: the y axis and the drawn
    /// error bars are clipped to it (a t-interval of 0/1 data can reach past 1); tooltips keep
    /// the unclipped interval. `None` for unbounded metrics.
    pub clamp: Option<(f64, f64)>,
    /// Picks the metric's mean and CI from a point.
    pub pick: &'a dyn Fn(&SeriesPoint) -> Option<MeanCi>,
    /// Formats a value for tooltips.
    pub format: &'a dyn Fn(f64) -> String,
    /// Text before the facet name in each panel title, e.g. `retriever: ` (may be empty).
    pub facet_title: &'a str,
}

/// Geometry shared by all panels of one chart.
struct Frame {
    models: Vec<String>,
    facets: Vec<String>,
    chunks: Vec<u32>,
    ticks: Vec<f64>,
    panel_w: f64,
}

impl Frame {
    fn y_min(&self) -> f64 {
        self.ticks.first().copied().unwrap_or(0.0)
    }
    fn y_max(&self) -> f64 {
        self.ticks.last().copied().unwrap_or(1.0)
    }
    /// Top-left corner of facet `f`'s panel.
    fn panel_origin(&self, f: usize) -> (f64, f64) {
        let col = f % MAX_COLS;
        let row = f / MAX_COLS;
        (col as f64 * self.panel_w, LEGEND_H + row as f64 * PANEL_H)
    }
    fn plot_w(&self) -> f64 {
        self.panel_w - M_LEFT - M_RIGHT
    }
    fn plot_h(&self) -> f64 {
        PANEL_H - M_TOP - M_BOTTOM
    }
    /// SVG y of value `v` in a panel whose top is `top`.
    fn y(&self, top: f64, v: f64) -> f64 {
        let span = (self.y_max() - self.y_min()).max(f64::MIN_POSITIVE);
        top + M_TOP + self.plot_h() * (1.0 - (v - self.y_min()) / span)
    }
    /// Width of one chunk-size category.
    fn band(&self) -> f64 {
        self.plot_w() / self.chunks.len().max(1) as f64
    }
    /// SVG x of the centre of category `c` in a panel whose left is `left`.
    fn x_centre(&self, left: f64, c: usize) -> f64 {
        left + M_LEFT + self.band() * (c as f64 + 0.5)
    }
    /// SVG x of category `c` for model `m`: models dodge apart around the centre.
    fn x(&self, left: f64, c: usize, m: usize) -> f64 {
        let n = self.models.len().max(1) as f64;
        let dodge = (self.band() * 0.5 / n).min(14.0);
        self.x_centre(left, c) + dodge * (m as f64 - (n - 1.0) / 2.0)
    }
}

/// Renders the chart of `spec` over `points` (see [`super::aggregate::series_points`]).
///
/// Each point with a value is a `<circle class="pt">` preceded by a `<g class="errbar">` (95% CI;
/// zero length when n = 1), both with a `<title>` tooltip giving mean, interval and n. Returns
/// a short note instead of an `<svg>` when no point has a value.
pub fn metric_by_chunk_svg(
    spec: &ChartSpec<'_>,
    points: &[SeriesPoint],
) -> Result<String, ReportError> {
    let valued: Vec<(&SeriesPoint, MeanCi)> = points
        .iter()
        .filter_map(|p| (spec.pick)(p).map(|ci| (p, ci)))
        .collect();
    if valued.is_empty() {
        return Ok(format!(
            r#"<p class="note" id="{}">No values to plot.</p>"#,
            esc(spec.id)
        ));
    }
    let frame = build_frame(spec, &valued);
    let rows = frame.facets.len().div_ceil(MAX_COLS);
    let height = LEGEND_H + rows as f64 * PANEL_H;
    let mut s = String::new();
    write!(
        s,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{y} by chunk size" xmlns="http://www.w3.org/2000/svg">"#,
        id = esc(spec.id),
        y = esc(spec.y_label),
    )?;
    write_legend(&mut s, &frame.models)?;
    for (f, facet) in frame.facets.iter().enumerate() {
        write_panel(&mut s, spec, &frame, f, facet)?;
        let in_facet = valued.iter().filter(|(p, _)| &p.retriever_label == facet);
        write_series(&mut s, spec, &frame, f, in_facet.collect())?;
    }
    s.push_str("</svg>");
    Ok(s)
}

/// Distinct models, facets and chunk sizes (sorted) and the shared y ticks.
fn build_frame(spec: &ChartSpec<'_>, valued: &[(&SeriesPoint, MeanCi)]) -> Frame {
    let mut models: Vec<String> = valued.iter().map(|(p, _)| p.model.clone()).collect();
    models.sort();
    models.dedup();
    let mut facets: Vec<String> = valued
        .iter()
        .map(|(p, _)| p.retriever_label.clone())
        .collect();
    facets.sort();
    facets.dedup();
    let mut chunks: Vec<u32> = valued.iter().map(|(p, _)| p.chunk_size).collect();
    chunks.sort_unstable();
    chunks.dedup();
    let finite = |v: f64| v.is_finite();
    let mut lo = valued
        .iter()
        .map(|(_, c)| c.lo)
        .filter(|v| finite(*v))
        .fold(f64::INFINITY, f64::min);
    let mut hi = valued
        .iter()
        .map(|(_, c)| c.hi)
        .filter(|v| finite(*v))
        .fold(f64::NEG_INFINITY, f64::max);
    if spec.include_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    let mut ticks = nice_ticks(lo, hi, 6);
    if let Some((min, max)) = spec.clamp {
        let eps = 1e-9 * (max - min).abs().max(1.0);
        if ticks.len() > 2 {
            ticks.retain(|t| *t >= min - eps && *t <= max + eps);
        }
        if ticks.len() < 2 {
            ticks = nice_ticks(lo.max(min), hi.min(max), 6);
        }
    }
    let cols = facets.len().clamp(1, MAX_COLS);
    Frame {
        models,
        facets,
        chunks,
        ticks,
        panel_w: WIDTH / cols as f64,
    }
}

/// Legend: one swatch (line + dot) per model, left to right.
fn write_legend(s: &mut String, models: &[String]) -> Result<(), ReportError> {
    s.push_str(r#"<g class="legend">"#);
    let mut x = M_LEFT;
    for (m, model) in models.iter().enumerate() {
        let c = series_color(m);
        write!(
            s,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="16" y2="16" stroke="{c}" stroke-width="2.5"/><circle cx="{:.1}" cy="16" r="4.5" fill="{c}"/><text x="{:.1}" y="20">{}</text>"#,
            x + 24.0,
            x + 12.0,
            x + 30.0,
            esc(model),
        )?;
        x += 30.0 + 7.5 * model.chars().count() as f64 + 28.0;
    }
    s.push_str("</g>");
    Ok(())
}

/// Mean advance of one character of a 13 px semibold facet title, in px (an upper estimate for
/// Latin text in the report's sans-serif fonts).
const TITLE_CHAR_PX: f64 = 7.6;

/// `text` cut to fit `width_px` at [`TITLE_CHAR_PX`] per character, ending in "…" when cut; the
/// whole text when it fits. Cuts on a character boundary, never inside a UTF-8 sequence.
fn fit_text(text: &str, width_px: f64) -> String {
    let max = (width_px / TITLE_CHAR_PX).floor().max(2.0) as usize;
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Panel background, grid, axes, tick labels and titles of facet `f` (a title too long for the
/// panel is cut with "…" and shown whole on hover).
fn write_panel(
    s: &mut String,
    spec: &ChartSpec<'_>,
    fr: &Frame,
    f: usize,
    facet: &str,
) -> Result<(), ReportError> {
    let (left, top) = fr.panel_origin(f);
    let (px, pw, ph) = (left + M_LEFT, fr.plot_w(), fr.plot_h());
    let py = top + M_TOP;
    let title = format!("{}{}", spec.facet_title, facet);
    let shown = fit_text(&title, pw + M_RIGHT);
    write!(
        s,
        r#"<g class="panel"><rect class="plot-bg" x="{px:.1}" y="{py:.1}" width="{pw:.1}" height="{ph:.1}"/><text class="facet-title" x="{:.1}" y="{:.1}" text-anchor="middle">{}{}</text>"#,
        px + pw / 2.0,
        top + 18.0,
        if shown.len() < title.len() {
            format!("<title>{}</title>", esc(&title))
        } else {
            String::new()
        },
        esc(&shown),
    )?;
    let step = if fr.ticks.len() > 1 {
        fr.ticks[1] - fr.ticks[0]
    } else {
        1.0
    };
    for &v in &fr.ticks {
        let y = fr.y(top, v);
        write!(
            s,
            r#"<line class="grid" x1="{px:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            px + pw,
            px - 6.0,
            y + 4.0,
            esc(&tick_label(v, step)),
        )?;
    }
    let base = py + ph;
    for (c, chunk) in fr.chunks.iter().enumerate() {
        let x = fr.x_centre(left, c);
        write!(
            s,
            r#"<line class="axis" x1="{x:.1}" x2="{x:.1}" y1="{base:.1}" y2="{:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{chunk}</text>"#,
            base + 5.0,
            base + 18.0,
        )?;
    }
    write!(
        s,
        r#"<line class="axis" x1="{px:.1}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}"/><line class="axis" x1="{px:.1}" x2="{px:.1}" y1="{py:.1}" y2="{base:.1}"/><text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">chunk size (characters)</text>"#,
        px + pw,
        px + pw / 2.0,
        base + 38.0,
    )?;
    let (tx, ty) = (left + 16.0, py + ph / 2.0);
    write!(
        s,
        r#"<text class="axis-title" x="{tx:.1}" y="{ty:.1}" text-anchor="middle" transform="rotate(-90 {tx:.1} {ty:.1})">{}</text></g>"#,
        esc(spec.y_label),
    )?;
    Ok(())
}

/// Lines, error bars and points of facet `f`, one series per model.
fn write_series(
    s: &mut String,
    spec: &ChartSpec<'_>,
    fr: &Frame,
    f: usize,
    pts: Vec<&(&SeriesPoint, MeanCi)>,
) -> Result<(), ReportError> {
    let (left, top) = fr.panel_origin(f);
    for (m, model) in fr.models.iter().enumerate() {
        let color = series_color(m);
        let mut series: Vec<(usize, &SeriesPoint, MeanCi)> = pts
            .iter()
            .filter(|(p, _)| &p.model == model)
            .filter_map(|(p, ci)| {
                fr.chunks
                    .iter()
                    .position(|c| *c == p.chunk_size)
                    .map(|c| (c, *p, *ci))
            })
            .collect();
        series.sort_by_key(|(c, _, _)| *c);
        if series.is_empty() {
            continue;
        }
        write!(s, r#"<g class="series" data-model="{}">"#, esc(model))?;
        let path: Vec<String> = series
            .iter()
            .map(|(c, _, ci)| format!("{:.1},{:.1}", fr.x(left, *c, m), fr.y(top, ci.mean)))
            .collect();
        write!(
            s,
            r#"<polyline class="line" points="{}" stroke="{color}"/>"#,
            path.join(" ")
        )?;
        for (c, p, ci) in &series {
            write_point(s, spec, fr, (left, top), (*c, m), p, ci, color)?;
        }
        s.push_str("</g>");
    }
    Ok(())
}

/// One error bar (with caps) and its point, both carrying the tooltip.
#[allow(clippy::too_many_arguments)]
fn write_point(
    s: &mut String,
    spec: &ChartSpec<'_>,
    fr: &Frame,
    (left, top): (f64, f64),
    (c, m): (usize, usize),
    p: &SeriesPoint,
    ci: &MeanCi,
    color: &str,
) -> Result<(), ReportError> {
    let x = fr.x(left, c, m);
    let (lo, hi) = match spec.clamp {
        Some((min, max)) => (ci.lo.max(min), ci.hi.min(max)),
        None => (ci.lo, ci.hi),
    };
    let (y_lo, y_hi, y) = (fr.y(top, lo), fr.y(top, hi), fr.y(top, ci.mean));
    let f = spec.format;
    let tip = esc(&format!(
        "{} · {} · chunk {}\nmean {} [95% CI {} – {}], n = {}",
        p.model,
        p.retriever_label,
        p.chunk_size,
        f(ci.mean),
        f(ci.lo),
        f(ci.hi),
        ci.n
    ));
    write!(
        s,
        r#"<g class="errbar" stroke="{color}"><title>{tip}</title><line x1="{x:.1}" x2="{x:.1}" y1="{y_lo:.1}" y2="{y_hi:.1}"/><line x1="{:.1}" x2="{:.1}" y1="{y_lo:.1}" y2="{y_lo:.1}"/><line x1="{:.1}" x2="{:.1}" y1="{y_hi:.1}" y2="{y_hi:.1}"/></g>"#,
        x - 4.0,
        x + 4.0,
        x - 4.0,
        x + 4.0,
    )?;
    write!(
        s,
        r#"<circle class="pt" cx="{x:.1}" cy="{y:.1}" r="4.5" fill="{color}"><title>{tip}</title></circle>"#
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ci_from_moments;

    #[test]
    fn long_facet_titles_are_cut_to_the_panel_with_an_ellipsis() {
        assert_eq!(fit_text("retriever: mmr", 300.0), "retriever: mmr");
        let long = "retriever: seed: ensemble 0.3×bm25 k=5 + 0.7×mmr k=4 fetch_k=3 λ=0.5";
        let cut = fit_text(long, 200.0);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(cut.chars().count(), (200.0 / TITLE_CHAR_PX) as usize);
        assert!(long.starts_with(cut.trim_end_matches('…')));
        // never splits a multi-byte character
        assert_eq!(fit_text("λλλλλλ", 4.5 * TITLE_CHAR_PX), "λλλ…");
    }

    fn point(model: &str, facet: &str, chunk: u32, mean: f64) -> SeriesPoint {
        SeriesPoint {
            model: model.into(),
            retriever_label: facet.into(),
            chunk_size: chunk,
            cosine: ci_from_moments(10, mean, 0.1, 0.95),
            response_time_s: None,
            metrics: Default::default(),
        }
    }

    fn spec<'a>(fmt: &'a dyn Fn(f64) -> String) -> ChartSpec<'a> {
        ChartSpec {
            id: "c",
            y_label: "mean cosine",
            include_zero: false,
            clamp: None,
            pick: &|p| p.cosine,
            format: fmt,
            facet_title: "retriever: ",
        }
    }

    #[test]
    fn one_point_and_errbar_per_valued_point() {
        let fmt = |v: f64| format!("{v:.3}");
        let pts = vec![
            point("a", "dense", 500, 0.5),
            point("a", "dense", 1000, 0.6),
            point("b", "dense", 500, 0.4),
            point("b", "bm25", 500, 0.45),
            SeriesPoint {
                cosine: None,
                ..point("b", "bm25", 1000, 0.0)
            },
        ];
        let svg = metric_by_chunk_svg(&spec(&fmt), &pts).unwrap();
        assert_eq!(svg.matches(r#"<circle class="pt""#).count(), 4);
        assert_eq!(svg.matches(r#"<g class="errbar""#).count(), 4);
        assert_eq!(svg.matches(r#"<g class="panel""#).count(), 2);
        assert!(svg.contains(">chunk size (characters)<"));
        // Both models get distinct colours.
        assert!(svg.contains(series_color(0)) && svg.contains(series_color(1)));
    }

    #[test]
    fn higher_mean_is_drawn_higher() {
        let fmt = |v: f64| format!("{v:.3}");
        let pts = [
            point("a", "dense", 500, 0.2),
            point("a", "dense", 1000, 0.8),
        ];
        let s = spec(&fmt);
        let valued: Vec<(&SeriesPoint, MeanCi)> =
            pts.iter().map(|p| (p, p.cosine.unwrap())).collect();
        let fr = build_frame(&s, &valued);
        assert!(fr.y(0.0, 0.8) < fr.y(0.0, 0.2));
        assert!(fr.y_min() <= valued[0].1.lo && fr.y_max() >= valued[1].1.hi);
        assert!(fr.x(0.0, 1, 0) > fr.x(0.0, 0, 0));
    }

    #[test]
    fn clamp_limits_axis_and_bars() {
        let fmt = |v: f64| format!("{v:.3}");
        // Means near 1 with wide intervals: the t-interval reaches past 1.
        let pts = vec![
            point("a", "dense", 500, 0.95),
            point("a", "dense", 1000, 0.9),
        ];
        let mut s = spec(&fmt);
        s.clamp = Some((0.0, 1.0));
        let valued: Vec<(&SeriesPoint, MeanCi)> =
            pts.iter().map(|p| (p, p.cosine.unwrap())).collect();
        assert!(valued[0].1.hi > 1.0);
        let fr = build_frame(&s, &valued);
        assert!(fr.y_max() <= 1.0 + 1e-12, "{:?}", fr.ticks);
        let svg = metric_by_chunk_svg(&s, &pts).unwrap();
        // No error bar end above the top of the plot (y of 1.0).
        let top = fr.y(LEGEND_H, 1.0);
        for part in svg.split(r#"y1=""#).skip(1) {
            let v: f64 = part[..part.find('"').unwrap()].parse().unwrap();
            assert!(v >= top - 0.05 || v < LEGEND_H + M_TOP, "{v} above {top}");
        }
    }

    #[test]
    fn empty_chart_is_a_note() {
        let fmt = |v: f64| format!("{v}");
        let svg = metric_by_chunk_svg(&spec(&fmt), &[]).unwrap();
        assert!(svg.contains("No values"));
    }
}
