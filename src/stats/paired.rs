//! Paired comparison of two configurations scored on the same questions: the paired t-test and
//! paired bootstrap confidence intervals of the mean difference, plus the [`PairedComparison`]
//! summary a report prints.
//!
//! `a[i]` and `b[i]` are the scores of configurations A and B on question `i`; every statistic is
//! about the difference A − B.
//!
//! * [`paired_t_test`] reproduces `scipy.stats.ttest_rel(a, b)` (two-sided): its `statistic`,
//!   `pvalue`, `df` and `confidence_interval(level)`.
//! * [`bootstrap_ci_with_indices`] reproduces `scipy.stats.bootstrap((a, b), lambda x, y, axis:
//!   np.mean(x, axis=axis) - np.mean(y, axis=axis), paired=True, vectorized=True,
//!   confidence_level=level, method=...)` for `method` in percentile, basic and BCa, *given the
//!   same resample indices*. With `paired=True` scipy resamples the index sample `arange(n)`:
//!   one `rng.integers(0, n, (n_resamples, n))` call (when `batch=None`), row `r` being the
//!   questions of resample `r`. The fixture script draws that matrix from `default_rng(seed)`,
//!   checks that it rebuilds scipy's bootstrap distribution bit for bit, and stores it.
//! * [`draw_resample_indices`] / [`bootstrap_ci`] use our own seeded generator instead of numpy's
//!   (xoshiro256** seeded by SplitMix64, unbiased bounded draws by Lemire's multiply-shift with
//!   rejection): reproducible on every platform, but not the same numbers as numpy.
//!
//! To match scipy not only to rounding but in the discrete steps (BCa counts the resamples whose
//! statistic is `<` and `<=` the observed one, and ties are common with 0/1 hits), means are
//! summed exactly as numpy does (pairwise summation, see [`numpy_sum`]) and each mean difference
//! is formed as `mean(a[idx]) − mean(b[idx])`, as in the statistic above.
//!
//! References: scipy.stats.ttest_rel and scipy.stats.bootstrap (scipy 1.17,
//! `scipy/stats/_resampling.py`); B. Efron, "Better bootstrap confidence intervals", JASA 82
//! (1987) 171–185, for BCa (bias correction z0 from the share of resamples below the estimate,
//! acceleration from the jackknife); Efron & Tibshirani, *An Introduction to the Bootstrap*
//! (1993), §14.3 and eq. 14.15 / 15.36 as scipy implements them. Golden values: fixture
//! `tests/fixtures/paired/scipy_paired.json`, written by `tests/fixtures/paired/make_fixture.py`.

use super::{normal_cdf, normal_quantile, t_quantile, t_sf};

/// Why a paired statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PairedError {
    /// `a` and `b` have different lengths, so they cannot be paired.
    #[error("paired samples differ in length: {a} vs {b}")]
    LengthMismatch {
        /// Length of `a`.
        a: usize,
        /// Length of `b`.
        b: usize,
    },
    /// Fewer than two pairs: no spread can be estimated.
    #[error("paired statistics need at least 2 pairs, got {n}")]
    TooFewPairs {
        /// Number of pairs given.
        n: usize,
    },
    /// A value is NaN or infinite (filter missing scores before comparing).
    #[error("sample {sample} has a non-finite value at index {index}")]
    NonFinite {
        /// `'a'` or `'b'`.
        sample: char,
        /// Position of the first offending value.
        index: usize,
    },
    /// The confidence level is not strictly between 0 and 1.
    #[error("confidence level must be strictly between 0 and 1, got {level}")]
    InvalidLevel {
        /// The level given.
        level: f64,
    },
    /// `n_resamples` is 0 (or the index matrix has no rows).
    #[error("the bootstrap needs at least one resample")]
    NoResamples,
    /// A row of the resample index matrix has the wrong length or an index out of range.
    #[error("resample {row}: {reason}")]
    BadIndices {
        /// Row (resample) number.
        row: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The BCa interval is undefined for this bootstrap distribution (scipy returns NaN and
    /// warns "The BCa confidence interval cannot be calculated"): the jackknife acceleration is
    /// 0/0 because every leave-one-out estimate is the same (for instance all differences
    /// equal, or `a == b`), or the bias correction is infinite in a way that gives NaN.
    #[error("the BCa interval is undefined (degenerate bootstrap distribution)")]
    BcaUndefined,
}

/// Result of the two-sided paired t-test of `a` against `b` (statistic on the differences a − b).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairedTTest {
    /// Number of pairs.
    pub n: usize,
    /// Mean of the differences a − b (numpy's `mean(a - b)`).
    pub mean_diff: f64,
    /// Sample standard deviation of the differences (ddof = 1).
    pub sd_diff: f64,
    /// t statistic `mean_diff / (sd_diff / √n)`; ±∞ or 0 when the differences are all equal
    /// (see [`paired_t_test`]).
    pub statistic: f64,
    /// Degrees of freedom, n − 1.
    pub df: f64,
    /// Two-sided p-value `2·P(T > |t|)`, in [0, 1].
    pub p_value: f64,
    /// Confidence level of the interval.
    pub level: f64,
    /// Lower end of the t confidence interval of the mean difference.
    pub ci_low: f64,
    /// Upper end of the t confidence interval of the mean difference.
    pub ci_high: f64,
}

/// Paired t-test of `a` vs `b` with a two-sided confidence interval of the mean difference at
/// `level` (e.g. 0.95).
///
/// Equals `scipy.stats.ttest_rel(a, b)` (`statistic`, `pvalue`, `df`,
/// `confidence_interval(level)`) to about 1e-12. Zero variance, when every difference `a[i] −
/// b[i]` is the same value d (compared exactly), where scipy divides by zero: `sd_diff` is 0,
/// `mean_diff` is d and the interval is [d, d]; if d == 0 (identical samples) the statistic is 0
/// and the p-value 1 (scipy: NaN, no evidence of a difference); otherwise the statistic is ±∞
/// and the p-value 0 (as scipy gives).
///
/// Errors: [`PairedError::LengthMismatch`], [`PairedError::TooFewPairs`] (n < 2),
/// [`PairedError::NonFinite`], [`PairedError::InvalidLevel`].
pub fn paired_t_test(a: &[f64], b: &[f64], level: f64) -> Result<PairedTTest, PairedError> {
    let n = check_pairs(a, b)?;
    check_level(level)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let df = (n - 1) as f64;
    if d.iter().all(|&v| v == d[0]) {
        let m = d[0];
        let (statistic, p_value) = if m == 0.0 {
            (0.0, 1.0)
        } else {
            (f64::INFINITY.copysign(m), 0.0)
        };
        return Ok(PairedTTest {
            n,
            mean_diff: m,
            sd_diff: 0.0,
            statistic,
            df,
            p_value,
            level,
            ci_low: m,
            ci_high: m,
        });
    }
    let nf = n as f64;
    let mean = numpy_sum(&d) / nf;
    let sq: Vec<f64> = d.iter().map(|v| (v - mean) * (v - mean)).collect();
    // scipy's _var: the biased second moment rescaled by n / (n − ddof).
    let var = numpy_sum(&sq) / nf * (nf / (nf - 1.0));
    let se = (var / nf).sqrt();
    let statistic = mean / se;
    let p_value = (2.0 * t_sf(statistic.abs(), df)).min(1.0);
    let tail = (1.0 - level) / 2.0;
    let ci_low = t_quantile(tail, df) * se + mean;
    let ci_high = t_quantile(1.0 - tail, df) * se + mean;
    Ok(PairedTTest {
        n,
        mean_diff: mean,
        sd_diff: var.sqrt(),
        statistic,
        df,
        p_value,
        level,
        ci_low,
        ci_high,
    })
}

/// How a bootstrap confidence interval is read off the bootstrap distribution (scipy's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BootstrapMethod {
    /// Percentile interval: the (1 − level)/2 and (1 + level)/2 quantiles of the distribution.
    #[serde(rename = "percentile")]
    Percentile,
    /// Basic (reverse percentile) interval: 2θ̂ minus the percentile interval, reversed.
    #[serde(rename = "basic")]
    Basic,
    /// Bias-corrected and accelerated percentile interval (Efron 1987); scipy's default.
    #[serde(rename = "BCa")]
    Bca,
}

impl BootstrapMethod {
    /// scipy's name of the method: `"percentile"`, `"basic"` or `"BCa"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BootstrapMethod::Percentile => "percentile",
            BootstrapMethod::Basic => "basic",
            BootstrapMethod::Bca => "BCa",
        }
    }
}

impl std::fmt::Display for BootstrapMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A paired bootstrap confidence interval of the mean difference mean(a) − mean(b).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BootstrapCi {
    /// Method the interval was computed with.
    pub method: BootstrapMethod,
    /// Confidence level.
    pub level: f64,
    /// Number of resamples.
    pub n_resamples: usize,
    /// The observed statistic θ̂ = mean(a) − mean(b).
    pub estimate: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// Paired bootstrap interval of mean(a) − mean(b) from a given resample index matrix.
///
/// `indices` has one row per resample, each row `n = a.len()` question indices in `0..n`;
/// resample `r` is the pairs `(a[i], b[i])` for `i` in `indices[r]`. With the matrix scipy draws
/// (`default_rng(seed).integers(0, n, (n_resamples, n))`) the result equals
/// `scipy.stats.bootstrap(..., paired=True, method=...)` with `rng=default_rng(seed)` to about
/// 1e-15: same statistic values bit for bit, the same `<`/`<=` count for BCa's z0, the same
/// jackknife acceleration and the same linear quantile interpolation
/// (`scipy.stats.quantile(method='linear')`). Two-sided only.
///
/// Errors: the input errors of [`paired_t_test`]; [`PairedError::NoResamples`] for an empty
/// matrix; [`PairedError::BadIndices`] for a row of the wrong length or an index ≥ n;
/// [`PairedError::BcaUndefined`] for BCa where scipy returns NaN.
pub fn bootstrap_ci_with_indices(
    a: &[f64],
    b: &[f64],
    indices: &[Vec<usize>],
    level: f64,
    method: BootstrapMethod,
) -> Result<BootstrapCi, PairedError> {
    let n = check_pairs(a, b)?;
    check_level(level)?;
    if indices.is_empty() {
        return Err(PairedError::NoResamples);
    }
    let mut scratch = Scratch::new(n);
    let mut dist = Vec::with_capacity(indices.len());
    for (r, row) in indices.iter().enumerate() {
        if row.len() != n {
            return Err(PairedError::BadIndices {
                row: r,
                reason: format!("{} indices for {} pairs", row.len(), n),
            });
        }
        if let Some(&i) = row.iter().find(|&&i| i >= n) {
            return Err(PairedError::BadIndices {
                row: r,
                reason: format!("index {i} out of range for {n} pairs"),
            });
        }
        dist.push(scratch.mean_diff(a, b, row.iter().copied()));
    }
    interval(a, b, dist, level, method)
}

/// Draws the resample index matrix used by [`bootstrap_ci`]: `n_resamples` rows of `n` indices,
/// each uniform on `0..n`, drawn row by row.
///
/// Generator: xoshiro256** (Blackman & Vigna) whose four state words are the first four outputs
/// of SplitMix64 started at `seed`; an index is `⌊x·n / 2⁶⁴⌋` for the next 64-bit output x, with
/// Lemire's rejection of the low product below `2⁶⁴ mod n` so the draw is exactly uniform. Pure
/// integer arithmetic: the same matrix on every platform and version. Not numpy's generator.
/// Returns an empty matrix when `n == 0` or `n_resamples == 0`.
pub fn draw_resample_indices(n: usize, n_resamples: usize, seed: u64) -> Vec<Vec<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let mut rng = Xoshiro256StarStar::new(seed);
    (0..n_resamples)
        .map(|_| (0..n).map(|_| rng.below(n as u64) as usize).collect())
        .collect()
}

