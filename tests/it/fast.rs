//! The fast tier: sweeps through the real binary with a tiny embedding model written by the test
//! ([`common::tiny_embedding_model`]) and retrieval-only cells, so no downloaded model is needed
//! and the whole module runs in seconds: sweep, resume after `kill -9`, report, export, status.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;

const WORDS: &[&str] = &[
    "the",
    "director",
    "daemon",
    "storage",
    "file",
    "writes",
    "backup",
    "data",
    "to",
    "tapes",
    "listens",
    "on",
    "port",
    "catalog",
    "is",
    "a",
    "database",
    "pool",
    "groups",
    "volumes",
    "schedules",
    "define",
    "when",
    "jobs",
    "run",
    "what",
    "does",
    "do",
    "which",
    "question",
];

/// A retrieval-only experiment with `n` questions over a short corpus, in `dir`.
fn experiment(dir: &Path, n: usize, grid: &str) {
    // written once: its weights are random, and new weights would make every cell new
    if !dir.join("emb/model.safetensors").is_file() {
        common::tiny_embedding_model(&dir.join("emb"), WORDS);
    }
    let corpus = "The Director daemon supervises backup jobs.\n\n\
                  The Storage daemon writes backup data to tapes.\n\n\
                  The File daemon listens on port 9102.\n\n\
                  The Catalog is a database.\n\nA Pool groups volumes.\n\n\
                  Schedules define when jobs run.\n";
    std::fs::write(dir.join("corpus.txt"), corpus).unwrap();
    let mut qa = String::new();
    let subjects = [
        "Storage daemon",
        "File daemon",
        "Catalog",
        "Pool",
        "Schedules",
    ];
    for i in 0..n {
        qa.push_str(&format!(
            "[[question]]\nid = \"q{i}\"\nquestion = \"What does the {} do {i}?\"\nexpected_answer = \"It does {i}.\"\n{}\n",
            subjects[i % subjects.len()],
            if i % 5 == 1 { "evidence = \"listens on port 9102\"\n" } else { "" }
        ));
    }
    std::fs::write(dir.join("qa.toml"), qa).unwrap();
    std::fs::write(
        dir.join("exp.toml"),
        format!(
            "name = \"fast\"\ncorpus = \"corpus.txt\"\nqa = \"qa.toml\"\nembedding_model = \"emb\"\ngenerate = false\n\n[grid]\n{grid}\n"
        ),
    )
    .unwrap();
}

