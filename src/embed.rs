//! Sentence embeddings with all-MiniLM-L6-v2 (or any BERT sentence-transformers model) on the CPU
//! through candle. This module owns the whole pipeline: tokenise (truncate to `max_seq_length`),
//! run a BERT encoder, mean-pool over the real tokens, L2-normalise — sentence-transformers'
//! `Transformer → Pooling(mean) → Normalize`, matched to 1e-5 per component (tests/it/retrieval.rs,
//! tests/it/embed_parity.rs).
//!
//! The encoder is our own padding-free ("packed", variable-length) forward pass over the weights of
//! a Hugging Face `BertModel` checkpoint, rather than `candle_transformers::models::bert::BertModel`:
//! the tokens of a batch of texts are concatenated into one `[tokens, hidden]` matrix, so every
//! dense layer is a single large matmul with no padding rows, and self-attention runs per text on
//! `[heads, len, len]` scores with no attention mask. Padding positions never influence the real
//! tokens in BERT (their attention weight is exactly 0 after the masked softmax, and pooling
//! ignores them), so this computes the same function as the padded pass, up to float rounding.
//!
//! Why not candle-transformers' `BertModel` with padded batches (measured on this 2-core machine,
//! 256 chunks of 500 characters, under load): it spent ~1/3 of its CPU time in the kernel
//! (4.8 M minor page faults, ~19,000 per chunk) because it allocated `[batch, heads, seq, seq]`
//! f32 tensors — 32 × 12 × 256² × 4 B = 100 MB for full-length texts — several times per layer.
//! Blocks above glibc's 32 MiB mmap ceiling are always fresh mmaps, so every one was page-faulted
//! and zeroed by the kernel, serialising the threads. The packed pass keeps every buffer at a few
//! MB (see [`MAX_BATCH_TOKENS`]) and does no work on padding. Two scalar libm loops were the next
//! hot spots once the faults were gone: GELU's `erf` (~20% of the time) and softmax's `exp` (~13%);
//! both now use vectorisable f32 approximations (`BiasGeluErf`, `SoftmaxLastDim`) whose error
//! (<= 5e-7) is far inside the 1e-5 parity tolerance. Finally, glibc returned freed heap memory to
//! the kernel after every layer (the trim threshold follows the largest freed block), so the same
//! pages were faulted in again and again; [`Embedder::load`] pins the malloc thresholds (see
//! `tune_glibc_malloc`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

/// Upper bound on the number of real tokens (summed over texts) in one forward pass. Texts are
/// sorted by token count and packed greedily up to this budget (a single text longer than the
/// budget still gets a pass of its own). 2048 tokens keep the largest buffer (`[tokens,
/// intermediate_size]` f32, 12.6 MB for MiniLM) below glibc's 32 MiB mmap threshold, so it comes
/// from the reused heap rather than fresh pages, while each dense matmul stays large enough to
/// keep both cores busy.
pub const MAX_BATCH_TOKENS: usize = 2048;

/// Truncation length in tokens (incl. `[CLS]`/`[SEP]`) when the model directory has no
/// `sentence_bert_config.json` (all-MiniLM-L6-v2 ships one with 256).
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// Errors from loading the embedding model or running it.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` or `sentence_bert_config.json` is not valid.
    #[error("invalid model config {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A candle tensor operation failed (weights missing, shape mismatch, ...).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The part of `sentence_bert_config.json` we use.
