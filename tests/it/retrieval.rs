//! Embeddings, indexes and retrieval against reference implementations and the real corpus:
//! - embedding parity with sentence-transformers (fixture `tests/fixtures/embed/`);
//! - MMR and weighted RRF parity with LangChain (fixture `tests/fixtures/retrieve/`);
//! - index cache build/reuse and every retriever over real Bacula manual pages.
//!
//! Tests needing the embedding model or the corpus fail if it is absent, unless
//! `ORCHESTRATE_ALLOW_MISSING_MODELS=1`, which skips them with a notice (tests/common/mod.rs).

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use orchestrate::corpus::Page;
use orchestrate::embed::Embedder;
use orchestrate::index::{self, IndexKey};
use orchestrate::retrieve::{
    maximal_marginal_relevance, retrieve, weighted_reciprocal_rank_fusion, RetrieverKind,
    RetrieverParams,
};
use orchestrate::score::cosine;

fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The embedder. A missing model fails the test, or skips it (`None`) when
/// `ORCHESTRATE_ALLOW_MISSING_MODELS=1` (see [`common::required_file`]).
fn embedder() -> Option<Embedder> {
    let dir = manifest_path("models/all-MiniLM-L6-v2");
    common::required_file(&dir.join("model.safetensors"), common::MODELS_HINT)?;
    Some(Embedder::load(&dir).expect("load embedder"))
}

fn read_json(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(manifest_path(rel)).expect("read fixture");
    serde_json::from_str(&text).expect("parse fixture")
}

/// (query, candidates, lambda_mult, k) of one MMR fixture case.
fn mmr_case(case: &serde_json::Value) -> (Vec<f32>, Vec<Vec<f32>>, f32, usize) {
    let cands = case["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(f32_vec)
        .collect();
    (
        f32_vec(&case["query"]),
        cands,
        case["lambda_mult"].as_f64().expect("lambda") as f32,
        case["k"].as_u64().expect("k") as usize,
    )
}

fn f32_vec(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(embedder) = embedder() else { return };
    let fixture = read_json("tests/fixtures/embed/minilm_reference.json");
    let sentences: Vec<String> = fixture["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect();
    let expected: Vec<Vec<f32>> = fixture["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(f32_vec)
        .collect();
    let counts = fixture["token_counts"].as_array().expect("counts");
    assert!(
        counts.iter().any(|c| c.as_u64().unwrap_or(0) > 256),
        "fixture must exercise truncation"
    );
    assert_eq!(embedder.dim(), 384);
    assert_eq!(embedder.max_seq_length(), 256);
    assert_eq!(embedder.fingerprint().len(), 64);

    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let got = embedder.embed(&texts).expect("embed");
    assert_eq!(got.len(), expected.len());
    let mut max_diff = 0f32;
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.len(), 384);
        for (a, b) in g.iter().zip(e) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    eprintln!("max |diff| vs sentence-transformers: {max_diff:e}");
    assert!(
        max_diff <= 1e-5,
        "max |diff| vs sentence-transformers = {max_diff}"
    );

    // Batch composition must not change a vector: one at a time gives the same result.
    for (i, text) in texts.iter().enumerate().step_by(5) {
        let single = embedder.embed_one(text).expect("embed one");
        let diff = single
            .iter()
            .zip(&got[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-5, "sentence {i}: single vs batched diff {diff}");
    }
    assert!(embedder.embed(&[]).expect("empty").is_empty());
}

#[test]
fn mmr_matches_langchain() {
    let fixture = read_json("tests/fixtures/retrieve/reference.json");
    let cases = fixture["mmr"].as_array().expect("mmr cases");
    assert!(cases.len() >= 40);
    for (n, case) in cases.iter().enumerate() {
        let (query, cands, lambda, k) = mmr_case(case);
        let expected: Vec<usize> = case["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .map(|x| x.as_u64().expect("index") as usize)
            .collect();
        let got = maximal_marginal_relevance(&query, &cands, lambda, k);
        assert_eq!(got, expected, "case {n}: lambda {lambda}, k {k}");
    }
}

#[test]
fn weighted_rrf_matches_langchain() {
    let fixture = read_json("tests/fixtures/retrieve/reference.json");
    let cases = fixture["rrf"].as_array().expect("rrf cases");
    let id = |v: &serde_json::Value| -> u32 {
        let s = v.as_str().expect("doc text");
        s.trim_start_matches("doc").parse().expect("docN")
    };
    for (n, case) in cases.iter().enumerate() {
        let lists: Vec<Vec<u32>> = case["lists"]
            .as_array()
            .expect("lists")
            .iter()
            .map(|l| l.as_array().expect("list").iter().map(id).collect())
            .collect();
        let weights = f32_vec(&case["weights"]);
        let c = case["c"].as_f64().expect("c") as f32;
        let expected: Vec<(u32, f64)> = case["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .map(|p| (id(&p[0]), p[1].as_f64().expect("score")))
            .collect();
        let got = weighted_reciprocal_rank_fusion(&lists, &weights, c);
        let got_ids: Vec<u32> = got.iter().map(|g| g.0).collect();
        let want_ids: Vec<u32> = expected.iter().map(|e| e.0).collect();
        assert_eq!(got_ids, want_ids, "case {n}");
        for ((_, g), (_, e)) in got.iter().zip(&expected) {
            assert!((f64::from(*g) - e).abs() < 1e-6, "case {n}: {g} vs {e}");
        }
    }
}

/// The first `n` pages of the Bacula manual. A missing PDF fails the test, or skips it (`None`)
/// when `ORCHESTRATE_ALLOW_MISSING_MODELS=1`.
fn bacula_pages(n: usize) -> Option<Vec<Page>> {
    let pdf = common::required_file(
        &manifest_path("corpora/bacula/main.pdf"),
        common::CORPUS_HINT,
    )?;
    let mut pages = orchestrate::corpus::load_pages(&pdf).expect("load pdf");
    pages.truncate(n);
    Some(pages)
}

fn key(embedder: &Embedder, corpus: &str, size: usize, overlap: usize) -> IndexKey {
    IndexKey {
        corpus_fingerprint: corpus.to_string(),
        chunk_size: size,
        chunk_overlap: overlap,
        embedder_fingerprint: embedder.fingerprint().to_string(),
    }
}

fn no_tmp_dirs(store: &Path) -> bool {
    std::fs::read_dir(store.join("indexes"))
        .expect("indexes dir")
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"))
}

#[test]
fn bacula_index_cache_and_all_retrievers() {
    let Some(embedder) = embedder() else { return };
    let Some(pages) = bacula_pages(15) else {
        return;
    };
    let store = tempfile::tempdir().expect("tempdir");
    let pdf = vec![manifest_path("corpora/bacula/main.pdf")];
    let key = IndexKey {
        corpus_fingerprint: orchestrate::corpus::corpus_fingerprint(&pdf).expect("fingerprint"),
        ..key(&embedder, "", 800, 80)
    };

    let (built, info) = index::open_or_build(
        store.path(),
        &key,
        || Ok::<_, std::io::Error>(pages),
        &embedder,
    )
    .expect("build");
    eprintln!(
        "built {} chunks in {:.1} s",
        info.n_chunks, info.build_seconds
    );
    assert!(!info.cache_hit);
    assert!(info.n_chunks > 50, "only {} chunks", info.n_chunks);
    assert_eq!(info.dir, store.path().join("indexes").join(key.digest()));
    for f in ["chunks.jsonl", "meta.json", "dense", "lexical"] {
        assert!(info.dir.join(f).exists(), "{f} missing");
    }
    assert!(no_tmp_dirs(store.path()));
    assert!(built.chunks.iter().all(|c| c.text.chars().count() <= 800));

    // Second call: a cache hit that never asks for pages.
    let (index, hit) = index::open_or_build(
        store.path(),
        &key,
        || -> Result<Vec<Page>, std::io::Error> { panic!("pages requested on a cache hit") },
        &embedder,
    )
    .expect("reopen");
    assert!(hit.cache_hit);
    assert_eq!(index.chunks, built.chunks);
    // Different splitter settings are a different index.
    let other = IndexKey {
        chunk_overlap: 0,
        ..key.clone()
    };
    assert_ne!(other.digest(), key.digest());
    // Read-only open of the same directory (as the worker does).
    let ro = index::open(&info.dir).expect("open");
    assert_eq!(ro.len(), built.len());

    // Stored vectors are the embeddings of the chunk texts.
    let v3 = index.vector(3).expect("vector 3");
    let e3 = embedder.embed_one(&index.chunks[3].text).expect("embed");
    assert!(cosine(&v3, &e3) > 0.99999);

    // Dense recall@5 vs exact over real queries (chunk texts and questions).
    let mut queries: Vec<String> = index
        .chunks
        .iter()
        .step_by(7)
        .map(|c| c.text.chars().take(120).collect())
        .collect();
    queries.push("How do I restore files with bconsole?".into());
    queries.push("What does the Storage daemon do?".into());
    let texts: Vec<&str> = queries.iter().map(String::as_str).collect();
    let qvecs = embedder.embed(&texts).expect("embed queries");
    let (mut hits, mut total) = (0, 0);
    for q in &qvecs {
        let approx = index.dense_search(q, 5).expect("dense");
        let exact = index.dense_search_exact(q, 5).expect("exact");
        total += exact.len();
        hits += exact
            .iter()
            .filter(|e| approx.iter().any(|a| a.0 == e.0))
            .count();
    }
    let recall = hits as f64 / total as f64;
    eprintln!(
        "dense recall@5 vs exact over {} queries: {recall}",
        qvecs.len()
    );
    assert!(recall >= 0.99, "recall@5 = {recall}");

    let question = "Which daemon writes data to the Volumes?";
    let qvec = embedder.embed_one(question).expect("embed");
    let params = |kind| RetrieverParams {
        kind,
        top_k: 4,
        fetch_k: 20,
        lambda_mult: 0.5,
        ensemble_weight: 0.5,
        ..RetrieverParams::default()
    };

    let dense = retrieve(&index, question, &qvec, &params(RetrieverKind::Dense)).expect("dense");
    assert_eq!(dense.len(), 4);
    assert!(dense.windows(2).all(|w| w[0].score >= w[1].score));
    let exact = index.dense_search_exact(&qvec, 4).expect("exact");
    assert_eq!(dense[0].chunk_id, exact[0].0);

    let mmr = retrieve(&index, question, &qvec, &params(RetrieverKind::Mmr)).expect("mmr");
    assert_eq!(mmr.len(), 4);
    assert_eq!(
        mmr[0].chunk_id, dense[0].chunk_id,
        "MMR's first pick is the most similar"
    );
    let distinct: HashSet<u32> = mmr.iter().map(|r| r.chunk_id).collect();
    assert_eq!(distinct.len(), 4);
    // lambda 1 is pure relevance: MMR equals dense.
    let mmr1 = retrieve(
        &index,
        question,
        &qvec,
        &RetrieverParams {
            lambda_mult: 1.0,
            ..params(RetrieverKind::Mmr)
        },
    )
    .expect("mmr1");
    assert_eq!(
        mmr1.iter().map(|r| r.chunk_id).collect::<Vec<_>>(),
        dense.iter().map(|r| r.chunk_id).collect::<Vec<_>>()
    );
    // fetch_k < top_k returns fetch_k chunks.
    let few = retrieve(
        &index,
        question,
        &qvec,
        &RetrieverParams {
            fetch_k: 3,
            ..params(RetrieverKind::Mmr)
        },
    )
    .expect("mmr fetch 3");
    assert_eq!(few.len(), 3);

    let bm25 = retrieve(&index, question, &qvec, &params(RetrieverKind::Bm25)).expect("bm25");
    assert_eq!(bm25.len(), 4);
    let top = &index.chunks[bm25[0].chunk_id as usize].text.to_lowercase();
    assert!(
        top.contains("volume") || top.contains("daemon") || top.contains("write"),
        "top BM25 chunk shares no query term: {top}"
    );
    let odd = retrieve(
        &index,
        "\"(Director: AND -port\"",
        &qvec,
        &params(RetrieverKind::Bm25),
    );
    assert!(odd.is_ok());

    let ens = retrieve(&index, question, &qvec, &params(RetrieverKind::Ensemble)).expect("ens");
    assert!(ens.len() >= 4 && ens.len() <= 8, "{} fused", ens.len());
    assert!(ens.windows(2).all(|w| w[0].score >= w[1].score));
    let union: HashSet<u32> = bm25.iter().chain(&dense).map(|r| r.chunk_id).collect();
    assert!(ens.iter().all(|r| union.contains(&r.chunk_id)));
    // Weight 1 = BM25 order first, dense-only chunks after with score 0.
    let ens_bm25 = retrieve(
        &index,
        question,
        &qvec,
        &RetrieverParams {
            ensemble_weight: 1.0,
            ..params(RetrieverKind::Ensemble)
        },
    )
    .expect("ens bm25");
    assert_eq!(
        ens_bm25
            .iter()
            .take(4)
            .map(|r| r.chunk_id)
            .collect::<Vec<_>>(),
        bm25.iter().map(|r| r.chunk_id).collect::<Vec<_>>()
    );

    // Wrong query vector length is an error, not a panic.
    assert!(retrieve(&index, question, &[0.0; 3], &params(RetrieverKind::Dense)).is_err());
}

#[test]
fn ensemble_dedups_identical_chunk_texts_and_failed_builds_leave_nothing() {
    let Some(embedder) = embedder() else { return };
    let page = |n: u32, text: &str| Page {
        source: "dup.txt".into(),
        number: n,
        text: text.into(),
    };
    let pages = vec![
        page(
            1,
            "Bacula restore command restores files from backup volumes.",
        ),
        page(
            2,
            "Bacula restore command restores files from backup volumes.",
        ),
        page(3, "The catalog database stores job records."),
        page(4, "Tape drives need an autochanger for many volumes."),
    ];
    let store = tempfile::tempdir().expect("tempdir");

    // A failing page source leaves neither a final nor a temporary directory.
    let bad_key = key(&embedder, "dup-failing", 200, 0);
    let err = index::open_or_build(
        store.path(),
        &bad_key,
        || Err::<Vec<Page>, _>(std::io::Error::other("boom")),
        &embedder,
    )
    .expect_err("must fail");
    assert!(err.to_string().contains("boom"));
    assert!(!store.path().join("indexes").join(bad_key.digest()).exists());
    assert!(no_tmp_dirs(store.path()));

    // An embedder fingerprint that does not match is rejected.
    let mut wrong = key(&embedder, "dup", 200, 0);
    wrong.embedder_fingerprint = "0".repeat(64);
    assert!(index::open_or_build(
        store.path(),
        &wrong,
        || Ok::<_, std::io::Error>(pages.clone()),
        &embedder
    )
    .is_err());

    let key = key(&embedder, "dup", 200, 0);
    let (index, _) = index::open_or_build(
        store.path(),
        &key,
        || Ok::<_, std::io::Error>(pages),
        &embedder,
    )
    .expect("build");
    assert_eq!(index.len(), 4);
    let question = "restore command";
    let qvec = embedder.embed_one(question).expect("embed");
    let p = RetrieverParams {
        kind: RetrieverKind::Ensemble,
        top_k: 4,
        ..RetrieverParams::default()
    };
    let fused = retrieve(&index, question, &qvec, &p).expect("ensemble");
    let ids: Vec<u32> = fused.iter().map(|r| r.chunk_id).collect();
    // Chunks 0 and 1 have the same text: they pool under one id (the first seen), as LangChain
    // dedups by page_content; both lists rank the pair first, so it leads.
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids[0] == 0 || ids[0] == 1, "{ids:?}");
    assert!(!(ids.contains(&0) && ids.contains(&1)));
    let pooled = 0.5 / 61.0 + 0.5 / 62.0 + 0.5 / 61.0 + 0.5 / 62.0;
    assert!(
        (f64::from(fused[0].score) - pooled).abs() < 1e-6,
        "{}",
        fused[0].score
    );
}

/// An index over fixture chunks and vectors, without the embedding model: chunk `i` has text
/// `texts[i]` and vector `vectors[i]` (all of one length). Lives in `dir`.
fn fixture_index(dir: &Path, texts: &[String], vectors: &[Vec<f32>]) -> index::CorpusIndex {
    use orchestrate::index::{DenseIndex, LexicalIndex};
    use orchestrate::split::Chunk;
    assert_eq!(texts.len(), vectors.len());
    let chunks: Vec<Chunk> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Chunk {
            id: i as u32,
            source: "fixture".into(),
            page: 1,
            start: 0,
            text: t.clone(),
        })
        .collect();
    let dim = vectors[0].len();
    DenseIndex::build(&dir.join("dense"), vectors, dim).expect("dense build");
    LexicalIndex::build(&dir.join("lexical"), &chunks).expect("lexical build");
    index::CorpusIndex::new(
        dir.to_path_buf(),
        chunks,
        DenseIndex::open(&dir.join("dense")).expect("dense open"),
        LexicalIndex::open(&dir.join("lexical")).expect("lexical open"),
    )
    .expect("corpus index")
}

fn usize_list(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("index") as usize)
        .collect()
}

/// MMR where the reference meets EXACT ties: duplicate vectors and distinct vectors of equal
/// similarity (dyadic components, so every cosine is exact in f32 and f64). LangChain's strict
/// `>` keeps the earliest candidate; so must we.
#[test]
fn mmr_exact_ties_match_langchain() {
    let fixture = read_json("tests/fixtures/retrieve/reference.json");
    let cases = fixture["mmr_ties"].as_array().expect("mmr_ties cases");
    let mut ties = 0;
    for (n, case) in cases.iter().enumerate() {
        let (query, cands, lambda, k) = mmr_case(case);
        let got = maximal_marginal_relevance(&query, &cands, lambda, k);
        assert_eq!(
            got,
            usize_list(&case["expected"]),
            "tie case {n}: lambda {lambda}, k {k}"
        );
        ties += case["tie_decisions"].as_u64().expect("tie_decisions");
    }
    assert!(
        cases.len() >= 50 && ties >= 100,
        "{} cases with {ties} tie decisions",
        cases.len()
    );
}

/// `fuse_dedup_by_text` against the real LangChain EnsembleRetriever over Documents that differ
/// only in metadata: distinct chunk ids with identical text are merged by page_content, the first
/// one seen (list order) standing for all, scores summed.
#[test]
fn ensemble_dedup_of_identical_texts_matches_langchain() {
    let fixture = read_json("tests/fixtures/retrieve/reference.json");
    let dups = &fixture["ensemble_dups"];
    let texts: Vec<String> = dups["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["id"].as_u64(), Some(i as u64));
            c["text"].as_str().expect("text").to_string()
        })
        .collect();
    // Vectors play no part in fusion; any unit vectors do.
    let vectors: Vec<Vec<f32>> = (0..texts.len())
        .map(|i| {
            let mut v = vec![0.0f32; 4];
            v[i % 4] = 1.0;
            v
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let index = fixture_index(dir.path(), &texts, &vectors);
    let cases = dups["cases"].as_array().expect("cases");
    let mut merged = 0;
    for (n, case) in cases.iter().enumerate() {
        let lists: Vec<Vec<u32>> = case["lists"]
            .as_array()
            .expect("lists")
            .iter()
            .map(|l| usize_list(l).into_iter().map(|i| i as u32).collect())
            .collect();
        let weights = f32_vec(&case["weights"]);
        let c = case["c"].as_f64().expect("c") as f32;
        let expected: Vec<(u32, f64)> = case["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().expect("id") as u32,
                    p[1].as_f64().expect("score"),
                )
            })
            .collect();
        let got = orchestrate::retrieve::fuse_dedup_by_text(&index, &lists, &weights, c);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>(),
            "case {n}: lists {lists:?} weights {weights:?}"
        );
        for ((_, g), (_, e)) in got.iter().zip(&expected) {
            assert!((f64::from(*g) - e).abs() < 1e-6, "case {n}: {g} vs {e}");
        }
        if case["distinct_ids"].as_u64().expect("distinct_ids") as usize > expected.len() {
            merged += 1;
        }
    }
    assert!(merged >= 20, "only {merged} cases merge distinct ids");
}

