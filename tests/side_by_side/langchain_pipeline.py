#!/usr/bin/env python3
"""The LangChain notebook pipeline that orchestrate users port, run on orchestrate's own inputs.

This is the reference half of the side-by-side check (tests/side_by_side/README.md): the seed
notebook's RAG chain, written the way such a notebook writes it, with LangChain's defaults
everywhere the notebook does not set a value:

    pages    -> RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=100).split_documents
    chunks   -> EnsembleRetriever([BM25Retriever.from_documents(chunks, k=5),
                                   FAISS.from_documents(chunks, HuggingFaceEmbeddings(MiniLM))
                                     .as_retriever(search_type="mmr",
                                                   search_kwargs={"k": 4, "fetch_k": 3})],
                                  weights=[0.3, 0.7])
    LLM      -> LlamaCpp(model_path=..., temperature=0.01, top_p=1, max_tokens=256, n_ctx=2048,
                         verbose=False)
    chain    -> RetrievalQA.from_chain_type(llm, chain_type="stuff", retriever=...,
                    chain_type_kwargs={"prompt": PromptTemplate(template=T,
                                                                input_variables=["context",
                                                                                 "question"])})

Documents: a real notebook loads the PDF with PyPDFLoader, whose text differs from orchestrate's
extraction. To compare like with like, this script reads orchestrate's own page texts (the JSON
of `cargo run --release --example dump_pages -- corpora/bacula/main.pdf`) and checks every page
against tests/fixtures/splitter/bacula_all_pages.json (character count and sha256 per page), and
the 500/100 split against that fixture's per-page chunk digests, so both tools split identical
text into identical chunks. Chunk ids are positions in split_documents' output, as orchestrate
numbers its chunks.

Run it in a throwaway virtualenv (tests/side_by_side/run.sh makes one); needs no network:
HF_HUB_OFFLINE=1 is set before any Hugging Face import.

    python langchain_pipeline.py --pages /tmp/bacula_pages.json --out results.json \
        [--model NAME=PATH ...] [--template T] [--limit 10]

Output: one JSON document (see write_results) with exact library versions, the settings, the
values LlamaCpp actually ran with (threads, batch, RoPE, seed), index build time, and per model
and question the answer, generated tokens, wall time of the chain call, the retrieved chunks in
order, and the cosine of answer and expected answer (sentence-transformers all-MiniLM-L6-v2).
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
CACHE_MODELS = Path(os.environ.get("ORCHESTRATE_CACHE", Path.home() / ".cache/orchestrate")) / "models"

# LangChain's stock RetrievalQA prompt (langchain_classic/chains/retrieval_qa/prompt.py).
STOCK_TEMPLATE = (
    "Use the following pieces of context to answer the question at the end. If you don't know "
    "the answer, just say that you don't know, don't try to make up an answer.\n\n{context}\n\n"
    "Question: {question}\nHelpful Answer:"
)
# orchestrate's model names (models/manifest.toml) for the default GGUF files.
DEFAULT_MODELS = [
    ("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
]
PACKAGES = [
    "langchain",
    "langchain-core",
    "langchain-classic",
    "langchain-community",
    "langchain-text-splitters",
    "langchain-huggingface",
    "faiss-cpu",
    "rank-bm25",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "torch",
    "numpy",
    "llama-cpp-python",
    "pydantic",
]


def model_file(name_or_path):
    """A path as given if it exists, else models/<file>, else the orchestrate model cache."""
    p = Path(name_or_path)
    for cand in (p, REPO / "models" / p.name, CACHE_MODELS / p.name):
        if cand.exists():
            return cand.resolve()
    sys.exit(f"model not found: {name_or_path} (run `orchestrate models fetch`)")


def versions():
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def load_pages(pages_path, fixture_path):
    """orchestrate's page texts, checked page by page against the splitter fixture."""
    pages = json.loads(Path(pages_path).read_text())
    fixture = json.loads(Path(fixture_path).read_text())
    want = fixture["pages"]
    if len(pages) != len(want):
        sys.exit(f"{pages_path}: {len(pages)} pages, fixture has {len(want)}")
    for got, exp in zip(pages, want):
        text = got["text"]
        if (
            got["number"] != exp["number"]
            or len(text) != exp["chars"]
            or hashlib.sha256(text.encode()).hexdigest() != exp["sha256"]
        ):
            sys.exit(f"page {got['number']} differs from {fixture_path}: stale dump or fixture")
    return pages, fixture


def chunk_digests(chunks_by_page):
    """Per page [count, digest] as make_splitter_fixtures.py computes them."""
    out = []
    for chunks in chunks_by_page:
        h = hashlib.sha256()
        for start, text in chunks:
            h.update(f"{start}\n{len(text.encode())}\n".encode() + text.encode())
        out.append([len(chunks), h.hexdigest()])
    return out


def split(pages, fixture, chunk_size, chunk_overlap, source):
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    docs = [
        Document(page_content=p["text"], metadata={"source": source, "page": p["number"]})
        for p in pages
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    chunks = splitter.split_documents(docs)
    for i, c in enumerate(chunks):
        c.metadata["chunk_id"] = i
    # Check against the fixture with the start offsets (a second splitter with add_start_index,
    # so the chunks above carry exactly the metadata a notebook's chunks carry).
    check = {"fixture_run": None, "matches": None}
    run = next(
        (r for r in fixture["runs"] if (r["chunk_size"], r["chunk_overlap"]) == (chunk_size, chunk_overlap)),
        None,
    )
    if run is not None:
        s2 = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True
        )
        per_page = []
        for d in docs:
            per_page.append([(c.metadata["start_index"], c.page_content) for c in s2.split_documents([d])])
        got = chunk_digests(per_page)
        check = {
            "fixture_run": f"{chunk_size}/{chunk_overlap}",
            "matches": got == run["per_page"] and len(chunks) == run["chunks"],
            "fixture_chunks": run["chunks"],
        }
        if not check["matches"]:
            sys.exit("the split differs from the splitter fixture: not comparable with orchestrate")
    return chunks, check


def embeddings(model_dir):
    """HuggingFaceEmbeddings as the seed notebook imports it (langchain_community), else the
    langchain_huggingface successor. Defaults otherwise (no encode_kwargs)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from langchain_community.embeddings import HuggingFaceEmbeddings

            where = "langchain_community.embeddings.HuggingFaceEmbeddings"
        except ImportError:
            from langchain_huggingface import HuggingFaceEmbeddings

            where = "langchain_huggingface.HuggingFaceEmbeddings"
        emb = HuggingFaceEmbeddings(model_name=str(model_dir))
    return emb, where


def observed_llama(llm):
    """What llama-cpp-python actually runs with behind LangChain's LlamaCpp."""
    c = llm.client
    cp = c.context_params
    meta = dict(getattr(c, "metadata", {}) or {})
    arch = meta.get("general.architecture", "")
    gguf_rope = {k: v for k, v in meta.items() if "rope" in k}
    return {
        "n_ctx": c.n_ctx(),
        "n_batch": c.n_batch,
        "n_ubatch": getattr(cp, "n_ubatch", None),
        "n_threads": c.n_threads,
        "n_threads_batch": c.n_threads_batch,
        "seed_requested": llm.seed,
        "seed_used_by_llama": getattr(c, "_seed", None),
        "rope_freq_base_context": cp.rope_freq_base,
        "rope_freq_scale_context": cp.rope_freq_scale,
        "gguf_architecture": arch,
        "gguf_rope_metadata": gguf_rope,
        "last_n_tokens_size": c.last_n_tokens_size,
        "use_mmap": llm.use_mmap,
        "use_mlock": llm.use_mlock,
        "f16_kv": llm.f16_kv,
        "n_gpu_layers": llm.n_gpu_layers,
        "has_chat_template": "tokenizer.chat_template" in meta,
        "llama_cpp_system_info": _system_info(),
    }


