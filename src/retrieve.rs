//! Retrieval strategies over a [`CorpusIndex`]: dense (cosine), MMR, BM25, the weighted
//! reciprocal-rank-fusion ensemble (of BM25 and dense, or of any list of retrievers, nested ones
//! included) and the parent-document retriever, with LangChain's semantics.
//!
//! A retriever is a tree of [`RetrieverParams`]: an ensemble with `members` fuses the ranked
//! lists of its members (each with its own `top_k`, `fetch_k`, ...), which may be ensembles
//! again. The parent retriever searches small child chunks ([`ChildIndexes`]) and returns the
//! cell's chunks they were cut from.
//!
//! References (parity fixtures in `tests/fixtures/retrieve/`, made by the scripts there):
//! - MMR: `langchain_core.vectorstores.utils.maximal_marginal_relevance` (Carbonell & Goldstein,
//!   "The use of MMR, diversity-based reranking", SIGIR 1998).
//! - Fusion: `langchain_classic.retrievers.EnsembleRetriever.weighted_reciprocal_rank`
//!   (Cormack, Clarke & Büttcher, "Reciprocal rank fusion", SIGIR 2009, with weights);
//!   composed and nested ensembles: `make_composed_fixture.py`.
//! - Parent documents: `langchain_classic.retrievers.ParentDocumentRetriever`
//!   (`MultiVectorRetriever._get_relevant_documents`): `make_composed_fixture.py`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::index::{CorpusIndex, IndexError};
use crate::score::cosine;

/// LangChain's RRF constant `c` (EnsembleRetriever default).
pub const RRF_C: f32 = 60.0;

/// Errors from retrieval.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The index could not be searched (dimension mismatch, LMDB/tantivy read error).
    #[error("index: {0}")]
    Index(#[from] IndexError),
    /// Invalid [`RetrieverParams`].
    #[error("invalid retriever parameters: {0}")]
    InvalidParams(String),
    /// An unknown retriever name was parsed.
    #[error("unknown retriever {0:?} (expected dense, mmr, bm25, ensemble or parent)")]
    UnknownKind(String),
    /// A parent retriever's child index (for its child chunk size and overlap) was not given.
    #[error(
        "no child index for child chunks {chunk_size}/{chunk_overlap}: build it before retrieving"
    )]
    MissingChildIndex {
        /// Child chunk size, characters.
        chunk_size: usize,
        /// Child chunk overlap, characters.
        chunk_overlap: usize,
    },
    /// An unknown `bm25` or `dense_index` name was parsed.
    #[error("unknown {what} {got:?} (expected {expected})")]
    UnknownVariant {
        /// `bm25` or `dense_index`.
        what: &'static str,
        /// The name given.
        got: String,
        /// The accepted names.
        expected: &'static str,
    },
}

/// Which retrieval strategy to run. Serialised lowercase: `dense`, `mmr`, `bm25`, `ensemble`,
/// `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrieverKind {
    /// Top-k by cosine similarity of embeddings (approximate, arroy).
    Dense,
    /// Fetch `fetch_k` by cosine, then maximal marginal relevance down to `top_k`.
    Mmr,
    /// Top-k by tantivy BM25.
    Bm25,
    /// Weighted reciprocal rank fusion of the BM25 and dense top-k lists, or of the ranked lists
    /// of its `members`.
    Ensemble,
    /// LangChain's ParentDocumentRetriever: the `top_k` child chunks most cosine-similar to the
    /// query, mapped to the chunks they were cut from, deduplicated in order of first hit.
    Parent,
}

impl RetrieverKind {
    /// All kinds, in declaration order.
    pub const ALL: [RetrieverKind; 5] = [
        RetrieverKind::Dense,
        RetrieverKind::Mmr,
        RetrieverKind::Bm25,
        RetrieverKind::Ensemble,
        RetrieverKind::Parent,
    ];

