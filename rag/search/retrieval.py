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
from rag.records import Hit, SearchFilter
from rag.search.duplicates import collapse_duplicates
from rag.search.fusion import fuse
from rag.search.typos import QueryTerms
from rag.storage.reader import IndexReader, LexicalScores

Retriever = Literal["hybrid", "dense", "bm25"]
RETRIEVERS: tuple[Retriever, ...] = ("hybrid", "dense", "bm25")


def rank_chunks(reader: IndexReader, query_vector: np.ndarray | None, query: QueryTerms, k: int,
                search_filter: SearchFilter, config: Config, retriever: Retriever = "hybrid") -> list[Hit]:
    """The k best chunks for a query, best first, near-duplicates collapsed.

    `retriever="bm25"` is BM25 alone (no query vector needed, nothing collapsed), for
    comparison with the other two.
    """
    lexical = reader.lexical_scores(query.terms, query.weights, search_filter) if retriever != "dense" else None
    pool = _candidates(reader, query_vector, lexical, config.candidates, search_filter)
    candidates = pool if 4 * k <= config.candidates else np.union1d(
        pool, _candidates(reader, query_vector, lexical, 4 * k, search_filter))
    if not len(candidates):
        return []
    lexical_scores = lexical.of(candidates) if lexical is not None else np.zeros(len(candidates), np.float32)
    if retriever == "bm25":
        order = np.argsort(-lexical_scores, kind="stable")[:k]
        return [Hit(chunk=reader.stored(int(c)).chunk, score=float(s), rank=rank)
                for rank, (c, s) in enumerate(zip(candidates[order], lexical_scores[order], strict=True), start=1)]
    chunk_scores = reader.chunk_vectors_of(candidates) @ query_vector
    sentence_scores, best_sentences = _best_sentences(reader, candidates, query_vector)
    article_scores = reader.article_vectors_of(candidates) @ query_vector
    dense = ((1 - config.sentence_weight - config.article_weight) * chunk_scores
             + config.sentence_weight * sentence_scores + config.article_weight * article_scores)
    in_pool = np.isin(candidates, pool)
    scores = dense if retriever == "dense" else fuse(dense, lexical_scores, in_pool, config)
    order = np.argsort(-scores, kind="stable")
    return collapse_duplicates(reader, candidates[order], scores[order], best_sentences[order], k,
                               config.duplicate_similarity)


def _candidates(reader: IndexReader, query_vector: np.ndarray | None, lexical: LexicalScores | None, depth: int,
                search_filter: SearchFilter) -> np.ndarray:
    """The union of each retriever's top `depth` chunks (sentences: `2 * depth`), in ascending id order."""
    proposals: list[np.ndarray] = []
    if query_vector is not None:
        proposals += [reader.dense_chunks(query_vector, depth, search_filter),
                      reader.dense_sentence_chunks(query_vector, 2 * depth, search_filter)]
    if lexical is not None:
        proposals.append(lexical.top(depth))
    return np.unique(np.concatenate(proposals)).astype(np.int64) if proposals else np.zeros(0, dtype=np.int64)


def _best_sentences(reader: IndexReader, candidates: np.ndarray,
                    query_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate chunk: the best cosine among its sentences, and that sentence's id."""
    flat, starts = reader.sentences_of(candidates)
    scores = reader.sentence_vectors_of(flat) @ query_vector
    best = np.maximum.reduceat(scores, starts)
    lengths = np.diff(np.append(starts, len(flat)))
    first_best = np.minimum.reduceat(np.where(scores == np.repeat(best, lengths), np.arange(len(flat)), len(flat)),
                                     starts)
    return best.astype(np.float32), flat[first_best]
