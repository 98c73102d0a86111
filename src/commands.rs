//! One library function per subcommand: the CLI ([`crate`]'s binary) only parses arguments,
//! calls one of these and prints what it returns.
//!
//! The reading commands (`report`, `export`, `compare`, `diff`, `status` without the inputs) read the
//! results database alone through [`results`]: the experiment file is read only for its `name`
//! (which names `store/<name>.sqlite`), so they work with the corpus, QA file and models moved
//! away or on another machine, and they show every cell the database holds ([`Scope::All`]) or
//! only the cells and questions of the current grid ([`Scope::Grid`], which needs the inputs to
//! compute the cells' content ids and read the QA file).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cell::{AnswerStatus, Cell, CellStatus, Retrieval};
use crate::experiment::{Experiment, ExperimentError};
use crate::report::{ChunkSet, ChunkText, ReportMeta};
use crate::store::{AnswerRecord, Store, StoredCell};

/// Errors of the subcommands; each wraps the failing layer's error, which names its file.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The experiment file is invalid or its inputs are missing.
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    /// The QA file is invalid.
    #[error(transparent)]
    Qa(#[from] crate::qa::QaError),
    /// The results database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Building the report failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Writing an export failed.
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    /// An inspection command failed.
    #[error(transparent)]
    Inspect(#[from] crate::inspect::InspectError),
    /// The sweep could not run.
    #[error(transparent)]
    Sweep(#[from] crate::sweep::SweepError),
    /// A Slurm sweep failed.
    #[error(transparent)]
    Slurm(#[from] crate::slurm::SlurmError),
    /// `diff` could not compare its arguments.
    #[error(transparent)]
    Diff(#[from] crate::diff::DiffError),
    /// The experiment has no results database yet.
    #[error(
        "no results for experiment `{name}` yet ({} does not exist); run `{}` first",
        path.display(),
        crate::sweep::run_command(file, path.parent().unwrap_or(Path::new("store")))
    )]
    NoResults {
        /// The experiment name.
        name: String,
        /// The database path looked for.
        path: PathBuf,
        /// The experiment file.
        file: PathBuf,
    },
    /// A command-line value is not usable; the message names the flag and what would fix it.
    #[error("{0}")]
    Usage(String),
    /// Another `orchestrate judge` (or a `run` judging with `judge = true`) is judging these
    /// results.
    #[error(
        "another `orchestrate judge` of these results is running (it holds {}); wait for it or \
         stop it: every judgment it stored is kept and the next pass continues from there",
        .0.display()
    )]
    JudgeBusy(PathBuf),
    /// The judge model could not be loaded.
    #[error("judge model {}: {source}", path.display())]
    JudgeModel {
        /// The GGUF.
        path: PathBuf,
        /// Why.
        source: crate::generate::GenerateError,
    },
    /// The embedding model (RAGAS answer relevancy) could not be loaded.
    #[error("embedding model {}: {source}", path.display())]
    Embedder {
        /// Its directory.
        path: PathBuf,
        /// Why.
        source: crate::embed::EmbedError,
    },
    /// Writing a file or the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Which stored cells the reading commands show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every cell the results database holds (also cells edited out of the grid, and cells made
    /// with earlier contents of the corpus, models or embedding model).
    #[default]
    All,
    /// Only the cells of the experiment's current grid and the answers to its current questions
    /// (same id and text; `limit_questions` applies): needs the experiment's inputs, as cell ids
    /// hash their contents.
    Grid,
}

/// What the reading commands read: one experiment's stored cells and answers.
pub struct Results {
    /// The experiment name.
    pub name: String,
    /// The experiment file as given.
    pub file: PathBuf,
    /// The results database.
    pub db: Store,
    /// The selected cells, in the database's order.
    pub cells: Vec<StoredCell>,
    /// Their answers.
    pub answers: Vec<AnswerRecord>,
}

/// Opens the results of the experiment file `file` under `store_dir` from its database alone;
/// `file` may also be the results database itself (`store/<name>.sqlite`, recognised by its
/// SQLite header), read from where it is, `store_dir` unused.
///
/// Cells: those with a model, or with `retrieval_only` those of `run --retrieval-only`; without
/// it, a database whose generating cells have no answers at all falls back to its
/// retrieval-only cells (a user who ran `run --retrieval-only` expects `report` to show them).
/// `scope` selects every stored cell or the current grid's.
///
/// Errors: [`CommandError::Experiment`] for an unreadable file or (with [`Scope::Grid`]) missing
/// inputs; [`CommandError::NoResults`] when the database does not exist; store errors.
pub fn results(
    file: &Path,
    store_dir: &Path,
    retrieval_only: bool,
    scope: Scope,
) -> Result<Results, CommandError> {
    if let Some(name) = database_name(file) {
        if scope == Scope::Grid {
            return Err(CommandError::Usage(format!(
                "--grid needs the experiment file (TOML) to compute the grid's cells; {} is a \
                 results database: leave out --grid to read every cell it holds",
                file.display()
            )));
        }
        // the database's own directory is its store (cached index paths are relative to it)
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        return results_named(&name, file, dir, retrieval_only, scope);
    }
    let name = crate::experiment::read_name(file)?;
    results_named(&name, file, store_dir, retrieval_only, scope)
}

/// The experiment name of `file` when it is a results database (`<store>/<name>.sqlite`, told
/// by its SQLite header): the file stem. `None` for anything else, including unreadable files
/// (the experiment reader then names the problem).
fn database_name(file: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(file).ok()?;
    f.read_exact(&mut head).ok()?;
    if &head != crate::store::SQLITE_MAGIC {
        return None;
    }
    Some(file.file_stem()?.to_string_lossy().into_owned())
}

/// [`results`] for the experiment named `name` (read from `file` already).
pub fn results_named(
    name: &str,
    file: &Path,
    store_dir: &Path,
    retrieval_only: bool,
    scope: Scope,
) -> Result<Results, CommandError> {
    let name = name.to_string();
    let path = Store::path_for(store_dir, &name);
    let Some(db) = Store::open_existing(&path)? else {
        return Err(CommandError::NoResults {
            name,
            path,
            file: file.to_path_buf(),
        });
    };
    let mut all = db.stored_cells()?;
    for c in &mut all {
        c.index_dir = c.index_dir.take().map(|d| resolve_index_dir(&d, store_dir));
    }
    // the current grid: its cells, and its questions as they read now
    let mut current: Option<BTreeSet<(String, String)>> = None;
    if scope == Scope::Grid {
        let exp = Experiment::load_with(file, retrieval_only)?;
        all.retain(|c| exp.cell(&c.cell.id).is_some());
        let qs = exp.questions().map_err(|e| ExperimentError::Parse {
            path: exp.qa.clone(),
            message: e.to_string(),
        })?;
        current = Some(qs.into_iter().map(|q| (q.id, q.question)).collect());
    }
    let (generating, mut ro): (Vec<StoredCell>, Vec<StoredCell>) =
        all.into_iter().partition(|c| c.cell.model.is_some());
    let (cells, answers) = if retrieval_only {
        let answers = db.answers(&ro)?;
        (ro, answers)
    } else {
        let answers = db.answers(&generating)?;
        let ro_answers = if answers.is_empty() && !ro.is_empty() {
            db.answers(&ro)?
        } else {
            Vec::new()
        };
        if ro_answers.is_empty() {
            (generating, answers)
        } else {
            if !generating.is_empty() {
                // a generating experiment whose sweep has no answers yet (a retrieval-only one
                // has nothing else to show, and needs no word)
                tracing::info!(
                    "no generated answers stored for `{name}`; using its retrieval-only results"
                );
            }
            // generating cells that failed stay visible next to the retrieval-only results
            // (they have no answers, so `ro_answers` stays complete)
            ro.extend(
                generating
                    .into_iter()
                    .filter(|c| c.status == CellStatus::Failed),
            );
            (ro, ro_answers)
        }
    };
    let mut answers = answers;
    if let Some(current) = &current {
        // answers to questions removed from the QA file, or asked with an earlier text
        answers.retain(|a| current.contains(&(a.question_id.clone(), a.question.clone())));
    }
    Ok(Results {
        name,
        file: file.to_path_buf(),
        db,
        cells,
        answers,
    })
}

