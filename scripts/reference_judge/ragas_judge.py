"""RAGAS itself, with the judge model orchestrate uses, on the answers of an orchestrate store.

Reads every `ok` answer of an orchestrate result database (question, answer, expert answer, and the
texts of the chunks the model was given, in rank order, from the cell's index directory), builds a
RAGAS `SingleTurnSample` per answer and scores it with RAGAS's own (legacy, v0.4) metrics and
default prompts:

    faithfulness        Faithfulness()
    answer_relevancy    AnswerRelevancy(strictness=1)   (orchestrate generates one question)
    context_precision   ContextPrecision()              (= LLMContextPrecisionWithReference)
    context_recall      ContextRecall()                 (= LLMContextRecall)
    answer_correctness  AnswerCorrectness()             (information only: a weighted F1, not
                                                         orchestrate's 0/1 correctness verdict)

The judge is the same GGUF through llama-cpp-python (langchain-community's ChatLlamaCpp, so the
GGUF's chat template is applied), greedy (temperature 0, repeat penalty 1), n_ctx 4096,
max_tokens 1024 (orchestrate's judge defaults), wrapped in RAGAS's LangchainLLMWrapper. One
answer and one metric at a time (max_workers 1). Every metric of every answer ends as a score or
as NaN with the reason: the exception RAGAS raised (output parser errors, an output cut at
max_tokens, a timeout) or RAGAS's own NaN (no statements, no classifications). Every output RAGAS
parsed is logged: parsed at once, repaired by RAGAS's fix-output-format retry, or failed.

Results are rewritten after each answer (`--out`), so an interrupted run resumes where it
stopped (`--resume`). LLM calls are cached by RAGAS's own DiskCacheBackend (`--cache`): the
context metrics of two models given the same chunks ask the same prompts.

    python ragas_judge.py STORE.sqlite --out ragas_results.json [--limit N] [--resume]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import importlib.metadata as md
import json
import math
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

REPO = Path(__file__).resolve().parents[2]
METRICS = ["faithfulness", "answer_relevancy", "context_precision", "context_recall", "answer_correctness"]


# ---------------------------------------------------------------------------------------------
# The store


def load_answers(store: Path, root: Path | None) -> list[dict]:
    """Every ok answer of the store with its contexts (the first contexts_used retrieved chunks)."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    cells = {r["cell_id"]: dict(r) for r in con.execute("SELECT * FROM cells")}
    rows = con.execute(
        "SELECT answer_id, cell_id, repeat, question_id, question, expected_answer, answer, "
        "contexts_used, chunk_ids FROM answers WHERE status = 'ok' ORDER BY answer_id"
    ).fetchall()
    chunk_files: dict[str, list[str]] = {}
    out = []
    for r in rows:
        cell = cells[r["cell_id"]]
        ids = json.loads(r["chunk_ids"])
        used = len(ids) if r["contexts_used"] is None else min(r["contexts_used"], len(ids))
        index_dir = cell["index_dir"]
        if index_dir not in chunk_files:
            chunk_files[index_dir] = read_chunks(index_dir, store, root)
        texts = chunk_files[index_dir]
        out.append(
            {
                "answer_id": r["answer_id"],
                "cell_id": r["cell_id"],
                "repeat": r["repeat"],
                "question_id": r["question_id"],
                "model": cell["model"],
                "retriever": cell["retriever"],
                "question": r["question"],
                "answer": r["answer"],
                "reference": r["expected_answer"],
                "chunk_ids": ids[:used],
                "contexts": [texts[i] for i in ids[:used]],
            }
        )
    return out


def read_chunks(index_dir: str, store: Path, root: Path | None) -> list[str]:
    """Chunk texts by id from `<index_dir>/chunks.jsonl` (a relative index_dir is relative to
    the directory orchestrate ran in: --root, else the current directory, else the store's
    grandparent)."""
    p = Path(index_dir)
    candidates = [p] if p.is_absolute() else [
        base / p for base in ([root] if root else []) + [Path.cwd(), store.resolve().parent.parent]
    ]
    for c in candidates:
        f = c / "chunks.jsonl"
        if f.is_file():
            texts = {}
            for line in f.open(encoding="utf-8"):
                ch = json.loads(line)
                texts[ch["id"]] = ch["text"]
            return [texts[i] for i in range(len(texts))]
    sys.exit(f"chunks.jsonl of index {index_dir} not found (tried {', '.join(map(str, candidates))}); pass --root")


# ---------------------------------------------------------------------------------------------
# Instrumentation: what RAGAS asked and how its parsing went (the current (answer, metric) is
# global: one thing runs at a time)

CURRENT: dict = {}


