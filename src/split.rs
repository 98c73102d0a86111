//! Recursive character splitting with the semantics of LangChain's RecursiveCharacterTextSplitter.
//!
//! This module owns the [`Chunk`] type and the splitter. The reference implementation is
//! `langchain_text_splitters.RecursiveCharacterTextSplitter` (langchain-text-splitters 1.1.3,
//! `character.py` and `base.py`) with its defaults: separators `["\n\n", "\n", " ", ""]`,
//! `keep_separator=True` (a separator stays at the START of the piece that follows it),
//! `is_separator_regex=False`, `strip_whitespace=True` (Python `str.strip()`), and
//! `length_function=len` — all lengths here are Unicode code points (`char`s), never bytes.
//! `add_start_index=True` semantics give [`Chunk::start`]. Parity with the reference is checked
//! by fixtures under `tests/fixtures/splitter/` made by `tests/fixtures/make_splitter_fixtures.py`:
//! edge cases, `split_documents` over pages including empty ones, 11 Bacula pages in full (tests
//! below), and every one of the manual's 456 pages at the study's five chunk sizes by digest
//! (`tests/it/corpus_bacula.rs`).

use std::collections::VecDeque;

use crate::corpus::Page;

/// One chunk of a page. Chunks never cross pages (LangChain's `split_documents` over per-page
/// documents). `id` is the chunk's 0-based position in the whole corpus split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    /// 0-based id, dense over the corpus (order: sources in experiment order, pages, position).
    pub id: u32,
    /// Source file name (see [`crate::corpus::Page::source`]).
    pub source: String,
    /// 1-based page number the chunk comes from.
    pub page: u32,
    /// Offset of the chunk's first character within the page text, in characters (not bytes).
    pub start: usize,
    /// The chunk text.
    pub text: String,
}

/// Invalid splitter parameters (LangChain raises `ValueError` for the size cases).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// `chunk_size` must be at least 1 character.
    #[error("chunk_size must be > 0, got {0}")]
    ZeroChunkSize(usize),
    /// `chunk_overlap` may not exceed `chunk_size`.
    #[error("got a larger chunk overlap ({overlap}) than chunk size ({size}), should be smaller")]
    OverlapTooLarge {
        /// The requested chunk size, characters.
        size: usize,
        /// The requested overlap, characters.
        overlap: usize,
    },
    /// A chunk overlap setting ([`resolve_overlap`]) that is negative, NaN, infinite, or a
    /// non-whole number of characters (>= 1 but with a fractional part). The same rule as
    /// `grid.chunk_overlap` in experiment files.
    #[error(
        "chunk_overlap {value} is neither a fraction of chunk_size in [0, 1) nor a whole number \
         of characters (1, 2, ...)"
    )]
    InvalidOverlap {
        /// The value given.
        value: f64,
    },
}

/// LangChain's default separators, tried in order: paragraph, line, word, character.
pub const DEFAULT_SEPARATORS: [&str; 4] = ["\n\n", "\n", " ", ""];

/// Recursive character text splitter (LangChain `RecursiveCharacterTextSplitter` defaults).
///
/// Sizes are in characters (Unicode code points). A chunk is at most `chunk_size` characters
/// except when a single piece that cannot be split further is longer (only possible with
/// `chunk_size == 1` and a separator-prefixed character) or in LangChain's over-long merge case,
/// which is logged as a warning exactly as LangChain does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecursiveCharacterTextSplitter {
    chunk_size: usize,
    chunk_overlap: usize,
}

