//! Helpers shared by the integration test modules (`use crate::common;`).
// Each module uses only some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Environment variable that turns a missing model or corpus file from a test failure into a
/// skip (with a notice on stderr). Only the exact value `1` counts.
pub const ALLOW_MISSING_ENV: &str = "ORCHESTRATE_ALLOW_MISSING_MODELS";

/// What to do about a missing model file.
pub const MODELS_HINT: &str = "run `orchestrate models fetch` or ./scripts/test.sh";

/// What to do about a missing corpus file (the corpora are committed to the repository).
pub const CORPUS_HINT: &str = "it is part of the repository: restore it with `git checkout`";

/// Path of `rel` inside the crate root.
pub fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `Some(path)` when `path` is an existing file. Otherwise the test FAILS with a message naming
/// the file and `hint` (how to get it, e.g. [`MODELS_HINT`]), unless
/// [`ALLOW_MISSING_ENV`]`=1` is set, in which case a `SKIP` notice is printed and `None` is
/// returned so the caller can return early.
///
/// Panics (fails the test) when the file is missing and skipping is not allowed.
pub fn required_file(path: &Path, hint: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    let allow = std::env::var(ALLOW_MISSING_ENV).is_ok_and(|v| v == "1");
    if allow {
        eprintln!(
            "SKIP: {} not found ({ALLOW_MISSING_ENV}=1 is set)",
            path.display()
        );
        None
    } else {
        panic!(
            "{} is missing: {hint} (or set {ALLOW_MISSING_ENV}=1 to skip the tests that need \
             it)",
            path.display()
        );
    }
}

/// Whether every file in `files` (paths relative to the crate root) is present; a missing one
/// fails the test unless [`ALLOW_MISSING_ENV`]`=1`, when the caller skips (see
/// [`required_file`]).
pub fn models_present(files: &[&str]) -> bool {
    files
        .iter()
        .all(|m| required_file(&manifest_path(m), MODELS_HINT).is_some())
}

/// The embedding model's weights, relative to the crate root (for [`models_present`]).
pub const EMBEDDING_WEIGHTS: &str = "models/all-MiniLM-L6-v2/model.safetensors";

/// The SmolLM2 GGUF, relative to the crate root (for [`models_present`]).
pub const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The reference vectors of `tests/fixtures/embed/chunks_reference.f32` (written by
/// `make_chunks_fixture.py` there): L2-normalised sentence-transformers all-MiniLM-L6-v2
/// embeddings, 384 f32 each, the 560 fixture chunks in fixture order followed by the 39
/// qa.toml questions. Returns `(vectors, number of chunk rows)`. Fails the test if the file does
/// not match the sha256 recorded in `chunks_reference.json` or `expected_sha256` (the hash a
/// dependent fixture was made from).
pub fn reference_vectors(expected_sha256: &str) -> (Vec<Vec<f32>>, usize) {
    use sha2::{Digest, Sha256};
    let json_path = manifest_path("tests/fixtures/embed/chunks_reference.json");
    let text = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", json_path.display()));
    let meta: serde_json::Value = serde_json::from_str(&text).expect("parse chunks_reference.json");
    let dim = meta["dim"].as_u64().expect("dim") as usize;
    let n_chunks = meta["chunks"].as_array().expect("chunks").len();
    let n_questions = meta["questions"].as_array().expect("questions").len();
    let bin = manifest_path("tests/fixtures/embed")
        .join(meta["vectors_file"].as_str().expect("vectors_file"));
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("read {}: {e}", bin.display()));
    let digest = hex::encode(Sha256::digest(&bytes));
    assert_eq!(
        digest,
        meta["vectors_sha256"].as_str().expect("vectors_sha256"),
        "{} does not match chunks_reference.json",
        bin.display()
    );
    assert_eq!(
        digest,
        expected_sha256,
        "{} changed since the dependent fixture was made: regenerate it",
        bin.display()
    );
    assert_eq!(bytes.len(), (n_chunks + n_questions) * dim * 4);
    (f32_rows(&bytes, dim), n_chunks)
}

/// Little-endian `f32` rows of `dim` values each (a trailing partial row is dropped).
pub fn f32_rows(bytes: &[u8], dim: usize) -> Vec<Vec<f32>> {
    bytes
        .chunks_exact(dim * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

/// The chunk texts of `tests/fixtures/embed/chunks_reference.json`, in fixture (row) order.
pub fn reference_chunk_texts() -> Vec<String> {
    let path = manifest_path("tests/fixtures/embed/chunks_reference.json");
    let text = std::fs::read_to_string(&path).expect("read chunks_reference.json");
    let meta: serde_json::Value = serde_json::from_str(&text).expect("parse chunks_reference.json");
    meta["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["text"].as_str().expect("text").to_string())
        .collect()
}

/// Writes a tiny sentence-transformers model into `dir` and returns `dir`: a BERT encoder with
/// random weights (hidden size 16, one layer, two heads; `config.json`, `model.safetensors`) and
/// a lower-casing word-level tokenizer over `words` (`tokenizer.json`). It is a real model of the
/// real format, loaded by the real [`orchestrate::embed::Embedder`], small enough that the fast
/// tests sweep hundreds of questions in a second without any downloaded model.
pub fn tiny_embedding_model(dir: &Path, words: &[&str]) -> PathBuf {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use std::collections::HashMap;
    std::fs::create_dir_all(dir).unwrap();
    let mut vocab: HashMap<String, u32> = HashMap::new();
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].map(String::from);
    for w in specials
        .into_iter()
        .chain(words.iter().map(|w| w.to_lowercase()))
    {
        let n = vocab.len() as u32;
        vocab.entry(w).or_insert(n);
    }
    let config = serde_json::json!({
        "vocab_size": vocab.len(),
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "classifier_dropout": null,
        "model_type": "bert"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let cfg: candle_transformers::models::bert::Config = serde_json::from_value(config).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();

    let model = tokenizers::models::wordlevel::WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(tokenizers::normalizers::utils::Lowercase))
        .unwrap();
    tokenizer.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    dir.to_path_buf()
}

/// A six-paragraph Bacula-like corpus for small end-to-end sweeps (Slurm, diff).
pub const SMALL_CORPUS: &str = "The Director daemon supervises all backup, restore, verify and archive operations.\n\n\
The Storage daemon writes backup data to tapes or disk volumes. It listens on port 9103.\n\n\
The File daemon runs on each client machine and sends file data to the Storage daemon; it listens on port 9102.\n\n\
The Catalog is a database holding the names of files backed up and the volumes they are stored on.\n\n\
A Pool groups volumes together, so that a backup can be restricted to a set of volumes.\n\n\
Schedules define when jobs run automatically, for example a full backup on the first Sunday of each month.\n";

/// Five questions (id, question, expected answer) answerable from [`SMALL_CORPUS`].
pub const SMALL_QUESTIONS: [(&str, &str, &str); 5] = [
    (
        "s1",
        "What does the Storage daemon do?",
        "It writes backup data to volumes.",
    ),
    (
        "s2",
        "Which port does the File daemon listen on?",
        "Port 9102.",
    ),
    (
        "s3",
        "What is the Catalog?",
        "A database of backed up files.",
    ),
    ("s4", "What is a Pool?", "A group of volumes."),
    (
        "s5",
        "What do Schedules define?",
        "When jobs run automatically.",
    ),
];
