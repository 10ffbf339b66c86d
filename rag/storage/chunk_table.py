"""The chunk records of an index: what searches read for every chunk as arrays, the rest on demand.

A search reads a few facts about every chunk (its id, its article, the ids of its sentences,
its content hash) and the text of only the ten or so it returns. So `ChunkRecords` holds those
facts as NumPy columns, read from a segment's `chunks.npz` in milliseconds, and parses a
chunk's line of `chunks.jsonl` (its text, title, heading, date) only when that chunk is first
asked for. Parsing every line at load time took 1.5 s of the 2.5 s it took to open a
100k-chunk index, and held every chunk as Python objects for the life of the process.
Each line's CRC-32 is kept beside it and checked when the line is parsed, so a line changed
or damaged since it was written fails as damage instead of serving text its article lacks.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import orjson

from rag.errors import REBUILD_HINT, IndexCorruptError
from rag.records import Chunk

LINES_FILE = "chunks.jsonl"
COLUMNS_FILE = "chunks.npz"
_IN_MEMORY = -1  # `source` of a chunk that is not on disk yet: its record is in the cache


@dataclass(frozen=True)
class StoredChunk:
    """A chunk and the sentences it is made of: (start, end) spans and their vector ids."""

    chunk: Chunk
    sentence_spans: tuple[tuple[int, int], ...]
    sentence_ids: tuple[int, ...]


def sentences_in_order(stored_chunks: Iterable[StoredChunk]) -> list[tuple[int, str]]:
    """The (sentence id, text) of an article's chunks in reading order, each sentence once
    (overlapping chunks share sentences): what both stores give as an article's sentences."""
    found: dict[int, tuple[int, str]] = {}
    for stored in stored_chunks:
        chunk = stored.chunk
        for sentence_id, (start, end) in zip(stored.sentence_ids, stored.sentence_spans, strict=True):
            found[sentence_id] = (start, chunk.span(start, end))
    return [(sentence_id, text) for sentence_id, (_, text) in sorted(found.items(), key=lambda item: item[1][0])]


