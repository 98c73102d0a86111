//! One Slurm array task: runs one cell on a compute node and writes its answers to an attempt
//! file (`orchestrate slurm-task WAVE_DIR INDEX`, started by the wave's batch script).
//!
//! The task reads its spec (`WAVE_DIR/tasks/INDEX.json`, written by the coordinator), skips the
//! questions an earlier attempt of the same cell already answered `ok` (a requeued task restarts
//! from the top), copies the cell's index to node-local scratch (`$SLURM_TMPDIR`, else `$TMPDIR`,
//! else `/tmp`: LMDB must not be opened on a network filesystem), and runs the cell's worker as a
//! local sweep does ([`crate::sweep::run_cell`]): the task is the worker's parent and samples its
//! RSS and CPU on the node. SIGUSR2 (sbatch `--signal=B:USR2@<warning_s>`, the deadline is near)
//! and SIGTERM (scancel, preemption, the time limit) stop it within a quarter second: the worker
//! is killed, the questions in flight are left unrecorded for the next wave, and an exit record
//! `stopped` is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::attempt::{answered_ok, AttemptInfo, AttemptWriter, ExitStatus};
use super::SlurmError;
use crate::cell::Cell;
use crate::qa::Question;
use crate::store::SharedGeneration;
use crate::sweep::{run_cell, CellRun, Progress, SweepOptions};

/// What the coordinator gives one task: everything to run one cell, no experiment file needed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The cell (self-contained).
    pub cell: Cell,
    /// The cell's label in logs.
    pub label: String,
    /// Its index as published on the shared filesystem (copied to scratch before use).
    pub index_dir: PathBuf,
    /// The child indexes its parent retrievers search (siblings of `index_dir`, copied beside
    /// it).
    #[serde(default)]
    pub child_index_dirs: Vec<PathBuf>,
    /// All the experiment's questions, in asking order (seeds depend on the position).
    pub questions: Vec<Question>,
    /// (question id, 0-based repeat) pairs to answer.
    pub pending: Vec<(String, u32)>,
    /// Stored generations of the cell's model family, for reuse by content address.
    #[serde(default)]
    pub shared: Vec<SharedGeneration>,
    /// Seconds a worker may report nothing before it is killed.
    pub question_timeout_s: f64,
    /// `<run_dir>/attempts`: attempt files go to `<attempts_dir>/<cell id>/`.
    pub attempts_dir: PathBuf,
    /// Resource sampling interval, milliseconds.
    pub sample_interval_ms: u64,
}

/// The spec file of array task `index` in `wave_dir`.
pub fn spec_path(wave_dir: &Path, index: u32) -> PathBuf {
    wave_dir.join("tasks").join(format!("{index}.json"))
}

