//! The worker: runs one cell in its own process and reports each answer to the parent; and the
//! [`CellRunner`] that answers one question as a cell does, shared by the worker and
//! `orchestrate ask`.
//!
//! The parent ([`crate::sweep`]) starts `orchestrate worker` and writes one [`WorkerJob`] as a
//! JSON line on the worker's stdin: the cell (self-contained, see [`crate::cell::Cell`]), the
//! index directory the parent prepared, the pending questions and (question id, repeat) pairs.
//! The worker parses no experiment or QA file, so editing them during a sweep cannot change a
//! cell that is running or still to run. It reads [`Event`]s back, one JSON object per stdout
//! line prefixed with [`EVENT_PREFIX`]. At start-up the worker moves its stdout to a private
//! descriptor and points fd 1 at stderr, so whatever a native library prints goes to the stderr
//! log and can never interleave with an event. The worker loads the embedding model and the LLM
//! once, then for each pending pair: embeds the question, retrieves, generates, scores the answer
//! (cosine similarity to the expected answer, and the named retrieval and answer metrics of
//! [`crate::score::metrics_for`]), and emits it. The parent owns the database; a worker never
//! writes results itself, so a crash loses nothing that was reported.
//!
//! The embedding model and the LLM are reached through the [`TextEmbedder`] and
//! [`AnswerGenerator`] traits, so the runner is tested with fakes and no model files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cell::{AnswerStatus, Cell, DecodeMode};
use crate::embed::{EmbedError, Embedder};
use crate::generate::{BatchDriver, BatchRequest, GenerateError, Generation, Generator};
use crate::index::CorpusIndex;
use crate::qa::Question;
use crate::retrieve::{retrieve_with_children, ChildIndexes, Retrieved};
use crate::score::retrieval::JudgeCorpus;
use crate::store::{NewAnswer, SharedGeneration};

/// Prefix of every protocol line on the worker's stdout.
pub const EVENT_PREFIX: &str = "@@orchestrate ";

/// What the parent sends a worker: one JSON line on its stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerJob {
    /// The cell to run.
    pub cell: Cell,
    /// The index the parent opened or built for it (`store/indexes/<digest>`).
    pub index_dir: PathBuf,
    /// The questions of the pending pairs.
    pub questions: Vec<Question>,
    /// (question id, 0-based repeat) pairs to answer, in order.
    pub pending: Vec<(String, u32)>,
    /// Ids of all the cell's questions in asking order (not only the pending ones): an answer's
    /// index among the cell's answers is `repeat × order.len() + position`, which
    /// [`crate::sampling::SeedMode::LlamaCppPython`] seeds from. Empty: index = repeat.
    #[serde(default)]
    pub order: Vec<String>,
    /// Generations of the cell's model family stored by earlier cells, for reuse by content
    /// address ([`crate::cell::generation_key`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<SharedGeneration>,
}

impl WorkerJob {
    /// 0-based index of answer (`question_id`, `repeat`) among the cell's answers in asking
    /// order (see [`WorkerJob::order`]).
    pub fn answer_index(&self, question_id: &str, repeat: u32) -> u64 {
        let n = self.order.len() as u64;
        let position = self
            .order
            .iter()
            .position(|id| id == question_id)
            .unwrap_or(0) as u64;
        u64::from(repeat) * n.max(1) + position
    }
}

/// One message from worker to parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Models and index are loaded; `load_s` seconds it took.
    Ready {
        /// Seconds spent loading the index, embedding model and LLM.
        load_s: f64,
        /// Threads the LLM runs with on this machine (`None` without a model).
        #[serde(default)]
        threads: Option<i32>,
    },
    /// Work on one question × repeat starts now.
    Start {
        /// Question id.
        question_id: String,
        /// 0-based repeat.
        repeat: u32,
    },
    /// One finished answer (ok or failed).
    Answer(Box<NewAnswer>),
    /// All pending pairs are done.
    Done,
}

/// Errors that stop a worker before or between questions (per-question failures are reported as
/// failed answers instead).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The job on stdin was not valid JSON.
    #[error("bad job on stdin (protocol error): {0}")]
    Protocol(String),
    /// The embedding model failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The index could not be opened.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// The LLM could not be loaded.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// Writing to the parent failed (the parent is gone).
    #[error("lost the parent: {0}")]
    Io(#[from] std::io::Error),
}

/// Embeds texts into L2-normalised vectors: the seam between the runner and the embedding model
/// ([`Embedder`] in production, fakes in tests).
pub trait TextEmbedder {
    /// One vector per text, in input order. Errors: [`EmbedError`].
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

impl TextEmbedder for Embedder {
    fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed(texts)
    }
}

/// Answers a question from contexts: the seam between the runner and the LLM ([`Generator`] in
/// production, fakes in tests).
pub trait AnswerGenerator {
    /// Generates the answer to `question` from `contexts` (best first; trailing ones may be
    /// dropped to fit the context window, see [`Generation::contexts_used`]).
    fn generate(&mut self, question: &str, contexts: &[&str]) -> Result<Generation, GenerateError>;
    /// Sets the sampling seed of the next answers.
    fn reseed(&mut self, seed: u32) -> Result<(), GenerateError>;
    /// The prompt text the model decodes for `question` with exactly `contexts`.
    fn prompt(&self, question: &str, contexts: &[&str]) -> Result<String, GenerateError>;
    /// Answers the requests `driver` hands out with up to `parallel` of them decoded together,
    /// giving each result to `driver.done` when it is ready (see
    /// [`Generator::answer_many`]). The default answers one request at a time, in order, with
    /// [`AnswerGenerator::reseed`] and [`AnswerGenerator::generate`].
    ///
    /// # Errors
    /// Only failures that stop every request (e.g. no context could be created); per-request
    /// errors go to `driver.done`.
    fn generate_many(
        &mut self,
        parallel: u32,
        driver: &mut dyn BatchDriver,
    ) -> Result<(), GenerateError> {
        let _ = parallel;
        while let Some((tag, request)) = driver.next() {
            let contexts: Vec<&str> = request.contexts.iter().map(String::as_str).collect();
            let result = self
                .reseed(request.seed)
                .and_then(|()| self.generate(&request.question, &contexts));
            driver.done(tag, result);
        }
        Ok(())
    }
}

