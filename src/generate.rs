//! Answer generation with a local GGUF model through llama-cpp-2 (llama.cpp).
//!
//! This module owns: the process-wide llama.cpp backend (initialised once, its logs routed to
//! `tracing` under the target `llama-cpp-2`), loading a model ([`Generator::load`]), building the
//! prompt (the model's own chat template or a user template, see [`PromptStyle`]), fitting the
//! retrieved contexts into the context window (counted in tokens), sampling (the chain
//! [`crate::sampling`] lays out, in llama-cpp-python's order), stop handling (end-of-generation token, stop strings, token budget) and timing
//! (time to first token, response time).
//!
//! An answer decoded alone ([`Generator::answer`]) runs in a fresh llama.cpp context; batched
//! answers ([`Generator::answer_many`], continuous batching over `parallel` sequences) share one
//! context, each in its own sequence whose KV cache is cleared before the next question takes
//! it. Either way answers never see each other's KV cache.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::{BatchAddError, LlamaBatch};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{
    ApplyChatTemplateError, ChatTemplateError, DecodeError, LlamaContextLoadError,
    LlamaModelLoadError, LogOptions, NewLlamaChatMessageError,
};

use crate::sampling::{Sampling, Stage};

/// Placeholder replaced by the joined contexts in a [`PromptStyle::Template`].
pub const CONTEXT_PLACEHOLDER: &str = "{context}";
/// Placeholder replaced by the question in a [`PromptStyle::Template`].
pub const QUESTION_PLACEHOLDER: &str = "{question}";

/// Prompt template for base (non-chat) models such as gemma-3-270m.
///
/// It ends with `Answer:` so that a base model continues with the answer. A base model does not
/// emit an end-of-generation token reliably and tends to go on with a new `Question:`; use it with
/// [`DEFAULT_STOP`] (see [`GenParams::base_model`]).
pub const DEFAULT_TEMPLATE: &str = "Answer the question using only the context below. \
Answer in one or two sentences.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:";

/// llama.cpp's `LLAMA_FLASH_ATTN_TYPE_DISABLED` (llama.h). Flash attention is always off:
/// llama-cpp-python 0.3 (and so LangChain's LlamaCpp) passes `flash_attn=False`, while llama.cpp's
/// own default (`AUTO`) turns it on for CPU; the two attention paths round differently, and
/// with it on greedy answers left llama-cpp-python's at raw-logit gaps up to 0.29
/// (tests/it/sampler_parity.rs).
const FLASH_ATTN_DISABLED: i32 = 0;

/// Stop strings matching [`DEFAULT_TEMPLATE`]: a blank line (end of the answer paragraph), or the
/// model starting a new `Question:` / `Context:` block on its own.
pub const DEFAULT_STOP: &[&str] = &["\n\n", "\nQuestion:", "\nContext:"];

/// Instruction layout of the single user message sent through the model's chat template
/// ([`PromptStyle::Chat`]); same placeholders as [`PromptStyle::Template`].
pub const CHAT_INSTRUCTION: &str = "Use the following context to answer the question. \
If the context does not contain the answer, say that you don't know. Answer concisely.\n\n\
Context:\n{context}\n\nQuestion: {question}";

/// Separator between contexts when they are joined into `{context}`: a blank line.
pub const CONTEXT_SEPARATOR: &str = "\n\n";

