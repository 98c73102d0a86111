//! Corpus indexes: the chunks of one (corpus, splitter, embedder) combination with a dense vector
//! index ([`dense`], arroy on LMDB, cosine) and a lexical BM25 index ([`lexical`], tantivy), cached
//! on disk under `store/indexes/<key digest>/` ([`cache`]).
//!
//! [`okapi`] is rank_bm25's BM25Okapi, built in memory from the chunks on first use (tens of
//! milliseconds even for 16k chunks, so it is not cached on disk).
//!
//! [`CorpusIndex`] is what retrieval ([`crate::retrieve`]) queries. Build or reuse one with
//! [`open_or_build`] (keyed by [`IndexKey`]: corpus fingerprint, splitter sizes, embedder
//! fingerprint); open an existing cache directory read-only (worker subprocess) with [`open`].

pub mod cache;
pub mod catalog;
pub mod dense;
pub mod lexical;
pub mod okapi;

use std::path::PathBuf;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::split::Chunk;

pub use cache::{open, open_or_build, BuildInfo};
pub use catalog::{CatalogError, ExperimentIndexes};
pub use dense::DenseIndex;
pub use lexical::LexicalIndex;

/// Errors from building, opening or querying an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file or directory operation failed. When the disk is full (ENOSPC, or EDQUOT: quota
    /// exceeded) the message reads "disk full while writing <path>: free space or point --store
    /// at another disk" instead of the raw OS error (see [`IndexError::is_disk_full`]).
    #[error("{}", io_message(.op, .path, .source))]
    Io {
        /// What we were doing ("create", "read", "rename", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (chunks.jsonl, meta.json) could not be parsed or written.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse/serialise error.
        source: serde_json::Error,
    },
    /// LMDB (heed) failed.
    #[error("lmdb: {0}")]
    Lmdb(#[from] heed::Error),
    /// arroy failed (build or query).
    #[error("arroy: {0}")]
    Arroy(#[from] arroy::Error),
    /// tantivy failed (build, open or query).
    #[error("tantivy: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The `pages` callback of [`open_or_build`] failed (e.g. a PDF could not be read).
    #[error("loading corpus pages: {0}")]
    Pages(Box<dyn std::error::Error + Send + Sync>),
    /// Invalid splitter settings in the [`IndexKey`].
    #[error("splitter: {0}")]
    Split(#[from] crate::split::SplitError),
    /// Embedding the chunks failed.
    #[error("embedding: {0}")]
    Embed(#[from] crate::embed::EmbedError),
    /// A vector has the wrong number of dimensions.
    #[error("vector has {got} dimensions, index has {expected}")]
    Dimension {
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// The key's embedder fingerprint is not the fingerprint of the embedder passed in.
    #[error("index key names embedder {key}, but the embedder given is {embedder}")]
    EmbedderMismatch {
        /// Fingerprint in the key.
        key: String,
        /// Fingerprint of the embedder argument.
        embedder: String,
    },
    /// The cache directory is inconsistent (missing files, ids out of order, counts differ).
    #[error("corrupt index at {path}: {reason}")]
    Corrupt {
        /// The index directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl IndexError {
    /// True when this error is, or wraps, "no space left on device" (ENOSPC,
    /// [`std::io::ErrorKind::StorageFull`]) or "disk quota exceeded" (EDQUOT): an
    /// [`IndexError::Io`], an LMDB (heed) or arroy I/O error, or a tantivy error whose cause chain
    /// holds such an I/O error.
    pub fn is_disk_full(&self) -> bool {
        match self {
            IndexError::Io { source, .. } => is_disk_full_io(source),
            IndexError::Lmdb(heed::Error::Io(e)) => is_disk_full_io(e),
            IndexError::Arroy(arroy::Error::Io(e) | arroy::Error::Heed(heed::Error::Io(e))) => {
                is_disk_full_io(e)
            }
            IndexError::Tantivy(e) => chain_is_disk_full(e),
            _ => false,
        }
    }

    /// This error as an [`IndexError::Io`] naming `path` if it is a disk-full error from LMDB,
    /// arroy or tantivy (which do not name the file), so its message reads "disk full while
    /// writing `path`"; any other error (including an `Io` error, which names its own path) is
    /// returned unchanged.
    pub fn disk_full_at(self, path: &std::path::Path) -> IndexError {
        if matches!(self, IndexError::Io { .. }) || !self.is_disk_full() {
            return self;
        }
        IndexError::Io {
            op: "write",
            path: path.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        }
    }
}

/// True for ENOSPC / [`std::io::ErrorKind::StorageFull`] and EDQUOT /
/// [`std::io::ErrorKind::QuotaExceeded`].
fn is_disk_full_io(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// True if `e` or an error in its `source()` chain is a disk-full I/O error (also as
/// `Arc<io::Error>`, as tantivy wraps them), or if a message in the chain ends with the OS error
/// text of ENOSPC (tantivy reports failures of its writer threads as strings).
fn chain_is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let enospc = format!("(os error {})", libc::ENOSPC);
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if is_disk_full_io(io) {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<std::sync::Arc<std::io::Error>>() {
            if is_disk_full_io(io) {
                return true;
            }
        }
        if err.to_string().contains(&enospc) {
            return true;
        }
        next = err.source();
    }
    false
}

/// Display of [`IndexError::Io`]: "disk full while writing <path>: free space or point --store at
/// another disk" when the disk is full, otherwise "<op> <path>: <error>".
fn io_message(op: &str, path: &std::path::Path, source: &std::io::Error) -> String {
    if is_disk_full_io(source) {
        format!(
            "disk full while writing {}: free space or point --store at another disk",
            path.display()
        )
    } else {
        format!("{op} {}: {source}", path.display())
    }
}

/// Everything that determines an index's content; its [`IndexKey::digest`] names the cache
/// directory. Chunk sizes are in characters (Unicode code points), as in [`crate::split`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexKey {
    /// Corpus fingerprint, e.g. [`crate::corpus::corpus_fingerprint`] of the source files.
    pub corpus_fingerprint: String,
    /// Splitter chunk size, characters.
    pub chunk_size: usize,
    /// Splitter chunk overlap, characters.
    pub chunk_overlap: usize,
    /// [`crate::embed::Embedder::fingerprint`] of the embedding model.
    pub embedder_fingerprint: String,
}

impl IndexKey {
    /// Bumped when the on-disk layout or the build procedure changes, so old caches are not reused.
    pub const FORMAT_VERSION: u32 = 1;

    /// Hex SHA-256 over the format version and the four fields, each length-framed (u64 LE), so
    /// different keys never hash the same input. 64 lowercase hex characters.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        let size = self.chunk_size.to_string();
        let overlap = self.chunk_overlap.to_string();
        let version = Self::FORMAT_VERSION.to_string();
        for part in [
            version.as_str(),
            self.corpus_fingerprint.as_str(),
            size.as_str(),
            overlap.as_str(),
            self.embedder_fingerprint.as_str(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// The chunks of one corpus split with their dense and lexical indexes. Chunk ids are dense:
/// `chunks[i].id == i`.
#[derive(Debug)]
pub struct CorpusIndex {
    /// All chunks, indexed by chunk id.
    pub chunks: Vec<Chunk>,
    dense: DenseIndex,
    lexical: LexicalIndex,
    okapi: OnceLock<okapi::Okapi>,
    dir: PathBuf,
}

impl CorpusIndex {
    /// Assembles an index from its parts, checking that chunk ids are `0..n` in order and that
    /// both indexes hold `n` documents. Errors: [`IndexError::Corrupt`].
    pub fn new(
        dir: PathBuf,
        chunks: Vec<Chunk>,
        dense: DenseIndex,
        lexical: LexicalIndex,
    ) -> Result<Self, IndexError> {
        let corrupt = |reason: String| IndexError::Corrupt {
            path: dir.clone(),
            reason,
        };
        if let Some((i, c)) = chunks.iter().enumerate().find(|(i, c)| c.id as usize != *i) {
            return Err(corrupt(format!("chunk at position {i} has id {}", c.id)));
        }
        if dense.len() != chunks.len() {
            return Err(corrupt(format!(
                "{} chunks but {} vectors",
                chunks.len(),
                dense.len()
            )));
        }
        if lexical.num_docs() != chunks.len() as u64 {
            return Err(corrupt(format!(
                "{} chunks but {} lexical documents",
                chunks.len(),
                lexical.num_docs()
            )));
        }
        Ok(CorpusIndex {
            chunks,
            dense,
            lexical,
            okapi: OnceLock::new(),
            dir,
        })
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// True when the corpus produced no chunks.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The cache directory this index lives in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Embedding dimension of the dense index.
    pub fn dim(&self) -> usize {
        self.dense.dim()
    }

    /// The chunk with this id.
    pub fn chunk(&self, chunk_id: u32) -> Option<&Chunk> {
        self.chunks.get(chunk_id as usize)
    }

    /// The stored (L2-normalised) embedding of a chunk, `dim()` f32s; `None` for an unknown id.
    pub fn vector(&self, chunk_id: u32) -> Option<Vec<f32>> {
        self.dense.vector(chunk_id).map(<[f32]>::to_vec)
    }

    /// Approximate dense search (arroy): the `k` chunks most cosine-similar to `query`, as
    /// `(chunk_id, cosine)` best first. See [`DenseIndex::search`].
    pub fn dense_search(&self, query: &[f32], k: usize) -> Result<Vec<(u32, f32)>, IndexError> {
        self.dense.search(query, k)
    }

    /// Exact (brute-force) dense search; same output shape as [`Self::dense_search`].
    pub fn dense_search_exact(
        &self,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        self.dense.search_exact(query, k)
    }

    /// BM25 search (tantivy): up to `k` `(chunk_id, bm25 score)` best first; chunks sharing no
    /// term with the query are not returned. See [`LexicalIndex::search`].
    pub fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(u32, f32)>, IndexError> {
        self.lexical.search(query, k)
    }

    /// BM25Okapi search (rank_bm25 parity, default [`okapi::OkapiParams`]): the top
    /// `min(k, len())` `(chunk_id, score)` best first, ties by lower id. Like rank_bm25's
    /// `get_top_n`, chunks that share no token with the query fill the list with score 0. The
    /// Okapi index is built from the chunk texts on the first call.
    pub fn okapi_search(&self, query: &str, k: usize) -> Vec<(u32, f32)> {
        self.okapi()
            .top_n(query, k)
            .into_iter()
            .map(|(id, s)| (id, s as f32))
            .collect()
    }

    /// The BM25Okapi index of the chunk texts (built on first use).
    pub fn okapi(&self) -> &okapi::Okapi {
        self.okapi.get_or_init(|| {
            let texts: Vec<&str> = self.chunks.iter().map(|c| c.text.as_str()).collect();
            okapi::Okapi::new(&texts, okapi::OkapiParams::default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IndexKey {
        IndexKey {
            corpus_fingerprint: "abc".into(),
            chunk_size: 500,
            chunk_overlap: 50,
            embedder_fingerprint: "def".into(),
        }
    }

    #[test]
    fn digest_is_hex_and_changes_with_every_field() {
        let base = key().digest();
        assert_eq!(base.len(), 64);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(base, key().digest());
        let variants = [
            IndexKey {
                corpus_fingerprint: "abd".into(),
                ..key()
            },
            IndexKey {
                chunk_size: 501,
                ..key()
            },
            IndexKey {
                chunk_overlap: 51,
                ..key()
            },
            IndexKey {
                embedder_fingerprint: "deg".into(),
                ..key()
            },
        ];
        for v in variants {
            assert_ne!(v.digest(), base, "{v:?}");
        }
    }

    #[test]
    fn disk_full_io_errors_say_so_and_name_the_path() {
        let path = PathBuf::from("/store/indexes/.tmp-abc/chunks.jsonl");
        let full = IndexError::Io {
            op: "write",
            path: path.clone(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert!(full.is_disk_full());
        assert_eq!(
            full.to_string(),
            "disk full while writing /store/indexes/.tmp-abc/chunks.jsonl: free space or point \
             --store at another disk"
        );
        let by_kind = IndexError::Io {
            op: "create",
            path: path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert!(by_kind
            .to_string()
            .starts_with("disk full while writing /store"));
        // Other I/O errors keep the operation and the OS message.
        let denied = IndexError::Io {
            op: "read",
            path: path.clone(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(!denied.is_disk_full());
        let msg = denied.to_string();
        assert!(
            msg.starts_with("read /store/indexes/.tmp-abc/chunks.jsonl: ")
                && msg.contains("ermission denied"),
            "{msg}"
        );
    }

    #[test]
    fn disk_full_from_lmdb_arroy_and_tantivy_gets_the_path() {
        let dense = std::path::Path::new("/store/indexes/.tmp-abc/dense");
        let enospc = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        let wrapped = [
            IndexError::Lmdb(heed::Error::Io(enospc())),
            IndexError::Arroy(arroy::Error::Heed(heed::Error::Io(enospc()))),
            IndexError::Arroy(arroy::Error::Io(enospc())),
            IndexError::Tantivy(tantivy::TantivyError::from(enospc())),
        ];
        for err in wrapped {
            assert!(err.is_disk_full(), "{err}");
            let mapped = err.disk_full_at(dense);
            assert!(matches!(mapped, IndexError::Io { .. }), "{mapped}");
            assert_eq!(
                mapped.to_string(),
                "disk full while writing /store/indexes/.tmp-abc/dense: free space or point \
                 --store at another disk"
            );
        }
        // Anything else passes through unchanged.
        let other = IndexError::Lmdb(heed::Error::Io(std::io::Error::from_raw_os_error(
            libc::EIO,
        )));
        assert!(!other.is_disk_full());
        assert!(matches!(other.disk_full_at(dense), IndexError::Lmdb(_)));
    }

    #[test]
    fn digest_frames_fields() {
        // Moving characters between string fields must change the digest.
        let a = IndexKey {
            corpus_fingerprint: "ab".into(),
            embedder_fingerprint: "c".into(),
            ..key()
        };
        let b = IndexKey {
            corpus_fingerprint: "a".into(),
            embedder_fingerprint: "bc".into(),
            ..key()
        };
        assert_ne!(a.digest(), b.digest());
    }
}
