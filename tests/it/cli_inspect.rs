//! The inspection commands through the real binary on a small text corpus with evidence quotes:
//! `run` (retrieval-only, both BM25 variants) stores retrieval metrics; `chunks` prints the
//! indexed chunks; `retrieve` prints ranked chunks for every retriever; `compare` ranks the cells;
//! `rescore` restores deleted metrics exactly; `export` has one column per metric.
//!
//! Needs the embedding model in models/ (`orchestrate models fetch`; the README's test command
//! fetches it first).

use crate::common;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const CORPUS: &str = "The Director daemon supervises all backup, restore, verify and archive operations.\n\n\
The Storage daemon writes backup data to tapes or disk volumes. It listens on port 9103.\n\n\
The File daemon runs on each client machine and sends file data to the Storage daemon; it listens on port 9102.\n\n\
The Catalog is a database holding the names of files backed up and the volumes they are stored on.\n\n\
A Pool groups volumes together, so that a backup can be restricted to a set of volumes.\n\x0c\
Retention periods say how long file and job records are kept in the catalog before pruning.\n\n\
The Console program lets an administrator talk to the Director and run commands interactively.\n";

const QA: &str = r#"
[[question]]
id = "t1"
question = "Which port does the File daemon listen on?"
expected_answer = "Port 9102."
evidence = "it listens on port 9102"

[[question]]
id = "t2"
question = "What does a Pool group together?"
expected_answer = "Volumes."
evidence = "A Pool groups volumes together"

[[question]]
id = "t3"
question = "What is kept until pruning?"
expected_answer = "File and job records."
page = 2