/// One `mmr_fetch` case of the fixture.
struct FetchCase {
    query: Vec<f32>,
    k: usize,
    fetch_k: usize,
    lambda_mult: f32,
    /// LangChain's chunk ids, in selection order.
    expected: Vec<u32>,
}

/// Reads `mmr_fetch` cases; `query` gives each case's query vector.
fn mmr_fetch_cases(
    cases: &serde_json::Value,
    query: impl Fn(&serde_json::Value) -> Vec<f32>,
) -> Vec<FetchCase> {
    cases
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| FetchCase {
            query: query(c),
            k: c["k"].as_u64().expect("k") as usize,
            fetch_k: c["fetch_k"].as_u64().expect("fetch_k") as usize,
            lambda_mult: c["lambda_mult"].as_f64().expect("lambda_mult") as f32,
            expected: usize_list(&c["expected"])
                .into_iter()
                .map(|i| i as u32)
                .collect(),
        })
        .collect()
}

/// Runs our MMR retriever (exact dense fetch of `fetch_k`, then MMR to `k`) on every case and
/// returns the failures.
fn check_mmr_fetch(index: &index::CorpusIndex, cases: &[FetchCase], label: &str) -> Vec<String> {
    use orchestrate::retrieve::DenseIndexKind;
    let mut failures = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let p = RetrieverParams {
            kind: RetrieverKind::Mmr,
            top_k: c.k,
            fetch_k: c.fetch_k,
            lambda_mult: c.lambda_mult,
            dense_index: DenseIndexKind::Exact,
            ..RetrieverParams::default()
        };
        let got: Vec<u32> = retrieve(index, "", &c.query, &p)
            .expect("mmr retrieve")
            .iter()
            .map(|r| r.chunk_id)
            .collect();
        if got != c.expected {
            failures.push(format!(
                "{label} case {n}: k {}, fetch_k {}, lambda {}: ours {got:?}, LangChain {:?}",
                c.k, c.fetch_k, c.lambda_mult, c.expected
            ));
        }
    }
    failures
}

