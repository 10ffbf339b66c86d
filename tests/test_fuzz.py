"""Fuzzing: random bytes and Unicode as article files and as questions give answers or the
project's one-line errors (RagError), never a traceback.

Derandomized, so every run tries the same examples; on the hashing fake, so it is quick.
"""

from __future__ import annotations

import codecs
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SEEDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag import HashingEmbedder, Index, RagError, build_index

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

ODD = st.sampled_from([
    "\ud800", "\udfff", "\x00",  # lone surrogates and NUL: refused in a file, in a question
    "\x1b[2J", "\x07", "\x85", "\r", "\x0c",  # C0 and C1 controls
    "\u2028", "\u202e", "\u200f", "\u200d", "\ufeff", "\u0301",  # separators, bidi, joiner, BOM, accent
    "🚢", "👩‍👩‍👧", "中文", "艦艇", "Hà Nội", "…",
])
HEADER = st.sampled_from([" date 2025-01-01 ", " date 2025-13-40 ", "March 3, 2026 - 10:00\n", "HÀ NỘI — ",
                          "Politics & Law\n\n", "# ", ""])
WORDS = st.text(alphabet="abcdefghij ship meeting.,?\"\n", min_size=1, max_size=40)
TEXT = st.lists(st.one_of(st.characters(), ODD, WORDS), max_size=60).map("".join)
ARTICLE = st.tuples(HEADER, st.lists(st.one_of(st.characters(exclude_categories=["Cs"]), ODD, WORDS, WORDS),
                                     min_size=1, max_size=60)).map(
    lambda parts: parts[0] + "".join(piece for piece in parts[1] if piece not in ("\ud800", "\udfff", "\x00")))


def surrogates_kept(text: str, codec: str) -> bytes:
    return text.encode(codec, "surrogatepass")  # a lone surrogate becomes bytes no decoder accepts


FILE_BYTES = st.one_of(
    ARTICLE.map(str.encode),
    ARTICLE.map(lambda text: codecs.BOM_UTF8 + text.encode()),
    ARTICLE.map(lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le")),
    ARTICLE.map(lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
    TEXT.map(lambda text: surrogates_kept(text, "utf-8")),
    TEXT.map(lambda text: codecs.BOM_UTF16_LE + surrogates_kept(text, "utf-16-le")),
    st.binary(max_size=400),
    st.binary(max_size=60).map(lambda raw: codecs.BOM_UTF16_LE + raw),
)
FILE_NAMES = st.sampled_from([b"a.txt", b"b.md", b"Bai_bao.txt", b"\xc3\xbcni.TXT", b"esc\x1b[5m.txt",
                              b"space name.md", b"a.md", b"caf\xe9.txt"])  # the last is not UTF-8


def no_traceback(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call `function`; only the project's own errors, which the CLI and page show as one line, may escape."""
    try:
        function(*args, **kwargs)
    except RagError as error:
        assert "\n" not in str(error)


@FUZZ
@given(files=st.lists(st.tuples(FILE_NAMES, FILE_BYTES), min_size=1, max_size=3), question=TEXT)
def test_random_article_files_are_indexed_or_refused(files: list[tuple[bytes, bytes]], question: str) -> None:
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "seeds"
        folder.mkdir()
        (folder / "pier.txt").write_text("The new pier opens in May. It cost 12 million dollars.\n")
        for name, raw in files:
            Path(os.fsdecode(os.fsencode(folder) + b"/" + name)).write_bytes(raw)
        embedder = HashingEmbedder()
        report = build_index([folder], Path(work) / "index", embedder=embedder)
        assert "pier" in report.added
        assert all("\n" not in message for message in report.failed + report.skipped)
        assert not build_index([folder], Path(work) / "index", embedder=embedder).changed
        index = Index.open(Path(work) / "index", embedder=embedder)
        articles = index.articles()
        assert all(article.chunks > 0 for article in articles)  # one with nothing to search is refused
        for query in [question, *(article.title for article in articles)]:
            no_traceback(index.search, query, k=3)
            no_traceback(index.ask, query)


@pytest.fixture(scope="module")
def seeds_index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    path = tmp_path_factory.mktemp("fuzz") / "index"
    build_index([SEEDS], path, embedder=HashingEmbedder())
    return Index.open(path, embedder=HashingEmbedder())


@settings(FUZZ, max_examples=100)
@given(question=TEXT, k=st.integers(min_value=1, max_value=20))
def test_random_questions_are_answered_or_refused(seeds_index: Index, question: str, k: int) -> None:
    no_traceback(seeds_index.search, question, k=k)
    no_traceback(seeds_index.search, question, k=k, retriever="bm25")
    no_traceback(seeds_index.ask, question, k=k)
