//! End-to-end sweeps through the real binary: real embedding model, real GGUF models, a small
//! text corpus. Checks resume after `kill -9`, isolation of a crashing cell, and the CSV export.
//!
//! Needs the default models in models/ (`orchestrate models fetch`; the README's test command
//! fetches them first).

use crate::common;
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
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
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
fn bad_experiment_file_is_a_clear_error() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
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
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
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

/// A GGUF v3 file that passes every header check (magic, version, metadata, no tensors) but names
/// an architecture llama.cpp does not know: its cell fails when the worker loads it.
fn bogus_arch_gguf() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes()); // version
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // metadata pairs
    let key = b"general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    let value = b"no-such-architecture";
    b.extend_from_slice(&(value.len() as u64).to_le_bytes());
    b.extend_from_slice(value);
    b
}

/// Runs `orchestrate args` and returns (success, stdout, stderr).
fn run_args(f: &Fixture, args: &[&str]) -> (bool, String, String) {
    let out = f.cmd(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_good_and_one_broken_model_fails_loudly_everywhere() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let models = format!(
        "[[model]]\nname = \"broken\"\ngguf = \"bogus.gguf\"\nprompt = \"chat\"\n\n{}",
        smollm(8)
    );
    let f = Fixture::new(&models, "chunk_size = [300]\nretriever = [\"bm25\"]\n");
    std::fs::write(f.path("bogus.gguf"), bogus_arch_gguf()).unwrap();
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(!ok, "a sweep with a failed cell exits non-zero: {err}");
    assert!(err.contains("1 cells failed"), "{err}");
    assert!(err.contains("broken · bm25 chunk 300/60 k=4"), "{err}");
    // the good model answered everything
    assert_eq!(count(&f.db(), "SELECT COUNT(*) FROM answers a JOIN cells c USING (cell_id) WHERE c.model = 'smollm2' AND a.status = 'ok'"), 6);
    // status, compare, export and the report show the failed cell with its cause
    let (_, status, _) = run_args(&f, &["status", "exp.toml"]);
    let line = status.lines().find(|l| l.contains("broken")).unwrap();
    // the first line names the cause (the worker's own error), not just "exited early"
    assert!(
        line.contains("failed") && line.contains("bogus.gguf") && line.contains("exited early"),
        "{status}"
    );
    let (ok, compare, err) = run_args(&f, &["compare", "exp.toml"]);
    assert!(ok, "{err}");
    assert!(compare.contains("failed: broken · bm25"), "{compare}");
    let (ok, cells, _) = run_args(&f, &["export", "exp.toml", "--per", "cell"]);
    assert!(ok);
    let mut rdr = csv::Reader::from_reader(cells.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{cells}");
    let broken = rows.iter().find(|r| &r[col("model")] == "broken").unwrap();
    assert_eq!(&broken[col("status")], "failed");
    assert!(
        broken[col("error")].contains("worker exited early"),
        "{cells}"
    );
    assert_eq!(&broken[col("answers")], "0");
    let html = std::fs::read_to_string(f.path("reports/e2e.html")).unwrap();
    assert!(
        html.contains("Failed cells (1)") && html.contains("broken · bm25"),
        "report"
    );
}

#[test]
fn a_file_that_is_not_gguf_is_rejected_before_the_sweep() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let models = format!(
        "[[model]]\nname = \"broken\"\ngguf = \"broken.gguf\"\nprompt = \"chat\"\n\n{}",
        smollm(8)
    );
    let f = Fixture::new(&models, "chunk_size = [300]\nretriever = [\"bm25\"]\n");
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(!ok);
    assert!(
        err.contains("model[0].gguf") && err.contains("not a GGUF file"),
        "{err}"
    );
    assert!(!f.path("store/e2e.sqlite").exists(), "nothing written");
    std::fs::create_dir(f.path("dir.gguf")).unwrap();
    std::fs::write(
        f.path("exp.toml"),
        std::fs::read_to_string(f.path("exp.toml"))
            .unwrap()
            .replace("broken.gguf", "dir.gguf"),
    )
    .unwrap();
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(!ok && err.contains("directory"), "{err}");
}

#[test]
fn lambda_mult_values_are_distinct_cells_in_every_output() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let f = Fixture::new(
        &smollm(8),
        "chunk_size = [120]\nretriever = [\"mmr\"]\nfetch_k = [6]\nlambda_mult = [0.25, 0.75]\n",
    );
    let qa = QA.replace(
        "id = \"t1\"\n",
        "id = \"t1\"\nevidence = \"writes backup data to tapes\"\n",
    );
    std::fs::write(f.path("qa.toml"), qa).unwrap();
    let (ok, _, err) = run_args(
        &f,
        &["run", "exp.toml", "--no-progress", "--retrieval-only"],
    );
    assert!(ok, "{err}");
    let csv = f.ok(&["export", "exp.toml", "--retrieval-only"]);
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let lambda = h
        .iter()
        .position(|c| c == "lambda_mult")
        .expect("lambda_mult column");
    let values: std::collections::BTreeSet<String> = rdr
        .records()
        .map(|r| r.unwrap()[lambda].to_string())
        .collect();
    assert_eq!(values, ["0.25", "0.75"].map(String::from).into());
    let cells = f.ok(&["export", "exp.toml", "--per", "cell", "--format", "jsonl"]);
    assert_eq!(cells.lines().count(), 2, "{cells}");
    assert!(cells.contains("\"lambda_mult\":0.25") && cells.contains("\"lambda_mult\":0.75"));
    for out in [
        f.ok(&["compare", "exp.toml", "--metric", "hit@4"]),
        f.ok(&["status", "exp.toml", "--retrieval-only"]),
    ] {
        assert!(out.contains("λ=0.25") && out.contains("λ=0.75"), "{out}");
    }
    let html = std::fs::read_to_string(f.path("reports/e2e.html")).unwrap();
    assert!(html.contains("λ=0.25") && html.contains("λ=0.75"));
}

