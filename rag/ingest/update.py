"""Building and incrementally updating an index directory from article files.

New articles are added, changed ones (by content hash) replaced, and articles whose file was
under one of the given sources but is gone are removed; unchanged articles are not
re-embedded. The whole update runs under the index's write lock and ends with one atomic
snapshot swap, so a crash at any point leaves the previous index live.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from rag.config import Config
from rag.encoders.base import Embedder
from rag.encoders.minilm import default_embedder
from rag.errors import IndexBusyError, IndexWriteError
from rag.ingest.assemble import next_snapshot
from rag.ingest.encode import EncodeBatches, ProgressCallback, embed_articles
from rag.ingest.milvus_update import update_milvus
from rag.ingest.plan import UpdateReport, plan_update, read_sources
from rag.records import Article
from rag.storage.layout import (
    CURRENT_FILE,
    LOCK_FILE,
    LOCK_HOLDER_FILE,
    current_snapshot_dir,
)
from rag.storage.milvus import MilvusSettings, is_milvus_uri
from rag.storage.snapshot import Snapshot, check_compatible, load_snapshot
from rag.storage.writer import remove_stale_staging, write_snapshot
from rag.text.articles import LoadReport
from rag.text.chunking import split_article

log = logging.getLogger(__name__)

DEFAULT_INDEX_DIR = Path("index")


def build_index(sources: Sequence[str | Path], path: str | Path = DEFAULT_INDEX_DIR,
                embedder: Embedder | None = None, config: Config | None = None, rebuild: bool = False,
                progress: ProgressCallback | None = None, lock_timeout: float = 60.0,
                follow_links: bool = False, encode_batches: EncodeBatches | None = None) -> UpdateReport:
    """Create or incrementally update the index at `path` (a folder, or a Milvus store:
    rag.storage.milvus) from article files and folders.

    A file that fails to read is reported in `failed` and keeps its previous version in the
    index. A second writer waits up to `lock_timeout` seconds, then gets IndexBusyError. A
    symbolic link out of a folder is skipped unless `follow_links`. `encode_batches` runs
    the encoder calls elsewhere (rag.ingest.ray_encode.RayEncoder); `embedder` must then be
    the same model, as it counts tokens and names the vectors.
    """
    if is_milvus_uri(path):
        return update_milvus(sources, MilvusSettings.from_uri(str(path)), embedder or default_embedder(),
                             config or Config(), rebuild=rebuild, progress=progress, lock_timeout=lock_timeout,
                             follow_links=follow_links, encode_batches=encode_batches)
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
    make_index_dir(path)
    with write_lock(path, lock_timeout):
        roots, loaded = read_sources(sources, config, follow_links, rebuild)
        previous = None if rebuild else _current_or_none(path, embedder, config, served)
        return _update_locked(loaded, roots, path, embedder, config, previous, progress,
                              previous_in_use=previous is not None and previous is served, encode_batches=encode_batches)


def index_articles(articles: Sequence[Article], path: str | Path, embedder: Embedder,
                   config: Config | None = None, progress: ProgressCallback | None = None,
                   lock_timeout: float = 60.0, remove: Sequence[str] = ()) -> UpdateReport:
    """Add or replace articles made in memory (a benchmark corpus, say), and remove the
    articles whose ids are in `remove`; nothing else is removed."""
    path = Path(path)
    config = config or Config()
    make_index_dir(path)
    with write_lock(path, lock_timeout):
        return _update_locked(LoadReport(articles=list(articles)), [], path, embedder, config,
                              _current_or_none(path, embedder, config), progress, remove=frozenset(remove))[0]


def make_index_dir(path: Path) -> None:
    """Create an index folder, or say in one line why it cannot be."""
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


def _update_locked(loaded: LoadReport, roots: list[Path], path: Path, embedder: Embedder, config: Config,
                   previous: Snapshot | None, progress: ProgressCallback | None,
                   remove: frozenset[str] = frozenset(), previous_in_use: bool = False,
                   encode_batches: EncodeBatches | None = None) -> tuple[UpdateReport, Snapshot | None]:
    """The update itself. `previous_in_use`: the previous snapshot is being served, so its
    vector indexes are copied, not changed in place."""
    plan = plan_update(loaded, roots, previous.manifest["articles"] if previous else {}, remove)
    report, entries, to_embed = plan.report, plan.entries, plan.to_embed
    if previous is not None and not plan.needed:
        return report, None

    split = [split_article(article, embedder.count_tokens, embedder.max_tokens, config) for article in to_embed]
    chunk_vectors, sentence_vectors = embed_articles(to_embed, split, embedder, progress, encode_batches)
    report.chunks_embedded, report.sentences_embedded = len(chunk_vectors), len(sentence_vectors)

    snapshot = next_snapshot(previous, to_embed, split, chunk_vectors, sentence_vectors,
                             gone=plan.gone, embedder=embedder,
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
