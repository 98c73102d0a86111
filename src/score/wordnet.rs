//! A small read-only reader of the WordNet 3.0 database (the Princeton "dict" files), enough to
//! reproduce what nltk's METEOR asks of WordNet: `wordnet.synsets(word)` and the lemma names of
//! each synset ([`WordNet::meteor_synonyms`], used by [`crate::score::answer::meteor`]).
//!
//! ## Source and semantics
//!
//! The reference is nltk 3.10.4, `nltk.corpus.reader.wordnet.WordNetCorpusReader`:
//!
//! * `synsets(lemma)` (`pos=None`, `lang="eng"`, `check_exceptions=True`): the lemma is
//!   lowercased (`str.lower`), then for each part of speech of `POS_LIST` = noun, verb,
//!   adjective, adverb (in that order; adjective satellites `s` are not a separate step: their
//!   synsets are listed under the adjective in `index.adj`), for each form that `_morphy`
//!   returns, the synsets listed for that form and part of speech in `index.<pos>`;
//! * `_morphy(form, pos)`: if `form` is a key of the part of speech's exception list
//!   (`<pos>.exc`; when a key occurs on several lines the last line wins, as nltk builds a
//!   dict), the candidates are the exception's base forms, else the detachment rules applied
//!   once to `form` (noun: `s→`, `ses→s`, `ves→f`, `xes→x`, `zes→z`, `ches→ch`, `shes→sh`,
//!   `men→man`, `ies→y`; verb: `s→`, `ies→y`, `es→e`, `es→`, `ed→e`, `ed→`, `ing→e`, `ing→`;
//!   adjective: `er→`, `est→`, `er→e`, `est→e`; adverb: none). The result is `[form] +
//!   candidates` restricted to forms that have this part of speech in the index, without
//!   repeats, in that order ([`WordNet::morphy`]);
//! * lemma names come from the synset's line in `data.<pos>` (the byte offset of the line is the
//!   synset offset), with the adjective syntactic marker (`(a)`, `(p)`, `(ip)`: a final
//!   parenthesised group without inner parentheses) removed. Case is kept (`Canis_familiaris`)
//!   and multiword lemmas keep their underscores (`cable_car`).
//!
//! nltk's METEOR (`nltk.translate.meteor_score._enum_wordnetsyn_match`) takes, for a word `w`,
//! `{lemma.name() for synset in wordnet.synsets(w) for lemma in synset.lemmas() if "_" not in
//! lemma.name()} | {w}`: [`WordNet::meteor_synonyms`] returns exactly that set.
//!
//! The golden fixture `tests/fixtures/answer/wordnet_synonyms.json` (written by
//! `tests/fixtures/answer/make_fixture.py` with nltk reading the same files) pins
//! [`WordNet::morphy`] for every part of speech and [`WordNet::meteor_synonyms`] on a few hundred
//! words, including exception forms (`geese`, `ran`, `better`) and duplicate exception keys.
//!
//! ## Where the database is found
//!
//! [`database_dir`]: the directory named by the environment variable `ORCHESTRATE_WORDNET`,
//! else `/usr/share/wordnet`, where Debian's package `wordnet-base` installs WordNet 3.0
//! (`apt-get install wordnet-base`; `scripts/setup.sh` does it). The files read are
//! `index.{noun,verb,adj,adv}`, `data.{noun,verb,adj,adv}` and `{noun,verb,adj,adv}.exc`
//! (28 MB together). Debian rebuilds the data files from the WordNet 3.0 lexicographer
//! sources, so some byte offsets differ from Princeton's distribution (which nltk's `wordnet`
//! corpus is). For verbs, adjectives and adverbs the index entries and synset lemma lists were
//! compared with a copy of Princeton's files and are identical; for nouns (no such copy was at
//! hand) only the synset count was compared. The synset counts of all four parts of speech are
//! WordNet 3.0's (82,115 noun, 13,767 verb, 18,156 adjective, 3,621 adverb). Offsets are only used inside one database here
//! and never leave this module.
//!
//! ## Cost
//!
//! [`WordNet::load`] reads and parses every file once (all synsets, so a corrupt database is
//! reported at load time rather than in the middle of scoring). Measured in a release build on
//! the 2-core development machine (files in the page cache, the other core busy): 0.13-0.21 s;
//! the loaded database keeps about 25 MB (resident set growth; 147k lemmas, 117,659 synsets,
//! 148k distinct lemma names), and the peak while loading is about 60 MB because the 28 MB of
//! file text is held until parsing ends. [`global`] loads at most once per process (a
//! [`OnceLock`]); lookups then read memory only and allocate just their small results (a
//! METEOR call costs microseconds per leftover word).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming the WordNet 3.0 database directory (see [`database_dir`]).
pub const ENV_DIR: &str = "ORCHESTRATE_WORDNET";

