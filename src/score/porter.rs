//! The Porter stemmer exactly as NLTK implements it: `nltk.stem.porter.PorterStemmer()` in its
//! default mode `NLTK_EXTENSIONS` (nltk/stem/porter.py, nltk 3.10.4), which is Porter's algorithm
//! (M. F. Porter, "An algorithm for suffix stripping", *Program* 14(3), 1980, pp. 130-137) plus
//! Martin Porter's later amendments and NLTK's own extensions: a table of irregular forms
//! (`skies` → `sky`, `dying` → `die`, …), `ies`/`ied` on four-letter words (`dies` → `die`),
//! `alli`/`fulli`/`logi` in step 2, a two-letter `*o` condition, and the `y` → `i` rule of step 1c
//! only after a consonant that is not the first letter.
//!
//! Used by METEOR's stem-matching stage ([`crate::score::answer::meteor`]). It is *not* Snowball's
//! "english" (Porter2) stemmer, which `rust-stemmers` implements: on the vocabulary in
//! `tests/fixtures/answer/porter_words.json` Porter2 differs from NLTK's Porter on 114 of 4440
//! words (`generously` → `gener` vs `generous`), and the original/Martin variants differ on
//! 139/112, so no crate that implements those can stand in. The `nltk-porter` crate (0.1.0), a
//! port of the same Python code, agreed on all fixture words except NLTK's literal-`*d` quirk
//! (`a*ded` → nltk `ad`, crate `a*d`), which this module reproduces.
//!
//! Like Python, the word is processed by Unicode scalar value (`char`): only `a e i o u` are
//! vowels, `y` is a vowel exactly when it follows a consonant, and every other character —
//! digits, punctuation, `é`, CJK — counts as a consonant. Tested against nltk on the word list
//! fixture (real vocabulary of the Bacula corpus plus tricky cases).

/// Stems one word like `nltk.stem.porter.PorterStemmer().stem(word)` (mode `NLTK_EXTENSIONS`,
/// `to_lowercase=True`).
///
/// The word is lowercased first (full Unicode lowercase, like Python's `str.lower`). Irregular
/// forms are looked up in NLTK's table; words of at most two characters (counted in `char`s of
/// the input, as Python's `len(word)`) are returned lowercased and unstemmed; everything else
/// runs through steps 1a-5b. Never panics; the cost is linear in the word length (a handful of
/// passes per step).
///
/// ```text
/// stem("Caresses")        == "caress"
/// stem("skies")           == "sky"     (irregular form)
/// stem("generalizations") == "gener"
/// ```
pub fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    if let Some(irregular) = irregular_form(&lower) {
        return irregular.to_string();
    }
    if word.chars().count() <= 2 {
        return lower;
    }
    let w: Vec<char> = lower.chars().collect();
    let w = step1a(&w);
    let w = step1b(&w);
    let w = step1c(&w);
    let w = step2(&w);
    let w = step3(&w);
    let w = step4(&w);
    let w = step5a(&w);
    let w = step5b(&w);
    w.into_iter().collect()
}

/// NLTK's `irregular_forms` table (mode `NLTK_EXTENSIONS`), inverted: form → stem.
fn irregular_form(word: &str) -> Option<&'static str> {
    Some(match word {
        "sky" | "skies" => "sky",
        "dying" => "die",
        "lying" => "lie",
        "tying" => "tie",
        "news" => "news",
        "innings" | "inning" => "inning",
        "outings" | "outing" => "outing",
        "cannings" | "canning" => "canning",
        "howe" => "howe",
        "proceed" => "proceed",
        "exceed" => "exceed",
        "succeed" => "succeed",
        _ => return None,
    })
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// `_is_consonant`: `y` is a consonant at the start or after a vowel, a vowel after a consonant.
fn is_consonant(w: &[char], i: usize) -> bool {
    let c = w[i];
    if is_vowel(c) {
        return false;
    }
    if c == 'y' {
        let (mut j, mut negate) = (i, false);
        while j > 0 && w[j] == 'y' {
            negate = !negate;
            j -= 1;
        }
        // consonant(w[j]) XOR negate, with consonant(w[j]) = !is_vowel(w[j]).
        return is_vowel(w[j]) == negate;
    }
    true
}

/// `_consonant_flags`: `is_consonant` for every position in one pass.
fn consonant_flags(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let f = if is_vowel(c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(f);
    }
    flags
}

/// `_measure`: Porter's m, the number of vowel-run → consonant-run transitions.
fn measure(w: &[char]) -> usize {
    let f = consonant_flags(w);
    f.windows(2).filter(|p| !p[0] && p[1]).count()
}

