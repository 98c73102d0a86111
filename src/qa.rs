//! Question/answer sets: the TOML schema and the seed notebooks' plain-text format.
//!
//! This module owns [`Question`] and [`load_questions`]. Two formats, chosen by file extension:
//!
//! - `.toml`: an array of `[[question]]` tables with the fields of [`Question`] (`id`,
//!   `question`, `expected_answer` required; `short_answer`, `page`, `evidence`, `difficulty`
//!   optional). Unknown keys and wrong types are errors naming the file, line and column. `id`,
//!   `question` and `expected_answer` must be non-empty (after trimming) and ids unique.
//! - anything else: the seed notebooks' plain text, non-empty lines alternating question and
//!   expected answer (lines are trimmed; blank lines are ignored), ids `q01`, `q02`, ...
//!
//! A set with no questions is an error in both formats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One expert question with its reference answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// Unique, non-empty id within the set (e.g. `b01`, or `q01` for plain-text sets).
    pub id: String,
    /// The question put to the model.
    pub question: String,
    /// Reference answer (one short sentence) that generated answers are scored against.
    pub expected_answer: String,
    /// The minimal answer (a word, number or phrase), if known.
    pub short_answer: Option<String>,
    /// 1-based page of the source PDF holding the answer, if known.
    pub page: Option<u32>,
    /// Verbatim quote from the extracted page text containing the answer, if known.
    pub evidence: Option<String>,
    /// Free-form difficulty label (e.g. `easy`, `medium`, `hard`), if known.
    pub difficulty: Option<String>,
}

/// Errors loading a question set. Every variant names the file; positions are 1-based, columns
/// count characters.
#[derive(Debug, thiserror::Error)]
pub enum QaError {
    /// The file could not be read (or is not UTF-8).
    #[error("cannot read question file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, missing field or wrong type.
    #[error("{path}:{line}:{column}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line (1 if toml reported no position).
        line: usize,
        /// 1-based column in characters (1 if toml reported no position).
        column: usize,
        /// toml's message.
        message: String,
    },
    /// A required text field (`id`, `question`, `expected_answer`) is empty or blank.
    #[error("{path}:{line}:{column}: `{field}` must not be empty")]
    EmptyField {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// The field name.
        field: &'static str,
    },
    /// Two questions share an id.
    #[error(
        "{path}:{line}:{column}: duplicate question id `{id}` (first used on line {first_line})"
    )]
    DuplicateId {
        /// The file.
        path: PathBuf,
        /// 1-based line of the second occurrence.
        line: usize,
        /// 1-based column of the second occurrence.
        column: usize,
        /// The repeated id.
        id: String,
        /// 1-based line of the first occurrence.
        first_line: usize,
    },
    /// Plain-text format: a question line without an answer line after it.
    #[error("{path}:{line}: question has no expected-answer line after it (odd number of non-empty lines)")]
    MissingAnswer {
        /// The file.
        path: PathBuf,
        /// 1-based line of the unpaired question.
        line: usize,
    },
    /// The file holds no questions.
    #[error("question file {path} contains no questions")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Load a question set: TOML for `.toml` files (case-insensitive extension), the plain-text
/// alternating-lines format for anything else. See the module docs for both schemas.
///
/// Errors: [`QaError::Io`], [`QaError::Toml`], [`QaError::EmptyField`], [`QaError::DuplicateId`],
/// [`QaError::MissingAnswer`], [`QaError::Empty`].
pub fn load_questions(path: &Path) -> Result<Vec<Question>, QaError> {
    let text = std::fs::read_to_string(path).map_err(|source| QaError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let is_toml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let questions = if is_toml {
        parse_toml(path, &text)?
    } else {
        parse_plain(path, &text)?
    };
    if questions.is_empty() {
        return Err(QaError::Empty {
            path: path.to_path_buf(),
        });
    }
    tracing::debug!(file = %path.display(), questions = questions.len(), "loaded questions");
    Ok(questions)
}

/// The TOML document: only `[[question]]` tables.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QaFile {
    #[serde(default)]
    question: Vec<QuestionRecord>,
}

/// One `[[question]]` table as written, with spans for position-aware validation.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuestionRecord {
    id: toml::Spanned<String>,
    question: toml::Spanned<String>,
    expected_answer: toml::Spanned<String>,
    short_answer: Option<String>,
    page: Option<u32>,
    evidence: Option<String>,
    difficulty: Option<String>,
}

/// Parse and validate the TOML format.
fn parse_toml(path: &Path, text: &str) -> Result<Vec<Question>, QaError> {
    let file: QaFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|s| line_column(text, s.start))
            .unwrap_or((1, 1));
        QaError::Toml {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;
    let mut first_line_of_id: HashMap<String, usize> = HashMap::new();
    let mut questions = Vec::with_capacity(file.question.len());
    for record in file.question {
        for (field, value) in [
            ("id", &record.id),
            ("question", &record.question),
            ("expected_answer", &record.expected_answer),
        ] {
            require_non_empty(path, text, field, value)?;
        }
        let (line, column) = line_column(text, record.id.span().start);
        let id = record.id.get_ref().clone();
        if let Some(&first_line) = first_line_of_id.get(&id) {
            return Err(QaError::DuplicateId {
                path: path.to_path_buf(),
                line,
                column,
                id,
                first_line,
            });
        }
        first_line_of_id.insert(id.clone(), line);
        questions.push(Question {
            id,
            question: record.question.into_inner(),
            expected_answer: record.expected_answer.into_inner(),
            short_answer: record.short_answer,
            page: record.page,
            evidence: record.evidence,
            difficulty: record.difficulty,
        });
    }
    Ok(questions)
}

