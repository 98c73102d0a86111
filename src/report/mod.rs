//! Reports over stored answers: per-cell aggregation (polars), a significance ranking of cells,
//! and one self-contained HTML file (inline CSS, inline SVG charts and treemaps, a few lines of
//! optional JS for table sorting).
//!
//! Submodules: [`aggregate`] (polars group-bys and confidence intervals), [`answers`] (the
//! per-answer table and the chunk appendix it links to), [`ranking`] (cells
//! ranked on one metric, paired comparisons with the best, Holm adjustment), [`charts`] (point
//! and error-bar charts by chunk size), [`treemap`] (squarified treemap layout and SVG),
//! [`html`] (page assembly and escaping), [`palette`] (colour-blind-safe colours, axis ticks).

use std::collections::BTreeMap;

pub mod aggregate;
pub mod answers;
pub mod charts;
pub mod front;
pub mod html;
pub mod palette;
pub mod ranking;
pub mod treemap;

pub use aggregate::{
    cell_summaries, summarize, CellAxes, CellSummary, ModelSummary, QuestionStats, SeriesPoint,
};
pub use html::render_html;
pub use ranking::{
    available_rank_metrics, default_rank_metric, holm_adjust, rank_cells, ranking_text,
    unranked_note, RankedCell, RANK_ALPHA, RANK_RESAMPLES, RANK_SEED,
};

/// Confidence level of every interval in reports.
pub const CI_LEVEL: f64 = 0.95;

/// Metric names present in `answers`, in report order: retrieval metrics (`hit@k`, `recall@k`,
/// `mrr@k`, `ndcg@k`, by k), then answer metrics (`em`, `f1`, `contains`, `rouge_l`, `meteor`),
/// then any other name alphabetically.
pub fn metric_columns(answers: &[crate::store::AnswerRecord]) -> Vec<String> {
    let mut names: Vec<String> = answers
        .iter()
        .flat_map(|a| a.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    names.sort_by_key(|n| metric_order(n));
    names
}

/// Sort key of a metric name for [`metric_columns`]: [`Metric::order_key`].
///
/// [`Metric::order_key`]: crate::score::metric::Metric::order_key
pub fn metric_order(name: &str) -> (u8, usize, u8, String) {
    crate::score::metric::Metric::parse(name).order_key()
}

/// `answers` with the timings of batched answers removed (`response_time_s` and `ttft_s` set to
/// `None` where [`crate::store::AnswerRecord::timed_alone`] is false), so every latency figure of
/// a report (response time, TTFT, tokens/s, the latency ranking) comes from questions decoded
/// alone. Everything else is unchanged.
pub fn latency_view(answers: &[crate::store::AnswerRecord]) -> Vec<crate::store::AnswerRecord> {
    answers
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if !a.timed_alone() {
                a.response_time_s = None;
                a.ttft_s = None;
            }
            a
        })
        .collect()
}

/// Errors of report building.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A polars operation (frame construction, group-by, column access) failed.
    #[error("aggregating answers with polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    /// Formatting into the output string failed (does not happen for `String` targets).
    #[error("formatting report: {0}")]
    Fmt(#[from] std::fmt::Error),
    /// A ranking was asked for a metric the answers do not have.
    #[error(
        "unknown metric `{metric}`: the answers have {}",
        if available.is_empty() { "no metrics".to_string() } else { available.join(", ") }
    )]
    UnknownMetric {
        /// The metric asked for.
        metric: String,
        /// Metrics the answers have ([`ranking::available_rank_metrics`]).
        available: Vec<String>,
    },
    /// A paired comparison rejected its arguments (invalid level, no resamples).
    #[error("comparing cells: {0}")]
    Paired(#[from] crate::stats::paired::PairedError),
}

