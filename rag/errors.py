"""Errors a user can act on. Each message says what was wrong and how to fix it."""

REBUILD_HINT = ("rebuild the index with `rag index --rebuild` (give it the same --index, and the folders the "
                "articles are in if not seeds/)")
"""How to fix a damaged or outdated index, as every message about one ends."""


class RagError(Exception):
    """Base for every error the CLI and UI show to a person as one line."""


class ArticleError(RagError):
    """An article file cannot be read or is not a usable article."""


class IndexNotFoundError(RagError):
    """No index exists at the given directory."""


class IndexMismatchError(RagError):
    """The index was built with settings that differ from the current configuration."""


class IndexCorruptError(RagError):
    """A file of the index is missing or damaged."""


class IndexWriteError(RagError):
    """The index directory cannot be written (permissions, disk full); the old index is intact."""


class IndexBusyError(RagError):
    """Another process holds the index's write lock."""


class ConfigError(RagError, ValueError):
    """A configuration value is out of range."""


class QueryError(RagError, ValueError):
    """A question or search query cannot be used as given."""


class GeneratorError(RagError):
    """The LLM that writes answers cannot be used: misconfigured, unreachable, too slow, or
    answering with something that is not a chat completion."""
