//! Sentence embeddings with all-MiniLM-L6-v2 (or any BERT sentence-transformers model) on the CPU
//! through candle: tokenise (truncate to `max_seq_length`, pad per batch), run `BertModel`, mean-pool
//! over the attention mask, L2-normalise. Matches sentence-transformers'
//! `Transformer → Pooling(mean) → Normalize` pipeline (verified to 1e-5 in tests/retrieval.rs).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Sentences per forward pass (sentence-transformers' default `batch_size`).
pub const BATCH_SIZE: usize = 32;

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
    model: BertModel,
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
    /// all-MiniLM-L6-v2 file) is replaced by: truncate to `max_seq_length` tokens, pad to the
    /// longest sequence of each batch. Also hashes the weights and tokenizer for [`Self::fingerprint`].
    ///
    /// Errors: [`EmbedError::Io`] for a missing/unreadable file, [`EmbedError::Config`],
    /// [`EmbedError::Tokenizer`], [`EmbedError::Candle`] if the weights do not fit the config.
    pub fn load(model_dir: &Path) -> Result<Embedder, EmbedError> {
        let config_path = model_dir.join("config.json");
        let weights_path = model_dir.join("model.safetensors");
        let tokenizer_path = model_dir.join("tokenizer.json");
        let config: Config = read_json(&config_path)?;
        let max_seq_length = read_max_seq_length(model_dir)?;
        let fingerprint = fingerprint_files(&[&weights_path, &tokenizer_path])?;
        let tokenizer = load_tokenizer(&tokenizer_path, max_seq_length)?;
        let device = Device::Cpu;
        // Fail with Io (not a candle error) when the weights are missing.
        std::fs::metadata(&weights_path).map_err(|source| EmbedError::Io {
            path: weights_path.clone(),
            source,
        })?;
        // SAFETY: the safetensors file is memory-mapped only while the weights are copied into
        // tensors below; we do not modify it and the map is dropped with `vb` at the end of `load`.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device)? };
        let model = BertModel::load(vb, &config)?;
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

    /// Hex SHA-256 identifying the model: over `model.safetensors` then `tokenizer.json`, each
    /// preceded by its byte length (u64 little-endian). Computed once at load.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Embeds `texts`; returns one L2-normalised vector of [`Self::dim`] f32s per text, in input
    /// order. Texts longer than `max_seq_length` tokens are truncated (as sentence-transformers
    /// does). Texts are sorted by length in characters, longest first (sentence-transformers'
    /// order), and run in batches of [`BATCH_SIZE`] padded to the batch's longest sequence, then
    /// restored to input order. An empty text embeds `[CLS] [SEP]`. An empty slice gives an
    /// empty vector.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let order = length_order(texts);
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH_SIZE) {
            let batch_texts: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            let vectors = self.embed_batch(&batch_texts)?;
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

    /// One forward pass over at most [`BATCH_SIZE`] texts.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let ids = stack_u32(encodings.iter().map(|e| e.get_ids()))?;
        let type_ids = stack_u32(encodings.iter().map(|e| e.get_type_ids()))?;
        let mask = stack_u32(encodings.iter().map(|e| e.get_attention_mask()))?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        let pooled = mean_pool(&hidden, &mask)?;
        let normed = l2_normalize(&pooled)?;
        Ok(normed.to_vec2::<f32>()?)
    }
}

/// Indices of `texts` sorted by character count, longest first; ties keep input order.
fn length_order(texts: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
    order
}

/// Stacks equal-length token rows into a `[batch, seq]` u32 tensor.
fn stack_u32<'a>(rows: impl Iterator<Item = &'a [u32]>) -> Result<Tensor, EmbedError> {
    let rows: Vec<Tensor> = rows
        .map(|r| Tensor::new(r, &Device::Cpu))
        .collect::<Result<_, _>>()?;
    Ok(Tensor::stack(&rows, 0)?)
}

/// Mean over the sequence axis of `hidden` `[batch, seq, dim]`, counting only positions where
/// `mask` `[batch, seq]` is 1; the count is clamped to >= 1e-9 (sentence-transformers Pooling).
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor, EmbedError> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// Row-wise L2 normalisation of `[batch, dim]` with norm clamped to >= 1e-12
/// (torch.nn.functional.normalize, used by sentence-transformers' Normalize module).
fn l2_normalize(x: &Tensor) -> Result<Tensor, EmbedError> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    Ok(x.broadcast_div(&norms)?)
}

/// Loads `tokenizer.json` and sets truncation to `max_len` tokens and batch-longest padding
/// (keeping the file's pad token and ids).
fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer, EmbedError> {
    if !path.is_file() {
        return Err(EmbedError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
        });
    }
    let mut tokenizer =
        Tokenizer::from_file(path).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    let truncation = TruncationParams {
        max_length: max_len,
        ..TruncationParams::default()
    };
    tokenizer
        .with_truncation(Some(truncation))
        .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..tokenizer.get_padding().cloned().unwrap_or_default()
    };
    tokenizer.with_padding(Some(padding));
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
    fn length_order_is_longest_first_and_stable() {
        let texts = ["ab", "abcd", "x", "wxyz", ""];
        assert_eq!(length_order(&texts), vec![1, 3, 0, 2, 4]);
    }

    #[test]
    fn mean_pool_ignores_masked_positions() -> Result<(), EmbedError> {
        // batch 1, seq 3, dim 2; the last position is padding.
        let hidden = Tensor::new(&[[[1.0f32, 2.0], [3.0, 4.0], [100.0, 100.0]]], &Device::Cpu)?;
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu)?;
        let pooled = mean_pool(&hidden, &mask)?.to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![2.0, 3.0]]);
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
