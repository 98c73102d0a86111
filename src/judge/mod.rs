//! LLM-judged metrics that never break: faithfulness, answer relevancy, context precision,
//! context recall and correctness, as RAGAS or DeepEval define them, judged by a local GGUF.
//!
//! Why it exists: the evaluation frameworks our users know ask a judge model for JSON and crash
//! or silently drop NaN when a small local judge writes invalid JSON. Here every judge call
//! decodes under a grammar that admits only the expected structure ([`grammar`]), so a verdict
//! always parses; what can still go wrong (a prompt longer than the judge's context, an output
//! cut at its token budget) is a typed [`JudgeError`] stored per answer and counted per cell.
//!
//! Layout: [`formula`] turns verdicts into scores with each reference's definition and
//! empty-input convention; [`steps`] holds the prompts and output shapes of every call;
//! [`score`] runs one metric of one answer through an [`Ask`] seam (the judge model in
//! production, fakes in tests) and an embedder (RAGAS answer relevancy compares questions by
//! cosine). Caching, storing and the `orchestrate judge` command live in [`run`].

pub mod formula;
pub mod grammar;
pub mod run;
pub mod steps;

use std::fmt;

use crate::embed::EmbedError;
use crate::generate::GenerateError;
use crate::worker::TextEmbedder;
use formula::Verdict3;
use grammar::{Parsed, ShapeError, Verdict};
use steps::Call;
#[cfg(test)]
use steps::Step;

/// Whose metric definitions to use.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// RAGAS v0.4 (`src/ragas/metrics/`): 0/1 verdicts, NaN for undefined scores.
    Ragas,
    /// DeepEval 4.1 (`deepeval/metrics/`): yes/no/idk verdicts, 1.0 or 0.0 for empty inputs.
    #[serde(rename = "deepeval")]
    #[value(name = "deepeval")]
    DeepEval,
}

impl Profile {
    /// The stored name: `ragas` or `deepeval`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Ragas => "ragas",
            Profile::DeepEval => "deepeval",
        }
    }

    /// The profile named `name`, if any.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "ragas" => Some(Profile::Ragas),
            "deepeval" => Some(Profile::DeepEval),
            _ => None,
        }
    }
}

/// A judge metric.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum JudgeMetric {
    /// Share of the answer's statements the retrieved context supports.
    Faithfulness,
    /// How well the answer addresses the question.
    AnswerRelevancy,
    /// Rank-aware average precision of the retrieved chunks judged useful for the reference.
    ContextPrecision,
    /// Share of the reference answer's statements the retrieved context supports.
    ContextRecall,
    /// 1 when the answer states the expected answer's key facts, else 0 ("k of n correct").
    Correctness,
}

impl JudgeMetric {
    /// Every judge metric, in display order.
    pub const ALL: [JudgeMetric; 5] = [
        JudgeMetric::Correctness,
        JudgeMetric::Faithfulness,
        JudgeMetric::AnswerRelevancy,
        JudgeMetric::ContextPrecision,
        JudgeMetric::ContextRecall,
    ];

    /// The stored name: `faithfulness`, `answer_relevancy`, `context_precision`,
    /// `context_recall`, `correctness`.
    pub fn name(self) -> &'static str {
        match self {
            JudgeMetric::Faithfulness => "faithfulness",
            JudgeMetric::AnswerRelevancy => "answer_relevancy",
            JudgeMetric::ContextPrecision => "context_precision",
            JudgeMetric::ContextRecall => "context_recall",
            JudgeMetric::Correctness => "correctness",
        }
    }

    /// The metric named `name`, if any.
    pub fn parse(name: &str) -> Option<JudgeMetric> {
        JudgeMetric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether it judges the retrieved context against the reference only (not the answer), so
    /// every model given the same context gets the same value.
    pub fn is_context_only(self) -> bool {
        matches!(
            self,
            JudgeMetric::ContextPrecision | JudgeMetric::ContextRecall
        )
    }
}

impl fmt::Display for JudgeMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The stored metric name of `metric` under `profile`: the plain name when only one profile
/// runs, else `<name>_<profile>` (`faithfulness_ragas`).
pub fn metric_name(metric: JudgeMetric, profile: Profile, several_profiles: bool) -> String {
    if several_profiles {
        format!("{}_{}", metric.name(), profile.name())
    } else {
        metric.name().to_string()
    }
}

