//! Corpus loading: text per page from PDFs (pdf-extract) and plain-text files, and the corpus
//! fingerprint used in index cache keys.
//!
//! This module owns the [`Page`] type and every decision about how a source file becomes text:
//! - PDF (`.pdf`): one [`Page`] per PDF page from `pdf_extract::extract_text_from_mem_by_pages`,
//!   NFKC-normalised (turns ligature code points such as U+FB01 "ﬁ" into "fi"); the text is
//!   otherwise kept exactly as extracted (running headers, page numbers and line-end hyphenation
//!   stay in).
//! - Plain text (`.txt`, `.md`): the whole file is page 1, unless it contains form feeds
//!   (U+000C, as `pdftotext` writes between pages), in which case each form-feed-separated part is
//!   a page (a single trailing form feed does not open an empty last page). Also NFKC-normalised.
//! - BEIR corpus (`.jsonl`): one [`Page`] per document, see [`load_beir_corpus`] (Thakur et al.
//!   2021, "BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information Retrieval
//!   Models"). The page's `source` is the document `_id`, so every chunk carries its document id
//!   and retrieval can be judged per document against BEIR qrels (see
//!   [`crate::score::metrics_for`]).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// One page of a source document. `number` is 1-based (the PDF page index + 1; 1 for text files;
/// the line number for a BEIR corpus document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Page {
    /// File name of the source document (no directory), e.g. `main.pdf`; for a BEIR corpus
    /// (`.jsonl`) the document's `_id`.
    pub source: String,
    /// 1-based page number (for a BEIR corpus: the 1-based line of the document in the file).
    pub number: u32,
    /// Extracted text of the page (Unicode NFKC-normalised).
    pub text: String,
}

/// Errors while loading or fingerprinting corpus files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The file could not be read.
    #[error("cannot read corpus file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// pdf-extract returned an error (malformed or unsupported PDF).
    #[error("cannot extract text from PDF {path}: {message}")]
    Pdf {
        /// The file.
        path: PathBuf,
        /// pdf-extract's error message.
        message: String,
    },
    /// pdf-extract panicked while reading the PDF (it does on some odd PDFs).
    #[error("PDF text extraction panicked on {path}: {message}")]
    PdfPanic {
        /// The file.
        path: PathBuf,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The PDF yielded no pages at all.
    #[error("no pages could be extracted from PDF {path}")]
    NoPages {
        /// The file.
        path: PathBuf,
    },
    /// A text file is not valid UTF-8.
    #[error("corpus file {path} is not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A line of a BEIR corpus file (`.jsonl`) is invalid: not UTF-8, not a JSON object, `_id`
    /// missing, empty or not a string/integer, `text` missing or not a string, `title` not a
    /// string, or a duplicate `_id`. The message says which.
    #[error("{path}:{line}: {message}")]
    Beir {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A BEIR corpus file holds no documents (only blank lines).
    #[error("BEIR corpus file {path} contains no documents")]
    NoDocuments {
        /// The file.
        path: PathBuf,
    },
    /// The file extension is none of `pdf`, `txt`, `md`, `jsonl` (case-insensitive).
    #[error(
        "unsupported corpus file {path}: expected a .pdf, .txt, .md or .jsonl (BEIR corpus) file"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
    },
    /// More pages than fit in a `u32` page number.
    #[error("corpus file {path} has more than u32::MAX pages")]
    TooManyPages {
        /// The file.
        path: PathBuf,
    },
}

/// The kinds of source file [`load_pages`] understands, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Pdf,
    Text,
    Beir,
}

/// Classify `path` by its extension (case-insensitive).
fn source_kind(path: &Path) -> Option<SourceKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => Some(SourceKind::Pdf),
        "txt" | "md" => Some(SourceKind::Text),
        "jsonl" => Some(SourceKind::Beir),
        _ => None,
    }
}

/// File name of `path` without its directory, lossily converted to UTF-8 (the whole path if it
/// has no file name).
fn source_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned())
}

