//! Significance ranking of cells on one metric: cells sorted by mean, each compared with the best
//! cell on the questions both answered (paired t-test and paired BCa bootstrap of the mean
//! difference, [`crate::stats::paired::compare_paired`]), p-values Holm-adjusted over the
//! comparisons, and cells marked "significantly worse than the best" when the adjusted p-value is
//! below [`RANK_ALPHA`].
//!
//! The unit is the question: a cell's value on a question is the mean over its repeats (answers
//! to one question are not independent samples: the repeats of a deterministic cell are copies
//! of one answer), and cells are paired on the questions both have. Only `ok` rows with a finite
//! value of the metric count. With one repeat (the default) this is the answer itself.
//!
//! References: S. Holm, "A simple sequentially rejective multiple test procedure", Scandinavian
//! Journal of Statistics 6 (1979) 65–70; B. Efron, "Better bootstrap confidence intervals", JASA
//! 82 (1987) 171–185 (BCa, as implemented in [`crate::stats::paired`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::aggregate::{natural_key, CellAxes};
use super::metric_columns;
use super::ReportError;
use crate::cell::AnswerStatus;
use crate::stats::paired::{compare_paired, BootstrapMethod, PairedComparison, PairedError};
use crate::stats::{bounded_mean_ci, MeanCi};
use crate::store::AnswerRecord;

/// Family-wise significance level of "significantly worse than the best" (Holm-adjusted p-value
/// strictly below it).
pub const RANK_ALPHA: f64 = 0.05;
/// Bootstrap resamples per comparison in the report (fixed so the report is reproducible).
pub const RANK_RESAMPLES: usize = 2000;
/// Seed of the bootstrap resample generator in the report (see
/// [`crate::stats::paired::draw_resample_indices`]).
pub const RANK_SEED: u64 = 20_260_101;

/// One cell of a ranking (see [`rank_cells`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RankedCell {
    /// 1-based position: 1 is the best mean; ties in the mean are ordered by the larger `n`
    /// (more evidence), then by label.
    pub rank: usize,
    /// Stable id of the cell.
    pub cell_id: String,
    /// `model · retriever label · chunk size/overlap` (see [`super::aggregate::retriever_label`]),
    /// with ` · k=K` appended when the ranked cells differ in top_k.
    pub label: String,
    /// Number of questions of the cell with a finite value of the metric (each the mean over its
    /// repeats; with one repeat, the number of answers).
    pub n: usize,
    /// Mean of the metric over those questions, in the metric's unit.
    pub mean: f64,
    /// Mean with its interval at the requested level (the metric's method: Wilson or clipped
    /// Student-t; `None` only if the level is invalid; see [`MeanCi::has_interval`] for n = 1).
    pub ci: Option<MeanCi>,
    /// Paired comparison of this cell (A) with the best cell (B) on their common questions,
    /// differences A − B of the question means; `None` for the best cell itself and for cells
    /// with fewer than 2 common questions.
    pub vs_best: Option<PairedComparison>,
    /// Holm-adjusted two-sided p-value of the paired t-test (over all comparisons with the best
    /// that exist); `None` when `vs_best` is `None`.
    pub p_holm: Option<f64>,
    /// Whether the cell is significantly worse than the best: `p_holm < RANK_ALPHA` and the mean
    /// paired difference points in the worse direction. `false` without a comparison.
    pub significantly_worse: bool,
}

/// Whether smaller values of `metric` are better: only `response_time_s` (seconds); every
/// quality metric (cosine, hit, recall, MRR, nDCG, EM, F1, contains, ROUGE-L, METEOR) is
/// better when larger.
pub fn lower_is_better(metric: &str) -> bool {
    crate::score::metric::Metric::parse(metric).lower_is_better()
}