/// The MMR retriever (`retriever = "mmr"`, `dense_index = "exact"`) against LangChain's
/// FAISS.max_marginal_relevance_search_by_vector: fetch the fetch_k nearest (IndexFlatL2), then
/// MMR over them in that order. Dyadic unit vectors give exact ties both at the fetch_k cut
/// (which tied chunk is fetched) and inside MMR (which is picked); the real chunk vectors check
/// the seed's settings (k 4, fetch_k 3 and 20) on real embeddings.
#[test]
fn mmr_retriever_with_fetch_k_matches_langchain_faiss() {
    let fixture = read_json("tests/fixtures/retrieve/reference.json");
    let fetch = &fixture["mmr_fetch"];

    let docs: Vec<Vec<f32>> = fetch["docs"]
        .as_array()
        .expect("docs")
        .iter()
        .map(f32_vec)
        .collect();
    let texts: Vec<String> = (0..docs.len()).map(|i| format!("chunk {i}")).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let index = fixture_index(dir.path(), &texts, &docs);
    let cases = mmr_fetch_cases(&fetch["cases"], |c| f32_vec(&c["query"]));
    assert!(cases.len() >= 200);
    assert!(
        cases.iter().any(|c| c.fetch_k < docs.len()) && cases.iter().any(|c| c.fetch_k < c.k),
        "fixture must cut the candidates with fetch_k"
    );
    let mut failures = check_mmr_fetch(&index, &cases, "dyadic");

    let real = &fetch["real"];
    let (vectors, n_chunks) =
        common::reference_vectors(real["vectors_sha256"].as_str().expect("vectors_sha256"));
    assert_eq!(real["n_docs"].as_u64(), Some(n_chunks as u64));
    let real_dir = tempfile::tempdir().expect("tempdir");
    let real_index = fixture_index(
        real_dir.path(),
        &common::reference_chunk_texts(),
        &vectors[..n_chunks],
    );
    let real_cases = mmr_fetch_cases(&real["cases"], |c| {
        vectors[c["row"].as_u64().expect("row") as usize].clone()
    });
    assert!(real_cases.len() >= 150);
    failures.extend(check_mmr_fetch(&real_index, &real_cases, "real"));
    assert!(
        failures.is_empty(),
        "{} MMR retrievals differ from LangChain FAISS:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
