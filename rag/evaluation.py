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
from rag.retrieval import Retriever
from rag.textnorm import fold

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


def ranked_articles(index: Index, query: str, retriever: Retriever = "hybrid", depth: int = _CHUNKS_SEARCHED) -> list[str]:
    """Article ids in the order their best chunk ranks for the query (corroborating
    passages rank where the passage they duplicate does)."""
    order: list[str] = []
    for hit in index.search(query, k=depth, retriever=retriever):
        for chunk in (hit.chunk, *hit.corroborating):
            if chunk.article_id not in order:
                order.append(chunk.article_id)
    return order


def evaluate_qa(index: Index, questions: list[Question], retriever: Retriever = "hybrid") -> dict[str, Any]:
    """recall@1/3/5 and MRR of the source articles over the answerable questions."""
    answerable = [q for q in questions if q.answerable and q.sources]
    if not answerable:
        raise RagError("the question set has no answerable questions with sources")
    reciprocal_ranks, found_at, misses = [], {1: 0, 3: 0, 5: 0}, []
    for question in answerable:
        order = ranked_articles(index, question.question, retriever)
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


def evaluate_qa_runs(index: Index, questions: list[Question]) -> dict[str, Any]:
    """Retrieval figures for each retriever, and answer figures for `Index.ask`."""
    with_sources = [q for q in questions if q.answerable and q.sources]
    runs = {retriever: evaluate_qa(index, with_sources, retriever) for retriever in ("bm25", "dense", "hybrid")
            } if with_sources else {}
    return {"questions": len(with_sources), "runs": runs, "answers": evaluate_answers(index, questions)}


def evaluate_answers(index: Index, questions: list[Question]) -> dict[str, Any]:
    """Share of answerable questions whose answer holds a gold string (compared folded),
    share of unanswerable ones abstained on, share of answerable ones wrongly abstained on."""
    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]
    correct, wrongly_abstained, abstained, failures = 0, 0, 0, []
    for question in questions:
        answer = index.ask(question.question)
        if not question.answerable:
            abstained += answer.abstained
            if not answer.abstained:
                failures.append(f"{question.id}: answered an unanswerable question")
        elif answer.abstained:
            wrongly_abstained += 1
            failures.append(f"{question.id}: abstained")
        elif any(fold(gold) in fold(answer.answer) for gold in question.answers):
            correct += 1
        else:
            failures.append(f"{question.id}: no gold string in the answer")
    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "gold_in_answer": correct / len(answerable) if answerable else None,
        "unanswerable_abstained": abstained / len(unanswerable) if unanswerable else None,
        "answerable_abstained": wrongly_abstained / len(answerable) if answerable else None,
        "failures": failures,
    }