/// Errors of model loading and generation.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The model file does not exist.
    #[error("model file not found: {0}")]
    ModelNotFound(PathBuf),
    /// The model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The model path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic bytes.
    #[error("{0} is not a GGUF file (llama.cpp needs a .gguf model)")]
    NotGguf(PathBuf),
    /// The llama.cpp backend could not be initialised.
    #[error("llama.cpp backend initialisation failed: {0}")]
    Backend(String),
    /// llama.cpp failed to load the model.
    #[error("llama.cpp failed to load {path}: {source}")]
    Load {
        /// The model path.
        path: PathBuf,
        /// The underlying error.
        source: LlamaModelLoadError,
    },
    /// `PromptStyle::Chat` was asked of a model whose GGUF has no chat template.
    #[error(
        "model {0} has no chat template (a base model?): set `prompt = \"<template>\"` with \
         {{context}} and {{question}} placeholders, e.g. the default base-model template"
    )]
    MissingChatTemplate(PathBuf),
    /// The chat template could not be read from the GGUF.
    #[error("cannot read the chat template: {0}")]
    ChatTemplate(#[from] ChatTemplateError),
    /// The chat message contained a NUL byte.
    #[error("invalid chat message: {0}")]
    ChatMessage(#[from] NewLlamaChatMessageError),
    /// llama.cpp could not apply the chat template (unsupported template or bad input).
    #[error("cannot apply the chat template: {0}")]
    ApplyChatTemplate(#[from] ApplyChatTemplateError),
    /// A user template lacks a placeholder.
    #[error("prompt template lacks the {0} placeholder")]
    MissingPlaceholder(&'static str),
    /// A generation parameter is out of range.
    #[error("invalid generation parameter: {0}")]
    InvalidParams(String),
    /// Even with no context the prompt plus `max_tokens` exceeds `n_ctx`.
    #[error(
        "the question alone needs {prompt_tokens} prompt tokens + {max_tokens} generated tokens \
         > n_ctx {n_ctx}: raise n_ctx or lower max_tokens"
    )]
    QuestionTooLong {
        /// Tokens of the prompt built without any context.
        prompt_tokens: usize,
        /// The generation budget.
        max_tokens: u32,
        /// The context window.
        n_ctx: u32,
    },
    /// llama.cpp could not create a context (usually out of memory).
    #[error("cannot create a llama.cpp context: {0}")]
    Context(#[from] LlamaContextLoadError),
    /// A batch could not hold the tokens given to it.
    #[error("batch error: {0}")]
    Batch(#[from] BatchAddError),
    /// `llama_decode` failed.
    #[error("decode failed: {0}")]
    Decode(#[from] DecodeError),
    /// A batched generation step failed for every sequence in it (the message of the
    /// underlying [`GenerateError::Decode`]).
    #[error("batched decode step failed: {0}")]
    Step(String),
    /// llama.cpp rejected a GBNF grammar (a bug in the grammar's builder).
    #[error("invalid grammar: {0}")]
    Grammar(#[from] llama_cpp_2::GrammarError),
}

/// How the prompt is built from the question and the contexts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PromptStyle {
    /// The GGUF's own chat template (`tokenizer.chat_template`), applied by llama.cpp to one user
    /// message laid out as [`CHAT_INSTRUCTION`], with the assistant turn opened (`add_ass`).
    Chat,
    /// A raw prompt with `{context}` and `{question}` placeholders (both required), for base
    /// models; see [`DEFAULT_TEMPLATE`].
    Template(String),
}

/// Generation parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenParams {
    /// Context window in tokens (prompt + generated). Default 2048.
    pub n_ctx: u32,
    /// Sampler settings (temperature, top_p, top_k, min_p, penalties, seed, ...), serialised
    /// flat. Default greedy.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Maximum generated tokens per answer (>= 1). Default 128.
    pub max_tokens: u32,
    /// Strings that end the answer; the first occurrence and everything after it is cut.
    /// Default none.
    pub stop: Vec<String>,
    /// Threads for prompt processing and generation (>= 1). Default: available cores.
    ///
    /// llama.cpp's OpenMP threads busy-wait at barriers: when the cores are shared with other
    /// busy processes (parallel workers, builds), more threads than free cores slows generation
    /// several-fold (measured: SmolLM2 under load, 1 thread 38 tok/s vs 2 threads 8 tok/s).
    /// Greedy output is reproducible for a fixed thread count; a different count can change
    /// float summation order and hence the text.
    pub threads: i32,
    /// Prompt construction. Default [`PromptStyle::Chat`].
    pub prompt: PromptStyle,
    /// Tokens per prompt-processing decode call (logical and physical batch, capped at n_ctx).
    /// Default 512.
    pub n_batch: u32,
    /// RoPE base frequency override (llama.cpp `rope_freq_base`); `None` (default) uses the
    /// model's own value from its GGUF. LangChain's `LlamaCpp` always passes 10000, which
    /// changes the output of models trained with another base (e.g. Qwen2's 1000000); the
    /// `langchain` sampler preset sets it for parity. Not serialised when `None`, so cell ids of
    /// earlier runs are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_base: Option<f32>,
    /// RoPE frequency scale override (llama.cpp `rope_freq_scale`, context extension factor
    /// `1 / scale`); `None` (default) uses the model's own. LangChain's `LlamaCpp` passes 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_freq_scale: Option<f32>,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            n_ctx: 2048,
            sampling: Sampling::default(),
            max_tokens: 128,
            stop: Vec::new(),
            threads: default_threads(),
            prompt: PromptStyle::Chat,
            n_batch: 512,
            rope_freq_base: None,
            rope_freq_scale: None,
        }
    }
}

impl GenParams {
    /// Defaults for a base model: [`DEFAULT_TEMPLATE`] with [`DEFAULT_STOP`].
    pub fn base_model() -> Self {
        Self {
            prompt: PromptStyle::Template(DEFAULT_TEMPLATE.to_string()),
            stop: DEFAULT_STOP.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Checks ranges and template placeholders.
    ///
    /// # Errors
    /// [`GenerateError::InvalidParams`] or [`GenerateError::MissingPlaceholder`].
    pub fn validate(&self) -> Result<(), GenerateError> {
        let invalid = |m: String| Err(GenerateError::InvalidParams(m));
        if self.n_ctx == 0 {
            return invalid("n_ctx must be >= 1".into());
        }
        if self.max_tokens == 0 {
            return invalid("max_tokens must be >= 1".into());
        }
        if self.n_batch == 0 {
            return invalid("n_batch must be >= 1".into());
        }
        if self.threads < 1 {
            return invalid(format!("threads must be >= 1, got {}", self.threads));
        }
        for (name, value) in [
            ("rope_freq_base", self.rope_freq_base),
            ("rope_freq_scale", self.rope_freq_scale),
        ] {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return invalid(format!("{name} must be a positive number, got {v}"));
            }
        }
        self.sampling
            .validate()
            .map_err(GenerateError::InvalidParams)?;
        if self.stop.iter().any(String::is_empty) {
            return invalid("stop strings must not be empty".into());
        }
        if let PromptStyle::Template(t) = &self.prompt {
            check_placeholders(t)?;
        }
        Ok(())
    }
}

/// Threads llama.cpp uses when a model does not set `threads`: this machine's available
/// parallelism (cores the process may use), at least 1.
pub fn default_threads() -> i32 {
    std::thread::available_parallelism()
        .map(|n| i32::try_from(n.get()).unwrap_or(i32::MAX))
        .unwrap_or(1)
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    /// The model sampled an end-of-generation token (EOS, EOT, `<|im_end|>`, ...).
    Eos,
    /// A stop string appeared in the text.
    StopString,
    /// `max_tokens` tokens were generated.
    MaxTokens,
}

/// One generated answer with its measurements.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Generation {
    /// The answer, stop string removed, surrounding whitespace trimmed.
    pub text: String,
    /// The generated text as decoded, before the stop-string cut and trimming (it ends with the
    /// stop string when one stopped generation). Shows why an answer came out empty or short.
    #[serde(default)]
    pub raw: String,
    /// Tokens of the prompt actually decoded (special tokens included).
    pub prompt_tokens: u32,
    /// Sampled tokens, excluding a final end-of-generation token; at most `max_tokens`.
    pub completion_tokens: u32,
    /// Seconds from the start of prompt decoding to the first sampled token.
    pub ttft_s: f64,
    /// Seconds from the start of prompt decoding to the end of generation (>= `ttft_s`).
    pub response_s: f64,
    /// How many of the given contexts (a prefix, in rank order) fit in the prompt.
    pub contexts_used: usize,
    /// Why generation ended.
    pub stopped_by: StopReason,
}

/// A raw continuation with its token ids ([`Generator::complete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// Prompt token ids as decoded.
    pub prompt_tokens: Vec<i32>,
    /// Sampled token ids, excluding a final end-of-generation token.
    pub tokens: Vec<i32>,
    /// The generated text, stop string removed, not trimmed.
    pub text: String,
    /// Why generation ended.
    pub stopped_by: StopReason,
}

/// Static facts about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// Number of parameters.
    pub n_params: u64,
    /// Size of the weights in bytes.
    pub size_bytes: u64,
    /// Context length the model was trained with, tokens.
    pub n_ctx_train: u32,
    /// Whether the GGUF carries a chat template.
    pub has_chat_template: bool,
    /// `general.name (general.architecture)` from the GGUF metadata, or the file name.
    pub description: String,
}

/// A loaded model with its generation parameters.
pub struct Generator {
    backend: &'static LlamaBackend,
    model: LlamaModel,
    chat_template: Option<LlamaChatTemplate>,
    params: GenParams,
    path: PathBuf,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("path", &self.path)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The process-wide backend: llama.cpp allows one initialisation per process.
fn backend() -> Result<&'static LlamaBackend, GenerateError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| GenerateError::Backend(e.clone()))
}

