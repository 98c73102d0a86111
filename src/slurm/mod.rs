//! Sweeps on a Slurm cluster with the local sweep's guarantees: exactly one row per cell ×
//! question × repeat, surviving a killed coordinator, requeued or preempted tasks and lost nodes.
//!
//! Slurm is the scheduler; orchestrate writes no scheduler of its own. `orchestrate run` with
//! `[executor] kind = "slurm"` (or `--executor slurm`) is the *coordinator*
//! ([`coordinator::run`]): it builds every index the cells need on the submitting host (published
//! atomically by the index cache), writes one self-contained task spec per cell (the typed
//! [`crate::cell::Cell`] with its pending questions) into a wave directory on the shared
//! filesystem, and submits one throttled, requeue-able job array per resource profile, one task
//! per cell, with a warning signal before the time limit. Each task runs
//! `orchestrate slurm-task` ([`task::run`]) on its compute node: it copies the cell's index to
//! node-local scratch (LMDB must not be opened on a network filesystem), starts the cell's worker
//! as a local sweep does (so RSS/CPU sampling runs on the node, the task being the worker's
//! parent), and appends each answer with its samples to an attempt file of its own
//! ([`attempt`]). Tasks never open the results database: the coordinator polls `squeue` once per
//! interval for the whole run and merges the attempt files into `store/<name>.sqlite`
//! ([`merge`]) by the local rules (first ok wins, ok replaces failed, never the reverse),
//! idempotently. Questions left without an answer when an array ends (a task past its deadline,
//! preempted for good, lost) go out in a further wave. The arrays submitted are recorded in the
//! database, so a coordinator started again after it died attaches to them instead of
//! submitting again.
//!
//! Design and the facts it rests on: `../shared/notes/slurm.md` (Slurm 22.05, measured); the
//! commands are behind [`cli::SlurmCli`].

pub mod attempt;
pub mod cli;
pub mod coordinator;
pub mod merge;
pub mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Errors of a Slurm sweep (the coordinator or a task).
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command failed.
    #[error(transparent)]
    Cli(#[from] cli::SlurmCliError),
    /// The result database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Preparing or running the sweep failed.
    #[error(transparent)]
    Sweep(#[from] crate::sweep::SweepError),
    /// The QA file is invalid.
    #[error(transparent)]
    Qa(#[from] crate::qa::QaError),
    /// A file of the run directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A task spec could not be read.
    #[error("task spec {path}: {message}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The experiment asks for something the Slurm executor does not do.
    #[error("{0}")]
    Unsupported(String),
}

/// Where the cells of a sweep run (`[executor] kind`, `orchestrate run --executor`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutorKind {
    /// Worker subprocesses on this machine, one cell at a time (the default).
    #[default]
    Local,
    /// Job arrays on a Slurm cluster ([`SlurmSettings`]).
    Slurm,
}

impl ExecutorKind {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// The `[executor]` settings of `kind = "slurm"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSettings {
    /// `sbatch --partition`; `None`: the cluster's default.
    pub partition: Option<String>,
    /// `sbatch --account`; `None`: the user's default.
    pub account: Option<String>,
    /// `sbatch --time` per cell (Slurm's formats: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`...).
    /// Default `"60"` (one hour).
    pub time_limit: String,
    /// The resources of each task (`--cpus-per-task`, `--mem`, `--gres`).
    pub resources: Resources,
    /// Per-model resources (`[executor.model.<name>]`), overriding `resources` field by field;
    /// cells with equal resources share one job array.
    pub model_resources: BTreeMap<String, Resources>,
    /// Array throttle: at most this many tasks of an array run at once (`--array=0-N%k`).
    pub max_parallel: Option<u32>,
    /// Extra sbatch options, passed as given (e.g. `["--qos=short", "--export=NONE"]`).
    pub sbatch_options: Vec<String>,
    /// Run directory on a filesystem the compute nodes share (task specs, batch scripts, logs,
    /// attempt files); `None`: `<store>/slurm`. One subdirectory per experiment.
    pub run_dir: Option<PathBuf>,
    /// Seconds between two `squeue` polls (backing off to 4× while nothing changes). Default 20.
    pub poll_interval_s: f64,
    /// Seconds before the time limit at which a task is told (SIGUSR2) to stop; its unanswered
    /// questions go to the next wave. Default 120.
    pub warning_s: u32,
    /// Waves of leftover questions after the first submission. Default 2.
    pub max_waves: u32,
}

/// Resources of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resources {
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem` (e.g. `"8G"`).
    pub mem: Option<String>,
    /// `--gres` (e.g. `"gpu:1"`).
    pub gres: Option<String>,
    /// `--time`, overriding [`SlurmSettings::time_limit`].
    pub time_limit: Option<String>,
}

impl Resources {
    /// `self` with the fields `over` sets replaced.
    pub fn overridden_by(&self, over: &Resources) -> Resources {
        Resources {
            cpus_per_task: over.cpus_per_task.or(self.cpus_per_task),
            mem: over.mem.clone().or_else(|| self.mem.clone()),
            gres: over.gres.clone().or_else(|| self.gres.clone()),
            time_limit: over.time_limit.clone().or_else(|| self.time_limit.clone()),
        }
    }
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            partition: None,
            account: None,
            time_limit: "60".into(),
            resources: Resources::default(),
            model_resources: BTreeMap::new(),
            max_parallel: None,
            sbatch_options: Vec::new(),
            run_dir: None,
            poll_interval_s: 20.0,
            warning_s: 120,
            max_waves: 2,
        }
    }
}

impl SlurmSettings {
    /// The resources of cells of model `model` (`None`: retrieval-only cells).
    pub fn resources_for(&self, model: Option<&str>) -> Resources {
        let base = Resources {
            time_limit: Some(
                self.resources
                    .time_limit
                    .clone()
                    .unwrap_or_else(|| self.time_limit.clone()),
            ),
            ..self.resources.clone()
        };
        match model.and_then(|m| self.model_resources.get(m)) {
            Some(over) => base.overridden_by(over),
            None => base,
        }
    }

    /// The sbatch options of a resource profile, without the array, name and output options.
    pub fn profile_args(&self, r: &Resources) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(p) = &self.partition {
            a.push(format!("--partition={p}"));
        }
        if let Some(acc) = &self.account {
            a.push(format!("--account={acc}"));
        }
        if let Some(t) = &r.time_limit {
            a.push(format!("--time={t}"));
        }
        if let Some(c) = r.cpus_per_task {
            a.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &r.mem {
            a.push(format!("--mem={m}"));
        }
        if let Some(g) = &r.gres {
            a.push(format!("--gres={g}"));
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_resources_override_field_by_field() {
        let mut s = SlurmSettings {
            partition: Some("cpu".into()),
            resources: Resources {
                cpus_per_task: Some(2),
                mem: Some("4G".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        s.model_resources.insert(
            "big".into(),
            Resources {
                mem: Some("16G".into()),
                time_limit: Some("02:00:00".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            s.profile_args(&s.resources_for(Some("small"))),
            [
                "--partition=cpu",
                "--time=60",
                "--cpus-per-task=2",
                "--mem=4G"
            ]
        );
        assert_eq!(
            s.profile_args(&s.resources_for(Some("big"))),
            [
                "--partition=cpu",
                "--time=02:00:00",
                "--cpus-per-task=2",
                "--mem=16G"
            ]
        );
    }
}