/// Python's `str.isspace()` for one code point: Unicode White_Space plus U+001C..U+001F, which
/// Python counts as whitespace (bidi class B/S) and Rust's [`char::is_whitespace`] does not.
///
/// Python's set (checked over every code point with Python 3.11, Unicode 14) is
/// `\t \n \x0b \x0c \r \x1c \x1d \x1e \x1f space \x85 \xa0 U+1680 U+2000..=U+200A U+2028 U+2029
/// U+202F U+205F U+3000`. Neither treats U+180E, U+200B (zero width space), U+2060 or U+FEFF as
/// whitespace. Shared by the splitter (`str.strip()`), BM25Okapi tokens and the answer metrics.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()` with no argument: the non-empty runs between [`is_py_space`] characters,
/// in order. Case and punctuation are kept.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python `str.strip()` with no argument.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Length in characters (Python `len` of a `str`).
fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// `_split_text_with_regex` for a literal separator with `keep_separator=True` ("start"): split
/// on non-overlapping leftmost matches, prefix each separator to the piece after it, and drop
/// empty pieces. An empty separator splits into single characters.
fn split_keep_start<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    if separator.is_empty() {
        return text
            .char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect();
    }
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    for (at, _) in text.match_indices(separator) {
        pieces.push(&text[piece_start..at]);
        piece_start = at;
    }
    pieces.push(&text[piece_start..]);
    pieces.retain(|p| !p.is_empty());
    pieces
}

impl RecursiveCharacterTextSplitter {
    /// A splitter producing chunks of at most `chunk_size` characters that overlap by at most
    /// `chunk_overlap` characters.
    ///
    /// Errors: [`SplitError::ZeroChunkSize`] when `chunk_size == 0`,
    /// [`SplitError::OverlapTooLarge`] when `chunk_overlap > chunk_size` (equal is allowed, as in
    /// LangChain).
    pub fn new(chunk_size: usize, chunk_overlap: usize) -> Result<Self, SplitError> {
        if chunk_size == 0 {
            return Err(SplitError::ZeroChunkSize(chunk_size));
        }
        if chunk_overlap > chunk_size {
            return Err(SplitError::OverlapTooLarge {
                size: chunk_size,
                overlap: chunk_overlap,
            });
        }
        Ok(Self {
            chunk_size,
            chunk_overlap,
        })
    }

    /// Maximum chunk length, characters.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Maximum overlap between consecutive chunks, characters.
    pub fn chunk_overlap(&self) -> usize {
        self.chunk_overlap
    }

    /// Split `text` into chunks, exactly as LangChain's `split_text` does. Chunks are stripped of
    /// surrounding whitespace and never empty, except in the degenerate `chunk_size == 1` case
    /// where LangChain itself emits unstripped single characters.
    pub fn split_text(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.split_recursive(text, &DEFAULT_SEPARATORS, &mut out);
        out
    }