fn contains_vowel(w: &[char]) -> bool {
    consonant_flags(w).iter().any(|&c| !c)
}

fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// `_ends_cvc` (`*o`), with NLTK's two-letter extension (vowel + consonant).
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let n = suffix.chars().count();
    n <= w.len() && w[w.len() - n..].iter().copied().eq(suffix.chars())
}

fn concat(stem: &[char], replacement: &str) -> Vec<char> {
    let mut out = stem.to_vec();
    out.extend(replacement.chars());
    out
}

type Cond<'a> = Option<&'a dyn Fn(&[char]) -> bool>;

/// `_apply_rule_list`: the first rule whose suffix matches decides (its condition true →
/// replace, false → unchanged). The pseudo-suffix `*d` means "ends in a double consonant" and,
/// as in NLTK, also matches a literal `*d` ending.
fn apply_rules(w: &[char], rules: &[(&str, &str, Cond)]) -> Vec<char> {
    for &(suffix, replacement, cond) in rules {
        let ok = |stem: &[char]| cond.is_none_or(|c| c(stem));
        if suffix == "*d" && ends_double_consonant(w) {
            let stem = &w[..w.len() - 2];
            return if ok(stem) {
                concat(stem, replacement)
            } else {
                w.to_vec()
            };
        }
        if ends_with(w, suffix) {
            let stem = &w[..w.len() - suffix.chars().count()];
            return if ok(stem) {
                concat(stem, replacement)
            } else {
                w.to_vec()
            };
        }
    }
    w.to_vec()
}

fn positive_measure(stem: &[char]) -> bool {
    measure(stem) > 0
}

fn step1a(w: &[char]) -> Vec<char> {
    if ends_with(w, "ies") && w.len() == 4 {
        return concat(&w[..1], "ie");
    }
    apply_rules(
        w,
        &[
            ("sses", "ss", None),
            ("ies", "i", None),
            ("ss", "ss", None),
            ("s", "", None),
        ],
    )
}