class ChunkRecords(Mapping[int, StoredChunk]):
    """Chunk id -> stored chunk, ids ascending. Never changed but for the records it has parsed
    (kept, as immutable objects); `without` and `concat` make new ones.

    Row i of every column describes the chunk `ids[i]`; its sentences are rows
    `sentence_offsets[i]:sentence_offsets[i + 1]` of `sentence_ids` and `sentence_spans`.
    A chunk read from disk is line `line_of[i]` of the segment file `sources[source[i]]`, and
    `line_checksums[i]` the CRC-32 of that line (0 for a chunk not written yet).
    """

    def __init__(self, ids: np.ndarray, article_ids: np.ndarray, hashes: np.ndarray, sentence_counts: np.ndarray,
                 sentence_ids: np.ndarray, sentence_spans: np.ndarray, line_checksums: np.ndarray, source: np.ndarray,
                 line_of: np.ndarray, sources: list[_Lines], cache: dict[int, StoredChunk]) -> None:
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
            raise ValueError("chunk ids must be distinct and ascending")
        self.ids = ids
        self.article_ids = article_ids
        self.hashes = hashes
        self.sentence_counts = sentence_counts
        self.sentence_ids = sentence_ids
        self.sentence_spans = sentence_spans
        self.line_checksums = line_checksums
        self._source = source
        self._line_of = line_of
        self._sources = sources
        self._cache = cache

    @classmethod
    def empty(cls) -> ChunkRecords:
        return cls.from_stored({})

    @classmethod
    def from_stored(cls, stored: Mapping[int, StoredChunk]) -> ChunkRecords:
        """Records of chunks held in memory (just embedded, not yet written)."""
        ids = sorted(stored)
        chunks = [stored[chunk_id] for chunk_id in ids]
        return cls(
            ids=np.array(ids, dtype=np.int64),
            article_ids=np.array([s.chunk.article_id for s in chunks], dtype=str),
            hashes=np.array([s.chunk.chunk_id for s in chunks], dtype=str),
            sentence_counts=np.array([len(s.sentence_ids) for s in chunks], dtype=np.int64),
            sentence_ids=np.array([i for s in chunks for i in s.sentence_ids], dtype=np.int64),
            sentence_spans=np.array([span for s in chunks for span in s.sentence_spans], dtype=np.int64).reshape(-1, 2),
            line_checksums=np.zeros(len(ids), dtype=np.uint32),
            source=np.full(len(ids), _IN_MEMORY, dtype=np.int32),
            line_of=np.full(len(ids), -1, dtype=np.int64),
            sources=[],
            cache=dict(zip(ids, chunks, strict=True)),
        )

    @classmethod
    def read(cls, folder: Path) -> ChunkRecords:
        """A segment's records. Raises OSError, ValueError or KeyError if they are missing or damaged."""
        lines = _Lines.read(folder / LINES_FILE)
        with np.load(folder / COLUMNS_FILE, allow_pickle=False) as columns:
            arrays = {name: columns[name] for name in
                      ("ids", "article_ids", "hashes", "sentence_counts", "sentence_ids", "sentence_spans",
                       "line_checksums")}
        if len(lines) != len(arrays["ids"]) or arrays["sentence_counts"].sum() != len(arrays["sentence_ids"]):
            raise ValueError(f"{folder / LINES_FILE} holds {len(lines)} chunks, {folder / COLUMNS_FILE} "
                             f"{len(arrays['ids'])}")
        return cls(**arrays, source=np.zeros(len(lines), dtype=np.int32),
                   line_of=np.arange(len(lines), dtype=np.int64), sources=[lines], cache={})

    def write(self, folder: Path, ids: np.ndarray) -> None:
        """Write the records of the given chunks (ids ascending) as a segment's: a chunk already
        on disk is copied as its bytes, without being parsed, and keeps the checksum it was
        written with (so damage is carried along detectably, never blessed)."""
        rows = self._rows(ids)
        subset = self._subset(rows)
        checksums = subset.line_checksums.copy()
        with (folder / LINES_FILE).open("wb") as handle:
            for number, row in enumerate(rows.tolist()):
                source = int(self._source[row])
                if source == _IN_MEMORY:
                    chunk_id = int(self.ids[row])
                    line = orjson.dumps({"faiss_id": chunk_id, **self._cache[chunk_id].chunk.to_json()})
                    checksums[number] = zlib.crc32(line)
                else:
                    line = self._sources[source].line(int(self._line_of[row]))
                handle.write(line)
                handle.write(b"\n")
        np.savez(folder / COLUMNS_FILE, ids=subset.ids, article_ids=subset.article_ids, hashes=subset.hashes,
                 sentence_counts=subset.sentence_counts, sentence_ids=subset.sentence_ids,
                 sentence_spans=subset.sentence_spans, line_checksums=checksums)

    @staticmethod
    def concat(parts: list[ChunkRecords]) -> ChunkRecords:
        """The records of all parts, whose ids must not overlap and come in ascending order."""
        if len(parts) == 1:
            return parts[0]
        sources: list[_Lines] = []
        shifted = []
        for part in parts:
            shifted.append(np.where(part._source == _IN_MEMORY, _IN_MEMORY, part._source + len(sources)))
            sources += part._sources
        cache: dict[int, StoredChunk] = {}
        for part in parts:
            cache.update(part._cache)
        return ChunkRecords(
            ids=np.concatenate([p.ids for p in parts]),
            article_ids=np.concatenate([p.article_ids for p in parts]),
            hashes=np.concatenate([p.hashes for p in parts]),
            sentence_counts=np.concatenate([p.sentence_counts for p in parts]),
            sentence_ids=np.concatenate([p.sentence_ids for p in parts]),
            sentence_spans=np.concatenate([p.sentence_spans for p in parts]),
            line_checksums=np.concatenate([p.line_checksums for p in parts]),
            source=np.concatenate(shifted).astype(np.int32),
            line_of=np.concatenate([p._line_of for p in parts]),
            sources=sources, cache=cache)

    def without(self, ids: np.ndarray) -> ChunkRecords:
        """These records minus the given chunk ids (ids not held are ignored)."""
        gone = np.isin(self.ids, ids)
        return self._subset(np.flatnonzero(~gone)) if gone.any() else self

    def _subset(self, rows: np.ndarray) -> ChunkRecords:
        sentence_rows = concat_ranges(self.sentence_offsets[rows], self.sentence_counts[rows])
        ids = self.ids[rows]
        return ChunkRecords(ids=ids, article_ids=self.article_ids[rows], hashes=self.hashes[rows],
                            sentence_counts=self.sentence_counts[rows], sentence_ids=self.sentence_ids[sentence_rows],
                            sentence_spans=self.sentence_spans[sentence_rows],
                            line_checksums=self.line_checksums[rows], source=self._source[rows],
                            line_of=self._line_of[rows], sources=self._sources,
                            cache={i: self._cache[i] for i in ids.tolist() if i in self._cache})

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.ids, ids)
        if len(rows) and (rows.max() >= len(self.ids) or not np.array_equal(self.ids[rows], ids)):
            raise KeyError(f"chunk ids not held: {sorted(set(np.asarray(ids).tolist()) - set(self.ids.tolist()))[:5]}")
        return rows

    def sentence_ids_of(self, ids: np.ndarray) -> np.ndarray:
        """The distinct ids of the sentences of the given chunks, ascending."""
        rows = self._rows(np.asarray(ids, dtype=np.int64))
        return distinct(self.sentence_ids[concat_ranges(self.sentence_offsets[rows], self.sentence_counts[rows])])

    @cached_property
    def sentence_offsets(self) -> np.ndarray:
        offsets = np.zeros(len(self.ids) + 1, dtype=np.int64)
        np.cumsum(self.sentence_counts, out=offsets[1:])
        return offsets

    @cached_property
    def ids_by_article(self) -> dict[str, np.ndarray]:
        """Article id -> the ids of its chunks, ascending."""
        if not len(self.ids):
            return {}
        order = np.argsort(self.article_ids, kind="stable")
        grouped = self.article_ids[order]
        starts = np.flatnonzero(np.concatenate([[True], grouped[1:] != grouped[:-1]]))
        ordered, bounds = self.ids[order], np.append(starts, len(grouped)).tolist()
        return {name: ordered[bounds[i] : bounds[i + 1]] for i, name in enumerate(grouped[starts].tolist())}

    @cached_property
    def _id_of_hash(self) -> dict[tuple[str, str], int]:
        return dict(zip(zip(self.article_ids.tolist(), self.hashes.tolist()), self.ids.tolist(), strict=True))

    def of(self, chunk: Chunk) -> StoredChunk:
        """The stored record of a chunk a hit carries. Keyed by article and content hash: two
        articles with the same text (a syndicated copy) have chunks of the same hash."""
        return self[self._id_of_hash[chunk.article_id, chunk.chunk_id]]

    def __getitem__(self, chunk_id: int) -> StoredChunk:
        cached = self._cache.get(chunk_id)
        if cached is not None:
            return cached
        row = self._row_of(chunk_id)
        if row is None:
            raise KeyError(chunk_id)
        try:
            stored = self._parse(row)
        except (ValueError, KeyError, TypeError) as error:
            raise IndexCorruptError(f"the record of chunk {chunk_id} is damaged ({error}): {REBUILD_HINT}") from error
        self._cache[chunk_id] = stored  # a race parses a chunk twice; both copies are equal
        return stored

    def _parse(self, row: int) -> StoredChunk:
        lines, number = self._sources[int(self._source[row])], int(self._line_of[row])
        line = lines.line(number)
        if zlib.crc32(line) != self.line_checksums[row]:
            raise ValueError(f"line {number + 1} of {lines.path} no longer matches its checksum, so it was "
                             "changed or damaged after it was written")
        fields = orjson.loads(line)
        if fields["faiss_id"] != self.ids[row]:
            raise ValueError(f"line {number + 1} of {lines.path} holds chunk {fields['faiss_id']}, "
                             f"its columns say {int(self.ids[row])}")
        start, end = self.sentence_offsets[row], self.sentence_offsets[row + 1]
        return StoredChunk(chunk=Chunk.from_json(fields),
                           sentence_spans=tuple((a, b) for a, b in self.sentence_spans[start:end].tolist()),
                           sentence_ids=tuple(self.sentence_ids[start:end].tolist()))

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids.tolist())

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, chunk_id: object) -> bool:
        return self._row_of(chunk_id) is not None

    def _row_of(self, chunk_id: object) -> int | None:
        if not isinstance(chunk_id, int | np.integer):
            return None
        row = int(np.searchsorted(self.ids, chunk_id))
        return row if row < len(self.ids) and self.ids[row] == chunk_id else None


class _Lines:
    """A file's lines as one bytes object and where each ends: a line is sliced, not split."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.path = path
        self._data = data
        self._ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
        self._starts = np.concatenate([[0], self._ends[:-1] + 1]) if len(self._ends) else self._ends

    @classmethod
    def read(cls, path: Path) -> _Lines:
        return cls(path.read_bytes(), path)

    def __len__(self) -> int:
        return len(self._ends)

    def line(self, number: int) -> bytes:
        return self._data[self._starts[number] : self._ends[number]]


def concat_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices starts[i], ..., starts[i] + counts[i] - 1 for every i, concatenated."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(int(ends[-1]) if len(ends) else 0)


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (numpy's hashing `unique` took 0.2-0.5 s on 280k ids)."""
    ordered = np.sort(values)
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered
