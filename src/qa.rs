//! Question/answer sets: the TOML schema, BEIR qrels, and two plain-text formats.
//!
//! This module owns [`Question`], [`QaFormat`], [`load_questions`] and [`load_questions_as`].
//! Four formats ([`QaFormat`]); [`load_questions`] chooses by file extension (`.toml` → `toml`,
//! `.tsv` → `beir`, anything else → `plain`), [`load_questions_as`] can force any of them:
//!
//! - `toml` (`.toml`): an array of `[[question]]` tables with the fields of [`Question`] (`id`,
//!   `question`, `expected_answer` required; `short_answer`, `page`, `evidence`, `difficulty`,
//!   `source` optional). Unknown keys and wrong types are errors naming the file, line and column. `id`,
//!   `question` and `expected_answer` must be non-empty (after trimming) and ids unique.
//! - `beir` (`.tsv`): BEIR qrels (`qrels/<split>.tsv`) with the queries read from
//!   `queries.jsonl` in the dataset directory (the qrels file's directory's parent), see
//!   [`load_beir_questions`] (Thakur et al. 2021, "BEIR: A Heterogeneous Benchmark for Zero-shot
//!   Evaluation of Information Retrieval Models"). Such questions have graded
//!   [`Question::qrels`] and an empty `expected_answer` (BEIR has no reference answers).
//! - `plain` (anything else): orchestrate's tolerant plain text, non-empty lines alternating
//!   question and expected answer (lines are trimmed and kept whole; blank lines are ignored),
//!   ids `q01`, `q02`, ...
//! - `seed` (never chosen by extension): the seed LangChain notebooks' QA text exactly as they
//!   read it, `[line.rstrip()[3:] for line in f.readlines()]` with questions `lines[0::2]` and
//!   answers `lines[1::2]`: trailing whitespace removed, then the first 3 characters (a prefix
//!   such as `Q1 ` / `A1 `) dropped; every line counts, blank ones included. See
//!   [`QaFormat::Seed`] for the exact rule and its quirks; `tests/fixtures/qa/` checks it
//!   against Python.
//!
//! A set with no questions is an error in every format.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One expert question with its reference answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// Unique, non-empty id within the set (e.g. `b01`, or `q01` for plain-text sets).
    pub id: String,
    /// The question put to the model.
    pub question: String,
    /// Reference answer (one short sentence) that generated answers are scored against. Empty for
    /// BEIR questions, which have none: answer metrics and cosine similarity are then not
    /// computed.
    pub expected_answer: String,
    /// The minimal answer (a word, number or phrase), if known.
    pub short_answer: Option<String>,
    /// 1-based page of the source PDF holding the answer, if known.
    pub page: Option<u32>,
    /// Verbatim quote from the extracted page text containing the answer, if known; NFKC-normalised
    /// on load, like the corpus text, and never blank.
    pub evidence: Option<String>,
    /// Free-form difficulty label (e.g. `easy`, `medium`, `hard`), if known.
    pub difficulty: Option<String>,
    /// File name (no directory) of the corpus document that `page` and `evidence` refer to, e.g.
    /// `main.pdf`, if given: only that document's chunks can then be relevant. Needed when the
    /// corpus has several files and the question gives a page (page 12 exists in each of them).
    #[serde(default)]
    pub source: Option<String>,
    /// BEIR relevance judgements: corpus document `_id` → integer grade as in the qrels file
    /// (0 = judged not relevant; grades <= 0 give no gain). Empty for non-BEIR questions. When
    /// non-empty, retrieval is judged per document against these instead of `evidence`/`page`
    /// (see [`crate::score::metrics_for`]).
    #[serde(default)]
    pub qrels: BTreeMap<String, i64>,
}

