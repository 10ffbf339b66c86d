"""The next snapshot of an index: the previous one minus the articles gone, plus those just embedded.

What was embedded goes into one new segment; when segments have piled up, or the dead and
scattered chunks pass a share of the index, everything is written as one base segment
instead (compaction). The manifest describes the result.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.config import Config
from rag.encoders.base import Embedder, normalise
from rag.records import Article
from rag.storage.chunk_table import ChunkRecords, StoredChunk
from rag.storage.layout import FORMAT_VERSION
from rag.storage.lexical import LexicalIndex
from rag.storage.snapshot import Snapshot
from rag.storage.vectors import VectorIndex
from rag.storage.writer import new_segment
from rag.text.chunking import ChunkedArticle

MAX_SEGMENTS = 16
"""Segments a version may list before it is compacted: a load reads and merges each one, and
a search of BM25 visits each, so their number is kept small whatever the number of updates."""

COMPACT_SHARE = 0.25
"""Compact when the chunks outside the base segment plus those removed pass this share of the
live chunks. Compaction rewrites the whole index, so each costs at least a quarter of the index
in new work: its cost per update stays a constant factor of what the updates themselves wrote."""


def next_snapshot(previous: Snapshot | None, embedded: list[Article], split: list[ChunkedArticle],
                   chunk_vectors: np.ndarray, sentence_vectors: np.ndarray, gone: set[str], embedder: Embedder,
                   config: Config, entries: dict[str, dict[str, Any]], previous_in_use: bool) -> Snapshot:
    """The previous snapshot minus the articles in `gone`, plus the newly split ones, which
    a new segment holds; or, when compaction is due, everything in one new base segment."""
    vectors, stale = _without_articles(previous, gone, embedder.dim, copy=previous_in_use)
    first_chunk = previous.manifest["next_ids"]["chunk"] if previous else 0
    first_sentence = previous.manifest["next_ids"]["sentence"] if previous else 0
    chunk_ids = np.arange(first_chunk, first_chunk + len(chunk_vectors))
    sentence_ids = np.arange(first_sentence, first_sentence + len(sentence_vectors))
    if previous is None:  # a new index: its one base segment is built straight from the vectors
        vectors.chunks = VectorIndex.of(chunk_vectors, chunk_ids)
        vectors.sentences = VectorIndex.of(sentence_vectors, sentence_ids)
    elif len(chunk_ids):
        vectors.chunks.add(chunk_vectors, chunk_ids)
        vectors.sentences.add(sentence_vectors, sentence_ids)
    new_chunks = _add_records(vectors, split, first_chunk, first_sentence)
    article_vectors, article_rows = _article_vectors(previous, split, chunk_vectors, embedder.dim)
    article_rows = {article_id: row for article_id, row in article_rows.items() if article_id in entries}
    rebase = vectors.chunks.needs_rebase or vectors.sentences.needs_rebase

    if previous is None:
        segments = [new_segment(0)]
        lexical, removed = LexicalIndex.build([stored.chunk for stored in new_chunks]), np.zeros(0, dtype=np.int64)
    else:
        segments = list(previous.manifest["segments"]) + ([new_segment(first_chunk)] if new_chunks else [])
        lexical = previous.lexical.appended(np.searchsorted(previous.segment_chunk_ids, stale),
                                            [stored.chunk for stored in new_chunks])
        removed = np.union1d(previous.removed, np.array(stale, dtype=np.int64))
        if rebase or _compaction_due(segments, removed, len(vectors.stored), first_chunk + len(new_chunks)):
            segments, lexical, removed = [new_segment(0)], lexical.compacted(), np.zeros(0, dtype=np.int64)
            live = sorted(article_rows)
            article_vectors = article_vectors[[article_rows[a] for a in live]].reshape(-1, embedder.dim)
            article_rows = {article_id: row for row, article_id in enumerate(live)}

    for article, part in zip(embedded, split, strict=True):  # the others keep their count
        entries[article.id]["chunks"] = len(part.chunks)
    next_ids = {"chunk": first_chunk + len(new_chunks), "sentence": first_sentence + len(sentence_vectors)}
    if rebase:  # a base segment is a graph if it holds more than EXACT_UP_TO vectors
        vectors = _Vectors(vectors.chunks.rebased(), vectors.sentences.rebased(), vectors.stored)
    return Snapshot(manifest=_manifest(vectors, embedder_info(embedder), config.chunker_settings(), entries,
                                       next_ids, segments),
                    chunk_vectors=vectors.chunks, sentence_vectors=vectors.sentences,
                    chunks=vectors.stored, lexical=lexical, article_vectors=article_vectors,
                    article_rows=article_rows, removed=removed)


@dataclass
class _Vectors:
    """The chunk and sentence vector indexes of a snapshot being made, and its chunks by id."""

    chunks: VectorIndex
    sentences: VectorIndex
    stored: ChunkRecords


def _without_articles(previous: Snapshot | None, gone: set[str], dim: int,
                      copy: bool) -> tuple[_Vectors, list[int]]:
    """The previous vectors and chunks without those of the articles in `gone`, and the ids
    of the chunks left out. With `copy` (searches may be running on the previous snapshot)
    the vector indexes are copies; otherwise the previous snapshot's own, changed in place
    (copying 100k chunks' vectors takes about a second)."""
    if previous is None:
        return _Vectors(VectorIndex.empty(dim), VectorIndex.empty(dim), ChunkRecords.empty()), []
    own = VectorIndex.copy if copy else (lambda index: index)
    stale = sorted(chunk_id for article_id in gone
                   for chunk_id in previous.chunk_ids_of_article.get(article_id, np.zeros(0, dtype=np.int64)).tolist())
    vectors = _Vectors(own(previous.chunk_vectors), own(previous.sentence_vectors), previous.chunks.without(stale))
    if stale:
        vectors.chunks.remove(np.array(stale, dtype=np.int64))
        vectors.sentences.remove(previous.chunks.sentence_ids_of(np.array(stale, dtype=np.int64)))
    return vectors, stale


def _add_records(vectors: _Vectors, split: list[ChunkedArticle], first_chunk: int,
                 first_sentence: int) -> list[StoredChunk]:
    """Add the records of the newly split articles' chunks, with ids from `first_chunk` and
    `first_sentence` on; returns their chunks in id order."""
    added = stored_chunks(split, first_sentence)
    vectors.stored = ChunkRecords.concat([
        vectors.stored, ChunkRecords.from_stored(dict(enumerate(added, start=first_chunk)))])
    return added


def stored_chunks(split: list[ChunkedArticle], first_sentence: int) -> list[StoredChunk]:
    """The records of the split articles' chunks in order, their sentences numbered from
    `first_sentence` on in the order embed_articles encoded them."""
    added = []
    sentence_cursor = first_sentence
    for part in split:
        for chunk, members in zip(part.chunks, part.chunk_sentences, strict=True):
            added.append(StoredChunk(chunk=chunk, sentence_spans=tuple(part.sentences[i] for i in members),
                                     sentence_ids=tuple(sentence_cursor + i for i in members)))
        sentence_cursor += len(part.sentences)
    return added


def embedder_info(embedder: Embedder) -> dict[str, Any]:
    """What an index records of the encoder that made its vectors: a search with another is refused."""
    return {"name": embedder.name, **embedder.describe(), "dim": embedder.dim, "max_tokens": embedder.max_tokens,
            "normalization": "l2", "metric": "inner_product"}


LEXICAL_INFO = {"formula": "BM25 (Lucene)", **LexicalIndex.PARAMS, "fields": "heading x2 + chunk text"}


def snapshot_of(stored: dict[int, StoredChunk], chunk_vectors: np.ndarray, sentence_ids: np.ndarray,
                sentence_vectors: np.ndarray, entries: dict[str, dict[str, Any]], article_vectors: dict[str, np.ndarray],
                embedder: dict[str, Any], chunker: dict[str, Any], next_ids: dict[str, int]) -> Snapshot:
    """A new index's snapshot, one base segment, from chunks and vectors made elsewhere (an
    index exported from another store): nothing is encoded again. `stored` and
    `chunk_vectors` are in ascending chunk id order, `sentence_ids` ascending."""
    chunk_ids = np.array(sorted(stored), dtype=np.int64)
    records = ChunkRecords.from_stored(stored)
    vectors = _Vectors(VectorIndex.of(chunk_vectors, chunk_ids), VectorIndex.of(sentence_vectors, sentence_ids), records)
    live = sorted(entries)
    return Snapshot(manifest=_manifest(vectors, embedder, chunker, entries, next_ids, [new_segment(0)]),
                    chunk_vectors=vectors.chunks, sentence_vectors=vectors.sentences, chunks=records,
                    lexical=LexicalIndex.build([stored[i].chunk for i in chunk_ids.tolist()]),
                    article_vectors=np.array([article_vectors[a] for a in live], dtype=np.float32).reshape(-1, embedder["dim"]),
                    article_rows={article_id: row for row, article_id in enumerate(live)},
                    removed=np.zeros(0, dtype=np.int64))


def _manifest(vectors: _Vectors, embedder: dict[str, Any], chunker: dict[str, Any], entries: dict[str, dict[str, Any]],
              next_ids: dict[str, int], segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "embedder": embedder,
        "chunker": chunker,
        "vector_search": {"chunks": vectors.chunks.kind(), "sentences": vectors.sentences.kind()},
        "lexical": LEXICAL_INFO,
        "articles": dict(sorted(entries.items())),
        "counts": {"articles": len(entries), "chunks": len(vectors.stored), "sentences": vectors.sentences.ntotal},
        "next_ids": next_ids,
        "segments": segments,
        "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "library_versions": {name: _version(name) for name in
                             ("rag", "faiss-cpu", "numpy", "scipy", "PyStemmer", "onnxruntime", "sentence-transformers")},
    }