/// What a judge needs of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeInput<'a> {
    /// The question asked.
    pub question: &'a str,
    /// The model's answer.
    pub answer: &'a str,
    /// The expert's (reference) answer.
    pub expected: &'a str,
    /// The retrieved chunks the model was given, best first.
    pub contexts: Vec<&'a str>,
}

/// A metric's value for one answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Score {
    /// A number in [0, 1] (RAGAS answer relevancy is a cosine and may in theory be below 0).
    Value(f64),
    /// The reference leaves it undefined (RAGAS's NaN), with why.
    Undefined(&'static str),
}

/// Why a judgment could not be made (stored per answer, counted per cell).
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The judge's prompt (the step's instructions with the question, answer, reference or
    /// contexts it judges) plus `max_tokens` does not fit the judge's `n_ctx`.
    #[error(
        "judge prompt at step {step} needs {prompt_tokens} tokens + max_tokens {max_tokens} > \
         n_ctx {n_ctx}: raise n_ctx in [judge] (or lower its max_tokens)"
    )]
    PromptTooLong {
        /// The step's name.
        step: &'static str,
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// The judge's generation budget.
        max_tokens: u32,
        /// The judge's context window.
        n_ctx: u32,
    },
    /// The judge model failed (llama.cpp errors).
    #[error("judge model failed at step {step}: {source}")]
    Generate {
        /// The step's name.
        step: &'static str,
        /// The underlying error.
        source: GenerateError,
    },
    /// The output hit the judge's max_tokens before the grammar was complete.
    #[error(
        "judge output cut at max_tokens {max_tokens} at step {step}: raise [judge] max_tokens"
    )]
    Truncated {
        /// The step's name.
        step: &'static str,
        /// The budget that was reached.
        max_tokens: u32,
    },
    /// The output is not of the expected shape (only possible for a cached output from a
    /// different grammar, or a judge that ignores grammars).
    #[error("step {step}: {source}")]
    Shape {
        /// The step's name.
        step: &'static str,
        /// What was wrong.
        source: ShapeError,
    },
    /// The metric needs the retrieved chunks' texts and they are not available.
    #[error("the retrieved chunks' texts are not available (index gone): {0}")]
    NoContexts(String),
    /// Embedding the questions (RAGAS answer relevancy) failed.
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    /// The cache of judge calls could not be read or written.
    #[error("judge cache: {0}")]
    Cache(String),
}

/// Asks the judge one call: the seam between metric logic and the judge model (and its cache).
pub trait Ask {
    /// The parsed output of `call`.
    ///
    /// # Errors
    /// [`JudgeError`] when the model fails or its output is cut short.
    fn ask(&mut self, call: &Call) -> Result<Parsed, JudgeError>;
}

/// Options of the metrics (the references' defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MetricOptions {
    /// DeepEval faithfulness: count `idk` verdicts as unfaithful (default false).
    #[serde(default)]
    pub penalize_ambiguous_claims: bool,
}

