//! Racing: asking the questions in shards and stopping, after each shard, the cells that are
//! already significantly worse than the leader — so a grid spends its hours on the cells that
//! can still win.
//!
//! This module owns the statistics and bookkeeping of a race, free of I/O: the fixed random
//! question order ([`race_order`]), the shard boundaries ([`shard_ends`]), the elimination test
//! after each shard ([`eliminate`]) and the offline replay of a race on complete results
//! ([`replay`]) that checks a race keeps the full-data best group. The sweep ([`crate::sweep`])
//! runs the shards and stores each [`Elimination`] with its evidence.
//!
//! # The test
//!
//! After shard `k` of `K`, the leader is the live cell with the best mean on the race metric over
//! its answered questions. Every other live cell is compared with the leader on the questions
//! both have (paired, so question difficulty cancels out; a cell's score on a question is the
//! mean over its repeats, which are not independent samples) by a one-sided paired
//! t-test of "this cell is worse" (the differences oriented so that negative means worse; lower
//! is better for `response_time_s`). The p-values of the comparisons of one look are adjusted by
//! Holm's step-down procedure (Holm 1979), and a cell is eliminated when its adjusted p-value is
//! below `alpha / K`. This is the t-test race with Holm's correction of irace (López-Ibáñez et
//! al., "The irace package", Operations Research Perspectives 3, 2016, `testType =
//! "t-test-holm"`; racing after Birattari et al., GECCO 2002), with a Bonferroni split of
//! `alpha` over the `K` planned looks added on top.
//!
//! **Guarantee (and its assumptions).** Within one look, Holm controls the family-wise error
//! of eliminating any cell whose true mean is not below the leader's at `alpha / K`; by the
//! union bound over the `K` looks, the probability that a race ever eliminates such a cell is at
//! most `alpha`. This rests on the t-test's approximate normality of the mean paired difference
//! (reasonable from [`MIN_PAIRS`] pairs on bounded scores such as cosine) and treats the leader
//! as fixed, as F-Race's post-hoc tests do although the leader is chosen from the same data.
//! Eliminated cells keep their answers; a plain `run` completes them later.

use std::collections::{BTreeMap, BTreeSet};

use crate::stats::paired::paired_t_test;

/// Default significance level of a race (over all looks together).
pub const DEFAULT_ALPHA: f64 = 0.05;

/// Default number of shards (looks).
pub const DEFAULT_SHARDS: usize = 4;

/// Fewest common questions a comparison needs before it may eliminate a cell.
pub const MIN_PAIRS: usize = 5;

/// Seed of [`race_order`] when the experiment sets none.
pub const DEFAULT_SEED: u64 = 20_021_109;

/// Scores of one cell on the race metric, keyed by (question id, repeat).
pub type Scores = BTreeMap<(String, u32), f64>;

/// Settings of a race.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RaceSettings {
    /// The metric cells race on: `cosine`, `response_time_s` or a stored metric name.
    pub metric: String,
    /// Family-wise error level over the whole race (default [`DEFAULT_ALPHA`]).
    pub alpha: f64,
    /// Number of shards the questions are asked in; an elimination test follows each shard but
    /// the last (default [`DEFAULT_SHARDS`]).
    pub shards: usize,
    /// Seed of the question order (default [`DEFAULT_SEED`]).
    pub seed: u64,
}

impl RaceSettings {
    /// Defaults for `metric`.
    pub fn new(metric: &str) -> RaceSettings {
        RaceSettings {
            metric: metric.to_string(),
            alpha: DEFAULT_ALPHA,
            shards: DEFAULT_SHARDS,
            seed: DEFAULT_SEED,
        }
    }

    /// The level each look tests at: `alpha / shards` (Bonferroni over the looks).
    pub fn per_look_alpha(&self) -> f64 {
        self.alpha / self.shards.max(1) as f64
    }
}

/// One cell stopped by a race, with the evidence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Elimination {
    /// The eliminated cell.
    pub cell_id: String,
    /// The leader it was compared with.
    pub leader_id: String,
    /// The race metric.
    pub metric: String,
    /// 1-based look (shard) after which it was eliminated.
    pub look: usize,
    /// Common questions compared (each the mean over its repeats).
    pub n: usize,
    /// Mean of (cell − leader) over the pairs, in the metric's unit (negative: lower values).
    pub mean_diff: f64,
    /// Lower end of the two-sided paired t interval of `mean_diff` at level `1 − alpha / K`.
    pub ci_low: f64,
    /// Upper end of that interval.
    pub ci_high: f64,
    /// One-sided paired t-test p-value of "the cell is worse than the leader".
    pub p_value: f64,
    /// `p_value` after Holm's adjustment over the look's comparisons.
    pub p_adjusted: f64,
    /// The level the adjusted p-value was compared with (`alpha / K`).
    pub level: f64,
}

