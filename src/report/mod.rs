//! Reports over stored answers: per-cell aggregation (polars), and one self-contained HTML file
//! (inline CSS, inline SVG charts and treemaps, a few lines of optional JS for table sorting).
//!
//! Submodules: [`aggregate`] (polars group-bys and confidence intervals), [`charts`] (point and
//! error-bar charts by chunk size), [`treemap`] (squarified treemap layout and SVG),
//! [`html`] (page assembly and escaping), [`palette`] (colour-blind-safe colours, axis ticks).

pub mod aggregate;
pub mod charts;
pub mod html;
pub mod palette;
pub mod treemap;

pub use aggregate::{summarize, CellSummary, ModelSummary, QuestionStats, SeriesPoint};
pub use html::render_html;

/// Confidence level of every interval in reports.
pub const CI_LEVEL: f64 = 0.95;

/// Errors of report building.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A polars operation (frame construction, group-by, column access) failed.
    #[error("aggregating answers with polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    /// Formatting into the output string failed (does not happen for `String` targets).
    #[error("formatting report: {0}")]
    Fmt(#[from] std::fmt::Error),
}

/// Context shown in the report header; not derived from the answers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportMeta {
    /// Experiment name from its TOML file.
    pub experiment_name: String,
    /// Path of the experiment TOML file, as given.
    pub experiment_file: String,
    /// When the run started, already formatted (e.g. RFC 3339), if known.
    pub run_started: Option<String>,
    /// Short host description, e.g. `"AMD EPYC, 2 cores, 24 GiB"`.
    pub host: Option<String>,
    /// Index build times: (label, seconds), in display order.
    pub index_builds: Vec<(String, f64)>,
}
