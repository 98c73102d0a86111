//! Small-sample statistics for reports: the Student-t quantile and t-based confidence intervals
//! of a mean.
//!
//! Everything here is our own code (no statistics crate). The Student-t distribution function is
//! written through the regularized incomplete beta function, evaluated by its continued fraction
//! with the modified Lentz method (Press et al., *Numerical Recipes*, 3rd ed., §6.4 `betai` /
//! `betacf`); the quantile inverts it with a safeguarded Newton iteration that falls back to
//! bisection. Tests compare against `scipy.stats.t.ppf` (fixture `tests/fixtures/t_quantile.csv`,
//! made by `tests/fixtures/t_quantile.py`). [`t_sf`] / [`t_cdf`] expose the distribution function
//! itself (p-values), and [`normal_cdf`] / [`normal_quantile`] the standard normal that BCa
//! bootstrap intervals need; paired comparisons (t-test and bootstrap) live in [`paired`].

pub mod agreement;
pub mod bounded;
pub mod paired;

pub use bounded::{
    bounded_ci_from_moments, bounded_mean_ci, wilson_interval, CiMethod, IntervalMethod,
};

/// Relative accuracy asked of the continued fraction (about two ulps).
const CF_EPS: f64 = 1e-16;
/// Tiny number that replaces an exact zero in Lentz's method.
const CF_TINY: f64 = 1e-300;
/// Iteration cap of the continued fraction; it converges in O(√max(a, b)) terms.
const CF_MAX_ITER: usize = 100_000;
/// Iteration cap of the quantile root finder (bisection alone would need about 2,100 halvings of
/// the full `f64` range; Newton usually finishes in under 10).
const ROOT_MAX_ITER: usize = 4_000;
/// Iteration cap of the normal quantile's Halley refinement (it converges in 2 to 4 steps).
const NORMAL_QUANTILE_MAX_ITER: usize = 60;

/// Mean of a sample with its confidence interval (Student-t, or a bounded method: [`bounded`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanCi {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean, in the unit of the values.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1), in the unit of the values; 0 when `n == 1`.
    pub std: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
    /// How `lo` and `hi` were computed: [`CiMethod::T`] from [`mean_ci`] / [`ci_from_moments`],
    /// the bounded methods from [`bounded_ci_from_moments`] (serialized as `t`, `t_clipped`,
    /// `wilson`).
    pub method: CiMethod,
}

impl MeanCi {
    /// Whether `lo`/`hi` estimate anything: false for a single value with a t interval (no
    /// spread to estimate, so `lo == hi == mean`; scipy gives NaN). Displays then show the mean
    /// with n = 1 instead of a point interval that looks like certainty. A Wilson interval of one
    /// 0/1 value is a real interval.
    pub fn has_interval(&self) -> bool {
        self.n >= 2 || self.method == CiMethod::Wilson
    }
}

/// Quantile function (inverse CDF) of Student's t distribution with `df` degrees of freedom.
///
/// Returns t such that P(T ≤ t) = `p`. `df` may be fractional. Edge cases: `p == 0` gives −∞,
/// `p == 1` gives +∞, `p == 0.5` gives 0; `p` outside [0, 1], `df <= 0` or a NaN argument give NaN.
/// Accuracy against scipy (fixture of 255 (p, df) pairs): under 1e-14 relative for df ≤ 30, under
/// 2e-12 for df = 1000; it degrades slowly for larger df because ln Γ differences lose digits.
///
/// Method: the upper tail is Q(t) = ½·I_x(df/2, ½) with x = df/(df + t²) (Abramowitz & Stegun
/// 26.7.1 / 26.5.27); t > 0 solving Q(t) = min(p, 1 − p) is found by Newton steps on Q (derivative
/// −pdf(t)) kept inside a shrinking bracket, with bisection whenever a step leaves the bracket.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() || df.is_nan() || !(0.0..=1.0).contains(&p) || df <= 0.0 {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    let tail = if p > 0.5 { 1.0 - p } else { p };
    let t = upper_tail_inverse(tail, df);
    if p > 0.5 {
        t
    } else {
        -t
    }
}

/// Upper-tail probability Q(t) = P(T > t) of Student's t for t ≥ 0.
///
/// Both x = df/(df+t²) and 1 − x = t²/(df+t²) are formed directly, so neither tail loses digits.
fn t_upper_tail(t: f64, df: f64) -> f64 {
    let t2 = t * t;
    let denom = df + t2;
    0.5 * incomplete_beta(0.5 * df, 0.5, df / denom, t2 / denom)
}

