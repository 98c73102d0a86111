//! Assembly of the self-contained HTML report: header, headline, ranking, per-cell quality and
//! performance tables, charts, treemaps, the per-answer table with its chunk appendix
//! ([`super::answers`]) and methods. No external resources: inline CSS, inline SVG, and a few
//! lines of inline JS that only add click-to-sort to tables (the page is complete without JS).

use std::fmt::Write as _;

use super::aggregate::{
    is_retrieval_metric, model_summaries, question_stats, retrieval_series_points, series_points,
    summarize, CellSummary, ModelSummary, QuestionStats, SeriesPoint,
};
use super::answers::{write_answers, write_chunk_appendix};
use super::charts::{metric_by_chunk_svg, ChartSpec};
use super::front::{build_front, fmt_bytes, front_svg, trade_off_sentence, Front, FRONT_ALPHA};
use super::metric_columns;
use super::ranking::{
    default_rank_metric, fmt_p, lower_is_better, rank_cells, verdict, RankedCell, RANK_ALPHA,
    RANK_RESAMPLES, RANK_SEED,
};
use super::treemap::{treemap_svg, Group, Leaf, TreemapSpec};
use super::{ReportError, ReportMeta, CI_LEVEL};
use crate::cell::AnswerStatus;
use crate::stats::paired::{BootstrapMethod, PairedComparison};
use crate::stats::MeanCi;
use crate::store::AnswerRecord;

/// Bytes per MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
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

/// Renders the whole report as one HTML document (UTF-8 string) that works offline.
///
/// Sections, each only when the answers have data for it: header (experiment, file, run start,
/// host, counts, index build times); headline (best cell by the ranking metric, best retrieval
/// cell, fastest cell, per-model totals); ranking (cells ranked by `meta.rank_metric` or
/// [`default_rank_metric`], each compared with the best: paired t and BCa bootstrap intervals of
/// the difference, Holm-adjusted p, a mark for significantly worse vs. tied); quality table per
/// cell (mean, 95% CI and n of cosine and of every named metric, in
/// [`crate::report::metric_order`]); performance table per cell (time, TTFT, tokens/s, RSS,
/// CPU); charts by chunk size (response time, cosine, retrieval metrics hit/MRR/nDCG pooled over
/// models, F1 and ROUGE-L); treemaps model → question (cosine, time, peak RSS; the ranking metric
/// when there is no cosine); every answer in a collapsed table with its metrics and retrieved
/// chunks in rank order, linked to an appendix of chunk texts from `meta.chunk_sets`; methods.
/// All text from `title`, `meta` and `answers` is HTML-escaped.
/// Errors: [`ReportError`] from aggregation or the ranking (an unknown `meta.rank_metric` is not
/// an error: the ranking section then says so).
pub fn render_html(
    title: &str,
    meta: &ReportMeta,
    answers: &[AnswerRecord],
) -> Result<String, ReportError> {
    let batched = answers.iter().filter(|a| !a.timed_alone()).count();
    let shared = answers.iter().filter(|a| a.shared_from.is_some()).count();
    let timed = super::latency_view(answers);
    let answers = timed.as_slice();
    let cells = summarize(answers)?;
    let models = model_summaries(answers)?;
    let points = series_points(answers)?;
    let questions = question_stats(answers)?;
    let metric_names = metric_columns(answers);
    let rank_metric = meta
        .rank_metric
        .clone()
        .or_else(|| default_rank_metric(answers));
    let mut s = String::with_capacity(64 * 1024 + answers.len() * 1536);
    write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body><main>",
        esc(title)
    )?;
    write_header(&mut s, title, meta, &cells, answers)?;
    if answers.is_empty() {
        s.push_str(r#"<p class="note">No answers stored yet.</p>"#);
    } else {
        let ranking = rank_metric.as_deref().map(|m| {
            (
                m,
                rank_cells(answers, m, CI_LEVEL, RANK_RESAMPLES, RANK_SEED),
            )
        });
        if let Some((metric, Ok(ranked))) = &ranking {
            write_front(
                &mut s,
                &build_front(metric, ranked, &cells, answers),
                answers,
            )?;
        }
        write_headline(
            &mut s,
            &cells,
            &models,
            rank_metric.as_deref(),
            &metric_names,
        )?;
        if let Some((metric, ranked)) = ranking {
            let unranked = match &ranked {
                Ok(r) => super::ranking::unranked_note(answers, r, metric),
                Err(_) => String::new(),
            };
            write_ranking(&mut s, ranked, metric, &unranked)?;
        }
        write_quality_table(&mut s, &cells, &metric_names)?;
        write_judge_missing(&mut s, &meta.judge)?;
        write_perf_table(&mut s, &cells)?;
        write_charts(&mut s, answers, &points, &metric_names)?;
        write_treemaps(&mut s, &questions, rank_metric.as_deref())?;
        write_answers(&mut s, answers, &meta.chunk_sets, &metric_names)?;
        write_chunk_appendix(&mut s, answers, &meta.chunk_sets)?;
    }
    write_methods(&mut s, rank_metric.as_deref(), batched, shared, &meta.judge)?;
    writeln!(s, "</main><script>{JS}</script></body></html>")?;
    Ok(s)
}

/// Title and run metadata.
fn write_header(
    s: &mut String,
    title: &str,
    meta: &ReportMeta,
    cells: &[CellSummary],
    answers: &[AnswerRecord],
) -> Result<(), ReportError> {
    let failed = answers
        .iter()
        .filter(|a| a.status == AnswerStatus::Failed)
        .count();
    write!(s, "<header><h1>{}</h1><dl class=\"meta\">", esc(title))?;
    let mut item =
        |k: &str, v: &str| write!(s, "<div><dt>{}</dt><dd>{}</dd></div>", esc(k), esc(v));
    item("experiment", &meta.experiment_name)?;
    item("file", &meta.experiment_file)?;
    item("run started", meta.run_started.as_deref().unwrap_or("—"))?;
    item("host", meta.host.as_deref().unwrap_or("—"))?;
    item(
        "cells · answers · failed",
        &format!("{} · {} · {}", cells.len(), answers.len(), failed),
    )?;
    if !meta.failed_cells.is_empty() {
        item("failed cells", &meta.failed_cells.len().to_string())?;
    }
    if !meta.index_builds.is_empty() {
        let builds: Vec<String> = meta
            .index_builds
            .iter()
            .map(|(label, secs)| match secs {
                Some(secs) => format!("{label}: {secs:.1} s"),
                None => format!("{label}: cached"),
            })
            .collect();
        item("index builds", &builds.join(" · "))?;
    }
    s.push_str("</dl></header>");
    write_failed_cells(s, meta)?;
    write_unfinished_cells(s, meta)?;
    write_eliminated_cells(s, meta)?;
    write_judge_incomplete(s, &meta.judge, answers)?;
    Ok(())
}

/// The cells a sweep has not finished, each with its state (nothing when every cell finished).
fn write_unfinished_cells(s: &mut String, meta: &ReportMeta) -> Result<(), ReportError> {
    if meta.unfinished_cells.is_empty() {
        return Ok(());
    }
    write!(
        s,
        r#"<section id="unfinished-cells" class="warn-box"><h2>Sweep incomplete ({} cells not finished)</h2><p class="note">A sweep of these cells was interrupted, or is running now: their means below cover the answers stored so far, and cells may be missing from the comparison altogether. <code>orchestrate run</code> completes them.</p><ul>"#,
        meta.unfinished_cells.len()
    )?;
    for (label, state) in &meta.unfinished_cells {
        write!(s, "<li><b>{}</b>: {}</li>", esc(label), esc(state))?;
    }
    s.push_str("</ul></section>");
    Ok(())
}

/// The cells a race stopped, each with its evidence (nothing when none was).
fn write_eliminated_cells(s: &mut String, meta: &ReportMeta) -> Result<(), ReportError> {
    if meta.eliminated_cells.is_empty() {
        return Ok(());
    }
    write!(
        s,
        r#"<section id="eliminated-cells"><h2>Stopped by racing ({})</h2><p class="note">After a shard of questions these cells were significantly worse than the leader (one-sided paired t-test, Holm-adjusted over the cells compared, level α / shards; see Methods), so they got no further questions. Their means below cover only the questions they answered. <code>orchestrate run</code> without <code>--race</code> completes them.</p><ul>"#,
        meta.eliminated_cells.len()
    )?;
    for (label, why) in &meta.eliminated_cells {
        write!(s, "<li><b>{}</b>: {}</li>", esc(label), esc(why))?;
    }
    s.push_str("</ul></section>");
    Ok(())
}

/// The cells that failed, each with its cause (nothing when none failed).
fn write_failed_cells(s: &mut String, meta: &ReportMeta) -> Result<(), ReportError> {
    if meta.failed_cells.is_empty() {
        return Ok(());
    }
    write!(
        s,
        r#"<section id="failed-cells" class="warn-box"><h2>Failed cells ({})</h2><p class="note">These cells have no or only some answers; their means below, if any, cover the answers they have. Rerun <code>orchestrate run</code> to retry them after fixing the cause.</p><ul>"#,
        meta.failed_cells.len()
    )?;
    for (label, error) in &meta.failed_cells {
        write!(
            s,
            "<li><b>{}</b>: <code>{}</code></li>",
            esc(label),
            esc(error)
        )?;
    }
    s.push_str("</ul></section>");
    Ok(())
}

