//! On-disk index cache: `store/indexes/<IndexKey digest>/` holds
//!
//! - `chunks.jsonl` — one [`Chunk`] as JSON per line, in id order;
//! - `dense/` — the LMDB environment of the arroy index ([`DenseIndex`]);
//! - `lexical/` — the tantivy index ([`LexicalIndex`]);
//! - `meta.json` — [`Meta`]: the key, counts, dimension, build time.
//!
//! A build writes everything into a private `store/indexes/.tmp-<digest>-<pid>-<nanos>/` and
//! renames it to its final name only when complete, so a process killed mid-build never leaves a
//! half index under the final name; its temporary directory is removed by a later build of the
//! same key once its process is gone. If two processes build the same key at once, the first
//! rename wins and the other reuses its result. A final directory that exists but cannot be opened
//! is reported as an error (delete it to rebuild).

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{CorpusIndex, DenseIndex, IndexError, IndexKey, LexicalIndex};
use crate::corpus::Page;
use crate::embed::Embedder;
use crate::split::{Chunk, RecursiveCharacterTextSplitter};

/// Chunks embedded per progress log line.
const EMBED_LOG_EVERY: usize = 256;

/// What [`open_or_build`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BuildInfo {
    /// True if an existing cached index was opened; false if it was built now.
    pub cache_hit: bool,
    /// Wall-clock seconds spent in this call (opening on a hit; split + embed + index on a miss).
    pub build_seconds: f64,
    /// Number of chunks in the index.
    pub n_chunks: usize,
    /// The index directory (`store/indexes/<digest>`).
    pub dir: PathBuf,
}

/// Contents of `meta.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// [`IndexKey::FORMAT_VERSION`] at build time.
    pub format_version: u32,
    /// The key the index was built for.
    pub key: IndexKey,
    /// Number of chunks.
    pub n_chunks: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Seconds the build took (split + embed + index).
    pub build_seconds: f64,
}

/// Opens the cached index for `key` under `store_dir/indexes/<key.digest()>`, or builds it: calls
/// `pages` for the corpus text, splits it with `RecursiveCharacterTextSplitter::new(key.chunk_size,
/// key.chunk_overlap)` (characters), embeds every chunk with `embedder`, and writes the dense and
/// lexical indexes (atomically, see the module doc). `pages` is not called on a cache hit.
///
/// Errors: [`IndexError::EmbedderMismatch`] if `key.embedder_fingerprint` differs from
/// `embedder.fingerprint()`; [`IndexError::Pages`] from the callback; [`IndexError::Split`] for
/// invalid sizes; [`IndexError::Embed`]; I/O, LMDB, arroy and tantivy errors.
pub fn open_or_build<E>(
    store_dir: &Path,
    key: &IndexKey,
    pages: impl FnOnce() -> Result<Vec<Page>, E>,
    embedder: &Embedder,
) -> Result<(CorpusIndex, BuildInfo), IndexError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if key.embedder_fingerprint != embedder.fingerprint() {
        return Err(IndexError::EmbedderMismatch {
            key: key.embedder_fingerprint.clone(),
            embedder: embedder.fingerprint().to_string(),
        });
    }
    let started = Instant::now();
    let indexes = store_dir.join("indexes");
    let digest = key.digest();
    let dir = indexes.join(&digest);
    let cache_hit = dir.join(META_FILE).is_file();
    if !cache_hit {
        build_into_place(&indexes, &digest, key, pages, embedder)?;
    }
    let index = open(&dir)?;
    let info = BuildInfo {
        cache_hit,
        build_seconds: started.elapsed().as_secs_f64(),
        n_chunks: index.len(),
        dir,
    };
    Ok((index, info))
}

/// Opens an existing index directory (`store/indexes/<digest>`) for reading only: chunks into
/// memory, dense vectors into memory, tantivy reader. For the worker subprocess.
/// Errors: [`IndexError::Io`] / [`IndexError::Json`] for missing or bad files,
/// [`IndexError::Corrupt`] if the parts disagree, LMDB/arroy/tantivy open errors.
pub fn open(dir: &Path) -> Result<CorpusIndex, IndexError> {
    let meta = read_meta(dir)?;
    if meta.format_version != IndexKey::FORMAT_VERSION {
        return Err(IndexError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!(
                "format version {} (this build reads {})",
                meta.format_version,
                IndexKey::FORMAT_VERSION
            ),
        });
    }
    let chunks = read_chunks(&dir.join(CHUNKS_FILE))?;
    if chunks.len() != meta.n_chunks {
        return Err(IndexError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!(
                "meta.json says {} chunks, found {}",
                meta.n_chunks,
                chunks.len()
            ),
        });
    }
    let dense = DenseIndex::open(&dir.join(DENSE_DIR))?;
    let lexical = LexicalIndex::open(&dir.join(LEXICAL_DIR))?;
    CorpusIndex::new(dir.to_path_buf(), chunks, dense, lexical)
}

/// Reads `meta.json` of an index directory.
pub fn read_meta(dir: &Path) -> Result<Meta, IndexError> {
    let path = dir.join(META_FILE);
    let text = fs::read_to_string(&path).map_err(|source| IndexError::Io {
        op: "read",
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| IndexError::Json { path, source })
}

/// The chunks of the index directory `dir` (its `chunks.jsonl`), without opening the dense and
/// lexical indexes. Errors: [`IndexError::Io`] / [`IndexError::Json`].
pub fn read_index_chunks(dir: &Path) -> Result<Vec<Chunk>, IndexError> {
    read_chunks(&dir.join(CHUNKS_FILE))
}

/// Name of the file whose presence marks a complete index directory.
pub const META_FILE: &str = "meta.json";
const CHUNKS_FILE: &str = "chunks.jsonl";
const DENSE_DIR: &str = "dense";
const LEXICAL_DIR: &str = "lexical";
const TMP_PREFIX: &str = ".tmp-";

/// Builds the index for `key` in a temporary directory under `indexes` and renames it to
/// `indexes/<digest>`. If another process renamed its build first, ours is discarded.
fn build_into_place<E>(
    indexes: &Path,
    digest: &str,
    key: &IndexKey,
    pages: impl FnOnce() -> Result<Vec<Page>, E>,
    embedder: &Embedder,
) -> Result<(), IndexError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    create_dir(indexes)?;
    remove_stale_tmp_dirs(indexes, digest);
    let tmp = TmpDir::new(indexes.join(tmp_name(digest)));
    create_dir(tmp.path())?;
    let started = Instant::now();
    tracing::info!(dir = %tmp.path().display(), "building index");
    let pages = pages().map_err(|e| IndexError::Pages(e.into()))?;
    let splitter = RecursiveCharacterTextSplitter::new(key.chunk_size, key.chunk_overlap)?;
    let chunks = splitter.split_pages(&pages);
    let vectors = embed_chunks(&chunks, embedder)?;
    write_chunks(&tmp.path().join(CHUNKS_FILE), &chunks)?;
    DenseIndex::build(&tmp.path().join(DENSE_DIR), &vectors, embedder.dim())?;
    LexicalIndex::build(&tmp.path().join(LEXICAL_DIR), &chunks)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let meta = Meta {
        format_version: IndexKey::FORMAT_VERSION,
        key: key.clone(),
        n_chunks: chunks.len(),
        dim: embedder.dim(),
        build_seconds,
    };
    write_json(&tmp.path().join(META_FILE), &meta)?;
    let dir = indexes.join(digest);
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            tmp.disarm();
            tracing::info!(
                dir = %dir.display(),
                n_chunks = chunks.len(),
                build_seconds,
                "built index"
            );
            Ok(())
        }
        Err(_) if dir.join(META_FILE).is_file() => {
            tracing::info!(dir = %dir.display(), "another process built this index first");
            Ok(())
        }
        Err(source) => Err(IndexError::Io {
            op: "rename",
            path: dir,
            source,
        }),
    }
}

