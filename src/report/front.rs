//! The trade-off front: which cells are worth choosing when quality, response time and memory
//! all count, and the one sentence that states the trade-off the way the studies do ("Gemma
//! answers 8/10 correctly, TinyLlama 5/10, at 16% more memory and 1.5x the latency").
//!
//! A cell is on the front (Pareto-optimal) when no other cell is at least as good on quality
//! (the ranking metric's mean), mean response time and peak RSS, and strictly better on one
//! (means; a dimension a cell lacks, e.g. RSS of a retrieval-only sweep, is left out of that
//! comparison). A cell off the front whose quality a two-sided paired t-test (on the questions
//! both have, repeats averaged per question, [`crate::stats::paired::paired_t_test`], unadjusted, so
//! it errs towards calling cells different) cannot tell from a front cell's at
//! [`FRONT_ALPHA`] is *tied* with it: not worse in quality as far as the data show, only slower
//! or heavier. [`front_svg`] draws quality against response time (95% intervals as bars, marker
//! area by peak RSS, front cells outlined); [`trade_off_sentence`] and [`front_text`] say it in
//! words for the report and the terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::html::esc;
use super::palette::{nice_ticks, tick_label};
use super::ranking::{fmt_p, lower_is_better, metric_value, RankedCell};
use super::{CellSummary, ReportError};
use crate::stats::paired::paired_t_test;
use crate::stats::MeanCi;
use crate::store::AnswerRecord;

/// Significance level of "tied": a paired p-value at or above it is a tie.
pub const FRONT_ALPHA: f64 = 0.05;

/// A front cell another cell is statistically tied with on quality.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tie {
    /// The front cell's id.
    pub cell_id: String,
    /// Its label.
    pub label: String,
    /// Two-sided paired t-test p-value of the quality difference (unadjusted).
    pub p_value: f64,
    /// Number of questions compared (each the mean over its repeats).
    pub n: usize,
}

/// One cell on the quality / time / memory plane.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrontCell {
    /// The cell's id.
    pub cell_id: String,
    /// Its label (as in the ranking).
    pub label: String,
    /// Its rank on the quality metric (1 = best).
    pub rank: usize,
    /// Quality: mean of the ranking metric with its 95% interval, over `ok` answers.
    pub quality: MeanCi,
    /// `(k, n)`: answers with value 1 and answers valued, for a metric whose values are 0/1
    /// verdicts (correctness, hit@k, contains, EM: those with a Wilson interval): the studies'
    /// "k of n correct".
    pub correct: Option<(usize, usize)>,
    /// Mean response time with its 95% interval, seconds (answers decoded alone).
    pub response_time_s: Option<MeanCi>,
    /// Peak RSS of the cell's worker over its answers, bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Whether no other cell dominates it.
    pub on_front: bool,
    /// For a cell off the front: the first front cell (by rank) it is statistically tied with.
    pub tied_with: Option<Tie>,
}

/// The cells of a report on the quality / time / memory plane, in ranking order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Front {
    /// The quality metric (the report's ranking metric).
    pub metric: String,
    /// Whether lower values of `metric` are better.
    pub lower_is_better: bool,
    /// Every ranked cell.
    pub cells: Vec<FrontCell>,
}

impl Front {
    /// The cells on the front, best quality first.
    pub fn front_cells(&self) -> impl Iterator<Item = &FrontCell> {
        self.cells.iter().filter(|c| c.on_front)
    }
}

