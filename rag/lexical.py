"""BM25 over chunks with bm25s (sparse matrices, saved as .npy + JSON, no pickle).

Documents are the chunk texts with their article title counted twice, in ascending chunk id
order, so position i of a score array is the i-th smallest chunk id. Terms come from
`rag.textnorm.terms`, the same normalisation the answer composer uses.

bm25s has no incremental insert, so every update re-indexes all documents; what makes that
cheap is keeping each document's term ids, so only new chunks are tokenised (tokenising is
~85% of a from-scratch build).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from rag.records import Chunk
from rag.textnorm import terms

log = logging.getLogger(__name__)

_TERMS_FILE = "doc_terms.npy"
_OFFSETS_FILE = "doc_offsets.npy"
_VOCAB_FILE = "terms.json"


def lexical_text(chunk: Chunk) -> str:
    """What BM25 sees for a chunk: the title twice (a strong, short signal), then the text."""
    return f"{chunk.title}\n{chunk.title}\n{chunk.text}"


class LexicalIndex:
    """BM25 scores for every chunk of a snapshot, and the term ids each chunk was indexed with."""

    PARAMS = {"k1": 0.9, "b": 0.4, "method": "lucene"}

    def __init__(self, model: bm25s.BM25 | None, doc_terms: list[np.ndarray], vocab: dict[str, int]) -> None:
        self._model = model
        self._doc_terms = doc_terms
        self._vocab = vocab

    @property
    def size(self) -> int:
        return len(self._doc_terms)

    @classmethod
    def build(cls, chunks: Sequence[Chunk]) -> LexicalIndex:
        return cls(None, [], {}).updated(keep=[], new_chunks=chunks)

    def updated(self, keep: Sequence[int], new_chunks: Sequence[Chunk]) -> LexicalIndex:
        """The documents at positions `keep` (in order), then `new_chunks`; only these are tokenised."""
        vocab = dict(self._vocab)
        doc_terms = [self._doc_terms[position] for position in keep]
        for chunk in new_chunks:
            doc_terms.append(np.array([vocab.setdefault(term, len(vocab)) for term in terms(lexical_text(chunk))],
                                      dtype=np.int32))
        if not doc_terms:
            return LexicalIndex(None, [], vocab)
        model = bm25s.BM25(**self.PARAMS)
        model.index(bm25s.tokenization.Tokenized(ids=[d.tolist() for d in doc_terms], vocab=vocab),
                    show_progress=False)
        return LexicalIndex(model, doc_terms, vocab)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(d) for d in self._doc_terms]).astype(np.int64)
        flat = np.concatenate(self._doc_terms) if self._doc_terms else np.zeros(0, dtype=np.int32)
        np.save(folder / _TERMS_FILE, flat, allow_pickle=False)
        np.save(folder / _OFFSETS_FILE, offsets, allow_pickle=False)
        (folder / _VOCAB_FILE).write_text(json.dumps(self._vocab, ensure_ascii=False), encoding="utf-8")
        if self._model is not None:
            self._model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        flat = np.load(folder / _TERMS_FILE, allow_pickle=False)
        offsets = np.load(folder / _OFFSETS_FILE, allow_pickle=False)
        vocab = json.loads((folder / _VOCAB_FILE).read_text(encoding="utf-8"))
        doc_terms = [flat[start:end] for start, end in zip(offsets[:-1], offsets[1:], strict=True)]
        model = bm25s.BM25.load(str(folder), show_progress=False) if doc_terms else None
        return cls(model, doc_terms, vocab)

    def knows(self, term: str) -> bool:
        """Whether some chunk holds the term (the vocabulary keeps terms of deleted chunks)."""
        if self._model is None or term not in self._model.vocab_dict:
            return False
        column = self._model.vocab_dict[term]
        indptr = self._model.scores["indptr"]
        return bool(indptr[column + 1] > indptr[column])

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