/// Errors unless `path` exists and starts with the 4-byte GGUF magic.
fn check_gguf(path: &Path) -> Result<(), GenerateError> {
    use std::io::Read;
    if !path.is_file() {
        return Err(GenerateError::ModelNotFound(path.to_path_buf()));
    }
    let io = |source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(io)?;
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == b"GGUF" => Ok(()),
        Ok(()) => Err(GenerateError::NotGguf(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(GenerateError::NotGguf(path.to_path_buf()))
        }
        Err(e) => Err(io(e)),
    }
}

/// Errors if `template` lacks `{context}` or `{question}`.
fn check_placeholders(template: &str) -> Result<(), GenerateError> {
    if !template.contains(CONTEXT_PLACEHOLDER) {
        return Err(GenerateError::MissingPlaceholder(CONTEXT_PLACEHOLDER));
    }
    if !template.contains(QUESTION_PLACEHOLDER) {
        return Err(GenerateError::MissingPlaceholder(QUESTION_PLACEHOLDER));
    }
    Ok(())
}

/// Substitutes the placeholders in one left-to-right pass, so placeholder-like text inside the
/// context or the question is left alone.
pub fn render_template(template: &str, context: &str, question: &str) -> String {
    let mut out = String::with_capacity(template.len() + context.len() + question.len());
    let mut rest = template;
    loop {
        let next = [
            (rest.find(CONTEXT_PLACEHOLDER), CONTEXT_PLACEHOLDER, context),
            (
                rest.find(QUESTION_PLACEHOLDER),
                QUESTION_PLACEHOLDER,
                question,
            ),
        ]
        .into_iter()
        .filter_map(|(pos, ph, value)| pos.map(|p| (p, ph, value)))
        .min_by_key(|(p, _, _)| *p);
        match next {
            Some((pos, ph, value)) => {
                out.push_str(&rest[..pos]);
                out.push_str(value);
                rest = &rest[pos + ph.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Joins contexts in rank order, separated by [`CONTEXT_SEPARATOR`].
pub fn join_contexts(contexts: &[&str]) -> String {
    contexts.join(CONTEXT_SEPARATOR)
}

/// Byte offset of the earliest occurrence of any stop string in `text`, searching only after the
/// text's leading whitespace: a base model that opens its answer with a blank line (common after
/// `Answer:`) is not cut to an empty answer by a `"\n\n"` stop string.
pub fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    let lead = text.len() - text.trim_start().len();
    let body = &text[lead..];
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| body.find(s.as_str()))
        .min()
        .map(|i| lead + i)
}

/// Incremental UTF-8 decoder for token pieces: a multi-byte character split across tokens is
/// held back until complete; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes` and moves every complete character to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Incomplete sequence at the end: keep it for the next piece.
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Flushes an incomplete trailing sequence as U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
    }
}

/// A prompt fitted into the window.
struct FittedPrompt {
    tokens: Vec<LlamaToken>,
    contexts_used: usize,
}

impl Generator {
    /// Loads a GGUF model (CPU, memory-mapped) and checks `params` against it.
    ///
    /// # Errors
    /// [`GenerateError::ModelNotFound`], [`GenerateError::NotGguf`], [`GenerateError::Load`],
    /// invalid parameters, and [`GenerateError::MissingChatTemplate`] when `params.prompt` is
    /// [`PromptStyle::Chat`] but the model has no chat template.
    pub fn load(path: &Path, params: GenParams) -> Result<Self, GenerateError> {
        params.validate()?;
        check_gguf(path)?;
        let backend = backend()?;
        let started = Instant::now();
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|source| GenerateError::Load {
                path: path.to_path_buf(),
                source,
            })?;
        let chat_template = match model.chat_template(None) {
            Ok(t) => Some(t),
            Err(ChatTemplateError::MissingTemplate) => None,
            Err(e) => return Err(e.into()),
        };
        if params.prompt == PromptStyle::Chat && chat_template.is_none() {
            return Err(GenerateError::MissingChatTemplate(path.to_path_buf()));
        }
        if params.n_ctx > model.n_ctx_train() {
            tracing::warn!(
                n_ctx = params.n_ctx,
                n_ctx_train = model.n_ctx_train(),
                "n_ctx exceeds the model's training context"
            );
        }
        tracing::info!(path = %path.display(), load_s = started.elapsed().as_secs_f64(), "model loaded");
        Ok(Self {
            backend,
            model,
            chat_template,
            params,
            path: path.to_path_buf(),
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> &GenParams {
        &self.params
    }

    /// Replaces the parameters (e.g. another seed or stop list) without reloading the model.
    ///
    /// # Errors
    /// As [`GenParams::validate`], and [`GenerateError::MissingChatTemplate`] for
    /// [`PromptStyle::Chat`] on a model without a chat template; the old parameters stay.
    pub fn set_params(&mut self, params: GenParams) -> Result<(), GenerateError> {
        params.validate()?;
        if params.prompt == PromptStyle::Chat && self.chat_template.is_none() {
            return Err(GenerateError::MissingChatTemplate(self.path.clone()));
        }
        self.params = params;
        Ok(())
    }

    /// Facts about the loaded model.
    pub fn model_info(&self) -> ModelInfo {
        let arch = self.model.meta_val_str("general.architecture").ok();
        let name = self.model.meta_val_str("general.name").ok();
        let file = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let description = match (name, arch) {
            (Some(n), Some(a)) => format!("{n} ({a})"),
            (Some(n), None) => n,
            (None, Some(a)) => format!("{file} ({a})"),
            (None, None) => file,
        };
        ModelInfo {
            n_params: self.model.n_params(),
            size_bytes: self.model.size(),
            n_ctx_train: self.model.n_ctx_train(),
            has_chat_template: self.chat_template.is_some(),
            description,
        }
    }

    /// Number of tokens of `text` as the prompt tokenizer counts it (special tokens parsed, BOS
    /// added when the model wants one).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenize(text).len()
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    /// The full prompt text for a question and contexts (no truncation).
    ///
    /// # Errors
    /// Chat-template errors, or [`GenerateError::MissingChatTemplate`].
    pub fn build_prompt(&self, question: &str, contexts: &[&str]) -> Result<String, GenerateError> {
        let context = join_contexts(contexts);
        match &self.params.prompt {
            PromptStyle::Template(t) => Ok(render_template(t, &context, question)),
            PromptStyle::Chat => {
                let template = self
                    .chat_template
                    .as_ref()
                    .ok_or_else(|| GenerateError::MissingChatTemplate(self.path.clone()))?;
                let content = render_template(CHAT_INSTRUCTION, &context, question);
                let message = LlamaChatMessage::new("user".to_string(), content)?;
                Ok(self.model.apply_chat_template(template, &[message], true)?)
            }
        }
    }

    /// Keeps the longest prefix of `contexts` whose prompt leaves room for `max_tokens`.
    fn fit_prompt(&self, question: &str, contexts: &[&str]) -> Result<FittedPrompt, GenerateError> {
        let budget = self.params.n_ctx.saturating_sub(self.params.max_tokens) as usize;
        let mut last_len = 0;
        for used in (0..=contexts.len()).rev() {
            let tokens = self.tokenize(&self.build_prompt(question, &contexts[..used])?);
            if tokens.len() <= budget && !tokens.is_empty() {
                if used < contexts.len() {
                    tracing::debug!(
                        used,
                        given = contexts.len(),
                        "contexts truncated to fit n_ctx"
                    );
                }
                return Ok(FittedPrompt {
                    tokens,
                    contexts_used: used,
                });
            }
            last_len = tokens.len();
        }
        Err(GenerateError::QuestionTooLong {
            prompt_tokens: last_len,
            max_tokens: self.params.max_tokens,
            n_ctx: self.params.n_ctx,
        })
    }

    /// A fresh context sized by the parameters, flash attention off ([`FLASH_ATTN_DISABLED`]).
    fn new_context(&self) -> Result<LlamaContext<'_>, GenerateError> {
        self.context_with(1, self.params.n_batch.min(self.params.n_ctx))
    }

    /// A context for `parallel` sequences of `n_ctx` tokens each (non-unified KV cache of
    /// `parallel × n_ctx`) whose batches hold `n_batch` tokens.
    fn context_with(&self, parallel: u32, n_batch: u32) -> Result<LlamaContext<'_>, GenerateError> {
        let mut ctx_params = LlamaContextParams::default()
            .with_flash_attention_policy(FLASH_ATTN_DISABLED)
            .with_n_ctx(NonZeroU32::new(self.params.n_ctx.saturating_mul(parallel)))
            .with_n_seq_max(parallel)
            .with_kv_unified(false)
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(self.params.threads)
            .with_n_threads_batch(self.params.threads);
        if let Some(base) = self.params.rope_freq_base {
            ctx_params = ctx_params.with_rope_freq_base(base);
        }
        if let Some(scale) = self.params.rope_freq_scale {
            ctx_params = ctx_params.with_rope_freq_scale(scale);
        }
        Ok(self.model.new_context(self.backend, ctx_params)?)
    }

    /// A fresh llama.cpp sampler chain of the stages [`Sampling::chain`] lists, in its order
    /// (llama-cpp-python 0.3's), `min_keep` 1 as llama-cpp-python passes.
    fn new_sampler(&self) -> LlamaSampler {
        sampler_chain(&self.params.sampling, self.model.n_vocab())
    }

    /// Answers `question` from `contexts` (rank order; trailing ones are dropped if the prompt
    /// would not leave `max_tokens` free in `n_ctx`).
    ///
    /// # Errors
    /// [`GenerateError::QuestionTooLong`] if the prompt does not fit even without contexts;
    /// context creation, batch and decode errors from llama.cpp.
    pub fn answer(
        &mut self,
        question: &str,
        contexts: &[&str],
    ) -> Result<Generation, GenerateError> {
        let fitted = self.fit_prompt(question, contexts)?;
        let mut ctx = self.new_context()?;
        let mut sampler = self.new_sampler();
        let started = Instant::now();
        let last_idx = decode_prompt(&mut ctx, &fitted.tokens, self.params.n_batch)?;
        let out = self.generate(
            &mut ctx,
            &mut sampler,
            fitted.tokens.len(),
            last_idx,
            started,
        )?;
        let response_s = started.elapsed().as_secs_f64();
        Ok(Generation {
            text: out.text.trim().to_string(),
            raw: out.raw,
            prompt_tokens: u32::try_from(fitted.tokens.len()).unwrap_or(u32::MAX),
            completion_tokens: out.completion_tokens,
            ttft_s: out.ttft_s.unwrap_or(response_s).min(response_s),
            response_s,
            contexts_used: fitted.contexts_used,
            stopped_by: out.stopped_by,
        })
    }

    /// Continues a raw prompt (no template, no contexts): tokenised as llama-cpp-python's
    /// `create_completion` does (BOS added when the model wants one, special tokens parsed),
    /// then sampled with these parameters. For parity checks against llama-cpp-python, which
    /// compare token ids.
    ///
    /// # Errors
    /// [`GenerateError::QuestionTooLong`] when the prompt plus `max_tokens` exceeds `n_ctx`;
    /// context, batch and decode errors from llama.cpp.
    pub fn complete(&mut self, prompt: &str) -> Result<Completion, GenerateError> {
        let tokens = self.tokenize(prompt);
        self.check_budget(&tokens)?;
        let mut ctx = self.new_context()?;
        let mut sampler = self.new_sampler();
        let started = Instant::now();
        let last_idx = decode_prompt(&mut ctx, &tokens, self.params.n_batch)?;
        let out = self.generate(&mut ctx, &mut sampler, tokens.len(), last_idx, started)?;
        Ok(Completion {
            prompt_tokens: tokens.iter().map(|t| t.0).collect(),
            tokens: out.tokens,
            text: out.text,
            stopped_by: out.stopped_by,
        })
    }

    /// [`GenerateError::QuestionTooLong`] unless `tokens` is non-empty and leaves `max_tokens`
    /// free in `n_ctx`.
    fn check_budget(&self, tokens: &[LlamaToken]) -> Result<(), GenerateError> {
        let budget = self.params.n_ctx.saturating_sub(self.params.max_tokens) as usize;
        if tokens.is_empty() || tokens.len() > budget {
            return Err(GenerateError::QuestionTooLong {
                prompt_tokens: tokens.len(),
                max_tokens: self.params.max_tokens,
                n_ctx: self.params.n_ctx,
            });
        }
        Ok(())
    }

    /// Greedy chat completion under a GBNF grammar (root rule `root`): `system` and `user`
    /// become two messages of the GGUF's chat template, the assistant turn is opened, and every
    /// sampled token is the most likely token the grammar admits (llama.cpp's grammar sampler,
    /// then greedy), so the output is in the grammar's language unless `max_tokens` cuts it
    /// short ([`StopReason::MaxTokens`]; the caller treats that as an error). Stop strings of
    /// the parameters are ignored: generation ends at the end-of-generation token the grammar
    /// allows once it is complete. For LLM judges (see `crate::judge`).
    ///
    /// Decodes with [`GrammarSearch::ArgmaxFirst`], which picks the same tokens as masking the
    /// whole vocabulary ([`Generator::chat_constrained_with`] compares the two).
    ///
    /// # Errors
    /// [`GenerateError::MissingChatTemplate`], [`GenerateError::Grammar`],
    /// [`GenerateError::QuestionTooLong`] when the prompt plus `max_tokens` exceeds `n_ctx`;
    /// context, batch and decode errors from llama.cpp.
    pub fn chat_constrained(
        &mut self,
        system: &str,
        user: &str,
        grammar: &str,
    ) -> Result<Generation, GenerateError> {
        self.chat_constrained_with(system, user, grammar, GrammarSearch::ArgmaxFirst)
    }

    /// [`Generator::chat_constrained`] with an explicit way of applying the grammar: both
    /// [`GrammarSearch`] variants give the same tokens; `MaskAll` is kept as the reference the
    /// faster `ArgmaxFirst` is tested against (tests/it/judge.rs).
    ///
    /// # Errors
    /// As [`Generator::chat_constrained`].
    pub fn chat_constrained_with(
        &mut self,
        system: &str,
        user: &str,
        grammar: &str,
        search: GrammarSearch,
    ) -> Result<Generation, GenerateError> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| GenerateError::MissingChatTemplate(self.path.clone()))?;
        let messages = [
            LlamaChatMessage::new("system".to_string(), system.to_string())?,
            LlamaChatMessage::new("user".to_string(), user.to_string())?,
        ];
        let prompt = self.model.apply_chat_template(template, &messages, true)?;
        let tokens = self.tokenize(&prompt);
        self.check_budget(&tokens)?;
        let grammar = LlamaSampler::grammar(&self.model, grammar, "root")?;
        let mut picker: Box<dyn Pick> = match search {
            GrammarSearch::ArgmaxFirst => Box::new(GrammarGreedy { grammar }),
            GrammarSearch::MaskAll => Box::new(LlamaSampler::chain_simple([
                grammar,
                LlamaSampler::greedy(),
            ])),
        };
        let mut ctx = self.new_context()?;
        let started = Instant::now();
        let last_idx = decode_prompt(&mut ctx, &tokens, self.params.n_batch)?;
        let mut params = self.params.clone();
        params.stop.clear();
        let out = self.generate_with(
            &mut ctx,
            picker.as_mut(),
            tokens.len(),
            last_idx,
            started,
            &params,
        )?;
        let response_s = started.elapsed().as_secs_f64();
        Ok(Generation {
            text: out.text,
            raw: out.raw,
            prompt_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
            completion_tokens: out.completion_tokens,
            ttft_s: out.ttft_s.unwrap_or(response_s).min(response_s),
            response_s,
            contexts_used: 0,
            stopped_by: out.stopped_by,
        })
    }

    /// The sampling loop after the prompt is decoded.
    fn generate(
        &self,
        ctx: &mut LlamaContext<'_>,
        sampler: &mut LlamaSampler,
        prompt_len: usize,
        logits_idx: i32,
        started: Instant,
    ) -> Result<RawOutput, GenerateError> {
        self.generate_with(ctx, sampler, prompt_len, logits_idx, started, &self.params)
    }

    /// [`Generator::generate`] with explicit parameters (max_tokens, stop strings).
    fn generate_with(
        &self,
        ctx: &mut LlamaContext<'_>,
        sampler: &mut dyn Pick,
        prompt_len: usize,
        mut logits_idx: i32,
        started: Instant,
        params: &GenParams,
    ) -> Result<RawOutput, GenerateError> {
        let vocab = self.model.vocab();
        let mut batch = LlamaBatch::new(1, 1);
        let mut seq = SeqState::new(prompt_len);
        loop {
            let token = sampler.pick(ctx, logits_idx);
            if seq.accept(token, &vocab, params, started) == Step::Done {
                return Ok(seq.finish(params));
            }
            batch.clear();
            batch.add(token, seq.pos, &[0], true)?;
            ctx.decode(&mut batch)?;
            seq.pos += 1;
            logits_idx = 0;
        }
    }

    /// Answers many questions with up to `parallel` sequences decoding at once in one llama.cpp
    /// context (continuous batching, llama.cpp's `--parallel`): each sequence has its own
    /// `n_ctx` tokens of KV cache (a non-unified cache of `parallel × n_ctx`) and its own sampler
    /// chain seeded with its request's seed; when a sequence ends, its cache is cleared and its
    /// slot takes the next request. Every step is one `llama_decode` of one batch holding the
    /// next token of each generating sequence and the next prompt chunks (at most `n_batch`
    /// tokens each, as [`Generator::answer`] decodes them) of sequences still reading their
    /// prompts, up to [`batch_capacity`] tokens: on a CPU a decode call streams all the weights
    /// once whatever it holds, so small prompt chunks and single tokens of several sequences
    /// share that cost. Requests come from `driver.next()` and each result goes to
    /// `driver.done()` as soon as its sequence ends, so results arrive out of request order.
    ///
    /// Greedy answers equal [`Generator::answer`]'s up to floating-point differences between
    /// batched and single decoding (measured per model: tests/it/batched.rs, README "Batched
    /// generation"). `ttft_s` and `response_s` of a batched answer are measured from when its
    /// slot took it and include the other sequences' work, so they are not latencies of a
    /// question decoded alone.
    ///
    /// # Errors
    /// Per request (to `driver.done`): [`GenerateError::QuestionTooLong`], template errors, and
    /// [`GenerateError::Step`] for a decode step that request was in. The call itself fails
    /// only when the context cannot be created ([`GenerateError::Context`]) or a batch cannot
    /// hold its tokens ([`GenerateError::Batch`]).
    pub fn answer_many(
        &mut self,
        parallel: u32,
        driver: &mut dyn BatchDriver,
    ) -> Result<(), GenerateError> {
        let parallel = parallel.max(1);
        let capacity = batch_capacity(self.params.n_batch.min(self.params.n_ctx), parallel);
        let mut ctx = self.context_with(parallel, capacity)?;
        let vocab = self.model.vocab();
        let chunk = self.params.n_batch.min(self.params.n_ctx).max(1) as usize;
        let mut slots: Vec<Option<Slot>> = (0..parallel).map(|_| None).collect();
        let mut batch = LlamaBatch::new(capacity as usize, 1);
        let mut exhausted = false;
        loop {
            for slot in slots.iter_mut() {
                while slot.is_none() && !exhausted {
                    let Some((tag, request)) = driver.next() else {
                        exhausted = true;
                        break;
                    };
                    match self.start_slot(tag, &request) {
                        Ok(s) => *slot = Some(s),
                        Err(e) => driver.done(tag, Err(e)),
                    }
                }
            }
            if slots.iter().all(Option::is_none) {
                return Ok(());
            }
            // generating sequences first (one token each), then prompt chunks while room is left
            batch.clear();
            let mut room = capacity as usize;
            for (seq_id, slot) in slots.iter_mut().enumerate() {
                if let Some(slot) = slot.as_mut() {
                    slot.ready = false;
                    if let Some(token) = slot.next.take() {
                        batch.add(token, slot.seq.pos, &[seq_id as i32], true)?;
                        slot.seq.pos += 1;
                        slot.logits_idx = batch.n_tokens() - 1;
                        slot.ready = true;
                        room -= 1;
                    }
                }
            }
            for (seq_id, slot) in slots.iter_mut().enumerate() {
                let Some(slot) = slot.as_mut() else { continue };
                if slot.read >= slot.prompt.len() || room == 0 {
                    continue;
                }
                let take = chunk.min(room).min(slot.prompt.len() - slot.read);
                for i in slot.read..slot.read + take {
                    let last = i + 1 == slot.prompt.len();
                    let pos = i32::try_from(i).unwrap_or(i32::MAX);
                    batch.add(slot.prompt[i], pos, &[seq_id as i32], last)?;
                }
                slot.read += take;
                room -= take;
                if slot.read == slot.prompt.len() {
                    slot.logits_idx = batch.n_tokens() - 1;
                    slot.ready = true;
                }
            }
            if let Err(e) = ctx.decode(&mut batch) {
                // the step failed for every sequence in it: each request fails with the error
                let message = e.to_string();
                for (seq_id, slot) in slots.iter_mut().enumerate() {
                    if let Some(slot) = slot.take() {
                        let _ = ctx.clear_kv_cache_seq(Some(seq_id as u32), None, None);
                        driver.done(slot.tag, Err(GenerateError::Step(message.clone())));
                    }
                }
                continue;
            }
            for (seq_id, entry) in slots.iter_mut().enumerate() {
                let Some(slot) = entry.as_mut().filter(|s| s.ready) else {
                    continue;
                };
                let token = slot.sampler.sample(&ctx, slot.logits_idx);
                if slot.seq.accept(token, &vocab, &self.params, slot.started) == Step::Done {
                    if let Some(done) = entry.take() {
                        let _ = ctx.clear_kv_cache_seq(Some(seq_id as u32), None, None);
                        self.finish_slot(done, driver);
                    }
                } else {
                    slot.next = Some(token);
                }
            }
        }
    }

    /// Fits `request`'s prompt (tokens to decode from position 0) and builds its sampler.
    fn start_slot(&self, tag: usize, request: &BatchRequest) -> Result<Slot, GenerateError> {
        let contexts: Vec<&str> = request.contexts.iter().map(String::as_str).collect();
        let fitted = self.fit_prompt(&request.question, &contexts)?;
        let mut sampling = self.params.sampling.clone();
        sampling.seed = i64::from(request.seed);
        sampling.seed_mode = None;
        Ok(Slot {
            tag,
            sampler: sampler_chain(&sampling, self.model.n_vocab()),
            seq: SeqState::new(fitted.tokens.len()),
            logits_idx: 0,
            ready: false,
            next: None,
            started: Instant::now(),
            prompt_tokens: fitted.tokens.len(),
            contexts_used: fitted.contexts_used,
            prompt: fitted.tokens,
            read: 0,
        })
    }

    /// Hands a finished sequence's answer to the driver.
    fn finish_slot(&self, slot: Slot, driver: &mut dyn BatchDriver) {
        let response_s = slot.started.elapsed().as_secs_f64();
        let out = slot.seq.finish(&self.params);
        driver.done(
            slot.tag,
            Ok(Generation {
                text: out.text.trim().to_string(),
                raw: out.raw,
                prompt_tokens: u32::try_from(slot.prompt_tokens).unwrap_or(u32::MAX),
                completion_tokens: out.completion_tokens,
                ttft_s: out.ttft_s.unwrap_or(response_s).min(response_s),
                response_s,
                contexts_used: slot.contexts_used,
                stopped_by: out.stopped_by,
            }),
        );
    }
}

