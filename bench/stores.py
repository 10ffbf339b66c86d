"""The two stores side by side in one run: the same index as a folder and on Milvus.

    .venv/bin/python bench/stores.py                  # seeds and the SciFact slice, milvus-lite
    .venv/bin/python bench/stores.py --milvus http://host:19530   # a cluster (RAG_MILVUS_TOKEN)

For each corpus, the folder index is built with the packaged MiniLM and exported to Milvus
(the same vectors) twice, with an exact (FLAT) and a graph (HNSW, the default) dense index;
then every query is searched (hybrid, k=10) and asked on the folder and on each, warm (one
untimed pass first). Prints parity (share of queries whose top 10 is the same, in order),
nDCG@10 on the slice for both, and p50/p95 latency of search and ask per store, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from rag import Config, Index, build_index
from rag.config import configure_process
from rag.encoders.minilm import default_embedder
from rag.eval.beir import load_corpus, load_qrels, load_queries, score_run
from rag.ingest.export import export_index
from rag.ingest.update import index_articles

ROOT = Path(__file__).resolve().parent.parent
SLICE = ROOT / "tests" / "data" / "scifact_slice"


def latency(function, queries: list[str]) -> dict[str, float]:
    for query in queries:  # warm: caches, loaded segments
        function(query)
    samples = []
    for query in queries:
        started = time.perf_counter()
        function(query)
        samples.append((time.perf_counter() - started) * 1000)
    return {f"p{q}_ms": round(float(np.percentile(samples, q)), 1) for q in (50, 95)}


def compare(folder: Path, milvus: str, queries: dict[str, str], embedder, qrels=None) -> dict:
    indexes = {"folder": Index.open(folder, embedder=embedder), "milvus": Index.open(milvus, embedder=embedder)}
    try:
        texts = list(queries.values())
        top = {name: {qid: [(h.chunk.article_id, h.chunk.start) for h in index.search(text, k=10)]
                      for qid, text in queries.items()} for name, index in indexes.items()}
        result = {"queries": len(queries),
                  "same_top10": round(sum(top["folder"][q] == top["milvus"][q] for q in queries) / len(queries), 3)}
        if qrels is not None:
            result["ndcg@10"] = {name: round(score_run(qrels, queries, {
                qid: {article: 1.0 / rank for rank, (article, _) in enumerate(hits, start=1)}
                for qid, hits in runs.items()})["ndcg@10"], 4) for name, runs in top.items()}
        for name, index in indexes.items():
            result[name] = {"search": latency(lambda q, index=index: index.search(q, k=10), texts),
                            "ask": latency(lambda q, index=index: index.ask(q), texts)}
        return result
    finally:
        indexes["milvus"].close()


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--milvus", help="a Milvus cluster's URL (default: a milvus-lite file in a temporary folder)")
    args = parser.parse_args()
    embedder = default_embedder()
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for name, build, queries, qrels in (
            ("seeds", lambda path: build_index([ROOT / "seeds"], path, embedder=embedder),
             {str(i): json.loads(line)["question"] for i, line in enumerate(
                 (ROOT / "tests" / "data" / "qa_set.jsonl").read_text().splitlines())}, None),
            ("scifact_slice", lambda path: index_articles(load_corpus(SLICE / "corpus.jsonl"), path, embedder, Config()),
             load_queries(SLICE, load_qrels(SLICE, "train")), load_qrels(SLICE, "train")),
        ):
            folder = work / name
            build(folder)
            report[name] = {}
            for index_type in ("FLAT", "HNSW"):  # exact as the folder below 10k vectors, and the default graph
                os.environ["RAG_MILVUS_INDEX"] = index_type
                milvus = args.milvus or f"milvus-lite:{work / f'{name}-{index_type}.db'}"
                started = time.perf_counter()
                export_index(folder, milvus, replace=True)
                report[name][f"milvus {index_type}"] = {"export_s": round(time.perf_counter() - started, 1),
                                                        **compare(folder, milvus, queries, embedder, qrels)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
