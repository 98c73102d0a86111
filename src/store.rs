//! Result database (SQLite via rusqlite): runs, cells, answers and resource samples.
//!
//! One database per experiment, `store/<experiment name>.sqlite`, in WAL mode (rollback-journal
//! `DELETE` mode on a network filesystem, where WAL's shared memory does not work: see
//! [`journal_mode_for`]). Each answer is
//! committed in its own transaction together with the resource samples taken while it was being
//! produced, so a sweep killed at any instant loses at most the answer in flight and never leaves
//! half a row. `answers` has a UNIQUE key (cell_id, repeat, question_id): a resumed sweep skips
//! the keys whose row is `ok` and replaces a `failed` row when it retries it, so a grid ends with
//! exactly one row per cell × question × repeat.
//!
//! The database describes itself: `cells.spec` holds each cell as it ran ([`crate::cell::Cell`]
//! as JSON: model, GGUF sha256, settings, corpus and embedding-model fingerprints) and
//! `cells.index_dir` the index its chunk ids refer to, so reading results
//! ([`Store::stored_cells`], [`Store::answers`]) never needs the experiment's inputs. Databases
//! written before `spec` existed are upgraded in place: their cells are read back from the axis
//! columns (with unknown fingerprints).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

pub use crate::cell::{AnswerStatus, CellStatus};
use crate::cell::{Cell, CellAxes, DecodeMode, ModelSpec, Retrieval, RETRIEVAL_ONLY};
use crate::experiment::Experiment;
use crate::sample::{HostFacts, Sample, Usage};

/// Errors from the result database. Every variant names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("result database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database file is damaged (SQLite's `quick_check` found a problem, or SQLite reports
    /// corruption); nothing is written to it.
    #[error(
        "result database {path} is damaged ({detail}): restore it from a backup, recover what \
         SQLite can with `sqlite3 {path} .recover | sqlite3 recovered.sqlite`, or move it aside \
         to start afresh"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite found.
        detail: String,
    },
    /// The database directory could not be created.
    #[error("cannot create the results directory {path} (--store): {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Whether SQLite failed because the database or its directory cannot be written.
fn is_read_only(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, ReadOnly};
    matches!(e.sqlite_error_code(), Some(ReadOnly | CannotOpen))
}

/// A SQLite error on the database `path`: [`StoreError::Damaged`] (with advice) when SQLite says
/// the file is corrupt or not a database, else [`StoreError::Sqlite`].
fn damaged(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Damaged {
            path: path.to_path_buf(),
            detail: source.to_string(),
        },
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    run_id            INTEGER PRIMARY KEY,
    experiment        TEXT NOT NULL,
    experiment_file   TEXT NOT NULL,
    experiment_sha256 TEXT NOT NULL,
    experiment_text   TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    ended_at          TEXT,
    status            TEXT NOT NULL,
    host_cpu          TEXT,
    host_physical_cores INTEGER,
    host_logical_cores  INTEGER,
    host_ram_bytes    INTEGER,
    host_os           TEXT,
    orchestrate_version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    cell_id          TEXT PRIMARY KEY,
    model            TEXT NOT NULL,
    gguf             TEXT,
    chunk_size       INTEGER NOT NULL,
    chunk_overlap    INTEGER NOT NULL,
    retriever        TEXT NOT NULL,
    ensemble_weight  REAL,
    top_k            INTEGER NOT NULL,
    fetch_k          INTEGER,
    lambda_mult      REAL,
    bm25             TEXT,
    dense_index      TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',
    run_id           INTEGER,
    index_dir        TEXT,
    index_build_s    REAL,
    index_cache_hit  INTEGER,
    n_chunks         INTEGER,
    model_load_s     REAL,
    error            TEXT,
    started_at       TEXT,
    ended_at         TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    answer_id        INTEGER PRIMARY KEY,
    cell_id          TEXT NOT NULL REFERENCES cells(cell_id),
    repeat           INTEGER NOT NULL,
    question_id      TEXT NOT NULL,
    run_id           INTEGER NOT NULL,
    question         TEXT NOT NULL,
    expected_answer  TEXT NOT NULL,
    answer           TEXT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    cosine           REAL,
    response_time_s  REAL,
    ttft_s           REAL,
    retrieval_s      REAL,
    prompt_tokens    INTEGER,
    completion_tokens INTEGER,
    contexts_used    INTEGER,
    chunk_ids        TEXT NOT NULL,
    pages            TEXT NOT NULL,
    scores           TEXT NOT NULL,
    rss_mean_bytes   INTEGER,
    rss_peak_bytes   INTEGER,
    cpu_mean_percent REAL,
    n_samples        INTEGER,
    finished_at      TEXT NOT NULL,
    metrics          TEXT NOT NULL DEFAULT '{}',
    decode_mode      TEXT,
    generation_key   TEXT,
    shared_from      TEXT,
    attempt          TEXT,
    reference_sha    TEXT,
    UNIQUE (cell_id, repeat, question_id)
);
CREATE TABLE IF NOT EXISTS samples (
    run_id      INTEGER NOT NULL,
    cell_id     TEXT NOT NULL,
    question_id TEXT,
    repeat      INTEGER,
    t_s         REAL NOT NULL,
    rss_bytes   INTEGER NOT NULL,
    cpu_percent REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_cell ON samples (cell_id);
CREATE TABLE IF NOT EXISTS eliminations (
    run_id      INTEGER NOT NULL,
    cell_id     TEXT NOT NULL,
    leader_id   TEXT NOT NULL,
    metric      TEXT NOT NULL,
    look        INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    mean_diff   REAL NOT NULL,
    ci_low      REAL NOT NULL,
    ci_high     REAL NOT NULL,
    p_value     REAL NOT NULL,
    p_adjusted  REAL NOT NULL,
    level       REAL NOT NULL,
    at          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judge_calls (
    key               TEXT PRIMARY KEY,
    step              TEXT NOT NULL,
    judge             TEXT NOT NULL,
    prompt_version    INTEGER NOT NULL,
    output            TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    seconds           REAL NOT NULL,
    at                TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judge_agreement (
    judge       TEXT NOT NULL,
    metric      TEXT NOT NULL,
    labels      TEXT NOT NULL,
    n           INTEGER NOT NULL,
    both_yes    INTEGER NOT NULL,
    both_no     INTEGER NOT NULL,
    only_judge  INTEGER NOT NULL,
    only_human  INTEGER NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (judge, metric, labels)
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt       TEXT PRIMARY KEY,
    run_id        INTEGER NOT NULL,
    cell_id       TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    array_index   INTEGER,
    restart_count INTEGER NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    cpus          INTEGER,
    started_at    TEXT NOT NULL,
    answers       INTEGER NOT NULL,
    exit_status   TEXT,
    exit_error    TEXT
);
CREATE TABLE IF NOT EXISTS slurm_jobs (
    job_id       TEXT PRIMARY KEY,
    run_id       INTEGER NOT NULL,
    wave         INTEGER NOT NULL,
    profile      TEXT NOT NULL,
    tasks        INTEGER NOT NULL,
    run_dir      TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    finished_at  TEXT
);
CREATE TABLE IF NOT EXISTS judgments (
    cell_id        TEXT NOT NULL,
    repeat         INTEGER NOT NULL,
    question_id    TEXT NOT NULL,
    metric         TEXT NOT NULL,
    status         TEXT NOT NULL,
    value          REAL,
    detail         TEXT,
    judge          TEXT NOT NULL,
    prompt_version INTEGER NOT NULL,
    at             TEXT NOT NULL,
    PRIMARY KEY (cell_id, repeat, question_id, metric)
);
"#;

/// Which existing row a new answer may replace.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// A local sweep retrying: anything but an `ok` row by a failure.
    Retry,
    /// Merging attempt files: a `failed` row by an `ok` one or by a failure of a later run, and
    /// an answer to an edited question text by an answer to the current one.
    Merge,
}

impl Rule {
    fn condition(self) -> &'static str {
        match self {
            Rule::Retry => "answers.status != 'ok' OR excluded.status = 'ok'",
            Rule::Merge => {
                "(answers.status != 'ok' AND (excluded.status = 'ok' OR answers.run_id != excluded.run_id))
                 OR (excluded.status = 'ok' AND answers.question != excluded.question)"
            }
        }
    }
}

/// Columns added after the first schema: (table, column, declaration). [`Store::open`] adds the
/// missing ones to an older database, so results stored by an earlier version stay readable.
const MIGRATIONS: [(&str, &str, &str); 10] = [
    ("answers", "attempt", "TEXT"),
    ("answers", "reference_sha", "TEXT"),
    ("answers", "metrics", "TEXT NOT NULL DEFAULT '{}'"),
    ("answers", "decode_mode", "TEXT"),
    ("answers", "generation_key", "TEXT"),
    ("answers", "shared_from", "TEXT"),
    ("cells", "bm25", "TEXT"),
    ("cells", "dense_index", "TEXT"),
    ("cells", "spec", "TEXT"),
    ("cells", "threads", "INTEGER"),
];

/// Long-format view of the per-answer metrics (one row per answer × metric), for SQL users:
/// `SELECT metric, avg(value) FROM answer_metrics GROUP BY cell_id, metric`.
const VIEWS: &str = r#"
CREATE VIEW IF NOT EXISTS answer_metrics AS
    SELECT a.cell_id, a.repeat, a.question_id, a.status, m.key AS metric, m.value AS value
    FROM answers AS a, json_each(a.metrics) AS m;
"#;

/// One Slurm attempt as merged into the database (table `attempts`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The attempt file's name (unique per attempt).
    pub attempt: String,
    /// The run that merged it.
    pub run_id: i64,
    /// Where and how it ran (the file's header).
    pub info: crate::slurm::attempt::AttemptInfo,
    /// Answer records in its file.
    pub answers: usize,
    /// `done`, `stopped` or `failed` ([`crate::slurm::attempt::ExitStatus`]); `None` while
    /// running or when it died without an exit record.
    pub exit_status: Option<String>,
    /// Why it failed.
    pub exit_error: Option<String>,
}

/// One submitted Slurm job array (table `slurm_jobs`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmJobRecord {
    /// The array's job id.
    pub job_id: String,
    /// The run that submitted it.
    pub run_id: i64,
    /// 1 for the first submission, 2.. for the waves of leftover questions.
    pub wave: u32,
    /// The resource profile (sbatch resource options) its tasks share.
    pub profile: String,
    /// Array tasks (one per cell).
    pub tasks: u32,
    /// The wave's directory under the run directory (task specs, batch script, logs).
    pub run_dir: PathBuf,
    /// When it was submitted (RFC 3339 UTC).
    pub submitted_at: String,
    /// When the coordinator saw the last of its tasks end.
    pub finished_at: Option<String>,
}

