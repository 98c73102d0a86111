//! The coordinator: `orchestrate run` with the Slurm executor. Builds the indexes, submits one
//! job array per resource profile and wave, watches them with one `squeue` per poll, merges the
//! attempt files into the result database, and submits leftover questions in further waves.
//!
//! Resume: the job arrays submitted are rows of `slurm_jobs`; a coordinator started again (after
//! it was killed, or with `--detach` earlier) first merges what the attempt files hold, then
//! attaches to the arrays not yet seen to end instead of submitting them again. Which questions a
//! wave asks is decided by the database after a merge: every (question, repeat) of a cell without
//! an `ok` answer, except failures this run already recorded (a failure is a result, shown
//! everywhere; the next `orchestrate run` retries it, as locally).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cli::SlurmCli;
use super::merge::Merger;
use super::task::{spec_path, TaskSpec};
use super::{Resources, SlurmError, SlurmSettings};
use crate::cell::{AnswerStatus, Cell, CellStatus};
use crate::experiment::Experiment;
use crate::qa::Question;
use crate::store::{SlurmJobRecord, Store};
use crate::sweep::{Progress, SweepOptions, SweepSummary};

/// How the coordinator runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoordinatorOptions {
    /// Submit (or attach) and return without waiting: `orchestrate status` and a later `run`
    /// merge what the tasks write.
    pub detach: bool,
}

/// The Slurm job name of an experiment's arrays: `orchestrate-<name>`.
pub fn job_name(exp_name: &str) -> String {
    format!("orchestrate-{exp_name}")
}

/// The run directory of an experiment: `<run_dir or store/slurm>/<name>`.
pub fn experiment_dir(settings: &SlurmSettings, store_dir: &Path, exp_name: &str) -> PathBuf {
    settings
        .run_dir
        .clone()
        .unwrap_or_else(|| store_dir.join("slurm"))
        .join(exp_name)
}

/// Runs (or resumes) the sweep of `exp` on Slurm through `cli`. Returns the summary of what was
/// merged; cell failures are in it, not errors. Errors: the database, a Slurm command that keeps
/// failing, the run directory, or an experiment feature the Slurm executor does not support
/// (`search = "race"`).
pub fn run(
    exp: &Experiment,
    opts: &SweepOptions,
    settings: &SlurmSettings,
    cli: &dyn SlurmCli,
    copts: CoordinatorOptions,
) -> Result<SweepSummary, SlurmError> {
    if exp.racing().is_some() {
        return Err(SlurmError::Unsupported(format!(
            "{}: racing (search = \"race\" or --race) runs with the local executor only; \
             remove it or run with `--executor local`",
            exp.path.display()
        )));
    }
    let questions = exp.questions()?;
    if questions.is_empty() {
        return Err(crate::sweep::SweepError::NoQuestions(exp.qa.clone()).into());
    }
    // no index is built and no run recorded for a cluster we cannot reach
    cli.preflight()?;
    let db_path = Store::path_for(&opts.store_dir, &exp.name);
    let mut store = Store::open(&db_path)?;
    store.check_integrity()?;
    let _lock = crate::sweep::lock(&opts.store_dir, &exp.name)?;
    store.mark_interrupted()?;
    let run_id = store.begin_run(exp, &crate::sample::host_facts())?;
    store.register_cells(&exp.cells, run_id)?;
    let started = Instant::now();
    let mut c = Coordinator {
        exp,
        opts,
        settings,
        cli,
        questions: &questions,
        store: &mut store,
        run_id,
        dir: experiment_dir(settings, &opts.store_dir, &exp.name),
        merger: Merger::default(),
        progress: Progress::new(None, exp.cells.len()),
        summary: SweepSummary {
            cells: exp.cells.len(),
            database: db_path.clone(),
            ..Default::default()
        },
        cell_errors: BTreeMap::new(),
    };
    let result = c.sweep(copts);
    let mut summary = std::mem::take(&mut c.summary);
    summary.wall_s = started.elapsed().as_secs_f64();
    summary.detached = matches!(result, Ok(true));
    let status = match &result {
        Ok(true) => "submitted",
        Ok(false) if summary.failed_cells == 0 && summary.failed_answers == 0 => "done",
        Ok(false) => "failed",
        Err(_) => "error",
    };
    store.end_run(run_id, status)?;
    result.map(|_| summary)
}