/// Metrics [`rank_cells`] accepts for `answers`: `cosine` if some `ok` answer has one, every
/// named metric present ([`metric_columns`] order), and `response_time_s` if some `ok` answer
/// has a time.
pub fn available_rank_metrics(answers: &[AnswerRecord]) -> Vec<String> {
    let ok = || answers.iter().filter(|a| a.status == AnswerStatus::Ok);
    let mut out = Vec::new();
    if ok().any(|a| a.cosine.is_some_and(f64::is_finite)) {
        out.push("cosine".to_string());
    }
    out.extend(metric_columns(answers));
    if ok().any(|a| a.response_time_s.is_some_and(f64::is_finite)) {
        out.push("response_time_s".to_string());
    }
    out
}

/// The metric a ranking uses when none is asked for: `cosine` if any answer has a cosine, else
/// the first `ndcg@k` (smallest k), else the first `hit@k`, else `None`.
pub fn default_rank_metric(answers: &[AnswerRecord]) -> Option<String> {
    if answers.iter().any(|a| a.cosine.is_some_and(f64::is_finite)) {
        return Some("cosine".to_string());
    }
    let names = metric_columns(answers);
    ["ndcg@", "hit@"]
        .iter()
        .find_map(|prefix| names.iter().find(|n| n.starts_with(prefix)).cloned())
}

/// Value of `metric` on one answer: `ok` rows with a finite value only.
pub fn metric_value(a: &AnswerRecord, metric: &str) -> Option<f64> {
    if a.status != AnswerStatus::Ok {
        return None;
    }
    let v = match metric {
        "cosine" => a.cosine,
        "response_time_s" => a.response_time_s,
        m => a.metrics.get(m).copied(),
    };
    v.filter(|v| v.is_finite())
}

/// Values of one cell keyed by (question id, repeat).
struct CellValues {
    axes: CellAxes,
    values: BTreeMap<(String, u32), f64>,
}

impl CellValues {
    /// Each question's mean over its repeats, by question id.
    fn by_question(&self) -> BTreeMap<&str, f64> {
        question_means(self.values.iter().map(|((q, _), v)| (q.as_str(), *v)))
    }
}

/// Each question's mean over its values (its repeats): the unit of every interval and paired
/// test of a cell, as answers to one question are not independent samples.
pub(crate) fn question_means<'a>(
    values: impl Iterator<Item = (&'a str, f64)>,
) -> BTreeMap<&'a str, f64> {
    let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (q, v) in values {
        let e = sums.entry(q).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(q, (sum, n))| (q, sum / n as f64))
        .collect()
}

