"""The public index: build or update it from article files, open it, search it.

>>> from rag import Index, build_index
>>> report = build_index(["seeds"], "index")        # embeds only new or changed articles
>>> index = Index.open("index")
>>> [hit.chunk.article_id for hit in index.search("ships built", k=3)]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from filelock import FileLock, Timeout

from rag.articles import load_articles
from rag.chunking import chunk_article, text_for_embedding
from rag.config import Config
from rag.embedders import Embedder, default_embedder
from rag.errors import IndexBusyError, IndexMismatchError, QueryError
from rag.records import Article, Chunk, Hit
from rag.store import (
    FORMAT_VERSION,
    LOCK_FILE,
    Snapshot,
    current_snapshot_dir,
    empty_vectors,
    load_snapshot,
    remove_stale_staging,
    write_snapshot,
)

log = logging.getLogger(__name__)

DEFAULT_INDEX_DIR = Path("index")
ProgressCallback = Callable[[int, int], None]
"""Called as progress(done, total) while chunks are embedded."""

_EMBED_BATCH = 64
_MAX_K = 1000


@dataclass(frozen=True)
class ArticleInfo:
    """What the index holds about one article."""

    id: str
    title: str
    date: dt.date | None
    chunks: int
    source: str
    content_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "date": self.date.isoformat() if self.date else None,
            "chunks": self.chunks,
            "source": self.source,
        }


@dataclass
class UpdateReport:
    """What an update did, article by article. `failed` holds one message per bad file."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    chunks_embedded: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed "
            f"({self.chunks_embedded} chunks embedded)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "skipped": self.skipped,
            "chunks_embedded": self.chunks_embedded,
        }


