//! The one typed cell: what one point of an experiment grid is, from expansion to report.
//!
//! [`crate::experiment`] expands a grid into [`Cell`]s. A cell is self-contained: the model (GGUF
//! path, its sha256, prompting and sampling settings), the retrieval settings, the corpus files
//! and the embedding model with their content fingerprints. The sweep sends it to the worker
//! serialised (the worker parses no experiment file), the store writes it to the `cells` table as
//! it ran, and report, export, compare and status read it back from there: the results database
//! describes itself.
//!
//! A cell's id ([`Cell::compute_id`]) hashes what can change its answers, by content: the GGUF's
//! sha256 and every generation setting, every retrieval setting, the corpus fingerprint and the
//! embedding model's fingerprint. Directories and display names are not part of it, so moving a
//! corpus (same file names) or renaming a model keeps the results; editing a file's bytes, or
//! renaming a corpus file, makes new cells.
//!
//! [`CellAxes`] is the part of a cell every output shows (id, model name, retrieval axes). Its
//! fields are the single list of axes: export columns, report labels and groupings are derived
//! from its serialisation, never copied by hand.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::generate::GenParams;
use crate::retrieve::{
    Bm25Variant, ChildSplit, DenseIndexKind, Member, RetrieverKind, RetrieverParams,
};

/// Version of the cell identity scheme, hashed into every id. Bumped when the identity changes
/// meaning, so old ids never collide with new ones.
pub const IDENTITY_VERSION: u32 = 2;

/// Model name of the cells of a retrieval-only experiment (no LLM).
pub const RETRIEVAL_ONLY: &str = "retrieval-only";

/// Retrieval settings of one cell, with the axes that do not apply to its retriever collapsed to
/// `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// Chunk size in characters.
    pub chunk_size: usize,
    /// Chunk overlap in characters.
    pub chunk_overlap: usize,
    /// Which retriever.
    pub retriever: RetrieverKind,
    /// Chunks returned by each retriever (the ensemble fuses two such lists).
    pub top_k: usize,
    /// MMR candidate pool size (`mmr` only).
    pub fetch_k: Option<usize>,
    /// MMR trade-off between relevance (1) and diversity (0) (`mmr` only).
    pub lambda_mult: Option<f64>,
    /// BM25 weight r of the ensemble; dense gets 1 - r (`ensemble` only).
    pub ensemble_weight: Option<f64>,
    /// BM25 implementation (`bm25` and `ensemble` only).
    pub bm25: Option<Bm25Variant>,
    /// Dense search method (`dense`, `mmr`, `parent` and `ensemble` without members only).
    pub dense_index: Option<DenseIndexKind>,
    /// The name of the experiment's `[retriever.NAME]` definition this retriever comes from
    /// (`None` for the built-in names). A label only: not part of the cell id.
    pub name: Option<String>,
    /// Members of a composed ensemble, each with its weight and its own settings (same chunking
    /// as this cell). `None` for every other retriever.
    pub members: Option<Vec<WeightedRetrieval>>,
    /// Parent retriever only: child chunk size in characters.
    pub child_chunk_size: Option<usize>,
    /// Parent retriever only: child chunk overlap in characters.
    pub child_chunk_overlap: Option<usize>,
}

/// One member of a composed ensemble: a weight and a retriever over the cell's chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedRetrieval {
    /// Weight of the member's ranked list in the reciprocal rank fusion.
    pub weight: f64,
    /// The member's settings (its `chunk_size`/`chunk_overlap` are the cell's).
    pub retrieval: Retrieval,
}

impl Retrieval {
    /// The retriever parameters of these settings; collapsed axes take
    /// [`RetrieverParams`]'s defaults (they are unused by that retriever).
    pub fn params(&self) -> RetrieverParams {
        RetrieverParams {
            kind: self.retriever,
            top_k: self.top_k,
            fetch_k: self.fetch_k.unwrap_or(20),
            lambda_mult: self.lambda_mult.unwrap_or(0.5) as f32,
            ensemble_weight: self.ensemble_weight.unwrap_or(0.5) as f32,
            bm25: self.bm25.unwrap_or_default(),
            dense_index: self.dense_index.unwrap_or_default(),
            members: self
                .members
                .iter()
                .flatten()
                .map(|m| Member {
                    weight: m.weight as f32,
                    params: m.retrieval.params(),
                })
                .collect(),
            child: self.child_split(),
        }
    }

    /// Sets the chunking of these settings and of every member, recursively.
    pub fn set_chunking(&mut self, chunk_size: usize, chunk_overlap: usize) {
        self.chunk_size = chunk_size;
        self.chunk_overlap = chunk_overlap;
        for m in self.members.iter_mut().flatten() {
            m.retrieval.set_chunking(chunk_size, chunk_overlap);
        }
    }

    /// These settings with every definition name removed (recursively): equal for two
    /// retrievers exactly when they retrieve the same.
    pub fn without_names(&self) -> Retrieval {
        Retrieval {
            name: None,
            members: self.members.as_ref().map(|ms| {
                ms.iter()
                    .map(|m| WeightedRetrieval {
                        weight: m.weight,
                        retrieval: m.retrieval.without_names(),
                    })
                    .collect()
            }),
            ..self.clone()
        }
    }

    /// The child split of a parent retriever (`None` for the others).
    pub fn child_split(&self) -> Option<ChildSplit> {
        Some(ChildSplit {
            chunk_size: self.child_chunk_size?,
            chunk_overlap: self.child_chunk_overlap.unwrap_or(0),
        })
    }

    /// Every child split this retriever and its members search (each once, in first-use
    /// order): the child indexes a cell needs.
    pub fn child_splits(&self) -> Vec<ChildSplit> {
        let mut out = Vec::new();
        self.collect_child_splits(&mut out);
        out
    }

    fn collect_child_splits(&self, out: &mut Vec<ChildSplit>) {
        if let Some(s) = self.child_split().filter(|s| !out.contains(s)) {
            out.push(s);
        }
        for m in self.members.iter().flatten() {
            m.retrieval.collect_child_splits(out);
        }
    }

    /// Whether this retriever, or one of its members, reads the lexical (BM25) index.
    pub fn uses_lexical(&self) -> bool {
        match &self.members {
            Some(ms) => ms.iter().any(|m| m.retrieval.uses_lexical()),
            None => matches!(
                self.retriever,
                RetrieverKind::Bm25 | RetrieverKind::Ensemble
            ),
        }
    }

    /// These settings with the axes that do not apply to the retriever set to `None`, as the grid
    /// expands them (`fetch_k`/`lambda_mult` only for `mmr`, `ensemble_weight` only for
    /// `ensemble`, `bm25` only for `bm25`/`ensemble`, `dense_index` for all but `bm25`).
    pub fn collapsed(self) -> Retrieval {
        let mmr = self.retriever == RetrieverKind::Mmr;
        let parent = self.retriever == RetrieverKind::Parent;
        let composed = self.members.is_some();
        let pair = self.retriever == RetrieverKind::Ensemble && !composed;
        let lexical = pair || self.retriever == RetrieverKind::Bm25;
        let dense = !composed && self.retriever != RetrieverKind::Bm25;
        let members = self
            .members
            .filter(|_| self.retriever == RetrieverKind::Ensemble)
            .map(|ms| {
                ms.into_iter()
                    .map(|m| WeightedRetrieval {
                        weight: m.weight,
                        retrieval: m.retrieval.collapsed(),
                    })
                    .collect()
            });
        Retrieval {
            fetch_k: self.fetch_k.filter(|_| mmr),
            lambda_mult: self.lambda_mult.filter(|_| mmr),
            ensemble_weight: self.ensemble_weight.filter(|_| pair),
            bm25: self.bm25.filter(|_| lexical),
            dense_index: self.dense_index.filter(|_| dense),
            members,
            child_chunk_size: self.child_chunk_size.filter(|_| parent),
            child_chunk_overlap: self.child_chunk_overlap.filter(|_| parent),
            ..self
        }
    }

    /// Label of every axis but the chunk size, for charts that put the chunk size on the x axis:
    /// e.g. `mmr overlap 20% k=4 fetch_k=3 λ=0.5`. The overlap is shown as a percentage of the
    /// chunk size (one decimal), so a grid with `chunk_overlap = [0.2]` gives one series over
    /// all sizes; two cells that differ in any other axis never share a facet.
    pub fn facet_label(&self) -> String {
        let pct = if self.chunk_size > 0 {
            (1000.0 * self.chunk_overlap as f64 / self.chunk_size as f64).round() / 10.0
        } else {
            0.0
        };
        let mut s = format!("{}{} overlap {pct}%", self.name_prefix(), self.retriever);
        self.write_top_k(&mut s);
        self.write_optional_axes(&mut s);
        s
    }

    /// `NAME: ` for a named definition, else nothing.
    fn name_prefix(&self) -> String {
        // `mmr: mmr ...` says nothing the kind does not
        match &self.name {
            Some(n) if n != self.retriever.as_str() => format!("{n}: "),
            _ => String::new(),
        }
    }

    /// ` k=N`, except for a composed ensemble (its members carry their own `k`).
    fn write_top_k(&self, s: &mut String) {
        if self.members.is_none() {
            s.push_str(&format!(" k={}", self.top_k));
        }
    }

    /// The retriever with its own settings, without the chunking and top_k: e.g. `dense`,
    /// `mmr fetch_k=3 λ=0.5`, `ensemble bm25=0.3/dense=0.70 bm25:okapi`.
    /// A named definition reads `NAME (settings)`, e.g. `seed (ensemble 0.3×bm25:okapi k=5 +
    /// 0.7×mmr k=4 fetch_k=3 λ=0.5)`.
    pub fn retriever_label(&self) -> String {
        let s = self.unnamed_label();
        match &self.name {
            Some(name) => format!("{name} ({s})"),
            None => s,
        }
    }

    fn unnamed_label(&self) -> String {
        let mut s = self.retriever.to_string();
        self.write_optional_axes(&mut s);
        // `bm25 bm25:okapi` reads as `bm25:okapi`, `dense dense:exact` as `dense:exact`
        for kind in ["bm25", "dense"] {
            let doubled = format!("{kind} {kind}:");
            if s.starts_with(&doubled) {
                s = s.replacen(&doubled, &format!("{kind}:"), 1);
            }
        }
        s
    }

    fn write_optional_axes(&self, s: &mut String) {
        use fmt::Write as _;
        if let Some(ms) = &self.members {
            let parts: Vec<String> = ms
                .iter()
                .map(|m| {
                    let inner = &m.retrieval;
                    let mut label = inner.retriever.to_string();
                    inner.write_top_k(&mut label);
                    inner.write_optional_axes(&mut label);
                    let label = if inner.members.is_some() {
                        format!("({label})")
                    } else {
                        label
                    };
                    format!("{}×{label}", m.weight)
                })
                .collect();
            let _ = write!(s, " {}", parts.join(" + "));
        }
        if self.child_chunk_size.is_some() || self.child_chunk_overlap.is_some() {
            let size = self
                .child_chunk_size
                .map_or_else(|| "?".to_string(), |c| c.to_string());
            let _ = write!(s, " child={size}/{}", self.child_chunk_overlap.unwrap_or(0));
        }
        if let Some(fk) = self.fetch_k {
            let _ = write!(s, " fetch_k={fk}");
        }
        if let Some(l) = self.lambda_mult {
            let _ = write!(s, " λ={l}");
        }
        if let Some(w) = self.ensemble_weight {
            let _ = write!(s, " bm25={w}/dense={:.2}", 1.0 - w);
        }
        if let Some(b) = self.bm25.filter(|b| *b != Bm25Variant::default()) {
            let _ = write!(s, " bm25:{b}");
        }
        if let Some(d) = self.dense_index.filter(|d| *d != DenseIndexKind::default()) {
            let _ = write!(s, " dense:{d}");
        }
    }
}

impl fmt::Display for Retrieval {
    /// e.g. `mmr chunk 100/20 k=4 fetch_k=3 λ=0.5`: every axis that applies; the BM25 and dense
    /// variants only when they are not the defaults. A named definition starts with its name
    /// (`seed: ensemble chunk 500/100 0.3×bm25 k=5 bm25:okapi + 0.7×mmr k=4 fetch_k=3 λ=0.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = format!(
            "{}{} chunk {}/{}",
            self.name_prefix(),
            self.retriever,
            self.chunk_size,
            self.chunk_overlap
        );
        self.write_top_k(&mut s);
        self.write_optional_axes(&mut s);
        f.write_str(&s)
    }
}

/// One model of an experiment: a GGUF file and how to prompt and sample it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Display name, unique within the experiment (e.g. `gemma-3-270m`). Not part of the cell id.
    pub name: String,
    /// Path of the GGUF file (resolved against the experiment file's directory).
    pub gguf: PathBuf,
    /// Hex sha256 of the GGUF file's bytes (see [`crate::fingerprint`]); part of the cell id.
    pub gguf_sha256: String,
    /// Prompting and sampling settings. `params.threads` is the resolved thread count of the
    /// machine that expanded the experiment; the worker resolves it again where it runs unless
    /// `threads` is set.
    pub params: GenParams,
    /// `threads` as the user set it; `None` means "all cores of the machine the cell runs on"
    /// and keeps the thread count out of the cell id, so ids do not differ between machines.
    pub threads: Option<i32>,
    /// The name of the experiment's `[prompt]` entry this model's prompt comes from (`None` for
    /// a template or `chat` given inline). When a model lists several prompts, each variant is a
    /// model of its own named `NAME/PROMPT`. A label only: the template itself is in `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_name: Option<String>,
    /// Batched decoding ([`Batching`]); not part of the cell id.
    #[serde(default, skip_serializing_if = "Batching::is_default")]
    pub batching: Batching,
}

impl ModelSpec {
    /// The generation settings to run with on this machine: `params` with `threads` resolved
    /// (the user's value, else this machine's available cores).
    pub fn resolved_params(&self) -> GenParams {
        GenParams {
            threads: self
                .threads
                .unwrap_or_else(crate::generate::default_threads),
            ..self.params.clone()
        }
    }
}

/// One grid cell: a model (or none, retrieval only) with one retrieval setting over one corpus
/// and embedding model. Serialised as JSON into the `cells` table and onto the worker's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable id: 16 hex digits of [`Cell::compute_id`].
    pub id: String,
    /// The model; `None` for retrieval-only cells.
    pub model: Option<ModelSpec>,
    /// Retrieval settings.
    pub retrieval: Retrieval,
    /// Corpus files, in order.
    pub corpus: Vec<PathBuf>,
    /// [`crate::corpus::corpus_fingerprint`] of `corpus` (file names and bytes).
    pub corpus_fingerprint: String,
    /// Directory of the sentence-transformers embedding model.
    pub embedding_model: PathBuf,
    /// [`crate::embed::fingerprint_dir`] of `embedding_model` (weights and tokenizer bytes).
    pub embedder_fingerprint: String,
}

impl Cell {
    /// The cell id for the current contents: the first 16 hex digits of sha256 over a canonical
    /// JSON of [`IDENTITY_VERSION`], the model's GGUF sha256 and generation settings (`threads`
    /// only if the user set it; not the name or path), the retrieval settings (axes that do not
    /// apply omitted), the corpus fingerprint and the embedder fingerprint. Question ids and
    /// repeats are not part of it: they key the answer rows within a cell.
    pub fn compute_id(&self) -> String {
        let model = self.model.as_ref().map(|m| {
            let mut params = serde_json::to_value(&m.params).unwrap_or_default();
            if let Some(p) = params.as_object_mut() {
                match m.threads {
                    Some(t) => p.insert("threads".into(), t.into()),
                    None => p.remove("threads"),
                };
            }
            serde_json::json!({ "gguf_sha256": m.gguf_sha256, "params": params })
        });
        let identity = serde_json::json!({
            "version": IDENTITY_VERSION,
            "model": model,
            "retrieval": self.retrieval.without_names(),
            "corpus": self.corpus_fingerprint,
            "embedder": self.embedder_fingerprint,
        });
        let canonical = strip_nulls(identity).to_string();
        hex::encode(&Sha256::digest(canonical.as_bytes())[..8])
    }

    /// The model's display name, or [`RETRIEVAL_ONLY`].
    pub fn model_name(&self) -> &str {
        self.model
            .as_ref()
            .map_or(RETRIEVAL_ONLY, |m| m.name.as_str())
    }

