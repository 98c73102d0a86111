"""orchestrate's judge metrics against RAGAS itself, per metric, on the same answers.

Joins `ragas_judge.py`'s results JSON with the judgments orchestrate stored for the same answers
(table `judgments` of the same store, keyed by cell, repeat and question) and prints a Markdown
table per metric: answers, undefined/errored on each side, mean absolute difference and means
over the answers both sides scored, exact agreement, Pearson correlation. Standard library only.

    python3 compare.py ragas_results.json STORE.sqlite [--md comparison.md]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
from pathlib import Path

# orchestrate's stored name -> RAGAS's metric in ragas_results.json
PAIRS = [
    ("faithfulness", "faithfulness"),
    ("answer_relevancy", "answer_relevancy"),
    ("context_precision", "context_precision"),
    ("context_recall", "context_recall"),
    ("correctness", "answer_correctness"),
]
NOTES = {
    "correctness": "not the same metric: orchestrate's is a 0/1 verdict, RAGAS's answer_correctness "
    "a weighted F1 of statement classification (0.75) and answer/reference cosine (0.25); "
    "for information only",
}


def pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def orchestrate_judgments(store: Path) -> tuple[dict, set]:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    out = {}
    judges = set()
    # only the newest prompt version: older judgments stay in the table but are superseded
    for cell, rep, q, metric, status, value, detail, judge, pv in con.execute(
        "SELECT cell_id, repeat, question_id, metric, status, value, detail, judge, prompt_version "
        "FROM judgments WHERE prompt_version = (SELECT MAX(prompt_version) FROM judgments)"
    ):
        out[(cell, rep, q, metric)] = (status, value, detail)
        judges.add(f"{judge} (prompt version {pv})")
    return out, judges


def fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def compare(ragas: dict, orc: dict) -> list[dict]:
    rows = []
    answers = ragas["answers"]
    summary = ragas.get("summary", {})
    for om, rm in PAIRS:
        recs = [(k, r) for k, r in answers.items() if rm in r["scores"]]
        n = len(recs)
        o_undef = o_err = o_missing = 0
        r_nan: dict = {}
        xs, ys = [], []
        for _, r in recs:
            j = orc.get((r["cell_id"], r["repeat"], r["question_id"], om))
            o_val = None
            if j is None:
                o_missing += 1
            elif j[0] == "ok":
                o_val = j[1]
            elif j[0] == "undefined":
                o_undef += 1
            else:
                o_err += 1
            r_val = r["scores"][rm]
            if r_val is None:
                kind = r["failures"].get(rm, {}).get("kind", "nan")
                r_nan[kind] = r_nan.get(kind, 0) + 1
            if o_val is not None and r_val is not None:
                xs.append(o_val)
                ys.append(r_val)
        both = len(xs)
        s = summary.get(rm, {})
        rows.append(
            {
                "metric": om,
                "ragas_metric": rm,
                "n": n,
                "orc_undefined": o_undef,
                "orc_error": o_err,
                "orc_missing": o_missing,
                "ragas_nan_or_failed": sum(r_nan.values()),
                "ragas_failure_kinds": r_nan,
                "both": both,
                "mad": sum(abs(x - y) for x, y in zip(xs, ys)) / both if both else None,
                "mean_orc": sum(xs) / both if both else None,
                "mean_ragas": sum(ys) / both if both else None,
                "exact": sum(abs(x - y) < 1e-6 for x, y in zip(xs, ys)),
                "pearson": pearson(xs, ys),
                "outputs_parsed": s.get("outputs_parsed"),
                "outputs_first_parse_failed": s.get("outputs_first_parse_failed"),
                "outputs_repaired": s.get("outputs_repaired"),
                "outputs_unparsable": s.get("outputs_unparsable"),
                "llm_calls_cut": s.get("llm_calls_cut_at_max_tokens"),
            }
        )
    return rows


def markdown(rows: list[dict], ragas: dict, judges: set, store: Path) -> str:
    meta = ragas["meta"]
    v = meta["versions"]
    s = meta["settings"]
    lines = [
        "# orchestrate's judge vs RAGAS itself",
        "",
        f"Answers: {meta['n_answers']} (store `{Path(meta['store']).name}`). "
        f"Judge on both sides: `{meta['judge_gguf']}` (sha256 {meta['judge_gguf_sha256'][:16]}…), greedy, "
        f"n_ctx {s['n_ctx']}, max_tokens {s['max_tokens']}, {s['n_threads']} threads; "
        f"embedder `{meta['embedder']}` (answer relevancy).",
        f"orchestrate judge id: {', '.join(sorted(judges)) or 'none stored'}; RAGAS profile, grammar-constrained decoding.",
        f"RAGAS side: ragas {v.get('ragas')}, llama-cpp-python {v.get('llama-cpp-python')}, "
        f"langchain-community {v.get('langchain-community')}, langchain-core {v.get('langchain-core')}, "
        f"sentence-transformers {v.get('sentence-transformers')}, torch {v.get('torch')}; "
        f"RAGAS default prompts, legacy metrics {', '.join(f'{k}={c}' for k, c in s['metrics'].items())}; "
        f"answer_relevancy strictness {s['strictness']}; max_workers 1; "
        f"run time {meta.get('seconds', 0) / 60:.0f} min.",
        "",
        "MAD = mean absolute difference over the answers both sides scored; means over the same answers; "
        "exact = answers with the same value on both sides.",
        "",
        "| metric | n | orchestrate undefined / error | RAGAS NaN or failed | both scored | MAD | mean orchestrate | mean RAGAS | exact | Pearson r |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kinds = ", ".join(f"{k} {c}" for k, c in sorted(r["ragas_failure_kinds"].items()))
        name = r["metric"] if r["metric"] == r["ragas_metric"] else f"{r['metric']} vs {r['ragas_metric']}*"
        missing = f" (+{r['orc_missing']} not judged)" if r["orc_missing"] else ""
        lines.append(
            f"| {name} | {r['n']} | {r['orc_undefined']} / {r['orc_error']}{missing} | "
            f"{r['ragas_nan_or_failed']}{f' ({kinds})' if kinds else ''} | {r['both']} | {fmt(r['mad'])} | "
            f"{fmt(r['mean_orc'])} | {fmt(r['mean_ragas'])} | {r['exact']} | {fmt(r['pearson'], 2)} |"
        )
    lines += ["", "\\* " + NOTES["correctness"], "", "RAGAS's output parsing (every judge output RAGAS parsed, per metric):", "",
              "| RAGAS metric | outputs parsed | first parse failed | repaired by RAGAS's fix-format retry | unparsable | calls cut at max_tokens |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['ragas_metric']} | {r['outputs_parsed']} | {r['outputs_first_parse_failed']} | "
            f"{r['outputs_repaired']} | {r['outputs_unparsable']} | {r['llm_calls_cut']} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ragas_results", type=Path)
    ap.add_argument("store", type=Path)
    ap.add_argument("--md", type=Path, help="also write the Markdown here")
    ap.add_argument("--json", type=Path, help="also write the per-metric rows as JSON")
    args = ap.parse_args()
    ragas = json.loads(args.ragas_results.read_text())
    orc, judges = orchestrate_judgments(args.store)
    rows = compare(ragas, orc)
    md = markdown(rows, ragas, judges, args.store)
    print(md)
    if args.md:
        args.md.write_text(md)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
