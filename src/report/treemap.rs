//! Squarified treemaps: the layout algorithm of Bruls, Huizing & van Wijk, "Squarified Treemaps"
//! (Data Visualization 2000), and a two-level (group → leaf) SVG rendering coloured with viridis.

use std::fmt::Write as _;

use super::html::esc;
use super::palette::{dark_text_on, nice_ticks, tick_label, viridis, viridis_stops};
use super::ReportError;

/// Axis-aligned rectangle in SVG user units (y grows downwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width (≥ 0).
    pub w: f64,
    /// Height (≥ 0).
    pub h: f64,
}

impl Rect {
    /// Width × height.
    pub fn area(&self) -> f64 {
        self.w * self.h
    }

    /// The rectangle shrunk by `left`, `top`, `right`, `bottom` (never below zero size).
    pub fn inset(&self, left: f64, top: f64, right: f64, bottom: f64) -> Rect {
        Rect {
            x: self.x + left,
            y: self.y + top,
            w: (self.w - left - right).max(0.0),
            h: (self.h - top - bottom).max(0.0),
        }
    }
}

/// Squarified treemap layout of `values` inside `bounds`.
///
/// Returns one rectangle per value, in input order; together they tile `bounds` without overlap
/// and each area is `value / sum(values) × bounds.area()`. Values that are ≤ 0 or not finite get
/// an empty rectangle at the origin of `bounds`. Algorithm (Bruls et al. 2000): take values in
/// decreasing order, add each to the current row along the shorter side of the free space while
/// that does not worsen the row's worst aspect ratio, otherwise fix the row and start a new one.
pub fn squarify(values: &[f64], bounds: Rect) -> Vec<Rect> {
    let empty = Rect {
        w: 0.0,
        h: 0.0,
        ..bounds
    };
    let mut out = vec![empty; values.len()];
    let valid = |v: f64| v.is_finite() && v > 0.0;
    let total: f64 = values.iter().copied().filter(|v| valid(*v)).sum();
    if total <= 0.0 || bounds.area() <= 0.0 {
        return out;
    }
    let scale = bounds.area() / total;
    let areas: Vec<f64> = values
        .iter()
        .map(|&v| if valid(v) { v * scale } else { 0.0 })
        .collect();
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| areas[i] > 0.0).collect();
    order.sort_by(|&a, &b| areas[b].total_cmp(&areas[a]).then(a.cmp(&b)));

    let mut free = bounds;
    let mut start = 0;
    while start < order.len() {
        let end = row_end(&order, &areas, start, free.w.min(free.h));
        let last_row = end == order.len();
        layout_row(&order[start..end], &areas, &mut free, last_row, &mut out);
        start = end;
    }
    out
}

/// End (exclusive) of the row that starts at `order[start]`: items are added while the worst
/// aspect ratio does not get worse.
fn row_end(order: &[usize], areas: &[f64], start: usize, side: f64) -> usize {
    let largest = areas[order[start]];
    let mut sum = largest;
    let mut best = worst_ratio(largest, largest, sum, side);
    let mut end = start + 1;
    while end < order.len() {
        let next = areas[order[end]];
        let ratio = worst_ratio(largest, next, sum + next, side);
        if ratio > best {
            break;
        }
        best = ratio;
        sum += next;
        end += 1;
    }
    end
}

/// Worst aspect ratio of a row of total area `sum` laid along a side of length `side`, whose
/// largest and smallest areas are `max` and `min`: max(side²·max/sum², sum²/(side²·min)).
fn worst_ratio(max: f64, min: f64, sum: f64, side: f64) -> f64 {
    let s2 = side * side;
    let sum2 = sum * sum;
    (s2 * max / sum2).max(sum2 / (s2 * min))
}