/// One answer as the worker reports it (before the parent adds resource usage).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewAnswer {
    /// Question id from the QA set.
    pub question_id: String,
    /// 0-based repeat index.
    pub repeat: u32,
    /// Question text.
    pub question: String,
    /// Reference answer.
    pub expected_answer: String,
    /// The model's answer (empty in retrieval-only runs or on failure).
    pub answer: String,
    /// Whether it succeeded.
    pub status: AnswerStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Cosine similarity of answer and expected answer, in [-1, 1].
    pub cosine: Option<f64>,
    /// Seconds from prompt submission to the last token.
    pub response_time_s: Option<f64>,
    /// Seconds from prompt submission to the first token.
    pub ttft_s: Option<f64>,
    /// Seconds spent embedding the question and retrieving.
    pub retrieval_s: Option<f64>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<u32>,
    /// Generated tokens.
    pub completion_tokens: Option<u32>,
    /// How many retrieved chunks fitted in the context window.
    pub contexts_used: Option<u32>,
    /// Retrieved chunk ids, best first.
    pub chunk_ids: Vec<u32>,
    /// Pages of those chunks (1-based).
    pub pages: Vec<u32>,
    /// Retrieval scores of those chunks (retriever-specific scale).
    pub scores: Vec<f32>,
    /// Named per-answer metrics (see [`crate::score`]): retrieval metrics `hit@k`, `recall@k`,
    /// `mrr@k`, `ndcg@k` when the question has evidence or a page, answer metrics `em`, `f1`,
    /// `contains`, `rouge_l`, `meteor` when an answer was generated. Stored as a JSON object.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// How the answer was generated (`None` when nothing was generated: retrieval only, or a
    /// failure before generation).
    #[serde(default)]
    pub decode_mode: Option<DecodeMode>,
    /// Content address of the generation ([`crate::cell::generation_key`]); `None` without one.
    #[serde(default)]
    pub generation_key: Option<String>,
    /// The cell whose stored generation this answer reused (same key: same model, settings,
    /// seed and prompt), with that generation's text, token counts and timings; `None` when
    /// this answer was generated itself.
    #[serde(default)]
    pub shared_from: Option<String>,
    /// [`crate::qa::Question::reference_digest`] of the question as it was scored; `None` for
    /// rows that carry no question (a failure before the question was read).
    #[serde(default)]
    pub reference: Option<String>,
}

/// A stored generation another cell can reuse ([`Store::shared_generations`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SharedGeneration {
    /// Its [`crate::cell::generation_key`].
    pub key: String,
    /// The cell that generated it.
    pub cell_id: String,
    /// The generation (its `raw` is the answer text, its `stopped_by` unknown: `Eos`).
    pub generation: crate::generate::Generation,
    /// How it was decoded.
    pub decode_mode: DecodeMode,
}

/// One cached judge call (table `judge_calls`), keyed by the hash of everything that decides its
/// output (see `crate::judge::run::call_key`).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeCallRecord<'a> {
    /// Hex sha256 cache key.
    pub key: &'a str,
    /// The step's name (`ragas.nli`, ...).
    pub step: &'a str,
    /// The judge's identity (model sha256 and settings that change outputs).
    pub judge: &'a str,
    /// `crate::judge::steps::PROMPT_VERSION`.
    pub prompt_version: u32,
    /// The grammar-constrained JSON output.
    pub output: &'a str,
    /// Prompt tokens decoded.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Seconds the call took.
    pub seconds: f64,
}

/// A judge's agreement with human labels on one metric (table `judge_agreement`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgeAgreementRecord {
    /// The judge's identity.
    pub judge: String,
    /// The judge metric (a correctness name).
    pub metric: String,
    /// The labels file's name.
    pub labels: String,
    /// Counts: first rater = the judge, second = the human labels.
    pub agreement: crate::stats::agreement::Agreement,
}

/// A judgment with a value and the answer it judged ([`Store::judged_answers`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedAnswer {
    /// The judge's identity.
    pub judge: String,
    /// The stored metric name.
    pub metric: String,
    /// The answer's question id.
    pub question_id: String,
    /// The answer text.
    pub answer: String,
    /// The judged value.
    pub value: f64,
}

/// Which judgment: (cell_id, repeat, question_id, metric name).
pub type JudgmentKey = (String, u32, String, String);

/// One judge metric of one answer (table `judgments`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JudgmentRecord {
    /// The answer's cell.
    pub cell_id: String,
    /// The answer's repeat.
    pub repeat: u32,
    /// The answer's question.
    pub question_id: String,
    /// The stored metric name (`faithfulness`, `faithfulness_ragas`, ...).
    pub metric: String,
    /// Whether it has a value; `detail` says why not.
    pub status: JudgmentStatus,
    /// The value when `ok`.
    pub value: Option<f64>,
    /// Why undefined, or the error.
    pub detail: Option<String>,
    /// The judge's identity.
    pub judge: String,
    /// `crate::judge::steps::PROMPT_VERSION` of the prompts used.
    pub prompt_version: u32,
}

/// The texts of an answer row a judgment was made from ([`Store::put_judgment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgedTexts<'a> {
    /// The question as asked.
    pub question: &'a str,
    /// The expected (reference) answer judged against.
    pub expected_answer: &'a str,
    /// The generated answer judged (empty for a retrieval-only row).
    pub answer: &'a str,
}

/// The outcome of one judgment, stored as `ok`, `undefined` or `error` (`judgments.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgmentStatus {
    /// A value.
    Ok,
    /// The metric's reference definition gives no value here (RAGAS's NaN, e.g. faithfulness of
    /// an answer without statements); the judgment's `detail` says why.
    Undefined,
    /// The judgment could not be made (context overflow, output cut at max_tokens, missing
    /// chunks); `detail` holds the error. `orchestrate judge --retry-errors` tries again.
    Error,
}

impl JudgmentStatus {
    /// `ok`, `undefined` or `error`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JudgmentStatus::Ok => "ok",
            JudgmentStatus::Undefined => "undefined",
            JudgmentStatus::Error => "error",
        }
    }

    /// Parses a stored name; anything unknown reads as `Error` (judged again with
    /// `--retry-errors`, never averaged).
    pub fn parse(s: &str) -> JudgmentStatus {
        match s {
            "ok" => JudgmentStatus::Ok,
            "undefined" => JudgmentStatus::Undefined,
            _ => JudgmentStatus::Error,
        }
    }
}

impl std::fmt::Display for JudgmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of `orchestrate run` (table `runs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run's id (1, 2, ... in start order).
    pub run_id: i64,
    /// The experiment name it ran.
    pub experiment: String,
    /// When it started (RFC 3339 UTC).
    pub started_at: String,
    /// When it ended; `None` while running or when it was killed.
    pub ended_at: Option<String>,
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: String,
}

/// One stored answer joined with its cell's axes: the unit of reports and exports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnswerRecord {
    /// The cell's axes (id, model name, retrieval settings), serialised inline.
    #[serde(flatten)]
    pub cell: CellAxes,
    /// The index directory the cell's chunk ids refer to (`cells.index_dir`); `None` when the
    /// cell never recorded one. Not exported.
    #[serde(skip)]
    pub index_dir: Option<String>,
    /// 0-based repeat index.
    pub repeat: u32,
    /// Question id from the QA file.
    pub question_id: String,
    /// The question text as asked.
    pub question: String,
    /// The expert's answer from the QA file.
    pub expected_answer: String,
    /// The model's answer (empty for retrieval-only rows and failures).
    pub answer: String,
    /// Cosine similarity of answer and expected answer (all-MiniLM-L6-v2), in [-1, 1].
    pub cosine: Option<f64>,
    /// Seconds from prompt submission to the last token.
    pub response_time_s: Option<f64>,
    /// Seconds from prompt submission to the first generated token.
    pub ttft_s: Option<f64>,
    /// Seconds spent embedding the question and retrieving its chunks (before the prompt).
    #[serde(default)]
    pub retrieval_s: Option<f64>,
    /// Prompt length in tokens (after the chat template or prompt template was applied).
    pub prompt_tokens: Option<u32>,
    /// Generated tokens.
    pub completion_tokens: Option<u32>,
    /// Mean resident set size of the worker while answering, bytes.
    pub rss_mean_bytes: Option<u64>,
    /// Peak resident set size of the worker while answering, bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Mean CPU use of the worker while answering, percent of one core (200 = two cores busy).
    pub cpu_mean_percent: Option<f64>,
    /// How many of `chunk_ids` (the first ones) were given to the model: retrieved chunks are
    /// dropped from the end until prompt + max_tokens fits n_ctx. `None` when nothing was
    /// generated (retrieval only, failed answers, rows stored before this was recorded).
    #[serde(default)]
    pub contexts_used: Option<u32>,
    /// Retrieved chunk ids, in rank order (all of them: see `contexts_used` for how many the
    /// model saw). Retrieval metrics are computed over this list.
    pub chunk_ids: Vec<u32>,
    /// Pages of those chunks (1-based), parallel to `chunk_ids`.
    pub pages: Vec<u32>,
    /// Whether the answer succeeded.
    pub status: AnswerStatus,
    /// Why it failed (`None` for `ok` answers).
    #[serde(default)]
    pub error: Option<String>,
    /// Named per-answer metrics, as in [`NewAnswer::metrics`].
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// How the answer was generated: alone (`single`, its timings are latencies) or batched
    /// with other questions (timings include their work); `None` without a generation or for
    /// rows stored before batching existed (all decoded alone).
    #[serde(default)]
    pub decode_mode: Option<DecodeMode>,
    /// The cell whose generation this answer reused ([`NewAnswer::shared_from`]).
    #[serde(default)]
    pub shared_from: Option<String>,
    /// The judge metrics this answer has no value for, and why (table `judgments`): stored
    /// name → `undefined: <why>` (the reference definition gives no value) or `error: <what
    /// failed>`. A judge metric neither here nor in `metrics` is not judged yet.
    #[serde(default)]
    pub judge_missing: BTreeMap<String, String>,
}

impl AnswerRecord {
    /// Whether this answer's response time and TTFT are the latency of the question decoded
    /// alone: anything but [`DecodeMode::Batched`].
    pub fn timed_alone(&self) -> bool {
        self.decode_mode != Some(DecodeMode::Batched)
    }
}

impl NewAnswer {
    /// An `ok` answer for (`question_id`, `repeat`) with no measurements yet.
    pub fn empty(
        question_id: &str,
        repeat: u32,
        question: &str,
        expected_answer: &str,
    ) -> NewAnswer {
        NewAnswer {
            question_id: question_id.to_string(),
            repeat,
            question: question.to_string(),
            expected_answer: expected_answer.to_string(),
            answer: String::new(),
            status: AnswerStatus::Ok,
            error: None,
            cosine: None,
            response_time_s: None,
            ttft_s: None,
            retrieval_s: None,
            prompt_tokens: None,
            completion_tokens: None,
            contexts_used: None,
            chunk_ids: vec![],
            pages: vec![],
            scores: vec![],
            metrics: BTreeMap::new(),
            decode_mode: None,
            generation_key: None,
            shared_from: None,
            reference: None,
        }
    }

    /// An `ok` answer to `q`, repeat `repeat`, with no measurements yet ([`NewAnswer::empty`]
    /// with the question's texts and its [`crate::qa::Question::reference_digest`]).
    pub fn to(q: &crate::qa::Question, repeat: u32) -> NewAnswer {
        NewAnswer {
            reference: Some(q.reference_digest()),
            ..NewAnswer::empty(&q.id, repeat, &q.question, &q.expected_answer)
        }
    }
}

