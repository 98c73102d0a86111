//! Folding attempt files into the result database: the coordinator is the only writer of
//! `store/<name>.sqlite`.
//!
//! Rules ([`crate::store::Store::merge_answer`]): a key without a row gets the answer; the first
//! `ok` answer of a key wins and is never replaced; a `failed` row is replaced by a later `ok`
//! one, never the reverse. A torn last line is skipped (it is read again, whole, once the task
//! finishes writing it). Merging is idempotent: a file merged twice, or two attempts that
//! answered the same question (a requeue, a task Slurm started twice), add nothing the second
//! time, so every (cell, question, repeat) key ends with exactly one row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::attempt::{attempt_files, read_attempt, Record};
use super::SlurmError;
use crate::store::{AttemptRecord, Store};

/// Remembers how far each attempt file was merged, so a poll reads only what is new. Forgetting
/// (a new coordinator) is safe: merging again adds nothing.
#[derive(Debug, Default)]
pub struct Merger {
    /// File → (bytes seen, complete records merged).
    seen: HashMap<PathBuf, (u64, usize)>,
}

/// What one merge pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Attempt files read (new or grown since the last pass).
    pub files: usize,
    /// Answers written to the database (new keys, or `ok` replacing `failed`).
    pub written: usize,
    /// Answers not written: the key already had its `ok` row, or a failure had been recorded.
    pub kept: usize,
    /// Files whose last line was torn (still being written, or the task died mid-line).
    pub torn: usize,
    /// Complete lines that were not records.
    pub bad_lines: usize,
}

