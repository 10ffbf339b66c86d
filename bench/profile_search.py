"""Where the ranking of one query spends its time, on a built index (query encoding excluded).

    .venv/bin/python bench/profile_search.py INDEX_DIR --scifact ../shared/eval/scifact

Encodes SciFact train claims first, times `rank_chunks` one query at a time (p50/p95), then
prints cProfile's functions by own time for the same queries.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

import numpy as np

from rag import Index
from rag.config import configure_process
from rag.eval.beir import load_qrels, load_queries
from rag.records import SearchFilter
from rag.search.retrieval import rank_chunks
from rag.search.typos import QueryTerms
from rag.text.normalize import terms


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--scifact", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    index = Index.open(args.index)
    texts = list(load_queries(args.scifact, load_qrels(args.scifact, "train")).values())[: args.queries]
    queries = list(zip(index.embedder.embed(texts), [QueryTerms.plain(terms(text)) for text in texts], strict=True))
    snapshot = index.snapshot  # the ranking alone, without the public wrapper's encoding

    def rank(vector: np.ndarray, query_terms: QueryTerms) -> None:
        rank_chunks(snapshot, vector, query_terms, 10, SearchFilter(), index.config)

    for vector, query_terms in queries[:20]:
        rank(vector, query_terms)
    samples = []
    for vector, query_terms in queries:
        started = time.perf_counter()
        rank(vector, query_terms)
        samples.append((time.perf_counter() - started) * 1000)
    print(f"rank_chunks, {len(queries)} queries: p50 {np.percentile(samples, 50):.2f} ms, "
          f"p95 {np.percentile(samples, 95):.2f} ms")
    profile = cProfile.Profile()
    profile.enable()
    for vector, query_terms in queries:
        rank(vector, query_terms)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
