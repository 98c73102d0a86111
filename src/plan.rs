//! `orchestrate plan`: what a run of an experiment would do — cells, questions, LLM calls,
//! indexes to build — and how long it would take and how much memory it would need, predicted
//! from what earlier runs on this machine measured, before anything runs.
//!
//! This module owns the prediction model; the inputs are the experiment, the answers already
//! stored for it (resume: only pending answers cost time) and the [`History`] of every result
//! database and cached index under the store directory.
//!
//! # The model
//!
//! * A cell costs its worker's load time (mean `model_load_s` of earlier cells of the same GGUF)
//!   plus, per pending answer, retrieval (mean `retrieval_s` at that chunk size) and generation:
//!   for an answer decoded alone the mean response time of earlier answers of the same GGUF
//!   decoded alone with the same retrieval settings (same prompt lengths), else at the same chunk
//!   size (prompt length grows with chunk size), else at any chunk size scaled by the mean prompt
//!   tokens of the two chunk sizes' prompts when both are known; for a batched answer the same
//!   ladder over earlier batched answers' response time divided by their cell's `parallel` (the
//!   wall time one answer adds), else the decoded-alone figure times the model's batched/alone
//!   ratio, else the decoded-alone figure.
//! * An index costs its embedding time: seconds per embedded character measured on the cached
//!   indexes of the same corpus and embedding model (`build_seconds / (n_chunks × chunk_size)`),
//!   times the predicted characters to embed, with the chunk count predicted from the cached
//!   indexes as `n_chunks ∝ 1 / (chunk_size − chunk_overlap)`.
//! * Peak memory of a cell: the largest `rss_peak_bytes` recorded for the same GGUF.
//! * Answers whose worker ran beside other load (mean CPU below 85% of what its threads can
//!   use on this machine's cores) are left out of every time: they predict a busy machine, not
//!   the quiet one a sweep should run on. The plan's basis line counts them.
//!
//! A figure without a basis (a model never run here) is `None` and the plan says so instead of
//! guessing. The run compares the plan with what happened ([`Plan::total_s`] against the sweep's
//! wall time, printed at the end of `orchestrate run`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::cell::Cell;
use crate::experiment::Experiment;
use crate::store::Store;

/// What one cell of the plan will do.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CellPlan {
    /// The cell's label.
    pub label: String,
    /// Its id.
    pub cell_id: String,
    /// Answers still to produce (questions × repeats without an `ok` answer).
    pub pending: usize,
    /// Of those, LLM calls decoded alone (0 for a retrieval-only cell).
    pub alone: usize,
    /// Of those, LLM calls decoded batched.
    pub batched: usize,
    /// Predicted wall time, seconds (worker start, retrieval, generation; not index builds).
    pub predicted_s: Option<f64>,
    /// Predicted peak RSS of its worker, bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// An index the run needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IndexPlan {
    /// Characters.
    pub chunk_size: usize,
    /// Characters.
    pub chunk_overlap: usize,
    /// Whether it is cached already (costs nothing).
    pub cached: bool,
    /// Predicted chunks.
    pub predicted_chunks: Option<usize>,
    /// Predicted build time, seconds (0 when cached).
    pub predicted_s: Option<f64>,
}

/// The plan of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// Questions per cell (after `limit_questions`).
    pub questions: usize,
    /// Repeats per question.
    pub repeats: u32,
    /// Every cell of the grid, in run order.
    pub cells: Vec<CellPlan>,
    /// The indexes, by chunking.
    pub indexes: Vec<IndexPlan>,
    /// Predicted wall time of the whole run, seconds: cells plus index builds; `None` when some
    /// pending cell or index has no basis.
    pub total_s: Option<f64>,
    /// Largest predicted peak RSS of any cell, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Where the figures come from, one line each (databases read, answers used).
    pub basis: Vec<String>,
}

impl Plan {
    /// LLM calls the run will make.
    pub fn llm_calls(&self) -> usize {
        self.cells.iter().map(|c| c.alone + c.batched).sum()
    }

    /// Answers the run will store.
    pub fn answers(&self) -> usize {
        self.cells.iter().map(|c| c.pending).sum()
    }
}

/// Running mean.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.sum += v;
            self.n += 1;
        }
    }
    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// A cached index's (chunk_size, chunk_overlap, n_chunks, build_seconds).
type CachedIndex = (usize, usize, usize, f64);

