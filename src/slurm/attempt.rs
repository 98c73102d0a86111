//! Attempt files: how a Slurm task hands its answers to the coordinator without touching SQLite.
//!
//! Every run of a task's batch script (an *attempt*: the first start, each requeue, a duplicate
//! start after a lost node) appends JSON lines to a file of its own,
//! `<run_dir>/attempts/<cell_id>/<job>_<array index>.r<restart count>.<host>.<pid>.jsonl`, so no
//! two writers ever share a file (O_APPEND is not atomic across NFS clients). The first line is
//! the [`AttemptInfo`] header, then one [`Record::Ready`], one [`Record::Answer`] per answer with
//! its usage samples, and a final [`Record::Exit`]. Each line is written whole and `fsync`ed before
//! the next question's answer is reported, so a task killed at any instant leaves at most one
//! torn last line, which [`read_attempt`] skips. The coordinator
//! ([`super::merge`]) folds these files into the result database; the task itself re-reads its
//! cell's earlier attempts to skip answers already written ([`answered_ok`]).
//!
//! The layout follows the design measured in `../shared/notes/slurm.md` (one writer per file,
//! `rename`-free appends, a torn tail skipped, merge idempotent).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cell::AnswerStatus;
use crate::sample::{Sample, Usage};
use crate::store::NewAnswer;
use crate::sweep::{AnswerSink, SweepError};

/// Where one attempt ran: the header line of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptInfo {
    /// The cell the attempt runs.
    pub cell_id: String,
    /// Slurm job id of the array (`SLURM_ARRAY_JOB_ID`, else `SLURM_JOB_ID`; `local` outside
    /// Slurm).
    pub job_id: String,
    /// Array task index (`SLURM_ARRAY_TASK_ID`).
    pub array_index: Option<u32>,
    /// How often Slurm restarted this task (`SLURM_RESTART_COUNT`, 0 on the first start).
    pub restart_count: u32,
    /// Host name of the compute node.
    pub host: String,
    /// Process id of the task on that host.
    pub pid: u32,
    /// CPUs Slurm allocated to the task (`SLURM_CPUS_PER_TASK`, else `SLURM_CPUS_ON_NODE`).
    pub cpus: Option<u32>,
    /// When the attempt started (RFC 3339, UTC).
    pub started_at: String,
}

impl AttemptInfo {
    /// The attempt file's name: `<job>_<index>.r<restart>.<host>.<pid>.jsonl`, unique per
    /// attempt even when Slurm starts the same task twice.
    pub fn file_name(&self) -> String {
        let index = self.array_index.map_or("x".to_string(), |i| i.to_string());
        let host: String = self
            .host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "{}_{index}.r{}.{host}.{}.jsonl",
            self.job_id, self.restart_count, self.pid
        )
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Every pending answer was written (some may be `failed` answers).
    Done,
    /// Told its deadline was near (`SIGUSR2`, sbatch `--signal`) or to stop (`SIGTERM`): the
    /// worker was killed and the questions in flight were left for the next wave.
    Stopped,
    /// The cell could not run or its worker failed for good; `error` says why.
    Failed,
}

impl ExitStatus {
    /// The name stored in the `attempts` table.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitStatus::Done => "done",
            ExitStatus::Stopped => "stopped",
            ExitStatus::Failed => "failed",
        }
    }
}

/// One line of an attempt file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The header (first line).
    Attempt(AttemptInfo),
    /// The worker loaded its models.
    Ready {
        /// Seconds the load took.
        load_s: f64,
        /// Threads the LLM runs with (`None` without a model).
        threads: Option<i32>,
    },
    /// One answer (ok or failed) with the usage samples of its window.
    Answer {
        /// The answer as the worker reported it.
        answer: Box<NewAnswer>,
        /// Summary of `samples`.
        usage: Option<Usage>,
        /// RSS/CPU samples of the worker while it answered.
        samples: Vec<Sample>,
    },
    /// The last line of an attempt that ended on its own terms.
    Exit {
        /// How it ended.
        status: ExitStatus,
        /// Why, when it failed.
        error: Option<String>,
    },
}

