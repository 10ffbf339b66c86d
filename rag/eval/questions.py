"""Evaluation on a question set in the format of seeds_dev.jsonl.

Each line: {"id", "question", "answers", "sources", "answerable"}, and optionally the
question's `kind` ("direct", "paraphrase", "typo", "non-english", "unanswerable"), the kind
of an unanswerable one (`unanswerable_kind`: "off-topic", "absent", "false-premise"), the
answering sentence (`evidence`), the share of the question's content words that sentence
holds (`overlap`) and, for a typo variant, the id of its clean original (`variant_of`).

Every question belongs to one split, "tune" or "heldout", fixed by a seeded hash of its id
(a typo variant goes with its original): settings are chosen on tune and reported on
heldout (docs/evaluation.md). A question's articles are ranked by the first chunk of each
in the search results; a hit in any of its `sources` counts.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.encoders.base import Embedder
from rag.encoders.minilm import default_embedder
from rag.errors import RagError
from rag.index import Index
from rag.ingest.update import build_index
from rag.search.retrieval import Retriever
from rag.storage.layout import FORMAT_VERSION
from rag.text.normalize import fold

_CHUNKS_SEARCHED = 50
Split = Literal["tune", "heldout"]
SPLITS: tuple[str, ...] = ("tune", "heldout", "all")
_SPLIT_SEED = "rag-qa-split-2026-12"
_HELDOUT_SHARE = 0.5
OVERLAP_BUCKETS = ("0.00-0.25", "0.25-0.50", "0.50-0.75", "0.75-1.00")  # quarters of the overlap


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...]
    answerable: bool
    kind: str = "direct"
    unanswerable_kind: str | None = None
    evidence: str = ""
    overlap: float | None = None
    variant_of: str | None = None

    @property
    def split(self) -> Split:
        return split_of(self.variant_of or self.id)


def split_of(question_id: str) -> Split:
    """The split of a question id: a seeded hash, so adding questions never moves old ones."""
    digest = hashlib.blake2b(f"{_SPLIT_SEED}:{question_id}".encode(), digest_size=8).digest()
    return "heldout" if int.from_bytes(digest, "big") / 2**64 < _HELDOUT_SHARE else "tune"


def load_questions(path: Path, split: str = "all") -> list[Question]:
    """The questions of a file, those of one split if `split` is "tune" or "heldout"."""
    if split not in SPLITS:
        raise RagError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    questions = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                answerable = bool(row.get("answerable", True))
                questions.append(Question(
                    id=str(row["id"]), question=row["question"], answers=tuple(row.get("answers", ())),
                    sources=tuple(row.get("sources", ())), answerable=answerable,
                    kind=row.get("kind") or ("direct" if answerable else "unanswerable"),
                    unanswerable_kind=row.get("unanswerable_kind"), evidence=row.get("evidence", ""),
                    overlap=row.get("overlap"), variant_of=row.get("variant_of"),
                ))
            except (ValueError, KeyError, TypeError) as error:
                raise RagError(f"{path}:{number}: not a question record ({error})") from error
    return [q for q in questions if split == "all" or q.split == split]


def qa_index(articles: list[Path], embedder: Embedder | None = None, cache: Path = Path(".cache/qa")) -> Index:
    """An index of the given article files and folders for evaluation, kept in `cache` under a
    name of their paths and updated incrementally (never the user's own index)."""
    embedder = embedder or default_embedder()
    folders = "\0".join(sorted(str(p.resolve()) for p in articles))
    key = hashlib.blake2b(f"{FORMAT_VERSION}\0{embedder.name}\0{folders}".encode(), digest_size=8)
    path = cache / key.hexdigest()
    report = build_index(articles, path, embedder=embedder)
    if report.failed:
        raise RagError(f"cannot index the evaluation articles: {'; '.join(report.failed)}")
    return Index.open(path, embedder=embedder)


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


def holds_gold(question: Question, text: str) -> bool:
    """Whether a text holds one of the question's gold strings, compared folded."""
    return any(fold(gold) in fold(text) for gold in question.answers)


def evaluate_answers(index: Index, questions: list[Question]) -> dict[str, Any]:
    """Answer figures, overall and per group (kind, unanswerable kind, overlap bucket).

    For answerable questions: the share whose answer (confident or hedged) holds a gold
    string, and the share wrongly told "not in the articles". For unanswerable ones: the
    share told "not in the articles", and the share answered with confidence (never right).
    Typo variants are compared with their clean originals.
    """
    outcomes = {q.id: index.ask(q.question) for q in questions}
    correct = {q.id: q.answerable and outcomes[q.id].outcome != "not_found" and holds_gold(q, outcomes[q.id].answer)
               for q in questions}
    failures = []
    for q in questions:
        outcome = outcomes[q.id].outcome
        if q.answerable and outcome == "not_found":
            failures.append(f"{q.id}: said not in the articles")
        elif q.answerable and not correct[q.id]:
            failures.append(f"{q.id}: no gold string in the {outcome} answer")
        elif not q.answerable and outcome != "not_found":
            failures.append(f"{q.id}: {outcome} an unanswerable question")
    groups: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        groups[f"kind={q.kind}"].append(q)
        if q.unanswerable_kind:
            groups[f"unanswerable={q.unanswerable_kind}"].append(q)
        if q.overlap is not None and q.answerable:
            groups[f"overlap={OVERLAP_BUCKETS[min(max(int(q.overlap * 4), 0), 3)]}"].append(q)
    result = {**_figures(questions, outcomes, correct),
              "groups": {name: _figures(group, outcomes, correct) for name, group in sorted(groups.items())},
              "failures": failures}
    variants = [q for q in questions if q.variant_of]
    originals = {q.id for q in questions}
    paired = [q for q in variants if q.variant_of in originals and q.answerable]
    if paired:
        result["typo_vs_original"] = {
            "pairs": len(paired),
            "typo_gold_in_answer": sum(correct[q.id] for q in paired) / len(paired),
            "original_gold_in_answer": sum(correct[q.variant_of] for q in paired) / len(paired),  # type: ignore[index]
        }
    return result


def _figures(questions: list[Question], outcomes: dict[str, Any], correct: dict[str, bool]) -> dict[str, Any]:
    answerable = [q for q in questions if q.answerable]
    unanswerable = [q for q in questions if not q.answerable]

    def share(group: list[Question], test: Callable[[Question], bool]) -> float | None:
        return sum(map(test, group)) / len(group) if group else None

    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "gold_in_answer": share(answerable, lambda q: correct[q.id]),
        "answerable_not_found": share(answerable, lambda q: outcomes[q.id].outcome == "not_found"),
        "answerable_hedged": share(answerable, lambda q: outcomes[q.id].outcome == "hedged"),
        "unanswerable_not_found": share(unanswerable, lambda q: outcomes[q.id].outcome == "not_found"),
        "unanswerable_answered": share(unanswerable, lambda q: outcomes[q.id].outcome == "answered"),
    }