/// Generated text before trimming, with counters.
struct RawOutput {
    /// Sampled token ids, excluding a final end-of-generation token.
    tokens: Vec<i32>,
    text: String,
    /// `text` before the stop-string cut.
    raw: String,
    completion_tokens: u32,
    ttft_s: Option<f64>,
    stopped_by: StopReason,
}

/// One question for [`Generator::answer_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    /// The question text.
    pub question: String,
    /// Retrieved contexts, best first (trailing ones may be dropped to fit `n_ctx`).
    pub contexts: Vec<String>,
    /// The sampling seed of this answer (the dist stage's seed; unused when greedy).
    pub seed: u32,
}

/// Feeds [`Generator::answer_many`] and receives its answers.
pub trait BatchDriver {
    /// The next request with a caller-chosen tag, or `None` when there are no more.
    fn next(&mut self) -> Option<(usize, BatchRequest)>;
    /// The result for the request tagged `tag` (called once per request, in finishing order).
    fn done(&mut self, tag: usize, result: Result<Generation, GenerateError>);
}

/// A sequence in flight in [`Generator::answer_many`].
struct Slot {
    tag: usize,
    sampler: LlamaSampler,
    seq: SeqState,
    /// Index in the last decoded batch of this sequence's logits (valid when `ready`).
    logits_idx: i32,
    /// Whether the last decoded batch produced logits for this sequence to sample from.
    ready: bool,
    /// Sampled token still to be decoded.
    next: Option<LlamaToken>,
    started: Instant,
    prompt_tokens: usize,
    contexts_used: usize,
    /// The fitted prompt's tokens.
    prompt: Vec<LlamaToken>,
    /// How many of them are decoded.
    read: usize,
}

