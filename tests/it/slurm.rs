//! Sweeps on a real one-node Slurm cluster (Slurm 22.05 on loopback, started by
//! `scripts/slurm-local.sh start`, which these tests call themselves), with the faults a cluster
//! brings: a task requeued mid-cell, the node set DOWN while tasks run, a task told its deadline
//! is near, the coordinator killed and restarted, an array throttle. Each sweep is 3 cells × 5
//! questions × 2 repeats with SmolLM2 and a tiny embedding model, and must end with exactly 30
//! rows, one per key, all `ok`.
//!
//! The tests take turns (one cluster, and one of them sets the node DOWN).

use crate::common;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One Slurm test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// `SLURM_CONF` of the test cluster, started once per test binary.
fn cluster() -> &'static str {
    static CONF: OnceLock<String> = OnceLock::new();
    CONF.get_or_init(|| {
        let script = common::manifest_path("scripts/slurm-local.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run scripts/slurm-local.sh");
        assert!(
            out.status.success(),
            "scripts/slurm-local.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .expect("SLURM_CONF from slurm-local.sh")
            .trim()
            .to_string()
    })
}

use crate::common::{SMALL_CORPUS as CORPUS, SMALL_QUESTIONS as QUESTIONS};

/// An experiment directory with a Slurm executor; the experiment's name is unique per test, so
/// is its Slurm job name.
struct Sweep {
    dir: tempfile::TempDir,
    name: String,
}

