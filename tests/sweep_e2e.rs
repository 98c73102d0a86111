//! End-to-end sweeps through the real binary: real embedding model, real GGUF models, a small
//! text corpus. Checks resume after `kill -9`, isolation of a crashing cell, and the CSV export.
//!
//! Needs the default models in models/ (`orchestrate models fetch`; the README's test command
//! fetches them first).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model(name: &str) -> PathBuf {
    let p = root().join("models").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `orchestrate models fetch` (the README's test command does)",
        p.display()
    );
    p
}

const CORPUS: &str = "The Director daemon supervises all backup, restore, verify and archive operations.\n\n\
The Storage daemon writes backup data to tapes or disk volumes. It listens on port 9103.\n\n\
The File daemon runs on each client machine and sends file data to the Storage daemon; it listens on port 9102.\n\n\
The Catalog is a database holding the names of files backed up and the volumes they are stored on.\n\n\
A Pool groups volumes together, so that a backup can be restricted to a set of volumes.\n\n\
Retention periods say how long file and job records are kept in the catalog before pruning.\n\x0c\
The Console program lets an administrator talk to the Director and run commands interactively.\n\n\
Schedules define when jobs run automatically, for example a full backup on the first Sunday of each month.\n";

const QA: &str = r#"
[[question]]
id = "t1"
question = "What does the Storage daemon do?"
expected_answer = "It writes backup data to tape or disk volumes."

[[question]]
id = "t2"
question = "Which port does the File daemon listen on?"
expected_answer = "The File daemon listens on port 9102."

[[question]]
id = "t3"
question = "What is the Catalog?"
expected_answer = "A database of the files backed up and the volumes they are on."

[[question]]
id = "t4"
question = "What is a Pool?"
expected_answer = "A group of volumes that backups can be restricted to."

[[question]]
id = "t5"
question = "What do Schedules define?"
expected_answer = "When jobs run automatically."

[[question]]
id = "t6"
question = "What is the Console for?"
expected_answer = "For an administrator to talk to the Director and run commands."
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(models: &str, grid: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corpus.txt"), CORPUS).unwrap();
        std::fs::write(dir.path().join("qa.toml"), QA).unwrap();
        std::fs::write(dir.path().join("broken.gguf"), b"this is not a GGUF file").unwrap();
        let text = format!(
            "name = \"e2e\"\ncorpus = \"corpus.txt\"\nqa = \"qa.toml\"\nembedding_model = \"{}\"\n\n{models}\n[grid]\n{grid}\n",
            model("all-MiniLM-L6-v2").display()
        );
        std::fs::write(dir.path().join("exp.toml"), text).unwrap();
        Fixture { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_orchestrate"));
        c.current_dir(self.dir.path())
            .args(args)
            .env("RUST_LOG", "warn");
        c
    }

    /// Runs `orchestrate args`, asserts it succeeded, and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn run(&self) -> std::process::Output {
        self.cmd(&["run", "exp.toml", "--no-progress"])
            .output()
            .unwrap()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("store/e2e.sqlite")).unwrap()
    }
}