/// Ranks every cell that has a value of `metric` and compares each with the best.
///
/// `metric` is `cosine`, `response_time_s` (lower is better, seconds) or a key of
/// [`AnswerRecord::metrics`] (`hit@4`, `ndcg@4`, `f1`, …). Per cell: the mean and `level`
/// interval over its questions (each the mean of its `ok` answers with a finite value, over
/// repeats), by the metric's
/// [`crate::score::metric::Metric::interval_method`] ([`bounded_mean_ci`]: Wilson for
/// proportions, else the Student-t interval clipped to the metric's range). Cells are sorted
/// by mean, best first (largest, or smallest for `response_time_s`), ties by the larger n (the
/// better-supported mean: with judging under way, cells differ in n), then label, then id;
/// cells without any value are left out. Each other cell A is paired with the best cell B on the
/// questions both have, in question id natural order, and
/// compared by [`compare_paired`]`(A, B, level, n_resamples, seed)`: paired t-test and BCa
/// bootstrap interval (percentile where BCa is undefined) of the mean difference A − B. The
/// t-test p-values of all comparisons are adjusted by Holm's step-down method
/// ([`holm_adjust`]); a cell is `significantly_worse` when the adjusted p is below
/// [`RANK_ALPHA`] and the difference is in the worse direction. Cells with fewer than 2 common
/// questions get no comparison and are not marked. The same seed gives the same intervals.
///
/// Errors: [`ReportError::UnknownMetric`] when `metric` is not among
/// [`available_rank_metrics`]; [`ReportError::Paired`] when the comparison rejects its
/// arguments (`level` not in (0, 1), `n_resamples == 0`).
pub fn rank_cells(
    answers: &[AnswerRecord],
    metric: &str,
    level: f64,
    n_resamples: usize,
    seed: u64,
) -> Result<Vec<RankedCell>, ReportError> {
    let available = available_rank_metrics(answers);
    if !available.iter().any(|m| m == metric) {
        return Err(ReportError::UnknownMetric {
            metric: metric.to_string(),
            available,
        });
    }
    if !(level > 0.0 && level < 1.0) {
        return Err(PairedError::InvalidLevel { level }.into());
    }
    let mut cells: BTreeMap<&str, CellValues> = BTreeMap::new();
    for a in answers {
        let Some(v) = metric_value(a, metric) else {
            continue;
        };
        cells
            .entry(a.cell.cell_id.as_str())
            .or_insert_with(|| CellValues {
                axes: a.cell.clone(),
                values: BTreeMap::new(),
            })
            .values
            .entry((a.question_id.clone(), a.repeat))
            .or_insert(v);
    }
    let labels = cell_labels(cells.values().map(|c| &c.axes).collect());
    let lower = lower_is_better(metric);
    let method = crate::score::metric::Metric::parse(metric).interval_method();
    let mut ranked: Vec<(RankedCell, &CellValues)> = cells
        .values()
        .zip(labels)
        .map(|(c, label)| {
            let xs: Vec<f64> = c.by_question().into_values().collect();
            let ci = bounded_mean_ci(method, &xs, level);
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let cell = RankedCell {
                rank: 0,
                cell_id: c.axes.cell_id.clone(),
                label,
                n: xs.len(),
                mean: ci.map_or(mean, |ci| ci.mean),
                ci,
                vs_best: None,
                p_holm: None,
                significantly_worse: false,
            };
            (cell, c)
        })
        .collect();
    ranked.sort_by(|(a, _), (b, _)| {
        let by_mean = if lower {
            a.mean.total_cmp(&b.mean)
        } else {
            b.mean.total_cmp(&a.mean)
        };
        by_mean
            .then_with(|| b.n.cmp(&a.n))
            .then_with(|| a.label.cmp(&b.label))
            .then_with(|| a.cell_id.cmp(&b.cell_id))
    });
    let Some(best) = ranked.first().map(|(_, c)| *c) else {
        return Ok(Vec::new());
    };
    for (i, (cell, values)) in ranked.iter_mut().enumerate() {
        cell.rank = i + 1;
        if i > 0 {
            cell.vs_best = compare_with_best(values, best, level, n_resamples, seed)?;
        }
    }
    let p: Vec<f64> = ranked
        .iter()
        .filter_map(|(c, _)| c.vs_best.map(|v| v.p_value))
        .collect();
    let mut adjusted = holm_adjust(&p).into_iter();
    for (cell, _) in &mut ranked {
        if let Some(cmp) = cell.vs_best {
            let p = adjusted.next().unwrap_or(1.0);
            cell.p_holm = Some(p);
            let worse_direction = if lower {
                cmp.mean_diff > 0.0
            } else {
                cmp.mean_diff < 0.0
            };
            cell.significantly_worse = p < RANK_ALPHA && worse_direction;
        }
    }
    Ok(ranked.into_iter().map(|(c, _)| c).collect())
}

