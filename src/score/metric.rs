//! The metric vocabulary: every per-answer measure orchestrate stores or ranks on, as one enum.
//!
//! Answers store their named metrics as a JSON object keyed by [`Metric`]'s text form (`hit@4`,
//! `f1`, ...), so the database stays readable with SQL; everything that classifies, orders or
//! titles a metric goes through [`Metric::parse`] instead of matching strings. Names from a
//! newer or older version that this one does not know parse as [`Metric::Other`] and are shown
//! and exported unchanged.

use std::fmt;

use crate::stats::IntervalMethod;

/// One metric of an answer or a cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// `hit@k`: 1 when a relevant chunk is among the first k retrieved, else 0.
    Hit(usize),
    /// `recall@k`: relevant units among the first k over all relevant units.
    Recall(usize),
    /// `mrr@k`: reciprocal rank of the first relevant chunk within k (0 if none).
    Mrr(usize),
    /// `ndcg@k`: normalised discounted cumulative gain at k.
    Ndcg(usize),
    /// `em`: SQuAD exact match with the short (or expected) answer.
    Em,
    /// `f1`: SQuAD token F1 with the short (or expected) answer.
    F1,
    /// `contains`: 1 when the normalised answer contains the normalised short answer.
    Contains,
    /// `rouge_l`: ROUGE-L F-measure with the expected answer.
    RougeL,
    /// `meteor`: METEOR (nltk's single_meteor_score) with the expected answer.
    Meteor,
    /// `cosine`: cosine similarity of answer and expected answer embeddings.
    Cosine,
    /// `response_time_s`: seconds from prompt submission to the last token.
    ResponseTime,
    /// An LLM-judged metric (`faithfulness`, `correctness_ragas`, ...; see [`crate::judge`]),
    /// with the profile when its stored name carries one.
    Judge(crate::judge::JudgeMetric, Option<crate::judge::Profile>),
    /// Any other name, kept as written.
    Other(String),
}

impl Metric {
    /// The metric named `name` (the inverse of Display); unknown names are [`Metric::Other`].
    pub fn parse(name: &str) -> Metric {
        if let Some((m, k)) = name.split_once('@') {
            if let Ok(k) = k.parse::<usize>() {
                match m {
                    "hit" => return Metric::Hit(k),
                    "recall" => return Metric::Recall(k),
                    "mrr" => return Metric::Mrr(k),
                    "ndcg" => return Metric::Ndcg(k),
                    _ => {}
                }
            }
        }
        match name {
            "em" => Metric::Em,
            "f1" => Metric::F1,
            "contains" => Metric::Contains,
            "rouge_l" => Metric::RougeL,
            "meteor" => Metric::Meteor,
            "cosine" => Metric::Cosine,
            "response_time_s" => Metric::ResponseTime,
            other => Metric::parse_judge(other).unwrap_or_else(|| Metric::Other(other.to_string())),
        }
    }

    /// A judge metric's name: `<metric>` or `<metric>_<profile>`.
    fn parse_judge(name: &str) -> Option<Metric> {
        use crate::judge::{JudgeMetric, Profile};
        if let Some(m) = JudgeMetric::parse(name) {
            return Some(Metric::Judge(m, None));
        }
        let (m, p) = name.rsplit_once('_')?;
        Some(Metric::Judge(
            JudgeMetric::parse(m)?,
            Some(Profile::parse(p)?),
        ))
    }

    /// Whether it measures retrieval (`hit`, `recall`, `mrr`, `ndcg` at some k): the same for
    /// every model over the same retrieval.
    pub fn is_retrieval(&self) -> bool {
        matches!(
            self,
            Metric::Hit(_) | Metric::Recall(_) | Metric::Mrr(_) | Metric::Ndcg(_)
        )
    }