/// Paired bootstrap interval of mean(a) − mean(b) with `n_resamples` resamples drawn from our
/// seeded generator: the same result as [`bootstrap_ci_with_indices`] on
/// [`draw_resample_indices`]`(a.len(), n_resamples, seed)`, without holding the matrix (memory
/// O(n + n_resamples)). Errors as [`bootstrap_ci_with_indices`] ([`PairedError::NoResamples`]
/// when `n_resamples == 0`).
pub fn bootstrap_ci(
    a: &[f64],
    b: &[f64],
    level: f64,
    n_resamples: usize,
    seed: u64,
    method: BootstrapMethod,
) -> Result<BootstrapCi, PairedError> {
    check_pairs(a, b)?;
    check_level(level)?;
    let dist = seeded_distribution(a, b, n_resamples, seed)?;
    interval(a, b, dist, level, method)
}

/// Everything a report needs to compare configuration A with configuration B on the same
/// questions (all differences are A − B).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairedComparison {
    /// Number of pairs (questions).
    pub n: usize,
    /// Confidence level of both intervals.
    pub level: f64,
    /// Mean score of A.
    pub mean_a: f64,
    /// Mean score of B.
    pub mean_b: f64,
    /// Mean of the differences A − B.
    pub mean_diff: f64,
    /// Standard deviation of the differences (ddof = 1).
    pub sd_diff: f64,
    /// Paired t statistic.
    pub t_statistic: f64,
    /// Degrees of freedom of the t-test, n − 1.
    pub df: f64,
    /// Two-sided paired t-test p-value.
    pub p_value: f64,
    /// Lower end of the t interval of the mean difference.
    pub t_ci_low: f64,
    /// Upper end of the t interval of the mean difference.
    pub t_ci_high: f64,
    /// Lower end of the bootstrap interval of the mean difference.
    pub boot_ci_low: f64,
    /// Upper end of the bootstrap interval of the mean difference.
    pub boot_ci_high: f64,
    /// Method of the bootstrap interval: BCa, or percentile where BCa is undefined.
    pub boot_method: BootstrapMethod,
    /// Number of bootstrap resamples.
    pub n_resamples: usize,
    /// Seed of the resample generator (see [`draw_resample_indices`]).
    pub seed: u64,
}

impl PairedComparison {
    /// Whether the two-sided paired t-test rejects "no mean difference" at level `alpha`:
    /// `p_value < alpha` (strict). With `alpha = 1 − level` this agrees with the t interval
    /// excluding 0; it says nothing about the bootstrap interval, which may disagree near the
    /// boundary. Identical samples (p = 1) are never significant; a constant non-zero difference
    /// (p = 0) always is, for any `alpha > 0`.
    pub fn significant(&self, alpha: f64) -> bool {
        self.p_value < alpha
    }
}