/// Paired comparison of `cell` (A) with `best` (B) on the question means of their common
/// questions; `None` below 2.
fn compare_with_best(
    cell: &CellValues,
    best: &CellValues,
    level: f64,
    n_resamples: usize,
    seed: u64,
) -> Result<Option<PairedComparison>, ReportError> {
    let (mine, theirs) = (cell.by_question(), best.by_question());
    let mut keys: Vec<&str> = mine
        .keys()
        .copied()
        .filter(|k| theirs.contains_key(k))
        .collect();
    if keys.len() < 2 {
        return Ok(None);
    }
    keys.sort_by_key(|q| natural_key(q));
    let a: Vec<f64> = keys.iter().map(|k| mine[k]).collect();
    let b: Vec<f64> = keys.iter().map(|k| theirs[k]).collect();
    match compare_paired(&a, &b, level, n_resamples, seed) {
        Ok(c) => Ok(Some(c)),
        Err(PairedError::TooFewPairs { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Labels of the cells: [`crate::cell::distinct_labels`] (model · every retrieval axis, with the
/// cell id where two cells would otherwise share a label).
fn cell_labels(axes: Vec<&CellAxes>) -> Vec<String> {
    crate::cell::distinct_labels(axes)
}

/// Holm's step-down adjustment of `p` (Holm 1979), returned in input order.
///
/// With the m p-values sorted ascending, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value of p₍ᵢ₎ is
/// max over j ≤ i of min(1, (m − j + 1)·p₍ⱼ₎). Rejecting where the adjusted value is below α
/// controls the family-wise error rate at α. NaN inputs are treated as 1.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let clean = |v: f64| if v.is_nan() { 1.0 } else { v.clamp(0.0, 1.0) };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| clean(p[a]).total_cmp(&clean(p[b])).then(a.cmp(&b)));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (j, &i) in order.iter().enumerate() {
        let adj = ((m - j) as f64 * clean(p[i])).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Decimals used to print values of `metric`: 2 for seconds, 3 otherwise.
pub(crate) fn metric_decimals(metric: &str) -> usize {
    if lower_is_better(metric) {
        2
    } else {
        3
    }
}

/// `p` for tables: `<0.001` below a thousandth, else three decimals.
pub(crate) fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "<0.001".to_string()
    } else {
        format!("{p:.3}")
    }
}

/// Verdict of a ranked cell: `best`, `worse` (significantly), `tied` (not significantly
/// different), or `n/a` (fewer than 2 common pairs).
pub(crate) fn verdict(c: &RankedCell) -> &'static str {
    if c.rank == 1 {
        "best"
    } else if c.vs_best.is_none() {
        "n/a"
    } else if c.significantly_worse {
        "worse"
    } else {
        "tied"
    }
}

/// For cells with `ok` answers but no value of `metric` (so not in `ranked`), the line saying
/// how many and, when they have the same metric at another cutoff (retrieval metrics are named
/// by k, and an ensemble's k is the sum of its members'), which: `10 cells have no ndcg@4 and are
/// not ranked; they have ndcg@9 (--metric ndcg@9)`. Empty when every such cell is ranked.
pub fn unranked_note(answers: &[AnswerRecord], ranked: &[RankedCell], metric: &str) -> String {
    let ranked: std::collections::BTreeSet<&str> =
        ranked.iter().map(|c| c.cell_id.as_str()).collect();
    let family = metric.split('@').next().unwrap_or(metric);
    let mut cells = std::collections::BTreeSet::new();
    let mut instead = std::collections::BTreeSet::new();
    for a in answers.iter().filter(|a| a.status == AnswerStatus::Ok) {
        if ranked.contains(a.cell.cell_id.as_str()) {
            continue;
        }
        cells.insert(a.cell.cell_id.as_str());
        instead.extend(
            a.metrics
                .keys()
                .filter(|m| m.contains('@') && m.split('@').next() == Some(family))
                .map(String::as_str),
        );
    }
    if cells.is_empty() {
        return String::new();
    }
    let n = cells.len();
    let mut line = format!(
        "{n} cell{} {} no {metric} and {} not ranked",
        if n == 1 { "" } else { "s" },
        if n == 1 { "has" } else { "have" },
        if n == 1 { "is" } else { "are" },
    );
    let instead: Vec<&str> = instead.into_iter().collect();
    if !instead.is_empty() {
        line.push_str(&format!(
            "; {} {} (--metric {})",
            if n == 1 { "it has" } else { "they have" },
            instead.join(", "),
            instead[0]
        ));
    }
    line.push('\n');
    line
}

/// Terminal table of a ranking, in the spirit of hyperfine's summary.
///
/// A header line naming `metric`, its direction and the method (paired over questions
/// with the best; t and bootstrap intervals; Holm-adjusted p; alpha [`RANK_ALPHA`]), then one row
/// per cell: rank, label, `mean [lo, hi]` (its interval, which need not be symmetric: Wilson,
/// clipped t), n, the mean paired difference to the best, the number of pairs it is over, its t
/// interval and bootstrap interval, the Holm p-value, and a marker: `★ best`,
/// `✗ worse` (significantly worse than the best), `≈ best` (not significantly different from
/// it), or `? <2 pairs`. Values of `response_time_s` print with 2 decimals, others with 3. Plain
/// text, no colour codes; ends with a newline. An empty ranking gives a one-line note.
pub fn ranking_text(ranked: &[RankedCell], metric: &str) -> String {
    let mut out = String::new();
    if ranked.is_empty() {
        let _ = writeln!(out, "No cells have values of {metric}.");
        return out;
    }
    let d = metric_decimals(metric);
    let level = ranked
        .iter()
        .find_map(|c| c.vs_best.map(|v| v.level))
        .unwrap_or(super::CI_LEVEL);
    let pct = level * 100.0;
    let comparisons = ranked.iter().filter(|c| c.vs_best.is_some()).count();
    let resamples = ranked
        .iter()
        .find_map(|c| c.vs_best.map(|v| v.n_resamples))
        .unwrap_or(0);
    let percentile = ranked.iter().any(|c| {
        c.vs_best
            .is_some_and(|v| v.boot_method == BootstrapMethod::Percentile)
    });
    let _ = writeln!(
        out,
        "Ranking by {metric} ({} is better), {} cells",
        if lower_is_better(metric) {
            "lower"
        } else {
            "higher"
        },
        ranked.len()
    );
    let _ = writeln!(
        out,
        "Δ = cell − best on the questions both have (\"pairs\"; repeats averaged per question), with {pct:.0}% paired-t and paired BCa bootstrap ({resamples} resamples) intervals{}.\np: paired t-test, Holm-adjusted over {comparisons} comparisons; ✗ worse: p < {RANK_ALPHA}; ≈ best: not significantly different.\n",
        if percentile {
            " (ᵖ: percentile interval, BCa undefined)"
        } else {
            ""
        }
    );
    let rows: Vec<[String; 9]> = ranked
        .iter()
        .map(|c| {
            // the interval itself: Wilson and clipped intervals are not mean ± a half-width
            let mean = match c.ci {
                Some(ci) => super::html::interval_text(&ci, d, ""),
                None => format!("{:.d$}", c.mean),
            };
            let (diff, pairs, tci, bci, p) = match c.vs_best {
                Some(v) => (
                    format!("{:+.d$}", v.mean_diff),
                    v.n.to_string(),
                    format!("[{:+.d$}, {:+.d$}]", v.t_ci_low, v.t_ci_high),
                    format!(
                        "[{:+.d$}, {:+.d$}]{}",
                        v.boot_ci_low,
                        v.boot_ci_high,
                        if v.boot_method == BootstrapMethod::Percentile {
                            "ᵖ"
                        } else {
                            ""
                        }
                    ),
                    c.p_holm.map(fmt_p).unwrap_or_default(),
                ),
                None => Default::default(),
            };
            let mark = match verdict(c) {
                "best" => "★ best",
                "worse" => "✗ worse",
                "tied" => "≈ best",
                _ => "? <2 pairs",
            };
            [
                c.rank.to_string(),
                c.label.clone(),
                mean,
                c.n.to_string(),
                diff,
                pairs,
                tci,
                bci,
                format!("{p:>6}  {mark}"),
            ]
        })
        .collect();
    let header: [String; 9] = [
        "#".into(),
        "cell".into(),
        format!("mean [{pct:.0}% CI]"),
        "n".into(),
        "Δ vs best".into(),
        "pairs".into(),
        format!("t {pct:.0}% CI"),
        "bootstrap CI".into(),
        "p Holm".into(),
    ];
    let width = |k: usize| {
        rows.iter()
            .map(|r| r[k].chars().count())
            .chain([header[k].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..9).map(width).collect();
    let line = |r: &[String; 9]| {
        format!(
            "{:>w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:>w5$}  {:<w6$}  {:<w7$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
            w6 = w[6],
            w7 = w[7],
        )
        .trim_end()
        .to_string()
    };
    let _ = writeln!(out, "{}", line(&header));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::tests::answer;
    use crate::stats::mean_ci;
    use crate::stats::paired::compare_paired;

    /// `n` questions for one cell with metric `ndcg@4` values from `f(q)` (cosine also set).
    fn cell(model: &str, chunk: u32, n: usize, f: impl Fn(usize) -> f64) -> Vec<AnswerRecord> {
        (0..n)
            .map(|q| {
                let v = f(q);
                let mut a = answer(model, chunk, "dense", &format!("q{q}"), v, 1.0 + v);
                a.metrics.insert("ndcg@4".into(), v);
                a
            })
            .collect()
    }

    /// Three cells over 10 questions: A is the best, B ties A (tiny, noisy differences), C is
    /// clearly worse (0.3 lower on every question, plus noise).
    fn three_cells() -> Vec<AnswerRecord> {
        let base = |q: usize| 0.5 + 0.04 * (q % 5) as f64;
        let noise = [
            0.01, -0.02, 0.015, -0.01, 0.0, 0.02, -0.015, 0.005, -0.005, 0.01,
        ];
        let mut rows = cell("a", 500, 10, base);
        rows.extend(cell("b", 500, 10, |q| base(q) - 0.004 + noise[q]));
        rows.extend(cell("c", 500, 10, |q| base(q) - 0.3 + noise[9 - q]));
        rows
    }

    #[test]
    fn ranks_marks_worse_and_ties() {
        let rows = three_cells();
        let ranked = rank_cells(&rows, "ndcg@4", 0.95, 500, 7).unwrap();
        let labels: Vec<&str> = ranked.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "a · dense chunk 500/50 k=4",
                "b · dense chunk 500/50 k=4",
                "c · dense chunk 500/50 k=4"
            ]
        );
        assert_eq!(ranked.iter().map(|c| c.rank).collect::<Vec<_>>(), [1, 2, 3]);
        let (a, b, c) = (&ranked[0], &ranked[1], &ranked[2]);
        assert!(a.vs_best.is_none() && a.p_holm.is_none() && !a.significantly_worse);
        assert_eq!(a.n, 10);
        // The mean and CI are mean_ci of the cell's values (nDCG is in [0, 1]: clipped t,
        // which these values never reach).
        let xs: Vec<f64> = (0..10).map(|q| 0.5 + 0.04 * (q % 5) as f64).collect();
        let want = mean_ci(&xs, 0.95).unwrap();
        let got = a.ci.unwrap();
        assert_eq!(
            (got.n, got.mean, got.lo, got.hi),
            (want.n, want.mean, want.lo, want.hi)
        );
        assert_eq!(got.method, crate::stats::CiMethod::TClipped);
        // B vs A: exactly compare_paired on the per-question values, in question order.
        let bv = b.vs_best.unwrap();
        let b_vals: Vec<f64> = rows[10..20].iter().map(|r| r.metrics["ndcg@4"]).collect();
        let want_b = compare_paired(&b_vals, &xs, 0.95, 500, 7).unwrap();
        assert_eq!(bv, want_b);
        assert!(!b.significantly_worse, "B ties A: p = {:?}", b.p_holm);
        assert!(c.significantly_worse);
        assert!(c.vs_best.unwrap().mean_diff < -0.25);
        // Holm with m = 2 by hand: the smaller p doubles, the larger is max(prev, p).
        let (pb, pc) = (bv.p_value, c.vs_best.unwrap().p_value);
        assert!(pc < pb);
        assert_eq!(c.p_holm.unwrap(), (2.0 * pc).min(1.0));
        assert_eq!(b.p_holm.unwrap(), pb.max(2.0 * pc).min(1.0));
        // Reproducible.
        assert_eq!(rank_cells(&rows, "ndcg@4", 0.95, 500, 7).unwrap(), ranked);
    }

    #[test]
    fn holm_by_hand() {
        // Sorted: 0.01 (×3 = 0.03), 0.02 (×2 = 0.04), 0.04 (×1 = 0.04); monotone already.
        let adj = holm_adjust(&[0.04, 0.01, 0.02]);
        let want = [0.04, 0.03, 0.04];
        for (g, w) in adj.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{adj:?}");
        }
        // Monotonicity: 0.02·3 = 0.06 then 0.025·2 = 0.05 → raised to 0.06; cap at 1.
        let adj = holm_adjust(&[0.025, 0.02, 0.9]);
        assert!((adj[1] - 0.06).abs() < 1e-15 && (adj[0] - 0.06).abs() < 1e-15);
        assert_eq!(adj[2], 0.9);
        assert_eq!(holm_adjust(&[0.6, 0.7]), vec![1.0, 1.0]);
        assert!(holm_adjust(&[]).is_empty());
        assert_eq!(holm_adjust(&[f64::NAN]), vec![1.0]);
    }

    #[test]
    fn unknown_metric_lists_available() {
        let rows = three_cells();
        let err = rank_cells(&rows, "bleu", 0.95, 100, 1).unwrap_err();
        match &err {
            ReportError::UnknownMetric { metric, available } => {
                assert_eq!(metric, "bleu");
                assert_eq!(available, &["cosine", "ndcg@4", "response_time_s"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("bleu") && msg.contains("ndcg@4"), "{msg}");
    }

    #[test]
    fn too_few_pairs_and_lower_is_better() {
        let mut rows = cell("a", 500, 5, |q| 0.5 + 0.1 * q as f64);
        // Cell d shares one question with a: no comparison, not marked.
        let mut d = cell("d", 250, 1, |_| 0.1);
        d[0].question_id = "q0".into();
        rows.extend(d);
        let ranked = rank_cells(&rows, "ndcg@4", 0.95, 100, 1).unwrap();
        assert_eq!(ranked[1].label, "d · dense chunk 250/25 k=4");
        assert!(ranked[1].vs_best.is_none() && ranked[1].p_holm.is_none());
        assert!(!ranked[1].significantly_worse);
        assert_eq!(verdict(&ranked[1]), "n/a");
        // Response time: the smallest mean ranks first.
        let by_time = rank_cells(&rows, "response_time_s", 0.95, 100, 1).unwrap();
        assert_eq!(by_time[0].label, "d · dense chunk 250/25 k=4");
        let text = ranking_text(&by_time, "response_time_s");
        assert!(text.contains("lower is better"), "{text}");
    }

    #[test]
    fn default_metric_prefers_cosine_then_ndcg_then_hit() {
        let mut rows = three_cells();
        assert_eq!(default_rank_metric(&rows).as_deref(), Some("cosine"));
        for r in &mut rows {
            r.cosine = None;
            r.metrics.insert("hit@4".into(), 1.0);
            r.metrics.insert("ndcg@8".into(), 1.0);
        }
        assert_eq!(default_rank_metric(&rows).as_deref(), Some("ndcg@4"));
        for r in &mut rows {
            r.metrics.retain(|k, _| k.starts_with("hit"));
        }
        assert_eq!(default_rank_metric(&rows).as_deref(), Some("hit@4"));
        for r in &mut rows {
            r.metrics.clear();
        }
        assert_eq!(default_rank_metric(&rows), None);
    }

    #[test]
    fn one_answer_per_cell_shows_its_value_without_an_interval() {
        let mut rows = cell("a", 500, 1, |_| 0.832);
        rows.extend(cell("b", 500, 1, |_| 0.805));
        let ranked = rank_cells(&rows, "ndcg@4", 0.95, 500, 7).unwrap();
        let text = ranking_text(&ranked, "ndcg@4");
        assert!(!text.contains("± 0.000"), "{text}");
        let row = |label: &str| {
            text.lines()
                .find(|l| l.contains(label))
                .unwrap()
                .to_string()
        };
        assert!(row("a · dense").contains("0.832 "), "{text}");
        assert!(row("b · dense").contains("? <2 pairs"), "{text}");
    }

    #[test]
    fn cells_without_the_metric_are_named_with_the_cutoff_they_have() {
        let mut rows = three_cells();
        // cell c retrieved at another k: ndcg@9 instead of ndcg@4
        for r in rows.iter_mut().filter(|r| r.cell.model == "c") {
            let v = r.metrics.remove("ndcg@4").unwrap();
            r.metrics.insert("ndcg@9".into(), v);
        }
        let ranked = rank_cells(&rows, "ndcg@4", 0.95, 200, 7).unwrap();
        assert_eq!(ranked.len(), 2);
        assert_eq!(
            unranked_note(&rows, &ranked, "ndcg@4"),
            "1 cell has no ndcg@4 and is not ranked; it has ndcg@9 (--metric ndcg@9)\n"
        );
        let all = rank_cells(&three_cells(), "ndcg@4", 0.95, 200, 7).unwrap();
        assert_eq!(unranked_note(&three_cells(), &all, "ndcg@4"), "");
    }

    #[test]
    fn equal_means_rank_the_cell_with_more_answers_first() {
        // judging under way: 6/12 and 8/16 both average 0.5; the 16-answer cell is the better
        // supported best
        let mut rows = cell("few", 500, 12, |q| (q % 2) as f64);
        rows.extend(cell("many", 500, 16, |q| (q % 2) as f64));
        let ranked = rank_cells(&rows, "ndcg@4", 0.95, 200, 7).unwrap();
        assert_eq!(ranked[0].mean, ranked[1].mean);
        assert!(ranked[0].label.starts_with("many"), "{ranked:?}");
        assert_eq!(ranked[1].vs_best.unwrap().n, 12);
    }

    #[test]
    fn a_wilson_interval_prints_as_its_bounds_not_a_half_width() {
        // 2 of 17: Wilson [0.033, 0.343], not 0.118 ± 0.155 (which would reach below 0)
        let mut rows = cell("a", 500, 17, |q| f64::from(u8::from(q < 2)));
        for r in &mut rows {
            let v = r.metrics.remove("ndcg@4").unwrap();
            r.metrics.insert("hit@4".into(), v);
        }
        let ranked = rank_cells(&rows, "hit@4", 0.95, 200, 7).unwrap();
        let text = ranking_text(&ranked, "hit@4");
        assert!(text.contains("0.118 [0.033, 0.343]"), "{text}");
        assert!(!text.contains('±'), "{text}");
    }

    #[test]
    fn text_table_shows_marks_and_intervals() {
        let ranked = rank_cells(&three_cells(), "ndcg@4", 0.95, 500, 7).unwrap();
        let text = ranking_text(&ranked, "ndcg@4");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Ranking by ndcg@4 (higher is better), 3 cells"));
        let row = |label: &str| *lines.iter().find(|l| l.contains(label)).unwrap();
        assert!(row("a · dense").contains("★ best"));
        assert!(row("b · dense").contains("≈ best"));
        assert!(row("c · dense").contains("✗ worse"));
        let a = &ranked[0];
        let (lo, hi) = (a.ci.unwrap().lo, a.ci.unwrap().hi);
        assert!(row("a · dense").contains(&format!("{:.3} [{lo:.3}, {hi:.3}]", a.mean)));
        let c = ranked[2].vs_best.unwrap();
        assert_eq!(c.n, 10);
        let words: Vec<&str> = row("c · dense").split_whitespace().collect();
        let diff = format!("{:+.3}", c.mean_diff);
        assert!(
            words.windows(2).any(|w| w == [diff.as_str(), "10"]),
            "{text}"
        );
        assert!(row("c · dense").contains(&format!("[{:+.3}, {:+.3}]", c.t_ci_low, c.t_ci_high)));
        assert!(
            row("c · dense").contains(&format!("[{:+.3}, {:+.3}]", c.boot_ci_low, c.boot_ci_high))
        );
        // Columns line up: every row has the mean's interval at the same character offset.
        let col = |l: &str| l.chars().position(|ch| ch == '[');
        let offs: Vec<_> = lines[5..].iter().map(|l| col(l)).collect();
        assert!(offs.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert_eq!(ranking_text(&[], "f1"), "No cells have values of f1.\n");
    }
}
