//! Experiment files: parsing the TOML, validating it, and expanding its `[grid]` into cells.
//!
//! An experiment names a corpus, a QA set, the models to ask and a grid of retrieval settings. Every
//! combination of grid values with every model is one [`Cell`]; axes that do not apply to a
//! retriever collapse (`ensemble_weight` only for `ensemble`, `fetch_k`/`lambda_mult` only for
//! `mmr`, `bm25` only for `bm25`/`ensemble`, `dense_index` only for `dense`/`mmr`/`ensemble`), so
//! the grid never runs the same work twice. Each cell is self-contained ([`crate::cell`]) and has
//! a stable id, a hash of everything that can change its answers by content (GGUF sha256, corpus
//! and embedding-model fingerprints, every setting), so adding values to the grid keeps the ids
//! of the cells that already ran, and editing a file's bytes makes exactly the affected cells new.
//!
//! Paths inside an experiment file are relative to the file's own directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::cell::Batching;
pub use crate::cell::{Cell, ModelSpec, Retrieval};
use crate::generate::{GenParams, PromptStyle};
use crate::judge::run::JudgeSettings;
use crate::qa::{QaError, QaFormat, Question};
use crate::race::RaceSettings;
use crate::retrieve::{Bm25Variant, DenseIndexKind, RetrieverKind};
use crate::sampling::{SamplerPreset, SeedMode};

/// Largest `parallel` a model may set: llama.cpp's sequence limit is far above it, but each
/// sequence holds `n_ctx` tokens of KV cache, and on CPU aggregate decoding speed stops growing
/// after a few sequences (README "Batched generation").
pub const MAX_PARALLEL: u32 = 64;

/// Errors from reading or validating an experiment file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The file could not be read.
    #[error("cannot read experiment file {path}: {source}")]
    Io {
        /// The experiment file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A results database was given where the experiment file is needed.
    #[error(
        "{path} is a results database, not an experiment file: this command needs the experiment \
         file (TOML); `report`, `export`, `compare`, `summary` and `diff` also read a results \
         database directly",
        path = path.display()
    )]
    ResultsDatabase {
        /// The database given.
        path: PathBuf,
    },
    /// TOML syntax error, unknown key or wrong type; `message` carries toml's line, column and
    /// snippet.
    #[error("{path}: {message}")]
    Parse {
        /// The experiment file.
        path: PathBuf,
        /// toml's description, with line and column.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("{path}:{line}:{column}: field `{field}`: {message}")]
    Invalid {
        /// The experiment file.
        path: PathBuf,
        /// 1-based line of the offending value (1 when unknown).
        line: usize,
        /// 1-based column of the offending value (1 when unknown).
        column: usize,
        /// Dotted field path, e.g. `grid.chunk_size` or `model[1].gguf`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// How a chunk overlap is given: characters, or a fraction of the chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Overlap {
    /// Characters, e.g. `50`.
    Chars(u64),
    /// Fraction of `chunk_size` in [0, 1), e.g. `0.2` (rounded to the nearest character).
    Fraction(f64),
}

impl Overlap {
    /// Overlap in characters for a chunk of `chunk_size` characters.
    pub fn resolve(self, chunk_size: usize) -> usize {
        match self {
            Overlap::Chars(c) => c as usize,
            Overlap::Fraction(f) => (f * chunk_size as f64).round() as usize,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    corpus: Spanned<OneOrMany>,
    qa: Spanned<String>,
    #[serde(default)]
    qa_format: Option<QaFormat>,
    #[serde(default = "default_embedding_model")]
    embedding_model: Spanned<String>,
    #[serde(default = "default_true")]
    generate: bool,
    #[serde(default = "default_repeats")]
    repeats: Spanned<u32>,
    #[serde(default = "default_timeout")]
    question_timeout_s: Spanned<f64>,
    #[serde(default)]
    limit_questions: Option<Spanned<u32>>,
    #[serde(default, rename = "model")]
    models: Vec<RawModel>,
    #[serde(default, rename = "retriever")]
    retrievers: BTreeMap<String, Spanned<RawRetriever>>,
    #[serde(default, rename = "prompt")]
    prompts: BTreeMap<String, Spanned<String>>,
    grid: RawGrid,
    #[serde(default)]
    search: Option<Spanned<String>>,
    #[serde(default)]
    race: Option<Spanned<RawRace>>,
    #[serde(default)]
    judge: Option<Spanned<toml::Value>>,
    #[serde(default)]
    executor: Option<Spanned<RawExecutor>>,
}

/// The `[executor]` table: see [`crate::slurm::SlurmSettings`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExecutor {
    kind: Option<String>,
    partition: Option<String>,
    account: Option<String>,
    time_limit: Option<toml::Value>,
    cpus_per_task: Option<u32>,
    mem: Option<String>,
    gres: Option<String>,
    max_parallel: Option<u32>,
    sbatch_options: Option<Vec<String>>,
    run_dir: Option<String>,
    poll_interval_s: Option<f64>,
    warning_s: Option<u32>,
    max_waves: Option<u32>,
    #[serde(default)]
    model: BTreeMap<String, RawResources>,
}

/// `[executor.model.<name>]`: one model's task resources.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    cpus_per_task: Option<u32>,
    mem: Option<String>,
    gres: Option<String>,
    time_limit: Option<toml::Value>,
}

/// The `[judge]` table (or `judge = true`): see [`crate::judge::run::JudgeSettings`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    gguf: Option<String>,
    threads: Option<i32>,
    n_ctx: Option<u32>,
    max_tokens: Option<u32>,
    profiles: Option<Vec<String>>,
    metrics: Option<Vec<String>>,
    penalize_ambiguous_claims: Option<bool>,
    after_run: Option<bool>,
}

/// The `[race]` table: settings of `search = "race"` (see [`crate::race`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRace {
    metric: Option<String>,
    alpha: Option<f64>,
    shards: Option<usize>,
    seed: Option<u64>,
}

/// A `[retriever.NAME]` definition: a retriever with its own settings. Unset settings are
/// swept by the grid's axes of the same name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetriever {
    kind: Spanned<String>,
    top_k: Option<u64>,
    fetch_k: Option<u64>,
    lambda_mult: Option<f64>,
    ensemble_weight: Option<f64>,
    bm25: Option<String>,
    dense_index: Option<String>,
    members: Option<Vec<String>>,
    weights: Option<Vec<f64>>,
    child_chunk_size: Option<u64>,
    child_chunk_overlap: Option<Overlap>,
}

/// One prompt variant of a model: its `[prompt]` name (if any) and the prompt (`None`: the
/// default).
type PromptVariant = (Option<String>, Option<PromptStyle>);

/// The grid's axis values, validated: they fill every setting a retriever (built-in or defined)
/// leaves unset.
struct Axes {
    top_k: Vec<usize>,
    fetch_k: Vec<usize>,
    lambda_mult: Vec<f64>,
    ensemble_weight: Vec<f64>,
    bm25: Vec<Bm25Variant>,
    dense_index: Vec<DenseIndexKind>,
}

/// Settings a definition fixes (`None`: the grid's axis sweeps it).
#[derive(Default, Clone)]
struct Fixed {
    top_k: Option<usize>,
    fetch_k: Option<usize>,
    lambda_mult: Option<f64>,
    ensemble_weight: Option<f64>,
    bm25: Option<Bm25Variant>,
    dense_index: Option<DenseIndexKind>,
}

/// Values of a fixed setting, or the axis's values.
fn fixed_or<T: Clone>(fixed: Option<T>, axis: &[T]) -> Vec<T> {
    match fixed {
        Some(v) => vec![v],
        None => axis.to_vec(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    gguf: Spanned<String>,
    #[serde(default)]
    prompt: Option<Spanned<OneOrMany>>,
    n_ctx: Option<u32>,
    sampler: Option<Spanned<String>>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    typical_p: Option<f32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    #[serde(alias = "last_n_tokens_size")]
    repeat_last_n: Option<i32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    seed: Option<i64>,
    seed_mode: Option<Spanned<String>>,
    max_tokens: Option<u32>,
    stop: Option<Vec<String>>,
    threads: Option<i32>,
    n_batch: Option<u32>,
    rope_freq_base: Option<f32>,
    rope_freq_scale: Option<f32>,
    parallel: Option<u32>,
    latency_questions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    chunk_size: Spanned<Vec<u64>>,
    #[serde(default = "default_overlap")]
    chunk_overlap: Spanned<Vec<Overlap>>,
    retriever: Spanned<Vec<String>>,
    #[serde(default = "default_weights")]
    ensemble_weight: Spanned<Vec<f64>>,
    #[serde(default = "default_top_k")]
    top_k: Spanned<Vec<u64>>,
    #[serde(default = "default_fetch_k")]
    fetch_k: Spanned<Vec<u64>>,
    #[serde(default = "default_lambda")]
    lambda_mult: Spanned<Vec<f64>>,
    #[serde(default)]
    bm25: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    dense_index: Option<Spanned<OneOrMany>>,
}

fn spanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}
fn default_embedding_model() -> Spanned<String> {
    spanned("../models/all-MiniLM-L6-v2".to_string())
}
fn default_true() -> bool {
    true
}
fn default_repeats() -> Spanned<u32> {
    spanned(1)
}
fn default_timeout() -> Spanned<f64> {
    spanned(600.0)
}
fn default_overlap() -> Spanned<Vec<Overlap>> {
    spanned(vec![Overlap::Fraction(0.2)])
}
fn default_weights() -> Spanned<Vec<f64>> {
    spanned(vec![0.5])
}
fn default_top_k() -> Spanned<Vec<u64>> {
    spanned(vec![4])
}
fn default_fetch_k() -> Spanned<Vec<u64>> {
    spanned(vec![20])
}
fn default_lambda() -> Spanned<Vec<f64>> {
    spanned(vec![0.5])
}

/// A parsed, validated experiment. Paths are resolved against the experiment file's directory.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Experiment name: names the result database (`store/<name>.sqlite`) and report.
    pub name: String,
    /// Free text shown in the report.
    pub description: String,
    /// The experiment file as given on the command line.
    pub path: PathBuf,
    /// The file's text, stored with each run.
    pub text: String,
    /// Hex sha256 of `text`.
    pub sha256: String,
    /// Corpus files (PDF, .txt, .md, or a BEIR corpus.jsonl), in order.
    pub corpus: Vec<PathBuf>,
    /// QA file (TOML schema, plain alternating lines, the seed notebooks' prefixed lines, or BEIR
    /// qrels `.tsv`).
    pub qa: PathBuf,
    /// `qa_format`: how to read `qa`; `None` chooses by extension (see [`QaFormat`]).
    pub qa_format: Option<QaFormat>,
    /// Directory of the sentence-transformers embedding model (config.json, tokenizer.json,
    /// model.safetensors).
    pub embedding_model: PathBuf,
    /// [`crate::corpus::corpus_fingerprint`] of `corpus`: part of every cell id.
    pub corpus_fingerprint: String,
    /// [`crate::embed::fingerprint_dir`] of `embedding_model`: part of every cell id.
    pub embedder_fingerprint: String,
    /// Whether to run the LLMs; `false` runs retrieval only.
    pub generate: bool,
    /// How many times each question is asked per cell.
    pub repeats: u32,
    /// A worker that reports no progress for this many seconds is killed and its cell failed.
    pub question_timeout_s: f64,
    /// Ask only the first N questions of the QA set (quick runs); `None` asks all.
    pub limit_questions: Option<u32>,
    /// Models, in file order.
    pub models: Vec<ModelSpec>,
    /// The grid cells (models × retrieval settings), in a stable order.
    pub cells: Vec<Cell>,
    /// How the sweep visits the grid: every cell on every question, or a race.
    /// `orchestrate run --race` sets [`Search::Race`].
    pub search: Search,
    /// The `[race]` settings (defaults from [`RaceSettings::new`]), used when racing.
    pub race: RaceSettings,
    /// The `[judge]` settings (defaults from [`JudgeSettings::defaults`]); `judge = true` or
    /// `after_run = true` judges the answers at the end of `run`.
    pub judge: JudgeSettings,
    /// Where the cells run (`[executor] kind`; `orchestrate run --executor` overrides it).
    pub executor: crate::slurm::ExecutorKind,
    /// The `[executor]` settings used when `executor` is Slurm (defaults from
    /// [`crate::slurm::SlurmSettings::default`]).
    pub slurm: crate::slurm::SlurmSettings,
}

