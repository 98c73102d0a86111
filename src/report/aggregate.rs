//! Aggregation of answers with polars: per cell (the summary table), per model × retriever ×
//! chunk size (chart points), per model × question (treemap leaves) and per model (headline).
//!
//! Every mean comes with a 95% interval computed from the group's mean, sample standard deviation
//! (ddof = 1), count of non-missing values and whether they are all 0 or 1, by the method the
//! metric's range calls for ([`crate::score::metric::Metric::interval_method`]: Wilson for
//! proportions, the Student-t interval clipped to the range otherwise;
//! [`crate::stats::bounded_ci_from_moments`]).
//! Failed answers have no metrics, so they count in `n_failed` but not in any mean.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::metric_columns;
use super::{ReportError, CI_LEVEL};
use crate::cell::{AnswerStatus, CellStatus};
use crate::score::metric::Metric;
use crate::stats::{bounded_ci_from_moments, MeanCi};
use crate::store::AnswerRecord;
use crate::store::StoredCell;

pub use crate::cell::CellAxes;

/// Aggregated metrics of one cell (one point of the experiment grid, all repeats pooled).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CellSummary {
    /// The cell's axes (serialized inline).
    #[serde(flatten)]
    pub axes: CellAxes,
    /// The cell's stored status (`None` when summarised from answers alone).
    pub status: Option<CellStatus>,
    /// Why the cell failed (its stored error), for failed cells.
    pub error: Option<String>,
    /// Answers in the cell, failed ones included.
    pub n_answers: usize,
    /// Answers with status `failed`.
    pub n_failed: usize,
    /// Cosine similarity to the expected answer: mean, std and 95% CI (t clipped to [−1, 1])
    /// over the questions that have one (each the mean over its repeats).
    pub cosine: Option<MeanCi>,
    /// Response time in seconds: mean, std and 95% CI (t clipped at 0) over questions.
    pub response_time_s: Option<MeanCi>,
    /// Mean time to first token, seconds.
    pub ttft_mean_s: Option<f64>,
    /// Mean over answers of the decode speed, (completion_tokens − 1) / (response_time_s −
    /// ttft_s), tokens per second.
    pub tokens_per_s_mean: Option<f64>,
    /// Mean over answers of the per-answer mean RSS, bytes.
    pub rss_mean_bytes: Option<f64>,
    /// Maximum over answers of the per-answer peak RSS, bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Mean CPU use, percent of one core.
    pub cpu_mean_percent: Option<f64>,
    /// Every named metric of the cell's answers ([`AnswerRecord::metrics`]: `hit@k`, `ndcg@k`,
    /// `f1`, …): mean, std and 95% CI over the questions that have it, each the mean over its
    /// repeats (`MeanCi::n` is that count; with one repeat, the answers; the interval's method
    /// is the metric's [`crate::score::metric::Metric::interval_method`], recorded in
    /// `MeanCi::method`). Metrics no answer of the cell has are absent. Display order:
    /// [`crate::report::metric_order`].
    pub metrics: BTreeMap<String, MeanCi>,
    /// Verdict metrics (0/1 per answer: `correctness`, `hit@k`, `em`, …): (answers with 1,
    /// answers with a value), the "k of n correct" over answers.
    #[serde(default)]
    pub counts: BTreeMap<String, (usize, usize)>,
}

impl CellSummary {
    /// Human label of the cell's retrieval axes (see [`crate::cell::Retrieval`]'s Display).
    pub fn label(&self) -> String {
        self.axes.retrieval_label()
    }

    /// Mean and CI of `metric`: `cosine`, `response_time_s` or a key of
    /// [`CellSummary::metrics`]; `None` when the cell has no value of it.
    pub fn metric(&self, metric: &str) -> Option<MeanCi> {
        match metric {
            "cosine" => self.cosine,
            "response_time_s" => self.response_time_s,
            m => self.metrics.get(m).copied(),
        }
    }
}

/// One chart point: a model × facet × chunk size group, pooled over repeats and questions. The
/// facet ([`crate::cell::Retrieval::facet_label`]) holds every axis but the chunk size, so
/// cells that differ in any other axis are never pooled.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesPoint {
    /// Model name (the colour of the series).
    pub model: String,
    /// [`crate::cell::Retrieval::facet_label`] of the group (the facet).
    pub retriever_label: String,
    /// Characters (the x position).
    pub chunk_size: u32,
    /// Cosine mean and 95% CI.
    pub cosine: Option<MeanCi>,
    /// Response time mean and 95% CI, seconds.
    pub response_time_s: Option<MeanCi>,
    /// Named metrics ([`AnswerRecord::metrics`]): mean and 95% CI over the group's answers that
    /// have them; absent when none has.
    pub metrics: BTreeMap<String, MeanCi>,
}

/// Means of one question for one model over all cells and repeats (a treemap leaf).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuestionStats {
    /// Model name.
    pub model: String,
    /// Question id.
    pub question_id: String,
    /// Question text (first seen).
    pub question: String,
    /// Answers in the group, failed ones included.
    pub n_answers: usize,
    /// Mean cosine similarity.
    pub cosine: Option<f64>,
    /// Mean response time, seconds.
    pub response_time_s: Option<f64>,
    /// Mean of the per-answer peak RSS, bytes.
    pub rss_peak_bytes: Option<f64>,
    /// Mean of each named metric over the group's answers that have it.
    pub metrics: BTreeMap<String, f64>,
}

