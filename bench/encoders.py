"""Encoder backends side by side on a BEIR dataset: quality, encoder work, indexing speed.

    .venv/bin/python bench/encoders.py ../shared/eval/scifact            # onnx-int8 and onnx
    .venv/bin/python bench/encoders.py ../shared/eval/scifact --variant onnx-int8

A variant is a backend (onnx-int8, onnx = fp32, torch). For each it builds the dataset's index (cached like `rag eval --beir`, timed only when built
here) and prints nDCG@10 / Recall@100 / MRR@10 of BM25, dense and hybrid retrieval, plus the
word pieces the encoder read per word piece of the corpus (special tokens and overlap
included). ONNX fp32 gives PyTorch's vectors (cosine > 0.99999, tests/test_encoders.py), so
"onnx" stands for the PyTorch encoder at a fraction of the time; "torch" runs it anyway.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag import Config
from rag.encoders.base import Embedder
from rag.encoders.minilm import BACKENDS, TransformerEmbedder
from rag.eval.beir import cached_index, corpus_path, evaluate_beir, load_corpus

VARIANTS = BACKENDS


class TokenTally:
    """Wraps an encoder and counts the word pieces it is given to encode."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens
        self.word_pieces = 0
        self.seconds = 0.0

    def describe(self) -> dict[str, str]:
        return self.inner.describe()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._timed(texts, self.inner.embed)

    def embed_pooled(self, texts, groups):  # noqa: ANN001, ANN201 - the Embedder protocol
        return self._timed(texts, self.inner.embed_pooled, groups)

    def _timed(self, texts, method, *args):  # noqa: ANN001, ANN202
        self.word_pieces += sum(min(n + 2, self.max_tokens) for n in self.inner.count_tokens(texts))
        started = time.perf_counter()
        result = method(texts, *args)
        self.seconds += time.perf_counter() - started
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help="encoder backend, repeatable (default: onnx-int8 and onnx)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--cache", type=Path, default=Path(".cache/beir"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    corpus_tokens = None
    results = []
    for variant in args.variant or [v for v in VARIANTS if not v.startswith("torch")]:
        embedder = TokenTally(TransformerEmbedder(backend=variant))
        if corpus_tokens is None:
            corpus_tokens = sum(embedder.count_tokens([a.text for a in load_corpus(corpus_path(args.dataset))]))
        config = Config()
        started = time.perf_counter()
        cached_index(args.dataset, args.cache, embedder, config)
        index_seconds = time.perf_counter() - started
        scores = evaluate_beir(args.dataset, args.split, args.cache, embedder, config)
        row = {"variant": variant, "runs": scores["runs"], "queries": scores["queries"]}
        if embedder.word_pieces:  # the index was built now, not taken from the cache
            row.update(index_seconds=round(index_seconds, 1),
                       encoder_seconds=round(embedder.seconds, 1),
                       word_pieces_per_corpus_piece=round(embedder.word_pieces / corpus_tokens, 3),
                       encoder_word_pieces_per_s=round(embedder.word_pieces / embedder.seconds))
        results.append(row)
        print(f"{variant:<20}" + "  ".join(f"{run} {m['ndcg@10']:.4f}/{m['recall@100']:.4f}/{m['mrr@10']:.4f}"
                                          for run, m in row["runs"].items())
              + "".join(f"  {key} {row[key]}" for key in ("word_pieces_per_corpus_piece", "index_seconds",
                                                         "encoder_word_pieces_per_s") if key in row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dataset": str(args.dataset), "corpus_word_pieces": corpus_tokens,
                                         "variants": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
