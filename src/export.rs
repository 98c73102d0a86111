//! Exports of stored answers: one row per [`AnswerRecord`], a fixed column order followed by
//! one column per metric present in the rows ([`metric_columns`]), as CSV ([`write_csv`], written
//! with the `csv` crate: RFC 4180 quoting, so answers with commas, quotes or newlines
//! round-trip), JSON lines ([`write_jsonl`]) or Parquet ([`write_parquet`] of [`answers_frame`]:
//! typed columns). [`write_cells_csv`] and [`cells_frame`] give one row per cell instead: its
//! axes and, per metric, the mean with its 95% interval and the interval's method
//! ([`crate::score::metric::Metric::interval_method`]: Wilson for proportions, the Student-t
//! interval clipped to the metric's range otherwise).

use polars::prelude::{
    Column, DataFrame, DataType, IntoColumn, IntoSeries, ListBuilderTrait,
    ListPrimitiveChunkedBuilder, PlSmallStr, UInt32Type,
};

use crate::cell::CellAxes;
use crate::report::{metric_columns, metric_order};
use crate::store::AnswerRecord;

/// The answer columns of [`write_csv`], in order: they follow the cell's axis columns
/// ([`CellAxes::columns`]); metric columns come last.
pub const ANSWER_COLUMNS: [&str; 22] = [
    "repeat",
    "question_id",
    "question",
    "expected_answer",
    "answer",
    "cosine",
    "response_time_s",
    "ttft_s",
    "retrieval_s",
    "prompt_tokens",
    "completion_tokens",
    "rss_mean_bytes",
    "rss_peak_bytes",
    "cpu_mean_percent",
    "contexts_used",
    "decode_mode",
    "shared_from",
    "chunk_ids",
    "pages",
    "status",
    "error",
    "judge_missing",
];

/// Every column of [`write_csv`] before the metric columns: the axes, then [`ANSWER_COLUMNS`].
pub fn csv_columns() -> Vec<String> {
    CellAxes::columns()
        .into_iter()
        .chain(ANSWER_COLUMNS.iter().map(|c| c.to_string()))
        .collect()
}