/// Totals of one model over every cell (headline).
///
/// A model's answers to one question are not independent samples (every cell of the grid asks
/// it), so the means and intervals are over questions: each question's mean over the model's
/// cells and repeats first, then the mean of those question means with its 95% interval
/// (n = questions; the metric's method on the question means: clipped Student-t, or Wilson
/// when every question mean is 0 or 1). Pooling the answers as if independent would make the
/// interval about √(cells) times too narrow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelSummary {
    /// Model name.
    pub model: String,
    /// Answers, failed ones included.
    pub n_answers: usize,
    /// Failed answers.
    pub n_failed: usize,
    /// Cosine: mean and 95% CI over questions.
    pub cosine: Option<MeanCi>,
    /// Response time: mean and 95% CI over questions, seconds.
    pub response_time_s: Option<MeanCi>,
    /// Maximum peak RSS, bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Named metrics: mean and 95% CI over the questions with a value.
    pub metrics: BTreeMap<String, MeanCi>,
    /// Verdict metrics (0/1 per answer, Wilson intervals: `correctness`, `hit@k`, `em`, …):
    /// (answers with 1, answers with a value), pooled over every cell: the "k of n correct".
    pub counts: BTreeMap<String, (usize, usize)>,
}

/// Per-cell aggregation of `answers` (polars lazy group-by over the cell id; each cell's axes come
/// from its answers' [`CellAxes`]). Counts, times per answer, RSS and CPU are over answers; the
/// quality metrics' and response time's means and intervals are over questions, each question's
/// mean over its repeats first ([`question_moments`]; with one repeat, the answers).
///
/// Returns one [`CellSummary`] per distinct cell, sorted by [`axes_cmp`]. An empty input gives an
/// empty vector.
/// Errors: [`ReportError::Polars`] if polars fails.
pub fn summarize(answers: &[AnswerRecord]) -> Result<Vec<CellSummary>, ReportError> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    let mut aggs = count_aggs();
    aggs.extend([
        col("ttft_s").mean().alias("ttft_s_mean"),
        col("tokens_per_s").mean().alias("tokens_per_s_mean"),
        col("rss_mean_bytes").mean().alias("rss_mean_bytes_mean"),
        col("rss_peak_bytes").max().alias("rss_peak_bytes_max"),
        col("cpu_mean_percent")
            .mean()
            .alias("cpu_mean_percent_mean"),
    ]);
    let names = metric_columns(answers);
    let verdicts = verdict_metrics(&names);
    aggs.extend(verdict_aggs(&verdicts));
    let df = grouped(answers, &["cell_id"], aggs)?;
    let (moments, row_of) = question_moments(answers, "cell_id", &names)?;
    let axes: std::collections::HashMap<&str, &CellAxes> = answers
        .iter()
        .map(|a| (a.cell.cell_id.as_str(), &a.cell))
        .collect();
    let mut cells = (0..df.height())
        .map(|i| {
            let id = str_at(&df, "cell_id", i)?;
            let axes = axes.get(id.as_str()).map(|a| (*a).clone());
            let mut row = cell_row(&df, i, (&moments, row_of[&id]), &names, axes)?;
            row.counts = counts_at(&df, &verdicts, i)?;
            Ok(row)
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    cells.sort_by(|a, b| axes_cmp(&a.axes, &b.axes));
    Ok(cells)
}

/// [`question_moments`] grouped by several `keys` (e.g. a chart's model × facet × chunk size):
/// one row per key combination, in first-appearance order.
fn question_moments_by(
    answers: &[AnswerRecord],
    keys: &[&str],
    names: &[String],
) -> Result<DataFrame, ReportError> {
    let mut value_cols = vec!["cosine".to_string(), "response_time_s".to_string()];
    value_cols.extend(names.iter().map(|n| metric_col(n)));
    let question_means: Vec<Expr> = value_cols.iter().map(|c| col(c).mean().alias(c)).collect();
    let moments: Vec<Expr> = value_cols.iter().flat_map(|c| moment_aggs(c)).collect();
    let by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    let mut by_question = by.clone();
    by_question.push(col("question_id"));
    Ok(answers_frame(answers)?
        .lazy()
        .group_by_stable(by_question)
        .agg(question_means)
        .group_by_stable(by)
        .agg(moments)
        .collect()?)
}

/// The `{column}_mean|_std|_n|_nonbinary` moments ([`moment_aggs`]) of cosine, response time
/// and every metric in `names`, per value of `key` (`cell_id` or `model`), over questions: the
/// mean of each question's values per key first (its repeats, and for a model its cells), then
/// the moments of those question means. Answers to one question are not independent samples
/// (the repeats of a deterministic cell are copies of one answer), so an interval over them
/// would be too narrow. Both group-bys keep first-appearance order, so sums run in row order
/// and the same answers give the same digits in every output. Returns the frame and its row
/// index per key value.
/// Errors: [`ReportError::Polars`].
fn question_moments(
    answers: &[AnswerRecord],
    key: &str,
    names: &[String],
) -> Result<(DataFrame, BTreeMap<String, usize>), ReportError> {
    let df = question_moments_by(answers, &[key], names)?;
    let row_of = (0..df.height())
        .map(|i| Ok((str_at(&df, key, i)?, i)))
        .collect::<Result<_, ReportError>>()?;
    Ok((df, row_of))
}

/// One summary per stored cell, in [`summarize`]'s order: the cells with answers summarised, their
/// status and error attached, and cells without any answer (e.g. failed at load) added with
/// zero answers, so a failed cell shows in every output.
/// Errors: [`ReportError::Polars`].
pub fn cell_summaries(
    cells: &[StoredCell],
    answers: &[AnswerRecord],
) -> Result<Vec<CellSummary>, ReportError> {
    let mut out = summarize(answers)?;
    for c in cells {
        match out.iter_mut().find(|s| s.axes.cell_id == c.cell.id) {
            Some(s) => {
                s.status = Some(c.status);
                s.error = c.error.clone();
            }
            None => out.push(CellSummary {
                axes: c.cell.axes(),
                status: Some(c.status),
                error: c.error.clone(),
                n_answers: 0,
                n_failed: 0,
                cosine: None,
                response_time_s: None,
                ttft_mean_s: None,
                tokens_per_s_mean: None,
                rss_mean_bytes: None,
                rss_peak_bytes: None,
                cpu_mean_percent: None,
                metrics: BTreeMap::new(),
                counts: BTreeMap::new(),
            }),
        }
    }
    out.sort_by(|a, b| axes_cmp(&a.axes, &b.axes));
    Ok(out)
}

/// Report order of cells: model, retriever, chunk size, overlap, top_k, then the label (which
/// holds every other axis) and the id.
pub fn axes_cmp(a: &CellAxes, b: &CellAxes) -> std::cmp::Ordering {
    let key = |c: &CellAxes| {
        (
            c.model.clone(),
            c.retrieval.retriever.as_str(),
            c.retrieval.chunk_size,
            c.retrieval.chunk_overlap,
            c.retrieval.top_k,
            c.label(),
            c.cell_id.clone(),
        )
    };
    key(a).cmp(&key(b))
}

/// Name of the frame column that holds the named metric `name`.
fn metric_col(name: &str) -> String {
    format!("metric:{name}")
}

/// Mean and CI of every metric in `names` at row `i` (absent when the group has no value).
fn metrics_at(
    df: &DataFrame,
    names: &[String],
    i: usize,
) -> Result<BTreeMap<String, MeanCi>, ReportError> {
    let mut out = BTreeMap::new();
    for name in names {
        if let Some(ci) = moments_at(df, &metric_col(name), &Metric::parse(name), i)? {
            out.insert(name.clone(), ci);
        }
    }
    Ok(out)
}

/// Chart points: group-by model × retriever label × chunk size, sorted by those keys; means and
/// intervals over questions (each question's mean over the group's answers first, see
/// [`question_moments`]). Errors: [`ReportError::Polars`].
pub fn series_points(answers: &[AnswerRecord]) -> Result<Vec<SeriesPoint>, ReportError> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    let names = metric_columns(answers);
    // over questions, as every interval (each question's mean over its repeats first)
    let df = question_moments_by(answers, &["model", "facet", "chunk_size"], &names)?;
    let mut points = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        points.push(SeriesPoint {
            model: str_at(&df, "model", i)?,
            retriever_label: str_at(&df, "facet", i)?,
            chunk_size: u32_at(&df, "chunk_size", i)?.unwrap_or(0),
            cosine: moments_at(&df, "cosine", &Metric::Cosine, i)?,
            response_time_s: moments_at(&df, "response_time_s", &Metric::ResponseTime, i)?,
            metrics: metrics_at(&df, &names, i)?,
        });
    }
    points.sort_by(|a, b| {
        (&a.model, &a.retriever_label, a.chunk_size).cmp(&(
            &b.model,
            &b.retriever_label,
            b.chunk_size,
        ))
    });
    Ok(points)
}