/// Context shown in the report header and data the answers do not carry; not derived from the
/// answers. Serializes with serde (JSON map keys are strings: chunk ids become `"17"`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportMeta {
    /// Experiment name from its TOML file.
    pub experiment_name: String,
    /// Path of the experiment TOML file, as given.
    pub experiment_file: String,
    /// When the run started, already formatted (e.g. RFC 3339), if known.
    pub run_started: Option<String>,
    /// Short host description, e.g. `"AMD EPYC, 2 cores, 24 GiB"`.
    pub host: Option<String>,
    /// Indexes the cells used: (label, build seconds, `None` when reused from the cache), in
    /// display order.
    pub index_builds: Vec<(String, Option<f64>)>,
    /// Texts of the chunks answers were given, one set per index a cell recorded
    /// (`cells.index_dir`); may be empty (answers then show chunk ids and pages only).
    #[serde(default)]
    pub chunk_sets: Vec<ChunkSet>,
    /// Metric of the report's ranking section (see [`ranking::rank_cells`]); `None` picks
    /// [`ranking::default_rank_metric`].
    #[serde(default)]
    pub rank_metric: Option<String>,
    /// Cells that failed, with why: (label, first line of the error). Shown in the header
    /// and a section of their own, answers or not.
    #[serde(default)]
    pub failed_cells: Vec<(String, String)>,
    /// Cells a race stopped early, with the evidence: (label, one line). Shown in a section of
    /// their own; their means cover only the questions they answered.
    #[serde(default)]
    pub eliminated_cells: Vec<(String, String)>,
    /// Cells a sweep has not finished, with their state (`interrupted`, `running now`,
    /// `pending`): (label, state). Shown in a warning box; their means cover the answers stored
    /// so far.
    #[serde(default)]
    pub unfinished_cells: Vec<(String, String)>,
    /// What the LLM judge did (`orchestrate judge`): judges, missing verdicts, agreement with
    /// human labels. Empty when nothing was judged.
    #[serde(default)]
    pub judge: JudgeNotes,
}

/// The judge's part of the report, from the database's `judgments` and `judge_agreement`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgeNotes {
    /// Judge identities that stored judgments.
    pub judges: Vec<String>,
    /// Judgments without a value, one row per cell and metric that has any: undefined, failed,
    /// or not made yet (the judge was stopped or is still running).
    pub missing: Vec<JudgeGap>,
    /// Ok answers not yet judged on every metric some answer was judged on; 0 when judging is
    /// complete. The judge metrics' means cover the judged answers only.
    #[serde(default)]
    pub unjudged_answers: usize,
    /// Agreement of judges with human labels.
    pub agreements: Vec<crate::store::JudgeAgreementRecord>,
}

/// One cell and judge metric with judgments that have no value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgeGap {
    /// The cell's label, told apart as in [`crate::cell::distinct_labels`].
    pub cell: String,
    /// The stored metric name (`faithfulness`, `correctness_deepeval`, ...).
    pub metric: String,
    /// Judgments the metric's reference definition leaves undefined (RAGAS's NaN).
    pub undefined: usize,
    /// Judgments that could not be made (stored errors).
    pub failed: usize,
    /// Ok answers of the cell with no judgment of this metric yet.
    #[serde(default)]
    pub unjudged: usize,
    /// The first stored error, if any failed.
    pub first_error: Option<String>,
}

/// The chunks of one index that some answer used.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChunkSet {
    /// The index directory the chunk ids refer to (as in `AnswerRecord::index_dir`).
    pub index_dir: String,
    /// Characters.
    pub chunk_size: u32,
    /// Characters.
    pub chunk_overlap: u32,
    /// Chunk id (as in [`crate::store::AnswerRecord::chunk_ids`]) → its page and text; only ids
    /// some answer used.
    pub chunks: BTreeMap<u32, ChunkText>,
}

/// One chunk's text and where it comes from.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChunkText {
    /// 1-based page the chunk comes from (as in `AnswerRecord::pages`).
    pub page: u32,
    /// The chunk text as indexed.
    pub text: String,
}
