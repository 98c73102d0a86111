//! Corpus loading: text per page from PDFs (pdf-extract) and plain-text files, and the corpus
//! fingerprint used in index cache keys.
//!
//! This module owns the [`Page`] type and every decision about how a source file becomes text:
//! - PDF (`.pdf`): one [`Page`] per PDF page, extracted page by page with pdf-extract's
//!   `output_doc_page` and `PlainTextOutput` (what `extract_text_from_mem_by_pages` does), each
//!   page on its own so a damaged page loses only itself; NFKC-normalised (turns ligature code
//!   points such as U+FB01 "ﬁ" into "fi"); the text is otherwise kept exactly as extracted
//!   (running headers, page numbers and line-end hyphenation stay in).
//! - Plain text (`.txt`, `.md`): the whole file is page 1, unless it contains form feeds
//!   (U+000C, as `pdftotext` writes between pages), in which case each form-feed-separated part is
//!   a page (a single trailing form feed does not open an empty last page). Also NFKC-normalised.
//! - A PDF or text file without any text (every page empty or whitespace) is an error
//!   ([`CorpusError::NoTextLayer`], [`CorpusError::EmptyText`]) that says scanned PDFs need OCR.
//! - BEIR corpus (`.jsonl`): one [`Page`] per document, see [`load_beir_corpus`] (Thakur et al.
//!   2021, "BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information Retrieval
//!   Models"). The page's `source` is the document `_id`, so every chunk carries its document id
//!   and retrieval can be judged per document against BEIR qrels (see
//!   [`crate::score::metrics_for`]).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// The PDF's page tree holds no pages.
    #[error("PDF {path} has no pages")]
    NoPages {
        /// The file.
        path: PathBuf,
    },
    /// Text extraction failed (an error or a panic in pdf-extract) on every page of the PDF.
    #[error(
        "text extraction failed on every page of PDF {path} ({pages} pages; page {first_page}: \
         {first_error})"
    )]
    AllPagesFailed {
        /// The file.
        path: PathBuf,
        /// Number of pages in the PDF.
        pages: usize,
        /// 1-based number of the first page that failed.
        first_page: u32,
        /// pdf-extract's error or panic message for that page.
        first_error: String,
    },
    /// Every page of the PDF extracted to empty or whitespace-only text: a scanned PDF (images
    /// of pages) without a text layer.
    #[error(
        "PDF {path} has no text layer: none of its {pages} pages contains any text. A scanned \
         PDF needs OCR first, e.g. `ocrmypdf in.pdf out.pdf`; then use out.pdf as the corpus"
    )]
    NoTextLayer {
        /// The file.
        path: PathBuf,
        /// Number of pages extracted (all blank).
        pages: usize,
    },
    /// A text file (`.txt`, `.md`) is empty or holds only whitespace (and form feeds).
    #[error(
        "corpus file {path} contains no text (it is empty or only whitespace); if it was \
         converted from a scanned PDF, run OCR on the PDF first (e.g. `ocrmypdf in.pdf \
         out.pdf`) and convert again"
    )]
    EmptyText {
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
    /// A `.pdf` file without the `%PDF-` header in its first 1024 bytes (another format renamed,
    /// an HTML error page saved as .pdf, a truncated download).
    #[error(
        "corpus file {path} ends in .pdf but is not a PDF (no %PDF- header in its first 1024 \
         bytes): replace it with the real PDF, or rename it if it is text"
    )]
    NotPdf {
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
/// - `.pdf`: one page per PDF page, in order, numbered by its page number in the PDF (from 1).
///   Each page is extracted on its own: a page on which pdf-extract fails (returns an error or
///   panics) is skipped with a `tracing` warning naming the file and page, and the other pages
///   keep their numbers. pdf-extract's panic messages are kept off stderr while it runs.
/// - `.txt` / `.md`: page 1 is the whole file, or one page per form-feed-separated part.
/// - `.jsonl`: a BEIR corpus, one page per document ([`load_beir_corpus`]; not NFKC-normalised).
///
/// PDF and text page text is NFKC-normalised. Errors: [`CorpusError::Io`]; [`CorpusError::Pdf`]
/// (the PDF cannot be parsed or decrypted); [`CorpusError::PdfPanic`] (pdf-extract panicked while
/// parsing the document); [`CorpusError::NoPages`]; [`CorpusError::AllPagesFailed`];
/// [`CorpusError::NoTextLayer`] (every page blank: a scanned PDF); [`CorpusError::EmptyText`] (a
/// text file without text); [`CorpusError::NotUtf8`]; [`CorpusError::Unsupported`];
/// [`CorpusError::TooManyPages`]; and for `.jsonl` [`CorpusError::Beir`] and
/// [`CorpusError::NoDocuments`].
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
    let source = source_name(path);
    let pages: Vec<Page> = texts
        .into_iter()
        .map(|(number, text)| Page {
            source: source.clone(),
            number,
            text: normalize(&text),
        })
        .collect();
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        return Err(match kind {
            SourceKind::Pdf => CorpusError::NoTextLayer {
                path: path.to_path_buf(),
                pages: pages.len(),
            },
            _ => CorpusError::EmptyText {
                path: path.to_path_buf(),
            },
        });
    }
    tracing::debug!(file = %path.display(), pages = pages.len(), "loaded corpus file");
    Ok(pages)
}