/// A cell and the (question id, repeat) pairs it still has to answer.
type Work<'a> = (&'a Cell, Vec<(String, u32)>);

struct Coordinator<'a> {
    exp: &'a Experiment,
    opts: &'a SweepOptions,
    settings: &'a SlurmSettings,
    cli: &'a dyn SlurmCli,
    questions: &'a [Question],
    store: &'a mut Store,
    run_id: i64,
    /// `<run_dir>/<experiment name>`.
    dir: PathBuf,
    merger: Merger,
    progress: Progress,
    summary: SweepSummary,
    /// Cells that could not be submitted (index problem): cell id → why.
    cell_errors: BTreeMap<String, String>,
}

impl<'a> Coordinator<'a> {
    fn attempts_dir(&self) -> PathBuf {
        self.dir.join("attempts")
    }

    /// The waves; `Ok(true)` when it returned detached with arrays still running.
    fn sweep(&mut self, copts: CoordinatorOptions) -> Result<bool, SlurmError> {
        self.progress.line(&format!(
            "{}: {} cells × {} questions × {} repeats on Slurm (job name {}, run directory {}) → {}",
            self.exp.name,
            self.exp.cells.len(),
            self.questions.len(),
            self.exp.repeats,
            job_name(&self.exp.name),
            self.dir.display(),
            self.store.path().display()
        ));
        self.merge()?;
        let open = self.store.slurm_jobs(true)?;
        if !open.is_empty() {
            let ids: Vec<&str> = open.iter().map(|j| j.job_id.as_str()).collect();
            self.progress.line(&format!(
                "attaching to job arrays submitted earlier: {}",
                ids.join(", ")
            ));
            if copts.detach {
                return Ok(true);
            }
            self.watch(&open)?;
        }
        let mut submitted = 0;
        loop {
            let work = self.pending_work()?;
            if work.is_empty() {
                break;
            }
            if submitted > self.settings.max_waves {
                let n: usize = work.iter().map(|(_, p)| p.len()).sum();
                self.progress.line(&format!(
                    "{n} questions still unanswered after {submitted} waves (max_waves = {}); \
                     `orchestrate run` again submits them",
                    self.settings.max_waves
                ));
                for (cell, pending) in &work {
                    self.cell_errors.entry(cell.id.clone()).or_insert(format!(
                        "{} questions never answered in {submitted} waves (tasks timed out, \
                         were preempted or lost; see the logs under {})",
                        pending.len(),
                        self.dir.display()
                    ));
                }
                break;
            }
            submitted += 1;
            let jobs = self.submit(work, submitted)?;
            if jobs.is_empty() {
                break;
            }
            if copts.detach {
                self.progress.line(
                    "detached: `orchestrate status` shows progress, `orchestrate run` again \
                     merges, waits and submits leftovers",
                );
                return Ok(true);
            }
            self.watch(&jobs)?;
        }
        self.finish_cells()?;
        Ok(false)
    }

    fn merge(&mut self) -> Result<usize, SlurmError> {
        let stats = self
            .merger
            .merge(self.store, self.run_id, &self.attempts_dir())?;
        self.summary.answers += stats.written;
        Ok(stats.written)
    }