/// Appends the records of one attempt to its file, each line whole and synced to disk.
#[derive(Debug)]
pub struct AttemptWriter {
    file: File,
    path: PathBuf,
}

impl AttemptWriter {
    /// Creates `<cell_dir>/<info.file_name()>` (failing if it exists: one writer per file) and
    /// writes the header. Errors: the file cannot be created or written.
    pub fn create(cell_dir: &Path, info: &AttemptInfo) -> std::io::Result<AttemptWriter> {
        std::fs::create_dir_all(cell_dir)?;
        let path = cell_dir.join(info.file_name());
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)?;
        let mut w = AttemptWriter { file, path };
        w.write(&Record::Attempt(info.clone()))?;
        // the new directory entry must survive a crash of this node too
        if let Ok(dir) = File::open(cell_dir) {
            let _ = dir.sync_all();
        }
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `r` as one line and syncs it. Errors: the write or the sync failed.
    pub fn write(&mut self, r: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }

    /// Writes the exit record.
    pub fn exit(&mut self, status: ExitStatus, error: Option<String>) -> std::io::Result<()> {
        self.write(&Record::Exit { status, error })
    }

    fn sink_err(&self, source: std::io::Error) -> SweepError {
        SweepError::Attempt {
            path: self.path.clone(),
            source,
        }
    }
}

impl AnswerSink for AttemptWriter {
    fn ready(
        &mut self,
        _cell_id: &str,
        load_s: f64,
        threads: Option<i32>,
    ) -> Result<(), SweepError> {
        self.write(&Record::Ready { load_s, threads })
            .map_err(|e| self.sink_err(e))
    }

    fn answer(
        &mut self,
        _cell_id: &str,
        a: &NewAnswer,
        usage: Option<&Usage>,
        samples: &[Sample],
    ) -> Result<(), SweepError> {
        self.write(&Record::Answer {
            answer: Box::new(a.clone()),
            usage: usage.copied(),
            samples: samples.to_vec(),
        })
        .map_err(|e| self.sink_err(e))
    }
}

/// What one attempt file holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttemptRead {
    /// The header; `None` when even the first line is torn (the task died at once).
    pub info: Option<AttemptInfo>,
    /// The complete records after the header, in order.
    pub records: Vec<Record>,
    /// Bytes of a last line without its newline (a write cut short): skipped.
    pub torn_bytes: usize,
    /// Complete lines that were not a record (never written by orchestrate): skipped, counted.
    pub bad_lines: usize,
}

impl AttemptRead {
    /// The exit record, when the attempt wrote one.
    pub fn exit(&self) -> Option<(ExitStatus, Option<&str>)> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Exit { status, error } => Some((*status, error.as_deref())),
            _ => None,
        })
    }

    /// The answers, in order.
    pub fn answers(&self) -> impl Iterator<Item = (&NewAnswer, Option<&Usage>, &[Sample])> {
        self.records.iter().filter_map(|r| match r {
            Record::Answer {
                answer,
                usage,
                samples,
            } => Some((answer.as_ref(), usage.as_ref(), samples.as_slice())),
            _ => None,
        })
    }
}

/// Reads an attempt file: every complete line, skipping a torn last line (no newline yet).
/// Errors: the file cannot be read.
pub fn read_attempt(path: &Path) -> std::io::Result<AttemptRead> {
    let bytes = std::fs::read(path)?;
    Ok(parse_attempt(&bytes))
}

/// [`read_attempt`] over the bytes of a file.
pub fn parse_attempt(bytes: &[u8]) -> AttemptRead {
    let mut out = AttemptRead::default();
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => {
            out.torn_bytes = bytes.len() - i - 1;
            &bytes[..=i]
        }
        None => {
            out.torn_bytes = bytes.len();
            &[][..]
        }
    };
    for line in complete.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Attempt(info)) if out.info.is_none() && out.records.is_empty() => {
                out.info = Some(info)
            }
            Ok(r) => out.records.push(r),
            Err(_) => out.bad_lines += 1,
        }
    }
    out
}

