//! `orchestrate diff A B`: compares two result databases, or two runs stored in one, cell by cell
//! and metric by metric, and gates on regressions.
//!
//! This module owns the comparison: reading each side ([`load_side`]: a `.sqlite` result
//! database, an experiment TOML naming `store/<name>.sqlite`, either optionally narrowed to the
//! answers one run wrote with `@N` / `@last`), pairing cells ([`pair_cells`]: by cell id, else by
//! equal axes), pairing answers on (question id, repeat), the per-metric paired statistics and
//! verdicts ([`diff_answers`]), the regression gate ([`Gate`], [`gate_failures`]) and the text and
//! HTML renderings ([`diff_text`], [`diff_html_page`]). It computes no statistic itself.
//!
//! Statistics: the paired t-test of B − A over the shared questions (answers paired on
//! (question id, repeat), then averaged per question: repeats are not independent) with its 95%
//! confidence interval ([`crate::stats::paired::paired_t_test`], equal to
//! `scipy.stats.ttest_rel(b, a)`), p-values adjusted by Holm's step-down method over the paired
//! cells of one metric ([`crate::report::holm_adjust`]; S. Holm, Scand. J. Statist. 6 (1979)
//! 65–70), and the metric's direction from [`crate::report::ranking::lower_is_better`]. Only `ok`
//! answers with a finite value count ([`crate::report::ranking::metric_value`]), and timings only
//! of answers decoded alone ([`crate::report::latency_view`]).
//!
//! Runs: every answer row records the run that wrote it (`answers.run_id`), and there is one row
//! per (cell, question, repeat). So `DB@N` selects what run N wrote: a run that changed a setting
//! made new cells (new ids) whose answers are all its own, while a rerun of unchanged cells asks
//! nothing and writes nothing; to compare a rerun of the same cells, run it into another store
//! (`--store`) or under another experiment name and diff the two databases.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::cell::{Cell, CellAxes};
use crate::report::html::esc;
use crate::report::ranking::{fmt_p, lower_is_better, metric_decimals, metric_value};
use crate::report::{available_rank_metrics, holm_adjust, latency_view, CI_LEVEL};
use crate::stats::paired::{numpy_sum, paired_t_test, PairedTTest};
use crate::store::{AnswerRecord, Store, StoreError};

/// Significance level of a verdict: a difference is significant when its Holm-adjusted p-value
/// is strictly below it.
pub const DIFF_ALPHA: f64 = 0.05;

/// Errors of `orchestrate diff`. Each names the argument or file and what would fix it.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// An argument names no existing file.
    #[error(
        "{side}: `{arg}` does not exist; give a result database (store/<name>.sqlite), an \
         experiment file (.toml), optionally followed by @RUN (a run id or `last`)"
    )]
    NotFound {
        /// `A` or `B`.
        side: char,
        /// The argument as given.
        arg: String,
    },
    /// The run suffix after `@` is not a run id or `last`.
    #[error("{side}: `@{suffix}` in `{arg}` is not a run: write @N (a run id, e.g. @2 or @run2) or @last")]
    BadRun {
        /// `A` or `B`.
        side: char,
        /// The argument as given.
        arg: String,
        /// The text after `@`.
        suffix: String,
    },
    /// The experiment file could not be read for its name.
    #[error(transparent)]
    Experiment(#[from] crate::experiment::ExperimentError),
    /// The experiment has no result database under the store directory.
    #[error(
        "{side}: no results for experiment `{name}` ({} does not exist); run `orchestrate run {}` \
         first, or pass --store with the directory holding its database",
        path.display(),
        file.display()
    )]
    NoResults {
        /// `A` or `B`.
        side: char,
        /// The experiment's name.
        name: String,
        /// The database looked for.
        path: PathBuf,
        /// The experiment file.
        file: PathBuf,
    },
    /// The file is not a result database orchestrate can read.
    #[error(
        "{side}: {} is not an orchestrate result database ({reason}); give a store/<name>.sqlite \
         written by `orchestrate run`, or the experiment's .toml",
        path.display()
    )]
    NotADatabase {
        /// `A` or `B`.
        side: char,
        /// The file.
        path: PathBuf,
        /// Why (what SQLite said, or the missing table).
        reason: String,
    },
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The selected run is not in the database.
    #[error("{side}: {} has no run {run}; its runs are: {}", path.display(), list_or_none(available))]
    NoSuchRun {
        /// `A` or `B`.
        side: char,
        /// The database.
        path: PathBuf,
        /// The run asked for (`last` when the database has no run at all).
        run: String,
        /// The run ids it holds.
        available: Vec<i64>,
    },
    /// The selection holds no answers to compare.
    #[error("{side}: {} has no stored answers{}; run the experiment first or pick another run", path.display(), run.map(|r| format!(" written by run {r}")).unwrap_or_default())]
    NoAnswers {
        /// `A` or `B`.
        side: char,
        /// The database.
        path: PathBuf,
        /// The selected run.
        run: Option<i64>,
    },
    /// A `--fail-on-regression` value is malformed.
    #[error("--fail-on-regression `{spec}`: {reason}; write METRIC or METRIC:THRESHOLD, e.g. cosine:0.05")]
    BadGate {
        /// The value as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A gate names a metric neither side can be compared on.
    #[error(
        "--fail-on-regression {metric}: no such metric in both A and B; available: {}",
        list_or_none(available)
    )]
    UnknownMetric {
        /// The metric asked for.
        metric: String,
        /// The metrics both sides have.
        available: Vec<String>,
    },
    /// Writing the HTML file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn list_or_none<T: ToString>(xs: &[T]) -> String {
    if xs.is_empty() {
        "none".to_string()
    } else {
        xs.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// Which answers of a database one side reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSelector {
    /// Every stored answer (each row as the last run that wrote it left it).
    All,
    /// The answers run N wrote.
    Run(i64),
    /// The answers the latest run wrote.
    Last,
}

impl RunSelector {
    /// Parses `N`, `runN` or `last` / `latest`; `None` for anything else.
    pub fn parse(s: &str) -> Option<RunSelector> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("last") || s.eq_ignore_ascii_case("latest") {
            return Some(RunSelector::Last);
        }
        let digits = s.strip_prefix("run").unwrap_or(s);
        digits.parse::<i64>().ok().map(RunSelector::Run)
    }
}

/// One side of a diff as read from its database.
#[derive(Debug, Clone)]
pub struct Side {
    /// The argument as given (`store/x.sqlite@2`, `experiments/x.toml`).
    pub arg: String,
    /// The result database.
    pub path: PathBuf,
    /// The run whose answers were selected (`None`: every stored answer).
    pub run: Option<i64>,
    /// The cells that have answers in the selection, as they ran, keyed by cell id.
    pub specs: BTreeMap<String, Cell>,
    /// The selected answers, timings of batched answers removed ([`latency_view`]).
    pub answers: Vec<AnswerRecord>,
}

