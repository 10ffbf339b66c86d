"""Retrieval evaluation on any dataset in BEIR format, scored with pytrec_eval.

A BEIR folder holds `corpus.jsonl` (or `.jsonl.gz`), `queries.jsonl` and `qrels/<split>.tsv`.
Each document becomes one article (its title, then its text); the index is built once in a
cache folder keyed by the corpus hash and every setting it depends on, then reused.

Scored as BEIR scores: a query's own document is left out of its ranking (ArguAna's and
Quora's queries are documents of the corpus), and every judged query of queries.jsonl counts,
one that retrieves nothing (an empty query) as 0 (judged queries it does not list are left
out, with a warning). A benchmark's queries are given, not typed, so the
question-length limit is lifted to its longest query.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytrec_eval

from rag.config import Config
from rag.encoders.base import Embedder
from rag.errors import RagError
from rag.index import Index
from rag.ingest.update import ProgressCallback, index_articles
from rag.records import Article
from rag.search.retrieval import Retriever
from rag.storage.layout import CURRENT_FILE, FORMAT_VERSION

log = logging.getLogger(__name__)

_MEASURES = {"ndcg_cut_10": "ndcg@10", "recall_100": "recall@100"}
_RANKED_ARTICLES = 100


def corpus_path(dataset: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (dataset / name).is_file():
            return dataset / name
    raise RagError(f"{dataset} holds no corpus.jsonl or corpus.jsonl.gz: is it a BEIR dataset folder?")


def load_corpus(path: Path) -> list[Article]:
    """BEIR documents as articles: title, then a blank line, then the text (the body)."""
    opener = gzip.open if path.suffix == ".gz" else open
    articles = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for row in _rows(handle, path):
            title = " ".join(str(row.get("title") or "").split())
            body = str(row.get("text") or "").strip() or title  # a title-only document is its title
            if not body:
                continue
            text = f"{title}\n\n{body}" if title and body != title else body
            articles.append(Article(
                id=str(row["_id"]), title=title or body[:100], heading=title or body[:100], date=None, text=text,
                body_start=len(text) - len(body), source=path,
                content_hash=hashlib.sha256(text.encode()).hexdigest(),
            ))
    return articles


def load_queries(dataset: Path, qrels: dict[str, dict[str, int]]) -> dict[str, str]:
    queries = {}
    path = dataset / "queries.jsonl"
    if not path.is_file():
        raise RagError(f"{dataset} holds no queries.jsonl: is it a BEIR dataset folder?")
    with path.open(encoding="utf-8") as handle:
        for row in _rows(handle, path):
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = str(row.get("text", ""))
    if unlisted := len(set(qrels) - set(queries)):
        log.warning("%d judged queries of %s are not in queries.jsonl and are left out of the scores", unlisted, path)
    return queries


def load_qrels(dataset: Path, split: str) -> dict[str, dict[str, int]]:
    path = dataset / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise RagError(f"no relevance judgements at {path}: choose a split that the dataset has")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or (number == 1 and not line.rstrip("\n").rsplit("\t", 1)[-1].strip().isdigit()):
                continue  # the header ("query-id corpus-id score"), if the file has one
            try:
                query_id, doc_id, score = line.rstrip("\n").split("\t")
                qrels.setdefault(query_id, {})[doc_id] = int(score)
            except ValueError:
                raise RagError(f"{path}:{number}: expected query-id, corpus-id and score separated by tabs") from None
    if not qrels:
        raise RagError(f"{path} holds no relevance judgements")
    return qrels


def _rows(handle: Iterable[str], path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, with `_id` checked; a bad line names itself."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "_id" not in row:
                raise ValueError("no _id")
        except ValueError as error:
            raise RagError(f"{path}:{number}: not a BEIR record ({error})") from None
        yield row


def cached_index(dataset: Path, cache: Path, embedder: Embedder, config: Config,
                 progress: ProgressCallback | None = None) -> Index:
    """Open the dataset's index from the cache, building it first if needed."""
    corpus = corpus_path(dataset)
    key = hashlib.sha256()
    key.update(corpus.read_bytes())
    key.update(json.dumps([FORMAT_VERSION, embedder.name, embedder.dim, config.chunker_settings()]).encode())
    path = cache / f"{dataset.name}-{key.hexdigest()[:16]}"
    if not (path / CURRENT_FILE).exists():
        log.info("building the %s index in %s", dataset.name, path)
        index_articles(load_corpus(corpus), path, embedder, config, progress=progress)
    return Index.open(path, embedder=embedder, config=config)


