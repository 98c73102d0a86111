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

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cell::{AnswerStatus, Cell, CellStatus};
use crate::experiment::Experiment;
use crate::race::RaceSettings;
use crate::sample::{Sample, Sampler, Usage};
use crate::store::{NewAnswer, Store};
use crate::worker::{parse_event, Event, WorkerJob};

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
    /// An experiment index could not be prepared.
    #[error(transparent)]
    Catalog(#[from] crate::index::CatalogError),
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
    /// The lock file could not be created.
    #[error("cannot create lock file {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A Slurm task could not write its attempt file.
    #[error("cannot write attempt file {path}: {source}")]
    Attempt {
        /// The attempt file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The sweep was told to stop (Ctrl-C / SIGINT or SIGTERM): the running cell's worker was
    /// killed and the cell marked `interrupted`; every answer stored so far is kept.
    #[error(
        "interrupted: the sweep stopped on {signal} after storing {answers} answers in this run; \
         `orchestrate run` resumes where it stopped"
    )]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: &'static str,
        /// Answers stored by this run before it stopped.
        answers: usize,
    },
    /// Another sweep of the same experiment holds the lock.
    #[error("another `orchestrate run` of this experiment is running (it holds {0}); wait for it or stop it")]
    Busy(PathBuf),
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
    /// Progress bars to draw into (on a terminal); `None` logs one line per answer instead.
    /// Share it with the log writer (see [`BarsWriter`]) so log lines print above the bars.
    pub bars: Option<MultiProgress>,
}