/// `search` of an experiment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Search {
    /// `"grid"` (default): every cell answers every question.
    #[default]
    Grid,
    /// `"race"`: questions in shards; cells significantly worse than the leader stop early
    /// ([`crate::race`]).
    Race,
}

impl Experiment {
    /// The race settings when this experiment races, else `None`.
    pub fn racing(&self) -> Option<&RaceSettings> {
        (self.search == Search::Race).then_some(&self.race)
    }
}

/// The race metric when `[race]` names none: cosine for generated answers, else nDCG@4.
fn default_race_metric(generate: bool) -> &'static str {
    if generate {
        "cosine"
    } else {
        "ndcg@4"
    }
}

/// 1-based (line, column) of byte offset `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Experiment {
    /// Reads, parses and validates `path`, and expands the grid.
    ///
    /// Errors: [`ExperimentError::Io`] if unreadable, [`ExperimentError::Parse`] for TOML syntax,
    /// unknown keys or wrong types (with line and column), [`ExperimentError::Invalid`] for values
    /// out of range, missing files, duplicate model names or unknown retrievers.
    pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
        Self::load_with(path, false)
    }

    /// Like [`Experiment::load`]; `retrieval_only` forces `generate = false` (no models, one
    /// retrieval-only cell per retrieval setting).
    pub fn load_with(path: &Path, retrieval_only: bool) -> Result<Experiment, ExperimentError> {
        let text = read_text(path)?;
        Self::parse_with(path, &text, retrieval_only)
    }

    /// Parses `text` as if read from `path` (used for relative paths and error messages).
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, ExperimentError> {
        Self::parse_with(path, text, false)
    }

    fn parse_with(
        path: &Path,
        text: &str,
        retrieval_only: bool,
    ) -> Result<Experiment, ExperimentError> {
        let mut raw: RawExperiment = toml::from_str(text).map_err(|e| ExperimentError::Parse {
            path: path.to_path_buf(),
            message: with_parse_hint(text, e.to_string().trim_end()),
        })?;
        if retrieval_only {
            raw.generate = false;
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let v = Validator {
            path,
            text,
            base: &base,
        };
        v.build(raw)
    }

    /// The cell with id `id`, if any.
    pub fn cell(&self, id: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.id == id)
    }

    /// A cell of this experiment's corpus and embedding model with model number `model` (an index
    /// into [`Experiment::models`]; `None` for retrieval only) and `retrieval`, whether or not the
    /// grid has it (`orchestrate ask` answers with such a cell).
    pub fn cell_for(&self, model: Option<usize>, retrieval: Retrieval) -> Cell {
        let mut cell = Cell {
            id: String::new(),
            model: model.and_then(|m| self.models.get(m)).cloned(),
            retrieval,
            corpus: self.corpus.clone(),
            corpus_fingerprint: self.corpus_fingerprint.clone(),
            embedding_model: self.embedding_model.clone(),
            embedder_fingerprint: self.embedder_fingerprint.clone(),
        };
        cell.id = cell.compute_id();
        cell
    }

    /// The retrieval settings of the experiment's `[retriever.NAME]` definition `name` at the
    /// given chunking: those of its first cell in grid order (the first combination when the
    /// grid sweeps some of its settings). `None` when no cell uses that definition.
    pub fn defined_retrieval(
        &self,
        name: &str,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> Option<Retrieval> {
        self.cells
            .iter()
            .map(|c| &c.retrieval)
            .find(|r| r.name.as_deref() == Some(name))
            .map(|r| {
                let mut r = r.clone();
                r.set_chunking(chunk_size, chunk_overlap);
                r
            })
    }

    /// The questions of the experiment's QA file in file order, cut to `limit_questions`.
    /// Errors: [`QaError`] for an unreadable or invalid QA file.
    pub fn questions(&self) -> Result<Vec<Question>, QaError> {
        let mut qs = crate::qa::load_questions_as(&self.qa, self.qa_format)?;
        if let Some(l) = self.limit_questions {
            qs.truncate(l as usize);
        }
        Ok(qs)
    }
}

