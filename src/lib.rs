//! orchestrate: declarative, resumable RAG experiments with small local LLMs.
//!
//! Data flows one way through one module per stage:
//! [`experiment`] (parse, expand grid) → [`corpus`] / [`split`] (extract, chunk) → [`embed`] →
//! [`index`] (dense, lexical, cache) → [`retrieve`] (MMR, fusion) → [`generate`] → [`score`] →
//! [`sample`] → [`store`] → [`report`] / [`export`]. [`sweep`] schedules cells and [`worker`]
//! runs one cell in an isolated subprocess. [`inspect`] shows chunks and retrieved lists and
//! recomputes stored metrics. [`models`] fetches the default model files.

#![warn(missing_docs)]

pub mod corpus;
pub mod embed;
pub mod experiment;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod index;
pub mod inspect;
pub mod models;
pub mod qa;
pub mod report;
pub mod retrieve;
pub mod sample;
pub mod score;
pub mod split;
pub mod stats;
pub mod store;
pub mod sweep;
pub mod worker;
