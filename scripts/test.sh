#!/usr/bin/env bash
# README command 2: set up a fresh machine (with chromium for the report browser test), check
# formatting (cargo fmt) and lints (clippy, warnings are errors), and run the whole test suite.
# Tests run in the release profile so they share the dependency build with the binary (candle and
# llama.cpp are also far too slow unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
ORCHESTRATE_WITH_BROWSER=1 ./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${ORCHESTRATE_CACHE:-$HOME/.cache/orchestrate}/target}"
# style gates first: formatting and every clippy warning are errors
cargo fmt --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked
