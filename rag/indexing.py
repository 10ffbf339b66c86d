"""Building and incrementally updating an index directory from article files.

New articles are added, changed ones (by content hash) replaced, and articles whose file was
under one of the given sources but is gone are removed; unchanged articles are not
re-embedded. The whole update runs under the index's write lock and ends with one atomic
snapshot swap, so a crash at any point leaves the previous index live.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from rag.articles import LoadReport, load_articles
from rag.chunk_records import ChunkRecords, StoredChunk
from rag.chunking import ChunkedArticle, split_article, text_for_embedding
from rag.config import Config
from rag.embedders import Embedder, default_embedder, normalise
from rag.errors import IndexBusyError, IndexWriteError
from rag.lexical import LexicalIndex
from rag.records import Article
from rag.store import (
    CURRENT_FILE,
    FORMAT_VERSION,
    LOCK_FILE,
    LOCK_HOLDER_FILE,
    Snapshot,
    check_compatible,
    current_snapshot_dir,
    load_snapshot,
    new_segment,
    remove_stale_staging,
    without_gc,
    write_snapshot,
)
from rag.vectors import VectorIndex

log = logging.getLogger(__name__)

DEFAULT_INDEX_DIR = Path("index")
ProgressCallback = Callable[[int, int], None]
"""Called as progress(done, total) while texts are embedded."""

_EMBED_BATCH = 64
_MAX_SEGMENTS = 16
_COMPACT_SHARE = 0.25


@dataclass
class UpdateReport:
    """What an update did, article by article. `failed` holds one message per bad file."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    same_text: dict[str, str] = field(default_factory=dict)
    chunks_embedded: int = 0
    sentences_embedded: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        copies = "".join(f"; {copy} has the same text as {original}" for copy, original in self.same_text.items())
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed "
            f"({self.chunks_embedded} chunks, {self.sentences_embedded} sentences embedded){copies}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "skipped": self.skipped,
            "same_text": self.same_text,
            "chunks_embedded": self.chunks_embedded,
            "sentences_embedded": self.sentences_embedded,
        }


def build_index(sources: Sequence[str | Path], path: str | Path = DEFAULT_INDEX_DIR,
                embedder: Embedder | None = None, config: Config | None = None, rebuild: bool = False,
                progress: ProgressCallback | None = None, lock_timeout: float = 60.0,
                follow_links: bool = False) -> UpdateReport:
    """Create or incrementally update the index at `path` from article files and folders.

    A file that fails to read is reported in `failed` and keeps its previous version in the
    index. A second writer waits up to `lock_timeout` seconds, then gets IndexBusyError. A
    symbolic link out of a folder is skipped unless `follow_links`.
    """
    return update_index(sources, path, embedder, config, rebuild=rebuild, progress=progress,
                        lock_timeout=lock_timeout, follow_links=follow_links)[0]


def update_index(sources: Sequence[str | Path], path: str | Path = DEFAULT_INDEX_DIR,
                 embedder: Embedder | None = None, config: Config | None = None, rebuild: bool = False,
                 progress: ProgressCallback | None = None, lock_timeout: float = 60.0,
                 served: Snapshot | None = None, follow_links: bool = False) -> tuple[UpdateReport, Snapshot | None]:
    """build_index for a process that serves the index: when `served`, the snapshot it holds
    in memory, is the live one, the update starts from it instead of reading the index back
    from disk; returns the report and the new snapshot (None if nothing changed)."""
    path = Path(path)
    embedder = embedder or default_embedder()
    config = config or Config()
    _make_index_dir(path)
    with _write_lock(path, lock_timeout):
        roots = [Path(source).resolve() for source in sources]
        previous = None if rebuild else _current_or_none(path, embedder, config, served)
        return _update_locked(load_articles(roots, config, follow_links), roots, path, embedder, config, previous, progress,
                              previous_in_use=previous is not None and previous is served)


def index_articles(articles: Sequence[Article], path: str | Path, embedder: Embedder,
                   config: Config | None = None, progress: ProgressCallback | None = None,
                   lock_timeout: float = 60.0, remove: Sequence[str] = ()) -> UpdateReport:
    """Add or replace articles made in memory (a benchmark corpus, say), and remove the
    articles whose ids are in `remove`; nothing else is removed."""
    path = Path(path)
    config = config or Config()
    _make_index_dir(path)
    with _write_lock(path, lock_timeout):
        return _update_locked(LoadReport(articles=list(articles)), [], path, embedder, config,
                              _current_or_none(path, embedder, config), progress, remove=frozenset(remove))[0]