[[question]]
id = "t4"
question = "Who talks to the Director?"
expected_answer = "An administrator through the Console."
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let model = root().join("models/all-MiniLM-L6-v2");
        assert!(
            model.exists(),
            "{} is missing: run `orchestrate models fetch`",
            model.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corpus.txt"), CORPUS).unwrap();
        std::fs::write(dir.path().join("qa.toml"), QA).unwrap();
        let text = format!(
            "name = \"inspect\"\ncorpus = \"corpus.txt\"\nqa = \"qa.toml\"\nembedding_model = \"{}\"\n\
             generate = false\n[grid]\nchunk_size = [120]\nchunk_overlap = [0]\n\
             retriever = [\"dense\", \"bm25\", \"ensemble\"]\nensemble_weight = [0.5]\ntop_k = [2]\n\
             bm25 = [\"tantivy\", \"okapi\"]\n",
            model.display()
        );
        std::fs::write(dir.path().join("exp.toml"), text).unwrap();
        Fixture { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
            .current_dir(self.dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("store/inspect.sqlite")).unwrap()
    }
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn inspect_commands_agree_with_the_sweep() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let f = Fixture::new();
    f.run(&["run", "exp.toml", "--no-progress"]);
    let db = f.db();

    // dense, bm25 × 2 variants, ensemble × 2 variants: 5 cells, the variants recorded.
    let variants: Vec<(String, Option<String>)> = db
        .prepare("SELECT retriever, bm25 FROM cells ORDER BY retriever, bm25")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expect = |r: &str, b: Option<&str>| (r.to_string(), b.map(String::from));
    assert_eq!(
        variants,
        [
            expect("bm25", Some("okapi")),
            expect("bm25", Some("tantivy")),
            expect("dense", None),
            expect("ensemble", Some("okapi")),
            expect("ensemble", Some("tantivy")),
        ]
    );

    // Retrieval metrics for the three questions with evidence or a page, none for t4.
    let metrics: BTreeMap<(String, String), String> = db
        .prepare("SELECT cell_id, question_id, metrics FROM answers")
        .unwrap()
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(metrics.len(), 5 * 4);
    for ((_, q), m) in &metrics {
        let m: BTreeMap<String, f64> = serde_json::from_str(m).unwrap();
        if q == "t4" {
            assert!(m.is_empty(), "{m:?}");
        } else {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            assert_eq!(keys, ["hit@2", "mrr@2", "ndcg@2", "recall@2"], "{q}");
            assert!(m.values().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    // `chunks` prints what the index holds: same count as the stored n_chunks, pages 1 and 2.
    let chunks = json_lines(&f.run(&["chunks", "exp.toml"]));
    let n_chunks: i64 = db
        .query_row("SELECT MAX(n_chunks) FROM cells", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chunks.len() as i64, n_chunks);
    assert!(chunks
        .iter()
        .all(|c| c["text"].as_str().unwrap().chars().count() <= 120));
    assert_eq!(chunks.last().unwrap()["page"], 2);

    // `retrieve`: tantivy BM25 tokenizes on non-alphanumerics, so "9102" matches "9102." and the
    // chunk with port 9102 comes first; okapi uses whitespace tokens as rank_bm25, so only the
    // query token "9102." matches it (with "9102" the shorter chunk sharing "port" wins).
    let bm25 = |variant: &str, query: &str| {
        json_lines(&f.run(&[
            "retrieve",
            "exp.toml",
            "--retriever",
            "bm25",
            "--bm25",
            variant,
            "--top-k",
            "3",
            "--query",
            query,
        ]))
    };
    let first = |hits: &[serde_json::Value]| hits[0]["text"].as_str().unwrap().to_string();
    assert!(first(&bm25("tantivy", "port 9102")).contains("9102"));
    assert!(first(&bm25("okapi", "port 9102")).contains("9103"));
    let hits = bm25("okapi", "port 9102.");
    assert!(first(&hits).contains("9102"), "{hits:?}");
    // the query may also follow the experiment file, as a user types it
    let positional = json_lines(&f.run(&[
        "retrieve",
        "exp.toml",
        "port 9102.",
        "--retriever",
        "bm25",
        "--bm25",
        "okapi",
        "--top-k",
        "3",
    ]));
    assert_eq!(positional, hits);
    for args in [
        &["retrieve", "exp.toml"][..],
        &["retrieve", "exp.toml", "a", "--query", "b"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
            .current_dir(f.dir.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--query"), "{args:?}: {err}");
    }
    assert_eq!(
        hits.len(),
        3,
        "okapi fills top_k with zero-score chunks like get_top_n"
    );
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h["rank"], i + 1);
        let id = h["id"].as_u64().unwrap() as usize;
        assert_eq!(h["text"], chunks[id]["text"]);
    }
    assert!(hits
        .windows(2)
        .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()));
    for r in ["dense", "mmr", "ensemble"] {
        let hits = json_lines(&f.run(&[
            "retrieve",
            "exp.toml",
            "--retriever",
            r,
            "--dense-index",
            "exact",
            "--query",
            "Which port does the File daemon listen on?",
        ]));
        assert!(!hits.is_empty() && hits.len() <= 8, "{r}: {hits:?}");
    }

    // `compare` ranks the 5 cells on nDCG@2 by default and marks the best.
    let text = String::from_utf8(f.run(&["compare", "exp.toml"]).stdout).unwrap();
    assert!(text.contains("ndcg@2"), "{text}");
    assert!(text.contains("best"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("retrieval-only"))
            .count(),
        5,
        "{text}"
    );

    // `rescore` recomputes exactly what the worker stored.
    db.execute("UPDATE answers SET metrics = '{}'", []).unwrap();
    let out = f.run(&["rescore", "exp.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("20 answers"));
    let again: BTreeMap<(String, String), String> = db
        .prepare("SELECT cell_id, question_id, metrics FROM answers")
        .unwrap()
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(again, metrics);

    // `export` has the fixed columns then one column per metric.
    let csv = String::from_utf8(f.run(&["export", "exp.toml"]).stdout).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",hit@2,recall@2,mrr@2,ndcg@2"), "{header}");

    // `export --per cell`: one row per cell with each metric's mean and interval.
    let csv = String::from_utf8(f.run(&["export", "exp.toml", "--per", "cell"]).stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(lines.count(), 5);
    for c in [
        "ndcg@2_mean",
        "ndcg@2_ci_low",
        "ndcg@2_ci_high",
        "ndcg@2_n",
        "bm25",
    ] {
        assert!(header.contains(&c), "{c}: {header:?}");
    }

    // `report --metric` ranks on the chosen metric; an unknown one is an error naming the choices.
    f.run(&["report", "exp.toml", "--metric", "mrr@2", "-o", "r.html"]);
    let html = std::fs::read_to_string(f.dir.path().join("r.html")).unwrap();
    assert!(html.contains("Ranking by MRR@2"), "ranking heading");
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(f.dir.path())
        .args(["report", "exp.toml", "--metric", "bleu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("available: hit@2"));

    // retrieval-only results have no answers to judge: said so, before any judge model is sought
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(f.dir.path())
        .args(["judge", "exp.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no generated answers to judge") && err.contains("generate = false"),
        "{err}"
    );
}

#[test]
fn bad_inspect_arguments_are_clear_errors() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let f = Fixture::new();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orchestrate"))
            .current_dir(f.dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["retrieve", "exp.toml", "--bm25", "lucene", "--query", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--bm25") && err.contains("tantivy or okapi"),
        "{err}"
    );
    let out = run(&[
        "chunks",
        "exp.toml",
        "--chunk-size",
        "50",
        "--chunk-overlap",
        "60",
    ]);
    assert!(!out.status.success());
    let out = run(&["compare", "exp.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("orchestrate run"));
}

#[test]
fn ask_shows_the_prompt_the_answer_and_which_chunks_fitted() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let f = Fixture::new();
    let gguf = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.exists(),
        "{} is missing: run `orchestrate models fetch`",
        gguf.display()
    );
    let exp = std::fs::read_to_string(f.dir.path().join("exp.toml")).unwrap();
    // n_ctx 2048 fits every chunk; n_ctx 128 with 8 tokens to generate cannot fit 4 chunks of
    // ~30 tokens next to the chat template and instruction (~70 tokens)
    for (n_ctx, name) in [(2048, "wide.toml"), (128, "narrow.toml")] {
        let text = exp.replace("generate = false\n", "")
            + &format!(
                "\n[[model]]\nname = \"smollm2\"\ngguf = \"{}\"\nprompt = \"chat\"\nn_ctx = {n_ctx}\nmax_tokens = 8\nthreads = 1\n",
                gguf.display()
            );
        std::fs::write(f.dir.path().join(name), text).unwrap();
    }
    let ask = |file: &str| -> serde_json::Value {
        let out = f.run(&[
            "ask",
            file,
            "--question",
            "Which port does the File daemon listen on?",
            "--retriever",
            "dense",
            "--top-k",
            "4",
            "--bm25",
            "tantivy",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let index_text = |id: u64| -> String {
        let out = f.run(&["chunks", "exp.toml"]);
        json_lines(&out)
            .into_iter()
            .find(|c| c["id"].as_u64() == Some(id))
            .unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (file, all_fit) in [("wide.toml", true), ("narrow.toml", false)] {
        let a = ask(file);
        let prompt = a["prompt"].as_str().unwrap();
        assert!(
            prompt.contains("Which port does the File daemon listen on?"),
            "{a}"
        );
        let chunks = a["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 4, "{a}");
        let given: Vec<bool> = chunks
            .iter()
            .map(|c| c["given"].as_bool().unwrap())
            .collect();
        // the chunks given are a prefix of the ranking, and exactly their texts are in the prompt
        assert!(given.windows(2).all(|w| w[0] || !w[1]), "{given:?}");
        assert_eq!(given.iter().all(|g| *g), all_fit, "{file}: {a}");
        for (c, g) in chunks.iter().zip(&given) {
            let text = index_text(c["id"].as_u64().unwrap());
            assert_eq!(prompt.contains(&text), *g, "{file}: chunk {c} in prompt?");
        }
        // the answer is the raw generation up to the stop, trimmed; 8 tokens at most
        let (answer, raw) = (a["answer"].as_str().unwrap(), a["raw"].as_str().unwrap());
        assert!(raw.trim_start().starts_with(answer), "{a}");
        assert!(a["completion_tokens"].as_u64().unwrap() <= 8, "{a}");
        assert!(a["prompt_tokens"].as_u64().unwrap() + 8 <= if all_fit { 2048 } else { 128 });
    }
    // a model name that is not in the file is an error naming the models
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(f.dir.path())
        .args(["ask", "wide.toml", "--question", "q", "--model", "nope"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--model nope") && stderr.contains("smollm2"),
        "{stderr}"
    );
}

#[test]
fn a_reader_that_closes_stdout_ends_the_command_quietly() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    use std::io::BufRead;
    // far more output than a pipe buffers, so the writer meets the closed pipe
    let dir = tempfile::tempdir().unwrap();
    let text = "The Director daemon supervises all backup operations. ".repeat(40_000);
    std::fs::write(dir.path().join("big.txt"), text).unwrap();
    std::fs::write(dir.path().join("qa.txt"), "Q?\nA.\n").unwrap();
    std::fs::write(
        dir.path().join("exp.toml"),
        format!(
            "name = \"pipe\"\ncorpus = \"big.txt\"\nqa = \"qa.txt\"\nembedding_model = \"{}\"\ngenerate = false\n[grid]\nchunk_size = [40]\nchunk_overlap = [0]\nretriever = [\"bm25\"]\n",
            root().join("models/all-MiniLM-L6-v2").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(dir.path())
        .args(["chunks", "exp.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"id\":0"), "{first}");
    // the reader is gone (as `| head -1`)
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