/// Where Debian's `wordnet-base` installs WordNet 3.0; the default of [`database_dir`].
pub const DEFAULT_DIR: &str = "/usr/share/wordnet";

/// Why the WordNet database could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WordNetError {
    /// A database file is missing or unreadable (the usual cause: WordNet is not installed;
    /// `apt-get install wordnet-base`, or set `ORCHESTRATE_WORDNET`).
    #[error("cannot read WordNet file {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A database file does not have the WordNet 3.0 format (`wndb(5WN)`), or refers to a synset
    /// that is not in the data file.
    #[error("malformed WordNet file {path}, line {line}: {reason}")]
    Malformed {
        /// The offending file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
}

/// A WordNet part of speech, in nltk's `POS_LIST` order. Adjective satellites (`s`) belong to
/// [`Pos::Adj`] (they live in `index.adj` / `data.adj`; see [`Synset::ss_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pos {
    /// `n`: `index.noun`, `data.noun`, `noun.exc`.
    Noun,
    /// `v`: `index.verb`, `data.verb`, `verb.exc`.
    Verb,
    /// `a`: `index.adj`, `data.adj`, `adj.exc`.
    Adj,
    /// `r`: `index.adv`, `data.adv`, `adv.exc`.
    Adv,
}

impl Pos {
    /// nltk's `POS_LIST`: the order in which `synsets()` visits the parts of speech.
    pub const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    /// The one-letter tag used in the index files and by nltk (`n`, `v`, `a`, `r`).
    pub fn tag(self) -> char {
        match self {
            Pos::Noun => 'n',
            Pos::Verb => 'v',
            Pos::Adj => 'a',
            Pos::Adv => 'r',
        }
    }

    /// The file name part: `noun`, `verb`, `adj`, `adv`.
    pub fn file_suffix(self) -> &'static str {
        match self {
            Pos::Noun => "noun",
            Pos::Verb => "verb",
            Pos::Adj => "adj",
            Pos::Adv => "adv",
        }
    }

    fn idx(self) -> usize {
        self as usize
    }

    fn from_tag(tag: &str) -> Option<Pos> {
        Some(match tag {
            "n" => Pos::Noun,
            "v" => Pos::Verb,
            "a" => Pos::Adj,
            "r" => Pos::Adv,
            _ => return None,
        })
    }

    /// nltk's `MORPHOLOGICAL_SUBSTITUTIONS[pos]`, in nltk's order.
    fn substitutions(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Pos::Noun => &[
                ("s", ""),
                ("ses", "s"),
                ("ves", "f"),
                ("xes", "x"),
                ("zes", "z"),
                ("ches", "ch"),
                ("shes", "sh"),
                ("men", "man"),
                ("ies", "y"),
            ],
            Pos::Verb => &[
                ("s", ""),
                ("ies", "y"),
                ("es", "e"),
                ("es", ""),
                ("ed", "e"),
                ("ed", ""),
                ("ing", "e"),
                ("ing", ""),
            ],
            Pos::Adj => &[("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
            Pos::Adv => &[],
        }
    }
}