/// Series label of [`retrieval_series_points`].
pub const ALL_MODELS: &str = "all models";

/// Chart points of the retrieval metrics (`hit@k`, `recall@k`, `mrr@k`, `ndcg@k`), pooled over
/// models: retrieval does not depend on the model, so rows that differ only in the model (same
/// chunking, retriever, top_k, fetch_k, BM25 and dense variants, question and repeat) are the
/// same retrieval and count once (the first row carrying each metric wins). Every point has
/// model [`ALL_MODELS`]; other fields as [`series_points`] (cosine and time are `None`).
/// Errors: [`ReportError::Polars`].
pub fn retrieval_series_points(answers: &[AnswerRecord]) -> Result<Vec<SeriesPoint>, ReportError> {
    // One retrieval = the index (corpus, splitter, embedder) × retrieval settings × question ×
    // repeat; the settings key is their JSON, so every axis is part of it.
    let mut merged: BTreeMap<(String, String, String, u32), AnswerRecord> = BTreeMap::new();
    for a in answers {
        let retrieval: Vec<(&String, &f64)> = a
            .metrics
            .iter()
            .filter(|(k, _)| is_retrieval_metric(k))
            .collect();
        if retrieval.is_empty() {
            continue;
        }
        let key = (
            a.index_dir.clone().unwrap_or_default(),
            serde_json::to_string(&a.cell.retrieval).unwrap_or_default(),
            a.question_id.clone(),
            a.repeat,
        );
        let row = merged.entry(key).or_insert_with(|| AnswerRecord {
            cell: CellAxes {
                model: ALL_MODELS.to_string(),
                cell_id: String::new(),
                ..a.cell.clone()
            },
            answer: String::new(),
            expected_answer: String::new(),
            question: String::new(),
            cosine: None,
            response_time_s: None,
            ttft_s: None,
            retrieval_s: None,
            prompt_tokens: None,
            completion_tokens: None,
            rss_mean_bytes: None,
            rss_peak_bytes: None,
            cpu_mean_percent: None,
            contexts_used: None,
            chunk_ids: Vec::new(),
            pages: Vec::new(),
            metrics: BTreeMap::new(),
            decode_mode: None,
            shared_from: None,
            judge_missing: BTreeMap::new(),
            ..a.clone()
        });
        for (k, v) in retrieval {
            row.metrics.entry(k.clone()).or_insert(*v);
        }
    }
    let rows: Vec<AnswerRecord> = merged.into_values().collect();
    series_points(&rows)
}

