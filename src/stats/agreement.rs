//! Agreement of two raters on binary labels: accuracy and Cohen's kappa.
//!
//! Kappa as Cohen (1960), "A coefficient of agreement for nominal scales", and as
//! `sklearn.metrics.cohen_kappa_score` computes it without weights: κ = (p_o − p_e) / (1 − p_e),
//! p_o the observed agreement, p_e the agreement expected by chance from each rater's marginal
//! rates. Used to measure the LLM judge's correctness verdicts against human labels.

/// How two raters agree on the same items.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Agreement {
    /// Items rated by both.
    pub n: usize,
    /// Both say yes.
    pub both_yes: usize,
    /// Both say no.
    pub both_no: usize,
    /// The first says yes, the second no.
    pub only_first: usize,
    /// The second says yes, the first no.
    pub only_second: usize,
}

impl Agreement {
    /// Counts the agreement of paired ratings (`first[i]`, `second[i]`); extra items of the longer
    /// slice are ignored.
    pub fn of(first: &[bool], second: &[bool]) -> Agreement {
        let mut a = Agreement {
            n: 0,
            both_yes: 0,
            both_no: 0,
            only_first: 0,
            only_second: 0,
        };
        for (&x, &y) in first.iter().zip(second) {
            a.n += 1;
            match (x, y) {
                (true, true) => a.both_yes += 1,
                (false, false) => a.both_no += 1,
                (true, false) => a.only_first += 1,
                (false, true) => a.only_second += 1,
            }
        }
        a
    }

    /// Share of items rated alike; `None` without items.
    pub fn accuracy(&self) -> Option<f64> {
        (self.n > 0).then(|| (self.both_yes + self.both_no) as f64 / self.n as f64)
    }

    /// Cohen's kappa; `None` without items or when chance agreement is 1 (both raters gave one
    /// and the same label to everything, where sklearn returns NaN).
    pub fn kappa(&self) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let po = (self.both_yes + self.both_no) as f64 / n;
        let first_yes = (self.both_yes + self.only_first) as f64 / n;
        let second_yes = (self.both_yes + self.only_second) as f64 / n;
        let pe = first_yes * second_yes + (1.0 - first_yes) * (1.0 - second_yes);
        if (1.0 - pe).abs() < 1e-12 {
            return None;
        }
        Some((po - pe) / (1.0 - pe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_matches_the_definition_on_worked_examples() {
        // p_o = 4/6, both raters 3/6 yes: p_e = 0.5, kappa = (2/3 - 1/2) / (1/2) = 1/3.
        let a = Agreement::of(
            &[true, true, false, false, true, false],
            &[true, false, false, false, true, true],
        );
        assert_eq!((a.n, a.both_yes, a.both_no), (6, 2, 2));
        assert!((a.accuracy().unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert!((a.kappa().unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // Cohen (1960)'s point: 90% agreement on a rare label can be near chance. Rater 1 says yes
        // to 1 of 10, rater 2 to none: p_o = 0.9, p_e = 0.1*0 + 0.9*1 = 0.9, kappa = 0.
        let first: Vec<bool> = (0..10).map(|i| i == 0).collect();
        let rare = Agreement::of(&first, &[false; 10]);
        assert_eq!(rare.accuracy(), Some(0.9));
        assert!(rare.kappa().unwrap().abs() < 1e-12);
        // Perfect agreement is 1; systematic disagreement is negative.
        assert_eq!(
            Agreement::of(&[true, false], &[true, false]).kappa(),
            Some(1.0)
        );
        assert_eq!(
            Agreement::of(&[true, false], &[false, true]).kappa(),
            Some(-1.0)
        );
    }

    #[test]
    fn degenerate_inputs_have_no_kappa() {
        assert_eq!(Agreement::of(&[], &[]).kappa(), None);
        assert_eq!(Agreement::of(&[true, true], &[true, true]).kappa(), None);
        assert_eq!(Agreement::of(&[], &[]).accuracy(), None);
    }
}