/// Reads a task spec. Errors: [`SlurmError::Io`], [`SlurmError::Spec`].
pub fn read_spec(path: &Path) -> Result<TaskSpec, SlurmError> {
    let text = std::fs::read_to_string(path).map_err(|source| SlurmError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| SlurmError::Spec {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// This attempt as Slurm's environment describes it (`local` outside Slurm).
pub fn attempt_info(cell_id: &str) -> AttemptInfo {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let num = |k: &str| var(k).and_then(|v| v.parse::<u32>().ok());
    AttemptInfo {
        cell_id: cell_id.to_string(),
        job_id: var("SLURM_ARRAY_JOB_ID")
            .or_else(|| var("SLURM_JOB_ID"))
            .unwrap_or_else(|| "local".into()),
        array_index: num("SLURM_ARRAY_TASK_ID"),
        restart_count: num("SLURM_RESTART_COUNT").unwrap_or(0),
        host: crate::sample::host_name(),
        pid: std::process::id(),
        cpus: num("SLURM_CPUS_PER_TASK").or_else(|| num("SLURM_CPUS_ON_NODE")),
        started_at: crate::store::now(),
    }
}

/// Runs array task `index` of the wave in `wave_dir` and returns how it ended. Errors: the spec
/// cannot be read, the attempt file cannot be written, or the index cannot be copied (each also
/// recorded in the attempt file when it exists).
pub fn run(wave_dir: &Path, index: u32) -> Result<ExitStatus, SlurmError> {
    let spec = read_spec(&spec_path(wave_dir, index))?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGUSR2, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(|source| SlurmError::Io {
            path: PathBuf::from("signal handler"),
            source,
        })?;
    }
    let info = attempt_info(&spec.cell.id);
    let cell_dir = spec.attempts_dir.join(&spec.cell.id);
    let done = answered_ok(&cell_dir);
    let pending: Vec<(String, u32)> = spec
        .pending
        .iter()
        .filter(|k| !done.contains(*k))
        .cloned()
        .collect();
    let mut writer = AttemptWriter::create(&cell_dir, &info).map_err(|source| SlurmError::Io {
        path: cell_dir.clone(),
        source,
    })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SlurmError::Io { path, source }
    };
    tracing::info!(
        "{}: {} to answer ({} answered by earlier attempts), attempt {}",
        spec.label,
        pending.len(),
        spec.pending.len() - pending.len(),
        writer.path().display()
    );
    if pending.is_empty() {
        writer
            .exit(ExitStatus::Done, None)
            .map_err(io(writer.path()))?;
        return Ok(ExitStatus::Done);
    }
    let scratch = Scratch::new(&info).map_err(io(&scratch_root()))?;
    // parent and children keep their names: the worker finds the children beside the parent
    let local = |dir: &Path| {
        scratch
            .0
            .join("indexes")
            .join(dir.file_name().unwrap_or_default())
    };
    let local_index = local(&spec.index_dir);
    let copied = std::iter::once(&spec.index_dir)
        .chain(&spec.child_index_dirs)
        .try_for_each(|d| copy_dir(d, &local(d)).map_err(|e| (d, e)));
    if let Err((dir, e)) = copied {
        let msg = format!(
            "cannot copy the index {} to node-local {}: {e}",
            dir.display(),
            scratch.0.display()
        );
        let _ = writer.exit(ExitStatus::Failed, Some(msg.clone()));
        return Err(SlurmError::Io {
            path: spec.index_dir.clone(),
            source: std::io::Error::other(msg),
        });
    }
    let opts = SweepOptions {
        store_dir: wave_dir.to_path_buf(),
        worker_exe: std::env::current_exe().map_err(io(Path::new("current executable")))?,
        sample_interval: Duration::from_millis(spec.sample_interval_ms.max(10)),
        bars: None,
    };
    let progress = Progress::new(None, 1);
    let ctx = CellRun {
        question_timeout_s: spec.question_timeout_s,
        cell: &spec.cell,
        index_dir: &local_index,
        opts: &opts,
        progress: &progress,
        label: &spec.label,
        questions: &spec.questions,
        shared: &spec.shared,
        stop: Some(&stop),
    };
    let outcome = run_cell(&ctx, pending, &mut writer)?;
    let (status, error) = if outcome.stopped || stop.load(Ordering::SeqCst) {
        (ExitStatus::Stopped, None)
    } else if let Some(e) = outcome.error {
        (ExitStatus::Failed, Some(e))
    } else {
        (ExitStatus::Done, None)
    };
    writer
        .exit(status, error.clone())
        .map_err(io(writer.path()))?;
    if let Some(e) = error {
        tracing::error!("{}: {}", spec.label, e.lines().next().unwrap_or(""));
    }
    Ok(status)
}

/// `$SLURM_TMPDIR`, else `$TMPDIR`, else `/tmp`: node-local scratch.
fn scratch_root() -> PathBuf {
    ["SLURM_TMPDIR", "TMPDIR"]
        .iter()
        .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// A private scratch directory of this attempt, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(info: &AttemptInfo) -> std::io::Result<Scratch> {
        let dir = scratch_root().join(format!(
            "orchestrate-{}",
            info.file_name().trim_end_matches(".jsonl")
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the directory tree `from` to `to` (files and directories; the index cache holds no
/// links).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Blocks until `flag` is set (for tests of the signal path).
#[cfg(test)]
fn wait_for(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_tree_is_copied_whole() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("dense")).unwrap();
        std::fs::write(src.join("meta.json"), "{}").unwrap();
        std::fs::write(src.join("dense/data.mdb"), vec![7u8; 4096]).unwrap();
        copy_dir(&src, &d.path().join("dst")).unwrap();
        assert_eq!(
            std::fs::read(d.path().join("dst/dense/data.mdb")).unwrap(),
            vec![7u8; 4096]
        );
        assert!(copy_dir(&d.path().join("missing"), &d.path().join("x")).is_err());
    }

    #[test]
    fn sigusr2_sets_the_stop_flag() {
        let stop = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR2, Arc::clone(&stop)).unwrap();
        // SAFETY: raising a signal whose handler was just registered.
        unsafe { libc::raise(libc::SIGUSR2) };
        wait_for(&stop);
        assert!(stop.load(Ordering::SeqCst));
    }
}
