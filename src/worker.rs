//! The worker: runs one cell in its own process and reports each answer to the parent.
//!
//! The parent ([`crate::sweep`]) starts `orchestrate worker EXPERIMENT --cell ID --index-dir DIR`,
//! writes the pending (question id, repeat) pairs as one JSON array on the worker's stdin, and
//! reads [`Event`]s, one JSON object per stdout line prefixed with [`EVENT_PREFIX`]. At start-up
//! the worker moves its stdout to a private descriptor and points fd 1 at stderr, so whatever a
//! native library prints goes to the stderr log and can never interleave with an event. The worker loads the
//! embedding model and the LLM once, then for each pending pair: embeds the question, retrieves,
//! generates, scores the answer (cosine similarity to the expected answer, and the named retrieval and
//! answer metrics of [`crate::score::metrics_for`]), and emits it. The
//! parent owns the database; a worker never writes results itself, so a crash loses nothing that
//! was reported.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::experiment::{Cell, Experiment};
use crate::generate::Generator;
use crate::qa::Question;
use crate::retrieve::{retrieve, RetrieverParams};
use crate::store::NewAnswer;

/// Prefix of every protocol line on the worker's stdout.
pub const EVENT_PREFIX: &str = "@@orchestrate ";

/// One message from worker to parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Models and index are loaded; `load_s` seconds it took.
    Ready {
        /// Seconds spent loading the index, embedding model and LLM.
        load_s: f64,
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
    /// The experiment file is invalid.
    #[error(transparent)]
    Experiment(#[from] crate::experiment::ExperimentError),
    /// The QA file is invalid.
    #[error(transparent)]
    Qa(#[from] crate::qa::QaError),
    /// No such cell in the experiment.
    #[error("experiment {file} has no cell {cell}")]
    NoCell {
        /// The experiment file.
        file: String,
        /// The cell id asked for.
        cell: String,
    },
    /// The pending list on stdin was not valid JSON.
    #[error("bad pending list on stdin: {0}")]
    Protocol(String),
    /// The embedding model failed.
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    /// The index could not be opened.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// The LLM could not be loaded.
    #[error(transparent)]
    Generate(#[from] crate::generate::GenerateError),
    /// Writing to the parent failed (the parent is gone).
    #[error("lost the parent: {0}")]
    Io(#[from] std::io::Error),
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

/// The questions of an experiment in file order, cut to `limit_questions`.
pub fn questions_of(exp: &Experiment) -> Result<Vec<Question>, crate::qa::QaError> {
    let mut qs = crate::qa::load_questions(&exp.qa)?;
    if let Some(l) = exp.limit_questions {
        qs.truncate(l as usize);
    }
    Ok(qs)
}

/// Retriever parameters of a cell (defaults fill the collapsed axes; they are unused there).
pub fn retriever_params(cell: &Cell) -> RetrieverParams {
    let r = &cell.retrieval;
    RetrieverParams {
        kind: r.retriever,
        top_k: r.top_k,
        fetch_k: r.fetch_k.unwrap_or(20),
        lambda_mult: r.lambda_mult.unwrap_or(0.5) as f32,
        ensemble_weight: r.ensemble_weight.unwrap_or(0.5) as f32,
        bm25: r.bm25.unwrap_or_default(),
        dense_index: r.dense_index.unwrap_or_default(),
    }
}

/// Entry point of `orchestrate worker`: runs the pending pairs read from stdin for `cell_id` of
/// the experiment at `experiment_path` (loaded as the parent did, `retrieval_only` included),
/// using the index at `index_dir`, and writes events to the protocol channel (stdout).
pub fn run(
    experiment_path: &Path,
    retrieval_only: bool,
    cell_id: &str,
    index_dir: &Path,
) -> Result<(), WorkerError> {
    die_with_parent();
    let mut out = protocol_channel()?;
    let exp = Experiment::load_with(experiment_path, retrieval_only)?;
    let cell = exp
        .cell(cell_id)
        .ok_or_else(|| WorkerError::NoCell {
            file: experiment_path.display().to_string(),
            cell: cell_id.to_string(),
        })?
        .clone();
    let mut input = String::new();
    std::io::stdin().lock().read_line(&mut input)?;
    let pending: Vec<(String, u32)> =
        serde_json::from_str(&input).map_err(|e| WorkerError::Protocol(e.to_string()))?;
    let questions: HashMap<String, Question> = questions_of(&exp)?
        .into_iter()
        .map(|q| (q.id.clone(), q))
        .collect();

    let t = Instant::now();
    let index = crate::index::open(index_dir)?;
    // Only questions judged by evidence need the (corpus-sized) judge; BEIR questions use qrels.
    let judge = questions.values().any(crate::score::needs_judge).then(|| {
        crate::score::retrieval::JudgeCorpus::new(
            index.chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)),
        )
    });
    let embedder = Embedder::load(&exp.embedding_model)?;
    if exp.generate {
        // Load WordNet (METEOR) now, within load_s, rather than inside the first answer's
        // time and memory window.
        let _ = crate::score::wordnet::global();
    }
    let mut generator = match exp.models.get(cell.model) {
        Some(m) if exp.generate => Some(Generator::load(&m.gguf, m.params.clone())?),
        _ => None,
    };
    emit(
        &mut out,
        &Event::Ready {
            load_s: t.elapsed().as_secs_f64(),
        },
    )?;

    let params = retriever_params(&cell);
    let base_seed = exp.models.get(cell.model).map_or(0, |m| m.params.seed);
    let mut expected_vecs: HashMap<String, Vec<f32>> = HashMap::new();
    for (qid, repeat) in pending {
        emit(
            &mut out,
            &Event::Start {
                question_id: qid.clone(),
                repeat,
            },
        )?;
        let answer = match questions.get(&qid) {
            Some(q) => {
                if let Some(g) = generator.as_mut() {
                    reseed(g, base_seed, repeat)?;
                }
                answer_one(
                    q,
                    repeat,
                    &index,
                    judge.as_ref(),
                    &embedder,
                    generator.as_mut(),
                    &params,
                    &mut expected_vecs,
                )
            }
            None => NewAnswer {
                status: "failed".into(),
                error: Some(format!(
                    "question {qid} is no longer in {}",
                    exp.qa.display()
                )),
                ..NewAnswer::empty(&qid, repeat, "", "")
            },
        };
        emit(&mut out, &Event::Answer(Box::new(answer)))?;
    }
    emit(&mut out, &Event::Done)?;
    Ok(())
}

/// Gives repeat `repeat` its own sampling seed (`seed + repeat`), so repeats with temperature > 0
/// are independent draws, and each stays reproducible.
fn reseed(g: &mut Generator, base: u32, repeat: u32) -> Result<(), WorkerError> {
    let mut p = g.params().clone();
    p.seed = base.wrapping_add(repeat);
    g.set_params(p)?;
    Ok(())
}

/// Retrieves, generates and scores one question; failures become a `failed` answer.
///
/// `judge` judges retrieval of questions with evidence (`None` when no question needs it, see
/// [`crate::score::needs_judge`]). Cosine similarity to the expected answer is recorded only
/// when the question has one ([`crate::score::has_reference_answer`]; BEIR questions do not), so
/// an empty reference never yields a misleading similarity.
#[allow(clippy::too_many_arguments)]
fn answer_one(
    q: &Question,
    repeat: u32,
    index: &crate::index::CorpusIndex,
    judge: Option<&crate::score::retrieval::JudgeCorpus>,
    embedder: &Embedder,
    generator: Option<&mut Generator>,
    params: &RetrieverParams,
    expected_vecs: &mut HashMap<String, Vec<f32>>,
) -> NewAnswer {
    let mut a = NewAnswer::empty(&q.id, repeat, &q.question, &q.expected_answer);
    let result: Result<(), String> = (|| {
        let t = Instant::now();
        let qv = embedder
            .embed(&[q.question.as_str()])
            .map_err(|e| e.to_string())?;
        let qv = qv.into_iter().next().unwrap_or_default();
        let hits = retrieve(index, &q.question, &qv, params).map_err(|e| e.to_string())?;
        a.retrieval_s = Some(t.elapsed().as_secs_f64());
        let chunks: Vec<&crate::split::Chunk> = hits
            .iter()
            .filter_map(|h| index.chunks.get(h.chunk_id as usize))
            .collect();
        a.chunk_ids = hits.iter().map(|h| h.chunk_id).collect();
        a.scores = hits.iter().map(|h| h.score).collect();
        a.pages = chunks.iter().map(|c| c.page).collect();
        let Some(generator) = generator else {
            a.metrics = crate::score::metrics_for(
                q,
                &a.chunk_ids,
                params.top_k,
                &index.chunks,
                judge,
                None,
            );
            return Ok(());
        };
        let contexts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        let g = generator
            .answer(&q.question, &contexts)
            .map_err(|e| e.to_string())?;
        a.answer = g.text;
        a.prompt_tokens = Some(g.prompt_tokens);
        a.completion_tokens = Some(g.completion_tokens);
        a.ttft_s = Some(g.ttft_s);
        a.response_time_s = Some(g.response_s);
        a.contexts_used = Some(g.contexts_used as u32);
        if crate::score::has_reference_answer(q) {
            let expected = match expected_vecs.get(&q.id) {
                Some(v) => v.clone(),
                None => {
                    let v = embedder
                        .embed(&[q.expected_answer.as_str()])
                        .map_err(|e| e.to_string())?;
                    let v = v.into_iter().next().unwrap_or_default();
                    expected_vecs.insert(q.id.clone(), v.clone());
                    v
                }
            };
            let av = embedder
                .embed(&[a.answer.as_str()])
                .map_err(|e| e.to_string())?;
            let av = av.into_iter().next().unwrap_or_default();
            a.cosine = Some(crate::score::cosine(&av, &expected));
        }
        a.metrics = crate::score::metrics_for(
            q,
            &a.chunk_ids,
            params.top_k,
            &index.chunks,
            judge,
            Some(&a.answer),
        );
        Ok(())
    })();
    if let Err(e) = result {
        a.status = "failed".into();
        a.error = Some(e);
    }
    a
}