    /// Split every page and number the chunks 0.. across all pages, in page order.
    ///
    /// `start` follows LangChain's `add_start_index`: the chunk is searched for in the page text
    /// from `previous start + previous length - chunk_overlap` (clamped at 0), all in characters.
    /// LangChain would record -1 if the search failed; that cannot happen for chunks produced by
    /// this splitter, but if it did the first occurrence in the page (or 0) is used, with a
    /// warning.
    pub fn split_pages(&self, pages: &[Page]) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        for page in pages {
            let texts = self.split_text(&page.text);
            let starts = self.start_indices(&page.text, &texts);
            for (text, start) in texts.into_iter().zip(starts) {
                let id = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
                chunks.push(Chunk {
                    id,
                    source: page.source.clone(),
                    page: page.number,
                    start,
                    text,
                });
            }
        }
        tracing::debug!(
            pages = pages.len(),
            chunks = chunks.len(),
            chunk_size = self.chunk_size,
            chunk_overlap = self.chunk_overlap,
            "split pages"
        );
        chunks
    }

    /// Character offsets of `chunks` in `text`, as LangChain's `create_documents` computes them
    /// with `add_start_index=True`.
    pub fn start_indices(&self, text: &str, chunks: &[String]) -> Vec<usize> {
        let index = CharIndex::new(text);
        let mut starts = Vec::with_capacity(chunks.len());
        let mut previous_start: usize = 0;
        let mut previous_len: usize = 0;
        for chunk in chunks {
            let from = (previous_start + previous_len).saturating_sub(self.chunk_overlap);
            let start = index.find(chunk, from).unwrap_or_else(|| {
                tracing::warn!(from, "chunk not found after its expected offset");
                index.find(chunk, 0).unwrap_or(0)
            });
            starts.push(start);
            previous_start = start;
            previous_len = char_len(chunk);
        }
        starts
    }

    /// `RecursiveCharacterTextSplitter._split_text`: pick the first separator present in `text`,
    /// split on it, merge the pieces shorter than `chunk_size`, recurse into longer ones with the
    /// remaining separators.
    fn split_recursive(&self, text: &str, separators: &[&str], out: &mut Vec<String>) {
        let (separator, rest) = choose_separator(text, separators);
        let mut good: Vec<&str> = Vec::new();
        for piece in split_keep_start(text, separator) {
            if char_len(piece) < self.chunk_size {
                good.push(piece);
                continue;
            }
            if !good.is_empty() {
                out.extend(self.merge_splits(&good, ""));
                good.clear();
            }
            if rest.is_empty() {
                out.push(piece.to_string());
            } else {
                self.split_recursive(piece, rest, out);
            }
        }
        if !good.is_empty() {
            out.extend(self.merge_splits(&good, ""));
        }
    }

    /// `TextSplitter._merge_splits`: greedily join pieces into chunks of at most `chunk_size`
    /// characters, then start the next chunk with the trailing pieces of the previous one whose
    /// total length is at most `chunk_overlap`. `separator` is what joins pieces (empty with
    /// `keep_separator=True`, since pieces carry their separators).
    fn merge_splits(&self, splits: &[&str], separator: &str) -> Vec<String> {
        let separator_len = char_len(separator);
        let sep_if = |n: usize, threshold: usize| if n > threshold { separator_len } else { 0 };
        let mut docs = Vec::new();
        let mut current: VecDeque<(&str, usize)> = VecDeque::new();
        let mut total: usize = 0;
        for &piece in splits {
            let len = char_len(piece);
            if total + len + sep_if(current.len(), 0) > self.chunk_size {
                if total > self.chunk_size {
                    tracing::warn!(
                        "Created a chunk of size {}, which is longer than the specified {}",
                        total,
                        self.chunk_size
                    );
                }
                if !current.is_empty() {
                    if let Some(doc) = join_docs(&current, separator) {
                        docs.push(doc);
                    }
                    while total > self.chunk_overlap
                        || (total + len + sep_if(current.len(), 0) > self.chunk_size && total > 0)
                    {
                        let dropped = sep_if(current.len(), 1);
                        let Some((_, first_len)) = current.pop_front() else {
                            break;
                        };
                        total = total.saturating_sub(first_len + dropped);
                    }
                }
            }
            current.push_back((piece, len));
            total += len + sep_if(current.len(), 1);
        }
        if let Some(doc) = join_docs(&current, separator) {
            docs.push(doc);
        }
        docs
    }
}

/// The first separator of `separators` that occurs in `text` (the empty separator always
/// matches and ends the list) and the separators after it; the last separator with nothing after
/// it when none occurs.
fn choose_separator<'s>(text: &str, separators: &'s [&'s str]) -> (&'s str, &'s [&'s str]) {
    for (i, &sep) in separators.iter().enumerate() {
        if sep.is_empty() {
            return (sep, &[]);
        }
        if text.contains(sep) {
            return (sep, &separators[i + 1..]);
        }
    }
    (separators.last().copied().unwrap_or(""), &[])
}

