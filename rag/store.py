"""The index directory on disk: versioned snapshots swapped in atomically, and a write lock.

Layout::

    index/
      CURRENT               name of the live snapshot, replaced with os.replace
      write.lock            held by the one process that is updating the index
      versions/<name>/
        manifest.json       format version, encoder, chunker settings, articles, counts
        chunks.faiss        FAISS IndexIDMap2 over the chunk vectors (inner product)
        chunks.jsonl        one chunk a line, with its FAISS id

A snapshot is written completely in a temporary folder, renamed into `versions/`, and only
then named in CURRENT; a crash at any point leaves the previous snapshot live. No pickle.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.errors import IndexCorruptError, IndexNotFoundError
from rag.records import Chunk

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT_FILE = "CURRENT"
LOCK_FILE = "write.lock"
VERSIONS_DIR = "versions"
MANIFEST_FILE = "manifest.json"
FAISS_FILE = "chunks.faiss"
CHUNKS_FILE = "chunks.jsonl"
_KEEP_OLD_SNAPSHOTS = 2


@dataclass(frozen=True)
class Snapshot:
    """One consistent state of the index: manifest, vectors and chunks, all in memory.

    `chunk_by_faiss_id` maps every id stored in `vectors` to its chunk.
    """

    manifest: dict[str, Any]
    vectors: faiss.IndexIDMap2
    chunk_by_faiss_id: dict[int, Chunk]


def empty_vectors(dim: int) -> faiss.IndexIDMap2:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def current_snapshot_dir(index_dir: Path) -> Path:
    pointer = index_dir / CURRENT_FILE
    if not pointer.is_file():
        raise IndexNotFoundError(
            f"no index at {index_dir}: build it with `rag index --index {index_dir}` "
            "(it reads articles from seeds/ by default)"
        )
    name = pointer.read_text(encoding="utf-8").strip()
    snapshot_dir = index_dir / VERSIONS_DIR / name
    if not name or not snapshot_dir.is_dir():
        raise IndexCorruptError(
            f"index at {index_dir} points to a missing snapshot {name!r}: "
            "rebuild it with `rag index --rebuild`"
        )
    return snapshot_dir


def read_manifest(snapshot_dir: Path) -> dict[str, Any]:
    path = snapshot_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IndexCorruptError(
            f"index manifest {path} is missing or damaged ({error}): rebuild with `rag index --rebuild`"
        ) from error
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexCorruptError(
            f"index at {snapshot_dir.parent.parent} has format version {version!r}; this version of "
            f"rag reads format {FORMAT_VERSION}: rebuild it with `rag index --rebuild`"
        )
    return manifest


def load_snapshot(snapshot_dir: Path) -> Snapshot:
    """Read a snapshot and check that its files agree with each other."""
    manifest = read_manifest(snapshot_dir)
    rebuild_hint = "rebuild it with `rag index --rebuild`"
    try:
        vectors = faiss.read_index(str(snapshot_dir / FAISS_FILE))
    except RuntimeError as error:
        raise IndexCorruptError(
            f"vector file {snapshot_dir / FAISS_FILE} is missing or damaged: {rebuild_hint}"
        ) from error
    chunk_by_faiss_id: dict[int, Chunk] = {}
    try:
        with (snapshot_dir / CHUNKS_FILE).open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                chunk_by_faiss_id[int(row["faiss_id"])] = Chunk.from_json(row)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexCorruptError(
            f"chunk store {snapshot_dir / CHUNKS_FILE} is missing or damaged ({error}): {rebuild_hint}"
        ) from error
    stored_ids = set(faiss.vector_to_array(vectors.id_map).tolist()) if vectors.ntotal else set()
    if stored_ids != set(chunk_by_faiss_id) or manifest["counts"]["chunks"] != len(chunk_by_faiss_id):
        raise IndexCorruptError(
            f"index at {snapshot_dir} is inconsistent: {vectors.ntotal} vectors, "
            f"{len(chunk_by_faiss_id)} stored chunks, manifest says {manifest['counts']['chunks']}: "
            f"{rebuild_hint}"
        )
    return Snapshot(manifest=manifest, vectors=vectors, chunk_by_faiss_id=chunk_by_faiss_id)


def write_snapshot(index_dir: Path, snapshot: Snapshot) -> Path:
    """Write a snapshot beside the live one, then make it live with one atomic rename."""
    versions = index_dir / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        faiss.write_index(snapshot.vectors, str(staging / FAISS_FILE))
        with (staging / CHUNKS_FILE).open("w", encoding="utf-8") as handle:
            for faiss_id, chunk in sorted(snapshot.chunk_by_faiss_id.items()):
                handle.write(json.dumps({"faiss_id": faiss_id, **chunk.to_json()}, ensure_ascii=False) + "\n")
        (staging / MANIFEST_FILE).write_text(
            json.dumps(snapshot.manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _fsync_folder(staging)
        name = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
        final = versions / name
        os.replace(staging, final)
        _point_current_to(index_dir, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune_old_snapshots(versions, keep=name)
    return final


def _point_current_to(index_dir: Path, name: str) -> None:
    pending = index_dir / f".{CURRENT_FILE}.{uuid.uuid4().hex}"
    with pending.open("w", encoding="utf-8") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pending, index_dir / CURRENT_FILE)
    _fsync_folder(index_dir)


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _prune_old_snapshots(versions: Path, keep: str) -> None:
    """Delete all but the newest few snapshots, and staging folders left by crashed writers."""
    snapshots = sorted(p for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    old = [p for p in snapshots if p.name != keep][:-_KEEP_OLD_SNAPSHOTS or None]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_staging(index_dir: Path) -> None:
    """Staging folders can only be left by a writer that died; call with the write lock held."""
    versions = index_dir / VERSIONS_DIR
    if versions.is_dir():
        for path in versions.glob(".staging-*"):
            shutil.rmtree(path, ignore_errors=True)


def vectors_of(index: faiss.IndexIDMap2, faiss_ids: list[int]) -> np.ndarray:
    """The stored vectors for the given ids (flat indexes keep them exactly)."""
    if not faiss_ids:
        return np.zeros((0, index.d), dtype=np.float32)
    return np.vstack([index.reconstruct(int(i)) for i in faiss_ids]).astype(np.float32)