#[test]
fn results_are_read_from_the_database_alone() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let f = Fixture::new(
        &smollm(8),
        "chunk_size = [120, 300]\nretriever = [\"bm25\", \"dense\"]\n",
    );
    // the embedding model through a link that can be taken away
    std::os::unix::fs::symlink(model("all-MiniLM-L6-v2"), f.path("emb")).unwrap();
    let text = std::fs::read_to_string(f.path("exp.toml")).unwrap();
    let text = text.replace(&model("all-MiniLM-L6-v2").display().to_string(), "emb");
    std::fs::write(f.path("exp.toml"), text).unwrap();
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(ok, "{err}");
    let outputs = |f: &Fixture| -> Vec<String> {
        let mut v = Vec::new();
        for per in ["answer", "cell"] {
            for format in ["csv", "jsonl"] {
                v.push(f.ok(&["export", "exp.toml", "--per", per, "--format", format]));
            }
        }
        v.push(f.ok(&["compare", "exp.toml"]));
        f.ok(&["report", "exp.toml", "-o", "r.html"]);
        v.push(std::fs::read_to_string(f.path("r.html")).unwrap());
        v
    };
    let before = outputs(&f);
    assert!(
        before[5].contains("Director"),
        "the report holds chunk texts"
    );
    // move the inputs away: corpus, QA file, embedding model, GGUF
    std::fs::rename(f.path("corpus.txt"), f.path("corpus.moved")).unwrap();
    std::fs::rename(f.path("qa.toml"), f.path("qa.moved")).unwrap();
    std::fs::remove_file(f.path("emb")).unwrap();
    let text = std::fs::read_to_string(f.path("exp.toml")).unwrap();
    let gguf = model("SmolLM2-135M-Instruct.Q4_1.gguf")
        .display()
        .to_string();
    std::fs::write(f.path("exp.toml"), text.replace(&gguf, "gone.gguf")).unwrap();
    let after = outputs(&f);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a);
    }
    // status falls back to the database, --grid needs the inputs and says which is missing
    let status = f.ok(&["status", "exp.toml"]);
    assert!(
        status.contains("from the results database alone"),
        "{status}"
    );
    let (ok, _, err) = run_args(&f, &["export", "exp.toml", "--grid"]);
    assert!(!ok && err.contains("corpus"), "{err}");
}

