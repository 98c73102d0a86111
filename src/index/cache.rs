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
//! rename wins and the other reuses its result.
//!
//! A final directory that exists but cannot be opened (no `meta.json`, a missing or truncated
//! file, an LMDB/tantivy/JSON error, parts that disagree, an old format version) is logged as a
//! warning naming the directory and the reason, renamed aside to
//! `store/indexes/.corrupt-<digest>-<pid>-<nanos>/`, removed, and built again. A `.corrupt-`
//! directory that could not be removed is removed by a later build of the same key once its
//! process is gone.
//!
//! Running out of disk space while building reads "disk full while writing <path>: free space or
//! point --store at another disk" (see [`IndexError::is_disk_full`]).

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
/// A cached directory that cannot be opened is logged, removed and rebuilt (`cache_hit` is then
/// false); see the module doc.
///
/// Errors: [`IndexError::EmbedderMismatch`] if `key.embedder_fingerprint` differs from
/// `embedder.fingerprint()`; [`IndexError::Pages`] from the callback; [`IndexError::Split`] for
/// invalid sizes; [`IndexError::Embed`]; I/O, LMDB, arroy and tantivy errors (a full disk as an
/// [`IndexError::Io`] reading "disk full while writing <path>"); an error opening the index just
/// built.
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
    let (index, cache_hit) = open_or_build_with(&indexes, &digest, |tmp| {
        write_index(tmp, key, pages, embedder)
    })?;
    let info = BuildInfo {
        cache_hit,
        build_seconds: started.elapsed().as_secs_f64(),
        n_chunks: index.len(),
        dir: indexes.join(&digest),
    };
    Ok((index, info))
}

/// Opens `indexes/<digest>`, or, when it is absent or cannot be opened (then it is discarded, see
/// [`discard_broken`]), builds it with `write` (which fills a fresh temporary directory, see
/// [`build_into_place`]) and opens the result. Returns the index and whether it was a cache hit.
fn open_or_build_with(
    indexes: &Path,
    digest: &str,
    write: impl FnOnce(&Path) -> Result<(), IndexError>,
) -> Result<(CorpusIndex, bool), IndexError> {
    let dir = indexes.join(digest);
    if dir.exists() {
        let opened = if dir.join(META_FILE).is_file() {
            open(&dir)
        } else {
            Err(IndexError::Corrupt {
                path: dir.clone(),
                reason: format!("{META_FILE} is missing"),
            })
        };
        match opened {
            Ok(index) => return Ok((index, true)),
            Err(reason) => {
                tracing::warn!(
                    dir = %dir.display(),
                    reason = %reason,
                    "cached index cannot be opened; removing it and building it again"
                );
                discard_broken(indexes, digest)?;
            }
        }
    }
    build_into_place(indexes, digest, write)?;
    Ok((open(&dir)?, false))
}

/// Moves the broken index directory `indexes/<digest>` aside to
/// `indexes/.corrupt-<digest>-<pid>-<nanos>` (one rename, so the final name is free at once) and
/// removes it. Forgets the process's shared LMDB environment of its `dense/` first, so the rebuilt
/// index is not read through the old one. If the directory is already gone (another process
/// discarded it), that is fine. A failed removal is logged; a later build removes the leftover
/// once this process is gone. Errors: [`IndexError::Io`] if the rename fails otherwise.
fn discard_broken(indexes: &Path, digest: &str) -> Result<(), IndexError> {
    let dir = indexes.join(digest);
    super::dense::forget_shared_env(&dir.join(DENSE_DIR));
    let aside = indexes.join(unique_name(CORRUPT_PREFIX, digest));
    match fs::rename(&dir, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(IndexError::Io {
                op: "rename",
                path: dir,
                source,
            })
        }
    }
    if let Err(e) = fs::remove_dir_all(&aside) {
        tracing::warn!(dir = %aside.display(), error = %e, "cannot remove broken index");
    }
    Ok(())
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
const CORRUPT_PREFIX: &str = ".corrupt-";