    /// The lowercase name (same as serde and [`fmt::Display`]).
    pub fn as_str(self) -> &'static str {
        match self {
            RetrieverKind::Dense => "dense",
            RetrieverKind::Mmr => "mmr",
            RetrieverKind::Bm25 => "bm25",
            RetrieverKind::Ensemble => "ensemble",
            RetrieverKind::Parent => "parent",
        }
    }
}

impl fmt::Display for RetrieverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RetrieverKind {
    type Err = RetrieveError;

    /// Parses a name case-insensitively, ignoring surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        RetrieverKind::ALL
            .into_iter()
            .find(|k| k.as_str() == wanted)
            .ok_or_else(|| RetrieveError::UnknownKind(s.to_string()))
    }
}

/// Which BM25 implements the lexical side (`bm25` and `ensemble` retrievers). Serialised
/// lowercase: `tantivy`, `okapi`.
///
/// - `tantivy` (default): tantivy's BM25 (k1 1.2, b 0.75, idf `ln(1 + (N - n + 0.5)/(n + 0.5))`,
///   never negative) over a lowercasing, Snowball-stemming analyzer that splits on
///   non-alphanumerics, with document lengths quantised to 256 buckets. Better matching of
///   "Volumes"/"volume", "Pool,"/"pool".
/// - `okapi`: rank_bm25's `BM25Okapi` exactly as LangChain's `BM25Retriever` uses it (k1 1.5,
///   b 0.75, epsilon 0.25, negative idf floored to `epsilon * mean idf`, exact lengths,
///   case-sensitive tokens from Python's `str.split()`), see [`crate::index::okapi`]. Use it to
///   reproduce a LangChain notebook number for number.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Bm25Variant {
    /// tantivy BM25 with stemming (the default).
    #[default]
    Tantivy,
    /// rank_bm25 BM25Okapi parity.
    Okapi,
}

impl Bm25Variant {
    /// The lowercase name (same as serde and [`fmt::Display`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Bm25Variant::Tantivy => "tantivy",
            Bm25Variant::Okapi => "okapi",
        }
    }
}

impl fmt::Display for Bm25Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Bm25Variant {
    type Err = RetrieveError;

    /// Parses `tantivy` or `okapi`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tantivy" => Ok(Bm25Variant::Tantivy),
            "okapi" => Ok(Bm25Variant::Okapi),
            _ => Err(RetrieveError::UnknownVariant {
                what: "bm25",
                got: s.to_string(),
                expected: "tantivy or okapi",
            }),
        }
    }
}

/// How the dense side (`dense`, `mmr`, `ensemble`) searches. Serialised lowercase: `arroy`,
/// `exact`.
///
/// - `arroy` (default): approximate nearest neighbours (arroy random-projection trees on LMDB),
///   see [`crate::index::dense`]; recall against exact search is measured per chunk size in
///   BENCHMARKS.md.
/// - `exact`: brute force over every stored vector, FAISS `IndexFlatL2` semantics (on the
///   L2-normalised embeddings, ascending L2 distance is descending cosine; exact ties by chunk
///   id, as FAISS orders them). `tests/it/dense_faiss.rs` checks the ids and their order against
///   faiss-cpu on real embeddings.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DenseIndexKind {
    /// Approximate search with arroy (the default).
    #[default]
    Arroy,
    /// Exact brute-force search.
    Exact,
}

impl DenseIndexKind {
    /// The lowercase name (same as serde and [`fmt::Display`]).
    pub fn as_str(self) -> &'static str {
        match self {
            DenseIndexKind::Arroy => "arroy",
            DenseIndexKind::Exact => "exact",
        }
    }
}

impl fmt::Display for DenseIndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DenseIndexKind {
    type Err = RetrieveError;

    /// Parses `arroy` or `exact`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "arroy" => Ok(DenseIndexKind::Arroy),
            "exact" => Ok(DenseIndexKind::Exact),
            _ => Err(RetrieveError::UnknownVariant {
                what: "dense_index",
                got: s.to_string(),
                expected: "arroy or exact",
            }),
        }
    }
}

