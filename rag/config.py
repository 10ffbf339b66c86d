"""One frozen configuration, passed explicitly to every stage that needs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rag.errors import ConfigError


@dataclass(frozen=True)
class Config:
    """Settings for reading, chunking and searching.

    Chunk sizes are counted in the embedding model's own word pieces. `chunk_tokens` is the
    target; no chunk exceeds what the model reads once its article's title is prepended.
    The search settings (`fusion` and the weights) apply at query time and need no rebuild;
    their defaults were chosen on SciFact train and seeds_dev.jsonl (docs/evaluation.md).
    `sentence_vectors="late"` pools each sentence's vector from its chunk's encoding (one
    forward pass per chunk); "separate" encodes every sentence again on its own.

    >>> Config(chunk_tokens=128, overlap_sentences=1).chunk_tokens
    128
    """

    chunk_tokens: int = 160
    overlap_sentences: int = 1
    sentence_vectors: Literal["late", "separate"] = "late"
    max_file_bytes: int = 5_000_000
    max_query_chars: int = 2_000
    fusion: Literal["zscore", "rrf"] = "zscore"
    lexical_weight: float = 0.4
    sentence_weight: float = 0.6
    candidates: int = 100
    duplicate_similarity: float = 0.85
    answer_coverage_weight: float = 0.5
    answer_rank_weight: float = 0.05
    answer_keep_ratio: float = 0.65
    abstain_passage_coverage: float = 0.61

    def __post_init__(self) -> None:
        if not 16 <= self.chunk_tokens <= 4096:
            raise ConfigError(f"chunk_tokens must be between 16 and 4096, got {self.chunk_tokens!r}")
        if not 0 <= self.overlap_sentences <= 5:
            raise ConfigError(
                f"overlap_sentences must be between 0 and 5, got {self.overlap_sentences!r}"
            )
        if self.sentence_vectors not in ("late", "separate"):
            raise ConfigError(f"sentence_vectors must be 'late' or 'separate', got {self.sentence_vectors!r}")
        if self.max_file_bytes < 1:
            raise ConfigError(f"max_file_bytes must be positive, got {self.max_file_bytes!r}")
        if self.max_query_chars < 1:
            raise ConfigError(f"max_query_chars must be positive, got {self.max_query_chars!r}")
        if self.fusion not in ("zscore", "rrf"):
            raise ConfigError(f"fusion must be 'zscore' or 'rrf', got {self.fusion!r}")
        for name in ("lexical_weight", "sentence_weight", "answer_coverage_weight", "answer_rank_weight",
                     "answer_keep_ratio", "abstain_passage_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)!r}")
        if not 10 <= self.candidates <= 10_000:
            raise ConfigError(f"candidates must be between 10 and 10000, got {self.candidates!r}")
        if not 0.5 <= self.duplicate_similarity <= 1.0:
            raise ConfigError(
                f"duplicate_similarity must be between 0.5 and 1, got {self.duplicate_similarity!r}")

    def chunker_settings(self) -> dict[str, Any]:
        """The settings an index depends on: a change to any of them needs a rebuild."""
        return {"chunk_tokens": self.chunk_tokens, "overlap_sentences": self.overlap_sentences,
                "sentence_vectors": self.sentence_vectors}
