"""Why the extractive answers miss, on the tune split only: where the answering sentence ranks,
and whether signals MiniLM can give would move it or tell an absent fact from a paraphrase.

1. The rank of the first gold-holding sentence among the candidates `rag ask` scores (k = 8
   passages): a miss past rank 3 is the sentence choice, a miss nowhere is retrieval.
2. Re-ranking the 12 best candidates by the sentence score plus w x token MaxSim (the
   BERTScore-style signal of rag.answer.extractive.token_alignment, per sentence), and what
   encoding those sentences costs.
3. Re-ranking by the cosine of a window (the sentence with its neighbours; stored vectors, no
   encoding): context a paraphrase may match better than the sentence alone.
4. Whether "a topic word the index does not know and no token of the best sentences is near"
   (unknown_share and token_gap) separates on-topic unanswerable questions from answerable ones.

The held-out split is never read. Prints only; nothing here changes a default.

    .venv/bin/python scripts/probe_answers.py
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from rag.answer.extractive import gather_evidence, token_alignment
from rag.eval.questions import holds_gold, load_questions, qa_index
from rag.records import SearchFilter
from rag.search.retrieval import rank_chunks
from rag.search.typos import correct_typos
from rag.storage.reader import IndexReader
from rag.text.normalize import terms

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "qa_set.jsonl"
ARTICLES = [ROOT / "seeds", ROOT / "tests" / "data" / "eval_articles"]
RERANKED = 12


def main() -> None:
    index = qa_index(ARTICLES)
    reader, config = index.snapshot, index.config
    questions = [q for q in load_questions(QUESTIONS, "tune") if q.kind != "non-english"]
    first_gold: Counter[str] = Counter()
    rows, signals, encode_ms = [], [], []
    for question in questions:
        query_vector = index.embed_query(question.question)
        query = correct_typos(terms(question.question), reader.lexicon)
        hits = rank_chunks(reader, query_vector, query, config.answer_passages, SearchFilter(), config)
        evidence = gather_evidence(reader, hits, query_vector, question.question, query, index.embedder.embed_tokens,
                                   config)
        signals.append((question, evidence.signals))
        if not question.answerable:
            continue
        gold = [holds_gold(question, s.text) for s in evidence.sentences]
        rank = gold.index(True) if any(gold) else None
        first_gold["nowhere" if rank is None else "1" if rank == 0 else "2-3" if rank < 3 else "4+"] += 1
        top = evidence.sentences[:RERANKED]
        started = time.perf_counter()  # what serving would pay: the question and the candidates in one batch
        token_alignment(reader, question.question, [s.text for s in top], index.embedder.embed_tokens)
        encode_ms.append((time.perf_counter() - started) * 1000)
        maxsim = [token_alignment(reader, question.question, [s.text], index.embedder.embed_tokens)["token_match"]
                  for s in top]
        window = [_window_cosine(reader, s.chunk.article_id, s.sentence_id, query_vector) for s in top]
        rows.append((np.array([s.score for s in top]), np.array(maxsim), np.array(window), np.array(gold[:RERANKED])))

    answerable = sum(first_gold.values())
    print(f"tune: {answerable} answerable English questions; first gold-holding candidate at rank "
          + ", ".join(f"{key}: {first_gold[key]}" for key in ("1", "2-3", "4+", "nowhere")))
    print(f"token MaxSim over {RERANKED} candidates, encoded in one batch: p50 {np.percentile(encode_ms, 50):.0f} ms, "
          f"p95 {np.percentile(encode_ms, 95):.0f} ms a question")
    for name, column in (("token MaxSim", 1), ("window cosine", 2)):
        for weight in (0.0, 0.25, 0.5, 0.75, 1.0, 2.0):
            at_1, at_3 = _gold_at(rows, column, weight)
            print(f"  score + {weight:.2f} x {name}: gold first {at_1:.3f}, gold in top 3 {at_3:.3f}")

    on_topic_unanswerable = [s for q, s in signals if not q.answerable and q.unanswerable_kind != "off-topic"]
    answerable_signals = [s for q, s in signals if q.answerable]
    print("unknown topic word and nothing near it (unknown_share > 0 and token_gap < 0.3): "
          f"{_share(answerable_signals):.2f} of answerable, {_share(on_topic_unanswerable):.2f} of on-topic unanswerable")


def _window_cosine(reader: IndexReader, article_id: str, sentence_id: int, query_vector: np.ndarray) -> float:
    ids = [i for i, _ in reader.article_sentences(article_id)]
    position = ids.index(sentence_id)
    vectors = reader.sentence_vectors_of(np.array(ids[max(0, position - 1) : position + 2]))
    window = vectors.sum(axis=0)
    return float(window @ query_vector / max(float(np.linalg.norm(window)), 1e-12))


def _gold_at(rows: list[tuple[np.ndarray, ...]], column: int, weight: float) -> tuple[float, float]:
    at_1 = at_3 = 0
    for row in rows:
        order = np.argsort(-(row[0] + weight * row[column]), kind="stable")
        gold = row[3][order]
        at_1 += bool(len(gold) and gold[0])
        at_3 += bool(gold[:3].any())
    return at_1 / len(rows), at_3 / len(rows)


def _share(rows: list[dict[str, float]]) -> float:
    return sum(r["unknown_share"] > 0 and r["token_gap"] < 0.3 for r in rows) / max(len(rows), 1)


if __name__ == "__main__":
    main()
