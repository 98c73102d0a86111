//! The local judge (issue 11) on real models: every judge call decodes under its grammar, so even
//! the weakest model we ship (SmolLM2-135M, which cannot write reliable JSON unaided) returns
//! output of exactly the expected shape for every step of every metric, and `orchestrate judge`
//! stores one judgment per answer × metric, then asks nothing on a second pass.

use crate::common;

use orchestrate::generate::{GenParams, Generator, GrammarSearch, PromptStyle, StopReason};
use orchestrate::judge::grammar::{Parsed, Shape};
use orchestrate::judge::steps::{self, SYSTEM};
use orchestrate::qa::load_questions;

fn smollm2(max_tokens: u32) -> Option<Generator> {
    if !common::models_present(&[common::SMOLLM2]) {
        return None;
    }
    let params = GenParams {
        n_ctx: 4096,
        max_tokens,
        threads: 2,
        prompt: PromptStyle::Chat,
        ..GenParams::default()
    };
    Some(Generator::load(&common::manifest_path(common::SMOLLM2), params).expect("load SmolLM2"))
}

#[test]
fn every_judge_step_parses_on_a_small_real_model() {
    let Some(mut g) = smollm2(1024) else { return };
    let qa = load_questions(&common::manifest_path("corpora/bacula/qa.toml")).unwrap();
    let contexts = [
        "The Director daemon listens on port 9101 (DIRport). The File daemon uses 9102.",
        "Bacula is released under the GNU Affero General Public License version 3.",
        "A bootstrap file tells the Storage daemon which volumes to read.",
    ];
    let statements = vec![
        "The Director listens on port 9101.".to_string(),
        "Bacula is written in Java.".to_string(),
        "The File daemon uses port 9102.".to_string(),
    ];
    for q in qa.iter().take(2) {
        let calls = [
            steps::ragas_statements(&q.question, &q.expected_answer),
            steps::ragas_nli(&contexts, &statements),
            steps::ragas_question(&q.expected_answer),
            steps::ragas_chunk_useful(&q.question, &q.expected_answer, contexts[0]),
            steps::ragas_recall(&q.question, &q.expected_answer, &contexts),
            steps::deepeval_truths(&contexts),
            steps::deepeval_claims(&q.expected_answer),
            steps::deepeval_faithfulness(&statements[..1], &statements),
            steps::deepeval_statements(&q.expected_answer),
            steps::deepeval_relevancy(&q.question, &statements),
            steps::deepeval_precision(&q.question, &q.expected_answer, &contexts),
            steps::deepeval_recall(&q.expected_answer, &contexts),
            steps::correctness(&q.question, &q.expected_answer, "I don't know."),
        ];
        for call in calls {
            let out = g
                .chat_constrained(SYSTEM, &call.user, &call.shape.grammar())
                .unwrap_or_else(|e| panic!("{}: {e}", call.step.name()));
            assert_eq!(
                out.stopped_by,
                StopReason::Eos,
                "{} did not finish within max_tokens: {}",
                call.step.name(),
                out.text
            );
            // checking the argmax first picks exactly the tokens full masking picks
            let masked = g
                .chat_constrained_with(
                    SYSTEM,
                    &call.user,
                    &call.shape.grammar(),
                    GrammarSearch::MaskAll,
                )
                .unwrap_or_else(|e| panic!("{}: {e}", call.step.name()));
            assert_eq!(out.text, masked.text, "{}", call.step.name());
            let parsed = call
                .shape
                .parse(&out.text)
                .unwrap_or_else(|e| panic!("{}: {e}", call.step.name()));
            if let Shape::Verdicts { n, .. } = call.shape {
                let Parsed::Verdicts(v) = &parsed else {
                    panic!("{parsed:?}")
                };
                assert_eq!(v.len(), n, "{}: one verdict per item", call.step.name());
            }
        }
    }
}

