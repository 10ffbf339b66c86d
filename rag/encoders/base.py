"""What the index needs from an encoder, and the one normalisation every encoder applies.

All encoders give L2-normalised float32 vectors and count text in their own tokens, which is
what the chunker sizes chunks by. `embed_pooled` lets the index read each word piece once: a
chunk's vector is pooled from its heading's and sentences' own passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an encoder.

    `name` names the vector space: an index is only searched by an encoder of the same name
    and `dim` (both are recorded in its manifest). `max_tokens` counts the special tokens.
    """

    name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors."""
        ...

    def embed_pooled(self, texts: Sequence[str], groups: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's vector, and one vector per group of texts: the mean of the (non-special)
        token embeddings of the texts in the group, each text encoded once, on its own."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of word pieces in each text, without special tokens and without truncation."""
        ...

    def embed_tokens(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each text, its (non-special) tokens' L2-normalised contextual vectors, (n, dim),
        and their (start, end) character offsets, (n, 2)."""
        ...

    def describe(self) -> dict[str, str]:
        """What the manifest records about how the vectors were made, beside `name`."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as contiguous float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