#[derive(Debug, serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A loaded BERT sentence embedder (CPU, f32). Cheap to share by reference; `embed` takes `&self`.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    dim: usize,
    max_seq_length: usize,
    fingerprint: String,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Embedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from `model_dir`, and the
    /// truncation length from `sentence_bert_config.json` (`max_seq_length`, default
    /// [`DEFAULT_MAX_SEQ_LENGTH`]). The tokenizer's own padding/truncation (128 fixed in the shipped
    /// all-MiniLM-L6-v2 file) is replaced by: truncate to `max_seq_length` tokens, no padding (the
    /// encoder is padding-free). Also hashes the weights and tokenizer for [`Self::fingerprint`].
    ///
    /// Errors: [`EmbedError::Io`] for a missing/unreadable file, [`EmbedError::Config`],
    /// [`EmbedError::Tokenizer`], [`EmbedError::Candle`] if the weights do not fit the config or
    /// `max_seq_length` exceeds the model's position embeddings.
    pub fn load(model_dir: &Path) -> Result<Embedder, EmbedError> {
        let config_path = model_dir.join("config.json");
        let weights_path = model_dir.join("model.safetensors");
        let tokenizer_path = model_dir.join("tokenizer.json");
        let config: Config = read_json(&config_path)?;
        let max_seq_length = read_max_seq_length(model_dir)?;
        if max_seq_length > config.max_position_embeddings {
            return Err(EmbedError::Candle(candle_core::Error::Msg(format!(
                "max_seq_length {max_seq_length} exceeds max_position_embeddings {}",
                config.max_position_embeddings
            ))));
        }
        let fingerprint = fingerprint_dir(model_dir)?;
        let tokenizer = load_tokenizer(&tokenizer_path, max_seq_length)?;
        tune_glibc_malloc();
        // Fail with Io (not a candle error) when the weights are missing.
        std::fs::metadata(&weights_path).map_err(|source| EmbedError::Io {
            path: weights_path.clone(),
            source,
        })?;
        // SAFETY: the safetensors file is memory-mapped only while the weights are copied into
        // tensors below; we do not modify it and the map is dropped with `vb` at the end of `load`.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &Device::Cpu)?
        };
        let model = Bert::load(vb, &config)?;
        tracing::info!(
            dir = %model_dir.display(),
            dim = config.hidden_size,
            max_seq_length,
            "loaded embedding model"
        );
        Ok(Embedder {
            model,
            tokenizer,
            dim: config.hidden_size,
            max_seq_length,
            fingerprint,
        })
    }

    /// Embedding dimension (hidden size; 384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Truncation length in tokens, including `[CLS]` and `[SEP]`.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Hex SHA-256 identifying the model: [`fingerprint_dir`] of its directory (weights,
    /// tokenizer, config and sentence-transformers config). Computed once at load.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Embeds `texts`; returns one L2-normalised vector of [`Self::dim`] f32s per text, in input
    /// order. Texts longer than `max_seq_length` tokens are truncated (as sentence-transformers
    /// does). All texts are tokenised first, then sorted by token count, longest first, and packed
    /// into forward passes of at most [`MAX_BATCH_TOKENS`] tokens; results are restored to input
    /// order. A text's vector does not depend on which other texts share its pass (up to float
    /// rounding). An empty text embeds `[CLS] [SEP]`. An empty slice gives an empty vector.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let lengths: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in token_batches(&lengths, MAX_BATCH_TOKENS) {
            let seqs: Vec<&[u32]> = batch.iter().map(|&i| encodings[i].get_ids()).collect();
            let vectors = self.embed_packed(&seqs)?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Embeds one text (see [`Self::embed`]).
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.embed(&[text])?;
        v.pop()
            .ok_or_else(|| EmbedError::Tokenizer("no output for a single text".into()))
    }

    /// One forward pass over the token ids of several texts (each non-empty, as the tokenizer adds
    /// `[CLS]`/`[SEP]`), packed into one `[tokens, hidden]` matrix; returns the pooled, normalised
    /// vectors in the order of `seqs`.
    fn embed_packed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        // Each text's positions restart at 0; all token types are 0 (single-segment input).
        let positions: Vec<u32> = lens.iter().flat_map(|&n| 0..n as u32).collect();
        let ids = Tensor::new(ids.as_slice(), &Device::Cpu)?;
        let positions = Tensor::new(positions.as_slice(), &Device::Cpu)?;
        let hidden = self.model.forward(&ids, &positions, &lens)?;
        let pooled = mean_pool(&hidden, &lens)?;
        let normed = l2_normalize(&pooled)?;
        Ok(normed.to_vec2::<f32>()?)
    }
}

