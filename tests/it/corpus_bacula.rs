//! The Bacula corpus and its QA set: the PDF extracts to 456 pages, every question in
//! `corpora/bacula/qa.toml` is well-formed and quotes its evidence verbatim from our own
//! extraction of its page, and the splitter matches LangChain on every page of the manual at the
//! study's chunk sizes (fixture `tests/fixtures/splitter/bacula_all_pages.json`).
//!
//! Evidence matching rule (also in `corpora/bacula/README.md`): both the quote and the page text
//! have every whitespace run collapsed to one space and are trimmed; if the quote is not found,
//! the page is tried once more with line-end hyphenation joined (a `-` right after a letter and
//! followed by a line break is removed with the line-break whitespace).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use orchestrate::corpus::{load_pages, Page};
use orchestrate::qa::{load_questions, Question};
use orchestrate::split::{resolve_overlap, Chunk, RecursiveCharacterTextSplitter};
use sha2::{Digest, Sha256};

const PDF_PAGES: usize = 456;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpora/bacula")
}

/// The extracted manual, loaded once per test binary.
fn pages() -> &'static [Page] {
    static PAGES: OnceLock<Vec<Page>> = OnceLock::new();
    PAGES.get_or_init(|| load_pages(&corpus_dir().join("main.pdf")).expect("load main.pdf"))
}

fn questions() -> Vec<Question> {
    load_questions(&corpus_dir().join("qa.toml")).expect("load qa.toml")
}

/// Collapse every whitespace run to one space and trim.
fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Remove a `-` that follows a letter and is followed (after optional spaces/tabs) by a line
/// break, together with the whitespace after it: "direc-\n tive" becomes "directive".
fn join_hyphenation(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '-' && i > 0 && chars[i - 1].is_alphabetic() {
            let mut j = i + 1;
            while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t') {
                j += 1;
            }
            if j < chars.len() && (chars[j] == '\n' || chars[j] == '\r') {
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether `quote` occurs in `page` under the matching rule above.
fn evidence_on_page(quote: &str, page: &str) -> bool {
    let quote = collapse_ws(quote);
    collapse_ws(page).contains(&quote) || collapse_ws(&join_hyphenation(page)).contains(&quote)
}

#[test]
fn matching_rule_collapses_whitespace_and_joins_hyphens() {
    assert!(evidence_on_page("a b c", "x a \n\n b\tc y"));
    assert!(evidence_on_page(
        "the directive is",
        "the direc-\n  tive is"
    ));
    assert!(!evidence_on_page("the directive is", "the direc- tive is"));
    assert!(!evidence_on_page("a b d", "a b c"));
    assert!(evidence_on_page("bacula-dir.conf", "bacula-dir.conf"));
}

#[test]
fn bacula_pdf_has_456_numbered_pages() {
    let pages = pages();
    assert_eq!(pages.len(), PDF_PAGES);
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.number as usize, i + 1);
        assert_eq!(page.source, "main.pdf");
    }
    // Chapter 1 starts on PDF page 12 (printed page 1).
    assert!(pages[11].text.contains("What is Bacula?"));
    // NFKC normalisation removed ligature code points (U+FB00..U+FB06).
    let ligatures = pages
        .iter()
        .flat_map(|p| p.text.chars())
        .filter(|c| ('\u{FB00}'..='\u{FB06}').contains(c))
        .count();
    assert_eq!(ligatures, 0);
}

#[test]
fn qa_set_is_well_formed_and_spread_over_the_manual() {
    let qs = questions();
    assert!(qs.len() >= 24, "only {} questions", qs.len());
    let mut ids = HashSet::new();
    for (i, q) in qs.iter().enumerate() {
        assert!(ids.insert(q.id.clone()), "duplicate id {}", q.id);
        assert_eq!(
            q.id,
            format!("b{:02}", i + 1),
            "ids must be b01, b02, ... in order"
        );
        assert!(
            q.question.trim_end().ends_with('?'),
            "{}: not a question",
            q.id
        );
        let page = q.page.unwrap_or_else(|| panic!("{}: no page", q.id));
        assert!(
            (1..=PDF_PAGES as u32).contains(&page),
            "{}: page {page}",
            q.id
        );
        let evidence = q
            .evidence
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no evidence", q.id));
        let words = evidence.split_whitespace().count();
        assert!(
            (5..=25).contains(&words),
            "{}: evidence has {words} words",
            q.id
        );
        let short = q
            .short_answer
            .as_deref()
            .unwrap_or_else(|| panic!("{}: no short", q.id));
        assert!(
            collapse_ws(evidence)
                .to_lowercase()
                .contains(&collapse_ws(short).to_lowercase()),
            "{}: short answer {short:?} not in evidence",
            q.id
        );
        let difficulty = q.difficulty.as_deref().unwrap_or_default();
        assert!(
            ["easy", "medium", "hard"].contains(&difficulty),
            "{}: difficulty {difficulty:?}",
            q.id
        );
    }
    // Front, middle and back thirds of the manual each hold several questions.
    let third = PDF_PAGES as u32 / 3;
    let count = |lo: u32, hi: u32| {
        qs.iter()
            .filter(|q| q.page.is_some_and(|p| p > lo && p <= hi))
            .count()
    };
    assert!(count(0, third) >= 5, "front: {}", count(0, third));
    assert!(
        count(third, 2 * third) >= 5,
        "middle: {}",
        count(third, 2 * third)
    );
    assert!(count(2 * third, PDF_PAGES as u32) >= 5, "back");
}

