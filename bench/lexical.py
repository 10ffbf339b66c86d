"""BM25 at a given number of chunks: a build from scratch, an update, and query latency.

A build from scratch is what `rag index --rebuild` and a compaction cost (tokenising every
chunk dominates); an update appends a segment of the new chunks' postings and drops the
removed ones; a query scores every chunk from the postings of its terms. Chunks are SciFact
abstracts repeated to the size asked for; queries are SciFact's train claims.

    .venv/bin/python bench/lexical.py ../shared/eval/scifact --chunks 100000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rag.config import configure_process
from rag.eval.beir import corpus_path, load_corpus, load_qrels, load_queries
from rag.records import Chunk
from rag.storage.lexical import LexicalIndex
from rag.text.normalize import terms


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--chunks", type=int, default=100_000)
    args = parser.parse_args()
    articles = load_corpus(corpus_path(args.dataset))
    chunks = [Chunk(chunk_id=str(n), article_id=str(n), start=articles[n % len(articles)].body_start,
                    end=len(articles[n % len(articles)].text), text=articles[n % len(articles)].body,
                    title=articles[n % len(articles)].title, heading=articles[n % len(articles)].heading, date=None)
              for n in range(args.chunks + 101)]
    base, fresh = chunks[: args.chunks], chunks[args.chunks :]
    words = sum(len(chunk.text.split()) for chunk in base)

    started = time.perf_counter()
    index = LexicalIndex.build(base)
    build = time.perf_counter() - started
    print(f"build over {len(base):,} chunks ({words / len(base):.0f} words each): {build:.1f} s "
          f"({len(base) / build:,.0f} chunks/s); vocabulary {len(index.vocab):,} terms")

    for count in (1, 100):
        started = time.perf_counter()
        updated = index.appended(np.array([0]), fresh[:count])  # remove one chunk, add `count`
        updated.scores(["cell"])  # the first query after an update computes the new statistics
        print(f"update (add {count}, remove 1) and first query: {(time.perf_counter() - started) * 1000:.0f} ms")

    queries = [terms(q) for q in load_queries(args.dataset, load_qrels(args.dataset, "train")).values()]
    index.scores(queries[0])
    samples = []
    for query in queries:
        started = time.perf_counter()
        index.scores(query)
        samples.append((time.perf_counter() - started) * 1000)
    print(f"query, {len(queries)} SciFact claims: p50 {np.percentile(samples, 50):.2f} ms, "
          f"p95 {np.percentile(samples, 95):.2f} ms")


if __name__ == "__main__":
    main()