impl Merger {
    /// Merges every attempt file under `attempts_dir` (`<cell_id>/<attempt>.jsonl`) into `store`
    /// as part of run `run_id`. Errors: a directory or file cannot be read, or the database
    /// fails.
    pub fn merge(
        &mut self,
        store: &mut Store,
        run_id: i64,
        attempts_dir: &Path,
    ) -> Result<MergeStats, SlurmError> {
        let mut stats = MergeStats::default();
        let cells = match std::fs::read_dir(attempts_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stats),
            Err(source) => {
                return Err(SlurmError::Io {
                    path: attempts_dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut dirs: Vec<PathBuf> = cells.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let files = attempt_files(dir).map_err(|source| SlurmError::Io {
                path: dir.clone(),
                source,
            })?;
            for f in files {
                self.merge_file(store, run_id, &f, &mut stats)?;
            }
        }
        Ok(stats)
    }

    fn merge_file(
        &mut self,
        store: &mut Store,
        run_id: i64,
        path: &Path,
        stats: &mut MergeStats,
    ) -> Result<(), SlurmError> {
        let io = |source| SlurmError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        let (seen_len, merged) = self.seen.get(path).copied().unwrap_or((u64::MAX, 0));
        if seen_len == len {
            return Ok(());
        }
        let read = read_attempt(path).map_err(io)?;
        stats.files += 1;
        if read.torn_bytes > 0 {
            stats.torn += 1;
        }
        stats.bad_lines += read.bad_lines;
        let Some(info) = &read.info else {
            // torn inside the header: nothing to merge yet
            return Ok(());
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for r in read.records.iter().skip(merged) {
            match r {
                Record::Ready { load_s, threads } => {
                    store.set_cell_load_time(&info.cell_id, *load_s)?;
                    if let Some(t) = threads {
                        store.set_cell_threads(&info.cell_id, *t)?;
                    }
                }
                Record::Answer {
                    answer,
                    usage,
                    samples,
                } => {
                    if store.merge_answer(
                        run_id,
                        &info.cell_id,
                        answer,
                        usage.as_ref(),
                        samples,
                        &name,
                    )? {
                        stats.written += 1;
                    } else {
                        stats.kept += 1;
                    }
                }
                Record::Attempt(_) | Record::Exit { .. } => {}
            }
        }
        let exit = read.exit();
        store.put_attempt(&AttemptRecord {
            attempt: name,
            run_id,
            info: info.clone(),
            answers: read.answers().count(),
            exit_status: exit.map(|(s, _)| s.as_str().to_string()),
            exit_error: exit.and_then(|(_, e)| e.map(str::to_string)),
        })?;
        self.seen
            .insert(path.to_path_buf(), (len, read.records.len()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::AnswerStatus;
    use crate::slurm::attempt::{AttemptInfo, AttemptWriter, ExitStatus};
    use crate::store::NewAnswer;
    use crate::sweep::AnswerSink;
    use std::io::Write;

    fn info(cell: &str, job: &str, restart: u32) -> AttemptInfo {
        AttemptInfo {
            cell_id: cell.into(),
            job_id: job.into(),
            array_index: Some(0),
            restart_count: restart,
            host: "n1".into(),
            pid: 1,
            cpus: Some(1),
            started_at: "2026-12-06T00:00:00Z".into(),
        }
    }

    fn answer(q: &str, repeat: u32, status: AnswerStatus, text: &str) -> NewAnswer {
        NewAnswer {
            status,
            answer: text.into(),
            error: (status == AnswerStatus::Failed).then(|| "boom".to_string()),
            ..NewAnswer::empty(q, repeat, "question?", "expected")
        }
    }

    fn rows(store: &Store) -> Vec<(String, u32, String, String)> {
        store
            .test_rows()
            .into_iter()
            .map(|(_, q, r, status, text)| (q, r, status, text))
            .collect()
    }

    /// A store with one registered cell, in a temporary directory.
    fn setup() -> (tempfile::TempDir, Store, i64, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("x.sqlite")).unwrap();
        store.insert_test_cell("c1");
        (dir, store, 1, "c1".to_string())
    }

    #[test]
    fn duplicates_requeues_and_torn_lines_end_with_one_row_per_key() {
        let (dir, mut store, run, cell) = setup();
        let attempts = dir.path().join("attempts");
        let cell_dir = attempts.join(&cell);
        // attempt 1: q1 ok, q2 failed, then killed while writing q3 (torn)
        let mut a1 = AttemptWriter::create(&cell_dir, &info(&cell, "7", 0)).unwrap();
        a1.answer(
            &cell,
            &answer("q1", 0, AnswerStatus::Ok, "first"),
            None,
            &[],
        )
        .unwrap();
        a1.answer(&cell, &answer("q2", 0, AnswerStatus::Failed, ""), None, &[])
            .unwrap();
        let p1 = a1.path().to_path_buf();
        drop(a1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p1)
            .unwrap()
            .write_all(b"{\"record\":\"answer\",\"ans")
            .unwrap();
        // attempt 2 (requeued): answers q1 again (differently), q2 ok, q3 ok
        let mut a2 = AttemptWriter::create(&cell_dir, &info(&cell, "7", 1)).unwrap();
        for (q, text) in [("q1", "second"), ("q2", "fixed"), ("q3", "third")] {
            a2.answer(&cell, &answer(q, 0, AnswerStatus::Ok, text), None, &[])
                .unwrap();
        }
        a2.exit(ExitStatus::Done, None).unwrap();

        let mut m = Merger::default();
        let s = m.merge(&mut store, run, &attempts).unwrap();
        assert_eq!(s.torn, 1);
        assert_eq!(s.written, 4, "q1, q2 failed, q2 ok over it, q3");
        assert_eq!(s.kept, 1, "q1's second ok loses to the first");
        assert_eq!(
            rows(&store),
            [
                ("q1".into(), 0, "ok".into(), "first".into()),
                ("q2".into(), 0, "ok".into(), "fixed".into()),
                ("q3".into(), 0, "ok".into(), "third".into()),
            ]
        );
        // a second pass (same merger, or a new coordinator) changes nothing
        assert_eq!(m.merge(&mut store, run, &attempts).unwrap().written, 0);
        let again = Merger::default().merge(&mut store, run, &attempts).unwrap();
        assert_eq!(again.written, 0);
        assert_eq!(rows(&store).len(), 3);
        let attempts_rows = store.attempts().unwrap();
        assert_eq!(attempts_rows.len(), 2);
        assert_eq!(
            attempts_rows[0].exit_status, None,
            "died without exit record"
        );
        assert_eq!(attempts_rows[1].exit_status.as_deref(), Some("done"));
        assert_eq!(attempts_rows[1].info.restart_count, 1);
    }

    #[test]
    fn a_failure_never_replaces_an_ok_row() {
        let (dir, mut store, run, cell) = setup();
        let attempts = dir.path().join("attempts");
        let cell_dir = attempts.join(&cell);
        let mut a1 = AttemptWriter::create(&cell_dir, &info(&cell, "8", 0)).unwrap();
        a1.answer(&cell, &answer("q1", 1, AnswerStatus::Ok, "good"), None, &[])
            .unwrap();
        let mut a2 = AttemptWriter::create(&cell_dir, &info(&cell, "9", 0)).unwrap();
        a2.answer(&cell, &answer("q1", 1, AnswerStatus::Failed, ""), None, &[])
            .unwrap();
        Merger::default().merge(&mut store, run, &attempts).unwrap();
        assert_eq!(rows(&store), [("q1".into(), 1, "ok".into(), "good".into())]);
    }
}
