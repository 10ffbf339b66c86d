"""Reliability of the index on disk: no input crashes or bloats it, every failure is one line
that says what is wrong and how to fix it, corruption is detected, and what was indexed is kept."""

import errno
import json
import logging
import os
import re
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import invoke_cli

from rag import (
    HashingEmbedder,
    Index,
    IndexBusyError,
    IndexCorruptError,
    IndexWriteError,
    build_index,
)
from rag.errors import REBUILD_HINT
from rag.ingest.update import write_lock
from rag.storage import snapshot, writer
from rag.storage.chunk_table import ChunkRecords
from rag.storage.layout import (
    FORMAT_VERSION,
    LOCK_FILE,
    LOCK_HOLDER_FILE,
    current_snapshot_dir,
)
from rag.storage.snapshot import load_snapshot, verify_index
from rag.storage.vectors import VectorIndex

REBUILD = re.escape(REBUILD_HINT)
NEW_ARTICLE = "The shipyard at Hai Phong launched patrol vessel number {n} on Friday. It carries a crew of 40.\n"


def open_index(path: Path) -> Index:
    return Index.open(path, embedder=HashingEmbedder())


def files_of(index_dir: Path) -> dict[str, bytes]:
    """Every file of the index and its bytes, the write lock aside."""
    return {path.relative_to(index_dir).as_posix(): path.read_bytes() for path in sorted(index_dir.rglob("*"))
            if path.is_file() and path.name not in (LOCK_FILE, LOCK_HOLDER_FILE)}


def first_segment(index_dir: Path) -> Path:
    manifest = json.loads((current_snapshot_dir(index_dir) / "manifest.json").read_text())
    return index_dir / "segments" / manifest["segments"][0]["name"]


def add_article(seeds: Path, n: int) -> None:
    (seeds / f"new{n}.txt").write_text(NEW_ARTICLE.format(n=n), encoding="utf-8")


def without_checksums(manifest: dict) -> dict:
    segments = [{key: value for key, value in entry.items() if key != "files"} for entry in manifest["segments"]]
    return {**manifest, "segments": segments}


# 1. Clear errors, not tracebacks, and nothing indexed lost


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: {"format_version": FORMAT_VERSION},
         rf"index manifest .*manifest.json is damaged \(embedder.name is missing or not a string\): {REBUILD}$"),
        (lambda m: [m], rf"index manifest .*manifest.json is damaged \(it is not a JSON object\): {REBUILD}$"),
        (lambda m: {**m, "counts": {"chunks": 26}},
         (r"is damaged \(counts.sentences is missing or not a number\): rebuild it from the folders its articles "
          r"came from: `rag index --rebuild --index .*seeds`$")),
        (without_checksums,
         r"is damaged \(segment entry 0 lacks its name, first chunk or file checksums\): rebuild it"),
        (lambda m: {**m, "articles": {**m["articles"], "x": {"title": "X"}}},
         r"is damaged \(the entry of article 'x' lacks one of chunks, content_hash, date, source, title\)"),
        # an index written before checksums were kept: refused as another format, with the rebuild that keeps it whole
        (lambda m: without_checksums({**m, "format_version": 9}),
         rf"has format version 9; this version of rag reads format {FORMAT_VERSION}: rebuild it from the folders"),
    ],
)
def test_a_damaged_manifest_is_one_line_and_nothing_is_lost(fake_index, seeds_copy, damage, message):
    path = current_snapshot_dir(fake_index) / "manifest.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    assert_refused_on_open_and_update_and_unchanged(fake_index, seeds_copy, message)


def assert_refused_on_open_and_update_and_unchanged(fake_index, seeds_copy, message):
    before = files_of(fake_index)
    with pytest.raises(IndexCorruptError, match=message):
        open_index(fake_index)
    add_article(seeds_copy, 1)
    with pytest.raises(IndexCorruptError, match=message):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    assert files_of(fake_index) == before


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        (b"\xff\xfe2026\n", rf"index pointer .*CURRENT is damaged \(it is not UTF-8 text\): {REBUILD}$"),
        (b"../segments\n", rf"points to a missing snapshot '../segments': {REBUILD}$"),
    ],
)
def test_a_damaged_current_file_is_one_line_and_nothing_is_lost(fake_index, seeds_copy, pointer, message):
    live = (fake_index / "CURRENT").read_bytes()
    (fake_index / "CURRENT").write_bytes(pointer)
    assert_refused_on_open_and_update_and_unchanged(fake_index, seeds_copy, message)
    (fake_index / "CURRENT").write_bytes(live)
    assert len(open_index(fake_index).articles()) == 5


