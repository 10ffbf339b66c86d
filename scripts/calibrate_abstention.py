"""Calibrate the abstention threshold on labelled question sets.

The rule (rag.answering.is_weak): abstain when no retrieved passage (with the outlets
retelling it) holds `abstain_passage_coverage` of the question's idf-weighted topic terms. This prints each
question's evidence (with the best sentence's cosine and coverage, which were tried as
further clauses and did not separate the sets), then the gap between the lowest-scoring
answerable and the highest-scoring unanswerable question; the threshold is its midpoint.

    .venv/bin/python scripts/calibrate_abstention.py tests/data/seeds_dev.jsonl \
        tests/data/answerable_extra.jsonl tests/data/unanswerable.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

from rag import Index
from rag.answering import gather_evidence
from rag.evaluation import load_questions
from rag.retrieval import SearchFilter, rank_chunks
from rag.textnorm import terms


def main(paths: list[str], index_dir: str = "index") -> None:
    index = Index.open(index_dir)
    snapshot = index._snapshot  # noqa: SLF001 - a calibration tool reads the features directly
    answerable, unanswerable = [], []
    for path in paths:
        for question in load_questions(Path(path)):
            vector = index.embed_query(question.question)
            hits = rank_chunks(snapshot, vector, terms(question.question), 5, SearchFilter(), index.config)
            evidence = gather_evidence(snapshot, hits, vector, question.question, index.config)
            best = evidence.sentences[0]
            (answerable if question.answerable else unanswerable).append((evidence.passage_coverage, question.id))
            print(f"{question.id:>4} {'answerable' if question.answerable else 'unanswerable':>12} "
                  f"passages {evidence.passage_coverage:.3f} cosine {best.cosine:.2f} "
                  f"coverage {best.coverage:.2f}  {question.question[:60]}")
    low, high = min(answerable), max(unanswerable)
    print(f"lowest answerable {low[0]:.3f} ({low[1]}), highest unanswerable {high[0]:.3f} ({high[1]})")
    if high[0] >= low[0]:
        print("the sets overlap: no threshold separates them")
    else:
        print(f"abstain_passage_coverage = {(low[0] + high[0]) / 2:.3f} (midpoint of the gap)")


if __name__ == "__main__":
    main(sys.argv[1:])