/// Builds the front from a ranking on `metric` (`ranked`, best first), the cells' summaries
/// (response time and peak RSS, matched by cell id) and the answers (paired values for ties,
/// and whether `metric` is a 0/1 verdict). Cells without a quality interval are left out.
pub fn build_front(
    metric: &str,
    ranked: &[RankedCell],
    cells: &[CellSummary],
    answers: &[AnswerRecord],
) -> Front {
    let by_id: BTreeMap<&str, &CellSummary> =
        cells.iter().map(|c| (c.axes.cell_id.as_str(), c)).collect();
    let values = paired_values(answers, metric);
    let lower = lower_is_better(metric);
    // counted as "k of n" only for a metric that is a 0/1 verdict by definition, never because
    // a few cosines happen to be exactly 1
    let verdicts = matches!(
        crate::score::metric::Metric::parse(metric).interval_method(),
        crate::stats::bounded::IntervalMethod::Wilson
    );
    let mut out: Vec<FrontCell> = ranked
        .iter()
        .filter_map(|r| {
            let quality = r.ci?;
            let summary = by_id.get(r.cell_id.as_str());
            Some(FrontCell {
                cell_id: r.cell_id.clone(),
                label: r.label.clone(),
                rank: r.rank,
                quality,
                correct: values
                    .get(r.cell_id.as_str())
                    .filter(|_| verdicts)
                    .and_then(verdict_count),
                response_time_s: summary.and_then(|s| s.response_time_s),
                rss_peak_bytes: summary.and_then(|s| s.rss_peak_bytes),
                on_front: false,
                tied_with: None,
            })
        })
        .collect();
    let dominated: Vec<bool> = (0..out.len())
        .map(|i| (0..out.len()).any(|j| j != i && dominates(&out[j], &out[i], lower)))
        .collect();
    for (c, d) in out.iter_mut().zip(&dominated) {
        c.on_front = !d;
    }
    let front: Vec<(String, String)> = out
        .iter()
        .filter(|c| c.on_front)
        .map(|c| (c.cell_id.clone(), c.label.clone()))
        .collect();
    for c in out.iter_mut().filter(|c| !c.on_front) {
        c.tied_with = front.iter().find_map(|(id, label)| {
            let t = pair_test(&values, &c.cell_id, id)?;
            (t.1 >= FRONT_ALPHA).then(|| Tie {
                cell_id: id.clone(),
                label: label.clone(),
                p_value: t.1,
                n: t.0,
            })
        });
    }
    Front {
        metric: metric.to_string(),
        lower_is_better: lower,
        cells: out,
    }
}

/// Values of `metric` per cell id, keyed by (question id, repeat).
type CellValues<'a> = BTreeMap<&'a str, BTreeMap<(&'a str, u32), f64>>;

fn paired_values<'a>(answers: &'a [AnswerRecord], metric: &str) -> CellValues<'a> {
    let mut out: CellValues<'a> = BTreeMap::new();
    for a in answers {
        if let Some(v) = metric_value(a, metric) {
            out.entry(a.cell.cell_id.as_str())
                .or_default()
                .entry((a.question_id.as_str(), a.repeat))
                .or_insert(v);
        }
    }
    out
}

/// `(k, n)` when every value is exactly 0 or 1.
fn verdict_count(values: &BTreeMap<(&str, u32), f64>) -> Option<(usize, usize)> {
    if values.is_empty() || values.values().any(|v| *v != 0.0 && *v != 1.0) {
        return None;
    }
    Some((values.values().filter(|v| **v == 1.0).count(), values.len()))
}

/// `(questions, two-sided p)` of the paired t-test of cells `a` and `b` on the question means
/// (over repeats) of the questions both have; `None` below 2.
fn pair_test(values: &CellValues<'_>, a: &str, b: &str) -> Option<(usize, f64)> {
    fn means<'v>(v: &BTreeMap<(&'v str, u32), f64>) -> BTreeMap<&'v str, f64> {
        super::ranking::question_means(v.iter().map(|((q, _), x)| (*q, *x)))
    }
    let (va, vb) = (means(values.get(a)?), means(values.get(b)?));
    let keys: Vec<_> = va.keys().filter(|k| vb.contains_key(*k)).collect();
    let xs: Vec<f64> = keys.iter().map(|k| va[*k]).collect();
    let ys: Vec<f64> = keys.iter().map(|k| vb[*k]).collect();
    let t = paired_t_test(&xs, &ys, 0.95).ok()?;
    Some((t.n, t.p_value))
}

