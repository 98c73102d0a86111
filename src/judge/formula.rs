//! The judge metrics' formulas over verdicts, exactly as the reference frameworks compute them.
//!
//! Pure functions: the judge model produces verdicts (see [`super::steps`]); these turn verdicts
//! into scores. Each function names the reference source it matches (RAGAS at v0.4.0-3-g3e28e9de,
//! DeepEval at python-v4.1.10) and its empty-input convention. A score the reference leaves
//! undefined (RAGAS's NaN) is `None` here: it is stored as "undefined" with the reason and
//! counted per cell, never averaged as a number and never silently dropped.

/// A three-way DeepEval verdict (`"yes"`, `"no"`, `"idk"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict3 {
    /// Supported / relevant.
    Yes,
    /// Contradicted / irrelevant.
    No,
    /// Neither (DeepEval counts it as yes unless told to penalize ambiguity).
    Idk,
}

/// RAGAS faithfulness: statements the context directly supports over all statements
/// (`src/ragas/metrics/_faithfulness.py`, `_compute_score`). `verdicts[i]` is statement i's 0/1
/// NLI verdict. No statements: `None` (RAGAS's NaN).
pub fn ragas_faithfulness(verdicts: &[bool]) -> Option<f64> {
    fraction(verdicts)
}

/// DeepEval faithfulness: claims not contradicted by the context's truths over all claims;
/// with `penalize_ambiguous_claims`, `idk` counts against too
/// (`deepeval/metrics/faithfulness/faithfulness.py`, `_calculate_score`). No claims: 1.0.
pub fn deepeval_faithfulness(verdicts: &[Verdict3], penalize_ambiguous_claims: bool) -> f64 {
    if verdicts.is_empty() {
        return 1.0;
    }
    let mut count = verdicts.iter().filter(|v| **v != Verdict3::No).count();
    if penalize_ambiguous_claims {
        count -= verdicts.iter().filter(|v| **v == Verdict3::Idk).count();
    }
    count as f64 / verdicts.len() as f64
}

/// RAGAS answer relevancy: mean cosine similarity of the questions generated from the answer to
/// the asked question, times 0 when every generation was flagged noncommittal
/// (`src/ragas/metrics/_answer_relevance.py`, `_calculate_score`:
/// `mean(cos) * int(not all(noncommittal))`). `generated` holds (cosine, noncommittal) per
/// generated question. None generated: `None` (RAGAS's NaN).
pub fn ragas_answer_relevancy(generated: &[(f64, bool)]) -> Option<f64> {
    if generated.is_empty() {
        return None;
    }
    let mean = generated.iter().map(|(c, _)| c).sum::<f64>() / generated.len() as f64;
    let all_noncommittal = generated.iter().all(|(_, n)| *n);
    Some(if all_noncommittal { 0.0 } else { mean })
}

/// DeepEval answer relevancy: statements of the answer not judged irrelevant (`idk` counts as
/// relevant) over all statements (`deepeval/metrics/answer_relevancy/answer_relevancy.py`,
/// `_calculate_score`). No statements: 1.0.
pub fn deepeval_answer_relevancy(verdicts: &[Verdict3]) -> f64 {
    deepeval_faithfulness(verdicts, false)
}

/// RAGAS context precision: average precision of the retrieved chunks in rank order,
/// `sum_k precision@k * v_k / (sum v + 1e-10)` (`src/ragas/metrics/_context_precision.py`,
/// `_calculate_average_precision`). `useful[k]` is chunk k's 0/1 verdict, best-ranked first.
/// No useful chunk (or no chunk): 0.0.
pub fn ragas_context_precision(useful: &[bool]) -> f64 {
    let (sum, relevant) = precision_sum(useful);
    sum / (relevant as f64 + 1e-10)
}

