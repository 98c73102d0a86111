//! Token sampling: the settings of one model's sampler, named presets, and the order in which
//! the stages run.
//!
//! This module owns [`Sampling`] (every knob a LangChain `LlamaCpp` notebook can turn),
//! [`SamplerPreset`] (named defaults, e.g. LangChain's) and [`Sampling::chain`], the list of
//! [`Stage`]s in application order. [`crate::generate`] turns that list into a llama.cpp sampler
//! chain; keeping the order here, as plain data, lets it be tested without a model.
//!
//! The order is llama-cpp-python 0.3's (`Llama._init_sampler` in `llama_cpp/llama.py`), the
//! sampler behind LangChain's `LlamaCpp`: penalties (repeat over the last `repeat_last_n`
//! tokens, frequency, presence) first; then, at temperature 0, greedy; otherwise top-k →
//! typical → top-p → min-p → temperature → a seeded draw. Penalties see the generated tokens
//! only (llama-cpp-python accepts each sampled token into the chain, never the prompt), as here.
//! llama.cpp's stages return early when neutral (top-k 0, typical 1, top-p 1, min-p 0, penalties
//! 1/0/0), so a stage left unset (`None`) behaves exactly like llama-cpp-python passing its
//! neutral value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Window of the repeat penalty when a penalty is set but no window: llama-cpp-python's and
/// LangChain's `last_n_tokens_size` default, 64 tokens.
pub const DEFAULT_REPEAT_LAST_N: i32 = 64;

/// Sampling settings of one model. Serialised flat into [`crate::generate::GenParams`]; unset
/// optional stages are omitted, so adding a stage later does not change the id of cells that do
/// not use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Temperature; `0` means greedy (the most likely token after penalties). Default 0.
    pub temperature: f32,
    /// Nucleus (top-p) mass kept when sampling, in (0, 1]; 1 disables it. Default 0.95. Unused
    /// when greedy.
    pub top_p: f32,
    /// Seed of the draw. With [`SeedMode::Fixed`] (the default) each answer starts a fresh
    /// sampler from `seed + repeat`, in 0..=4294967294 (4294967295 is llama.cpp's
    /// `LLAMA_DEFAULT_SEED`, "random"). With [`SeedMode::LlamaCppPython`] it is the seed a
    /// `Llama(seed=...)` object starts its per-completion sequence from, any integer (LangChain's
    /// `LlamaCpp` passes -1). Default 42.
    pub seed: i64,
    /// How each answer's draw is seeded from `seed`; `None` is [`SeedMode::Fixed`] (omitted from
    /// the serialised settings, so cells that never set it keep their ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_mode: Option<SeedMode>,
    /// Keep the `top_k` most likely tokens (>= 0; 0 disables). Unused when greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    /// Locally typical sampling mass, in (0, 1]; 1 disables (Meister et al. 2022). Unused when
    /// greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typical_p: Option<f32>,
    /// Drop tokens whose probability is below `min_p` times the most likely one's, in [0, 1];
    /// 0 disables. Unused when greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// Divide positive logits by (and multiply negative ones by) this for tokens among the last
    /// `repeat_last_n` generated (> 0; 1 disables; CTRL, Keskar et al. 2019). Applied also when
    /// greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    /// Window of the penalties in tokens (>= 0; 0 disables them). Default
    /// [`DEFAULT_REPEAT_LAST_N`] when a penalty is set. llama-cpp-python's `last_n_tokens_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<i32>,
    /// Subtracted from a token's logit once per occurrence in the window (OpenAI's
    /// `frequency_penalty`; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Subtracted from a token's logit if it occurs in the window at all (OpenAI's
    /// `presence_penalty`; 0 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
}

impl Default for Sampling {
    /// Greedy, no penalties, top_p 0.95 and seed 42 for when a temperature is set.
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 0.95,
            seed: 42,
            seed_mode: None,
            top_k: None,
            typical_p: None,
            min_p: None,
            repeat_penalty: None,
            repeat_last_n: None,
            frequency_penalty: None,
            presence_penalty: None,
        }
    }
}

