//! Assembly of the self-contained HTML report: header, headline, per-cell table, charts,
//! treemaps and the per-answer table. No external resources: inline CSS, inline SVG, and a few
//! lines of inline JS that only add click-to-sort to tables (the page is complete without JS).

use std::fmt::Write as _;

use super::aggregate::{
    model_summaries, question_stats, retriever_label, series_points, summarize, CellSummary,
    ModelSummary, QuestionStats, SeriesPoint,
};
use super::charts::{metric_by_chunk_svg, ChartSpec};
use super::treemap::{treemap_svg, Group, Leaf, TreemapSpec};
use super::{ReportError, ReportMeta, CI_LEVEL};
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
/// Sections: header (experiment, file, run start, host, counts, index build times), headline
/// (best cell by mean cosine, fastest cell, per-model totals), per-cell summary table with 95%
/// CIs, response time and cosine by chunk size (faceted by retriever, one colour per model),
/// treemaps model → question for cosine, response time and peak RSS, and every answer in a
/// collapsed `<details>`. All text from `title`, `meta` and `answers` is HTML-escaped.
/// Errors: [`ReportError`] from aggregation.
pub fn render_html(
    title: &str,
    meta: &ReportMeta,
    answers: &[AnswerRecord],
) -> Result<String, ReportError> {
    let cells = summarize(answers)?;
    let models = model_summaries(answers)?;
    let points = series_points(answers)?;
    let questions = question_stats(answers)?;
    let mut s = String::with_capacity(64 * 1024 + answers.len() * 1024);
    write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body><main>",
        esc(title)
    )?;
    write_header(&mut s, title, meta, &cells, answers)?;
    if answers.is_empty() {
        s.push_str(r#"<p class="note">No answers stored yet.</p>"#);
    } else {
        write_headline(&mut s, &cells, &models)?;
        write_cell_table(&mut s, &cells)?;
        write_charts(&mut s, &points)?;
        write_treemaps(&mut s, &questions)?;
        write_answers(&mut s, answers)?;
    }
    write_methods(&mut s)?;
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
    let failed = answers.iter().filter(|a| a.status == "failed").count();
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
    if !meta.index_builds.is_empty() {
        let builds: Vec<String> = meta
            .index_builds
            .iter()
            .map(|(label, secs)| format!("{label}: {secs:.1} s"))
            .collect();
        item("index builds", &builds.join(" · "))?;
    }
    s.push_str("</dl></header>");
    Ok(())
}

/// Best and fastest cells, and one line per model.
fn write_headline(
    s: &mut String,
    cells: &[CellSummary],
    models: &[ModelSummary],
) -> Result<(), ReportError> {
    s.push_str(r#"<section id="headline"><h2>Headline</h2><div class="cards">"#);
    let best = best_by(cells, |c| c.cosine.map(|ci| ci.mean), true);
    let fastest = best_by(cells, |c| c.response_time_s.map(|ci| ci.mean), false);
    if let Some(c) = best {
        write_card(s, "Best mean cosine", &fmt_ci(c.cosine, 3, ""), c)?;
    }
    if let Some(c) = fastest {
        write_card(
            s,
            "Fastest mean response",
            &fmt_ci(c.response_time_s, 2, " s"),
            c,
        )?;
    }
    s.push_str("</div>");
    s.push_str(
        r#"<table class="models"><thead><tr><th>model</th><th>answers</th><th>failed</th><th>mean cosine [95% CI]</th><th>mean response time [95% CI]</th><th>peak RSS</th></tr></thead><tbody>"#,
    );
    for m in models {
        write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&m.model),
            m.n_answers,
            if m.n_failed > 0 { " warn" } else { "" },
            m.n_failed,
            fmt_ci(m.cosine, 3, ""),
            fmt_ci(m.response_time_s, 2, " s"),
            fmt_mib(m.rss_peak_bytes.map(|b| b as f64)),
        )?;
    }
    s.push_str("</tbody></table></section>");
    Ok(())
}

/// The cell whose metric is largest (`max`) or smallest; cells without the metric are skipped.
fn best_by(
    cells: &[CellSummary],
    metric: fn(&CellSummary) -> Option<f64>,
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
        esc(&c.model),
        esc(&c.label()),
    )?;
    Ok(())
}