/// Error if a spanned string field is blank.
fn require_non_empty(
    path: &Path,
    text: &str,
    field: &'static str,
    value: &toml::Spanned<String>,
) -> Result<(), QaError> {
    if !value.get_ref().trim().is_empty() {
        return Ok(());
    }
    let (line, column) = line_column(text, value.span().start);
    Err(QaError::EmptyField {
        path: path.to_path_buf(),
        line,
        column,
        field,
    })
}

/// 1-based (line, character column) of a byte offset in `text` (clamped to the text).
fn line_column(text: &str, byte: usize) -> (usize, usize) {
    let mut end = byte.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parse the plain-text format: non-empty (trimmed) lines alternate question / expected answer.
fn parse_plain(path: &Path, text: &str) -> Result<Vec<Question>, QaError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let mut questions = Vec::with_capacity(lines.len() / 2);
    for (n, pair) in lines.chunks(2).enumerate() {
        let [(_, question), (_, answer)] = pair else {
            return Err(QaError::MissingAnswer {
                path: path.to_path_buf(),
                line: pair.first().map_or(0, |(line, _)| *line),
            });
        };
        questions.push(Question {
            id: plain_id(n),
            question: (*question).to_string(),
            expected_answer: (*answer).to_string(),
            short_answer: None,
            page: None,
            evidence: None,
            difficulty: None,
        });
    }
    Ok(questions)
}

/// Id of the `n`-th (0-based) plain-text question: `q01`, `q02`, ..., `q99`, `q100`, ...
fn plain_id(n: usize) -> String {
    format!("q{:02}", n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    const GOOD: &str = r#"
[[question]]
id = "b01"
question = "What is Bacula?"
expected_answer = "A network backup program."
short_answer = "backup program"
page = 3
evidence = "Bacula is a set of computer programs"
difficulty = "easy"

[[question]]
id = "b02"
question = "Which port does the Director use?"
expected_answer = "Port 9101."
"#;

    #[test]
    fn loads_toml_with_optional_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "qa.toml", GOOD);
        let qs = load_questions(&path).expect("load");
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].id, "b01");
        assert_eq!(qs[0].page, Some(3));
        assert_eq!(qs[0].short_answer.as_deref(), Some("backup program"));
        assert_eq!(qs[1].expected_answer, "Port 9101.");
        assert_eq!(qs[1].page, None);
        assert_eq!(qs[1].difficulty, None);
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace(
            "difficulty = \"easy\"",
            "difficulty = \"easy\"\nanswer = \"x\"",
        );
        let path = write(dir.path(), "bad.toml", &text);
        let err = load_questions(&path).expect_err("unknown key");
        let QaError::Toml { line, column, .. } = &err else {
            panic!("expected a Toml error, got {err:?}");
        };
        assert_eq!(*line, 10, "{err}");
        assert_eq!(*column, 1, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("bad.toml:10:1"), "{msg}");
        assert!(msg.contains("answer"), "{msg}");
    }

    #[test]
    fn wrong_type_names_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("page = 3", "page = \"three\"");
        let path = write(dir.path(), "t.toml", &text);
        let err = load_questions(&path).expect_err("wrong type");
        assert!(
            matches!(
                err,
                QaError::Toml {
                    line: 7,
                    column: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("t.toml:7:8"), "{err}");
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("expected_answer = \"Port 9101.\"\n", "");
        let path = write(dir.path(), "m.toml", &text);
        let err = load_questions(&path).expect_err("missing field");
        assert!(matches!(err, QaError::Toml { .. }), "{err}");
        assert!(err.to_string().contains("expected_answer"), "{err}");
    }

    #[test]
    fn duplicate_and_empty_ids_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dup = write(dir.path(), "d.toml", &GOOD.replace("\"b02\"", "\"b01\""));
        let err = load_questions(&dup).expect_err("duplicate");
        assert!(
            matches!(&err, QaError::DuplicateId { id, line: 12, first_line: 3, .. } if id == "b01"),
            "{err}"
        );
        let empty = write(dir.path(), "e.toml", &GOOD.replace("\"b02\"", "\"  \""));
        let err = load_questions(&empty).expect_err("empty id");
        assert!(
            matches!(
                err,
                QaError::EmptyField {
                    field: "id",
                    line: 12,
                    column: 6,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn toml_without_questions_is_empty_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "none.toml", "# nothing\n");
        assert!(matches!(load_questions(&path), Err(QaError::Empty { .. })));
    }

    #[test]
    fn plain_text_alternates_and_numbers_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "seed.txt",
            "What is X?\nX is a thing.\n\n   \nWhat is Y?  \n  Y is another.\n",
        );
        let qs = load_questions(&path).expect("load");
        let ids: Vec<&str> = qs.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["q01", "q02"]);
        assert_eq!(qs[1].question, "What is Y?");
        assert_eq!(qs[1].expected_answer, "Y is another.");
        assert_eq!(plain_id(99), "q100");
    }

    #[test]
    fn plain_text_odd_count_names_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "odd.txt", "Q1\nA1\n\nQ2\n");
        let err = load_questions(&path).expect_err("odd");
        assert!(
            matches!(err, QaError::MissingAnswer { line: 4, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("odd.txt:4"), "{err}");
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "ab\nçd";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2));
    }
}
