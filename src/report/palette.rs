//! Colours and axis scales for the report's SVG: the Okabe-Ito colour-blind-safe qualitative
//! palette, the viridis sequential scale, and "nice" axis ticks.

/// Okabe & Ito (2008) "Color Universal Design" palette, reordered so the first colours have the
/// most contrast on white (yellow last).
pub const OKABE_ITO: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// Colour of the `i`-th series (wraps after 8).
pub fn series_color(i: usize) -> &'static str {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// Viridis anchor colours at t = 0, 1/8, …, 1 (matplotlib's `viridis`, sampled).
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// The viridis anchor colours as `#rrggbb`, evenly spaced from t = 0 to t = 1 (gradient stops).
pub fn viridis_stops() -> Vec<String> {
    VIRIDIS
        .iter()
        .map(|(r, g, b)| format!("#{r:02x}{g:02x}{b:02x}"))
        .collect()
}

/// Viridis colour at `t` in [0, 1] (clamped; NaN maps to 0), linear between anchors, as RGB.
pub fn viridis_rgb(t: f64) -> (u8, u8, u8) {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    (lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Viridis colour at `t` as `#rrggbb`.
pub fn viridis(t: f64) -> String {
    let (r, g, b) = viridis_rgb(t);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Whether text on the viridis colour at `t` should be dark (light background) for contrast:
/// relative luminance (sRGB approximation) above 0.4.
pub fn dark_text_on(t: f64) -> bool {
    let (r, g, b) = viridis_rgb(t);
    let lum = (0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b)) / 255.0;
    lum > 0.4
}

/// Axis ticks covering [lo, hi] at a 1-2-5 × 10^k step, about `target` of them (Heckbert,
/// "Nice numbers for graph labels", Graphics Gems, 1990).
///
/// Returns ticks in increasing order; the first is ≤ lo and the last ≥ hi. A degenerate or
/// non-finite range is widened around its value so at least two ticks come back.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    if hi - lo < 1e-12 * lo.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let (mantissa, exp) = nice_step((hi - lo) / target.max(1) as f64);
    let step = scale10(mantissa, exp);
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    // k · mantissa is an exact small integer; one scaling by a power of ten then rounds once,
    // so 3 × 0.2 prints as 0.6, not 0.6000000000000001.
    (first..=last)
        .map(|k| scale10(k as f64 * mantissa, exp))
        .collect()
}

/// `v · 10^exp`, dividing for negative `exp` so the result is correctly rounded.
fn scale10(v: f64, exp: i32) -> f64 {
    if exp >= 0 {
        v * 10f64.powi(exp)
    } else {
        v / 10f64.powi(-exp)
    }
}

/// The step 1, 2, 5 or 10 × 10^exp nearest above `raw`, as (mantissa, exp).
fn nice_step(raw: f64) -> (f64, i32) {
    let exp = raw.log10().floor() as i32;
    let f = raw / scale10(1.0, exp);
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    (nice, exp)
}

/// Formats a tick value with just enough decimals for `step`.
pub fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-(step.log10() + 1e-9).floor()) as usize
    };
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_cover_range_with_nice_steps() {
        for (lo, hi) in [(0.0, 7.3), (0.41, 0.87), (-3.0, 12.0), (1234.0, 98765.0)] {
            let t = nice_ticks(lo, hi, 5);
            assert!(t.len() >= 3 && t.len() <= 12, "{lo}..{hi}: {t:?}");
            assert!(t[0] <= lo && *t.last().unwrap() >= hi, "{lo}..{hi}: {t:?}");
            let step = t[1] - t[0];
            let m = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0, 10.0].iter().any(|n| (m - n).abs() < 1e-9),
                "{step}"
            );
        }
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert!(nice_ticks(5.0, 5.0, 5).len() >= 2);
        assert!(nice_ticks(f64::NAN, 1.0, 5).len() >= 2);
    }

    #[test]
    fn viridis_endpoints_and_contrast() {
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(1.0), "#fde725");
        assert_eq!(viridis(2.0), "#fde725");
        assert!(!dark_text_on(0.0));
        assert!(dark_text_on(1.0));
    }

    #[test]
    fn tick_labels_use_step_precision() {
        assert_eq!(tick_label(0.30000000000000004, 0.1), "0.3");
        assert_eq!(tick_label(2.5, 0.5), "2.5");
        assert_eq!(tick_label(1500.0, 500.0), "1500");
        assert_eq!(tick_label(0.05, 0.05), "0.05");
    }
}
