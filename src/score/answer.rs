//! Answer-quality metrics: lexical comparison of a generated answer with the expected answer and
//! the short (minimal) answer of a question. Every metric is a pure function of strings, returns
//! an `f64` in `[0, 1]` and never panics (empty strings, punctuation only, non-ASCII and very long
//! texts are all fine; METEOR needs the WordNet database, see below). Each one reproduces a Python
//! reference implementation: the golden fixture
//! `tests/fixtures/answer/answer_cases.json` (real model answers of
//! `store/gemma_vs_tinyllama.sqlite` plus hand-written edge cases, written by
//! `tests/fixtures/answer/make_fixture.py`) pins them to 1e-9 (the values were identical `f64`s
//! when compared exactly; the test allows for serde_json's float parsing, which may be 1 ulp
//! off).
//!
//! | metric | function | reference |
//! |---|---|---|
//! | SQuAD normalization | [`squad_normalize`] | SQuAD v2.0 `evaluate-v2.0.py`, `normalize_answer` |
//! | exact match | [`exact_match`] | SQuAD v2.0 `compute_exact` |
//! | token F1 | [`token_f1`] | SQuAD v2.0 `compute_f1` |
//! | contains | [`contains`] | defined here, on SQuAD-normalized tokens (`contains_ref` in the fixture script) |
//! | ROUGE-L F1 | [`rouge_l_f1`] | `rouge-score` 0.1.2: `RougeScorer(["rougeL"], use_stemmer=False)`, `.fmeasure` |
//! | METEOR | [`meteor`] | nltk 3.10.4 `single_meteor_score` with WordNet 3.0 (below) |
//!
//! [`answer_metrics`] bundles them per answer; [`AnswerMetrics::pairs`] gives the
//! `(name, value)` rows stored per answer.
//!
//! ## METEOR and WordNet
//!
//! [`meteor`] is nltk's default `single_meteor_score`, all three alignment stages included:
//!
//! 1. exact match of the lowercased tokens;
//! 2. match of the Porter stems ([`crate::score::porter`], nltk's `PorterStemmer` in mode
//!    `NLTK_EXTENSIONS`) of the tokens left over;
//! 3. WordNet synonym match of what is left: a leftover hypothesis word matches a leftover
//!    reference word when the reference word is in the hypothesis word's synonym set
//!    ([`WordNet::meteor_synonyms`]: the lemma names without `_` of all WordNet 3.0 synsets of
//!    the word, found through nltk's morphy lemmatisation over nouns, verbs, adjectives and
//!    adverbs, plus the word itself).
//!
//! As in nltk, stage 3 sees the *Porter stems* left over by stage 2, not the surface words:
//! `quick`/`fast` and `car`/`auto` match (stems equal the words), `ran`/`runs` match (`ran` is a
//! WordNet exception form of `run`), but `car`/`automobile` do not (the stem `automobil` has no
//! synsets). Lemma names keep their case, so a capitalised lemma (`Ford`) never matches the
//! lowercased words. Multiword lemmas (`cable_car`) never match.
//!
//! The WordNet database is Debian's `wordnet-base` (WordNet 3.0, the version nltk's `wordnet`
//! corpus is), read by [`crate::score::wordnet`] from `/usr/share/wordnet` or
//! `$ORCHESTRATE_WORDNET`, once per process. **Without it METEOR is not computed**: [`meteor`]
//! returns `None`, [`answer_metrics`] leaves `meteor` out of the stored metrics, and one warning
//! per process names the missing directory and the fix (`apt-get install wordnet-base`). No
//! METEOR with other semantics (e.g. without synonyms) is ever stored under that name.
//!
//! Until this change the stored `meteor` was exact + stem matching only; values stored by older
//! versions are lower or equal (stage 3 only adds matches, and 26 of the fixture's 380 earlier
//! cases changed, 25 of them real answers) and should be recomputed (`orchestrate rescore` recomputes stored
//! answers) before being compared with new ones.
//!
//! ## Python string semantics reproduced
//!
//! * `str.lower()`: Rust's [`str::to_lowercase`] (full Unicode mapping, final sigma); the two can
//!   differ only for characters added to Unicode after Python's tables (Python 3.11: Unicode 14).
//! * `str.split()`: splits on every character for which Python's `str.isspace()` is true
//!   ([`crate::split::is_py_space`]), which includes U+001C..U+001F (not whitespace for Rust) and U+0085.
//! * `string.punctuation`: the 32 ASCII punctuation characters ([`char::is_ascii_punctuation`]).
//! * `re`'s Unicode `\b`: word characters are Python's `str.isalnum()` characters and `_`
//!   ([`is_py_word_char`]): [`char::is_alphanumeric`] minus the combining marks and symbols that
//!   Unicode calls `Other_Alphabetic` (Python counts only letters and numbers).

use std::collections::HashMap;

use crate::score::porter;
use crate::score::wordnet::{self, WordNet};
use crate::split::py_split;

