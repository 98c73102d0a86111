//! Scoring: how good a retrieved list and a generated answer are.
//!
//! - this module: cosine similarity between embedding vectors (expected answer vs generated
//!   answer, query vs chunk), also the similarity used by exact dense search and by MMR;
//! - [`retrieval`]: which chunks are relevant to a question (evidence quote or page, BEIR qrels)
//!   and hit@k, recall@k, MRR@k, nDCG@k of a ranked list (BEIR definitions);
//! - [`answer`]: SQuAD exact match and token F1, contains(short answer), ROUGE-L F1 and METEOR
//!   against the reference answers, with [`porter`] (nltk's Porter stemmer) and [`wordnet`]
//!   (WordNet 3.0 synonyms) for METEOR.

pub mod answer;
pub mod metric;
pub mod porter;
pub mod retrieval;
pub mod wordnet;

use std::collections::{BTreeMap, HashMap};

use crate::qa::Question;
use crate::split::Chunk;
use retrieval::{Evidence, JudgeCorpus, Qrels, RetrievalMetrics, DEFAULT_MIN_SHARE};

/// What a question's retrieval is judged against: its `evidence` quote (with its `page`, which
/// restricts boundary-cut pieces of the quote to that page), else its `page` alone; `None` when
/// the question has neither (no retrieval metrics then).
pub fn evidence_of(q: &Question) -> Option<Evidence<'_>> {
    match (q.evidence.as_deref(), q.page) {
        (Some(text), page) if !text.trim().is_empty() => Some(Evidence::Quote { text, page }),
        (_, Some(p)) => Some(Evidence::Page(p)),
        _ => None,
    }
}

/// The named metrics of one answer, as stored in [`crate::store::NewAnswer::metrics`].
///
/// `ranked` are the retrieved chunk ids, best first; `chunks` is the index's chunk table
/// (`chunks[id]` is chunk `id`, as in [`crate::index::CorpusIndex::chunks`]), used to map chunks
/// to their documents for BEIR questions; `k` is the cell's `top_k`.
///
/// - Retrieval, BEIR questions (`q.qrels` non-empty): `hit@k`, `recall@k`, `mrr@k`, `ndcg@k` of
///   the *document* ranking against the graded qrels, see [`document_metrics`] (all 0 when no
///   judged document has a grade > 0, as BEIR scores such a query).
/// - Retrieval, other questions (when `judge` is given and [`evidence_of`] finds evidence for
///   `q`): the same metrics of `ranked` (chunks) against the chunks [`JudgeCorpus::qrels`] marks
///   relevant with [`DEFAULT_MIN_SHARE`], restricted to the document `q.source` if given. Left out when no chunk of the corpus is relevant (the
///   evidence is not in this corpus), as pytrec_eval leaves out queries without relevant
///   documents.
/// - Answer (when `answer` is given, i.e. the cell generated, and `q.expected_answer` is not
///   blank — BEIR questions have no reference answer): `em`, `f1` (best over `expected_answer`
///   and `short_answer`), `contains` (needs `short_answer`), `rouge_l`, `meteor` (against
///   `expected_answer`; left out when WordNet is not installed), see [`answer::answer_metrics`].
pub fn metrics_for(
    q: &Question,
    ranked: &[u32],
    k: usize,
    chunks: &[Chunk],
    judge: Option<&JudgeCorpus>,
    answer: Option<&str>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if !q.qrels.is_empty() {
        if let Some(m) = document_metrics(ranked, chunks, &q.qrels, k) {
            out.extend(m.pairs());
        }
    } else if let (Some(judge), Some(ev)) = (judge, evidence_of(q)) {
        let qrels = in_source(judge.qrels(&ev, DEFAULT_MIN_SHARE), q, chunks);
        if let Some(m) = retrieval::evaluate(ranked, &qrels, k) {
            out.extend(m.pairs());
        }
    }
    if let Some(a) = answer.filter(|_| has_reference_answer(q)) {
        let m = answer::answer_metrics(a, &q.expected_answer, q.short_answer.as_deref());
        out.extend(m.pairs().into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    out
}

/// Whether `q` has a reference answer to score generated answers against (a non-blank
/// `expected_answer`; BEIR questions have none). Without one, neither answer metrics nor cosine
/// similarity are computed.
pub fn has_reference_answer(q: &Question) -> bool {
    !q.expected_answer.trim().is_empty()
}

/// Ids of the `questions` judged by evidence (see [`needs_judge`]) for which no chunk of
/// `chunks` is relevant ([`JudgeCorpus::qrels`] at [`DEFAULT_MIN_SHARE`] is empty), in the order
/// given. Such questions get no retrieval metrics in any cell of this chunking: usually the quote
/// was not copied verbatim from the extracted text, or the page number is beyond the corpus.
/// Costs one corpus-sized judge, i.e. about as much as a worker spends on it.
pub fn without_relevant_chunks<'q>(questions: &'q [Question], chunks: &[Chunk]) -> Vec<&'q str> {
    if !questions.iter().any(needs_judge) {
        return Vec::new();
    }
    let judge = JudgeCorpus::new(chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)));
    questions
        .iter()
        .filter(|q| needs_judge(q))
        .filter(|q| {
            evidence_of(q).is_some_and(|ev| {
                in_source(judge.qrels(&ev, DEFAULT_MIN_SHARE), q, chunks).is_empty()
            })
        })
        .map(|q| q.id.as_str())
        .collect()
}