/// Display name of a metric: `cosine`, `Hit@4`, `Recall@4`, `MRR@4`, `nDCG@4`, `EM`, `F1`,
/// `contains`, `ROUGE-L`, `METEOR`, `response time`; other names unchanged.
pub fn metric_title(name: &str) -> String {
    crate::score::metric::Metric::parse(name).title()
}

/// Decimals and unit suffix of a metric's values.
fn metric_format(name: &str) -> (usize, &'static str) {
    if name == "response_time_s" {
        (2, " s")
    } else {
        (3, "")
    }
}

/// The retrieval metric the headline shows next to cosine: the first nDCG@k, else Hit@k.
fn headline_retrieval_metric(metric_names: &[String]) -> Option<&str> {
    ["ndcg@", "hit@"].iter().find_map(|p| {
        metric_names
            .iter()
            .find(|n| n.starts_with(p))
            .map(String::as_str)
    })
}

/// The trade-off front at the top of the report: quality against response time with memory as
/// marker size ([`front_svg`]), the trade-off sentence, and a table of the front cells and the
/// cells tied with them, each linking to its ranking row.
fn write_front(s: &mut String, front: &Front, answers: &[AnswerRecord]) -> Result<(), ReportError> {
    if front.cells.is_empty() {
        return Ok(());
    }
    let title = metric_title(&front.metric);
    let sentence = trade_off_sentence(front, answers, &title);
    write!(
        s,
        r#"<section id="front"><h2>Trade-off: {t}, response time, memory</h2><p class="trade-off">{}</p><p class="note">One point per cell: {t} (mean, 95% CI bar) against mean response time (95% CI bar, answers decoded alone); marker area by peak RSS. <span class="badge front-b">orange, outlined</span> on the front: no other cell is at least as good on {t}, response time and peak RSS and better on one. <span class="badge tied-b">pale blue</span> tied with a front cell on {t} (two-sided paired t-test, p ≥ {FRONT_ALPHA}, unadjusted) but slower or heavier. <span class="badge dominated-b">grey</span> neither. Hover a point for its cell; click it for its ranking row.</p>{}"#,
        esc(sentence.as_deref().unwrap_or("")),
        front_svg(front, &title)?,
        t = esc(&title),
    )?;
    let (d, unit) = metric_format(&front.metric);
    s.push_str(
        r#"<div class="scroll"><table id="front-table"><thead><tr><th>cell</th><th>rank</th>"#,
    );
    write!(
        s,
        r#"<th>{} <span class="unit">95% CI</span></th><th>response time <span class="unit">s, 95% CI</span></th><th>peak RSS</th><th></th></tr></thead><tbody>"#,
        esc(&title)
    )?;
    for c in front
        .front_cells()
        .chain(front.cells.iter().filter(|c| c.tied_with.is_some()))
    {
        let q = format!(
            "{}{}",
            interval_text(&c.quality, d, unit),
            c.correct
                .map_or(String::new(), |(k, n)| format!(" · {k}/{n}"))
        );
        let t = c.response_time_s.map_or("—".to_string(), |t| {
            interval_text(
                &MeanCi {
                    lo: t.lo.max(0.0),
                    ..t
                },
                2,
                "",
            )
        });
        let note = match &c.tied_with {
            Some(tie) => format!("≈ tied with {} (p = {:.2})", tie.label, tie.p_value),
            None => "★ front".into(),
        };
        write!(
            s,
            r##"<tr id="front-{id}" class="{cls}"><td><a href="#rank-{id}">{}</a></td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"##,
            esc(&c.label),
            c.rank,
            esc(&q),
            esc(&t),
            c.rss_peak_bytes.map_or("—".into(), fmt_bytes),
            esc(&note),
            id = esc(&c.cell_id),
            cls = if c.on_front { "on-front" } else { "tied-front" },
        )?;
    }
    s.push_str("</tbody></table></div></section>");
    Ok(())
}

