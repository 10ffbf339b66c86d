"""One consistent version of the index in memory: read from its folder, checked, verified.

The layout on disk is in rag.storage.layout; writing a version is rag.storage.writer.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from rag.config import Config
from rag.encoders.base import Embedder
from rag.encoders.minilm import BACKENDS
from rag.errors import REBUILD_HINT, IndexCorruptError, IndexMismatchError, RagError
from rag.records import Chunk, SearchFilter
from rag.storage.chunk_table import (
    LINES_FILE,
    ChunkRecords,
    StoredChunk,
    concat_ranges,
    distinct,
    sentences_in_order,
)
from rag.storage.layout import (
    ARTICLE_IDS_FILE,
    ARTICLE_VECTORS_FILE,
    FAISS_FILE,
    FORMAT_VERSION,
    HASH_ON_OPEN_UP_TO,
    LEXICAL_DIR,
    MANIFEST_FILE,
    REMOVED_FILE,
    SEGMENTS_DIR,
    SENTENCE_FAISS_FILE,
    current_snapshot_dir,
    is_plain_name,
    sha256,
)
from rag.storage.lexical import LexicalIndex, LexicalSegment
from rag.storage.vectors import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """One consistent state of the index, in memory but for the chunks' texts (rag.storage.chunk_table).

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
        sentences = sentences_in_order(self.chunks[chunk_id] for chunk_id in self.chunk_ids_of_article[article_id].tolist())
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

    # The store-neutral reading interface (rag.storage.reader.IndexReader).

    @property
    def lexicon(self) -> LexicalIndex:
        return self.lexical

    @property
    def dim(self) -> int:
        return self.chunk_vectors.dim

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)

    def dense_chunks(self, query_vector: np.ndarray, depth: int, search_filter: SearchFilter) -> np.ndarray:
        return self.chunk_vectors.search(query_vector, depth, self.allowed_chunk_ids(search_filter))

    def dense_sentence_chunks(self, query_vector: np.ndarray, depth: int, search_filter: SearchFilter) -> np.ndarray:
        allowed = self.allowed_chunk_ids(search_filter)
        sentence_allowed = None if allowed is None else np.unique(self.sentences_of(allowed)[0])
        holding = self.chunks_holding(self.sentence_vectors.search(query_vector, depth, sentence_allowed))
        if allowed is not None:  # a sentence may sit in an admitted chunk and in one that is not
            holding = holding[np.isin(holding, allowed)]
        return holding

    def lexical_scores(self, terms: Sequence[str], weights: Sequence[float],
                       search_filter: SearchFilter) -> _ScoredChunks:
        allowed = self.allowed_chunk_ids(search_filter)
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self.chunk_ids), dtype=bool)
            mask[self.positions(allowed)] = True
        return _ScoredChunks(self, self.lexical.scores(terms, weights, mask))

    def chunk_vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        return self.chunk_vectors.vectors_of(chunk_ids)

    def sentence_vectors_of(self, sentence_ids: np.ndarray) -> np.ndarray:
        return self.sentence_vectors.vectors_of(sentence_ids)

    def article_vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        return self.article_vectors[self.chunk_article_rows[self.positions(chunk_ids)]]

    def article_ids_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        return self.chunks.article_ids[self.positions(chunk_ids)]

    def stored(self, chunk_id: int) -> StoredChunk:
        return self.chunks[chunk_id]

    def stored_of(self, chunk: Chunk) -> StoredChunk:
        return self.chunks.of(chunk)

    def allowed_chunk_ids(self, search_filter: SearchFilter) -> np.ndarray | None:
        """The chunks of the articles the filter admits (decided per article: there are far
        fewer), None if it admits all; kept for the few filters a session uses."""
        if not search_filter.active:
            return None
        cached = self._allowed.get(search_filter)
        if cached is None:
            admitted = [self.chunk_ids_of_article[article_id]
                        for article_id, entry in self.manifest["articles"].items()
                        if article_id in self.chunk_ids_of_article
                        and search_filter.admits(article_id, dt.date.fromisoformat(entry["date"]) if entry["date"] else None)]
            cached = np.sort(np.concatenate(admitted)) if admitted else np.zeros(0, dtype=np.int64)
            if len(self._allowed) >= 16:
                self._allowed.clear()
            self._allowed[search_filter] = cached
        return cached

    @cached_property
    def _allowed(self) -> dict[SearchFilter, np.ndarray]:
        return {}


@dataclass(frozen=True)
class _ScoredChunks:
    """A query's BM25 score of every live chunk of a snapshot (rag.storage.reader.LexicalScores)."""

    snapshot: Snapshot
    scores: np.ndarray  # in ascending chunk id order

    def top(self, depth: int) -> np.ndarray:
        positive = np.flatnonzero(self.scores > 0)
        if len(positive) > depth:
            positive = np.sort(positive[np.argpartition(-self.scores[positive], depth - 1)[:depth]])
        return self.snapshot.chunk_ids[positive]

    def of(self, chunk_ids: np.ndarray) -> np.ndarray:
        return self.scores[self.snapshot.positions(chunk_ids)]


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
    if not (isinstance(entry, dict) and is_plain_name(entry.get("name")) and isinstance(entry.get("first_chunk"), int)
            and isinstance(entry.get("files"), dict)):
        return False
    return all(isinstance(file, dict) and isinstance(file.get("size"), int) and isinstance(file.get("sha256"), str)
               for file in entry["files"].values())



def _rebuild_fix(index_dir: Path | str, manifest: dict[str, Any]) -> str:
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


def check_compatible(manifest: dict[str, Any], embedder: Embedder, config: Config, path: Path | str) -> None:
    """Refuse to mix vectors or chunks made under other settings, naming the rebuild that fixes
    it with the folders the articles came from (a rebuild reads only what it is given)."""
    built = manifest["embedder"]
    if (built["name"], built["dim"]) != (embedder.name, embedder.dim):
        backend = f" or search it with the encoder that built it (RAG_ENCODER={built['backend']})" \
            if built.get("backend") in BACKENDS else ""
        raise IndexMismatchError(
            f"index at {path} was built with model {built['name']} ({built['dim']} dims); this "
            f"configuration uses {embedder.name} ({embedder.dim} dims): {_rebuild_fix(path, manifest)}{backend}"
        )
    if manifest["chunker"] != config.chunker_settings():
        raise IndexMismatchError(
            f"index at {path} was built with chunker settings {manifest['chunker']}; this "
            f"configuration uses {config.chunker_settings()}: {_rebuild_fix(path, manifest)}"
        )


def load_snapshot(snapshot_dir: Path, read_ahead: bool = False) -> Snapshot:
    """Read a version and its segments, and check that they agree with each other. With
    `read_ahead` (a process that will search), vector graphs are read in the background
    meanwhile; otherwise on first use (a cold `rag ask` at 100k chunks: about 0.9 s)."""
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
            elif content and sha256(path) != written["sha256"]:
                yield (f"index file {path} no longer matches its checksum, so it was changed or damaged after it "
                       "was written")
        except OSError as error:
            yield f"index file {path} is missing or unreadable ({error.strerror or error})"


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