/// Places one row along the shorter side of `free` and removes the row's strip from `free`.
/// The last item of a row, and the last row, absorb rounding so the tiling has no gaps.
fn layout_row(row: &[usize], areas: &[f64], free: &mut Rect, last_row: bool, out: &mut [Rect]) {
    let sum: f64 = row.iter().map(|&i| areas[i]).sum();
    if free.w >= free.h {
        // Vertical strip on the left; items stacked top to bottom.
        let thick = if last_row {
            free.w
        } else {
            (sum / free.h).min(free.w)
        };
        let mut y = free.y;
        for (k, &i) in row.iter().enumerate() {
            let h = if k + 1 == row.len() {
                free.y + free.h - y
            } else {
                areas[i] / thick
            };
            out[i] = Rect {
                x: free.x,
                y,
                w: thick,
                h: h.max(0.0),
            };
            y += h;
        }
        free.x += thick;
        free.w = (free.w - thick).max(0.0);
    } else {
        // Horizontal strip on top; items left to right.
        let thick = if last_row {
            free.h
        } else {
            (sum / free.w).min(free.h)
        };
        let mut x = free.x;
        for (k, &i) in row.iter().enumerate() {
            let w = if k + 1 == row.len() {
                free.x + free.w - x
            } else {
                areas[i] / thick
            };
            out[i] = Rect {
                x,
                y: free.y,
                w: w.max(0.0),
                h: thick,
            };
            x += w;
        }
        free.y += thick;
        free.h = (free.h - thick).max(0.0);
    }
}

/// One leaf of a two-level treemap.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Short label drawn inside the rectangle when it fits (e.g. question id).
    pub label: String,
    /// Tooltip text (`<title>`), plain text; escaped on output.
    pub tooltip: String,
    /// Metric value: both the area (clamped at 0) and the colour.
    pub value: f64,
}

/// A top-level group (e.g. a model) with its leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Group name drawn in its header band.
    pub label: String,
    /// Leaves; those with a non-positive value get no area.
    pub leaves: Vec<Leaf>,
}

/// Presentation of one treemap.
pub struct TreemapSpec<'a> {
    /// Unique id of the `<svg>` element (also prefixes its gradient id).
    pub id: &'a str,
    /// Legend caption, e.g. `mean cosine similarity`.
    pub metric: &'a str,
    /// Formats a value for labels and tooltips (with its unit).
    pub format: &'a dyn Fn(f64) -> String,
    /// Drawing width and height of the tiles, SVG units (the legend adds 56 below).
    pub width: f64,
    /// See `width`.
    pub height: f64,
    /// Colour scale from 0 (instead of from the smallest value) to the largest value: for
    /// quantities read as ratios, such as memory, where a min-to-max scale would paint a 2%
    /// difference as the full range of colours.
    pub zero_based: bool,
}

/// Header band height of a group, SVG units.
const GROUP_HEADER: f64 = 20.0;
/// Padding around a group's leaves.
const GROUP_PAD: f64 = 2.0;
/// Legend band below the tiles.
const LEGEND_H: f64 = 56.0;

/// Renders `groups` as a two-level squarified treemap: groups sized by the sum of their leaf
/// values, leaves sized by value inside, leaves coloured by value on the viridis scale with a
/// legend. Each leaf is a `<rect class="tm-leaf">` with a `<title>` tooltip.
pub fn treemap_svg(spec: &TreemapSpec<'_>, groups: &[Group]) -> Result<String, ReportError> {
    let (mut min, max) = value_range(groups);
    if spec.zero_based {
        min = min.min(0.0);
    }
    let norm = |v: f64| {
        if max > min {
            (v - min) / (max - min)
        } else {
            0.5
        }
    };
    let bounds = Rect {
        x: 0.0,
        y: 0.0,
        w: spec.width,
        h: spec.height,
    };
    let totals: Vec<f64> = groups
        .iter()
        .map(|g| g.leaves.iter().map(|l| l.value.max(0.0)).sum())
        .collect();
    let group_rects = squarify(&totals, bounds);

    let mut s = String::new();
    write!(
        s,
        r#"<svg id="{id}" class="treemap" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="treemap of {m}" xmlns="http://www.w3.org/2000/svg">"#,
        id = esc(spec.id),
        w = spec.width,
        h = spec.height + LEGEND_H,
        m = esc(spec.metric),
    )?;
    for (group, rect) in groups.iter().zip(&group_rects) {
        if rect.area() <= 0.0 {
            continue;
        }
        write_group(&mut s, spec, group, rect, &norm)?;
    }
    write_legend(&mut s, spec, min, max)?;
    s.push_str("</svg>");
    Ok(s)
}

