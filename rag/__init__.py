"""Offline question answering over news articles, with cited sources.

The public API: build or update an index from article files, open it, search it, ask it.

>>> from rag import Index, build_index
>>> report = build_index(["seeds"], "index")        # doctest: +SKIP
>>> Index.open("index").ask("How many ships has the defence industry built?")  # doctest: +SKIP

Names load on first use (PEP 562), so `import rag` costs nothing heavy: NumPy, FAISS and the
model come in with the first index opened.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Answer": "rag.answer.schema",
    "AnswerSentence": "rag.answer.schema",
    "Citation": "rag.answer.schema",
    "Draft": "rag.answer.schema",
    "RelatedPassage": "rag.answer.schema",
    "LoadReport": "rag.text.articles",
    "load_articles": "rag.text.articles",
    "read_article": "rag.text.articles",
    "set_article_date": "rag.text.articles",
    "Config": "rag.config",
    "configure_process": "rag.config",
    "Embedder": "rag.encoders.base",
    "HashingEmbedder": "rag.encoders.hashing",
    "TransformerEmbedder": "rag.encoders.minilm",
    "ArticleError": "rag.errors",
    "ConfigError": "rag.errors",
    "GeneratorError": "rag.errors",
    "IndexBusyError": "rag.errors",
    "IndexCorruptError": "rag.errors",
    "IndexMismatchError": "rag.errors",
    "IndexNotFoundError": "rag.errors",
    "IndexWriteError": "rag.errors",
    "QueryError": "rag.errors",
    "RagError": "rag.errors",
    "Generator": "rag.answer.generators",
    "LlamaCppGenerator": "rag.answer.generators",
    "LLMSettings": "rag.answer.generators",
    "OpenAICompatibleGenerator": "rag.answer.generators",
    "generator_from_env": "rag.answer.generators",
    "ArticleInfo": "rag.index",
    "Index": "rag.index",
    "IndexStats": "rag.index",
    "UpdateReport": "rag.ingest.plan",
    "build_index": "rag.ingest.update",
    "IntakeResult": "rag.text.intake",
    "intake_articles": "rag.text.intake",
    "remove_article": "rag.text.intake",
    "safe_article_name": "rag.text.intake",
    "Article": "rag.records",
    "Chunk": "rag.records",
    "Hit": "rag.records",
    "Turn": "rag.search.followups",
}

__all__ = [
    "Answer",
    "AnswerSentence",
    "Article",
    "ArticleError",
    "ArticleInfo",
    "Chunk",
    "Citation",
    "Config",
    "ConfigError",
    "Draft",
    "Embedder",
    "Generator",
    "GeneratorError",
    "HashingEmbedder",
    "Hit",
    "Index",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStats",
    "IndexWriteError",
    "IntakeResult",
    "LLMSettings",
    "LlamaCppGenerator",
    "LoadReport",
    "OpenAICompatibleGenerator",
    "QueryError",
    "RagError",
    "RelatedPassage",
    "TransformerEmbedder",
    "Turn",
    "UpdateReport",
    "build_index",
    "configure_process",
    "generator_from_env",
    "intake_articles",
    "load_articles",
    "read_article",
    "remove_article",
    "safe_article_name",
    "set_article_date",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # what type checkers and editors see
    from rag.answer.generators import (
        Generator,
        LlamaCppGenerator,
        LLMSettings,
        OpenAICompatibleGenerator,
        generator_from_env,
    )
    from rag.answer.schema import (
        Answer,
        AnswerSentence,
        Citation,
        Draft,
        RelatedPassage,
    )
    from rag.config import Config, configure_process
    from rag.encoders.base import Embedder
    from rag.encoders.hashing import HashingEmbedder
    from rag.encoders.minilm import TransformerEmbedder
    from rag.errors import (
        ArticleError,
        ConfigError,
        GeneratorError,
        IndexBusyError,
        IndexCorruptError,
        IndexMismatchError,
        IndexNotFoundError,
        IndexWriteError,
        QueryError,
        RagError,
    )
    from rag.index import ArticleInfo, Index, IndexStats
    from rag.ingest.plan import UpdateReport
    from rag.ingest.update import build_index
    from rag.records import Article, Chunk, Hit
    from rag.search.followups import Turn
    from rag.text.articles import (
        LoadReport,
        load_articles,
        read_article,
        set_article_date,
    )
    from rag.text.intake import (
        IntakeResult,
        intake_articles,
        remove_article,
        safe_article_name,
    )
