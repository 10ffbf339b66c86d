"""The speed suite: indexing, search and ask latency at growing sizes, cold start, updates, size.

    .venv/bin/python bench/suite.py --scifact ../shared/eval/scifact                # 10k and 100k chunks
    .venv/bin/python bench/suite.py --scifact ../shared/eval/scifact --index-docs 300 --sizes 1000000

(1M chunks: about 37 minutes and a peak of 20 GB of RSS here.)

Prints a table for people and writes JSON for machines to bench/results/suite-<time>.json.

- Indexing: SciFact (or its first --index-docs documents), with the real encoder: articles/s,
  chunks/s, word pieces/s, the time split (reading, chunking, encoding, the rest: BM25, FAISS,
  writing), the encoder's share of the time, and peak RSS.
- Sizes: corpora of N chunks made of SciFact repeated, ids made unique. Encoding 100k chunks
  takes hours here, so the corpus vectors are replayed from the SciFact index that
  `rag eval --beir` / bench/encoders.py built (build it first), each repeat perturbed with
  Gaussian noise (sigma 0.02 per dimension, then re-normalised) so no two copies coincide;
  queries are encoded for real. BM25 is real. Search: one query at a time (p50/p95/p99,
  encoding included), and queries/s with the queries encoded in one batch; ask: extractive.
- Updates, at each size: adding 1 and 100 new article files (encoded for real) and removing
  1, with `Index.update` in the warm process; adding 1 with a new `rag index` process.
- `--search-factors 3 6 12`: recall and search latency again with the graphs' efSearch at
  those multiples of the depth (rag searches at 1.5), a what-if for choosing the setting.
- Cold start: a new `rag ask` process on the index at the smallest size (after its updates,
  with the warm index out of memory), to its answer.

The JSON is rewritten after each size, so a long run keeps what it measured if it stops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from encoders import TokenTally  # bench/ is on the path when this runs as a script

import rag.storage.vectors
from rag import Config, Index
from rag.config import configure_process
from rag.encoders.minilm import default_embedder
from rag.eval.beir import (
    cached_index,
    corpus_path,
    load_corpus,
    load_qrels,
    load_queries,
)
from rag.ingest.update import index_articles
from rag.records import Article, SearchFilter
from rag.search.retrieval import rank_chunks
from rag.search.typos import QueryTerms
from rag.storage.vectors import VectorIndex
from rag.text.chunking import split_article
from rag.text.normalize import terms

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "encoder": os.environ.get("RAG_ENCODER", "onnx-int8")}


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    return {f"p{q}_ms": round(float(np.percentile(samples, q)), 2) for q in (50, 95, 99)}


def latency(action: Callable[[str], object], queries: Sequence[str]) -> dict[str, float]:
    """p50/p95/p99 in ms of `action` run on one query at a time."""
    samples = []
    for query in queries:
        started = time.perf_counter()
        action(query)
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def rss_mb() -> float:
    """Resident memory now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ReplayEncoder:
    """Vectors of texts already encoded (SciFact's sentences), each repeat of a text perturbed."""

    def __init__(self, vectors: dict[str, np.ndarray], real: TokenTally) -> None:
        self.vectors, self.real, self.seen = vectors, real, Counter()
        self.name, self.dim, self.max_tokens = real.name, real.dim, real.max_tokens

    def describe(self) -> dict[str, str]:
        return self.real.describe()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.real.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.empty((len(texts), self.dim), dtype=np.float32)  # filled in place: 1M chunks' worth is GBs
        for row, text in enumerate(texts):
            self.seen[text] += 1
            base = self.vectors.get(text)
            seed = int.from_bytes(hashlib.blake2b(f"{self.seen[text]}:{text}".encode(), digest_size=8).digest(), "little")
            rows[row] = np.random.default_rng(seed).normal(0, 0.02, self.dim)
            if base is not None:
                rows[row] += base
            rows[row] /= np.linalg.norm(rows[row])
        return rows

    def embed_pooled(self, texts: Sequence[str], groups: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.embed(texts)
        pooled = np.empty((len(groups), self.dim), dtype=np.float32)
        for row, group in enumerate(groups):
            pooled[row] = vectors[list(group)].mean(axis=0)
        return vectors, pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def bench_indexing(articles: list[Article], workdir: Path) -> dict[str, object]:
    encoder = TokenTally(default_embedder())
    encoder.embed(["warm up"])
    encoder.seconds = encoder.word_pieces = 0
    started = time.perf_counter()
    report = index_articles(articles, workdir / "indexing", encoder)
    total = time.perf_counter() - started
    chunking_started = time.perf_counter()
    for article in articles:
        split_article(article, encoder.count_tokens, encoder.max_tokens, Config())
    chunking = time.perf_counter() - chunking_started
    corpus_pieces = sum(encoder.count_tokens([article.text for article in articles]))
    return {
        "articles": len(articles), "chunks": report.chunks_embedded, "seconds": round(total, 2),
        "articles_per_s": round(len(articles) / total, 1), "chunks_per_s": round(report.chunks_embedded / total, 1),
        "word_pieces_per_s": round(encoder.word_pieces / total),
        "bare_encoder_word_pieces_per_s": round(encoder.word_pieces / encoder.seconds),
        "indexing_share_of_encoder_speed": round(encoder.seconds / total, 3),
        "word_pieces_encoded_per_corpus_piece": round(encoder.word_pieces / corpus_pieces, 3),
        "split_s": {"chunking": round(chunking, 2), "encoding": round(encoder.seconds, 2),
                    "bm25_faiss_writing": round(total - chunking - encoder.seconds, 2)},
        "peak_rss_mb": round(peak_rss_mb()),
    }


def copies(articles: list[Article], chunks_wanted: int, chunks_per_article: float) -> list[Article]:
    """SciFact repeated until about `chunks_wanted` chunks, each repeat with its own ids."""
    count = max(1, round(chunks_wanted / chunks_per_article))
    return [replace(articles[i % len(articles)], id=f"{articles[i % len(articles)].id}~{i // len(articles)}",
                    content_hash=f"{articles[i % len(articles)].content_hash}~{i // len(articles)}")
            for i in range(count)]


def bench_size(articles: list[Article], replay: ReplayEncoder, queries: list[str], path: Path,
               factors: Sequence[float]) -> tuple[Index, dict]:
    started = time.perf_counter()
    index_articles(articles, path, replay)
    build = time.perf_counter() - started
    before = rss_mb()
    index = Index.open(path, embedder=replay.real.inner)
    chunks = index.stats().chunks
    for query in queries[:20]:
        index.search(query, k=10)  # warm; the first search also reads the vector graphs
    in_memory = rss_mb() - before
    search = latency(lambda query: index.search(query, k=10), queries)
    ask = latency(index.ask, queries[:100])
    started = time.perf_counter()
    query_vectors = replay.real.inner.embed(queries)
    snapshot = index.snapshot
    for query, vector in zip(queries, query_vectors, strict=True):
        rank_chunks(snapshot, vector, QueryTerms.plain(terms(query)), 10, SearchFilter(), index.config)
    batched = len(queries) / (time.perf_counter() - started)
    depth = index.config.candidates  # as retrieval searches: chunks at this depth, sentences at twice it
    graphs = {name: (getattr(snapshot, f"{name}_vectors"), times) for name, times in (("chunk", 1), ("sentence", 2))}
    exact = {name: exact_top_10(graph, query_vectors[:100]) for name, (graph, _) in graphs.items()}
    recall = {name: graph_recall_at_10(graph, query_vectors[:100], depth * times, exact[name])
              for name, (graph, times) in graphs.items()}
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    other_factors = sweep_search_factors(index, queries, query_vectors[:100], graphs, exact, factors)
    return index, {
        "chunks": chunks, "sentences": index.stats().sentences, "build_s": round(build, 1),
        "vector_search": index.stats().vector_search, "recall@10_vs_exact": recall,
        **({"other_search_factors": other_factors} if other_factors else {}),
        "search": search, "ask": ask, "batched_queries_per_s": round(batched, 1),
        "disk_bytes_per_chunk": round(disk / chunks), "memory_bytes_per_chunk": round(in_memory * 2**20 / chunks),
    }


def exact_top_10(index: VectorIndex, queries: np.ndarray) -> np.ndarray | None:
    """Each query's exact top 10 ids by inner product (None: the index is exact already)."""
    if not index.is_graph:
        return None
    ids = index.ids()
    return ids[np.argsort(-(index.vectors_of(ids) @ queries.T), axis=0)[:10].T]


def graph_recall_at_10(index: VectorIndex, queries: np.ndarray, depth: int, exact: np.ndarray | None) -> float | None:
    """Share of the exact top 10 in the top 10 of the index's own search at the depth
    retrieval asks for, which sets the graph's efSearch (None: the index is exact)."""
    if exact is None:
        return None
    found = [set(index.search(query, depth, None)[:10].tolist()) for query in queries]
    return round(float(np.mean([len(f & set(e.tolist())) / 10 for f, e in zip(found, exact, strict=True)])), 4)


def sweep_search_factors(index: Index, queries: list[str], query_vectors: np.ndarray,
                         graphs: dict[str, tuple[VectorIndex, int]], exact: dict[str, np.ndarray | None],
                         factors: Sequence[float]) -> dict[str, dict]:
    """What-if for the graphs' efSearch: recall@10 against exact search and hybrid search
    latency (100 queries) with `rag.storage.vectors.GRAPH_SEARCH_FACTOR` set to each factor."""
    if not factors or all(top is None for top in exact.values()):
        return {}
    shipped, results, depth = rag.storage.vectors.GRAPH_SEARCH_FACTOR, {}, index.config.candidates
    try:
        for factor in factors:
            rag.storage.vectors.GRAPH_SEARCH_FACTOR = factor
            recall = {name: graph_recall_at_10(graph, query_vectors, depth * times, exact[name])
                      for name, (graph, times) in graphs.items()}
            search = latency(lambda query: index.search(query, k=10), queries[:100])
            results[f"{factor:g}x"] = {"recall@10_vs_exact": recall, "search": search}
    finally:
        rag.storage.vectors.GRAPH_SEARCH_FACTOR = shipped
    return results


def bench_updates(index: Index, fresh: list[Article], folder: Path) -> dict[str, float]:
    """Updates as users make them, new article files in a folder: `Index.update` in the warm
    process (adding 1, then 100, then removing 1)."""
    folder.mkdir()
    results = {}
    for label, batch in (("add_1_s", fresh[:1]), ("add_100_s", fresh[1:101])):
        for article in batch:
            (folder / f"{article.id}.txt").write_text(article.text, encoding="utf-8")
        started = time.perf_counter()
        report = index.update([folder])
        results[label] = round(time.perf_counter() - started, 2)
        assert len(report.added) == len(batch), report.summary()
    (folder / f"{fresh[0].id}.txt").unlink()
    started = time.perf_counter()
    assert index.update([folder]).removed == [fresh[0].id]
    results["remove_1_s"] = round(time.perf_counter() - started, 2)
    return results


def bench_cli_add(index_dir: Path, article: Article, folder: Path) -> float:
    """Seconds for a new `rag index` process (model load included) to add one article file."""
    (folder / f"{article.id}.txt").write_text(article.text, encoding="utf-8")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(folder), "--index", str(index_dir)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"rag index failed: {done.stderr}")
    return round(time.perf_counter() - started, 2)


def bench_cold_start(index_dir: Path, question: str) -> dict[str, float]:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "rag.cli", "ask", question, "--index", str(index_dir)],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"rag ask failed: {done.stderr}")
    return {"first_answer_s_best": round(min(samples), 2), "first_answer_s_median": round(float(np.median(samples)), 2)}


def replay_vectors(scifact: Path, cache: Path) -> dict[str, np.ndarray]:
    """Sentence text -> vector, from the SciFact index of the default settings."""
    index = cached_index(scifact, cache, default_embedder(), Config())
    snapshot = index.snapshot
    return {text: snapshot.sentence_vectors.vectors_of([sentence_id])[0]
            for article_id in snapshot.chunk_ids_of_article for sentence_id, text in snapshot.article_sentences(article_id)}


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scifact", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path(".cache/beir"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--index-docs", type=int, default=0,
                        help="SciFact documents indexed for real (0: all, as the framework comparison does)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--search-factors", type=float, nargs="*", default=[],
                        help="also measure graph recall and search latency at these efSearch factors (what-if)")
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    base = load_corpus(corpus_path(args.scifact))
    queries = list(load_queries(args.scifact, load_qrels(args.scifact, "train")).values())[: args.queries]
    results: dict[str, object] = {"machine": machine(), "started": dt.datetime.now().isoformat(timespec="seconds")}
    workdir = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"suite-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    try:
        results["indexing"] = bench_indexing(base[: args.index_docs or None], workdir)
        print_section("indexing", results["indexing"])
        replay = ReplayEncoder(replay_vectors(args.scifact, args.cache), TokenTally(default_embedder()))
        base_index = cached_index(args.scifact, args.cache, default_embedder(), Config())
        chunks_per_article = base_index.stats().chunks / base_index.stats().articles
        results["sizes"] = sizes = {}
        for size in args.sizes:
            index, sizes[str(size)] = bench_size(copies(base, size, chunks_per_article), replay, queries,
                                                 workdir / f"size-{size}", args.search_factors)
            print_section(f"{size} chunks", sizes[str(size)])
            save(results, out)  # what a long run measured survives its end
            fresh = [replace(article, id=f"{article.id}-new") for article in base[-102:]]
            updates = bench_updates(index, fresh, workdir / f"new-{size}")
            index_dir, index = index.path, None  # the warm index leaves memory before a new process loads it
            updates["add_1_cli_s"] = bench_cli_add(index_dir, fresh[101], workdir / f"new-{size}")
            sizes[str(size)]["updates"] = updates
            print_section(f"{size} chunks: updates", updates)
            save(results, out)
            if len(sizes) == 1:  # on the smallest size, after its updates
                results["cold_start"] = bench_cold_start(index_dir, queries[0])
                print_section("cold start", results["cold_start"])
            shutil.rmtree(index_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    save(results, out)
    print(f"\n{results['machine']}\nJSON: {out}")


def save(results: dict[str, object], out: Path) -> None:
    out.write_text(json.dumps(results, indent=2) + "\n")


def print_section(title: str, values: dict[str, object]) -> None:
    print(f"\n== {title}")
    for key, value in values.items():
        print(f"  {key:<40} {value}")


if __name__ == "__main__":
    main()
