//! The indexes of one experiment's corpus: one [`CorpusIndex`] per (chunk_size, chunk_overlap),
//! opened from the cache or built from the corpus files and embedding model on first use.
//!
//! [`ExperimentIndexes`] owns the per-experiment state that building needs once: the embedding
//! model (loaded lazily), the corpus fingerprint (hash of the corpus files) and the extracted pages
//! (read at most once, only if some index must be built). The sweep uses it to prepare each cell's
//! index; `orchestrate retrieve` and `orchestrate rescore` use it to open the same indexes.
//!
//! Parent retrievers ([`crate::retrieve::RetrieverKind::Parent`]) also need a child index: the
//! chunks of one index cut again into smaller child chunks ([`ExperimentIndexes::open_children`]).
//! It is an ordinary cached [`CorpusIndex`] whose "pages" are the parent chunks (page number =
//! parent chunk id + 1), keyed by the parent index's digest and the child sizes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{BuildInfo, CorpusIndex, IndexKey};
use crate::corpus::{CorpusError, Page};
use crate::embed::{EmbedError, Embedder};
use crate::retrieve::ChildSplit;

/// Source name of the "pages" of a child index (the parent chunks).
pub const PARENT_SOURCE: &str = "parent";

/// Errors from opening or building an experiment's index.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The embedding model could not be loaded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    /// The index could not be built or opened.
    #[error(transparent)]
    Index(#[from] super::IndexError),
}

/// The cache key of the child index of `split` over the index whose digest (directory name) is
/// `parent_digest`.
pub fn children_key(
    parent_digest: &str,
    split: ChildSplit,
    embedder_fingerprint: &str,
) -> IndexKey {
    IndexKey {
        corpus_fingerprint: format!("{PARENT_SOURCE}s:{parent_digest}"),
        chunk_size: split.chunk_size,
        chunk_overlap: split.chunk_overlap,
        embedder_fingerprint: embedder_fingerprint.to_string(),
    }
}

/// Opens (read-only, never builds) the child indexes of `splits` over the index in
/// `parent_dir` (`<store>/indexes/<digest>`), as [`ExperimentIndexes::open_children`] built them
/// next to it. For the worker, which gets only the parent's directory.
///
/// Errors: [`super::IndexError::Io`] naming the missing directory when a child index was not
/// built, and the errors of [`super::open`].
pub fn open_children_of(
    parent_dir: &Path,
    embedder_fingerprint: &str,
    splits: &[ChildSplit],
) -> Result<crate::retrieve::ChildIndexes, super::IndexError> {
    let mut out = crate::retrieve::ChildIndexes::none();
    let digest = parent_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let indexes = parent_dir.parent().unwrap_or(Path::new("."));
    for &split in splits {
        let dir = indexes.join(children_key(&digest, split, embedder_fingerprint).digest());
        out.insert(split, super::open(&dir)?);
    }
    Ok(out)
}

/// Opens or builds the indexes of one corpus and embedding model under `<store_dir>/indexes/`
/// (see [`super::cache`]), remembering what it already prepared.
pub struct ExperimentIndexes<'a> {
    corpus: &'a [PathBuf],
    embedding_model: &'a Path,
    store_dir: &'a Path,
    embedder: Option<Embedder>,
    embedder_fingerprint: Option<String>,
    corpus_fingerprint: Option<String>,
    pages: RefCell<Option<Vec<Page>>>,
    seen: HashMap<(usize, usize), BuildInfo>,
    seen_children: HashMap<(usize, usize, ChildSplit), BuildInfo>,
}

impl<'a> ExperimentIndexes<'a> {
    /// The indexes of the corpus files `corpus` (in order) embedded with the sentence-transformers
    /// model in `embedding_model`, cached under `store_dir`. Nothing is loaded until an index is
    /// asked for.
    pub fn new(corpus: &'a [PathBuf], embedding_model: &'a Path, store_dir: &'a Path) -> Self {
        ExperimentIndexes {
            corpus,
            embedding_model,
            store_dir,
            embedder: None,
            embedder_fingerprint: None,
            corpus_fingerprint: None,
            pages: RefCell::new(None),
            seen: HashMap::new(),
            seen_children: HashMap::new(),
        }
    }

