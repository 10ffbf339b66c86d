"""Writing a version of the index: its new segment, its manifest, the atomic swap of CURRENT, pruning.

Everything is written in a staging folder, made durable, and renamed into place; only then is
the version named in CURRENT, so a crash at any point leaves the previous version live.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from rag.errors import REBUILD_HINT, IndexCorruptError, RagError
from rag.storage.chunk_table import distinct
from rag.storage.layout import (
    ARTICLE_IDS_FILE,
    ARTICLE_VECTORS_FILE,
    CURRENT_FILE,
    FAISS_FILE,
    LEXICAL_DIR,
    MANIFEST_FILE,
    PREVIOUS_FILE,
    REMOVED_FILE,
    SEGMENT_NAMES_FILE,
    SEGMENTS_DIR,
    SENTENCE_FAISS_FILE,
    VERSIONS_DIR,
    current_snapshot_dir,
    file_checksums,
    is_plain_name,
    timestamped_name,
)
from rag.storage.snapshot import Snapshot

KEEP_OLD_VERSIONS = 2
"""Versions kept beside the live one: a reader that read CURRENT just before a swap still
finds its version, and one older lets a reader that is slower still finish."""


def new_segment(first_chunk: int) -> dict[str, Any]:
    """A manifest entry for a segment that will hold the chunks with ids from `first_chunk` on
    (0 for a base segment, which holds the whole index)."""
    return {"name": timestamped_name(), "first_chunk": first_chunk}


def write_snapshot(index_dir: Path, snapshot: Snapshot) -> Snapshot:
    """Write the snapshot's last segment if it is new (an update makes at most one) and a
    version naming the segments, then make that version live with one atomic rename; return
    the snapshot named. Every other segment must already be on disk."""
    versions, segments = index_dir / VERSIONS_DIR, index_dir / SEGMENTS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    segments.mkdir(parents=True, exist_ok=True)
    *kept, last = snapshot.manifest["segments"]
    missing = [entry["name"] for entry in kept if not (segments / entry["name"]).is_dir()]
    if missing:
        raise IndexCorruptError(f"index at {index_dir} lacks its segment(s) {', '.join(missing)}: {REBUILD_HINT}")
    if len(snapshot.lexical.segments) != len(snapshot.manifest["segments"]):
        raise ValueError("the BM25 segments do not match the manifest's")  # a bug, not bad input
    if not (segments / last["name"]).is_dir():
        last = {**last, "files": _write_segment(segments, last, snapshot)}
    manifest = {**snapshot.manifest, "segments": [*kept, last]}
    previous = _live_name(index_dir)
    staging = versions / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        np.save(staging / REMOVED_FILE, snapshot.removed, allow_pickle=False)
        (staging / SEGMENT_NAMES_FILE).write_text(
            json.dumps([entry["name"] for entry in manifest["segments"]]), encoding="utf-8")
        if previous is not None:
            (staging / PREVIOUS_FILE).write_text(previous + "\n", encoding="utf-8")
        (staging / MANIFEST_FILE).write_bytes(orjson.dumps(manifest) + b"\n")  # json took 0.2 s at 100k
        _fsync_folder(staging)
        name = timestamped_name()
        os.replace(staging, versions / name)
        _fsync_directory(versions)  # the rename must be durable before CURRENT names it
        point_current_to(index_dir, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(index_dir, keep=name)
    return replace(snapshot, manifest=manifest, name=name)


def _write_segment(segments: Path, entry: dict[str, Any], snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Write the snapshot's last segment: the chunks with ids from its `first_chunk` on (0
    for a base segment, which holds the whole index); return its files' checksums."""
    staging = segments / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        chunk_ids = snapshot.chunk_ids[snapshot.chunk_ids >= entry["first_chunk"]]
        if len(snapshot.manifest["segments"]) == 1:
            chunk_part, sentence_part = snapshot.chunk_vectors, snapshot.sentence_vectors
        else:
            sentence_ids = distinct(snapshot.sentences_of(chunk_ids)[0])  # overlapping chunks share a sentence
            chunk_part, sentence_part = snapshot.chunk_vectors.subset(chunk_ids), snapshot.sentence_vectors.subset(sentence_ids)
        chunk_part.write(staging / FAISS_FILE)
        sentence_part.write(staging / SENTENCE_FAISS_FILE)
        snapshot.chunks.write(staging, chunk_ids)
        snapshot.lexical.segments[-1].save(staging / LEXICAL_DIR)
        article_ids = sorted(set(snapshot.chunks.article_ids[snapshot.positions(chunk_ids)].tolist()))
        (staging / ARTICLE_IDS_FILE).write_text(json.dumps(article_ids, ensure_ascii=False), encoding="utf-8")
        rows = [snapshot.article_rows[article_id] for article_id in article_ids]
        np.save(staging / ARTICLE_VECTORS_FILE, snapshot.article_vectors[rows].reshape(len(rows), chunk_part.dim),
                allow_pickle=False)
        files = file_checksums(staging)
        _fsync_folder(staging)
        os.replace(staging, segments / entry["name"])
        _fsync_directory(segments)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return files


def point_current_to(index_dir: Path, name: str) -> None:
    pending = index_dir / f".{CURRENT_FILE}.{uuid.uuid4().hex}"
    with pending.open("w", encoding="utf-8") as handle:
        handle.write(name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pending, index_dir / CURRENT_FILE)
    _fsync_directory(index_dir)


def _fsync_folder(folder: Path) -> None:
    """Make a folder's files and directory entries (subfolders included) durable."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            _fsync_directory(path)
    _fsync_directory(folder)


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _live_name(index_dir: Path) -> str | None:
    """The live version's name; None if there is none, or CURRENT is damaged (a rebuild)."""
    try:
        return current_snapshot_dir(index_dir).name
    except RagError:
        return None


def _prune(index_dir: Path, keep: str) -> None:
    """Delete every version but `keep`, the live one, and the few live before it (a reader
    may be between CURRENT and its files), then every segment no kept version lists. Which
    versions were live is read from their `previous` files, not guessed from the order of
    names: a writer that died before naming its version in CURRENT leaves a newer version
    that was never live."""
    versions = index_dir / VERSIONS_DIR
    kept = [keep]
    while len(kept) <= KEEP_OLD_VERSIONS:
        try:
            previous = (versions / kept[-1] / PREVIOUS_FILE).read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            break  # the first version, or one written by an older rag
        if not is_plain_name(previous) or previous in kept or not (versions / previous).is_dir():
            break
        kept.append(previous)
    for path in versions.iterdir():
        if path.is_dir() and not path.name.startswith(".") and path.name not in kept:
            shutil.rmtree(path, ignore_errors=True)
    listed = set()
    for name in kept:
        try:
            listed |= set(json.loads((versions / name / SEGMENT_NAMES_FILE).read_text("utf-8")))
        except (OSError, ValueError, TypeError):
            return  # an unreadable version: keep every segment rather than guess
    for path in (index_dir / SEGMENTS_DIR).iterdir():
        if path.is_dir() and not path.name.startswith(".") and path.name not in listed:
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_staging(index_dir: Path) -> None:
    """Staging folders and pending CURRENT files are only left by a writer that died; call
    with the write lock held."""
    for pending in index_dir.glob(f".{CURRENT_FILE}.*"):
        pending.unlink(missing_ok=True)
    for folder in (index_dir / VERSIONS_DIR, index_dir / SEGMENTS_DIR):
        if folder.is_dir():
            for path in folder.glob(".staging-*"):
                shutil.rmtree(path, ignore_errors=True)
