//! Looking inside an experiment without sweeping it: the chunks of one splitter setting
//! (`orchestrate chunks`), the ranked chunks a retriever returns for a query
//! (`orchestrate retrieve`), both as JSON lines, re-computing the stored per-answer metrics
//! from the stored retrieved chunk ids and answers (`orchestrate rescore`), and the progress of
//! a sweep per cell (`orchestrate status`).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::experiment::Experiment;
use crate::index::ExperimentIndexes;
use crate::retrieve::{retrieve, RetrieverParams};
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
    let mut indexes = ExperimentIndexes::new(exp, store_dir);
    let (index, info) = indexes.open(chunk_size, chunk_overlap)?;
    if !info.cache_hit {
        tracing::info!(
            "built index for chunk {chunk_size}/{chunk_overlap} in {:.1} s",
            info.build_seconds
        );
    }
    let qvec = indexes.embedder()?.embed_one(query)?;
    let hits = retrieve(&index, query, &qvec, params)?;
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

/// Answers `question` with model `model` (an index into [`Experiment::models`]) from the chunks
/// retriever `params` returns on the index for `chunk_size` / `chunk_overlap`, exactly as a
/// cell's worker does (same prompt building, context fitting, sampling and stop strings), in
/// this process and without storing anything. For tuning prompts and stop strings: the result
/// holds the prompt as decoded and why generation stopped.
///
/// Errors: [`InspectError::Setting`] for a model index out of range; index, embedding,
/// retrieval, model loading and generation errors.
pub fn ask(
    exp: &Experiment,
    store_dir: &Path,
    chunk_size: usize,
    chunk_overlap: usize,
    params: &RetrieverParams,
    model: usize,
    question: &str,
) -> Result<Asked, InspectError> {
    let Some(spec) = exp.models.get(model) else {
        return Err(InspectError::Setting(format!(
            "{} has no model number {model}",
            exp.path.display()
        )));
    };
    params.validate()?;
    let mut indexes = ExperimentIndexes::new(exp, store_dir);
    let (index, _) = indexes.open(chunk_size, chunk_overlap)?;
    let qvec = indexes.embedder()?.embed_one(question)?;
    let hits = retrieve(&index, question, &qvec, params)?;
    let ranked: Vec<(f32, &crate::split::Chunk)> = hits
        .iter()
        .filter_map(|h| index.chunk(h.chunk_id).map(|c| (h.score, c)))
        .collect();
    let contexts: Vec<&str> = ranked.iter().map(|(_, c)| c.text.as_str()).collect();
    let mut generator = crate::generate::Generator::load(&spec.gguf, spec.params.clone())?;
    let g = generator.answer(question, &contexts)?;
    let prompt =
        generator.build_prompt(question, &contexts[..g.contexts_used.min(contexts.len())])?;
    Ok(Asked {
        model: spec.name.clone(),
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
}

/// Recomputes the per-answer metrics ([`crate::score::metrics_for`]) of every stored `ok` answer
/// of `exp` from its stored retrieved chunk ids and answer text and the current QA file, and
/// stores them, replacing the old ones. BEIR questions (with qrels) are judged per document via
/// the index's chunk table. Cosine similarity is not recomputed. Indexes are opened
/// from the cache (built if missing). Use it after upgrading orchestrate or editing evidence.
/// Errors: QA file, index, database.
pub fn rescore(
    exp: &Experiment,
    store_dir: &Path,
    db: &Store,
) -> Result<RescoreSummary, InspectError> {
    let questions: HashMap<String, crate::qa::Question> = crate::worker::questions_of(exp)?
        .into_iter()
        .map(|q| (q.id.clone(), q))
        .collect();
    let answers = db.answers(exp)?;
    // Rescoring replaces each answer's metrics: without WordNet it would drop stored METEOR.
    if answers.iter().any(|a| a.metrics.contains_key("meteor"))
        && crate::score::wordnet::global().is_none()
    {
        return Err(InspectError::NoWordNet(
            crate::score::wordnet::database_dir(),
        ));
    }
    let mut indexes = ExperimentIndexes::new(exp, store_dir);
    // per chunk setting: the chunk table (chunk → document for BEIR qrels) and, when some question
    // is judged by evidence, its judge
    let need_judge = questions.values().any(crate::score::needs_judge);
    let mut opened: HashMap<(u32, u32), (Vec<crate::split::Chunk>, Option<JudgeCorpus>)> =
        HashMap::new();
    let mut summary = RescoreSummary::default();
    for a in answers.iter().filter(|a| a.status == "ok") {
        let Some(q) = questions
            .get(&a.question_id)
            .filter(|q| q.question == a.question)
        else {
            summary.stale += 1;
            continue;
        };
        let key = (a.chunk_size, a.chunk_overlap);
        let (chunks, judge) = match opened.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (index, _) = indexes.open(a.chunk_size as usize, a.chunk_overlap as usize)?;
                let judge = need_judge.then(|| {
                    JudgeCorpus::new(index.chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)))
                });
                v.insert((index.chunks, judge))
            }
        };
        let answer = exp.generate.then_some(a.answer.as_str());
        let metrics = crate::score::metrics_for(
            q,
            &a.chunk_ids,
            a.top_k as usize,
            chunks,
            judge.as_ref(),
            answer,
        );
        if db.set_answer_metrics(&a.cell_id, a.repeat, &a.question_id, &metrics)? {
            summary.updated += 1;
        }
    }
    Ok(summary)
}