    /// Uses fingerprints computed already (an experiment's [`crate::cell::Cell`] carries both)
    /// instead of reading the corpus and model files again.
    pub fn with_fingerprints(mut self, corpus: &str, embedder: &str) -> Self {
        self.corpus_fingerprint = Some(corpus.to_string());
        self.embedder_fingerprint = Some(embedder.to_string());
        self
    }

    /// The experiment's embedding model, loaded on first use. Errors: [`CatalogError::Embed`].
    pub fn embedder(&mut self) -> Result<&Embedder, CatalogError> {
        let e = match self.embedder.take() {
            Some(e) => e,
            None => Embedder::load(self.embedding_model)?,
        };
        Ok(self.embedder.insert(e))
    }

    /// The cache key of the index for `chunk_size` / `chunk_overlap` (characters). Fingerprints
    /// the embedding model's files and the corpus files (never loads the model).
    pub fn key(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> Result<IndexKey, CatalogError> {
        // the fingerprint of the model files, without loading the model (a status check or a
        // cache hit never pays for it)
        let embedder_fingerprint = match (&self.embedder_fingerprint, &self.embedder) {
            (Some(f), _) => f.clone(),
            (None, Some(e)) => e.fingerprint().to_string(),
            (None, None) => {
                let f = crate::embed::fingerprint_dir(self.embedding_model)?;
                self.embedder_fingerprint = Some(f.clone());
                f
            }
        };
        if self.corpus_fingerprint.is_none() {
            self.corpus_fingerprint = Some(crate::corpus::corpus_fingerprint(self.corpus)?);
        }
        Ok(IndexKey {
            corpus_fingerprint: self.corpus_fingerprint.clone().unwrap_or_default(),
            chunk_size,
            chunk_overlap,
            embedder_fingerprint,
        })
    }

    /// The cache directory of that index if it is already built (never builds).
    pub fn cached_dir(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> Result<Option<PathBuf>, CatalogError> {
        let key = self.key(chunk_size, chunk_overlap)?;
        let dir = self.store_dir.join("indexes").join(key.digest());
        Ok(dir.join(super::cache::META_FILE).is_file().then_some(dir))
    }

    /// The chunks of that index if it is already built (never builds); reads only its chunk
    /// list. Errors: [`CatalogError`].
    pub fn cached_chunks(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> Result<Option<Vec<crate::split::Chunk>>, CatalogError> {
        match self.cached_dir(chunk_size, chunk_overlap)? {
            Some(dir) => Ok(Some(super::cache::read_index_chunks(&dir)?)),
            None => Ok(None),
        }
    }

    /// Opens the index for `chunk_size` / `chunk_overlap`, building it first if it is not cached
    /// (extracting the corpus pages once per `ExperimentIndexes`). Errors: [`CatalogError`].
    pub fn open(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> Result<(CorpusIndex, BuildInfo), CatalogError> {
        let key = self.key(chunk_size, chunk_overlap)?;
        let embedder = match self.embedder.take() {
            Some(e) => e,
            None => Embedder::load(self.embedding_model)?,
        };
        let embedder: &Embedder = self.embedder.insert(embedder);
        let pages = &self.pages;
        let corpus = self.corpus;
        let (index, info) = super::open_or_build(
            self.store_dir,
            &key,
            || -> Result<Vec<Page>, CorpusError> {
                if let Some(p) = pages.borrow().as_ref() {
                    return Ok(p.clone());
                }
                let mut all = Vec::new();
                for path in corpus {
                    all.extend(crate::corpus::load_pages(path)?);
                }
                *pages.borrow_mut() = Some(all.clone());
                Ok(all)
            },
            embedder,
        )?;
        self.seen.insert((chunk_size, chunk_overlap), info.clone());
        Ok((index, info))
    }

    /// Like [`Self::open`] but returns only the build information, and only opens each index
    /// once: later calls for the same sizes answer from memory with `cache_hit = true` and
    /// `build_seconds = 0`.
    pub fn prepare(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
    ) -> Result<BuildInfo, CatalogError> {
        if let Some(info) = self.seen.get(&(chunk_size, chunk_overlap)) {
            return Ok(BuildInfo {
                cache_hit: true,
                build_seconds: 0.0,
                ..info.clone()
            });
        }
        self.open(chunk_size, chunk_overlap).map(|(_, info)| info)
    }

    /// The cache key of the child index of the index for `chunk_size` / `chunk_overlap`: the
    /// parent index's digest stands for the corpus, the child sizes for the splitter.
    pub fn children_key(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
        split: ChildSplit,
    ) -> Result<IndexKey, CatalogError> {
        let parent = self.key(chunk_size, chunk_overlap)?;
        Ok(children_key(
            &parent.digest(),
            split,
            &parent.embedder_fingerprint,
        ))
    }

    /// Opens the child index of `split` over the chunks of the index for `chunk_size` /
    /// `chunk_overlap` (building both if they are not cached): every parent chunk is split with
    /// `RecursiveCharacterTextSplitter(split.chunk_size, split.chunk_overlap)` on its own, as
    /// LangChain's `ParentDocumentRetriever` splits each parent document, and the children are
    /// embedded. Child chunk `c` comes from parent chunk `c.page - 1`. Errors: [`CatalogError`].
    pub fn open_children(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
        split: ChildSplit,
    ) -> Result<(CorpusIndex, BuildInfo), CatalogError> {
        let key = self.children_key(chunk_size, chunk_overlap, split)?;
        let parent_dir = self.prepare(chunk_size, chunk_overlap)?.dir;
        let embedder = match self.embedder.take() {
            Some(e) => e,
            None => Embedder::load(self.embedding_model)?,
        };
        let embedder: &Embedder = self.embedder.insert(embedder);
        let (index, info) = super::open_or_build(
            self.store_dir,
            &key,
            || -> Result<Vec<Page>, super::IndexError> {
                Ok(super::cache::read_index_chunks(&parent_dir)?
                    .into_iter()
                    .map(|c| Page {
                        source: PARENT_SOURCE.to_string(),
                        number: c.id + 1,
                        text: c.text,
                    })
                    .collect())
            },
            embedder,
        )?;
        self.seen_children
            .insert((chunk_size, chunk_overlap, split), info.clone());
        Ok((index, info))
    }

    /// Like [`Self::open_children`] but returns only the build information, opening each child
    /// index once (later calls answer from memory with `cache_hit = true`, `build_seconds = 0`).
    pub fn prepare_children(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
        split: ChildSplit,
    ) -> Result<BuildInfo, CatalogError> {
        if let Some(info) = self.seen_children.get(&(chunk_size, chunk_overlap, split)) {
            return Ok(BuildInfo {
                cache_hit: true,
                build_seconds: 0.0,
                ..info.clone()
            });
        }
        self.open_children(chunk_size, chunk_overlap, split)
            .map(|(_, info)| info)
    }

    /// [`Self::prepare`] of the index for `chunk_size` / `chunk_overlap`, then
    /// [`Self::prepare_children`] of each of `splits` (what a cell with parent retrievers needs
    /// before [`open_children_of`] can open its child indexes). Returns the parent index's
    /// information. Errors: [`CatalogError`].
    pub fn prepare_with_children(
        &mut self,
        chunk_size: usize,
        chunk_overlap: usize,
        splits: &[ChildSplit],
    ) -> Result<BuildInfo, CatalogError> {
        let info = self.prepare(chunk_size, chunk_overlap)?;
        for &split in splits {
            self.prepare_children(chunk_size, chunk_overlap, split)?;
        }
        Ok(info)
    }
}