impl Question {
    /// Content address of what answers to this question are scored against: sha256 (hex) of the
    /// expected and short answer, page, evidence, source and BEIR relevance judgements. A stored
    /// answer whose digest differs is re-scored (no LLM call), so editing a question's
    /// evidence never leaves retrieval metrics computed against the old quote.
    pub fn reference_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let key = serde_json::json!([
            self.expected_answer,
            self.short_answer,
            self.page,
            self.evidence,
            self.source,
            self.qrels,
        ]);
        format!("{:x}", Sha256::digest(key.to_string().as_bytes()))
    }
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
    /// Plain-text or seed format: a question line without an answer line after it.
    #[error("{path}:{line}: question has no expected-answer line after it (odd number of question and answer lines)")]
    MissingAnswer {
        /// The file.
        path: PathBuf,
        /// 1-based line of the unpaired question.
        line: usize,
    },
    /// Seed format: a question or answer line that is empty after `line.rstrip()[3:]` (a blank
    /// line, or one of at most 3 characters before its trailing whitespace).
    #[error("{path}:{line}: `{field}` is empty: the seed format reads each line as Python's `line.rstrip()[3:]` (the first 3 characters, e.g. `Q1 `, are dropped) and blank lines count as lines")]
    SeedEmptyField {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// `question` or `expected_answer`.
        field: &'static str,
    },
    /// The file holds no questions.
    #[error("question file {path} contains no questions")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A BEIR qrels or queries file is invalid at a line: bad or missing header, wrong number of
    /// fields, non-integer grade, empty id, bad JSON or fields in `queries.jsonl`, duplicate query
    /// id, a qrels query id missing from `queries.jsonl`, no qrels lines. The message says which.
    #[error("{path}:{line}: {message}")]
    Beir {
        /// The file (qrels `.tsv` or `queries.jsonl`).
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The BEIR queries file next to a qrels file could not be read.
    #[error("cannot read BEIR queries file {queries} (for qrels {qrels}; BEIR layout is DATASET/queries.jsonl next to DATASET/qrels/): {source}")]
    BeirQueries {
        /// The qrels file that was loaded.
        qrels: PathBuf,
        /// The queries file looked for ([`beir_queries_path`]).
        queries: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// A question-set file format: see the module docs and each variant. Serialised lowercase
/// (`toml`, `beir`, `plain`, `seed`), the same names as [`fmt::Display`] and [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QaFormat {
    /// `[[question]]` tables with the fields of [`Question`] (orchestrate's own schema). Chosen
    /// for `.toml` files.
    Toml,
    /// A BEIR split: the qrels file (`DATASET/qrels/<split>.tsv`) plus `DATASET/queries.jsonl`,
    /// as BEIR's `GenericDataLoader` reads them, see [`load_beir_questions`]. Chosen for `.tsv`
    /// files.
    Beir,
    /// orchestrate's tolerant plain text: lines split at `\n` (a trailing `\r` removed),
    /// trimmed (Rust `str::trim`), blank ones skipped; the remaining lines alternate question and
    /// expected answer and are kept whole (a `Q1 ` prefix stays in the text). Ids `q01`, `q02`,
    /// ... Chosen for every other extension.
    Plain,
    /// The seed LangChain notebooks' QA text, exactly as they read it:
    /// `lines = [line.rstrip()[3:] for line in open(path).readlines()]`, `questions =
    /// lines[0::2]`, `answers = lines[1::2]`, paired with `zip`. Never chosen by extension.
    ///
    /// - Lines end at `\n`, `\r\n` or a lone `\r` (Python's universal newlines); a final line
    ///   terminator does not start another line. A leading UTF-8 BOM is dropped first (as
    ///   `encoding="utf-8-sig"` would; what a plain `open` does with it depends on the locale).
    /// - Trailing whitespace is removed as `str.rstrip()` does: every character with Python's
    ///   `str.isspace` (Unicode White_Space plus `\x1c`-`\x1f`), so `\r`, tabs, NBSP, U+2028
    ///   and U+3000 go; leading whitespace stays.
    /// - Then the first 3 characters are dropped, counted in Unicode code points as Python
    ///   slices (`É`, `问` or an emoji is one character; `E` + U+0301 is two). Nothing else is
    ///   trimmed, so a two-digit prefix keeps a leading space: `Q10 What?` gives ` What?`
    ///   (the notebooks put that space in their prompts, and so does this format).
    /// - Every line counts, blank ones included: line 2k-1 is question k and line 2k its
    ///   answer, as in the notebooks. Whitespace-only lines at the end of the file are dropped
    ///   (editor leftovers; the notebook's `zip` drops a single one anyway).
    /// - A question or answer that comes out empty (a blank line inside the file, or a line of
    ///   at most 3 characters such as `Q1`) is [`QaError::SeedEmptyField`] naming the line, not
    ///   an empty string paired as the notebook would; blank separator lines between pairs
    ///   therefore fail at the first one instead of silently shifting every later pair. An odd
    ///   number of lines is [`QaError::MissingAnswer`] (where `zip` would drop the last
    ///   question).
    /// - Ids `q01`, `q02`, ... by pair, as in the plain format.
    Seed,
}

impl QaFormat {
    /// All formats, in declaration order.
    pub const ALL: [QaFormat; 4] = [
        QaFormat::Toml,
        QaFormat::Beir,
        QaFormat::Plain,
        QaFormat::Seed,
    ];

    /// The lowercase name (same as serde and [`fmt::Display`]).
    pub fn as_str(self) -> &'static str {
        match self {
            QaFormat::Toml => "toml",
            QaFormat::Beir => "beir",
            QaFormat::Plain => "plain",
            QaFormat::Seed => "seed",
        }
    }

    /// The format [`load_questions`] uses for `path`: `toml` for `.toml`, `beir` for `.tsv`
    /// (ASCII case-insensitive), `plain` otherwise; never `seed`.
    pub fn from_extension(path: &Path) -> QaFormat {
        if has_extension(path, "tsv") {
            QaFormat::Beir
        } else if has_extension(path, "toml") {
            QaFormat::Toml
        } else {
            QaFormat::Plain
        }
    }
}

impl fmt::Display for QaFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown [`QaFormat`] name; the message lists the accepted names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown QA format {0:?} (expected one of toml, beir, plain, seed)")]
pub struct UnknownQaFormat(pub String);

impl FromStr for QaFormat {
    type Err = UnknownQaFormat;