/// One stage of the sampler chain, in application order (see [`Sampling::chain`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// Repeat, frequency and presence penalties over the last `last_n` generated tokens.
    Penalties {
        /// Window in tokens.
        last_n: i32,
        /// Repeat penalty (1 = off).
        repeat: f32,
        /// Frequency penalty (0 = off).
        frequency: f32,
        /// Presence penalty (0 = off).
        presence: f32,
    },
    /// Keep the k most likely tokens.
    TopK(i32),
    /// Locally typical sampling with this mass.
    Typical(f32),
    /// Nucleus sampling with this mass.
    TopP(f32),
    /// Minimum probability relative to the most likely token.
    MinP(f32),
    /// Divide logits by the temperature.
    Temperature(f32),
    /// Draw from the remaining distribution with this seed.
    Dist(u32),
    /// Take the most likely token.
    Greedy,
}

impl Sampling {
    /// The stages in llama-cpp-python 0.3's order (`Llama._init_sampler`): penalties if any is
    /// set, then `Greedy` at temperature <= 0, else the set ones of top-k, typical, top-p,
    /// min-p, then temperature and the seeded draw. Top-p is always part of a sampled chain (as
    /// it always was here; 1 makes it a no-op).
    pub fn chain(&self) -> Vec<Stage> {
        let mut stages = Vec::new();
        if self.repeat_penalty.is_some()
            || self.frequency_penalty.is_some()
            || self.presence_penalty.is_some()
        {
            stages.push(Stage::Penalties {
                last_n: self.repeat_last_n.unwrap_or(DEFAULT_REPEAT_LAST_N),
                repeat: self.repeat_penalty.unwrap_or(1.0),
                frequency: self.frequency_penalty.unwrap_or(0.0),
                presence: self.presence_penalty.unwrap_or(0.0),
            });
        }
        if self.temperature <= 0.0 {
            stages.push(Stage::Greedy);
            return stages;
        }
        stages.extend(self.top_k.map(Stage::TopK));
        stages.extend(self.typical_p.map(Stage::Typical));
        stages.push(Stage::TopP(self.top_p));
        stages.extend(self.min_p.map(Stage::MinP));
        stages.push(Stage::Temperature(self.temperature));
        stages.push(Stage::Dist(self.draw_seed(0, 0)));
        stages
    }

    /// The seed of the draw of one answer: `repeat` is its 0-based repeat, `answer_index` its
    /// 0-based position among the cell's answers in asking order (`repeat × questions +
    /// question position`).
    ///
    /// [`SeedMode::Fixed`]: `seed + repeat` (wrapping). [`SeedMode::LlamaCppPython`]: the seed
    /// llama-cpp-python 0.3 gives its `answer_index`-th completion call when the `Llama` object
    /// was made with `seed` and no call passes one ([`llama_cpp_python_seeds`]), so a fresh
    /// notebook process asking the cell's questions in order draws exactly the same numbers.
    pub fn draw_seed(&self, repeat: u32, answer_index: u64) -> u32 {
        match self.seed_mode.unwrap_or(SeedMode::Fixed) {
            SeedMode::Fixed => (self.seed as u32).wrapping_add(repeat),
            SeedMode::LlamaCppPython => llama_cpp_python_seeds(self.seed)
                .nth(usize::try_from(answer_index).unwrap_or(usize::MAX))
                .map(|s| s as u32) // ctypes' c_uint32 keeps the low 32 bits, as here
                .unwrap_or_default(),
        }
    }