/// Probability density of Student's t at `t`.
fn t_pdf(t: f64, df: f64) -> f64 {
    let ln_norm =
        ln_gamma(0.5 * (df + 1.0)) - ln_gamma(0.5 * df) - 0.5 * (df * std::f64::consts::PI).ln();
    (ln_norm - 0.5 * (df + 1.0) * (t * t / df).ln_1p()).exp()
}

/// Solves Q(t) = `tail` for t > 0, where 0 < `tail` < ½.
fn upper_tail_inverse(tail: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = bracket_upper_tail(tail, df);
    // Start mid-bracket; Newton takes over once it lands inside the bracket.
    let mut t = (lo + hi) * 0.5;
    if !t.is_finite() {
        t = lo.max(1.0);
    }
    for _ in 0..ROOT_MAX_ITER {
        let f = t_upper_tail(t, df) - tail;
        if f == 0.0 {
            return t;
        }
        // Q is decreasing: f > 0 means the root lies right of t.
        if f > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let slope = -t_pdf(t, df);
        let newton = t - f / slope;
        let next = if newton.is_finite() && newton > lo && newton < hi {
            newton
        } else {
            bisect(lo, hi)
        };
        if (next - t).abs() <= 4.0 * f64::EPSILON * next.abs() || hi - lo <= f64::EPSILON * hi {
            return next;
        }
        t = next;
    }
    t
}

/// Midpoint of a positive bracket; geometric when the bracket spans orders of magnitude, so
/// heavy tails (df < 1 reaches t ~ 1e7 at p = 1e-4) are found in few halvings.
fn bisect(lo: f64, hi: f64) -> f64 {
    if lo > 0.0 && hi / lo > 4.0 {
        (lo * hi).sqrt()
    } else {
        0.5 * (lo + hi)
    }
}

/// Finds 0 ≤ lo < hi with Q(lo) ≥ `tail` ≥ Q(hi) by doubling.
fn bracket_upper_tail(tail: f64, df: f64) -> (f64, f64) {
    let mut lo = 0.0;
    let mut hi = 1.0;
    while t_upper_tail(hi, df) > tail && hi < f64::MAX / 4.0 {
        lo = hi;
        hi *= 4.0;
    }
    (lo, hi)
}

/// Regularized incomplete beta function I_x(a, b), with y = 1 − x passed in by the caller so it
/// keeps full precision when x is close to 1.
///
/// Numerical Recipes `betai`: the prefactor x^a y^b / (a B(a, b)) times the continued fraction,
/// using the symmetry I_x(a, b) = 1 − I_y(b, a) when x > (a + 1)/(a + b + 2) so the fraction
/// converges fast.
fn incomplete_beta(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * y.ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_continued_fraction(b, a, y) / b
    }
}

/// Continued fraction of the incomplete beta function, evaluated with the modified Lentz
/// method (Numerical Recipes `betacf`).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = lentz_guard(1.0 - qab * x / qap).recip();
    let mut h = d;
    for m in 1..=CF_MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step.
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = lentz_guard(1.0 + aa * d).recip();
        c = lentz_guard(1.0 + aa / c);
        h *= d * c;
        // Odd step.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = lentz_guard(1.0 + aa * d).recip();
        c = lentz_guard(1.0 + aa / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() <= CF_EPS {
            return h;
        }
    }
    tracing::warn!(
        a,
        b,
        x,
        "incomplete beta continued fraction did not converge"
    );
    h
}

/// Replaces a value too close to zero by a tiny one (Lentz's method).
fn lentz_guard(v: f64) -> f64 {
    if v.abs() < CF_TINY {
        CF_TINY
    } else {
        v
    }
}

/// ln Γ(x) for x > 0: Lanczos approximation with g = 7 and 9 coefficients (Godfrey's
/// coefficients, as in Numerical Recipes 3rd ed. / Boost's reference), relative error ≈ 1e-15;
/// reflection for x < ½.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Survival function P(T > t) of Student's t distribution with `df` degrees of freedom.
///
/// Equals `scipy.special.stdtr(df, -t)` (what `scipy.stats.ttest_rel` uses for its p-value).
/// `df` may be fractional. Edge cases: `t == +∞` gives 0, `t == −∞` gives 1; `df <= 0` or a NaN
/// argument give NaN. Same incomplete-beta evaluation as [`t_quantile`], so the two are
/// consistent; absolute error below 1e-15 in tests against scipy.
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t == f64::INFINITY {
        return 0.0;
    }
    if t == f64::NEG_INFINITY {
        return 1.0;
    }
    if t >= 0.0 {
        t_upper_tail(t, df)
    } else {
        1.0 - t_upper_tail(-t, df)
    }
}

