"""Offline question answering over news articles, with cited sources.

The public API: build or update an index from article files, open it, search it.
Nothing heavy happens at import; the embedding model loads on first use.
"""

from rag.answer.schema import Answer, AnswerSentence, Citation, RelatedPassage
from rag.text.articles import LoadReport, load_articles, read_article
from rag.config import Config
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
from rag.answer.generators import (
    Generator,
    LlamaCppGenerator,
    LLMSettings,
    OpenAICompatibleGenerator,
    generator_from_env,
)
from rag.index import ArticleInfo, Index
from rag.ingest.update import UpdateReport, build_index
from rag.text.intake import IntakeResult, intake_articles, safe_article_name
from rag.records import Article, Chunk, Hit

__all__ = [
    "Answer",
    "AnswerSentence",
    "Citation",
    "RelatedPassage",
    "Article",
    "ArticleError",
    "ArticleInfo",
    "Chunk",
    "Config",
    "ConfigError",
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
    "IndexWriteError",
    "IntakeResult",
    "LLMSettings",
    "LlamaCppGenerator",
    "LoadReport",
    "OpenAICompatibleGenerator",
    "QueryError",
    "RagError",
    "TransformerEmbedder",
    "UpdateReport",
    "build_index",
    "generator_from_env",
    "intake_articles",
    "load_articles",
    "read_article",
    "safe_article_name",
]