/// Resolves argument `arg` of side `side` (`'A'` or `'B'`) to a database path and run selector.
///
/// `arg` is a file (a `.toml` experiment, read only for its `name`, whose database is
/// `<store_dir>/<name>.sqlite`; anything else is taken as a database), optionally followed by
/// `@N`, `@runN` or `@last`. An explicit `run` (from `--run-a` / `--run-b`) overrides the suffix.
/// Errors: [`DiffError::NotFound`], [`DiffError::BadRun`], [`DiffError::Experiment`],
/// [`DiffError::NoResults`].
pub fn resolve_side(
    side: char,
    arg: &str,
    store_dir: &Path,
    run: Option<RunSelector>,
) -> Result<(PathBuf, RunSelector), DiffError> {
    let (file, suffix) = if Path::new(arg).exists() {
        (PathBuf::from(arg), None)
    } else {
        match arg.rsplit_once('@') {
            Some((file, suffix)) if Path::new(file).exists() => {
                let sel = RunSelector::parse(suffix).ok_or_else(|| DiffError::BadRun {
                    side,
                    arg: arg.to_string(),
                    suffix: suffix.to_string(),
                })?;
                (PathBuf::from(file), Some(sel))
            }
            _ => {
                return Err(DiffError::NotFound {
                    side,
                    arg: arg.to_string(),
                })
            }
        }
    };
    let selector = run.or(suffix).unwrap_or(RunSelector::All);
    if file.extension().is_some_and(|e| e == "toml") {
        let name = crate::experiment::read_name(&file)?;
        let path = Store::path_for(store_dir, &name);
        if !path.is_file() {
            return Err(DiffError::NoResults {
                side,
                name,
                path,
                file,
            });
        }
        return Ok((path, selector));
    }
    Ok((file, selector))
}

/// Reads side `side` from `arg` (see [`resolve_side`]): its cells and the answers of the
/// selected run (all answers without one), with [`latency_view`] applied.
///
/// Errors: those of [`resolve_side`]; [`DiffError::NotADatabase`] when the file is not a result
/// database; [`DiffError::NoSuchRun`] when the run is not recorded; [`DiffError::NoAnswers`] when
/// the selection is empty; store errors.
pub fn load_side(
    side: char,
    arg: &str,
    store_dir: &Path,
    run: Option<RunSelector>,
) -> Result<Side, DiffError> {
    let (path, selector) = resolve_side(side, arg, store_dir, run)?;
    let not_db = |e: StoreError| DiffError::NotADatabase {
        side,
        path: path.clone(),
        reason: match e {
            StoreError::Sqlite { source, .. } => source.to_string(),
            e => e.to_string(),
        },
    };
    if !has_answers_table(&path) {
        return Err(DiffError::NotADatabase {
            side,
            path: path.clone(),
            reason: "it has no `answers` table".into(),
        });
    }
    let db = Store::open(&path).map_err(not_db)?;
    let cells = db.stored_cells().map_err(not_db)?;
    let mut answers = db.answers(&cells)?;
    let run = match selector {
        RunSelector::All => None,
        sel => {
            let runs: Vec<i64> = db.runs()?.iter().map(|r| r.run_id).collect();
            let id = match sel {
                RunSelector::Run(n) => n,
                _ => *runs.last().ok_or_else(|| DiffError::NoSuchRun {
                    side,
                    path: path.clone(),
                    run: "last".into(),
                    available: vec![],
                })?,
            };
            if !runs.contains(&id) {
                return Err(DiffError::NoSuchRun {
                    side,
                    path,
                    run: id.to_string(),
                    available: runs,
                });
            }
            let wrote = db.answer_runs()?;
            answers.retain(|a| {
                wrote.get(&(a.cell.cell_id.clone(), a.repeat, a.question_id.clone())) == Some(&id)
            });
            Some(id)
        }
    };
    if answers.is_empty() {
        return Err(DiffError::NoAnswers { side, path, run });
    }
    let specs = cells
        .into_iter()
        .filter(|c| answers.iter().any(|a| a.cell.cell_id == c.cell.id))
        .map(|c| (c.cell.id.clone(), c.cell))
        .collect();
    Ok(Side {
        arg: arg.to_string(),
        path,
        run,
        specs,
        answers: latency_view(&answers),
    })
}

/// Whether `path` is an SQLite file with an `answers` table, checked read-only so that a
/// foreign database is never given orchestrate's schema.
fn has_answers_table(path: &Path) -> bool {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'answers'",
                [],
                |r| r.get::<_, bool>(0),
            )
        })
        .unwrap_or(false)
}

/// How the two cells of a pair were matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum MatchedBy {
    /// Same cell id: same contents and settings (the id hashes them).
    Identity,
    /// Different ids, equal axes (model name and retrieval settings); `changes` lists what
    /// differs between the cells as they ran (`model.params.max_tokens: 64 → 2`), when both
    /// sides stored their cell specs.
    Axes {
        /// What differs, one `field: A → B` per entry (at most 6, then `+N more`).
        changes: Vec<String>,
    },
}

impl MatchedBy {
    /// One line for the output: `same cell id`, or `same axes, ids differ: changes`.
    pub fn describe(&self) -> String {
        match self {
            MatchedBy::Identity => "same cell id".to_string(),
            MatchedBy::Axes { changes } if changes.is_empty() => {
                "same axes, cell ids differ".to_string()
            }
            MatchedBy::Axes { changes } => format!("same axes, changed: {}", changes.join("; ")),
        }
    }
}

/// A cell of A paired with a cell of B.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CellPair {
    /// The label both show (`model · retrieval settings`, A's).
    pub label: String,
    /// A's cell id.
    pub a_id: String,
    /// B's cell id.
    pub b_id: String,
    /// How they were matched.
    pub matched_by: MatchedBy,
    /// (question, repeat) keys both answered `ok` with the same question text.
    pub shared: usize,
    /// Keys both answered `ok` whose question text differs (left out of every comparison).
    pub text_changed: usize,
}

/// A cell of one side with no partner in the other.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unpaired {
    /// `A` or `B`.
    pub side: char,
    /// Its label.
    pub label: String,
    /// Its id.
    pub cell_id: String,
    /// Why it has no partner.
    pub reason: String,
}

/// Verdict of one paired cell on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Verdict {
    /// B is significantly worse than A (Holm-adjusted p < [`DIFF_ALPHA`], difference in the
    /// metric's worse direction).
    Regression,
    /// B is significantly better than A.
    Improvement,
    /// The difference is not significant.
    NoSignificantChange,
    /// Fewer than 2 shared pairs with a value of the metric: no test.
    NotComparable,
}

impl Verdict {
    /// Short text with a mark: `✗ regression`, `✓ improvement`, `≈ no significant change`,
    /// `– not comparable`.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Regression => "✗ regression",
            Verdict::Improvement => "✓ improvement",
            Verdict::NoSignificantChange => "≈ no significant change",
            Verdict::NotComparable => "– not comparable",
        }
    }

    fn css(self) -> &'static str {
        match self {
            Verdict::Regression => "worse",
            Verdict::Improvement => "better",
            Verdict::NoSignificantChange => "same",
            Verdict::NotComparable => "na",
        }
    }
}

/// One paired cell on one metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiffRow {
    /// Index of the pair in [`DiffReport::pairs`].
    pub pair: usize,
    /// Shared questions with a finite value on both sides (each side the mean over the
    /// question's shared repeats).
    pub n: usize,
    /// Mean of A over those pairs (metric units); `None` when n = 0.
    pub mean_a: Option<f64>,
    /// Mean of B over those pairs.
    pub mean_b: Option<f64>,
    /// Paired t-test of B − A (difference, its 95% interval, p); `None` when n < 2.
    pub test: Option<PairedTTest>,
    /// Holm-adjusted p over the tested pairs of this metric.
    pub p_holm: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

impl DiffRow {
    /// How much worse B is than A in metric units (positive: worse): B − A for lower-is-better
    /// metrics, A − B otherwise; `None` without a test.
    pub fn worsening(&self, lower_is_better: bool) -> Option<f64> {
        self.test.map(|t| {
            if lower_is_better {
                t.mean_diff
            } else {
                -t.mean_diff
            }
        })
    }
}

/// Every paired cell on one metric.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricDiff {
    /// The metric (`cosine`, `response_time_s`, `f1`, `hit@4`, ...).
    pub metric: String,
    /// Whether smaller is better (seconds).
    pub lower_is_better: bool,
    /// One row per pair, in [`DiffReport::pairs`] order.
    pub rows: Vec<DiffRow>,
}

/// One side as the report describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SideSummary {
    /// The argument as given.
    pub arg: String,
    /// The database.
    pub path: PathBuf,
    /// The selected run.
    pub run: Option<i64>,
    /// Cells with answers.
    pub cells: usize,
    /// Answers selected.
    pub answers: usize,
}

/// The whole comparison of A with B.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiffReport {
    /// Side A (the baseline).
    pub a: SideSummary,
    /// Side B (the candidate).
    pub b: SideSummary,
    /// Confidence level of the intervals (0.95).
    pub level: f64,
    /// Significance level of the verdicts ([`DIFF_ALPHA`]).
    pub alpha: f64,
    /// Paired cells, in A's cell order.
    pub pairs: Vec<CellPair>,
    /// Cells without a partner.
    pub unpaired: Vec<Unpaired>,
    /// One entry per metric both sides have (in report order: cosine, named metrics,
    /// response_time_s).
    pub metrics: Vec<MetricDiff>,
}

impl DiffReport {
    /// Names of the compared metrics.
    pub fn metric_names(&self) -> Vec<String> {
        self.metrics.iter().map(|m| m.metric.clone()).collect()
    }
}

/// Cells in first-appearance order of `answers`: (axes, answers keyed by (question id, repeat)).
type CellAnswers<'a> = Vec<(&'a CellAxes, BTreeMap<(String, u32), &'a AnswerRecord>)>;

fn group_cells(answers: &[AnswerRecord]) -> CellAnswers<'_> {
    let mut out: CellAnswers<'_> = Vec::new();
    let mut pos: HashMap<&str, usize> = HashMap::new();
    for a in answers {
        let i = *pos.entry(a.cell.cell_id.as_str()).or_insert_with(|| {
            out.push((&a.cell, BTreeMap::new()));
            out.len() - 1
        });
        out[i].1.insert((a.question_id.clone(), a.repeat), a);
    }
    out
}

/// The axes a pair by axes must share: model name and retrieval settings (names stripped, as in
/// the cell id).
fn axes_key(c: &CellAxes) -> String {
    format!(
        "{}\u{1f}{}",
        c.model,
        serde_json::to_string(&c.retrieval.without_names()).unwrap_or_default()
    )
}

/// Pairs the cells of A with those of B: first by equal cell id ([`MatchedBy::Identity`]), then
/// the remaining cells by equal axes (model name and retrieval settings) when exactly one cell
/// of each side has them ([`MatchedBy::Axes`], with the differences of `a_specs` / `b_specs`
/// when both specs are known). Cells left over are [`Unpaired`] with the reason. Pairs follow
/// A's order.
pub fn pair_cells(
    a: &[&CellAxes],
    b: &[&CellAxes],
    a_specs: &BTreeMap<String, Cell>,
    b_specs: &BTreeMap<String, Cell>,
) -> (Vec<(usize, usize, MatchedBy)>, Vec<Unpaired>) {
    let b_by_id: HashMap<&str, usize> = b
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cell_id.as_str(), i))
        .collect();
    let mut b_used = vec![false; b.len()];
    let mut a_match: Vec<Option<(usize, MatchedBy)>> = vec![None; a.len()];
    for (i, c) in a.iter().enumerate() {
        if let Some(&j) = b_by_id.get(c.cell_id.as_str()) {
            a_match[i] = Some((j, MatchedBy::Identity));
            b_used[j] = true;
        }
    }
    let mut a_left: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in a.iter().enumerate() {
        if a_match[i].is_none() {
            a_left.entry(axes_key(c)).or_default().push(i);
        }
    }
    let mut b_left: HashMap<String, Vec<usize>> = HashMap::new();
    for (j, c) in b.iter().enumerate() {
        if !b_used[j] {
            b_left.entry(axes_key(c)).or_default().push(j);
        }
    }
    let mut unpaired = Vec::new();
    let mut ambiguous: HashMap<usize, String> = HashMap::new();
    for (key, is) in &a_left {
        match b_left.get(key).map(Vec::as_slice) {
            Some([j]) if is.len() == 1 => {
                let changes = match (a_specs.get(&a[is[0]].cell_id), b_specs.get(&b[*j].cell_id)) {
                    (Some(x), Some(y)) => cell_changes(x, y),
                    _ => Vec::new(),
                };
                a_match[is[0]] = Some((*j, MatchedBy::Axes { changes }));
                b_used[*j] = true;
            }
            Some(js) => {
                let why = format!(
                    "{} cells of A and {} of B share these axes: cannot tell which pairs with which",
                    is.len(),
                    js.len()
                );
                for &i in is {
                    ambiguous.insert(i, why.clone());
                }
                for &j in js {
                    b_used[j] = true;
                    unpaired.push(Unpaired {
                        side: 'B',
                        label: b[j].label(),
                        cell_id: b[j].cell_id.clone(),
                        reason: why.clone(),
                    });
                }
            }
            None => {}
        }
    }
    let mut pairs = Vec::new();
    let mut a_unpaired = Vec::new();
    for (i, m) in a_match.into_iter().enumerate() {
        match m {
            Some((j, by)) => pairs.push((i, j, by)),
            None => a_unpaired.push(Unpaired {
                side: 'A',
                label: a[i].label(),
                cell_id: a[i].cell_id.clone(),
                reason: ambiguous.remove(&i).unwrap_or_else(|| {
                    no_partner(b.iter().any(|c| axes_key(c) == axes_key(a[i])), 'B')
                }),
            }),
        }
    }
    let mut b_unpaired: Vec<Unpaired> = b
        .iter()
        .enumerate()
        .filter(|(j, _)| !b_used[*j])
        .map(|(_, c)| Unpaired {
            side: 'B',
            label: c.label(),
            cell_id: c.cell_id.clone(),
            reason: no_partner(a.iter().any(|x| axes_key(x) == axes_key(c)), 'A'),
        })
        .collect();
    unpaired.sort_by(|x, y| x.label.cmp(&y.label));
    a_unpaired.extend(unpaired);
    a_unpaired.append(&mut b_unpaired);
    (pairs, a_unpaired)
}