/// Distribution function P(T ≤ t) of Student's t with `df` degrees of freedom
/// (`scipy.special.stdtr(df, t)`); `t_sf(-t, df)`, with the same edge cases as [`t_sf`].
pub fn t_cdf(t: f64, df: f64) -> f64 {
    t_sf(-t, df)
}

/// Standard normal distribution function Φ(x) (`scipy.special.ndtr`).
///
/// Written through the regularized incomplete gamma function, Φ(x) = ½·Q(½, x²/2) for x < 0
/// (and 1 − that for x ≥ 0), with the power series of P(½, ·) below x²/2 = 1.5 and the Lentz
/// continued fraction of Q above (Numerical Recipes 3rd ed. §6.2 `gser` / `gcf`). The lower tail
/// keeps full relative precision down to the underflow threshold (x ≈ −38.5). NaN gives NaN;
/// ±∞ give 1 and 0.
pub fn normal_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x >= 0.0 {
        1.0 - normal_upper_tail(x)
    } else {
        normal_upper_tail(-x)
    }
}

/// Quantile function Φ⁻¹(p) of the standard normal distribution (`scipy.special.ndtri`).
///
/// `p == 0` gives −∞, `p == 1` gives +∞, `p == 0.5` gives exactly 0; `p` outside [0, 1] or NaN
/// gives NaN. Method: the Abramowitz & Stegun 26.2.23 rational approximation (error < 4.5e-4) as
/// a start, refined by Halley steps on the upper tail P(Z > z) = min(p, 1 − p) (1 − p is exact
/// for p ≥ ½), so the result carries the tail's relative precision; about 1e-16 absolute error
/// near the centre in tests against scipy.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    let tail = if p > 0.5 { 1.0 - p } else { p };
    // A&S 26.2.23 start for the upper-tail point z > 0 with P(Z > z) = tail.
    let s = (-2.0 * tail.ln()).sqrt();
    let mut z = s
        - (2.515_517 + 0.802_853 * s + 0.010_328 * s * s)
            / (1.0 + 1.432_788 * s + 0.189_269 * s * s + 0.001_308 * s * s * s);
    z = z.max(0.0);
    for _ in 0..NORMAL_QUANTILE_MAX_ITER {
        let f = normal_upper_tail(z) - tail;
        let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        if f == 0.0 || pdf == 0.0 {
            break;
        }
        // Halley on f(z) = Q(z) − tail with f' = −φ, f'' = zφ.
        let u = f / pdf;
        let step = u / (1.0 - 0.5 * z * u);
        let step = if step.is_finite() { step } else { u };
        z += step;
        if step.abs() <= 2.0 * f64::EPSILON * z.abs().max(f64::MIN_POSITIVE) {
            break;
        }
    }
    if p > 0.5 {
        z
    } else {
        -z
    }
}

/// Upper tail P(Z > z) of the standard normal for z ≥ 0: ½·Q(½, z²/2) (= ½·erfc(z/√2)).
fn normal_upper_tail(z: f64) -> f64 {
    if z == f64::INFINITY {
        return 0.0;
    }
    let x = 0.5 * z * z;
    if x < 1.5 {
        0.5 - 0.5 * gamma_p_series_half(x)
    } else {
        0.5 * gamma_q_fraction_half(x)
    }
}

/// ln Γ(½) = ln √π.
const LN_GAMMA_HALF: f64 = 0.572_364_942_924_700_1;

/// Regularized lower incomplete gamma P(½, x) by its power series (converges fast for x < 1.5).
fn gamma_p_series_half(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let a = 0.5;
    let mut ap = a;
    let mut del = 1.0 / a;
    let mut sum = del;
    for _ in 0..CF_MAX_ITER {
        ap += 1.0;
        del *= x / ap;
        sum += del;
        if del.abs() < sum.abs() * CF_EPS {
            break;
        }
    }
    sum * (-x + a * x.ln() - LN_GAMMA_HALF).exp()
}