    /// How the confidence interval of this metric's mean is computed, from its range (the one
    /// place that decides it; see [`crate::stats::bounded`]):
    ///
    /// - proportions, one 0/1 value per answer (`hit@k`, `em`, `contains`, judged
    ///   `correctness`): [`IntervalMethod::Wilson`];
    /// - other metrics in [0, 1] (`recall@k`, `mrr@k`, `ndcg@k`, `f1`, `rouge_l`, `meteor`,
    ///   `faithfulness`, `context_precision`, `context_recall`, DeepEval's `answer_relevancy`):
    ///   the t interval clipped to [0, 1];
    /// - `cosine` and RAGAS's `answer_relevancy` (a mean of cosines): clipped to [−1, 1];
    /// - `response_time_s` (seconds): clipped to [0, ∞);
    /// - [`Metric::Other`] (range unknown): the plain t interval.
    pub fn interval_method(&self) -> IntervalMethod {
        use crate::judge::{JudgeMetric, Profile};
        const UNIT: IntervalMethod = IntervalMethod::ClippedT { lo: 0.0, hi: 1.0 };
        match self {
            Metric::Hit(_) | Metric::Em | Metric::Contains => IntervalMethod::Wilson,
            Metric::Judge(JudgeMetric::Correctness, _) => IntervalMethod::Wilson,
            Metric::Recall(_) | Metric::Mrr(_) | Metric::Ndcg(_) => UNIT,
            Metric::F1 | Metric::RougeL | Metric::Meteor => UNIT,
            Metric::Judge(JudgeMetric::AnswerRelevancy, Some(Profile::DeepEval)) => UNIT,
            Metric::Judge(JudgeMetric::AnswerRelevancy, _) | Metric::Cosine => {
                IntervalMethod::ClippedT { lo: -1.0, hi: 1.0 }
            }
            Metric::Judge(
                JudgeMetric::Faithfulness
                | JudgeMetric::ContextPrecision
                | JudgeMetric::ContextRecall,
                _,
            ) => UNIT,
            Metric::ResponseTime => IntervalMethod::ClippedT {
                lo: 0.0,
                hi: f64::INFINITY,
            },
            Metric::Other(_) => IntervalMethod::T,
        }
    }

    /// Whether smaller values are better (response time); all others are better when larger.
    pub fn lower_is_better(&self) -> bool {
        matches!(self, Metric::ResponseTime)
    }

    /// Display order: retrieval metrics by k (hit, recall, MRR, nDCG within a k), then cosine
    /// and the answer metrics (EM, F1, contains, ROUGE-L, METEOR), then others by name.
    pub fn order_key(&self) -> (u8, usize, u8, String) {
        match self {
            Metric::Hit(k) => (0, *k, 0, String::new()),
            Metric::Recall(k) => (0, *k, 1, String::new()),
            Metric::Mrr(k) => (0, *k, 2, String::new()),
            Metric::Ndcg(k) => (0, *k, 3, String::new()),
            Metric::Cosine => (1, 0, 0, String::new()),
            Metric::Em => (1, 0, 1, String::new()),
            Metric::F1 => (1, 0, 2, String::new()),
            Metric::Contains => (1, 0, 3, String::new()),
            Metric::RougeL => (1, 0, 4, String::new()),
            Metric::Meteor => (1, 0, 5, String::new()),
            Metric::Judge(m, p) => (
                1,
                1,
                crate::judge::JudgeMetric::ALL
                    .iter()
                    .position(|x| x == m)
                    .unwrap_or(0) as u8,
                p.map(|p| p.name()).unwrap_or("").to_string(),
            ),
            Metric::ResponseTime => (2, 0, 0, "response_time_s".into()),
            Metric::Other(n) => (2, 0, 0, n.clone()),
        }
    }

    /// Title for headings and legends: `Hit@4`, `Recall@4`, `MRR@4`, `nDCG@4`, `EM`, `F1`,
    /// `contains`, `ROUGE-L`, `METEOR`, `cosine`, `response time`; others as written.
    pub fn title(&self) -> String {
        match self {
            Metric::Hit(k) => format!("Hit@{k}"),
            Metric::Recall(k) => format!("Recall@{k}"),
            Metric::Mrr(k) => format!("MRR@{k}"),
            Metric::Ndcg(k) => format!("nDCG@{k}"),
            Metric::Em => "EM".into(),
            Metric::F1 => "F1".into(),
            Metric::Contains => "contains".into(),
            Metric::RougeL => "ROUGE-L".into(),
            Metric::Meteor => "METEOR".into(),
            Metric::Cosine => "cosine".into(),
            Metric::ResponseTime => "response time".into(),
            Metric::Judge(m, None) => m.name().replace('_', " "),
            Metric::Judge(m, Some(p)) => {
                let who = match p {
                    crate::judge::Profile::Ragas => "RAGAS",
                    crate::judge::Profile::DeepEval => "DeepEval",
                };
                format!("{} ({who})", m.name().replace('_', " "))
            }
            Metric::Other(n) => n.clone(),
        }
    }

    /// Short name for compact answer rows: `hit`, `rec`, `mrr`, `ndcg` (k is the cell's top_k),
    /// `EM`, `F1`, `has`, `R-L`, `MET`; others as written.
    pub fn short(&self) -> String {
        match self {
            Metric::Hit(_) => "hit".into(),
            Metric::Recall(_) => "rec".into(),
            Metric::Mrr(_) => "mrr".into(),
            Metric::Ndcg(_) => "ndcg".into(),
            Metric::Em => "EM".into(),
            Metric::F1 => "F1".into(),
            Metric::Contains => "has".into(),
            Metric::RougeL => "R-L".into(),
            Metric::Meteor => "MET".into(),
            m => m.to_string(),
        }
    }
}

