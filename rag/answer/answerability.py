"""Whether the retrieved passages answer a question: two calibrated scores, three outcomes.

One measure alone does not decide it: a reader's own wording shares few words with the
answering sentence (word coverage falls), and a question about a fact the articles lack is
as close in meaning to them as one they answer (cosine stays high). So the signals of the
evidence are combined by two logistic models, fitted on the tune split of the question set
by `scripts/fit_answerability.py` (which writes `answerability.json`):

- **on topic**: is the question about what the articles cover at all? Below `hedge_at`
  the tool says the articles do not answer ("not_found").
- **answered**: does the best evidence answer it? At `answer_at` or above the answer is
  given ("answered"); between the two, the closest evidence is given as such ("hedged").

A reader loses less from a hedged, cited answer they can check than from a false "not in
the articles", so `hedge_at` is set by cross-validation on tune for a small rate of false
"not_found" on answerable questions, and `answer_at` for a small rate of confident answers
to questions the articles do not answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.answer.schema import Outcome
from rag.errors import ConfigError

MODEL_FILE = Path(__file__).with_name("answerability.json")
# The signals, each between 0 and 1 (rag.answer.extractive computes them):
SIGNALS = (
    "passage_coverage",   # idf share of the question's topic terms that the best passage holds
    "sentence_coverage",  # the same for the best sentence, its two predecessors counting part
    "sentence_cosine",    # the best sentence's cosine to the question
    "unknown_share",      # idf share of topic terms the index does not know, even as typos
    "cosine_margin",      # how far the best sentence stands above the fifth best
    "token_match",        # how well a top sentence holds the topic words in meaning (token MaxSim)
    "token_gap",          # the same for the topic word it holds worst
)


@dataclass(frozen=True)
class Logistic:
    """A logistic model over `SIGNALS`."""

    weights: tuple[float, ...]
    bias: float

    def probability(self, signals: Mapping[str, float]) -> float:
        logit = self.bias + sum(w * signals[name] for w, name in zip(self.weights, SIGNALS, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))

    def to_json(self) -> dict[str, object]:
        return {"weights": [round(w, 4) for w in self.weights], "bias": round(self.bias, 4)}

    @classmethod
    def from_json(cls, row: Mapping[str, object]) -> Logistic:
        weights = tuple(float(w) for w in row["weights"])  # type: ignore[attr-defined]
        if len(weights) != len(SIGNALS):
            raise ValueError(f"{len(weights)} weights for {len(SIGNALS)} signals")
        return cls(weights, float(row["bias"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class AnswerabilityModel:
    """The two models and their thresholds."""

    on_topic: Logistic
    answered: Logistic
    hedge_at: float
    answer_at: float

    def scores(self, signals: Mapping[str, float]) -> dict[str, float]:
        return {"on_topic": self.on_topic.probability(signals), "answered": self.answered.probability(signals)}

    def outcome(self, scores: Mapping[str, float]) -> Outcome:
        if scores["on_topic"] < self.hedge_at:
            return "not_found"
        return "answered" if scores["answered"] >= self.answer_at else "hedged"

    @classmethod
    def hedging(cls) -> AnswerabilityModel:
        """A model that hedges every answer: for collecting signals and answers to fit on."""
        flat = Logistic((0.0,) * len(SIGNALS), 0.0)
        return cls(flat, flat, hedge_at=0.0, answer_at=1.0)

    def to_json(self) -> dict[str, object]:
        return {"signals": list(SIGNALS), "on_topic": self.on_topic.to_json(), "answered": self.answered.to_json(),
                "hedge_at": round(self.hedge_at, 4), "answer_at": round(self.answer_at, 4)}

    @classmethod
    def from_json(cls, row: Mapping[str, object]) -> AnswerabilityModel:
        if row.get("signals") != list(SIGNALS):
            raise ValueError(f"fitted on other signals ({row.get('signals')})")
        model = cls(Logistic.from_json(row["on_topic"]), Logistic.from_json(row["answered"]),  # type: ignore[arg-type]
                    hedge_at=float(row["hedge_at"]), answer_at=float(row["answer_at"]))  # type: ignore[arg-type]
        if not (0.0 <= model.hedge_at <= 1.0 and 0.0 <= model.answer_at <= 1.0):
            raise ValueError(f"thresholds must lie in [0, 1], got {model.hedge_at} and {model.answer_at}")
        return model


@lru_cache(maxsize=4)
def load_model(path: Path = MODEL_FILE) -> AnswerabilityModel:
    """The fitted model shipped with the package (or another file, for experiments)."""
    try:
        return AnswerabilityModel.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read the answerability model {path} ({error}): reinstall the package or "
                          "run scripts/fit_answerability.py --write") from error


def signal_matrix(rows: Sequence[Mapping[str, float]]) -> list[list[float]]:
    """Signals as rows of numbers in `SIGNALS` order, for fitting."""
    return [[row[name] for name in SIGNALS] for row in rows]
