//! Generation against the real GGUF models in `models/` (fetched by CI before the tests).
//! A test whose model file is absent fails, unless `ORCHESTRATE_ALLOW_MISSING_MODELS=1`, which
//! skips it with a notice (tests/common/mod.rs).

use crate::common;

use std::path::PathBuf;

use orchestrate::generate::{
    GenParams, GenerateError, Generation, Generator, PromptStyle, StopReason, DEFAULT_TEMPLATE,
};
use orchestrate::sampling::Sampling;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

const CONTEXT: &str = "Bacula is a network backup program. The Bacula Director daemon listens \
for console connections on TCP port 9101 by default, the File daemon on port 9102 and the \
Storage daemon on port 9103.";
const QUESTION: &str = "On which TCP port does the Bacula Director listen by default?";

/// The model path. A missing file fails the test, or skips it (`None`) when
/// `ORCHESTRATE_ALLOW_MISSING_MODELS=1` (see [`common::required_file`]).
fn model(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    common::required_file(&path, common::MODELS_HINT)
}

/// Small budgets and one thread each: the tests run in parallel on a small machine, and
/// llama.cpp's spinning threads slow down badly when oversubscribed.
fn params(max_tokens: u32) -> GenParams {
    GenParams {
        max_tokens,
        n_ctx: 1024,
        threads: 1,
        ..GenParams::default()
    }
}

/// Invariants every generation must satisfy.
fn check_invariants(g: &Generation, max_tokens: u32) {
    assert!(!g.text.is_empty(), "empty answer: {g:?}");
    assert_eq!(g.text, g.text.trim(), "answer not trimmed");
    assert!(g.prompt_tokens > 0);
    assert!(g.completion_tokens <= max_tokens, "{g:?}");
    assert!(g.ttft_s > 0.0 && g.ttft_s <= g.response_s, "{g:?}");
}

#[test]
fn smollm2_chat_answers_from_context() {
    let Some(path) = model(SMOLLM2) else { return };
    let mut gen = Generator::load(&path, params(32)).expect("load");
    let info = gen.model_info();
    assert!(info.has_chat_template);
    assert!(
        info.n_params > 100_000_000 && info.n_params < 200_000_000,
        "{info:?}"
    );
    assert!(info.size_bytes > 0 && info.n_ctx_train >= 2048);
    let g = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    check_invariants(&g, 32);
    assert_eq!(g.contexts_used, 1);
    assert!(
        g.text.contains("9101"),
        "answer does not use the context: {:?}",
        g.text
    );
}

#[test]
fn qwen_chat_answers_from_context() {
    let Some(path) = model(QWEN) else { return };
    let mut gen = Generator::load(&path, params(24)).expect("load");
    assert!(gen.model_info().has_chat_template);
    let g = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    check_invariants(&g, 24);
    assert!(
        g.text.contains("9101"),
        "answer does not use the context: {:?}",
        g.text
    );
}

#[test]
fn gemma_base_model_needs_a_template() {
    let Some(path) = model(GEMMA) else { return };
    match Generator::load(&path, params(16)) {
        Err(e @ GenerateError::MissingChatTemplate(_)) => {
            assert!(
                e.to_string().contains("prompt = "),
                "unhelpful message: {e}"
            );
        }
        other => panic!("expected MissingChatTemplate, got {other:?}"),
    }
    let p = GenParams {
        max_tokens: 24,
        n_ctx: 1024,
        threads: 1,
        ..GenParams::base_model()
    };
    assert_eq!(
        p.prompt,
        PromptStyle::Template(DEFAULT_TEMPLATE.to_string())
    );
    let mut gen = Generator::load(&path, p.clone()).expect("load with template");
    assert!(!gen.model_info().has_chat_template);
    let g = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    check_invariants(&g, 24);
    for stop in &p.stop {
        assert!(
            !g.text.contains(stop.as_str()),
            "stop string {stop:?} left in {:?}",
            g.text
        );
    }
    // Switching to Chat on a template-less model is refused and keeps the old parameters.
    assert!(gen.set_params(params(16)).is_err());
    assert_eq!(gen.params(), &p);
}

#[test]
fn stop_string_cuts_the_answer() {
    let Some(path) = model(SMOLLM2) else { return };
    let mut gen = Generator::load(&path, params(32)).expect("load");
    let free = gen
        .answer("Describe what Bacula does.", &[CONTEXT])
        .expect("answer");
    let words: Vec<&str> = free.text.split_whitespace().collect();
    assert!(
        words.len() >= 3,
        "answer too short to test stops: {:?}",
        free.text
    );
    // Stop at the third word: the kept text is what precedes its first occurrence.
    let stop = words[2].to_string();
    let cut = free.text.find(stop.as_str()).expect("word is in the text");
    gen.set_params(GenParams {
        stop: vec![stop.clone()],
        ..params(32)
    })
    .expect("params");
    let g = gen
        .answer("Describe what Bacula does.", &[CONTEXT])
        .expect("answer");
    assert_eq!(g.stopped_by, StopReason::StopString);
    assert_eq!(g.text, free.text[..cut].trim());
    assert!(!g.text.contains(stop.as_str()));
    assert!(g.completion_tokens < free.completion_tokens);
}

#[test]
fn contexts_are_truncated_to_fit_n_ctx() {
    let Some(path) = model(SMOLLM2) else { return };
    let chunk = CONTEXT.repeat(3); // ~550 characters
    let contexts: Vec<&str> = vec![chunk.as_str(); 4];
    let small = GenParams {
        n_ctx: 384,
        max_tokens: 8,
        threads: 1,
        ..GenParams::default()
    };
    let mut gen = Generator::load(&path, small).expect("load");
    let full_prompt = gen.build_prompt(QUESTION, &contexts).expect("prompt");
    assert!(
        gen.count_tokens(&full_prompt) + 8 > 384,
        "test needs an overflowing prompt"
    );
    let g = gen.answer(QUESTION, &contexts).expect("answer");
    assert!(g.contexts_used < contexts.len(), "{g:?}");
    assert!(g.prompt_tokens + 8 <= 384, "{g:?}");
    // One more context would not have fitted.
    let next = gen
        .build_prompt(QUESTION, &contexts[..g.contexts_used + 1])
        .expect("prompt");
    assert!(gen.count_tokens(&next) + 8 > 384);

    gen.set_params(GenParams {
        n_ctx: 24,
        max_tokens: 8,
        threads: 1,
        ..GenParams::default()
    })
    .expect("params");
    assert!(matches!(
        gen.answer(QUESTION, &contexts),
        Err(GenerateError::QuestionTooLong { .. })
    ));
}

#[test]
fn greedy_and_seeded_sampling_are_repeatable() {
    let Some(path) = model(SMOLLM2) else { return };
    let mut gen = Generator::load(&path, params(24)).expect("load");
    let a = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    let b = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    assert_eq!(a.text, b.text);
    assert_eq!(a.completion_tokens, b.completion_tokens);

    let sampled = |seed| GenParams {
        sampling: Sampling {
            temperature: 1.0,
            seed,
            ..Sampling::default()
        },
        ..params(24)
    };
    gen.set_params(sampled(7)).expect("params");
    let c = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    let d = gen.answer(QUESTION, &[CONTEXT]).expect("answer");
    assert_eq!(c.text, d.text, "same seed must give the same sample");
}