    /// Whether the same prompt always gives the same tokens (greedy decoding), whatever the seed.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks every range; the message names the setting and its allowed range.
    ///
    /// # Errors
    /// A message such as `top_k must be >= 0, got -1`.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, v: f32| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number, got {v}"))
            }
        };
        finite("temperature", self.temperature)?;
        if self.temperature < 0.0 {
            return Err(format!(
                "temperature must be >= 0 (0 = greedy), got {}",
                self.temperature
            ));
        }
        if self.seed_mode.unwrap_or(SeedMode::Fixed) == SeedMode::Fixed
            && !(0..i64::from(u32::MAX)).contains(&self.seed)
        {
            return Err(format!(
                "seed must be in 0..=4294967294 with seed_mode \"fixed\" (4294967295 is \
                 llama.cpp's random seed), got {}; negative seeds such as LangChain's -1 need \
                 seed_mode = \"llama-cpp-python\"",
                self.seed
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if let Some(k) = self.top_k.filter(|k| *k < 0) {
            return Err(format!("top_k must be >= 0 (0 = off), got {k}"));
        }
        if let Some(p) = self.typical_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return Err(format!("typical_p must be in (0, 1] (1 = off), got {p}"));
        }
        if let Some(p) = self.min_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return Err(format!("min_p must be in [0, 1] (0 = off), got {p}"));
        }
        if let Some(r) = self.repeat_penalty.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(format!("repeat_penalty must be > 0 (1 = off), got {r}"));
        }
        if let Some(n) = self.repeat_last_n.filter(|n| *n < 0) {
            return Err(format!("repeat_last_n must be >= 0 (0 = off), got {n}"));
        }
        if let Some(f) = self.frequency_penalty {
            finite("frequency_penalty", f)?;
        }
        if let Some(p) = self.presence_penalty {
            finite("presence_penalty", p)?;
        }
        Ok(())
    }
}

/// How each answer's draw is seeded (see [`Sampling::draw_seed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeedMode {
    /// Every answer draws with `seed` (plus its repeat): orchestrate's default.
    Fixed,
    /// Each answer draws with the seed llama-cpp-python 0.3 would give that completion call:
    /// `Llama._create_completion` without a per-call seed sets
    /// `self._seed = random.Random(self._seed).randint(0, 2**32)` before sampling (source:
    /// `llama_cpp/llama.py`), starting from the `Llama(seed=...)` value.
    LlamaCppPython,
}

impl SeedMode {
    /// Every mode, in declaration order.
    pub const ALL: [SeedMode; 2] = [SeedMode::Fixed, SeedMode::LlamaCppPython];

    /// The name used in experiment files: `fixed`, `llama-cpp-python`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeedMode::Fixed => "fixed",
            SeedMode::LlamaCppPython => "llama-cpp-python",
        }
    }
}

impl fmt::Display for SeedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SeedMode {
    type Err = String;

