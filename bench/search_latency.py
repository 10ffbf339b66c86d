"""Search and answer latency, one query at a time, on a built index.

    .venv/bin/python bench/search_latency.py --beir ../shared/eval/scifact   # the SciFact index of `rag eval --beir`
    .venv/bin/python bench/search_latency.py --index index --queries tests/data/seeds_dev.jsonl

Prints p50/p95/p99 in milliseconds for query encoding alone, for each retriever (encoding
included) at k=10, for hybrid search again from a worker thread (as the web page runs it), and
for `ask` (extractive). Warm: one untimed pass first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rag import Config, Index
from rag.config import configure_process
from rag.encoders.minilm import default_embedder
from rag.eval.beir import cached_index, load_qrels, load_queries
from rag.eval.questions import load_questions


def percentiles(samples: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": round(float(np.percentile(samples, q)), 2) for q in (50, 95, 99)}


def timed(function, queries: list[str]) -> list[float]:
    samples = []
    for query in queries:
        started = time.perf_counter()
        function(query)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beir", type=Path, help="BEIR dataset folder; its cached index is used (built if missing)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--cache", type=Path, default=Path(".cache/beir"))
    parser.add_argument("--index", type=Path, help="an index directory (with --queries)")
    parser.add_argument("--queries", type=Path, help="question set in the seeds_dev.jsonl format")
    parser.add_argument("--limit", type=int, default=300, help="queries to time")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    if args.beir:
        index = cached_index(args.beir, args.cache, default_embedder(), Config())
        queries = list(load_queries(args.beir, load_qrels(args.beir, args.split)).values())
    else:
        index = Index.open(args.index)
        queries = [q.question for q in load_questions(args.queries)]
    queries = queries[: args.limit]
    for query in queries[:20]:  # warm up: model load, caches
        index.search(query, k=10)

    results = {
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "index": {"chunks": index.stats().chunks, "sentences": index.stats().sentences},
        "queries": len(queries),
        "encode_query": percentiles(timed(index.embed_query, queries)),
    }
    for retriever in ("bm25", "dense", "hybrid"):
        results[f"search_{retriever}_k10"] = percentiles(
            timed(lambda q, r=retriever: index.search(q, k=10, retriever=r), queries))
    with ThreadPoolExecutor(max_workers=1) as server:  # as a web server answers a request
        results["worker_thread_search_hybrid_k10"] = percentiles(
            server.submit(timed, lambda q: index.search(q, k=10), queries).result())
    answer_ms = [index.ask(q).timings["answer_ms"] for q in queries]
    results["ask_total"] = percentiles(timed(index.ask, queries))
    results["ask_answering_only"] = percentiles(answer_ms)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['machine']['cpu']}, {results['machine']['cores']} cores; index of "
          f"{results['index']['chunks']} chunks, {results['index']['sentences']} sentences; {len(queries)} queries")
    for name, figures in results.items():
        if name.endswith(("_k10", "query", "total", "only")):
            print(f"  {name:<32}" + "".join(f"{key} {value:>8.2f}   " for key, value in figures.items()))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
