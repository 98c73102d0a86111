//! Pipeline benchmark: `cargo bench --bench pipeline` (figures go to BENCHMARKS.md).
//!
//! Measures each stage on the bundled Bacula manual and the default models, on whatever machine
//! runs it: PDF extraction (pages/s), splitting (chunks/s per chunk size), embedding (chunks/s on
//! 500-character chunks), index build (arroy + tantivy, a 60-page slice), retrieval latency per
//! retriever (ms/query over the QA set), and generation per model (prompt and generation tokens/s,
//! TTFT) with retrieved context, at LangChain's n_batch 8 and llama.cpp's 512, one question at a time
//! and 4 at once (continuous batching, aggregate tokens/s). Run it on a quiet machine: llama.cpp's threads busy-wait, so any
//! other load distorts the generation figures badly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use orchestrate::corpus::{self, Page};
use orchestrate::embed::Embedder;
use orchestrate::generate::{
    BatchDriver, BatchRequest, GenParams, GenerateError, Generation, Generator, PromptStyle,
};
use orchestrate::index::{self, IndexKey};
use orchestrate::retrieve::{retrieve, RetrieverKind, RetrieverParams};
use orchestrate::split::RecursiveCharacterTextSplitter;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn row(stage: &str, what: &str, figure: String) {
    println!("| {stage} | {what} | {figure} |");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pdf = root().join("corpora/bacula/main.pdf");
    let models = root().join("models");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i32;
    println!("| stage | measure | figure |\n|---|---|---|");

    let t = Instant::now();
    let pages = corpus::load_pages(&pdf)?;
    let s = t.elapsed().as_secs_f64();
    row(
        "extract",
        "456-page PDF (pdf-extract)",
        format!("{s:.2} s ({:.0} pages/s)", pages.len() as f64 / s),
    );

    for size in [100usize, 250, 500, 750, 1000] {
        let splitter = RecursiveCharacterTextSplitter::new(size, size / 5)?;
        let t = Instant::now();
        let chunks = splitter.split_pages(&pages);
        let s = t.elapsed().as_secs_f64();
        row(
            "split",
            &format!("chunk {size}/{}", size / 5),
            format!("{} chunks in {:.3} s", chunks.len(), s),
        );
    }

    let embedder = Embedder::load(&models.join("all-MiniLM-L6-v2"))?;
    let chunks = RecursiveCharacterTextSplitter::new(500, 100)?.split_pages(&pages);
    let sample: Vec<&str> = chunks.iter().take(512).map(|c| c.text.as_str()).collect();
    let t = Instant::now();
    embedder.embed(&sample)?;
    let s = t.elapsed().as_secs_f64();
    row(
        "embed",
        "512 chunks of 500 chars (candle, batch 32)",
        format!("{:.1} chunks/s", sample.len() as f64 / s),
    );

    let store = tempfile::tempdir()?;
    let slice: Vec<Page> = pages.iter().take(60).cloned().collect();
    let key = IndexKey {
        corpus_fingerprint: "bench-60-pages".into(),
        chunk_size: 500,
        chunk_overlap: 100,
        embedder_fingerprint: embedder.fingerprint().to_string(),
    };
    let (idx, info) = index::open_or_build(
        store.path(),
        &key,
        || Ok::<_, corpus::CorpusError>(slice),
        &embedder,
    )?;
    row(
        "index",
        "build, 60 pages at 500/100 (split + embed + arroy + tantivy)",
        format!("{} chunks in {:.1} s", info.n_chunks, info.build_seconds),
    );

    let qa = orchestrate::qa::load_questions(&root().join("corpora/bacula/qa.toml"))?;
    let qvecs: Vec<Vec<f32>> = qa
        .iter()
        .map(|q| embedder.embed_one(&q.question))
        .collect::<Result<_, _>>()?;
    for kind in [
        RetrieverKind::Dense,
        RetrieverKind::Mmr,
        RetrieverKind::Bm25,
        RetrieverKind::Ensemble,
    ] {
        let p = RetrieverParams {
            kind,
            top_k: 4,
            fetch_k: 20,
            lambda_mult: 0.5,
            ensemble_weight: 0.3,
            ..RetrieverParams::default()
        };
        let t = Instant::now();
        for (q, v) in qa.iter().zip(&qvecs) {
            retrieve(&idx, &q.question, v, &p)?;
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0 / qa.len() as f64;
        row(
            "retrieve",
            &format!("{kind}, top_k 4 (fetch_k 20)"),
            format!("{ms:.2} ms/query"),
        );
    }

    let gen_models: [(&str, &str, PromptStyle); 3] = [
        (
            "gemma-3-270m",
            "gemma-3-270m-q4_k_m.gguf",
            PromptStyle::Template(orchestrate::generate::DEFAULT_TEMPLATE.into()),
        ),
        (
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            PromptStyle::Chat,
        ),
        (
            "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            PromptStyle::Chat,
        ),
    ];
    // The same 8 questions with their dense top-4 contexts for every model and setting.
    let n = 8;
    let requests: Vec<BatchRequest> = qa
        .iter()
        .zip(&qvecs)
        .take(n)
        .map(|(q, v)| {
            let p = RetrieverParams {
                kind: RetrieverKind::Dense,
                top_k: 4,
                ..RetrieverParams::default()
            };
            let hits = retrieve(&idx, &q.question, v, &p)?;
            Ok(BatchRequest {
                question: q.question.clone(),
                contexts: hits
                    .iter()
                    .filter_map(|h| idx.chunk(h.chunk_id))
                    .map(|c| c.text.clone())
                    .collect(),
                seed: 0,
            })
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    for (name, file, prompt) in gen_models {
        let path: &Path = &models.join(file);
        // n_batch 8 is LangChain's LlamaCpp default (the notebook's); 512 is llama.cpp's.
        for n_batch in [8u32, 512] {
            let params = GenParams {
                prompt: prompt.clone(),
                threads,
                max_tokens: 64,
                n_batch,
                stop: vec![],
                ..GenParams::default()
            };
            let t = Instant::now();
            let mut g = Generator::load(path, params)?;
            let load_s = t.elapsed().as_secs_f64();
            let (mut pt, mut ct, mut ttft, mut gen_s) = (0u64, 0u64, 0.0, 0.0);
            let t = Instant::now();
            for r in &requests {
                let ctx: Vec<&str> = r.contexts.iter().map(String::as_str).collect();
                let out = g.answer(&r.question, &ctx)?;
                pt += out.prompt_tokens as u64;
                ct += out.completion_tokens as u64;
                ttft += out.ttft_s;
                gen_s += out.response_s - out.ttft_s;
            }
            let alone_s = t.elapsed().as_secs_f64();
            row(
                "generate",
                &format!("{name}, n_batch {n_batch}, {threads} threads, dense top 4 of 500/100, {n} questions one at a time"),
                format!(
                    "load {load_s:.2} s; prompt {:.0} tok/s (mean {:.0} tokens); generation {:.0} tok/s; TTFT {:.2} s; {:.1} s in all",
                    pt as f64 / ttft,
                    pt as f64 / n as f64,
                    ct as f64 / gen_s.max(1e-9),
                    ttft / n as f64,
                    alone_s,
                ),
            );
            let parallel = 4;
            let mut driver = Collect {
                queue: requests.iter().cloned().enumerate().rev().collect(),
                done: Vec::new(),
            };
            let t = Instant::now();
            g.answer_many(parallel, &mut driver)?;
            let batched_s = t.elapsed().as_secs_f64();
            let outs: Vec<Generation> = driver.done.into_iter().collect::<Result<_, _>>()?;
            let bct: u64 = outs.iter().map(|o| o.completion_tokens as u64).sum();
            let bpt: u64 = outs.iter().map(|o| o.prompt_tokens as u64).sum();
            row(
                "generate",
                &format!("{name}, n_batch {n_batch}, parallel {parallel} (continuous batching), same {n} questions"),
                format!(
                    "{:.1} s in all ({:.2}x one at a time); aggregate {:.0} prompt + generated tok/s",
                    batched_s,
                    alone_s / batched_s,
                    (bpt + bct) as f64 / batched_s,
                ),
            );
        }
    }
    Ok(())
}

/// Feeds [`Generator::answer_many`] from a queue and keeps the results.
struct Collect {
    /// Requests still to hand out, last first.
    queue: Vec<(usize, BatchRequest)>,
    done: Vec<Result<Generation, GenerateError>>,
}

impl BatchDriver for Collect {
    fn next(&mut self) -> Option<(usize, BatchRequest)> {
        self.queue.pop()
    }
    fn done(&mut self, _tag: usize, result: Result<Generation, GenerateError>) {
        self.done.push(result);
    }
}