def _system_info():
    try:
        import llama_cpp

        return llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    except Exception as e:  # informational only
        return f"unavailable: {e}"


def capture_completions(llm):
    """Keeps each completion's prompt, token counts, finish reason and sampler seed.

    LlamaCpp streams by default (streaming=True): its _call joins the streamed pieces and drops
    llama-cpp-python's usage, so the Llama instance's create_completion (prompt, finish reason)
    and generate (prompt tokens, each sampled token) are wrapped. completion_tokens counts the
    sampled tokens that are not end-of-generation, as llama-cpp-python's usage does.
    """
    import llama_cpp

    client = llm.client
    calls = []
    inner_cc, inner_gen = client.create_completion, client.generate

    def generate(tokens, *args, **kwargs):
        rec = calls[-1]
        rec["prompt_tokens"] = len(tokens)
        rec["completion_tokens"] = 0
        for t in inner_gen(tokens, *args, **kwargs):
            if not llama_cpp.llama_vocab_is_eog(client._model.vocab, t):
                rec["completion_tokens"] += 1
            yield t

    def create_completion(*args, **kwargs):
        prompt = kwargs.get("prompt", args[0] if args else None)
        rec = {"prompt": prompt, "kwargs": {k: v for k, v in kwargs.items() if k != "prompt"}}
        calls.append(rec)
        out = inner_cc(*args, **kwargs)

        def done(finish_reason):
            rec["finish_reason"] = finish_reason
            # llama-cpp-python 0.3 draws each call's seed as random.Random(previous seed) when
            # none is passed (LangChain passes none per call): a fixed sequence from seed -1
            rec["seed"] = getattr(client, "_seed", None)

        if isinstance(out, dict):
            done(out["choices"][0].get("finish_reason"))
            return out

        def stream():
            reason = None
            for part in out:
                reason = part["choices"][0].get("finish_reason") or reason
                yield part
            done(reason)

        return stream()

    client.create_completion = create_completion
    client.generate = generate
    return calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", required=True, help="orchestrate's page texts (dump_pages JSON)")
    ap.add_argument("--fixture", default=str(REPO / "tests/fixtures/splitter/bacula_all_pages.json"))
    ap.add_argument("--qa", default=str(REPO / "corpora/bacula/qa.toml"))
    ap.add_argument("--limit", type=int, default=10, help="first N questions")
    ap.add_argument(
        "--model",
        action="append",
        metavar="NAME=PATH",
        help="a GGUF to answer with, named as in the orchestrate experiment (repeatable); "
        "default: smollm2-135m-instruct and gemma-3-270m",
    )
    ap.add_argument("--embedding-model", default="all-MiniLM-L6-v2")
    ap.add_argument("--template", default=STOCK_TEMPLATE, help="prompt with {context} and {question}")
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--chunk-overlap", type=int, default=100)
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args()
    t_all = time.perf_counter()

    models = []
    for spec in args.model or [f"{n}={f}" for n, f in DEFAULT_MODELS]:
        name, _, path = spec.partition("=")
        if not path:
            name, path = Path(spec).stem, spec
        models.append((name, model_file(path)))
    emb_dir = model_file(args.embedding_model)

    questions = tomllib.loads(Path(args.qa).read_text())["question"][: args.limit]

    # heavy imports after argument checks
    from langchain_classic.chains import RetrievalQA
    from langchain_classic.retrievers import EnsembleRetriever
    from langchain_community.llms import LlamaCpp
    from langchain_community.retrievers import BM25Retriever
    from langchain_community.vectorstores import FAISS
    from langchain_core.prompts import PromptTemplate
    from sentence_transformers import SentenceTransformer, util

    import torch

    pages, fixture = load_pages(args.pages, args.fixture)
    chunks, split_check = split(pages, fixture, args.chunk_size, args.chunk_overlap, "main.pdf")
    print(f"{len(pages)} pages -> {len(chunks)} chunks (fixture match: {split_check['matches']})", file=sys.stderr)

    # index build: embeddings model load + FAISS (embeds every chunk) + BM25
    t0 = time.perf_counter()
    emb, emb_where = embeddings(emb_dir)
    t_emb_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    bm25 = BM25Retriever.from_documents(chunks, k=5)
    t_bm25 = time.perf_counter() - t1
    t1 = time.perf_counter()
    vectorstore = FAISS.from_documents(chunks, emb)
    t_faiss = time.perf_counter() - t1
    mmr = vectorstore.as_retriever(search_type="mmr", search_kwargs={"k": 4, "fetch_k": 3})
    retriever = EnsembleRetriever(retrievers=[bm25, mmr], weights=[0.3, 0.7])
    index_build_s = time.perf_counter() - t0
    print(f"index built in {index_build_s:.1f} s (FAISS {t_faiss:.1f} s)", file=sys.stderr)

    scorer = SentenceTransformer(str(emb_dir))
    expected_vecs = scorer.encode([q["expected_answer"] for q in questions])
    prompt = PromptTemplate(template=args.template, input_variables=["context", "question"])

    results = []
    for name, path in models:
        t_load = time.perf_counter()
        llm = LlamaCpp(
            model_path=str(path),
            temperature=0.01,
            top_p=1,
            max_tokens=256,
            n_ctx=2048,
            verbose=False,
        )
        load_s = time.perf_counter() - t_load
        observed = observed_llama(llm)  # before any call: the seed as loaded
        calls = capture_completions(llm)
        qa = RetrievalQA.from_chain_type(
            llm,
            chain_type="stuff",
            retriever=retriever,
            chain_type_kwargs={"prompt": prompt},
            return_source_documents=True,
        )
        doc_sep = qa.combine_documents_chain.document_separator
        answers = []
        t_model = time.perf_counter()
        for i, q in enumerate(questions):
            n_calls = len(calls)
            t = time.perf_counter()
            out = qa.invoke({"query": q["question"]})
            wall = time.perf_counter() - t
            answer = out["result"]
            docs = out["source_documents"]
            call = calls[n_calls] if len(calls) > n_calls else {}
            texts = [d.page_content for d in docs]
            expected_prompt = args.template.format(context=doc_sep.join(texts), question=q["question"])
            vec = scorer.encode([answer])
            cosine = float(util.cos_sim(vec, expected_vecs[i : i + 1])[0][0])
            retok = len(llm.client.tokenize(answer.encode(), add_bos=False, special=False))
            answers.append(
                {
                    "id": q["id"],
                    "question": q["question"],
                    "expected_answer": q["expected_answer"],
                    "answer": answer,
                    "completion_tokens": call.get("completion_tokens"),
                    "answer_tokens_retokenized": retok,
                    "prompt_tokens": call.get("prompt_tokens"),
                    "finish_reason": call.get("finish_reason"),
                    "sampler_seed": call.get("seed"),
                    "wall_s": round(wall, 4),
                    "cosine": cosine,
                    "prompt_matches_stuff_join": call.get("prompt") == expected_prompt,
                    "retrieved": [
                        {"chunk_id": d.metadata["chunk_id"], "page": d.metadata["page"], "text": d.page_content}
                        for d in docs
                    ],
                }
            )
            print(
                f"[{name}] {q['id']} {wall:6.2f}s {call.get('completion_tokens')} tok cos {cosine:.3f} "
                f"{answer[:70]!r}",
                file=sys.stderr,
            )
        model_s = time.perf_counter() - t_model
        per_call_kwargs = calls[0]["kwargs"] if calls else {}
        cos = [a["cosine"] for a in answers]
        results.append(
            {
                "model": name,
                "gguf": path.name,
                "load_s": round(load_s, 3),
                "questions_s": round(model_s, 3),
                "mean_cosine": sum(cos) / len(cos) if cos else None,
                "total_completion_tokens": sum(a["completion_tokens"] or 0 for a in answers),
                "mean_wall_s": model_s / len(answers) if answers else None,
                "llamacpp_fields": {
                    k: getattr(llm, k)
                    for k in (
                        "temperature", "top_p", "top_k", "max_tokens", "n_ctx", "n_batch",
                        "n_threads", "seed", "repeat_penalty", "last_n_tokens_size",
                        "rope_freq_base", "rope_freq_scale", "stop", "echo", "logprobs",
                        "suffix", "streaming", "use_mmap", "use_mlock", "f16_kv",
                    )
                },
                "create_completion_kwargs": per_call_kwargs,
                "observed": observed,
                "answers": answers,
            }
        )
        del qa, llm

    doc = {
        "generator": "tests/side_by_side/langchain_pipeline.py",
        "versions": versions(),
        "torch_threads": torch.get_num_threads(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            "documents": "orchestrate's page texts of corpora/bacula/main.pdf (dump_pages), "
            "checked against tests/fixtures/splitter/bacula_all_pages.json; a real notebook's "
            "PyPDFLoader text differs",
            "splitter": f"RecursiveCharacterTextSplitter(chunk_size={args.chunk_size}, "
            f"chunk_overlap={args.chunk_overlap}).split_documents(pages)",
            "embeddings": f"{emb_where}(model_name=<{emb_dir.name}>)",
            "retriever": "EnsembleRetriever([BM25Retriever.from_documents(chunks, k=5), "
            "FAISS.from_documents(chunks, emb).as_retriever(search_type='mmr', "
            "search_kwargs={'k': 4, 'fetch_k': 3})], weights=[0.3, 0.7])",
            "llm": "LlamaCpp(model_path=..., temperature=0.01, top_p=1, max_tokens=256, "
            "n_ctx=2048, verbose=False)",
            "chain": "RetrievalQA.from_chain_type(llm, chain_type='stuff', retriever=..., "
            "chain_type_kwargs={'prompt': PromptTemplate(template=T, "
            "input_variables=['context', 'question'])})",
            "template": args.template,
            "stuff_document_separator": doc_sep,
            "stuff_document_prompt": qa_doc_prompt_repr(),
            "questions": f"first {args.limit} of {Path(args.qa).relative_to(REPO) if Path(args.qa).is_relative_to(REPO) else args.qa}",
            "cosine": "sentence_transformers.util.cos_sim(SentenceTransformer(all-MiniLM-L6-v2).encode(answer), "
            "....encode(expected_answer))",
            "tokens": "completion_tokens: the non-end-of-generation tokens llama-cpp-python "
            "sampled (counted around Llama.generate; LlamaCpp streams and drops usage); "
            "answer_tokens_retokenized re-tokenizes the returned text",
        },
        "corpus": {
            "pages": len(pages),
            "chunks": len(chunks),
            "split_check": split_check,
        },
        "index": {
            "index_build_s": round(index_build_s, 3),
            "embedding_model_load_s": round(t_emb_load, 3),
            "bm25_s": round(t_bm25, 3),
            "faiss_embed_and_index_s": round(t_faiss, 3),
        },
        "models": results,
        "total_wall_s": round(time.perf_counter() - t_all, 3),
    }
    Path(args.out).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    for r in results:
        print(
            f"{r['model']}: mean cosine {r['mean_cosine']:.3f}, {r['total_completion_tokens']} tokens, "
            f"{r['questions_s']:.1f} s for {len(r['answers'])} questions",
            file=sys.stderr,
        )
    print(f"total {doc['total_wall_s']:.1f} s -> {args.out}", file=sys.stderr)


def qa_doc_prompt_repr():
    """The stuff chain's per-document prompt (how each Document becomes text): its default."""
    try:
        from langchain_classic.chains.combine_documents.base import DEFAULT_DOCUMENT_PROMPT

        return DEFAULT_DOCUMENT_PROMPT.template
    except Exception as e:
        return f"unavailable: {e}"


if __name__ == "__main__":
    main()
