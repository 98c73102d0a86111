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

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// One page of a source document. `number` is 1-based (the PDF page index + 1; 1 for text files).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Page {
    /// File name of the source document (no directory), e.g. `main.pdf`.
    pub source: String,
    /// 1-based page number.
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
    /// The file extension is none of `pdf`, `txt`, `md` (case-insensitive).
    #[error("unsupported corpus file {path}: expected a .pdf, .txt or .md file")]
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
}

/// Classify `path` by its extension (case-insensitive).
fn source_kind(path: &Path) -> Option<SourceKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => Some(SourceKind::Pdf),
        "txt" | "md" => Some(SourceKind::Text),
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
///
/// All page text is NFKC-normalised. Errors: [`CorpusError::Io`], [`CorpusError::Pdf`],
/// [`CorpusError::PdfPanic`] (pdf-extract panics are caught), [`CorpusError::NoPages`],
/// [`CorpusError::NotUtf8`], [`CorpusError::Unsupported`], [`CorpusError::TooManyPages`].
pub fn load_pages(path: &Path) -> Result<Vec<Page>, CorpusError> {
    let kind = source_kind(path).ok_or_else(|| CorpusError::Unsupported {
        path: path.to_path_buf(),
    })?;
    let bytes = read_bytes(path)?;
    let texts = match kind {
        SourceKind::Pdf => extract_pdf_pages(path, &bytes)?,
        SourceKind::Text => split_text_pages(path, &bytes)?,
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

/// Hex-encoded SHA-256 fingerprint of a list of corpus files, for index cache keys.
///
/// For each path in the given order it hashes the file name (no directory, so moving a corpus
/// keeps its cache) and the file bytes, each preceded by its length as a little-endian `u64` so
/// that different (name, content) sequences never hash the same input. The result is 64 lowercase
/// hex characters. Errors: [`CorpusError::Io`] naming the unreadable file.
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