    /// Parses a format name case-insensitively, ignoring surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        QaFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == wanted)
            .ok_or_else(|| UnknownQaFormat(s.to_string()))
    }
}

/// Load a question set: TOML for `.toml` files, BEIR qrels for `.tsv` files (both extensions
/// case-insensitive; see [`load_beir_questions`]), the plain-text alternating-lines format for
/// anything else. Same as [`load_questions_as`]`(path, None)`. See the module docs for the
/// schemas.
///
/// Errors: [`QaError::Io`], [`QaError::Toml`], [`QaError::EmptyField`], [`QaError::DuplicateId`],
/// [`QaError::MissingAnswer`], [`QaError::Empty`], and for `.tsv` [`QaError::Beir`] and
/// [`QaError::BeirQueries`].
pub fn load_questions(path: &Path) -> Result<Vec<Question>, QaError> {
    load_questions_as(path, None)
}

/// Load a question set in `format`, or, for `None`, in the format its extension selects
/// ([`QaFormat::from_extension`], as [`load_questions`] does). A forced format ignores the
/// extension (e.g. `Some(QaFormat::Seed)` for a notebook's `qa.txt`, `Some(QaFormat::Toml)` for
/// a `.txt` holding TOML).
///
/// Errors: as [`load_questions`], plus [`QaError::SeedEmptyField`] for the seed format.
pub fn load_questions_as(path: &Path, format: Option<QaFormat>) -> Result<Vec<Question>, QaError> {
    let format = format.unwrap_or_else(|| QaFormat::from_extension(path));
    let parse: fn(&Path, &str) -> Result<Vec<Question>, QaError> = match format {
        QaFormat::Beir => return load_beir_questions(path),
        QaFormat::Toml => parse_toml,
        QaFormat::Plain => parse_plain,
        QaFormat::Seed => parse_seed,
    };
    let text = std::fs::read_to_string(path).map_err(|source| QaError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let questions = parse(path, &text)?;
    if questions.is_empty() {
        return Err(QaError::Empty {
            path: path.to_path_buf(),
        });
    }
    tracing::debug!(file = %path.display(), questions = questions.len(), %format, "loaded questions");
    Ok(questions)
}

/// Whether `path` ends in `.ext` (ASCII case-insensitive).
fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The BEIR queries file for a qrels file: `queries.jsonl` in the dataset directory, i.e. the
/// parent of the qrels file's directory (`DATASET/qrels/test.tsv` → `DATASET/queries.jsonl`).
/// Falls back to `<qrels dir>/../queries.jsonl` when the directory has no named parent (e.g. a
/// relative `qrels/test.tsv` gives `queries.jsonl`, `test.tsv` gives `../queries.jsonl`).
pub fn beir_queries_path(qrels: &Path) -> PathBuf {
    let dir = qrels.parent().unwrap_or(Path::new(""));
    match (dir.file_name(), dir.parent()) {
        (Some(_), Some(parent)) => parent.join("queries.jsonl"),
        _ => dir.join("..").join("queries.jsonl"),
    }
}

/// The header BEIR qrels files start with (fields separated by tabs).
const QRELS_HEADER: [&str; 3] = ["query-id", "corpus-id", "score"];

/// Load a BEIR split: the qrels file `path` (`DATASET/qrels/<split>.tsv`) and the queries file
/// [`beir_queries_path`]`(path)` (`DATASET/queries.jsonl`).
///
/// Qrels format (as BEIR's `GenericDataLoader._load_qrels` reads it): a header line
/// `query-id<TAB>corpus-id<TAB>score`, then one `query-id<TAB>corpus-id<TAB>grade` line per
/// judgement with an integer grade (0 = judged not relevant; negative grades are kept and count
/// as not relevant). Fields are trimmed; blank lines are skipped; a repeated (query, document)
/// pair keeps its last grade (a Python dict does). Queries file: one JSON object per non-blank
/// line with `_id` (string or integer) and `text` (string), other keys ignored; ids unique.
///
/// The questions are the queries with at least one qrels line (BEIR keeps exactly these, even
/// when all their grades are 0), in order of first appearance in the qrels file: `id` = the query
/// `_id`, `question` = its `text` (as written, not normalised), `expected_answer` = `""`,
/// `qrels` = its (document `_id` → grade) lines, all other fields `None`. Queries not in the
/// qrels are ignored. Document ids are not checked against a corpus (BEIR does not either: a
/// judged document missing from the corpus simply can never be retrieved).
///
/// Errors: [`QaError::Io`] (qrels unreadable or not UTF-8), [`QaError::BeirQueries`] (queries
/// file unreadable), [`QaError::Beir`] naming file:line for: a missing or wrong header, a line
/// without exactly 3 tab-separated fields, an empty query or corpus id, a non-integer grade, no
/// qrels lines after the header, invalid JSON / `_id` / `text` or a duplicate `_id` in
/// `queries.jsonl`, a qrels query id absent from `queries.jsonl` (named at its first qrels line),
/// and an empty query text.
pub fn load_beir_questions(path: &Path) -> Result<Vec<Question>, QaError> {
    let text = std::fs::read_to_string(path).map_err(|source| QaError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let qrels = parse_qrels(path, &text)?;
    let queries_path = beir_queries_path(path);
    let queries_text =
        std::fs::read_to_string(&queries_path).map_err(|source| QaError::BeirQueries {
            qrels: path.to_path_buf(),
            queries: queries_path.clone(),
            source,
        })?;
    let queries = parse_queries(&queries_path, &queries_text)?;
    let mut questions = Vec::with_capacity(qrels.len());
    for q in qrels {
        let Some((query_line, query_text)) = queries.get(&q.id) else {
            return Err(QaError::Beir {
                path: path.to_path_buf(),
                line: q.first_line,
                message: format!("query `{}` is not in {}", q.id, queries_path.display()),
            });
        };
        if query_text.trim().is_empty() {
            return Err(QaError::Beir {
                path: queries_path.clone(),
                line: *query_line,
                message: format!("query `{}` has an empty `text`", q.id),
            });
        }
        questions.push(Question {
            question: query_text.clone(),
            expected_answer: String::new(),
            short_answer: None,
            page: None,
            evidence: None,
            difficulty: None,
            source: None,
            qrels: q.grades,
            id: q.id,
        });
    }
    tracing::debug!(
        file = %path.display(),
        questions = questions.len(),
        "loaded BEIR qrels"
    );
    Ok(questions)
}

/// One query's judgements as read from a qrels file.
struct QueryQrels {
    id: String,
    /// 1-based line of the query's first qrels line.
    first_line: usize,
    grades: BTreeMap<String, i64>,
}

/// Parse a BEIR qrels TSV (see [`load_beir_questions`]); queries in order of first appearance.
fn parse_qrels(path: &Path, text: &str) -> Result<Vec<QueryQrels>, QaError> {
    let err = |line: usize, message: String| QaError::Beir {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let header_ok = |l: &str| {
        let fields: Vec<&str> = l
            .trim_start_matches('\u{feff}')
            .split('\t')
            .map(str::trim)
            .collect();
        fields == QRELS_HEADER
    };
    match lines.next() {
        Some((_, l)) if header_ok(l) => {}
        Some((n, l)) => {
            return Err(err(
                n,
                format!(
                    "expected the BEIR qrels header `query-id<TAB>corpus-id<TAB>score`, found `{}`",
                    l.trim_end()
                ),
            ))
        }
        None => {
            return Err(err(
                1,
                "empty qrels file: expected the header `query-id<TAB>corpus-id<TAB>score`".into(),
            ))
        }
    }
    let mut order: Vec<QueryQrels> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    let mut last_line = 1;
    for (n, line) in lines {
        last_line = n;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [qid, doc, grade] = fields[..] else {
            return Err(err(
                n,
                format!(
                    "expected 3 tab-separated fields (query-id, corpus-id, score), found {}",
                    fields.len()
                ),
            ));
        };
        if qid.is_empty() || doc.is_empty() {
            return Err(err(n, "empty query-id or corpus-id".into()));
        }
        let grade: i64 = grade
            .parse()
            .map_err(|_| err(n, format!("score `{grade}` is not an integer")))?;
        let i = *index_of.entry(qid.to_string()).or_insert_with(|| {
            order.push(QueryQrels {
                id: qid.to_string(),
                first_line: n,
                grades: BTreeMap::new(),
            });
            order.len() - 1
        });
        order[i].grades.insert(doc.to_string(), grade);
    }
    if order.is_empty() {
        return Err(err(last_line, "no qrels lines after the header".into()));
    }
    Ok(order)
}

/// Parse a BEIR `queries.jsonl`: query `_id` → (1-based line, text).
fn parse_queries(path: &Path, text: &str) -> Result<HashMap<String, (usize, String)>, QaError> {
    let err = |line: usize, message: String| QaError::Beir {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut out: HashMap<String, (usize, String)> = HashMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            err(
                n,
                format!(
                    "invalid JSON at column {}: {}",
                    e.column(),
                    crate::corpus::json_message(&e)
                ),
            )
        })?;
        let q = crate::corpus::beir_fields(&value, "query").map_err(|m| err(n, m))?;
        if let Some((first, _)) = out.get(&q.id) {
            return Err(err(
                n,
                format!(
                    "duplicate query `_id` `{}` (first used on line {first})",
                    q.id
                ),
            ));
        }
        out.insert(q.id, (n, q.text));
    }
    Ok(out)
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
    page: Option<toml::Spanned<u32>>,
    evidence: Option<toml::Spanned<String>>,
    difficulty: Option<String>,
    source: Option<toml::Spanned<String>>,
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
        if let Some(evidence) = &record.evidence {
            // An empty quote would be contained in every chunk.
            require_non_empty(path, text, "evidence", evidence)?;
        }
        if let Some(source) = &record.source {
            require_non_empty(path, text, "source", source)?;
        }
        if let Some(page) = record.page.as_ref().filter(|p| *p.get_ref() == 0) {
            let (line, column) = line_column(text, page.span().start);
            return Err(QaError::Toml {
                path: path.to_path_buf(),
                line,
                column,
                message: "`page` is 1-based: the first page of the PDF is page = 1".into(),
            });
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
            page: record.page.map(toml::Spanned::into_inner),
            // NFKC, as the corpus text is (a quote pasted with a "ﬁ" ligature still matches).
            evidence: record
                .evidence
                .map(|e| crate::corpus::normalize(e.get_ref())),
            difficulty: record.difficulty,
            source: record.source.map(toml::Spanned::into_inner),
            qrels: Default::default(),
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
            source: None,
            qrels: Default::default(),
        });
    }
    Ok(questions)
}

