"""Duplicate collapsing against k: a search's cost at k = 10 / 100 / 1000 on a 6,000-chunk index.

Two corpora on the hashing encoder (the collapse's own cost, not the model's): `distinct`,
articles that share vocabulary but no sentences, and `retold`, where every article is
published three times under other names (syndicated copies), so most of a deep ranking
collapses into corroborating sources. Collapsing compares each passage with the at most k
kept so far (rag.search.duplicates); before, it built a (4k)^2 Python list: 6 / 18 / 114 /
921 ms at k = 10 / 100 / 400 / 1000, 2.8 s at k = 1000 when many passages collapsed.

    .venv/bin/python bench/duplicates.py --json bench/results/duplicates.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from rag import Config, HashingEmbedder, Index, build_index
from rag.config import configure_process

WORDS = ("defence industry ministry weapons ships research production technology military equipment modern "
         "national development strategic programme vessels drones radar contract navy army plant factory "
         "engine missile satellite export partner budget officer general minister meeting resolution").split()
QUERIES = ["defence industry ships", "radar contract navy", "missile export partner", "research budget minister",
           "drones factory engine", "strategic programme meeting", "satellite technology plant", "army officer"]


def write_corpus(folder: Path, articles: int, copies: int, rng: random.Random) -> None:
    for number in range(articles):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 24))).capitalize() + "."
                     for _ in range(40)]
        text = f"Report {number} on the defence industry\n\n" + " ".join(sentences)
        for copy in range(copies):
            (folder / f"a{number:04d}_{copy}.txt").write_text(text, encoding="utf-8")


def measure(index: Index, k: int, repeats: int) -> float:
    """Median milliseconds of a search at depth k (the query encoding is microseconds here)."""
    times = []
    for _ in range(repeats):
        for query in QUERIES:
            started = time.perf_counter()
            index.search(query, k=k)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=6000, help="about this many chunks per corpus")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rows = []
    for corpus, copies in (("distinct", 1), ("retold", 3)):
        with tempfile.TemporaryDirectory() as scratch:
            folder, rng = Path(scratch) / "articles", random.Random(7)
            folder.mkdir()
            embedder, config = HashingEmbedder(dim=384), Config(chunk_tokens=128)
            write_corpus(folder, max(1, args.chunks // (8 * copies)), copies, rng)
            build_index([folder], Path(scratch) / "index", embedder=embedder, config=config)
            index = Index.open(Path(scratch) / "index", embedder=embedder, config=config)
            for k in (10, 100, 1000):
                hits = index.search(QUERIES[0], k=k)
                row = {"corpus": corpus, "chunks": index.stats().chunks, "k": k, "hits": len(hits),
                       "collapsed": sum(len(hit.corroborating) for hit in hits), "median_ms": round(measure(index, k, args.repeats), 1)}
                rows.append(row)
                print(f"{corpus:<9} chunks {row['chunks']:>5}  k {k:>4}  hits {row['hits']:>4}  "
                      f"corroborating {row['collapsed']:>4}  median {row['median_ms']:>7.1f} ms", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "duplicate collapsing against k", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
