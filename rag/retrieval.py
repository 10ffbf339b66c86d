"""Hybrid ranking of chunks: BM25 fused with dense scores at chunk and sentence granularity.

Each retriever proposes candidates (filters applied inside it, before any cut); every
candidate then gets exact features: its chunk cosine, the best cosine among its sentences,
its article's cosine, and its BM25 score. Dense = mix of the three cosines; hybrid = convex
combination of dense and BM25, each normalised per query (robust z-scores by default, plain
z-scores, or reciprocal-rank fusion instead). Passages of different articles whose best
sentences for the query say the same thing (two outlets reporting one meeting) are collapsed
into one hit that lists the other outlet as corroborating.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rag.config import Config
from rag.lexical import QueryTerms
from rag.records import Chunk, Hit
from rag.store import Snapshot

Retriever = Literal["hybrid", "dense", "bm25"]
RETRIEVERS: tuple[Retriever, ...] = ("hybrid", "dense", "bm25")
_RRF_K = 60


@dataclass(frozen=True)
class SearchFilter:
    """Which chunks a search may return. A date bound excludes undated articles unless
    `include_undated` is set."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    articles: frozenset[str] | None = None
    include_undated: bool = False

    @property
    def active(self) -> bool:
        return self.articles is not None or self.has_date_bound

    @property
    def has_date_bound(self) -> bool:
        return self.date_from is not None or self.date_to is not None

    def admits(self, article_id: str, date: dt.date | None) -> bool:
        if self.articles is not None and article_id not in self.articles:
            return False
        if not self.has_date_bound:
            return True
        if date is None:
            return self.include_undated
        return (self.date_from is None or date >= self.date_from) and (
            self.date_to is None or date <= self.date_to)


def rank_chunks(snapshot: Snapshot, query_vector: np.ndarray | None, query_terms: QueryTerms | Sequence[str], k: int,
                search_filter: SearchFilter, config: Config, retriever: Retriever = "hybrid") -> list[Hit]:
    """The k best chunks for a query, best first, near-duplicates collapsed.

    `retriever="bm25"` is BM25 alone (no query vector needed, nothing collapsed), for
    comparison with the other two.
    """
    allowed = _allowed_chunk_ids(snapshot, search_filter)
    if allowed is not None and not len(allowed):
        return []
    lexical_all = snapshot.lexical.scores(query_terms, _mask(snapshot, allowed))
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
    scores = dense if retriever == "dense" else _fuse(dense, lexical, in_pool, config)
    order = np.argsort(-scores, kind="stable")
    return _collapse_duplicates(snapshot, candidates[order], scores[order], best_sentences[order], k, config)


def _candidates(snapshot: Snapshot, query_vector: np.ndarray | None, lexical_all: np.ndarray, depth: int,
                allowed: np.ndarray | None, retriever: Retriever) -> np.ndarray:
    """The union of each retriever's top `depth` chunks, in ascending id order."""
    proposals: list[np.ndarray] = []
    if retriever in ("hybrid", "dense"):
        proposals += _dense_candidates(snapshot, query_vector, depth, allowed)
    if retriever in ("hybrid", "bm25"):
        proposals.append(_lexical_candidates(snapshot, lexical_all, depth))
    return np.unique(np.concatenate(proposals)) if proposals else np.zeros(0, dtype=np.int64)


def _allowed_chunk_ids(snapshot: Snapshot, search_filter: SearchFilter) -> np.ndarray | None:
    """The chunks of the admitted articles (decided per article: there are far fewer)."""
    if not search_filter.active:
        return None
    admitted = [snapshot.chunk_ids_of_article[article_id]
                for article_id, entry in snapshot.manifest["articles"].items()
                if article_id in snapshot.chunk_ids_of_article
                and search_filter.admits(article_id, dt.date.fromisoformat(entry["date"]) if entry["date"] else None)]
    return np.sort(np.concatenate(admitted)) if admitted else np.zeros(0, dtype=np.int64)