/// The QA file of the experiment file at `path` (resolved against its directory), its
/// `limit_questions` and its `qa_format`, read without touching the corpus or models (`rescore`
/// needs only these).
///
/// Errors: [`ExperimentError::Io`], [`ExperimentError::Parse`], [`ExperimentError::Invalid`] when
/// `qa` is missing or names no file.
pub fn read_qa(path: &Path) -> Result<(PathBuf, Option<u32>, Option<QaFormat>), ExperimentError> {
    let text = read_text(path)?;
    #[derive(Deserialize)]
    struct QaOnly {
        qa: Option<Spanned<String>>,
        limit_questions: Option<u32>,
        qa_format: Option<QaFormat>,
    }
    let raw: QaOnly = toml::from_str(&text).map_err(|e| ExperimentError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let v = Validator {
        path,
        text: &text,
        base: &base,
    };
    match raw.qa {
        Some(qa) => Ok((
            v.existing(
                &qa,
                "qa",
                "point it at the QA file the answers were scored against",
            )?,
            raw.limit_questions,
            raw.qa_format,
        )),
        None => v.err(0..0, "qa", "add `qa = \"...\"`".into()),
    }
}

/// The `name` of the experiment file at `path`, read without validating anything else (for the
/// commands that read only its result database: the corpus, QA file and models may be gone).
///
/// Errors: [`ExperimentError::Io`], [`ExperimentError::Parse`] for invalid TOML, and
/// [`ExperimentError::Invalid`] when `name` is missing or not a plain file name.
pub fn read_name(path: &Path) -> Result<String, ExperimentError> {
    read_name_text(path).map(|(name, _)| name)
}

/// toml's parse `message` for `text`, plus what fixes it where the mistake is a known one:
/// `judge = true` next to a `[judge]` table (toml reports a duplicate key) needs `after_run`.
fn with_parse_hint(text: &str, message: &str) -> String {
    let line_is = |want: fn(&str) -> bool| text.lines().any(|l| want(l.trim()));
    let judge_key = line_is(|l| {
        l.strip_prefix("judge")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    let judge_table = line_is(|l| l.replace(' ', "").starts_with("[judge]"));
    if message.contains("duplicate key") && judge_key && judge_table {
        format!(
            "{message}\n`judge = true` and a [judge] table cannot both be given: remove the \
             `judge = ...` line and put `after_run = true` in [judge]"
        )
    } else {
        message.to_string()
    }
}

/// The name, the `[judge]` settings and the embedding-model directory of the experiment file at
/// `path`, read without validating anything else (for `orchestrate judge`, which reads the
/// answers from the result database). Paths are resolved against the file's directory.
///
/// Errors: as [`read_name`], and [`ExperimentError::Invalid`] for an invalid `[judge]` table.
pub fn read_judge(path: &Path) -> Result<(String, JudgeSettings, PathBuf), ExperimentError> {
    let (name, text) = read_name_text(path)?;
    #[derive(Deserialize)]
    struct JudgeOnly {
        judge: Option<Spanned<toml::Value>>,
        embedding_model: Option<String>,
    }
    let raw: JudgeOnly = toml::from_str(&text).map_err(|e| ExperimentError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let v = Validator {
        path,
        text: &text,
        base,
    };
    let judge = v.judge(raw.judge.as_ref())?;
    let embedding = v.resolve(
        raw.embedding_model
            .as_deref()
            .unwrap_or(default_embedding_model().get_ref()),
    );
    Ok((name, judge, embedding))
}

/// The text of the experiment file at `path`.
///
/// Errors: [`ExperimentError::ResultsDatabase`] when `path` is a SQLite database (a results
/// database given where an experiment file is needed); [`ExperimentError::Io`] otherwise.
fn read_text(path: &Path) -> Result<String, ExperimentError> {
    let io = |source| ExperimentError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    if bytes.starts_with(crate::store::SQLITE_MAGIC) {
        return Err(ExperimentError::ResultsDatabase {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

fn read_name_text(path: &Path) -> Result<(String, String), ExperimentError> {
    let text = read_text(path)?;
    #[derive(Deserialize)]
    struct NameOnly {
        name: Option<Spanned<String>>,
    }
    let raw: NameOnly = toml::from_str(&text).map_err(|e| ExperimentError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let v = Validator {
        path,
        text: &text,
        base: Path::new("."),
    };
    let name = match raw.name {
        Some(n) => v.name(&n)?,
        None => v.err(
            0..0,
            "name",
            "add `name = \"...\"` (it names store/<name>.sqlite)".into(),
        )?,
    };
    Ok((name, text))
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: &str,
        message: String,
    ) -> Result<T, ExperimentError> {
        let (line, column) = if span.is_empty() && span.start == 0 {
            (1, 1)
        } else {
            line_col(self.text, span.start)
        };
        Err(ExperimentError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message,
        })
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn existing(
        &self,
        s: &Spanned<String>,
        field: &str,
        hint: &str,
    ) -> Result<PathBuf, ExperimentError> {
        let p = self.resolve(s.get_ref());
        if !p.exists() {
            return self.err(
                s.span(),
                field,
                format!(
                    "{} does not exist (paths are relative to the experiment file); {hint}",
                    p.display()
                ),
            );
        }
        Ok(p)
    }

    /// A valid experiment name: a plain file name of letters, digits, '-', '_' and '.', not
    /// starting with '.'.
    fn name(&self, raw: &Spanned<String>) -> Result<String, ExperimentError> {
        let name = raw.get_ref().trim().to_string();
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return self.err(
                raw.span(),
                "name",
                format!(
                    "`{name}` is not a plain file name: use letters, digits, '-', '_' or '.', not \
                     starting with '.' (it names store/<name>.sqlite)"
                ),
            );
        }
        Ok(name)
    }

    fn build(&self, raw: RawExperiment) -> Result<Experiment, ExperimentError> {
        let name = self.name(&raw.name)?;
        let corpus_span = raw.corpus.span();
        let corpus_list = match raw.corpus.into_inner() {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if corpus_list.is_empty() {
            return self.err(
                corpus_span,
                "corpus",
                "give at least one PDF, .txt, .md or BEIR corpus.jsonl file".into(),
            );
        }
        let mut corpus = Vec::new();
        for c in &corpus_list {
            let p = self.resolve(c);
            if !p.is_file() {
                return self.err(
                    corpus_span.clone(),
                    "corpus",
                    format!(
                        "{} is not a file (paths are relative to the experiment file)",
                        p.display()
                    ),
                );
            }
            corpus.push(p);
        }
        let qa = self.existing(
            &raw.qa,
            "qa",
            "point it at a QA file (TOML [[question]] tables, alternating lines, or BEIR qrels/<split>.tsv)",
        )?;
        let embedding_model = self.existing(
            &raw.embedding_model,
            "embedding_model",
            "run `orchestrate models fetch` to fetch all-MiniLM-L6-v2 into models/",
        )?;
        let corpus_fingerprint = crate::corpus::corpus_fingerprint(&corpus)
            .or_else(|e| self.err(corpus_span.clone(), "corpus", e.to_string()))?;
        let embedder_fingerprint =
            crate::embed::fingerprint_dir(&embedding_model).or_else(|e| {
                self.err(
                    raw.embedding_model.span(),
                    "embedding_model",
                    format!(
                        "{e}; it must hold a sentence-transformers model (model.safetensors, \
                     tokenizer.json, config.json): `orchestrate models fetch` fetches the default"
                    ),
                )
            })?;
        if *raw.repeats.get_ref() == 0 {
            return self.err(raw.repeats.span(), "repeats", "must be at least 1".into());
        }
        if raw.question_timeout_s.get_ref().is_nan() || *raw.question_timeout_s.get_ref() <= 0.0 {
            return self.err(
                raw.question_timeout_s.span(),
                "question_timeout_s",
                "must be > 0 seconds".into(),
            );
        }
        if let Some(l) = &raw.limit_questions {
            if *l.get_ref() == 0 {
                return self.err(
                    l.span(),
                    "limit_questions",
                    "must be at least 1 (or remove it)".into(),
                );
            }
        }
        let (search, race) = self.race(raw.search.as_ref(), raw.race.as_ref(), raw.generate)?;
        let judge = self.judge(raw.judge.as_ref())?;
        let models = self.models(raw.models, &raw.prompts, raw.generate)?;
        let (executor, slurm) = self.executor(raw.executor.as_ref(), &models)?;
        let settings = self.grid(&raw.grid, &raw.retrievers)?;
        let mut cells: Vec<Cell> = Vec::new();
        let model_list: Vec<Option<&ModelSpec>> = if raw.generate {
            models.iter().map(Some).collect()
        } else {
            vec![None]
        };
        for m in model_list {
            for r in &settings {
                let mut cell = Cell {
                    id: String::new(),
                    model: m.cloned(),
                    retrieval: r.clone(),
                    corpus: corpus.clone(),
                    corpus_fingerprint: corpus_fingerprint.clone(),
                    embedding_model: embedding_model.clone(),
                    embedder_fingerprint: embedder_fingerprint.clone(),
                };
                cell.id = cell.compute_id();
                if let Some(twin) = cells.iter().find(|c| c.id == cell.id) {
                    return self.err(
                        0..0,
                        "model",
                        format!(
                            "models `{}` and `{}` have the same GGUF contents and settings, so \
                             their cells would be the same; remove one or change its settings",
                            twin.model_name(),
                            cell.model_name()
                        ),
                    );
                }
                cells.push(cell);
            }
        }
        Ok(Experiment {
            name,
            description: raw.description,
            path: self.path.to_path_buf(),
            text: self.text.to_string(),
            sha256: hex::encode(Sha256::digest(self.text.as_bytes())),
            corpus,
            qa,
            qa_format: raw.qa_format,
            embedding_model,
            corpus_fingerprint,
            embedder_fingerprint,
            generate: raw.generate,
            repeats: *raw.repeats.get_ref(),
            question_timeout_s: *raw.question_timeout_s.get_ref(),
            limit_questions: raw.limit_questions.map(|l| *l.get_ref()),
            models,
            cells,
            search,
            race,
            judge,
            executor,
            slurm,
        })
    }

    /// Validates the `[executor]` table.
    fn executor(
        &self,
        raw: Option<&Spanned<RawExecutor>>,
        models: &[ModelSpec],
    ) -> Result<(crate::slurm::ExecutorKind, crate::slurm::SlurmSettings), ExperimentError> {
        use crate::slurm::{ExecutorKind, Resources, SlurmSettings};
        let mut s = SlurmSettings::default();
        let Some(raw) = raw else {
            return Ok((ExecutorKind::Local, s));
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let kind = match raw.kind.as_deref() {
            None | Some("local") => ExecutorKind::Local,
            Some("slurm") => ExecutorKind::Slurm,
            Some(other) => {
                return self.err(
                    span,
                    "executor.kind",
                    format!("unknown executor `{other}`: use \"local\" or \"slurm\""),
                )
            }
        };
        let time = |v: &toml::Value, field: &str| -> Result<String, ExperimentError> {
            match v {
                toml::Value::Integer(m) if *m > 0 => Ok(m.to_string()),
                toml::Value::String(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
                _ => self.err(
                    span.clone(),
                    field,
                    "must be minutes (a positive integer) or a Slurm time string such as \"02:00:00\""
                        .into(),
                ),
            }
        };
        s.partition = raw.partition.clone();
        s.account = raw.account.clone();
        if let Some(t) = &raw.time_limit {
            s.time_limit = time(t, "executor.time_limit")?;
        }
        s.resources = Resources {
            cpus_per_task: raw.cpus_per_task,
            mem: raw.mem.clone(),
            gres: raw.gres.clone(),
            time_limit: None,
        };
        for (name, r) in &raw.model {
            if !models.iter().any(|m| &m.name == name) {
                let known: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                return self.err(
                    span,
                    &format!("executor.model.{name}"),
                    format!("no model is named `{name}` (models: {})", known.join(", ")),
                );
            }
            let time_limit = match &r.time_limit {
                Some(t) => Some(time(t, &format!("executor.model.{name}.time_limit"))?),
                None => None,
            };
            s.model_resources.insert(
                name.clone(),
                Resources {
                    cpus_per_task: r.cpus_per_task,
                    mem: r.mem.clone(),
                    gres: r.gres.clone(),
                    time_limit,
                },
            );
        }
        if raw.max_parallel == Some(0) || raw.cpus_per_task == Some(0) {
            return self.err(
                span,
                "executor",
                "max_parallel and cpus_per_task must be at least 1".into(),
            );
        }
        s.max_parallel = raw.max_parallel;
        let options = raw.sbatch_options.clone().unwrap_or_default();
        if let Some(o) = options.iter().find(|o| {
            [
                "--array",
                "-a",
                "--job-name",
                "-J",
                "--output",
                "-o",
                "--parsable",
            ]
            .iter()
            .any(|own| o.as_str() == *own || o.starts_with(&format!("{own}=")))
        }) {
            return self.err(
                span,
                "executor.sbatch_options",
                format!(
                    "`{o}` is set by orchestrate (arrays, job name, logs); remove it, or use \
                     max_parallel for the throttle"
                ),
            );
        }
        s.sbatch_options = options;
        s.run_dir = raw.run_dir.as_deref().map(|d| self.resolve(d));
        if let Some(p) = raw.poll_interval_s {
            if !(p.is_finite() && p > 0.0) {
                return self.err(
                    span,
                    "executor.poll_interval_s",
                    "must be > 0 seconds".into(),
                );
            }
            s.poll_interval_s = p;
        }
        s.warning_s = raw.warning_s.unwrap_or(s.warning_s);
        s.max_waves = raw.max_waves.unwrap_or(s.max_waves);
        Ok((kind, s))
    }

    /// Validates `judge = true|false` or the `[judge]` table.
    fn judge(&self, raw: Option<&Spanned<toml::Value>>) -> Result<JudgeSettings, ExperimentError> {
        let mut s = JudgeSettings::defaults(self.base);
        let Some(raw) = raw else {
            return Ok(s);
        };
        let span = raw.span();
        let table: RawJudge = match raw.get_ref() {
            toml::Value::Boolean(b) => {
                s.after_run = *b;
                return Ok(s);
            }
            v @ toml::Value::Table(_) => match v.clone().try_into() {
                Ok(t) => t,
                Err(e) => {
                    return self.err(span, "judge", e.to_string().trim_end().to_string());
                }
            },
            _ => {
                return self.err(
                    span,
                    "judge",
                    "must be `true`, `false` or a [judge] table".into(),
                )
            }
        };
        if let Some(g) = &table.gguf {
            s.gguf = self.resolve(g);
        }
        s.threads = table.threads.unwrap_or(s.threads);
        s.n_ctx = table.n_ctx.unwrap_or(s.n_ctx);
        s.max_tokens = table.max_tokens.unwrap_or(s.max_tokens);
        s.after_run = table.after_run.unwrap_or(s.after_run);
        s.options.penalize_ambiguous_claims = table
            .penalize_ambiguous_claims
            .unwrap_or(s.options.penalize_ambiguous_claims);
        if s.threads < 1 {
            return self.err(
                span,
                "judge.threads",
                format!("must be at least 1, got {}", s.threads),
            );
        }
        if s.max_tokens < 16 || s.max_tokens >= s.n_ctx {
            return self.err(
                span,
                "judge.max_tokens",
                format!(
                    "must be at least 16 and below judge.n_ctx ({}), got {}",
                    s.n_ctx, s.max_tokens
                ),
            );
        }
        if let Some(p) = &table.profiles {
            let mut profiles = Vec::new();
            for name in p {
                match crate::judge::Profile::parse(name) {
                    Some(x) if !profiles.contains(&x) => profiles.push(x),
                    Some(_) => {}
                    None => {
                        return self.err(
                            span,
                            "judge.profiles",
                            format!("unknown profile `{name}`: use \"ragas\" and/or \"deepeval\""),
                        )
                    }
                }
            }
            if profiles.is_empty() {
                return self.err(span, "judge.profiles", "name at least one profile".into());
            }
            s.profiles = profiles;
        }
        if let Some(m) = &table.metrics {
            let mut metrics = Vec::new();
            for name in m {
                match crate::judge::JudgeMetric::parse(name) {
                    Some(x) => metrics.push(x),
                    None => {
                        let known: Vec<&str> = crate::judge::JudgeMetric::ALL
                            .iter()
                            .map(|m| m.name())
                            .collect();
                        return self.err(
                            span,
                            "judge.metrics",
                            format!("unknown metric `{name}`: use some of {}", known.join(", ")),
                        );
                    }
                }
            }
            if metrics.is_empty() {
                return self.err(span, "judge.metrics", "name at least one metric".into());
            }
            s.metrics = metrics;
        }
        Ok(s)
    }

    /// Validates `search` and `[race]`: the race settings when `search = "race"`.
    fn race(
        &self,
        search: Option<&Spanned<String>>,
        race: Option<&Spanned<RawRace>>,
        generate: bool,
    ) -> Result<(Search, RaceSettings), ExperimentError> {
        let search = match search {
            None => Search::Grid,
            Some(s) if s.get_ref() == "grid" => Search::Grid,
            Some(s) if s.get_ref() == "race" => Search::Race,
            Some(s) => {
                return self.err(
                    s.span(),
                    "search",
                    format!("unknown search `{}`: use \"grid\" (every cell, all questions) or \"race\" (stop cells that are significantly worse after each shard)", s.get_ref()),
                )
            }
        };
        let Some(raw) = race else {
            return Ok((search, RaceSettings::new(default_race_metric(generate))));
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let mut s = RaceSettings::new(
            raw.metric
                .as_deref()
                .unwrap_or(default_race_metric(generate)),
        );
        s.alpha = raw.alpha.unwrap_or(s.alpha);
        s.shards = raw.shards.unwrap_or(s.shards);
        s.seed = raw.seed.unwrap_or(s.seed);
        if !(s.alpha > 0.0 && s.alpha < 1.0) {
            return self.err(
                span,
                "race.alpha",
                format!("must be between 0 and 1, got {}", s.alpha),
            );
        }
        if s.shards < 2 {
            return self.err(
                span,
                "race.shards",
                format!(
                    "must be at least 2 (a race needs a look before the last shard), got {}",
                    s.shards
                ),
            );
        }
        if !generate && matches!(s.metric.as_str(), "cosine" | "response_time_s") {
            return self.err(span, "race.metric", format!("`{}` needs generated answers; a retrieval-only race needs a retrieval metric such as \"ndcg@4\" or \"mrr@4\"", s.metric));
        }
        Ok((search, s))
    }

    /// The prompt variants of a model's `prompt` setting: one template or `chat` (no variant
    /// name unless it names a `[prompt]` entry), or a list of `[prompt]` names and `chat`, each a
    /// variant. Errors name `field`.
    fn prompt_variants(
        &self,
        raw: Option<&Spanned<OneOrMany>>,
        prompts: &BTreeMap<String, Spanned<String>>,
        field: &str,
    ) -> Result<Vec<PromptVariant>, ExperimentError> {
        let Some(raw) = raw else {
            return Ok(vec![(None, None)]);
        };
        let style = |text: &str, span: std::ops::Range<usize>, f: &str| {
            if text == "chat" {
                return Ok(PromptStyle::Chat);
            }
            if !text.contains("{context}") || !text.contains("{question}") {
                return self.err(
                    span,
                    f,
                    "a prompt template must contain {context} and {question} (or use prompt = \"chat\")".into(),
                );
            }
            Ok(PromptStyle::Template(text.to_string()))
        };
        let named = |n: &str| -> Result<PromptStyle, ExperimentError> {
            match prompts.get(n) {
                Some(t) => style(t.get_ref(), t.span(), &format!("prompt.{n}")),
                None => style(n, raw.span(), field),
            }
        };
        match raw.get_ref() {
            OneOrMany::One(p) if p == "chat" || !prompts.contains_key(p) => {
                Ok(vec![(None, Some(style(p, raw.span(), field)?))])
            }
            OneOrMany::One(p) => Ok(vec![(Some(p.clone()), Some(named(p)?))]),
            OneOrMany::Many(list) => {
                if list.is_empty() {
                    return self.err(raw.span(), field, "list at least one prompt".into());
                }
                let mut out: Vec<PromptVariant> = Vec::new();
                for p in list {
                    if p != "chat" && !prompts.contains_key(p) {
                        let defined: Vec<&str> = prompts.keys().map(String::as_str).collect();
                        return self.err(
                            raw.span(),
                            field,
                            format!(
                                "`{p}` is neither `chat` nor a [prompt] entry ({}): a list names \
                                 prompt templates defined in the [prompt] table",
                                if defined.is_empty() {
                                    "none defined".to_string()
                                } else {
                                    defined.join(", ")
                                }
                            ),
                        );
                    }
                    if out.iter().any(|(n, _)| n.as_deref() == Some(p)) {
                        return self.err(raw.span(), field, format!("`{p}` is listed twice"));
                    }
                    out.push((Some(p.clone()), Some(named(p)?)));
                }
                Ok(out)
            }
        }
    }

    fn models(
        &self,
        raw: Vec<RawModel>,
        prompts: &BTreeMap<String, Spanned<String>>,
        generate: bool,
    ) -> Result<Vec<ModelSpec>, ExperimentError> {
        if raw.is_empty() && generate {
            return self.err(
                0..0,
                "model",
                "add at least one [[model]] table with name and gguf (or set generate = false)"
                    .into(),
            );
        }
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, m) in raw.into_iter().enumerate() {
            let field = |f: &str| format!("model[{i}].{f}");
            let name = m.name.get_ref().trim().to_string();
            if name.is_empty() || !names.insert(name.clone()) {
                return self.err(
                    m.name.span(),
                    &field("name"),
                    format!("model names must be non-empty and unique (`{name}`)"),
                );
            }
            let gguf = if generate {
                self.existing(
                    &m.gguf,
                    &field("gguf"),
                    &fetch_hint(&self.resolve(m.gguf.get_ref())),
                )?
            } else {
                self.resolve(m.gguf.get_ref())
            };
            let variants = self.prompt_variants(m.prompt.as_ref(), prompts, &field("prompt"))?;
            let mut params = GenParams::default();
            if let Some(v) = m.n_ctx {
                params.n_ctx = v;
            }
            if let Some(preset) = &m.sampler {
                match preset.get_ref().parse::<SamplerPreset>() {
                    Ok(p) => {
                        params.sampling = p.sampling();
                        let extras = p.extras();
                        params.max_tokens = extras.max_tokens.unwrap_or(params.max_tokens);
                        params.n_batch = extras.n_batch.unwrap_or(params.n_batch);
                        params.rope_freq_base = extras.rope_freq_base;
                        params.rope_freq_scale = extras.rope_freq_scale;
                    }
                    Err(e) => return self.err(preset.span(), &field("sampler"), e),
                }
            }
            let s = &mut params.sampling;
            s.temperature = m.temperature.unwrap_or(s.temperature);
            s.top_p = m.top_p.unwrap_or(s.top_p);
            s.seed = m.seed.unwrap_or(s.seed);
            if let Some(mode) = &m.seed_mode {
                match mode.get_ref().parse::<SeedMode>() {
                    Ok(SeedMode::Fixed) => s.seed_mode = None,
                    Ok(mode) => s.seed_mode = Some(mode),
                    Err(e) => return self.err(mode.span(), &field("seed_mode"), e),
                }
            }
            s.top_k = m.top_k.or(s.top_k);
            s.typical_p = m.typical_p.or(s.typical_p);
            s.min_p = m.min_p.or(s.min_p);
            s.repeat_penalty = m.repeat_penalty.or(s.repeat_penalty);
            s.repeat_last_n = m.repeat_last_n.or(s.repeat_last_n);
            s.frequency_penalty = m.frequency_penalty.or(s.frequency_penalty);
            s.presence_penalty = m.presence_penalty.or(s.presence_penalty);
            if let Some(v) = m.max_tokens {
                params.max_tokens = v;
            }
            if let Some(v) = m.stop {
                params.stop = v;
            }
            if let Some(v) = m.threads {
                params.threads = v;
            }
            let threads = m.threads;
            if let Some(v) = m.n_batch {
                params.n_batch = v;
            }
            params.rope_freq_base = m.rope_freq_base.or(params.rope_freq_base);
            params.rope_freq_scale = m.rope_freq_scale.or(params.rope_freq_scale);
            if params.max_tokens == 0 || params.n_ctx <= params.max_tokens {
                return self.err(
                    m.name.span(),
                    &field("max_tokens"),
                    format!(
                        "need 0 < max_tokens ({}) < n_ctx ({})",
                        params.max_tokens, params.n_ctx
                    ),
                );
            }
            if let Err(e) = params.sampling.validate() {
                // the message starts with the setting's name
                let name = e.split_whitespace().next().unwrap_or("sampler").to_string();
                return self.err(m.name.span(), &field(&name), e);
            }
            if params.threads < 1 {
                return self.err(
                    m.name.span(),
                    &field("threads"),
                    format!("threads must be >= 1, got {}", params.threads),
                );
            }
            if let Err(e) = params.validate() {
                return self.err(m.name.span(), &format!("model[{i}]"), e.to_string());
            }
            let batching = Batching {
                parallel: m.parallel.unwrap_or(1),
                latency_questions: m
                    .latency_questions
                    .unwrap_or(crate::cell::DEFAULT_LATENCY_QUESTIONS),
            };
            if !(1..=MAX_PARALLEL).contains(&batching.parallel) {
                return self.err(
                    m.name.span(),
                    &field("parallel"),
                    format!(
                        "parallel must be between 1 and {MAX_PARALLEL} sequences, got {}",
                        batching.parallel
                    ),
                );
            }
            let gguf_sha256 = if generate {
                self.check_gguf(&m.gguf, &field("gguf"), &gguf)?
            } else {
                String::new()
            };
            let several = variants.len() > 1;
            for (prompt_name, style) in variants {
                let mut params = params.clone();
                if let Some(style) = style {
                    params.prompt = style;
                }
                let name = match (&prompt_name, several) {
                    (Some(p), true) => {
                        let full = format!("{name}/{p}");
                        if !names.insert(full.clone()) {
                            return self.err(
                                m.name.span(),
                                &field("name"),
                                format!("model names must be unique (`{full}`)"),
                            );
                        }
                        full
                    }
                    _ => name.clone(),
                };
                out.push(ModelSpec {
                    name,
                    gguf: gguf.clone(),
                    gguf_sha256: gguf_sha256.clone(),
                    params,
                    threads,
                    prompt_name,
                    batching,
                });
            }
        }
        Ok(out)
    }

    /// The sha256 of the GGUF file at `path` (cached, see [`crate::fingerprint`]), after checking
    /// its structure ([`crate::gguf::check`]: not a directory, GGUF magic and version, header and
    /// tensor data complete), so a broken model file stops the sweep before it starts. Errors
    /// name `field`.
    fn check_gguf(
        &self,
        raw: &Spanned<String>,
        field: &str,
        path: &Path,
    ) -> Result<String, ExperimentError> {
        if let Err(e) = crate::gguf::check(path) {
            return self.err(raw.span(), field, e.to_string());
        }
        crate::fingerprint::sha256_file(path).or_else(|e| {
            self.err(
                raw.span(),
                field,
                format!(
                    "cannot read {}: {e}; give the path of a GGUF model file",
                    path.display()
                ),
            )
        })
    }

    fn grid(
        &self,
        g: &RawGrid,
        defs: &BTreeMap<String, Spanned<RawRetriever>>,
    ) -> Result<Vec<Retrieval>, ExperimentError> {
        fn nonempty<T>(v: &Spanned<Vec<T>>) -> bool {
            !v.get_ref().is_empty()
        }
        for (ok, span, f) in [
            (
                nonempty(&g.chunk_size),
                g.chunk_size.span(),
                "grid.chunk_size",
            ),
            (
                nonempty(&g.chunk_overlap),
                g.chunk_overlap.span(),
                "grid.chunk_overlap",
            ),
            (nonempty(&g.retriever), g.retriever.span(), "grid.retriever"),
            (
                nonempty(&g.ensemble_weight),
                g.ensemble_weight.span(),
                "grid.ensemble_weight",
            ),
            (nonempty(&g.top_k), g.top_k.span(), "grid.top_k"),
            (nonempty(&g.fetch_k), g.fetch_k.span(), "grid.fetch_k"),
            (
                nonempty(&g.lambda_mult),
                g.lambda_mult.span(),
                "grid.lambda_mult",
            ),
        ] {
            if !ok {
                return self.err(span, f, "give at least one value".into());
            }
        }
        for r in g.retriever.get_ref() {
            if !defs.contains_key(r) && r.parse::<RetrieverKind>().is_err() {
                let defined: Vec<&str> = defs.keys().map(String::as_str).collect();
                let hint = if defined.is_empty() {
                    "use dense, mmr, bm25 or ensemble, or define it in a [retriever.NAME] table"
                        .to_string()
                } else {
                    format!(
                        "use dense, mmr, bm25, ensemble or a defined retriever ({})",
                        defined.join(", ")
                    )
                };
                return self.err(
                    g.retriever.span(),
                    "grid.retriever",
                    format!("unknown retriever `{r}`: {hint}"),
                );
            }
        }
        for &s in g.chunk_size.get_ref() {
            if s == 0 {
                return self.err(
                    g.chunk_size.span(),
                    "grid.chunk_size",
                    "chunk sizes are characters and must be > 0".into(),
                );
            }
        }
        for &o in g.chunk_overlap.get_ref() {
            if let Overlap::Fraction(f) = o {
                if !(0.0..1.0).contains(&f) {
                    return self.err(
                        g.chunk_overlap.span(),
                        "grid.chunk_overlap",
                        format!("{f} is neither a fraction in [0, 1) nor an integer number of characters"),
                    );
                }
            }
        }
        for &w in g.ensemble_weight.get_ref() {
            if !(0.0..=1.0).contains(&w) {
                return self.err(
                    g.ensemble_weight.span(),
                    "grid.ensemble_weight",
                    format!("{w} is not a BM25 weight in [0, 1] (dense gets 1 - weight)"),
                );
            }
        }
        for (values, field) in [(&g.top_k, "grid.top_k"), (&g.fetch_k, "grid.fetch_k")] {
            if values.get_ref().contains(&0) {
                return self.err(values.span(), field, "must be >= 1 (chunks)".into());
            }
        }
        for &l in g.lambda_mult.get_ref() {
            if !(0.0..=1.0).contains(&l) {
                return self.err(
                    g.lambda_mult.span(),
                    "grid.lambda_mult",
                    format!("{l} is not in [0, 1]"),
                );
            }
        }
        let axes = Axes {
            top_k: g.top_k.get_ref().iter().map(|&k| k as usize).collect(),
            fetch_k: g.fetch_k.get_ref().iter().map(|&k| k as usize).collect(),
            lambda_mult: g.lambda_mult.get_ref().clone(),
            ensemble_weight: g.ensemble_weight.get_ref().clone(),
            bm25: self.variants(g.bm25.as_ref(), "grid.bm25")?,
            dense_index: self.variants(g.dense_index.as_ref(), "grid.dense_index")?,
        };
        let mut out: Vec<Retrieval> = Vec::new();
        for &size in g.chunk_size.get_ref() {
            for &ov in g.chunk_overlap.get_ref() {
                let chunk_overlap = ov.resolve(size as usize);
                if chunk_overlap >= size as usize {
                    return self.err(
                        g.chunk_overlap.span(),
                        "grid.chunk_overlap",
                        format!("overlap {chunk_overlap} is not smaller than chunk_size {size}"),
                    );
                }
                for r in g.retriever.get_ref() {
                    let mut stack = Vec::new();
                    let expanded = self.expand(r, defs, &axes, &mut stack)?;
                    for mut e in expanded {
                        e.set_chunking(size as usize, chunk_overlap);
                        if out.iter().any(|o| same_settings(o, &e)) {
                            continue;
                        }
                        out.push(e);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The retrieval settings the retriever `name` expands to over the grid's axes (chunking
    /// left at 0, see [`Retrieval::set_chunking`]): a `[retriever.NAME]` definition if there is
    /// one, else the built-in kind of that name. `stack` holds the definitions being expanded,
    /// to report cycles.
    fn expand(
        &self,
        name: &str,
        defs: &BTreeMap<String, Spanned<RawRetriever>>,
        axes: &Axes,
        stack: &mut Vec<String>,
    ) -> Result<Vec<Retrieval>, ExperimentError> {
        let Some(def) = defs.get(name) else {
            return match name.parse::<RetrieverKind>() {
                Ok(RetrieverKind::Parent) => self.err(
                    0..0,
                    stack
                        .last()
                        .map_or("grid.retriever".to_string(), |s| format!("retriever.{s}.members"))
                        .as_str(),
                    "a parent retriever needs its child chunk size: define it, e.g. \
                     [retriever.parent] with kind = \"parent\" and child_chunk_size = 200"
                        .into(),
                ),
                Ok(kind) => Ok(builtin(kind, &Fixed::default(), axes)),
                Err(_) => self.err(
                    0..0,
                    &format!("retriever.{}.members", stack.last().map_or("", |s| s.as_str())),
                    format!(
                        "unknown retriever `{name}`: use dense, mmr, bm25, ensemble or a                          defined retriever"
                    ),
                ),
            };
        };
        if stack.iter().any(|s| s == name) {
            return self.err(
                def.span(),
                &format!("retriever.{name}.members"),
                format!(
                    "retriever `{name}` contains itself ({} -> {name})",
                    stack.join(" -> ")
                ),
            );
        }
        let field = |f: &str| format!("retriever.{name}.{f}");
        let span = def.span();
        let d = def.get_ref();
        let kind: RetrieverKind = match d.kind.get_ref().parse() {
            Ok(k) => k,
            Err(_) => {
                return self.err(
                    d.kind.span(),
                    &field("kind"),
                    format!(
                        "unknown kind `{}`: use dense, mmr, bm25, ensemble or parent",
                        d.kind.get_ref()
                    ),
                )
            }
        };
        let composed = d.members.is_some();
        // settings that the kind does not use are mistakes, not silently ignored values
        let misplaced = [
            ("top_k", d.top_k.is_some() && composed),
            ("fetch_k", d.fetch_k.is_some() && kind != RetrieverKind::Mmr),
            (
                "lambda_mult",
                d.lambda_mult.is_some() && kind != RetrieverKind::Mmr,
            ),
            (
                "ensemble_weight",
                d.ensemble_weight.is_some()
                    && (kind != RetrieverKind::Ensemble || d.weights.is_some()),
            ),
            (
                "bm25",
                d.bm25.is_some()
                    && !(kind == RetrieverKind::Bm25
                        || (kind == RetrieverKind::Ensemble && !composed)),
            ),
            (
                "dense_index",
                d.dense_index.is_some() && (kind == RetrieverKind::Bm25 || composed),
            ),
            ("members", composed && kind != RetrieverKind::Ensemble),
            ("weights", d.weights.is_some() && !composed),
            (
                "child_chunk_size",
                d.child_chunk_size.is_some() && kind != RetrieverKind::Parent,
            ),
            (
                "child_chunk_overlap",
                d.child_chunk_overlap.is_some() && kind != RetrieverKind::Parent,
            ),
        ];
        if let Some((f, _)) = misplaced.iter().find(|(_, bad)| *bad) {
            return self.err(
                span,
                &field(f),
                format!(
                    "a {kind} retriever{} does not use `{f}`: remove it",
                    if composed { " with members" } else { "" }
                ),
            );
        }
        let fixed = Fixed {
            top_k: d.top_k.map(|k| k as usize),
            fetch_k: d.fetch_k.map(|k| k as usize),
            lambda_mult: d.lambda_mult,
            ensemble_weight: d.ensemble_weight,
            bm25: self.variant(d.bm25.as_deref(), span.clone(), &field("bm25"))?,
            dense_index: self.variant(
                d.dense_index.as_deref(),
                span.clone(),
                &field("dense_index"),
            )?,
        };
        for (v, f) in [(fixed.top_k, "top_k"), (fixed.fetch_k, "fetch_k")] {
            if v == Some(0) {
                return self.err(span, &field(f), "must be >= 1 (chunks)".into());
            }
        }
        for (v, f) in [
            (fixed.lambda_mult, "lambda_mult"),
            (fixed.ensemble_weight, "ensemble_weight"),
        ] {
            if let Some(x) = v.filter(|x| !(0.0..=1.0).contains(x)) {
                return self.err(span, &field(f), format!("{x} is not in [0, 1]"));
            }
        }
        let mut out = match (&d.members, kind) {
            (Some(members), _) => {
                if members.is_empty() {
                    return self.err(
                        span,
                        &field("members"),
                        "list at least one retriever to fuse".into(),
                    );
                }
                stack.push(name.to_string());
                let mut expanded = Vec::new();
                for m in members {
                    expanded.push(self.expand(m.trim(), defs, axes, stack)?);
                }
                stack.pop();
                let weight_sets: Vec<Vec<f64>> = match &d.weights {
                    Some(w) => {
                        if w.len() != members.len() {
                            return self.err(
                                span,
                                &field("weights"),
                                format!(
                                    "{} weights for {} members: give one weight per member",
                                    w.len(),
                                    members.len()
                                ),
                            );
                        }
                        if let Some(x) = w.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
                            return self.err(
                                span,
                                &field("weights"),
                                format!("{x} is not a weight >= 0"),
                            );
                        }
                        vec![w.clone()]
                    }
                    // two members: the grid's ensemble_weight axis sweeps the first's weight
                    None if members.len() == 2 => axes
                        .ensemble_weight
                        .iter()
                        .map(|&r| vec![r, 1.0 - r])
                        .collect(),
                    // LangChain's default: equal weights
                    None => vec![vec![1.0 / members.len() as f64; members.len()]],
                };
                let mut combos: Vec<Vec<Retrieval>> = vec![Vec::new()];
                for options in &expanded {
                    combos = combos
                        .into_iter()
                        .flat_map(|c| {
                            options.iter().map(move |o| {
                                let mut c = c.clone();
                                c.push(o.clone());
                                c
                            })
                        })
                        .collect();
                }
                let mut out = Vec::new();
                for combo in &combos {
                    for weights in &weight_sets {
                        out.push(composed_ensemble(combo, weights));
                    }
                }
                out
            }
            (None, RetrieverKind::Parent) => {
                let Some(size) = d.child_chunk_size.filter(|&c| c > 0) else {
                    return self.err(
                        span,
                        &field("child_chunk_size"),
                        "a parent retriever needs child_chunk_size (characters, > 0): the                          size of the child chunks that are embedded and searched"
                            .into(),
                    );
                };
                let size = size as usize;
                let overlap = d.child_chunk_overlap.map_or(0, |o| o.resolve(size));
                if overlap >= size {
                    return self.err(
                        span,
                        &field("child_chunk_overlap"),
                        format!("overlap {overlap} is not smaller than child_chunk_size {size}"),
                    );
                }
                builtin(kind, &fixed, axes)
                    .into_iter()
                    .map(|mut r| {
                        r.child_chunk_size = Some(size);
                        r.child_chunk_overlap = Some(overlap);
                        r.collapsed()
                    })
                    .collect()
            }
            (None, kind) => builtin(kind, &fixed, axes),
        };
        for r in &mut out {
            r.name = Some(name.to_string());
        }
        Ok(out)
    }

    /// Parses an optional `bm25` / `dense_index` setting of a definition.
    fn variant<T>(
        &self,
        raw: Option<&str>,
        span: std::ops::Range<usize>,
        field: &str,
    ) -> Result<Option<T>, ExperimentError>
    where
        T: std::str::FromStr<Err = crate::retrieve::RetrieveError>,
    {
        match raw.map(str::parse::<T>) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => self.err(span, field, e.to_string()),
        }
    }

    /// Parses an optional `bm25` / `dense_index` axis (one name or a list of names); the
    /// variant's default when absent.
    fn variants<T>(
        &self,
        raw: Option<&Spanned<OneOrMany>>,
        field: &str,
    ) -> Result<Vec<T>, ExperimentError>
    where
        T: std::str::FromStr<Err = crate::retrieve::RetrieveError> + Default + PartialEq,
    {
        let Some(raw) = raw else {
            return Ok(vec![T::default()]);
        };
        let names: Vec<String> = match raw.get_ref() {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        if names.is_empty() {
            return self.err(raw.span(), field, "give at least one value".into());
        }
        let mut out = Vec::new();
        for n in &names {
            match n.parse::<T>() {
                Ok(v) if !out.contains(&v) => out.push(v),
                Ok(_) => {}
                Err(e) => return self.err(raw.span(), field, e.to_string()),
            }
        }
        Ok(out)
    }
}

/// How to get a missing GGUF: the `orchestrate models fetch NAME` of its entry in the
/// `manifest.toml` next to it (models/ of a checkout) when it has one — on-demand models are
/// fetched only by name — else the general advice.
fn fetch_hint(gguf: &Path) -> String {
    let entry = gguf.parent().zip(gguf.file_name()).and_then(|(dir, file)| {
        let manifest = crate::models::Manifest::load(&dir.join("manifest.toml")).ok()?;
        manifest
            .by_file(&file.to_string_lossy())
            .map(|e| e.name.clone())
    });
    match entry {
        Some(name) => format!("run `orchestrate models fetch {name}` to fetch it"),
        None => "run `orchestrate models fetch` for the default models, or give the path of your \
                 GGUF file"
            .to_string(),
    }
}

/// The settings of a built-in retriever kind over the axes, with `fixed` values taking the
/// place of their axis (collapsed, chunking left at 0).
fn builtin(kind: RetrieverKind, fixed: &Fixed, axes: &Axes) -> Vec<Retrieval> {
    let mmr = kind == RetrieverKind::Mmr;
    let pair = kind == RetrieverKind::Ensemble;
    let lexical = pair || kind == RetrieverKind::Bm25;
    let dense = kind != RetrieverKind::Bm25;
    let opt = |on: bool, v: Vec<f64>| -> Vec<Option<f64>> {
        if on {
            v.into_iter().map(Some).collect()
        } else {
            vec![None]
        }
    };
    let fetch: Vec<Option<usize>> = if mmr {
        fixed_or(fixed.fetch_k, &axes.fetch_k)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let lambdas = opt(mmr, fixed_or(fixed.lambda_mult, &axes.lambda_mult));
    let weights = opt(pair, fixed_or(fixed.ensemble_weight, &axes.ensemble_weight));
    let bm25_axis: Vec<Option<Bm25Variant>> = if lexical {
        fixed_or(fixed.bm25, &axes.bm25)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let dense_axis: Vec<Option<DenseIndexKind>> = if dense {
        fixed_or(fixed.dense_index, &axes.dense_index)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut out = Vec::new();
    for top_k in fixed_or(fixed.top_k, &axes.top_k) {
        for &fetch_k in &fetch {
            for &lambda_mult in &lambdas {
                for &ensemble_weight in &weights {
                    for &bm25 in &bm25_axis {
                        for &dense_index in &dense_axis {
                            out.push(Retrieval {
                                chunk_size: 0,
                                chunk_overlap: 0,
                                retriever: kind,
                                top_k,
                                fetch_k,
                                lambda_mult,
                                ensemble_weight,
                                bm25,
                                dense_index,
                                name: None,
                                members: None,
                                child_chunk_size: None,
                                child_chunk_overlap: None,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// A composed ensemble of `members` with `weights` (same length). Its `top_k` is the sum of the
/// members' (the most chunks the fused list can hold).
fn composed_ensemble(members: &[Retrieval], weights: &[f64]) -> Retrieval {
    Retrieval {
        chunk_size: 0,
        chunk_overlap: 0,
        retriever: RetrieverKind::Ensemble,
        top_k: members.iter().map(|m| m.top_k).sum(),
        fetch_k: None,
        lambda_mult: None,
        ensemble_weight: None,
        bm25: None,
        dense_index: None,
        name: None,
        members: Some(
            members
                .iter()
                .zip(weights)
                .map(|(m, &weight)| crate::cell::WeightedRetrieval {
                    weight,
                    retrieval: m.clone(),
                })
                .collect(),
        ),
        child_chunk_size: None,
        child_chunk_overlap: None,
    }
}

/// Whether two settings run the same retrieval (names aside).
fn same_settings(a: &Retrieval, b: &Retrieval) -> bool {
    a.without_names() == b.without_names()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("doc.txt"), "hello").unwrap();
        std::fs::write(d.path().join("qa.txt"), "q?\na.\n").unwrap();
        std::fs::create_dir(d.path().join("embed")).unwrap();
        // the embedding model's fingerprint reads these two files
        std::fs::write(d.path().join("embed/model.safetensors"), "w").unwrap();
        std::fs::write(d.path().join("embed/tokenizer.json"), "{}").unwrap();
        std::fs::write(d.path().join("embed/config.json"), "{}").unwrap();
        std::fs::write(d.path().join("m.gguf"), tiny_gguf("a")).unwrap();
        d
    }

    /// A structurally valid GGUF v3 file without tensors whose `general.name` is `name`.
    fn tiny_gguf(name: &str) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        let key = b"general.name";
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b
    }

    const BASE: &str = r#"
name = "t"
corpus = "doc.txt"
qa = "qa.txt"
embedding_model = "embed"

[[model]]
name = "a"
gguf = "m.gguf"

[[model]]
name = "b"
gguf = "m.gguf"
prompt = "C: {context} Q: {question} A:"
"#;

    fn parse(dir: &Path, text: &str) -> Result<Experiment, ExperimentError> {
        Experiment::parse(&dir.join("e.toml"), text)
    }

    #[test]
    fn judge_true_next_to_a_judge_table_says_to_use_after_run() {
        let text = "name = \"x\"\njudge = true\n[judge]\nthreads = 2\n";
        let err = Experiment::parse(Path::new("e.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key"), "{err}");
        assert!(err.contains("put `after_run = true` in [judge]"), "{err}");
        // other duplicate keys get no judge hint
        let err = Experiment::parse(Path::new("e.toml"), "name = \"x\"\nname = \"y\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duplicate key") && !err.contains("after_run"),
            "{err}"
        );
    }

    #[test]
    fn grid_collapses_axes_that_do_not_apply() {
        let d = fixture_dir();
        let text = format!(
            "{BASE}\n[grid]\nchunk_size = [100, 500]\nchunk_overlap = [0.2]\nretriever = [\"dense\", \"mmr\", \"ensemble\"]\nensemble_weight = [0.3, 0.5]\nfetch_k = [3, 20]\n"
        );
        let e = parse(d.path(), &text).unwrap();
        // per model and chunk size: dense 1 + mmr 2 (fetch_k) + ensemble 2 (weights) = 5
        assert_eq!(e.cells.len(), 2 * 2 * 5);
        let dense: Vec<_> = e
            .cells
            .iter()
            .filter(|c| c.retrieval.retriever == RetrieverKind::Dense)
            .collect();
        assert!(dense
            .iter()
            .all(|c| c.retrieval.ensemble_weight.is_none() && c.retrieval.fetch_k.is_none()));
        assert_eq!(e.cells[0].retrieval.chunk_overlap, 20);
        let ids: BTreeSet<_> = e.cells.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), e.cells.len(), "cell ids are unique");
        assert_eq!(
            e.models[1].params.prompt,
            PromptStyle::Template("C: {context} Q: {question} A:".into())
        );
    }

    #[test]
    fn adding_grid_values_keeps_existing_cell_ids() {
        let d = fixture_dir();
        let small = parse(
            d.path(),
            &format!("{BASE}\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n"),
        )
        .unwrap();
        let big = parse(
            d.path(),
            &format!(
                "{BASE}\n[grid]\nchunk_size = [100, 250]\nretriever = [\"bm25\", \"dense\"]\n"
            ),
        )
        .unwrap();
        for c in &small.cells {
            assert!(big.cell(&c.id).is_some(), "cell {} kept its id", c.id);
        }
        assert_eq!(big.cells.len(), 2 * 2 * 2);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let d = fixture_dir();
        let err = parse(
            d.path(),
            &format!(
                "{BASE}\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\nchunk_sise = [1]\n"
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("e.toml"), "{err}");
        assert!(err.contains("chunk_sise"), "{err}");
        assert!(err.contains("line 19"), "{err}");
    }

    #[test]
    fn wrong_type_and_bad_values_are_errors() {
        let d = fixture_dir();
        let err = parse(
            d.path(),
            &format!("{BASE}\n[grid]\nchunk_size = \"100\"\nretriever = [\"bm25\"]\n"),
        )
        .unwrap_err();
        assert!(matches!(err, ExperimentError::Parse { .. }), "{err}");
        let err = parse(
            d.path(),
            &format!("{BASE}\n[grid]\nchunk_size = [100]\nretriever = [\"faiss\"]\n"),
        )
        .unwrap_err();
        match err {
            ExperimentError::Invalid { line, field, .. } => {
                assert_eq!(field, "grid.retriever");
                assert_eq!(line, 18);
            }
            e => panic!("unexpected {e}"),
        }
        let err = parse(d.path(), &format!("{BASE}\n[grid]\nchunk_size = [100]\nchunk_overlap = [150]\nretriever = [\"bm25\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not smaller than chunk_size"), "{err}");
        let missing = BASE.replace("gguf = \"m.gguf\"\nprompt", "gguf = \"nope.gguf\"\nprompt");
        let err = parse(
            d.path(),
            &format!("{missing}\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("model[1].gguf") && err.contains("nope.gguf"),
            "{err}"
        );
    }

    #[test]
    fn sampler_preset_then_explicit_settings() {
        let d = fixture_dir();
        let grid = "\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n";
        let with = |extra: &str| {
            let text = BASE.replace(
                "name = \"a\"\ngguf = \"m.gguf\"\n",
                &format!("name = \"a\"\ngguf = \"m.gguf\"\n{extra}\n"),
            );
            parse(d.path(), &format!("{text}{grid}"))
        };
        let plain = with("").unwrap();
        let seeded = with(
            "sampler = \"langchain\"\ntemperature = 0.01\ntop_p = 1.0\nlast_n_tokens_size = 32",
        )
        .unwrap();
        let s = &seeded.models[0].params.sampling;
        assert_eq!((s.temperature, s.top_p), (0.01, 1.0));
        assert_eq!((s.top_k, s.min_p), (Some(40), Some(0.05)));
        assert_eq!((s.repeat_penalty, s.repeat_last_n), (Some(1.1), Some(32)));
        let p = &seeded.models[0].params;
        assert_eq!((p.max_tokens, p.n_batch), (256, 8));
        assert_eq!(
            (p.rope_freq_base, p.rope_freq_scale),
            (Some(10_000.0), Some(1.0))
        );
        // explicit settings win over the preset's extras
        let own =
            with("sampler = \"langchain\"\nmax_tokens = 64\nn_batch = 32\nrope_freq_base = 500.0")
                .unwrap();
        let p = &own.models[0].params;
        assert_eq!(
            (p.max_tokens, p.n_batch, p.rope_freq_base),
            (64, 32, Some(500.0))
        );
        let err = with("rope_freq_scale = 0.0").unwrap_err().to_string();
        assert!(err.contains("rope_freq_scale"), "{err}");
        // the sampler is part of the cell's identity; an unset stage is not
        assert_ne!(plain.cells[0].id, seeded.cells[0].id);
        let greedy = with("sampler = \"greedy\"").unwrap();
        assert_eq!(plain.cells[0].id, greedy.cells[0].id);
        // seeds: the langchain preset seeds as llama-cpp-python does, from LlamaCpp's -1
        assert_eq!((s.seed, s.seed_mode), (-1, Some(SeedMode::LlamaCppPython)));
        let fixed = with("sampler = \"langchain\"\nseed = 7\nseed_mode = \"fixed\"").unwrap();
        let f = &fixed.models[0].params.sampling;
        assert_eq!((f.seed, f.seed_mode), (7, None));
        let explicit_fixed = with("seed = 42\nseed_mode = \"fixed\"").unwrap();
        assert_eq!(plain.cells[0].id, explicit_fixed.cells[0].id);
        let err = with("seed = -1").unwrap_err().to_string();
        assert!(
            err.contains("model[0].seed") && err.contains("llama-cpp-python"),
            "{err}"
        );
        // batching is an execution setting: recorded in the spec, not part of the id
        let batched = with("parallel = 4\nlatency_questions = 3").unwrap();
        let b = batched.models[0].batching;
        assert_eq!((b.parallel, b.latency_questions), (4, 3));
        assert_eq!(batched.cells[0].id, plain.cells[0].id);
        assert_eq!(plain.models[0].batching, crate::cell::Batching::default());
        for bad in ["parallel = 0", "parallel = 65"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("model[0].parallel") && err.contains("between 1 and 64"),
                "{err}"
            );
        }
        let err = with("seed_mode = \"random\"").unwrap_err().to_string();
        assert!(
            err.contains("model[0].seed_mode") && err.contains("fixed, llama-cpp-python"),
            "{err}"
        );

        let err = with("sampler = \"notebook\"").unwrap_err().to_string();
        assert!(
            err.contains("model[0].sampler") && err.contains("langchain"),
            "{err}"
        );
        let err = with("top_k = -3").unwrap_err().to_string();
        assert!(
            err.contains("model[0].top_k") && err.contains(">= 0"),
            "{err}"
        );
        let err = with("repeat_penalty = 0.0").unwrap_err().to_string();
        assert!(err.contains("model[0].repeat_penalty"), "{err}");
    }

    #[test]
    fn template_without_placeholders_is_rejected() {
        let d = fixture_dir();
        let bad = BASE.replace("C: {context} Q: {question} A:", "Q: {question}");
        let err = parse(
            d.path(),
            &format!("{bad}\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("{context}"), "{err}");
    }

    #[test]
    fn cell_ids_follow_file_contents() {
        let d = fixture_dir();
        let grid = "[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n";
        let text = format!("{BASE}\n{grid}");
        let ids = |e: &Experiment| e.cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        let before = parse(d.path(), &text).unwrap();
        assert_eq!(ids(&parse(d.path(), &text).unwrap()), ids(&before));
        // the corpus edited in place (same size): every cell is new
        std::fs::write(d.path().join("doc.txt"), "jello").unwrap();
        let corpus = parse(d.path(), &text).unwrap();
        assert!(ids(&corpus).iter().all(|id| !ids(&before).contains(id)));
        // the embedding model's weights edited: every cell is new again
        std::fs::write(d.path().join("embed/model.safetensors"), "W").unwrap();
        let embed = parse(d.path(), &text).unwrap();
        assert!(ids(&embed).iter().all(|id| !ids(&corpus).contains(id)));
        // the sentence-transformers config (max_seq_length truncates inputs) is part of it too
        std::fs::write(
            d.path().join("embed/sentence_bert_config.json"),
            r#"{"max_seq_length": 128}"#,
        )
        .unwrap();
        let sbert = parse(d.path(), &text).unwrap();
        assert!(ids(&sbert).iter().all(|id| !ids(&embed).contains(id)));
        // one GGUF edited: only that model's cells
        std::fs::write(d.path().join("b.gguf"), tiny_gguf("b")).unwrap();
        let two = BASE.replace("gguf = \"m.gguf\"\nprompt", "gguf = \"b.gguf\"\nprompt");
        let a = parse(d.path(), &format!("{two}\n{grid}")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.path().join("b.gguf"), tiny_gguf("c")).unwrap();
        let b = parse(d.path(), &format!("{two}\n{grid}")).unwrap();
        assert_eq!(a.cells[0].id, b.cells[0].id, "model a is unchanged");
        assert_ne!(a.cells[1].id, b.cells[1].id, "model b's GGUF changed");
        // threads: unset is not part of the id, a value set by the user is
        assert_eq!(a.models[0].threads, None);
        let set = two.replacen("gguf = \"m.gguf\"\n", "gguf = \"m.gguf\"\nthreads = 3\n", 1);
        let c = parse(d.path(), &format!("{set}\n{grid}")).unwrap();
        assert_eq!(c.models[0].threads, Some(3));
        assert_ne!(c.cells[0].id, b.cells[0].id);
    }

    #[test]
    fn errors_name_the_field_and_names_are_plain_file_names() {
        let d = fixture_dir();
        let err = parse(
            d.path(),
            &format!("{BASE}\n[grid]\nchunk_size = [100]\nretriever = [\"mmr\"]\nfetch_k = [0]\n"),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ExperimentError::Invalid { field, .. } if field == "grid.fetch_k"),
            "{err}"
        );
        for bad in ["..", ".hidden", "a/b", "", "x y"] {
            let text = BASE.replace("name = \"t\"", &format!("name = \"{bad}\""));
            let err = parse(
                d.path(),
                &format!("{text}\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n"),
            )
            .unwrap_err();
            assert!(
                matches!(&err, ExperimentError::Invalid { field, .. } if field == "name"),
                "{bad}: {err}"
            );
        }
        // two models with the same GGUF and settings would be the same cells
        let twins = BASE.replace("prompt = \"C: {context} Q: {question} A:\"\n", "");
        let err = parse(
            d.path(),
            &format!("{twins}\n[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("same GGUF contents and settings"), "{err}");
        // the name alone can be read without the inputs
        std::fs::write(d.path().join("n.toml"), "name = \"only\"\n").unwrap();
        assert_eq!(read_name(&d.path().join("n.toml")).unwrap(), "only");
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_col("ab\ncé\nx", 3), (2, 1));
        assert_eq!(line_col("ab", 1), (1, 2));
    }

    const SEED: &str = r#"
[retriever.bm25]
kind = "bm25"
bm25 = "okapi"
top_k = 5

[retriever.mmr]
kind = "mmr"
top_k = 4
fetch_k = 3

[retriever.seed]
kind = "ensemble"
members = ["bm25", "mmr"]
weights = [0.3, 0.7]

[retriever.swept]
kind = "ensemble"
members = ["bm25", "dense"]

[retriever.parent]
kind = "parent"
child_chunk_size = 200

[retriever.nested]
kind = "ensemble"
members = ["seed", "parent", "dense"]
"#;

    fn retrieval_only(extra: &str, grid: &str) -> String {
        let base = BASE.replacen(
            "embedding_model = \"embed\"\n",
            "embedding_model = \"embed\"\ngenerate = false\n",
            1,
        );
        format!("{base}\n{extra}\n[grid]\nchunk_size = [500]\nchunk_overlap = [100]\n{grid}\n")
    }

    #[test]
    fn retriever_definitions_compose_and_axes_fill_unset_settings() {
        let d = fixture_dir();
        let text = retrieval_only(
            SEED,
            "retriever = [\"seed\", \"swept\", \"parent\", \"nested\", \"dense\"]\nensemble_weight = [0.3, 0.5]\ntop_k = [4, 6]\n",
        );
        let exp = parse(d.path(), &text).unwrap();
        let named = |n: &str| -> Vec<&Retrieval> {
            exp.cells
                .iter()
                .map(|c| &c.retrieval)
                .filter(|r| r.name.as_deref() == Some(n))
                .collect()
        };
        // the seed ensemble fixes everything: one cell, exactly LangChain's seed retriever
        let seed = named("seed");
        assert_eq!(seed.len(), 1);
        let p = seed[0].params();
        assert_eq!(p.kind, RetrieverKind::Ensemble);
        let w: Vec<f32> = p.members.iter().map(|m| m.weight).collect();
        assert_eq!(w, vec![0.3, 0.7]);
        let (bm25, mmr) = (&p.members[0].params, &p.members[1].params);
        assert_eq!(
            (bm25.kind, bm25.top_k, bm25.bm25),
            (RetrieverKind::Bm25, 5, Bm25Variant::Okapi)
        );
        assert_eq!(
            (mmr.kind, mmr.top_k, mmr.fetch_k),
            (RetrieverKind::Mmr, 4, 3)
        );
        assert_eq!(
            seed[0].members.as_ref().unwrap()[0].retrieval.chunk_size,
            500
        );
        // two members without weights: the ensemble_weight axis sweeps them; the built-in dense
        // member takes the top_k axis
        let swept = named("swept");
        assert_eq!(swept.len(), 4, "2 weights x 2 dense top_k");
        let mut weights: Vec<(f64, f64)> = swept
            .iter()
            .map(|r| {
                let m = r.members.as_ref().unwrap();
                (m[0].weight, m[1].weight)
            })
            .collect();
        weights.dedup();
        assert!(
            weights.contains(&(0.3, 0.7)) && weights.contains(&(0.5, 0.5)),
            "{weights:?}"
        );
        // the parent retriever: child split set, top_k from the axis
        let parent = named("parent");
        assert_eq!(parent.len(), 2);
        assert_eq!(
            parent[0].child_splits(),
            vec![crate::retrieve::ChildSplit {
                chunk_size: 200,
                chunk_overlap: 0
            }]
        );
        // three members without weights: LangChain's equal weights
        let nested = named("nested");
        assert!(!nested.is_empty());
        for r in &nested {
            let m = r.members.as_ref().unwrap();
            assert!(m.iter().all(|m| (m.weight - 1.0 / 3.0).abs() < 1e-12));
            assert_eq!(m[0].retrieval.name.as_deref(), Some("seed"));
            assert!(r.uses_lexical());
            assert_eq!(r.child_splits().len(), 1);
        }
        // renaming a definition keeps its cells
        let renamed = parse(d.path(), &text.replace("seed", "notebook")).unwrap();
        let ids =
            |e: &Experiment| -> BTreeSet<String> { e.cells.iter().map(|c| c.id.clone()).collect() };
        assert_eq!(ids(&exp), ids(&renamed));
        // the label names the definition
        let c = exp
            .cells
            .iter()
            .find(|c| c.retrieval.name.as_deref() == Some("seed"))
            .unwrap();
        assert!(c.to_string().contains("seed: ensemble"), "{c}");
    }

    #[test]
    fn judge_settings_parse_with_defaults_and_errors_name_the_field() {
        use crate::judge::{JudgeMetric, Profile};
        let d = fixture_dir();
        let grid = "retriever = [\"bm25\"]\n";
        let e = parse(d.path(), &retrieval_only("", grid)).unwrap();
        assert!(!e.judge.after_run && e.judge.profiles == vec![Profile::Ragas]);
        assert_eq!(e.judge.metrics.len(), 5);
        assert!(e
            .judge
            .gguf
            .ends_with("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"));
        // top-level keys go before the first table
        let top = |key: &str| format!("{key}\n{}", retrieval_only("", grid));
        let e = parse(d.path(), &top("judge = true")).unwrap();
        assert!(e.judge.after_run);
        let e = parse(
            d.path(),
            &retrieval_only(
                "[judge]\ngguf = \"j.gguf\"\nprofiles = [\"deepeval\", \"ragas\"]\nmetrics = [\"correctness\"]\nmax_tokens = 512\npenalize_ambiguous_claims = true",
                grid,
            ),
        )
        .unwrap();
        assert_eq!(e.judge.gguf, d.path().join("j.gguf"));
        assert_eq!(e.judge.profiles, vec![Profile::DeepEval, Profile::Ragas]);
        assert_eq!(e.judge.metrics, vec![JudgeMetric::Correctness]);
        assert!(e.judge.options.penalize_ambiguous_claims && e.judge.max_tokens == 512);
        for (table, field, want) in [
            (
                "[judge]\nprofiles = [\"trulens\"]",
                "judge.profiles",
                "unknown profile `trulens`",
            ),
            (
                "[judge]\nmetrics = [\"bleu\"]",
                "judge.metrics",
                "unknown metric `bleu`",
            ),
            ("[judge]\nmetrics = []", "judge.metrics", "at least one"),
            (
                "[judge]\nmax_tokens = 8192",
                "judge.max_tokens",
                "below judge.n_ctx",
            ),
            ("[judge]\nthreads = 0", "judge.threads", "at least 1"),
            ("[judge]\nmodel = \"x\"", "judge", "unknown field `model`"),
            (
                "judge = \"yes\"",
                "judge",
                "must be `true`, `false` or a [judge] table",
            ),
        ] {
            let text = if table.starts_with('[') {
                retrieval_only(table, grid)
            } else {
                top(table)
            };
            let err = parse(d.path(), &text).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(want), "{table}: {err}");
            assert!(err.contains("e.toml"), "names the file: {err}");
        }
    }

    #[test]
    fn bad_retriever_definitions_are_errors_naming_the_field() {
        let d = fixture_dir();
        let cases = [
            ("[retriever.x]\nkind = \"faiss\"\n", "x", "retriever.x.kind", "unknown kind"),
            ("[retriever.x]\nkind = \"dense\"\nfetch_k = 3\n", "x", "retriever.x.fetch_k", "does not use"),
            ("[retriever.x]\nkind = \"ensemble\"\nmembers = [\"bm25\", \"nope\"]\n", "x", "retriever.x.members", "unknown retriever `nope`"),
            ("[retriever.x]\nkind = \"ensemble\"\nmembers = [\"bm25\", \"x\"]\n", "x", "retriever.x.members", "contains itself"),
            ("[retriever.x]\nkind = \"ensemble\"\nmembers = [\"bm25\", \"dense\"]\nweights = [1.0]\n", "x", "retriever.x.weights", "one weight per member"),
            ("[retriever.x]\nkind = \"ensemble\"\nmembers = [\"bm25\", \"dense\"]\nweights = [-1.0, 1.0]\n", "x", "retriever.x.weights", ">= 0"),
            ("[retriever.x]\nkind = \"parent\"\n", "x", "retriever.x.child_chunk_size", "needs child_chunk_size"),
            ("[retriever.x]\nkind = \"parent\"\nchild_chunk_size = 100\nchild_chunk_overlap = 100\n", "x", "retriever.x.child_chunk_overlap", "not smaller"),
            ("[retriever.x]\nkind = \"bm25\"\nbm25 = \"lucene\"\n", "x", "retriever.x.bm25", "lucene"),
            ("[retriever.x]\nkind = \"bm25\"\ntop_k = 0\n", "x", "retriever.x.top_k", ">= 1"),
            ("", "undefined", "grid.retriever", "unknown retriever `undefined`"),
            ("", "parent", "grid.retriever", "child_chunk_size"),
            ("[retriever.x]\nkind = \"ensemble\"\nmembers = [\"bm25\", \"parent\"]\n", "x", "retriever.x.members", "child_chunk_size"),
        ];
        for (defs, grid_name, field, want) in cases {
            let text = retrieval_only(defs, &format!("retriever = [\"{grid_name}\"]\n"));
            let err = parse(d.path(), &text).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(want), "{defs}: {err}");
        }
        // an unknown key in a definition is a TOML error with its line
        let text = retrieval_only(
            "[retriever.x]\nkind = \"bm25\"\nk = 5\n",
            "retriever = [\"x\"]\n",
        );
        let err = parse(d.path(), &text).unwrap_err().to_string();
        assert!(err.contains("unknown field `k`"), "{err}");
    }

    #[test]
    fn prompt_variants_are_models_of_their_own() {
        let d = fixture_dir();
        let prompts = "\n[prompt]\nstock = \"Use the context.\\n\\n{context}\\n\\nQuestion: {question}\\nHelpful Answer:\"\nterse = \"{context}\\nQ: {question}\\nA:\"\n";
        let text = BASE.replace(
            "name = \"a\"\ngguf = \"m.gguf\"\n",
            "name = \"a\"\ngguf = \"m.gguf\"\nprompt = [\"stock\", \"chat\", \"terse\"]\n",
        );
        let grid = "[grid]\nchunk_size = [100]\nretriever = [\"bm25\"]\n";
        let exp = parse(d.path(), &format!("{text}{prompts}{grid}")).unwrap();
        let names: Vec<&str> = exp.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, vec!["a/stock", "a/chat", "a/terse", "b"]);
        assert_eq!(exp.models[1].params.prompt, PromptStyle::Chat);
        assert!(
            matches!(&exp.models[0].params.prompt, PromptStyle::Template(t) if t.ends_with("Helpful Answer:"))
        );
        assert_eq!(exp.models[2].prompt_name.as_deref(), Some("terse"));
        let ids: BTreeSet<&str> = exp.cells.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), 4, "each prompt is a cell of its own");
        // a single named prompt keeps the model's name
        let one = BASE.replace(
            "prompt = \"C: {context} Q: {question} A:\"",
            "prompt = \"terse\"",
        );
        let exp = parse(d.path(), &format!("{one}{prompts}{grid}")).unwrap();
        assert_eq!(exp.models[1].name, "b");
        assert_eq!(exp.models[1].prompt_name.as_deref(), Some("terse"));
        // errors
        let bad = text.replace("\"terse\"]", "\"missing\"]");
        let err = parse(d.path(), &format!("{bad}{prompts}{grid}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model[0].prompt") && err.contains("`missing`"),
            "{err}"
        );
        let err = parse(
            d.path(),
            &format!("{text}\n[prompt]\nstock = \"no placeholders\"\nterse = \"x\"\n{grid}"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("prompt.stock") && err.contains("{context}"),
            "{err}"
        );
    }
}