/// Best cells (ranking metric, retrieval, speed) and one line per model.
fn write_headline(
    s: &mut String,
    cells: &[CellSummary],
    models: &[ModelSummary],
    rank_metric: Option<&str>,
    metric_names: &[String],
) -> Result<(), ReportError> {
    s.push_str(r#"<section id="headline"><h2>Headline</h2><div class="cards">"#);
    let retrieval = headline_retrieval_metric(metric_names);
    let mut shown: Vec<&str> = Vec::new();
    for metric in [rank_metric, retrieval].into_iter().flatten() {
        if shown.contains(&metric) || metric == "response_time_s" {
            continue;
        }
        shown.push(metric);
        let (d, unit) = metric_format(metric);
        if let Some(c) = best_by(cells, |c| c.metric(metric).map(|ci| ci.mean), true) {
            // retrieval metrics (`hit@k`, `ndcg@k`, ...) do not depend on the model: the cells of
            // every model with these retrieval settings tie
            let any_model = metric.contains('@') && models.len() > 1;
            write_card(
                s,
                &format!(
                    "Best mean {}{}",
                    metric_title(metric),
                    if any_model { " (any model)" } else { "" }
                ),
                &fmt_ci(c.metric(metric), d, unit),
                c,
            )?;
        }
    }
    let correctness = correctness_metrics(metric_names);
    for metric in &correctness {
        if let Some(c) = best_by(cells, |c| c.metric(metric).map(|ci| ci.mean), true) {
            write_card(
                s,
                &if *metric == "correctness" {
                    "Most answers judged correct".to_string()
                } else {
                    format!("Most answers judged correct ({})", metric_title(metric))
                },
                &k_of_n(c.counts.get(*metric).copied()),
                c,
            )?;
        }
    }
    if let Some(c) = best_by(cells, |c| c.response_time_s.map(|ci| ci.mean), false) {
        write_card(
            s,
            "Fastest mean response",
            &fmt_ci(c.response_time_s, 2, " s"),
            c,
        )?;
    }
    s.push_str("</div>");
    // Model table: only columns some model has values for.
    let mut cols: Vec<&str> = Vec::new();
    if models.iter().any(|m| m.cosine.is_some()) {
        cols.push("cosine");
    }
    for m in [retrieval, Some("f1")].into_iter().flatten() {
        if models.iter().any(|x| x.metrics.contains_key(m)) {
            cols.push(m);
        }
    }
    for m in &correctness {
        cols.push(m);
    }
    if models.iter().any(|m| m.response_time_s.is_some()) {
        cols.push("response_time_s");
    }
    let has_rss = models.iter().any(|m| m.rss_peak_bytes.is_some());
    s.push_str(r#"<div class="scroll"><table class="models"><thead><tr><th>model</th><th>answers</th><th>failed</th>"#);
    for c in &cols {
        if correctness.contains(c) {
            write!(s, "<th>{}</th>", esc(&metric_title(c)))?;
            continue;
        }
        write!(
            s,
            "<th>mean {} <span class=\"unit\">[95% CI over questions]</span></th>",
            esc(&metric_title(c))
        )?;
    }
    if has_rss {
        s.push_str("<th>peak RSS</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for m in models {
        write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td>",
            esc(&m.model),
            m.n_answers,
            if m.n_failed > 0 { " warn" } else { "" },
            m.n_failed,
        )?;
        for c in &cols {
            let ci = match *c {
                "cosine" => m.cosine,
                "response_time_s" => m.response_time_s,
                other => m.metrics.get(other).copied(),
            };
            if correctness.contains(c) {
                write!(
                    s,
                    "<td class=\"num\">{}</td>",
                    esc(&k_of_n(m.counts.get(*c).copied()))
                )?;
                continue;
            }
            let (d, unit) = metric_format(c);
            write!(s, "<td class=\"num\">{}</td>", fmt_ci(ci, d, unit))?;
        }
        if has_rss {
            write!(
                s,
                "<td class=\"num\">{}</td>",
                fmt_mib(m.rss_peak_bytes.map(|b| b as f64))
            )?;
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div></section>");
    Ok(())
}

/// The judge's correctness metrics among `metric_names` (`correctness`, `correctness_ragas`, ...).
fn correctness_metrics(metric_names: &[String]) -> Vec<&str> {
    metric_names
        .iter()
        .filter(|m| {
            matches!(
                crate::score::metric::Metric::parse(m),
                crate::score::metric::Metric::Judge(crate::judge::JudgeMetric::Correctness, _)
            )
        })
        .map(String::as_str)
        .collect()
}

/// A 0/1 metric's count of answers as the studies' headline: "k/n correct (p%)"
/// ([`CellSummary::counts`], [`super::aggregate::ModelSummary::counts`]).
fn k_of_n(counts: Option<(usize, usize)>) -> String {
    match counts {
        Some((k, n)) if n > 0 => {
            format!("{k}/{n} correct ({:.0}%)", 100.0 * k as f64 / n as f64)
        }
        _ => "–".into(),
    }
}

/// The cell whose metric is largest (`max`) or smallest; cells without the metric are skipped.
fn best_by(
    cells: &[CellSummary],
    metric: impl Fn(&CellSummary) -> Option<f64>,
    max: bool,
) -> Option<&CellSummary> {
    cells
        .iter()
        .filter_map(|c| metric(c).filter(|v| v.is_finite()).map(|v| (c, v)))
        .reduce(|a, b| {
            if (b.1 > a.1) == max && b.1 != a.1 {
                b
            } else {
                a
            }
        })
        .map(|(c, _)| c)
}

/// A headline card: caption, big value, the cell's model and axes.
fn write_card(
    s: &mut String,
    caption: &str,
    value: &str,
    c: &CellSummary,
) -> Result<(), ReportError> {
    write!(
        s,
        r#"<div class="card"><div class="cap">{}</div><div class="big">{}</div><div class="sub"><b>{}</b> · {}</div></div>"#,
        esc(caption),
        esc(value),
        esc(&c.axes.model),
        esc(&c.label()),
    )?;
    Ok(())
}

/// The ranking section: cells by `metric`, each compared with the best (see [`rank_cells`]),
/// then `unranked` (the cells without the metric, [`super::ranking::unranked_note`]) if any.
fn write_ranking(
    s: &mut String,
    ranked: Result<Vec<RankedCell>, ReportError>,
    metric: &str,
    unranked: &str,
) -> Result<(), ReportError> {
    write!(
        s,
        r#"<section id="ranking"><h2>Ranking by {}</h2>"#,
        esc(&metric_title(metric))
    )?;
    let ranked = match ranked {
        Ok(r) => r,
        Err(e @ ReportError::UnknownMetric { .. }) => {
            write!(
                s,
                r#"<p class="note warn">{}</p></section>"#,
                esc(&e.to_string())
            )?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let worse = ranked.iter().filter(|c| c.significantly_worse).count();
    let tied = ranked.iter().filter(|c| verdict(c) == "tied").count();
    let m = ranked.iter().filter(|c| c.vs_best.is_some()).count();
    write!(
        s,
        r#"<p class="note">{dir} is better. Each cell is compared with the best (#1) on the questions both have (repeats averaged per question): Δ = cell − best, with its 95% paired-t interval and paired BCa bootstrap interval ({RANK_RESAMPLES} resamples, fixed seed); p: paired t-test, Holm-adjusted over the {m} comparisons. <span class="badge best">★ best</span> <span class="badge tied">≈ tied</span> not significantly different from the best ({tied} cells; not proven equal) · <span class="badge worse">✗ worse</span> significantly worse, adjusted p &lt; {RANK_ALPHA} ({worse} cells).</p>"#,
        dir = if lower_is_better(metric) {
            "Lower"
        } else {
            "Higher"
        },
    )?;
    let (d, unit) = metric_format(metric);
    // Shared x scale of the difference plots: every interval end and 0.
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for v in ranked.iter().filter_map(|c| c.vs_best) {
        for x in [v.t_ci_low, v.t_ci_high, v.boot_ci_low, v.boot_ci_high] {
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
    }
    s.push_str(r#"<div class="scroll"><table id="ranking-table" class="ranking"><thead><tr><th>#</th><th>cell</th><th>n</th><th>mean <span class="unit">[95% CI]</span></th><th>Δ vs best <span class="unit">(pairs)</span></th><th>Δ plot <span class="unit">t CI (bar), bootstrap (band), 0 (line)</span></th><th>t 95% CI</th><th>bootstrap 95% CI <span class="unit">BCa (ᵖ percentile)</span></th><th>p <span class="unit">Holm</span></th><th>verdict</th></tr></thead><tbody>"#);
    for c in &ranked {
        let v = verdict(c);
        write!(
            s,
            r#"<tr class="rank-{v}" id="rank-{id}" data-cell="{id}"><td class="num">{rank}</td><td>{label}</td><td class="num">{n}</td>"#,
            id = esc(&c.cell_id),
            rank = c.rank,
            label = esc(&c.label),
            n = c.n,
        )?;
        match c.ci {
            Some(ci) if ci.has_interval() => write!(
                s,
                r#"<td class="num">{:.d$}{unit} <span class="ci">[{:.d$}, {:.d$}]</span></td>"#,
                c.mean, ci.lo, ci.hi
            )?,
            _ => write!(s, r#"<td class="num">{:.d$}{unit}</td>"#, c.mean)?,
        }
        match c.vs_best {
            Some(cmp) => {
                write!(
                    s,
                    r#"<td class="num" title="over the {n} questions both cells have">{:+.d$} <span class="ci">({n})</span></td><td>"#,
                    cmp.mean_diff,
                    n = cmp.n
                )?;
                s.push_str(&diff_plot(&cmp, lo, hi, v));
                write!(
                    s,
                    r#"</td><td class="num ci-col">[{:+.d$}, {:+.d$}]</td><td class="num ci-col" title="{}">[{:+.d$}, {:+.d$}]{}</td><td class="num">{}</td>"#,
                    cmp.t_ci_low,
                    cmp.t_ci_high,
                    esc(&format!("{} bootstrap, {} resamples, seed {}", cmp.boot_method, cmp.n_resamples, cmp.seed)),
                    cmp.boot_ci_low,
                    cmp.boot_ci_high,
                    if cmp.boot_method == BootstrapMethod::Percentile {
                        "ᵖ"
                    } else {
                        ""
                    },
                    c.p_holm.map(fmt_p).unwrap_or_default(),
                )?;
            }
            None if c.rank == 1 => s.push_str(
                r#"<td class="num na">—</td><td></td><td class="na">—</td><td class="na">—</td><td class="na">—</td>"#,
            ),
            None => s.push_str(
                r#"<td class="na" colspan="5">fewer than 2 questions in common with the best</td>"#,
            ),
        }
        let badge = match v {
            "best" => r#"<span class="badge best">★ best</span>"#,
            "worse" => r#"<span class="badge worse">✗ worse</span>"#,
            "tied" => r#"<span class="badge tied">≈ tied</span>"#,
            _ => r#"<span class="badge na">? n/a</span>"#,
        };
        write!(s, "<td>{badge}</td></tr>")?;
    }
    s.push_str("</tbody></table></div>");
    if !unranked.is_empty() {
        write!(s, r#"<p class="note">{}</p>"#, esc(unranked.trim_end()))?;
    }
    s.push_str("</section>");
    Ok(())
}

/// Small inline SVG of a difference to the best: bootstrap interval as a band, t interval as a
/// bar with the mean as a dot, and a vertical line at 0; x from `lo` to `hi`.
fn diff_plot(c: &PairedComparison, lo: f64, hi: f64, verdict: &str) -> String {
    const W: f64 = 150.0;
    const PAD: f64 = 6.0;
    let span = (hi - lo).max(1e-12);
    let x = |v: f64| PAD + (W - 2.0 * PAD) * ((v - lo) / span).clamp(0.0, 1.0);
    let color = match verdict {
        "worse" => "#D55E00",
        _ => "#0072B2",
    };
    let (b0, b1) = (x(c.boot_ci_low), x(c.boot_ci_high));
    format!(
        r##"<svg class="diff" width="{W}" height="16" viewBox="0 0 {W} 16" role="img" aria-label="difference to best" xmlns="http://www.w3.org/2000/svg"><rect x="{b0:.1}" y="3" width="{bw:.1}" height="10" fill="{color}" fill-opacity=".18"/><line x1="{z:.1}" x2="{z:.1}" y1="0" y2="16" stroke="#888" stroke-dasharray="2 2"/><line x1="{t0:.1}" x2="{t1:.1}" y1="8" y2="8" stroke="{color}" stroke-width="2"/><circle cx="{m:.1}" cy="8" r="3.2" fill="{color}"/></svg>"##,
        bw = (b1 - b0).max(0.5),
        z = x(0.0),
        t0 = x(c.t_ci_low),
        t1 = x(c.t_ci_high),
        m = x(c.mean_diff),
    )
}

/// Leading axis columns of both cell tables: model, retriever label (with the BM25 weight and
/// non-default variants), chunk size/overlap, and top_k when the cells differ in it.
fn axis_headers(show_k: bool) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![("model", ""), ("retriever", ""), ("chunk", "size/overlap")];
    if show_k {
        h.push(("top_k", ""));
    }
    h
}

/// Whether the cells differ in top_k (otherwise the tables leave the column out).
fn top_k_varies(cells: &[CellSummary]) -> bool {
    cells
        .windows(2)
        .any(|w| w[0].axes.retrieval.top_k != w[1].axes.retrieval.top_k)
}

fn write_headers(s: &mut String, headers: &[(&str, &str)]) -> Result<(), ReportError> {
    for (name, unit) in headers {
        write!(
            s,
            r#"<th>{}<span class="unit">{}</span></th>"#,
            esc(name),
            esc(unit)
        )?;
    }
    Ok(())
}

fn write_axis_cells(s: &mut String, c: &CellSummary, show_k: bool) -> Result<(), ReportError> {
    let a = &c.axes;
    let r = &a.retrieval;
    text_cell(s, &a.model)?;
    text_cell(s, &r.retriever_label())?;
    // Sorts by size, then overlap.
    write!(
        s,
        r#"<td class="num" data-v="{}">{}/{}</td>"#,
        r.chunk_size as f64 + r.chunk_overlap as f64 / 1e6,
        r.chunk_size,
        r.chunk_overlap
    )?;
    if show_k {
        num_cell(s, Some(r.top_k as f64), |v| format!("{v:.0}"))?;
    }
    Ok(())
}

/// Per-cell quality table: cosine and every named metric, each as mean with the 95% CI
/// half-width and n below it (sortable by clicking a header when JS runs).
fn write_quality_table(
    s: &mut String,
    cells: &[CellSummary],
    metric_names: &[String],
) -> Result<(), ReportError> {
    let mut cols: Vec<&str> = Vec::new();
    if cells.iter().any(|c| c.cosine.is_some()) {
        cols.push("cosine");
    }
    cols.extend(metric_names.iter().map(String::as_str));
    s.push_str(r#"<section id="cells"><h2>Quality by cell</h2><p class="note">One row per cell (all repeats pooled); n counts every answer, failed ones included. Each value: the mean, and below it its 95% interval (Wilson for proportions, else Student-t clipped to the metric’s range, so not always symmetric; see Methods) and (n) the number of questions with that metric (each the mean over its repeats; with one repeat, the answers). Retrieval metrics exist for questions with known evidence, answer metrics for generated answers. Hover a value for the interval; click a header to sort.</p><div class="scroll"><table id="cell-table" class="sortable quality"><thead><tr>"#);
    let show_k = top_k_varies(cells);
    let mut headers: Vec<(String, &str)> = axis_headers(show_k)
        .iter()
        .map(|(n, u)| (n.to_string(), *u))
        .collect();
    headers.push(("n".into(), "answers"));
    for c in &cols {
        let kind = if is_retrieval_metric(c) {
            "retrieval"
        } else {
            "answer"
        };
        headers.push((metric_title(c), kind));
    }
    let refs: Vec<(&str, &str)> = headers.iter().map(|(n, u)| (n.as_str(), *u)).collect();
    write_headers(s, &refs)?;
    s.push_str("</tr></thead><tbody>");
    for c in cells {
        s.push_str("<tr>");
        write_axis_cells(s, c, show_k)?;
        if c.n_failed > 0 {
            write!(
                s,
                r#"<td class="num q2" data-v="{}">{}<span class="ci warn">{} failed</span></td>"#,
                c.n_answers, c.n_answers, c.n_failed
            )?;
        } else {
            num_cell(s, Some(c.n_answers as f64), |v| format!("{v:.0}"))?;
        }
        for m in &cols {
            quality_cell(s, c.metric(m), 3)?;
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div></section>");
    Ok(())
}

/// Mean on the first line, `[lo, hi] (n)` below (Wilson and clipped intervals are not
/// symmetric, so no `± half-width`); the same in the tooltip.
fn quality_cell(s: &mut String, ci: Option<MeanCi>, d: usize) -> Result<(), ReportError> {
    match ci {
        // one value has no spread: its n, not a zero-width "±0.000" that looks like certainty
        Some(ci) if ci.mean.is_finite() && !ci.has_interval() => write!(
            s,
            r#"<td class="num q2" data-v="{m}" title="mean {m:.d$}, n = {n}: no interval">{m:.d$}<span class="ci">({n})</span></td>"#,
            m = ci.mean,
            n = ci.n,
        )?,
        Some(ci) if ci.mean.is_finite() => write!(
            s,
            r#"<td class="num q2" data-v="{m}" title="mean {m:.d$}, 95% CI [{lo:.d$}, {hi:.d$}], n = {n}">{m:.d$}<span class="ci">[{lo:.d$}, {hi:.d$}] ({n})</span></td>"#,
            m = ci.mean,
            lo = ci.lo,
            hi = ci.hi,
            n = ci.n,
        )?,
        _ => s.push_str(r#"<td class="num na" data-v="">—</td>"#),
    }
    Ok(())
}

/// Per-cell performance table (time, TTFT, speed, memory, CPU); left out when no cell has any
/// of these (retrieval-only experiments).
fn write_perf_table(s: &mut String, cells: &[CellSummary]) -> Result<(), ReportError> {
    let any = cells.iter().any(|c| {
        c.response_time_s.is_some()
            || c.ttft_mean_s.is_some()
            || c.rss_peak_bytes.is_some()
            || c.cpu_mean_percent.is_some()
    });
    if !any {
        return Ok(());
    }
    s.push_str(r#"<section id="performance"><h2>Performance by cell</h2><p class="note">Response time: mean [95% Student-t interval, clipped at 0 s]; the other columns are means over answers (RSS peak: maximum). Click a header to sort.</p><div class="scroll"><table id="perf-table" class="sortable"><thead><tr>"#);
    let show_k = top_k_varies(cells);
    let mut headers = axis_headers(show_k);
    headers.extend([
        ("response", "s, mean [95% CI]"),
        ("TTFT", "s"),
        ("decode", "tokens/s"),
        ("RSS mean", "MiB"),
        ("RSS peak", "MiB"),
        ("CPU", "% of a core"),
    ]);
    write_headers(s, &headers)?;
    s.push_str("</tr></thead><tbody>");
    for c in cells {
        s.push_str("<tr>");
        write_axis_cells(s, c, show_k)?;
        ci_cell(s, c.response_time_s, 2, "")?;
        num_cell(s, c.ttft_mean_s, |v| format!("{v:.2}"))?;
        num_cell(s, c.tokens_per_s_mean, |v| format!("{v:.1}"))?;
        num_cell(s, c.rss_mean_bytes.map(|b| b / MIB), |v| format!("{v:.0}"))?;
        num_cell(s, c.rss_peak_bytes.map(|b| b as f64 / MIB), |v| {
            format!("{v:.0}")
        })?;
        num_cell(s, c.cpu_mean_percent, |v| format!("{v:.0}"))?;
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div></section>");
    Ok(())
}

fn text_cell(s: &mut String, v: &str) -> Result<(), ReportError> {
    write!(s, "<td>{}</td>", esc(v))?;
    Ok(())
}

/// Right-aligned number with its raw value in `data-v` for sorting; `—` when missing.
pub(crate) fn num_cell(
    s: &mut String,
    v: Option<f64>,
    f: impl Fn(f64) -> String,
) -> Result<(), ReportError> {
    match v {
        Some(v) if v.is_finite() => {
            write!(s, r#"<td class="num" data-v="{v}">{}</td>"#, esc(&f(v)))?
        }
        _ => s.push_str(r#"<td class="num na" data-v="">—</td>"#),
    }
    Ok(())
}

/// Mean with the interval in smaller type.
fn ci_cell(
    s: &mut String,
    ci: Option<MeanCi>,
    decimals: usize,
    unit: &str,
) -> Result<(), ReportError> {
    match ci {
        Some(ci) if ci.mean.is_finite() && !ci.has_interval() => write!(
            s,
            r#"<td class="num" data-v="{m}">{m:.decimals$}{unit} <span class="ci">(n = {n})</span></td>"#,
            m = ci.mean,
            n = ci.n,
        )?,
        Some(ci) if ci.mean.is_finite() => write!(
            s,
            r#"<td class="num" data-v="{m}">{m:.decimals$}{unit} <span class="ci">[{lo:.decimals$}, {hi:.decimals$}]</span></td>"#,
            m = ci.mean,
            lo = ci.lo,
            hi = ci.hi,
        )?,
        _ => s.push_str(r#"<td class="num na" data-v="">—</td>"#),
    }
    Ok(())
}

/// `mean [lo, hi]unit` or `—` ([`interval_text`]).
fn fmt_ci(ci: Option<MeanCi>, decimals: usize, unit: &str) -> String {
    ci.map_or_else(|| "—".to_string(), |ci| interval_text(&ci, decimals, unit))
}

/// `mean<unit> [lo, hi]`; a single value has no spread to estimate, so it reads
/// `mean<unit> (n = 1)`, not a point interval `[mean, mean]` that looks like certainty.
pub(crate) fn interval_text(ci: &MeanCi, decimals: usize, unit: &str) -> String {
    if !ci.has_interval() {
        format!("{:.decimals$}{unit} (n = {})", ci.mean, ci.n)
    } else {
        format!(
            "{:.decimals$}{unit} [{:.decimals$}, {:.decimals$}]",
            ci.mean, ci.lo, ci.hi
        )
    }
}

/// Bytes as MiB with no decimals, or `—`.
fn fmt_mib(bytes: Option<f64>) -> String {
    bytes.map_or_else(|| "—".to_string(), |b| format!("{:.0} MiB", b / MIB))
}

/// The by-chunk-size charts, each only when some point has a value: response time, cosine,
/// retrieval metrics (one panel per metric, one colour per retriever, pooled over models), F1
/// and ROUGE-L.
fn write_charts(
    s: &mut String,
    answers: &[AnswerRecord],
    points: &[SeriesPoint],
    metric_names: &[String],
) -> Result<(), ReportError> {
    let secs = |v: f64| format!("{v:.2} s");
    let three = |v: f64| format!("{v:.3}");
    let caption = "Mean over questions and repeats, pooled over overlap and top_k; bars: 95% interval of the mean (see Methods). One panel per retriever, one colour per model. Hover a point for values.";
    if points.iter().any(|p| p.response_time_s.is_some()) {
        write!(
            s,
            r#"<section id="time-chart"><h2>Response time by chunk size</h2><p class="note">{}</p>"#,
            esc(caption)
        )?;
        let time = ChartSpec {
            id: "chart-time",
            y_label: "mean response time (s)",
            include_zero: true,
            clamp: None,
            pick: &|p| p.response_time_s,
            format: &secs,
            facet_title: "retriever: ",
        };
        s.push_str(&metric_by_chunk_svg(&time, points)?);
        s.push_str("</section>");
    }
    if points.iter().any(|p| p.cosine.is_some()) {
        write!(
            s,
            r#"<section id="cosine-chart"><h2>Answer quality by chunk size</h2><p class="note">Cosine similarity of answer and expected answer (all-MiniLM-L6-v2). {}</p>"#,
            esc(caption)
        )?;
        let cosine = ChartSpec {
            id: "chart-cosine",
            y_label: "mean cosine similarity",
            include_zero: false,
            clamp: Some((-1.0, 1.0)),
            pick: &|p| p.cosine,
            format: &three,
            facet_title: "retriever: ",
        };
        s.push_str(&metric_by_chunk_svg(&cosine, points)?);
        s.push_str("</section>");
    }
    let retrieval: Vec<&String> = metric_names
        .iter()
        .filter(|n| ["hit@", "mrr@", "ndcg@"].iter().any(|p| n.starts_with(p)))
        .collect();
    if !retrieval.is_empty() {
        // Re-shape: facet = metric, series = retriever label.
        let pooled = retrieval_series_points(answers)?;
        let mut reshaped = Vec::new();
        for p in &pooled {
            for m in &retrieval {
                if let Some(ci) = p.metrics.get(*m) {
                    reshaped.push(SeriesPoint {
                        model: p.retriever_label.clone(),
                        retriever_label: metric_title(m),
                        chunk_size: p.chunk_size,
                        cosine: Some(*ci),
                        response_time_s: None,
                        metrics: Default::default(),
                    });
                }
            }
        }
        s.push_str(r#"<section id="retrieval-chart"><h2>Retrieval quality by chunk size</h2><p class="note">Hit@k: share of questions with a relevant chunk among the k retrieved; MRR@k: mean reciprocal rank of the first relevant chunk; nDCG@k: normalized discounted cumulative gain (k = top_k). Retrieval does not depend on the model, so answers that differ only in the model count once. One panel per metric, one colour per retriever; bars: 95% Wilson (Hit@k) or clipped Student-t interval of the mean over questions and repeats.</p>"#);
        let spec = ChartSpec {
            id: "chart-retrieval",
            y_label: "mean over questions",
            include_zero: false,
            clamp: Some((0.0, 1.0)),
            pick: &|p| p.cosine,
            format: &three,
            facet_title: "",
        };
        s.push_str(&metric_by_chunk_svg(&spec, &reshaped)?);
        s.push_str("</section>");
    }
    for (m, what) in [
        (
            "f1",
            "Token-overlap F1 of answer and expected answer (SQuAD)",
        ),
        (
            "rouge_l",
            "ROUGE-L F-measure (longest common subsequence) of answer and expected answer",
        ),
    ] {
        if !points.iter().any(|p| p.metrics.contains_key(m)) {
            continue;
        }
        write!(
            s,
            r#"<section id="{m}-chart"><h2>{} by chunk size</h2><p class="note">{}. {}</p>"#,
            esc(&metric_title(m)),
            esc(what),
            esc(caption)
        )?;
        let id = format!("chart-{m}");
        let y_label = format!("mean {}", metric_title(m));
        let pick = move |p: &SeriesPoint| p.metrics.get(m).copied();
        let spec = ChartSpec {
            id: &id,
            y_label: &y_label,
            include_zero: false,
            clamp: Some((0.0, 1.0)),
            pick: &pick,
            format: &three,
            facet_title: "retriever: ",
        };
        s.push_str(&metric_by_chunk_svg(&spec, points)?);
        s.push_str("</section>");
    }
    Ok(())
}

/// One treemap to draw: svg id, heading, legend caption, value picker, value format.
type TreemapDef<'a> = (
    String,
    String,
    String,
    Box<dyn Fn(&QuestionStats) -> Option<f64> + 'a>,
    &'a dyn Fn(f64) -> String,
);

/// Treemaps model → question for cosine, response time and peak RSS, each only when some
/// question has a value; without cosine, one for the ranking metric instead.
fn write_treemaps(
    s: &mut String,
    questions: &[QuestionStats],
    rank_metric: Option<&str>,
) -> Result<(), ReportError> {
    let cos = |v: f64| format!("{v:.3}");
    let secs = |v: f64| format!("{v:.2} s");
    let mib = |v: f64| format!("{v:.0} MiB");
    let mut maps: Vec<TreemapDef<'_>> = Vec::new();
    if questions.iter().any(|q| q.cosine.is_some()) {
        maps.push((
            "treemap-cosine".into(),
            "Cosine similarity".into(),
            "mean cosine".into(),
            Box::new(|q: &QuestionStats| q.cosine),
            &cos,
        ));
    } else if let Some(m) = rank_metric.filter(|m| *m != "response_time_s") {
        let name = m.to_string();
        maps.push((
            "treemap-rank".into(),
            metric_title(m),
            format!("mean {}", metric_title(m)),
            Box::new(move |q: &QuestionStats| q.metrics.get(&name).copied()),
            &cos,
        ));
    }
    maps.push((
        "treemap-time".into(),
        "Response time".into(),
        "mean response time (s)".into(),
        Box::new(|q: &QuestionStats| q.response_time_s),
        &secs,
    ));
    maps.push((
        "treemap-rss".into(),
        "Peak memory".into(),
        "mean peak RSS (MiB)".into(),
        Box::new(|q: &QuestionStats| q.rss_peak_bytes.map(|b| b / MIB)),
        &mib,
    ));
    let drawn: Vec<(TreemapDef<'_>, Vec<Group>)> = maps
        .into_iter()
        .map(|def| {
            let groups = treemap_groups(questions, &*def.3, &def.2, def.4);
            (def, groups)
        })
        .filter(|(_, g)| !g.is_empty())
        .collect();
    if drawn.is_empty() {
        return Ok(());
    }
    s.push_str(r#"<section id="treemaps"><h2>Per question</h2><p class="note">Treemaps model → question: each rectangle is one question for one model, averaged over all cells and repeats; its area and colour both encode the metric (a question whose mean is 0 has no area). Hover for the question text.</p>"#);
    for ((id, heading, metric, _, format), groups) in drawn {
        write!(s, "<h3>{}</h3>", esc(&heading))?;
        let spec = TreemapSpec {
            id: &id,
            metric: &metric,
            format,
            width: 1200.0,
            height: 460.0,
            // memory is read as a ratio: a few MiB between questions are not a colour range
            zero_based: id == "treemap-rss",
        };
        s.push_str(&treemap_svg(&spec, &groups)?);
    }
    s.push_str("</section>");
    Ok(())
}

/// Groups leaves by model (input is sorted by model, then question).
fn treemap_groups(
    questions: &[QuestionStats],
    pick: &dyn Fn(&QuestionStats) -> Option<f64>,
    metric: &str,
    format: &dyn Fn(f64) -> String,
) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for q in questions {
        let Some(value) = pick(q).filter(|v| v.is_finite()) else {
            continue;
        };
        let leaf = Leaf {
            label: q.question_id.clone(),
            tooltip: format!(
                "{} · {}: {}\n{} {} over {} answers",
                q.model,
                q.question_id,
                q.question,
                metric,
                format(value),
                q.n_answers
            ),
            value,
        };
        match groups.last_mut() {
            Some(g) if g.label == q.model => g.leaves.push(leaf),
            _ => groups.push(Group {
                label: q.model.clone(),
                leaves: vec![leaf],
            }),
        }
    }
    groups
}

/// Methods: intervals, metrics, ranking, units.
fn write_methods(
    s: &mut String,
    rank_metric: Option<&str>,
    batched: usize,
    shared: usize,
    judge: &super::JudgeNotes,
) -> Result<(), ReportError> {
    write!(
        s,
        r#"<section id="methods"><h2>Methods</h2><p><b>Intervals.</b> {p:.0}% intervals of a mean, chosen by the metric’s range so that they never leave it. Proportions (Hit@k, EM, contains, correctness: 0 or 1 per answer): the Wilson score interval (Wilson 1927; statsmodels’ proportion_confint method “wilson”), which is not a point when every answer scored 0 or 1. Other metrics: the Student-t interval mean ± t<sub>(1+{l})/2, n−1</sub>·s/√n clipped to the metric’s range: [0, 1] for Recall@k, MRR@k, nDCG@k, F1, ROUGE-L, METEOR and judged shares, [−1, 1] for cosine, [0, ∞) for times. A single value has no interval: tables show it with its n = 1. The per-model table averages each question over the model’s cells and repeats first (its answers to one question are not independent), so its intervals are over questions; its “k/n correct” counts answers. Failed answers count in “failed” and in no mean.</p><p><b>Metrics.</b> Cosine: similarity of the answer’s and the expected answer’s all-MiniLM-L6-v2 embeddings. Retrieval (k = top_k; only questions with an evidence quote, a page or relevance judgements have them): a chunk is relevant when it contains the evidence quote (case, whitespace and line-end hyphenation folded), or, where a chunk boundary cut the quote, holds at least half of it at its start or end or lies wholly inside it; with only a page, when it is on that page; with BEIR qrels, retrieved chunks count as their documents (each at its best rank) judged by the qrels grade. Hit@k (a relevant item among the k retrieved), Recall@k (share of all relevant items retrieved), MRR@k (reciprocal rank of the first relevant item), nDCG@k (trec_eval ndcg_cut: gain = relevance grade, 1 for evidence and pages). Answers: EM and F1 (SQuAD exact match and token F1, best over the expected and the short answer), contains (the normalized short answer occurs in the answer), ROUGE-L (rouge-score’s LCS F-measure, no stemming), METEOR (nltk’s single_meteor_score).</p>"#,
        l = CI_LEVEL,
        p = CI_LEVEL * 100.0,
    )?;
    write!(
        s,
        r#"<p><b>Ranking.</b> Cells are ordered by the mean of {metric} (ties by the larger n, then label). Every other cell is compared with the best cell on the questions both have (paired, so question difficulty cancels out; a cell’s value on a question is the mean over its repeats, as answers to one question are not independent): the mean difference with its {p:.0}% paired Student-t interval and its {p:.0}% paired bootstrap interval (BCa, Efron 1987; {RANK_RESAMPLES} resamples from a fixed seed so the report is reproducible; percentile where BCa is undefined), and the two-sided paired t-test p-value. The p-values of the comparisons are adjusted by Holm’s step-down procedure (Holm 1979), which controls the family-wise error rate; a cell is marked significantly worse when its adjusted p &lt; {RANK_ALPHA}. “Tied” means the data do not show a difference at that level, not that the cells are equal. Cells with fewer than two common questions are not compared.</p>"#,
        metric = esc(&rank_metric
            .map(metric_title)
            .unwrap_or_else(|| "the ranking metric".into())),
        p = CI_LEVEL * 100.0,
    )?;
    s.push_str(r#"<p><b>Resources.</b> Memory: resident set size of the worker process (MiB = 2<sup>20</sup> bytes); CPU: percent of one core. Decode tokens/s: (completion tokens − 1) / (response time − TTFT), the generation rate after the first token (llama.cpp’s eval rate; prompt processing is in TTFT), averaged over answers."#);
    if batched > 0 {
        write!(
            s,
            r#" Latency (response time, TTFT, tokens/s) comes only from answers decoded alone: the {batched} answers decoded batched with other questions of their cell (a model’s <code>parallel</code> setting; their timings include the other sequences’ work) count in every quality metric but in no latency figure."#
        )?;
    }
    if shared > 0 {
        write!(
            s,
            r#" {shared} answers reused the generation of an identical prompt (same model file, settings, seed, question and retrieved chunks) stored by another cell or question instead of generating it again; their text, token counts and timings are the original generation’s (column <code>shared_from</code> of the export names its cell)."#
        )?;
    }
    s.push_str("</p>");
    if !judge.judges.is_empty() {
        write!(
            s,
            r#"<p><b>Judge.</b> faithfulness, answer relevancy, context precision, context recall and correctness are judged by a local LLM ({}) with greedy decoding under a grammar that admits only the expected JSON, so every verdict parses; definitions follow RAGAS (suffix <code>_ragas</code>, or no suffix) or DeepEval (<code>_deepeval</code>) as in the README. Correctness is 1 when the judge finds that the answer states the expected answer’s key facts without contradicting them; “k/n correct” counts those answers. Judgments the reference leaves undefined (RAGAS’s NaN) or that failed are in no mean and are counted in “Judge verdicts missing”."#,
            esc(&judge.judges.join(", "))
        )?;
        for a in &judge.agreements {
            let g = &a.agreement;
            write!(
                s,
                " Agreement of {} by judge {} with {} human labels ({}): accuracy {}, Cohen’s κ {}.",
                esc(&a.metric),
                esc(&a.judge),
                g.n,
                esc(&a.labels),
                g.accuracy().map_or("n/a".into(), |v| format!("{v:.2}")),
                g.kappa().map_or("n/a".into(), |v| format!("{v:.2}")),
            )?;
        }
        if judge.agreements.is_empty() {
            s.push_str(" Its agreement with human labels was not measured for these results (<code>orchestrate judge --labels FILE</code>).");
        }
        s.push_str("</p>");
    }
    s.push_str(r#"</section><footer><p>Generated by orchestrate.</p></footer>"#);
    Ok(())
}

/// Judge verdicts without a value, per cell and metric: undefined by the reference's definition,
/// failed (with the first error), or not made yet. Nothing when every judgment has a value.
fn write_judge_missing(s: &mut String, judge: &super::JudgeNotes) -> Result<(), ReportError> {
    if judge.missing.is_empty() {
        return Ok(());
    }
    let errors: usize = judge.missing.iter().map(|m| m.failed).sum();
    let undefined: usize = judge.missing.iter().map(|m| m.undefined).sum();
    let unjudged: usize = judge.missing.iter().map(|m| m.unjudged).sum();
    write!(
        s,
        r#"<section id="judge-missing"><h2>Judge verdicts missing</h2><p class="note">{undefined} judgments are undefined by the metric’s reference definition (e.g. RAGAS faithfulness of an answer with no statements), {errors} could not be made and {unjudged} were not made yet; none counts in any mean. <code>orchestrate judge</code> makes the missing ones; with <code>--retry-errors</code> also the failed ones again.</p><table><thead><tr><th>cell</th><th>metric</th><th>undefined</th><th>failed</th><th>not judged yet</th><th>first error</th></tr></thead><tbody>"#
    )?;
    for g in &judge.missing {
        write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num{}">{}</td><td class="num{}">{}</td><td>{}</td></tr>"#,
            esc(&g.cell),
            esc(&g.metric),
            g.undefined,
            if g.failed > 0 { " warn" } else { "" },
            g.failed,
            if g.unjudged > 0 { " warn" } else { "" },
            g.unjudged,
            esc(g.first_error.as_deref().unwrap_or("")),
        )?;
    }
    s.push_str("</tbody></table></section>");
    Ok(())
}

/// A warning at the top when judging stopped part-way: the judge metrics then cover only the
/// judged answers (nothing when every ok answer is judged).
fn write_judge_incomplete(
    s: &mut String,
    judge: &super::JudgeNotes,
    answers: &[AnswerRecord],
) -> Result<(), ReportError> {
    if judge.unjudged_answers == 0 {
        return Ok(());
    }
    let ok = answers
        .iter()
        .filter(|a| a.status == AnswerStatus::Ok)
        .count();
    write!(
        s,
        r##"<section id="judge-incomplete" class="warn-box"><h2>Judging incomplete</h2><p class="note">{} of {ok} answers are not yet judged on every judge metric (the judge was stopped, is still running, or was limited with <code>--questions</code>). The judge metrics’ means, intervals and “k/n correct” below cover the judged answers only; <a href="#judge-missing">Judge verdicts missing</a> counts them per cell. <code>orchestrate judge</code> continues where it stopped.</p></section>"##,
        judge.unjudged_answers
    )?;
    Ok(())
}

/// Inline stylesheet.
const CSS: &str = r#"
:root{--fg:#1d1d1f;--muted:#6b6b70;--line:#e3e3e8;--bg:#fff;--soft:#f6f6f8;--accent:#0072B2}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 12px}
h2{font-size:19px;margin:34px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:20px 0 4px;color:#333}
.meta{display:flex;flex-wrap:wrap;gap:8px 28px;margin:0}
.meta div{min-width:120px}.meta dt{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.meta dd{margin:0;font-weight:600}
.note{color:var(--muted);margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin:10px 0 16px}
.card{flex:1 1 300px;border:1px solid var(--line);border-radius:8px;padding:12px 16px;background:var(--soft)}
.card .cap{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .big{font-size:22px;font-weight:650;margin:2px 0;font-variant-numeric:tabular-nums}
.card .sub{color:#333}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap;position:sticky;top:0;vertical-align:bottom}
th .unit{display:block;font-weight:400;font-size:10.5px;color:var(--muted)}
#cell-table td{white-space:nowrap;padding:4px 8px}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[data-dir=asc]::after{content:" ▲";font-size:10px}
table.sortable th[data-dir=desc]::after{content:" ▼";font-size:10px}
tbody tr:nth-child(even){background:#fafafb}
tbody tr:hover{background:#eef5fb}
td.num{text-align:right;white-space:nowrap}
td.na{color:#aaa}
.ci{color:var(--muted);font-size:11px}
.warn{color:#D55E00;font-weight:600}
.warn-box{border-left:4px solid #D55E00;padding:.2em 1em;margin:1em 0;background:#fff6f0}
.scroll{overflow-x:auto;max-width:100%}
table.answers td.text{min-width:220px;max-width:380px;white-space:pre-wrap}
table.answers td.q{min-width:220px;max-width:300px}
table.answers td.nw{white-space:nowrap}
table.answers td.cell{min-width:150px;max-width:190px}
table.answers td.mt{min-width:200px;max-width:200px;font-size:11px;line-height:1.5}
table.answers td.mt span{display:inline-block;width:58px;white-space:nowrap}
table.answers td.mt i{font-style:normal;color:var(--muted)}
table.answers td.cks{min-width:120px;max-width:200px;line-height:1.7}
.ck{display:inline-block;padding:0 4px;margin:0 1px 1px 0;border:1px solid var(--line);border-radius:4px;font-size:11.5px;white-space:nowrap;color:var(--fg);text-decoration:none;background:var(--soft)}
a.ck{color:var(--accent);border-color:#b9d3ea}
a.ck:hover{background:#e2eef8}
.ck small{color:var(--muted);margin-left:2px;font-size:10px}
.ck.cut{text-decoration:line-through;opacity:.55}
#cell-table td.q2{line-height:1.2}
#cell-table td.q2 .ci{display:block;font-size:10.5px}
#cell-table th{white-space:nowrap}
#cell-table td{padding:4px 7px}
table.ranking td{white-space:nowrap;vertical-align:middle}
table.ranking svg.diff{display:inline-block;margin:0;vertical-align:middle}
table.ranking td.ci-col{color:#444;font-size:12px}
tr.rank-best td{background:#fff6d9}
tr.rank-worse td{color:#777}
tr.rank-worse td:nth-child(2){text-decoration:none}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:11.5px;font-weight:600;white-space:nowrap}
.badge.best{background:#E69F00;color:#1d1d1f}
.badge.tied{background:#d8eaf7;color:#004b75}
.badge.front-b{background:#e69f00;color:#1a1a1a;border:2px solid #1a1a1a}
.badge.tied-b{background:#bfe1f6;color:#004b75;border:1px solid #0072b2}
.badge.dominated-b{background:#ddd;color:#333;border:1px solid #888}
.trade-off{font-size:1.08em;font-weight:600;max-width:60em}
#front-chart{max-width:820px}
#front-chart .pt circle{fill:#bbb;fill-opacity:.55;stroke:#888;stroke-width:1}
#front-chart .pt.tied circle{fill:#56b4e9;fill-opacity:.45;stroke:#0072b2;stroke-width:1.2}
#front-chart .pt.front circle{fill:#e69f00;fill-opacity:.9;stroke:#1a1a1a;stroke-width:2.4}
#front-chart .pt .err{stroke:#888;stroke-width:1.2}
#front-chart .pt.front .err{stroke:#1a1a1a}
#front-chart .pt:hover circle{stroke:#d55e00;stroke-width:3}
#front-chart .axis-label{font-size:12px;fill:#333}
#front-table tr.on-front td:first-child{font-weight:600}
tr:target{outline:2px solid #d55e00;background:#fff4e0}
.badge.worse{background:#fbe3d4;color:#a34500}
.badge.na{background:#eee;color:#666}
.chunk{border:1px solid var(--line);border-radius:6px;padding:6px 10px;margin:6px 0;scroll-margin-top:12px}
.chunk:target{outline:3px solid #E69F00;background:#fffbea}
.chunk-head{font-size:12px;color:var(--muted)}
.chunk-text{white-space:pre-wrap;font-size:12.5px;max-height:16em;overflow:auto}
#methods p{max-width:980px}
details summary{cursor:pointer;font-weight:600;font-size:16px;margin:30px 0 8px}
svg{display:block;margin:6px 0 10px;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
svg text{font-size:12px;fill:#333}
svg .legend text{font-size:13px}
svg .facet-title{font-size:13px;font-weight:600}
svg .axis-title{font-size:12px;fill:#555}
svg .tick{font-size:11px;fill:#555}
svg .plot-bg{fill:#fbfbfc;stroke:none}
svg .grid{stroke:#e6e6ea;stroke-width:1}
svg .axis,svg .tick-mark{stroke:#888;stroke-width:1}
svg .line{fill:none;stroke-width:2;stroke-opacity:.75}
svg .errbar line{stroke-width:1.6}
svg .pt{stroke:#fff;stroke-width:1.2}
svg .tm-leaf{stroke:#fff;stroke-width:1}
svg .tm-head{fill:#fff;font-size:12px;font-weight:600}
svg .tm-label{fill:#fff;font-size:10.5px;pointer-events:none}
svg .tm-label.dark{fill:#111}
svg .legend-title{font-size:12px;fill:#333}
footer{margin-top:36px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
"#;

/// Inline script: click a table header to sort by that column (numbers by `data-v`); opens the
/// collapsed `<details>` around a linked chunk (`#chunk-…`) and scrolls to it; marks
/// `<html data-js="ok">` when it ran to the end (the browser test checks it).
const JS: &str = r#"
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){th.addEventListener("click",function(){
    var asc=th.dataset.dir!=="asc",b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
    t.querySelectorAll("th").forEach(function(h){delete h.dataset.dir});th.dataset.dir=asc?"asc":"desc";
    function key(r){var c=r.cells[i];return c.dataset.v!==undefined?c.dataset.v:c.textContent}
    rows.sort(function(x,y){var a=key(x),c=key(y),na=parseFloat(a),nb=parseFloat(c),d;
      if(a===""||c===""){d=(a==="")-(c==="");return d}
      d=(!isNaN(na)&&!isNaN(nb))?na-nb:a.localeCompare(c);return asc?d:-d});
    rows.forEach(function(r){b.appendChild(r)});
  })})
});
function openTarget(){var id=decodeURIComponent(location.hash.slice(1)),el=id&&document.getElementById(id);
  if(!el)return;for(var p=el.parentElement;p;p=p.parentElement){if(p.tagName==="DETAILS")p.open=true}el.scrollIntoView()}
window.addEventListener("hashchange",openTarget);openTarget();
document.documentElement.setAttribute("data-js","ok");
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::tests::answer;

    #[test]
    fn the_ranking_names_cells_without_its_metric() {
        let mut rows = Vec::new();
        for (model, key) in [("m1", "ndcg@4"), ("m2", "ndcg@4"), ("m3", "ndcg@9")] {
            for (q, v) in [("q1", 1.0), ("q2", 0.5)] {
                let mut a = answer(model, 500, "dense", q, 0.5, 1.0);
                a.metrics = [(key.to_string(), v)].into_iter().collect();
                rows.push(a);
            }
        }
        let meta = ReportMeta {
            rank_metric: Some("ndcg@4".into()),
            ..ReportMeta::default()
        };
        let html = render_html("t", &meta, &rows).unwrap();
        let ranking = html.split(r#"id="ranking""#).nth(1).unwrap();
        let ranking = &ranking[..ranking.find("</section>").unwrap()];
        assert!(
            ranking.contains("1 cell has no ndcg@4 and is not ranked; it has ndcg@9"),
            "{ranking}"
        );
    }

    #[test]
    fn one_answer_per_cell_reads_as_n_equals_one_everywhere_but_a_wilson_interval() {
        let mut rows = Vec::new();
        for (model, v) in [("m1", 0.832), ("m2", 0.805)] {
            let mut a = answer(model, 500, "dense", "q1", v, 1.0);
            a.metrics = [("ndcg@4".to_string(), v), ("hit@4".to_string(), 1.0)]
                .into_iter()
                .collect();
            rows.push(a);
        }
        let html = render_html("t", &ReportMeta::default(), &rows).unwrap();
        assert!(!html.contains("[0.832, 0.832]"), "no point interval");
        assert!(html.contains("0.832 (n = 1)"), "headline");
        assert!(!html.contains("±0.000"), "quality table");
        // one 0/1 value still has its Wilson interval (1/1: [0.207, 1])
        assert!(html.contains("[0.207, 1.000]"), "hit@4 interval");
        let t = crate::stats::mean_ci(&[2.0], 0.95).unwrap();
        assert_eq!(interval_text(&t, 2, " s"), "2.00 s (n = 1)");
        let t = crate::stats::mean_ci(&[1.0, 3.0], 0.95).unwrap();
        assert!(interval_text(&t, 2, " s").starts_with("2.00 s [-"));
    }

    #[test]
    fn retrieval_headline_says_any_model_when_there_are_several() {
        let mut rows = Vec::new();
        for model in ["m1", "m2"] {
            for (q, hit) in [("q1", 1.0), ("q2", 0.0)] {
                let mut a = answer(model, 500, "dense", q, 0.5, 1.0);
                a.metrics = [("ndcg@4".to_string(), hit)].into_iter().collect();
                rows.push(a);
            }
        }
        let html = render_html("t", &ReportMeta::default(), &rows).unwrap();
        assert!(html.contains("Best mean nDCG@4 (any model)"), "two models");
        rows.retain(|a| a.cell.model == "m1");
        let html = render_html("t", &ReportMeta::default(), &rows).unwrap();
        assert!(
            html.contains("Best mean nDCG@4") && !html.contains("(any model)"),
            "one model"
        );
    }

    #[test]
    fn escapes_everything_dangerous() {
        assert_eq!(
            esc(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let mut rows = Vec::new();
        for (i, chunk) in [500, 1000].iter().enumerate() {
            for q in 0..3 {
                let mut a = answer(
                    "m<x>",
                    *chunk,
                    "dense",
                    &format!("q{q}"),
                    0.3 + 0.1 * q as f64,
                    1.0 + i as f64,
                );
                a.answer = "<script>alert(1)</script> & more".into();
                rows.push(a);
            }
        }
        let meta = ReportMeta {
            experiment_name: "exp <1>".into(),
            experiment_file: "experiments/a.toml".into(),
            run_started: Some("2026-11-21T10:00:00Z".into()),
            host: Some("AMD EPYC, 2 cores, 24 GiB".into()),
            index_builds: vec![("dense 500".into(), Some(12.5))],
            ..ReportMeta::default()
        };
        let html = render_html("Report <b>", &meta, &rows).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        for bad in [
            "<script>alert",
            "m<x>",
            "exp <1>",
            "Report <b>",
            "http://",
            "https://",
        ] {
            let hits: Vec<_> = html.match_indices(bad).collect();
            // The SVG namespace URI is the only allowed URL.
            let allowed = html.matches("http://www.w3.org/2000/svg").count();
            if bad == "http://" {
                assert_eq!(hits.len(), allowed);
            } else {
                assert!(hits.is_empty(), "{bad} not escaped");
            }
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert!(html.contains("dense 500: 12.5 s"));
        // 1 model × 1 retriever × 2 chunk sizes: 2 points in each chart.
        assert_eq!(html.matches(r#"<circle class="pt""#).count(), 4);
        // 3 questions × 3 treemaps.
        assert_eq!(html.matches(r#"class="tm-leaf""#).count(), 9);
        assert_eq!(html.matches("<tr><td class=\"q\"").count(), 6);
    }

    #[test]
    fn empty_report_renders() {
        let html = render_html("t", &ReportMeta::default(), &[]).unwrap();
        assert!(html.contains("No answers stored yet."));
        assert!(html.ends_with("</html>\n"));
    }

    /// Two cells × 6 questions with retrieval and answer metrics; cell B lacks `f1` on q5.
    fn with_metrics() -> Vec<AnswerRecord> {
        let mut rows = Vec::new();
        for (model, shift) in [("a", 0.0), ("b", 0.2)] {
            for q in 0..6 {
                let mut r = answer(model, 500, "dense", &format!("q{q}"), 0.4 + shift, 1.0);
                let hit = f64::from(q % 2 == 0 || shift > 0.0);
                r.metrics = [
                    ("hit@4", hit),
                    ("ndcg@4", hit * (0.5 + 0.05 * q as f64)),
                    ("f1", 0.1 * q as f64 + shift),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                if model == "b" && q == 5 {
                    r.metrics.remove("f1");
                }
                rows.push(r);
            }
        }
        rows
    }

    #[test]
    fn judge_correctness_heads_the_report_as_k_of_n_and_missing_verdicts_are_counted() {
        let mut rows = Vec::new();
        for (model, correct) in [("a", [1.0, 1.0, 0.0, 1.0]), ("b", [0.0, 0.0, 1.0, 0.0])] {
            for (i, v) in correct.iter().enumerate() {
                let mut r = answer(model, 500, "dense", &format!("q{i}"), 0.5, 1.0);
                r.metrics.insert("correctness".into(), *v);
                r.metrics.insert("faithfulness".into(), 0.25 * i as f64);
                rows.push(r);
            }
        }
        let meta = ReportMeta {
            judge: super::super::JudgeNotes {
                judges: vec!["abc:greedy".into()],
                missing: vec![super::super::JudgeGap {
                    cell: "b · dense 500/50".into(),
                    metric: "faithfulness".into(),
                    undefined: 1,
                    failed: 2,
                    unjudged: 0,
                    first_error: Some("judge output cut at max_tokens 1024".into()),
                }],
                unjudged_answers: 0,
                agreements: vec![crate::store::JudgeAgreementRecord {
                    judge: "abc:greedy".into(),
                    metric: "correctness".into(),
                    labels: "correctness.jsonl".into(),
                    agreement: crate::stats::agreement::Agreement::of(
                        &[true, true, false, false],
                        &[true, false, false, false],
                    ),
                }],
            },
            ..ReportMeta::default()
        };
        let html = render_html("t", &meta, &rows).unwrap();
        let headline = html.split(r#"id="headline""#).nth(1).unwrap();
        let headline = &headline[..headline.find("</section>").unwrap()];
        assert!(
            headline.contains("Most answers judged correct<"),
            "{headline}"
        );
        assert!(headline.contains("3/4 correct (75%)") && headline.contains("1/4 correct (25%)"));
        // faithfulness is a judge metric with a CI in the quality table
        let table = html.split(r#"<table id="cell-table""#).nth(1).unwrap();
        assert!(table[..table.find("</table>").unwrap()].contains(">faithfulness<"));
        let missing = html.split(r#"id="judge-missing""#).nth(1).unwrap();
        assert!(
            missing.contains("1 judgments are undefined")
                && missing.contains("2 could not be made")
                && missing.contains("0 were not made yet")
        );
        assert!(missing.contains("cut at max_tokens"));
        assert!(!html.contains("judge-incomplete"), "judging is complete");
        let methods = html.split(r#"id="methods""#).nth(1).unwrap();
        assert!(
            methods.contains("abc:greedy") && methods.contains("Cohen’s κ 0.50"),
            "{methods}"
        );
        // Nothing judged: no judge section and no judge paragraph.
        let plain = render_html("t", &ReportMeta::default(), &rows[..1]).unwrap();
        assert!(!plain.contains("judge-missing") && !plain.contains("<b>Judge.</b>"));
    }

    #[test]
    fn quality_table_matches_mean_ci() {
        let rows = with_metrics();
        let cells = summarize(&rows).unwrap();
        let html = render_html("t", &ReportMeta::default(), &rows).unwrap();
        let table = html.split(r#"<table id="cell-table""#).nth(1).unwrap();
        let table = &table[..table.find("</table>").unwrap()];
        // Header order: cosine, then report::metric_order (retrieval by k, then answer).
        let (h, n, f) = (
            table.find(">Hit@4<").unwrap(),
            table.find(">nDCG@4<").unwrap(),
            table.find(">F1<").unwrap(),
        );
        assert!(table.find(">cosine<").unwrap() < h && h < n && n < f);
        for (c, model) in cells.iter().zip(["a", "b"]) {
            let mine: Vec<&AnswerRecord> = rows.iter().filter(|r| r.cell.model == model).collect();
            for m in ["hit@4", "ndcg@4", "f1"] {
                let xs: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| r.metrics.get(m).copied())
                    .collect();
                // Wilson for hit@4, clipped t for nDCG and F1
                let method = crate::score::metric::Metric::parse(m).interval_method();
                let want = crate::stats::bounded_mean_ci(method, &xs, CI_LEVEL).unwrap();
                let got = c.metrics[m];
                assert_eq!(got.n, want.n, "{model} {m}");
                assert!((got.mean - want.mean).abs() < 1e-12, "{model} {m}");
                assert!((got.lo - want.lo).abs() < 1e-12 && (got.hi - want.hi).abs() < 1e-12);
                // The table shows the same numbers: mean, interval and n.
                let cell_html = format!(
                    "{:.3}<span class=\"ci\">[{:.3}, {:.3}] ({})</span>",
                    want.mean, want.lo, want.hi, want.n
                );
                assert!(table.contains(&cell_html), "{model} {m}: {cell_html}");
            }
        }
        assert_eq!(cells[1].metrics["f1"].n, 5);
        // Constant top_k: no top_k column; chunk as size/overlap.
        assert!(!table.contains(">top_k<") && table.contains(">500/50</td>"));
    }

    #[test]
    fn retrieval_only_report_has_no_empty_sections() {
        let mut rows = with_metrics();
        for r in &mut rows {
            use crate::retrieve::{Bm25Variant, RetrieverKind};
            r.cell.model = "retrieval-only".into();
            r.cell.cell_id = format!("ro-{}", if r.cosine.unwrap() > 0.5 { "b" } else { "a" });
            let bm25 = r.cell.cell_id == "ro-b";
            let retrieval = &mut r.cell.retrieval;
            retrieval.retriever = if bm25 {
                RetrieverKind::Bm25
            } else {
                RetrieverKind::Dense
            };
            retrieval.bm25 = bm25.then_some(Bm25Variant::Okapi);
            retrieval.dense_index = retrieval.dense_index.filter(|_| !bm25);
            r.answer.clear();
            r.metrics.remove("f1");
            r.cosine = None;
            r.response_time_s = None;
            r.ttft_s = None;
            r.prompt_tokens = None;
            r.completion_tokens = None;
            r.rss_mean_bytes = None;
            r.rss_peak_bytes = None;
            r.cpu_mean_percent = None;
        }
        let html = render_html("t", &ReportMeta::default(), &rows).unwrap();
        for absent in [
            "time-chart",
            "cosine-chart",
            "treemap-cosine",
            "treemap-time",
            "treemap-rss",
            "perf-table",
            "No values to plot",
            "Fastest",
            "mean cosine",
            "<th>answer</th>",
            "<th>cosine</th>",
        ] {
            assert!(!html.contains(absent), "{absent} present");
        }
        for present in [
            "Best mean nDCG@4",
            "Ranking by nDCG@4",
            r#"id="ranking-table""#,
            r#"id="chart-retrieval""#,
            r#"id="treemap-rank""#,
            "bm25:okapi",
        ] {
            assert!(html.contains(present), "{present} missing");
        }
        // The best nDCG cell is the bm25 one (every question hit).
        let rank = html.split(r#"id="ranking-table""#).nth(1).unwrap();
        let first = &rank[rank.find("<tbody>").unwrap()..];
        let first = &first[..first.find("</tr>").unwrap()];
        assert!(
            first.contains("bm25:okapi") && first.contains("★ best"),
            "{first}"
        );
    }

    #[test]
    fn unknown_rank_metric_is_a_note_not_an_error() {
        let meta = ReportMeta {
            rank_metric: Some("bleu".into()),
            ..ReportMeta::default()
        };
        let html = render_html("t", &meta, &with_metrics()).unwrap();
        assert!(html.contains("unknown metric `bleu`"));
    }

    #[test]
    fn best_and_fastest_pick_extremes() {
        let rows = vec![
            answer("a", 500, "dense", "q1", 0.9, 5.0),
            answer("b", 500, "dense", "q1", 0.2, 0.5),
            answer("c", 500, "dense", "q1", 0.5, 2.0),
        ];
        let cells = summarize(&rows).unwrap();
        let best = best_by(&cells, |c| c.cosine.map(|ci| ci.mean), true).unwrap();
        let fast = best_by(&cells, |c| c.response_time_s.map(|ci| ci.mean), false).unwrap();
        assert_eq!(
            (best.axes.model.as_str(), fast.axes.model.as_str()),
            ("a", "b")
        );
    }
}