/// `qrels` restricted to the chunks of the question's `source` document when it names one
/// (`chunks[id]` is chunk `id`; an id without a chunk there is dropped); unchanged otherwise.
fn in_source(mut qrels: Qrels, q: &Question, chunks: &[Chunk]) -> Qrels {
    if let Some(src) = q.source.as_deref() {
        qrels.retain(|id| chunks.get(id as usize).is_some_and(|c| c.source == src));
    }
    qrels
}

/// Questions whose page-only evidence is ambiguous: the corpus `chunks` come from several
/// documents and the question gives a `page` but neither an evidence quote nor a `source`, so
/// that page of every document counts as relevant. Their ids, in the order given.
pub fn ambiguous_pages<'q>(questions: &'q [Question], chunks: &[Chunk]) -> Vec<&'q str> {
    let Some(first) = chunks.first() else {
        return Vec::new();
    };
    if chunks.iter().all(|c| c.source == first.source) {
        return Vec::new();
    }
    questions
        .iter()
        .filter(|q| needs_judge(q) && q.source.is_none())
        .filter(|q| matches!(evidence_of(q), Some(Evidence::Page(_))))
        .map(|q| q.id.as_str())
        .collect()
}

/// Whether retrieval of `q` is judged by a [`JudgeCorpus`] (evidence quote or page, no BEIR
/// qrels), i.e. whether [`metrics_for`] needs a `judge` for it.
pub fn needs_judge(q: &Question) -> bool {
    q.qrels.is_empty() && evidence_of(q).is_some()
}

/// Document-level retrieval metrics as BEIR computes them (Thakur et al. 2021): hit@k, recall@k,
/// MRR@k, nDCG@k ([`retrieval::evaluate`], pytrec_eval definitions with graded gain) of the
/// document ranking implied by the retrieved chunks, against graded qrels.
///
/// `ranked` are chunk ids, best first; each is mapped to its document, the chunk's `source`
/// (for a BEIR corpus the document `_id`, see [`crate::corpus::load_beir_corpus`]) via
/// `chunks[id]`; ids without a chunk there are skipped. Each document keeps its first (best)
/// rank and later chunks of it are dropped (max-passage aggregation), so the document ranking
/// has at most `ranked.len()` entries. `qrels` maps document id → integer grade (grades <= 0
/// are not relevant). Documents get dense local `u32` numbers for [`retrieval::evaluate`], which
/// evaluates the document ranking at cutoff `k` (the cell's `top_k`, counted in chunks
/// retrieved — with several chunks of one document in the list, fewer than `k` documents are
/// ranked).
///
/// With `chunk_size` at least the length of every document (each document one chunk) this is
/// exactly BEIR's own evaluation of a top-k document retrieval.
///
/// A query whose judgements are all <= 0 scores 0 on every metric, as in BEIR: pytrec_eval
/// reports `ndcg_cut` and `recall` 0 for it, BEIR's `mrr` and `top_k_accuracy` count it as 0,
/// and BEIR averages over every evaluated query. Returns `None` only when `qrels` is empty (no
/// judgement at all: pytrec_eval leaves the query out).
pub fn document_metrics(
    ranked: &[u32],
    chunks: &[Chunk],
    qrels: &BTreeMap<String, i64>,
    k: usize,
) -> Option<RetrievalMetrics> {
    fn number_of<'a>(doc: &'a str, numbers: &mut HashMap<&'a str, u32>) -> u32 {
        let next = u32::try_from(numbers.len()).unwrap_or(u32::MAX);
        *numbers.entry(doc).or_insert(next)
    }
    if qrels.is_empty() {
        return None;
    }
    let mut numbers: HashMap<&str, u32> = HashMap::with_capacity(qrels.len() + ranked.len());
    let judged: Vec<(u32, i64)> = qrels
        .iter()
        .map(|(doc, &grade)| (number_of(doc, &mut numbers), grade))
        .collect();
    let qrels = Qrels::from_grades(judged);
    let mut seen = std::collections::HashSet::with_capacity(ranked.len());
    let mut docs = Vec::with_capacity(ranked.len());
    for chunk in ranked.iter().filter_map(|&c| chunks.get(c as usize)) {
        let n = number_of(&chunk.source, &mut numbers);
        if seen.insert(n) {
            docs.push(n);
        }
    }
    retrieval::evaluate(&docs, &qrels, k).or(Some(RetrievalMetrics {
        k,
        hit: 0.0,
        recall: 0.0,
        mrr: 0.0,
        ndcg: 0.0,
    }))
}