/// Groups the indices of sequences with token counts `lens` into forward passes: sorted by count,
/// longest first (ties keep input order), each pass filled greedily up to `max_tokens` tokens; a
/// sequence longer than `max_tokens` gets a pass of its own.
fn token_batches(lens: &[usize], max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut tokens = 0;
    for i in order {
        if !current.is_empty() && tokens + lens[i] > max_tokens {
            batches.push(std::mem::take(&mut current));
            tokens = 0;
        }
        current.push(i);
        tokens += lens[i];
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Mean over the rows of each sequence in packed `hidden` `[tokens, dim]` (sequences of `lens`
/// rows, back to back) → `[sequences, dim]`. Every row is a real token, so this is
/// sentence-transformers' masked mean (sum over mask-1 positions / mask count).
fn mean_pool(hidden: &Tensor, lens: &[usize]) -> Result<Tensor, EmbedError> {
    let mut rows = Vec::with_capacity(lens.len());
    let mut start = 0;
    for &n in lens {
        rows.push((hidden.narrow(0, start, n)?.sum_keepdim(0)? / n.max(1) as f64)?);
        start += n;
    }
    Ok(Tensor::cat(&rows, 0)?)
}

/// Row-wise L2 normalisation of `[batch, dim]` with norm clamped to >= 1e-12
/// (torch.nn.functional.normalize, used by sentence-transformers' Normalize module).
fn l2_normalize(x: &Tensor) -> Result<Tensor, EmbedError> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    Ok(x.broadcast_div(&norms)?)
}

/// A BERT encoder (Hugging Face `BertModel` weights, without the pooler) that runs on packed,
/// unpadded sequences. Mirrors `transformers`' BertModel in eval mode (dropout off) for inputs with
/// token type 0 and an all-ones attention mask, which is what sentence-transformers feeds it once
/// padding is discarded.
struct Bert {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
}

/// One transformer block: self-attention with fused Q/K/V, then the feed-forward network, each
/// followed by residual + LayerNorm (post-norm, as BERT).
struct BertLayer {
    /// Q, K and V projections stacked into one `[3 * hidden, hidden]` linear layer.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    activation: HiddenAct,
    output: Linear,
    output_norm: LayerNorm,
    num_heads: usize,
    head_dim: usize,
}

impl Bert {
    /// Loads the weights; accepts the checkpoint's tensors at the root, under `bert.`, or under
    /// `<model_type>.` (as candle-transformers' `BertModel::load`).
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Bert> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            match &config.model_type {
                Some(t)
                    if vb.contains_tensor(&format!("{t}.embeddings.word_embeddings.weight")) =>
                {
                    vb.pp(t)
                }
                _ => vb,
            }
        };
        let hidden = config.hidden_size;
        let emb = vb.pp("embeddings");
        let embedding = |n: usize, name: &str| candle_nn::embedding(n, hidden, emb.pp(name));
        let word_embeddings = embedding(config.vocab_size, "word_embeddings")?;
        let position_embeddings = embedding(config.max_position_embeddings, "position_embeddings")?;
        let token_type_embeddings = embedding(config.type_vocab_size, "token_type_embeddings")?;
        let embeddings_norm =
            candle_nn::layer_norm(hidden, config.layer_norm_eps, emb.pp("LayerNorm"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::load(vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Bert {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm,
            layers,
        })
    }

    /// Last hidden state `[tokens, hidden]` for packed token `ids` `[tokens]` with per-sequence
    /// `positions` `[tokens]`; `lens` gives the sequences' lengths, back to back.
    fn forward(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        lens: &[usize],
    ) -> candle_core::Result<Tensor> {
        let words = self.word_embeddings.forward(ids)?;
        // Token type 0 for every token: add row 0 of the token-type table.
        let token_type = self.token_type_embeddings.embeddings().narrow(0, 0, 1)?;
        let embeddings =
            (words.broadcast_add(&token_type)? + self.position_embeddings.forward(positions)?)?;
        let mut hidden = self.embeddings_norm.forward(&embeddings)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, lens)?;
        }
        Ok(hidden)
    }
}