/// Smallest and largest finite leaf value (0, 0 when there is none).
fn value_range(groups: &[Group]) -> (f64, f64) {
    let values = groups
        .iter()
        .flat_map(|g| g.leaves.iter().map(|l| l.value))
        .filter(|v| v.is_finite());
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if min.is_finite() {
        (min, max)
    } else {
        (0.0, 0.0)
    }
}

/// One group: outline, header label, then its leaves.
fn write_group(
    s: &mut String,
    spec: &TreemapSpec<'_>,
    group: &Group,
    rect: &Rect,
    norm: &dyn Fn(f64) -> f64,
) -> Result<(), ReportError> {
    let values: Vec<f64> = group.leaves.iter().map(|l| l.value).collect();
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    write!(
        s,
        r##"<g class="tm-group"><rect x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="#2b2b2b"><title>{t}</title></rect>"##,
        x = rect.x,
        y = rect.y,
        w = rect.w,
        h = rect.h,
        t = esc(&format!(
            "{}: {} leaves, mean {}",
            group.label,
            group.leaves.len(),
            (spec.format)(mean)
        )),
    )?;
    let header = format!("{} · mean {}", group.label, (spec.format)(mean));
    let text = fit_text(&header, rect.w - 8.0, 7.0);
    if !text.is_empty() {
        write!(
            s,
            r#"<text class="tm-head" x="{x:.2}" y="{y:.2}">{t}</text>"#,
            x = rect.x + 5.0,
            y = rect.y + 14.0,
            t = esc(&text),
        )?;
    }
    let inner = rect.inset(GROUP_PAD, GROUP_HEADER, GROUP_PAD, GROUP_PAD);
    for (leaf, r) in group.leaves.iter().zip(squarify(&values, inner)) {
        if r.area() > 0.0 {
            write_leaf(s, spec, leaf, &r, norm(leaf.value))?;
        }
    }
    s.push_str("</g>");
    Ok(())
}

/// One leaf rectangle with tooltip and, when it fits, its label and value.
fn write_leaf(
    s: &mut String,
    spec: &TreemapSpec<'_>,
    leaf: &Leaf,
    r: &Rect,
    t: f64,
) -> Result<(), ReportError> {
    write!(
        s,
        r#"<rect class="tm-leaf" x="{x:.2}" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{c}"><title>{tip}</title></rect>"#,
        x = r.x,
        y = r.y,
        w = r.w,
        h = r.h,
        c = viridis(t),
        tip = esc(&leaf.tooltip),
    )?;
    if r.h < 13.0 {
        return Ok(());
    }
    let cls = if dark_text_on(t) {
        "tm-label dark"
    } else {
        "tm-label"
    };
    let label = fit_text(&leaf.label, r.w - 6.0, 6.2);
    if label.is_empty() {
        return Ok(());
    }
    write!(
        s,
        r#"<text class="{cls}" x="{:.2}" y="{:.2}">{}"#,
        r.x + 3.0,
        r.y + 12.0,
        esc(&label)
    )?;
    let value = (spec.format)(leaf.value);
    if r.h >= 27.0 && fit_text(&value, r.w - 6.0, 6.2) == value {
        write!(
            s,
            r#"<tspan x="{:.2}" dy="13">{}</tspan>"#,
            r.x + 3.0,
            esc(&value)
        )?;
    }
    s.push_str("</text>");
    Ok(())
}

/// `text` if it fits in `width` at `char_w` units per character, else a shortened version ending
/// in `…`, or empty when not even 3 characters fit.
fn fit_text(text: &str, width: f64, char_w: f64) -> String {
    let fits = (width / char_w).floor().max(0.0) as usize;
    let n = text.chars().count();
    if n <= fits {
        text.to_string()
    } else if fits >= 4 {
        let mut t: String = text.chars().take(fits - 1).collect();
        t.push('…');
        t
    } else {
        String::new()
    }
}