/// Builds an index in a new temporary directory under `indexes` with `write` and renames it to
/// `indexes/<digest>`. If another process renamed its build first, ours is discarded.
fn build_into_place(
    indexes: &Path,
    digest: &str,
    write: impl FnOnce(&Path) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    create_dir(indexes)?;
    remove_stale_tmp_dirs(indexes, digest);
    let tmp = TmpDir::new(indexes.join(unique_name(TMP_PREFIX, digest)));
    create_dir(tmp.path())?;
    tracing::info!(dir = %tmp.path().display(), "building index");
    write(tmp.path())?;
    let dir = indexes.join(digest);
    match fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            tmp.disarm();
            tracing::info!(dir = %dir.display(), "built index");
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

/// Writes the whole index for `key` into the empty directory `tmp`: calls `pages`, splits, embeds,
/// writes `chunks.jsonl`, `dense/`, `lexical/` and, last, `meta.json`. Disk-full errors from LMDB,
/// arroy and tantivy name the directory being written ([`IndexError::disk_full_at`]).
fn write_index<E>(
    tmp: &Path,
    key: &IndexKey,
    pages: impl FnOnce() -> Result<Vec<Page>, E>,
    embedder: &Embedder,
) -> Result<(), IndexError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let pages = pages().map_err(|e| IndexError::Pages(e.into()))?;
    let splitter = RecursiveCharacterTextSplitter::new(key.chunk_size, key.chunk_overlap)?;
    let chunks = splitter.split_pages(&pages);
    let vectors = embed_chunks(&chunks, embedder)?;
    write_parts(tmp, &chunks, &vectors, embedder.dim())?;
    let build_seconds = started.elapsed().as_secs_f64();
    let meta = Meta {
        format_version: IndexKey::FORMAT_VERSION,
        key: key.clone(),
        n_chunks: chunks.len(),
        dim: embedder.dim(),
        build_seconds,
    };
    write_json(&tmp.join(META_FILE), &meta)?;
    tracing::info!(n_chunks = chunks.len(), build_seconds, "wrote index");
    Ok(())
}

/// Writes `chunks.jsonl`, the dense index of `vectors` (`dim` each) and the lexical index into
/// `dir`. Disk-full errors of LMDB/arroy/tantivy are reported as [`IndexError::Io`] naming the
/// `dense/` or `lexical/` directory.
fn write_parts(
    dir: &Path,
    chunks: &[Chunk],
    vectors: &[Vec<f32>],
    dim: usize,
) -> Result<(), IndexError> {
    write_chunks(&dir.join(CHUNKS_FILE), chunks)?;
    let dense = dir.join(DENSE_DIR);
    DenseIndex::build(&dense, vectors, dim).map_err(|e| e.disk_full_at(&dense))?;
    let lexical = dir.join(LEXICAL_DIR);
    LexicalIndex::build(&lexical, chunks).map_err(|e| e.disk_full_at(&lexical))?;
    Ok(())
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

/// `<prefix><digest>-<pid>-<nanos>-<host>` (prefix `.tmp-` or `.corrupt-`): unique per process,
/// call and host (the store may be on a filesystem that several hosts share).
fn unique_name(prefix: &str, digest: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{digest}-{}-{nanos}-{}",
        std::process::id(),
        crate::sample::host_name()
    )
}

/// The pid of a `<pid>-<nanos>[-<host>]` name rest when the directory belongs to this host: a
/// pid of another host says nothing about liveness here. A rest without a host (written before
/// hosts were recorded) counts as this host's.
fn local_pid(rest: &str) -> Option<i32> {
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse::<i32>().ok()?;
    let _nanos = parts.next()?;
    match parts.next() {
        None => Some(pid),
        Some(host) if host == crate::sample::host_name() => Some(pid),
        Some(_) => None,
    }
}