/// Whether `a` dominates `b`: at least as good on every dimension both have (quality, mean
/// response time, peak RSS), strictly better on one.
pub fn dominates(a: &FrontCell, b: &FrontCell, lower_quality_better: bool) -> bool {
    let q = if lower_quality_better {
        b.quality.mean.partial_cmp(&a.quality.mean)
    } else {
        a.quality.mean.partial_cmp(&b.quality.mean)
    };
    let t = match (a.response_time_s, b.response_time_s) {
        (Some(x), Some(y)) => y.mean.partial_cmp(&x.mean),
        _ => Some(std::cmp::Ordering::Equal),
    };
    let m = match (a.rss_peak_bytes, b.rss_peak_bytes) {
        (Some(x), Some(y)) => Some(y.cmp(&x)),
        _ => Some(std::cmp::Ordering::Equal),
    };
    let dims = [q, t, m];
    dims.iter().all(|d| matches!(d, Some(o) if o.is_ge()))
        && dims.iter().any(|d| matches!(d, Some(o) if o.is_gt()))
}

/// `369 MiB`, `1.9 GiB`.
pub fn fmt_bytes(b: u64) -> String {
    let mib = b as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

/// The cell's quality in words: "answers 24/39 correctly" for a 0/1 metric, else "has mean
/// cosine 0.64".
fn quality_words(c: &FrontCell, metric: &str, metric_title: &str) -> String {
    match c.correct {
        Some((k, n)) if metric.starts_with("correctness") => format!("answers {k}/{n} correctly"),
        Some((k, n)) => format!("scores {metric_title} on {k}/{n} answers"),
        None => format!("has mean {metric_title} {}", fmt_quality(c.quality.mean)),
    }
}

fn fmt_quality(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// "30% less memory" / "16% more memory" / "the same memory" (within 1%).
fn memory_words(this: u64, other: u64) -> Option<String> {
    if other == 0 {
        return None;
    }
    let r = this as f64 / other as f64;
    Some(if (r - 1.0).abs() < 0.01 {
        "the same memory".to_string()
    } else if r < 1.0 {
        format!("{:.0}% less memory", (1.0 - r) * 100.0)
    } else {
        format!("{:.0}% more memory", (r - 1.0) * 100.0)
    })
}

/// "1.6x faster" / "1.5x the latency".
fn speed_words(this_s: f64, other_s: f64) -> Option<String> {
    if !(this_s > 0.0 && other_s > 0.0) {
        return None;
    }
    Some(if this_s <= other_s {
        format!("{:.1}x faster", other_s / this_s)
    } else {
        format!("{:.1}x the latency", this_s / other_s)
    })
}

/// One sentence stating the trade-off among the front cells, computed from `front`:
/// the best-quality front cell against the fastest one (and the lightest, when that is a third
/// cell), with quality in the studies' words, the speed ratio of mean response times, the
/// memory difference of peak RSS, and whether the quality gap is significant (paired t-test).
/// `metric_title` is the metric's display name. `None` without cells.
pub fn trade_off_sentence(
    front: &Front,
    answers: &[AnswerRecord],
    metric_title: &str,
) -> Option<String> {
    let cells: Vec<&FrontCell> = front.front_cells().collect();
    let best = *cells.first()?;
    let fastest = cells
        .iter()
        .filter_map(|c| c.response_time_s.map(|t| (*c, t.mean)))
        .min_by(|(_, x), (_, y)| x.total_cmp(y))
        .map(|(c, _)| c);
    let lightest = cells
        .iter()
        .filter(|c| c.rss_peak_bytes.is_some())
        .min_by_key(|c| c.rss_peak_bytes)
        .copied();
    let values = paired_values(answers, &front.metric);
    let gap = |other: &FrontCell| -> String {
        match pair_test(&values, &other.cell_id, &best.cell_id) {
            Some((n, p)) if p >= FRONT_ALPHA => format!(
                "the two are statistically tied on {metric_title} (paired t-test, unadjusted p = {p:.2}, n = {n})"
            ),
            Some((n, p)) => format!(
                "its {metric_title} is significantly {} (paired t-test, unadjusted p {}, n = {n})",
                if front.lower_is_better { "higher" } else { "lower" },
                if p < 0.001 { fmt_p(p) } else { format!("= {}", fmt_p(p)) }
            ),
            None => "the two answered no common questions to compare".to_string(),
        }
    };
    let mut s = format!(
        "{} {}",
        best.label,
        quality_words(best, &front.metric, metric_title)
    );
    match fastest.filter(|f| f.cell_id != best.cell_id) {
        Some(f) => {
            let (tb, tf) = (
                best.response_time_s.map(|t| t.mean),
                f.response_time_s.map(|t| t.mean),
            );
            write!(
                s,
                "; {} {}",
                f.label,
                quality_words(f, &front.metric, metric_title)
            )
            .ok()?;
            let mut costs = Vec::new();
            if let (Some(tf), Some(tb)) = (tf, tb) {
                costs.extend(speed_words(tf, tb));
            }
            if let (Some(mf), Some(mb)) = (f.rss_peak_bytes, best.rss_peak_bytes) {
                costs.extend(memory_words(mf, mb));
            }
            if !costs.is_empty() {
                write!(s, ", {}", join_and(&costs)).ok()?;
            }
            write!(s, "; {}", gap(f)).ok()?;
        }
        None => {
            if let Some(t) = best.response_time_s {
                write!(s, ", and is also the fastest ({:.2} s per answer)", t.mean).ok()?;
            }
        }
    }
    if let Some(l) = lightest.filter(|l| {
        l.cell_id != best.cell_id && Some(l.cell_id.as_str()) != fastest.map(|f| f.cell_id.as_str())
    }) {
        // a third cell is worth a clause only when it saves real memory (5% or more)
        let lighter = match (l.rss_peak_bytes, best.rss_peak_bytes) {
            (Some(ml), Some(mb)) if (ml as f64) <= 0.95 * mb as f64 => Some((ml, mb)),
            _ => None,
        };
        if let Some((ml, mb)) = lighter {
            write!(
                s,
                "; {} needs {} ({}) and {}",
                l.label,
                memory_words(ml, mb)?,
                fmt_bytes(ml),
                quality_words(l, &front.metric, metric_title)
            )
            .ok()?;
        }
    }
    if cells.len() == 1 && front.cells.len() > 1 {
        s.push_str(": no other cell is better on response time or memory");
    }
    s.push('.');
    Some(s)
}

fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [a] => a.clone(),
        [a, b] => format!("{a} at {b}"),
        [rest @ .., last] => format!("{} at {last}", rest.join(", ")),
    }
}