fn step1b(w: &[char]) -> Vec<char> {
    if ends_with(w, "ied") {
        let stem = &w[..w.len() - 3];
        return concat(stem, if w.len() == 4 { "ie" } else { "i" });
    }
    if ends_with(w, "eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 {
            concat(stem, "ee")
        } else {
            w.to_vec()
        };
    }
    let mut intermediate = None;
    for suffix in ["ed", "ing"] {
        if ends_with(w, suffix) {
            let stem = &w[..w.len() - suffix.len()];
            if contains_vowel(stem) {
                intermediate = Some(stem);
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return w.to_vec();
    };
    // contains_vowel(stem) holds, so the stem is not empty.
    let last = stem[stem.len() - 1];
    let last_s = last.to_string();
    let not_lsz = move |_: &[char]| !matches!(last, 'l' | 's' | 'z');
    let short_cvc = |s: &[char]| measure(s) == 1 && ends_cvc(s);
    apply_rules(
        stem,
        &[
            ("at", "ate", None),
            ("bl", "ble", None),
            ("iz", "ize", None),
            ("*d", &last_s, Some(&not_lsz)),
            ("", "e", Some(&short_cvc)),
        ],
    )
}

fn step1c(w: &[char]) -> Vec<char> {
    let cond = |s: &[char]| s.len() > 1 && is_consonant(s, s.len() - 1);
    apply_rules(w, &[("y", "i", Some(&cond))])
}

fn step2(w: &[char]) -> Vec<char> {
    if ends_with(w, "alli") && positive_measure(&w[..w.len() - 4]) {
        return step2(&concat(&w[..w.len() - 4], "al"));
    }
    let pm: Cond = Some(&positive_measure);
    // 'logi' -> 'log' with the condition on the word minus 'ogi' (the 'l' stays in the stem).
    let logi = |_: &[char]| positive_measure(&w[..w.len().saturating_sub(3)]);
    apply_rules(
        w,
        &[
            ("ational", "ate", pm),
            ("tional", "tion", pm),
            ("enci", "ence", pm),
            ("anci", "ance", pm),
            ("izer", "ize", pm),
            ("bli", "ble", pm),
            ("alli", "al", pm),
            ("entli", "ent", pm),
            ("eli", "e", pm),
            ("ousli", "ous", pm),
            ("ization", "ize", pm),
            ("ation", "ate", pm),
            ("ator", "ate", pm),
            ("alism", "al", pm),
            ("iveness", "ive", pm),
            ("fulness", "ful", pm),
            ("ousness", "ous", pm),
            ("aliti", "al", pm),
            ("iviti", "ive", pm),
            ("biliti", "ble", pm),
            ("fulli", "ful", pm),
            ("logi", "log", Some(&logi)),
        ],
    )
}

fn step3(w: &[char]) -> Vec<char> {
    let pm: Cond = Some(&positive_measure);
    apply_rules(
        w,
        &[
            ("icate", "ic", pm),
            ("ative", "", pm),
            ("alize", "al", pm),
            ("iciti", "ic", pm),
            ("ical", "ic", pm),
            ("ful", "", pm),
            ("ness", "", pm),
        ],
    )
}

fn step4(w: &[char]) -> Vec<char> {
    let gt1 = |s: &[char]| measure(s) > 1;
    let m: Cond = Some(&gt1);
    let ion = |s: &[char]| measure(s) > 1 && matches!(s.last(), Some('s' | 't'));
    apply_rules(
        w,
        &[
            ("al", "", m),
            ("ance", "", m),
            ("ence", "", m),
            ("er", "", m),
            ("ic", "", m),
            ("able", "", m),
            ("ible", "", m),
            ("ant", "", m),
            ("ement", "", m),
            ("ment", "", m),
            ("ent", "", m),
            ("ion", "", Some(&ion)),
            ("ou", "", m),
            ("ism", "", m),
            ("ate", "", m),
            ("iti", "", m),
            ("ous", "", m),
            ("ive", "", m),
            ("ize", "", m),
        ],
    )
}

fn step5a(w: &[char]) -> Vec<char> {
    if ends_with(w, "e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w.to_vec()
}

fn step5b(w: &[char]) -> Vec<char> {
    let cond = |_: &[char]| measure(&w[..w.len().saturating_sub(1)]) > 1;
    apply_rules(w, &[("ll", "l", Some(&cond))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Fixture {
        words: Vec<(String, String)>,
    }

    /// Every word of the fixture stems exactly as nltk's PorterStemmer() does.
    #[test]
    fn matches_nltk_on_word_list() {
        let fx: Fixture = serde_json::from_str(include_str!(
            "../../tests/fixtures/answer/porter_words.json"
        ))
        .expect("porter fixture parses");
        assert!(
            fx.words.len() >= 3000,
            "fixture has {} words",
            fx.words.len()
        );
        let bad: Vec<_> = fx
            .words
            .iter()
            .filter_map(|(w, want)| {
                let got = stem(w);
                (&got != want).then(|| format!("{w:?}: got {got:?}, nltk {want:?}"))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{} mismatches:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }

    /// Porter (1980) examples, checked by hand against the paper's rules.
    #[test]
    fn paper_examples() {
        // Step 1a: SSES -> SS, IES -> I, SS -> SS, S -> "".
        assert_eq!(stem("caresses"), "caress");
        assert_eq!(stem("ponies"), "poni");
        assert_eq!(stem("caress"), "caress");
        assert_eq!(stem("cats"), "cat");
        // Step 1b: (m>0) EED -> EE: "agreed" has stem "agr" with m=1 → "agree"; "feed" stem "f"
        // has m=0 → unchanged (then 5a: "feed" does not end in e).
        assert_eq!(stem("agreed"), "agre");
        assert_eq!(stem("feed"), "feed");
        // (*v*) ING: "motoring" → "motor"; "sing" has no vowel before "ing" → unchanged.
        assert_eq!(stem("motoring"), "motor");
        assert_eq!(stem("sing"), "sing");
        // Double consonant: "hopping" → "hop"; but "falling" keeps "ll" (*L), then 5b "fall"
        // has m=1 so ll stays.
        assert_eq!(stem("hopping"), "hop");
        assert_eq!(stem("falling"), "fall");
        // NLTK extensions: four-letter -ies/-ied, irregular forms.
        assert_eq!(stem("dies"), "die");
        assert_eq!(stem("died"), "die");
        assert_eq!(stem("spied"), "spi");
        assert_eq!(stem("dying"), "die");
        // Short words are only lowercased.
        assert_eq!(stem("IS"), "is");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for w in [
            "",
            "y",
            "yyyyyyyyyyyyyyyyyyyyyyyyyyyy",
            "*d",
            "a*ded",
            "ﬁle",
            "東京",
            "ßß",
            "\u{130}ed",
        ] {
            let _ = stem(w);
        }
        let long = "ational".repeat(20_000);
        assert!(!stem(&long).is_empty());
    }
}
