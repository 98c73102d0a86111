//! End-to-end: a BEIR-format dataset (tests/fixtures/beir/mini: corpus.jsonl, queries.jsonl,
//! qrels/test.tsv) swept retrieval-only through the real binary with the real embedding model.
//! Checks that every judged query is asked, that the stored metrics are document-level BEIR
//! metrics (recomputed here independently from the stored chunk ids, the chunk table printed by
//! `orchestrate chunks` and the qrels file), and that no answer metric or cosine is stored.
//!
//! Needs the embedding model in models/all-MiniLM-L6-v2 (`orchestrate models fetch`).

use crate::common;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dataset() -> PathBuf {
    root().join("tests/fixtures/beir/mini")
}

fn embedding_model() -> PathBuf {
    root().join("models/all-MiniLM-L6-v2")
}

const TOP_K: usize = 5;

/// The experiment file: the fixture dataset by absolute path, retrieval only, two chunk sizes
/// (200: documents split into several chunks; 1000: every document is one chunk).
fn experiment(dir: &Path) -> PathBuf {
    let text = format!(
        "name = \"beir_mini\"\n\
         corpus = \"{corpus}\"\n\
         qa = \"{qa}\"\n\
         embedding_model = \"{model}\"\n\
         generate = false\n\n\
         [grid]\n\
         chunk_size = [200, 1000]\n\
         chunk_overlap = [0]\n\
         retriever = [\"bm25\", \"dense\"]\n\
         top_k = [{TOP_K}]\n",
        corpus = dataset().join("corpus.jsonl").display(),
        qa = dataset().join("qrels/test.tsv").display(),
        model = embedding_model().display(),
    );
    let path = dir.join("beir.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn orchestrate(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "orchestrate {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// qrels/test.tsv read directly: query id → (document id → grade).
fn qrels() -> BTreeMap<String, BTreeMap<String, i64>> {
    let text = std::fs::read_to_string(dataset().join("qrels/test.tsv")).unwrap();
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        out.entry(f[0].to_string())
            .or_default()
            .insert(f[1].to_string(), f[2].parse().unwrap());
    }
    out
}

/// Independent nDCG@k (trec_eval `ndcg_cut`: gain = grade, discount log2(rank + 1)) of the
/// document ranking given by chunk ids, each document counted at its first chunk.
fn ndcg_at(
    k: usize,
    chunk_ids: &[u32],
    doc_of: &HashMap<u32, String>,
    qrels: &BTreeMap<String, i64>,
) -> f64 {
    let mut seen = HashSet::new();
    let docs: Vec<&String> = chunk_ids
        .iter()
        .map(|c| &doc_of[c])
        .filter(|d| seen.insert(d.as_str()))
        .collect();
    let dcg: f64 = docs
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| {
            qrels.get(d.as_str()).copied().unwrap_or(0).max(0) as f64 / (i as f64 + 2.0).log2()
        })
        .sum();
    let mut ideal: Vec<i64> = qrels.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| g as f64 / (i as f64 + 2.0).log2())
        .sum();
    dcg / idcg
}

/// One stored answer with its cell's chunk size and retriever.
struct Row {
    size: i64,
    retriever: String,
    qid: String,
    question: String,
    expected: String,
    status: String,
    cosine: Option<f64>,
    chunk_ids: Vec<u32>,
    metrics: BTreeMap<String, f64>,
}

