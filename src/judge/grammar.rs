//! Output shapes of judge calls and the llama.cpp GBNF grammars that admit exactly them.
//!
//! Every judge call decodes under the grammar of its [`Shape`], so what comes back is valid JSON
//! of that shape by construction: a fixed key, strings of bounded length, verdicts from a fixed
//! set, and — where a metric needs one verdict per item — exactly that many items. Bounds on
//! list lengths and string lengths (characters) also bound the number of tokens a call can take,
//! so a judge cannot loop. The JSON is compact (no whitespace between tokens), which keeps calls
//! short. [`Shape::parse`] reads an output back; on an output the grammar produced it cannot fail,
//! and on anything else it says what was wrong (stored as that answer's judge error).
//!
//! Grammar syntax: llama.cpp `grammars/README.md` (GBNF, `{m,n}` repetition).

use serde_json::Value;

/// Longest statement, claim, truth or question a judge may write, in characters.
pub const MAX_STATEMENT_CHARS: usize = 200;
/// Longest reason a judge may give for a verdict, in characters.
pub const MAX_REASON_CHARS: usize = 150;
/// Most statements (claims, truths) a judge may extract from one text.
pub const MAX_STATEMENTS: usize = 12;

/// The values a verdict may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictSet {
    /// RAGAS's integers `0` / `1`.
    Binary,
    /// DeepEval's `"yes"` / `"no"`.
    YesNo,
    /// DeepEval's `"yes"` / `"no"` / `"idk"`.
    YesNoIdk,
}

/// One verdict as read from an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `1` or `"yes"`.
    Yes,
    /// `0` or `"no"`.
    No,
    /// `"idk"`.
    Idk,
}

/// The structure a judge call must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `{"<key>":["...", ...]}` with 0 to [`MAX_STATEMENTS`] strings.
    Strings {
        /// The JSON key (`statements`, `claims`, `truths`).
        key: &'static str,
    },
    /// `{"<key>":[{"reason":"...","verdict":V}, ...]}` with exactly `n` items (`n` ≥ 1).
    Verdicts {
        /// The JSON key (`verdicts`, `statements`).
        key: &'static str,
        /// How many verdicts: one per given item.
        n: usize,
        /// Allowed verdict values.
        set: VerdictSet,
    },
    /// `{"<key>":[{"statement":"...","reason":"...","verdict":V}, ...]}` with 1 to
    /// [`MAX_STATEMENTS`] items: the judge both splits a text and judges each part. The text
    /// (a reference answer, never empty) has at least one sentence, so an empty list is not
    /// admitted: small judges otherwise answer `[]` and the metric becomes undefined.
    Classified {
        /// The JSON key (`classifications`, `verdicts`).
        key: &'static str,
        /// Allowed verdict values.
        set: VerdictSet,
    },
    /// `{"reason":"...","verdict":V}`: one verdict.
    Single {
        /// Allowed verdict values.
        set: VerdictSet,
    },
    /// `{"question":"...","noncommittal":0|1}` (RAGAS answer relevancy).
    Question,
}

/// A parsed judge output.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Extracted strings.
    Strings(Vec<String>),
    /// Verdicts in item order, with the judge's reasons.
    Verdicts(Vec<(Verdict, String)>),
    /// Text parts with their verdicts.
    Classified(Vec<(String, Verdict)>),
    /// A generated question and whether the answer was noncommittal.
    Question {
        /// The question the answer would answer.
        question: String,
        /// Whether the answer was evasive or vague.
        noncommittal: bool,
    },
}

/// A judge output that is not of the expected shape (cannot happen under the shape's grammar).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("judge output is not of the expected shape ({what}): {output:.200}")]
pub struct ShapeError {
    /// What was expected or wrong.
    pub what: String,
    /// The output (first 200 characters shown).
    pub output: String,
}

impl VerdictSet {
    fn rule(self) -> &'static str {
        match self {
            VerdictSet::Binary => r#"("0" | "1")"#,
            VerdictSet::YesNo => r#"("\"yes\"" | "\"no\"")"#,
            VerdictSet::YesNoIdk => r#"("\"yes\"" | "\"no\"" | "\"idk\"")"#,
        }
    }

    fn read(self, v: &Value) -> Option<Verdict> {
        match (self, v) {
            (VerdictSet::Binary, Value::Number(n)) => match n.as_u64()? {
                1 => Some(Verdict::Yes),
                0 => Some(Verdict::No),
                _ => None,
            },
            (VerdictSet::YesNo | VerdictSet::YesNoIdk, Value::String(s)) => match s.as_str() {
                "yes" => Some(Verdict::Yes),
                "no" => Some(Verdict::No),
                "idk" if self == VerdictSet::YesNoIdk => Some(Verdict::Idk),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The GBNF rule `name ::= "\"" char{min,max} "\""` of a JSON string of `min..=max` characters
/// (no control characters; escapes allowed).
fn string_rule(name: &str, min: usize, max: usize) -> String {
    format!("{name} ::= \"\\\"\" char{{{min},{max}}} \"\\\"\"\n")
}

const CHAR_RULE: &str =
    "char ::= [^\"\\\\\\x00-\\x1F\\x7F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n";

impl Shape {
    /// The GBNF grammar (root rule `root`) admitting exactly this shape.
    pub fn grammar(&self) -> String {
        let mut g = String::new();
        match self {
            Shape::Strings { key } => {
                g.push_str(&format!(
                    "root ::= \"{{\\\"{key}\\\":[\" (stmt (\",\" stmt){{0,{}}})? \"]}}\"\n",
                    MAX_STATEMENTS - 1
                ));
                g.push_str(&string_rule("stmt", 1, MAX_STATEMENT_CHARS));
            }
            Shape::Verdicts { key, n, set } => {
                g.push_str(&format!(
                    "root ::= \"{{\\\"{key}\\\":[\" item (\",\" item){{{},{}}} \"]}}\"\n",
                    n.saturating_sub(1),
                    n.saturating_sub(1)
                ));
                g.push_str(&format!(
                    "item ::= \"{{\\\"reason\\\":\" reason \",\\\"verdict\\\":\" {} \"}}\"\n",
                    set.rule()
                ));
                g.push_str(&string_rule("reason", 0, MAX_REASON_CHARS));
            }
            Shape::Classified { key, set } => {
                g.push_str(&format!(
                    "root ::= \"{{\\\"{key}\\\":[\" item (\",\" item){{0,{}}} \"]}}\"\n",
                    MAX_STATEMENTS - 1
                ));
                g.push_str(&format!(
                    "item ::= \"{{\\\"statement\\\":\" stmt \",\\\"reason\\\":\" reason \",\\\"verdict\\\":\" {} \"}}\"\n",
                    set.rule()
                ));
                g.push_str(&string_rule("stmt", 1, MAX_STATEMENT_CHARS));
                g.push_str(&string_rule("reason", 0, MAX_REASON_CHARS));
            }
            Shape::Single { set } => {
                g.push_str(&format!(
                    "root ::= \"{{\\\"reason\\\":\" reason \",\\\"verdict\\\":\" {} \"}}\"\n",
                    set.rule()
                ));
                g.push_str(&string_rule("reason", 0, MAX_REASON_CHARS));
            }
            Shape::Question => {
                g.push_str(
                    "root ::= \"{\\\"question\\\":\" stmt \",\\\"noncommittal\\\":\" (\"0\" | \"1\") \"}\"\n",
                );
                g.push_str(&string_rule("stmt", 1, MAX_STATEMENT_CHARS));
            }
        }
        g.push_str(CHAR_RULE);
        g
    }

    /// An upper bound on the output's length in characters (each character is at most one
    /// token, so this also bounds the tokens a call may sample).
    pub fn max_chars(&self) -> usize {
        let verdict = 8;
        let item = |stmt: usize| stmt + MAX_REASON_CHARS * 2 + 40 + verdict;
        match self {
            Shape::Strings { key } => {
                key.len() + 8 + MAX_STATEMENTS * (MAX_STATEMENT_CHARS * 2 + 3)
            }
            Shape::Verdicts { key, n, .. } => key.len() + 8 + n * item(0),
            Shape::Classified { key, .. } => {
                key.len() + 8 + MAX_STATEMENTS * item(MAX_STATEMENT_CHARS * 2 + 16)
            }
            Shape::Single { .. } => item(0),
            Shape::Question => MAX_STATEMENT_CHARS * 2 + 40,
        }
    }

    /// Reads an output of this shape.
    ///
    /// # Errors
    /// [`ShapeError`] when `output` is not JSON of this shape (never for an output decoded under
    /// [`Shape::grammar`]).
    pub fn parse(&self, output: &str) -> Result<Parsed, ShapeError> {
        let fail = |what: &str| ShapeError {
            what: what.to_string(),
            output: output.to_string(),
        };
        let v: Value = serde_json::from_str(output).map_err(|e| fail(&e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| fail("not an object"))?;
        let list = |key: &str| {
            obj.get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| fail(&format!("no list `{key}`")))
        };
        let string = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| fail(&format!("no string `{key}`")))
        };
        let verdict = |v: &Value, set: VerdictSet| {
            v.get("verdict")
                .and_then(|x| set.read(x))
                .ok_or_else(|| fail("a verdict outside the allowed set"))
        };
        match self {
            Shape::Strings { key } => list(key)?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail("a list item is not a string"))
                })
                .collect::<Result<_, _>>()
                .map(Parsed::Strings),
            Shape::Verdicts { key, n, set } => {
                let items = list(key)?;
                if items.len() != *n {
                    return Err(fail(&format!("{} verdicts for {n} items", items.len())));
                }
                items
                    .iter()
                    .map(|it| Ok((verdict(it, *set)?, string(it, "reason")?)))
                    .collect::<Result<_, _>>()
                    .map(Parsed::Verdicts)
            }
            Shape::Classified { key, set } => {
                let items = list(key)?;
                if items.is_empty() {
                    return Err(fail("an empty list (at least one statement expected)"));
                }
                items
                    .iter()
                    .map(|it| Ok((string(it, "statement")?, verdict(it, *set)?)))
                    .collect::<Result<_, _>>()
                    .map(Parsed::Classified)
            }
            Shape::Single { set } => Ok(Parsed::Verdicts(vec![(
                verdict(&v, *set)?,
                string(&v, "reason")?,
            )])),
            Shape::Question => {
                let question = string(&v, "question")?;
                let noncommittal = match obj.get("noncommittal").and_then(Value::as_u64) {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(fail("`noncommittal` is not 0 or 1")),
                };
                Ok(Parsed::Question {
                    question,
                    noncommittal,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lists_must_have_exactly_one_verdict_per_item() {
        let s = Shape::Verdicts {
            key: "verdicts",
            n: 2,
            set: VerdictSet::YesNoIdk,
        };
        let ok = r#"{"verdicts":[{"reason":"","verdict":"yes"},{"reason":"no support","verdict":"idk"}]}"#;
        assert_eq!(
            s.parse(ok).unwrap(),
            Parsed::Verdicts(vec![
                (Verdict::Yes, String::new()),
                (Verdict::Idk, "no support".into())
            ])
        );
        let short = r#"{"verdicts":[{"reason":"","verdict":"yes"}]}"#;
        assert!(s
            .parse(short)
            .unwrap_err()
            .what
            .contains("1 verdicts for 2"));
        let bad = r#"{"verdicts":[{"reason":"","verdict":"maybe"},{"reason":"","verdict":"no"}]}"#;
        assert!(s.parse(bad).is_err());
        assert!(s.grammar().contains("item (\",\" item){1,1}"));
    }

    #[test]
    fn binary_verdicts_are_integers_and_yes_no_sets_reject_idk() {
        let s = Shape::Single {
            set: VerdictSet::Binary,
        };
        assert_eq!(
            s.parse(r#"{"reason":"r","verdict":1}"#).unwrap(),
            Parsed::Verdicts(vec![(Verdict::Yes, "r".into())])
        );
        assert!(s.parse(r#"{"reason":"r","verdict":"1"}"#).is_err());
        assert!(s.parse(r#"{"reason":"r","verdict":2}"#).is_err());
        let yn = Shape::Single {
            set: VerdictSet::YesNo,
        };
        assert!(yn.parse(r#"{"reason":"r","verdict":"idk"}"#).is_err());
    }

    #[test]
    fn strings_classifications_and_questions_parse() {
        let s = Shape::Strings { key: "claims" };
        assert_eq!(
            s.parse(r#"{"claims":["a \"b\"","c"]}"#).unwrap(),
            Parsed::Strings(vec!["a \"b\"".into(), "c".into()])
        );
        assert_eq!(
            s.parse(r#"{"claims":[]}"#).unwrap(),
            Parsed::Strings(vec![])
        );
        assert!(s.parse("not json").is_err());
        let c = Shape::Classified {
            key: "classifications",
            set: VerdictSet::Binary,
        };
        assert_eq!(
            c.parse(r#"{"classifications":[{"statement":"x","reason":"","verdict":0}]}"#)
                .unwrap(),
            Parsed::Classified(vec![("x".into(), Verdict::No)])
        );
        // a reference answer always has a statement: the grammar and the reader refuse []
        assert!(c.parse(r#"{"classifications":[]}"#).is_err());
        assert!(c
            .grammar()
            .starts_with(r#"root ::= "{\"classifications\":[" item ("," item){0,"#));
        assert_eq!(
            Shape::Question
                .parse(r#"{"question":"Why?","noncommittal":1}"#)
                .unwrap(),
            Parsed::Question {
                question: "Why?".into(),
                noncommittal: true
            }
        );
    }

    #[test]
    fn grammars_bound_their_output() {
        for s in [
            Shape::Strings { key: "statements" },
            Shape::Verdicts {
                key: "verdicts",
                n: 3,
                set: VerdictSet::Binary,
            },
            Shape::Classified {
                key: "verdicts",
                set: VerdictSet::YesNo,
            },
            Shape::Single {
                set: VerdictSet::YesNoIdk,
            },
            Shape::Question,
        ] {
            let g = s.grammar();
            assert!(g.starts_with("root ::= "), "{g}");
            // Every list and string is bounded: no unbounded `*` or `+` repetition.
            assert!(
                !g.contains(")*") && !g.contains(")+") && !g.contains("char*"),
                "{g}"
            );
            assert!(s.max_chars() > 0);
        }
    }
}
