#!/usr/bin/env python3
"""Side-by-side comparison of the LangChain pipeline and orchestrate on the same job (stdlib only).

    python3 compare.py LANGCHAIN_JSON ORCHESTRATE_JSONL [--md OUT.md] [--width 70]

LANGCHAIN_JSON: the output of langchain_pipeline.py. ORCHESTRATE_JSONL: `orchestrate export
tests/side_by_side/side_by_side.toml --format jsonl` (one answer per line; fields as in
src/export.rs / store::AnswerRecord: model, question_id, answer, cosine, completion_tokens,
response_time_s, chunk_ids, contexts_used, status, ...). Either side may hold models the other
lacks; rows are paired on (model name, question id), the model names being orchestrate's
experiment names (langchain_pipeline.py --model NAME=PATH).

Prints, per question, both answers (truncated), both cosines, token counts and times, and whether
both retrieved the same chunks (chunk ids are positions in the split, the same numbering in both
tools when the split matches the fixture, which langchain_pipeline.py checks); then per model the
exact-answer agreement rate (after stripping surrounding whitespace), the mean cosine of each
side and their difference, the speed ratio (LangChain's chain-call wall time over orchestrate's
response time; the two clocks differ, see README.md), and token totals. With --md, writes the
same as Markdown tables.
"""

import argparse
import json
import sys
from pathlib import Path


def load_langchain(path):
    doc = json.loads(Path(path).read_text())
    rows = {}
    for m in doc["models"]:
        for a in m["answers"]:
            rows[(m["model"], a["id"])] = {
                "question": a["question"],
                "answer": a["answer"],
                "cosine": a["cosine"],
                "tokens": a["completion_tokens"],
                "time_s": a["wall_s"],
                "chunk_ids": [r["chunk_id"] for r in a["retrieved"]],
            }
    return doc, rows


def load_orchestrate(path):
    rows = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        if r.get("status") != "ok":
            print(f"{path}:{n}: {r.get('model')} {r.get('question_id')} status {r.get('status')}: {r.get('error')}", file=sys.stderr)
        key = (r["model"], r["question_id"])
        if key in rows:
            # several cells or repeats for one model: keep the first, say so
            print(f"{path}:{n}: duplicate {key} (cell {r.get('cell_id')}, repeat {r.get('repeat')}); kept the first", file=sys.stderr)
            continue
        rows[key] = {
            "question": r.get("question"),
            "answer": r.get("answer") or "",
            "cosine": r.get("cosine"),
            "tokens": r.get("completion_tokens"),
            "time_s": r.get("response_time_s"),
            "chunk_ids": r.get("chunk_ids") or [],
            "contexts_used": r.get("contexts_used"),
        }
    return rows


def cut(text, width):
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def fmt(v, spec=".3f"):
    return "—" if v is None else format(v, spec)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def total(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) if xs else None


