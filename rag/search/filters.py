"""Which articles a search may draw from: a date range and a set of article ids."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from rag.storage.snapshot import Snapshot


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


def allowed_chunk_ids(snapshot: Snapshot, search_filter: SearchFilter) -> np.ndarray | None:
    """The chunks of the admitted articles (decided per article: there are far fewer)."""
    if not search_filter.active:
        return None
    admitted = [snapshot.chunk_ids_of_article[article_id]
                for article_id, entry in snapshot.manifest["articles"].items()
                if article_id in snapshot.chunk_ids_of_article
                and search_filter.admits(article_id, dt.date.fromisoformat(entry["date"]) if entry["date"] else None)]
    return np.sort(np.concatenate(admitted)) if admitted else np.zeros(0, dtype=np.int64)


def lexical_mask(snapshot: Snapshot, allowed: np.ndarray | None) -> np.ndarray | None:
    """The allowed chunks as a mask over BM25's documents (chunk ids in ascending order)."""
    if allowed is None:
        return None
    mask = np.zeros(len(snapshot.chunk_ids), dtype=bool)
    mask[snapshot.positions(allowed)] = True
    return mask