/// Per-cell summary table (sortable by clicking a header when JS runs).
fn write_cell_table(s: &mut String, cells: &[CellSummary]) -> Result<(), ReportError> {
    s.push_str(r#"<section id="cells"><h2>Cells</h2><p class="note">One row per cell (all repeats pooled). Intervals are 95% Student-t intervals of the mean. Click a header to sort.</p><div class="scroll"><table id="cell-table" class="sortable"><thead><tr>"#);
    for (name, unit) in [
        ("model", ""),
        ("retriever", ""),
        ("BM25 w", ""),
        ("chunk", "chars"),
        ("overlap", "chars"),
        ("top_k", ""),
        ("n", ""),
        ("failed", ""),
        ("cosine", "mean [95% CI]"),
        ("response", "s, mean [95% CI]"),
        ("TTFT", "s"),
        ("speed", "tokens/s"),
        ("RSS mean", "MiB"),
        ("RSS peak", "MiB"),
        ("CPU", "% of a core"),
    ] {
        write!(
            s,
            r#"<th>{}<span class="unit">{}</span></th>"#,
            esc(name),
            esc(unit)
        )?;
    }
    s.push_str("</tr></thead><tbody>");
    for c in cells {
        s.push_str("<tr>");
        text_cell(s, &c.model)?;
        text_cell(s, &retriever_label(&c.retriever, None, c.fetch_k))?;
        num_cell(s, c.ensemble_weight, |v| format!("{v:.2}"))?;
        num_cell(s, Some(f64::from(c.chunk_size)), |v| format!("{v:.0}"))?;
        num_cell(s, Some(f64::from(c.chunk_overlap)), |v| format!("{v:.0}"))?;
        num_cell(s, Some(f64::from(c.top_k)), |v| format!("{v:.0}"))?;
        num_cell(s, Some(c.n_answers as f64), |v| format!("{v:.0}"))?;
        num_cell(s, Some(c.n_failed as f64), |v| format!("{v:.0}"))?;
        ci_cell(s, c.cosine, 3, "")?;
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
fn num_cell(s: &mut String, v: Option<f64>, f: impl Fn(f64) -> String) -> Result<(), ReportError> {
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

/// `mean [lo, hi]unit` or `—`.
fn fmt_ci(ci: Option<MeanCi>, decimals: usize, unit: &str) -> String {
    match ci {
        Some(ci) => format!(
            "{:.decimals$}{unit} [{:.decimals$}, {:.decimals$}]",
            ci.mean, ci.lo, ci.hi
        ),
        None => "—".to_string(),
    }
}

/// Bytes as MiB with no decimals, or `—`.
fn fmt_mib(bytes: Option<f64>) -> String {
    bytes.map_or_else(|| "—".to_string(), |b| format!("{:.0} MiB", b / MIB))
}

/// The two by-chunk-size charts.
fn write_charts(s: &mut String, points: &[SeriesPoint]) -> Result<(), ReportError> {
    let secs = |v: f64| format!("{v:.2} s");
    let cos = |v: f64| format!("{v:.3}");
    let caption = "Mean over questions and repeats, pooled over overlap and top_k; bars: 95% t-interval of the mean. One panel per retriever, one colour per model. Hover a point for values.";
    write!(
        s,
        r#"<section id="time-chart"><h2>Response time by chunk size</h2><p class="note">{}</p>"#,
        esc(caption)
    )?;
    let time = ChartSpec {
        id: "chart-time",
        y_label: "mean response time (s)",
        include_zero: true,
        pick: |p| p.response_time_s,
        format: &secs,
    };
    s.push_str(&metric_by_chunk_svg(&time, points)?);
    write!(
        s,
        r#"</section><section id="cosine-chart"><h2>Answer quality by chunk size</h2><p class="note">Cosine similarity of answer and expected answer (all-MiniLM-L6-v2). {}</p>"#,
        esc(caption)
    )?;
    let cosine = ChartSpec {
        id: "chart-cosine",
        y_label: "mean cosine similarity",
        include_zero: false,
        pick: |p| p.cosine,
        format: &cos,
    };
    s.push_str(&metric_by_chunk_svg(&cosine, points)?);
    s.push_str("</section>");
    Ok(())
}

/// Treemaps model → question for cosine, response time and peak RSS.
fn write_treemaps(s: &mut String, questions: &[QuestionStats]) -> Result<(), ReportError> {
    s.push_str(r#"<section id="treemaps"><h2>Per question</h2><p class="note">Treemaps model → question: each rectangle is one question for one model, averaged over all cells and repeats; its area and colour both encode the metric. Hover for the question text.</p>"#);
    let cos = |v: f64| format!("{v:.3}");
    let secs = |v: f64| format!("{v:.2} s");
    let mib = |v: f64| format!("{v:.0} MiB");
    let maps: [(
        &str,
        &str,
        &str,
        fn(&QuestionStats) -> Option<f64>,
        &dyn Fn(f64) -> String,
    ); 3] = [
        (
            "treemap-cosine",
            "Cosine similarity",
            "mean cosine",
            |q| q.cosine,
            &cos,
        ),
        (
            "treemap-time",
            "Response time",
            "mean response time (s)",
            |q| q.response_time_s,
            &secs,
        ),
        (
            "treemap-rss",
            "Peak memory",
            "mean peak RSS (MiB)",
            |q| q.rss_peak_bytes.map(|b| b / MIB),
            &mib,
        ),
    ];
    for (id, heading, metric, pick, format) in maps {
        let groups = treemap_groups(questions, pick, metric, format);
        write!(s, "<h3>{}</h3>", esc(heading))?;
        let spec = TreemapSpec {
            id,
            metric,
            format,
            width: 1200.0,
            height: 460.0,
        };
        s.push_str(&treemap_svg(&spec, &groups)?);
    }
    s.push_str("</section>");
    Ok(())
}

/// Groups leaves by model (input is sorted by model, then question).
fn treemap_groups(
    questions: &[QuestionStats],
    pick: fn(&QuestionStats) -> Option<f64>,
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

/// Every answer, collapsed.
fn write_answers(s: &mut String, answers: &[AnswerRecord]) -> Result<(), ReportError> {
    write!(
        s,
        r#"<section id="answers"><details><summary>All answers ({})</summary><div class="scroll"><table id="answer-table" class="sortable answers"><thead><tr><th>question</th><th>model</th><th>cell</th><th>rep</th><th>cosine</th><th>time s</th><th>answer</th><th>expected</th><th>pages</th><th>status</th></tr></thead><tbody>"#,
        answers.len()
    )?;
    for a in answers {
        let cell = format!(
            "{} · {}/{} · k={}",
            retriever_label(&a.retriever, a.ensemble_weight, a.fetch_k),
            a.chunk_size,
            a.chunk_overlap,
            a.top_k
        );
        let pages: Vec<String> = a.pages.iter().map(u32::to_string).collect();
        write!(
            s,
            r#"<tr><td class="q" title="{qt}"><b>{qid}</b> {qt}</td><td>{m}</td><td>{cell}</td><td class="num">{r}</td>"#,
            qid = esc(&a.question_id),
            qt = esc(&a.question),
            m = esc(&a.model),
            cell = esc(&cell),
            r = a.repeat,
        )?;
        num_cell(s, a.cosine, |v| format!("{v:.3}"))?;
        num_cell(s, a.response_time_s, |v| format!("{v:.2}"))?;
        write!(
            s,
            r#"<td class="text">{}</td><td class="text">{}</td><td>{}</td><td class="{}">{}</td></tr>"#,
            esc(&a.answer),
            esc(&a.expected_answer),
            esc(&pages.join(" ")),
            if a.status == "failed" { "warn" } else { "" },
            esc(&a.status),
        )?;
    }
    s.push_str("</tbody></table></div></details></section>");
    Ok(())
}

/// Short methods footnote.
fn write_methods(s: &mut String) -> Result<(), ReportError> {
    write!(
        s,
        r#"<footer><p>Intervals: mean ± t<sub>(1+{l})/2, n−1</sub>·s/√n ({p:.0}% Student-t; n = 1 gives a zero-width interval). Failed answers count in “failed” and in no mean. Memory: resident set size of the worker process (MiB = 2<sup>20</sup> bytes); CPU: percent of one core. tokens/s: completion tokens / response time, averaged over answers. Generated by orchestrate.</p></footer>"#,
        l = CI_LEVEL,
        p = CI_LEVEL * 100.0,
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
.scroll{overflow-x:auto;max-width:100%}
table.answers td.text{min-width:260px;max-width:420px;white-space:pre-wrap}
table.answers td.q{max-width:280px}
table.answers td:nth-child(2),table.answers td:nth-child(3),table.answers td:nth-child(9){white-space:nowrap}
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

/// Inline script: click a table header to sort by that column (numbers by `data-v`); marks
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
document.documentElement.setAttribute("data-js","ok");
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::tests::answer;

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
            index_builds: vec![("dense 500".into(), 12.5)],
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
        assert_eq!((best.model.as_str(), fast.model.as_str()), ("a", "b"));
    }
}
