"""The index directory on disk: segments written once, versions swapped in atomically, a write lock.

Layout::

    index/
      CURRENT               name of the live version, replaced with os.replace
      write.lock            held by the one process that is updating the index
      write.lock.pid        the process id of that process, for the message of one waiting
      versions/<name>/
        manifest.json       format version, encoder, chunker settings, articles, counts, and
                            the segments that make up this version, oldest first, with the
                            size and SHA-256 of each of their files
        removed.npy         ids of chunks in those segments that are no longer in the index
        segments.json       the names of those segments (what pruning reads)
        previous            the name of the version that was live when this one replaced it
      segments/<name>/      what one update added; never changed once written
        chunks.faiss        FAISS index of its chunk vectors by id, and of its sentence
        sentences.faiss     vectors (in the first segment of a version, the whole index:
                            exact, or an HNSW graph with its ids in *.ids.npy, and
                            *.tail.faiss and *.removed.npy beside it for what was added
                            and removed since it was built; rag.storage.vectors)
        chunks.jsonl        one chunk a line (its FAISS id, text and metadata), parsed when asked for
        chunks.npz          per chunk: id, article, content hash, its sentences' ids and spans
                            (rag.storage.chunk_table)
        articles.json/.npy  the articles it embedded and their vectors
        bm25/               BM25 postings of its chunks (rag.storage.lexical)

An update writes one new segment with what it embedded, plus a new version that lists the
segments and the removed chunk ids, so its cost follows the size of the change, not of the
index. When the segments outside the first (base) one grow past a share of the index, or
number more than 16, or a vector index needs rebuilding (rag.storage.vectors), the update writes one
new base segment instead (compaction).
Everything is written in a staging folder and renamed into place, and only then named in
CURRENT; a crash at any point leaves the previous version live. No pickle.

Opening a version checks each segment file's size against the manifest, and its SHA-256 too
while the files total at most HASH_ON_OPEN_UP_TO bytes; `verify_index` hashes them all. The
lines of chunks.jsonl are checked one by one when parsed instead (rag.storage.chunk_table).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

from rag.errors import REBUILD_HINT, IndexCorruptError, IndexNotFoundError

FORMAT_VERSION = 10
CURRENT_FILE = "CURRENT"
LOCK_FILE = "write.lock"
LOCK_HOLDER_FILE = "write.lock.pid"
VERSIONS_DIR = "versions"
SEGMENTS_DIR = "segments"
MANIFEST_FILE = "manifest.json"
REMOVED_FILE = "removed.npy"
SEGMENT_NAMES_FILE = "segments.json"
PREVIOUS_FILE = "previous"
FAISS_FILE = "chunks.faiss"
SENTENCE_FAISS_FILE = "sentences.faiss"
ARTICLE_IDS_FILE = "articles.json"
ARTICLE_VECTORS_FILE = "articles.npy"
LEXICAL_DIR = "bm25"
HASH_ON_OPEN_UP_TO = 32 << 20
"""Bytes of segment files (chunks.jsonl aside) up to which opening an index hashes them all,
about a thousand articles' worth: 26 MiB took 18 ms here, beside 11 ms to load them (the
seeds: under 1 ms). Past it, opening checks sizes only, and `verify_index` hashes."""


def current_snapshot_dir(index_dir: Path) -> Path:
    pointer = index_dir / CURRENT_FILE
    if not pointer.is_file():
        raise IndexNotFoundError(
            f"no index at {index_dir}: build it with `rag index --index {index_dir}` "
            "(it reads articles from seeds/ by default)"
        )
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as error:
        raise IndexCorruptError(f"index pointer {pointer} is damaged (it is not UTF-8 text): {REBUILD_HINT}") from error
    snapshot_dir = index_dir / VERSIONS_DIR / name
    if not is_plain_name(name) or not snapshot_dir.is_dir():
        raise IndexCorruptError(
            f"index at {index_dir} points to a missing snapshot {name!r}: {REBUILD_HINT}"
        )
    return snapshot_dir


def is_plain_name(name: object) -> bool:
    """Whether a name read from the index is a folder name of its own, not a path elsewhere."""
    return isinstance(name, str) and bool(name) and not name.startswith(".") and Path(name).name == name


def timestamped_name() -> str:
    """A new version or segment name: later names sort after earlier ones."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """The size and SHA-256 of every file in a segment folder, by its path in the folder."""
    return {path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256(path)}
            for path in sorted(folder.rglob("*")) if path.is_file()}