impl Sweep {
    fn new(name: &str, executor: &str) -> Sweep {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("corpus.txt"), CORPUS).unwrap();
        let mut qa = String::new();
        for (id, q, a) in QUESTIONS {
            qa.push_str(&format!(
                "[[question]]\nid = \"{id}\"\nquestion = \"{q}\"\nexpected_answer = \"{a}\"\n\n"
            ));
        }
        std::fs::write(p.join("qa.toml"), qa).unwrap();
        let words: Vec<&str> = CORPUS
            .split(|c: char| !c.is_alphanumeric())
            .chain(QUESTIONS.iter().flat_map(|(_, q, a)| {
                q.split(|c: char| !c.is_alphanumeric())
                    .chain(a.split(|c: char| !c.is_alphanumeric()))
            }))
            .filter(|w| !w.is_empty())
            .collect();
        common::tiny_embedding_model(&p.join("embed"), &words);
        let text = format!(
            "name = \"{name}\"\ncorpus = \"corpus.txt\"\nqa = \"qa.toml\"\nembedding_model = \"embed\"\n\
             repeats = 2\n\n[[model]]\nname = \"smollm2\"\ngguf = \"{}\"\nprompt = \"chat\"\n\
             max_tokens = 24\nn_ctx = 1024\nthreads = 1\n\n[grid]\nchunk_size = [200]\n\
             retriever = [\"dense\", \"bm25\", \"mmr\"]\n\n[executor]\nkind = \"slurm\"\n\
             poll_interval_s = 0.5\ntime_limit = 10\n{executor}\n",
            common::manifest_path(common::SMOLLM2).display()
        );
        std::fs::write(p.join("exp.toml"), text).unwrap();
        Sweep {
            dir,
            name: name.to_string(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_orchestrate"));
        c.current_dir(self.dir.path())
            .args(args)
            .env("SLURM_CONF", cluster())
            .env("RUST_LOG", "info");
        c
    }

    fn run(&self) -> Output {
        self.cmd(&["run", "exp.toml", "--no-progress"])
            .output()
            .unwrap()
    }

    fn spawn(&self) -> Child {
        self.cmd(&["run", "exp.toml", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join(format!("store/{}.sqlite", self.name)))
            .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn job_name(&self) -> String {
        format!("orchestrate-{}", self.name)
    }

    fn attempts_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join("store/slurm")
            .join(&self.name)
            .join("attempts")
    }

    /// Attempt files with their number of answer records, and whether they have an exit record.
    fn attempt_files(&self) -> Vec<(PathBuf, usize, bool)> {
        let mut out = Vec::new();
        let Ok(cells) = std::fs::read_dir(self.attempts_dir()) else {
            return out;
        };
        for cell in cells.flatten() {
            for f in std::fs::read_dir(cell.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                let answers = text.matches("\"record\":\"answer\"").count();
                let exit = text.contains("\"record\":\"exit\"");
                out.push((f.path(), answers, exit));
            }
        }
        out
    }

    /// Waits until an attempt file has at least `n` answers and no exit record (its task is
    /// mid-cell), and returns the Slurm id `<job>_<index>` of that task.
    fn task_mid_cell(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            for (path, answers, exit) in self.attempt_files() {
                if answers >= n && !exit {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    return name.split('.').next().unwrap().to_string();
                }
            }
            assert!(Instant::now() < deadline, "no task got mid-cell in 600 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `(job id, array index, restart count)` of every attempt merged.
    fn attempt_rows(&self) -> Vec<(String, Option<i64>, i64)> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT job_id, array_index, restart_count FROM attempts ORDER BY rowid")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The end state every fault must reach: 30 rows, one per key, all ok.
    fn assert_thirty_ok_rows(&self) {
        assert_eq!(self.count("SELECT COUNT(*) FROM answers"), 30);
        assert_eq!(
            self.count(
                "SELECT COUNT(*) FROM (SELECT DISTINCT cell_id, question_id, repeat FROM answers)"
            ),
            30
        );
        assert_eq!(
            self.count("SELECT COUNT(*) FROM answers WHERE status = 'ok'"),
            30,
            "every answer ok"
        );
        assert_eq!(
            self.count("SELECT COUNT(*) FROM cells WHERE status = 'done'"),
            3
        );
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        // never leave a test's tasks behind on the cluster
        let _ = Command::new("scancel")
            .arg(format!("--name={}", self.job_name()))
            .env("SLURM_CONF", cluster())
            .output();
    }
}

fn slurm(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("SLURM_CONF", cluster())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// `(task id, state, reason)` of the tasks of `job_name`.
fn tasks(job_name: &str) -> Vec<(String, String, String)> {
    let out = slurm(
        "squeue",
        &[
            "-h",
            "-r",
            "-t",
            "all",
            &format!("--name={job_name}"),
            "-o",
            "%i|%T|%r",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// How long a requeued task stays held before the test releases it. Slurm holds one ~2 minutes;
/// released within ~0.5 s of its kill, slurmd refuses the launch ("Job N already killed, do not
/// launch batch job") and the task ends FAILED instead of running again (seen on 22.05).
const REQUEUE_HOLD: Duration = Duration::from_secs(3);

/// Runs `child` to its end while releasing requeued tasks of `job_name` after [`REQUEUE_HOLD`]
/// instead of Slurm's ~2 minutes; also calls `watch` on each look at the queue. Returns the
/// child's output.
fn finish(
    mut child: Child,
    job_name: &str,
    mut watch: impl FnMut(&[(String, String, String)]),
) -> (std::process::ExitStatus, String) {
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut held_since = std::collections::HashMap::new();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "coordinator still running after 900 s"
        );
        let t = tasks(job_name);
        watch(&t);
        for (id, state, reason) in &t {
            if state != "PENDING" || reason != "BeginTime" {
                held_since.remove(id);
                continue;
            }
            let since = *held_since.entry(id.clone()).or_insert_with(Instant::now);
            if since.elapsed() >= REQUEUE_HOLD {
                let _ = slurm(
                    "scontrol",
                    &["update", &format!("JobId={id}"), "StartTime=now"],
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, reader.join().unwrap())
}

fn models_present() -> bool {
    common::models_present(&[common::SMOLLM2])
}

fn guard() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_sweep_ends_with_exactly_one_row_per_cell_question_and_repeat() {
    if !models_present() {
        return;
    }
    let _g = guard();
    let s = Sweep::new("slurm_plain", "");
    let out = s.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    s.assert_thirty_ok_rows();
    // each attempt recorded where it ran
    let db = s.db();
    let (host, job, index, cpus): (String, String, Option<i64>, Option<i64>) = db
        .query_row(
            "SELECT host, job_id, array_index, cpus FROM attempts ORDER BY array_index LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert!(!host.is_empty());
    assert!(job.parse::<u64>().is_ok(), "job id {job}");
    assert_eq!(index, Some(0));
    assert!(cpus.unwrap_or(0) >= 1);
    assert_eq!(s.count("SELECT COUNT(*) FROM attempts"), 3);
    assert_eq!(s.count("SELECT COUNT(*) FROM slurm_jobs"), 1);
    // every answer says which attempt wrote it; per-answer samples were taken on the node
    assert_eq!(
        s.count("SELECT COUNT(*) FROM answers WHERE attempt IS NULL"),
        0
    );
    assert!(s.count("SELECT COUNT(*) FROM answers WHERE rss_peak_bytes > 0") > 0);
    // a second run has nothing to do: no new array
    let again = s.run();
    assert!(again.status.success());
    assert_eq!(s.count("SELECT COUNT(*) FROM slurm_jobs"), 1);
    s.assert_thirty_ok_rows();
    // `status` merges and shows the arrays' Slurm states from the database alone
    let status = s.cmd(&["status", "exp.toml"]).output().unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("slurm: every job array ended"), "{text}");
    // the same sweep on this machine gives the same answers (same cells, seeded sampler)
    let local = s
        .cmd(&[
            "run",
            "exp.toml",
            "--no-progress",
            "--executor",
            "local",
            "--store",
            "local",
        ])
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let answers = |db: &rusqlite::Connection| -> Vec<(String, String, i64, String)> {
        let mut st = db
            .prepare(
                "SELECT cell_id, question_id, repeat, answer FROM answers \
                 ORDER BY cell_id, question_id, repeat",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let local_db =
        rusqlite::Connection::open(s.dir.path().join(format!("local/{}.sqlite", s.name))).unwrap();
    let (on_slurm, here) = (answers(&s.db()), answers(&local_db));
    assert_eq!(on_slurm.len(), 30);
    assert_eq!(on_slurm, here, "Slurm and local answers differ");
}

#[test]
fn a_task_requeued_mid_cell_resumes_without_losing_or_duplicating_rows() {
    if !models_present() {
        return;
    }
    let _g = guard();
    let s = Sweep::new("slurm_requeue", "");
    let child = s.spawn();
    let task = s.task_mid_cell(2);
    let out = slurm("scontrol", &["requeue", &task]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, stderr) = finish(child, &s.job_name(), |_| {});
    assert!(status.success(), "{stderr}");
    s.assert_thirty_ok_rows();
    assert!(
        s.count("SELECT COUNT(*) FROM attempts WHERE restart_count >= 1") >= 1,
        "the requeued task ran again as a new attempt\nattempts: {:?}\ncoordinator: {stderr}",
        s.attempt_rows()
    );
}

#[test]
fn the_node_going_down_while_tasks_run_loses_nothing() {
    if !models_present() {
        return;
    }
    let _g = guard();
    let s = Sweep::new("slurm_node_down", "");
    let child = s.spawn();
    s.task_mid_cell(1);
    let down = slurm(
        "scontrol",
        &[
            "update",
            "NodeName=localhost",
            "State=DOWN",
            "Reason=orchestrate-test",
        ],
    );
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    // ReturnToService may have brought it back already; RESUME then fails harmlessly
    let _ = slurm(
        "scontrol",
        &["update", "NodeName=localhost", "State=RESUME"],
    );
    let (status, stderr) = finish(child, &s.job_name(), |_| {});
    assert!(status.success(), "{stderr}");
    s.assert_thirty_ok_rows();
    assert!(
        s.count("SELECT COUNT(*) FROM attempts") > 3,
        "tasks killed by the node failure ran again"
    );
}

#[test]
fn a_task_told_its_deadline_is_near_stops_and_its_questions_go_to_the_next_wave() {
    if !models_present() {
        return;
    }
    let _g = guard();
    let s = Sweep::new("slurm_deadline", "");
    let child = s.spawn();
    let task = s.task_mid_cell(1);
    let out = slurm("scancel", &["--signal=USR2", "--batch", &task]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, stderr) = finish(child, &s.job_name(), |_| {});
    assert!(status.success(), "{stderr}");
    s.assert_thirty_ok_rows();
    assert_eq!(
        s.count("SELECT COUNT(*) FROM attempts WHERE exit_status = 'stopped'"),
        1
    );
    assert_eq!(
        s.count("SELECT MAX(wave) FROM slurm_jobs"),
        2,
        "the stopped task's questions went out in a second wave"
    );
}

#[test]
fn a_killed_coordinator_started_again_attaches_instead_of_submitting_again() {
    if !models_present() {
        return;
    }
    let _g = guard();
    let s = Sweep::new("slurm_coordinator", "");
    let mut child = s.spawn();
    s.task_mid_cell(1);
    child.kill().unwrap();
    child.wait().unwrap();
    let out = s.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("attaching to job arrays"), "{stderr}");
    s.assert_thirty_ok_rows();
    assert_eq!(
        s.count("SELECT COUNT(*) FROM slurm_jobs WHERE wave = 1"),
        1,
        "the first array was not submitted twice"
    );
}

#[test]
fn an_array_throttle_of_two_is_never_exceeded() {
    if !models_present() {
        return;
    }
    let _g = guard();
    let s = Sweep::new("slurm_throttle", "max_parallel = 2");
    let child = s.spawn();
    let mut most = 0;
    let (status, stderr) = finish(child, &s.job_name(), |t| {
        most = most.max(t.iter().filter(|(_, st, _)| st == "RUNNING").count());
    });
    assert!(status.success(), "{stderr}");
    s.assert_thirty_ok_rows();
    assert!(most <= 2, "{most} tasks ran at once");
    assert_eq!(most, 2, "the throttle let two run at once (4 slots free)");
}

#[test]
fn without_slurm_on_path_the_run_stops_before_any_work() {
    if !models_present() {
        return;
    }
    let s = Sweep::new("slurm_missing", "");
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(s.dir.path())
        .args(["run", "exp.toml", "--no-progress"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot run `sbatch`"), "{stderr}");
    assert!(stderr.contains("on PATH"), "{stderr}");
    // nothing was built or recorded
    assert!(!s.dir.path().join("store/indexes").exists());
    assert!(!s.dir.path().join("store/slurm_missing.sqlite").exists());
}
