"""Building and incrementally updating an index directory from article files.

New articles are added, changed ones (by content hash) replaced, and articles whose file was
under one of the given sources but is gone are removed; unchanged articles are not
re-embedded. The whole update runs under the index's write lock and ends with one atomic
snapshot swap, so a crash at any point leaves the previous index live.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from rag.config import Config
from rag.encoders.base import Embedder
from rag.encoders.minilm import default_embedder
from rag.errors import IndexBusyError, IndexWriteError
from rag.ingest.assemble import next_snapshot
from rag.ingest.encode import EncodeBatches, ProgressCallback, embed_articles
from rag.records import Article
from rag.storage.layout import (
    CURRENT_FILE,
    LOCK_FILE,
    LOCK_HOLDER_FILE,
    current_snapshot_dir,
)
from rag.storage.snapshot import Snapshot, check_compatible, load_snapshot
from rag.storage.writer import remove_stale_staging, write_snapshot
from rag.text.articles import LoadReport, load_articles
from rag.text.chunking import split_article

log = logging.getLogger(__name__)

DEFAULT_INDEX_DIR = Path("index")


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
                follow_links: bool = False, encode_batches: EncodeBatches | None = None) -> UpdateReport:
    """Create or incrementally update the index at `path` from article files and folders.

    A file that fails to read is reported in `failed` and keeps its previous version in the
    index. A second writer waits up to `lock_timeout` seconds, then gets IndexBusyError. A
    symbolic link out of a folder is skipped unless `follow_links`. `encode_batches` runs
    the encoder calls elsewhere (rag.ingest.ray_encode.RayEncoder); `embedder` must then be
    the same model, as it counts tokens and names the vectors.
    """
    return update_index(sources, path, embedder, config, rebuild=rebuild, progress=progress,
                        lock_timeout=lock_timeout, follow_links=follow_links, encode_batches=encode_batches)[0]


def update_index(sources: Sequence[str | Path], path: str | Path = DEFAULT_INDEX_DIR,
                 embedder: Embedder | None = None, config: Config | None = None, rebuild: bool = False,
                 progress: ProgressCallback | None = None, lock_timeout: float = 60.0,
                 served: Snapshot | None = None, follow_links: bool = False,
                 encode_batches: EncodeBatches | None = None) -> tuple[UpdateReport, Snapshot | None]:
    """build_index for a process that serves the index: when `served`, the snapshot it holds
    in memory, is the live one, the update starts from it instead of reading the index back
    from disk; returns the report and the new snapshot (None if nothing changed)."""
    path = Path(path)
    embedder = embedder or default_embedder()
    config = config or Config()
    _make_index_dir(path)
    with write_lock(path, lock_timeout):
        roots = [Path(source).resolve() for source in sources]
        previous = None if rebuild else _current_or_none(path, embedder, config, served)
        return _update_locked(load_articles(roots, config, follow_links), roots, path, embedder, config, previous, progress,
                              previous_in_use=previous is not None and previous is served, encode_batches=encode_batches)


def index_articles(articles: Sequence[Article], path: str | Path, embedder: Embedder,
                   config: Config | None = None, progress: ProgressCallback | None = None,
                   lock_timeout: float = 60.0, remove: Sequence[str] = ()) -> UpdateReport:
    """Add or replace articles made in memory (a benchmark corpus, say), and remove the
    articles whose ids are in `remove`; nothing else is removed."""
    path = Path(path)
    config = config or Config()
    _make_index_dir(path)
    with write_lock(path, lock_timeout):
        return _update_locked(LoadReport(articles=list(articles)), [], path, embedder, config,
                              _current_or_none(path, embedder, config), progress, remove=frozenset(remove))[0]


def _make_index_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise IndexWriteError(f"cannot create the index folder {path} ({error.strerror or error}): "
                              "choose another with --index or RAG_INDEX") from error


@contextmanager
def write_lock(path: Path, timeout: float) -> Iterator[None]:
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
                   encode_batches: EncodeBatches | None = None) -> tuple[UpdateReport, Snapshot | None]:
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
        elif old is None or old["content_hash"] != article.content_hash or old["date"] != _iso(article.date):
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
    chunk_vectors, sentence_vectors = embed_articles(to_embed, split, embedder, progress, encode_batches)
    report.chunks_embedded, report.sentences_embedded = len(chunk_vectors), len(sentence_vectors)

    snapshot = next_snapshot(previous, to_embed, split, chunk_vectors, sentence_vectors,
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


def _iso(date: dt.date | None) -> str | None:
    return date.isoformat() if date else None


def _entry(article: Article) -> dict[str, Any]:
    return {
        "title": article.title,
        "date": _iso(article.date),
        "source": str(article.source),
        "content_hash": article.content_hash,
    }


def _within(roots: list[Path]) -> Callable[[str], bool]:
    """Whether a recorded source path (absolute, as indexed) is one of `roots` or inside one;
    compared as text, with the roots' strings made once, since an update checks every
    indexed article (0.3 s for 32k articles when each call rebuilt them)."""
    exact = {str(root) for root in roots}
    prefixes = tuple(os.path.join(str(root), "") for root in roots)
    return lambda source: source in exact or source.startswith(prefixes)


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
