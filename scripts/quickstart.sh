#!/usr/bin/env bash
# README command 1: set up a fresh machine, then sweep experiments/quickstart.toml on the bundled
# Bacula manual with the default models, writing store/quickstart.sqlite and reports/quickstart.html.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${ORCHESTRATE_CACHE:-$HOME/.cache/orchestrate}/target}"
"$CARGO_TARGET_DIR/release/orchestrate" run experiments/quickstart.toml
echo "orchestrate is linked at ~/.local/bin/orchestrate; open reports/quickstart.html" >&2
