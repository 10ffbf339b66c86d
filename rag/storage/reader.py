"""What searching and answering read from an index, whatever store holds it.

Two stores implement it: the embedded segment store (rag.storage.snapshot.Snapshot, FAISS and
BM25 in this process) and Milvus (rag.storage.milvus.MilvusReader, searched on the server).
Ranking, fusion, duplicate collapsing, answers and citations are the same code over either:
a store only proposes candidates for a query and returns exact facts about given chunks.
Everything here is read-only; an instance is one consistent version of the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from rag.records import Chunk, SearchFilter
from rag.storage.chunk_table import StoredChunk


class Lexicon(Protocol):
    """The index's terms and how many live chunks hold each: what typo correction and the
    answer's word coverage weigh query words by."""

    terms_by_length: dict[int, list[str]]

    def knows(self, term: str) -> bool: ...

    def document_frequency(self, term: str) -> int: ...

    def idf(self, query_terms: Sequence[str]) -> np.ndarray: ...


class LexicalScores(Protocol):
    """One query's BM25 scores under one filter (Lucene's formula, k1 0.9, b 0.4)."""

    def top(self, depth: int) -> np.ndarray:
        """Ids of the at most `depth` best chunks scoring above 0, in ascending id order."""
        ...

    def of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The scores of the given chunks (0 for one the filter excludes or no term matches)."""
        ...


class IndexReader(Protocol):
    """One consistent version of an index, as searches and answers read it.

    `manifest` describes it as rag.storage.layout documents ("embedder", "chunker",
    "articles" by id with title, date, source, content_hash and chunks, "counts",
    "updated_at"); `name` changes with every update.
    """

    name: str
    manifest: dict[str, Any]

    @property
    def lexicon(self) -> Lexicon: ...

    @property
    def dim(self) -> int: ...

    @property
    def chunk_count(self) -> int: ...

    def dense_chunks(self, query_vector: np.ndarray, depth: int, search_filter: SearchFilter) -> np.ndarray:
        """Ids of the about `depth` chunks nearest the query that the filter admits."""
        ...

    def dense_sentence_chunks(self, query_vector: np.ndarray, depth: int, search_filter: SearchFilter) -> np.ndarray:
        """Ids of the admitted chunks holding the about `depth` sentences nearest the query."""
        ...

    def lexical_scores(self, terms: Sequence[str], weights: Sequence[float],
                       search_filter: SearchFilter) -> LexicalScores: ...

    def chunk_vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray: ...

    def sentence_vectors_of(self, sentence_ids: np.ndarray) -> np.ndarray: ...

    def article_vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The vector of each given chunk's article: its chunks' normalised mean."""
        ...

    def article_ids_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The article id of each given chunk."""
        ...

    def sentences_of(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sentence ids of the given chunks, concatenated, and where each chunk's begin."""
        ...

    def stored(self, chunk_id: int) -> StoredChunk: ...

    def stored_of(self, chunk: Chunk) -> StoredChunk:
        """The stored record of a chunk a hit carries (keyed by its article and content hash:
        a syndicated copy's chunks have the same hash as the original's)."""
        ...

    def article_sentences(self, article_id: str) -> list[tuple[int, str]]:
        """An article's (sentence id, sentence text) in reading order, each sentence once."""
        ...