/// Tokens one step of [`Generator::answer_many`] may hold for `parallel` sequences with prompt
/// chunks of `n_batch`: a full prompt chunk of every sequence up to 512 tokens in all, and at
/// least one chunk plus one token per other sequence. LangChain's n_batch 8 with 4 sequences:
/// 32 tokens; n_batch 512: 512 (prompts then take turns).
pub fn batch_capacity(n_batch: u32, parallel: u32) -> u32 {
    let n_batch = n_batch.max(1);
    (n_batch.saturating_mul(parallel).min(512)).max(n_batch + parallel)
}

/// Whether a sequence goes on after a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Continue,
    Done,
}

/// How a grammar constrains greedy decoding ([`Generator::chat_constrained_with`]). Both pick,
/// at every step, the highest-logit token the grammar admits (the first such token in vocabulary
/// order on ties, as llama.cpp's greedy sampler), so they give the same output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrammarSearch {
    /// Take the unconstrained argmax and ask the grammar about that one token, as llama.cpp's own
    /// `common_sampler_sample` does (grammar_first = false); when the grammar rejects it, ask
    /// about the 64 most likely tokens and take the first admissible one; only when it rejects
    /// all of them, mask the whole vocabulary. Checking one or 64 candidates instead of every
    /// vocabulary entry (151,936 for Qwen2.5) makes judge calls several times faster.
    ArgmaxFirst,
    /// Mask the whole vocabulary with the grammar at every step, then take the argmax
    /// (`llama_sampler_chain` of grammar and greedy). The reference for `ArgmaxFirst`.
    MaskAll,
}

