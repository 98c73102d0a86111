//! In-memory BM25Okapi that reproduces `rank_bm25.BM25Okapi` (rank_bm25 0.2.x) exactly, i.e. the
//! scores and rankings of LangChain's `BM25Retriever` with its default `text.split()`
//! preprocessing. It owns whitespace tokenisation ([`tokenize`]), the inverted index and the
//! scoring; it does not own chunking or fusion.
//!
//! # Reference
//! BM25 as in Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond"
//! (2009), in the exact variant and floating-point order of rank_bm25 0.2.2 `BM25Okapi`
//! (`_initialize`, `_calc_idf`, `get_scores`, `get_top_n`):
//!
//! * tokens: Python `str.split()` with no arguments ([`tokenize`]), case-sensitive, no stemming,
//!   punctuation stays attached (`"Pool,"` ≠ `"Pool"`);
//! * `n(t)` = number of documents containing `t`, `N` = number of documents (empty ones count),
//!   `avgdl` = total tokens / `N`, document lengths exact;
//! * `idf(t) = ln(N - n(t) + 0.5) - ln(n(t) + 0.5)` (a difference of logs, as rank_bm25 computes
//!   it); `mean_idf` = sum of all idfs, negative ones included, / vocabulary size, summed in
//!   first-occurrence order like Python's dict; every *negative* idf (term in more than half the
//!   documents) is replaced by `epsilon * mean_idf` (a zero idf, term in exactly half, is not
//!   negative and stays 0; if `mean_idf < 0` the floor is negative too);
//! * `score(d, q) = Σ over query tokens, repeats counted once per occurrence, of
//!   idf(t) * tf * (k1 + 1) / (tf + k1 * ((1 - b) + b * |d| / avgdl))`; unknown tokens add 0.
//!
//! Every operation is done in `f64` in numpy's order, so scores are bit-identical to rank_bm25 on
//! the committed fixtures (`tests/fixtures/okapi/`, made by `make_fixture.py` there).
//!
//! # Differences from our default lexical index ([`super::lexical`], tantivy)
//! * k1, b: tantivy 1.2 and 0.75; here 1.5 and 0.75, plus epsilon 0.25;
//! * idf: tantivy `ln(1 + (N - n + 0.5) / (n + 0.5))`, never negative; here
//!   `ln(N - n + 0.5) - ln(n + 0.5)`, negative for terms in more than half the documents and
//!   then floored to `epsilon * mean idf`;
//! * tokens: tantivy `en_stem` splits on non-alphanumerics, lowercases and Snowball-stems; here
//!   Python `str.split()`, case-sensitive whitespace tokens with punctuation attached;
//! * lengths: tantivy quantises field norms to 256 buckets; here exact token counts.
//!
//! # Ranking and ties
//! [`Okapi::top_n`] orders by score descending, then by **ascending doc id** on exact ties, and
//! always returns `min(n, len)` documents, zero-score ones included (as `get_top_n` does).
//! LangChain returns `np.argsort(scores)[::-1][:n]`; numpy's default argsort is not stable, so
//! its order among exactly tied scores is an accident of the numpy build and CPU. Measured with
//! numpy 2.4.6 on x86-64: with AVX2/AVX-512 dispatch (x86-simd-sort) argsort is already unstable
//! for 5 elements; with SIMD disabled (`NPY_DISABLE_CPU_FEATURES`) it is stable up to 16
//! elements (insertion sort) and unstable above. Where argsort does keep ties in index order
//! (e.g. an all-equal array, on every path we tried), the `[::-1]` reversal makes LangChain list
//! tied documents in *descending* id order — the opposite of ours. So on exact ties (typically
//! zero scores, or duplicate chunks) our order may differ from LangChain's; the set of the top
//! `n` differs only when the `n`-th and `n+1`-th scores are tied.
//!
//! # Edge cases (where rank_bm25 fails, we choose)
//! * empty corpus: rank_bm25 raises `ZeroDivisionError` (avgdl = 0/0); here [`Okapi::scores`] is
//!   empty and [`Okapi::top_n`] returns nothing;
//! * all documents empty: rank_bm25 raises `ZeroDivisionError` (mean of an empty idf table);
//!   here every score is 0 (no term can match);
//! * empty query (or whitespace only): all scores 0, as rank_bm25;
//! * `b = 1` or `k1 = 0` with an empty document: rank_bm25 computes `0 / 0 = NaN` for every query
//!   token absent from that document; here absent tokens contribute exactly 0, so no NaN.
//!
//! # Cost
//! Built once (postings in CSR layout, term ids in first-occurrence order); a query costs
//! O(N) to zero the score vector plus O(Σ posting lengths of its known tokens).