impl AnswerGenerator for Generator {
    fn generate(&mut self, question: &str, contexts: &[&str]) -> Result<Generation, GenerateError> {
        self.answer(question, contexts)
    }
    fn reseed(&mut self, seed: u32) -> Result<(), GenerateError> {
        let mut p = self.params().clone();
        p.sampling.seed = i64::from(seed);
        p.sampling.seed_mode = None; // this exact seed for the next answers
        self.set_params(p)
    }
    fn prompt(&self, question: &str, contexts: &[&str]) -> Result<String, GenerateError> {
        self.build_prompt(question, contexts)
    }
    fn generate_many(
        &mut self,
        parallel: u32,
        driver: &mut dyn BatchDriver,
    ) -> Result<(), GenerateError> {
        self.answer_many(parallel, driver)
    }
}

/// Answers questions as one cell does: retrieval on the cell's index with its settings, then
/// (when the cell has a model) generation and scoring. Used by the worker for every answer of a
/// sweep and by `orchestrate ask`, so the two can never differ.
pub struct CellRunner {
    cell: Cell,
    index: CorpusIndex,
    judge: Option<JudgeCorpus>,
    embedder: Box<dyn TextEmbedder>,
    generator: Option<Box<dyn AnswerGenerator>>,
    expected_vecs: HashMap<String, Vec<f32>>,
    children: ChildIndexes,
    /// Generations by content address: given by the parent (earlier cells) and made here.
    shared: HashMap<String, Reusable>,
}

/// A generation another answer with the same [`crate::cell::generation_key`] reuses.
#[derive(Debug, Clone)]
struct Reusable {
    cell_id: String,
    generation: Generation,
    decode_mode: DecodeMode,
}

/// One question answered by [`CellRunner::run`]: what was retrieved and what was generated.
pub struct Ran {
    /// Retrieved chunks, best first.
    pub hits: Vec<Retrieved>,
    /// Seconds spent embedding the question and retrieving.
    pub retrieval_s: f64,
    /// The generation (`None` for a cell without a model).
    pub generation: Option<Generation>,
    /// Its content address ([`crate::cell::generation_key`]).
    pub generation_key: Option<String>,
    /// The cell whose generation was reused (`None`: generated now).
    pub shared_from: Option<String>,
    /// How the generation was decoded.
    pub decode_mode: Option<DecodeMode>,
}

impl CellRunner {
    /// Loads what `cell` needs: the index at `index_dir`, the embedding model, and the LLM (with
    /// its threads resolved on this machine) when the cell has a model. `judge` builds the
    /// evidence judge over the index's chunks (needed when some question is judged by evidence,
    /// see [`crate::score::needs_judge`]).
    ///
    /// Errors: [`WorkerError::Index`], [`WorkerError::Embed`], [`WorkerError::Generate`].
    pub fn load(
        cell: Cell,
        index_dir: &std::path::Path,
        judge: bool,
    ) -> Result<CellRunner, WorkerError> {
        Self::load_parts(cell, index_dir, judge, true)
    }

    /// Like [`CellRunner::load`] without the LLM: for re-scoring stored answers
    /// ([`CellRunner::score`]) of a cell, generating cells included.
    pub fn load_scorer(
        cell: Cell,
        index_dir: &std::path::Path,
        judge: bool,
    ) -> Result<CellRunner, WorkerError> {
        Self::load_parts(cell, index_dir, judge, false)
    }

    fn load_parts(
        cell: Cell,
        index_dir: &std::path::Path,
        judge: bool,
        with_llm: bool,
    ) -> Result<CellRunner, WorkerError> {
        let index = crate::index::open(index_dir)?;
        let children = crate::index::catalog::open_children_of(
            index_dir,
            &cell.embedder_fingerprint,
            &cell.retrieval.child_splits(),
        )?;
        let embedder = Embedder::load(&cell.embedding_model)?;
        let generator: Option<Box<dyn AnswerGenerator>> = match &cell.model {
            Some(m) if with_llm => Some(Box::new(Generator::load(&m.gguf, m.resolved_params())?)),
            _ => None,
        };
        Ok(
            Self::with_parts(cell, index, judge, Box::new(embedder), generator)
                .with_children(children),
        )
    }

    /// This runner with the child indexes its parent retrievers search.
    pub fn with_children(mut self, children: ChildIndexes) -> CellRunner {
        self.children = children;
        self
    }

