"""How long rebuilding the BM25 index takes at a given number of chunks.

Every update of the index rebuilds BM25 over all chunks (bm25s has no incremental insert);
this measures that cost on SciFact abstracts repeated to the size asked for.

    .venv/bin/python bench/lexical_rebuild.py ../shared/eval/scifact --chunks 100000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rag.beir import corpus_path, load_corpus
from rag.lexical import LexicalIndex
from rag.records import Chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--chunks", type=int, default=100_000)
    args = parser.parse_args()
    articles = load_corpus(corpus_path(args.dataset))
    chunks = []
    while len(chunks) < args.chunks:
        for article in articles:
            if len(chunks) == args.chunks:
                break
            chunks.append(Chunk(chunk_id=str(len(chunks)), article_id=f"{article.id}-{len(chunks)}",
                                start=article.body_start, end=len(article.text), text=article.body,
                                title=article.title, heading=article.heading, date=None))
    words = sum(len(chunk.text.split()) for chunk in chunks)
    started = time.perf_counter()
    index = LexicalIndex.build(chunks)
    seconds = time.perf_counter() - started
    print(f"BM25 rebuild over {len(chunks)} chunks ({words / len(chunks):.0f} words each): {seconds:.1f} s "
          f"({len(chunks) / seconds:,.0f} chunks/s); vocabulary {len(index._model.vocab_dict):,} terms")


if __name__ == "__main__":
    main()
