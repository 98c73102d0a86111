//! The sweep: runs every cell of an experiment, each in an isolated worker subprocess, and stores
//! each answer as it completes.
//!
//! For each cell the parent (1) asks the store which (question, repeat) pairs already have an `ok`
//! answer and skips them, so an interrupted or extended sweep resumes without losing or
//! duplicating a row; (2) opens or builds the cell's index (cached by content hash, shared by all
//! cells with the same corpus and splitter); (3) starts `orchestrate worker` for the pending pairs
//! and samples its RSS and CPU with [`crate::sample::Sampler`]; (4) attributes the samples taken
//! between a question's `start` and `answer` events to that answer and commits it. A worker that
//! exits early or reports nothing for `question_timeout_s` is killed; the question in flight is
//! stored as `failed` with the tail of the worker's stderr, and the sweep goes on.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::embed::Embedder;
use crate::experiment::{Cell, Experiment};
use crate::sample::{Sampler, Usage};
use crate::store::{cell_model, CellStatus, NewAnswer, Store};
use crate::worker::{parse_event, Event};

/// Errors that stop a sweep (a failing cell does not: it is recorded and the sweep goes on).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The QA file is invalid.
    #[error(transparent)]
    Qa(#[from] crate::qa::QaError),
    /// The result database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The embedding model could not be loaded (needed to build indexes).
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] crate::corpus::CorpusError),
    /// An index could not be built or opened.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// The worker binary could not be started.
    #[error("cannot start worker {exe}: {source}")]
    Spawn {
        /// The executable.
        exe: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The QA set has no questions.
    #[error("QA file {0} has no questions")]
    NoQuestions(PathBuf),
}

/// How to run a sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Directory of the result databases and the index cache (`store/`).
    pub store_dir: PathBuf,
    /// Executable to start workers from (normally `std::env::current_exe()`).
    pub worker_exe: PathBuf,
    /// Sampling interval of the worker's RSS and CPU.
    pub sample_interval: Duration,
    /// Draw progress bars (a terminal); otherwise log one line per answer.
    pub progress: bool,
}