impl fmt::Display for Metric {
    /// The stored name: `hit@4`, `recall@4`, `mrr@4`, `ndcg@4`, `em`, `f1`, `contains`,
    /// `rouge_l`, `meteor`, `cosine`, `response_time_s`, or the other name as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::Hit(k) => write!(f, "hit@{k}"),
            Metric::Recall(k) => write!(f, "recall@{k}"),
            Metric::Mrr(k) => write!(f, "mrr@{k}"),
            Metric::Ndcg(k) => write!(f, "ndcg@{k}"),
            Metric::Em => f.write_str("em"),
            Metric::F1 => f.write_str("f1"),
            Metric::Contains => f.write_str("contains"),
            Metric::RougeL => f.write_str("rouge_l"),
            Metric::Meteor => f.write_str("meteor"),
            Metric::Cosine => f.write_str("cosine"),
            Metric::ResponseTime => f.write_str("response_time_s"),
            Metric::Judge(m, None) => f.write_str(m.name()),
            Metric::Judge(m, Some(p)) => write!(f, "{}_{}", m.name(), p.name()),
            Metric::Other(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for name in [
            "hit@4",
            "recall@10",
            "mrr@1",
            "ndcg@3",
            "em",
            "f1",
            "contains",
            "rouge_l",
            "meteor",
            "cosine",
            "response_time_s",
            "faithfulness",
            "context_precision_deepeval",
            "correctness_ragas",
            "bleu",
            "hit@x",
        ] {
            assert_eq!(Metric::parse(name).to_string(), name);
        }
        assert_eq!(Metric::parse("hit@x"), Metric::Other("hit@x".into()));
        assert_eq!(
            Metric::parse("answer_relevancy_deepeval"),
            Metric::Judge(
                crate::judge::JudgeMetric::AnswerRelevancy,
                Some(crate::judge::Profile::DeepEval)
            )
        );
        assert_eq!(
            Metric::parse("faithfulness_other"),
            Metric::Other("faithfulness_other".into())
        );
        assert!(Metric::parse("ndcg@4").is_retrieval() && !Metric::F1.is_retrieval());
        assert!(Metric::ResponseTime.lower_is_better() && !Metric::Cosine.lower_is_better());
    }

    #[test]
    fn the_scorers_only_produce_known_names() {
        let r = crate::score::retrieval::RetrievalMetrics {
            k: 4,
            hit: 1.0,
            recall: 1.0,
            mrr: 1.0,
            ndcg: 1.0,
        };
        for (name, _) in r.pairs() {
            assert!(!matches!(Metric::parse(&name), Metric::Other(_)), "{name}");
        }
        let a = crate::score::answer::AnswerMetrics {
            em: 0.0,
            f1: 0.5,
            contains: Some(1.0),
            rouge_l: 0.5,
            meteor: Some(0.5),
        };
        for (name, _) in a.pairs() {
            assert!(!matches!(Metric::parse(name), Metric::Other(_)), "{name}");
        }
    }

    #[test]
    fn interval_methods_follow_the_metric_ranges() {
        let unit = IntervalMethod::ClippedT { lo: 0.0, hi: 1.0 };
        let signed = IntervalMethod::ClippedT { lo: -1.0, hi: 1.0 };
        for (name, want) in [
            ("hit@4", IntervalMethod::Wilson),
            ("em", IntervalMethod::Wilson),
            ("contains", IntervalMethod::Wilson),
            ("correctness", IntervalMethod::Wilson),
            ("correctness_ragas", IntervalMethod::Wilson),
            ("recall@4", unit),
            ("mrr@10", unit),
            ("ndcg@4", unit),
            ("f1", unit),
            ("rouge_l", unit),
            ("meteor", unit),
            ("faithfulness", unit),
            ("context_recall_deepeval", unit),
            ("answer_relevancy_deepeval", unit),
            ("answer_relevancy_ragas", signed),
            ("cosine", signed),
            (
                "response_time_s",
                IntervalMethod::ClippedT {
                    lo: 0.0,
                    hi: f64::INFINITY,
                },
            ),
            ("bleu", IntervalMethod::T),
        ] {
            assert_eq!(Metric::parse(name).interval_method(), want, "{name}");
        }
    }

    #[test]
    fn order_puts_retrieval_by_k_then_answer_metrics() {
        let mut names =
            ["rouge_l", "ndcg@4", "hit@10", "em", "zz", "hit@4", "cosine"].map(Metric::parse);
        names.sort_by_key(Metric::order_key);
        let shown: Vec<String> = names.iter().map(Metric::to_string).collect();
        assert_eq!(
            shown,
            ["hit@4", "ndcg@4", "hit@10", "cosine", "em", "rouge_l", "zz"]
        );
    }
}