    /// A runner over already loaded parts (tests use fakes for `embedder` and `generator`).
    pub fn with_parts(
        cell: Cell,
        index: CorpusIndex,
        judge: bool,
        embedder: Box<dyn TextEmbedder>,
        generator: Option<Box<dyn AnswerGenerator>>,
    ) -> CellRunner {
        let judge = judge.then(|| {
            JudgeCorpus::new(index.chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)))
        });
        CellRunner {
            cell,
            index,
            judge,
            embedder,
            generator,
            expected_vecs: HashMap::new(),
            children: ChildIndexes::none(),
            shared: HashMap::new(),
        }
    }

    /// This runner reusing `generations` (stored by earlier cells of its model family) for
    /// answers with the same content address instead of generating them again.
    pub fn with_shared(mut self, generations: Vec<SharedGeneration>) -> CellRunner {
        for g in generations {
            self.shared.insert(
                g.key,
                Reusable {
                    cell_id: g.cell_id,
                    generation: g.generation,
                    decode_mode: g.decode_mode,
                },
            );
        }
        self
    }

    /// The cell this runner answers for.
    pub fn cell(&self) -> &Cell {
        &self.cell
    }

    /// The index it retrieves from.
    pub fn index(&self) -> &CorpusIndex {
        &self.index
    }

    /// Threads of its LLM (`None` without a model).
    pub fn threads(&self) -> Option<i32> {
        self.cell
            .model
            .as_ref()
            .map(|m| m.resolved_params().threads)
    }

    /// Retrieves for `question` and, when the cell has a model, generates the answer with the
    /// sampling seed [`crate::sampling::Sampling::draw_seed`] gives repeat `repeat` and answer
    /// `answer_index` (0-based, in the cell's asking order): `seed + repeat` by default, so
    /// repeats at temperature > 0 are independent draws, each reproducible. Errors are texts
    /// (they become a failed answer).
    pub fn run(&mut self, question: &str, repeat: u32, answer_index: u64) -> Result<Ran, String> {
        let (hits, retrieval_s) = self.retrieve(question)?;
        let mut ran = Ran {
            hits,
            retrieval_s,
            generation: None,
            generation_key: None,
            shared_from: None,
            decode_mode: None,
        };
        let (Some(g), Some(m)) = (self.generator.as_mut(), &self.cell.model) else {
            return Ok(ran);
        };
        let seed = m.params.sampling.draw_seed(repeat, answer_index);
        let contexts: Vec<&str> = ran
            .hits
            .iter()
            .filter_map(|h| self.index.chunk(h.chunk_id))
            .map(|c| c.text.as_str())
            .collect();
        let key = crate::cell::generation_key(m, seed, repeat, question, &contexts);
        if let Some(r) = self.shared.get(&key) {
            ran.generation = Some(r.generation.clone());
            ran.shared_from = Some(r.cell_id.clone());
            ran.decode_mode = Some(r.decode_mode);
        } else {
            g.reseed(seed).map_err(|e| e.to_string())?;
            let generation = g.generate(question, &contexts).map_err(|e| e.to_string())?;
            self.shared.insert(
                key.clone(),
                Reusable {
                    cell_id: self.cell.id.clone(),
                    generation: generation.clone(),
                    decode_mode: DecodeMode::Single,
                },
            );
            ran.generation = Some(generation);
            ran.decode_mode = Some(DecodeMode::Single);
        }
        ran.generation_key = Some(key);
        Ok(ran)
    }

    /// Embeds `question` and retrieves with the cell's settings: the hits, best first, and the
    /// seconds it took. Errors are texts (they become a failed answer).
    fn retrieve(&self, question: &str) -> Result<(Vec<Retrieved>, f64), String> {
        let t = Instant::now();
        let qv = self.embed_one(question)?;
        let params = self.cell.retrieval.params();
        let hits = retrieve_with_children(&self.index, &self.children, question, &qv, &params)
            .map_err(|e| e.to_string())?;
        Ok((hits, t.elapsed().as_secs_f64()))
    }

    /// Records the retrieval of an answer: chunk ids, scores, pages, time.
    fn fill_retrieval(&self, a: &mut NewAnswer, hits: &[Retrieved], retrieval_s: f64) {
        a.retrieval_s = Some(retrieval_s);
        a.chunk_ids = hits.iter().map(|h| h.chunk_id).collect();
        a.scores = hits.iter().map(|h| h.score).collect();
        a.pages = a
            .chunk_ids
            .iter()
            .filter_map(|id| self.index.chunk(*id))
            .map(|c| c.page)
            .collect();
    }

    /// Scores `a` against `q` in place ([`CellRunner::score`]).
    fn score_into(&mut self, q: &Question, a: &mut NewAnswer) -> Result<(), String> {
        let (cosine, metrics) = self.score(q, &a.chunk_ids, &a.answer)?;
        a.cosine = cosine;
        a.metrics = metrics;
        Ok(())
    }

    /// Answers `items` (question, repeat, answer index in the cell's asking order) with the
    /// cell's model decoding up to `parallel` of them together ([`Generator::answer_many`]),
    /// each answer scored as [`CellRunner::answer`] does and marked [`DecodeMode::Batched`].
    /// `sink` gets a [`Event::Start`] when a question is taken up and its [`Event::Answer`] when
    /// it is done (in finishing order); failures of one question become its failed answer. A
    /// cell without a model answers one at a time through [`CellRunner::answer`].
    ///
    /// # Errors
    /// The first error of `sink` (the parent is gone), after which no further question starts;
    /// [`WorkerError::Generate`] when the batch could not start at all.
    pub fn answer_batched(
        &mut self,
        items: &[(&Question, u32, u64)],
        parallel: u32,
        sink: &mut dyn FnMut(Event) -> Result<(), WorkerError>,
    ) -> Result<(), WorkerError> {
        let Some(mut generator) = self.generator.take() else {
            for (q, repeat, index) in items {
                sink(Event::Start {
                    question_id: q.id.clone(),
                    repeat: *repeat,
                })?;
                let a = self.answer(q, *repeat, *index);
                sink(Event::Answer(Box::new(a)))?;
            }
            return Ok(());
        };
        let mut batch = Batch {
            runner: self,
            items: items.iter().enumerate(),
            open: HashMap::new(),
            sink,
            error: None,
        };
        let result = generator.generate_many(parallel, &mut batch);
        // a batch that could not start: its open questions fail with the reason
        let open: Vec<usize> = batch.open.keys().copied().collect();
        if let Err(e) = &result {
            for tag in open {
                batch.done(tag, Err(GenerateError::Step(e.to_string())));
            }
        }
        let sink_error = batch.error.take();
        self.generator = Some(generator);
        if let Some(e) = sink_error {
            return Err(e);
        }
        result.map_err(WorkerError::Generate)
    }

    /// The prompt the model decodes for `question` with `contexts` (for `orchestrate ask`).
    /// Errors: [`GenerateError`]; `None` for a cell without a model.
    pub fn prompt(
        &self,
        question: &str,
        contexts: &[&str],
    ) -> Option<Result<String, GenerateError>> {
        self.generator
            .as_ref()
            .map(|g| g.prompt(question, contexts))
    }

    /// Answers `q` (repeat `repeat`) and scores it; any failure becomes a `failed` answer.
    ///
    /// Cosine similarity to the expected answer is recorded only when the question has one
    /// ([`crate::score::has_reference_answer`]; BEIR questions do not), so an empty reference
    /// never yields a misleading similarity.
    pub fn answer(&mut self, q: &Question, repeat: u32, answer_index: u64) -> NewAnswer {
        let mut a = NewAnswer::to(q, repeat);
        let result = self.run(&q.question, repeat, answer_index).and_then(|ran| {
            self.fill_retrieval(&mut a, &ran.hits, ran.retrieval_s);
            if let Some(g) = ran.generation {
                fill_generation(&mut a, g, ran.decode_mode.unwrap_or_default());
                a.generation_key = ran.generation_key;
                a.shared_from = ran.shared_from;
            }
            self.score_into(q, &mut a)
        });
        if let Err(e) = result {
            a.status = AnswerStatus::Failed;
            a.error = Some(e);
        }
        a
    }

    /// Scores a stored answer against `q` as [`CellRunner::answer`] does: the cosine similarity
    /// of `answer` to the expected answer (cells with a model and questions with a reference
    /// answer only) and the named metrics of [`crate::score::metrics_for`].
    pub fn score(
        &mut self,
        q: &Question,
        chunk_ids: &[u32],
        answer: &str,
    ) -> Result<(Option<f64>, std::collections::BTreeMap<String, f64>), String> {
        let generated = self.cell.model.is_some();
        let mut cosine = None;
        if generated && crate::score::has_reference_answer(q) {
            let expected = match self.expected_vecs.get(&q.expected_answer) {
                Some(v) => v.clone(),
                None => {
                    let v = self.embed_one(&q.expected_answer)?;
                    self.expected_vecs
                        .insert(q.expected_answer.clone(), v.clone());
                    v
                }
            };
            let av = self.embed_one(answer)?;
            cosine = Some(crate::score::cosine(&av, &expected));
        }
        let metrics = crate::score::metrics_for(
            q,
            chunk_ids,
            self.cell.retrieval.top_k,
            &self.index.chunks,
            self.judge.as_ref(),
            generated.then_some(answer),
        );
        Ok((cosine, metrics))
    }

    fn embed_one(&self, text: &str) -> Result<Vec<f32>, String> {
        Ok(self
            .embedder
            .embed_texts(&[text])
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .unwrap_or_default())
    }
}