/// Unicode NFKC normalisation (compatibility decomposition, canonical composition).
pub fn normalize(text: &str) -> String {
    text.nfkc().collect()
}

/// Extract the text of each page of a PDF as `(page number, text)`, in page order.
///
/// The document is parsed (and decrypted with the empty password if it is encrypted, as
/// pdf-extract does) once; then each page is extracted on its own with
/// `pdf_extract::output_doc_page` into a `PlainTextOutput`, inside `catch_unwind`. A page that
/// fails is skipped (see [`collect_pages`]). While this runs, the default panic message for panics
/// on this thread (pdf-extract's message and Rust's "note: run with `RUST_BACKTRACE=1`" hint) is
/// suppressed by `QuietPanics`; panics on other threads are reported as usual.
///
/// Errors: [`CorpusError::Pdf`] if the document cannot be parsed or decrypted,
/// [`CorpusError::PdfPanic`] if parsing it panics, [`CorpusError::NoPages`],
/// [`CorpusError::AllPagesFailed`].
fn extract_pdf_pages(path: &Path, bytes: &[u8]) -> Result<Vec<(u32, String)>, CorpusError> {
    let _quiet = QuietPanics::new();
    let doc = match std::panic::catch_unwind(|| load_pdf(bytes)) {
        Ok(Ok(doc)) => doc,
        Ok(Err(message)) => {
            return Err(CorpusError::Pdf {
                path: path.to_path_buf(),
                message,
            })
        }
        Err(payload) => {
            return Err(CorpusError::PdfPanic {
                path: path.to_path_buf(),
                message: panic_message(payload.as_ref()),
            })
        }
    };
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    collect_pages(path, &numbers, |number| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| extract_pdf_page(&doc, number))) {
            Ok(result) => result,
            Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
        }
    })
}

/// Parse PDF bytes with lopdf and decrypt with the empty password if encrypted (pdf-extract's
/// `extract_text_from_mem_by_pages` does the same). Errors are returned as messages.
fn load_pdf(bytes: &[u8]) -> Result<pdf_extract::Document, String> {
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(|e| e.to_string())?;
    if doc.is_encrypted() {
        doc.decrypt("")
            .map_err(|e| format!("encrypted PDF, cannot decrypt without a password: {e}"))?;
    }
    Ok(doc)
}