/// Why a cell has no partner in side `other`: none there has its id or axes, or the one with
/// its axes (`axes_taken`) is paired by id with another cell.
fn no_partner(axes_taken: bool, other: char) -> String {
    if axes_taken {
        format!("the cells of {other} with its axes are paired by id with other cells")
    } else {
        format!("no cell of {other} has its id or its axes")
    }
}

/// What differs between two cells as they ran: `field: A → B` for every differing leaf of their
/// JSON specs (the id left out), long values shortened; at most 6 entries, then `+N more`.
pub fn cell_changes(a: &Cell, b: &Cell) -> Vec<String> {
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&p, v, out);
                }
            }
            serde_json::Value::Null => {}
            v => {
                out.insert(prefix.to_string(), short(v));
            }
        }
    }
    fn short(v: &serde_json::Value) -> String {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        if s.chars().count() > 24 {
            format!("{}…", s.chars().take(12).collect::<String>())
        } else {
            s
        }
    }
    let flat = |c: &Cell| {
        let mut out = BTreeMap::new();
        let mut v = serde_json::to_value(c).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("id");
        }
        leaves("", &v, &mut out);
        out
    };
    let (fa, fb) = (flat(a), flat(b));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    let none = "none".to_string();
    let changes: Vec<String> = keys
        .into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            format!(
                "{k}: {} → {}",
                fa.get(k).unwrap_or(&none),
                fb.get(k).unwrap_or(&none)
            )
        })
        .collect();
    const MAX: usize = 6;
    if changes.len() > MAX {
        let more = changes.len() - MAX;
        let mut out: Vec<String> = changes.into_iter().take(MAX).collect();
        out.push(format!("+{more} more"));
        out
    } else {
        changes
    }
}

/// Metrics both `a` and `b` can be compared on: [`available_rank_metrics`] of each, intersected,
/// in A's order.
pub fn shared_metrics(a: &[AnswerRecord], b: &[AnswerRecord]) -> Vec<String> {
    let mb = available_rank_metrics(b);
    available_rank_metrics(a)
        .into_iter()
        .filter(|m| mb.contains(m))
        .collect()
}

