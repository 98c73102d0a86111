//! CSV export of stored answers: one row per [`AnswerRecord`], a fixed column order, written with
//! the `csv` crate (RFC 4180 quoting, so answers with commas, quotes or newlines round-trip).

use crate::store::AnswerRecord;

/// Column names of [`write_csv`], in order.
pub const CSV_COLUMNS: [&str; 24] = [
    "cell_id",
    "model",
    "chunk_size",
    "chunk_overlap",
    "retriever",
    "ensemble_weight",
    "top_k",
    "fetch_k",
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
    /// Flushing the underlying writer failed.
    #[error("flushing CSV output: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes `answers` as CSV with a header row to `out`.
///
/// Columns: [`CSV_COLUMNS`] in that order. Units follow [`AnswerRecord`]: sizes in characters,
/// times in seconds, memory in bytes, CPU in percent of one core. `None` becomes an empty field;
/// `chunk_ids` and `pages` are space-separated integers (empty when there are none). Floats use
/// Rust's shortest round-trip formatting, so parsing them back gives the same `f64`.
///
/// Errors: [`ExportError`] when the writer fails.
pub fn write_csv<W: std::io::Write>(answers: &[AnswerRecord], out: W) -> Result<(), ExportError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CSV_COLUMNS)?;
    for answer in answers {
        writer.write_record(record_fields(answer))?;
    }
    writer.flush()?;
    tracing::debug!(rows = answers.len(), "wrote CSV export");
    Ok(())
}

/// The fields of one row, in [`CSV_COLUMNS`] order.
fn record_fields(a: &AnswerRecord) -> [String; 24] {
    [
        a.cell_id.clone(),
        a.model.clone(),
        a.chunk_size.to_string(),
        a.chunk_overlap.to_string(),
        a.retriever.clone(),
        opt(a.ensemble_weight),
        a.top_k.to_string(),
        opt(a.fetch_k),
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
            chunk_ids: vec![12, 3, 40],
            pages: vec![101, 7],
            status: "ok".into(),
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
        assert_eq!(&records[0][col("pages")], "101 7");
        assert_eq!(&records[0][col("status")], "ok");
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
