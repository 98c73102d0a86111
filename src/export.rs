//! CSV export of stored answers: one row per [`AnswerRecord`], a fixed column order followed by
//! one column per metric present in the rows ([`metric_columns`]), written with the `csv` crate
//! (RFC 4180 quoting, so answers with commas, quotes or newlines round-trip). [`write_cells_csv`]
//! writes one row per cell instead: its axes and, per metric, the mean with its 95% t-interval.

use crate::store::AnswerRecord;

/// The fixed leading column names of [`write_csv`], in order; metric columns follow.
pub const CSV_COLUMNS: [&str; 27] = [
    "cell_id",
    "model",
    "chunk_size",
    "chunk_overlap",
    "retriever",
    "ensemble_weight",
    "top_k",
    "fetch_k",
    "bm25",
    "dense_index",
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
    "chunk_ids",
    "pages",
    "status",
];

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

/// Metric names present in `answers`, in report order: retrieval metrics (`hit@k`, `recall@k`,
/// `mrr@k`, `ndcg@k`, by k), then answer metrics (`em`, `f1`, `contains`, `rouge_l`, `meteor`),
/// then any other name alphabetically.
pub fn metric_columns(answers: &[AnswerRecord]) -> Vec<String> {
    let mut names: Vec<String> = answers
        .iter()
        .flat_map(|a| a.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    names.sort_by_key(|n| metric_order(n));
    names
}

/// Sort key of a metric name for [`metric_columns`].
pub fn metric_order(name: &str) -> (u8, usize, u8, String) {
    const RETRIEVAL: [&str; 4] = ["hit", "recall", "mrr", "ndcg"];
    const ANSWER: [&str; 6] = ["cosine", "em", "f1", "contains", "rouge_l", "meteor"];
    if let Some((m, k)) = name.split_once('@') {
        if let (Some(i), Ok(k)) = (RETRIEVAL.iter().position(|r| *r == m), k.parse()) {
            return (0, k, i as u8, String::new());
        }
    }
    match ANSWER.iter().position(|a| *a == name) {
        Some(i) => (1, 0, i as u8, String::new()),
        None => (2, 0, 0, name.to_string()),
    }
}

/// Writes `answers` as CSV with a header row to `out`.
///
/// Columns: [`CSV_COLUMNS`] in that order, then [`metric_columns`] (a row without that metric
/// has an empty field). Units follow [`AnswerRecord`]: sizes in characters,
/// times in seconds, memory in bytes, CPU in percent of one core. `None` becomes an empty field;
/// `chunk_ids` and `pages` are space-separated integers (empty when there are none), of which the
/// first `contexts_used` were given to the model. Floats use
/// Rust's shortest round-trip formatting, so parsing them back gives the same `f64`.
///
/// Errors: [`ExportError`] when the writer fails.
pub fn write_csv<W: std::io::Write>(answers: &[AnswerRecord], out: W) -> Result<(), ExportError> {
    let mut writer = csv::Writer::from_writer(out);
    let metrics = metric_columns(answers);
    writer.write_record(
        CSV_COLUMNS
            .iter()
            .copied()
            .chain(metrics.iter().map(String::as_str)),
    )?;
    for answer in answers {
        let fixed = record_fields(answer);
        let extra = metrics.iter().map(|m| opt(answer.metrics.get(m).copied()));
        writer.write_record(fixed.into_iter().chain(extra))?;
    }
    writer.flush()?;
    tracing::debug!(rows = answers.len(), "wrote CSV export");
    Ok(())
}

/// The leading columns of [`write_cells_csv`], in order; four columns per metric follow.
pub const CELL_COLUMNS: [&str; 12] = [
    "cell_id",
    "model",
    "chunk_size",
    "chunk_overlap",
    "retriever",
    "ensemble_weight",
    "top_k",
    "fetch_k",
    "bm25",
    "dense_index",
    "answers",
    "failed",
];

/// Writes one row per cell (from [`crate::report::summarize`]) as CSV with a header to `out`.
///
/// Columns: [`CELL_COLUMNS`], then for `cosine`, `response_time_s` (seconds) and every metric
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
    let mut header: Vec<String> = CELL_COLUMNS.iter().map(|c| c.to_string()).collect();
    for m in &metrics {
        for suffix in ["mean", "ci_low", "ci_high", "n"] {
            header.push(format!("{m}_{suffix}"));
        }
    }
    writer.write_record(&header)?;
    for c in cells {
        let a = &c.axes;
        let mut row = vec![
            a.cell_id.clone(),
            a.model.clone(),
            a.chunk_size.to_string(),
            a.chunk_overlap.to_string(),
            a.retriever.clone(),
            opt(a.ensemble_weight),
            a.top_k.to_string(),
            opt(a.fetch_k),
            a.bm25.clone().unwrap_or_default(),
            a.dense_index.clone().unwrap_or_default(),
            c.n_answers.to_string(),
            c.n_failed.to_string(),
        ];
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

/// The fields of one row, in [`CSV_COLUMNS`] order.
fn record_fields(a: &AnswerRecord) -> [String; 27] {
    [
        a.cell_id.clone(),
        a.model.clone(),
        a.chunk_size.to_string(),
        a.chunk_overlap.to_string(),
        a.retriever.clone(),
        opt(a.ensemble_weight),
        a.top_k.to_string(),
        opt(a.fetch_k),
        a.bm25.clone().unwrap_or_default(),
        a.dense_index.clone().unwrap_or_default(),
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
        join_spaced(&a.chunk_ids),
        join_spaced(&a.pages),
        a.status.clone(),
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
        AnswerRecord {
            cell_id: "c0ffee".into(),
            model: "smollm2".into(),
            chunk_size: 500,
            chunk_overlap: 50,
            retriever: "ensemble".into(),
            ensemble_weight: Some(0.3),
            top_k: 4,
            fetch_k: None,
            bm25: Some("okapi".into()),
            dense_index: Some("arroy".into()),
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
            status: "ok".into(),
            metrics: Default::default(),
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
        assert_eq!(header, CSV_COLUMNS);
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
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
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
        failed.ensemble_weight = None;
        failed.chunk_ids.clear();
        failed.pages.clear();
        failed.status = "failed".into();
        let text = export(&[failed]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(row.len(), CSV_COLUMNS.len());
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
            let i = CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
            assert_eq!(&row[i], "", "{name}");
        }
        assert_eq!(&row[CSV_COLUMNS.len() - 1], "failed");
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
            &header[CSV_COLUMNS.len()..],
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