use std::collections::HashMap;

/// BM25Okapi parameters; [`Default`] is rank_bm25's (k1 1.5, b 0.75, epsilon 0.25).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OkapiParams {
    /// Term-frequency saturation (≥ 0).
    pub k1: f64,
    /// Length normalisation, 0 (none) to 1 (full).
    pub b: f64,
    /// Floor for negative idfs, as a fraction of the mean idf.
    pub epsilon: f64,
}

impl Default for OkapiParams {
    fn default() -> Self {
        Self {
            k1: 1.5,
            b: 0.75,
            epsilon: 0.25,
        }
    }
}

/// Tokens of `text` exactly as Python's `text.split()` ([`crate::split::py_split`]): maximal
/// runs of characters that are not Python whitespace, in order, no empty strings. Case and
/// punctuation are kept.
pub fn tokenize(text: &str) -> impl Iterator<Item = &str> {
    crate::split::py_split(text)
}

/// A BM25Okapi index over a fixed corpus; doc ids are positions in the corpus given to
/// [`Okapi::new`].
#[derive(Clone)]
pub struct Okapi {
    params: OkapiParams,
    /// Token → term id, ids in first-occurrence order over the corpus (Python dict order).
    vocab: HashMap<String, u32>,
    /// Per term: idf after the epsilon floor.
    idf: Vec<f64>,
    /// CSR postings: term `t` owns `post_doc[post_start[t]..post_start[t + 1]]` (ascending doc
    /// ids) and the matching term frequencies in `post_tf`.
    post_start: Vec<u32>,
    post_doc: Vec<u32>,
    post_tf: Vec<u32>,
    /// Per document: `k1 * ((1 - b) + b * len / avgdl)`, the length part of the denominator.
    norm: Vec<f64>,
    doc_len: Vec<u32>,
    avgdl: f64,
    mean_idf: f64,
}

impl std::fmt::Debug for Okapi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Okapi")
            .field("params", &self.params)
            .field("docs", &self.norm.len())
            .field("terms", &self.idf.len())
            .field("postings", &self.post_doc.len())
            .field("avgdl", &self.avgdl)
            .field("mean_idf", &self.mean_idf)
            .finish()
    }
}

