//! Retrieval scoring: which chunks are relevant to a question (relevance judgement → [`Qrels`]),
//! and the per-query ranking metrics hit@k, recall@k, MRR@k and nDCG@k ([`evaluate`]).
//!
//! This module owns the evidence matching rule used to judge chunks (see [`match_forms`] and
//! [`judge`]), the [`Qrels`] type (chunk id → positive integer grade), the prepared
//! [`JudgeCorpus`] for judging many questions against one index, and [`RetrievalMetrics`].
//!
//! # References
//!
//! The metric definitions are BEIR's (Thakur et al. 2021, "BEIR: A Heterogeneous Benchmark for
//! Zero-shot Evaluation of Information Retrieval Models", NeurIPS Datasets and Benchmarks):
//!
//! * nDCG@k and recall@k are what `beir.retrieval.evaluation.EvaluateRetrieval.evaluate` reports,
//!   i.e. pytrec_eval (trec_eval) `ndcg_cut_k` and `recall_k`. nDCG is Järvelin & Kekäläinen 2002
//!   ("Cumulated gain-based evaluation of IR techniques", ACM TOIS 20(4)) in trec_eval's form:
//!   linear gain = grade, discount `log2(rank + 1)` from rank 1 on.
//! * MRR@k and hit@k are BEIR's `beir.retrieval.custom_metrics.mrr` and `top_k_accuracy`.
//!
//! BEIR averages over queries and rounds the means to 5 decimals; [`evaluate`] gives one query's
//! values at full precision and leaves aggregation to the caller. Parity is checked against
//! golden values in `tests/fixtures/retrieval_metrics/metrics.json`, written by
//! `tests/fixtures/retrieval_metrics/make_fixture.py` (pytrec-eval-terrier and BEIR's own
//! `custom_metrics.py`), to 1e-12. The relevance rule is ours; the same script implements it
//! independently in Python and writes the expected judgements on real chunks of the Bacula index
//! to `tests/fixtures/retrieval_metrics/judge.json`.
//!
//! Not done here: BEIR's `ignore_identical_ids` (dropping a retrieved document whose id equals the
//! query id) — our ids are chunk ids, never query ids.

use std::collections::{BTreeMap, HashSet};

/// Default for `min_share` in [`judge`] / [`JudgeCorpus::qrels`]: a chunk cut out of a quote by a
/// chunk boundary must hold at least half of the quote's characters to count as relevant.
pub const DEFAULT_MIN_SHARE: f64 = 0.5;

// ---------------------------------------------------------------------------------------------
// Normalisation

/// Collapse every run of whitespace (Unicode White_Space, `char::is_whitespace`) to one U+0020
/// and trim both ends.
fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Join line-end hyphenation: a `-` directly after an alphabetic char (`char::is_alphabetic`)
/// and followed by optional spaces/tabs and then a line break (`\n` or `\r`) or the end of the
/// text is removed (`keep_hyphen == false`) or kept (`true`), and all whitespace after it is
/// removed. Returns `None` when the text has no such hyphen (nothing to join).
fn join_hyphenation(s: &str, keep_hyphen: bool) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut joined = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && i > 0 && chars[i - 1].is_alphabetic() {
            let mut j = i + 1;
            while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t') {
                j += 1;
            }
            if j == chars.len() || chars[j] == '\n' || chars[j] == '\r' {
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if keep_hyphen {
                    out.push('-');
                }
                joined = true;
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    joined.then_some(out)
}

/// The basic normal form used for matching: every run of whitespace (Unicode White_Space: spaces,
/// tabs, line breaks, NBSP, ...) becomes one space, leading and trailing whitespace is removed,
/// then the text is lowercased with Unicode's full lowercase mapping (`str::to_lowercase`,
/// including final sigma; this is not case *folding*: `"STRASSE"` stays `"strasse"`, not
/// `"straße"`). Hyphenation is left alone: `"direc-\ntive"` → `"direc- tive"`.
///
/// This is the first of the [`match_forms`]; relevance judgement compares all of them.
pub fn normalize_for_match(text: &str) -> String {
    collapse_ws(text).to_lowercase()
}

