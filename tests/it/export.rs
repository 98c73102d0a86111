//! `orchestrate export --format parquet` end to end: a retrieval-only sweep with the tiny test
//! embedding model ([`common::tiny_embedding_model`], seconds), exported as CSV and as Parquet,
//! per answer and per cell; the Parquet files read back with polars hold the CSV's rows, typed,
//! and the per-cell intervals stay in their metric's range.

use std::path::Path;
use std::process::{Command, Output};

use polars::prelude::{AnyValue, DataFrame, DataType};
use polars_io::SerReader;

use crate::common;

const WORDS: &[&str] = &[
    "the", "director", "daemon", "storage", "file", "writes", "backup", "data", "to", "tapes",
    "listens", "on", "port", "catalog", "is", "a", "database", "what", "does", "do", "which",
];

/// A retrieval-only experiment with `n` questions, some with evidence, one whose text starts
/// with `=` (a spreadsheet formula in the CSV unless escaped).
fn experiment(dir: &Path, n: usize) {
    common::tiny_embedding_model(&dir.join("emb"), WORDS);
    let corpus = "The Director daemon supervises backup jobs.\n\n\
                  The Storage daemon writes backup data to tapes.\n\n\
                  The File daemon listens on port 9102.\n\n\
                  The Catalog is a database.\n";
    std::fs::write(dir.join("corpus.txt"), corpus).unwrap();
    let mut qa = String::new();
    for i in 0..n {
        let text = if i == 0 {
            "=1+1 what does the File daemon do?".to_string()
        } else {
            format!("What does the daemon {i} do?")
        };
        let evidence = match i % 3 {
            0 => "evidence = \"listens on port 9102\"\n",
            1 => "evidence = \"writes backup data to tapes\"\n",
            _ => "",
        };
        qa.push_str(&format!(
            "[[question]]\nid = \"q{i}\"\nquestion = \"{text}\"\nexpected_answer = \"-{i}\"\n{evidence}\n"
        ));
    }
    std::fs::write(dir.join("qa.toml"), qa).unwrap();
    std::fs::write(
        dir.join("exp.toml"),
        "name = \"exp\"\ncorpus = \"corpus.txt\"\nqa = \"qa.toml\"\nembedding_model = \"emb\"\n\
         generate = false\n\n[grid]\nchunk_size = [60, 150]\nchunk_overlap = [0]\n\
         retriever = [\"bm25\", \"dense\"]\ntop_k = [2]\n",
    )
    .unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrate"))
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn read_parquet(bytes: Vec<u8>) -> DataFrame {
    polars_io::prelude::ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .expect("a readable Parquet file")
}

/// A Parquet value in the CSV's text form (`null` empty, lists space-separated), and whether it
/// is text (the CSV escapes text that a spreadsheet would run as a formula).
fn render(v: AnyValue<'_>) -> (String, bool) {
    match v {
        AnyValue::Null => (String::new(), false),
        AnyValue::String(s) => (s.to_string(), true),
        AnyValue::StringOwned(s) => (s.to_string(), true),
        AnyValue::Float64(x) => (x.to_string(), false),
        AnyValue::Int64(x) => (x.to_string(), false),
        AnyValue::UInt64(x) => (x.to_string(), false),
        AnyValue::UInt32(x) => (x.to_string(), false),
        AnyValue::List(s) => (
            s.u32()
                .expect("u32 list")
                .iter()
                .map(|x| x.expect("no null ids").to_string())
                .collect::<Vec<_>>()
                .join(" "),
            false,
        ),
        other => panic!("unexpected Parquet value {other:?}"),
    }
}

/// OWASP's CSV-injection rule as the export documents it.
fn escaped(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// Asserts that `df` has exactly the header and rows of `csv_text`, value by value (numbers
/// compared as numbers, text after the CSV's escaping).
fn assert_same_rows(df: &DataFrame, csv_text: &str) {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, header);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(df.height(), rows.len());
    assert!(!rows.is_empty());
    for (i, row) in rows.iter().enumerate() {
        for (j, name) in header.iter().enumerate() {
            let (got, text) = render(df.column(name).unwrap().get(i).unwrap());
            let want = &row[j];
            if text {
                assert_eq!(escaped(&got), want, "row {i} column {name}");
            } else if let (Ok(g), Ok(w)) = (got.parse::<f64>(), want.parse::<f64>()) {
                assert_eq!(g, w, "row {i} column {name}");
            } else {
                assert_eq!(&got, want, "row {i} column {name}");
            }
        }
    }
}

#[test]
fn parquet_export_reads_back_with_the_csv_rows() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    experiment(dir, 12);
    ok(dir, &["run", "exp.toml", "--no-progress"]);

    // per answer: --output FILE and a redirected stdout give the same table
    let csv = String::from_utf8(ok(dir, &["export", "exp.toml"])).unwrap();
    ok(
        dir,
        &[
            "export",
            "exp.toml",
            "--format",
            "parquet",
            "-o",
            "out/a.parquet",
        ],
    );
    let answers = read_parquet(std::fs::read(dir.join("out/a.parquet")).unwrap());
    assert_eq!(answers.height(), 4 * 12);
    assert_same_rows(&answers, &csv);
    let piped = read_parquet(ok(dir, &["export", "exp.toml", "--format", "parquet"]));
    assert!(piped.equals_missing(&answers));
    // -o never overwrites a file on its way (no shared `<stem>.tmp`), nor the inputs
    std::fs::write(dir.join("out/a.tmp"), "my notes").unwrap();
    ok(dir, &["export", "exp.toml", "-o", "out/a.csv"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("out/a.tmp")).unwrap(),
        "my notes"
    );
    let leftovers = std::fs::read_dir(dir.join("out")).unwrap().count();
    assert_eq!(leftovers, 3, "a.parquet, a.tmp, a.csv");
    for target in ["store/exp.sqlite", "exp.toml"] {
        let before = std::fs::read(dir.join(target)).unwrap();
        let out = run(dir, &["export", "exp.toml", "-o", target]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("these results come from"),
            "{err}"
        );
        let after = std::fs::read(dir.join(target)).unwrap();
        // the database may checkpoint its WAL on close: still a database, not a CSV
        assert_eq!(after[..16], before[..16], "{target}");
    }
    let dtype = |n: &str| answers.column(n).unwrap().dtype().clone();
    assert_eq!(dtype("chunk_size"), DataType::Int64);
    assert_eq!(dtype("repeat"), DataType::UInt32);
    assert_eq!(dtype("hit@2"), DataType::Float64);
    assert_eq!(dtype("ndcg@2"), DataType::Float64);
    assert_eq!(dtype("pages"), DataType::List(Box::new(DataType::UInt32)));
    // the CSV escapes the formula; Parquet keeps the text as stored
    assert!(csv.contains(",'=1+1 what does"), "{csv}");
    let questions = answers.column("question").unwrap().str().unwrap();
    assert!(questions
        .iter()
        .any(|q| q == Some("=1+1 what does the File daemon do?")));
    // a question without evidence has no retrieval metric: null, not 0
    assert!(answers.column("hit@2").unwrap().null_count() > 0);

    // per cell
    let csv = String::from_utf8(ok(dir, &["export", "exp.toml", "--per", "cell"])).unwrap();
    ok(
        dir,
        &[
            "export",
            "exp.toml",
            "--per",
            "cell",
            "--format",
            "parquet",
            "--output",
            "c.parquet",
        ],
    );
    let cells = read_parquet(std::fs::read(dir.join("c.parquet")).unwrap());
    assert_eq!(cells.height(), 4);
    assert_same_rows(&cells, &csv);
    let methods = cells.column("hit@2_ci_method").unwrap().str().unwrap();
    assert!(methods.iter().all(|m| m == Some("wilson")));
    for m in ["hit@2", "recall@2", "mrr@2", "ndcg@2"] {
        let lo = cells.column(&format!("{m}_ci_low")).unwrap().f64().unwrap();
        let hi = cells
            .column(&format!("{m}_ci_high"))
            .unwrap()
            .f64()
            .unwrap();
        let mean = cells.column(&format!("{m}_mean")).unwrap().f64().unwrap();
        for i in 0..cells.height() {
            let (lo, hi, mean) = (lo.get(i).unwrap(), hi.get(i).unwrap(), mean.get(i).unwrap());
            assert!(
                (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi),
                "{m}: [{lo}, {hi}]"
            );
            assert!(lo <= mean && mean <= hi, "{m}: {mean} in [{lo}, {hi}]");
        }
    }
    assert_eq!(
        cells
            .column("ndcg@2_ci_method")
            .unwrap()
            .str()
            .unwrap()
            .get(0),
        Some("t_clipped")
    );

    // Parquet is never written to a terminal (util-linux `script` gives the command one)
    if Path::new("/usr/bin/script").is_file() {
        let cmd = format!(
            "{} export exp.toml --format parquet",
            env!("CARGO_BIN_EXE_orchestrate")
        );
        let out = Command::new("/usr/bin/script")
            .current_dir(dir)
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("--output FILE.parquet"), "{text}");
        assert!(!text.contains("PAR1"), "{text}");
    }

    // a reader that left (`| head -c 4` closing early) ends the export quietly, as for CSV
    for format in ["parquet", "csv"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrate"))
            .current_dir(dir)
            .args(["export", "exp.toml", "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // closed before the export writes a byte
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {stderr}");
        assert!(
            !stderr.contains("error") && !stderr.contains("panicked"),
            "{format}: {stderr}"
        );
    }
}

#[test]
fn reading_commands_take_the_results_database_itself() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    experiment(dir, 6);
    ok(dir, &["run", "exp.toml", "--no-progress"]);
    let csv = ok(dir, &["export", "exp.toml"]);
    // the database alone, from elsewhere, with the experiment's inputs gone
    let elsewhere = tempfile::tempdir().unwrap();
    for f in ["exp.toml", "qa.toml", "corpus.txt"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let db = dir.join("store/exp.sqlite");
    let db = db.to_str().unwrap();
    assert_eq!(ok(elsewhere.path(), &["export", db]), csv);
    let compare = String::from_utf8(ok(elsewhere.path(), &["compare", db])).unwrap();
    assert!(compare.contains("4 cells"), "{compare}");
    ok(elsewhere.path(), &["report", db, "-o", "r.html"]);
    let html = std::fs::read_to_string(elsewhere.path().join("r.html")).unwrap();
    assert!(html.contains("<h1>exp</h1>"), "report names the experiment");
    // a renamed copy still names the experiment it holds (the output default follows the file)
    let copy = elsewhere.path().join("last-week.sqlite");
    std::fs::copy(db, &copy).unwrap();
    ok(elsewhere.path(), &["report", copy.to_str().unwrap()]);
    let html = std::fs::read_to_string(elsewhere.path().join("reports/last-week.html")).unwrap();
    assert!(html.contains("<h1>exp</h1>"), "the stored experiment name");
    // --grid needs the experiment file; commands that need it say a database is not one
    let grid = run(elsewhere.path(), &["export", db, "--grid"]);
    assert!(!grid.status.success());
    assert!(String::from_utf8_lossy(&grid.stderr).contains("--grid needs the experiment file"));
    let plan = run(elsewhere.path(), &["plan", db]);
    assert!(!plan.status.success());
    let err = String::from_utf8_lossy(&plan.stderr);
    assert!(
        err.contains("is a results database, not an experiment file"),
        "{err}"
    );
}
