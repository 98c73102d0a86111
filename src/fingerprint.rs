//! Content fingerprints of large files (GGUF models, embedding weights), cached so a 1 GB file is
//! hashed once, not on every command.
//!
//! The cache is one JSON file, `<cache dir>/fingerprints.json` ([`crate::models::cache_dir`]),
//! mapping a file's canonical path to its (size in bytes, modification time in nanoseconds,
//! sha256). An entry is used only while the file's size and mtime are unchanged, so a file
//! replaced or edited in place (even keeping its size) is hashed again. The cache is written
//! atomically (temporary file, then rename); a missing, unreadable or corrupt cache only costs a
//! re-hash, never an error.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// File name of the cache inside the cache directory.
pub const CACHE_FILE: &str = "fingerprints.json";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// Hex sha256 (64 lowercase characters) of the bytes of `path`, from the cache in
/// [`crate::models::cache_dir`] when the file's size and mtime match the cached entry.
///
/// Errors: the I/O error of opening, stat-ing or reading `path` (a directory is an error).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_file_in(path, &crate::models::cache_dir())
}

/// [`sha256_file`] with the cache in `cache_dir`.
pub fn sha256_file_in(path: &Path, cache_dir: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            format!("{} is a directory, not a file", path.display()),
        ));
    }
    let key = std::fs::canonicalize(path)?.display().to_string();
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let cache_path = cache_dir.join(CACHE_FILE);
    let mut cache = read_cache(&cache_path);
    if let Some(e) = cache.get(&key) {
        if e.size == meta.len() && e.mtime_ns == mtime_ns {
            return Ok(e.sha256.clone());
        }
    }
    let sha256 = hash_file(path)?;
    cache.insert(
        key,
        Entry {
            size: meta.len(),
            mtime_ns,
            sha256: sha256.clone(),
        },
    );
    if let Err(e) = write_cache(&cache_path, &cache) {
        tracing::debug!("cannot update {}: {e}", cache_path.display());
    }
    Ok(sha256)
}

/// Streams `path` through sha256.
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn read_cache(path: &Path) -> BTreeMap<String, Entry> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_cache(path: &Path, cache: &BTreeMap<String, Entry>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // unique per process and call: threads of one process must not share a temporary file
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp: PathBuf = path.with_extension(format!("json.{}.{seq}.tmp", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(cache).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_until_the_file_changes_even_at_the_same_size() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let f = d.path().join("m.gguf");
        std::fs::write(&f, b"GGUF one").unwrap();
        let a = sha256_file_in(&f, &cache).unwrap();
        assert_eq!(a, hex::encode(Sha256::digest(b"GGUF one")));
        assert!(cache.join(CACHE_FILE).is_file());
        // a forged cache entry is believed while size and mtime match ...
        let key = std::fs::canonicalize(&f).unwrap().display().to_string();
        let mut c = read_cache(&cache.join(CACHE_FILE));
        c.get_mut(&key).unwrap().sha256 = "forged".into();
        write_cache(&cache.join(CACHE_FILE), &c).unwrap();
        assert_eq!(sha256_file_in(&f, &cache).unwrap(), "forged");
        // ... and not once the file is rewritten in place with the same size
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"GGUF two").unwrap();
        let b = sha256_file_in(&f, &cache).unwrap();
        assert_eq!(b, hex::encode(Sha256::digest(b"GGUF two")));
    }

    #[test]
    fn directories_and_missing_files_are_errors_and_a_corrupt_cache_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        assert!(sha256_file_in(d.path(), d.path()).is_err());
        assert!(sha256_file_in(&d.path().join("nope"), d.path()).is_err());
        std::fs::write(d.path().join(CACHE_FILE), "{not json").unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(
            sha256_file_in(&f, d.path()).unwrap(),
            hex::encode(Sha256::digest(b"x"))
        );
    }
}
