//! Lexical index: tantivy BM25 over chunk texts.
//!
//! Analyzer: tantivy's built-in `en_stem` (SimpleTokenizer splitting on non-alphanumerics, tokens
//! over 40 bytes dropped, lowercase, Snowball English stemmer). Scoring: tantivy's BM25 (k1 = 1.2,
//! b = 0.75, idf = ln(1 + (N - n + 0.5) / (n + 0.5)), document lengths in 256 buckets) — not
//! rank_bm25's BM25Okapi used by the LangChain seed (k1 = 1.5, b = 0.75, idf
//! ln((N - n + 0.5) / (n + 0.5)) with negative values floored to 0.25 × the mean idf, exact
//! document lengths, case-sensitive `str.split()` tokens), which [`super::okapi`] implements.
//! Queries are never parsed: the query text goes through the same analyzer and each token becomes
//! an optional (`Should`) term clause, so arbitrary user text (quotes, colons, parentheses,
//! `AND`, `-x`) can never fail to parse, and a repeated token counts once per occurrence, as in
//! rank_bm25's `get_scores`.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::BooleanQuery;
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::tokenizer::TokenStream;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::IndexError;
use crate::split::Chunk;

/// Name of the analysed text field.
const TEXT_FIELD: &str = "text";
/// Name of the fast u64 field holding the chunk id.
const ID_FIELD: &str = "chunk_id";
/// Name of the tantivy analyzer (built in; registered on every index).
pub const ANALYZER: &str = "en_stem";
/// Indexing memory budget for the single writer thread, bytes.
const WRITER_MEMORY: usize = 50_000_000;

/// A BM25 index opened for reading.
pub struct LexicalIndex {
    index: Index,
    reader: IndexReader,
    text: Field,
}

impl std::fmt::Debug for LexicalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LexicalIndex")
            .field("num_docs", &self.num_docs())
            .finish()
    }
}

/// The schema: `text` (analysed with [`ANALYZER`], frequencies and positions, not stored) and
/// `chunk_id` (u64 fast field).
fn schema() -> (Schema, Field, Field) {
    let mut builder = Schema::builder();
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let text = builder.add_text_field(
        TEXT_FIELD,
        TextOptions::default().set_indexing_options(indexing),
    );
    let id = builder.add_u64_field(ID_FIELD, FAST);
    (builder.build(), text, id)
}

impl LexicalIndex {
    /// Creates a tantivy index in `dir` (created if needed; must not already hold an index) with
    /// one document per chunk, using one writer thread so documents stay in chunk order, commits
    /// and waits for merges, so `dir` may be renamed afterwards.
    /// Errors: [`IndexError::Io`], [`IndexError::Tantivy`].
    pub fn build(dir: &Path, chunks: &[Chunk]) -> Result<(), IndexError> {
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            op: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let (schema, text, id) = schema();
        let index = Index::create_in_dir(dir, schema)?;
        let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        for chunk in chunks {
            let mut doc = TantivyDocument::default();
            doc.add_text(text, &chunk.text);
            doc.add_u64(id, u64::from(chunk.id));
            writer.add_document(doc)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        Ok(())
    }

    /// Opens the index in `dir` for reading (no file watcher: the index never changes).
    /// Errors: [`IndexError::Tantivy`] if `dir` holds no index or not ours.
    pub fn open(dir: &Path) -> Result<LexicalIndex, IndexError> {
        let index = Index::open_in_dir(dir)?;
        let text = index.schema().get_field(TEXT_FIELD)?;
        index.schema().get_field(ID_FIELD)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(LexicalIndex {
            index,
            reader,
            text,
        })
    }

    /// Number of indexed documents (chunks).
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The analyzed terms of `text` (lowercased, stemmed), in order, duplicates kept.
    pub fn analyze(&self, text: &str) -> Result<Vec<String>, IndexError> {
        let mut analyzer = self.index.tokenizer_for_field(self.text)?;
        let mut stream = analyzer.token_stream(text);
        let mut tokens = Vec::new();
        while stream.advance() {
            tokens.push(stream.token().text.clone());
        }
        Ok(tokens)
    }

    /// BM25 search: up to `k` `(chunk_id, score)` sorted by score descending, ties by chunk id
    /// ascending. Only chunks containing at least one query term are returned, so the result can
    /// be shorter than `k` (empty for a query with no indexable token, or `k == 0`).
    /// Errors: [`IndexError::Tantivy`] on a read failure.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<(u32, f32)>, IndexError> {
        let terms: Vec<Term> = self
            .analyze(query)?
            .iter()
            .map(|t| Term::from_field_text(self.text, t))
            .collect();
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let query = BooleanQuery::new_multiterms_query(terms);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = searcher
                .segment_reader(address.segment_ord)
                .fast_fields()
                .u64(ID_FIELD)?;
            let id = column.first(address.doc_id).ok_or_else(|| {
                tantivy::TantivyError::InternalError(format!(
                    "document {address:?} has no chunk id"
                ))
            })?;
            let id = u32::try_from(id).map_err(|_| {
                tantivy::TantivyError::InternalError(format!("chunk id {id} exceeds u32"))
            })?;
            hits.push((id, score));
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: u32, text: &str) -> Chunk {
        Chunk {
            id,
            source: "t.txt".into(),
            page: 1,
            start: 0,
            text: text.into(),
        }
    }