/// What earlier runs on this machine measured, by GGUF sha256 (`""` for retrieval-only cells).
#[derive(Debug, Default)]
pub struct History {
    load: BTreeMap<String, Mean>,
    /// By (model, retrieval settings as JSON): the closest basis (same prompt lengths).
    alone_retrieval: BTreeMap<(String, String), Mean>,
    batched_retrieval: BTreeMap<(String, String), Mean>,
    alone: BTreeMap<(String, usize), Mean>,
    alone_any: BTreeMap<String, Mean>,
    prompt_tokens: BTreeMap<(String, usize), Mean>,
    batched_wall: BTreeMap<String, Mean>,
    retrieval: BTreeMap<usize, Mean>,
    peak_rss: BTreeMap<String, u64>,
    /// Cached index metas: (corpus fingerprint, embedder fingerprint) → (chunk_size,
    /// chunk_overlap, n_chunks, build_seconds).
    indexes: BTreeMap<(String, String), Vec<CachedIndex>>,
    /// Answers read.
    answers: usize,
    /// Of those, answers whose times were left out because their worker ran beside other load
    /// ([`contended`]).
    contended: usize,
    /// Databases read.
    databases: usize,
}

impl History {
    /// Reads every `*.sqlite` result database and every cached index under `store_dir`.
    /// Unreadable databases are skipped with a debug log (a plan never fails on history).
    pub fn read(store_dir: &Path) -> History {
        let mut h = History::default();
        let Ok(entries) = std::fs::read_dir(store_dir) else {
            return h;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("sqlite") {
                continue;
            }
            match Store::open_existing(&path) {
                Ok(Some(db)) => {
                    if let Err(e) = h.add_database(&db) {
                        tracing::debug!(path = %path.display(), "plan history skipped: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(path = %path.display(), "plan history skipped: {e}"),
            }
        }
        h.read_indexes(&store_dir.join("indexes"));
        h
    }

    fn add_database(&mut self, db: &Store) -> Result<(), crate::store::StoreError> {
        let cells = db.stored_cells()?;
        let answers = db.answers(&cells)?;
        self.databases += 1;
        let by_id: BTreeMap<&str, &crate::store::StoredCell> =
            cells.iter().map(|c| (c.cell.id.as_str(), c)).collect();
        for c in &cells {
            if let Some(s) = c.model_load_s {
                self.load.entry(model_key(&c.cell)).or_default().add(s);
            }
        }
        for a in answers
            .iter()
            .filter(|a| a.status == crate::cell::AnswerStatus::Ok)
        {
            let Some(c) = by_id.get(a.cell.cell_id.as_str()) else {
                continue;
            };
            self.answers += 1;
            let model = model_key(&c.cell);
            let chunk = c.cell.retrieval.chunk_size;
            let threads = c.cell.model.as_ref().map_or(1, |m| m.params.threads);
            let contended = contended(a.cpu_mean_percent, threads, cores());
            self.contended += usize::from(contended);
            if let Some(t) = a.response_time_s.filter(|_| !contended) {
                let retrieval = retrieval_key(&c.cell);
                if a.timed_alone() {
                    self.alone_retrieval
                        .entry((model.clone(), retrieval))
                        .or_default()
                        .add(t);
                    self.alone.entry((model.clone(), chunk)).or_default().add(t);
                    self.alone_any.entry(model.clone()).or_default().add(t);
                } else {
                    let parallel = c.cell.model.as_ref().map_or(1, |m| m.batching.parallel);
                    self.batched_retrieval
                        .entry((model.clone(), retrieval))
                        .or_default()
                        .add(t / f64::from(parallel.max(1)));
                    self.batched_wall
                        .entry(model.clone())
                        .or_default()
                        .add(t / f64::from(parallel.max(1)));
                }
            }
            if let Some(p) = a.prompt_tokens {
                self.prompt_tokens
                    .entry((model.clone(), chunk))
                    .or_default()
                    .add(f64::from(p));
            }
            if let Some(peak) = a.rss_peak_bytes {
                let e = self.peak_rss.entry(model).or_default();
                *e = (*e).max(peak);
            }
        }
        let retrieval = db.retrieval_times()?;
        for (chunk, t) in retrieval {
            self.retrieval.entry(chunk).or_default().add(t);
        }
        Ok(())
    }

    fn read_indexes(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let meta = entry.path().join(crate::index::cache::META_FILE);
            let Ok(text) = std::fs::read_to_string(&meta) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let key = &v["key"];
            let (Some(corpus), Some(embedder), Some(size), Some(overlap)) = (
                key["corpus_fingerprint"].as_str(),
                key["embedder_fingerprint"].as_str(),
                key["chunk_size"].as_u64(),
                key["chunk_overlap"].as_u64(),
            ) else {
                continue;
            };
            let (Some(n), Some(s)) = (v["n_chunks"].as_u64(), v["build_seconds"].as_f64()) else {
                continue;
            };
            self.indexes
                .entry((corpus.to_string(), embedder.to_string()))
                .or_default()
                .push((size as usize, overlap as usize, n as usize, s));
        }
    }

    /// Predicted seconds one answer decoded alone adds (generation only) for `model` at
    /// `chunk_size`.
    fn alone_s(&self, model: &str, chunk_size: usize) -> Option<f64> {
        if let Some(t) = self
            .alone
            .get(&(model.to_string(), chunk_size))
            .and_then(Mean::get)
        {
            return Some(t);
        }
        let any = self.alone_any.get(model).and_then(Mean::get)?;
        // scale by prompt length where both chunk sizes' prompts are known
        let here = self
            .prompt_tokens
            .get(&(model.to_string(), chunk_size))
            .and_then(Mean::get);
        let all: Mean = self
            .prompt_tokens
            .iter()
            .filter(|((m, _), _)| m == model)
            .fold(Mean::default(), |mut acc, (_, m)| {
                acc.sum += m.sum;
                acc.n += m.n;
                acc
            });
        match (here, all.get()) {
            (Some(h), Some(a)) if a > 0.0 => Some(any * h / a),
            _ => Some(any),
        }
    }

    /// Predicted (chunks, seconds) of building the index of `chunk_size` / `chunk_overlap` for
    /// this corpus and embedder, from the cached indexes of the same pair.
    fn index_build(
        &self,
        corpus: &str,
        embedder: &str,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> (Option<usize>, Option<f64>) {
        let Some(known) = self
            .indexes
            .get(&(corpus.to_string(), embedder.to_string()))
            .filter(|k| !k.is_empty())
        else {
            return (None, None);
        };
        let stride = |size: usize, overlap: usize| size.saturating_sub(overlap).max(1) as f64;
        let c: f64 = known
            .iter()
            .map(|(s, o, n, _)| *n as f64 * stride(*s, *o))
            .sum::<f64>()
            / known.len() as f64;
        let chars: f64 = known.iter().map(|(s, _, n, _)| (*n * *s) as f64).sum();
        let secs: f64 = known.iter().map(|(_, _, _, b)| *b).sum();
        let n = (c / stride(chunk_size, chunk_overlap)).round() as usize;
        let rate = (chars > 0.0).then(|| secs / chars);
        (Some(n), rate.map(|r| r * (n * chunk_size) as f64))
    }
}

/// A worker that got less than this fraction of the CPU its threads can use ran beside other
/// load (llama.cpp's threads busy-wait, so a shared core slows it several times over).
const CONTENDED_BELOW: f64 = 0.85;

/// Whether an answer was timed while other load shared the cores: its worker's mean CPU
/// (percent of one core) was below [`CONTENDED_BELOW`] of `min(threads, cores) × 100`. Such
/// answers took longer than a run on a quiet machine will, so their times are not a basis for
/// a prediction (their prompt lengths and memory still are). Unknown CPU counts as quiet.
fn contended(cpu_mean_percent: Option<f64>, threads: i32, cores: usize) -> bool {
    let usable = f64::from(threads.max(1)).min(cores.max(1) as f64) * 100.0;
    cpu_mean_percent.is_some_and(|cpu| cpu < CONTENDED_BELOW * usable)
}

/// Cores available to this process.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The history key of a cell's retrieval settings (names left out).
fn retrieval_key(cell: &Cell) -> String {
    serde_json::to_string(&cell.retrieval.without_names()).unwrap_or_default()
}

/// The history key of a cell's model: its GGUF sha256, `""` without a model.
fn model_key(cell: &Cell) -> String {
    cell.model
        .as_ref()
        .map(|m| m.gguf_sha256.clone())
        .unwrap_or_default()
}

/// The plan of running `exp` with results in `store_dir` (what is stored already is not
/// redone), predicted from `history`. Reads the database and the index cache; never builds or
/// runs anything.
///
/// Errors: [`crate::commands::CommandError`] for an unreadable QA file, database or index key.
pub fn plan(
    exp: &Experiment,
    store_dir: &Path,
    history: &History,
) -> Result<Plan, crate::commands::CommandError> {
    let questions = exp.questions()?;
    let db = Store::open_existing(&Store::path_for(store_dir, &exp.name))?;
    let mut indexes =
        crate::index::ExperimentIndexes::new(&exp.corpus, &exp.embedding_model, store_dir)
            .with_fingerprints(&exp.corpus_fingerprint, &exp.embedder_fingerprint);
    let mut index_plans: Vec<IndexPlan> = Vec::new();
    let chunkings: BTreeSet<(usize, usize)> = exp
        .cells
        .iter()
        .map(|c| (c.retrieval.chunk_size, c.retrieval.chunk_overlap))
        .collect();
    for (size, overlap) in chunkings {
        let cached = indexes
            .cached_dir(size, overlap)
            .map_err(crate::sweep::SweepError::from)?
            .is_some();
        let (n, s) = if cached {
            (None, Some(0.0))
        } else {
            history.index_build(
                &exp.corpus_fingerprint,
                &exp.embedder_fingerprint,
                size,
                overlap,
            )
        };
        index_plans.push(IndexPlan {
            chunk_size: size,
            chunk_overlap: overlap,
            cached,
            predicted_chunks: n,
            predicted_s: s,
        });
    }
    let mut cells = Vec::new();
    for cell in &exp.cells {
        let done = match &db {
            Some(db) => db.answered(&cell.id, &questions)?.0,
            None => Default::default(),
        };
        let batching = cell.model.as_ref().map(|m| m.batching).unwrap_or_default();
        let mut alone = 0;
        let mut batched = 0;
        let mut pending = 0;
        for r in 0..exp.repeats {
            for (pos, q) in questions.iter().enumerate() {
                if done.contains(&(q.id.clone(), r)) {
                    continue;
                }
                pending += 1;
                if cell.model.is_some() {
                    if batching.decode_alone(pos) {
                        alone += 1;
                    } else {
                        batched += 1;
                    }
                }
            }
        }
        let model = model_key(cell);
        let chunk = cell.retrieval.chunk_size;
        let predicted_s = if pending == 0 {
            Some(0.0)
        } else {
            let load = history.load.get(&model).and_then(Mean::get).unwrap_or(0.0);
            let retrieval = history
                .retrieval
                .get(&chunk)
                .and_then(Mean::get)
                .unwrap_or(0.0);
            let same = (model.clone(), retrieval_key(cell));
            let gen_alone = history
                .alone_retrieval
                .get(&same)
                .and_then(Mean::get)
                .or_else(|| history.alone_s(&model, chunk));
            let gen_batched = history
                .batched_retrieval
                .get(&same)
                .and_then(Mean::get)
                .or_else(|| {
                    // batched wall time per answer relative to decoding alone, from other cells
                    let ratio = history.batched_wall.get(&model).and_then(Mean::get)?
                        / history.alone_any.get(&model).and_then(Mean::get)?;
                    gen_alone.map(|a| a * ratio)
                })
                .or(gen_alone);
            match (cell.model.is_some(), gen_alone, gen_batched) {
                (false, _, _) => Some(load + pending as f64 * retrieval),
                (true, Some(a), Some(b)) => {
                    Some(load + pending as f64 * retrieval + alone as f64 * a + batched as f64 * b)
                }
                _ => None,
            }
        };
        cells.push(CellPlan {
            label: cell.to_string(),
            cell_id: cell.id.clone(),
            pending,
            alone,
            batched,
            predicted_s,
            peak_rss_bytes: history.peak_rss.get(&model).copied(),
        });
    }
    let needed: BTreeSet<(usize, usize)> = exp
        .cells
        .iter()
        .zip(&cells)
        .filter(|(_, p)| p.pending > 0)
        .map(|(c, _)| (c.retrieval.chunk_size, c.retrieval.chunk_overlap))
        .collect();
    let index_total: Option<f64> = index_plans
        .iter()
        .filter(|i| needed.contains(&(i.chunk_size, i.chunk_overlap)))
        .map(|i| i.predicted_s)
        .sum();
    let cell_total: Option<f64> = cells.iter().map(|c| c.predicted_s).sum();
    let total_s = match (cell_total, index_total) {
        (Some(c), Some(i)) => Some(c + i),
        _ => None,
    };
    let mut basis = vec![format!(
        "{} answers of {} result databases and {} cached indexes under {}",
        history.answers,
        history.databases,
        history.indexes.values().map(Vec::len).sum::<usize>(),
        store_dir.display()
    )];
    if history.contended > 0 {
        basis.push(format!(
            "{} of those answers ran beside other load (worker below {:.0}% of its threads' CPU) \
             and are not used for times",
            history.contended,
            CONTENDED_BELOW * 100.0
        ));
    }
    Ok(Plan {
        questions: questions.len(),
        repeats: exp.repeats,
        peak_rss_bytes: cells.iter().filter_map(|c| c.peak_rss_bytes).max(),
        cells,
        indexes: index_plans,
        total_s,
        basis,
    })
}

/// The plan as text: one line per cell with pending work, the indexes to build, totals.
pub fn plan_text(p: &Plan) -> String {
    let secs = |s: Option<f64>| s.map_or("no basis".to_string(), format_duration);
    let mib = |b: Option<u64>| b.map_or("?".to_string(), |b| format!("{} MiB", b >> 20));
    let mut out = String::new();
    let pending: Vec<&CellPlan> = p.cells.iter().filter(|c| c.pending > 0).collect();
    out.push_str(&format!(
        "{} cells × {} questions × {} repeats: {} cells to run, {} answers to store, {} LLM calls ({} decoded alone, {} batched)\n",
        p.cells.len(),
        p.questions,
        p.repeats,
        pending.len(),
        p.answers(),
        p.llm_calls(),
        p.cells.iter().map(|c| c.alone).sum::<usize>(),
        p.cells.iter().map(|c| c.batched).sum::<usize>(),
    ));
    for i in &p.indexes {
        if i.cached {
            out.push_str(&format!(
                "  index chunk {}/{}: cached\n",
                i.chunk_size, i.chunk_overlap
            ));
        } else {
            out.push_str(&format!(
                "  index chunk {}/{}: to build, ~{} chunks, {}\n",
                i.chunk_size,
                i.chunk_overlap,
                i.predicted_chunks
                    .map_or("?".to_string(), |n| n.to_string()),
                secs(i.predicted_s)
            ));
        }
    }
    for c in &pending {
        out.push_str(&format!(
            "  {}: {} answers, {}, peak RSS {}\n",
            c.label,
            c.pending,
            secs(c.predicted_s),
            mib(c.peak_rss_bytes)
        ));
    }
    out.push_str(&format!(
        "predicted wall time {}, peak memory {}\n",
        secs(p.total_s),
        mib(p.peak_rss_bytes)
    ));
    for b in &p.basis {
        out.push_str(&format!("basis: {b}\n"));
    }
    out
}

/// `1 h 02 min`, `3 min 05 s`, `12.3 s`.
pub fn format_duration(s: f64) -> String {
    if s >= 3600.0 {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else if s >= 60.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_skip_non_finite_values() {
        let mut m = Mean::default();
        assert_eq!(m.get(), None);
        for v in [1.0, f64::NAN, 3.0] {
            m.add(v);
        }
        assert_eq!(m.get(), Some(2.0));
    }

    #[test]
    fn index_builds_scale_with_chunk_count_and_size() {
        let mut h = History::default();
        // 1000 chunks of 500 characters at stride 400 took 100 s
        h.indexes
            .insert(("c".into(), "e".into()), vec![(500, 100, 1000, 100.0)]);
        // stride 200 → twice the chunks; 250-character chunks → the same characters embedded
        let (n, s) = h.index_build("c", "e", 250, 50);
        assert_eq!(n, Some(2000));
        assert!((s.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(h.index_build("other", "e", 250, 50), (None, None));
    }

    #[test]
    fn generation_time_falls_back_to_the_model_scaled_by_prompt_length() {
        let mut h = History::default();
        h.alone.entry(("m".into(), 500)).or_default().add(2.0);
        h.alone_any.entry("m".into()).or_default().add(2.0);
        h.prompt_tokens
            .entry(("m".into(), 500))
            .or_default()
            .add(400.0);
        h.prompt_tokens
            .entry(("m".into(), 1000))
            .or_default()
            .add(800.0);
        assert_eq!(h.alone_s("m", 500), Some(2.0));
        // prompts at 1000 are 800 tokens against a mean of 600: 2.0 × 800 / 600
        assert!((h.alone_s("m", 1000).unwrap() - 2.0 * 800.0 / 600.0).abs() < 1e-9);
        assert_eq!(h.alone_s("unknown", 500), None);
    }

    #[test]
    fn answers_timed_beside_other_load_are_contended() {
        // 2 threads on 2 cores: a quiet worker uses ~195% of a core
        assert!(!contended(Some(197.0), 2, 2));
        assert!(contended(Some(140.0), 2, 2));
        assert!(contended(Some(9.0), 2, 2));
        // more threads than cores can use no more than the cores
        assert!(!contended(Some(190.0), 8, 2));
        // one thread: one core
        assert!(!contended(Some(95.0), 1, 2));
        assert!(contended(Some(60.0), 1, 2));
        // no CPU samples: nothing says it was contended
        assert!(!contended(None, 2, 2));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(12.34), "12.3 s");
        assert_eq!(format_duration(185.0), "3 min 05 s");
        assert_eq!(format_duration(3720.0), "1 h 02 min");
    }
}