def evaluate_beir(dataset: Path, split: str, cache: Path, embedder: Embedder, config: Config | None = None,
                  progress: ProgressCallback | None = None) -> dict[str, Any]:
    """nDCG@10, Recall@100 and MRR@10 for BM25, dense and hybrid retrieval, with latencies."""
    qrels = load_qrels(dataset, split)
    queries = load_queries(dataset, qrels)
    config = config or Config()
    config = replace(config, max_query_chars=max([config.max_query_chars, *map(len, queries.values())]))
    index = cached_index(dataset, cache, embedder, config, progress)
    runs: dict[str, Any] = {}
    for retriever in ("bm25", "dense", "hybrid"):
        run, latencies = run_queries(index, queries, retriever)
        runs[retriever] = {
            **score_run(qrels, queries, run),
            "p50_ms": float(np.percentile(latencies, 50)) if latencies else 0.0,
            "p95_ms": float(np.percentile(latencies, 95)) if latencies else 0.0,
        }
    return {"dataset": dataset.name, "split": split, "queries": len(queries), "runs": runs}


def score_run(qrels: dict[str, dict[str, int]], queries: dict[str, str],
              run: dict[str, dict[str, float]]) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 (trec_eval's definitions), averaged over every query."""
    return {name: float(np.mean(values)) if len(values) else 0.0
            for name, values in score_queries(qrels, queries, run).items()}


def score_queries(qrels: dict[str, dict[str, int]], queries: dict[str, str],
                  run: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
    """nDCG@10, Recall@100 and MRR@10 of each query, in the order of `queries` (0 for a query
    that retrieved nothing): for cross-validation over queries."""
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(_MEASURES) | {"recip_rank"})
    per_query = evaluator.evaluate(run)
    top_10 = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in run.items()}
    reciprocal = evaluator.evaluate(top_10)
    return {
        **{name: _per_query(per_query, measure, queries) for measure, name in _MEASURES.items()},
        "mrr@10": _per_query(reciprocal, "recip_rank", queries),
    }


def run_queries(index: Index, queries: dict[str, str],
                retriever: Retriever) -> tuple[dict[str, dict[str, float]], list[float]]:
    """Each query's top 100 documents (articles, in the order of their best passage, the
    query's own document left out), and each query's latency in milliseconds. An empty
    query retrieves nothing."""
    run: dict[str, dict[str, float]] = {}
    latencies = []
    counts = index.snapshot.manifest["counts"]
    chunks_per_article = -(-counts["chunks"] // max(counts["articles"], 1))
    depth = min(1000, _RANKED_ARTICLES * chunks_per_article)  # enough chunks for 100 articles
    for query_id, text in queries.items():
        if not text.strip():
            run[query_id] = {}
            continue
        started = time.perf_counter()
        hits = index.search(text, k=depth, retriever=retriever)
        latencies.append((time.perf_counter() - started) * 1000)
        ranking: dict[str, float] = {}
        for hit in hits:
            for chunk in (hit.chunk, *hit.corroborating):
                if chunk.article_id not in ranking and chunk.article_id != query_id and len(ranking) < _RANKED_ARTICLES:
                    ranking[chunk.article_id] = float(_RANKED_ARTICLES - len(ranking))
        run[query_id] = ranking
    return run, latencies


def _per_query(per_query: dict[str, dict[str, float]], measure: str, queries: dict[str, str]) -> np.ndarray:
    """The measure for every judged query; one that retrieved nothing counts as 0."""
    return np.array([per_query.get(q, {}).get(measure, 0.0) for q in queries], dtype=np.float64)