/// Scores `metric` of one answer under `profile`: asks the judge the metric's steps (see
/// [`steps`]) through `ask` and applies the profile's formula ([`formula`]).
///
/// # Errors
/// [`JudgeError`] from `ask` or the embedder; [`JudgeError::NoContexts`] is the caller's to
/// raise before (an answer given no context has `contexts` empty, which the formulas handle).
pub fn score(
    metric: JudgeMetric,
    profile: Profile,
    input: &JudgeInput<'_>,
    options: MetricOptions,
    ask: &mut dyn Ask,
    embedder: &dyn TextEmbedder,
) -> Result<Score, JudgeError> {
    use formula as f;
    let q = input.question;
    let ctx = &input.contexts;
    Ok(match (profile, metric) {
        (_, JudgeMetric::Correctness) => {
            let v = single(ask.ask(&steps::correctness(q, input.expected, input.answer))?);
            Score::Value(f::correctness(v == Verdict::Yes))
        }
        (Profile::Ragas, JudgeMetric::Faithfulness) => {
            let statements = strings(ask.ask(&steps::ragas_statements(q, input.answer))?);
            if statements.is_empty() {
                return Ok(Score::Undefined("the answer has no statements"));
            }
            let v = verdicts(ask.ask(&steps::ragas_nli(ctx, &statements))?);
            undefined_if_none(
                f::ragas_faithfulness(&yes(&v)),
                "the answer has no statements",
            )
        }
        (Profile::DeepEval, JudgeMetric::Faithfulness) => {
            let claims = strings(ask.ask(&steps::deepeval_claims(input.answer))?);
            if claims.is_empty() {
                return Ok(Score::Value(f::deepeval_faithfulness(&[], false)));
            }
            let truths = if ctx.is_empty() {
                Vec::new()
            } else {
                strings(ask.ask(&steps::deepeval_truths(ctx))?)
            };
            let v = verdicts(ask.ask(&steps::deepeval_faithfulness(&truths, &claims))?);
            Score::Value(f::deepeval_faithfulness(
                &three(&v),
                options.penalize_ambiguous_claims,
            ))
        }
        (Profile::Ragas, JudgeMetric::AnswerRelevancy) => {
            let Parsed::Question {
                question,
                noncommittal,
            } = ask.ask(&steps::ragas_question(input.answer))?
            else {
                unreachable!("the Question shape parses to Parsed::Question")
            };
            let vecs = embedder.embed_texts(&[q, &question])?;
            let cos = crate::score::cosine(&vecs[0], &vecs[1]);
            undefined_if_none(
                f::ragas_answer_relevancy(&[(cos, noncommittal)]),
                "no question generated",
            )
        }
        (Profile::DeepEval, JudgeMetric::AnswerRelevancy) => {
            let statements = strings(ask.ask(&steps::deepeval_statements(input.answer))?);
            if statements.is_empty() {
                return Ok(Score::Value(f::deepeval_answer_relevancy(&[])));
            }
            let v = verdicts(ask.ask(&steps::deepeval_relevancy(q, &statements))?);
            Score::Value(f::deepeval_answer_relevancy(&three(&v)))
        }
        (Profile::Ragas, JudgeMetric::ContextPrecision) => {
            let mut useful = Vec::with_capacity(ctx.len());
            for chunk in ctx {
                let v = single(ask.ask(&steps::ragas_chunk_useful(q, input.expected, chunk))?);
                useful.push(v == Verdict::Yes);
            }
            Score::Value(f::ragas_context_precision(&useful))
        }
        (Profile::DeepEval, JudgeMetric::ContextPrecision) => {
            if ctx.is_empty() {
                return Ok(Score::Value(f::deepeval_contextual_precision(&[])));
            }
            let v = verdicts(ask.ask(&steps::deepeval_precision(q, input.expected, ctx))?);
            Score::Value(f::deepeval_contextual_precision(&yes(&v)))
        }
        (Profile::Ragas, JudgeMetric::ContextRecall) => {
            let c = classified(ask.ask(&steps::ragas_recall(q, input.expected, ctx))?);
            undefined_if_none(
                f::ragas_context_recall(&c),
                "the reference answer has no statements",
            )
        }
        (Profile::DeepEval, JudgeMetric::ContextRecall) => {
            let c = classified(ask.ask(&steps::deepeval_recall(input.expected, ctx))?);
            Score::Value(f::deepeval_contextual_recall(&c))
        }
    })
}

fn undefined_if_none(v: Option<f64>, why: &'static str) -> Score {
    v.map_or(Score::Undefined(why), Score::Value)
}

// The shape of each step's output is fixed by its Call, and Shape::parse returns the matching
// Parsed variant, so the accessors below only see their own variant.

fn strings(p: Parsed) -> Vec<String> {
    match p {
        Parsed::Strings(s) => s,
        other => unreachable!("a Strings shape parsed to {other:?}"),
    }
}

fn verdicts(p: Parsed) -> Vec<Verdict> {
    match p {
        Parsed::Verdicts(v) => v.into_iter().map(|(v, _)| v).collect(),
        other => unreachable!("a Verdicts shape parsed to {other:?}"),
    }
}

