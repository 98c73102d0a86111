//! The Slurm commands orchestrate shells out to, behind a small trait, and the parsers of their
//! output.
//!
//! Slurm is the scheduler; orchestrate only submits (`sbatch --parsable`), watches (one
//! `squeue -h -r -t all --name=<job name> -o '%i|%T|%r'` per poll for the whole run, never one
//! call per task) and cancels (`scancel`). No libslurm binding: the commands are the stable
//! interface across Slurm versions. [`SlurmCli`] is the seam: [`Shell`] runs the commands,
//! tests replay outputs recorded from Slurm 22.05 (`tests/fixtures/slurm/`).
//!
//! `squeue` forgets finished jobs after `MinJobAge` (default 300 s) and `sacct` may not exist, so
//! Slurm's answer only says what is still queued or running; which answers exist is decided by
//! the attempt files ([`super::attempt`]).

use std::path::Path;
use std::process::Command;

/// Errors of the Slurm commands.
#[derive(Debug, thiserror::Error)]
pub enum SlurmCliError {
    /// The command could not be started (not installed, not on PATH).
    #[error("cannot run `{command}`: {source}; is Slurm's client installed and on PATH?")]
    Spawn {
        /// The command.
        command: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The command exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
    /// Its output was not what this Slurm interface expects.
    #[error("unexpected output of `{command}`: {output:?}")]
    Unexpected {
        /// The command.
        command: String,
        /// The output.
        output: String,
    },
}

/// The Slurm commands orchestrate uses: the seam between the coordinator and the cluster.
pub trait SlurmCli {
    /// `sbatch --parsable ARGS SCRIPT`: submits and returns the job id (for an array, the array's
    /// job id). Errors: [`SlurmCliError`].
    fn sbatch(&self, args: &[String], script: &Path) -> Result<String, SlurmCliError>;
    /// The states of the tasks of every job named `job_name` (finished ones while Slurm still
    /// remembers them). Errors: [`SlurmCliError`].
    fn squeue(&self, job_name: &str) -> Result<Vec<TaskState>, SlurmCliError>;
    /// `scancel JOB...`. Errors: [`SlurmCliError`].
    fn scancel(&self, job_ids: &[String]) -> Result<(), SlurmCliError>;
    /// Checks that the commands can run at all (`sbatch --version`), before any work starts.
    /// Errors: [`SlurmCliError`] (typically [`SlurmCliError::Spawn`]: Slurm not on PATH).
    fn preflight(&self) -> Result<(), SlurmCliError> {
        Ok(())
    }
}

/// Runs the real commands (found on PATH; `SLURM_CONF` and the rest of the environment as
/// given).
#[derive(Debug, Clone, Copy, Default)]
pub struct Shell;

impl Shell {
    fn run(&self, program: &str, args: &[String]) -> Result<String, SlurmCliError> {
        let line = format!("{program} {}", args.join(" "));
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|source| SlurmCliError::Spawn {
                command: program.to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(SlurmCliError::Failed {
                command: line,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl SlurmCli for Shell {
    fn sbatch(&self, args: &[String], script: &Path) -> Result<String, SlurmCliError> {
        let mut all = vec!["--parsable".to_string()];
        all.extend(args.iter().cloned());
        all.push(script.display().to_string());
        let out = self.run("sbatch", &all)?;
        parse_sbatch(&out)
    }

    fn squeue(&self, job_name: &str) -> Result<Vec<TaskState>, SlurmCliError> {
        let args: Vec<String> = [
            "-h",
            "-r",
            "-t",
            "all",
            &format!("--name={job_name}"),
            "-o",
            SQUEUE_FORMAT,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = self.run("squeue", &args)?;
        parse_squeue(&out)
    }

    fn scancel(&self, job_ids: &[String]) -> Result<(), SlurmCliError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        self.run("scancel", job_ids).map(|_| ())
    }

    fn preflight(&self) -> Result<(), SlurmCliError> {
        self.run("sbatch", &["--version".to_string()]).map(|_| ())
    }
}

/// The `squeue -o` format parsed by [`parse_squeue`]: job id, state, reason.
pub const SQUEUE_FORMAT: &str = "%i|%T|%r";

/// The job id in `sbatch --parsable` output (`<id>` or `<id>;<cluster>`). Errors:
/// [`SlurmCliError::Unexpected`] when it is not a number.
pub fn parse_sbatch(output: &str) -> Result<String, SlurmCliError> {
    let id = output
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlurmCliError::Unexpected {
            command: "sbatch --parsable".into(),
            output: output.to_string(),
        });
    }
    Ok(id.to_string())
}

/// One line of `squeue -r -o '%i|%T|%r'`: a task (or a still-collapsed range of pending tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The array's job id (the job id for a job that is not an array).
    pub job_id: String,
    /// The array indexes this line covers (one with `-r`, several for `1_[2-4%2]`); empty for a
    /// job that is not an array.
    pub indexes: Vec<u32>,
    /// The state.
    pub state: JobState,
    /// Slurm's reason (`None`, `JobArrayTaskLimit`, `BeginTime`, ...).
    pub reason: String,
}

/// A Slurm job state, as `squeue %T` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for resources, a dependency, the array throttle or a requeue delay.
    Pending,
    /// Running (also CONFIGURING, SIGNALING, STAGE_OUT, RESIZING).
    Running,
    /// Ending (also on its way back to the queue after a requeue).
    Completing,
    /// Suspended or stopped; will continue.
    Suspended,
    /// Requeued (REQUEUED, REQUEUE_HOLD, REQUEUE_FED): will start again.
    Requeued,
    /// Preempted or its node failed: not final when the job may be requeued (`--requeue`).
    Interrupted(String),
    /// Ended: COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, ...
    Ended(String),
}

impl JobState {
    /// Parses `%T`; unknown names count as ended (a state orchestrate does not know cannot be
    /// waited for safely forever).
    pub fn parse(s: &str) -> JobState {
        match s.trim() {
            "PENDING" => JobState::Pending,
            "RUNNING" | "CONFIGURING" | "SIGNALING" | "STAGE_OUT" | "RESIZING" => JobState::Running,
            "COMPLETING" => JobState::Completing,
            "SUSPENDED" | "STOPPED" => JobState::Suspended,
            "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SPECIAL_EXIT" => JobState::Requeued,
            s @ ("PREEMPTED" | "NODE_FAIL") => JobState::Interrupted(s.to_string()),
            other => JobState::Ended(other.to_string()),
        }
    }

