"""The frozen records passed between pipeline stages: an article, a chunk of it, a search
filter, a search hit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


def iso_date(date: dt.date | None) -> str | None:
    """A date as YYYY-MM-DD, None for an unknown one: how records and indexes store dates."""
    return date.isoformat() if date else None


@dataclass(frozen=True)
class Article:
    """One article file, parsed.

    `text` is the whole file exactly as decoded, so every offset in the project points into
    it; `body_start` is where the article proper begins (after a date prefix and site
    boilerplate), which is metadata the chunker skips. `heading` is what every chunk is
    matched with besides its own text: the headline, or for an article without one its whole
    first sentence (the lede says who and what; `title` shows it shortened).
    """

    id: str
    title: str
    heading: str
    date: dt.date | None
    text: str
    body_start: int
    source: Path
    content_hash: str

    @property
    def body(self) -> str:
        return self.text[self.body_start :]


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one article. Invariant: `article.text[start:end] == text`."""

    chunk_id: str
    article_id: str
    start: int
    end: int
    text: str
    title: str
    heading: str
    date: dt.date | None

    def span(self, start: int, end: int) -> str:
        """The text at [start, end), offsets in the article file, of a span inside this chunk."""
        return self.text[start - self.start : end - self.start]

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "article_id": self.article_id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "title": self.title,
            "heading": self.heading,
            "date": iso_date(self.date),
        }

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Chunk:
        date = _parse_date(row["date"]) if row["date"] else None
        return cls(
            chunk_id=row["chunk_id"],
            article_id=row["article_id"],
            start=row["start"],
            end=row["end"],
            text=row["text"],
            title=row["title"],
            heading=row["heading"],
            date=date,
        )


_parse_date = lru_cache(maxsize=4096)(dt.date.fromisoformat)  # an index holds 100k chunks and few dates


@dataclass(frozen=True)
class Hit:
    """A chunk returned by a search, with its score (higher is better) and 1-based rank.

    `corroborating` holds near-identical passages of other articles (another outlet's report
    of the same event), listed here instead of taking ranks of their own.
    """

    chunk: Chunk
    score: float
    rank: int
    corroborating: tuple[Chunk, ...] = ()

    def to_json(self) -> dict[str, Any]:
        row = self.chunk.to_json()
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "article_id": row["article_id"],
            "title": row["title"],
            "date": row["date"],
            "chunk_id": row["chunk_id"],
            "text": row["text"],
            "start": row["start"],
            "end": row["end"],
            "corroborating": [
                {key: value for key, value in other.to_json().items() if key not in ("text", "heading")}
                for other in self.corroborating
            ],
        }


@dataclass(frozen=True)
class SearchFilter:
    """Which chunks a search may return: those of `articles` (all if None) dated within the
    bounds. A date bound excludes undated articles unless `include_undated` is set. Each
    store applies it inside its retrievers, before any cut."""

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
