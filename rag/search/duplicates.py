"""Collapsing retellings: two outlets' passages that say the same thing take one slot.

Walking the ranking, a passage whose best sentence for the query nearly repeats (cosine at
least `similarity`) that of a passage already kept from another article joins it as a
corroborating source. Each passage is compared with the at most k kept so far, one
matrix-vector product, so the walk costs about (passages visited) x k x dim flops: linear in
k for a ranking that is not mostly repeats (bench/duplicates.py).
"""

from __future__ import annotations

import numpy as np

from rag.records import Chunk, Hit
from rag.storage.reader import IndexReader


def collapse_duplicates(reader: IndexReader, ranked: np.ndarray, scores: np.ndarray, best_sentences: np.ndarray,
                        k: int, similarity: float) -> list[Hit]:
    """The first k passages of `ranked` (chunk ids, best first) that repeat no kept passage of
    another article, each with the passages that repeat it as `corroborating` (one per article)."""
    kept: list[int] = []  # positions in the ranking
    kept_vectors = np.empty((k, reader.dim), dtype=np.float32)
    kept_articles = np.empty(k, dtype=object)
    corroborating: dict[int, list[Chunk]] = {}
    fetched, vectors, articles = 0, kept_vectors[:0], kept_articles[:0]
    for position in range(len(ranked)):
        if position == fetched:  # vectors are read for the head of the ranking, doubling as needed
            fetched = min(len(ranked), max(4 * k, 2 * fetched))
            vectors = reader.sentence_vectors_of(best_sentences[:fetched])
            articles = reader.article_ids_of(ranked[:fetched])
        count = len(kept)
        twins = np.flatnonzero((kept_articles[:count] != articles[position])
                               & (kept_vectors[:count] @ vectors[position] >= similarity))
        if len(twins):
            chunk = reader.stored(int(ranked[position])).chunk
            others = corroborating.setdefault(kept[twins[0]], [])
            if all(other.article_id != chunk.article_id for other in others):
                others.append(chunk)
            continue
        if count == k:
            break
        kept_vectors[count], kept_articles[count] = vectors[position], articles[position]
        kept.append(position)
    return [Hit(chunk=reader.stored(int(ranked[i])).chunk, score=float(scores[i]), rank=rank,
                corroborating=tuple(corroborating.get(i, ())))
            for rank, i in enumerate(kept, start=1)]
