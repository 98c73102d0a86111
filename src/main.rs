//! `orchestrate` command-line entry point; everything lives in the library (see `cli`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