#[test]
fn editing_inputs_reruns_exactly_the_affected_cells() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    // two copies of one GGUF: editing one in place (same size) makes only its cells new
    let gguf = model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let models = "[[model]]\nname = \"a\"\ngguf = \"a.gguf\"\nprompt = \"chat\"\nmax_tokens = 4\nthreads = 1\n\n\
                  [[model]]\nname = \"b\"\ngguf = \"b.gguf\"\nprompt = \"chat\"\nmax_tokens = 4\nthreads = 1\nseed = 7\n";
    let f = Fixture::new(models, "chunk_size = [300]\nretriever = [\"bm25\"]\n");
    std::fs::copy(&gguf, f.path("a.gguf")).unwrap();
    std::fs::copy(&gguf, f.path("b.gguf")).unwrap();
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(ok, "{err}");
    let cells = |f: &Fixture| count(&f.db(), "SELECT COUNT(*) FROM cells");
    assert_eq!(cells(&f), 2);
    let mut bytes = std::fs::read(f.path("b.gguf")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // a weight bit: same size, still loadable
    std::fs::write(f.path("b.gguf"), bytes).unwrap();
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("2 cells (1 already done"),
        "only b runs again: {err}"
    );
    assert_eq!(cells(&f), 3);
    assert_eq!(count(&f.db(), "SELECT COUNT(*) FROM answers"), 3 * 6);
    // the corpus edited: both models' cells are new
    let corpus = std::fs::read_to_string(f.path("corpus.txt")).unwrap();
    std::fs::write(
        f.path("corpus.txt"),
        format!("A new first paragraph.\n\n{corpus}"),
    )
    .unwrap();
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(ok, "{err}");
    assert!(err.contains("2 cells (0 already done"), "{err}");
    assert_eq!(cells(&f), 5);
    // status shows the grid and, apart, the cells made with the old contents
    let status = f.ok(&["status", "exp.toml"]);
    assert!(status.contains("2 of 2 cells complete"), "{status}");
    assert_eq!(status.matches("(not in grid)").count(), 3, "{status}");
}

#[test]
fn editing_an_expected_answer_rescores_without_an_llm_call() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let f = Fixture::new(&smollm(16), "chunk_size = [300]\nretriever = [\"bm25\"]\n");
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(ok, "{err}");
    let row = |f: &Fixture| -> (i64, String, String, f64) {
        f.db()
            .query_row(
                "SELECT run_id, answer, expected_answer, cosine FROM answers WHERE question_id = 't2'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
    };
    let before = row(&f);
    let qa = std::fs::read_to_string(f.path("qa.toml")).unwrap();
    std::fs::write(
        f.path("qa.toml"),
        qa.replace(
            "The File daemon listens on port 9102.",
            "Schedules are kept in the catalog.",
        ),
    )
    .unwrap();
    let status = f.ok(&["status", "exp.toml"]);
    assert!(status.contains("1 to re-score"), "{status}");
    let (ok, _, err) = run_args(&f, &["run", "exp.toml", "--no-progress"]);
    assert!(ok, "{err}");
    assert!(err.contains("1 re-scored"), "{err}");
    let after = row(&f);
    assert_eq!(after.0, before.0, "the answer was not generated again");
    assert_eq!(after.1, before.1);
    assert_eq!(after.2, "Schedules are kept in the catalog.");
    assert_ne!(after.3, before.3, "cosine against the new reference");
    assert_eq!(count(&f.db(), "SELECT COUNT(*) FROM answers"), 6);
}