fn smollm(max_tokens: u32) -> String {
    format!(
        "[[model]]\nname = \"smollm2\"\ngguf = \"{}\"\nprompt = \"chat\"\nmax_tokens = {max_tokens}\nn_ctx = 1024\nthreads = 1\n",
        model("SmolLM2-135M-Instruct.Q4_1.gguf").display()
    )
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn kill_9_then_rerun_gives_exactly_one_row_per_cell_and_question() {
    let f = Fixture::new(
        &smollm(48),
        "chunk_size = [120, 300]\nretriever = [\"dense\", \"ensemble\"]\nensemble_weight = [0.3]\n",
    );
    let mut child = f
        .cmd(&["run", "exp.toml", "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // wait until some, but not all, answers are committed, then kill -9 the parent
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let n = rusqlite::Connection::open(f.path("store/e2e.sqlite"))
            .ok()
            .and_then(|db| {
                db.query_row("SELECT COUNT(*) FROM answers", [], |r| r.get::<_, i64>(0))
                    .ok()
            })
            .unwrap_or(0);
        if n >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no answers after 10 minutes");
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = count(&f.db(), "SELECT COUNT(*) FROM answers");
    assert!(partial < 4 * 6, "killed before the end ({partial} rows)");
    // status: the stored rows, the killed cell shown interrupted, no sweep running now, and the
    // advice to resume
    let out = f.cmd(&["status", "exp.toml"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{partial} of 24 answers stored")),
        "{text}"
    );
    assert!(
        text.contains("  interrupted ") && !text.contains("a sweep is running now"),
        "{text}"
    );
    assert!(text.contains("unfinished cell"), "{text}");

    let out = f.run();
    assert!(
        out.status.success(),
        "rerun failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = f.db();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM answers"),
        4 * 6,
        "one row per cell x question"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM (SELECT DISTINCT cell_id, question_id, repeat FROM answers)"
        ),
        4 * 6
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM answers WHERE status = 'ok'"),
        4 * 6
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM cells WHERE status = 'done'"),
        4
    );
    // every answer carries its measurements
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM answers WHERE cosine BETWEEN -1 AND 1 AND response_time_s > 0 AND ttft_s <= response_time_s
               AND prompt_tokens > 0 AND completion_tokens <= 48 AND rss_peak_bytes >= rss_mean_bytes AND rss_mean_bytes > 0
               AND chunk_ids != '[]'"
        ),
        4 * 6
    );
    assert!(count(&db, "SELECT COUNT(*) FROM samples") > 0);

    // a third run has nothing to do and adds nothing
    let out = f.run();
    assert!(out.status.success());
    assert_eq!(count(&f.db(), "SELECT COUNT(*) FROM answers"), 4 * 6);
    let out = f.cmd(&["status", "exp.toml"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("4 of 4 cells complete, 24 of 24 answers stored (100%)"),
        "{text}"
    );
    assert!(
        f.path("reports/e2e.html").is_file(),
        "run writes the report"
    );

    // export: one CSV row per answer with the documented columns
    let out = f
        .cmd(&["export", "exp.toml", "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rdr = csv::Reader::from_reader(&out.stdout[..]);
    let headers = rdr.headers().unwrap().clone();
    for col in [
        "cell_id",
        "model",
        "chunk_size",
        "chunk_overlap",
        "retriever",
        "ensemble_weight",
        "repeat",
        "question_id",
        "answer",
        "cosine",
        "response_time_s",
        "ttft_s",
        "prompt_tokens",
        "completion_tokens",
        "rss_mean_bytes",
        "rss_peak_bytes",
        "cpu_mean_percent",
        "contexts_used",
        "status",
    ] {
        assert!(headers.iter().any(|h| h == col), "missing column {col}");
    }
    let used = headers.iter().position(|h| h == "contexts_used").unwrap();
    let ids = headers.iter().position(|h| h == "chunk_ids").unwrap();
    let records: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4 * 6);
    for r in &records {
        // every generated answer says how many of its retrieved chunks the model was given
        let n: usize = r[used].parse().unwrap();
        assert!(n >= 1 && n <= r[ids].split(' ').count(), "{r:?}");
    }

    // JSON lines: one object per answer with nested metrics; per cell, the means with intervals
    for (per, rows) in [("answer", 4 * 6), ("cell", 4)] {
        let lines: Vec<serde_json::Value> = f
            .ok(&["export", "exp.toml", "--format", "jsonl", "--per", per])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), rows, "{per}");
        if per == "answer" {
            assert!(
                lines.iter().all(|l| l["metrics"]["f1"].is_f64()),
                "{lines:?}"
            );
        } else {
            assert!(lines
                .iter()
                .all(|l| l["cosine"]["lo"].as_f64() <= l["cosine"]["mean"].as_f64()));
        }
    }

    // compare: the terminal ranking of the 4 cells on the answers' cosine
    let text = f.ok(&["compare", "exp.toml", "--metric", "cosine"]);
    assert!(
        text.contains("Ranking by cosine (higher is better), 4 cells"),
        "{text}"
    );
    assert_eq!(text.matches("smollm2").count(), 4, "{text}");

    // rescore: without WordNet it refuses (it would drop the stored METEOR values), with it it
    // recomputes every answer
    let meteors = "SELECT COUNT(*) FROM answer_metrics WHERE metric = 'meteor'";
    assert_eq!(count(&f.db(), meteors), 4 * 6);
    let out = f
        .cmd(&["rescore", "exp.toml"])
        .env("ORCHESTRATE_WORDNET", f.path("no-wordnet-here"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("would drop those values") && stderr.contains("no-wordnet-here"),
        "{stderr}"
    );
    assert_eq!(count(&f.db(), meteors), 4 * 6);
    let out = f.cmd(&["rescore", "exp.toml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("metrics recomputed for 24 answers"),
        "{stderr}"
    );
    assert_eq!(count(&f.db(), meteors), 4 * 6);
}

#[test]
fn a_crashing_cell_is_recorded_as_failed_and_the_sweep_goes_on() {
    let broken = format!(
        "[[model]]\nname = \"broken\"\ngguf = \"{}\"\nprompt = \"chat\"\n\n{}",
        "broken.gguf",
        smollm(16)
    );
    let f = Fixture::new(&broken, "chunk_size = [300]\nretriever = [\"bm25\"]\n");
    let out = f.run();
    assert!(
        out.status.success(),
        "a failed cell is not a failed sweep: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = f.db();
    let (status, error): (String, String) = db
        .query_row(
            "SELECT status, error FROM cells WHERE model = 'broken'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "failed");
    assert!(
        error.contains("broken.gguf"),
        "stderr tail names the bad file: {error}"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers a JOIN cells c USING (cell_id) WHERE c.model = 'smollm2' AND a.status = 'ok'"), 6);
}

#[test]
fn bad_experiment_file_is_a_clear_error() {
    let f = Fixture::new(
        &smollm(16),
        "chunk_size = [300]\nretriever = [\"bm25\"]\nchunk_sise = [3]\n",
    );
    let out = f.run();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exp.toml") && err.contains("chunk_sise") && err.contains("line"),
        "{err}"
    );
    assert!(!f.path("store/e2e.sqlite").exists(), "nothing written");
}

#[test]
fn retrieval_only_sweep_stores_retrieved_chunks_without_generating() {
    let f = Fixture::new(
        &smollm(16),
        "chunk_size = [120]\nretriever = [\"dense\", \"bm25\", \"mmr\", \"ensemble\"]\n",
    );
    // t1's evidence is in the corpus; t6's quote was paraphrased and is in no chunk.
    let qa = QA
        .replace(
            "id = \"t1\"\n",
            "id = \"t1\"\nevidence = \"writes backup data to tapes\"\n",
        )
        .replace(
            "id = \"t6\"\n",
            "id = \"t6\"\nevidence = \"the Console is a program for admins\"\n",
        );
    std::fs::write(f.path("qa.toml"), qa).unwrap();
    let out = f
        .cmd(&["run", "exp.toml", "--no-progress", "--retrieval-only"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // warned once (one chunking), naming the question whose evidence no chunk holds
    assert_eq!(
        stderr.matches("holds the evidence of").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("holds the evidence of 1 question (t6)"),
        "{stderr}"
    );
    let db = f.db();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM cells WHERE model = 'retrieval-only' AND status = 'done'"
        ),
        4
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers WHERE status = 'ok' AND chunk_ids != '[]' AND answer = ''"), 4 * 6);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM answers WHERE completion_tokens IS NOT NULL"
        ),
        0
    );
    // t1 has retrieval metrics in every cell, t6 (evidence nowhere) and the others none
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(DISTINCT cell_id || question_id) FROM answer_metrics WHERE metric LIKE 'hit@%'"
        ),
        4
    );

    // The generating file's other commands find the retrieval-only results, with or without
    // --retrieval-only, and even when its model file is gone (exp_gone.toml).
    let text = std::fs::read_to_string(f.path("exp.toml")).unwrap();
    let gguf = model("SmolLM2-135M-Instruct.Q4_1.gguf")
        .display()
        .to_string();
    assert!(text.contains(&gguf));
    std::fs::write(f.path("exp_gone.toml"), text.replace(&gguf, "gone.gguf")).unwrap();
    for (file, extra) in [
        ("exp.toml", &[][..]),
        ("exp.toml", &["--retrieval-only"][..]),
        ("exp_gone.toml", &[][..]),
    ] {
        let csv = f.ok(&[&["export", file][..], extra].concat());
        assert_eq!(csv.lines().count(), 1 + 4 * 6, "{csv}");
        assert!(
            csv.lines().skip(1).all(|l| l.contains("retrieval-only")),
            "{csv}"
        );
        let text = f.ok(&[&["compare", file, "--metric", "hit@4"][..], extra].concat());
        assert!(
            text.contains("Ranking by hit@4 (higher is better), 4 cells"),
            "{text}"
        );
    }
}