def test_a_lock_that_is_a_folder_is_one_line_and_nothing_is_lost(fake_index, seeds_copy):
    (fake_index / LOCK_FILE).unlink(missing_ok=True)
    (fake_index / LOCK_FILE).mkdir()
    before = files_of(fake_index)
    add_article(seeds_copy, 1)
    with pytest.raises(IndexWriteError, match=r"cannot lock the index at .*: .*write.lock is a folder, not a lock "
                                              r"file: remove it and run `rag index` again$"):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    assert files_of(fake_index) == before
    (fake_index / LOCK_FILE).rmdir()
    assert build_index([seeds_copy], fake_index, embedder=HashingEmbedder()).added == ["new1"]


def _refuse_lock_file(monkeypatch: pytest.MonkeyPatch, index_dir: Path) -> None:
    """The lock file of a read-only folder cannot be opened for writing."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if os.fsdecode(path).endswith(LOCK_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)


def _refuse_new_folders(monkeypatch: pytest.MonkeyPatch, index_dir: Path) -> None:
    """Nothing can be created in a read-only folder (an existing one still says it exists)."""
    real_mkdir = os.mkdir

    def refusing_mkdir(path, *args, **kwargs):
        if Path(path).is_relative_to(index_dir) and not Path(path).exists():
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refusing_mkdir)


@pytest.mark.parametrize(
    ("refuse", "message"),
    [
        (_refuse_lock_file, (r"cannot lock the index at .* \(Permission denied\); the index is unchanged: fix the "
                             r"folder's permissions, then run `rag index` again$")),
        (_refuse_new_folders, (r"cannot write the index at .* \(Permission denied\); the previous index is "
                               r"unchanged: free some space or fix the folder's permissions, then run `rag index` "
                               r"again$")),
    ],
)
def test_a_read_only_index_folder_is_one_line_and_nothing_is_lost(fake_index, seeds_copy, monkeypatch, refuse, message):
    """The tests may run as root, whom chmod does not stop: the refused calls are simulated."""
    before = files_of(fake_index)
    add_article(seeds_copy, 1)
    refuse(monkeypatch, fake_index)
    with pytest.raises(IndexWriteError, match=message):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    monkeypatch.undo()
    assert files_of(fake_index) == before
    assert build_index([seeds_copy], fake_index, embedder=HashingEmbedder()).added == ["new1"]


def test_a_full_disk_while_faiss_writes_is_one_line_and_the_previous_index_stays(fake_index, seeds_copy, monkeypatch):
    """FAISS raises RuntimeError, not OSError, when a write fails."""
    def full_disk(index, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError(f"Error in faiss::FileIOWriter::operator() at /project/faiss/impl/io.cpp:97: Error: "
                           f"'ret == (n)' failed: write error in {path}: 7 != 64 (No space left on device)")

    before = files_of(fake_index)
    searched = [hit.chunk.chunk_id for hit in open_index(fake_index).search("defence industry", k=5)]
    add_article(seeds_copy, 1)
    monkeypatch.setattr(faiss, "write_index", full_disk)
    with pytest.raises(IndexWriteError, match=r"cannot write the index at .* \(FAISS could not write chunks.faiss: "
                                              r"write error in .*chunks.faiss: 7 != 64 \(No space left on device\)\); "
                                              r"the previous index is unchanged"):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    monkeypatch.undo()
    assert files_of(fake_index) == before
    assert not list((fake_index / "segments").glob(".staging-*"))
    assert [hit.chunk.chunk_id for hit in open_index(fake_index).search("defence industry", k=5)] == searched
    assert build_index([seeds_copy], fake_index, embedder=HashingEmbedder()).added == ["new1"]


def test_a_vector_file_cut_short_without_an_error_fails_the_update(fake_index, seeds_copy, monkeypatch):
    """FAISS only prints the error of its final flush: a full disk can leave a short file and no exception."""
    real_write = faiss.write_index

    def short_write(index, target):
        real_write(index, target)
        if isinstance(target, str):
            os.truncate(target, os.path.getsize(target) - 100)

    before = files_of(fake_index)
    add_article(seeds_copy, 1)
    monkeypatch.setattr(faiss, "write_index", short_write)
    with pytest.raises(IndexWriteError, match=r"\(.*chunks.faiss was cut short at \d+ of \d+ bytes, the disk may "
                                              r"be full\); the previous index is unchanged"):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    monkeypatch.undo()
    assert files_of(fake_index) == before


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_vector_file_written_to_a_full_device_raises_oserror():
    vectors = VectorIndex.of(np.eye(8, dtype=np.float32), np.arange(8))
    with pytest.raises(OSError) as caught:
        vectors.write(Path("/dev/full"))
    assert caught.value.errno == errno.ENOSPC


# 2. Corruption is detected


def test_a_sound_index_verifies(fake_index):
    assert verify_index(fake_index) == []


def test_overwritten_bytes_in_a_vector_file_fail_on_open_with_the_fix(fake_index, seeds_copy):
    path = first_segment(fake_index) / "chunks.faiss"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(byte ^ 0xFF for byte in data[middle : middle + 64])
    path.write_bytes(data)
    assert faiss.read_index(str(path)).ntotal == 26  # FAISS alone reads it: rankings would silently shift
    message = (f"index file {path} no longer matches its checksum, so it was changed or damaged after it was "
               f"written: {REBUILD_HINT}")
    with pytest.raises(IndexCorruptError, match=f"^{re.escape(message)}$"):
        open_index(fake_index)
    with pytest.raises(IndexCorruptError, match=re.escape(message)):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    assert verify_index(fake_index) == [message]


def test_a_large_index_checks_sizes_on_open_and_verify_index_hashes_everything(fake_index, monkeypatch):
    monkeypatch.setattr(snapshot, "HASH_ON_OPEN_UP_TO", 0)
    path = first_segment(fake_index) / "sentences.faiss"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(byte ^ 0xFF for byte in data[middle : middle + 64])
    path.write_bytes(data)
    open_index(fake_index)  # only the size is checked on open
    assert verify_index(fake_index) == [(f"index file {path} no longer matches its checksum, so it was changed or "
                                         f"damaged after it was written: {REBUILD_HINT}")]
    path.write_bytes(data + b"\0")
    with pytest.raises(IndexCorruptError, match=rf"^index file {re.escape(str(path))} is {len(data) + 1} bytes, "
                                                rf"{len(data)} when it was written: {REBUILD}$"):
        open_index(fake_index)


def _edit_first_chunk_text(segment: Path) -> None:
    """Change one letter of the first chunk's text, keeping the file's size."""
    path = segment / "chunks.jsonl"
    data = path.read_bytes()
    at = data.index(b'"text":"') + len(b'"text":"')
    path.write_bytes(data[:at] + (b"X" if data[at : at + 1] != b"X" else b"Y") + data[at + 1 :])


def test_an_edited_chunk_line_fails_when_read_instead_of_serving_wrong_text(fake_index):
    segment = first_segment(fake_index)
    first_text = open_index(fake_index).snapshot.chunks[0].chunk.text
    _edit_first_chunk_text(segment)
    index = open_index(fake_index)  # chunk lines are checked as they are parsed
    message = (rf"the record of chunk 0 is damaged \(line 1 of {re.escape(str(segment))}/chunks.jsonl no longer "
               rf"matches its checksum, so it was changed or damaged after it was written\): {REBUILD}$")
    with pytest.raises(IndexCorruptError, match=message):
        index.snapshot.chunks[0]
    with pytest.raises(IndexCorruptError, match=message):
        index.search(first_text, k=30)
    assert [problem for problem in verify_index(fake_index) if "chunks.jsonl" in problem]


def test_a_damaged_chunk_line_stays_detectable_when_copied_to_a_new_segment(fake_index, tmp_path):
    """A compaction copies chunk lines as bytes, with the checksums they were written with."""
    _edit_first_chunk_text(first_segment(fake_index))
    snapshot = load_snapshot(current_snapshot_dir(fake_index))
    copy = tmp_path / "copy"
    copy.mkdir()
    snapshot.chunks.write(copy, snapshot.chunk_ids)
    records = ChunkRecords.read(copy)
    assert records[1] == snapshot.chunks[1]
    with pytest.raises(IndexCorruptError, match=r"the record of chunk 0 is damaged \(line 1 of .*copy/chunks.jsonl"):
        records[0]


# 3. Cleanup keeps what was live


class WriterDied(BaseException):
    """A writer killed between writing its version and naming it in CURRENT."""


def test_cleanup_keeps_the_previously_live_version_after_writers_died(fake_index, seeds_copy, monkeypatch):
    versions, segments = fake_index / "versions", fake_index / "segments"
    live = [current_snapshot_dir(fake_index).name]
    add_article(seeds_copy, 1)
    build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    live.append(current_snapshot_dir(fake_index).name)
    kept_segments = {path.name for path in segments.iterdir()}

    def die(index_dir, name):
        raise WriterDied

    monkeypatch.setattr(writer, "point_current_to", die)
    for n in (2, 3):
        add_article(seeds_copy, n)
        with pytest.raises(WriterDied):
            build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    monkeypatch.undo()
    never_live = {path.name for path in versions.iterdir()} - set(live)
    assert len(never_live) == 2 and min(never_live) > max(live)  # newer names than any live version
    assert current_snapshot_dir(fake_index).name == live[-1]

    assert build_index([seeds_copy], fake_index, embedder=HashingEmbedder()).added == ["new2", "new3"]
    live.append(current_snapshot_dir(fake_index).name)
    assert {path.name for path in versions.iterdir()} == set(live)  # the live one and the two live before it
    assert kept_segments <= {path.name for path in segments.iterdir()}
    assert [len(load_snapshot(versions / name).manifest["articles"]) for name in live] == [5, 6, 8]
    assert len(list(segments.iterdir())) == 3  # the dead writers' segments are gone


def test_cleanup_keeps_a_bounded_number_of_versions(fake_index, seeds_copy):
    for n in range(5):
        add_article(seeds_copy, n)
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    versions = sorted(path.name for path in (fake_index / "versions").iterdir())
    assert len(versions) == 3 and versions[-1] == current_snapshot_dir(fake_index).name


# 4. A waiting writer says so


def test_a_waiting_writer_says_whose_update_it_waits_for(fake_index, seeds_copy, caplog):
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_lock(fake_index, 5):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        with caplog.at_level(logging.WARNING, logger="rag.ingest.update"), \
                pytest.raises(IndexBusyError, match=rf"another process is updating the index at .* \(pid "
                                                    rf"{os.getpid()}, lock .* held for 0.3 s\): wait for it to "
                                                    r"finish and try again$"):
            build_index([seeds_copy], fake_index, embedder=HashingEmbedder(), lock_timeout=0.3)
    finally:
        release.set()
        holder.join()
    assert (f"waiting for another update of the index at {fake_index} (pid {os.getpid()}) to finish, up to 0.3 s"
            in caplog.text)
    assert not (fake_index / LOCK_HOLDER_FILE).exists()


def test_rag_check_says_sound_or_lists_each_problem_with_status_1(fake_index, monkeypatch):


    sound = invoke_cli(["check", "--index", str(fake_index)])
    assert sound.exit_code == 0 and sound.output.strip().endswith(": sound")
    faiss_file = next(fake_index.glob("segments/*/chunks.faiss"))
    data = bytearray(faiss_file.read_bytes())
    data[200:264] = b"\x7f" * 64
    faiss_file.write_bytes(bytes(data))
    damaged = invoke_cli(["check", "--index", str(fake_index)])
    assert damaged.exit_code == 1 and "chunks.faiss" in damaged.output and "Traceback" not in damaged.output
