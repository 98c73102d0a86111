#!/usr/bin/env bash
# RAGAS itself vs orchestrate's judge on the same answers (scripts/reference_judge/README.md).
#
#   scripts/reference_judge/run.sh [STORE]     # default store/judge_reference.sqlite
#
# The store must already hold the answers and orchestrate's judgments:
#   orchestrate run experiments/judge_reference.toml     (sweeps 52 answers, then judges them)
#
# Env: REF_VENV (default /tmp/ref-venv; made when missing), REF_OUT (default /tmp/refjudge:
# ragas_results.json, RAGAS's LLM cache, comparison.md), REF_LIMIT (only the first N answers),
# REF_RESUME=1 (keep the answers already in $REF_OUT/ragas_results.json), REF_THREADS (llama.cpp
# threads, default 2; 1 leaves a core to another job).
# Writes nothing into the work tree: copy $REF_OUT/ragas_results.json and comparison.md here
# deliberately to update the committed reference.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${REF_VENV:-/tmp/ref-venv}"
OUT="${REF_OUT:-/tmp/refjudge}"
STORE="${1:-$REPO/store/judge_reference.sqlite}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAGAS_DO_NOT_TRACK=true
mkdir -p "$OUT"
cd "$REPO"   # the store's index directories are relative to where orchestrate ran

say() { echo "reference_judge: $*" >&2; }

# 1. The throwaway venv.
need="import ragas, llama_cpp, langchain_community, sentence_transformers"
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$need" 2>/dev/null; }; then
  say "making $VENV (torch with its CUDA wheels ~6 GB; llama-cpp-python builds from source, ~10-20 min)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install -r "$HERE/requirements.txt"
fi

# 2. RAGAS on every ok answer of the store (one LLM call at a time; cached in $OUT/ragas_cache).
args=()
[ -n "${REF_LIMIT:-}" ] && args+=(--limit "$REF_LIMIT")
[ "${REF_RESUME:-0}" = 1 ] && args+=(--resume)
[ -n "${REF_THREADS:-}" ] && args+=(--threads "$REF_THREADS")
say "RAGAS -> $OUT/ragas_results.json"
"$VENV/bin/python" -W ignore "$HERE/ragas_judge.py" "$STORE" --root "$REPO" \
  --out "$OUT/ragas_results.json" --cache "$OUT/ragas_cache" "${args[@]}"

# 3. Per metric against orchestrate's stored judgments.
python3 "$HERE/compare.py" "$OUT/ragas_results.json" "$STORE" --md "$OUT/comparison.md" --json "$OUT/comparison.json"
