//! Prints our extraction of every page of a corpus file as JSON (`[{"number": n, "text": "..."}]`)
//! on stdout: the input of `tests/fixtures/make_splitter_fixtures.py`, and what evidence quotes in
//! a QA file must match.
//!
//!     cargo run --release --example dump_pages -- corpora/bacula/main.pdf > /tmp/bacula_pages.json

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: dump_pages <file.pdf|file.txt|file.md>")?;
    let pages = orchestrate::corpus::load_pages(&path)?;
    let rows: Vec<serde_json::Value> = pages
        .iter()
        .map(|p| serde_json::json!({"number": p.number, "text": p.text}))
        .collect();
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}