impl Elimination {
    /// The evidence in one line, naming the leader `leader`: `cosine -0.198 [-0.332, -0.064]
    /// vs LEADER over 20 questions, adjusted p 6.16e-3 < 0.0125`.
    pub fn evidence(&self, leader: &str) -> String {
        format!(
            "{} {:+.3} [{:+.3}, {:+.3}] vs {leader} over {} questions, adjusted p {:.2e} < {:.4}",
            self.metric,
            self.mean_diff,
            self.ci_low,
            self.ci_high,
            self.n,
            self.p_adjusted,
            self.level
        )
    }
}

/// The question ids in the race's fixed random order: a Fisher–Yates shuffle of `ids` driven by
/// SplitMix64 from `seed` (Steele, Lea & Flood 2014), so the same seed gives the same order on
/// every machine, and a resumed race asks the same shards.
pub fn race_order(ids: &[String], seed: u64) -> Vec<String> {
    let mut out = ids.to_vec();
    let mut state = seed;
    for i in (1..out.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cumulative question counts at the end of each of `shards` shards of `n` questions, as even as
/// possible: shard `k` ends at `ceil(n·k / shards)`; empty shards are dropped (fewer questions
/// than shards), so the last entry is always `n` (for `n > 0`).
pub fn shard_ends(n: usize, shards: usize) -> Vec<usize> {
    let shards = shards.max(1);
    let mut ends: Vec<usize> = (1..=shards).map(|k| (n * k).div_ceil(shards)).collect();
    ends.dedup();
    ends.retain(|&e| e > 0);
    ends
}

/// The cells to stop after look `look` of a race with `settings`: the live cells `scores`
/// (cell id → its scores so far) compared with the leader as the module doc describes. Cells
/// with fewer than [`MIN_PAIRS`] pairs in common with the leader are not compared (never
/// eliminated). Returns the eliminations, in cell id order.
pub fn eliminate(
    scores: &BTreeMap<String, Scores>,
    settings: &RaceSettings,
    look: usize,
) -> Vec<Elimination> {
    let lower = crate::report::ranking::lower_is_better(&settings.metric);
    let sign = if lower { -1.0 } else { 1.0 };
    let Some(leader) = leader(scores, lower) else {
        return Vec::new();
    };
    let level = settings.per_look_alpha();
    let lead = by_question(&scores[&leader]);
    let mut tests = Vec::new();
    for (id, s) in scores {
        if *id == leader {
            continue;
        }
        let (a, b): (Vec<f64>, Vec<f64>) = by_question(s)
            .iter()
            .filter_map(|(k, v)| lead.get(k).map(|l| (*v, *l)))
            .unzip();
        if a.len() < MIN_PAIRS {
            continue;
        }
        let Ok(t) = paired_t_test(&a, &b, 1.0 - level) else {
            continue;
        };
        // one-sided "worse": half the two-sided p when the difference points that way
        let worse = sign * t.mean_diff < 0.0;
        let p = if worse {
            t.p_value / 2.0
        } else {
            1.0 - t.p_value / 2.0
        };
        tests.push((id.clone(), t, p));
    }
    let adjusted = crate::report::holm_adjust(&tests.iter().map(|t| t.2).collect::<Vec<_>>());
    tests
        .into_iter()
        .zip(adjusted)
        .filter(|(_, adj)| *adj < level)
        .map(|((cell_id, t, p), p_adjusted)| Elimination {
            cell_id,
            leader_id: leader.clone(),
            metric: settings.metric.clone(),
            look,
            n: t.n,
            mean_diff: t.mean_diff,
            ci_low: t.ci_low,
            ci_high: t.ci_high,
            p_value: p,
            p_adjusted,
            level,
        })
        .collect()
}

/// A cell's scores as one value per question: the mean over its repeats.
fn by_question(s: &Scores) -> BTreeMap<&str, f64> {
    crate::report::ranking::question_means(s.iter().map(|((q, _), v)| (q.as_str(), *v)))
}

/// The cell with the best mean score over questions (ties: the smaller id); `None` without
/// scores.
fn leader(scores: &BTreeMap<String, Scores>, lower_is_better: bool) -> Option<String> {
    let sign = if lower_is_better { -1.0 } else { 1.0 };
    scores
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(id, s)| {
            let q = by_question(s);
            (id, sign * q.values().sum::<f64>() / q.len() as f64)
        })
        .fold(None, |best: Option<(&String, f64)>, (id, m)| match best {
            Some((_, bm)) if bm >= m => best,
            _ => Some((id, m)),
        })
        .map(|(id, _)| id.clone())
}

/// What a race would have done on complete results ([`replay`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Replay {
    /// Answers the race would have asked (scored pairs of live cells, summed over shards).
    pub answers_used: usize,
    /// Answers of the complete results.
    pub answers_total: usize,
    /// Eliminations, in look order.
    pub eliminations: Vec<Elimination>,
    /// The full-data best group: the best cell and every cell not significantly worse than it on
    /// all the data (the same paired one-sided t-test with Holm at `alpha`).
    pub best_group: BTreeSet<String>,
    /// Cells of the best group the race eliminated (empty: the race kept the best group).
    pub best_group_eliminated: Vec<String>,
}

