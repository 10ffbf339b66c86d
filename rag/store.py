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
                            and removed since it was built; rag.vectors)
        chunks.jsonl        one chunk a line (its FAISS id, text and metadata), parsed when asked for
        chunks.npz          per chunk: id, article, content hash, its sentences' ids and spans
                            (rag.chunk_records)
        articles.json/.npy  the articles it embedded and their vectors
        bm25/               BM25 postings of its chunks (rag.lexical)

An update writes one new segment with what it embedded, plus a new version that lists the
segments and the removed chunk ids, so its cost follows the size of the change, not of the
index. When the segments outside the first (base) one grow past a share of the index, or
number more than 16, or a vector index needs rebuilding (rag.vectors), the update writes one
new base segment instead (compaction).
Everything is written in a staging folder and renamed into place, and only then named in
CURRENT; a crash at any point leaves the previous version live. No pickle.

Opening a version checks each segment file's size against the manifest, and its SHA-256 too
while the files total at most HASH_ON_OPEN_UP_TO bytes; `verify_index` hashes them all. The
lines of chunks.jsonl are checked one by one when parsed instead (rag.chunk_records).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import logging
import os
import shlex
import shutil
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from rag.chunk_records import LINES_FILE, ChunkRecords, concat_ranges, distinct
from rag.config import Config
from rag.embedders import BACKENDS, Embedder
from rag.errors import REBUILD_HINT, IndexCorruptError, IndexMismatchError, IndexNotFoundError, RagError
from rag.lexical import LexicalIndex, LexicalSegment
from rag.vectors import VectorIndex

log = logging.getLogger(__name__)

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
_KEEP_OLD_SNAPSHOTS = 2
HASH_ON_OPEN_UP_TO = 32 << 20
"""Bytes of segment files (chunks.jsonl aside) up to which opening an index hashes them all,
about a thousand articles' worth: 26 MiB took 18 ms here, beside 11 ms to load them (the
seeds: under 1 ms). Past it, opening checks sizes only, and `verify_index` hashes."""


@contextmanager
def without_gc() -> Iterator[None]:
    """Build many small objects with the cyclic garbage collector paused: each collection
    would scan every object of the index again (loading 100k chunks and mapping their
    sentences ran about 8x slower with it). What is built here holds no reference cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Snapshot:
    """One consistent state of the index, in memory but for the chunks' texts (rag.chunk_records).

    `chunks` maps every id in `chunk_vectors` to its chunk; the sentence ids of the chunks
    are the ids in `sentence_vectors`; `lexical` scores chunks in ascending id order;
    `article_vectors[article_rows[id]]` is an article's vector. `removed` lists the chunks
    that the segments (manifest["segments"]) still hold but the index no longer does.
    """

    manifest: dict[str, Any]
    chunk_vectors: VectorIndex
    sentence_vectors: VectorIndex
    chunks: ChunkRecords
    lexical: LexicalIndex
    article_vectors: np.ndarray
    article_rows: dict[str, int]
    removed: np.ndarray
    name: str = ""  # the versions/ folder it was loaded from or written to; "" while being built

    @property
    def chunk_ids(self) -> np.ndarray:
        """Chunk ids in ascending order: position i is BM25 document i."""
        return self.chunks.ids

    @cached_property
    def segment_chunk_ids(self) -> np.ndarray:
        """The ids of every chunk the segments hold, removed or not, in ascending order: the
        positions of BM25's documents across its segments."""
        return distinct(np.concatenate([self.chunk_ids, self.removed]))

    @property
    def chunk_ids_of_article(self) -> dict[str, np.ndarray]:
        """Article id -> the FAISS ids of its chunks."""
        return self.chunks.ids_by_article

    def article_sentences(self, article_id: str) -> list[tuple[int, str]]:
        """An article's (sentence id, sentence text) in reading order, each sentence once.

        Built for one article when first asked for: an answer reads a few articles, and
        mapping every article's sentences at once cost a cold `rag ask` 1.6 s at 100k chunks.
        """
        cached = self._article_sentences.get(article_id)
        if cached is not None:
            return cached
        found: dict[int, tuple[int, str]] = {}
        for chunk_id in self.chunk_ids_of_article[article_id].tolist():
            stored = self.chunks[chunk_id]
            chunk = stored.chunk
            for sentence_id, (start, end) in zip(stored.sentence_ids, stored.sentence_spans, strict=True):
                found[sentence_id] = (start, chunk.text[start - chunk.start : end - chunk.start])
        sentences = [(sentence_id, text) for sentence_id, (_, text) in sorted(found.items(), key=lambda item: item[1][0])]
        self._article_sentences[article_id] = sentences
        return sentences

    @cached_property
    def _article_sentences(self) -> dict[str, list[tuple[int, str]]]:
        """What `article_sentences` has built so far."""
        return {}

    @property
    def chunk_sentences(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, sentence ids): the sentences of the chunk at position i of `chunk_ids`
        are ids[offsets[i]:offsets[i + 1]], so a search reads them without touching objects."""
        return self.chunks.sentence_offsets, self.chunks.sentence_ids

    @cached_property
    def chunk_article_rows(self) -> np.ndarray:
        """The row in `article_vectors` of the article of the chunk at position i of `chunk_ids`."""
        articles, inverse = np.unique(self.chunks.article_ids, return_inverse=True)
        return np.array([self.article_rows[a] for a in articles.tolist()], dtype=np.int64)[inverse]

    @cached_property
    def sentence_owners(self) -> tuple[np.ndarray, np.ndarray]:
        """(sentence ids ascending, the chunk id holding each): a sentence in two overlapping
        chunks appears twice."""
        offsets, sentence_ids = self.chunk_sentences
        owners = np.repeat(self.chunk_ids, np.diff(offsets))
        order = np.argsort(sentence_ids, kind="stable")
        return sentence_ids[order], owners[order]

    def positions(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Positions in `chunk_ids` (and in BM25's scores) of live chunk ids."""
        return np.searchsorted(self.chunk_ids, chunk_ids)

    def sentences_of(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sentence ids of the given chunks, concatenated, and where each chunk's begin."""
        offsets, sentence_ids = self.chunk_sentences
        positions = self.positions(chunk_ids)
        counts = offsets[positions + 1] - offsets[positions]
        return sentence_ids[concat_ranges(offsets[positions], counts)], np.cumsum(counts) - counts

    def chunks_holding(self, sentence_ids: np.ndarray) -> np.ndarray:
        """The chunk ids holding the given sentences (two where chunks overlap)."""
        sorted_sentences, owners = self.sentence_owners
        first = np.searchsorted(sorted_sentences, sentence_ids, side="left")
        return owners[concat_ranges(first, np.searchsorted(sorted_sentences, sentence_ids, side="right") - first)]


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
    if not _is_plain_name(name) or not snapshot_dir.is_dir():
        raise IndexCorruptError(
            f"index at {index_dir} points to a missing snapshot {name!r}: {REBUILD_HINT}"
        )
    return snapshot_dir


def read_manifest(snapshot_dir: Path) -> dict[str, Any]:
    path = snapshot_dir / MANIFEST_FILE
    try:
        manifest = orjson.loads(path.read_bytes())  # 9 MB at 100k chunks: 0.15 s with the json module
    except (OSError, ValueError) as error:
        raise IndexCorruptError(
            f"index manifest {path} is missing or damaged ({error}): {REBUILD_HINT}"
        ) from error
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"index manifest {path} is damaged (it is not a JSON object): {REBUILD_HINT}")
    index_dir = snapshot_dir.parent.parent
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexCorruptError(
            f"index at {index_dir} has format version {version!r}; this version of rag reads format "
            f"{FORMAT_VERSION}: {_rebuild_fix(index_dir, manifest)}"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise IndexCorruptError(f"index manifest {path} is damaged ({problem}): {_rebuild_fix(index_dir, manifest)}")
    return manifest


_MANIFEST_FIELDS: tuple[tuple[tuple[str, ...], type], ...] = (
    (("embedder", "name"), str), (("embedder", "dim"), int), (("chunker",), dict), (("articles",), dict),
    (("counts", "chunks"), int), (("counts", "sentences"), int), (("next_ids", "chunk"), int),
    (("next_ids", "sentence"), int), (("segments",), list), (("updated_at",), str),
)
_ARTICLE_FIELDS = frozenset({"title", "date", "source", "content_hash", "chunks"})
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", int: "a number"}


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What a manifest of this format lacks of what rag reads from it, if anything: a manifest
    edited by hand or half restored must fail as damaged, not with a KeyError."""
    for keys, kind in _MANIFEST_FIELDS:
        value: Any = manifest
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, kind):
            return f"{'.'.join(keys)} is missing or not {_JSON_TYPES[kind]}"
    for number, entry in enumerate(manifest["segments"]):
        if not _is_segment_entry(entry):
            return f"segment entry {number} lacks its name, first chunk or file checksums"
    damaged = next((article_id for article_id, entry in manifest["articles"].items()
                    if not (isinstance(entry, dict) and _ARTICLE_FIELDS <= entry.keys())), None)
    if damaged is not None:
        return f"the entry of article {damaged!r} lacks one of {', '.join(sorted(_ARTICLE_FIELDS))}"
    return None


def _is_segment_entry(entry: object) -> bool:
    """Whether a manifest's segment entry has a name, its first chunk id and its files' checksums."""
    if not (isinstance(entry, dict) and _is_plain_name(entry.get("name")) and isinstance(entry.get("first_chunk"), int)
            and isinstance(entry.get("files"), dict)):
        return False
    return all(isinstance(file, dict) and isinstance(file.get("size"), int) and isinstance(file.get("sha256"), str)
               for file in entry["files"].values())


def _is_plain_name(name: object) -> bool:
    """Whether a name read from the index is a folder name of its own, not a path elsewhere."""
    return isinstance(name, str) and bool(name) and not name.startswith(".") and Path(name).name == name


def _rebuild_fix(index_dir: Path, manifest: dict[str, Any]) -> str:
    folders = _source_folders(manifest)
    if not folders:
        return REBUILD_HINT
    return (f"rebuild it from the folders its articles came from: `rag index --rebuild --index "
            f"{shlex.quote(str(index_dir))} {' '.join(map(shlex.quote, folders))}`")


def _source_folders(manifest: dict[str, Any]) -> list[str]:
    """The folders of the article files an index (of any format) lists: what a rebuild must
    be given, since `rag index --rebuild` alone reads seeds/ only."""
    articles = manifest.get("articles")
    if not isinstance(articles, dict):
        return []
    return sorted({str(Path(entry["source"]).parent) for entry in articles.values()
                   if isinstance(entry, dict) and isinstance(entry.get("source"), str)})


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


def load_snapshot(snapshot_dir: Path, read_ahead: bool = False) -> Snapshot:
    """Read a version and its segments, and check that they agree with each other. With
    `read_ahead` (a process that will search), vector graphs are read in the background
    meanwhile; otherwise on first use (a cold `rag ask` at 100k chunks: about 0.9 s)."""
    with without_gc():
        return _load_snapshot(snapshot_dir, read_ahead)


def _load_snapshot(snapshot_dir: Path, read_ahead: bool) -> Snapshot:
    manifest = read_manifest(snapshot_dir)
    segments_dir = snapshot_dir.parent.parent / SEGMENTS_DIR
    hash_files = sum(file["size"] for entry in manifest["segments"] for name, file in entry["files"].items()
                     if name != LINES_FILE) <= HASH_ON_OPEN_UP_TO
    removed = _load_array(snapshot_dir / REMOVED_FILE, "removed-chunk list")
    chunk_index = sentence_index = None
    chunk_parts: list[ChunkRecords] = []
    lexical_segments: list[LexicalSegment] = []
    article_ids: list[str] = []
    article_vectors: list[np.ndarray] = []
    for entry in manifest["segments"]:
        folder = segments_dir / entry["name"]
        chunk_part, sentence_part = (_read_vectors(folder / name, manifest["embedder"]["dim"])
                                     for name in (FAISS_FILE, SENTENCE_FAISS_FILE))
        if chunk_index is None:
            chunk_index, sentence_index = chunk_part, sentence_part
            if read_ahead:
                chunk_index.read_ahead()
                sentence_index.read_ahead()
        else:
            for index, part in ((chunk_index, chunk_part), (sentence_index, sentence_part)):
                ids = part.ids()
                if len(ids):
                    index.add(part.vectors_of(ids), ids)
        try:
            chunk_parts.append(ChunkRecords.read(folder))
        except (OSError, ValueError, KeyError) as error:
            raise IndexCorruptError(
                f"chunk records in {folder} are missing or damaged ({error}): {REBUILD_HINT}") from error
        try:
            lexical_segments.append(LexicalSegment.load(folder / LEXICAL_DIR))
        except (OSError, ValueError, KeyError) as error:
            raise IndexCorruptError(
                f"BM25 index {folder / LEXICAL_DIR} is missing or damaged ({error}): {REBUILD_HINT}") from error
        try:
            article_ids += json.loads((folder / ARTICLE_IDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise IndexCorruptError(
                f"article list {folder / ARTICLE_IDS_FILE} is missing or damaged ({error}): {REBUILD_HINT}") from error
        article_vectors.append(_load_array(folder / ARTICLE_VECTORS_FILE, "article vectors"))
        for problem in _file_problems(folder, entry["files"], content=hash_files, skip=(LINES_FILE,)):
            raise IndexCorruptError(f"{problem}: {REBUILD_HINT}")
    if chunk_index is None:
        raise IndexCorruptError(f"index at {snapshot_dir} lists no segments: {REBUILD_HINT}")
    try:
        held = ChunkRecords.concat(chunk_parts)
    except ValueError as error:
        raise IndexCorruptError(f"the segments of {snapshot_dir} hold overlapping chunks: {REBUILD_HINT}") from error
    segment_chunk_ids = held.ids
    gone = removed[np.isin(removed, held.ids)]  # numpy's set difference hashes every id
    chunks = held.without(gone)
    if len(gone):
        chunk_index.remove(gone)
        sentence_index.remove(held.sentence_ids_of(gone))  # a removed chunk's article went whole
    rows = {article_id: row for row, article_id in enumerate(article_ids) if article_id in manifest["articles"]}
    snapshot = Snapshot(manifest=manifest, chunk_vectors=chunk_index, sentence_vectors=sentence_index, chunks=chunks,
                        lexical=LexicalIndex(lexical_segments, ~np.isin(segment_chunk_ids, removed)),
                        article_vectors=np.concatenate(article_vectors), article_rows=rows, removed=removed,
                        name=snapshot_dir.name)
    _check_consistent(snapshot, snapshot_dir)
    return snapshot


def _read_vectors(path: Path, dim: int) -> VectorIndex:
    try:
        return VectorIndex.read(path, dim)
    except (RuntimeError, OSError, ValueError) as error:
        raise IndexCorruptError(f"vector file {path} is missing or damaged: {REBUILD_HINT}") from error


def _load_array(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IndexCorruptError(f"{what} {path} missing or damaged ({error}): {REBUILD_HINT}") from error


def _file_problems(folder: Path, files: dict[str, dict[str, Any]], content: bool,
                   skip: Collection[str] = ()) -> Iterator[str]:
    """How the files of a segment differ from when it was written: missing, of another size,
    or (with `content`) of other bytes than their SHA-256 says. Damage that leaves a file
    readable, 64 overwritten bytes of a vector file say, would otherwise shift rankings."""
    for name, written in files.items():
        if name in skip:
            continue
        path = folder / name
        try:
            size = path.stat().st_size
            if size != written["size"]:
                yield f"index file {path} is {size} bytes, {written['size']} when it was written"
            elif content and _sha256(path) != written["sha256"]:
                yield (f"index file {path} no longer matches its checksum, so it was changed or damaged after it "
                       "was written")
        except OSError as error:
            yield f"index file {path} is missing or unreadable ({error.strerror or error})"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """The size and SHA-256 of every file in a segment folder, by its path in the folder."""
    return {path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
            for path in sorted(folder.rglob("*")) if path.is_file()}


def verify_index(path: str | Path) -> list[str]:
    """Every problem found in the live version of the index at `path`, one line each: its files
    missing or not as written, every one hashed in full (opening a large index checks sizes
    only), then whether its parts agree. Empty when the index is sound."""
    index_dir = Path(path)
    try:
        snapshot_dir = current_snapshot_dir(index_dir)
        manifest = read_manifest(snapshot_dir)
    except RagError as error:
        return [str(error)]
    problems = [f"{problem}: {REBUILD_HINT}" for entry in manifest["segments"]
                for problem in _file_problems(index_dir / SEGMENTS_DIR / entry["name"], entry["files"], content=True)]
    if not problems:
        try:
            load_snapshot(snapshot_dir)
        except RagError as error:
            problems.append(str(error))
    return problems


def _check_consistent(snapshot: Snapshot, snapshot_dir: Path) -> None:
    """Vectors, chunk records, BM25 and article vectors hold the same chunks, sentences and
    articles as the manifest counts (compared as sorted arrays: sets of a million ids are slow)."""
    sentence_ids = distinct(snapshot.chunk_sentences[1])
    counts = snapshot.manifest["counts"]
    agreements = {
        "chunk vectors = stored chunks": np.array_equal(snapshot.chunk_vectors.ids(), snapshot.chunk_ids),
        "chunk count = manifest": counts["chunks"] == len(snapshot.chunks) == snapshot.chunk_vectors.ntotal,
        "sentence vectors = stored sentences": np.array_equal(snapshot.sentence_vectors.ids(), sentence_ids),
        "sentence count = manifest": counts["sentences"] == len(sentence_ids) == snapshot.sentence_vectors.ntotal,
        "BM25 documents = stored chunks": snapshot.lexical.size == len(snapshot.chunks)
        and sum(segment.size for segment in snapshot.lexical.segments) == len(snapshot.lexical.live),
        "article vectors = stored articles": set(snapshot.article_rows) == set(snapshot.chunks.ids_by_article),
    }
    failed = [name for name, holds in agreements.items() if not holds]
    if failed:
        raise IndexCorruptError(
            f"index at {snapshot_dir} is inconsistent: {snapshot.chunk_vectors.ntotal} chunk vectors, "
            f"{len(snapshot.chunks)} stored chunks, {snapshot.sentence_vectors.ntotal} sentence vectors, "
            f"{snapshot.lexical.size} BM25 documents, {len(snapshot.article_rows)} article vectors; the manifest "
            f"says {counts['chunks']} chunks and {counts['sentences']} sentences (failed: {'; '.join(failed)}): "
            f"{REBUILD_HINT}"
        )


def new_segment(first_chunk: int) -> dict[str, Any]:
    """A manifest entry for a segment that will hold the chunks with ids from `first_chunk` on
    (0 for a base segment, which holds the whole index)."""
    return {"name": _timestamped_name(), "first_chunk": first_chunk}


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
        name = _timestamped_name()
        os.replace(staging, versions / name)
        _fsync_directory(versions)  # the rename must be durable before CURRENT names it
        _point_current_to(index_dir, name)
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
        files = _file_checksums(staging)
        _fsync_folder(staging)
        os.replace(staging, segments / entry["name"])
        _fsync_directory(segments)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return files


def _timestamped_name() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


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
    while len(kept) <= _KEEP_OLD_SNAPSHOTS:
        try:
            previous = (versions / kept[-1] / PREVIOUS_FILE).read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            break  # the first version, or one written by an older rag
        if not _is_plain_name(previous) or previous in kept or not (versions / previous).is_dir():
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