/// The first 16 bytes of every SQLite 3 database file ("SQLite format 3" and a NUL; SQLite's
/// file format, section 1.3), to tell a results database from a text file.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Handle on one experiment's result database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

pub(crate) fn now() -> String {
    // RFC 3339 UTC from the system clock, without a date crate: SQLite formats it.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Connection::open_in_memory()
        .and_then(|c| {
            c.query_row(
                "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1, 'unixepoch')",
                [secs],
                |r| r.get(0),
            )
        })
        .unwrap_or_else(|_| format!("{secs:.3}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// The finite entries of a metrics map (JSON has no NaN or infinity).
fn finite(m: &BTreeMap<String, f64>) -> BTreeMap<&str, f64> {
    m.iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

impl Store {
    /// Path of the database of experiment `name` under `store_dir`: `<store_dir>/<name>.sqlite`.
    pub fn path_for(store_dir: &Path, name: &str) -> PathBuf {
        store_dir.join(format!("{name}.sqlite"))
    }

    /// Opens (creating if needed, with its directory) the database at `path` and applies the schema.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| damaged(path, source))?;
        // before any statement: two sweeps creating one database at the same instant wait for
        // each other instead of failing with "database is locked"
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|source| damaged(path, source))?;
        let s = Store {
            conn,
            path: path.to_path_buf(),
        };
        let journal = journal_mode_for(path.parent().unwrap_or(Path::new(".")));
        s.conn
            .execute_batch(&format!(
                "PRAGMA journal_mode = {journal}; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;"
            ))
            .map_err(|e| s.err(e))?;
        s.conn.execute_batch(SCHEMA).map_err(|e| s.err(e))?;
        s.migrate()?;
        s.conn.execute_batch(VIEWS).map_err(|e| s.err(e))?;
        Ok(s)
    }

    /// Opens an existing database (see [`Store::open`]); `Ok(None)` if it does not exist yet, so
    /// reading commands never create an empty one.
    pub fn open_existing(path: &Path) -> Result<Option<Store>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        match Store::open(path) {
            Ok(s) => Ok(Some(s)),
            // a database on read-only media (a mounted archive, a colleague's share): SQLite
            // cannot create its WAL files there, so read the file as it is
            Err(StoreError::Sqlite { source, .. }) if is_read_only(&source) => {
                Store::open_immutable(path).map(Some)
            }
            Err(e) => Err(e),
        }
    }

    /// Opens `path` read-only as an immutable file (SQLite's `immutable=1`: no locks, no WAL or
    /// journal files), for reading results where nothing may be written. No schema upgrade: a
    /// database written by an older release may lack columns the reading commands need. Answers
    /// still in a `-wal` file beside it (a copy taken while a sweep ran) are not seen: a warning
    /// says so.
    fn open_immutable(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            tracing::warn!(
                "{} is read-only and {} holds changes not yet in it: they are not shown (copy \
                 both to writable storage and read the copy)",
                path.display(),
                wal.display()
            );
        }
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let escaped = absolute
            .display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23");
        let uri = format!("file:{escaped}?immutable=1");
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|source| damaged(path, source))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Whether `table` has `column` (an older database opened read-only may lack one).
    fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Adds the [`MIGRATIONS`] columns an older database lacks.
    fn migrate(&self) -> Result<(), StoreError> {
        for (table, column, decl) in MIGRATIONS {
            if !self.has_column(table, column)? {
                self.conn
                    .execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        damaged(&self.path, source)
    }

    /// Checks the database file with SQLite's `PRAGMA quick_check` (every page and index entry is
    /// well formed; O(size), milliseconds for a sweep's database) before a sweep writes to it:
    /// a damaged unique index would let answers be duplicated.
    ///
    /// Errors: [`StoreError::Damaged`] with SQLite's first finding; [`StoreError::Sqlite`].
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let found: Vec<String> = self
            .conn
            .prepare("PRAGMA quick_check")
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .map_err(|e| self.err(e))?;
        match found.first() {
            Some(first) if first != "ok" => Err(StoreError::Damaged {
                path: self.path.clone(),
                detail: first.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the start of a run of `exp` on `host`; returns its run id.
    pub fn begin_run(&self, exp: &Experiment, host: &HostFacts) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (experiment, experiment_file, experiment_sha256, experiment_text, started_at, status,
                   host_cpu, host_physical_cores, host_logical_cores, host_ram_bytes, host_os, orchestrate_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    exp.name,
                    exp.path.display().to_string(),
                    exp.sha256,
                    exp.text,
                    now(),
                    host.cpu_model,
                    host.physical_cores.map(|c| c as i64),
                    host.logical_cores as i64,
                    host.ram_bytes as i64,
                    format!("{} {}", host.os, host.kernel),
                    env!("CARGO_PKG_VERSION"),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks run `run_id` finished with `status` (`done`, `failed` or `interrupted`).
    pub fn end_run(&self, run_id: i64, status: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?1, status = ?2 WHERE run_id = ?3",
                params![now(), status, run_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Inserts `cells` (status `pending`) or, for a cell the database knows, refreshes its spec:
    /// same id means same contents and settings, so only display fields (model name, paths) can
    /// differ, and the latest are kept.
    pub fn register_cells(&self, cells: &[Cell], run_id: i64) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "INSERT INTO cells (cell_id, model, gguf, chunk_size, chunk_overlap, retriever,
                   ensemble_weight, top_k, fetch_k, lambda_mult, bm25, dense_index, spec, run_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (cell_id) DO UPDATE SET model = excluded.model, gguf = excluded.gguf,
                   bm25 = excluded.bm25, dense_index = excluded.dense_index, spec = excluded.spec,
                   run_id = excluded.run_id",
            )
            .map_err(|e| self.err(e))?;
        for c in cells {
            let r = &c.retrieval;
            stmt.execute(params![
                c.id,
                c.model_name(),
                c.model.as_ref().map(|m| m.gguf.display().to_string()),
                r.chunk_size as i64,
                r.chunk_overlap as i64,
                r.retriever.to_string(),
                r.ensemble_weight,
                r.top_k as i64,
                r.fetch_k.map(|f| f as i64),
                r.lambda_mult,
                r.bm25.map(|b| b.as_str()),
                r.dense_index.map(|d| d.as_str()),
                to_json(c),
                run_id,
            ])
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Ids of the cells the latest run registered (its grid) that it has not finished: status
    /// `pending`, `running` or `interrupted`. Cells of earlier grids are not among them: no
    /// `run` of the current file would finish those.
    pub fn unfinished_cell_ids(&self) -> Result<HashSet<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT cell_id FROM cells
                 WHERE status IN ('pending', 'running', 'interrupted')
                   AND run_id = (SELECT MAX(run_id) FROM runs)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records the thread count a cell's worker resolved and ran with (a run fact, not part of
    /// the cell id unless the experiment set it).
    pub fn set_cell_threads(&self, cell_id: &str, threads: i32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE cells SET threads = ?1 WHERE cell_id = ?2",
                params![threads, cell_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets a cell's status (and error text, `None` clears it), stamping start/end times.
    pub fn set_cell_status(
        &self,
        cell_id: &str,
        run_id: i64,
        status: CellStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let time_col = if status == CellStatus::Running {
            "started_at"
        } else {
            "ended_at"
        };
        self.conn
            .execute(
                &format!("UPDATE cells SET status = ?1, error = ?2, run_id = ?3, {time_col} = ?4 WHERE cell_id = ?5"),
                params![status.as_str(), error, run_id, now(), cell_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stores a race's elimination of a cell with its evidence and marks the cell
    /// [`CellStatus::Eliminated`] (one transaction).
    pub fn record_elimination(
        &mut self,
        run_id: i64,
        e: &crate::race::Elimination,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO eliminations (run_id, cell_id, leader_id, metric, look, n, mean_diff, ci_low,
               ci_high, p_value, p_adjusted, level, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                run_id,
                e.cell_id,
                e.leader_id,
                e.metric,
                e.look as i64,
                e.n as i64,
                e.mean_diff,
                e.ci_low,
                e.ci_high,
                e.p_value,
                e.p_adjusted,
                e.level,
                now()
            ],
        )
        .map_err(err)?;
        let why = format!(
            "eliminated by racing after look {}: {}",
            e.look,
            e.evidence("the leader")
        );
        tx.execute(
            "UPDATE cells SET status = ?1, error = ?2, run_id = ?3, ended_at = ?4 WHERE cell_id = ?5",
            params![CellStatus::Eliminated.as_str(), why, run_id, now(), e.cell_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// The latest elimination of each cell that is still [`CellStatus::Eliminated`] (a cell
    /// completed later by a plain run is not), in cell id order.
    pub fn eliminations(&self) -> Result<Vec<crate::race::Elimination>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT e.cell_id, e.leader_id, e.metric, e.look, e.n, e.mean_diff, e.ci_low, e.ci_high,
                        e.p_value, e.p_adjusted, e.level
                 FROM eliminations e JOIN cells c ON c.cell_id = e.cell_id
                 WHERE c.status = 'eliminated'
                   AND e.rowid = (SELECT max(rowid) FROM eliminations WHERE cell_id = e.cell_id)
                 ORDER BY e.cell_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(crate::race::Elimination {
                    cell_id: r.get(0)?,
                    leader_id: r.get(1)?,
                    metric: r.get(2)?,
                    look: r.get::<_, i64>(3)? as usize,
                    n: r.get::<_, i64>(4)? as usize,
                    mean_diff: r.get(5)?,
                    ci_low: r.get(6)?,
                    ci_high: r.get(7)?,
                    p_value: r.get(8)?,
                    p_adjusted: r.get(9)?,
                    level: r.get(10)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records which index a cell used and what building it cost (seconds; 0 on a cache hit).
    /// A build recorded earlier for the same index directory is kept when this call reports a
    /// cache hit, so resuming a sweep does not erase what building its index cost.
    pub fn set_cell_index(
        &self,
        cell_id: &str,
        dir: &Path,
        build_s: f64,
        cache_hit: bool,
        n_chunks: usize,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE cells SET
                   index_build_s = CASE WHEN ?3 AND index_cache_hit = 0 AND index_dir = ?1
                                        THEN index_build_s ELSE ?2 END,
                   index_cache_hit = CASE WHEN ?3 AND index_cache_hit = 0 AND index_dir = ?1
                                          THEN 0 ELSE ?3 END,
                   index_dir = ?1, n_chunks = ?4
                 WHERE cell_id = ?5",
                params![
                    dir.display().to_string(),
                    build_s,
                    cache_hit,
                    n_chunks as i64,
                    cell_id
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records how long the worker took to load its models (seconds).
    pub fn set_cell_load_time(&self, cell_id: &str, load_s: f64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE cells SET model_load_s = ?1 WHERE cell_id = ?2",
                params![load_s, cell_id],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// (question_id, repeat) pairs of `cell_id` that already have an `ok` answer to the same
    /// question text: a stored row whose question differs from `questions` (the QA file was
    /// edited, or plain-text ids shifted) does not count, so it is asked again. A row whose
    /// expected answer alone changed counts as done: it needs re-scoring only
    /// ([`Store::stale_references`]).
    pub fn done_keys(
        &self,
        cell_id: &str,
        questions: &[crate::qa::Question],
    ) -> Result<HashSet<(String, u32)>, StoreError> {
        Ok(self
            .ok_rows(cell_id, questions)?
            .into_iter()
            .map(|(id, repeat, _)| (id, repeat))
            .collect())
    }

    /// The `ok` answers of `cell_id` to the current text of a question of `questions` whose
    /// stored expected answer differs from the current one: their scores (cosine, answer
    /// metrics) are stale and need re-scoring, not a new LLM call. (question_id, repeat) pairs.
    pub fn stale_references(
        &self,
        cell_id: &str,
        questions: &[crate::qa::Question],
    ) -> Result<Vec<(String, u32)>, StoreError> {
        Ok(self
            .ok_rows(cell_id, questions)?
            .into_iter()
            .filter(|(_, _, same_reference)| !same_reference)
            .map(|(id, repeat, _)| (id, repeat))
            .collect())
    }

    /// [`Store::done_keys`] and [`Store::stale_references`] of `cell_id` from one query.
    #[allow(clippy::type_complexity)]
    pub fn answered(
        &self,
        cell_id: &str,
        questions: &[crate::qa::Question],
    ) -> Result<(HashSet<(String, u32)>, Vec<(String, u32)>), StoreError> {
        let rows = self.ok_rows(cell_id, questions)?;
        let stale = rows
            .iter()
            .filter(|(_, _, same_reference)| !same_reference)
            .map(|(id, repeat, _)| (id.clone(), *repeat))
            .collect();
        let done = rows
            .into_iter()
            .map(|(id, repeat, _)| (id, repeat))
            .collect();
        Ok((done, stale))
    }

    /// The (question id, repeat) keys of `cell_id` with a row that is not `ok` written by run
    /// `run_id`: failures already recorded by this run, which its later Slurm waves do not retry.
    pub fn failed_in_run(
        &self,
        cell_id: &str,
        run_id: i64,
    ) -> Result<HashSet<(String, u32)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT question_id, repeat FROM answers
                 WHERE cell_id = ?1 AND run_id = ?2 AND status != 'ok'",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![cell_id, run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The values of `metric` (`cosine`, `response_time_s` or a stored metric name) of the `ok`
    /// answers of `cell_id` whose question is one of `questions` (text current), keyed by
    /// (question id, repeat): what a race compares. Response times only of answers decoded
    /// alone; non-finite values are left out.
    pub fn metric_scores(
        &self,
        cell_id: &str,
        metric: &str,
        questions: &[crate::qa::Question],
    ) -> Result<crate::race::Scores, StoreError> {
        let current: HashSet<(String, u32)> = self
            .ok_rows(cell_id, questions)?
            .into_iter()
            .map(|(id, repeat, _)| (id, repeat))
            .collect();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT question_id, repeat, cosine, response_time_s, metrics, decode_mode
                 FROM answers WHERE cell_id = ?1 AND status = 'ok'",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([cell_id], |r| {
                let key = (r.get::<_, String>(0)?, r.get::<_, u32>(1)?);
                let batched = r.get::<_, Option<String>>(5)?.as_deref() == Some("batched");
                let value = match metric {
                    "cosine" => r.get::<_, Option<f64>>(2)?,
                    "response_time_s" if batched => None,
                    "response_time_s" => r.get::<_, Option<f64>>(3)?,
                    m => from_json::<BTreeMap<String, f64>>(&r.get::<_, String>(4)?)
                        .get(m)
                        .copied(),
                };
                Ok((key, value))
            })
            .map_err(|e| self.err(e))?;
        let mut out = crate::race::Scores::new();
        for row in rows {
            let (key, value) = row.map_err(|e| self.err(e))?;
            if let Some(v) = value.filter(|v| v.is_finite()) {
                if current.contains(&key) {
                    out.insert(key, v);
                }
            }
        }
        Ok(out)
    }

    /// The generations of family `family` ([`crate::cell::generation_family`]) that answers
    /// generated themselves (`ok`, not shared), one per key (the earliest stored), for a worker
    /// to reuse.
    pub fn shared_generations(&self, family: &str) -> Result<Vec<SharedGeneration>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT generation_key, cell_id, answer, prompt_tokens, completion_tokens, ttft_s,
                        response_time_s, contexts_used, decode_mode
                 FROM answers
                 WHERE status = 'ok' AND shared_from IS NULL AND substr(generation_key, 1, ?2) = ?1
                 ORDER BY answer_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![family, family.len() as i64], |r| {
                let text: String = r.get(2)?;
                Ok(SharedGeneration {
                    key: r.get(0)?,
                    cell_id: r.get(1)?,
                    generation: crate::generate::Generation {
                        raw: text.clone(),
                        text,
                        prompt_tokens: r.get::<_, Option<u32>>(3)?.unwrap_or_default(),
                        completion_tokens: r.get::<_, Option<u32>>(4)?.unwrap_or_default(),
                        ttft_s: r.get::<_, Option<f64>>(5)?.unwrap_or_default(),
                        response_s: r.get::<_, Option<f64>>(6)?.unwrap_or_default(),
                        contexts_used: r.get::<_, Option<u32>>(7)?.unwrap_or_default() as usize,
                        stopped_by: crate::generate::StopReason::Eos,
                    },
                    decode_mode: DecodeMode::parse(
                        &r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    ),
                })
            })
            .map_err(|e| self.err(e))?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for row in rows {
            let g = row.map_err(|e| self.err(e))?;
            if seen.insert(g.key.clone()) {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// (chunk size, retrieval seconds) of every `ok` answer that recorded its retrieval time:
    /// what [`crate::plan`] predicts retrieval from.
    pub fn retrieval_times(&self) -> Result<Vec<(usize, f64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.chunk_size, a.retrieval_s FROM answers a JOIN cells c ON c.cell_id = a.cell_id
                 WHERE a.status = 'ok' AND a.retrieval_s IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as usize, r.get::<_, f64>(1)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// `ok` rows of `cell_id` whose question text is current: (id, repeat, whether what the row
    /// was scored against is current too: expected answer and, for rows that recorded it, the
    /// whole [`crate::qa::Question::reference_digest`]).
    fn ok_rows(
        &self,
        cell_id: &str,
        questions: &[crate::qa::Question],
    ) -> Result<Vec<(String, u32, bool)>, StoreError> {
        let current: std::collections::HashMap<&str, &crate::qa::Question> =
            questions.iter().map(|q| (q.id.as_str(), q)).collect();
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT question_id, repeat, question, expected_answer, {} FROM answers WHERE cell_id = ?1 AND status = 'ok'",
                // an older database read where it cannot be upgraded has no digests
                if self.has_column("answers", "reference_sha")? { "reference_sha" } else { "NULL" }
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([cell_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, repeat, question, expected, reference) = row.map_err(|e| self.err(e))?;
            if let Some(q) = current.get(id.as_str()).filter(|q| q.question == question) {
                // rows written before digests were stored compare the expected answer alone
                let same = q.expected_answer == expected
                    && reference.is_none_or(|r| r == q.reference_digest());
                out.push((id, repeat, same));
            }
        }
        Ok(out)
    }

    /// The stored answer text and retrieved chunk ids of one row, if the row exists (what
    /// re-scoring needs).
    pub fn answer_for_rescore(
        &self,
        cell_id: &str,
        question_id: &str,
        repeat: u32,
    ) -> Result<Option<(String, Vec<u32>)>, StoreError> {
        self.conn
            .query_row(
                "SELECT answer, chunk_ids FROM answers WHERE cell_id = ?1 AND question_id = ?2 AND repeat = ?3",
                params![cell_id, question_id, repeat],
                |r| Ok((r.get(0)?, from_json(&r.get::<_, String>(1)?))),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Replaces the expected answer, the reference digest (`reference`, see
    /// [`crate::qa::Question::reference_digest`]) and the scores that depend on them (cosine,
    /// metrics) of one answer, after its question's reference was edited; returns whether the row
    /// exists. When the expected answer itself changed, its LLM judgments are deleted in the same
    /// transaction (correctness and context precision/recall judge against it), so the next
    /// `orchestrate judge` judges it again instead of keeping stale verdicts; calls whose prompts
    /// did not change come from the cache. An edit of evidence or page alone keeps them and
    /// their values in the answer's metrics.
    #[allow(clippy::too_many_arguments)]
    pub fn set_reference(
        &self,
        cell_id: &str,
        question_id: &str,
        repeat: u32,
        expected_answer: &str,
        reference: Option<&str>,
        cosine: Option<f64>,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<bool, StoreError> {
        let e = |source| self.err(source);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        let before: Option<(String, String)> = tx
            .query_row(
                "SELECT expected_answer, metrics FROM answers
                 WHERE cell_id = ?1 AND question_id = ?2 AND repeat = ?3",
                params![cell_id, question_id, repeat],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(e)?;
        let same_expected = before
            .as_ref()
            .is_some_and(|(expected, _)| expected == expected_answer);
        // judge values live in the metrics too: kept while their judgments stand
        let mut metrics = metrics.clone();
        if let Some((_, stored)) = before.as_ref().filter(|_| same_expected) {
            metrics.extend(
                from_json::<BTreeMap<String, f64>>(stored)
                    .into_iter()
                    .filter(|(name, _)| {
                        matches!(
                            crate::score::metric::Metric::parse(name),
                            crate::score::metric::Metric::Judge(..)
                        )
                    }),
            );
        }
        let n = tx
            .execute(
                "UPDATE answers SET expected_answer = ?1, cosine = ?2, metrics = ?3,
                        reference_sha = ?7
                 WHERE cell_id = ?4 AND question_id = ?5 AND repeat = ?6",
                params![
                    expected_answer,
                    cosine.filter(|c| c.is_finite()),
                    to_json(&finite(&metrics)),
                    cell_id,
                    question_id,
                    repeat,
                    reference
                ],
            )
            .map_err(e)?;
        if !same_expected {
            tx.execute(
                "DELETE FROM judgments WHERE cell_id = ?1 AND question_id = ?2 AND repeat = ?3",
                params![cell_id, question_id, repeat],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)?;
        Ok(n > 0)
    }

    /// Marks runs and cells left `running` by a sweep that was killed as `interrupted`.
    pub fn mark_interrupted(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "UPDATE runs SET status = 'interrupted' WHERE status = 'running';
                 UPDATE cells SET status = 'interrupted' WHERE status = 'running';",
            )
            .map_err(|e| self.err(e))
    }

    /// Commits one answer of `cell_id` with its resource usage and raw samples, in one
    /// transaction. An existing row with the same key is replaced, with its samples, unless it is
    /// `ok` and the new one is not (a retried failure never overwrites a success).
    pub fn insert_answer(
        &mut self,
        run_id: i64,
        cell_id: &str,
        a: &NewAnswer,
        usage: Option<&Usage>,
        samples: &[Sample],
    ) -> Result<(), StoreError> {
        self.write_answer(run_id, cell_id, a, usage, samples, None, Rule::Retry)
            .map(|_| ())
    }

    /// Merges one answer read from a Slurm attempt file ([`crate::slurm::attempt`]) named
    /// `attempt`, in one transaction, by the merge rules: a key without a row gets this one; an
    /// `ok` row is never replaced (the first `ok` wins, so a duplicate attempt adds nothing)
    /// unless its question text was edited since; a `failed` row is replaced by an `ok` one, or
    /// by a failure of a later run (a retry), never by another failure of the same run. Merging
    /// the same record twice therefore changes nothing. Returns whether the row was written.
    pub fn merge_answer(
        &mut self,
        run_id: i64,
        cell_id: &str,
        a: &NewAnswer,
        usage: Option<&Usage>,
        samples: &[Sample],
        attempt: &str,
    ) -> Result<bool, StoreError> {
        self.write_answer(
            run_id,
            cell_id,
            a,
            usage,
            samples,
            Some(attempt),
            Rule::Merge,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn write_answer(
        &mut self,
        run_id: i64,
        cell_id: &str,
        a: &NewAnswer,
        usage: Option<&Usage>,
        samples: &[Sample],
        attempt: Option<&str>,
        rule: Rule,
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let e = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let sql = format!(
            "INSERT INTO answers (cell_id, repeat, question_id, run_id, question, expected_answer, answer,
               status, error, cosine, response_time_s, ttft_s, retrieval_s, prompt_tokens, completion_tokens,
               contexts_used, chunk_ids, pages, scores, rss_mean_bytes, rss_peak_bytes, cpu_mean_percent, n_samples,
               finished_at, metrics, decode_mode, generation_key, shared_from, attempt, reference_sha)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
               ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)
             ON CONFLICT (cell_id, repeat, question_id) DO UPDATE SET
               run_id = excluded.run_id, question = excluded.question, expected_answer = excluded.expected_answer,
               answer = excluded.answer, status = excluded.status, error = excluded.error, cosine = excluded.cosine,
               response_time_s = excluded.response_time_s, ttft_s = excluded.ttft_s, retrieval_s = excluded.retrieval_s,
               prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
               contexts_used = excluded.contexts_used, chunk_ids = excluded.chunk_ids, pages = excluded.pages,
               scores = excluded.scores, rss_mean_bytes = excluded.rss_mean_bytes, rss_peak_bytes = excluded.rss_peak_bytes,
               cpu_mean_percent = excluded.cpu_mean_percent, n_samples = excluded.n_samples, finished_at = excluded.finished_at,
               metrics = excluded.metrics, decode_mode = excluded.decode_mode,
               generation_key = excluded.generation_key, shared_from = excluded.shared_from,
               attempt = excluded.attempt, reference_sha = excluded.reference_sha
             WHERE {}",
            rule.condition()
        );
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            &sql,
            params![
                cell_id,
                a.repeat,
                a.question_id,
                run_id,
                a.question,
                a.expected_answer,
                a.answer,
                a.status.as_str(),
                a.error,
                a.cosine,
                a.response_time_s,
                a.ttft_s,
                a.retrieval_s,
                a.prompt_tokens,
                a.completion_tokens,
                a.contexts_used,
                to_json(&a.chunk_ids),
                to_json(&a.pages),
                to_json(&a.scores),
                usage.map(|u| u.rss_mean_bytes as i64),
                usage.map(|u| u.rss_peak_bytes as i64),
                usage.map(|u| u.cpu_mean_percent),
                usage.map(|u| u.n_samples as i64),
                now(),
                to_json(&finite(&a.metrics)),
                a.decode_mode.map(DecodeMode::as_str),
                a.generation_key,
                a.shared_from,
                attempt,
                a.reference,
            ],
        )
        .map_err(e)?;
        let written = tx.changes() > 0;
        if written {
            tx.execute(
                "DELETE FROM samples WHERE cell_id = ?1 AND question_id = ?2 AND repeat = ?3",
                params![cell_id, a.question_id, a.repeat],
            )
            .map_err(e)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO samples (run_id, cell_id, question_id, repeat, t_s, rss_bytes, cpu_percent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(e)?;
            for s in samples {
                stmt.execute(params![
                    run_id,
                    cell_id,
                    a.question_id,
                    a.repeat,
                    s.t_s,
                    s.rss_bytes as i64,
                    s.cpu_percent
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(written)
    }

    /// Records (or updates, on a later merge) one Slurm attempt: where it ran, how many answers
    /// its file held and how it ended (`None`: still running, or died without an exit record).
    pub fn put_attempt(&self, a: &AttemptRecord) -> Result<(), StoreError> {
        let i = &a.info;
        self.conn
            .execute(
                "INSERT INTO attempts (attempt, run_id, cell_id, job_id, array_index, restart_count, host,
                   pid, cpus, started_at, answers, exit_status, exit_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (attempt) DO UPDATE SET answers = excluded.answers,
                   exit_status = excluded.exit_status, exit_error = excluded.exit_error",
                params![
                    a.attempt,
                    a.run_id,
                    i.cell_id,
                    i.job_id,
                    i.array_index,
                    i.restart_count,
                    i.host,
                    i.pid,
                    i.cpus,
                    i.started_at,
                    a.answers as i64,
                    a.exit_status,
                    a.exit_error,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every recorded Slurm attempt, oldest first.
    pub fn attempts(&self) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT attempt, run_id, cell_id, job_id, array_index, restart_count, host, pid, cpus,
                   started_at, answers, exit_status, exit_error
                 FROM attempts ORDER BY started_at, attempt",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AttemptRecord {
                    attempt: r.get(0)?,
                    run_id: r.get(1)?,
                    info: crate::slurm::attempt::AttemptInfo {
                        cell_id: r.get(2)?,
                        job_id: r.get(3)?,
                        array_index: r.get(4)?,
                        restart_count: r.get(5)?,
                        host: r.get(6)?,
                        pid: r.get(7)?,
                        cpus: r.get(8)?,
                        started_at: r.get(9)?,
                    },
                    answers: r.get::<_, i64>(10)? as usize,
                    exit_status: r.get(11)?,
                    exit_error: r.get(12)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Records a submitted Slurm job array.
    pub fn put_slurm_job(&self, j: &SlurmJobRecord) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO slurm_jobs (job_id, run_id, wave, profile, tasks, run_dir,
                   submitted_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    j.job_id,
                    j.run_id,
                    j.wave,
                    j.profile,
                    j.tasks,
                    j.run_dir.display().to_string(),
                    j.submitted_at,
                    j.finished_at,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Marks a Slurm job array finished (none of its tasks can still write answers).
    pub fn finish_slurm_job(&self, job_id: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE slurm_jobs SET finished_at = ?2 WHERE job_id = ?1 AND finished_at IS NULL",
                params![job_id, now()],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The submitted Slurm job arrays, oldest first (`unfinished_only`: those not yet marked
    /// finished, which a restarted coordinator attaches to).
    pub fn slurm_jobs(&self, unfinished_only: bool) -> Result<Vec<SlurmJobRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT job_id, run_id, wave, profile, tasks, run_dir, submitted_at, finished_at
                 FROM slurm_jobs WHERE (?1 = 0 OR finished_at IS NULL) ORDER BY submitted_at, job_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([unfinished_only], |r| {
                Ok(SlurmJobRecord {
                    job_id: r.get(0)?,
                    run_id: r.get(1)?,
                    wave: r.get(2)?,
                    profile: r.get(3)?,
                    tasks: r.get(4)?,
                    run_dir: PathBuf::from(r.get::<_, String>(5)?),
                    submitted_at: r.get(6)?,
                    finished_at: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Replaces the stored metrics of one answer (used by `orchestrate rescore`); returns whether
    /// the row exists. Only finite values are stored. LLM-judge metrics already stored
    /// ([`crate::score::metric::Metric::Judge`], owned by the `judgments` table) are kept: a
    /// rescore recomputes the other metrics and must not drop them.
    pub fn set_answer_metrics(
        &self,
        cell_id: &str,
        repeat: u32,
        question_id: &str,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<bool, StoreError> {
        let e = |source| self.err(source);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT metrics FROM answers WHERE cell_id = ?1 AND repeat = ?2 AND question_id = ?3",
                params![cell_id, repeat, question_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        let mut merged: BTreeMap<String, f64> = from_json::<BTreeMap<String, f64>>(&stored)
            .into_iter()
            .filter(|(name, _)| {
                matches!(
                    crate::score::metric::Metric::parse(name),
                    crate::score::metric::Metric::Judge(..)
                )
            })
            .collect();
        merged.extend(metrics.iter().map(|(k, v)| (k.clone(), *v)));
        tx.execute(
            "UPDATE answers SET metrics = ?1 WHERE cell_id = ?2 AND repeat = ?3 AND question_id = ?4",
            params![to_json(&finite(&merged)), cell_id, repeat, question_id],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }

    /// The stored output of the judge call with cache key `key` (see `crate::judge::run`).
    pub fn judge_call(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT output FROM judge_calls WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Stores a judge call's output under its cache key (a rerun of the same call is a no-op).
    pub fn put_judge_call(&self, call: &JudgeCallRecord<'_>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO judge_calls (key, step, judge, prompt_version, output,
                     prompt_tokens, completion_tokens, seconds, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    call.key,
                    call.step,
                    call.judge,
                    call.prompt_version,
                    call.output,
                    call.prompt_tokens,
                    call.completion_tokens,
                    call.seconds,
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The judgments stored by judge `judge` with prompt version `prompt_version`:
    /// (cell_id, repeat, question_id, metric) → status.
    pub fn judgments_by(
        &self,
        judge: &str,
        prompt_version: u32,
    ) -> Result<BTreeMap<JudgmentKey, JudgmentStatus>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT cell_id, repeat, question_id, metric, status FROM judgments
                 WHERE judge = ?1 AND prompt_version = ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![judge, prompt_version], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?),
                    JudgmentStatus::parse(&r.get::<_, String>(4)?),
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Every stored judgment, ordered by cell, repeat, question and metric.
    pub fn judgments(&self) -> Result<Vec<JudgmentRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT cell_id, repeat, question_id, metric, status, value, detail, judge,
                        prompt_version
                 FROM judgments ORDER BY cell_id, repeat, question_id, metric",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JudgmentRecord {
                    cell_id: r.get(0)?,
                    repeat: r.get(1)?,
                    question_id: r.get(2)?,
                    metric: r.get(3)?,
                    status: JudgmentStatus::parse(&r.get::<_, String>(4)?),
                    value: r.get(5)?,
                    detail: r.get(6)?,
                    judge: r.get(7)?,
                    prompt_version: r.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Every judgment with a value, with its answer's question and text (for agreement with
    /// human labels).
    pub fn judged_answers(&self) -> Result<Vec<JudgedAnswer>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT j.judge, j.metric, j.question_id, a.answer, j.value
                 FROM judgments j JOIN answers a USING (cell_id, repeat, question_id)
                 WHERE j.status = 'ok' AND j.value IS NOT NULL
                 ORDER BY j.judge, j.metric, j.question_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JudgedAnswer {
                    judge: r.get(0)?,
                    metric: r.get(1)?,
                    question_id: r.get(2)?,
                    answer: r.get(3)?,
                    value: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Stores (replacing) a judge's agreement with a labels file on one metric.
    pub fn put_judge_agreement(&self, a: &JudgeAgreementRecord) -> Result<(), StoreError> {
        let g = &a.agreement;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO judge_agreement (judge, metric, labels, n, both_yes, both_no,
                     only_judge, only_human, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    a.judge,
                    a.metric,
                    a.labels,
                    g.n as i64,
                    g.both_yes as i64,
                    g.both_no as i64,
                    g.only_first as i64,
                    g.only_second as i64,
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every stored judge agreement, by judge, metric and labels file.
    pub fn judge_agreements(&self) -> Result<Vec<JudgeAgreementRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT judge, metric, labels, n, both_yes, both_no, only_judge, only_human
                 FROM judge_agreement ORDER BY judge, metric, labels",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JudgeAgreementRecord {
                    judge: r.get(0)?,
                    metric: r.get(1)?,
                    labels: r.get(2)?,
                    agreement: crate::stats::agreement::Agreement {
                        n: r.get::<_, i64>(3)? as usize,
                        both_yes: r.get::<_, i64>(4)? as usize,
                        both_no: r.get::<_, i64>(5)? as usize,
                        only_first: r.get::<_, i64>(6)? as usize,
                        only_second: r.get::<_, i64>(7)? as usize,
                    },
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Stores one judgment and, in the same transaction, sets (a value) or removes (undefined,
    /// error) the metric in the answer's `metrics`, so reports, exports, compare and racing see
    /// judge metrics like any other. `of` are the texts the judgment was made from: it is stored
    /// only while the answer row is still an `ok` answer with exactly these texts. Returns
    /// whether it was stored: `false` when the answer is gone or changed while it was judged
    /// (a concurrent `orchestrate run` re-answered it, or re-scored it against an edited
    /// expected answer and dropped its judgments), so a stale verdict is never written.
    pub fn put_judgment(
        &self,
        j: &JudgmentRecord,
        of: &JudgedTexts<'_>,
    ) -> Result<bool, StoreError> {
        let e = |source| self.err(source);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        let metrics: Option<String> = tx
            .query_row(
                "SELECT metrics FROM answers WHERE cell_id = ?1 AND repeat = ?2 AND question_id = ?3
                     AND status = 'ok' AND question = ?4 AND expected_answer = ?5 AND answer = ?6",
                params![
                    j.cell_id,
                    j.repeat,
                    j.question_id,
                    of.question,
                    of.expected_answer,
                    of.answer
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let Some(metrics) = metrics else {
            return Ok(false);
        };
        let mut metrics: BTreeMap<String, f64> = from_json(&metrics);
        match j.value.filter(|v| v.is_finite()) {
            Some(v) if j.status == JudgmentStatus::Ok => {
                metrics.insert(j.metric.clone(), v);
            }
            _ => {
                metrics.remove(&j.metric);
            }
        }
        tx.execute(
            "UPDATE answers SET metrics = ?1 WHERE cell_id = ?2 AND repeat = ?3 AND question_id = ?4",
            params![to_json(&finite(&metrics)), j.cell_id, j.repeat, j.question_id],
        )
        .map_err(e)?;
        tx.execute(
            "INSERT OR REPLACE INTO judgments (cell_id, repeat, question_id, metric, status, value,
                 detail, judge, prompt_version, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                j.cell_id,
                j.repeat,
                j.question_id,
                j.metric,
                j.status.as_str(),
                j.value,
                j.detail,
                j.judge,
                j.prompt_version,
                now()
            ],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }

    /// Number of answer rows per status for `cell_id`: (ok, failed).
    pub fn answer_counts(&self, cell_id: &str) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status != 'ok'), 0) FROM answers WHERE cell_id = ?1",
                [cell_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// A cell's stored status (`Pending` when the cell has no row yet) and error text.
    pub fn cell_status(&self, cell_id: &str) -> Result<(CellStatus, Option<String>), StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT status, error FROM cells WHERE cell_id = ?1",
                [cell_id],
                |r| Ok((CellStatus::parse(&r.get::<_, String>(0)?), r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or((CellStatus::Pending, None)))
    }

    /// Indexes `cells` used, once per index directory in first-use order: (label
    /// "chunk S/O (N chunks)", build seconds), the seconds `None` when every cell found the index
    /// already built (cached by an earlier run or another experiment sharing the store).
    pub fn index_builds(cells: &[StoredCell]) -> Vec<(String, Option<f64>)> {
        let mut order: Vec<&StoredCell> = Vec::new();
        let mut built: HashMap<Option<&str>, f64> = HashMap::new();
        for c in cells {
            if c.index_cache_hit == Some(false) {
                if let Some(t) = c.index_build_s {
                    built.entry(c.index_dir.as_deref()).or_insert(t);
                }
            }
            if c.index_cache_hit.is_some() && !order.iter().any(|o| o.index_dir == c.index_dir) {
                order.push(c);
            }
        }
        order
            .into_iter()
            .map(|c| {
                let r = &c.cell.retrieval;
                let label = format!(
                    "chunk {}/{} ({} chunks)",
                    r.chunk_size,
                    r.chunk_overlap,
                    c.n_chunks.unwrap_or(0)
                );
                (label, built.get(&c.index_dir.as_deref()).copied())
            })
            .collect()
    }

    /// Every run recorded in the database (table `runs`), oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, experiment, started_at, ended_at, status FROM runs ORDER BY run_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RunRecord {
                    run_id: r.get(0)?,
                    experiment: r.get(1)?,
                    started_at: r.get(2)?,
                    ended_at: r.get(3)?,
                    status: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The run that wrote each stored answer row: (cell id, repeat, question id) → `run_id`.
    /// A row replaced by a retry or a merge carries the run that replaced it.
    pub fn answer_runs(&self) -> Result<HashMap<(String, u32, String), i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT cell_id, repeat, question_id, run_id FROM answers")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<HashMap<_, _>, _>>()
            .map_err(|e| self.err(e))
    }

    /// Start time of the latest run, if any.
    pub fn last_run_started(&self) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT started_at FROM runs ORDER BY run_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Host of the latest run as one line: "CPU, N cores, X GiB RAM, OS", if any run is stored.
    pub fn last_run_host(&self) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT host_cpu, host_logical_cores, host_ram_bytes, host_os FROM runs ORDER BY run_id DESC LIMIT 1",
                [],
                |r| {
                    let cpu: Option<String> = r.get(0)?;
                    let cores: Option<i64> = r.get(1)?;
                    let ram: Option<i64> = r.get(2)?;
                    let os: Option<String> = r.get(3)?;
                    Ok(format!(
                        "{}, {} cores, {:.0} GiB RAM, {}",
                        cpu.unwrap_or_default(),
                        cores.unwrap_or(0),
                        ram.unwrap_or(0) as f64 / (1u64 << 30) as f64,
                        os.unwrap_or_default()
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every cell the database holds, in the order they were first registered (grid order),
    /// read back from `cells.spec` (or, for a database written before specs were stored, from
    /// the axis columns, with [`StoredCell::legacy`] set).
    pub fn stored_cells(&self) -> Result<Vec<StoredCell>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT cell_id, spec, model, gguf, chunk_size, chunk_overlap, retriever, ensemble_weight,
                        top_k, fetch_k, lambda_mult, bm25, dense_index, status, error, index_dir,
                        n_chunks, index_build_s, index_cache_hit, model_load_s, threads
                 FROM cells ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let id: String = r.get(0)?;
                let spec: Option<String> = r.get(1)?;
                // only a database from before specs falls back to the axis columns; a spec that
                // does not parse is an error, never a silent downgrade
                let (cell, legacy) = match spec {
                    Some(text) => (
                        serde_json::from_str::<Cell>(&text).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                1,
                                rusqlite::types::Type::Text,
                                format!(
                                    "cells.spec of cell {id} is not a cell this version reads: {e}"
                                )
                                .into(),
                            )
                        })?,
                        false,
                    ),
                    None => (legacy_cell(id, r)?, true),
                };
                Ok(StoredCell {
                    cell,
                    legacy,
                    status: CellStatus::parse(&r.get::<_, String>(13)?),
                    error: r.get(14)?,
                    index_dir: r.get(15)?,
                    n_chunks: r.get::<_, Option<i64>>(16)?.map(|n| n as u64),
                    index_build_s: r.get(17)?,
                    index_cache_hit: r.get::<_, Option<i64>>(18)?.map(|h| h != 0),
                    model_load_s: r.get(19)?,
                    threads: r.get(20)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every answer of `cells`, ordered by cell (in the given order), repeat and question id.
    pub fn answers(&self, cells: &[StoredCell]) -> Result<Vec<AnswerRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT repeat, question_id, question, expected_answer, answer, cosine, response_time_s, ttft_s,
                        prompt_tokens, completion_tokens, rss_mean_bytes, rss_peak_bytes, cpu_mean_percent,
                        chunk_ids, pages, status, metrics, contexts_used, error, decode_mode,
                        shared_from,
                        (SELECT json_group_object(j.metric, j.status || ': ' || COALESCE(j.detail, ''))
                           FROM judgments j
                          WHERE j.cell_id = answers.cell_id AND j.repeat = answers.repeat
                            AND j.question_id = answers.question_id AND j.status != 'ok'),
                        retrieval_s
                 FROM answers WHERE cell_id = ?1 ORDER BY repeat, question_id",
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for c in cells {
            let axes = c.cell.axes();
            let rows = stmt
                .query_map([&c.cell.id], |row| {
                    Ok(AnswerRecord {
                        cell: axes.clone(),
                        index_dir: c.index_dir.clone(),
                        repeat: row.get(0)?,
                        question_id: row.get(1)?,
                        question: row.get(2)?,
                        expected_answer: row.get(3)?,
                        answer: row.get(4)?,
                        cosine: row.get(5)?,
                        response_time_s: row.get(6)?,
                        ttft_s: row.get(7)?,
                        retrieval_s: row.get(22)?,
                        prompt_tokens: row.get(8)?,
                        completion_tokens: row.get(9)?,
                        rss_mean_bytes: row.get::<_, Option<i64>>(10)?.map(|v| v as u64),
                        rss_peak_bytes: row.get::<_, Option<i64>>(11)?.map(|v| v as u64),
                        cpu_mean_percent: row.get(12)?,
                        contexts_used: row.get(17)?,
                        chunk_ids: from_json(&row.get::<_, String>(13)?),
                        pages: from_json(&row.get::<_, String>(14)?),
                        status: AnswerStatus::parse(&row.get::<_, String>(15)?),
                        metrics: from_json(&row.get::<_, String>(16)?),
                        error: row.get(18)?,
                        decode_mode: row
                            .get::<_, Option<String>>(19)?
                            .map(|m| DecodeMode::parse(&m)),
                        shared_from: row.get(20)?,
                        judge_missing: row
                            .get::<_, Option<String>>(21)?
                            .map(|j| from_json(&j))
                            .unwrap_or_default(),
                    })
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                out.push(row.map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }

    /// Whether any stored cell generated answers (has a model).
    pub fn has_generating_cells(cells: &[StoredCell]) -> bool {
        cells.iter().any(|c| c.cell.model.is_some())
    }
}

/// One cell as the database holds it: the cell as it ran and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCell {
    /// The cell (from `cells.spec`).
    pub cell: Cell,
    /// True when the database predates stored specs: the cell was rebuilt from its axis columns,
    /// and its fingerprints and generation settings are unknown (empty / defaults).
    pub legacy: bool,
    /// Its status.
    pub status: CellStatus,
    /// Why it failed, for `Failed` cells (the full text: worker stderr tail included).
    pub error: Option<String>,
    /// The index directory its chunk ids refer to.
    pub index_dir: Option<String>,
    /// Chunks in that index.
    pub n_chunks: Option<u64>,
    /// Seconds building (or, on a cache hit, opening) the index took.
    pub index_build_s: Option<f64>,
    /// Whether the index was reused from the cache.
    pub index_cache_hit: Option<bool>,
    /// Seconds the worker took to load the models and index.
    pub model_load_s: Option<f64>,
    /// Threads the worker's LLM ran with.
    pub threads: Option<i32>,
}

/// A cell of a database written before `cells.spec`, rebuilt from the axis columns of row `r`
/// (as selected by [`Store::stored_cells`]).
fn legacy_cell(id: String, r: &rusqlite::Row<'_>) -> rusqlite::Result<Cell> {
    let model: String = r.get(2)?;
    let gguf: Option<String> = r.get(3)?;
    fn parse<T: std::str::FromStr>(s: Option<String>) -> Option<T> {
        s.and_then(|s| s.parse().ok())
    }
    let retrieval = Retrieval {
        chunk_size: r.get::<_, i64>(4)? as usize,
        chunk_overlap: r.get::<_, i64>(5)? as usize,
        retriever: r
            .get::<_, String>(6)?
            .parse()
            .unwrap_or(crate::retrieve::RetrieverKind::Dense),
        ensemble_weight: r.get(7)?,
        top_k: r.get::<_, i64>(8)? as usize,
        fetch_k: r.get::<_, Option<i64>>(9)?.map(|f| f as usize),
        lambda_mult: r.get(10)?,
        bm25: parse(r.get(11)?),
        dense_index: parse(r.get(12)?),
        name: None,
        members: None,
        child_chunk_size: None,
        child_chunk_overlap: None,
    };
    let model = (model != RETRIEVAL_ONLY).then(|| ModelSpec {
        name: model,
        gguf: gguf.unwrap_or_default().into(),
        gguf_sha256: String::new(),
        params: crate::generate::GenParams::default(),
        threads: None,
        prompt_name: None,
        batching: Default::default(),
    });
    Ok(Cell {
        id,
        model,
        retrieval,
        corpus: Vec::new(),
        corpus_fingerprint: String::new(),
        embedding_model: PathBuf::new(),
        embedder_fingerprint: String::new(),
    })
}

/// The SQLite journal mode for a database in `dir`: `WAL` on a local filesystem, `DELETE` on a
/// network or cluster filesystem (NFS, SMB/CIFS, Lustre, GPFS, BeeGFS, CephFS, AFS, 9p, FUSE),
/// where WAL's shared-memory index is not safe (SQLite's documentation, "WAL does not work over
/// a network filesystem"). Decided from `statfs(2)`'s filesystem magic; `WAL` when that fails.
pub fn journal_mode_for(dir: &Path) -> &'static str {
    match filesystem_magic(dir) {
        Some(magic) if is_network_filesystem(magic) => "DELETE",
        _ => "WAL",
    }
}

/// `statfs(2)`'s `f_type` of the filesystem holding `dir` (Linux), `None` elsewhere or on error.
fn filesystem_magic(dir: &Path) -> Option<i64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: `c` is a valid NUL-terminated path and `st` is writable memory of statfs's size.
        let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: statfs returned 0, so it filled `st`.
        #[allow(clippy::unnecessary_cast)]
        Some(unsafe { st.assume_init() }.f_type as i64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// Whether a `statfs` magic number (linux/magic.h and the filesystems' own headers) names a
/// network or cluster filesystem.
fn is_network_filesystem(magic: i64) -> bool {
    const NETWORK: [i64; 11] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x0BD0_0BD0, // Lustre
        0x4750_4653, // GPFS
        0x1983_0326, // BeeGFS
        0x00C3_6400, // CephFS
        0x5346_414F, // AFS
        0x0102_1997, // 9p
        0x6573_5546, // FUSE (sshfs, s3fs, ...)
    ];
    // f_type is a signed word: 0xFF534D42 may come back sign-extended
    NETWORK.contains(&magic) || NETWORK.contains(&(magic & 0xFFFF_FFFF))
}

#[cfg(test)]
impl Store {
    /// Test helper: a cell row `cell_id` (if missing) and an ok answer row for `question_id`.
    pub(crate) fn insert_test_answer(&self, cell_id: &str, question_id: &str) {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO cells (cell_id, model, chunk_size, chunk_overlap, retriever, top_k)
                 VALUES (?1, 'm', 500, 50, 'dense', 4)",
                [cell_id],
            )
            .unwrap();
        self.conn
            .execute(
                "INSERT INTO answers (cell_id, repeat, question_id, run_id, question, expected_answer,
                     answer, status, chunk_ids, pages, scores, finished_at)
                 VALUES (?1, 0, ?2, 1, ?3, 'x', 'y', 'ok', '[]', '[]', '[]', '')",
                [cell_id, question_id, &format!("question {question_id}?")],
            )
            .unwrap();
    }

    /// Test helper: whether a write is refused (a read-only connection).
    pub(crate) fn insert_answer_would_fail(&self) -> bool {
        self.conn
            .execute("UPDATE answers SET answer = 'changed'", [])
            .is_err()
    }

    /// Test helper: a cell row `cell_id` with placeholder axes.
    pub(crate) fn insert_test_cell(&self, cell_id: &str) {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO cells (cell_id, model, chunk_size, chunk_overlap, retriever, top_k)
                 VALUES (?1, 'm', 500, 50, 'dense', 4)",
                [cell_id],
            )
            .unwrap();
    }

    /// Test helper: every answer row as (cell, question, repeat, status, answer), sorted.
    pub(crate) fn test_rows(&self) -> Vec<(String, String, u32, String, String)> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT cell_id, question_id, repeat, status, answer FROM answers
                 ORDER BY cell_id, question_id, repeat",
            )
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Test helper: the stored metrics of one answer.
    pub(crate) fn test_metrics(&self, cell_id: &str, question_id: &str) -> BTreeMap<String, f64> {
        let m: String = self
            .conn
            .query_row(
                "SELECT metrics FROM answers WHERE cell_id = ?1 AND question_id = ?2",
                [cell_id, question_id],
                |r| r.get(0),
            )
            .unwrap();
        from_json(&m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qa::Question;

    #[test]
    fn network_filesystems_get_a_rollback_journal_instead_of_wal() {
        assert!(is_network_filesystem(0x6969), "NFS");
        assert!(is_network_filesystem(0x0BD0_0BD0), "Lustre");
        // CIFS's magic sign-extended, as a 32-bit f_type may come back
        assert!(is_network_filesystem(0xFF53_4D42_u32 as i32 as i64));
        assert!(!is_network_filesystem(0xEF53), "ext4");
        assert!(!is_network_filesystem(0x0102_1994), "tmpfs");
        // the test's temporary directory is local: WAL, and the database really is in WAL mode
        let d = tempfile::tempdir().unwrap();
        assert_eq!(journal_mode_for(d.path()), "WAL");
        let s = Store::open(&d.path().join("x.sqlite")).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    fn q(id: &str, text: &str) -> Question {
        Question {
            id: id.into(),
            question: text.into(),
            expected_answer: "A.".into(),
            short_answer: None,
            page: None,
            evidence: None,
            difficulty: None,
            source: None,
            qrels: Default::default(),
        }
    }

    fn answer(id: &str, text: &str, status: &str) -> NewAnswer {
        NewAnswer {
            status: AnswerStatus::parse(status),
            answer: format!("{status} answer"),
            ..NewAnswer::empty(id, 0, text, "A.")
        }
    }

    fn sample(t: f64) -> Sample {
        Sample {
            t_s: t,
            rss_bytes: 1 << 20,
            cpu_percent: 50.0,
        }
    }

    fn store_with_cell(d: &tempfile::TempDir) -> Store {
        let s = Store::open(&d.path().join("x.sqlite")).unwrap();
        s.conn
            .execute(
                "INSERT INTO cells (cell_id, model, chunk_size, chunk_overlap, retriever, top_k)
                 VALUES ('c', 'm', 100, 20, 'dense', 4)",
                [],
            )
            .unwrap();
        s
    }

    fn count(s: &Store, sql: &str) -> i64 {
        s.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_database_reads_as_an_immutable_file_where_nothing_may_be_written() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("odd #1 ?dir");
        let path = dir.join("x.sqlite");
        {
            let s = Store::open(&path).unwrap();
            s.insert_test_answer("c", "q1");
            s.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let before: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        let s = Store::open_immutable(&path).unwrap();
        let answers = s.answers(&s.stored_cells().unwrap()).unwrap();
        assert_eq!(answers.len(), 1);
        assert!(s.insert_answer_would_fail());
        drop(s);
        let after: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(before.len(), after.len(), "no -wal or -shm file made");
    }

    #[test]
    fn a_damaged_database_is_found_before_a_sweep_writes_to_it() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.sqlite");
        {
            let s = Store::open(&path).unwrap();
            for q in 0..400 {
                s.insert_test_answer("c", &format!("question-{q:04}"));
            }
            s.check_integrity().unwrap();
            s.conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        // garbage over the header of a page in the middle of the file (the answers and their
        // indexes): no valid b-tree page type
        let mut bytes = std::fs::read(&path).unwrap();
        let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
        let mid = bytes.len() / page / 2 * page;
        bytes[mid..mid + 64].fill(0xA5);
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path)
            .and_then(|s| s.check_integrity())
            .unwrap_err();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("is damaged") && text.contains(".recover"),
            "{text}"
        );
    }

    #[test]
    fn answers_say_which_judge_metrics_have_no_value_and_why() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("x.sqlite")).unwrap();
        s.insert_test_answer("c", "q1");
        let texts = JudgedTexts {
            question: "question q1?",
            expected_answer: "x",
            answer: "y",
        };
        for (metric, status, value, detail) in [
            ("correctness", JudgmentStatus::Ok, Some(1.0), None),
            (
                "faithfulness",
                JudgmentStatus::Undefined,
                None,
                Some("no statements"),
            ),
            (
                "context_recall",
                JudgmentStatus::Error,
                None,
                Some("judge output cut at max_tokens 8"),
            ),
        ] {
            let j = JudgmentRecord {
                cell_id: "c".into(),
                repeat: 0,
                question_id: "q1".into(),
                metric: metric.into(),
                status,
                value,
                detail: detail.map(String::from),
                judge: "j".into(),
                prompt_version: 2,
            };
            assert!(s.put_judgment(&j, &texts).unwrap());
        }
        s.conn
            .execute("UPDATE answers SET retrieval_s = 0.125", [])
            .unwrap();
        let a = s.answers(&s.stored_cells().unwrap()).unwrap();
        assert_eq!(a[0].retrieval_s, Some(0.125), "read with the answer");
        assert_eq!(a[0].metrics.get("correctness"), Some(&1.0));
        assert_eq!(
            a[0].judge_missing,
            [
                (
                    "context_recall".to_string(),
                    "error: judge output cut at max_tokens 8".to_string()
                ),
                (
                    "faithfulness".to_string(),
                    "undefined: no statements".to_string()
                ),
            ]
            .into()
        );
    }

    #[test]
    fn a_rescore_keeps_the_judge_metrics() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("x.sqlite")).unwrap();
        s.insert_test_answer("c", "q1");
        let m = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        s.set_answer_metrics("c", 0, "q1", &m(&[("f1", 0.5), ("correctness", 1.0)]))
            .unwrap();
        // a rescore's metrics have no judge metrics: the stored correctness stays
        assert!(s
            .set_answer_metrics("c", 0, "q1", &m(&[("f1", 0.7)]))
            .unwrap());
        assert_eq!(
            s.test_metrics("c", "q1"),
            m(&[("correctness", 1.0), ("f1", 0.7)])
        );
        assert!(!s.set_answer_metrics("c", 0, "nope", &m(&[])).unwrap());
        // an edited reference drops the judgments made against the old one
        let judgment = JudgmentRecord {
            cell_id: "c".into(),
            repeat: 0,
            question_id: "q1".into(),
            metric: "correctness".into(),
            status: JudgmentStatus::Ok,
            value: Some(1.0),
            detail: None,
            judge: "j".into(),
            prompt_version: 1,
        };
        let old = JudgedTexts {
            question: "question q1?",
            expected_answer: "x",
            answer: "y",
        };
        assert!(s.put_judgment(&judgment, &old).unwrap());
        assert_eq!(s.judgments().unwrap().len(), 1);
        // an edit of the evidence alone (same expected answer) keeps judgment and value
        assert!(s
            .set_reference("c", "q1", 0, "x", Some("d2"), Some(0.5), &m(&[("f1", 0.3)]))
            .unwrap());
        assert_eq!(s.judgments().unwrap().len(), 1);
        assert_eq!(
            s.test_metrics("c", "q1"),
            m(&[("correctness", 1.0), ("f1", 0.3)])
        );
        assert!(s
            .set_reference("c", "q1", 0, "New.", None, Some(0.5), &m(&[("f1", 0.1)]))
            .unwrap());
        assert!(s.judgments().unwrap().is_empty());
        assert_eq!(s.test_metrics("c", "q1"), m(&[("f1", 0.1)]));
        // and a judgment made against the old reference meanwhile is not stored
        assert!(!s.put_judgment(&judgment, &old).unwrap());
        assert!(s.judgments().unwrap().is_empty());
        assert_eq!(s.test_metrics("c", "q1"), m(&[("f1", 0.1)]));
        let new = JudgedTexts {
            expected_answer: "New.",
            ..old
        };
        assert!(s.put_judgment(&judgment, &new).unwrap());
        assert!(!s
            .put_judgment(
                &judgment,
                &JudgedTexts {
                    answer: "another answer",
                    ..new
                }
            )
            .unwrap());
    }

    #[test]
    fn a_cache_hit_on_resume_keeps_the_recorded_build() {
        let d = tempfile::tempdir().unwrap();
        let s = store_with_cell(&d);
        let build = |s: &Store| -> (f64, i64) {
            s.conn
                .query_row(
                    "SELECT index_build_s, index_cache_hit FROM cells WHERE cell_id = 'c'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap()
        };
        let dir = Path::new("store/indexes/abc");
        s.set_cell_index("c", dir, 0.0, true, 10).unwrap();
        assert_eq!(build(&s), (0.0, 1));
        s.set_cell_index("c", dir, 61.5, false, 10).unwrap();
        assert_eq!(build(&s), (61.5, 0));
        s.set_cell_index("c", dir, 0.0, true, 10).unwrap();
        assert_eq!(build(&s), (61.5, 0), "a resume must not erase the build");
        // a different index (e.g. a new embedding model) replaces the record
        s.set_cell_index("c", Path::new("store/indexes/def"), 0.0, true, 12)
            .unwrap();
        assert_eq!(build(&s), (0.0, 1));
    }

    #[test]
    fn index_builds_list_each_index_once_with_its_time_or_as_cached() {
        let d = tempfile::tempdir().unwrap();
        let s = store_with_cell(&d);
        for (id, size, overlap) in [("c2", 100, 20), ("c3", 500, 100)] {
            s.conn
                .execute(
                    "INSERT INTO cells (cell_id, model, chunk_size, chunk_overlap, retriever, top_k)
                     VALUES (?1, 'm2', ?2, ?3, 'dense', 4)",
                    rusqlite::params![id, size, overlap],
                )
                .unwrap();
        }
        // c builds 100/20, c2 reuses that index in the same run, c3 finds 500/100 cached
        s.set_cell_index("c", Path::new("store/indexes/a"), 61.5, false, 900)
            .unwrap();
        s.set_cell_index("c2", Path::new("store/indexes/a"), 0.0, true, 900)
            .unwrap();
        s.set_cell_index("c3", Path::new("store/indexes/b"), 0.0, true, 180)
            .unwrap();
        let mut cells = s.stored_cells().unwrap();
        cells.sort_by(|a, b| a.cell.id.cmp(&b.cell.id));
        assert_eq!(
            Store::index_builds(&cells),
            vec![
                ("chunk 100/20 (900 chunks)".to_string(), Some(61.5)),
                ("chunk 500/100 (180 chunks)".to_string(), None),
            ]
        );
        // listed once even when the cell that built it comes after one that reused it
        cells.reverse();
        let builds = Store::index_builds(&cells);
        assert_eq!(builds.len(), 2);
        assert!(builds.contains(&("chunk 100/20 (900 chunks)".to_string(), Some(61.5))));
    }

    #[test]
    fn a_failure_never_overwrites_an_ok_answer_but_an_ok_replaces_a_failure() {
        let d = tempfile::tempdir().unwrap();
        let mut s = store_with_cell(&d);
        s.insert_answer(1, "c", &answer("q1", "Q?", "failed"), None, &[sample(0.1)])
            .unwrap();
        s.insert_answer(
            1,
            "c",
            &answer("q1", "Q?", "ok"),
            None,
            &[sample(0.2), sample(0.4)],
        )
        .unwrap();
        s.insert_answer(1, "c", &answer("q1", "Q?", "failed"), None, &[sample(0.9)])
            .unwrap();
        assert_eq!(count(&s, "SELECT COUNT(*) FROM answers"), 1);
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM answers WHERE status = 'ok'"),
            1
        );
        // the samples are those of the stored (ok) attempt only
        assert_eq!(count(&s, "SELECT COUNT(*) FROM samples"), 2);
        assert_eq!(s.answer_counts("c").unwrap(), (1, 0));
    }

    #[test]
    fn done_keys_ignore_rows_whose_question_changed() {
        let d = tempfile::tempdir().unwrap();
        let mut s = store_with_cell(&d);
        s.insert_answer(1, "c", &answer("q1", "Old?", "ok"), None, &[])
            .unwrap();
        s.insert_answer(1, "c", &answer("q2", "Same?", "ok"), None, &[])
            .unwrap();
        s.insert_answer(1, "c", &answer("q3", "Failed?", "failed"), None, &[])
            .unwrap();
        s.insert_answer(1, "c", &answer("q4", "Ref?", "ok"), None, &[])
            .unwrap();
        let mut edited = q("q4", "Ref?");
        edited.expected_answer = "A new reference.".into();
        let now = [
            q("q1", "New?"),
            q("q2", "Same?"),
            q("q3", "Failed?"),
            edited,
        ];
        let done = s.done_keys("c", &now).unwrap();
        // an edited question is asked again; an edited reference answer only needs re-scoring
        assert_eq!(
            done,
            HashSet::from([("q2".to_string(), 0), ("q4".to_string(), 0)])
        );
        assert_eq!(
            s.stale_references("c", &now).unwrap(),
            vec![("q4".to_string(), 0)]
        );
        let m = BTreeMap::from([("f1".to_string(), 0.5)]);
        assert!(s
            .set_reference("c", "q4", 0, "A new reference.", None, Some(0.9), &m)
            .unwrap());
        assert!(s.stale_references("c", &now).unwrap().is_empty());
    }

    #[test]
    fn a_database_written_by_release_0_1_0_upgrades_in_place() {
        // made by tests/fixtures/store/make_fixture.sh with orchestrate 0.1.0 (commit 5edee69):
        // smollm2 × {bm25, mmr λ=0.25 fetch_k=3} at chunk 60, then the same grid retrieval-only
        let sql = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/store/v0.1.0.sql"
        ))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("legacy.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        let s = Store::open(&path).unwrap();
        let cells = s.stored_cells().unwrap();
        assert_eq!(cells.len(), 4);
        assert!(cells
            .iter()
            .all(|c| c.legacy && c.status == CellStatus::Done));
        let models: Vec<&str> = cells.iter().map(|c| c.cell.model_name()).collect();
        assert_eq!(models.iter().filter(|m| **m == "smollm2").count(), 2);
        assert_eq!(models.iter().filter(|m| **m == RETRIEVAL_ONLY).count(), 2);
        let mmr = cells
            .iter()
            .find(|c| c.cell.retrieval.lambda_mult.is_some())
            .unwrap();
        assert_eq!(mmr.cell.retrieval.lambda_mult, Some(0.25));
        assert_eq!(mmr.cell.retrieval.fetch_k, Some(3));
        assert!(cells.iter().all(|c| c.index_dir.is_some()));
        let answers = s.answers(&cells).unwrap();
        assert_eq!(answers.len(), 4 * 2);
        assert!(answers.iter().all(|a| a.status == AnswerStatus::Ok));
        assert!(answers
            .iter()
            .filter(|a| a.cell.model == "smollm2")
            .all(|a| a.cosine.is_some() && !a.answer.is_empty()));
        assert!(answers.iter().any(|a| a.metrics.contains_key("hit@4")));
        // the upgrade is idempotent, and new cells live next to the old ones
        drop(s);
        let s = Store::open(&path).unwrap();
        let mut new = cells[0].cell.clone();
        new.corpus_fingerprint = "new".into();
        new.id = new.compute_id();
        s.register_cells(std::slice::from_ref(&new), 1).unwrap();
        let again = s.stored_cells().unwrap();
        assert_eq!(again.len(), 5);
        assert!(!again[4].legacy && again[4].cell == new);
        assert_eq!(s.answers(&again[..4]).unwrap(), answers);
    }

    #[test]
    fn interrupted_runs_are_marked() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("x.sqlite")).unwrap();
        s.conn
            .execute(
                "INSERT INTO runs (experiment, experiment_file, experiment_sha256, experiment_text, started_at, status,
                   orchestrate_version) VALUES ('e', 'e.toml', '', '', '', 'running', '0')",
                [],
            )
            .unwrap();
        s.mark_interrupted().unwrap();
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM runs WHERE status = 'interrupted'"),
            1
        );
    }
}
