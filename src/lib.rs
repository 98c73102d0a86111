//! orchestrate: declarative, resumable RAG experiments with small local LLMs.
//!
//! One typed cell ([`cell::Cell`]) flows one way through the program:
//! [`experiment`] parses the TOML and expands its grid into self-contained cells (model, GGUF
//! sha256, settings, corpus and embedding-model fingerprints; ids hash contents, see
//! [`fingerprint`]) → [`sweep`] prepares each cell's index ([`index`]: [`corpus`] / [`split`] /
//! [`embed`], cached by content) and sends the cell as JSON to a [`worker`] subprocess, whose
//! [`worker::CellRunner`] retrieves ([`retrieve`]), generates ([`generate`]) and scores
//! ([`score`]) each answer while [`sample`] measures it → [`store`] writes the cell as it ran and
//! every answer into SQLite → [`report`] / [`export`] / [`commands::compare`] read the database
//! alone ([`commands::status`] adds the current grid when the inputs are there). [`commands`] holds one function per subcommand
//! (the binary only parses and prints); [`inspect`] shows chunks, retrieved lists and progress and
//! recomputes stored metrics; [`models`] fetches the default model files; [`diff`] compares two
//! result databases (or two runs of one) cell by cell and gates on regressions.

#![warn(missing_docs)]

pub mod cell;
pub mod commands;
pub mod corpus;
pub mod diff;
pub mod embed;
pub mod experiment;
pub mod export;
pub mod fingerprint;
pub mod generate;
pub mod gguf;
pub mod index;
pub mod inspect;
pub mod judge;
pub mod models;
pub mod plan;
pub mod qa;
pub mod race;
pub mod report;
pub mod retrieve;
pub mod sample;
pub mod sampling;
pub mod score;
pub mod slurm;
pub mod split;
pub mod stats;
pub mod store;
pub mod sweep;
pub mod worker;
