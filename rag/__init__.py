"""Offline question answering over news articles, with cited sources.

The public API: build or update an index from article files, open it, search it.
Nothing heavy happens at import; the embedding model loads on first use.
"""

from rag.articles import LoadReport, load_articles, read_article
from rag.config import Config
from rag.embedders import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from rag.errors import (
    ArticleError,
    ConfigError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    QueryError,
    RagError,
)
from rag.index import ArticleInfo, Index, UpdateReport, build_index, default_index_dir
from rag.records import Article, Chunk, Hit

__all__ = [
    "Article",
    "ArticleError",
    "ArticleInfo",
    "Chunk",
    "Config",
    "ConfigError",
    "Embedder",
    "HashingEmbedder",
    "Hit",
    "Index",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "LoadReport",
    "QueryError",
    "RagError",
    "SentenceTransformerEmbedder",
    "UpdateReport",
    "build_index",
    "default_index_dir",
    "load_articles",
    "read_article",
]
