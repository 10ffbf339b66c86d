"""Choose how extractive answers pick their sentences, on the tune split only.

Grid over the sentence score's weights (coverage, passage rank, answer type), the share of
the best score a further sentence must reach (`answer_keep_ratio`) and the passages read
(k). Each setting is scored on the tune split's English answerable questions by
gold-in-answer minus LENGTH_COST per sentence quoted (without that cost, quoting more
always wins). 5-fold cross-validation inside tune reports what the choice is worth on
questions it was not chosen on (a typo variant in its original's fold). The script only
prints: change the defaults in Config when a setting beats them on the mean over tune by more
than the spread across folds (a smaller gain is noise). The held-out split is never read: report it with `rag eval --split heldout`.

    .venv/bin/python scripts/tune_answers.py
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from rag.answer.answerability import AnswerabilityModel
from rag.eval.questions import holds_gold, load_questions, qa_index

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "qa_set.jsonl"
ARTICLES = [ROOT / "seeds", ROOT / "tests" / "data" / "eval_articles"]
LENGTH_COST = 0.05
GRID = {
    "answer_coverage_weight": (0.3, 0.5, 0.8),
    "answer_rank_weight": (0.0, 0.05, 0.1),
    "answer_keep_ratio": (0.55, 0.65, 0.75),
    "answer_type_weight": (0.0, 0.05, 0.1, 0.2),
    "k": (5, 8),
}
FOLDS = 5
SEED = 20261203


def main() -> None:
    index = qa_index(ARTICLES)
    index.embed_query = functools.lru_cache(maxsize=None)(index.embed_query)  # type: ignore[method-assign]
    # Sentences are chosen whatever the outcome: every answer is composed (hedged), and the
    # answerability signals, which choose no sentence, skip their token encoding here.
    index.answerability = AnswerabilityModel.hedging()
    index.embedder.embed_tokens = lambda texts: [  # type: ignore[method-assign]
        (np.zeros((0, index.embedder.dim), np.float32), np.zeros((0, 2), np.int64)) for _ in texts]
    questions = [q for q in load_questions(QUESTIONS, "tune") if q.answerable and q.kind != "non-english"]
    base = index.config
    names = list(GRID)
    settings = list(itertools.product(*GRID.values()))
    scores = np.zeros((len(settings), len(questions)))
    for row, values in enumerate(settings):
        chosen = dict(zip(names, values, strict=True))
        k = chosen.pop("k")
        index.config = replace(base, **chosen)
        for column, question in enumerate(questions):
            answer = index.ask(question.question, k=k)
            scores[row, column] = holds_gold(question, answer.answer) - LENGTH_COST * len(answer.sentences)
    held_out = []
    groups = [q.variant_of or q.id for q in questions]  # a typo variant in its original's fold
    for train, test in GroupKFold(FOLDS, shuffle=True, random_state=SEED).split(questions, groups=groups):
        best = int(np.argmax(scores[:, train].mean(axis=1)))
        held_out.append(scores[best, test].mean())
    best = int(np.argmax(scores.mean(axis=1)))
    defaults = tuple(getattr(base, n if n != "k" else "answer_passages") for n in names)
    print(f"{len(questions)} tune questions, {len(settings)} settings; score = gold - {LENGTH_COST} x sentences")
    if defaults in settings:
        print(f"current defaults: {scores[settings.index(defaults)].mean():.3f}")
    else:
        print(f"current defaults {dict(zip(names, defaults, strict=True))} are not in the grid")
    print(f"cross-validated (best on 4 folds, scored on the 5th): {np.mean(held_out):.3f} +- {np.std(held_out):.3f}")
    print(f"best on all tune: {scores[best].mean():.3f} with {dict(zip(names, settings[best], strict=True))}")
    for row in np.argsort(-scores.mean(axis=1))[:10]:
        print(f"  {scores[row].mean():.3f}  {dict(zip(names, settings[row], strict=True))}")


if __name__ == "__main__":
    main()