/// A `start..start + len` range into one of the flat tables of [`WordNet`].
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// One synset as stored: where it is and which lemma names it has.
#[derive(Debug, Clone, Copy)]
struct SynsetRec {
    /// Byte offset of its line in `data.<pos>`.
    offset: u32,
    /// `n`, `v`, `a`, `s` or `r` (the data line's `ss_type`).
    ss_type: u8,
    /// Its lemma names: a range of `WordNet::synset_names`.
    names: Span,
}

/// The WordNet 3.0 database, read once into memory (see the module doc for what is kept and
/// what it costs). Immutable after [`WordNet::load`]; `Send + Sync`.
#[derive(Debug)]
pub struct WordNet {
    dir: PathBuf,
    /// lemma (as in the index files: lowercase, `_` for spaces) → per [`Pos`], a range of
    /// `index_synsets` (empty when the lemma does not have that part of speech).
    index: HashMap<Box<str>, [Span; 4]>,
    /// Synset ids (positions in `synsets`), in index-file order per lemma and part of speech.
    index_synsets: Vec<u32>,
    synsets: Vec<SynsetRec>,
    /// Lemma-name ids (ranges of `names`), per synset in data-file order.
    synset_names: Vec<u32>,
    /// All distinct lemma names, concatenated; `name_spans[id]` is name `id`.
    names: String,
    name_spans: Vec<Span>,
    /// Per [`Pos`]: exception form → base forms (`<pos>.exc`, the last line of a key wins).
    exceptions: [HashMap<Box<str>, Vec<Box<str>>>; 4],
}

/// One synset found by [`WordNet::synsets`].
#[derive(Debug, Clone, Copy)]
pub struct Synset<'a> {
    wn: &'a WordNet,
    pos: Pos,
    rec: SynsetRec,
}

impl<'a> Synset<'a> {
    /// The part of speech it was found under (its data file).
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The synset type of its data line: `n`, `v`, `a`, `s` (adjective satellite) or `r`, as
    /// nltk's `Synset.pos()`.
    pub fn ss_type(&self) -> char {
        char::from(self.rec.ss_type)
    }

    /// Byte offset of its line in `data.<pos>` of the loaded database (database-specific: see
    /// the module doc).
    pub fn offset(&self) -> u32 {
        self.rec.offset
    }

    /// Its lemma names in data-file order, as nltk's `Synset.lemma_names()`: case kept,
    /// underscores for spaces, adjective markers removed.
    pub fn lemma_names(&self) -> impl Iterator<Item = &'a str> + 'a {
        let wn = self.wn;
        wn.synset_names[self.rec.names.range()]
            .iter()
            .map(move |&id| wn.name(id))
    }
}

/// The database directory: `$ORCHESTRATE_WORDNET` if set and not empty, else
/// [`DEFAULT_DIR`] (`/usr/share/wordnet`).
pub fn database_dir() -> PathBuf {
    match std::env::var_os(ENV_DIR) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

/// The process-wide database, loaded from [`database_dir`] on first use (once per process, also
/// when loading fails).
///
/// `None` when it cannot be loaded: then one `tracing::warn!` per process names the directory,
/// the error and the fix (`apt-get install wordnet-base`, or `ORCHESTRATE_WORDNET`), and callers
/// leave METEOR out rather than computing it with other semantics.
pub fn global() -> Option<&'static WordNet> {
    static GLOBAL: OnceLock<Option<WordNet>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| load_or_warn(&database_dir()))
        .as_ref()
}

/// Whether the WordNet database of [`global`] loads, checked without keeping it: `false` after the
/// same warning as [`global`]. The parent of a sweep calls it once, because its workers' own
/// warnings are not shown. Costs one load (0.1-0.2 s, ~60 MB at the peak, freed on return).
pub fn available_or_warn() -> bool {
    load_or_warn(&database_dir()).is_some()
}

