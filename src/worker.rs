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

use crate::cell::{AnswerStatus, Cell};
use crate::embed::{EmbedError, Embedder};
use crate::generate::{GenerateError, Generation, Generator};
use crate::index::CorpusIndex;
use crate::qa::Question;
use crate::retrieve::{retrieve_with_children, ChildIndexes, Retrieved};
use crate::score::retrieval::JudgeCorpus;
use crate::store::NewAnswer;

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
}

/// One question answered by [`CellRunner::run`]: what was retrieved and what was generated.
pub struct Ran {
    /// Retrieved chunks, best first.
    pub hits: Vec<Retrieved>,
    /// Seconds spent embedding the question and retrieving.
    pub retrieval_s: f64,
    /// The generation (`None` for a cell without a model).
    pub generation: Option<Generation>,
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
        }
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
        let t = Instant::now();
        let qv = self
            .embedder
            .embed_texts(&[question])
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .unwrap_or_default();
        let params = self.cell.retrieval.params();
        let hits = retrieve_with_children(&self.index, &self.children, question, &qv, &params)
            .map_err(|e| e.to_string())?;
        let retrieval_s = t.elapsed().as_secs_f64();
        let generation = match (self.generator.as_mut(), &self.cell.model) {
            (Some(g), Some(m)) => {
                g.reseed(m.params.sampling.draw_seed(repeat, answer_index))
                    .map_err(|e| e.to_string())?;
                let contexts: Vec<&str> = hits
                    .iter()
                    .filter_map(|h| self.index.chunk(h.chunk_id))
                    .map(|c| c.text.as_str())
                    .collect();
                Some(g.generate(question, &contexts).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        Ok(Ran {
            hits,
            retrieval_s,
            generation,
        })
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
        let mut a = NewAnswer::empty(&q.id, repeat, &q.question, &q.expected_answer);
        let result = self.run(&q.question, repeat, answer_index).and_then(|ran| {
            a.retrieval_s = Some(ran.retrieval_s);
            a.chunk_ids = ran.hits.iter().map(|h| h.chunk_id).collect();
            a.scores = ran.hits.iter().map(|h| h.score).collect();
            a.pages = a
                .chunk_ids
                .iter()
                .filter_map(|id| self.index.chunk(*id))
                .map(|c| c.page)
                .collect();
            if let Some(g) = ran.generation {
                a.answer = g.text;
                a.prompt_tokens = Some(g.prompt_tokens);
                a.completion_tokens = Some(g.completion_tokens);
                a.ttft_s = Some(g.ttft_s);
                a.response_time_s = Some(g.response_s);
                a.contexts_used = Some(g.contexts_used as u32);
            }
            let (cosine, metrics) = self.score(q, &a.chunk_ids, &a.answer)?;
            a.cosine = cosine;
            a.metrics = metrics;
            Ok(())
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
    let mut runner = CellRunner::load(job.cell.clone(), &job.index_dir, judge)?;
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
    for (qid, repeat) in &job.pending {
        emit(
            &mut out,
            &Event::Start {
                question_id: qid.clone(),
                repeat: *repeat,
            },
        )?;
        let answer = match questions.get(qid.as_str()) {
            Some(q) => runner.answer(q, *repeat, job.answer_index(qid, *repeat)),
            None => NewAnswer {
                status: AnswerStatus::Failed,
                error: Some(format!("question {qid} was not sent to the worker")),
                ..NewAnswer::empty(qid, *repeat, "", "")
            },
        };
        emit(&mut out, &Event::Answer(Box::new(answer)))?;
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

    #[test]
    fn jobs_and_events_round_trip() {
        let job = WorkerJob {
            cell: cell(true, RetrieverKind::Mmr),
            index_dir: "store/indexes/x".into(),
            questions: vec![question()],
            pending: vec![("q1".into(), 0), ("q1".into(), 1)],
            order: vec!["q1".into()],
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