/// All forms under which `text` is compared, distinct, in this order:
///
/// 1. [`normalize_for_match`]`(text)` — hyphenation untouched (`"direc- tive"`);
/// 2. line-end hyphenation joined, hyphen removed (`"directive"`): the corpus README's rule (a
///    `-` directly after a letter, followed by optional spaces/tabs and a line break, is removed
///    together with the following whitespace), extended to a `-` after a letter at the very end
///    of the text, because chunks are stripped and lose the line break that followed it;
/// 3. the same with the hyphen kept (`"bacula-\ndir.conf"` → `"bacula-dir.conf"`), for real
///    hyphens that happen to fall at a line end.
///
/// Forms 2 and 3 are whitespace-collapsed and lowercased like form 1 and exist only when the
/// text has such a hyphen, so most texts have exactly one form. Quotes written in the page's
/// unjoined form, joined, or with the hyphen kept therefore all match (a quote's own forms are
/// compared too).
pub fn match_forms(text: &str) -> Vec<String> {
    let mut forms = vec![normalize_for_match(text)];
    for keep in [false, true] {
        if let Some(joined) = join_hyphenation(text, keep) {
            let form = normalize_for_match(&joined);
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

// ---------------------------------------------------------------------------------------------
// Evidence and qrels

/// What a question's relevant chunks are judged against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evidence<'a> {
    /// A verbatim quote from the page text, with the 1-based page it was taken from if known.
    Quote {
        /// The quote (any whitespace and case; see [`match_forms`]).
        text: &'a str,
        /// The 1-based page holding the quote. A chunk containing the whole quote is relevant on
        /// any page (manuals repeat sentences verbatim, and a repeated sentence is the same
        /// evidence); a chunk holding only a boundary piece of the quote is relevant only on this
        /// page (boundary pieces elsewhere are coincidences of repeated boilerplate: in the Bacula
        /// manual "…for additional details of time specification." ends many chunks that never
        /// hold the default the question asks for). `None`: pieces count on any page.
        page: Option<u32>,
    },
    /// Only a 1-based page: every chunk of that page is relevant.
    Page(u32),
}

/// Relevance judgements for one query: chunk (document) id → grade. Only positive grades are
/// stored; an id that is absent has grade 0 (not relevant), like a judged-non-relevant document.
/// Grades are integers, as in TREC qrels files and pytrec_eval (which only accepts `int`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "BTreeMap<u32, u32>", from = "BTreeMap<u32, i64>")]
pub struct Qrels {
    grades: BTreeMap<u32, u32>,
}

impl Qrels {
    /// No relevant documents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only the ids for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(u32) -> bool) {
        self.grades.retain(|&id, _| keep(id));
    }

    /// From `(id, grade)` pairs as read from a qrels file. Grades `<= 0` mean not relevant and
    /// are dropped (trec_eval gives a negative grade no gain and counts it as non-relevant, the
    /// same as 0); grades above `u32::MAX` are clamped. A repeated id keeps its last grade (what
    /// a Python qrels dict does).
    pub fn from_grades(pairs: impl IntoIterator<Item = (u32, i64)>) -> Self {
        let mut q = Self::new();
        for (id, grade) in pairs {
            q.set(id, grade);
        }
        q
    }

    /// Set `id`'s grade; a grade `<= 0` removes it.
    pub fn set(&mut self, id: u32, grade: i64) {
        if grade > 0 {
            self.grades
                .insert(id, u32::try_from(grade).unwrap_or(u32::MAX));
        } else {
            self.grades.remove(&id);
        }
    }

    /// The grade of `id` (0 when not relevant).
    pub fn grade(&self, id: u32) -> u32 {
        self.grades.get(&id).copied().unwrap_or(0)
    }

    /// Number of relevant ids (grade > 0).
    pub fn len(&self) -> usize {
        self.grades.len()
    }

    /// Whether no id is relevant.
    pub fn is_empty(&self) -> bool {
        self.grades.is_empty()
    }

    /// Relevant `(id, grade)` pairs in increasing id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.grades.iter().map(|(&id, &g)| (id, g))
    }

    /// Relevant ids in increasing order.
    pub fn ids(&self) -> Vec<u32> {
        self.grades.keys().copied().collect()
    }
}

impl From<BTreeMap<u32, i64>> for Qrels {
    fn from(m: BTreeMap<u32, i64>) -> Self {
        Self::from_grades(m)
    }
}

impl From<Qrels> for BTreeMap<u32, u32> {
    fn from(q: Qrels) -> Self {
        q.grades
    }
}

// ---------------------------------------------------------------------------------------------
// Judging

/// One normalised form of a quote, with its char boundaries (byte offsets of every char start
/// plus the end), so pieces can be cut by character count.
#[derive(Debug, Clone)]
struct QuoteForm {
    text: String,
    bounds: Vec<usize>,
}

impl QuoteForm {
    fn new(text: String) -> Self {
        let mut bounds: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        bounds.push(text.len());
        Self { text, bounds }
    }