/// Whether `name` is a retrieval metric (`hit@k`, `recall@k`, `mrr@k`, `ndcg@k`).
pub fn is_retrieval_metric(name: &str) -> bool {
    crate::score::metric::Metric::parse(name).is_retrieval()
}

/// Treemap leaves: group-by model × question id with the mean of each metric over all cells and
/// repeats, sorted by model then question id. Errors: [`ReportError::Polars`].
pub fn question_stats(answers: &[AnswerRecord]) -> Result<Vec<QuestionStats>, ReportError> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    let mut aggs = vec![
        len().cast(DataType::UInt64).alias("n_answers"),
        col("question").first().alias("question"),
        col("cosine").mean().alias("cosine_mean"),
        col("response_time_s").mean().alias("response_time_s_mean"),
        col("rss_peak_f64").mean().alias("rss_peak_mean"),
    ];
    let names = metric_columns(answers);
    for name in &names {
        let c = metric_col(name);
        aggs.push(col(c.as_str()).mean().alias(format!("{c}_mean")));
    }
    let df = grouped(answers, &["model", "question_id"], aggs)?;
    let mut leaves = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        leaves.push(QuestionStats {
            model: str_at(&df, "model", i)?,
            question_id: str_at(&df, "question_id", i)?,
            question: str_at(&df, "question", i)?,
            n_answers: u64_at(&df, "n_answers", i)?.unwrap_or(0) as usize,
            cosine: f64_at(&df, "cosine_mean", i)?,
            response_time_s: f64_at(&df, "response_time_s_mean", i)?,
            rss_peak_bytes: f64_at(&df, "rss_peak_mean", i)?,
            metrics: names
                .iter()
                .map(|n| {
                    Ok(f64_at(&df, &format!("{}_mean", metric_col(n)), i)?.map(|v| (n.clone(), v)))
                })
                .collect::<Result<Vec<_>, ReportError>>()?
                .into_iter()
                .flatten()
                .collect(),
        });
    }
    leaves.sort_by(|a, b| {
        (&a.model, natural_key(&a.question_id)).cmp(&(&b.model, natural_key(&b.question_id)))
    });
    Ok(leaves)
}

/// The verdict metrics (0/1 per answer, Wilson intervals) among `names`.
fn verdict_metrics(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| Metric::parse(n).interval_method() == crate::stats::IntervalMethod::Wilson)
        .collect()
}

/// Sum (`{col}_k`) and count (`{col}_cnt`) of each verdict metric's column over a group's
/// answers.
fn verdict_aggs(verdicts: &[&String]) -> Vec<Expr> {
    verdicts
        .iter()
        .flat_map(|n| {
            let c = metric_col(n);
            [
                col(&c).sum().alias(format!("{c}_k")),
                col(&c)
                    .count()
                    .cast(DataType::UInt64)
                    .alias(format!("{c}_cnt")),
            ]
        })
        .collect()
}

/// (answers with 1, answers with a value) of each verdict metric at row `i` of a frame with
/// [`verdict_aggs`]; metrics without values are left out.
fn counts_at(
    df: &DataFrame,
    verdicts: &[&String],
    i: usize,
) -> Result<BTreeMap<String, (usize, usize)>, ReportError> {
    let mut counts = BTreeMap::new();
    for n in verdicts {
        let c = metric_col(n);
        let total = u64_at(df, &format!("{c}_cnt"), i)?.unwrap_or(0) as usize;
        if total > 0 {
            let k = f64_at(df, &format!("{c}_k"), i)?.unwrap_or(0.0).round() as usize;
            counts.insert((*n).clone(), (k, total));
        }
    }
    Ok(counts)
}