def _compaction_due(segments: list[dict[str, Any]], removed: np.ndarray, live_chunks: int, next_chunk: int) -> bool:
    """Whether to rewrite the index as one base segment: when there are many segments, or
    the chunks written outside the base plus those removed exceed a share of the index, so
    that loads and searches never carry much scattered or dead weight."""
    outside_base = next_chunk - segments[1]["first_chunk"] if len(segments) > 1 else 0
    return len(segments) > MAX_SEGMENTS or outside_base + len(removed) > COMPACT_SHARE * max(live_chunks, 1)


def _article_vectors(previous: Snapshot | None, split: list[ChunkedArticle], chunk_vectors: np.ndarray,
                     dim: int) -> tuple[np.ndarray, dict[str, int]]:
    """The previous article vectors with one row appended per article embedded."""
    old = previous.article_vectors if previous else np.zeros((0, dim), dtype=np.float32)
    rows = dict(previous.article_rows) if previous else {}
    fresh = article_means(split, chunk_vectors, dim)
    for number, article_id in enumerate(fresh):
        rows[article_id] = len(old) + number
    return np.concatenate([old, np.array(list(fresh.values()), dtype=np.float32).reshape(-1, dim)]), rows


def article_means(split: list[ChunkedArticle], chunk_vectors: np.ndarray, dim: int) -> dict[str, np.ndarray]:
    """Each split article's vector, in order: the normalised mean of its chunk vectors (what
    the article is about as a whole); an article without chunks has none."""
    sizes = [len(part.chunks) for part in split if part.chunks]
    starts = np.cumsum([0, *sizes[:-1]])
    means = normalise(np.add.reduceat(chunk_vectors, starts, axis=0)) if sizes else np.zeros((0, dim), np.float32)
    return {part.chunks[0].article_id: mean for part, mean in zip((p for p in split if p.chunks), means, strict=True)}


@functools.cache  # a process's installed packages do not change; looking them up took 16 ms an update
def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