    /// Length in chars.
    fn n(&self) -> usize {
        self.bounds.len() - 1
    }
}

/// Minimum piece length in chars for a quote of `n > 0` chars: `ceil(min_share * n)` clamped to
/// `1..=n`. NaN counts as 1.0 (the whole quote).
fn min_piece(n: usize, min_share: f64) -> usize {
    let share = if min_share.is_nan() { 1.0 } else { min_share };
    let m = (share * n as f64).ceil();
    if m <= 1.0 {
        1
    } else if m >= n as f64 {
        n
    } else {
        m as usize
    }
}

/// Longest prefix of `s` of at most 32 bytes ending on a char boundary (`str::contains` has a
/// SIMD path for needles up to 32 bytes; a prefix of a needle is a valid pre-filter for it).
fn short_prefix(s: &str) -> &str {
    if s.len() <= 32 {
        return s;
    }
    let mut end = 32;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One quote form with the piece threshold for one `min_share` applied.
struct QuotePlan<'q> {
    q: &'q QuoteForm,
    /// minimum piece length, chars (0 when the quote is empty: matches nothing)
    m: usize,
    /// pre-filter implied by the whole quote and by every prefix of >= m chars
    head: &'q str,
    /// pre-filter implied by every suffix of >= m chars
    tail: &'q str,
}

impl<'q> QuotePlan<'q> {
    fn new(q: &'q QuoteForm, min_share: f64) -> Self {
        let n = q.n();
        if n == 0 {
            return Self {
                q,
                m: 0,
                head: "",
                tail: "",
            };
        }
        let m = min_piece(n, min_share);
        Self {
            q,
            m,
            head: short_prefix(&q.text[..q.bounds[m]]),
            tail: short_prefix(&q.text[q.bounds[n - m]..]),
        }
    }

    /// The relevance rule for this quote form and one chunk form `c` (`c_chars` = chars in `c`);
    /// `pieces_ok`: boundary pieces count (the chunk is on the quote's page, or it has none).
    fn matches(&self, c: &str, c_chars: usize, pieces_ok: bool) -> bool {
        let (q, m) = (self.q, self.m);
        let n = q.n();
        if n == 0 {
            return false;
        }
        if c.contains(self.head) {
            if c.contains(q.text.as_str()) {
                return true;
            }
            if pieces_ok && (m..n).any(|l| c.ends_with(&q.text[..q.bounds[l]])) {
                return true;
            }
        }
        if !pieces_ok {
            return false;
        }
        if c.contains(self.tail) && (m..n).any(|l| c.starts_with(&q.text[q.bounds[n - l]..])) {
            return true;
        }
        c_chars >= m && c.len() <= q.text.len() && q.text.contains(c)
    }
}

/// A chunk prepared for judging: its id, page and [`match_forms`].
#[derive(Debug, Clone)]
struct PreparedChunk {
    id: u32,
    page: u32,
    /// (form, its length in chars)
    forms: Vec<(String, usize)>,
}

impl PreparedChunk {
    fn new(id: u32, text: &str, page: u32) -> Self {
        let forms = match_forms(text)
            .into_iter()
            .map(|f| {
                let n = f.chars().count();
                (f, n)
            })
            .collect();
        Self { id, page, forms }
    }

    fn grade(&self, ev: &EvidencePlan) -> u32 {
        match ev {
            EvidencePlan::Page(p) => u32::from(self.page == *p),
            EvidencePlan::Quote { plans, page } => {
                let pieces_ok = page.is_none_or(|p| p == self.page);
                let hit = plans.iter().any(|q| {
                    self.forms
                        .iter()
                        .any(|(c, nc)| q.matches(c, *nc, pieces_ok))
                });
                u32::from(hit)
            }
        }
    }
}

/// Evidence with the quote normalised once.
enum PreparedEvidence {
    Quote {
        forms: Vec<QuoteForm>,
        page: Option<u32>,
    },
    Page(u32),
}

impl PreparedEvidence {
    fn new(ev: &Evidence) -> Self {
        match *ev {
            Evidence::Quote { text, page } => PreparedEvidence::Quote {
                forms: match_forms(text).into_iter().map(QuoteForm::new).collect(),
                page,
            },
            Evidence::Page(p) => PreparedEvidence::Page(p),
        }
    }

