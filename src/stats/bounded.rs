//! Confidence intervals of a mean that stay within the range of the values: the Wilson score
//! interval for proportions and the Student-t interval clipped to a metric's range.
//!
//! A Student-t interval of a bounded quantity can leave its range (hit@4 = 1 for 9 of 10
//! questions gives [0.67, 1.13]; a response time of 0.1 s, 0.1 s and 3 s gives a lower end below
//! 0 s). Reports and exports therefore compute each metric's interval with the method that
//! [`crate::score::metric::Metric::interval_method`] chooses for it:
//!
//! - [`IntervalMethod::Wilson`] for proportions (every value 0 or 1: hit@k, em, contains,
//!   correctness): the Wilson score interval (Wilson 1927, *JASA* 22:209), equal to statsmodels'
//!   `proportion_confint(k, n, alpha, method="wilson")` (fixture
//!   `tests/fixtures/stats/wilson.json`, made by `tests/fixtures/stats/make_wilson.py`). It lies
//!   in [0, 1] by construction and has good coverage for small n and for p near 0 or 1, where
//!   the t (Wald) interval collapses to a point (0 of 39 gives [0, 0.090] instead of [0, 0]).
//!   If a value is not 0 or 1 the metric is not a proportion after all and the clipped t
//!   interval on [0, 1] is used instead.
//! - [`IntervalMethod::ClippedT`] for other bounded metrics: the Student-t interval
//!   ([`super::ci_from_moments`]) with each end clamped to the metric's range (cosine in
//!   [−1, 1], F1 / ROUGE-L / METEOR / recall / MRR / nDCG / judged shares in [0, 1], times in
//!   [0, ∞)). Clipping never moves the mean and only shortens an interval where it left the
//!   possible values.
//! - [`IntervalMethod::T`] for metrics of unknown range: the plain Student-t interval.
//!
//! [`CiMethod`] records which of the three produced a [`MeanCi`].

use super::{ci_from_moments, mean_ci, normal_quantile, MeanCi};

/// How the interval of one metric's mean is computed (chosen per metric by
/// [`crate::score::metric::Metric::interval_method`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IntervalMethod {
    /// Student-t interval without bounds.
    T,
    /// Student-t interval with both ends clamped to `[lo, hi]` (`hi` may be `f64::INFINITY`).
    ClippedT {
        /// Smallest possible value of the metric.
        lo: f64,
        /// Largest possible value of the metric (`f64::INFINITY` for times and counts).
        hi: f64,
    },
    /// Wilson score interval of a proportion when every value is 0 or 1; otherwise the
    /// Student-t interval clipped to [0, 1].
    Wilson,
}

/// The method that produced a [`MeanCi`]: its `ci_method` in exports (`t`, `t_clipped`,
/// `wilson`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CiMethod {
    /// Student-t interval, unbounded ([`super::mean_ci`]).
    #[default]
    T,
    /// Student-t interval clamped to the metric's range.
    TClipped,
    /// Wilson score interval of a proportion.
    Wilson,
}

impl CiMethod {
    /// The name used in exports and reports: `t`, `t_clipped` or `wilson`.
    pub fn as_str(self) -> &'static str {
        match self {
            CiMethod::T => "t",
            CiMethod::TClipped => "t_clipped",
            CiMethod::Wilson => "wilson",
        }
    }
}

impl std::fmt::Display for CiMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Wilson score interval of a proportion: `successes` of `n` trials at confidence `level`.
///
/// With p̂ = k/n and z = Φ⁻¹((1 + level)/2): centre (p̂ + z²/2n)/(1 + z²/n), half-width
/// z·√(p̂(1 − p̂)/n + z²/4n²)/(1 + z²/n) (Wilson 1927; statsmodels
/// `proportion_confint(method="wilson")`, to 1e-12 in the fixture test). The ends are clamped to
/// [0, 1] against rounding, and are exactly 0 when k = 0 and exactly 1 when k = n. Returns
/// `None` when `n == 0`, `successes` is outside [0, n] or not finite, or `level` is not strictly
/// between 0 and 1. `successes` may be fractional (statsmodels accepts that too).
pub fn wilson_interval(successes: f64, n: usize, level: f64) -> Option<(f64, f64)> {
    if n == 0 || !successes.is_finite() || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let nf = n as f64;
    if !(0.0..=nf).contains(&successes) {
        return None;
    }
    let z = normal_quantile(0.5 * (1.0 + level));
    let z2 = z * z;
    let p = successes / nf;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    let lo = if successes == 0.0 {
        0.0
    } else {
        (centre - half).clamp(0.0, 1.0)
    };
    let hi = if successes == nf {
        1.0
    } else {
        (centre + half).clamp(0.0, 1.0)
    };
    Some((lo, hi))
}

