//! Looking inside an experiment without sweeping it: the chunks of one splitter setting
//! (`orchestrate chunks`), the ranked chunks a retriever returns for a query
//! (`orchestrate retrieve`), both as JSON lines, re-computing the stored per-answer metrics
//! from the stored retrieved chunk ids and answers (`orchestrate rescore`), and the progress of
//! a sweep per cell (`orchestrate status`).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::cell::{AnswerStatus, Cell, CellStatus};
use crate::experiment::Experiment;
use crate::index::ExperimentIndexes;
use crate::retrieve::RetrieverParams;
use crate::score::retrieval::JudgeCorpus;
use crate::split::RecursiveCharacterTextSplitter;
use crate::store::Store;

/// Errors of the inspection commands.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The chunk setting is missing or ambiguous; the message says which flag to give.
    #[error("{0}")]
    Setting(String),
    /// `rescore` of answers that have METEOR, without the WordNet database (in this directory)
    /// that METEOR needs: rescoring would drop the stored values.
    #[error(
        "the stored answers have METEOR, which needs WordNet 3.0 in {0} (install it with \
         `apt-get install wordnet-base`, or set ORCHESTRATE_WORDNET); rescoring without it \
         would drop those values"
    )]
    NoWordNet(std::path::PathBuf),
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] crate::corpus::CorpusError),
    /// Invalid splitter sizes.
    #[error(transparent)]
    Split(#[from] crate::split::SplitError),
    /// The index could not be opened or built.
    #[error(transparent)]
    Catalog(#[from] crate::index::CatalogError),
    /// The embedding model failed on the query.
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    /// Retrieval failed (invalid parameters, index read error).
    #[error(transparent)]
    Retrieve(#[from] crate::retrieve::RetrieveError),
    /// The QA file is invalid.
    #[error(transparent)]
    Qa(#[from] crate::qa::QaError),
    /// The result database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising a line failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Loading the model or generating failed.
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    /// Loading the cell runner failed.
    #[error(transparent)]
    Worker(#[from] crate::worker::WorkerError),
}

/// Resolves the (chunk_size, chunk_overlap) in characters to inspect.
///
/// `chunk_size` defaults to the experiment's only chunk size (an error lists the sizes when there
/// are several). `chunk_overlap` is characters when >= 1 and a fraction of `chunk_size` when
/// below 1 (as in the experiment file, see [`crate::split::resolve_overlap`]); it defaults to the
/// only overlap the experiment uses with that size, else 0 when the size is not in the grid.
/// Errors: [`InspectError::Setting`] naming the flag to add; [`InspectError::Split`]
/// ([`crate::split::SplitError::InvalidOverlap`]) for a negative, NaN or non-whole (above 1)
/// `chunk_overlap`.
pub fn resolve_setting(
    exp: &Experiment,
    chunk_size: Option<usize>,
    chunk_overlap: Option<f64>,
) -> Result<(usize, usize), InspectError> {
    let sizes: BTreeSet<usize> = exp.cells.iter().map(|c| c.retrieval.chunk_size).collect();
    let size = match chunk_size {
        Some(s) => s,
        None if sizes.len() == 1 => *sizes.iter().next().unwrap_or(&0),
        None => {
            return Err(InspectError::Setting(format!(
                "{} has several chunk sizes ({}); choose one with --chunk-size",
                exp.path.display(),
                sizes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let overlap = match chunk_overlap {
        Some(o) => crate::split::resolve_overlap(size, o)?,
        None => {
            let overlaps: BTreeSet<usize> = exp
                .cells
                .iter()
                .filter(|c| c.retrieval.chunk_size == size)
                .map(|c| c.retrieval.chunk_overlap)
                .collect();
            match overlaps.len() {
                0 => 0,
                1 => *overlaps.iter().next().unwrap_or(&0),
                _ => {
                    return Err(InspectError::Setting(format!(
                        "{} uses several overlaps with chunk size {size} ({}); choose one with --chunk-overlap",
                        exp.path.display(),
                        overlaps.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
    };
    Ok((size, overlap))
}

/// Splits the experiment's corpus with `RecursiveCharacterTextSplitter(chunk_size,
/// chunk_overlap)` (characters) exactly as an index build does and writes one JSON object per
/// chunk and line: `{"id", "source", "page", "start", "text"}` ([`crate::split::Chunk`]; `page`
/// 1-based, `start` in characters within the page). Returns the number of chunks.
/// Errors: corpus extraction, invalid sizes, output.
pub fn write_chunks(
    exp: &Experiment,
    chunk_size: usize,
    chunk_overlap: usize,
    mut out: impl Write,
) -> Result<usize, InspectError> {
    let splitter = RecursiveCharacterTextSplitter::new(chunk_size, chunk_overlap)?;
    let mut pages = Vec::new();
    for path in &exp.corpus {
        pages.extend(crate::corpus::load_pages(path)?);
    }
    let chunks = splitter.split_pages(&pages);
    for c in &chunks {
        serde_json::to_writer(&mut out, c)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(chunks.len())
}

/// One line of `orchestrate retrieve`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievedLine<'a> {
    /// 1-based rank.
    pub rank: usize,
    /// Chunk id within the index.
    pub id: u32,
    /// Retriever score (cosine for dense/MMR, BM25 for bm25, fused RRF for ensemble).
    pub score: f32,
    /// Source file name.
    pub source: &'a str,
    /// 1-based page.
    pub page: u32,
    /// Start offset within the page, characters.
    pub start: usize,
    /// The chunk text.
    pub text: &'a str,
}

/// Runs retriever `params` for `query` on the experiment's index for `chunk_size` /
/// `chunk_overlap` (opened from `<store_dir>/indexes`, built first if missing — minutes for a
/// long PDF) and writes the ranked chunks as JSON lines ([`RetrievedLine`]). Returns how many.
/// Errors: index, embedding, retrieval, output.
pub fn write_retrieved(
    exp: &Experiment,
    store_dir: &Path,
    chunk_size: usize,
    chunk_overlap: usize,
    params: &RetrieverParams,
    query: &str,
    mut out: impl Write,
) -> Result<usize, InspectError> {
    params.validate()?;
    let mut indexes = ExperimentIndexes::new(&exp.corpus, &exp.embedding_model, store_dir)
        .with_fingerprints(&exp.corpus_fingerprint, &exp.embedder_fingerprint);
    let (index, info) = indexes.open(chunk_size, chunk_overlap)?;
    if !info.cache_hit {
        tracing::info!(
            "built index for chunk {chunk_size}/{chunk_overlap} in {:.1} s",
            info.build_seconds
        );
    }
    let splits = params.child_splits();
    let info = indexes.prepare_with_children(chunk_size, chunk_overlap, &splits)?;
    let children =
        crate::index::catalog::open_children_of(&info.dir, &exp.embedder_fingerprint, &splits)
            .map_err(crate::index::CatalogError::from)?;
    let qvec = indexes.embedder()?.embed_one(query)?;
    let hits = crate::retrieve::retrieve_with_children(&index, &children, query, &qvec, params)?;
    let mut n = 0;
    for (i, h) in hits.iter().enumerate() {
        let Some(c) = index.chunk(h.chunk_id) else {
            continue;
        };
        let line = RetrievedLine {
            rank: i + 1,
            id: c.id,
            score: h.score,
            source: &c.source,
            page: c.page,
            start: c.start,
            text: &c.text,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// A retrieved chunk in [`Asked::chunks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskedChunk {
    /// 1-based rank.
    pub rank: usize,
    /// Chunk id within the index.
    pub id: u32,
    /// Retriever score (as in [`RetrievedLine::score`]).
    pub score: f32,
    /// 1-based page.
    pub page: u32,
    /// Whether the chunk was in the prompt (false: dropped to fit `n_ctx`).
    pub given: bool,
}

/// What `orchestrate ask` prints: one question answered as a cell would answer it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Asked {
    /// Model name from the experiment.
    pub model: String,
    /// The question as asked.
    pub question: String,
    /// The exact prompt text the model decoded (chat template or prompt template applied, with
    /// the contexts that fitted).
    pub prompt: String,
    /// The answer: generated text up to the first stop string, trimmed.
    pub answer: String,
    /// The generated text before the stop-string cut and trimming.
    pub raw: String,
    /// Why generation ended: `Eos`, `StopString` or `MaxTokens`.
    pub stopped_by: crate::generate::StopReason,
    /// Prompt length, tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Seconds to the first generated token.
    pub ttft_s: f64,
    /// Seconds to the end of generation.
    pub response_s: f64,
    /// The retrieved chunks in rank order.
    pub chunks: Vec<AskedChunk>,
}

/// Answers `question` as `cell` would, with the cell runner its worker uses
/// ([`crate::worker::CellRunner`]: same retrieval, prompt building, context fitting, sampling and
/// stop strings), in this process and without storing anything. The cell's index is opened from
/// `<store_dir>/indexes` (built first if missing). For tuning prompts and stop strings: the
/// result holds the prompt as decoded and why generation stopped.
///
/// Errors: [`InspectError::Setting`] for a cell without a model; index, embedding, retrieval,
/// model loading and generation errors.
pub fn ask(cell: &Cell, store_dir: &Path, question: &str) -> Result<Asked, InspectError> {
    let Some(model) = &cell.model else {
        return Err(InspectError::Setting(
            "a retrieval-only cell has no model to ask; add a [[model]]".into(),
        ));
    };
    cell.retrieval.params().validate()?;
    let mut indexes = ExperimentIndexes::new(&cell.corpus, &cell.embedding_model, store_dir)
        .with_fingerprints(&cell.corpus_fingerprint, &cell.embedder_fingerprint);
    let info = indexes.prepare_with_children(
        cell.retrieval.chunk_size,
        cell.retrieval.chunk_overlap,
        &cell.retrieval.child_splits(),
    )?;
    let mut runner = crate::worker::CellRunner::load(cell.clone(), &info.dir, false)?;
    let ran = runner.run(question, 0, 0).map_err(InspectError::Setting)?;
    let Some(g) = ran.generation else {
        return Err(InspectError::Setting("the cell generated nothing".into()));
    };
    let ranked: Vec<(f32, &crate::split::Chunk)> = ran
        .hits
        .iter()
        .filter_map(|h| runner.index().chunk(h.chunk_id).map(|c| (h.score, c)))
        .collect();
    let contexts: Vec<&str> = ranked.iter().map(|(_, c)| c.text.as_str()).collect();
    let prompt = runner
        .prompt(question, &contexts[..g.contexts_used.min(contexts.len())])
        .unwrap_or_else(|| Ok(String::new()))?;
    Ok(Asked {
        model: model.name.clone(),
        question: question.to_string(),
        prompt,
        answer: g.text,
        raw: g.raw,
        stopped_by: g.stopped_by,
        prompt_tokens: g.prompt_tokens,
        completion_tokens: g.completion_tokens,
        ttft_s: g.ttft_s,
        response_s: g.response_s,
        chunks: ranked
            .iter()
            .enumerate()
            .map(|(i, (score, c))| AskedChunk {
                rank: i + 1,
                id: c.id,
                score: *score,
                page: c.page,
                given: i < g.contexts_used,
            })
            .collect(),
    })
}

/// What [`rescore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescoreSummary {
    /// Answers whose metrics were recomputed and stored.
    pub updated: usize,
    /// `ok` answers left alone because their question is no longer in the QA file (or its text
    /// changed).
    pub stale: usize,
    /// `ok` answers left alone because the index their cell recorded is gone, with those cells'
    /// labels: (answers, labels).
    pub index_gone: (usize, Vec<String>),
}

/// Recomputes the per-answer metrics ([`crate::score::metrics_for`]) of every stored `ok` answer
/// of `cells` from its stored retrieved chunk ids and answer text and `questions` (the current QA
/// file), and stores them, replacing the old ones. Chunks are read from the index each cell
/// recorded (`cells.index_dir`), never from an index rebuilt from today's files, so chunk ids
/// always mean what they meant when the answer was stored. BEIR questions (with qrels) are judged
/// per document via the index's chunk table. Cosine similarity is not recomputed. Use it after
/// upgrading orchestrate or editing evidence.
///
/// Answers whose recorded index is missing or unreadable (e.g. removed to free disk after a corpus
/// edit) are left alone, counted in [`RescoreSummary::index_gone`] with a warning naming the cell.
///
/// Errors: [`InspectError::NoWordNet`]; database errors.
pub fn rescore(
    cells: &[crate::store::StoredCell],
    questions: &[crate::qa::Question],
    db: &Store,
) -> Result<RescoreSummary, InspectError> {
    let questions: HashMap<&str, &crate::qa::Question> =
        questions.iter().map(|q| (q.id.as_str(), q)).collect();
    let answers = db.answers(cells)?;
    // Rescoring replaces each answer's metrics: without WordNet it would drop stored METEOR.
    if answers.iter().any(|a| a.metrics.contains_key("meteor"))
        && crate::score::wordnet::global().is_none()
    {
        return Err(InspectError::NoWordNet(
            crate::score::wordnet::database_dir(),
        ));
    }
    let need_judge = questions.values().any(|q| crate::score::needs_judge(q));
    let mut opened: HashMap<String, (Vec<crate::split::Chunk>, Option<JudgeCorpus>)> =
        HashMap::new();
    let mut summary = RescoreSummary::default();
    for a in answers.iter().filter(|a| a.status == AnswerStatus::Ok) {
        let Some(q) = questions
            .get(a.question_id.as_str())
            .filter(|q| q.question == a.question)
        else {
            summary.stale += 1;
            continue;
        };
        let cell = cells.iter().find(|c| c.cell.id == a.cell.cell_id);
        let Some(dir) = a.index_dir.clone() else {
            note_gone(&mut summary, a, "no index was recorded for it");
            continue;
        };
        let (chunks, judge) = match opened.entry(dir.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let chunks = match crate::index::cache::read_index_chunks(Path::new(&dir)) {
                    Ok(c) => c,
                    Err(e) => {
                        note_gone(&mut summary, a, &format!("{dir}: {e}"));
                        continue;
                    }
                };
                let judge = need_judge.then(|| {
                    JudgeCorpus::new(chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)))
                });
                v.insert((chunks, judge))
            }
        };
        let generated = cell.is_some_and(|c| c.cell.model.is_some());
        let metrics = crate::score::metrics_for(
            q,
            &a.chunk_ids,
            a.cell.retrieval.top_k,
            chunks,
            judge.as_ref(),
            generated.then_some(a.answer.as_str()),
        );
        if db.set_answer_metrics(&a.cell.cell_id, a.repeat, &a.question_id, &metrics)? {
            summary.updated += 1;
        }
    }
    Ok(summary)
}

/// Counts an answer whose cell's index cannot be read, warning once per cell.
fn note_gone(summary: &mut RescoreSummary, a: &crate::store::AnswerRecord, why: &str) {
    summary.index_gone.0 += 1;
    let label = format!("{} (cell {})", a.cell.label(), a.cell.cell_id);
    if !summary.index_gone.1.contains(&label) {
        tracing::warn!("not rescoring {label}: the index it recorded cannot be read ({why})");
        summary.index_gone.1.push(label);
    }
}

/// Progress of one cell, as `orchestrate status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellProgress {
    /// The cell's label (model · retrieval settings), as in the sweep's log; the cell id is
    /// appended when two cells would share a label.
    pub label: String,
    /// Stored status (`Pending` when nothing is stored).
    pub status: CellStatus,
    /// (question, repeat) pairs with an `ok` answer to the current question text (every `ok`
    /// answer when the QA file is not available).
    pub done: usize,
    /// Answers the cell needs (questions × repeats); `None` when the experiment's inputs are not
    /// available.
    pub expected: Option<usize>,
    /// Stored answers whose expected answer changed in the QA file: `run` re-scores them without
    /// an LLM call.
    pub rescore: usize,
    /// The stored error of a failed cell, first line only.
    pub error: Option<String>,
    /// Whether the cell is in the experiment's current grid (`true` when the grid is unknown).
    pub in_grid: bool,
}

/// The progress of the cells of a sweep: with the experiment `exp` (its grid and questions,
/// `repeats`), every grid cell in grid order followed by the database's cells that are not in
/// the grid (edited away, or made with other file contents); without it, every cell the database
/// holds, counting its stored `ok` answers. `db` is `None` when nothing was run yet.
///
/// Errors: [`InspectError::Store`].
pub fn progress(
    exp: Option<(&Experiment, &[crate::qa::Question])>,
    db: Option<&Store>,
) -> Result<Vec<CellProgress>, InspectError> {
    let stored = match db {
        Some(db) => db.stored_cells()?,
        None => Vec::new(),
    };
    let mut rows: Vec<(crate::cell::CellAxes, CellProgress)> = Vec::new();
    let count = |cell: &Cell, in_grid: bool| -> Result<CellProgress, InspectError> {
        let (status, error) = match db {
            Some(db) => db.cell_status(&cell.id)?,
            None => (CellStatus::Pending, None),
        };
        let (done, expected, rescore) = match (exp, db) {
            (Some((e, qs)), Some(db)) => {
                let (done, stale) = db.answered(&cell.id, qs)?;
                (done.len(), Some(qs.len() * e.repeats as usize), stale.len())
            }
            (Some((e, qs)), None) => (0, Some(qs.len() * e.repeats as usize), 0),
            (None, Some(db)) => (db.answer_counts(&cell.id)?.0 as usize, None, 0),
            (None, None) => (0, None, 0),
        };
        Ok(CellProgress {
            label: String::new(),
            status,
            done,
            expected: if in_grid { expected } else { None },
            rescore,
            error: error.map(|e| e.lines().next().unwrap_or_default().to_string()),
            in_grid,
        })
    };
    if let Some((e, _)) = exp {
        for cell in &e.cells {
            rows.push((cell.axes(), count(cell, true)?));
        }
    }
    for c in &stored {
        let in_grid = exp.is_none_or(|(e, _)| e.cell(&c.cell.id).is_some());
        if exp.is_some() && in_grid {
            continue;
        }
        rows.push((c.cell.axes(), count(&c.cell, exp.is_none())?));
    }
    let labels = crate::cell::distinct_labels(rows.iter().map(|(a, _)| a));
    Ok(rows
        .into_iter()
        .zip(labels)
        .map(|((_, p), label)| CellProgress { label, ..p })
        .collect())
}

/// The chunk settings (chunk_size, chunk_overlap, in characters) the cells of `exp` use, each
/// with whether its index is already built under `<store_dir>/indexes` (a sweep then skips the
/// build, which costs about a minute per setting on the Bacula manual). Reads the corpus files
/// to fingerprint them; never builds. Errors: [`InspectError::Catalog`].
pub fn index_cache_state(
    exp: &Experiment,
    store_dir: &Path,
) -> Result<Vec<(usize, usize, bool)>, InspectError> {
    let settings: BTreeSet<(usize, usize)> = exp
        .cells
        .iter()
        .map(|c| (c.retrieval.chunk_size, c.retrieval.chunk_overlap))
        .collect();
    let mut indexes = ExperimentIndexes::new(&exp.corpus, &exp.embedding_model, store_dir)
        .with_fingerprints(&exp.corpus_fingerprint, &exp.embedder_fingerprint);
    settings
        .into_iter()
        .map(|(size, overlap)| {
            let cached = indexes.cached_dir(size, overlap)?.is_some();
            Ok((size, overlap, cached))
        })
        .collect()
}

/// `orchestrate status` as text: a summary line (cells of the grid complete, answers stored of
/// needed, whether a sweep is `running` now), one line per cell (number, status, done/expected
/// answers, label, a note on answers to re-score, error), which indexes are built (`indexes`,
/// from [`index_cache_state`]; no line when empty), and what to do next. A cell stored as
/// `running` while no sweep runs is shown as `interrupted`; cells not in the current grid are
/// marked `(not in grid)`. `name` and `file` name the experiment, `store_dir` its results
/// directory (named in the advice when not the default).
pub fn progress_text(
    name: &str,
    file: &Path,
    store_dir: &Path,
    cells: &[CellProgress],
    indexes: &[(usize, usize, bool)],
    running: bool,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let grid: Vec<&CellProgress> = cells.iter().filter(|c| c.in_grid).collect();
    let known = grid.iter().all(|c| c.expected.is_some());
    let expected: usize = grid.iter().filter_map(|c| c.expected).sum();
    let done: usize = grid
        .iter()
        .map(|c| c.expected.map_or(c.done, |e| c.done.min(e)))
        .sum();
    let finished = grid
        .iter()
        .filter(|c| c.expected.is_some_and(|e| c.done >= e && c.rescore == 0))
        .count();
    let now = if running {
        " · a sweep is running now"
    } else {
        ""
    };
    if known {
        let pct = if expected > 0 {
            100.0 * done as f64 / expected as f64
        } else {
            100.0
        };
        let _ = writeln!(
            s,
            "{name}: {finished} of {} cells complete, {done} of {expected} answers stored ({pct:.0}%){now}",
            grid.len(),
        );
    } else {
        let _ = writeln!(
            s,
            "{name}: {} cells, {done} answers stored (from the results database alone: the \
             experiment's inputs are not available){now}",
            grid.len(),
        );
    }
    let width = cells.len().to_string().len();
    let answers = |c: &CellProgress| match c.expected {
        Some(e) => format!("{}/{e}", c.done),
        None => c.done.to_string(),
    };
    let answers_w = cells
        .iter()
        .map(|c| answers(c).len())
        .max()
        .unwrap_or(0)
        .max("answers".len());
    let _ = writeln!(
        s,
        "{:>width$}  {:<11} {:>answers_w$}  cell",
        "#", "status", "answers"
    );
    for (i, c) in cells.iter().enumerate() {
        // a cell left `running` with no sweep running was cut short by a killed sweep
        let missing = c.expected.map_or(0, |e| e.saturating_sub(c.done));
        let status = if c.status == CellStatus::Running && !running {
            CellStatus::Interrupted
        } else if c.status == CellStatus::Done && missing > 0 && c.in_grid {
            // done before the questions changed: the next run has answers to add
            CellStatus::Pending
        } else {
            c.status
        };
        let _ = write!(
            s,
            "{:>width$}  {:<11} {:>answers_w$}  {}",
            i + 1,
            status.as_str(),
            answers(c),
            c.label,
        );
        if !c.in_grid {
            s.push_str("  (not in grid)");
        }
        if c.rescore > 0 {
            let _ = write!(
                s,
                "  ({} to re-score: expected answer, evidence or page changed; no LLM call)",
                c.rescore
            );
        }
        if c.status == CellStatus::Done && missing > 0 && c.in_grid {
            let _ = write!(
                s,
                "  ({missing} to answer: questions added or changed since it was done)"
            );
        }
        if let Some(e) = c.error.as_deref().filter(|e| !e.is_empty()) {
            let _ = write!(s, "  ({e})");
        }
        s.push('\n');
    }
    if !indexes.is_empty() {
        let list: Vec<String> = indexes
            .iter()
            .map(|(size, overlap, built)| {
                format!(
                    "{size}/{overlap} {}",
                    if *built { "built" } else { "to build" }
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "indexes (chunk_size/chunk_overlap): {}",
            list.join(" · ")
        );
    }
    let left = grid.len() - finished;
    if known && left > 0 && !running {
        let _ = writeln!(
            s,
            "`{}` runs the {left} unfinished cell{}; done answers are kept.",
            crate::sweep::run_command(file, store_dir),
            if left == 1 { "" } else { "s" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text_summarises_and_lists_cells() {
        let cell = |status: &str, done, error: Option<&str>| CellProgress {
            label: format!("cell {status}"),
            status: CellStatus::parse(status),
            done,
            expected: Some(4),
            rescore: 0,
            error: error.map(String::from),
            in_grid: true,
        };
        let mut cells = vec![
            cell("done", 4, None),
            cell("interrupted", 1, None),
            cell("failed", 2, Some("worker exited early")),
            cell("running", 0, None),
        ];
        let file = Path::new("x.toml");
        let text = progress_text(
            "x",
            file,
            Path::new("store"),
            &cells,
            &[(100, 20, true), (250, 50, false)],
            false,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("1 of 4 cells complete, 7 of 16 answers stored (44%)"),
            "{text}"
        );
        assert_eq!(lines[1], "#  status      answers  cell");
        assert_eq!(lines[2], "1  done            4/4  cell done");
        assert_eq!(lines[3], "2  interrupted     1/4  cell interrupted");
        assert_eq!(
            lines[4],
            "3  failed          2/4  cell failed  (worker exited early)"
        );
        // no sweep runs: the `running` cell was interrupted
        assert_eq!(lines[5], "4  interrupted     0/4  cell running");
        assert_eq!(
            lines[6],
            "indexes (chunk_size/chunk_overlap): 100/20 built · 250/50 to build"
        );
        assert!(lines[7].contains("runs the 3 unfinished cells"), "{text}");
        assert!(lines[7].starts_with("`orchestrate run "), "{text}");
        // advice follows a store given with --store
        let elsewhere = progress_text("x", file, Path::new("runs/a"), &cells, &[], false);
        assert!(
            elsewhere.contains(" --store runs/a` runs the 3"),
            "{elsewhere}"
        );
        // while a sweep runs, no advice to start one
        let text = progress_text("x", file, Path::new("store"), &cells, &[], true);
        assert!(text
            .lines()
            .next()
            .unwrap()
            .ends_with("· a sweep is running now"));
        assert!(
            text.contains("4  running         0/4  cell running"),
            "{text}"
        );
        assert!(!text.contains("unfinished"));
        // a cell that is not in the grid is listed but not counted; one with an edited
        // reference answer is not complete until re-scored
        cells[0].rescore = 2;
        cells.push(CellProgress {
            in_grid: false,
            expected: None,
            ..cell("done", 3, None)
        });
        let text = progress_text("x", file, Path::new("store"), &cells, &[], false);
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains("0 of 4 cells complete, 7 of 16"),
            "{text}"
        );
        assert!(text
            .contains("(2 to re-score: expected answer, evidence or page changed; no LLM call)"));
        assert!(
            text.contains("5  done              3  cell done  (not in grid)"),
            "{text}"
        );
        // a cell done before a question changed has answers to add: not "done 3/4"
        cells[0].rescore = 0;
        cells[0].done = 3;
        let text = progress_text("x", file, Path::new("store"), &cells, &[], false);
        assert!(
            text.contains(
                "1  pending         3/4  cell done  (1 to answer: questions added or changed since it was done)"
            ),
            "{text}"
        );
    }

    fn experiment(dir: &Path, grid: &str) -> Experiment {
        std::fs::write(
            dir.join("c.txt"),
            "Alpha beta gamma.\n\nDelta epsilon zeta eta theta.",
        )
        .unwrap();
        std::fs::write(dir.join("qa.txt"), "Q?\nA.\n").unwrap();
        std::fs::create_dir_all(dir.join("m")).unwrap();
        // the embedding model's fingerprint reads these two files
        std::fs::write(dir.join("m/model.safetensors"), "w").unwrap();
        std::fs::write(dir.join("m/tokenizer.json"), "{}").unwrap();
        std::fs::write(dir.join("m/config.json"), "{}").unwrap();
        let text = format!(
            "name = \"x\"\ncorpus = \"c.txt\"\nqa = \"qa.txt\"\nembedding_model = \"m\"\ngenerate = false\n[grid]\n{grid}\n"
        );
        Experiment::parse(&dir.join("x.toml"), &text).unwrap()
    }

    #[test]
    fn setting_defaults_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let one = experiment(
            d.path(),
            "chunk_size = [500]\nchunk_overlap = [0.2]\nretriever = [\"bm25\"]",
        );
        assert_eq!(resolve_setting(&one, None, None).unwrap(), (500, 100));
        assert_eq!(resolve_setting(&one, Some(100), None).unwrap(), (100, 0));
        assert_eq!(
            resolve_setting(&one, Some(100), Some(0.25)).unwrap(),
            (100, 25)
        );
        assert_eq!(resolve_setting(&one, None, Some(30.0)).unwrap(), (500, 30));
        let two = experiment(d.path(), "chunk_size = [100, 500]\nretriever = [\"bm25\"]");
        let e = resolve_setting(&two, None, None).unwrap_err().to_string();
        assert!(e.contains("--chunk-size") && e.contains("100, 500"), "{e}");
        let ovs = experiment(
            d.path(),
            "chunk_size = [500]\nchunk_overlap = [0, 50]\nretriever = [\"bm25\"]",
        );
        let e = resolve_setting(&ovs, None, None).unwrap_err().to_string();
        assert!(e.contains("--chunk-overlap") && e.contains("0, 50"), "{e}");
        // --chunk-overlap values an experiment file would reject are errors, not silently 0.
        for bad in [-0.2, -30.0, f64::NAN, 2.5] {
            let e = resolve_setting(&one, None, Some(bad)).unwrap_err();
            assert!(
                matches!(
                    e,
                    InspectError::Split(crate::split::SplitError::InvalidOverlap { .. })
                ),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("[0, 1)"), "{e}");
        }
    }

    #[test]
    fn chunks_are_json_lines_matching_the_splitter() {
        let d = tempfile::tempdir().unwrap();
        let exp = experiment(
            d.path(),
            "chunk_size = [20]\nchunk_overlap = [0]\nretriever = [\"bm25\"]",
        );
        let mut out = Vec::new();
        let n = write_chunks(&exp, 20, 0, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), n);
        let texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
        let expected = RecursiveCharacterTextSplitter::new(20, 0)
            .unwrap()
            .split_text("Alpha beta gamma.\n\nDelta epsilon zeta eta theta.");
        assert_eq!(texts, expected);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["id"], i);
            assert_eq!(l["page"], 1);
            assert!(l["start"].is_u64() && l["source"].is_string());
        }
        assert!(write_chunks(&exp, 20, 30, Vec::new()).is_err());
    }
}
