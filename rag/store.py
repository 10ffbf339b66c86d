"""The index directory on disk: versioned snapshots swapped in atomically, and a write lock.

Layout::

    index/
      CURRENT               name of the live snapshot, replaced with os.replace
      write.lock            held by the one process that is updating the index
      versions/<name>/
        manifest.json       format version, encoder, chunker settings, articles, counts
        chunks.faiss        FAISS index of the chunk vectors by id (exact or IVF: rag.vectors)
        sentences.faiss     FAISS index of the sentence vectors by id
        chunks.jsonl        one chunk a line, with its FAISS id and its sentences' spans and ids
        bm25/               the bm25s model over the chunks (.npy + JSON)

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
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.config import Config
from rag.embedders import BACKENDS, Embedder
from rag.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from rag.lexical import LexicalIndex
from rag.records import Chunk
from rag.vectors import vector_ids

log = logging.getLogger(__name__)

FORMAT_VERSION = 4
CURRENT_FILE = "CURRENT"
LOCK_FILE = "write.lock"
VERSIONS_DIR = "versions"
MANIFEST_FILE = "manifest.json"
FAISS_FILE = "chunks.faiss"
SENTENCE_FAISS_FILE = "sentences.faiss"
CHUNKS_FILE = "chunks.jsonl"
LEXICAL_DIR = "bm25"
_KEEP_OLD_SNAPSHOTS = 2


@dataclass(frozen=True)
class StoredChunk:
    """A chunk and the sentences it is made of: (start, end) spans and their vector ids."""

    chunk: Chunk
    sentence_spans: tuple[tuple[int, int], ...]
    sentence_ids: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    """One consistent state of the index, all in memory.

    `chunks` maps every id in `chunk_vectors` to its chunk; the sentence ids of the chunks
    are the ids in `sentence_vectors`; `lexical` scores chunks in ascending id order.
    """

    manifest: dict[str, Any]
    chunk_vectors: faiss.Index
    sentence_vectors: faiss.Index
    chunks: dict[int, StoredChunk]
    lexical: LexicalIndex
    name: str = ""  # the versions/ folder it was loaded from; "" while being built

    @cached_property
    def chunk_ids(self) -> np.ndarray:
        """Chunk ids in ascending order: position i is BM25 document i."""
        return np.array(sorted(self.chunks), dtype=np.int64)

    @cached_property
    def chunk_ids_of_article(self) -> dict[str, np.ndarray]:
        """Article id -> the FAISS ids of its chunks."""
        grouped: dict[str, list[int]] = {}
        for chunk_id, stored in self.chunks.items():
            grouped.setdefault(stored.chunk.article_id, []).append(chunk_id)
        return {article_id: np.array(ids, dtype=np.int64) for article_id, ids in grouped.items()}

    @cached_property
    def by_chunk_id(self) -> dict[str, StoredChunk]:
        """Chunk id (the content hash, as hits carry it) -> the stored chunk."""
        return {stored.chunk.chunk_id: stored for stored in self.chunks.values()}

    @cached_property
    def article_sentences(self) -> dict[str, list[tuple[int, str]]]:
        """Article id -> its (sentence id, sentence text) in reading order, each sentence once."""
        found: dict[str, dict[int, tuple[int, str]]] = {}
        for stored in self.chunks.values():
            chunk = stored.chunk
            article = found.setdefault(chunk.article_id, {})
            for sentence_id, (start, end) in zip(stored.sentence_ids, stored.sentence_spans, strict=True):
                article[sentence_id] = (start, chunk.text[start - chunk.start : end - chunk.start])
        return {article_id: [(sentence_id, text) for sentence_id, (_, text) in
                             sorted(sentences.items(), key=lambda item: item[1][0])]
                for article_id, sentences in found.items()}

    @cached_property
    def chunks_of_sentence(self) -> dict[int, list[int]]:
        """Sentence id -> the chunks holding that sentence (two where chunks overlap)."""
        owners: dict[int, list[int]] = {}
        for chunk_id, stored in self.chunks.items():
            for sentence_id in stored.sentence_ids:
                owners.setdefault(sentence_id, []).append(chunk_id)
        return owners


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


def check_compatible(manifest: dict[str, Any], embedder: Embedder, config: Config, path: Path) -> None:
    """Refuse to mix vectors or chunks made under other settings."""
    built = manifest["embedder"]
    if (built["name"], built["dim"]) != (embedder.name, embedder.dim):
        backend = f" or search it with the encoder that built it (RAG_ENCODER={built['backend']})" \
            if built.get("backend") in BACKENDS else ""
        raise IndexMismatchError(
            f"index at {path} was built with model {built['name']} ({built['dim']} dims); this "
            f"configuration uses {embedder.name} ({embedder.dim} dims): "
            f"run `rag index --rebuild --index {path}`{backend}"
        )
    if manifest["chunker"] != config.chunker_settings():
        raise IndexMismatchError(
            f"index at {path} was built with chunker settings {manifest['chunker']}; this "
            f"configuration uses {config.chunker_settings()}: run `rag index --rebuild --index {path}`"
        )


def load_snapshot(snapshot_dir: Path) -> Snapshot:
    """Read a snapshot and check that its files agree with each other."""
    manifest = read_manifest(snapshot_dir)
    rebuild_hint = "rebuild it with `rag index --rebuild`"
    vectors = {}
    for name in (FAISS_FILE, SENTENCE_FAISS_FILE):
        try:
            vectors[name] = faiss.read_index(str(snapshot_dir / name))
        except RuntimeError as error:
            raise IndexCorruptError(
                f"vector file {snapshot_dir / name} is missing or damaged: {rebuild_hint}"
            ) from error
    chunks: dict[int, StoredChunk] = {}
    try:
        with (snapshot_dir / CHUNKS_FILE).open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                chunks[int(row["faiss_id"])] = StoredChunk(
                    chunk=Chunk.from_json(row),
                    sentence_spans=tuple((start, end) for start, end, _ in row["sentences"]),
                    sentence_ids=tuple(sentence_id for _, _, sentence_id in row["sentences"]),
                )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IndexCorruptError(
            f"chunk store {snapshot_dir / CHUNKS_FILE} is missing or damaged ({error}): {rebuild_hint}"
        ) from error
    try:
        lexical = LexicalIndex.load(snapshot_dir / LEXICAL_DIR)
    except (OSError, ValueError, KeyError) as error:
        raise IndexCorruptError(
            f"BM25 index {snapshot_dir / LEXICAL_DIR} is missing or damaged ({error}): {rebuild_hint}"
        ) from error
    snapshot = Snapshot(manifest=manifest, chunk_vectors=vectors[FAISS_FILE],
                        sentence_vectors=vectors[SENTENCE_FAISS_FILE], chunks=chunks, lexical=lexical,
                        name=snapshot_dir.name)
    _check_consistent(snapshot, snapshot_dir, rebuild_hint)
    return snapshot


def _check_consistent(snapshot: Snapshot, snapshot_dir: Path, rebuild_hint: str) -> None:
    chunk_ids = set(vector_ids(snapshot.chunk_vectors).tolist())
    sentence_ids = set(vector_ids(snapshot.sentence_vectors).tolist())
    counts = snapshot.manifest["counts"]
    if (chunk_ids != set(snapshot.chunks) or counts["chunks"] != len(snapshot.chunks)
            or sentence_ids != set(snapshot.chunks_of_sentence) or counts["sentences"] != len(sentence_ids)
            or snapshot.lexical.size != len(snapshot.chunks)):
        raise IndexCorruptError(
            f"index at {snapshot_dir} is inconsistent: {snapshot.chunk_vectors.ntotal} chunk vectors, "
            f"{len(snapshot.chunks)} stored chunks, {snapshot.sentence_vectors.ntotal} sentence vectors, "
            f"{snapshot.lexical.size} BM25 documents; the manifest says {counts['chunks']} chunks and "
            f"{counts['sentences']} sentences: {rebuild_hint}"
        )


def write_snapshot(index_dir: Path, snapshot: Snapshot) -> Path:
    """Write a snapshot beside the live one, then make it live with one atomic rename."""
    versions = index_dir / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    staging = versions / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        faiss.write_index(snapshot.chunk_vectors, str(staging / FAISS_FILE))
        faiss.write_index(snapshot.sentence_vectors, str(staging / SENTENCE_FAISS_FILE))
        with (staging / CHUNKS_FILE).open("w", encoding="utf-8") as handle:
            for faiss_id, stored in sorted(snapshot.chunks.items()):
                sentences = [[start, end, sentence_id] for (start, end), sentence_id
                             in zip(stored.sentence_spans, stored.sentence_ids, strict=True)]
                row = {"faiss_id": faiss_id, **stored.chunk.to_json(), "sentences": sentences}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        snapshot.lexical.save(staging / LEXICAL_DIR)
        (staging / MANIFEST_FILE).write_text(
            json.dumps(snapshot.manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _fsync_folder(staging)
        name = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
        final = versions / name
        os.replace(staging, final)
        _fsync_directory(versions)  # the rename must be durable before CURRENT names it
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


def _prune_old_snapshots(versions: Path, keep: str) -> None:
    """Delete all but the newest few snapshots (a reader may be between CURRENT and its files)."""
    snapshots = sorted(p for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    old = [p for p in snapshots if p.name != keep][:-_KEEP_OLD_SNAPSHOTS or None]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_staging(index_dir: Path) -> None:
    """Staging folders and pending CURRENT files are only left by a writer that died; call
    with the write lock held."""
    for pending in index_dir.glob(f".{CURRENT_FILE}.*"):
        pending.unlink(missing_ok=True)
    versions = index_dir / VERSIONS_DIR
    if versions.is_dir():
        for path in versions.glob(".staging-*"):
            shutil.rmtree(path, ignore_errors=True)