/// The attempt files of one cell directory, sorted by name (empty when it does not exist).
/// Errors: the directory exists but cannot be listed.
pub fn attempt_files(cell_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(cell_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for e in entries {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The (question id, repeat) pairs with an `ok` answer in any attempt file of `cell_dir`: what a
/// restarted task need not answer again. Unreadable files are skipped (the merge reports them).
pub fn answered_ok(cell_dir: &Path) -> HashSet<(String, u32)> {
    let mut done = HashSet::new();
    for f in attempt_files(cell_dir).unwrap_or_default() {
        let Ok(read) = read_attempt(&f) else { continue };
        for (a, _, _) in read.answers() {
            if a.status == AnswerStatus::Ok {
                done.insert((a.question_id.clone(), a.repeat));
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(restart: u32) -> AttemptInfo {
        AttemptInfo {
            cell_id: "c1".into(),
            job_id: "41".into(),
            array_index: Some(2),
            restart_count: restart,
            host: "node-1.cluster".into(),
            pid: 77,
            cpus: Some(2),
            started_at: "2026-12-06T00:00:00Z".into(),
        }
    }

    fn answer(q: &str, status: AnswerStatus) -> NewAnswer {
        NewAnswer {
            status,
            answer: format!("answer to {q}"),
            ..NewAnswer::empty(q, 0, "question?", "expected")
        }
    }

    #[test]
    fn file_names_are_unique_per_attempt_and_safe() {
        assert_eq!(info(0).file_name(), "41_2.r0.node-1_cluster.77.jsonl");
        assert_ne!(info(0).file_name(), info(1).file_name());
    }

    #[test]
    fn a_written_attempt_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = AttemptWriter::create(dir.path(), &info(0)).unwrap();
        w.ready("c1", 1.5, Some(2)).unwrap();
        let s = [Sample {
            t_s: 0.2,
            rss_bytes: 1 << 20,
            cpu_percent: 150.0,
        }];
        w.answer("c1", &answer("q1", AnswerStatus::Ok), None, &s)
            .unwrap();
        w.answer("c1", &answer("q2", AnswerStatus::Failed), None, &[])
            .unwrap();
        w.exit(ExitStatus::Done, None).unwrap();
        let r = read_attempt(w.path()).unwrap();
        assert_eq!(r.info, Some(info(0)));
        assert_eq!(r.torn_bytes, 0);
        assert_eq!(r.answers().count(), 2);
        assert_eq!(r.answers().next().unwrap().2, &s);
        assert_eq!(r.exit(), Some((ExitStatus::Done, None)));
        // a second writer for the same attempt name is refused: one writer per file
        assert!(AttemptWriter::create(dir.path(), &info(0)).is_err());
        let done = answered_ok(dir.path());
        assert!(done.contains(&("q1".to_string(), 0)));
        assert!(!done.contains(&("q2".to_string(), 0)), "failed is not done");
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = AttemptWriter::create(dir.path(), &info(0)).unwrap();
        w.answer("c1", &answer("q1", AnswerStatus::Ok), None, &[])
            .unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let tail = br#"{"record":"answer","answer":{"question_id":"q2""#;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(tail).unwrap();
        let r = read_attempt(&path).unwrap();
        assert_eq!(r.answers().count(), 1);
        assert_eq!(r.torn_bytes, tail.len());
        assert_eq!(r.exit(), None, "no exit record: the attempt died");
        // a file torn inside its header has nothing
        let r = parse_attempt(br#"{"record":"attempt","cell_id":"c"#);
        assert_eq!(r.info, None);
        assert!(r.records.is_empty());
    }

    #[test]
    fn foreign_lines_are_counted_not_trusted() {
        let r = parse_attempt(
            b"not json\n{\"record\":\"exit\",\"status\":\"stopped\",\"error\":null}\n",
        );
        assert_eq!(r.bad_lines, 1);
        assert_eq!(r.exit(), Some((ExitStatus::Stopped, None)));
    }
}