impl Okapi {
    /// Index `docs` (doc id = position, i.e. chunk-id order), tokenised with [`tokenize`].
    ///
    /// # Panics
    /// If there are `u32::MAX` or more documents, terms or postings.
    pub fn new<S: AsRef<str>>(docs: &[S], params: OkapiParams) -> Okapi {
        let n_docs = docs.len();
        assert!(n_docs < u32::MAX as usize, "too many documents");
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut doc_len = Vec::with_capacity(n_docs);
        // (term, doc, tf) for every distinct term of every doc, docs in order.
        let mut triples: Vec<(u32, u32, u32)> = Vec::new();
        let mut df: Vec<u32> = Vec::new();
        // Scratch: tf per term id for the current doc, and the doc's distinct terms.
        let mut tf: Vec<u32> = Vec::new();
        let mut seen: Vec<u32> = Vec::new();
        let mut total_tokens: u64 = 0;
        for (d, doc) in docs.iter().enumerate() {
            let mut len: u32 = 0;
            for token in tokenize(doc.as_ref()) {
                len += 1;
                let id = match vocab.get(token) {
                    Some(&id) => id,
                    None => {
                        let id = u32::try_from(vocab.len()).expect("too many terms");
                        vocab.insert(token.to_owned(), id);
                        tf.push(0);
                        df.push(0);
                        id
                    }
                };
                if tf[id as usize] == 0 {
                    seen.push(id);
                }
                tf[id as usize] += 1;
            }
            for &id in &seen {
                triples.push((id, d as u32, tf[id as usize]));
                df[id as usize] += 1;
                tf[id as usize] = 0;
            }
            seen.clear();
            doc_len.push(len);
            total_tokens += u64::from(len);
        }

        // CSR by term (counting sort keeps doc order within a term).
        let n_terms = vocab.len();
        assert!(triples.len() < u32::MAX as usize, "too many postings");
        let mut post_start = Vec::with_capacity(n_terms + 1);
        let mut acc = 0u32;
        post_start.push(0);
        for &n in &df {
            acc += n;
            post_start.push(acc);
        }
        let mut fill: Vec<u32> = post_start[..n_terms].to_vec();
        let mut post_doc = vec![0u32; triples.len()];
        let mut post_tf = vec![0u32; triples.len()];
        for (t, d, f) in triples {
            let at = fill[t as usize] as usize;
            post_doc[at] = d;
            post_tf[at] = f;
            fill[t as usize] += 1;
        }

        // _initialize: avgdl = num_doc / corpus_size (0 for an empty corpus, where Python fails).
        let avgdl = if n_docs == 0 {
            0.0
        } else {
            total_tokens as f64 / n_docs as f64
        };

        // _calc_idf, in dict (first-occurrence) order.
        let n = n_docs as f64;
        let mut idf: Vec<f64> = Vec::with_capacity(n_terms);
        let mut idf_sum = 0.0f64;
        for &n_t in &df {
            let n_t = f64::from(n_t);
            let v = (n - n_t + 0.5).ln() - (n_t + 0.5).ln();
            idf_sum += v;
            idf.push(v);
        }
        let mean_idf = if n_terms == 0 {
            0.0
        } else {
            idf_sum / n_terms as f64
        };
        let eps = params.epsilon * mean_idf;
        for v in &mut idf {
            if *v < 0.0 {
                *v = eps;
            }
        }

        // Length part of the denominator, as numpy evaluates
        // `k1 * (1 - b + b * doc_len / avgdl)`: ((1 - b) + ((b * len) / avgdl)) * k1.
        let OkapiParams { k1, b, .. } = params;
        let norm = doc_len
            .iter()
            .map(|&len| {
                if avgdl > 0.0 {
                    k1 * ((1.0 - b) + (b * f64::from(len)) / avgdl)
                } else {
                    // Only when every doc is empty: no postings, never used.
                    k1
                }
            })
            .collect();

        Okapi {
            params,
            vocab,
            idf,
            post_start,
            post_doc,
            post_tf,
            norm,
            doc_len,
            avgdl,
            mean_idf,
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.norm.len()
    }

    /// Whether the corpus has no documents.
    pub fn is_empty(&self) -> bool {
        self.norm.is_empty()
    }

    /// The parameters the index was built with.
    pub fn params(&self) -> OkapiParams {
        self.params
    }

    /// Number of distinct tokens in the corpus.
    pub fn n_terms(&self) -> usize {
        self.idf.len()
    }

    /// Mean document length in tokens (rank_bm25's `avgdl`; 0 for an empty corpus).
    pub fn avgdl(&self) -> f64 {
        self.avgdl
    }

    /// Mean idf before the epsilon floor (rank_bm25's `average_idf`; 0 without terms).
    pub fn mean_idf(&self) -> f64 {
        self.mean_idf
    }

    /// The idf of `token` after the epsilon floor (rank_bm25's `idf[token]`), `None` if unknown.
    pub fn idf(&self, token: &str) -> Option<f64> {
        self.vocab.get(token).map(|&t| self.idf[t as usize])
    }

    /// Length in tokens of document `doc`.
    ///
    /// # Panics
    /// If `doc >= len()`.
    pub fn doc_len(&self, doc: u32) -> u32 {
        self.doc_len[doc as usize]
    }

    /// One score per document: `BM25Okapi(corpus_tokens).get_scores(query.split())`.
    pub fn scores(&self, query: &str) -> Vec<f64> {
        let mut out = Vec::new();
        self.scores_into(query, &mut out);
        out
    }

    /// [`Okapi::scores`] into a reused buffer (cleared and resized to [`Okapi::len`]).
    pub fn scores_into(&self, query: &str, out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.len(), 0.0);
        let k1p1 = self.params.k1 + 1.0;
        for token in tokenize(query) {
            let Some(&t) = self.vocab.get(token) else {
                continue;
            };
            let idf = self.idf[t as usize];
            let range =
                self.post_start[t as usize] as usize..self.post_start[t as usize + 1] as usize;
            for (&d, &f) in self.post_doc[range.clone()]
                .iter()
                .zip(&self.post_tf[range])
            {
                let d = d as usize;
                let f = f64::from(f);
                // numpy: score += idf * (q_freq * (k1 + 1) / (q_freq + norm)); docs without the
                // term add idf * 0 / norm = ±0, which leaves the sum unchanged.
                out[d] += idf * ((f * k1p1) / (f + self.norm[d]));
            }
        }
    }

