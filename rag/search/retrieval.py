"""Hybrid ranking of chunks: BM25 fused with dense scores at chunk and sentence granularity.

Each retriever proposes candidates (filters applied inside it, before any cut); every
candidate then gets exact features: its chunk cosine, the best cosine among its sentences,
its article's cosine, and its BM25 score. Dense = mix of the three cosines; hybrid = convex
combination of dense and BM25, each normalised per query (rag.search.fusion). Passages of different articles whose best
sentences for the query say the same thing (two outlets reporting one meeting) are collapsed
into one hit that lists the other outlet as corroborating (rag.search.duplicates).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from rag.config import Config
from rag.records import Hit
from rag.search.duplicates import collapse_duplicates
from rag.search.filters import SearchFilter, allowed_chunk_ids, lexical_mask
from rag.search.fusion import fuse
from rag.search.typos import QueryTerms
from rag.storage.snapshot import Snapshot

Retriever = Literal["hybrid", "dense", "bm25"]
RETRIEVERS: tuple[Retriever, ...] = ("hybrid", "dense", "bm25")


def rank_chunks(snapshot: Snapshot, query_vector: np.ndarray | None, query: QueryTerms, k: int,
                search_filter: SearchFilter, config: Config, retriever: Retriever = "hybrid") -> list[Hit]:
    """The k best chunks for a query, best first, near-duplicates collapsed.

    `retriever="bm25"` is BM25 alone (no query vector needed, nothing collapsed), for
    comparison with the other two.
    """
    allowed = allowed_chunk_ids(snapshot, search_filter)
    if allowed is not None and not len(allowed):
        return []
    lexical_all = snapshot.lexical.scores(query.terms, query.weights, lexical_mask(snapshot, allowed))
    pool = _candidates(snapshot, query_vector, lexical_all, config.candidates, allowed, retriever)
    candidates = pool if 4 * k <= config.candidates else np.union1d(
        pool, _candidates(snapshot, query_vector, lexical_all, 4 * k, allowed, retriever))
    if not len(candidates):
        return []
    positions = snapshot.positions(candidates)
    lexical = lexical_all[positions]
    if retriever == "bm25":
        order = np.argsort(-lexical, kind="stable")[:k]
        return [Hit(chunk=snapshot.chunks[int(c)].chunk, score=float(s), rank=rank)
                for rank, (c, s) in enumerate(zip(candidates[order], lexical[order], strict=True), start=1)]
    chunk_scores = snapshot.chunk_vectors.vectors_of(candidates) @ query_vector
    sentence_scores, best_sentences = _best_sentences(snapshot, candidates, query_vector)
    article_scores = snapshot.article_vectors[snapshot.chunk_article_rows[positions]] @ query_vector
    dense = ((1 - config.sentence_weight - config.article_weight) * chunk_scores
             + config.sentence_weight * sentence_scores + config.article_weight * article_scores)
    in_pool = np.isin(candidates, pool)
    scores = dense if retriever == "dense" else fuse(dense, lexical, in_pool, config)
    order = np.argsort(-scores, kind="stable")
    return collapse_duplicates(snapshot, candidates[order], scores[order], best_sentences[order], k,
                               config.duplicate_similarity)


def _candidates(snapshot: Snapshot, query_vector: np.ndarray | None, lexical_all: np.ndarray, depth: int,
                allowed: np.ndarray | None, retriever: Retriever) -> np.ndarray:
    """The union of each retriever's top `depth` chunks, in ascending id order."""
    proposals: list[np.ndarray] = []
    if retriever in ("hybrid", "dense"):
        proposals += _dense_candidates(snapshot, query_vector, depth, allowed)
    if retriever in ("hybrid", "bm25"):
        proposals.append(_lexical_candidates(snapshot, lexical_all, depth))
    return np.unique(np.concatenate(proposals)) if proposals else np.zeros(0, dtype=np.int64)


def _dense_candidates(snapshot: Snapshot, query_vector: np.ndarray, depth: int,
                      allowed: np.ndarray | None) -> list[np.ndarray]:
    sentence_allowed = None if allowed is None else np.unique(snapshot.sentences_of(allowed)[0])
    chunk_ids = snapshot.chunk_vectors.search(query_vector, depth, allowed)
    sentence_ids = snapshot.sentence_vectors.search(query_vector, 2 * depth, sentence_allowed)
    via_sentences = snapshot.chunks_holding(sentence_ids)
    if allowed is not None:  # a sentence may sit in an admitted chunk and in one that is not
        via_sentences = via_sentences[np.isin(via_sentences, allowed)]
    return [chunk_ids, via_sentences]


def _lexical_candidates(snapshot: Snapshot, lexical_all: np.ndarray, depth: int) -> np.ndarray:
    positive = np.flatnonzero(lexical_all > 0)
    if len(positive) > depth:
        positive = positive[np.argpartition(-lexical_all[positive], depth - 1)[:depth]]
    return snapshot.chunk_ids[positive]


def _best_sentences(snapshot: Snapshot, candidates: np.ndarray,
                    query_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate chunk: the best cosine among its sentences, and that sentence's id."""
    flat, starts = snapshot.sentences_of(candidates)
    scores = snapshot.sentence_vectors.vectors_of(flat) @ query_vector
    best = np.maximum.reduceat(scores, starts)
    lengths = np.diff(np.append(starts, len(flat)))
    first_best = np.minimum.reduceat(np.where(scores == np.repeat(best, lengths), np.arange(len(flat)), len(flat)),
                                     starts)
    return best.astype(np.float32), flat[first_best]