def md_cell(text):
    return (text or "").replace("|", "\\|").replace("\n", " ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("langchain_json")
    ap.add_argument("orchestrate_jsonl")
    ap.add_argument("--md", help="write Markdown tables here")
    ap.add_argument("--width", type=int, default=70, help="answer characters shown")
    args = ap.parse_args()

    lc_doc, lc = load_langchain(args.langchain_json)
    orc = load_orchestrate(args.orchestrate_jsonl)
    models = []
    for m, _ in list(lc) + list(orc):
        if m not in models:
            models.append(m)

    md = ["# Side by side: LangChain pipeline vs orchestrate", ""]
    v = lc_doc.get("versions", {})
    md.append(
        f"LangChain side: langchain {v.get('langchain')}, langchain-classic {v.get('langchain-classic')}, "
        f"langchain-community {v.get('langchain-community')}, llama-cpp-python {v.get('llama-cpp-python')}, "
        f"sentence-transformers {v.get('sentence-transformers')}, faiss-cpu {v.get('faiss-cpu')}, "
        f"rank-bm25 {v.get('rank-bm25')}; index build {lc_doc.get('index', {}).get('index_build_s')} s."
    )
    md.append("")
    summary = []
    for model in models:
        qids = [q for (m, q) in lc if m == model] + [q for (m, q) in orc if m == model and (m, q) not in lc]
        print(f"\n=== {model} ===")
        md += [f"## {model}", "",
               "| id | LangChain answer | orchestrate answer | cos LC | cos orc | tok LC | tok orc | s LC | s orc | same chunks |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        pairs = []
        for q in qids:
            a, b = lc.get((model, q)), orc.get((model, q))
            same_chunks = None
            if a and b:
                same_chunks = a["chunk_ids"] == b["chunk_ids"]
                pairs.append((a, b))
            print(f"{q}:")
            print(f"  LC  cos {fmt(a and a['cosine'])} tok {fmt(a and a['tokens'], '')} {fmt(a and a['time_s'], '.2f')}s  {cut(a and a['answer'], args.width)!r}" if a else "  LC  (none)")
            print(f"  orc cos {fmt(b and b['cosine'])} tok {fmt(b and b['tokens'], '')} {fmt(b and b['time_s'], '.2f')}s  {cut(b and b['answer'], args.width)!r}" if b else "  orc (none)")
            if same_chunks is not None:
                print(f"  same retrieved chunks: {same_chunks}" + ("" if same_chunks else f" (LC {a['chunk_ids']} vs orc {b['chunk_ids']})"))
            md.append(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                    q,
                    md_cell(cut(a["answer"], args.width)) if a else "—",
                    md_cell(cut(b["answer"], args.width)) if b else "—",
                    fmt(a and a["cosine"]), fmt(b and b["cosine"]),
                    fmt(a and a["tokens"], ""), fmt(b and b["tokens"], ""),
                    fmt(a and a["time_s"], ".2f"), fmt(b and b["time_s"], ".2f"),
                    "—" if same_chunks is None else ("yes" if same_chunks else "no"),
                )
            )
        md.append("")
        n = len(pairs)
        lc_all = [r for (m, _), r in lc.items() if m == model]
        orc_all = [r for (m, _), r in orc.items() if m == model]
        s = {
            "model": model,
            "paired": n,
            "exact": sum(a["answer"].strip() == b["answer"].strip() for a, b in pairs),
            "same_chunks": sum(a["chunk_ids"] == b["chunk_ids"] for a, b in pairs),
            "cos_lc": mean([a["cosine"] for a, _ in pairs]) if n else mean([r["cosine"] for r in lc_all]),
            "cos_orc": mean([b["cosine"] for _, b in pairs]) if n else mean([r["cosine"] for r in orc_all]),
            "tok_lc": total([a["tokens"] for a, _ in pairs] if n else [r["tokens"] for r in lc_all]),
            "tok_orc": total([b["tokens"] for _, b in pairs] if n else [r["tokens"] for r in orc_all]),
            "t_lc": total([a["time_s"] for a, _ in pairs] if n else [r["time_s"] for r in lc_all]),
            "t_orc": total([b["time_s"] for _, b in pairs] if n else [r["time_s"] for r in orc_all]),
        }
        s["diff"] = None if s["cos_lc"] is None or s["cos_orc"] is None else s["cos_orc"] - s["cos_lc"]
        s["speed"] = s["t_lc"] / s["t_orc"] if s["t_lc"] and s["t_orc"] else None
        summary.append(s)

    print("\n=== per model ===")
    head = ["model", "paired", "exact answers", "same chunks", "mean cos LC", "mean cos orc",
            "orc − LC", "tokens LC", "tokens orc", "time LC s", "time orc s", "speed LC/orc"]
    md += ["## Per model", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        n = s["paired"]
        rate = f"{s['exact']}/{n} ({s['exact'] / n:.0%})" if n else "—"
        chunks = f"{s['same_chunks']}/{n}" if n else "—"
        vals = [s["model"], str(n), rate, chunks, fmt(s["cos_lc"]), fmt(s["cos_orc"]),
                fmt(s["diff"], "+.3f"), fmt(s["tok_lc"], ""), fmt(s["tok_orc"], ""),
                fmt(s["t_lc"], ".1f"), fmt(s["t_orc"], ".1f"), fmt(s["speed"], ".2f") + ("×" if s["speed"] else "")]
        print("  ".join(f"{h}: {v}" for h, v in zip(head, vals)))
        md.append("| " + " | ".join(vals) + " |")
    md += ["", "Times: LangChain = wall time of `qa.invoke` (retrieval + prompt + generation); "
           "orchestrate = `response_time_s` (prompt submission to last token; retrieval excluded). "
           "Exact answers compare the texts after stripping surrounding whitespace.", ""]
    if args.md:
        Path(args.md).write_text("\n".join(md))
        print(f"\nMarkdown -> {args.md}")


if __name__ == "__main__":
    main()