impl BertLayer {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<BertLayer> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let num_heads = config.num_attention_heads;
        if num_heads == 0 || !hidden.is_multiple_of(num_heads) {
            candle_core::bail!("hidden_size {hidden} not divisible by {num_heads} heads");
        }
        let head_dim = hidden / num_heads;
        let attn = vb.pp("attention");
        let projection = |name: &str| candle_nn::linear(hidden, hidden, attn.pp("self").pp(name));
        let (q, k, v) = (
            projection("query")?,
            projection("key")?,
            projection("value")?,
        );
        let (Some(q_bias), Some(k_bias), Some(v_bias)) = (q.bias(), k.bias(), v.bias()) else {
            candle_core::bail!("attention projections without bias");
        };
        // Fold the 1/sqrt(head_dim) score scaling into the query projection. For head_dim 64 the
        // factor is 1/8, a power of two, so the scores are bit-identical to scaling them after.
        let scale = 1.0 / (head_dim as f64).sqrt();
        let weight = Tensor::cat(&[&(q.weight() * scale)?, k.weight(), v.weight()], 0)?;
        let bias = Tensor::cat(&[&(q_bias * scale)?, k_bias, v_bias], 0)?;
        Ok(BertLayer {
            qkv: Linear::new(weight, Some(bias)),
            attention_out: candle_nn::linear(hidden, hidden, attn.pp("output.dense"))?,
            attention_norm: candle_nn::layer_norm(hidden, eps, attn.pp("output.LayerNorm"))?,
            intermediate: candle_nn::linear(
                hidden,
                config.intermediate_size,
                vb.pp("intermediate.dense"),
            )?,
            activation: config.hidden_act,
            output: candle_nn::linear(config.intermediate_size, hidden, vb.pp("output.dense"))?,
            output_norm: candle_nn::layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
            num_heads,
            head_dim,
        })
    }

    /// First feed-forward projection and its activation, `act(x W_iᵀ + b_i)` `[tokens,
    /// intermediate]`. For BERT's exact (erf) GELU the bias add and the activation run fused, in
    /// place on the matmul output ([`BiasGeluErf`]).
    fn feed_forward_in(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match (self.activation, self.intermediate.bias()) {
            (HiddenAct::Gelu, Some(bias)) => {
                let h = x.matmul(&self.intermediate.weight().t()?)?;
                h.inplace_op2(bias, &BiasGeluErf)?;
                Ok(h)
            }
            (HiddenAct::Gelu, None) => self.intermediate.forward(x)?.gelu_erf(),
            (HiddenAct::GeluApproximate, _) => self.intermediate.forward(x)?.gelu(),
            (HiddenAct::Relu, _) => self.intermediate.forward(x)?.relu(),
        }
    }

    /// `[tokens, hidden]` → `[tokens, hidden]`; attention stays within each sequence of `lens`.
    fn forward(&self, x: &Tensor, lens: &[usize]) -> candle_core::Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        let mut contexts = Vec::with_capacity(lens.len());
        let mut start = 0;
        for &n in lens {
            contexts.push(self.attention(&qkv.narrow(0, start, n)?)?);
            start += n;
        }
        let context = Tensor::cat(&contexts, 0)?;
        let x = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let h = self.feed_forward_in(&x)?;
        self.output_norm.forward(&(self.output.forward(&h)? + x)?)
    }

    /// Unmasked multi-head self-attention for one sequence: `qkv` `[len, 3 * hidden]` →
    /// context `[len, hidden]`.
    fn attention(&self, qkv: &Tensor) -> candle_core::Result<Tensor> {
        let n = qkv.dim(0)?;
        // [len, 3, heads, head_dim] → [3, heads, len, head_dim]
        let qkv = qkv
            .reshape((n, 3, self.num_heads, self.head_dim))?
            .permute((1, 2, 0, 3))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        // Already scaled by 1/sqrt(head_dim) through the query weights.
        let scores = q.matmul(&k.t()?)?;
        scores.inplace_op1(&SoftmaxLastDim)?;
        // [heads, len, head_dim] → [len, heads * head_dim]
        scores
            .matmul(&v)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((n, self.num_heads * self.head_dim))
    }
}