/// DeepEval contextual precision: the same weighted cumulative precision without the epsilon
/// (`deepeval/metrics/contextual_precision/contextual_precision.py`, `_calculate_score`). No
/// verdicts or no relevant node: 0.0.
pub fn deepeval_contextual_precision(relevant: &[bool]) -> f64 {
    let (sum, n) = precision_sum(relevant);
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// RAGAS context recall: statements of the reference answer attributable to the retrieved
/// context over all of them (`src/ragas/metrics/_context_recall.py`, `_compute_score`). No
/// classifications: `None` (RAGAS's NaN).
pub fn ragas_context_recall(attributed: &[bool]) -> Option<f64> {
    fraction(attributed)
}

/// DeepEval contextual recall: sentences of the expected output attributable to a retrieved node
/// over all sentences (`deepeval/metrics/contextual_recall/contextual_recall.py`,
/// `_calculate_score`). No verdicts: 0.0.
pub fn deepeval_contextual_recall(attributed: &[bool]) -> f64 {
    fraction(attributed).unwrap_or(0.0)
}

/// Correctness: 1.0 when the judge's verdict says the answer states the expected answer's key
/// facts, else 0.0. orchestrate's own binary verdict (the studies' "k of n correct"); neither
/// reference has one (RAGAS's answer_correctness is a weighted F1, DeepEval's a G-Eval rubric),
/// so both profiles use this definition.
pub fn correctness(correct: bool) -> f64 {
    if correct {
        1.0
    } else {
        0.0
    }
}

/// Share of `true`, or `None` for an empty slice.
fn fraction(v: &[bool]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some(v.iter().filter(|x| **x).count() as f64 / v.len() as f64)
    }
}

/// (sum over k of precision@k · v_k, number of relevant items).
fn precision_sum(v: &[bool]) -> (f64, usize) {
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (k, &rel) in v.iter().enumerate() {
        if rel {
            hits += 1;
            sum += hits as f64 / (k + 1) as f64;
        }
    }
    (sum, hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict3::{Idk, No, Yes};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn the_issue_examples_hold() {
        assert!(close(ragas_context_precision(&[true, false, true]), 0.8333));
        assert!(close(
            deepeval_contextual_precision(&[true, false, true]),
            0.8333
        ));
        assert!(close(
            ragas_faithfulness(&[true, false, true]).unwrap(),
            0.6667
        ));
        assert!(close(deepeval_faithfulness(&[Yes, Idk, No], false), 0.6667));
        assert!(close(deepeval_faithfulness(&[Yes, Idk, No], true), 0.3333));
    }

    #[test]
    fn average_precision_rewards_relevant_chunks_ranked_first() {
        // (1/1 + 2/2) / 2 = 1 against (1/2 + 2/3) / 2 = 0.5833 for the same two relevant chunks.
        assert!(close(ragas_context_precision(&[true, true, false]), 1.0));
        assert!(close(ragas_context_precision(&[false, true, true]), 0.5833));
        // RAGAS's epsilon makes it a hair below DeepEval's exact value.
        assert!(ragas_context_precision(&[true]) < 1.0);
        assert_eq!(deepeval_contextual_precision(&[true]), 1.0);
    }

    #[test]
    fn empty_inputs_follow_each_reference() {
        assert_eq!(ragas_faithfulness(&[]), None);
        assert_eq!(deepeval_faithfulness(&[], true), 1.0);
        assert_eq!(ragas_answer_relevancy(&[]), None);
        assert_eq!(deepeval_answer_relevancy(&[]), 1.0);
        assert_eq!(ragas_context_precision(&[]), 0.0);
        assert_eq!(ragas_context_precision(&[false, false]), 0.0);
        assert_eq!(deepeval_contextual_precision(&[]), 0.0);
        assert_eq!(ragas_context_recall(&[]), None);
        assert_eq!(deepeval_contextual_recall(&[]), 0.0);
    }

    #[test]
    fn answer_relevancy_is_zeroed_only_when_every_generation_is_noncommittal() {
        let r = ragas_answer_relevancy(&[(0.9, true), (0.6, false), (0.6, true)]).unwrap();
        assert!(close(r, 0.7));
        assert_eq!(
            ragas_answer_relevancy(&[(0.9, true), (0.8, true)]),
            Some(0.0)
        );
        // DeepEval counts idk as relevant and has no penalty option here.
        assert!(close(deepeval_answer_relevancy(&[Yes, Idk, No, No]), 0.5));
    }

    #[test]
    fn recall_counts_attributed_statements() {
        assert!(close(
            ragas_context_recall(&[true, false, false, true]).unwrap(),
            0.5
        ));
        assert!(close(
            deepeval_contextual_recall(&[true, true, false]),
            0.6667
        ));
        assert_eq!(correctness(true) + correctness(false), 1.0);
    }
}