/// The index directory a cell recorded, as this process can open it: as recorded when it exists
/// (it is relative to the directory `run` was started in, or absolute), else the directory of
/// the same name under `store_dir/indexes` (a report made from another directory, with another
/// `--store`, or of a results store copied to another machine).
fn resolve_index_dir(recorded: &str, store_dir: &Path) -> String {
    let path = Path::new(recorded);
    if path.is_dir() {
        return recorded.to_string();
    }
    match path.file_name() {
        Some(name) if store_dir.join("indexes").join(name).is_dir() => {
            store_dir.join("indexes").join(name).display().to_string()
        }
        _ => recorded.to_string(),
    }
}

impl Results {
    /// The failed cells with why: (label, first line of the stored error), labels told apart as in
    /// [`crate::cell::distinct_labels`].
    pub fn failed_cells(&self) -> Vec<(String, String)> {
        self.cells_with(CellStatus::Failed)
    }

    /// How many of the answers are `ok` (the ones a judge judges).
    fn ok_answer_count(&self) -> usize {
        self.answers
            .iter()
            .filter(|a| a.status == AnswerStatus::Ok)
            .count()
    }

    /// For `metric` a judge metric of which some `ok` answers are not judged yet, the line
    /// saying so ([`judging_incomplete_line`]); else empty. Errors: store errors.
    pub fn judging_incomplete(&self, metric: &str) -> Result<String, CommandError> {
        use crate::score::metric::Metric;
        if !matches!(Metric::parse(metric), Metric::Judge(..)) {
            return Ok(String::new());
        }
        Ok(judging_incomplete_line(
            self.judge_notes()?.unjudged_answers,
            self.ok_answer_count(),
            &crate::report::html::metric_title(metric),
        ))
    }

    /// For results of which some `ok` answers are not judged yet on every judge metric, the
    /// line saying that exported judge metrics cover the judged answers only; else empty.
    /// Errors: store errors.
    pub fn export_judging_incomplete(&self) -> Result<String, CommandError> {
        let unjudged = self.judge_notes()?.unjudged_answers;
        if unjudged == 0 {
            return Ok(String::new());
        }
        let ok = self.ok_answer_count();
        Ok(format!(
            "judging incomplete: {unjudged} of {ok} answers are not yet judged on every judge \
             metric; exported judge metrics cover the judged answers only (`judge_missing` \
             says \"{NOT_JUDGED_YET}\"; `orchestrate judge` continues)\n"
        ))
    }

    /// The judge's part of the report: judges, judgments without a value per cell and metric
    /// (undefined, failed, or not made yet: an ok answer without a judgment of a metric that
    /// some answer was judged on), agreement with human labels (see
    /// [`crate::report::JudgeNotes`]).
    ///
    /// Errors: store errors.
    pub fn judge_notes(&self) -> Result<crate::report::JudgeNotes, CommandError> {
        use crate::report::JudgeGap;
        use crate::store::JudgmentStatus;
        let judgments = self.db.judgments()?;
        let axes: Vec<_> = self.cells.iter().map(|c| c.cell.axes()).collect();
        let labels: BTreeMap<&str, String> = axes
            .iter()
            .map(|a| a.cell_id.as_str())
            .zip(crate::cell::distinct_labels(&axes))
            .collect();
        let mut judges = BTreeSet::new();
        let mut gaps: BTreeMap<(String, String), JudgeGap> = BTreeMap::new();
        fn gap<'g>(
            gaps: &'g mut BTreeMap<(String, String), JudgeGap>,
            cell: &str,
            metric: &str,
        ) -> &'g mut JudgeGap {
            gaps.entry((cell.to_string(), metric.to_string()))
                .or_insert_with(|| JudgeGap {
                    cell: cell.to_string(),
                    metric: metric.to_string(),
                    ..JudgeGap::default()
                })
        }
        for j in &judgments {
            let Some(label) = labels.get(j.cell_id.as_str()) else {
                continue;
            };
            judges.insert(j.judge.clone());
            match j.status {
                JudgmentStatus::Ok => {}
                JudgmentStatus::Undefined => gap(&mut gaps, label, &j.metric).undefined += 1,
                JudgmentStatus::Error => {
                    let e = gap(&mut gaps, label, &j.metric);
                    e.failed += 1;
                    if e.first_error.is_none() {
                        e.first_error = j.detail.clone();
                    }
                }
            }
        }
        let mut unjudged_answers = 0;
        for (a, unjudged) in self.unjudged(&judgments) {
            let Some(label) = labels.get(a.cell.cell_id.as_str()) else {
                continue;
            };
            for m in &unjudged {
                gap(&mut gaps, label, m).unjudged += 1;
            }
            unjudged_answers += usize::from(!unjudged.is_empty());
        }
        Ok(crate::report::JudgeNotes {
            judges: judges.into_iter().collect(),
            missing: gaps.into_values().collect(),
            unjudged_answers,
            agreements: self.db.judge_agreements()?,
        })
    }

    /// Each `ok` answer with the judge metrics it is not judged on yet: the metrics some answer
    /// was judged on (in `judgments`, the stored ones) that apply to this answer by the judge's
    /// own rule ([`crate::judge::run::applies`]) and have no judgment for it (empty when none).
    fn unjudged<'a>(
        &'a self,
        judgments: &[crate::store::JudgmentRecord],
    ) -> Vec<(&'a AnswerRecord, Vec<String>)> {
        use crate::score::metric::Metric;
        let cells: BTreeSet<&str> = self.cells.iter().map(|c| c.cell.id.as_str()).collect();
        let mut judged: BTreeSet<(&str, u32, &str, &str)> = BTreeSet::new();
        let mut metrics: BTreeSet<&str> = BTreeSet::new();
        for j in judgments
            .iter()
            .filter(|j| cells.contains(j.cell_id.as_str()))
        {
            metrics.insert(j.metric.as_str());
            judged.insert((&j.cell_id, j.repeat, &j.question_id, &j.metric));
        }
        self.answers
            .iter()
            .filter(|a| a.status == AnswerStatus::Ok)
            .map(|a| {
                let unjudged = metrics
                    .iter()
                    .filter(|m| match Metric::parse(m) {
                        Metric::Judge(j, _) => crate::judge::run::applies(j, a),
                        _ => false,
                    })
                    .filter(|m| !judged.contains(&(&a.cell.cell_id, a.repeat, &a.question_id, m)))
                    .map(|m| m.to_string())
                    .collect();
                (a, unjudged)
            })
            .collect()
    }

    /// The answers as [`export`] writes them: each `ok` answer's
    /// [`AnswerRecord::judge_missing`] also names the judge metrics not judged yet (`not
    /// judged yet`), so an export row tells a pending judgment from one that has no value.
    ///
    /// Errors: store errors.
    pub fn answers_for_export(&self) -> Result<Vec<AnswerRecord>, CommandError> {
        let judgments = self.db.judgments()?;
        let pending: BTreeMap<(&str, u32, &str), Vec<String>> = self
            .unjudged(&judgments)
            .into_iter()
            .filter(|(_, u)| !u.is_empty())
            .map(|(a, u)| {
                (
                    (a.cell.cell_id.as_str(), a.repeat, a.question_id.as_str()),
                    u,
                )
            })
            .collect();
        Ok(self
            .answers
            .iter()
            .map(|a| {
                let mut a = a.clone();
                let key = (a.cell.cell_id.as_str(), a.repeat, a.question_id.as_str());
                if let Some(metrics) = pending.get(&key) {
                    for m in metrics {
                        a.judge_missing
                            .entry(m.clone())
                            .or_insert_with(|| NOT_JUDGED_YET.to_string());
                    }
                }
                a
            })
            .collect())
    }

    /// The cells a race eliminated with the evidence (label, first line of the stored reason).
    pub fn eliminated_cells(&self) -> Vec<(String, String)> {
        self.cells_with(CellStatus::Eliminated)
    }

    /// The directory holding the results database (the `--store` it was read from).
    pub fn store_dir(&self) -> &Path {
        self.db
            .path()
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// The cells of the latest run's grid it has not finished, with their state: `running now`
    /// while a sweep of these results runs here, else `not finished` (a sweep was killed or
    /// stopped, or runs on a Slurm cluster) or `pending` (not started). Their means cover the
    /// answers stored so far.
    pub fn unfinished_cells(&self) -> Vec<(String, String)> {
        let running = crate::sweep::is_running(self.store_dir(), &self.name);
        // only the latest run's grid: cells of an earlier grid are never finished by a rerun
        let latest = self.db.unfinished_cell_ids().unwrap_or_else(|e| {
            tracing::warn!("cannot tell which cells are unfinished: {e}");
            Default::default()
        });
        let axes: Vec<_> = self.cells.iter().map(|c| c.cell.axes()).collect();
        let labels = crate::cell::distinct_labels(&axes);
        self.cells
            .iter()
            .zip(labels)
            .filter(|(c, _)| latest.contains(&c.cell.id))
            .filter_map(|(c, label)| {
                let state = match c.status {
                    CellStatus::Running | CellStatus::Interrupted if running => "running now",
                    // no local sweep holds the lock: cut short, or running on a Slurm cluster
                    CellStatus::Running | CellStatus::Interrupted => "not finished",
                    CellStatus::Pending => "pending",
                    _ => return None,
                };
                Some((label, state.to_string()))
            })
            .collect()
    }

    /// For results with unfinished cells ([`Results::unfinished_cells`]), the terminal line
    /// saying so; else empty.
    pub fn unfinished_line(&self) -> String {
        let cells = self.unfinished_cells();
        if cells.is_empty() {
            return String::new();
        }
        let mut states: Vec<&str> = cells.iter().map(|(_, s)| s.as_str()).collect();
        states.sort_unstable();
        states.dedup();
        format!(
            "sweep incomplete: {} cell(s) not finished ({}); their means cover the answers \
             stored so far (`{}` completes them)\n",
            cells.len(),
            states.join(", "),
            crate::sweep::run_command(&self.file, self.store_dir())
        )
    }

    fn cells_with(&self, status: CellStatus) -> Vec<(String, String)> {
        let axes: Vec<_> = self.cells.iter().map(|c| c.cell.axes()).collect();
        let labels = crate::cell::distinct_labels(&axes);
        self.cells
            .iter()
            .zip(labels)
            .filter(|(c, _)| c.status == status)
            .map(|(c, label)| {
                let why = c
                    .error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("no error recorded");
                (label, why.to_string())
            })
            .collect()
    }

    /// The texts of the chunks the answers were given, from the index each cell recorded
    /// (`cells.index_dir`). An index that is gone is left out with a warning; the report then
    /// shows ids and pages only for its answers.
    pub fn chunk_sets(&self) -> Vec<ChunkSet> {
        let mut used: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for a in &self.answers {
            if let Some(dir) = a.index_dir.as_deref() {
                used.entry(dir)
                    .or_default()
                    .extend(a.chunk_ids.iter().copied());
            }
        }
        let mut sets = Vec::new();
        for (dir, ids) in used {
            let Some(cell) = self
                .cells
                .iter()
                .find(|c| c.index_dir.as_deref() == Some(dir))
            else {
                continue;
            };
            match crate::index::cache::read_index_chunks(Path::new(dir)) {
                Ok(chunks) => sets.push(ChunkSet {
                    index_dir: dir.to_string(),
                    chunk_size: cell.cell.retrieval.chunk_size as u32,
                    chunk_overlap: cell.cell.retrieval.chunk_overlap as u32,
                    chunks: ids
                        .into_iter()
                        .filter_map(|id| {
                            chunks.get(id as usize).map(|c| {
                                (
                                    id,
                                    ChunkText {
                                        page: c.page,
                                        text: c.text.clone(),
                                    },
                                )
                            })
                        })
                        .collect(),
                }),
                Err(e) => tracing::warn!(
                    "the index {dir} (chunk {}/{}) cannot be read ({e}); the report shows chunk \
                     ids only for its answers",
                    cell.cell.retrieval.chunk_size,
                    cell.cell.retrieval.chunk_overlap
                ),
            }
        }
        sets
    }
}