    fn build(chunks: &[Chunk]) -> (tempfile::TempDir, LexicalIndex) {
        let dir = tempfile::tempdir().expect("tempdir");
        LexicalIndex::build(dir.path(), chunks).expect("build");
        let index = LexicalIndex::open(dir.path()).expect("open");
        (dir, index)
    }

    fn corpus() -> Vec<Chunk> {
        vec![
            chunk(0, "The Director schedules backup jobs."),
            chunk(1, "The Storage daemon writes Volumes to tape."),
            chunk(2, "Restoring files: use the restore command in bconsole."),
            chunk(3, "Volumes are labelled; a labelled volume joins a pool."),
            chunk(4, "Nothing relevant here at all."),
        ]
    }

    #[test]
    fn stemming_and_lowercase_match_across_forms() {
        let (_dir, index) = build(&corpus());
        assert_eq!(index.num_docs(), 5);
        // "restores" stems to "restor", matching "Restoring" and "restore".
        let hits = index.search("RESTORES", 3).expect("search");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, 2);
        assert!(hits[0].1 > 0.0);
    }

    #[test]
    fn higher_term_frequency_ranks_first() {
        let (_dir, index) = build(&corpus());
        let hits = index.search("volume", 5).expect("search");
        let ids: Vec<u32> = hits.iter().map(|h| h.0).collect();
        // Chunk 3 has "Volumes" and "volume" (tf 2) in a short text; chunk 1 has tf 1.
        assert_eq!(ids, vec![3, 1]);
        assert!(hits[0].1 > hits[1].1);
    }

    #[test]
    fn hostile_query_syntax_never_errors() {
        let (_dir, index) = build(&corpus());
        for q in [
            "\"unbalanced quote",
            "field:value (paren",
            "AND OR NOT -tape +daemon",
            "a:b:c ~2 ^3 [1 TO 5}",
            "",
            "   ",
            "!!!",
            "*",
        ] {
            let hits = index.search(q, 5).expect(q);
            assert!(hits.len() <= 5);
        }
        // Syntax characters are just separators: "-tape" still matches "tape".
        let hits = index.search("-tape", 5).expect("search");
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn k_limits_and_zero_k_is_empty() {
        let (_dir, index) = build(&corpus());
        assert_eq!(index.search("the volumes", 1).expect("search").len(), 1);
        assert!(index.search("the", 0).expect("search").is_empty());
    }

    #[test]
    fn analyze_lowercases_stems_and_splits_punctuation() {
        let (_dir, index) = build(&corpus());
        let tokens = index.analyze("Running JOBS: daemon's").expect("analyze");
        assert_eq!(tokens, vec!["run", "job", "daemon", "s"]);
    }
}