#[test]
fn a_race_stops_a_clearly_worse_cell_records_why_and_a_plain_run_completes_it() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    // `good` answers in up to 24 tokens, batched 2 at a time after a latency pass of 2
    // questions; `mute` gets 1 token, so its answers are far from the expected ones.
    let gguf = model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let models = format!(
        "repeats = 2\nsearch = \"race\"\n\n[race]\nshards = 2\n\n\
         [[model]]\nname = \"good\"\ngguf = \"{g}\"\nprompt = \"chat\"\nmax_tokens = 24\nn_ctx = 1024\nthreads = 1\nparallel = 2\nlatency_questions = 2\n\n\
         [[model]]\nname = \"mute\"\ngguf = \"{g}\"\nprompt = \"chat\"\nmax_tokens = 1\nn_ctx = 1024\nthreads = 1\n",
        g = gguf.display()
    );
    let f = Fixture::new(&models, "chunk_size = [200]\nretriever = [\"bm25\"]\n");
    // 10 questions: each of the 2 shards holds 5, the fewest a race compares (repeats of a
    // question count once)
    let mut qa = std::fs::read_to_string(f.path("qa.toml")).unwrap();
    for (i, (q, a)) in [
        ("Which port does the Director listen on?", "Port 9101."),
        ("What does a Pool group?", "Volumes."),
        (
            "Where does the Storage daemon write?",
            "To tapes or disk volumes.",
        ),
        ("What does the File daemon send?", "File data."),
    ]
    .iter()
    .enumerate()
    {
        qa.push_str(&format!(
            "\n[[question]]\nid = \"t{}\"\nquestion = \"{q}\"\nexpected_answer = \"{a}\"\n",
            i + 7
        ));
    }
    std::fs::write(f.path("qa.toml"), qa).unwrap();
    // the plan before anything ran: no basis for the models yet, but the work is known
    let plan = f.ok(&["plan", "exp.toml"]);
    assert!(
        plan.contains(
            "2 cells × 10 questions × 2 repeats: 2 cells to run, 40 answers to store, 40 LLM calls"
        ),
        "{plan}"
    );
    assert!(plan.contains("index chunk 200/40: to build"), "{plan}");

    let out = f.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("racing eliminated 1 cells"), "{stderr}");
    assert!(stderr.contains("mute"), "{stderr}");
    let db = f.db();
    let status = |model: &str| -> String {
        db.query_row("SELECT status FROM cells WHERE model = ?1", [model], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(status("good"), "done");
    assert_eq!(status("mute"), "eliminated");
    let answers = |model: &str| {
        count(
            &db,
            &format!("SELECT COUNT(*) FROM answers a JOIN cells c USING (cell_id) WHERE c.model = '{model}'"),
        )
    };
    // the first shard is 5 of the 10 questions (× 2 repeats); the leader answers all 20
    assert_eq!(answers("mute"), 10);
    assert_eq!(answers("good"), 20);
    // the evidence: one elimination after look 1 on 5 questions, significantly below the leader
    let (look, n, diff, adjusted, level): (i64, i64, f64, f64, f64) = db
        .query_row(
            "SELECT look, n, mean_diff, p_adjusted, level FROM eliminations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((look, n), (1, 5));
    assert!(diff < 0.0 && adjusted < level && (level - 0.025).abs() < 1e-12);
    // batching: per repeat the first 2 questions (asking order) alone, the rest batched
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM answers a JOIN cells c USING (cell_id) WHERE c.model = 'good' AND a.decode_mode = 'single'"
        ),
        4
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM answers a JOIN cells c USING (cell_id) WHERE c.model = 'good' AND a.decode_mode = 'batched'"
        ),
        16
    );
    // shown everywhere: status, report, export
    let status_text = f.ok(&["status", "exp.toml"]);
    assert!(status_text.contains("eliminated"), "{status_text}");
    f.ok(&["report", "exp.toml"]);
    let html = std::fs::read_to_string(f.path("reports/e2e.html")).unwrap();
    assert!(html.contains("Stopped by racing (1)"), "report");
    assert!(
        html.contains("decoded batched"),
        "Methods names the batched answers"
    );
    let csv = f.ok(&["export", "exp.toml"]);
    assert!(csv.lines().next().unwrap().contains("decode_mode"), "{csv}");
    // the replay on these (incomplete) results runs and reports what it saw
    let replay = f.ok(&["race-replay", "exp.toml"]);
    assert!(replay.contains("answers asked:"), "{replay}");

    // a plain run completes the eliminated cell; the plan knows the models now
    let plan = f.ok(&["plan", "exp.toml"]);
    assert!(
        plan.contains("1 cells to run, 10 answers to store"),
        "{plan}"
    );
    assert!(!plan.contains("no basis"), "{plan}");
    let out = f
        .cmd(&["run", "exp.toml", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the file says race; the rerun races again: `mute` is re-tested on the first shard and
    // stopped again, so completing it needs the grid search
    let text = std::fs::read_to_string(f.path("exp.toml")).unwrap();
    std::fs::write(
        f.path("exp.toml"),
        text.replace("search = \"race\"", "search = \"grid\""),
    )
    .unwrap();
    f.ok(&["run", "exp.toml", "--no-progress"]);
    let db = f.db();
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM answers a JOIN cells c USING (cell_id) WHERE c.model = 'mute'"
        ),
        20
    );
    let mute: String = db
        .query_row("SELECT status FROM cells WHERE model = 'mute'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mute, "done");
}
