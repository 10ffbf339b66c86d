"""Fit the answerability models (rag/answer/answerability.json) on the tune split of the question set.

Every English question of the tune split is asked once with a model that hedges everything,
which keeps each question's signals (they do not depend on the model) and the answer it
would get. Two logistic regressions are fitted (rag.answer.answerability says why two), each weight
bounded to the sign its signal's meaning gives it (SIGNS):

- on topic: every question but the off-topic ones, against those;
- answered: answerable questions whose answer holds a gold string, against every other
  on-topic question (unanswerable, or answered without the gold).

Their thresholds are set on out-of-fold probabilities (5-fold cross-validation inside tune),
so they are not fitted to the very questions they cut (a typo variant in its original's
fold): `hedge_at` is the highest whose rate of false "not in the articles" on answerable
questions stays within FALSE_NOT_FOUND, `answer_at` the lowest whose rate of confident answers
to unanswerable questions (off-topic ones included, which the on-topic cut stops first) stays
within FALSE_ANSWERED. Prints the out-of-fold curves. The held-out split is never read here: report
it with `rag eval --split heldout`.

    .venv/bin/python scripts/fit_answerability.py [--write]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from sklearn.model_selection import StratifiedGroupKFold

from rag.answer.answerability import (
    MODEL_FILE,
    SIGNALS,
    AnswerabilityModel,
    Logistic,
    signal_matrix,
)
from rag.eval.questions import holds_gold, load_questions, qa_index

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "qa_set.jsonl"
ARTICLES = [ROOT / "seeds", ROOT / "tests" / "data" / "eval_articles"]
FALSE_NOT_FOUND = 0.02
FALSE_ANSWERED = 0.02
FOLDS = 5
SEED = 20261203


def collect() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Signals, and per question: answerable, off-topic, answer holds gold, and its group (a
    typo variant is grouped with its original, so the two never sit in different folds)."""
    index = qa_index(ARTICLES)
    index.answerability = AnswerabilityModel.hedging()
    questions = [q for q in load_questions(QUESTIONS, "tune") if q.kind != "non-english"]
    answers = [index.ask(q.question) for q in questions]
    return (np.array(signal_matrix([a.signals for a in answers])),
            np.array([q.answerable for q in questions]),
            np.array([q.unanswerable_kind == "off-topic" for q in questions]),
            np.array([q.answerable and holds_gold(q, a.answer) for q, a in zip(questions, answers, strict=True)]),
            np.array([q.variant_of or q.id for q in questions]))


# More evidence never lowers confidence: each weight keeps the sign its signal's meaning gives
# it (unknown words count against, everything else for). With ~20 unanswerable questions an
# unconstrained fit learns the set's quirks (its false premises reuse the articles' words, so
# coverage came out negative), which would not hold on other questions.
SIGNS = {name: -1.0 if name == "unknown_share" else 1.0 for name in SIGNALS}
L2 = 1.0  # as LogisticRegression's default C=1


def fitted(features: np.ndarray, labels: np.ndarray) -> Logistic:
    """Class-balanced, L2-regularised logistic regression with the weights' signs bounded."""
    labels = labels.astype(float)
    balance = np.where(labels == 1, 0.5 / max(labels.mean(), 1e-9), 0.5 / max(1 - labels.mean(), 1e-9))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logits = features @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-logits))
        eps = 1e-12
        value = -np.sum(balance * (labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps)))
        residual = balance * (p - labels)
        gradient = np.append(features.T @ residual + theta[:-1] / L2, residual.sum())
        return value + 0.5 * float(theta[:-1] @ theta[:-1]) / L2, gradient

    bounds = [(0.0, None) if SIGNS[name] > 0 else (None, 0.0) for name in SIGNALS] + [(None, None)]
    theta = minimize(loss, np.zeros(len(SIGNALS) + 1), jac=True, method="L-BFGS-B", bounds=bounds).x
    return Logistic(tuple(float(w) for w in theta[:-1]), float(theta[-1]))


def out_of_fold(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    probability = np.zeros(len(labels))
    folds = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=SEED)
    for train, test in folds.split(features, labels, groups):
        model = fitted(features[train], labels[train])
        probability[test] = [model.probability(dict(zip(SIGNALS, row, strict=True))) for row in features[test]]
    return probability


def main(write: bool) -> None:
    features, answerable, off_topic, correct, groups = collect()
    on_topic = ~off_topic
    topic_oof = out_of_fold(features, on_topic, groups)
    candidates = np.unique(np.concatenate([[0.0, 1.0], topic_oof]))
    hedge_at = max(t for t in candidates if np.mean(topic_oof[answerable] < t) <= FALSE_NOT_FOUND)
    answered_oof = out_of_fold(features[on_topic], correct[on_topic], groups[on_topic])
    unanswerable_on_topic = ~answerable[on_topic]
    candidates = np.unique(np.concatenate([[0.0, 1.0], answered_oof]))
    answer_at = min(t for t in candidates if np.mean(answered_oof[unanswerable_on_topic] >= t) * unanswerable_on_topic.sum()
                    / max((~answerable).sum(), 1) <= FALSE_ANSWERED)
    print(f"tune (English): {answerable.sum()} answerable ({correct.sum()} with gold in the answer), "
          f"{(~answerable).sum()} unanswerable ({off_topic.sum()} off-topic)")
    print("out-of-fold, on topic: threshold -> answerable said not found / unanswerable said not found")
    for t in sorted({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, float(hedge_at)}):
        print(f"  {t:.3f}  {np.mean(topic_oof[answerable] < t):.3f}  {np.mean(topic_oof[~answerable] < t):.3f}")
    print("out-of-fold, answered (on-topic questions): threshold -> answers with gold answered / unanswerable answered")
    for t in sorted({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, float(answer_at)}):
        print(f"  {t:.3f}  {np.mean(answered_oof[correct[on_topic]] >= t):.3f}  "
              f"{np.mean(answered_oof[unanswerable_on_topic] >= t):.3f}")
    model = AnswerabilityModel(fitted(features, on_topic), fitted(features[on_topic], correct[on_topic]),
                               hedge_at=float(hedge_at), answer_at=float(answer_at))
    print(json.dumps(model.to_json()))
    if write:
        MODEL_FILE.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
        print(f"written to {MODEL_FILE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write rag/answer/answerability.json")
    main(parser.parse_args().write)