/// Parse the seed notebooks' format ([`QaFormat::Seed`]): `line.rstrip()[3:]`, every line
/// counting, questions and answers alternating.
fn parse_seed(path: &Path, text: &str) -> Result<Vec<Question>, QaError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = python_lines(text)
        .into_iter()
        .map(|l| l.trim_end_matches(py_isspace))
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let field = |i: usize, name: &'static str| {
        let value = drop_chars(lines[i], 3);
        if value.is_empty() {
            Err(QaError::SeedEmptyField {
                path: path.to_path_buf(),
                line: i + 1,
                field: name,
            })
        } else {
            Ok(value.to_string())
        }
    };
    let mut questions = Vec::with_capacity(lines.len() / 2);
    for (n, q) in (0..lines.len()).step_by(2).enumerate() {
        let question = field(q, "question")?;
        if q + 1 == lines.len() {
            return Err(QaError::MissingAnswer {
                path: path.to_path_buf(),
                line: q + 1,
            });
        }
        questions.push(Question {
            id: plain_id(n),
            question,
            expected_answer: field(q + 1, "expected_answer")?,
            short_answer: None,
            page: None,
            evidence: None,
            difficulty: None,
            source: None,
            qrels: Default::default(),
        });
    }
    Ok(questions)
}

/// `text` split into lines as Python's text-mode `readlines()` does with universal newlines:
/// `\n`, `\r\n` and a lone `\r` end a line (and are not part of it); a final terminator does
/// not start another line, so `""` has no lines and `"a\n"` one.
fn python_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(end) = rest.find(['\r', '\n']) else {
            lines.push(rest);
            break;
        };
        lines.push(&rest[..end]);
        let terminator = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + terminator..];
    }
    lines
}

