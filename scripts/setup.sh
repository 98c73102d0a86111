#!/usr/bin/env bash
# Sets up a fresh Debian machine for orchestrate: system packages (cmake and libclang-dev to build
# llama.cpp; wordnet-base, WordNet 3.0 in /usr/share/wordnet, for METEOR's synonym stage; chromium
# for the report browser test), the release build, and the default models.
# Idempotent: what is present is left alone. Build outputs and model downloads are cached outside
# the clone (CARGO_TARGET_DIR, ORCHESTRATE_CACHE; default ~/.cache/orchestrate).
set -euo pipefail
cd "$(dirname "$0")/.."

export ORCHESTRATE_CACHE="${ORCHESTRATE_CACHE:-$HOME/.cache/orchestrate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ORCHESTRATE_CACHE/target}"

want=(cmake libclang-dev wordnet-base)
if [ "${ORCHESTRATE_WITH_BROWSER:-0}" = 1 ]; then want+=(chromium); fi
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
command -v python3 >/dev/null || { echo "setup: python3 (with pip) is needed to fetch the models" >&2; exit 1; }

echo "setup: building orchestrate (release; the first build takes 15-25 minutes)" >&2
cargo build --release --locked
mkdir -p "$HOME/.local/bin"
ln -sf "$CARGO_TARGET_DIR/release/orchestrate" "$HOME/.local/bin/orchestrate"

echo "setup: fetching models" >&2
"$CARGO_TARGET_DIR/release/orchestrate" models fetch