def _make_index_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise IndexWriteError(f"cannot create the index folder {path} ({error.strerror or error}): "
                              "choose another with --index or RAG_INDEX") from error


@contextmanager
def _write_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold the index's write lock, its holder's pid beside it; a writer that died left only
    staging folders to clear. A wait for another writer is logged when it starts: an update
    that seems stuck for a minute says why."""
    lock, holder = FileLock(str(path / LOCK_FILE)), path / LOCK_HOLDER_FILE
    try:
        try:
            lock.acquire(blocking=False)
        except Timeout:
            log.warning("waiting for another update of the index at %s (%s) to finish, up to %g s…",
                        path, _holder(holder), timeout)
            lock.acquire(timeout=timeout)
        holder.write_text(f"{os.getpid()}\n", encoding="utf-8")
        remove_stale_staging(path)
    except Timeout:
        raise IndexBusyError(
            f"another process is updating the index at {path} ({_holder(holder)}, lock {path / LOCK_FILE} held "
            f"for {timeout:g} s): wait for it to finish and try again"
        ) from None
    except OSError as error:
        if lock.is_locked:
            lock.release()
        raise IndexWriteError(_lock_failure(path, error)) from error
    try:
        yield
    finally:
        with suppress(OSError):  # a stale pid only makes a waiter's message wrong
            holder.unlink(missing_ok=True)
        lock.release()


def _holder(holder: Path) -> str:
    """Who holds the write lock, as a message says it: "pid N" if it wrote its pid."""
    try:
        return f"pid {int(holder.read_text(encoding='utf-8'))}"
    except (OSError, ValueError):
        return "pid unknown"


def _lock_failure(path: Path, error: OSError) -> str:
    """Why the write lock of the index at `path` cannot be taken, and the fix."""
    lock = path / LOCK_FILE
    if lock.is_dir():
        return (f"cannot lock the index at {path}: {lock} is a folder, not a lock file: remove it and run "
                "`rag index` again")
    return (f"cannot lock the index at {path} ({error.strerror or error}); the index is unchanged: fix the "
            "folder's permissions, then run `rag index` again")


def _same_text(embedded: list[Article], entries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each newly embedded article whose text equals an indexed one's (a syndicated copy), and
    the first such article: answers cite the copy as a retelling, and the reader is told."""
    first_of_hash: dict[str, str] = {}
    for article_id in sorted(entries):
        first_of_hash.setdefault(entries[article_id]["content_hash"], article_id)
    return {article.id: first_of_hash[article.content_hash] for article in embedded
            if first_of_hash[article.content_hash] != article.id}


def _update_locked(loaded: LoadReport, roots: list[Path], path: Path, embedder: Embedder, config: Config,
                   previous: Snapshot | None, progress: ProgressCallback | None,
                   remove: frozenset[str] = frozenset(), previous_in_use: bool = False,
                   ) -> tuple[UpdateReport, Snapshot | None]:
    """The update itself. `previous_in_use`: the previous snapshot is being served, so its
    vector indexes are copied, not changed in place."""
    report = UpdateReport(failed=list(loaded.failures.values()), skipped=loaded.skipped)
    old_entries: dict[str, dict[str, Any]] = previous.manifest["articles"] if previous else {}

    entries = dict(old_entries)
    to_embed: list[Article] = []
    moved = False
    for article in loaded.articles:
        old = old_entries.get(article.id)
        if old is not None and old["source"] != str(article.source) and Path(old["source"]).exists():
            report.failed.append(
                f"{article.source}: article id {article.id!r} is already indexed from {old['source']}; "
                "rename one of the files (an article's id is its file name without the extension)")
        elif old is None or old["content_hash"] != article.content_hash:
            (report.added if old is None else report.updated).append(article.id)
            to_embed.append(article)
            entries[article.id] = _entry(article)
        else:
            report.unchanged.append(article.id)
            moved |= old["source"] != str(article.source)
            entries[article.id] = {**old, "source": str(article.source)}
    found = {article.id for article in loaded.articles}
    is_under = _within(roots)
    for article_id, entry in old_entries.items():
        if article_id in remove or (article_id not in found and is_under(entry["source"])
                                    and Path(entry["source"]) not in loaded.failures):
            report.removed.append(article_id)
            del entries[article_id]
    report.same_text = _same_text(to_embed, entries)
    if previous is not None and not report.changed and not moved:
        return report, None

    split = [split_article(article, embedder.count_tokens, embedder.max_tokens, config) for article in to_embed]
    chunk_vectors, sentence_vectors = _embed_articles(to_embed, split, embedder, config, progress)
    report.chunks_embedded, report.sentences_embedded = len(chunk_vectors), len(sentence_vectors)

    with without_gc():
        snapshot = _next_snapshot(previous, to_embed, split, chunk_vectors, sentence_vectors,
                                  gone=set(report.removed) | set(report.updated), embedder=embedder,
                                  config=config, entries=entries, previous_in_use=previous_in_use)
    try:
        snapshot = write_snapshot(path, snapshot)
    except OSError as error:
        raise IndexWriteError(
            f"cannot write the index at {path} ({error.strerror or error}); the previous index is "
            "unchanged: free some space or fix the folder's permissions, then run `rag index` again"
        ) from error
    log.info("index %s updated: %s", path, report.summary())
    return report, snapshot


def _next_snapshot(previous: Snapshot | None, embedded: list[Article], split: list[ChunkedArticle],
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
    return Snapshot(manifest=_manifest(vectors, embedder, config, entries, next_ids, segments),
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
    added = []
    sentence_cursor = first_sentence
    for part in split:
        for chunk, members in zip(part.chunks, part.chunk_sentences, strict=True):
            added.append(StoredChunk(chunk=chunk, sentence_spans=tuple(part.sentences[i] for i in members),
                                     sentence_ids=tuple(sentence_cursor + i for i in members)))
        sentence_cursor += len(part.sentences)
    vectors.stored = ChunkRecords.concat([
        vectors.stored, ChunkRecords.from_stored(dict(enumerate(added, start=first_chunk)))])
    return added


def _manifest(vectors: _Vectors, embedder: Embedder, config: Config, entries: dict[str, dict[str, Any]],
              next_ids: dict[str, int], segments: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "embedder": {"name": embedder.name, **embedder.describe(), "dim": embedder.dim, "max_tokens": embedder.max_tokens,
                     "normalization": "l2", "metric": "inner_product"},
        "chunker": config.chunker_settings(),
        "vector_search": {"chunks": vectors.chunks.kind(), "sentences": vectors.sentences.kind()},
        "lexical": {"formula": "BM25 (Lucene)", **LexicalIndex.PARAMS, "fields": "heading x2 + chunk text"},
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
    return len(segments) > _MAX_SEGMENTS or outside_base + len(removed) > _COMPACT_SHARE * max(live_chunks, 1)


def _article_vectors(previous: Snapshot | None, split: list[ChunkedArticle], chunk_vectors: np.ndarray,
                     dim: int) -> tuple[np.ndarray, dict[str, int]]:
    """The previous article vectors with one row appended per article embedded: the
    normalised mean of its chunk vectors (what the article is about as a whole)."""
    old = previous.article_vectors if previous else np.zeros((0, dim), dtype=np.float32)
    rows = dict(previous.article_rows) if previous else {}
    sizes = [len(part.chunks) for part in split if part.chunks]
    starts = np.cumsum([0, *sizes[:-1]])
    fresh = normalise(np.add.reduceat(chunk_vectors, starts, axis=0)) if sizes else np.zeros((0, dim), np.float32)
    for number, part in enumerate(part for part in split if part.chunks):
        rows[part.chunks[0].article_id] = len(old) + number
    return np.concatenate([old, fresh]), rows


def _entry(article: Article) -> dict[str, Any]:
    return {
        "title": article.title,
        "date": article.date.isoformat() if article.date else None,
        "source": str(article.source),
        "content_hash": article.content_hash,
    }


def _current_or_none(path: Path, embedder: Embedder, config: Config,
                     served: Snapshot | None = None) -> Snapshot | None:
    """The live snapshot: `served` if it is the live one, else read from disk."""
    if not (path / CURRENT_FILE).exists():
        return None
    live = current_snapshot_dir(path)
    if served is not None and served.name == live.name:
        return served
    snapshot = load_snapshot(live)
    check_compatible(snapshot.manifest, embedder, config, path)
    return snapshot


def _embed_articles(articles: list[Article], split: list[ChunkedArticle], embedder: Embedder, config: Config,
                    progress: ProgressCallback | None) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of every chunk and of every sentence, in the order of `split`, encoded a few
    articles at a time (`config.encoding` says how), reporting progress in texts encoded."""
    encode = {"sentences": _encode_sentences, "late": _encode_late, "separate": _encode_separately}[config.encoding]
    sizes = [_texts_encoded(part, config) for part in split]
    done, total = 0, sum(sizes)
    # filled in place, not concatenated from parts: at a million chunks each copy is gigabytes
    chunk_vectors = np.empty((sum(len(part.chunks) for part in split), embedder.dim), dtype=np.float32)
    sentence_vectors = np.empty((sum(len(part.sentences) for part in split), embedder.dim), dtype=np.float32)
    if progress:
        progress(0, total)
    start = chunk_row = sentence_row = 0
    while start < len(split):
        end, batch = start, 0
        while end < len(split) and (end == start or batch < _EMBED_BATCH):  # whole articles, ~64 texts
            batch += sizes[end]
            end += 1
        chunk_part, sentence_part = encode(articles[start:end], split[start:end], embedder)
        chunk_vectors[chunk_row:chunk_row + len(chunk_part)] = chunk_part
        sentence_vectors[sentence_row:sentence_row + len(sentence_part)] = sentence_part
        chunk_row, sentence_row = chunk_row + len(chunk_part), sentence_row + len(sentence_part)
        done += batch
        if progress:
            progress(done, total)
        start = end
    return chunk_vectors[:chunk_row], sentence_vectors[:sentence_row]


def _texts_encoded(part: ChunkedArticle, config: Config) -> int:
    return {"sentences": len(part.sentences) + 1, "late": len(part.chunks),
            "separate": len(part.chunks) + len(part.sentences)}[config.encoding]


def _encode_sentences(articles: list[Article], split: list[ChunkedArticle],
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


def _encode_late(articles: list[Article], split: list[ChunkedArticle],
                 embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk (heading + text) encoded once; a sentence's vector pools its tokens in the
    first chunk holding it (late chunking)."""
    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    sentence_sources: list[tuple[int, int]] = []  # (chunk text, span) of each sentence
    for part in split:
        sources = [(-1, -1)] * len(part.sentences)
        for chunk, members in zip(part.chunks, part.chunk_sentences, strict=True):
            text = text_for_embedding(chunk)
            shift = len(text) - len(chunk.text) - chunk.start  # file offset -> offset in `text`
            own = [i for i in members if sources[i][0] < 0]
            for slot, sentence in enumerate(own):
                sources[sentence] = (len(texts), slot)
            texts.append(text)
            spans.append([(part.sentences[i][0] + shift, part.sentences[i][1] + shift) for i in own])
        sentence_sources += sources
    chunk_vectors, span_vectors = embedder.embed_with_spans(texts, spans)
    sentence_vectors = [span_vectors[text][slot] for text, slot in sentence_sources]
    return chunk_vectors, np.array(sentence_vectors, dtype=np.float32).reshape(-1, embedder.dim)


def _encode_separately(articles: list[Article], split: list[ChunkedArticle],
                       embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """Chunks (heading + text) and sentences each encoded on their own."""
    chunk_texts = [text_for_embedding(chunk) for part in split for chunk in part.chunks]
    sentence_texts = [article.text[start:end] for article, part in zip(articles, split, strict=True)
                      for start, end in part.sentences]
    vectors = embedder.embed(chunk_texts + sentence_texts)
    return vectors[: len(chunk_texts)], vectors[len(chunk_texts):]


@functools.cache  # a process's installed packages do not change; looking them up took 16 ms an update
def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _within(roots: list[Path]) -> Callable[[str], bool]:
    """Whether a recorded source path (absolute, as indexed) is one of `roots` or inside one;
    compared as text, with the roots' strings made once, since an update checks every
    indexed article (0.3 s for 32k articles when each call rebuilt them)."""
    exact = {str(root) for root in roots}
    prefixes = tuple(os.path.join(str(root), "") for root in roots)
    return lambda source: source in exact or source.startswith(prefixes)
