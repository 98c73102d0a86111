//! The per-answer table of the report and the appendix of retrieved chunk texts it links to.
//!
//! Every answer lists the chunks it was given in rank order as `id p<page>`; when
//! [`ReportMeta::chunk_sets`](super::ReportMeta::chunk_sets) holds the chunk's text, the entry is
//! a link to `#`[`chunk_anchor`] in the appendix, where each (chunk size, overlap, id) appears
//! once, however many answers used it (`:target` highlights the linked block).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::html::{esc, num_cell};
use super::{ChunkSet, ChunkText, ReportError};
use crate::cell::AnswerStatus;
use crate::store::AnswerRecord;

/// HTML id of the appendix block of chunk `chunk_id` of the index `set` (its position among the
/// report's chunk sets): `chunk-{set}-{id}`, e.g. `chunk-0-17`.
pub fn chunk_anchor(set: usize, chunk_id: u32) -> String {
    format!("chunk-{set}-{chunk_id}")
}

/// Chunk sets by index directory: (position, set).
struct ChunkLookup<'a>(HashMap<&'a str, (usize, &'a ChunkSet)>);

impl<'a> ChunkLookup<'a> {
    fn new(sets: &'a [ChunkSet]) -> Self {
        let mut map = HashMap::new();
        for (i, set) in sets.iter().enumerate() {
            // The first set of an index wins should the caller pass duplicates.
            map.entry(set.index_dir.as_str()).or_insert((i, set));
        }
        ChunkLookup(map)
    }

    /// The chunk `id` of the index `a` recorded, with its set's position.
    fn get(&self, a: &AnswerRecord, id: u32) -> Option<(usize, &'a ChunkText)> {
        let (i, set) = self.0.get(a.index_dir.as_deref()?)?;
        set.chunks.get(&id).map(|c| (*i, c))
    }
}

/// Short name of a metric in answer rows: `hit`, `rec`, `mrr`, `ndcg` (k is the cell's top_k),
/// `EM`, `F1`, `has`, `R-L`, `MET`; other names unchanged.
fn short_metric(name: &str) -> String {
    crate::score::metric::Metric::parse(name).short()
}

/// A metric value in answer rows: `0` / `1` exactly, else two decimals.
fn short_value(v: f64) -> String {
    if v == 0.0 || v == 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Every answer, collapsed: question, model, cell, repeat, cosine and time (when any answer has
/// them), the named metrics compactly, answer and expected answer, the retrieved chunks in rank
/// order (linked to the appendix when their text is known) and the status.
pub(crate) fn write_answers(
    s: &mut String,
    answers: &[AnswerRecord],
    chunk_sets: &[ChunkSet],
    metric_names: &[String],
) -> Result<(), ReportError> {
    let lookup = ChunkLookup::new(chunk_sets);
    let has_cosine = answers.iter().any(|a| a.cosine.is_some());
    let has_time = answers.iter().any(|a| a.response_time_s.is_some());
    let has_answer = answers.iter().any(|a| !a.answer.is_empty());
    let has_metrics = !metric_names.is_empty();
    write!(
        s,
        r#"<section id="answers"><details><summary>All answers ({})</summary><p class="note">Chunks: the retrieved chunks in rank order, as <i>id</i> p<i>page</i>{}; <s>struck through</s>: retrieved (and scored by the retrieval metrics) but not given to the model, dropped to fit its context window.{}</p><div class="scroll"><table id="answer-table" class="sortable answers"><thead><tr><th>question</th><th>model</th><th>cell</th><th>rep</th>"#,
        answers.len(),
        if chunk_sets.is_empty() {
            ""
        } else {
            "; click one to read its text in the appendix"
        },
        if has_metrics {
            " Metrics: hit, rec(all), mrr, ndcg at k = top_k; EM, F1, has (contains), R-L (ROUGE-L), MET (METEOR)."
        } else {
            ""
        },
    )?;
    if has_cosine {
        s.push_str("<th>cosine</th>");
    }
    if has_time {
        s.push_str("<th>time s</th>");
    }
    if has_metrics {
        s.push_str("<th>metrics</th>");
    }
    if has_answer {
        s.push_str("<th>answer</th>");
    }
    s.push_str("<th>expected</th><th>chunks</th><th>status</th></tr></thead><tbody>");
    for a in answers {
        write!(
            s,
            r#"<tr><td class="q" title="{qt}"><b>{qid}</b> {qt}</td><td class="nw">{m}</td><td class="cell">{cell}</td><td class="num">{r}</td>"#,
            qid = esc(&a.question_id),
            qt = esc(&a.question),
            m = esc(&a.cell.model),
            cell = esc(&a.cell.retrieval_label()),
            r = a.repeat,
        )?;
        if has_cosine {
            num_cell(s, a.cosine, |v| format!("{v:.3}"))?;
        }
        if has_time {
            num_cell(s, a.response_time_s, |v| format!("{v:.2}"))?;
        }
        if has_metrics {
            write_metrics_cell(s, a, metric_names)?;
        }
        if has_answer {
            write!(s, r#"<td class="text">{}</td>"#, esc(&a.answer))?;
        }
        write!(s, r#"<td class="text">{}</td>"#, esc(&a.expected_answer))?;
        write_chunks_cell(s, a, &lookup)?;
        write!(
            s,
            r#"<td class="{}">{}</td></tr>"#,
            if a.status == AnswerStatus::Failed {
                "warn"
            } else {
                ""
            },
            match &a.error {
                Some(e) => format!(
                    r#"<span title="{}">{}</span>"#,
                    esc(e),
                    esc(a.status.as_str())
                ),
                None => esc(a.status.as_str()),
            },
        )?;
    }
    s.push_str("</tbody></table></div></details></section>");
    Ok(())
}

/// The answer's metrics as `name value` pairs in report order; the full names in the tooltip.
fn write_metrics_cell(
    s: &mut String,
    a: &AnswerRecord,
    metric_names: &[String],
) -> Result<(), ReportError> {
    let present: Vec<(&str, f64)> = metric_names
        .iter()
        .filter_map(|n| a.metrics.get(n).map(|v| (n.as_str(), *v)))
        .collect();
    if present.is_empty() {
        s.push_str(r#"<td class="mt na">—</td>"#);
        return Ok(());
    }
    let tip: Vec<String> = present
        .iter()
        .map(|(n, v)| format!("{n} = {}", round4(*v)))
        .collect();
    write!(s, r#"<td class="mt" title="{}">"#, esc(&tip.join(", ")))?;
    for (n, v) in present {
        write!(
            s,
            "<span><i>{}</i> {}</span>",
            esc(&short_metric(n)),
            esc(&short_value(v))
        )?;
    }
    s.push_str("</td>");
    Ok(())
}

/// `v` with at most 4 decimals, trailing zeros dropped (`0.5`, `0.3333`, `1`).
fn round4(v: f64) -> String {
    let t = format!("{v:.4}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    if t.is_empty() || t == "-" || t == "-0" {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// The answer's chunks in rank order; links when the text is known.
fn write_chunks_cell(
    s: &mut String,
    a: &AnswerRecord,
    lookup: &ChunkLookup<'_>,
) -> Result<(), ReportError> {
    s.push_str(r#"<td class="cks">"#);
    for (rank, &id) in a.chunk_ids.iter().enumerate() {
        let page = a.pages.get(rank).copied();
        let page_txt = page.map(|p| format!("p{p}")).unwrap_or_default();
        let mut tip = match page {
            Some(p) => format!("rank {}: chunk {id}, page {p}", rank + 1),
            None => format!("rank {}: chunk {id}", rank + 1),
        };
        // Chunks past `contexts_used` were retrieved but did not fit the context window.
        let given = a.contexts_used.is_none_or(|n| rank < n as usize);
        let class = if given { "ck" } else { "ck cut" };
        if !given {
            tip.push_str(" (not given to the model: did not fit n_ctx)");
        }
        if let Some((set, _)) = lookup.get(a, id) {
            write!(
                s,
                r##"<a class="{class}" href="#{}" title="{}">{id}<small>{}</small></a> "##,
                chunk_anchor(set, id),
                esc(&tip),
                esc(&page_txt),
            )?;
        } else {
            write!(
                s,
                r#"<span class="{class}" title="{}">{id}<small>{}</small></span> "#,
                esc(&tip),
                esc(&page_txt),
            )?;
        }
    }
    s.push_str("</td>");
    Ok(())
}

/// Appendix: the text of every chunk some answer used and `chunk_sets` knows, once per
/// (size, overlap, id), grouped by chunking; each block has the id [`chunk_anchor`]. Nothing is
/// written when no used chunk has a text.
pub(crate) fn write_chunk_appendix(
    s: &mut String,
    answers: &[AnswerRecord],
    chunk_sets: &[ChunkSet],
) -> Result<(), ReportError> {
    let lookup = ChunkLookup::new(chunk_sets);
    // set position → id → number of answers that used the chunk.
    let mut used: BTreeMap<usize, BTreeMap<u32, usize>> = BTreeMap::new();
    for a in answers {
        for &id in &a.chunk_ids {
            if let Some((set, _)) = lookup.get(a, id) {
                *used.entry(set).or_default().entry(id).or_default() += 1;
            }
        }
    }
    let total: usize = used.values().map(BTreeMap::len).sum();
    if total == 0 {
        return Ok(());
    }
    write!(
        s,
        r#"<section id="chunks"><details id="chunk-appendix"><summary>Retrieved chunks ({total})</summary><p class="note">The text of every chunk retrieved for an answer above, once per chunking; links in the answers jump here.</p>"#
    )?;
    for (&set, ids) in &used {
        let Some(chunk_set) = chunk_sets.get(set) else {
            continue;
        };
        write!(
            s,
            r#"<h3>chunk size {}, overlap {} <span class="unit">({} chunks; index {})</span></h3>"#,
            chunk_set.chunk_size,
            chunk_set.chunk_overlap,
            ids.len(),
            esc(index_name(&chunk_set.index_dir)),
        )?;
        for (&id, &uses) in ids {
            let Some(chunk) = chunk_set.chunks.get(&id) else {
                continue;
            };
            write!(
                s,
                r#"<div class="chunk" id="{}"><div class="chunk-head"><b>chunk {id}</b> · page {} · used by {uses} answer{}</div><div class="chunk-text">{}</div></div>"#,
                chunk_anchor(set, id),
                chunk.page,
                if uses == 1 { "" } else { "s" },
                esc(&chunk.text),
            )?;
        }
    }
    s.push_str("</details></section>");
    Ok(())
}

/// The last path component of an index directory, shortened to 12 characters (its digest).
fn index_name(dir: &str) -> &str {
    let name = std::path::Path::new(dir)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(dir);
    name.get(..12).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{render_html, ReportMeta};

    /// An answer of the chunking `chunk`, recording the index of that chunking.
    fn answer(model: &str, chunk: u32, retriever: &str, q: &str, cos: f64, t: f64) -> AnswerRecord {
        let mut a = super::super::aggregate::tests::answer(model, chunk, retriever, q, cos, t);
        a.index_dir = Some(format!("store/indexes/abc{chunk}"));
        a
    }

    fn sets() -> Vec<ChunkSet> {
        let chunk = |page: u32, text: &str| ChunkText {
            page,
            text: text.into(),
        };
        vec![ChunkSet {
            index_dir: "store/indexes/abc500".into(),
            chunk_size: 500,
            chunk_overlap: 50,
            chunks: [
                (1, chunk(3, "first <chunk> & text")),
                (2, chunk(4, "second")),
            ]
            .into_iter()
            .collect(),
        }]
    }

    #[test]
    fn anchors_are_stable() {
        assert_eq!(chunk_anchor(2, 17), "chunk-2-17");
    }

    #[test]
    fn answers_link_to_deduplicated_appendix() {
        // Three answers of the 500/50 chunking use chunks 1 and 2; one 1000/100 answer uses
        // chunks without texts.
        let mut rows = vec![
            answer("m", 500, "dense", "q1", 0.5, 1.0),
            answer("m", 500, "dense", "q2", 0.6, 1.0),
            answer("n", 500, "dense", "q1", 0.7, 1.0),
            answer("m", 1000, "dense", "q1", 0.7, 1.0),
        ];
        rows[1].chunk_ids = vec![2, 1];
        rows[1].pages = vec![4, 3];
        let meta = ReportMeta {
            chunk_sets: sets(),
            ..ReportMeta::default()
        };
        let html = render_html("t", &meta, &rows).unwrap();
        // One block per chunk, however many answers used it.
        assert_eq!(html.matches(r#"id="chunk-0-1""#).count(), 1);
        assert_eq!(html.matches(r#"id="chunk-0-2""#).count(), 1);
        assert!(html.contains("used by 3 answers"));
        // Every link resolves to a block; 3 answers × 2 chunks linked.
        let links: Vec<&str> = html
            .match_indices(r##"href="#chunk-"##)
            .map(|(i, _)| {
                let rest = &html[i + 7..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect();
        assert_eq!(links.len(), 6);
        for l in &links {
            assert!(html.contains(&format!(r#"id="{l}""#)), "dangling link {l}");
        }
        // Rank order is kept: the second answer lists chunk 2 before chunk 1.
        let row = html.split("<b>q2</b>").nth(1).unwrap();
        let (i2, i1) = (
            row.find("chunk-0-2").unwrap(),
            row.find("chunk-0-1").unwrap(),
        );
        assert!(i2 < i1);
        // Unknown chunking: ids and pages shown without links.
        assert!(html.contains(
            r#"<span class="ck" title="rank 1: chunk 1, page 3">1<small>p3</small></span>"#
        ));
        // Texts are escaped.
        assert!(html.contains("first &lt;chunk&gt; &amp; text"));
    }

    #[test]
    fn without_chunk_sets_no_appendix_and_no_links() {
        let rows = vec![answer("m", 500, "dense", "q1", 0.5, 1.0)];
        let html = render_html("t", &ReportMeta::default(), &rows).unwrap();
        assert!(!html.contains(r#"id="chunks""#));
        assert!(!html.contains(r##"href="#chunk-"##));
        assert!(html.contains("1<small>p3</small>") && html.contains("2<small>p4</small>"));
    }

    #[test]
    fn chunks_dropped_to_fit_the_context_are_struck_through() {
        let mut a = answer("m", 500, "dense", "q1", 0.5, 1.0);
        a.contexts_used = Some(1);
        let meta = ReportMeta {
            chunk_sets: sets(),
            ..ReportMeta::default()
        };
        let html = render_html("t", &meta, &[a.clone()]).unwrap();
        assert!(
            html.contains(r##"<a class="ck" href="#chunk-0-1" title="rank 1: chunk 1, page 3">"##)
        );
        assert!(html.contains(r##"<a class="ck cut" href="#chunk-0-2" title="rank 2: chunk 2, page 4 (not given to the model: did not fit n_ctx)">"##));
        // Retrieval only (None): nothing is struck through.
        a.contexts_used = None;
        let html = render_html("t", &meta, &[a]).unwrap();
        assert!(!html.contains(r#"class="ck cut""#));
    }

    #[test]
    fn metrics_shown_compactly() {
        let mut a = answer("m", 500, "dense", "q1", 0.5, 1.0);
        a.metrics = [("hit@4", 1.0), ("mrr@4", 0.5), ("f1", 0.4242)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let html = render_html("t", &ReportMeta::default(), &[a]).unwrap();
        assert!(html.contains(
            "<span><i>hit</i> 1</span><span><i>mrr</i> 0.50</span><span><i>F1</i> 0.42</span>"
        ));
    }

    #[test]
    fn tooltip_values_are_rounded() {
        assert_eq!(round4(0.5), "0.5");
        assert_eq!(round4(1.0), "1");
        assert_eq!(round4(0.0), "0");
        assert_eq!(round4(1.0 / 3.0), "0.3333");
    }

    #[test]
    fn meta_round_trips_through_json() {
        let meta = ReportMeta {
            experiment_name: "e".into(),
            chunk_sets: sets(),
            rank_metric: Some("ndcg@4".into()),
            ..ReportMeta::default()
        };
        let json = serde_json::to_string(&meta).unwrap();
        assert!(json.contains(r#""1":{"page":3"#), "{json}");
        let back: ReportMeta = serde_json::from_str(&json).unwrap();
        assert_eq!(back, meta);
        // Older JSON without the new fields still parses.
        let old = r#"{"experiment_name":"e","experiment_file":"f","run_started":null,"host":null,"index_builds":[]}"#;
        let back: ReportMeta = serde_json::from_str(old).unwrap();
        assert!(back.chunk_sets.is_empty() && back.rank_metric.is_none());
    }
}