    fn plan(&self, min_share: f64) -> EvidencePlan<'_> {
        match self {
            PreparedEvidence::Quote { forms, page } => EvidencePlan::Quote {
                plans: forms.iter().map(|q| QuotePlan::new(q, min_share)).collect(),
                page: *page,
            },
            PreparedEvidence::Page(p) => EvidencePlan::Page(*p),
        }
    }
}

/// Prepared evidence with the piece threshold applied.
enum EvidencePlan<'q> {
    Quote {
        plans: Vec<QuotePlan<'q>>,
        page: Option<u32>,
    },
    Page(u32),
}

/// Relevance grade (0 or 1) of one chunk for `evidence`.
///
/// * [`Evidence::Page`]: 1 when `chunk_page` equals the page.
/// * [`Evidence::Quote`]: let `q` range over the quote's [`match_forms`] and `c` over the
///   chunk's; `n` = chars in `q` and `m = ceil(min_share · n)` clamped to `1..=n` (`min_share` is a
///   fraction; ≤ 0 means any non-empty piece, ≥ 1 or NaN the whole quote). The chunk is relevant
///   when for some `q`, `c`:
///   1. `c` contains `q` (on any page); or, when the quote has no page or the chunk is on the
///      quote's page, the chunk holds a piece of at least `m` chars that a chunk boundary
///      explains (chunking can cut a quote in two):
///   2. `c` ends with the first `L` chars of `q`, `m ≤ L < n` (quote runs on into the next chunk);
///   3. `c` starts with the last `L` chars of `q`, `m ≤ L < n` (quote began in the previous chunk);
///   4. `c` has at least `m` chars and lies wholly inside `q` (a chunk shorter than the quote).
///
///   A piece elsewhere inside the chunk does not count. A quote that is empty after
///   normalisation matches nothing. Lengths are in chars (Unicode scalar values).
///
/// Grades are integers (as in qrels files); this rule only produces 0 and 1.
pub fn judge(chunk_text: &str, chunk_page: u32, evidence: &Evidence, min_share: f64) -> u32 {
    let ev = PreparedEvidence::new(evidence);
    PreparedChunk::new(0, chunk_text, chunk_page).grade(&ev.plan(min_share))
}

/// Chunks normalised once (per index) for judging many questions: build with
/// [`JudgeCorpus::new`], then call [`JudgeCorpus::qrels`] per question.
#[derive(Debug, Clone, Default)]
pub struct JudgeCorpus {
    chunks: Vec<PreparedChunk>,
}

impl JudgeCorpus {
    /// Prepare `(id, text, page)` chunks (ids need not be dense or sorted).
    pub fn new<'a>(chunks: impl IntoIterator<Item = (u32, &'a str, u32)>) -> Self {
        Self {
            chunks: chunks
                .into_iter()
                .map(|(id, text, page)| PreparedChunk::new(id, text, page))
                .collect(),
        }
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// All chunks with a positive [`judge`] grade for `evidence` (if an id occurs twice, its
    /// last chunk's grade wins).
    pub fn qrels(&self, evidence: &Evidence, min_share: f64) -> Qrels {
        let ev = PreparedEvidence::new(evidence);
        let plan = ev.plan(min_share);
        let mut q = Qrels::new();
        for c in &self.chunks {
            let g = c.grade(&plan);
            q.set(c.id, i64::from(g));
        }
        q
    }
}

