#!/usr/bin/env bash
# Side-by-side check (tests/side_by_side/README.md): the LangChain notebook pipeline and
# orchestrate answer the same 10 Bacula questions with the same models, chunks, retrievers,
# prompt and sampler settings; compare.py prints and tabulates both.
#
#   tests/side_by_side/run.sh              # everything
#   SBS_SKIP_LANGCHAIN=1 tests/side_by_side/run.sh   # reuse $SBS_OUT/langchain_results.json
#                                                    # (or the committed reference output)
#
# Env: SBS_VENV (default /tmp/sbs-venv; made when missing), SBS_OUT (default /tmp/sbs-out: page
# dump, results, the orchestrate store, the comparison). Outputs nothing into the work tree
# except the models linked into models/ by `orchestrate models fetch`.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${SBS_VENV:-/tmp/sbs-venv}"
OUT="${SBS_OUT:-/tmp/sbs-out}"
export ORCHESTRATE_CACHE="${ORCHESTRATE_CACHE:-$HOME/.cache/orchestrate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ORCHESTRATE_CACHE/target}"
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
cd "$REPO"

say() { echo "side_by_side: $*" >&2; }

# 1. The throwaway venv of the LangChain half.
need="import langchain_classic, langchain_community, llama_cpp, sentence_transformers, faiss, rank_bm25"
if [ "${SBS_SKIP_LANGCHAIN:-0}" != 1 ] && ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$need" 2>/dev/null; }; then
  say "making $VENV (torch with its CUDA wheels ~6 GB; llama-cpp-python builds from source, ~10 min)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install -r "$HERE/requirements.txt"
fi

# 2. Models (linked into models/) and orchestrate's page texts of the manual.
say "building orchestrate and fetching models"
cargo build --release --locked --bin orchestrate --example dump_pages
ORC="$CARGO_TARGET_DIR/release/orchestrate"
"$ORC" models fetch
"$CARGO_TARGET_DIR/release/examples/dump_pages" corpora/bacula/main.pdf > "$OUT/bacula_pages.json"

# 3. The LangChain half (both models: 43 min on 2 shared, busy cores; index build 5-10 min of it).
LC="$OUT/langchain_results.json"
if [ "${SBS_SKIP_LANGCHAIN:-0}" = 1 ]; then
  [ -f "$LC" ] || cp "$HERE/langchain_results.json" "$LC"
  say "reusing $LC"
else
  say "LangChain pipeline -> $LC"
  "$VENV/bin/python" -W ignore "$HERE/langchain_pipeline.py" --pages "$OUT/bacula_pages.json" \
    --model "smollm2-135m-instruct=models/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --model "gemma-3-270m=models/gemma-3-270m-q4_k_m.gguf" \
    --out "$LC"
fi

# 4. The orchestrate half, in a store of its own.
say "orchestrate run -> $OUT/store"
"$ORC" run tests/side_by_side/side_by_side.toml --store "$OUT/store" --reports "$OUT/reports"
"$ORC" export tests/side_by_side/side_by_side.toml --store "$OUT/store" --format jsonl --grid > "$OUT/orchestrate.jsonl"

# 5. Side by side.
python3 "$HERE/compare.py" "$LC" "$OUT/orchestrate.jsonl" --md "$OUT/side_by_side.md"
