//! A pure-Rust check of a GGUF model file, run before a sweep so a missing, wrong or damaged model
//! fails in milliseconds with a message that names the file, instead of inside llama.cpp.
//!
//! [`check`] reads the header, every metadata key/value and every tensor info (it never reads the
//! tensor data) and applies the rules of llama.cpp's own reader (`ggml/src/gguf.cpp`,
//! `gguf_init_from_reader`, and the "data is not within the file bounds" check of
//! `src/llama-model-loader.h`, as vendored by llama-cpp-sys-2 0.1.161):
//!
//! - magic `GGUF`, version 2 or 3 (v1 is no longer supported by llama.cpp; a version whose low 16
//!   bits are zero is a file of the other byte order);
//! - keys non-empty and unique; value types 0..=12; arrays of any type but array (llama.cpp
//!   rejects nested arrays); `general.alignment`, if present, a `u32` power of two (default 32);
//! - tensor names unique and shorter than 64 bytes (`GGML_MAX_NAME`); at most 4 dimensions
//!   (`GGML_MAX_DIMS`), none negative; a known ggml type; the row length (first dimension) a
//!   multiple of the type's block size; data offsets consecutive (each tensor starts where the
//!   previous one's data, padded to the alignment, ends);
//! - the file holds all tensor data: `data_offset + max(offset + size)` bytes, where the data
//!   section starts at the end of the tensor infos padded to the alignment.
//!
//! Every length and count read from the file is checked against the bytes left in the file
//! before anything is allocated or skipped, so a corrupt header cannot make the check allocate or
//! loop for long. Format reference: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Tensor data alignment when the file has no `general.alignment` key, bytes.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Longest string llama.cpp reads (`GGUF_MAX_STRING_LENGTH`), bytes.
const MAX_STRING_LENGTH: u64 = 1024 * 1024 * 1024;

/// Most elements in one metadata array llama.cpp reads (`GGUF_MAX_ARRAY_ELEMENTS`).
const MAX_ARRAY_ELEMENTS: u64 = 1024 * 1024 * 1024;

/// `GGML_MAX_DIMS`: most dimensions of a tensor.
const MAX_DIMS: u32 = 4;

/// `GGML_MAX_NAME`: a tensor name must be shorter than this many bytes.
const MAX_NAME: usize = 64;

/// More bytes than any GGUF file has (1 TiB): a count whose items would need more is corrupt.
const MAX_PLAUSIBLE_BYTES: u64 = 1 << 40;

/// Fewest bytes one metadata entry occupies: key length (8), a 1-byte key, value type (4), and a
/// value of at least 1 byte (or an empty array's type and length, 12).
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;

/// Fewest bytes one tensor info occupies: name length (8), a 1-byte name, n_dims (4), type (4),
/// offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 4 + 8;

/// What [`check`] found in a valid GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufInfo {
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Number of metadata key/value pairs.
    pub metadata_count: u64,
    /// `general.architecture` (e.g. `llama`, `qwen2`, `gemma3`), if present and a string.
    pub architecture: Option<String>,
    /// Tensor data alignment, bytes (`general.alignment`, default [`DEFAULT_ALIGNMENT`]).
    pub alignment: u64,
    /// Size of the file, bytes.
    pub file_size: u64,
    /// Byte offset in the file where the tensor data section starts.
    pub data_offset: u64,
    /// Bytes the file must have to hold every tensor: `data_offset + max(offset + size)` over the
    /// tensors (`data_offset` when there are none). Never more than `file_size` for a valid file.
    pub bytes_needed: u64,
}

/// Why a file is not a usable GGUF model. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The path does not exist.
    #[error("model file {path} does not exist")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error("{path} is a directory, not a GGUF file")]
    IsDirectory {
        /// The path.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file does not start with the magic `GGUF`.
    #[error("{path} is not a GGUF file ({})", describe_start(.start))]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// Its first bytes (at most 32).
        start: Vec<u8>,
    },
    /// A GGUF version other than 2 or 3.
    #[error("{path}: {}", version_message(*.version))]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version field as read (little-endian).
        version: u32,
    },
    /// The file ends inside the header, the metadata or the tensor infos.
    #[error(
        "{path} is truncated: the file ends after {size} bytes, inside the {section}; \
         download it again"
    )]
    HeaderTruncated {
        /// The file.
        path: PathBuf,
        /// File size, bytes.
        size: u64,
        /// Where it ends: `header`, `metadata` or `tensor infos`.
        section: &'static str,
    },
    /// The file is shorter than its tensors need.
    #[error("{path} is truncated: {size} bytes, the tensors need {needed}; download it again")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// File size, bytes.
        size: u64,
        /// Bytes the tensors need ([`GgufInfo::bytes_needed`]).
        needed: u64,
    },
    /// A tensor has a ggml type id this check (and the llama.cpp it was written for) does not
    /// know.
    #[error(
        "{path}: tensor `{tensor}` has unknown ggml type id {type_id}; the file is damaged or \
         needs a newer llama.cpp"
    )]
    UnknownTensorType {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The type id read.
        type_id: u32,
    },
    /// The file is structurally invalid: an absurd length or count, an unknown value type, a
    /// duplicate key or tensor, a bad alignment, a bad shape or data offset. `message` says which.
    #[error(
        "{path} is not a valid GGUF file: {message} (at byte {offset}); the file is damaged, \
         download it again"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset in the file where the bad field starts.
        offset: u64,
        /// What is wrong.
        message: String,
    },
}