/// [`WordNet::load`]`(dir)`, or `None` after a `tracing::warn!` naming `dir`, the error and the
/// fix (what [`global`] does once per process).
fn load_or_warn(dir: &Path) -> Option<WordNet> {
    let started = std::time::Instant::now();
    match WordNet::load(dir) {
        Ok(wn) => {
            tracing::debug!(
                dir = %dir.display(),
                seconds = started.elapsed().as_secs_f64(),
                "WordNet loaded"
            );
            Some(wn)
        }
        Err(e) => {
            tracing::warn!(
                "WordNet 3.0 is not available in {} ({e}): METEOR is left out of the answer \
                 metrics. Install it with `apt-get install wordnet-base` (scripts/setup.sh \
                 does), or point {ENV_DIR} at a WordNet 3.0 dict directory.",
                dir.display()
            );
            None
        }
    }
}

fn read_file(path: &Path) -> Result<String, WordNetError> {
    let bytes = std::fs::read(path).map_err(|source| WordNetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        // 1-based line of the first invalid byte
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        WordNetError::Malformed {
            path: path.to_path_buf(),
            line,
            reason: format!("not UTF-8: {}", e.utf8_error()),
        }
    })
}

/// Removes an adjective syntactic marker, as nltk's `re.match(r"(.*?)(\([^()]*\))?$", name)`:
/// a final `(...)` group without inner parentheses.
fn strip_marker(name: &str) -> &str {
    if let Some(body) = name.strip_suffix(')') {
        if let Some(p) = body.rfind('(') {
            if !body[p + 1..].contains(')') {
                return &name[..p];
            }
        }
    }
    name
}

/// Builder state shared by the loading steps.
struct Loader<'t> {
    names: String,
    name_spans: Vec<Span>,
    name_ids: HashMap<&'t str, u32>,
    synsets: Vec<SynsetRec>,
    synset_names: Vec<u32>,
}

impl<'t> Loader<'t> {
    fn intern(&mut self, name: &'t str) -> u32 {
        if let Some(&id) = self.name_ids.get(name) {
            return id;
        }
        let id = self.name_spans.len() as u32;
        self.name_spans.push(Span {
            start: self.names.len() as u32,
            len: name.len() as u32,
        });
        self.names.push_str(name);
        self.name_ids.insert(name, id);
        id
    }

    /// Parses every synset line of one data file; returns byte offset → synset id.
    fn data_file(&mut self, path: &Path, text: &'t str) -> Result<HashMap<u32, u32>, WordNetError> {
        let mut by_offset = HashMap::new();
        let mut pos_in_file = 0usize;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            let at = pos_in_file;
            pos_in_file += line.len();
            if line.starts_with(' ') || line.trim().is_empty() {
                continue; // license header
            }
            let bad = |reason: String| WordNetError::Malformed {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            };
            let mut tok = line.split_ascii_whitespace();
            let mut next = |what: &str| tok.next().ok_or_else(|| bad(format!("missing {what}")));
            let offset_s = next("synset offset")?;
            let offset: u32 = offset_s
                .parse()
                .map_err(|_| bad(format!("bad synset offset {offset_s:?}")))?;
            if offset as usize != at {
                return Err(bad(format!(
                    "synset offset {offset} is not the line's byte offset {at}"
                )));
            }
            next("lexicographer file number")?;
            let ss_type = next("synset type")?;
            let ss_type = match ss_type {
                "n" | "v" | "a" | "s" | "r" => ss_type.as_bytes()[0],
                other => return Err(bad(format!("bad synset type {other:?}"))),
            };
            let w_cnt = next("word count")?;
            let w_cnt = u32::from_str_radix(w_cnt, 16)
                .map_err(|_| bad(format!("bad word count {w_cnt:?}")))?;
            let start = self.synset_names.len() as u32;
            for _ in 0..w_cnt {
                let word = next("word")?;
                next("lex_id")?;
                let id = self.intern(strip_marker(word));
                self.synset_names.push(id);
            }
            by_offset.insert(offset, self.synsets.len() as u32);
            self.synsets.push(SynsetRec {
                offset,
                ss_type,
                names: Span { start, len: w_cnt },
            });
        }
        Ok(by_offset)
    }
}