/// Chart geometry.
const W: f64 = 760.0;
const H: f64 = 400.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 56.0;

/// The front as an inline SVG: x = mean response time (s) with its 95% interval, y = quality
/// with its 95% interval, marker area proportional to peak RSS; front cells filled and outlined,
/// tied cells pale blue, the rest grey. Each point has a `<title>` (hover: label, quality,
/// time, RSS) and links to `#rank-<cell id>`, its ranking row. Cells without a response time
/// are not drawn (the table lists them). Errors: formatting only.
pub fn front_svg(front: &Front, metric_title: &str) -> Result<String, ReportError> {
    let pts: Vec<(&FrontCell, MeanCi)> = front
        .cells
        .iter()
        .filter_map(|c| c.response_time_s.map(|t| (c, t)))
        .filter(|(c, t)| t.mean.is_finite() && c.quality.mean.is_finite())
        .collect();
    if pts.is_empty() {
        return Ok(r#"<p class="note">No response times to plot (retrieval only).</p>"#.into());
    }
    let span = |vals: &mut dyn Iterator<Item = f64>| {
        vals.filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (xlo, xhi) = span(&mut pts.iter().flat_map(|(_, t)| [t.lo.max(0.0), t.hi]));
    let (ylo, yhi) = span(&mut pts.iter().flat_map(|(c, _)| [c.quality.lo, c.quality.hi]));
    let _ = xlo; // the time axis starts at 0: ratios of times read off it
    let xt = nice_ticks(0.0, xhi, 6);
    let yt = nice_ticks(ylo, yhi, 5);
    let (x0, x1) = (xt[0], *xt.last().unwrap_or(&1.0));
    let (y0, y1) = (yt[0], *yt.last().unwrap_or(&1.0));
    let px = |v: f64| LEFT + (v - x0) / (x1 - x0).max(1e-12) * (W - LEFT - RIGHT);
    let py = |v: f64| H - BOTTOM - (v - y0) / (y1 - y0).max(1e-12) * (H - TOP - BOTTOM);
    let max_rss = pts
        .iter()
        .filter_map(|(c, _)| c.rss_peak_bytes)
        .max()
        .unwrap_or(0);
    let radius = |c: &FrontCell| match (c.rss_peak_bytes, max_rss) {
        (Some(r), m) if m > 0 => 4.0 + 10.0 * (r as f64 / m as f64).sqrt(),
        _ => 7.0,
    };
    let mut s = String::new();
    write!(
        s,
        r#"<svg id="front-chart" class="chart" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{} against response time" xmlns="http://www.w3.org/2000/svg">"#,
        esc(metric_title)
    )?;
    let xstep = xt.get(1).map_or(1.0, |b| b - xt[0]);
    let ystep = yt.get(1).map_or(1.0, |b| b - yt[0]);
    for v in &yt {
        write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            py(*v) + 4.0,
            tick_label(*v, ystep),
            y = py(*v)
        )?;
    }
    for v in &xt {
        write!(
            s,
            r#"<line class="grid" y1="{TOP}" y2="{:.1}" x1="{x:.1}" x2="{x:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            tick_label(*v, xstep),
            x = px(*v)
        )?;
    }
    write!(
        s,
        r#"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">mean response time, s (95% CI) — left is faster</text><text class="axis-label" transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{} (95% CI) — {} is better</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 14.0,
        (TOP + H - BOTTOM) / 2.0,
        esc(metric_title),
        if front.lower_is_better { "down" } else { "up" }
    )?;
    // dominated cells first, so front cells are drawn on top
    let mut order: Vec<&(&FrontCell, MeanCi)> = pts.iter().collect();
    order.sort_by_key(|(c, _)| (c.on_front, c.tied_with.is_some()));
    for (c, t) in order {
        let (cx, cy) = (px(t.mean), py(c.quality.mean));
        let class = if c.on_front {
            "front"
        } else if c.tied_with.is_some() {
            "tied"
        } else {
            "dominated"
        };
        let interval = |ci: &MeanCi, f: &dyn Fn(f64) -> String| {
            if !ci.has_interval() {
                format!("{} (n = {})", f(ci.mean), ci.n)
            } else {
                format!("{} [{}, {}]", f(ci.mean), f(ci.lo), f(ci.hi))
            }
        };
        let mut tip = format!(
            "{}\n{}: {}{}\nresponse time: {}",
            c.label,
            metric_title,
            interval(&c.quality, &fmt_quality),
            c.correct
                .map_or(String::new(), |(k, n)| format!(" ({k}/{n})")),
            interval(
                &MeanCi {
                    lo: t.lo.max(0.0),
                    ..*t
                },
                &|x| format!("{x:.2} s")
            ),
        );
        if let Some(r) = c.rss_peak_bytes {
            write!(tip, "\npeak RSS: {}", fmt_bytes(r))?;
        }
        tip.push_str(match class {
            "front" => "\non the front",
            "tied" => "\ntied with a front cell",
            _ => "\ndominated",
        });
        write!(
            s,
            r##"<a href="#rank-{id}" class="pt {class}" data-cell="{id}"><title>{tip}</title><line class="err" x1="{:.1}" x2="{:.1}" y1="{cy:.1}" y2="{cy:.1}"/><line class="err" x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}"/><circle cx="{cx:.1}" cy="{cy:.1}" r="{:.1}"/></a>"##,
            px(t.lo.max(0.0)),
            px(t.hi),
            py(c.quality.lo),
            py(c.quality.hi),
            radius(c),
            id = esc(&c.cell_id),
            tip = esc(&tip),
        )?;
    }
    s.push_str("</svg>");
    Ok(s)
}

/// "0.832 [0.790, 0.870]" (`unit` after each value): the interval's bounds, as Wilson and
/// clipped intervals are not symmetric; one value has no spread to estimate, so it reads
/// "0.832 (n = 1)" rather than a point interval that looks like certainty.
fn mean_interval(ci: &MeanCi, fmt: impl Fn(f64) -> String, unit: &str) -> String {
    if !ci.has_interval() {
        format!("{}{unit} (n = {})", fmt(ci.mean), ci.n)
    } else {
        format!("{}{unit} [{}, {}]", fmt(ci.mean), fmt(ci.lo), fmt(ci.hi))
    }
}

/// The front as terminal lines (hyperfine-like): the front cells with quality, time and peak
/// RSS, then the cells tied with them, then the trade-off sentence.
pub fn front_text(front: &Front, sentence: Option<&str>, metric_title: &str) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "cell".into(),
        metric_title.to_string(),
        "response time (s)".into(),
        "peak RSS".into(),
    ]];
    let listed: Vec<&FrontCell> = front
        .front_cells()
        .chain(front.cells.iter().filter(|c| c.tied_with.is_some()))
        .collect();
    for c in &listed {
        let q = match c.correct {
            Some((k, n)) => format!("{} ({k}/{n})", fmt_quality(c.quality.mean)),
            None => mean_interval(&c.quality, fmt_quality, ""),
        };
        let t = c.response_time_s.map_or("—".into(), |t| {
            let t = MeanCi {
                lo: t.lo.max(0.0),
                ..t
            };
            mean_interval(&t, |x| format!("{x:.2}"), "")
        });
        let m = c.rss_peak_bytes.map_or("—".into(), fmt_bytes);
        let mark = if c.on_front { "★ " } else { "≈ " };
        rows.push([format!("{mark}{}", c.label), q, t, m]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let n_front = front.front_cells().count();
    let mut s = format!(
        "Front: {n_front} of {} cells not dominated on {metric_title}, response time and peak RSS (★); ≈ tied with a front cell on {metric_title}\n",
        front.cells.len()
    );
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::from("  ");
        for (j, cell) in r.iter().enumerate() {
            let pad = widths[j] - cell.chars().count();
            if j == 0 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str("   ");
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
        if i == 0 {
            s.push_str(&format!(
                "  {}\n",
                "-".repeat(widths.iter().sum::<usize>() + 9)
            ));
        }
    }
    if let Some(t) = sentence {
        s.push_str(t);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::tests::answer;
    use crate::report::{rank_cells, summarize, CI_LEVEL};

    /// Cells: a slow heavy best ("big"), a fast light worse one ("small"), and one dominated by
    /// "big" ("slow": worse, slower, as heavy) but tied with it on quality.
    fn answers() -> Vec<AnswerRecord> {
        let mut out = Vec::new();
        for (i, q) in ["q1", "q2", "q3", "q4", "q5", "q6"].iter().enumerate() {
            let wobble = 0.01 * i as f64;
            let mut big = answer("big", 500, "dense", q, 0.80 + wobble, 2.0 + wobble);
            big.rss_peak_bytes = Some(1000 << 20);
            let mut small = answer("small", 500, "dense", q, 0.40 + wobble * 0.5, 1.0 + wobble);
            small.rss_peak_bytes = Some(700 << 20);
            let tie = if i % 2 == 0 { 0.03 } else { -0.04 };
            let mut slow = answer("slow", 500, "dense", q, 0.80 + wobble + tie, 3.0 + wobble);
            slow.rss_peak_bytes = Some(1000 << 20);
            out.extend([big, small, slow]);
        }
        out
    }

    fn front_of(rows: &[AnswerRecord], metric: &str) -> Front {
        let ranked = rank_cells(rows, metric, CI_LEVEL, 200, 1).unwrap();
        build_front(metric, &ranked, &summarize(rows).unwrap(), rows)
    }

    #[test]
    fn the_front_holds_the_cells_no_other_dominates_and_marks_ties() {
        let rows = answers();
        let f = front_of(&rows, "cosine");
        let by: BTreeMap<&str, &FrontCell> =
            f.cells.iter().map(|c| (c.cell_id.as_str(), c)).collect();
        assert!(by["big-500-dense"].on_front);
        assert!(by["small-500-dense"].on_front, "faster and lighter");
        let slow = by["slow-500-dense"];
        assert!(!slow.on_front, "big is as good, faster, as light");
        let tie = slow.tied_with.as_ref().expect("tied with big");
        assert_eq!(tie.cell_id, "big-500-dense");
        assert_eq!(tie.n, 6);
        assert!(tie.p_value >= FRONT_ALPHA);
        assert_eq!(f.front_cells().count(), 2);
        assert_eq!(f.front_cells().next().unwrap().cell_id, "big-500-dense");
    }

    #[test]
    fn dominance_needs_one_strict_improvement_and_skips_missing_dimensions() {
        let rows = answers();
        let f = front_of(&rows, "cosine");
        let mut a = f.cells[0].clone();
        let mut b = a.clone();
        assert!(
            !dominates(&a, &b, false),
            "equal cells do not dominate each other"
        );
        b.rss_peak_bytes = Some(a.rss_peak_bytes.unwrap() + 1);
        assert!(dominates(&a, &b, false));
        assert!(!dominates(&b, &a, false));
        b.rss_peak_bytes = None;
        assert!(!dominates(&a, &b, false), "memory unknown: equal elsewhere");
        // lower is better: the smaller mean wins
        a.quality.mean = 1.0;
        b.quality.mean = 2.0;
        assert!(dominates(&a, &b, true));
        assert!(!dominates(&a, &b, false));
    }

    #[test]
    fn the_sentence_states_the_trade_off_from_the_data() {
        let rows = answers();
        let f = front_of(&rows, "cosine");
        let s = trade_off_sentence(&f, &rows, "cosine").unwrap();
        // big: mean 0.825, 2.025 s, 1000 MiB; small: mean 0.4125, 1.025 s, 700 MiB
        assert_eq!(
            s,
            "big · dense chunk 500/50 k=4 has mean cosine 0.825; small · dense chunk 500/50 k=4 \
             has mean cosine 0.413, 2.0x faster at 30% less memory; its cosine is significantly \
             lower (paired t-test, unadjusted p <0.001, n = 6)."
        );
    }

    #[test]
    fn a_lighter_third_front_cell_gets_a_clause_only_when_it_saves_memory() {
        let rows = |light_mib: u64| {
            let mut out = Vec::new();
            for (i, q) in ["q1", "q2", "q3", "q4"].iter().enumerate() {
                let w = 0.01 * i as f64;
                let mut best = answer("best", 500, "dense", q, 0.8 + w, 2.0 + w);
                best.rss_peak_bytes = Some(1000 << 20);
                let mut fast = answer("fast", 500, "dense", q, 0.4 + w, 1.0 + w);
                fast.rss_peak_bytes = Some(1000 << 20);
                let mut light = answer("light", 500, "dense", q, 0.5 + w, 3.0 + w);
                light.rss_peak_bytes = Some(light_mib << 20);
                out.extend([best, fast, light]);
            }
            out
        };
        let r = rows(500);
        let s = trade_off_sentence(&front_of(&r, "cosine"), &r, "cosine").unwrap();
        assert!(
            s.contains("; light · dense chunk 500/50 k=4 needs 50% less memory (500 MiB) and has mean cosine 0.515."),
            "{s}"
        );
        let r = rows(980);
        let f = front_of(&r, "cosine");
        assert_eq!(
            f.front_cells().count(),
            3,
            "2% lighter is still the lightest"
        );
        let s = trade_off_sentence(&f, &r, "cosine").unwrap();
        assert!(!s.contains("light ·"), "{s}");
    }

    #[test]
    fn verdict_metrics_read_as_k_of_n_correct() {
        let mut rows = answers();
        for a in rows.iter_mut() {
            let small_right = ["q1", "q2"].contains(&a.question_id.as_str());
            let v = if a.cell.model == "small" {
                small_right as u8
            } else {
                1
            };
            a.metrics.insert("correctness".into(), f64::from(v));
        }
        let f = front_of(&rows, "correctness");
        let s = trade_off_sentence(&f, &rows, "correctness").unwrap();
        assert!(s.contains("answers 6/6 correctly"), "{s}");
        assert!(
            s.contains("small · dense chunk 500/50 k=4 answers 2/6 correctly"),
            "{s}"
        );
        let text = front_text(&f, Some(&s), "correctness");
        assert!(text.contains("(6/6)"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.contains("small") && l.contains("700 MiB")),
            "{text}"
        );
    }

    #[test]
    fn one_answer_reads_as_n_equals_one_not_a_zero_width_interval() {
        let rows: Vec<AnswerRecord> = answers()
            .into_iter()
            .filter(|a| a.question_id == "q1")
            .collect();
        let f = front_of(&rows, "cosine");
        let text = front_text(&f, None, "cosine");
        assert!(text.contains("0.800 (n = 1)"), "{text}");
        assert!(text.contains("2.00 (n = 1)"), "{text}");
        assert!(!text.contains("0.800 [0.800, 0.800]"), "{text}");
        let f = front_of(&answers(), "cosine");
        let big = f
            .cells
            .iter()
            .find(|c| c.cell_id == "big-500-dense")
            .unwrap();
        let text = front_text(&f, None, "cosine");
        let want = format!("0.825 [{:.3}, {:.3}]", big.quality.lo, big.quality.hi);
        assert!(text.contains(&want), "{want} in {text}");
    }

    #[test]
    fn a_cosine_of_exactly_one_is_a_mean_not_a_count() {
        // every answer word for word the expected one: cosine 1.0 throughout
        let mut rows = answers();
        for a in rows.iter_mut() {
            a.cosine = Some(1.0);
        }
        let f = front_of(&rows, "cosine");
        assert!(f.cells.iter().all(|c| c.correct.is_none()));
        let s = trade_off_sentence(&f, &rows, "cosine").unwrap();
        assert!(s.contains("has mean cosine 1.000"), "{s}");
        assert!(!s.contains("answers"), "{s}");
    }

    #[test]
    fn the_chart_links_every_point_to_its_ranking_row_and_escapes_labels() {
        let mut rows = answers();
        for a in &mut rows {
            if a.cell.model == "small" {
                a.cell.model = "s<m>all".into();
            }
        }
        let f = front_of(&rows, "cosine");
        let svg = front_svg(&f, "cosine").unwrap();
        assert_eq!(svg.matches("<a href=\"#rank-").count(), 3);
        assert_eq!(svg.matches("class=\"pt front\"").count(), 2);
        assert_eq!(svg.matches("class=\"pt tied\"").count(), 1);
        assert!(svg.contains("s&lt;m&gt;all"));
        assert!(!svg.contains("s<m>all"));
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(fmt_bytes(369 << 20), "369 MiB");
        assert_eq!(fmt_bytes(1946 << 20), "1.9 GiB");
    }
}