impl SweepOptions {
    /// Options for the running binary: `store_dir`, 200 ms sampling, bars when stderr is a TTY.
    pub fn for_current_exe(store_dir: PathBuf) -> std::io::Result<SweepOptions> {
        Ok(SweepOptions {
            store_dir,
            worker_exe: std::env::current_exe()?,
            sample_interval: Duration::from_millis(200),
            bars: std::io::stderr().is_terminal().then(MultiProgress::new),
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
    /// Stored answers re-scored because their expected answer changed (no LLM call).
    pub rescored: usize,
    /// Every cell that failed or has failed answers: (its label, the first line of why).
    pub failures: Vec<(String, String)>,
    /// Cells a race eliminated: (its label, the evidence in one line). Not failures.
    pub eliminated: Vec<(String, String)>,
    /// Path of the result database.
    pub database: PathBuf,
    /// Wall time of the sweep, seconds.
    pub wall_s: f64,
    /// A Slurm coordinator returned detached (`--detach`) with job arrays still running.
    pub detached: bool,
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

/// A `tracing` writer that prints log lines above the progress bars (clearing and redrawing them)
/// instead of through them; plain stderr when there are no bars.
#[derive(Clone, Default)]
pub struct BarsWriter(pub Option<MultiProgress>);

impl std::io::Write for BarsWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(mp) => mp.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Progress display: bars on a terminal, log lines otherwise.
pub(crate) struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
}

impl Progress {
    pub(crate) fn new(bars: Option<MultiProgress>, cells: usize) -> Progress {
        let Some(mp) = bars else {
            return Progress { bars: None };
        };
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
    pub(crate) fn line(&self, msg: &str) {
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
///
/// Holds an exclusive lock on `store/<name>.lock` for the duration, so two sweeps of the same
/// experiment cannot interleave writes. Runs and cells left `running` by a killed sweep are marked
/// `interrupted` first.
pub fn run(exp: &Experiment, opts: &SweepOptions) -> Result<SweepSummary, SweepError> {
    let questions = exp.questions()?;
    if questions.is_empty() {
        return Err(SweepError::NoQuestions(exp.qa.clone()));
    }
    // METEOR needs WordNet; a worker's own warning would go unseen (its stderr is kept only for
    // crash reports), so the parent checks once and warns.
    if exp.generate && questions.iter().any(crate::score::has_reference_answer) {
        crate::score::wordnet::available_or_warn();
    }
    let db_path = Store::path_for(&opts.store_dir, &exp.name);
    let mut store = Store::open(&db_path)?;
    store.check_integrity()?;
    let _lock = lock(&opts.store_dir, &exp.name)?;
    store.mark_interrupted()?;
    let run_id = store.begin_run(exp, &crate::sample::host_facts())?;
    store.register_cells(&exp.cells, run_id)?;
    let stop = StopSignals::register()?;
    let result = sweep_cells(exp, opts, &questions, &mut store, run_id, &stop);
    drop(stop);
    let status = match &result {
        Ok(s) if s.failed_cells == 0 && s.failed_answers == 0 => "done",
        Ok(_) => "failed",
        Err(SweepError::Interrupted { .. }) => "interrupted",
        Err(_) => "error",
    };
    store.end_run(run_id, status)?;
    result
}

/// Ctrl-C (SIGINT) and SIGTERM during a local sweep: the first sets a flag the sweep checks
/// between events (it kills the running worker, marks the cell `interrupted` and returns
/// [`SweepError::Interrupted`]); a second one ends the process at once (exit 130 / 143), for a
/// sweep busy in a long index build. When this is dropped the shutdown is armed, so after the
/// sweep (a judge, the report) the first signal ends the process as by default (signal-hook
/// cannot give the default handler back). Follows signal-hook's
/// `register_conditional_shutdown` pattern.
pub(crate) struct StopSignals {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The signal that set the flag (0 while none has).
    which: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl StopSignals {
    fn register() -> Result<StopSignals, SweepError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::sync::Arc;
        let flag = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        let io = |source| SweepError::Lock {
            path: PathBuf::from("signal handler"),
            source,
        };
        // the shutdown first: on the first signal the flag is still false
        for (sig, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            signal_hook::flag::register_conditional_shutdown(sig, code, Arc::clone(&flag))
                .map_err(io)?;
            signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize).map_err(io)?;
            signal_hook::flag::register(sig, Arc::clone(&flag)).map_err(io)?;
        }
        Ok(StopSignals { flag, which })
    }

    /// Whether a stop signal arrived.
    fn raised(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The error to return once stopped.
    fn error(&self, answers: usize) -> SweepError {
        let signal = match self.which.load(std::sync::atomic::Ordering::SeqCst) as i32 {
            signal_hook::consts::SIGTERM => "SIGTERM",
            _ => "SIGINT",
        };
        SweepError::Interrupted { signal, answers }
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The command that runs (or resumes) the sweep of `file` into `store_dir`, as advice in
/// messages: `orchestrate run FILE`, with `--store DIR` unless `store_dir` is the default
/// `store`, so following the advice never reads or writes another store.
pub fn run_command(file: &Path, store_dir: &Path) -> String {
    // results read from the database itself: the experiment file is not known here
    let is_database = file.extension().is_some_and(|e| e == "sqlite");
    let mut cmd = if is_database {
        "orchestrate run <its experiment file>".to_string()
    } else {
        format!("orchestrate run {}", file.display())
    };
    if store_dir != Path::new("store") {
        cmd.push_str(&format!(" --store {}", store_dir.display()));
    }
    cmd
}

/// Whether a sweep of experiment `name` holds its lock under `store_dir` right now (an
/// `orchestrate run` of it is in progress, in this or another process).
pub fn is_running(store_dir: &Path, name: &str) -> bool {
    is_flocked(&store_dir.join(format!("{name}.lock")))
}

/// Takes an exclusive `flock` on `<store_dir>/<name>.lock`; released when the file closes.
pub(crate) fn lock(store_dir: &Path, name: &str) -> Result<std::fs::File, SweepError> {
    let path = store_dir.join(format!("{name}.lock"));
    match try_flock(&path) {
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(SweepError::Busy(path)),
        Err(source) => Err(SweepError::Lock { path, source }),
    }
}

/// Takes an exclusive `flock` on `path` (created if missing) without waiting; released when the
/// returned file closes (also when the process dies). `Ok(None)` when another open file
/// description holds it (another process, or another open of it in this one).
///
/// # Errors
/// The lock file cannot be created or opened.
pub(crate) fn try_flock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    Ok(Some(f))
}

/// Whether some process holds an exclusive `flock` on `path` right now (`false` when the file
/// does not exist).
pub(crate) fn is_flocked(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new().read(true).open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; a shared lock we get is released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

fn sweep_cells(
    exp: &Experiment,
    opts: &SweepOptions,
    questions: &[crate::qa::Question],
    store: &mut Store,
    run_id: i64,
    stop: &StopSignals,
) -> Result<SweepSummary, SweepError> {
    let started = Instant::now();
    let summary = SweepSummary {
        cells: exp.cells.len(),
        database: store.path().to_path_buf(),
        ..Default::default()
    };
    let rounds = exp.racing().map_or(1, |r| {
        crate::race::shard_ends(questions.len(), r.shards).len()
    });
    let planned = exp.cells.len() * rounds;
    let progress = Progress::new(opts.bars.clone(), planned);
    progress.line(&format!(
        "{}: {} cells × {} questions × {} repeats{} → {}",
        exp.name,
        exp.cells.len(),
        questions.len(),
        exp.repeats,
        exp.racing().map_or(String::new(), |r| format!(
            ", racing on {} in {rounds} shards (alpha {})",
            r.metric, r.alpha
        )),
        store.path().display()
    ));
    let indexes =
        crate::index::ExperimentIndexes::new(&exp.corpus, &exp.embedding_model, &opts.store_dir)
            .with_fingerprints(&exp.corpus_fingerprint, &exp.embedder_fingerprint);
    let mut sweep = Sweep {
        exp,
        opts,
        questions,
        store,
        run_id,
        summary,
        progress,
        indexes,
        evidence_checked: Default::default(),
        visits: 0,
        planned,
        stop,
    };
    match exp.racing() {
        None => sweep.full()?,
        Some(race) => sweep.race(race)?,
    }
    sweep.progress.finish();
    let mut summary = sweep.summary;
    summary.wall_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The state of one sweep: what every cell visit reads and updates.
struct Sweep<'a> {
    exp: &'a Experiment,
    opts: &'a SweepOptions,
    questions: &'a [crate::qa::Question],
    store: &'a mut Store,
    run_id: i64,
    summary: SweepSummary,
    progress: Progress,
    indexes: crate::index::ExperimentIndexes<'a>,
    /// Chunkings whose evidence coverage was checked (warned about once each).
    evidence_checked: std::collections::HashSet<(usize, usize)>,
    /// Cell visits so far (the cells bar counts visits: a race visits a cell once per shard).
    visits: usize,
    /// Visits planned.
    planned: usize,
    /// Ctrl-C / SIGTERM.
    stop: &'a StopSignals,
}

impl Sweep<'_> {
    /// Runs `cell`'s pending (question, repeat) pairs, only those of questions in `only` when
    /// given (a race's shards so far). `complete`: whether this visit should finish the cell
    /// (a full sweep, or a race's last shard): only then does a cell with nothing left fail to
    /// be pending and become `done`; earlier race visits leave a successful cell `running`.
    fn visit(
        &mut self,
        cell: &Cell,
        only: Option<&std::collections::HashSet<String>>,
        complete: bool,
    ) -> Result<(), SweepError> {
        if self.stop.raised() {
            return Err(self.stop.error(self.summary.answers));
        }
        self.visits += 1;
        let step = format!("[{}/{}]", self.visits, self.planned);
        let label = cell.to_string();
        let (done, stale) = self.store.answered(&cell.id, self.questions)?;
        let asked: Vec<&crate::qa::Question> = self
            .questions
            .iter()
            .filter(|q| only.is_none_or(|o| o.contains(&q.id)))
            .collect();
        let pending: Vec<(String, u32)> = (0..self.exp.repeats)
            .flat_map(|r| asked.iter().map(move |q| (q.id.clone(), r)))
            .filter(|k| !done.contains(k))
            .collect();
        if pending.is_empty() && stale.is_empty() {
            if complete {
                self.summary.skipped_cells += 1;
                self.store
                    .set_cell_status(&cell.id, self.run_id, CellStatus::Done, None)?;
                self.progress
                    .line(&format!("{step} {label}: done already, skipped"));
            }
            self.progress.end_cell();
            return Ok(());
        }
        self.progress.start_cell(&label, pending.len());
        self.progress
            .line(&format!("{step} {label}: {} to answer", pending.len()));
        self.store
            .set_cell_status(&cell.id, self.run_id, CellStatus::Running, None)?;

        let r = &cell.retrieval;
        let info = match self.indexes.prepare(r.chunk_size, r.chunk_overlap) {
            Ok(info) => info,
            Err(e) => {
                // a corpus or index problem fails the cell, not the sweep
                let msg = format!("index for chunk {}/{}: {e}", r.chunk_size, r.chunk_overlap);
                return self.fail_cell(cell, &label, msg);
            }
        };
        if !info.cache_hit {
            self.progress.line(&format!(
                "  built index chunk {}/{}: {} chunks in {:.1} s",
                r.chunk_size, r.chunk_overlap, info.n_chunks, info.build_seconds
            ));
        }
        for split in r.child_splits() {
            match self
                .indexes
                .prepare_children(r.chunk_size, r.chunk_overlap, split)
            {
                Ok(child) if !child.cache_hit => self.progress.line(&format!(
                    "  built child index {}/{} of chunk {}/{}: {} child chunks in {:.1} s",
                    split.chunk_size,
                    split.chunk_overlap,
                    r.chunk_size,
                    r.chunk_overlap,
                    child.n_chunks,
                    child.build_seconds
                )),
                Ok(_) => {}
                Err(e) => {
                    let msg = format!(
                        "child index {}/{} of chunk {}/{}: {e}",
                        split.chunk_size, split.chunk_overlap, r.chunk_size, r.chunk_overlap
                    );
                    return self.fail_cell(cell, &label, msg);
                }
            }
        }
        if self
            .evidence_checked
            .insert((r.chunk_size, r.chunk_overlap))
        {
            warn_unjudged(&mut self.indexes, r, self.questions);
        }
        self.store.set_cell_index(
            &cell.id,
            &info.dir,
            info.build_seconds,
            info.cache_hit,
            info.n_chunks,
        )?;

        let mut rescore_error = None;
        if !stale.is_empty() {
            match rescore_references(cell, &info.dir, self.questions, &stale, self.store) {
                Ok(n) => {
                    self.summary.rescored += n;
                    self.progress.line(&format!(
                        "  re-scored {n} answers whose reference (expected answer, evidence, page) changed (no LLM call)"
                    ));
                }
                Err(e) => {
                    // stale scores must not pass for current ones: the cell fails, loudly
                    let msg = format!(
                        "re-scoring {} answers whose reference changed failed: {e}",
                        stale.len()
                    );
                    self.progress.line(&format!("  {msg}"));
                    rescore_error = Some(msg);
                }
            }
        }
        if pending.is_empty() {
            match rescore_error {
                None if complete => {
                    self.store
                        .set_cell_status(&cell.id, self.run_id, CellStatus::Done, None)?
                }
                None => {}
                Some(msg) => {
                    self.summary.failed_cells += 1;
                    self.summary.failures.push((label.clone(), msg.clone()));
                    self.store.set_cell_status(
                        &cell.id,
                        self.run_id,
                        CellStatus::Failed,
                        Some(&msg),
                    )?
                }
            }
            self.progress.end_cell();
            return Ok(());
        }
        let shared = match &cell.model {
            Some(m) => self
                .store
                .shared_generations(&crate::cell::generation_family(m))?,
            None => Vec::new(),
        };
        let ctx = CellRun {
            question_timeout_s: self.exp.question_timeout_s,
            cell,
            index_dir: &info.dir,
            opts: self.opts,
            progress: &self.progress,
            label: &label,
            questions: self.questions,
            shared: &shared,
            stop: Some(&self.stop.flag),
        };
        let mut sink = StoreSink {
            store: self.store,
            run_id: self.run_id,
        };
        let outcome = run_cell(&ctx, pending, &mut sink)?;
        self.summary.answers += outcome.answers;
        self.summary.failed_answers += outcome.failed;
        if outcome.stopped {
            self.store
                .set_cell_status(&cell.id, self.run_id, CellStatus::Interrupted, None)?;
            return Err(self.stop.error(self.summary.answers));
        }
        match outcome.error.or(rescore_error) {
            None if outcome.failed == 0 => {
                if complete {
                    self.store
                        .set_cell_status(&cell.id, self.run_id, CellStatus::Done, None)?
                }
            }
            None => {
                let msg = failed_answers_message(
                    outcome.failed,
                    outcome.first_answer_error.as_deref().map_or("", first_line),
                );
                self.summary.failures.push((label.clone(), msg.clone()));
                self.store
                    .set_cell_status(&cell.id, self.run_id, CellStatus::Failed, Some(&msg))?
            }
            Some(e) => {
                self.summary.failed_cells += 1;
                self.progress
                    .line(&format!("  cell failed: {}", first_line(&e)));
                self.summary
                    .failures
                    .push((label.clone(), first_line(&e).to_string()));
                self.store
                    .set_cell_status(&cell.id, self.run_id, CellStatus::Failed, Some(&e))?;
            }
        }
        self.progress.end_cell();
        Ok(())
    }

    /// Records a cell that cannot run (index or child index problem): failed, with `msg`.
    fn fail_cell(&mut self, cell: &Cell, label: &str, msg: String) -> Result<(), SweepError> {
        self.progress.line(&format!("  cell failed: {msg}"));
        self.store
            .set_cell_status(&cell.id, self.run_id, CellStatus::Failed, Some(&msg))?;
        self.summary.failed_cells += 1;
        self.summary.failures.push((label.to_string(), msg));
        self.progress.end_cell();
        Ok(())
    }

    /// Every cell once, all questions.
    fn full(&mut self) -> Result<(), SweepError> {
        let exp = self.exp;
        for cell in &exp.cells {
            self.visit(cell, None, true)?;
        }
        Ok(())
    }

    /// A race ([`crate::race`]): the questions in `race`'s fixed random order, shard by shard;
    /// after each shard but the last, the live cells significantly worse than the leader are
    /// eliminated (stored with their evidence) and get no further questions.
    fn race(&mut self, race: &RaceSettings) -> Result<(), SweepError> {
        let ids: Vec<String> = self.questions.iter().map(|q| q.id.clone()).collect();
        let order = crate::race::race_order(&ids, race.seed);
        let ends = crate::race::shard_ends(order.len(), race.shards);
        let exp = self.exp;
        let mut live: Vec<&Cell> = exp.cells.iter().collect();
        for (k, &end) in ends.iter().enumerate() {
            let last = k + 1 == ends.len();
            let only: std::collections::HashSet<String> = order[..end].iter().cloned().collect();
            self.progress.line(&format!(
                "race: shard {}/{}: questions 1-{end} of {} (race order), {} cells live",
                k + 1,
                ends.len(),
                order.len(),
                live.len()
            ));
            for cell in &live {
                self.visit(cell, Some(&only), last)?;
            }
            if last {
                break;
            }
            let mut scores = BTreeMap::new();
            for cell in &live {
                let s = self
                    .store
                    .metric_scores(&cell.id, &race.metric, self.questions)?;
                scores.insert(cell.id.clone(), s);
            }
            if scores.values().all(|s| s.is_empty()) {
                tracing::warn!(
                    "racing on `{}`, but no answer has that metric: no cell can be stopped \
                     (set [race] metric to one the answers have, e.g. cosine, f1 or ndcg@<top_k>)",
                    race.metric
                );
            }
            let out = crate::race::eliminate(&scores, race, k + 1);
            // the cells bar: an eliminated cell's later visits will not happen
            self.planned -= out.len() * (ends.len() - k - 1);
            for e in out {
                self.store.record_elimination(self.run_id, &e)?;
                let label = |id: &str| {
                    exp.cell(id)
                        .map_or_else(|| id.to_string(), |c| c.to_string())
                };
                let why = e.evidence(&label(&e.leader_id));
                self.progress.line(&format!(
                    "  eliminated after shard {}: {}: {why}",
                    k + 1,
                    label(&e.cell_id)
                ));
                self.summary.eliminated.push((label(&e.cell_id), why));
                live.retain(|c| c.id != e.cell_id);
            }
        }
        Ok(())
    }
}

/// Warns (once per chunking) about questions whose evidence no chunk holds: they silently get no
/// retrieval metrics otherwise.
fn warn_unjudged(
    indexes: &mut crate::index::ExperimentIndexes<'_>,
    r: &crate::experiment::Retrieval,
    questions: &[crate::qa::Question],
) {
    if !questions.iter().any(crate::score::needs_judge) {
        return;
    }
    let Ok(Some(chunks)) = indexes.cached_chunks(r.chunk_size, r.chunk_overlap) else {
        return;
    };
    const SHOWN: usize = 8;
    let listed = |ids: &[&str]| {
        let more = ids.len().saturating_sub(SHOWN);
        format!(
            "{}{}",
            ids[..ids.len().min(SHOWN)].join(", "),
            if more > 0 {
                format!(", {more} more")
            } else {
                String::new()
            }
        )
    };
    let ambiguous = crate::score::ambiguous_pages(questions, &chunks);
    if !ambiguous.is_empty() {
        tracing::warn!(
            "the corpus has several documents, and {} question{} ({}) give{} only a page: that page \
             of every document counts as relevant. Add `source = \"<file name>\"` to say which",
            ambiguous.len(),
            if ambiguous.len() == 1 { "" } else { "s" },
            listed(&ambiguous),
            if ambiguous.len() == 1 { "s" } else { "" },
        );
    }
    let ids = crate::score::without_relevant_chunks(questions, &chunks);
    if ids.is_empty() {
        return;
    }
    tracing::warn!(
        "at chunk_size {}, chunk_overlap {}, no chunk holds the evidence of {} question{} ({}): \
         {} no retrieval metrics. Copy each quote from the extracted text (`orchestrate chunks`) \
         and check its page and source",
        r.chunk_size,
        r.chunk_overlap,
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        listed(&ids),
        if ids.len() == 1 {
            "it gets"
        } else {
            "they get"
        },
    );
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Re-scores the stored `ok` answers `stale` of `cell` whose reference changed (expected answer,
/// evidence, page, …: cosine similarity, answer and retrieval metrics against the new
/// reference; no LLM call), with the index at `index_dir`. Returns how many were updated.
pub(crate) fn rescore_references(
    cell: &Cell,
    index_dir: &Path,
    questions: &[crate::qa::Question],
    stale: &[(String, u32)],
    store: &Store,
) -> Result<usize, String> {
    let judge = questions.iter().any(crate::score::needs_judge);
    let mut scorer = crate::worker::CellRunner::load_scorer(cell.clone(), index_dir, judge)
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    for (qid, repeat) in stale {
        let Some(q) = questions.iter().find(|q| &q.id == qid) else {
            continue;
        };
        let Some((answer, chunk_ids)) = store
            .answer_for_rescore(&cell.id, qid, *repeat)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let (cosine, metrics) = scorer.score(q, &chunk_ids, &answer)?;
        if store
            .set_reference(
                &cell.id,
                qid,
                *repeat,
                &q.expected_answer,
                Some(&q.reference_digest()),
                cosine,
                &metrics,
            )
            .map_err(|e| e.to_string())?
        {
            n += 1;
        }
    }
    Ok(n)
}

/// What the workers of one cell produced.
pub(crate) struct CellOutcome {
    /// Answers handed to the sink (ok or failed).
    pub answers: usize,
    /// Of those, failed.
    pub failed: usize,
    /// The error of the first failed answer, if any.
    pub first_answer_error: Option<String>,
    /// Why a worker did not finish (crash, timeout, start failure), with its stderr tail.
    pub error: Option<String>,
    /// The run was told to stop ([`CellRun::stop`]): the worker was killed, and the questions it
    /// had in flight were not recorded (they are still pending).
    pub stopped: bool,
}

/// Where the output of a cell's workers goes: the result database in a local sweep
/// ([`StoreSink`]), an attempt file in a Slurm task ([`crate::slurm::attempt::AttemptWriter`]).
pub(crate) trait AnswerSink {
    /// The worker loaded its models in `load_s` seconds and runs the LLM with `threads` threads.
    fn ready(&mut self, cell_id: &str, load_s: f64, threads: Option<i32>)
        -> Result<(), SweepError>;
    /// One finished answer (ok or failed) with the usage summary and raw samples of its window.
    fn answer(
        &mut self,
        cell_id: &str,
        a: &NewAnswer,
        usage: Option<&Usage>,
        samples: &[Sample],
    ) -> Result<(), SweepError>;
}

/// The local sweep's sink: each answer committed to the result database as it arrives.
pub(crate) struct StoreSink<'a> {
    /// The result database.
    pub store: &'a mut Store,
    /// The run the answers belong to.
    pub run_id: i64,
}

impl AnswerSink for StoreSink<'_> {
    fn ready(
        &mut self,
        cell_id: &str,
        load_s: f64,
        threads: Option<i32>,
    ) -> Result<(), SweepError> {
        self.store.set_cell_load_time(cell_id, load_s)?;
        if let Some(t) = threads {
            self.store.set_cell_threads(cell_id, t)?;
        }
        Ok(())
    }
    fn answer(
        &mut self,
        cell_id: &str,
        a: &NewAnswer,
        usage: Option<&Usage>,
        samples: &[Sample],
    ) -> Result<(), SweepError> {
        Ok(self
            .store
            .insert_answer(self.run_id, cell_id, a, usage, samples)?)
    }
}

/// A worker stdout event with the time (sampler clock, seconds) its line was read.
enum Line {
    Event(Event, Instant),
    Garbled(String),
    Eof,
}

/// Everything the workers of one cell share.
pub(crate) struct CellRun<'a> {
    /// Seconds a worker may report nothing before it is killed (the experiment's
    /// `question_timeout_s`).
    pub question_timeout_s: f64,
    /// The cell.
    pub cell: &'a Cell,
    /// Its prepared index.
    pub index_dir: &'a Path,
    /// Worker executable and sampling interval.
    pub opts: &'a SweepOptions,
    /// Where progress lines go.
    pub progress: &'a Progress,
    /// The cell's label in progress lines.
    pub label: &'a str,
    /// The experiment's questions (the pending ones are looked up here).
    pub questions: &'a [crate::qa::Question],
    /// Stored generations of the cell's model family, for reuse by content address.
    pub shared: &'a [crate::store::SharedGeneration],
    /// Set from outside (a Slurm task's deadline signal): kill the worker within a tick and
    /// return, leaving the questions in flight unrecorded.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Most worker starts per cell: after a crash the rest of the pending list gets a fresh worker,
/// so one bad question cannot block the questions after it.
const MAX_WORKER_STARTS: usize = 3;

/// How often a waiting sweep looks at [`CellRun::stop`].
const STOP_TICK: Duration = Duration::from_millis(250);

/// Runs `pending` of `cell` through workers, restarting after a crash (without the question that
/// crashed it) up to [`MAX_WORKER_STARTS`] times, and hands each answer to `sink`.
pub(crate) fn run_cell(
    c: &CellRun<'_>,
    mut pending: Vec<(String, u32)>,
    sink: &mut dyn AnswerSink,
) -> Result<CellOutcome, SweepError> {
    let mut total = CellOutcome {
        answers: 0,
        failed: 0,
        first_answer_error: None,
        error: None,
        stopped: false,
    };
    for start in 1..=MAX_WORKER_STARTS {
        let w = run_worker(c, &pending, sink)?;
        total.answers += w.stored.len();
        total.failed += w.failed;
        if total.first_answer_error.is_none() {
            total.first_answer_error = w.first_error.clone();
        }
        pending.retain(|k| !w.stored.contains(k));
        if w.stopped {
            total.stopped = true;
            return Ok(total);
        }
        match (w.error, pending.is_empty()) {
            (None, true) => return Ok(total),
            (None, false) => {
                // the worker said Done but skipped some: never call such a cell done
                total.error = Some(format!(
                    "worker finished without answering {} pending questions",
                    pending.len()
                ));
                return Ok(total);
            }
            (Some(e), true) => {
                total.error = Some(e);
                return Ok(total);
            }
            (Some(e), false) => {
                if w.stored.is_empty() && w.in_flight.is_empty() {
                    // died before answering anything (load failure): restarting would repeat it
                    total.error = Some(e);
                    return Ok(total);
                }
                c.progress.line(&format!(
                    "  worker {start} failed ({}); restarting for {} more",
                    first_line(&e),
                    pending.len()
                ));
                total.error = Some(e);
            }
        }
    }
    Ok(total)
}

/// What one worker process produced.
struct WorkerOutcome {
    /// Keys with a stored row (ok or failed).
    stored: std::collections::HashSet<(String, u32)>,
    failed: usize,
    /// The error of the first failed answer.
    first_error: Option<String>,
    /// The keys being answered when the worker died (several when it decoded a batch).
    in_flight: Vec<(String, u32)>,
    error: Option<String>,
    /// Stopped from outside ([`CellRun::stop`]).
    stopped: bool,
}

/// Starts one worker for `cell`, feeds it `pending`, and stores each answer it reports; the
/// question in flight when it dies is stored as failed, with the samples of its window.
fn run_worker(
    c: &CellRun<'_>,
    pending: &[(String, u32)],
    sink: &mut dyn AnswerSink,
) -> Result<WorkerOutcome, SweepError> {
    let CellRun {
        question_timeout_s,
        cell,
        index_dir,
        opts,
        progress,
        label,
        questions,
        shared,
        stop,
    } = *c;
    let mut cmd = Command::new(&opts.worker_exe);
    cmd.arg("worker");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SweepError::Spawn {
            exe: opts.worker_exe.clone(),
            source,
        })?;
    let sampler = Sampler::start(child.id(), opts.sample_interval);
    let sampler_epoch = Instant::now() - Duration::from_secs_f64(sampler.now_s());
    let at = |i: Instant| i.saturating_duration_since(sampler_epoch).as_secs_f64();
    let tail = Tail::default();
    let (tx, rx) = mpsc::channel::<Line>();
    spawn_readers(&mut child, tx, tail.clone());
    if let Some(mut stdin) = child.stdin.take() {
        let job = WorkerJob {
            cell: cell.clone(),
            index_dir: index_dir.to_path_buf(),
            questions: questions
                .iter()
                .filter(|q| pending.iter().any(|(id, _)| *id == q.id))
                .cloned()
                .collect(),
            pending: pending.to_vec(),
            order: questions.iter().map(|q| q.id.clone()).collect(),
            shared: shared.to_vec(),
        };
        let line = serde_json::to_string(&job).unwrap_or_default();
        // a worker that died at start-up closes its stdin: the event loop reports it
        let _ = writeln!(stdin, "{line}");
    }

    let mut out = WorkerOutcome {
        stored: Default::default(),
        failed: 0,
        first_error: None,
        in_flight: Vec::new(),
        error: None,
        stopped: false,
    };
    let timeout = duration_s(question_timeout_s);
    // generous start-up allowance: loading a model from a cold page cache can take a while
    let mut wait = timeout.saturating_add(Duration::from_secs(120));
    // keys started and not yet answered → when they started (sampler clock, seconds)
    let mut current: BTreeMap<(String, u32), f64> = BTreeMap::new();
    let mut last_event = Instant::now();
    loop {
        // checked before every event, not only when the worker is quiet: a worker that answers
        // faster than STOP_TICK would otherwise never be stopped
        if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
            kill(&mut child);
            out.stopped = true;
            break;
        }
        let received = rx.recv_timeout(STOP_TICK.min(wait));
        if received.is_ok() {
            last_event = Instant::now();
        }
        match received {
            Err(RecvTimeoutError::Timeout) if last_event.elapsed() < wait => continue,
            Ok(Line::Event(Event::Ready { load_s, threads }, _)) => {
                sink.ready(&cell.id, load_s, threads)?;
                wait = timeout;
            }
            Ok(Line::Event(
                Event::Start {
                    question_id,
                    repeat,
                },
                t,
            )) => {
                current.insert((question_id, repeat), at(t));
            }
            Ok(Line::Event(Event::Answer(a), t)) => {
                let t0 = current
                    .remove(&(a.question_id.clone(), a.repeat))
                    .unwrap_or(0.0);
                let window = sampler.samples_for_window(t0, at(t));
                let usage = crate::sample::summarize(&window);
                sink.answer(&cell.id, &a, usage.as_ref(), &window)?;
                out.stored.insert((a.question_id.clone(), a.repeat));
                if a.status != AnswerStatus::Ok {
                    out.failed += 1;
                    if out.first_error.is_none() {
                        out.first_error = a.error.clone();
                    }
                }
                progress.answered(&answer_line(label, &a, usage.as_ref()));
            }
            Ok(Line::Event(Event::Done, _)) => break,
            Ok(Line::Garbled(line)) => {
                out.error = Some(format!(
                    "unreadable message from the worker (protocol error): {line}"
                ));
                kill(&mut child);
                break;
            }
            Ok(Line::Eof) if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) => {
                // killed by the same signal that stopped us (scancel signals the whole job)
                wait_briefly(&mut child);
                out.stopped = true;
                break;
            }
            Ok(Line::Eof) => {
                let status = wait_briefly(&mut child);
                std::thread::sleep(Duration::from_millis(100)); // let the stderr reader drain
                let text = tail.text();
                // the worker's own `error: ...` line is the cause: it goes first, so the
                // terminal, status and report (which show the first line) name it
                out.error = Some(match worker_error(&text) {
                    Some(cause) => {
                        format!("{cause} (worker exited early, {status})\nstderr tail:\n{text}")
                    }
                    None => format!("worker exited early ({status})\nstderr tail:\n{text}"),
                });
                break;
            }
            Err(RecvTimeoutError::Timeout) => {
                kill(&mut child);
                std::thread::sleep(Duration::from_millis(100)); // let the stderr reader drain
                out.error = Some(format!(
                    "worker reported nothing for {:.0} s and was killed (question_timeout_s)\nstderr tail:\n{}",
                    wait.as_secs_f64(),
                    tail.text()
                ));
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                out.error = Some(format!(
                    "lost the worker's output\nstderr tail:\n{}",
                    tail.text()
                ));
                break;
            }
        }
    }
    wait_briefly(&mut child);
    let died_with = if out.error.is_some() {
        current
    } else {
        BTreeMap::new()
    };
    for ((qid, repeat), t0) in died_with {
        let Some(err) = &out.error else { break };
        // the questions in flight when the worker died are stored as failed, with their samples
        let window = sampler.samples_between(t0, sampler.now_s());
        let usage = crate::sample::summarize(&window);
        let q = questions.iter().find(|q| q.id == qid);
        let failed = NewAnswer {
            status: AnswerStatus::Failed,
            error: Some(err.clone()),
            ..NewAnswer::empty(
                &qid,
                repeat,
                q.map_or("", |q| q.question.as_str()),
                q.map_or("", |q| q.expected_answer.as_str()),
            )
        };
        sink.answer(&cell.id, &failed, usage.as_ref(), &window)?;
        out.stored.insert((qid.clone(), repeat));
        out.failed += 1;
        out.in_flight.push((qid, repeat));
    }
    let _ = sampler.stop();
    Ok(out)
}

/// The last `error: ...` line a worker wrote to stderr (its failure as the CLI reports it),
/// without the prefix; `None` when it wrote none (killed, crashed in native code).
fn worker_error(stderr_tail: &str) -> Option<&str> {
    stderr_tail
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// A timeout in seconds as a Duration (validated finite and positive by the experiment).
fn duration_s(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(600))
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits up to 10 s for the worker to exit, then kills it; returns its exit status as text.
fn wait_briefly(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                kill(child);
                return "did not exit; killed".into();
            }
            Err(e) => return e.to_string(),
        }
    }
}

/// Reads lines as bytes (lossy UTF-8: one bad byte must not stop the reader).
fn lossy_lines(r: impl std::io::Read, mut f: impl FnMut(String) -> bool) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                if !f(line) {
                    return;
                }
            }
        }
    }
}