    /// Cells with questions to ask, and which: no `ok` answer (current question text) and no
    /// failure recorded by this run.
    fn pending_work(&mut self) -> Result<Vec<Work<'a>>, SlurmError> {
        let mut out = Vec::new();
        let exp: &'a Experiment = self.exp;
        for cell in &exp.cells {
            if self.cell_errors.contains_key(&cell.id) {
                continue;
            }
            let (done, stale) = self.store.answered(&cell.id, self.questions)?;
            if !stale.is_empty() {
                self.rescore(cell, &stale)?;
            }
            let failed = self.store.failed_in_run(&cell.id, self.run_id)?;
            let questions: &'a [Question] = self.questions;
            let pending: Vec<(String, u32)> = (0..exp.repeats)
                .flat_map(|r| questions.iter().map(move |q| (q.id.clone(), r)))
                .filter(|k| !done.contains(k) && !failed.contains(k))
                .collect();
            if !pending.is_empty() {
                out.push((cell, pending));
            }
        }
        Ok(out)
    }

    /// Re-scores stored answers whose expected answer changed (no LLM call), on this host.
    fn rescore(&mut self, cell: &Cell, stale: &[(String, u32)]) -> Result<(), SlurmError> {
        let r = &cell.retrieval;
        let mut indexes = self.indexes();
        let info = match indexes.prepare(r.chunk_size, r.chunk_overlap) {
            Ok(i) => i,
            Err(e) => {
                self.cell_errors
                    .insert(cell.id.clone(), format!("index: {e}"));
                return Ok(());
            }
        };
        match crate::sweep::rescore_references(cell, &info.dir, self.questions, stale, self.store) {
            Ok(n) => self.summary.rescored += n,
            Err(e) => {
                self.cell_errors.insert(
                    cell.id.clone(),
                    format!("re-scoring answers whose expected answer changed failed: {e}"),
                );
            }
        }
        Ok(())
    }

    fn indexes(&self) -> crate::index::ExperimentIndexes<'_> {
        crate::index::ExperimentIndexes::new(
            &self.exp.corpus,
            &self.exp.embedding_model,
            &self.opts.store_dir,
        )
        .with_fingerprints(&self.exp.corpus_fingerprint, &self.exp.embedder_fingerprint)
    }

    /// Builds the indexes of `work`'s cells, writes their task specs and submits one array per
    /// resource profile. Returns the arrays submitted.
    fn submit(
        &mut self,
        work: Vec<Work<'_>>,
        wave: u32,
    ) -> Result<Vec<SlurmJobRecord>, SlurmError> {
        let mut indexes = self.indexes();
        let mut profiles: BTreeMap<Resources, Vec<TaskSpec>> = BTreeMap::new();
        let mut index_errors = Vec::new();
        for (cell, pending) in work {
            let r = &cell.retrieval;
            let prepared = indexes
                .prepare(r.chunk_size, r.chunk_overlap)
                .and_then(|info| {
                    let children = r
                        .child_splits()
                        .into_iter()
                        .map(|s| {
                            indexes
                                .prepare_children(r.chunk_size, r.chunk_overlap, s)
                                .map(|c| c.dir)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((info, children))
                });
            let (info, children) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    index_errors.push((cell.id.clone(), format!("index: {e}")));
                    continue;
                }
            };
            if !info.cache_hit {
                self.progress.line(&format!(
                    "  built index chunk {}/{}: {} chunks in {:.1} s",
                    r.chunk_size, r.chunk_overlap, info.n_chunks, info.build_seconds
                ));
            }
            self.store.set_cell_index(
                &cell.id,
                &info.dir,
                info.build_seconds,
                info.cache_hit,
                info.n_chunks,
            )?;
            let shared = match &cell.model {
                Some(m) => self
                    .store
                    .shared_generations(&crate::cell::generation_family(m))?,
                None => Vec::new(),
            };
            let spec = TaskSpec {
                cell: cell.clone(),
                label: cell.to_string(),
                index_dir: info.dir.clone(),
                child_index_dirs: children,
                questions: self.questions.to_vec(),
                pending,
                shared,
                question_timeout_s: self.exp.question_timeout_s,
                attempts_dir: self.attempts_dir(),
                sample_interval_ms: self.opts.sample_interval.as_millis() as u64,
            };
            let mut profile = self
                .settings
                .resources_for(cell.model.as_ref().map(|m| m.name.as_str()));
            // a model set to N threads gets N CPUs unless the experiment says otherwise
            if profile.cpus_per_task.is_none() {
                profile.cpus_per_task = cell
                    .model
                    .as_ref()
                    .and_then(|m| m.threads)
                    .and_then(|t| u32::try_from(t).ok())
                    .filter(|t| *t > 1);
            }
            profiles.entry(profile).or_default().push(spec);
        }
        drop(indexes);
        for (cell_id, msg) in index_errors {
            self.progress.line(&format!("  cell failed: {msg}"));
            self.cell_errors.insert(cell_id, msg);
        }
        let mut jobs = Vec::new();
        for (k, (profile, specs)) in profiles.into_iter().enumerate() {
            jobs.push(self.submit_array(wave, k, &profile, specs)?);
        }
        Ok(jobs)
    }

    fn submit_array(
        &mut self,
        wave: u32,
        k: usize,
        profile: &Resources,
        specs: Vec<TaskSpec>,
    ) -> Result<SlurmJobRecord, SlurmError> {
        let wave_dir = self
            .dir
            .join(format!("run{}-wave{wave}-profile{k}", self.run_id));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SlurmError::Io { path, source }
        };
        std::fs::create_dir_all(wave_dir.join("tasks")).map_err(io(&wave_dir))?;
        std::fs::create_dir_all(wave_dir.join("logs")).map_err(io(&wave_dir))?;
        for (i, spec) in specs.iter().enumerate() {
            let path = spec_path(&wave_dir, i as u32);
            let json = serde_json::to_vec(spec).map_err(|e| SlurmError::Spec {
                path: path.clone(),
                message: e.to_string(),
            })?;
            write_atomically(&path, &json).map_err(io(&path))?;
        }
        let script = wave_dir.join("task.sh");
        write_atomically(
            &script,
            batch_script(&self.opts.worker_exe, &wave_dir).as_bytes(),
        )
        .map_err(io(&script))?;
        let n = specs.len();
        let mut args = vec![
            format!("--job-name={}", job_name(&self.exp.name)),
            match self.settings.max_parallel {
                Some(p) => format!("--array=0-{}%{p}", n - 1),
                None => format!("--array=0-{}", n - 1),
            },
            "--requeue".into(),
            format!("--signal=B:USR2@{}", self.settings.warning_s),
            "--open-mode=append".into(),
            format!("--output={}", wave_dir.join("logs/%A_%a.log").display()),
        ];
        let profile_args = self.settings.profile_args(profile);
        args.extend(profile_args.iter().cloned());
        args.extend(self.settings.sbatch_options.iter().cloned());
        let job_id = self.cli.sbatch(&args, &script)?;
        let record = SlurmJobRecord {
            job_id: job_id.clone(),
            run_id: self.run_id,
            wave,
            profile: profile_args.join(" "),
            tasks: n as u32,
            run_dir: wave_dir.clone(),
            submitted_at: crate::store::now(),
            finished_at: None,
        };
        self.store.put_slurm_job(&record)?;
        for s in &specs {
            self.store
                .set_cell_status(&s.cell.id, self.run_id, CellStatus::Running, None)?;
        }
        self.progress.line(&format!(
            "wave {wave}: submitted job array {job_id} ({n} cells{}; {})",
            self.settings
                .max_parallel
                .map_or(String::new(), |p| format!(", at most {p} at once")),
            wave_dir.display()
        ));
        Ok(record)
    }

    /// Polls until no task of `jobs` can still run, merging as tasks write; then marks them
    /// finished.
    fn watch(&mut self, jobs: &[SlurmJobRecord]) -> Result<(), SlurmError> {
        let ids: HashSet<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
        let base = Duration::from_secs_f64(self.settings.poll_interval_s.max(0.05));
        let mut interval = base;
        let mut failures = 0u32;
        let mut last_line = String::new();
        loop {
            let states = match self.cli.squeue(&job_name(&self.exp.name)) {
                Ok(s) => {
                    failures = 0;
                    s
                }
                Err(e) if failures < MAX_SQUEUE_FAILURES => {
                    failures += 1;
                    tracing::warn!("squeue failed ({failures}/{MAX_SQUEUE_FAILURES}): {e}");
                    std::thread::sleep(interval);
                    interval = (interval * 2).min(base * 4);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let ours: Vec<_> = states
                .iter()
                .filter(|t| ids.contains(t.job_id.as_str()))
                .collect();
            let written = self.merge()?;
            let line = state_line(&ours);
            if line != last_line || written > 0 {
                self.progress.line(&format!(
                    "slurm: {line}; {} answers merged so far",
                    self.summary.answers
                ));
                last_line = line;
                interval = base;
            } else {
                interval = (interval.mul_f64(1.5)).min(base * 4);
            }
            if !ours.iter().any(|t| t.state.is_active()) {
                // files written just before the end may show up late on a network filesystem
                std::thread::sleep(base.min(Duration::from_secs(2)));
                self.merge()?;
                for j in jobs {
                    self.store.finish_slurm_job(&j.job_id)?;
                }
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    }

    /// Sets each cell's final status from the database, and the summary's counts.
    fn finish_cells(&mut self) -> Result<(), SlurmError> {
        let attempts = self.store.attempts()?;
        for cell in &self.exp.cells {
            let label = cell.to_string();
            let (done, _) = self.store.answered(&cell.id, self.questions)?;
            let failed = self.store.failed_in_run(&cell.id, self.run_id)?;
            let expected = self.questions.len() * self.exp.repeats as usize;
            let attempt_error = attempts
                .iter()
                .rev()
                .filter(|a| a.info.cell_id == cell.id && a.run_id == self.run_id)
                .find_map(|a| a.exit_error.clone());
            let error = self.cell_errors.get(&cell.id).cloned().or(attempt_error);
            self.summary.failed_answers += failed.len();
            if done.len() == expected && error.is_none() {
                self.store
                    .set_cell_status(&cell.id, self.run_id, CellStatus::Done, None)?;
                continue;
            }
            let msg = match error {
                Some(e) => e,
                None if !failed.is_empty() => crate::sweep::failed_answers_message(
                    failed.len(),
                    &self.first_error(&cell.id)?.unwrap_or_default(),
                ),
                None => format!("{} of {expected} questions answered", done.len()),
            };
            if failed.is_empty() || self.cell_errors.contains_key(&cell.id) {
                self.summary.failed_cells += 1;
            }
            self.summary
                .failures
                .push((label, crate::sweep::first_line(&msg).to_string()));
            self.store
                .set_cell_status(&cell.id, self.run_id, CellStatus::Failed, Some(&msg))?;
        }
        Ok(())
    }

    fn first_error(&self, cell_id: &str) -> Result<Option<String>, SlurmError> {
        let cells = self.store.stored_cells()?;
        let Some(cell) = cells.into_iter().find(|c| c.cell.id == cell_id) else {
            return Ok(None);
        };
        Ok(self
            .store
            .answers(std::slice::from_ref(&cell))?
            .into_iter()
            .find(|a| a.status != AnswerStatus::Ok)
            .and_then(|a| a.error)
            .map(|e| crate::sweep::first_line(&e).to_string()))
    }
}

/// `orchestrate status` of an experiment that ran on Slurm: merges what the attempt files hold
/// into the database at `db_path` (unless a coordinator is running: it merges itself), then asks
/// `squeue` once for the states of the arrays not yet seen to end. Needs only the database: the
/// attempt directory is found from the recorded wave directories
/// (`<run dir>/<name>/run<k>-wave<w>-profile<p>` → `<run dir>/<name>/attempts`).
/// Returns `None` when the experiment never ran on Slurm, otherwise lines to show. A failing
/// `squeue` (no Slurm on this host) is shown in the lines, not an error. Errors: the database,
/// or an attempt file that cannot be read.
pub fn status(
    db_path: &Path,
    store_dir: &Path,
    exp_name: &str,
    cli: &dyn SlurmCli,
) -> Result<Option<Vec<String>>, SlurmError> {
    // read-only media open as an immutable file: no Slurm sweep writes there
    let Some(mut store) = Store::open_existing(db_path)? else {
        return Ok(None);
    };
    let jobs = store.slurm_jobs(false)?;
    let Some(last) = jobs.last() else {
        return Ok(None);
    };
    let mut lines = Vec::new();
    let attempts_dir = last
        .run_dir
        .parent()
        .map(|d| d.join("attempts"))
        .unwrap_or_else(|| last.run_dir.join("attempts"));
    // a running coordinator merges itself; the lock also keeps one from starting mid-merge
    match crate::sweep::lock(store_dir, exp_name) {
        Ok(_lock) => {
            let stats = Merger::default().merge(&mut store, last.run_id, &attempts_dir)?;
            if stats.written > 0 {
                lines.push(format!(
                    "merged {} new answers from {}",
                    stats.written,
                    attempts_dir.display()
                ));
            }
        }
        Err(_) => lines.push("a coordinator is running and merging".into()),
    }
    let open: Vec<&SlurmJobRecord> = jobs.iter().filter(|j| j.finished_at.is_none()).collect();
    if open.is_empty() {
        lines.push(format!(
            "slurm: every job array ended (last: {} of run {}, wave {})",
            last.job_id, last.run_id, last.wave
        ));
        return Ok(Some(lines));
    }
    match cli.squeue(&job_name(exp_name)) {
        Ok(states) => {
            for j in open {
                let ours: Vec<_> = states.iter().filter(|t| t.job_id == j.job_id).collect();
                let line = state_line(&ours);
                let ended = if ours.iter().any(|t| t.state.is_active()) {
                    ""
                } else {
                    "; ended: `orchestrate run` merges it and submits leftovers"
                };
                lines.push(format!(
                    "slurm: job array {} (run {}, wave {}, {} tasks): {line}{ended}",
                    j.job_id, j.run_id, j.wave, j.tasks
                ));
            }
        }
        Err(e) => lines.push(format!("slurm: cannot ask squeue: {e}")),
    }
    Ok(Some(lines))
}

/// `squeue` failures in a row tolerated (with backoff) before the run stops with the error.
const MAX_SQUEUE_FAILURES: u32 = 10;

/// "2 RUNNING, 1 PENDING" over the tasks of our arrays.
fn state_line(tasks: &[&super::cli::TaskState]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.state.name()).or_default() += t.indexes.len().max(1);
    }
    if counts.is_empty() {
        return "no task in the queue".into();
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The batch script of a wave: `exec`s this binary, so the deadline signal (`--signal=B:`) that
/// reaches only the batch shell reaches the task.
pub fn batch_script(exe: &Path, wave_dir: &Path) -> String {
    format!(
        "#!/bin/sh\n# orchestrate: one task per cell (generated; see src/slurm/task.rs)\n\
         exec {} slurm-task {} \"$SLURM_ARRAY_TASK_ID\"\n",
        shell_quote(&exe.display().to_string()),
        shell_quote(&wave_dir.display().to_string())
    )
}

/// `s` in single quotes for sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes `bytes` to `path` through a temporary file and `rename` (atomic, also on NFS), so a
/// task never reads a half-written spec.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_script_execs_the_task_with_quoted_paths() {
        let s = batch_script(
            Path::new("/opt/o's bin/orchestrate"),
            Path::new("/shared/run 1"),
        );
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains(
            "exec '/opt/o'\\''s bin/orchestrate' slurm-task '/shared/run 1' \"$SLURM_ARRAY_TASK_ID\""
        ));
    }

    #[test]
    fn state_lines_count_collapsed_ranges() {
        let t = super::super::cli::parse_squeue("5_[2-4%2]|PENDING|x\n5_0|RUNNING|None\n").unwrap();
        let refs: Vec<_> = t.iter().collect();
        assert_eq!(state_line(&refs), "3 PENDING, 1 RUNNING");
        assert_eq!(state_line(&[]), "no task in the queue");
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("task.sh");
        write_atomically(&p, b"#!/bin/sh\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"#!/bin/sh\n");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o111,
            0o111
        );
    }
}