/// Read the whole file, naming it in the error.
fn read_bytes(path: &Path) -> Result<Vec<u8>, CorpusError> {
    std::fs::read(path).map_err(|source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Load a corpus file as pages.
///
/// - `.pdf`: one page per PDF page, in order, numbered from 1. Extraction stops at the first page
///   pdf-extract cannot render (its `extract_text_*_by_pages` behaviour), so a damaged tail is
///   dropped rather than failing the whole file; zero pages is an error.
/// - `.txt` / `.md`: page 1 is the whole file, or one page per form-feed-separated part.
/// - `.jsonl`: a BEIR corpus, one page per document ([`load_beir_corpus`]; not NFKC-normalised).
///
/// PDF and text page text is NFKC-normalised. Errors: [`CorpusError::Io`], [`CorpusError::Pdf`],
/// [`CorpusError::PdfPanic`] (pdf-extract panics are caught), [`CorpusError::NoPages`],
/// [`CorpusError::NotUtf8`], [`CorpusError::Unsupported`], [`CorpusError::TooManyPages`], and for
/// `.jsonl` [`CorpusError::Beir`] and [`CorpusError::NoDocuments`].
pub fn load_pages(path: &Path) -> Result<Vec<Page>, CorpusError> {
    let kind = source_kind(path).ok_or_else(|| CorpusError::Unsupported {
        path: path.to_path_buf(),
    })?;
    let bytes = read_bytes(path)?;
    let texts = match kind {
        SourceKind::Pdf => extract_pdf_pages(path, &bytes)?,
        SourceKind::Text => split_text_pages(path, &bytes)?,
        SourceKind::Beir => {
            let pages = parse_beir_corpus(path, &bytes)?;
            tracing::debug!(file = %path.display(), documents = pages.len(), "loaded BEIR corpus");
            return Ok(pages);
        }
    };
    let pages = number_pages(path, texts)?;
    tracing::debug!(file = %path.display(), pages = pages.len(), "loaded corpus file");
    Ok(pages)
}

/// Turn raw page texts into NFKC-normalised [`Page`]s numbered from 1.
fn number_pages(path: &Path, texts: Vec<String>) -> Result<Vec<Page>, CorpusError> {
    let source = source_name(path);
    texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let number = u32::try_from(i + 1).map_err(|_| CorpusError::TooManyPages {
                path: path.to_path_buf(),
            })?;
            Ok(Page {
                source: source.clone(),
                number,
                text: normalize(&text),
            })
        })
        .collect()
}

/// Unicode NFKC normalisation (compatibility decomposition, canonical composition).
pub fn normalize(text: &str) -> String {
    text.nfkc().collect()
}

/// Extract per-page text from PDF bytes, converting both errors and panics of pdf-extract into
/// [`CorpusError`]s.
fn extract_pdf_pages(path: &Path, bytes: &[u8]) -> Result<Vec<String>, CorpusError> {
    let result = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes));
    let pages = match result {
        Ok(Ok(pages)) => pages,
        Ok(Err(err)) => {
            return Err(CorpusError::Pdf {
                path: path.to_path_buf(),
                message: err.to_string(),
            })
        }
        Err(payload) => {
            return Err(CorpusError::PdfPanic {
                path: path.to_path_buf(),
                message: panic_message(payload.as_ref()),
            })
        }
    };
    if pages.is_empty() {
        return Err(CorpusError::NoPages {
            path: path.to_path_buf(),
        });
    }
    Ok(pages)
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Decode a UTF-8 text file and split it into pages on form feeds (U+000C). A text without form
/// feeds is one page; a single trailing form feed does not create an empty last page.
fn split_text_pages(path: &Path, bytes: &[u8]) -> Result<Vec<String>, CorpusError> {
    let text = std::str::from_utf8(bytes).map_err(|e| CorpusError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to(),
    })?;
    Ok(split_form_feeds(text))
}

/// Split on U+000C; drops only the empty part after a final form feed.
fn split_form_feeds(text: &str) -> Vec<String> {
    let mut parts: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    parts
}

/// Load a BEIR corpus file (`corpus.jsonl`): one [`Page`] per document, in file order.
///
/// Each non-blank line is a JSON object with `_id` (string, or an integer, which is taken as its
/// decimal text; non-empty), `text` (string, may be empty), optionally `title` (string; absent or
/// `null` counts as empty) and any other keys (e.g. `metadata`), which are ignored. Blank lines are
/// skipped; a UTF-8 byte-order mark at the start is ignored.
///
/// The page of a document has `source` = its `_id`, `number` = its 1-based line in the file, and
/// `text` = `title + " " + text` with surrounding whitespace trimmed — what BEIR's dense
/// retrievers embed (`beir/retrieval/models/sentence_bert.py`, `SentenceBERT.encode_corpus`:
/// `(doc["title"] + self.sep + doc["text"]).strip()` with `sep = " "`), which is just the trimmed
/// `text` when the title is empty. Trimming uses Unicode White_Space (Rust's `str::trim`; Python's
/// `str.strip` also strips the ASCII separators U+001C–U+001F). The text is *not* NFKC-normalised,
/// so documents are embedded exactly as BEIR embeds them.
///
/// Reference: Thakur et al. 2021, "BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of
/// Information Retrieval Models" (NeurIPS Datasets and Benchmarks).
///
/// Errors: [`CorpusError::Io`]; [`CorpusError::Beir`] naming file and line for invalid UTF-8,
/// bad JSON, a missing or invalid `_id`/`text`/`title`, or a duplicate `_id` (with the line of
/// its first use); [`CorpusError::NoDocuments`]; [`CorpusError::TooManyPages`].
pub fn load_beir_corpus(path: &Path) -> Result<Vec<Page>, CorpusError> {
    let bytes = read_bytes(path)?;
    parse_beir_corpus(path, &bytes)
}

/// Parse the bytes of a BEIR `corpus.jsonl` (see [`load_beir_corpus`]).
fn parse_beir_corpus(path: &Path, bytes: &[u8]) -> Result<Vec<Page>, CorpusError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let err = |line: usize, message: String| CorpusError::Beir {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut first_line: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut pages = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = std::str::from_utf8(raw).map_err(|e| {
            err(
                line_no,
                format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            err(
                line_no,
                format!(
                    "invalid JSON at column {}: {}",
                    e.column(),
                    json_message(&e)
                ),
            )
        })?;
        let doc = beir_fields(&value, "document").map_err(|m| err(line_no, m))?;
        let (id, title, text) = (doc.id, doc.title, doc.text);
        if let Some(&first) = first_line.get(&id) {
            return Err(err(
                line_no,
                format!("duplicate document `_id` `{id}` (first used on line {first})"),
            ));
        }
        first_line.insert(id.clone(), line_no);
        let number = u32::try_from(line_no).map_err(|_| CorpusError::TooManyPages {
            path: path.to_path_buf(),
        })?;
        pages.push(Page {
            source: id,
            number,
            text: beir_document_text(&title, &text),
        });
    }
    if pages.is_empty() {
        return Err(CorpusError::NoDocuments {
            path: path.to_path_buf(),
        });
    }
    Ok(pages)
}

/// The text BEIR's dense retrievers embed for a document: `(title + " " + text).strip()`
/// (`SentenceBERT.encode_corpus`); the trimmed `text` alone when `title` is empty.
pub fn beir_document_text(title: &str, text: &str) -> String {
    format!("{title} {text}").trim().to_string()
}

/// The fields of one BEIR JSON line (corpus document or query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeirFields {
    /// `_id`: a non-empty string, or an integer taken as its decimal text.
    pub id: String,
    /// `title`, empty when absent or `null`.
    pub title: String,
    /// `text` (may be empty).
    pub text: String,
}

/// Read `_id`, `title` and `text` of one parsed BEIR JSON line; `what` (`document`, `query`)
/// names the record in messages. Other keys (e.g. `metadata`) are ignored. Errors (a message
/// without position, for the caller to prefix with file:line): not an object; `_id` missing,
/// empty or neither string nor integer; `text` missing or not a string; `title` not a string.
pub fn beir_fields(value: &serde_json::Value, what: &str) -> Result<BeirFields, String> {
    use serde_json::Value;
    let Value::Object(map) = value else {
        return Err(format!(
            "expected a JSON object ({what}), found {}",
            json_kind(value)
        ));
    };
    let id = match map.get("_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(format!("{what} `_id` is empty")),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(v) => {
            return Err(format!(
                "{what} `_id` must be a string or an integer, found {}",
                json_kind(v)
            ))
        }
        None => return Err(format!("{what} has no `_id`")),
    };
    let text = match map.get("text") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(format!(
                "{what} `{id}`: `text` must be a string, found {}",
                json_kind(v)
            ))
        }
        None => return Err(format!("{what} `{id}` has no `text`")),
    };
    let title = match map.get("title") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(v) => {
            return Err(format!(
                "{what} `{id}`: `title` must be a string, found {}",
                json_kind(v)
            ))
        }
    };
    Ok(BeirFields { id, title, text })
}

/// The JSON type of a value, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// serde_json's message without its own " at line L column C" suffix (callers give file:line).
pub fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Hex-encoded SHA-256 fingerprint of a list of corpus files, for index cache keys.
///
/// For each path in the given order it hashes the file name (no directory, so moving a corpus
/// keeps its cache) and the file bytes, each preceded by its length as a little-endian `u64` so
/// that different (name, content) sequences never hash the same input. The result is 64 lowercase
/// hex characters. A BEIR `corpus.jsonl` is hashed like any other file (its bytes), so editing a
/// document, its title or id changes the fingerprint. Errors: [`CorpusError::Io`] naming the
/// unreadable file.
pub fn corpus_fingerprint(paths: &[PathBuf]) -> Result<String, CorpusError> {
    let mut hasher = Sha256::new();
    for path in paths {
        let name = source_name(path);
        let bytes = read_bytes(path)?;
        hash_framed(&mut hasher, name.as_bytes());
        hash_framed(&mut hasher, &bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Feed `data` to the hasher preceded by its length (u64, little-endian).
fn hash_framed(hasher: &mut Sha256, data: &[u8]) {
    hasher.update((data.len() as u64).to_le_bytes());
    hasher.update(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(bytes).expect("write");
        path
    }

    #[test]
    fn text_file_is_one_page_and_nfkc_normalised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(dir.path(), "a.txt", "e\u{FB03}cient\nline two".as_bytes());
        let pages = load_pages(&path).expect("load");
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].number, 1);
        assert_eq!(pages[0].source, "a.txt");
        assert_eq!(pages[0].text, "efficient\nline two");
    }

    #[test]
    fn form_feeds_split_pages_and_trailing_one_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(dir.path(), "b.md", b"one\x0ctwo\x0c\x0cfour\x0c");
        let pages = load_pages(&path).expect("load");
        let texts: Vec<&str> = pages.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "", "four"]);
        let numbers: Vec<u32> = pages.iter().map(|p| p.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pdf");
        let err = load_pages(&missing).expect_err("missing file");
        assert!(matches!(err, CorpusError::Io { .. }));
        assert!(err.to_string().contains("missing.pdf"));

        let bad = write_file(dir.path(), "bad.txt", &[b'a', 0xff, b'b']);
        let err = load_pages(&bad).expect_err("invalid utf-8");
        assert!(matches!(err, CorpusError::NotUtf8 { offset: 1, .. }));
        assert!(err.to_string().contains("bad.txt"));

        let other = write_file(dir.path(), "x.docx", b"zz");
        let err = load_pages(&other).expect_err("unsupported");
        assert!(matches!(err, CorpusError::Unsupported { .. }));
        assert!(err.to_string().contains("x.docx"));
    }

    #[test]
    fn garbage_pdf_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(
            dir.path(),
            "junk.pdf",
            b"%PDF-1.4\nthis is not a pdf at all",
        );
        let err = load_pages(&path).expect_err("garbage pdf");
        assert!(matches!(
            err,
            CorpusError::Pdf { .. } | CorpusError::PdfPanic { .. } | CorpusError::NoPages { .. }
        ));
        assert!(err.to_string().contains("junk.pdf"));
    }

    #[test]
    fn beir_corpus_is_one_page_per_document_with_title_joined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(
            dir.path(),
            "corpus.jsonl",
            concat!(
                "\u{feff}{\"_id\": \"d1\", \"title\": \"Pools\", \"text\": \"A Pool groups Volumes.\", \"metadata\": {\"url\": \"x\"}}\n",
                "\n",
                "{\"_id\": \"d2\", \"title\": \"\", \"text\": \"  The Catalog is a database. \"}\r\n",
                "{\"_id\": 7, \"text\": \"e\u{FB03}cient\"}\n",
                "{\"_id\": \"d4\", \"title\": null, \"text\": \"\"}\n",
            )
            .as_bytes(),
        );
        let pages = load_pages(&path).expect("load");
        let got: Vec<(&str, u32, &str)> = pages
            .iter()
            .map(|p| (p.source.as_str(), p.number, p.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("d1", 1, "Pools A Pool groups Volumes."),
                ("d2", 3, "The Catalog is a database."),
                // not NFKC-normalised: embedded exactly as BEIR does
                ("7", 4, "e\u{FB03}cient"),
                ("d4", 5, ""),
            ]
        );
        assert_eq!(pages, load_beir_corpus(&path).expect("load"));
        assert_eq!(beir_document_text("", " x "), "x");
        assert_eq!(beir_document_text("T", "x"), "T x");
    }

    #[test]
    fn beir_corpus_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = "{\"_id\": \"d1\", \"text\": \"one\"}\n";
        let cases: [(&str, &str); 9] = [
            ("{\"_id\": \"d2\", \"text\": \"two\"\n", "invalid JSON"),
            ("[1, 2]\n", "expected a JSON object"),
            ("{\"text\": \"two\"}\n", "has no `_id`"),
            ("{\"_id\": \"\", \"text\": \"two\"}\n", "`_id` is empty"),
            (
                "{\"_id\": 1.5, \"text\": \"two\"}\n",
                "string or an integer",
            ),
            ("{\"_id\": \"d2\"}\n", "`d2` has no `text`"),
            (
                "{\"_id\": \"d2\", \"text\": 3}\n",
                "`text` must be a string",
            ),
            (
                "{\"_id\": \"d2\", \"title\": [], \"text\": \"t\"}\n",
                "`title` must be a string",
            ),
            (
                "{\"_id\": \"d1\", \"text\": \"again\"}\n",
                "duplicate document `_id` `d1` (first used on line 1)",
            ),
        ];
        for (i, (line, want)) in cases.iter().enumerate() {
            let name = format!("c{i}.jsonl");
            let path = write_file(dir.path(), &name, format!("{good}{line}").as_bytes());
            let err = load_pages(&path).expect_err(want);
            assert!(matches!(err, CorpusError::Beir { line: 2, .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{name}:2: ")) && msg.contains(want),
                "{msg}"
            );
        }
        let bad = write_file(
            dir.path(),
            "u.jsonl",
            b"{\"_id\": \"d\", \"text\": \"\xff\"}",
        );
        let msg = load_pages(&bad).expect_err("utf-8").to_string();
        assert!(msg.contains("u.jsonl:1: not valid UTF-8"), "{msg}");
        let empty = write_file(dir.path(), "e.jsonl", b"\n  \n");
        let err = load_pages(&empty).expect_err("empty");
        assert!(matches!(err, CorpusError::NoDocuments { .. }), "{err}");
        assert!(err.to_string().contains("e.jsonl"), "{err}");
    }

    #[test]
    fn beir_corpus_fixture_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/beir/mini/corpus.jsonl");
        let pages = load_pages(&path).expect("fixture");
        assert_eq!(pages.len(), 30);
        assert_eq!(pages[0].source, "bacula-p101");
        assert_eq!(pages[29].number, 30);
        let fileset = pages
            .iter()
            .find(|p| p.source == "bacula-p209")
            .expect("p209");
        assert!(fileset
            .text
            .starts_with("The FileSet Resource The FileSet resource defines"));
        // the fingerprint covers the file's bytes like any corpus file
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("corpus.jsonl");
        std::fs::copy(&path, &copy).expect("copy");
        let fp = corpus_fingerprint(std::slice::from_ref(&copy)).expect("fp");
        assert_eq!(
            fp,
            corpus_fingerprint(std::slice::from_ref(&path)).expect("fp")
        );
        let mut bytes = std::fs::read(&copy).expect("read");
        bytes.extend_from_slice(b"{\"_id\": \"new\", \"text\": \"x\"}\n");
        std::fs::write(&copy, bytes).expect("write");
        assert_ne!(fp, corpus_fingerprint(&[copy]).expect("fp"));
    }

    #[test]
    fn fingerprint_depends_on_names_contents_and_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = write_file(dir.path(), "a.txt", b"alpha");
        let b = write_file(dir.path(), "b.txt", b"beta");
        let ab = corpus_fingerprint(&[a.clone(), b.clone()]).expect("fp");
        assert_eq!(ab.len(), 64);
        assert!(ab.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(ab, corpus_fingerprint(&[a.clone(), b.clone()]).expect("fp"));
        assert_ne!(ab, corpus_fingerprint(&[b.clone(), a.clone()]).expect("fp"));

        // Same bytes under another name: different fingerprint.
        let c = write_file(dir.path(), "c.txt", b"alpha");
        assert_ne!(
            corpus_fingerprint(std::slice::from_ref(&a)).expect("fp"),
            corpus_fingerprint(&[c]).expect("fp")
        );
        // Same name in another directory with the same bytes: same fingerprint.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let a2 = write_file(&sub, "a.txt", b"alpha");
        assert_eq!(
            corpus_fingerprint(std::slice::from_ref(&a)).expect("fp"),
            corpus_fingerprint(std::slice::from_ref(&a2)).expect("fp")
        );
        // Changed content: different fingerprint.
        write_file(&sub, "a.txt", b"alphb");
        assert_ne!(
            corpus_fingerprint(&[a]).expect("fp"),
            corpus_fingerprint(&[a2]).expect("fp")
        );
        // Missing file names the file.
        let err = corpus_fingerprint(&[dir.path().join("nope.pdf")]).expect_err("missing");
        assert!(err.to_string().contains("nope.pdf"));
    }
}
