"""Indexing cost against file size: normal news text and a single line with no sentence end.

A file with no sentence end used to become one sentence, and so its own heading, stored in
every chunk and counted twice in every BM25 document: cost grew with the square of its size
(a 1 MB line ran past 6 GB). This builds a fresh index of one file at each size and prints
seconds and index bytes per MB of file, which should stay flat as the size grows.

    .venv/bin/python bench/large_files.py                    # the hashing encoder: the pipeline's own cost
    .venv/bin/python bench/large_files.py --encoder real --sizes 10000 100000   # with MiniLM (slow)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from rag import HashingEmbedder, build_index
from rag.encoders.minilm import default_embedder

WORDS = ("defence industry ministry weapons ships research production technology military equipment "
         "modern national development strategic programme vessels drones radar contract").split()


def article(size: int, single_line: bool, rng: random.Random) -> str:
    """About `size` bytes of words: sentences of 12-30 words, or one line with no full stop."""
    parts, length = [], 0
    while length < size:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30)))
        piece = sentence if single_line else sentence.capitalize() + "."
        parts.append(piece)
        length += len(piece) + 1
    return " ".join(parts) if single_line else "Headline of the test article\n" + "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 4_000_000])
    parser.add_argument("--encoder", choices=("hashing", "real"), default="hashing")
    args = parser.parse_args()
    embedder = HashingEmbedder() if args.encoder == "hashing" else default_embedder()
    rng = random.Random(7)
    print(f"encoder: {args.encoder}")
    print(f"{'kind':<12}{'size':>10}{'seconds':>10}{'s per MB':>10}{'index MB':>10}{'index per MB':>14}")
    for single_line in (False, True):
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as folder:
                source = Path(folder) / "articles"
                source.mkdir()
                (source / "article.txt").write_text(article(size, single_line, rng), encoding="utf-8")
                started = time.perf_counter()
                build_index([source], Path(folder) / "index", embedder=embedder)
                seconds = time.perf_counter() - started
                index_bytes = sum(p.stat().st_size for p in (Path(folder) / "index").rglob("*") if p.is_file())
            megabytes = size / 1e6
            print(f"{'single line' if single_line else 'normal':<12}{size:>10}{seconds:>10.2f}"
                  f"{seconds / megabytes:>10.2f}{index_bytes / 1e6:>10.2f}{index_bytes / size:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