    /// The axes every output shows.
    pub fn axes(&self) -> CellAxes {
        CellAxes {
            cell_id: self.id.clone(),
            model: self.model_name().to_string(),
            retrieval: self.retrieval.clone(),
        }
    }
}

impl fmt::Display for Cell {
    /// `model · retrieval settings`, e.g. `gemma-3-270m · mmr chunk 100/20 k=4 fetch_k=3 λ=0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} · {}", self.model_name(), self.retrieval)
    }
}

/// Removes `null` members of JSON objects and sorts their keys, recursively: an axis that does
/// not apply (or a new optional axis left unset) does not change an id, and neither does the
/// order serde writes fields in.
fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(strip_nulls).collect())
        }
        v => v,
    }
}

/// The axes of one cell as every output shows them: its id, model name and retrieval settings.
/// Serialised flat (`cell_id`, `model`, `chunk_size`, `chunk_overlap`, `retriever`, `top_k`,
/// `fetch_k`, `lambda_mult`, `ensemble_weight`, `bm25`, `dense_index`); [`CellAxes::columns`]
/// and [`CellAxes::values`] give that list to exports, so an axis added to [`Retrieval`] appears
/// in every output without further code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellAxes {
    /// Stable id of the cell.
    pub cell_id: String,
    /// Model name; [`RETRIEVAL_ONLY`] for cells without a model.
    pub model: String,
    /// Retrieval settings (serialised inline).
    #[serde(flatten)]
    pub retrieval: Retrieval,
}

impl CellAxes {
    /// Column names of the axes, in output order.
    pub fn columns() -> Vec<String> {
        let example = CellAxes {
            cell_id: String::new(),
            model: String::new(),
            retrieval: Retrieval {
                chunk_size: 0,
                chunk_overlap: 0,
                retriever: RetrieverKind::Dense,
                top_k: 0,
                fetch_k: None,
                lambda_mult: None,
                ensemble_weight: None,
                bm25: None,
                dense_index: None,
                name: None,
                members: None,
                child_chunk_size: None,
                child_chunk_overlap: None,
            },
        };
        match serde_json::to_value(example) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// The axis values in [`CellAxes::columns`] order, as text: numbers in Rust's shortest
    /// round-trip form, enums by their names, `None` as an empty string.
    pub fn values(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m
                .into_values()
                .map(|v| match v {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `model · retrieval settings`, as [`Cell`]'s Display.
    pub fn label(&self) -> String {
        format!("{} · {}", self.model, self.retrieval)
    }

    /// The retrieval settings' label without the model, e.g. `mmr chunk 100/20 k=4 λ=0.5`.
    pub fn retrieval_label(&self) -> String {
        self.retrieval.to_string()
    }
}

/// Labels for `cells` that tell every cell apart: [`CellAxes::label`], with ` (cell <id>)`
/// appended to labels that several cells share (cells with the same axes over different corpus,
/// model or embedding contents, e.g. before and after a corpus edit).
pub fn distinct_labels<'a>(cells: impl IntoIterator<Item = &'a CellAxes>) -> Vec<String> {
    let cells: Vec<&CellAxes> = cells.into_iter().collect();
    let labels: Vec<String> = cells.iter().map(|c| c.label()).collect();
    labels
        .iter()
        .zip(&cells)
        .map(|(l, c)| {
            if labels.iter().filter(|o| *o == l).count() > 1 {
                format!("{l} (cell {})", c.cell_id)
            } else {
                l.clone()
            }
        })
        .collect()
}

/// Status of a cell in the `cells` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    /// Known, not started (also: not in the database at all).
    Pending,
    /// A worker is (or was, if the sweep was killed) running it.
    Running,
    /// Every question × repeat has an `ok` answer.
    Done,
    /// The worker crashed, timed out or could not start, or answers failed; the error says why.
    Failed,
    /// A sweep was killed while it ran.
    Interrupted,
    /// A race stopped it as significantly worse than the leader (evidence in the
    /// `eliminations` table); its answers so far are kept and a plain `run` completes it.
    Eliminated,
}

impl CellStatus {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Pending => "pending",
            CellStatus::Running => "running",
            CellStatus::Done => "done",
            CellStatus::Failed => "failed",
            CellStatus::Interrupted => "interrupted",
            CellStatus::Eliminated => "eliminated",
        }
    }