/// Progress of one cell, as `orchestrate status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellProgress {
    /// The cell's label (model · retrieval settings), as in the sweep's log.
    pub label: String,
    /// Stored status: `pending` (also when nothing is stored), `running`, `done`, `failed` or
    /// `interrupted` (a sweep was killed while it ran).
    pub status: String,
    /// (question, repeat) pairs with an `ok` answer to the current question text.
    pub done: usize,
    /// Answers the cell needs: questions × repeats.
    pub expected: usize,
    /// The stored error of a failed cell, first line only.
    pub error: Option<String>,
}

/// The progress of every cell of `exp`, in grid order, from its result database `db` (`None`:
/// nothing was run yet, every cell is pending). A cell's answers count as done only for the
/// questions of the current QA file, as `run` counts them when it resumes.
///
/// Errors: [`InspectError::Qa`] for an unreadable QA file, [`InspectError::Store`].
pub fn progress(exp: &Experiment, db: Option<&Store>) -> Result<Vec<CellProgress>, InspectError> {
    let questions = crate::worker::questions_of(exp)?;
    let expected = questions.len() * exp.repeats as usize;
    let mut out = Vec::with_capacity(exp.cells.len());
    for cell in &exp.cells {
        let (status, error, done) = match db {
            Some(db) => {
                let (status, error) = db.cell_status(&cell.id)?;
                let done = db.done_keys(&cell.id, &questions)?.len();
                (status, error, done)
            }
            None => ("pending".to_string(), None, 0),
        };
        out.push(CellProgress {
            label: crate::sweep::cell_label(exp, cell),
            status,
            done,
            expected,
            error: error.map(|e| e.lines().next().unwrap_or_default().to_string()),
        });
    }
    Ok(out)
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
    let mut indexes = ExperimentIndexes::new(exp, store_dir);
    settings
        .into_iter()
        .map(|(size, overlap)| {
            let cached = indexes.cached_dir(size, overlap)?.is_some();
            Ok((size, overlap, cached))
        })
        .collect()
}

/// `orchestrate status` as text: a summary line (cells, answers stored of needed, whether a
/// sweep is `running` now), one line per cell (number, status, done/expected answers, label,
/// error), which indexes are built (`indexes`, from [`index_cache_state`]; no line when empty),
/// and what to do next. A cell stored as `running` while no sweep runs is shown as `interrupted`.
pub fn progress_text(
    exp: &Experiment,
    cells: &[CellProgress],
    indexes: &[(usize, usize, bool)],
    running: bool,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let expected: usize = cells.iter().map(|c| c.expected).sum();
    let done: usize = cells.iter().map(|c| c.done.min(c.expected)).sum();
    let finished = cells.iter().filter(|c| c.done >= c.expected).count();
    let pct = if expected > 0 {
        100.0 * done as f64 / expected as f64
    } else {
        100.0
    };
    let _ = writeln!(
        s,
        "{}: {} of {} cells complete, {done} of {expected} answers stored ({pct:.0}%){}",
        exp.name,
        finished,
        cells.len(),
        if running {
            " · a sweep is running now"
        } else {
            ""
        }
    );
    let width = cells.len().to_string().len();
    let answers_w = cells
        .iter()
        .map(|c| format!("{}/{}", c.done, c.expected).len())
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
        let status = if c.status == "running" && !running {
            "interrupted"
        } else {
            c.status.as_str()
        };
        let _ = write!(
            s,
            "{:>width$}  {:<11} {:>answers_w$}  {}",
            i + 1,
            status,
            format!("{}/{}", c.done, c.expected),
            c.label,
        );
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
    let left = cells.len() - finished;
    if left > 0 && !running {
        let _ = writeln!(
            s,
            "`orchestrate run {}` runs the {left} unfinished cell{}; done answers are kept.",
            exp.path.display(),
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
        let d = tempfile::tempdir().unwrap();
        let exp = experiment(d.path(), "chunk_size = [100]\nretriever = [\"bm25\"]");
        let cell = |status: &str, done, error: Option<&str>| CellProgress {
            label: format!("cell {status}"),
            status: status.into(),
            done,
            expected: 4,
            error: error.map(String::from),
        };
        let cells = [
            cell("done", 4, None),
            cell("interrupted", 1, None),
            cell("failed", 2, Some("worker exited early")),
            cell("running", 0, None),
        ];
        let text = progress_text(&exp, &cells, &[(100, 20, true), (250, 50, false)], false);
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
        // while a sweep runs, no advice to start one
        let text = progress_text(&exp, &cells, &[], true);
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
    }

    fn experiment(dir: &Path, grid: &str) -> Experiment {
        std::fs::write(
            dir.join("c.txt"),
            "Alpha beta gamma.\n\nDelta epsilon zeta eta theta.",
        )
        .unwrap();
        std::fs::write(dir.join("qa.txt"), "Q?\nA.\n").unwrap();
        std::fs::create_dir_all(dir.join("m")).unwrap();
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