/// Colour legend: a viridis gradient bar from `min` to `max` with nice ticks and the metric name.
fn write_legend(
    s: &mut String,
    spec: &TreemapSpec<'_>,
    min: f64,
    max: f64,
) -> Result<(), ReportError> {
    let grad = format!("{}-grad", spec.id);
    let bar_w = (spec.width * 0.4).min(420.0);
    let x0 = spec.width - bar_w - 10.0;
    let y0 = spec.height + 12.0;
    write!(s, r#"<defs><linearGradient id="{}">"#, esc(&grad))?;
    let stops = viridis_stops();
    for (k, stop) in stops.iter().enumerate() {
        let off = 100.0 * k as f64 / (stops.len() - 1) as f64;
        write!(s, r#"<stop offset="{off:.1}%" stop-color="{stop}"/>"#)?;
    }
    s.push_str("</linearGradient></defs>");
    write!(
        s,
        r#"<text class="legend-title" x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"#,
        x0 - 10.0,
        y0 + 11.0,
        esc(spec.metric),
    )?;
    write!(
        s,
        r#"<rect class="legend-bar" x="{x0:.2}" y="{y0:.2}" width="{bar_w:.2}" height="14" fill="url(#{g})"/>"#,
        g = esc(&grad),
    )?;
    if max <= min {
        write!(
            s,
            r#"<text class="tick" x="{:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
            x0 + bar_w / 2.0,
            y0 + 30.0,
            esc(&(spec.format)(min)),
        )?;
        return Ok(());
    }
    let ticks = nice_ticks(min, max, 5);
    let step = if ticks.len() > 1 {
        ticks[1] - ticks[0]
    } else {
        1.0
    };
    for v in ticks
        .into_iter()
        .filter(|v| *v >= min - 1e-12 && *v <= max + 1e-12)
    {
        let x = x0 + bar_w * (v - min) / (max - min);
        write!(
            s,
            r#"<line class="tick-mark" x1="{x:.2}" x2="{x:.2}" y1="{:.2}" y2="{:.2}"/><text class="tick" x="{x:.2}" y="{:.2}" text-anchor="middle">{}</text>"#,
            y0 + 14.0,
            y0 + 19.0,
            y0 + 31.0,
            esc(&tick_label(v, step)),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-9;

    fn overlap(a: &Rect, b: &Rect) -> f64 {
        let w = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
        let h = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
        w.max(0.0) * h.max(0.0)
    }

    fn check_tiling(values: &[f64], bounds: Rect) -> Vec<Rect> {
        let rects = squarify(values, bounds);
        assert_eq!(rects.len(), values.len());
        let total: f64 = values.iter().filter(|v| **v > 0.0).sum();
        for (v, r) in values.iter().zip(&rects) {
            let want = v.max(0.0) / total * bounds.area();
            assert!(
                (r.area() - want).abs() < EPS * bounds.area(),
                "value {v}: area {} vs {want}",
                r.area()
            );
            // Inside the parent.
            assert!(r.x >= bounds.x - EPS && r.y >= bounds.y - EPS);
            assert!(
                r.x + r.w <= bounds.x + bounds.w + EPS && r.y + r.h <= bounds.y + bounds.h + EPS
            );
        }
        for i in 0..rects.len() {
            for j in i + 1..rects.len() {
                assert!(
                    overlap(&rects[i], &rects[j]) < EPS,
                    "{:?} overlaps {:?}",
                    rects[i],
                    rects[j]
                );
            }
        }
        // Disjoint pieces inside the parent whose areas sum to the parent's: a tiling.
        let sum: f64 = rects.iter().map(Rect::area).sum();
        assert!((sum - bounds.area()).abs() < EPS * bounds.area());
        rects
    }

    #[test]
    fn paper_example_tiles_and_is_proportional() {
        // The example of Bruls et al. (2000): 6, 6, 4, 3, 2, 2, 1 in a 6 × 4 rectangle.
        let bounds = Rect {
            x: 0.0,
            y: 0.0,
            w: 6.0,
            h: 4.0,
        };
        let rects = check_tiling(&[6.0, 6.0, 4.0, 3.0, 2.0, 2.0, 1.0], bounds);
        // First row: the two 6s stacked in a 3 × 4 column on the left (as in the paper's figure).
        assert!((rects[0].w - 3.0).abs() < EPS && (rects[0].h - 2.0).abs() < EPS);
        assert!((rects[1].x - 0.0).abs() < EPS && (rects[1].y - 2.0).abs() < EPS);
    }

    #[test]
    fn random_inputs_tile_without_overlap() {
        // Deterministic LCG so the test needs no RNG crate.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for n in [1, 2, 3, 10, 37] {
            let values: Vec<f64> = (0..n).map(|_| 0.01 + 10.0 * next() * next()).collect();
            let bounds = Rect {
                x: 5.0,
                y: 7.0,
                w: 300.0 + 500.0 * next(),
                h: 100.0 + 300.0 * next(),
            };
            check_tiling(&values, bounds);
        }
    }

    #[test]
    fn squarified_rects_are_not_slivers() {
        let values = vec![1.0; 16];
        let rects = squarify(
            &values,
            Rect {
                x: 0.0,
                y: 0.0,
                w: 400.0,
                h: 400.0,
            },
        );
        for r in rects {
            let ratio = (r.w / r.h).max(r.h / r.w);
            assert!(ratio < 2.0, "aspect {ratio} for {r:?}");
        }
    }

    #[test]
    fn non_positive_values_get_empty_rects() {
        let bounds = Rect {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let rects = squarify(&[3.0, 0.0, -1.0, f64::NAN, 1.0], bounds);
        assert_eq!(rects[1].area(), 0.0);
        assert_eq!(rects[2].area(), 0.0);
        assert_eq!(rects[3].area(), 0.0);
        assert!((rects[0].area() - 75.0).abs() < EPS && (rects[4].area() - 25.0).abs() < EPS);
        assert!(squarify(&[0.0, 0.0], bounds)
            .iter()
            .all(|r| r.area() == 0.0));
        assert!(squarify(&[], bounds).is_empty());
    }

    #[test]
    fn svg_has_one_rect_per_positive_leaf_and_escapes() {
        let leaf = |label: &str, value: f64| Leaf {
            label: label.into(),
            tooltip: format!("<{label}> & co"),
            value,
        };
        let groups = vec![
            Group {
                label: "m<1>".into(),
                leaves: vec![leaf("q1", 0.5), leaf("q2", 0.25), leaf("q3", 0.0)],
            },
            Group {
                label: "m2".into(),
                leaves: vec![leaf("q1", 0.75)],
            },
        ];
        let fmt = |v: f64| format!("{v:.2}");
        let spec = TreemapSpec {
            id: "tm",
            metric: "cosine",
            format: &fmt,
            width: 600.0,
            height: 300.0,
            zero_based: false,
        };
        let svg = treemap_svg(&spec, &groups).unwrap();
        assert_eq!(svg.matches(r#"class="tm-leaf""#).count(), 3);
        assert_eq!(svg.matches(r#"class="tm-group""#).count(), 2);
        assert!(svg.contains("&lt;q1&gt; &amp; co"));
        assert!(!svg.contains("<q1>") && !svg.contains("m<1>"));
    }

    #[test]
    fn zero_based_scale_keeps_close_values_close_in_colour() {
        // 560 and 572 MiB: min-to-max paints them at the two ends of the scale; from 0 they get
        // nearly the same colour
        let leaf = |label: &str, value: f64| Leaf {
            label: label.into(),
            tooltip: label.into(),
            value,
        };
        let groups = vec![Group {
            label: "m".into(),
            leaves: vec![leaf("q1", 572.0), leaf("q2", 560.0)],
        }];
        let fmt = |v: f64| format!("{v:.0}");
        let fills = |zero_based| {
            let spec = TreemapSpec {
                id: "tm",
                metric: "MiB",
                format: &fmt,
                width: 600.0,
                height: 300.0,
                zero_based,
            };
            let svg = treemap_svg(&spec, &groups).unwrap();
            svg.match_indices(r#"class="tm-leaf""#)
                .map(|(i, _)| {
                    let rest = &svg[i..];
                    let f = rest.find("fill=\"").unwrap() + 6;
                    rest[f..f + 7].to_string()
                })
                .collect::<Vec<_>>()
        };
        let spread = fills(false);
        assert_eq!(spread, [viridis(1.0), viridis(0.0)]);
        let zero = fills(true);
        assert_eq!(zero, [viridis(1.0), viridis(560.0 / 572.0)]);
    }

    #[test]
    fn fit_text_truncates() {
        assert_eq!(fit_text("hello", 100.0, 6.0), "hello");
        assert_eq!(fit_text("hello world", 36.0, 6.0), "hello…");
        assert_eq!(fit_text("hello", 12.0, 6.0), "");
    }
}