#[test]
fn every_evidence_quote_is_on_its_page() {
    let pages = pages();
    let mut missing = Vec::new();
    for q in questions() {
        let (Some(page), Some(evidence)) = (q.page, q.evidence.as_deref()) else {
            missing.push(format!("{}: no page or evidence", q.id));
            continue;
        };
        let Some(text) = pages.get(page as usize - 1) else {
            missing.push(format!("{}: page {page} out of range", q.id));
            continue;
        };
        if !evidence_on_page(evidence, &text.text) {
            missing.push(format!("{} (page {page}): {evidence:?}", q.id));
        }
    }
    assert!(
        missing.is_empty(),
        "evidence not found:\n{}",
        missing.join("\n")
    );
}

/// Pages whose full text and chunk spans are in `tests/fixtures/splitter/bacula_pages.json`
/// (checked with readable diffs by `split::tests::matches_langchain_on_bacula_pages`).
const FULL_TEXT_PAGES: [u32; 11] = [12, 13, 43, 100, 128, 160, 229, 324, 391, 422, 432];

/// sha256 (hex) over a page's chunks in order, each fed as `"{start}\n{utf-8 length}\n"` then
/// the text's UTF-8 bytes (`chunk_digest` in tests/fixtures/make_splitter_fixtures.py).
fn chunk_digest(chunks: &[&Chunk]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(format!("{}\n{}\n", c.start, c.text.len()).as_bytes());
        h.update(c.text.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The splitter against LangChain's RecursiveCharacterTextSplitter (split_documents with
/// add_start_index) on ALL 456 pages at chunk sizes 100/250/500/750/1000 with 20% overlap: per
/// page and size, the number of chunks and a digest of the (start, text) sequence. A page whose
/// extracted text no longer has the fixture's sha256 is reported as a stale fixture (our PDF
/// extraction changed; regenerate with tests/fixtures/make_splitter_fixtures.py), not as a
/// splitter failure.
#[test]
fn splitter_matches_langchain_on_every_bacula_page() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/splitter/bacula_all_pages.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let fx: serde_json::Value = serde_json::from_str(&text).expect("parse bacula_all_pages.json");
    let pages = pages();
    let fx_pages = fx["pages"].as_array().expect("pages");
    assert_eq!(
        fx_pages.len(),
        pages.len(),
        "the fixture has {} pages, our extraction {}: stale fixture, regenerate it (see \
         tests/fixtures/make_splitter_fixtures.py)",
        fx_pages.len(),
        pages.len()
    );
    let mut stale = Vec::new();
    for (page, want) in pages.iter().zip(fx_pages) {
        assert_eq!(
            u64::from(page.number),
            want["number"].as_u64().expect("number")
        );
        let digest = hex::encode(Sha256::digest(page.text.as_bytes()));
        if digest != want["sha256"].as_str().expect("sha256") {
            stale.push(format!(
                "page {} ({} chars now, {} in the fixture)",
                page.number,
                page.text.chars().count(),
                want["chars"]
            ));
        }
    }

    let runs = fx["runs"].as_array().expect("runs");
    let sizes: Vec<u64> = runs
        .iter()
        .map(|r| r["chunk_size"].as_u64().expect("size"))
        .collect();
    assert_eq!(sizes, [100, 250, 500, 750, 1000]);
    let mut failures = Vec::new();
    let mut checked = 0;
    for run in runs {
        let size = run["chunk_size"].as_u64().expect("chunk_size") as usize;
        let overlap = run["chunk_overlap"].as_u64().expect("chunk_overlap") as usize;
        assert_eq!(Ok(overlap), resolve_overlap(size, 0.2));
        let splitter = RecursiveCharacterTextSplitter::new(size, overlap).expect("valid sizes");
        // One call over the whole manual, as an index build splits the corpus.
        let chunks = splitter.split_pages(pages);
        assert!(chunks.iter().enumerate().all(|(i, c)| c.id as usize == i));
        let per_page = run["per_page"].as_array().expect("per_page");
        assert_eq!(per_page.len(), pages.len());
        let mut by_page: Vec<Vec<&Chunk>> = vec![Vec::new(); pages.len()];
        for c in &chunks {
            by_page[c.page as usize - 1].push(c);
        }
        for ((page, got), want) in pages.iter().zip(&by_page).zip(per_page) {
            let fx_digest = fx_pages[page.number as usize - 1]["sha256"].as_str();
            if Some(hex::encode(Sha256::digest(page.text.as_bytes())).as_str()) != fx_digest {
                continue; // stale, reported above
            }
            checked += 1;
            let want_count = want[0].as_u64().expect("count") as usize;
            let readable = if FULL_TEXT_PAGES.contains(&page.number) {
                " (full text in bacula_pages.json: see split::tests)"
            } else {
                ""
            };
            if got.len() != want_count {
                failures.push(format!(
                    "page {} size {size}: {} chunks, LangChain {want_count}{readable}",
                    page.number,
                    got.len()
                ));
            } else if chunk_digest(got) != want[1].as_str().expect("digest") {
                failures.push(format!(
                    "page {} size {size}: {want_count} chunks as LangChain, but their \
                     (start, text) differ{readable}",
                    page.number
                ));
            }
        }
        if stale.is_empty() {
            assert_eq!(
                chunks.len() as u64,
                run["chunks"].as_u64().expect("chunks"),
                "total chunks at size {size}"
            );
        }
    }
    eprintln!("checked {checked} (page, size) splits against LangChain");
    assert!(
        stale.is_empty() && failures.is_empty(),
        "STALE FIXTURE (our PDF extraction changed; regenerate bacula_all_pages.json as \
         tests/fixtures/make_splitter_fixtures.py says) for {} pages: {}\n\
         SPLITTER MISMATCHES against LangChain ({}):\n{}",
        stale.len(),
        stale.join(", "),
        failures.len(),
        failures.join("\n")
    );
}