/// Per-model totals ([`ModelSummary`]: intervals over questions), sorted by model name.
/// Errors: [`ReportError::Polars`].
pub fn model_summaries(answers: &[AnswerRecord]) -> Result<Vec<ModelSummary>, ReportError> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    let names = metric_columns(answers);
    let verdicts = verdict_metrics(&names);
    // answers: counts, peak RSS and the pooled k of n
    let mut aggs = count_aggs();
    aggs.push(col("rss_peak_bytes").max().alias("rss_peak_bytes_max"));
    aggs.extend(verdict_aggs(&verdicts));
    let totals = grouped(answers, &["model"], aggs)?;
    let (by_question, row_of) = question_moments(answers, "model", &names)?;
    let mut models = Vec::with_capacity(totals.height());
    for i in 0..totals.height() {
        let model = str_at(&totals, "model", i)?;
        let q = row_of[&model];
        let counts = counts_at(&totals, &verdicts, i)?;
        models.push(ModelSummary {
            model,
            n_answers: u64_at(&totals, "n_answers", i)?.unwrap_or(0) as usize,
            n_failed: u64_at(&totals, "n_failed", i)?.unwrap_or(0) as usize,
            cosine: moments_at(&by_question, "cosine", &Metric::Cosine, q)?,
            response_time_s: moments_at(&by_question, "response_time_s", &Metric::ResponseTime, q)?,
            rss_peak_bytes: u64_at(&totals, "rss_peak_bytes_max", i)?,
            metrics: metrics_at(&by_question, &names, q)?,
            counts,
        });
    }
    models.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(models)
}

/// Sort key that orders `q2` before `q10`: (text without trailing digits, trailing number, text).
pub(crate) fn natural_key(s: &str) -> (&str, u64, &str) {
    let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = s.split_at(s.len() - digits);
    (stem, num.parse().unwrap_or(0), s)
}

/// Row count and failed count of a group.
fn count_aggs() -> Vec<Expr> {
    vec![
        len().cast(DataType::UInt64).alias("n_answers"),
        col("status")
            .eq(lit(AnswerStatus::Failed.as_str()))
            .cast(DataType::UInt64)
            .sum()
            .alias("n_failed"),
    ]
}

/// Mean, sample std (ddof 1), non-null count and count of values other than 0 and 1 of
/// `metric`, named `{metric}_mean|_std|_n|_nonbinary`.
fn moment_aggs(metric: &str) -> [Expr; 4] {
    [
        col(metric).mean().alias(format!("{metric}_mean")),
        col(metric).std(1).alias(format!("{metric}_std")),
        col(metric)
            .count()
            .cast(DataType::UInt64)
            .alias(format!("{metric}_n")),
        col(metric)
            .neq(lit(0.0))
            .and(col(metric).neq(lit(1.0)))
            .cast(DataType::UInt64)
            .sum()
            .alias(format!("{metric}_nonbinary")),
    ]
}

/// Builds the answers frame and runs a lazy group-by over `keys` with `aggs`.
fn grouped(
    answers: &[AnswerRecord],
    keys: &[&str],
    aggs: Vec<Expr>,
) -> Result<DataFrame, ReportError> {
    let by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    let df = answers_frame(answers)?
        .lazy()
        .group_by(by)
        .agg(aggs)
        .collect()?;
    Ok(df)
}

/// One row per answer: `cell_id`, `model`, `chunk_size` and `facet` (every other axis, see
/// [`crate::cell::Retrieval::facet_label`]) identify its groups (a cell's axes are never copied
/// column by column: they come from [`CellAxes`] by cell id); metric columns are nullable (failed
/// answers), RSS also as f64 for means, plus derived `tokens_per_s` (decode speed: completion tokens
/// after the first per second after the first token), and one nullable f64 column `metric:{name}` per named metric
/// ([`metric_columns`]; non-finite values count as missing).
pub fn answers_frame(answers: &[AnswerRecord]) -> Result<DataFrame, ReportError> {
    let strs = |f: fn(&AnswerRecord) -> &str| answers.iter().map(f).collect::<Vec<&str>>();
    let mut columns = vec![
        Column::new("cell_id".into(), strs(|a| &a.cell.cell_id)),
        Column::new("model".into(), strs(|a| &a.cell.model)),
        Column::new(
            "chunk_size".into(),
            answers
                .iter()
                .map(|a| a.cell.retrieval.chunk_size as u32)
                .collect::<Vec<u32>>(),
        ),
        Column::new(
            "facet".into(),
            answers
                .iter()
                .map(|a| a.cell.retrieval.facet_label())
                .collect::<Vec<String>>(),
        ),
        Column::new("question_id".into(), strs(|a| &a.question_id)),
        Column::new("question".into(), strs(|a| &a.question)),
        Column::new("status".into(), strs(|a| a.status.as_str())),
        Column::new(
            "cosine".into(),
            answers.iter().map(|a| a.cosine).collect::<Vec<_>>(),
        ),
        Column::new(
            "response_time_s".into(),
            answers
                .iter()
                .map(|a| a.response_time_s)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "ttft_s".into(),
            answers.iter().map(|a| a.ttft_s).collect::<Vec<_>>(),
        ),
        Column::new(
            "tokens_per_s".into(),
            answers.iter().map(tokens_per_s).collect::<Vec<_>>(),
        ),
        Column::new(
            "rss_mean_bytes".into(),
            answers
                .iter()
                .map(|a| a.rss_mean_bytes.map(|b| b as f64))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "rss_peak_bytes".into(),
            answers
                .iter()
                .map(|a| a.rss_peak_bytes)
                .collect::<Vec<Option<u64>>>(),
        ),
        Column::new(
            "rss_peak_f64".into(),
            answers
                .iter()
                .map(|a| a.rss_peak_bytes.map(|b| b as f64))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "cpu_mean_percent".into(),
            answers
                .iter()
                .map(|a| a.cpu_mean_percent)
                .collect::<Vec<_>>(),
        ),
    ];
    for name in metric_columns(answers) {
        columns.push(Column::new(
            metric_col(&name).into(),
            answers
                .iter()
                .map(|a| a.metrics.get(&name).copied().filter(|v| v.is_finite()))
                .collect::<Vec<Option<f64>>>(),
        ));
    }
    Ok(DataFrame::new(answers.len(), columns)?)
}

