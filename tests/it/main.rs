//! The integration tests: one test binary (as ripgrep's `tests/`), one module per area, shared
//! helpers in [`common`]. Run one area with `cargo test --release --test it -- sweep_e2e::`.
//!
//! - `beir`, `retrieval`, `dense_faiss`, `embed_parity`, `corpus_bacula`: parity with the
//!   reference implementations on committed fixtures (the real embedding model and corpus);
//! - `generate_models`: the real GGUF models through llama.cpp;
//! - `export`: Parquet exports read back with the CSV's rows (tiny test model, seconds);
//! - `sweep_e2e`, `cli_inspect`: the binary end to end (sweep, resume, failures, content
//!   identity, results read from the database alone, inspection commands);
//! - `diff`: `orchestrate diff` of two runs and a rerun, and its regression gate;
//! - `report_browser`: the HTML report in headless Chromium;
//! - `slurm`: sweeps on a real one-node Slurm (started by `scripts/slurm-local.sh`) with
//!   requeues, a node failure, deadline signals, a killed coordinator and a throttle.

mod batched;
mod beir;
mod cli_inspect;
mod common;
mod corpus_bacula;
mod dense_faiss;
mod diff;
mod embed_parity;
mod export;
mod fast;
mod generate_models;
mod judge;
mod report_browser;
mod retrieval;
mod sampler_parity;
mod slurm;
mod sweep_e2e;