fn orchestrate(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orchestrate"));
    c.current_dir(dir).args(args).env("RUST_LOG", "warn");
    c
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out: Output = orchestrate(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn count(dir: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(dir.join("store/fast.sqlite"))
        .and_then(|db| db.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Starts `orchestrate run exp.toml` in `dir` (stderr to `stderr`) and returns it once the
/// database holds `rows` answers, before the sweep ends.
fn run_until_rows(dir: &Path, stderr: Stdio, rows: i64) -> std::process::Child {
    let mut child = orchestrate(dir, &["run", "exp.toml", "--no-progress"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count(dir, "SELECT COUNT(*) FROM answers") < rows {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended too soon"
        );
        assert!(Instant::now() < deadline, "no answers after 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn sweep_resume_after_kill_report_export_status_without_models() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let n = 600;
    experiment(
        dir,
        n,
        "chunk_size = [60, 150]\nchunk_overlap = [0]\nretriever = [\"bm25\", \"mmr\"]\nfetch_k = [4]\nlambda_mult = [0.25, 0.75]\n",
    );
    let cells = 2 * 3;
    let total = (cells * n) as i64;
    let mut child = run_until_rows(dir, Stdio::null(), 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = count(dir, "SELECT COUNT(*) FROM answers");
    assert!(partial < total, "killed before the end ({partial} rows)");
    let status = ok(dir, &["status", "exp.toml"]);
    assert!(
        status.contains(&format!("{partial} of {total} answers stored")),
        "{status}"
    );
    // the report and the terminal tables of the partial results say the sweep is incomplete
    ok(dir, &["report", "exp.toml", "-o", "partial.html"]);
    let html = std::fs::read_to_string(dir.join("partial.html")).unwrap();
    assert!(
        html.contains(r#"id="unfinished-cells""#),
        "sweep incomplete box"
    );
    let compare = ok(dir, &["compare", "exp.toml"]);
    assert!(compare.contains("sweep incomplete:"), "{compare}");

    ok(dir, &["run", "exp.toml", "--no-progress"]);
    assert_eq!(count(dir, "SELECT COUNT(*) FROM answers"), total);
    assert_eq!(
        count(
            dir,
            "SELECT COUNT(*) FROM (SELECT DISTINCT cell_id, question_id, repeat FROM answers)"
        ),
        total
    );
    assert_eq!(
        count(dir, "SELECT COUNT(*) FROM answers WHERE status = 'ok'"),
        total
    );
    assert_eq!(
        count(dir, "SELECT COUNT(*) FROM cells WHERE status = 'done'"),
        cells as i64
    );
    let status = ok(dir, &["status", "exp.toml"]);
    assert!(
        status.contains(&format!("{cells} of {cells} cells complete")),
        "{status}"
    );
    assert!(!ok(dir, &["compare", "exp.toml"]).contains("sweep incomplete"));

    // exports: one row per answer and per cell, every axis a column
    let csv = ok(dir, &["export", "exp.toml"]);
    assert_eq!(csv.lines().count() as i64, 1 + total);
    let header = csv.lines().next().unwrap();
    for col in [
        "lambda_mult",
        "fetch_k",
        "bm25",
        "dense_index",
        "status",
        "error",
    ] {
        assert!(header.split(',').any(|h| h == col), "{col}: {header}");
    }
    let per_cell = ok(
        dir,
        &["export", "exp.toml", "--per", "cell", "--format", "jsonl"],
    );
    assert_eq!(per_cell.lines().count(), cells);
    // the report, with the retrieved chunks' texts from the recorded indexes
    let html = std::fs::read_to_string(dir.join("reports/fast.html")).unwrap();
    assert!(html.contains("λ=0.25") && html.contains("λ=0.75"));
    assert!(html.contains("listens on port 9102"), "chunk texts");
    // from another directory with another --store: the recorded (relative) index paths are
    // found under that store, so the chunk texts are still there
    std::fs::create_dir(dir.join("sub")).unwrap();
    ok(
        &dir.join("sub"),
        &[
            "report",
            "../exp.toml",
            "--store",
            "../store",
            "-o",
            "r.html",
        ],
    );
    let elsewhere = std::fs::read_to_string(dir.join("sub/r.html")).unwrap();
    assert!(elsewhere.contains("listens on port 9102"), "chunk texts");
    // the ranking works on a retrieval metric without naming one
    let ranking = ok(dir, &["compare", "exp.toml"]);
    assert!(
        ranking.contains("hit@4") || ranking.contains("ndcg@4"),
        "{ranking}"
    );
}

#[test]
fn a_corrupt_index_is_rebuilt_and_edited_corpus_or_embedding_files_make_new_cells() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    experiment(dir, 5, "chunk_size = [80]\nretriever = [\"bm25\"]\n");
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    // break the cached index; a new cell over the same chunking rebuilds it instead of failing
    let index_dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.join("store/indexes"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("meta.json").is_file())
            .collect()
    };
    let first = index_dirs();
    assert_eq!(first.len(), 1);
    std::fs::write(first[0].join("chunks.jsonl"), "{broken").unwrap();
    experiment(
        dir,
        5,
        "chunk_size = [80]\nretriever = [\"bm25\", \"dense\"]\n",
    );
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    assert_eq!(
        count(dir, "SELECT COUNT(*) FROM cells WHERE status = 'done'"),
        2
    );
    assert_eq!(count(dir, "SELECT COUNT(*) FROM answers"), 10);
    // the edited corpus makes new cells; the old ones stay, outside the grid
    let corpus = std::fs::read_to_string(dir.join("corpus.txt")).unwrap();
    std::fs::write(
        dir.join("corpus.txt"),
        format!("{corpus}\nA new paragraph.\n"),
    )
    .unwrap();
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    assert_eq!(count(dir, "SELECT COUNT(*) FROM cells"), 4);
    let status = ok(dir, &["status", "exp.toml"]);
    assert!(status.contains("2 of 2 cells complete"), "{status}");
    assert_eq!(status.matches("(not in grid)").count(), 2, "{status}");
    // re-running changes nothing
    let out = orchestrate(dir, &["run", "exp.toml", "--no-progress"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 cells (2 already done"));
    // the embedding model edited in place: every cell of the grid is new again
    let tok = std::fs::read_to_string(dir.join("emb/tokenizer.json")).unwrap();
    std::fs::write(dir.join("emb/tokenizer.json"), format!("{tok}\n")).unwrap();
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    assert_eq!(count(dir, "SELECT COUNT(*) FROM cells"), 6);
    assert_eq!(count(dir, "SELECT COUNT(*) FROM answers"), 30);
    // the old cells' index is gone: rescore leaves their answers alone and says which cells
    std::fs::remove_dir_all(&first[0]).unwrap();
    let out = orchestrate(dir, &["rescore", "exp.toml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("10 answers of 2 cells not rescored: the index they recorded is gone"),
        "{err}"
    );
    // the current grid's cells are rescored
    assert!(err.contains("metrics recomputed for 20 answers"), "{err}");
}

#[test]
fn edited_questions_never_leave_stale_scores_or_rows() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    experiment(
        dir,
        6,
        "chunk_size = [60]\nchunk_overlap = [0]\nretriever = [\"bm25\"]\n",
    );
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    let hit = |q: &str| {
        count(
            dir,
            &format!(
                "SELECT CAST(json_extract(metrics, '$.\"hit@4\"') AS INTEGER) FROM answers \
                 WHERE question_id = '{q}'"
            ),
        )
    };
    assert_eq!(hit("q1"), 1, "the port evidence is retrieved");
    // the evidence of q1 edited to a quote no chunk holds: the next run re-scores it (no answer
    // is asked again) and status said so before
    let qa = std::fs::read_to_string(dir.join("qa.toml")).unwrap();
    std::fs::write(
        dir.join("qa.toml"),
        qa.replacen("listens on port 9102", "never written anywhere", 1),
    )
    .unwrap();
    let status = ok(dir, &["status", "exp.toml"]);
    assert!(
        status.contains("(1 to re-score: expected answer, evidence or page changed"),
        "{status}"
    );
    let out = orchestrate(dir, &["run", "exp.toml", "--no-progress"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("1 re-scored"), "{err}");
    assert_eq!(hit("q1"), 0, "scored against the new evidence");
    assert_eq!(count(dir, "SELECT COUNT(*) FROM answers"), 6);
    // q5 removed from the QA file: the run's report still holds its answer and says so; --grid
    // leaves it out
    let qa = std::fs::read_to_string(dir.join("qa.toml")).unwrap();
    let cut = qa.find("[[question]]\nid = \"q5\"").unwrap();
    std::fs::write(dir.join("qa.toml"), &qa[..cut]).unwrap();
    let out = orchestrate(dir, &["run", "exp.toml", "--no-progress"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("answers to 1 question(s) not among the experiment's current questions")
            && err.contains("q5"),
        "{err}"
    );
    let all = ok(dir, &["export", "exp.toml"]);
    let grid = ok(dir, &["export", "exp.toml", "--grid"]);
    assert_eq!(all.lines().count(), 1 + 6);
    assert_eq!(grid.lines().count(), 1 + 5);
    assert!(!grid.contains(",q5,"), "{grid}");
}

#[test]
fn sigterm_stops_a_sweep_cleanly_and_the_next_run_resumes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let n = 600;
    experiment(
        dir,
        n,
        "chunk_size = [60, 150]\nchunk_overlap = [0]\nretriever = [\"bm25\"]\n",
    );
    let total = (2 * n) as i64;
    let child = run_until_rows(dir, Stdio::piped(), 3);
    // the orchestrator alone, as `kill PID` or a batch system would: its worker keeps
    // answering, so the stop must be seen between events, not only in a quiet moment
    // SAFETY: signalling our own child process by its pid
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(
        err.contains("interrupted: the sweep stopped on SIGTERM"),
        "{err}"
    );
    let partial = count(dir, "SELECT COUNT(*) FROM answers");
    assert!(partial < total, "stopped before the end ({partial} rows)");
    assert_eq!(
        count(
            dir,
            "SELECT COUNT(*) FROM runs WHERE status = 'interrupted'"
        ),
        1
    );
    assert_eq!(
        count(
            dir,
            "SELECT COUNT(*) FROM cells WHERE status = 'interrupted'"
        ),
        1
    );
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    assert_eq!(count(dir, "SELECT COUNT(*) FROM answers"), total);
    assert_eq!(
        count(
            dir,
            "SELECT COUNT(*) FROM (SELECT DISTINCT cell_id, question_id, repeat FROM answers)"
        ),
        total
    );
}