class Index:
    """An opened index: an immutable snapshot in memory, searched with the encoder that built it.

    `update()` writes a new snapshot and then swaps it in with one assignment, so searches
    running meanwhile finish on the snapshot they started with.
    """

    def __init__(self, path: Path, snapshot: Snapshot, embedder: Embedder, config: Config) -> None:
        self.path = path
        self.embedder = embedder
        self.config = config
        self._snapshot = snapshot

    @classmethod
    def open(cls, path: str | Path = DEFAULT_INDEX_DIR, embedder: Embedder | None = None,
             config: Config | None = None) -> Index:
        """Load the live snapshot; refuse one built with another encoder or chunker."""
        path = Path(path)
        embedder = embedder or default_embedder()
        config = config or Config()
        snapshot = load_snapshot(current_snapshot_dir(path))
        check_compatible(snapshot.manifest, embedder, config, path)
        return cls(path, snapshot, embedder, config)

    @property
    def manifest(self) -> dict[str, Any]:
        return self._snapshot.manifest

    def update(self, sources: Sequence[str | Path], rebuild: bool = False,
               progress: ProgressCallback | None = None, lock_timeout: float = 60.0) -> UpdateReport:
        """Bring the index in line with `sources` on disk, then serve the new snapshot."""
        report = build_index(sources, self.path, self.embedder, self.config, rebuild=rebuild,
                             progress=progress, lock_timeout=lock_timeout)
        if report.changed or rebuild:
            self._snapshot = load_snapshot(current_snapshot_dir(self.path))
        return report

    def articles(self) -> list[ArticleInfo]:
        return [_article_info(article_id, entry)
                for article_id, entry in sorted(self.manifest["articles"].items())]

    def info(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "index": str(self.path),
            "model": manifest["embedder"]["name"],
            "dim": manifest["embedder"]["dim"],
            "articles": [article.to_json() for article in self.articles()],
            "counts": manifest["counts"],
            "updated_at": manifest["updated_at"],
            "chunker": manifest["chunker"],
        }

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The k chunks closest to the query by cosine similarity, best first."""
        query = validate_query(query, self.config)
        if not 1 <= k <= _MAX_K:
            raise QueryError(f"k must be between 1 and {_MAX_K}, got {k}")
        snapshot = self._snapshot
        if snapshot.vectors.ntotal == 0:
            return []
        vector = self.embedder.embed([query])
        scores, ids = snapshot.vectors.search(vector, min(k, snapshot.vectors.ntotal))
        hits = []
        for score, faiss_id in zip(scores[0], ids[0], strict=True):
            if faiss_id < 0:
                continue
            hits.append(Hit(chunk=snapshot.chunk_by_faiss_id[int(faiss_id)], score=float(score),
                            rank=len(hits) + 1))
        return hits


def validate_query(query: str, config: Config) -> str:
    """Strip a query and refuse an empty or over-long one with a message that says what to do."""
    if not isinstance(query, str):
        raise QueryError(f"the question must be text, got {type(query).__name__}")
    query = query.strip()
    if not query:
        raise QueryError("the question is empty: type a question about the articles")
    if len(query) > config.max_query_chars:
        raise QueryError(
            f"the question is {len(query)} characters long; the limit is {config.max_query_chars}: "
            "ask a shorter question"
        )
    return query


def check_compatible(manifest: dict[str, Any], embedder: Embedder, config: Config, path: Path) -> None:
    """Refuse to mix vectors or chunks made under other settings."""
    built = manifest["embedder"]
    if (built["name"], built["dim"]) != (embedder.name, embedder.dim):
        raise IndexMismatchError(
            f"index at {path} was built with model {built['name']} ({built['dim']} dims); this "
            f"configuration uses {embedder.name} ({embedder.dim} dims): "
            f"run `rag index --rebuild --index {path}`"
        )
    if manifest["chunker"] != config.chunker_settings():
        raise IndexMismatchError(
            f"index at {path} was built with chunker settings {manifest['chunker']}; this "
            f"configuration uses {config.chunker_settings()}: run `rag index --rebuild --index {path}`"
        )


def build_index(sources: Sequence[str | Path], path: str | Path = DEFAULT_INDEX_DIR,
                embedder: Embedder | None = None, config: Config | None = None, rebuild: bool = False,
                progress: ProgressCallback | None = None, lock_timeout: float = 60.0) -> UpdateReport:
    """Create or incrementally update the index at `path` from article files and folders.

    New articles are added, changed ones (by content hash) replaced, and articles whose file
    was under one of `sources` but is gone are removed; unchanged articles are not
    re-embedded. A file that fails to read keeps its previous version in the index.
    """
    path = Path(path)
    embedder = embedder or default_embedder()
    config = config or Config()
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / LOCK_FILE))
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        raise IndexBusyError(
            f"another process is updating the index at {path} (lock {path / LOCK_FILE} held for "
            f"{lock_timeout:g} s): wait for it to finish and try again"
        ) from None
    try:
        remove_stale_staging(path)
        return _update_locked(sources, path, embedder, config, rebuild, progress)
    finally:
        lock.release()


def _update_locked(sources: Sequence[str | Path], path: Path, embedder: Embedder, config: Config,
                   rebuild: bool, progress: ProgressCallback | None) -> UpdateReport:
    roots = [Path(source).resolve() for source in sources]
    loaded = load_articles(roots, config)
    report = UpdateReport(failed=list(loaded.failures.values()), skipped=loaded.skipped)

    previous = None if rebuild else _current_or_none(path, embedder, config)
    old_entries: dict[str, dict[str, Any]] = previous.manifest["articles"] if previous else {}
    new_entries = dict(old_entries)
    to_embed: list[Article] = []
    for article in loaded.articles:
        old = old_entries.get(article.id)
        if old is None:
            report.added.append(article.id)
            to_embed.append(article)
        elif old["content_hash"] != article.content_hash:
            report.updated.append(article.id)
            to_embed.append(article)
        else:
            report.unchanged.append(article.id)
            new_entries[article.id] = {**old, "source": str(article.source)}
    found = {article.id for article in loaded.articles}
    for article_id, entry in old_entries.items():
        source = Path(entry["source"])
        if article_id not in found and source not in loaded.failures and _is_under(source, roots):
            report.removed.append(article_id)
            del new_entries[article_id]
    if previous is not None and not report.changed:
        return report

    chunks = [chunk for article in to_embed
              for chunk in chunk_article(article, embedder.count_tokens, embedder.max_tokens, config)]
    vectors = _embed_chunks(chunks, embedder, progress)
    report.chunks_embedded = len(chunks)

    gone = set(report.removed) | set(report.updated)
    chunk_by_faiss_id = {fid: chunk for fid, chunk in (previous.chunk_by_faiss_id.items() if previous else ())
                         if chunk.article_id not in gone}
    if previous is not None:
        index = faiss.clone_index(previous.vectors)
        stale = [fid for fid, chunk in previous.chunk_by_faiss_id.items() if chunk.article_id in gone]
        if stale:
            index.remove_ids(np.asarray(stale, dtype=np.int64))
        next_id = previous.manifest["next_faiss_id"]
    else:
        index = empty_vectors(embedder.dim)
        next_id = 0
    new_ids = np.arange(next_id, next_id + len(chunks), dtype=np.int64)
    if len(chunks):
        index.add_with_ids(vectors, new_ids)
    chunk_by_faiss_id.update(zip(new_ids.tolist(), chunks, strict=True))

    chunk_counts: dict[str, int] = {}
    for chunk in chunk_by_faiss_id.values():
        chunk_counts[chunk.article_id] = chunk_counts.get(chunk.article_id, 0) + 1
    for article in to_embed:
        new_entries[article.id] = {
            "title": article.title,
            "date": article.date.isoformat() if article.date else None,
            "source": str(article.source),
            "content_hash": article.content_hash,
        }
    for article_id in new_entries:
        new_entries[article_id]["chunks"] = chunk_counts.get(article_id, 0)

    manifest = _manifest(embedder, config, new_entries, len(chunk_by_faiss_id), next_id + len(chunks))
    write_snapshot(path, Snapshot(manifest=manifest, vectors=index, chunk_by_faiss_id=chunk_by_faiss_id))
    log.info("index %s updated: %s", path, report.summary())
    return report


def _current_or_none(path: Path, embedder: Embedder, config: Config) -> Snapshot | None:
    if not (path / "CURRENT").exists():
        return None
    snapshot = load_snapshot(current_snapshot_dir(path))
    check_compatible(snapshot.manifest, embedder, config, path)
    return snapshot


def _embed_chunks(chunks: list[Chunk], embedder: Embedder, progress: ProgressCallback | None) -> np.ndarray:
    texts = [text_for_embedding(chunk) for chunk in chunks]
    parts = []
    if progress:
        progress(0, len(texts))
    for start in range(0, len(texts), _EMBED_BATCH):
        parts.append(embedder.embed(texts[start : start + _EMBED_BATCH]))
        if progress:
            progress(min(start + _EMBED_BATCH, len(texts)), len(texts))
    if not parts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def _manifest(embedder: Embedder, config: Config, articles: dict[str, dict[str, Any]], chunks: int,
              next_faiss_id: int) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "embedder": {"name": embedder.name, "dim": embedder.dim, "max_tokens": embedder.max_tokens,
                     "normalization": "l2", "metric": "inner_product"},
        "chunker": config.chunker_settings(),
        "articles": dict(sorted(articles.items())),
        "counts": {"articles": len(articles), "chunks": chunks},
        "next_faiss_id": next_faiss_id,
        "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "library_versions": {name: _version(name) for name in
                             ("rag", "faiss-cpu", "numpy", "sentence-transformers", "tokenizers")},
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _is_under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _article_info(article_id: str, entry: dict[str, Any]) -> ArticleInfo:
    return ArticleInfo(
        id=article_id,
        title=entry["title"],
        date=dt.date.fromisoformat(entry["date"]) if entry["date"] else None,
        chunks=entry["chunks"],
        source=entry["source"],
        content_hash=entry["content_hash"],
    )


def default_index_dir() -> Path:
    """`RAG_INDEX` if set, else ./index."""
    return Path(os.environ.get("RAG_INDEX", DEFAULT_INDEX_DIR))