/// Embeds chunk texts, logging progress every [`EMBED_LOG_EVERY`] chunks.
fn embed_chunks(chunks: &[Chunk], embedder: &Embedder) -> Result<Vec<Vec<f32>>, IndexError> {
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(chunks.len());
    for part in chunks.chunks(EMBED_LOG_EVERY) {
        let texts: Vec<&str> = part.iter().map(|c| c.text.as_str()).collect();
        vectors.extend(embedder.embed(&texts)?);
        tracing::info!(
            done = vectors.len(),
            total = chunks.len(),
            seconds = started.elapsed().as_secs_f64(),
            "embedding chunks"
        );
    }
    Ok(vectors)
}

/// `.tmp-<digest>-<pid>-<nanos>`: unique per process and call.
fn tmp_name(digest: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{TMP_PREFIX}{digest}-{}-{nanos}", std::process::id())
}

/// Removes `.tmp-<digest>-<pid>-*` directories whose process no longer exists (builds that were
/// killed). Best effort: failures are logged and ignored.
fn remove_stale_tmp_dirs(indexes: &Path, digest: &str) {
    let Ok(entries) = fs::read_dir(indexes) else {
        return;
    };
    let prefix = format!("{TMP_PREFIX}{digest}-");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            tracing::info!(dir = %entry.path().display(), "removing stale partial index build");
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove");
            }
        }
    }
}

/// True if a process with this pid exists (`kill(pid, 0)` succeeds or fails with EPERM).
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A temporary build directory removed on drop unless [`TmpDir::disarm`]ed.
struct TmpDir {
    path: PathBuf,
    armed: bool,
}

impl TmpDir {
    fn new(path: PathBuf) -> Self {
        TmpDir { path, armed: true }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (it has been renamed into place).
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if self.armed && self.path.exists() {
            if let Err(e) = fs::remove_dir_all(&self.path) {
                tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove temporary index");
            }
        }
    }
}

fn create_dir(path: &Path) -> Result<(), IndexError> {
    fs::create_dir_all(path).map_err(|source| IndexError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes chunks as JSON lines.
fn write_chunks(path: &Path, chunks: &[Chunk]) -> Result<(), IndexError> {
    let io = |source| IndexError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(fs::File::create(path).map_err(io)?);
    for chunk in chunks {
        serde_json::to_writer(&mut out, chunk).map_err(|source| IndexError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Reads chunks from JSON lines (blank lines ignored).
fn read_chunks(path: &Path) -> Result<Vec<Chunk>, IndexError> {
    let io = |source| IndexError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(fs::File::open(path).map_err(io)?);
    let mut chunks = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let chunk = serde_json::from_str(&line).map_err(|source| IndexError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        chunks.push(chunk);
    }
    Ok(chunks)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), IndexError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| IndexError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    fs::write(path, text).map_err(|source| IndexError::Io {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_through_jsonl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.jsonl");
        let chunks = vec![
            Chunk {
                id: 0,
                source: "a.pdf".into(),
                page: 1,
                start: 0,
                text: "line one\nline \"two\"".into(),
            },
            Chunk {
                id: 1,
                source: "a.pdf".into(),
                page: 2,
                start: 17,
                text: "é ﬁ".into(),
            },
        ];
        write_chunks(&path, &chunks).expect("write");
        assert_eq!(read_chunks(&path).expect("read"), chunks);
    }

    #[test]
    fn stale_tmp_dirs_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let digest = "d1";
        // pid i32::MAX cannot exist (pid_max <= 2^22); our own pid is alive.
        let dead = dir
            .path()
            .join(format!("{TMP_PREFIX}{digest}-{}-1", i32::MAX));
        let alive = dir
            .path()
            .join(format!("{TMP_PREFIX}{digest}-{}-1", std::process::id()));
        let other = dir.path().join(format!("{TMP_PREFIX}d2-{}-1", i32::MAX));
        for d in [&dead, &alive, &other] {
            fs::create_dir_all(d).expect("mkdir");
        }
        remove_stale_tmp_dirs(dir.path(), digest);
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(other.exists());
    }

    #[test]
    fn tmp_dir_guard_removes_unless_disarmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir_all(&a).expect("mkdir");
        fs::create_dir_all(&b).expect("mkdir");
        drop(TmpDir::new(a.clone()));
        TmpDir::new(b.clone()).disarm();
        assert!(!a.exists());
        assert!(b.exists());
    }
}
