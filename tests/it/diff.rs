//! `orchestrate diff` end to end with the real binary: a one-cell sweep with SmolLM2 and the
//! real embedding model, the same sweep run again into another store (a rerun: same cell, same
//! answers), and a run that makes the model deliberately worse (`max_tokens = 2`) into the first
//! store (a second run of one database, new cell id, paired by axes). `diff` must report the
//! cosine difference with its CI, and `--fail-on-regression cosine` must exit 1 on the worse run
//! and 0 on the rerun; a gate on an unknown metric exits 2 and lists the available ones.

use crate::common;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{SMALL_CORPUS as CORPUS, SMALL_QUESTIONS as QUESTIONS};

/// Writes the inputs and `exp.toml` (SmolLM2 answering with at most `max_tokens` tokens) into
/// `dir`.
fn write_experiment(dir: &Path, max_tokens: u32) {
    std::fs::write(dir.join("corpus.txt"), CORPUS).unwrap();
    let mut qa = String::new();
    for (id, q, a) in QUESTIONS {
        qa.push_str(&format!(
            "[[question]]\nid = \"{id}\"\nquestion = \"{q}\"\nexpected_answer = \"{a}\"\n\n"
        ));
    }
    std::fs::write(dir.join("qa.toml"), qa).unwrap();
    let text = format!(
        "name = \"difftest\"\ncorpus = \"corpus.txt\"\nqa = \"qa.toml\"\nembedding_model = \"{}\"\n\
         repeats = 2\n\n[[model]]\nname = \"smollm2\"\ngguf = \"{}\"\nprompt = \"chat\"\n\
         max_tokens = {max_tokens}\nn_ctx = 1024\nthreads = 1\n\n[grid]\nchunk_size = [200]\n\
         retriever = [\"dense\"]\n",
        common::manifest_path("models/all-MiniLM-L6-v2").display(),
        common::manifest_path(common::SMOLLM2).display()
    );
    std::fs::write(dir.join("exp.toml"), text).unwrap();
}

fn orchestrate(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orchestrate"));
    c.current_dir(dir).args(args).env("RUST_LOG", "warn");
    c
}

fn check_run(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn diff_reports_a_worse_model_and_gates_on_it_but_passes_a_rerun() {
    if !common::models_present(&[common::SMOLLM2, common::EMBEDDING_WEIGHTS]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_experiment(dir, 24);
    let run = ["run", "exp.toml", "--no-progress"];
    // the baseline and its rerun into another store, side by side
    let baseline = orchestrate(dir, &run)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rerun = orchestrate(
        dir,
        &[&run[..], &["--store", "store2", "--reports", "reports2"]].concat(),
    )
    .output()
    .unwrap();
    check_run(baseline.wait_with_output().unwrap(), "baseline run");
    check_run(rerun, "rerun");
    // a deliberately worse model: two tokens per answer, run 2 of the first store
    write_experiment(dir, 2);
    check_run(orchestrate(dir, &run).output().unwrap(), "worse run");

    let html = dir.join("out/diff.html");
    let out = orchestrate(
        dir,
        &[
            "diff",
            "store/difftest.sqlite@1",
            "store/difftest.sqlite@2",
            "--fail-on-regression",
            "cosine",
            "--html",
            html.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("run 1, 1 cells, 10 answers") && stdout.contains("run 2, 1 cells"),
        "{stdout}"
    );
    assert!(
        stdout.contains("same axes, changed: model.params.max_tokens: 24 → 2"),
        "{stdout}"
    );
    assert!(stdout.contains("cosine (higher is better)"), "{stdout}");
    assert!(stdout.contains("95% CI"), "{stdout}");
    let cosine_row = stdout
        .lines()
        .skip_while(|l| !l.starts_with("cosine"))
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert!(cosine_row.contains("✗ regression"), "{stdout}");
    // the interval of B − A: two signed numbers in brackets, both below 0
    let ci = cosine_row
        .split('[')
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_default();
    let bounds: Vec<f64> = ci.split(',').map(|v| v.trim().parse().unwrap()).collect();
    assert!(bounds[0] < bounds[1] && bounds[1] < 0.0, "{cosine_row}");
    assert!(
        stderr.contains("regression gate failed (cosine): 1 cells got significantly worse")
            && stderr.contains("cosine: smollm2 · dense chunk 200/40 k=4 worse by"),
        "{stderr}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("✗ regression"));
    assert!(!page.contains("http://") && !page.contains("https://"));

    // a generous threshold tolerates the worsening
    let out = orchestrate(
        dir,
        &[
            "diff",
            "store/difftest.sqlite@1",
            "store/difftest.sqlite@last",
            "--fail-on-regression",
            "cosine:0.9",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));

    // the rerun: same cell id, identical answers, the gate passes
    let out = orchestrate(
        dir,
        &[
            "diff",
            "store/difftest.sqlite@1",
            "store2/difftest.sqlite",
            "--fail-on-regression",
            "cosine",
        ],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("same cell id"), "{stdout}");
    assert!(stdout.contains("≈ no significant change"), "{stdout}");
    assert!(
        stderr.contains("regression gate passed (cosine)"),
        "{stderr}"
    );

    // an unknown metric: exit 2 before comparing, with the metrics to choose from
    let out = orchestrate(
        dir,
        &[
            "diff",
            "store/difftest.sqlite@1",
            "store2/difftest.sqlite",
            "--fail-on-regression",
            "cosin",
        ],
    )
    .output()
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(
            "--fail-on-regression cosin: no such metric in both A and B; available: cosine,"
        ),
        "{stderr}"
    );
    // a run that does not exist
    let out = orchestrate(dir, &["diff", "store/difftest.sqlite@9", "exp.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("has no run 9; its runs are: 1, 2"),
        "{:?}",
        text(&out)
    );
}