/// Decode speed of one answer, tokens per second: (completion tokens − 1) / (response time −
/// TTFT), the rate after the first token (llama.cpp's eval rate, 1/TPOT). Prompt processing is
/// TTFT's part, so a long context does not pass for slow generation. `None` below 2 tokens,
/// without a TTFT, or when the response took no time after the first token.
fn tokens_per_s(a: &AnswerRecord) -> Option<f64> {
    match (a.completion_tokens, a.response_time_s, a.ttft_s) {
        (Some(tokens), Some(t), Some(first)) if tokens >= 2 && t > first => {
            Some(f64::from(tokens - 1) / (t - first))
        }
        _ => None,
    }
}

/// Reads one row of the per-cell frame.
fn cell_row(
    df: &DataFrame,
    i: usize,
    (moments, q): (&DataFrame, usize),
    names: &[String],
    axes: Option<CellAxes>,
) -> Result<CellSummary, ReportError> {
    let Some(axes) = axes else {
        return Err(ReportError::Polars(PolarsError::NoData(
            "a grouped cell id has no answer".into(),
        )));
    };
    Ok(CellSummary {
        axes,
        status: None,
        error: None,
        n_answers: u64_at(df, "n_answers", i)?.unwrap_or(0) as usize,
        n_failed: u64_at(df, "n_failed", i)?.unwrap_or(0) as usize,
        cosine: moments_at(moments, "cosine", &Metric::Cosine, q)?,
        response_time_s: moments_at(moments, "response_time_s", &Metric::ResponseTime, q)?,
        ttft_mean_s: f64_at(df, "ttft_s_mean", i)?,
        tokens_per_s_mean: f64_at(df, "tokens_per_s_mean", i)?,
        rss_mean_bytes: f64_at(df, "rss_mean_bytes_mean", i)?,
        rss_peak_bytes: u64_at(df, "rss_peak_bytes_max", i)?,
        cpu_mean_percent: f64_at(df, "cpu_mean_percent_mean", i)?,
        metrics: metrics_at(moments, names, q)?,
        counts: BTreeMap::new(),
    })
}

/// Mean with 95% CI from the `{column}_mean|_std|_n|_nonbinary` columns of row `i`, by
/// `metric`'s [`Metric::interval_method`].
fn moments_at(
    df: &DataFrame,
    column: &str,
    metric: &Metric,
    i: usize,
) -> Result<Option<MeanCi>, ReportError> {
    let n = u64_at(df, &format!("{column}_n"), i)?.unwrap_or(0) as usize;
    let mean = f64_at(df, &format!("{column}_mean"), i)?;
    let std = f64_at(df, &format!("{column}_std"), i)?;
    let binary = u64_at(df, &format!("{column}_nonbinary"), i)?.unwrap_or(0) == 0;
    let method = metric.interval_method();
    Ok(mean
        .and_then(|m| bounded_ci_from_moments(method, n, m, std.unwrap_or(0.0), binary, CI_LEVEL)))
}

fn str_at(df: &DataFrame, name: &str, i: usize) -> Result<String, ReportError> {
    Ok(df
        .column(name)?
        .str()?
        .get(i)
        .unwrap_or_default()
        .to_string())
}

fn f64_at(df: &DataFrame, name: &str, i: usize) -> Result<Option<f64>, ReportError> {
    Ok(df.column(name)?.f64()?.get(i))
}

fn u32_at(df: &DataFrame, name: &str, i: usize) -> Result<Option<u32>, ReportError> {
    Ok(df.column(name)?.u32()?.get(i))
}