/// Paired t-test plus paired bootstrap interval of A − B, for a report.
///
/// The bootstrap uses BCa (scipy's default) with `n_resamples` resamples from
/// [`draw_resample_indices`]`(n, n_resamples, seed)`; where BCa is undefined (every jackknife
/// estimate equal, e.g. all differences equal or `a == b`; see [`PairedError::BcaUndefined`])
/// it falls back to the percentile interval of the same resamples, and `boot_method` says so.
/// Errors: those of [`paired_t_test`], and [`PairedError::NoResamples`] when `n_resamples == 0`.
pub fn compare_paired(
    a: &[f64],
    b: &[f64],
    level: f64,
    n_resamples: usize,
    seed: u64,
) -> Result<PairedComparison, PairedError> {
    let t = paired_t_test(a, b, level)?;
    let dist = seeded_distribution(a, b, n_resamples, seed)?;
    let boot = match interval(a, b, dist.clone(), level, BootstrapMethod::Bca) {
        Err(PairedError::BcaUndefined) => interval(a, b, dist, level, BootstrapMethod::Percentile)?,
        other => other?,
    };
    let nf = t.n as f64;
    Ok(PairedComparison {
        n: t.n,
        level,
        mean_a: numpy_sum(a) / nf,
        mean_b: numpy_sum(b) / nf,
        mean_diff: t.mean_diff,
        sd_diff: t.sd_diff,
        t_statistic: t.statistic,
        df: t.df,
        p_value: t.p_value,
        t_ci_low: t.ci_low,
        t_ci_high: t.ci_high,
        boot_ci_low: boot.low,
        boot_ci_high: boot.high,
        boot_method: boot.method,
        n_resamples,
        seed,
    })
}