def instrument() -> None:
    from ragas.prompt import pydantic_prompt as pp
    from ragas.prompt.utils import extract_json

    original = pp.RagasOutputParser.parse_output_string

    async def parse_output_string(self, output_string, prompt_value, llm, callbacks, retries_left=1):
        event = {"output_model": self.pydantic_object.__name__}
        try:
            self.parse(extract_json(output_string))
            event["first_parse"] = "ok"
        except Exception as e:  # what RAGAS's retry then tries to repair
            event["first_parse"] = "failed"
            event["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            event["raw_output"] = output_string[:1000]
        try:
            result = await original(self, output_string, prompt_value, llm, callbacks, retries_left)
            event["outcome"] = "ok" if event["first_parse"] == "ok" else "repaired"
            return result
        except Exception as e:
            event["outcome"] = "failed"
            event["final_error"] = f"{type(e).__name__}: {str(e)[:300]}"
            raise
        finally:
            CURRENT.setdefault("parses", []).append(event)

    pp.RagasOutputParser.parse_output_string = parse_output_string


def make_llm(gguf: Path, threads: int, n_ctx: int, max_tokens: int):
    from langchain_community.chat_models import ChatLlamaCpp

    class RecordedChatLlamaCpp(ChatLlamaCpp):
        """ChatLlamaCpp recording each real model call (cache hits never get here)."""

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            t0 = time.perf_counter()
            result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            usage = (result.llm_output or {}).get("token_usage", {})
            CURRENT.setdefault("calls", []).append(
                {
                    "seconds": round(time.perf_counter() - t0, 3),
                    "prompt_tokens": usage.get("prompt_tokens"),
                    "completion_tokens": usage.get("completion_tokens"),
                    "finish_reason": (result.generations[0].generation_info or {}).get("finish_reason"),
                }
            )
            return result

    return RecordedChatLlamaCpp(
        model_path=str(gguf),
        n_ctx=n_ctx,
        n_threads=threads,
        n_batch=512,
        max_tokens=max_tokens,
        temperature=0.0,
        top_p=1.0,
        top_k=1,
        repeat_penalty=1.0,
        seed=0,
        streaming=False,
        verbose=False,
    )


def make_metrics(llm, embeddings, strictness: int) -> dict:
    from ragas.metrics import AnswerCorrectness, AnswerRelevancy, ContextPrecision, ContextRecall, Faithfulness

    return {
        "faithfulness": Faithfulness(llm=llm),
        "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=strictness),
        "context_precision": ContextPrecision(llm=llm),
        "context_recall": ContextRecall(llm=llm),
        "answer_correctness": AnswerCorrectness(llm=llm, embeddings=embeddings),
    }


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for p in ["ragas", "llama-cpp-python", "langchain-community", "langchain-core", "langchain",
              "sentence-transformers", "transformers", "torch"]:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def number(x):
    """A JSON-able score: None for NaN (the reason is recorded beside it)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store", type=Path, help="orchestrate result database (.sqlite)")
    ap.add_argument("--out", type=Path, required=True, help="results JSON (rewritten after each answer)")
    ap.add_argument("--root", type=Path, help="directory orchestrate ran in (relative index dirs)")
    ap.add_argument("--gguf", type=Path, default=REPO / "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    ap.add_argument("--embedder", type=Path, default=REPO / "models/all-MiniLM-L6-v2")
    ap.add_argument("--metrics", default=",".join(METRICS))
    ap.add_argument("--limit", type=int, help="only the first N answers (by answer_id)")
    ap.add_argument("--answers", help="only these answer ids (comma-separated)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--strictness", type=int, default=1, help="answer_relevancy questions per answer")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per answer and metric")
    ap.add_argument("--cache", type=Path, help="RAGAS DiskCacheBackend directory (off when absent)")
    ap.add_argument("--resume", action="store_true", help="keep the answers already in --out")
    args = ap.parse_args()

    metrics_wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    answers = load_answers(args.store, args.root)
    if args.answers:
        keep = {int(x) for x in args.answers.split(",")}
        answers = [a for a in answers if a["answer_id"] in keep]
    if args.limit:
        answers = answers[: args.limit]

    done: dict = {}
    if args.resume and args.out.is_file():
        done = json.loads(args.out.read_text())["answers"]

    instrument()
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from ragas.cache import DiskCacheBackend
    from ragas.dataset_schema import SingleTurnSample
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.run_config import RunConfig

    # Retries of a failed call (RunConfig.max_retries) would only repeat a deterministic greedy
    # call: one attempt. RAGAS's own fix-output-format retry on unparsable output is kept.
    run_config = RunConfig(timeout=int(args.timeout), max_retries=1, max_wait=1, max_workers=1)
    t_load = time.perf_counter()
    chat = make_llm(args.gguf, args.threads, args.n_ctx, args.max_tokens)
    cache = DiskCacheBackend(str(args.cache)) if args.cache else None
    # bypass_temperature: RAGAS would otherwise set temperature 0.01 on the model before each call
    llm = LangchainLLMWrapper(chat, run_config=run_config, cache=cache, bypass_temperature=True)
    emb = LangchainEmbeddingsWrapper(
        HuggingFaceEmbeddings(model_name=str(args.embedder), model_kwargs={"device": "cpu"}),
        run_config=run_config,
    )
    metrics = make_metrics(llm, emb, args.strictness)
    metrics = {k: metrics[k] for k in metrics_wanted}
    for m in metrics.values():
        m.init(run_config)
    load_s = time.perf_counter() - t_load

    meta = {
        "what": "RAGAS's own metrics and default prompts on the answers of an orchestrate store, judged by the same GGUF as orchestrate's judge",
        "store": str(args.store),
        "judge_gguf": args.gguf.name,
        "judge_gguf_sha256": sha256(args.gguf),
        "embedder": args.embedder.name,
        "chat_template": "the GGUF's own (llama-cpp-python create_chat_completion via langchain-community ChatLlamaCpp)",
        "settings": {
            "temperature": 0.0, "top_k": 1, "top_p": 1.0, "repeat_penalty": 1.0,
            "n_ctx": args.n_ctx, "max_tokens": args.max_tokens, "n_threads": args.threads, "n_batch": 512,
            "strictness": args.strictness, "timeout_s": args.timeout, "max_workers": 1,
            "run_config_max_retries": 1, "llm_cache": bool(args.cache),
            "metrics": {k: type(v).__name__ for k, v in metrics.items()},
        },
        "versions": versions(),
        "model_load_s": round(load_s, 2),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    results = dict(done)
    t_run = time.perf_counter()

    def write(final: bool = False) -> None:
        meta["n_answers"] = len(results)
        meta["seconds"] = round(time.perf_counter() - t_run, 1)
        if final:
            meta["ended_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": meta, "summary": summarize(results, list(metrics)), "answers": results}, indent=1))
        tmp.replace(args.out)

    loop = asyncio.new_event_loop()
    for n, a in enumerate(answers, 1):
        key = str(a["answer_id"])
        if key in results:
            continue
        sample = SingleTurnSample(
            user_input=a["question"],
            response=a["answer"],
            retrieved_contexts=a["contexts"],
            reference=a["reference"],
        )
        rec = {k: a[k] for k in ["cell_id", "repeat", "question_id", "model", "retriever", "chunk_ids"]}
        rec.update(scores={}, failures={}, seconds={}, calls={}, parses={})
        for name, metric in metrics.items():
            CURRENT.clear()
            t0 = time.perf_counter()
            try:
                value = loop.run_until_complete(metric.single_turn_ascore(sample, timeout=args.timeout))
                value = number(value)
                if value is None:
                    rec["failures"][name] = {"kind": "nan", "type": "NaN", "message": nan_reason(name)}
            except Exception as e:  # RAGAS's evaluate() turns these into NaN too
                value = None
                kind = "parse" if "OutputParser" in type(e).__name__ else "exception"
                if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
                    kind = "timeout"
                rec["failures"][name] = {
                    "kind": kind,
                    "type": type(e).__name__,
                    "message": (str(e) or repr(e))[:500],
                    "where": traceback.format_exc(limit=-3)[-800:],
                }
            rec["scores"][name] = value
            rec["seconds"][name] = round(time.perf_counter() - t0, 2)
            rec["calls"][name] = CURRENT.get("calls", [])
            rec["parses"][name] = CURRENT.get("parses", [])
        results[key] = rec
        shown = " ".join(f"{k}={'NaN' if v is None else f'{v:.3f}'}" for k, v in rec["scores"].items())
        print(f"[{n}/{len(answers)}] answer {key} ({a['model']}, {a['retriever']}, {a['question_id']}): {shown} "
              f"({sum(rec['seconds'].values()):.0f} s)", flush=True)
        write()
    write(final=True)
    print(json.dumps(summarize(results, list(metrics)), indent=1))


def nan_reason(metric: str) -> str:
    return {
        "faithfulness": "RAGAS NaN: no statements generated from the answer (or the NLI step returned none)",
        "answer_relevancy": "RAGAS NaN: every generated question empty",
        "context_recall": "RAGAS NaN: no classifications of the reference",
        "context_precision": "RAGAS NaN",
        "answer_correctness": "RAGAS NaN: no statements in the answer or the reference",
    }.get(metric, "RAGAS NaN")


def summarize(results: dict, metrics: list[str]) -> dict:
    out = {}
    for m in metrics:
        recs = [r for r in results.values() if m in r["scores"]]
        vals = [r["scores"][m] for r in recs if r["scores"][m] is not None]
        kinds: dict = {}
        types: dict = {}
        for r in recs:
            f = r["failures"].get(m)
            if f:
                kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
                types[f["type"]] = types.get(f["type"], 0) + 1
        parses = [p for r in recs for p in r["parses"].get(m, [])]
        calls = [c for r in recs for c in r["calls"].get(m, [])]
        out[m] = {
            "n": len(recs),
            "scored": len(vals),
            "nan_or_failed": len(recs) - len(vals),
            "failure_kinds": kinds,
            "failure_types": types,
            "mean": (sum(vals) / len(vals)) if vals else None,
            "outputs_parsed": len(parses),
            "outputs_first_parse_failed": sum(p["first_parse"] == "failed" for p in parses),
            "outputs_repaired": sum(p["outcome"] == "repaired" for p in parses),
            "outputs_unparsable": sum(p["outcome"] == "failed" for p in parses),
            "llm_calls": len(calls),
            "llm_calls_cut_at_max_tokens": sum(c["finish_reason"] == "length" for c in calls),
            "seconds": round(sum(r["seconds"].get(m, 0) for r in recs), 1),
        }
    return out


if __name__ == "__main__":
    main()