impl WordNet {
    /// Reads the WordNet 3.0 database in `dir` (`index.*`, `data.*` and `*.exc` of the four
    /// parts of speech; see the module doc for time and memory).
    ///
    /// Errors: [`WordNetError::Io`] when a file is missing or unreadable (WordNet not installed),
    /// [`WordNetError::Malformed`] when a file is not in WordNet's format or an index entry
    /// points at an offset with no synset line.
    pub fn load(dir: &Path) -> Result<WordNet, WordNetError> {
        let mut texts: Vec<(PathBuf, String)> = Vec::with_capacity(12);
        for kind in ["data", "index"] {
            for pos in Pos::ALL {
                let path = dir.join(format!("{kind}.{}", pos.file_suffix()));
                let text = read_file(&path)?;
                texts.push((path, text));
            }
        }
        let mut exceptions: [HashMap<Box<str>, Vec<Box<str>>>; 4] = Default::default();
        for pos in Pos::ALL {
            let path = dir.join(format!("{}.exc", pos.file_suffix()));
            let text = read_file(&path)?;
            let map = &mut exceptions[pos.idx()];
            for line in text.lines() {
                let mut terms = line.split_ascii_whitespace();
                if let Some(form) = terms.next() {
                    // nltk: exception_map[pos][terms[0]] = terms[1:] (a later line replaces)
                    map.insert(form.into(), terms.map(Box::from).collect());
                }
            }
        }

        let mut loader = Loader {
            names: String::with_capacity(2 << 20),
            name_spans: Vec::with_capacity(160_000),
            name_ids: HashMap::with_capacity(160_000),
            synsets: Vec::with_capacity(120_000),
            synset_names: Vec::with_capacity(210_000),
        };
        let mut by_offset: Vec<HashMap<u32, u32>> = Vec::with_capacity(4);
        for (path, text) in &texts[..4] {
            by_offset.push(loader.data_file(path, text)?);
        }

        let mut index: HashMap<Box<str>, [Span; 4]> = HashMap::with_capacity(150_000);
        let mut index_synsets: Vec<u32> = Vec::with_capacity(210_000);
        for (pos, (path, text)) in Pos::ALL.into_iter().zip(&texts[4..]) {
            for (n, line) in text.lines().enumerate() {
                if line.starts_with(' ') || line.trim().is_empty() {
                    continue;
                }
                let bad = |reason: String| WordNetError::Malformed {
                    path: path.clone(),
                    line: n + 1,
                    reason,
                };
                let mut tok = line.split_ascii_whitespace();
                let mut next =
                    |what: &str| tok.next().ok_or_else(|| bad(format!("missing {what}")));
                let num = |s: &str, what: &str| -> Result<usize, WordNetError> {
                    s.parse().map_err(|_| bad(format!("bad {what} {s:?}")))
                };
                let lemma = next("lemma")?;
                let p = next("part of speech")?;
                let p = Pos::from_tag(p).ok_or_else(|| bad(format!("bad part of speech {p:?}")))?;
                if p != pos {
                    return Err(bad(format!(
                        "part of speech {} in index.{}",
                        p.tag(),
                        pos.file_suffix()
                    )));
                }
                let n_synsets = num(next("synset count")?, "synset count")?;
                if n_synsets == 0 {
                    return Err(bad("synset count 0".into()));
                }
                let n_pointers = num(next("pointer count")?, "pointer count")?;
                for _ in 0..n_pointers {
                    next("pointer symbol")?;
                }
                let n_senses = num(next("sense count")?, "sense count")?;
                if n_senses != n_synsets {
                    return Err(bad(format!(
                        "sense count {n_senses} differs from synset count {n_synsets}"
                    )));
                }
                next("tagged sense count")?;
                let start = index_synsets.len() as u32;
                for _ in 0..n_synsets {
                    let off = next("synset offset")?;
                    let off: u32 = off
                        .parse()
                        .map_err(|_| bad(format!("bad synset offset {off:?}")))?;
                    let id = by_offset[pos.idx()].get(&off).ok_or_else(|| {
                        bad(format!(
                            "no synset at offset {off} of data.{}",
                            pos.file_suffix()
                        ))
                    })?;
                    index_synsets.push(*id);
                }
                // nltk: _lemma_pos_offset_map[lemma][pos] = offsets (a later line replaces)
                index.entry(lemma.into()).or_default()[pos.idx()] = Span {
                    start,
                    len: n_synsets as u32,
                };
            }
        }
        let Loader {
            names,
            name_spans,
            synsets,
            synset_names,
            ..
        } = loader;
        let mut wn = WordNet {
            dir: dir.to_path_buf(),
            index,
            index_synsets,
            synsets,
            synset_names,
            names,
            name_spans,
            exceptions,
        };
        wn.index.shrink_to_fit();
        wn.index_synsets.shrink_to_fit();
        wn.names.shrink_to_fit();
        Ok(wn)
    }