/// Picks the next token from the logits at output index `idx` of the last decode, and records
/// it in the picker's state (grammar position, penalty history).
trait Pick {
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken;
}

impl Pick for LlamaSampler {
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        self.sample(ctx, idx)
    }
}

/// [`GrammarSearch::ArgmaxFirst`]: greedy under a llama.cpp grammar sampler, consulting the
/// grammar on the unconstrained argmax first.
struct GrammarGreedy {
    grammar: LlamaSampler,
}

impl Pick for GrammarGreedy {
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        let logits = ctx.get_logits_ith(idx);
        let best = first_argmax(logits.iter().copied());
        let token = first_admissible(&mut self.grammar, logits, &[best])
            .or_else(|| first_admissible(&mut self.grammar, logits, &top_k(logits, SHORTLIST)))
            .unwrap_or_else(|| {
                let mut all = ctx.token_data_array_ith(idx);
                self.grammar.apply(&mut all);
                all.data[first_argmax(all.data.iter().map(|d| d.logit()))].id()
            });
        self.grammar.accept(token);
        token
    }
}

/// How many of the most likely tokens [`GrammarGreedy`] shows the grammar when it rejects the
/// argmax, before it masks the whole vocabulary.
const SHORTLIST: usize = 64;

/// The first of `candidates` (vocabulary indices, best first) that the grammar admits in its
/// current state; `None` when it admits none. The grammar's state is not advanced.
fn first_admissible(
    grammar: &mut LlamaSampler,
    logits: &[f32],
    candidates: &[usize],
) -> Option<LlamaToken> {
    let mut shortlist = LlamaTokenDataArray::new(
        candidates
            .iter()
            .map(|&i| LlamaTokenData::new(token_at(i), logits[i], 0.0))
            .collect(),
        false,
    );
    // the grammar sampler sets the logit of every token it rejects to -inf, in place
    grammar.apply(&mut shortlist);
    shortlist
        .data
        .iter()
        .find(|d| d.logit() > f32::NEG_INFINITY)
        .map(|d| d.id())
}