/// Sum of `xs` in numpy's order for float64 (`pairwise_sum_DOUBLE`): plain left-to-right below 8
/// values; up to 128 values, eight interleaved partial sums combined as
/// ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)) and then the remainder added in order; above 128, split
/// at half the length rounded down to a multiple of 8 and recurse. `np.sum` / `np.mean` over a
/// contiguous axis give bit for bit this value (checked by the fixture script), which matters
/// where results are compared for equality (BCa's tie count).
pub fn numpy_sum(xs: &[f64]) -> f64 {
    let n = xs.len();
    if n < 8 {
        let mut r = 0.0;
        for &x in xs {
            r += x;
        }
        r
    } else if n <= 128 {
        let mut r = [0.0; 8];
        r.copy_from_slice(&xs[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += xs[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += xs[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_sum(&xs[..n2]) + numpy_sum(&xs[n2..])
    }
}

// ------------------------------------------------------------------------------------------------
// Internals

fn check_pairs(a: &[f64], b: &[f64]) -> Result<usize, PairedError> {
    if a.len() != b.len() {
        return Err(PairedError::LengthMismatch {
            a: a.len(),
            b: b.len(),
        });
    }
    if a.len() < 2 {
        return Err(PairedError::TooFewPairs { n: a.len() });
    }
    for (sample, xs) in [('a', a), ('b', b)] {
        if let Some(index) = xs.iter().position(|v| !v.is_finite()) {
            return Err(PairedError::NonFinite { sample, index });
        }
    }
    Ok(a.len())
}

fn check_level(level: f64) -> Result<(), PairedError> {
    if level > 0.0 && level < 1.0 {
        Ok(())
    } else {
        Err(PairedError::InvalidLevel { level })
    }
}

/// Reusable buffers for mean(a[idx]) − mean(b[idx]).
struct Scratch {
    xa: Vec<f64>,
    xb: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Scratch {
            xa: Vec::with_capacity(n),
            xb: Vec::with_capacity(n),
        }
    }

    /// numpy's `np.mean(a[idx]) - np.mean(b[idx])`, bit for bit.
    fn mean_diff(&mut self, a: &[f64], b: &[f64], idx: impl Iterator<Item = usize>) -> f64 {
        self.xa.clear();
        self.xb.clear();
        for i in idx {
            self.xa.push(a[i]);
            self.xb.push(b[i]);
        }
        let m = self.xa.len() as f64;
        numpy_sum(&self.xa) / m - numpy_sum(&self.xb) / m
    }
}

/// Bootstrap distribution from our generator, drawn row by row without storing the matrix.
fn seeded_distribution(
    a: &[f64],
    b: &[f64],
    n_resamples: usize,
    seed: u64,
) -> Result<Vec<f64>, PairedError> {
    let n = check_pairs(a, b)?;
    if n_resamples == 0 {
        return Err(PairedError::NoResamples);
    }
    let mut rng = Xoshiro256StarStar::new(seed);
    let mut scratch = Scratch::new(n);
    let mut row = vec![0usize; n];
    let mut dist = Vec::with_capacity(n_resamples);
    for _ in 0..n_resamples {
        for slot in row.iter_mut() {
            *slot = rng.below(n as u64) as usize;
        }
        dist.push(scratch.mean_diff(a, b, row.iter().copied()));
    }
    Ok(dist)
}

/// The interval from the (unsorted) bootstrap distribution, following scipy.stats.bootstrap.
fn interval(
    a: &[f64],
    b: &[f64],
    mut dist: Vec<f64>,
    level: f64,
    method: BootstrapMethod,
) -> Result<BootstrapCi, PairedError> {
    let n = a.len();
    let mut scratch = Scratch::new(n);
    let estimate = scratch.mean_diff(a, b, 0..n);
    let alpha = (1.0 - level) / 2.0;
    let (p_low, p_high) = match method {
        BootstrapMethod::Bca => bca_levels(a, b, &dist, estimate, alpha, &mut scratch),
        _ => (alpha, 1.0 - alpha),
    };
    if p_low.is_nan() || p_high.is_nan() {
        return Err(PairedError::BcaUndefined);
    }
    dist.sort_by(f64::total_cmp);
    let mut low = quantile_linear(&dist, p_low);
    let mut high = quantile_linear(&dist, p_high);
    if method == BootstrapMethod::Basic {
        (low, high) = (2.0 * estimate - high, 2.0 * estimate - low);
    }
    Ok(BootstrapCi {
        method,
        level,
        n_resamples: dist.len(),
        estimate,
        low,
        high,
    })
}

/// BCa's adjusted quantile levels (α₁, α₂) as scipy's `_bca_interval` computes them; NaN where
/// BCa is undefined.
fn bca_levels(
    a: &[f64],
    b: &[f64],
    dist: &[f64],
    estimate: f64,
    alpha: f64,
    scratch: &mut Scratch,
) -> (f64, f64) {
    let n = a.len();
    // z0: percentile of the estimate in the distribution, 'mean' kind (ties count half).
    let below = dist.iter().filter(|&&t| t < estimate).count();
    let at_or_below = dist.iter().filter(|&&t| t <= estimate).count();
    let z0 = normal_quantile((below + at_or_below) as f64 / (2 * dist.len()) as f64);
    // Acceleration from the jackknife (leave question j out).
    let jack: Vec<f64> = (0..n)
        .map(|j| scratch.mean_diff(a, b, (0..n).filter(|&i| i != j)))
        .collect();
    let nf = n as f64;
    let dot = numpy_sum(&jack) / nf;
    let u: Vec<f64> = jack.iter().map(|t| (nf - 1.0) * (dot - t)).collect();
    let cubes: Vec<f64> = u.iter().map(|v| v.powf(3.0)).collect();
    let squares: Vec<f64> = u.iter().map(|v| v * v).collect();
    let num = numpy_sum(&cubes) / nf.powi(3);
    let den = numpy_sum(&squares) / (nf * nf);
    let a_hat = 1.0 / 6.0 * num / den.powf(1.5);
    let z_alpha = normal_quantile(alpha);
    let num1 = z0 + z_alpha;
    let alpha_1 = normal_cdf(z0 + num1 / (1.0 - a_hat * num1));
    let num2 = z0 - z_alpha;
    let alpha_2 = normal_cdf(z0 + num2 / (1.0 - a_hat * num2));
    (alpha_1, alpha_2)
}

/// `scipy.stats.quantile(y, p, method='linear')` on sorted, non-empty `y` (numpy's default
/// percentile): position p·(B − 1), linear interpolation `(1 − g)·y[j] + g·y[j + 1]`.
fn quantile_linear(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let jg = p * n as f64 + (1.0 - p);
    let jp1 = jg.floor();
    let j = jp1 - 1.0;
    let g = if j < 0.0 { 0.0 } else { jg % 1.0 };
    let last = (n - 1) as f64;
    let j = j.clamp(0.0, last) as usize;
    let jp1 = jp1.clamp(0.0, last) as usize;
    (1.0 - g) * sorted[j] + g * sorted[jp1]
}

/// SplitMix64 (Steele, Lea & Flood 2014), used only to seed xoshiro256**.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** 1.0 (Blackman & Vigna 2018).
struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    fn new(seed: u64) -> Self {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Xoshiro256StarStar { s }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on `0..n` (n ≥ 1) by Lemire's multiply-shift with rejection.
    fn below(&mut self, n: u64) -> u64 {
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FIXTURE: &str = include_str!("../../tests/fixtures/paired/scipy_paired.json");
    // The contract; every fixture value also agrees to 1e-13 on x86-64 Linux.
    const TOL: f64 = 1e-9;

    fn fixture() -> Value {
        serde_json::from_str(FIXTURE).expect("fixture parses")
    }

    /// Data values are stored as decimal strings so they parse exactly.
    fn floats(v: &Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().parse().unwrap())
            .collect()
    }

    fn decode_rows(alphabet: &str, rows: &Value) -> Vec<Vec<usize>> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_str()
                    .unwrap()
                    .chars()
                    .map(|c| alphabet.find(c).expect("index character"))
                    .collect()
            })
            .collect()
    }

    fn assert_close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= TOL,
            "{what}: got {got:e}, scipy {want:e}, diff {:e}",
            (got - want).abs()
        );
    }

    #[test]
    fn t_test_matches_scipy_fixture() {
        let fx = fixture();
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let level = case["level"].as_f64().unwrap();
            let want = &case["ttest"];
            let got = paired_t_test(&a, &b, level).unwrap();
            assert_eq!(got.df, want["df"].as_f64().unwrap(), "{name} df");
            match (want["statistic"].as_f64(), want["statistic_inf"].as_i64()) {
                (Some(t), _) => assert_close(got.statistic, t, &format!("{name} t")),
                (None, Some(sign)) => {
                    assert_eq!(got.statistic, f64::INFINITY.copysign(sign as f64), "{name}")
                }
                // scipy: NaN for identical samples; ours is documented as t = 0, p = 1.
                (None, None) => assert_eq!((got.statistic, got.p_value), (0.0, 1.0), "{name}"),
            }
            if let Some(p) = want["pvalue"].as_f64() {
                assert_close(got.p_value, p, &format!("{name} p"));
            }
            assert_close(
                got.ci_low,
                want["ci_low"].as_f64().unwrap(),
                &format!("{name} lo"),
            );
            assert_close(
                got.ci_high,
                want["ci_high"].as_f64().unwrap(),
                &format!("{name} hi"),
            );
        }
    }

    #[test]
    fn bootstrap_matches_scipy_fixture_with_its_indices() {
        let fx = fixture();
        let alphabet = fx["idx_alphabet"].as_str().unwrap();
        let mut checked = 0;
        for case in fx["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let level = case["level"].as_f64().unwrap();
            let idx = decode_rows(alphabet, &case["indices"]);
            assert_eq!(idx.len() as u64, case["n_resamples"].as_u64().unwrap());
            for method in [
                BootstrapMethod::Percentile,
                BootstrapMethod::Basic,
                BootstrapMethod::Bca,
            ] {
                let want = &case["bootstrap"][method.as_str()];
                let got = bootstrap_ci_with_indices(&a, &b, &idx, level, method);
                match (want["low"].as_f64(), want["high"].as_f64()) {
                    (Some(lo), Some(hi)) => {
                        let got = got.unwrap_or_else(|e| panic!("{name} {method}: {e}"));
                        assert_close(got.low, lo, &format!("{name} {method} low"));
                        assert_close(got.high, hi, &format!("{name} {method} high"));
                        assert_eq!(got.estimate, case["theta_hat"].as_f64().unwrap());
                    }
                    _ => assert_eq!(got, Err(PairedError::BcaUndefined), "{name} {method}"),
                }
                checked += 1;
            }
        }
        assert!(checked >= 18, "fixture too small: {checked}");
    }

    #[test]
    fn bca_intermediates_match_fixture() {
        // z0 and the adjusted levels, stored by the fixture script's re-implementation that was
        // verified against scipy's interval.
        let fx = fixture();
        let alphabet = fx["idx_alphabet"].as_str().unwrap();
        for case in fx["cases"].as_array().unwrap() {
            let want = &case["bootstrap"]["BCa"];
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let idx = decode_rows(alphabet, &case["indices"]);
            let mut scratch = Scratch::new(a.len());
            let dist: Vec<f64> = idx
                .iter()
                .map(|r| scratch.mean_diff(&a, &b, r.iter().copied()))
                .collect();
            let alpha = (1.0 - case["level"].as_f64().unwrap()) / 2.0;
            let est = case["theta_hat"].as_f64().unwrap();
            let (lo, hi) = bca_levels(&a, &b, &dist, est, alpha, &mut scratch);
            match want["alpha_lo"].as_f64() {
                Some(w) => {
                    assert!((lo - w).abs() < 1e-13, "{lo} vs {w}");
                    let wh = want["alpha_hi"].as_f64().unwrap();
                    assert!((hi - wh).abs() < 1e-13, "{hi} vs {wh}");
                }
                None => assert!(lo.is_nan() && hi.is_nan()),
            }
        }
    }

    #[test]
    fn special_functions_match_scipy() {
        let fx = fixture();
        let sp = &fx["special"];
        for row in sp["ndtri"].as_array().unwrap() {
            let (p, z) = (row[0].as_f64().unwrap(), row[1].as_f64().unwrap());
            let got = normal_quantile(p);
            assert!(
                (got - z).abs() <= 1e-12 * z.abs().max(1.0),
                "ndtri({p}) = {got} vs {z}"
            );
        }
        for row in sp["ndtr"].as_array().unwrap() {
            let (x, p) = (row[0].as_f64().unwrap(), row[1].as_f64().unwrap());
            let got = normal_cdf(x);
            assert!(
                (got - p).abs() <= 1e-15 + 1e-13 * p,
                "ndtr({x}) = {got:e} vs {p:e}"
            );
        }
        for row in sp["stdtr"].as_array().unwrap() {
            let (df, t, p) = (
                row[0].as_f64().unwrap(),
                row[1].as_f64().unwrap(),
                row[2].as_f64().unwrap(),
            );
            let got = crate::stats::t_cdf(t, df);
            // ln Γ differences lose digits as df grows (see `t_quantile`).
            let tol = if df < 100.0 { 1e-14 } else { 1e-12 };
            assert!(
                (got - p).abs() <= tol,
                "stdtr({df}, {t}) = {got:e} vs {p:e}"
            );
        }
    }

    #[test]
    fn our_generator_matches_reference_implementation() {
        let fx = fixture();
        let g = &fx["our_generator"];
        let mut st = 0u64;
        let want: u64 = g["splitmix64_seed0_first"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(splitmix64(&mut st), want);
        let mut x = Xoshiro256StarStar::new(0);
        for w in g["xoshiro_seed0_first4"].as_array().unwrap() {
            assert_eq!(x.next_u64(), w.as_str().unwrap().parse::<u64>().unwrap());
        }
        let alphabet = fx["idx_alphabet"].as_str().unwrap();
        for spec in g["indices"].as_array().unwrap() {
            let n = spec["n"].as_u64().unwrap() as usize;
            let r = spec["n_resamples"].as_u64().unwrap() as usize;
            let seed = spec["seed"].as_u64().unwrap();
            assert_eq!(
                draw_resample_indices(n, r, seed),
                decode_rows(alphabet, &spec["rows"])
            );
        }
    }

    #[test]
    fn numpy_sum_orders_like_numpy() {
        // 0.1 added ten times left to right is 0.9999999999999999; numpy's eight-way pairwise
        // order gives 1.0 (np.sum(np.full(10, 0.1)) == 1.0).
        let xs = [0.1; 10];
        assert_eq!(xs.iter().fold(0.0, |s, x| s + x), 0.9999999999999999);
        assert_eq!(numpy_sum(&xs), 1.0);
        assert_eq!(numpy_sum(&[]), 0.0);
        let ys: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(numpy_sum(&ys), 499_500.0);
    }

    #[test]
    fn t_test_hand_example() {
        // d = a − b = [1, 2, 3, 4]: mean 2.5, s² = 5/3, se = s/2, t = 2.5/se, df 3.
        let a = [3.0, 5.0, 4.0, 10.0];
        let b = [2.0, 3.0, 1.0, 6.0];
        let r = paired_t_test(&a, &b, 0.95).unwrap();
        let se = (5.0f64 / 3.0).sqrt() / 2.0;
        assert_eq!(r.n, 4);
        assert!((r.mean_diff - 2.5).abs() < 1e-15);
        assert!((r.sd_diff - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((r.statistic - 2.5 / se).abs() < 1e-12);
        assert_eq!(r.df, 3.0);
        // scipy.stats.t.sf(3.872983346207417, 3) * 2 = 0.030466291662170977
        assert!(
            (r.p_value - 0.030466291662170977).abs() < 1e-12,
            "{}",
            r.p_value
        );
        // t_{0.975, 3} = 3.182446305284263
        let half = 3.182446305284263 * se;
        assert!((r.ci_low - (2.5 - half)).abs() < 1e-12);
        assert!((r.ci_high - (2.5 + half)).abs() < 1e-12);
        // Swapping a and b mirrors everything.
        let s = paired_t_test(&b, &a, 0.95).unwrap();
        assert_eq!((s.statistic, s.p_value), (-r.statistic, r.p_value));
        assert!((s.ci_low + r.ci_high).abs() < 1e-15 && (s.ci_high + r.ci_low).abs() < 1e-15);
    }

    #[test]
    fn t_test_zero_variance() {
        let a = [0.5, 0.25, 1.0];
        let same = paired_t_test(&a, &a, 0.95).unwrap();
        assert_eq!(
            (
                same.statistic,
                same.p_value,
                same.sd_diff,
                same.ci_low,
                same.ci_high
            ),
            (0.0, 1.0, 0.0, 0.0, 0.0)
        );
        let b = [0.25, 0.0, 0.75];
        let up = paired_t_test(&a, &b, 0.95).unwrap();
        assert_eq!((up.statistic, up.p_value), (f64::INFINITY, 0.0));
        assert_eq!((up.mean_diff, up.ci_low, up.ci_high), (0.25, 0.25, 0.25));
        let down = paired_t_test(&b, &a, 0.95).unwrap();
        assert_eq!((down.statistic, down.p_value), (f64::NEG_INFINITY, 0.0));
    }

    #[test]
    fn bootstrap_hand_example() {
        // Pairs (1, 0) and (0, 0); all four resamples of two: statistics 1, 0, 0.5, 0.5.
        let (a, b) = ([1.0, 0.0], [0.0, 0.0]);
        let idx = vec![vec![0, 0], vec![1, 1], vec![0, 1], vec![1, 0]];
        // level 0.5: quantiles 0.25 and 0.75 of [0, .5, .5, 1] at positions 0.75 and 2.25.
        let p = bootstrap_ci_with_indices(&a, &b, &idx, 0.5, BootstrapMethod::Percentile).unwrap();
        assert_eq!(
            (p.estimate, p.low, p.high, p.n_resamples),
            (0.5, 0.375, 0.625, 4)
        );
        let q = bootstrap_ci_with_indices(&a, &b, &idx, 0.5, BootstrapMethod::Basic).unwrap();
        assert_eq!((q.low, q.high), (0.375, 0.625));
        // BCa: 1 of 4 below, 3 of 4 at or below → z0 = Φ⁻¹(0.5) = 0; jackknife estimates 0 and
        // 1 are symmetric → a = 0: BCa equals the percentile interval here.
        let c = bootstrap_ci_with_indices(&a, &b, &idx, 0.5, BootstrapMethod::Bca).unwrap();
        assert!((c.low - 0.375).abs() < 1e-15 && (c.high - 0.625).abs() < 1e-15);
    }

    #[test]
    fn bootstrap_degenerate_cases() {
        let a = [0.2, 0.7, 0.7, 0.1];
        let idx = draw_resample_indices(4, 200, 7);
        // Identical samples: every statistic is 0; BCa's acceleration is 0/0.
        assert_eq!(
            bootstrap_ci_with_indices(&a, &a, &idx, 0.95, BootstrapMethod::Bca),
            Err(PairedError::BcaUndefined)
        );
        let p = bootstrap_ci_with_indices(&a, &a, &idx, 0.95, BootstrapMethod::Percentile).unwrap();
        assert_eq!((p.low, p.high), (0.0, 0.0));
        let c = compare_paired(&a, &a, 0.95, 200, 7).unwrap();
        assert_eq!(c.boot_method, BootstrapMethod::Percentile);
        assert_eq!((c.boot_ci_low, c.boot_ci_high, c.p_value), (0.0, 0.0, 1.0));
        assert!(!c.significant(0.05));
    }

    #[test]
    fn input_errors_are_typed() {
        let ok = [1.0, 2.0, 3.0];
        assert_eq!(
            paired_t_test(&ok, &[1.0, 2.0], 0.95),
            Err(PairedError::LengthMismatch { a: 3, b: 2 })
        );
        assert_eq!(
            paired_t_test(&[1.0], &[2.0], 0.95),
            Err(PairedError::TooFewPairs { n: 1 })
        );
        assert_eq!(
            paired_t_test(&[], &[], 0.95),
            Err(PairedError::TooFewPairs { n: 0 })
        );
        assert_eq!(
            paired_t_test(&ok, &[1.0, f64::NAN, 0.0], 0.95),
            Err(PairedError::NonFinite {
                sample: 'b',
                index: 1
            })
        );
        assert_eq!(
            compare_paired(&[f64::INFINITY, 1.0], &[0.0, 0.0], 0.95, 10, 1),
            Err(PairedError::NonFinite {
                sample: 'a',
                index: 0
            })
        );
        for level in [0.0, 1.0, f64::NAN, -0.5] {
            assert!(matches!(
                paired_t_test(&ok, &ok, level),
                Err(PairedError::InvalidLevel { .. })
            ));
        }
        assert_eq!(
            bootstrap_ci_with_indices(&ok, &ok, &[], 0.95, BootstrapMethod::Bca),
            Err(PairedError::NoResamples)
        );
        assert_eq!(
            compare_paired(&ok, &[0.0, 1.0, 1.0], 0.95, 0, 1),
            Err(PairedError::NoResamples)
        );
        let short = vec![vec![0, 1]];
        assert!(matches!(
            bootstrap_ci_with_indices(&ok, &ok, &short, 0.95, BootstrapMethod::Basic),
            Err(PairedError::BadIndices { row: 0, .. })
        ));
        let out_of_range = vec![vec![0, 1, 2], vec![0, 3, 1]];
        assert!(matches!(
            bootstrap_ci_with_indices(&ok, &ok, &out_of_range, 0.95, BootstrapMethod::Basic),
            Err(PairedError::BadIndices { row: 1, .. })
        ));
    }

    #[test]
    fn seeded_bootstrap_equals_explicit_indices_and_is_reproducible() {
        let a = [0.81, 0.62, 0.62, 0.9, 0.55, 0.7, 0.7, 0.43, 0.66];
        let b = [0.78, 0.6, 0.65, 0.82, 0.55, 0.61, 0.7, 0.45, 0.6];
        for method in [
            BootstrapMethod::Percentile,
            BootstrapMethod::Basic,
            BootstrapMethod::Bca,
        ] {
            let idx = draw_resample_indices(a.len(), 500, 99);
            let want = bootstrap_ci_with_indices(&a, &b, &idx, 0.9, method).unwrap();
            assert_eq!(bootstrap_ci(&a, &b, 0.9, 500, 99, method).unwrap(), want);
        }
        let idx = draw_resample_indices(9, 3000, 5);
        assert!(idx.iter().all(|r| r.len() == 9 && r.iter().all(|&i| i < 9)));
        // Roughly uniform: each index about 3000 times.
        let mut counts = [0usize; 9];
        idx.iter().flatten().for_each(|&i| counts[i] += 1);
        assert!(
            counts.iter().all(|&c| (2700..3300).contains(&c)),
            "{counts:?}"
        );
        assert_ne!(
            draw_resample_indices(9, 5, 5),
            draw_resample_indices(9, 5, 6)
        );
        assert!(draw_resample_indices(0, 5, 5).is_empty());
    }

    #[test]
    fn compare_paired_summarises_both_tests() {
        let fx = fixture();
        let case = fx["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "hits_n40")
            .unwrap();
        let (a, b) = (floats(&case["a"]), floats(&case["b"]));
        let c = compare_paired(&a, &b, 0.95, 2000, 1).unwrap();
        let t = paired_t_test(&a, &b, 0.95).unwrap();
        assert_eq!(c.n, 40);
        assert_eq!(c.boot_method, BootstrapMethod::Bca);
        assert_eq!(
            (c.p_value, c.t_ci_low, c.t_ci_high),
            (t.p_value, t.ci_low, t.ci_high)
        );
        assert!((c.mean_a - c.mean_b - c.mean_diff).abs() < 1e-12);
        assert_close(c.p_value, case["ttest"]["pvalue"].as_f64().unwrap(), "p");
        // The BCa interval from our generator is near scipy's (different draws, same data).
        let scipy_lo = case["bootstrap"]["BCa"]["low"].as_f64().unwrap();
        let scipy_hi = case["bootstrap"]["BCa"]["high"].as_f64().unwrap();
        assert!(
            (c.boot_ci_low - scipy_lo).abs() < 0.05 && (c.boot_ci_high - scipy_hi).abs() < 0.05
        );
        assert!(c.boot_ci_low < c.mean_diff && c.mean_diff < c.boot_ci_high);
        // p ≈ 0.033: significant at 0.05, not at 0.01.
        assert!(c.significant(0.05) && !c.significant(0.01));
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["boot_method"], "BCa");
    }
}