    /// The directory the database was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of synsets per part of speech (adjective satellites counted with adjectives):
    /// `[noun, verb, adj, adv]`, `[82115, 13767, 18156, 3621]` for WordNet 3.0.
    pub fn synset_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for s in &self.synsets {
            let pos = match s.ss_type {
                b'n' => Pos::Noun,
                b'v' => Pos::Verb,
                b'r' => Pos::Adv,
                _ => Pos::Adj,
            };
            counts[pos.idx()] += 1;
        }
        counts
    }

    fn name(&self, id: u32) -> &str {
        &self.names[self.name_spans[id as usize].range()]
    }

    fn has_pos(&self, form: &str, pos: Pos) -> bool {
        self.index
            .get(form)
            .is_some_and(|spans| spans[pos.idx()].len > 0)
    }

    /// nltk's `WordNetCorpusReader._morphy(form, pos, check_exceptions=True)`: the base forms of
    /// `form` that WordNet lists under `pos` — `form` itself first if listed, then the exception
    /// list's base forms when `form` is an exception, else the forms the detachment rules give;
    /// only forms in the index for `pos`, each once, in that order (see the module doc). `form`
    /// is used as given (not lowercased; [`WordNet::synsets`] lowercases).
    pub fn morphy(&self, form: &str, pos: Pos) -> Vec<String> {
        let mut candidates: Vec<String> = vec![form.to_string()];
        if let Some(bases) = self.exceptions[pos.idx()].get(form) {
            candidates.extend(bases.iter().map(|b| b.to_string()));
        } else {
            for (old, new) in pos.substitutions() {
                if let Some(stem) = form.strip_suffix(old) {
                    candidates.push(format!("{stem}{new}"));
                }
            }
        }
        let mut out: Vec<String> = Vec::with_capacity(candidates.len());
        for c in candidates {
            if self.has_pos(&c, pos) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// nltk's `WordNetCorpusReader.synsets(word)` (all parts of speech, English, with
    /// exceptions): `word` is lowercased (Python `str.lower`, here [`str::to_lowercase`]), then
    /// for each [`Pos::ALL`], for each form of [`WordNet::morphy`], the form's synsets in index
    /// order. A synset reached through two forms appears twice, as in nltk.
    pub fn synsets(&self, word: &str) -> Vec<Synset<'_>> {
        let lower = word.to_lowercase();
        let mut out = Vec::new();
        for pos in Pos::ALL {
            for form in self.morphy(&lower, pos) {
                if let Some(spans) = self.index.get(form.as_str()) {
                    out.extend(
                        self.index_synsets[spans[pos.idx()].range()]
                            .iter()
                            .map(|&id| Synset {
                                wn: self,
                                pos,
                                rec: self.synsets[id as usize],
                            }),
                    );
                }
            }
        }
        out
    }

    /// The synonym set that nltk's METEOR (`_enum_wordnetsyn_match`) builds for `word`: the
    /// lemma names without `_` of every synset of [`WordNet::synsets`]`(word)`, plus `word`
    /// itself (as given, not lowercased). Lemma names keep their case (`Ford`), so they match
    /// only words of the same case; multiword lemmas (`cable_car`) are left out. Sorted
    /// (a `BTreeSet`); always contains `word`.
    pub fn meteor_synonyms<'a>(&'a self, word: &'a str) -> BTreeSet<&'a str> {
        let mut out: BTreeSet<&'a str> = self
            .synsets(word)
            .into_iter()
            .flat_map(|s| s.lemma_names())
            .filter(|name| !name.contains('_'))
            .collect();
        out.insert(word);
        out
    }
}