/// Python's `str.isspace` for one character (what `str.rstrip()` removes): Unicode White_Space
/// (Rust's [`char::is_whitespace`]) plus the information separators `\x1c`-`\x1f`.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s[n:]` in Python: `s` without its first `n` characters (code points), `""` if it has at
/// most `n`.
fn drop_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or("", |(i, _)| &s[i..])
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
    fn page_zero_and_blank_evidence_are_errors_with_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "p.toml", &GOOD.replace("page = 3", "page = 0"));
        let msg = load_questions(&path).expect_err("page 0").to_string();
        assert!(
            msg.contains("p.toml:7:8") && msg.contains("1-based"),
            "{msg}"
        );
        let text = GOOD.replace(
            "evidence = \"Bacula is a set of computer programs\"",
            "evidence = \"  \"",
        );
        let path = write(dir.path(), "e.toml", &text);
        let msg = load_questions(&path)
            .expect_err("blank evidence")
            .to_string();
        assert!(
            msg.contains("e.toml:8:12") && msg.contains("`evidence`"),
            "{msg}"
        );
    }

    #[test]
    fn source_names_the_document() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("page = 3", "page = 3\nsource = \"main.pdf\"");
        let qs = load_questions(&write(dir.path(), "s.toml", &text)).expect("load");
        assert_eq!(qs[0].source.as_deref(), Some("main.pdf"));
        assert_eq!(qs[1].source, None);
        let text = GOOD.replace("page = 3", "page = 3\nsource = \"\"");
        let msg = load_questions(&write(dir.path(), "b.toml", &text))
            .expect_err("blank source")
            .to_string();
        assert!(
            msg.contains("b.toml:8:10") && msg.contains("`source`"),
            "{msg}"
        );
    }

    #[test]
    fn evidence_is_nfkc_normalised_like_the_corpus() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("set of computer programs", "\u{FB01}le set\u{2026}");
        let path = write(dir.path(), "n.toml", &text);
        let qs = load_questions(&path).expect("load");
        assert_eq!(qs[0].evidence.as_deref(), Some("Bacula is a file set..."));
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

    /// Load `content` written to `dir/name` in the seed format.
    fn seed(dir: &Path, name: &str, content: &str) -> Result<Vec<Question>, QaError> {
        load_questions_as(&write(dir, name, content), Some(QaFormat::Seed))
    }

    /// (question, expected_answer) pairs.
    fn pairs(qs: &[Question]) -> Vec<(&str, &str)> {
        qs.iter()
            .map(|q| (q.question.as_str(), q.expected_answer.as_str()))
            .collect()
    }

    #[test]
    fn seed_drops_the_three_character_prefix_and_numbers_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "Q1 What is X?\nA1 X is a thing.\nQ2: What is Y?\nA2\tY.\n";
        let qs = seed(dir.path(), "qa.txt", text).expect("load");
        assert_eq!(
            pairs(&qs),
            [
                ("What is X?", "X is a thing."),
                (" What is Y?", "Y."), // only 3 characters go; the rest is kept as is
            ]
        );
        let ids: Vec<&str> = qs.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["q01", "q02"]);
        // the plain format (what the extension picks) keeps the prefixes
        let plain = load_questions(&dir.path().join("qa.txt")).expect("plain");
        assert_eq!(plain[0].question, "Q1 What is X?");
        assert_eq!(plain[1].expected_answer, "A2\tY.");
    }

    #[test]
    fn seed_crlf_lone_cr_and_python_whitespace_are_stripped_at_the_end_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text =
            "Q1 Crlf?  \r\nA1 Yes.\t\r\nQ2 Lone CR?\rA2  kept lead\u{1f}\u{2028}\u{a0}\u{3000}\r\n\
                    Q3 zero-width stays\u{200b}\nA3 last, no newline";
        let qs = seed(dir.path(), "crlf.txt", text).expect("load");
        assert_eq!(
            pairs(&qs),
            [
                ("Crlf?", "Yes."),
                ("Lone CR?", " kept lead"),
                ("zero-width stays\u{200b}", "last, no newline"),
            ]
        );
        assert!(qs.iter().all(|q| !q.question.contains('\r')));
    }

    #[test]
    fn seed_two_digit_prefix_keeps_a_leading_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text: String = (1..=10)
            .map(|i| format!("Q{i} Question {i}?\nA{i} Answer {i}.\n"))
            .collect();
        let qs = seed(dir.path(), "ten.txt", &text).expect("load");
        assert_eq!(qs.len(), 10);
        assert_eq!(qs[8].question, "Question 9?");
        assert_eq!(qs[9].id, "q10");
        assert_eq!(
            qs[9].question, " Question 10?",
            "Python's [3:] drops only `Q10`"
        );
        assert_eq!(qs[9].expected_answer, " Answer 10.");
    }

    #[test]
    fn seed_counts_unicode_code_points_not_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // É (2 bytes), 问 (3 bytes), 🙂 (4 bytes) are one character each; E + U+0301 are two.
        let text = "É1 Qu'est-ce ?\n问1 什么\n🙂2 smile\nE\u{301}2 decomposed\n";
        let qs = seed(dir.path(), "u.txt", text).expect("load");
        assert_eq!(
            pairs(&qs),
            [("Qu'est-ce ?", "什么"), ("smile", " decomposed")]
        );
        assert_eq!(drop_chars("ab", 3), "");
        assert_eq!(drop_chars("abc", 3), "");
        assert_eq!(drop_chars("ab🙂d", 3), "d");
    }

    #[test]
    fn seed_bom_and_trailing_blank_lines_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qs = seed(dir.path(), "bom.txt", "\u{feff}Q1 a?\nA1 b.\n\n \t\r\n\n").expect("load");
        assert_eq!(pairs(&qs), [("a?", "b.")]);
        for empty in ["", "\n", "  \n\n"] {
            let err = seed(dir.path(), "empty.txt", empty).expect_err("no questions");
            assert!(matches!(err, QaError::Empty { .. }), "{empty:?}: {err}");
        }
    }

    #[test]
    fn seed_odd_number_of_lines_names_the_last_question() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = seed(dir.path(), "odd.txt", "Q1 a?\nA1 b.\nQ2 c?\n\n").expect_err("odd");
        assert!(
            matches!(err, QaError::MissingAnswer { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("odd.txt:3: "), "{err}");
    }

    #[test]
    fn seed_empty_fields_and_inner_blank_lines_are_errors_with_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            // (text, line, field)
            ("Q1\nA1 b.\n", 1, "question"),
            ("Q1 a?\nA1   \n", 2, "expected_answer"),
            ("Q1 a?\nA1 b.\nQ2 c?\nA2\r\n", 4, "expected_answer"),
            // a blank separator line counts: the notebook would pair ("", "c?"), ("d.", ...)
            ("Q1 a?\nA1 b.\n\nQ2 c?\nA2 d.\n", 3, "question"),
            ("Q1 a?\n\nQ2 c?\nA2 d.\n", 2, "expected_answer"),
        ];
        for (text, line, field) in cases {
            let err = seed(dir.path(), "e.txt", text).expect_err(text);
            assert!(
                matches!(&err, QaError::SeedEmptyField { line: l, field: f, .. } if *l == line && *f == field),
                "{text:?}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("e.txt:{line}: `{field}` is empty"))
                    && msg.contains("rstrip()[3:]"),
                "{msg}"
            );
        }
    }

    #[test]
    fn seed_matches_the_python_reference() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qa");
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("seed_reference.json")).expect("reference"),
        )
        .expect("json");
        let want: Vec<(&str, &str)> = reference["pairs"]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|p| (p[0].as_str().expect("q"), p[1].as_str().expect("a")))
            .collect();
        let qs =
            load_questions_as(&dir.join("seed_sample.txt"), Some(QaFormat::Seed)).expect("sample");
        assert_eq!(pairs(&qs), want);
        // the sample exercises what it claims to
        let lines = reference["lines"].as_array().expect("lines");
        assert_eq!(lines.len(), 2 * want.len() + 1, "ends with a blank line");
        assert_eq!(lines.last().and_then(|l| l.as_str()), Some(""));
        assert!(want.iter().any(|(q, _)| q.starts_with(' ')));
        let sample = std::fs::read(dir.join("seed_sample.txt")).expect("sample bytes");
        assert!(sample.windows(2).any(|w| w == b"\r\n"));
        assert!(sample.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
    }

    #[test]
    fn forced_format_overrides_the_extension() {
        let dir = tempfile::tempdir().expect("tempdir");
        // plain text in a .toml file
        let path = write(dir.path(), "qa.toml", "Q1 a?\nA1 b.\n");
        assert!(matches!(load_questions(&path), Err(QaError::Toml { .. })));
        assert!(matches!(
            load_questions_as(&path, None),
            Err(QaError::Toml { .. })
        ));
        let plain = load_questions_as(&path, Some(QaFormat::Plain)).expect("plain");
        assert_eq!(pairs(&plain), [("Q1 a?", "A1 b.")]);
        let seed = load_questions_as(&path, Some(QaFormat::Seed)).expect("seed");
        assert_eq!(pairs(&seed), [("a?", "b.")]);
        // TOML in a .txt file
        let path = write(dir.path(), "qa.txt", GOOD);
        let qs = load_questions_as(&path, Some(QaFormat::Toml)).expect("toml");
        assert_eq!(qs[0].id, "b01");
        assert_eq!(
            load_questions(&path).expect("plain")[0].question,
            "[[question]]"
        );
        // BEIR qrels under another extension
        let qrels_txt = dir.path().join("mini/qrels/test.txt");
        let tsv = beir(
            &dir.path().join("mini"),
            QUERIES,
            "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
        );
        std::fs::rename(&tsv, &qrels_txt).expect("rename");
        let qs = load_questions_as(&qrels_txt, Some(QaFormat::Beir)).expect("beir");
        assert_eq!(qs[0].question, "What is a Pool?");
        assert_eq!(QaFormat::from_extension(&tsv), QaFormat::Beir);
        assert_eq!(
            QaFormat::from_extension(Path::new("a.TOML")),
            QaFormat::Toml
        );
        assert_eq!(QaFormat::from_extension(&qrels_txt), QaFormat::Plain);
        assert_eq!(QaFormat::from_extension(Path::new("qa")), QaFormat::Plain);
    }

    #[test]
    fn qa_format_names_round_trip() {
        for f in QaFormat::ALL {
            assert_eq!(f.to_string().parse::<QaFormat>(), Ok(f));
            assert_eq!(serde_json::to_string(&f).expect("ser"), format!("\"{f}\""));
            let de: QaFormat = serde_json::from_str(&format!("\"{f}\"")).expect("de");
            assert_eq!(de, f);
        }
        assert_eq!(" Seed ".parse::<QaFormat>(), Ok(QaFormat::Seed));
        let names: Vec<String> = QaFormat::ALL.iter().map(|f| f.to_string()).collect();
        assert_eq!(names, ["toml", "beir", "plain", "seed"]);
        let err = "notebook".parse::<QaFormat>().expect_err("unknown");
        assert_eq!(err, UnknownQaFormat("notebook".into()));
        let msg = err.to_string();
        assert!(
            msg.contains("\"notebook\"") && msg.contains("toml, beir, plain, seed"),
            "{msg}"
        );
        #[derive(serde::Deserialize)]
        struct Exp {
            qa_format: QaFormat,
        }
        let exp: Exp = toml::from_str("qa_format = \"seed\"").expect("toml");
        assert_eq!(exp.qa_format, QaFormat::Seed);
        assert!(toml::from_str::<Exp>("qa_format = \"Seed\"").is_err());
    }

    /// A BEIR dataset directory with the given queries.jsonl and qrels/test.tsv; returns the
    /// qrels path.
    fn beir(dir: &Path, queries: &str, qrels: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("qrels")).expect("mkdir");
        write(dir, "queries.jsonl", queries);
        write(&dir.join("qrels"), "test.tsv", qrels)
    }

    const QUERIES: &str = "{\"_id\": \"q1\", \"text\": \"What is a Pool?\", \"metadata\": {}}\n\
        {\"_id\": \"q2\", \"text\": \"What is the Catalog?\"}\n\
        {\"_id\": 3, \"text\": \"Unjudged query\"}\n";

    #[test]
    fn loads_beir_qrels_with_queries_in_qrels_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qrels = beir(
            dir.path(),
            QUERIES,
            "query-id\tcorpus-id\tscore\r\nq2\td9\t0\r\nq1\td1\t2\nq1\td2\t1\n\nq1\td2\t 1 \nq2\td8\t0\n",
        );
        let qs = load_questions(&qrels).expect("load");
        let ids: Vec<&str> = qs.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(
            ids,
            ["q2", "q1"],
            "first appearance order; unjudged query 3 left out"
        );
        assert_eq!(qs[1].question, "What is a Pool?");
        assert_eq!(qs[1].expected_answer, "");
        assert_eq!(
            qs[1].qrels,
            BTreeMap::from([("d1".to_string(), 2), ("d2".to_string(), 1)])
        );
        // a query whose only judgements are 0 is still a question (BEIR keeps it)
        assert_eq!(
            qs[0].qrels,
            BTreeMap::from([("d8".to_string(), 0), ("d9".to_string(), 0)])
        );
        assert!(qs[0].page.is_none() && qs[0].evidence.is_none() && qs[0].short_answer.is_none());
        // numeric query ids are matched by their decimal text
        let qrels = beir(
            dir.path(),
            QUERIES,
            "query-id\tcorpus-id\tscore\n3\td1\t1\n",
        );
        assert_eq!(
            load_questions(&qrels).expect("load")[0].question,
            "Unjudged query"
        );
    }

    #[test]
    fn beir_queries_path_is_next_to_the_qrels_directory() {
        assert_eq!(
            beir_queries_path(Path::new("/d/mini/qrels/test.tsv")),
            Path::new("/d/mini/queries.jsonl")
        );
        assert_eq!(
            beir_queries_path(Path::new("qrels/test.tsv")),
            Path::new("queries.jsonl")
        );
        assert_eq!(
            beir_queries_path(Path::new("test.tsv")),
            Path::new("../queries.jsonl")
        );
    }

    #[test]
    fn beir_qrels_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = "query-id\tcorpus-id\tscore\n";
        let cases: Vec<(String, usize, &str)> = vec![
            ("q1\td1\t1\n".into(), 1, "expected the BEIR qrels header"),
            (
                "query-id corpus-id score\nq1\td1\t1\n".into(),
                1,
                "expected the BEIR qrels header",
            ),
            ("".into(), 1, "empty qrels file"),
            (
                format!("{head}q1\td1\t1\nq1\td2\n"),
                3,
                "expected 3 tab-separated fields",
            ),
            (format!("{head}q1\td1\t1\tx\n"), 2, "found 4"),
            (
                format!("{head}q1\td1\t1.5\n"),
                2,
                "score `1.5` is not an integer",
            ),
            (
                format!("{head}q1\td1\thigh\n"),
                2,
                "score `high` is not an integer",
            ),
            (format!("{head}\td1\t1\n"), 2, "empty query-id or corpus-id"),
            (format!("{head}\n"), 2, "no qrels lines after the header"),
            (head.to_string(), 1, "no qrels lines after the header"),
            (
                format!("{head}q1\td1\t1\nq7\td1\t1\nq7\td2\t1\n"),
                3,
                "query `q7` is not in",
            ),
        ];
        for (qrels, line, want) in cases {
            let path = beir(dir.path(), QUERIES, &qrels);
            let err = load_questions(&path).expect_err(want);
            let msg = err.to_string();
            assert!(
                matches!(&err, QaError::Beir { line: l, .. } if *l == line),
                "{qrels:?}: {msg}"
            );
            assert!(
                msg.contains(&format!("test.tsv:{line}: ")) && msg.contains(want),
                "{msg}"
            );
        }
    }

    #[test]
    fn beir_queries_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\n";
        let good = "{\"_id\": \"q1\", \"text\": \"Q?\"}\n";
        let cases = [
            ("{\"_id\": \"q2\", \"text\": \n", "invalid JSON"),
            ("{\"_id\": \"q2\"}\n", "query `q2` has no `text`"),
            ("{\"text\": \"Q?\"}\n", "query has no `_id`"),
            (
                "{\"_id\": \"q1\", \"text\": \"again\"}\n",
                "duplicate query `_id` `q1` (first used on line 1)",
            ),
        ];
        for (line, want) in cases {
            let path = beir(dir.path(), &format!("{good}{line}"), qrels);
            let msg = load_questions(&path).expect_err(want).to_string();
            assert!(
                msg.contains("queries.jsonl:2: ") && msg.contains(want),
                "{msg}"
            );
        }
        let path = beir(dir.path(), "{\"_id\": \"q1\", \"text\": \"  \"}\n", qrels);
        let msg = load_questions(&path).expect_err("empty text").to_string();
        assert!(
            msg.contains("queries.jsonl:1: query `q1` has an empty `text`"),
            "{msg}"
        );

        std::fs::remove_file(dir.path().join("queries.jsonl")).expect("rm");
        let err = load_questions(&path).expect_err("no queries");
        assert!(matches!(err, QaError::BeirQueries { .. }), "{err}");
        assert!(err.to_string().contains("queries.jsonl"), "{err}");
    }

    #[test]
    fn beir_fixture_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/beir/mini/qrels/test.tsv");
        let qs = load_questions(&path).expect("fixture");
        let ids: Vec<&str> = qs.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["q3", "q1", "q2", "q4", "q5", "q6", "q7", "q9", "q8"]);
        assert!(qs
            .iter()
            .all(|q| q.expected_answer.is_empty() && !q.qrels.is_empty()));
        assert_eq!(qs[0].qrels.len(), 5);
        assert_eq!(qs[7].qrels.values().copied().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "ab\nçd";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 5), (2, 2));
    }
}
