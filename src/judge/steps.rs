//! The judge's calls: one prompt and one output [`Shape`] per step of each metric.
//!
//! The instructions paraphrase the reference frameworks' prompts (RAGAS v0.4.0
//! `src/ragas/metrics/_*.py`, DeepEval python-v4.1.10 `deepeval/metrics/*/templates/`) without
//! their few-shot examples: the grammar fixes the output format, so examples would only lengthen
//! every prompt. Reasons come before verdicts (the judge explains, then decides). Changing any
//! text here changes the calls' cache keys, and [`PROMPT_VERSION`] names the set in the
//! database.

use super::grammar::{Shape, VerdictSet};

/// Version of the prompt set, stored with every judgment (bump when a prompt or grammar changes
/// meaning). 2: context recall's list of reference statements may no longer be empty (small
/// judges answered `[]`, leaving the metric undefined).
pub const PROMPT_VERSION: u32 = 2;

/// The system message of every judge call.
pub const SYSTEM: &str =
    "You are a careful, strict evaluator of answers given by a question-answering \
system that retrieves passages from a technical manual. Judge only from the texts you are given, \
not from your own knowledge. Reply with JSON only.";

/// Which judge step a call is (stored with the call; part of its cache key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// RAGAS: split the answer into statements.
    RagasStatements,
    /// RAGAS: 0/1 per statement, directly inferable from the context.
    RagasNli,
    /// RAGAS: the question the answer responds to, and whether it is noncommittal.
    RagasQuestion,
    /// RAGAS: 0/1, was this one chunk useful for the reference answer.
    RagasChunkUseful,
    /// RAGAS: split the reference into statements, 0/1 attributable to the context each.
    RagasRecall,
    /// DeepEval: truths stated by the retrieval context.
    DeepEvalTruths,
    /// DeepEval: claims made by the answer.
    DeepEvalClaims,
    /// DeepEval: yes/no/idk per claim against the truths.
    DeepEvalFaithfulness,
    /// DeepEval: statements of the answer.
    DeepEvalStatements,
    /// DeepEval: yes/no/idk per statement, relevant to the question.
    DeepEvalRelevancy,
    /// DeepEval: yes/no per retrieved node, useful for the expected output.
    DeepEvalPrecision,
    /// DeepEval: per sentence of the expected output, yes/no attributable to a node.
    DeepEvalRecall,
    /// Both profiles: 0/1, the answer states the expected answer's key facts.
    Correctness,
}

impl Step {
    /// The step's stored name (`ragas.statements`, `deepeval.claims`, `correctness`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Step::RagasStatements => "ragas.statements",
            Step::RagasNli => "ragas.nli",
            Step::RagasQuestion => "ragas.question",
            Step::RagasChunkUseful => "ragas.chunk_useful",
            Step::RagasRecall => "ragas.recall",
            Step::DeepEvalTruths => "deepeval.truths",
            Step::DeepEvalClaims => "deepeval.claims",
            Step::DeepEvalFaithfulness => "deepeval.faithfulness",
            Step::DeepEvalStatements => "deepeval.statements",
            Step::DeepEvalRelevancy => "deepeval.relevancy",
            Step::DeepEvalPrecision => "deepeval.precision",
            Step::DeepEvalRecall => "deepeval.recall",
            Step::Correctness => "correctness",
        }
    }
}

/// One judge call: which step, the user message, and the shape its output must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The step.
    pub step: Step,
    /// The user message (the system message is [`SYSTEM`]).
    pub user: String,
    /// The output's shape (its grammar constrains decoding).
    pub shape: Shape,
}

