"""One frozen configuration, passed explicitly to every stage that needs it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rag.errors import ConfigError


@dataclass(frozen=True)
class Config:
    """Settings for reading, chunking and searching.

    Chunk sizes are counted in the embedding model's own word pieces. `chunk_tokens` is the
    target; no chunk exceeds what the model reads once its article's title is prepended.
    The search and answer settings (the weights and ratios) apply at query time and need no
    rebuild; their defaults were chosen by cross-validation on tune splits only: SciFact train
    folds for the fusion weights, the question set's tune split for the answer weights
    (docs/evaluation.md).

    >>> Config(chunk_tokens=128, overlap_sentences=1).chunk_tokens
    128
    """

    chunk_tokens: int = 160
    overlap_sentences: int = 1
    max_file_bytes: int = 5_000_000
    max_query_chars: int = 2_000
    lexical_weight: float = 0.45
    sentence_weight: float = 0.3
    article_weight: float = 0.3
    candidates: int = 100
    duplicate_similarity: float = 0.85
    answer_coverage_weight: float = 0.8
    answer_rank_weight: float = 0.1
    answer_keep_ratio: float = 0.65
    answer_type_weight: float = 0.05
    answer_passages: int = 8

    def __post_init__(self) -> None:
        if not 16 <= self.chunk_tokens <= 4096:
            raise ConfigError(f"chunk_tokens must be between 16 and 4096, got {self.chunk_tokens!r}")
        if not 0 <= self.overlap_sentences <= 5:
            raise ConfigError(
                f"overlap_sentences must be between 0 and 5, got {self.overlap_sentences!r}"
            )
        if self.max_file_bytes < 1:
            raise ConfigError(f"max_file_bytes must be positive, got {self.max_file_bytes!r}")
        if self.max_query_chars < 1:
            raise ConfigError(f"max_query_chars must be positive, got {self.max_query_chars!r}")
        for name in ("lexical_weight", "sentence_weight", "article_weight", "answer_coverage_weight", "answer_rank_weight",
                     "answer_keep_ratio", "answer_type_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)!r}")
        if self.sentence_weight + self.article_weight > 1.0:
            raise ConfigError(f"sentence_weight + article_weight must be at most 1 (the chunk's own cosine gets "
                              f"the rest), got {self.sentence_weight!r} + {self.article_weight!r}")
        if not 1 <= self.answer_passages <= 50:
            raise ConfigError(f"answer_passages must be between 1 and 50, got {self.answer_passages!r}")
        if not 10 <= self.candidates <= 10_000:
            raise ConfigError(f"candidates must be between 10 and 10000, got {self.candidates!r}")
        if not 0.5 <= self.duplicate_similarity <= 1.0:
            raise ConfigError(
                f"duplicate_similarity must be between 0.5 and 1, got {self.duplicate_similarity!r}")

    def chunker_settings(self) -> dict[str, Any]:
        """The settings an index depends on: a change to any of them needs a rebuild. "encoding"
        names how vectors are made (each sentence encoded once, chunks pooled from them), so
        that an index made another way is refused rather than searched."""
        return {"chunk_tokens": self.chunk_tokens, "overlap_sentences": self.overlap_sentences,
                "encoding": "sentences"}


def configure_process() -> None:
    """What a process that answers one query at a time runs under (the `rag` command, the
    benchmarks; a Python program serving questions should call it too). Models come from
    packages only: Hugging Face libraries must not try the network. NumPy's (OpenBLAS)
    threads cost more than they save on one query and fight the encoder's for the cores (on
    SciFact, hybrid p95 went from 40 ms to 22 ms at one thread; FAISS's thread count is set
    per search, rag.storage.vectors)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