def _mask(snapshot: Snapshot, allowed: np.ndarray | None) -> np.ndarray | None:
    if allowed is None:
        return None
    mask = np.zeros(len(snapshot.chunk_ids), dtype=bool)
    mask[snapshot.positions(allowed)] = True
    return mask


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


def _fuse(dense: np.ndarray, lexical: np.ndarray, in_pool: np.ndarray, config: Config) -> np.ndarray:
    """Fused scores. Normalisation takes its centre and spread from the first
    `config.candidates` of each retriever (`in_pool`) whatever k is, so a deeper search ranks
    its top alike."""
    if config.fusion == "rrf":
        return _reciprocal_ranks(dense) + _reciprocal_ranks(lexical) * (lexical > 0)
    normalise = _robust_zscore if config.fusion == "robust" else _zscore
    return ((1 - config.lexical_weight) * normalise(dense, in_pool)
            + config.lexical_weight * normalise(lexical, in_pool))


def _zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    reference = reference if reference.any() else np.ones_like(reference)
    spread = values[reference].std()
    return (values - values[reference].mean()) / spread if spread > 1e-9 else np.zeros_like(values)


def _robust_zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Iglewicz and Hoaglin's modified z-score: distance from the median in units of the
    median absolute deviation (scaled to a normal's standard deviation), so the one passage
    that stands far out, such as the only one holding a rare query word, is not shrunk by its
    own contribution to the spread. When most values are equal (the MAD is 0), the mean
    absolute deviation stands in, as in the usual definition."""
    reference_values = values[reference] if reference.any() else values
    centre = np.median(reference_values)
    deviations = np.abs(reference_values - centre)
    spread = 1.4826 * np.median(deviations)
    if spread <= 1e-9:
        spread = 1.2533 * deviations.mean()
    return (values - centre) / spread if spread > 1e-9 else np.zeros_like(values)


def _reciprocal_ranks(values: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(values))
    ranks[np.argsort(-values, kind="stable")] = np.arange(1, len(values) + 1)
    return 1.0 / (_RRF_K + ranks)


def _collapse_duplicates(snapshot: Snapshot, ranked: np.ndarray, scores: np.ndarray, best_sentences: np.ndarray,
                         k: int, config: Config) -> list[Hit]:
    """Walk the ranking; a passage whose best sentence nearly repeats that of a kept passage
    from another article joins it as a corroborating source instead of taking a slot.

    Only the head of the ranking is compared (4k passages, more if that many do not fill k
    slots): which passages repeat which is one matrix product over it."""
    kept: list[int] = []  # positions in the ranking
    corroborating: dict[int, list[Chunk]] = {}
    head, twin_of = 0, []
    for position, chunk_id in enumerate(ranked.tolist()):
        if position == head:
            head = min(len(ranked), max(4 * k, 4 * head))
            twin_of = _repeats(snapshot, ranked[:head], best_sentences[:head], config.duplicate_similarity)
        twins = [earlier for earlier in kept if twin_of[position][earlier]]
        if twins:
            chunk = snapshot.chunks[chunk_id].chunk
            others = corroborating.setdefault(twins[0], [])
            if all(other.article_id != chunk.article_id for other in others):
                others.append(chunk)
            continue
        if len(kept) == k:
            break
        kept.append(position)
    return [Hit(chunk=snapshot.chunks[int(ranked[i])].chunk, score=float(scores[i]), rank=rank,
                corroborating=tuple(corroborating.get(i, ())))
            for rank, i in enumerate(kept, start=1)]


def _repeats(snapshot: Snapshot, chunk_ids: np.ndarray, best_sentences: np.ndarray,
             similarity: float) -> list[list[bool]]:
    """[i][j]: whether passages i and j come from different articles and their best sentences
    have at least the given cosine."""
    vectors = snapshot.sentence_vectors.vectors_of(best_sentences)
    articles = snapshot.chunk_article_rows[snapshot.positions(chunk_ids)]
    return ((articles[:, None] != articles[None, :]) & (vectors @ vectors.T >= similarity)).tolist()
