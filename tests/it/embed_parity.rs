//! Embedding parity at scale: our candle all-MiniLM-L6-v2 against sentence-transformers over 560
//! real Bacula manual chunks (chunk sizes 100..1000, 113 of them longer than max_seq_length 256
//! tokens) and the 39 qa.toml questions, for every vector component and for 754 cosine
//! similarities. Fixture: `tests/fixtures/embed/chunks_reference.{json,f32}`, written by
//! `make_chunks_fixture.py` next to it (format in its header). Tolerance 1e-5 (absolute).
//! Takes about a minute in release on 2 cores; prints the observed maxima (`--nocapture`).
//! Fails if the model is absent (`orchestrate models fetch`), unless
//! `ORCHESTRATE_ALLOW_MISSING_MODELS=1`, which skips it with a notice (tests/common/mod.rs).

use crate::common;

use std::time::Instant;

use orchestrate::embed::Embedder;
use orchestrate::score::cosine;
use sha2::{Digest, Sha256};

const TOLERANCE: f64 = 1e-5;
/// Chunks per `Embedder::embed` call when an index is built (`EMBED_LOG_EVERY` in
/// src/index/cache.rs); each call sorts its texts by length and runs batches of 32.
const INDEX_EMBED_PART: usize = 256;

use common::manifest_path;

/// The embedder. A missing model fails the test, or skips it (`None`) when
/// `ORCHESTRATE_ALLOW_MISSING_MODELS=1` (see [`common::required_file`]).
fn embedder() -> Option<Embedder> {
    let dir = manifest_path("models/all-MiniLM-L6-v2");
    common::required_file(&dir.join("model.safetensors"), common::MODELS_HINT)?;
    Some(Embedder::load(&dir).expect("load embedder"))
}

struct Chunk {
    chunk_size: u64,
    id: u64,
    page: u64,
    tokens: u64,
    text: String,
}

struct Pair {
    kind: String,
    a: usize,
    b: usize,
    cos: f64,
}

struct Fixture {
    chunks: Vec<Chunk>,
    questions: Vec<(String, u64, String)>,
    pairs: Vec<Pair>,
    /// Reference vectors: chunks in fixture order, then questions.
    vectors: Vec<Vec<f32>>,
}

fn load_fixture() -> Fixture {
    let json_path = manifest_path("tests/fixtures/embed/chunks_reference.json");
    let text = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", json_path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("parse fixture");
    assert_eq!(v["max_seq_length"], 256);
    let dim = v["dim"].as_u64().expect("dim") as usize;
    assert_eq!(dim, 384);
    let u = |x: &serde_json::Value, k: &str| x[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    let s =
        |x: &serde_json::Value, k: &str| x[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
    let chunks: Vec<Chunk> = v["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| Chunk {
            chunk_size: u(c, "chunk_size"),
            id: u(c, "id"),
            page: u(c, "page"),
            tokens: u(c, "tokens"),
            text: s(c, "text"),
        })
        .collect();
    let questions: Vec<(String, u64, String)> = v["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .map(|q| (s(q, "id"), u(q, "tokens"), s(q, "text")))
        .collect();
    let pairs: Vec<Pair> = v["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| Pair {
            kind: s(p, "kind"),
            a: u(p, "a") as usize,
            b: u(p, "b") as usize,
            cos: p["cos"].as_f64().expect("cos"),
        })
        .collect();

    let bin_path = manifest_path("tests/fixtures/embed").join(s(&v, "vectors_file"));
    let bytes =
        std::fs::read(&bin_path).unwrap_or_else(|e| panic!("read {}: {e}", bin_path.display()));
    let rows = chunks.len() + questions.len();
    assert_eq!(bytes.len(), rows * dim * 4, "{} size", bin_path.display());
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        s(&v, "vectors_sha256"),
        "{} does not match the JSON (regenerate both with make_chunks_fixture.py)",
        bin_path.display()
    );
    let vectors: Vec<Vec<f32>> = common::f32_rows(&bytes, dim);
    Fixture {
        chunks,
        questions,
        pairs,
        vectors,
    }
}

/// Largest |a_i - b_i| (f64).
fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn chunk_embeddings_and_cosines_match_sentence_transformers() {
    let fx = load_fixture();
    let n = fx.chunks.len();

    // The fixture must cover what the requirement names: >= 500 real chunks, many beyond the
    // tokenizer.json's 128 tokens and some beyond max_seq_length 256.
    assert!(n >= 500, "only {n} chunks");
    let over_128 = fx.chunks.iter().filter(|c| c.tokens > 128).count();
    let over_256 = fx.chunks.iter().filter(|c| c.tokens > 256).count();
    assert!(
        over_128 >= 200 && over_256 >= 50,
        ">128: {over_128}, >256: {over_256}"
    );
    assert_eq!(fx.questions.len(), 39);
    assert!(fx.pairs.len() >= n - 1 + 39 * 3);
    // Fixture self-consistency: the stored cosines are those of the stored vectors.
    for p in &fx.pairs {
        let c = cosine(&fx.vectors[p.a], &fx.vectors[p.b]);
        assert!(
            (c - p.cos).abs() <= 1e-6,
            "pair {}-{}: {c} vs {}",
            p.a,
            p.b,
            p.cos
        );
    }

    let Some(embedder) = embedder() else { return };
    assert_eq!(embedder.max_seq_length(), 256);
    assert_eq!(embedder.dim(), 384);

    // Embed as an index build does: one index (chunk size) at a time, INDEX_EMBED_PART texts per
    // call. The fixture lists chunks grouped by size.
    let started = Instant::now();
    let mut ours: Vec<Vec<f32>> = Vec::with_capacity(n + fx.questions.len());
    let mut start = 0;
    while start < n {
        let size = fx.chunks[start].chunk_size;
        let end = start
            + fx.chunks[start..]
                .iter()
                .take_while(|c| c.chunk_size == size)
                .count();
        for part in fx.chunks[start..end].chunks(INDEX_EMBED_PART) {
            let texts: Vec<&str> = part.iter().map(|c| c.text.as_str()).collect();
            ours.extend(embedder.embed(&texts).expect("embed chunks"));
        }
        start = end;
    }
    let chunk_seconds = started.elapsed().as_secs_f64();
    // Questions one per call, as the worker embeds them.
    for (_, _, q) in &fx.questions {
        ours.extend(embedder.embed(&[q.as_str()]).expect("embed question"));
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(ours.len(), fx.vectors.len());

    // Vector components: overall, per token-count band, and the worst row.
    let bands = [
        "<=128 tokens",
        "129..=256 tokens",
        ">256 tokens (truncated)",
        "questions",
    ];
    let mut band_max = [0f64; 4];
    let mut band_n = [0usize; 4];
    let mut worst = (0f64, 0usize);
    for (row, (got, exp)) in ours.iter().zip(&fx.vectors).enumerate() {
        assert_eq!(got.len(), 384, "row {row}");
        let d = max_abs_diff(got, exp);
        let band = match fx.chunks.get(row).map(|c| c.tokens) {
            None => 3,
            Some(t) if t > 256 => 2,
            Some(t) if t > 128 => 1,
            Some(_) => 0,
        };
        band_max[band] = band_max[band].max(d);
        band_n[band] += 1;
        if d > worst.0 {
            worst = (d, row);
        }
    }
    let describe = |row: usize| match fx.chunks.get(row) {
        Some(c) => format!(
            "chunk row {row} (chunk_size {}, id {}, page {}, {} tokens)",
            c.chunk_size, c.id, c.page, c.tokens
        ),
        None => {
            let (id, tokens, _) = &fx.questions[row - n];
            format!("question {id} ({tokens} tokens)")
        }
    };

    // Cosines: ours (score::cosine on our vectors) against ST's util.cos_sim on its vectors.
    let mut cos_max = 0f64;
    let mut cos_worst = 0usize;
    let mut kind_max: Vec<(String, f64, usize)> = Vec::new();
    for (i, p) in fx.pairs.iter().enumerate() {
        let d = (cosine(&ours[p.a], &ours[p.b]) - p.cos).abs();
        if d > cos_max {
            cos_max = d;
            cos_worst = i;
        }
        match kind_max.iter_mut().find(|(k, _, _)| *k == p.kind) {
            Some(e) => {
                e.1 = e.1.max(d);
                e.2 += 1;
            }
            None => kind_max.push((p.kind.clone(), d, 1)),
        }
    }

    let mut summary = format!(
        "{n} chunks + {} questions embedded in {seconds:.1} s (chunks {chunk_seconds:.1} s)\n\
         max |diff| over all vector components: {:e} at {}\n",
        fx.questions.len(),
        worst.0,
        describe(worst.1)
    );
    for ((name, m), count) in bands.iter().zip(band_max).zip(band_n) {
        summary.push_str(&format!("  {name:<26} {count:>4} rows  max |diff| {m:e}\n"));
    }
    let wp = &fx.pairs[cos_worst];
    summary.push_str(&format!(
        "max |diff| over {} cosines: {cos_max:e} at {} pair {} / {}\n",
        fx.pairs.len(),
        wp.kind,
        describe(wp.a),
        describe(wp.b)
    ));
    for (kind, m, count) in &kind_max {
        summary.push_str(&format!("  {kind:<26} {count:>4} pairs max |diff| {m:e}\n"));
    }
    eprint!("{summary}");

    assert!(
        worst.0 <= TOLERANCE,
        "vector parity vs sentence-transformers exceeds {TOLERANCE:e}:\n{summary}"
    );
    assert!(
        cos_max <= TOLERANCE,
        "cosine parity vs sentence-transformers exceeds {TOLERANCE:e}:\n{summary}"
    );
}