/// In-place softmax over the last dimension of a contiguous f32 tensor (the attention scores),
/// row by row: subtract the row maximum, [`exp_f32`], divide by the sum. Replaces
/// `candle_nn::ops::softmax_last_dim`, whose scalar libm `expf` made softmax over 60% of the
/// attention time; also saves allocating a second score tensor.
struct SoftmaxLastDim;

impl candle_core::InplaceOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(x) = storage else {
            candle_core::bail!("softmax-last-dim: f32 tensors only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax-last-dim: contiguous tensors only");
        };
        let dim = layout.dims().last().copied().unwrap_or(0);
        let x = &mut x[start..end];
        if dim == 0 || x.len() % dim != 0 {
            candle_core::bail!("softmax-last-dim: {} elements, last dim {dim}", x.len());
        }
        for row in x.chunks_exact_mut(dim) {
            softmax_in_place(row);
        }
        Ok(())
    }
}

/// Numerically stable softmax of one non-empty row of finite values, in place. Maximum and sum
/// run over 8 independent lanes so that they vectorise (the summation order differs from a
/// sequential sum only by float rounding).
fn softmax_in_place(row: &mut [f32]) {
    const LANES: usize = 8;
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in lane_max.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lane_max)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut lane_sum = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in lane_sum.iter_mut().zip(chunk) {
            *v = exp_f32(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = lane_sum.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_f32(*v - max);
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Branch-free f32 `exp` for arguments <= 0 (softmax after subtracting the maximum; larger
/// arguments are not supported): Cephes `expf` — `x = n ln2 + r`, |r| <= ln2/2, a degree-6
/// polynomial for `e^r`, times `2^n` built from its exponent bits. Relative error <= 2.5e-7
/// (checked against f64 `exp` in the tests); arguments below -87.3 give ~0 (e^-87.3 ≈ 1.2e-38).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let n = (x * LOG2_E + ROUND) - ROUND;
    // ln 2 split in two (Cephes C1 + C2) so that `n * C1` is exact.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // n is in [-126, 0] here, so 2^n is a normal float.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// In-place `x ← gelu_erf(x + bias)` for a contiguous f32 `[rows, cols]` tensor `x` and a
/// contiguous f32 bias of `cols` elements: BERT's intermediate bias and activation in one pass
/// over memory, with [`erf_f32`] instead of candle's scalar `erf` (which took ~15 ns per element,
/// about a fifth of the whole forward pass).
struct BiasGeluErf;

impl candle_core::InplaceOp2 for BiasGeluErf {
    fn name(&self) -> &'static str {
        "bias-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        x: &mut candle_core::CpuStorage,
        x_layout: &candle_core::Layout,
        bias: &candle_core::CpuStorage,
        bias_layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::CpuStorage::F32;
        let (F32(x), F32(bias)) = (x, bias) else {
            candle_core::bail!("bias-gelu-erf: f32 tensors only");
        };
        let (Some((x_start, x_end)), Some((b_start, b_end))) = (
            x_layout.contiguous_offsets(),
            bias_layout.contiguous_offsets(),
        ) else {
            candle_core::bail!("bias-gelu-erf: contiguous tensors only");
        };
        let (x, bias) = (&mut x[x_start..x_end], &bias[b_start..b_end]);
        if bias.is_empty() || x.len() % bias.len() != 0 {
            candle_core::bail!("bias-gelu-erf: {} elements vs bias {}", x.len(), bias.len());
        }
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                let y = *v + b;
                // Same expression as candle's and PyTorch's exact GELU.
                *v = (erf_f32(y * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * y;
            }
        }
        Ok(())
    }
}

/// Branch-free f32 error function: the odd/even rational approximation on [-4, 4] used by Eigen
/// and XLA (`generic_fast_erf_float`), ±1 outside (erf(±4) rounds to ±1 in f32). Absolute error
/// <= 5e-7 (checked against f64 `erf` in the tests), the same order as PyTorch's own vectorised
/// erf; written so that the compiler vectorises it.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_2e-3;
    q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// Pins glibc malloc's two adaptive thresholds at the ceilings its own heuristic would reach
/// after one 32 MiB block is freed: blocks up to 32 MiB come from the heap instead of fresh mmaps,
/// and the heap keeps up to 64 MiB of free memory at its top instead of returning it to the kernel.
/// Without this, glibc set the trim threshold to twice the largest block freed so far (2 × 12.6
/// MB), below the ~70 MB a layer allocates and frees, so the heap shrank and regrew every layer:
/// 0.4–0.8 M extra minor faults (1.5–2.5 s of kernel time) per 256 chunks. Process-wide and
/// idempotent; effective only with glibc on Linux (a no-op elsewhere).
fn tune_glibc_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters (under the arena lock); both
            // values are within glibc's accepted ranges. A failure (return 0) leaves the defaults.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        });
    }
}