/// The plain text of one page (1-based `number`) as pdf-extract's `extract_text_by_page` makes it.
fn extract_pdf_page(doc: &pdf_extract::Document, number: u32) -> Result<String, String> {
    let mut text = String::new();
    {
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc_page(doc, &mut output, number).map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// Run `extract` on each page number and keep the pages that succeed, as `(number, text)` in the
/// given order. A failed page (`Err(message)`) is logged with `tracing::warn!` naming the file,
/// page and message, and skipped; the other pages keep their numbers.
///
/// Errors: [`CorpusError::NoPages`] if `numbers` is empty, [`CorpusError::AllPagesFailed`] (with
/// the first failure) if every page fails.
fn collect_pages(
    path: &Path,
    numbers: &[u32],
    mut extract: impl FnMut(u32) -> Result<String, String>,
) -> Result<Vec<(u32, String)>, CorpusError> {
    if numbers.is_empty() {
        return Err(CorpusError::NoPages {
            path: path.to_path_buf(),
        });
    }
    let mut pages = Vec::with_capacity(numbers.len());
    let mut first_failure: Option<(u32, String)> = None;
    for &number in numbers {
        match extract(number) {
            Ok(text) => pages.push((number, text)),
            Err(message) => {
                tracing::warn!(
                    file = %path.display(),
                    page = number,
                    error = %message,
                    "cannot extract the text of this PDF page; skipping it"
                );
                first_failure.get_or_insert((number, message));
            }
        }
    }
    match (pages.is_empty(), first_failure) {
        (true, Some((first_page, first_error))) => Err(CorpusError::AllPagesFailed {
            path: path.to_path_buf(),
            pages: numbers.len(),
            first_page,
            first_error,
        }),
        _ => Ok(pages),
    }
}

/// The panic hook that was installed before [`QuietPanics`] replaced it.
type PanicHook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Process-wide state of the quieting panic hook: how many [`QuietPanics`] guards are alive (on
/// any thread) and the hook it replaced.
struct QuietHookState {
    guards: usize,
    previous: Option<Arc<PanicHook>>,
}

static QUIET_HOOK: Mutex<QuietHookState> = Mutex::new(QuietHookState {
    guards: 0,
    previous: None,
});

thread_local! {
    /// Number of [`QuietPanics`] guards alive on this thread.
    static QUIET_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// While alive, panics on the creating thread print nothing (they are expected to be caught with
/// `catch_unwind` and reported as errors); panics on other threads go to the previous panic hook
/// as usual. The first guard (process-wide) takes the current hook and installs a filtering one;
/// the last guard dropped puts the previous hook back. Panic hooks are process-global, hence the
/// per-thread filter and the guard count: concurrent extractions on several threads are safe.
struct QuietPanics {
    /// Not `Send`: the guard must be dropped on the thread that created it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl QuietPanics {
    fn new() -> Self {
        QUIET_DEPTH.with(|d| d.set(d.get() + 1));
        let mut state = QUIET_HOOK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.guards == 0 {
            let previous: Arc<PanicHook> = Arc::new(std::panic::take_hook());
            let forward = Arc::clone(&previous);
            std::panic::set_hook(Box::new(move |info| {
                let quiet = QUIET_DEPTH.try_with(|d| d.get() > 0).unwrap_or(false);
                if !quiet {
                    forward(info);
                }
            }));
            state.previous = Some(previous);
        }
        state.guards += 1;
        QuietPanics {
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        let mut state = QUIET_HOOK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.guards = state.guards.saturating_sub(1);
        // `take_hook`/`set_hook` panic on a panicking thread: then leave the filtering hook in
        // place (it forwards every panic of other threads, and of this one once unwound).
        if state.guards > 0 || std::thread::panicking() {
            return;
        }
        if let Some(previous) = state.previous.take() {
            drop(std::panic::take_hook()); // ours, which holds the other reference
            match Arc::try_unwrap(previous) {
                Ok(hook) => std::panic::set_hook(hook),
                Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
            }
        }
    }
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

/// Decode a UTF-8 text file and split it into pages on form feeds (U+000C), numbered from 1. A
/// text without form feeds is one page; a single trailing form feed does not create an empty last
/// page.
fn split_text_pages(path: &Path, bytes: &[u8]) -> Result<Vec<(u32, String)>, CorpusError> {
    let text = std::str::from_utf8(bytes).map_err(|e| CorpusError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.valid_up_to(),
    })?;
    split_form_feeds(text)
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let number = u32::try_from(i + 1).map_err(|_| CorpusError::TooManyPages {
                path: path.to_path_buf(),
            })?;
            Ok((number, part))
        })
        .collect()
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
/// document, its title or id changes the fingerprint.
///
/// Since every experiment is fingerprinted when it is read, this is also where a corpus that
/// cannot load is caught before any work: errors are [`CorpusError::Io`] naming the unreadable
/// file, [`CorpusError::Unsupported`] for an unknown extension and [`CorpusError::NotPdf`] for a
/// `.pdf` without a PDF header.
pub fn corpus_fingerprint(paths: &[PathBuf]) -> Result<String, CorpusError> {
    let mut hasher = Sha256::new();
    for path in paths {
        let name = source_name(path);
        let kind = source_kind(path).ok_or_else(|| CorpusError::Unsupported {
            path: path.to_path_buf(),
        })?;
        let bytes = read_bytes(path)?;
        if kind == SourceKind::Pdf && !has_pdf_header(&bytes) {
            return Err(CorpusError::NotPdf {
                path: path.to_path_buf(),
            });
        }
        hash_framed(&mut hasher, name.as_bytes());
        hash_framed(&mut hasher, &bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `bytes` hold the `%PDF-` header within their first 1024 bytes: readers accept
/// leading bytes before it up to there (poppler's `PDFDoc::checkHeader`, pdf.js's header search).
fn has_pdf_header(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
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
    fn fingerprinting_refuses_what_cannot_load_before_any_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = write_file(dir.path(), "manual.pdf", b"<html>404 Not Found</html>");
        let err = corpus_fingerprint(&[fake]).unwrap_err();
        assert!(matches!(err, CorpusError::NotPdf { .. }), "{err}");
        assert!(err.to_string().contains("manual.pdf"), "{err}");
        let docx = write_file(dir.path(), "notes.docx", b"PK\x03\x04");
        let err = corpus_fingerprint(&[docx]).unwrap_err();
        assert!(matches!(err, CorpusError::Unsupported { .. }), "{err}");
        // leading bytes before the header are allowed, as PDF readers allow them
        let padded = write_file(dir.path(), "padded.pdf", b"\n\n%PDF-1.4\n...");
        assert_eq!(corpus_fingerprint(&[padded]).unwrap().len(), 64);
        let late = [vec![b' '; 1024], b"%PDF-1.4".to_vec()].concat();
        let late = write_file(dir.path(), "late.pdf", &late);
        assert!(corpus_fingerprint(&[late]).is_err());
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
            CorpusError::Pdf { .. }
                | CorpusError::PdfPanic { .. }
                | CorpusError::NoPages { .. }
                | CorpusError::AllPagesFailed { .. }
        ));
        assert!(err.to_string().contains("junk.pdf"));
    }

    /// Serialises the tests that swap or rely on the process-wide panic hook.
    static HOOK_LOCK: Mutex<()> = Mutex::new(());

    fn hook_lock() -> std::sync::MutexGuard<'static, ()> {
        HOOK_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A page of a test PDF: its text (drawn in Courier), and whether it has a MediaBox.
    struct TestPage {
        text: &'static str,
        media_box: bool,
    }

    /// A minimal PDF (lopdf, via pdf-extract's re-export) with one content stream per page.
    /// MediaBoxes are set per page, never inherited, so a page without one is damaged:
    /// pdf-extract panics on it (`expect("MediaBox")`).
    fn test_pdf(pages: &[TestPage]) -> Vec<u8> {
        use pdf_extract::{Dictionary, Document, Object, Stream};
        let name = |n: &str| Object::Name(n.as_bytes().to_vec());
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let mut font = Dictionary::new();
        font.set("Type", name("Font"));
        font.set("Subtype", name("Type1"));
        font.set("BaseFont", name("Courier"));
        let font_id = doc.add_object(font);
        let mut fonts = Dictionary::new();
        fonts.set("F1", Object::Reference(font_id));
        let mut resources = Dictionary::new();
        resources.set("Font", Object::Dictionary(fonts));
        let resources_id = doc.add_object(resources);
        let mut kids = Vec::new();
        for page in pages {
            let content = if page.text.is_empty() {
                Vec::new()
            } else {
                format!("BT /F1 12 Tf 72 700 Td ({}) Tj ET", page.text).into_bytes()
            };
            let content_id = doc.add_object(Stream::new(Dictionary::new(), content));
            let mut dict = Dictionary::new();
            dict.set("Type", name("Page"));
            dict.set("Parent", Object::Reference(pages_id));
            dict.set("Contents", Object::Reference(content_id));
            dict.set("Resources", Object::Reference(resources_id));
            if page.media_box {
                let media_box = [0, 0, 612, 792].map(Object::Integer).to_vec();
                dict.set("MediaBox", Object::Array(media_box));
            }
            kids.push(Object::Reference(doc.add_object(dict)));
        }
        let mut tree = Dictionary::new();
        tree.set("Type", name("Pages"));
        tree.set("Count", Object::Integer(kids.len() as i64));
        tree.set("Kids", Object::Array(kids));
        doc.objects.insert(pages_id, Object::Dictionary(tree));
        let mut catalog = Dictionary::new();
        catalog.set("Type", name("Catalog"));
        catalog.set("Pages", Object::Reference(pages_id));
        let catalog_id = doc.add_object(catalog);
        doc.trailer.set("Root", Object::Reference(catalog_id));
        let mut bytes = Vec::new();
        doc.save_to(&mut bytes).expect("save test pdf");
        bytes
    }

    #[test]
    fn a_damaged_pdf_page_loses_only_itself() {
        let _lock = hook_lock();
        let dir = tempfile::tempdir().expect("tempdir");
        let page = |text, media_box| TestPage { text, media_box };
        let bytes = test_pdf(&[
            page("page one", true),
            page("page two", false),
            page("page three", true),
        ]);
        let path = write_file(dir.path(), "damaged.pdf", &bytes);
        let pages = load_pages(&path).expect("the undamaged pages load");
        let got: Vec<(u32, String)> = pages
            .iter()
            .map(|p| (p.number, p.text.trim().to_string()))
            .collect();
        assert_eq!(
            got,
            [(1, "page one".to_string()), (3, "page three".to_string())]
        );
        assert!(pages.iter().all(|p| p.source == "damaged.pdf"));

        // Every page damaged: an error naming the file and the first failure, not a panic.
        let bytes = test_pdf(&[page("a", false), page("b", false)]);
        let path = write_file(dir.path(), "broken.pdf", &bytes);
        let err = load_pages(&path).expect_err("all pages damaged");
        assert!(
            matches!(
                err,
                CorpusError::AllPagesFailed {
                    pages: 2,
                    first_page: 1,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("broken.pdf") && msg.contains("MediaBox"),
            "{msg}"
        );
    }

    #[test]
    fn pdf_without_text_layer_is_an_error_with_an_ocr_hint() {
        let _lock = hook_lock();
        let dir = tempfile::tempdir().expect("tempdir");
        let blank = || TestPage {
            text: "",
            media_box: true,
        };
        let path = write_file(dir.path(), "scan.pdf", &test_pdf(&[blank(), blank()]));
        let err = load_pages(&path).expect_err("no text");
        assert!(
            matches!(err, CorpusError::NoTextLayer { pages: 2, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("scan.pdf") && msg.contains("OCR") && msg.contains("ocrmypdf"),
            "{msg}"
        );
        // One page with text is enough; the blank page is kept.
        let text = TestPage {
            text: "words",
            media_box: true,
        };
        let path = write_file(dir.path(), "mixed.pdf", &test_pdf(&[blank(), text]));
        let pages = load_pages(&path).expect("one page has text");
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[1].text.trim(), "words");
    }

    #[test]
    fn text_file_without_text_is_an_error_with_an_ocr_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in [
            ("empty.txt", &b""[..]),
            ("blank.md", &b" \n\t\x0c \x0c\n"[..]),
        ] {
            let path = write_file(dir.path(), name, bytes);
            let err = load_pages(&path).expect_err("no text");
            assert!(matches!(err, CorpusError::EmptyText { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(name) && msg.contains("no text") && msg.contains("ocrmypdf"),
                "{msg}"
            );
        }
    }

    #[test]
    fn collect_pages_skips_failed_pages_and_keeps_numbers() {
        let path = Path::new("x.pdf");
        let pages = collect_pages(path, &[1, 2, 3], |n| {
            if n == 2 {
                Err("bad page".into())
            } else {
                Ok(format!("text {n}"))
            }
        })
        .expect("two pages");
        assert_eq!(
            pages,
            [(1, "text 1".to_string()), (3, "text 3".to_string())]
        );
        let err = collect_pages(path, &[4, 5], |n| Err(format!("bad {n}"))).expect_err("all");
        assert!(
            matches!(
                &err,
                CorpusError::AllPagesFailed { pages: 2, first_page: 4, first_error, .. }
                    if first_error == "bad 4"
            ),
            "{err}"
        );
        let err = collect_pages(path, &[], |_| Ok(String::new())).expect_err("none");
        assert!(matches!(err, CorpusError::NoPages { .. }), "{err}");
    }

    #[test]
    fn quiet_panics_silences_only_this_thread_and_restores_the_hook() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let _lock = hook_lock();
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let original: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        // Count only this test's threads: other tests may run (and fail) concurrently.
        let test_thread = std::thread::current().id();
        std::panic::set_hook(Box::new(move |_| {
            let current = std::thread::current();
            if current.id() == test_thread || current.name() == Some("quiet-test-other") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }));
        {
            let _quiet = QuietPanics::new();
            let _nested = QuietPanics::new();
            assert!(std::panic::catch_unwind(|| panic!("quiet")).is_err());
            assert_eq!(
                calls.load(Ordering::SeqCst),
                0,
                "panic on this thread printed"
            );
            std::thread::Builder::new()
                .name("quiet-test-other".into())
                .spawn(|| std::panic::catch_unwind(|| panic!("other thread")))
                .expect("spawn")
                .join()
                .expect("thread")
                .expect_err("panicked");
            assert_eq!(
                calls.load(Ordering::SeqCst),
                1,
                "other thread's panic hidden"
            );
        }
        assert!(std::panic::catch_unwind(|| panic!("loud again")).is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "hook not restored");
        drop(std::panic::take_hook());
        match Arc::try_unwrap(original) {
            Ok(hook) => std::panic::set_hook(hook),
            Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
        }
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