    /// Parses a stored name; unknown text reads as `Pending`.
    pub fn parse(s: &str) -> CellStatus {
        match s {
            "running" => CellStatus::Running,
            "done" => CellStatus::Done,
            "failed" => CellStatus::Failed,
            "interrupted" => CellStatus::Interrupted,
            "eliminated" => CellStatus::Eliminated,
            _ => CellStatus::Pending,
        }
    }
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status of one stored answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerStatus {
    /// Retrieved (and generated and scored, when the cell has a model).
    #[default]
    Ok,
    /// Something failed; the answer's `error` says what.
    Failed,
}

impl AnswerStatus {
    /// `ok` or `failed`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Ok => "ok",
            AnswerStatus::Failed => "failed",
        }
    }

    /// Parses a stored name; anything but `ok` reads as `Failed`.
    pub fn parse(s: &str) -> AnswerStatus {
        if s == "ok" {
            AnswerStatus::Ok
        } else {
            AnswerStatus::Failed
        }
    }
}

impl fmt::Display for AnswerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an answer was decoded: alone in its own llama.cpp context, or batched with other
/// questions of its cell ([`crate::generate::Generator::answer_many`]). The report's latency
/// figures (response time, TTFT, tokens/s) use only answers decoded alone; batched answers carry
/// timings that include the other sequences' work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// One sequence in a fresh context: its timings are the question's latency.
    #[default]
    Single,
    /// One of up to `parallel` sequences decoded together (continuous batching).
    Batched,
}

impl DecodeMode {
    /// `single` or `batched`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeMode::Single => "single",
            DecodeMode::Batched => "batched",
        }
    }

    /// Parses a stored name; anything but `batched` (rows of earlier versions have none) reads
    /// as `Single`, which is how every answer was decoded before batching existed.
    pub fn parse(s: &str) -> DecodeMode {
        if s == "batched" {
            DecodeMode::Batched
        } else {
            DecodeMode::Single
        }
    }
}

impl fmt::Display for DecodeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a model's cell decodes its questions: `parallel` sequences at once (llama.cpp's
/// `--parallel`), after a latency pass of `latency_questions` questions decoded alone. Execution
/// settings, not part of the cell id: greedy answers are the same either way (up to the
/// floating-point differences measured in the README's "Batched generation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    /// Sequences decoded together (>= 1; 1 = every question alone, as before batching).
    pub parallel: u32,
    /// Questions per repeat decoded alone first, so the report's latency figures come from
    /// questions decoded alone (the first ones in asking order).
    pub latency_questions: u32,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            parallel: 1,
            latency_questions: DEFAULT_LATENCY_QUESTIONS,
        }
    }
}

/// The generation family of a model: the first 16 hex digits of sha256 over its GGUF sha256
/// and its generation settings as resolved on this machine (threads included: a different thread
/// count can change float summation order). Answers of two cells can be shared only within one
/// family; it prefixes every [`generation_key`].
pub fn generation_family(model: &ModelSpec) -> String {
    let identity = serde_json::json!({
        "gguf_sha256": model.gguf_sha256,
        "params": model.resolved_params(),
    });
    hex::encode(&Sha256::digest(strip_nulls(identity).to_string().as_bytes())[..8])
}

/// The content address of one generation: [`generation_family`] followed by 32 hex digits of
/// sha256 over the repeat, the question, the retrieved contexts (in rank order, before fitting
/// to `n_ctx`, which the family's settings determine) and the sampling seed (0 for greedy
/// decoding, where it plays no part). Two answers with the same key decode the same prompt
/// tokens with the same settings and seed, so the second can reuse the first's generation. The
/// repeat is part of the key: repeats exist to measure again, so they are never shared with
/// each other, only with the same repeat of another cell.
pub fn generation_key(
    model: &ModelSpec,
    seed: u32,
    repeat: u32,
    question: &str,
    contexts: &[&str],
) -> String {
    let seed = if model.params.sampling.is_greedy() {
        0
    } else {
        seed
    };
    let content = serde_json::json!({
        "seed": seed,
        "repeat": repeat,
        "question": question,
        "contexts": contexts,
    });
    format!(
        "{}{}",
        generation_family(model),
        hex::encode(&Sha256::digest(content.to_string().as_bytes())[..16])
    )
}