/// Compares the answers of A with those of B.
///
/// Cells are paired by [`pair_cells`]. Within a pair, answers pair on (question id, repeat) when
/// both are `ok` and ask the same question text. Per metric of [`shared_metrics`] and pair: the
/// n pairs with a finite value on both sides, the means, and the paired t-test of B − A at
/// `level` ([`paired_t_test`]`(b, a, level)`); the p-values of one metric are Holm-adjusted over
/// its tested pairs ([`holm_adjust`]); the verdict is [`Verdict::Regression`] /
/// [`Verdict::Improvement`] when the adjusted p is below `alpha` and the difference points the
/// metric's worse / better way ([`lower_is_better`]), [`Verdict::NoSignificantChange`]
/// otherwise, [`Verdict::NotComparable`] with n < 2. Pass the answers through
/// [`latency_view`] first so timings are latencies. `a_specs` / `b_specs` (cell id → cell as it
/// ran) only describe what changed between cells paired by axes; they may be empty.
pub fn diff_answers(
    a: &[AnswerRecord],
    b: &[AnswerRecord],
    a_specs: &BTreeMap<String, Cell>,
    b_specs: &BTreeMap<String, Cell>,
    level: f64,
    alpha: f64,
) -> (Vec<CellPair>, Vec<Unpaired>, Vec<MetricDiff>) {
    let ga = group_cells(a);
    let gb = group_cells(b);
    let axes_a: Vec<&CellAxes> = ga.iter().map(|(c, _)| *c).collect();
    let axes_b: Vec<&CellAxes> = gb.iter().map(|(c, _)| *c).collect();
    let (matched, unpaired) = pair_cells(&axes_a, &axes_b, a_specs, b_specs);
    // shared answer keys of each pair, in (question id, repeat) order
    let mut pairs = Vec::new();
    let mut shared: Vec<Vec<(&AnswerRecord, &AnswerRecord)>> = Vec::new();
    for (i, j, by) in matched {
        let (ca, ra) = &ga[i];
        let (_, rb) = &gb[j];
        let mut both = Vec::new();
        let mut text_changed = 0;
        for (key, x) in ra {
            let Some(y) = rb.get(key) else { continue };
            if x.status != crate::cell::AnswerStatus::Ok
                || y.status != crate::cell::AnswerStatus::Ok
            {
                continue;
            }
            if x.question != y.question {
                text_changed += 1;
                continue;
            }
            both.push((*x, *y));
        }
        pairs.push(CellPair {
            label: ca.label(),
            a_id: ca.cell_id.clone(),
            b_id: gb[j].0.cell_id.clone(),
            matched_by: by,
            shared: both.len(),
            text_changed,
        });
        shared.push(both);
    }
    // two pairs may share a label (cells of the same axes over other contents): tell them apart
    let pair_axes: Vec<&CellAxes> = pairs
        .iter()
        .map(|p| {
            ga.iter()
                .find(|(c, _)| c.cell_id == p.a_id)
                .map(|(c, _)| *c)
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    for (p, label) in pairs
        .iter_mut()
        .zip(crate::cell::distinct_labels(pair_axes))
    {
        p.label = label;
    }
    let metrics = shared_metrics(a, b)
        .into_iter()
        .map(|metric| {
            let lower = lower_is_better(&metric);
            let mut rows: Vec<DiffRow> = shared
                .iter()
                .enumerate()
                .map(|(p, both)| {
                    // one pair per question: the means over its repeats (answers to one
                    // question are not independent samples)
                    let mut per_question: BTreeMap<&str, (f64, f64, usize)> = BTreeMap::new();
                    for (x, y) in both {
                        if let (Some(a), Some(b)) =
                            (metric_value(x, &metric), metric_value(y, &metric))
                        {
                            let e = per_question.entry(x.question_id.as_str()).or_default();
                            (e.0, e.1, e.2) = (e.0 + a, e.1 + b, e.2 + 1);
                        }
                    }
                    let (va, vb): (Vec<f64>, Vec<f64>) = per_question
                        .values()
                        .map(|(a, b, k)| (a / *k as f64, b / *k as f64))
                        .unzip();
                    let n = va.len();
                    let mean = |v: &[f64]| (n > 0).then(|| numpy_sum(v) / n as f64);
                    let test = paired_t_test(&vb, &va, level).ok();
                    DiffRow {
                        pair: p,
                        n,
                        mean_a: mean(&va),
                        mean_b: mean(&vb),
                        test,
                        p_holm: None,
                        verdict: Verdict::NotComparable,
                    }
                })
                .collect();
            let tested: Vec<usize> = (0..rows.len())
                .filter(|&i| rows[i].test.is_some())
                .collect();
            let ps: Vec<f64> = tested
                .iter()
                .filter_map(|&i| rows[i].test.map(|t| t.p_value))
                .collect();
            for (&i, adj) in tested.iter().zip(holm_adjust(&ps)) {
                let row = &mut rows[i];
                row.p_holm = Some(adj);
                let worse = row.worsening(lower).unwrap_or(0.0);
                row.verdict = if adj >= alpha || worse == 0.0 {
                    Verdict::NoSignificantChange
                } else if worse > 0.0 {
                    Verdict::Regression
                } else {
                    Verdict::Improvement
                };
            }
            MetricDiff {
                metric,
                lower_is_better: lower,
                rows,
            }
        })
        .collect();
    (pairs, unpaired, metrics)
}

/// Compares two loaded sides ([`diff_answers`] at [`CI_LEVEL`] and [`DIFF_ALPHA`]).
pub fn diff_sides(a: &Side, b: &Side) -> DiffReport {
    let (pairs, unpaired, metrics) = diff_answers(
        &a.answers, &b.answers, &a.specs, &b.specs, CI_LEVEL, DIFF_ALPHA,
    );
    let summary = |s: &Side| SideSummary {
        arg: s.arg.clone(),
        path: s.path.clone(),
        run: s.run,
        cells: s.specs.len(),
        answers: s.answers.len(),
    };
    DiffReport {
        a: summary(a),
        b: summary(b),
        level: CI_LEVEL,
        alpha: DIFF_ALPHA,
        pairs,
        unpaired,
        metrics,
    }
}

/// One `--fail-on-regression METRIC[:THRESHOLD]`: fail when a paired cell got significantly
/// worse on `metric` (a [`Verdict::Regression`]) by more than `threshold` metric units (any
/// amount without one).
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The metric.
    pub metric: String,
    /// The largest tolerated worsening of the mean, in the metric's units (≥ 0).
    pub threshold: Option<f64>,
}

impl FromStr for Gate {
    type Err = DiffError;

    /// `METRIC` or `METRIC:THRESHOLD` (split at the last `:`; THRESHOLD a finite number ≥ 0).
    /// Errors: [`DiffError::BadGate`].
    fn from_str(spec: &str) -> Result<Gate, DiffError> {
        let bad = |reason: &str| DiffError::BadGate {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (metric, threshold) = match spec.rsplit_once(':') {
            Some((m, t)) => {
                let t: f64 = t
                    .trim()
                    .parse()
                    .map_err(|_| bad("the threshold is not a number"))?;
                if !t.is_finite() || t < 0.0 {
                    return Err(bad("the threshold must be a finite number ≥ 0"));
                }
                (m.trim(), Some(t))
            }
            None => (spec.trim(), None),
        };
        if metric.is_empty() {
            return Err(bad("the metric name is empty"));
        }
        Ok(Gate {
            metric: metric.to_string(),
            threshold,
        })
    }
}

/// Checks that every gate names a metric of `available`.
/// Errors: [`DiffError::UnknownMetric`] for the first that does not.
pub fn check_gates(gates: &[Gate], available: &[String]) -> Result<(), DiffError> {
    match gates.iter().find(|g| !available.contains(&g.metric)) {
        Some(g) => Err(DiffError::UnknownMetric {
            metric: g.metric.clone(),
            available: available.to_vec(),
        }),
        None => Ok(()),
    }
}

/// A paired cell that failed a gate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateFailure {
    /// The gate's metric.
    pub metric: String,
    /// The cell's label.
    pub label: String,
    /// How much worse B is (metric units, positive).
    pub worsening: f64,
    /// The gate's threshold.
    pub threshold: Option<f64>,
    /// The Holm-adjusted p-value.
    pub p_holm: f64,
}

impl std::fmt::Display for GateFailure {
    /// `cosine: <label> worse by 0.311 (p Holm <0.001 > threshold 0.05)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = metric_decimals(&self.metric) + 1;
        write!(
            f,
            "{}: {} worse by {:.d$} (Holm-adjusted p {}",
            self.metric,
            self.label,
            self.worsening,
            fmt_p(self.p_holm)
        )?;
        match self.threshold {
            Some(t) => write!(f, ", threshold {t})"),
            None => write!(f, ")"),
        }
    }
}

/// The paired cells that fail `gates`: a [`Verdict::Regression`] on the gate's metric whose
/// worsening ([`DiffRow::worsening`]) exceeds the threshold (strictly), in gate then pair order.
pub fn gate_failures(report: &DiffReport, gates: &[Gate]) -> Vec<GateFailure> {
    let mut out = Vec::new();
    for g in gates {
        let Some(m) = report.metrics.iter().find(|m| m.metric == g.metric) else {
            continue;
        };
        for row in &m.rows {
            let (Some(w), Some(p)) = (row.worsening(m.lower_is_better), row.p_holm) else {
                continue;
            };
            if row.verdict == Verdict::Regression && g.threshold.is_none_or(|t| w > t) {
                out.push(GateFailure {
                    metric: g.metric.clone(),
                    label: report.pairs[row.pair].label.clone(),
                    worsening: w,
                    threshold: g.threshold,
                    p_holm: p,
                });
            }
        }
    }
    out
}

fn side_line(s: &SideSummary) -> String {
    let run = s
        .run
        .map_or_else(|| "all runs".to_string(), |r| format!("run {r}"));
    format!(
        "{} ({}: {}, {} cells, {} answers)",
        s.arg,
        s.path.display(),
        run,
        s.cells,
        s.answers
    )
}

fn method_line(r: &DiffReport) -> String {
    format!(
        "B − A per cell over the questions both answered ok with the same text (repeats averaged per question); \
         {:.0}% CI of the paired t-test; p Holm-adjusted over the cells of each metric; \
         significant when adjusted p < {}; timings only of answers decoded alone.",
        r.level * 100.0,
        r.alpha
    )
}