/// Records a generation in an answer, with how it was decoded.
fn fill_generation(a: &mut NewAnswer, g: Generation, mode: DecodeMode) {
    a.answer = g.text;
    a.prompt_tokens = Some(g.prompt_tokens);
    a.completion_tokens = Some(g.completion_tokens);
    a.ttft_s = Some(g.ttft_s);
    a.response_time_s = Some(g.response_s);
    a.contexts_used = Some(g.contexts_used as u32);
    a.decode_mode = Some(mode);
}

/// The [`BatchDriver`] of [`CellRunner::answer_batched`]: retrieves for each question as the
/// generator takes it up, scores and reports each answer as it finishes.
struct Batch<'r, 'q, 's> {
    /// The runner, its generator taken out for the batch.
    runner: &'r mut CellRunner,
    items: std::iter::Enumerate<std::slice::Iter<'q, (&'q Question, u32, u64)>>,
    /// Tag → the question and its answer so far (retrieval filled in).
    open: HashMap<usize, (&'q Question, NewAnswer)>,
    sink: &'s mut dyn FnMut(Event) -> Result<(), WorkerError>,
    /// The first error of `sink`.
    error: Option<WorkerError>,
}

impl Batch<'_, '_, '_> {
    fn send(&mut self, event: Event) {
        if self.error.is_none() {
            if let Err(e) = (self.sink)(event) {
                self.error = Some(e);
            }
        }
    }
}

impl BatchDriver for Batch<'_, '_, '_> {
    fn next(&mut self) -> Option<(usize, BatchRequest)> {
        while self.error.is_none() {
            let (tag, &(q, repeat, index)) = self.items.next()?;
            self.send(Event::Start {
                question_id: q.id.clone(),
                repeat,
            });
            let mut a = NewAnswer::to(q, repeat);
            match self.runner.retrieve(&q.question) {
                Ok((hits, retrieval_s)) => {
                    self.runner.fill_retrieval(&mut a, &hits, retrieval_s);
                    let contexts: Vec<String> = hits
                        .iter()
                        .filter_map(|h| self.runner.index.chunk(h.chunk_id))
                        .map(|c| c.text.clone())
                        .collect();
                    let Some(m) = self.runner.cell.model.as_ref() else {
                        continue; // answer_batched never batches a cell without a model
                    };
                    let seed = m.params.sampling.draw_seed(repeat, index);
                    let refs: Vec<&str> = contexts.iter().map(String::as_str).collect();
                    let key = crate::cell::generation_key(m, seed, repeat, &q.question, &refs);
                    if let Some(r) = self.runner.shared.get(&key).cloned() {
                        fill_generation(&mut a, r.generation, r.decode_mode);
                        a.generation_key = Some(key);
                        a.shared_from = Some(r.cell_id);
                        if let Err(e) = self.runner.score_into(q, &mut a) {
                            a.status = AnswerStatus::Failed;
                            a.error = Some(e);
                        }
                        self.send(Event::Answer(Box::new(a)));
                        continue;
                    }
                    a.generation_key = Some(key);
                    self.open.insert(tag, (q, a));
                    return Some((
                        tag,
                        BatchRequest {
                            question: q.question.clone(),
                            contexts,
                            seed,
                        },
                    ));
                }
                Err(e) => {
                    a.status = AnswerStatus::Failed;
                    a.error = Some(e);
                    self.send(Event::Answer(Box::new(a)));
                }
            }
        }
        None
    }

    fn done(&mut self, tag: usize, result: Result<Generation, GenerateError>) {
        let Some((q, mut a)) = self.open.remove(&tag) else {
            return;
        };
        let scored = result.map_err(|e| e.to_string()).and_then(|g| {
            if let Some(key) = &a.generation_key {
                self.runner.shared.insert(
                    key.clone(),
                    Reusable {
                        cell_id: self.runner.cell.id.clone(),
                        generation: g.clone(),
                        decode_mode: DecodeMode::Batched,
                    },
                );
            }
            fill_generation(&mut a, g, DecodeMode::Batched);
            self.runner.score_into(q, &mut a)
        });
        if let Err(e) = scored {
            a.status = AnswerStatus::Failed;
            a.error = Some(e);
        }
        self.send(Event::Answer(Box::new(a)));
    }
}