/// Reads the worker's stdout into timestamped events and its stderr into the tail buffer.
fn spawn_readers(child: &mut Child, tx: mpsc::Sender<Line>, tail: Tail) {
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            lossy_lines(stdout, |line| {
                let msg = match parse_event(&line) {
                    Some(e) => Line::Event(e, Instant::now()),
                    None if line.starts_with(crate::worker::EVENT_PREFIX) => Line::Garbled(line),
                    None => return true,
                };
                tx.send(msg).is_ok()
            });
            let _ = tx.send(Line::Eof);
        });
    }
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            lossy_lines(stderr, |line| {
                tail.push(line, 40);
                true
            })
        });
    }
}

fn answer_line(label: &str, a: &NewAnswer, usage: Option<&Usage>) -> String {
    let mut s = format!("{label} · {} r{}", a.question_id, a.repeat);
    if a.status != AnswerStatus::Ok {
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
    match (&a.shared_from, a.decode_mode) {
        (Some(_), _) => s.push_str(" (shared)"),
        (None, Some(crate::cell::DecodeMode::Batched)) => s.push_str(" (batched)"),
        _ => {}
    }
    if let Some(u) = usage {
        s.push_str(&format!(
            ", RSS {:.0} MiB",
            u.rss_peak_bytes as f64 / 1048576.0
        ));
    }
    s
}

/// A cell's status message when `n` of its answers failed and no cell-level error explains
/// them: "1 answer failed (…); rerun to retry it" / "3 answers failed (…); rerun to retry them",
/// with the first answer's error (one line). Shared by the local and the Slurm sweep.
pub(crate) fn failed_answers_message(n: usize, first_error: &str) -> String {
    if n == 1 {
        format!("1 answer failed ({first_error}); rerun to retry it")
    } else {
        format!("{n} answers failed ({first_error}); rerun to retry them")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_answer_messages_agree_in_number() {
        assert_eq!(
            failed_answers_message(1, "timeout"),
            "1 answer failed (timeout); rerun to retry it"
        );
        assert_eq!(
            failed_answers_message(3, "timeout"),
            "3 answers failed (timeout); rerun to retry them"
        );
    }

    #[test]
    fn a_held_flock_is_seen_and_refused_until_released() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("x.judge.lock");
        assert!(!is_flocked(&path), "no file, no lock");
        let held = try_flock(&path).unwrap().expect("free");
        assert!(is_flocked(&path));
        assert!(try_flock(&path).unwrap().is_none(), "held elsewhere");
        drop(held);
        assert!(!is_flocked(&path));
        assert!(try_flock(&path).unwrap().is_some());
    }

    #[test]
    fn the_workers_error_line_is_the_cause() {
        let tail = "llama_model_load: error loading model architecture\n\
                    error: cannot load model bogus.gguf: unknown model architecture\n";
        assert_eq!(
            worker_error(tail),
            Some("cannot load model bogus.gguf: unknown model architecture")
        );
        assert_eq!(worker_error("Segmentation fault\n"), None);
    }
}