    /// The `min(n, len)` best documents as `(doc id, score)`, score descending, ties by ascending
    /// doc id (see the module docs for how this relates to LangChain's order). Zero-score
    /// documents are included, as `get_top_n` does.
    pub fn top_n(&self, query: &str, n: usize) -> Vec<(u32, f64)> {
        let scores = self.scores(query);
        top_n_of(&scores, n)
    }
}

/// The `min(n, scores.len())` best `(index, score)` pairs of `scores`: score descending (by
/// [`f64::total_cmp`]), ties by ascending index.
pub fn top_n_of(scores: &[f64], n: usize) -> Vec<(u32, f64)> {
    let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut all: Vec<(u32, f64)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u32, s))
        .collect();
    let n = n.min(all.len());
    if n == 0 {
        return Vec::new();
    }
    if n < all.len() {
        all.select_nth_unstable_by(n - 1, cmp);
        all.truncate(n);
    }
    all.sort_unstable_by(cmp);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const BACULA: &str = include_str!("../../tests/fixtures/okapi/bacula.json");
    const SMALL: &str = include_str!("../../tests/fixtures/okapi/small.json");
    const WHITESPACE: &str = include_str!("../../tests/fixtures/okapi/whitespace.json");

    /// Tolerance required by the spec; the fixtures actually match bit for bit (asserted too).
    const TOL: f64 = 1e-6;

    /// A fixture float: Python's repr in a JSON string, parsed exactly by `str::parse`.
    #[derive(Deserialize, Clone, Copy)]
    #[serde(try_from = "String")]
    struct F(f64);

    impl TryFrom<String> for F {
        type Error = std::num::ParseFloatError;
        fn try_from(s: String) -> Result<Self, Self::Error> {
            s.parse().map(F)
        }
    }

    #[derive(Deserialize)]
    struct Bacula {
        params: OkapiParams,
        avgdl: F,
        average_idf: F,
        n_terms: usize,
        docs: Vec<String>,
        queries: Vec<BaculaQuery>,
    }

    #[derive(Deserialize)]
    struct BaculaQuery {
        query: String,
        tokens: Vec<String>,
        idf: HashMap<String, F>,
        top: Vec<(u32, F)>,
        scores: Option<Vec<F>>,
        top10_ties: bool,
        top10_langchain: Option<Vec<u32>>,
    }

    #[derive(Deserialize)]
    struct Small {
        cases: Vec<SmallCase>,
        rank_bm25_raises: Vec<Raises>,
    }

    #[derive(Deserialize)]
    struct SmallCase {
        name: String,
        params: OkapiParams,
        docs: Vec<String>,
        avgdl: F,
        average_idf: F,
        idf: HashMap<String, F>,
        queries: Vec<SmallQuery>,
    }

    #[derive(Deserialize)]
    struct SmallQuery {
        query: String,
        tokens: Vec<String>,
        scores: Vec<F>,
    }

    #[derive(Deserialize)]
    struct Raises {
        name: String,
        docs: Vec<String>,
    }

    #[derive(Deserialize)]
    struct Whitespace {
        isspace: Vec<u32>,
        splits: Vec<Split>,
    }

    #[derive(Deserialize)]
    struct Split {
        text: String,
        tokens: Vec<String>,
    }

    /// Largest |a - b| seen so far and how many values were not bit-identical.
    #[derive(Default)]
    struct Diff {
        max: f64,
        inexact: usize,
        n: usize,
    }

    impl Diff {
        fn check(&mut self, what: &str, got: f64, F(want): F) {
            let d = (got - want).abs();
            assert!(d <= TOL, "{what}: got {got:e}, want {want:e}, diff {d:e}");
            self.max = self.max.max(d);
            self.inexact += usize::from(got.to_bits() != want.to_bits());
            self.n += 1;
        }
    }

    fn tokens(s: &str) -> Vec<&str> {
        tokenize(s).collect()
    }

    #[test]
    fn bacula_scores_match_rank_bm25() {
        let fx: Bacula = serde_json::from_str(BACULA).unwrap();
        assert_eq!(fx.params, OkapiParams::default());
        let okapi = Okapi::new(&fx.docs, fx.params);
        assert_eq!(okapi.len(), 400);
        assert_eq!(okapi.n_terms(), fx.n_terms);
        let mut diff = Diff::default();
        diff.check("avgdl", okapi.avgdl(), fx.avgdl);
        diff.check("average_idf", okapi.mean_idf(), fx.average_idf);
        let mut full = 0;
        for q in &fx.queries {
            assert_eq!(tokens(&q.query), q.tokens, "tokens of {:?}", q.query);
            for (t, &want) in &q.idf {
                diff.check(&format!("idf {t:?}"), okapi.idf(t).unwrap(), want);
            }
            for t in &q.tokens {
                assert_eq!(okapi.idf(t).is_some(), q.idf.contains_key(t), "known {t:?}");
            }
            let scores = okapi.scores(&q.query);
            assert_eq!(scores.len(), okapi.len());
            for &(d, want) in &q.top {
                diff.check(&format!("{:?} doc {d}", q.query), scores[d as usize], want);
            }
            if let Some(want) = &q.scores {
                full += 1;
                for (d, (&got, &want)) in scores.iter().zip(want).enumerate() {
                    diff.check(&format!("{:?} doc {d}", q.query), got, want);
                }
            }
        }
        assert!(full >= 5);
        eprintln!(
            "bacula: max |rust - python| = {:e} over {} values, {} not bit-identical",
            diff.max, diff.n, diff.inexact
        );
        assert_eq!(diff.inexact, 0, "expected bit-identical scores");
    }

    #[test]
    fn bacula_top_n_matches_python_and_langchain() {
        let fx: Bacula = serde_json::from_str(BACULA).unwrap();
        let okapi = Okapi::new(&fx.docs, fx.params);
        let (mut with_lc, mut lc_same_order) = (0, 0);
        for q in &fx.queries {
            let top = okapi.top_n(&q.query, 50);
            // Python's order: score descending, then doc id ascending.
            let got: Vec<u32> = top.iter().map(|p| p.0).collect();
            let want: Vec<u32> = q.top.iter().map(|p| p.0).collect();
            assert_eq!(got, want, "top 50 of {:?}", q.query);
            let top10: Vec<u32> = okapi.top_n(&q.query, 10).iter().map(|p| p.0).collect();
            assert_eq!(top10, want[..10], "top 10 of {:?}", q.query);
            if let Some(lc) = &q.top10_langchain {
                with_lc += 1;
                let (mut a, mut b) = (top10.clone(), lc.clone());
                a.sort_unstable();
                b.sort_unstable();
                assert_eq!(a, b, "LangChain top-10 set of {:?}", q.query);
                if !q.top10_ties {
                    assert_eq!(&top10, lc, "LangChain top-10 order of {:?}", q.query);
                }
                lc_same_order += usize::from(&top10 == lc);
            }
        }
        assert!(with_lc >= 40, "{with_lc}");
        eprintln!("bacula: LangChain top 10 same set in {with_lc}, same order in {lc_same_order}");
    }

    #[test]
    fn small_corpora_match_rank_bm25() {
        let fx: Small = serde_json::from_str(SMALL).unwrap();
        let mut diff = Diff::default();
        for case in &fx.cases {
            let okapi = Okapi::new(&case.docs, case.params);
            diff.check(&format!("{} avgdl", case.name), okapi.avgdl(), case.avgdl);
            diff.check(
                &format!("{} mean idf", case.name),
                okapi.mean_idf(),
                case.average_idf,
            );
            assert_eq!(okapi.n_terms(), case.idf.len(), "{}", case.name);
            for (t, &want) in &case.idf {
                diff.check(
                    &format!("{} idf {t:?}", case.name),
                    okapi.idf(t).unwrap(),
                    want,
                );
            }
            for q in &case.queries {
                assert_eq!(
                    tokens(&q.query),
                    q.tokens,
                    "{}: tokens of {:?}",
                    case.name,
                    q.query
                );
                let got = okapi.scores(&q.query);
                assert_eq!(got.len(), q.scores.len());
                for (d, (&g, &w)) in got.iter().zip(&q.scores).enumerate() {
                    diff.check(&format!("{} {:?} doc {d}", case.name, q.query), g, w);
                }
            }
        }
        eprintln!(
            "small: max diff {:e}, {} of {} not bit-identical",
            diff.max, diff.inexact, diff.n
        );
        assert_eq!(diff.inexact, 0);

        // Where rank_bm25 raises ZeroDivisionError we give empty / all-zero scores.
        for case in &fx.rank_bm25_raises {
            let okapi = Okapi::new(&case.docs, OkapiParams::default());
            assert_eq!(okapi.len(), case.docs.len(), "{}", case.name);
            for q in ["", "a", "a b a"] {
                assert!(okapi.scores(q).iter().all(|&s| s == 0.0), "{}", case.name);
                let top = okapi.top_n(q, 10);
                assert_eq!(top.len(), case.docs.len().min(10));
                assert!(top
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.0 == i as u32 && p.1 == 0.0));
            }
        }
    }

    #[test]
    fn negative_and_zero_idf_by_hand() {
        // N = 6, one empty doc; |d| = 3 3 3 3 0 5, avgdl = 17/6.
        let docs = [
            "the cat sat",
            "the dog sat",
            "the cat ran",
            "the bird sang",
            "",
            "the the cat cat cat",
        ];
        let okapi = Okapi::new(&docs, OkapiParams::default());
        let ln = f64::ln;
        let idf = |n: f64| ln(6.0 - n + 0.5) - ln(n + 0.5);
        // Terms in first-occurrence order: the cat sat dog ran bird sang.
        let raw = [
            idf(5.0),
            idf(3.0),
            idf(2.0),
            idf(1.0),
            idf(1.0),
            idf(1.0),
            idf(1.0),
        ];
        let mean: f64 = raw.iter().sum::<f64>() / 7.0;
        assert!(raw[0] < 0.0 && raw[1] == 0.0 && mean > 0.0);
        assert_eq!(okapi.mean_idf(), mean);
        assert_eq!(
            okapi.idf("the"),
            Some(0.25 * mean),
            "negative idf floored to eps * mean"
        );
        assert_eq!(
            okapi.idf("cat"),
            Some(0.0),
            "zero idf is not negative: kept"
        );
        assert_eq!(okapi.idf("sat"), Some(ln(4.5) - ln(2.5)));
        assert_eq!(okapi.idf("Cat"), None);
        assert_eq!(okapi.avgdl(), 17.0 / 6.0);

        let term = |idf: f64, tf: f64, len: f64| {
            idf * (tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * len / (17.0 / 6.0))))
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let s = okapi.scores("the sat the");
        let the = 0.25 * mean;
        let want = [
            2.0 * term(the, 1.0, 3.0) + term(raw[2], 1.0, 3.0),
            2.0 * term(the, 1.0, 3.0) + term(raw[2], 1.0, 3.0),
            2.0 * term(the, 1.0, 3.0),
            2.0 * term(the, 1.0, 3.0),
            0.0,
            2.0 * term(the, 2.0, 5.0),
        ];
        for (d, (&g, &w)) in s.iter().zip(&want).enumerate() {
            assert!(close(g, w), "doc {d}: {g} vs {w}");
        }
        // "cat" has idf 0: all scores 0; unknown tokens add nothing.
        assert!(okapi.scores("cat").iter().all(|&x| x == 0.0));
        assert_eq!(okapi.scores("sat xyzzy"), okapi.scores("sat"));
        // Docs 0 and 1 tie exactly: ascending id; zero-score docs still fill n.
        let top = okapi.top_n("the sat the", 10);
        assert_eq!(
            top.iter().map(|p| p.0).collect::<Vec<_>>(),
            [0, 1, 5, 2, 3, 4]
        );
        assert_eq!(top[0].1, top[1].1);
        let top = okapi.top_n("xyzzy", 3);
        assert_eq!(top, [(0, 0.0), (1, 0.0), (2, 0.0)]);
        assert!(okapi.top_n("sat", 0).is_empty());
    }

    #[test]
    fn edge_cases() {
        let empty: [&str; 0] = [];
        let okapi = Okapi::new(&empty, OkapiParams::default());
        assert!(okapi.is_empty());
        assert_eq!(okapi.len(), 0);
        assert!(okapi.scores("a b").is_empty());
        assert!(okapi.top_n("a b", 5).is_empty());

        let okapi = Okapi::new(&["", "  ", "\u{3000}"], OkapiParams::default());
        assert_eq!((okapi.len(), okapi.n_terms(), okapi.avgdl()), (3, 0, 0.0));
        assert_eq!(okapi.scores("a"), [0.0; 3]);
        assert_eq!(okapi.top_n("a", 2), [(0, 0.0), (1, 0.0)]);

        // b = 1 with an empty doc: rank_bm25 gives NaN (0/0) there; we give 0.
        let p = OkapiParams {
            k1: 1.5,
            b: 1.0,
            epsilon: 0.25,
        };
        let okapi = Okapi::new(&["a b", "", "c"], p);
        let s = okapi.scores("a c");
        assert!(s.iter().all(|x| x.is_finite()) && s[1] == 0.0 && s[0] > 0.0);

        // Empty and whitespace-only queries; n larger than the corpus.
        let okapi = Okapi::new(&["x y", "y z", "z"], OkapiParams::default());
        assert_eq!(okapi.scores(""), [0.0; 3]);
        assert_eq!(okapi.scores(" \t\x1c\u{85}"), [0.0; 3]);
        assert_eq!(okapi.top_n("z", 100).len(), 3);
        assert_eq!(okapi.doc_len(0), 2);
        // Repeated query tokens count once per occurrence.
        let one = okapi.scores("x");
        let three = okapi.scores("x x x");
        assert_eq!(three[0], one[0] + one[0] + one[0]);
    }

    #[test]
    fn whitespace_matches_python_isspace() {
        let fx: Whitespace = serde_json::from_str(WHITESPACE).unwrap();
        let python: std::collections::HashSet<u32> = fx.isspace.iter().copied().collect();
        assert_eq!(python.len(), 29);
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert_eq!(
                crate::split::is_py_space(c),
                python.contains(&(c as u32)),
                "U+{:04X}",
                c as u32
            );
            // Documented relation to Rust's definition.
            let rust = c.is_whitespace() || ('\x1c'..='\x1f').contains(&c);
            assert_eq!(crate::split::is_py_space(c), rust, "U+{:04X}", c as u32);
        }
        for s in &fx.splits {
            assert_eq!(tokens(&s.text), s.tokens, "{:?}", s.text);
        }
    }

    #[test]
    fn top_n_of_orders_and_truncates() {
        let s = [1.0, 3.0, 3.0, -1.0, 0.0, 3.0, 2.0];
        assert_eq!(top_n_of(&s, 4), [(1, 3.0), (2, 3.0), (5, 3.0), (6, 2.0)]);
        assert_eq!(top_n_of(&s, 2), [(1, 3.0), (2, 3.0)]);
        assert_eq!(top_n_of(&s, 99).len(), 7);
        assert_eq!(top_n_of(&s, 99).last(), Some(&(3, -1.0)));
        // Every n agrees with a full stable sort.
        let mut full: Vec<(u32, f64)> = s.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
        full.sort_by(|a, b| b.1.total_cmp(&a.1));
        for n in 0..=8 {
            assert_eq!(top_n_of(&s, n), full[..n.min(7)]);
        }
    }
}