fn numbered(items: &[String]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {}", i + 1, s.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn documents(contexts: &[&str]) -> String {
    contexts
        .iter()
        .enumerate()
        .map(|(i, c)| format!("[{}] {}", i + 1, c.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// RAGAS statement generation (faithfulness): the answer split into self-contained statements.
pub fn ragas_statements(question: &str, answer: &str) -> Call {
    Call {
        step: Step::RagasStatements,
        user: format!(
            "Question: {question}\nAnswer: {answer}\n\nBreak the answer into short statements, each \
             stating one fact and understandable on its own (replace pronouns with what they refer \
             to). Return {{\"statements\": [...]}}; an empty list if the answer states nothing."
        ),
        shape: Shape::Strings { key: "statements" },
    }
}

/// RAGAS NLI: for each statement, 1 when the context directly supports it, else 0.
pub fn ragas_nli(contexts: &[&str], statements: &[String]) -> Call {
    Call {
        step: Step::RagasNli,
        user: format!(
            "Context:\n{}\n\nStatements:\n{}\n\nFor each statement, in order, decide whether it can \
             be directly inferred from the context: verdict 1 if the context supports it, 0 if the \
             context does not (also when the context does not mention it). Give a brief reason \
             first. Return {{\"statements\": [{{\"reason\": ..., \"verdict\": 0 or 1}}, ...]}} with \
             exactly one item per statement.",
            contexts.join("\n"),
            numbered(statements)
        ),
        shape: Shape::Verdicts {
            key: "statements",
            n: statements.len(),
            set: VerdictSet::Binary,
        },
    }
}

/// RAGAS response relevancy: the question the answer responds to, and the noncommittal flag.
pub fn ragas_question(answer: &str) -> Call {
    Call {
        step: Step::RagasQuestion,
        user: format!(
            "Answer: {answer}\n\nWrite the question this answer responds to. Set noncommittal to 1 \
             if the answer is evasive, vague or ambiguous (for example \"I don't know\", \"I'm not \
             sure\", \"it depends\"), otherwise 0. Return {{\"question\": ..., \"noncommittal\": 0 \
             or 1}}."
        ),
        shape: Shape::Question,
    }
}

/// RAGAS context precision, one chunk: was it useful in arriving at the reference answer.
pub fn ragas_chunk_useful(question: &str, reference: &str, chunk: &str) -> Call {
    Call {
        step: Step::RagasChunkUseful,
        user: format!(
            "Question: {question}\nReference answer: {reference}\nContext: {}\n\nWas this context \
             useful in arriving at the reference answer? Give a brief reason first, then verdict 1 \
             if useful, 0 if not. Return {{\"reason\": ..., \"verdict\": 0 or 1}}.",
            chunk.trim()
        ),
        shape: Shape::Single {
            set: VerdictSet::Binary,
        },
    }
}

/// RAGAS context recall: the reference split into statements, each 1 when attributable to the
/// context.
pub fn ragas_recall(question: &str, reference: &str, contexts: &[&str]) -> Call {
    Call {
        step: Step::RagasRecall,
        user: format!(
            "Question: {question}\nContext:\n{}\n\nReference answer: {reference}\n\nSplit the \
             reference answer into its sentences or statements. For each, give a brief reason and \
             verdict 1 if it can be attributed to the context, 0 if not. Return \
             {{\"classifications\": [{{\"statement\": ..., \"reason\": ..., \"verdict\": 0 or 1}}, \
             ...]}}.",
            contexts.join("\n")
        ),
        shape: Shape::Classified {
            key: "classifications",
            set: VerdictSet::Binary,
        },
    }
}

/// DeepEval truths: the factual statements the retrieval context makes.
pub fn deepeval_truths(contexts: &[&str]) -> Call {
    Call {
        step: Step::DeepEvalTruths,
        user: format!(
            "Text:\n{}\n\nList the factual statements this text states or clearly implies, each \
             understandable on its own, whether or not they are true in the real world. Return \
             {{\"truths\": [...]}}.",
            contexts.join("\n\n")
        ),
        shape: Shape::Strings { key: "truths" },
    }
}

/// DeepEval claims: the factual claims the answer makes, taken at face value.
pub fn deepeval_claims(answer: &str) -> Call {
    Call {
        step: Step::DeepEvalClaims,
        user: format!(
            "AI output: {answer}\n\nExtract the factual claims this output makes, taken at face \
             value, each with enough context to stand alone. Use no prior knowledge. Return \
             {{\"claims\": [...]}}; an empty list if it makes none."
        ),
        shape: Shape::Strings { key: "claims" },
    }
}

/// DeepEval faithfulness verdicts: per claim, `no` only when the truths contradict it.
pub fn deepeval_faithfulness(truths: &[String], claims: &[String]) -> Call {
    Call {
        step: Step::DeepEvalFaithfulness,
        user: format!(
            "Truths:\n{}\n\nClaims:\n{}\n\nFor each claim, in order: verdict \"no\" only if the \
             truths directly contradict it; \"idk\" if the truths do not support it (or it seems \
             wrong without being contradicted); \"yes\" if the truths support it. Speculative \
             wording is not a contradiction. Give a brief reason first. Return {{\"verdicts\": \
             [{{\"reason\": ..., \"verdict\": \"yes\", \"no\" or \"idk\"}}, ...]}} with exactly \
             one item per claim.",
            numbered(truths),
            numbered(claims)
        ),
        shape: Shape::Verdicts {
            key: "verdicts",
            n: claims.len(),
            set: VerdictSet::YesNoIdk,
        },
    }
}

/// DeepEval answer-relevancy statements: the statements the answer makes.
pub fn deepeval_statements(answer: &str) -> Call {
    Call {
        step: Step::DeepEvalStatements,
        user: format!(
            "Text: {answer}\n\nBreak the text into the statements it makes (a fragment counts only \
             if it is not part of a statement). Return {{\"statements\": [...]}}."
        ),
        shape: Shape::Strings { key: "statements" },
    }
}

/// DeepEval answer-relevancy verdicts: per statement, relevant to the question or not.
pub fn deepeval_relevancy(question: &str, statements: &[String]) -> Call {
    Call {
        step: Step::DeepEvalRelevancy,
        user: format!(
            "Input: {question}\n\nStatements:\n{}\n\nFor each statement, in order: verdict \"yes\" \
             if it helps address the input, \"no\" if it is irrelevant, \"idk\" if it is ambiguous \
             (not directly relevant but possibly supporting). Give a brief reason first. Return \
             {{\"verdicts\": [{{\"reason\": ..., \"verdict\": \"yes\", \"no\" or \"idk\"}}, ...]}} \
             with exactly one item per statement.",
            numbered(statements)
        ),
        shape: Shape::Verdicts {
            key: "verdicts",
            n: statements.len(),
            set: VerdictSet::YesNoIdk,
        },
    }
}

/// DeepEval contextual precision: per retrieved node, in rank order, useful or not.
pub fn deepeval_precision(question: &str, expected: &str, contexts: &[&str]) -> Call {
    Call {
        step: Step::DeepEvalPrecision,
        user: format!(
            "Input: {question}\nExpected output: {expected}\n\nRetrieval context ({} documents):\n{}\
             \n\nFor each document, in order: verdict \"yes\" if it was even remotely useful for \
             arriving at the expected output, \"no\" if not. Give a brief reason first, quoting \
             the document. Return {{\"verdicts\": [{{\"reason\": ..., \"verdict\": \"yes\" or \
             \"no\"}}, ...]}} with exactly one item per document.",
            contexts.len(),
            documents(contexts)
        ),
        shape: Shape::Verdicts {
            key: "verdicts",
            n: contexts.len(),
            set: VerdictSet::YesNo,
        },
    }
}

/// DeepEval contextual recall: per sentence of the expected output, attributable to a node.
pub fn deepeval_recall(expected: &str, contexts: &[&str]) -> Call {
    Call {
        step: Step::DeepEvalRecall,
        user: format!(
            "Expected output: {expected}\n\nRetrieval context:\n{}\n\nFor each sentence of the \
             expected output: verdict \"yes\" if it can be attributed to any document of the \
             retrieval context, \"no\" if not; give a brief reason first naming the document. \
             Return {{\"verdicts\": [{{\"statement\": ..., \"reason\": ..., \"verdict\": \"yes\" \
             or \"no\"}}, ...]}}.",
            documents(contexts)
        ),
        shape: Shape::Classified {
            key: "verdicts",
            set: VerdictSet::YesNo,
        },
    }
}

/// Correctness (both profiles): does the answer state the expected answer's key facts.
pub fn correctness(question: &str, expected: &str, answer: &str) -> Call {
    Call {
        step: Step::Correctness,
        user: format!(
            "Question: {question}\nExpected answer: {expected}\nAnswer to judge: {answer}\n\nIs the \
             answer correct: does it state the key facts of the expected answer without \
             contradicting them? Extra correct detail is fine; missing the key fact, stating a \
             wrong one, or not answering is incorrect. Give a brief reason first, then verdict 1 \
             if correct, 0 if not. Return {{\"reason\": ..., \"verdict\": 0 or 1}}."
        ),
        shape: Shape::Single {
            set: VerdictSet::Binary,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_calls_ask_for_one_verdict_per_item() {
        let claims = vec!["A".to_string(), "B".to_string()];
        let c = deepeval_faithfulness(&["T".to_string()], &claims);
        assert!(c.user.contains("1. A\n2. B"));
        assert_eq!(
            c.shape,
            Shape::Verdicts {
                key: "verdicts",
                n: 2,
                set: VerdictSet::YesNoIdk
            }
        );
        let p = deepeval_precision("q", "e", &["x", "y", "z"]);
        assert!(p.user.contains("(3 documents)") && p.user.contains("[3] z"));
        assert!(matches!(p.shape, Shape::Verdicts { n: 3, .. }));
    }

    #[test]
    fn step_names_are_distinct() {
        let all = [
            Step::RagasStatements,
            Step::RagasNli,
            Step::RagasQuestion,
            Step::RagasChunkUseful,
            Step::RagasRecall,
            Step::DeepEvalTruths,
            Step::DeepEvalClaims,
            Step::DeepEvalFaithfulness,
            Step::DeepEvalStatements,
            Step::DeepEvalRelevancy,
            Step::DeepEvalPrecision,
            Step::DeepEvalRecall,
            Step::Correctness,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), all.len());
    }
}