/// For tests that need WordNet: the [`global`] database, or — when it is missing — a panic with
/// the fix, unless `ORCHESTRATE_ALLOW_MISSING_MODELS=1`, in which case `None` (the caller skips
/// its WordNet checks and says so on stderr).
#[cfg(test)]
pub(crate) fn for_tests() -> Option<&'static WordNet> {
    if let Some(wn) = global() {
        return Some(wn);
    }
    let dir = database_dir();
    let why = WordNet::load(&dir)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    if std::env::var("ORCHESTRATE_ALLOW_MISSING_MODELS").as_deref() == Ok("1") {
        eprintln!(
            "skipping WordNet checks: no WordNet 3.0 in {} ({why})",
            dir.display()
        );
        return None;
    }
    panic!(
        "this test needs WordNet 3.0 in {} ({why}): run `apt-get install wordnet-base` \
         (scripts/setup.sh does) or set {ENV_DIR} to a WordNet 3.0 dict directory; \
         ORCHESTRATE_ALLOW_MISSING_MODELS=1 skips the WordNet checks",
        dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Entry {
        word: String,
        morphy: HashMap<String, Vec<String>>,
        synonyms: Vec<String>,
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        counts: [usize; 4],
        words: Vec<Entry>,
    }

    /// Every fixture word's `_morphy` per part of speech and METEOR synonym set equal nltk's.
    #[test]
    fn matches_nltk_on_word_list() {
        let Some(wn) = for_tests() else { return };
        let fx: Fixture = serde_json::from_str(include_str!(
            "../../tests/fixtures/answer/wordnet_synonyms.json"
        ))
        .expect("wordnet fixture parses");
        assert!(fx.words.len() >= 300, "{} words", fx.words.len());
        assert_eq!(wn.synset_counts(), fx.counts);
        let mut bad = Vec::new();
        for e in &fx.words {
            for pos in Pos::ALL {
                let want = &e.morphy[&pos.tag().to_string()];
                let got = wn.morphy(&e.word, pos);
                if &got != want {
                    bad.push(format!(
                        "morphy({:?}, {}): got {got:?}, want {want:?}",
                        e.word,
                        pos.tag()
                    ));
                }
            }
            let got: Vec<&str> = wn.meteor_synonyms(&e.word).into_iter().collect();
            if got != e.synonyms {
                bad.push(format!(
                    "synonyms({:?}): got {got:?}, want {:?}",
                    e.word, e.synonyms
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{} mismatches:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }

    #[test]
    fn by_hand() {
        let Some(wn) = for_tests() else { return };
        // exception list: geese → goose (noun.exc); ran → run (verb.exc)
        assert_eq!(wn.morphy("geese", Pos::Noun), ["goose"]);
        assert_eq!(wn.morphy("ran", Pos::Verb), ["run"]);
        // detachment rules: churches → church; the word itself first when listed
        assert_eq!(wn.morphy("churches", Pos::Noun), ["church"]);
        assert_eq!(wn.morphy("dogs", Pos::Verb), ["dog"]);
        let car = wn.meteor_synonyms("car");
        assert!(car.contains("automobile") && car.contains("motorcar") && car.contains("car"));
        // multiword lemmas are left out: "cable_car" is a lemma of a synset of "car"
        assert!(wn
            .synsets("car")
            .iter()
            .any(|s| s.lemma_names().any(|n| n == "cable_car")));
        assert!(!car.contains("cable_car"));
        // lowercased for the lookup, but the word itself is kept as given
        let cars = wn.meteor_synonyms("Cars");
        assert!(cars.contains("automobile") && cars.contains("Cars") && !cars.contains("cars"));
        // "Canis_familiaris" is a lemma of a synset of "dog", but a multiword one: left out
        assert!(wn
            .synsets("dog")
            .iter()
            .any(|s| s.lemma_names().any(|n| n == "Canis_familiaris")));
        let dog = wn.meteor_synonyms("dog");
        assert!(!dog.contains("domestic_dog") && dog.contains("hotdog") && dog.contains("frump"));
        // unknown words: only themselves
        assert_eq!(
            wn.meteor_synonyms("zzqx").into_iter().collect::<Vec<_>>(),
            ["zzqx"]
        );
        assert_eq!(wn.meteor_synonyms("").into_iter().collect::<Vec<_>>(), [""]);
        // adjective markers are stripped: "galore(ip)" in data.adj
        assert!(wn
            .synsets("galore")
            .iter()
            .any(|s| s.lemma_names().any(|n| n == "galore")));
    }

    #[test]
    fn marker_stripping_like_nltk_regex() {
        assert_eq!(strip_marker("galore(ip)"), "galore");
        assert_eq!(strip_marker("elect(p)"), "elect");
        assert_eq!(strip_marker("a(b)c"), "a(b)c");
        assert_eq!(strip_marker("x(a(b)"), "x(a");
        assert_eq!(strip_marker("x(a)b)"), "x(a)b)");
        assert_eq!(strip_marker("()"), "");
        assert_eq!(strip_marker("plain"), "plain");
    }

    #[test]
    fn missing_database_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = WordNet::load(dir.path()).unwrap_err();
        assert!(matches!(err, WordNetError::Io { .. }), "{err}");
        assert!(err.to_string().contains("data.noun"), "{err}");
    }

    /// A `tracing` writer that keeps what is written.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Without a database, the global loader gives `None` (METEOR is then left out) and warns
    /// with the directory and the fix.
    #[test]
    fn missing_database_warns_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-wordnet-here");
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let loaded = tracing::subscriber::with_default(subscriber, || load_or_warn(&missing));
        assert!(loaded.is_none());
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("apt-get install wordnet-base"), "{text}");
        assert!(text.contains("METEOR is left out"), "{text}");
    }

    #[test]
    fn malformed_database_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // a tiny but well-formed database: one noun synset "cat", one verb synset "purr"
        let line_n = "00000000 05 n 02 cat 0 true_cat 0 000 | a feline\n";
        let line_v = "00000000 29 v 01 purr 0 000 | make a sound\n";
        std::fs::write(d.join("data.noun"), line_n).unwrap();
        std::fs::write(d.join("data.verb"), line_v).unwrap();
        std::fs::write(d.join("data.adj"), "").unwrap();
        std::fs::write(d.join("data.adv"), "").unwrap();
        std::fs::write(d.join("index.noun"), "  header\ncat n 1 0 1 0 00000000\n").unwrap();
        std::fs::write(d.join("index.verb"), "purr v 1 0 1 0 00000000\n").unwrap();
        std::fs::write(d.join("index.adj"), "").unwrap();
        std::fs::write(d.join("index.adv"), "").unwrap();
        for f in ["noun.exc", "verb.exc", "adj.exc", "adv.exc"] {
            std::fs::write(d.join(f), "").unwrap();
        }
        std::fs::write(d.join("noun.exc"), "kitties cat\n").unwrap();
        let wn = WordNet::load(d).expect("tiny database loads");
        assert_eq!(wn.synset_counts(), [1, 1, 0, 0]);
        let syn: Vec<&str> = wn.meteor_synonyms("kitties").into_iter().collect();
        assert_eq!(syn, ["cat", "kitties"]); // true_cat is multiword
        assert_eq!(wn.morphy("cats", Pos::Noun), ["cat"]);
        // an index entry pointing at no synset
        std::fs::write(d.join("index.noun"), "cat n 1 0 1 0 00000099\n").unwrap();
        let err = WordNet::load(d).unwrap_err();
        assert!(
            matches!(err, WordNetError::Malformed { line: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("index.noun"), "{err}");
    }
}
