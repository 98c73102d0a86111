//! Retrieval benchmark: `cargo bench --bench retrieval` (figures go to BENCHMARKS.md).
//!
//! On the bundled Bacula manual, with the indexes of `experiments/bacula_retrieval.toml` (built
//! into `store/indexes` first if missing — about 6 minutes on 2 cores, timed and printed):
//!
//! 1. dense recall of arroy against exact search at every chunk size: recall@4 and recall@10 of
//!    the approximate top-k over 39 questions plus 200 chunk texts used as queries, and the
//!    per-query latency of both;
//! 2. the wall time of the retrieval-only sweep itself (`orchestrate run
//!    experiments/bacula_retrieval.toml`, 30 cells × 39 questions, worker subprocesses included) on
//!    a fresh result database with the indexes cached, median of 3 runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use orchestrate::experiment::Experiment;
use orchestrate::index::ExperimentIndexes;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn row(stage: &str, what: &str, figure: String) {
    println!("| {stage} | {what} | {figure} |");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exp_path = root().join("experiments/bacula_retrieval.toml");
    let exp = Experiment::load(&exp_path)?;
    let store = root().join("store");
    let questions = exp.questions()?;
    let mut sizes: Vec<(usize, usize)> = exp
        .cells
        .iter()
        .map(|c| (c.retrieval.chunk_size, c.retrieval.chunk_overlap))
        .collect();
    sizes.dedup();
    println!("| stage | measure | figure |\n|---|---|---|");

    let mut indexes = ExperimentIndexes::new(&exp.corpus, &exp.embedding_model, &store);
    for &(size, overlap) in &sizes {
        let (index, info) = indexes.open(size, overlap)?;
        if !info.cache_hit {
            row(
                "index",
                &format!("build chunk {size}/{overlap}"),
                format!("{} chunks in {:.0} s", info.n_chunks, info.build_seconds),
            );
        }
        let embedder = indexes.embedder()?;
        let mut queries: Vec<Vec<f32>> = questions
            .iter()
            .map(|q| embedder.embed_one(&q.question))
            .collect::<Result<_, _>>()?;
        let step = (index.len() / 200).max(1);
        for id in (0..index.len()).step_by(step).take(200) {
            if let Some(v) = index.vector(id as u32) {
                queries.push(v);
            }
        }
        for k in [4usize, 10] {
            let (mut found, mut total) = (0usize, 0usize);
            let (mut t_approx, mut t_exact) = (0.0f64, 0.0f64);
            for q in &queries {
                let t = Instant::now();
                let approx = index.dense_search(q, k)?;
                t_approx += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let exact = index.dense_search_exact(q, k)?;
                t_exact += t.elapsed().as_secs_f64();
                total += exact.len();
                found += exact
                    .iter()
                    .filter(|(id, _)| approx.iter().any(|(a, _)| a == id))
                    .count();
            }
            let n = queries.len() as f64;
            row(
                "dense recall",
                &format!(
                    "chunk {size}/{overlap} ({} chunks), recall@{k}, {} queries",
                    index.len(),
                    queries.len()
                ),
                format!(
                    "{:.4}; arroy {:.2} ms/query, exact {:.2} ms/query",
                    found as f64 / total.max(1) as f64,
                    1e3 * t_approx / n,
                    1e3 * t_exact / n
                ),
            );
        }
    }

    let exe = env!("CARGO_BIN_EXE_orchestrate");
    let mut walls = Vec::new();
    for _ in 0..3 {
        let tmp = tempfile::tempdir()?;
        std::os::unix::fs::symlink(store.join("indexes"), tmp.path().join("indexes"))?;
        let t = Instant::now();
        let out = Command::new(exe)
            .arg("run")
            .arg(&exp_path)
            .arg("--store")
            .arg(tmp.path())
            .arg("--reports")
            .arg(tmp.path().join("reports"))
            .arg("--no-progress")
            .current_dir(root())
            .output()?;
        walls.push(t.elapsed().as_secs_f64());
        if !out.status.success() {
            return Err(format!("sweep failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        check_rows(
            &tmp.path().join("bacula_retrieval.sqlite"),
            exp.cells.len() * questions.len(),
        )?;
    }
    walls.sort_by(f64::total_cmp);
    row(
        "sweep",
        &format!(
            "retrieval-only, {} cells × {} questions, indexes cached, fresh database (median of 3)",
            exp.cells.len(),
            questions.len()
        ),
        format!(
            "{:.1} s (runs: {})",
            walls[1],
            walls
                .iter()
                .map(|w| format!("{w:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(())
}

/// Checks that the sweep stored every answer with retrieval metrics.
fn check_rows(db: &Path, expected: usize) -> Result<(), Box<dyn std::error::Error>> {
    let conn = rusqlite::Connection::open(db)?;
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM answers WHERE status = 'ok' AND metrics LIKE '%ndcg@4%'",
        [],
        |r| r.get(0),
    )?;
    if n as usize != expected {
        return Err(format!("{n} answers with metrics, expected {expected}").into());
    }
    Ok(())
}