/// Checks that `path` is a GGUF model file llama.cpp can load as far as its structure goes (see
/// the module documentation for the rules), reading only the header and tensor infos.
///
/// Errors: [`GgufError::Missing`], [`GgufError::IsDirectory`], [`GgufError::Io`],
/// [`GgufError::NotGguf`] (no `GGUF` magic, e.g. an HTML error page or a Git LFS pointer),
/// [`GgufError::UnsupportedVersion`] (v1, a future version, or the other byte order),
/// [`GgufError::HeaderTruncated`], [`GgufError::Truncated`] (tensor data cut short),
/// [`GgufError::UnknownTensorType`], [`GgufError::Corrupt`].
pub fn check(path: &Path) -> Result<GgufInfo, GgufError> {
    let io = |source: std::io::Error| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GgufError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    if meta.is_dir() {
        return Err(GgufError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut reader = Reader {
        inner: BufReader::with_capacity(1 << 16, file),
        pos: 0,
        size,
        path,
        section: "header",
    };
    parse(&mut reader)
}

/// Block size (elements) and block size in bytes of a ggml tensor type, with its name; `None` for
/// an unknown id. From `type_traits` in ggml's `ggml.c` and the block structs' `static_assert`s
/// in `ggml-common.h` (`QK_K` = 256); ids 4, 5, 31–33 and 36–38 are removed types.
pub fn ggml_type_traits(type_id: u32) -> Option<(&'static str, u64, u64)> {
    const QK_K: u64 = 256;
    let traits = match type_id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", QK_K, 84),
        11 => ("Q3_K", QK_K, 110),
        12 => ("Q4_K", QK_K, 144),
        13 => ("Q5_K", QK_K, 176),
        14 => ("Q6_K", QK_K, 210),
        15 => ("Q8_K", QK_K, 292),
        16 => ("IQ2_XXS", QK_K, 66),
        17 => ("IQ2_XS", QK_K, 74),
        18 => ("IQ3_XXS", QK_K, 98),
        19 => ("IQ1_S", QK_K, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", QK_K, 110),
        22 => ("IQ2_S", QK_K, 82),
        23 => ("IQ4_XS", QK_K, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", QK_K, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", QK_K, 54),
        35 => ("TQ2_0", QK_K, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        42 => ("Q2_0", 64, 18),
        _ => return None,
    };
    Some(traits)
}

/// A bounds-checked little-endian reader over the file that tracks its position.
struct Reader<'a> {
    inner: BufReader<File>,
    /// Bytes consumed so far.
    pos: u64,
    /// File size.
    size: u64,
    path: &'a Path,
    /// What is being read, for truncation messages.
    section: &'static str,
}

impl Reader<'_> {
    fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn corrupt(&self, offset: u64, message: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            offset,
            message,
        }
    }

    fn truncated(&self) -> GgufError {
        GgufError::HeaderTruncated {
            path: self.path.to_path_buf(),
            size: self.size,
            section: self.section,
        }
    }

    /// Fails with [`GgufError::HeaderTruncated`] unless `n` more bytes exist.
    fn need(&self, n: u64) -> Result<(), GgufError> {
        if n > self.remaining() {
            Err(self.truncated())
        } else {
            Ok(())
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        self.need(N as u64)?;
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn io(&self, e: std::io::Error) -> GgufError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            // The file shrank while we read it.
            self.truncated()
        } else {
            GgufError::Io {
                path: self.path.to_path_buf(),
                source: e,
            }
        }
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// Skips `n` bytes (which the caller has checked exist).
    fn skip(&mut self, n: u64) -> Result<(), GgufError> {
        self.need(n)?;
        let skipped = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| self.io(e))?;
        if skipped != n {
            return Err(self.truncated());
        }
        self.pos += n;
        Ok(())
    }

    /// Reads a string's length and checks it against the cap and the bytes left; returns it.
    fn string_len(&mut self, what: &str) -> Result<u64, GgufError> {
        let at = self.pos;
        let len = self.u64()?;
        if len > MAX_STRING_LENGTH {
            return Err(self.corrupt(
                at,
                format!("{what} has an absurd length of {len} bytes (llama.cpp's limit is 1 GiB)"),
            ));
        }
        // Within the cap but past the end: the file was most likely cut short here.
        self.need(len)?;
        Ok(len)
    }

    /// Reads a string (length-prefixed, not NUL-terminated). Invalid UTF-8 is replaced.
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.string_len(what)?;
        // `len` <= bytes left in the file, so this allocation is bounded by the file size.
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.pos += len;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Reads a count of items that take at least `min_bytes` each and checks it (see
    /// [`Reader::check_count`]).
    fn count(&mut self, what: &str, min_bytes: u64) -> Result<u64, GgufError> {
        let at = self.pos;
        let n = self.u64()?;
        self.check_count(what, n, min_bytes, at)?;
        Ok(n)
    }

    /// A count `n` (read at `at`) of items of at least `min_bytes` each is corrupt if they would
    /// take more than [`MAX_PLAUSIBLE_BYTES`], and means the file was cut short if they take more
    /// than the bytes left ([`GgufError::HeaderTruncated`]).
    fn check_count(&self, what: &str, n: u64, min_bytes: u64, at: u64) -> Result<(), GgufError> {
        match n.checked_mul(min_bytes) {
            Some(bytes) if bytes <= MAX_PLAUSIBLE_BYTES => self.need(bytes),
            _ => Err(self.corrupt(at, format!("{what} is an absurd {n}"))),
        }
    }
}

/// GGUF metadata value types (`gguf_type`).
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_UINT32: u32 = 4;

/// Size in bytes of a fixed-size metadata value type; `None` for string, array and unknown types.
fn scalar_size(value_type: u32) -> Option<u64> {
    match value_type {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

/// What the metadata says that the rest of the check needs.
struct Metadata {
    architecture: Option<String>,
    alignment: u64,
}

fn parse(r: &mut Reader<'_>) -> Result<GgufInfo, GgufError> {
    // Magic: read what there is of the first bytes to describe a non-GGUF file.
    let mut start = vec![0u8; r.size.min(32) as usize];
    r.inner.read_exact(&mut start).map_err(|e| r.io(e))?;
    if start.len() < 4 || start[..4] != GGUF_MAGIC {
        return Err(GgufError::NotGguf {
            path: r.path.to_path_buf(),
            start,
        });
    }
    // Re-read from byte 4 (the buffer holds at most 32 bytes, within BufReader's buffer).
    r.inner
        .seek_relative(4 - start.len() as i64)
        .map_err(|e| r.io(e))?;
    r.pos = 4;

    let version = r.u32()?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion {
            path: r.path.to_path_buf(),
            version,
        });
    }
    // Counts are checked against the bytes left: each tensor info and each key/value pair takes a
    // minimum number of bytes, so a corrupt count cannot make us loop for long.
    let tensor_count_at = r.pos;
    let tensor_count = r.u64()?;
    r.section = "metadata";
    let metadata_count = r.count("the metadata key/value count", MIN_KV_BYTES)?;
    let metadata = read_metadata(r, metadata_count)?;

    r.section = "tensor infos";
    r.check_count(
        "the tensor count",
        tensor_count,
        MIN_TENSOR_INFO_BYTES,
        tensor_count_at,
    )?;
    let mut names = HashSet::new();
    let mut expected_offset = 0u64;
    let mut data_end = 0u64;
    for _ in 0..tensor_count {
        let tensor = read_tensor_info(r, &mut names)?;
        if tensor.offset != expected_offset {
            return Err(r.corrupt(
                tensor.offset_at,
                format!(
                    "tensor `{}` has data offset {}, expected {expected_offset}",
                    tensor.name, tensor.offset
                ),
            ));
        }
        let too_big = || {
            r.corrupt(
                tensor.offset_at,
                format!("tensor `{}` is too large to address", tensor.name),
            )
        };
        data_end = tensor
            .offset
            .checked_add(tensor.bytes)
            .ok_or_else(too_big)?;
        expected_offset = pad(data_end, metadata.alignment).ok_or_else(too_big)?;
    }

    let header_end = r.pos;
    // llama.cpp pads to the alignment only when there are tensors.
    let data_offset = if tensor_count > 0 {
        pad(header_end, metadata.alignment)
            .ok_or_else(|| r.corrupt(header_end, "the data section offset overflows".to_string()))?
    } else {
        header_end
    };
    let bytes_needed = if tensor_count > 0 {
        data_offset
            .checked_add(data_end)
            .ok_or_else(|| r.corrupt(header_end, "the tensor data size overflows".to_string()))?
    } else {
        data_offset
    };
    if bytes_needed > r.size {
        return Err(GgufError::Truncated {
            path: r.path.to_path_buf(),
            size: r.size,
            needed: bytes_needed,
        });
    }
    Ok(GgufInfo {
        version,
        tensor_count,
        metadata_count,
        architecture: metadata.architecture,
        alignment: metadata.alignment,
        file_size: r.size,
        data_offset,
        bytes_needed,
    })
}

/// `n` rounded up to a multiple of `alignment` (a power of two); `None` on overflow.
fn pad(n: u64, alignment: u64) -> Option<u64> {
    Some(n.checked_add(alignment - 1)? & !(alignment - 1))
}

/// Reads `count` key/value pairs, keeping `general.architecture` and `general.alignment`.
fn read_metadata(r: &mut Reader<'_>, count: u64) -> Result<Metadata, GgufError> {
    let mut keys = HashSet::new();
    let mut metadata = Metadata {
        architecture: None,
        alignment: DEFAULT_ALIGNMENT,
    };
    for i in 0..count {
        let key_at = r.pos;
        let key = r.string(&format!("metadata key {i}"))?;
        if key.is_empty() {
            return Err(r.corrupt(key_at, format!("metadata key {i} is empty")));
        }
        if !keys.insert(key.clone()) {
            return Err(r.corrupt(key_at, format!("duplicate metadata key `{key}`")));
        }
        let type_at = r.pos;
        let value_type = r.u32()?;
        match (key.as_str(), value_type) {
            ("general.architecture", TYPE_STRING) => {
                metadata.architecture = Some(r.string("`general.architecture`")?);
            }
            ("general.alignment", TYPE_UINT32) => {
                let at = r.pos;
                let alignment = r.u32()?;
                if alignment == 0 || !alignment.is_power_of_two() {
                    return Err(r.corrupt(
                        at,
                        format!("`general.alignment` is {alignment}, not a power of two"),
                    ));
                }
                metadata.alignment = u64::from(alignment);
            }
            ("general.alignment", _) => {
                return Err(r.corrupt(
                    type_at,
                    format!("`general.alignment` has value type {value_type}, expected u32 (4)"),
                ));
            }
            _ => skip_value(r, &key, value_type, type_at)?,
        }
    }
    Ok(metadata)
}

/// Skips one metadata value of `value_type` (read at `type_at`) for `key`.
fn skip_value(
    r: &mut Reader<'_>,
    key: &str,
    value_type: u32,
    type_at: u64,
) -> Result<(), GgufError> {
    if let Some(size) = scalar_size(value_type) {
        return r.skip(size);
    }
    match value_type {
        TYPE_STRING => {
            let len = r.string_len(&format!("the value of `{key}`"))?;
            r.skip(len)
        }
        TYPE_ARRAY => {
            let elem_at = r.pos;
            let elem_type = r.u32()?;
            let count_at = r.pos;
            let n = r.u64()?;
            if n > MAX_ARRAY_ELEMENTS {
                return Err(r.corrupt(
                    count_at,
                    format!("array `{key}` has an absurd {n} elements"),
                ));
            }
            // Each element takes at least its scalar size, or 8 bytes for a string's length.
            let min = match (scalar_size(elem_type), elem_type) {
                (Some(size), _) => size,
                (None, TYPE_STRING) => 8,
                (None, TYPE_ARRAY) => {
                    return Err(r.corrupt(
                        elem_at,
                        format!("array `{key}` holds arrays, which llama.cpp does not read"),
                    ))
                }
                (None, _) => {
                    return Err(r.corrupt(
                        elem_at,
                        format!("array `{key}` has unknown element type {elem_type}"),
                    ))
                }
            };
            // n <= 2^30 and min <= 8: no overflow. Past the end: the file was cut short here.
            let bytes = n * min;
            r.need(bytes)?;
            if elem_type == TYPE_STRING {
                for j in 0..n {
                    let len = r.string_len(&format!("element {j} of `{key}`"))?;
                    r.skip(len)?;
                }
                Ok(())
            } else {
                r.skip(bytes)
            }
        }
        _ => Err(r.corrupt(
            type_at,
            format!("metadata key `{key}` has unknown value type {value_type}"),
        )),
    }
}

/// One tensor info as far as the check needs it.
struct TensorInfo {
    name: String,
    /// Where the offset field is (for messages).
    offset_at: u64,
    /// Offset of the tensor's data from the start of the data section.
    offset: u64,
    /// Size of the tensor's data, bytes.
    bytes: u64,
}

fn read_tensor_info(
    r: &mut Reader<'_>,
    names: &mut HashSet<String>,
) -> Result<TensorInfo, GgufError> {
    let name_at = r.pos;
    let name = r.string("a tensor name")?;
    if name.len() >= MAX_NAME {
        return Err(r.corrupt(
            name_at,
            format!(
                "tensor name `{name}` is {} bytes, llama.cpp allows at most {}",
                name.len(),
                MAX_NAME - 1
            ),
        ));
    }
    if !names.insert(name.clone()) {
        return Err(r.corrupt(name_at, format!("duplicate tensor `{name}`")));
    }
    let dims_at = r.pos;
    let n_dims = r.u32()?;
    if n_dims > MAX_DIMS {
        return Err(r.corrupt(
            dims_at,
            format!("tensor `{name}` has {n_dims} dimensions, at most {MAX_DIMS} are allowed"),
        ));
    }
    let mut dims = [1u64; MAX_DIMS as usize];
    for dim in dims.iter_mut().take(n_dims as usize) {
        let at = r.pos;
        *dim = r.u64()?;
        if i64::try_from(*dim).is_err() {
            return Err(r.corrupt(
                at,
                format!("tensor `{name}` has a negative dimension ({})", *dim as i64),
            ));
        }
    }
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(|| {
            r.corrupt(
                dims_at,
                format!("tensor `{name}` has an impossible shape {dims:?}"),
            )
        })?;
    let type_at = r.pos;
    let type_id = r.u32()?;
    let Some((type_name, block, type_size)) = ggml_type_traits(type_id) else {
        return Err(GgufError::UnknownTensorType {
            path: r.path.to_path_buf(),
            tensor: name,
            type_id,
        });
    };
    if dims[0] % block != 0 {
        return Err(r.corrupt(
            type_at,
            format!(
                "tensor `{name}` of type {type_name} has rows of {} elements, not a multiple of \
                 its block size {block}",
                dims[0]
            ),
        ));
    }
    let bytes = (elements / block)
        .checked_mul(type_size)
        .ok_or_else(|| r.corrupt(type_at, format!("tensor `{name}` is too large to address")))?;
    let offset_at = r.pos;
    let offset = r.u64()?;
    Ok(TensorInfo {
        name,
        offset_at,
        offset,
        bytes,
    })
}

/// Describes the first bytes of a file that is not GGUF, with a hint for common look-alikes.
fn describe_start(start: &[u8]) -> String {
    if start.is_empty() {
        return "the file is empty".to_string();
    }
    let shown: String = start
        .iter()
        .take(8)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    let text = String::from_utf8_lossy(start);
    let trimmed = text.trim_start().to_ascii_lowercase();
    let hint = if trimmed.starts_with("version https://git-lfs") {
        ": a Git LFS pointer, not the model itself; fetch the real file"
    } else if trimmed.starts_with('<') {
        ": an HTML or XML page, e.g. a failed download's error page"
    } else if trimmed.starts_with('{') {
        ": a JSON document, e.g. a failed download's error message"
    } else if start.starts_with(b"PK\x03\x04") {
        ": a zip archive"
    } else if start.starts_with(b"\x1f\x8b") {
        ": a gzip archive"
    } else {
        ""
    };
    format!("starts with \"{shown}\", expected \"GGUF\"{hint}")
}

/// Message for an unsupported GGUF version.
fn version_message(version: u32) -> String {
    match version {
        1 => "GGUF version 1 is no longer supported by llama.cpp (it reads 2 and 3); download a \
              current conversion of the model"
            .to_string(),
        0 => "GGUF version 0 is invalid; the file is damaged".to_string(),
        v if v & 0xFFFF == 0 => format!(
            "GGUF version {v} reads as a byte-swapped version: the file was written for a \
             big-endian machine"
        ),
        v => format!("GGUF version {v} is newer than this llama.cpp reads (2 and 3)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal GGUF writer for tests: metadata then tensor infos, then the aligned data.
    struct Writer {
        version: u32,
        kvs: Vec<u8>,
        n_kv: u64,
        infos: Vec<u8>,
        n_tensors: u64,
        data: Vec<u8>,
        alignment: usize,
    }

    impl Writer {
        fn new(version: u32) -> Self {
            Writer {
                version,
                kvs: Vec::new(),
                n_kv: 0,
                infos: Vec::new(),
                n_tensors: 0,
                data: Vec::new(),
                alignment: 32,
            }
        }

        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }

        fn key(&mut self, key: &str, value_type: u32) {
            Self::string(&mut self.kvs, key);
            self.kvs.extend_from_slice(&value_type.to_le_bytes());
            self.n_kv += 1;
        }

        fn kv_string(mut self, key: &str, value: &str) -> Self {
            self.key(key, 8);
            Self::string(&mut self.kvs, value);
            self
        }

        fn kv_u32(mut self, key: &str, value: u32) -> Self {
            self.key(key, 4);
            self.kvs.extend_from_slice(&value.to_le_bytes());
            self
        }

        fn kv_f64(mut self, key: &str, value: f64) -> Self {
            self.key(key, 12);
            self.kvs.extend_from_slice(&value.to_le_bytes());
            self
        }

        fn kv_bool(mut self, key: &str, value: bool) -> Self {
            self.key(key, 7);
            self.kvs.push(u8::from(value));
            self
        }

        fn kv_str_array(mut self, key: &str, values: &[&str]) -> Self {
            self.key(key, 9);
            self.kvs.extend_from_slice(&8u32.to_le_bytes());
            self.kvs
                .extend_from_slice(&(values.len() as u64).to_le_bytes());
            for v in values {
                Self::string(&mut self.kvs, v);
            }
            self
        }

        fn kv_i32_array(mut self, key: &str, values: &[i32]) -> Self {
            self.key(key, 9);
            self.kvs.extend_from_slice(&5u32.to_le_bytes());
            self.kvs
                .extend_from_slice(&(values.len() as u64).to_le_bytes());
            for v in values {
                self.kvs.extend_from_slice(&v.to_le_bytes());
            }
            self
        }

        /// Appends a tensor whose data (`bytes` long) follows the previous one, padded.
        fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, bytes: usize) -> Self {
            let offset = self.data.len().next_multiple_of(self.alignment);
            self.data.resize(offset, 0);
            Self::string(&mut self.infos, name);
            self.infos
                .extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                self.infos.extend_from_slice(&d.to_le_bytes());
            }
            self.infos.extend_from_slice(&type_id.to_le_bytes());
            self.infos.extend_from_slice(&(offset as u64).to_le_bytes());
            self.data.extend((0..bytes).map(|i| i as u8));
            self.n_tensors += 1;
            self
        }

        /// The file bytes and the offset where the data section starts.
        fn build(&self) -> (Vec<u8>, usize) {
            let mut out = b"GGUF".to_vec();
            out.extend_from_slice(&self.version.to_le_bytes());
            out.extend_from_slice(&self.n_tensors.to_le_bytes());
            out.extend_from_slice(&self.n_kv.to_le_bytes());
            out.extend_from_slice(&self.kvs);
            out.extend_from_slice(&self.infos);
            // llama.cpp pads to the alignment only when there are tensors.
            let data_offset = if self.n_tensors > 0 {
                out.len().next_multiple_of(self.alignment)
            } else {
                out.len()
            };
            out.resize(data_offset, 0);
            out.extend_from_slice(&self.data);
            (out, data_offset)
        }
    }

    /// Two F32 tensors (4 and 2x3 elements), string, bool, f64 and array metadata.
    fn valid(version: u32) -> Writer {
        Writer::new(version)
            .kv_string("general.architecture", "llama")
            .kv_u32("general.alignment", 32)
            .kv_f64("llama.rope.freq_base", 10000.0)
            .kv_bool("tokenizer.ggml.add_bos_token", true)
            .kv_str_array("tokenizer.ggml.tokens", &["<s>", "</s>", "hello", ""])
            .kv_i32_array("tokenizer.ggml.token_type", &[3, 3, 1, 1])
            .tensor("token_embd.weight", &[4], 0, 16)
            .tensor("output.weight", &[2, 3], 0, 24)
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn valid_v3_and_v2_files_pass_with_their_facts() {
        let dir = tempfile::tempdir().expect("tempdir");
        for version in [3, 2] {
            let (bytes, data_offset) = valid(version).build();
            let path = write(dir.path(), &format!("v{version}.gguf"), &bytes);
            let info = check(&path).expect("valid file");
            assert_eq!(
                info,
                GgufInfo {
                    version,
                    tensor_count: 2,
                    metadata_count: 6,
                    architecture: Some("llama".into()),
                    alignment: 32,
                    file_size: bytes.len() as u64,
                    data_offset: data_offset as u64,
                    // second tensor at offset 32 (16 bytes padded to 32), 24 bytes long
                    bytes_needed: data_offset as u64 + 32 + 24,
                }
            );
            assert_eq!(info.bytes_needed, info.file_size);
        }
    }

    #[test]
    fn quantized_sizes_follow_the_block_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Q4_0: 64 elements = 2 blocks of 18 bytes; Q6_K: 512 = 2 blocks of 210 bytes.
        let w = Writer::new(3)
            .tensor("a", &[64], 2, 36)
            .tensor("b", &[512, 1], 14, 420);
        let (bytes, data_offset) = w.build();
        let path = write(dir.path(), "q.gguf", &bytes);
        let info = check(&path).expect("valid");
        // b starts at 36 padded to 64
        assert_eq!(info.bytes_needed, data_offset as u64 + 64 + 420);
        assert_eq!(info.architecture, None);

        // The table against the block layouts of ggml-common.h (ggml_half = 2 bytes).
        let half = 2;
        let qk_k = 256;
        let expected: [(u32, u64, u64); 12] = [
            (2, 32, half + 32 / 2),                          // q4_0
            (3, 32, 2 * half + 32 / 2),                      // q4_1
            (6, 32, half + 4 + 32 / 2),                      // q5_0
            (8, 32, half + 32),                              // q8_0
            (10, qk_k, 2 * half + qk_k / 16 + qk_k / 4),     // q2_K
            (11, qk_k, half + qk_k / 4 + qk_k / 8 + 12),     // q3_K
            (12, qk_k, 2 * half + 12 + qk_k / 2),            // q4_K
            (13, qk_k, 2 * half + 12 + qk_k / 2 + qk_k / 8), // q5_K
            (14, qk_k, half + qk_k / 16 + 3 * qk_k / 4),     // q6_K
            (15, qk_k, 4 + qk_k + qk_k / 16 * 2),            // q8_K
            (21, qk_k, half + 13 * (qk_k / 32) + qk_k / 64), // iq3_s
            (23, qk_k, half + 2 + qk_k / 64 + qk_k / 2),     // iq4_xs
        ];
        for (id, block, size) in expected {
            let (name, b, s) = ggml_type_traits(id).expect("known type");
            assert_eq!((b, s), (block, size), "{name}");
        }
        for removed in [4, 5, 31, 36, 43] {
            assert!(ggml_type_traits(removed).is_none(), "{removed}");
        }
    }

    #[test]
    fn a_directory_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("model.gguf");
        std::fs::create_dir(&sub).expect("mkdir");
        let err = check(&sub).expect_err("directory");
        assert!(matches!(err, GgufError::IsDirectory { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{} is a directory, not a GGUF file", sub.display())
        );
        let missing = dir.path().join("nope.gguf");
        let err = check(&missing).expect_err("missing");
        assert!(matches!(err, GgufError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope.gguf"), "{err}");
    }

    #[test]
    fn wrong_magic_says_what_the_file_starts_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: [(&[u8], &str); 5] = [
            (
                b"PK\x03\x04rest of a zip",
                "starts with \"PK\\x03\\x04rest\"",
            ),
            (b"<!DOCTYPE html><html>", "HTML"),
            (
                b"version https://git-lfs.github.com/spec/v1\noid sha256:00",
                "Git LFS pointer",
            ),
            (b"GG", "starts with \"GG\""),
            (b"", "the file is empty"),
        ];
        for (i, (bytes, want)) in cases.iter().enumerate() {
            let path = write(dir.path(), &format!("m{i}.gguf"), bytes);
            let err = check(&path).expect_err("not gguf");
            assert!(matches!(err, GgufError::NotGguf { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("m{i}.gguf is not a GGUF file")) && msg.contains(want),
                "{msg}"
            );
        }
    }

    #[test]
    fn version_1_and_future_versions_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (version, want) in [
            (1u32, "version 1 is no longer supported"),
            (4, "version 4 is newer"),
            (0x0300_0000, "big-endian"),
        ] {
            let (bytes, _) = valid(version).build();
            let path = write(dir.path(), "old.gguf", &bytes);
            let err = check(&path).expect_err("version");
            assert!(
                matches!(err, GgufError::UnsupportedVersion { version: v, .. } if v == version),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("old.gguf") && msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn truncated_tensor_data_is_reported_with_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bytes, _) = valid(3).build();
        let cut = &bytes[..bytes.len() - 10];
        let path = write(dir.path(), "cut.gguf", cut);
        let err = check(&path).expect_err("truncated");
        assert!(
            matches!(err, GgufError::Truncated { size, needed, .. }
                if size == cut.len() as u64 && needed == bytes.len() as u64),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} is truncated: {} bytes, the tensors need {}; download it again",
                path.display(),
                cut.len(),
                bytes.len()
            )
        );
    }

    #[test]
    fn a_file_cut_inside_the_header_says_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = valid(3);
        let (bytes, _) = w.build();
        let header = 4 + 4 + 8 + 8;
        for (len, section) in [
            (10, "header"),
            (header, "metadata"), // the 6 key/value pairs need more than the 0 bytes left
            (header + 20, "metadata"),
            (header + w.kvs.len() + 5, "tensor infos"),
        ] {
            let path = write(dir.path(), "h.gguf", &bytes[..len]);
            let err = check(&path).expect_err("cut");
            assert!(
                matches!(err, GgufError::HeaderTruncated { section: s, size, .. }
                    if s == section && size == len as u64),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn absurd_lengths_and_counts_are_corrupt_not_allocated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut header = b"GGUF".to_vec();
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes()); // tensors
        header.extend_from_slice(&1u64.to_le_bytes()); // kvs

        // A key whose length is 2^62: must fail without allocating it.
        let mut huge_key = header.clone();
        huge_key.extend_from_slice(&(1u64 << 62).to_le_bytes());
        huge_key.extend_from_slice(b"general.name and more bytes");
        let path = write(dir.path(), "k.gguf", &huge_key);
        let err = check(&path).expect_err("absurd key");
        assert!(
            matches!(err, GgufError::Corrupt { offset: 24, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("absurd length"), "{err}");

        // A string value longer than the rest of the file: cut short there.
        let w = Writer::new(3).kv_string("general.name", "x");
        let (mut bytes, _) = w.build();
        let len_at = bytes.len() - 1 - 8;
        bytes[len_at..len_at + 8].copy_from_slice(&1000u64.to_le_bytes());
        let path = write(dir.path(), "s.gguf", &bytes);
        let err = check(&path).expect_err("long string");
        assert!(
            matches!(
                err,
                GgufError::HeaderTruncated {
                    section: "metadata",
                    ..
                }
            ),
            "{err}"
        );

        // Absurd tensor and metadata counts.
        let mut counts = b"GGUF".to_vec();
        counts.extend_from_slice(&3u32.to_le_bytes());
        counts.extend_from_slice(&u64::MAX.to_le_bytes());
        counts.extend_from_slice(&0u64.to_le_bytes());
        let path = write(dir.path(), "c.gguf", &counts);
        let err = check(&path).expect_err("tensor count");
        assert!(matches!(err, GgufError::Corrupt { offset: 8, .. }), "{err}");
        assert!(err.to_string().contains("tensor count"), "{err}");
        counts[8..16].copy_from_slice(&0u64.to_le_bytes());
        counts[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let path = write(dir.path(), "c.gguf", &counts);
        let err = check(&path).expect_err("kv count");
        assert!(
            matches!(err, GgufError::Corrupt { offset: 16, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("key/value count"), "{err}");

        // Arrays: an absurd element count is corrupt; a plausible one past the end is a cut.
        for (n, absurd) in [(1u64 << 31, true), (1u64 << 29, false)] {
            let w = Writer::new(3).kv_i32_array("a", &[1, 2]);
            let (mut bytes, _) = w.build();
            let n_at = bytes.len() - 8 - 8;
            bytes[n_at..n_at + 8].copy_from_slice(&n.to_le_bytes());
            let path = write(dir.path(), "a.gguf", &bytes);
            let err = check(&path).expect_err("array");
            if absurd {
                assert!(
                    matches!(err, GgufError::Corrupt { offset, .. } if offset == n_at as u64),
                    "{err}"
                );
                assert!(err.to_string().contains("absurd"), "{err}");
            } else {
                assert!(matches!(err, GgufError::HeaderTruncated { .. }), "{err}");
            }
        }
    }

    #[test]
    fn structural_errors_name_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: [(Writer, &str); 6] = [
            (
                Writer::new(3).tensor("t", &[4], 99, 16),
                "unknown ggml type id 99",
            ),
            (
                Writer::new(3).tensor("t", &[48], 2, 18),
                "not a multiple of its block size 32",
            ),
            (
                Writer::new(3).kv_u32("k", 1).kv_u32("k", 2),
                "duplicate metadata key `k`",
            ),
            (
                Writer::new(3).kv_u32("general.alignment", 24),
                "not a power of two",
            ),
            (
                Writer::new(3)
                    .tensor("t", &[4], 0, 16)
                    .tensor("t", &[4], 0, 16),
                "duplicate tensor `t`",
            ),
            (
                Writer::new(3).tensor("t", &[1, 1, 1, 1, 1], 0, 4),
                "5 dimensions",
            ),
        ];
        for (i, (w, want)) in cases.into_iter().enumerate() {
            let (bytes, _) = w.build();
            let path = write(dir.path(), &format!("e{i}.gguf"), &bytes);
            let msg = check(&path).expect_err(want).to_string();
            assert!(
                msg.contains(want) && msg.contains(&format!("e{i}.gguf")),
                "{msg}"
            );
        }

        // A tensor whose data offset is not where the previous one ends.
        let (mut bytes, _) = Writer::new(3)
            .tensor("a", &[4], 0, 16)
            .tensor("b", &[4], 0, 16)
            .build();
        // header (24) + info a (8 + 1 + 4 + 8 + 4 + 8) + info b up to its offset (8 + 1 + 4 + 8 + 4)
        let offset_at = 24 + 33 + 25;
        assert_eq!(bytes[offset_at..offset_at + 8], 32u64.to_le_bytes());
        bytes[offset_at..offset_at + 8].copy_from_slice(&64u64.to_le_bytes());
        let path = write(dir.path(), "off.gguf", &bytes);
        let msg = check(&path).expect_err("offset").to_string();
        assert!(msg.contains("data offset 64, expected 32"), "{msg}");
    }
}