/// Mean of `n` values (mean `mean`, sample standard deviation `std` with ddof = 1) with its
/// interval at `level` by `method`; `binary` tells whether every value is 0 or 1 (only
/// [`IntervalMethod::Wilson`] looks at it).
///
/// `mean`, `std` and `n` are returned as given (std is 0 for n = 1), only `lo`, `hi` and
/// `method` depend on the method (see the module doc). Wilson is defined for n = 1 too (1 of 1
/// gives [0.207, 1] at 95%), unlike the t interval, which is the point `[mean, mean]` there.
/// Returns `None` where [`ci_from_moments`] does (n = 0, `level` outside (0, 1), a non-finite
/// mean).
pub fn bounded_ci_from_moments(
    method: IntervalMethod,
    n: usize,
    mean: f64,
    std: f64,
    binary: bool,
    level: f64,
) -> Option<MeanCi> {
    let t = ci_from_moments(n, mean, std, level)?;
    match method {
        IntervalMethod::T => Some(t),
        IntervalMethod::ClippedT { lo, hi } => Some(clip(t, lo, hi)),
        IntervalMethod::Wilson if binary => {
            // mean·n is the number of ones, up to the rounding of the mean
            let k = (mean * n as f64).round();
            let (lo, hi) = wilson_interval(k, n, level)?;
            Some(MeanCi {
                lo,
                hi,
                method: CiMethod::Wilson,
                ..t
            })
        }
        IntervalMethod::Wilson => Some(clip(t, 0.0, 1.0)),
    }
}

/// [`bounded_ci_from_moments`] of the values `xs` themselves (their mean, ddof-1 standard
/// deviation, and whether all are 0 or 1). `None` when `xs` is empty or `level` is not in
/// (0, 1); NaN values propagate as in [`mean_ci`].
pub fn bounded_mean_ci(method: IntervalMethod, xs: &[f64], level: f64) -> Option<MeanCi> {
    let t = mean_ci(xs, level)?;
    let binary = xs.iter().all(|&x| x == 0.0 || x == 1.0);
    bounded_ci_from_moments(method, t.n, t.mean, t.std, binary, level)
}