#[test]
fn beir_dataset_sweeps_with_document_level_metrics() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path());
    let exp_arg = exp.to_str().unwrap();
    orchestrate(dir.path(), &["run", exp_arg, "--no-progress"]);

    // chunk id → document id, per chunk size, from `orchestrate chunks`
    let mut doc_of: HashMap<i64, HashMap<u32, String>> = HashMap::new();
    let corpus_text = std::fs::read_to_string(dataset().join("corpus.jsonl")).unwrap();
    let corpus_ids: HashSet<String> = corpus_text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for size in [200i64, 1000] {
        let out = orchestrate(
            dir.path(),
            &[
                "chunks",
                exp_arg,
                "--chunk-size",
                &size.to_string(),
                "--chunk-overlap",
                "0",
            ],
        );
        let mut map = HashMap::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let source = v["source"].as_str().unwrap().to_string();
            assert!(
                corpus_ids.contains(&source),
                "chunk source {source} is a document id"
            );
            map.insert(v["id"].as_u64().unwrap() as u32, source);
        }
        let docs: HashSet<&String> = map.values().collect();
        assert_eq!(docs.len(), 30, "every document has chunks");
        if size == 1000 {
            assert_eq!(
                map.len(),
                30,
                "chunk_size 1000 > every document: one chunk each"
            );
        } else {
            assert!(map.len() > 30, "chunk_size 200 splits documents");
        }
        doc_of.insert(size, map);
    }

    let db = rusqlite::Connection::open(dir.path().join("store/beir_mini.sqlite")).unwrap();
    let cells: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM cells WHERE status = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cells, 4);
    let mut stmt = db
        .prepare(
            "SELECT c.chunk_size, c.retriever, a.question_id, a.question, a.expected_answer, a.status,
                    a.cosine, a.chunk_ids, a.metrics
             FROM answers a JOIN cells c ON c.cell_id = a.cell_id",
        )
        .unwrap();
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok(Row {
                size: r.get(0)?,
                retriever: r.get(1)?,
                qid: r.get(2)?,
                question: r.get(3)?,
                expected: r.get(4)?,
                status: r.get(5)?,
                cosine: r.get(6)?,
                chunk_ids: serde_json::from_str(&r.get::<_, String>(7)?).unwrap(),
                metrics: serde_json::from_str(&r.get::<_, String>(8)?).unwrap(),
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let qrels = qrels();
    // 9 judged queries (q10 has no qrels) x 4 cells
    assert_eq!(rows.len(), 9 * 4);
    let asked: HashSet<&str> = rows.iter().map(|r| r.qid.as_str()).collect();
    assert_eq!(asked, qrels.keys().map(String::as_str).collect());
    assert!(!asked.contains("q10"));

    let mut checked = 0;
    let mut bm25_1000_ndcg = Vec::new();
    for r in &rows {
        let (size, retriever, qid, m) = (r.size, &r.retriever, &r.qid, &r.metrics);
        assert_eq!(r.status, "ok", "{qid}");
        assert_eq!(r.expected, "", "BEIR questions have no reference answer");
        assert!(r.cosine.is_none(), "no cosine without a reference answer");
        if qid == "q2" {
            assert_eq!(r.question, "What does the FileSet resource define?");
        }
        assert_eq!(r.chunk_ids.len(), TOP_K);
        let q = &qrels[qid];
        if q.values().all(|&g| g <= 0) {
            // BEIR (pytrec_eval, custom_metrics) scores such a query 0 and averages it in
            assert!(
                m.len() == 4 && m.values().all(|&v| v == 0.0),
                "{qid} has no relevant document: all metrics 0, got {m:?}"
            );
            continue;
        }
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(keys, ["hit@5", "mrr@5", "ndcg@5", "recall@5"], "{qid}");
        let want = ndcg_at(TOP_K, &r.chunk_ids, &doc_of[&size], q);
        assert!(
            (m["ndcg@5"] - want).abs() < 1e-9,
            "{size}/{retriever}/{qid}: stored nDCG@5 {} vs independent {want}",
            m["ndcg@5"]
        );
        checked += 1;
        if size == 1000 && retriever == "bm25" {
            bm25_1000_ndcg.push(m["ndcg@5"]);
        }
    }
    assert_eq!(checked, 8 * 4);

    // One query worked through by hand: with documents as chunks, `q2` ("What does the FileSet
    // resource define?") has one relevant document, bacula-p209 (grade 2), whose text starts with
    // the question's words; BM25 ranks it first, so nDCG@5 = (2/log2 2) / (2/log2 2) = 1.
    let q2 = rows
        .iter()
        .find(|r| r.size == 1000 && r.retriever == "bm25" && r.qid == "q2")
        .unwrap();
    assert_eq!(doc_of[&1000][&q2.chunk_ids[0]], "bacula-p209");
    let m = &q2.metrics;
    assert_eq!(
        (m["ndcg@5"], m["mrr@5"], m["recall@5"], m["hit@5"]),
        (1.0, 1.0, 1.0, 1.0)
    );

    // the retrievers find something on this easy set
    let mean = bm25_1000_ndcg.iter().sum::<f64>() / bm25_1000_ndcg.len() as f64;
    assert!(mean > 0.5, "mean BM25 nDCG@5 {mean}");
}

#[test]
fn beir_experiment_errors_are_clear() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // a copy of the dataset with a broken qrels line
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("qrels")).unwrap();
    for f in ["corpus.jsonl", "queries.jsonl"] {
        std::fs::copy(dataset().join(f), data.join(f)).unwrap();
    }
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\tbacula-p107\t2\nq2\tbacula-p209\ttwo\n",
    )
    .unwrap();
    let text = format!(
        "name = \"bad\"\ncorpus = \"data/corpus.jsonl\"\nqa = \"data/qrels/test.tsv\"\nembedding_model = \"{}\"\ngenerate = false\n\n[grid]\nchunk_size = [1000]\nretriever = [\"bm25\"]\n",
        embedding_model().display()
    );
    std::fs::write(dir.path().join("bad.toml"), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(dir.path())
        .args(["run", "bad.toml", "--no-progress"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("test.tsv:3: score `two` is not an integer"),
        "{err}"
    );

    // a broken corpus line is named by file and line (a corpus problem fails the cell, not the
    // sweep: the message is stored with the cell, and `run` names it and exits non-zero)
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\tbacula-p107\t2\n",
    )
    .unwrap();
    let mut corpus = std::fs::read_to_string(data.join("corpus.jsonl")).unwrap();
    corpus.push_str("{\"_id\": \"bacula-p101\", \"text\": \"duplicate\"}\n");
    std::fs::write(data.join("corpus.jsonl"), corpus).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(dir.path())
        .args(["run", "bad.toml", "--no-progress"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let want = "corpus.jsonl:31: duplicate document `_id` `bacula-p101` (first used on line 1)";
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("1 cells failed") && err.contains(want),
        "{err}"
    );
    let db = rusqlite::Connection::open(dir.path().join("store/bad.sqlite")).unwrap();
    let (status, error): (String, String) = db
        .query_row("SELECT status, error FROM cells", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains(want), "{error}");
}

#[test]
fn beir_questions_with_generation_store_answers_without_answer_metrics_or_cosine() {
    if !common::models_present(&[common::EMBEDDING_WEIGHTS, common::SMOLLM2]) {
        return;
    }
    let gguf = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "name = \"beir_gen\"\ncorpus = \"{}\"\nqa = \"{}\"\nembedding_model = \"{}\"\nlimit_questions = 3\n\n\
         [[model]]\nname = \"smollm2\"\ngguf = \"{}\"\nprompt = \"chat\"\nmax_tokens = 16\nn_ctx = 2048\nthreads = 1\n\n\
         [grid]\nchunk_size = [1000]\nchunk_overlap = [0]\nretriever = [\"bm25\"]\ntop_k = [3]\n",
        dataset().join("corpus.jsonl").display(),
        dataset().join("qrels/test.tsv").display(),
        embedding_model().display(),
        gguf.display(),
    );
    std::fs::write(dir.path().join("gen.toml"), text).unwrap();
    orchestrate(dir.path(), &["run", "gen.toml", "--no-progress"]);
    let db = rusqlite::Connection::open(dir.path().join("store/beir_gen.sqlite")).unwrap();
    let mut stmt = db
        .prepare(
            "SELECT question_id, status, answer, cosine, metrics FROM answers ORDER BY question_id",
        )
        .unwrap();
    let rows: Vec<(String, String, String, Option<f64>, String)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // the first three questions in qrels order
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["q1", "q2", "q3"]);
    for (qid, status, answer, cosine, metrics) in &rows {
        assert_eq!(status, "ok", "{qid}");
        assert!(!answer.trim().is_empty(), "{qid}: the model answered");
        assert!(
            cosine.is_none(),
            "{qid}: no cosine against an empty reference"
        );
        let m: BTreeMap<String, f64> = serde_json::from_str(metrics).unwrap();
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["hit@3", "mrr@3", "ndcg@3", "recall@3"],
            "{qid}: retrieval metrics only"
        );
    }
    assert!(dir.path().join("reports/beir_gen.html").exists());
}