/// Cosine similarity of two vectors, computed in `f64`: `a·b / (|a| |b|)`, in `[-1, 1]`.
///
/// Shapes: `a` and `b` are dense vectors of the same length (e.g. 384 for all-MiniLM-L6-v2). If the
/// lengths differ only the common prefix is used (callers pass vectors from one embedder, so this
/// does not happen in practice). Returns `0.0` when either vector has zero norm (or is empty),
/// matching langchain_core's `_cosine_similarity`, which maps the resulting NaN/inf to 0. The
/// result is clamped to `[-1, 1]` against rounding.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let denom = na.sqrt() * nb.sqrt();
    if denom == 0.0 || !denom.is_finite() {
        return 0.0;
    }
    (dot / denom).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(evidence: Option<&str>, page: Option<u32>, short: Option<&str>) -> Question {
        Question {
            id: "q1".into(),
            question: "Which daemon writes Volumes?".into(),
            expected_answer: "The Storage daemon writes the Volumes.".into(),
            short_answer: short.map(String::from),
            page,
            evidence: evidence.map(String::from),
            difficulty: None,
            source: None,
            qrels: Default::default(),
        }
    }

    #[test]
    fn questions_whose_evidence_no_chunk_holds_are_listed() {
        let chunk = |id: u32, page: u32, text: &str| Chunk {
            id,
            source: "m.pdf".into(),
            page,
            start: 0,
            text: text.into(),
        };
        let chunks = [
            chunk(0, 1, "The Storage daemon writes the Volumes."),
            chunk(1, 2, "The Director schedules jobs."),
        ];
        let mut qs = vec![
            question(Some("storage daemon writes"), Some(1), None),
            question(Some("a quote that was paraphrased"), Some(2), None),
            question(None, Some(2), None),
            question(None, Some(9), None),
            question(None, None, None),
        ];
        for (i, q) in qs.iter_mut().enumerate() {
            q.id = format!("q{i}");
        }
        assert_eq!(without_relevant_chunks(&qs, &chunks), ["q1", "q3"]);
        assert!(without_relevant_chunks(&qs[4..], &chunks).is_empty());
        // a source restricts the judgement to that document's chunks
        qs[0].source = Some("other.pdf".into());
        qs[2].source = Some("m.pdf".into());
        assert_eq!(without_relevant_chunks(&qs, &chunks), ["q0", "q1", "q3"]);
        // one document: no page is ambiguous
        assert!(ambiguous_pages(&qs, &chunks).is_empty());
    }

    #[test]
    fn pages_are_judged_per_source_document() {
        let chunk = |id: u32, source: &str, page: u32| Chunk {
            id,
            source: source.into(),
            page,
            start: 0,
            text: format!("text of chunk {id}"),
        };
        // page 2 exists in both documents
        let chunks = [
            chunk(0, "a.pdf", 2),
            chunk(1, "b.pdf", 2),
            chunk(2, "b.pdf", 3),
        ];
        let judge = JudgeCorpus::new(chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)));
        let mut q = question(None, Some(2), None);
        // without a source, both page-2 chunks are relevant: retrieving chunk 0 recalls 1 of 2
        let m = metrics_for(&q, &[0], 1, &chunks, Some(&judge), None);
        assert_eq!(m["recall@1"], 0.5);
        assert_eq!(ambiguous_pages(std::slice::from_ref(&q), &chunks), ["q1"]);
        // with source = b.pdf, only chunk 1 is
        q.source = Some("b.pdf".into());
        let m = metrics_for(&q, &[0], 1, &chunks, Some(&judge), None);
        assert_eq!((m["hit@1"], m["recall@1"]), (0.0, 0.0));
        let m = metrics_for(&q, &[1], 1, &chunks, Some(&judge), None);
        assert_eq!((m["hit@1"], m["recall@1"]), (1.0, 1.0));
        assert!(ambiguous_pages(std::slice::from_ref(&q), &chunks).is_empty());
        // a quote never makes a page ambiguous
        let quoted = question(Some("text of chunk"), Some(2), None);
        assert!(ambiguous_pages(&[quoted], &chunks).is_empty());
    }

    #[test]
    fn metrics_for_combines_retrieval_and_answer_metrics() {
        let judge = JudgeCorpus::new([
            (0, "The File daemon reads files.", 3),
            (
                1,
                "The Storage daemon is responsible for writing Volumes.",
                4,
            ),
            (2, "Unrelated text about the catalog.", 4),
        ]);
        let q = question(
            Some("Storage daemon is responsible for writing Volumes"),
            Some(4),
            Some("Storage daemon"),
        );
        let m = metrics_for(
            &q,
            &[0, 1],
            2,
            &[],
            Some(&judge),
            Some("the Storage daemon"),
        );
        // relevant chunk 1 at rank 2: hit 1, recall 1, MRR 1/2, nDCG (1/log2 3) / 1
        assert_eq!(m["hit@2"], 1.0);
        assert_eq!(m["recall@2"], 1.0);
        assert_eq!(m["mrr@2"], 0.5);
        assert!((m["ndcg@2"] - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(m["em"], 1.0); // equals the short answer after SQuAD normalisation
        assert_eq!(m["contains"], 1.0);
        assert!(m.contains_key("rouge_l") && m.contains_key("f1"));
        assert_eq!(m.contains_key("meteor"), wordnet::for_tests().is_some());

        // page-only evidence: chunks 1 and 2 are on page 4; only chunk 0 retrieved
        let m = metrics_for(
            &question(None, Some(4), None),
            &[0],
            1,
            &[],
            Some(&judge),
            None,
        );
        assert_eq!(m["hit@1"], 0.0);
        assert!(!m.contains_key("em") && !m.contains_key("contains"));

        // no evidence, no answer: nothing; evidence absent from the corpus: no retrieval metrics
        assert!(metrics_for(
            &question(None, None, None),
            &[0],
            1,
            &[],
            Some(&judge),
            None
        )
        .is_empty());
        let missing = question(Some("not in this corpus at all"), None, None);
        assert!(metrics_for(&missing, &[0, 1, 2], 3, &[], Some(&judge), None).is_empty());
    }

    /// Chunks 0.. with the given document ids as `source`.
    fn chunks_of(docs: &[&str]) -> Vec<Chunk> {
        docs.iter()
            .enumerate()
            .map(|(i, d)| Chunk {
                id: i as u32,
                source: (*d).to_string(),
                page: i as u32 + 1,
                start: 0,
                text: format!("text of {d}"),
            })
            .collect()
    }

    fn beir_question(qrels: &[(&str, i64)]) -> Question {
        Question {
            id: "q1".into(),
            question: "Which daemon writes Volumes?".into(),
            expected_answer: String::new(),
            short_answer: None,
            page: None,
            evidence: None,
            difficulty: None,
            source: None,
            qrels: qrels.iter().map(|(d, g)| ((*d).to_string(), *g)).collect(),
        }
    }

    #[test]
    fn document_level_graded_metrics_by_hand() {
        // chunks 0..6: documents a, b, a, c, d, b (a and b split into two chunks each)
        let chunks = chunks_of(&["a", "b", "a", "c", "d", "b"]);
        // qrels: c grade 2, a grade 1, d grade 0 (judged not relevant), z grade 1 (not in corpus)
        let q = beir_question(&[("c", 2), ("a", 1), ("d", 0), ("z", 1)]);
        // chunk ranking 2, 0, 3, 5, 1 → documents a, (a), c, b, (b) → a, c, b
        let m = metrics_for(&q, &[2, 0, 3, 5, 1], 5, &chunks, None, Some("an answer"));
        // DCG@5 = 1/log2(2) + 2/log2(3) = 1 + 1.2618595...
        let dcg = 1.0 + 2.0 / 3f64.log2();
        // ideal gains 2, 1, 1: IDCG = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309298 + 0.5
        let idcg = 2.0 + 1.0 / 3f64.log2() + 0.5;
        assert!((m["ndcg@5"] - dcg / idcg).abs() < 1e-12, "{m:?}");
        assert!((m["ndcg@5"] - 0.722_424_2).abs() < 1e-6, "{m:?}");
        assert_eq!(m["recall@5"], 2.0 / 3.0); // a and c of a, c, z
        assert_eq!(m["mrr@5"], 1.0);
        assert_eq!(m["hit@5"], 1.0);
        // no reference answer: no answer metrics even though an answer was given
        assert!(!m.contains_key("em") && !m.contains_key("f1") && !m.contains_key("rouge_l"));
        assert_eq!(m.len(), 4);

        // the same document twice counts once: ranking b, b, c at k 3 → documents b, c
        let m = metrics_for(&q, &[1, 5, 3], 3, &chunks, None, None);
        // DCG = 2/log2(3) (c at document rank 2); IDCG@3 as above
        assert!(
            (m["ndcg@3"] - (2.0 / 3f64.log2()) / idcg).abs() < 1e-12,
            "{m:?}"
        );
        assert_eq!(m["mrr@3"], 0.5);
        assert_eq!(m["recall@3"], 1.0 / 3.0);
        // equal to evaluating the deduplicated document list directly
        let direct = retrieval::evaluate(
            &[10, 11],
            &Qrels::from_grades([(11, 2), (12, 1), (13, 1)]),
            3,
        )
        .expect("relevant");
        assert_eq!(m["ndcg@3"], direct.ndcg);

        // unknown chunk ids are skipped; only d (grade 0) retrieved: all zero
        let m = metrics_for(&q, &[99, 4], 2, &chunks, None, None);
        assert_eq!((m["hit@2"], m["ndcg@2"], m["mrr@2"]), (0.0, 0.0, 0.0));

        // qrels without a positive grade: every metric 0, as pytrec_eval and BEIR score it
        let zero = beir_question(&[("a", 0)]);
        let m = metrics_for(&zero, &[0], 1, &chunks, None, None);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [
                ("hit@1".to_string(), 0.0),
                ("mrr@1".to_string(), 0.0),
                ("ndcg@1".to_string(), 0.0),
                ("recall@1".to_string(), 0.0)
            ]
        );
        assert!(document_metrics(&[0], &chunks, &BTreeMap::new(), 1).is_none());
        assert!(!needs_judge(&zero) && !has_reference_answer(&zero));
        // qrels take precedence over evidence
        let mut both = beir_question(&[("c", 1)]);
        both.evidence = Some("text of a".into());
        let judge = JudgeCorpus::new(chunks.iter().map(|c| (c.id, c.text.as_str(), c.page)));
        let m = metrics_for(&both, &[0], 1, &chunks, Some(&judge), None);
        assert_eq!(m["hit@1"], 0.0);
    }

    #[test]
    fn identical_vectors_score_one() {
        let v = [0.3f32, -1.2, 4.0];
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn scale_invariant_and_sign_sensitive() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [2.0f32, 4.0, 6.0];
        let c = [-1.0f32, -2.0, -3.0];
        assert!((cosine(&a, &b) - 1.0).abs() < 1e-12);
        assert!((cosine(&a, &c) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn orthogonal_and_hand_computed() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 5.0]), 0.0);
        // (1,1)·(1,0) = 1; |(1,1)| = sqrt 2 → cos 45° = 1/sqrt 2.
        let got = cosine(&[1.0, 1.0], &[1.0, 0.0]);
        assert!((got - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
    }

    #[test]
    fn zero_or_empty_vectors_score_zero() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
        assert_eq!(cosine(&[1.0, 2.0], &[0.0, 0.0]), 0.0);
        assert_eq!(cosine(&[], &[]), 0.0);
    }
}
