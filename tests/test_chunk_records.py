import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from rag.records import Chunk
from rag.storage.chunk_table import ChunkRecords, StoredChunk


def stored(chunk_id: int, article: str, first_sentence: int, sentences: int) -> StoredChunk:
    text = " ".join(f"Sentence {n} of {article}." for n in range(sentences))
    spans, start = [], 0
    for n in range(sentences):
        end = start + len(f"Sentence {n} of {article}.")
        spans.append((start, end))
        start = end + 1
    chunk = Chunk(chunk_id=f"hash{chunk_id:04d}", article_id=article, start=0, end=len(text), text=text,
                  title=f"Title of {article}", heading=f"Heading of {article}",
                  date=dt.date(2025, 1, 1) if article != "undated" else None)
    return StoredChunk(chunk=chunk, sentence_spans=tuple(spans),
                       sentence_ids=tuple(range(first_sentence, first_sentence + sentences)))


@pytest.fixture
def originals() -> dict[int, StoredChunk]:
    return {0: stored(0, "a", 0, 2), 1: stored(1, "b", 2, 3), 2: stored(2, "undated", 5, 1), 3: stored(3, "a", 6, 2)}


def test_records_read_back_as_written(tmp_path: Path, originals):
    ChunkRecords.from_stored(originals).write(tmp_path, np.array([0, 1, 2, 3]))
    records = ChunkRecords.read(tmp_path)
    assert list(records) == [0, 1, 2, 3]
    assert {chunk_id: records[chunk_id] for chunk_id in records} == originals
    assert records.of(originals[1].chunk) == originals[1]
    assert {article: ids.tolist() for article, ids in records.ids_by_article.items()} == \
        {"a": [0, 3], "b": [1], "undated": [2]}
    assert records.sentence_offsets.tolist() == [0, 2, 5, 6, 8]


def test_without_and_concat_keep_columns_and_records_aligned(tmp_path: Path, originals):
    first = {chunk_id: originals[chunk_id] for chunk_id in (0, 1, 2)}
    ChunkRecords.from_stored(first).write(tmp_path, np.array([0, 1, 2]))
    on_disk = ChunkRecords.read(tmp_path)
    combined = ChunkRecords.concat([on_disk.without(np.array([1])), ChunkRecords.from_stored({3: originals[3]})])
    assert list(combined) == [0, 2, 3]
    assert combined.sentence_ids.tolist() == [0, 1, 5, 6, 7]
    assert [combined[chunk_id] for chunk_id in combined] == [originals[0], originals[2], originals[3]]
    assert 1 not in combined and 3 in combined
    with pytest.raises(KeyError):
        combined[1]
    # written again, a chunk read from disk is copied and one in memory is serialised
    again = tmp_path / "again"
    again.mkdir()
    combined.write(again, np.array([2, 3]))
    assert dict(ChunkRecords.read(again).items()) == {2: originals[2], 3: originals[3]}


def test_ids_must_ascend(originals):
    with pytest.raises(ValueError, match="ascending"):
        ChunkRecords.concat([ChunkRecords.from_stored({3: originals[3]}), ChunkRecords.from_stored({0: originals[0]})])


def test_chunks_of_the_same_text_in_two_articles_are_told_apart(originals):
    """A syndicated copy has chunks of the same content hash as its original."""
    copy = stored(1, "copy", 9, 3)
    records = ChunkRecords.from_stored({**originals, 4: copy})
    assert copy.chunk.chunk_id == originals[1].chunk.chunk_id
    assert records.of(copy.chunk).sentence_ids == (9, 10, 11)
    assert records.of(originals[1].chunk).sentence_ids == (2, 3, 4)