/// `TextSplitter._join_docs` with `strip_whitespace=True`: join, strip, `None` if empty.
fn join_docs(current: &VecDeque<(&str, usize)>, separator: &str) -> Option<String> {
    let mut joined = String::new();
    for (i, (piece, _)) in current.iter().enumerate() {
        if i > 0 {
            joined.push_str(separator);
        }
        joined.push_str(piece);
    }
    let stripped = py_strip(&joined);
    if stripped.is_empty() {
        None
    } else {
        Some(stripped.to_string())
    }
}

/// Character-offset view of a string for Python-style `str.find(sub, start)`.
struct CharIndex<'a> {
    text: &'a str,
    /// Byte offset of each character, plus `text.len()` at the end.
    byte_of_char: Vec<usize>,
}

impl<'a> CharIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut byte_of_char: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        byte_of_char.push(text.len());
        Self { text, byte_of_char }
    }

    /// Python `text.find(needle, from)`: character offset of the first occurrence at or after
    /// character `from`, or `None`.
    fn find(&self, needle: &str, from: usize) -> Option<usize> {
        let from_byte = *self.byte_of_char.get(from)?;
        let at = self.text[from_byte..].find(needle)? + from_byte;
        self.byte_of_char.binary_search(&at).ok()
    }
}

/// Resolve an overlap setting (as given on the command line) to characters: a value in
/// `[0, 1)` is a fraction of `chunk_size` (0.2 with 500 → 100; rounded to nearest, halves away
/// from zero); a whole number from 1 up is a character count. Experiment files make the same
/// split, by TOML type (`grid.chunk_overlap` floats are fractions below 1, integers are
/// characters); here a whole float such as `50.0` also counts as 50 characters, since a command
/// line has no types. The result is not clamped to `chunk_size`:
/// [`RecursiveCharacterTextSplitter::new`] rejects an overlap that is too large.
///
/// Errors: [`SplitError::InvalidOverlap`] for a negative, NaN or infinite value, or one above 1
/// with a fractional part (e.g. 2.5).
pub fn resolve_overlap(chunk_size: usize, overlap: f64) -> Result<usize, SplitError> {
    if !overlap.is_finite() || overlap < 0.0 || (overlap >= 1.0 && overlap.fract() != 0.0) {
        return Err(SplitError::InvalidOverlap { value: overlap });
    }
    let chars = if overlap < 1.0 {
        chunk_size as f64 * overlap
    } else {
        overlap
    };
    // Float-to-int `as` saturates; values here are finite and non-negative.
    Ok(chars.round() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(size: usize, overlap: usize, text: &str) -> Vec<String> {
        RecursiveCharacterTextSplitter::new(size, overlap)
            .expect("valid")
            .split_text(text)
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            RecursiveCharacterTextSplitter::new(0, 0),
            Err(SplitError::ZeroChunkSize(0))
        );
        assert_eq!(
            RecursiveCharacterTextSplitter::new(10, 11),
            Err(SplitError::OverlapTooLarge {
                size: 10,
                overlap: 11
            })
        );
        assert!(RecursiveCharacterTextSplitter::new(10, 10).is_ok());
    }

    #[test]
    fn separator_stays_at_start_of_next_piece() {
        assert_eq!(
            split_keep_start("a\n\nb\n\nc", "\n\n"),
            ["a", "\n\nb", "\n\nc"]
        );
        assert_eq!(split_keep_start("\n\nb", "\n\n"), ["\n\nb"]);
        assert_eq!(split_keep_start("a\n\n\nb", "\n\n"), ["a", "\n\n\nb"]);
        assert_eq!(split_keep_start("é€", ""), ["é", "€"]);
    }

    #[test]
    fn python_whitespace_includes_information_separators() {
        assert_eq!(py_strip("\u{1f} x \u{a0}\u{3000}"), "x");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
    }

    #[test]
    fn short_text_is_one_stripped_chunk_and_blank_text_none() {
        assert_eq!(split(100, 10, "  hello world \n"), ["hello world"]);
        assert!(split(100, 10, "").is_empty());
        assert!(split(100, 10, " \n\n \n").is_empty());
    }

    #[test]
    fn words_merge_up_to_size_with_overlap() {
        // "aaa bbb ccc ddd": pieces "aaa", " bbb", " ccc", " ddd" (4 chars each after the first).
        let chunks = split(8, 4, "aaa bbb ccc ddd");
        assert_eq!(chunks, ["aaa bbb", "bbb ccc", "ccc ddd"]);
        for c in &chunks {
            assert!(c.chars().count() <= 8);
        }
    }

    #[test]
    fn start_indices_are_character_offsets() {
        let s = RecursiveCharacterTextSplitter::new(8, 4).expect("valid");
        let text = "ééé bbb ccc";
        let chunks = s.split_text(text);
        let starts = s.start_indices(text, &chunks);
        let chars: Vec<char> = text.chars().collect();
        for (c, &st) in chunks.iter().zip(&starts) {
            let n = c.chars().count();
            let found: String = chars[st..st + n].iter().collect();
            assert_eq!(&found, c);
        }
        assert_eq!(starts[0], 0);
    }

    #[test]
    fn split_pages_numbers_chunks_across_pages() {
        let s = RecursiveCharacterTextSplitter::new(10, 0).expect("valid");
        let pages = vec![
            Page {
                source: "m.pdf".into(),
                number: 1,
                text: "alpha beta gamma".into(),
            },
            Page {
                source: "m.pdf".into(),
                number: 2,
                text: "delta".into(),
            },
        ];
        let chunks = s.split_pages(&pages);
        let ids: Vec<u32> = chunks.iter().map(|c| c.id).collect();
        assert_eq!(ids, (0..chunks.len() as u32).collect::<Vec<_>>());
        let last = chunks.last().expect("chunks");
        assert_eq!((last.page, last.start, last.text.as_str()), (2, 0, "delta"));
        assert!(chunks.iter().filter(|c| c.page == 1).count() >= 2);
    }

    /// Read a fixture made by `tests/fixtures/make_splitter_fixtures.py` from LangChain.
    fn fixture(name: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/splitter")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("read fixture");
        serde_json::from_str(&text).expect("parse fixture")
    }

    fn as_usize(v: &serde_json::Value) -> usize {
        v.as_u64().expect("unsigned integer") as usize
    }

    #[test]
    fn matches_langchain_on_edge_cases() {
        let fx = fixture("edge_cases.json");
        let cases = fx["cases"].as_array().expect("cases");
        assert!(cases.len() >= 30);
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let size = as_usize(&case["chunk_size"]);
            let overlap = as_usize(&case["chunk_overlap"]);
            let text = case["text"].as_str().expect("text");
            let expected: Vec<&str> = case["chunks"]
                .as_array()
                .expect("chunks")
                .iter()
                .map(|c| c.as_str().expect("chunk"))
                .collect();
            let starts: Vec<usize> = case["starts"]
                .as_array()
                .expect("starts")
                .iter()
                .map(as_usize)
                .collect();
            let s = RecursiveCharacterTextSplitter::new(size, overlap).expect("valid");
            let got = s.split_text(text);
            assert_eq!(got, expected, "{name} size={size} overlap={overlap}");
            assert_eq!(
                s.start_indices(text, &got),
                starts,
                "{name} size={size} overlap={overlap} starts"
            );
        }
    }

    #[test]
    fn matches_langchain_on_bacula_pages() {
        let fx = fixture("bacula_pages.json");
        let pages: Vec<Page> = fx["pages"]
            .as_array()
            .expect("pages")
            .iter()
            .map(|p| Page {
                source: "main.pdf".into(),
                number: p["number"].as_u64().expect("number") as u32,
                text: p["text"].as_str().expect("text").to_string(),
            })
            .collect();
        let runs = fx["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), pages.len() * 5);
        for run in runs {
            let number = run["page"].as_u64().expect("page") as u32;
            let size = as_usize(&run["chunk_size"]);
            let overlap = as_usize(&run["chunk_overlap"]);
            assert_eq!(Ok(overlap), resolve_overlap(size, 0.2));
            let page = pages.iter().find(|p| p.number == number).expect("page");
            let chars: Vec<char> = page.text.chars().collect();
            let expected: Vec<(usize, String)> = run["spans"]
                .as_array()
                .expect("spans")
                .iter()
                .map(|s| {
                    let (start, len) = (as_usize(&s[0]), as_usize(&s[1]));
                    (start, chars[start..start + len].iter().collect())
                })
                .collect();
            let s = RecursiveCharacterTextSplitter::new(size, overlap).expect("valid");
            let got: Vec<(usize, String)> = s
                .split_pages(std::slice::from_ref(page))
                .into_iter()
                .map(|c| (c.start, c.text))
                .collect();
            assert_eq!(got, expected, "page {number} size={size}");
        }
    }

    /// `split_pages` over several pages, some empty or whitespace-only, against LangChain's
    /// `split_documents` over one Document per page: chunk ids continue across the empty pages
    /// (they produce no chunks), and every chunk keeps its own page number and start.
    #[test]
    fn split_pages_matches_langchain_split_documents_with_empty_pages() {
        let fx = fixture("documents.json");
        let pages: Vec<Page> = fx["pages"]
            .as_array()
            .expect("pages")
            .iter()
            .enumerate()
            .map(|(i, t)| Page {
                source: "docs.pdf".into(),
                number: i as u32 + 1,
                text: t.as_str().expect("text").to_string(),
            })
            .collect();
        assert!(
            pages
                .iter()
                .filter(|p| py_strip(&p.text).is_empty())
                .count()
                >= 3
        );
        for case in fx["cases"].as_array().expect("cases") {
            let size = as_usize(&case["chunk_size"]);
            let overlap = as_usize(&case["chunk_overlap"]);
            let expected: Vec<Chunk> = case["chunks"]
                .as_array()
                .expect("chunks")
                .iter()
                .enumerate()
                .map(|(i, c)| Chunk {
                    id: i as u32,
                    source: "docs.pdf".into(),
                    page: c["page"].as_u64().expect("page") as u32,
                    start: as_usize(&c["start"]),
                    text: c["text"].as_str().expect("text").to_string(),
                })
                .collect();
            let s = RecursiveCharacterTextSplitter::new(size, overlap).expect("valid");
            assert_eq!(
                s.split_pages(&pages),
                expected,
                "size={size} overlap={overlap}"
            );
        }
    }

    #[test]
    fn resolve_overlap_fraction_or_characters() {
        assert_eq!(resolve_overlap(500, 0.2), Ok(100));
        assert_eq!(resolve_overlap(250, 0.2), Ok(50));
        assert_eq!(resolve_overlap(100, 0.125), Ok(13));
        assert_eq!(resolve_overlap(100, 0.0), Ok(0));
        assert_eq!(resolve_overlap(100, 1.0), Ok(1));
        assert_eq!(resolve_overlap(100, 30.0), Ok(30));
    }

    #[test]
    fn resolve_overlap_rejects_negative_nan_and_fractional_characters() {
        for bad in [
            -0.5,
            -1.0,
            -30.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            2.5,
            1.000_1,
        ] {
            assert_eq!(
                resolve_overlap(100, bad),
                Err(SplitError::InvalidOverlap { value: bad }),
                "{bad}"
            );
        }
        let nan = resolve_overlap(100, f64::NAN).unwrap_err();
        assert!(matches!(nan, SplitError::InvalidOverlap { value } if value.is_nan()));
        let msg = resolve_overlap(100, -0.5).unwrap_err().to_string();
        assert!(
            msg.contains("-0.5") && msg.contains("[0, 1)") && msg.contains("whole number"),
            "{msg}"
        );
    }
}