/// The indices of the `k` largest logits, best first; equal logits in vocabulary order, as
/// llama.cpp's greedy sampler breaks ties ([`first_argmax`]). So when the grammar admits one of
/// them, the first admitted is the most likely admissible token of the whole vocabulary.
fn top_k(logits: &[f32], k: usize) -> Vec<usize> {
    // + 0.0 turns -0.0 into 0.0, so total_cmp ranks equal logits as equal, as greedy's `>` does
    let scores: Vec<f64> = logits.iter().map(|&l| f64::from(l) + 0.0).collect();
    crate::index::okapi::top_n_of(&scores, k)
        .into_iter()
        .map(|(i, _)| i as usize)
        .collect()
}

/// The token with vocabulary index `i`.
fn token_at(i: usize) -> LlamaToken {
    LlamaToken(i32::try_from(i).unwrap_or(i32::MAX))
}

/// Index of the first maximum of `values` (llama.cpp's greedy sampler: a later equal value does
/// not replace the first); 0 for an empty sequence.
fn first_argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 || i == 0 {
            best = (i, v);
        }
    }
    best.0
}

/// One sequence's output so far: tokens, text, stop handling. Shared by single and batched
/// decoding so both stop on exactly the same conditions.
struct SeqState {
    out: RawOutput,
    decoder: Utf8Stream,
    /// Position of the next token to decode.
    pos: i32,
}

impl SeqState {
    fn new(prompt_len: usize) -> SeqState {
        SeqState {
            out: RawOutput {
                tokens: Vec::new(),
                text: String::new(),
                raw: String::new(),
                completion_tokens: 0,
                ttft_s: None,
                stopped_by: StopReason::MaxTokens,
            },
            decoder: Utf8Stream::default(),
            pos: i32::try_from(prompt_len).unwrap_or(i32::MAX),
        }
    }

    /// Takes a sampled token: records the first-token time, then ends the sequence on an
    /// end-of-generation token, a stop string or the `max_tokens` budget.
    fn accept(
        &mut self,
        token: LlamaToken,
        vocab: &llama_cpp_2::vocab::LlamaVocab<'_>,
        params: &GenParams,
        started: Instant,
    ) -> Step {
        let out = &mut self.out;
        out.ttft_s
            .get_or_insert_with(|| started.elapsed().as_secs_f64());
        if vocab.is_eog(token) {
            out.stopped_by = StopReason::Eos;
            return Step::Done;
        }
        out.completion_tokens += 1;
        out.tokens.push(token.0);
        self.decoder
            .push(&vocab.token_to_piece(token, false, None), &mut out.text);
        if let Some(cut) = find_stop(&out.text, &params.stop) {
            out.raw = out.text.clone();
            out.text.truncate(cut);
            out.stopped_by = StopReason::StopString;
            return Step::Done;
        }
        if out.completion_tokens >= params.max_tokens {
            return Step::Done;
        }
        Step::Continue
    }

    /// The output: an incomplete UTF-8 tail flushed and a stop string in it cut (unless a stop
    /// string already ended the sequence).
    fn finish(mut self, params: &GenParams) -> RawOutput {
        let mut out = self.out;
        if out.stopped_by == StopReason::StopString {
            return out;
        }
        self.decoder.finish(&mut out.text);
        out.raw = out.text.clone();
        if let Some(cut) = find_stop(&out.text, &params.stop) {
            out.text.truncate(cut);
            out.stopped_by = StopReason::StopString;
        }
        out
    }
}

