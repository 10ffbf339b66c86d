"""Encoding the chunks and sentences of newly split articles, a few articles at a time.

Each heading and sentence is encoded once; a chunk's vector pools its heading's and its
sentences' token embeddings, so every word piece of an article is read by the model once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rag.encoders.base import Embedder
from rag.records import Article
from rag.text.chunking import ChunkedArticle

ProgressCallback = Callable[[int, int], None]
"""Called as progress(done, total) while texts are embedded."""

EMBED_BATCH = 64
"""Texts per call to the encoder (whole articles, so a little more): enough that the model's
matrix products run at full speed on CPU, few enough that progress moves every second or so
and that padding to the longest text in a batch wastes little."""


def embed_articles(articles: list[Article], split: list[ChunkedArticle], embedder: Embedder,
                   progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of every chunk and of every sentence, in the order of `split`, encoded a few
    articles at a time, reporting progress in texts encoded."""
    sizes = [len(part.sentences) + 1 for part in split]  # its heading and its sentences
    done, total = 0, sum(sizes)
    # filled in place, not concatenated from parts: at a million chunks each copy is gigabytes
    chunk_vectors = np.empty((sum(len(part.chunks) for part in split), embedder.dim), dtype=np.float32)
    sentence_vectors = np.empty((sum(len(part.sentences) for part in split), embedder.dim), dtype=np.float32)
    if progress:
        progress(0, total)
    start = chunk_row = sentence_row = 0
    while start < len(split):
        end, batch = start, 0
        while end < len(split) and (end == start or batch < EMBED_BATCH):  # whole articles
            batch += sizes[end]
            end += 1
        chunk_part, sentence_part = _encode(articles[start:end], split[start:end], embedder)
        chunk_vectors[chunk_row:chunk_row + len(chunk_part)] = chunk_part
        sentence_vectors[sentence_row:sentence_row + len(sentence_part)] = sentence_part
        chunk_row, sentence_row = chunk_row + len(chunk_part), sentence_row + len(sentence_part)
        done += batch
        if progress:
            progress(done, total)
        start = end
    return chunk_vectors[:chunk_row], sentence_vectors[:sentence_row]


def _encode(articles: list[Article], split: list[ChunkedArticle],
                      embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """Each heading and sentence encoded once; a chunk's vector pools its heading's and its
    sentences' token embeddings (every word piece of the article read once)."""
    texts: list[str] = []
    groups: list[list[int]] = []
    sentence_rows: list[int] = []
    for article, part in zip(articles, split, strict=True):
        title_row = len(texts)
        texts.append(article.heading)
        first = len(texts)
        texts += [article.text[start:end] for start, end in part.sentences]
        sentence_rows += range(first, len(texts))
        groups += [[title_row, *(first + i for i in members)] for members in part.chunk_sentences]
    vectors, chunk_vectors = embedder.embed_pooled(texts, groups)
    return chunk_vectors, vectors[sentence_rows]
