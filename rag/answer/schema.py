"""The answer record: what `Index.ask` returns, JSON-serialisable for the CLI, UI and scripts.

Invariant of every citation: `article_file_text[start:end] == quote`, and the quote lies
inside its passage: `passage[start - passage_start : end - passage_start] == quote`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.records import Chunk, iso_date

AnswerMode = Literal["extractive", "llm"]
# "answered": the passages hold the answer; "hedged": the closest evidence, which may not
# answer the question directly; "not_found": nothing in the articles is on the question's topic.
Outcome = Literal["answered", "hedged", "not_found"]


@dataclass(frozen=True)
class Citation:
    """One numbered source: the quoted sentence and the passage (chunk) it was taken from."""

    n: int
    article_id: str
    title: str
    date: dt.date | None
    chunk_id: str
    quote: str
    start: int
    end: int
    passage: str
    passage_start: int

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "article_id": self.article_id,
            "title": self.title,
            "date": iso_date(self.date),
            "chunk_id": self.chunk_id,
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "passage": self.passage,
            "passage_start": self.passage_start,
        }


def cite(citations: list[Citation], chunk: Chunk, start: int, end: int) -> int:
    """The number of the citation of `chunk`'s text at [start, end) (file offsets), added to
    `citations` if no citation quotes that span of that article yet."""
    for citation in citations:
        if (citation.article_id, citation.start, citation.end) == (chunk.article_id, start, end):
            return citation.n
    citations.append(Citation(n=len(citations) + 1, article_id=chunk.article_id, title=chunk.title, date=chunk.date,
                              chunk_id=chunk.chunk_id, quote=chunk.span(start, end),
                              start=start, end=end, passage=chunk.text, passage_start=chunk.start))
    return citations[-1].n


@dataclass(frozen=True)
class AnswerSentence:
    """A sentence of the answer, the citation numbers backing it, and whether they do. For a
    sentence of an LLM's draft: why it is not supported, and whether it cited nothing and was
    matched to the passage it fits best (`attributed`)."""

    text: str
    citations: tuple[int, ...]
    supported: bool = True
    reason: str = ""
    attributed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "citations": list(self.citations), "supported": self.supported,
                "reason": self.reason, "attributed": self.attributed}


DraftStatus = Literal["verified", "partly_verified", "unverified", "refused", "failed"]


@dataclass(frozen=True)
class Draft:
    """What an LLM wrote and what the check made of it, kept whatever the answer became:
    `sentences` holds each of its sentences with its verdict (citation numbers refer to the
    answer's citations when the draft's supported sentences are the answer)."""

    model: str
    text: str
    status: DraftStatus
    sentences: tuple[AnswerSentence, ...] = ()
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "text": self.text, "status": self.status, "error": self.error,
                "sentences": [sentence.to_json() for sentence in self.sentences]}


@dataclass(frozen=True)
class RelatedPassage:
    """A passage shown as further reading (not as support), e.g. when the tool abstains, with
    the sentence of it closest to the question (`snippet_start`/`snippet_end`, offsets in the
    article file like `start`/`end`) for a front end to show first."""

    article_id: str
    title: str
    date: dt.date | None
    chunk_id: str
    text: str
    start: int
    end: int
    score: float
    snippet_start: int
    snippet_end: int

    @property
    def snippet(self) -> str:
        return self.text[self.snippet_start - self.start : self.snippet_end - self.start]

    def to_json(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "title": self.title,
            "date": iso_date(self.date),
            "chunk_id": self.chunk_id,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 6),
            "snippet": self.snippet,
            "snippet_start": self.snippet_start,
            "snippet_end": self.snippet_end,
        }


@dataclass(frozen=True)
class Answer:
    """An answer with inline [n] markers, its citations, or an abstention with related reading.

    `signals` are the measures the outcome was decided on (rag.answer.answerability), and
    `corrections` the typed words read as others ("meting" -> "meet"); `searched_for` the
    question as searched when it was a follow-up; `excluded_undated` the undated articles a
    date range left out.
    """

    question: str
    answer: str
    outcome: Outcome
    mode: AnswerMode
    sentences: tuple[AnswerSentence, ...] = ()
    citations: tuple[Citation, ...] = ()
    related: tuple[RelatedPassage, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    notice: str | None = None
    signals: dict[str, float] = field(default_factory=dict)
    corrections: dict[str, tuple[str, ...]] = field(default_factory=dict)
    draft: Draft | None = None
    searched_for: str | None = None
    excluded_undated: tuple[str, ...] = ()

    @property
    def abstained(self) -> bool:
        """True only when the tool says the articles do not answer (not for a hedged answer)."""
        return self.outcome == "not_found"

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "outcome": self.outcome,
            "mode": self.mode,
            "sentences": [sentence.to_json() for sentence in self.sentences],
            "citations": [citation.to_json() for citation in self.citations],
            "related": [passage.to_json() for passage in self.related],
            "timings": {name: round(ms, 2) for name, ms in self.timings.items()},
            "notice": self.notice,
            "signals": {name: round(value, 4) for name, value in self.signals.items()},
            "corrections": {typed: list(read_as) for typed, read_as in self.corrections.items()},
            "draft": self.draft.to_json() if self.draft else None,
            "searched_for": self.searched_for,
            "excluded_undated": list(self.excluded_undated),
        }