#[test]
fn judge_command_judges_stored_answers_once() {
    if !common::models_present(&[common::SMOLLM2, common::EMBEDDING_WEIGHTS]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = common::manifest_path("");
    let exp = dir.path().join("j.toml");
    std::fs::write(
        dir.path().join("corpus.txt"),
        "Bacula is a set of computer programs that manage backup, recovery and verification of \
         data across a network of computers.\n\nBacula is free software under the GNU Affero \
         General Public License version 3.\n\nBacula consists of the Director, the Console, \
         the File daemon, the Storage daemon and the Catalog.\n\nThe Director listens on port \
         9101.\n",
    )
    .unwrap();
    std::fs::write(
        &exp,
        format!(
            r#"name = "judged"
corpus = ["corpus.txt"]
qa = "{root}/corpora/bacula/qa.toml"
embedding_model = "{root}/models/all-MiniLM-L6-v2"
limit_questions = 3

[[model]]
name = "smollm2"
gguf = "{root}/{smol}"
prompt = "chat"
max_tokens = 24
threads = 2

[grid]
chunk_size = [300]
chunk_overlap = [0]
retriever = ["bm25"]
top_k = [2]

[judge]
gguf = "{root}/{smol}"
threads = 2
profiles = ["ragas", "deepeval"]
metrics = ["correctness", "context_precision"]
"#,
            root = root.display(),
            smol = common::SMOLLM2
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_orchestrate");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["run", "j.toml", "--no-progress"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // while another judge holds the results, a second one stops at once and says why
    {
        use std::os::fd::AsRawFd;
        let held =
            std::fs::File::create(dir.path().join("store/judged.sqlite.judge.lock")).unwrap();
        // SAFETY: flock on a descriptor this test owns; released when `held` closes
        assert_eq!(
            unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        let busy = run(&["judge", "j.toml"]);
        let err = String::from_utf8_lossy(&busy.stderr);
        assert!(
            !busy.status.success() && err.contains("another `orchestrate judge`"),
            "{err}"
        );
    }
    let out = run(&["judge", "j.toml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 answers x 2 metrics x 2 profiles, every one with a value (grammar: nothing unparsed).
    assert!(
        text.contains("12 judgments (12 new: 12 with a value, 0 undefined, 0 failed"),
        "{text}"
    );
    let again = run(&["judge", "j.toml"]);
    let text = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(
        text.contains("0 new") && text.contains("judge model: 0 calls"),
        "{text}"
    );
    // A judge stopped part-way: the report says so at the top and counts what is not judged
    // yet per cell and metric; the next `judge` makes exactly those (from its call cache).
    let db = rusqlite::Connection::open(dir.path().join("store/judged.sqlite")).unwrap();
    let q: String = db
        .query_row("SELECT MIN(question_id) FROM judgments", [], |r| r.get(0))
        .unwrap();
    let gone = db
        .execute("DELETE FROM judgments WHERE question_id = ?1", [&q])
        .unwrap();
    assert_eq!(gone, 4, "one answer x 2 metrics x 2 profiles");
    let report = |name: &str| {
        let out = run(&["report", "j.toml", "-o", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(dir.path().join(name)).unwrap()
    };
    let html = report("partial.html");
    let warn = html
        .split(r#"id="judge-incomplete""#)
        .nth(1)
        .expect("judging incomplete");
    assert!(warn.contains("1 of 3 answers are not yet judged"), "{warn}");
    let missing = html.split(r#"id="judge-missing""#).nth(1).unwrap();
    assert!(missing.contains("4 were not made yet"), "{missing}");
    // so do the terminal tables ranked on a judge metric, and only those
    let partly = |args: &[&str]| String::from_utf8_lossy(&run(args).stdout).to_string();
    for cmd in ["summary", "compare"] {
        let text = partly(&[cmd, "j.toml", "--metric", "correctness_ragas"]);
        assert!(
            text.contains("judging incomplete: 1 of 3 answers"),
            "{cmd}: {text}"
        );
        let text = partly(&[cmd, "j.toml", "--metric", "cosine"]);
        assert!(!text.contains("judging incomplete"), "{cmd}: {text}");
    }
    // and the export: the unjudged answer's row names its 4 pending judgments, the others none,
    // and stderr says the exported judge metrics cover the judged answers only
    let out = run(&["export", "j.toml", "--format", "jsonl"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("judging incomplete: 1 of 3 answers"));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for row in &rows {
        let missing = row["judge_missing"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if row["question_id"] == q.as_str() {
            assert_eq!(missing.len(), 4, "{row}");
            assert!(missing.values().all(|v| v == "not judged yet"), "{row}");
        } else {
            assert!(missing.is_empty(), "{row}");
        }
    }
    let out = run(&["judge", "j.toml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("4 new") && text.contains("judge model: 0 calls"),
        "{text}"
    );
    let html = report("complete.html");
    assert!(!html.contains("judge-incomplete") && !html.contains("judge-missing"));
    let text = partly(&["summary", "j.toml", "--metric", "correctness_ragas"]);
    assert!(!text.contains("judging incomplete"), "{text}");
    // A base model (no chat template) cannot judge: one clear error before any judgment.
    let gemma = common::manifest_path("models/gemma-3-270m-q4_k_m.gguf");
    if common::required_file(&gemma, common::MODELS_HINT).is_some() {
        let out = run(&[
            "judge",
            "j.toml",
            "--gguf",
            gemma.to_str().unwrap(),
            "--metric",
            "faithfulness",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("has no chat template"),
            "{err}"
        );
    }
    // The values join the answers' metrics: the export has them as columns.
    let csv = run(&["export", "j.toml", "--format", "csv"]);
    assert!(!String::from_utf8_lossy(&csv.stderr).contains("judging incomplete"));
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    let header = csv.lines().next().unwrap_or("");
    for col in [
        "correctness_ragas",
        "correctness_deepeval",
        "context_precision_ragas",
        "context_precision_deepeval",
    ] {
        assert!(header.contains(col), "{col} missing from {header}");
    }
}

#[test]
fn a_missing_judge_model_stops_run_before_the_sweep() {
    if !common::models_present(&[common::SMOLLM2, common::EMBEDDING_WEIGHTS]) {
        return;
    }
    let dir = one_line_experiment(
        "nojudge",
        r#"
[[model]]
name = "smollm2"
gguf = "{root}/{smol}"

[judge]
gguf = "missing-judge.gguf"
after_run = true

[grid]
chunk_size = [300]
chunk_overlap = [0]
retriever = ["bm25"]
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .args(["run", "j.toml", "--no-progress"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("j.toml")
            && err.contains("missing-judge.gguf is not there")
            && err.contains("check `gguf` in the experiment's [judge] table"),
        "{err}"
    );
    assert!(!dir.path().join("store/nojudge.sqlite").exists());
}

#[test]
fn run_with_judge_on_while_another_judge_runs_reports_instead_of_failing() {
    if !common::models_present(&[common::SMOLLM2, common::EMBEDDING_WEIGHTS]) {
        return;
    }
    let dir = one_line_experiment(
        "busy",
        r#"limit_questions = 2

[[model]]
name = "smollm2"
gguf = "{root}/{smol}"
prompt = "chat"
max_tokens = 16
threads = 2

[judge]
gguf = "{root}/{smol}"
after_run = true

[grid]
chunk_size = [300]
chunk_overlap = [0]
retriever = ["bm25"]
"#,
    );
    // a judge started by hand holds these results
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let held = std::fs::File::create(dir.path().join("store/busy.sqlite.judge.lock")).unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this test owns; released when `held` closes
        assert_eq!(
            unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .args(["run", "j.toml", "--no-progress"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("not judging: another `orchestrate judge`"),
        "{err}"
    );
    assert!(dir.path().join("reports/busy.html").exists(), "{err}");
    drop(held);
}

/// A temporary directory with a one-line corpus (`corpus.txt`) and the experiment `j.toml`
/// named `name` over it and the Bacula QA file: `rest` follows the header, with `{root}` and
/// `{smol}` standing for the repository root and the SmolLM2 GGUF.
fn one_line_experiment(name: &str, rest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = common::manifest_path("");
    std::fs::write(
        dir.path().join("corpus.txt"),
        "The Director listens on port 9101.\n",
    )
    .unwrap();
    let toml = format!(
        "name = \"{name}\"\ncorpus = [\"corpus.txt\"]\nqa = \"{{root}}/corpora/bacula/qa.toml\"\n\
         embedding_model = \"{{root}}/models/all-MiniLM-L6-v2\"\n{rest}"
    )
    .replace("{root}", &root.display().to_string())
    .replace("{smol}", common::SMOLLM2);
    std::fs::write(dir.path().join("j.toml"), toml).unwrap();
    dir
}