    /// Parses a mode name (case-insensitive; `_` and `-` alike).
    ///
    /// # Errors
    /// A message listing the accepted names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        SeedMode::ALL
            .into_iter()
            .find(|m| m.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = SeedMode::ALL.iter().map(|m| m.as_str()).collect();
                format!(
                    "unknown seed_mode {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// llama.cpp's `LLAMA_DEFAULT_SEED` (0xFFFFFFFF): "draw a random seed". llama-cpp-python's
/// `Llama` starts from it when given no seed or seed 0 (`seed or LLAMA_DEFAULT_SEED`).
pub const LLAMA_DEFAULT_SEED: i64 = 0xFFFF_FFFF;

/// The per-completion seeds of a llama-cpp-python 0.3 `Llama(seed=start)` object whose calls pass
/// no seed: `s = random.Random(s).randint(0, 2**32)` before each call, in call order. Values are
/// in 0..=2^32; llama.cpp's `llama_sampler_init_dist` receives the low 32 bits (ctypes
/// `c_uint32`). `start` 0 becomes [`LLAMA_DEFAULT_SEED`] as in `Llama.__init__`. A drawn
/// 4294967295 (one chance in 2^32 per call) is llama.cpp's "random seed" in both tools.
///
/// Checked against CPython on `tests/fixtures/generate/seed_sequence.json`
/// (`make_seed_sequence.py` beside it).
pub fn llama_cpp_python_seeds(start: i64) -> impl Iterator<Item = u64> {
    let mut s = if start == 0 {
        LLAMA_DEFAULT_SEED.unsigned_abs()
    } else {
        start.unsigned_abs()
    };
    std::iter::from_fn(move || {
        s = llama_cpp_python_step(s);
        Some(s)
    })
}

/// One step of llama-cpp-python's seed sequence: `random.Random(s).randint(0, 2**32)`.
fn llama_cpp_python_step(s: u64) -> u64 {
    PyRandom::from_int(s).randint_0_to_2_pow_32()
}

/// Python's `random.Random` core, only what [`llama_cpp_python_seeds`] needs: MT19937
/// (Matsumoto & Nishimura 1998) seeded from a non-negative integer by `init_by_array` over its
/// 32-bit words, least significant first (CPython `Modules/_randommodule.c`, `random_seed`; a
/// negative seed is seeded by its absolute value), and `randint(0, 2**32)` as
/// `_randbelow_with_getrandbits(2**32 + 1)` (`Lib/random.py`).
struct PyRandom {
    mt: [u32; MT_N],
    index: usize,
}

/// MT19937 state words.
const MT_N: usize = 624;
/// MT19937 middle word offset.
const MT_M: usize = 397;

impl PyRandom {
    /// `random.Random(n)` for an integer `n >= 0`.
    fn from_int(n: u64) -> Self {
        let key: Vec<u32> = if n >> 32 == 0 {
            vec![n as u32]
        } else {
            vec![n as u32, (n >> 32) as u32]
        };
        let mut r = PyRandom {
            mt: [0; MT_N],
            index: MT_N,
        };
        r.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..MT_N.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= MT_N {
                r.mt[0] = r.mt[MT_N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..MT_N - 1 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= MT_N {
                r.mt[0] = r.mt[MT_N - 1];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..MT_N {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = MT_N;
    }

    /// `genrand_uint32`: the next tempered 32-bit output.
    fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            for k in 0..MT_N {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % MT_N] & 0x7fff_ffff);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.mt[k] = self.mt[(k + MT_M) % MT_N] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `randint(0, 2**32)`: `getrandbits(33)` (low word first, then the top bit of the next
    /// word) until the value is at most 2^32.
    fn randint_0_to_2_pow_32(&mut self) -> u64 {
        loop {
            let low = u64::from(self.next_u32());
            let high = u64::from(self.next_u32() >> 31);
            let r = low | (high << 32);
            if r <= 1 << 32 {
                return r;
            }
        }
    }
}

/// Named sampler defaults. A model's explicit settings override its preset's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerPreset {
    /// Greedy decoding, no penalties: orchestrate's default.
    Greedy,
    /// What a LangChain notebook gets from `langchain_community.llms.LlamaCpp` with default
    /// fields on llama-cpp-python 0.3: temperature 0.8, top_p 0.95, top_k 40, repeat_penalty
    /// 1.1 (LlamaCpp's fields, passed per call), repeat_last_n 64 (LlamaCpp's
    /// `last_n_tokens_size`, passed to `Llama()`), min_p 0.05 and typical_p 1 (not LlamaCpp
    /// fields, so llama-cpp-python's `create_completion` defaults), frequency and presence
    /// penalty 0 (the same), and LlamaCpp's seed -1 with llama-cpp-python's per-call seed
    /// sequence ([`SeedMode::LlamaCppPython`]: a fixed sequence, so runs repeat, and the same
    /// numbers a fresh notebook process draws). The seed notebooks set `temperature = 0.01,
    /// top_p = 1` on top.
    Langchain,
    /// llama-cpp-python 0.3's `create_completion` defaults without LangChain: temperature 0.8,
    /// top_p 0.95, top_k 40, min_p 0.05, typical_p 1, repeat_penalty 1 (off),
    /// repeat_last_n 64, frequency and presence penalty 0; `Llama`'s default seed
    /// [`LLAMA_DEFAULT_SEED`] with its per-call seed sequence ([`SeedMode::LlamaCppPython`]).
    LlamaCppPython,
}

/// The settings a preset brings besides the sampler's: per-call and model-load values of the
/// library it mirrors. `None` leaves orchestrate's default. A model's explicit settings override
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PresetExtras {
    /// Maximum generated tokens per answer.
    pub max_tokens: Option<u32>,
    /// Tokens per prompt-processing decode call (llama.cpp `n_batch`, also used as `n_ubatch`).
    pub n_batch: Option<u32>,
    /// RoPE base frequency override.
    pub rope_freq_base: Option<f32>,
    /// RoPE frequency scale override.
    pub rope_freq_scale: Option<f32>,
}

impl SamplerPreset {
    /// Every preset, in declaration order.
    pub const ALL: [SamplerPreset; 3] = [
        SamplerPreset::Greedy,
        SamplerPreset::Langchain,
        SamplerPreset::LlamaCppPython,
    ];

    /// The name used in experiment files: `greedy`, `langchain`, `llama-cpp-python`.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerPreset::Greedy => "greedy",
            SamplerPreset::Langchain => "langchain",
            SamplerPreset::LlamaCppPython => "llama-cpp-python",
        }
    }

    /// The settings of this preset (`greedy`: [`Sampling::default`]).
    pub fn sampling(self) -> Sampling {
        let llama_cpp_python = Sampling {
            temperature: 0.8,
            top_p: 0.95,
            top_k: Some(40),
            typical_p: Some(1.0),
            min_p: Some(0.05),
            repeat_penalty: Some(1.0),
            repeat_last_n: Some(DEFAULT_REPEAT_LAST_N),
            frequency_penalty: Some(0.0),
            presence_penalty: Some(0.0),
            seed: LLAMA_DEFAULT_SEED,
            seed_mode: Some(SeedMode::LlamaCppPython),
        };
        match self {
            SamplerPreset::Greedy => Sampling::default(),
            SamplerPreset::LlamaCppPython => llama_cpp_python,
            SamplerPreset::Langchain => Sampling {
                repeat_penalty: Some(1.1),
                seed: -1,
                ..llama_cpp_python
            },
        }
    }
}

impl SamplerPreset {
    /// The non-sampler settings of this preset. `langchain`: max_tokens 256, n_batch 8,
    /// rope_freq_base 10000 and rope_freq_scale 1.0 — `LlamaCpp`'s field defaults, which it
    /// always passes to `Llama()` (so the RoPE values override the model's own, e.g. Qwen2's
    /// base 1000000; measured: this changes greedy output). Not `n_ctx`: LlamaCpp's 512 is too
    /// small for RAG prompts and notebooks set it, so orchestrate's 2048 stays unless the model
    /// sets `n_ctx`. Source: `langchain_community/llms/llamacpp.py` (fields and
    /// `validate_environment`). The other presets bring nothing.
    pub fn extras(self) -> PresetExtras {
        match self {
            SamplerPreset::Langchain => PresetExtras {
                max_tokens: Some(256),
                n_batch: Some(8),
                rope_freq_base: Some(10_000.0),
                rope_freq_scale: Some(1.0),
            },
            SamplerPreset::Greedy | SamplerPreset::LlamaCppPython => PresetExtras::default(),
        }
    }
}

impl fmt::Display for SamplerPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SamplerPreset {
    type Err = String;

    /// Parses a preset name (case-insensitive; `_` and `-` alike).
    ///
    /// # Errors
    /// A message listing the accepted names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        SamplerPreset::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = SamplerPreset::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown sampler preset {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chain_is_greedy_without_penalties() {
        assert_eq!(Sampling::default().chain(), vec![Stage::Greedy]);
    }

    #[test]
    fn greedy_keeps_penalties_before_the_argmax() {
        let s = Sampling {
            repeat_penalty: Some(1.1),
            top_k: Some(40),
            min_p: Some(0.05),
            ..Sampling::default()
        };
        assert_eq!(
            s.chain(),
            vec![
                Stage::Penalties {
                    last_n: 64,
                    repeat: 1.1,
                    frequency: 0.0,
                    presence: 0.0
                },
                Stage::Greedy
            ]
        );
    }

    #[test]
    fn sampled_chain_follows_llama_cpp_python_order() {
        let mut s = SamplerPreset::Langchain.sampling();
        s.temperature = 0.01;
        s.top_p = 1.0;
        s.seed = 7;
        s.seed_mode = None;
        assert_eq!(
            s.chain(),
            vec![
                Stage::Penalties {
                    last_n: 64,
                    repeat: 1.1,
                    frequency: 0.0,
                    presence: 0.0
                },
                Stage::TopK(40),
                Stage::Typical(1.0),
                Stage::TopP(1.0),
                Stage::MinP(0.05),
                Stage::Temperature(0.01),
                Stage::Dist(7),
            ]
        );
    }

    #[test]
    fn the_old_top_p_chain_is_unchanged_when_no_new_stage_is_set() {
        let s = Sampling {
            temperature: 0.7,
            ..Sampling::default()
        };
        assert_eq!(
            s.chain(),
            vec![Stage::TopP(0.95), Stage::Temperature(0.7), Stage::Dist(42)]
        );
    }

    #[test]
    fn presets_parse_by_name_and_differ_only_where_documented() {
        for p in SamplerPreset::ALL {
            assert_eq!(p.as_str().parse::<SamplerPreset>(), Ok(p));
            assert!(p.sampling().validate().is_ok(), "{p}");
        }
        assert_eq!(
            "LlamaCpp_Python".parse::<SamplerPreset>(),
            Err("unknown sampler preset \"LlamaCpp_Python\" (expected one of greedy, langchain, llama-cpp-python)".into())
        );
        assert_eq!(
            "Llama_Cpp_Python".parse::<SamplerPreset>(),
            Ok(SamplerPreset::LlamaCppPython)
        );
        let lc = SamplerPreset::Langchain.sampling();
        let lcp = SamplerPreset::LlamaCppPython.sampling();
        assert_eq!((lc.repeat_penalty, lc.seed), (Some(1.1), -1));
        assert_eq!(lcp.seed, LLAMA_DEFAULT_SEED);
        assert_eq!(
            Sampling {
                repeat_penalty: Some(1.0),
                seed: LLAMA_DEFAULT_SEED,
                ..lc
            },
            lcp
        );
    }

    #[test]
    fn validate_names_the_setting() {
        let cases: [(Sampling, &str); 8] = [
            (
                Sampling {
                    temperature: -0.1,
                    ..Sampling::default()
                },
                "temperature",
            ),
            (
                Sampling {
                    top_p: 0.0,
                    ..Sampling::default()
                },
                "top_p",
            ),
            (
                Sampling {
                    top_k: Some(-1),
                    ..Sampling::default()
                },
                "top_k",
            ),
            (
                Sampling {
                    typical_p: Some(1.5),
                    ..Sampling::default()
                },
                "typical_p",
            ),
            (
                Sampling {
                    min_p: Some(-0.1),
                    ..Sampling::default()
                },
                "min_p",
            ),
            (
                Sampling {
                    repeat_penalty: Some(0.0),
                    ..Sampling::default()
                },
                "repeat_penalty",
            ),
            (
                Sampling {
                    repeat_last_n: Some(-1),
                    ..Sampling::default()
                },
                "repeat_last_n",
            ),
            (
                Sampling {
                    presence_penalty: Some(f32::INFINITY),
                    ..Sampling::default()
                },
                "presence_penalty",
            ),
        ];
        for (s, name) in cases {
            let err = s.validate().expect_err(name);
            assert!(err.starts_with(name), "{err}");
        }
    }

    /// The CPython reference sequences (`tests/fixtures/generate/make_seed_sequence.py`).
    fn reference_sequences() -> Vec<(i128, Vec<u64>)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/generate/seed_sequence.json"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        json["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let start = s["start"].to_string().parse::<i128>().unwrap();
                let seeds = s["seeds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                (start, seeds)
            })
            .collect()
    }

    #[test]
    fn seed_sequence_matches_cpython_random() {
        let refs = reference_sequences();
        assert!(refs.len() >= 10);
        for (start, want) in &refs {
            // the raw step from the fixture's start (0 and two-word starts included)
            let mut s = u64::try_from(start.unsigned_abs()).unwrap();
            let got: Vec<u64> = (0..want.len())
                .map(|_| {
                    s = llama_cpp_python_step(s);
                    s
                })
                .collect();
            assert_eq!(&got, want, "start {start}");
            assert!(got.iter().all(|v| *v <= 1 << 32));
            // through the public iterator too (0 is Llama's "no seed", checked below)
            if let Some(start) = i64::try_from(*start).ok().filter(|v| *v != 0) {
                let seq: Vec<u64> = llama_cpp_python_seeds(start).take(want.len()).collect();
                assert_eq!(&seq, want, "start {start}");
            }
        }
        // Llama(seed=0) starts from LLAMA_DEFAULT_SEED (`seed or LLAMA_DEFAULT_SEED`)
        let default = refs
            .iter()
            .find(|(s, _)| *s == i128::from(LLAMA_DEFAULT_SEED))
            .unwrap();
        let from_zero: Vec<u64> = llama_cpp_python_seeds(0).take(default.1.len()).collect();
        assert_eq!(from_zero, default.1);
        // -1 is seeded by its absolute value, as CPython does
        assert_eq!(
            llama_cpp_python_seeds(-1).take(5).collect::<Vec<_>>(),
            llama_cpp_python_seeds(1).take(5).collect::<Vec<_>>()
        );
    }

    #[test]
    fn draw_seeds_follow_the_mode() {
        let fixed = Sampling {
            seed: 7,
            ..Sampling::default()
        };
        assert_eq!(fixed.draw_seed(0, 0), 7);
        assert_eq!(fixed.draw_seed(3, 99), 10, "fixed: seed + repeat");
        let lc = SamplerPreset::Langchain.sampling();
        assert_eq!(lc.seed_mode, Some(SeedMode::LlamaCppPython));
        let refs = reference_sequences();
        let minus_one = &refs.iter().find(|(s, _)| *s == -1).unwrap().1;
        for (i, want) in minus_one.iter().enumerate() {
            // the low 32 bits, as ctypes' c_uint32 passes them to llama.cpp
            assert_eq!(u64::from(lc.draw_seed(0, i as u64)), want & 0xFFFF_FFFF);
        }
        let mut sampled = lc.clone();
        sampled.temperature = 0.01;
        assert_eq!(
            sampled.chain().last(),
            Some(&Stage::Dist(minus_one[0] as u32)),
            "an un-reseeded chain draws with the first seed of the sequence"
        );
    }

    #[test]
    fn seed_ranges_depend_on_the_mode() {
        for bad in [-1, i64::from(u32::MAX), 1 << 40] {
            let s = Sampling {
                seed: bad,
                ..Sampling::default()
            };
            let err = s.validate().unwrap_err();
            assert!(err.starts_with("seed"), "{err}");
            assert!(err.contains("seed_mode"), "{err}");
            let seq = Sampling {
                seed_mode: Some(SeedMode::LlamaCppPython),
                ..s
            };
            assert!(seq.validate().is_ok(), "{bad}");
        }
        assert!(Sampling {
            seed: i64::from(u32::MAX) - 1,
            ..Sampling::default()
        }
        .validate()
        .is_ok());
        assert_eq!(
            "LLAMA_CPP_PYTHON".parse::<SeedMode>(),
            Ok(SeedMode::LlamaCppPython)
        );
        let err = "random".parse::<SeedMode>().unwrap_err();
        assert!(err.contains("fixed, llama-cpp-python"), "{err}");
    }

    #[test]
    fn unset_stages_are_left_out_of_the_serialised_form() {
        let json = serde_json::to_value(Sampling::default()).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["seed", "temperature", "top_p"]);
        let back: Sampling = serde_json::from_value(json).unwrap();
        assert_eq!(back, Sampling::default());
    }
}
