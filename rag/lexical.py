"""BM25 over chunks with bm25s (sparse matrices, saved as .npy + JSON, no pickle).

Documents are the chunk texts with their article title counted twice, in the order of their
FAISS ids, so position i of a score array is the i-th smallest chunk id. Terms come from
`rag.textnorm.terms`, the same normalisation the answer composer uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from rag.records import Chunk
from rag.textnorm import terms

log = logging.getLogger(__name__)

def lexical_text(chunk: Chunk) -> str:
    """What BM25 sees for a chunk: the title twice (a strong, short signal), then the text."""
    return f"{chunk.title}\n{chunk.title}\n{chunk.text}"


class LexicalIndex:
    """BM25 scores for every chunk of a snapshot."""

    PARAMS = {"k1": 0.9, "b": 0.4, "method": "lucene"}

    def __init__(self, model: bm25s.BM25 | None, size: int) -> None:
        self._model = model
        self.size = size

    @classmethod
    def build(cls, chunks: Sequence[Chunk]) -> LexicalIndex:
        if not chunks:
            return cls(None, 0)
        model = bm25s.BM25(**cls.PARAMS)
        model.index([terms(lexical_text(chunk)) for chunk in chunks], show_progress=False)
        return cls(model, len(chunks))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "size.txt").write_text(f"{self.size}\n", encoding="utf-8")
        if self._model is not None:
            self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        size = int((folder / "size.txt").read_text(encoding="utf-8"))
        if size == 0:
            return cls(None, 0)
        model = bm25s.BM25.load(str(folder), show_progress=False)
        return cls(model, size)

    def knows(self, term: str) -> bool:
        return self._model is not None and term in self._model.vocab_dict

    def idf(self, query_terms: Sequence[str]) -> np.ndarray:
        """Lucene's BM25 idf of each term; a term no chunk holds gets the highest value."""
        if self._model is None:
            return np.ones(len(query_terms), dtype=np.float32)
        vocab = self._model.vocab_dict
        document_frequency = np.diff(self._model.scores["indptr"])
        counts = np.array([document_frequency[vocab[t]] if t in vocab else 0 for t in query_terms], dtype=np.float32)
        return np.log1p((self.size - counts + 0.5) / (counts + 0.5)).astype(np.float32)

    def scores(self, query_terms: Sequence[str], mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every chunk (0 where masked out or no term matches)."""
        known = [term for term in query_terms if self.knows(term)]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        weights = None if mask is None else mask.astype(np.float32)
        return np.asarray(self._model.get_scores(known, weight_mask=weights), dtype=np.float32)