/// Parameters of one retriever (a tree: an ensemble's `members` are retrievers again).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetrieverParams {
    /// The strategy.
    pub kind: RetrieverKind,
    /// Chunks to return (per list for the two-list ensemble, whose fused output has up to
    /// `2 * top_k`; unused by an ensemble with `members`; child chunks searched for `parent`, as
    /// LangChain's `search_kwargs["k"]`, so it returns at most `top_k` parents).
    pub top_k: usize,
    /// MMR only: candidates fetched by cosine before MMR re-ranking. If `fetch_k < top_k`, MMR
    /// returns `fetch_k` chunks (as LangChain does).
    pub fetch_k: usize,
    /// MMR only: weight of relevance vs diversity, in `[0, 1]` (1 = pure relevance).
    pub lambda_mult: f32,
    /// Ensemble only: BM25 weight `r` in `[0, 1]`; the dense list gets `1 - r`.
    pub ensemble_weight: f32,
    /// BM25 implementation of the lexical side.
    #[serde(default)]
    pub bm25: Bm25Variant,
    /// Search method of the dense side.
    #[serde(default)]
    pub dense_index: DenseIndexKind,
    /// Ensemble only: the retrievers to fuse with their weights (weights are not normalised, as
    /// LangChain's). Empty: the two-list BM25 + dense ensemble of `ensemble_weight`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// Parent only: how the cell's chunks (the parents) are cut into the child chunks that are
    /// embedded and searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<ChildSplit>,
}

/// One member of a composed ensemble.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Weight of the member's ranked list in the fusion (>= 0).
    pub weight: f32,
    /// The member retriever.
    pub params: RetrieverParams,
}

/// Child chunk sizes of a parent retriever, characters (LangChain's `child_splitter`, a
/// `RecursiveCharacterTextSplitter` applied to each parent chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChildSplit {
    /// Child chunk size, characters.
    pub chunk_size: usize,
    /// Child chunk overlap, characters.
    pub chunk_overlap: usize,
}

/// The child indexes a parent retriever searches, one per [`ChildSplit`]: a [`CorpusIndex`]
/// whose "pages" are the parent chunks, so child chunk `c` was cut from parent chunk
/// `c.page - 1` (see [`crate::index::ExperimentIndexes::open_children`]).
#[derive(Debug, Default)]
pub struct ChildIndexes {
    indexes: Vec<(ChildSplit, CorpusIndex)>,
}

impl ChildIndexes {
    /// No child indexes (enough for every retriever but `parent`).
    pub fn none() -> Self {
        ChildIndexes::default()
    }

    /// Adds (or replaces) the child index of `split`.
    pub fn insert(&mut self, split: ChildSplit, index: CorpusIndex) {
        self.indexes.retain(|(s, _)| *s != split);
        self.indexes.push((split, index));
    }

    /// The child index of `split`, if given.
    pub fn get(&self, split: ChildSplit) -> Option<&CorpusIndex> {
        self.indexes
            .iter()
            .find(|(s, _)| *s == split)
            .map(|(_, i)| i)
    }
}

impl Default for RetrieverParams {
    /// Dense, `top_k` 4, `fetch_k` 20, `lambda_mult` 0.5, `ensemble_weight` 0.5 (LangChain's
    /// retriever defaults), tantivy BM25, arroy dense search.
    fn default() -> Self {
        RetrieverParams {
            kind: RetrieverKind::Dense,
            top_k: 4,
            fetch_k: 20,
            lambda_mult: 0.5,
            ensemble_weight: 0.5,
            bm25: Bm25Variant::Tantivy,
            dense_index: DenseIndexKind::Arroy,
            members: Vec::new(),
            child: None,
        }
    }
}