/// Default [`Batching::latency_questions`]: 10, the size of the studies' question sets, so a
/// sweep of up to 10 questions per cell is timed entirely alone and a bigger one gets 10 latency
/// samples per cell (a 95% CI from 10 paired questions) while the rest is batched.
pub const DEFAULT_LATENCY_QUESTIONS: u32 = 10;

impl Batching {
    /// Whether these are the defaults (everything decoded alone), so a cell spec omits them.
    pub fn is_default(&self) -> bool {
        self.parallel <= 1
    }

    /// Which of a cell's pending answers are decoded alone: the answers whose 0-based position
    /// in the asking order is below `latency_questions`, all of them when `parallel` is 1.
    pub fn decode_alone(&self, position: usize) -> bool {
        self.parallel <= 1 || position < self.latency_questions as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrieval() -> Retrieval {
        Retrieval {
            chunk_size: 100,
            chunk_overlap: 20,
            retriever: RetrieverKind::Mmr,
            top_k: 4,
            fetch_k: Some(3),
            lambda_mult: Some(0.25),
            ensemble_weight: None,
            bm25: None,
            dense_index: Some(DenseIndexKind::Arroy),
            name: None,
            members: None,
            child_chunk_size: None,
            child_chunk_overlap: None,
        }
    }

    fn cell(model: Option<ModelSpec>) -> Cell {
        let mut c = Cell {
            id: String::new(),
            model,
            retrieval: retrieval(),
            corpus: vec![PathBuf::from("a/doc.pdf")],
            corpus_fingerprint: "c0".into(),
            embedding_model: PathBuf::from("m"),
            embedder_fingerprint: "e0".into(),
        };
        c.id = c.compute_id();
        c
    }

    fn model() -> ModelSpec {
        ModelSpec {
            name: "a".into(),
            gguf: PathBuf::from("a.gguf"),
            gguf_sha256: "g0".into(),
            params: GenParams {
                threads: 2,
                ..GenParams::default()
            },
            threads: None,
            prompt_name: None,
            batching: Default::default(),
        }
    }

    #[test]
    fn ids_follow_content_not_paths_names_or_unset_threads() {
        let base = cell(Some(model()));
        let same = |f: &dyn Fn(&mut Cell)| {
            let mut c = base.clone();
            f(&mut c);
            c.compute_id()
        };
        assert_eq!(base.id.len(), 16);
        // paths, the model's name and an unset thread count do not change the id
        assert_eq!(
            same(&|c| c.corpus = vec![PathBuf::from("b/doc.pdf")]),
            base.id
        );
        assert_eq!(same(&|c| c.embedding_model = PathBuf::from("x")), base.id);
        assert_eq!(
            same(&|c| c.model.as_mut().unwrap().name = "renamed".into()),
            base.id
        );
        assert_eq!(
            same(&|c| c.model.as_mut().unwrap().params.threads = 64),
            base.id
        );
        // content and settings do
        for f in [
            &(|c: &mut Cell| c.corpus_fingerprint = "c1".into()) as &dyn Fn(&mut Cell),
            &|c| c.embedder_fingerprint = "e1".into(),
            &|c| c.model.as_mut().unwrap().gguf_sha256 = "g1".into(),
            &|c| c.model.as_mut().unwrap().threads = Some(2),
            &|c| c.model.as_mut().unwrap().params.sampling.temperature = 0.5,
            &|c| c.model.as_mut().unwrap().params.stop = vec!["\n".into()],
            &|c| c.retrieval.lambda_mult = Some(0.75),
            &|c| c.retrieval.fetch_k = Some(4),
            &|c| c.retrieval.dense_index = Some(DenseIndexKind::Exact),
            &|c| c.model = None,
        ] {
            assert_ne!(same(f), base.id);
        }
    }

    #[test]
    fn every_axis_is_a_column_and_changes_the_label() {
        let cols = CellAxes::columns();
        for want in [
            "cell_id",
            "model",
            "chunk_size",
            "chunk_overlap",
            "retriever",
            "top_k",
            "fetch_k",
            "lambda_mult",
            "ensemble_weight",
            "bm25",
            "dense_index",
        ] {
            assert!(cols.iter().any(|c| c == want), "{want} in {cols:?}");
        }
        let a = cell(None).axes();
        assert_eq!(a.values().len(), cols.len());
        // each retrieval axis, changed alone, changes both the label and the facet label
        type Edit = Box<dyn Fn(&mut Retrieval)>;
        let variants: Vec<Edit> = vec![
            Box::new(|r| r.chunk_overlap = 25),
            Box::new(|r| r.top_k = 5),
            Box::new(|r| r.fetch_k = Some(9)),
            Box::new(|r| r.lambda_mult = Some(0.75)),
            Box::new(|r| r.ensemble_weight = Some(0.3)),
            Box::new(|r| r.bm25 = Some(Bm25Variant::Okapi)),
            Box::new(|r| r.dense_index = Some(DenseIndexKind::Exact)),
            Box::new(|r| r.retriever = RetrieverKind::Dense),
        ];
        for v in variants {
            let mut b = a.clone();
            v(&mut b.retrieval);
            assert_ne!(a.label(), b.label(), "{b:?}");
            assert_ne!(a.retrieval.facet_label(), b.retrieval.facet_label());
            assert_ne!(a.values(), b.values());
        }
        let mut b = a.clone();
        b.retrieval.chunk_size = 200;
        assert_ne!(a.label(), b.label());
    }

    /// Every field of [`Retrieval`] found by its serialisation, so an axis added later is covered
    /// without editing this test: changing any one of them must change the cell id, the label,
    /// the facet and the export values.
    #[test]
    fn any_axis_added_to_retrieval_reaches_every_output() {
        let base = cell(None);
        let serde_json::Value::Object(fields) = serde_json::to_value(&base.retrieval).unwrap()
        else {
            panic!("Retrieval serialises as an object")
        };
        let candidates: Vec<serde_json::Value> = [
            "7",
            "0.125",
            "\"okapi\"",
            "\"exact\"",
            "\"tantivy\"",
            "\"arroy\"",
            "\"dense\"",
            "\"bm25\"",
            "\"ensemble\"",
        ]
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .chain([serde_json::json!([{
            "weight": 0.5,
            "retrieval": serde_json::to_value(&base.retrieval).unwrap(),
        }])])
        .collect();
        for (key, value) in &fields {
            let changed = candidates
                .iter()
                .filter(|c| *c != value)
                .find_map(|c| {
                    let mut m = fields.clone();
                    m.insert(key.clone(), c.clone());
                    serde_json::from_value::<Retrieval>(serde_json::Value::Object(m)).ok()
                })
                .unwrap_or_else(|| panic!("no test value for axis `{key}`"));
            let mut other = base.clone();
            other.retrieval = changed;
            other.id = other.compute_id();
            let (a, b) = (base.axes(), other.axes());
            if key == "name" {
                // a definition's name is a label: renaming it keeps the cells
                assert_eq!(base.id, other.id, "`{key}` does not change the id");
            } else {
                assert_ne!(base.id, other.id, "`{key}` changes the id");
            }
            assert_ne!(a.label(), b.label(), "`{key}` shows in the label");
            assert_ne!(a.values(), b.values(), "`{key}` is exported");
            if key != "chunk_size" {
                assert_ne!(
                    a.retrieval.facet_label(),
                    b.retrieval.facet_label(),
                    "`{key}` separates chart series"
                );
            }
            assert!(CellAxes::columns().contains(key), "`{key}` is a column");
        }
    }

    #[test]
    fn shared_labels_are_told_apart_by_cell_id() {
        let a = cell(None).axes();
        let mut b = a.clone();
        b.cell_id = "ffff".into();
        let mut c = a.clone();
        c.cell_id = "eeee".into();
        c.retrieval.top_k = 9;
        let labels = distinct_labels([&a, &b, &c]);
        assert!(labels[0].ends_with(&format!("(cell {})", a.cell_id)));
        assert!(labels[1].ends_with("(cell ffff)"));
        assert_eq!(labels[2], c.label());
    }

    #[test]
    fn cells_round_trip_through_json() {
        let c = cell(Some(model()));
        let back: Cell = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.compute_id(), c.id);
    }
}