/// Removes this host's `.tmp-<digest>-<pid>-*` directories (builds that were killed) and
/// `.corrupt-<digest>-<pid>-*` directories (broken indexes whose removal failed) whose process no
/// longer exists. Another host's directories are never touched: their process may be alive
/// there. Best effort: failures are logged and ignored.
fn remove_stale_tmp_dirs(indexes: &Path, digest: &str) {
    let Ok(entries) = fs::read_dir(indexes) else {
        return;
    };
    let prefixes = [
        format!("{TMP_PREFIX}{digest}-"),
        format!("{CORRUPT_PREFIX}{digest}-"),
    ];
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = prefixes.iter().find_map(|p| name.strip_prefix(p.as_str())) else {
            continue;
        };
        if local_pid(rest).is_some_and(|pid| !process_alive(pid)) {
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
        let dead_corrupt = dir
            .path()
            .join(format!("{CORRUPT_PREFIX}{digest}-{}-1", i32::MAX));
        let host = crate::sample::host_name();
        let dead_here = dir
            .path()
            .join(format!("{TMP_PREFIX}{digest}-{}-1-{host}", i32::MAX));
        // on a shared filesystem: another node's build, whose pid means nothing here
        let elsewhere = dir
            .path()
            .join(format!("{TMP_PREFIX}{digest}-{}-1-not-{host}", i32::MAX));
        for d in [&dead, &alive, &other, &dead_corrupt, &dead_here, &elsewhere] {
            fs::create_dir_all(d).expect("mkdir");
        }
        remove_stale_tmp_dirs(dir.path(), digest);
        assert!(!dead.exists());
        assert!(!dead_corrupt.exists());
        assert!(!dead_here.exists());
        assert!(alive.exists());
        assert!(other.exists());
        assert!(elsewhere.exists(), "another host's build is never reaped");
    }

    /// Writes a complete small index (4 chunks, 8-d vectors, no embedding model) into `tmp`, as
    /// [`write_index`] would; counts its calls.
    fn write_test_index(tmp: &Path, calls: &std::cell::Cell<usize>) -> Result<(), IndexError> {
        calls.set(calls.get() + 1);
        let texts = [
            "the director schedules jobs",
            "a storage daemon writes volumes",
            "the catalog is a database",
            "file daemons run on clients",
        ];
        let chunks: Vec<Chunk> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Chunk {
                id: i as u32,
                source: "a.txt".into(),
                page: 1,
                start: i * 40,
                text: (*t).into(),
            })
            .collect();
        let dim = 8;
        let vectors: Vec<Vec<f32>> = (0..chunks.len())
            .map(|i| {
                let mut v = vec![0.1f32; dim];
                v[i] = 1.0;
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect();
        write_parts(tmp, &chunks, &vectors, dim)?;
        let meta = Meta {
            format_version: IndexKey::FORMAT_VERSION,
            key: IndexKey {
                corpus_fingerprint: "test".into(),
                chunk_size: 40,
                chunk_overlap: 0,
                embedder_fingerprint: "none".into(),
            },
            n_chunks: chunks.len(),
            dim,
            build_seconds: 0.0,
        };
        write_json(&tmp.join(META_FILE), &meta)
    }

    #[test]
    fn a_broken_cached_index_is_removed_and_rebuilt() {
        let store = tempfile::tempdir().expect("tempdir");
        let indexes = store.path().join("indexes");
        let calls = std::cell::Cell::new(0);
        let build = |tmp: &Path| write_test_index(tmp, &calls);

        // Each case breaks the index differently, then opens it again.
        type Break = fn(&Path);
        let cases: [(&str, Break); 4] = [
            ("truncated chunks.jsonl", |dir| {
                let path = dir.join(CHUNKS_FILE);
                let text = fs::read_to_string(&path).expect("read");
                fs::write(&path, &text[..text.len() / 2]).expect("truncate");
            }),
            ("lexical/ deleted", |dir| {
                fs::remove_dir_all(dir.join(LEXICAL_DIR)).expect("rm lexical");
            }),
            ("meta.json garbage", |dir| {
                fs::write(dir.join(META_FILE), "{not json").expect("write");
            }),
            ("meta.json deleted", |dir| {
                fs::remove_file(dir.join(META_FILE)).expect("rm meta");
            }),
        ];
        for (i, (what, break_it)) in cases.into_iter().enumerate() {
            let digest = format!("d{i}");
            let dir = indexes.join(&digest);
            let before = calls.get();
            let (index, hit) = open_or_build_with(&indexes, &digest, build).expect("build");
            assert!(!hit, "{what}");
            assert_eq!(index.len(), 4);
            drop(index);
            let (_, hit) = open_or_build_with(&indexes, &digest, build).expect("reopen");
            assert!(hit, "{what}: second open is a cache hit");
            assert_eq!(calls.get(), before + 1, "{what}");

            break_it(&dir);
            if dir.join(META_FILE).is_file() {
                assert!(open(&dir).is_err(), "{what}: the damage is not detected");
            }
            let (index, hit) =
                open_or_build_with(&indexes, &digest, build).expect("rebuilds instead of failing");
            assert!(!hit, "{what}: rebuilt, not a hit");
            assert_eq!(calls.get(), before + 2, "{what}");
            assert_eq!(index.len(), 4, "{what}");
            assert_eq!(
                index.chunk(2).map(|c| c.text.as_str()),
                Some("the catalog is a database")
            );
            assert_eq!(
                index.bm25_search("catalog", 1).expect("bm25")[0].0,
                2,
                "{what}"
            );
            drop(index);
            open(&dir).expect("the rebuilt index opens");
        }
        // Nothing is left aside.
        let leftovers: Vec<String> = fs::read_dir(&indexes)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
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
