"""Copying an index between the two stores, vectors included: nothing is encoded again.

An index folder goes to Milvus (`rag export --store index --to milvus-lite:/tmp/m.db`) and
back. The copy holds the same chunks, sentences, articles and vectors under the same ids,
so a search of either ranks alike (tests/test_stores.py). The whole index passes through
this process's memory; a copy of more than a few million chunks wants a streaming export,
which this is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import IndexWriteError
from rag.ingest.assemble import snapshot_of
from rag.ingest.milvus_update import new_meta, reset_store, store_lock, write_generation
from rag.ingest.update import make_index_dir, write_lock
from rag.storage.chunk_table import StoredChunk
from rag.storage.layout import CURRENT_FILE, current_snapshot_dir
from rag.storage.milvus import (
    MilvusReader,
    MilvusSettings,
    MilvusStore,
    is_milvus_uri,
    stored_of_record,
)
from rag.storage.snapshot import Snapshot, load_snapshot
from rag.storage.writer import write_snapshot


@dataclass(frozen=True)
class ExportReport:
    articles: int
    chunks: int
    sentences: int

    def summary(self) -> str:
        return f"{self.articles} articles, {self.chunks} chunks, {self.sentences} sentences copied"


def export_index(source: str | Path, target: str | Path, replace: bool = False, lock_timeout: float = 60.0) -> ExportReport:
    """Copy the index at `source` to `target`, one a folder and the other a Milvus store.
    A target that already holds an index is refused unless `replace`."""
    if is_milvus_uri(source) == is_milvus_uri(target):
        raise IndexWriteError(f"export copies between an index folder and a Milvus store; {source} and {target} are "
                              "both " + ("Milvus stores" if is_milvus_uri(source) else "folders") +
                              ": copy a folder with cp -r, or export through a folder")
    if is_milvus_uri(target):
        return _to_milvus(load_snapshot(current_snapshot_dir(Path(source))), MilvusSettings.from_uri(str(target)),
                          replace, lock_timeout)
    return _to_folder(MilvusSettings.from_uri(str(source)), Path(target), replace, lock_timeout)


def _to_milvus(snapshot: Snapshot, settings: MilvusSettings, replace: bool, lock_timeout: float) -> ExportReport:
    manifest = snapshot.manifest
    chunk_ids = snapshot.chunk_ids
    stored = {int(chunk_id): snapshot.chunks[int(chunk_id)] for chunk_id in chunk_ids.tolist()}
    sentence_ids = np.unique(snapshot.chunk_sentences[1])
    sentence_vectors = snapshot.sentence_vectors.vectors_of(sentence_ids)
    store = MilvusStore.connect(settings)
    try:
        had_index = store.meta() is not None
        if had_index and not replace:
            raise IndexWriteError(f"{settings.shown} already holds an index: pass --replace to overwrite it")
        with store_lock(store, manifest["embedder"]["dim"], lock_timeout):
            meta = new_meta(manifest["embedder"], manifest["chunker"])
            reset_store(store, manifest["embedder"]["dim"], meta, drop=had_index)
            write_generation(store, meta, manifest["articles"], gone=set(), chunks=stored,
                             chunk_vectors=snapshot.chunk_vectors.vectors_of(chunk_ids),
                             sentence_vectors=dict(zip(sentence_ids.tolist(), sentence_vectors, strict=True)),
                             article_vectors={article_id: snapshot.article_vectors[row]
                                              for article_id, row in snapshot.article_rows.items()})
    finally:
        store.close()
    return ExportReport(len(manifest["articles"]), len(stored), len(sentence_ids))


def _to_folder(settings: MilvusSettings, path: Path, replace: bool, lock_timeout: float) -> ExportReport:
    store = MilvusStore.connect(settings)
    try:
        reader = MilvusReader.open(store)
        below = f"generation <= {reader.meta['generation']}"
        chunks: dict[int, StoredChunk] = {}
        chunk_vectors: dict[int, np.ndarray] = {}
        for row in store.scan("chunks", ["id", "record", "vector"], below):
            chunks[int(row["id"])] = stored_of_record(row["record"])
            chunk_vectors[int(row["id"])] = np.asarray(row["vector"], dtype=np.float32)
        sentences = {int(row["id"]): np.asarray(row["vector"], dtype=np.float32)
                     for row in store.scan("sentences", ["id", "vector"], below)}
        article_vectors = {row["article_id"]: np.asarray(row["vector"], dtype=np.float32)
                           for row in store.scan("articles", ["article_id", "vector"], below)}
        entries = dict(reader.manifest["articles"])
        meta = reader.meta
    finally:
        store.close()
    chunk_ids, sentence_ids = sorted(chunks), sorted(sentences)
    snapshot = snapshot_of(chunks, np.array([chunk_vectors[i] for i in chunk_ids], dtype=np.float32),
                           np.array(sentence_ids, dtype=np.int64),
                           np.array([sentences[i] for i in sentence_ids], dtype=np.float32),
                           entries, article_vectors, meta["embedder"], meta["chunker"], meta["next_ids"])
    make_index_dir(path)
    with write_lock(path, lock_timeout):
        if (path / CURRENT_FILE).exists() and not replace:
            raise IndexWriteError(f"{path} already holds an index: pass --replace to overwrite it")
        try:
            write_snapshot(path, snapshot)
        except OSError as error:
            raise IndexWriteError(f"cannot write the index at {path} ({error.strerror or error}); nothing there "
                                  "changed: free some space or fix the folder's permissions, then export again") from error
    return ExportReport(len(entries), len(chunks), len(sentence_ids))