/// A llama.cpp sampler chain of the stages [`Sampling::chain`] lists, in its order
/// (llama-cpp-python 0.3's), `min_keep` 1 as llama-cpp-python passes.
fn sampler_chain(sampling: &Sampling, n_vocab: i32) -> LlamaSampler {
    let stages = sampling.chain().into_iter().map(|stage| match stage {
        Stage::Penalties {
            last_n,
            repeat,
            frequency,
            presence,
        } => LlamaSampler::penalties(n_vocab, last_n, repeat, frequency, presence),
        Stage::TopK(k) => LlamaSampler::top_k(k),
        Stage::Typical(p) => LlamaSampler::typical(p, 1),
        Stage::TopP(p) => LlamaSampler::top_p(p, 1),
        Stage::MinP(p) => LlamaSampler::min_p(p, 1),
        Stage::Temperature(t) => LlamaSampler::temp(t),
        Stage::Dist(seed) => LlamaSampler::dist(seed),
        Stage::Greedy => LlamaSampler::greedy(),
    });
    LlamaSampler::chain(stages, true)
}

/// Decodes the prompt in chunks of `n_batch` tokens (sequence 0, positions from 0), requesting
/// logits for the last token only. Returns that token's index within the last batch.
fn decode_prompt(
    ctx: &mut LlamaContext<'_>,
    tokens: &[LlamaToken],
    n_batch: u32,
) -> Result<i32, GenerateError> {
    let chunk_len = (ctx.n_batch().min(n_batch).max(1)) as usize;
    let mut batch = LlamaBatch::new(chunk_len, 1);
    let mut last_idx = 0;
    for (chunk_no, chunk) in tokens.chunks(chunk_len).enumerate() {
        batch.clear();
        let base = chunk_no * chunk_len;
        for (i, token) in chunk.iter().enumerate() {
            let pos = i32::try_from(base + i).unwrap_or(i32::MAX);
            let is_last = base + i + 1 == tokens.len();
            batch.add(*token, pos, &[0], is_last)?;
        }
        ctx.decode(&mut batch)?;
        last_idx = batch.n_tokens() - 1;
    }
    Ok(last_idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ranks_by_logit_then_vocabulary_order() {
        let logits = [0.5, 2.0, -1.0, 2.0, 1.0, f32::NEG_INFINITY];
        assert_eq!(top_k(&logits, 3), vec![1, 3, 4]);
        assert_eq!(
            top_k(&logits, 1),
            vec![first_argmax(logits.iter().copied())]
        );
        assert_eq!(top_k(&logits, 10), vec![1, 3, 4, 0, 2, 5]);
        assert!(top_k(&logits, 0).is_empty());
    }

    #[test]
    fn first_argmax_keeps_the_first_of_equal_maxima() {
        assert_eq!(first_argmax([1.0, 3.0, 2.0, 3.0].into_iter()), 1);
        assert_eq!(first_argmax([f32::NEG_INFINITY, -5.0].into_iter()), 1);
        // everything masked: the first entry, as llama.cpp's greedy would select
        assert_eq!(first_argmax([f32::NEG_INFINITY; 3].into_iter()), 0);
        assert_eq!(first_argmax(std::iter::empty()), 0);
    }

    #[test]
    fn render_substitutes_once_and_leaves_placeholder_text_in_values() {
        let out = render_template("C={context} Q={question}", "ctx {question}", "why?");
        assert_eq!(out, "C=ctx {question} Q=why?");
    }

    #[test]
    fn render_handles_question_first_and_repeats() {
        let out = render_template("{question}|{context}|{question}", "c", "q");
        assert_eq!(out, "q|c|q");
    }

    #[test]
    fn placeholders_are_required() {
        assert!(matches!(
            check_placeholders("only {question}"),
            Err(GenerateError::MissingPlaceholder("{context}"))
        ));
        assert!(matches!(
            check_placeholders("only {context}"),
            Err(GenerateError::MissingPlaceholder("{question}"))
        ));
        assert!(check_placeholders(DEFAULT_TEMPLATE).is_ok());
        assert!(check_placeholders(CHAT_INSTRUCTION).is_ok());
    }

    #[test]
    fn validate_rejects_bad_ranges() {
        let bad = [
            GenParams {
                max_tokens: 0,
                ..GenParams::default()
            },
            GenParams {
                n_ctx: 0,
                ..GenParams::default()
            },
            GenParams {
                threads: 0,
                ..GenParams::default()
            },
            GenParams {
                sampling: Sampling {
                    top_p: 0.0,
                    ..Sampling::default()
                },
                ..GenParams::default()
            },
            GenParams {
                sampling: Sampling {
                    temperature: f32::NAN,
                    ..Sampling::default()
                },
                ..GenParams::default()
            },
            GenParams {
                stop: vec![String::new()],
                ..GenParams::default()
            },
            GenParams {
                prompt: PromptStyle::Template("no slots".into()),
                ..GenParams::default()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?} should be rejected");
        }
        assert!(GenParams::default().validate().is_ok());
        assert!(GenParams::base_model().validate().is_ok());
    }

    #[test]
    fn find_stop_returns_earliest_of_all_strings() {
        let stop = vec!["\nQuestion:".to_string(), "\n\n".to_string()];
        assert_eq!(find_stop("abc\nQuestion: x\n\n", &stop), Some(3));
        assert_eq!(find_stop("ab\n\ncd\nQuestion:", &stop), Some(2));
        assert_eq!(find_stop("plain", &stop), None);
        // leading whitespace never counts as a stop: the answer has not started yet
        assert_eq!(
            find_stop("\n\nThe port is 9101.\n\nQuestion:", &stop),
            Some(19)
        );
        assert_eq!(find_stop("\n\n", &stop), None);
    }

    #[test]
    fn utf8_stream_joins_split_characters() {
        let bytes = "héllo €".as_bytes();
        let mut out = String::new();
        let mut d = Utf8Stream::default();
        for b in bytes {
            d.push(std::slice::from_ref(b), &mut out);
        }
        d.finish(&mut out);
        assert_eq!(out, "héllo €");
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes_and_flushes_incomplete_tail() {
        let mut out = String::new();
        let mut d = Utf8Stream::default();
        d.push(&[b'a', 0xff, b'b', 0xe2, 0x82], &mut out);
        assert_eq!(out, "a\u{fffd}b");
        d.finish(&mut out);
        assert_eq!(out, "a\u{fffd}b\u{fffd}");
    }

    #[test]
    fn missing_and_non_gguf_files_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.gguf");
        assert!(matches!(
            Generator::load(&missing, GenParams::default()),
            Err(GenerateError::ModelNotFound(_))
        ));
        let fake = dir.path().join("fake.gguf");
        std::fs::write(&fake, b"not a model at all").expect("write");
        assert!(matches!(
            Generator::load(&fake, GenParams::default()),
            Err(GenerateError::NotGguf(_))
        ));
        let tiny = dir.path().join("tiny.gguf");
        std::fs::write(&tiny, b"GG").expect("write");
        assert!(matches!(check_gguf(&tiny), Err(GenerateError::NotGguf(_))));
    }
}
