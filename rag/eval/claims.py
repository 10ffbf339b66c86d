"""A labelled claim set for the LLM answer check: load it, check each claim, score "unsupported".

Each line of the set (tests/data/claims.jsonl) is a sentence as an LLM might write it about
an article, its question, its answering evidence, its kind (correct, paraphrased-correct,
swapped-number, swapped-role, invented) and whether the article supports it. A claim is
checked as a small model writes it, citing nothing, against the passages retrieved for its
question, so it must be attributed to the right one; "unsupported" is the positive class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.prompt import Claim
from rag.answer.verification import CheckedClaim, VerifierSettings, check_claims
from rag.eval.questions import split_of
from rag.index import Index


def load_claims(path: Path, split: str = "all") -> list[dict[str, Any]]:
    """The claims of a file, those of one split ("tune", "heldout") by the question set's hash."""
    claims = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [claim for claim in claims if split == "all" or split_of(claim["id"]) == split]


class ClaimChecker:
    """Checks claims against an index, each text embedded once across settings."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self._vectors: dict[str, np.ndarray] = {}
        self._passages: dict[str, list] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.index.embedder.embed(missing), strict=True))
        return np.array([self._vectors[text] for text in texts])

    def check(self, claims: list[dict[str, Any]], settings: VerifierSettings) -> list[CheckedClaim]:
        checked = []
        for claim in claims:
            if claim["question"] not in self._passages:
                hits = self.index.search(claim["question"], k=self.index.config.answer_passages)
                self._passages[claim["question"]] = [hit.chunk for hit in hits]
            [result] = check_claims(claim["question"], [Claim(claim["claim"], ())], self._passages[claim["question"]],
                                    self.embed, settings)
            checked.append(result)
        return checked


def unsupported_scores(claims: list[dict[str, Any]], checked: list[CheckedClaim]) -> dict[str, float]:
    """Precision and recall of flagging (not supported) against the labels' unsupported."""
    flagged = [not result.supported for result in checked]
    false = [not claim["supported"] for claim in claims]
    caught = sum(f and t for f, t in zip(flagged, false, strict=True))
    return {"precision": caught / max(sum(flagged), 1), "recall": caught / max(sum(false), 1),
            "flagged": sum(flagged), "unsupported": sum(false), "claims": len(claims)}