/// `orchestrate report`: renders the report of `results` into `out` (written atomically: a
/// temporary file renamed into place). `rank_metric` picks the ranking's metric. The report is
/// titled with the experiment name of the database's latest run, so a copied or renamed
/// database still says which experiment it holds.
///
/// Errors: [`CommandError::Usage`] for a metric no answer has; report and I/O errors.
pub fn report(
    results: &Results,
    out: &Path,
    rank_metric: Option<String>,
) -> Result<PathBuf, CommandError> {
    if let Some(m) = &rank_metric {
        let available = crate::report::available_rank_metrics(&results.answers);
        if !available.contains(m) {
            return Err(CommandError::Usage(format!(
                "--metric {m}: no stored answer of `{}` has it; available: {}",
                results.name,
                available.join(", ")
            )));
        }
    }
    // the name the experiment ran under, also when its database was copied or renamed
    let shown = results
        .db
        .runs()?
        .pop()
        .map(|r| r.experiment)
        .unwrap_or_else(|| results.name.clone());
    let meta = ReportMeta {
        experiment_name: shown.clone(),
        experiment_file: results.file.display().to_string(),
        run_started: results.db.last_run_started()?,
        host: results.db.last_run_host()?,
        index_builds: Store::index_builds(&results.cells),
        chunk_sets: results.chunk_sets(),
        rank_metric,
        failed_cells: results.failed_cells(),
        eliminated_cells: results.eliminated_cells(),
        unfinished_cells: results.unfinished_cells(),
        judge: results.judge_notes()?,
    };
    let answers = told_apart(&results.answers);
    let html = crate::report::render_html(&shown, &meta, &answers)?;
    refuse_overwriting_inputs(results, out)?;
    write_atomically(out, html.as_bytes())?;
    Ok(out.to_path_buf())
}

/// `answers` with the model name of every cell that shares its model and retrieval settings with
/// another cell (the same grid point over other contents: before and after an edit of the
/// corpus, a GGUF or the embedding model, or a database upgraded from 0.1.0) suffixed with
/// ` [cell <id>]`, so the report's tables, charts and totals, which group by model and axes,
/// never pool or double-count them.
fn told_apart(answers: &[AnswerRecord]) -> Vec<AnswerRecord> {
    let key = |a: &AnswerRecord| {
        format!(
            "{}\u{1f}{}",
            a.cell.model,
            serde_json::to_string(&a.cell.retrieval).unwrap_or_default()
        )
    };
    let mut cells_of: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for a in answers {
        cells_of.entry(key(a)).or_default().insert(&a.cell.cell_id);
    }
    answers
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if cells_of.get(&key(&a)).is_some_and(|ids| ids.len() > 1) {
                a.cell.model = format!("{} [cell {}]", a.cell.model, a.cell.cell_id);
            }
            a
        })
        .collect()
}