fn single(p: Parsed) -> Verdict {
    verdicts(p)
        .into_iter()
        .next()
        .expect("a Single shape parses to exactly one verdict")
}

fn classified(p: Parsed) -> Vec<bool> {
    match p {
        Parsed::Classified(c) => c.into_iter().map(|(_, v)| v == Verdict::Yes).collect(),
        other => unreachable!("a Classified shape parsed to {other:?}"),
    }
}

fn yes(v: &[Verdict]) -> Vec<bool> {
    v.iter().map(|v| *v == Verdict::Yes).collect()
}

fn three(v: &[Verdict]) -> Vec<Verdict3> {
    v.iter()
        .map(|v| match v {
            Verdict::Yes => Verdict3::Yes,
            Verdict::No => Verdict3::No,
            Verdict::Idk => Verdict3::Idk,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers each call with the next canned output (checked against the call's shape, as the
    /// real judge's grammar would guarantee) and records the steps asked.
    struct Canned {
        outputs: VecDeque<&'static str>,
        asked: Vec<Step>,
    }

    impl Ask for Canned {
        fn ask(&mut self, call: &Call) -> Result<Parsed, JudgeError> {
            self.asked.push(call.step);
            let out = self.outputs.pop_front().expect("an output per call");
            call.shape.parse(out).map_err(|source| JudgeError::Shape {
                step: call.step.name(),
                source,
            })
        }
    }

    struct Same;
    impl TextEmbedder for Same {
        fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts
                .iter()
                .map(|t| {
                    if t.contains("port") {
                        vec![1.0, 0.0]
                    } else {
                        vec![0.6, 0.8]
                    }
                })
                .collect())
        }
    }

    fn input() -> JudgeInput<'static> {
        JudgeInput {
            question: "Which port does the Director listen on?",
            answer: "The Director listens on port 9101. It is configurable.",
            expected: "Port 9101.",
            contexts: vec!["DIRport = 9101", "unrelated", "Director daemon"],
        }
    }

    fn run(metric: JudgeMetric, profile: Profile, outputs: &[&'static str]) -> (Score, Vec<Step>) {
        let mut c = Canned {
            outputs: outputs.iter().copied().collect(),
            asked: Vec::new(),
        };
        let s = score(
            metric,
            profile,
            &input(),
            MetricOptions::default(),
            &mut c,
            &Same,
        )
        .unwrap();
        assert!(c.outputs.is_empty(), "every canned output was asked for");
        (s, c.asked)
    }

    #[test]
    fn ragas_faithfulness_extracts_then_judges_each_statement() {
        let (s, asked) = run(
            JudgeMetric::Faithfulness,
            Profile::Ragas,
            &[
                r#"{"statements":["The Director listens on port 9101.","The port is configurable.","It runs as root."]}"#,
                r#"{"statements":[{"reason":"","verdict":1},{"reason":"","verdict":0},{"reason":"","verdict":1}]}"#,
            ],
        );
        assert_eq!(asked, vec![Step::RagasStatements, Step::RagasNli]);
        let Score::Value(v) = s else { panic!("{s:?}") };
        assert!((v - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn empty_extractions_follow_each_profile_without_a_second_call() {
        let (s, asked) = run(
            JudgeMetric::Faithfulness,
            Profile::Ragas,
            &[r#"{"statements":[]}"#],
        );
        assert_eq!(s, Score::Undefined("the answer has no statements"));
        assert_eq!(asked.len(), 1);
        let (s, _) = run(
            JudgeMetric::Faithfulness,
            Profile::DeepEval,
            &[r#"{"claims":[]}"#],
        );
        assert_eq!(s, Score::Value(1.0));
        let (s, _) = run(
            JudgeMetric::AnswerRelevancy,
            Profile::DeepEval,
            &[r#"{"statements":[]}"#],
        );
        assert_eq!(s, Score::Value(1.0));
    }

    #[test]
    fn deepeval_faithfulness_judges_claims_against_extracted_truths() {
        let (s, asked) = run(
            JudgeMetric::Faithfulness,
            Profile::DeepEval,
            &[
                r#"{"claims":["a","b","c"]}"#,
                r#"{"truths":["t"]}"#,
                r#"{"verdicts":[{"reason":"","verdict":"yes"},{"reason":"","verdict":"idk"},{"reason":"","verdict":"no"}]}"#,
            ],
        );
        assert_eq!(
            asked,
            vec![
                Step::DeepEvalClaims,
                Step::DeepEvalTruths,
                Step::DeepEvalFaithfulness
            ]
        );
        let Score::Value(v) = s else { panic!("{s:?}") };
        assert!((v - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn ragas_context_precision_asks_once_per_chunk_in_rank_order() {
        let (s, asked) = run(
            JudgeMetric::ContextPrecision,
            Profile::Ragas,
            &[
                r#"{"reason":"","verdict":1}"#,
                r#"{"reason":"","verdict":0}"#,
                r#"{"reason":"","verdict":1}"#,
            ],
        );
        assert_eq!(asked, vec![Step::RagasChunkUseful; 3]);
        let Score::Value(v) = s else { panic!("{s:?}") };
        assert!((v - 0.8333).abs() < 1e-4);
        let (s, asked) = run(
            JudgeMetric::ContextPrecision,
            Profile::DeepEval,
            &[
                r#"{"verdicts":[{"reason":"","verdict":"no"},{"reason":"","verdict":"yes"},{"reason":"","verdict":"no"}]}"#,
            ],
        );
        assert_eq!(asked, vec![Step::DeepEvalPrecision]);
        assert_eq!(s, Score::Value(0.5));
    }

    #[test]
    fn answer_relevancy_ragas_uses_the_cosine_of_the_generated_question() {
        let (s, _) = run(
            JudgeMetric::AnswerRelevancy,
            Profile::Ragas,
            &[r#"{"question":"On which port does it listen?","noncommittal":0}"#],
        );
        assert_eq!(s, Score::Value(1.0));
        let (s, _) = run(
            JudgeMetric::AnswerRelevancy,
            Profile::Ragas,
            &[r#"{"question":"What is it?","noncommittal":0}"#],
        );
        let Score::Value(v) = s else { panic!("{s:?}") };
        assert!((v - 0.6).abs() < 1e-6);
        let (s, _) = run(
            JudgeMetric::AnswerRelevancy,
            Profile::Ragas,
            &[r#"{"question":"On which port?","noncommittal":1}"#],
        );
        assert_eq!(s, Score::Value(0.0));
    }

    #[test]
    fn recall_and_correctness() {
        let (s, _) = run(
            JudgeMetric::ContextRecall,
            Profile::Ragas,
            &[r#"{"classifications":[{"statement":"Port 9101.","reason":"","verdict":1}]}"#],
        );
        assert_eq!(s, Score::Value(1.0));
        // the reference always has a statement: an empty list is not of the shape (the grammar
        // never lets the judge produce it); the formulas' empty conventions are tested in
        // formula.rs
        for (profile, empty) in [
            (Profile::Ragas, r#"{"classifications":[]}"#),
            (Profile::DeepEval, r#"{"verdicts":[]}"#),
        ] {
            let mut c = Canned {
                outputs: [empty].into_iter().collect(),
                asked: Vec::new(),
            };
            let r = score(
                JudgeMetric::ContextRecall,
                profile,
                &input(),
                MetricOptions::default(),
                &mut c,
                &Same,
            );
            assert!(r.is_err(), "{profile:?}: {r:?}");
        }
        let (s, asked) = run(
            JudgeMetric::Correctness,
            Profile::DeepEval,
            &[r#"{"reason":"states 9101","verdict":1}"#],
        );
        assert_eq!((s, asked), (Score::Value(1.0), vec![Step::Correctness]));
    }

    #[test]
    fn names_and_profiles_round_trip() {
        for m in JudgeMetric::ALL {
            assert_eq!(JudgeMetric::parse(m.name()), Some(m));
        }
        assert_eq!(
            metric_name(JudgeMetric::Faithfulness, Profile::DeepEval, true),
            "faithfulness_deepeval"
        );
        assert_eq!(
            metric_name(JudgeMetric::Faithfulness, Profile::Ragas, false),
            "faithfulness"
        );
        assert_eq!(Profile::parse("deepeval"), Some(Profile::DeepEval));
    }
}