/// Regularized upper incomplete gamma Q(½, x) by its continued fraction (modified Lentz), x ≥ 1.
fn gamma_q_fraction_half(x: f64) -> f64 {
    let a = 0.5;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / CF_TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..=CF_MAX_ITER {
        let i = i as f64;
        let an = -i * (i - a);
        b += 2.0;
        d = lentz_guard(an * d + b).recip();
        c = lentz_guard(b + an / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() <= CF_EPS {
            break;
        }
    }
    (-x + a * x.ln() - LN_GAMMA_HALF).exp() * h
}

/// Mean of `xs` with a two-sided t confidence interval at `level` (e.g. 0.95).
///
/// Interval: mean ± t_{(1+level)/2, n−1} · s/√n with s the sample standard deviation (ddof = 1),
/// the textbook Student-t interval (assumes roughly normal data or a large n), equal to
/// `scipy.stats.t.interval(level, n - 1, loc=mean, scale=scipy.stats.sem(xs))` to 1e-9 (fixture
/// `tests/fixtures/stats/t_interval.json`). With `n == 1` there is no spread estimate: `std` is 0
/// and `lo == hi == mean` (a degenerate interval, not a claim of certainty; scipy returns NaN).
/// Identical values whose sum divides exactly (e.g. `[2.0; 5]`, `[0.0; 39]`) give `std == 0`
/// and `lo == hi == mean` too (scipy returns NaN for scale 0). Returns `None` when `xs` is empty
/// or `level` is not strictly between 0 and 1. NaN values propagate into the result; callers
/// filter missing values first.
pub fn mean_ci(xs: &[f64], level: f64) -> Option<MeanCi> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let std = if n > 1 {
        let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    ci_from_moments(n, mean, std, level)
}

/// Same interval as [`mean_ci`] from precomputed moments: `n` values with mean `mean` and sample
/// standard deviation `std` (ddof = 1; ignored when `n == 1`, where `lo == hi == mean`).
///
/// Returns `None` when `n == 0`, `level` is not strictly between 0 and 1, or `mean` is not finite.
/// A non-finite `std` with `n > 1` gives a NaN interval.
pub fn ci_from_moments(n: usize, mean: f64, std: f64, level: f64) -> Option<MeanCi> {
    if n == 0 || !(level > 0.0 && level < 1.0) || !mean.is_finite() {
        return None;
    }
    if n == 1 {
        return Some(MeanCi {
            n,
            mean,
            std: 0.0,
            lo: mean,
            hi: mean,
            method: CiMethod::T,
        });
    }
    let t = t_quantile(0.5 * (1.0 + level), (n - 1) as f64);
    let half = t * std / (n as f64).sqrt();
    Some(MeanCi {
        n,
        mean,
        std,
        lo: mean - half,
        hi: mean + half,
        method: CiMethod::T,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1.0)
    }

    #[test]
    fn t_quantile_matches_scipy_spot_values() {
        // scipy 1.17 t.ppf, confirmed to 20 digits with mpmath (40-digit betainc + findroot).
        // Older quoted values 2.2621571627409915 (df 9) and 3.2498355440153697 (p .995, df 9)
        // are off by 6e-11 and 2.4e-9 against that high-precision reference.
        let cases = [
            (0.975, 1.0, 12.706204736174707),
            (0.975, 2.0, 4.302652729749464),
            (0.975, 4.0, 2.7764451051977987),
            (0.975, 9.0, 2.262157162798205),
            (0.975, 19.0, 2.093024054408263),
            (0.975, 29.0, 2.045229642132703),
            (0.995, 9.0, 3.249835541592126),
        ];
        for (p, df, want) in cases {
            let got = t_quantile(p, df);
            assert!((got - want).abs() < 1e-9, "p={p} df={df}: {got} vs {want}");
        }
    }

    #[test]
    fn t_quantile_matches_scipy_fixture() {
        let fixture = include_str!("../../tests/fixtures/t_quantile.csv");
        let mut checked = 0;
        for line in fixture.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
            let (p, df, want) = (f[0], f[1], f[2]);
            let got = t_quantile(p, df);
            // 1e-9 absolute for ordinary values, relative for the huge far-tail ones.
            assert!(close(got, want, 1e-9), "p={p} df={df}: {got} vs {want}");
            checked += 1;
        }
        assert!(checked > 200, "fixture too small: {checked}");
    }

    #[test]
    fn t_quantile_is_antisymmetric_and_handles_edges() {
        for df in [0.7, 3.0, 42.0] {
            for p in [0.01, 0.2, 0.49] {
                // 1 - p is rounded, so symmetry holds to rounding, not bit for bit.
                assert!(close(t_quantile(p, df), -t_quantile(1.0 - p, df), 1e-13));
            }
        }
        assert_eq!(t_quantile(0.5, 3.0), 0.0);
        assert_eq!(t_quantile(0.0, 3.0), f64::NEG_INFINITY);
        assert_eq!(t_quantile(1.0, 3.0), f64::INFINITY);
        assert!(t_quantile(1.5, 3.0).is_nan());
        assert!(t_quantile(0.9, 0.0).is_nan());
        assert!(t_quantile(f64::NAN, 3.0).is_nan());
    }

    #[test]
    fn t_quantile_df1_is_cauchy_and_large_df_tends_to_normal() {
        // df = 1 is the Cauchy distribution: tan(π (p − ½)).
        for p in [0.6, 0.9, 0.999] {
            let want = (std::f64::consts::PI * (p - 0.5)).tan();
            assert!(close(t_quantile(p, 1.0), want, 1e-12));
        }
        // Normal 97.5% quantile 1.959963984540054; t(1e6) is within 1e-5 of it.
        assert!((t_quantile(0.975, 1e6) - 1.959963984540054).abs() < 1e-5);
    }

    #[test]
    fn incomplete_beta_matches_closed_forms() {
        // I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1-x)^b.
        for x in [0.01, 0.3, 0.77, 0.999] {
            assert!(close(incomplete_beta(1.0, 1.0, x, 1.0 - x), x, 1e-14));
            assert!(close(
                incomplete_beta(2.5, 1.0, x, 1.0 - x),
                x.powf(2.5),
                1e-13
            ));
            let want = 1.0 - (1.0 - x).powf(3.0);
            assert!(close(incomplete_beta(1.0, 3.0, x, 1.0 - x), want, 1e-13));
        }
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut fact = 1.0f64;
        for n in 1..30u32 {
            // Γ(n) = (n-1)!
            assert!(close(ln_gamma(n as f64), fact.ln(), 1e-13), "n={n}");
            fact *= n as f64;
        }
        let half = std::f64::consts::PI.sqrt().ln();
        assert!(close(ln_gamma(0.5), half, 1e-14));
    }

    #[test]
    fn mean_ci_textbook_example() {
        // xs = 1..=10: mean 5.5, s = sqrt(82.5/9), half-width t_{0.975,9} * s / sqrt(10).
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        let ci = mean_ci(&xs, 0.95).unwrap();
        let s = (82.5f64 / 9.0).sqrt();
        let half = 2.262157162798205 * s / 10f64.sqrt();
        assert_eq!(ci.n, 10);
        assert!(close(ci.mean, 5.5, 1e-15));
        assert!(close(ci.std, s, 1e-14));
        assert!(close(ci.lo, 5.5 - half, 1e-12));
        assert!(close(ci.hi, 5.5 + half, 1e-12));
    }

    #[test]
    fn mean_ci_degenerate_inputs() {
        assert_eq!(mean_ci(&[], 0.95), None);
        let one = mean_ci(&[3.25], 0.95).unwrap();
        assert_eq!(
            (one.n, one.mean, one.std, one.lo, one.hi),
            (1, 3.25, 0.0, 3.25, 3.25)
        );
        assert_eq!(mean_ci(&[1.0, 2.0], 1.0), None);
        assert_eq!(mean_ci(&[1.0, 2.0], 0.0), None);
        // Constant sample: zero-width interval.
        let c = mean_ci(&[2.0; 5], 0.95).unwrap();
        assert_eq!((c.lo, c.hi, c.std), (2.0, 2.0, 0.0));
    }

    /// Per-cell 95% intervals against `scipy.stats.t.interval(0.95, n - 1, loc=mean,
    /// scale=sem)` (fixture `tests/fixtures/stats/t_interval.json`, made by `make_fixture.py`
    /// there): n = 2, 3, ..., 5000, 0/1 samples, seconds, token counts, a 1e6 offset, tiny values.
    ///
    /// Where scipy has no interval we deliberately differ, and this test pins both sides:
    /// - n = 1: scipy gives NaN (the standard error is undefined); we give `lo == hi == mean` so
    ///   a cell answered once still shows its value (the report's interval tooltips give n, and
    ///   its Methods section says that n = 1 gives a zero-width interval);
    /// - all values identical (n >= 2): scipy gives NaN (scale 0 fails its argument check); we
    ///   give the zero-width interval `[mean, mean]`, which is the limit of the t interval as the
    ///   spread goes to 0 (e.g. a cell whose hit@4 is 0 for every question).
    #[test]
    fn mean_ci_matches_scipy_t_interval() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/stats/t_interval.json"))
                .expect("parse t_interval.json");
        assert_eq!(fixture["level"].as_f64(), Some(0.95));
        let close = |got: f64, want: f64| (got - want).abs() <= 1e-9 * want.abs().max(1.0);
        let (mut regular, mut single, mut constant) = (0, 0, 0);
        let mut ns = Vec::new();
        let mut worst = 0f64;
        for case in fixture["cases"].as_array().expect("cases") {
            let name = case["name"].as_str().expect("name");
            let xs: Vec<f64> = case["x"]
                .as_array()
                .expect("x")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect();
            let n = case["n"].as_u64().expect("n") as usize;
            assert_eq!(xs.len(), n, "{name}");
            let mean = case["mean"].as_f64().expect("mean");
            let ci = mean_ci(&xs, 0.95).expect("interval");
            assert_eq!(ci.n, n, "{name}");
            assert!(close(ci.mean, mean), "{name}: mean {} vs {mean}", ci.mean);
            let (lo, hi) = (case["lo"].as_f64(), case["hi"].as_f64());
            match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    let std = case["std"].as_f64().expect("std");
                    assert!(
                        (ci.std - std).abs() <= 1e-9 * std,
                        "{name}: std {} vs {std}",
                        ci.std
                    );
                    assert!(close(ci.lo, lo), "{name}: lo {} vs scipy {lo}", ci.lo);
                    assert!(close(ci.hi, hi), "{name}: hi {} vs scipy {hi}", ci.hi);
                    // The report's path: moments computed elsewhere (polars), same interval.
                    let m = ci_from_moments(n, mean, std, 0.95).expect("interval");
                    assert!(close(m.lo, lo) && close(m.hi, hi), "{name}: {m:?}");
                    for (g, w) in [(ci.lo, lo), (ci.hi, hi), (m.lo, lo), (m.hi, hi)] {
                        worst = worst.max((g - w).abs() / w.abs().max(1.0));
                    }
                    regular += 1;
                    ns.push(n);
                }
                (None, None) if n == 1 => {
                    // scipy: NaN. Ours: the degenerate interval at the value.
                    assert_eq!((ci.lo, ci.hi, ci.std), (xs[0], xs[0], 0.0), "{name}");
                    let m = ci_from_moments(1, mean, f64::NAN, 0.95).expect("interval");
                    assert_eq!((m.lo, m.hi), (mean, mean), "{name}");
                    single += 1;
                }
                (None, None) => {
                    // scipy: NaN because every value is the same. Ours: [mean, mean].
                    assert!(
                        xs.iter().all(|&x| x == xs[0]),
                        "{name}: scipy NaN, not constant"
                    );
                    assert_eq!((ci.lo, ci.hi, ci.std), (mean, mean, 0.0), "{name}");
                    let m = ci_from_moments(n, mean, 0.0, 0.95).expect("interval");
                    assert_eq!((m.lo, m.hi), (mean, mean), "{name}");
                    constant += 1;
                }
                _ => panic!("{name}: only one bound in the fixture"),
            }
        }
        // The fixture must cover what the requirement names.
        assert!(regular >= 25, "{regular} regular cases");
        assert!(
            single >= 2 && constant >= 3,
            "n=1: {single}, constant: {constant}"
        );
        for n in [2, 3] {
            assert!(ns.contains(&n), "no case with n = {n}");
        }
        assert!(ns.iter().any(|&n| n >= 1000), "no large n");
        eprintln!("{regular} intervals vs scipy: max relative difference {worst:e}");
    }

    #[test]
    fn wider_level_gives_wider_interval() {
        let xs = [0.2, 0.5, 0.4, 0.9, 0.1];
        let a = mean_ci(&xs, 0.9).unwrap();
        let b = mean_ci(&xs, 0.99).unwrap();
        assert!(b.lo < a.lo && b.hi > a.hi);
    }
}