/// The t interval `ci` with its ends clamped to `[lo, hi]` (NaN ends stay NaN).
fn clip(ci: MeanCi, lo: f64, hi: f64) -> MeanCi {
    let clamp = |v: f64| if v.is_nan() { v } else { v.max(lo).min(hi) };
    MeanCi {
        lo: clamp(ci.lo),
        hi: clamp(ci.hi),
        method: CiMethod::TClipped,
        ..ci
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_three_of_ten_is_statsmodels_value() {
        // statsmodels 0.15 proportion_confint(3, 10, alpha=0.05, method="wilson")
        let (lo, hi) = wilson_interval(3.0, 10, 0.95).unwrap();
        assert!((lo - 0.10779126740630104).abs() < 1e-12, "{lo}");
        assert!((hi - 0.6032218525388546).abs() < 1e-12, "{hi}");
        assert_eq!(format!("{lo:.4} {hi:.4}"), "0.1078 0.6032");
    }

    #[test]
    fn wilson_ends_are_exact_at_zero_and_all() {
        let (lo, hi) = wilson_interval(0.0, 39, 0.95).unwrap();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.08 && hi < 0.1, "{hi}");
        let (lo, hi) = wilson_interval(39.0, 39, 0.95).unwrap();
        assert_eq!(hi, 1.0);
        assert!(lo > 0.9 && lo < 0.92, "{lo}");
        assert_eq!(wilson_interval(1.0, 0, 0.95), None);
        assert_eq!(wilson_interval(11.0, 10, 0.95), None);
        assert_eq!(wilson_interval(-1.0, 10, 0.95), None);
        assert_eq!(wilson_interval(1.0, 10, 1.0), None);
    }

    /// Wilson intervals against statsmodels `proportion_confint(k, n, alpha, method="wilson")`
    /// (fixture made by `tests/fixtures/stats/make_wilson.py`).
    #[test]
    fn wilson_matches_statsmodels_fixture() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/stats/wilson.json"))
                .expect("parse wilson.json");
        let mut checked = 0;
        for case in fixture["cases"].as_array().expect("cases") {
            let k = case["k"].as_f64().expect("k");
            let n = case["n"].as_u64().expect("n") as usize;
            let level = case["level"].as_f64().expect("level");
            let (lo, hi) = wilson_interval(k, n, level).expect("interval");
            let (want_lo, want_hi) = (case["lo"].as_f64().unwrap(), case["hi"].as_f64().unwrap());
            assert!(
                (lo - want_lo).abs() < 1e-12,
                "k={k} n={n} {level}: {lo} vs {want_lo}"
            );
            assert!(
                (hi - want_hi).abs() < 1e-12,
                "k={k} n={n} {level}: {hi} vs {want_hi}"
            );
            checked += 1;
        }
        assert!(checked >= 30, "fixture too small: {checked}");
    }

    #[test]
    fn proportions_use_wilson_and_fall_back_to_clipped_t() {
        let mut xs = vec![1.0; 9];
        xs.push(0.0);
        let t = mean_ci(&xs, 0.95).unwrap();
        assert!(t.hi > 1.0, "the t interval leaves [0, 1]: {t:?}");
        let w = bounded_mean_ci(IntervalMethod::Wilson, &xs, 0.95).unwrap();
        assert_eq!(w.method, CiMethod::Wilson);
        assert_eq!((w.n, w.mean, w.std), (t.n, t.mean, t.std));
        let (lo, hi) = wilson_interval(9.0, 10, 0.95).unwrap();
        assert_eq!((w.lo, w.hi), (lo, hi));
        assert!(w.lo < w.mean && w.hi < 1.0);
        // A constant 0/1 sample gets a real interval, not the t interval's point.
        let zeros = bounded_mean_ci(IntervalMethod::Wilson, &[0.0; 39], 0.95).unwrap();
        assert_eq!(zeros.lo, 0.0);
        assert!((zeros.hi - wilson_interval(0.0, 39, 0.95).unwrap().1).abs() < 1e-15);
        // A value that is not 0 or 1: clipped t on [0, 1].
        let mixed = bounded_mean_ci(IntervalMethod::Wilson, &[1.0, 1.0, 0.5], 0.95).unwrap();
        assert_eq!(mixed.method, CiMethod::TClipped);
        assert_eq!(mixed.hi, 1.0);
        assert!(mixed.lo < mixed.mean);
    }

    #[test]
    fn clipped_t_stays_in_range_and_keeps_the_mean() {
        // F1-like values near 1: the t interval's upper end is above 1.
        let xs = [1.0, 1.0, 0.9, 0.2];
        let t = mean_ci(&xs, 0.95).unwrap();
        let c = bounded_mean_ci(IntervalMethod::ClippedT { lo: 0.0, hi: 1.0 }, &xs, 0.95).unwrap();
        assert!(t.hi > 1.0);
        assert_eq!((c.mean, c.std, c.lo, c.hi), (t.mean, t.std, t.lo, 1.0));
        assert_eq!(c.method, CiMethod::TClipped);
        // Response times: never below 0.
        let times = [0.1, 0.1, 3.0];
        let t = mean_ci(&times, 0.95).unwrap();
        assert!(t.lo < 0.0);
        let c = bounded_mean_ci(
            IntervalMethod::ClippedT {
                lo: 0.0,
                hi: f64::INFINITY,
            },
            &times,
            0.95,
        )
        .unwrap();
        assert_eq!((c.lo, c.hi), (0.0, t.hi));
        // Cosine may be negative: [-1, 1] keeps a negative lower end.
        let cos = [-0.2, 0.1, 0.3];
        let t = mean_ci(&cos, 0.95).unwrap();
        let c =
            bounded_mean_ci(IntervalMethod::ClippedT { lo: -1.0, hi: 1.0 }, &cos, 0.95).unwrap();
        assert_eq!((c.lo, c.hi), (t.lo.max(-1.0), t.hi.min(1.0)));
        assert!(c.lo < 0.0);
    }

    #[test]
    fn plain_t_is_mean_ci() {
        let xs = [0.2, 5.0, -3.0];
        let t = bounded_mean_ci(IntervalMethod::T, &xs, 0.95).unwrap();
        assert_eq!(t, mean_ci(&xs, 0.95).unwrap());
        assert_eq!(t.method, CiMethod::T);
        assert_eq!(bounded_mean_ci(IntervalMethod::T, &[], 0.95), None);
    }
}