    /// Whether the task may still run (and write answers): everything but [`JobState::Ended`].
    /// A preempted or node-failed task counts as active: with `--requeue` Slurm puts it back in
    /// the queue, and the next poll sees it pending or gone.
    pub fn is_active(&self) -> bool {
        !matches!(self, JobState::Ended(_))
    }

    /// The state's name for the terminal and status.
    pub fn name(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Running => "RUNNING",
            JobState::Completing => "COMPLETING",
            JobState::Suspended => "SUSPENDED",
            JobState::Requeued => "REQUEUED",
            JobState::Interrupted(s) | JobState::Ended(s) => s,
        }
    }
}

/// Parses `squeue -h -r -o '%i|%T|%r'` output. Errors: [`SlurmCliError::Unexpected`] for a line
/// that is not three `|`-separated fields with a job id.
pub fn parse_squeue(output: &str) -> Result<Vec<TaskState>, SlurmCliError> {
    let bad = || SlurmCliError::Unexpected {
        command: format!("squeue -o '{SQUEUE_FORMAT}'"),
        output: output.to_string(),
    };
    let mut tasks = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut f = line.splitn(3, '|');
        let (Some(id), Some(state), Some(reason)) = (f.next(), f.next(), f.next()) else {
            return Err(bad());
        };
        let (job_id, indexes) = match id.split_once('_') {
            None => (id.to_string(), Vec::new()),
            Some((job, idx)) => (job.to_string(), parse_indexes(idx).ok_or_else(bad)?),
        };
        if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        tasks.push(TaskState {
            job_id,
            indexes,
            state: JobState::parse(state),
            reason: reason.trim().to_string(),
        });
    }
    Ok(tasks)
}

/// `3`, or a collapsed `[2-4,7%2]` list (the `%` throttle dropped).
fn parse_indexes(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return s.parse().ok().map(|i| vec![i]);
    };
    let inner = inner.split('%').next()?;
    let mut out = Vec::new();
    for part in inner.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 1_000_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/slurm")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn sbatch_parsable_gives_the_job_id() {
        assert_eq!(parse_sbatch("1\n").unwrap(), "1");
        assert_eq!(parse_sbatch("4242;cluster-a\n").unwrap(), "4242");
        assert!(parse_sbatch("sbatch: error: Batch job submission failed\n").is_err());
        assert!(parse_sbatch("").is_err());
    }

    #[test]
    fn squeue_of_a_throttled_array_with_r_lists_each_task() {
        let tasks = parse_squeue(&fixture("squeue_throttled_r.txt")).unwrap();
        assert_eq!(tasks.len(), 5);
        assert!(tasks
            .iter()
            .all(|t| t.job_id == "1" && t.indexes.len() == 1));
        let pending: Vec<u32> = tasks
            .iter()
            .filter(|t| t.state == JobState::Pending)
            .map(|t| t.indexes[0])
            .collect();
        assert_eq!(pending, [2, 3, 4]);
        assert_eq!(tasks[0].reason, "JobArrayTaskLimit");
    }

    #[test]
    fn squeue_without_r_collapses_pending_tasks_into_a_range() {
        let tasks = parse_squeue(&fixture("squeue_throttled.txt")).unwrap();
        assert_eq!(tasks[0].indexes, [2, 3, 4]);
        assert_eq!(tasks[0].state, JobState::Pending);
    }

    #[test]
    fn requeued_cancelled_and_plain_jobs_parse() {
        let tasks = parse_squeue(&fixture("squeue_requeue_cancel.txt")).unwrap();
        let find = |job: &str, i: Option<u32>| {
            tasks
                .iter()
                .find(|t| t.job_id == job && t.indexes.first().copied() == i)
                .unwrap()
        };
        assert_eq!(
            find("1", Some(1)).state,
            JobState::Ended("CANCELLED".into())
        );
        assert!(!find("1", Some(1)).state.is_active());
        assert_eq!(find("4", None).state, JobState::Ended("COMPLETED".into()));
        assert!(
            find("1", Some(0)).state.is_active(),
            "requeued: pending again"
        );
    }

    #[test]
    fn interrupted_states_stay_active_unknown_ones_end() {
        assert!(JobState::parse("NODE_FAIL").is_active());
        assert!(JobState::parse("PREEMPTED").is_active());
        assert!(JobState::parse("COMPLETING").is_active());
        assert!(!JobState::parse("TIMEOUT").is_active());
        assert!(!JobState::parse("SOMETHING_NEW").is_active());
        assert_eq!(JobState::parse("OUT_OF_MEMORY").name(), "OUT_OF_MEMORY");
    }

    #[test]
    fn malformed_squeue_lines_are_errors() {
        assert!(parse_squeue("1_0 RUNNING None\n").is_err());
        assert!(parse_squeue("abc|RUNNING|None\n").is_err());
        assert!(parse_squeue("1_[x-y]|PENDING|None\n").is_err());
        assert!(parse_squeue("\n").unwrap().is_empty());
    }
}