/// Loads `tokenizer.json`, sets truncation to `max_len` tokens and removes padding.
fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer, EmbedError> {
    if !path.is_file() {
        return Err(EmbedError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
        });
    }
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| {
        EmbedError::Tokenizer(format!(
            "{}: {e} (is the embedding model directory complete? `orchestrate models fetch` \
             restores the default one)",
            path.display()
        ))
    })?;
    let truncation = TruncationParams {
        max_length: max_len,
        ..TruncationParams::default()
    };
    tokenizer
        .with_truncation(Some(truncation))
        .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// `max_seq_length` from `sentence_bert_config.json`, or [`DEFAULT_MAX_SEQ_LENGTH`] if the file
/// or the key is absent.
fn read_max_seq_length(model_dir: &Path) -> Result<usize, EmbedError> {
    let path = model_dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(DEFAULT_MAX_SEQ_LENGTH);
    }
    let cfg: SentenceBertConfig = read_json(&path)?;
    Ok(cfg.max_seq_length.unwrap_or(DEFAULT_MAX_SEQ_LENGTH))
}

/// Reads and deserialises a JSON file.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| EmbedError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// The [`Embedder::fingerprint`] of the model in `model_dir`, without loading it: hex SHA-256
/// over every file that changes its embeddings, in this order, each preceded by its byte length
/// (u64 LE): `model.safetensors`, `tokenizer.json`, `config.json`, and
/// `sentence_bert_config.json` when present (its `max_seq_length` truncates the input). Reads
/// them all (about 90 MB for all-MiniLM-L6-v2, a fraction of a second).
///
/// Errors: [`EmbedError::Io`] naming a missing or unreadable file.
pub fn fingerprint_dir(model_dir: &Path) -> Result<String, EmbedError> {
    let mut files = vec![
        model_dir.join("model.safetensors"),
        model_dir.join("tokenizer.json"),
        model_dir.join("config.json"),
    ];
    let sbert = model_dir.join("sentence_bert_config.json");
    if sbert.is_file() {
        files.push(sbert);
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    fingerprint_files(&refs)
}

/// Hex SHA-256 over the files in order, each preceded by its length (u64 LE), streamed.
fn fingerprint_files(paths: &[&Path]) -> Result<String, EmbedError> {
    let mut hasher = Sha256::new();
    for path in paths {
        let io = |source| EmbedError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        hasher.update(len.to_le_bytes());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_batches_sort_longest_first_and_respect_the_budget() {
        // lengths by index: 3, 9, 2, 9, 5
        let lens = [3, 9, 2, 9, 5];
        assert_eq!(
            token_batches(&lens, 10),
            vec![vec![1], vec![3], vec![4, 0, 2]]
        );
        assert_eq!(token_batches(&lens, 100), vec![vec![1, 3, 4, 0, 2]]);
        // A sequence over the budget still gets a pass of its own.
        assert_eq!(token_batches(&[7, 1], 4), vec![vec![0], vec![1]]);
        assert!(token_batches(&[], 4).is_empty());
    }

    #[test]
    fn mean_pool_averages_each_packed_sequence() -> Result<(), EmbedError> {
        // Two sequences packed back to back: 2 rows, then 1 row; dim 2.
        let hidden = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0], [100.0, 50.0]], &Device::Cpu)?;
        let pooled = mean_pool(&hidden, &[2, 1])?.to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![2.0, 3.0], vec![100.0, 50.0]]);
        Ok(())
    }

    #[test]
    fn erf_f32_is_within_5e7_of_f64_erf() {
        let mut worst = 0f64;
        for i in -1_000_000..=1_000_000 {
            let x = i as f32 * 1e-5; // [-10, 10]
            let exact = candle_core::cpu::erf::erf_f64(f64::from(x));
            worst = worst.max((f64::from(erf_f32(x)) - exact).abs());
        }
        assert!(worst <= 5e-7, "max |erf_f32 - erf| = {worst}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert_eq!(erf_f32(-0.5), -erf_f32(0.5));
    }

    #[test]
    fn bias_gelu_erf_matches_candle_gelu_erf() -> Result<(), EmbedError> {
        let x: Vec<f32> = (0..600).map(|i| (i as f32 - 300.0) * 0.02).collect();
        let x = Tensor::from_vec(x, (100, 6), &Device::Cpu)?;
        let bias = Tensor::new(&[0.5f32, -0.25, 0.0, 1.0, -2.0, 3.0], &Device::Cpu)?;
        let expected = x
            .broadcast_add(&bias)?
            .gelu_erf()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let fused = x.copy()?;
        fused.inplace_op2(&bias, &BiasGeluErf)?;
        for (a, b) in fused.flatten_all()?.to_vec1::<f32>()?.iter().zip(&expected) {
            assert!((a - b).abs() <= 2e-6, "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn exp_f32_is_within_2_5e7_relative_of_f64_exp() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4; // [-87, 0]
            let exact = f64::from(x).exp();
            worst = worst.max((f64::from(exp_f32(x)) - exact).abs() / exact);
        }
        assert!(worst <= 2.5e-7, "max relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) < 1e-37);
    }

    #[test]
    fn softmax_matches_candle_softmax() -> Result<(), EmbedError> {
        let x: Vec<f32> = (0..2 * 3 * 13)
            .map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.7)
            .collect();
        let x = Tensor::from_vec(x, (2, 3, 13), &Device::Cpu)?;
        let expected = candle_nn::ops::softmax_last_dim(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let ours = x.copy()?;
        ours.inplace_op1(&SoftmaxLastDim)?;
        for (a, b) in ours.flatten_all()?.to_vec1::<f32>()?.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-7, "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn l2_normalize_gives_unit_rows_and_keeps_zero_rows() -> Result<(), EmbedError> {
        let x = Tensor::new(&[[3.0f32, 4.0], [0.0, 0.0]], &Device::Cpu)?;
        let n = l2_normalize(&x)?.to_vec2::<f32>()?;
        assert_eq!(n[0], vec![0.6, 0.8]);
        assert_eq!(n[1], vec![0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn missing_model_dir_is_an_io_error() {
        let err = Embedder::load(Path::new("/nonexistent/model")).unwrap_err();
        assert!(matches!(err, EmbedError::Io { .. }), "{err}");
    }

    #[test]
    fn fingerprint_depends_on_content_and_order() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"hello")?;
        std::fs::write(&b, b"world")?;
        let ab = fingerprint_files(&[&a, &b])?;
        let ba = fingerprint_files(&[&b, &a])?;
        assert_eq!(ab.len(), 64);
        assert_ne!(ab, ba);
        assert_eq!(ab, fingerprint_files(&[&a, &b])?);
        Ok(())
    }
}