fn direction(lower: bool) -> &'static str {
    if lower {
        "lower is better"
    } else {
        "higher is better"
    }
}

/// Formatted cells of one row: n, mean A, mean B, B − A, CI, p, p Holm, verdict.
fn row_cells(row: &DiffRow, metric: &str) -> [String; 8] {
    let d = metric_decimals(metric);
    let opt = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.d$}"));
    let (diff, ci, p) = match row.test {
        Some(t) => (
            format!("{:+.d$}", t.mean_diff),
            format!("[{:+.d$}, {:+.d$}]", t.ci_low, t.ci_high),
            fmt_p(t.p_value),
        ),
        None => ("–".into(), "–".into(), "–".into()),
    };
    [
        row.n.to_string(),
        opt(row.mean_a),
        opt(row.mean_b),
        diff,
        ci,
        p,
        row.p_holm.map_or_else(|| "–".to_string(), fmt_p),
        row.verdict.text().to_string(),
    ]
}

/// The report as terminal text: the two sides, how each pair was matched, the unpaired cells,
/// then per metric a header (direction, method) and an aligned table (cell, n, mean A, mean B,
/// B − A, 95% CI, p, p Holm, verdict) and a count of regressions and improvements. Seconds print
/// with 2 decimals, other metrics with 3. Plain text, ends with a newline.
pub fn diff_text(r: &DiffReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "A: {}", side_line(&r.a));
    let _ = writeln!(s, "B: {}", side_line(&r.b));
    let _ = writeln!(s, "{}", method_line(r));
    let _ = writeln!(s, "\nPaired cells ({}):", r.pairs.len());
    let w = r
        .pairs
        .iter()
        .map(|p| p.label.chars().count())
        .max()
        .unwrap_or(0);
    for p in &r.pairs {
        let _ = write!(
            s,
            "  {:<w$}  [{} shared; {}",
            p.label,
            p.shared,
            p.matched_by.describe()
        );
        if p.text_changed > 0 {
            let _ = write!(s, "; {} left out: question text changed", p.text_changed);
        }
        let _ = writeln!(s, "]");
    }
    for u in &r.unpaired {
        let _ = writeln!(
            s,
            "  only in {}: {} (cell {}): {}",
            u.side, u.label, u.cell_id, u.reason
        );
    }
    if r.pairs.is_empty() {
        let _ = writeln!(
            s,
            "\nNo cell of A pairs with a cell of B: nothing to compare."
        );
        return s;
    }
    let head = [
        "cell", "n", "mean A", "mean B", "B − A", "95% CI", "p", "p Holm", "verdict",
    ];
    for m in &r.metrics {
        let _ = writeln!(s, "\n{} ({})", m.metric, direction(m.lower_is_better));
        let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
        for row in &m.rows {
            let mut cells = vec![r.pairs[row.pair].label.clone()];
            cells.extend(row_cells(row, &m.metric));
            rows.push(cells);
        }
        let widths: Vec<usize> = (0..head.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let mut line = String::from("  ");
            for (c, cell) in row.iter().enumerate() {
                let w = widths[c];
                if c == 0 || c == head.len() - 1 {
                    let _ = write!(line, "{cell:<w$}  ");
                } else {
                    let _ = write!(line, "{cell:>w$}  ");
                }
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        let count = |v: Verdict| m.rows.iter().filter(|r| r.verdict == v).count();
        let _ = writeln!(
            s,
            "  {} regressions, {} improvements, {} without significant change, {} not comparable",
            count(Verdict::Regression),
            count(Verdict::Improvement),
            count(Verdict::NoSignificantChange),
            count(Verdict::NotComparable)
        );
    }
    s
}

/// The report as an HTML `<section id="diff">` (no styles; see [`diff_html_page`] for the
/// classes): the sides, the pairs and how they matched, the unpaired cells, one table per metric
/// with the verdict as a badge, and the method. All text is escaped.
pub fn diff_html_section(r: &DiffReport) -> String {
    let mut s = String::new();
    s.push_str(r#"<section id="diff"><h2>Differences B − A</h2><dl class="meta">"#);
    for (k, side) in [("A (baseline)", &r.a), ("B (candidate)", &r.b)] {
        let _ = write!(
            s,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            esc(k),
            esc(&side_line(side))
        );
    }
    let _ = write!(
        s,
        r#"</dl><p class="note">{}</p><h3>Paired cells</h3><table><thead><tr><th>cell</th><th>id A</th><th>id B</th><th class="num">shared</th><th>matched by</th></tr></thead><tbody>"#,
        esc(&method_line(r))
    );
    for p in &r.pairs {
        let mut how = p.matched_by.describe();
        if p.text_changed > 0 {
            how.push_str(&format!(
                "; {} left out: question text changed",
                p.text_changed
            ));
        }
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td class="num">{}</td><td>{}</td></tr>"#,
            esc(&p.label),
            esc(&p.a_id),
            esc(&p.b_id),
            p.shared,
            esc(&how)
        );
    }
    s.push_str("</tbody></table>");
    if !r.unpaired.is_empty() {
        s.push_str(r#"<ul class="note">"#);
        for u in &r.unpaired {
            let _ = write!(
                s,
                "<li>only in {}: {} (cell <code>{}</code>): {}</li>",
                u.side,
                esc(&u.label),
                esc(&u.cell_id),
                esc(&u.reason)
            );
        }
        s.push_str("</ul>");
    }
    for m in &r.metrics {
        let _ = write!(
            s,
            r#"<h3>{} <span class="note">({})</span></h3><div class="scroll"><table class="diff"><thead><tr><th>cell</th><th class="num">n</th><th class="num">mean A</th><th class="num">mean B</th><th class="num">B − A</th><th class="num">{:.0}% CI</th><th class="num">p</th><th class="num">p Holm</th><th>verdict</th></tr></thead><tbody>"#,
            esc(&m.metric),
            direction(m.lower_is_better),
            r.level * 100.0
        );
        for row in &m.rows {
            let c = row_cells(row, &m.metric);
            let _ = write!(
                s,
                r#"<tr class="{}"><td>{}</td>"#,
                row.verdict.css(),
                esc(&r.pairs[row.pair].label)
            );
            for v in &c[..7] {
                let _ = write!(s, r#"<td class="num">{}</td>"#, esc(v));
            }
            let _ = write!(
                s,
                r#"<td><span class="badge {}">{}</span></td></tr>"#,
                row.verdict.css(),
                esc(&c[7])
            );
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("</section>");
    s
}

const CSS: &str = r#"
:root{--fg:#1d1d1f;--muted:#6b6b70;--line:#e3e3e8;--soft:#f6f6f8}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 12px}
h2{font-size:19px;margin:28px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:22px 0 6px}
.meta{display:flex;flex-wrap:wrap;gap:8px 28px;margin:0}
.meta dt{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.meta dd{margin:0;font-weight:600}
.note{color:var(--muted);font-weight:400}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px;margin:4px 0 8px}
th,td{padding:5px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}
table.diff td{white-space:nowrap}
tr.worse td{background:#fff3ec}
tr.better td{background:#eef8f1}
.badge{display:inline-block;padding:0 8px;border-radius:9px;font-size:11.5px;font-weight:600;white-space:nowrap}
.badge.worse{background:#fbe3d4;color:#a34500}
.badge.better{background:#d5f0de;color:#0b6b35}
.badge.same{background:#d8eaf7;color:#004b75}
.badge.na{background:#eee;color:#666}
code{font-size:12px}
"#;

/// The report as one self-contained HTML page (inline CSS, no scripts, no network): a title
/// naming A and B and [`diff_html_section`].
pub fn diff_html_page(r: &DiffReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>orchestrate diff: {} vs {}</title>\
         <style>{CSS}</style></head><body><main><h1>orchestrate diff</h1>{}</main></body></html>\n",
        esc(&r.a.arg),
        esc(&r.b.arg),
        diff_html_section(r)
    )
}

/// Writes [`diff_html_page`] of `r` to `path` (creating its directory).
/// Errors: [`DiffError::Write`].
pub fn write_html(r: &DiffReport, path: &Path) -> Result<(), DiffError> {
    let err = |source| DiffError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, diff_html_page(r)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::aggregate::tests::answer;

    /// Answers of one cell: `(question, cosine, time)`.
    fn cell(id: &str, model: &str, rows: &[(&str, f64, f64)]) -> Vec<AnswerRecord> {
        rows.iter()
            .map(|(q, c, t)| {
                let mut a = answer(model, 500, "dense", q, *c, *t);
                a.cell.cell_id = id.to_string();
                a
            })
            .collect()
    }

    fn diff(a: &[AnswerRecord], b: &[AnswerRecord]) -> DiffReport {
        let (pairs, unpaired, metrics) = diff_answers(
            a,
            b,
            &BTreeMap::new(),
            &BTreeMap::new(),
            CI_LEVEL,
            DIFF_ALPHA,
        );
        let side = |n: &str| SideSummary {
            arg: n.into(),
            path: n.into(),
            run: None,
            cells: 0,
            answers: 0,
        };
        DiffReport {
            a: side("a"),
            b: side("b"),
            level: CI_LEVEL,
            alpha: DIFF_ALPHA,
            pairs,
            unpaired,
            metrics,
        }
    }

    fn metric<'a>(r: &'a DiffReport, name: &str) -> &'a MetricDiff {
        r.metrics.iter().find(|m| m.metric == name).unwrap()
    }

    #[test]
    fn pairs_by_id_then_by_axes_and_reports_leftovers() {
        let mut a = cell("id1", "m", &[("q1", 0.5, 1.0), ("q2", 0.6, 1.0)]);
        a.extend(cell("old", "m2", &[("q1", 0.5, 1.0), ("q2", 0.6, 1.0)]));
        a.extend(cell("gone", "m3", &[("q1", 0.5, 1.0)]));
        let mut b = cell("id1", "m", &[("q1", 0.5, 1.0), ("q2", 0.6, 1.0)]);
        b.extend(cell("new", "m2", &[("q1", 0.4, 1.0), ("q2", 0.5, 1.0)]));
        b.extend(cell("extra", "m4", &[("q1", 0.4, 1.0)]));
        let r = diff(&a, &b);
        let got: Vec<(&str, &str, &MatchedBy)> = r
            .pairs
            .iter()
            .map(|p| (p.a_id.as_str(), p.b_id.as_str(), &p.matched_by))
            .collect();
        assert_eq!(
            got,
            vec![
                ("id1", "id1", &MatchedBy::Identity),
                ("old", "new", &MatchedBy::Axes { changes: vec![] }),
            ]
        );
        let left: Vec<(char, &str)> = r
            .unpaired
            .iter()
            .map(|u| (u.side, u.cell_id.as_str()))
            .collect();
        assert_eq!(left, vec![('A', "gone"), ('B', "extra")]);
    }

    #[test]
    fn ambiguous_axes_are_not_paired() {
        let mut a = cell("a1", "m", &[("q1", 0.5, 1.0)]);
        a.extend(cell("a2", "m", &[("q1", 0.5, 1.0)]));
        let b = cell("b1", "m", &[("q1", 0.5, 1.0)]);
        let r = diff(&a, &b);
        assert!(r.pairs.is_empty());
        assert_eq!(r.unpaired.len(), 3);
        assert!(r.unpaired[0].reason.contains("2 cells of A and 1 of B"));
    }

    #[test]
    fn changes_name_the_differing_settings() {
        let exp = crate::worker::tests::cell(true, crate::retrieve::RetrieverKind::Dense);
        let mut other = exp.clone();
        other.id = "x".into();
        if let Some(m) = other.model.as_mut() {
            m.params.max_tokens = 2;
        }
        assert_eq!(
            cell_changes(&exp, &other),
            vec![format!(
                "model.params.max_tokens: {} → 2",
                exp.model.as_ref().unwrap().params.max_tokens
            )]
        );
    }

    #[test]
    fn exact_difference_interval_and_regression_on_cosine() {
        // B − A per question: −0.1, −0.2, −0.3 → mean −0.2, sd 0.1, se 0.1/√3,
        // t = −2√3 = −3.4641, df 2, p = 0.07418 (scipy.stats.ttest_rel).
        let a = cell(
            "c",
            "m",
            &[("q1", 0.9, 1.0), ("q2", 0.8, 1.0), ("q3", 0.7, 1.0)],
        );
        let b = cell(
            "c",
            "m",
            &[("q1", 0.8, 1.0), ("q2", 0.6, 1.0), ("q3", 0.4, 1.0)],
        );
        let r = diff(&a, &b);
        let row = &metric(&r, "cosine").rows[0];
        let t = row.test.unwrap();
        assert_eq!(row.n, 3);
        assert!((row.mean_a.unwrap() - 0.8).abs() < 1e-12);
        assert!((row.mean_b.unwrap() - 0.6).abs() < 1e-12);
        assert!((t.mean_diff + 0.2).abs() < 1e-12);
        assert!((t.statistic + 2.0 * 3f64.sqrt()).abs() < 1e-9);
        assert!((t.p_value - 0.074180).abs() < 1e-5, "{}", t.p_value);
        // CI: mean ± t(0.975, 2) · se = −0.2 ± 4.302653 · 0.057735
        assert!((t.ci_low - (-0.2 - 4.302_652_73 * 0.1 / 3f64.sqrt())).abs() < 1e-7);
        assert!((t.ci_high - (-0.2 + 4.302_652_73 * 0.1 / 3f64.sqrt())).abs() < 1e-7);
        assert_eq!(row.verdict, Verdict::NoSignificantChange, "p 0.074 ≥ 0.05");
        // a constant worsening is significant (p = 0); values exact in binary
        let a = cell(
            "c",
            "m",
            &[("q1", 0.875, 1.0), ("q2", 0.75, 1.0), ("q3", 0.625, 1.0)],
        );
        let b = cell(
            "c",
            "m",
            &[("q1", 0.75, 1.0), ("q2", 0.625, 1.0), ("q3", 0.5, 1.0)],
        );
        let r = diff(&a, &b);
        let row = &metric(&r, "cosine").rows[0];
        assert_eq!(row.test.unwrap().p_value, 0.0);
        assert_eq!(row.verdict, Verdict::Regression);
        assert_eq!(row.worsening(false), Some(0.125));
    }

    #[test]
    fn lower_is_better_for_response_time() {
        let a = cell(
            "c",
            "m",
            &[("q1", 0.5, 1.0), ("q2", 0.5, 2.0), ("q3", 0.5, 3.0)],
        );
        // slower by exactly 0.5 s everywhere: a regression on time, none on cosine
        let b = cell(
            "c",
            "m",
            &[("q1", 0.5, 1.5), ("q2", 0.5, 2.5), ("q3", 0.5, 3.5)],
        );
        let r = diff(&a, &b);
        let t = &metric(&r, "response_time_s").rows[0];
        assert!(metric(&r, "response_time_s").lower_is_better);
        assert_eq!(t.verdict, Verdict::Regression);
        assert!((t.worsening(true).unwrap() - 0.5).abs() < 1e-12);
        let c = &metric(&r, "cosine").rows[0];
        assert_eq!(c.verdict, Verdict::NoSignificantChange);
        assert_eq!(c.test.unwrap().p_value, 1.0);
        // faster: an improvement
        let r = diff(&b, &a);
        assert_eq!(
            metric(&r, "response_time_s").rows[0].verdict,
            Verdict::Improvement
        );
    }

    #[test]
    fn holm_adjusts_over_the_cells_of_a_metric() {
        // two cells, each with p = 0.074180 unadjusted: Holm gives 2 × 0.074180 to both
        let qa = [("q1", 0.9, 1.0), ("q2", 0.8, 1.0), ("q3", 0.7, 1.0)];
        let qb = [("q1", 0.8, 1.0), ("q2", 0.6, 1.0), ("q3", 0.4, 1.0)];
        let mut a = cell("c1", "m1", &qa);
        a.extend(cell("c2", "m2", &qa));
        let mut b = cell("c1", "m1", &qb);
        b.extend(cell("c2", "m2", &qb));
        let r = diff(&a, &b);
        for row in &metric(&r, "cosine").rows {
            let p = row.test.unwrap().p_value;
            assert!((row.p_holm.unwrap() - 2.0 * p).abs() < 1e-12);
        }
    }

    #[test]
    fn only_shared_ok_answers_with_the_same_question_pair() {
        let a = cell(
            "c",
            "m",
            &[("q1", 0.9, 1.0), ("q2", 0.8, 1.0), ("q3", 0.7, 1.0)],
        );
        let mut b = cell(
            "c",
            "m",
            &[("q1", 0.8, 1.0), ("q2", 0.6, 1.0), ("q4", 0.4, 1.0)],
        );
        b[1].question = "edited?".into();
        let r = diff(&a, &b);
        assert_eq!(r.pairs[0].shared, 1);
        assert_eq!(r.pairs[0].text_changed, 1);
        let row = &metric(&r, "cosine").rows[0];
        assert_eq!((row.n, row.verdict), (1, Verdict::NotComparable));
        assert!(row.test.is_none() && row.p_holm.is_none());
        let mut b = cell(
            "c",
            "m",
            &[("q1", 0.8, 1.0), ("q2", 0.6, 1.0), ("q3", 0.4, 1.0)],
        );
        b[0].status = crate::cell::AnswerStatus::Failed;
        assert_eq!(diff(&a, &b).pairs[0].shared, 2);
    }

    #[test]
    fn gate_parses_and_fails_only_beyond_its_threshold() {
        assert_eq!(
            "cosine".parse::<Gate>().unwrap(),
            Gate {
                metric: "cosine".into(),
                threshold: None
            }
        );
        assert_eq!(
            "hit@4:0.05".parse::<Gate>().unwrap(),
            Gate {
                metric: "hit@4".into(),
                threshold: Some(0.05)
            }
        );
        assert!(matches!(
            "cosine:x".parse::<Gate>(),
            Err(DiffError::BadGate { .. })
        ));
        assert!("cosine:-1".parse::<Gate>().is_err());
        assert!(":0.1".parse::<Gate>().is_err());

        let a = cell(
            "c",
            "m",
            &[("q1", 0.875, 1.0), ("q2", 0.75, 1.0), ("q3", 0.625, 1.0)],
        );
        let b = cell(
            "c",
            "m",
            &[("q1", 0.75, 1.0), ("q2", 0.625, 1.0), ("q3", 0.5, 1.0)],
        );
        let r = diff(&a, &b); // worse by 0.125 everywhere: p = 0
        let gate = |s: &str| gate_failures(&r, &[s.parse().unwrap()]);
        let f = gate("cosine");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].worsening, 0.125);
        assert_eq!(f[0].p_holm, 0.0);
        assert_eq!(gate("cosine:0.05").len(), 1);
        assert!(gate("cosine:0.2").is_empty(), "within the threshold");
        assert!(gate("response_time_s").is_empty(), "no change in time");
        assert!(gate_failures(&diff(&a, &a), &["cosine".parse().unwrap()]).is_empty());
        let err = check_gates(&["nope".parse().unwrap()], &r.metric_names()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--fail-on-regression nope: no such metric in both A and B; available: cosine, response_time_s"
        );
    }

    #[test]
    fn renders_text_and_escaped_html() {
        let a = cell(
            "c",
            "m<x>",
            &[("q1", 0.875, 1.0), ("q2", 0.75, 1.0), ("q3", 0.625, 1.0)],
        );
        let b = cell(
            "c",
            "m<x>",
            &[("q1", 0.75, 1.0), ("q2", 0.625, 1.0), ("q3", 0.5, 1.0)],
        );
        let r = diff(&a, &b);
        let text = diff_text(&r);
        assert!(text.contains("cosine (higher is better)"), "{text}");
        assert!(text.contains("-0.125"), "{text}");
        assert!(text.contains("✗ regression"), "{text}");
        assert!(text.contains("1 regressions, 0 improvements"), "{text}");
        let html = diff_html_page(&r);
        assert!(html.contains("m&lt;x&gt;") && !html.contains("m<x>"));
        assert!(html.contains(r#"<span class="badge worse">✗ regression</span>"#));
        assert!(!html.contains("http"), "no network");
    }
}