fn u64_at(df: &DataFrame, name: &str, i: usize) -> Result<Option<u64>, ReportError> {
    Ok(df.column(name)?.u64()?.get(i))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::mean_ci;

    /// A minimal ok answer; tests override fields.
    pub(crate) fn answer(
        model: &str,
        chunk: u32,
        retriever: &str,
        q: &str,
        cos: f64,
        t: f64,
    ) -> AnswerRecord {
        use crate::retrieve::{Bm25Variant, DenseIndexKind, RetrieverKind};
        let kind: RetrieverKind = retriever.parse().expect("retriever");
        let mmr = kind == RetrieverKind::Mmr;
        AnswerRecord {
            cell: CellAxes {
                cell_id: format!("{model}-{chunk}-{retriever}"),
                model: model.into(),
                retrieval: crate::cell::Retrieval {
                    chunk_size: chunk as usize,
                    chunk_overlap: chunk as usize / 10,
                    retriever: kind,
                    top_k: 4,
                    fetch_k: mmr.then_some(20),
                    lambda_mult: mmr.then_some(0.5),
                    ensemble_weight: (kind == RetrieverKind::Ensemble).then_some(0.5),
                    bm25: matches!(kind, RetrieverKind::Bm25 | RetrieverKind::Ensemble)
                        .then_some(Bm25Variant::Tantivy),
                    dense_index: (kind != RetrieverKind::Bm25).then_some(DenseIndexKind::Arroy),
                    name: None,
                    members: None,
                    child_chunk_size: None,
                    child_chunk_overlap: None,
                },
            },
            index_dir: None,
            repeat: 0,
            question_id: q.into(),
            question: format!("question {q}?"),
            expected_answer: "x".into(),
            answer: "y".into(),
            cosine: Some(cos),
            response_time_s: Some(t),
            ttft_s: Some(t / 10.0),
            retrieval_s: None,
            prompt_tokens: Some(400),
            completion_tokens: Some(50),
            rss_mean_bytes: Some(100 << 20),
            rss_peak_bytes: Some(200 << 20),
            cpu_mean_percent: Some(150.0),
            contexts_used: Some(2),
            chunk_ids: vec![1, 2],
            pages: vec![3, 4],
            status: AnswerStatus::Ok,
            error: None,
            metrics: Default::default(),
            decode_mode: Some(crate::cell::DecodeMode::Single),
            shared_from: None,
            judge_missing: Default::default(),
        }
    }

    fn failed(mut a: AnswerRecord) -> AnswerRecord {
        a.status = AnswerStatus::Failed;
        a.cosine = None;
        a.response_time_s = None;
        a.ttft_s = None;
        a.completion_tokens = None;
        a.rss_mean_bytes = None;
        a.rss_peak_bytes = None;
        a.cpu_mean_percent = None;
        a
    }

    #[test]
    fn summarize_matches_direct_computation() {
        let cos = [0.2, 0.5, 0.9, 0.4];
        let times = [1.0, 2.0, 4.0, 3.0];
        let mut rows: Vec<AnswerRecord> = cos
            .iter()
            .zip(times)
            .enumerate()
            .map(|(i, (&c, t))| {
                let mut a = answer("m1", 500, "ensemble", &format!("q{i}"), c, t);
                a.rss_peak_bytes = Some(((i as u64) + 1) << 20);
                a
            })
            .collect();
        rows.push(failed(answer("m1", 500, "ensemble", "q9", 0.0, 0.0)));
        rows.push(answer("m2", 1000, "dense", "q0", 0.7, 0.5));

        let cells = summarize(&rows).unwrap();
        assert_eq!(cells.len(), 2);
        let c = &cells[0];
        assert_eq!(
            (
                c.axes.model.as_str(),
                c.axes.retrieval.chunk_size,
                c.axes.retrieval.ensemble_weight
            ),
            ("m1", 500, Some(0.5))
        );
        assert_eq!((c.n_answers, c.n_failed), (5, 1));
        let want = mean_ci(&cos, 0.95).unwrap();
        let got = c.cosine.unwrap();
        assert_eq!(got.n, 4);
        assert!((got.mean - want.mean).abs() < 1e-12);
        assert!((got.lo - want.lo).abs() < 1e-12 && (got.hi - want.hi).abs() < 1e-12);
        let want_t = mean_ci(&times, 0.95).unwrap();
        assert!((c.response_time_s.unwrap().hi - want_t.hi).abs() < 1e-12);
        assert_eq!(c.rss_peak_bytes, Some(4 << 20));
        // tokens/s is the decode speed (49 tokens after the first, in the time after TTFT =
        // t/10), the mean of per-answer ratios, not a ratio of means.
        let tps = times.iter().map(|t| 49.0 / (t - t / 10.0)).sum::<f64>() / 4.0;
        assert!((c.tokens_per_s_mean.unwrap() - tps).abs() < 1e-12);
        // Single-answer cell: degenerate interval, no fetch_k / weight.
        let d = &cells[1];
        assert_eq!(
            (
                d.axes.model.as_str(),
                d.axes.retrieval.ensemble_weight,
                d.axes.retrieval.fetch_k
            ),
            ("m2", None, None)
        );
        let one = d.cosine.unwrap();
        assert_eq!((one.n, one.lo, one.hi), (1, 0.7, 0.7));
    }

    #[test]
    fn all_failed_cell_has_no_metrics() {
        let rows = vec![failed(answer("m", 250, "bm25", "q1", 0.0, 0.0))];
        let cells = summarize(&rows).unwrap();
        assert_eq!(cells.len(), 1);
        assert_eq!((cells[0].n_answers, cells[0].n_failed), (1, 1));
        assert_eq!(cells[0].cosine, None);
        assert_eq!(cells[0].rss_peak_bytes, None);
        assert_eq!(cells[0].tokens_per_s_mean, None);
    }

    #[test]
    fn repeats_of_a_question_are_one_sample_of_it() {
        // a deterministic cell swept with 8 repeats: 8 copies of each of 4 answers
        let ndcg = [1.0, 0.5, 0.0, 1.0];
        let mut rows = Vec::new();
        for (q, v) in ndcg.iter().enumerate() {
            for r in 0..8 {
                let mut a = answer("m", 500, "dense", &format!("q{q}"), *v, 1.0);
                a.repeat = r;
                a.metrics.insert("ndcg@4".into(), *v);
                a.metrics
                    .insert("hit@4".into(), f64::from(u8::from(*v > 0.0)));
                rows.push(a);
            }
        }
        let c = &summarize(&rows).unwrap()[0];
        assert_eq!(c.n_answers, 32);
        let want = crate::stats::bounded_mean_ci(
            crate::score::metric::Metric::parse("ndcg@4").interval_method(),
            &ndcg,
            CI_LEVEL,
        )
        .unwrap();
        let got = c.metrics["ndcg@4"];
        assert_eq!(got.n, 4, "questions, not 32 answers");
        assert!((got.lo - want.lo).abs() < 1e-12 && (got.hi - want.hi).abs() < 1e-12);
        assert_eq!(c.cosine.unwrap().n, 4);
        // the charts too; "k of n" counts answers
        assert_eq!(series_points(&rows).unwrap()[0].metrics["ndcg@4"].n, 4);
        assert_eq!(c.counts.get("hit@4"), Some(&(24, 32)));
        let ranked = crate::report::rank_cells(&rows, "ndcg@4", CI_LEVEL, 200, 1).unwrap();
        assert_eq!((ranked[0].n, ranked[0].ci.unwrap().hi), (4, want.hi));
    }

    #[test]
    fn model_intervals_are_over_question_means_and_verdicts_are_counted() {
        // one model, 3 cells x 4 questions: cosine depends on the question, much less on the cell
        let mut rows = Vec::new();
        for (c, chunk) in [250u32, 500, 1000].iter().enumerate() {
            for (q, base) in [0.2, 0.4, 0.6, 0.9].iter().enumerate() {
                let cos = base + 0.01 * c as f64;
                let mut a = answer("m", *chunk, "dense", &format!("q{q}"), cos, 1.0 + q as f64);
                a.metrics
                    .insert("correctness".into(), f64::from(u8::from(q >= 2)));
                rows.push(a);
            }
        }
        let m = &model_summaries(&rows).unwrap()[0];
        assert_eq!(m.n_answers, 12);
        let question_means = [0.21, 0.41, 0.61, 0.91];
        let want = crate::stats::bounded_mean_ci(
            crate::score::metric::Metric::Cosine.interval_method(),
            &question_means,
            CI_LEVEL,
        )
        .unwrap();
        let got = m.cosine.unwrap();
        assert_eq!(got.n, 4, "questions, not answers");
        assert!((got.mean - want.mean).abs() < 1e-12);
        assert!((got.lo - want.lo).abs() < 1e-9 && (got.hi - want.hi).abs() < 1e-9);
        // pooling 12 answers as independent would give a narrower interval
        let cos: Vec<f64> = rows.iter().filter_map(|a| a.cosine).collect();
        let pooled = crate::stats::mean_ci(&cos, CI_LEVEL).unwrap();
        assert!(pooled.hi - pooled.lo < got.hi - got.lo);
        // the verdict: 6 of 12 answers, whatever its interval is over
        assert_eq!(m.counts.get("correctness"), Some(&(6, 12)));
        assert_eq!(m.metrics["correctness"].n, 4);
    }

    #[test]
    fn empty_input_gives_empty_outputs() {
        assert!(summarize(&[]).unwrap().is_empty());
        assert!(series_points(&[]).unwrap().is_empty());
        assert!(question_stats(&[]).unwrap().is_empty());
        assert!(model_summaries(&[]).unwrap().is_empty());
    }

    #[test]
    fn series_pool_repeats_and_questions_not_axes_and_question_stats_pool_cells() {
        let mut rows = Vec::new();
        for (lambda, c) in [(0.25, 0.2), (0.75, 0.6)] {
            let mut a = answer("m", 1000, "mmr", "q2", c, 1.0);
            a.cell.retrieval.lambda_mult = Some(lambda);
            a.cell.cell_id = format!("cell{lambda}");
            rows.push(a);
        }
        let mut q10 = rows[0].clone();
        q10.question_id = "q10".into();
        q10.cosine = Some(0.9);
        q10.response_time_s = Some(3.0);
        rows.push(q10);
        let points = series_points(&rows).unwrap();
        // two MMR cells that differ only in lambda_mult are two series, never pooled
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].cosine.unwrap().n, 2);
        assert_eq!(points[1].cosine.unwrap().n, 1);
        assert!(points[0].retriever_label.contains("λ=0.25"));
        assert_eq!(summarize(&rows).unwrap().len(), 2);
        let qs = question_stats(&rows).unwrap();
        let ids: Vec<&str> = qs.iter().map(|q| q.question_id.as_str()).collect();
        assert_eq!(ids, ["q2", "q10"]);
        assert!((qs[0].cosine.unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(qs[0].n_answers, 2);
        assert_eq!(qs[1].response_time_s, Some(3.0));
    }
}
