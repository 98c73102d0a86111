//! Batched generation (issue 10, item 1): [`Generator::answer_many`] decoding several questions
//! at once in one llama.cpp context must give the answers [`Generator::answer`] gives one at a
//! time. Real models, real Bacula questions: each question's context is its evidence sentence
//! followed by the next question's (a distractor), so prompts differ in length and answers in
//! length, and continuous batching refills slots while others are still decoding.
//!
//! Prints, per model and sampler, how many of the answers are identical (`--nocapture`); the
//! README's "Batched generation" quotes these figures. SmolLM2 must match exactly; gemma-3 keeps
//! a measured floor ([`GEMMA_FLOOR`]). Fails if a model is absent
//! (`orchestrate models fetch`), unless `ORCHESTRATE_ALLOW_MISSING_MODELS=1`.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use orchestrate::generate::{
    BatchDriver, BatchRequest, GenParams, GenerateError, Generation, Generator, PromptStyle,
    DEFAULT_TEMPLATE,
};
use orchestrate::qa::load_questions;
use orchestrate::sampling::SamplerPreset;

/// Questions asked per model (the first ones of the Bacula QA set).
const QUESTIONS: usize = 12;
/// Sequences decoded together.
const PARALLEL: u32 = 4;

/// Hands out requests in order and keeps each result under its tag.
struct Collect {
    requests: Vec<BatchRequest>,
    next: usize,
    results: BTreeMap<usize, Result<Generation, GenerateError>>,
    /// Tags in the order their results arrived.
    finished: Vec<usize>,
}

impl BatchDriver for Collect {
    fn next(&mut self) -> Option<(usize, BatchRequest)> {
        let r = self.requests.get(self.next)?.clone();
        self.next += 1;
        Some((self.next - 1, r))
    }
    fn done(&mut self, tag: usize, result: Result<Generation, GenerateError>) {
        self.finished.push(tag);
        assert!(
            self.results.insert(tag, result).is_none(),
            "tag {tag} twice"
        );
    }
}

fn requests() -> Vec<BatchRequest> {
    let qa = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpora/bacula/qa.toml");
    let qs = load_questions(&qa).expect("Bacula QA set");
    (0..QUESTIONS)
        .map(|i| {
            let q = &qs[i];
            let distractor = &qs[(i + 1) % qs.len()];
            BatchRequest {
                question: q.question.clone(),
                contexts: vec![
                    q.evidence.clone().unwrap_or_default(),
                    distractor.evidence.clone().unwrap_or_default(),
                ],
                seed: 1000 + i as u32,
            }
        })
        .collect()
}

/// Answers of `requests` one at a time and batched; returns (identical, total) and checks the
/// invariants of every batched answer.
fn compare(path: &std::path::Path, params: GenParams, label: &str) -> (usize, usize) {
    let mut gen = Generator::load(path, params.clone()).expect("load");
    let requests = requests();
    let alone: Vec<Generation> = requests
        .iter()
        .map(|r| {
            let mut p = params.clone();
            p.sampling.seed = i64::from(r.seed);
            gen.set_params(p).expect("params");
            let contexts: Vec<&str> = r.contexts.iter().map(String::as_str).collect();
            gen.answer(&r.question, &contexts).expect("answer alone")
        })
        .collect();
    gen.set_params(params).expect("params");
    let mut driver = Collect {
        requests: requests.clone(),
        next: 0,
        results: BTreeMap::new(),
        finished: Vec::new(),
    };
    gen.answer_many(PARALLEL, &mut driver).expect("batch");
    assert_eq!(
        driver.results.len(),
        requests.len(),
        "every request answered once"
    );
    assert!(
        PARALLEL == 1 || driver.finished != (0..requests.len()).collect::<Vec<_>>(),
        "continuous batching finishes short answers first"
    );
    let mut same = 0;
    for (i, want) in alone.iter().enumerate() {
        let got = driver.results[&i].as_ref().expect("batched answer");
        assert_eq!(
            got.prompt_tokens, want.prompt_tokens,
            "{label} q{i}: same prompt"
        );
        assert_eq!(got.contexts_used, want.contexts_used);
        assert!(got.ttft_s > 0.0 && got.ttft_s <= got.response_s, "{got:?}");
        if got.text == want.text && got.completion_tokens == want.completion_tokens {
            same += 1;
        } else {
            println!(
                "{label} q{i} differs:\n  alone:   {:?}\n  batched: {:?}",
                want.text, got.text
            );
        }
    }
    println!(
        "{label}: {same}/{} batched answers identical to answers decoded alone",
        alone.len()
    );
    (same, alone.len())
}

fn model(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    common::required_file(&path, common::MODELS_HINT)
}

fn params(prompt: PromptStyle, sampler: SamplerPreset) -> GenParams {
    let extras = sampler.extras();
    GenParams {
        max_tokens: 48,
        n_ctx: 1024,
        threads: 1,
        prompt,
        sampling: sampler.sampling(),
        n_batch: extras.n_batch.unwrap_or(512),
        rope_freq_base: extras.rope_freq_base,
        rope_freq_scale: extras.rope_freq_scale,
        stop: vec!["\n\n".into()],
    }
}

/// Share of gemma-3-270m's greedy answers (12 questions, 4 sequences) that must come out
/// identical when batched. Measured 8/12 (2026-12-06): with several sequences in one batch its
/// logits differ slightly from a single sequence's (the first token already differs in one
/// answer; the same code path with one sequence gives 12/12, interleaving prompts or not gives
/// the same 8/12), so near-ties flip; SmolLM2 (llama architecture) is exact. The floor catches a
/// real regression (wrong positions, sequences or logits give near 0/12) without hiding the rate.
const GEMMA_FLOOR: usize = 8;

#[test]
fn batched_greedy_answers_equal_answers_decoded_alone() {
    if let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") {
        let (same, n) = compare(
            &path,
            params(PromptStyle::Chat, SamplerPreset::Greedy),
            "smollm2",
        );
        assert_eq!(
            same, n,
            "smollm2: greedy batched answers differ from answers alone"
        );
    }
    if let Some(path) = model("gemma-3-270m-q4_k_m.gguf") {
        let (same, n) = compare(
            &path,
            params(
                PromptStyle::Template(DEFAULT_TEMPLATE.into()),
                SamplerPreset::Greedy,
            ),
            "gemma-3-270m",
        );
        assert!(
            same >= GEMMA_FLOOR,
            "gemma-3-270m: only {same}/{n} batched answers identical (floor {GEMMA_FLOOR})"
        );
    }
}

/// Share of SmolLM2's answers with LangChain's sampler (n_batch 8, repeat_penalty 1.1, top_k
/// 40, min_p 0.05, temperature 0.01, a seed per request) identical when batched. Measured 10/12
/// (2026-12-06): at temperature 0.01 the draw is still a coin toss between near-tied tokens, so
/// the tiny logit differences of batched decoding flip some of them.
const SEEDED_FLOOR: usize = 10;

#[test]
fn batched_seeded_sampling_matches_answers_decoded_alone() {
    // the notebook's sampler at temperature 0.01: each sequence has its own seeded chain
    let Some(path) = model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let mut p = params(PromptStyle::Chat, SamplerPreset::Langchain);
    p.sampling.temperature = 0.01;
    p.sampling.top_p = 1.0;
    p.sampling.seed_mode = None;
    p.sampling.seed = 0; // per request: each request's own seed
    let (same, n) = compare(&path, p, "smollm2 langchain t=0.01");
    assert!(
        same >= SEEDED_FLOOR,
        "only {same}/{n} seeded batched answers identical (floor {SEEDED_FLOOR})"
    );
}
