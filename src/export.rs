//! CSV export of stored answers: one row per [`AnswerRecord`], a fixed column order followed by
//! one column per metric present in the rows ([`metric_columns`]), written with the `csv` crate
//! (RFC 4180 quoting, so answers with commas, quotes or newlines round-trip). [`write_cells_csv`]
//! writes one row per cell instead: its axes and, per metric, the mean with its 95% t-interval.

use crate::cell::CellAxes;
use crate::report::{metric_columns, metric_order};
use crate::store::AnswerRecord;

/// The answer columns of [`write_csv`], in order: they follow the cell's axis columns
/// ([`CellAxes::columns`]); metric columns come last.
pub const ANSWER_COLUMNS: [&str; 20] = [
    "repeat",
    "question_id",
    "question",
    "expected_answer",
    "answer",
    "cosine",
    "response_time_s",
    "ttft_s",
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
];

/// Every column of [`write_csv`] before the metric columns: the axes, then [`ANSWER_COLUMNS`].
pub fn csv_columns() -> Vec<String> {
    CellAxes::columns()
        .into_iter()
        .chain(ANSWER_COLUMNS.iter().map(|c| c.to_string()))
        .collect()
}

/// Errors of the CSV export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
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

/// The columns of [`write_cells_csv`] after the axes ([`CellAxes::columns`]); four columns per
/// metric follow.
pub const CELL_COLUMNS: [&str; 4] = ["status", "error", "answers", "failed"];

/// Writes one row per cell (from [`crate::report::cell_summaries`]: every stored cell, failed ones
/// without answers included) as CSV with a header to `out`.
///
/// Columns: the axes ([`CellAxes::columns`]), [`CELL_COLUMNS`] (status, the first line of a failed
/// cell's error, answers, failed answers), then for `cosine`, `response_time_s` (seconds) and every metric
/// present in any cell (in [`metric_order`]) four columns `<m>_mean`, `<m>_ci_low`, `<m>_ci_high`
/// (the 95% Student-t interval of the mean, [`crate::report::CI_LEVEL`]) and `<m>_n` (answers
/// with that metric). Empty fields where a cell lacks the metric; the interval is the mean itself
/// when n = 1. Errors: [`ExportError`] when the writer fails.
pub fn write_cells_csv<W: std::io::Write>(
    cells: &[crate::report::CellSummary],
    out: W,
) -> Result<(), ExportError> {
    let mut names: Vec<String> = cells
        .iter()
        .flat_map(|c| c.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    names.sort_by_key(|n| metric_order(n));
    let mut metrics = vec!["cosine".to_string(), "response_time_s".to_string()];
    metrics.extend(names);
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Vec<String> = CellAxes::columns();
    header.extend(CELL_COLUMNS.iter().map(|c| c.to_string()));
    for m in &metrics {
        for suffix in ["mean", "ci_low", "ci_high", "n"] {
            header.push(format!("{m}_{suffix}"));
        }
    }
    writer.write_record(&header)?;
    for c in cells {
        let mut row = c.axes.values();
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
            let ci = match m.as_str() {
                "cosine" => c.cosine,
                "response_time_s" => c.response_time_s,
                _ => c.metrics.get(m).copied(),
            };
            row.push(opt(ci.map(|v| v.mean)));
            row.push(opt(ci.map(|v| v.lo)));
            row.push(opt(ci.map(|v| v.hi)));
            row.push(opt(ci.map(|v| v.n)));
        }
        writer.write_record(&row)?;
    }
    writer.flush()?;
    Ok(())
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
fn record_fields(a: &AnswerRecord) -> [String; 20] {
    [
        a.repeat.to_string(),
        a.question_id.clone(),
        a.question.clone(),
        a.expected_answer.clone(),
        a.answer.clone(),
        opt(a.cosine),
        opt(a.response_time_s),
        opt(a.ttft_s),
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
    ]
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
        assert_eq!(&records[0][col("fetch_k")], "");
        assert_eq!(&records[0][col("ensemble_weight")], "0.3");
        assert_eq!(&records[0][col("rss_peak_bytes")], u64::MAX.to_string());
        assert_eq!(&records[0][col("chunk_ids")], "12 3 40");
        assert_eq!(&records[0][col("contexts_used")], "2");
        assert_eq!(&records[0][col("decode_mode")], "batched");
        assert_eq!(&records[0][col("shared_from")], "c0");
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
        assert!((got("ndcg@4_ci_low") - want.lo).abs() < 1e-12);
        assert!((got("ndcg@4_ci_high") - want.hi).abs() < 1e-12);
        assert_eq!(&recs[0][col("ndcg@4_n")], "3");
        assert_eq!(&recs[0][col("answers")], "3");
        assert!((got("cosine_mean") - (0.2 + 0.5 + 0.9) / 3.0).abs() < 1e-12);
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
