"""A hashing bag-of-words encoder: fast and deterministic, for tests and for trying the tool without a model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from rag.encoders.base import normalise


class HashingEmbedder:
    """A deterministic bag-of-words encoder for tests: texts sharing words get similar vectors.

    Words are lower-cased and hashed into `dim` signed buckets; a token is a word or a
    punctuation mark. No model, no randomness,
    microseconds a text.
    """

    def __init__(self, dim: int = 64, max_tokens: int = 256) -> None:
        self.name = f"hashing-fake-{dim}"
        self.dim = dim
        self.max_tokens = max_tokens

    def describe(self) -> dict[str, str]:
        return {"backend": "hashing"}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._hash(texts)

    def _hash(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                vectors[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        return normalise(vectors)

    def embed_pooled(self, texts: Sequence[str], groups: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        return self._hash(texts), self._hash([" ".join(texts[i] for i in group) for group in groups])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", text)) for text in texts]

    def embed_tokens(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each word hashed on its own: a token's vector does not depend on its context."""
        found = []
        for text in texts:
            words = list(re.finditer(r"\w+", text))
            found.append((self._hash([w.group() for w in words]).reshape(-1, self.dim),
                          np.array([w.span() for w in words], dtype=np.int64).reshape(-1, 2)))
        return found