/// Errors of the exports.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Building the Parquet frame or writing it failed (polars' message says which column).
    #[error("writing Parquet: {0}")]
    Parquet(#[from] polars::prelude::PolarsError),
    /// The CSV writer failed (formatting or the underlying `Write`).
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Writing or flushing the underlying writer failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising a JSON line failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `rows` as JSON lines (one compact JSON object per line, `\n`-terminated) to `out`:
/// answers ([`AnswerRecord`]: the CSV's fields, with `chunk_ids` and `pages` as arrays and the
/// metrics as one nested object) or cells ([`crate::report::CellSummary`]: axes, counts, and each
/// metric's `n`, `mean`, `std` and 95% interval `lo`, `hi`). Units as in the CSV; a missing value is
/// `null`. Reads with `pandas.read_json(path, lines=True)` or `polars.read_ndjson`.
///
/// Errors: [`ExportError::Json`], [`ExportError::Io`].
pub fn write_jsonl<T: serde::Serialize, W: std::io::Write>(
    rows: &[T],
    out: W,
) -> Result<(), ExportError> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(out);
    for row in rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Writes `answers` as CSV with a header row to `out`.
///
/// Columns: [`csv_columns`] in that order (the cell's axes, then the answer's fields), then
/// [`metric_columns`] (a row without that metric has an empty field). Units follow [`AnswerRecord`]: sizes in characters,
/// times in seconds, memory in bytes, CPU in percent of one core. `None` becomes an empty field;
/// `chunk_ids` and `pages` are space-separated integers (empty when there are none), of which the
/// first `contexts_used` were given to the model. Floats use
/// Rust's shortest round-trip formatting, so parsing them back gives the same `f64`.
///
/// Errors: [`ExportError`] when the writer fails.
pub fn write_csv<W: std::io::Write>(answers: &[AnswerRecord], out: W) -> Result<(), ExportError> {
    let mut writer = csv::Writer::from_writer(out);
    let metrics = metric_columns(answers);
    writer.write_record(csv_columns().iter().chain(metrics.iter()))?;
    for answer in answers {
        let fixed = answer
            .cell
            .values()
            .into_iter()
            .chain(record_fields(answer))
            .map(|f| formula_safe(&f));
        let extra = metrics.iter().map(|m| opt(answer.metrics.get(m).copied()));
        writer.write_record(fixed.into_iter().chain(extra))?;
    }
    writer.flush()?;
    tracing::debug!(rows = answers.len(), "wrote CSV export");
    Ok(())
}

/// The columns of [`write_cells_csv`] after the axes ([`CellAxes::columns`]); five columns per
/// metric follow ([`CELL_METRIC_SUFFIXES`]).
pub const CELL_COLUMNS: [&str; 4] = ["status", "error", "answers", "failed"];

/// The per-metric columns of a per-cell export, `<metric>_<suffix>` in this order: the mean, the
/// interval's ends, the number of questions with the metric (each the mean over its repeats;
/// with one repeat, the answers), and the interval's method (`wilson`,
/// `t_clipped` or `t`: [`crate::stats::CiMethod`]).
pub const CELL_METRIC_SUFFIXES: [&str; 5] = ["mean", "ci_low", "ci_high", "n", "ci_method"];

/// The metrics of a per-cell export in column order: `cosine`, `response_time_s`, then every
/// metric present in any cell in [`metric_order`].
pub fn cell_metric_names(cells: &[crate::report::CellSummary]) -> Vec<String> {
    let mut names: Vec<String> = cells
        .iter()
        .flat_map(|c| c.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    names.sort_by_key(|n| metric_order(n));
    let mut metrics = vec!["cosine".to_string(), "response_time_s".to_string()];
    metrics.extend(names);
    metrics
}

/// Writes one row per cell (from [`crate::report::cell_summaries`]: every stored cell, failed ones
/// without answers included) as CSV with a header to `out`.
///
/// Columns: the axes ([`CellAxes::columns`]), [`CELL_COLUMNS`] (status, the first line of a failed
/// cell's error, answers, failed answers), then for every metric of [`cell_metric_names`]
/// (`cosine`, `response_time_s` in seconds, then the named metrics) five columns
/// ([`CELL_METRIC_SUFFIXES`]): `<m>_mean`, `<m>_ci_low`, `<m>_ci_high` (the 95% interval of the
/// mean over questions, [`crate::report::CI_LEVEL`]), `<m>_n` (questions with that metric) and
/// `<m>_ci_method`:
/// `wilson` (Wilson score interval, for proportions such as hit@k, em, contains, correctness),
/// `t_clipped` (Student-t interval clamped to the metric's range: [0, 1], cosine [−1, 1], times
/// [0, ∞)) or `t` (metrics of unknown range). Empty fields where a cell lacks the metric; a t
/// interval is the mean itself when n = 1. Errors: [`ExportError`] when the writer fails.
pub fn write_cells_csv<W: std::io::Write>(
    cells: &[crate::report::CellSummary],
    out: W,
) -> Result<(), ExportError> {
    let metrics = cell_metric_names(cells);
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Vec<String> = CellAxes::columns();
    header.extend(CELL_COLUMNS.iter().map(|c| c.to_string()));
    for m in &metrics {
        for suffix in CELL_METRIC_SUFFIXES {
            header.push(format!("{m}_{suffix}"));
        }
    }
    writer.write_record(&header)?;
    for c in cells {
        let mut row: Vec<String> = c.axes.values().iter().map(|v| formula_safe(v)).collect();
        row.extend([
            opt(c.status),
            formula_safe(
                c.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or(""),
            ),
            c.n_answers.to_string(),
            c.n_failed.to_string(),
        ]);
        for m in &metrics {
            let ci = c.metric(m);
            row.push(opt(ci.map(|v| v.mean)));
            row.push(opt(ci.map(|v| v.lo)));
            row.push(opt(ci.map(|v| v.hi)));
            row.push(opt(ci.map(|v| v.n)));
            row.push(opt(ci.map(|v| v.method)));
        }
        writer.write_record(&row)?;
    }
    writer.flush()?;
    Ok(())
}

/// The answers of [`write_csv`] as a typed polars frame, for [`write_parquet`]: the same rows and
/// columns in the same order ([`csv_columns`], then one column per metric of
/// [`metric_columns`]), with these types (`null` where the CSV has an empty field):
///
/// - axes ([`CellAxes::columns`]): integers (`chunk_size`, `top_k`, `fetch_k`, …) Int64,
///   fractions (`lambda_mult`, `ensemble_weight`) Float64, names (`model`, `retriever`, `bm25`,
///   …) String, the nested `members` of a combined retriever a JSON string;
/// - `repeat`, `prompt_tokens`, `completion_tokens`, `contexts_used` UInt32; `rss_mean_bytes`,
///   `rss_peak_bytes` UInt64 (bytes); `cosine`, `response_time_s`, `ttft_s`, `retrieval_s`
///   (seconds),
///   `cpu_mean_percent` Float64; the texts, `decode_mode`, `shared_from`, `status`, `error`,
///   `judge_missing` (a JSON object: judge metric → why it has no value: `undefined: …`,
///   `error: …` or `not judged yet`) String;
/// - `chunk_ids`, `pages` List(UInt32) (empty lists where the CSV has an empty field);
/// - every metric one Float64 column, `null` where the answer lacks it.
///
/// Text is stored as is (no spreadsheet escaping: [`write_csv`] only). Errors:
/// [`ExportError::Parquet`] if polars rejects a column.
pub fn answers_frame(answers: &[AnswerRecord]) -> Result<DataFrame, ExportError> {
    let mut columns = axis_columns(answers.iter().map(|a| &a.cell));
    let u32s = |name: &str, f: fn(&AnswerRecord) -> Option<u32>| {
        Column::new(name.into(), answers.iter().map(f).collect::<Vec<_>>())
    };
    let u64s = |name: &str, f: fn(&AnswerRecord) -> Option<u64>| {
        Column::new(name.into(), answers.iter().map(f).collect::<Vec<_>>())
    };
    let f64s = |name: &str, f: fn(&AnswerRecord) -> Option<f64>| {
        Column::new(name.into(), answers.iter().map(f).collect::<Vec<_>>())
    };
    let strs = |name: &str, f: fn(&AnswerRecord) -> Option<String>| {
        Column::new(name.into(), answers.iter().map(f).collect::<Vec<_>>())
    };
    let lists = |name: &str, f: fn(&AnswerRecord) -> &[u32]| {
        let values = answers.iter().map(|a| f(a).len()).sum();
        let mut b = ListPrimitiveChunkedBuilder::<UInt32Type>::new(
            name.into(),
            answers.len(),
            values,
            DataType::UInt32,
        );
        for a in answers {
            b.append_slice(f(a));
        }
        b.finish().into_series().into_column()
    };
    columns.extend([
        u32s("repeat", |a| Some(a.repeat)),
        strs("question_id", |a| Some(a.question_id.clone())),
        strs("question", |a| Some(a.question.clone())),
        strs("expected_answer", |a| Some(a.expected_answer.clone())),
        strs("answer", |a| Some(a.answer.clone())),
        f64s("cosine", |a| a.cosine),
        f64s("response_time_s", |a| a.response_time_s),
        f64s("ttft_s", |a| a.ttft_s),
        f64s("retrieval_s", |a| a.retrieval_s),
        u32s("prompt_tokens", |a| a.prompt_tokens),
        u32s("completion_tokens", |a| a.completion_tokens),
        u64s("rss_mean_bytes", |a| a.rss_mean_bytes),
        u64s("rss_peak_bytes", |a| a.rss_peak_bytes),
        f64s("cpu_mean_percent", |a| a.cpu_mean_percent),
        u32s("contexts_used", |a| a.contexts_used),
        strs("decode_mode", |a| a.decode_mode.map(|m| m.to_string())),
        strs("shared_from", |a| a.shared_from.clone()),
        lists("chunk_ids", |a| &a.chunk_ids),
        lists("pages", |a| &a.pages),
        strs("status", |a| Some(a.status.to_string())),
        strs("error", |a| a.error.clone()),
        strs("judge_missing", judge_missing),
    ]);
    for m in metric_columns(answers) {
        columns.push(Column::new(
            m.as_str().into(),
            answers
                .iter()
                .map(|a| a.metrics.get(&m).copied())
                .collect::<Vec<Option<f64>>>(),
        ));
    }
    Ok(DataFrame::new(answers.len(), columns)?)
}

/// The cells of [`write_cells_csv`] as a typed polars frame, for [`write_parquet`]: the same rows
/// and columns in the same order. Axes typed as in [`answers_frame`]; `status` and `error` (the
/// first line, as in the CSV) String; `answers`, `failed` UInt64; per metric of
/// [`cell_metric_names`] `<m>_mean`, `<m>_ci_low`, `<m>_ci_high` Float64, `<m>_n` UInt64 and
/// `<m>_ci_method` String (`wilson`, `t_clipped`, `t`), all `null` where the cell lacks the
/// metric. Errors: [`ExportError::Parquet`] if polars rejects a column.
pub fn cells_frame(cells: &[crate::report::CellSummary]) -> Result<DataFrame, ExportError> {
    let mut columns = axis_columns(cells.iter().map(|c| &c.axes));
    columns.extend([
        Column::new(
            "status".into(),
            cells
                .iter()
                .map(|c| c.status.map(|s| s.to_string()))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "error".into(),
            cells
                .iter()
                .map(|c| {
                    c.error
                        .as_deref()
                        .map(|e| e.lines().next().unwrap_or("").to_string())
                })
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "answers".into(),
            cells.iter().map(|c| c.n_answers as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "failed".into(),
            cells.iter().map(|c| c.n_failed as u64).collect::<Vec<_>>(),
        ),
    ]);
    for m in cell_metric_names(cells) {
        let cis: Vec<Option<crate::stats::MeanCi>> = cells.iter().map(|c| c.metric(&m)).collect();
        let f64s = |suffix: &str, f: fn(&crate::stats::MeanCi) -> f64| {
            Column::new(
                format!("{m}_{suffix}").into(),
                cis.iter().map(|ci| ci.as_ref().map(f)).collect::<Vec<_>>(),
            )
        };
        columns.extend([
            f64s("mean", |ci| ci.mean),
            f64s("ci_low", |ci| ci.lo),
            f64s("ci_high", |ci| ci.hi),
            Column::new(
                format!("{m}_n").into(),
                cis.iter()
                    .map(|ci| ci.map(|ci| ci.n as u64))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                format!("{m}_ci_method").into(),
                cis.iter()
                    .map(|ci| ci.map(|ci| ci.method.as_str()))
                    .collect::<Vec<_>>(),
            ),
        ]);
    }
    Ok(DataFrame::new(cells.len(), columns)?)
}

/// Writes `frame` ([`answers_frame`] or [`cells_frame`]) as one Parquet file to `out`: zstd
/// compression (polars' default), one row group per 512² rows, column statistics. Reads with
/// `pandas.read_parquet`, `polars.read_parquet` or DuckDB.
///
/// The file is encoded in memory first and then written to `out` in one piece, so a failing
/// writer surfaces as its own `std::io::Error` (a closed pipe stays a `BrokenPipe` the CLI ends
/// quietly on) instead of the Parquet encoder's "transport error".
///
/// Errors: [`ExportError::Parquet`] when encoding fails, [`ExportError::Io`] when `out` does.
pub fn write_parquet<W: std::io::Write>(
    frame: &mut DataFrame,
    mut out: W,
) -> Result<(), ExportError> {
    let mut buf = Vec::new();
    let bytes = polars_io::prelude::ParquetWriter::new(&mut buf).finish(frame)?;
    out.write_all(&buf)?;
    out.flush()?;
    tracing::debug!(rows = frame.height(), bytes, "wrote Parquet export");
    Ok(())
}

/// How an axis column is typed in the Parquet frames.
#[derive(Clone, Copy)]
enum AxisKind {
    Int,
    Float,
    Text,
    Json,
}

/// The type of each axis column ([`CellAxes::columns`] order), read off the JSON form of axes
/// whose optional fields are all set (so an axis no row sets still gets its type).
fn axis_kinds() -> Vec<AxisKind> {
    use crate::retrieve::{Bm25Variant, DenseIndexKind, RetrieverKind};
    let probe = CellAxes {
        cell_id: String::new(),
        model: String::new(),
        retrieval: crate::cell::Retrieval {
            chunk_size: 1,
            chunk_overlap: 1,
            retriever: RetrieverKind::Dense,
            top_k: 1,
            fetch_k: Some(1),
            lambda_mult: Some(0.5),
            ensemble_weight: Some(0.5),
            bm25: Some(Bm25Variant::Okapi),
            dense_index: Some(DenseIndexKind::Arroy),
            name: Some(String::new()),
            members: Some(Vec::new()),
            child_chunk_size: Some(1),
            child_chunk_overlap: Some(1),
        },
    };
    match serde_json::to_value(probe) {
        Ok(serde_json::Value::Object(m)) => m
            .into_values()
            .map(|v| match v {
                serde_json::Value::Number(n) if n.is_f64() => AxisKind::Float,
                serde_json::Value::Number(_) => AxisKind::Int,
                serde_json::Value::String(_) => AxisKind::Text,
                _ => AxisKind::Json,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// One typed column per axis ([`CellAxes::columns`]) over `axes`.
fn axis_columns<'a>(axes: impl Iterator<Item = &'a CellAxes>) -> Vec<Column> {
    let rows: Vec<Vec<serde_json::Value>> = axes
        .map(|a| match serde_json::to_value(a) {
            Ok(serde_json::Value::Object(m)) => m.into_values().collect(),
            _ => Vec::new(),
        })
        .collect();
    let cell = |r: &Vec<serde_json::Value>, i: usize| r.get(i).filter(|v| !v.is_null()).cloned();
    CellAxes::columns()
        .into_iter()
        .zip(axis_kinds())
        .enumerate()
        .map(|(i, (name, kind))| {
            let name = PlSmallStr::from(name);
            match kind {
                AxisKind::Int => Column::new(
                    name,
                    rows.iter()
                        .map(|r| cell(r, i).and_then(|v| v.as_i64()))
                        .collect::<Vec<_>>(),
                ),
                AxisKind::Float => Column::new(
                    name,
                    rows.iter()
                        .map(|r| cell(r, i).and_then(|v| v.as_f64()))
                        .collect::<Vec<_>>(),
                ),
                AxisKind::Text => Column::new(
                    name,
                    rows.iter()
                        .map(|r| cell(r, i).and_then(|v| v.as_str().map(String::from)))
                        .collect::<Vec<_>>(),
                ),
                AxisKind::Json => Column::new(
                    name,
                    rows.iter()
                        .map(|r| cell(r, i).map(|v| v.to_string()))
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect()
}

/// A text field made safe to open in a spreadsheet: a field starting with `=`, `+`, `-`, `@`, tab
/// or carriage return is prefixed with `'` (OWASP's CSV-injection advice), unless it is a number
/// (so `-0.5` stays a number).
fn formula_safe(field: &str) -> String {
    let risky = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && field.parse::<f64>().is_err() {
        format!("'{field}")
    } else {
        field.to_string()
    }
}

/// The answer fields of one row, in [`ANSWER_COLUMNS`] order.
fn record_fields(a: &AnswerRecord) -> [String; 22] {
    [
        a.repeat.to_string(),
        a.question_id.clone(),
        a.question.clone(),
        a.expected_answer.clone(),
        a.answer.clone(),
        opt(a.cosine),
        opt(a.response_time_s),
        opt(a.ttft_s),
        opt(a.retrieval_s),
        opt(a.prompt_tokens),
        opt(a.completion_tokens),
        opt(a.rss_mean_bytes),
        opt(a.rss_peak_bytes),
        opt(a.cpu_mean_percent),
        opt(a.contexts_used),
        a.decode_mode.map(|m| m.to_string()).unwrap_or_default(),
        a.shared_from.clone().unwrap_or_default(),
        join_spaced(&a.chunk_ids),
        join_spaced(&a.pages),
        a.status.to_string(),
        a.error.clone().unwrap_or_default(),
        judge_missing(a).unwrap_or_default(),
    ]
}

/// [`AnswerRecord::judge_missing`] as one JSON object (`{"faithfulness":"undefined: …"}`), or
/// `None` when every judge metric judged has a value.
fn judge_missing(a: &AnswerRecord) -> Option<String> {
    (!a.judge_missing.is_empty())
        .then(|| serde_json::to_string(&a.judge_missing).unwrap_or_default())
}

/// `Some(v)` as its `Display` form, `None` as an empty string.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Integers joined by single spaces.
fn join_spaced(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(answer: &str) -> AnswerRecord {
        use crate::retrieve::{Bm25Variant, DenseIndexKind, RetrieverKind};
        AnswerRecord {
            cell: CellAxes {
                cell_id: "c1".into(),
                model: "smollm2".into(),
                retrieval: crate::cell::Retrieval {
                    chunk_size: 500,
                    chunk_overlap: 50,
                    retriever: RetrieverKind::Ensemble,
                    top_k: 4,
                    fetch_k: None,
                    lambda_mult: None,
                    ensemble_weight: Some(0.3),
                    bm25: Some(Bm25Variant::Okapi),
                    dense_index: Some(DenseIndexKind::Arroy),
                    name: None,
                    members: None,
                    child_chunk_size: None,
                    child_chunk_overlap: None,
                },
            },
            index_dir: None,
            repeat: 1,
            question_id: "q7".into(),
            question: "What is a \"Volume\"?".into(),
            expected_answer: "A tape, or a file".into(),
            answer: answer.into(),
            cosine: Some(0.1 + 0.2),
            response_time_s: Some(1.25),
            ttft_s: None,
            retrieval_s: Some(0.25),
            prompt_tokens: Some(431),
            completion_tokens: Some(57),
            rss_mean_bytes: Some(123_456_789),
            rss_peak_bytes: Some(u64::MAX),
            cpu_mean_percent: Some(187.5),
            contexts_used: Some(2),
            chunk_ids: vec![12, 3, 40],
            pages: vec![101, 7],
            status: crate::cell::AnswerStatus::Ok,
            error: None,
            metrics: Default::default(),
            decode_mode: Some(crate::cell::DecodeMode::Batched),
            shared_from: Some("c0".into()),
            judge_missing: [(
                "faithfulness".to_string(),
                "undefined: no statements".to_string(),
            )]
            .into(),
        }
    }

    fn export(rows: &[AnswerRecord]) -> String {
        let mut buf = Vec::new();
        write_csv(rows, &mut buf).expect("export");
        String::from_utf8(buf).expect("utf8")
    }

    #[test]
    fn header_has_the_documented_columns_in_order() {
        let text = export(&[]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, csv_columns());
        assert_eq!(reader.records().count(), 0);
    }

    #[test]
    fn tricky_answers_round_trip() {
        let tricky =
            "Yes, it does.\nSecond line with \"quotes\", commas,\r\nand a trailing quote\"";
        let rows = vec![record(tricky), record("plain")];
        let text = export(&rows);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(records.len(), 2);
        let cols = csv_columns();
        let col = |name: &str| cols.iter().position(|c| c == name).unwrap();
        assert_eq!(&records[0][col("answer")], tricky);
        assert_eq!(&records[0][col("question")], "What is a \"Volume\"?");
        assert_eq!(&records[1][col("answer")], "plain");
        // Exact float round trip (0.1 + 0.2 is not 0.3).
        let cos: f64 = records[0][col("cosine")].parse().unwrap();
        assert_eq!(cos, 0.1 + 0.2);
        assert_eq!(&records[0][col("ttft_s")], "");
        assert_eq!(&records[0][col("retrieval_s")], "0.25");
        assert_eq!(&records[0][col("fetch_k")], "");
        assert_eq!(&records[0][col("ensemble_weight")], "0.3");
        assert_eq!(&records[0][col("rss_peak_bytes")], u64::MAX.to_string());
        assert_eq!(&records[0][col("chunk_ids")], "12 3 40");
        assert_eq!(&records[0][col("contexts_used")], "2");
        assert_eq!(&records[0][col("decode_mode")], "batched");
        assert_eq!(&records[0][col("shared_from")], "c0");
        assert_eq!(
            &records[0][col("judge_missing")],
            r#"{"faithfulness":"undefined: no statements"}"#
        );
        assert_eq!(&records[0][col("pages")], "101 7");
        assert_eq!(&records[0][col("status")], "ok");
    }

    #[test]
    fn jsonl_round_trips_every_answer() {
        let mut a = record("a \"quoted\"\nanswer");
        a.metrics = [("hit@4".to_string(), 1.0), ("f1".to_string(), 0.25)]
            .into_iter()
            .collect();
        let b = record("plain");
        let mut out = Vec::new();
        write_jsonl(&[a.clone(), b.clone()], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
        let back: Vec<AnswerRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, [a, b]);
        assert!(
            text.contains(r#""metrics":{"f1":0.25,"hit@4":1.0}"#),
            "{text}"
        );
    }

    #[test]
    fn failed_row_has_empty_optional_fields() {
        let mut failed = record("");
        failed.cosine = None;
        failed.response_time_s = None;
        failed.prompt_tokens = None;
        failed.completion_tokens = None;
        failed.rss_mean_bytes = None;
        failed.rss_peak_bytes = None;
        failed.cpu_mean_percent = None;
        failed.contexts_used = None;
        failed.cell.retrieval.ensemble_weight = None;
        failed.chunk_ids.clear();
        failed.pages.clear();
        failed.status = crate::cell::AnswerStatus::Failed;
        failed.error = Some("=cmd|calc".into());
        let text = export(&[failed]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let row = reader.records().next().unwrap().unwrap();
        let cols = csv_columns();
        assert_eq!(row.len(), cols.len());
        for name in [
            "cosine",
            "response_time_s",
            "prompt_tokens",
            "rss_peak_bytes",
            "cpu_mean_percent",
            "contexts_used",
            "ensemble_weight",
            "chunk_ids",
            "pages",
        ] {
            let i = cols.iter().position(|c| c == name).unwrap();
            assert_eq!(&row[i], "", "{name}");
        }
        let col = |name: &str| cols.iter().position(|c| c == name).unwrap();
        assert_eq!(&row[col("status")], "failed");
        // a cell starting with `=` is escaped against spreadsheet formula injection
        assert_eq!(&row[col("error")], "'=cmd|calc");
    }

    #[test]
    fn metric_columns_follow_in_report_order() {
        let mut a = record("a");
        a.metrics = [
            ("rouge_l", 0.5),
            ("hit@4", 1.0),
            ("em", 0.0),
            ("ndcg@4", 0.63),
            ("zz", 2.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut b = record("b");
        b.metrics = [("recall@10".to_string(), 0.25)].into_iter().collect();
        let text = export(&[a, b]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(
            &header[csv_columns().len()..],
            ["hit@4", "ndcg@4", "recall@10", "em", "rouge_l", "zz"]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let col = |n: &str| header.iter().position(|c| c == n).unwrap();
        assert_eq!(&rows[0][col("ndcg@4")], "0.63");
        assert_eq!(&rows[0][col("recall@10")], "");
        assert_eq!(&rows[1][col("recall@10")], "0.25");
        assert_eq!(&rows[1][col("hit@4")], "");
        assert_eq!(&rows[0][col("bm25")], "okapi");
    }

    #[test]
    fn cells_csv_has_means_and_intervals_per_metric() {
        let mut rows = Vec::new();
        for (i, v) in [0.2, 0.5, 0.9].into_iter().enumerate() {
            let mut a = record("x");
            a.question_id = format!("q{i}");
            a.cosine = Some(v);
            a.metrics = [("ndcg@4".to_string(), v / 2.0)].into_iter().collect();
            rows.push(a);
        }
        let cells = crate::report::summarize(&rows).unwrap();
        let mut buf = Vec::new();
        write_cells_csv(&cells, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let recs: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 1);
        let col = |n: &str| {
            header
                .iter()
                .position(|c| c == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        let want = crate::stats::mean_ci(&[0.1, 0.25, 0.45], crate::report::CI_LEVEL).unwrap();
        let got = |n: &str| recs[0][col(n)].parse::<f64>().unwrap();
        assert!((got("ndcg@4_mean") - want.mean).abs() < 1e-12);
        // nDCG is in [0, 1]: the t interval's negative lower end is clipped to 0
        assert!(want.lo < 0.0);
        assert_eq!(got("ndcg@4_ci_low"), 0.0);
        assert!((got("ndcg@4_ci_high") - want.hi).abs() < 1e-12);
        assert_eq!(&recs[0][col("ndcg@4_n")], "3");
        assert_eq!(&recs[0][col("ndcg@4_ci_method")], "t_clipped");
        assert_eq!(&recs[0][col("cosine_ci_method")], "t_clipped");
        assert_eq!(&recs[0][col("answers")], "3");
        assert!((got("cosine_mean") - (0.2 + 0.5 + 0.9) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn formula_prefixes_are_escaped_but_numbers_are_not() {
        for risky in [
            "=1+1",
            "+cmd",
            "-cmd|calc",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "-",
            "=",
            "+-3e",
        ] {
            assert_eq!(formula_safe(risky), format!("'{risky}"), "{risky:?}");
        }
        for safe in ["-0.5", "+3", "-1e-9", "plain", "a=b", "", "'=x"] {
            assert_eq!(formula_safe(safe), safe, "{safe:?}");
        }
        // in a written CSV: answers, questions and axis values alike
        let mut a = record("@evil");
        a.question = "+question".into();
        a.cell.model = "=model".into();
        let text = export(&[a]);
        let row = csv::Reader::from_reader(text.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        let cols = csv_columns();
        let col = |n: &str| cols.iter().position(|c| c == n).unwrap();
        assert_eq!(&row[col("answer")], "'@evil");
        assert_eq!(&row[col("question")], "'+question");
        assert_eq!(&row[col("model")], "'=model");
    }

    /// A Parquet value in the CSV's text form: `null` empty, lists space-separated.
    fn render(v: polars::prelude::AnyValue<'_>) -> String {
        use polars::prelude::AnyValue;
        match v {
            AnyValue::Null => String::new(),
            AnyValue::String(s) => s.to_string(),
            AnyValue::StringOwned(s) => s.to_string(),
            AnyValue::Float64(x) => x.to_string(),
            AnyValue::Int64(x) => x.to_string(),
            AnyValue::UInt64(x) => x.to_string(),
            AnyValue::UInt32(x) => x.to_string(),
            AnyValue::List(s) => s
                .u32()
                .unwrap()
                .iter()
                .map(|x| x.unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            other => panic!("unexpected Parquet value {other:?}"),
        }
    }

    /// Reads `bytes` as Parquet and checks it holds exactly the rows of `csv_text` (the CSV's
    /// formula escaping applied to its text); returns the frame.
    fn assert_same_rows(bytes: Vec<u8>, csv_text: &str) -> DataFrame {
        use polars_io::SerReader;
        let df = polars_io::prelude::ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .unwrap();
        let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, header);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(df.height(), rows.len());
        for (i, row) in rows.iter().enumerate() {
            for (j, name) in header.iter().enumerate() {
                let v = df.column(name).unwrap().get(i).unwrap();
                let text = matches!(
                    v,
                    polars::prelude::AnyValue::String(_)
                        | polars::prelude::AnyValue::StringOwned(_)
                );
                let got = render(v);
                let got = if text { formula_safe(&got) } else { got };
                assert_eq!(got, &row[j], "row {i} column {name}");
            }
        }
        df
    }

    #[test]
    fn parquet_answers_read_back_with_the_csv_rows_and_types() {
        use polars::prelude::DataType;
        let mut a = record("a \"quoted\", answer\nover lines");
        a.metrics = [("hit@4".to_string(), 1.0), ("f1".to_string(), 0.1 + 0.2)]
            .into_iter()
            .collect();
        let mut b = record("=HYPERLINK(\"x\")");
        b.metrics = [("ndcg@4".to_string(), 0.63)].into_iter().collect();
        b.chunk_ids.clear();
        b.pages.clear();
        b.cell.retrieval.ensemble_weight = None;
        b.status = crate::cell::AnswerStatus::Failed;
        b.error = Some("-boom".into());
        b.cosine = None;
        b.rss_peak_bytes = None;
        let rows = [a, b];
        let mut bytes = Vec::new();
        write_parquet(&mut answers_frame(&rows).unwrap(), &mut bytes).unwrap();
        assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
        let df = assert_same_rows(bytes, &export(&rows));
        let dtype = |n: &str| df.column(n).unwrap().dtype().clone();
        assert_eq!(dtype("chunk_size"), DataType::Int64);
        assert_eq!(dtype("fetch_k"), DataType::Int64);
        assert_eq!(dtype("ensemble_weight"), DataType::Float64);
        assert_eq!(dtype("model"), DataType::String);
        assert_eq!(dtype("repeat"), DataType::UInt32);
        assert_eq!(dtype("rss_peak_bytes"), DataType::UInt64);
        assert_eq!(dtype("cosine"), DataType::Float64);
        assert_eq!(
            dtype("chunk_ids"),
            DataType::List(Box::new(DataType::UInt32))
        );
        for m in ["hit@4", "ndcg@4", "f1"] {
            assert_eq!(dtype(m), DataType::Float64, "{m}");
        }
        // values as stored, no spreadsheet escaping
        let answer = df.column("answer").unwrap();
        assert_eq!(render(answer.get(1).unwrap()), "=HYPERLINK(\"x\")");
        assert_eq!(
            render(df.column("f1").unwrap().get(0).unwrap()),
            (0.1 + 0.2).to_string()
        );
        assert_eq!(
            df.column("hit@4").unwrap().get(1).unwrap(),
            polars::prelude::AnyValue::Null
        );
        assert_eq!(
            df.column("rss_peak_bytes").unwrap().u64().unwrap().get(0),
            Some(u64::MAX)
        );
    }

    #[test]
    fn parquet_cells_read_back_with_the_csv_rows_and_methods() {
        let mut rows = Vec::new();
        for (i, hit) in [1.0, 1.0, 0.0, 1.0].into_iter().enumerate() {
            let mut a = record("x");
            a.question_id = format!("q{i}");
            a.cell.model = "@model".into(); // escaped in the CSV, kept in Parquet
            a.metrics = [("hit@4".to_string(), hit), ("zz".to_string(), 3.0 * hit)]
                .into_iter()
                .collect();
            rows.push(a);
        }
        let cells = crate::report::summarize(&rows).unwrap();
        let mut csv_bytes = Vec::new();
        write_cells_csv(&cells, &mut csv_bytes).unwrap();
        let mut bytes = Vec::new();
        write_parquet(&mut cells_frame(&cells).unwrap(), &mut bytes).unwrap();
        let df = assert_same_rows(bytes, &String::from_utf8(csv_bytes).unwrap());
        let get = |n: &str| render(df.column(n).unwrap().get(0).unwrap());
        assert_eq!(get("model"), "@model");
        assert_eq!(get("hit@4_ci_method"), "wilson");
        assert_eq!(get("zz_ci_method"), "t");
        assert_eq!(get("response_time_s_ci_method"), "t_clipped");
        let (lo, hi) = crate::stats::wilson_interval(3.0, 4, 0.95).unwrap();
        assert_eq!(get("hit@4_ci_low"), lo.to_string());
        assert_eq!(get("hit@4_ci_high"), hi.to_string());
        assert_eq!(get("hit@4_n"), "4");
        assert_eq!(
            df.column("hit@4_n").unwrap().dtype(),
            &polars::prelude::DataType::UInt64
        );
    }

    #[test]
    fn writer_errors_are_reported() {
        struct Broken;
        impl std::io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = write_csv(&[record("x")], Broken).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