impl SweepOptions {
    /// Options for the running binary: `store_dir`, 200 ms sampling, bars when stderr is a TTY.
    pub fn for_current_exe(store_dir: PathBuf) -> std::io::Result<SweepOptions> {
        Ok(SweepOptions {
            store_dir,
            worker_exe: std::env::current_exe()?,
            sample_interval: Duration::from_millis(200),
            progress: std::io::stderr().is_terminal(),
        })
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepSummary {
    /// Cells in the grid.
    pub cells: usize,
    /// Cells that had nothing left to do.
    pub skipped_cells: usize,
    /// Cells that failed (worker crash, timeout, load error).
    pub failed_cells: usize,
    /// Answers committed by this sweep (ok or failed).
    pub answers: usize,
    /// Of those, failed.
    pub failed_answers: usize,
    /// Path of the result database.
    pub database: PathBuf,
    /// Wall time of the sweep, seconds.
    pub wall_s: f64,
}

/// Keeps the last `cap` lines of a stream.
#[derive(Clone, Default)]
struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl Tail {
    fn push(&self, line: String, cap: usize) {
        if let Ok(mut l) = self.lines.lock() {
            if l.len() == cap {
                l.pop_front();
            }
            l.push_back(line);
        }
    }
    fn text(&self) -> String {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// Progress display: bars on a terminal, log lines otherwise.
struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
}

impl Progress {
    fn new(enabled: bool, cells: usize) -> Progress {
        if !enabled {
            return Progress { bars: None };
        }
        let mp = MultiProgress::new();
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        let cells_bar = mp.add(ProgressBar::new(cells as u64));
        cells_bar.set_style(style(
            "cells     [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        ));
        let q_bar = mp.add(ProgressBar::new(0));
        q_bar.set_style(style(
            "questions [{bar:30.green/white}] {pos}/{len} {per_sec} eta {eta} {msg}",
        ));
        Progress {
            bars: Some((mp, cells_bar, q_bar)),
        }
    }
    fn line(&self, msg: &str) {
        match &self.bars {
            Some((mp, _, _)) => {
                let _ = mp.println(msg);
            }
            None => tracing::info!("{msg}"),
        }
    }
    fn start_cell(&self, label: &str, todo: usize) {
        if let Some((_, c, q)) = &self.bars {
            c.set_message(label.to_string());
            q.set_length(todo as u64);
            q.set_position(0);
            q.reset_eta();
        }
    }
    fn answered(&self, msg: &str) {
        match &self.bars {
            Some((_, _, q)) => {
                q.inc(1);
                q.set_message(msg.to_string());
            }
            None => tracing::info!("{msg}"),
        }
    }
    fn end_cell(&self) {
        if let Some((_, c, _)) = &self.bars {
            c.inc(1);
        }
    }
    fn finish(&self) {
        if let Some((_, c, q)) = &self.bars {
            q.finish_and_clear();
            c.finish();
        }
    }
}

/// Runs (or resumes) the sweep of `exp`. Returns a summary; cell failures are in it, not errors.
pub fn run(exp: &Experiment, opts: &SweepOptions) -> Result<SweepSummary, SweepError> {
    let started = Instant::now();
    let questions = crate::worker::questions_of(exp)?;
    if questions.is_empty() {
        return Err(SweepError::NoQuestions(exp.qa.clone()));
    }
    let db_path = Store::path_for(&opts.store_dir, &exp.name);
    let mut store = Store::open(&db_path)?;
    let run_id = store.begin_run(exp, &crate::sample::host_facts())?;
    store.register_cells(exp)?;
    let mut summary = SweepSummary {
        cells: exp.cells.len(),
        database: db_path.clone(),
        ..Default::default()
    };
    let progress = Progress::new(opts.progress, exp.cells.len());
    progress.line(&format!(
        "{}: {} cells × {} questions × {} repeats → {}",
        exp.name,
        exp.cells.len(),
        questions.len(),
        exp.repeats,
        db_path.display()
    ));

    let mut embedder: Option<Embedder> = None;
    let mut corpus_fingerprint: Option<String> = None;
    let pages: std::cell::RefCell<Option<Vec<crate::corpus::Page>>> = Default::default();
    for (i, cell) in exp.cells.iter().enumerate() {
        let label = cell_label(exp, cell);
        let done = store.done_keys(&cell.id)?;
        let pending: Vec<(String, u32)> = (0..exp.repeats)
            .flat_map(|r| questions.iter().map(move |q| (q.id.clone(), r)))
            .filter(|k| !done.contains(k))
            .collect();
        if pending.is_empty() {
            summary.skipped_cells += 1;
            store.set_cell_status(&cell.id, run_id, CellStatus::Done, None)?;
            progress.line(&format!(
                "[{}/{}] {label}: done already, skipped",
                i + 1,
                exp.cells.len()
            ));
            progress.end_cell();
            continue;
        }
        progress.start_cell(&label, pending.len());
        progress.line(&format!(
            "[{}/{}] {label}: {} to answer",
            i + 1,
            exp.cells.len(),
            pending.len()
        ));

        // index: open the cached one or build it (once per corpus × splitter × embedding model)
        if embedder.is_none() {
            embedder = Some(Embedder::load(&exp.embedding_model)?);
        }
        let emb = embedder
            .as_ref()
            .ok_or_else(|| SweepError::NoQuestions(exp.qa.clone()))?;
        let r = &cell.retrieval;
        if corpus_fingerprint.is_none() {
            corpus_fingerprint = Some(crate::corpus::corpus_fingerprint(&exp.corpus)?);
        }
        let key = crate::index::IndexKey {
            corpus_fingerprint: corpus_fingerprint.clone().unwrap_or_default(),
            chunk_size: r.chunk_size,
            chunk_overlap: r.chunk_overlap,
            embedder_fingerprint: emb.fingerprint().to_string(),
        };
        let (index, info) = crate::index::open_or_build(
            &opts.store_dir,
            &key,
            || -> Result<Vec<crate::corpus::Page>, crate::corpus::CorpusError> {
                if let Some(p) = pages.borrow().as_ref() {
                    return Ok(p.clone());
                }
                let mut all = Vec::new();
                for path in &exp.corpus {
                    all.extend(crate::corpus::load_pages(path)?);
                }
                *pages.borrow_mut() = Some(all.clone());
                Ok(all)
            },
            emb,
        )?;
        drop(index);
        if !info.cache_hit {
            progress.line(&format!(
                "  built index chunk {}/{}: {} chunks in {:.1} s",
                r.chunk_size, r.chunk_overlap, info.n_chunks, info.build_seconds
            ));
        }
        store.set_cell_index(
            &cell.id,
            &info.dir,
            info.build_seconds,
            info.cache_hit,
            info.n_chunks,
        )?;

        store.set_cell_status(&cell.id, run_id, CellStatus::Running, None)?;
        let outcome = run_cell(
            exp, cell, &info.dir, &pending, opts, &mut store, run_id, &progress, &label,
        )?;
        summary.answers += outcome.answers;
        summary.failed_answers += outcome.failed;
        match outcome.error {
            None if outcome.failed == 0 => {
                store.set_cell_status(&cell.id, run_id, CellStatus::Done, None)?
            }
            None => store.set_cell_status(
                &cell.id,
                run_id,
                CellStatus::Failed,
                Some(&format!(
                    "{} answers failed; rerun to retry them",
                    outcome.failed
                )),
            )?,
            Some(e) => {
                summary.failed_cells += 1;
                progress.line(&format!("  cell failed: {}", first_line(&e)));
                store.set_cell_status(&cell.id, run_id, CellStatus::Failed, Some(&e))?;
            }
        }
        progress.end_cell();
    }
    progress.finish();
    let status = if summary.failed_cells > 0 || summary.failed_answers > 0 {
        "failed"
    } else {
        "done"
    };
    store.end_run(run_id, status)?;
    summary.wall_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Human label of a cell: `model · retrieval settings`.
pub fn cell_label(exp: &Experiment, cell: &Cell) -> String {
    format!("{} · {}", cell_model(exp, cell).0, cell.retrieval)
}

/// What one worker run produced.
struct CellOutcome {
    answers: usize,
    failed: usize,
    /// Why the worker did not finish (crash, timeout, start failure), with its stderr tail.
    error: Option<String>,
}

enum Line {
    Event(Event),
    Eof,
}

/// Starts the worker for `cell`, feeds it `pending`, and stores each answer it reports.
#[allow(clippy::too_many_arguments)]
fn run_cell(
    exp: &Experiment,
    cell: &Cell,
    index_dir: &Path,
    pending: &[(String, u32)],
    opts: &SweepOptions,
    store: &mut Store,
    run_id: i64,
    progress: &Progress,
    label: &str,
) -> Result<CellOutcome, SweepError> {
    let mut child = Command::new(&opts.worker_exe)
        .arg("worker")
        .arg(&exp.path)
        .arg("--cell")
        .arg(&cell.id)
        .arg("--index-dir")
        .arg(index_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SweepError::Spawn {
            exe: opts.worker_exe.clone(),
            source,
        })?;
    let sampler = Sampler::start(child.id(), opts.sample_interval);
    let tail = Tail::default();
    let (tx, rx) = mpsc::channel::<Line>();
    spawn_readers(&mut child, tx, tail.clone());
    if let Some(mut stdin) = child.stdin.take() {
        let list = serde_json::to_string(pending).unwrap_or_else(|_| "[]".into());
        // a worker that died at start-up closes its stdin: the event loop reports it
        let _ = writeln!(stdin, "{list}");
    }

    let mut out = CellOutcome {
        answers: 0,
        failed: 0,
        error: None,
    };
    let timeout = Duration::from_secs_f64(exp.question_timeout_s);
    // generous start-up allowance: loading a model from a cold page cache can take a while
    let mut wait = timeout + Duration::from_secs(120);
    let mut current: Option<(String, u32, f64)> = None;
    loop {
        match rx.recv_timeout(wait) {
            Ok(Line::Event(Event::Ready { load_s })) => {
                store.set_cell_load_time(&cell.id, load_s)?;
                wait = timeout;
            }
            Ok(Line::Event(Event::Start {
                question_id,
                repeat,
            })) => {
                current = Some((question_id, repeat, sampler.now_s()));
            }
            Ok(Line::Event(Event::Answer(a))) => {
                let t0 = current.take().map(|c| c.2).unwrap_or(0.0);
                let window = sampler.samples_for_window(t0, sampler.now_s());
                let usage = crate::sample::summarize(&window);
                store.insert_answer(run_id, &cell.id, &a, usage.as_ref(), &window)?;
                out.answers += 1;
                if a.status != "ok" {
                    out.failed += 1;
                }
                progress.answered(&answer_line(label, &a, usage.as_ref()));
            }
            Ok(Line::Event(Event::Done)) => break,
            Ok(Line::Eof) => {
                let status = child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                std::thread::sleep(Duration::from_millis(100)); // let the stderr reader drain
                out.error = Some(format!(
                    "worker exited early ({status}); stderr tail:\n{}",
                    tail.text()
                ));
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100)); // let the stderr reader drain
                out.error = Some(format!(
                    "worker reported nothing for {:.0} s and was killed (question_timeout_s); stderr tail:\n{}",
                    wait.as_secs_f64(),
                    tail.text()
                ));
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                out.error = Some(format!(
                    "lost the worker's output; stderr tail:\n{}",
                    tail.text()
                ));
                break;
            }
        }
    }
    let _ = child.wait();
    let _ = sampler.stop();
    if let (Some(err), Some((qid, repeat, _))) = (&out.error, current) {
        // the question in flight when the worker died is stored as failed
        let q = crate::worker::questions_of(exp)?
            .into_iter()
            .find(|q| q.id == qid);
        let failed = NewAnswer {
            question_id: qid,
            repeat,
            question: q.as_ref().map(|q| q.question.clone()).unwrap_or_default(),
            expected_answer: q.map(|q| q.expected_answer).unwrap_or_default(),
            answer: String::new(),
            status: "failed".into(),
            error: Some(err.clone()),
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
        };
        store.insert_answer(run_id, &cell.id, &failed, None, &[])?;
        out.answers += 1;
        out.failed += 1;
    }
    Ok(out)
}

/// Reads the worker's stdout into events and its stderr into the tail buffer.
fn spawn_readers(child: &mut Child, tx: mpsc::Sender<Line>, tail: Tail) {
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(e) = parse_event(&line) {
                    if tx.send(Line::Event(e)).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Line::Eof);
        });
    }
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tail.push(line, 40);
            }
        });
    }
}

fn answer_line(label: &str, a: &NewAnswer, usage: Option<&Usage>) -> String {
    let mut s = format!("{label} · {} r{}", a.question_id, a.repeat);
    if a.status != "ok" {
        s.push_str(&format!(
            ": FAILED {}",
            first_line(a.error.as_deref().unwrap_or(""))
        ));
        return s;
    }
    if let Some(c) = a.cosine {
        s.push_str(&format!(": cosine {c:.3}"));
    }
    if let Some(t) = a.response_time_s {
        s.push_str(&format!(", {t:.2} s"));
    }
    if let Some(u) = usage {
        s.push_str(&format!(
            ", RSS {:.0} MiB",
            u.rss_peak_bytes as f64 / 1048576.0
        ));
    }
    s
}