/// Replays a race with `settings` on complete results `scores` (cell id → all its scores):
/// shard by shard in [`race_order`] of the question ids, each look seeing only the live cells'
/// scores on the questions asked so far. Checks the race against the full data: which cells
/// the race eliminated although they are in the full-data best group. Repeats of a question are
/// in the same shard as the question.
pub fn replay(scores: &BTreeMap<String, Scores>, settings: &RaceSettings) -> Replay {
    let ids: Vec<String> = scores
        .values()
        .flat_map(|s| s.keys().map(|(q, _)| q.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let order = race_order(&ids, settings.seed);
    let ends = shard_ends(order.len(), settings.shards);
    let mut live: BTreeSet<String> = scores.keys().cloned().collect();
    let mut eliminations = Vec::new();
    let mut answers_used = 0;
    let mut asked: BTreeSet<&str> = BTreeSet::new();
    let mut start = 0;
    for (k, &end) in ends.iter().enumerate() {
        let shard: BTreeSet<&str> = order[start..end].iter().map(String::as_str).collect();
        start = end;
        for id in &live {
            answers_used += scores[id]
                .keys()
                .filter(|(q, _)| shard.contains(q.as_str()))
                .count();
        }
        asked.extend(shard);
        if k + 1 == ends.len() {
            break; // the last shard completes the race: nothing left to save
        }
        let seen: BTreeMap<String, Scores> = live
            .iter()
            .map(|id| {
                let s = scores[id]
                    .iter()
                    .filter(|((q, _), _)| asked.contains(q.as_str()))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                (id.clone(), s)
            })
            .collect();
        for e in eliminate(&seen, settings, k + 1) {
            live.remove(&e.cell_id);
            eliminations.push(e);
        }
    }
    let full = RaceSettings {
        shards: 1,
        ..settings.clone()
    };
    let beaten: BTreeSet<String> = eliminate(scores, &full, 1)
        .into_iter()
        .map(|e| e.cell_id)
        .collect();
    let best_group: BTreeSet<String> = scores
        .keys()
        .filter(|id| !beaten.contains(*id))
        .cloned()
        .collect();
    let best_group_eliminated = eliminations
        .iter()
        .filter(|e| best_group.contains(&e.cell_id))
        .map(|e| e.cell_id.clone())
        .collect();
    Replay {
        answers_used,
        answers_total: scores.values().map(BTreeMap::len).sum(),
        eliminations,
        best_group,
        best_group_eliminated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("q{i:02}")).collect()
    }

    /// Scores `base + effect` plus per-question difficulty `d(q)` and a little noise, so cells
    /// differ by `effect` consistently across questions.
    fn cell(n: usize, effect: f64, salt: u64) -> Scores {
        let mut state = salt;
        (0..n)
            .map(|i| {
                let difficulty = ((i * 37) % 11) as f64 / 20.0;
                let noise = (splitmix64(&mut state) % 1000) as f64 / 1000.0 * 0.06 - 0.03;
                ((format!("q{i:02}"), 0), 0.3 + difficulty + effect + noise)
            })
            .collect()
    }

    #[test]
    fn order_is_a_fixed_permutation() {
        let q = ids(40);
        let a = race_order(&q, 7);
        assert_eq!(a, race_order(&q, 7), "same seed, same order");
        assert_ne!(a, race_order(&q, 8));
        assert_ne!(a, q, "shuffled");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, q, "a permutation");
    }

    #[test]
    fn shards_cover_the_questions_evenly() {
        assert_eq!(shard_ends(39, 4), vec![10, 20, 30, 39]);
        assert_eq!(shard_ends(10, 4), vec![3, 5, 8, 10]);
        assert_eq!(shard_ends(2, 4), vec![1, 2]);
        assert_eq!(shard_ends(0, 4), Vec::<usize>::new());
        assert_eq!(shard_ends(5, 1), vec![5]);
    }

    #[test]
    fn a_clearly_worse_cell_is_eliminated_with_its_evidence_and_ties_are_kept() {
        let n = 12;
        let scores: BTreeMap<String, Scores> = [
            ("best".to_string(), cell(n, 0.10, 1)),
            ("tied".to_string(), cell(n, 0.095, 2)),
            ("worse".to_string(), cell(n, -0.15, 3)),
        ]
        .into_iter()
        .collect();
        let settings = RaceSettings::new("cosine");
        let out = eliminate(&scores, &settings, 1);
        assert_eq!(out.len(), 1, "{out:?}");
        let e = &out[0];
        assert_eq!(
            (e.cell_id.as_str(), e.leader_id.as_str()),
            ("worse", "best")
        );
        assert_eq!(e.n, n);
        assert!((e.mean_diff + 0.25).abs() < 0.03, "{e:?}");
        assert!(e.ci_high < 0.0 && e.ci_low < e.mean_diff);
        assert!(e.p_value <= e.p_adjusted && e.p_adjusted < e.level);
        assert_eq!(e.level, 0.05 / 4.0);
        // for a lower-is-better metric the same numbers make "worse" the leader
        let t = RaceSettings::new("response_time_s");
        let out = eliminate(&scores, &t, 1);
        assert!(out.iter().all(|e| e.leader_id == "worse"), "{out:?}");
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn too_few_pairs_never_eliminate() {
        let scores: BTreeMap<String, Scores> = [
            ("a".to_string(), cell(MIN_PAIRS - 1, 0.5, 1)),
            ("b".to_string(), cell(MIN_PAIRS - 1, -0.5, 2)),
        ]
        .into_iter()
        .collect();
        assert!(eliminate(&scores, &RaceSettings::new("cosine"), 1).is_empty());
    }

    #[test]
    fn repeats_of_a_question_count_once() {
        // 4 questions, each asked 8 times with the same score (a deterministic cell): 4
        // questions in common, fewer than MIN_PAIRS, whatever 32 copies would suggest
        let repeated = |effect: f64, salt: u64| -> Scores {
            cell(4, effect, salt)
                .into_iter()
                .flat_map(|((q, _), v)| (0..8).map(move |r| ((q.clone(), r), v)))
                .collect()
        };
        let scores: BTreeMap<String, Scores> = [
            ("a".to_string(), repeated(0.2, 1)),
            ("b".to_string(), repeated(-0.2, 2)),
        ]
        .into_iter()
        .collect();
        assert_eq!(scores["a"].len(), 32);
        assert!(eliminate(&scores, &RaceSettings::new("cosine"), 1).is_empty());
    }

    #[test]
    fn replay_keeps_the_best_group_and_saves_answers() {
        let n = 40;
        let mut scores: BTreeMap<String, Scores> = BTreeMap::new();
        // c1 is c0 ± 0.02 alternately (tied: mean difference 0); the others are worse by 0.1
        // to 0.4
        for (i, effect) in [0.10, 0.10, 0.0, -0.1, -0.2, -0.3].iter().enumerate() {
            scores.insert(format!("c{i}"), cell(n, *effect, i as u64 + 10));
        }
        let tied: Scores = scores["c0"]
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (k.clone(), v + if i % 2 == 0 { 0.02 } else { -0.02 }))
            .collect();
        scores.insert("c1".into(), tied);
        let r = replay(&scores, &RaceSettings::new("cosine"));
        assert_eq!(r.answers_total, 6 * n);
        assert!(r.best_group.contains("c0") && r.best_group.contains("c1"));
        assert!(r.best_group_eliminated.is_empty(), "{r:?}");
        assert!(
            r.answers_used * 2 <= r.answers_total,
            "{} of {}",
            r.answers_used,
            r.answers_total
        );
        let gone: BTreeSet<&str> = r.eliminations.iter().map(|e| e.cell_id.as_str()).collect();
        assert!(gone.contains("c5") && gone.contains("c4"), "{gone:?}");
        assert!(r.eliminations.windows(2).all(|w| w[0].look <= w[1].look));
    }
}