/// Writes `bytes` to `out` through a temporary file in the same directory, renamed into place, so
/// a reader never sees half a file. The temporary file has a name of its own
/// (`.<file name>.tmp-<pid>-<nanos>`), so no other file is overwritten on the way, and it is
/// removed when writing fails (a full disk leaves nothing behind). Errors: [`CommandError::Io`]
/// naming the file.
pub(crate) fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    let io = |what: String| move |source| CommandError::Io { what, source };
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    }
    let name = out
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let written = std::fs::write(&tmp, bytes)
        .map_err(io(format!("cannot write {}", out.display())))
        .and_then(|()| {
            std::fs::rename(&tmp, out).map_err(io(format!("cannot write {}", out.display())))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Refuses an output path that is one of the inputs `results` was read from (the experiment
/// file or the results database): `-o store/x.sqlite` would replace the results with a CSV.
///
/// Errors: [`CommandError::Usage`] naming the file.
fn refuse_overwriting_inputs(results: &Results, out: &Path) -> Result<(), CommandError> {
    let same = |input: &Path| match (out.canonicalize(), input.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    for (input, what) in [
        (results.file.as_path(), "the experiment file"),
        (results.db.path(), "the results database"),
    ] {
        if same(input) {
            return Err(CommandError::Usage(format!(
                "{} is {what} these results come from; write to another file",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Output format of `orchestrate export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// JSON lines.
    Jsonl,
    /// Apache Parquet: typed columns, metrics as Float64 columns ([`crate::export::answers_frame`],
    /// [`crate::export::cells_frame`]). Binary: the CLI writes it to `--output FILE` or to a
    /// redirected stdout, never to a terminal.
    Parquet,
}

/// What one export row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportRows {
    /// One row per stored answer.
    Answer,
    /// One row per cell: axes, status and error, then each metric's mean, CI bounds and n.
    Cell,
}

/// `orchestrate export`: writes `results` to `out` as `format`, one row per answer or per cell
/// (failed cells without answers included). Per-cell intervals: each metric's
/// [`crate::score::metric::Metric::interval_method`] (Wilson for proportions, the t interval
/// clipped to the metric's range otherwise), named in the `<metric>_ci_method` column.
/// Errors: [`CommandError::Export`].
pub fn export(
    results: &Results,
    format: ExportFormat,
    rows: ExportRows,
    out: impl Write,
) -> Result<(), CommandError> {
    use crate::export::{
        answers_frame, cells_frame, write_cells_csv, write_csv, write_jsonl, write_parquet,
    };
    let answers = || results.answers_for_export();
    match (rows, format) {
        (ExportRows::Answer, ExportFormat::Csv) => write_csv(&answers()?, out)?,
        (ExportRows::Answer, ExportFormat::Jsonl) => write_jsonl(&answers()?, out)?,
        (ExportRows::Answer, ExportFormat::Parquet) => {
            write_parquet(&mut answers_frame(&answers()?)?, out)?
        }
        (ExportRows::Cell, format) => {
            // per-cell latency comes from answers decoded alone, as in the report
            let timed = crate::report::latency_view(&results.answers);
            let cells = crate::report::cell_summaries(&results.cells, &timed)?;
            match format {
                ExportFormat::Csv => write_cells_csv(&cells, out)?,
                ExportFormat::Jsonl => write_jsonl(&cells, out)?,
                ExportFormat::Parquet => write_parquet(&mut cells_frame(&cells)?, out)?,
            }
        }
    }
    Ok(())
}

/// `orchestrate export --output FILE`: [`export`] into the file `path` (parent directories
/// created), written through a temporary file and renamed into place, so a reader never sees a
/// half-written file. Errors: those of [`export`]; [`CommandError::Io`] naming the file;
/// [`CommandError::Usage`] when `path` is the experiment file or the results database.
pub fn export_to_file(
    results: &Results,
    format: ExportFormat,
    rows: ExportRows,
    path: &Path,
) -> Result<(), CommandError> {
    refuse_overwriting_inputs(results, path)?;
    let mut bytes = Vec::new();
    export(results, format, rows, &mut bytes)?;
    write_atomically(path, &bytes)
}

/// `orchestrate compare`: the ranking of the cells of `results` on `metric` (default: cosine if
/// answers were generated, else nDCG@k) as text, followed by the failed cells and their causes.
///
/// Errors: [`CommandError::Usage`] when no answer has metrics yet; report errors.
pub fn compare(results: &Results, metric: Option<String>) -> Result<String, CommandError> {
    let mut text = String::new();
    match metric.or_else(|| crate::report::default_rank_metric(&results.answers)) {
        Some(metric) => {
            let ranked = crate::report::rank_cells(
                &crate::report::latency_view(&results.answers),
                &metric,
                crate::report::CI_LEVEL,
                crate::report::RANK_RESAMPLES,
                crate::report::RANK_SEED,
            )?;
            text.push_str(&crate::report::ranking_text(&ranked, &metric));
            text.push_str(&crate::report::unranked_note(
                &results.answers,
                &ranked,
                &metric,
            ));
            text.push_str(&results.judging_incomplete(&metric)?);
            text.push_str(&results.unfinished_line());
        }
        None if results.failed_cells().is_empty() => {
            return Err(CommandError::Usage(format!(
                "no answers with metrics stored for `{}` yet; run `{}` first",
                results.name,
                crate::sweep::run_command(&results.file, results.store_dir())
            )))
        }
        None => text.push_str("no answers with metrics stored yet\n"),
    }
    for (label, why) in results.failed_cells() {
        text.push_str(&format!("failed: {label}: {why}\n"));
    }
    Ok(text)
}

/// What `orchestrate diff` produced.
#[derive(Debug, Clone)]
pub struct DiffOutcome {
    /// The comparison.
    pub report: crate::diff::DiffReport,
    /// The terminal text ([`crate::diff::diff_text`]).
    pub text: String,
    /// The paired cells that failed a `--fail-on-regression` gate (empty: the gate passed).
    pub failures: Vec<crate::diff::GateFailure>,
}

/// `orchestrate diff A B`: reads both sides ([`crate::diff::load_side`]; `run_a` / `run_b`
/// override an `@RUN` suffix), checks that every gate names a metric both sides have before
/// comparing, compares them ([`crate::diff::diff_sides`]), writes the HTML page to `html` when
/// given, and evaluates the gates ([`crate::diff::gate_failures`]).
///
/// Errors: [`CommandError::Diff`] for an argument that names no database, run or answers, a
/// gate on an unknown metric (the message lists the available ones), or an unwritable HTML file.
pub fn diff(
    a: &str,
    b: &str,
    store_dir: &Path,
    runs: (
        Option<crate::diff::RunSelector>,
        Option<crate::diff::RunSelector>,
    ),
    gates: &[crate::diff::Gate],
    html: Option<&Path>,
) -> Result<DiffOutcome, CommandError> {
    let side_a = crate::diff::load_side('A', a, store_dir, runs.0)?;
    let side_b = crate::diff::load_side('B', b, store_dir, runs.1)?;
    crate::diff::check_gates(
        gates,
        &crate::diff::shared_metrics(&side_a.answers, &side_b.answers),
    )?;
    let report = crate::diff::diff_sides(&side_a, &side_b);
    if let Some(path) = html {
        crate::diff::write_html(&report, path)?;
    }
    let failures = crate::diff::gate_failures(&report, gates);
    Ok(DiffOutcome {
        text: crate::diff::diff_text(&report),
        report,
        failures,
    })
}

/// The `[race]` settings of the experiment file `file`; when the file cannot be read as an
/// experiment (its inputs are gone: results are read from the database alone), the defaults for
/// the stored results (cosine when answers were generated, else the default ranking metric),
/// with a warning.
pub fn race_settings(file: &Path, results: &Results) -> crate::race::RaceSettings {
    match Experiment::load(file) {
        Ok(exp) => exp.race,
        Err(e) => {
            let metric = crate::report::default_rank_metric(&results.answers)
                .unwrap_or_else(|| "cosine".to_string());
            tracing::warn!("using the default race settings on {metric}: {e}");
            crate::race::RaceSettings::new(&metric)
        }
    }
}

/// `orchestrate race-replay`: replays a race with `settings` on the stored results (every cell
/// with answers; see [`crate::race::replay`]) and describes it as text: each elimination with its
/// evidence, the answers the race would have asked, and whether the full-data best group
/// survived.
///
/// Errors: [`CommandError::Usage`] when no answer has a value of the race metric.
pub fn race_replay(
    results: &Results,
    settings: &crate::race::RaceSettings,
) -> Result<(crate::race::Replay, String), CommandError> {
    let timed = crate::report::latency_view(&results.answers);
    let mut scores: std::collections::BTreeMap<String, crate::race::Scores> = Default::default();
    for a in &timed {
        if let Some(v) = crate::report::ranking::metric_value(a, &settings.metric) {
            scores
                .entry(a.cell.cell_id.clone())
                .or_default()
                .insert((a.question_id.clone(), a.repeat), v);
        }
    }
    if scores.is_empty() {
        let available = crate::report::available_rank_metrics(&results.answers);
        return Err(CommandError::Usage(format!(
            "no stored answer of `{}` has a value of `{}`; the answers have {}",
            results.name,
            settings.metric,
            if available.is_empty() {
                "no metrics".to_string()
            } else {
                available.join(", ")
            }
        )));
    }
    let replay = crate::race::replay(&scores, settings);
    let axes: Vec<_> = results.cells.iter().map(|c| c.cell.axes()).collect();
    let labels: std::collections::HashMap<&str, String> = axes
        .iter()
        .map(|a| a.cell_id.as_str())
        .zip(crate::cell::distinct_labels(&axes))
        .collect();
    let label = |id: &str| labels.get(id).cloned().unwrap_or_else(|| id.to_string());
    let mut text = format!(
        "race on {} in {} shards (alpha {}, seed {}) over {} cells:
",
        settings.metric,
        crate::race::shard_ends(
            scores
                .values()
                .flat_map(|s| s.keys().map(|k| &k.0))
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            settings.shards
        )
        .len(),
        settings.alpha,
        settings.seed,
        scores.len()
    );
    for e in &replay.eliminations {
        text.push_str(&format!(
            "  after shard {}: {} eliminated: {}\n",
            e.look,
            label(&e.cell_id),
            e.evidence(&label(&e.leader_id))
        ));
    }
    text.push_str(&format!(
        "answers asked: {} of {} ({:.0}%); cells eliminated: {} of {}\n",
        replay.answers_used,
        replay.answers_total,
        100.0 * replay.answers_used as f64 / replay.answers_total.max(1) as f64,
        replay.eliminations.len(),
        scores.len()
    ));
    let group: Vec<String> = replay.best_group.iter().map(|id| label(id)).collect();
    text.push_str(&format!(
        "full-data best group ({} cells, none significantly worse than the best on all answers): {}\n",
        group.len(),
        group.join("; ")
    ));
    if replay.best_group_eliminated.is_empty() {
        text.push_str("the race kept every cell of the full-data best group\n");
    } else {
        let lost: Vec<String> = replay
            .best_group_eliminated
            .iter()
            .map(|id| label(id))
            .collect();
        text.push_str(&format!(
            "the race eliminated {} cells of the full-data best group: {}\n",
            lost.len(),
            lost.join("; ")
        ));
    }
    Ok((replay, text))
}

/// `orchestrate status`: the progress of the sweep of `file` as text. With the experiment's
/// inputs present it lists the grid's cells (pending ones included) and the stored cells not in
/// the grid; without them (or with an invalid experiment file) it falls back to the cells the
/// database holds, with a notice.
///
/// Errors: [`CommandError::Experiment`] when not even the experiment's name can be read; store
/// errors.
pub fn status(file: &Path, store_dir: &Path, retrieval_only: bool) -> Result<String, CommandError> {
    let name = crate::experiment::read_name(file)?;
    let db_path = Store::path_for(store_dir, &name);
    // a sweep on Slurm: merge what its tasks wrote first, so the progress below is current
    let mut lines = if db_path.exists() {
        crate::slurm::coordinator::status(&db_path, store_dir, &name, &crate::slurm::cli::Shell)?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let db = Store::open_existing(&db_path)?;
    let loaded = Experiment::load_with(file, retrieval_only).and_then(|exp| {
        let qs = exp.questions().map_err(|e| ExperimentError::Parse {
            path: exp.qa.clone(),
            message: e.to_string(),
        })?;
        Ok((exp, qs))
    });
    let running = crate::sweep::is_running(store_dir, &name);
    if db.is_some() {
        // judging is a pass of its own after the sweep: say how far it got (a convenience, as
        // the index line below: the progress shows without it)
        let judged = results(file, store_dir, retrieval_only, Scope::All).and_then(|r| {
            let ok = r.answers.iter().filter(|a| a.status == AnswerStatus::Ok);
            let running = crate::sweep::is_flocked(&judge_lock_path(r.db.path()));
            Ok(judge_line(&r.judge_notes()?, ok.count(), running))
        });
        match judged {
            Ok(line) => lines.extend(line),
            Err(e) => tracing::warn!("cannot tell how far the judge got: {e}"),
        }
    }
    match loaded {
        Ok((exp, questions)) => {
            let cells = crate::inspect::progress(Some((&exp, &questions)), db.as_ref())?;
            // the index line is a convenience: without it the progress still shows
            let indexes = crate::inspect::index_cache_state(&exp, store_dir).unwrap_or_else(|e| {
                tracing::warn!("cannot tell which indexes are built: {e}");
                Vec::new()
            });
            Ok(with_lines(
                crate::inspect::progress_text(&name, file, store_dir, &cells, &indexes, running),
                &lines,
            ))
        }
        // no results yet and the experiment cannot be read: the error, not "0 of 0 cells"
        Err(e) if db.is_none() => Err(e.into()),
        Err(e) => {
            tracing::warn!("showing the results database alone: {e}");
            let cells = crate::inspect::progress(None, db.as_ref())?;
            Ok(with_lines(
                crate::inspect::progress_text(&name, file, store_dir, &cells, &[], running),
                &lines,
            ))
        }
    }
}

/// The lock file `orchestrate judge` holds while it judges the results database `db`:
/// `<db>.judge.lock` beside it.
pub fn judge_lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".judge.lock");
    PathBuf::from(name)
}

/// The status line of the judge (`None` when nothing was judged): how many of the `ok` answers
/// are judged on every metric, whether a judge is judging right now (`running`), and the
/// judgments without a value.
fn judge_line(notes: &crate::report::JudgeNotes, ok: usize, running: bool) -> Option<String> {
    if notes.judges.is_empty() {
        return None;
    }
    let failed: usize = notes.missing.iter().map(|g| g.failed).sum();
    let undefined: usize = notes.missing.iter().map(|g| g.undefined).sum();
    let judged = ok.saturating_sub(notes.unjudged_answers);
    let rest = if running {
        " (a judge is running now)"
    } else if notes.unjudged_answers > 0 {
        " (`orchestrate judge` continues)"
    } else {
        ""
    };
    Some(format!(
        "judge: {judged} of {ok} answers judged on every metric{rest}; {failed} judgments failed, \
         {undefined} undefined"
    ))
}

/// `text` with `lines` appended, one per line.
fn with_lines(mut text: String, lines: &[String]) -> String {
    for l in lines {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(l);
        text.push('\n');
    }
    text
}

/// `orchestrate rescore`: recomputes the stored metrics of `results` against the current QA file
/// of `file` (only that is read: the corpus and models may be gone), with the chunks of the index
/// each cell recorded. Returns what was done and the QA file.
/// Errors: experiment, QA, inspection and store errors.
pub fn rescore(
    file: &Path,
    results: &Results,
) -> Result<(crate::inspect::RescoreSummary, PathBuf), CommandError> {
    let (qa, limit, format) = crate::experiment::read_qa(file)?;
    let mut questions = crate::qa::load_questions_as(&qa, format)?;
    if let Some(l) = limit {
        questions.truncate(l as usize);
    }
    let summary = crate::inspect::rescore(&results.cells, &questions, &results.db)?;
    Ok((summary, qa))
}

/// What `orchestrate run` did.
pub struct RunOutcome {
    /// The sweep's summary (failures included).
    pub summary: crate::sweep::SweepSummary,
    /// The report written after the sweep.
    pub report: PathBuf,
    /// The wall time [`crate::plan`] predicted before the sweep, seconds (`None` without a
    /// basis; a race is predicted as a full sweep).
    pub predicted_s: Option<f64>,
    /// What judging after the sweep did (`judge = true`); `None` when it did not run.
    pub judged: Option<crate::judge::run::JudgeSummary>,
    /// The Slurm coordinator returned at once (`--detach`) with arrays still running: no judge
    /// and no report yet.
    pub detached: bool,
    /// The terminal summary of the stored results ([`summary_text`]); `None` when there is
    /// nothing to rank.
    pub front: Option<String>,
}

/// `orchestrate plan`: what a run of `exp` would do and its predicted wall time and peak memory
/// (see [`crate::plan`]), from the history under `store_dir`.
///
/// Errors: QA, database and index-key errors.
pub fn plan(exp: &Experiment, store_dir: &Path) -> Result<crate::plan::Plan, CommandError> {
    let history = crate::plan::History::read(store_dir);
    crate::plan::plan(exp, store_dir, &history)
}

/// What fixes a missing judge model at `gguf`: fetching it when it is the default judge's file,
/// else correcting the path (relative to the experiment file).
fn missing_judge_hint(gguf: &Path) -> String {
    let default = Path::new(crate::judge::run::DEFAULT_JUDGE_GGUF);
    if gguf.file_name() == default.file_name() {
        "run `orchestrate models fetch qwen2.5-coder-1.5b-instruct` for the default judge, or set \
         `gguf` in the experiment's [judge] table"
            .into()
    } else {
        "check `gguf` in the experiment's [judge] table (a relative path is read from the \
         experiment file's directory), or remove it for the default judge"
            .into()
    }
}

/// `orchestrate run`: sweeps `exp` with `opts`, then writes `reports_dir/<name>.html` from the
/// database (every stored cell). The caller decides the exit status from
/// [`crate::sweep::SweepSummary::failures`].
///
/// With `judge = true` it judges the answers after the sweep, before the report. With the Slurm
/// executor ([`crate::slurm`]) the cells run as job arrays; `detach` then returns once they are
/// submitted (or attached to), without judging or reporting.
///
/// Errors: [`CommandError::Usage`] (before sweeping) when `judge = true` and the judge model is
/// missing; [`CommandError::Io`] (before sweeping) when `reports_dir` cannot be created; sweep,
/// Slurm, judge, store and report errors.
pub fn run(
    exp: &Experiment,
    opts: &crate::sweep::SweepOptions,
    reports_dir: &Path,
    detach: bool,
) -> Result<RunOutcome, CommandError> {
    if exp.judge.after_run && exp.generate && !exp.judge.gguf.is_file() {
        // checked before the sweep, not after hours of it
        return Err(CommandError::Usage(format!(
            "{}: the answers are judged after this run (`judge = true` or [judge] after_run) but \
             the judge model {} is not there: {}",
            exp.path.display(),
            exp.judge.gguf.display(),
            missing_judge_hint(&exp.judge.gguf)
        )));
    }
    // the report is written after the sweep: a reports path that cannot be a directory is
    // said now, not after hours of sweeping
    std::fs::create_dir_all(reports_dir).map_err(|source| CommandError::Io {
        what: format!(
            "cannot create the reports directory {} (--reports)",
            reports_dir.display()
        ),
        source,
    })?;
    let predicted_s = match plan(exp, &opts.store_dir) {
        Ok(p) => p.total_s,
        Err(e) => {
            tracing::debug!("no plan for the run: {e}");
            None
        }
    };
    let summary = match exp.executor {
        crate::slurm::ExecutorKind::Local => crate::sweep::run(exp, opts)?,
        crate::slurm::ExecutorKind::Slurm => {
            let copts = crate::slurm::coordinator::CoordinatorOptions { detach };
            let s = crate::slurm::coordinator::run(
                exp,
                opts,
                &exp.slurm,
                &crate::slurm::cli::Shell,
                copts,
            )?;
            if s.detached {
                return Ok(RunOutcome {
                    summary: s,
                    report: PathBuf::new(),
                    predicted_s,
                    judged: None,
                    detached: true,
                    front: None,
                });
            }
            s
        }
    };
    // the name as swept: the file may have been edited meanwhile
    let mut results = results_named(
        &exp.name,
        &exp.path,
        &opts.store_dir,
        !exp.generate,
        Scope::All,
    )?;
    let judged = if exp.judge.after_run && exp.generate {
        tracing::info!("judging the answers (`judge = true`)");
        let judged = match judge_with_bar(
            &results,
            &exp.judge,
            &exp.embedding_model,
            crate::judge::run::JudgeScope::default(),
            opts.bars.as_ref(),
        ) {
            Ok(j) => Some(j),
            // a judge started by hand is already at it: the report shows what it stored so far
            Err(CommandError::JudgeBusy(lock)) => {
                tracing::warn!(
                    "not judging: another `orchestrate judge` of these results is running \
                     (it holds {}); the report shows the judgments it stored so far",
                    lock.display()
                );
                None
            }
            Err(e) => return Err(e),
        };
        results = results_named(
            &exp.name,
            &exp.path,
            &opts.store_dir,
            !exp.generate,
            Scope::All,
        )?;
        judged
    } else {
        None
    };
    warn_of_stale_questions(exp, &results);
    let report = report(
        &results,
        &reports_dir.join(format!("{}.html", exp.name)),
        None,
    )?;
    // the summary is a convenience after a run: the report and the database hold it all
    let front = summary_text(&results, None).unwrap_or_else(|e| {
        tracing::warn!("no terminal summary: {e}");
        None
    });
    Ok(RunOutcome {
        summary,
        report,
        predicted_s,
        judged,
        detached: false,
        front,
    })
}

/// After a run: warns when the report (every stored answer) holds answers of the grid's cells to
/// questions not among the current ones (removed from the QA file, asked with an earlier text,
/// or beyond `limit_questions`), which `--grid` leaves out.
fn warn_of_stale_questions(exp: &Experiment, results: &Results) {
    let Ok(questions) = exp.questions() else {
        return;
    };
    let current: BTreeSet<(&str, &str)> = questions
        .iter()
        .map(|q| (q.id.as_str(), q.question.as_str()))
        .collect();
    let stale: BTreeSet<&str> = results
        .answers
        .iter()
        .filter(|a| exp.cell(&a.cell.cell_id).is_some())
        .filter(|a| !current.contains(&(a.question_id.as_str(), a.question.as_str())))
        .map(|a| a.question_id.as_str())
        .collect();
    if !stale.is_empty() {
        let ids: Vec<&str> = stale.into_iter().collect();
        tracing::warn!(
            "the report holds answers to {} question(s) not among the experiment's current \
             questions (removed from {}, changed, or beyond limit_questions: {}); \
             `orchestrate report {} --grid` leaves them out",
            ids.len(),
            exp.qa.display(),
            ids.join(", "),
            exp.path.display()
        );
    }
}

/// `orchestrate summary`: the terminal summary of stored results (hyperfine-like): the cells on
/// the quality / response time / peak RSS front ([`crate::report::front`]) ranked on `metric`
/// (default: the report's ranking metric), the cells tied with them, and the one-line
/// trade-off. `Ok(None)` when no answer has a value of the metric yet.
///
/// Errors: [`CommandError::Report`] for an unknown `metric` (the message lists those
/// available).
pub fn summary_text(
    results: &Results,
    metric: Option<&str>,
) -> Result<Option<String>, CommandError> {
    use crate::report::front::{build_front, front_text, trade_off_sentence};
    let timed = crate::report::latency_view(&results.answers);
    let Some(metric) = metric
        .map(str::to_string)
        .or_else(|| crate::report::default_rank_metric(&timed))
    else {
        return Ok(None);
    };
    let ranked = crate::report::rank_cells(
        &timed,
        &metric,
        crate::report::CI_LEVEL,
        crate::report::RANK_RESAMPLES,
        crate::report::RANK_SEED,
    )?;
    if ranked.is_empty() {
        return Ok(None);
    }
    let cells = crate::report::summarize(&timed)?;
    let front = build_front(&metric, &ranked, &cells, &timed);
    let title = crate::report::html::metric_title(&metric);
    let sentence = trade_off_sentence(&front, &timed, &title);
    let mut text = front_text(&front, sentence.as_deref(), &title);
    text.push_str(&crate::report::unranked_note(&timed, &ranked, &metric));
    text.push_str(&results.judging_incomplete(&metric)?);
    text.push_str(&results.unfinished_line());
    for (label, why) in results.failed_cells() {
        text.push_str(&format!("failed: {label}: {why}\n"));
    }
    Ok(Some(text))
}

/// What an exported answer's `judge_missing` says of a judge metric not judged yet.
pub const NOT_JUDGED_YET: &str = "not judged yet";

/// The terminal's counterpart of the report's "Judging incomplete" box, for a table ranked on
/// a judge metric: empty when every one of the `ok` answers is judged.
fn judging_incomplete_line(unjudged: usize, ok: usize, metric_title: &str) -> String {
    if unjudged == 0 {
        return String::new();
    }
    format!(
        "judging incomplete: {unjudged} of {ok} answers are not yet judged on every judge metric; \
         {metric_title} above covers the judged answers only (`orchestrate judge` continues)\n"
    )
}

/// `orchestrate ask`: answers `question` with model `model` (a name from the experiment; default
/// its only model) and `retrieval` as a cell would (see [`crate::inspect::ask`]).
///
/// Errors: [`CommandError::Usage`] for an unknown or ambiguous model; inspection errors.
pub fn ask(
    exp: &Experiment,
    store_dir: &Path,
    model: Option<&str>,
    retrieval: Retrieval,
    question: &str,
) -> Result<crate::inspect::Asked, CommandError> {
    let names: Vec<&str> = exp.models.iter().map(|m| m.name.as_str()).collect();
    let index = match model {
        Some(name) => names.iter().position(|n| *n == name).ok_or_else(|| {
            CommandError::Usage(format!(
                "--model {name}: the experiment's models are {}",
                names.join(", ")
            ))
        })?,
        None if names.len() == 1 => 0,
        None if names.is_empty() => {
            return Err(CommandError::Usage(format!(
                "{} has no [[model]] to ask; add one with name and gguf",
                exp.path.display()
            )))
        }
        None => {
            return Err(CommandError::Usage(format!(
                "{} has several models ({}); choose one with --model",
                exp.path.display(),
                names.join(", ")
            )))
        }
    };
    let cell: Cell = exp.cell_for(Some(index), retrieval);
    Ok(crate::inspect::ask(&cell, store_dir, question)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_on_a_partly_judged_metric_says_so() {
        assert_eq!(judging_incomplete_line(0, 780, "correctness"), "");
        let line = judging_incomplete_line(525, 780, "correctness");
        assert!(
            line.starts_with("judging incomplete: 525 of 780 answers"),
            "{line}"
        );
        assert!(line.contains("correctness above covers the judged answers only"));
    }

    #[test]
    fn the_judge_progress_line_extrapolates_the_rate_of_this_pass() {
        use crate::judge::run::JudgeSummary;
        use std::time::Duration;
        let pass = |total, already, ok| JudgeSummary {
            total,
            already,
            ok,
            ..JudgeSummary::default()
        };
        assert_eq!(
            judge_progress_line(&pass(400, 0, 120), Duration::from_secs(600)),
            "judged 120 of 400 judgments (30%) in 10 min 00 s, about 23 min 20 s left"
        );
        // A resumed pass: 1650 were stored before and skipped in no time; the 11 judged now
        // took the minute, so 2239 more take 2239 minutes / 11, not 1.4 minutes.
        assert_eq!(
            judge_progress_line(&pass(3900, 1650, 11), Duration::from_secs(60)),
            "judged 1661 of 3900 judgments (43%; 1650 stored before) in 1 min 00 s, about 3 h 23 min left"
        );
        // Nothing judged yet in this pass: no rate, no guess.
        assert_eq!(
            judge_progress_line(&pass(3900, 1650, 0), Duration::from_secs(2)),
            "judged 1650 of 3900 judgments (42%; 1650 stored before) in 2.0 s"
        );
        assert_eq!(
            judge_progress_line(&pass(400, 0, 400), Duration::from_secs(30)),
            "judged 400 of 400 judgments (100%) in 30.0 s"
        );
        assert_eq!(
            judge_progress_line(&pass(0, 0, 0), Duration::ZERO),
            "judged 0 of 0 judgments (100%) in 0.0 s"
        );
    }

    #[test]
    fn the_status_line_says_how_far_the_judge_got() {
        use crate::report::{JudgeGap, JudgeNotes};
        assert_eq!(
            judge_line(&JudgeNotes::default(), 10, false),
            None,
            "nothing judged"
        );
        let gap = |failed, undefined, unjudged| JudgeGap {
            cell: "c".into(),
            metric: "faithfulness".into(),
            undefined,
            failed,
            unjudged,
            first_error: None,
        };
        let partial = JudgeNotes {
            judges: vec!["j".into()],
            missing: vec![gap(1, 0, 3), gap(0, 2, 4)],
            unjudged_answers: 4,
            agreements: vec![],
        };
        assert_eq!(
            judge_line(&partial, 10, false).unwrap(),
            "judge: 6 of 10 answers judged on every metric (`orchestrate judge` continues); \
             1 judgments failed, 2 undefined"
        );
        assert_eq!(
            judge_line(&partial, 10, true).unwrap(),
            "judge: 6 of 10 answers judged on every metric (a judge is running now); \
             1 judgments failed, 2 undefined"
        );
        let done = JudgeNotes {
            missing: vec![],
            unjudged_answers: 0,
            ..partial
        };
        assert_eq!(
            judge_line(&done, 10, false).unwrap(),
            "judge: 10 of 10 answers judged on every metric; 0 judgments failed, 0 undefined"
        );
    }

    #[test]
    fn cells_with_the_same_axes_are_told_apart_in_the_report() {
        let a = crate::report::aggregate::tests::answer("m", 500, "dense", "q1", 0.5, 1.0);
        let mut old = a.clone();
        old.cell.cell_id = "0ld".into();
        let mut other = a.clone();
        other.cell.cell_id = "k8".into();
        other.cell.retrieval.top_k = 8;
        let shown = told_apart(&[a.clone(), old, other]);
        assert_eq!(shown[0].cell.model, format!("m [cell {}]", a.cell.cell_id));
        assert_eq!(shown[1].cell.model, "m [cell 0ld]");
        assert_eq!(
            shown[2].cell.model, "m",
            "a cell with its own axes keeps its name"
        );
        // two series, never pooled
        let points = crate::report::aggregate::series_points(&shown).unwrap();
        assert_eq!(points.len(), 3);
    }
}

/// Command-line overrides of the experiment's `[judge]` settings for `orchestrate judge`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgeOverrides {
    /// Judge model instead of `[judge] gguf`.
    pub gguf: Option<PathBuf>,
    /// Profiles instead of `[judge] profiles` (empty: keep).
    pub profiles: Vec<crate::judge::Profile>,
    /// Metrics instead of `[judge] metrics` (empty: keep).
    pub metrics: Vec<crate::judge::JudgeMetric>,
    /// Threads instead of `[judge] threads` (at least 1; not part of the judge's identity).
    pub threads: Option<i32>,
    /// Judge again the answers whose judgment failed before.
    pub retry_errors: bool,
    /// Judge only the answers to this many questions, the same in every cell
    /// ([`crate::judge::run::JudgeScope`]).
    pub questions: Option<usize>,
}

impl JudgeOverrides {
    /// Which answers the pass judges.
    pub fn scope(&self) -> crate::judge::run::JudgeScope {
        crate::judge::run::JudgeScope {
            retry_errors: self.retry_errors,
            questions: self.questions,
        }
    }
}

/// The `[judge]` settings of `file` with `overrides` applied, and the embedding model directory.
///
/// Errors: [`CommandError::Experiment`] for an unreadable file or an invalid `[judge]` table.
pub fn judge_settings(
    file: &Path,
    overrides: &JudgeOverrides,
) -> Result<(crate::judge::run::JudgeSettings, PathBuf), CommandError> {
    let (_, mut settings, embedding) = crate::experiment::read_judge(file)?;
    if let Some(g) = &overrides.gguf {
        settings.gguf = g.clone();
    }
    if !overrides.profiles.is_empty() {
        settings.profiles = overrides.profiles.clone();
    }
    if !overrides.metrics.is_empty() {
        settings.metrics = overrides.metrics.clone();
    }
    if let Some(t) = overrides.threads {
        settings.threads = t;
    }
    Ok((settings, embedding))
}

/// "judged 1661 of 3900 judgments (43%; 1650 stored before) in 10 min 00 s, about 3 h 20 min
/// left": the ETA extrapolates the rate of the judgments made in this pass, so judgments stored
/// by an earlier pass (skipped in no time) do not make it optimistic.
fn judge_progress_line(
    p: &crate::judge::run::JudgeSummary,
    elapsed: std::time::Duration,
) -> String {
    use crate::plan::format_duration;
    let (done, total) = (p.done(), p.total);
    let secs = elapsed.as_secs_f64();
    let pct = if total > 0 {
        100.0 * done as f64 / total as f64
    } else {
        100.0
    };
    let before = if p.already > 0 {
        format!("; {} stored before", p.already)
    } else {
        String::new()
    };
    let mut line = format!(
        "judged {done} of {total} judgments ({pct:.0}%{before}) in {}",
        format_duration(secs)
    );
    let now = done - p.already;
    if now > 0 && done < total {
        let left = secs * (total - done) as f64 / now as f64;
        line.push_str(&format!(", about {} left", format_duration(left)));
    }
    line
}

/// How often `judge` without a progress bar (a Slurm job, `nohup`, a pipe) logs its progress.
const JUDGE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// [`judge`] with a progress bar of judgments on `bars`, cleared at the end. Without bars (no
/// terminal) it logs a progress line at INFO instead, at most every [`JUDGE_LOG_EVERY`] and at
/// the end, so a judge running for hours in a batch job shows how far it got and its ETA.
///
/// Errors: as [`judge`].
pub fn judge_with_bar(
    results: &Results,
    settings: &crate::judge::run::JudgeSettings,
    embedding: &Path,
    scope: crate::judge::run::JudgeScope,
    bars: Option<&indicatif::MultiProgress>,
) -> Result<crate::judge::run::JudgeSummary, CommandError> {
    let bar = bars.map(|mp| {
        let b = mp.add(indicatif::ProgressBar::new(0));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "judging {bar:30} {pos}/{len} judgments, {elapsed} (eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let started = std::time::Instant::now();
    let mut logged: Option<std::time::Instant> = None;
    let summary = judge(results, settings, embedding, scope, &mut |p| {
        if let Some(b) = &bar {
            b.set_length(p.total);
            b.set_position(p.done());
        } else if p.done() == p.total || logged.is_none_or(|t| t.elapsed() >= JUDGE_LOG_EVERY) {
            logged = Some(std::time::Instant::now());
            tracing::info!("{}", judge_progress_line(p, started.elapsed()));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    summary
}

/// `orchestrate judge`: judges the stored ok answers of `results` with the judge model of
/// `settings` (greedy, grammar-constrained; see [`crate::judge`]), storing one judgment per
/// answer × metric and the values in the answers' metrics. Resumable: judgments already stored by
/// the same judge are skipped, and identical calls come from the database's cache.
/// `progress` gets the running summary after each judgment. The process's memory and CPU are
/// sampled while it judges ([`crate::judge::run::JudgeSummary::usage`]).
///
/// Errors: [`CommandError::Usage`] when the results are retrieval-only (nothing to judge), or the judge
/// model file is missing or has no chat template;
/// [`CommandError::JudgeModel`] / [`CommandError::Embedder`] when a model cannot be loaded;
/// store errors. Judge failures on single answers are stored and counted, not returned.
pub fn judge(
    results: &Results,
    settings: &crate::judge::run::JudgeSettings,
    embedding_model: &Path,
    scope: crate::judge::run::JudgeScope,
    progress: &mut dyn FnMut(&crate::judge::run::JudgeSummary),
) -> Result<crate::judge::run::JudgeSummary, CommandError> {
    use crate::judge::run::{judge_id, ChunkTexts};
    if !results.cells.is_empty() && results.cells.iter().all(|c| c.cell.model.is_none()) {
        return Err(CommandError::Usage(format!(
            "`{}` has no generated answers to judge: its cells are retrieval-only \
             (generate = false in {}); the judge metrics need a model's answers",
            results.name,
            results.file.display()
        )));
    }
    // one judge per results database: two would ask the same calls twice
    let lock = judge_lock_path(results.db.path());
    let _judging = crate::sweep::try_flock(&lock)
        .map_err(|source| CommandError::Io {
            what: format!("creating {}", lock.display()),
            source,
        })?
        .ok_or_else(|| CommandError::JudgeBusy(lock.clone()))?;
    if !settings.gguf.is_file() {
        return Err(CommandError::Usage(format!(
            "judge model {} not found: {} (or pass --gguf)",
            settings.gguf.display(),
            missing_judge_hint(&settings.gguf)
        )));
    }
    let sha =
        crate::fingerprint::sha256_file(&settings.gguf).map_err(|source| CommandError::Io {
            what: format!("reading {}", settings.gguf.display()),
            source,
        })?;
    let mut chunks = ChunkTexts::new();
    for set in results.chunk_sets() {
        for (id, c) in set.chunks {
            chunks.insert((set.index_dir.clone(), id), c.text);
        }
    }
    let id = judge_id(&sha, settings.max_tokens);
    let job = crate::judge::run::JudgeJob {
        store: &results.db,
        answers: &results.answers,
        chunks: &chunks,
        settings,
        judge: &id,
        scope,
    };
    let todo = job.pending()?;
    let params = crate::generate::GenParams {
        n_ctx: settings.n_ctx,
        max_tokens: settings.max_tokens,
        threads: settings.threads,
        prompt: crate::generate::PromptStyle::Chat,
        ..crate::generate::GenParams::default()
    };
    // Everything judged already: no model is loaded (a rerun asks nothing and costs nothing).
    let mut model: Box<dyn crate::judge::run::JudgeModel> = if todo == 0 {
        Box::new(NoJudgeModel)
    } else {
        let g = crate::generate::Generator::load(&settings.gguf, params).map_err(|source| {
            CommandError::JudgeModel {
                path: settings.gguf.clone(),
                source,
            }
        })?;
        // every call would fail the same way: say it once, before judging
        if !g.model_info().has_chat_template {
            return Err(CommandError::Usage(format!(
                "judge model {} has no chat template: the judge needs an instruct (chat) model; \
                 set `gguf` in [judge] (or --gguf) to one, e.g. the default \
                 qwen2.5-coder-1.5b-instruct",
                settings.gguf.display()
            )));
        }
        Box::new(g)
    };
    let needs_embedder = todo > 0
        && settings
            .metrics
            .contains(&crate::judge::JudgeMetric::AnswerRelevancy)
        && settings.profiles.contains(&crate::judge::Profile::Ragas);
    let embedder: Box<dyn crate::worker::TextEmbedder> = if needs_embedder {
        Box::new(
            crate::embed::Embedder::load(embedding_model).map_err(|source| {
                CommandError::Embedder {
                    path: embedding_model.to_path_buf(),
                    source,
                }
            })?,
        )
    } else {
        Box::new(NoEmbedder)
    };
    // the judge runs in this process: sample it as the sweep samples its workers
    let sampler = (todo > 0).then(|| {
        crate::sample::Sampler::start(std::process::id(), crate::sample::DEFAULT_INTERVAL)
    });
    let mut summary = job.run(model.as_mut(), embedder.as_ref(), progress)?;
    if let Some(sampler) = sampler {
        summary.usage = crate::sample::summarize(&sampler.stop());
    }
    Ok(summary)
}

/// The judge model of a pass with nothing to judge (never asked).
struct NoJudgeModel;

impl crate::judge::run::JudgeModel for NoJudgeModel {
    fn complete(
        &mut self,
        _system: &str,
        _user: &str,
        _grammar: &str,
    ) -> Result<crate::generate::Generation, crate::generate::GenerateError> {
        Err(crate::generate::GenerateError::InvalidParams(
            "no judge model loaded: nothing was left to judge".into(),
        ))
    }
    fn max_tokens(&self) -> u32 {
        0
    }
}

/// The embedder of a judge run that needs none (no RAGAS answer relevancy).
struct NoEmbedder;

impl crate::worker::TextEmbedder for NoEmbedder {
    fn embed_texts(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, crate::embed::EmbedError> {
        Err(crate::embed::EmbedError::Tokenizer(
            "no embedding model loaded (only RAGAS answer relevancy embeds)".into(),
        ))
    }
}

/// `orchestrate judge --labels FILE`: the agreement of every judge's stored correctness verdicts
/// with the human labels in `labels` (see [`crate::judge::run::agreement_with_labels`]), stored
/// in the database (`judge_agreement`, quoted by the report's Methods) and returned.
///
/// Errors: [`CommandError::Usage`] for an unreadable labels file or when no stored judgment
/// matches a label; store errors.
pub fn judge_agreement(
    results: &Results,
    labels: &Path,
) -> Result<Vec<crate::store::JudgeAgreementRecord>, CommandError> {
    let l =
        crate::judge::run::load_labels(labels).map_err(|e| CommandError::Usage(e.to_string()))?;
    let judged = results.db.judged_answers()?;
    let rows = crate::judge::run::agreement_with_labels(&judged, &l);
    if rows.is_empty() {
        return Err(CommandError::Usage(format!(
            "no stored correctness judgment of `{}` matches a label of {} (labels match by question id and exact answer text)",
            results.name,
            labels.display()
        )));
    }
    let name = labels
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| labels.display().to_string());
    let mut out = Vec::new();
    for (judge, metric, agreement) in rows {
        let r = crate::store::JudgeAgreementRecord {
            judge,
            metric,
            labels: name.clone(),
            agreement,
        };
        results.db.put_judge_agreement(&r)?;
        out.push(r);
    }
    Ok(out)
}
