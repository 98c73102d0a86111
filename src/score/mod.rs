//! Scoring: how good a retrieved list and a generated answer are.
//!
//! - this module: cosine similarity between embedding vectors (expected answer vs generated
//!   answer, query vs chunk), also the similarity used by exact dense search and by MMR;
//! - [`retrieval`]: which chunks are relevant to a question (evidence quote or page, BEIR qrels)
//!   and hit@k, recall@k, MRR@k, nDCG@k of a ranked list (BEIR definitions);
//! - [`answer`]: SQuAD exact match and token F1, contains(short answer), ROUGE-L F1 and METEOR
//!   against the reference answers, with [`porter`] (nltk's Porter stemmer) for METEOR.

pub mod answer;
pub mod porter;
pub mod retrieval;

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