impl RetrieverParams {
    /// Every child split this retriever and its members search (each once, in first-use order).
    pub fn child_splits(&self) -> Vec<ChildSplit> {
        let mut out: Vec<ChildSplit> = self.child.into_iter().collect();
        for m in &self.members {
            for s in m.params.child_splits() {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Checks `top_k >= 1`, `lambda_mult` and `ensemble_weight` in `[0, 1]`, `fetch_k >= 1`
    /// for MMR, members only on ensembles with finite weights `>= 0` (and each member valid),
    /// and a child split with `0 < chunk_overlap < chunk_size` (or overlap 0) exactly on parent
    /// retrievers. Errors: [`RetrieveError::InvalidParams`].
    pub fn validate(&self) -> Result<(), RetrieveError> {
        let bad = |m: String| Err(RetrieveError::InvalidParams(m));
        if self.top_k == 0 {
            return bad("top_k must be >= 1".into());
        }
        if !(0.0..=1.0).contains(&self.lambda_mult) {
            return bad(format!("lambda_mult {} not in [0, 1]", self.lambda_mult));
        }
        if !(0.0..=1.0).contains(&self.ensemble_weight) {
            return bad(format!(
                "ensemble_weight {} not in [0, 1]",
                self.ensemble_weight
            ));
        }
        if self.kind == RetrieverKind::Mmr && self.fetch_k == 0 {
            return bad("fetch_k must be >= 1 for mmr".into());
        }
        if !self.members.is_empty() && self.kind != RetrieverKind::Ensemble {
            return bad(format!("a {} retriever has no members", self.kind));
        }
        for m in &self.members {
            if !(m.weight.is_finite() && m.weight >= 0.0) {
                return bad(format!("member weight {} is not a number >= 0", m.weight));
            }
            m.params.validate()?;
        }
        match (self.kind, self.child) {
            (RetrieverKind::Parent, None) => {
                return bad("a parent retriever needs child_chunk_size".into())
            }
            (RetrieverKind::Parent, Some(c)) => {
                if c.chunk_size == 0 {
                    return bad("child_chunk_size must be >= 1".into());
                }
                if c.chunk_overlap >= c.chunk_size {
                    return bad(format!(
                        "child_chunk_overlap {} is not smaller than child_chunk_size {}",
                        c.chunk_overlap, c.chunk_size
                    ));
                }
            }
            (kind, Some(_)) => return bad(format!("a {kind} retriever has no child chunks")),
            (_, None) => {}
        }
        Ok(())
    }
}

/// One retrieved chunk. `score` depends on the strategy: cosine similarity (dense, and MMR's
/// query similarity of the chosen chunk), BM25 score (bm25), or fused RRF score (ensemble).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Retrieved {
    /// Chunk id (index into [`CorpusIndex::chunks`]).
    pub chunk_id: u32,
    /// Strategy-specific score; higher is better.
    pub score: f32,
}

/// Runs the retriever `p` for one query. `query` is the question text (BM25) and `query_vec` its
/// embedding (dense, MMR), of the index's dimension. Results are best first:
/// - dense: top `top_k` by cosine;
/// - mmr: `min(fetch_k, n)` by cosine, re-ranked by [`maximal_marginal_relevance`] to `top_k`,
///   in selection order;
/// - bm25: top `top_k` by BM25 (fewer if fewer chunks share a term with the query);
/// - ensemble: [`weighted_reciprocal_rank_fusion`] of `[bm25 top_k, dense top_k]` with weights
///   `[r, 1 - r]` and `c = 60`, deduplicated by chunk text (see [`fuse_dedup_by_text`]), not
///   truncated; with `members`, the same fusion of each member's full result list with the
///   members' weights (a nested ensemble contributes its fused order);
/// - parent: see [`retrieve_with_children`] (this function has no child index, so it errors).
///
/// Errors: [`RetrieveError::InvalidParams`], [`RetrieveError::Index`] (e.g. wrong vector length),
/// [`RetrieveError::MissingChildIndex`] for a parent retriever.
pub fn retrieve(
    index: &CorpusIndex,
    query: &str,
    query_vec: &[f32],
    p: &RetrieverParams,
) -> Result<Vec<Retrieved>, RetrieveError> {
    retrieve_with_children(index, &ChildIndexes::none(), query, query_vec, p)
}

/// [`retrieve`] with the child indexes parent retrievers search. A parent retriever takes the
/// `top_k` child chunks most similar to `query_vec` (by `dense_index`; exact ties go to the lower
/// child id, as FAISS's flat index) and returns their parent chunks (ids of `index`),
/// deduplicated in order of first hit, each scored by its best child's cosine — LangChain's
/// `ParentDocumentRetriever` with `search_type="similarity"`.
///
/// Errors: as [`retrieve`]; [`RetrieveError::MissingChildIndex`] when `children` lacks the
/// parent retriever's split.
pub fn retrieve_with_children(
    index: &CorpusIndex,
    children: &ChildIndexes,
    query: &str,
    query_vec: &[f32],
    p: &RetrieverParams,
) -> Result<Vec<Retrieved>, RetrieveError> {
    p.validate()?;
    run(index, children, query, query_vec, p)
}

/// [`retrieve_with_children`] without validating again (members are validated with the root).
fn run(
    index: &CorpusIndex,
    children: &ChildIndexes,
    query: &str,
    query_vec: &[f32],
    p: &RetrieverParams,
) -> Result<Vec<Retrieved>, RetrieveError> {
    let hits = match p.kind {
        RetrieverKind::Dense => to_retrieved(dense_search(index, query_vec, p.top_k, p)?),
        RetrieverKind::Bm25 => to_retrieved(bm25_search(index, query, p.top_k, p)?),
        RetrieverKind::Mmr => mmr_retrieve(index, query_vec, p)?,
        RetrieverKind::Parent => parent_retrieve(index, children, query_vec, p)?,
        RetrieverKind::Ensemble if !p.members.is_empty() => {
            let mut lists = Vec::with_capacity(p.members.len());
            for m in &p.members {
                let hits = run(index, children, query, query_vec, &m.params)?;
                lists.push(hits.into_iter().map(|h| h.chunk_id).collect());
            }
            let weights: Vec<f32> = p.members.iter().map(|m| m.weight).collect();
            to_retrieved(fuse_dedup_by_text(index, &lists, &weights, RRF_C))
        }
        RetrieverKind::Ensemble => {
            let bm25 = ids(bm25_search(index, query, p.top_k, p)?);
            let dense = ids(dense_search(index, query_vec, p.top_k, p)?);
            let weights = [p.ensemble_weight, 1.0 - p.ensemble_weight];
            let fused = fuse_dedup_by_text(index, &[bm25, dense], &weights, RRF_C);
            to_retrieved(fused)
        }
    };
    Ok(hits)
}

/// Dense top `k` by the method `p.dense_index` selects.
fn dense_search(
    index: &CorpusIndex,
    query_vec: &[f32],
    k: usize,
    p: &RetrieverParams,
) -> Result<Vec<(u32, f32)>, RetrieveError> {
    Ok(match p.dense_index {
        DenseIndexKind::Arroy => index.dense_search(query_vec, k)?,
        DenseIndexKind::Exact => index.dense_search_exact(query_vec, k)?,
    })
}

/// BM25 top `k` by the implementation `p.bm25` selects.
fn bm25_search(
    index: &CorpusIndex,
    query: &str,
    k: usize,
    p: &RetrieverParams,
) -> Result<Vec<(u32, f32)>, RetrieveError> {
    Ok(match p.bm25 {
        Bm25Variant::Tantivy => index.bm25_search(query, k)?,
        Bm25Variant::Okapi => index.okapi_search(query, k),
    })
}

/// Dense fetch of `fetch_k` candidates, then MMR to `top_k`; scores are query cosines.
fn mmr_retrieve(
    index: &CorpusIndex,
    query_vec: &[f32],
    p: &RetrieverParams,
) -> Result<Vec<Retrieved>, RetrieveError> {
    let fetched = dense_search(index, query_vec, p.fetch_k, p)?;
    let vectors: Vec<Vec<f32>> = fetched
        .iter()
        .filter_map(|(id, _)| index.vector(*id))
        .collect();
    let picked = maximal_marginal_relevance(query_vec, &vectors, p.lambda_mult, p.top_k);
    Ok(picked
        .into_iter()
        .map(|i| Retrieved {
            chunk_id: fetched[i].0,
            score: fetched[i].1,
        })
        .collect())
}

/// Top `top_k` children by the method `p.dense_index`, mapped to their parents in first-hit
/// order.
fn parent_retrieve(
    index: &CorpusIndex,
    children: &ChildIndexes,
    query_vec: &[f32],
    p: &RetrieverParams,
) -> Result<Vec<Retrieved>, RetrieveError> {
    let split = p.child.ok_or_else(|| {
        RetrieveError::InvalidParams("a parent retriever needs child_chunk_size".into())
    })?;
    let child_index = children
        .get(split)
        .ok_or(RetrieveError::MissingChildIndex {
            chunk_size: split.chunk_size,
            chunk_overlap: split.chunk_overlap,
        })?;
    let hits = dense_search(child_index, query_vec, p.top_k, p)?;
    let mut out: Vec<Retrieved> = Vec::new();
    for (child, score) in hits {
        let Some(parent) = child_index
            .chunk(child)
            .and_then(|c| c.page.checked_sub(1))
            .filter(|&id| (id as usize) < index.len())
        else {
            return Err(RetrieveError::Index(IndexError::Corrupt {
                path: child_index.dir().to_path_buf(),
                reason: format!("child chunk {child} names no parent chunk of the index"),
            }));
        };
        if !out.iter().any(|r| r.chunk_id == parent) {
            out.push(Retrieved {
                chunk_id: parent,
                score,
            });
        }
    }
    Ok(out)
}

fn to_retrieved(hits: Vec<(u32, f32)>) -> Vec<Retrieved> {
    hits.into_iter()
        .map(|(chunk_id, score)| Retrieved { chunk_id, score })
        .collect()
}

fn ids(hits: Vec<(u32, f32)>) -> Vec<u32> {
    hits.into_iter().map(|(id, _)| id).collect()
}

/// Maximal marginal relevance (Carbonell & Goldstein 1998) with langchain_core's semantics:
/// similarities are cosine ([`cosine`], 0 for zero vectors); the first pick is the candidate most
/// similar to `query` (first on ties); each next pick maximises
/// `lambda_mult * sim(query, d) - (1 - lambda_mult) * max_{s in selected} sim(d, s)` over the
/// unselected candidates, with strict `>` so ties go to the earliest index.
///
/// Shapes: `query` is one vector; `candidates` are vectors of the same length. Returns
/// `min(k, candidates.len())` distinct indices into `candidates`, in selection order (`[]` if
/// `k == 0` or there are no candidates).
pub fn maximal_marginal_relevance(
    query: &[f32],
    candidates: &[Vec<f32>],
    lambda_mult: f32,
    k: usize,
) -> Vec<usize> {
    let n = k.min(candidates.len());
    if n == 0 {
        return Vec::new();
    }
    let lambda = f64::from(lambda_mult);
    let to_query: Vec<f64> = candidates.iter().map(|c| cosine(query, c)).collect();
    let first = argmax_first(&to_query);
    let mut selected = vec![first];
    // max similarity of each candidate to the selected set, updated incrementally.
    let mut redundancy: Vec<f64> = candidates
        .iter()
        .map(|c| cosine(c, &candidates[first]))
        .collect();
    while selected.len() < n {
        let mut best: Option<(usize, f64)> = None;
        for (i, &q) in to_query.iter().enumerate() {
            if selected.contains(&i) {
                continue;
            }
            let score = lambda * q - (1.0 - lambda) * redundancy[i];
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        let Some((pick, _)) = best else { break };
        selected.push(pick);
        for (i, r) in redundancy.iter_mut().enumerate() {
            *r = r.max(cosine(&candidates[i], &candidates[pick]));
        }
    }
    selected
}

/// Index of the largest value, the first one on ties (numpy `argmax`).
fn argmax_first(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Weighted reciprocal rank fusion, as LangChain's `EnsembleRetriever.weighted_reciprocal_rank`:
/// for each list `l` with weight `w_l` and each item at 1-based rank `r` in it,
/// `score[item] += w_l / (r + c)` (weights are not normalised; an item repeated within a list
/// scores each occurrence). Items are deduplicated keeping the first occurrence in the
/// concatenation of the lists, then stably sorted by score descending (ties keep that first-seen
/// order). Nothing is truncated. Lists beyond `weights.len()` (or weights beyond the lists) are
/// ignored, as Python's `zip`. Returns `(item, score)`.
pub fn weighted_reciprocal_rank_fusion(
    lists: &[Vec<u32>],
    weights: &[f32],
    c: f32,
) -> Vec<(u32, f32)> {
    let mut scores: HashMap<u32, f64> = HashMap::new();
    let mut order: Vec<u32> = Vec::new();
    for (list, &w) in lists.iter().zip(weights) {
        for (rank0, &item) in list.iter().enumerate() {
            let add = f64::from(w) / ((rank0 + 1) as f64 + f64::from(c));
            let entry = scores.entry(item).or_insert_with(|| {
                order.push(item);
                0.0
            });
            *entry += add;
        }
    }
    let mut fused: Vec<(u32, f64)> = order.into_iter().map(|id| (id, scores[&id])).collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused.into_iter().map(|(id, s)| (id, s as f32)).collect()
}

/// [`weighted_reciprocal_rank_fusion`] over chunk ids, deduplicating by chunk text as LangChain
/// does (it keys documents by `page_content`): every id is first replaced by the first id, in
/// list order, whose chunk has the same text, so identical chunks (e.g. a running header on many
/// pages) pool their scores under one id. Ids unknown to `index` are kept as they are. Checked
/// against LangChain's `EnsembleRetriever` over Documents that differ only in metadata (fixture
/// `tests/fixtures/retrieve/reference.json`, `ensemble_dups`).
pub fn fuse_dedup_by_text(
    index: &CorpusIndex,
    lists: &[Vec<u32>],
    weights: &[f32],
    c: f32,
) -> Vec<(u32, f32)> {
    let mut canonical: HashMap<&str, u32> = HashMap::new();
    let mapped: Vec<Vec<u32>> = lists
        .iter()
        .map(|list| {
            list.iter()
                .map(|&id| match index.chunk(id) {
                    Some(chunk) => *canonical.entry(chunk.text.as_str()).or_insert(id),
                    None => id,
                })
                .collect()
        })
        .collect();
    weighted_reciprocal_rank_fusion(&mapped, weights, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_round_trips_through_display_fromstr_and_serde() {
        for kind in RetrieverKind::ALL {
            assert_eq!(kind.to_string().parse::<RetrieverKind>().ok(), Some(kind));
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{kind}\""));
            let back: RetrieverKind = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, kind);
        }
        assert_eq!(
            " BM25 ".parse::<RetrieverKind>().ok(),
            Some(RetrieverKind::Bm25)
        );
        assert!("faiss".parse::<RetrieverKind>().is_err());
    }

    #[test]
    fn validate_rejects_out_of_range() {
        assert!(RetrieverParams::default().validate().is_ok());
        let cases = [
            RetrieverParams {
                top_k: 0,
                ..Default::default()
            },
            RetrieverParams {
                lambda_mult: 1.5,
                ..Default::default()
            },
            RetrieverParams {
                ensemble_weight: -0.1,
                ..Default::default()
            },
            RetrieverParams {
                kind: RetrieverKind::Mmr,
                fetch_k: 0,
                ..Default::default()
            },
        ];
        for p in cases {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }

    #[test]
    fn mmr_hand_checked_diversity() {
        // q = (1, 0). a = (1, 0) (cos 1), b = (0.99, 0.141) (near-duplicate of a, cos ~0.99),
        // c = (0.6, -0.8) (cos 0.6, far from a: cos(a, c) = 0.6, cos(b, c) ~ 0.481).
        let q = [1.0f32, 0.0];
        let cands = vec![vec![1.0f32, 0.0], vec![0.99, 0.141], vec![0.6, -0.8]];
        // lambda 0.5: after a, b scores 0.5*0.99 - 0.5*0.99 = 0, c scores 0.5*0.6 - 0.5*0.6 = 0;
        // tie → earliest (b). Use lambda 0.3 to make diversity win: b = 0.3*0.99 - 0.7*0.99 < 0,
        // c = 0.3*0.6 - 0.7*0.6 = -0.24 > b's -0.396.
        assert_eq!(maximal_marginal_relevance(&q, &cands, 0.3, 2), vec![0, 2]);
        // lambda 1: pure relevance order.
        assert_eq!(
            maximal_marginal_relevance(&q, &cands, 1.0, 3),
            vec![0, 1, 2]
        );
        // k larger than the candidates, and k = 0.
        assert_eq!(maximal_marginal_relevance(&q, &cands, 0.3, 10).len(), 3);
        assert!(maximal_marginal_relevance(&q, &cands, 0.3, 0).is_empty());
        assert!(maximal_marginal_relevance(&q, &[], 0.3, 4).is_empty());
    }

    #[test]
    fn mmr_ties_go_to_the_earliest() {
        let q = [1.0f32, 0.0];
        let cands = vec![
            vec![0.0f32, 1.0],
            vec![1.0, 0.0],
            vec![1.0, 0.0],
            vec![2.0, 0.0],
        ];
        // 1, 2 and 3 all have cosine 1 to the query: the first pick is index 1; then 2 and 3 tie.
        assert_eq!(
            maximal_marginal_relevance(&q, &cands, 0.5, 3),
            vec![1, 0, 2]
        );
    }

    #[test]
    fn rrf_hand_checked() {
        // list A (w 0.5): 1, 2 ; list B (w 0.5): 2, 3.
        let fused = weighted_reciprocal_rank_fusion(&[vec![1, 2], vec![2, 3]], &[0.5, 0.5], 60.0);
        let ids: Vec<u32> = fused.iter().map(|f| f.0).collect();
        assert_eq!(ids, vec![2, 1, 3]);
        let s2 = 0.5 / 62.0 + 0.5 / 61.0;
        assert!((f64::from(fused[0].1) - s2).abs() < 1e-7);
        assert!((f64::from(fused[1].1) - 0.5 / 61.0).abs() < 1e-7);
        assert!((f64::from(fused[2].1) - 0.5 / 62.0).abs() < 1e-7);
    }

    #[test]
    fn rrf_ties_keep_first_seen_order_and_weights_are_not_normalised() {
        // Equal weights, mirrored ranks: 1 and 3 tie at rank 1, 2 and 4 at rank 2.
        let fused = weighted_reciprocal_rank_fusion(&[vec![1, 2], vec![3, 4]], &[1.0, 1.0], 60.0);
        assert_eq!(
            fused.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![1, 3, 2, 4]
        );
        assert!((fused[0].1 - 1.0 / 61.0).abs() < 1e-7);
        // Weight 0 still lists the items, last.
        let fused = weighted_reciprocal_rank_fusion(&[vec![7], vec![8]], &[0.0, 1.0], 60.0);
        assert_eq!(fused, vec![(8, 1.0 / 61.0), (7, 0.0)]);
    }
}
