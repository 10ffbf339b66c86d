"""Retrieval evaluation on a question set in the format of seeds_dev.jsonl.

Each line: {"id", "question", "answers", "sources", "answerable"}. A question's articles
are ranked by the first chunk of each in the search results; a hit in any of its
`sources` counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import RagError
from rag.index import Index

_CHUNKS_SEARCHED = 50


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...]
    answerable: bool


def load_questions(path: Path) -> list[Question]:
    questions = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                questions.append(Question(
                    id=str(row["id"]), question=row["question"], answers=tuple(row.get("answers", ())),
                    sources=tuple(row.get("sources", ())), answerable=bool(row.get("answerable", True)),
                ))
            except (ValueError, KeyError, TypeError) as error:
                raise RagError(f"{path}:{number}: not a question record ({error})") from error
    return questions


def ranked_articles(index: Index, query: str) -> list[str]:
    """Article ids in the order their best chunk ranks for the query."""
    order: list[str] = []
    for hit in index.search(query, k=_CHUNKS_SEARCHED):
        if hit.chunk.article_id not in order:
            order.append(hit.chunk.article_id)
    return order


def evaluate_qa(index: Index, questions: list[Question]) -> dict[str, Any]:
    """recall@1/3/5 and MRR of the source articles over the answerable questions."""
    answerable = [q for q in questions if q.answerable and q.sources]
    if not answerable:
        raise RagError("the question set has no answerable questions with sources")
    reciprocal_ranks, found_at, misses = [], {1: 0, 3: 0, 5: 0}, []
    for question in answerable:
        order = ranked_articles(index, question.question)
        ranks = [order.index(source) + 1 for source in question.sources if source in order]
        best = min(ranks) if ranks else None
        reciprocal_ranks.append(1.0 / best if best else 0.0)
        for k in found_at:
            found_at[k] += bool(best and best <= k)
        if not best or best > 5:
            misses.append(question.id)
    count = len(answerable)
    return {
        "questions": count,
        **{f"recall@{k}": found / count for k, found in found_at.items()},
        "mrr": sum(reciprocal_ranks) / count,
        "misses@5": misses,
    }