/// Writes one event line to stdout and flushes it.
fn emit(out: &mut impl Write, e: &Event) -> Result<(), WorkerError> {
    let line = serde_json::to_string(e).map_err(|e| WorkerError::Protocol(e.to_string()))?;
    writeln!(out, "{EVENT_PREFIX}{line}")?;
    out.flush()?;
    Ok(())
}

/// Parses a protocol line; `None` for lines that are not events.
pub fn parse_event(line: &str) -> Option<Event> {
    line.strip_prefix(EVENT_PREFIX)
        .and_then(|l| serde_json::from_str(l).ok())
}

/// Takes fd 1 for the protocol: returns a writer on a duplicate of it and points fd 1 at stderr.
fn protocol_channel() -> Result<BufWriter<File>, WorkerError> {
    std::io::stdout().flush()?;
    // SAFETY: dup/dup2 on the process's own standard descriptors; the duplicate is owned by the
    // returned File and closed exactly once, when it drops.
    unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(WorkerError::Io(std::io::Error::last_os_error()));
        }
        Ok(BufWriter::new(File::from_raw_fd(fd)))
    }
}

/// Asks the kernel to SIGKILL this process when its parent dies, so a killed sweep leaves no
/// orphan worker holding CPU and memory.
fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers and has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Entry point of `orchestrate worker`: reads one [`WorkerJob`] line from stdin, loads the
/// cell's runner and answers the pending pairs, writing events to the protocol channel (stdout).
pub fn run() -> Result<(), WorkerError> {
    die_with_parent();
    let mut out = protocol_channel()?;
    let mut input = String::new();
    std::io::stdin().lock().read_line(&mut input)?;
    let job: WorkerJob =
        serde_json::from_str(&input).map_err(|e| WorkerError::Protocol(e.to_string()))?;
    let questions: HashMap<&str, &Question> =
        job.questions.iter().map(|q| (q.id.as_str(), q)).collect();

    let t = Instant::now();
    // Only questions judged by evidence need the (corpus-sized) judge; BEIR questions use qrels.
    let judge = job.questions.iter().any(crate::score::needs_judge);
    let generates = job.cell.model.is_some();
    let mut runner =
        CellRunner::load(job.cell.clone(), &job.index_dir, judge)?.with_shared(job.shared.clone());
    if generates {
        // Load WordNet (METEOR) now, within load_s, rather than inside the first answer's
        // time and memory window.
        let _ = crate::score::wordnet::global();
    }
    emit(
        &mut out,
        &Event::Ready {
            load_s: t.elapsed().as_secs_f64(),
            threads: runner.threads(),
        },
    )?;
    // the latency pass first: the questions decoded alone are answered as they come, the rest
    // are collected and batched afterwards
    let batching = job
        .cell
        .model
        .as_ref()
        .map(|m| m.batching)
        .unwrap_or_default();
    let position = |qid: &str| job.order.iter().position(|id| id == qid).unwrap_or(0);
    let mut items = Vec::new();
    for (qid, repeat) in &job.pending {
        let start = Event::Start {
            question_id: qid.clone(),
            repeat: *repeat,
        };
        let Some(q) = questions.get(qid.as_str()) else {
            emit(&mut out, &start)?;
            let failed = NewAnswer {
                status: AnswerStatus::Failed,
                error: Some(format!("question {qid} was not sent to the worker")),
                ..NewAnswer::empty(qid, *repeat, "", "")
            };
            emit(&mut out, &Event::Answer(Box::new(failed)))?;
            continue;
        };
        let index = job.answer_index(qid, *repeat);
        if batching.decode_alone(position(qid)) {
            emit(&mut out, &start)?;
            let answer = runner.answer(q, *repeat, index);
            emit(&mut out, &Event::Answer(Box::new(answer)))?;
        } else {
            items.push((*q, *repeat, index));
        }
    }
    if !items.is_empty() {
        runner.answer_batched(&items, batching.parallel, &mut |e| emit(&mut out, &e))?;
    }
    emit(&mut out, &Event::Done)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! The runner with fake models: a bag-of-words embedder and an extractive generator, over a
    //! real (tiny) index built in a temporary directory. No model files needed.

    use super::*;
    use crate::cell::{ModelSpec, Retrieval};
    use crate::generate::{GenParams, StopReason};
    use crate::index::{DenseIndex, LexicalIndex};
    use crate::retrieve::{Bm25Variant, DenseIndexKind, RetrieverKind};
    use crate::split::Chunk;
    use std::sync::{Arc, Mutex};

    const DIM: usize = 16;

    /// L2-normalised counts of each word's hash bucket.
    pub(crate) struct BagOfWords;

    impl TextEmbedder for BagOfWords {
        fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|t| bag(t)).collect())
        }
    }

    fn bag(text: &str) -> Vec<f32> {
        let mut v = [0f32; DIM];
        for w in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let h = w
                .to_lowercase()
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            v[h % DIM] += 1.0;
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
        v.iter().map(|x| x / n).collect()
    }

    /// Answers with the first context; records every seed it was given. `fail` makes
    /// generation fail.
    pub(crate) struct Extractive {
        pub seeds: Arc<Mutex<Vec<u32>>>,
        pub fail: bool,
    }

    impl AnswerGenerator for Extractive {
        fn generate(
            &mut self,
            _question: &str,
            contexts: &[&str],
        ) -> Result<Generation, GenerateError> {
            if self.fail {
                return Err(GenerateError::InvalidParams("fake failure".into()));
            }
            let text = contexts.first().copied().unwrap_or_default().to_string();
            Ok(Generation {
                raw: text.clone(),
                text,
                prompt_tokens: 10,
                completion_tokens: 3,
                ttft_s: 0.01,
                response_s: 0.02,
                contexts_used: contexts.len().min(1),
                stopped_by: StopReason::Eos,
            })
        }
        fn reseed(&mut self, seed: u32) -> Result<(), GenerateError> {
            self.seeds.lock().unwrap().push(seed);
            Ok(())
        }
        fn prompt(&self, question: &str, contexts: &[&str]) -> Result<String, GenerateError> {
            Ok(format!("{}\n{question}", contexts.join("\n")))
        }
    }

    pub(crate) const TEXTS: [&str; 4] = [
        "The Storage daemon writes backup data to tapes.",
        "The File daemon listens on port 9102.",
        "The Catalog is a database of backed up files.",
        "Schedules define when jobs run automatically.",
    ];

    /// A real index of [`TEXTS`] (one chunk each, page = id + 1) with [`BagOfWords`] vectors.
    pub(crate) fn tiny_index(dir: &std::path::Path) -> CorpusIndex {
        let chunks: Vec<Chunk> = TEXTS
            .iter()
            .enumerate()
            .map(|(i, t)| Chunk {
                id: i as u32,
                source: "doc.txt".into(),
                page: i as u32 + 1,
                start: 0,
                text: t.to_string(),
            })
            .collect();
        let vectors: Vec<Vec<f32>> = TEXTS.iter().map(|t| bag(t)).collect();
        DenseIndex::build(&dir.join("dense"), &vectors, DIM).unwrap();
        LexicalIndex::build(&dir.join("lexical"), &chunks).unwrap();
        CorpusIndex::new(
            dir.to_path_buf(),
            chunks,
            DenseIndex::open(&dir.join("dense")).unwrap(),
            LexicalIndex::open(&dir.join("lexical")).unwrap(),
        )
        .unwrap()
    }

    pub(crate) fn cell(model: bool, retriever: RetrieverKind) -> Cell {
        let mut c = Cell {
            id: String::new(),
            model: model.then(|| ModelSpec {
                name: "fake".into(),
                gguf: "fake.gguf".into(),
                gguf_sha256: "0".into(),
                params: GenParams {
                    sampling: crate::sampling::Sampling {
                        seed: 40,
                        ..Default::default()
                    },
                    ..GenParams::default()
                },
                threads: None,
                prompt_name: None,
                batching: Default::default(),
            }),
            retrieval: Retrieval {
                chunk_size: 100,
                chunk_overlap: 0,
                retriever,
                top_k: 2,
                fetch_k: Some(4),
                lambda_mult: Some(0.5),
                ensemble_weight: Some(0.5),
                bm25: Some(Bm25Variant::Okapi),
                dense_index: Some(DenseIndexKind::Exact),
                name: None,
                members: None,
                child_chunk_size: None,
                child_chunk_overlap: None,
            }
            .collapsed(),
            corpus: vec![],
            corpus_fingerprint: "c".into(),
            embedding_model: "e".into(),
            embedder_fingerprint: "e".into(),
        };
        c.id = c.compute_id();
        c
    }

    fn question() -> Question {
        Question {
            id: "q1".into(),
            question: "Which port does the File daemon listen on?".into(),
            expected_answer: "The File daemon listens on port 9102.".into(),
            short_answer: None,
            page: None,
            evidence: Some("listens on port 9102".into()),
            difficulty: None,
            source: None,
            qrels: Default::default(),
        }
    }

    /// A runner of `cell` on the tiny index in `dir` with the extractive fake generator, and
    /// the seeds that generator is given.
    fn extractive_runner(cell: Cell, dir: &std::path::Path) -> (CellRunner, Arc<Mutex<Vec<u32>>>) {
        let seeds = Arc::new(Mutex::new(Vec::new()));
        let runner = CellRunner::with_parts(
            cell,
            tiny_index(dir),
            true,
            Box::new(BagOfWords),
            Some(Box::new(Extractive {
                seeds: seeds.clone(),
                fail: false,
            })),
        );
        (runner, seeds)
    }

    #[test]
    fn a_generating_cell_retrieves_generates_and_scores() {
        let d = tempfile::tempdir().unwrap();
        let (mut runner, seeds) = extractive_runner(cell(true, RetrieverKind::Bm25), d.path());
        let a = runner.answer(&question(), 2, 5);
        assert_eq!(a.status, AnswerStatus::Ok, "{:?}", a.error);
        assert_eq!(a.chunk_ids.first(), Some(&1), "the port chunk ranks first");
        assert_eq!(a.pages.first(), Some(&2));
        assert_eq!(a.answer, TEXTS[1]);
        assert_eq!(a.contexts_used, Some(1));
        // the answer is the reference answer word for word: cosine 1, F1 1, hit@2 1
        assert!((a.cosine.unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(a.metrics.get("f1"), Some(&1.0));
        assert_eq!(a.metrics.get("hit@2"), Some(&1.0));
        // repeat r samples with seed + r
        assert_eq!(*seeds.lock().unwrap(), vec![42]);
    }

    #[test]
    fn llama_cpp_python_seeding_draws_by_answer_index() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cell(true, RetrieverKind::Bm25);
        if let Some(m) = c.model.as_mut() {
            m.params.sampling.seed = -1;
            m.params.sampling.seed_mode = Some(crate::sampling::SeedMode::LlamaCppPython);
        }
        let (mut runner, seeds) = extractive_runner(c, d.path());
        let job = WorkerJob {
            cell: runner.cell().clone(),
            index_dir: d.path().to_path_buf(),
            questions: vec![question()],
            pending: vec![],
            order: vec!["q0".into(), "q1".into(), "q2".into()],
            shared: vec![],
        };
        // q1 of repeat 1 is the 5th answer of a cell asking q0, q1, q2 twice
        assert_eq!(job.answer_index("q1", 1), 4);
        for (repeat, index) in [(0, 1), (1, 4)] {
            runner.answer(&question(), repeat, index);
        }
        let want: Vec<u32> = crate::sampling::llama_cpp_python_seeds(-1)
            .take(5)
            .map(|s| s as u32)
            .collect();
        assert_eq!(*seeds.lock().unwrap(), vec![want[1], want[4]]);
    }

    #[test]
    fn retrieval_only_cells_have_no_answer_metrics_and_failures_are_answers() {
        let d = tempfile::tempdir().unwrap();
        let mut runner = CellRunner::with_parts(
            cell(false, RetrieverKind::Dense),
            tiny_index(d.path()),
            true,
            Box::new(BagOfWords),
            None,
        );
        let a = runner.answer(&question(), 0, 0);
        assert_eq!(a.status, AnswerStatus::Ok);
        assert_eq!(a.chunk_ids.len(), 2);
        assert!(a.cosine.is_none() && a.answer.is_empty());
        assert!(a.metrics.contains_key("ndcg@2") && !a.metrics.contains_key("f1"));

        let d = tempfile::tempdir().unwrap();
        let mut failing = CellRunner::with_parts(
            cell(true, RetrieverKind::Ensemble),
            tiny_index(d.path()),
            false,
            Box::new(BagOfWords),
            Some(Box::new(Extractive {
                seeds: Default::default(),
                fail: true,
            })),
        );
        let a = failing.answer(&question(), 0, 0);
        assert_eq!(a.status, AnswerStatus::Failed);
        assert!(a.error.unwrap().contains("fake failure"));
    }

    /// Decodes like a batching model: takes up to `parallel` requests, then finishes them in
    /// reverse order (answers from [`Extractive`]); `fail_start` fails the whole batch after
    /// taking its first requests, as a context that cannot be created would.
    struct ReverseBatches {
        inner: Extractive,
        fail_start: bool,
    }

    impl AnswerGenerator for ReverseBatches {
        fn generate(&mut self, q: &str, contexts: &[&str]) -> Result<Generation, GenerateError> {
            self.inner.generate(q, contexts)
        }
        fn reseed(&mut self, seed: u32) -> Result<(), GenerateError> {
            self.inner.reseed(seed)
        }
        fn prompt(&self, q: &str, contexts: &[&str]) -> Result<String, GenerateError> {
            self.inner.prompt(q, contexts)
        }
        fn generate_many(
            &mut self,
            parallel: u32,
            driver: &mut dyn BatchDriver,
        ) -> Result<(), GenerateError> {
            loop {
                let taken: Vec<_> = (0..parallel).map_while(|_| driver.next()).collect();
                if taken.is_empty() {
                    return Ok(());
                }
                if self.fail_start {
                    return Err(GenerateError::InvalidParams("no context".into()));
                }
                for (tag, r) in taken.into_iter().rev() {
                    let contexts: Vec<&str> = r.contexts.iter().map(String::as_str).collect();
                    self.inner.reseed(r.seed)?;
                    driver.done(tag, self.inner.generate(&r.question, &contexts));
                }
            }
        }
    }

    /// One question per text of [`TEXTS`], its expected answer the text itself.
    fn questions() -> Vec<Question> {
        TEXTS
            .iter()
            .enumerate()
            .map(|(i, t)| Question {
                id: format!("q{i}"),
                question: format!("What about this: {}", &t[..t.len() / 2]),
                expected_answer: t.to_string(),
                ..question()
            })
            .collect()
    }

    /// `qs` as batch items: repeat 0, answer index = position.
    fn first_repeat(qs: &[Question]) -> Vec<(&Question, u32, u64)> {
        qs.iter()
            .enumerate()
            .map(|(i, q)| (q, 0, i as u64))
            .collect()
    }

    #[test]
    fn batched_answers_equal_single_answers_and_arrive_as_they_finish() {
        let qs = questions();
        let items = first_repeat(&qs);
        let d = tempfile::tempdir().unwrap();
        let (mut single, single_seeds) =
            extractive_runner(cell(true, RetrieverKind::Bm25), d.path());
        let alone: Vec<NewAnswer> = items
            .iter()
            .map(|(q, r, i)| single.answer(q, *r, *i))
            .collect();

        let d = tempfile::tempdir().unwrap();
        let seeds = Arc::new(Mutex::new(Vec::new()));
        let mut batched = CellRunner::with_parts(
            cell(true, RetrieverKind::Bm25),
            tiny_index(d.path()),
            true,
            Box::new(BagOfWords),
            Some(Box::new(ReverseBatches {
                inner: Extractive {
                    seeds: seeds.clone(),
                    fail: false,
                },
                fail_start: false,
            })),
        );
        let mut events = Vec::new();
        batched
            .answer_batched(&items, 3, &mut |e| {
                events.push(e);
                Ok(())
            })
            .unwrap();
        // every question starts before it is answered; at most 3 are open at once
        let mut open = std::collections::BTreeSet::new();
        let mut most = 0;
        let mut answers = Vec::new();
        for e in events {
            match e {
                Event::Start { question_id, .. } => {
                    assert!(open.insert(question_id));
                    most = most.max(open.len());
                }
                Event::Answer(a) => {
                    assert!(
                        open.remove(&a.question_id),
                        "{} answered before it started",
                        a.question_id
                    );
                    answers.push(*a);
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(open.is_empty());
        assert_eq!(most, 3);
        let order: Vec<&str> = answers.iter().map(|a| a.question_id.as_str()).collect();
        assert_eq!(
            order,
            ["q2", "q1", "q0", "q3"],
            "answers arrive as they finish"
        );
        // the same answers, scores and seeds as one at a time; only the decode mode differs
        for want in &alone {
            let got = answers
                .iter()
                .find(|a| a.question_id == want.question_id)
                .unwrap();
            assert_eq!(want.decode_mode, Some(DecodeMode::Single));
            assert_eq!(got.decode_mode, Some(DecodeMode::Batched));
            let same = NewAnswer {
                decode_mode: want.decode_mode,
                retrieval_s: want.retrieval_s,
                ..got.clone()
            };
            assert_eq!(&same, want);
        }
        let mut got_seeds = seeds.lock().unwrap().clone();
        got_seeds.sort_unstable();
        assert_eq!(got_seeds, *single_seeds.lock().unwrap());
    }

    #[test]
    fn a_batch_that_cannot_start_fails_its_open_questions_and_the_parent_going_away_stops_it() {
        let qs = questions();
        let items = first_repeat(&qs);
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let runner = |fail_start: bool| {
            CellRunner::with_parts(
                cell(true, RetrieverKind::Bm25),
                tiny_index(dirs[usize::from(fail_start)].path()),
                false,
                Box::new(BagOfWords),
                Some(Box::new(ReverseBatches {
                    inner: Extractive {
                        seeds: Default::default(),
                        fail: false,
                    },
                    fail_start,
                })),
            )
        };
        let mut events = Vec::new();
        let err = runner(true)
            .answer_batched(&items, 2, &mut |e| {
                events.push(e);
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("no context"), "{err}");
        let failed: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Answer(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(
            failed.len(),
            2,
            "the two questions taken up are stored as failed"
        );
        assert!(failed.iter().all(|a| a.status == AnswerStatus::Failed
            && a.error.as_deref().is_some_and(|e| e.contains("no context"))));

        // a sink that fails (the parent is gone) stops the batch: nothing further starts
        let mut starts = 0;
        let err = runner(false)
            .answer_batched(&items, 2, &mut |e| {
                if matches!(e, Event::Start { .. }) {
                    starts += 1;
                }
                Err(WorkerError::Protocol("parent gone".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("parent gone"));
        assert_eq!(starts, 1);
    }

    #[test]
    fn an_identical_prompt_reuses_the_stored_generation_and_says_whose() {
        let d = tempfile::tempdir().unwrap();
        // the same model and settings; bm25 and the ensemble retrieve the same two chunks here
        let (mut first, first_seeds) = extractive_runner(cell(true, RetrieverKind::Bm25), d.path());
        let a = first.answer(&question(), 0, 0);
        assert_eq!(a.shared_from, None);
        let key = a
            .generation_key
            .clone()
            .expect("a generated answer has a key");
        assert_eq!(first_seeds.lock().unwrap().len(), 1);
        let stored = SharedGeneration {
            key: key.clone(),
            cell_id: first.cell().id.clone(),
            generation: Generation {
                text: a.answer.clone(),
                raw: a.answer.clone(),
                prompt_tokens: a.prompt_tokens.unwrap(),
                completion_tokens: a.completion_tokens.unwrap(),
                ttft_s: a.ttft_s.unwrap(),
                response_s: a.response_time_s.unwrap(),
                contexts_used: a.contexts_used.unwrap() as usize,
                stopped_by: StopReason::Eos,
            },
            decode_mode: DecodeMode::Single,
        };
        let d2 = tempfile::tempdir().unwrap();
        // another cell (here: another corpus fingerprint) whose retrieval gives the same prompt
        let mut other = cell(true, RetrieverKind::Bm25);
        other.corpus_fingerprint = "another corpus".into();
        other.id = other.compute_id();
        assert_ne!(other.id, first.cell().id);
        let (second, seeds) = extractive_runner(other, d2.path());
        let mut second = second.with_shared(vec![stored]);
        let b = second.answer(&question(), 0, 0);
        assert_eq!(b.chunk_ids, a.chunk_ids);
        assert_eq!(b.shared_from.as_deref(), Some(first.cell().id.as_str()));
        assert_eq!(b.generation_key.as_deref(), Some(key.as_str()));
        assert_eq!(
            (b.answer.as_str(), b.response_time_s),
            (a.answer.as_str(), a.response_time_s)
        );
        assert!(seeds.lock().unwrap().is_empty(), "no generation call");
        // within one runner the same question and repeat is shared too, another repeat is not
        assert!(second.answer(&question(), 0, 0).shared_from.is_some());
        assert!(second.answer(&question(), 1, 1).shared_from.is_none());
        // another seed (a sampled model) or other contexts is another key: generated anew
        let mut sampled = cell(true, RetrieverKind::Bm25);
        if let Some(m) = sampled.model.as_mut() {
            m.params.sampling.temperature = 0.7;
        }
        sampled.id = sampled.compute_id();
        let m = sampled.model.as_ref().unwrap();
        let k1 = crate::cell::generation_key(m, 1, 0, "q", &["c"]);
        assert_ne!(k1, crate::cell::generation_key(m, 2, 0, "q", &["c"]));
        assert_ne!(k1, crate::cell::generation_key(m, 1, 0, "q", &["c", "d"]));
        let greedy = cell(true, RetrieverKind::Bm25);
        let g = greedy.model.as_ref().unwrap();
        assert_eq!(
            crate::cell::generation_key(g, 1, 0, "q", &["c"]),
            crate::cell::generation_key(g, 2, 0, "q", &["c"]),
            "greedy decoding ignores the seed"
        );
        assert_ne!(
            k1,
            crate::cell::generation_key(m, 1, 1, "q", &["c"]),
            "repeats never share"
        );
        assert!(k1.starts_with(&crate::cell::generation_family(m)));
        assert_ne!(
            crate::cell::generation_family(m),
            crate::cell::generation_family(g)
        );
    }

    #[test]
    fn jobs_and_events_round_trip() {
        let job = WorkerJob {
            cell: cell(true, RetrieverKind::Mmr),
            index_dir: "store/indexes/x".into(),
            questions: vec![question()],
            pending: vec![("q1".into(), 0), ("q1".into(), 1)],
            order: vec!["q1".into()],
            shared: vec![],
        };
        let back: WorkerJob = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        let e = Event::Ready {
            load_s: 1.5,
            threads: Some(2),
        };
        let line = format!("{EVENT_PREFIX}{}", serde_json::to_string(&e).unwrap());
        assert_eq!(parse_event(&line), Some(e));
        assert_eq!(parse_event("llama.cpp says hi"), None);
    }
}