/// [`JudgeCorpus::qrels`] for a single question, normalising each chunk once. For several
/// questions over the same chunks build a [`JudgeCorpus`] once instead.
pub fn qrels_for<'a>(
    chunks: impl IntoIterator<Item = (u32, &'a str, u32)>,
    evidence: &Evidence,
    min_share: f64,
) -> Qrels {
    let ev = PreparedEvidence::new(evidence);
    let plan = ev.plan(min_share);
    let mut q = Qrels::new();
    for (id, text, page) in chunks {
        let g = PreparedChunk::new(id, text, page).grade(&plan);
        q.set(id, i64::from(g));
    }
    q
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Ranking metrics of one query at cutoff `k` (each in `[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetrievalMetrics {
    /// The cutoff.
    pub k: usize,
    /// hit@k (BEIR `top_k_accuracy`): 1 if any relevant id is in the top k, else 0.
    pub hit: f64,
    /// recall@k (trec_eval `recall_k`): relevant ids in the top k / all relevant ids.
    pub recall: f64,
    /// MRR@k (BEIR `custom_metrics.mrr`): 1 / rank of the first relevant id in the top k, else 0.
    pub mrr: f64,
    /// nDCG@k (trec_eval `ndcg_cut_k`): DCG@k / ideal DCG@k with gain = grade and discount
    /// `log2(rank + 1)`.
    pub ndcg: f64,
}

impl RetrievalMetrics {
    /// `(name, value)` pairs: `hit@{k}`, `recall@{k}`, `mrr@{k}`, `ndcg@{k}` (names from
    /// [`super::metric::Metric`]).
    pub fn pairs(&self) -> Vec<(String, f64)> {
        use super::metric::Metric;
        let k = self.k;
        vec![
            (Metric::Hit(k).to_string(), self.hit),
            (Metric::Recall(k).to_string(), self.recall),
            (Metric::Mrr(k).to_string(), self.mrr),
            (Metric::Ndcg(k).to_string(), self.ndcg),
        ]
    }
}

/// hit@k, recall@k, MRR@k and nDCG@k of one ranked list (best first) against `qrels`.
///
/// * Relevant means grade > 0 ([`Qrels`] holds only those). hit, recall and MRR are binary: any
///   positive grade counts fully (trec_eval's default `relevance_level` 1; BEIR's `> 0`). nDCG
///   uses the grade as gain.
/// * Duplicates: only the first occurrence of an id counts and repeats are skipped, so the top k
///   are the first k *distinct* ids — what pytrec_eval and BEIR see when the run dict is built
///   from the list with the first occurrence's score (a dict cannot hold an id twice).
/// * Ranks are 1-based positions in that de-duplicated list (the references get strictly
///   decreasing scores, so trec_eval's tie-break by docno never applies).
/// * A list shorter than k is scored as is (missing ranks gain nothing); the ideal DCG still
///   uses up to k judged grades, sorted descending, so nDCG is penalised, and recall divides by
///   all relevant ids. `k == 0` gives all zeros.
/// * nDCG = DCG / IDCG with DCG = Σ_{rank ≤ k} grade / log2(rank + 1) (rank 1 undiscounted) and
///   IDCG the same over the `min(k, |qrels|)` highest grades.
///
/// Returns `None` when `qrels` is empty (no relevant id): the metrics are undefined. pytrec_eval
/// omits a query that has no qrels at all; for one whose judgements are all 0 it reports 0, and
/// BEIR's `mrr` / `top_k_accuracy` count it as 0 in their mean. Callers choose whether such a
/// query is skipped or scored 0.
pub fn evaluate(ranked: &[u32], qrels: &Qrels, k: usize) -> Option<RetrievalMetrics> {
    if qrels.is_empty() {
        return None;
    }
    let mut seen = HashSet::with_capacity(k.min(ranked.len()));
    let mut rank = 0usize;
    let (mut n_rel, mut first_rel, mut dcg) = (0usize, None::<usize>, 0.0f64);
    for &id in ranked {
        if rank >= k {
            break;
        }
        if !seen.insert(id) {
            continue;
        }
        rank += 1;
        let g = qrels.grade(id);
        if g > 0 {
            n_rel += 1;
            first_rel.get_or_insert(rank);
            dcg += f64::from(g) / ((rank + 1) as f64).log2();
        }
    }
    let mut ideal: Vec<u32> = qrels.iter().map(|(_, g)| g).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| f64::from(g) / ((i + 2) as f64).log2())
        .sum();
    Some(RetrievalMetrics {
        k,
        hit: if n_rel > 0 { 1.0 } else { 0.0 },
        recall: n_rel as f64 / qrels.len() as f64,
        mrr: first_rel.map_or(0.0, |r| 1.0 / r as f64),
        ndcg: if idcg > 0.0 { dcg / idcg } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = include_str!("../../tests/fixtures/retrieval_metrics/metrics.json");
    const JUDGE: &str = include_str!("../../tests/fixtures/retrieval_metrics/judge.json");

    #[derive(serde::Deserialize)]
    struct MetricsFixture {
        cases: Vec<MetricCase>,
    }

    #[derive(serde::Deserialize)]
    struct MetricCase {
        ranked: Vec<u32>,
        qrels: Vec<(u32, i64)>,
        k: usize,
        expected: Option<Expected>,
    }

    #[derive(serde::Deserialize)]
    struct Expected {
        hit: f64,
        recall: f64,
        mrr: f64,
        ndcg: f64,
    }

    #[derive(serde::Deserialize)]
    struct JudgeFixture {
        shares: Vec<f64>,
        questions: Vec<FixtureQuestion>,
        sizes: Vec<FixtureSize>,
        hand: Vec<HandCase>,
    }

    #[derive(serde::Deserialize)]
    struct FixtureQuestion {
        id: String,
        evidence: String,
        page: u32,
    }

    #[derive(serde::Deserialize)]
    struct FixtureSize {
        chunk_size: usize,
        chunks: Vec<(u32, u32, String)>,
        /// question id → min_share (as printed by Python) → relevant ids over the FULL index.
        expected: BTreeMap<String, BTreeMap<String, Vec<u32>>>,
        page_checks: Vec<PageCheck>,
    }

    #[derive(serde::Deserialize)]
    struct PageCheck {
        page: u32,
        expected: Vec<u32>,
    }

    #[derive(serde::Deserialize)]
    struct HandCase {
        quote: String,
        quote_page: Option<u32>,
        chunk: String,
        chunk_page: u32,
        min_share: f64,
        grade: u32,
    }

    fn judge_fixture() -> JudgeFixture {
        serde_json::from_str(JUDGE).expect("judge.json parses")
    }

    fn qrels(pairs: &[(u32, i64)]) -> Qrels {
        Qrels::from_grades(pairs.iter().copied())
    }

    #[test]
    fn metrics_match_pytrec_eval_and_beir_fixture() {
        let fx: MetricsFixture = serde_json::from_str(METRICS).expect("metrics.json parses");
        assert!(fx.cases.len() >= 300);
        for (i, case) in fx.cases.iter().enumerate() {
            let q = Qrels::from_grades(case.qrels.iter().copied());
            let got = evaluate(&case.ranked, &q, case.k);
            match (&case.expected, got) {
                (None, None) => {}
                (Some(e), Some(g)) => {
                    assert_eq!(g.k, case.k);
                    for (name, want, have) in [
                        ("hit", e.hit, g.hit),
                        ("recall", e.recall, g.recall),
                        ("mrr", e.mrr, g.mrr),
                        ("ndcg", e.ndcg, g.ndcg),
                    ] {
                        assert!(
                            (want - have).abs() <= 1e-12,
                            "case {i}: {name}@{} = {have}, reference {want}",
                            case.k
                        );
                    }
                }
                (e, g) => panic!("case {i}: expected {:?}, got {g:?}", e.is_some()),
            }
        }
    }

    #[test]
    fn ndcg_hand_computed_graded() {
        // qrels: 7 → 3, 2 → 2, 5 → 1, 9 → 0 (dropped). Ranked [2, 4, 7, 5], k = 3.
        // DCG@3 = 2/log2(2) + 0/log2(3) + 3/log2(4) = 2 + 0 + 1.5 = 3.5
        // IDCG@3 = 3/log2(2) + 2/log2(3) + 1/log2(4) = 3 + 1.2618595071429148 + 0.5
        //        = 4.761859507142915
        // nDCG@3 = 3.5 / 4.761859507142915 = 0.7350069...
        // recall@3 = 2 of 3 relevant; MRR@3 = 1/1 (id 2 is relevant); hit = 1.
        let q = qrels(&[(7, 3), (2, 2), (5, 1), (9, 0)]);
        assert_eq!(q.len(), 3);
        let m = evaluate(&[2, 4, 7, 5], &q, 3).unwrap();
        let idcg = 3.0 + 2.0 / 3f64.log2() + 0.5;
        assert!((m.ndcg - 3.5 / idcg).abs() < 1e-15);
        assert!((m.ndcg - 0.735_006_9).abs() < 1e-7);
        assert_eq!((m.hit, m.mrr), (1.0, 1.0));
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn ndcg_hand_computed_binary_short_list() {
        // Two relevant (grade 1): 10, 20. Ranked [30, 20], k = 5 (list shorter than k).
        // DCG = 1/log2(3) = 0.6309297535714575; IDCG = 1 + 1/log2(3) = 1.6309297535714575;
        // nDCG = 0.38685280723454163 (pytrec_eval gives the same); MRR = 1/2; recall = 1/2.
        let q = qrels(&[(10, 1), (20, 1)]);
        let m = evaluate(&[30, 20], &q, 5).unwrap();
        assert!((m.ndcg - 0.386_852_807_234_541_63).abs() < 1e-15);
        assert_eq!((m.hit, m.mrr, m.recall), (1.0, 0.5, 0.5));
        assert_eq!(
            m.pairs(),
            vec![
                ("hit@5".to_string(), 1.0),
                ("recall@5".to_string(), 0.5),
                ("mrr@5".to_string(), 0.5),
                ("ndcg@5".to_string(), m.ndcg),
            ]
        );
    }

    #[test]
    fn duplicates_count_first_occurrence_only() {
        // [1, 1, 1, 2] at k = 2: distinct top-2 is [1, 2], so id 2 is at rank 2.
        let q = qrels(&[(2, 1)]);
        let m = evaluate(&[1, 1, 1, 2], &q, 2).unwrap();
        assert_eq!((m.hit, m.mrr, m.recall), (1.0, 0.5, 1.0));
        // A relevant id repeated is counted once: recall cannot exceed 1.
        let q = qrels(&[(2, 1), (3, 1)]);
        let m = evaluate(&[2, 2, 2], &q, 3).unwrap();
        assert_eq!((m.recall, m.mrr), (0.5, 1.0));
        assert!((m.ndcg - 1.0 / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-15);
    }

    #[test]
    fn empty_qrels_is_none_and_degenerate_inputs_do_not_panic() {
        assert_eq!(evaluate(&[1, 2, 3], &Qrels::new(), 3), None);
        assert_eq!(evaluate(&[1], &qrels(&[(1, 0), (2, -1)]), 3), None);
        let q = qrels(&[(1, 1)]);
        let zero = evaluate(&[1, 2], &q, 0).unwrap();
        assert_eq!(
            (zero.hit, zero.recall, zero.mrr, zero.ndcg),
            (0.0, 0.0, 0.0, 0.0)
        );
        let empty = evaluate(&[], &q, 10).unwrap();
        assert_eq!(
            (empty.hit, empty.recall, empty.mrr, empty.ndcg),
            (0.0, 0.0, 0.0, 0.0)
        );
        let huge = evaluate(&[1], &q, usize::MAX).unwrap();
        assert_eq!((huge.hit, huge.ndcg), (1.0, 1.0));
        let big = evaluate(&[1], &qrels(&[(1, i64::MAX)]), 1).unwrap();
        assert_eq!(big.ndcg, 1.0);
    }

    #[test]
    fn qrels_drop_non_positive_grades_and_roundtrip_json() {
        let mut q = qrels(&[(1, 2), (2, 0), (3, -1), (1, 3)]);
        assert_eq!(q.ids(), vec![1]);
        assert_eq!(q.grade(1), 3);
        assert_eq!(q.grade(2), 0);
        q.set(1, 0);
        assert!(q.is_empty());
        let q = qrels(&[(4, 1), (9, 2)]);
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(json, r#"{"4":1,"9":2}"#);
        let back: Qrels = serde_json::from_str(r#"{"4":1,"9":2,"11":0}"#).unwrap();
        assert_eq!(back, q);
    }

    #[test]
    fn normalization_examples() {
        assert_eq!(
            normalize_for_match("  Bacula\tIS \n\n a  SET "),
            "bacula is a set"
        );
        assert_eq!(normalize_for_match("direc-\n tive"), "direc- tive");
        assert_eq!(normalize_for_match(""), "");
        assert_eq!(normalize_for_match("ΣΊΣΥΦΟΣ"), "σίσυφος");
        assert_eq!(
            match_forms("the direc-\n  tive"),
            vec!["the direc- tive", "the directive", "the direc-tive"]
        );
        assert_eq!(match_forms("bacula-dir.conf"), vec!["bacula-dir.conf"]);
        assert_eq!(match_forms("the direc- tive"), vec!["the direc- tive"]);
        assert_eq!(
            match_forms("ends with Direc-"),
            vec!["ends with direc-", "ends with direc"]
        );
        assert_eq!(match_forms("- \n-\n1-\n"), vec!["- - 1-"]);
        assert_eq!(match_forms("a-\r\n\tb"), vec!["a- b", "ab", "a-b"]);
    }

    #[test]
    fn min_share_edge_values_do_not_panic() {
        let ev = Evidence::Quote {
            text: "abcd efgh",
            page: None,
        };
        // "abcd" is 4 of 9 chars at the chunk end.
        for (share, want) in [
            (0.0, 1),
            (-3.0, 1),
            (f64::NEG_INFINITY, 1),
            (0.44, 1),
            (0.45, 0),
            (1.0, 0),
            (7.0, 0),
            (f64::INFINITY, 0),
            (f64::NAN, 0),
        ] {
            assert_eq!(judge("x abcd", 1, &ev, share), want, "min_share {share}");
        }
        assert_eq!(judge("x abcd efgh y", 1, &ev, f64::NAN), 1);
        let empty = Evidence::Quote {
            text: " \n",
            page: None,
        };
        assert_eq!(judge("anything", 1, &empty, 0.0), 0);
        assert_eq!(judge("", 1, &ev, 0.0), 0);
        assert_eq!(
            judge(
                "",
                1,
                &Evidence::Quote {
                    text: "é",
                    page: Some(1)
                },
                0.5
            ),
            0
        );
        assert_eq!(
            judge(
                "é",
                1,
                &Evidence::Quote {
                    text: "aé",
                    page: Some(1)
                },
                0.5
            ),
            1
        );
    }

    #[test]
    fn hand_written_judge_cases() {
        let fx = judge_fixture();
        assert!(fx.hand.len() >= 15);
        for h in &fx.hand {
            let ev = Evidence::Quote {
                text: &h.quote,
                page: h.quote_page,
            };
            let got = judge(&h.chunk, h.chunk_page, &ev, h.min_share);
            assert_eq!(
                got, h.grade,
                "{:?} vs chunk {:?} at {}",
                h.quote, h.chunk, h.min_share
            );
        }
    }

    #[test]
    fn page_only_evidence() {
        let chunks = [(0, "a", 3), (1, "b", 4), (2, "c", 4), (5, "d", 5)];
        let corpus = JudgeCorpus::new(chunks);
        assert_eq!(corpus.qrels(&Evidence::Page(4), 0.5).ids(), vec![1, 2]);
        assert!(corpus.qrels(&Evidence::Page(9), 0.5).is_empty());
        assert_eq!(judge("whatever", 7, &Evidence::Page(7), 0.5), 1);
        let fx = judge_fixture();
        for size in &fx.sizes {
            let corpus = JudgeCorpus::new(
                size.chunks
                    .iter()
                    .map(|(id, page, t)| (*id, t.as_str(), *page)),
            );
            for pc in &size.page_checks {
                assert!(!pc.expected.is_empty());
                assert_eq!(
                    corpus.qrels(&Evidence::Page(pc.page), 0.5).ids(),
                    pc.expected
                );
            }
        }
    }

    #[test]
    fn judge_matches_python_reference_on_bacula_chunks() {
        let fx = judge_fixture();
        assert_eq!(fx.questions.len(), 39);
        let mut n_checked = 0;
        for size in &fx.sizes {
            let chunks = || {
                size.chunks
                    .iter()
                    .map(|(id, page, t)| (*id, t.as_str(), *page))
            };
            let corpus = JudgeCorpus::new(chunks());
            let stored: HashSet<u32> = size.chunks.iter().map(|c| c.0).collect();
            for q in &fx.questions {
                let ev = Evidence::Quote {
                    text: &q.evidence,
                    page: Some(q.page),
                };
                for &share in &fx.shares {
                    let want = &size.expected[&q.id][&format!("{share:?}")];
                    // every relevant chunk of the full index is in the fixture
                    assert!(want.iter().all(|id| stored.contains(id)));
                    let got = corpus.qrels(&ev, share);
                    assert_eq!(
                        &got.ids(),
                        want,
                        "size {} question {} min_share {share}",
                        size.chunk_size,
                        q.id
                    );
                    assert!(got.iter().all(|(_, g)| g == 1));
                    assert_eq!(qrels_for(chunks(), &ev, share), got);
                    n_checked += 1;
                }
                // at the default share every question has a relevant chunk
                assert!(!corpus.qrels(&ev, DEFAULT_MIN_SHARE).is_empty(), "{}", q.id);
            }
            // per-chunk `judge` agrees with the prepared corpus
            let q = &fx.questions[0];
            let ev = Evidence::Quote {
                text: &q.evidence,
                page: Some(q.page),
            };
            let by_judge: Vec<u32> = size
                .chunks
                .iter()
                .filter(|(_, page, t)| judge(t, *page, &ev, 0.5) == 1)
                .map(|c| c.0)
                .collect();
            assert_eq!(by_judge, corpus.qrels(&ev, 0.5).ids());
        }
        assert_eq!(n_checked, 2 * 39 * fx.shares.len());
        // at chunk_size 100 quotes are longer than chunks: some relevant chunks must be pieces
        let small = fx
            .sizes
            .iter()
            .find(|s| s.chunk_size == 100)
            .expect("size 100");
        let texts: BTreeMap<u32, &str> = small
            .chunks
            .iter()
            .map(|(id, _, t)| (*id, t.as_str()))
            .collect();
        let mut pieces = 0;
        for q in &fx.questions {
            let quote = normalize_for_match(&q.evidence);
            pieces += small.expected[&q.id]["0.5"]
                .iter()
                .filter(|id| !normalize_for_match(texts[id]).contains(&quote))
                .count();
        }
        assert!(pieces >= 10, "only {pieces} boundary pieces");
    }
}