/// A word character of Python's Unicode `re` (`\w`, and so `\b`): `str.isalnum()` or `_`.
///
/// Python's `isalnum` is "letter (category L*) or numeric"; Rust's [`char::is_alphanumeric`] adds
/// the `Other_Alphabetic` marks and symbols (Indic vowel signs, circled letters, …), which are
/// taken out here with a small table (mostly `Mn`/`Mc`; see [`OTHER_ALPHABETIC_NOT_ALNUM`]).
pub fn is_py_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    c.is_alphanumeric() && !in_ranges(c, OTHER_ALPHABETIC_NOT_ALNUM)
}

fn in_ranges(c: char, ranges: &[(u32, u32)]) -> bool {
    let c = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Inclusive, sorted code-point ranges where Rust's `char::is_alphanumeric` is true but Python
/// 3.11's `str.isalnum()` is false: the `Other_Alphabetic` characters of general category `Mn`,
/// `Mc` or `So` (e.g. U+0345, Indic vowel signs, circled letters U+24B6..U+24E9). Generated from
/// Python 3.11's `unicodedata` (Unicode 14); characters assigned later follow Rust.
#[rustfmt::skip]
pub const OTHER_ALPHABETIC_NOT_ALNUM: &[(u32, u32)] = &[
    (0x345, 0x345), (0x363, 0x36F), (0x5B0, 0x5BD), (0x5BF, 0x5BF), (0x5C1, 0x5C2), (0x5C4, 0x5C5),
    (0x5C7, 0x5C7), (0x610, 0x61A), (0x64B, 0x657), (0x659, 0x65F), (0x670, 0x670), (0x6D6, 0x6DC),
    (0x6E1, 0x6E4), (0x6E7, 0x6E8), (0x6ED, 0x6ED), (0x711, 0x711), (0x730, 0x73F), (0x7A6, 0x7B0),
    (0x816, 0x817), (0x81B, 0x823), (0x825, 0x827), (0x829, 0x82C), (0x8D4, 0x8DF), (0x8E3, 0x8E9),
    (0x8F0, 0x903), (0x93A, 0x93B), (0x93E, 0x94C), (0x94E, 0x94F), (0x955, 0x957), (0x962, 0x963),
    (0x981, 0x983), (0x9BE, 0x9C4), (0x9C7, 0x9C8), (0x9CB, 0x9CC), (0x9D7, 0x9D7), (0x9E2, 0x9E3),
    (0xA01, 0xA03), (0xA3E, 0xA42), (0xA47, 0xA48), (0xA4B, 0xA4C), (0xA51, 0xA51), (0xA70, 0xA71),
    (0xA75, 0xA75), (0xA81, 0xA83), (0xABE, 0xAC5), (0xAC7, 0xAC9), (0xACB, 0xACC), (0xAE2, 0xAE3),
    (0xAFA, 0xAFC), (0xB01, 0xB03), (0xB3E, 0xB44), (0xB47, 0xB48), (0xB4B, 0xB4C), (0xB56, 0xB57),
    (0xB62, 0xB63), (0xB82, 0xB82), (0xBBE, 0xBC2), (0xBC6, 0xBC8), (0xBCA, 0xBCC), (0xBD7, 0xBD7),
    (0xC00, 0xC04), (0xC3E, 0xC44), (0xC46, 0xC48), (0xC4A, 0xC4C), (0xC55, 0xC56), (0xC62, 0xC63),
    (0xC81, 0xC83), (0xCBE, 0xCC4), (0xCC6, 0xCC8), (0xCCA, 0xCCC), (0xCD5, 0xCD6), (0xCE2, 0xCE3),
    (0xD00, 0xD03), (0xD3E, 0xD44), (0xD46, 0xD48), (0xD4A, 0xD4C), (0xD57, 0xD57), (0xD62, 0xD63),
    (0xD81, 0xD83), (0xDCF, 0xDD4), (0xDD6, 0xDD6), (0xDD8, 0xDDF), (0xDF2, 0xDF3), (0xE31, 0xE31),
    (0xE34, 0xE3A), (0xE4D, 0xE4D), (0xEB1, 0xEB1), (0xEB4, 0xEB9), (0xEBB, 0xEBC), (0xECD, 0xECD),
    (0xF71, 0xF83), (0xF8D, 0xF97), (0xF99, 0xFBC), (0x102B, 0x1036), (0x1038, 0x1038),
    (0x103B, 0x103E), (0x1056, 0x1059), (0x105E, 0x1060), (0x1062, 0x1064), (0x1067, 0x106D),
    (0x1071, 0x1074), (0x1082, 0x108D), (0x108F, 0x108F), (0x109A, 0x109D), (0x1712, 0x1713),
    (0x1732, 0x1733), (0x1752, 0x1753), (0x1772, 0x1773), (0x17B6, 0x17C8), (0x1885, 0x1886),
    (0x18A9, 0x18A9), (0x1920, 0x192B), (0x1930, 0x1938), (0x1A17, 0x1A1B), (0x1A55, 0x1A5E),
    (0x1A61, 0x1A74), (0x1ABF, 0x1AC0), (0x1ACC, 0x1ACE), (0x1B00, 0x1B04), (0x1B35, 0x1B43),
    (0x1B80, 0x1B82), (0x1BA1, 0x1BA9), (0x1BAC, 0x1BAD), (0x1BE7, 0x1BF1), (0x1C24, 0x1C36),
    (0x1DD3, 0x1DF4), (0x24B6, 0x24E9), (0x2DE0, 0x2DFF), (0xA674, 0xA67B), (0xA69E, 0xA69F),
    (0xA802, 0xA802), (0xA80B, 0xA80B), (0xA823, 0xA827), (0xA880, 0xA881), (0xA8B4, 0xA8C3),
    (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA926, 0xA92A), (0xA947, 0xA952), (0xA980, 0xA983),
    (0xA9B4, 0xA9BF), (0xA9E5, 0xA9E5), (0xAA29, 0xAA36), (0xAA43, 0xAA43), (0xAA4C, 0xAA4D),
    (0xAA7B, 0xAA7D), (0xAAB0, 0xAAB0), (0xAAB2, 0xAAB4), (0xAAB7, 0xAAB8), (0xAABE, 0xAABE),
    (0xAAEB, 0xAAEF), (0xAAF5, 0xAAF5), (0xABE3, 0xABEA), (0xFB1E, 0xFB1E), (0x10376, 0x1037A),
    (0x10A01, 0x10A03), (0x10A05, 0x10A06), (0x10A0C, 0x10A0F), (0x10D24, 0x10D27),
    (0x10EAB, 0x10EAC), (0x11000, 0x11002), (0x11038, 0x11045), (0x11073, 0x11074),
    (0x11080, 0x11082), (0x110B0, 0x110B8), (0x110C2, 0x110C2), (0x11100, 0x11102),
    (0x11127, 0x11132), (0x11145, 0x11146), (0x11180, 0x11182), (0x111B3, 0x111BF),
    (0x111CE, 0x111CF), (0x1122C, 0x11234), (0x11237, 0x11237), (0x1123E, 0x1123E),
    (0x112DF, 0x112E8), (0x11300, 0x11303), (0x1133E, 0x11344), (0x11347, 0x11348),
    (0x1134B, 0x1134C), (0x11357, 0x11357), (0x11362, 0x11363), (0x11435, 0x11441),
    (0x11443, 0x11445), (0x114B0, 0x114C1), (0x115AF, 0x115B5), (0x115B8, 0x115BE),
    (0x115DC, 0x115DD), (0x11630, 0x1163E), (0x11640, 0x11640), (0x116AB, 0x116B5),
    (0x1171D, 0x1172A), (0x1182C, 0x11838), (0x11930, 0x11935), (0x11937, 0x11938),
    (0x1193B, 0x1193C), (0x11940, 0x11940), (0x11942, 0x11942), (0x119D1, 0x119D7),
    (0x119DA, 0x119DF), (0x119E4, 0x119E4), (0x11A01, 0x11A0A), (0x11A35, 0x11A39),
    (0x11A3B, 0x11A3E), (0x11A51, 0x11A5B), (0x11A8A, 0x11A97), (0x11C2F, 0x11C36),
    (0x11C38, 0x11C3E), (0x11C92, 0x11CA7), (0x11CA9, 0x11CB6), (0x11D31, 0x11D36),
    (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D), (0x11D3F, 0x11D41), (0x11D43, 0x11D43),
    (0x11D47, 0x11D47), (0x11D8A, 0x11D8E), (0x11D90, 0x11D91), (0x11D93, 0x11D96),
    (0x11EF3, 0x11EF6), (0x16F4F, 0x16F4F), (0x16F51, 0x16F87), (0x16F8F, 0x16F92),
    (0x16FF0, 0x16FF1), (0x1BC9E, 0x1BC9E), (0x1E000, 0x1E006), (0x1E008, 0x1E018),
    (0x1E01B, 0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E947, 0x1E947),
    (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189),
];

/// SQuAD v2.0 `normalize_answer`: lowercase, delete the ASCII punctuation of Python's
/// `string.punctuation`, replace the whole words `a`, `an`, `the` (regex `\b(a|an|the)\b`, Unicode
/// word boundaries) by a space, and collapse whitespace runs ([`crate::split::is_py_space`]) to single spaces
/// with no leading or trailing space. Articles are matched after lowercasing and punctuation
/// removal, so `"The"` and `"(a)"` go but `"théa"` or `"a_b"` (→ `"ab"`) stay.
pub fn squad_normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // `\b(a|an|the)\b` matches exactly the maximal runs of word characters equal to an article.
    let mut no_articles = String::with_capacity(no_punc.len());
    let mut rest = no_punc.as_str();
    while !rest.is_empty() {
        let word_len = rest
            .find(|c: char| !is_py_word_char(c))
            .unwrap_or(rest.len());
        if word_len > 0 {
            let word = &rest[..word_len];
            no_articles.push_str(if matches!(word, "a" | "an" | "the") {
                " "
            } else {
                word
            });
            rest = &rest[word_len..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            no_articles.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut out = String::with_capacity(no_articles.len());
    for tok in py_split(&no_articles) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(tok);
    }
    out
}

/// SQuAD v2.0 `get_tokens`: the tokens of [`squad_normalize`]`(s)`.
pub fn squad_tokens(s: &str) -> Vec<String> {
    squad_normalize(s)
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// SQuAD v2.0 `compute_exact(gold, prediction)`: `1.0` if both normalize ([`squad_normalize`]) to
/// the same string, else `0.0`. Two strings that normalize to `""` match.
pub fn exact_match(prediction: &str, gold: &str) -> f64 {
    if squad_normalize(prediction) == squad_normalize(gold) {
        1.0
    } else {
        0.0
    }
}

/// SQuAD v2.0 `compute_f1(gold, prediction)`: harmonic mean of token precision and recall over the
/// multiset of [`squad_tokens`] (`2PR / (P + R)`, `P = common / |pred|`, `R = common / |gold|`), in
/// `[0, 1]`. If either side has no token the score is `1.0` when both have none and `0.0`
/// otherwise; no common token gives `0.0`.
pub fn token_f1(prediction: &str, gold: &str) -> f64 {
    let gold_toks = squad_tokens(gold);
    let pred_toks = squad_tokens(prediction);
    if gold_toks.is_empty() || pred_toks.is_empty() {
        return if gold_toks == pred_toks { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold_toks {
        *counts.entry(t).or_insert(0) += 1;
    }
    let mut num_same = 0usize;
    for t in &pred_toks {
        if let Some(n) = counts.get_mut(t.as_str()) {
            if *n > 0 {
                *n -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = 1.0 * num_same as f64 / pred_toks.len() as f64;
    let recall = 1.0 * num_same as f64 / gold_toks.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// `1.0` if the [`squad_tokens`] of `short_answer` occur as a contiguous run in the
/// [`squad_tokens`] of `prediction`, else `0.0` (whole tokens: `"back"` is not in `"backup"`).
/// A short answer with no token (empty, punctuation or articles only) gives `0.0`: it carries no
/// information to look for. Reference: `contains_ref` in `make_fixture.py`.
pub fn contains(prediction: &str, short_answer: &str) -> f64 {
    let needle = squad_tokens(short_answer);
    if needle.is_empty() {
        return 0.0;
    }
    let hay = squad_tokens(prediction);
    if hay.windows(needle.len()).any(|w| w == needle.as_slice()) {
        1.0
    } else {
        0.0
    }
}

/// The `rouge-score` default tokenizer without stemming: lowercase (Unicode), then the maximal
/// runs of ASCII `[a-z0-9]` are the tokens (everything else separates; `é`, CJK are dropped).
pub fn rouge_tokens(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Length of the longest common subsequence of two token slices (O(|a|·|b|) time, O(|b|) memory).
fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure of `prediction` against `reference`, as
/// `rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(target=reference,
/// prediction=prediction)["rougeL"].fmeasure` (rouge-score 0.1.2): tokens by [`rouge_tokens`],
/// `P = LCS / |pred|`, `R = LCS / |ref|`, `F = 2PR / (P + R)`; `0.0` when either side has no
/// token or nothing is in common. Cost is O(|pred|·|ref|) tokens.
pub fn rouge_l_f1(prediction: &str, reference: &str) -> f64 {
    let target = rouge_tokens(reference);
    let pred = rouge_tokens(prediction);
    if target.is_empty() || pred.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&target, &pred) as f64;
    let precision = lcs / pred.len() as f64;
    let recall = lcs / target.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// nltk `_match_enums`: walking the hypothesis from its end, each word takes the last unmatched
/// reference position holding the same string. Returns the (hyp, ref) original-index pairs and
/// the unmatched hypothesis and reference entries (in order).
#[allow(clippy::type_complexity)]
fn match_enums(
    hyp: Vec<(usize, String)>,
    refs: Vec<(usize, String)>,
) -> (
    Vec<(usize, usize)>,
    Vec<(usize, String)>,
    Vec<(usize, String)>,
) {
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, (_, w)) in refs.iter().enumerate() {
        positions.entry(w.as_str()).or_default().push(j);
    }
    let mut hyp_matched = vec![false; hyp.len()];
    let mut ref_matched = vec![false; refs.len()];
    let mut pairs = Vec::new();
    for i in (0..hyp.len()).rev() {
        if let Some(j) = positions.get_mut(hyp[i].1.as_str()).and_then(Vec::pop) {
            hyp_matched[i] = true;
            ref_matched[j] = true;
            pairs.push((hyp[i].0, refs[j].0));
        }
    }
    drop(positions);
    let hyp_rest = hyp
        .into_iter()
        .zip(hyp_matched)
        .filter(|(_, m)| !m)
        .map(|(e, _)| e)
        .collect();
    let ref_rest = refs
        .into_iter()
        .zip(ref_matched)
        .filter(|(_, m)| !m)
        .map(|(e, _)| e)
        .collect();
    (pairs, hyp_rest, ref_rest)
}

/// nltk `_enum_wordnetsyn_match` on the leftovers of the stem stage: walking the hypothesis from
/// its end, each word takes the highest still-free reference position whose word is in its
/// [`WordNet::meteor_synonyms`] set. Returns the (hyp, ref) original-index pairs.
fn wordnet_matches(
    hyp: &[(usize, String)],
    refs: &[(usize, String)],
    wn: &WordNet,
) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    if refs.is_empty() {
        return pairs; // nothing to match: skip the WordNet lookups
    }
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, (_, w)) in refs.iter().enumerate() {
        positions.entry(w.as_str()).or_default().push(j);
    }
    for (i, w) in hyp.iter().rev() {
        let synonyms = wn.meteor_synonyms(w);
        let best = synonyms
            .iter()
            .filter_map(|s| positions.get(s).and_then(|p| p.last()).map(|&j| (j, *s)))
            .max_by_key(|&(j, _)| j);
        if let Some((j, word)) = best {
            if let Some(p) = positions.get_mut(word) {
                p.pop();
            }
            pairs.push((*i, refs[j].0));
        }
    }
    pairs
}

/// METEOR of `prediction` against `reference`, as nltk 3.10.4
/// `single_meteor_score(reference.split(), prediction.split())` with all its defaults
/// (`alpha = 0.9`, `beta = 3`, `gamma = 0.5`, `preprocess = str.lower`, nltk's `PorterStemmer`,
/// `wordnet` = WordNet 3.0), using the process-wide database of [`wordnet::global`].
///
/// `None` when WordNet is not available (see the module doc): METEOR is then not computed at
/// all. Otherwise `Some(`[`meteor_with`]`(prediction, reference, wordnet))`.
pub fn meteor(prediction: &str, reference: &str) -> Option<f64> {
    wordnet::global().map(|wn| meteor_with(prediction, reference, wn))
}

/// METEOR of `prediction` against `reference` with the WordNet database `wn`: nltk 3.10.4
/// `single_meteor_score(reference.split(), prediction.split())` with the defaults `alpha = 0.9`,
/// `beta = 3`, `gamma = 0.5`, `preprocess = str.lower` and nltk's `PorterStemmer`.
///
/// Tokens are the [`py_split`] pieces, lowercased (punctuation stays attached: `"backup,"`).
/// Alignment: exact matches, then matches of the Porter stems ([`porter::stem`]) of the words left
/// over, then WordNet synonym matches of the stems left over (see the module doc); the first two
/// stages pair hypothesis words from the end with the last free equal reference word, the third
/// with the last free reference word in the word's synonym set. With `m` matches,
/// `P = m / |hyp|`, `R = m / |ref|`, `Fmean = PR / (alpha P + (1 - alpha) R)`, `chunks` = runs of
/// matches adjacent in both sentences, `penalty = gamma (chunks / m)^beta`, score
/// `= (1 - penalty) Fmean`, in `[0, 1)`. `0.0` when there is no match (including an empty side).
pub fn meteor_with(prediction: &str, reference: &str, wn: &WordNet) -> f64 {
    const ALPHA: f64 = 0.9;
    const BETA: f64 = 3.0;
    const GAMMA: f64 = 0.5;
    let hyp: Vec<(usize, String)> = py_split(prediction)
        .map(str::to_lowercase)
        .enumerate()
        .collect();
    let refs: Vec<(usize, String)> = py_split(reference)
        .map(str::to_lowercase)
        .enumerate()
        .collect();
    let (translation_length, reference_length) = (hyp.len(), refs.len());
    let (mut matches, hyp, refs) = match_enums(hyp, refs);
    let stem_all = |v: Vec<(usize, String)>| -> Vec<(usize, String)> {
        v.into_iter().map(|(i, w)| (i, porter::stem(&w))).collect()
    };
    let (stem_matches, hyp, refs) = match_enums(stem_all(hyp), stem_all(refs));
    matches.extend(stem_matches);
    // nltk hands the stage-2 leftovers, i.e. the Porter stems, to the WordNet stage.
    matches.extend(wordnet_matches(&hyp, &refs, wn));
    matches.sort_by_key(|&(h, _)| h);
    let m = matches.len();
    if m == 0 || translation_length == 0 || reference_length == 0 {
        return 0.0;
    }
    let precision = m as f64 / translation_length as f64;
    let recall = m as f64 / reference_length as f64;
    let fmean = (precision * recall) / (ALPHA * precision + (1.0 - ALPHA) * recall);
    let chunks = 1 + matches
        .windows(2)
        .filter(|w| !(w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1))
        .count();
    let frag_frac = chunks as f64 / m as f64;
    let penalty = GAMMA * frag_frac.powf(BETA);
    (1.0 - penalty) * fmean
}

/// Answer-quality metrics of one generated answer; every value is in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnswerMetrics {
    /// SQuAD exact match (0 or 1), best over the gold answers (expected and short answer).
    pub em: f64,
    /// SQuAD token F1, best over the gold answers (expected and short answer).
    pub f1: f64,
    /// [`contains`] of the short answer in the prediction (0 or 1); `None` without a short answer.
    pub contains: Option<f64>,
    /// ROUGE-L F-measure against the expected answer ([`rouge_l_f1`]).
    pub rouge_l: f64,
    /// METEOR (exact, stem and WordNet synonym matching) against the expected answer
    /// ([`meteor_with`]); `None` when WordNet is not available (see the module doc).
    pub meteor: Option<f64>,
}

impl AnswerMetrics {
    /// `(name, value)` rows for storage, in the order `em`, `f1`, `contains`, `rouge_l`,
    /// `meteor` (`contains` and `meteor` left out when `None`).
    pub fn pairs(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![("em", self.em), ("f1", self.f1)];
        if let Some(c) = self.contains {
            out.push(("contains", c));
        }
        out.push(("rouge_l", self.rouge_l));
        if let Some(m) = self.meteor {
            out.push(("meteor", m));
        }
        out
    }
}

/// All metrics of `prediction` for a question with `expected_answer` and optional
/// `short_answer`, with METEOR from the process-wide WordNet ([`wordnet::global`]; `meteor` is
/// `None` without it): [`answer_metrics_with`]`(…, wordnet::global())`.
pub fn answer_metrics(
    prediction: &str,
    expected_answer: &str,
    short_answer: Option<&str>,
) -> AnswerMetrics {
    answer_metrics_with(prediction, expected_answer, short_answer, wordnet::global())
}

/// All metrics of `prediction` for a question with `expected_answer` and optional
/// `short_answer`, with the WordNet database `wordnet` for METEOR.
///
/// `em` and `f1` are the maximum over the gold answers `[expected_answer, short_answer]` as in the
/// SQuAD v2.0 script (`get_raw_scores`: golds that normalize to `""` are dropped unless all do,
/// then `[""]` is the only gold); `contains` is [`contains`]`(prediction, short)` when a short
/// answer is given, else `None`; `rouge_l` and `meteor` compare with `expected_answer`; `meteor`
/// is `None` when `wordnet` is `None`.
pub fn answer_metrics_with(
    prediction: &str,
    expected_answer: &str,
    short_answer: Option<&str>,
    wordnet: Option<&WordNet>,
) -> AnswerMetrics {
    let mut golds: Vec<&str> = std::iter::once(expected_answer)
        .chain(short_answer)
        .filter(|g| !squad_normalize(g).is_empty())
        .collect();
    if golds.is_empty() {
        golds.push("");
    }
    let best = |f: fn(&str, &str) -> f64| {
        golds
            .iter()
            .map(|g| f(prediction, g))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    AnswerMetrics {
        em: best(exact_match),
        f1: best(token_f1),
        contains: short_answer.map(|s| contains(prediction, s)),
        rouge_l: rouge_l_f1(prediction, expected_answer),
        meteor: wordnet.map(|wn| meteor_with(prediction, expected_answer, wn)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        source: String,
        prediction: String,
        expected: String,
        short: Option<String>,
        norm_prediction: String,
        em_expected: f64,
        f1_expected: f64,
        em_short: Option<f64>,
        f1_short: Option<f64>,
        em: f64,
        f1: f64,
        contains: Option<f64>,
        rouge_l: f64,
        meteor: f64,
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    const TOL: f64 = 1e-9;

    fn fixture() -> Vec<Case> {
        let fx: Fixture = serde_json::from_str(include_str!(
            "../../tests/fixtures/answer/answer_cases.json"
        ))
        .expect("answer fixture parses");
        fx.cases
    }

    /// Every metric of every fixture case equals the Python reference: EM/contains exactly,
    /// F1/ROUGE-L/METEOR to 1e-9; the normalized prediction string exactly. METEOR needs WordNet
    /// ([`wordnet::for_tests`]: a clear failure without it, unless
    /// `ORCHESTRATE_ALLOW_MISSING_MODELS=1`, which skips only the METEOR checks).
    #[test]
    fn matches_python_reference() {
        let wn = wordnet::for_tests();
        let cases = fixture();
        assert!(
            cases
                .iter()
                .filter(|c| c.source.starts_with("real:"))
                .count()
                >= 300
        );
        assert!(
            cases
                .iter()
                .filter(|c| c.source.starts_with("edge:"))
                .count()
                >= 60
        );
        let mut bad = Vec::new();
        let mut max_err = 0.0f64;
        let mut check = |c: &Case, what: &str, got: f64, want: f64, exact: bool| {
            let err = (got - want).abs();
            max_err = max_err.max(err);
            if (exact && got != want) || err > TOL || err.is_nan() {
                bad.push(format!(
                    "{} {what}: got {got}, want {want} ({:?})",
                    c.source, c.prediction
                ));
            }
        };
        for c in &cases {
            check(
                c,
                "em_expected",
                exact_match(&c.prediction, &c.expected),
                c.em_expected,
                true,
            );
            check(
                c,
                "f1_expected",
                token_f1(&c.prediction, &c.expected),
                c.f1_expected,
                false,
            );
            if let Some(s) = &c.short {
                check(
                    c,
                    "em_short",
                    exact_match(&c.prediction, s),
                    c.em_short.unwrap(),
                    true,
                );
                check(
                    c,
                    "f1_short",
                    token_f1(&c.prediction, s),
                    c.f1_short.unwrap(),
                    false,
                );
                check(
                    c,
                    "contains",
                    contains(&c.prediction, s),
                    c.contains.unwrap(),
                    true,
                );
            }
            check(
                c,
                "rouge_l",
                rouge_l_f1(&c.prediction, &c.expected),
                c.rouge_l,
                false,
            );
            let m = answer_metrics_with(&c.prediction, &c.expected, c.short.as_deref(), wn);
            if let Some(wn) = wn {
                check(
                    c,
                    "meteor",
                    meteor_with(&c.prediction, &c.expected, wn),
                    c.meteor,
                    false,
                );
                check(c, "meteor(all)", m.meteor.unwrap(), c.meteor, false);
            }
            check(c, "em", m.em, c.em, true);
            check(c, "f1", m.f1, c.f1, false);
            check(c, "rouge_l(all)", m.rouge_l, c.rouge_l, false);
            assert_eq!(m.contains, c.contains, "{} contains(all)", c.source);
            assert_eq!(
                squad_normalize(&c.prediction),
                c.norm_prediction,
                "{} normalize",
                c.source
            );
        }
        assert!(
            bad.is_empty(),
            "{} mismatches:\n{}",
            bad.len(),
            bad.join("\n")
        );
        eprintln!("{} cases, max abs error {max_err:e}", cases.len());
    }

    #[test]
    fn squad_normalization_by_hand() {
        // lower → "the cat's (an) apple!" → drop punctuation → "the cats an apple" → articles
        // "the", "an" become spaces → collapse.
        assert_eq!(squad_normalize("The cat's (an) apple!"), "cats apple");
        // "_" is punctuation, so "a_b" → "ab"; "théa" is one word; U+001F separates like space.
        assert_eq!(squad_normalize("a_b théa\u{1f}x"), "ab théa x");
        assert_eq!(squad_normalize(" ...!? "), "");
        assert_eq!(exact_match("The  Director.", "director"), 1.0);
        assert_eq!(exact_match("", "the"), 1.0); // both normalize to ""
    }

    #[test]
    fn token_f1_by_hand() {
        // pred tokens [director, schedules, jobs], gold [director, runs, jobs, daily]:
        // common = 2, P = 2/3, R = 2/4, F1 = 2·(2/3)(1/2)/((2/3)+(1/2)) = (2/3)/(7/6) = 4/7.
        let f = token_f1("The Director schedules jobs", "director runs jobs daily");
        assert!((f - 4.0 / 7.0).abs() < 1e-12);
        // Repeated tokens count as a multiset: pred [cat, cat, cat], gold [cat]: common 1,
        // P = 1/3, R = 1 → F1 = 2·(1/3)/(4/3) = 1/2.
        assert!((token_f1("cat cat cat", "cat") - 0.5).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("the", "cat"), 0.0);
        assert_eq!(token_f1("dog", "cat"), 0.0);
    }

    #[test]
    fn contains_by_hand() {
        assert_eq!(
            contains("It uses the Affero GPL, version 3.", "Affero GPL Version 3"),
            1.0
        );
        assert_eq!(
            contains("GPL Affero version 3", "Affero GPL Version 3"),
            0.0
        );
        assert_eq!(contains("a full backup", "back"), 0.0); // whole tokens only
        assert_eq!(contains("anything", ""), 0.0);
        assert_eq!(contains("anything", "the"), 0.0); // no token after normalization
    }

    #[test]
    fn rouge_l_by_hand() {
        // ref tokens [the, cat, sat, on, the, mat] (6), pred [the, cat, on, a, mat] (5):
        // LCS = the cat on mat = 4; P = 4/5, R = 4/6; F = 2·0.8·(2/3)/(0.8+2/3) = (16/15)/(22/15)
        // = 8/11.
        let f = rouge_l_f1("The cat on a mat.", "the cat sat on the mat");
        assert!((f - 8.0 / 11.0).abs() < 1e-12);
        // Non-ASCII letters split tokens: "café" → ["caf"]; nothing left of CJK.
        assert_eq!(rouge_tokens("Café 東京 x86_64"), ["caf", "x86", "64"]);
        assert_eq!(rouge_l_f1("東京", "東京"), 0.0);
    }

    #[test]
    fn meteor_by_hand() {
        let Some(wn) = wordnet::for_tests() else {
            return;
        };
        let meteor = |p: &str, r: &str| meteor_with(p, r, wn);
        // hyp [the, cat, sat], ref [the, cat, sat]: m = 3, P = R = 1, Fmean = 1, one chunk,
        // penalty = 0.5·(1/3)^3 = 1/54 → 53/54.
        assert!((meteor("The cat sat", "the cat sat") - 53.0 / 54.0).abs() < 1e-12);
        // hyp [cats, running], ref [running, cat]: exact "running"; stems cat = cat → m = 2,
        // matches sorted by hyp (0,1), (1,0): not adjacent → 2 chunks; P = R = 1, Fmean = 1,
        // penalty = 0.5·(2/2)^3 = 0.5 → 0.5.
        assert!((meteor("cats running", "running cat") - 0.5).abs() < 1e-12);
        // hyp [a, b], ref [a, c, d]: m = 1, P = 1/2, R = 1/3, Fmean = (1/6)/(0.45 + 0.1/3)
        // = (1/6)/(0.48333…) = 0.344827…; penalty = 0.5·1 = 0.5 → 0.172413… = 5/29.
        assert!((meteor("a b", "a c d") - 5.0 / 29.0).abs() < 1e-12);
        assert_eq!(meteor("", "x"), 0.0);
        assert_eq!(meteor("x", ""), 0.0);
        assert_eq!(meteor("x", "y"), 0.0);
        // WordNet stage: hyp [a, quick, car], ref [a, fast, auto]: "a" exact; quick → fast and
        // car → auto are WordNet synonyms → m = 3 in one chunk → 53/54.
        assert!((meteor("a quick car", "a fast auto") - 53.0 / 54.0).abs() < 1e-12);
        // ... but it sees Porter stems: "automobile" → "automobil" has no synsets. hyp [car],
        // ref [automobile]: no match.
        assert_eq!(meteor("car", "automobile"), 0.0);
        // exception form: "ran" → run; hyp [ran], ref [runs] (stem "run"): m = 1 → 1 - 0.5 = 0.5.
        assert!((meteor("ran", "runs") - 0.5).abs() < 1e-12);
        // multiword lemmas never match: car's synonyms do not include cable_car
        assert_eq!(meteor("car", "cable_car"), 0.0);
    }

    /// Without WordNet, METEOR is not computed and not stored, whatever the other metrics.
    #[test]
    fn meteor_left_out_without_wordnet() {
        let m = answer_metrics_with("a quick car", "a fast auto", Some("fast auto"), None);
        assert_eq!(m.meteor, None);
        let keys: Vec<_> = m.pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["em", "f1", "contains", "rouge_l"]);
    }

    #[test]
    fn answer_metrics_and_pairs() {
        let Some(wn) = wordnet::for_tests() else {
            return;
        };
        let m = answer_metrics_with(
            "Bacula is licensed under the Affero GPL version 3.",
            "Bacula is free software available under the Affero GPL version 3 license.",
            Some("Affero GPL Version 3"),
            Some(wn),
        );
        assert_eq!(m.contains, Some(1.0));
        let keys: Vec<_> = m.pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["em", "f1", "contains", "rouge_l", "meteor"]);
        let m = answer_metrics_with("x", "y", None, Some(wn));
        let keys: Vec<_> = m.pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["em", "f1", "rouge_l", "meteor"]);
        // A short answer that normalizes to "" is not a gold: an empty prediction does not get
        // EM 1 from it (SQuAD v2.0 get_raw_scores).
        let m = answer_metrics("", "Bacula", Some("the"));
        assert_eq!((m.em, m.f1, m.contains), (0.0, 0.0, Some(0.0)));
        // All golds empty → [""] → an empty prediction matches.
        let m = answer_metrics("...", "", Some("a"));
        assert_eq!((m.em, m.f1), (1.0, 1.0));
    }

    #[test]
    fn word_char_table_is_sorted_and_disjoint() {
        for w in OTHER_ALPHABETIC_NOT_ALNUM.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
        assert!(!is_py_word_char('\u{903}')); // Devanagari visarga: Mc, Other_Alphabetic
        assert!(is_py_word_char('é') && is_py_word_char('東') && is_py_word_char('_'));
    }

    #[test]
    fn no_panic_on_odd_or_long_input() {
        let long = "word ".repeat(20_000) + "ﬁ ß 東京 \u{85}\u{1c} ";
        for (p, g) in [
            ("", ""),
            ("!!!", "¿?"),
            (long.as_str(), "word"),
            ("word", long.as_str()),
        ] {
            let m = answer_metrics(p, g, Some(g));
            for (_, v) in m.pairs() {
                assert!((0.0..=1.0).contains(&v));
            }
        }
    }
}
