"""Encoding the chunks and sentences of newly split articles, a few articles at a time.

Each heading and sentence is encoded once; a chunk's vector pools its heading's and its
sentences' token embeddings, so every word piece of an article is read by the model once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rag.encoders.base import Embedder
from rag.records import Article
from rag.text.chunking import ChunkedArticle

ProgressCallback = Callable[[int, int], None]
"""Called as progress(done, total) while texts are embedded."""

Batch = tuple[list[str], list[list[int]]]
"""One encoder call: texts, and the groups of them whose pooled vectors are wanted (chunks)."""
EncodeBatches = Callable[[Iterable[Batch]], Iterator[tuple[np.ndarray, np.ndarray]]]
"""Runs `embed_pooled` on each batch, yielding the results in the batches' order."""

EMBED_BATCH = 64
"""Texts per call to the encoder (whole articles, so a little more): enough that the model's
matrix products run at full speed on CPU, few enough that progress moves every second or so
and that padding to the longest text in a batch wastes little."""


@dataclass(frozen=True)
class _Slice:
    """Consecutive chunks of one article, encoded in one call with its heading and their
    sentences (`sentences`: indices in the article, ascending, each once)."""

    article: int
    chunks: range
    sentences: tuple[int, ...]

    @property
    def texts(self) -> int:
        return 1 + len(self.sentences)


def embed_articles(articles: list[Article], split: list[ChunkedArticle], embedder: Embedder,
                   progress: ProgressCallback | None = None,
                   encode_batches: EncodeBatches | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of every chunk and of every sentence, in the order of `split`, reporting progress
    in texts encoded. Small articles are encoded a few at a time; a long one in slices of
    whole chunks, so that progress moves while it is read (a slice repeats the heading, and a
    sentence two slices' chunks share: the same text gives the same vector). The batches are
    run by `encode_batches` (e.g. on a Ray cluster, rag.ingest.ray_encode), else by `embedder`."""
    slices = [piece for number, part in enumerate(split) for piece in _slices(number, part)]
    batches = _batches(slices)
    done, total = 0, sum(piece.texts for piece in slices)
    chunk_offsets = np.cumsum([0, *(len(part.chunks) for part in split)])
    sentence_offsets = np.cumsum([0, *(len(part.sentences) for part in split)])
    # filled in place, not concatenated from parts: at a million chunks each copy is gigabytes
    chunk_vectors = np.empty((int(chunk_offsets[-1]), embedder.dim), dtype=np.float32)
    sentence_vectors = np.empty((int(sentence_offsets[-1]), embedder.dim), dtype=np.float32)
    if progress:
        progress(0, total)
    run = encode_batches or (lambda payloads: (embedder.embed_pooled(texts, groups) for texts, groups in payloads))
    encoded = run(_payload(batch, articles, split) for batch in batches)
    for batch, (vectors, pooled) in zip(batches, encoded, strict=True):
        chunk_vectors[[int(chunk_offsets[piece.article]) + c for piece in batch for c in piece.chunks]] = pooled
        sentence_vectors[[int(sentence_offsets[piece.article]) + i for piece in batch for i in piece.sentences]] = (
            vectors[_sentence_rows(batch)])
        done += sum(piece.texts for piece in batch)
        if progress:
            progress(done, total)
    return chunk_vectors, sentence_vectors


def _sentence_rows(batch: list[_Slice]) -> list[int]:
    """Where each slice's sentences sit among the texts of its batch (after its heading)."""
    rows, start = [], 0
    for piece in batch:
        rows += range(start + 1, start + piece.texts)
        start += piece.texts
    return rows


def _batches(slices: list[_Slice]) -> list[list[_Slice]]:
    """Consecutive slices, about EMBED_BATCH texts to a batch (at least one slice)."""
    batches: list[list[_Slice]] = []
    for piece in slices:
        if batches and sum(other.texts for other in batches[-1]) + piece.texts <= EMBED_BATCH:
            batches[-1].append(piece)
        else:
            batches.append([piece])
    return batches


def _slices(number: int, part: ChunkedArticle) -> list[_Slice]:
    """An article's chunks in runs whose heading and sentences fit EMBED_BATCH texts (a run
    holds at least one chunk)."""
    slices: list[_Slice] = []
    first, held = 0, dict[int, None]()
    for chunk, members in enumerate(part.chunk_sentences):
        if chunk > first and 1 + len(held | dict.fromkeys(members)) > EMBED_BATCH:
            slices.append(_Slice(number, range(first, chunk), tuple(sorted(held))))
            first, held = chunk, {}
        held |= dict.fromkeys(members)
    if part.chunks:
        slices.append(_Slice(number, range(first, len(part.chunks)), tuple(sorted(held))))
    return slices


def _payload(batch: list[_Slice], articles: list[Article], split: list[ChunkedArticle]) -> Batch:
    """One encoder call for the slices: each heading and sentence once, and per chunk the texts
    its vector pools (its heading's and its sentences' token embeddings)."""
    texts: list[str] = []
    groups: list[list[int]] = []
    for piece in batch:
        article, part = articles[piece.article], split[piece.article]
        title_row = len(texts)
        texts.append(article.heading)
        row_of = {sentence: len(texts) + i for i, sentence in enumerate(piece.sentences)}
        texts += [article.text[start:end] for start, end in (part.sentences[i] for i in piece.sentences)]
        groups += [[title_row, *(row_of[i] for i in part.chunk_sentences[chunk])] for chunk in piece.chunks]
    return texts, groups
