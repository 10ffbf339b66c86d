"""Shared fixtures: the seed articles, a fast deterministic embedder, and the real model."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag import Chunk, Embedder, HashingEmbedder, build_index  # noqa: E402
from rag.answer.answerability import SIGNALS, AnswerabilityModel, Logistic  # noqa: E402
from rag.encoders.minilm import default_embedder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"


class CountingEmbedder(HashingEmbedder):
    """The hashing fake, recording every text it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return super().embed(texts)

    def embed_pooled(self, texts: Sequence[str], groups) -> tuple[np.ndarray, np.ndarray]:
        self.embedded.extend(texts)
        return super().embed_pooled(texts, groups)


def coverage_answerability(threshold: float = 0.61) -> AnswerabilityModel:
    """An answerability model for the hashing fake, whose cosines and token vectors mean
    little (the shipped one is fitted to MiniLM): the question is answered when the best
    passage holds `threshold` of its topic terms, and not found otherwise."""
    steep = 60.0
    logistic = Logistic(tuple(steep if name == "passage_coverage" else 0.0 for name in SIGNALS), -steep * threshold)
    return AnswerabilityModel(logistic, logistic, hedge_at=0.5, answer_at=0.5)


@pytest.fixture(autouse=True)
def no_llm_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's RAG_LLM_* settings must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith("RAG_LLM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def seeds_copy(tmp_path: Path) -> Path:
    """A private copy of the seed folder that a test may change."""
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    return folder


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def fake_index(tmp_path: Path, seeds_copy: Path, embedder: CountingEmbedder) -> Path:
    """An index of the seeds built with the counting fake; returns its directory."""
    path = tmp_path / "index"
    build_index([seeds_copy], path, embedder=embedder)
    return path


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    return default_embedder()  # RAG_ENCODER picks the backend


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory, real_embedder: Embedder) -> Path:
    """An index of the seeds built with the packaged MiniLM, shared by the model tests."""
    path = tmp_path_factory.mktemp("real") / "index"
    build_index([SEEDS], path, embedder=real_embedder)
    return path


def invoke_cli(args: Sequence[str], embedder: Embedder | None = None, **options: object) -> Result:
    """Run the `rag` command in-process with `embedder` (the hashing fake by default) as its encoder."""
    from rag.cli import main

    return CliRunner().invoke(main, list(args), obj={"embedder": embedder or HashingEmbedder()}, **options)


def with_heading(chunk: Chunk) -> str:
    """A chunk's text under its article's heading: the words its vector pools (the heading's
    and its sentences'), and what the chunker's token budget is counted on."""
    return f"{chunk.heading}\n{chunk.text}"
